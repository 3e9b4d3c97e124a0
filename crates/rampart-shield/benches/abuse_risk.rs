//! The request-path costs of the authentication guard and the risk engine.
//!
//! `cargo bench -p rampart-shield --bench abuse_risk -- --warm-up-time 1 --measurement-time 3`

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
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use rampart_shield::abuse::{AuthGuard, AuthGuardConfig};
use rampart_shield::risk::{AsnTable, RiskConfig, RiskContext, RiskEngine};
use rampart_shield::MonotonicClock;

fn guard(c: &mut Criterion) {
    let g = AuthGuard::new(AuthGuardConfig::default(), MonotonicClock::new(), 0).unwrap();
    let home = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
    g.record_success(home, "hot-key");

    c.bench_function("guard admit, hot (known-good) source", |b| {
        b.iter(|| black_box(g.admit(black_box(home), black_box("hot-key"))));
    });
    c.bench_function("guard record_success, known pair", |b| {
        b.iter(|| g.record_success(black_box(home), black_box("hot-key")));
    });

    // Cold: a different never-seen source each time (1 M addresses).
    let mut i = 0_u32;
    c.bench_function("guard admit, cold (never-seen) source", |b| {
        b.iter(|| {
            i = i.wrapping_add(1) & 0xF_FFFF;
            let ip = IpAddr::V4(Ipv4Addr::from(0x2d00_0000 | i));
            black_box(g.admit(ip, "cold-key"))
        });
    });

    // Cold while under attack: each unknown source is charged its quota
    // (the guard inserts throttle state).
    let attacked = AuthGuard::new(AuthGuardConfig::default(), MonotonicClock::new(), 0).unwrap();
    for n in 0..200_u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (n << 8)));
        let _ = attacked.record_failure(ip, &format!("k{n}"));
    }
    assert!(attacked.status().under_attack);
    let mut i = 0_u32;
    c.bench_function("guard admit, cold source under attack", |b| {
        b.iter(|| {
            i = i.wrapping_add(1) & 0xFFFF;
            let ip = IpAddr::V4(Ipv4Addr::from(0x2d00_0000 | i));
            black_box(attacked.admit(ip, "cold-key"))
        });
    });

    let mut i = 0_u32;
    c.bench_function("guard record_failure, rotating sources", |b| {
        let g = AuthGuard::new(AuthGuardConfig::default(), MonotonicClock::new(), 0).unwrap();
        b.iter(|| {
            i = i.wrapping_add(1) & 0xFFFF;
            let ip = IpAddr::V4(Ipv4Addr::from(0x2d00_0000 | (i << 4)));
            black_box(g.record_failure(ip, "some-key"))
        });
    });
}

const ASN_CSV: &str = "198.51.100.0/23,64500,NL\n192.0.2.0/24,64500,NL\n203.0.113.0/24,64501,US\n";

fn ctx(now: u64, qty: f64) -> RiskContext<'static> {
    RiskContext {
        key_id: "algo-1",
        account: "acct-1",
        ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 12)),
        user_agent: Some("algo-trader/2.3"),
        now_unix_ms: now,
        instrument: Some("BTC-USD"),
        order_qty: Some(qty),
        sensitive_action: false,
    }
}

fn risk(c: &mut Criterion) {
    let e = RiskEngine::new(
        RiskConfig::default(),
        Some(AsnTable::from_csv_str(ASN_CSV).unwrap()),
    )
    .unwrap();
    // An established profile: 3 days, one request a minute, 07:00–19:00.
    let day0 = 1_699_920_000_000_u64;
    for d in 0..3 {
        for m in 0..720 {
            let now = day0 + d * 86_400_000 + 7 * 3_600_000 + m * 60_000;
            e.observe(&ctx(now, 0.5 + (m % 7) as f64 * 0.05));
        }
    }
    // Some other keys so the shard maps are not trivially small.
    for k in 0..10_000 {
        let key = format!("other-{k}");
        let mut c = ctx(day0, 1.0);
        c.key_id = &key;
        e.observe(&c);
    }
    let mut now = day0 + 3 * 86_400_000 + 10 * 3_600_000;
    c.bench_function("risk assess, established profile", |b| {
        b.iter(|| black_box(e.assess(&ctx(black_box(now), 0.55))));
    });
    c.bench_function("risk assess + observe, established profile", |b| {
        b.iter(|| {
            now += 1_000;
            let c = ctx(now, 0.55);
            let a = e.assess(&c);
            e.observe(&c);
            black_box(a)
        });
    });
    c.bench_function("risk assess, new prefix at 10x size (signals)", |b| {
        let mut c = ctx(now, 5.0);
        c.ip = IpAddr::V4(Ipv4Addr::new(198, 51, 101, 7));
        b.iter(|| black_box(e.assess(black_box(&c))));
    });
}

criterion_group!(benches, guard, risk);
criterion_main!(benches);
