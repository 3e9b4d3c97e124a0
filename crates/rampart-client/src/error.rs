//! The client's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Why loading credentials, signing or sending failed.
///
/// Messages name files, keys (by name or id), schemes and causes; they
/// never contain a secret, a private key, a signature or a TOTP seed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A file could not be read.
    #[error("`{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The credentials file is not in the `demo-credentials.json` shape.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A key's entry is unusable: unknown scheme, missing or invalid
    /// secret or private key.
    #[error("key `{key}`: {reason}")]
    Key {
        /// The key's name (or id when it has no name).
        key: String,
        /// What is wrong (never the material itself).
        reason: String,
    },
    /// The signing scheme refused the request (see the message).
    #[error("signing failed: {0}")]
    Sign(#[from] rampart_auth::AuthError),
    /// The request cannot be built: bad URL, path, header or body.
    #[error("invalid request: {0}")]
    Request(String),
    /// The CA certificate or the TLS configuration is unusable.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Connecting, the TLS handshake or the HTTP exchange failed.
    #[error("transport: {0}")]
    Transport(String),
    /// No complete response within the client's timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The response body exceeded the client's limit.
    #[error("response body larger than {0} bytes")]
    ResponseTooLarge(usize),
}

impl ClientError {
    pub(crate) fn request(detail: impl Into<String>) -> Self {
        ClientError::Request(detail.into())
    }

    pub(crate) fn key(key: &str, reason: impl Into<String>) -> Self {
        ClientError::Key {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// `err` and its sources, joined with `: ` (transport errors nest).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}
