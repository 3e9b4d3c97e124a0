//! `[limits]`: rate-limit rules, request weights and escalation.
//!
//! ```toml
//! [limits]
//! max_keys = 1000000          # limiter cells kept in memory (fails closed when all are live)
//!
//! [limits.escalation]         # clients that ignore 429s
//! denials = 50                # 429s tolerated per `window` …
//! window = "10s"
//! first_ban = "1m"            # … then a ban, doubled for each repeat
//! max_ban = "1h"
//!
//! [[limits.rules]]
//! name = "ip-weight"          # shown in RateLimit-Policy and in the RATE_LIMITED problem
//! by = ["ip"]                 # ip (IPv6: its /64), key, account, route, group; [] = global
//! rate = 6000                 # units per `per`
//! per = "1m"
//! burst = 6000                # default: rate
//! cost = "weight"             # the route's weight (default) or "one"
//! groups = ["orders"]         # or actions = ["PlaceOrder"]; neither = every route
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use super::{k, Compiler, RouteConfig, Seg};

/// What a rule counts by; the values of all of them together form the
/// limiter key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitBy {
    /// The client address; an IPv6 address counts by its /64.
    Ip,
    /// The authenticated API key id.
    Key,
    /// The authenticated account.
    Account,
    /// The route (its action).
    Route,
    /// The route's group.
    Group,
}

impl LimitBy {
    /// The name used in the configuration.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Key => "key",
            Self::Account => "account",
            Self::Route => "route",
            Self::Group => "group",
        }
    }
}

/// How much one request costs under a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitCost {
    /// The route's `weight`.
    Weight,
    /// One per request (order counts).
    One,
}

/// Which routes a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitRoutes {
    /// Every route, and requests that match none (counted at cost 1).
    All,
    /// Routes whose `group` is listed.
    Groups(Vec<String>),
    /// Routes whose `action` is listed.
    Actions(Vec<String>),
}

/// One rate-limit rule.
#[derive(Debug, Clone)]
pub struct LimitRule {
    /// Unique name: `[A-Za-z0-9_-]{1,32}`.
    pub name: String,
    /// Partition (sorted, no duplicates); empty = one global bucket.
    pub by: Vec<LimitBy>,
    /// Units per `per`.
    pub rate: u32,
    /// The period.
    pub per: Duration,
    /// Largest burst, in units.
    pub burst: u32,
    /// Cost of one request.
    pub cost: LimitCost,
    /// Routes the rule covers.
    pub routes: LimitRoutes,
}

impl LimitRule {
    /// Whether the rule needs an authenticated principal (it counts by key
    /// or account); such rules are checked after authentication and skip
    /// public routes.
    #[must_use]
    pub fn needs_principal(&self) -> bool {
        self.by
            .iter()
            .any(|b| matches!(b, LimitBy::Key | LimitBy::Account))
    }

    /// Whether the rule covers `route` (`None`: a request that matched no
    /// route or a gateway endpoint).
    #[must_use]
    pub fn covers(&self, route: Option<&RouteConfig>) -> bool {
        match (&self.routes, route) {
            (LimitRoutes::All, _) => true,
            (_, None) => false,
            (LimitRoutes::Groups(g), Some(r)) => r.group.as_ref().is_some_and(|rg| g.contains(rg)),
            (LimitRoutes::Actions(a), Some(r)) => a.contains(&r.action),
        }
    }
}

/// Escalation for clients that keep sending after 429s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationConfig {
    /// Off: 429s only, never a ban.
    pub enabled: bool,
    /// Denied requests tolerated per `window` before a ban.
    pub denials: u32,
    /// The window.
    pub window: Duration,
    /// The first ban; each further ban doubles it.
    pub first_ban: Duration,
    /// The longest ban.
    pub max_ban: Duration,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            denials: 50,
            window: Duration::from_secs(10),
            first_ban: Duration::from_secs(60),
            max_ban: Duration::from_secs(3600),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// The rules, in configuration order (checked in that order).
    pub rules: Vec<LimitRule>,
    /// Limiter cells kept in memory.
    pub max_keys: usize,
    /// Escalation.
    pub escalation: EscalationConfig,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            max_keys: 1_000_000,
            escalation: EscalationConfig::default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_keys: Option<usize>,
    escalation: Option<RawEscalation>,
    #[serde(default)]
    rules: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    enabled: Option<bool>,
    denials: Option<u32>,
    window: Option<String>,
    first_ban: Option<String>,
    max_ban: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    by: Vec<String>,
    rate: u32,
    per: String,
    burst: Option<u32>,
    cost: Option<String>,
    groups: Option<Vec<String>>,
    actions: Option<Vec<String>>,
}

/// Largest rule period accepted: one week (longer windows belong in
/// account-level risk limits, not in memory-held limiter cells).
const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

impl Compiler<'_> {
    pub(super) fn limits(&mut self, table: &toml::Table, routes: &[RouteConfig]) -> LimitsConfig {
        let raw = match table.get("limits") {
            Some(v) => self
                .de::<RawLimits>(v.clone(), &[k("limits")])
                .unwrap_or_default(),
            None => RawLimits::default(),
        };
        let d = LimitsConfig::default();
        let max_keys = raw.max_keys.unwrap_or(d.max_keys);
        if !(1_024..=100_000_000).contains(&max_keys) {
            self.err(
                &[k("limits"), k("max_keys")],
                "must be between 1024 and 100000000",
            );
        }
        let escalation = raw
            .escalation
            .map_or_else(EscalationConfig::default, |e| self.escalation(e));
        let groups: BTreeSet<&str> = routes.iter().filter_map(|r| r.group.as_deref()).collect();
        let actions: BTreeSet<&str> = routes.iter().map(|r| r.action.as_str()).collect();
        let mut rules = Vec::new();
        let mut names = BTreeSet::new();
        for (i, v) in raw.rules.into_iter().enumerate() {
            let base = [k("limits"), k("rules"), Seg::Index(i)];
            let Some(r) = self.de::<RawRule>(v, &base) else {
                continue;
            };
            if !names.insert(r.name.clone()) {
                self.err(
                    &[k("limits"), k("rules"), Seg::Index(i), k("name")],
                    format!("duplicate rule name `{}`", r.name),
                );
            }
            if let Some(rule) = self.rule(r, &base, &groups, &actions) {
                if rule.cost == LimitCost::Weight {
                    if let Some(heavy) = routes
                        .iter()
                        .find(|rt| rule.covers(Some(rt)) && rt.weight > rule.burst)
                    {
                        self.err(
                            &[k("limits"), k("rules"), Seg::Index(i), k("burst")],
                            format!(
                                "route `{}` weighs {}, more than this rule's burst {}: it could never pass",
                                heavy.action, heavy.weight, rule.burst
                            ),
                        );
                    }
                }
                rules.push(rule);
            }
        }
        LimitsConfig {
            rules,
            max_keys,
            escalation,
        }
    }

    fn escalation(&mut self, e: RawEscalation) -> EscalationConfig {
        let d = EscalationConfig::default();
        let p = |n: &str| [k("limits"), k("escalation"), k(n)];
        let denials = e.denials.unwrap_or(d.denials);
        if denials == 0 {
            self.err(&p("denials"), "must be greater than zero");
        }
        let window = e
            .window
            .map_or(d.window, |s| self.duration(&s, &p("window")));
        let first_ban = e
            .first_ban
            .map_or(d.first_ban, |s| self.duration(&s, &p("first_ban")));
        let max_ban = e
            .max_ban
            .map_or(d.max_ban, |s| self.duration(&s, &p("max_ban")));
        if max_ban < first_ban {
            self.err(&p("max_ban"), "must not be shorter than `first_ban`");
        }
        if max_ban > MAX_PERIOD {
            self.err(&p("max_ban"), "must be at most 7 days");
        }
        EscalationConfig {
            enabled: e.enabled.unwrap_or(d.enabled),
            denials,
            window,
            first_ban,
            max_ban,
        }
    }

    fn rule(
        &mut self,
        r: RawRule,
        base: &[Seg],
        groups: &BTreeSet<&str>,
        actions: &BTreeSet<&str>,
    ) -> Option<LimitRule> {
        let before = self.errors.len();
        let p = |n: &str| {
            let mut v = base.to_vec();
            v.push(k(n));
            v
        };
        if r.name.is_empty()
            || r.name.len() > 32
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.err(
                &p("name"),
                "must be 1–32 characters of A–Z, a–z, 0–9, `-`, `_`",
            );
        }
        let mut by = Vec::new();
        for (j, b) in r.by.iter().enumerate() {
            let v = match b.as_str() {
                "ip" => LimitBy::Ip,
                "key" => LimitBy::Key,
                "account" => LimitBy::Account,
                "route" => LimitBy::Route,
                "group" => LimitBy::Group,
                other => {
                    let mut path = p("by");
                    path.push(Seg::Index(j));
                    self.err(
                        &path,
                        format!(
                            "unknown partition `{other}`, expected ip, key, account, route or group"
                        ),
                    );
                    continue;
                }
            };
            if by.contains(&v) {
                self.err(&p("by"), format!("`{b}` is listed twice"));
            }
            by.push(v);
        }
        by.sort();
        by.dedup();
        if r.rate == 0 {
            self.err(&p("rate"), "must be greater than zero");
        }
        let per = self.duration(&r.per, &p("per"));
        if per > MAX_PERIOD {
            self.err(&p("per"), "must be at most 7 days");
        }
        let burst = r.burst.unwrap_or(r.rate);
        if burst == 0 {
            self.err(&p("burst"), "must be greater than zero");
        }
        // The limiter holds `per / rate × burst` in 64-bit nanoseconds.
        let span = per
            .as_nanos()
            .div_ceil(u128::from(r.rate.max(1)))
            .saturating_mul(u128::from(burst));
        if span > u128::from(u64::MAX / 2) {
            self.err(
                &p("burst"),
                "`per / rate × burst` must stay under 290 years",
            );
        }
        let cost = match r.cost.as_deref() {
            None | Some("weight") => LimitCost::Weight,
            Some("one") => LimitCost::One,
            Some(other) => {
                self.err(
                    &p("cost"),
                    format!("`{other}` is not one of `weight`, `one`"),
                );
                LimitCost::Weight
            }
        };
        let routes = match (r.groups, r.actions) {
            (Some(_), Some(_)) => {
                self.err(&p("groups"), "give `groups` or `actions`, not both");
                LimitRoutes::All
            }
            (Some(g), None) => {
                for name in &g {
                    if !groups.contains(name.as_str()) {
                        self.err(&p("groups"), format!("no route has `group = \"{name}\"`"));
                    }
                }
                if g.is_empty() {
                    self.err(
                        &p("groups"),
                        "must not be empty (omit it to cover every route)",
                    );
                }
                LimitRoutes::Groups(g)
            }
            (None, Some(a)) => {
                for name in &a {
                    if !actions.contains(name.as_str()) {
                        self.err(&p("actions"), format!("no route has `action = \"{name}\"`"));
                    }
                }
                if a.is_empty() {
                    self.err(
                        &p("actions"),
                        "must not be empty (omit it to cover every route)",
                    );
                }
                LimitRoutes::Actions(a)
            }
            (None, None) => LimitRoutes::All,
        };
        (self.errors.len() == before).then_some(LimitRule {
            name: r.name,
            by,
            rate: r.rate,
            per,
            burst,
            cost,
            routes,
        })
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]
mod tests {
    use super::super::parse;
    use super::*;

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8443"
[dangerous]
plaintext = true
[upstreams.ex]
endpoints = ["127.0.0.1:9001"]
[[routes]]
method = "POST"
path = "/v1/orders"
upstream = "ex"
action = "PlaceOrder"
scope = "trade"
group = "orders"
weight = 5
[[routes]]
method = "GET"
path = "/v1/time"
upstream = "ex"
action = "GetTime"
scope = "public"
"#;

    fn errors(extra: &str) -> Vec<String> {
        match parse(&format!("{BASE}{extra}"), std::path::Path::new("/")) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.into_iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect()
            }
        }
    }

    #[test]
    fn rules_compile_with_defaults() {
        let cfg = parse(
            &format!(
                "{BASE}\n[[limits.rules]]\nname = \"ip\"\nby = [\"ip\"]\nrate = 600\nper = \"1m\"\n\n[[limits.rules]]\nname = \"orders\"\nby = [\"account\", \"key\"]\nrate = 10\nper = \"1s\"\nburst = 20\ncost = \"one\"\ngroups = [\"orders\"]\n"
            ),
            std::path::Path::new("/"),
        )
        .unwrap();
        let l = &cfg.limits;
        assert_eq!(l.rules.len(), 2);
        assert_eq!(l.rules[0].burst, 600, "burst defaults to rate");
        assert_eq!(l.rules[0].cost, LimitCost::Weight);
        assert_eq!(
            l.rules[1].by,
            vec![LimitBy::Key, LimitBy::Account],
            "sorted"
        );
        assert!(l.rules[1].needs_principal());
        assert!(!l.rules[0].needs_principal());
        assert!(l.rules[1].covers(Some(&cfg.routes[0])));
        assert!(!l.rules[1].covers(Some(&cfg.routes[1])));
        assert!(!l.rules[1].covers(None));
        assert!(l.rules[0].covers(None));
        assert_eq!(l.escalation, EscalationConfig::default());
        assert_eq!(cfg.routes[0].group.as_deref(), Some("orders"));
    }

    #[test]
    fn every_mistake_is_reported() {
        let e = errors(
            r#"
[limits]
max_keys = 5
[limits.escalation]
denials = 0
first_ban = "1h"
max_ban = "1m"
[[limits.rules]]
name = "bad name!"
by = ["ip", "planet"]
rate = 0
per = "soon"
[[limits.rules]]
name = "dup"
rate = 1
per = "1s"
groups = ["nope"]
[[limits.rules]]
name = "dup"
rate = 1
per = "30days"
actions = ["GetTime"]
cost = "lots"
[[limits.rules]]
name = "heavy"
rate = 100
per = "1m"
burst = 2
actions = ["PlaceOrder"]
"#,
        );
        let want = [
            "limits.max_keys",
            "limits.escalation.denials",
            "limits.escalation.max_ban",
            "limits.rules[0].name",
            "limits.rules[0].by[1]",
            "limits.rules[0].rate",
            "limits.rules[0].per",
            "limits.rules[1].groups",
            "limits.rules[2].per",
            "limits.rules[2].cost",
            "limits.rules[2].name",
            "limits.rules[3].burst",
        ];
        for w in want {
            assert!(
                e.iter().any(|m| m.starts_with(&format!("{w}:"))),
                "missing {w} in {e:#?}"
            );
        }
    }

    #[test]
    fn route_fields_are_checked() {
        let e = errors("");
        assert!(e.is_empty(), "{e:?}");
        let bad = BASE.replace("group = \"orders\"", "group = \"a b\"\nwaf = \"maybe\"");
        let e = match parse(&bad, std::path::Path::new("/")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| e.path).collect(),
        };
        assert!(e.contains(&"routes[0].group".to_owned()), "{e:?}");
        assert!(e.contains(&"routes[0].waf".to_owned()), "{e:?}");
    }
}
