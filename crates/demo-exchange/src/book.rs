//! Price-time priority order book for one instrument.
//!
//! Each side is a `BTreeMap<price, VecDeque<Order>>`: levels are ordered by
//! price (bids are read high→low, asks low→high) and orders within a level
//! are FIFO, so the front of the best level is always the order with
//! priority. Empty levels are never kept. The book holds only resting
//! (open) orders and knows nothing about balances: matching and settlement
//! live in [`crate::engine`].

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;

use crate::types::{Order, Side};

/// One side's levels.
type Levels = BTreeMap<Decimal, VecDeque<Order>>;

/// Resting orders of one instrument.
#[derive(Debug, Default, Clone)]
pub struct OrderBook {
    bids: Levels,
    asks: Levels,
}

/// Does an incoming order on `taker_side` with limit `limit` cross a resting
/// order at `maker_price`?
pub fn crosses(taker_side: Side, limit: Decimal, maker_price: Decimal) -> bool {
    match taker_side {
        Side::Buy => maker_price <= limit,
        Side::Sell => maker_price >= limit,
    }
}

impl OrderBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    fn levels(&self, side: Side) -> &Levels {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn levels_mut(&mut self, side: Side) -> &mut Levels {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Append `order` at the back of its price level (on `order.side`).
    /// Returns the order back if it has no price.
    pub fn insert(&mut self, order: Order) -> Result<(), Box<Order>> {
        let Some(price) = order.price else {
            return Err(Box::new(order));
        };
        self.levels_mut(order.side)
            .entry(price)
            .or_default()
            .push_back(order);
        Ok(())
    }

    /// Best price on `side`: the highest bid for [`Side::Buy`], the lowest ask for [`Side::Sell`].
    pub fn best_price(&self, side: Side) -> Option<Decimal> {
        match side {
            Side::Buy => self.bids.keys().next_back().copied(),
            Side::Sell => self.asks.keys().next().copied(),
        }
    }

    /// The order with time priority at `price` on `side`.
    pub fn front(&self, side: Side, price: Decimal) -> Option<&Order> {
        self.levels(side).get(&price).and_then(|q| q.front())
    }

    /// Mutable access to the order with time priority at `price` on `side`.
    pub fn front_mut(&mut self, side: Side, price: Decimal) -> Option<&mut Order> {
        self.levels_mut(side)
            .get_mut(&price)
            .and_then(|q| q.front_mut())
    }

    /// Remove and return the order with time priority at `price` on `side`.
    pub fn pop_front(&mut self, side: Side, price: Decimal) -> Option<Order> {
        let levels = self.levels_mut(side);
        let queue = levels.get_mut(&price)?;
        let order = queue.pop_front();
        if queue.is_empty() {
            levels.remove(&price);
        }
        order
    }

    /// Remove the order `id` resting at `price` on `side`.
    pub fn remove(&mut self, side: Side, price: Decimal, id: u64) -> Option<Order> {
        let levels = self.levels_mut(side);
        let queue = levels.get_mut(&price)?;
        let pos = queue.iter().position(|o| o.id == id)?;
        let order = queue.remove(pos);
        if queue.is_empty() {
            levels.remove(&price);
        }
        order
    }

    /// The order `id` resting at `price` on `side`.
    pub fn get(&self, side: Side, price: Decimal, id: u64) -> Option<&Order> {
        self.levels(side)
            .get(&price)
            .and_then(|q| q.iter().find(|o| o.id == id))
    }

    /// Levels of `side`, best first, each with its FIFO queue.
    pub fn iter_levels(
        &self,
        side: Side,
    ) -> Box<dyn Iterator<Item = (Decimal, &VecDeque<Order>)> + '_> {
        match side {
            Side::Buy => Box::new(self.bids.iter().rev().map(|(p, q)| (*p, q))),
            Side::Sell => Box::new(self.asks.iter().map(|(p, q)| (*p, q))),
        }
    }

    /// Up to `depth` aggregated levels `(price, total remaining qty)` of `side`, best first.
    pub fn depth(&self, side: Side, depth: usize) -> Vec<(Decimal, Decimal)> {
        self.iter_levels(side)
            .take(depth)
            .map(|(p, q)| (p, q.iter().map(|o| o.remaining).sum()))
            .collect()
    }

    /// All resting orders (both sides).
    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.bids
            .values()
            .chain(self.asks.values())
            .flat_map(|q| q.iter())
    }

    /// No resting orders at all?
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{OrderStatus, OrderType, TimeInForce};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn order(id: u64, side: Side, price: &str, qty: &str) -> Order {
        Order {
            id,
            client_order_id: None,
            account: "a".into(),
            symbol: "X".into(),
            side,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            price: Some(d(price)),
            qty: d(qty),
            filled_qty: Decimal::ZERO,
            remaining: d(qty),
            avg_price: None,
            status: OrderStatus::New,
            cancel_reason: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            fills: vec![],
            locked: Decimal::ZERO,
            notional: Decimal::ZERO,
        }
    }

    #[test]
    fn best_prices_and_depth_are_sorted_best_first() {
        let mut b = OrderBook::new();
        b.insert(order(1, Side::Buy, "99", "1")).unwrap();
        b.insert(order(2, Side::Buy, "100", "2")).unwrap();
        b.insert(order(3, Side::Buy, "100", "3")).unwrap();
        b.insert(order(4, Side::Sell, "102", "1")).unwrap();
        b.insert(order(5, Side::Sell, "101", "4")).unwrap();
        assert_eq!(b.best_price(Side::Buy), Some(d("100")));
        assert_eq!(b.best_price(Side::Sell), Some(d("101")));
        assert_eq!(
            b.depth(Side::Buy, 10),
            vec![(d("100"), d("5")), (d("99"), d("1"))]
        );
        assert_eq!(b.depth(Side::Sell, 1), vec![(d("101"), d("4"))]);
        // FIFO within a level.
        assert_eq!(b.front(Side::Buy, d("100")).unwrap().id, 2);
        assert_eq!(b.pop_front(Side::Buy, d("100")).unwrap().id, 2);
        assert_eq!(b.front(Side::Buy, d("100")).unwrap().id, 3);
    }

    #[test]
    fn removing_last_order_removes_level() {
        let mut b = OrderBook::new();
        b.insert(order(1, Side::Sell, "10", "1")).unwrap();
        b.insert(order(2, Side::Sell, "11", "1")).unwrap();
        assert!(b.remove(Side::Sell, d("10"), 99).is_none());
        assert_eq!(b.remove(Side::Sell, d("10"), 1).unwrap().id, 1);
        assert_eq!(b.best_price(Side::Sell), Some(d("11")));
        assert!(b.get(Side::Sell, d("11"), 2).is_some());
        b.pop_front(Side::Sell, d("11")).unwrap();
        assert!(b.is_empty());
        assert_eq!(b.best_price(Side::Sell), None);
    }

    #[test]
    fn insert_without_price_is_refused() {
        let mut b = OrderBook::new();
        let mut o = order(1, Side::Buy, "1", "1");
        o.price = None;
        assert!(b.insert(o).is_err());
        assert!(b.is_empty());
    }

    #[test]
    fn crossing() {
        assert!(crosses(Side::Buy, d("100"), d("100")));
        assert!(crosses(Side::Buy, d("100"), d("99")));
        assert!(!crosses(Side::Buy, d("100"), d("101")));
        assert!(crosses(Side::Sell, d("100"), d("101")));
        assert!(!crosses(Side::Sell, d("100"), d("99")));
    }
}
