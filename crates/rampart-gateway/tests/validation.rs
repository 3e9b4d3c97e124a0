//! Input validation through the real gateway with the demo routes'
//! schemas: a schema violation is a 400 naming the field, an injection in a
//! free-text field a 403 naming the rule, both before authentication and
//! without reaching the exchange; benign free text passes; a detect-only
//! route forwards and records.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    missing_docs,
    reason = "test code"
)]

mod common;

use common::authn::*;
use common::*;
use http::Method;
use rampart_auth::rfc9421::SigningKey;
use rampart_auth::Scheme;

fn schema(action: &str) -> String {
    format!(
        "{}/../rampart-shield/corpus/schemas/{action}.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn routes(order_waf: &str) -> String {
    format!(
        r#"
[[routes]]
method = "GET"
path = "/v1/markets/{{symbol}}/book"
upstream = "up"
action = "GetBook"
scope = "public"
schema = "{book}"

[[routes]]
method = "GET"
path = "/v1/orders"
upstream = "up"
action = "ListOrders"
scope = "read"
schema = "{list}"

[[routes]]
method = "POST"
path = "/v1/orders"
upstream = "up"
action = "PlaceOrder"
scope = "trade"
schema = "{place}"
waf = "{order_waf}"
"#,
        book = schema("GetBook"),
        list = schema("ListOrders"),
        place = schema("PlaceOrder"),
    )
}

fn post(body: &str, sk: &SigningKey) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    signed(
        Method::POST,
        "/v1/orders",
        body,
        "k",
        Scheme::Rfc9421HmacSha256,
        sk,
        now_ms() / 1000,
        &nonce(),
    )
}

#[tokio::test]
async fn violations_are_refused_before_the_exchange_and_benign_text_passes() {
    let e = env_routes(&routes("block"), "", None).await;
    let (sk, km) = hmac_key();
    e.add(record("k", "demo", Scheme::Rfc9421HmacSha256, km));

    // Type confusion: a number where the schema wants a decimal string.
    let bad = order("c1").replace("\"qty\":\"0.01\"", "\"qty\":0.01");
    let r = send(&e.pki, e.addr, false, post(&bad, &sk)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "VALIDATION_FAILED");
    assert_eq!(r.json()["pointer"], "/body/qty");

    // An unknown field (additionalProperties: false).
    let extra = order("c2").replace("{", "{\"leverage\":\"100\",");
    let r = send(&e.pki, e.addr, true, post(&extra, &sk)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["pointer"], "/body/leverage");

    // SQL injection in the free-text note.
    let sqli = order("c3").replace("}", ",\"note\":\"x' UNION SELECT password FROM users--\"}");
    let r = send(&e.pki, e.addr, false, post(&sqli, &sk)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "REQUEST_BLOCKED");
    let v = r.json();
    assert_eq!(v["rule"], "sqli");
    assert_eq!(v["location"], "/body/note");
    assert!(
        !r.body.windows(5).any(|w| w == b"UNION"),
        "the payload is not echoed"
    );

    // XSS in the note.
    let xss = order("c4").replace("}", ",\"note\":\"<img src=x onerror=alert(1)>\"}");
    let r = send(&e.pki, e.addr, false, post(&xss, &sk)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["rule"], "xss");

    // A hostile query value on a read route, and a path param.
    let r = send(
        &e.pki,
        e.addr,
        false,
        signed(
            Method::GET,
            "/v1/orders?symbol=%27%20OR%201%3D1--",
            "",
            "k",
            Scheme::Rfc9421HmacSha256,
            &sk,
            now_ms() / 1000,
            &nonce(),
        ),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["pointer"], "/query/symbol");
    let r = send(
        &e.pki,
        e.addr,
        false,
        get("/v1/markets/BTC-USD%3Cscript%3E/book"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["pointer"], "/params/symbol");

    // Deep nesting is refused quickly, without a stack overflow.
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let r = send(&e.pki, e.addr, false, post(&deep, &sk)).await;
    assert!(r.status == 400 || r.status == 413, "{}", r.status);

    assert_eq!(e.orders("demo"), 0, "nothing refused reached the exchange");

    // Benign free text with quotes, apostrophes, angle brackets, non-ASCII.
    for (i, note) in [
        "Rebalance for O'Brien's desk <main> → <hedge>",
        "Zoë Müller 株式 \\\"hedge\\\" leg",
        "select the best price; a < b and c > d",
    ]
    .iter()
    .enumerate()
    {
        let ok = order(&format!("ok{i}")).replace("}", &format!(",\"note\":\"{note}\"}}"));
        let r = send(&e.pki, e.addr, false, post(&ok, &sk)).await;
        assert_eq!(
            r.status,
            201,
            "{note}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(e.orders("demo"), 3);
}

#[tokio::test]
async fn detect_only_routes_forward_and_record() {
    let e = env_routes(&routes("detect"), "", None).await;
    let (sk, km) = hmac_key();
    e.add(record("k", "demo", Scheme::Rfc9421HmacSha256, km));
    let sqli = order("d1").replace("}", ",\"note\":\"1; DROP TABLE orders; --\"}");
    let r = send(&e.pki, e.addr, false, post(&sqli, &sk)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(e.orders("demo"), 1);
}
