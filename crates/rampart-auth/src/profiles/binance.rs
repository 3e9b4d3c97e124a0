//! Binance-style signed requests (`SIGNED` endpoints).
//!
//! # Wire format
//!
//! - `X-MBX-APIKEY: <key id>` header.
//! - A `signature` parameter, the **last** parameter of the query string or
//!   of an `application/x-www-form-urlencoded` body. When the body is a
//!   non-empty form, the signature must be in the body (a form body after a
//!   signed query would be a parameter *after* the signature).
//! - The signed payload is Binance's `totalParams`: the raw query string
//!   (without `?`) immediately followed by the raw body, no separator, bytes
//!   exactly as sent (percent-encoding included), minus `&signature=…`
//!   (everything before `&signature=` in the part that carries it).
//!   Bodies of other content types (JSON) are covered raw as well — Binance
//!   itself only uses form bodies; for a JSON body the signature must be in
//!   the query string and `timestamp`/`recvWindow` must be query parameters
//!   too (this profile does not read JSON).
//! - Signature: HMAC-SHA256 as 64 hex digits (lowercase as Binance sends,
//!   upper/mixed case accepted) for [`Scheme::BinanceHmac`], or Ed25519 as
//!   base64 of the 64-byte signature ([`Scheme::BinanceEd25519`]),
//!   percent-encoded in the query (`+` `/` `=`). A literal `+` in the
//!   signature value is kept as `+` (base64 never contains a space).
//! - `timestamp` (Unix milliseconds, required) and `recvWindow`
//!   (milliseconds, optional, default 5000, at most 60000; decimal
//!   `recvWindow` values are not accepted) are parameters of the query
//!   string or the form body; each may appear once in total.
//!
//! # Freshness
//!
//! Binance accepts a request when `timestamp < serverTime + 1000` and
//! `serverTime - timestamp <= recvWindow`. This crate keeps no clock: the
//! claims carry `created` (the `timestamp`, [`TimeUnit::Milliseconds`]) and
//! `window_ms` (the validated `recvWindow`), and the gateway applies that
//! rule. Microsecond timestamps (which Binance also accepts) are read as
//! milliseconds and so fail the gateway's window.
//!
//! # Replay
//!
//! Binance has no nonce; within the window a byte-identical request would
//! verify again. The claims therefore carry `nonce = "sig:" + lowercase hex
//! of the signature bytes` (normalised, so re-casing the hex or re-encoding
//! the base64 does not evade the gateway's replay cache), which rejects a
//! replay inside the window. A client that really wants two identical
//! requests must change `timestamp`.
//!
//! # Scheme
//!
//! Which algorithm applies is the key's: the gateway passes the stored key.
//! [`claims`] reports the scheme the signature's shape implies (64 hex
//! digits: [`Scheme::BinanceHmac`]; base64 of 64 bytes:
//! [`Scheme::BinanceEd25519`]); [`verify`] checks that shape against the key
//! and answers [`AuthError::AlgorithmMismatch`] when they disagree.
//!
//! # Known weakness of the scheme
//!
//! The payload does not mark where the query ends and the body starts, so
//! bytes can move between them without changing the signature (Binance's
//! own design). The `signature` parameter stays in the forwarded request;
//! only `X-MBX-APIKEY` is listed in `credential_headers`.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use base64::Engine as _;

use super::common::{self, b64};
use crate::{AuthError, Claims, KeyMaterial, RequestView, Scheme, TimeUnit};

/// Header carrying the key id (lowercase, as stored in `credential_headers`).
pub const API_KEY_HEADER: &str = "x-mbx-apikey";
/// `recvWindow` when the request sends none, milliseconds.
pub const DEFAULT_RECV_WINDOW_MS: u64 = 5_000;
/// Largest `recvWindow` Binance accepts, milliseconds.
pub const MAX_RECV_WINDOW_MS: u64 = 60_000;

/// Where the `signature` parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureLocation {
    /// Last parameter of the query string.
    Query,
    /// Last parameter of the `application/x-www-form-urlencoded` body.
    Body,
}

/// The signed parameters of a request, as parsed from its query and body.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedParams<'a> {
    /// Signed part of the query string (all of it, or everything before
    /// `&signature=`).
    pub signed_query: &'a [u8],
    /// Signed part of the body (all of it, or everything before
    /// `&signature=`).
    pub signed_body: &'a [u8],
    /// The `signature` value, percent-decoded.
    pub signature: String,
    /// Where the signature was.
    pub location: SignatureLocation,
    /// `timestamp`, Unix milliseconds.
    pub timestamp_ms: i64,
    /// `recvWindow` (or the default), milliseconds, at most [`MAX_RECV_WINDOW_MS`].
    pub recv_window_ms: u64,
}

impl fmt::Debug for SignedParams<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedParams")
            .field("signed_query_len", &self.signed_query.len())
            .field("signed_body_len", &self.signed_body.len())
            .field("location", &self.location)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("recv_window_ms", &self.recv_window_ms)
            .finish_non_exhaustive()
    }
}

impl SignedParams<'_> {
    /// The signed payload: `signed_query ‖ signed_body`.
    #[must_use]
    pub fn payload(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(
            self.signed_query
                .len()
                .saturating_add(self.signed_body.len()),
        );
        payload.extend_from_slice(self.signed_query);
        payload.extend_from_slice(self.signed_body);
        payload
    }
}

/// A decoded signature, by shape.
enum Sig {
    Hmac([u8; 32]),
    Ed25519([u8; 64]),
}

impl Sig {
    fn decode(text: &str) -> Result<Self, AuthError> {
        if text.len() == 64 {
            if let Some(tag) = common::hex_decode::<32>(text) {
                return Ok(Sig::Hmac(tag));
            }
        }
        if text.len() <= 88 {
            if let Ok(bytes) = b64::STANDARD_LENIENT_PAD.decode(text) {
                if let Ok(sig) = <[u8; 64]>::try_from(bytes) {
                    return Ok(Sig::Ed25519(sig));
                }
            }
        }
        Err(AuthError::Malformed(
            "signature is neither 64 hex digits (HMAC-SHA256) nor base64 of 64 bytes (Ed25519)"
                .to_owned(),
        ))
    }

    fn scheme(&self) -> Scheme {
        match self {
            Sig::Hmac(_) => Scheme::BinanceHmac,
            Sig::Ed25519(_) => Scheme::BinanceEd25519,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Sig::Hmac(tag) => tag,
            Sig::Ed25519(sig) => sig,
        }
    }
}

#[derive(Default)]
struct Seen<'a> {
    signature: Option<(SignatureLocation, common::RawParam<'a>)>,
    timestamp: Option<Vec<u8>>,
    recv_window: Option<Vec<u8>>,
}

impl<'a> Seen<'a> {
    fn scan(&mut self, input: &'a [u8], location: SignatureLocation) -> Result<(), AuthError> {
        for param in common::raw_params(input) {
            let name = common::form_decode(param.name)?;
            match name.as_slice() {
                b"signature" => {
                    if self.signature.is_some() {
                        return Err(malformed("signature parameter is repeated"));
                    }
                    self.signature = Some((location, param));
                }
                b"timestamp" => {
                    if self.timestamp.is_some() {
                        return Err(malformed("timestamp parameter is repeated"));
                    }
                    self.timestamp = Some(common::form_decode(param.value)?);
                }
                b"recvWindow" => {
                    if self.recv_window.is_some() {
                        return Err(malformed("recvWindow parameter is repeated"));
                    }
                    self.recv_window = Some(common::form_decode(param.value)?);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn malformed(detail: &str) -> AuthError {
    AuthError::Malformed(detail.to_owned())
}

/// Everything of `input` before the `&` that precedes the parameter starting
/// at `start` (the whole prefix when the parameter is first).
fn before_param(input: &[u8], start: usize) -> &[u8] {
    input.get(..start.saturating_sub(1)).unwrap_or_default()
}

/// Parses the signed parameters out of a query string (without `?`) and a
/// body. `body_is_form` says whether the body is
/// `application/x-www-form-urlencoded` (only then are its parameters read).
///
/// # Errors
///
/// [`AuthError::Malformed`] when the signature is missing, repeated or not
/// last, `timestamp` is missing, repeated or not a positive integer,
/// `recvWindow` is repeated or not an integer, or a parameter name or one
/// of these values has invalid percent-encoding; [`AuthError::Window`] when
/// `recvWindow` exceeds [`MAX_RECV_WINDOW_MS`].
pub fn parse_signed_params<'a>(
    query: &'a [u8],
    body: &'a [u8],
    body_is_form: bool,
) -> Result<SignedParams<'a>, AuthError> {
    let mut seen = Seen::default();
    seen.scan(query, SignatureLocation::Query)?;
    if body_is_form {
        seen.scan(body, SignatureLocation::Body)?;
    }
    let Some((location, sig_param)) = seen.signature else {
        return Err(malformed(
            "signature parameter missing (looked in the query string and the form body)",
        ));
    };
    let (signed_query, signed_body) = match location {
        SignatureLocation::Query => {
            if sig_param.end != query.len() {
                return Err(malformed(
                    "signature must be the last parameter of the query string",
                ));
            }
            if body_is_form && !body.is_empty() {
                return Err(malformed(
                    "signature must be the last parameter: it is in the query string but a form body follows",
                ));
            }
            (before_param(query, sig_param.start), body)
        }
        SignatureLocation::Body => {
            if sig_param.end != body.len() {
                return Err(malformed(
                    "signature must be the last parameter of the form body",
                ));
            }
            (query, before_param(body, sig_param.start))
        }
    };
    let signature = String::from_utf8(common::percent_decode(sig_param.value, false)?)
        .map_err(|_| malformed("signature is not UTF-8"))?;

    let timestamp = seen
        .timestamp
        .ok_or_else(|| malformed("timestamp parameter missing"))?;
    let timestamp_ms = common::parse_u64_digits(&timestamp)
        .and_then(|t| i64::try_from(t).ok())
        .filter(|t| *t > 0)
        .ok_or_else(|| malformed("timestamp must be a positive integer (Unix milliseconds)"))?;

    let recv_window_ms = match seen.recv_window {
        None => DEFAULT_RECV_WINDOW_MS,
        Some(raw) => {
            if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
                return Err(malformed(
                    "recvWindow must be a non-negative integer (milliseconds)",
                ));
            }
            match common::parse_u64_digits(&raw) {
                Some(window) if window <= MAX_RECV_WINDOW_MS => window,
                _ => return Err(AuthError::Window("recvWindow above 60000 ms")),
            }
        }
    };

    Ok(SignedParams {
        signed_query,
        signed_body,
        signature,
        location,
        timestamp_ms,
        recv_window_ms,
    })
}

fn parse_request<'a>(req: &RequestView<'a>) -> Result<SignedParams<'a>, AuthError> {
    let query = common::query_of(req.path_and_query);
    parse_signed_params(query.as_bytes(), req.body, common::is_form(req.headers)?)
}

/// The claims of a Binance-style request; `Ok(None)` without an
/// `X-MBX-APIKEY` header. `now_ms` is unused (the gateway applies the
/// window); it keeps the profiles' interface uniform.
///
/// # Errors
///
/// See [`parse_signed_params`]; also [`AuthError::Malformed`] for a repeated
/// or invalid `X-MBX-APIKEY` header or a signature of neither shape.
pub fn claims(req: &RequestView<'_>, now_ms: i64) -> Result<Option<Claims>, AuthError> {
    let _ = now_ms;
    let Some(key_id) = common::single_header(req.headers, API_KEY_HEADER)? else {
        return Ok(None);
    };
    common::check_key_id(key_id, "X-MBX-APIKEY")?;
    let params = parse_request(req)?;
    let sig = Sig::decode(&params.signature)?;
    Ok(Some(Claims {
        scheme: sig.scheme(),
        key_id: key_id.to_owned(),
        created: Some(params.timestamp_ms),
        created_unit: TimeUnit::Milliseconds,
        window_ms: Some(params.recv_window_ms),
        expires: None,
        nonce: Some(format!("sig:{}", common::hex_lower(sig.bytes()))),
        counter_nonce: None,
        credential_headers: vec![API_KEY_HEADER],
        covers_mfa: false,
    }))
}

/// Verifies a Binance-style request against the key its claims name.
///
/// # Errors
///
/// [`AuthError::AlgorithmMismatch`] when `claims` are not Binance-style, the
/// key is ECDSA, or the signature's shape does not fit the key;
/// [`AuthError::Malformed`] when the request does not parse or is not the
/// one the claims came from; [`AuthError::BadSignature`] when the signature
/// does not verify.
pub fn verify(req: &RequestView<'_>, claims: &Claims, key: &KeyMaterial) -> Result<(), AuthError> {
    if !matches!(claims.scheme, Scheme::BinanceHmac | Scheme::BinanceEd25519) {
        return Err(AuthError::AlgorithmMismatch(
            "claims are not for the binance profile",
        ));
    }
    let key_id = common::single_header(req.headers, API_KEY_HEADER)?
        .ok_or_else(|| malformed("X-MBX-APIKEY header missing"))?;
    if key_id != claims.key_id {
        return Err(malformed("claims do not belong to this request (key id)"));
    }
    let params = parse_request(req)?;
    verify_payload(&params.payload(), &params.signature, key)
}

/// Verifies `signature` (hex HMAC-SHA256 or base64 Ed25519, as sent after
/// percent-decoding) over `payload` — the check [`verify`] runs, exposed for
/// payloads built elsewhere (WebSocket API, see [`websocket_payload`]).
///
/// # Errors
///
/// [`AuthError::Malformed`] for a signature of neither shape,
/// [`AuthError::AlgorithmMismatch`] when shape and key disagree or the key is
/// ECDSA, [`AuthError::BadSignature`] when it does not verify.
pub fn verify_payload(payload: &[u8], signature: &str, key: &KeyMaterial) -> Result<(), AuthError> {
    match (key, Sig::decode(signature)?) {
        (KeyMaterial::Hmac(secret), Sig::Hmac(tag)) => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
            hmac::verify(&key, payload, &tag).map_err(|_| AuthError::BadSignature)
        }
        (KeyMaterial::Ed25519(public), Sig::Ed25519(sig)) => {
            UnparsedPublicKey::new(&ED25519, public)
                .verify(payload, &sig)
                .map_err(|_| AuthError::BadSignature)
        }
        (KeyMaterial::Hmac(_), Sig::Ed25519(_)) => Err(AuthError::AlgorithmMismatch(
            "binance: HMAC key but an Ed25519-shaped (base64) signature",
        )),
        (KeyMaterial::Ed25519(_), Sig::Hmac(_)) => Err(AuthError::AlgorithmMismatch(
            "binance: Ed25519 key but an HMAC-shaped (hex) signature",
        )),
        (KeyMaterial::EcdsaP256(_), _) => Err(AuthError::AlgorithmMismatch(
            "binance profile takes an HMAC secret or an Ed25519 key",
        )),
    }
}

/// The payload of a Binance WebSocket API request: every parameter except
/// `signature`, sorted by name, joined `name=value` with `&`, raw UTF-8 (no
/// percent-encoding); `apiKey` is one of the parameters.
#[must_use]
pub fn websocket_payload(params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = params
        .iter()
        .filter(|(name, _)| *name != "signature")
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// A client's signing key for the Binance profile.
pub enum Signer<'a> {
    /// The raw ASCII secret Binance hands out, as bytes.
    Hmac(&'a [u8]),
    /// An Ed25519 key pair.
    Ed25519(&'a Ed25519KeyPair),
}

impl fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Hmac(_) => f.write_str("Signer::Hmac(**REDACTED**)"),
            Signer::Ed25519(_) => f.write_str("Signer::Ed25519(..)"),
        }
    }
}

/// Signs `payload`: lowercase hex HMAC-SHA256 or base64 Ed25519 (not
/// percent-encoded).
#[must_use]
pub fn sign_payload(signer: &Signer<'_>, payload: &[u8]) -> String {
    match signer {
        Signer::Hmac(secret) => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
            common::hex_lower(hmac::sign(&key, payload).as_ref())
        }
        Signer::Ed25519(pair) => b64::STANDARD_LENIENT_PAD.encode(pair.sign(payload).as_ref()),
    }
}

/// What a client sends after [`sign`]: the header to add and the new query
/// string (without `?`) and body.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// Headers to add: `X-MBX-APIKEY`.
    pub headers: Vec<(&'static str, String)>,
    /// The query string to send (without `?`).
    pub query: String,
    /// The body to send.
    pub body: Vec<u8>,
}

impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRequest")
            .field("query_len", &self.query.len())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

fn append_param(target: &mut Vec<u8>, name: &str, value: &str) {
    if !target.is_empty() && !target.ends_with(b"&") {
        target.push(b'&');
    }
    target.extend_from_slice(name.as_bytes());
    target.push(b'=');
    target.extend_from_slice(value.as_bytes());
}

/// Percent-encodes the base64 characters that are not unreserved.
fn encode_signature(signature: &str) -> String {
    signature
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// Signs a request the Binance way: appends `recvWindow` (when given),
/// `timestamp` and then `signature` to the query string
/// ([`SignatureLocation::Query`]; the body, of any content type, is signed
/// raw after the query) or to the form body ([`SignatureLocation::Body`];
/// the client must send `Content-Type: application/x-www-form-urlencoded`).
/// With [`SignatureLocation::Query`] the body must not be a form body.
///
/// # Errors
///
/// [`AuthError::Window`] when `recv_window_ms` exceeds
/// [`MAX_RECV_WINDOW_MS`]; [`AuthError::Malformed`] when `timestamp_ms` is
/// not positive, `api_key` is not a valid key id, or the query/body already
/// carry `signature`, `timestamp` or `recvWindow`.
pub fn sign(
    signer: &Signer<'_>,
    api_key: &str,
    query: &str,
    body: &[u8],
    location: SignatureLocation,
    timestamp_ms: i64,
    recv_window_ms: Option<u64>,
) -> Result<SignedRequest, AuthError> {
    common::check_key_id(api_key, "api key")?;
    if timestamp_ms <= 0 {
        return Err(malformed("timestamp must be positive"));
    }
    if recv_window_ms.is_some_and(|w| w > MAX_RECV_WINDOW_MS) {
        return Err(AuthError::Window("recvWindow above 60000 ms"));
    }
    let mut check = Seen::default();
    check.scan(query.as_bytes(), SignatureLocation::Query)?;
    if location == SignatureLocation::Body {
        check.scan(body, SignatureLocation::Body)?;
    }
    if check.signature.is_some() || check.timestamp.is_some() || check.recv_window.is_some() {
        return Err(malformed(
            "query or body already carries signature, timestamp or recvWindow",
        ));
    }

    let mut query = query.as_bytes().to_vec();
    let mut body = body.to_vec();
    let target = match location {
        SignatureLocation::Query => &mut query,
        SignatureLocation::Body => &mut body,
    };
    if let Some(window) = recv_window_ms {
        append_param(target, "recvWindow", &window.to_string());
    }
    append_param(target, "timestamp", &timestamp_ms.to_string());

    let mut payload = query.clone();
    payload.extend_from_slice(&body);
    let signature = encode_signature(&sign_payload(signer, &payload));
    match location {
        SignatureLocation::Query => append_param(&mut query, "signature", &signature),
        SignatureLocation::Body => append_param(&mut body, "signature", &signature),
    }
    let query = String::from_utf8(query).map_err(|_| malformed("query is not UTF-8"))?;
    Ok(SignedRequest {
        headers: vec![("X-MBX-APIKEY", api_key.to_owned())],
        query,
        body,
    })
}
