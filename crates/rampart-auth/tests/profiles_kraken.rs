//! Kraken-style profile: sign → claims → verify, tampering, key types,
//! nonce extraction from form and JSON.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rampart_auth::profiles::kraken::{self, DataFormat};
use rampart_auth::{AuthError, Claims, KeyMaterial, RequestView, Scheme};
use zeroize::Zeroizing;

const NOW_MS: i64 = 1_700_000_000_000;
const SECRET_B64: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
const FORM: &str = "application/x-www-form-urlencoded";

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

fn secret() -> Zeroizing<Vec<u8>> {
    kraken::decode_secret(SECRET_B64).unwrap()
}

fn key() -> KeyMaterial {
    KeyMaterial::Hmac(secret())
}

/// A POST with a form body `nonce=…&params`, signed.
fn signed_form(path: &str, nonce: u64, params: &str) -> Req {
    let body = kraken::form_with_nonce(nonce, params);
    let mut req = Req::new(Method::POST, path)
        .header("content-type", FORM)
        .body(body.as_bytes());
    for (name, value) in kraken::sign(&secret(), "kraken-key", path, nonce, body.as_bytes()) {
        req = req.header(name, &value);
    }
    req
}

fn claims_of(req: &Req) -> Claims {
    kraken::claims(&req.view(), NOW_MS)
        .unwrap()
        .expect("kraken claims")
}

fn verify(req: &Req, key: &KeyMaterial) -> Result<(), AuthError> {
    let claims = kraken::claims(&req.view(), NOW_MS)?.expect("kraken claims");
    kraken::verify(&req.view(), &claims, key)
}

fn malformed_detail(req: &Req) -> String {
    match kraken::claims(&req.view(), NOW_MS) {
        Err(AuthError::Malformed(detail)) => detail,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn with_headers(mut req: Req, from: &Req) -> Req {
    for name in ["api-key", "api-sign", "content-type"] {
        if let Some(v) = from.headers.get(name) {
            req.headers.insert(name, v.clone());
        }
    }
    req
}

#[test]
fn form_round_trip() {
    let req = signed_form(
        "/v1/orders",
        1_700_000_000_001,
        "symbol=BTC-USD&side=buy&qty=0.5",
    );
    let claims = claims_of(&req);
    assert_eq!(claims.scheme, Scheme::KrakenHmac);
    assert_eq!(claims.key_id, "kraken-key");
    assert_eq!(claims.counter_nonce, Some(1_700_000_000_001));
    assert_eq!(claims.nonce, None);
    assert_eq!(claims.created, None);
    assert_eq!(claims.credential_headers, vec!["api-key", "api-sign"]);
    kraken::verify(&req.view(), &claims, &key()).unwrap();
}

#[test]
fn form_without_content_type_is_form() {
    let mut req = signed_form("/v1/orders", 7, "a=1");
    req.headers.remove("content-type");
    verify(&req, &key()).unwrap();
}

#[test]
fn json_round_trip_string_and_number_nonce() {
    for body in [
        r#"{"nonce":"1700000000002","symbol":"BTC-USD","qty":"0.5"}"#,
        r#"{"symbol":"BTC-USD","nonce":1700000000002,"qty":"0.5"}"#,
    ] {
        let mut req = Req::new(Method::POST, "/v1/orders")
            .header("content-type", "application/json; charset=utf-8")
            .body(body.as_bytes());
        for (name, value) in kraken::sign(
            &secret(),
            "kraken-key",
            "/v1/orders",
            1_700_000_000_002,
            body.as_bytes(),
        ) {
            req = req.header(name, &value);
        }
        assert_eq!(claims_of(&req).counter_nonce, Some(1_700_000_000_002));
        verify(&req, &key()).unwrap();
    }
}

#[test]
fn get_with_nonce_in_query_round_trip() {
    let query = kraken::form_with_nonce(42, "symbol=BTC-USD");
    let mut req = Req::new(Method::GET, &format!("/v1/orders?{query}"));
    for (name, value) in kraken::sign(&secret(), "kraken-key", "/v1/orders", 42, query.as_bytes()) {
        req = req.header(name, &value);
    }
    assert_eq!(claims_of(&req).counter_nonce, Some(42));
    verify(&req, &key()).unwrap();
    // The query is covered.
    let mut tampered = Req::new(Method::GET, "/v1/orders?nonce=42&symbol=ETH-USD");
    tampered = with_headers(tampered, &req);
    assert_eq!(verify(&tampered, &key()), Err(AuthError::BadSignature));
}

#[test]
fn tampering_with_each_part_fails() {
    let req = signed_form("/v1/orders", 100, "symbol=BTC-USD&side=buy&qty=0.5");
    verify(&req, &key()).unwrap();
    let body = String::from_utf8(req.body.clone()).unwrap();

    // Each body parameter.
    let params: Vec<&str> = body.split('&').collect();
    for i in 0..params.len() {
        let mut changed = params.clone();
        let replacement = if params[i].starts_with("nonce=") {
            "nonce=101".to_owned()
        } else {
            format!("{}X", params[i])
        };
        changed[i] = &replacement;
        let tampered = with_headers(
            Req::new(Method::POST, "/v1/orders").body(changed.join("&").as_bytes()),
            &req,
        );
        assert_eq!(
            verify(&tampered, &key()),
            Err(AuthError::BadSignature),
            "parameter {i}"
        );
    }
    // Path.
    let path = with_headers(
        Req::new(Method::POST, "/v1/withdrawals").body(&req.body),
        &req,
    );
    assert_eq!(verify(&path, &key()), Err(AuthError::BadSignature));
    // Signature.
    let mut sig = base64::engine::general_purpose::STANDARD
        .decode(req.headers["api-sign"].to_str().unwrap())
        .unwrap();
    sig[0] ^= 1;
    let mut flipped = with_headers(Req::new(Method::POST, "/v1/orders").body(&req.body), &req);
    flipped.headers.insert(
        "api-sign",
        HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(sig)).unwrap(),
    );
    assert_eq!(verify(&flipped, &key()), Err(AuthError::BadSignature));
    // Key id: another key's secret does not verify.
    let mut other = with_headers(Req::new(Method::POST, "/v1/orders").body(&req.body), &req);
    other
        .headers
        .insert("api-key", HeaderValue::from_static("someone-else"));
    let claims = claims_of(&other);
    assert_eq!(claims.key_id, "someone-else");
    let other_key = KeyMaterial::Hmac(Zeroizing::new(b"other".to_vec()));
    assert_eq!(
        kraken::verify(&other.view(), &claims, &other_key),
        Err(AuthError::BadSignature)
    );
    // Claims of one request do not verify another.
    assert!(matches!(
        kraken::verify(&other.view(), &claims_of(&req), &key()),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn wrong_key_types_are_algorithm_mismatch() {
    let req = signed_form("/v1/orders", 1, "a=1");
    let claims = claims_of(&req);
    assert!(matches!(
        kraken::verify(&req.view(), &claims, &KeyMaterial::Ed25519([1; 32])),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    assert!(matches!(
        kraken::verify(&req.view(), &claims, &KeyMaterial::EcdsaP256(vec![4; 65])),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    let mut wrong = claims.clone();
    wrong.scheme = Scheme::BinanceHmac;
    assert!(matches!(
        kraken::verify(&req.view(), &wrong, &key()),
        Err(AuthError::AlgorithmMismatch(_))
    ));
}

#[test]
fn malformed_requests_have_a_useful_detail() {
    let sign = kraken::sign_message(&secret(), "/v1/orders", "1", b"nonce=1");
    let post = |body: &str, ct: Option<&str>| {
        let mut req = Req::new(Method::POST, "/v1/orders")
            .header("API-Key", "k")
            .header("API-Sign", &sign)
            .body(body.as_bytes());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req
    };
    let cases: Vec<(Req, &str)> = vec![
        (post("a=1", Some(FORM)), "nonce parameter missing"),
        (
            post("nonce=1&nonce=2", Some(FORM)),
            "nonce parameter is repeated",
        ),
        (
            post("nonce=1&%6Eonce=2", Some(FORM)),
            "nonce parameter is repeated",
        ),
        (post("nonce=abc", Some(FORM)), "unsigned 64-bit"),
        (post("nonce=-1", Some(FORM)), "unsigned 64-bit"),
        (
            post("nonce=18446744073709551616", Some(FORM)),
            "unsigned 64-bit",
        ),
        (post("nonce=", Some(FORM)), "unsigned 64-bit"),
        (post("nonce=%zz", Some(FORM)), "percent-encoding"),
        (
            post(r#"{"a":1}"#, Some("application/json")),
            "nonce member missing",
        ),
        (
            post(r#"{"nonce":-1}"#, Some("application/json")),
            "unsigned 64-bit",
        ),
        (
            post(r#"{"nonce":1.5}"#, Some("application/json")),
            "unsigned 64-bit",
        ),
        (
            post(r#"{"nonce":"1a"}"#, Some("application/json")),
            "unsigned 64-bit",
        ),
        (
            post(r#"{"nonce":true}"#, Some("application/json")),
            "string of digits or an integer",
        ),
        (
            post(r#"{"nonce":1,"nonce":2}"#, Some("application/json")),
            "duplicate key",
        ),
        (
            post(r#"[1]"#, Some("application/json")),
            "not a JSON object",
        ),
        (
            post(r#"{"nonce":1"#, Some("application/json")),
            "not valid JSON",
        ),
        (
            post("nonce=1", Some("text/plain")),
            "must be application/x-www-form-urlencoded",
        ),
    ];
    for (req, expected) in cases {
        let detail = malformed_detail(&req);
        assert!(
            detail.contains(expected),
            "{:?}: {detail}",
            String::from_utf8_lossy(&req.body)
        );
    }
    // A query next to a body would be unsigned.
    let req = Req::new(Method::POST, "/v1/orders?x=1")
        .header("API-Key", "k")
        .header("API-Sign", &sign)
        .header("content-type", FORM)
        .body(b"nonce=1");
    assert!(malformed_detail(&req).contains("must not have a query string"));
    // GET without a nonce.
    let req = Req::new(Method::GET, "/v1/orders")
        .header("API-Key", "k")
        .header("API-Sign", &sign);
    assert!(malformed_detail(&req).contains("nonce parameter missing"));
    // Header problems.
    let only_key = Req::new(Method::POST, "/v1/orders")
        .header("API-Key", "k")
        .body(b"nonce=1");
    assert!(malformed_detail(&only_key).contains("API-Sign header missing"));
    let only_sign = Req::new(Method::POST, "/v1/orders")
        .header("API-Sign", &sign)
        .body(b"nonce=1");
    assert!(malformed_detail(&only_sign).contains("API-Key header missing"));
    let bad_sign = Req::new(Method::POST, "/v1/orders")
        .header("API-Key", "k")
        .header("API-Sign", "not base64!")
        .body(b"nonce=1");
    assert!(malformed_detail(&bad_sign).contains("API-Sign must be base64 of 64 bytes"));
    let short_sign = Req::new(Method::POST, "/v1/orders")
        .header("API-Key", "k")
        .header("API-Sign", "AAAA")
        .body(b"nonce=1");
    assert!(malformed_detail(&short_sign).contains("API-Sign must be base64 of 64 bytes"));
}

#[test]
fn absent_headers_are_none() {
    let req = Req::new(Method::POST, "/v1/orders").body(b"nonce=1");
    assert_eq!(kraken::claims(&req.view(), NOW_MS), Ok(None));
}

#[test]
fn extract_nonce_forms() {
    assert_eq!(
        kraken::extract_nonce(b"a=1&nonce=0099", DataFormat::Form).unwrap(),
        kraken::Nonce {
            text: "0099".to_owned(),
            value: 99
        }
    );
    assert_eq!(
        kraken::extract_nonce(br#"{"nonce":18446744073709551615}"#, DataFormat::Json)
            .unwrap()
            .value,
        u64::MAX
    );
    assert!(kraken::extract_nonce(br#"{"nonce":18446744073709551616}"#, DataFormat::Json).is_err());
    // A nested nonce is not the nonce.
    assert!(kraken::extract_nonce(br#"{"x":{"nonce":1}}"#, DataFormat::Json).is_err());
    assert_eq!(DataFormat::from_media_type(None).unwrap(), DataFormat::Form);
}

#[test]
fn decode_secret_rules() {
    assert_eq!(secret().len(), 64);
    assert!(kraken::decode_secret("").is_err());
    assert!(kraken::decode_secret("not base64!").is_err());
    let round = base64::engine::general_purpose::STANDARD.encode(secret().as_slice());
    assert_eq!(round, SECRET_B64);
}
