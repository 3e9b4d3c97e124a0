//! Test harness: a throwaway CA and server certificate, a gateway started from
//! TOML text on port 0, and TLS clients (HTTP/1.1, HTTP/2, raw).
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub ca_der: CertificateDer<'static>,
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let sp = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = sp.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let p = Pki {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
        ca: dir.path().join("ca.pem"),
        ca_der: ca_cert.der().clone(),
        dir,
    };
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    std::fs::write(&p.ca, ca_cert.pem()).unwrap();
    p
}

/// Gateway config with one pool `up` over `endpoints` and the given extra text
/// (routes etc.). `{cert}`/`{key}` are filled in.
pub fn config(pki: &Pki, endpoints: &[SocketAddr], server_extra: &str, rest: &str) -> String {
    let eps = endpoints
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server_extra}
[server.tls]
cert = "{cert}"
key = "{key}"

[log]
access_log = false
level = "warn"

[upstreams.up]
endpoints = [{eps}]
connect_timeout = "300ms"
timeout = "2s"
retries = 1
{rest}
"#,
        cert = pki.cert.display(),
        key = pki.key.display(),
    )
}

pub const EXCHANGE_ROUTES: &str = r#"
[[routes]]
method = "GET"
path = "/v1/time"
upstream = "up"
action = "GetTime"
scope = "public"

[[routes]]
method = "GET"
path = "/v1/markets"
upstream = "up"
action = "ListMarkets"
scope = "public"

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

[[routes]]
method = "POST"
path = "/v1/orders"
upstream = "up"
action = "PlaceOrder"
scope = "trade"
max_body_bytes = 1024

[[routes]]
method = "GET"
path = "/v1/orders"
upstream = "up"
action = "ListOrders"
scope = "read"

[[routes]]
method = "GET"
path = "/v1/stream"
upstream = "up"
action = "Stream"
scope = "read"
"#;

/// Starts a gateway without authentication services. The spine tests are
/// not about authentication: every route is made public here (without
/// services a non-public route is refused, fail closed; tests/auth.rs
/// covers that and authentication itself).
pub async fn start(text: &str) -> rampart_gateway::Running {
    let mut cfg = rampart_core::config::parse(text, std::path::Path::new("/")).unwrap();
    for r in &mut cfg.routes {
        r.scope = "public".to_owned();
    }
    rampart_gateway::start(cfg).await.unwrap()
}

/// Starts a demo exchange on an ephemeral port; returns its address and a stop handle.
pub async fn exchange(
    ex: Arc<demo_exchange::Exchange>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    exchange_on(l, ex).await
}

pub async fn exchange_on(
    l: tokio::net::TcpListener,
    ex: Arc<demo_exchange::Exchange>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = demo_exchange::serve(l, ex, async move {
            let _ = rx.await;
        })
        .await;
    });
    (addr, tx)
}

pub fn client_config(pki: &Pki, alpn: &[&[u8]], tls12_only: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(c)
}

pub async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(client_config(pki, alpn, false))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not json ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn code(&self) -> String {
        assert_eq!(
            self.headers.get("content-type").unwrap(),
            "application/problem+json",
            "not a problem: {:?}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        v["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code in {v}"))
            .to_owned()
    }
}

/// One request over a fresh TLS connection; `h2` picks the protocol by ALPN.
pub async fn send(pki: &Pki, addr: SocketAddr, h2: bool, req: Request<Full<Bytes>>) -> Resp {
    try_send(pki, addr, h2, req).await.unwrap()
}

/// [`send`] from a chosen local address (any of 127.0.0.0/8 works on
/// Linux loopback): many distinct client IPs on one machine.
pub async fn send_from(
    pki: &Pki,
    addr: SocketAddr,
    local: std::net::IpAddr,
    req: Request<Full<Bytes>>,
) -> Resp {
    try_send_from(pki, addr, Some(local), false, req)
        .await
        .unwrap()
}

pub async fn try_send(
    pki: &Pki,
    addr: SocketAddr,
    h2: bool,
    req: Request<Full<Bytes>>,
) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
    try_send_from(pki, addr, None, h2, req).await
}

pub async fn try_send_from(
    pki: &Pki,
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
    h2: bool,
    req: Request<Full<Bytes>>,
) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let tls = match local {
        None => tls_connect(pki, addr, alpn).await?,
        Some(ip) => {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(ip, 0))?;
            let tcp = sock.connect(addr).await?;
            TlsConnector::from(client_config(pki, alpn, false))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await?
        }
    };
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    assert_eq!(negotiated.as_deref(), alpn.first().copied());
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(c);
        let mut req = req;
        *req.uri_mut() = format!("https://localhost{}", req.uri()).parse()?;
        s.send_request(req).await?
    } else {
        let (mut s, c) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(c);
        let mut req = req;
        req.headers_mut().insert("host", "localhost".parse()?);
        s.send_request(req).await?
    };
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await??
        .to_bytes();
    Ok(Resp {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::new(Bytes::new())).unwrap()
}

pub fn post_json(path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}
pub mod authn;
