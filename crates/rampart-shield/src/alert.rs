//! Security alerts and the signature on their webhook deliveries.
//!
//! [`Alert`] is the JSON payload the gateway POSTs to the operator's
//! webhook; [`crate::abuse::AuthGuard`] and [`crate::risk`] build them. This
//! module only shapes and signs payloads: sending, retrying and logging
//! belong to the gateway.
//!
//! # Signature
//!
//! Each delivery carries a header ([`SIGNATURE_HEADER`]) whose value is
//!
//! ```text
//! t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(secret, "<t>.<body>")>
//! ```
//!
//! the scheme Stripe uses. Signing the timestamp with the body lets the
//! receiver refuse replays older than a tolerance of its choice (5 minutes
//! is usual), and the `v1=` label leaves room for another algorithm later.
//! While a secret is being rotated the sender may add one `v1=` element per
//! secret; [`verify_webhook`] accepts the header if any of them matches.
//! Receivers must compare in constant time, as [`verify_webhook`] does, and
//! must verify the exact bytes received, before parsing the JSON.

use std::fmt::Write as _;
use std::time::Duration;

use aws_lc_rs::hmac;
use serde::Serialize;

/// The HTTP header that carries [`sign_webhook`]'s output.
pub const SIGNATURE_HEADER: &str = "Rampart-Signature";

/// Stable alert kinds (the `kind` field), for routing rules on the receiver.
pub mod kind {
    /// Many sources failing authentication over many key ids with a low
    /// success ratio: a credential-stuffing campaign.
    pub const CREDENTIAL_STUFFING: &str = "credential_stuffing";
    /// Authentication failures on one key id from several sources.
    pub const KEY_TARGETED: &str = "key_targeted";
    /// One (source IP, key id) pair reached the failure limit and is locked.
    pub const PAIR_LOCKED: &str = "pair_locked";
    /// A source IP failed on too many attempts and is locked.
    pub const IP_LOCKED: &str = "ip_locked";
    /// A source prefix (/24, /64) failed far too often and is locked.
    pub const PREFIX_LOCKED: &str = "prefix_locked";
    /// The failed-authentication tracker is full of live state and refuses
    /// unknown sources until room frees up.
    pub const GUARD_SATURATED: &str = "guard_saturated";
    /// An authenticated request was denied on its risk score.
    pub const RISK_DENY: &str = "risk_deny";
}

/// How urgently a human should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth recording; no action expected (a single lockout).
    Info,
    /// Someone should look soon (a source or key under attack).
    Warning,
    /// Someone should look now (a campaign, the guard saturated).
    Critical,
}

impl Severity {
    /// The lowercase name used in JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One security alert, serialised as the webhook body.
///
/// ```json
/// {"kind":"credential_stuffing","severity":"critical","at_unix_ms":1700000000000,
///  "summary":"…","details":{"distinct_ips":57,…}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// What happened; one of the constants in [`kind`].
    pub kind: &'static str,
    /// How urgent it is.
    pub severity: Severity,
    /// When it was raised, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// One human-readable line.
    pub summary: String,
    /// Kind-specific structured data (counts, addresses, signals).
    pub details: serde_json::Value,
}

impl Alert {
    /// The JSON body to send (and sign). Serialising an alert cannot fail
    /// (string keys, finite numbers); should it ever, a minimal body naming
    /// the kind is returned instead, so an alert is never lost silently.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| {
            format!(
                "{{\"kind\":\"{}\",\"severity\":\"{}\",\"at_unix_ms\":{}}}",
                self.kind,
                self.severity.as_str(),
                self.at_unix_ms
            )
            .into_bytes()
        })
    }
}

/// The [`SIGNATURE_HEADER`] value for `body` sent at `timestamp_unix_s`:
/// `t=<ts>,v1=<hex HMAC-SHA256 over "<ts>.<body>">`.
#[must_use]
pub fn sign_webhook(secret: &[u8], timestamp_unix_s: u64, body: &[u8]) -> String {
    let tag = hmac::sign(&key(secret), &signed_payload(timestamp_unix_s, body));
    let mut out = format!("t={timestamp_unix_s},v1=");
    for b in tag.as_ref() {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Why [`verify_webhook`] refused a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The header is not `t=<digits>,v1=<hex>[,v1=<hex>…]`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further from now than the tolerance.
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// No `v1` signature matches the body under the secret.
    #[error("no signature matches")]
    Mismatch,
}

/// Checks a [`SIGNATURE_HEADER`] value against the received `body`:
/// well-formed, timestamp within `tolerance` of `now_unix_s` (either
/// direction), and at least one `v1=` tag equal, in constant time, to the
/// HMAC-SHA256 of `"<t>.<body>"` under `secret`.
///
/// # Errors
///
/// [`WebhookError`] naming the first check that failed.
pub fn verify_webhook(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix_s: u64,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or(WebhookError::Malformed)?;
        match name {
            "t" => {
                if timestamp.is_some()
                    || value.is_empty()
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(WebhookError::Malformed);
                }
                timestamp = Some(value.parse::<u64>().map_err(|_| WebhookError::Malformed)?);
            }
            "v1" => tags.push(decode_hex(value).ok_or(WebhookError::Malformed)?),
            // Unknown schemes are ignored, as Stripe's receivers do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::Malformed)?;
    if tags.is_empty() {
        return Err(WebhookError::Malformed);
    }
    if now_unix_s.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(WebhookError::Stale);
    }
    let key = key(secret);
    let payload = signed_payload(timestamp, body);
    // `hmac::verify` compares in constant time; try every tag so the time
    // taken does not say which one matched.
    let mut ok = false;
    for tag in &tags {
        ok |= hmac::verify(&key, &payload, tag).is_ok();
    }
    if ok {
        Ok(())
    } else {
        Err(WebhookError::Mismatch)
    }
}

fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

fn signed_payload(timestamp_unix_s: u64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp_unix_s.to_string();
    let mut payload = Vec::with_capacity(ts.len() + 1 + body.len());
    payload.extend_from_slice(ts.as_bytes());
    payload.push(b'.');
    payload.extend_from_slice(body);
    payload
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    // A SHA-256 tag is 32 bytes; refuse anything else early.
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some((nibble(*hi)? << 4) | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let body = br#"{"kind":"x"}"#;
        let h = sign_webhook(b"secret", 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        let tol = Duration::from_secs(300);
        assert_eq!(
            verify_webhook(b"secret", &h, body, 1_700_000_100, tol),
            Ok(())
        );
        assert_eq!(
            verify_webhook(b"other", &h, body, 1_700_000_100, tol),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"secret", &h, b"{}", 1_700_000_100, tol),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"secret", &h, body, 1_700_000_301, tol),
            Err(WebhookError::Stale)
        );
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("key", "1.The quick brown fox jumps over the lazy dog"),
        // computed independently (Python's hmac module).
        let h = sign_webhook(b"key", 1, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            h,
            "t=1,v1=3ff4d3cc115b639a16dc5b217aa5c89be41d1e4b54efc356d63d0cd2a65b30f1"
        );
    }

    #[test]
    fn rotation_and_malformed() {
        let body = b"{}";
        let old = sign_webhook(b"old", 10, body);
        let new = sign_webhook(b"new", 10, body);
        let both = format!("{new},{}", old.trim_start_matches("t=10,"));
        let tol = Duration::from_secs(5);
        assert_eq!(verify_webhook(b"old", &both, body, 10, tol), Ok(()));
        assert_eq!(verify_webhook(b"new", &both, body, 10, tol), Ok(()));
        for bad in [
            "",
            "t=10",
            "v1=00",
            "t=x,v1=00",
            "t=10,v1=zz",
            "t=10,t=10,v1=00",
        ] {
            assert_eq!(
                verify_webhook(b"old", bad, body, 10, tol),
                Err(WebhookError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn alert_json_shape() {
        let a = Alert {
            kind: kind::RISK_DENY,
            severity: Severity::Warning,
            at_unix_ms: 5,
            summary: "s".into(),
            details: serde_json::json!({"score": 95}),
        };
        let v: serde_json::Value = serde_json::from_slice(&a.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind":"risk_deny","severity":"warning","at_unix_ms":5,
                "summary":"s","details":{"score":95}})
        );
    }
}
