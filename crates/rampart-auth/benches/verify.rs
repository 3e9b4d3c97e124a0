//! Verification cost per scheme on a typical order request (200-byte JSON
//! body): parse + verify, as the gateway does it, plus the replay-cache
//! insert. Run: `cargo bench -p rampart-auth --bench verify`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark code"
)]

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use rampart_auth::profiles::{binance, kraken};
use rampart_auth::rfc9421::{self, SigningKey};
use rampart_auth::{KeyMaterial, MemoryNonceStore, RequestView, Scheme};
use zeroize::Zeroizing;

const BODY: &str = r#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}"#;

fn rfc_request(scheme: Scheme, key: &SigningKey) -> (HeaderMap, Method) {
    let method = Method::POST;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let d = rampart_auth::digest::content_digest(
        rampart_auth::digest::DigestAlg::Sha256,
        BODY.as_bytes(),
    );
    headers.insert("content-digest", HeaderValue::from_str(&d).unwrap());
    let view = RequestView {
        method: &method,
        path_and_query: "/v1/orders",
        authority: "api.venue.example",
        scheme: "https",
        headers: &headers,
        body: BODY.as_bytes(),
    };
    let sig = rfc9421::sign(
        &view,
        "rk_0123456789abcdef",
        scheme,
        key,
        1_700_000_000,
        "5f2c9a0e4b7d1c3e8a6f",
        &[],
    )
    .unwrap();
    sig.insert_into(&mut headers).unwrap();
    (headers, method)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    let rng = aws_lc_rs::rand::SystemRandom::new();

    let secret = vec![7u8; 32];
    let ed = Ed25519KeyPair::generate().unwrap();
    let ed_pub: [u8; 32] = ed.public_key().as_ref().try_into().unwrap();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let ec_pub = ec.public_key().as_ref().to_vec();
    let cases: Vec<(&str, Scheme, SigningKey, KeyMaterial)> = vec![
        (
            "rfc9421-hmac-sha256",
            Scheme::Rfc9421HmacSha256,
            SigningKey::Hmac(Zeroizing::new(secret.clone())),
            KeyMaterial::Hmac(Zeroizing::new(secret.clone())),
        ),
        (
            "rfc9421-ed25519",
            Scheme::Rfc9421Ed25519,
            SigningKey::Ed25519(ed),
            KeyMaterial::Ed25519(ed_pub),
        ),
        (
            "rfc9421-ecdsa-p256",
            Scheme::Rfc9421EcdsaP256,
            SigningKey::EcdsaP256(ec),
            KeyMaterial::EcdsaP256(ec_pub),
        ),
    ];
    for (name, scheme, sk, km) in &cases {
        let (headers, method) = rfc_request(*scheme, sk);
        g.bench_function(format!("{name}/parse+verify"), |b| {
            b.iter(|| {
                let view = RequestView {
                    method: &method,
                    path_and_query: "/v1/orders",
                    authority: "api.venue.example",
                    scheme: "https",
                    headers: &headers,
                    body: BODY.as_bytes(),
                };
                let p = rfc9421::parse(black_box(&view)).unwrap().unwrap();
                p.verify(&view, *scheme, km).unwrap();
            });
        });
    }

    // Binance-style HMAC (signature in the query).
    let bsecret = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j".to_vec();
    let signer = binance::Signer::Hmac(&bsecret);
    let signed = binance::sign(
        &signer,
        "bn_key",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000",
        b"",
        binance::SignatureLocation::Query,
        1_700_000_000_000,
        Some(5000),
    )
    .unwrap();
    let mut bheaders = HeaderMap::new();
    for (k, v) in &signed.headers {
        bheaders.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let bpq = format!("/api/v3/order?{}", signed.query);
    let bkey = KeyMaterial::Hmac(Zeroizing::new(bsecret.clone()));
    g.bench_function("binance-hmac/claims+verify", |b| {
        b.iter(|| {
            let view = RequestView {
                method: &Method::POST,
                path_and_query: &bpq,
                authority: "api.venue.example",
                scheme: "https",
                headers: &bheaders,
                body: b"",
            };
            let claims = binance::claims(black_box(&view), 1_700_000_000_100)
                .unwrap()
                .unwrap();
            binance::verify(&view, &claims, &bkey).unwrap();
        });
    });

    // Kraken-style HMAC-SHA512.
    let ksecret = vec![3u8; 64];
    let post = kraken::form_with_nonce(
        1_700_000_000_000,
        "ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25",
    );
    let kh = kraken::sign(
        &ksecret,
        "kr_key",
        "/0/private/AddOrder",
        1_700_000_000_000,
        post.as_bytes(),
    );
    let mut kheaders = HeaderMap::new();
    kheaders.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    for (k, v) in &kh {
        kheaders.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let kkey = KeyMaterial::Hmac(Zeroizing::new(ksecret.clone()));
    g.bench_function("kraken-hmac-sha512/claims+verify", |b| {
        b.iter(|| {
            let view = RequestView {
                method: &Method::POST,
                path_and_query: "/0/private/AddOrder",
                authority: "api.venue.example",
                scheme: "https",
                headers: &kheaders,
                body: post.as_bytes(),
            };
            let claims = kraken::claims(black_box(&view), 0).unwrap().unwrap();
            kraken::verify(&view, &claims, &kkey).unwrap();
        });
    });

    let store = MemoryNonceStore::new(10_000_000);
    let mut n = 0u64;
    g.bench_function("replay-cache/insert-fresh", |b| {
        b.iter(|| {
            n += 1;
            store.check("rk_0123456789abcdef", &n.to_string(), 0, i64::MAX)
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
