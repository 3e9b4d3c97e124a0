//! Authorization and trading controls through the real gateway (issue 6):
//! Cedar policies (KYC tiers, products, address book), object-level
//! authorization (other accounts' orders and accounts), MFA step-up with
//! TOTP codes and step-up tokens, pre-trade risk limits, and the kill
//! switch's cancel-all. Every refusal is checked to never reach the
//! exchange.
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

use std::sync::Arc;

use bytes::Bytes;
use common::authn::*;
use common::*;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::Full;
use rampart_auth::rfc9421::{self, SigningKey};
use rampart_auth::totp::{self, TotpParams};
use rampart_auth::{RequestView, Scheme};

const ROUTES: &str = r#"
[[routes]]
method = "GET"
path = "/v1/markets/{symbol}/book"
upstream = "up"
action = "GetBook"
scope = "public"

[[routes]]
method = "GET"
path = "/v1/account"
upstream = "up"
action = "GetAccount"
scope = "read"
account = "query:account"

[[routes]]
method = "POST"
path = "/v1/orders"
upstream = "up"
action = "PlaceOrder"
scope = "trade"
max_body_bytes = 1024
group = "orders"

[[routes]]
method = "GET"
path = "/v1/orders"
upstream = "up"
action = "ListOrders"
scope = "read"

[[routes]]
method = "DELETE"
path = "/v1/orders/{order_id}"
upstream = "up"
action = "CancelOrder"
scope = "trade"
order_id = "path:order_id"
group = "cancels"

[[routes]]
method = "POST"
path = "/v1/withdrawals"
upstream = "up"
action = "Withdraw"
scope = "withdraw"
"#;

const POLICY: &str = r#"
[policy]
defaults = true
[policy.instruments]
"BTC-USD" = "spot"
"ETH-USD" = "spot"
"BTC-PERP" = "perp"
"BTC-20261225-100000-C" = "option"
"#;

const ADDRESS: &str = "bc1qallowlisted0000000000000000000000000";

/// A request signed with RFC 9421, covering `extra` headers too.
fn signed_with(
    method: Method,
    pq: &str,
    body: &str,
    key_id: &str,
    key: &SigningKey,
    extra: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut headers = HeaderMap::new();
    if !body.is_empty() {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let d = rampart_auth::digest::content_digest(
            rampart_auth::digest::DigestAlg::Sha256,
            body.as_bytes(),
        );
        headers.insert("content-digest", HeaderValue::from_str(&d).unwrap());
    }
    for (k, v) in extra {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let names: Vec<&str> = extra.iter().map(|(k, _)| *k).collect();
    let view = RequestView {
        method: &method,
        path_and_query: pq,
        authority: "localhost",
        scheme: "https",
        headers: &headers,
        body: body.as_bytes(),
    };
    let sig = rfc9421::sign(
        &view,
        key_id,
        Scheme::Rfc9421HmacSha256,
        key,
        now_ms() / 1000,
        &nonce(),
        &names,
    )
    .unwrap();
    sig.insert_into(&mut headers).unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(pq)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    *req.headers_mut() = headers;
    req
}

fn keyed(e: &Env, id: &str, account: &str, scopes: &[&str]) -> SigningKey {
    let (sk, km) = hmac_key();
    let mut r = record(id, account, Scheme::Rfc9421HmacSha256, km);
    r.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    e.add(r);
    sk
}

fn order_body(symbol: &str, qty: &str, price: &str, cid: &str) -> String {
    format!(
        r#"{{"symbol":"{symbol}","side":"buy","type":"limit","qty":"{qty}","price":"{price}","client_order_id":"{cid}","time_in_force":"gtc"}}"#
    )
}

#[allow(dead_code, reason = "helper")]
fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// Places an order signed by `key_id`.
async fn place_order(
    e: &Env,
    key_id: &str,
    sk: &SigningKey,
    body: &str,
) -> (u16, serde_json::Value) {
    call(
        e,
        signed_with(Method::POST, "/v1/orders", body, key_id, sk, &[]),
    )
    .await
}

async fn call(e: &Env, req: Request<Full<Bytes>>) -> (u16, serde_json::Value) {
    let r = send(&e.pki, e.addr, false, req).await;
    (r.status.as_u16(), r.json())
}

#[tokio::test]
async fn kyc_tiers_gate_products_and_the_exchange_never_sees_a_denied_order() {
    let e = env_routes(ROUTES, POLICY, None).await;
    e.accts.put("tier1", None, 1, &[]);
    e.accts.put("tier0", None, 0, &[]);
    e.ex.with_engine(|x| {
        x.add_account("tier1", &[("USD", "1000000".parse().unwrap())]);
        x.add_account("tier0", &[("USD", "1000000".parse().unwrap())]);
    });
    let k1 = keyed(&e, "k-tier1", "tier1", &["read", "trade"]);
    let k0 = keyed(&e, "k-tier0", "tier0", &["read", "trade"]);
    let k2 = keyed(&e, "k-tier2", "demo", &["read", "trade"]);

    // Tier 1: spot yes, perpetuals no.
    let (st, b) = place_order(
        &e,
        "k-tier1",
        &k1,
        &order_body("BTC-USD", "0.01", "100.00", "s1"),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = place_order(
        &e,
        "k-tier1",
        &k1,
        &order_body("BTC-PERP", "0.01", "100.00", "p1"),
    )
    .await;
    assert_eq!(st, 403, "{b}");
    assert_eq!(b["code"], "FORBIDDEN_BY_POLICY", "{b}");
    assert_eq!(
        e.orders("tier1"),
        1,
        "the perp order never reached the exchange"
    );

    // Tier 0: market data only — no trading, no account reads.
    let (st, b) = place_order(
        &e,
        "k-tier0",
        &k0,
        &order_body("BTC-USD", "0.01", "100.00", "z1"),
    )
    .await;
    assert_eq!(
        (st, b["code"].as_str()),
        (403, Some("FORBIDDEN_BY_POLICY")),
        "{b}"
    );
    assert_eq!(e.orders("tier0"), 0);

    // Tier 2: derivatives.
    let (st, b) = place_order(
        &e,
        "k-tier2",
        &k2,
        &order_body("BTC-PERP", "0.01", "100.00", "d1"),
    )
    .await;
    assert_eq!(st, 201, "{b}");

    // An instrument outside the catalogue is refused, never forwarded.
    let (st, b) = place_order(
        &e,
        "k-tier2",
        &k2,
        &order_body("DOGE-USD", "1", "1.00", "u1"),
    )
    .await;
    assert_eq!(st, 403, "{b}");
}

#[tokio::test]
async fn key_settings_restrict_instruments_products_and_read_only_keys() {
    let e = env_routes(ROUTES, POLICY, None).await;
    let (sk, km) = hmac_key();
    let mut r = record("k-eth-only", "demo", Scheme::Rfc9421HmacSha256, km);
    r.instruments = vec!["ETH-USD".into()];
    e.add(r);
    let (st, b) = place_order(
        &e,
        "k-eth-only",
        &sk,
        &order_body("ETH-USD", "0.1", "100.00", "e1"),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = place_order(
        &e,
        "k-eth-only",
        &sk,
        &order_body("BTC-USD", "0.01", "100.00", "e2"),
    )
    .await;
    assert_eq!(
        (st, b["code"].as_str()),
        (403, Some("FORBIDDEN_BY_POLICY")),
        "{b}"
    );

    let (sk2, km2) = hmac_key();
    let mut r = record("k-ro", "demo", Scheme::Rfc9421HmacSha256, km2);
    r.read_only = true;
    e.add(r);
    let (st, _) = call(
        &e,
        signed_with(Method::GET, "/v1/account", "", "k-ro", &sk2, &[]),
    )
    .await;
    assert_eq!(st, 200);
    let (st, b) = place_order(
        &e,
        "k-ro",
        &sk2,
        &order_body("BTC-USD", "0.01", "100.00", "r1"),
    )
    .await;
    assert_eq!(st, 403, "{b}");
}

#[tokio::test]
async fn bola_another_accounts_order_or_account_is_refused_before_the_exchange() {
    let e = env_routes(ROUTES, "", None).await;
    e.accts.put("demo-sub", Some("demo"), 2, &[]);
    e.ex.with_engine(|x| x.add_account("demo-sub", &[("USD", "1000".parse().unwrap())]));
    let ka = keyed(&e, "k-a", "demo", &["read", "trade"]);
    let kb = keyed(&e, "k-b", "demo2", &["read", "trade"]);
    let ks = keyed(&e, "k-sub", "demo-sub", &["read", "trade"]);

    let (st, b) = place_order(
        &e,
        "k-a",
        &ka,
        &order_body("BTC-USD", "0.01", "100.00", "a1"),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();

    // Account B cancelling A's order: refused at the gateway.
    let (st, b) = call(
        &e,
        signed_with(
            Method::DELETE,
            &format!("/v1/orders/{id}"),
            "",
            "k-b",
            &kb,
            &[],
        ),
    )
    .await;
    assert_eq!(
        (st, b["code"].as_str()),
        (403, Some("FORBIDDEN_BY_POLICY")),
        "{b}"
    );
    assert_eq!(
        e.orders("demo"),
        1,
        "the order is still open: the exchange never saw the cancel"
    );

    // Reading another account: refused; a parent reading its sub-account: allowed.
    let (st, b) = call(
        &e,
        signed_with(Method::GET, "/v1/account?account=demo", "", "k-b", &kb, &[]),
    )
    .await;
    assert_eq!(
        (st, b["code"].as_str()),
        (403, Some("FORBIDDEN_BY_POLICY")),
        "{b}"
    );
    let (st, b) = call(
        &e,
        signed_with(
            Method::GET,
            "/v1/account?account=demo-sub",
            "",
            "k-a",
            &ka,
            &[],
        ),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["account"], "demo-sub",
        "the exchange answered for the sub-account: {b}"
    );
    // A sub-account key can never act on its parent.
    let (st, _) = call(
        &e,
        signed_with(
            Method::GET,
            "/v1/account?account=demo",
            "",
            "k-sub",
            &ks,
            &[],
        ),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(
        &e,
        signed_with(
            Method::DELETE,
            &format!("/v1/orders/{id}"),
            "",
            "k-sub",
            &ks,
            &[],
        ),
    )
    .await;
    assert_eq!(st, 403);

    // The owner cancels: allowed.
    let (st, b) = call(
        &e,
        signed_with(
            Method::DELETE,
            &format!("/v1/orders/{id}"),
            "",
            "k-a",
            &ka,
            &[],
        ),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(e.orders("demo"), 0);
}

fn withdrawal(address: &str) -> String {
    format!(r#"{{"asset":"BTC","amount":"0.1","address":"{address}"}}"#)
}

#[tokio::test]
async fn withdrawals_need_a_fresh_totp_code_once_and_an_allow_listed_address() {
    let e = env_routes(ROUTES, POLICY, None).await;
    let seed = totp::generate_secret(totp::TotpAlgorithm::Sha1).unwrap();
    e.accts.put("demo", None, 2, &[ADDRESS]);
    e.accts.enrol("demo", &seed);
    let k = keyed(&e, "k-treasury", "demo", &["read", "withdraw"]);
    let withdrawals = || e.ex.with_engine(|x| x.withdrawals().len());

    // Without MFA: MFA_REQUIRED, nothing reaches the exchange.
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/withdrawals",
            &withdrawal(ADDRESS),
            "k-treasury",
            &k,
            &[],
        ),
    )
    .await;
    assert_eq!((st, b["code"].as_str()), (401, Some("MFA_REQUIRED")), "{b}");
    assert_eq!(withdrawals(), 0);

    // A valid code, covered by the signature: reaches the exchange.
    let secs = u64::try_from(now_ms() / 1000).unwrap();
    let code = totp::code_at(&seed, &TotpParams::default(), secs);
    let mfa = format!("totp={code}");
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/withdrawals",
            &withdrawal(ADDRESS),
            "k-treasury",
            &k,
            &[("rampart-mfa", &mfa)],
        ),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(withdrawals(), 1);

    // The same code again: MFA_INVALID.
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/withdrawals",
            &withdrawal(ADDRESS),
            "k-treasury",
            &k,
            &[("rampart-mfa", &mfa)],
        ),
    )
    .await;
    assert_eq!((st, b["code"].as_str()), (401, Some("MFA_INVALID")), "{b}");
    assert_eq!(withdrawals(), 1);

    // A wrong code: MFA_INVALID.
    let wrong = format!("totp={:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/withdrawals",
            &withdrawal(ADDRESS),
            "k-treasury",
            &k,
            &[("rampart-mfa", &wrong)],
        ),
    )
    .await;
    assert_eq!((st, b["code"].as_str()), (401, Some("MFA_INVALID")), "{b}");

    // An uncovered header is not a proof.
    let mut req = signed_with(
        Method::POST,
        "/v1/withdrawals",
        &withdrawal(ADDRESS),
        "k-treasury",
        &k,
        &[],
    );
    req.headers_mut()
        .insert("rampart-mfa", HeaderValue::from_static("totp=000000"));
    let (st, b) = call(&e, req).await;
    assert_eq!((st, b["code"].as_str()), (401, Some("MFA_REQUIRED")), "{b}");

    // A step-up token from /v1/mfa/verify (next step's code: the current one is spent).
    let next = totp::code_at(&seed, &TotpParams::default(), secs + 30);
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/mfa/verify",
            &format!(r#"{{"code":"{next}"}}"#),
            "k-treasury",
            &k,
            &[],
        ),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let token = format!("token={}", b["token"].as_str().unwrap());
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/withdrawals",
            &withdrawal(ADDRESS),
            "k-treasury",
            &k,
            &[("rampart-mfa", &token)],
        ),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(withdrawals(), 2);

    // An address not on the account's list: refused by policy even with MFA.
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/withdrawals",
            &withdrawal("bc1qattacker"),
            "k-treasury",
            &k,
            &[("rampart-mfa", &token)],
        ),
    )
    .await;
    assert_eq!(
        (st, b["code"].as_str()),
        (403, Some("FORBIDDEN_BY_POLICY")),
        "{b}"
    );
    assert_eq!(withdrawals(), 2);

    // Another key cannot use the token.
    let other = keyed(&e, "k-other", "demo", &["read", "withdraw"]);
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/withdrawals",
            &withdrawal(ADDRESS),
            "k-other",
            &other,
            &[("rampart-mfa", &token)],
        ),
    )
    .await;
    assert_eq!((st, b["code"].as_str()), (401, Some("MFA_INVALID")), "{b}");
}

const PRETRADE: &str = r#"
[pretrade]
reference_refresh = "off"
[pretrade.defaults]
max_qty = "5"
max_notional = "200000"
collar_pct = "5"
max_open_orders = 2
order_types = ["limit"]
duplicate_window = "10m"
[pretrade.fixed_prices]
"BTC-USD" = "65000"
"#;

#[tokio::test]
async fn pre_trade_limits_refuse_bad_orders_before_the_exchange() {
    let e = env_routes(ROUTES, PRETRADE, None).await;
    let k = keyed(&e, "k-pt", "demo", &["read", "trade"]);
    let place = |body: String| signed_with(Method::POST, "/v1/orders", &body, "k-pt", &k, &[]);
    let cases = [
        (order_body("BTC-USD", "50", "65000.00", "q1"), "max_qty"),
        (order_body("BTC-USD", "4", "65000.00", "n1"), "max_notional"),
        (order_body("BTC-USD", "0.01", "80000.00", "c1"), "price_collar"),
        (order_body("BTC-USD", "0.01", "50000.00", "c2"), "price_collar"),
        (
            r#"{"symbol":"BTC-USD","side":"buy","type":"market","qty":"0.01","client_order_id":"m1"}"#.to_owned(),
            "order_type",
        ),
    ];
    for (body, limit) in cases {
        let (st, b) = call(&e, place(body.clone())).await;
        assert_eq!(
            (st, b["code"].as_str()),
            (422, Some("RISK_LIMIT")),
            "{body}: {b}"
        );
        assert_eq!(b["limit"], limit, "{body}: {b}");
    }
    assert_eq!(e.orders("demo"), 0, "no refused order reached the exchange");

    // Two resting orders are the most; a cancel frees a slot.
    let (st, b) = call(&e, place(order_body("BTC-USD", "0.01", "64000.00", "o1"))).await;
    assert_eq!(st, 201, "{b}");
    let first = b["id"].as_str().unwrap().to_owned();
    let (st, _) = call(&e, place(order_body("BTC-USD", "0.01", "64000.00", "o2"))).await;
    assert_eq!(st, 201);
    let (st, b) = call(&e, place(order_body("BTC-USD", "0.01", "64000.00", "o3"))).await;
    assert_eq!(
        (st, b["limit"].as_str()),
        (422, Some("max_open_orders")),
        "{b}"
    );
    let (st, _) = call(
        &e,
        signed_with(
            Method::DELETE,
            &format!("/v1/orders/{first}"),
            "",
            "k-pt",
            &k,
            &[],
        ),
    )
    .await;
    assert_eq!(st, 200);
    let (st, b) = call(&e, place(order_body("BTC-USD", "0.01", "64000.00", "o3"))).await;
    assert_eq!(st, 201, "{b}");

    // A client order id seen within the window is a duplicate.
    let (st, b) = call(&e, place(order_body("BTC-USD", "0.01", "64000.00", "o1"))).await;
    assert_eq!(
        (st, b["limit"].as_str()),
        (422, Some("duplicate_client_order_id")),
        "{b}"
    );
    assert_eq!(e.orders("demo"), 2);

    // An order closed behind the gateway's back (a fill, a cancel from
    // another channel) keeps its slot until the account lists its orders.
    let resting = e.ex.with_engine(|x| x.open_orders("demo").unwrap()[0].id);
    e.ex.cancel_order("demo", resting).unwrap();
    let (st, b) = call(&e, place(order_body("BTC-USD", "0.01", "64000.00", "o4"))).await;
    assert_eq!(
        (st, b["limit"].as_str()),
        (422, Some("max_open_orders")),
        "{b}"
    );
    let (st, _) = call(
        &e,
        signed_with(Method::GET, "/v1/orders", "", "k-pt", &k, &[]),
    )
    .await;
    assert_eq!(st, 200);
    let (st, b) = call(&e, place(order_body("BTC-USD", "0.01", "64000.00", "o4"))).await;
    assert_eq!(st, 201, "reconciled from the open-order list: {b}");
}

#[tokio::test]
async fn kill_switch_cancels_open_orders_upstream_when_configured() {
    let data = tempfile::tempdir().unwrap();
    let extra = format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[storage]\ndata_dir = \"{}\"\n\n[kill_switch]\ncancel_all = true\n",
        data.path().display()
    );
    let e = env_routes(ROUTES, &extra, None).await;
    let k = keyed(&e, "k-ks", "demo", &["read", "trade"]);
    for cid in ["ks1", "ks2"] {
        let (st, b) = place_order(
            &e,
            "k-ks",
            &k,
            &order_body("BTC-USD", "0.01", "64000.00", cid),
        )
        .await;
        assert_eq!(st, 201, "{b}");
    }
    let k2 = keyed(&e, "k-ks2", "demo2", &["read", "trade"]);
    let (st, _) = place_order(
        &e,
        "k-ks2",
        &k2,
        &order_body("BTC-USD", "0.01", "64000.00", "other"),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(e.orders("demo"), 2);
    let admin = e._g.admin_addr.unwrap();
    let (st, body) = admin_post(
        &e.pki,
        admin,
        "/v1/kill-switch?target=account:demo&reason=runaway",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"cancel_all\""), "{body}");
    assert_eq!(
        e.orders("demo"),
        0,
        "cancel-all reached the exchange: {body}"
    );
    assert_eq!(e.orders("demo2"), 1, "other accounts keep their orders");
    let (st, b) = place_order(
        &e,
        "k-ks",
        &k,
        &order_body("BTC-USD", "0.01", "64000.00", "ks3"),
    )
    .await;
    assert_eq!((st, b["code"].as_str()), (403, Some("KILL_SWITCH")), "{b}");
    let _ = Arc::new(());
}

#[tokio::test]
async fn cancel_on_disconnect_cancels_the_sessions_orders_when_the_websocket_drops() {
    let routes = format!(
        "{ROUTES}\n[[routes]]\nmethod = \"GET\"\npath = \"/v1/stream\"\nupstream = \"up\"\naction = \"StreamEvents\"\nscope = \"read\"\n"
    );
    let e = env_routes(&routes, "", None).await;
    let k = keyed(&e, "k-cod", "demo", &["read", "trade"]);
    let ro = keyed(&e, "k-cod-ro", "demo", &["read"]);
    let upgrade = |key_id: &str, sk: &SigningKey, mode: &str| {
        let r = signed_with(
            Method::GET,
            "/v1/stream",
            "",
            key_id,
            sk,
            &[("rampart-cancel-on-disconnect", mode)],
        );
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = "wss://localhost/v1/stream".into_client_request().unwrap();
        for (n, v) in r.headers() {
            req.headers_mut().insert(n.clone(), v.clone());
        }
        req
    };
    // A read-only key may not ask for it.
    let tls = tls_connect(&e.pki, e.addr, &[b"http/1.1"]).await.unwrap();
    let err = tokio_tungstenite::client_async(upgrade("k-cod-ro", &ro, "key"), tls).await;
    assert!(
        err.is_err(),
        "a read-only key cannot arm cancel-on-disconnect"
    );

    let tls = tls_connect(&e.pki, e.addr, &[b"http/1.1"]).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(upgrade("k-cod", &k, "key"), tls)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for cid in ["c1", "c2"] {
        let (st, b) = place_order(
            &e,
            "k-cod",
            &k,
            &order_body("BTC-USD", "0.01", "64000.00", cid),
        )
        .await;
        assert_eq!(st, 201, "{b}");
    }
    // Another key's order of the same account is not the session's.
    let other = keyed(&e, "k-cod-2", "demo", &["read", "trade"]);
    let (st, _) = place_order(
        &e,
        "k-cod-2",
        &other,
        &order_body("BTC-USD", "0.01", "64000.00", "c3"),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(e.orders("demo"), 3);
    ws.close(None).await.unwrap();
    drop(ws);
    let mut left = 3;
    for _ in 0..50 {
        left = e.orders("demo");
        if left == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        left, 1,
        "the session's two orders were cancelled, the other key's stayed"
    );
}

#[tokio::test]
async fn a_keys_own_limits_apply_on_top_of_the_configured_ones() {
    let e = env_routes(ROUTES, PRETRADE, None).await;
    let (sk, km) = hmac_key();
    let mut r = record("k-small", "demo", Scheme::Rfc9421HmacSha256, km);
    r.order_limits = rampart_auth::KeyOrderLimits {
        max_qty: Some("1".into()),
        max_notional: Some("1000".into()),
        max_open_orders: Some(1),
    };
    e.add(r);
    let place = |body: String| signed_with(Method::POST, "/v1/orders", &body, "k-small", &sk, &[]);
    let (st, b) = call(&e, place(order_body("BTC-USD", "2", "64000.00", "k1"))).await;
    assert_eq!(
        (st, b["limit"].as_str(), b["level"].as_str()),
        (422, Some("max_qty"), Some("key")),
        "{b}"
    );
    let (st, b) = call(&e, place(order_body("BTC-USD", "0.1", "64000.00", "k2"))).await;
    assert_eq!(
        (st, b["limit"].as_str(), b["level"].as_str()),
        (422, Some("max_notional"), Some("key")),
        "{b}"
    );
    let (st, b) = call(&e, place(order_body("BTC-USD", "0.01", "64000.00", "k3"))).await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = call(&e, place(order_body("BTC-USD", "0.01", "64000.00", "k4"))).await;
    assert_eq!(
        (st, b["limit"].as_str(), b["level"].as_str()),
        (422, Some("max_open_orders"), Some("key")),
        "{b}"
    );
    assert_eq!(e.orders("demo"), 1);
}

#[tokio::test]
async fn address_book_changes_need_mfa_and_new_addresses_wait_for_the_delay() {
    let e = env_routes(ROUTES, POLICY, None).await;
    let seed = totp::generate_secret(totp::TotpAlgorithm::Sha1).unwrap();
    e.accts.put("demo", None, 2, &[ADDRESS]);
    e.accts.enrol("demo", &seed);
    let k = keyed(&e, "k-book", "demo", &["read", "withdraw"]);
    let add = r#"{"address":"bc1qnewaddress"}"#;
    // Without MFA: refused, nothing changed.
    let (st, b) = call(
        &e,
        signed_with(Method::POST, "/v1/address-book", add, "k-book", &k, &[]),
    )
    .await;
    assert_eq!((st, b["code"].as_str()), (401, Some("MFA_REQUIRED")), "{b}");
    let secs = u64::try_from(now_ms() / 1000).unwrap();
    let code = format!(
        "totp={}",
        totp::code_at(&seed, &TotpParams::default(), secs)
    );
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/address-book",
            add,
            "k-book",
            &k,
            &[("rampart-mfa", &code)],
        ),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let usable = b["usable_from_ms"].as_i64().unwrap();
    assert!(
        usable > now_ms() + 23 * 3600 * 1000,
        "the default delay is 24h: {b}"
    );
    let (st, b) = call(
        &e,
        signed_with(Method::GET, "/v1/address-book", "", "k-book", &k, &[]),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["addresses"][0]["address"], "bc1qnewaddress", "{b}");
    // Not usable yet: a withdrawal to it is refused by policy, even with MFA.
    let next = format!(
        "totp={}",
        totp::code_at(&seed, &TotpParams::default(), secs + 30)
    );
    let (st, b) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/withdrawals",
            &withdrawal("bc1qnewaddress"),
            "k-book",
            &k,
            &[("rampart-mfa", &next)],
        ),
    )
    .await;
    assert_eq!(
        (st, b["code"].as_str()),
        (403, Some("FORBIDDEN_BY_POLICY")),
        "{b}"
    );
    assert_eq!(e.ex.with_engine(|x| x.withdrawals().len()), 0);
    // A read-only key cannot change the book.
    let ro = keyed(&e, "k-book-ro", "demo", &["read"]);
    let (st, b) = call(
        &e,
        signed_with(
            Method::DELETE,
            "/v1/address-book?address=bc1qnewaddress",
            "",
            "k-book-ro",
            &ro,
            &[],
        ),
    )
    .await;
    assert_eq!(
        (st, b["code"].as_str()),
        (403, Some("SCOPE_MISSING")),
        "{b}"
    );
}

#[tokio::test]
async fn every_authorization_refusal_is_audited_with_its_code_and_cause() {
    let w = Arc::new(HeldWriter::default());
    let sections = format!("{POLICY}{PRETRADE}");
    let e = env_routes(
        ROUTES,
        &sections,
        Some(auditor(
            w.clone(),
            rampart_core::config::AuditOnFull::Reject,
        )),
    )
    .await;
    e.accts.put("demo", None, 2, &[ADDRESS]);
    let ka = keyed(&e, "k-aud-a", "demo", &["read", "trade", "withdraw"]);
    let kb = keyed(&e, "k-aud-b", "demo2", &["read", "trade"]);
    let (st, b) = place_order(
        &e,
        "k-aud-a",
        &ka,
        &order_body("BTC-USD", "0.01", "64000.00", "au1"),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    // BOLA, MFA, Cedar, pre-trade.
    let (st, _) = call(
        &e,
        signed_with(
            Method::DELETE,
            &format!("/v1/orders/{id}"),
            "",
            "k-aud-b",
            &kb,
            &[],
        ),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(
        &e,
        signed_with(
            Method::POST,
            "/v1/withdrawals",
            &withdrawal(ADDRESS),
            "k-aud-a",
            &ka,
            &[],
        ),
    )
    .await;
    assert_eq!(st, 401);
    let (st, _) = place_order(
        &e,
        "k-aud-a",
        &ka,
        &order_body("DOGE-USD", "1", "1.00", "au2"),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = place_order(
        &e,
        "k-aud-a",
        &ka,
        &order_body("BTC-USD", "50", "64000.00", "au3"),
    )
    .await;
    assert_eq!(st, 422);
    let evs = w.events();
    let authz: Vec<_> = evs
        .iter()
        .filter(|e| e.event_type == "authz.decision")
        .collect();
    let find = |code: &str| {
        authz
            .iter()
            .find(|e| e.reason.as_deref() == Some(code))
            .unwrap_or_else(|| panic!("no authz.decision with {code}: {authz:?}"))
    };
    let bola = find("FORBIDDEN_BY_POLICY");
    assert_eq!(bola.account.as_deref(), Some("demo2"));
    let mfa = find("MFA_REQUIRED");
    assert_eq!(mfa.action, "Withdraw");
    let risk = find("RISK_LIMIT");
    assert!(
        format!("{:?}", risk.payload).contains("max_qty"),
        "the audited refusal names the limit: {risk:?}"
    );
    let denied_by_cedar = authz
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FORBIDDEN_BY_POLICY"))
        .count();
    assert!(
        denied_by_cedar >= 2,
        "BOLA and the unknown instrument: {authz:?}"
    );
}
