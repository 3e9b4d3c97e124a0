//! One signing function for every scheme.

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rampart_auth::digest::{content_digest, DigestAlg, CONTENT_DIGEST};
use rampart_auth::profiles::binance::{self, SignatureLocation};
use rampart_auth::profiles::{coinbase, kraken};
use rampart_auth::rfc9421::{self, MFA_COMPONENT};
use rampart_auth::RequestView;

use crate::{ClientError, ClientKey, Material};

/// The request header that carries an MFA step-up proof (CONTRACT.md);
/// an RFC 9421 signature covers it whenever it is present.
pub const MFA_HEADER: HeaderName = HeaderName::from_static(MFA_COMPONENT);

/// The request target and body to send after [`sign`]: the exchange-style
/// schemes add parameters to the query string or the body.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedParts {
    /// The path and query to send (`/v1/orders?timestamp=…&signature=…`).
    pub path_and_query: String,
    /// The body to send.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for SignedParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The query may carry a Binance signature: show lengths only.
        f.debug_struct("SignedParts")
            .field("path_and_query_len", &self.path_and_query.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Last Kraken-style counter nonce handed out in this process.
static LAST_COUNTER_NONCE: AtomicU64 = AtomicU64::new(0);

/// A Kraken-style counter nonce: `max(now_ms, last + 1)`, so nonces
/// strictly increase within the process even for requests in the same
/// millisecond (or after the clock stepped back).
#[must_use]
pub fn next_counter_nonce(now_ms: i64) -> u64 {
    let now = u64::try_from(now_ms).unwrap_or(0);
    let mut last = LAST_COUNTER_NONCE.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST_COUNTER_NONCE.compare_exchange_weak(
            last,
            next,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(current) => last = current,
        }
    }
}

fn split_target(path_and_query: &str) -> Result<(&str, &str), ClientError> {
    if !path_and_query.starts_with('/') {
        return Err(ClientError::request(
            "the path must start with `/` (origin form)",
        ));
    }
    if path_and_query.contains('#') {
        return Err(ClientError::request("the path must not contain a fragment"));
    }
    Ok(path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, "")))
}

/// The lowercase media type of `Content-Type`, without parameters.
fn media_type(headers: &HeaderMap) -> Result<Option<String>, ClientError> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ClientError::request("more than one Content-Type header"));
    }
    let value = value
        .to_str()
        .map_err(|_| ClientError::request("Content-Type is not visible ASCII"))?;
    let essence = value.split(';').next().unwrap_or_default();
    Ok(Some(essence.trim().to_ascii_lowercase()))
}

fn header_value(value: &str) -> Result<HeaderValue, ClientError> {
    HeaderValue::from_str(value)
        .map_err(|_| ClientError::request("a signing header value is not a valid header value"))
}

fn insert_all(headers: &mut HeaderMap, add: &[(&str, String)]) -> Result<(), ClientError> {
    for (name, value) in add {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ClientError::request("a signing header name is invalid"))?;
        headers.insert(name, header_value(value)?);
    }
    Ok(())
}

fn join_target(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// `body` (a JSON object) with `"nonce": <nonce>` inserted as its first
/// member; the rest of the bytes are kept exactly as they were.
fn json_with_nonce(body: &[u8], nonce: u64) -> Result<Vec<u8>, ClientError> {
    let not_object = || ClientError::request("kraken profile: a JSON body must be a JSON object");
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| not_object())?;
    let serde_json::Value::Object(object) = value else {
        return Err(not_object());
    };
    if object.contains_key("nonce") {
        return Err(ClientError::request(
            "kraken profile: the body already has a `nonce` member (the client sets it)",
        ));
    }
    let open = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .filter(|i| body.get(*i) == Some(&b'{'))
        .ok_or_else(not_object)?;
    let (Some(head), Some(rest)) = (body.get(..=open), body.get(open.saturating_add(1)..)) else {
        return Err(not_object());
    };
    let member = format!("\"nonce\":{nonce}");
    let mut out = Vec::with_capacity(body.len().saturating_add(member.len()).saturating_add(1));
    out.extend_from_slice(head);
    out.extend_from_slice(member.as_bytes());
    if !object.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Ok(out)
}

fn sign_binance(
    signer: &binance::Signer<'_>,
    key_id: &str,
    path: &str,
    query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<SignedParts, ClientError> {
    let is_form = media_type(headers)?.as_deref() == Some("application/x-www-form-urlencoded");
    let location = if is_form && !body.is_empty() {
        SignatureLocation::Body
    } else {
        SignatureLocation::Query
    };
    let signed = binance::sign(signer, key_id, query, body, location, now_ms, None)?;
    insert_all(headers, &signed.headers)?;
    Ok(SignedParts {
        path_and_query: join_target(path, &signed.query),
        body: signed.body,
    })
}

/// Signs a request with `key`, whatever its scheme, and returns the path
/// and body to send (the exchange-style schemes change them).
///
/// - `authority` is `host[:port]` as the request addresses it;
///   `path_and_query` is the origin form (`/v1/orders?x=1`).
/// - RFC 9421 (`hmac-sha256`, `ed25519`, `ecdsa-p256-sha256`): adds
///   `Content-Digest` (sha-256) for a non-empty body, then
///   `Signature-Input` and `Signature` covering `@method`, `@authority`,
///   `@path`, `@query`, `content-digest` (with a body) and `rampart-mfa`
///   when `headers` has it; `created = now_ms / 1000`, `nonce` as given.
/// - Binance-style: `X-MBX-APIKEY`, and `timestamp = now_ms` then
///   `signature` appended to the query string, or to the body when it is a
///   non-empty `application/x-www-form-urlencoded` form. Any other body
///   (JSON) is signed raw after the query.
/// - Kraken-style: `API-Key` and `API-Sign`, with a counter nonce from
///   [`next_counter_nonce`]: for a body, inserted as the first member of a
///   JSON object (`Content-Type: application/json`) or the first parameter
///   of a form (`application/x-www-form-urlencoded`, or no `Content-Type`,
///   as Kraken's API is form-encoded); the request must then have no query
///   string. Without a body the nonce becomes the query string's first
///   parameter.
/// - Coinbase-style: `Authorization: Bearer <JWT>` for method, authority
///   and path, valid from `now_ms / 1000` for 120 s, with its own random
///   nonce (`nonce` is not used).
///
/// `nonce` is used by RFC 9421 only; `headers` must hold every header the
/// request will carry that matters to the scheme (`Content-Type`,
/// `Rampart-MFA`).
///
/// # Errors
///
/// [`ClientError::Request`] for a path that is not origin form, a Kraken
/// body that is not a JSON object or form, or a Kraken body with a query
/// string; [`ClientError::Sign`] when the scheme refuses the request (an
/// invalid nonce, the query already carrying `timestamp`, …).
#[allow(
    clippy::too_many_arguments,
    reason = "one flat call for every scheme, as the crate's interface"
)]
pub fn sign(
    key: &ClientKey,
    method: &Method,
    authority: &str,
    path_and_query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    now_ms: i64,
    nonce: &str,
) -> Result<SignedParts, ClientError> {
    let (path, query) = split_target(path_and_query)?;
    match key.material() {
        Material::Rfc9421(signing_key) => {
            if !body.is_empty() {
                headers.insert(
                    CONTENT_DIGEST,
                    header_value(&content_digest(DigestAlg::Sha256, body))?,
                );
            }
            let extra: &[&str] = if headers.contains_key(&MFA_HEADER) {
                &[MFA_COMPONENT]
            } else {
                &[]
            };
            let view = RequestView {
                method,
                path_and_query,
                authority,
                scheme: "https",
                headers,
                body,
            };
            let signature = rfc9421::sign(
                &view,
                key.key_id(),
                signing_key.scheme(),
                signing_key,
                now_ms.div_euclid(1000),
                nonce,
                extra,
            )?;
            signature.insert_into(headers)?;
            Ok(SignedParts {
                path_and_query: path_and_query.to_owned(),
                body: body.to_vec(),
            })
        }
        Material::BinanceHmac(secret) => sign_binance(
            &binance::Signer::Hmac(secret),
            key.key_id(),
            path,
            query,
            headers,
            body,
            now_ms,
        ),
        Material::BinanceEd25519(pair) => sign_binance(
            &binance::Signer::Ed25519(pair),
            key.key_id(),
            path,
            query,
            headers,
            body,
            now_ms,
        ),
        Material::KrakenHmac(secret) => {
            let counter = next_counter_nonce(now_ms);
            let (path_and_query, body) = if body.is_empty() {
                let query = kraken::form_with_nonce(counter, query);
                let add = kraken::sign(secret, key.key_id(), path, counter, query.as_bytes());
                insert_all(headers, &add)?;
                (join_target(path, &query), Vec::new())
            } else {
                if !query.is_empty() {
                    return Err(ClientError::request(
                        "kraken profile: a request with a body must not have a query string (Kraken signs the path only)",
                    ));
                }
                let body = match media_type(headers)?.as_deref() {
                    Some("application/json") => json_with_nonce(body, counter)?,
                    None | Some("application/x-www-form-urlencoded") => {
                        let params = std::str::from_utf8(body).map_err(|_| {
                            ClientError::request("kraken profile: a form body must be UTF-8")
                        })?;
                        kraken::form_with_nonce(counter, params).into_bytes()
                    }
                    Some(_) => {
                        return Err(ClientError::request(
                            "kraken profile: the body must be application/json or application/x-www-form-urlencoded",
                        ))
                    }
                };
                let add = kraken::sign(secret, key.key_id(), path, counter, &body);
                insert_all(headers, &add)?;
                (path.to_owned(), body)
            };
            Ok(SignedParts {
                path_and_query,
                body,
            })
        }
        Material::CoinbaseJwt(signer) => {
            let add = coinbase::sign(
                signer,
                key.key_id(),
                method,
                authority,
                path_and_query,
                now_ms.div_euclid(1000),
            )?;
            insert_all(headers, &add)?;
            Ok(SignedParts {
                path_and_query: path_and_query.to_owned(),
                body: body.to_vec(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::disallowed_methods,
        reason = "test code"
    )]

    use super::*;

    #[test]
    fn json_nonce_is_inserted_first_and_keeps_the_rest() {
        assert_eq!(
            json_with_nonce(br#" {"a": 1}"#, 7).unwrap(),
            br#" {"nonce":7,"a": 1}"#
        );
        assert_eq!(json_with_nonce(b"{ }", 7).unwrap(), br#"{"nonce":7 }"#);
        assert!(json_with_nonce(b"[1]", 7).is_err());
        assert!(json_with_nonce(br#"{"nonce":1}"#, 7).is_err());
        assert!(json_with_nonce(b"{", 7).is_err());
    }

    #[test]
    fn counter_nonces_strictly_increase() {
        let a = next_counter_nonce(5);
        let b = next_counter_nonce(5);
        let c = next_counter_nonce(-1);
        assert!(a < b && b < c);
        let ahead = i64::try_from(c).unwrap() + 1000;
        assert_eq!(next_counter_nonce(ahead), u64::try_from(ahead).unwrap());
    }

    #[test]
    fn targets_must_be_origin_form() {
        assert_eq!(split_target("/a?b=1").unwrap(), ("/a", "b=1"));
        assert_eq!(split_target("/a").unwrap(), ("/a", ""));
        assert!(split_target("a").is_err());
        assert!(split_target("/a#x").is_err());
    }
}
