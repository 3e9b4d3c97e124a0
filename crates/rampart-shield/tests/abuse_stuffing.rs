#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
//! Issue 7: a simulated credential-stuffing attack from 200 source IPs over
//! 1,000 key ids is detected and throttled, while a legitimate key at its
//! usual IP keeps being admitted throughout.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use rampart_shield::abuse::{Admission, AuthGuard, AuthGuardConfig};
use rampart_shield::alert::{kind, Severity};
use rampart_shield::ManualClock;

const ORIGIN_UNIX_MS: u64 = 1_700_000_000_000;

#[derive(Debug, Default)]
struct Tally {
    allow: u64,
    delay: u64,
    locked: u64,
    throttled: u64,
    verified: u64,
}

impl Tally {
    fn add(&mut self, a: Admission) {
        match a {
            Admission::Allow => self.allow += 1,
            Admission::Delay(_) => self.delay += 1,
            Admission::Locked { .. } => self.locked += 1,
            Admission::Throttled { .. } => self.throttled += 1,
        }
        if a.proceeds() {
            self.verified += 1;
        }
    }

    fn total(&self) -> u64 {
        self.allow + self.delay + self.locked + self.throttled
    }
}

/// 200 bot IPs: 50 /24s in different /16s, four hosts each.
fn bot_ip(i: usize) -> IpAddr {
    let net = u8::try_from(i / 4).unwrap();
    let host = u8::try_from(i % 4).unwrap();
    IpAddr::V4(Ipv4Addr::new(45, net, 7, 10 + host))
}

#[test]
fn stuffing_from_200_ips_over_1000_keys_is_detected_and_throttled() {
    let clock = Arc::new(ManualClock::new(0));
    let guard = AuthGuard::new(
        AuthGuardConfig::default(),
        Arc::clone(&clock),
        ORIGIN_UNIX_MS,
    )
    .unwrap();

    // Normal life before the attack: 20 legitimate keys, each from its own
    // office IP, authenticating every few seconds for an hour.
    let legit_ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
    let legit_key = "legit-key";
    let others: Vec<(IpAddr, String)> = (0..20_u8)
        .map(|i| {
            (
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, i + 1)),
                format!("user-{i}"),
            )
        })
        .collect();
    for _ in 0..600 {
        for (ip, key) in others
            .iter()
            .chain([(legit_ip, legit_key.to_string())].iter())
        {
            assert_eq!(guard.admit(*ip, key), Admission::Allow);
            guard.record_success(*ip, key);
        }
        clock.advance(Duration::from_secs(6));
    }
    assert!(!guard.status().under_attack);

    // The attack: 20 attempts/s for 15 minutes, cycling through 200 bot IPs
    // and 1,000 key ids from a stuffing list; 1 in 500 credentials is
    // valid. The legitimate key authenticates every 10th step, interleaved.
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i:04}")).collect();
    let mut before = Tally::default();
    let mut after = Tally::default();
    let mut detected_at: Option<(u64, Duration)> = None;
    let start = Duration::from_secs(3_600);
    let mut alerts = Vec::new();
    for j in 0..18_000_usize {
        let ip = bot_ip(j % 200);
        let key = &keys[(j * 7 + j / 1000) % 1000];
        let a = guard.admit(ip, key);
        if detected_at.is_some() {
            after.add(a);
        } else {
            before.add(a);
        }
        if a.proceeds() {
            if j % 500 == 499 {
                guard.record_success(ip, key);
            } else if let Some(alert) = guard.record_failure(ip, key) {
                if alert.kind == kind::CREDENTIAL_STUFFING && detected_at.is_none() {
                    assert_eq!(alert.severity, Severity::Critical);
                    let elapsed = Duration::from_millis(alert.at_unix_ms - ORIGIN_UNIX_MS) - start;
                    detected_at = Some((j as u64 + 1, elapsed));
                    println!("alert: {}", alert.summary);
                }
                alerts.push(alert.kind);
            }
        }
        if j % 10 == 0 {
            assert_eq!(
                guard.admit(legit_ip, legit_key),
                Admission::Allow,
                "legitimate key refused at attack step {j}"
            );
            guard.record_success(legit_ip, legit_key);
            let (ip, key) = &others[j / 10 % others.len()];
            assert_eq!(guard.admit(*ip, key), Admission::Allow);
            guard.record_success(*ip, key);
        }
        clock.advance(Duration::from_millis(50));
    }

    let (detect_attempts, detect_time) = detected_at.expect("attack not detected");
    let status = guard.status();
    let refused = after.locked + after.throttled;
    println!(
        "detected after {detect_attempts} attempts ({:.1} s into the attack)",
        detect_time.as_secs_f64()
    );
    println!(
        "before detection: {} attempts, {} allowed, {} delayed, {} locked, {} throttled",
        before.total(),
        before.allow,
        before.delay,
        before.locked,
        before.throttled
    );
    println!(
        "after detection:  {} attempts, {} allowed, {} delayed, {} locked, {} throttled \
         -> {:.1} % refused before verification, {} reached verification",
        after.total(),
        after.allow,
        after.delay,
        after.locked,
        after.throttled,
        100.0 * refused as f64 / after.total() as f64,
        after.verified
    );
    println!(
        "alerts: {} ({} ip_locked, {} key_targeted, {} pair_locked)",
        alerts.len(),
        alerts.iter().filter(|k| **k == kind::IP_LOCKED).count(),
        alerts.iter().filter(|k| **k == kind::KEY_TARGETED).count(),
        alerts.iter().filter(|k| **k == kind::PAIR_LOCKED).count()
    );
    println!("status: {}", serde_json::to_string(&status).unwrap());

    assert!(status.under_attack);
    assert!(status.under_attack_since_unix_ms.is_some());
    assert!(
        detect_attempts <= 300,
        "detection took {detect_attempts} attempts"
    );
    assert!(
        refused * 100 >= after.total() * 95,
        "only {refused} of {} attempts refused after detection",
        after.total()
    );
    // Over 15 minutes each unknown bot IP got at most its 2-per-10-min
    // quota (plus the few that laundered themselves with a valid login
    // until they failed too often).
    assert!(
        after.verified < 1_000,
        "{} attempts verified",
        after.verified
    );

    // The attack stops; the flag clears after the quiet period, and the
    // legitimate key never noticed anything.
    clock.advance(Duration::from_secs(14 * 60));
    assert!(guard.status().under_attack);
    clock.advance(Duration::from_secs(2 * 60));
    assert!(!guard.status().under_attack);
    assert_eq!(guard.admit(legit_ip, legit_key), Admission::Allow);
    // A brand-new legitimate source is no longer throttled.
    let newcomer = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99));
    assert_eq!(guard.admit(newcomer, "user-new"), Admission::Allow);
}

#[test]
fn unknown_sources_are_throttled_while_known_ones_are_not() {
    let clock = Arc::new(ManualClock::new(0));
    let guard = AuthGuard::new(AuthGuardConfig::default(), Arc::clone(&clock), 0).unwrap();
    let known = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    guard.record_success(known, "alice");
    // Trigger detection: 100 IPs × 1 failure on 100 keys.
    for i in 0..100_u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(45, i, 0, 1));
        assert!(guard.admit(ip, &format!("k{i}")).proceeds());
        let _ = guard.record_failure(ip, &format!("k{i}"));
    }
    assert!(guard.status().under_attack);
    // A known-good IP may even try another key of its own.
    assert_eq!(guard.admit(known, "alice"), Admission::Allow);
    assert_eq!(guard.admit(known, "alice-2"), Admission::Allow);
    // An unknown IP gets 2 attempts per 10 minutes.
    let fresh = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));
    assert_eq!(guard.admit(fresh, "bob"), Admission::Allow);
    assert_eq!(guard.admit(fresh, "bob"), Admission::Allow);
    match guard.admit(fresh, "bob") {
        Admission::Throttled { retry_after } => {
            assert_eq!(retry_after, Duration::from_secs(300));
        }
        other => panic!("expected throttled, got {other:?}"),
    }
}
