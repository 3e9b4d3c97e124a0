//! `bench-upstream`: a trivial, fast plain-HTTP upstream for load benchmarks.
//!
//! Answers every request with `200 OK`, `content-type: application/json` and a
//! small fixed JSON body (shaped like a `/v1/time` answer), so that a benchmark
//! of a proxy in front of it measures the proxy and not the backend.
//!
//! Usage: `bench-upstream --listen 127.0.0.1:PORT [--h2]`
//!
//! Serves HTTP/1.1 with keep-alive and, through hyper-util's auto builder,
//! HTTP/2 cleartext with prior knowledge (h2c) on the same port. With `--h2`
//! only HTTP/2 (prior knowledge) is served.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpSocket;

/// Fixed response body (~100 bytes), shaped like a `/v1/time` answer.
const BODY: &[u8] =
    br#"{"server_time_ms":1700000000000,"iso":"2023-11-14T22:13:20.000Z","source":"bench-upstream"}"#;

/// Listen backlog. Proxies in front of us may open hundreds of upstream
/// connections in a burst (e.g. nginx under HTTP/2 load); std's default of
/// 128 would overflow and show up as 1 s SYN-retransmit latency spikes.
const BACKLOG: u32 = 4096;

/// Boxed error type used by `main`.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command-line options.
struct Args {
    /// Address to listen on.
    listen: SocketAddr,
    /// Serve HTTP/2 (prior knowledge) only.
    h2_only: bool,
}

/// Usage text printed on `--help` or bad arguments.
const USAGE: &str = "usage: bench-upstream --listen 127.0.0.1:PORT [--h2]";

/// Parses the command line.
fn parse_args() -> Result<Args, BoxError> {
    let mut listen: Option<SocketAddr> = None;
    let mut h2_only = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => {
                let v = it.next().ok_or("--listen needs a value")?;
                listen = Some(v.parse()?);
            }
            s if s.starts_with("--listen=") => {
                listen = Some(s.trim_start_matches("--listen=").parse()?);
            }
            "--h2" => h2_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    let listen = listen.ok_or(USAGE)?;
    Ok(Args { listen, h2_only })
}

/// Answers every request with the fixed JSON body.
async fn handle(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let socket = if args.listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(BACKLOG)?;
    eprintln!(
        "bench-upstream listening on http://{} ({})",
        listener.local_addr()?,
        if args.h2_only {
            "h2c only"
        } else {
            "http/1.1 + h2c"
        }
    );

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    builder.http2().max_concurrent_streams(1024);
    let builder = if args.h2_only {
        builder.http2_only()
    } else {
        builder
    };

    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // e.g. EMFILE under heavy load: back off briefly, keep serving.
                eprintln!("accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            // Connection errors (client resets etc.) are expected under load.
            let _ = builder.serve_connection(io, service_fn(handle)).await;
        });
    }
}
