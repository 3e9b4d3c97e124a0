#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
//! GCRA exactness on a manual clock: bursts, steady rates, weights, the
//! header figures, a reference-model proptest, concurrency on one key, and
//! the memory store's exact eviction and fail-closed behaviour.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use proptest::prelude::*;
use rampart_shield::{
    gcra_step, Decision, KeyHasher, LimiterStore, ManualClock, MemoryStore, Quota, QuotaError,
    RateLimiter, StoreError,
};

const MS: u64 = 1_000_000;

fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

fn limiter() -> RateLimiter<MemoryStore, ManualClock> {
    RateLimiter::new(MemoryStore::default(), ManualClock::new(1_000 * MS))
}

/// 10 per second, bursts of 5: T = 100 ms, τ = 400 ms.
fn ten_per_second() -> Quota {
    Quota::new(10, Duration::from_secs(1), 5).unwrap()
}

#[test]
fn quota_validation() {
    let s = Duration::from_secs(1);
    assert_eq!(Quota::new(0, s, 1), Err(QuotaError::ZeroRate));
    assert_eq!(Quota::new(1, s, 0), Err(QuotaError::ZeroBurst));
    assert_eq!(
        Quota::new(1, Duration::ZERO, 1),
        Err(QuotaError::ZeroPeriod)
    );
    assert_eq!(Quota::new(1, Duration::MAX, 1), Err(QuotaError::TooLong));
    assert_eq!(
        Quota::new(1, Duration::from_secs(3600 * 24 * 365 * 500), 2),
        Err(QuotaError::TooLong)
    );
    let q = ten_per_second();
    assert_eq!(q.emission_interval(), ns(100 * MS));
    assert_eq!(q.tolerance(), ns(400 * MS));
    // T rounds up: 3 per second never admits more than 3 per second.
    let q = Quota::new(3, s, 1).unwrap();
    assert_eq!(q.emission_interval_ns(), 333_333_334);
}

#[test]
fn burst_passes_then_exact_retry_after() {
    let l = limiter();
    let q = ten_per_second();
    for i in 1..=5_u32 {
        assert_eq!(
            l.check(7, &q, 1),
            Decision::Allowed {
                remaining: 5 - i,
                reset_after: ns(100 * MS * u64::from(i)),
            }
        );
    }
    assert_eq!(
        l.check(7, &q, 1),
        Decision::Denied {
            retry_after: ns(100 * MS),
            remaining: 0,
            reset_after: ns(500 * MS),
        }
    );
    // 1 ns before retry_after: still denied, by exactly 1 ns.
    l.clock().advance(ns(100 * MS - 1));
    assert_eq!(l.check(7, &q, 1).retry_after(), Some(ns(1)));
    l.clock().advance(ns(1));
    assert!(l.check(7, &q, 1).is_allowed());
    assert!(!l.check(7, &q, 1).is_allowed());
}

#[test]
fn steady_state_at_exact_rate_passes_forever() {
    let l = limiter();
    let q = Quota::new(1_000, Duration::from_millis(1), 3).unwrap(); // T = 1 µs
    for _ in 0..100_000 {
        assert!(l.check(1, &q, 1).is_allowed());
        l.clock().advance(ns(1_000));
    }
    // The bucket never drained below full minus one request.
    assert_eq!(l.check(1, &q, 0).remaining(), Some(3));
}

#[test]
fn one_ns_faster_than_the_rate_eventually_fails_exactly() {
    let l = limiter();
    let t = 1_000_u64;
    let q = Quota::new(1_000, Duration::from_millis(1), 3).unwrap(); // T = 1 µs, τ = 2 µs
                                                                     // Request i arrives at i × (T − 1): the bucket gains 1 ns per request,
                                                                     // so requests 0..=2T pass (level i + T ≤ 3T) and request 2T + 1 fails.
    let mut first_denied = None;
    for i in 0..10_000_u64 {
        if !l.check(1, &q, 1).is_allowed() {
            first_denied = Some(i);
            break;
        }
        l.clock().advance(ns(t - 1));
    }
    assert_eq!(first_denied, Some(2 * t + 1));
}

#[test]
fn weights_consume_proportionally() {
    let l = limiter();
    let q = Quota::new(10, Duration::from_secs(1), 10).unwrap(); // T = 100 ms
    assert_eq!(l.check(1, &q, 3).remaining(), Some(7));
    assert_eq!(l.check(1, &q, 3).remaining(), Some(4));
    // Weight 5 does not fit in 4: denied, nothing consumed, exact wait of
    // one interval.
    assert_eq!(
        l.check(1, &q, 5),
        Decision::Denied {
            retry_after: ns(100 * MS),
            remaining: 4,
            reset_after: ns(600 * MS),
        }
    );
    assert_eq!(l.check(1, &q, 4).remaining(), Some(0));
    assert_eq!(l.check(1, &q, 1).retry_after(), Some(ns(100 * MS)));
    assert_eq!(l.check(1, &q, 10).retry_after(), Some(ns(1_000 * MS)));
}

#[test]
fn weight_above_burst_is_never_allowed_and_changes_nothing() {
    let l = limiter();
    let q = ten_per_second();
    assert_eq!(
        l.check(1, &q, 6),
        Decision::Never {
            weight: 6,
            burst: 5
        }
    );
    assert!(l.store().is_empty());
    l.clock().advance(Duration::from_secs(3600));
    assert!(matches!(l.check(1, &q, u32::MAX), Decision::Never { .. }));
    // Exactly `burst` still passes.
    assert_eq!(l.check(1, &q, 5).remaining(), Some(0));
    assert!(matches!(l.check(1, &q, 6), Decision::Never { .. }));
}

#[test]
fn weight_zero_is_always_allowed_and_changes_nothing() {
    let l = limiter();
    let q = ten_per_second();
    assert_eq!(
        l.check(1, &q, 0),
        Decision::Allowed {
            remaining: 5,
            reset_after: Duration::ZERO
        }
    );
    assert!(l.store().is_empty());
    assert!(l.check(1, &q, 5).is_allowed());
    assert_eq!(
        l.check(1, &q, 0),
        Decision::Allowed {
            remaining: 0,
            reset_after: ns(500 * MS)
        }
    );
    assert!(!l.check(1, &q, 1).is_allowed());
    // Even with the clock set before the stored TAT minus the capacity.
    l.clock().set(0);
    assert!(l.check(1, &q, 0).is_allowed());
}

#[test]
fn remaining_and_reset_after_are_exact() {
    let l = limiter();
    let q = ten_per_second();
    assert!(l.check(1, &q, 5).is_allowed());
    l.clock().advance(ns(250 * MS));
    // 250 ms refilled 2.5 requests: 2 whole ones; full again in 250 ms.
    assert_eq!(
        l.check(1, &q, 0),
        Decision::Allowed {
            remaining: 2,
            reset_after: ns(250 * MS)
        }
    );
    assert_eq!(
        l.check(1, &q, 3),
        Decision::Denied {
            retry_after: ns(50 * MS),
            remaining: 2,
            reset_after: ns(250 * MS),
        }
    );
    assert_eq!(
        l.check(1, &q, 2),
        Decision::Allowed {
            remaining: 0,
            reset_after: ns(450 * MS)
        }
    );
    l.clock().advance(ns(450 * MS));
    assert_eq!(l.check(1, &q, 0).remaining(), Some(5));
    assert_eq!(l.check(1, &q, 0).reset_after(), Some(Duration::ZERO));
}

/// A leaky bucket written independently of GCRA, in u128 so it cannot
/// saturate: `level` ns of water, draining 1 per ns, capacity `T × burst`.
struct ReferenceBucket {
    level: u128,
    last: u128,
}

impl ReferenceBucket {
    fn request(&mut self, now: u64, quota: &Quota, weight: u32) -> Decision {
        let now = u128::from(now);
        self.level = self.level.saturating_sub(now - self.last);
        self.last = now;
        if weight > quota.burst() {
            return Decision::Never {
                weight,
                burst: quota.burst(),
            };
        }
        let t = u128::from(quota.emission_interval_ns());
        let cap = t * u128::from(quota.burst());
        let remaining = |level: u128| u32::try_from((cap - level) / t).unwrap();
        let dur = |n: u128| Duration::from_nanos(u64::try_from(n).unwrap());
        let after = self.level + t * u128::from(weight);
        if after <= cap {
            self.level = after;
            Decision::Allowed {
                remaining: remaining(after),
                reset_after: dur(after),
            }
        } else {
            Decision::Denied {
                retry_after: dur(after - cap),
                remaining: remaining(self.level),
                reset_after: dur(self.level),
            }
        }
    }
}

proptest! {
    #[test]
    fn gcra_step_matches_a_reference_leaky_bucket(
        rate in 1_u32..=1_000,
        period_ns in 1_u64..=2_000_000_000,
        burst in 1_u32..=20,
        start in 0_u64..=1_000_000_000_000,
        ops in proptest::collection::vec((0_u64..=3, 0_u64..=2_000_000, 0_u32..=22), 1..200),
    ) {
        let quota = Quota::new(rate, Duration::from_nanos(period_ns), burst).unwrap();
        let t = quota.emission_interval_ns();
        let mut now = start;
        let mut tat = None;
        let mut model = ReferenceBucket { level: 0, last: u128::from(start) };
        for (intervals, extra_ns, weight) in ops {
            // Mix whole intervals (hits exact boundaries) with arbitrary ns.
            now += intervals * t + extra_ns % (t + 1);
            let (got, new_tat) = gcra_step(tat, now, &quota, weight);
            let want = model.request(now, &quota, weight);
            prop_assert_eq!(got, want);
            if !got.is_allowed() || weight == 0 {
                prop_assert_eq!(new_tat, tat, "a deny or weight 0 must change nothing");
            }
            tat = new_tat;
        }
    }
}

#[test]
fn eight_threads_on_one_key_with_a_frozen_clock_get_exactly_burst() {
    let limiter = Arc::new(limiter());
    let q = Quota::new(1, Duration::from_secs(60), 100).unwrap();
    let allowed = Arc::new(AtomicU32::new(0));
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, allowed, start) = (limiter.clone(), allowed.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..1_000 {
                    if limiter.check(42, &q, 1).is_allowed() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 100);
}

#[test]
fn eviction_of_full_buckets_keeps_decisions_exact() {
    // A tiny store (1 shard × 8 keys) against one that never evicts, over
    // 32 keys with a short period so buckets keep filling back up.
    let small = RateLimiter::new(MemoryStore::new(1, 8).unwrap(), ManualClock::new(0));
    let big = RateLimiter::new(MemoryStore::default(), ManualClock::new(0));
    let q = Quota::new(2, Duration::from_millis(10), 3).unwrap(); // T = 5 ms
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    let mut compared = 0;
    let mut fail_closed = 0;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = x % 32;
        let weight = u32::try_from((x >> 8) % 4).unwrap();
        let step = (x >> 16) % (2 * MS);
        small.clock().advance(ns(step));
        big.clock().advance(ns(step));
        match small.check(key, &q, weight) {
            Decision::FailClosed { cause } => {
                assert_eq!(cause, StoreError::Full);
                fail_closed += 1;
            }
            d => {
                assert_eq!(d, big.check(key, &q, weight));
                compared += 1;
            }
        }
        assert!(small.store().len() <= 8);
    }
    assert!(compared > 10_000, "compared {compared}");
    assert!(
        fail_closed > 0,
        "the test should also exercise a full store"
    );
}

#[test]
fn full_store_fails_closed_for_new_keys_only() {
    let l = RateLimiter::new(MemoryStore::new(1, 2).unwrap(), ManualClock::new(0));
    let q = ten_per_second();
    assert!(l.check(1, &q, 1).is_allowed());
    assert!(l.check(2, &q, 1).is_allowed());
    assert_eq!(
        l.check(3, &q, 1),
        Decision::FailClosed {
            cause: StoreError::Full
        }
    );
    // Existing keys keep exact state; stateless answers still work.
    assert_eq!(l.check(1, &q, 1).remaining(), Some(3));
    assert!(l.check(3, &q, 0).is_allowed());
    assert!(matches!(l.check(3, &q, 9), Decision::Never { .. }));
    // Once key 2's bucket is full again it is forgotten and 3 gets a slot.
    l.clock().advance(ns(100 * MS));
    assert_eq!(l.check(3, &q, 1).remaining(), Some(4));
    assert_eq!(l.store().len(), 2);
    // Key 2 comes back as the full bucket it was.
    l.clock().advance(ns(200 * MS));
    assert_eq!(l.check(2, &q, 1).remaining(), Some(4));
}

#[test]
fn memory_store_configuration_and_purge() {
    assert!(MemoryStore::new(3, 1).is_err());
    assert!(MemoryStore::new(0, 1).is_err());
    assert!(MemoryStore::new(1 << 17, 1).is_err());
    assert!(MemoryStore::new(4, 0).is_err());
    let store = MemoryStore::new(4, 16).unwrap();
    for k in 0..10_u64 {
        let r = store.update(k << 32, 0, |old| {
            assert_eq!(old, None);
            ((), Some(100 + k))
        });
        assert_eq!(r, Ok(()));
    }
    assert_eq!(store.len(), 10);
    store.purge(104);
    assert_eq!(store.len(), 5);
    store.purge(u64::MAX);
    assert!(store.is_empty());
}

#[test]
fn key_hasher_separates_fields() {
    let h = KeyHasher::new();
    assert_eq!(h.key(1, b"ip", b"10.0.0.1"), h.key(1, b"ip", b"10.0.0.1"));
    assert_ne!(h.key(1, b"ip", b"10.0.0.1"), h.key(2, b"ip", b"10.0.0.1"));
    assert_ne!(h.key(1, b"ab", b"c"), h.key(1, b"a", b"bc"));
    // A different process-level key gives different keys.
    assert_ne!(
        h.key(1, b"ip", b"10.0.0.1"),
        KeyHasher::new().key(1, b"ip", b"10.0.0.1")
    );
}
