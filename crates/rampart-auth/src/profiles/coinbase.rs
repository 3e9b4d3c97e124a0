//! Coinbase-style (CDP API key) JWT bearer tokens.
//!
//! # Wire format
//!
//! `Authorization: Bearer <JWT>`, a compact JWS (see [`super::jwt`] for the
//! strict parsing rules) with
//!
//! - header `{"alg": "ES256" | "EdDSA", "kid": <key name>, "nonce": <random>, "typ": "JWT"}`
//!   (`nonce` required here: it is the replay-cache key; `typ` optional);
//! - claims `{"sub": <key name>, "iss": "cdp", "nbf": <s>, "exp": <s>, "uri": "<METHOD> <host><path>"}`.
//!
//! # Checks
//!
//! - `kid == sub`; that is the key id.
//! - `uri` names this request: the method, then the authority the client
//!   addressed, then the path **without the query string** — Coinbase's SDKs
//!   (`format_jwt_uri(method, path)`, `generateJwt({requestMethod,
//!   requestHost, requestPath})`) sign the path only and pass query
//!   parameters separately. A `uri` that includes this request's exact query
//!   is accepted too. The host is compared case-insensitively and a default
//!   port (`:443` for https, `:80` for http) on either side is ignored.
//! - `nbf` and `exp` are integers (Unix seconds), `nbf <= exp`,
//!   `exp - nbf <= 120` ([`MAX_LIFETIME_S`], Coinbase's two minutes) and
//!   `exp` is after `now`: an expired token is rejected by [`claims`] with
//!   [`AuthError::Window`]. `nbf` is returned as `created`
//!   ([`TimeUnit::Seconds`]) so the gateway applies its clock-skew rule to a
//!   token from the future; `exp` as `expires`.
//!
//! # What is not covered
//!
//! The token covers method, host and path only — not the query string nor
//! the body (Coinbase's design). It is single-use through its `nonce` (the
//! gateway's replay cache) and short-lived; TLS protects the rest.
//!
//! A bearer JWT whose payload `iss` is not `cdp` is not this profile's:
//! [`claims`] returns `Ok(None)` so another bearer scheme can take it. A
//! bearer value that is not a well-formed JWT is [`AuthError::Malformed`].

use serde_json::{Map, Value};

use super::common;
use super::jwt::{self, Alg, Jwt, JwtSigner};
use crate::{AuthError, Claims, KeyMaterial, RequestView, Scheme, TimeUnit};

/// Header carrying the token (lowercase).
pub const AUTHORIZATION_HEADER: &str = "authorization";
/// The `iss` of a Coinbase-style token.
pub const ISSUER: &str = "cdp";
/// Longest accepted token lifetime, `exp - nbf`, seconds.
pub const MAX_LIFETIME_S: i64 = 120;
/// Longest accepted header `nonce`, characters.
pub const MAX_NONCE_LEN: usize = 128;

fn malformed(detail: &str) -> AuthError {
    AuthError::Malformed(detail.to_owned())
}

/// The bearer token of the request: `Ok(None)` without an `Authorization`
/// header or with another auth scheme.
fn bearer<'a>(req: &RequestView<'a>) -> Result<Option<&'a str>, AuthError> {
    let Some(value) = common::single_header(req.headers, AUTHORIZATION_HEADER)? else {
        return Ok(None);
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(malformed("bearer token is empty"));
    }
    Ok(Some(token))
}

fn string_claim<'p>(payload: &'p Map<String, Value>, name: &str) -> Result<&'p str, AuthError> {
    match payload.get(name) {
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(AuthError::Malformed(format!("jwt {name} must be a string"))),
        None => Err(AuthError::Malformed(format!("jwt {name} claim missing"))),
    }
}

fn int_claim(payload: &Map<String, Value>, name: &str) -> Result<i64, AuthError> {
    match payload.get(name) {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            AuthError::Malformed(format!("jwt {name} must be an integer (Unix seconds)"))
        }),
        Some(_) => Err(AuthError::Malformed(format!(
            "jwt {name} must be an integer (Unix seconds)"
        ))),
        None => Err(AuthError::Malformed(format!("jwt {name} claim missing"))),
    }
}

/// `host[:port]` with the scheme's default port removed, lowercase.
fn normalize_authority(authority: &str, scheme: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    let default = match scheme {
        "https" => Some(":443"),
        "http" => Some(":80"),
        _ => None,
    };
    match default.and_then(|port| lower.strip_suffix(port)) {
        Some(host) => host.to_owned(),
        None => lower,
    }
}

/// The `uri` claim a client puts in its token: `"{METHOD} {host}{path}"`,
/// `path` without the query string.
#[must_use]
pub fn format_uri(method: &http::Method, host: &str, path: &str) -> String {
    format!("{} {host}{}", method.as_str(), common::path_of(path))
}

/// Whether a `uri` claim names this request (see the module docs).
#[must_use]
pub fn uri_matches(uri: &str, req: &RequestView<'_>) -> bool {
    let Some((method, rest)) = uri.split_once(' ') else {
        return false;
    };
    if method != req.method.as_str() {
        return false;
    }
    let Some(slash) = rest.find('/') else {
        return false;
    };
    let (Some(host), Some(target)) = (rest.get(..slash), rest.get(slash..)) else {
        return false;
    };
    if normalize_authority(host, req.scheme) != normalize_authority(req.authority, req.scheme) {
        return false;
    }
    target == common::path_of(req.path_and_query) || target == req.path_and_query
}

/// Everything [`claims`] and [`verify`] check without a clock or a key.
struct Checked<'a> {
    jwt: Jwt<'a>,
    nonce: String,
    nbf: i64,
    exp: i64,
}

/// `Ok(None)` when the request has no bearer token or the token's `iss` is
/// not `cdp`.
fn check<'a>(req: &RequestView<'a>) -> Result<Option<Checked<'a>>, AuthError> {
    let Some(token) = bearer(req)? else {
        return Ok(None);
    };
    let decoded = jwt::decode(token)?;
    if decoded.payload.get("iss") != Some(&Value::String(ISSUER.to_owned())) {
        return Ok(None);
    }
    let header = decoded.header()?;
    let jwt = Jwt { header, decoded };
    common::check_key_id(&jwt.header.kid, "jwt kid")?;
    let nonce = jwt
        .header
        .nonce
        .clone()
        .ok_or_else(|| malformed("jwt header has no nonce"))?;
    if nonce.is_empty()
        || nonce.len() > MAX_NONCE_LEN
        || !nonce.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed(
            "jwt nonce must be 1 to 128 visible ASCII characters",
        ));
    }
    let payload = &jwt.decoded.payload;
    if string_claim(payload, "sub")? != jwt.header.kid {
        return Err(malformed("jwt sub must equal the header kid"));
    }
    let uri = string_claim(payload, "uri")?;
    if !uri_matches(uri, req) {
        return Err(malformed(
            "jwt uri does not match this request (expected \"METHOD host/path\", query excluded)",
        ));
    }
    let nbf = int_claim(payload, "nbf")?;
    let exp = int_claim(payload, "exp")?;
    if exp < nbf {
        return Err(malformed("jwt exp is before nbf"));
    }
    if i128::from(exp) - i128::from(nbf) > i128::from(MAX_LIFETIME_S) {
        return Err(AuthError::Window("jwt lifetime (exp - nbf) above 120 s"));
    }
    Ok(Some(Checked {
        jwt,
        nonce,
        nbf,
        exp,
    }))
}

fn scheme_of(alg: Alg) -> Scheme {
    match alg {
        Alg::Es256 => Scheme::CoinbaseJwtEs256,
        Alg::EdDsa => Scheme::CoinbaseJwtEdDsa,
    }
}

/// The claims of a Coinbase-style request; `Ok(None)` without a bearer
/// token or when the token is not a `cdp` token.
///
/// # Errors
///
/// [`AuthError::Malformed`] for a malformed token or header, a missing or
/// mistyped claim, `sub != kid`, a `uri` for another request;
/// [`AuthError::Window`] when `exp - nbf > 120`; [`AuthError::Expired`]
/// when the token expired (`exp * 1000 <= now_ms`).
pub fn claims(req: &RequestView<'_>, now_ms: i64) -> Result<Option<Claims>, AuthError> {
    let Some(checked) = check(req)? else {
        return Ok(None);
    };
    if i128::from(checked.exp) * 1000 <= i128::from(now_ms) {
        return Err(AuthError::Expired("jwt expired (exp is not in the future)"));
    }
    Ok(Some(Claims {
        scheme: scheme_of(checked.jwt.header.alg),
        key_id: checked.jwt.header.kid,
        created: Some(checked.nbf),
        created_unit: TimeUnit::Seconds,
        window_ms: None,
        expires: Some(checked.exp),
        nonce: Some(checked.nonce),
        counter_nonce: None,
        credential_headers: vec![AUTHORIZATION_HEADER],
        covers_mfa: false,
    }))
}

/// Verifies a Coinbase-style request's token signature with the key its
/// claims name (re-checking every claim but expiry, which [`claims`]
/// checked against the clock).
///
/// # Errors
///
/// [`AuthError::AlgorithmMismatch`] when `claims` are not Coinbase-style or
/// the key does not fit the token's `alg` (ES256: ECDSA P-256, EdDSA:
/// Ed25519); [`AuthError::Malformed`] when the token does not parse or is
/// not the one the claims came from; [`AuthError::BadSignature`] when the
/// signature does not verify.
pub fn verify(req: &RequestView<'_>, claims: &Claims, key: &KeyMaterial) -> Result<(), AuthError> {
    if !matches!(
        claims.scheme,
        Scheme::CoinbaseJwtEs256 | Scheme::CoinbaseJwtEdDsa
    ) {
        return Err(AuthError::AlgorithmMismatch(
            "claims are not for the coinbase profile",
        ));
    }
    let checked = check(req)?.ok_or_else(|| malformed("no cdp bearer token"))?;
    if checked.jwt.header.kid != claims.key_id
        || scheme_of(checked.jwt.header.alg) != claims.scheme
        || claims.nonce.as_deref() != Some(checked.nonce.as_str())
    {
        return Err(malformed("claims do not belong to this request"));
    }
    checked.jwt.verify_signature(key)
}

/// A fresh random header nonce: 32 lowercase hex digits.
///
/// # Errors
///
/// [`AuthError::Malformed`] if the system random source fails.
pub fn random_nonce() -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| malformed("random source failed"))?;
    Ok(common::hex_lower(&bytes))
}

/// Builds a Coinbase-style token with an explicit nonce and lifetime (for
/// tests and tools; clients use [`sign`]).
///
/// # Errors
///
/// [`AuthError::Malformed`] if signing fails.
pub fn token(
    signer: &JwtSigner,
    key_name: &str,
    uri: &str,
    nonce: &str,
    nbf: i64,
    exp: i64,
) -> Result<String, AuthError> {
    let mut header = Map::new();
    header.insert("kid".to_owned(), Value::String(key_name.to_owned()));
    header.insert("nonce".to_owned(), Value::String(nonce.to_owned()));
    header.insert("typ".to_owned(), Value::String("JWT".to_owned()));
    let mut payload = Map::new();
    payload.insert("sub".to_owned(), Value::String(key_name.to_owned()));
    payload.insert("iss".to_owned(), Value::String(ISSUER.to_owned()));
    payload.insert("nbf".to_owned(), Value::from(nbf));
    payload.insert("exp".to_owned(), Value::from(exp));
    payload.insert("uri".to_owned(), Value::String(uri.to_owned()));
    jwt::encode(signer, &header, &payload)
}

/// The header a client adds — `Authorization: Bearer <JWT>` — for a request
/// `method` to `host` (`host[:port]` as the client addresses it) and `path`
/// (any query string is left out of the `uri`), valid from `now_s` for 120 s
/// with a fresh random nonce.
///
/// # Errors
///
/// [`AuthError::Malformed`] for an invalid key name or if signing fails.
pub fn sign(
    signer: &JwtSigner,
    key_name: &str,
    method: &http::Method,
    host: &str,
    path: &str,
    now_s: i64,
) -> Result<Vec<(&'static str, String)>, AuthError> {
    common::check_key_id(key_name, "key name")?;
    let uri = format_uri(method, host, path);
    let token = token(
        signer,
        key_name,
        &uri,
        &random_nonce()?,
        now_s,
        now_s.saturating_add(MAX_LIFETIME_S),
    )?;
    Ok(vec![("Authorization", format!("Bearer {token}"))])
}
