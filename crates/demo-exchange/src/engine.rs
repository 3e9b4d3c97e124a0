//! The matching engine: markets, accounts, balances, order books, matching
//! and settlement. Pure and synchronous (no I/O), so it can be unit tested
//! directly; [`crate::Exchange`] puts it behind a lock and the HTTP layer.
//!
//! # Semantics
//!
//! * **Priority**: price-time. Trades execute at the maker's (resting) price.
//! * **Limit orders** match while prices cross; the remainder rests (`gtc`),
//!   is cancelled (`ioc`), or — for `fok` — the whole order is cancelled
//!   before anything executes unless it can be filled completely.
//! * **Market orders** have no price and are `ioc` (or `fok`): they match
//!   until filled or the book is exhausted; the remainder is cancelled.
//! * **Self-trade prevention** (*cancel resting*): when an incoming order
//!   would trade against a resting order of the same account, the resting
//!   order is cancelled (reason `self_trade_prevention`, its funds released)
//!   and matching continues with the next order. Self orders do not count
//!   as liquidity for the `fok` check.
//! * **Spot balances**: a limit buy locks `qty * price` of the quote asset, a
//!   limit sell locks `qty` of the base asset; fills consume the lock (a buy
//!   filled below its limit gets the difference back), cancel releases what
//!   is left. A market buy is checked fill by fill against the available
//!   quote balance and stops (remainder cancelled, reason
//!   `insufficient_funds`) when it runs out; a market sell needs the whole
//!   quantity available up front.
//! * **Perpetuals** (`BTC-PERP`): no asset moves and nothing is locked; fills
//!   only change `positions[symbol]` (+qty buyer, −qty seller). Margin,
//!   funding and liquidation are out of scope for this demo venue.
//! * **Options**: the buyer pays the premium `qty * price` in the quote asset
//!   (locked like a spot buy), the seller receives it; positions change as
//!   for perpetuals. Writing (selling) options needs no collateral here.
//! * **Validation**: qty and price must be positive, at most
//!   [`MAX_QTY`]/[`MAX_PRICE`], and multiples of the lot/tick size.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::book::{crosses, OrderBook};
use crate::num;
use crate::types::{
    Event, EventPayload, Fill, FillUpdate, Liquidity, Market, MarketKind, OptionRight, Order,
    OrderStatus, OrderType, OrderUpdate, Side, TimeInForce,
};

/// Largest accepted order quantity.
pub const MAX_QTY: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Largest accepted price.
pub const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Largest accepted withdrawal amount.
pub const MAX_WITHDRAWAL: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Maximum length of a client order id.
pub const MAX_CLIENT_ORDER_ID_LEN: usize = 64;
/// Maximum length of a withdrawal address.
pub const MAX_ADDRESS_LEN: usize = 128;

/// Cancel reason: self-trade prevention cancelled the resting order.
pub const REASON_SELF_TRADE: &str = "self_trade_prevention";
/// Cancel reason: `ioc` / market remainder.
pub const REASON_IOC: &str = "ioc_remainder";
/// Cancel reason: `fok` order could not be filled completely.
pub const REASON_FOK: &str = "fok_not_fillable";
/// Cancel reason: market buy ran out of quote balance.
pub const REASON_FUNDS: &str = "insufficient_funds";
/// Cancel reason: matching stopped on an internal inconsistency (not expected).
pub const REASON_INTERNAL: &str = "internal_error";
/// Cancel reason: cancelled by the account.
pub const REASON_USER: &str = "user";

/// Errors returned by engine operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The request is malformed or violates market rules.
    #[error("{0}")]
    Invalid(String),
    /// No such instrument.
    #[error("unknown symbol {0:?}")]
    UnknownSymbol(String),
    /// No such account.
    #[error("unknown account {0:?}")]
    UnknownAccount(String),
    /// Not enough available balance.
    #[error("insufficient balance: {0}")]
    InsufficientBalance(String),
    /// An open order of the account already uses this client order id.
    #[error("duplicate client_order_id {0:?} among open orders")]
    DuplicateClientOrderId(String),
    /// No open order with this id belongs to the account.
    #[error("order {0} not found")]
    OrderNotFound(String),
}

/// One asset balance.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Balance {
    /// Free to trade or withdraw.
    #[serde(serialize_with = "num::ser")]
    pub available: Decimal,
    /// Reserved by open orders.
    #[serde(serialize_with = "num::ser")]
    pub locked: Decimal,
}

/// Balances and positions of one account.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Account {
    /// Balances by asset.
    pub balances: BTreeMap<String, Balance>,
    /// Derivative positions by symbol (signed quantity).
    #[serde(serialize_with = "ser_positions")]
    pub positions: BTreeMap<String, Decimal>,
}

fn ser_positions<S: serde::Serializer>(
    p: &BTreeMap<String, Decimal>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(p.iter().map(|(k, v)| (k, v.normalize().to_string())))
}

/// `GET /v1/account` body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccountView {
    /// Account name.
    pub account: String,
    /// Balances and positions.
    #[serde(flatten)]
    pub state: Account,
}

/// Aggregated book snapshot (`[[price, qty], ...]`, best first).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BookView {
    /// Instrument.
    pub symbol: String,
    /// Bid levels, highest first.
    pub bids: Vec<[String; 2]>,
    /// Ask levels, lowest first.
    pub asks: Vec<[String; 2]>,
}

/// An order request, already parsed from the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOrder {
    /// Instrument.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Quantity.
    pub qty: Decimal,
    /// Limit price (required for limit, forbidden for market).
    pub price: Option<Decimal>,
    /// Time in force (default: `gtc` for limit, `ioc` for market).
    pub time_in_force: Option<TimeInForce>,
    /// Client order id.
    pub client_order_id: Option<String>,
}

impl NewOrder {
    /// A `gtc` limit order without client id.
    pub fn limit(symbol: &str, side: Side, qty: Decimal, price: Decimal) -> Self {
        NewOrder {
            symbol: symbol.to_string(),
            side,
            order_type: OrderType::Limit,
            qty,
            price: Some(price),
            time_in_force: None,
            client_order_id: None,
        }
    }

    /// A market order without client id.
    pub fn market(symbol: &str, side: Side, qty: Decimal) -> Self {
        NewOrder {
            symbol: symbol.to_string(),
            side,
            order_type: OrderType::Market,
            qty,
            price: None,
            time_in_force: None,
            client_order_id: None,
        }
    }

    /// Same order with another time in force.
    pub fn tif(mut self, tif: TimeInForce) -> Self {
        self.time_in_force = Some(tif);
        self
    }

    /// Same order with a client order id.
    pub fn cid(mut self, cid: &str) -> Self {
        self.client_order_id = Some(cid.to_string());
        self
    }
}

/// A pending withdrawal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Withdrawal {
    /// Withdrawal id.
    pub withdrawal_id: String,
    /// Account debited.
    pub account: String,
    /// Asset.
    pub asset: String,
    /// Amount debited.
    #[serde(serialize_with = "num::ser")]
    pub amount: Decimal,
    /// Destination address.
    pub address: String,
    /// Always `pending` in this demo.
    pub status: String,
    /// Request time, unix milliseconds.
    pub created_at_ms: u64,
}

/// The result of an engine operation on an order: the order as it stands
/// and the stream events it caused, in order.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The order after the operation.
    pub order: Order,
    /// Events for the accounts involved.
    pub events: Vec<Event>,
}

/// Where an open order rests.
#[derive(Clone, Debug)]
struct OrderLoc {
    symbol: String,
    side: Side,
    price: Decimal,
    account: String,
}

/// Exchange state: markets, books, accounts.
#[derive(Debug, Default)]
pub struct Engine {
    markets: BTreeMap<String, Market>,
    books: HashMap<String, OrderBook>,
    accounts: BTreeMap<String, Account>,
    index: HashMap<u64, OrderLoc>,
    withdrawals: Vec<Withdrawal>,
    next_order_id: u64,
    next_trade_id: u64,
    next_withdrawal_id: u64,
}

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or(Decimal::ZERO)
}

/// The demo instruments: `BTC-USD`, `ETH-USD`, `BTC-PERP`, `BTC-20261225-100000-C`.
pub fn default_markets() -> Vec<Market> {
    let spot = |symbol: &str, base: &str, tick: &str, lot: &str| Market {
        symbol: symbol.into(),
        kind: MarketKind::Spot,
        base_asset: Some(base.into()),
        underlying: None,
        quote_asset: "USD".into(),
        settlement_asset: None,
        tick_size: dec(tick),
        lot_size: dec(lot),
        option_type: None,
        strike: None,
        expiry: None,
    };
    vec![
        spot("BTC-USD", "BTC", "0.01", "0.0001"),
        spot("ETH-USD", "ETH", "0.01", "0.001"),
        Market {
            symbol: "BTC-PERP".into(),
            kind: MarketKind::Perpetual,
            base_asset: None,
            underlying: Some("BTC".into()),
            quote_asset: "USD".into(),
            settlement_asset: Some("USD".into()),
            tick_size: dec("0.5"),
            lot_size: dec("0.001"),
            option_type: None,
            strike: None,
            expiry: None,
        },
        Market {
            symbol: "BTC-20261225-100000-C".into(),
            kind: MarketKind::Option,
            base_asset: None,
            underlying: Some("BTC".into()),
            quote_asset: "USD".into(),
            settlement_asset: Some("USD".into()),
            tick_size: dec("0.5"),
            lot_size: dec("0.01"),
            option_type: Some(OptionRight::Call),
            strike: Some(dec("100000")),
            expiry: Some("2026-12-25".into()),
        },
    ]
}

fn validate_client_order_id(cid: &str) -> Result<(), EngineError> {
    if cid.is_empty() || cid.len() > MAX_CLIENT_ORDER_ID_LEN {
        return Err(EngineError::Invalid(format!(
            "client_order_id must be 1..={MAX_CLIENT_ORDER_ID_LEN} characters"
        )));
    }
    if !cid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(EngineError::Invalid(
            "client_order_id may contain only ASCII letters, digits and - _ . :".into(),
        ));
    }
    Ok(())
}

fn order_event(o: &Order) -> Event {
    Event {
        account: o.account.clone(),
        payload: EventPayload::Order(OrderUpdate::from(o)),
    }
}

fn fill_event(o: &Order, liquidity: Liquidity, fill: &Fill) -> Event {
    Event {
        account: o.account.clone(),
        payload: EventPayload::Fill(FillUpdate {
            order_id: o.id,
            client_order_id: o.client_order_id.clone(),
            side: o.side,
            liquidity,
            fill: fill.clone(),
        }),
    }
}

/// The asset a limit order locks, if any: the quote asset for buys on
/// markets that move it, the base asset for spot sells.
fn lock_asset(market: &Market, side: Side) -> Option<&str> {
    match side {
        Side::Buy if market.moves_quote() => Some(market.quote_asset.as_str()),
        Side::Sell if market.kind == MarketKind::Spot => market.base_asset.as_deref(),
        _ => None,
    }
}

/// How much of an order's lock a fill of `qty` consumes.
fn lock_release(market: &Market, order: &Order, qty: Decimal) -> Decimal {
    let per_fill = match (order.side, order.price) {
        (Side::Buy, Some(limit)) if market.moves_quote() => {
            qty.checked_mul(limit).unwrap_or(order.locked)
        }
        (Side::Sell, _) if market.kind == MarketKind::Spot => qty,
        _ => Decimal::ZERO,
    };
    per_fill.min(order.locked)
}

impl Engine {
    /// An engine with the default markets, no accounts and empty books.
    pub fn new() -> Self {
        let mut e = Engine {
            next_order_id: 1,
            next_trade_id: 1,
            next_withdrawal_id: 1,
            ..Engine::default()
        };
        for m in default_markets() {
            e.add_market(m);
        }
        e
    }

    /// The demo state: default markets, account `mm` (market maker) with
    /// resting liquidity on every instrument, and accounts `demo` and
    /// `demo2` with 10 BTC, 100 ETH and 1,000,000 USD each.
    pub fn seeded() -> Self {
        let mut e = Engine::new();
        e.add_account(
            "mm",
            &[
                ("BTC", dec("1000")),
                ("ETH", dec("20000")),
                ("USD", dec("100000000")),
            ],
        );
        for name in ["demo", "demo2"] {
            e.add_account(
                name,
                &[
                    ("BTC", dec("10")),
                    ("ETH", dec("100")),
                    ("USD", dec("1000000")),
                ],
            );
        }
        // (symbol, mid, step between levels, qty of the first level, qty step)
        let ladders = [
            ("BTC-USD", "65000", "10", "0.5", "0.5"),
            ("ETH-USD", "3500", "0.5", "5", "5"),
            ("BTC-PERP", "65000", "5", "1", "1"),
            ("BTC-20261225-100000-C", "2500", "10", "1", "1"),
        ];
        for (symbol, mid, step, q0, qstep) in ladders {
            let (mid, step, q0, qstep) = (dec(mid), dec(step), dec(q0), dec(qstep));
            for level in 1..=5u32 {
                let n = Decimal::from(level);
                let offset = step * n;
                let qty = q0 + qstep * (n - Decimal::ONE);
                for (side, price) in [(Side::Buy, mid - offset), (Side::Sell, mid + offset)] {
                    if let Err(err) = e.place_order("mm", NewOrder::limit(symbol, side, qty, price))
                    {
                        tracing::error!(%err, symbol, "seeding market maker order failed");
                    }
                }
            }
        }
        e
    }

    /// Add (or replace) an instrument, with an empty book.
    pub fn add_market(&mut self, market: Market) {
        self.books.insert(market.symbol.clone(), OrderBook::new());
        self.markets.insert(market.symbol.clone(), market);
    }

    /// Add (or reset) an account with the given available balances.
    pub fn add_account(&mut self, name: &str, balances: &[(&str, Decimal)]) {
        let mut acct = Account::default();
        for (asset, amount) in balances {
            acct.balances.insert(
                (*asset).to_string(),
                Balance {
                    available: *amount,
                    locked: Decimal::ZERO,
                },
            );
        }
        self.accounts.insert(name.to_string(), acct);
    }

    /// All instruments, by symbol.
    pub fn markets(&self) -> Vec<Market> {
        self.markets.values().cloned().collect()
    }

    /// Is `name` a known account?
    pub fn has_account(&self, name: &str) -> bool {
        self.accounts.contains_key(name)
    }

    /// Balances and positions of an account.
    pub fn account(&self, name: &str) -> Result<AccountView, EngineError> {
        let state = self
            .accounts
            .get(name)
            .ok_or_else(|| EngineError::UnknownAccount(name.to_string()))?;
        Ok(AccountView {
            account: name.to_string(),
            state: state.clone(),
        })
    }

    /// One balance (zero if the account never held the asset).
    pub fn balance(&self, account: &str, asset: &str) -> Balance {
        self.accounts
            .get(account)
            .and_then(|a| a.balances.get(asset))
            .cloned()
            .unwrap_or_default()
    }

    /// Position of an account in a derivative (zero if none).
    pub fn position(&self, account: &str, symbol: &str) -> Decimal {
        self.accounts
            .get(account)
            .and_then(|a| a.positions.get(symbol))
            .copied()
            .unwrap_or(Decimal::ZERO)
    }

    /// Open orders of an account, oldest first.
    pub fn open_orders(&self, account: &str) -> Result<Vec<Order>, EngineError> {
        if !self.has_account(account) {
            return Err(EngineError::UnknownAccount(account.to_string()));
        }
        let mut out: Vec<Order> = self
            .books
            .values()
            .flat_map(|b| b.orders())
            .filter(|o| o.account == account)
            .cloned()
            .collect();
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    /// An open order by id (any account).
    pub fn open_order(&self, id: u64) -> Option<&Order> {
        let loc = self.index.get(&id)?;
        self.books.get(&loc.symbol)?.get(loc.side, loc.price, id)
    }

    /// Aggregated book of `symbol`, `depth` levels per side.
    pub fn book(&self, symbol: &str, depth: usize) -> Result<BookView, EngineError> {
        let book = self
            .books
            .get(symbol)
            .ok_or_else(|| EngineError::UnknownSymbol(symbol.to_string()))?;
        let levels = |side| {
            book.depth(side, depth)
                .into_iter()
                .map(|(p, q)| [p.normalize().to_string(), q.normalize().to_string()])
                .collect()
        };
        Ok(BookView {
            symbol: symbol.to_string(),
            bids: levels(Side::Buy),
            asks: levels(Side::Sell),
        })
    }

    /// Withdrawals requested so far, oldest first.
    pub fn withdrawals(&self) -> &[Withdrawal] {
        &self.withdrawals
    }

    fn balance_mut(&mut self, account: &str, asset: &str) -> Option<&mut Balance> {
        self.accounts
            .get_mut(account)
            .map(|a| a.balances.entry(asset.to_string()).or_default())
    }

    fn available(&self, account: &str, asset: &str) -> Decimal {
        self.balance(account, asset).available
    }

    /// Move `amount` of `asset` from available to locked (caller checked it is available).
    fn lock(&mut self, account: &str, asset: &str, amount: Decimal) {
        if let Some(b) = self.balance_mut(account, asset) {
            b.available -= amount;
            b.locked += amount;
        }
    }

    /// Release whatever `order` still has locked back to available.
    fn release_all(&mut self, market: &Market, order: &mut Order) {
        let amount = order.locked;
        order.locked = Decimal::ZERO;
        if amount.is_zero() {
            return;
        }
        if let Some(asset) = lock_asset(market, order.side) {
            if let Some(b) = self.balance_mut(&order.account, asset) {
                b.locked -= amount;
                b.available += amount;
            }
        }
    }

    fn validate(
        &self,
        account: &str,
        req: &NewOrder,
    ) -> Result<(Market, Decimal, Option<Decimal>, TimeInForce), EngineError> {
        if !self.has_account(account) {
            return Err(EngineError::UnknownAccount(account.to_string()));
        }
        let market = self
            .markets
            .get(&req.symbol)
            .cloned()
            .ok_or_else(|| EngineError::UnknownSymbol(req.symbol.clone()))?;
        let qty = req.qty.normalize();
        if qty <= Decimal::ZERO {
            return Err(EngineError::Invalid("qty must be greater than 0".into()));
        }
        if qty > MAX_QTY {
            return Err(EngineError::Invalid(format!(
                "qty must be at most {MAX_QTY}"
            )));
        }
        if !num::is_multiple_of(qty, market.lot_size) {
            return Err(EngineError::Invalid(format!(
                "qty must be a multiple of the lot size {}",
                market.lot_size.normalize()
            )));
        }
        let (price, tif) = match req.order_type {
            OrderType::Limit => {
                let price = req
                    .price
                    .ok_or_else(|| {
                        EngineError::Invalid("price is required for limit orders".into())
                    })?
                    .normalize();
                if price <= Decimal::ZERO {
                    return Err(EngineError::Invalid("price must be greater than 0".into()));
                }
                if price > MAX_PRICE {
                    return Err(EngineError::Invalid(format!(
                        "price must be at most {MAX_PRICE}"
                    )));
                }
                if !num::is_multiple_of(price, market.tick_size) {
                    return Err(EngineError::Invalid(format!(
                        "price must be a multiple of the tick size {}",
                        market.tick_size.normalize()
                    )));
                }
                (Some(price), req.time_in_force.unwrap_or(TimeInForce::Gtc))
            }
            OrderType::Market => {
                if req.price.is_some() {
                    return Err(EngineError::Invalid(
                        "price is not allowed for market orders".into(),
                    ));
                }
                let tif = match req.time_in_force {
                    None | Some(TimeInForce::Ioc) => TimeInForce::Ioc,
                    Some(TimeInForce::Fok) => TimeInForce::Fok,
                    Some(TimeInForce::Gtc) => {
                        return Err(EngineError::Invalid(
                            "market orders cannot be gtc (use ioc or fok)".into(),
                        ))
                    }
                };
                (None, tif)
            }
        };
        if let Some(cid) = &req.client_order_id {
            validate_client_order_id(cid)?;
            let dup = self.index.iter().any(|(id, loc)| {
                loc.account == account
                    && self
                        .open_order(*id)
                        .is_some_and(|o| o.client_order_id.as_deref() == Some(cid.as_str()))
            });
            if dup {
                return Err(EngineError::DuplicateClientOrderId(cid.clone()));
            }
        }
        Ok((market, qty, price, tif))
    }

    /// Walk the liquidity an order could take (ignoring the account's own
    /// orders, which self-trade prevention would cancel). Returns the
    /// fillable quantity (capped at `qty`), its cost, and the price of the
    /// first maker it would meet.
    fn fillable(
        &self,
        account: &str,
        symbol: &str,
        side: Side,
        limit: Option<Decimal>,
        qty: Decimal,
    ) -> (Decimal, Decimal, Option<Decimal>) {
        let mut filled = Decimal::ZERO;
        let mut cost = Decimal::ZERO;
        let mut first = None;
        let Some(book) = self.books.get(symbol) else {
            return (filled, cost, first);
        };
        'levels: for (price, queue) in book.iter_levels(side.opposite()) {
            if limit.is_some_and(|l| !crosses(side, l, price)) {
                break;
            }
            for maker in queue.iter().filter(|o| o.account != account) {
                first.get_or_insert(price);
                let take = (qty - filled).min(maker.remaining);
                filled += take;
                cost += take.checked_mul(price).unwrap_or(Decimal::MAX);
                if filled >= qty {
                    break 'levels;
                }
            }
        }
        (filled, cost, first)
    }

    /// Place an order for `account`: validate, check and lock funds, match,
    /// and rest or cancel the remainder according to its time in force.
    pub fn place_order(&mut self, account: &str, req: NewOrder) -> Result<Outcome, EngineError> {
        let (market, qty, price, tif) = self.validate(account, &req)?;
        let symbol = market.symbol.clone();
        let side = req.side;
        let is_spot = market.kind == MarketKind::Spot;

        // Funds checks (before anything executes).
        let mut lock: Option<(String, Decimal)> = None;
        match (req.order_type, side) {
            (OrderType::Limit, _) => {
                if let (Some(asset), Some(limit)) = (lock_asset(&market, side), price) {
                    let need = match side {
                        Side::Buy => qty.checked_mul(limit).ok_or_else(|| {
                            EngineError::Invalid("order notional overflows".into())
                        })?,
                        Side::Sell => qty,
                    };
                    let have = self.available(account, asset);
                    if have < need {
                        return Err(EngineError::InsufficientBalance(format!(
                            "need {} {asset}, available {}",
                            need.normalize(),
                            have.normalize()
                        )));
                    }
                    lock = Some((asset.to_string(), need));
                }
            }
            (OrderType::Market, Side::Sell) if is_spot => {
                let asset = market.base_asset.clone().unwrap_or_default();
                let have = self.available(account, &asset);
                if have < qty {
                    return Err(EngineError::InsufficientBalance(format!(
                        "need {} {asset}, available {}",
                        qty.normalize(),
                        have.normalize()
                    )));
                }
            }
            (OrderType::Market, Side::Buy) if market.moves_quote() => {
                let (_, _, first) = self.fillable(account, &symbol, side, None, qty);
                if let Some(p) = first {
                    let have = self.available(account, &market.quote_asset);
                    let affordable = have
                        .checked_div(p)
                        .map(|q| num::floor_to_step(q, market.lot_size))
                        .unwrap_or(Decimal::ZERO);
                    if affordable.is_zero() {
                        return Err(EngineError::InsufficientBalance(format!(
                            "available {} {} does not buy one lot at {}",
                            have.normalize(),
                            market.quote_asset,
                            p.normalize()
                        )));
                    }
                }
            }
            _ => {}
        }

        let now = now_ms();
        let id = self.next_order_id;
        self.next_order_id += 1;
        let mut taker = Order {
            id,
            client_order_id: req.client_order_id.clone(),
            account: account.to_string(),
            symbol: symbol.clone(),
            side,
            order_type: req.order_type,
            time_in_force: tif,
            price,
            qty,
            filled_qty: Decimal::ZERO,
            remaining: qty,
            avg_price: None,
            status: OrderStatus::New,
            cancel_reason: None,
            created_at_ms: now,
            updated_at_ms: now,
            fills: Vec::new(),
            locked: Decimal::ZERO,
            notional: Decimal::ZERO,
        };
        let mut events = Vec::new();

        // Fill-or-kill: all or nothing, decided before anything executes.
        if tif == TimeInForce::Fok {
            let (filled, cost, _) = self.fillable(account, &symbol, side, price, qty);
            let affordable = !(req.order_type == OrderType::Market
                && side == Side::Buy
                && market.moves_quote()
                && cost > self.available(account, &market.quote_asset));
            if filled < qty || !affordable {
                taker.status = OrderStatus::Cancelled;
                taker.cancel_reason = Some(REASON_FOK.into());
                events.push(order_event(&taker));
                return Ok(Outcome {
                    order: taker,
                    events,
                });
            }
        }

        if let Some((asset, need)) = lock {
            self.lock(account, &asset, need);
            taker.locked = need;
        }

        let stop = self.match_order(&market, &mut taker, &mut events);

        if taker.remaining.is_zero() {
            taker.status = OrderStatus::Filled;
            self.release_all(&market, &mut taker);
        } else if tif == TimeInForce::Gtc && stop.is_none() {
            // Rest the remainder (status stays new / partially_filled).
            self.index.insert(
                id,
                OrderLoc {
                    symbol: symbol.clone(),
                    side,
                    price: price.unwrap_or_default(),
                    account: account.to_string(),
                },
            );
            let resting = taker.clone();
            if let Some(book) = self.books.get_mut(&symbol) {
                if let Err(o) = book.insert(resting) {
                    // Unreachable: gtc orders are limit orders and carry a price.
                    self.index.remove(&o.id);
                    taker.status = OrderStatus::Cancelled;
                    self.release_all(&market, &mut taker);
                }
            }
        } else {
            taker.status = OrderStatus::Cancelled;
            taker.cancel_reason = Some(stop.unwrap_or(REASON_IOC).to_string());
            self.release_all(&market, &mut taker);
        }
        events.push(order_event(&taker));
        Ok(Outcome {
            order: taker,
            events,
        })
    }

    /// Match `taker` against the book. Returns a cancel reason if matching
    /// had to stop early for a reason other than price or liquidity.
    fn match_order(
        &mut self,
        market: &Market,
        taker: &mut Order,
        events: &mut Vec<Event>,
    ) -> Option<&'static str> {
        let symbol = market.symbol.clone();
        let side = taker.side;
        let maker_side = side.opposite();
        while taker.remaining > Decimal::ZERO {
            let (best, maker_id, maker_account, maker_remaining) = {
                let Some(book) = self.books.get(&symbol) else {
                    return Some(REASON_INTERNAL);
                };
                let Some(best) = book.best_price(maker_side) else {
                    break;
                };
                let Some(m) = book.front(maker_side, best) else {
                    break;
                };
                (best, m.id, m.account.clone(), m.remaining)
            };
            if taker.price.is_some_and(|limit| !crosses(side, limit, best)) {
                break;
            }
            if maker_account == taker.account {
                // Self-trade prevention: cancel the resting order, keep matching.
                let removed = self
                    .books
                    .get_mut(&symbol)
                    .and_then(|b| b.pop_front(maker_side, best));
                self.index.remove(&maker_id);
                if let Some(mut m) = removed {
                    self.release_all(market, &mut m);
                    m.status = OrderStatus::Cancelled;
                    m.cancel_reason = Some(REASON_SELF_TRADE.into());
                    m.updated_at_ms = now_ms();
                    events.push(order_event(&m));
                }
                continue;
            }

            let mut qty = taker.remaining.min(maker_remaining);
            if taker.order_type == OrderType::Market && side == Side::Buy && market.moves_quote() {
                let have = self.available(&taker.account, &market.quote_asset);
                let affordable = have
                    .checked_div(best)
                    .map(|q| num::floor_to_step(q, market.lot_size))
                    .unwrap_or(Decimal::ZERO);
                qty = qty.min(affordable);
                if qty.is_zero() {
                    return Some(REASON_FUNDS);
                }
            }
            let Some(notional) = qty.checked_mul(best) else {
                return Some(REASON_INTERNAL);
            };

            let fill = Fill {
                trade_id: self.next_trade_id,
                symbol: symbol.clone(),
                price: best,
                qty,
                maker_order_id: maker_id,
                taker_order_id: taker.id,
                taker_side: side,
                timestamp_ms: now_ms(),
            };
            self.next_trade_id += 1;

            // Maker side of the fill.
            let Some(maker) = self
                .books
                .get_mut(&symbol)
                .and_then(|b| b.front_mut(maker_side, best))
            else {
                return Some(REASON_INTERNAL);
            };
            let maker_release = lock_release(market, maker, qty);
            maker.locked -= maker_release;
            maker.record_fill(fill.clone(), notional);
            let maker_done = maker.remaining.is_zero();
            events.push(fill_event(maker, Liquidity::Maker, &fill));
            events.push(order_event(maker));
            if maker_done {
                if let Some(mut m) = self
                    .books
                    .get_mut(&symbol)
                    .and_then(|b| b.pop_front(maker_side, best))
                {
                    // Normally nothing is left; release any rounding residue.
                    self.release_all(market, &mut m);
                }
                self.index.remove(&maker_id);
            }

            // Taker side of the fill.
            let taker_release = lock_release(market, taker, qty);
            taker.locked -= taker_release;
            taker.record_fill(fill.clone(), notional);

            let (buyer, buyer_release, seller, seller_release) = match side {
                Side::Buy => (
                    taker.account.clone(),
                    taker_release,
                    maker_account,
                    maker_release,
                ),
                Side::Sell => (
                    maker_account,
                    maker_release,
                    taker.account.clone(),
                    taker_release,
                ),
            };
            self.settle(
                market,
                &buyer,
                buyer_release,
                &seller,
                seller_release,
                qty,
                notional,
            );

            events.push(fill_event(taker, Liquidity::Taker, &fill));
        }
        None
    }

    /// Move assets and positions for one fill.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the values are all distinct"
    )]
    fn settle(
        &mut self,
        market: &Market,
        buyer: &str,
        buyer_release: Decimal,
        seller: &str,
        seller_release: Decimal,
        qty: Decimal,
        notional: Decimal,
    ) {
        if market.moves_quote() {
            let quote = market.quote_asset.as_str();
            if let Some(b) = self.balance_mut(buyer, quote) {
                b.locked -= buyer_release;
                b.available += buyer_release - notional;
            }
            if let Some(b) = self.balance_mut(seller, quote) {
                b.available += notional;
            }
        }
        if market.kind == MarketKind::Spot {
            if let Some(base) = market.base_asset.as_deref() {
                if let Some(b) = self.balance_mut(seller, base) {
                    b.locked -= seller_release;
                    b.available += seller_release - qty;
                }
                if let Some(b) = self.balance_mut(buyer, base) {
                    b.available += qty;
                }
            }
        }
        if market.tracks_position() {
            for (acct, delta) in [(buyer, qty), (seller, -qty)] {
                if let Some(a) = self.accounts.get_mut(acct) {
                    *a.positions.entry(market.symbol.clone()).or_default() += delta;
                }
            }
        }
    }

    /// Cancel an open order of `account`, releasing its locked funds.
    pub fn cancel_order(&mut self, account: &str, id: u64) -> Result<Outcome, EngineError> {
        if !self.has_account(account) {
            return Err(EngineError::UnknownAccount(account.to_string()));
        }
        let not_found = || EngineError::OrderNotFound(id.to_string());
        let loc = self.index.get(&id).cloned().ok_or_else(not_found)?;
        if loc.account != account {
            return Err(not_found());
        }
        let market = self
            .markets
            .get(&loc.symbol)
            .cloned()
            .ok_or_else(not_found)?;
        let mut order = self
            .books
            .get_mut(&loc.symbol)
            .and_then(|b| b.remove(loc.side, loc.price, id))
            .ok_or_else(not_found)?;
        self.index.remove(&id);
        self.release_all(&market, &mut order);
        order.status = OrderStatus::Cancelled;
        order.cancel_reason = Some(REASON_USER.into());
        order.updated_at_ms = now_ms();
        let events = vec![order_event(&order)];
        Ok(Outcome { order, events })
    }

    /// Debit `amount` of `asset` from the available balance and record a
    /// pending withdrawal.
    pub fn withdraw(
        &mut self,
        account: &str,
        asset: &str,
        amount: Decimal,
        address: &str,
    ) -> Result<Withdrawal, EngineError> {
        if !self.has_account(account) {
            return Err(EngineError::UnknownAccount(account.to_string()));
        }
        let known = self.markets.values().any(|m| {
            m.quote_asset == asset
                || m.base_asset.as_deref() == Some(asset)
                || m.underlying.as_deref() == Some(asset)
        });
        if !known {
            return Err(EngineError::Invalid(format!("unknown asset {asset:?}")));
        }
        let amount = amount.normalize();
        if amount <= Decimal::ZERO {
            return Err(EngineError::Invalid("amount must be greater than 0".into()));
        }
        if amount > MAX_WITHDRAWAL {
            return Err(EngineError::Invalid(format!(
                "amount must be at most {MAX_WITHDRAWAL}"
            )));
        }
        let address = address.trim();
        if address.is_empty()
            || address.len() > MAX_ADDRESS_LEN
            || !address.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(EngineError::Invalid(format!(
                "address must be 1..={MAX_ADDRESS_LEN} printable ASCII characters"
            )));
        }
        let have = self.available(account, asset);
        if have < amount {
            return Err(EngineError::InsufficientBalance(format!(
                "need {} {asset}, available {}",
                amount,
                have.normalize()
            )));
        }
        if let Some(b) = self.balance_mut(account, asset) {
            b.available -= amount;
        }
        let w = Withdrawal {
            withdrawal_id: format!("w-{}", self.next_withdrawal_id),
            account: account.to_string(),
            asset: asset.to_string(),
            amount,
            address: address.to_string(),
            status: "pending".into(),
            created_at_ms: now_ms(),
        };
        self.next_withdrawal_id += 1;
        self.withdrawals.push(w.clone());
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// Fresh engine: default markets, accounts a, b, c with 10 BTC, 100 ETH, 100000 USD.
    fn engine() -> Engine {
        let mut e = Engine::new();
        for name in ["a", "b", "c"] {
            e.add_account(
                name,
                &[("BTC", d("10")), ("ETH", d("100")), ("USD", d("100000"))],
            );
        }
        e
    }

    fn limit(side: Side, qty: &str, price: &str) -> NewOrder {
        NewOrder::limit("BTC-USD", side, d(qty), d(price))
    }

    fn bal(e: &Engine, acct: &str, asset: &str) -> (Decimal, Decimal) {
        let b = e.balance(acct, asset);
        (b.available, b.locked)
    }

    /// Sum over accounts of available + locked, plus withdrawals.
    fn total(e: &Engine, asset: &str) -> Decimal {
        let held: Decimal = e
            .accounts
            .values()
            .filter_map(|a| a.balances.get(asset))
            .map(|b| b.available + b.locked)
            .sum();
        let withdrawn: Decimal = e
            .withdrawals
            .iter()
            .filter(|w| w.asset == asset)
            .map(|w| w.amount)
            .sum();
        held + withdrawn
    }

    /// Locked balances equal the sum of the open orders' locks, and nothing is negative.
    fn check_invariants(e: &Engine) {
        let mut locks: HashMap<(String, String), Decimal> = HashMap::new();
        for book in e.books.values() {
            for o in book.orders() {
                assert!(o.remaining > Decimal::ZERO, "empty order resting: {o:?}");
                assert!(o.status.is_open());
                assert!(e.index.contains_key(&o.id), "order {} not indexed", o.id);
                let m = &e.markets[&o.symbol];
                if let Some(asset) = lock_asset(m, o.side) {
                    *locks
                        .entry((o.account.clone(), asset.to_string()))
                        .or_default() += o.locked;
                }
            }
        }
        assert_eq!(
            e.index.len(),
            e.books.values().map(|b| b.orders().count()).sum::<usize>()
        );
        for (name, acct) in &e.accounts {
            for (asset, b) in &acct.balances {
                assert!(
                    b.available >= Decimal::ZERO,
                    "{name} {asset} available {b:?}"
                );
                let expected = locks
                    .get(&(name.clone(), asset.clone()))
                    .copied()
                    .unwrap_or_default();
                assert_eq!(b.locked, expected, "{name} {asset} locked");
            }
        }
    }

    #[test]
    fn full_fill_moves_balances_exactly() {
        let mut e = engine();
        let maker = e
            .place_order("b", limit(Side::Sell, "0.5", "65000.10"))
            .unwrap()
            .order;
        assert_eq!(maker.status, OrderStatus::New);
        assert_eq!(bal(&e, "b", "BTC"), (d("9.5"), d("0.5")));

        let out = e
            .place_order("a", limit(Side::Buy, "0.5", "65000.10"))
            .unwrap();
        let t = out.order;
        assert_eq!(t.status, OrderStatus::Filled);
        assert_eq!(t.filled_qty, d("0.5"));
        assert_eq!(t.remaining, Decimal::ZERO);
        assert_eq!(t.avg_price, Some(d("65000.10")));
        assert_eq!(t.fills.len(), 1);
        let f = &t.fills[0];
        assert_eq!((f.price, f.qty), (d("65000.10"), d("0.5")));
        assert_eq!((f.maker_order_id, f.taker_order_id), (maker.id, t.id));

        // 0.5 * 65000.10 = 32500.05
        assert_eq!(bal(&e, "a", "USD"), (d("67499.95"), d("0")));
        assert_eq!(bal(&e, "a", "BTC"), (d("10.5"), d("0")));
        assert_eq!(bal(&e, "b", "USD"), (d("132500.05"), d("0")));
        assert_eq!(bal(&e, "b", "BTC"), (d("9.5"), d("0")));
        assert!(e.open_orders("a").unwrap().is_empty());
        assert!(e.open_orders("b").unwrap().is_empty());
        assert!(e.books["BTC-USD"].is_empty());
        check_invariants(&e);

        // Events: maker fill, maker order update, taker fill, taker order update.
        let kinds: Vec<(&str, &str)> = out
            .events
            .iter()
            .map(|ev| {
                let k = match &ev.payload {
                    EventPayload::Order(_) => "order",
                    EventPayload::Fill(_) => "fill",
                };
                (ev.account.as_str(), k)
            })
            .collect();
        assert_eq!(
            kinds,
            vec![("b", "fill"), ("b", "order"), ("a", "fill"), ("a", "order")]
        );
        match &out.events[0].payload {
            EventPayload::Fill(fu) => {
                assert_eq!(fu.liquidity, Liquidity::Maker);
                assert_eq!(fu.order_id, maker.id);
                assert_eq!(fu.side, Side::Sell);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn partial_fill_rests_remainder_with_lock() {
        let mut e = engine();
        e.place_order("b", limit(Side::Sell, "0.4", "100")).unwrap();
        let t = e
            .place_order("a", limit(Side::Buy, "1", "101"))
            .unwrap()
            .order;
        assert_eq!(t.status, OrderStatus::PartiallyFilled);
        assert_eq!((t.filled_qty, t.remaining), (d("0.4"), d("0.6")));
        assert_eq!(t.avg_price, Some(d("100")));
        // Paid 40 at the maker's price; 0.6 * 101 = 60.6 still locked.
        assert_eq!(bal(&e, "a", "USD"), (d("99899.4"), d("60.6")));
        assert_eq!(bal(&e, "a", "BTC"), (d("10.4"), d("0")));
        let book = e.book("BTC-USD", 10).unwrap();
        assert_eq!(book.bids, vec![["101".to_string(), "0.6".to_string()]]);
        assert!(book.asks.is_empty());
        let open = e.open_orders("a").unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, t.id);
        assert_eq!(open[0].status, OrderStatus::PartiallyFilled);
        check_invariants(&e);

        // The rest fills later as a maker, at its own price.
        let s = e
            .place_order("c", limit(Side::Sell, "0.6", "99"))
            .unwrap()
            .order;
        assert_eq!(s.status, OrderStatus::Filled);
        assert_eq!(s.avg_price, Some(d("101")));
        // Its 60.6 lock was consumed exactly: 100000 - 40 - 60.6.
        assert_eq!(bal(&e, "a", "USD"), (d("99899.4"), d("0")));
        assert_eq!(bal(&e, "a", "BTC"), (d("11"), d("0")));
        assert_eq!(bal(&e, "c", "USD"), (d("100060.6"), d("0")));
        assert!(e.open_orders("a").unwrap().is_empty());
        check_invariants(&e);
    }

    #[test]
    fn price_time_priority() {
        let mut e = engine();
        let first = e
            .place_order("b", limit(Side::Sell, "1", "100"))
            .unwrap()
            .order;
        let second = e
            .place_order("c", limit(Side::Sell, "1", "100"))
            .unwrap()
            .order;
        // A better price placed later still goes first.
        let better = e
            .place_order("c", limit(Side::Sell, "0.5", "99.99"))
            .unwrap()
            .order;
        let t = e
            .place_order("a", limit(Side::Buy, "1.5", "100"))
            .unwrap()
            .order;
        let makers: Vec<(u64, Decimal, Decimal)> = t
            .fills
            .iter()
            .map(|f| (f.maker_order_id, f.price, f.qty))
            .collect();
        assert_eq!(
            makers,
            vec![
                (better.id, d("99.99"), d("0.5")),
                (first.id, d("100"), d("1"))
            ]
        );
        assert!(e.open_order(first.id).is_none());
        let rest = e.open_order(second.id).unwrap();
        assert_eq!(rest.remaining, d("1"));
        check_invariants(&e);
    }

    #[test]
    fn market_order_sweeps_levels() {
        let mut e = engine();
        e.place_order("b", limit(Side::Sell, "1", "100")).unwrap();
        e.place_order("b", limit(Side::Sell, "2", "101")).unwrap();
        e.place_order("c", limit(Side::Sell, "3", "102")).unwrap();
        let t = e
            .place_order("a", NewOrder::market("BTC-USD", Side::Buy, d("4")))
            .unwrap()
            .order;
        assert_eq!(t.status, OrderStatus::Filled);
        assert_eq!(t.time_in_force, TimeInForce::Ioc);
        let fills: Vec<(Decimal, Decimal)> = t.fills.iter().map(|f| (f.price, f.qty)).collect();
        assert_eq!(
            fills,
            vec![(d("100"), d("1")), (d("101"), d("2")), (d("102"), d("1"))]
        );
        // (100 + 202 + 102) / 4 = 101
        assert_eq!(t.avg_price, Some(d("101")));
        assert_eq!(bal(&e, "a", "USD"), (d("99596"), d("0")));
        assert_eq!(bal(&e, "a", "BTC"), (d("14"), d("0")));
        assert_eq!(
            e.book("BTC-USD", 5).unwrap().asks,
            vec![["102".to_string(), "2".to_string()]]
        );
        // Market sell into an empty bid side: cancelled, nothing happens.
        let s = e
            .place_order("a", NewOrder::market("BTC-USD", Side::Sell, d("1")))
            .unwrap()
            .order;
        assert_eq!(s.status, OrderStatus::Cancelled);
        assert_eq!(s.filled_qty, Decimal::ZERO);
        assert_eq!(bal(&e, "a", "BTC"), (d("14"), d("0")));
        check_invariants(&e);
    }

    #[test]
    fn market_buy_stops_when_funds_run_out() {
        let mut e = engine();
        e.add_account("poor", &[("USD", d("150"))]);
        e.place_order("b", limit(Side::Sell, "1", "100")).unwrap();
        e.place_order("b", limit(Side::Sell, "1", "101")).unwrap();
        let t = e
            .place_order("poor", NewOrder::market("BTC-USD", Side::Buy, d("2")))
            .unwrap()
            .order;
        // 1 @ 100, then floor(50 / 101, lot 0.0001) = 0.495 @ 101 = 49.995
        assert_eq!(t.filled_qty, d("1.495"));
        assert_eq!(t.status, OrderStatus::Cancelled);
        assert_eq!(t.cancel_reason.as_deref(), Some(REASON_FUNDS));
        assert_eq!(bal(&e, "poor", "USD"), (d("0.005"), d("0")));
        assert_eq!(bal(&e, "poor", "BTC"), (d("1.495"), d("0")));
        // Cannot afford a single lot any more: rejected up front.
        let err = e
            .place_order("poor", NewOrder::market("BTC-USD", Side::Buy, d("1")))
            .unwrap_err();
        assert!(
            matches!(err, EngineError::InsufficientBalance(_)),
            "{err:?}"
        );
        check_invariants(&e);
    }

    #[test]
    fn ioc_remainder_is_cancelled_and_unlocked() {
        let mut e = engine();
        e.place_order("b", limit(Side::Sell, "1", "100")).unwrap();
        e.place_order("b", limit(Side::Sell, "1", "105")).unwrap();
        let t = e
            .place_order("a", limit(Side::Buy, "3", "101").tif(TimeInForce::Ioc))
            .unwrap()
            .order;
        assert_eq!(t.status, OrderStatus::Cancelled);
        assert_eq!(t.cancel_reason.as_deref(), Some(REASON_IOC));
        assert_eq!((t.filled_qty, t.remaining), (d("1"), d("2")));
        assert_eq!(bal(&e, "a", "USD"), (d("99900"), d("0")));
        assert!(e.open_orders("a").unwrap().is_empty());
        let book = e.book("BTC-USD", 5).unwrap();
        assert!(book.bids.is_empty());
        assert_eq!(book.asks, vec![["105".to_string(), "1".to_string()]]);
        check_invariants(&e);
    }

    #[test]
    fn fok_executes_nothing_unless_fully_fillable() {
        let mut e = engine();
        e.place_order("b", limit(Side::Sell, "1", "100")).unwrap();
        e.place_order("c", limit(Side::Sell, "1", "101")).unwrap();
        // Own order at 100.5 is not liquidity for a's FOK (self-trade prevention).
        let own = e
            .place_order("a", limit(Side::Sell, "5", "100.5"))
            .unwrap()
            .order;
        let before_book = e.book("BTC-USD", 10).unwrap();
        let before_a = e.account("a").unwrap();

        let t = e
            .place_order("a", limit(Side::Buy, "2.5", "101").tif(TimeInForce::Fok))
            .unwrap();
        assert_eq!(t.order.status, OrderStatus::Cancelled);
        assert_eq!(t.order.cancel_reason.as_deref(), Some(REASON_FOK));
        assert_eq!(t.order.filled_qty, Decimal::ZERO);
        assert!(t.order.fills.is_empty());
        assert_eq!(e.book("BTC-USD", 10).unwrap(), before_book);
        assert_eq!(e.account("a").unwrap(), before_a);
        assert!(
            e.open_order(own.id).is_some(),
            "own order untouched on FOK failure"
        );
        assert_eq!(t.events.len(), 1);

        // Market FOK too.
        let m = e
            .place_order(
                "a",
                NewOrder::market("BTC-USD", Side::Buy, d("3")).tif(TimeInForce::Fok),
            )
            .unwrap()
            .order;
        assert_eq!(m.status, OrderStatus::Cancelled);
        assert_eq!(e.book("BTC-USD", 10).unwrap(), before_book);

        // Exactly fillable: executes (and STP cancels the own order on the way).
        let ok = e
            .place_order("a", limit(Side::Buy, "2", "101").tif(TimeInForce::Fok))
            .unwrap()
            .order;
        assert_eq!(ok.status, OrderStatus::Filled);
        assert_eq!(ok.avg_price, Some(d("100.5")));
        assert!(e.open_order(own.id).is_none());
        assert_eq!(bal(&e, "a", "BTC"), (d("12"), d("0")));
        check_invariants(&e);
    }

    #[test]
    fn cancel_releases_locked_funds() {
        let mut e = engine();
        let buy = e
            .place_order("a", limit(Side::Buy, "2", "100.25"))
            .unwrap()
            .order;
        let sell = e
            .place_order("a", limit(Side::Sell, "1.5", "200"))
            .unwrap()
            .order;
        assert_eq!(bal(&e, "a", "USD"), (d("99799.5"), d("200.5")));
        assert_eq!(bal(&e, "a", "BTC"), (d("8.5"), d("1.5")));

        // Someone else cannot cancel it.
        assert!(matches!(
            e.cancel_order("b", buy.id),
            Err(EngineError::OrderNotFound(_))
        ));
        let c = e.cancel_order("a", buy.id).unwrap();
        assert_eq!(c.order.status, OrderStatus::Cancelled);
        assert_eq!(c.order.cancel_reason.as_deref(), Some(REASON_USER));
        assert_eq!(bal(&e, "a", "USD"), (d("100000"), d("0")));
        e.cancel_order("a", sell.id).unwrap();
        assert_eq!(bal(&e, "a", "BTC"), (d("10"), d("0")));
        // Cancelling twice: not found.
        assert!(matches!(
            e.cancel_order("a", buy.id),
            Err(EngineError::OrderNotFound(_))
        ));
        assert!(e.books["BTC-USD"].is_empty());

        // Partly filled then cancelled: only the remainder's lock comes back.
        let buy = e
            .place_order("a", limit(Side::Buy, "2", "100"))
            .unwrap()
            .order;
        e.place_order("b", limit(Side::Sell, "0.5", "100")).unwrap();
        assert_eq!(bal(&e, "a", "USD"), (d("99800"), d("150")));
        e.cancel_order("a", buy.id).unwrap();
        assert_eq!(bal(&e, "a", "USD"), (d("99950"), d("0")));
        check_invariants(&e);
    }

    #[test]
    fn buy_filled_below_limit_gets_difference_back() {
        let mut e = engine();
        e.place_order("b", limit(Side::Sell, "1", "100")).unwrap();
        let t = e
            .place_order("a", limit(Side::Buy, "1", "150"))
            .unwrap()
            .order;
        assert_eq!(t.avg_price, Some(d("100")));
        assert_eq!(bal(&e, "a", "USD"), (d("99900"), d("0")));
        check_invariants(&e);
    }

    #[test]
    fn insufficient_balance_is_rejected_without_side_effects() {
        let mut e = engine();
        let before = e.account("a").unwrap();
        let err = e
            .place_order("a", limit(Side::Buy, "1001", "100"))
            .unwrap_err();
        assert!(
            matches!(err, EngineError::InsufficientBalance(_)),
            "{err:?}"
        );
        let err = e
            .place_order("a", limit(Side::Sell, "10.0001", "100"))
            .unwrap_err();
        assert!(
            matches!(err, EngineError::InsufficientBalance(_)),
            "{err:?}"
        );
        e.place_order("b", limit(Side::Buy, "20", "100")).unwrap();
        let err = e
            .place_order("a", NewOrder::market("BTC-USD", Side::Sell, d("11")))
            .unwrap_err();
        assert!(
            matches!(err, EngineError::InsufficientBalance(_)),
            "{err:?}"
        );
        assert_eq!(e.account("a").unwrap(), before);
        assert!(e.open_orders("a").unwrap().is_empty());
        // Exactly the balance is fine.
        let ok = e
            .place_order("a", limit(Side::Buy, "1000", "100"))
            .unwrap()
            .order;
        assert_eq!(ok.status, OrderStatus::New);
        assert_eq!(bal(&e, "a", "USD"), (d("0"), d("100000")));
        check_invariants(&e);
    }

    #[test]
    fn self_trade_prevention_cancels_resting_order() {
        let mut e = engine();
        let own = e
            .place_order("a", limit(Side::Sell, "1", "100"))
            .unwrap()
            .order;
        let other = e
            .place_order("b", limit(Side::Sell, "1", "100"))
            .unwrap()
            .order;
        let out = e.place_order("a", limit(Side::Buy, "1", "100")).unwrap();
        let t = out.order;
        assert_eq!(t.status, OrderStatus::Filled);
        assert_eq!(t.fills.len(), 1);
        assert_eq!(t.fills[0].maker_order_id, other.id);
        assert!(e.open_order(own.id).is_none());
        let stp = out.events.iter().find_map(|ev| match &ev.payload {
            EventPayload::Order(o) if o.order_id == own.id => Some(o.clone()),
            _ => None,
        });
        let stp = stp.unwrap();
        assert_eq!(stp.status, OrderStatus::Cancelled);
        assert_eq!(stp.cancel_reason.as_deref(), Some(REASON_SELF_TRADE));
        // a's BTC lock released, plus 1 BTC bought from b.
        assert_eq!(bal(&e, "a", "BTC"), (d("11"), d("0")));
        assert_eq!(bal(&e, "a", "USD"), (d("99900"), d("0")));
        check_invariants(&e);
    }

    #[test]
    fn perpetual_changes_positions_only() {
        let mut e = engine();
        let before_a = e.account("a").unwrap().state.balances;
        let before_b = e.account("b").unwrap().state.balances;
        e.place_order(
            "b",
            NewOrder::limit("BTC-PERP", Side::Sell, d("2"), d("65000")),
        )
        .unwrap();
        let t = e
            .place_order("a", NewOrder::market("BTC-PERP", Side::Buy, d("1.5")))
            .unwrap()
            .order;
        assert_eq!(t.status, OrderStatus::Filled);
        assert_eq!(e.position("a", "BTC-PERP"), d("1.5"));
        assert_eq!(e.position("b", "BTC-PERP"), d("-1.5"));
        assert_eq!(e.account("a").unwrap().state.balances, before_a);
        assert_eq!(e.account("b").unwrap().state.balances, before_b);
        // Reducing trade against another account's bid.
        e.place_order(
            "c",
            NewOrder::limit("BTC-PERP", Side::Buy, d("1"), d("64000")),
        )
        .unwrap();
        let s = e
            .place_order("a", NewOrder::market("BTC-PERP", Side::Sell, d("0.5")))
            .unwrap()
            .order;
        assert_eq!(s.avg_price, Some(d("64000")));
        assert_eq!(e.position("a", "BTC-PERP"), d("1"));
        assert_eq!(e.position("c", "BTC-PERP"), d("0.5"));
        assert_eq!(e.account("a").unwrap().state.balances, before_a);
        check_invariants(&e);
    }

    #[test]
    fn option_premium_moves_quote_and_positions() {
        let mut e = engine();
        let sym = "BTC-20261225-100000-C";
        // Writer needs no collateral; buyer's premium is locked then paid.
        e.place_order("b", NewOrder::limit(sym, Side::Sell, d("2"), d("2500")))
            .unwrap();
        assert_eq!(bal(&e, "b", "BTC"), (d("10"), d("0")));
        e.place_order("a", NewOrder::limit(sym, Side::Buy, d("1.5"), d("2600")))
            .unwrap();
        // 1.5 * 2500 = 3750
        assert_eq!(bal(&e, "a", "USD"), (d("96250"), d("0")));
        assert_eq!(bal(&e, "b", "USD"), (d("103750"), d("0")));
        assert_eq!(e.position("a", sym), d("1.5"));
        assert_eq!(e.position("b", sym), d("-1.5"));
        assert_eq!(bal(&e, "a", "BTC"), (d("10"), d("0")));
        check_invariants(&e);
    }

    #[test]
    fn validation_rules() {
        let mut e = engine();
        let inval = |r: Result<Outcome, EngineError>| match r {
            Err(EngineError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert!(inval(e.place_order("a", limit(Side::Buy, "0", "100"))).contains("qty"));
        assert!(inval(e.place_order("a", limit(Side::Buy, "1", "0"))).contains("price"));
        assert!(inval(e.place_order("a", limit(Side::Buy, "1", "100.001"))).contains("tick"));
        assert!(inval(e.place_order("a", limit(Side::Buy, "0.00001", "100"))).contains("lot"));
        assert!(inval(e.place_order("a", limit(Side::Buy, "1", "-5"))).contains("price"));
        assert!(inval(e.place_order("a", limit(Side::Buy, "2000000000", "1"))).contains("qty"));
        assert!(inval(e.place_order("a", limit(Side::Buy, "1", "2000000000"))).contains("price"));
        let mut no_price = limit(Side::Buy, "1", "1");
        no_price.price = None;
        assert!(inval(e.place_order("a", no_price)).contains("required"));
        let mut mkt_price = NewOrder::market("BTC-USD", Side::Buy, d("1"));
        mkt_price.price = Some(d("1"));
        assert!(inval(e.place_order("a", mkt_price)).contains("not allowed"));
        assert!(inval(e.place_order(
            "a",
            NewOrder::market("BTC-USD", Side::Buy, d("1")).tif(TimeInForce::Gtc)
        ))
        .contains("gtc"));
        assert!(
            inval(e.place_order("a", limit(Side::Buy, "1", "1").cid("bad id!")))
                .contains("client_order_id")
        );
        assert!(matches!(
            e.place_order("a", NewOrder::limit("DOGE-USD", Side::Buy, d("1"), d("1"))),
            Err(EngineError::UnknownSymbol(_))
        ));
        assert!(matches!(
            e.place_order("zed", limit(Side::Buy, "1", "1")),
            Err(EngineError::UnknownAccount(_))
        ));
        // Trailing zeros beyond the tick are fine (same value).
        assert!(e
            .place_order("a", limit(Side::Buy, "1.00000", "100.000000"))
            .is_ok());
        assert!(e
            .books
            .values()
            .all(|b| b.orders().all(|o| o.status.is_open())));
        check_invariants(&e);
    }

    #[test]
    fn duplicate_client_order_id_among_open_orders() {
        let mut e = engine();
        let first = e
            .place_order("a", limit(Side::Buy, "1", "100").cid("abc-123"))
            .unwrap()
            .order;
        assert_eq!(first.client_order_id.as_deref(), Some("abc-123"));
        assert!(matches!(
            e.place_order("a", limit(Side::Buy, "1", "99").cid("abc-123")),
            Err(EngineError::DuplicateClientOrderId(_))
        ));
        // Other accounts have their own namespace.
        assert!(e
            .place_order("b", limit(Side::Buy, "1", "99").cid("abc-123"))
            .is_ok());
        // Closed orders free the id.
        e.cancel_order("a", first.id).unwrap();
        assert!(e
            .place_order("a", limit(Side::Buy, "1", "99").cid("abc-123"))
            .is_ok());
        check_invariants(&e);
    }

    #[test]
    fn withdrawals_debit_available_balance() {
        let mut e = engine();
        let w = e.withdraw("a", "BTC", d("0.1"), "bc1qdemo").unwrap();
        assert_eq!(w.status, "pending");
        assert_eq!(w.amount, d("0.1"));
        assert_eq!(bal(&e, "a", "BTC"), (d("9.9"), d("0")));
        // Locked funds cannot be withdrawn.
        e.place_order("a", limit(Side::Sell, "9", "100")).unwrap();
        assert!(matches!(
            e.withdraw("a", "BTC", d("1"), "bc1qdemo"),
            Err(EngineError::InsufficientBalance(_))
        ));
        assert!(e.withdraw("a", "BTC", d("0.9"), "bc1qdemo").is_ok());
        assert_eq!(bal(&e, "a", "BTC"), (d("0"), d("9")));
        assert!(matches!(
            e.withdraw("a", "DOGE", d("1"), "x"),
            Err(EngineError::Invalid(_))
        ));
        assert!(matches!(
            e.withdraw("a", "USD", d("0"), "x"),
            Err(EngineError::Invalid(_))
        ));
        assert!(matches!(
            e.withdraw("a", "USD", d("1"), " "),
            Err(EngineError::Invalid(_))
        ));
        assert!(matches!(
            e.withdraw("nobody", "USD", d("1"), "x"),
            Err(EngineError::UnknownAccount(_))
        ));
        assert_eq!(e.withdrawals().len(), 2);
        assert_eq!(total(&e, "BTC"), d("30"));
        check_invariants(&e);
    }

    #[test]
    fn seeded_state() {
        let e = Engine::seeded();
        check_invariants(&e);
        assert_eq!(bal(&e, "demo", "BTC"), (d("10"), d("0")));
        assert_eq!(bal(&e, "demo", "ETH"), (d("100"), d("0")));
        assert_eq!(bal(&e, "demo", "USD"), (d("1000000"), d("0")));
        let b = e.book("BTC-USD", 20).unwrap();
        assert_eq!(b.bids.len(), 5);
        assert_eq!(b.asks.len(), 5);
        assert_eq!(b.bids[0], ["64990".to_string(), "0.5".to_string()]);
        assert_eq!(b.asks[0], ["65010".to_string(), "0.5".to_string()]);
        assert_eq!(b.asks[4], ["65050".to_string(), "2.5".to_string()]);
        for (sym, bid, ask) in [
            ("ETH-USD", "3499.5", "3500.5"),
            ("BTC-PERP", "64995", "65005"),
            ("BTC-20261225-100000-C", "2490", "2510"),
        ] {
            let b = e.book(sym, 1).unwrap();
            assert_eq!(b.bids[0][0], bid, "{sym}");
            assert_eq!(b.asks[0][0], ask, "{sym}");
        }
        assert_eq!(e.markets().len(), 4);
        assert!(e.open_orders("demo").unwrap().is_empty());
        assert_eq!(e.open_orders("mm").unwrap().len(), 40);
    }

    /// Deterministic pseudo-random order flow: assets are conserved and
    /// locks always match open orders.
    #[test]
    fn random_flow_conserves_assets() {
        // Small balances so that funds checks trigger too.
        let mut e = Engine::new();
        for name in ["a", "b", "c"] {
            e.add_account(name, &[("BTC", d("2")), ("USD", d("300"))]);
        }
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let symbols = ["BTC-USD", "BTC-PERP", "BTC-20261225-100000-C"];
        let accounts = ["a", "b", "c"];
        let (btc, usd) = (total(&e, "BTC"), total(&e, "USD"));
        let (mut fills, mut rejected) = (0usize, 0usize);
        for i in 0..3000 {
            let acct = accounts[next(3) as usize];
            let sym = symbols[next(3) as usize];
            let side = if next(2) == 0 { Side::Buy } else { Side::Sell };
            let lot = e.markets[sym].lot_size;
            let qty = lot * Decimal::from(1 + next(3000));
            let price = Decimal::from(95 + next(10));
            let req = match next(10) {
                0 => NewOrder::market(sym, side, qty),
                1 => NewOrder::limit(sym, side, qty, price).tif(TimeInForce::Ioc),
                2 => NewOrder::limit(sym, side, qty, price).tif(TimeInForce::Fok),
                _ => NewOrder::limit(sym, side, qty, price),
            };
            match e.place_order(acct, req) {
                Ok(out) => {
                    let o = out.order;
                    assert_eq!(o.filled_qty + o.remaining, o.qty);
                    let sum: Decimal = o.fills.iter().map(|f| f.qty).sum();
                    assert_eq!(sum, o.filled_qty);
                    fills += o.fills.len();
                }
                Err(EngineError::InsufficientBalance(_)) => rejected += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
            if i % 7 == 0 {
                let open = e.open_orders(acct).unwrap();
                if let Some(o) = open.first() {
                    e.cancel_order(acct, o.id).unwrap();
                }
            }
            if i % 100 == 0 {
                check_invariants(&e);
            }
        }
        check_invariants(&e);
        eprintln!("random flow: {fills} taker fills, {rejected} rejected for funds");
        assert!(fills > 500, "flow too quiet: {fills} fills");
        assert!(rejected > 0);
        assert_eq!(total(&e, "BTC"), btc);
        assert_eq!(total(&e, "USD"), usd);
        let net: Decimal = accounts.iter().map(|a| e.position(a, "BTC-PERP")).sum();
        assert_eq!(net, Decimal::ZERO);
    }
}
