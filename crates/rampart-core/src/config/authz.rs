//! `[policy]` (Cedar authorization), `[mfa]` (TOTP step-up), `[pretrade]`
//! (pre-trade risk limits) and `[kill_switch]`.
//!
//! ```toml
//! [policy]
//! defaults = true                    # load the shipped default policies (KYC tiers, MFA for sensitive actions)
//! files = ["policies/desk.cedar"]    # operator policies, relative to this file
//! [policy.instruments]               # the instrument catalogue: symbol = product (spot | perp | option)
//! "BTC-USD" = "spot"
//! "BTC-PERP" = "perp"
//!
//! [mfa]
//! issuer = "Rampart"                 # shown by authenticator apps
//! step_up_ttl = "5m"                 # lifetime of a step-up token from POST /v1/mfa/verify
//! address_delay = "24h"              # a new withdrawal address becomes usable after this
//! sensitive_actions = ["Withdraw", "CreateKey", "ChangePermissions", "AddressBookChange", "DisableMFA"]
//!
//! [pretrade]
//! reference_max_age = "5s"           # a fetched reference price older than this is stale
//! reference_refresh = "1s"           # how often reference prices are fetched from the upstream
//! reference_path = "/v1/markets/{symbol}/book"   # GET on the orders route's upstream; mid of best bid/ask
//! max_tracked = 100000               # bound on remembered client order ids
//! [pretrade.defaults]
//! max_qty = "100"
//! max_notional = "5000000"
//! collar_pct = "5"
//! max_open_orders = 200
//! order_types = ["limit", "market"]
//! time_in_force = ["gtc", "ioc", "fok"]
//! duplicate_window = "10m"
//! [pretrade.instruments."BTC-USD"]   # same keys; also [pretrade.accounts."ID"], [pretrade.keys."KEY"]
//! max_qty = "10"
//! [pretrade.fixed_prices]            # reference prices used when no fresh fetched one exists
//! "BTC-USD" = "65000"
//!
//! [kill_switch]
//! cancel_all = true                  # on engage, cancel the affected accounts' open orders upstream
//! cancel_path = "/v1/orders"         # DELETE on the orders route's upstream, per account
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{k, Compiler, Seg};

/// `[policy]`: present turns Cedar authorization on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Load the shipped default policies.
    pub defaults: bool,
    /// Operator `.cedar` files (absolute paths).
    pub files: Vec<PathBuf>,
    /// Instrument catalogue: symbol → product (`spot`, `perp`, `option`).
    pub instruments: BTreeMap<String, String>,
}

/// `[mfa]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaConfig {
    /// Issuer shown in authenticator apps.
    pub issuer: String,
    /// Lifetime of a step-up token.
    pub step_up_ttl: Duration,
    /// Delay before a new withdrawal address is usable.
    pub address_delay: Duration,
    /// Actions that need a fresh MFA proof.
    pub sensitive_actions: Vec<String>,
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            issuer: "Rampart".into(),
            step_up_ttl: Duration::from_secs(300),
            address_delay: Duration::from_secs(24 * 3600),
            sensitive_actions: [
                "Withdraw",
                "CreateKey",
                "ChangePermissions",
                "AddressBookChange",
                "DisableMFA",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

/// One level of pre-trade limits; `None` = no limit at this level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PretradeLimits {
    /// Largest order quantity.
    pub max_qty: Option<Decimal>,
    /// Largest quantity × price.
    pub max_notional: Option<Decimal>,
    /// Allowed distance of a limit price from the reference price, percent.
    pub collar_pct: Option<Decimal>,
    /// Most open orders.
    pub max_open_orders: Option<u32>,
    /// Allowed order types (lowercase).
    pub order_types: Option<Vec<String>>,
    /// Allowed time-in-force values (lowercase).
    pub time_in_force: Option<Vec<String>>,
    /// A client order id seen within this window is refused.
    pub duplicate_window: Option<Duration>,
}

/// `[pretrade]`: present turns pre-trade checks on for order-entry routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PretradeConfig {
    /// Everyone.
    pub defaults: PretradeLimits,
    /// Per symbol.
    pub instruments: BTreeMap<String, PretradeLimits>,
    /// Per account.
    pub accounts: BTreeMap<String, PretradeLimits>,
    /// Per key.
    pub keys: BTreeMap<String, PretradeLimits>,
    /// Fetched reference prices older than this are stale.
    pub reference_max_age: Duration,
    /// Fetch interval; `None` = never fetch (fixed prices only).
    pub reference_refresh: Option<Duration>,
    /// Upstream path template with `{symbol}`.
    pub reference_path: String,
    /// Configured reference prices.
    pub fixed_prices: BTreeMap<String, Decimal>,
    /// Bound on remembered client order ids.
    pub max_tracked: usize,
}

/// `[kill_switch]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillSwitchConfig {
    /// Send cancel-all upstream when a switch is engaged.
    pub cancel_all: bool,
    /// `DELETE` path of the upstream's cancel-all.
    pub cancel_path: String,
}

impl Default for KillSwitchConfig {
    fn default() -> Self {
        Self {
            cancel_all: false,
            cancel_path: "/v1/orders".into(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "d_true")]
    defaults: bool,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    instruments: BTreeMap<String, String>,
}

fn d_true() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMfa {
    issuer: Option<String>,
    step_up_ttl: Option<String>,
    address_delay: Option<String>,
    sensitive_actions: Option<Vec<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_qty: Option<String>,
    max_notional: Option<String>,
    collar_pct: Option<String>,
    max_open_orders: Option<u32>,
    order_types: Option<Vec<String>>,
    time_in_force: Option<Vec<String>>,
    duplicate_window: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPretrade {
    #[serde(default)]
    defaults: RawLimits,
    #[serde(default)]
    instruments: BTreeMap<String, RawLimits>,
    #[serde(default)]
    accounts: BTreeMap<String, RawLimits>,
    #[serde(default)]
    keys: BTreeMap<String, RawLimits>,
    reference_max_age: Option<String>,
    reference_refresh: Option<String>,
    reference_path: Option<String>,
    #[serde(default)]
    fixed_prices: BTreeMap<String, String>,
    max_tracked: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKill {
    cancel_all: Option<bool>,
    cancel_path: Option<String>,
}

const PRODUCTS: [&str; 3] = ["spot", "perp", "option"];
const ORDER_TYPES: [&str; 2] = ["limit", "market"];
const TIFS: [&str; 3] = ["gtc", "ioc", "fok"];

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

impl Compiler<'_> {
    pub(super) fn policy(&mut self, table: &toml::Table) -> Option<PolicyConfig> {
        let v = table.get("policy")?;
        let raw = self.de::<RawPolicy>(v.clone(), &[k("policy")])?;
        let files = raw
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| self.file(f, &[k("policy"), k("files"), Seg::Index(i)]))
            .collect();
        for (sym, product) in &raw.instruments {
            let p = [k("policy"), k("instruments"), k(sym)];
            if !valid_name(sym) {
                self.err(&p, format!("`{sym}` is not a valid instrument symbol"));
            }
            if !PRODUCTS.contains(&product.as_str()) {
                self.err(
                    &p,
                    format!("`{product}` is not one of `spot`, `perp`, `option`"),
                );
            }
        }
        Some(PolicyConfig {
            defaults: raw.defaults,
            files,
            instruments: raw.instruments,
        })
    }

    pub(super) fn mfa(&mut self, table: &toml::Table) -> MfaConfig {
        let raw = match table.get("mfa") {
            Some(v) => self
                .de::<RawMfa>(v.clone(), &[k("mfa")])
                .unwrap_or_default(),
            None => RawMfa::default(),
        };
        let d = MfaConfig::default();
        let p = |n: &str| [k("mfa"), k(n)];
        let step_up_ttl = raw
            .step_up_ttl
            .map_or(d.step_up_ttl, |s| self.duration(&s, &p("step_up_ttl")));
        if step_up_ttl > Duration::from_secs(3600) {
            self.err(&p("step_up_ttl"), "must be at most 1h");
        }
        let address_delay = match raw.address_delay.as_deref() {
            None => d.address_delay,
            Some("0s" | "0") => Duration::ZERO,
            Some(s) => self.duration(s, &p("address_delay")),
        };
        let issuer = raw.issuer.unwrap_or(d.issuer);
        if issuer.is_empty() || issuer.len() > 64 || issuer.contains(':') {
            self.err(&p("issuer"), "must be 1–64 characters without `:`");
        }
        MfaConfig {
            issuer,
            step_up_ttl,
            address_delay,
            sensitive_actions: raw.sensitive_actions.unwrap_or(d.sensitive_actions),
        }
    }

    pub(super) fn pretrade(&mut self, table: &toml::Table) -> Option<PretradeConfig> {
        let v = table.get("pretrade")?;
        let raw = self.de::<RawPretrade>(v.clone(), &[k("pretrade")])?;
        let base = k("pretrade");
        let defaults = self.limits_level(&raw.defaults, &[base.clone(), k("defaults")]);
        let level = |c: &mut Self, name: &str, m: &BTreeMap<String, RawLimits>| {
            m.iter()
                .map(|(id, l)| {
                    let p = [k("pretrade"), k(name), k(id)];
                    if !valid_name(id) {
                        c.err(&p, format!("`{id}` is not a valid id"));
                    }
                    (id.clone(), c.limits_level(l, &p))
                })
                .collect::<BTreeMap<_, _>>()
        };
        let instruments = level(self, "instruments", &raw.instruments);
        let accounts = level(self, "accounts", &raw.accounts);
        let keys = level(self, "keys", &raw.keys);
        let p = |n: &str| [k("pretrade"), k(n)];
        let reference_max_age = raw.reference_max_age.map_or(Duration::from_secs(5), |s| {
            self.duration(&s, &p("reference_max_age"))
        });
        let reference_refresh = match raw.reference_refresh.as_deref() {
            Some("off" | "never") => None,
            Some(s) => Some(self.duration(s, &p("reference_refresh"))),
            None => Some(Duration::from_secs(1)),
        };
        let reference_path = raw
            .reference_path
            .unwrap_or_else(|| "/v1/markets/{symbol}/book".into());
        if !reference_path.starts_with('/') || !reference_path.contains("{symbol}") {
            self.err(
                &p("reference_path"),
                "must be an absolute path containing `{symbol}`",
            );
        }
        let mut fixed_prices = BTreeMap::new();
        for (sym, v) in &raw.fixed_prices {
            let path = [k("pretrade"), k("fixed_prices"), k(sym)];
            if let Some(d) = self.positive_decimal(v, &path) {
                fixed_prices.insert(sym.clone(), d);
            }
        }
        let max_tracked = raw.max_tracked.unwrap_or(100_000);
        if !(1_000..=10_000_000).contains(&max_tracked) {
            self.err(&p("max_tracked"), "must be between 1000 and 10000000");
        }
        Some(PretradeConfig {
            defaults,
            instruments,
            accounts,
            keys,
            reference_max_age,
            reference_refresh,
            reference_path,
            fixed_prices,
            max_tracked,
        })
    }

    pub(super) fn kill_switch(&mut self, table: &toml::Table) -> KillSwitchConfig {
        let raw = match table.get("kill_switch") {
            Some(v) => self
                .de::<RawKill>(v.clone(), &[k("kill_switch")])
                .unwrap_or_default(),
            None => RawKill::default(),
        };
        let d = KillSwitchConfig::default();
        let cancel_path = raw.cancel_path.unwrap_or(d.cancel_path);
        if !cancel_path.starts_with('/') || cancel_path.contains(['?', '#', '{']) {
            self.err(
                &[k("kill_switch"), k("cancel_path")],
                "must be an absolute path without query or placeholders",
            );
        }
        KillSwitchConfig {
            cancel_all: raw.cancel_all.unwrap_or(d.cancel_all),
            cancel_path,
        }
    }

    fn positive_decimal(&mut self, v: &str, path: &[Seg]) -> Option<Decimal> {
        match Decimal::from_str(v) {
            Ok(d) if d > Decimal::ZERO => Some(d),
            Ok(_) => {
                self.err(path, "must be greater than zero");
                None
            }
            Err(_) => {
                self.err(
                    path,
                    format!("`{v}` is not a decimal (write it as a string, e.g. \"0.5\")"),
                );
                None
            }
        }
    }

    fn limits_level(&mut self, raw: &RawLimits, base: &[Seg]) -> PretradeLimits {
        let p = |n: &str| {
            let mut v = base.to_vec();
            v.push(k(n));
            v
        };
        let dec = |c: &mut Self, v: &Option<String>, n: &str| {
            v.as_deref().and_then(|s| c.positive_decimal(s, &p(n)))
        };
        let max_qty = dec(self, &raw.max_qty, "max_qty");
        let max_notional = dec(self, &raw.max_notional, "max_notional");
        let collar_pct = dec(self, &raw.collar_pct, "collar_pct");
        if collar_pct.is_some_and(|c| c >= Decimal::from(100)) {
            self.err(&p("collar_pct"), "must be below 100");
        }
        if raw.max_open_orders == Some(0) {
            self.err(&p("max_open_orders"), "must be greater than zero");
        }
        let list = |c: &mut Self, v: &Option<Vec<String>>, n: &str, allowed: &[&str]| {
            v.as_ref().map(|l| {
                for x in l {
                    if !allowed.contains(&x.as_str()) {
                        c.err(&p(n), format!("`{x}` is not one of {}", allowed.join(", ")));
                    }
                }
                l.clone()
            })
        };
        let order_types = list(self, &raw.order_types, "order_types", &ORDER_TYPES);
        let time_in_force = list(self, &raw.time_in_force, "time_in_force", &TIFS);
        let duplicate_window = raw
            .duplicate_window
            .as_deref()
            .map(|s| self.duration(s, &p("duplicate_window")));
        PretradeLimits {
            max_qty,
            max_notional,
            collar_pct,
            max_open_orders: raw.max_open_orders,
            order_types,
            time_in_force,
            duplicate_window,
        }
    }
}
