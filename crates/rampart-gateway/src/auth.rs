//! The authentication phase: every non-public route needs a request signed
//! by a known, live key, fresh, never seen before, from an allowed network,
//! on the bound certificate, with the route's scope. The result is a typed
//! [`Principal`]; the upstream then receives the identity as headers the
//! gateway signs itself (RFC 9421, `hmac-sha256`), and nothing else the
//! client sent as credentials.
//!
//! Order of checks (each failure is one CONTRACT.md code):
//! detect scheme → key lookup (unknown: a dummy verification first, so
//! timing does not tell unknown from known keys) → freshness → signature
//! (then the previous secret inside its overlap window) → revoked → expired
//! → bound certificate → allowed networks → replay (after the signature, so
//! nobody can burn someone else's nonces) → scope.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rampart_auth::rfc9421::{self, SigningKey};
use rampart_auth::{
    AuthError, Claims, KeyDirectory, KeyMaterial, KeyRecord, NonceCheck, NonceStore, Principal,
    RequestView, Scheme, TimeUnit,
};
use rampart_core::config::AuthConfig;
use rampart_core::{Problem, ProblemCode};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::proxy::ConnInfo;

/// Key id the gateway uses in its own signatures to the upstream.
pub const GATEWAY_KEY_ID: &str = "rampart-gateway";

/// Identity headers the upstream receives (client copies are dropped).
pub const H_ACCOUNT: HeaderName = HeaderName::from_static("rampart-account");
/// The authenticated key id.
pub const H_KEY_ID: HeaderName = HeaderName::from_static("rampart-key-id");
/// The authenticated scopes, comma-separated.
pub const H_SCOPES: HeaderName = HeaderName::from_static("rampart-scopes");

/// Signs what the gateway sends upstream, so the core can trust only it.
pub struct IdentitySigner {
    key: SigningKey,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentitySigner(**REDACTED**)")
    }
}

impl IdentitySigner {
    /// A signer with a shared HMAC-SHA256 secret (at least 32 bytes).
    ///
    /// # Errors
    /// A message if the secret is shorter than 32 bytes.
    pub fn hmac(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err("the upstream identity secret must be at least 32 bytes".to_owned());
        }
        Ok(Self {
            key: SigningKey::Hmac(Zeroizing::new(secret.to_vec())),
        })
    }

    /// Adds `Signature-Input` / `Signature` (label `sig1`, key id
    /// [`GATEWAY_KEY_ID`]) covering method, authority, path, query, the
    /// identity headers present, `x-request-id` and `content-digest` (added
    /// here for a non-empty body).
    ///
    /// # Errors
    /// Signing errors (never for well-formed input).
    pub fn sign(
        &self,
        method: &Method,
        authority: &str,
        path_and_query: &str,
        headers: &mut HeaderMap,
        body: &[u8],
        nonce: &str,
    ) -> Result<(), AuthError> {
        if !body.is_empty() {
            let digest =
                rampart_auth::digest::content_digest(rampart_auth::digest::DigestAlg::Sha256, body);
            if let Ok(v) = HeaderValue::from_str(&digest) {
                headers.insert(HeaderName::from_static("content-digest"), v);
            }
        }
        let mut extra: Vec<&str> = Vec::with_capacity(4);
        for h in ["rampart-account", "rampart-key-id", "rampart-scopes"] {
            if headers.contains_key(h) {
                extra.push(h);
            }
        }
        if headers.contains_key("x-request-id") {
            extra.push("x-request-id");
        }
        let view = RequestView {
            method,
            path_and_query,
            authority,
            scheme: "http",
            headers,
            body,
        };
        let sig = rfc9421::sign(
            &view,
            GATEWAY_KEY_ID,
            Scheme::Rfc9421HmacSha256,
            &self.key,
            now_ms() / 1000,
            nonce,
            &extra,
        )?;
        sig.insert_into(headers)
    }
}

/// What authentication needs from outside the configuration snapshot.
pub struct AuthServices {
    /// Key lookup (store-backed, cached).
    pub directory: Arc<dyn KeyDirectory>,
    /// Single-use nonces.
    pub nonces: Arc<dyn NonceStore>,
    /// Signs the identity sent upstream.
    pub identity: Arc<IdentitySigner>,
    /// Issues and verifies bearer access tokens (`None`: no token endpoint).
    pub tokens: Option<Arc<crate::tokens::Tokens>>,
    /// The audit trail (`None`: decisions are only logged).
    pub audit: Option<Arc<crate::audit::Auditor>>,
    /// Accounts, MFA enrolments and address books (`None`: sub-accounts,
    /// MFA step-up and Cedar policies cannot be used and fail closed).
    pub accounts: Option<Arc<dyn rampart_auth::AccountDirectory>>,
}

impl std::fmt::Debug for AuthServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServices").finish_non_exhaustive()
    }
}

/// Current time, Unix milliseconds.
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The request as the verifiers see it.
pub struct AuthInput<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path and query as received.
    pub path_and_query: &'a str,
    /// Authority the client addressed.
    pub authority: &'a str,
    /// `https` or `http`.
    pub scheme: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Buffered body.
    pub body: &'a [u8],
}

/// Result of a successful authentication: the principal and the headers to
/// strip before proxying.
#[derive(Debug)]
pub struct Authenticated {
    /// Who sent the request.
    pub principal: Principal,
    /// Credential headers of the scheme used.
    pub strip: Vec<&'static str>,
    /// The key's record (settings for authorization and pre-trade limits).
    pub record: Arc<KeyRecord>,
}

enum Detected {
    Rfc9421(rfc9421::Parsed),
    Profile(Claims),
}

fn auth_problem(e: &AuthError) -> Problem {
    match e {
        AuthError::Missing(d) => Problem::new(ProblemCode::MissingCredentials).detail(*d),
        AuthError::Digest(d) => Problem::new(ProblemCode::DigestMismatch).detail(*d),
        AuthError::Expired(d) => Problem::new(ProblemCode::TimestampTooOld).detail(*d),
        AuthError::BadSignature => {
            Problem::new(ProblemCode::SignatureInvalid).detail("the signature does not verify")
        }
        other => Problem::new(ProblemCode::SignatureInvalid).detail(other.to_string()),
    }
}

fn family_matches(request: Scheme, key: Scheme) -> bool {
    use Scheme as S;
    let rfc = |s| {
        matches!(
            s,
            S::Rfc9421HmacSha256 | S::Rfc9421Ed25519 | S::Rfc9421EcdsaP256
        )
    };
    let binance = |s| matches!(s, S::BinanceHmac | S::BinanceEd25519);
    let coinbase = |s| matches!(s, S::CoinbaseJwtEs256 | S::CoinbaseJwtEdDsa);
    (rfc(request) && rfc(key))
        || (binance(request) && binance(key))
        || (coinbase(request) && coinbase(key))
        || (request == S::KrakenHmac && key == S::KrakenHmac)
}

/// A fixed dummy key: verifying against it costs what a real HMAC
/// verification costs, so an unknown key id answers in the same time.
fn dummy_key() -> KeyMaterial {
    KeyMaterial::Hmac(Zeroizing::new(vec![0x5c; 32]))
}

fn verify_with(
    detected: &Detected,
    view: &RequestView<'_>,
    scheme: Scheme,
    key: &KeyMaterial,
) -> Result<(), AuthError> {
    match detected {
        Detected::Rfc9421(p) => p.verify(view, scheme, key),
        Detected::Profile(c) => {
            let mut c = c.clone();
            c.scheme = scheme;
            rampart_auth::profiles::verify(view, &c, key)
        }
    }
}

/// Authenticates a request for a route that needs `scope`.
///
/// # Errors
/// The problem to answer with.
pub async fn authenticate(
    svc: &AuthServices,
    cfg: &AuthConfig,
    conn: &ConnInfo,
    scope: Option<&str>,
    input: &AuthInput<'_>,
) -> Result<Authenticated, Problem> {
    if let (Some(tokens), Some(token)) = (&svc.tokens, bearer(input.headers)) {
        match tokens.verify(token, now_ms()) {
            Ok(claims) => return authenticate_token(svc, conn, scope, claims).await,
            Err(crate::tokens::TokenError::NotOurs) => {}
            Err(crate::tokens::TokenError::Invalid(why)) => {
                return Err(Problem::new(ProblemCode::SignatureInvalid).detail(why))
            }
            Err(crate::tokens::TokenError::Expired { exp_ms }) => {
                return Err(Problem::new(ProblemCode::TimestampTooOld)
                    .detail("the access token has expired; request a new one")
                    .with("request_time_ms", exp_ms)
                    .with("server_time_ms", now_ms()))
            }
        }
    }
    let view = RequestView {
        method: input.method,
        path_and_query: input.path_and_query,
        authority: input.authority,
        scheme: input.scheme,
        headers: input.headers,
        body: input.body,
    };
    let now = now_ms();
    let detected = match rfc9421::parse(&view).map_err(|e| auth_problem(&e))? {
        Some(p) => Detected::Rfc9421(p),
        None => match rampart_auth::profiles::detect(&view, now).map_err(|e| auth_problem(&e))? {
            Some(c) => Detected::Profile(c),
            None => {
                return Err(Problem::new(ProblemCode::MissingCredentials).detail(
                    "this route needs a signed request (RFC 9421 Signature-Input/Signature, or the key's exchange profile)",
                ))
            }
        },
    };
    let claims = match &detected {
        Detected::Rfc9421(p) => p.claims(),
        Detected::Profile(c) => c.clone(),
    };

    let record: Arc<KeyRecord> = match svc.directory.lookup(&claims.key_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            // Same work as for a known HMAC key, then the answer.
            let _ = verify_with(&detected, &view, claims.scheme, &dummy_key());
            return Err(Problem::new(ProblemCode::UnknownKey).detail("the key id is not known"));
        }
        Err(e) => {
            tracing::error!(error = %e, "key directory unavailable");
            return Err(Problem::new(ProblemCode::AuthUnavailable)
                .detail("keys cannot be looked up right now; the request was not forwarded"));
        }
    };
    if !family_matches(claims.scheme, record.scheme) {
        return Err(Problem::new(ProblemCode::SignatureInvalid).detail(format!(
            "the key is registered for `{}`; the request uses another scheme",
            record.scheme.as_str()
        )));
    }

    // Freshness, on the claimed times (cheap, before any signature work).
    let max_age = claims
        .window_ms
        .map_or(ms(cfg.max_age), |w| i64::try_from(w).unwrap_or(i64::MAX));
    let max_future = ms(cfg.max_future);
    if let Some(created) = claims.created {
        let created_ms = match claims.created_unit {
            TimeUnit::Seconds => created.saturating_mul(1000),
            TimeUnit::Milliseconds => created,
        };
        // RFC 9421 `created` has one-second resolution: allow the rest of
        // its second.
        let resolution = match claims.created_unit {
            TimeUnit::Seconds => 999,
            TimeUnit::Milliseconds => 0,
        };
        if now.saturating_sub(created_ms.saturating_add(resolution)) > max_age {
            return Err(time_problem(
                ProblemCode::TimestampTooOld,
                created_ms,
                now,
                max_age,
                max_future,
            )
            .detail(format!(
                "the request was created more than {max_age} ms ago"
            )));
        }
        if created_ms.saturating_sub(now) > max_future {
            return Err(time_problem(ProblemCode::TimestampInFuture, created_ms, now, max_age, max_future)
                .detail(format!("the request is dated more than {max_future} ms in the future; correct the clock with Rampart-Server-Time")));
        }
    } else if claims.counter_nonce.is_none() {
        return Err(Problem::new(ProblemCode::SignatureInvalid)
            .detail("the request carries no creation time"));
    }
    if let Some(exp) = claims.expires {
        if exp.saturating_mul(1000) < now {
            return Err(time_problem(
                ProblemCode::TimestampTooOld,
                exp.saturating_mul(1000),
                now,
                max_age,
                max_future,
            )
            .detail("the request's signature has expired"));
        }
    }

    // Signature: the current key, then the previous secret inside its window.
    let mut verified = verify_with(&detected, &view, record.scheme, &record.material);
    if verified.is_err() {
        if let Some((prev, until)) = &record.previous {
            if now < *until && verify_with(&detected, &view, record.scheme, prev).is_ok() {
                verified = Ok(());
            }
        }
    }
    verified.map_err(|e| auth_problem(&e))?;

    key_gates(&record, conn, now, "the key")?;
    let ip: IpAddr = conn.peer.ip();

    // Replay.
    if let Some(nonce) = &claims.nonce {
        let lifetime = max_age.saturating_add(max_future).saturating_add(1000);
        match svc
            .nonces
            .check_and_insert(&record.key_id, nonce, now, now.saturating_add(lifetime))
            .await
        {
            NonceCheck::Fresh => {}
            NonceCheck::Replayed => {
                return Err(
                    Problem::new(ProblemCode::ReplayedNonce).detail("this nonce was already used")
                )
            }
            NonceCheck::Full => {
                tracing::error!("nonce cache full: refusing signed requests until entries expire");
                return Err(Problem::new(ProblemCode::AuthUnavailable)
                    .detail("the replay cache is full; retry shortly"));
            }
        }
    }
    if let Some(counter) = claims.counter_nonce {
        match svc
            .directory
            .advance_counter(&record.key_id, counter, record.nonce_window)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(Problem::new(ProblemCode::ReplayedNonce).detail(
                    "the nonce was used before, or is not above the key's highest nonce minus its nonce window",
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "nonce counter unavailable");
                return Err(Problem::new(ProblemCode::AuthUnavailable)
                    .detail("the nonce counter cannot be checked right now"));
            }
        }
    }

    if let Some(scope) = scope {
        if !record.has_scope(scope) {
            return Err(Problem::new(ProblemCode::ScopeMissing)
                .detail(format!("the key lacks the `{scope}` scope")));
        }
    }

    Ok(Authenticated {
        principal: Principal {
            key_id: record.key_id.clone(),
            account_id: record.account_id.clone(),
            parent_account_id: record.parent_account_id.clone(),
            scopes: record.scopes.clone(),
            scheme: record.scheme,
            client_ip: ip,
            cert_fingerprint: conn.client_cert_sha256.clone(),
            mfa_covered: claims.covers_mfa,
            token_id: None,
        },
        strip: claims.credential_headers,
        record: Arc::clone(&record),
    })
}

/// The checks every use of a key passes after its proof: not revoked, not
/// expired, on its bound certificate, from an allowed network.
fn key_gates(record: &KeyRecord, conn: &ConnInfo, now: i64, what: &str) -> Result<(), Problem> {
    if record.revoked {
        return Err(Problem::new(ProblemCode::KeyRevoked).detail(format!(
            "{what} was revoked (which also revokes its tokens)"
        )));
    }
    if record.expires_at_ms.is_some_and(|e| e <= now) {
        return Err(Problem::new(ProblemCode::KeyExpired).detail(format!("{what} has expired")));
    }
    if let Some(bound) = &record.cert_fingerprint {
        let presented = conn.client_cert_sha256.as_deref().unwrap_or("");
        let same = presented.len() == bound.len()
            && bool::from(presented.as_bytes().ct_eq(bound.as_bytes()));
        if !same {
            return Err(Problem::new(ProblemCode::CertRequired).detail(format!(
                "{what} is bound to a client certificate that was not presented on this connection"
            )));
        }
    }
    if !record.ip_allowed(conn.peer.ip()) {
        return Err(Problem::new(ProblemCode::IpNotAllowed)
            .detail("the key may not be used from this address"));
    }
    Ok(())
}

/// Longest lifetime accepted for an RFC 7523 client assertion.
const MAX_ASSERTION_LIFETIME_S: i64 = 300;

/// RFC 7523 §2.2 client authentication at the token endpoint: a JWT signed
/// with the key's own private key (ES256 or EdDSA; `kid` = `iss` = `sub` =
/// the key id, `aud` = the token endpoint URL, `exp` at most 5 minutes
/// ahead, `jti` single-use).
///
/// # Errors
/// The problem to answer with.
pub async fn authenticate_assertion(
    svc: &AuthServices,
    conn: &ConnInfo,
    assertion: &str,
    audience: &str,
) -> Result<Authenticated, Problem> {
    use rampart_auth::profiles::jwt;
    let invalid = |why: &str| Problem::new(ProblemCode::SignatureInvalid).detail(why.to_owned());
    let token = jwt::parse(assertion).map_err(|e| invalid(&e.to_string()))?;
    let key_id = token.header.kid.clone();
    let record = match svc.directory.lookup(&key_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(Problem::new(ProblemCode::UnknownKey).detail("the key id is not known"))
        }
        Err(e) => {
            tracing::error!(error = %e, "key directory unavailable");
            return Err(Problem::new(ProblemCode::AuthUnavailable)
                .detail("keys cannot be looked up right now"));
        }
    };
    token
        .verify_signature(&record.material)
        .map_err(|_| invalid("the client assertion does not verify with the key"))?;
    let p = &token.decoded.payload;
    let s = |k: &str| p.get(k).and_then(serde_json::Value::as_str);
    if s("iss") != Some(key_id.as_str()) || s("sub") != Some(key_id.as_str()) {
        return Err(invalid("iss and sub must both be the key id"));
    }
    let aud_ok = match p.get("aud") {
        Some(serde_json::Value::String(a)) => a == audience,
        Some(serde_json::Value::Array(v)) => v.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(invalid("aud must be this token endpoint's URL"));
    }
    let now = now_ms();
    let exp = p
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| invalid("the client assertion has no exp"))?;
    if exp.saturating_mul(1000) <= now {
        return Err(Problem::new(ProblemCode::TimestampTooOld)
            .detail("the client assertion has expired")
            .with("request_time_ms", exp.saturating_mul(1000))
            .with("server_time_ms", now));
    }
    if exp.saturating_sub(now / 1000) > MAX_ASSERTION_LIFETIME_S {
        return Err(invalid("the client assertion may live at most 5 minutes"));
    }
    let jti = s("jti").ok_or_else(|| invalid("the client assertion has no jti"))?;
    key_gates(&record, conn, now, "the key")?;
    let replay_key = format!("jti:{jti}");
    match svc
        .nonces
        .check_and_insert(
            &record.key_id,
            &replay_key,
            now,
            exp.saturating_mul(1000).saturating_add(1000),
        )
        .await
    {
        NonceCheck::Fresh => {}
        NonceCheck::Replayed => {
            return Err(Problem::new(ProblemCode::ReplayedNonce)
                .detail("this client assertion (jti) was already used"))
        }
        NonceCheck::Full => {
            return Err(Problem::new(ProblemCode::AuthUnavailable)
                .detail("the replay cache is full; retry shortly"))
        }
    }
    Ok(Authenticated {
        principal: Principal {
            key_id: record.key_id.clone(),
            account_id: record.account_id.clone(),
            parent_account_id: record.parent_account_id.clone(),
            scopes: record.scopes.clone(),
            scheme: record.scheme,
            client_ip: conn.peer.ip(),
            cert_fingerprint: conn.client_cert_sha256.clone(),
            mfa_covered: false,
            token_id: None,
        },
        strip: vec![],
        record: Arc::clone(&record),
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A request with one of Rampart's access tokens: the key must still be
/// live, and the token's scopes count only where the key still has them.
async fn authenticate_token(
    svc: &AuthServices,
    conn: &ConnInfo,
    scope: Option<&str>,
    claims: crate::tokens::TokenClaims,
) -> Result<Authenticated, Problem> {
    let record = match svc.directory.lookup(&claims.key_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(
                Problem::new(ProblemCode::UnknownKey).detail("the token's key no longer exists")
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "key directory unavailable");
            return Err(Problem::new(ProblemCode::AuthUnavailable)
                .detail("keys cannot be looked up right now; the request was not forwarded"));
        }
    };
    let now = now_ms();
    key_gates(&record, conn, now, "the token's key")?;
    let ip = conn.peer.ip();
    let scopes: Vec<String> = claims
        .scopes
        .into_iter()
        .filter(|s| record.has_scope(s))
        .collect();
    match scope {
        None => {
            return Err(Problem::new(ProblemCode::MissingCredentials).detail(
                "a token cannot be exchanged for another token: sign the request with the key",
            ))
        }
        Some(needed) if !scopes.iter().any(|s| s == needed) => {
            return Err(Problem::new(ProblemCode::ScopeMissing)
                .detail(format!("the token lacks the `{needed}` scope")))
        }
        Some(_) => {}
    }
    Ok(Authenticated {
        principal: Principal {
            key_id: record.key_id.clone(),
            account_id: record.account_id.clone(),
            parent_account_id: record.parent_account_id.clone(),
            scopes,
            scheme: record.scheme,
            client_ip: ip,
            cert_fingerprint: conn.client_cert_sha256.clone(),
            mfa_covered: false,
            token_id: Some(claims.jti),
        },
        strip: vec!["authorization"],
        record: Arc::clone(&record),
    })
}

fn time_problem(
    code: ProblemCode,
    request_ms: i64,
    now: i64,
    max_age: i64,
    max_future: i64,
) -> Problem {
    Problem::new(code)
        .with("request_time_ms", request_ms)
        .with("server_time_ms", now)
        .with("max_age_ms", max_age)
        .with("max_future_ms", max_future)
}
