//! The authenticated identity the gateway attaches to a request.

use std::net::IpAddr;

use crate::types::Scheme;

/// Who a request comes from, once authenticated. Later layers
/// (authorization, limits, audit) read it; the upstream receives its
/// account, key id and scopes as gateway-signed headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The API key.
    pub key_id: String,
    /// The key's account (or sub-account).
    pub account_id: String,
    /// The parent account when `account_id` is a sub-account.
    pub parent_account_id: Option<String>,
    /// Scopes the request may use (the key's, or a token's subset).
    pub scopes: Vec<String>,
    /// The scheme that authenticated the request.
    pub scheme: Scheme,
    /// Client IP (the TCP peer).
    pub client_ip: IpAddr,
    /// Fingerprint of the client certificate presented on the connection.
    pub cert_fingerprint: Option<String>,
    /// Whether the signature covered `Rampart-MFA` (step-up proof bound to it).
    pub mfa_covered: bool,
    /// Set when the request came with a bearer access token: its id (`jti`).
    pub token_id: Option<String>,
}
