//! Kraken-style signed requests (Spot REST private endpoints).
//!
//! # Wire format
//!
//! - `API-Key: <key id>` and `API-Sign: <signature>` headers.
//! - `API-Sign = base64(HMAC-SHA512(secret, uri_path ‖ SHA-256(nonce ‖ post_data)))`
//!   where `secret` is the base64-*decoded* secret the client holds (the
//!   gateway stores the raw bytes: [`KeyMaterial::Hmac`]), `uri_path` is the
//!   request path as sent, without the query, and `nonce` is the nonce's
//!   text as sent.
//! - `post_data` and the nonce:
//!   - with a body: `post_data` is the raw body; the nonce is its `nonce`
//!     field — a form parameter (`application/x-www-form-urlencoded`, also
//!     assumed when there is no `Content-Type`) or a top-level JSON member
//!     (`application/json`, a string of digits or an integer). The request
//!     must then have no query string: Kraken signs only the path, so a
//!     query next to a body would be unsigned.
//!   - without a body (e.g. `GET`): `post_data` is the raw query string
//!     (without `?`, possibly empty) and the nonce is its `nonce` parameter.
//! - The nonce is an unsigned 64-bit integer that must strictly increase per
//!   key: it is returned as `counter_nonce` and the gateway enforces the
//!   order. It appears exactly once.
//!
//! Both credential headers are listed in `credential_headers`; the nonce
//! stays in the forwarded body.

use std::fmt;

use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use serde_json::Value;
use zeroize::Zeroizing;

use super::common::{self, b64};
use crate::{AuthError, Claims, KeyMaterial, RequestView, Scheme, TimeUnit};

/// Header carrying the key id (lowercase).
pub const API_KEY_HEADER: &str = "api-key";
/// Header carrying the signature (lowercase).
pub const API_SIGN_HEADER: &str = "api-sign";

/// How the data carrying the nonce is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// `application/x-www-form-urlencoded` (body or query string).
    Form,
    /// `application/json` body.
    Json,
}

impl DataFormat {
    /// The format a body's `Content-Type` media type (lowercase, without
    /// parameters) declares; `None` (no header) means form, as Kraken's API
    /// is form-encoded.
    ///
    /// # Errors
    ///
    /// [`AuthError::Malformed`] for any other media type.
    pub fn from_media_type(media_type: Option<&str>) -> Result<Self, AuthError> {
        match media_type {
            None | Some("application/x-www-form-urlencoded") => Ok(DataFormat::Form),
            Some("application/json") => Ok(DataFormat::Json),
            Some(_) => Err(AuthError::Malformed(
                "kraken profile: the body must be application/x-www-form-urlencoded or application/json"
                    .to_owned(),
            )),
        }
    }
}

/// A request's nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce {
    /// The nonce's text as signed (decimal digits).
    pub text: String,
    /// Its value.
    pub value: u64,
}

fn malformed(detail: &str) -> AuthError {
    AuthError::Malformed(detail.to_owned())
}

fn nonce_from_digits(digits: &[u8]) -> Result<Nonce, AuthError> {
    let value = common::parse_u64_digits(digits)
        .ok_or_else(|| malformed("nonce must be an unsigned 64-bit decimal integer"))?;
    let text = String::from_utf8(digits.to_vec())
        .map_err(|_| malformed("nonce must be an unsigned 64-bit decimal integer"))?;
    Ok(Nonce { text, value })
}

/// Extracts the nonce from form- or JSON-encoded data (a body, or a query
/// string for [`DataFormat::Form`]).
///
/// # Errors
///
/// [`AuthError::Malformed`] when the data does not parse (invalid
/// percent-encoding, invalid JSON, duplicate JSON keys, not a JSON object),
/// the nonce is missing, repeated, or not an unsigned 64-bit integer.
pub fn extract_nonce(data: &[u8], format: DataFormat) -> Result<Nonce, AuthError> {
    match format {
        DataFormat::Form => {
            let mut found: Option<Vec<u8>> = None;
            for param in common::raw_params(data) {
                if common::form_decode(param.name)? == b"nonce" {
                    if found.is_some() {
                        return Err(malformed("nonce parameter is repeated"));
                    }
                    found = Some(common::form_decode(param.value)?);
                }
            }
            let digits = found.ok_or_else(|| malformed("nonce parameter missing"))?;
            nonce_from_digits(&digits)
        }
        DataFormat::Json => {
            let object = common::strict_json_object(data, "body")?;
            match object.get("nonce") {
                None => Err(malformed("nonce member missing from the JSON body")),
                Some(Value::String(text)) => nonce_from_digits(text.as_bytes()),
                Some(Value::Number(number)) => {
                    let value = number.as_u64().ok_or_else(|| {
                        malformed("nonce must be an unsigned 64-bit decimal integer")
                    })?;
                    Ok(Nonce {
                        text: value.to_string(),
                        value,
                    })
                }
                Some(_) => Err(malformed(
                    "nonce must be a JSON string of digits or an integer",
                )),
            }
        }
    }
}

/// The signed parts of a request.
struct Parsed<'a> {
    key_id: &'a str,
    signature: [u8; 64],
    uri_path: &'a str,
    post_data: &'a [u8],
    nonce: Nonce,
}

fn parse_request<'a>(req: &RequestView<'a>) -> Result<Option<Parsed<'a>>, AuthError> {
    let key_id = common::single_header(req.headers, API_KEY_HEADER)?;
    let sign = common::single_header(req.headers, API_SIGN_HEADER)?;
    let (key_id, sign) = match (key_id, sign) {
        (None, None) => return Ok(None),
        (Some(key_id), Some(sign)) => (key_id, sign),
        (Some(_), None) => return Err(malformed("API-Sign header missing")),
        (None, Some(_)) => return Err(malformed("API-Key header missing")),
    };
    common::check_key_id(key_id, "API-Key")?;
    let signature = b64::STANDARD_LENIENT_PAD
        .decode(sign)
        .ok()
        .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
        .ok_or_else(|| malformed("API-Sign must be base64 of 64 bytes (HMAC-SHA512)"))?;
    let uri_path = common::path_of(req.path_and_query);
    let query = common::query_of(req.path_and_query);
    let (post_data, nonce) = if req.body.is_empty() {
        (
            query.as_bytes(),
            extract_nonce(query.as_bytes(), DataFormat::Form)?,
        )
    } else {
        if !query.is_empty() {
            return Err(malformed(
                "kraken profile: a request with a body must not have a query string (it would not be signed)",
            ));
        }
        let format = DataFormat::from_media_type(common::media_type(req.headers)?.as_deref())?;
        (req.body, extract_nonce(req.body, format)?)
    };
    Ok(Some(Parsed {
        key_id,
        signature,
        uri_path,
        post_data,
        nonce,
    }))
}

/// The claims of a Kraken-style request; `Ok(None)` when neither `API-Key`
/// nor `API-Sign` is present. `now_ms` is unused (Kraken's freshness is the
/// increasing nonce).
///
/// # Errors
///
/// [`AuthError::Malformed`] when one of the two headers is missing or
/// invalid, `API-Sign` is not base64 of 64 bytes, a body comes with a query
/// string, the content type is unsupported, or the nonce is missing,
/// repeated or invalid (see [`extract_nonce`]).
pub fn claims(req: &RequestView<'_>, now_ms: i64) -> Result<Option<Claims>, AuthError> {
    let _ = now_ms;
    let Some(parsed) = parse_request(req)? else {
        return Ok(None);
    };
    Ok(Some(Claims {
        scheme: Scheme::KrakenHmac,
        key_id: parsed.key_id.to_owned(),
        created: None,
        created_unit: TimeUnit::Milliseconds,
        window_ms: None,
        expires: None,
        nonce: None,
        counter_nonce: Some(parsed.nonce.value),
        credential_headers: vec![API_KEY_HEADER, API_SIGN_HEADER],
        covers_mfa: false,
    }))
}

fn message(uri_path: &str, nonce: &str, post_data: &[u8]) -> Vec<u8> {
    let mut inner = digest::Context::new(&digest::SHA256);
    inner.update(nonce.as_bytes());
    inner.update(post_data);
    let hash = inner.finish();
    let mut message = Vec::with_capacity(uri_path.len().saturating_add(32));
    message.extend_from_slice(uri_path.as_bytes());
    message.extend_from_slice(hash.as_ref());
    message
}

/// Verifies a Kraken-style request (constant-time tag comparison).
///
/// # Errors
///
/// [`AuthError::AlgorithmMismatch`] when `claims` are not Kraken-style or
/// the key is not an HMAC secret; [`AuthError::Malformed`] when the request
/// does not parse or is not the one the claims came from;
/// [`AuthError::BadSignature`] when `API-Sign` does not verify.
pub fn verify(req: &RequestView<'_>, claims: &Claims, key: &KeyMaterial) -> Result<(), AuthError> {
    if claims.scheme != Scheme::KrakenHmac {
        return Err(AuthError::AlgorithmMismatch(
            "claims are not for the kraken profile",
        ));
    }
    let KeyMaterial::Hmac(secret) = key else {
        return Err(AuthError::AlgorithmMismatch(
            "kraken profile takes an HMAC secret",
        ));
    };
    let parsed =
        parse_request(req)?.ok_or_else(|| malformed("API-Key and API-Sign headers missing"))?;
    if parsed.key_id != claims.key_id || Some(parsed.nonce.value) != claims.counter_nonce {
        return Err(malformed("claims do not belong to this request"));
    }
    let key = hmac::Key::new(hmac::HMAC_SHA512, secret);
    hmac::verify(
        &key,
        &message(parsed.uri_path, &parsed.nonce.text, parsed.post_data),
        &parsed.signature,
    )
    .map_err(|_| AuthError::BadSignature)
}

/// Decodes the base64 secret a Kraken client holds into the raw bytes the
/// gateway stores and [`sign`] takes.
///
/// # Errors
///
/// [`AuthError::Malformed`] when it is not standard base64 or is empty.
pub fn decode_secret(secret_b64: &str) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    let secret = Zeroizing::new(
        b64::STANDARD_LENIENT_PAD
            .decode(secret_b64.trim())
            .map_err(|_| malformed("kraken secret is not base64"))?,
    );
    if secret.is_empty() {
        return Err(malformed("kraken secret is empty"));
    }
    Ok(secret)
}

/// The `API-Sign` value for `uri_path` (path only), the nonce's text and
/// `post_data` (the body, or the query string of a bodyless request).
#[must_use]
pub fn sign_message(secret: &[u8], uri_path: &str, nonce: &str, post_data: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA512, secret);
    b64::STANDARD_LENIENT_PAD
        .encode(hmac::sign(&key, &message(uri_path, nonce, post_data)).as_ref())
}

/// The headers a client adds: `API-Key` and `API-Sign`. `post_data` must
/// already contain `nonce` (see [`form_with_nonce`]).
#[must_use]
pub fn sign(
    secret: &[u8],
    api_key: &str,
    uri_path: &str,
    nonce: u64,
    post_data: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("API-Key", api_key.to_owned()),
        (
            "API-Sign",
            sign_message(secret, uri_path, &nonce.to_string(), post_data),
        ),
    ]
}

/// `nonce=<nonce>` followed by `params` (already urlencoded, may be empty):
/// the form body (or query string) to sign and send.
#[must_use]
pub fn form_with_nonce(nonce: u64, params: &str) -> String {
    if params.is_empty() {
        format!("nonce={nonce}")
    } else {
        format!("nonce={nonce}&{params}")
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataFormat::Form => "application/x-www-form-urlencoded",
            DataFormat::Json => "application/json",
        })
    }
}
