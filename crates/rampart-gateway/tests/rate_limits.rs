//! Rate limits through the real gateway over real TLS: exact budgets per
//! IP and per key, the IETF RateLimit headers, 429 problems with
//! Retry-After naming the limit, refunds across rules, concurrency, the
//! `GET /v1/limits` endpoint, and escalation (bans by IP only for
//! anonymous requests, by key for identified ones).
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
use rampart_auth::Scheme;

fn signed_get(
    path: &str,
    key_id: &str,
    sk: &rampart_auth::rfc9421::SigningKey,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    signed(
        Method::GET,
        path,
        "",
        key_id,
        Scheme::Rfc9421HmacSha256,
        sk,
        now_ms() / 1000,
        &nonce(),
    )
}

fn signed_order(
    cid: &str,
    key_id: &str,
    sk: &rampart_auth::rfc9421::SigningKey,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    signed(
        Method::POST,
        "/v1/orders",
        &order(cid),
        key_id,
        Scheme::Rfc9421HmacSha256,
        sk,
        now_ms() / 1000,
        &nonce(),
    )
}

#[tokio::test]
async fn ip_budget_is_exact_with_headers_and_a_named_429() {
    let e = env_with(
        r#"
[[limits.rules]]
name = "markets-ip"
by = ["ip"]
rate = 5
per = "1m"
actions = ["ListMarkets"]
"#,
    )
    .await;
    for i in 0..5u32 {
        let r = send(&e.pki, e.addr, i % 2 == 1, get("/v1/markets")).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(
            r.headers.get("ratelimit-policy").unwrap(),
            "\"markets-ip\";q=5;w=60"
        );
        let rl = r.headers.get("ratelimit").unwrap().to_str().unwrap();
        assert!(
            rl.starts_with(&format!("\"markets-ip\";r={};t=", 4 - i)),
            "{rl}"
        );
    }
    let r = send(&e.pki, e.addr, false, get("/v1/markets")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "RATE_LIMITED");
    let v = r.json();
    assert_eq!(v["limit"], "markets-ip");
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // One cell every 12 s: the next one is due in (0, 12] s.
    assert!((1..=12).contains(&retry), "retry-after {retry}");
    assert!(v["retry_after_ms"].as_u64().unwrap() <= 12_000);
    assert!(
        r.headers.get("ratelimit").is_some(),
        "a 429 carries the headers too"
    );
    // Another route is not covered by the rule.
    let r = send(&e.pki, e.addr, false, get("/v1/time")).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("ratelimit-policy").is_none());
}

#[tokio::test]
async fn concurrent_clients_never_exceed_the_budget() {
    let e = env_with(
        r#"
[[limits.rules]]
name = "time-ip"
by = ["ip"]
rate = 10
per = "1h"
actions = ["GetTime"]
"#,
    )
    .await;
    let pki = e.pki.clone();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let pki = pki.clone();
        let addr = e.addr;
        tasks.push(tokio::spawn(async move {
            send(&pki, addr, i % 2 == 0, get("/v1/time")).await.status
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap().as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((ok, limited), (10, 30));
}

#[tokio::test]
async fn order_limits_are_per_key_and_refund_earlier_rules() {
    let e = env_with(
        r#"
[[limits.rules]]
name = "account-weight"
by = ["account"]
rate = 100
per = "1h"

[[limits.rules]]
name = "orders-10s"
by = ["key"]
rate = 3
per = "1h"
cost = "one"
actions = ["PlaceOrder"]
"#,
    )
    .await;
    let (sk, km) = hmac_key();
    e.add(record("k-a", "demo", Scheme::Rfc9421HmacSha256, km));
    e.add(record(
        "k-b",
        "demo",
        Scheme::Rfc9421HmacSha256,
        hmac_key().1,
    ));
    for i in 0..3 {
        let r = send(
            &e.pki,
            e.addr,
            false,
            signed_order(&format!("a{i}"), "k-a", &sk),
        )
        .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let rl = r
            .headers
            .get("ratelimit")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(rl.contains(&format!("\"orders-10s\";r={}", 2 - i)), "{rl}");
        assert!(rl.contains("\"account-weight\";r="), "{rl}");
    }
    let r = send(&e.pki, e.addr, true, signed_order("a3", "k-a", &sk)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["limit"], "orders-10s");
    assert_eq!(
        e.orders("demo"),
        3,
        "the refused order never reached the exchange"
    );
    // The other key on the same account has its own order budget.
    let r = send(&e.pki, e.addr, false, signed_order("b0", "k-b", &sk)).await;
    assert_eq!(r.status, 201);

    // GET /v1/limits: the refused order was refunded to the account rule,
    // which has seen exactly 4 allowed requests (3 by k-a, 1 by k-b);
    // /v1/limits itself is a gateway endpoint, not a route.
    let r = send(&e.pki, e.addr, false, signed_get("/v1/limits", "k-a", &sk)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["key_id"], "k-a");
    let limits = v["limits"].as_array().unwrap();
    let find = |n: &str| limits.iter().find(|l| l["name"] == n).unwrap().clone();
    assert_eq!(find("account-weight")["remaining"], 96);
    assert_eq!(find("orders-10s")["remaining"], 0);
    assert_eq!(find("orders-10s")["rate"], 3);
    assert_eq!(
        find("orders-10s")["actions"],
        serde_json::json!(["PlaceOrder"])
    );
    // Without credentials the endpoint is refused.
    let r = send(&e.pki, e.addr, false, get("/v1/limits")).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn ignoring_429s_bans_the_anonymous_ip_but_never_a_shared_ip_for_a_key() {
    let e = env_with(
        r#"
[limits.escalation]
denials = 3
window = "1m"
first_ban = "30s"
max_ban = "5m"

[[limits.rules]]
name = "markets-ip"
by = ["ip"]
rate = 1
per = "1h"
actions = ["ListMarkets"]

[[limits.rules]]
name = "orders-key"
by = ["key"]
rate = 1
per = "1h"
cost = "one"
actions = ["PlaceOrder"]
"#,
    )
    .await;
    let (sk, km) = hmac_key();
    e.add(record("noisy", "demo", Scheme::Rfc9421HmacSha256, km));
    e.add(record(
        "quiet",
        "demo2",
        Scheme::Rfc9421HmacSha256,
        hmac_key().1,
    ));

    // A key that keeps sending after 429s is banned by key.
    assert_eq!(
        send(&e.pki, e.addr, false, signed_order("n0", "noisy", &sk))
            .await
            .status,
        201
    );
    let mut details = Vec::new();
    for i in 1..=5 {
        let r = send(
            &e.pki,
            e.addr,
            false,
            signed_order(&format!("n{i}"), "noisy", &sk),
        )
        .await;
        assert_eq!(r.status, 429);
        details.push(r.json()["limit"].as_str().unwrap().to_owned());
    }
    assert_eq!(&details[..3], ["orders-key", "orders-key", "orders-key"]);
    assert_eq!(details[3], "escalation", "{details:?}");
    assert_eq!(details[4], "escalation");
    // The ban holds on every route for that key …
    let r = send(
        &e.pki,
        e.addr,
        false,
        signed_get("/v1/account", "noisy", &sk),
    )
    .await;
    assert_eq!(r.status, 429);
    assert!(r.json()["detail"].as_str().unwrap().contains("banned"));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry));
    // … but not for another key on the same (shared) IP, nor for anonymous
    // requests from it.
    assert_eq!(
        send(&e.pki, e.addr, false, signed_order("q0", "quiet", &sk))
            .await
            .status,
        201
    );
    assert_eq!(
        send(&e.pki, e.addr, false, get("/v1/time")).await.status,
        200
    );

    // Anonymous requests that ignore 429s ban the IP.
    assert_eq!(
        send(&e.pki, e.addr, false, get("/v1/markets")).await.status,
        200
    );
    let mut last = String::new();
    for _ in 0..4 {
        let r = send(&e.pki, e.addr, false, get("/v1/markets")).await;
        assert_eq!(r.status, 429);
        last = r.json()["limit"].as_str().unwrap().to_owned();
    }
    assert_eq!(last, "escalation");
    let r = send(&e.pki, e.addr, false, get("/v1/time")).await;
    assert_eq!(
        r.status, 429,
        "the banned IP is refused everywhere at the edge"
    );
    // An identified key behind that shared address is not banned with it.
    let r = send(
        &e.pki,
        e.addr,
        false,
        signed_get("/v1/account", "quiet", &sk),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
