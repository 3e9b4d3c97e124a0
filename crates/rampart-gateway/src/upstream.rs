//! Upstream pools: endpoints, load balancing, connection pooling, active
//! health checks, passive ejection and circuit breaking.
//!
//! Each endpoint is a small state machine over atomics (no lock on the request
//! path): *healthy* (active checks), *ejected until T* (passive), and a single
//! trial request after an ejection expires (half-open). A pool also caps the
//! requests it has in flight and fails fast beyond that.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rampart_core::config::{UpstreamConfig, UpstreamProtocol};
use tokio_util::sync::CancellationToken;

/// The HTTP client type used towards upstreams.
pub type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

static MAX_WORKERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Sets the number of sharded worker threads (once, before pools are built).
pub fn set_max_workers(n: usize) {
    let _ = MAX_WORKERS.set(n.clamp(1, 256));
}

fn max_workers() -> usize {
    MAX_WORKERS.get().copied().unwrap_or(1)
}

/// Marks the current thread as sharded worker `id` (1-based; 0 is the main
/// runtime).
pub fn set_worker_id(id: usize) {
    WORKER.with(|w| w.set(id.min(max_workers())));
}

/// The current thread's worker id.
pub fn worker_id() -> usize {
    WORKER.with(std::cell::Cell::get)
}

/// One upstream endpoint and its health state.
#[derive(Debug)]
pub struct Endpoint {
    /// `host:port`.
    pub authority: String,
    /// `http://host:port`, prepended to paths.
    pub base: String,
    healthy: AtomicBool,
    ok_streak: AtomicU32,
    fail_streak: AtomicU32,
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    trial_in_flight: AtomicBool,
    /// Requests in flight to this endpoint.
    pub in_flight: AtomicUsize,
    /// Requests sent to this endpoint (attempts, including failed ones).
    pub requests: AtomicU64,
}

impl Endpoint {
    fn new(authority: &str) -> Self {
        Self {
            authority: authority.to_owned(),
            base: format!("http://{authority}"),
            healthy: AtomicBool::new(true),
            ok_streak: AtomicU32::new(0),
            fail_streak: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            trial_in_flight: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Whether active checks consider the endpoint healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Whether passive detection has the endpoint ejected right now.
    pub fn is_ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Acquire) != 0
    }

    /// May a request be sent now? After an ejection expires exactly one trial
    /// request is let through (half-open); its outcome decides.
    fn try_admit(&self, now: u64) -> bool {
        if !self.is_healthy() {
            return false;
        }
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        now >= until
            && self
                .trial_in_flight
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Usable at all (for status and readiness), without claiming a trial.
    pub fn available(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }
}

/// The pool of one `[upstreams.NAME]`.
#[derive(Debug)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Configuration.
    pub cfg: UpstreamConfig,
    /// Endpoints.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Clients for ordinary requests (HTTP/1.1 keep-alive or h2c), one per
    /// worker thread so a pooled connection is driven by the thread that
    /// uses it (no cross-thread wakeups); see [`worker_id`].
    clients: Vec<UpstreamClient>,
    /// Client for a thread whose worker id is out of range (never expected).
    fallback: UpstreamClient,
    rr: AtomicUsize,
    /// Requests in flight to the pool (circuit breaker).
    pub in_flight: AtomicUsize,
}

fn build_client(cfg: &UpstreamConfig, h2: bool) -> UpstreamClient {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(cfg.connect_timeout));
    conn.set_nodelay(true);
    conn.set_keepalive(Some(Duration::from_secs(30)));
    conn.enforce_http(true);
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .retry_canceled_requests(true)
        .set_host(true);
    if h2 {
        b.http2_only(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_adaptive_window(true);
    }
    b.build(conn)
}

impl Pool {
    /// Builds a pool (no I/O until used).
    pub fn new(name: &str, cfg: &UpstreamConfig) -> Self {
        Self {
            name: name.to_owned(),
            endpoints: cfg
                .endpoints
                .iter()
                .map(|e| Arc::new(Endpoint::new(e)))
                .collect(),
            clients: (0..=max_workers())
                .map(|_| build_client(cfg, cfg.protocol == UpstreamProtocol::H2))
                .collect(),
            fallback: build_client(cfg, cfg.protocol == UpstreamProtocol::H2),
            cfg: cfg.clone(),
            rr: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The calling worker thread's client.
    pub fn client(&self) -> &UpstreamClient {
        // INVARIANT: clients has max_workers() + 1 entries and worker ids are
        // clamped to that range, so the fallback is not reached.
        self.clients.get(worker_id()).unwrap_or(&self.fallback)
    }

    /// Picks the next admissible endpoint round-robin, skipping `tried`.
    pub fn pick(&self, tried: &[usize]) -> Option<(usize, Arc<Endpoint>)> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        (0..n)
            .map(|i| (start.wrapping_add(i)) % n)
            .filter(|i| !tried.contains(i))
            .find_map(|i| {
                let ep = self.endpoints.get(i)?;
                ep.try_admit(now).then(|| (i, ep.clone()))
            })
    }

    /// Records a successful exchange with an endpoint.
    pub fn record_success(&self, ep: &Endpoint) {
        ep.consecutive_failures.store(0, Ordering::Release);
        if ep.ejected_until_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(pool = %self.name, endpoint = %ep.authority, "endpoint re-admitted after trial request");
            self.publish_health();
        }
        ep.trial_in_flight.store(false, Ordering::Release);
    }

    /// Records a failed exchange (transport error, timeout or 5xx).
    pub fn record_failure(&self, ep: &Endpoint) {
        let n = ep
            .consecutive_failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let was_trial = ep.trial_in_flight.swap(false, Ordering::AcqRel);
        if n >= self.cfg.passive.consecutive_failures || was_trial {
            let until = now_ms().saturating_add(
                u64::try_from(self.cfg.passive.ejection.as_millis()).unwrap_or(u64::MAX),
            );
            if ep.ejected_until_ms.swap(until, Ordering::AcqRel) == 0 {
                tracing::warn!(pool = %self.name, endpoint = %ep.authority, failures = n, "endpoint ejected");
            }
            self.publish_health();
        }
    }

    /// Publishes per-endpoint health gauges.
    pub fn publish_health(&self) {
        for ep in &self.endpoints {
            metrics::gauge!("rampart_upstream_healthy", "pool" => self.name.clone(), "endpoint" => ep.authority.clone())
                .set(if ep.available() { 1.0 } else { 0.0 });
        }
    }

    /// Runs active health checks until `stop` fires.
    pub async fn health_loop(self: Arc<Self>, stop: CancellationToken) {
        let Some(h) = self.cfg.health.clone() else {
            return;
        };
        self.publish_health();
        let mut tick = tokio::time::interval(h.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let checks = self.endpoints.iter().map(|ep| {
                let ep = ep.clone();
                let pool = self.clone();
                let h = h.clone();
                async move {
                    let ok = pool.check_once(&ep, &h.path, h.timeout).await;
                    pool.apply_check(&ep, ok, h.healthy_threshold, h.unhealthy_threshold);
                }
            });
            futures_util::future::join_all(checks).await;
        }
    }

    async fn check_once(&self, ep: &Endpoint, path: &str, timeout: Duration) -> bool {
        let Ok(req) = http::Request::get(format!("{}{}", ep.base, path))
            .header(http::header::USER_AGENT, "rampart-health")
            .body(Full::new(Bytes::new()))
        else {
            return false;
        };
        match tokio::time::timeout(timeout, self.client().request(req)).await {
            Ok(Ok(resp)) => {
                let ok = resp.status().is_success();
                // Drain a bounded amount so the connection can be reused.
                let _ = tokio::time::timeout(
                    timeout,
                    http_body_util::Limited::new(resp.into_body(), 64 * 1024).frame(),
                )
                .await;
                ok
            }
            _ => false,
        }
    }

    /// Applies one active check result with thresholds.
    pub fn apply_check(
        &self,
        ep: &Endpoint,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) {
        if ok {
            ep.fail_streak.store(0, Ordering::Release);
            let s = ep
                .ok_streak
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            if s >= healthy_threshold && !ep.healthy.swap(true, Ordering::AcqRel) {
                // Active checks passing also clear a passive ejection.
                ep.ejected_until_ms.store(0, Ordering::Release);
                ep.consecutive_failures.store(0, Ordering::Release);
                tracing::info!(pool = %self.name, endpoint = %ep.authority, "endpoint healthy again");
            }
        } else {
            ep.ok_streak.store(0, Ordering::Release);
            let f = ep
                .fail_streak
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            if f >= unhealthy_threshold && ep.healthy.swap(false, Ordering::AcqRel) {
                tracing::warn!(pool = %self.name, endpoint = %ep.authority, "endpoint failed health checks");
            }
        }
        self.publish_health();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::config::PassiveConfig;

    fn cfg(n: usize) -> UpstreamConfig {
        UpstreamConfig {
            endpoints: (0..n).map(|i| format!("127.0.0.1:{}", 1000 + i)).collect(),
            protocol: UpstreamProtocol::Http1,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_in_flight: 10,
            retries: 1,
            health: None,
            passive: PassiveConfig {
                consecutive_failures: 2,
                ejection: Duration::from_millis(50),
            },
        }
    }

    #[tokio::test]
    async fn round_robin_skips_tried_and_ejected() {
        let p = Pool::new("p", &cfg(3));
        let a = p.pick(&[]).unwrap().0;
        let b = p.pick(&[]).unwrap().0;
        assert_ne!(a, b);
        let (i, _) = p.pick(&[0, 1]).unwrap();
        assert_eq!(i, 2);
        assert!(p.pick(&[0, 1, 2]).is_none());
        let ep0 = p.endpoints[0].clone();
        p.record_failure(&ep0);
        assert!(!ep0.is_ejected());
        p.record_failure(&ep0);
        assert!(ep0.is_ejected());
        for _ in 0..10 {
            assert_ne!(p.pick(&[]).unwrap().0, 0);
        }
        // After the ejection: exactly one trial; failure re-ejects.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(ep0.try_admit(now_ms()));
        assert!(!ep0.try_admit(now_ms()));
        p.record_failure(&ep0);
        assert!(ep0.is_ejected());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(ep0.try_admit(now_ms()));
        p.record_success(&ep0);
        assert!(!ep0.is_ejected());
        assert!(ep0.try_admit(now_ms()));
    }

    #[tokio::test]
    async fn active_thresholds() {
        let p = Pool::new("p", &cfg(1));
        let ep = p.endpoints[0].clone();
        p.apply_check(&ep, false, 2, 3);
        p.apply_check(&ep, false, 2, 3);
        assert!(ep.is_healthy());
        p.apply_check(&ep, false, 2, 3);
        assert!(!ep.is_healthy());
        assert!(p.pick(&[]).is_none());
        p.apply_check(&ep, true, 2, 3);
        assert!(!ep.is_healthy());
        p.apply_check(&ep, true, 2, 3);
        assert!(ep.is_healthy());
        assert!(p.pick(&[]).is_some());
    }
}
