//! Arbitrary bytes as a `Content-Digest` value (up to the first `\n`; the
//! rest is the body) through the RFC 9530 parser and verifier: they must
//! never panic, whatever they return.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use rampart_auth::digest;

fuzz_target!(|data: &[u8]| {
    let (value, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(s) = std::str::from_utf8(value) {
        let _ = digest::parse_content_digest(s);
    }
    if let Ok(v) = HeaderValue::from_bytes(value) {
        let mut headers = HeaderMap::new();
        headers.append("content-digest", v.clone());
        let _ = digest::verify_content_digest(&headers, body);
        headers.append("content-digest", v);
        let _ = digest::verify_content_digest(&headers, body);
    }
});
