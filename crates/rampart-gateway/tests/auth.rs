//! Authentication through the real gateway, over real TLS, to a real demo
//! exchange that accepts only gateway-signed requests: every scheme's round
//! trip, every tampered part, replay (also concurrent), freshness, key
//! state, networks, certificate binding and scopes — and that no rejected
//! request reaches the upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    clippy::too_many_arguments,
    missing_docs,
    reason = "test code"
)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use bytes::Bytes;
use common::authn::*;
use common::*;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::Full;
use parking_lot::Mutex;
use rampart_auth::rfc9421::SigningKey;
use rampart_auth::{KeyDirectory, KeyMaterial, KeyRecord, MemoryNonceStore, Scheme};
use rampart_gateway::auth::{AuthServices, IdentitySigner};
use zeroize::Zeroizing;

#[tokio::test]
async fn public_routes_pass_and_are_gateway_signed_upstream() {
    let e = env().await;
    let r = send(&e.pki, e.addr, false, get("/v1/markets")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(e.ex.accepted_signed.load(Ordering::Relaxed) >= 1);
    assert_eq!(e.ex.rejected_unsigned.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn hmac_round_trip_books_on_the_keys_account_over_h1_and_h2() {
    let e = env().await;
    let (sk, km) = hmac_key();
    e.add(record("k-hmac", "demo2", Scheme::Rfc9421HmacSha256, km));
    for (i, h2) in [false, true].into_iter().enumerate() {
        let body = order(&format!("h-{i}"));
        let req = signed(
            Method::POST,
            "/v1/orders",
            &body,
            "k-hmac",
            Scheme::Rfc9421HmacSha256,
            &sk,
            now_ms() / 1000,
            &nonce(),
        );
        let r = send(&e.pki, e.addr, h2, req).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(e.orders("demo2"), 2, "booked on the key's account");
    assert_eq!(e.orders("demo"), 0);
    // GET with a query string.
    let req = signed(
        Method::GET,
        "/v1/orders?symbol=BTC-USD",
        "",
        "k-hmac",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    assert_eq!(send(&e.pki, e.addr, false, req).await.status, 200);
}

#[tokio::test]
async fn ed25519_and_ecdsa_round_trips() {
    let e = env().await;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ed = Ed25519KeyPair::generate().unwrap();
    let ed_pub: [u8; 32] = ed.public_key().as_ref().try_into().unwrap();
    e.add(record(
        "k-ed",
        "demo",
        Scheme::Rfc9421Ed25519,
        KeyMaterial::Ed25519(ed_pub),
    ));
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    e.add(record(
        "k-ec",
        "demo",
        Scheme::Rfc9421EcdsaP256,
        KeyMaterial::EcdsaP256(ec.public_key().as_ref().to_vec()),
    ));
    let req = signed(
        Method::POST,
        "/v1/orders",
        &order("ed-1"),
        "k-ed",
        Scheme::Rfc9421Ed25519,
        &SigningKey::Ed25519(ed),
        now_ms() / 1000,
        &nonce(),
    );
    assert_eq!(send(&e.pki, e.addr, true, req).await.status, 201);
    let req = signed(
        Method::POST,
        "/v1/orders",
        &order("ec-1"),
        "k-ec",
        Scheme::Rfc9421EcdsaP256,
        &SigningKey::EcdsaP256(ec),
        now_ms() / 1000,
        &nonce(),
    );
    assert_eq!(send(&e.pki, e.addr, true, req).await.status, 201);
}

#[tokio::test]
async fn every_tampered_part_is_rejected_with_its_code_and_never_reaches_the_upstream() {
    let e = env().await;
    let (sk, km) = hmac_key();
    e.add(record("k1", "demo", Scheme::Rfc9421HmacSha256, km));
    e.add(record(
        "k2",
        "demo",
        Scheme::Rfc9421HmacSha256,
        KeyMaterial::Hmac(Zeroizing::new(vec![9u8; 32])),
    ));
    let upstream_before = e.ex.accepted_signed.load(Ordering::Relaxed);
    let fresh = || {
        signed(
            Method::POST,
            "/v1/orders",
            &order("t-1"),
            "k1",
            Scheme::Rfc9421HmacSha256,
            &sk,
            now_ms() / 1000,
            &nonce(),
        )
    };
    type Tamper = Box<dyn Fn(&mut Request<Full<Bytes>>)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "method",
            Box::new(|r| *r.method_mut() = Method::PUT),
            "METHOD_NOT_ALLOWED",
        ),
        (
            "path",
            Box::new(|r| *r.uri_mut() = "/v1/orders?x=1".parse().unwrap()),
            "SIGNATURE_INVALID",
        ),
        (
            "body",
            Box::new(|r| *r.body_mut() = Full::new(Bytes::from(order("t-2")))),
            "DIGEST_MISMATCH",
        ),
        (
            "content-digest",
            Box::new(|r| {
                let d = rampart_auth::digest::content_digest(
                    rampart_auth::digest::DigestAlg::Sha256,
                    order("t-2").as_bytes(),
                );
                r.headers_mut().insert("content-digest", d.parse().unwrap());
                *r.body_mut() = Full::new(Bytes::from(order("t-2")));
            }),
            "SIGNATURE_INVALID",
        ),
        (
            "created",
            Box::new(|r| {
                let si = r.headers()["signature-input"].to_str().unwrap().to_owned();
                let c = si
                    .split("created=")
                    .nth(1)
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .to_owned();
                let n: i64 = c.parse().unwrap();
                r.headers_mut().insert(
                    "signature-input",
                    si.replace(&format!("created={c}"), &format!("created={}", n - 1))
                        .parse()
                        .unwrap(),
                );
            }),
            "SIGNATURE_INVALID",
        ),
        (
            "nonce",
            Box::new(|r| {
                let si = r.headers()["signature-input"].to_str().unwrap().to_owned();
                r.headers_mut().insert(
                    "signature-input",
                    si.replacen("nonce=\"", "nonce=\"x", 1).parse().unwrap(),
                );
            }),
            "SIGNATURE_INVALID",
        ),
        (
            "keyid to another key",
            Box::new(|r| {
                let si = r.headers()["signature-input"].to_str().unwrap().to_owned();
                r.headers_mut().insert(
                    "signature-input",
                    si.replace("keyid=\"k1\"", "keyid=\"k2\"").parse().unwrap(),
                );
            }),
            "SIGNATURE_INVALID",
        ),
        (
            "keyid unknown",
            Box::new(|r| {
                let si = r.headers()["signature-input"].to_str().unwrap().to_owned();
                r.headers_mut().insert(
                    "signature-input",
                    si.replace("keyid=\"k1\"", "keyid=\"nobody\"")
                        .parse()
                        .unwrap(),
                );
            }),
            "UNKNOWN_KEY",
        ),
        (
            "alg",
            Box::new(|r| {
                let si = r.headers()["signature-input"].to_str().unwrap().to_owned();
                r.headers_mut().insert(
                    "signature-input",
                    si.replace("alg=\"hmac-sha256\"", "alg=\"ed25519\"")
                        .parse()
                        .unwrap(),
                );
            }),
            "SIGNATURE_INVALID",
        ),
        (
            "signature",
            Box::new(|r| {
                let s = r.headers()["signature"].to_str().unwrap().to_owned();
                let flipped = if s.contains(":A") {
                    s.replacen(":A", ":B", 1)
                } else {
                    s.replacen(':', ":A", 1)
                };
                r.headers_mut()
                    .insert("signature", flipped.parse().unwrap());
            }),
            "SIGNATURE_INVALID",
        ),
        (
            "no credentials",
            Box::new(|r| {
                r.headers_mut().remove("signature");
                r.headers_mut().remove("signature-input");
            }),
            "MISSING_CREDENTIALS",
        ),
    ];
    for (what, tamper, code) in cases {
        let mut req = fresh();
        tamper(&mut req);
        let r = send(&e.pki, e.addr, false, req).await;
        assert_eq!(
            r.code(),
            code,
            "tampered {what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if r.status == 401 {
            assert!(
                r.headers.get("www-authenticate").is_some(),
                "{what}: 401 without WWW-Authenticate"
            );
        }
    }
    assert_eq!(e.orders("demo"), 0, "no tampered order was booked");
    assert_eq!(
        e.ex.accepted_signed.load(Ordering::Relaxed),
        upstream_before,
        "nothing reached the upstream"
    );
    // The untampered request still works.
    assert_eq!(send(&e.pki, e.addr, false, fresh()).await.status, 201);
}

#[tokio::test]
async fn any_single_byte_change_of_path_or_body_is_rejected() {
    let e = env().await;
    let (sk, km) = hmac_key();
    e.add(record("k1", "demo", Scheme::Rfc9421HmacSha256, km));
    let body = order("b-1");
    let before = e.ex.accepted_signed.load(Ordering::Relaxed);
    for i in 0..body.len() {
        let req = signed(
            Method::POST,
            "/v1/orders",
            &body,
            "k1",
            Scheme::Rfc9421HmacSha256,
            &sk,
            now_ms() / 1000,
            &nonce(),
        );
        let (parts, _) = req.into_parts();
        let mut b = body.clone().into_bytes();
        b[i] ^= 0x01;
        let req = Request::from_parts(parts, Full::new(Bytes::from(b)));
        let r = send(&e.pki, e.addr, false, req).await;
        assert!(r.status == 401 || r.status == 400, "byte {i}: {}", r.status);
    }
    assert_eq!(e.ex.accepted_signed.load(Ordering::Relaxed), before);
    assert_eq!(e.orders("demo"), 0);
}

#[tokio::test]
async fn replays_are_rejected_and_concurrent_replays_let_exactly_one_through() {
    let e = env().await;
    let (sk, km) = hmac_key();
    e.add(record("k1", "demo", Scheme::Rfc9421HmacSha256, km));
    let req = signed(
        Method::POST,
        "/v1/orders",
        &order("r-1"),
        "k1",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    let (parts, body) = req.into_parts();
    let copy = || Request::from_parts(parts.clone(), body.clone());
    assert_eq!(send(&e.pki, e.addr, false, copy()).await.status, 201);
    let r = send(&e.pki, e.addr, true, copy()).await;
    assert_eq!(r.code(), "REPLAYED_NONCE");

    // 16 connections race the same captured request.
    let req = signed(
        Method::POST,
        "/v1/orders",
        &order("r-2"),
        "k1",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    let (parts, body) = req.into_parts();
    let ok = Arc::new(AtomicU64::new(0));
    let replayed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let pki = Arc::clone(&e.pki);
    for i in 0..16 {
        let (parts, body, ok, replayed, pki) = (
            parts.clone(),
            body.clone(),
            Arc::clone(&ok),
            Arc::clone(&replayed),
            Arc::clone(&pki),
        );
        let addr = e.addr;
        tasks.push(tokio::spawn(async move {
            let r = send(&pki, addr, i % 2 == 0, Request::from_parts(parts, body)).await;
            if r.status == 201 {
                ok.fetch_add(1, Ordering::Relaxed);
            } else if r.code() == "REPLAYED_NONCE" {
                replayed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), 1);
    assert_eq!(replayed.load(Ordering::Relaxed), 15);
    assert_eq!(e.orders("demo"), 2);
}

#[tokio::test]
async fn stale_and_future_requests_carry_both_times_and_the_window() {
    let e = env().await;
    let (sk, km) = hmac_key();
    e.add(record("k1", "demo", Scheme::Rfc9421HmacSha256, km));
    let old = signed(
        Method::GET,
        "/v1/account",
        "",
        "k1",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000 - 30,
        &nonce(),
    );
    let r = send(&e.pki, e.addr, false, old).await;
    assert_eq!(r.code(), "TIMESTAMP_TOO_OLD");
    let v = r.json();
    assert!(v["request_time_ms"].as_i64().unwrap() > 0);
    assert!(v["server_time_ms"].as_i64().unwrap() > v["request_time_ms"].as_i64().unwrap());
    assert_eq!(v["max_age_ms"], 5000);
    assert_eq!(v["max_future_ms"], 1000);
    let future = signed(
        Method::GET,
        "/v1/account",
        "",
        "k1",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000 + 30,
        &nonce(),
    );
    assert_eq!(
        send(&e.pki, e.addr, false, future).await.code(),
        "TIMESTAMP_IN_FUTURE"
    );
}

#[tokio::test]
async fn key_state_networks_certificates_and_scopes() {
    let e = env().await;
    let (sk, km) = hmac_key();
    let mk = |id: &str, f: &dyn Fn(&mut KeyRecord)| {
        let mut r = record(
            id,
            "demo",
            Scheme::Rfc9421HmacSha256,
            KeyMaterial::Hmac(Zeroizing::new(vec![7u8; 32])),
        );
        f(&mut r);
        e.add(r);
    };
    drop(km);
    mk("revoked", &|r| r.revoked = true);
    mk("expired", &|r| r.expires_at_ms = Some(now_ms() - 1));
    mk("elsewhere", &|r| {
        r.allowed_nets = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]
    });
    mk("loopback", &|r| {
        r.allowed_nets = vec!["127.0.0.0/8".parse().unwrap()]
    });
    mk("bound", &|r| r.cert_fingerprint = Some("ab".repeat(32)));
    mk("readonly", &|r| r.scopes = vec!["read".into()]);
    let call = |id: &str, m: Method, pq: &str, body: &str| {
        signed(
            m,
            pq,
            body,
            id,
            Scheme::Rfc9421HmacSha256,
            &sk,
            now_ms() / 1000,
            &nonce(),
        )
    };
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            call("revoked", Method::GET, "/v1/account", "")
        )
        .await
        .code(),
        "KEY_REVOKED"
    );
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            call("expired", Method::GET, "/v1/account", "")
        )
        .await
        .code(),
        "KEY_EXPIRED"
    );
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            call("elsewhere", Method::GET, "/v1/account", "")
        )
        .await
        .code(),
        "IP_NOT_ALLOWED"
    );
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            call("loopback", Method::GET, "/v1/account", "")
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            call("bound", Method::GET, "/v1/account", "")
        )
        .await
        .code(),
        "CERT_REQUIRED"
    );
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            call("readonly", Method::GET, "/v1/account", "")
        )
        .await
        .status,
        200
    );
    let r = send(
        &e.pki,
        e.addr,
        false,
        call("readonly", Method::POST, "/v1/orders", &order("s-1")),
    )
    .await;
    assert_eq!(r.code(), "SCOPE_MISSING");
    assert_eq!(r.status, 403);
    assert_eq!(e.orders("demo"), 0);
}

#[tokio::test]
async fn rotated_key_previous_secret_works_inside_its_window_only() {
    let e = env().await;
    let old = SigningKey::Hmac(Zeroizing::new(vec![1u8; 32]));
    let new = SigningKey::Hmac(Zeroizing::new(vec![2u8; 32]));
    let mut r = record(
        "rot",
        "demo",
        Scheme::Rfc9421HmacSha256,
        KeyMaterial::Hmac(Zeroizing::new(vec![2u8; 32])),
    );
    r.previous = Some((
        KeyMaterial::Hmac(Zeroizing::new(vec![1u8; 32])),
        now_ms() + 60_000,
    ));
    e.add(r);
    for k in [&old, &new] {
        let req = signed(
            Method::GET,
            "/v1/account",
            "",
            "rot",
            Scheme::Rfc9421HmacSha256,
            k,
            now_ms() / 1000,
            &nonce(),
        );
        assert_eq!(send(&e.pki, e.addr, false, req).await.status, 200);
    }
    let mut r = record(
        "rot",
        "demo",
        Scheme::Rfc9421HmacSha256,
        KeyMaterial::Hmac(Zeroizing::new(vec![2u8; 32])),
    );
    r.previous = Some((
        KeyMaterial::Hmac(Zeroizing::new(vec![1u8; 32])),
        now_ms() - 1,
    ));
    e.add(r);
    let req = signed(
        Method::GET,
        "/v1/account",
        "",
        "rot",
        Scheme::Rfc9421HmacSha256,
        &old,
        now_ms() / 1000,
        &nonce(),
    );
    assert_eq!(
        send(&e.pki, e.addr, false, req).await.code(),
        "SIGNATURE_INVALID"
    );
}

#[tokio::test]
async fn without_services_non_public_routes_fail_closed() {
    let pki = pki();
    let ex = demo_exchange::Exchange::new_seeded();
    let (up, _stop) = exchange(Arc::clone(&ex)).await;
    let cfg = rampart_core::config::parse(
        &config(&pki, &[up], "", EXCHANGE_ROUTES),
        std::path::Path::new("/"),
    )
    .unwrap();
    let g = rampart_gateway::start(cfg).await.unwrap();
    let r = send(&pki, g.addr, false, post_json("/v1/orders", &order("x"))).await;
    assert_eq!(r.code(), "AUTH_UNAVAILABLE");
    assert_eq!(r.status, 503);
    assert_eq!(
        ex.with_engine(|e| e.open_orders("demo").map(|o| o.len()).unwrap_or(0)),
        0
    );
}

#[tokio::test]
async fn client_identity_headers_and_credentials_never_reach_the_upstream() {
    // A raw upstream that records what it receives.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let seen2 = Arc::clone(&seen);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            let seen = Arc::clone(&seen2);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let n = s.read(&mut buf).await.unwrap_or(0);
                *seen.lock() = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
            });
        }
    });
    let pki = pki();
    let cfg = rampart_core::config::parse(
        &config(&pki, &[up], "", EXCHANGE_ROUTES),
        std::path::Path::new("/"),
    )
    .unwrap();
    let dir = Arc::new(Directory::default());
    let (sk, km) = hmac_key();
    dir.keys.lock().insert(
        "k1".into(),
        Arc::new(record("k1", "acct-9", Scheme::Rfc9421HmacSha256, km)),
    );
    let services = Arc::new(AuthServices {
        directory: Arc::clone(&dir) as Arc<dyn KeyDirectory>,
        nonces: Arc::new(MemoryNonceStore::new(10_000)),
        identity: Arc::new(IdentitySigner::hmac(&GATEWAY_SECRET).unwrap()),
        tokens: None,
        audit: None,
        accounts: None,
    });
    let g = rampart_gateway::start_with(cfg, Some(services))
        .await
        .unwrap();
    let mut req = signed(
        Method::GET,
        "/v1/account",
        "",
        "k1",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    req.headers_mut()
        .insert("rampart-account", "victim".parse().unwrap());
    req.headers_mut()
        .insert("x-rampart-account", "victim".parse().unwrap());
    req.headers_mut()
        .insert("rampart-scopes", "withdraw".parse().unwrap());
    let r = send(&pki, g.addr, false, req).await;
    assert_eq!(r.status, 200);
    let text = seen.lock().clone();
    assert!(text.contains("rampart-account: acct-9"), "{text}");
    assert!(!text.contains("victim"), "{text}");
    assert!(text.contains("rampart-scopes: read,trade"), "{text}");
    assert!(!text.contains("withdraw"), "{text}");
    assert!(text.contains("keyid=\"rampart-gateway\""), "{text}");
    assert!(
        !text.contains("keyid=\"k1\""),
        "client signature stripped: {text}"
    );
}

fn bearer(pq: &str, token: &str) -> Request<Full<Bytes>> {
    Request::get(pq)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn oauth_client_credentials_tokens_jwks_scopes_and_revocation() {
    let e = env().await;
    let (sk, km) = hmac_key();
    e.add(record("k1", "demo2", Scheme::Rfc9421HmacSha256, km));
    let token_req = |body: &str| {
        let mut r = signed(
            Method::POST,
            "/oauth/token",
            body,
            "k1",
            Scheme::Rfc9421HmacSha256,
            &sk,
            now_ms() / 1000,
            &nonce(),
        );
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    // Unsigned: refused.
    let r = send(
        &e.pki,
        e.addr,
        false,
        post_json("/oauth/token", r#"{"grant_type":"client_credentials"}"#),
    )
    .await;
    assert_eq!(r.code(), "MISSING_CREDENTIALS");
    // More scope than the key: refused.
    let r = send(
        &e.pki,
        e.addr,
        false,
        token_req(r#"{"grant_type":"client_credentials","scope":"read withdraw"}"#),
    )
    .await;
    assert_eq!(r.code(), "SCOPE_MISSING");
    let r = send(
        &e.pki,
        e.addr,
        false,
        token_req(r#"{"grant_type":"password"}"#),
    )
    .await;
    assert_eq!(r.code(), "VALIDATION_FAILED");
    // A read-only token.
    let r = send(
        &e.pki,
        e.addr,
        true,
        token_req(r#"{"grant_type":"client_credentials","scope":"read"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "read");
    assert!(v["expires_in"].as_i64().unwrap() <= 900);
    let token = v["access_token"].as_str().unwrap().to_owned();

    // JWKS verifies it.
    let jwks = send(&e.pki, e.addr, false, get("/.well-known/jwks.json"))
        .await
        .json();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    use base64::Engine as _;
    let pk = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(x)
        .unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &pk)
        .verify(input.as_bytes(), &sig)
        .unwrap();

    // Use: read works on the key's account; trade is outside the token.
    let r = send(&e.pki, e.addr, false, bearer("/v1/account", &token)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["account"], "demo2");
    let mut post = post_json("/v1/orders", &order("tok-1"));
    post.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(
        send(&e.pki, e.addr, false, post).await.code(),
        "SCOPE_MISSING"
    );
    // A token cannot mint tokens.
    let mut again = post_json("/oauth/token", r#"{"grant_type":"client_credentials"}"#);
    again
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(send(&e.pki, e.addr, false, again).await.status, 401);
    // Tampered token.
    let mut bad = token.clone();
    bad.pop();
    bad.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        send(&e.pki, e.addr, false, bearer("/v1/account", &bad))
            .await
            .code(),
        "SIGNATURE_INVALID"
    );
    // Revoking the key revokes its tokens at once.
    let mut r = record(
        "k1",
        "demo2",
        Scheme::Rfc9421HmacSha256,
        KeyMaterial::Hmac(Zeroizing::new(vec![7u8; 32])),
    );
    r.revoked = true;
    e.add(r);
    assert_eq!(
        send(&e.pki, e.addr, false, bearer("/v1/account", &token))
            .await
            .code(),
        "KEY_REVOKED"
    );
}

/// A request signed by `rampart-client` for any scheme (exchange profiles).
fn client_signed(
    key: &rampart_client::ClientKey,
    method: Method,
    pq: &str,
    body: &str,
) -> Request<Full<Bytes>> {
    let mut headers = HeaderMap::new();
    if !body.is_empty() {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
    }
    let parts = rampart_client::sign(
        key,
        &method,
        "localhost",
        pq,
        &mut headers,
        body.as_bytes(),
        now_ms(),
        &nonce(),
    )
    .unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(parts.path_and_query.as_str())
        .body(Full::new(Bytes::from(parts.body)))
        .unwrap();
    *req.headers_mut() = headers;
    req
}

#[tokio::test]
async fn exchange_profiles_through_the_gateway_round_trip_tamper_and_replay() {
    use rampart_client::{ClientKey, Material};
    let e = env().await;
    let before = e.ex.accepted_signed.load(Ordering::Relaxed);
    let mut accepted = 0u64;

    // Binance-style HMAC.
    let bsecret = b"vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A".to_vec();
    e.add(record(
        "bn1",
        "demo",
        Scheme::BinanceHmac,
        KeyMaterial::Hmac(Zeroizing::new(bsecret.clone())),
    ));
    let bk = ClientKey::new("bn", "bn1", Material::BinanceHmac(Zeroizing::new(bsecret)));
    let req = client_signed(&bk, Method::GET, "/v1/orders?symbol=BTC-USD", "");
    let (parts, body) = req.into_parts();
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            Request::from_parts(parts.clone(), body.clone())
        )
        .await
        .status,
        200
    );
    accepted += 1;
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            Request::from_parts(parts.clone(), body.clone())
        )
        .await
        .code(),
        "REPLAYED_NONCE"
    );
    let mut tampered = Request::from_parts(parts, body);
    let pq = tampered.uri().to_string().replace("BTC-USD", "ETH-USD");
    *tampered.uri_mut() = pq.parse().unwrap();
    assert_eq!(
        send(&e.pki, e.addr, false, tampered).await.code(),
        "SIGNATURE_INVALID"
    );

    // Kraken-style: strictly increasing counter nonces, persisted per key.
    let ksecret = vec![5u8; 64];
    e.add(record(
        "kr1",
        "demo",
        Scheme::KrakenHmac,
        KeyMaterial::Hmac(Zeroizing::new(ksecret.clone())),
    ));
    let kk = ClientKey::new("kr", "kr1", Material::KrakenHmac(Zeroizing::new(ksecret)));
    let req = client_signed(&kk, Method::POST, "/v1/orders", &order("kr-1"));
    let (parts, body) = req.into_parts();
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            Request::from_parts(parts.clone(), body.clone())
        )
        .await
        .status,
        201
    );
    accepted += 1;
    assert_eq!(
        send(&e.pki, e.addr, false, Request::from_parts(parts, body))
            .await
            .code(),
        "REPLAYED_NONCE"
    );
    let mut bad = client_signed(&kk, Method::POST, "/v1/orders", &order("kr-2"));
    *bad.body_mut() = Full::new(Bytes::from(order("kr-3")));
    assert_eq!(
        send(&e.pki, e.addr, false, bad).await.code(),
        "SIGNATURE_INVALID"
    );

    // Coinbase-style JWT (ES256).
    let signer =
        rampart_auth::profiles::jwt::JwtSigner::generate(rampart_auth::profiles::jwt::Alg::Es256)
            .unwrap();
    e.add(record(
        "cb1",
        "demo",
        Scheme::CoinbaseJwtEs256,
        signer.public_key().unwrap(),
    ));
    let ck = ClientKey::new("cb", "cb1", Material::CoinbaseJwt(signer));
    let req = client_signed(&ck, Method::GET, "/v1/account", "");
    let (parts, body) = req.into_parts();
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            true,
            Request::from_parts(parts.clone(), body.clone())
        )
        .await
        .status,
        200
    );
    accepted += 1;
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            true,
            Request::from_parts(parts.clone(), body.clone())
        )
        .await
        .code(),
        "REPLAYED_NONCE"
    );
    // The same token on another path: its `uri` claim does not match.
    let mut other = Request::from_parts(parts, body);
    *other.uri_mut() = "/v1/orders".parse().unwrap();
    assert_eq!(
        send(&e.pki, e.addr, true, other).await.code(),
        "SIGNATURE_INVALID"
    );

    assert_eq!(e.orders("demo"), 1);
    assert_eq!(
        e.ex.accepted_signed.load(Ordering::Relaxed),
        before + accepted,
        "only the valid requests reached the upstream"
    );
}

#[tokio::test]
async fn kraken_nonce_window_accepts_out_of_order_nonces_once() {
    use rampart_auth::profiles::kraken;
    let e = env().await;
    let secret = vec![6u8; 64];
    let mut r = record(
        "krw",
        "demo",
        Scheme::KrakenHmac,
        KeyMaterial::Hmac(Zeroizing::new(secret.clone())),
    );
    r.nonce_window = 1_000;
    e.add(r);
    let req = |nonce: u64, cid: &str| {
        let body = format!(r#"{{"nonce":{nonce},{}"#, &order(cid)[1..]);
        let headers = kraken::sign(&secret, "krw", "/v1/orders", nonce, body.as_bytes());
        let mut b = Request::post("/v1/orders").header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        b.body(Full::new(Bytes::from(body))).unwrap()
    };
    assert_eq!(
        send(&e.pki, e.addr, false, req(5_000, "w-1")).await.status,
        201
    );
    assert_eq!(
        send(&e.pki, e.addr, false, req(4_500, "w-2")).await.status,
        201,
        "out of order, inside the window"
    );
    assert_eq!(
        send(&e.pki, e.addr, false, req(4_500, "w-3")).await.code(),
        "REPLAYED_NONCE"
    );
    assert_eq!(
        send(&e.pki, e.addr, false, req(3_000, "w-4")).await.code(),
        "REPLAYED_NONCE"
    );
    assert_eq!(
        send(&e.pki, e.addr, false, req(5_001, "w-5")).await.status,
        201
    );
    assert_eq!(e.orders("demo"), 3);
}

#[tokio::test]
async fn oauth_rfc7523_jwt_assertion_issues_a_token_once_per_jti() {
    use rampart_auth::profiles::jwt::{encode, Alg, JwtSigner};
    use serde_json::{json, Map, Value};
    let e = env().await;
    let signer = JwtSigner::generate(Alg::EdDsa).unwrap();
    e.add(record(
        "ed-as",
        "demo2",
        Scheme::Rfc9421Ed25519,
        signer.public_key().unwrap(),
    ));
    let assertion = |aud: &str, jti: &str, exp_in: i64| {
        let mut h = Map::new();
        h.insert("kid".into(), Value::from("ed-as"));
        h.insert("typ".into(), Value::from("JWT"));
        let now = now_ms() / 1000;
        let p = json!({"iss": "ed-as", "sub": "ed-as", "aud": aud, "exp": now + exp_in, "iat": now, "jti": jti});
        encode(&signer, &h, p.as_object().unwrap()).unwrap()
    };
    let aud = "https://localhost/oauth/token";
    let form = |a: &str| {
        format!("grant_type=client_credentials&scope=read&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}")
    };
    let post = |body: String| {
        Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let a1 = assertion(aud, "j-1", 60);
    let r = send(&e.pki, e.addr, false, post(form(&a1))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let r = send(&e.pki, e.addr, false, bearer("/v1/account", &token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["account"], "demo2");
    // The same assertion again (same jti): refused.
    assert_eq!(
        send(&e.pki, e.addr, false, post(form(&a1))).await.code(),
        "REPLAYED_NONCE"
    );
    // Wrong audience, too long a lifetime, expired, foreign key.
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            post(form(&assertion("https://evil/oauth/token", "j-2", 60)))
        )
        .await
        .code(),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            post(form(&assertion(aud, "j-3", 3_600)))
        )
        .await
        .code(),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        send(
            &e.pki,
            e.addr,
            false,
            post(form(&assertion(aud, "j-4", -5)))
        )
        .await
        .code(),
        "TIMESTAMP_TOO_OLD"
    );
    let other = JwtSigner::generate(Alg::EdDsa).unwrap();
    let mut h = Map::new();
    h.insert("kid".into(), Value::from("ed-as"));
    let now = now_ms() / 1000;
    let p = json!({"iss": "ed-as", "sub": "ed-as", "aud": aud, "exp": now + 60, "jti": "j-5"});
    let forged = encode(&other, &h, p.as_object().unwrap()).unwrap();
    assert_eq!(
        send(&e.pki, e.addr, false, post(form(&forged)))
            .await
            .code(),
        "SIGNATURE_INVALID"
    );
}

// ---- audit records of the request path ----

#[tokio::test]
async fn every_decision_is_audited_with_the_order_sealed() {
    let w = Arc::new(HeldWriter::default());
    let e = env_full(
        "",
        Some(auditor(
            w.clone(),
            rampart_core::config::AuditOnFull::Reject,
        )),
    )
    .await;
    let (sk, km) = hmac_key();
    e.add(record("k-aud", "demo2", Scheme::Rfc9421HmacSha256, km));
    let body = order("sealed-cid-4711");
    let req = signed(
        Method::POST,
        "/v1/orders",
        &body,
        "k-aud",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    let r = send(&e.pki, e.addr, false, req).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Unsigned: auth.failure; bad signature: auth.failure with the claimed key.
    let r = send(&e.pki, e.addr, false, get("/v1/account")).await;
    assert_eq!(r.status, 401);
    let mut bad = signed(
        Method::GET,
        "/v1/account",
        "",
        "k-aud",
        Scheme::Rfc9421HmacSha256,
        &SigningKey::Hmac(Zeroizing::new(vec![9u8; 32])),
        now_ms() / 1000,
        &nonce(),
    );
    bad.headers_mut()
        .insert("x-test", HeaderValue::from_static("1"));
    let r = send(&e.pki, e.addr, false, bad).await;
    assert_eq!(r.status, 401);
    // Public 404: request.rejected.
    let r = send(&e.pki, e.addr, false, get("/nope")).await;
    assert_eq!(r.status, 404);

    let evs = w.events();
    let allow = evs
        .iter()
        .find(|v| v.event_type == "auth.success")
        .expect("allow record");
    assert_eq!(allow.actor.id, "k-aud");
    assert_eq!(allow.account.as_deref(), Some("demo2"));
    assert_eq!(allow.decision, rampart_audit::Decision::Allow);
    assert_eq!(allow.action, "PlaceOrder");
    assert!(allow.request_id.is_some());
    // The order is sealed, not plaintext, and opens to the exact body.
    let entry = String::from_utf8(allow.to_entry().unwrap()).unwrap();
    assert!(!entry.contains("sealed-cid-4711"), "{entry}");
    assert_eq!(
        allow.open_field(&TestSealer, "body").unwrap(),
        body.as_bytes()
    );

    let fails: Vec<_> = evs
        .iter()
        .filter(|v| v.event_type == "auth.failure")
        .collect();
    assert_eq!(fails.len(), 2, "{evs:?}");
    assert!(fails
        .iter()
        .all(|f| f.decision == rampart_audit::Decision::Deny));
    assert!(fails
        .iter()
        .any(|f| f.reason.as_deref() == Some("MISSING_CREDENTIALS")));
    assert!(fails
        .iter()
        .any(|f| f.actor.id == "k-aud" && f.actor.kind == rampart_audit::ActorKind::Anonymous));
    let rej = evs
        .iter()
        .find(|v| v.event_type == "request.rejected")
        .expect("404 record");
    assert_eq!(rej.reason.as_deref(), Some("NOT_FOUND"));
    assert_eq!(rej.resource, "/nope");
}

#[tokio::test]
async fn scope_denial_is_an_authorization_record_of_the_proven_key() {
    let w = Arc::new(HeldWriter::default());
    let e = env_full(
        "",
        Some(auditor(
            w.clone(),
            rampart_core::config::AuditOnFull::Reject,
        )),
    )
    .await;
    let (sk, km) = hmac_key();
    let mut r = record("k-read", "acct-r", Scheme::Rfc9421HmacSha256, km);
    r.scopes = vec!["read".into()];
    e.add(r);
    let req = signed(
        Method::POST,
        "/v1/orders",
        &order("x"),
        "k-read",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    let r = send(&e.pki, e.addr, false, req).await;
    assert_eq!(r.status, 403);
    let evs = w.events();
    let d = evs
        .iter()
        .find(|v| v.event_type == "authz.decision")
        .expect("authz record");
    assert_eq!(d.actor.id, "k-read");
    assert_eq!(d.actor.kind, rampart_audit::ActorKind::Key);
    assert_eq!(d.reason.as_deref(), Some("SCOPE_MISSING"));
    assert_eq!(e.orders("acct-r"), 0);
}

#[tokio::test]
async fn full_audit_queue_refuses_authenticated_requests_but_not_public_ones() {
    let w = Arc::new(HeldWriter::default());
    let e = env_full(
        "",
        Some(auditor(
            w.clone(),
            rampart_core::config::AuditOnFull::Reject,
        )),
    )
    .await;
    let (sk, km) = hmac_key();
    e.add(record("k-full", "demo2", Scheme::Rfc9421HmacSha256, km));
    w.full.store(true, Ordering::Relaxed);
    let req = signed(
        Method::POST,
        "/v1/orders",
        &order("full-1"),
        "k-full",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    let r = send(&e.pki, e.addr, false, req).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("AUDIT_UNAVAILABLE"));
    assert_eq!(e.orders("demo2"), 0, "nothing is served unaudited");
    // Public routes keep working.
    assert_eq!(
        send(&e.pki, e.addr, false, get("/v1/markets")).await.status,
        200
    );
    // Room again: requests pass, and the loss is recorded once.
    w.full.store(false, Ordering::Relaxed);
    let req = signed(
        Method::POST,
        "/v1/orders",
        &order("full-2"),
        "k-full",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    assert_eq!(send(&e.pki, e.addr, false, req).await.status, 201);
    let evs = w.events();
    let o = evs
        .iter()
        .find(|v| v.event_type == "audit.overflow")
        .expect("overflow record");
    assert!(o.payload.contains_key("records_lost"), "{o:?}");
    assert_eq!(e.orders("demo2"), 1);
}

#[tokio::test]
async fn continue_policy_serves_and_counts_the_loss() {
    let w = Arc::new(HeldWriter::default());
    let a = auditor(w.clone(), rampart_core::config::AuditOnFull::Continue);
    let e = env_full("", Some(Arc::clone(&a))).await;
    let (sk, km) = hmac_key();
    e.add(record("k-cont", "demo2", Scheme::Rfc9421HmacSha256, km));
    w.full.store(true, Ordering::Relaxed);
    let req = signed(
        Method::POST,
        "/v1/orders",
        &order("c-1"),
        "k-cont",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    assert_eq!(send(&e.pki, e.addr, false, req).await.status, 201);
    assert_eq!(a.lost(), 1);
    assert_eq!(a.refused(), 0);
}
