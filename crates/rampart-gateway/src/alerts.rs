//! Security alerts: always to the log, and with `[alerts] webhook` set, also
//! POSTed as signed JSON to the operator's receiver, with retries.
//!
//! [`Alerter::send`] is what detectors call: it never blocks and never
//! fails. It logs the alert (target `rampart::alerts`: `warn` for info and
//! warning alerts, `error` for critical ones) with a fresh alert id, then
//! puts it on a bounded queue. One sender task takes alerts off the queue
//! and delivers up to [`MAX_IN_FLIGHT`] of them at a time, each over a fresh
//! connection (alerts are rare; a pooled connection would only hide a dead
//! receiver until the next alert).
//!
//! # A delivery
//!
//! `POST <webhook>` with the alert's JSON ([`Alert::to_json`]) and
//!
//! - `Content-Type: application/json`
//! - `Rampart-Signature: t=<unix s>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`
//!   ([`sign_webhook`]), signed afresh for each attempt so the timestamp is
//!   current
//! - `Rampart-Alert-Id: <uuid>`: the same on every attempt of one alert, so
//!   a receiver can drop duplicates (a retry after a lost response)
//! - `User-Agent: rampart/<version>`
//!
//! A 2xx answer is a delivery. 408, 429, 5xx, connection and TLS errors and
//! timeouts are retried after `backoff`, doubled each time up to
//! `max_backoff`, plus up to 25% random jitter (a `Retry-After` in seconds
//! lengthens the wait, never beyond `max_backoff`), until `max_attempts`.
//! Any other answer (4xx, redirects) is a permanent failure: retrying would
//! get the same answer.
//!
//! `https://` receivers are reached over TLS 1.3 only, trusting only the
//! roots in `ca_file`. No redirect is followed.
//!
//! # What this module must never do
//!
//! Block or fail the caller; log the HMAC key or the webhook's path and
//! query (they may hold a token): only `scheme://host:port` is logged.
//!
//! # Metrics
//!
//! `rampart_alerts_total{result}`: `delivered`, `failed` (permanent answer,
//! attempts exhausted, or abandoned at shutdown), `dropped` (queue full or
//! sender stopped), `filtered` (below `min_severity`: logged, not sent).

use std::fmt;
use std::io::Read as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rampart_core::config::{AlertSeverity, AlertsConfig};
use rampart_shield::alert::{sign_webhook, Alert, Severity, SIGNATURE_HEADER};
use rand::Rng as _;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;
use zeroize::Zeroizing;

/// The tracing target of every alert and of the sender's own messages.
pub const LOG_TARGET: &str = "rampart::alerts";

/// The idempotency header: one value per alert, the same on every attempt.
pub const ALERT_ID_HEADER: &str = "Rampart-Alert-Id";

/// Most deliveries in progress at once.
pub const MAX_IN_FLIGHT: usize = 4;

const MIN_SECRET_BYTES: u64 = AlertsConfig::MIN_SECRET_BYTES;
const MAX_SECRET_BYTES: u64 = AlertsConfig::MAX_SECRET_BYTES;

const USER_AGENT_VALUE: &str = concat!("rampart/", env!("CARGO_PKG_VERSION"));

/// Logs security alerts and, when a webhook is configured, queues them for
/// the sender task. Cheap to share: hold it in an `Arc`.
pub struct Alerter {
    min_severity: AlertSeverity,
    /// `None`: no webhook, the log only.
    queue: Option<mpsc::Sender<Queued>>,
    counters: Arc<Counters>,
    /// Cancelled when the sender task has exited (at once without a webhook).
    done: CancellationToken,
    /// `scheme://host:port` of the webhook, for logs.
    webhook: Option<String>,
}

impl fmt::Debug for Alerter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerter")
            .field("webhook", &self.webhook)
            .field("min_severity", &self.min_severity)
            .field("delivered", &self.delivered())
            .field("failed", &self.failed())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    filtered: AtomicU64,
}

impl Counters {
    fn add(&self, result: &'static str) {
        let c = match result {
            "delivered" => &self.delivered,
            "failed" => &self.failed,
            "dropped" => &self.dropped,
            _ => &self.filtered,
        };
        c.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("rampart_alerts_total", "result" => result).increment(1);
    }
}

/// One alert waiting for delivery.
struct Queued {
    id: Uuid,
    kind: &'static str,
    body: Bytes,
}

impl Alerter {
    /// Starts the sender task (tokio) when a webhook is configured; always
    /// logs alerts (target `rampart::alerts`, warn/error by severity) even
    /// without a webhook. The sender stops when `stop` is cancelled: an
    /// attempt under way finishes (bounded by `timeout`), nothing further is
    /// tried, and alerts still queued are counted as dropped.
    ///
    /// # Errors
    ///
    /// A message naming the key and the fix: an unreadable, loose or short
    /// HMAC key file, an unusable `ca_file`, or no tokio runtime.
    pub fn start(cfg: &AlertsConfig, stop: CancellationToken) -> Result<Arc<Alerter>, String> {
        let counters = Arc::new(Counters::default());
        let done = CancellationToken::new();
        let Some(w) = &cfg.webhook else {
            done.cancel();
            return Ok(Arc::new(Alerter {
                min_severity: cfg.min_severity,
                queue: None,
                counters,
                done,
                webhook: None,
            }));
        };
        let secret = read_secret(&w.secret_file)?;
        let target = Target::new(&w.url)?;
        let tls = match (target.https, &w.ca_file) {
            (true, Some(ca)) => Some(connector(ca)?),
            (true, None) => {
                return Err("alerts.ca_file: an `https://` webhook needs `ca_file`".to_owned())
            }
            (false, _) => None,
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the alert sender must be started inside a tokio runtime".to_owned())?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let shown = target.display.clone();
        if !target.https && !target.is_loopback() {
            tracing::warn!(
                target: LOG_TARGET,
                webhook = %shown,
                "the alerts webhook is plain http: alerts cross the network unencrypted"
            );
        }
        let sender = Arc::new(Sender {
            target,
            tls,
            secret,
            timeout: cfg.timeout,
            max_attempts: cfg.max_attempts.max(1),
            backoff: cfg.backoff,
            max_backoff: cfg.max_backoff.max(cfg.backoff),
            counters: counters.clone(),
            stop,
        });
        runtime.spawn(sender.run(rx, done.clone()));
        tracing::info!(target: LOG_TARGET, webhook = %shown, "alerts webhook enabled");
        Ok(Arc::new(Alerter {
            min_severity: cfg.min_severity,
            queue: Some(tx),
            counters,
            done,
            webhook: Some(shown),
        }))
    }

    /// Logs `alert` and queues it for the webhook. Never blocks, never
    /// fails the caller: an alert below `min_severity` is only logged
    /// (counted as filtered); when the queue is full or the sender has
    /// stopped, it is dropped, counted and logged at error.
    pub fn send(&self, alert: Alert) {
        let id = Uuid::new_v4();
        log_alert(&alert, id);
        let Some(queue) = &self.queue else {
            return;
        };
        if severity(alert.severity) < self.min_severity {
            self.counters.add("filtered");
            return;
        }
        let kind = alert.kind;
        let queued = Queued {
            id,
            kind,
            body: Bytes::from(alert.to_json()),
        };
        match queue.try_send(queued) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.add("dropped");
                tracing::error!(
                    target: LOG_TARGET,
                    alert_id = %id,
                    kind,
                    "alert queue full: alert dropped, not sent to the webhook"
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.add("dropped");
                tracing::error!(
                    target: LOG_TARGET,
                    alert_id = %id,
                    kind,
                    "alert sender stopped: alert dropped, not sent to the webhook"
                );
            }
        }
    }

    /// Alerts not sent because the queue was full or the sender had stopped.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Alerts the receiver accepted (2xx).
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.counters.delivered.load(Ordering::Relaxed)
    }

    /// Alerts given up on: a permanent refusal, `max_attempts` exhausted,
    /// or a retry abandoned at shutdown.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Alerts below `min_severity`: logged, not sent.
    #[must_use]
    pub fn filtered(&self) -> u64 {
        self.counters.filtered.load(Ordering::Relaxed)
    }

    /// Whether alerts go to a webhook (else only to the log).
    #[must_use]
    pub fn has_webhook(&self) -> bool {
        self.queue.is_some()
    }

    /// Resolves once the sender task has exited (at once without a
    /// webhook): after `stop`, when the attempts under way have finished.
    pub async fn stopped(&self) {
        self.done.cancelled().await;
    }
}

fn severity(s: Severity) -> AlertSeverity {
    match s {
        Severity::Info => AlertSeverity::Info,
        Severity::Warning => AlertSeverity::Warning,
        Severity::Critical => AlertSeverity::Critical,
    }
}

fn log_alert(alert: &Alert, id: Uuid) {
    let sev = alert.severity.as_str();
    if alert.severity == Severity::Critical {
        tracing::error!(
            target: LOG_TARGET,
            alert_id = %id,
            kind = alert.kind,
            severity = sev,
            at_unix_ms = alert.at_unix_ms,
            details = %alert.details,
            "security alert: {}",
            alert.summary
        );
    } else {
        tracing::warn!(
            target: LOG_TARGET,
            alert_id = %id,
            kind = alert.kind,
            severity = sev,
            at_unix_ms = alert.at_unix_ms,
            details = %alert.details,
            "security alert: {}",
            alert.summary
        );
    }
}

/// Reads the HMAC key: owner-only (Unix), at most `MAX_SECRET_BYTES`, one
/// trailing newline removed, at least `MIN_SECRET_BYTES` left.
fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("alerts.secret_file: cannot read the HMAC key file `{shown}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "alerts.secret_file: the HMAC key file `{shown}` is not a regular file"
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "alerts.secret_file: the HMAC key file `{shown}` has permissions {mode:04o}; run `chmod 600 {shown}`"
            ));
        }
    }
    let cap = usize::try_from(MAX_SECRET_BYTES).unwrap_or(4096);
    // Room for one byte more than allowed, so the buffer never reallocates
    // (leaving a copy behind) and an oversized file is detected.
    let mut key = Zeroizing::new(Vec::with_capacity(cap.saturating_add(1)));
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(MAX_SECRET_BYTES.saturating_add(1))
                .read_to_end(&mut key)
        })
        .map_err(|e| format!("alerts.secret_file: cannot read the HMAC key file `{shown}`: {e}"))?;
    if key.len() > cap {
        return Err(format!(
            "alerts.secret_file: the HMAC key file `{shown}` holds more than {MAX_SECRET_BYTES} bytes"
        ));
    }
    if key.last() == Some(&b'\n') {
        key.pop();
        if key.last() == Some(&b'\r') {
            key.pop();
        }
    }
    if (key.len() as u64) < MIN_SECRET_BYTES {
        return Err(format!(
            "alerts.secret_file: the HMAC key in `{shown}` is {} bytes, fewer than {MIN_SECRET_BYTES} (try `openssl rand -hex 32`)",
            key.len()
        ));
    }
    Ok(key)
}

/// A TLS 1.3-only client trusting only the roots in `ca`.
fn connector(ca: &Path) -> Result<TlsConnector, String> {
    let err = |e: &dyn fmt::Display| format!("alerts.ca_file: {e}");
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::tls::load_certs(ca).map_err(|e| err(&e))? {
        roots
            .add(c)
            .map_err(|e| err(&format!("`{}`: {e}", ca.display())))?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// The webhook, taken apart once.
struct Target {
    https: bool,
    /// Host to connect to (IPv6 without brackets).
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    /// The `Host` header.
    authority: String,
    path_and_query: String,
    /// `scheme://host:port`, safe to log.
    display: String,
}

impl Target {
    fn new(url: &http::Uri) -> Result<Self, String> {
        let bad = || "alerts.webhook: not an `http://` or `https://` URL with a host".to_owned();
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let authority = url.authority().ok_or_else(bad)?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad());
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| format!("alerts.webhook: `{host}` is not a valid TLS server name"))?;
        let scheme = if https { "https" } else { "http" };
        Ok(Self {
            https,
            display: format!("{scheme}://{}", authority.as_str()),
            authority: authority.as_str().to_owned(),
            path_and_query: url
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            host,
            port,
            server_name,
        })
    }

    fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered(StatusCode),
    /// Not worth retrying (the receiver's answer, or why no request could
    /// be made).
    Permanent(String),
    /// Worth retrying; the reason and the receiver's `Retry-After`, if any.
    Retry(String, Option<Duration>),
}

/// The sender task's state, shared by its deliveries.
struct Sender {
    target: Target,
    tls: Option<TlsConnector>,
    secret: Zeroizing<Vec<u8>>,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    counters: Arc<Counters>,
    stop: CancellationToken,
}

impl Sender {
    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Queued>, done: CancellationToken) {
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            if in_flight.len() >= MAX_IN_FLIGHT {
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => break,
                    _ = in_flight.join_next() => continue,
                }
            }
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                next = rx.recv() => match next {
                    Some(q) => {
                        let s = self.clone();
                        in_flight.spawn(async move { s.deliver(q).await });
                    }
                    // Every `Alerter` is gone: finish what is under way.
                    None => break,
                },
            }
        }
        // Attempts under way finish (each bounded by `timeout`); their
        // retries see `stop` and give up.
        while in_flight.join_next().await.is_some() {}
        rx.close();
        let mut left = 0_u64;
        while rx.try_recv().is_ok() {
            left += 1;
            self.counters.add("dropped");
        }
        if left > 0 {
            tracing::error!(
                target: LOG_TARGET,
                webhook = %self.target.display,
                alerts = left,
                "alert sender stopped: queued alerts dropped, not sent to the webhook"
            );
        }
        done.cancel();
    }

    async fn deliver(&self, q: Queued) {
        let mut attempt = 1_u32;
        loop {
            let outcome = match tokio::time::timeout(self.timeout, self.attempt(&q)).await {
                Ok(o) => o,
                Err(_) => Outcome::Retry(format!("no answer within {:?}", self.timeout), None),
            };
            let (reason, retry_after) = match outcome {
                Outcome::Delivered(status) => {
                    self.counters.add("delivered");
                    tracing::debug!(
                        target: LOG_TARGET,
                        alert_id = %q.id,
                        kind = q.kind,
                        status = status.as_u16(),
                        attempt,
                        "alert delivered"
                    );
                    return;
                }
                Outcome::Permanent(reason) => {
                    self.counters.add("failed");
                    tracing::error!(
                        target: LOG_TARGET,
                        alert_id = %q.id,
                        kind = q.kind,
                        webhook = %self.target.display,
                        error = %reason,
                        attempt,
                        "alert refused by the webhook; not retried"
                    );
                    return;
                }
                Outcome::Retry(reason, retry_after) => (reason, retry_after),
            };
            if attempt >= self.max_attempts {
                self.counters.add("failed");
                tracing::error!(
                    target: LOG_TARGET,
                    alert_id = %q.id,
                    kind = q.kind,
                    webhook = %self.target.display,
                    attempts = attempt,
                    error = %reason,
                    "alert not delivered: attempts exhausted"
                );
                return;
            }
            let delay = self.delay(attempt, retry_after);
            tracing::debug!(
                target: LOG_TARGET,
                alert_id = %q.id,
                attempt,
                error = %reason,
                retry_in = ?delay,
                "alert delivery failed; retrying"
            );
            tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    self.counters.add("failed");
                    tracing::error!(
                        target: LOG_TARGET,
                        alert_id = %q.id,
                        kind = q.kind,
                        webhook = %self.target.display,
                        attempts = attempt,
                        error = %reason,
                        "alert not delivered: shutting down"
                    );
                    return;
                }
                () = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
        }
    }

    /// The wait after failed attempt `attempt` (1-based).
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        backoff(
            self.backoff,
            self.max_backoff,
            attempt,
            retry_after,
            rand::thread_rng().gen_range(0.0..0.25),
        )
    }

    async fn attempt(&self, q: &Queued) -> Outcome {
        let req = match self.request(q) {
            Ok(r) => r,
            // Every part was checked when the webhook was parsed and every
            // header is ASCII: unreachable, and not worth retrying.
            Err(e) => return Outcome::Permanent(format!("request not built: {e}")),
        };
        let tcp = match TcpStream::connect((self.target.host.as_str(), self.target.port)).await {
            Ok(s) => s,
            Err(e) => return Outcome::Retry(format!("connect: {e}"), None),
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(tls) => match tls.connect(self.target.server_name.clone(), tcp).await {
                Ok(s) => exchange(TokioIo::new(s), req).await,
                Err(e) => Outcome::Retry(format!("tls: {e}"), None),
            },
            None => exchange(TokioIo::new(tcp), req).await,
        }
    }

    fn request(&self, q: &Queued) -> Result<Request<Full<Bytes>>, http::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Request::post(self.target.path_and_query.as_str())
            .header(HOST, self.target.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, q.body.len())
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(SIGNATURE_HEADER, sign_webhook(&self.secret, now, &q.body))
            .header(ALERT_ID_HEADER, q.id.to_string())
            .body(Full::new(q.body.clone()))
    }
}

/// `base × 2^(attempt-1)` capped at `cap`, at least `retry_after` (also
/// capped), plus `jitter` (0..0.25) of it.
fn backoff(
    base: Duration,
    cap: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = attempt.saturating_sub(1).min(31);
    let d = base.saturating_mul(1_u32 << exp).min(cap);
    let d = retry_after.map_or(d, |r| d.max(r.min(cap)));
    let extra = d.as_secs_f64() * jitter.clamp(0.0, 0.25);
    d.saturating_add(Duration::try_from_secs_f64(extra).unwrap_or(Duration::ZERO))
}

/// One HTTP/1.1 request over `io`; reads the response head only.
async fn exchange<I>(io: I, req: Request<Full<Bytes>>) -> Outcome
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) = match hyper::client::conn::http1::handshake(io).await {
        Ok(p) => p,
        Err(e) => return Outcome::Retry(format!("http: {e}"), None),
    };
    // Dropped (aborting the connection) when this attempt ends or times out.
    let _conn = AbortOnDropHandle::new(tokio::spawn(async move {
        let _ = conn.await;
    }));
    match send.send_request(req).await {
        Ok(resp) => classify(resp.status(), resp.headers()),
        Err(e) => Outcome::Retry(format!("http: {e}"), None),
    }
}

fn classify(status: StatusCode, headers: &http::HeaderMap) -> Outcome {
    if status.is_success() {
        Outcome::Delivered(status)
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Outcome::Retry(format!("status {}", status.as_u16()), retry_after)
    } else {
        Outcome::Permanent(format!("status {}", status.as_u16()))
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let ms = Duration::from_millis;
        let b = |n, ra, j| backoff(ms(250), ms(30_000), n, ra, j);
        assert_eq!(b(1, None, 0.0), ms(250));
        assert_eq!(b(2, None, 0.0), ms(500));
        assert_eq!(b(3, None, 0.0), ms(1000));
        assert_eq!(b(8, None, 0.0), ms(30_000));
        assert_eq!(b(u32::MAX, None, 0.0), ms(30_000));
        assert_eq!(b(1, None, 0.2), ms(300));
        assert_eq!(b(1, None, 9.0), ms(312) + Duration::from_micros(500));
        assert_eq!(b(1, Some(ms(2000)), 0.0), ms(2000));
        assert_eq!(b(1, Some(Duration::from_secs(3600)), 0.0), ms(30_000));
    }

    #[test]
    fn classification() {
        let h = http::HeaderMap::new();
        for s in [200, 201, 202, 204] {
            assert!(matches!(
                classify(StatusCode::from_u16(s).unwrap(), &h),
                Outcome::Delivered(_)
            ));
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(
                classify(StatusCode::from_u16(s).unwrap(), &h),
                Outcome::Retry(..)
            ));
        }
        for s in [301, 302, 400, 401, 403, 404, 410, 413, 422] {
            assert!(matches!(
                classify(StatusCode::from_u16(s).unwrap(), &h),
                Outcome::Permanent(_)
            ));
        }
        let mut h = http::HeaderMap::new();
        h.insert(RETRY_AFTER, http::HeaderValue::from_static("7"));
        match classify(StatusCode::SERVICE_UNAVAILABLE, &h) {
            Outcome::Retry(_, Some(d)) => assert_eq!(d, Duration::from_secs(7)),
            _ => panic!("retry-after ignored"),
        }
    }

    #[test]
    fn target_parts() {
        let t = Target::new(&"https://[::1]:8443/hook?token=s3cret".parse().unwrap()).unwrap();
        assert!(t.https);
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 8443);
        assert_eq!(t.authority, "[::1]:8443");
        assert_eq!(t.path_and_query, "/hook?token=s3cret");
        assert_eq!(t.display, "https://[::1]:8443");
        assert!(t.is_loopback());
        let t = Target::new(&"http://siem.example".parse().unwrap()).unwrap();
        assert_eq!((t.port, t.path_and_query.as_str()), (80, "/"));
        assert!(!t.is_loopback());
    }
}
