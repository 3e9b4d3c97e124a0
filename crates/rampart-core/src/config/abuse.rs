//! `[abuse]` (failed-authentication defense) and `[risk]` (adaptive risk).
//!
//! ```toml
//! [abuse]
//! enabled = true
//! trusted = ["10.0.0.0/8"]     # never IP/prefix-locked or throttled (their pairs still lock)
//! max_failures = 10            # per (source IP, key id) before a lockout (PCI DSS 8.3.4: ≤ 10)
//! lockout = "30m"              # first lockout (≥ 30m), doubled on repeats
//! ip_max_failures = 30         # per source IP per hour, across key ids
//! prefix_max_failures = 150    # per /24 (IPv6 /64) per hour
//! detect_min_ips = 50          # distributed attack: distinct failing IPs in 10 min …
//! detect_min_keys = 100        # … and distinct failing key ids, with < 20 % new-source successes
//!
//! [risk]
//! enabled = true
//! asn_table = "asn.csv"        # optional: `prefix,asn,country` lines
//! trusted = ["192.0.2.0/24"]   # no location signals from these
//! step_up = 50                 # score thresholds (0–100)
//! throttle = 70
//! deny = 90
//! learning_requests = 50       # a key's profile learns for this many requests …
//! learning_period = "24h"      # … and this long before novelty counts
//! sensitive_actions = ["Withdraw"]   # stricter thresholds (25 / 60 / 90)
//! credential_change_actions = ["AddWithdrawalAddress"]  # success → `recent_credential_change`
//! throttle_rate = 10           # requests per `throttle_per` while throttled
//! throttle_per = "1m"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{k, Compiler, RouteConfig};

/// `[abuse]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseConfig {
    /// Off: no failed-authentication tracking at all.
    pub enabled: bool,
    /// Sources never IP- or prefix-locked or throttled.
    pub trusted: Vec<IpNet>,
    /// Failures of one (IP, key id) pair before it is locked.
    pub max_failures: u32,
    /// First lockout of a pair or IP.
    pub lockout: Duration,
    /// Failures per IP per hour before the IP is locked.
    pub ip_max_failures: u32,
    /// Failures per /24 (/64) per hour before the prefix is locked.
    pub prefix_max_failures: u32,
    /// Distinct failing IPs in 10 min for the distributed-attack alarm.
    pub detect_min_ips: u32,
    /// Distinct failing key ids in 10 min for the alarm.
    pub detect_min_keys: u32,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            trusted: Vec::new(),
            max_failures: 10,
            lockout: Duration::from_secs(30 * 60),
            ip_max_failures: 30,
            prefix_max_failures: 150,
            detect_min_ips: 50,
            detect_min_keys: 100,
        }
    }
}

/// `[risk]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskSettings {
    /// Off: no scoring.
    pub enabled: bool,
    /// IP-to-ASN/country table (CSV).
    pub asn_table: Option<PathBuf>,
    /// Sources that never add location signals.
    pub trusted: Vec<IpNet>,
    /// Step-up threshold.
    pub step_up: u8,
    /// Throttle threshold.
    pub throttle: u8,
    /// Deny threshold.
    pub deny: u8,
    /// Requests a new key's profile learns for.
    pub learning_requests: u64,
    /// Time a new key's profile learns for.
    pub learning_period: Duration,
    /// Actions scored with the stricter thresholds.
    pub sensitive_actions: Vec<String>,
    /// Actions whose success changes credentials (MFA, keys, the address
    /// book): the account's and key's next requests carry the
    /// `recent_credential_change` signal.
    pub credential_change_actions: Vec<String>,
    /// Requests allowed per `throttle_per` while a key is throttled.
    pub throttle_rate: u32,
    /// The throttle period.
    pub throttle_per: Duration,
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            asn_table: None,
            trusted: Vec::new(),
            step_up: 50,
            throttle: 70,
            deny: 90,
            learning_requests: 50,
            learning_period: Duration::from_secs(24 * 3600),
            sensitive_actions: vec!["Withdraw".to_owned()],
            credential_change_actions: Vec::new(),
            throttle_rate: 10,
            throttle_per: Duration::from_secs(60),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAbuse {
    enabled: Option<bool>,
    trusted: Option<Vec<String>>,
    max_failures: Option<u32>,
    lockout: Option<String>,
    ip_max_failures: Option<u32>,
    prefix_max_failures: Option<u32>,
    detect_min_ips: Option<u32>,
    detect_min_keys: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    enabled: Option<bool>,
    asn_table: Option<String>,
    trusted: Option<Vec<String>>,
    step_up: Option<u8>,
    throttle: Option<u8>,
    deny: Option<u8>,
    learning_requests: Option<u64>,
    learning_period: Option<String>,
    sensitive_actions: Option<Vec<String>>,
    credential_change_actions: Option<Vec<String>>,
    throttle_rate: Option<u32>,
    throttle_per: Option<String>,
}

impl Compiler<'_> {
    fn nets(&mut self, list: Option<Vec<String>>, section: &str) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, s) in list.unwrap_or_default().iter().enumerate() {
            let parsed = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) if n.trunc() == n => out.push(n),
                Ok(_) => self.err(
                    &[k(section), k("trusted"), super::Seg::Index(i)],
                    format!("`{s}` has host bits set"),
                ),
                Err(_) => self.err(
                    &[k(section), k("trusted"), super::Seg::Index(i)],
                    format!("`{s}` is not an IP network (e.g. `10.0.0.0/8`)"),
                ),
            }
        }
        out
    }

    pub(super) fn abuse(&mut self, table: &toml::Table) -> AbuseConfig {
        let raw = match table.get("abuse") {
            Some(v) => self
                .de::<RawAbuse>(v.clone(), &[k("abuse")])
                .unwrap_or_default(),
            None => RawAbuse::default(),
        };
        let d = AbuseConfig::default();
        let p = |n: &str| [k("abuse"), k(n)];
        let trusted = self.nets(raw.trusted, "abuse");
        let max_failures = raw.max_failures.unwrap_or(d.max_failures);
        if !(1..=10).contains(&max_failures) {
            self.err(
                &p("max_failures"),
                "must be between 1 and 10 (PCI DSS 8.3.4 locks after at most 10 attempts)",
            );
        }
        let lockout = raw
            .lockout
            .map_or(d.lockout, |s| self.duration(&s, &p("lockout")));
        if lockout < Duration::from_secs(30 * 60) {
            self.err(&p("lockout"), "must be at least 30m (PCI DSS 8.3.4)");
        }
        if lockout > Duration::from_secs(24 * 3600) {
            self.err(&p("lockout"), "must be at most 24h");
        }
        let mut positive = |v: Option<u32>, def: u32, name: &str| {
            let v = v.unwrap_or(def);
            if v == 0 {
                self.err(&p(name), "must be greater than zero");
            }
            v
        };
        AbuseConfig {
            enabled: raw.enabled.unwrap_or(d.enabled),
            trusted,
            max_failures,
            lockout,
            ip_max_failures: positive(raw.ip_max_failures, d.ip_max_failures, "ip_max_failures"),
            prefix_max_failures: positive(
                raw.prefix_max_failures,
                d.prefix_max_failures,
                "prefix_max_failures",
            ),
            detect_min_ips: positive(raw.detect_min_ips, d.detect_min_ips, "detect_min_ips"),
            detect_min_keys: positive(raw.detect_min_keys, d.detect_min_keys, "detect_min_keys"),
        }
    }

    pub(super) fn risk(&mut self, table: &toml::Table, routes: &[RouteConfig]) -> RiskSettings {
        let raw = match table.get("risk") {
            Some(v) => self
                .de::<RawRisk>(v.clone(), &[k("risk")])
                .unwrap_or_default(),
            None => RawRisk::default(),
        };
        let d = RiskSettings::default();
        let p = |n: &str| [k("risk"), k(n)];
        let trusted = self.nets(raw.trusted, "risk");
        let asn_table = raw.asn_table.map(|f| self.file(&f, &p("asn_table")));
        let step_up = raw.step_up.unwrap_or(d.step_up);
        let throttle = raw.throttle.unwrap_or(d.throttle);
        let deny = raw.deny.unwrap_or(d.deny);
        if !(1..=100).contains(&step_up) || step_up > throttle || throttle > deny || deny > 100 {
            self.err(
                &p("step_up"),
                "thresholds must satisfy 1 ≤ step_up ≤ throttle ≤ deny ≤ 100",
            );
        }
        let learning_period = raw.learning_period.map_or(d.learning_period, |s| {
            self.duration(&s, &p("learning_period"))
        });
        // The default list may name an action this config lacks; only a
        // list the operator wrote is checked against the routes.
        let given = raw.sensitive_actions.is_some();
        let sensitive_actions = raw.sensitive_actions.unwrap_or(d.sensitive_actions);
        if given {
            for a in &sensitive_actions {
                if !routes.iter().any(|r| &r.action == a) {
                    self.err(
                        &p("sensitive_actions"),
                        format!("no route has `action = \"{a}\"`"),
                    );
                }
            }
        }
        let credential_change_actions = raw.credential_change_actions.unwrap_or_default();
        for a in &credential_change_actions {
            if !routes.iter().any(|r| &r.action == a) {
                self.err(
                    &p("credential_change_actions"),
                    format!("no route has `action = \"{a}\"`"),
                );
            }
        }
        let throttle_rate = raw.throttle_rate.unwrap_or(d.throttle_rate);
        if throttle_rate == 0 {
            self.err(&p("throttle_rate"), "must be greater than zero");
        }
        let throttle_per = raw
            .throttle_per
            .map_or(d.throttle_per, |s| self.duration(&s, &p("throttle_per")));
        RiskSettings {
            enabled: raw.enabled.unwrap_or(d.enabled),
            asn_table,
            trusted,
            step_up,
            throttle,
            deny,
            learning_requests: raw.learning_requests.unwrap_or(d.learning_requests),
            learning_period,
            sensitive_actions,
            credential_change_actions,
            throttle_rate,
            throttle_per,
        }
    }
}
