//! The configuration compiled for the hot path: limits inline in one map
//! per level, allow lists as bit masks over a small vocabulary (no heap
//! strings to chase per check), non-positive fixed prices dropped.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::fasthash::FastState;
use super::types::{level, Limits, PretradeConfig, Who};

/// Most distinct values across all `order_types` / `time_in_force` lists; a
/// value beyond it never matches (fail closed; `validate` reports it).
pub(crate) const MAX_VOCABULARY: usize = 64;

pub(crate) type FastMap<K, V> = HashMap<K, V, FastState>;

/// One level's limits, compiled.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CLimits {
    pub(crate) max_qty: Option<Decimal>,
    pub(crate) max_notional: Option<Decimal>,
    pub(crate) collar_pct: Option<Decimal>,
    pub(crate) max_open_orders: Option<u32>,
    /// Bit `i` set: `vocabulary[i]` allowed.
    pub(crate) order_types: Option<u64>,
    pub(crate) time_in_force: Option<u64>,
    /// `None` for no window or a zero window.
    pub(crate) duplicate_window_ms: Option<u64>,
}

/// A level name and that level's limits, if configured.
pub(crate) type Level<'c> = (&'static str, Option<&'c CLimits>);

pub(crate) struct Compiled {
    pub(crate) defaults: CLimits,
    pub(crate) instruments: FastMap<Box<str>, CLimits>,
    pub(crate) accounts: FastMap<Box<str>, CLimits>,
    pub(crate) keys: FastMap<Box<str>, CLimits>,
    pub(crate) fixed_prices: FastMap<Box<str>, Decimal>,
    pub(crate) reference_max_age_ms: u64,
    pub(crate) max_tracked: usize,
    vocabulary: Vec<Box<str>>,
    /// The longest duplicate window anywhere (expiry of cid records).
    pub(crate) max_window: Option<u64>,
}

impl Compiled {
    pub(crate) fn new(cfg: PretradeConfig) -> Self {
        let mut vocabulary: Vec<Box<str>> = Vec::new();
        let all = std::iter::once(&cfg.defaults)
            .chain(cfg.instruments.values())
            .chain(cfg.accounts.values())
            .chain(cfg.keys.values());
        for l in all.clone() {
            for entry in [&l.order_types, &l.time_in_force]
                .into_iter()
                .flatten()
                .flatten()
            {
                let entry = entry.to_ascii_lowercase();
                if vocabulary.len() < MAX_VOCABULARY && !vocabulary.iter().any(|v| **v == *entry) {
                    vocabulary.push(entry.into_boxed_str());
                }
            }
        }
        let max_window = all
            .filter_map(|l| l.duplicate_window_ms)
            .filter(|w| *w > 0)
            .max();
        let mut c = Self {
            defaults: CLimits::default(),
            instruments: FastMap::default(),
            accounts: FastMap::default(),
            keys: FastMap::default(),
            fixed_prices: cfg
                .fixed_prices
                .into_iter()
                .filter(|(_, p)| *p > Decimal::ZERO)
                .map(|(s, p)| (s.into_boxed_str(), p))
                .collect(),
            reference_max_age_ms: cfg.reference_max_age_ms,
            max_tracked: cfg.max_tracked,
            vocabulary,
            max_window,
        };
        c.defaults = c.compile(&cfg.defaults);
        c.instruments = c.compile_map(cfg.instruments);
        c.accounts = c.compile_map(cfg.accounts);
        c.keys = c.compile_map(cfg.keys);
        c
    }

    fn compile_map(&self, map: HashMap<String, Limits>) -> FastMap<Box<str>, CLimits> {
        map.into_iter()
            .map(|(k, l)| (k.into_boxed_str(), self.compile(&l)))
            .collect()
    }

    fn compile(&self, l: &Limits) -> CLimits {
        let mask = |list: &Option<Vec<String>>| {
            list.as_ref().map(|list| {
                list.iter()
                    .fold(0u64, |m, s| m | self.bit(&s.to_ascii_lowercase()))
            })
        };
        CLimits {
            max_qty: l.max_qty,
            max_notional: l.max_notional,
            collar_pct: l.collar_pct,
            max_open_orders: l.max_open_orders,
            order_types: mask(&l.order_types),
            time_in_force: mask(&l.time_in_force),
            duplicate_window_ms: l.duplicate_window_ms.filter(|w| *w > 0),
        }
    }

    /// The value's bit in the masks; 0 for a value no list names.
    pub(crate) fn bit(&self, value: &str) -> u64 {
        self.vocabulary
            .iter()
            .position(|v| **v == *value)
            .and_then(|i| u32::try_from(i).ok())
            .and_then(|i| 1u64.checked_shl(i))
            .unwrap_or(0)
    }

    /// The values of a mask, for messages.
    pub(crate) fn names(&self, mask: u64) -> String {
        let names: Vec<&str> = self
            .vocabulary
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                u32::try_from(*i)
                    .ok()
                    .and_then(|i| 1u64.checked_shl(i))
                    .is_some_and(|b| mask & b != 0)
            })
            .map(|(_, v)| &**v)
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// The levels of an order, most specific first (ties report the most
    /// specific level).
    pub(crate) fn levels<'c>(&'c self, who: &Who<'_>, symbol: &str) -> [Level<'c>; 5] {
        let parent = who
            .parent_account_id
            .filter(|p| *p != who.account_id)
            .and_then(|p| self.accounts.get(p));
        [
            (level::KEY, self.keys.get(who.key_id)),
            (level::ACCOUNT, self.accounts.get(who.account_id)),
            (level::PARENT, parent),
            (level::INSTRUMENT, self.instruments.get(symbol)),
            (level::DEFAULT, Some(&self.defaults)),
        ]
    }
}
