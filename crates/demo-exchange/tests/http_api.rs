//! HTTP API integration tests over a real socket.
//!
//! The seeded BTC-USD book (market maker `mm`) is:
//! asks 65010 ×0.5, 65020 ×1, 65030 ×1.5, 65040 ×2, 65050 ×2.5;
//! bids 64990 ×0.5, 64980 ×1, 64970 ×1.5, 64960 ×2, 64950 ×2.5.
//! `demo` and `demo2` start with 10 BTC, 100 ETH, 1,000,000 USD.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

mod common;

use common::Server;
use serde_json::{json, Value};

fn levels(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l[0].as_str().unwrap().to_string(),
                l[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn lv(p: &str, q: &str) -> (String, String) {
    (p.to_string(), q.to_string())
}

fn s(p: &str) -> String {
    p.to_string()
}

#[tokio::test]
async fn health_time_and_markets() {
    let srv = Server::start().await;
    let r = srv.get("/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let t = srv.get("/v1/time").await.json()["server_time_ms"]
        .as_u64()
        .unwrap();
    assert!(t >= before && t < before + 10_000, "{t} vs {before}");

    let r = srv.get("/v1/markets").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let markets = r.json();
    let by_sym = |sym: &str| {
        markets
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["symbol"] == sym)
            .unwrap_or_else(|| panic!("{sym} missing"))
            .clone()
    };
    assert_eq!(markets.as_array().unwrap().len(), 4);
    let btc = by_sym("BTC-USD");
    assert_eq!(btc["type"], "spot");
    assert_eq!(btc["base_asset"], "BTC");
    assert_eq!(btc["quote_asset"], "USD");
    assert_eq!(btc["tick_size"], "0.01");
    assert_eq!(btc["lot_size"], "0.0001");
    assert_eq!(by_sym("ETH-USD")["base_asset"], "ETH");
    let perp = by_sym("BTC-PERP");
    assert_eq!(perp["type"], "perpetual");
    assert_eq!(perp["settlement_asset"], "USD");
    assert_eq!(perp["underlying"], "BTC");
    let opt = by_sym("BTC-20261225-100000-C");
    assert_eq!(opt["type"], "option");
    assert_eq!(opt["option_type"], "call");
    assert_eq!(opt["strike"], "100000");
    assert_eq!(opt["expiry"], "2026-12-25");
    srv.stop().await;
}

#[tokio::test]
async fn book_depth_and_unknown_symbol() {
    let srv = Server::start().await;
    let b = srv.book("BTC-USD", 2).await;
    assert_eq!(b["symbol"], "BTC-USD");
    assert_eq!(
        levels(&b["bids"]),
        vec![lv("64990", "0.5"), lv("64980", "1")]
    );
    assert_eq!(
        levels(&b["asks"]),
        vec![lv("65010", "0.5"), lv("65020", "1")]
    );

    let full = srv.get("/v1/markets/ETH-USD/book").await.json();
    assert_eq!(levels(&full["asks"]).len(), 5);
    assert_eq!(levels(&full["asks"])[0], lv("3500.5", "5"));
    // Depth above the max is clamped, not an error.
    let r = srv.get("/v1/markets/BTC-USD/book?depth=1000").await;
    assert_eq!(r.status, 200);
    assert_eq!(levels(&r.json()["bids"]).len(), 5);

    srv.get("/v1/markets/BTC-USD/book?depth=0")
        .await
        .expect_error(400, "invalid_query");
    srv.get("/v1/markets/BTC-USD/book?depth=abc")
        .await
        .expect_error(400, "invalid_query");
    srv.get("/v1/markets/DOGE-USD/book")
        .await
        .expect_error(404, "unknown_symbol");
    srv.get("/v1/nope").await.expect_error(404, "not_found");
    srv.stop().await;
}

#[tokio::test]
async fn full_fill_moves_exact_balances() {
    let srv = Server::start().await;
    let r = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65010.00",
                   "client_order_id":"abc-123","time_in_force":"gtc"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let o = r.json();
    assert!(o["id"].is_string());
    assert_eq!(o["client_order_id"], "abc-123");
    assert_eq!(o["status"], "filled");
    assert_eq!(o["filled_qty"], "0.5");
    assert_eq!(o["remaining"], "0");
    assert_eq!(o["avg_price"], "65010");
    let fills = o["fills"].as_array().unwrap();
    assert_eq!(fills.len(), 1);
    assert_eq!(fills[0]["price"], "65010");
    assert_eq!(fills[0]["qty"], "0.5");
    assert_eq!(fills[0]["taker_order_id"], o["id"]);
    assert!(fills[0]["maker_order_id"].is_string());
    assert!(fills[0]["trade_id"].is_string());

    // 0.5 * 65010 = 32505
    assert_eq!(srv.balance("demo", "USD").await, (s("967495"), s("0")));
    assert_eq!(srv.balance("demo", "BTC").await, (s("10.5"), s("0")));
    // Market maker: 7.5 BTC locked in asks before, 0.5 of it delivered.
    assert_eq!(srv.balance("mm", "BTC").await.1, "7");
    let acct = srv.get("/v1/account").await.json();
    assert_eq!(acct["account"], "demo");
    assert_eq!(acct["balances"]["ETH"]["available"], "100");
    assert!(acct["positions"].is_object());
    // Level consumed.
    let b = srv.book("BTC-USD", 1).await;
    assert_eq!(levels(&b["asks"]), vec![lv("65020", "1")]);
    srv.stop().await;
}

#[tokio::test]
async fn partial_fill_rests_remainder() {
    let srv = Server::start().await;
    let o = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"1","price":"65015"}),
        )
        .await
        .json();
    assert_eq!(o["status"], "partially_filled");
    assert_eq!(o["time_in_force"], "gtc");
    assert_eq!(o["filled_qty"], "0.5");
    assert_eq!(o["remaining"], "0.5");
    assert_eq!(o["avg_price"], "65010");

    let b = srv.book("BTC-USD", 2).await;
    assert_eq!(
        levels(&b["bids"]),
        vec![lv("65015", "0.5"), lv("64990", "0.5")]
    );
    assert_eq!(levels(&b["asks"])[0], lv("65020", "1"));

    let open = srv.get("/v1/orders").await.json();
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["id"], o["id"]);
    assert_eq!(open[0]["remaining"], "0.5");
    assert_eq!(open[0]["status"], "partially_filled");
    // Paid 32505; 0.5 * 65015 = 32507.5 locked.
    assert_eq!(
        srv.balance("demo", "USD").await,
        (s("934987.5"), s("32507.5"))
    );
    assert_eq!(srv.balance("demo", "BTC").await, (s("10.5"), s("0")));
    srv.stop().await;
}

#[tokio::test]
async fn price_time_priority_across_accounts() {
    let srv = Server::start().await;
    let sell = json!({"symbol":"BTC-USD","side":"sell","type":"limit","qty":"0.1","price":"65005"});
    let first = srv.order("demo2", sell.clone()).await.json();
    let second = srv.order("mm", sell).await.json();
    assert_eq!(first["status"], "new");
    assert_eq!(second["status"], "new");
    assert_eq!(
        levels(&srv.book("BTC-USD", 1).await["asks"]),
        vec![lv("65005", "0.2")]
    );

    let t = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.1","price":"65005"}),
        )
        .await
        .json();
    assert_eq!(t["status"], "filled");
    assert_eq!(t["fills"][0]["maker_order_id"], first["id"]);
    assert!(srv
        .get_as("demo2", "/v1/orders")
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty());
    let mm_open = srv.get_as("mm", "/v1/orders").await.json();
    assert!(mm_open
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == second["id"]));
    // demo2 sold 0.1 at 65005.
    assert_eq!(srv.balance("demo2", "USD").await, (s("1006500.5"), s("0")));
    assert_eq!(srv.balance("demo2", "BTC").await, (s("9.9"), s("0")));
    srv.stop().await;
}

#[tokio::test]
async fn market_order_sweeps_levels() {
    let srv = Server::start().await;
    let o = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"market","qty":"2"}),
        )
        .await
        .json();
    assert_eq!(o["status"], "filled");
    assert_eq!(o["type"], "market");
    assert_eq!(o["price"], Value::Null);
    let fills: Vec<(String, String)> = o["fills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["price"].as_str().unwrap().into(),
                f["qty"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        fills,
        vec![lv("65010", "0.5"), lv("65020", "1"), lv("65030", "0.5")]
    );
    // 32505 + 65020 + 32515 = 130040 over 2 BTC
    assert_eq!(o["avg_price"], "65020");
    assert_eq!(srv.balance("demo", "USD").await, (s("869960"), s("0")));
    assert_eq!(srv.balance("demo", "BTC").await, (s("12"), s("0")));
    assert_eq!(
        levels(&srv.book("BTC-USD", 1).await["asks"]),
        vec![lv("65030", "1")]
    );

    // Market sell sweeps bids.
    let o = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"sell","type":"market","qty":"1"}),
        )
        .await
        .json();
    assert_eq!(o["status"], "filled");
    // 0.5 @ 64990 + 0.5 @ 64980
    assert_eq!(o["avg_price"], "64985");
    assert_eq!(srv.balance("demo", "USD").await, (s("934945"), s("0")));
    srv.stop().await;
}

#[tokio::test]
async fn ioc_remainder_cancelled() {
    let srv = Server::start().await;
    let o = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"1","price":"65010","time_in_force":"ioc"}),
        )
        .await
        .json();
    assert_eq!(o["status"], "cancelled");
    assert_eq!(o["filled_qty"], "0.5");
    assert_eq!(o["remaining"], "0.5");
    assert!(srv
        .get("/v1/orders")
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(srv.balance("demo", "USD").await, (s("967495"), s("0")));
    assert_eq!(
        levels(&srv.book("BTC-USD", 1).await["bids"]),
        vec![lv("64990", "0.5")]
    );
    srv.stop().await;
}

#[tokio::test]
async fn fok_not_fillable_executes_nothing() {
    let srv = Server::start().await;
    let book_before = srv.book("BTC-USD", 100).await;
    let acct_before = srv.get("/v1/account").await.json();
    let mm_before = srv.get_as("mm", "/v1/account").await.json();
    let r = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"1","price":"65010","time_in_force":"fok"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let o = r.json();
    assert_eq!(o["status"], "cancelled");
    assert_eq!(o["filled_qty"], "0");
    assert_eq!(o["fills"], json!([]));
    assert_eq!(srv.book("BTC-USD", 100).await, book_before);
    assert_eq!(srv.get("/v1/account").await.json(), acct_before);
    assert_eq!(srv.get_as("mm", "/v1/account").await.json(), mm_before);

    // Fillable FOK goes through completely.
    let o = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"1.5","price":"65020","time_in_force":"fok"}),
        )
        .await
        .json();
    assert_eq!(o["status"], "filled");
    assert_eq!(o["filled_qty"], "1.5");
    srv.stop().await;
}

#[tokio::test]
async fn cancel_releases_locked_balance() {
    let srv = Server::start().await;
    let o = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"1","price":"60000.5"}),
        )
        .await
        .json();
    assert_eq!(o["status"], "new");
    assert_eq!(
        srv.balance("demo", "USD").await,
        (s("939999.5"), s("60000.5"))
    );
    let id = o["id"].as_str().unwrap();

    // Another account cannot see or cancel it.
    srv.delete_as("demo2", &format!("/v1/orders/{id}"))
        .await
        .expect_error(404, "order_not_found");

    let r = srv.delete_as("demo", &format!("/v1/orders/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(c["id"], id);
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["remaining"], "1");
    assert_eq!(srv.balance("demo", "USD").await, (s("1000000"), s("0")));
    assert!(srv
        .get("/v1/orders")
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty());

    srv.delete_as("demo", &format!("/v1/orders/{id}"))
        .await
        .expect_error(404, "order_not_found");
    srv.delete_as("demo", "/v1/orders/not-a-number")
        .await
        .expect_error(404, "order_not_found");

    // Sell side: base asset locked and released.
    let o = srv
        .order(
            "demo",
            json!({"symbol":"ETH-USD","side":"sell","type":"limit","qty":"2.5","price":"4000"}),
        )
        .await
        .json();
    assert_eq!(srv.balance("demo", "ETH").await, (s("97.5"), s("2.5")));
    let id = o["id"].as_str().unwrap();
    assert_eq!(
        srv.delete_as("demo", &format!("/v1/orders/{id}"))
            .await
            .status,
        200
    );
    assert_eq!(srv.balance("demo", "ETH").await, (s("100"), s("0")));
    srv.stop().await;
}

#[tokio::test]
async fn insufficient_balance_and_duplicates() {
    let srv = Server::start().await;
    let before = srv.get("/v1/account").await.json();
    srv.order(
        "demo",
        json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"100","price":"65000"}),
    )
    .await
    .expect_error(400, "insufficient_balance");
    srv.order(
        "demo",
        json!({"symbol":"BTC-USD","side":"sell","type":"limit","qty":"10.5","price":"70000"}),
    )
    .await
    .expect_error(400, "insufficient_balance");
    srv.order(
        "demo",
        json!({"symbol":"BTC-USD","side":"sell","type":"market","qty":"11"}),
    )
    .await
    .expect_error(400, "insufficient_balance");
    assert_eq!(srv.get("/v1/account").await.json(), before);

    let body = json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.1","price":"60000","client_order_id":"dup-1"});
    assert_eq!(srv.order("demo", body.clone()).await.status, 201);
    srv.order("demo", body.clone())
        .await
        .expect_error(409, "duplicate_client_order_id");
    // Another account may use the same client id.
    assert_eq!(srv.order("demo2", body).await.status, 201);
    srv.stop().await;
}

#[tokio::test]
async fn withdrawals_debit_balance() {
    let srv = Server::start().await;
    let r = srv
        .post(
            "/v1/withdrawals",
            r#"{"asset":"BTC","amount":"0.1","address":"bc1qdemoaddress"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let w = r.json();
    assert_eq!(w["status"], "pending");
    assert_eq!(w["asset"], "BTC");
    assert_eq!(w["amount"], "0.1");
    assert!(!w["withdrawal_id"].as_str().unwrap().is_empty());
    assert_eq!(srv.balance("demo", "BTC").await, (s("9.9"), s("0")));

    srv.post(
        "/v1/withdrawals",
        r#"{"asset":"BTC","amount":"9.91","address":"bc1q"}"#,
    )
    .await
    .expect_error(400, "insufficient_balance");
    srv.post(
        "/v1/withdrawals",
        r#"{"asset":"BTC","amount":"abc","address":"bc1q"}"#,
    )
    .await
    .expect_error(400, "invalid_decimal");
    srv.post(
        "/v1/withdrawals",
        r#"{"asset":"DOGE","amount":"1","address":"x"}"#,
    )
    .await
    .expect_error(400, "invalid_request");
    srv.post("/v1/withdrawals", r#"{"asset":"USD","amount":"1"}"#)
        .await
        .expect_error(400, "invalid_json");
    assert_eq!(srv.balance("demo", "BTC").await, (s("9.9"), s("0")));
    srv.stop().await;
}

#[tokio::test]
async fn bad_requests_are_json_errors() {
    let srv = Server::start().await;
    let post = |body: &'static str| srv.post("/v1/orders", body);
    post("{").await.expect_error(400, "invalid_json");
    post("").await.expect_error(400, "invalid_json");
    post("[]").await.expect_error(400, "invalid_json");
    post(r#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":0.5,"price":"65000"}"#)
        .await
        .expect_error(400, "invalid_json");
    post(r#"{"symbol":"BTC-USD","side":"hold","type":"limit","qty":"1","price":"65000"}"#)
        .await
        .expect_error(400, "invalid_json");
    post(r#"{"symbol":"BTC-USD","side":"buy","type":"stop","qty":"1","price":"65000"}"#)
        .await
        .expect_error(400, "invalid_json");
    for bad in [
        "1e5",
        "-1",
        "abc",
        "NaN",
        " 1",
        "0.0000000000000000001",
        "99999999999999999999999999999999999",
    ] {
        let body =
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":bad,"price":"65000"});
        srv.order("demo", body)
            .await
            .expect_error(400, "invalid_decimal");
    }
    let body = json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"1","price":"6.5e4"});
    srv.order("demo", body)
        .await
        .expect_error(400, "invalid_decimal");
    for (qty, price) in [
        ("0", "65000"),
        ("1", "0"),
        ("1", "65000.001"),
        ("0.00001", "65000"),
    ] {
        let body = json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":qty,"price":price});
        srv.order("demo", body)
            .await
            .expect_error(400, "invalid_request");
    }
    // Limit without price, market with price.
    srv.order(
        "demo",
        json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"1"}),
    )
    .await
    .expect_error(400, "invalid_request");
    srv.order(
        "demo",
        json!({"symbol":"BTC-USD","side":"buy","type":"market","qty":"1","price":"65000"}),
    )
    .await
    .expect_error(400, "invalid_request");
    srv.order(
        "demo",
        json!({"symbol":"DOGE-USD","side":"buy","type":"limit","qty":"1","price":"1"}),
    )
    .await
    .expect_error(400, "unknown_symbol");

    // Unknown account.
    srv.get_as("mallory", "/v1/account")
        .await
        .expect_error(404, "unknown_account");
    srv.get_as("mallory", "/v1/orders")
        .await
        .expect_error(404, "unknown_account");
    srv.order(
        "mallory",
        json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"1","price":"1"}),
    )
    .await
    .expect_error(404, "unknown_account");

    // Oversized body.
    let big = vec![b' '; 200 * 1024];
    let r = common::raw_request(srv.addr, "POST", "/v1/orders", None, Some(&big)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["code"], "invalid_body");

    // Wrong method.
    let r = common::request(srv.addr, "PUT", "/v1/orders", None, None).await;
    r.expect_error(405, "method_not_allowed");

    // The server is still fine and nothing was booked for demo.
    assert!(srv
        .get("/v1/orders")
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(srv.balance("demo", "USD").await, (s("1000000"), s("0")));
    srv.stop().await;
}

#[tokio::test]
async fn derivatives_positions_and_premium() {
    let srv = Server::start().await;
    let o = srv
        .order(
            "demo",
            json!({"symbol":"BTC-PERP","side":"buy","type":"market","qty":"1.5"}),
        )
        .await
        .json();
    assert_eq!(o["status"], "filled");
    // 1 @ 65005 + 0.5 @ 65010
    assert_eq!(o["avg_price"], "65006.6666666667");
    let acct = srv.get("/v1/account").await.json();
    assert_eq!(acct["positions"]["BTC-PERP"], "1.5");
    assert_eq!(acct["balances"]["USD"]["available"], "1000000");
    assert_eq!(acct["balances"]["BTC"]["available"], "10");
    let mm = srv.get_as("mm", "/v1/account").await.json();
    assert_eq!(mm["positions"]["BTC-PERP"], "-1.5");

    let o = srv
        .order(
            "demo",
            json!({"symbol":"BTC-20261225-100000-C","side":"buy","type":"limit","qty":"1","price":"2510"}),
        )
        .await
        .json();
    assert_eq!(o["status"], "filled");
    let acct = srv.get("/v1/account").await.json();
    assert_eq!(acct["positions"]["BTC-20261225-100000-C"], "1");
    assert_eq!(acct["balances"]["USD"]["available"], "997490");
    assert_eq!(acct["balances"]["USD"]["locked"], "0");
    assert_eq!(o["avg_price"], "2510");
    srv.stop().await;
}

#[tokio::test]
async fn two_listeners_share_one_exchange() {
    let ex = demo_exchange::Exchange::new_seeded();
    let a = Server::start_with(ex.clone()).await;
    let b = Server::start_with(ex).await;
    let o = a
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"1","price":"60000"}),
        )
        .await
        .json();
    let id = o["id"].as_str().unwrap().to_string();
    // Instance A goes away; B still has the order and cancels it.
    a.stop().await;
    let open = b.get("/v1/orders").await.json();
    assert_eq!(open[0]["id"], id.as_str());
    assert_eq!(
        b.delete_as("demo", &format!("/v1/orders/{id}"))
            .await
            .status,
        200
    );
    assert_eq!(b.balance("demo", "USD").await, (s("1000000"), s("0")));
    b.stop().await;
}

#[tokio::test]
async fn router_can_be_served_directly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = demo_exchange::router(demo_exchange::Exchange::new_seeded());
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let r = common::request(addr, "GET", "/v1/account", Some("mm"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["account"], "mm");
    task.abort();
}
