//! `demo-exchange`: a small reference trading backend (a stand-in for a
//! venue's core) used by the Rampart demo and tests.
//!
//! * [`book`] — price-time priority order book.
//! * [`engine`] — matching, balances, settlement (pure, synchronous).
//! * [`api`] — the HTTP/JSON and WebSocket API (axum).
//! * [`Exchange`] — the engine behind a lock plus an event channel; one
//!   `Arc<Exchange>` may be served by several listeners at once.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let ex = demo_exchange::Exchange::new_seeded();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! demo_exchange::serve(listener, ex, async { /* shutdown signal */ }).await
//! # }
//! ```
//!
//! Choices worth knowing (details in [`engine`]):
//! * self-trade prevention cancels the *resting* order of the same account;
//! * perpetuals move no cash and have no margin checks (positions only);
//!   options move the premium in USD, option writers post no collateral;
//! * decimals are strings on the wire, parsed strictly ([`num`]) and emitted
//!   normalized (`"65000"`, not `"65000.00"`);
//! * accounts: `demo`, `demo2` (10 BTC, 100 ETH, 1,000,000 USD each) and the
//!   market maker `mm`; any other `X-Rampart-Account` gets a 404.

pub mod api;
pub mod book;
pub mod engine;
pub mod num;
pub mod types;

use std::sync::Arc;

use parking_lot::Mutex;
use rust_decimal::Decimal;
use tokio::sync::broadcast;

pub use api::{router, serve};
use engine::{AccountView, BookView, Engine, EngineError, NewOrder, Withdrawal};
use types::{Event, Market, Order};

/// Capacity of the event broadcast channel (slow stream clients lag beyond it).
pub const EVENT_CHANNEL_CAPACITY: usize = 4096;

/// All exchange state, behind a lock. `Send + Sync`; share it as `Arc<Exchange>`.
pub struct Exchange {
    engine: Mutex<Engine>,
    events: broadcast::Sender<Event>,
    /// When set, every request must carry the gateway's RFC 9421 signature
    /// made with this HMAC secret (the core trusts only the gateway).
    gateway_key: parking_lot::RwLock<Option<zeroize::Zeroizing<Vec<u8>>>>,
    /// Requests refused for a missing or bad gateway signature.
    pub rejected_unsigned: std::sync::atomic::AtomicU64,
    /// Requests accepted with a valid gateway signature.
    pub accepted_signed: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}

impl Exchange {
    /// Wrap an engine.
    pub fn new(engine: Engine) -> Arc<Exchange> {
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        Arc::new(Exchange {
            engine: Mutex::new(engine),
            events,
            gateway_key: parking_lot::RwLock::new(None),
            rejected_unsigned: std::sync::atomic::AtomicU64::new(0),
            accepted_signed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Requires every request (except `GET /healthz`) to carry a valid
    /// gateway signature made with `secret` (RFC 9421 `hmac-sha256`, key id
    /// `rampart-gateway`, created within 60 s). Requests without one get 401.
    pub fn require_gateway_signature(&self, secret: &[u8]) {
        *self.gateway_key.write() = Some(zeroize::Zeroizing::new(secret.to_vec()));
    }

    pub(crate) fn gateway_key(&self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        self.gateway_key.read().clone()
    }

    /// The demo state: markets, a market maker (`mm`) with resting
    /// liquidity, and demo accounts `demo` / `demo2` (see [`Engine::seeded`]).
    pub fn new_seeded() -> Arc<Exchange> {
        Exchange::new(Engine::seeded())
    }

    /// Subscribe to order and fill events of all accounts.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Run `f` with exclusive access to the engine (for inspection in tests
    /// and tools; events produced this way are not broadcast).
    pub fn with_engine<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        f(&mut self.engine.lock())
    }

    fn publish(&self, events: Vec<Event>) {
        for ev in events {
            // No subscribers is fine.
            let _ = self.events.send(ev);
        }
    }

    /// Place an order; broadcasts its events.
    pub fn place_order(&self, account: &str, req: NewOrder) -> Result<Order, EngineError> {
        let mut engine = self.engine.lock();
        let outcome = engine.place_order(account, req)?;
        // Published under the lock so that events keep the engine's order.
        self.publish(outcome.events);
        Ok(outcome.order)
    }

    /// Cancel an open order of `account`; broadcasts the update.
    pub fn cancel_order(&self, account: &str, id: u64) -> Result<Order, EngineError> {
        let mut engine = self.engine.lock();
        let outcome = engine.cancel_order(account, id)?;
        self.publish(outcome.events);
        Ok(outcome.order)
    }

    /// Cancel every open order of `account` (a kill switch's cancel-all);
    /// broadcasts each update and returns the cancelled orders.
    pub fn cancel_all(&self, account: &str) -> Result<Vec<Order>, EngineError> {
        let mut engine = self.engine.lock();
        let ids: Vec<u64> = engine.open_orders(account)?.iter().map(|o| o.id).collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let outcome = engine.cancel_order(account, id)?;
            self.publish(outcome.events);
            out.push(outcome.order);
        }
        Ok(out)
    }

    /// Request a withdrawal.
    pub fn withdraw(
        &self,
        account: &str,
        asset: &str,
        amount: Decimal,
        address: &str,
    ) -> Result<Withdrawal, EngineError> {
        self.engine.lock().withdraw(account, asset, amount, address)
    }

    /// Balances and positions.
    pub fn account(&self, account: &str) -> Result<AccountView, EngineError> {
        self.engine.lock().account(account)
    }

    /// Is `account` known?
    pub fn has_account(&self, account: &str) -> bool {
        self.engine.lock().has_account(account)
    }

    /// Open orders of an account.
    pub fn open_orders(&self, account: &str) -> Result<Vec<Order>, EngineError> {
        self.engine.lock().open_orders(account)
    }

    /// Aggregated book.
    pub fn book(&self, symbol: &str, depth: usize) -> Result<BookView, EngineError> {
        self.engine.lock().book(symbol, depth)
    }

    /// Instruments.
    pub fn markets(&self) -> Vec<Market> {
        self.engine.lock().markets()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Exchange>();
        check::<Arc<Exchange>>();
    }

    #[test]
    fn place_and_cancel_publish_events() {
        let ex = Exchange::new_seeded();
        let mut rx = ex.subscribe();
        let o = ex
            .place_order(
                "demo",
                NewOrder::limit(
                    "BTC-USD",
                    types::Side::Buy,
                    Decimal::ONE,
                    Decimal::from(60000),
                ),
            )
            .unwrap();
        let ev = rx.try_recv().unwrap();
        assert_eq!(ev.account, "demo");
        assert!(matches!(ev.payload, types::EventPayload::Order(ref u) if u.order_id == o.id));
        ex.cancel_order("demo", o.id).unwrap();
        let ev = rx.try_recv().unwrap();
        match ev.payload {
            types::EventPayload::Order(u) => assert_eq!(u.status, types::OrderStatus::Cancelled),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            ex.with_engine(|e| e.balance("demo", "USD").locked),
            Decimal::ZERO
        );
    }
}
