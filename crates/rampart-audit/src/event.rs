//! The audit event schema: one typed record for every security decision
//! and every administrative change.
//!
//! An event is serialised to one line of compact JSON (fields in a fixed
//! order, payload keys sorted), and those bytes are the log entry: the
//! Merkle leaf is `SHA-256(0x00 ‖ entry)` over exactly them. Parsing is
//! only needed for search and export; verification works on bytes.
//!
//! Sensitive payload values (order details, balances, withdrawal
//! addresses, request bodies) never reach the log in plaintext: the
//! producer passes them through a [`FieldSealer`] (the audit data key of
//! the key-management layer) or marks them redacted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::clock::{ClockSync, Timestamp};

/// Version of the event schema, stored in every entry (`v`).
pub const SCHEMA_VERSION: u8 = 1;

/// Largest serialised entry the log accepts (bytes). Producers truncate
/// free-text fields long before this.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// Stable event type names. A type is `area.what`; new types may be
/// added, existing ones never change meaning.
pub mod types {
    /// A request authenticated successfully.
    pub const AUTH_SUCCESS: &str = "auth.success";
    /// A request failed authentication.
    pub const AUTH_FAILURE: &str = "auth.failure";
    /// An authorization decision on a non-public route.
    pub const AUTHZ_DECISION: &str = "authz.decision";
    /// A request rejected by a later layer (validation, limits, upstream).
    pub const REQUEST_REJECTED: &str = "request.rejected";
    /// An API key was created.
    pub const APIKEY_CREATED: &str = "apikey.created";
    /// An API key was revoked.
    pub const APIKEY_REVOKED: &str = "apikey.revoked";
    /// An API key's secret was rotated.
    pub const APIKEY_ROTATED: &str = "apikey.rotated";
    /// An account was created or changed.
    pub const ACCOUNT_CHANGED: &str = "account.changed";
    /// A permission (scope, policy) changed.
    pub const PERMISSION_CHANGED: &str = "permission.changed";
    /// The configuration was loaded or reloaded.
    pub const CONFIG_LOADED: &str = "config.loaded";
    /// The gateway started.
    pub const GATEWAY_START: &str = "gateway.start";
    /// The gateway stopped.
    pub const GATEWAY_STOP: &str = "gateway.stop";
    /// Requests were refused because the audit queue was full.
    pub const AUDIT_OVERFLOW: &str = "audit.overflow";
    /// The log recovered from a torn tail on open.
    pub const AUDIT_RECOVERED: &str = "audit.recovered";
    /// Prefix of key-management events (`key.data_key_created`, …).
    pub const KEY_PREFIX: &str = "key.";
    /// The injection detector matched a request on a route in detect-only
    /// mode (the request was forwarded).
    pub const WAF_DETECTED: &str = "waf.detected";
    /// An adaptive-risk decision other than allow, with its score and
    /// signals.
    pub const RISK_DECISION: &str = "risk.decision";
    /// A source was locked out after failed authentications.
    pub const ABUSE_LOCKOUT: &str = "abuse.lockout";
    /// A distributed credential-stuffing attack was detected.
    pub const ABUSE_ALERT: &str = "abuse.alert";
    /// A client was banned for ignoring 429s.
    pub const LIMIT_BAN: &str = "limit.ban";
    /// An operator lifted lockouts or bans.
    pub const ABUSE_UNLOCK: &str = "abuse.unlock";
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// An API key (the id is the key id).
    Key,
    /// A human operator or end user (the id is the user name).
    User,
    /// The gateway itself (maintenance, start/stop).
    System,
    /// Nobody proven: an unauthenticated request (the id is what the
    /// request claimed, if anything).
    Anonymous,
}

/// The acting party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Kind of actor.
    pub kind: ActorKind,
    /// Identifier (key id, user name, `rampart`); never a secret.
    pub id: String,
}

impl Actor {
    /// The gateway itself.
    #[must_use]
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: "rampart".to_owned(),
        }
    }

    /// An API key.
    #[must_use]
    pub fn key(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Key,
            id: id.into(),
        }
    }

    /// An operator (CLI user).
    #[must_use]
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::User,
            id: id.into(),
        }
    }

    /// An unauthenticated party with what it claimed to be (truncated).
    #[must_use]
    pub fn anonymous(claimed: &str) -> Self {
        Self {
            kind: ActorKind::Anonymous,
            id: truncate(claimed, 96),
        }
    }
}

/// The outcome recorded by the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// Allowed only after a further factor (MFA step-up).
    StepUp,
    /// Not a decision: a change or lifecycle event.
    Info,
}

impl Decision {
    /// Stable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::StepUp => "step_up",
            Decision::Info => "info",
        }
    }
}

/// One payload value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadValue {
    /// Not sensitive: stored as is.
    Plain(serde_json::Value),
    /// Sensitive: the audit-field envelope (base64) produced by a
    /// [`FieldSealer`]. Only a holder of the audit data key reads it.
    Sealed(String),
    /// Sensitive and not kept at all (no sealer available, or the field
    /// is never worth keeping).
    Redacted,
}

/// Encrypts sensitive payload fields (implemented with the audit data key
/// of the key-management layer). `event_id` and `field` are bound into the
/// ciphertext, so a sealed value cannot be moved to another event or field.
pub trait FieldSealer: Send + Sync + fmt::Debug {
    /// Encrypts `plaintext`.
    ///
    /// # Errors
    /// A human-readable reason, never key material.
    fn seal(&self, event_id: &str, field: &str, plaintext: &[u8]) -> Result<Vec<u8>, String>;

    /// Decrypts what [`FieldSealer::seal`] produced for the same event and
    /// field.
    ///
    /// # Errors
    /// A human-readable reason (wrong key, moved or tampered value).
    fn open(&self, event_id: &str, field: &str, ciphertext: &[u8]) -> Result<Vec<u8>, String>;
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u8,
    /// Unique event id ([`new_event_id`]).
    pub id: String,
    /// UTC time, microseconds since the Unix epoch.
    pub time_us: i64,
    /// Whether the clock was known to be synchronised to UTC.
    pub clock: ClockSync,
    /// Event type (see [`types`]).
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who acted.
    pub actor: Actor,
    /// Account acted on or for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Client address, if the event comes from a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// What was attempted (route action, CLI command).
    pub action: String,
    /// What it was attempted on (path, key id, purpose).
    pub resource: String,
    /// Outcome.
    pub decision: Decision,
    /// Stable reason code (a problem code such as `AUTH_BAD_SIGNATURE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Request id (also sent upstream and to the client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Further fields, sorted by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub payload: BTreeMap<String, PayloadValue>,
}

/// Errors of encoding and decoding events.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The entry is not a valid event.
    #[error("audit entry is not a valid event: {0}")]
    Decode(String),
    /// The event serialises to more than [`MAX_ENTRY_BYTES`].
    #[error("audit event is {0} bytes, more than the limit")]
    TooLarge(usize),
    /// A sealed field could not be opened.
    #[error("sealed field `{field}` could not be opened: {reason}")]
    Open {
        /// Field name.
        field: String,
        /// Why.
        reason: String,
    },
}

impl AuditEvent {
    /// A new event with a fresh id, stamped by `now`.
    #[must_use]
    pub fn new(
        now: Timestamp,
        event_type: impl Into<String>,
        actor: Actor,
        action: impl Into<String>,
        resource: impl Into<String>,
        decision: Decision,
    ) -> Self {
        Self {
            v: SCHEMA_VERSION,
            id: new_event_id(),
            time_us: now.micros,
            clock: now.sync,
            event_type: event_type.into(),
            actor,
            account: None,
            source_ip: None,
            action: truncate(&action.into(), 256),
            resource: truncate(&resource.into(), 512),
            decision,
            reason: None,
            request_id: None,
            payload: BTreeMap::new(),
        }
    }

    /// Sets the account.
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(truncate(&account.into(), 128));
        self
    }

    /// Sets the source address.
    #[must_use]
    pub fn source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }

    /// Sets the reason code.
    #[must_use]
    pub fn reason(mut self, code: impl Into<String>) -> Self {
        self.reason = Some(truncate(&code.into(), 128));
        self
    }

    /// Sets the request id.
    #[must_use]
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(truncate(&id.into(), 128));
        self
    }

    /// Adds a non-sensitive payload field.
    #[must_use]
    pub fn plain(mut self, field: &str, value: impl Into<serde_json::Value>) -> Self {
        self.payload
            .insert(field.to_owned(), PayloadValue::Plain(value.into()));
        self
    }

    /// Adds a sensitive payload field: sealed with `sealer` if there is
    /// one (and it works), otherwise redacted. Never stored in plaintext.
    #[must_use]
    pub fn sensitive(
        mut self,
        sealer: Option<&dyn FieldSealer>,
        field: &str,
        plaintext: &[u8],
    ) -> Self {
        let value = match sealer.map(|s| s.seal(&self.id, field, plaintext)) {
            Some(Ok(ct)) => PayloadValue::Sealed(B64.encode(ct)),
            Some(Err(reason)) => {
                tracing::warn!(target: "rampart::audit", field, %reason, "sealing an audit field failed; it is redacted");
                PayloadValue::Redacted
            }
            None => PayloadValue::Redacted,
        };
        self.payload.insert(field.to_owned(), value);
        self
    }

    /// Opens a sealed payload field.
    ///
    /// # Errors
    /// [`EventError::Open`] if the field is not sealed or does not open.
    pub fn open_field(&self, sealer: &dyn FieldSealer, field: &str) -> Result<Vec<u8>, EventError> {
        let err = |reason: &str| EventError::Open {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        match self.payload.get(field) {
            Some(PayloadValue::Sealed(b64)) => {
                let ct = B64.decode(b64).map_err(|_| err("not base64"))?;
                sealer
                    .open(&self.id, field, &ct)
                    .map_err(|reason| err(&reason))
            }
            Some(_) => Err(err("the field is not sealed")),
            None => Err(err("no such field")),
        }
    }

    /// The log entry: compact JSON.
    ///
    /// # Errors
    /// [`EventError::TooLarge`] above [`MAX_ENTRY_BYTES`].
    pub fn to_entry(&self) -> Result<Vec<u8>, EventError> {
        let bytes = serde_json::to_vec(self).map_err(|e| EventError::Decode(e.to_string()))?;
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EventError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// Parses a log entry.
    ///
    /// # Errors
    /// [`EventError::Decode`] if it is not an event of a known schema.
    pub fn from_entry(entry: &[u8]) -> Result<Self, EventError> {
        let ev: Self =
            serde_json::from_slice(entry).map_err(|e| EventError::Decode(e.to_string()))?;
        if ev.v != SCHEMA_VERSION {
            return Err(EventError::Decode(format!(
                "unknown schema version {}",
                ev.v
            )));
        }
        Ok(ev)
    }
}

/// A unique event id: a random 64-bit prefix drawn once per process and a
/// counter (`3f9c…-1a`). Unique across the processes that write one log
/// (a gateway, CLI commands through the spool) without a system call per
/// event, which a UUID v4 per event would cost on the request path.
#[must_use]
pub fn new_event_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let (hi, _) = uuid::Uuid::new_v4().as_u64_pair();
        format!("{hi:016x}")
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{n:x}")
}

/// At most `max` characters of `s`.
#[must_use]
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct XorSealer;
    impl FieldSealer for XorSealer {
        fn seal(&self, id: &str, field: &str, p: &[u8]) -> Result<Vec<u8>, String> {
            let mut out = format!("{id}/{field}/").into_bytes();
            out.extend(p.iter().map(|b| b ^ 0x5a));
            Ok(out)
        }
        fn open(&self, id: &str, field: &str, c: &[u8]) -> Result<Vec<u8>, String> {
            let prefix = format!("{id}/{field}/").into_bytes();
            let body = c.strip_prefix(prefix.as_slice()).ok_or("moved")?;
            Ok(body.iter().map(|b| b ^ 0x5a).collect())
        }
    }

    fn now() -> Timestamp {
        Timestamp {
            micros: 1_700_000_000_123_456,
            sync: ClockSync::Synced,
        }
    }

    #[test]
    fn round_trip_and_stable_encoding() {
        let ev = AuditEvent::new(
            now(),
            types::AUTH_SUCCESS,
            Actor::key("k1"),
            "order.create",
            "/api/v3/order",
            Decision::Allow,
        )
        .account("acct-1")
        .source_ip("192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])))
        .request_id("req-1")
        .plain("scheme", "rfc9421")
        .sensitive(Some(&XorSealer), "body", b"symbol=BTCUSD&qty=5");
        let entry = ev.to_entry().unwrap_or_default();
        let text = String::from_utf8_lossy(&entry);
        assert!(text.starts_with("{\"v\":1,\"id\":"), "{text}");
        assert!(!text.contains("BTCUSD"), "{text}");
        let back = AuditEvent::from_entry(&entry);
        assert!(matches!(&back, Ok(b) if *b == ev), "{back:?}");
        let opened = ev.open_field(&XorSealer, "body").unwrap_or_default();
        assert_eq!(opened, b"symbol=BTCUSD&qty=5");
        // Same event, same bytes.
        assert_eq!(ev.to_entry().unwrap_or_default(), entry);
    }

    #[test]
    fn without_sealer_sensitive_is_redacted() {
        let ev = AuditEvent::new(
            now(),
            types::AUTHZ_DECISION,
            Actor::key("k1"),
            "withdraw",
            "/withdraw",
            Decision::Deny,
        )
        .sensitive(None, "address", b"bc1qsecret");
        let entry = ev.to_entry().unwrap_or_default();
        assert!(!String::from_utf8_lossy(&entry).contains("bc1qsecret"));
        assert_eq!(ev.payload.get("address"), Some(&PayloadValue::Redacted));
    }

    #[test]
    fn rejects_unknown_schema_and_garbage() {
        assert!(AuditEvent::from_entry(b"not json").is_err());
        let ev = AuditEvent::new(now(), "x.y", Actor::system(), "a", "r", Decision::Info);
        let mut v = serde_json::to_value(&ev).unwrap_or_default();
        v["v"] = 9.into();
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        assert!(AuditEvent::from_entry(&bytes).is_err());
    }
}
