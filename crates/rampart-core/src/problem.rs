//! RFC 9457 problem details: the one place that maps every rejection cause to
//! its HTTP status, stable machine-readable `code`, `type` URI and title.
//!
//! The client sees a short, fixed title, an optional detail written by
//! Rampart (never upstream text, never a secret) and the request id. Causes go
//! to the log, not to the body.

use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

/// Content type of every problem body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Every distinct rejection cause. Adding a variant forces every `match` to
/// decide its status, so a new cause can never fall through to a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemCode {
    /// 400: the request failed validation.
    ValidationFailed,
    /// 400: the request could not be parsed as HTTP the gateway accepts.
    BadRequest,
    /// 401: no credentials were presented.
    MissingCredentials,
    /// 401: the key id is not known.
    UnknownKey,
    /// 401: the key was revoked.
    KeyRevoked,
    /// 401: the key is past its expiry.
    KeyExpired,
    /// 401: the signature does not verify.
    SignatureInvalid,
    /// 401: the `Content-Digest` does not match the body.
    DigestMismatch,
    /// 401: the request is older than the freshness window.
    TimestampTooOld,
    /// 401: the request is dated too far in the future.
    TimestampInFuture,
    /// 401: the nonce was already used.
    ReplayedNonce,
    /// 401: the key requires a client certificate that was not presented.
    CertRequired,
    /// 401: the action needs MFA step-up.
    MfaRequired,
    /// 401: the MFA proof is wrong or reused.
    MfaInvalid,
    /// 401: an admin action needs an operator session (none was presented,
    /// or it expired, was revoked or is unknown).
    OperatorAuthRequired,
    /// 401: an operator WebAuthn ceremony failed (unknown, expired or
    /// replayed challenge, wrong origin or RP id, bad signature, counter
    /// regression, unknown or disabled operator, unusable enrolment
    /// token). The detail says which step, never whether an operator
    /// exists.
    OperatorAuthFailed,
    /// 403: the key lacks the route's scope.
    ScopeMissing,
    /// 403: the source IP is not allowed for the key.
    IpNotAllowed,
    /// 403: a policy forbids the request.
    ForbiddenByPolicy,
    /// 403: a kill switch is engaged.
    KillSwitch,
    /// 403: the request was blocked by the input shield.
    RequestBlocked,
    /// 404: no route matches the path.
    NotFound,
    /// 405: a route matches the path but not the method.
    MethodNotAllowed,
    /// 408: the client was too slow sending its request.
    RequestTimeout,
    /// 413: the body exceeds the route's limit.
    PayloadTooLarge,
    /// 431: the header section exceeds the limit.
    HeadersTooLarge,
    /// 422: a pre-trade risk limit was hit.
    RiskLimit,
    /// 429: a rate limit was hit.
    RateLimited,
    /// 429: the source is locked out after failures.
    LockedOut,
    /// 500: an internal invariant failed; the request was not forwarded.
    InternalError,
    /// 502: no upstream could serve the request (or its outcome is unknown).
    UpstreamUnavailable,
    /// 503: the gateway is at its connection or concurrency limit.
    Overloaded,
    /// 503: a dependency of authentication (key directory, replay cache) is
    /// unavailable; the request is refused, never let through.
    AuthUnavailable,
    /// 503: the audit writer cannot take the request's record (queue full or
    /// writer failed); authenticated routes are refused rather than served
    /// unaudited.
    AuditUnavailable,
    /// 504: the upstream did not answer in time.
    UpstreamTimeout,
}

impl ProblemCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: &'static [ProblemCode] = &[
        Self::ValidationFailed,
        Self::BadRequest,
        Self::MissingCredentials,
        Self::UnknownKey,
        Self::KeyRevoked,
        Self::KeyExpired,
        Self::SignatureInvalid,
        Self::DigestMismatch,
        Self::TimestampTooOld,
        Self::TimestampInFuture,
        Self::ReplayedNonce,
        Self::CertRequired,
        Self::MfaRequired,
        Self::MfaInvalid,
        Self::OperatorAuthRequired,
        Self::OperatorAuthFailed,
        Self::ScopeMissing,
        Self::IpNotAllowed,
        Self::ForbiddenByPolicy,
        Self::KillSwitch,
        Self::RequestBlocked,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::HeadersTooLarge,
        Self::RiskLimit,
        Self::RateLimited,
        Self::LockedOut,
        Self::InternalError,
        Self::UpstreamUnavailable,
        Self::Overloaded,
        Self::AuthUnavailable,
        Self::AuditUnavailable,
        Self::UpstreamTimeout,
    ];

    /// The stable machine-readable code (`SCREAMING_SNAKE_CASE`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::BadRequest => "BAD_REQUEST",
            Self::MissingCredentials => "MISSING_CREDENTIALS",
            Self::UnknownKey => "UNKNOWN_KEY",
            Self::KeyRevoked => "KEY_REVOKED",
            Self::KeyExpired => "KEY_EXPIRED",
            Self::SignatureInvalid => "SIGNATURE_INVALID",
            Self::DigestMismatch => "DIGEST_MISMATCH",
            Self::TimestampTooOld => "TIMESTAMP_TOO_OLD",
            Self::TimestampInFuture => "TIMESTAMP_IN_FUTURE",
            Self::ReplayedNonce => "REPLAYED_NONCE",
            Self::CertRequired => "CERT_REQUIRED",
            Self::MfaRequired => "MFA_REQUIRED",
            Self::MfaInvalid => "MFA_INVALID",
            Self::OperatorAuthRequired => "OPERATOR_AUTH_REQUIRED",
            Self::OperatorAuthFailed => "OPERATOR_AUTH_FAILED",
            Self::ScopeMissing => "SCOPE_MISSING",
            Self::IpNotAllowed => "IP_NOT_ALLOWED",
            Self::ForbiddenByPolicy => "FORBIDDEN_BY_POLICY",
            Self::KillSwitch => "KILL_SWITCH",
            Self::RequestBlocked => "REQUEST_BLOCKED",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Self::RiskLimit => "RISK_LIMIT",
            Self::RateLimited => "RATE_LIMITED",
            Self::LockedOut => "LOCKED_OUT",
            Self::InternalError => "INTERNAL_ERROR",
            Self::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Self::Overloaded => "OVERLOADED",
            Self::AuthUnavailable => "AUTH_UNAVAILABLE",
            Self::AuditUnavailable => "AUDIT_UNAVAILABLE",
            Self::UpstreamTimeout => "UPSTREAM_TIMEOUT",
        }
    }

    /// The HTTP status this cause answers with.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::ValidationFailed | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::MissingCredentials
            | Self::UnknownKey
            | Self::KeyRevoked
            | Self::KeyExpired
            | Self::SignatureInvalid
            | Self::DigestMismatch
            | Self::TimestampTooOld
            | Self::TimestampInFuture
            | Self::ReplayedNonce
            | Self::CertRequired
            | Self::MfaRequired
            | Self::MfaInvalid
            | Self::OperatorAuthRequired
            | Self::OperatorAuthFailed => StatusCode::UNAUTHORIZED,
            Self::ScopeMissing
            | Self::IpNotAllowed
            | Self::ForbiddenByPolicy
            | Self::KillSwitch
            | Self::RequestBlocked => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RiskLimit => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited | Self::LockedOut => StatusCode::TOO_MANY_REQUESTS,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Self::Overloaded | Self::AuthUnavailable | Self::AuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Short, fixed, lowercase human title.
    pub const fn title(self) -> &'static str {
        match self {
            Self::ValidationFailed => "validation failed",
            Self::BadRequest => "bad request",
            Self::MissingCredentials => "missing credentials",
            Self::UnknownKey => "unknown key",
            Self::KeyRevoked => "key revoked",
            Self::KeyExpired => "key expired",
            Self::SignatureInvalid => "signature invalid",
            Self::DigestMismatch => "digest mismatch",
            Self::TimestampTooOld => "timestamp too old",
            Self::TimestampInFuture => "timestamp in future",
            Self::ReplayedNonce => "replayed nonce",
            Self::CertRequired => "client certificate required",
            Self::MfaRequired => "mfa required",
            Self::MfaInvalid => "mfa invalid",
            Self::OperatorAuthRequired => "operator session required",
            Self::OperatorAuthFailed => "operator sign-in failed",
            Self::ScopeMissing => "scope missing",
            Self::IpNotAllowed => "ip not allowed",
            Self::ForbiddenByPolicy => "forbidden by policy",
            Self::KillSwitch => "kill switch engaged",
            Self::RequestBlocked => "request blocked",
            Self::NotFound => "not found",
            Self::MethodNotAllowed => "method not allowed",
            Self::RequestTimeout => "request timeout",
            Self::PayloadTooLarge => "payload too large",
            Self::HeadersTooLarge => "headers too large",
            Self::RiskLimit => "risk limit",
            Self::RateLimited => "rate limited",
            Self::LockedOut => "locked out",
            Self::InternalError => "internal error",
            Self::UpstreamUnavailable => "upstream unavailable",
            Self::Overloaded => "overloaded",
            Self::AuthUnavailable => "authentication unavailable",
            Self::AuditUnavailable => "audit trail unavailable",
            Self::UpstreamTimeout => "upstream timeout",
        }
    }

    /// The problem `type` URI: `urn:rampart:problem:<kebab-case code>`.
    pub fn type_uri(self) -> String {
        format!(
            "urn:rampart:problem:{}",
            self.as_str().to_ascii_lowercase().replace('_', "-")
        )
    }
}

impl std::fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rejection, ready to render as `application/problem+json`.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The cause.
    pub code: ProblemCode,
    /// Rampart-written detail for the client (never upstream or secret text).
    pub detail: Option<String>,
    /// Extra members (e.g. `request_time`, `server_time`, `window`, `limit`).
    pub extra: Map<String, Value>,
    /// Seconds for a `Retry-After` header, where the cause has one.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'static str,
    status: u16,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl Problem {
    /// A problem with no detail.
    pub fn new(code: ProblemCode) -> Self {
        Self {
            code,
            detail: None,
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// Sets the client-facing detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `Retry-After` seconds.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Renders the JSON body. Reserved members cannot be overridden by
    /// `extra` because `serde_json` keeps the first of duplicate keys out:
    /// reserved names are filtered before serialising.
    pub fn to_json(&self, request_id: Option<&str>) -> Vec<u8> {
        const RESERVED: [&str; 6] = ["type", "title", "status", "code", "detail", "request_id"];
        let extra: Map<String, Value> = self
            .extra
            .iter()
            .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let body = Body {
            type_uri: self.code.type_uri(),
            title: self.code.title(),
            status: self.code.status().as_u16(),
            code: self.code.as_str(),
            detail: self.detail.as_deref(),
            request_id,
            extra: &extra,
        };
        // Serialising a struct of strings and JSON values cannot fail; fall
        // back to a fixed body rather than panic if it ever does.
        serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"type":"urn:rampart:problem:internal-error","title":"internal error","status":500,"code":"INTERNAL_ERROR"}"#.to_vec()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_statuses_match_contract() {
        let mut seen = HashSet::new();
        for c in ProblemCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {c}");
            assert!(c.status().is_client_error() || c.status().is_server_error());
        }
        assert_eq!(ProblemCode::PayloadTooLarge.status().as_u16(), 413);
        assert_eq!(ProblemCode::HeadersTooLarge.status().as_u16(), 431);
        assert_eq!(ProblemCode::RequestTimeout.status().as_u16(), 408);
        assert_eq!(ProblemCode::Overloaded.status().as_u16(), 503);
        assert_eq!(ProblemCode::UpstreamTimeout.status().as_u16(), 504);
        assert_eq!(ProblemCode::NotFound.status().as_u16(), 404);
        assert_eq!(ProblemCode::MethodNotAllowed.status().as_u16(), 405);
        assert_eq!(ProblemCode::OperatorAuthRequired.status().as_u16(), 401);
        assert_eq!(
            ProblemCode::OperatorAuthFailed.type_uri(),
            "urn:rampart:problem:operator-auth-failed"
        );
    }

    #[test]
    fn renders_rfc9457_body() {
        let p = Problem::new(ProblemCode::SignatureInvalid)
            .detail("bad")
            .with("window", 5)
            .with("code", "EVIL");
        let v: Value = serde_json::from_slice(&p.to_json(Some("rid-1"))).unwrap();
        assert_eq!(v["type"], "urn:rampart:problem:signature-invalid");
        assert_eq!(v["title"], "signature invalid");
        assert_eq!(v["status"], 401);
        assert_eq!(v["code"], "SIGNATURE_INVALID");
        assert_eq!(v["detail"], "bad");
        assert_eq!(v["request_id"], "rid-1");
        assert_eq!(v["window"], 5);
    }
}
