//! The pre-trade engine: limit evaluation and the open-order / client-order-id
//! state behind it.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::compiled::{CLimits, Compiled, FastMap, Level};
use super::fasthash::{FastState, PassHasher};
use super::parse::MAX_CLIENT_ORDER_ID_LEN;
use super::types::{level, limit, Order, PretradeConfig, Violation, Who};

/// Most shards of the account and key state.
const MAX_SHARDS: usize = 64;
/// Tracked entries per shard below which fewer shards are used (so a small
/// `max_tracked` is still honoured exactly).
const ENTRIES_PER_SHARD: usize = 1_024;

/// What the upstream answered to an order that passed [`Engine::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The order rests on the book under this upstream order id: the slot
    /// stays taken until [`Engine::order_closed`] or a reconciliation, and
    /// the client order id stays remembered.
    Resting(String),
    /// The order was accepted and is already closed (filled or cancelled
    /// immediately, e.g. ioc / fok): the slot is freed, the client order id
    /// stays remembered (an accepted order's id may not be reused).
    Done,
    /// The upstream refused the order, or it was never forwarded: the slot
    /// is freed and the client order id forgotten (a refused order's id may
    /// be reused).
    Rejected,
    /// No answer (timeout, connection lost, 5xx): the order may be resting.
    /// The slot stays taken until the next
    /// [`Engine::reconcile_open_orders`] for the account; the client order
    /// id stays remembered. Dropping a [`Ticket`] without settling it counts
    /// as this.
    Unknown,
}

/// A reserved open-order slot (and recorded client order id), handed out by
/// [`Engine::check`]. Settle it with [`Engine::settle`] (or
/// [`Ticket::settle`]) once the upstream answered. Dropping it unsettled
/// counts as [`Outcome::Unknown`]: the order may have reached the venue, so
/// the slot is held until the account's next reconciliation.
#[must_use = "settle the ticket with the upstream's answer; dropping it holds the slot until reconciliation"]
pub struct Ticket {
    inner: Option<Arc<Inner>>,
    parts: TicketParts,
}

struct TicketParts {
    account: Arc<str>,
    key: Arc<str>,
    /// The recorded client order id and its record's sequence number.
    cid: Option<(CidKey, u64)>,
    /// The engine's bound on known order ids (`max_tracked`) at check time.
    cap: usize,
}

impl Ticket {
    /// Settles the ticket (same as [`Engine::settle`]).
    pub fn settle(mut self, outcome: Outcome) {
        if let Some(inner) = self.inner.take() {
            inner.settle(&self.parts, outcome);
        }
    }

    /// The account the slot is reserved for.
    pub fn account_id(&self) -> &str {
        &self.parts.account
    }

    /// The key the slot is reserved for.
    pub fn key_id(&self) -> &str {
        &self.parts.key
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.settle(&self.parts, Outcome::Unknown);
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("account", &self.parts.account)
            .field("settled", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

/// The pre-trade risk engine. `Sync`: share it (e.g. in an `Arc`) between
/// request handlers; state is sharded by account and key behind
/// `parking_lot` mutexes, the configuration swapped atomically by
/// [`Engine::reload`].
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    cfg: RwLock<Arc<Compiled>>,
    refs: RwLock<FastMap<Box<str>, RefPrice>>,
    shards: Box<[Mutex<Shard>]>,
    keys: Box<[Mutex<KeyCounts>]>,
    cid_evictions: AtomicU64,
    order_id_overflows: AtomicU64,
    /// Client order id records held, all shards (bounded by `max_tracked`).
    cids_tracked: AtomicUsize,
    /// Known open order ids held, all shards (bounded by `max_tracked`).
    order_ids_tracked: AtomicUsize,
    /// The secret key of client order id fingerprints.
    cid_key: RandomState,
}

#[derive(Clone, Copy)]
struct RefPrice {
    price: Decimal,
    at_ms: i64,
}

#[derive(Default)]
struct Shard {
    accounts: FastMap<Arc<str>, Account>,
    /// Client order id records in insertion order, for expiry and eviction.
    cid_queue: VecDeque<CidRef>,
    next_seq: u64,
}

struct Account {
    name: Arc<str>,
    /// Known open order ids → the key that placed them, if known.
    orders: FastMap<Box<str>, Option<Arc<str>>>,
    /// In-flight and unknown-outcome slots per key.
    per_key: FastMap<Arc<str>, Pending>,
    in_flight: u32,
    /// Unknown-outcome slots and open orders whose id could not be tracked.
    unknown: u32,
    /// Client order ids by fingerprint (a keyed SipHash of the id: the
    /// client cannot choose fingerprints, so cannot flood a bucket, and a
    /// record costs no allocation).
    cids: HashMap<CidKey, CidEntry, BuildHasherDefault<PassHasher>>,
}

impl Account {
    fn new(name: Arc<str>) -> Self {
        Self {
            name,
            orders: FastMap::default(),
            per_key: FastMap::default(),
            in_flight: 0,
            unknown: 0,
            cids: HashMap::default(),
        }
    }

    fn open(&self) -> u32 {
        u32::try_from(self.orders.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.in_flight)
            .saturating_add(self.unknown)
    }

    fn is_idle(&self) -> bool {
        self.orders.is_empty() && self.in_flight == 0 && self.unknown == 0 && self.cids.is_empty()
    }
}

#[derive(Clone, Copy, Default)]
struct Pending {
    in_flight: u32,
    unknown: u32,
}

#[derive(Clone, Copy)]
struct CidEntry {
    at_ms: i64,
    seq: u64,
}

/// A client order id's fingerprint: its SipHash-1-3 under the engine's
/// random key. Two ids of one account within a window share one with
/// probability about n²/2⁶⁵ (n = ids in the window: ~3·10⁻⁸ for a
/// million), which would refuse the second as a duplicate.
type CidKey = u64;

struct CidRef {
    account: Arc<str>,
    cid: CidKey,
    at_ms: i64,
    seq: u64,
}

/// A key's open-order count, with its interned id (handed to tickets).
struct KeyCount {
    name: Arc<str>,
    open: u32,
}

/// Open-order counts per key id.
type KeyCounts = FastMap<Arc<str>, KeyCount>;

/// The smallest configured value and its level.
fn min_of<T: PartialOrd + Copy>(
    levels: &[Level<'_>],
    f: impl Fn(&CLimits) -> Option<T>,
) -> Option<(&'static str, T)> {
    let mut best: Option<(&'static str, T)> = None;
    for (lvl, l) in levels {
        if let Some(v) = l.and_then(&f) {
            match best {
                Some((_, b)) if b <= v => {}
                _ => best = Some((lvl, v)),
            }
        }
    }
    best
}

/// Is `at_ms` within `window_ms` before `now_ms`? A record from the future
/// (clock stepped back) counts as within.
fn within(now_ms: i64, at_ms: i64, window_ms: u64) -> bool {
    i128::from(now_ms) - i128::from(at_ms) < i128::from(window_ms)
}

/// The venue's time in force when none is given.
fn default_tif(order_type: &str) -> Option<&'static str> {
    match order_type {
        "limit" => Some("gtc"),
        "market" => Some("ioc"),
        _ => None,
    }
}

fn violation(limit: &'static str, level: &'static str, detail: String) -> Violation {
    Violation {
        limit,
        level,
        detail,
    }
}

fn invalid(detail: String) -> Violation {
    violation(limit::INVALID_ORDER, level::ORDER, detail)
}

/// At most 40 characters of user input in a message.
fn show(s: &str) -> String {
    s.chars().take(40).collect()
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Engine {
    /// Builds an engine. Any configuration is accepted (see
    /// [`PretradeConfig::validate`] for the checks a loader should run).
    pub fn new(cfg: PretradeConfig) -> Self {
        let shards = (cfg.max_tracked / ENTRIES_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two()
            .min(MAX_SHARDS);
        let compiled = Compiled::new(cfg);
        Self {
            inner: Arc::new(Inner {
                cfg: RwLock::new(Arc::new(compiled)),
                refs: RwLock::new(FastMap::default()),
                shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
                keys: (0..shards)
                    .map(|_| Mutex::new(KeyCounts::default()))
                    .collect(),
                cid_evictions: AtomicU64::new(0),
                order_id_overflows: AtomicU64::new(0),
                cid_key: RandomState::new(),
                cids_tracked: AtomicUsize::new(0),
                order_ids_tracked: AtomicUsize::new(0),
            }),
        }
    }

    /// Replaces the configuration. Open-order counts, known order ids,
    /// client-order-id memory and fetched reference prices are kept; a
    /// smaller `max_tracked` evicts client order ids at once (each shard's
    /// oldest first) and keeps known order ids beyond it until they close.
    pub fn reload(&self, cfg: PretradeConfig) {
        let compiled = Arc::new(Compiled::new(cfg));
        let cap = compiled.max_tracked;
        *self.inner.cfg.write() = compiled;
        for shard in self.inner.shards.iter() {
            let mut shard = shard.lock();
            trim_cids(&mut shard, cap, None, &self.inner, 0);
        }
    }

    /// Checks an order at `now_ms` (Unix milliseconds). The effective limit
    /// of each kind is the most restrictive across key, account, parent
    /// account, instrument and defaults. On success reserves an open-order
    /// slot (key and account counts) and records the client order id; the
    /// returned [`Ticket`] must be settled.
    pub fn check(
        &self,
        who: &Who<'_>,
        order: &Order<'_>,
        now_ms: i64,
    ) -> Result<Ticket, Violation> {
        // The read guard is held for the whole check (no shared reference
        // count to bump); `reload` only takes the write lock to swap.
        let compiled = self.inner.cfg.read();
        check_order_shape(order)?;
        let levels = compiled.levels(who, order.symbol);
        check_lists(&compiled, &levels, order)?;
        self.check_prices(&compiled, &levels, order, now_ms)?;
        self.reserve(&compiled, &levels, who, order, now_ms)
    }

    /// Settles a ticket with the upstream's answer (see [`Outcome`]).
    pub fn settle(&self, ticket: Ticket, outcome: Outcome) {
        ticket.settle(outcome);
    }

    /// A cancel or fill closing `order_id` was observed: frees its slot.
    /// An order id the engine does not know is ignored (slots of unknown
    /// outcome are only freed by reconciliation).
    pub fn order_closed(&self, account_id: &str, order_id: &str) {
        let inner = &*self.inner;
        let mut guard = inner.shard_of(account_id).lock();
        let shard = &mut *guard;
        let Some(acct) = shard.accounts.get_mut(account_id) else {
            return;
        };
        if let Some(key) = acct.orders.remove(order_id) {
            inner.release_order_ids(1);
            if let Some(key) = key {
                inner.key_add(&key, -1);
            }
        }
        if acct.is_idle() {
            shard.accounts.remove(account_id);
        }
    }

    /// Reconciliation with the upstream's list of the account's open orders
    /// (e.g. a `GET /v1/orders` response passing through): the known open
    /// order ids become exactly this list, slots of unknown outcome are
    /// cleared, in-flight reservations are kept. A key id given as `None`
    /// keeps the attribution already known for that order id, if any.
    pub fn reconcile_open_orders(
        &self,
        account_id: &str,
        open_order_ids: &[(String, Option<String>)],
    ) {
        let inner = &*self.inner;
        let cap = inner.cfg.read().max_tracked;
        let mut guard = inner.shard_of(account_id).lock();
        let shard = &mut *guard;
        let acct = match shard.accounts.get_mut(account_id) {
            Some(acct) => acct,
            None => {
                let name: Arc<str> = Arc::from(account_id);
                shard
                    .accounts
                    .entry(name.clone())
                    .or_insert_with(|| Account::new(name))
            }
        };
        // Per-key contribution change (orders and unknown slots only;
        // in-flight reservations are untouched).
        let mut delta: FastMap<Arc<str>, i64> = FastMap::default();
        for key in acct.orders.values().flatten() {
            *delta.entry(key.clone()).or_default() -= 1;
        }
        for (key, p) in acct.per_key.iter_mut() {
            *delta.entry(key.clone()).or_default() -= i64::from(p.unknown);
            p.unknown = 0;
        }
        acct.per_key.retain(|_, p| p.in_flight > 0);
        acct.unknown = 0;
        let old = std::mem::take(&mut acct.orders);
        inner.release_order_ids(old.len());
        let mut seen: HashSet<&str, FastState> = HashSet::default();
        for (id, key) in open_order_ids {
            if !seen.insert(id.as_str()) {
                continue;
            }
            let key: Option<Arc<str>> = match key {
                Some(k) => Some(match delta.get_key_value(k.as_str()) {
                    Some((arc, _)) => arc.clone(),
                    None => Arc::from(k.as_str()),
                }),
                None => old.get(id.as_str()).cloned().flatten(),
            };
            if inner.take_order_id(cap) {
                acct.orders.insert(id.as_str().into(), key.clone());
            } else {
                acct.unknown = acct.unknown.saturating_add(1);
                if let Some(k) = &key {
                    let p = acct.per_key.entry(k.clone()).or_default();
                    p.unknown = p.unknown.saturating_add(1);
                }
                inner.order_id_overflows.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(k) = key {
                *delta.entry(k).or_default() += 1;
            }
        }
        for (key, d) in &delta {
            if *d != 0 {
                inner.key_add(key, *d);
            }
        }
        if acct.is_idle() {
            shard.accounts.remove(account_id);
        }
    }

    /// Records a reference price fetched from the upstream (book mid or
    /// last trade) at `at_ms`. Non-positive prices and updates older than
    /// the stored one are ignored; at most `max_tracked` symbols are kept
    /// (a new symbol beyond that is ignored, so it falls back to its fixed
    /// price or none: fail closed).
    pub fn set_reference_price(&self, symbol: &str, price: Decimal, at_ms: i64) {
        if price <= Decimal::ZERO {
            return;
        }
        let cap = self.inner.cfg.read().max_tracked;
        let mut refs = self.inner.refs.write();
        match refs.get_mut(symbol) {
            Some(r) => {
                if at_ms >= r.at_ms {
                    *r = RefPrice { price, at_ms };
                }
            }
            None => {
                if refs.len() < cap {
                    refs.insert(symbol.into(), RefPrice { price, at_ms });
                }
            }
        }
    }

    /// The reference price of `symbol` at `now_ms`: the fetched one if at
    /// most `reference_max_age_ms` old, else the fixed one, else `None`.
    pub fn reference_price(&self, symbol: &str, now_ms: i64) -> Option<Decimal> {
        let compiled = self.inner.cfg.read().clone();
        self.inner.reference_price(&compiled, symbol, now_ms)
    }

    /// The account's open-order count (resting, in flight and of unknown
    /// outcome).
    pub fn open_orders(&self, account_id: &str) -> u32 {
        self.inner
            .shard_of(account_id)
            .lock()
            .accounts
            .get(account_id)
            .map_or(0, Account::open)
    }

    /// The account's slots of unknown outcome (an unsettled ticket dropped,
    /// [`Outcome::Unknown`], or an order id beyond `max_tracked`): a
    /// non-zero value means the gateway should reconcile the account.
    pub fn unknown_orders(&self, account_id: &str) -> u32 {
        self.inner
            .shard_of(account_id)
            .lock()
            .accounts
            .get(account_id)
            .map_or(0, |a| a.unknown)
    }

    /// The key's open-order count across accounts.
    pub fn key_open_orders(&self, key_id: &str) -> u32 {
        self.inner
            .key_shard_of(key_id)
            .lock()
            .get(key_id)
            .map_or(0, |k| k.open)
    }

    /// State for an admin endpoint, with ages against the system clock.
    pub fn snapshot(&self) -> Value {
        self.snapshot_at(unix_ms())
    }

    /// State for an admin endpoint at `now_ms`: counts per account and key,
    /// reference prices with ages, memory use and evictions.
    pub fn snapshot_at(&self, now_ms: i64) -> Value {
        let inner = &*self.inner;
        let compiled = inner.cfg.read().clone();
        let mut accounts = Map::new();
        let mut cids = 0usize;
        for shard in inner.shards.iter() {
            let shard = shard.lock();
            cids = cids.saturating_add(shard.cid_queue.len());
            for (name, a) in &shard.accounts {
                accounts.insert(
                    name.to_string(),
                    json!({
                        "open_orders": a.open(),
                        "resting": a.orders.len(),
                        "in_flight": a.in_flight,
                        "unknown": a.unknown,
                        "client_order_ids": a.cids.len(),
                    }),
                );
            }
        }
        let mut keys = Map::new();
        for shard in inner.keys.iter() {
            for (name, k) in shard.lock().iter() {
                keys.insert(name.to_string(), json!(k.open));
            }
        }
        let mut refs = Map::new();
        for (symbol, r) in inner.refs.read().iter() {
            let age = i128::from(now_ms) - i128::from(r.at_ms);
            refs.insert(
                symbol.to_string(),
                json!({
                    "price": r.price.normalize().to_string(),
                    "at_ms": r.at_ms,
                    "age_ms": i64::try_from(age).unwrap_or(i64::MAX),
                    "fresh": age <= i128::from(compiled.reference_max_age_ms),
                }),
            );
        }
        let fixed: Map<String, Value> = compiled
            .fixed_prices
            .iter()
            .map(|(s, p)| (s.to_string(), Value::String(p.normalize().to_string())))
            .collect();
        json!({
            "accounts": accounts,
            "keys": keys,
            "reference_prices": refs,
            "fixed_prices": fixed,
            "reference_max_age_ms": compiled.reference_max_age_ms,
            "tracked": {
                "max_tracked": compiled.max_tracked,
                "shards": inner.shards.len(),
                "client_order_ids": cids,
                "order_ids": inner.order_ids_tracked.load(Ordering::Relaxed),
                "client_order_id_evictions": inner.cid_evictions.load(Ordering::Relaxed),
                "order_id_overflows": inner.order_id_overflows.load(Ordering::Relaxed),
            },
        })
    }

    /// Notional and collar (the checks needing a reference price).
    fn check_prices(
        &self,
        compiled: &Compiled,
        levels: &[Level<'_>],
        order: &Order<'_>,
        now_ms: i64,
    ) -> Result<(), Violation> {
        let notional_limit = min_of(levels, |l| l.max_notional);
        let collar = min_of(levels, |l| l.collar_pct);
        let needs_reference =
            collar.is_some() || (notional_limit.is_some() && order.price.is_none());
        let reference = if needs_reference {
            self.inner.reference_price(compiled, order.symbol, now_ms)
        } else {
            None
        };
        let unavailable = |lvl: &'static str, what: String| {
            violation(
                limit::REFERENCE_PRICE_UNAVAILABLE,
                lvl,
                format!(
                    "no reference price for `{}` (none fetched within {} ms, no fixed price); {what} needs one",
                    show(order.symbol),
                    compiled.reference_max_age_ms
                ),
            )
        };
        if let Some((lvl, max)) = notional_limit {
            let (px, what) = match (order.price, reference) {
                (Some(p), _) => (p, "price"),
                (None, Some(r)) => (r, "reference price"),
                (None, None) => {
                    return Err(unavailable(
                        lvl,
                        format!("max_notional {}", max.normalize()),
                    ))
                }
            };
            match order.qty.checked_mul(px) {
                None => {
                    return Err(violation(
                        limit::MAX_NOTIONAL,
                        lvl,
                        format!(
                            "notional of qty `{}` × {what} {} overflows; max_notional {}",
                            order.qty,
                            px,
                            max.normalize()
                        ),
                    ))
                }
                Some(n) if n > max => {
                    return Err(violation(
                        limit::MAX_NOTIONAL,
                        lvl,
                        format!(
                            "notional {} (qty `{}` × {what} {}) exceeds max_notional {}",
                            n.normalize(),
                            order.qty,
                            px,
                            max.normalize()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some((lvl, pct)) = collar {
            let Some(r) = reference else {
                return Err(unavailable(
                    lvl,
                    format!("price_collar ±{}%", pct.normalize()),
                ));
            };
            if let Some(p) = order.price {
                if !within_collar(p, r, pct) {
                    let band = r
                        .checked_mul(pct)
                        .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED));
                    let range = band
                        .and_then(|b| Some((r.checked_sub(b)?, r.checked_add(b)?)))
                        .map(|(lo, hi)| {
                            format!(" (allowed {} to {})", lo.normalize(), hi.normalize())
                        })
                        .unwrap_or_default();
                    return Err(violation(
                        limit::PRICE_COLLAR,
                        lvl,
                        format!(
                            "price `{p}` is outside ±{}% of the reference price {}{range}",
                            pct.normalize(),
                            r.normalize()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Duplicate client order id and open-order counts; on success reserves
    /// the slot and records the client order id, all under the account
    /// shard's lock (and the key shard's, taken after it).
    fn reserve(
        &self,
        compiled: &Compiled,
        levels: &[Level<'_>],
        who: &Who<'_>,
        order: &Order<'_>,
        now_ms: i64,
    ) -> Result<Ticket, Violation> {
        let inner = &*self.inner;
        // The longest window is the most restrictive.
        let mut window: Option<(&'static str, u64)> = None;
        for (lvl, l) in levels {
            if let Some(w) = l.and_then(|l| l.duplicate_window_ms) {
                match window {
                    Some((_, b)) if b >= w => {}
                    _ => window = Some((lvl, w)),
                }
            }
        }
        let (key_levels, account_levels) = levels.split_at(1);
        let key_limit = min_of(key_levels, |l| l.max_open_orders);
        let account_limit = min_of(account_levels, |l| l.max_open_orders);

        let mut guard = inner.shard_of(who.account_id).lock();
        let shard = &mut *guard;
        let existing = shard.accounts.get_mut(who.account_id);
        let fingerprint = match (window, order.client_order_id) {
            (Some(_), Some(cid)) => Some(inner.cid_key.hash_one(cid)),
            _ => None,
        };
        if let (Some((lvl, w)), Some(cid), Some(fp), Some(acct)) =
            (window, order.client_order_id, fingerprint, &existing)
        {
            if let Some(seen) = acct.cids.get(&fp) {
                if within(now_ms, seen.at_ms, w) {
                    return Err(violation(
                        limit::DUPLICATE_CLIENT_ORDER_ID,
                        lvl,
                        format!(
                            "client_order_id `{}` was used {} ms ago, within duplicate_window_ms {w}",
                            show(cid),
                            i128::from(now_ms) - i128::from(seen.at_ms)
                        ),
                    ));
                }
            }
        }
        let account_open = existing.as_ref().map_or(0, |a| a.open());
        let key = {
            let mut keys = inner.key_shard_of(who.key_id).lock();
            let entry = keys.get_mut(who.key_id);
            if let Some((lvl, max)) = key_limit {
                let open = entry.as_ref().map_or(0, |k| k.open);
                if open >= max {
                    return Err(violation(
                        limit::MAX_OPEN_ORDERS,
                        lvl,
                        format!("the key has {open} open orders; max_open_orders {max}"),
                    ));
                }
            }
            if let Some((lvl, max)) = account_limit {
                if account_open >= max {
                    return Err(violation(
                        limit::MAX_OPEN_ORDERS,
                        lvl,
                        format!(
                            "the account has {account_open} open orders; max_open_orders {max}"
                        ),
                    ));
                }
            }
            // Reserve: the key's count first, under its lock.
            match entry {
                Some(k) => {
                    k.open = k.open.saturating_add(1);
                    k.name.clone()
                }
                None => {
                    let name: Arc<str> = Arc::from(who.key_id);
                    keys.insert(
                        name.clone(),
                        KeyCount {
                            name: name.clone(),
                            open: 1,
                        },
                    );
                    name
                }
            }
        };
        let acct = match existing {
            Some(acct) => acct,
            None => {
                let name: Arc<str> = Arc::from(who.account_id);
                shard
                    .accounts
                    .entry(name.clone())
                    .or_insert_with(|| Account::new(name))
            }
        };
        let account = acct.name.clone();
        acct.in_flight = acct.in_flight.saturating_add(1);
        match acct.per_key.get_mut(&*key) {
            Some(p) => p.in_flight = p.in_flight.saturating_add(1),
            None => {
                acct.per_key.insert(
                    key.clone(),
                    Pending {
                        in_flight: 1,
                        unknown: 0,
                    },
                );
            }
        }
        let cid = match fingerprint {
            Some(cid) => {
                let seq = shard.next_seq;
                shard.next_seq = shard.next_seq.wrapping_add(1);
                acct.cids.insert(cid, CidEntry { at_ms: now_ms, seq });
                shard.cid_queue.push_back(CidRef {
                    account: account.clone(),
                    cid,
                    at_ms: now_ms,
                    seq,
                });
                inner.cids_tracked.fetch_add(1, Ordering::Relaxed);
                // Keeps the record just made: at most one per shard over
                // the bound.
                trim_cids(
                    shard,
                    compiled.max_tracked,
                    Some((now_ms, compiled.max_window)),
                    inner,
                    1,
                );
                Some((cid, seq))
            }
            None => None,
        };
        Ok(Ticket {
            inner: Some(self.inner.clone()),
            parts: TicketParts {
                account,
                key,
                cid,
                cap: compiled.max_tracked,
            },
        })
    }
}

/// Is `price` within ± `pct` % of `reference` (boundary included)? Computed
/// as `|price − reference| × 100 ≤ reference × pct`, exactly; an overflow
/// is outside.
fn within_collar(price: Decimal, reference: Decimal, pct: Decimal) -> bool {
    let Some(diff) = price.checked_sub(reference) else {
        return false;
    };
    match (
        diff.abs().checked_mul(Decimal::ONE_HUNDRED),
        reference.checked_mul(pct),
    ) {
        (Some(lhs), Some(rhs)) => lhs <= rhs,
        _ => false,
    }
}

/// Quantity and price positive, a limit order priced, the client order id
/// bounded.
fn check_order_shape(order: &Order<'_>) -> Result<(), Violation> {
    if order.qty <= Decimal::ZERO {
        return Err(invalid(format!(
            "qty `{}` must be greater than 0",
            order.qty
        )));
    }
    match order.price {
        Some(p) if p <= Decimal::ZERO => {
            return Err(invalid(format!("price `{p}` must be greater than 0")))
        }
        None if order.order_type == "limit" => {
            return Err(invalid("a limit order needs a price".to_owned()))
        }
        _ => {}
    }
    if let Some(cid) = order.client_order_id {
        if cid.is_empty() || cid.len() > MAX_CLIENT_ORDER_ID_LEN {
            return Err(invalid(format!(
                "client_order_id must be 1 to {MAX_CLIENT_ORDER_ID_LEN} characters"
            )));
        }
    }
    Ok(())
}

/// Order type and time in force allow lists (every configured list must
/// contain the value), then the quantity.
fn check_lists(
    compiled: &Compiled,
    levels: &[Level<'_>],
    order: &Order<'_>,
) -> Result<(), Violation> {
    let type_bit = compiled.bit(order.order_type);
    let tif = order
        .time_in_force
        .or_else(|| default_tif(order.order_type));
    let tif_bit = tif.map_or(0, |t| compiled.bit(t));
    for (lvl, l) in levels {
        if let Some(mask) = l.and_then(|l| l.order_types) {
            if mask & type_bit == 0 {
                return Err(violation(
                    limit::ORDER_TYPE,
                    lvl,
                    format!(
                        "order type `{}` is not allowed (allowed: {})",
                        show(order.order_type),
                        compiled.names(mask)
                    ),
                ));
            }
        }
    }
    for (lvl, l) in levels {
        if let Some(mask) = l.and_then(|l| l.time_in_force) {
            if mask & tif_bit == 0 {
                return Err(violation(
                    limit::TIME_IN_FORCE,
                    lvl,
                    format!(
                        "time in force `{}` is not allowed (allowed: {})",
                        show(tif.unwrap_or("")),
                        compiled.names(mask)
                    ),
                ));
            }
        }
    }
    if let Some((lvl, max)) = min_of(levels, |l| l.max_qty) {
        if order.qty > max {
            return Err(violation(
                limit::MAX_QTY,
                lvl,
                format!("qty `{}` exceeds max_qty {}", order.qty, max.normalize()),
            ));
        }
    }
    Ok(())
}

/// Pops client-order-id records from the front of the shard's queue while
/// expired (older than the longest window; all records when no window is
/// configured) or, leaving at least `keep` records, while the engine holds
/// more than `cap`. `now` is `None` for a cap-only trim.
fn trim_cids(
    shard: &mut Shard,
    cap: usize,
    now: Option<(i64, Option<u64>)>,
    inner: &Inner,
    keep: usize,
) {
    while let Some(front) = shard.cid_queue.front() {
        let expired = match now {
            Some((now_ms, Some(w))) => !within(now_ms, front.at_ms, w),
            Some((_, None)) => true,
            None => false,
        };
        let over = shard.cid_queue.len() > keep && inner.cids_tracked.load(Ordering::Relaxed) > cap;
        if !expired && !over {
            break;
        }
        let Some(front) = shard.cid_queue.pop_front() else {
            break;
        };
        inner.cids_tracked.fetch_sub(1, Ordering::Relaxed);
        if let Some(acct) = shard.accounts.get_mut(&*front.account) {
            if acct
                .cids
                .get(&front.cid)
                .is_some_and(|e| e.seq == front.seq)
            {
                acct.cids.remove(&front.cid);
                if !expired {
                    inner.cid_evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
            if acct.is_idle() {
                shard.accounts.remove(&*front.account);
            }
        }
    }
}

impl Inner {
    /// Takes one of the `cap` known-order-id places; `false` when all are
    /// taken (the order's slot is then kept as unknown).
    fn take_order_id(&self, cap: usize) -> bool {
        self.order_ids_tracked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then(|| n.saturating_add(1))
            })
            .is_ok()
    }

    /// Gives back `n` known-order-id places.
    fn release_order_ids(&self, n: usize) {
        if n > 0 {
            let _ =
                self.order_ids_tracked
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                        Some(m.saturating_sub(n))
                    });
        }
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "INVARIANT: index() is below the non-zero length"
    )]
    fn shard_of(&self, account_id: &str) -> &Mutex<Shard> {
        &self.shards[index(account_id, self.shards.len())]
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "INVARIANT: index() is below the non-zero length"
    )]
    fn key_shard_of(&self, key_id: &str) -> &Mutex<KeyCounts> {
        &self.keys[index(key_id, self.keys.len())]
    }

    /// Adds `delta` to the key's open-order count (entries at zero removed).
    fn key_add(&self, key: &Arc<str>, delta: i64) {
        let clamp = |n: i64| u32::try_from(n.clamp(0, i64::from(u32::MAX))).unwrap_or(0);
        let mut keys = self.key_shard_of(key).lock();
        match keys.get_mut(&**key) {
            Some(k) => {
                k.open = clamp(i64::from(k.open) + delta);
                if k.open == 0 {
                    keys.remove(&**key);
                }
            }
            None => {
                let open = clamp(delta);
                if open > 0 {
                    let name = key.clone();
                    keys.insert(key.clone(), KeyCount { name, open });
                }
            }
        }
    }

    fn reference_price(&self, compiled: &Compiled, symbol: &str, now_ms: i64) -> Option<Decimal> {
        if let Some(r) = self.refs.read().get(symbol) {
            let age = i128::from(now_ms) - i128::from(r.at_ms);
            if age <= i128::from(compiled.reference_max_age_ms) {
                return Some(r.price);
            }
        }
        compiled.fixed_prices.get(symbol).copied()
    }

    fn settle(&self, t: &TicketParts, outcome: Outcome) {
        let mut guard = self.shard_of(&t.account).lock();
        let shard = &mut *guard;
        // INVARIANT: the account exists while it has an in-flight slot.
        let Some(acct) = shard.accounts.get_mut(&*t.account) else {
            return;
        };
        acct.in_flight = acct.in_flight.saturating_sub(1);
        let mut unknown = false;
        match outcome {
            Outcome::Resting(id) => match acct.orders.get_mut(id.as_str()) {
                // Already known from a reconciliation that raced this answer.
                Some(attribution @ None) => *attribution = Some(t.key.clone()),
                Some(Some(_)) => self.key_add(&t.key, -1),
                None if self.take_order_id(t.cap) => {
                    acct.orders.insert(id.into_boxed_str(), Some(t.key.clone()));
                }
                None => {
                    self.order_id_overflows.fetch_add(1, Ordering::Relaxed);
                    unknown = true;
                }
            },
            Outcome::Done => self.key_add(&t.key, -1),
            Outcome::Rejected => {
                self.key_add(&t.key, -1);
                if let Some((cid, seq)) = &t.cid {
                    if acct.cids.get(cid).is_some_and(|e| e.seq == *seq) {
                        acct.cids.remove(cid);
                    }
                }
            }
            Outcome::Unknown => unknown = true,
        }
        if unknown {
            acct.unknown = acct.unknown.saturating_add(1);
        }
        if let Some(p) = acct.per_key.get_mut(&*t.key) {
            p.in_flight = p.in_flight.saturating_sub(1);
            if unknown {
                p.unknown = p.unknown.saturating_add(1);
            }
            if p.in_flight == 0 && p.unknown == 0 {
                acct.per_key.remove(&*t.key);
            }
        }
        if acct.is_idle() {
            shard.accounts.remove(&*t.account);
        }
    }
}

/// The shard of an id: the low bits of its fast hash.
fn index(id: &str, shards: usize) -> usize {
    let h = FastState.hash_one(id);
    // The remainder is below `shards`, so it fits a usize.
    usize::try_from(h % u64::try_from(shards.max(1)).unwrap_or(1)).unwrap_or(0)
}
