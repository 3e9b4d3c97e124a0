#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
//! Issue 7, adaptive risk: a key with an established profile that suddenly
//! trades from a new prefix at 10× its usual size is stepped up; a steady
//! key is never stepped up; learning, trust, credential changes, bounded
//! memory and the ASN table.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rampart_shield::alert::kind;
use rampart_shield::risk::{
    AsnTable, AsnTableError, Assessment, RiskAction, RiskConfig, RiskContext, RiskEngine,
};

/// 2023-11-14 00:00:00 UTC.
const DAY0: u64 = 1_699_920_000_000;
const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

const ASN_CSV: &str = "\
prefix,asn,country
# two data centres of one hosting company in NL
198.51.100.0/23,64500,NL
192.0.2.0/24,64500,NL
203.0.113.0/24,64501,US
2001:db8::/32,64502,DE
";

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// A standard normal deviate (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn engine(cfg: RiskConfig) -> RiskEngine {
    RiskEngine::new(cfg, Some(AsnTable::from_csv_str(ASN_CSV).unwrap())).unwrap()
}

fn ctx<'a>(key: &'a str, ip: IpAddr, now: u64, instrument: &'a str, qty: f64) -> RiskContext<'a> {
    RiskContext {
        key_id: key,
        account: "acct-1",
        ip,
        user_agent: Some("algo-trader/2.3"),
        now_unix_ms: now,
        instrument: Some(instrument),
        order_qty: Some(qty),
        sensitive_action: false,
    }
}

/// Statistics of a steady simulation.
#[derive(Debug, Default)]
struct Steady {
    requests: u64,
    max_score: u8,
    signals: BTreeMap<&'static str, u64>,
    last_ms: u64,
}

/// A steady algorithmic key over `days` days: 07:00–19:00 UTC, one order
/// every 30–90 s from two data centres (same ASN and country), one UA,
/// three instruments, sizes log-normal around 0.5 (σ = 0.25 in log space)
/// with an occasional double-size order. Every request is assessed, must
/// be allowed, and is then observed.
fn run_steady(e: &RiskEngine, key: &str, days: u64, rng: &mut Rng) -> Steady {
    let mut s = Steady::default();
    let instruments = ["BTC-USD", "ETH-USD", "SOL-USD"];
    for d in 0..days {
        let mut t = DAY0 + d * DAY + 7 * HOUR;
        while t < DAY0 + d * DAY + 19 * HOUR {
            let addr = if rng.below(3) == 0 {
                ip(&format!("192.0.2.{}", 5 + rng.below(4)))
            } else {
                ip(&format!("198.51.100.{}", 10 + rng.below(10)))
            };
            let mut qty = (0.5_f64.ln() + 0.25 * rng.normal()).exp();
            if rng.below(20) == 0 {
                qty *= 2.0;
            }
            let instrument = instruments[usize::try_from(rng.below(3)).unwrap()];
            let c = ctx(key, addr, t, instrument, qty);
            let a = e.assess(&c);
            assert_eq!(
                a.action,
                RiskAction::Allow,
                "steady key stepped up on day {d}: {}",
                a.explain()
            );
            s.max_score = s.max_score.max(a.score);
            for sig in &a.signals {
                *s.signals.entry(sig.name).or_default() += 1;
            }
            e.observe(&c);
            s.requests += 1;
            s.last_ms = t;
            t += 30_000 + rng.below(60_000);
        }
    }
    s
}

fn names(a: &Assessment) -> Vec<&'static str> {
    a.signals.iter().map(|s| s.name).collect()
}

#[test]
fn steady_key_is_never_stepped_up_and_new_prefix_at_10x_size_is() {
    let e = engine(RiskConfig::default());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let s = run_steady(&e, "algo-1", 14, &mut rng);
    println!(
        "steady key: {} requests over 14 days, max score {}, signals {:?}",
        s.requests, s.max_score, s.signals
    );
    assert!(s.requests > 5_000);
    let profile = e.profile("algo-1").unwrap();
    assert!(!profile.learning);
    let typical = profile.typical_order_size.unwrap();
    println!("profile: {profile:?}");

    // The same key, ten minutes later, from a network it never used (same
    // hosting company), at 10× its usual size.
    let now = s.last_ms + 10 * MIN;
    let c = ctx("algo-1", ip("198.51.101.7"), now, "BTC-USD", typical * 10.0);
    let a = e.assess(&c);
    println!("new prefix, 10x size: {}", a.explain());
    assert!(a.action >= RiskAction::StepUp, "{}", a.explain());
    assert!(!a.learning);
    let n = names(&a);
    assert!(
        n.contains(&"new_prefix") && n.contains(&"order_size"),
        "{n:?}"
    );

    // Either novelty alone is allowed.
    let a = e.assess(&ctx("algo-1", ip("198.51.101.7"), now, "BTC-USD", typical));
    assert_eq!(a.action, RiskAction::Allow, "{}", a.explain());
    let a = e.assess(&ctx(
        "algo-1",
        ip("198.51.100.12"),
        now,
        "BTC-USD",
        typical * 10.0,
    ));
    assert_eq!(a.action, RiskAction::Allow, "{}", a.explain());
    assert_eq!(names(&a), ["order_size"]);

    // From another country 10 minutes after trading in NL: impossible
    // travel on a new network, ASN and country: denied, with an alert.
    let c = ctx("algo-1", ip("203.0.113.9"), now, "BTC-USD", typical);
    let a = e.assess(&c);
    println!("impossible travel: {}", a.explain());
    assert_eq!(a.action, RiskAction::Deny);
    let n = names(&a);
    for want in ["impossible_travel", "new_prefix", "new_asn", "new_country"] {
        assert!(n.contains(&want), "{want} missing from {n:?}");
    }
    let alert = a.alert(&c).unwrap();
    assert_eq!(alert.kind, kind::RISK_DENY);
    assert_eq!(alert.details["score"], 100);

    // A request at 03:00 UTC from the usual place: unusual hour only.
    let night = DAY0 + 14 * DAY + 3 * HOUR;
    let a = e.assess(&ctx(
        "algo-1",
        ip("198.51.100.12"),
        night,
        "BTC-USD",
        typical,
    ));
    assert_eq!(names(&a), ["unusual_hour"], "{}", a.explain());
    assert_eq!(a.action, RiskAction::Allow);

    // A new user agent and a new instrument: small signals.
    let mut c = ctx("algo-1", ip("198.51.100.12"), now, "DOGE-USD", typical);
    c.user_agent = Some("curl/8.5");
    let a = e.assess(&c);
    assert_eq!(names(&a), ["new_user_agent", "new_instrument"]);
    assert_eq!(a.action, RiskAction::Allow);
}

#[test]
fn a_burst_far_above_the_usual_rate_is_velocity() {
    let e = engine(RiskConfig::default());
    let mut rng = Rng(7);
    let s = run_steady(&e, "algo-2", 2, &mut rng);
    let start = s.last_ms + 5 * MIN;
    let mut first = None;
    for i in 0..200 {
        let now = start + i * 250;
        let c = ctx("algo-2", ip("198.51.100.12"), now, "BTC-USD", 0.5);
        let a = e.assess(&c);
        if first.is_none() && names(&a).contains(&"velocity") {
            first = Some((i, a.explain()));
        }
        e.observe(&c);
    }
    let (i, explain) = first.expect("velocity never fired");
    println!(
        "velocity after {} requests in {} s: {explain}",
        i + 1,
        i / 4
    );
    assert!((59..=70).contains(&i), "{i}");
}

#[test]
fn learning_period_needs_50_requests_and_24_hours() {
    let e = engine(RiskConfig::default());
    let key = "fresh";
    let first = e.assess(&ctx(key, ip("198.51.100.1"), DAY0, "BTC-USD", 1.0));
    assert!(first.learning);
    assert!(first.signals.is_empty());
    // 60 requests in the first hour from scattered networks and sizes:
    // everything is new, nothing is held against it.
    for i in 0..60_u64 {
        let addr = ip(&format!("198.51.{}.{}", 100 + i % 2, i));
        let c = ctx(key, addr, DAY0 + i * MIN, "BTC-USD", (i + 1) as f64);
        let a = e.assess(&c);
        assert!(a.learning);
        assert_eq!(a.action, RiskAction::Allow, "{}", a.explain());
        e.observe(&c);
    }
    // 60 requests but only an hour old: still learning.
    let c = ctx(key, ip("192.0.2.1"), DAY0 + 2 * HOUR, "BTC-USD", 1_000.0);
    let a = e.assess(&c);
    assert!(a.learning);
    assert_eq!(a.action, RiskAction::Allow);
    // Impossible travel needs no history and counts even while learning.
    let a = e.assess(&ctx(
        key,
        ip("203.0.113.1"),
        DAY0 + 61 * MIN,
        "BTC-USD",
        1.0,
    ));
    assert!(a.learning);
    assert_eq!(names(&a), ["impossible_travel"]);
    assert_eq!(a.action, RiskAction::StepUp);
    // A day later the profile is established.
    let a = e.assess(&ctx(
        key,
        ip("198.51.100.3"),
        DAY0 + DAY + HOUR,
        "BTC-USD",
        30.0,
    ));
    assert!(!a.learning, "{}", a.explain());
    assert_eq!(a.action, RiskAction::Allow, "{}", a.explain());
}

#[test]
fn trusted_sources_raise_no_location_signals() {
    let e = engine(RiskConfig {
        trusted: vec!["2001:db8::/32".parse().unwrap()],
        ..RiskConfig::default()
    });
    let mut rng = Rng(11);
    let s = run_steady(&e, "algo-3", 2, &mut rng);
    let now = s.last_ms + 5 * MIN;
    // The US network is not trusted yet: impossible travel.
    let c = ctx("algo-3", ip("203.0.113.9"), now, "BTC-USD", 0.5);
    assert_eq!(e.assess(&c).action, RiskAction::Deny);
    assert!(e.trust("203.0.113.0/24".parse().unwrap()));
    let a = e.assess(&c);
    assert!(a.signals.is_empty(), "{}", a.explain());
    assert_eq!(a.action, RiskAction::Allow);
    // Configured trust works the same, for IPv6 too.
    let a = e.assess(&ctx("algo-3", ip("2001:db8:5::1"), now, "BTC-USD", 0.5));
    assert!(a.signals.is_empty(), "{}", a.explain());
    // Trust covers location, not behaviour.
    let a = e.assess(&ctx("algo-3", ip("203.0.113.9"), now, "BTC-USD", 50.0));
    assert_eq!(names(&a), ["order_size"]);
    assert!(e.untrust("203.0.113.0/24".parse().unwrap()));
    assert_eq!(e.assess(&c).action, RiskAction::Deny);
}

#[test]
fn credential_change_flags_the_next_day_and_steps_up_sensitive_actions() {
    let e = engine(RiskConfig::default());
    let mut rng = Rng(5);
    let s = run_steady(&e, "algo-4", 2, &mut rng);
    let now = s.last_ms + MIN;
    e.note_credential_change("acct-1", now);
    let trade = ctx(
        "algo-4",
        ip("198.51.100.12"),
        now + 10 * MIN,
        "BTC-USD",
        0.5,
    );
    let a = e.assess(&trade);
    assert_eq!(names(&a), ["recent_credential_change"]);
    assert_eq!(a.action, RiskAction::Allow, "a trade is still allowed");
    let withdrawal = RiskContext {
        sensitive_action: true,
        instrument: None,
        order_qty: None,
        ..trade
    };
    let a = e.assess(&withdrawal);
    assert_eq!(a.action, RiskAction::StepUp, "{}", a.explain());
    // By key id works too; and the signal fades after 24 h.
    e.note_credential_change("other-key", now);
    let later = RiskContext {
        now_unix_ms: now + 25 * HOUR,
        ..withdrawal
    };
    assert!(!names(&e.assess(&later)).contains(&"recent_credential_change"));
}

#[test]
fn memory_is_bounded_per_engine_and_per_key() {
    let e = engine(RiskConfig {
        max_profiles: 4,
        shards: 1,
        ..RiskConfig::default()
    });
    for k in 0..4_u64 {
        e.observe(&ctx(
            &format!("k{k}"),
            ip("198.51.100.1"),
            DAY0 + k,
            "BTC-USD",
            1.0,
        ));
    }
    assert_eq!(e.profile_count(), 4);
    // k0 is seen again, so k1 is now the least recently seen.
    e.observe(&ctx("k0", ip("198.51.100.1"), DAY0 + 10, "BTC-USD", 1.0));
    e.observe(&ctx("k4", ip("198.51.100.1"), DAY0 + 11, "BTC-USD", 1.0));
    assert_eq!(e.profile_count(), 4);
    assert!(e.profile("k1").is_none(), "least recently seen evicted");
    assert!(e.profile("k0").is_some() && e.profile("k4").is_some());

    // Per key: 20 networks, 10 user agents, 40 instruments.
    for i in 0..40_u64 {
        let addr = ip(&format!("10.{}.0.1", i % 20));
        let ua = format!("ua-{}", i % 10);
        let inst = format!("I{i}");
        let mut c = ctx("k0", addr, DAY0 + 100 + i, &inst, 1.0);
        c.user_agent = Some(&ua);
        e.observe(&c);
    }
    let p = e.profile("k0").unwrap();
    assert_eq!((p.prefixes, p.user_agents, p.instruments), (8, 4, 16));
}

#[test]
fn asn_table_longest_prefix_match() {
    let t = AsnTable::from_csv_str(
        "prefix,asn,country\n\
         # comment\n\
         \n\
         10.0.0.0/8, 1, nl\n\
         10.1.0.0/16,AS2,DE\n\
         10.1.2.0/24,3,FR\n\
         10.1.2.128/25,4,--\n\
         10.2.0.0/16,5,US\n\
         0.0.0.0/0,6,ZZ\n\
         2001:db8::/32,7,GB\n\
         2001:db8:1::/48,8,IE\n\
         2001:db8:1::1,9,IE\n",
    )
    .unwrap();
    assert_eq!(t.len(), 9);
    let asn = |s: &str| t.lookup(ip(s)).map(|i| i.asn);
    assert_eq!(asn("10.1.2.200"), Some(4));
    assert_eq!(asn("10.1.2.3"), Some(3));
    assert_eq!(asn("10.1.200.1"), Some(2));
    assert_eq!(asn("10.9.0.1"), Some(1));
    assert_eq!(asn("10.2.3.4"), Some(5));
    assert_eq!(asn("11.0.0.1"), Some(6), "default route");
    assert_eq!(asn("::ffff:10.1.2.3"), Some(3), "IPv4-mapped");
    assert_eq!(asn("2001:db8:1::1"), Some(9));
    assert_eq!(asn("2001:db8:1::2"), Some(8));
    assert_eq!(asn("2001:db8:2::1"), Some(7));
    assert_eq!(asn("2001:db9::1"), None);
    let (net, info) = t.lookup_prefix(ip("10.1.2.3")).unwrap();
    assert_eq!(net.to_string(), "10.1.2.0/24");
    assert_eq!(info.country_str(), "FR");
    assert_eq!(t.lookup(ip("10.9.0.1")).unwrap().country_str(), "NL");
    assert!(!t.lookup(ip("10.1.2.200")).unwrap().has_country());

    // Every bad line is reported with its number.
    let err = AsnTable::from_csv_str(
        "10.0.0.1/8,1,NL\n10.0.0.0/8,x,NL\n10.0.0.0/8,1,NLD\nnot-an-ip,1,NL\n1.0.0.0/8,1\n\
         2.0.0.0/8,1,NL\n2.0.0.0/8,2,NL\n",
    )
    .unwrap_err();
    let AsnTableError::Parse { problems } = err else {
        panic!("expected a parse error");
    };
    println!("{problems:#?}");
    // Line 5 (no country) is valid: an empty country is unknown.
    assert_eq!(problems.len(), 5);
    assert!(problems[0].starts_with("line 1:") && problems[0].contains("host bits"));
    assert!(problems[1].starts_with("line 2:"));
    assert!(problems[2].starts_with("line 3:"));
    assert!(problems[3].starts_with("line 4:"));
    assert!(problems[4].starts_with("line 7:") && problems[4].contains("duplicate"));

    // From a file.
    let path = std::env::temp_dir().join(format!("rampart-asn-{}.csv", std::process::id()));
    std::fs::write(&path, ASN_CSV).unwrap();
    let t = AsnTable::from_csv_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(t.lookup(ip("198.51.101.1")).unwrap().asn, 64500);
    assert!(matches!(
        AsnTable::from_csv_file("/nonexistent/asn.csv"),
        Err(AsnTableError::Io { .. })
    ));
}

#[test]
fn engine_is_send_and_sync_and_config_is_validated() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RiskEngine>();
    let err = RiskEngine::new(
        RiskConfig {
            max_profiles: 0,
            shards: 3,
            rate_alpha: 0.0,
            ..RiskConfig::default()
        },
        None,
    )
    .unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
}
