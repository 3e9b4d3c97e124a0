//! Upstream pools: failover with ejection and re-admission, retries only where
//! safe, "outcome unknown" for orders, masking of upstream internals.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ORDER: &str = r#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.01","price":"1000.00","client_order_id":"x-1","time_in_force":"gtc"}"#;

/// A raw upstream that reads one full request per connection, counts it, and
/// then does what `behave` says with the socket.
#[derive(Clone, Copy)]
enum Behave {
    /// Accept the request, then drop the connection without answering.
    Drop,
    /// Answer 500 with revealing headers and a stack trace.
    LeakyError,
    /// Answer 200 with revealing headers.
    LeakyOk,
    /// Never answer.
    Hang,
}

async fn raw_upstream(behave: Behave) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(pos) = text.find("\r\n\r\n") {
                        let cl = text[..pos]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= pos + 4 + cl {
                            break;
                        }
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                match behave {
                    Behave::Drop => drop(s),
                    Behave::LeakyError => {
                        let body = "java.lang.NullPointerException at com.venue.core.OrderService(OrderService.java:42)";
                        let _ = s
                            .write_all(format!("HTTP/1.1 500 Internal Server Error\r\nserver: nginx/1.18.0\r\nx-powered-by: Spring\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes())
                            .await;
                    }
                    Behave::LeakyOk => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nserver: nginx/1.18.0\r\nx-powered-by: Spring\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                            .await;
                    }
                    Behave::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

const ROUTES: &str = r#"
[[routes]]
method = "POST"
path = "/v1/orders"
upstream = "up"
action = "PlaceOrder"
scope = "trade"

[[routes]]
method = "GET"
path = "/v1/orders"
upstream = "up"
action = "ListOrders"
scope = "read"

[[routes]]
method = "GET"
path = "/v1/time"
upstream = "up"
action = "GetTime"
scope = "public"
"#;

#[tokio::test]
async fn order_dropped_after_send_is_not_retried_outcome_unknown() {
    let p = pki();
    let (a, seen_a) = raw_upstream(Behave::Drop).await;
    let (b, seen_b) = raw_upstream(Behave::Drop).await;
    let g = start(&config(&p, &[a, b], "", ROUTES)).await;
    for h2 in [false, true] {
        seen_a.store(0, Ordering::SeqCst);
        seen_b.store(0, Ordering::SeqCst);
        let r = send(&p, g.addr, h2, post_json("/v1/orders", ORDER)).await;
        assert_eq!(r.status, 502);
        assert_eq!(r.code(), "UPSTREAM_UNAVAILABLE");
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("outcome is unknown"), "{detail}");
        assert_eq!(
            seen_a.load(Ordering::SeqCst) + seen_b.load(Ordering::SeqCst),
            1,
            "the order must reach the upstreams exactly once"
        );
    }
    // A safe GET is retried on the other endpoint.
    seen_a.store(0, Ordering::SeqCst);
    seen_b.store(0, Ordering::SeqCst);
    let r = send(&p, g.addr, false, get("/v1/orders")).await;
    assert_eq!(r.status, 502);
    assert_eq!(seen_a.load(Ordering::SeqCst), 1);
    assert_eq!(seen_b.load(Ordering::SeqCst), 1);
    assert!(!r.json()["detail"].as_str().unwrap().contains("outcome"));
}

#[tokio::test]
async fn order_timeout_is_outcome_unknown_and_not_retried() {
    let p = pki();
    let (a, seen_a) = raw_upstream(Behave::Hang).await;
    let (b, seen_b) = raw_upstream(Behave::Hang).await;
    let g = start(&config(
        &p,
        &[a, b],
        "",
        &ROUTES.replace(
            "scope = \"trade\"",
            "scope = \"trade\"\ntimeout = \"300ms\"",
        ),
    ))
    .await;
    let r = send(&p, g.addr, false, post_json("/v1/orders", ORDER)).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.code(), "UPSTREAM_TIMEOUT");
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("outcome is unknown"));
    assert_eq!(
        seen_a.load(Ordering::SeqCst) + seen_b.load(Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_retried_even_for_orders() {
    let p = pki();
    // A port with nothing listening: the connect fails, so the order provably
    // never left the gateway and may go to the next endpoint.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ex = demo_exchange::Exchange::new_seeded();
    let (live, stop) = exchange(ex).await;
    let g = start(&config(&p, &[dead, live], "", ROUTES)).await;
    for _ in 0..4 {
        let r = send(
            &p,
            g.addr,
            false,
            post_json(
                "/v1/orders",
                &ORDER.replace("x-1", &format!("x-{}", rand_id())),
            ),
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    }
    drop(stop);
}

fn rand_id() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test]
async fn upstream_internals_do_not_leak() {
    let p = pki();
    let (a, _) = raw_upstream(Behave::LeakyError).await;
    let g = start(&config(&p, &[a], "", ROUTES)).await;
    let r = send(&p, g.addr, false, post_json("/v1/orders", ORDER)).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.code(), "UPSTREAM_UNAVAILABLE");
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        !body.contains("java") && !body.contains("OrderService"),
        "{body}"
    );
    assert!(r.headers.get("server").is_none());
    assert!(r.headers.get("x-powered-by").is_none());

    let (b, _) = raw_upstream(Behave::LeakyOk).await;
    let g = start(&config(&p, &[b], "", ROUTES)).await;
    let r = send(&p, g.addr, true, get("/v1/time")).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("server").is_none());
    assert!(r.headers.get("x-powered-by").is_none());
    assert!(r.headers.get("rampart-server-time").is_some());
}

#[tokio::test]
async fn failover_ejects_dead_endpoint_and_readmits_it() {
    let p = pki();
    let ex = demo_exchange::Exchange::new_seeded();
    let (a, stop_a) = exchange(ex.clone()).await;
    let (b, _stop_b) = exchange(ex.clone()).await;
    let health = "[upstreams.up.health]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n[upstreams.up.passive]\nconsecutive_failures = 2\nejection = \"300ms\"\n";
    let g = start(&config(&p, &[a, b], "", &format!("{health}{ROUTES}"))).await;
    let pool = g.gateway.runtime().pools["up"].clone();
    let ep_a = pool
        .endpoints
        .iter()
        .find(|e| e.authority == a.to_string())
        .unwrap()
        .clone();

    // A stream of reads keeps succeeding while endpoint A dies.
    let mut stop_a = Some(stop_a);
    for i in 0..60 {
        if i == 10 {
            let _ = stop_a.take().unwrap().send(());
        }
        let r = send(&p, g.addr, i % 2 == 0, get("/v1/time")).await;
        assert_eq!(
            r.status,
            200,
            "request {i} failed: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !ep_a.available(),
        "dead endpoint must be ejected / unhealthy"
    );
    let a_served_while_dead = ep_a.requests.load(Ordering::SeqCst);

    // A comes back on the same port: health checks re-admit it.
    let l = TcpListener::bind(a).await.unwrap();
    let (_a2, _stop_a2) = exchange_on(l, ex.clone()).await;
    let t0 = std::time::Instant::now();
    while !ep_a.available() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "endpoint not re-admitted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it takes traffic again.
    for _ in 0..6 {
        assert_eq!(send(&p, g.addr, false, get("/v1/time")).await.status, 200);
    }
    assert!(ep_a.requests.load(Ordering::SeqCst) >= a_served_while_dead + 2);
}

#[tokio::test]
async fn reload_lets_in_flight_requests_finish_on_the_old_config() {
    let p = pki();
    // An upstream that answers after 400 ms.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(Duration::from_millis(400)).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"old\":true}")
                    .await;
            });
        }
    });
    let text = config(&p, &[slow], "", ROUTES);
    let g = start(&text).await;
    let (pk, addr) = (std::sync::Arc::new(p), g.addr);
    let pk2 = pk.clone();
    let inflight = tokio::spawn(async move { send(&pk2, addr, false, get("/v1/time")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // New config without the route: swapped while the request is in flight.
    let without_time = text.replace(
        "[[routes]]\nmethod = \"GET\"\npath = \"/v1/time\"\nupstream = \"up\"\naction = \"GetTime\"\nscope = \"public\"\n",
        "",
    );
    assert_ne!(without_time, text);
    let cfg = rampart_core::config::parse(&without_time, std::path::Path::new("/")).unwrap();
    g.gateway.reload(cfg).unwrap();

    let r = inflight.await.unwrap();
    assert_eq!(
        r.status, 200,
        "in-flight request must finish on the old config"
    );
    let r = send(&pk, addr, false, get("/v1/time")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "NOT_FOUND");
}
