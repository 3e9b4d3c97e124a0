//! Adaptive risk: per-principal behaviour profiles and a 0–100 risk score
//! with named signals.
//!
//! [`RiskEngine::assess`] scores an authenticated request against what its
//! key id usually does; [`RiskEngine::observe`] (called by the gateway only
//! for requests it let through) teaches the profile. Scores map to a
//! [`RiskAction`] through [`Thresholds`]. The engine does no I/O, reads no
//! clock (time comes in [`RiskContext::now_unix_ms`]) and spawns nothing;
//! [`AsnTable::from_csv_file`] reads its file once, at start-up.
//!
//! # Signals
//!
//! | name | default points | fires when |
//! | --- | --- | --- |
//! | `new_prefix` | 25 | the source /24 (IPv6 /48) is not among the key's last 8 |
//! | `new_asn` | 15 | the source ASN is not among the key's last 4 (needs an [`AsnTable`]) |
//! | `new_country` | 25 | the source country is not among the key's last 4 |
//! | `impossible_travel` | 50 | a different country than a request seen < 1 h ago, unless the new country is a habitual one (≥ 5 requests) |
//! | `new_user_agent` | 10 | the User-Agent (or its absence) is not among the key's last 4 |
//! | `velocity` | 25 | ≥ 60 requests in the last minute and ≥ 10× the key's usual rate per active minute |
//! | `order_size` | 35 | size ≥ 4× the usual (geometric mean) *and* ≥ 3 σ above it in log space |
//! | `new_instrument` | 10 | an instrument not among the key's last 16, after ≥ 20 orders |
//! | `unusual_hour` | 10 | the UTC hour and its two neighbours hold < 2 % of the key's history (≥ 100 requests) |
//! | `recent_credential_change` | 30 | MFA or address book changed for the key or account < 24 h ago |
//!
//! The score is the sum, capped at 100. Default actions: allow below 50,
//! MFA step-up from 50, throttle from 70, deny from 90; for sensitive
//! actions (withdrawals, address-book or key management) step-up from 25,
//! throttle from 60, deny from 90. So one novelty alone never steps up a
//! trade; a new prefix with a 10× order (60) or a new country on a new
//! network (65) does; a credential change followed by a withdrawal does;
//! impossible travel to a new country is denied.
//!
//! # Learning
//!
//! A key is *learning* until it has at least 50 observed requests **and**
//! is 24 h old. While learning, novelty signals (`new_*`, `velocity`,
//! `order_size`, `unusual_hour`) are not raised — everything is new — but
//! `impossible_travel` and `recent_credential_change`, which need no
//! history, are. An evicted profile starts learning again.
//!
//! # Trust
//!
//! Sources in [`RiskConfig::trusted`] or added with [`RiskEngine::trust`]
//! never raise location signals (`new_prefix`, `new_asn`, `new_country`,
//! `impossible_travel`); behaviour signals still apply.
//!
//! # Memory
//!
//! At most [`RiskConfig::max_profiles`] profiles (default 50 000, about
//! 1.7 KiB each at the default per-key limits, so ≈ 85 MiB at most); when
//! full, the least recently seen profile in the shard is dropped. Each
//! profile keeps at most 8 prefixes, 4 ASNs, 4 countries, 4 user agents and
//! 16 instruments (least recently seen dropped first), fixed-size rate,
//! size and hour statistics. Credential changes are remembered for at
//! most 65 536 keys/accounts.
//!
//! # IP-to-ASN data
//!
//! [`AsnTable`] loads `prefix,asn,country` CSV (see its docs). MaxMind's
//! MMDB format is not read directly: the `maxminddb` crate is ISC-licensed
//! (on the allowed list), but this crate keeps to no new dependencies; a
//! GeoLite2-ASN + GeoLite2-Country export to this CSV is a small script.

mod asn;
mod profile;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

pub use self::asn::{AsnInfo, AsnTable, AsnTableError};
use self::profile::{Features, Profile};
use crate::abuse::{octets, prefix_of, IdentityState};
use crate::alert::{kind, Alert, Severity};
use crate::KeyHasher;

/// Score thresholds: the lowest score for each action. Scores below
/// `step_up` are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Require MFA step-up from this score.
    pub step_up: u8,
    /// Throttle from this score.
    pub throttle: u8,
    /// Deny from this score.
    pub deny: u8,
}

impl Thresholds {
    /// The action for `score`.
    #[must_use]
    pub fn action(&self, score: u8) -> RiskAction {
        if score >= self.deny {
            RiskAction::Deny
        } else if score >= self.throttle {
            RiskAction::Throttle
        } else if score >= self.step_up {
            RiskAction::StepUp
        } else {
            RiskAction::Allow
        }
    }
}

/// Points per signal (see the module docs for when each fires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiskWeights {
    /// `new_prefix`: an unseen source network. Default 25.
    pub new_prefix: u8,
    /// `new_asn`: an unseen ASN. Default 15.
    pub new_asn: u8,
    /// `new_country`: an unseen country. Default 25.
    pub new_country: u8,
    /// `impossible_travel`: a country change too fast to travel. Default 50.
    pub impossible_travel: u8,
    /// `new_user_agent`: an unseen User-Agent. Default 10.
    pub new_user_agent: u8,
    /// `velocity`: a burst far above the usual rate. Default 25.
    pub velocity: u8,
    /// `order_size`: an order far above the usual size. Default 35.
    pub order_size: u8,
    /// `new_instrument`: an unseen instrument. Default 10.
    pub new_instrument: u8,
    /// `unusual_hour`: a rarely active hour. Default 10.
    pub unusual_hour: u8,
    /// `recent_credential_change`: MFA or address book just changed.
    /// Default 30.
    pub recent_credential_change: u8,
}

impl Default for RiskWeights {
    fn default() -> Self {
        Self {
            new_prefix: 25,
            new_asn: 15,
            new_country: 25,
            impossible_travel: 50,
            new_user_agent: 10,
            velocity: 25,
            order_size: 35,
            new_instrument: 10,
            unusual_hour: 10,
            recent_credential_change: 30,
        }
    }
}

/// Every threshold, weight and bound of [`RiskEngine`]; [`Default`] holds
/// the production values described in the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskConfig {
    /// Observed requests before a key leaves learning. Default 50.
    pub learning_min_requests: u64,
    /// Age (since the first observed request) before a key leaves
    /// learning. Default 24 h, so a full day of habits is seen.
    pub learning_min_age: Duration,
    /// Score → action for ordinary requests. Default 50 / 70 / 90.
    pub thresholds: Thresholds,
    /// Score → action when [`RiskContext::sensitive_action`]. Default
    /// 25 / 60 / 90.
    pub sensitive_thresholds: Thresholds,
    /// Points per signal.
    pub weights: RiskWeights,
    /// Profiles kept. Default 50 000.
    pub max_profiles: usize,
    /// Source prefixes remembered per key. Default 8.
    pub max_prefixes: usize,
    /// ASNs remembered per key. Default 4.
    pub max_asns: usize,
    /// Countries remembered per key. Default 4.
    pub max_countries: usize,
    /// User agents remembered per key. Default 4.
    pub max_user_agents: usize,
    /// Instruments remembered per key. Default 16.
    pub max_instruments: usize,
    /// IPv4 prefix length of a "source network". Default 24.
    pub ipv4_prefix_len: u8,
    /// IPv6 prefix length of a "source network". Default 48 (a site).
    pub ipv6_prefix_len: u8,
    /// A country change faster than this is impossible travel. Default 1 h.
    pub impossible_travel_window: Duration,
    /// Requests from a country after which switching to it is not
    /// impossible travel (multi-homed or VPN users). Default 5.
    pub travel_habitual_requests: u32,
    /// Velocity fires at this multiple of the usual rate. Default 10.
    pub velocity_factor: f64,
    /// …and at least this many requests in the last minute. Default 60.
    pub velocity_min_per_minute: f64,
    /// Active minutes of history before velocity is judged. Default 10.
    pub velocity_min_active_minutes: u32,
    /// EWMA weight of each active minute in the usual rate. Default 0.05.
    pub rate_alpha: f64,
    /// EWMA weight of each order in the size statistics. Default 0.02.
    pub size_alpha: f64,
    /// Orders with a size before order sizes are judged. Default 20.
    pub size_min_samples: u32,
    /// Standard deviations (of ln size) above the mean to fire. Default 3.
    pub size_sigmas: f64,
    /// Minimum multiple of the usual size to fire. Default 4.
    pub size_min_ratio: f64,
    /// Orders with an instrument before new instruments are judged.
    /// Default 20.
    pub instrument_min_samples: u32,
    /// Requests before hours of day are judged. Default 100.
    pub hour_min_samples: u32,
    /// An hour (with its neighbours) under this share of the history is
    /// unusual. Default 2 %.
    pub unusual_hour_percent: f64,
    /// How long a credential change raises its signal. Default 24 h.
    pub credential_change_window: Duration,
    /// Keys/accounts whose last credential change is remembered. Default
    /// 65 536.
    pub max_credential_changes: usize,
    /// Operator-trusted sources: no location signals.
    pub trusted: Vec<IpNet>,
    /// Most trusted prefixes (config plus [`RiskEngine::trust`]). Default
    /// 4 096.
    pub max_trusted: usize,
    /// Lock shards (a power of two, 1..=1024). Default 16.
    pub shards: usize,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            learning_min_requests: 50,
            learning_min_age: Duration::from_secs(24 * 3_600),
            thresholds: Thresholds {
                step_up: 50,
                throttle: 70,
                deny: 90,
            },
            sensitive_thresholds: Thresholds {
                step_up: 25,
                throttle: 60,
                deny: 90,
            },
            weights: RiskWeights::default(),
            max_profiles: 50_000,
            max_prefixes: 8,
            max_asns: 4,
            max_countries: 4,
            max_user_agents: 4,
            max_instruments: 16,
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 48,
            impossible_travel_window: Duration::from_secs(3_600),
            travel_habitual_requests: 5,
            velocity_factor: 10.0,
            velocity_min_per_minute: 60.0,
            velocity_min_active_minutes: 10,
            rate_alpha: 0.05,
            size_alpha: 0.02,
            size_min_samples: 20,
            size_sigmas: 3.0,
            size_min_ratio: 4.0,
            instrument_min_samples: 20,
            hour_min_samples: 100,
            unusual_hour_percent: 2.0,
            credential_change_window: Duration::from_secs(24 * 3_600),
            max_credential_changes: 65_536,
            trusted: Vec::new(),
            max_trusted: 4_096,
            shards: 16,
        }
    }
}

/// Why a [`RiskConfig`] was rejected: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid risk config: {}", .problems.join("; "))]
pub struct RiskConfigError {
    /// One line per problem, `` `field`: what is wrong ``.
    pub problems: Vec<String>,
}

impl RiskConfig {
    fn validate(&self) -> Result<(), RiskConfigError> {
        let mut p = Vec::new();
        for (name, t) in [
            ("thresholds", &self.thresholds),
            ("sensitive_thresholds", &self.sensitive_thresholds),
        ] {
            if !(1 <= t.step_up && t.step_up <= t.throttle && t.throttle <= t.deny && t.deny <= 100)
            {
                p.push(format!(
                    "`{name}`: need 1 ≤ step_up ≤ throttle ≤ deny ≤ 100"
                ));
            }
        }
        for (name, n) in [
            ("max_profiles", self.max_profiles),
            ("max_prefixes", self.max_prefixes),
            ("max_asns", self.max_asns),
            ("max_countries", self.max_countries),
            ("max_user_agents", self.max_user_agents),
            ("max_instruments", self.max_instruments),
            ("max_credential_changes", self.max_credential_changes),
        ] {
            if n == 0 {
                p.push(format!("`{name}`: must be at least 1"));
            }
        }
        for (name, n, max) in [
            ("max_prefixes", self.max_prefixes, 256),
            ("max_asns", self.max_asns, 256),
            ("max_countries", self.max_countries, 256),
            ("max_user_agents", self.max_user_agents, 256),
            ("max_instruments", self.max_instruments, 1_024),
        ] {
            if n > max {
                p.push(format!("`{name}`: must be at most {max}"));
            }
        }
        if self.ipv4_prefix_len > 32 {
            p.push("`ipv4_prefix_len`: must be at most 32".into());
        }
        if self.ipv6_prefix_len > 128 {
            p.push("`ipv6_prefix_len`: must be at most 128".into());
        }
        for (name, x) in [
            ("velocity_factor", self.velocity_factor),
            ("velocity_min_per_minute", self.velocity_min_per_minute),
            ("size_sigmas", self.size_sigmas),
            ("size_min_ratio", self.size_min_ratio),
        ] {
            if !(x.is_finite() && x > 0.0) {
                p.push(format!("`{name}`: must be a positive number"));
            }
        }
        for (name, x) in [
            ("rate_alpha", self.rate_alpha),
            ("size_alpha", self.size_alpha),
        ] {
            if !(x > 0.0 && x <= 1.0) {
                p.push(format!("`{name}`: must be in (0, 1]"));
            }
        }
        if !(self.unusual_hour_percent.is_finite()
            && (0.0..=100.0).contains(&self.unusual_hour_percent))
        {
            p.push("`unusual_hour_percent`: must be between 0 and 100".into());
        }
        if self.trusted.len() > self.max_trusted {
            p.push("`trusted`: more prefixes than `max_trusted`".into());
        }
        if !self.shards.is_power_of_two() || self.shards > 1024 {
            p.push("`shards`: must be a power of two between 1 and 1024".into());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(RiskConfigError { problems: p })
        }
    }
}

/// One authenticated request, as the risk engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct RiskContext<'a> {
    /// The authenticated key id: the profile's principal.
    pub key_id: &'a str,
    /// The account the key belongs to (for credential changes).
    pub account: &'a str,
    /// The client's address.
    pub ip: IpAddr,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<&'a str>,
    /// Wall-clock time of the request, Unix ms (hours of day are UTC).
    pub now_unix_ms: u64,
    /// The instrument traded, for order requests.
    pub instrument: Option<&'a str>,
    /// The order quantity (or notional; be consistent per deployment), for
    /// order requests. Non-positive or non-finite values are ignored.
    pub order_qty: Option<f64>,
    /// Withdrawals, address-book, key or MFA management: judged with
    /// [`RiskConfig::sensitive_thresholds`].
    pub sensitive_action: bool,
}

/// One reason a request looks risky.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// Stable name: `new_prefix`, `new_asn`, `new_country`,
    /// `impossible_travel`, `new_user_agent`, `velocity`, `order_size`,
    /// `new_instrument`, `unusual_hour`, `recent_credential_change`.
    pub name: &'static str,
    /// Points added to the score.
    pub points: u8,
    /// What was seen, for logs and audit (no secrets; may hold the IP).
    pub detail: String,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskAction {
    /// Let it through.
    Allow,
    /// Require an MFA step-up first.
    StepUp,
    /// Slow the key down (a tighter rate limit).
    Throttle,
    /// Refuse it.
    Deny,
}

impl RiskAction {
    /// The snake_case name (for logs and policy context).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::StepUp => "step_up",
            Self::Throttle => "throttle",
            Self::Deny => "deny",
        }
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    /// 0–100: the signals' points summed and capped.
    pub score: u8,
    /// Every signal that fired.
    pub signals: Vec<Signal>,
    /// What the thresholds say to do.
    pub action: RiskAction,
    /// Whether the key is still in its learning period.
    pub learning: bool,
}

impl Assessment {
    /// One line for the log and the audit trail, e.g.
    /// `score 60 (step_up): new_prefix +25 (…); order_size +35 (…)`.
    #[must_use]
    pub fn explain(&self) -> String {
        let mut s = format!("score {} ({})", self.score, self.action.as_str());
        if self.learning {
            s.push_str(" [learning]");
        }
        for (i, sig) in self.signals.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            let _ = write!(s, "{sep}{} +{} ({})", sig.name, sig.points, sig.detail);
        }
        s
    }

    /// A `risk_deny` [`Alert`] if the action is [`RiskAction::Deny`].
    #[must_use]
    pub fn alert(&self, ctx: &RiskContext<'_>) -> Option<Alert> {
        (self.action == RiskAction::Deny).then(|| Alert {
            kind: kind::RISK_DENY,
            severity: Severity::Warning,
            at_unix_ms: ctx.now_unix_ms,
            summary: format!(
                "request by key `{}` from {} denied: {}",
                ctx.key_id,
                ctx.ip,
                self.explain()
            ),
            details: serde_json::json!({
                "key_id": ctx.key_id,
                "account": ctx.account,
                "ip": ctx.ip.to_string(),
                "score": self.score,
                "signals": self.signals,
            }),
        })
    }
}

/// A read-only view of one profile (admin endpoint, tests).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileSummary {
    /// Requests observed.
    pub requests: u64,
    /// First observed request, Unix ms.
    pub first_seen_unix_ms: u64,
    /// Latest observed request, Unix ms.
    pub last_seen_unix_ms: u64,
    /// Whether it is still learning at its latest request.
    pub learning: bool,
    /// Source networks remembered.
    pub prefixes: usize,
    /// ASNs remembered.
    pub asns: Vec<u32>,
    /// Countries remembered.
    pub countries: Vec<String>,
    /// User agents remembered.
    pub user_agents: usize,
    /// Instruments remembered.
    pub instruments: usize,
    /// Usual requests per active minute.
    pub rate_per_active_minute: f64,
    /// Usual order size (geometric mean), if sizes were seen.
    pub typical_order_size: Option<f64>,
}

/// A shard on its own cache lines.
#[derive(Debug)]
#[repr(align(128))]
struct Shard(Mutex<HashMap<u64, Profile, IdentityState>>);

fn pack_country(c: [u8; 2]) -> u64 {
    u64::from(u16::from_be_bytes(c))
}

fn unpack_country(v: u64) -> String {
    let [a, b] = u16::try_from(v).unwrap_or(0).to_be_bytes();
    String::from_utf8_lossy(&[a, b]).into_owned()
}

/// Adaptive risk scoring over bounded per-key profiles; see the module
/// docs. `Send + Sync`: share one per process.
#[derive(Debug)]
pub struct RiskEngine {
    cfg: RiskConfig,
    asn: Option<AsnTable>,
    hasher: KeyHasher,
    shards: Box<[Shard]>,
    per_shard: usize,
    mask: u64,
    changes: RwLock<HashMap<u64, u64, IdentityState>>,
    trusted: RwLock<Vec<IpNet>>,
}

impl RiskEngine {
    /// An engine with `cfg`, and `asn` for ASN and country signals (without
    /// it only prefix-level location signals fire).
    ///
    /// # Errors
    ///
    /// [`RiskConfigError`] listing every invalid field.
    pub fn new(cfg: RiskConfig, asn: Option<AsnTable>) -> Result<Self, RiskConfigError> {
        cfg.validate()?;
        let n = cfg.shards;
        let shards = (0..n)
            .map(|_| Shard(Mutex::new(HashMap::default())))
            .collect();
        let trusted = cfg.trusted.iter().map(IpNet::trunc).collect();
        Ok(Self {
            per_shard: cfg.max_profiles.div_ceil(n).max(1),
            mask: u64::try_from(n.saturating_sub(1)).unwrap_or(0),
            shards,
            trusted: RwLock::new(trusted),
            asn,
            cfg,
            hasher: KeyHasher::new(),
            changes: RwLock::new(HashMap::default()),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RiskConfig {
        &self.cfg
    }

    /// The ASN table, if any.
    pub fn asn_table(&self) -> Option<&AsnTable> {
        self.asn.as_ref()
    }

    fn principal(&self, key_id: &str) -> (u64, Option<&Shard>) {
        let h = self.hasher.key(10, b"", key_id.as_bytes());
        let i = usize::try_from((h >> 32) & self.mask).unwrap_or(0);
        (h, self.shards.get(i))
    }

    fn features(&self, ctx: &RiskContext<'_>) -> (Features, IpNet, Option<AsnInfo>) {
        let ip = ctx.ip.to_canonical();
        let net = prefix_of(ip, self.cfg.ipv4_prefix_len, self.cfg.ipv6_prefix_len);
        let (b, len) = octets(net.network());
        let net_h = self
            .hasher
            .key(11, &[net.prefix_len()], b.get(..len).unwrap_or_default());
        let info = self.asn.as_ref().and_then(|t| t.lookup(ip));
        let f = Features {
            now_ms: ctx.now_unix_ms,
            net: net_h,
            asn: info.map(|i| i.asn),
            country: info
                .filter(AsnInfo::has_country)
                .map(|i| pack_country(i.country)),
            ua: self
                .hasher
                .key(12, b"", ctx.user_agent.unwrap_or("").as_bytes()),
            instrument: ctx
                .instrument
                .map(|i| self.hasher.key(13, b"", i.as_bytes())),
            log_size: ctx
                .order_qty
                .filter(|q| q.is_finite() && *q > 0.0)
                .map(f64::ln),
            hour: usize::try_from(ctx.now_unix_ms / 3_600_000 % 24).unwrap_or(0),
        };
        (f, net, info)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.read().iter().any(|n| n.contains(&ip))
    }

    /// Scores `ctx` against its key's profile. Learns nothing.
    pub fn assess(&self, ctx: &RiskContext<'_>) -> Assessment {
        let (f, net, info) = self.features(ctx);
        let trusted = self.is_trusted(ctx.ip);
        let mut signals = Vec::new();
        let (principal, shard) = self.principal(ctx.key_id);
        let learning = match shard {
            Some(shard) => {
                let map = shard.0.lock();
                let profile = map.get(&principal);
                self.profile_signals(profile, &f, net, info, trusted, &mut signals)
            }
            None => true,
        };
        self.credential_signal(ctx, &mut signals);
        let score = signals
            .iter()
            .fold(0_u32, |s, sig| s + u32::from(sig.points))
            .min(100);
        let score = u8::try_from(score).unwrap_or(100);
        let thresholds = if ctx.sensitive_action {
            &self.cfg.sensitive_thresholds
        } else {
            &self.cfg.thresholds
        };
        Assessment {
            score,
            action: thresholds.action(score),
            signals,
            learning,
        }
    }

    /// Appends the profile's signals; returns whether it is learning.
    fn profile_signals(
        &self,
        profile: Option<&Profile>,
        f: &Features,
        net: IpNet,
        info: Option<AsnInfo>,
        trusted: bool,
        out: &mut Vec<Signal>,
    ) -> bool {
        let Some(p) = profile else {
            return true;
        };
        let cfg = &self.cfg;
        let w = &cfg.weights;
        let now = f.now_ms;
        let learning = p.learning(cfg, now);
        let mut push = |name: &'static str, points: u8, detail: String| {
            if points > 0 {
                out.push(Signal {
                    name,
                    points,
                    detail,
                });
            }
        };
        // Impossible travel needs no history beyond the last country.
        if let (false, Some(info), Some(country), Some((last, last_ms))) =
            (trusted, info, f.country, p.last_country)
        {
            let age = now.saturating_sub(last_ms);
            let window = u64::try_from(cfg.impossible_travel_window.as_millis()).unwrap_or(0);
            if country != last
                && age < window
                && p.countries.count(country) < cfg.travel_habitual_requests
            {
                push(
                    "impossible_travel",
                    w.impossible_travel,
                    format!(
                        "{} from {}, {} min after a request from {}",
                        info.country_str(),
                        net,
                        age / 60_000,
                        unpack_country(last)
                    ),
                );
            }
        }
        if learning {
            return true;
        }
        if !trusted {
            if p.nets.count(f.net) == 0 {
                push(
                    "new_prefix",
                    w.new_prefix,
                    format!("{net} not among the key's {} usual networks", p.nets.len()),
                );
            }
            if let (Some(info), Some(asn)) = (info, f.asn) {
                if !p.asns.is_empty() && p.asns.count(u64::from(asn)) == 0 {
                    push(
                        "new_asn",
                        w.new_asn,
                        format!(
                            "AS{} not among the key's {} usual ASNs",
                            info.asn,
                            p.asns.len()
                        ),
                    );
                }
            }
            if let (Some(info), Some(c)) = (info, f.country) {
                if !p.countries.is_empty() && p.countries.count(c) == 0 {
                    push(
                        "new_country",
                        w.new_country,
                        format!(
                            "{} not among the key's usual countries ({})",
                            info.country_str(),
                            p.countries
                                .values()
                                .map(unpack_country)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }
        if p.uas.count(f.ua) == 0 {
            push(
                "new_user_agent",
                w.new_user_agent,
                format!("user agent not among the key's {} usual ones", p.uas.len()),
            );
        }
        if p.active_minutes >= cfg.velocity_min_active_minutes {
            let rate = p.short_rate(now);
            if rate >= cfg.velocity_min_per_minute && rate >= cfg.velocity_factor * p.rate {
                push(
                    "velocity",
                    w.velocity,
                    format!(
                        "{rate:.0} requests in the last minute, usual {:.1} per active minute",
                        p.rate
                    ),
                );
            }
        }
        if let Some(x) = f.log_size {
            if p.size_samples >= cfg.size_min_samples {
                let (typical, sd) = p.size_stats();
                let excess = x - p.size_mean;
                if excess >= (cfg.size_sigmas * sd).max(cfg.size_min_ratio.ln()) {
                    push(
                        "order_size",
                        w.order_size,
                        format!(
                            "size {:.4} is {:.1}× the usual {typical:.4}",
                            x.exp(),
                            excess.exp()
                        ),
                    );
                }
            }
        }
        if let Some(i) = f.instrument {
            if p.instrument_samples >= cfg.instrument_min_samples && p.instruments.count(i) == 0 {
                push(
                    "new_instrument",
                    w.new_instrument,
                    format!(
                        "instrument not among the key's {} usual ones",
                        p.instruments.len()
                    ),
                );
            }
        }
        if p.hours_total >= cfg.hour_min_samples {
            let share = p.hour_share_percent(f.hour);
            if share < cfg.unusual_hour_percent {
                push(
                    "unusual_hour",
                    w.unusual_hour,
                    format!(
                        "{:02}:00 UTC; hours {:02}–{:02} hold {share:.1} % of the key's requests",
                        f.hour,
                        (f.hour + 23) % 24,
                        (f.hour + 1) % 24
                    ),
                );
            }
        }
        false
    }

    fn credential_signal(&self, ctx: &RiskContext<'_>, out: &mut Vec<Signal>) {
        let window = u64::try_from(self.cfg.credential_change_window.as_millis()).unwrap_or(0);
        let changes = self.changes.read();
        if changes.is_empty() {
            return;
        }
        let latest = [ctx.key_id, ctx.account]
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| changes.get(&self.change_key(s)).copied())
            .max();
        if let Some(at) = latest {
            let age = ctx.now_unix_ms.saturating_sub(at);
            if age < window && self.cfg.weights.recent_credential_change > 0 {
                out.push(Signal {
                    name: "recent_credential_change",
                    points: self.cfg.weights.recent_credential_change,
                    detail: format!("MFA or address book changed {} min ago", age / 60_000),
                });
            }
        }
    }

    fn change_key(&self, key_id_or_account: &str) -> u64 {
        self.hasher.key(14, b"", key_id_or_account.as_bytes())
    }

    /// Learns from a request the gateway let through.
    pub fn observe(&self, ctx: &RiskContext<'_>) {
        let (f, _, _) = self.features(ctx);
        let (principal, Some(shard)) = self.principal(ctx.key_id) else {
            return;
        };
        let mut map = shard.0.lock();
        if !map.contains_key(&principal) && map.len() >= self.per_shard {
            // Full: drop the least recently seen profile (O(shard), only
            // when a new key appears in a full shard).
            if let Some(oldest) = map.iter().min_by_key(|(_, p)| p.last_ms).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.entry(principal)
            .or_insert_with(|| Profile::new(&self.cfg, ctx.now_unix_ms))
            .learn(&self.cfg, &f);
    }

    /// Records an MFA or address-book change for a key id or an account at
    /// `now_unix_ms`: requests by that key (or any key of that account)
    /// carry `recent_credential_change` for the configured window.
    pub fn note_credential_change(&self, key_id_or_account: &str, now_unix_ms: u64) {
        let window = u64::try_from(self.cfg.credential_change_window.as_millis()).unwrap_or(0);
        let k = self.change_key(key_id_or_account);
        let mut changes = self.changes.write();
        if !changes.contains_key(&k) && changes.len() >= self.cfg.max_credential_changes {
            changes.retain(|_, at| now_unix_ms.saturating_sub(*at) < window);
            if changes.len() >= self.cfg.max_credential_changes {
                if let Some(oldest) = changes.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                    changes.remove(&oldest);
                }
            }
        }
        let at = changes.entry(k).or_insert(now_unix_ms);
        *at = (*at).max(now_unix_ms);
    }

    /// Marks `prefix` trusted: requests from it never raise location
    /// signals. Returns `false` (and changes nothing) if
    /// [`RiskConfig::max_trusted`] prefixes are already trusted.
    pub fn trust(&self, prefix: IpNet) -> bool {
        let prefix = prefix.trunc();
        let mut t = self.trusted.write();
        if t.contains(&prefix) {
            return true;
        }
        if t.len() >= self.cfg.max_trusted {
            return false;
        }
        t.push(prefix);
        true
    }

    /// Removes `prefix` from the trusted set; whether it was there.
    pub fn untrust(&self, prefix: IpNet) -> bool {
        let prefix = prefix.trunc();
        let mut t = self.trusted.write();
        let before = t.len();
        t.retain(|n| *n != prefix);
        t.len() != before
    }

    /// A summary of `key_id`'s profile, if one is kept.
    #[must_use]
    pub fn profile(&self, key_id: &str) -> Option<ProfileSummary> {
        let (principal, shard) = self.principal(key_id);
        let map = shard?.0.lock();
        let p = map.get(&principal)?;
        Some(ProfileSummary {
            requests: p.requests,
            first_seen_unix_ms: p.first_ms,
            last_seen_unix_ms: p.last_ms,
            learning: p.learning(&self.cfg, p.last_ms),
            prefixes: p.nets.len(),
            asns: p
                .asns
                .values()
                .map(|a| u32::try_from(a).unwrap_or(0))
                .collect(),
            countries: p.countries.values().map(unpack_country).collect(),
            user_agents: p.uas.len(),
            instruments: p.instruments.len(),
            rate_per_active_minute: p.rate,
            typical_order_size: (p.size_samples > 0).then(|| p.size_stats().0),
        })
    }

    /// Profiles kept (locks each shard in turn).
    #[must_use]
    pub fn profile_count(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().len()).sum()
    }

    /// Forgets `key_id`'s profile (key revoked or rotated); whether it had
    /// one.
    pub fn forget(&self, key_id: &str) -> bool {
        let (principal, shard) = self.principal(key_id);
        shard.is_some_and(|s| s.0.lock().remove(&principal).is_some())
    }
}
