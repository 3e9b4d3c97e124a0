//! Arbitrary bytes as a Binance-style query string and body (split at the
//! first `\n`; the first byte's low bit says whether the body is a form)
//! through the parameter parser and the full claims → verify path: they
//! must never panic, whatever they return.
#![no_main]

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use rampart_auth::profiles::binance;
use rampart_auth::{KeyMaterial, RequestView};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let form = flags & 1 == 1;
    let (query, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let _ = binance::parse_signed_params(query, body, form);

    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let path_and_query = format!("/v1/orders?{query}");
    let mut headers = HeaderMap::new();
    headers.insert("x-mbx-apikey", HeaderValue::from_static("fuzz-key"));
    if form {
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    let req = RequestView {
        method: &Method::POST,
        path_and_query: &path_and_query,
        authority: "127.0.0.1:8443",
        scheme: "https",
        headers: &headers,
        body,
    };
    if let Ok(Some(claims)) = binance::claims(&req, 1_700_000_000_000) {
        for key in [
            KeyMaterial::Hmac(Zeroizing::new(b"secret".to_vec())),
            KeyMaterial::Ed25519([9; 32]),
            KeyMaterial::EcdsaP256(vec![4; 65]),
        ] {
            let _ = binance::verify(&req, &claims, &key);
        }
    }
});
