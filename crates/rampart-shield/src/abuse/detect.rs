//! Distributed-attack detection: failures, new-source successes and
//! distinct failing IPs / key ids over a sliding window, in bounded memory.

use std::collections::HashMap;

use super::table::IdentityState;

/// Distinct values (64-bit keyed hashes) seen in the last `window`,
/// remembering at most `cap` of them; the count saturates at `cap`.
///
/// Entries older than the window are pruned every `window / 8`, so the
/// count may include values last seen up to `9/8 × window` ago: it
/// overestimates slightly, never underestimates.
#[derive(Debug)]
pub(crate) struct Distinct {
    seen: HashMap<u64, u64, IdentityState>,
    cap: usize,
    window: u64,
    next_prune: u64,
}

impl Distinct {
    pub fn new(cap: usize, window: u64) -> Self {
        Self {
            seen: HashMap::with_hasher(IdentityState::default()),
            cap,
            window,
            next_prune: 0,
        }
    }

    pub fn insert(&mut self, value: u64, now: u64) {
        if now >= self.next_prune {
            self.prune(now);
        }
        if let Some(last) = self.seen.get_mut(&value) {
            *last = (*last).max(now);
            return;
        }
        // When full, the count is saturated at `cap` (which validation
        // keeps at or above every threshold) until the next scheduled
        // prune: pruning on every new value would cost O(cap) each.
        if self.seen.len() < self.cap {
            self.seen.insert(value, now);
        }
    }

    fn prune(&mut self, now: u64) {
        let window = self.window;
        self.seen
            .retain(|_, last| now.saturating_sub(*last) < window);
        self.next_prune = now.saturating_add(self.window / 8);
    }

    pub fn count(&mut self, now: u64) -> usize {
        if now >= self.next_prune {
            self.prune(now);
        }
        self.seen.len()
    }

    pub fn clear(&mut self) {
        self.seen.clear();
    }
}

/// A count over a sliding window, approximated from two fixed windows
/// (the previous one weighted by how much of it still overlaps).
#[derive(Debug, Default)]
pub(crate) struct SlidingCount {
    epoch: u64,
    current: u64,
    previous: u64,
}

impl SlidingCount {
    fn roll(&mut self, now: u64, window: u64) {
        let epoch = now / window;
        if epoch != self.epoch {
            self.previous = if epoch == self.epoch.saturating_add(1) {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.epoch = epoch;
        }
    }

    pub fn add(&mut self, now: u64, window: u64) {
        self.roll(now, window);
        self.current = self.current.saturating_add(1);
    }

    pub fn get(&mut self, now: u64, window: u64) -> u64 {
        self.roll(now, window);
        let into = now % window;
        let weight = u128::from(window - into);
        let prev = u128::from(self.previous) * weight / u128::from(window);
        self.current
            .saturating_add(u64::try_from(prev).unwrap_or(u64::MAX))
    }
}

/// Inputs to the attack condition, as counted now.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub failures: u64,
    pub new_source_successes: u64,
    pub distinct_ips: usize,
    pub distinct_keys: usize,
}

#[derive(Debug)]
pub(crate) struct Detect {
    window: u64,
    failures: SlidingCount,
    successes: SlidingCount,
    ips: Distinct,
    keys: Distinct,
}

impl Detect {
    pub fn new(window: u64, cap: usize) -> Self {
        Self {
            window: window.max(1),
            failures: SlidingCount::default(),
            successes: SlidingCount::default(),
            ips: Distinct::new(cap, window),
            keys: Distinct::new(cap, window),
        }
    }

    pub fn failure(&mut self, ip: u64, key: Option<u64>, now: u64) {
        self.failures.add(now, self.window);
        self.ips.insert(ip, now);
        if let Some(k) = key {
            self.keys.insert(k, now);
        }
    }

    pub fn new_source_success(&mut self, now: u64) {
        self.successes.add(now, self.window);
    }

    pub fn snapshot(&mut self, now: u64) -> Snapshot {
        Snapshot {
            failures: self.failures.get(now, self.window),
            new_source_successes: self.successes.get(now, self.window),
            distinct_ips: self.ips.count(now),
            distinct_keys: self.keys.count(now),
        }
    }

    pub fn clear(&mut self) {
        self.failures = SlidingCount::default();
        self.successes = SlidingCount::default();
        self.ips.clear();
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_counts_expire_and_saturate() {
        let mut d = Distinct::new(3, 80);
        d.insert(1, 0);
        d.insert(2, 0);
        d.insert(2, 5);
        assert_eq!(d.count(5), 2);
        d.insert(3, 10);
        assert_eq!(d.count(10), 3);
        // Full: 4 is not remembered, the count saturates at 3.
        d.insert(4, 11);
        assert_eq!(d.count(11), 3);
        // At 85 the values from 0 and 5 are out of the window.
        assert_eq!(d.count(85), 1);
    }

    #[test]
    fn sliding_count_weights_previous_window() {
        let mut c = SlidingCount::default();
        for _ in 0..10 {
            c.add(5, 10);
        }
        assert_eq!(c.get(9, 10), 10);
        // Half-way through the next window, half of the previous counts.
        assert_eq!(c.get(15, 10), 5);
        assert_eq!(c.get(25, 10), 0);
    }
}
