//! The HTTPS client: hyper-util over tokio-rustls, TLS 1.3 only, ALPN
//! `h2` then `http/1.1`, trusting one CA.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::uri::{Authority, Scheme as UriScheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::chain;
use crate::{sign, ClientError, ClientKey, Credentials};

/// The response header carrying the gateway's clock (Unix milliseconds).
pub const SERVER_TIME_HEADER: HeaderName = HeaderName::from_static("rampart-server-time");
/// Default limit for a whole exchange (connect, send, read the body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit for connecting (TCP and TLS handshake).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on a response body, bytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The ALPN protocols offered, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A rustls client configuration trusting only the CA certificates in
/// `ca_pem`: aws-lc-rs provider, TLS 1.3 only, ALPN `h2` and `http/1.1`.
///
/// # Errors
///
/// [`ClientError::Tls`] when `ca_pem` holds no usable certificate.
pub fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut count = 0usize;
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| ClientError::Tls(format!("CA certificate PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("CA certificate: {e}")))?;
        count = count.saturating_add(1);
    }
    if count == 0 {
        return Err(ClientError::Tls(
            "the CA file holds no PEM certificate".to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Connects over TCP and TLS for the hyper-util client (`https` only).
#[derive(Clone)]
struct HttpsConnector {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
}

impl tower_service::Service<Uri> for HttpsConnector {
    type Response = TlsConn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            if uri.scheme() != Some(&UriScheme::HTTPS) {
                return Err("only https URLs are supported".into());
            }
            let host = uri.host().ok_or("the URL has no host")?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let server_name = ServerName::try_from(host.clone())
                .map_err(|_| format!("`{host}` is not a valid server name"))?;
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                tls.connect(server_name, tcp).await
            };
            let stream = tokio::time::timeout(timeout, connect).await.map_err(|_| {
                format!("connecting to {host}:{port} timed out after {timeout:?}")
            })??;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            Ok(TlsConn {
                io: TokioIo::new(stream),
                h2,
            })
        })
    }
}

/// A TLS connection that tells hyper-util which protocol ALPN chose.
struct TlsConn {
    io: TokioIo<TlsStream<TcpStream>>,
    h2: bool,
}

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        if self.h2 {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

impl hyper::rt::Read for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

/// A response, body read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// HTTP version used (`HTTP/2.0` when ALPN chose `h2`).
    pub version: Version,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The body parsed as JSON, when it is JSON.
    #[must_use]
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The gateway's clock from `Rampart-Server-Time` (Unix ms), if sent.
    #[must_use]
    pub fn server_time_ms(&self) -> Option<i64> {
        self.headers
            .get(SERVER_TIME_HEADER)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// An HTTPS client for one gateway: TLS 1.3 only, HTTP/2 or HTTP/1.1 by
/// ALPN, trusting only the given CA, connections pooled. Signs requests
/// with [`sign`](crate::sign()) when given a key.
///
/// Clock: each response's `Rampart-Server-Time` updates the offset the
/// client adds to its own clock for `created` / `timestamp` / nonces, so a
/// skewed local clock corrects itself after the first response.
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpsConnector, Full<Bytes>>,
    authority: Authority,
    timeout: Duration,
    max_response_bytes: usize,
    clock_offset_ms: AtomicI64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authority", &self.authority)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

/// 16 random bytes as 32 lowercase hex digits.
///
/// # Errors
///
/// [`ClientError::Transport`] if the system random source fails.
pub fn random_nonce() -> Result<String, ClientError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ClientError::Transport("the system random source failed".to_owned()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The local clock, Unix milliseconds.
#[must_use]
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

impl Client {
    /// A client for the gateway at `gateway_url` (`https://host[:port]`,
    /// no path), trusting the CA certificates in `ca_pem`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Request`] for a URL that is not `https://authority`,
    /// [`ClientError::Tls`] for an unusable CA.
    pub fn new(gateway_url: &str, ca_pem: &[u8]) -> Result<Self, ClientError> {
        let uri: Uri = gateway_url
            .parse()
            .map_err(|_| ClientError::request(format!("`{gateway_url}` is not a URL")))?;
        if uri.scheme() != Some(&UriScheme::HTTPS) {
            return Err(ClientError::request(format!(
                "`{gateway_url}` is not an https URL"
            )));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| ClientError::request(format!("`{gateway_url}` has no host")))?;
        if authority.as_str().contains('@') {
            return Err(ClientError::request(
                "URLs with user information are not supported",
            ));
        }
        if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
            return Err(ClientError::request(format!(
                "`{gateway_url}` must have no path or query (give those per request)"
            )));
        }
        let connector = HttpsConnector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca_pem)?)),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        };
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Client {
            http,
            authority,
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            clock_offset_ms: AtomicI64::new(0),
        })
    }

    /// A client for the credentials' gateway, trusting their CA.
    ///
    /// # Errors
    ///
    /// As [`Client::new`], and [`ClientError::Io`] when the CA file cannot
    /// be read.
    pub fn from_credentials(credentials: &Credentials) -> Result<Self, ClientError> {
        Self::new(&credentials.gateway_url, &credentials.read_ca_pem()?)
    }

    /// Sets the limit for a whole exchange (default [`DEFAULT_TIMEOUT`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the response body limit (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    #[must_use]
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// `host[:port]` requests go to (and are signed for).
    #[must_use]
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// The clock used for signing: the local clock corrected by the last
    /// `Rampart-Server-Time` seen, Unix milliseconds.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        system_now_ms().saturating_add(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Sends a request to the gateway and reads the whole response.
    ///
    /// `path_and_query` is the origin form (`/v1/orders?x=1`). With a
    /// `body`, `Content-Type: application/json` is set unless
    /// `extra_headers` has a `Content-Type`. With a `key`, the request is
    /// signed by [`sign`](crate::sign()) (nonce: 16 random bytes in hex;
    /// an RFC 9421 signature covers `Rampart-MFA` when `extra_headers` has
    /// it); without one it is sent unsigned (public routes).
    ///
    /// # Errors
    ///
    /// [`ClientError::Request`] or [`ClientError::Sign`] when the request
    /// cannot be built or signed, [`ClientError::Transport`] when
    /// connecting or the exchange fails, [`ClientError::Timeout`],
    /// [`ClientError::ResponseTooLarge`]. Any HTTP status is a response,
    /// not an error.
    pub async fn send(
        &self,
        key: Option<&ClientKey>,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        extra_headers: HeaderMap,
    ) -> Result<Response, ClientError> {
        let mut headers = extra_headers;
        let body = body.unwrap_or_default();
        if !body.is_empty() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let (path_and_query, body) = match key {
            Some(key) => {
                let signed = sign(
                    key,
                    &method,
                    self.authority.as_str(),
                    path_and_query,
                    &mut headers,
                    &body,
                    self.now_ms(),
                    &random_nonce()?,
                )?;
                (signed.path_and_query, signed.body)
            }
            None => (path_and_query.to_owned(), body),
        };
        if !path_and_query.starts_with('/') {
            return Err(ClientError::request(
                "the path must start with `/` (origin form)",
            ));
        }
        let uri = Uri::builder()
            .scheme(UriScheme::HTTPS)
            .authority(self.authority.clone())
            .path_and_query(path_and_query.as_str())
            .build()
            .map_err(|_| {
                ClientError::request("the path and query are not a valid request target")
            })?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::request(e.to_string()))?;
        *request.headers_mut() = headers;

        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| ClientError::Transport(chain(&e)))?;
            let (parts, mut incoming) = response.into_parts();
            let mut buf = BytesMut::new();
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| ClientError::Transport(chain(&e)))?;
                if let Ok(data) = frame.into_data() {
                    if buf.len().saturating_add(data.len()) > self.max_response_bytes {
                        return Err(ClientError::ResponseTooLarge(self.max_response_bytes));
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Ok(Response {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: buf.freeze(),
            })
        };
        let response = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        if let Some(server) = response.server_time_ms().filter(|t| *t > 0) {
            self.clock_offset_ms
                .store(server.saturating_sub(system_now_ms()), Ordering::Relaxed);
        }
        Ok(response)
    }
}
