//! The abuse-defense work one order costs on the request path, without the
//! network: edge rate limits, validation (schema + detectors) over the real
//! headers of a signed request, the failed-authentication guard, adaptive
//! risk, principal rate limits, and all of them together — with the demo's
//! limit rules and schemas. Run: `cargo bench -p rampart-gateway --bench
//! shield_path`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark code"
)]

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use rampart_gateway::defense::Defense;
use rampart_gateway::limits::{Limits, Shield, Who};
use rampart_gateway::waf::{Verdict, Waf};
use rampart_shield::risk::RiskContext;

const ORDER: &[u8] = br#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}"#;

fn config() -> rampart_core::config::Config {
    let schema = |a: &str| {
        format!(
            "{}/../rampart-shield/corpus/schemas/{a}.json",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[dangerous]
plaintext = true
[upstreams.ex]
endpoints = ["127.0.0.1:9"]
[[routes]]
method = "POST"
path = "/v1/orders"
upstream = "ex"
action = "PlaceOrder"
scope = "trade"
group = "orders"
schema = "{place}"
[[routes]]
method = "GET"
path = "/v1/markets/{{symbol}}/book"
upstream = "ex"
action = "GetBook"
scope = "public"
weight = 2
schema = "{book}"
[limits.escalation]
enabled = false
# The demo's rules, with budgets no benchmark loop can exhaust: the cost
# of a check does not depend on the numbers.
[[limits.rules]]
name = "ip-weight"
by = ["ip"]
rate = 4000000000
per = "1s"
[[limits.rules]]
name = "key-weight"
by = ["key"]
rate = 4000000000
per = "1s"
[[limits.rules]]
name = "orders-1s"
by = ["key"]
rate = 4000000000
per = "1s"
cost = "one"
groups = ["orders"]
[[limits.rules]]
name = "orders-10s"
by = ["account"]
rate = 4000000000
per = "1s"
cost = "one"
groups = ["orders"]
"#,
        place = schema("PlaceOrder"),
        book = schema("GetBook"),
    );
    rampart_core::config::parse(&text, std::path::Path::new("/")).unwrap()
}

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("content-type", "application/json"),
        ("content-length", "118"),
        ("user-agent", "desk-algo/2.1 (linux; rust)"),
        ("content-digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
        ("signature-input", "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1700000000;nonce=\"8b7c1f0e2d3a4b5c\";keyid=\"key-7f3a\";alg=\"hmac-sha256\""),
        ("signature", "sig1=:dGhpcyBpcyBhIHNpZ25hdHVyZSBvZiB0aGlydHktdHdvIGJ5dGVzISE=:"),
        ("accept", "application/json"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let cfg = config();
    let limits = Limits::compile(&cfg.limits, &cfg.routes).unwrap();
    let shield = Shield::new(&cfg.limits).unwrap();
    let waf = Waf::compile(&cfg).unwrap();
    let defense = Defense::new(&cfg, None).unwrap();
    let route = &cfg.routes[0];
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    let h = headers();
    let anon = Who {
        ip,
        principal: None,
        credentialed: true,
    };
    let who = Who {
        ip,
        principal: Some(("key-7f3a", "acct-1")),
        credentialed: true,
    };
    // One request per second of simulated time: a steady key.
    let clock = std::sync::atomic::AtomicU64::new(1_700_000_000_000);
    let ctx = || RiskContext {
        key_id: "key-7f3a",
        account: "acct-1",
        ip,
        user_agent: Some("desk-algo/2.1 (linux; rust)"),
        now_unix_ms: clock.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed),
        instrument: Some("BTC-USD"),
        order_qty: Some(0.5),
        sensitive_action: false,
    };
    // An established profile, as in steady trading.
    for _ in 0..200 {
        let _ = defense.assess(&ctx(), false);
    }

    c.bench_function("shield/edge-limits", |b| {
        b.iter(|| black_box(shield.edge(&limits, Some((0, route)), &anon).is_ok()))
    });
    c.bench_function("shield/validate-order", |b| {
        b.iter(|| {
            let v = waf.check(
                Some(0),
                "POST",
                "/v1/orders",
                &[],
                None,
                &h,
                black_box(ORDER),
            );
            black_box(matches!(v, Verdict::Pass))
        })
    });
    let guard = defense.guard().unwrap();
    c.bench_function("shield/auth-guard-admit", |b| {
        b.iter(|| black_box(guard.admit(ip, "key-7f3a")))
    });
    c.bench_function("shield/risk-assess-learn", |b| {
        b.iter(|| {
            black_box(matches!(
                defense.assess(&ctx(), false),
                rampart_gateway::defense::RiskVerdict::Allow
            ))
        })
    });
    c.bench_function("shield/principal-limits", |b| {
        b.iter(|| {
            let r = shield.principal(&limits, (0, route), &who, Default::default());
            black_box(r.is_ok())
        })
    });
    c.bench_function("shield/order-total", |b| {
        b.iter(|| {
            let rep = shield.edge(&limits, Some((0, route)), &anon).unwrap();
            let v = waf.check(
                Some(0),
                "POST",
                "/v1/orders",
                &[],
                None,
                &h,
                black_box(ORDER),
            );
            assert!(matches!(v, Verdict::Pass));
            let _ = black_box(guard.admit(ip, "key-7f3a"));
            guard.record_success(ip, "key-7f3a");
            let _ = black_box(defense.assess(&ctx(), false));
            black_box(shield.principal(&limits, (0, route), &who, rep).is_ok())
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
