//! Alerts to a webhook, over real sockets: a local HTTPS (or HTTP) receiver
//! verifies each delivery's HMAC signature and records its alert id; the
//! tests check delivery, retries with the same id, permanent refusals,
//! the bounded queue, a dead receiver, the severity filter and shutdown.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{pki, Pki};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rampart_core::config::{AlertSeverity, AlertWebhook, AlertsConfig, ClientAuth, TlsConfig};
use rampart_gateway::alerts::Alerter;
use rampart_shield::alert::{kind, verify_webhook, Alert, Severity, SIGNATURE_HEADER};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-key";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    verified: bool,
    content_type: String,
    user_agent: String,
    body: serde_json::Value,
    at: Instant,
}

/// A webhook receiver: answers the scripted statuses in order, then 200.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(tls: Option<&Pki>, script: &[u16]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let acceptor = tls.map(|p| {
            tokio_rustls::TlsAcceptor::from(
                rampart_gateway::tls::server_config(&TlsConfig {
                    cert: p.cert.clone(),
                    key: p.key.clone(),
                    client_ca: None,
                    client_auth: ClientAuth::None,
                })
                .unwrap(),
            )
        });
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (seen, script, acceptor) = (seen2.clone(), script.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (seen, script) = (seen.clone(), script.clone());
                        async move { Ok::<_, Infallible>(handle(req, &seen, &script).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            // A failed handshake (wrong CA test) just ends here.
                            if let Ok(tls) = a.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
    script: &Mutex<VecDeque<u16>>,
) -> Response<Full<Bytes>> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (sig, id, content_type, user_agent) = (
        h(SIGNATURE_HEADER),
        h("rampart-alert-id"),
        h("content-type"),
        h("user-agent"),
    );
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(req.uri().path(), "/hooks/rampart");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Verify the exact bytes received, before parsing, as a receiver must.
    let verified = verify_webhook(SECRET, &sig, &body, now, Duration::from_secs(300)).is_ok();
    seen.lock().push(Seen {
        id,
        verified,
        content_type,
        user_agent,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        at: Instant::now(),
    });
    let status = script.lock().pop_front().unwrap_or(200);
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(b"ok")))
        .unwrap()
}

fn write_secret(p: &Pki, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = p.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Small timings: attempts of at most 1 s, retries after 20 ms, 40 ms, ….
fn alerts_cfg(p: &Pki, addr: SocketAddr, https: bool) -> AlertsConfig {
    let scheme = if https { "https" } else { "http" };
    AlertsConfig {
        webhook: Some(AlertWebhook {
            url: format!("{scheme}://localhost:{}/hooks/rampart", addr.port())
                .parse()
                .unwrap(),
            secret_file: write_secret(p, "alerts.key", SECRET, 0o600),
            ca_file: https.then(|| p.ca.clone()),
        }),
        timeout: Duration::from_secs(1),
        max_attempts: 3,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        queue: 16,
        min_severity: AlertSeverity::Info,
    }
}

fn alert(severity: Severity, n: u64) -> Alert {
    Alert {
        kind: kind::CREDENTIAL_STUFFING,
        severity,
        at_unix_ms: 1_700_000_000_000 + n,
        summary: format!("test alert {n}"),
        details: serde_json::json!({ "n": n }),
    }
}

/// Waits (at most 10 s) for `f` to hold.
async fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn delivered_signed_and_verified_over_https() {
    let p = pki();
    let rx = Receiver::start(Some(&p), &[]).await;
    let key = write_secret(&p, "alerts.key", SECRET, 0o600);
    // Through the real configuration compiler, [alerts] included.
    let text = format!(
        "{}\n[alerts]\nwebhook = \"https://localhost:{port}/hooks/rampart\"\nsecret_file = \"{key}\"\nca_file = \"{ca}\"\nmin_severity = \"info\"\n",
        common::config(&p, &["127.0.0.1:9".parse().unwrap()], "", common::EXCHANGE_ROUTES),
        port = rx.addr.port(),
        key = key.display(),
        ca = p.ca.display(),
    );
    let cfg = rampart_core::config::parse(&text, std::path::Path::new("/")).unwrap();
    let stop = CancellationToken::new();
    let a = Alerter::start(&cfg.alerts, stop.clone()).unwrap();
    assert!(a.has_webhook());
    for (n, s) in [Severity::Info, Severity::Warning, Severity::Critical]
        .into_iter()
        .enumerate()
    {
        a.send(alert(s, n as u64));
    }
    until("3 deliveries", || a.delivered() == 3).await;
    let seen = rx.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let mut ids: Vec<_> = seen.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one id per alert: {seen:#?}");
    for s in &seen {
        assert!(s.verified, "signature must verify: {s:?}");
        uuid::Uuid::parse_str(&s.id).unwrap();
        assert_eq!(s.content_type, "application/json");
        assert_eq!(s.user_agent, concat!("rampart/", env!("CARGO_PKG_VERSION")));
        assert_eq!(s.body["kind"], "credential_stuffing");
    }
    let mut sev: Vec<_> = seen
        .iter()
        .map(|s| s.body["severity"].as_str().unwrap().to_owned())
        .collect();
    sev.sort();
    assert_eq!(sev, ["critical", "info", "warning"]);
    assert_eq!((a.failed(), a.dropped(), a.filtered()), (0, 0, 0));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), a.stopped())
        .await
        .unwrap();
}

#[tokio::test]
async fn retried_after_503_with_the_same_alert_id() {
    let p = pki();
    let rx = Receiver::start(Some(&p), &[503, 503]).await;
    let a = Alerter::start(&alerts_cfg(&p, rx.addr, true), CancellationToken::new()).unwrap();
    a.send(alert(Severity::Critical, 1));
    until("delivery", || a.delivered() == 1).await;
    let seen = rx.seen();
    assert_eq!(seen.len(), 3, "503, 503, 200: {seen:#?}");
    assert!(seen.iter().all(|s| s.verified), "{seen:#?}");
    assert!(
        seen.iter().all(|s| s.id == seen[0].id),
        "the idempotency key must not change between attempts: {seen:#?}"
    );
    // Backoff: 20 ms then 40 ms (plus jitter) between the attempts.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(20));
    assert!(seen[2].at - seen[1].at >= Duration::from_millis(40));
    assert_eq!((a.failed(), a.dropped()), (0, 0));
}

#[tokio::test]
async fn permanent_4xx_is_not_retried_but_408_and_429_are() {
    let p = pki();
    let rx = Receiver::start(Some(&p), &[400, 400, 400]).await;
    let a = Alerter::start(&alerts_cfg(&p, rx.addr, true), CancellationToken::new()).unwrap();
    a.send(alert(Severity::Critical, 1));
    until("failure", || a.failed() == 1).await;
    // Retries would have come after 20 ms and 40 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.seen().len(), 1, "a 400 must not be retried");
    assert_eq!((a.delivered(), a.failed()), (0, 1));

    let rx = Receiver::start(Some(&p), &[408, 429]).await;
    let a = Alerter::start(&alerts_cfg(&p, rx.addr, true), CancellationToken::new()).unwrap();
    a.send(alert(Severity::Critical, 2));
    until("delivery", || a.delivered() == 1).await;
    assert_eq!(rx.seen().len(), 3);
}

// A single-threaded runtime: the sender task cannot run while the loop
// below sends, so exactly `queue` alerts fit and the rest are dropped.
#[tokio::test(flavor = "current_thread")]
async fn full_queue_drops_and_counts_without_blocking() {
    let p = pki();
    let rx = Receiver::start(Some(&p), &[]).await;
    let mut cfg = alerts_cfg(&p, rx.addr, true);
    cfg.queue = 4;
    let a = Alerter::start(&cfg, CancellationToken::new()).unwrap();
    let t = Instant::now();
    for n in 0..200 {
        a.send(alert(Severity::Critical, n));
    }
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "send must not block: {took:?}"
    );
    assert_eq!(a.dropped(), 196);
    until("the queued alerts", || a.delivered() == 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.seen().len(), 4);
    assert_eq!((a.failed(), a.dropped()), (0, 196));
}

#[tokio::test]
async fn receiver_down_fails_after_max_attempts_with_backoff() {
    let p = pki();
    // A port nobody listens on: every connect is refused at once.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = alerts_cfg(&p, addr, true);
    cfg.max_attempts = 4;
    cfg.backoff = Duration::from_millis(50);
    let a = Alerter::start(&cfg, CancellationToken::new()).unwrap();
    let t = Instant::now();
    a.send(alert(Severity::Critical, 1));
    until("failure", || a.failed() == 1).await;
    let took = t.elapsed();
    // Waits of 50 + 100 + 200 ms (each plus up to 25%) between 4 attempts.
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!((a.delivered(), a.dropped()), (0, 0));

    // A receiver that always answers 503 gets exactly `max_attempts`.
    let rx = Receiver::start(Some(&p), &[503; 10]).await;
    let a = Alerter::start(&alerts_cfg(&p, rx.addr, true), CancellationToken::new()).unwrap();
    a.send(alert(Severity::Critical, 2));
    until("failure", || a.failed() == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.seen().len(), 3);
    assert_eq!(a.delivered(), 0);
}

#[tokio::test]
async fn unknown_ca_is_refused() {
    let p = pki();
    let other = pki();
    let rx = Receiver::start(Some(&other), &[]).await;
    let mut cfg = alerts_cfg(&p, rx.addr, true);
    cfg.max_attempts = 2;
    let a = Alerter::start(&cfg, CancellationToken::new()).unwrap();
    a.send(alert(Severity::Critical, 1));
    until("failure", || a.failed() == 1).await;
    assert!(
        rx.seen().is_empty(),
        "no request may cross an unverified TLS session"
    );
    assert_eq!(a.delivered(), 0);
}

#[tokio::test]
async fn min_severity_filters_what_is_sent_over_plain_http() {
    let p = pki();
    let rx = Receiver::start(None, &[]).await;
    let mut cfg = alerts_cfg(&p, rx.addr, false);
    cfg.min_severity = AlertSeverity::Critical;
    let a = Alerter::start(&cfg, CancellationToken::new()).unwrap();
    a.send(alert(Severity::Info, 1));
    a.send(alert(Severity::Warning, 2));
    a.send(alert(Severity::Critical, 3));
    until("delivery", || a.delivered() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = rx.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].body["severity"], "critical");
    assert!(seen[0].verified);
    assert_eq!((a.filtered(), a.dropped(), a.failed()), (2, 0, 0));
}

#[tokio::test]
async fn stop_ends_retries_and_later_alerts_are_dropped() {
    let p = pki();
    let rx = Receiver::start(Some(&p), &[503; 10]).await;
    let mut cfg = alerts_cfg(&p, rx.addr, true);
    cfg.backoff = Duration::from_secs(20);
    cfg.max_backoff = Duration::from_secs(20);
    let stop = CancellationToken::new();
    let a = Alerter::start(&cfg, stop.clone()).unwrap();
    a.send(alert(Severity::Critical, 1));
    until("the first attempt", || rx.seen().len() == 1).await;
    let t = Instant::now();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), a.stopped())
        .await
        .expect("the sender must not wait out its 20 s backoff");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(a.failed(), 1, "the abandoned retry counts as failed");
    a.send(alert(Severity::Critical, 2));
    assert_eq!(a.dropped(), 1);
    assert_eq!(rx.seen().len(), 1);
}

#[tokio::test]
async fn without_webhook_alerts_are_only_logged() {
    let a = Alerter::start(&AlertsConfig::default(), CancellationToken::new()).unwrap();
    assert!(!a.has_webhook());
    a.send(alert(Severity::Critical, 1));
    assert_eq!(
        (a.delivered(), a.failed(), a.dropped(), a.filtered()),
        (0, 0, 0, 0)
    );
    tokio::time::timeout(Duration::from_secs(1), a.stopped())
        .await
        .unwrap();
}

#[tokio::test]
async fn start_refuses_a_loose_or_short_key() {
    let p = pki();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut cfg = alerts_cfg(&p, addr, true);
    let w = cfg.webhook.as_mut().unwrap();
    w.secret_file = write_secret(&p, "loose.key", SECRET, 0o644);
    let e = Alerter::start(&cfg, CancellationToken::new()).unwrap_err();
    assert!(
        e.contains("permissions 0644") && e.contains("chmod 600"),
        "{e}"
    );

    let w = cfg.webhook.as_mut().unwrap();
    // 31 bytes and a newline: the newline is not part of the key.
    w.secret_file = write_secret(&p, "short.key", b"0123456789abcdef0123456789abcde\n", 0o600);
    let e = Alerter::start(&cfg, CancellationToken::new()).unwrap_err();
    assert!(e.contains("fewer than 32"), "{e}");
    assert!(!e.contains("0123456789"), "the key must never appear: {e}");
}
