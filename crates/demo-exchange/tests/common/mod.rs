//! Shared helpers for the integration tests: start a server on
//! 127.0.0.1:0 and talk plain HTTP/1.1 to it over a raw TCP socket.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use demo_exchange::Exchange;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Server {
    pub addr: SocketAddr,
    pub ex: Arc<Exchange>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(Exchange::new_seeded()).await
    }

    pub async fn start_with(ex: Arc<Exchange>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(demo_exchange::serve(listener, ex.clone(), async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            ex,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    /// Signal shutdown and wait for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(TIMEOUT, h)
                .await
                .expect("serve did not stop in time")
                .unwrap()
                .unwrap();
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, None, None).await
    }

    pub async fn get_as(&self, account: &str, path: &str) -> Resp {
        request(self.addr, "GET", path, Some(account), None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        request(self.addr, "POST", path, None, Some(body)).await
    }

    pub async fn post_as(&self, account: &str, path: &str, body: &str) -> Resp {
        request(self.addr, "POST", path, Some(account), Some(body)).await
    }

    pub async fn delete_as(&self, account: &str, path: &str) -> Resp {
        request(self.addr, "DELETE", path, Some(account), None).await
    }

    /// POST an order as `account`, return the response.
    pub async fn order(&self, account: &str, body: Value) -> Resp {
        self.post_as(account, "/v1/orders", &body.to_string()).await
    }

    /// Balance `[available, locked]` of `asset` as strings.
    pub async fn balance(&self, account: &str, asset: &str) -> (String, String) {
        let r = self.get_as(account, "/v1/account").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let b = &r.json()["balances"][asset];
        (
            b["available"].as_str().unwrap().to_string(),
            b["locked"].as_str().unwrap().to_string(),
        )
    }

    pub async fn book(&self, symbol: &str, depth: usize) -> Value {
        let r = self
            .get(&format!("/v1/markets/{symbol}/book?depth={depth}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Assert a JSON error response with `status` and `code`; returns the body.
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert_eq!(v["code"], code, "{v}");
        v
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    account: Option<&str>,
    body: Option<&str>,
) -> Resp {
    raw_request(addr, method, path, account, body.map(str::as_bytes)).await
}

pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    account: Option<&str>,
    body: Option<&[u8]>,
) -> Resp {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(a) = account {
            head.push_str(&format!("Rampart-Account: {a}\r\n"));
        }
        if let Some(b) = body {
            head.push_str("Content-Type: application/json\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        if let Some(b) = body {
            // The server may answer (e.g. 413) and close before reading it all.
            let _ = s.write_all(b).await;
        }
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        parse_response(&buf)
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .expect("request timed out")
}

fn parse_response(buf: &[u8]) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw = &buf[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_str = std::str::from_utf8(&raw[..eol]).unwrap();
        let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[eol + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
    out
}
