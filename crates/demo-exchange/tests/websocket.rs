//! WebSocket stream integration tests over a real socket.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

mod common;

use std::time::Duration;

use common::{Server, TIMEOUT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(srv: &Server, account: Option<&str>) -> Ws {
    let mut req = format!("ws://{}/v1/stream", srv.addr)
        .into_client_request()
        .unwrap();
    if let Some(a) = account {
        req.headers_mut()
            .insert("rampart-account", a.parse().unwrap());
    }
    let (ws, resp) = tokio::time::timeout(TIMEOUT, connect_async(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Next JSON text message (skipping protocol pings).
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("no message in time")
            .expect("stream ended")
            .expect("ws error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Round trip a ping; returns the messages received before the pong.
async fn ping(ws: &mut Ws) -> Vec<Value> {
    ws.send(Message::text(r#"{"op":"ping"}"#)).await.unwrap();
    let mut before = Vec::new();
    loop {
        let v = next_json(ws).await;
        if v["type"] == "pong" {
            return before;
        }
        before.push(v);
    }
}

#[tokio::test]
async fn ping_pong_round_trip() {
    let srv = Server::start().await;
    let mut ws = connect(&srv, None).await;
    ws.send(Message::text(r#"{"op":"ping"}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
    ws.send(Message::text(r#"{"op":"ping","id":42}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong","id":42}));
    ws.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "error");
    ws.send(Message::text(r#"{"op":"subscribe"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "error");
    // Still alive afterwards.
    assert!(ping(&mut ws).await.is_empty());
    ws.close(None).await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn fill_events_reach_both_sides_and_only_them() {
    let srv = Server::start().await;
    let mut demo = connect(&srv, None).await;
    let mut mm = connect(&srv, Some("mm")).await;
    let mut other = connect(&srv, Some("demo2")).await;
    // Sessions are subscribed once the handshake is done; a pong proves the loop runs.
    assert!(ping(&mut demo).await.is_empty());
    assert!(ping(&mut mm).await.is_empty());
    assert!(ping(&mut other).await.is_empty());

    let o = srv
        .order(
            "demo",
            json!({"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65010","client_order_id":"ws-1"}),
        )
        .await
        .json();
    assert_eq!(o["status"], "filled");
    let id = o["id"].as_str().unwrap();
    let maker_id = o["fills"][0]["maker_order_id"].as_str().unwrap();

    // Taker: a fill event then the order event.
    let fill = next_json(&mut demo).await;
    assert_eq!(fill["type"], "fill");
    assert_eq!(fill["account"], "demo");
    assert_eq!(fill["order_id"], id);
    assert_eq!(fill["client_order_id"], "ws-1");
    assert_eq!(fill["liquidity"], "taker");
    assert_eq!(fill["side"], "buy");
    assert_eq!(fill["symbol"], "BTC-USD");
    assert_eq!(fill["price"], "65010");
    assert_eq!(fill["qty"], "0.5");
    assert_eq!(fill["maker_order_id"], maker_id);
    assert_eq!(fill["trade_id"], o["fills"][0]["trade_id"]);
    let upd = next_json(&mut demo).await;
    assert_eq!(upd["type"], "order");
    assert_eq!(upd["order_id"], id);
    assert_eq!(upd["status"], "filled");
    assert_eq!(upd["filled_qty"], "0.5");

    // Maker side sees its fill as maker, and its order filled.
    let fill = next_json(&mut mm).await;
    assert_eq!(fill["type"], "fill");
    assert_eq!(fill["liquidity"], "maker");
    assert_eq!(fill["order_id"], maker_id);
    assert_eq!(fill["side"], "sell");
    assert_eq!(fill["qty"], "0.5");
    let upd = next_json(&mut mm).await;
    assert_eq!(upd["type"], "order");
    assert_eq!(upd["status"], "filled");

    // The uninvolved account got nothing.
    assert!(ping(&mut other).await.is_empty());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), other.next())
            .await
            .is_err(),
        "unexpected message for demo2"
    );
    srv.stop().await;
}

#[tokio::test]
async fn order_events_for_resting_and_cancel() {
    let srv = Server::start().await;
    let mut ws = connect(&srv, None).await;
    assert!(ping(&mut ws).await.is_empty());
    let o = srv
        .order(
            "demo",
            json!({"symbol":"ETH-USD","side":"buy","type":"limit","qty":"1","price":"3000"}),
        )
        .await
        .json();
    let id = o["id"].as_str().unwrap();
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["status"].as_str()),
        (Some("order"), Some("new"))
    );
    assert_eq!(ev["order_id"], id);
    assert_eq!(ev["price"], "3000");
    srv.delete_as("demo", &format!("/v1/orders/{id}")).await;
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["status"], "cancelled");
    assert_eq!(ev["remaining"], "1");
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_closes_streams_and_unknown_account_is_refused() {
    let srv = Server::start().await;
    let req = format!("ws://{}/v1/stream", srv.addr)
        .into_client_request()
        .map(|mut r| {
            r.headers_mut()
                .insert("rampart-account", "mallory".parse().unwrap());
            r
        })
        .unwrap();
    match connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 404)
        }
        other => panic!("expected HTTP 404, got {other:?}"),
    }

    // A plain GET (no upgrade) is a JSON error, not a hang.
    srv.get("/v1/stream")
        .await
        .expect_error(400, "websocket_required");

    let mut ws = connect(&srv, None).await;
    assert!(ping(&mut ws).await.is_empty());
    srv.stop().await;
    // After shutdown the session ends (close frame or EOF).
    let end = tokio::time::timeout(TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("stream not closed after shutdown");
    assert!(end.is_none() || end == Some(1001), "{end:?}");
}
