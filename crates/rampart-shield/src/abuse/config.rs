//! [`AuthGuardConfig`], its defaults and their validation.

use std::time::Duration;

use ipnet::IpNet;

use crate::gcra::Quota;

/// A failure budget: at most `max_failures` failures, forgotten one at a
/// time at a steady `max_failures` per `window` (a leaky bucket, run by the
/// crate's exact GCRA). `max_failures` failures in a burst reach the limit;
/// after the last failure the count drains to zero in `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    /// Failures that reach the limit; the failure that fills the budget is
    /// the one that triggers the consequence (lock, alert).
    pub max_failures: u32,
    /// Time for a full budget to drain.
    pub window: Duration,
}

/// How long a lock lasts. Each lock of the same entity within
/// `strike_memory` of the end of its previous lock doubles the duration,
/// from `base` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    /// First lock's duration.
    pub base: Duration,
    /// Longest lock.
    pub max: Duration,
    /// How long after a lock ends a new lock still counts as a repeat.
    pub strike_memory: Duration,
}

impl LockPolicy {
    /// The duration of a lock after `strikes` earlier locks in memory.
    pub(crate) fn duration(&self, strikes: u32) -> Duration {
        let factor = 1_u32.checked_shl(strikes.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// A pre-authentication rate: `rate` attempts per `period`, bursts of
/// `burst` (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Attempts per period in steady state.
    pub rate: u32,
    /// The period.
    pub period: Duration,
    /// Attempts allowed at once.
    pub burst: u32,
}

/// Every threshold, window and capacity of [`super::AuthGuard`].
///
/// [`Default`] holds the production values; each field's doc gives its
/// default and the reason for it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthGuardConfig {
    /// Failures of one (source IP, key id) pair before the pair is locked.
    /// Default 10 failures draining over 24 h: PCI DSS 8.3.4 allows at
    /// most 10 attempts, and a slow drain keeps a patient guesser (one try
    /// every few hours) from ever getting a fresh budget. A success resets
    /// the pair.
    pub pair: FailureLimit,
    /// Pair lock duration. Default 30 min (the PCI DSS 8.3.4 minimum),
    /// doubling per repeat within 24 h, capped at 24 h.
    pub pair_lock: LockPolicy,
    /// Pair failures before [`super::Admission::Delay`] starts. Default 3:
    /// two typos cost nothing.
    pub delay_after: u32,
    /// The first delay; it doubles per further failure. Default 250 ms.
    pub delay_base: Duration,
    /// The longest delay. Default 2 s: enough to make online guessing slow,
    /// short enough not to tie up connections.
    pub delay_max: Duration,
    /// Failures of one source IP (over all key ids) before the IP is
    /// locked. Default 30 draining over 1 h: one key's owner locks their
    /// pair at 10 long before this, so 30 means several keys or repeated
    /// pair lockouts.
    pub ip: FailureLimit,
    /// IP lock duration. Default 30 min doubling to 24 h.
    pub ip_lock: LockPolicy,
    /// Failures of one source prefix before it is locked. Default 150
    /// draining over 1 h: five locked IPs' worth, so only a prefix far over
    /// what any single source may do gets locked.
    pub prefix: FailureLimit,
    /// Prefix lock duration. Default 15 min doubling to 6 h: a prefix may
    /// hold innocent neighbours (CGNAT, a cloud region).
    pub prefix_lock: LockPolicy,
    /// IPv4 prefix length grouping sources. Default 24.
    pub ipv4_prefix_len: u8,
    /// IPv6 prefix length grouping sources. Default 64 (one subscriber's
    /// LAN: anyone holding one address can use the whole /64).
    pub ipv6_prefix_len: u8,
    /// Failures of one key id (over all sources) that mark it targeted.
    /// Default 20 draining over 1 h.
    pub key: FailureLimit,
    /// Distinct failing source IPs also required to mark a key targeted.
    /// Default 3: one source is handled by its pair lock.
    pub key_min_sources: u32,
    /// How long a key stays targeted after its last failure. Default 1 h.
    pub key_targeted_for: Duration,
    /// While a key is targeted, the attempts on it allowed from unknown
    /// sources (no recent success for this key, not trusted), all such
    /// sources together. Default 5 per 15 min, burst 5.
    pub key_unknown_quota: RateSpec,
    /// The window distributed detection looks at. Default 10 min.
    pub detect_window: Duration,
    /// Distinct failing source IPs in the window needed to declare an
    /// attack. Default 50.
    pub detect_min_ips: u32,
    /// Distinct failing key ids in the window needed to declare an attack.
    /// Default 100.
    pub detect_min_keys: u32,
    /// The attack also needs the success ratio of attempts from new
    /// sources (pairs without a recent success) below this percentage.
    /// Default 20: stuffing lists hit a few percent, legitimate new
    /// sources mostly succeed.
    pub detect_max_success_percent: u8,
    /// The attack flag clears once the attack condition has not held for
    /// this long. Default 15 min.
    pub quiet_period: Duration,
    /// While under attack, attempts allowed per unknown source IP. Default
    /// 2 per 10 min, burst 2.
    pub attack_ip_quota: RateSpec,
    /// While under attack, attempts allowed per unknown source prefix.
    /// Default 10 per 10 min, burst 10.
    pub attack_prefix_quota: RateSpec,
    /// How long a success keeps a (source, key) pair and a source IP
    /// known-good. Default 30 days.
    pub known_good_ttl: Duration,
    /// Operator-trusted sources: never IP/prefix-locked or throttled (their
    /// pairs still lock: the 10-failure limit is per user).
    pub trusted: Vec<IpNet>,
    /// Tracked (source, key) pairs. Default 131 072 (≈ 30 MiB at most,
    /// with the first 64 bytes of each key id kept for operators).
    pub max_pairs: usize,
    /// Tracked source IPs. Default 65 536.
    pub max_ips: usize,
    /// Tracked source prefixes. Default 32 768.
    pub max_prefixes: usize,
    /// Tracked key ids. Default 65 536.
    pub max_keys: usize,
    /// Remembered known-good pairs. Default 262 144 (≈ 9 MiB); when full
    /// an arbitrary one is forgotten (which is safe: it only becomes
    /// "unknown").
    pub max_known_pairs: usize,
    /// Remembered known-good source IPs. Default 131 072.
    pub max_known_ips: usize,
    /// Distinct failing IPs and key ids remembered for detection, each.
    /// Counts saturate here. Default 4 096.
    pub distinct_cap: usize,
    /// When a table is full of live state, unknown sources needing a new
    /// entry are refused for this long. Default 1 min.
    pub saturation_hold: Duration,
    /// Lock shards (a power of two, 1..=1024). Default 16.
    pub shards: usize,
}

impl Default for AuthGuardConfig {
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 3_600;
        Self {
            pair: FailureLimit {
                max_failures: 10,
                window: Duration::from_secs(24 * HOUR),
            },
            pair_lock: LockPolicy {
                base: Duration::from_secs(30 * MIN),
                max: Duration::from_secs(24 * HOUR),
                strike_memory: Duration::from_secs(24 * HOUR),
            },
            delay_after: 3,
            delay_base: Duration::from_millis(250),
            delay_max: Duration::from_secs(2),
            ip: FailureLimit {
                max_failures: 30,
                window: Duration::from_secs(HOUR),
            },
            ip_lock: LockPolicy {
                base: Duration::from_secs(30 * MIN),
                max: Duration::from_secs(24 * HOUR),
                strike_memory: Duration::from_secs(24 * HOUR),
            },
            prefix: FailureLimit {
                max_failures: 150,
                window: Duration::from_secs(HOUR),
            },
            prefix_lock: LockPolicy {
                base: Duration::from_secs(15 * MIN),
                max: Duration::from_secs(6 * HOUR),
                strike_memory: Duration::from_secs(24 * HOUR),
            },
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 64,
            key: FailureLimit {
                max_failures: 20,
                window: Duration::from_secs(HOUR),
            },
            key_min_sources: 3,
            key_targeted_for: Duration::from_secs(HOUR),
            key_unknown_quota: RateSpec {
                rate: 5,
                period: Duration::from_secs(15 * MIN),
                burst: 5,
            },
            detect_window: Duration::from_secs(10 * MIN),
            detect_min_ips: 50,
            detect_min_keys: 100,
            detect_max_success_percent: 20,
            quiet_period: Duration::from_secs(15 * MIN),
            attack_ip_quota: RateSpec {
                rate: 2,
                period: Duration::from_secs(10 * MIN),
                burst: 2,
            },
            attack_prefix_quota: RateSpec {
                rate: 10,
                period: Duration::from_secs(10 * MIN),
                burst: 10,
            },
            known_good_ttl: Duration::from_secs(30 * 24 * HOUR),
            trusted: Vec::new(),
            max_pairs: 131_072,
            max_ips: 65_536,
            max_prefixes: 32_768,
            max_keys: 65_536,
            max_known_pairs: 262_144,
            max_known_ips: 131_072,
            distinct_cap: 4_096,
            saturation_hold: Duration::from_secs(60),
            shards: 16,
        }
    }
}

/// Why an [`AuthGuardConfig`] was rejected: every problem found, each
/// naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid auth guard config: {}", .problems.join("; "))]
pub struct ConfigError {
    /// One line per problem, `` `field`: what is wrong ``.
    pub problems: Vec<String>,
}

/// The validated, precomputed form of the config.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub cfg: AuthGuardConfig,
    pub pair: Quota,
    pub ip: Quota,
    pub prefix: Quota,
    pub key: Quota,
    pub key_unknown: Quota,
    pub attack_ip: Quota,
    pub attack_prefix: Quota,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Compiled {
    pub fn new(cfg: AuthGuardConfig) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut limit = |name: &str, l: &FailureLimit| {
            Quota::new(l.max_failures, l.window, l.max_failures)
                .map_err(|e| problems.push(format!("`{name}`: {e}")))
                .ok()
        };
        let pair = limit("pair", &cfg.pair);
        let ip = limit("ip", &cfg.ip);
        let prefix = limit("prefix", &cfg.prefix);
        let key = limit("key", &cfg.key);
        let mut rate = |name: &str, r: &RateSpec| {
            Quota::new(r.rate, r.period, r.burst)
                .map_err(|e| problems.push(format!("`{name}`: {e}")))
                .ok()
        };
        let key_unknown = rate("key_unknown_quota", &cfg.key_unknown_quota);
        let attack_ip = rate("attack_ip_quota", &cfg.attack_ip_quota);
        let attack_prefix = rate("attack_prefix_quota", &cfg.attack_prefix_quota);
        for (name, p) in [
            ("pair_lock", &cfg.pair_lock),
            ("ip_lock", &cfg.ip_lock),
            ("prefix_lock", &cfg.prefix_lock),
        ] {
            if p.base.is_zero() {
                problems.push(format!("`{name}.base`: must be longer than zero"));
            }
            if p.max < p.base {
                problems.push(format!("`{name}.max`: must be at least `base`"));
            }
        }
        if cfg.delay_max < cfg.delay_base {
            problems.push("`delay_max`: must be at least `delay_base`".into());
        }
        if cfg.ipv4_prefix_len > 32 {
            problems.push("`ipv4_prefix_len`: must be at most 32".into());
        }
        if cfg.ipv6_prefix_len > 128 {
            problems.push("`ipv6_prefix_len`: must be at most 128".into());
        }
        for (name, n) in [
            ("detect_window", cfg.detect_window),
            ("quiet_period", cfg.quiet_period),
            ("known_good_ttl", cfg.known_good_ttl),
            ("key_targeted_for", cfg.key_targeted_for),
        ] {
            if n.is_zero() {
                problems.push(format!("`{name}`: must be longer than zero"));
            }
        }
        if cfg.detect_max_success_percent > 100 {
            problems.push("`detect_max_success_percent`: must be at most 100".into());
        }
        let cap = u32::try_from(cfg.distinct_cap).unwrap_or(u32::MAX);
        if cfg.detect_min_ips == 0 || cfg.detect_min_ips > cap {
            problems.push("`detect_min_ips`: must be between 1 and `distinct_cap`".into());
        }
        if cfg.detect_min_keys == 0 || cfg.detect_min_keys > cap {
            problems.push("`detect_min_keys`: must be between 1 and `distinct_cap`".into());
        }
        if cfg.key_min_sources > super::KEY_SOURCE_SLOTS {
            problems.push(format!(
                "`key_min_sources`: must be at most {}",
                super::KEY_SOURCE_SLOTS
            ));
        }
        if !cfg.shards.is_power_of_two() || cfg.shards > 1024 {
            problems.push("`shards`: must be a power of two between 1 and 1024".into());
        }
        for (name, n) in [
            ("max_pairs", cfg.max_pairs),
            ("max_ips", cfg.max_ips),
            ("max_prefixes", cfg.max_prefixes),
            ("max_keys", cfg.max_keys),
            ("max_known_pairs", cfg.max_known_pairs),
            ("max_known_ips", cfg.max_known_ips),
            ("distinct_cap", cfg.distinct_cap),
        ] {
            if n == 0 {
                problems.push(format!("`{name}`: must be at least 1"));
            }
        }
        if ns(cfg.detect_window) < 8 {
            problems.push("`detect_window`: must be at least 8 ns".into());
        }
        match (
            pair,
            ip,
            prefix,
            key,
            key_unknown,
            attack_ip,
            attack_prefix,
            problems.is_empty(),
        ) {
            (
                Some(pair),
                Some(ip),
                Some(prefix),
                Some(key),
                Some(key_unknown),
                Some(attack_ip),
                Some(attack_prefix),
                true,
            ) => Ok(Self {
                cfg,
                pair,
                ip,
                prefix,
                key,
                key_unknown,
                attack_ip,
                attack_prefix,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// A duration in nanoseconds, saturating.
pub(crate) fn dur_ns(d: Duration) -> u64 {
    ns(d)
}
