//! Arbitrary bytes as a compact JWT through the strict JWT parser and, as
//! `Authorization: Bearer <token>`, the Coinbase-style claims → verify
//! path: they must never panic, whatever they return.
#![no_main]

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use rampart_auth::profiles::{coinbase, jwt};
use rampart_auth::{KeyMaterial, RequestView};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = jwt::decode(token);
    if let Ok(parsed) = jwt::parse(token) {
        let _ = parsed.verify_signature(&KeyMaterial::EcdsaP256(vec![4; 65]));
        let _ = parsed.verify_signature(&KeyMaterial::Ed25519([3; 32]));
    }

    let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("authorization", value);
    let req = RequestView {
        method: &Method::GET,
        path_and_query: "/v1/account?x=1",
        authority: "127.0.0.1:8443",
        scheme: "https",
        headers: &headers,
        body: &[],
    };
    if let Ok(Some(claims)) = coinbase::claims(&req, 1_700_000_000_000) {
        for key in [
            KeyMaterial::Hmac(Zeroizing::new(b"secret".to_vec())),
            KeyMaterial::Ed25519([3; 32]),
            KeyMaterial::EcdsaP256(vec![4; 65]),
        ] {
            let _ = coinbase::verify(&req, &claims, &key);
        }
    }
});
