//! Configuration, input and decision types of the pre-trade engine.

use std::collections::HashMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Default staleness limit of a fetched reference price (5 s).
pub const DEFAULT_REFERENCE_MAX_AGE_MS: u64 = 5_000;
/// Default bound on tracked client order ids and open order ids.
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// The limits configured at one level (key, account, instrument or
/// defaults). Every field is optional: `None` means no limit at this level.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest quantity of one order.
    pub max_qty: Option<Decimal>,
    /// Largest notional of one order: qty × price (limit orders: the
    /// order's price; orders without a price: the reference price).
    pub max_notional: Option<Decimal>,
    /// A priced order's price must be within ± this many percent of the
    /// reference price (`5` = ±5 %; the boundary itself is allowed).
    pub collar_pct: Option<Decimal>,
    /// Largest number of open orders (resting, in flight or of unknown
    /// outcome). At the key level it caps the key's count; at every other
    /// level the account's count.
    pub max_open_orders: Option<u32>,
    /// Allowed order types, lowercase (e.g. `["limit"]`).
    pub order_types: Option<Vec<String>>,
    /// Allowed times in force, lowercase (e.g. `["gtc", "ioc"]`).
    pub time_in_force: Option<Vec<String>>,
    /// A client order id seen for the account within this many milliseconds
    /// is refused.
    pub duplicate_window_ms: Option<u64>,
}

/// The pre-trade configuration. The effective limit of each kind is the most
/// restrictive across key, account, parent account, instrument and defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretradeConfig {
    /// Limits applying to every order.
    pub defaults: Limits,
    /// Limits per symbol (apply to everyone trading it).
    pub instruments: HashMap<String, Limits>,
    /// Limits per account id; an account's entry also caps its sub-accounts
    /// (as their parent).
    pub accounts: HashMap<String, Limits>,
    /// Limits per API key id.
    pub keys: HashMap<String, Limits>,
    /// How old a fetched reference price may be, in milliseconds.
    pub reference_max_age_ms: u64,
    /// Configured reference prices, used when no fresh fetched one exists.
    pub fixed_prices: HashMap<String, Decimal>,
    /// Bound on tracked client order ids and on tracked open order ids
    /// (each); memory never grows beyond it.
    pub max_tracked: usize,
}

impl Default for PretradeConfig {
    fn default() -> Self {
        Self {
            defaults: Limits::default(),
            instruments: HashMap::new(),
            accounts: HashMap::new(),
            keys: HashMap::new(),
            reference_max_age_ms: DEFAULT_REFERENCE_MAX_AGE_MS,
            fixed_prices: HashMap::new(),
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }
}

impl PretradeConfig {
    /// Checks the configuration and returns every problem at once (key path
    /// and message). The engine accepts any configuration and stays fail
    /// closed (a negative limit refuses every order it applies to, a
    /// non-positive fixed price is ignored), but a configuration loader
    /// should refuse to start on these.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        validate_limits("defaults", &self.defaults, &mut errors);
        for (section, map) in [
            ("instruments", &self.instruments),
            ("accounts", &self.accounts),
            ("keys", &self.keys),
        ] {
            let mut names: Vec<&String> = map.keys().collect();
            names.sort();
            for name in names {
                if let Some(limits) = map.get(name) {
                    validate_limits(&format!("{section}.`{name}`"), limits, &mut errors);
                }
            }
        }
        let mut symbols: Vec<(&String, &Decimal)> = self.fixed_prices.iter().collect();
        symbols.sort();
        for (symbol, price) in symbols {
            if *price <= Decimal::ZERO {
                errors.push(format!(
                    "fixed_prices.`{symbol}`: must be greater than 0 (got {price})"
                ));
            }
        }
        let mut vocabulary: Vec<String> = std::iter::once(&self.defaults)
            .chain(self.instruments.values())
            .chain(self.accounts.values())
            .chain(self.keys.values())
            .flat_map(|l| [&l.order_types, &l.time_in_force])
            .flatten()
            .flatten()
            .map(|v| v.to_ascii_lowercase())
            .collect();
        vocabulary.sort();
        vocabulary.dedup();
        if vocabulary.len() > super::compiled::MAX_VOCABULARY {
            errors.push(format!(
                "order_types / time_in_force: at most {} distinct values in all lists (got {})",
                super::compiled::MAX_VOCABULARY,
                vocabulary.len()
            ));
        }
        if self.max_tracked == 0 {
            errors.push("max_tracked: must be at least 1".to_owned());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn validate_limits(path: &str, l: &Limits, errors: &mut Vec<String>) {
    for (field, value) in [
        ("max_qty", l.max_qty),
        ("max_notional", l.max_notional),
        ("collar_pct", l.collar_pct),
    ] {
        if let Some(v) = value {
            if v < Decimal::ZERO {
                errors.push(format!("{path}.{field}: must not be negative (got {v})"));
            }
        }
    }
    for (field, list) in [
        ("order_types", &l.order_types),
        ("time_in_force", &l.time_in_force),
    ] {
        for entry in list.iter().flatten() {
            if entry.is_empty() || *entry != entry.to_ascii_lowercase() {
                errors.push(format!(
                    "{path}.{field}: entries must be lowercase and non-empty (got `{entry}`)"
                ));
            }
        }
    }
}

/// An order-entry request, borrowed from the parsed body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order<'a> {
    /// Instrument symbol, e.g. `BTC-USD`.
    pub symbol: &'a str,
    /// `buy` or `sell`.
    pub side: &'a str,
    /// Order type, lowercase (`limit`, `market`).
    pub order_type: &'a str,
    /// Quantity; must be greater than 0.
    pub qty: Decimal,
    /// Limit price; required for `limit` orders, must be greater than 0.
    pub price: Option<Decimal>,
    /// Time in force (`gtc`, `ioc`, `fok`); `None` means the venue default
    /// (`gtc` for limit orders, `ioc` for market orders).
    pub time_in_force: Option<&'a str>,
    /// The client's idempotency id.
    pub client_order_id: Option<&'a str>,
}

/// Who places the order (from authentication).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Who<'a> {
    /// API key id (not the secret).
    pub key_id: &'a str,
    /// Account the order is placed for.
    pub account_id: &'a str,
    /// The account's parent, for a sub-account.
    pub parent_account_id: Option<&'a str>,
}

/// Names of the limits a [`Violation`] can report.
pub mod limit {
    /// Quantity above `max_qty`.
    pub const MAX_QTY: &str = "max_qty";
    /// Notional above `max_notional`, or not computable (overflow).
    pub const MAX_NOTIONAL: &str = "max_notional";
    /// Price outside the collar around the reference price.
    pub const PRICE_COLLAR: &str = "price_collar";
    /// Too many open orders.
    pub const MAX_OPEN_ORDERS: &str = "max_open_orders";
    /// Order type not allowed.
    pub const ORDER_TYPE: &str = "order_type";
    /// Time in force not allowed.
    pub const TIME_IN_FORCE: &str = "time_in_force";
    /// Client order id seen within the duplicate window.
    pub const DUPLICATE_CLIENT_ORDER_ID: &str = "duplicate_client_order_id";
    /// A notional limit or collar applies but no reference price is known.
    pub const REFERENCE_PRICE_UNAVAILABLE: &str = "reference_price_unavailable";
    /// The order itself is malformed (non-positive quantity or price, limit
    /// order without price, oversized client order id); reported with level
    /// [`super::level::ORDER`].
    pub const INVALID_ORDER: &str = "invalid_order";
}

/// Names of the levels a [`Violation`] can report.
pub mod level {
    /// The API key's limits.
    pub const KEY: &str = "key";
    /// The account's limits.
    pub const ACCOUNT: &str = "account";
    /// The parent account's limits (for a sub-account).
    pub const PARENT: &str = "parent";
    /// The instrument's limits.
    pub const INSTRUMENT: &str = "instrument";
    /// The default limits.
    pub const DEFAULT: &str = "default";
    /// Not a configured limit: the order itself is malformed.
    pub const ORDER: &str = "order";
}

/// Why an order was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which limit (see [`limit`]).
    pub limit: &'static str,
    /// At which level the binding limit is configured (see [`level`]).
    pub level: &'static str,
    /// Human readable; includes the configured limit value, never secrets.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} limit): {}", self.limit, self.level, self.detail)
    }
}

impl std::error::Error for Violation {}
