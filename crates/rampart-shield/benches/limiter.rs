//! One limiter decision on a hot key and over 1 M distinct keys.
//!
//! `cargo bench -p rampart-shield --bench limiter -- --warm-up-time 1 --measurement-time 3`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark"
)]
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rampart_shield::{gcra_step, KeyHasher, MemoryStore, MonotonicClock, Quota, RateLimiter};

const DISTINCT_KEYS: usize = 1 << 20;

fn limiter(c: &mut Criterion) {
    // Generous enough that the benchmark measures the allow path.
    let quota = Quota::new(1_000_000_000, Duration::from_secs(1), 1_000_000).unwrap();
    let hasher = KeyHasher::new();

    c.bench_function("gcra_step (pure)", |b| {
        let mut tat = None;
        let mut now = 0_u64;
        b.iter(|| {
            now += 1;
            let (d, t) = gcra_step(black_box(tat), now, &quota, 1);
            tat = t;
            black_box(d)
        });
    });

    c.bench_function("check, hot key", |b| {
        let limiter = RateLimiter::new(MemoryStore::default(), MonotonicClock::new());
        let key = hasher.key(1, b"api-key", b"hot");
        b.iter(|| black_box(limiter.check(black_box(key), &quota, 1)));
    });

    c.bench_function("check, 1M distinct keys", |b| {
        // 64 × 65 536 slots: room for 1 M keys however they spread.
        let limiter = RateLimiter::new(
            MemoryStore::new(64, 1 << 16).unwrap(),
            MonotonicClock::new(),
        );
        let keys: Vec<u64> = (0..DISTINCT_KEYS as u64)
            .map(|i| hasher.key(1, b"api-key", &i.to_le_bytes()))
            .collect();
        // Populate so the measurement is lookups in a 1 M-key store.
        for k in &keys {
            assert!(limiter.check(*k, &quota, 1).is_allowed());
        }
        let mut i = 0_usize;
        b.iter(|| {
            let k = keys[i & (DISTINCT_KEYS - 1)];
            i = i.wrapping_add(1);
            black_box(limiter.check(black_box(k), &quota, 1))
        });
    });
}

criterion_group!(benches, limiter);
criterion_main!(benches);
