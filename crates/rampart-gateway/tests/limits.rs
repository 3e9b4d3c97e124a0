//! Limits: oversized bodies and heads, slow header senders, idle connections
//! and the connection cap each get their own problem, and the connection is
//! closed rather than left hanging.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup(server_extra: &str) -> (Pki, rampart_gateway::Running) {
    let p = pki();
    let (ex, stop) = exchange(demo_exchange::Exchange::new_seeded()).await;
    std::mem::forget(stop);
    let g = start(&config(&p, &[ex], server_extra, EXCHANGE_ROUTES)).await;
    (p, g)
}

/// Reads until EOF (bounded in time): the gateway must close the connection.
async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("connection left hanging")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

fn code_of(raw: &str) -> String {
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("no json in {raw:?}"));
    v["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn oversized_body_declared_and_streamed() {
    let (p, g) = setup("").await;
    // Declared by Content-Length: refused before reading (route limit 1024).
    let big = "x".repeat(2000);
    let r = send(&p, g.addr, false, post_json("/v1/orders", &big)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), "PAYLOAD_TOO_LARGE");
    assert_eq!(r.json()["limit_bytes"], 1024);

    // Chunked with no length: cut off at the limit while reading.
    let mut tls = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    tls.write_all(b"POST /v1/orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..4 {
        tls.write_all(b"200\r\n").await.unwrap();
        tls.write_all(&[b'a'; 0x200]).await.unwrap();
        tls.write_all(b"\r\n").await.unwrap();
    }
    tls.flush().await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8_lossy(&buf[..n]);
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert_eq!(code_of(&raw), "PAYLOAD_TOO_LARGE");

    // Over HTTP/2 as well.
    let r = send(&p, g.addr, true, post_json("/v1/orders", &big)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn oversized_headers_first_and_later_requests() {
    let (p, g) = setup("max_header_bytes = 4096").await;
    // First head on a connection: answered by the listener's pre-read.
    let mut tls = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    let pad = "a".repeat(6000);
    tls.write_all(format!("GET /v1/time HTTP/1.1\r\nhost: x\r\nx-pad: {pad}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let raw = read_to_close(&mut tls).await;
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw}");
    assert_eq!(code_of(&raw), "HEADERS_TOO_LARGE");

    // Later request on a keep-alive connection, and HTTP/2: the pipeline's check.
    for h2 in [false, true] {
        let mut req = get("/v1/time");
        req.headers_mut()
            .insert("x-pad", "b".repeat(5000).parse().unwrap());
        match try_send(&p, g.addr, h2, req).await {
            Ok(r) => {
                assert_eq!(r.status, 431, "{:?} {:?}", r.headers, r.body);
                assert_eq!(r.code(), "HEADERS_TOO_LARGE");
            }
            Err(e) => panic!("h2={h2}: expected a problem, got {e}"),
        }
    }
    let mut tls = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    tls.write_all(b"GET /v1/time HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let pad = "c".repeat(4500);
    tls.write_all(format!("GET /v1/time HTTP/1.1\r\nhost: x\r\nx-pad: {pad}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    let raw = String::from_utf8_lossy(&buf[..n]);
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw}");
    assert_eq!(code_of(&raw), "HEADERS_TOO_LARGE");
}

#[tokio::test]
async fn slow_header_sender_gets_408_and_is_closed() {
    let (p, g) = setup("header_read_timeout = \"400ms\"").await;
    let mut tls = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    let t0 = Instant::now();
    // Slowloris: a byte at a time, never finishing the head.
    for b in b"GET /v1/time HTTP/1.1\r\nhost: x\r\nx-a: " {
        if tls.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let raw = read_to_close(&mut tls).await;
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert_eq!(code_of(&raw), "REQUEST_TIMEOUT");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn slow_body_gets_408() {
    let (p, g) = setup("request_timeout = \"300ms\"").await;
    let mut tls = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    tls.write_all(b"POST /v1/orders HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"sym")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8_lossy(&buf[..n]);
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert_eq!(code_of(&raw), "REQUEST_TIMEOUT");
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let (p, g) = setup("idle_timeout = \"300ms\"\nheader_read_timeout = \"5s\"").await;
    let mut tls = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    tls.write_all(b"GET /v1/time HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t0 = Instant::now();
    let _ = read_to_close(&mut tls).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn connection_cap_answers_overloaded() {
    let (p, g) = setup("max_connections = 2").await;
    let a = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    let b = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = send(&p, g.addr, false, get("/v1/time")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.code(), "OVERLOADED");
    assert_eq!(r.headers["retry-after"], "1");
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = send(&p, g.addr, false, get("/v1/time")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn body_under_limit_passes() {
    let (p, g) = setup("").await;
    let req = http::Request::post("/v1/orders")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.01","price":"1000.00","client_order_id":"ok-1","time_in_force":"gtc"}"#,
        )))
        .unwrap();
    let r = send(&p, g.addr, false, req).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.json()["client_order_id"], "ok-1");
}

#[tokio::test]
async fn idle_h2_connection_is_closed() {
    let (p, g) = setup("idle_timeout = \"300ms\"").await;
    let tls = tls_connect(&p, g.addr, &[b"h2"]).await.unwrap();
    let (mut s, c) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(c);
    let mut req = get("/v1/time");
    *req.uri_mut() = "https://localhost/v1/time".parse().unwrap();
    assert_eq!(s.send_request(req).await.unwrap().status(), 200);
    // The server closes the idle connection: the client's connection task ends.
    tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("idle h2 connection left open")
        .unwrap()
        .ok();
}

#[tokio::test]
async fn websocket_keeps_its_connection_slot() {
    let (p, g) = setup("max_connections = 1").await;
    let tls = tls_connect(&p, g.addr, &[b"http/1.1"]).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async("wss://localhost/v1/stream", tls)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The upgraded stream still holds the only slot.
    let r = send(&p, g.addr, false, get("/v1/time")).await;
    assert_eq!(r.code(), "OVERLOADED");
    assert!(r.headers.get("x-request-id").is_some());
    drop(ws);
    let t0 = Instant::now();
    loop {
        let r = send(&p, g.addr, false, get("/v1/time")).await;
        if r.status == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "slot not released after the stream closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
