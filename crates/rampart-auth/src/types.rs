//! Types shared by every scheme.

use std::fmt;

use zeroize::Zeroizing;

/// The parts of an HTTP request the verifiers see. The body is complete
/// (the gateway buffers it within the route's body limit first).
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// Request method.
    pub method: &'a http::Method,
    /// Path and query exactly as received (`/v1/orders?x=1`).
    pub path_and_query: &'a str,
    /// `host[:port]` the client addressed (`:authority` or `Host`), lowercase.
    pub authority: &'a str,
    /// `https` (or `http` under `dangerous.plaintext`).
    pub scheme: &'a str,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// Request body (may be empty).
    pub body: &'a [u8],
}

impl fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestView")
            .field("method", self.method)
            .field("path_and_query", &self.path_and_query)
            .field("authority", &self.authority)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Which wire scheme a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// RFC 9421 `hmac-sha256`.
    Rfc9421HmacSha256,
    /// RFC 9421 `ed25519`.
    Rfc9421Ed25519,
    /// RFC 9421 `ecdsa-p256-sha256`.
    Rfc9421EcdsaP256,
    /// Binance-style HMAC-SHA256 (hex signature).
    BinanceHmac,
    /// Binance-style Ed25519 (base64 signature).
    BinanceEd25519,
    /// Kraken-style HMAC-SHA512.
    KrakenHmac,
    /// Coinbase-style JWT, ES256.
    CoinbaseJwtEs256,
    /// Coinbase-style JWT, EdDSA.
    CoinbaseJwtEdDsa,
}

impl Scheme {
    /// Stable scheme name as stored on an API key and in
    /// `demo-credentials.json` (`hmac-sha256`, `ed25519`, `ecdsa-p256-sha256`,
    /// `binance-hmac-sha256`, `binance-ed25519`, `kraken-hmac-sha512`,
    /// `coinbase-jwt-es256`, `coinbase-jwt-eddsa`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Rfc9421HmacSha256 => "hmac-sha256",
            Scheme::Rfc9421Ed25519 => "ed25519",
            Scheme::Rfc9421EcdsaP256 => "ecdsa-p256-sha256",
            Scheme::BinanceHmac => "binance-hmac-sha256",
            Scheme::BinanceEd25519 => "binance-ed25519",
            Scheme::KrakenHmac => "kraken-hmac-sha512",
            Scheme::CoinbaseJwtEs256 => "coinbase-jwt-es256",
            Scheme::CoinbaseJwtEdDsa => "coinbase-jwt-eddsa",
        }
    }

    /// The scheme with this stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [
            Scheme::Rfc9421HmacSha256,
            Scheme::Rfc9421Ed25519,
            Scheme::Rfc9421EcdsaP256,
            Scheme::BinanceHmac,
            Scheme::BinanceEd25519,
            Scheme::KrakenHmac,
            Scheme::CoinbaseJwtEs256,
            Scheme::CoinbaseJwtEdDsa,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// Unit of a claimed timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Unix seconds (RFC 9421 `created`, JWT `nbf`/`iat`).
    Seconds,
    /// Unix milliseconds (Binance `timestamp`).
    Milliseconds,
}

/// What a request claims before any key is involved: the gateway looks the
/// key up by `key_id`, checks freshness and replay, then verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The scheme detected from the request's headers.
    pub scheme: Scheme,
    /// Public key id (RFC 9421 `keyid`, `X-MBX-APIKEY`, `API-Key`, JWT `kid`).
    pub key_id: String,
    /// Claimed creation time, if the scheme has one, in `created_unit`.
    pub created: Option<i64>,
    /// Unit of `created`.
    pub created_unit: TimeUnit,
    /// Per-request freshness window the request asks for (Binance
    /// `recvWindow`, milliseconds), already validated against the
    /// scheme's maximum.
    pub window_ms: Option<u64>,
    /// Expiry the request claims (JWT `exp`, RFC 9421 `expires`), Unix seconds.
    pub expires: Option<i64>,
    /// Single-use nonce (RFC 9421 `nonce`, JWT header `nonce`); replay-checked.
    pub nonce: Option<String>,
    /// Kraken-style counter nonce: must strictly increase per key.
    pub counter_nonce: Option<u64>,
    /// Names of the headers (lowercase) this scheme uses for credentials,
    /// so the gateway strips them before proxying.
    pub credential_headers: Vec<&'static str>,
    /// Whether the signature covers `rampart-mfa` (RFC 9421 only).
    pub covers_mfa: bool,
}

/// Key material a verifier checks against. Secrets are zeroized on drop.
pub enum KeyMaterial {
    /// A shared secret (HMAC schemes), raw bytes.
    Hmac(Zeroizing<Vec<u8>>),
    /// An Ed25519 public key (32 bytes).
    Ed25519([u8; 32]),
    /// An ECDSA P-256 public key, SEC1 uncompressed (65 bytes).
    EcdsaP256(Vec<u8>),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Hmac(_) => f.write_str("KeyMaterial::Hmac(**REDACTED**)"),
            KeyMaterial::Ed25519(_) => f.write_str("KeyMaterial::Ed25519(..)"),
            KeyMaterial::EcdsaP256(_) => f.write_str("KeyMaterial::EcdsaP256(..)"),
        }
    }
}

/// Why authentication failed. Each variant maps to one CONTRACT.md code in
/// the gateway; `detail` strings never contain secrets or signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials of any known scheme (`MISSING_CREDENTIALS`).
    #[error("no credentials: {0}")]
    Missing(&'static str),
    /// Credentials present but malformed or incomplete: a required
    /// parameter or covered component is missing, a header does not parse
    /// (`SIGNATURE_INVALID`, detail says which).
    #[error("malformed credentials: {0}")]
    Malformed(String),
    /// The signature does not verify (`SIGNATURE_INVALID`).
    #[error("signature does not verify")]
    BadSignature,
    /// The key's algorithm does not match the request's (`SIGNATURE_INVALID`).
    #[error("algorithm mismatch: {0}")]
    AlgorithmMismatch(&'static str),
    /// `Content-Digest` is missing for a body, or does not match it
    /// (`DIGEST_MISMATCH`).
    #[error("content digest: {0}")]
    Digest(&'static str),
    /// The credential's own expiry (JWT `exp`) has passed
    /// (`TIMESTAMP_TOO_OLD`).
    #[error("expired: {0}")]
    Expired(&'static str),
    /// A window parameter is out of the scheme's range (Binance
    /// `recvWindow` > 60000) (`SIGNATURE_INVALID`).
    #[error("invalid window: {0}")]
    Window(&'static str),
}
