//! Rate limits on the request path: `[limits]` rules compiled per config
//! snapshot, checked against one gateway-wide exact GCRA limiter
//! ([`rampart_shield`]), with IETF `RateLimit-Policy` / `RateLimit`
//! headers, `429 RATE_LIMITED` problems and escalation (temporary bans for
//! clients that keep sending after 429s).
//!
//! Two phases:
//!
//! - **edge** (before authentication, so floods never reach signature
//!   verification): rules that count only by ip / route / group;
//! - **principal** (after authentication): rules that count by key or
//!   account. They do not apply to public routes.
//!
//! Within a phase every covering rule is checked in configuration order;
//! when one denies, the weight the earlier ones consumed for this request is
//! refunded, so a refused request costs nothing in that phase. Edge
//! consumption stays when the principal phase refuses: the request did reach
//! the gateway.
//!
//! Escalation: every 429 counts against its client (the key when the
//! request is authenticated, else the IP); more than `denials` per `window`
//! bans the client for `first_ban`, doubled for each repeat up to
//! `max_ban`. An IP is only ever banned for requests that carried no
//! credentials, so one noisy key never bans a shared address; an identified
//! client is banned by key.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use parking_lot::Mutex;
use rampart_core::config::{
    EscalationConfig, LimitBy, LimitCost, LimitRule, LimitsConfig, RouteConfig,
};
use rampart_core::problem::{Problem, ProblemCode};
use rampart_shield::{Clock, Decision, KeyHasher, MemoryStore, MonotonicClock, Quota, RateLimiter};
use serde_json::{json, Value};

/// Number of limiter shards (a power of two; spreads lock contention).
const SHARDS: usize = 64;
/// Most bans remembered at once.
const MAX_BANS: usize = 100_000;
/// How long a client's ban count is remembered after its last ban ends.
const STRIKE_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Gateway-wide limiter state; it outlives config reloads.
#[derive(Debug)]
pub struct Shield {
    limiter: RateLimiter<Arc<MemoryStore>, MonotonicClock>,
    hasher: KeyHasher,
    bans: BanTable,
}

impl Shield {
    /// State for `cfg` (its `max_keys` sizes the store; changing it needs
    /// a restart).
    ///
    /// # Errors
    ///
    /// A message if the store cannot be laid out for `max_keys`.
    pub fn new(cfg: &LimitsConfig) -> Result<Self, String> {
        let per_shard = cfg.max_keys.div_ceil(SHARDS).max(16);
        let store =
            MemoryStore::new(SHARDS, per_shard).map_err(|e| format!("limiter store: {e}"))?;
        Ok(Self {
            limiter: RateLimiter::new(Arc::new(store), MonotonicClock::new()),
            hasher: KeyHasher::new(),
            bans: BanTable::default(),
        })
    }

    fn now_ns(&self) -> u64 {
        self.limiter.clock().now_ns()
    }

    /// Limiter cells in use.
    #[must_use]
    pub fn cells(&self) -> usize {
        self.limiter.store().len()
    }

    /// Active bans.
    #[must_use]
    pub fn active_bans(&self) -> usize {
        self.bans.active.load(Ordering::Relaxed)
    }
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    cfg: LimitRule,
    quota: Quota,
    /// `"name";q=…;w=…` for RateLimit-Policy.
    policy: String,
}

/// The rules of one config snapshot, with per-route lists.
#[derive(Debug, Default)]
pub struct Limits {
    rules: Vec<Rule>,
    /// Edge rules that apply to requests matching no route.
    unrouted: Vec<usize>,
    /// Per route index: (edge rules, principal rules, RateLimit-Policy).
    routes: Vec<RouteLimits>,
    escalation: EscalationConfig,
    /// The escalation counter's quota (`denials` per `window`).
    esc_quota: Option<Quota>,
}

#[derive(Debug, Default)]
struct RouteLimits {
    edge: Vec<usize>,
    principal: Vec<usize>,
    policy: Option<HeaderValue>,
}

fn by_text(by: &[LimitBy]) -> String {
    if by.is_empty() {
        "global".to_owned()
    } else {
        by.iter().map(|b| b.as_str()).collect::<Vec<_>>().join("+")
    }
}

impl Limits {
    /// Compiles `cfg` against the route table (index = route index).
    ///
    /// # Errors
    ///
    /// A message if a rule's quota cannot be represented (config
    /// validation rejects those first).
    pub fn compile(cfg: &LimitsConfig, routes: &[RouteConfig]) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for r in &cfg.rules {
            let quota = Quota::new(r.rate, r.per, r.burst)
                .map_err(|e| format!("limits rule `{}`: {e}", r.name))?;
            let policy = format!("\"{}\";q={};w={}", r.name, r.rate, r.per.as_secs().max(1));
            rules.push(Rule {
                cfg: r.clone(),
                quota,
                policy,
            });
        }
        let unrouted = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.cfg.covers(None)
                    && !r.cfg.needs_principal()
                    && !r
                        .cfg
                        .by
                        .iter()
                        .any(|b| matches!(b, LimitBy::Route | LimitBy::Group))
            })
            .map(|(i, _)| i)
            .collect();
        let routes = routes
            .iter()
            .map(|route| {
                let public = route.scope == "public";
                let mut rl = RouteLimits::default();
                let mut policy = String::new();
                for (i, r) in rules.iter().enumerate() {
                    if !r.cfg.covers(Some(route)) {
                        continue;
                    }
                    if r.cfg.needs_principal() {
                        if public {
                            continue;
                        }
                        rl.principal.push(i);
                    } else {
                        rl.edge.push(i);
                    }
                    if !policy.is_empty() {
                        policy.push_str(", ");
                    }
                    policy.push_str(&r.policy);
                }
                rl.policy = (!policy.is_empty())
                    .then(|| HeaderValue::from_str(&policy).ok())
                    .flatten();
                rl
            })
            .collect();
        let esc = &cfg.escalation;
        let esc_quota = if esc.enabled {
            Some(
                Quota::new(esc.denials, esc.window, esc.denials)
                    .map_err(|e| format!("limits escalation: {e}"))?,
            )
        } else {
            None
        };
        Ok(Self {
            rules,
            unrouted,
            routes,
            escalation: esc.clone(),
            esc_quota,
        })
    }

    /// Whether any rule exists.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The RateLimit-Policy value for a route, if any rule covers it.
    #[must_use]
    pub fn policy(&self, route_index: Option<usize>) -> Option<&HeaderValue> {
        route_index
            .and_then(|i| self.routes.get(i))
            .and_then(|r| r.policy.as_ref())
    }
}

/// The checks one request passed: what its `RateLimit` header reports.
#[derive(Debug, Default)]
pub struct Report {
    entries: Vec<(usize, u32, Duration)>,
    /// RateLimit-Policy of the route.
    policy: Option<HeaderValue>,
}

impl Report {
    /// Adds the `RateLimit-Policy` and `RateLimit` headers to a response.
    pub fn stamp(&self, limits: &Limits, headers: &mut http::HeaderMap) {
        if let Some(p) = &self.policy {
            headers.insert("ratelimit-policy", p.clone());
        }
        if self.entries.is_empty() {
            return;
        }
        let mut v = String::with_capacity(32 * self.entries.len());
        for (i, (rule, remaining, reset)) in self.entries.iter().enumerate() {
            let Some(r) = limits.rules.get(*rule) else {
                continue;
            };
            if i > 0 {
                v.push_str(", ");
            }
            let t = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
            let _ = write!(v, "\"{}\";r={remaining};t={t}", r.cfg.name);
        }
        if let Ok(h) = HeaderValue::from_str(&v) {
            headers.insert("ratelimit", h);
        }
    }
}

/// Who a request is, for partitioning and escalation.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The TCP peer.
    pub ip: IpAddr,
    /// The authenticated principal: (key id, account).
    pub principal: Option<(&'a str, &'a str)>,
    /// The request carried credentials (claimed, not yet proven).
    pub credentialed: bool,
}

/// A refusal: the problem to send, and the report so far (headers).
#[derive(Debug)]
pub struct Refused {
    /// The 429.
    pub problem: Problem,
    /// Headers to stamp.
    pub report: Report,
}

/// Writes the IP partition: IPv4 (or IPv4-mapped) address, or an IPv6 /64.
fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => buf.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => buf.extend_from_slice(&v4.octets()),
            None => buf.extend_from_slice(v6.octets().get(..8).unwrap_or(&[])),
        },
    }
}

fn push_part(buf: &mut Vec<u8>, part: &[u8]) {
    buf.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(part);
}

fn retry_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl Shield {
    fn cell(&self, rule: &Rule, route: Option<&RouteConfig>, who: &Who<'_>) -> u64 {
        let mut buf = Vec::with_capacity(64);
        for b in &rule.cfg.by {
            match b {
                LimitBy::Ip => {
                    let mut ipb = Vec::with_capacity(8);
                    push_ip(&mut ipb, who.ip);
                    push_part(&mut buf, &ipb);
                }
                LimitBy::Key => push_part(&mut buf, who.principal.map_or("", |p| p.0).as_bytes()),
                LimitBy::Account => {
                    push_part(&mut buf, who.principal.map_or("", |p| p.1).as_bytes());
                }
                LimitBy::Route => {
                    push_part(&mut buf, route.map_or("", |r| r.action.as_str()).as_bytes());
                }
                LimitBy::Group => push_part(
                    &mut buf,
                    route
                        .and_then(|r| r.group.as_deref())
                        .unwrap_or("")
                        .as_bytes(),
                ),
            }
        }
        self.hasher.key(0, rule.cfg.name.as_bytes(), &buf)
    }

    /// The edge phase: bans on the IP, then every edge rule covering the
    /// route (`None`: unrouted requests and gateway endpoints).
    ///
    /// # Errors
    ///
    /// [`Refused`] with a `429 RATE_LIMITED`.
    pub fn edge(
        &self,
        limits: &Limits,
        route: Option<(usize, &RouteConfig)>,
        who: &Who<'_>,
    ) -> Result<Report, Box<Refused>> {
        let (list, policy, cfg) = match route {
            Some((i, cfg)) => match limits.routes.get(i) {
                Some(rl) => (&rl.edge, rl.policy.clone(), Some(cfg)),
                None => (&limits.unrouted, None, None),
            },
            None => (&limits.unrouted, None, None),
        };
        let mut report = Report {
            entries: Vec::new(),
            policy,
        };
        // IP bans come from anonymous requests and apply to them only: a
        // request with credentials is judged by its key (bans by key after
        // authentication, failed-authentication lockouts before it).
        if !who.credentialed {
            if let Some(p) = self.banned(&Client::Ip(who.ip)) {
                return Err(Box::new(Refused { problem: p, report }));
            }
        }
        self.run(
            limits,
            list,
            cfg,
            who,
            &mut report,
            Client::Ip(who.ip),
            !who.credentialed,
        )
        .map_err(|problem| {
            Box::new(Refused {
                problem,
                report: take(&mut report),
            })
        })?;
        Ok(report)
    }

    /// The principal phase: bans on the key, then every key/account rule
    /// covering the route. Adds to the edge phase's `report`.
    ///
    /// # Errors
    ///
    /// [`Refused`] with a `429 RATE_LIMITED`.
    pub fn principal(
        &self,
        limits: &Limits,
        route: (usize, &RouteConfig),
        who: &Who<'_>,
        mut report: Report,
    ) -> Result<Report, Box<Refused>> {
        let Some((key_id, _)) = who.principal else {
            return Ok(report);
        };
        let client = Client::Key(key_id);
        if let Some(p) = self.banned(&client) {
            return Err(Box::new(Refused { problem: p, report }));
        }
        let Some(rl) = limits.routes.get(route.0) else {
            return Ok(report);
        };
        match self.run(
            limits,
            &rl.principal,
            Some(route.1),
            who,
            &mut report,
            client,
            true,
        ) {
            Ok(()) => Ok(report),
            Err(problem) => Err(Box::new(Refused { problem, report })),
        }
    }

    #[allow(clippy::too_many_arguments, reason = "one internal call per phase")]
    fn run(
        &self,
        limits: &Limits,
        list: &[usize],
        route: Option<&RouteConfig>,
        who: &Who<'_>,
        report: &mut Report,
        client: Client<'_>,
        escalate: bool,
    ) -> Result<(), Problem> {
        let mut consumed: Vec<(u64, usize, u32)> = Vec::new();
        for &i in list {
            let Some(rule) = limits.rules.get(i) else {
                continue;
            };
            let weight = match (rule.cfg.cost, route) {
                (LimitCost::Weight, Some(r)) => r.weight,
                _ => 1,
            };
            let cell = self.cell(rule, route, who);
            let d = self.limiter.check(cell, &rule.quota, weight);
            if let Decision::Allowed {
                remaining,
                reset_after,
            } = d
            {
                consumed.push((cell, i, weight));
                report.entries.push((i, remaining, reset_after));
                continue;
            }
            for (cell, j, w) in consumed {
                if let Some(r) = limits.rules.get(j) {
                    self.limiter.refund(cell, &r.quota, w);
                }
            }
            if let Decision::Denied {
                remaining,
                reset_after,
                ..
            } = d
            {
                report.entries.push((i, remaining, reset_after));
            }
            let problem = refusal(rule, &d);
            if escalate {
                if let Some(ban) = self.escalate(limits, &client) {
                    return Err(ban);
                }
            }
            return Err(problem);
        }
        Ok(())
    }

    /// Counts a 429 against `client`; returns the ban problem when this one
    /// crossed the threshold.
    fn escalate(&self, limits: &Limits, client: &Client<'_>) -> Option<Problem> {
        let quota = limits.esc_quota.as_ref()?;
        let cell = self.client_cell(client);
        if self.limiter.check(cell, quota, 1).is_allowed() {
            return None;
        }
        let now = self.now_ns();
        let ban = self.bans.ban(cell, now, &limits.escalation)?;
        tracing::warn!(
            target: "rampart::limits",
            client = %client,
            strikes = ban.strikes,
            ban_s = ban.length.as_secs(),
            "client ignored 429s; temporarily banned"
        );
        Some(ban_problem(ban.length, ban.strikes))
    }

    fn client_cell(&self, client: &Client<'_>) -> u64 {
        match client {
            Client::Ip(ip) => {
                let mut b = Vec::with_capacity(8);
                push_ip(&mut b, *ip);
                self.hasher.key(1, b"esc-ip", &b)
            }
            Client::Key(k) => self.hasher.key(1, b"esc-key", k.as_bytes()),
        }
    }

    fn banned(&self, client: &Client<'_>) -> Option<Problem> {
        if self.bans.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let cell = self.client_cell(client);
        let (left, strikes) = self.bans.remaining(cell, self.now_ns())?;
        Some(ban_problem(left, strikes))
    }

    /// Lifts every ban (operator action); returns how many were active.
    pub fn clear_bans(&self) -> usize {
        self.bans.clear(self.now_ns())
    }

    /// A key's own view of its limits: every rule that can apply to it on
    /// any route, with the usage of its cells right now (weight-0 checks,
    /// which consume nothing). `ip` is the caller's address.
    #[must_use]
    pub fn usage(
        &self,
        limits: &Limits,
        routes: &[RouteConfig],
        ip: IpAddr,
        key_id: &str,
        account: &str,
    ) -> Value {
        let who = Who {
            ip,
            principal: Some((key_id, account)),
            credentialed: true,
        };
        let mut out = Vec::new();
        for rule in &limits.rules {
            // One cell per distinct route/group partition the key can reach.
            let per_route = rule
                .cfg
                .by
                .iter()
                .any(|b| matches!(b, LimitBy::Route | LimitBy::Group));
            let mut seen = std::collections::BTreeSet::new();
            let covered: Vec<&RouteConfig> = routes
                .iter()
                .filter(|r| rule.cfg.covers(Some(r)))
                .filter(|r| !(rule.cfg.needs_principal() && r.scope == "public"))
                .collect();
            if covered.is_empty() && !rule.cfg.covers(None) {
                continue;
            }
            let targets: Vec<Option<&RouteConfig>> = if per_route {
                covered.iter().map(|r| Some(*r)).collect()
            } else {
                vec![covered.first().copied()]
            };
            for target in targets {
                let cell = self.cell(rule, target, &who);
                if !seen.insert(cell) {
                    continue;
                }
                let d = self.limiter.check(cell, &rule.quota, 0);
                let mut entry = json!({
                    "name": rule.cfg.name,
                    "by": rule.cfg.by.iter().map(|b| b.as_str()).collect::<Vec<_>>(),
                    "rate": rule.cfg.rate,
                    "period_s": rule.cfg.per.as_secs_f64(),
                    "burst": rule.cfg.burst,
                    "cost": match rule.cfg.cost { LimitCost::Weight => "weight", LimitCost::One => "one" },
                    "actions": covered.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
                    "remaining": d.remaining(),
                    "reset_s": d.reset_after().map(|r| r.as_secs_f64()),
                });
                if per_route {
                    if let (Some(r), Some(obj)) = (target, entry.as_object_mut()) {
                        obj.insert("route".into(), Value::from(r.action.as_str()));
                        if let Some(g) = &r.group {
                            obj.insert("group".into(), Value::from(g.as_str()));
                        }
                    }
                }
                out.push(entry);
            }
        }
        let ban = self
            .bans
            .remaining(self.client_cell(&Client::Key(key_id)), self.now_ns())
            .map(|(left, strikes)| json!({"retry_after_s": retry_secs(left), "strikes": strikes}));
        json!({
            "key_id": key_id,
            "account": account,
            "limits": out,
            "ban": ban,
            "weights": routes
                .iter()
                .map(|r| json!({"action": r.action, "weight": r.weight, "group": r.group}))
                .collect::<Vec<_>>(),
        })
    }
}

fn take(r: &mut Report) -> Report {
    std::mem::take(r)
}

fn refusal(rule: &Rule, d: &Decision) -> Problem {
    let what = format!(
        "{} per {} by {}",
        rule.cfg.rate,
        humantime_short(rule.cfg.per),
        by_text(&rule.cfg.by)
    );
    let base = Problem::new(ProblemCode::RateLimited).with("limit", rule.cfg.name.as_str());
    match d {
        Decision::Denied { retry_after, .. } => base
            .detail(format!(
                "rate limit `{}` ({what}) exceeded; retry after {} ms",
                rule.cfg.name,
                retry_after.as_millis()
            ))
            .with(
                "retry_after_ms",
                u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
            )
            .retry_after(retry_secs(*retry_after)),
        Decision::Never { weight, burst } => base
            .detail(format!(
                "the request's weight {weight} exceeds rate limit `{}` ({what}, burst {burst}); it can never pass",
                rule.cfg.name
            ))
            .retry_after(retry_secs(rule.cfg.per)),
        Decision::FailClosed { .. } | Decision::Allowed { .. } => base
            .detail("the rate limiter is at capacity; the request was refused rather than let through unaccounted")
            .retry_after(1),
    }
}

fn ban_problem(left: Duration, strikes: u32) -> Problem {
    Problem::new(ProblemCode::RateLimited)
        .detail(format!(
            "temporarily banned after ignoring repeated 429 responses (ban {strikes}); retry after {} s",
            retry_secs(left)
        ))
        .with("limit", "escalation")
        .with("ban", strikes)
        .retry_after(retry_secs(left))
}

fn humantime_short(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Who escalation counts against.
#[derive(Debug)]
enum Client<'a> {
    Ip(IpAddr),
    Key(&'a str),
}

impl std::fmt::Display for Client<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "ip {ip}"),
            Self::Key(k) => write!(f, "key {k}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ban {
    until_ns: u64,
    strikes: u32,
}

struct NewBan {
    length: Duration,
    strikes: u32,
}

/// Bans by client cell. Bounded: when full of live bans a new ban is not
/// recorded (logged); the client's requests still meet its rate limits,
/// so this degrades to "429s only", never to "unlimited".
#[derive(Debug, Default)]
struct BanTable {
    map: Mutex<HashMap<u64, Ban>>,
    /// Bans whose `until` may still be in the future (upper bound); zero
    /// means the request path skips the lock entirely.
    active: AtomicUsize,
}

impl BanTable {
    fn ban(&self, cell: u64, now: u64, cfg: &EscalationConfig) -> Option<NewBan> {
        let mut map = self.map.lock();
        if map.len() >= MAX_BANS && !map.contains_key(&cell) {
            let memory = u64::try_from(STRIKE_MEMORY.as_nanos()).unwrap_or(u64::MAX);
            map.retain(|_, b| b.until_ns.saturating_add(memory) > now);
            if map.len() >= MAX_BANS {
                tracing::error!(target: "rampart::limits", "ban table full; client is rate limited but not banned");
                return None;
            }
        }
        let prev = map.get(&cell).copied();
        if prev.is_some_and(|b| b.until_ns > now) {
            return None; // already banned (a racing request)
        }
        let memory = u64::try_from(STRIKE_MEMORY.as_nanos()).unwrap_or(u64::MAX);
        let strikes = match prev {
            Some(b) if b.until_ns.saturating_add(memory) > now => b.strikes.saturating_add(1),
            _ => 1,
        };
        let factor = 1u32
            .checked_shl(strikes.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        let length = cfg.first_ban.saturating_mul(factor).min(cfg.max_ban);
        let until_ns = now.saturating_add(u64::try_from(length.as_nanos()).unwrap_or(u64::MAX));
        map.insert(cell, Ban { until_ns, strikes });
        let live = map.values().filter(|b| b.until_ns > now).count();
        self.active.store(live, Ordering::Relaxed);
        Some(NewBan { length, strikes })
    }

    fn remaining(&self, cell: u64, now: u64) -> Option<(Duration, u32)> {
        let map = self.map.lock();
        let b = map.get(&cell)?;
        if b.until_ns <= now {
            let live = map.values().filter(|b| b.until_ns > now).count();
            self.active.store(live, Ordering::Relaxed);
            return None;
        }
        Some((Duration::from_nanos(b.until_ns - now), b.strikes))
    }

    fn clear(&self, now: u64) -> usize {
        let mut map = self.map.lock();
        let live = map.values().filter(|b| b.until_ns > now).count();
        map.clear();
        self.active.store(0, Ordering::Relaxed);
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_partitions_by_64() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        push_ip(
            &mut a,
            "2001:db8:1:2::1".parse().unwrap_or(IpAddr::from([0; 4])),
        );
        push_ip(
            &mut b,
            "2001:db8:1:2:ffff::9"
                .parse()
                .unwrap_or(IpAddr::from([0; 4])),
        );
        assert_eq!(a, b);
        let mut c = Vec::new();
        push_ip(
            &mut c,
            "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0; 4])),
        );
        assert_ne!(a, c);
        let mut m = Vec::new();
        push_ip(
            &mut m,
            "::ffff:10.0.0.1".parse().unwrap_or(IpAddr::from([0; 4])),
        );
        assert_eq!(m, vec![10, 0, 0, 1]);
    }

    #[test]
    fn short_durations() {
        assert_eq!(humantime_short(Duration::from_secs(10)), "10s");
        assert_eq!(humantime_short(Duration::from_secs(60)), "1m");
        assert_eq!(humantime_short(Duration::from_secs(86_400)), "1d");
        assert_eq!(humantime_short(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn bans_double_and_cap() {
        let t = BanTable::default();
        let cfg = EscalationConfig {
            enabled: true,
            denials: 1,
            window: Duration::from_secs(1),
            first_ban: Duration::from_secs(60),
            max_ban: Duration::from_secs(200),
        };
        let s = 1_000_000_000u64;
        let b1 = t.ban(7, s, &cfg).map(|b| (b.length, b.strikes));
        assert_eq!(b1, Some((Duration::from_secs(60), 1)));
        assert!(t.ban(7, 2 * s, &cfg).is_none(), "already banned");
        assert!(t.remaining(7, 2 * s).is_some());
        let b2 = t.ban(7, 70 * s, &cfg).map(|b| (b.length, b.strikes));
        assert_eq!(b2, Some((Duration::from_secs(120), 2)));
        let b3 = t.ban(7, 300 * s, &cfg).map(|b| (b.length, b.strikes));
        assert_eq!(b3, Some((Duration::from_secs(200), 3)), "capped at max_ban");
        assert_eq!(t.clear(300 * s), 1);
        assert!(t.remaining(7, 300 * s).is_none());
    }
}
