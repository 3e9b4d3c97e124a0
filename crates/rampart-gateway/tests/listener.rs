//! TLS 1.3 only, ALPN h2 + http/1.1, WebSocket through the gateway, routing
//! problems, request ids and the headers every response carries.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::Message;

async fn setup() -> (Pki, rampart_gateway::Running) {
    let p = pki();
    let (ex, _stop) = exchange(demo_exchange::Exchange::new_seeded()).await;
    std::mem::forget(_stop);
    let g = start(&config(&p, &[ex], "", EXCHANGE_ROUTES)).await;
    (p, g)
}

#[tokio::test]
async fn tls13_accepted_tls12_refused() {
    let (p, g) = setup().await;
    let tls = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    let tcp = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let err = tokio_rustls::TlsConnector::from(client_config(&p, &[b"http/1.1"], true))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect_err("a TLS 1.2-only client must be refused");
    let msg = err.to_string().to_lowercase();
    assert!(
        msg.contains("protocol") || msg.contains("version") || msg.contains("alert"),
        "{msg}"
    );
}

#[tokio::test]
async fn h2_and_http1_both_serve_routes() {
    let (p, g) = setup().await;
    for h2 in [false, true] {
        let r = send(&p, g.addr, h2, get("/v1/markets")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.version,
            if h2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            }
        );
        let symbols: Vec<String> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["symbol"].as_str().unwrap().to_owned())
            .collect();
        for s in ["BTC-USD", "ETH-USD", "BTC-PERP"] {
            assert!(symbols.iter().any(|x| x == s), "{symbols:?}");
        }
        let t: u64 = r.headers["rampart-server-time"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(t > 1_700_000_000_000);
        assert_eq!(r.headers["x-request-id"].len(), 32);
        // Path parameters reach the upstream.
        let b = send(&p, g.addr, h2, get("/v1/markets/BTC-USD/book")).await;
        assert_eq!(b.status, 200);
        assert_eq!(b.json()["symbol"], "BTC-USD");
    }
}

#[tokio::test]
async fn not_found_and_method_not_allowed_are_problems() {
    let (p, g) = setup().await;
    let r = send(&p, g.addr, false, get("/v1/nope")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "NOT_FOUND");
    let v = r.json();
    assert_eq!(v["type"], "urn:rampart:problem:not-found");
    assert_eq!(v["request_id"], r.headers["x-request-id"].to_str().unwrap());
    assert!(r.headers.get("rampart-server-time").is_some());

    let req = http::Request::delete("/v1/markets")
        .body(Default::default())
        .unwrap();
    let r = send(&p, g.addr, true, req).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "METHOD_NOT_ALLOWED");
    assert_eq!(r.headers["allow"], "GET");

    // HEAD gets the status and headers of the problem, no body, on both protocols.
    for h2 in [false, true] {
        let req = http::Request::head("/v1/markets")
            .body(Default::default())
            .unwrap();
        let r = send(&p, g.addr, h2, req).await;
        assert_eq!(r.status, 405);
        assert!(r.body.is_empty());
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }

    let r = send(&p, g.addr, false, get("/v1/markets/..%2F..%2Fadmin/book")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "REQUEST_BLOCKED");
}

#[tokio::test]
async fn request_id_kept_when_valid_replaced_when_not() {
    let (p, g) = setup().await;
    let mut req = get("/v1/time");
    req.headers_mut()
        .insert("x-request-id", "client-abc-123".parse().unwrap());
    let r = send(&p, g.addr, false, req).await;
    assert_eq!(r.headers["x-request-id"], "client-abc-123");

    let mut req = get("/v1/time");
    req.headers_mut()
        .insert("x-request-id", "bad id\twith spaces".parse().unwrap());
    let r = send(&p, g.addr, false, req).await;
    assert_ne!(r.headers["x-request-id"], "bad id\twith spaces");
    assert_eq!(r.headers["x-request-id"].len(), 32);
}

#[tokio::test]
async fn client_cannot_spoof_identity_headers() {
    let (p, g) = setup().await;
    // The demo exchange trusts X-Rampart-Account (set by the gateway only).
    let mut req = get("/v1/account");
    req.headers_mut()
        .insert("x-rampart-account", "mm".parse().unwrap());
    let r = send(&p, g.addr, false, req).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["account"],
        "demo",
        "spoofed identity header reached the upstream"
    );
}

#[tokio::test]
async fn websocket_round_trip_through_gateway() {
    let (p, g) = setup().await;
    let tls = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("wss://localhost/v1/stream", tls)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().get("rampart-server-time").is_some());
    ws.send(Message::Text(r#"{"op":"ping"}"#.into()))
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => return t.to_string(),
                _ => continue,
            }
        }
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&msg).unwrap();
    assert_eq!(v["type"], "pong");

    // An order placed through the gateway produces an event on the stream.
    let r = send(
        &p,
        g.addr,
        true,
        post_json(
            "/v1/orders",
            r#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.01","price":"1000.00","client_order_id":"ws-1","time_in_force":"gtc"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "order" {
                    return v;
                }
            }
        }
    })
    .await
    .unwrap();
    assert!(ev.to_string().contains("ws-1"), "{ev}");
    ws.close(None).await.unwrap();
}
