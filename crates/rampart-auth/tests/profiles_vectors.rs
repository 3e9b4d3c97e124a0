//! Every vector of `shared/vectors/exchange-signing.json`, through the same
//! code paths the gateway uses (`claims` → `verify`, or `verify_payload`
//! where the vector's payload is not an HTTP request).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::PathBuf;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rampart_auth::profiles::{self, binance, deribit, kraken};
use rampart_auth::{AuthError, KeyMaterial, RequestView, Scheme, TimeUnit};
use serde_json::Value;
use zeroize::Zeroizing;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Sections this file checks; a new section fails [`every_section_is_checked`].
const KNOWN_SECTIONS: &[&str] = &[
    "about",
    "binance_hmac_rest",
    "binance_hmac_websocket",
    "binance_ed25519",
    "kraken_spot_hmac_sha512",
    "deribit_client_signature",
    "coinbase_cdp_jwt",
];

fn vectors() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/exchange-signing.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "test vectors missing: cannot read {} ({e}); they live in the shared directory next to the workspace",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("test vectors at {} are not JSON: {e}", path.display()))
}

fn section(name: &str) -> Value {
    let all = vectors();
    all.get(name)
        .unwrap_or_else(|| panic!("vector section {name} missing"))
        .clone()
}

fn s<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector field {key} missing or not a string"))
}

fn cases(section: &Value) -> Vec<Value> {
    let cases = section["cases"].as_array().expect("cases array").clone();
    assert!(!cases.is_empty(), "no cases");
    cases
}

struct Req {
    method: Method,
    path_and_query: String,
    authority: String,
    scheme: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn new(method: Method, path_and_query: &str) -> Self {
        Self {
            method,
            path_and_query: path_and_query.to_owned(),
            authority: "api.example.com".to_owned(),
            scheme: "https".to_owned(),
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path_and_query: &self.path_and_query,
            authority: &self.authority,
            scheme: &self.scheme,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

const NOW_MS: i64 = 1_700_000_000_000;

#[test]
fn every_section_is_checked() {
    let all = vectors();
    let sections: Vec<&String> = all.as_object().expect("object").keys().collect();
    for name in &sections {
        assert!(
            KNOWN_SECTIONS.contains(&name.as_str()),
            "vector section {name} is not checked by this file"
        );
    }
    for name in KNOWN_SECTIONS {
        assert!(all.get(*name).is_some(), "vector section {name} missing");
    }
}

/// `(query, body)` of a REST case: the whole payload is the query unless the
/// note says `query '…' followed by body '…'`.
fn rest_split(case: &Value) -> (String, String) {
    let payload = s(case, "payload");
    let Some(note) = case.get("note").and_then(Value::as_str) else {
        return (payload.to_owned(), String::new());
    };
    let quoted: Vec<&str> = note.split('\'').skip(1).step_by(2).collect();
    assert_eq!(quoted.len(), 2, "note does not name a query and a body");
    assert_eq!(format!("{}{}", quoted[0], quoted[1]), payload);
    (quoted[0].to_owned(), quoted[1].to_owned())
}

#[test]
fn binance_hmac_rest_vectors() {
    let sec = section("binance_hmac_rest");
    let secret = s(&sec, "secret");
    let key = KeyMaterial::Hmac(Zeroizing::new(secret.as_bytes().to_vec()));
    for case in cases(&sec) {
        let payload = s(&case, "payload");
        let signature = s(&case, "signature");
        let (query, body) = rest_split(&case);

        // The signature computation itself.
        assert_eq!(
            binance::sign_payload(
                &binance::Signer::Hmac(secret.as_bytes()),
                payload.as_bytes()
            ),
            signature
        );

        // As sent: the signature is the last parameter of the body when there
        // is one, else of the query string.
        let req = if body.is_empty() {
            Req::new(
                Method::GET,
                &format!("/api/v3/order?{query}&signature={signature}"),
            )
        } else {
            Req::new(Method::POST, &format!("/api/v3/order?{query}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("{body}&signature={signature}").as_bytes())
        }
        .header(
            "X-MBX-APIKEY",
            "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
        );
        let claims = binance::claims(&req.view(), NOW_MS).unwrap().unwrap();
        assert_eq!(claims.scheme, Scheme::BinanceHmac);
        assert_eq!(claims.created, Some(1_499_827_319_559));
        assert_eq!(claims.created_unit, TimeUnit::Milliseconds);
        assert_eq!(claims.window_ms, Some(5000));
        assert_eq!(
            claims.nonce.as_deref(),
            Some(format!("sig:{signature}").as_str())
        );
        assert_eq!(claims.credential_headers, vec!["x-mbx-apikey"]);
        binance::verify(&req.view(), &claims, &key).unwrap();
        // The dispatcher takes the same path.
        assert_eq!(
            profiles::detect(&req.view(), NOW_MS).unwrap().as_ref(),
            Some(&claims)
        );
        profiles::verify(&req.view(), &claims, &key).unwrap();

        // Whole payload in a form body, signature last.
        let form = Req::new(Method::POST, "/api/v3/order")
            .header("X-MBX-APIKEY", "k")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{payload}&signature={signature}").as_bytes());
        let claims = binance::claims(&form.view(), NOW_MS).unwrap().unwrap();
        binance::verify(&form.view(), &claims, &key).unwrap();

        // Upper-case hex is the same signature (and the same replay nonce).
        let upper = Req::new(
            Method::GET,
            &format!(
                "/api/v3/order?{payload}&signature={}",
                signature.to_uppercase()
            ),
        )
        .header("X-MBX-APIKEY", "k");
        let upper_claims = binance::claims(&upper.view(), NOW_MS).unwrap().unwrap();
        assert_eq!(upper_claims.nonce, claims.nonce);
        binance::verify(&upper.view(), &upper_claims, &key).unwrap();
    }
}

#[test]
fn binance_hmac_websocket_vectors() {
    let sec = section("binance_hmac_websocket");
    let secret = s(&sec, "secret");
    let key = KeyMaterial::Hmac(Zeroizing::new(secret.as_bytes().to_vec()));
    for case in cases(&sec) {
        let payload = s(&case, "payload");
        let signature = s(&case, "signature");
        // Rebuild the payload from the parameters in another order, with a
        // signature parameter that must be left out.
        let mut params: Vec<(&str, &str)> = payload
            .split('&')
            .map(|kv| kv.split_once('=').expect("k=v"))
            .collect();
        params.reverse();
        params.push(("signature", "ignored"));
        assert_eq!(binance::websocket_payload(&params), payload);
        binance::verify_payload(payload.as_bytes(), signature, &key).unwrap();
        assert_eq!(
            binance::sign_payload(
                &binance::Signer::Hmac(secret.as_bytes()),
                payload.as_bytes()
            ),
            signature
        );
        let mut tampered = payload.as_bytes().to_vec();
        tampered[0] ^= 1;
        assert_eq!(
            binance::verify_payload(&tampered, signature, &key),
            Err(AuthError::BadSignature)
        );
    }
}

#[test]
fn binance_ed25519_vectors() {
    let sec = section("binance_ed25519");
    let pkcs8 = B64.decode(s(&sec, "private_key_pkcs8_der_b64")).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).unwrap();
    let public = B64.decode(s(&sec, "public_key_b64")).unwrap();
    assert_eq!(pair.public_key().as_ref(), public.as_slice());
    let seed_hex = s(&sec, "private_key_seed_hex");
    let from_seed = Ed25519KeyPair::from_seed_unchecked(
        &(0..32)
            .map(|i| u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    assert_eq!(from_seed.public_key().as_ref(), public.as_slice());
    let key = KeyMaterial::Ed25519(public.as_slice().try_into().unwrap());
    for case in cases(&sec) {
        let payload = s(&case, "payload");
        let signature = s(&case, "signature");
        binance::verify_payload(payload.as_bytes(), signature, &key).unwrap();
        // Ed25519 is deterministic: signing reproduces the vector.
        assert_eq!(
            binance::sign_payload(&binance::Signer::Ed25519(&pair), payload.as_bytes()),
            signature
        );
        let mut tampered = payload.as_bytes().to_vec();
        tampered[0] ^= 1;
        assert_eq!(
            binance::verify_payload(&tampered, signature, &key),
            Err(AuthError::BadSignature)
        );
        // Wrong key type for the signature's shape.
        let hmac = KeyMaterial::Hmac(Zeroizing::new(b"secret".to_vec()));
        assert!(matches!(
            binance::verify_payload(payload.as_bytes(), signature, &hmac),
            Err(AuthError::AlgorithmMismatch(_))
        ));
    }
}

#[test]
fn kraken_spot_hmac_sha512_vectors() {
    let sec = section("kraken_spot_hmac_sha512");
    let secret = kraken::decode_secret(s(&sec, "secret")).unwrap();
    let key = KeyMaterial::Hmac(secret.clone());
    for case in cases(&sec) {
        let uri_path = s(&case, "uri_path");
        let nonce = s(&case, "nonce");
        let post_data = s(&case, "post_data");
        let signature = s(&case, "signature");
        assert_eq!(
            kraken::sign_message(&secret, uri_path, nonce, post_data.as_bytes()),
            signature
        );
        let req = Req::new(Method::POST, uri_path)
            .header("API-Key", "kraken-key")
            .header("API-Sign", signature)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(post_data.as_bytes());
        let claims = kraken::claims(&req.view(), NOW_MS).unwrap().unwrap();
        assert_eq!(claims.scheme, Scheme::KrakenHmac);
        assert_eq!(claims.key_id, "kraken-key");
        assert_eq!(claims.counter_nonce, Some(nonce.parse().unwrap()));
        assert_eq!(claims.credential_headers, vec!["api-key", "api-sign"]);
        kraken::verify(&req.view(), &claims, &key).unwrap();
        assert_eq!(
            profiles::detect(&req.view(), NOW_MS).unwrap().as_ref(),
            Some(&claims)
        );
        profiles::verify(&req.view(), &claims, &key).unwrap();

        let other = KeyMaterial::Hmac(Zeroizing::new(b"another secret".to_vec()));
        assert_eq!(
            kraken::verify(&req.view(), &claims, &other),
            Err(AuthError::BadSignature)
        );
    }
}

#[test]
fn deribit_client_signature_vectors() {
    let sec = section("deribit_client_signature");
    for case in cases(&sec) {
        let secret = s(&case, "client_secret").as_bytes();
        let timestamp = s(&case, "timestamp");
        let nonce = s(&case, "nonce");
        let data = s(&case, "data").as_bytes();
        let signature = s(&case, "signature");
        assert_eq!(
            deribit::client_signature(secret, timestamp, nonce, data),
            signature
        );
        assert!(deribit::verify_client_signature(
            secret, timestamp, nonce, data, signature
        ));
        assert!(deribit::verify_client_signature(
            secret,
            timestamp,
            nonce,
            data,
            &signature.to_uppercase()
        ));
        assert!(!deribit::verify_client_signature(
            secret,
            "1576074319001",
            nonce,
            data,
            signature
        ));
    }
    assert_eq!(
        deribit::rest_data(
            &Method::GET,
            "/api/v2/private/get_account_summary?currency=BTC",
            b""
        ),
        b"GET\n/api/v2/private/get_account_summary?currency=BTC\n\n"
    );
}

/// The Coinbase section is a recipe without a vector; the round-trip tests
/// in `profiles_coinbase.rs` cover it. If cases appear, wire them here.
#[test]
fn coinbase_cdp_jwt_recipe_has_no_vector() {
    let sec = section("coinbase_cdp_jwt");
    assert!(
        sec.get("cases").is_none(),
        "coinbase_cdp_jwt now has cases: check them in this file"
    );
    let recipe = s(&sec, "recipe");
    for needle in [
        "ES256",
        "EdDSA",
        "kid",
        "nonce",
        "'cdp'",
        "now+120",
        "METHOD host/path",
    ] {
        assert!(recipe.contains(needle), "recipe changed: {needle} missing");
    }
}
