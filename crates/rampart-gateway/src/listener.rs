//! The public listener: accept loop with a connection cap, TLS 1.3 handshake,
//! HTTP/1.1 or HTTP/2 by ALPN, header-read / idle / handshake timeouts.
//!
//! The first request head of an HTTP/1.1 connection is read here, before hyper
//! sees the connection, so a slow or oversized head gets its own problem
//! (`REQUEST_TIMEOUT` 408, `HEADERS_TOO_LARGE` 431) instead of a silent close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rampart_core::{Problem, ProblemCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use crate::proxy::{self, ConnInfo};
use crate::respond;
use crate::runtime::Gateway;
use crate::tls;

/// Time a connection gets to finish in-flight work after shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// A connection's place under `max_connections` (or in the overflow pool).
/// Released, and the open-connections gauge decremented, when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        metrics::gauge!("rampart_connections_open").decrement(1.0);
    }
}

/// Accepts connections until the gateway shuts down.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = gw.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (permit, overloaded) = match gw.conns.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match gw.overflow.clone().try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    metrics::counter!("rampart_connections_dropped_total").increment(1);
                    drop(tcp);
                    continue;
                }
            },
        };
        let gw2 = gw.clone();
        metrics::gauge!("rampart_connections_open").increment(1.0);
        let slot = Arc::new(ConnSlot { _permit: permit });
        gw.tracker.spawn(async move {
            serve_conn(gw2, tcp, peer, overloaded, slot).await;
        });
    }
}

async fn serve_conn(
    gw: Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    overloaded: bool,
    slot: Arc<ConnSlot>,
) {
    let rt = gw.runtime();
    let srv = rt.cfg.server.clone();
    drop(rt);
    let _ = tcp.set_nodelay(true);
    let acceptor = gw.tls.load_full();
    match acceptor {
        Some(acc) => {
            let stream = match tokio::time::timeout(srv.header_read_timeout, acc.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    metrics::counter!("rampart_tls_handshake_failures_total").increment(1);
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            };
            let (_, sc) = stream.get_ref();
            let alpn = sc.alpn_protocol().map(<[u8]>::to_vec);
            let client_cert = sc
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned());
            let info = Arc::new(ConnInfo {
                peer,
                client_cert_sha256: client_cert.as_ref().map(tls::fingerprint),
                client_cert,
                h2: alpn.as_deref() == Some(b"h2"),
                alpn,
                tls: true,
                slot: Some(slot),
                shutdown: gw.shutdown.clone(),
            });
            let io = IdleIo::new(stream, srv.idle_timeout);
            serve_http(gw, io, info, overloaded).await;
        }
        None => {
            let info = Arc::new(ConnInfo {
                peer,
                alpn: None,
                client_cert: None,
                client_cert_sha256: None,
                h2: false,
                tls: false,
                slot: Some(slot),
                shutdown: gw.shutdown.clone(),
            });
            serve_http(gw, IdleIo::new(tcp, srv.idle_timeout), info, overloaded).await;
        }
    }
}

/// Length of the request head (through the blank line), if complete.
fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

async fn serve_http<S>(gw: Arc<Gateway>, mut io: IdleIo<S>, info: Arc<ConnInfo>, overloaded: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let srv = gw.runtime().cfg.server.clone();
    let gw_svc = gw.clone();
    let info_svc = info.clone();
    let svc = service_fn(move |req| {
        let rt = gw_svc.runtime();
        let info = info_svc.clone();
        async move {
            if overloaded {
                let p = Problem::new(ProblemCode::Overloaded)
                    .detail("the gateway is at its connection limit")
                    .retry_after(1);
                let rid = proxy::new_request_id();
                return Ok::<_, std::convert::Infallible>(respond::problem(&p, Some(&rid)));
            }
            proxy::handle(rt, info, req).await
        }
    });

    if info.h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            // A backstop above the configured limit: heads between the two get
            // the pipeline's HEADERS_TOO_LARGE problem; beyond it h2 answers a
            // bare 431 itself without buffering more.
            .max_header_list_size(
                u32::try_from(srv.max_header_bytes.saturating_add(16 * 1024)).unwrap_or(u32::MAX),
            )
            .max_concurrent_streams(if overloaded { 1 } else { 256 });
        // No server keep-alive pings: they would count as traffic and keep an
        // idle connection open past `idle_timeout`.
        let conn = b.serve_connection(TokioIo::new(io), svc);
        drive(gw, conn, overloaded, |c| c.graceful_shutdown()).await;
        return;
    }

    // HTTP/1.1: read the first head ourselves to answer slow or huge heads.
    let mut buf = BytesMut::with_capacity(4096);
    let limit = srv.max_header_bytes;
    let read = tokio::time::timeout(srv.header_read_timeout, async {
        loop {
            if let Some(n) = head_len(&buf) {
                return Ok(n <= limit);
            }
            if buf.len() > limit {
                return Ok(false);
            }
            buf.reserve(4096);
            if io.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
        }
    })
    .await;
    let reject = match read {
        Ok(Ok(true)) => None,
        Ok(Ok(false)) => Some(
            Problem::new(ProblemCode::HeadersTooLarge)
                .detail(format!("the request head exceeds {limit} bytes")),
        ),
        Ok(Err(_)) => return,
        Err(_) if buf.is_empty() => return,
        Err(_) => Some(
            Problem::new(ProblemCode::RequestTimeout)
                .detail("the request head was not received in time"),
        ),
    };
    if let Some(p) = reject {
        let rid = proxy::new_request_id();
        metrics::counter!("rampart_requests_total", "route" => "none", "status" => p.status().as_u16().to_string()).increment(1);
        tracing::info!(target: "rampart::access", request_id = %rid, peer = %info.peer, status = p.status().as_u16(), code = p.code.as_str(), "request head rejected");
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            io.write_all(&respond::raw_http1(&p, &rid)).await?;
            io.shutdown().await
        })
        .await;
        return;
    }
    let io = Prefixed {
        prefix: buf.freeze(),
        inner: io,
    };
    let mut b = hyper::server::conn::http1::Builder::new();
    // The first head was bounded by `header_read_timeout` above. Between
    // keep-alive requests hyper's timer runs from the end of the previous
    // response, so it is the keep-alive idle limit: use `idle_timeout`.
    b.timer(TokioTimer::new())
        .header_read_timeout(srv.idle_timeout)
        .max_buf_size(limit.saturating_add(8192).max(8192))
        .keep_alive(!overloaded);
    let conn = b.serve_connection(TokioIo::new(io), svc).with_upgrades();
    drive(gw, conn, overloaded, |c| c.graceful_shutdown()).await;
}

/// Runs a connection; on gateway shutdown asks it to finish gracefully and
/// gives it [`DRAIN`] to do so.
async fn drive<C, E>(
    gw: Arc<Gateway>,
    conn: C,
    overloaded: bool,
    graceful: impl FnOnce(Pin<&mut C>),
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    if overloaded {
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.as_mut()).await;
        return;
    }
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with error");
            }
        }
        () = gw.shutdown.cancelled() => {
            graceful(conn.as_mut());
            let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
        }
    }
}

/// An I/O stream that fails reads with `TimedOut` after `idle` without any
/// read or write. Activity only stores an `Instant`; the timer is re-armed
/// lazily when it fires.
pub struct IdleIo<S> {
    inner: S,
    idle: Duration,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl<S> IdleIo<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, idle: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until((now + idle).into())),
        }
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.sleep.as_mut().poll(cx).is_ready() {
            let deadline = self.last + self.idle;
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
            }
            self.sleep.as_mut().reset(deadline.into());
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.poll_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = ready!(Pin::new(&mut this.inner).poll_write(cx, buf));
        this.last = Instant::now();
        Poll::Ready(r)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs));
        this.last = Instant::now();
        Poll::Ready(r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Replays bytes already read before reading from the stream.
struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            if let Some(chunk) = self.prefix.get(..n) {
                buf.put_slice(chunk);
            }
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
