//! Arbitrary bytes as `Signature-Input` and `Signature` (split at the first
//! `\n`, which no header value can hold) through every RFC 9421 entry
//! point: parsing must never panic, whatever it returns.
#![no_main]

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use rampart_auth::rfc9421;
use rampart_auth::{KeyMaterial, RequestView, Scheme};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let (input, sig) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(input) {
        headers.insert("signature-input", v);
    }
    if let Ok(v) = HeaderValue::from_bytes(sig) {
        headers.insert("signature", v);
    }
    headers.insert(
        "content-digest",
        HeaderValue::from_static("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
    );
    headers.insert("rampart-mfa", HeaderValue::from_static("totp=123456"));
    let key = KeyMaterial::Hmac(Zeroizing::new(vec![7; 32]));
    for body in [&b""[..], &br#"{"hello": "world"}"#[..]] {
        let req = RequestView {
            method: &Method::POST,
            path_and_query: "/v1/orders?x=1",
            authority: "api.example.com",
            scheme: "https",
            headers: &headers,
            body,
        };
        let _ = rfc9421::claims(&req);
        if let Ok(Some(parsed)) = rfc9421::parse(&req) {
            let _ = parsed.claims();
            let _ = parsed.verify(&req, Scheme::Rfc9421HmacSha256, &key);
        }
        if let Ok(Some(parsed)) = rfc9421::parse_unchecked(&req) {
            let _ = parsed.signature_base(&req);
            let _ = parsed.verify_signature(&req, Scheme::Rfc9421Ed25519, &key);
        }
    }
});
