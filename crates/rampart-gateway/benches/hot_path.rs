//! Micro-benchmarks of the per-request work that does not touch the network:
//! route lookup (literal and templated), upstream path rendering, endpoint
//! selection and problem rendering. Run: `cargo bench -p rampart-gateway`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark code"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use rampart_core::config::{
    PassiveConfig, RetryPolicy, RouteConfig, UpstreamConfig, UpstreamProtocol,
};
use rampart_core::{Problem, ProblemCode};
use rampart_gateway::router::{upstream_path, Match, Router};
use rampart_gateway::upstream::Pool;

fn route(method: Method, path: &str) -> RouteConfig {
    RouteConfig {
        method,
        path: path.into(),
        upstream: "u".into(),
        action: "A".into(),
        scope: "public".into(),
        weight: 1,
        rewrite: None,
        max_body_bytes: None,
        timeout: None,
        retry: RetryPolicy::Safe,
        group: None,
        schema: None,
        waf: None,
        account: None,
        order_id: None,
        instrument: None,
    }
}

fn bench(c: &mut Criterion) {
    let mut routes = vec![
        route(Method::GET, "/v1/time"),
        route(Method::GET, "/v1/markets"),
        route(Method::GET, "/v1/markets/{symbol}/book"),
        route(Method::GET, "/v1/account"),
        route(Method::GET, "/v1/orders"),
        route(Method::POST, "/v1/orders"),
        route(Method::DELETE, "/v1/orders/{order_id}"),
        route(Method::POST, "/v1/withdrawals"),
    ];
    for i in 0..40 {
        routes.push(route(Method::GET, &format!("/v2/extra{i}/{{id}}/detail")));
    }
    let router = Router::new(&routes);
    c.bench_function("router/literal", |b| {
        b.iter(|| {
            black_box(matches!(
                router.lookup(&Method::POST, black_box("/v1/orders")),
                Match::Found(..)
            ))
        })
    });
    c.bench_function("router/templated", |b| {
        b.iter(|| {
            if let Match::Found(r, p) =
                router.lookup(&Method::DELETE, black_box("/v1/orders/8c1f-22"))
            {
                black_box(upstream_path(r, "/v1/orders/8c1f-22", &p));
            }
        })
    });
    c.bench_function("router/not_found", |b| {
        b.iter(|| {
            black_box(matches!(
                router.lookup(&Method::GET, black_box("/v9/nothing/here")),
                Match::NotFound
            ))
        })
    });
    c.bench_function("problem/render", |b| {
        let p = Problem::new(ProblemCode::TimestampTooOld)
            .detail("the request is older than the freshness window")
            .with("window_ms", 5000);
        b.iter(|| black_box(p.to_json(Some("59b6f950f4c5414f0000000000000001"))))
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let pool = Pool::new(
        "p",
        &UpstreamConfig {
            endpoints: vec![
                "127.0.0.1:1".into(),
                "127.0.0.1:2".into(),
                "127.0.0.1:3".into(),
            ],
            protocol: UpstreamProtocol::Http1,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_in_flight: 100,
            retries: 1,
            health: None,
            passive: PassiveConfig {
                consecutive_failures: 3,
                ejection: Duration::from_secs(10),
            },
        },
    );
    // The gateway's own signature on every forwarded request.
    let signer = rampart_gateway::auth::IdentitySigner::hmac(&[7u8; 32]).unwrap();
    let mut base_headers = http::HeaderMap::new();
    for (k, v) in [
        ("accept", "*/*"),
        ("user-agent", "bench/1.0"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "0123456789abcdef0123456789abcdef"),
    ] {
        base_headers.insert(k, http::HeaderValue::from_static(v));
    }
    c.bench_function("identity/sign-public-get", |b| {
        b.iter(|| {
            let mut h = base_headers.clone();
            signer
                .sign(
                    &Method::GET,
                    "127.0.0.1:18080",
                    "/v1/time",
                    &mut h,
                    b"",
                    "nonce0123456789",
                )
                .unwrap();
            h
        });
    });
    c.bench_function("identity/clone-headers-only", |b| {
        b.iter(|| base_headers.clone());
    });
    c.bench_function("pool/pick", |b| {
        b.iter(|| black_box(pool.pick(&[]).map(|(i, _)| i)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
