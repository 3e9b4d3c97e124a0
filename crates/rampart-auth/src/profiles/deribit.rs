//! Deribit `client_signature` (pure functions; not wired into [`super::detect`]).
//!
//! `signature = lowercase hex(HMAC-SHA256(client_secret, timestamp "\n" nonce "\n" data))`;
//! for REST, `data = METHOD "\n" URI?query "\n" body "\n"` (see
//! [`rest_data`]); the header is
//! `Authorization: deri-hmac-sha256 id=…,ts=…,sig=…,nonce=…`.

use aws_lc_rs::hmac;

use super::common;

/// The REST `data` part: `METHOD \n URI?query \n body \n`.
#[must_use]
pub fn rest_data(method: &http::Method, path_and_query: &str, body: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(
        method
            .as_str()
            .len()
            .saturating_add(path_and_query.len())
            .saturating_add(body.len())
            .saturating_add(3),
    );
    data.extend_from_slice(method.as_str().as_bytes());
    data.push(b'\n');
    data.extend_from_slice(path_and_query.as_bytes());
    data.push(b'\n');
    data.extend_from_slice(body);
    data.push(b'\n');
    data
}

/// `lowercase hex(HMAC-SHA256(client_secret, timestamp \n nonce \n data))`.
#[must_use]
pub fn client_signature(client_secret: &[u8], timestamp: &str, nonce: &str, data: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, client_secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b"\n");
    ctx.update(nonce.as_bytes());
    ctx.update(b"\n");
    ctx.update(data);
    common::hex_lower(ctx.sign().as_ref())
}

/// Constant-time check of a hex `client_signature` (either case).
#[must_use]
pub fn verify_client_signature(
    client_secret: &[u8],
    timestamp: &str,
    nonce: &str,
    data: &[u8],
    signature_hex: &str,
) -> bool {
    let Some(tag) = common::hex_decode::<32>(signature_hex) else {
        return false;
    };
    let mut message = Vec::with_capacity(
        timestamp
            .len()
            .saturating_add(nonce.len())
            .saturating_add(data.len())
            .saturating_add(2),
    );
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(nonce.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(data);
    let key = hmac::Key::new(hmac::HMAC_SHA256, client_secret);
    hmac::verify(&key, &message, &tag).is_ok()
}
