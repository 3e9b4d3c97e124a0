//! Plain data types shared by the order book, the engine and the HTTP layer.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::num;

/// Decimal places of the reported average fill price (rounded half-even).
pub const AVG_PRICE_DECIMALS: u32 = 10;

/// Order side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Buy (bid).
    Buy,
    /// Sell (ask).
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// Order type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    /// Limit order: carries a price.
    Limit,
    /// Market order: no price, always immediate-or-cancel (or fill-or-kill).
    Market,
}

/// Time in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeInForce {
    /// Good till cancelled: the unfilled remainder rests on the book.
    Gtc,
    /// Immediate or cancel: the unfilled remainder is cancelled.
    Ioc,
    /// Fill or kill: executed only if it can be filled completely, else nothing executes.
    Fok,
}

/// Lifecycle status of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Resting, nothing filled yet.
    New,
    /// Resting, partly filled.
    PartiallyFilled,
    /// Completely filled (closed).
    Filled,
    /// Cancelled by the user, by time in force, or by self-trade prevention (closed).
    Cancelled,
}

impl OrderStatus {
    /// Is the order still open (resting on the book)?
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::New | OrderStatus::PartiallyFilled)
    }
}

/// Kind of instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarketKind {
    /// Spot pair: base asset against quote asset.
    Spot,
    /// Perpetual future, cash-settled in the quote asset; trades change positions only.
    Perpetual,
    /// Option; the premium is paid in the quote asset, trades change positions.
    Option,
}

/// Option right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionRight {
    /// Call option.
    Call,
    /// Put option.
    Put,
}

/// A tradable instrument.
#[derive(Clone, Debug, Serialize)]
pub struct Market {
    /// Symbol, e.g. `BTC-USD`.
    pub symbol: String,
    /// Instrument kind (`spot`, `perpetual`, `option`).
    #[serde(rename = "type")]
    pub kind: MarketKind,
    /// Base asset for spot pairs (delivered on trade).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_asset: Option<String>,
    /// Underlying asset for derivatives (never delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlying: Option<String>,
    /// Quote asset: prices are expressed in it.
    pub quote_asset: String,
    /// Settlement asset for derivatives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement_asset: Option<String>,
    /// Prices must be multiples of this.
    #[serde(serialize_with = "num::ser")]
    pub tick_size: Decimal,
    /// Quantities must be multiples of this.
    #[serde(serialize_with = "num::ser")]
    pub lot_size: Decimal,
    /// Option right (`call` / `put`), options only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub option_type: Option<OptionRight>,
    /// Strike price, options only.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "num::ser_opt"
    )]
    pub strike: Option<Decimal>,
    /// Expiry date (`YYYY-MM-DD`), options only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
}

impl Market {
    /// Does a trade move the quote asset (spot price or option premium)?
    pub fn moves_quote(&self) -> bool {
        matches!(self.kind, MarketKind::Spot | MarketKind::Option)
    }

    /// Does a trade change positions (derivatives)?
    pub fn tracks_position(&self) -> bool {
        matches!(self.kind, MarketKind::Perpetual | MarketKind::Option)
    }
}

/// One execution between a maker (resting) and a taker (incoming) order.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Fill {
    /// Trade id.
    #[serde(serialize_with = "num::ser_id")]
    pub trade_id: u64,
    /// Instrument.
    pub symbol: String,
    /// Execution price (always the maker's price).
    #[serde(serialize_with = "num::ser")]
    pub price: Decimal,
    /// Executed quantity.
    #[serde(serialize_with = "num::ser")]
    pub qty: Decimal,
    /// Resting order id.
    #[serde(serialize_with = "num::ser_id")]
    pub maker_order_id: u64,
    /// Incoming order id.
    #[serde(serialize_with = "num::ser_id")]
    pub taker_order_id: u64,
    /// Side of the taker.
    pub taker_side: Side,
    /// Execution time, unix milliseconds.
    pub timestamp_ms: u64,
}

/// An order (open or closed) as the engine keeps and reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Order {
    /// Exchange-assigned id (a string on the wire).
    #[serde(serialize_with = "num::ser_id")]
    pub id: u64,
    /// Client-assigned id, unique among the account's open orders.
    pub client_order_id: Option<String>,
    /// Owning account.
    pub account: String,
    /// Instrument.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Order type.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Limit price (`null` for market orders).
    #[serde(serialize_with = "num::ser_opt")]
    pub price: Option<Decimal>,
    /// Original quantity.
    #[serde(serialize_with = "num::ser")]
    pub qty: Decimal,
    /// Quantity filled so far.
    #[serde(serialize_with = "num::ser")]
    pub filled_qty: Decimal,
    /// Quantity not filled; for a cancelled order, what was left unfilled.
    #[serde(serialize_with = "num::ser")]
    pub remaining: Decimal,
    /// Volume-weighted average fill price, rounded to [`AVG_PRICE_DECIMALS`]
    /// places (`null` when nothing filled).
    #[serde(serialize_with = "num::ser_opt")]
    pub avg_price: Option<Decimal>,
    /// Status.
    pub status: OrderStatus,
    /// Why the order was cancelled by the exchange (time in force, funds, self-trade).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_at_ms: u64,
    /// Last change, unix milliseconds.
    pub updated_at_ms: u64,
    /// Fills of this order (as maker or taker), oldest first.
    pub fills: Vec<Fill>,
    /// Funds still locked for this order (asset given by the market and side).
    #[serde(skip)]
    pub locked: Decimal,
    /// Sum of `price * qty` over fills (for the average price).
    #[serde(skip)]
    pub notional: Decimal,
}

impl Order {
    /// Record an execution of `qty` at `price` on this order.
    pub(crate) fn record_fill(&mut self, fill: Fill, notional: Decimal) {
        self.filled_qty += fill.qty;
        self.remaining -= fill.qty;
        self.notional += notional;
        self.avg_price = if self.filled_qty.is_zero() {
            None
        } else {
            self.notional
                .checked_div(self.filled_qty)
                .map(|p| p.round_dp(AVG_PRICE_DECIMALS).normalize())
        };
        self.updated_at_ms = fill.timestamp_ms;
        self.status = if self.remaining.is_zero() {
            OrderStatus::Filled
        } else {
            OrderStatus::PartiallyFilled
        };
        self.fills.push(fill);
    }
}

/// A compact view of an order, pushed on the stream when it changes state.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OrderUpdate {
    /// Order id.
    #[serde(serialize_with = "num::ser_id")]
    pub order_id: u64,
    /// Client order id.
    pub client_order_id: Option<String>,
    /// Instrument.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Status after the change.
    pub status: OrderStatus,
    /// Limit price.
    #[serde(serialize_with = "num::ser_opt")]
    pub price: Option<Decimal>,
    /// Original quantity.
    #[serde(serialize_with = "num::ser")]
    pub qty: Decimal,
    /// Filled quantity.
    #[serde(serialize_with = "num::ser")]
    pub filled_qty: Decimal,
    /// Unfilled quantity.
    #[serde(serialize_with = "num::ser")]
    pub remaining: Decimal,
    /// Average fill price.
    #[serde(serialize_with = "num::ser_opt")]
    pub avg_price: Option<Decimal>,
    /// Exchange cancel reason, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
}

impl From<&Order> for OrderUpdate {
    fn from(o: &Order) -> Self {
        OrderUpdate {
            order_id: o.id,
            client_order_id: o.client_order_id.clone(),
            symbol: o.symbol.clone(),
            side: o.side,
            status: o.status,
            price: o.price,
            qty: o.qty,
            filled_qty: o.filled_qty,
            remaining: o.remaining,
            avg_price: o.avg_price,
            cancel_reason: o.cancel_reason.clone(),
        }
    }
}

/// Whether the account's order provided (maker) or took (taker) liquidity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liquidity {
    /// Resting order.
    Maker,
    /// Incoming order.
    Taker,
}

/// A fill as seen by one of the two accounts involved.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FillUpdate {
    /// The account's order that was filled.
    #[serde(serialize_with = "num::ser_id")]
    pub order_id: u64,
    /// Its client order id.
    pub client_order_id: Option<String>,
    /// Side of the account's order.
    pub side: Side,
    /// Maker or taker.
    pub liquidity: Liquidity,
    /// The execution.
    #[serde(flatten)]
    pub fill: Fill,
}

/// Payload of a stream event (`{"type":"order",...}` or `{"type":"fill",...}`).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EventPayload {
    /// An order changed state.
    Order(OrderUpdate),
    /// An order of the account was (partly) filled.
    Fill(FillUpdate),
}

/// A stream event addressed to one account.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    /// Account the event belongs to.
    pub account: String,
    /// What happened.
    #[serde(flatten)]
    pub payload: EventPayload,
}
