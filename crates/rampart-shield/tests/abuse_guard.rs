#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
//! AuthGuard behaviour on a fake clock: progressive delay, pair lockout at
//! exactly 10 failures (PCI DSS 8.3.4), expiry and operator unlock, the
//! victim key never locked for its owner, IP and prefix locks, IPv6 /64
//! grouping, reset on success, trusted sources and the capacity bound.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rampart_shield::abuse::{Admission, AuthGuard, AuthGuardConfig, LockScope, Unlock};
use rampart_shield::alert::kind;
use rampart_shield::ManualClock;

const MIN: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn guard_with(cfg: AuthGuardConfig) -> (Arc<ManualClock>, AuthGuard<Arc<ManualClock>>) {
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let g = AuthGuard::new(cfg, Arc::clone(&clock), 1_700_000_000_000).unwrap();
    (clock, g)
}

fn guard() -> (Arc<ManualClock>, AuthGuard<Arc<ManualClock>>) {
    guard_with(AuthGuardConfig::default())
}

fn locked(a: Admission) -> (Duration, LockScope) {
    match a {
        Admission::Locked { retry_after, scope } => (retry_after, scope),
        other => panic!("expected a lock, got {other:?}"),
    }
}

#[test]
fn progressive_delay_then_pair_lock_at_exactly_ten_failures() {
    let (clock, g) = guard();
    let a = ip("203.0.113.7");
    let expected = [
        Admission::Allow,
        Admission::Allow,
        Admission::Allow,
        Admission::Delay(Duration::from_millis(250)),
        Admission::Delay(Duration::from_millis(500)),
        Admission::Delay(Duration::from_secs(1)),
        Admission::Delay(Duration::from_secs(2)),
        Admission::Delay(Duration::from_secs(2)),
        Admission::Delay(Duration::from_secs(2)),
        Admission::Delay(Duration::from_secs(2)),
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(g.admit(a, "alice"), *want, "before failure {}", i + 1);
        let alert = g.record_failure(a, "alice");
        if i < 9 {
            assert!(alert.is_none(), "alert after failure {}", i + 1);
        } else {
            let alert = alert.expect("10th failure must lock");
            assert_eq!(alert.kind, kind::PAIR_LOCKED);
            assert_eq!(alert.details["lock_seconds"], 1800);
        }
        clock.advance(Duration::from_secs(1));
    }
    let (retry, scope) = locked(g.admit(a, "alice"));
    assert_eq!(scope, LockScope::Pair);
    assert_eq!(retry, 30 * MIN - Duration::from_secs(1));
    // Other keys from the same IP, and the same key elsewhere, are fine.
    assert_eq!(g.admit(a, "bob"), Admission::Allow);
    assert_eq!(g.admit(ip("198.51.100.1"), "alice"), Admission::Allow);
    assert_eq!(g.status().locked_pairs, 1);
    let listed = g.locks(10);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key_id.as_deref(), Some("alice"));

    // Still locked one millisecond before the 30 minutes are up.
    clock.advance(30 * MIN - Duration::from_secs(1) - Duration::from_millis(1));
    assert_eq!(locked(g.admit(a, "alice")).0, Duration::from_millis(1));
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        g.admit(a, "alice"),
        Admission::Allow,
        "lock over, count reset"
    );

    // A repeat within 24 h locks for twice as long.
    for _ in 0..10 {
        let _ = g.record_failure(a, "alice");
    }
    assert_eq!(locked(g.admit(a, "alice")).0, 60 * MIN);

    // The operator unlocks the pair.
    assert_eq!(
        g.unlock(Unlock::Pair {
            ip: a,
            key_id: "alice".into()
        }),
        1
    );
    assert_eq!(g.admit(a, "alice"), Admission::Allow);
}

#[test]
fn success_resets_the_pair() {
    let (_clock, g) = guard();
    let a = ip("203.0.113.7");
    for _ in 0..9 {
        let _ = g.record_failure(a, "alice");
    }
    assert_eq!(
        g.admit(a, "alice"),
        Admission::Delay(Duration::from_secs(2))
    );
    g.record_success(a, "alice");
    assert_eq!(g.admit(a, "alice"), Admission::Allow);
    for _ in 0..9 {
        assert!(g.record_failure(a, "alice").is_none());
    }
    assert!(g.admit(a, "alice").proceeds());
    assert_eq!(
        g.record_failure(a, "alice").unwrap().kind,
        kind::PAIR_LOCKED
    );
}

#[test]
fn attacker_cannot_lock_the_victim_out() {
    let (_clock, g) = guard();
    let owner = ip("198.51.100.20");
    g.record_success(owner, "victim");
    // Five attacker IPs each exhaust their pair on the victim's key id.
    let mut targeted = 0;
    for n in 1..=5 {
        let attacker = ip(&format!("45.{n}.0.1"));
        for _ in 0..10 {
            if let Some(a) = g.record_failure(attacker, "victim") {
                if a.kind == kind::KEY_TARGETED {
                    targeted += 1;
                }
            }
        }
        assert_eq!(locked(g.admit(attacker, "victim")).1, LockScope::Pair);
    }
    assert_eq!(targeted, 1, "one key_targeted alert");
    assert_eq!(g.status().targeted_keys, 1);
    // The owner at their usual IP is never refused, nor even delayed.
    for _ in 0..100 {
        assert_eq!(g.admit(owner, "victim"), Admission::Allow);
    }
    g.record_success(owner, "victim");
    // Unknown sources for the targeted key share 5 attempts per 15 min.
    let fresh = ip("203.0.113.50");
    for _ in 0..5 {
        assert_eq!(g.admit(fresh, "victim"), Admission::Allow);
    }
    assert!(matches!(
        g.admit(fresh, "victim"),
        Admission::Throttled { .. }
    ));
    // Other keys from that source are unaffected.
    assert_eq!(g.admit(fresh, "someone-else"), Admission::Allow);
    // The user calls support: the operator clears the key everywhere.
    assert_eq!(g.unlock(Unlock::Key("victim".into())), 5);
    assert_eq!(g.admit(fresh, "victim"), Admission::Allow);
    assert_eq!(g.status().locked_pairs, 0);
}

#[test]
fn ip_failing_across_many_keys_is_locked() {
    let (clock, g) = guard();
    let a = ip("203.0.113.7");
    g.record_success(a, "own-key");
    for i in 0..29 {
        assert!(g.record_failure(a, &format!("k{i}")).is_none());
    }
    let alert = g
        .record_failure(a, "k29")
        .expect("30th failure locks the IP");
    assert_eq!(alert.kind, kind::IP_LOCKED);
    let (retry, scope) = locked(g.admit(a, "k100"));
    assert_eq!((retry, scope), (30 * MIN, LockScope::Ip));
    // Its known-good pair is exempt; neighbours are not affected.
    assert_eq!(g.admit(a, "own-key"), Admission::Allow);
    assert_eq!(g.admit(ip("203.0.113.8"), "k100"), Admission::Allow);
    clock.advance(5 * MIN);
    assert_eq!(g.unlock(Unlock::Ip(a)), 1);
    assert_eq!(g.admit(a, "k100"), Admission::Allow);
}

#[test]
fn prefix_far_over_its_threshold_is_locked() {
    let (_clock, g) = guard();
    // 10 hosts of one /24, 15 failures each (half their IP budget), each on
    // a different key.
    let mut alert = None;
    for h in 0..10 {
        for k in 0..15 {
            let a = g.record_failure(ip(&format!("203.0.113.{}", h + 1)), &format!("k{h}-{k}"));
            if a.is_some() {
                alert = a;
            }
        }
    }
    let alert = alert.expect("prefix lock alert");
    assert_eq!(alert.kind, kind::PREFIX_LOCKED);
    assert_eq!(alert.details["prefix"], "203.0.113.0/24");
    // A host of the /24 that never failed is refused; the next /24 is not.
    let (retry, scope) = locked(g.admit(ip("203.0.113.200"), "x"));
    assert_eq!((retry, scope), (15 * MIN, LockScope::Prefix));
    assert_eq!(g.admit(ip("203.0.114.1"), "x"), Admission::Allow);
    assert_eq!(g.status().locked_prefixes, 1);
    // Unlocking the /24 forgets the prefix and its 10 IPs (1 active lock).
    assert_eq!(
        g.unlock(Unlock::Prefix("203.0.113.0/24".parse().unwrap())),
        1
    );
    assert_eq!(g.admit(ip("203.0.113.200"), "x"), Admission::Allow);
    assert_eq!(g.status().tracked_ips, 0);
}

#[test]
fn ipv6_sources_group_by_slash_64_and_mapped_v4_is_v4() {
    let (_clock, g) = guard();
    // One attacker rotating through 150 addresses of its /64: no single
    // address gets near a lock, the /64 does.
    for i in 0..150 {
        let a = ip(&format!("2001:db8:1:2:{:x}::1", i + 1));
        let _ = g.record_failure(a, &format!("k{i}"));
    }
    let (_, scope) = locked(g.admit(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), "x"));
    assert_eq!(scope, LockScope::Prefix);
    assert_eq!(g.status().tracked_prefixes, 1);
    assert_eq!(g.admit(ip("2001:db8:1:3::1"), "x"), Admission::Allow);

    // IPv4-mapped IPv6 addresses are the IPv4 address.
    for _ in 0..10 {
        let _ = g.record_failure(ip("::ffff:192.0.2.9"), "alice");
    }
    assert_eq!(locked(g.admit(ip("192.0.2.9"), "alice")).1, LockScope::Pair);
}

#[test]
fn trusted_sources_are_never_ip_locked_but_pairs_still_lock() {
    let (_clock, g) = guard_with(AuthGuardConfig {
        trusted: vec!["10.0.0.0/8".parse().unwrap()],
        ..AuthGuardConfig::default()
    });
    let office = ip("10.1.2.3");
    for i in 0..100 {
        let _ = g.record_failure(office, &format!("k{i}"));
    }
    assert_eq!(g.admit(office, "k-new"), Admission::Allow);
    for _ in 0..10 {
        let _ = g.record_failure(office, "alice");
    }
    assert_eq!(locked(g.admit(office, "alice")).1, LockScope::Pair);
}

#[test]
fn full_tables_never_forget_a_live_lock_and_fail_closed_for_unknown_sources() {
    let (clock, g) = guard_with(AuthGuardConfig {
        shards: 1,
        max_pairs: 4,
        ..AuthGuardConfig::default()
    });
    let known = ip("198.51.100.1");
    g.record_success(known, "alice");
    // Four locked pairs fill the pair table.
    for n in 1..=4 {
        for _ in 0..10 {
            let _ = g.record_failure(ip(&format!("45.0.{n}.1")), "victim");
        }
    }
    assert_eq!(g.status().locked_pairs, 4);
    // A fifth failing source cannot be recorded: saturation alert.
    let newcomer = ip("45.0.9.1");
    let alerts: Vec<_> = (0..3)
        .filter_map(|_| g.record_failure(newcomer, "x"))
        .collect();
    assert_eq!(alerts.len(), 1, "one saturation alert per episode");
    assert_eq!(alerts[0].kind, kind::GUARD_SATURATED);
    let s = g.status();
    assert!(s.saturated);
    assert_eq!(s.tracked_pairs, 4);
    assert_eq!(s.locked_pairs, 4);
    // Every lock still holds; unknown sources are refused; known ones pass.
    for n in 1..=4 {
        assert_eq!(
            locked(g.admit(ip(&format!("45.0.{n}.1")), "victim")).1,
            LockScope::Pair
        );
    }
    assert!(matches!(
        g.admit(ip("203.0.113.1"), "y"),
        Admission::Throttled { .. }
    ));
    assert_eq!(g.admit(known, "alice"), Admission::Allow);
    // When the locks expire their entries make room again.
    clock.advance(31 * MIN);
    assert!(!g.status().saturated);
    assert!(g.record_failure(newcomer, "x").is_none());
    assert_eq!(g.status().tracked_pairs, 1);
    assert_eq!(g.admit(ip("203.0.113.1"), "y"), Admission::Allow);
}

#[test]
fn unlock_all_clears_locks_and_the_attack_flag() {
    let (_clock, g) = guard();
    for i in 0..120_u8 {
        let a = ip(&format!("45.{i}.0.1"));
        for _ in 0..10 {
            let _ = g.record_failure(a, &format!("k{i}"));
        }
    }
    let s = g.status();
    assert!(s.under_attack);
    assert_eq!(s.locked_pairs, 120);
    assert_eq!(g.unlock(Unlock::All), 120);
    let s = g.status();
    assert!(!s.under_attack);
    assert_eq!(s.locked_pairs, 0);
    assert_eq!(g.admit(ip("45.0.0.1"), "k0"), Admission::Allow);
}

#[test]
fn guard_is_send_and_sync_and_works_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<AuthGuard<Arc<ManualClock>>>();
    let (_clock, g) = guard();
    let g = Arc::new(g);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let g = Arc::clone(&g);
            std::thread::spawn(move || {
                for i in 0..1_000 {
                    let a = ip(&format!("10.{t}.{}.1", i % 50));
                    let _ = g.admit(a, "k");
                    let _ = g.record_failure(a, "k");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(g.status().totals.failures, 4_000);
}

#[test]
fn the_most_severe_alert_wins_when_one_failure_raises_several() {
    let (_clock, g) = guard();
    let a = ip("203.0.113.7");
    for i in 0..20 {
        assert!(g.record_failure(a, &format!("k{i}")).is_none());
    }
    for _ in 0..9 {
        assert!(g.record_failure(a, "alice").is_none());
    }
    // The 30th failure of the IP is the 10th of the pair: both lock, the
    // IP lock (warning) is reported over the pair lock (info).
    let alert = g.record_failure(a, "alice").unwrap();
    assert_eq!(alert.kind, kind::IP_LOCKED);
    let s = g.status();
    assert_eq!((s.locked_pairs, s.locked_ips), (1, 1));
}
