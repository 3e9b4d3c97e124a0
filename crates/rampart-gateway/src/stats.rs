//! Per-route metric handles, resolved once and reused, so recording a request
//! allocates nothing (no label strings, no registry lookup) for the common
//! statuses.

use std::sync::OnceLock;

use metrics::{Counter, Histogram};

/// Statuses with a cached counter; others are looked up per request.
const COMMON: [u16; 20] = [
    200, 201, 204, 400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 431, 500, 501, 502, 503, 504,
    101,
];

/// Metric handles of one route (or of unrouted requests).
#[derive(Debug)]
pub struct RouteStats {
    label: String,
    duration: OnceLock<Histogram>,
    by_status: [OnceLock<Counter>; COMMON.len()],
}

impl RouteStats {
    /// Handles labelled `route=label`.
    pub fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            duration: OnceLock::new(),
            by_status: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Counts one request with its status and latency.
    pub fn record(&self, status: u16, seconds: f64) {
        match COMMON.iter().position(|s| *s == status).and_then(|i| self.by_status.get(i)) {
            Some(cell) => cell
                .get_or_init(|| {
                    metrics::counter!("rampart_requests_total", "route" => self.label.clone(), "status" => status.to_string())
                })
                .increment(1),
            None => metrics::counter!("rampart_requests_total", "route" => self.label.clone(), "status" => status.to_string())
                .increment(1),
        }
        self.duration
            .get_or_init(|| metrics::histogram!("rampart_request_duration_seconds", "route" => self.label.clone()))
            .record(seconds);
    }
}

/// Handles for requests that matched no route.
pub fn unrouted() -> &'static RouteStats {
    static NONE: OnceLock<RouteStats> = OnceLock::new();
    NONE.get_or_init(|| RouteStats::new("none"))
}
