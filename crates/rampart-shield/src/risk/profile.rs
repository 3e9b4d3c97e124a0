//! One principal's behaviour profile: what it learns and what it compares.

use super::RiskConfig;

/// Milliseconds in a minute.
const MINUTE_MS: u64 = 60_000;

/// A small most-recently-seen set of 64-bit values with counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent {
    slots: Vec<Slot>,
    cap: usize,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    value: u64,
    count: u32,
    last_ms: u64,
}

impl Recent {
    pub fn new(cap: usize) -> Self {
        Self {
            slots: Vec::new(),
            cap: cap.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How often `value` was seen (0: never, or forgotten).
    pub fn count(&self, value: u64) -> u32 {
        self.slots
            .iter()
            .find(|s| s.value == value)
            .map_or(0, |s| s.count)
    }

    /// Records `value` at `now_ms`; when full, the least recently seen
    /// value makes room.
    pub fn note(&mut self, value: u64, now_ms: u64) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.value == value) {
            s.count = s.count.saturating_add(1);
            s.last_ms = s.last_ms.max(now_ms);
            return;
        }
        let slot = Slot {
            value,
            count: 1,
            last_ms: now_ms,
        };
        if self.slots.len() < self.cap {
            self.slots.push(slot);
        } else if let Some(oldest) = self.slots.iter_mut().min_by_key(|s| s.last_ms) {
            *oldest = slot;
        }
    }

    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().map(|s| s.value)
    }
}

/// What one request looks like, computed once for assess and observe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Features {
    pub now_ms: u64,
    pub net: u64,
    pub asn: Option<u32>,
    /// Known country (not `ZZ`), packed.
    pub country: Option<u64>,
    pub ua: u64,
    pub instrument: Option<u64>,
    /// ln(order size), for positive finite sizes.
    pub log_size: Option<f64>,
    pub hour: usize,
}

/// A principal's learned behaviour. All collections are bounded by the
/// config; the struct itself is fixed-size apart from them.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub first_ms: u64,
    pub last_ms: u64,
    pub requests: u64,
    pub nets: Recent,
    pub asns: Recent,
    pub countries: Recent,
    /// The country of the latest request that had one, and when.
    pub last_country: Option<(u64, u64)>,
    pub uas: Recent,
    pub instruments: Recent,
    pub instrument_samples: u32,
    /// Requests in the current and previous minute (`minute` is the
    /// current minute's index since the epoch).
    pub minute: u64,
    pub this_minute: u32,
    pub prev_minute: u32,
    /// EWMA of requests per *active* minute (idle minutes are skipped, so
    /// a key that sleeps at night is not "bursting" every morning).
    pub rate: f64,
    pub active_minutes: u32,
    /// EWMA of ln(order size) and its exponentially weighted variance.
    pub size_mean: f64,
    pub size_var: f64,
    pub size_samples: u32,
    /// Requests per UTC hour of day, halved when the total grows large so
    /// recent habits dominate.
    pub hours: [u32; 24],
    pub hours_total: u32,
}

/// Hour histogram total above which every bin is halved.
const HOURS_DECAY_TOTAL: u32 = 20_000;

impl Profile {
    pub fn new(cfg: &RiskConfig, now_ms: u64) -> Self {
        Self {
            first_ms: now_ms,
            last_ms: now_ms,
            requests: 0,
            nets: Recent::new(cfg.max_prefixes),
            asns: Recent::new(cfg.max_asns),
            countries: Recent::new(cfg.max_countries),
            last_country: None,
            uas: Recent::new(cfg.max_user_agents),
            instruments: Recent::new(cfg.max_instruments),
            instrument_samples: 0,
            minute: now_ms / MINUTE_MS,
            this_minute: 0,
            prev_minute: 0,
            rate: 0.0,
            active_minutes: 0,
            size_mean: 0.0,
            size_var: 0.0,
            size_samples: 0,
            hours: [0; 24],
            hours_total: 0,
        }
    }

    /// Whether the profile is still learning at `now_ms`.
    pub fn learning(&self, cfg: &RiskConfig, now_ms: u64) -> bool {
        self.requests < cfg.learning_min_requests
            || now_ms.saturating_sub(self.first_ms)
                < u64::try_from(cfg.learning_min_age.as_millis()).unwrap_or(u64::MAX)
    }

    /// Requests in the last minute, current request included, estimated
    /// from the two minute counters.
    pub fn short_rate(&self, now_ms: u64) -> f64 {
        let m = now_ms / MINUTE_MS;
        let frac = (now_ms % MINUTE_MS) as f64 / MINUTE_MS as f64;
        let (cur, prev) = if m == self.minute {
            (self.this_minute, self.prev_minute)
        } else if m == self.minute.saturating_add(1) {
            (0, self.this_minute)
        } else {
            (0, 0)
        };
        1.0 + f64::from(cur) + f64::from(prev) * (1.0 - frac)
    }

    /// The typical order size (geometric mean) and the log-size standard
    /// deviation.
    pub fn size_stats(&self) -> (f64, f64) {
        (self.size_mean.exp(), self.size_var.max(0.0).sqrt())
    }

    /// Whether the hour `h` (and its neighbours) is rare in the histogram.
    pub fn hour_share_percent(&self, h: usize) -> f64 {
        let bin = |i: usize| f64::from(self.hours.get(i % 24).copied().unwrap_or(0));
        let around = bin(h + 23) + bin(h) + bin(h + 1);
        100.0 * around / f64::from(self.hours_total.max(1))
    }

    /// Learns from one allowed request.
    pub fn learn(&mut self, cfg: &RiskConfig, f: &Features) {
        let now = f.now_ms;
        self.requests = self.requests.saturating_add(1);
        self.last_ms = self.last_ms.max(now);
        self.nets.note(f.net, now);
        if let Some(asn) = f.asn {
            self.asns.note(u64::from(asn), now);
        }
        if let Some(c) = f.country {
            self.countries.note(c, now);
            self.last_country = Some((c, now));
        }
        self.uas.note(f.ua, now);
        if let Some(i) = f.instrument {
            self.instruments.note(i, now);
            self.instrument_samples = self.instrument_samples.saturating_add(1);
        }
        // Request rate per active minute.
        let m = now / MINUTE_MS;
        if m == self.minute {
            self.this_minute = self.this_minute.saturating_add(1);
        } else if m > self.minute {
            self.fold_minute(cfg);
            self.prev_minute = if m == self.minute + 1 {
                self.this_minute
            } else {
                0
            };
            self.this_minute = 1;
            self.minute = m;
        } else {
            // A late request (clock skew between gateways): count it in
            // the current minute rather than rewrite history.
            self.this_minute = self.this_minute.saturating_add(1);
        }
        if let Some(x) = f.log_size {
            self.size_samples = self.size_samples.saturating_add(1);
            let alpha = (1.0 / f64::from(self.size_samples)).max(cfg.size_alpha);
            let d = x - self.size_mean;
            self.size_mean += alpha * d;
            self.size_var = (1.0 - alpha) * (self.size_var + alpha * d * d);
        }
        if let Some(bin) = self.hours.get_mut(f.hour) {
            *bin = bin.saturating_add(1);
            self.hours_total = self.hours_total.saturating_add(1);
        }
        if self.hours_total > HOURS_DECAY_TOTAL {
            for b in &mut self.hours {
                *b /= 2;
            }
            self.hours_total = self.hours.iter().sum();
        }
    }

    fn fold_minute(&mut self, cfg: &RiskConfig) {
        if self.this_minute == 0 {
            return;
        }
        self.active_minutes = self.active_minutes.saturating_add(1);
        let alpha = (1.0 / f64::from(self.active_minutes)).max(cfg.rate_alpha);
        self.rate += alpha * (f64::from(self.this_minute) - self.rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_is_bounded_lru() {
        let mut r = Recent::new(2);
        r.note(1, 0);
        r.note(2, 1);
        r.note(1, 2);
        r.note(3, 3);
        assert_eq!(r.len(), 2);
        assert_eq!(r.count(1), 2);
        assert_eq!(r.count(2), 0, "least recently seen was replaced");
        assert_eq!(r.count(3), 1);
    }

    #[test]
    fn size_statistics_converge() {
        let cfg = RiskConfig::default();
        let mut p = Profile::new(&cfg, 0);
        for i in 0..200 {
            let size: f64 = if i % 2 == 0 { 2.0 } else { 0.5 };
            p.learn(
                &cfg,
                &Features {
                    now_ms: i * 1_000,
                    net: 1,
                    asn: None,
                    country: None,
                    ua: 1,
                    instrument: None,
                    log_size: Some(size.ln()),
                    hour: 0,
                },
            );
        }
        let (typical, sd) = p.size_stats();
        assert!((typical - 1.0).abs() < 0.05, "{typical}");
        assert!((sd - 2.0_f64.ln()).abs() < 0.05, "{sd}");
    }
}
