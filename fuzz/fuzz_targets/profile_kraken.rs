//! Arbitrary bytes as Kraken-style nonce-carrying data (the first byte
//! picks form or JSON) through nonce extraction and the full claims →
//! verify path (as a body, and as a bodyless request's query string): they
//! must never panic, whatever they return.
#![no_main]

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use rampart_auth::profiles::kraken::{self, DataFormat};
use rampart_auth::{KeyMaterial, RequestView};
use zeroize::Zeroizing;

const SIGN: &str =
    "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let json = flags & 1 == 1;
    let format = if json {
        DataFormat::Json
    } else {
        DataFormat::Form
    };
    let _ = kraken::extract_nonce(rest, format);

    let mut headers = HeaderMap::new();
    headers.insert("api-key", HeaderValue::from_static("fuzz-key"));
    headers.insert("api-sign", HeaderValue::from_static(SIGN));
    headers.insert(
        "content-type",
        HeaderValue::from_static(if json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        }),
    );
    let key = KeyMaterial::Hmac(Zeroizing::new(vec![7; 64]));
    let body_req = RequestView {
        method: &Method::POST,
        path_and_query: "/0/private/AddOrder",
        authority: "127.0.0.1:8443",
        scheme: "https",
        headers: &headers,
        body: rest,
    };
    if let Ok(Some(claims)) = kraken::claims(&body_req, 0) {
        let _ = kraken::verify(&body_req, &claims, &key);
    }
    if let Ok(query) = std::str::from_utf8(rest) {
        let path_and_query = format!("/0/private/Balance?{query}");
        let query_req = RequestView {
            method: &Method::GET,
            path_and_query: &path_and_query,
            body: &[],
            ..body_req
        };
        if let Ok(Some(claims)) = kraken::claims(&query_req, 0) {
            let _ = kraken::verify(&query_req, &claims, &key);
        }
    }
});
