//! The dispatcher, and properties: random inputs never panic the parsers;
//! random signed requests always verify.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use rampart_auth::profiles::jwt::{self, Alg, JwtSigner};
use rampart_auth::profiles::kraken::DataFormat;
use rampart_auth::profiles::{self, binance, coinbase, kraken};
use rampart_auth::{AuthError, KeyMaterial, RequestView, Scheme};
use zeroize::Zeroizing;

const NOW_S: i64 = 1_700_000_000;
const NOW_MS: i64 = NOW_S * 1000;
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
            authority: "127.0.0.1:8443".to_owned(),
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

fn binance_req() -> (Req, KeyMaterial) {
    let secret = b"binance secret";
    let signed = binance::sign(
        &binance::Signer::Hmac(secret),
        "bk",
        "symbol=BTC-USD",
        b"",
        binance::SignatureLocation::Query,
        NOW_MS,
        None,
    )
    .unwrap();
    let req =
        Req::new(Method::GET, &format!("/v1/orders?{}", signed.query)).header("X-MBX-APIKEY", "bk");
    (req, KeyMaterial::Hmac(Zeroizing::new(secret.to_vec())))
}

fn kraken_req() -> (Req, KeyMaterial) {
    let secret = b"kraken secret";
    let body = kraken::form_with_nonce(5, "a=1");
    let mut req = Req::new(Method::POST, "/v1/orders")
        .header("content-type", FORM)
        .body(body.as_bytes());
    for (name, value) in kraken::sign(secret, "kk", "/v1/orders", 5, body.as_bytes()) {
        req = req.header(name, &value);
    }
    (req, KeyMaterial::Hmac(Zeroizing::new(secret.to_vec())))
}

fn coinbase_req() -> (Req, KeyMaterial) {
    let signer = JwtSigner::generate(Alg::Es256).unwrap();
    let headers = coinbase::sign(
        &signer,
        "ck",
        &Method::GET,
        "127.0.0.1:8443",
        "/v1/orders",
        NOW_S,
    )
    .unwrap();
    let req = Req::new(Method::GET, "/v1/orders").header(headers[0].0, &headers[0].1);
    (req, signer.public_key().unwrap())
}

#[test]
fn detect_finds_each_profile_and_verify_dispatches() {
    for (make, scheme) in [
        (
            binance_req as fn() -> (Req, KeyMaterial),
            Scheme::BinanceHmac,
        ),
        (kraken_req, Scheme::KrakenHmac),
        (coinbase_req, Scheme::CoinbaseJwtEs256),
    ] {
        let (req, key) = make();
        let claims = profiles::detect(&req.view(), NOW_MS).unwrap().unwrap();
        assert_eq!(claims.scheme, scheme);
        profiles::verify(&req.view(), &claims, &key).unwrap();
    }
}

#[test]
fn detect_without_credentials_is_none() {
    let req = Req::new(Method::GET, "/v1/orders?timestamp=1")
        .header("authorization", "Basic dXNlcjpwYXNz");
    assert_eq!(profiles::detect(&req.view(), NOW_MS), Ok(None));
}

#[test]
fn detect_rejects_two_profiles_at_once() {
    let (binance, _) = binance_req();
    let (kraken, _) = kraken_req();
    let (coinbase, _) = coinbase_req();
    let mut both = Req::new(Method::GET, &binance.path_and_query);
    both.headers = binance.headers.clone();
    both.headers.extend(coinbase.headers.clone());
    assert_eq!(
        profiles::detect(&both.view(), NOW_MS),
        Err(AuthError::Malformed(
            "credentials of more than one signing profile".to_owned()
        ))
    );
    // A broken profile's error surfaces even next to a valid one.
    let mut broken = Req::new(Method::POST, "/v1/orders").body(&kraken.body);
    broken.headers = kraken.headers.clone();
    broken = broken.header("X-MBX-APIKEY", "bk");
    assert!(matches!(
        profiles::detect(&broken.view(), NOW_MS),
        Err(AuthError::Malformed(_))
    ));
    // Another issuer's bearer token next to Binance credentials is not a conflict.
    let signer = JwtSigner::generate(Alg::EdDsa).unwrap();
    let mut header = serde_json::Map::new();
    header.insert("kid".to_owned(), "rampart-key".into());
    let mut payload = serde_json::Map::new();
    payload.insert("iss".to_owned(), "rampart".into());
    let other = jwt::encode(&signer, &header, &payload).unwrap();
    let mut with_other = Req::new(Method::GET, &binance.path_and_query);
    with_other.headers = binance.headers.clone();
    with_other = with_other.header("authorization", &format!("Bearer {other}"));
    assert_eq!(
        profiles::detect(&with_other.view(), NOW_MS)
            .unwrap()
            .unwrap()
            .scheme,
        Scheme::BinanceHmac
    );
}

#[test]
fn verify_rejects_non_profile_schemes() {
    let (req, key) = binance_req();
    let mut claims = profiles::detect(&req.view(), NOW_MS).unwrap().unwrap();
    claims.scheme = Scheme::Rfc9421HmacSha256;
    assert!(matches!(
        profiles::verify(&req.view(), &claims, &key),
        Err(AuthError::AlgorithmMismatch(_))
    ));
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        "[A-Za-z0-9+/=]{0,120}",
        Just("Bearer ".to_owned()),
        "Bearer [A-Za-z0-9_.=-]{0,200}",
    ]
}

fn urlish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9=&%+._-]{0,200}",
        "(timestamp|recvWindow|signature|nonce|a)=[0-9a-fA-F%+/=]{0,70}(&(timestamp|recvWindow|signature|nonce|a)=[0-9a-fA-F%+/=]{0,70}){0,4}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn binance_parser_never_panics(
        query in proptest::collection::vec(any::<u8>(), 0..256),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        form in any::<bool>(),
    ) {
        let _ = binance::parse_signed_params(&query, &body, form);
    }

    #[test]
    fn binance_parser_never_panics_on_param_like_input(query in urlish(), body in urlish(), form in any::<bool>()) {
        if let Ok(params) = binance::parse_signed_params(query.as_bytes(), body.as_bytes(), form) {
            // The payload is a prefix-preserving cut of query ‖ body.
            let payload = params.payload();
            prop_assert!(payload.len() <= query.len() + body.len());
            prop_assert!(params.recv_window_ms <= binance::MAX_RECV_WINDOW_MS);
        }
    }

    #[test]
    fn kraken_nonce_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256), json in any::<bool>()) {
        let format = if json { DataFormat::Json } else { DataFormat::Form };
        let _ = kraken::extract_nonce(&data, format);
    }

    #[test]
    fn kraken_json_nonce_never_panics(nonce in "[ -~]{0,30}", extra in "[ -~]{0,30}") {
        let _ = kraken::extract_nonce(format!(r#"{{"nonce":{nonce},"x":"{extra}"}}"#).as_bytes(), DataFormat::Json);
        let _ = kraken::extract_nonce(format!(r#"{{"nonce":"{nonce}"}}"#).as_bytes(), DataFormat::Json);
    }

    #[test]
    fn jwt_parser_never_panics(token in "[ -~]{0,400}") {
        let _ = jwt::parse(&token);
    }

    #[test]
    fn jwt_parser_never_panics_on_three_parts(
        h in proptest::collection::vec(any::<u8>(), 0..200),
        p in proptest::collection::vec(any::<u8>(), 0..200),
        s in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!("{}.{}.{}", e.encode(&h), e.encode(&p), e.encode(&s));
        let _ = jwt::parse(&token);
    }

    #[test]
    fn pem_and_secret_parsers_never_panic(text in "[ -~\n]{0,300}") {
        let _ = JwtSigner::from_pem(&text);
        let _ = JwtSigner::from_pem(&format!("-----BEGIN PRIVATE KEY-----\n{text}\n-----END PRIVATE KEY-----"));
        let _ = kraken::decode_secret(&text);
    }

    #[test]
    fn claims_never_panic(
        mbx in proptest::option::of(header_value()),
        api_key in proptest::option::of(header_value()),
        api_sign in proptest::option::of(header_value()),
        authorization in proptest::option::of(header_value()),
        content_type in proptest::option::of(prop_oneof![Just(FORM.to_owned()), Just("application/json".to_owned()), "[ -~]{0,20}"]),
        query in urlish(),
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut req = Req::new(Method::POST, &format!("/v1/orders?{query}")).body(&body);
        for (name, value) in [
            ("x-mbx-apikey", mbx),
            ("api-key", api_key),
            ("api-sign", api_sign),
            ("authorization", authorization),
            ("content-type", content_type),
        ] {
            if let Some(value) = value {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    req.headers.insert(name, value);
                }
            }
        }
        if let Ok(Some(claims)) = profiles::detect(&req.view(), NOW_MS) {
            for key in [
                KeyMaterial::Hmac(Zeroizing::new(b"k".to_vec())),
                KeyMaterial::Ed25519([0; 32]),
                KeyMaterial::EcdsaP256(vec![4; 65]),
            ] {
                prop_assert!(profiles::verify(&req.view(), &claims, &key).is_err());
            }
        }
    }

    #[test]
    fn binance_random_requests_round_trip(
        params in proptest::collection::vec(("[a-z]{1,8}", "[A-Za-z0-9._~-]{0,12}"), 0..6),
        body_params in proptest::collection::vec(("[a-z]{1,8}", "[A-Za-z0-9._~-]{0,12}"), 0..6),
        in_body in any::<bool>(),
        ed in any::<bool>(),
        timestamp in 1i64..=i64::MAX,
        window in proptest::option::of(0u64..=60_000),
    ) {
        let reserved = |(k, _): &(String, String)| !["signature", "timestamp"].contains(&k.as_str());
        let join = |ps: Vec<(String, String)>| ps.into_iter().filter(reserved).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let query = join(params);
        let body = join(body_params);
        let location = if in_body { binance::SignatureLocation::Body } else { binance::SignatureLocation::Query };
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        let (signer, key) = if ed {
            (binance::Signer::Ed25519(&pair), KeyMaterial::Ed25519(pair.public_key().as_ref().try_into().unwrap()))
        } else {
            (binance::Signer::Hmac(b"secret"), KeyMaterial::Hmac(Zeroizing::new(b"secret".to_vec())))
        };
        // recvWindow in the generated params would clash with the signer's.
        prop_assume!(!query.contains("recvWindow") && !body.contains("recvWindow"));
        let signed = binance::sign(&signer, "key", &query, body.as_bytes(), location, timestamp, window).unwrap();
        let mut req = Req::new(Method::POST, &format!("/v1/orders?{}", signed.query))
            .header("X-MBX-APIKEY", "key")
            .body(&signed.body);
        if in_body {
            req = req.header("content-type", FORM);
        }
        let claims = binance::claims(&req.view(), NOW_MS).unwrap().unwrap();
        prop_assert_eq!(claims.created, Some(timestamp));
        prop_assert_eq!(claims.window_ms, Some(window.unwrap_or(5000)));
        binance::verify(&req.view(), &claims, &key).unwrap();
    }

    #[test]
    fn kraken_random_requests_round_trip(
        params in proptest::collection::vec(("[a-z]{1,8}", "[A-Za-z0-9._~-]{0,12}"), 0..6),
        nonce in any::<u64>(),
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        json in any::<bool>(),
    ) {
        let params: Vec<(String, String)> = params.into_iter().filter(|(k, _)| k != "nonce").collect();
        let (body, ct) = if json {
            let mut object = serde_json::Map::new();
            for (k, v) in &params {
                object.insert(k.clone(), v.clone().into());
            }
            object.insert("nonce".to_owned(), nonce.to_string().into());
            (serde_json::Value::Object(object).to_string(), "application/json")
        } else {
            let rest = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            (kraken::form_with_nonce(nonce, &rest), FORM)
        };
        let mut req = Req::new(Method::POST, "/v1/orders").header("content-type", ct).body(body.as_bytes());
        for (name, value) in kraken::sign(&secret, "key", "/v1/orders", nonce, body.as_bytes()) {
            req = req.header(name, &value);
        }
        let claims = kraken::claims(&req.view(), NOW_MS).unwrap().unwrap();
        prop_assert_eq!(claims.counter_nonce, Some(nonce));
        kraken::verify(&req.view(), &claims, &KeyMaterial::Hmac(Zeroizing::new(secret))).unwrap();
    }
}
