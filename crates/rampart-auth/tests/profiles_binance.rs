//! Binance-style profile: sign → claims → verify, tampering, key types,
//! parameter rules.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rampart_auth::profiles::binance::{self, SignatureLocation, Signer};
use rampart_auth::{AuthError, Claims, KeyMaterial, RequestView, Scheme};
use zeroize::Zeroizing;

const NOW_MS: i64 = 1_700_000_000_000;
const SECRET: &[u8] = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
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

fn hmac_key() -> KeyMaterial {
    KeyMaterial::Hmac(Zeroizing::new(SECRET.to_vec()))
}

/// Builds the request a client sends after `binance::sign`.
fn signed_request(
    signer: &Signer<'_>,
    method: Method,
    path: &str,
    query: &str,
    body: &[u8],
    content_type: Option<&str>,
    location: SignatureLocation,
) -> Req {
    let signed = binance::sign(
        signer,
        "binance-key-1",
        query,
        body,
        location,
        NOW_MS,
        Some(10_000),
    )
    .unwrap();
    let mut req = Req::new(method, &format!("{path}?{}", signed.query)).body(&signed.body);
    if signed.query.is_empty() {
        req.path_and_query = path.to_owned();
    }
    for (name, value) in &signed.headers {
        req = req.header(name, value);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req
}

fn claims_of(req: &Req) -> Claims {
    binance::claims(&req.view(), NOW_MS)
        .unwrap()
        .expect("binance claims")
}

fn verify(req: &Req, key: &KeyMaterial) -> Result<(), AuthError> {
    let claims = binance::claims(&req.view(), NOW_MS)?.expect("binance claims");
    binance::verify(&req.view(), &claims, key)
}

#[test]
fn hmac_round_trip_query() {
    let req = signed_request(
        &Signer::Hmac(SECRET),
        Method::GET,
        "/v1/orders",
        "symbol=BTC-USD&limit=10",
        b"",
        None,
        SignatureLocation::Query,
    );
    assert!(req.path_and_query.starts_with(
        "/v1/orders?symbol=BTC-USD&limit=10&recvWindow=10000&timestamp=1700000000000&signature="
    ));
    let claims = claims_of(&req);
    assert_eq!(claims.scheme, Scheme::BinanceHmac);
    assert_eq!(claims.key_id, "binance-key-1");
    assert_eq!(claims.created, Some(NOW_MS));
    assert_eq!(claims.window_ms, Some(10_000));
    assert_eq!(claims.expires, None);
    assert_eq!(claims.counter_nonce, None);
    let sig = req.path_and_query.rsplit_once("signature=").unwrap().1;
    assert_eq!(claims.nonce, Some(format!("sig:{sig}")));
    binance::verify(&req.view(), &claims, &hmac_key()).unwrap();
}

#[test]
fn hmac_round_trip_form_body() {
    let req = signed_request(
        &Signer::Hmac(SECRET),
        Method::POST,
        "/v1/orders",
        "symbol=BTC-USD",
        b"side=buy&qty=0.5&price=65000.00",
        Some(FORM),
        SignatureLocation::Body,
    );
    let body = String::from_utf8(req.body.clone()).unwrap();
    assert!(body.starts_with(
        "side=buy&qty=0.5&price=65000.00&recvWindow=10000&timestamp=1700000000000&signature="
    ));
    verify(&req, &hmac_key()).unwrap();
}

#[test]
fn hmac_round_trip_json_body_signed_raw() {
    let body =
        br#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00"}"#;
    let req = signed_request(
        &Signer::Hmac(SECRET),
        Method::POST,
        "/v1/orders",
        "",
        body,
        Some("application/json"),
        SignatureLocation::Query,
    );
    verify(&req, &hmac_key()).unwrap();
    // The JSON body is covered.
    let mut tampered = req;
    tampered.body =
        br#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"9.5","price":"65000.00"}"#
            .to_vec();
    assert_eq!(verify(&tampered, &hmac_key()), Err(AuthError::BadSignature));
}

#[test]
fn ed25519_round_trip_query_and_body() {
    let pair = Ed25519KeyPair::generate().unwrap();
    let key = KeyMaterial::Ed25519(pair.public_key().as_ref().try_into().unwrap());
    // Run several times: some signatures contain `+` or `/`, which must be
    // percent-encoded in the query.
    for i in 0..16 {
        let query = format!("symbol=BTC-USD&i={i}");
        let req = signed_request(
            &Signer::Ed25519(&pair),
            Method::GET,
            "/v1/orders",
            &query,
            b"",
            None,
            SignatureLocation::Query,
        );
        let sig = req.path_and_query.rsplit_once("signature=").unwrap().1;
        assert!(
            !sig.contains(['+', '/', '=']),
            "signature not percent-encoded"
        );
        let claims = claims_of(&req);
        assert_eq!(claims.scheme, Scheme::BinanceEd25519);
        assert!(claims.nonce.as_deref().unwrap().starts_with("sig:"));
        assert_eq!(claims.nonce.as_deref().unwrap().len(), 4 + 128);
        binance::verify(&req.view(), &claims, &key).unwrap();

        let req = signed_request(
            &Signer::Ed25519(&pair),
            Method::POST,
            "/v1/orders",
            "",
            format!("symbol=BTC-USD&i={i}").as_bytes(),
            Some(FORM),
            SignatureLocation::Body,
        );
        verify(&req, &key).unwrap();
    }
}

#[test]
fn ed25519_unencoded_plus_in_signature_is_read_literally() {
    let pair = Ed25519KeyPair::generate().unwrap();
    let key = KeyMaterial::Ed25519(pair.public_key().as_ref().try_into().unwrap());
    for i in 0..64 {
        let payload = format!("i={i}&timestamp={NOW_MS}");
        let sig = binance::sign_payload(&Signer::Ed25519(&pair), payload.as_bytes());
        if !sig.contains('+') {
            continue;
        }
        let req = Req::new(
            Method::GET,
            &format!("/v1/orders?{payload}&signature={sig}"),
        )
        .header("X-MBX-APIKEY", "k");
        verify(&req, &key).unwrap();
        return;
    }
    panic!("no signature with '+' in 64 tries");
}

#[test]
fn tampering_with_each_query_parameter_fails() {
    let req = signed_request(
        &Signer::Hmac(SECRET),
        Method::GET,
        "/v1/orders",
        "symbol=BTC-USD&limit=10&side=buy",
        b"",
        None,
        SignatureLocation::Query,
    );
    let (signed, sig) = req.path_and_query.rsplit_once("&signature=").unwrap();
    let (path, query) = signed.split_once('?').unwrap();
    let params: Vec<&str> = query.split('&').collect();
    for i in 0..params.len() {
        let mut changed = params.clone();
        let replacement = if params[i].starts_with("timestamp=") {
            format!("timestamp={}", NOW_MS + 1)
        } else if params[i].starts_with("recvWindow=") {
            "recvWindow=60000".to_owned()
        } else {
            format!("{}X", params[i])
        };
        changed[i] = &replacement;
        let mut tampered = Req::new(
            Method::GET,
            &format!("{path}?{}&signature={sig}", changed.join("&")),
        );
        tampered.headers = req.headers.clone();
        assert_eq!(
            verify(&tampered, &hmac_key()),
            Err(AuthError::BadSignature),
            "tampered parameter {i} verified"
        );
    }
    // Dropping a parameter, adding one.
    let mut dropped = Req::new(
        Method::GET,
        &format!("{path}?{}&signature={sig}", params[1..].join("&")),
    );
    dropped.headers = req.headers.clone();
    assert_eq!(verify(&dropped, &hmac_key()), Err(AuthError::BadSignature));
    let mut added = Req::new(
        Method::GET,
        &format!("{path}?extra=1&{query}&signature={sig}"),
    );
    added.headers = req.headers.clone();
    assert_eq!(verify(&added, &hmac_key()), Err(AuthError::BadSignature));
}

#[test]
fn tampering_with_body_signature_and_key_fails() {
    let req = signed_request(
        &Signer::Hmac(SECRET),
        Method::POST,
        "/v1/orders",
        "",
        b"side=buy&qty=0.5",
        Some(FORM),
        SignatureLocation::Body,
    );
    verify(&req, &hmac_key()).unwrap();

    let mut body = Req::new(Method::POST, "/v1/orders").body(
        &String::from_utf8(req.body.clone())
            .unwrap()
            .replace("qty=0.5", "qty=5.0")
            .into_bytes(),
    );
    body.headers = req.headers.clone();
    assert_eq!(verify(&body, &hmac_key()), Err(AuthError::BadSignature));

    // Flip one hex digit of the signature.
    let text = String::from_utf8(req.body.clone()).unwrap();
    let last = text.chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    let mut sig = Req::new(Method::POST, "/v1/orders")
        .body(format!("{}{flipped}", &text[..text.len() - 1]).as_bytes());
    sig.headers = req.headers.clone();
    assert_eq!(verify(&sig, &hmac_key()), Err(AuthError::BadSignature));

    // Another key id: the gateway looks up that key, whose secret differs.
    let mut other = Req::new(Method::POST, "/v1/orders")
        .header("X-MBX-APIKEY", "someone-else")
        .header("content-type", FORM)
        .body(&req.body);
    other.headers.remove("x-mbx-apikey");
    other = other.header("X-MBX-APIKEY", "someone-else");
    let claims = claims_of(&other);
    assert_eq!(claims.key_id, "someone-else");
    let other_key = KeyMaterial::Hmac(Zeroizing::new(b"someone-else's secret".to_vec()));
    assert_eq!(
        binance::verify(&other.view(), &claims, &other_key),
        Err(AuthError::BadSignature)
    );

    // Claims of one request do not verify another.
    let claims = claims_of(&req);
    assert!(matches!(
        binance::verify(&other.view(), &claims, &hmac_key()),
        Err(AuthError::Malformed(_))
    ));
}

/// Binance signs `totalParams` only: method and path are not covered. The
/// replay nonce (the signature) is the same, so the gateway's replay cache
/// still stops a second use inside the window.
#[test]
fn method_and_path_are_not_covered_but_the_replay_nonce_is_the_same() {
    let req = signed_request(
        &Signer::Hmac(SECRET),
        Method::GET,
        "/v1/orders",
        "symbol=BTC-USD",
        b"",
        None,
        SignatureLocation::Query,
    );
    let mut moved = Req::new(
        Method::DELETE,
        &req.path_and_query
            .replacen("/v1/orders", "/v1/orders/all", 1),
    );
    moved.headers = req.headers.clone();
    verify(&moved, &hmac_key()).unwrap();
    assert_eq!(claims_of(&moved).nonce, claims_of(&req).nonce);
}

#[test]
fn wrong_key_types_are_algorithm_mismatch() {
    let hmac_req = signed_request(
        &Signer::Hmac(SECRET),
        Method::GET,
        "/v1/orders",
        "a=1",
        b"",
        None,
        SignatureLocation::Query,
    );
    let pair = Ed25519KeyPair::generate().unwrap();
    let ed_key = KeyMaterial::Ed25519(pair.public_key().as_ref().try_into().unwrap());
    let ed_req = signed_request(
        &Signer::Ed25519(&pair),
        Method::GET,
        "/v1/orders",
        "a=1",
        b"",
        None,
        SignatureLocation::Query,
    );
    let ecdsa = KeyMaterial::EcdsaP256(vec![4; 65]);
    assert!(matches!(
        verify(&hmac_req, &ed_key),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    assert!(matches!(
        verify(&ed_req, &hmac_key()),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    assert!(matches!(
        verify(&hmac_req, &ecdsa),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    assert!(matches!(
        verify(&ed_req, &ecdsa),
        Err(AuthError::AlgorithmMismatch(_))
    ));

    // Claims of another scheme.
    let mut claims = claims_of(&hmac_req);
    claims.scheme = Scheme::KrakenHmac;
    assert!(matches!(
        binance::verify(&hmac_req.view(), &claims, &hmac_key()),
        Err(AuthError::AlgorithmMismatch(_))
    ));
}

fn query_req(query: &str) -> Req {
    Req::new(Method::GET, &format!("/v1/orders?{query}")).header("X-MBX-APIKEY", "k")
}

fn malformed_detail(req: &Req) -> String {
    match binance::claims(&req.view(), NOW_MS) {
        Err(AuthError::Malformed(detail)) => detail,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

const SIG: &str = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";

#[test]
fn recv_window_rules() {
    let claims = claims_of(&query_req(&format!("timestamp=1&signature={SIG}")));
    assert_eq!(claims.window_ms, Some(binance::DEFAULT_RECV_WINDOW_MS));
    let claims = claims_of(&query_req(&format!(
        "recvWindow=60000&timestamp=1&signature={SIG}"
    )));
    assert_eq!(claims.window_ms, Some(60_000));
    let claims = claims_of(&query_req(&format!(
        "recvWindow=0&timestamp=1&signature={SIG}"
    )));
    assert_eq!(claims.window_ms, Some(0));
    for too_big in ["60001", "99999999999999999999999"] {
        assert_eq!(
            binance::claims(
                &query_req(&format!("recvWindow={too_big}&timestamp=1&signature={SIG}")).view(),
                NOW_MS
            ),
            Err(AuthError::Window("recvWindow above 60000 ms"))
        );
    }
    for bad in ["", "abc", "-1", "5000.5", "+5000"] {
        let detail = malformed_detail(&query_req(&format!(
            "recvWindow={bad}&timestamp=1&signature={SIG}"
        )));
        assert!(detail.contains("recvWindow"), "{detail}");
    }
    assert!(matches!(
        binance::sign(
            &Signer::Hmac(SECRET),
            "k",
            "",
            b"",
            SignatureLocation::Query,
            NOW_MS,
            Some(60_001)
        ),
        Err(AuthError::Window(_))
    ));
}

#[test]
fn parameter_rules_are_malformed_with_a_useful_detail() {
    let cases: &[(&str, &str)] = &[
        ("timestamp=1", "signature parameter missing"),
        (
            &format!("signature={SIG}&timestamp=1"),
            "last parameter of the query",
        ),
        (
            &format!("timestamp=1&signature={SIG}&"),
            "last parameter of the query",
        ),
        (
            &format!("timestamp=1&signature={SIG}&signature={SIG}"),
            "signature parameter is repeated",
        ),
        (
            &format!("a=1&signature={SIG}"),
            "timestamp parameter missing",
        ),
        (
            &format!("timestamp=1&timestamp=2&signature={SIG}"),
            "timestamp parameter is repeated",
        ),
        (
            &format!("timestamp=1&%74imestamp=2&signature={SIG}"),
            "timestamp parameter is repeated",
        ),
        (
            &format!("recvWindow=1&recvWindow=2&timestamp=1&signature={SIG}"),
            "recvWindow parameter is repeated",
        ),
        (
            &format!("timestamp=abc&signature={SIG}"),
            "timestamp must be a positive integer",
        ),
        (
            &format!("timestamp=0&signature={SIG}"),
            "timestamp must be a positive integer",
        ),
        (
            &format!("timestamp=-5&signature={SIG}"),
            "timestamp must be a positive integer",
        ),
        (
            &format!("timestamp=99999999999999999999&signature={SIG}"),
            "timestamp must be a positive integer",
        ),
        (
            &format!("timestamp=1&a%zz=1&signature={SIG}"),
            "percent-encoding",
        ),
        ("timestamp=1&signature=abc", "neither 64 hex digits"),
        ("timestamp=1&signature=", "neither 64 hex digits"),
        (
            &format!("timestamp=1&signature={}", &SIG[..63]),
            "neither 64 hex digits",
        ),
        (
            &format!("timestamp=1&signature={}g", &SIG[..63]),
            "neither 64 hex digits",
        ),
    ];
    for (query, expected) in cases {
        let detail = malformed_detail(&query_req(query));
        assert!(detail.contains(expected), "{query}: {detail}");
    }
    // Signature in the query while a form body follows.
    let req = Req::new(
        Method::POST,
        &format!("/v1/orders?timestamp=1&signature={SIG}"),
    )
    .header("X-MBX-APIKEY", "k")
    .header("content-type", FORM)
    .body(b"qty=1");
    assert!(malformed_detail(&req).contains("a form body follows"));
    // Signature in the body, not last.
    let req = Req::new(Method::POST, "/v1/orders")
        .header("X-MBX-APIKEY", "k")
        .header("content-type", FORM)
        .body(format!("timestamp=1&signature={SIG}&qty=1").as_bytes());
    assert!(malformed_detail(&req).contains("last parameter of the form body"));
    // Timestamp in both query and body.
    let req = Req::new(Method::POST, "/v1/orders?timestamp=1")
        .header("X-MBX-APIKEY", "k")
        .header("content-type", FORM)
        .body(format!("timestamp=1&signature={SIG}").as_bytes());
    assert!(malformed_detail(&req).contains("timestamp parameter is repeated"));
    // A body that is not a form is not searched.
    let req = Req::new(Method::POST, "/v1/orders")
        .header("X-MBX-APIKEY", "k")
        .header("content-type", "application/json")
        .body(format!("timestamp=1&signature={SIG}").as_bytes());
    assert!(malformed_detail(&req).contains("signature parameter missing"));
    // Header problems.
    let req = query_req(&format!("timestamp=1&signature={SIG}")).header("X-MBX-APIKEY", "k2");
    assert!(malformed_detail(&req).contains("repeated"));
    let req = Req::new(
        Method::GET,
        &format!("/v1/orders?timestamp=1&signature={SIG}"),
    )
    .header("X-MBX-APIKEY", "a b");
    assert!(malformed_detail(&req).contains("X-MBX-APIKEY"));
}

#[test]
fn absent_header_is_none() {
    let req = Req::new(
        Method::GET,
        &format!("/v1/orders?timestamp=1&signature={SIG}"),
    );
    assert_eq!(binance::claims(&req.view(), NOW_MS), Ok(None));
}

#[test]
fn sign_refuses_pre_signed_input() {
    for query in ["signature=1", "timestamp=1", "recvWindow=1"] {
        assert!(matches!(
            binance::sign(
                &Signer::Hmac(SECRET),
                "k",
                query,
                b"",
                SignatureLocation::Query,
                NOW_MS,
                None
            ),
            Err(AuthError::Malformed(_))
        ));
    }
    assert!(matches!(
        binance::sign(
            &Signer::Hmac(SECRET),
            "k",
            "",
            b"",
            SignatureLocation::Query,
            0,
            None
        ),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn parse_signed_params_splits_payload() {
    let body = format!("quantity=1&timestamp=5&signature={SIG}");
    let params =
        binance::parse_signed_params(b"symbol=LTCBTC&timeInForce=GTC", body.as_bytes(), true)
            .unwrap();
    assert_eq!(params.location, SignatureLocation::Body);
    assert_eq!(
        params.payload(),
        b"symbol=LTCBTC&timeInForce=GTCquantity=1&timestamp=5"
    );
    assert_eq!(params.timestamp_ms, 5);
    assert_eq!(params.signature, SIG);
    // Debug never shows the signature.
    assert!(!format!("{params:?}").contains(SIG));
    let sig_only = format!("signature={SIG}");
    let params = binance::parse_signed_params(sig_only.as_bytes(), b"timestamp=5", true);
    assert!(params.is_err(), "signature in the query before a form body");
    let query = format!("timestamp=5&signature={SIG}");
    let params = binance::parse_signed_params(query.as_bytes(), b"", false).unwrap();
    assert_eq!(params.payload(), b"timestamp=5");
    let params = binance::parse_signed_params(b"timestamp=5", sig_only.as_bytes(), true).unwrap();
    assert_eq!(params.payload(), b"timestamp=5");
}
