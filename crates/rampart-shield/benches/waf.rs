//! Validation + detection of typical requests: an order with its schema, a
//! withdrawal with a free-text memo, a book query, and the refusal paths.
//!
//! `cargo bench -p rampart-shield --bench waf -- --warm-up-time 1 --measurement-time 3`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark"
)]
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rampart_shield::waf::corpus;
use rampart_shield::waf::{Inspector, Limits, Request, RouteSchema};

const ORDER: &str = r#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}"#;
const WITHDRAWAL: &str = r#"{"asset":"BTC","amount":"0.1","address":"bc1qdemo0rampart0allowlisted0address0000000","memo":"Transfer to O'Brien's cold wallet - Zoë Müller, ref #42 <main> → <hedge>"}"#;
const SQLI_MEMO: &str = r#"{"asset":"BTC","amount":"0.1","address":"bc1qdemo0rampart0allowlisted0address0000000","memo":"' UNION SELECT password FROM users--"}"#;

/// The headers a signed API request typically carries.
const HEADERS: [(&str, &[u8]); 8] = [
    ("host", b"127.0.0.1:8443"),
    ("user-agent", b"python-requests/2.31.0"),
    ("accept", b"application/json"),
    ("content-type", b"application/json"),
    ("content-length", b"132"),
    ("content-digest", b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
    (
        "signature-input",
        b"sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1700000000;nonce=\"n0\";keyid=\"k1\"",
    ),
    ("signature", b"sig1=:YmFzZTY0c2lnbmF0dXJlYmFzZTY0c2lnbmF0dXJlYmFzZTY0c2ln:"),
];

fn schema(action: &str) -> RouteSchema {
    let route = corpus::DEMO_ROUTES
        .iter()
        .find(|r| r.action == action)
        .unwrap();
    RouteSchema::from_json_str(route.schema).unwrap()
}

fn post<'a>(path: &'a str, body: &'a str) -> Request<'a> {
    Request {
        method: "POST",
        path,
        params: &[],
        query: None,
        headers: &HEADERS,
        content_type: Some("application/json"),
        body: body.as_bytes(),
    }
}

fn waf(c: &mut Criterion) {
    let inspector = Inspector::new(Limits::default());
    let order = schema("PlaceOrder");
    let withdraw = schema("Withdraw");
    let book = schema("GetBook");

    let req = post("/v1/orders", ORDER);
    assert!(inspector.inspect(Some(&order), &req).is_ok());
    c.bench_function("waf/order (schema + detectors)", |b| {
        b.iter(|| inspector.inspect(black_box(Some(&order)), black_box(&req)));
    });
    c.bench_function("waf/order (detectors only, no schema)", |b| {
        b.iter(|| inspector.inspect(black_box(None), black_box(&req)));
    });

    let req = post("/v1/withdrawals", WITHDRAWAL);
    assert!(inspector.inspect(Some(&withdraw), &req).is_ok());
    c.bench_function("waf/withdrawal with free-text memo", |b| {
        b.iter(|| inspector.inspect(black_box(Some(&withdraw)), black_box(&req)));
    });

    let req = post("/v1/withdrawals", SQLI_MEMO);
    assert!(inspector.inspect(Some(&withdraw), &req).is_err());
    c.bench_function("waf/withdrawal with SQLi memo (blocked)", |b| {
        b.iter(|| inspector.inspect(black_box(Some(&withdraw)), black_box(&req)));
    });

    let params = [("symbol", "BTC-USD")];
    let req = Request {
        method: "GET",
        path: "/v1/markets/BTC-USD/book",
        params: &params,
        query: Some("depth=20"),
        headers: &HEADERS[..3],
        content_type: None,
        body: b"",
    };
    assert!(inspector.inspect(Some(&book), &req).is_ok());
    c.bench_function("waf/book query (params + query)", |b| {
        b.iter(|| inspector.inspect(black_box(Some(&book)), black_box(&req)));
    });

    let bare = Request {
        headers: &[],
        ..post("/v1/orders", ORDER)
    };
    c.bench_function("waf/order without headers", |b| {
        b.iter(|| inspector.inspect(black_box(Some(&order)), black_box(&bare)));
    });
    c.bench_function("waf/scan one user agent", |b| {
        b.iter(|| rampart_shield::waf::detect::scan(black_box("python-requests/2.31.0"), 4));
    });
    c.bench_function("waf/scan one memo", |b| {
        b.iter(|| {
            rampart_shield::waf::detect::scan(
                black_box(
                    "Transfer to O'Brien's cold wallet - Zoë Müller, ref #42 <main> → <hedge>",
                ),
                4,
            )
        });
    });

    let deep = "[".repeat(60 * 1024);
    let req = post("/v1/orders", &deep);
    assert!(inspector.inspect(Some(&order), &req).is_err());
    c.bench_function("waf/60 KiB of nested arrays (refused)", |b| {
        b.iter(|| inspector.inspect(black_box(Some(&order)), black_box(&req)));
    });
}

criterion_group!(benches, waf);
criterion_main!(benches);
