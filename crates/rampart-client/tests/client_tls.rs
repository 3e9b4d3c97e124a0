//! `Client` end to end against a local TLS server (loopback only) that
//! verifies every request with rampart-auth: HTTP/2 and HTTP/1.1 by ALPN,
//! TLS 1.3 only, the CA pinned, response limits, timeouts and the
//! server-time clock correction.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "test code"
)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{credentials_json, key_set, KeySet, Verifier};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_client::{system_now_ms, Client, ClientError, Credentials, MFA_HEADER};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

const ORDER: &[u8] = br#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}"#;

struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

/// A CA and a server certificate for `localhost` and `127.0.0.1`.
fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key_der: key.serialize_der(),
    }
}

struct ServerOptions {
    alpn: Vec<Vec<u8>>,
    tls12_only: bool,
    /// Added to the server's clock in `Rampart-Server-Time`.
    skew_ms: i64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            tls12_only: false,
            skew_ms: 0,
        }
    }
}

/// Answers every request with what it saw: the verified key, the version,
/// the path and body; 401 when the signature does not verify. `/big`
/// answers 64 KiB, `/slow` waits 5 s.
async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    verifier: Arc<Verifier>,
    skew_ms: i64,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get("host")
                .map(|h| h.to_str().unwrap().to_owned())
        })
        .unwrap_or_default()
        .to_ascii_lowercase();
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut builder = hyper::Response::builder().header(
        "rampart-server-time",
        (system_now_ms() + skew_ms).to_string(),
    );
    if pq == "/big" {
        return Ok(builder
            .body(Full::new(Bytes::from(vec![b'x'; 64 * 1024])))
            .unwrap());
    }
    if pq == "/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let verified = verifier.verify(
        &parts.method,
        &authority,
        &pq,
        &parts.headers,
        &body,
        system_now_ms(),
    );
    let (status, report) = match verified {
        Ok(claims) => (
            StatusCode::OK,
            json!({
                "key_id": claims.as_ref().map(|c| c.key_id.clone()),
                "scheme": claims.as_ref().map(|c| c.scheme.as_str()),
                "covers_mfa": claims.as_ref().is_some_and(|c| c.covers_mfa),
            }),
        ),
        Err(e) => (StatusCode::UNAUTHORIZED, json!({"error": e.to_string()})),
    };
    let mut report = report;
    report["version"] = json!(format!("{:?}", parts.version));
    report["authority"] = json!(authority);
    report["path"] = json!(pq);
    report["body"] = json!(String::from_utf8_lossy(&body));
    report["content_type"] = json!(parts
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned()));
    builder = builder
        .status(status)
        .header("content-type", "application/json");
    Ok(builder
        .body(Full::new(Bytes::from(report.to_string())))
        .unwrap())
}

/// Starts a TLS server on 127.0.0.1 (port chosen by the OS) in the
/// current runtime.
async fn start(pki: &Pki, verifier: Arc<Verifier>, options: ServerOptions) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if options.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            pki.chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone())),
        )
        .unwrap();
    config.alpn_protocols = options.alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let skew = options.skew_ms;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let verifier = verifier.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req| handle(req, verifier.clone(), skew));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

struct Setup {
    _dir: tempfile::TempDir,
    keys: KeySet,
    creds: Credentials,
    addr: SocketAddr,
}

async fn setup(options: ServerOptions) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let mut keys = key_set();
    let verifier = Arc::new(std::mem::replace(
        &mut keys.verifier,
        Verifier {
            keys: Default::default(),
        },
    ));
    let addr = start(&pki, verifier, options).await;
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let json = credentials_json(&keys, &format!("https://{addr}"), "ca.pem");
    let path = dir.path().join("demo-credentials.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let creds = Credentials::load(&path).unwrap();
    Setup {
        _dir: dir,
        keys,
        creds,
        addr,
    }
}

fn report(resp: &rampart_client::Response) -> Value {
    resp.json()
        .unwrap_or_else(|| panic!("not JSON: {:?}", resp.body))
}

#[tokio::test]
async fn every_scheme_is_verified_by_the_server_over_http2() {
    let s = setup(ServerOptions::default()).await;
    let client = Client::from_credentials(&s.creds).unwrap();
    assert_eq!(client.authority(), s.addr.to_string());

    // Public route: no signature.
    let resp = client
        .send(None, Method::GET, "/v1/markets", None, HeaderMap::new())
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.version, Version::HTTP_2);
    let r = report(&resp);
    assert_eq!(r["key_id"], Value::Null);
    assert_eq!(r["version"], "HTTP/2.0");

    for key in &s.creds.keys {
        let resp = client
            .send(
                Some(key),
                Method::POST,
                "/v1/orders",
                Some(ORDER.to_vec()),
                HeaderMap::new(),
            )
            .await
            .unwrap();
        let r = report(&resp);
        assert_eq!(resp.status, StatusCode::OK, "{}: {r}", key.name());
        assert_eq!(r["key_id"], key.key_id());
        assert_eq!(r["scheme"], key.scheme().as_str());
        assert_eq!(r["content_type"], "application/json");

        let resp = client
            .send(
                Some(key),
                Method::GET,
                "/v1/orders?symbol=BTC-USD",
                None,
                HeaderMap::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "{}: {}",
            key.name(),
            report(&resp)
        );
        assert!(r["path"].as_str().unwrap().starts_with("/v1/orders"));
    }
    drop(s.keys);
}

#[tokio::test]
async fn rampart_mfa_is_sent_and_covered() {
    let s = setup(ServerOptions::default()).await;
    let client = Client::from_credentials(&s.creds).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(MFA_HEADER, HeaderValue::from_static("totp=123456"));
    let resp = client
        .send(
            s.creds.key("trader-ed25519"),
            Method::POST,
            "/v1/withdrawals",
            Some(br#"{"asset":"BTC","amount":"0.1","address":"bc1q"}"#.to_vec()),
            headers,
        )
        .await
        .unwrap();
    let r = report(&resp);
    assert_eq!(resp.status, StatusCode::OK, "{r}");
    assert_eq!(r["covers_mfa"], true);
}

#[tokio::test]
async fn http1_is_used_when_the_server_offers_only_http1_or_no_alpn() {
    for alpn in [vec![b"http/1.1".to_vec()], Vec::new()] {
        let s = setup(ServerOptions {
            alpn,
            ..ServerOptions::default()
        })
        .await;
        // By name this time: SNI and the certificate's DNS name.
        let ca = s.creds.read_ca_pem().unwrap();
        let client = Client::new(&format!("https://localhost:{}", s.addr.port()), &ca).unwrap();
        for key in [
            None,
            s.creds.key("trader-hmac"),
            s.creds.key("coinbase-style"),
        ] {
            let resp = client
                .send(key, Method::GET, "/v1/account", None, HeaderMap::new())
                .await
                .unwrap();
            let r = report(&resp);
            assert_eq!(resp.status, StatusCode::OK, "{r}");
            assert_eq!(resp.version, Version::HTTP_11);
            assert_eq!(r["authority"], format!("localhost:{}", s.addr.port()));
        }
    }
}

#[tokio::test]
async fn a_tls12_only_server_is_refused() {
    let s = setup(ServerOptions {
        tls12_only: true,
        ..ServerOptions::default()
    })
    .await;
    let client = Client::from_credentials(&s.creds).unwrap();
    let err = client
        .send(None, Method::GET, "/v1/time", None, HeaderMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err}");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let s = setup(ServerOptions::default()).await;
    let other = pki();
    let client = Client::new(&s.creds.gateway_url, other.ca_pem.as_bytes()).unwrap();
    let err = client
        .send(None, Method::GET, "/v1/time", None, HeaderMap::new())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Transport(_)), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

#[tokio::test]
async fn response_size_and_time_are_bounded() {
    let s = setup(ServerOptions::default()).await;
    let client = Client::from_credentials(&s.creds)
        .unwrap()
        .with_max_response_bytes(1024)
        .with_timeout(Duration::from_millis(300));
    let err = client
        .send(None, Method::GET, "/big", None, HeaderMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ResponseTooLarge(1024)), "{err}");
    let err = client
        .send(None, Method::GET, "/slow", None, HeaderMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err}");
}

#[tokio::test]
async fn server_time_corrects_the_signing_clock() {
    let skew = 3_600_000;
    let s = setup(ServerOptions {
        skew_ms: skew,
        ..ServerOptions::default()
    })
    .await;
    let client = Client::from_credentials(&s.creds).unwrap();
    assert!((client.now_ms() - system_now_ms()).abs() < 1000);
    let resp = client
        .send(None, Method::GET, "/v1/time", None, HeaderMap::new())
        .await
        .unwrap();
    assert!(resp.server_time_ms().is_some());
    assert!((client.now_ms() - system_now_ms() - skew).abs() < 5000);
}

#[tokio::test]
async fn an_explicit_content_type_is_kept() {
    let s = setup(ServerOptions::default()).await;
    let client = Client::from_credentials(&s.creds).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let resp = client
        .send(
            s.creds.key("binance-style"),
            Method::POST,
            "/v1/orders",
            Some(b"symbol=BTC-USD&qty=1".to_vec()),
            headers,
        )
        .await
        .unwrap();
    let r = report(&resp);
    assert_eq!(resp.status, StatusCode::OK, "{r}");
    assert_eq!(r["content_type"], "application/x-www-form-urlencoded");
    assert!(r["body"].as_str().unwrap().contains("&signature="));
}

#[test]
fn gateway_urls_and_cas_are_checked() {
    let ca = pki().ca_pem;
    for url in [
        "http://127.0.0.1:8443",
        "https://127.0.0.1:8443/v1",
        "https://u:p@127.0.0.1:8443",
        "127.0.0.1:8443",
        "not a url",
    ] {
        let err = Client::new(url, ca.as_bytes()).unwrap_err();
        assert!(matches!(err, ClientError::Request(_)), "{url}: {err}");
    }
    assert!(Client::new("https://127.0.0.1:8443/", ca.as_bytes()).is_ok());
    let err = Client::new("https://127.0.0.1:8443", b"no pem here").unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(&format!("https://{addr}"), pki().ca_pem.as_bytes()).unwrap();
    let err = client
        .send(None, Method::GET, "/v1/time", None, HeaderMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err}");
}
