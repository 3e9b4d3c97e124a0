//! Pre-trade risk at the edge: stop a fat-fingered or runaway order before
//! it reaches the exchange.
//!
//! Owns: the limit configuration ([`PretradeConfig`], [`Limits`]), the
//! strict order-body parser ([`parse_order`]) and the [`Engine`] that checks
//! an order against the effective limits and tracks open orders, client
//! order ids and reference prices. Must never: do I/O, block on anything
//! but its own short critical sections, panic on client input, or let an
//! order through when a configured limit cannot be evaluated.
//!
//! # Flow
//!
//! For every order-entry request, after authentication:
//!
//! 1. [`parse_order`] the body (a failure is a 400, not a risk refusal);
//! 2. [`Engine::check`] it for the caller ([`Who`]) at the current time;
//!    a [`Violation`] becomes a 422 `RISK_LIMIT` naming the limit, the
//!    level and the configured value;
//! 3. forward; then [`Engine::settle`] the [`Ticket`] with the upstream's
//!    [`Outcome`];
//! 4. feed cancels and fills to [`Engine::order_closed`], `GET /v1/orders`
//!    answers to [`Engine::reconcile_open_orders`], and book / trade
//!    prices to [`Engine::set_reference_price`].
//!
//! # Effective limits
//!
//! Five levels apply to an order: the key, the account, the parent account
//! (the parent's `accounts` entry, for a sub-account), the instrument and
//! the defaults. For each kind the most restrictive wins: the smallest
//! `max_qty`, `max_notional`, `collar_pct` and `max_open_orders`, the
//! longest `duplicate_window_ms`, and for `order_types` / `time_in_force`
//! every configured list must contain the value (their intersection). A
//! violation reports the level holding the binding value; on a tie the most
//! specific level (key, account, parent, instrument, default).
//!
//! Open orders are counted per account and per key. A key-level
//! `max_open_orders` caps the key's count (across accounts); the account,
//! parent, instrument and default levels cap the account's count. A
//! parent's limit is inherited by each sub-account; sub-accounts are not
//! summed into a parent total.
//!
//! # Decisions (fail closed where it matters)
//!
//! - **Reference price.** The fetched price ([`Engine::set_reference_price`])
//!   if at most `reference_max_age_ms` old, else the configured fixed price,
//!   else none. A market order (no price) under a `max_notional` or a
//!   collar, and any order under a collar, is refused with
//!   `reference_price_unavailable` when there is none: a collar that cannot
//!   be checked does not pass. A limit order under only a notional limit
//!   needs no reference price (its own price is used).
//! - **Collar.** `|price − reference| × 100 ≤ reference × collar_pct`,
//!   exact decimal arithmetic, boundary allowed. Market orders have no
//!   price to collar but still need a reference price when a collar
//!   applies.
//! - **Arithmetic.** Quantity and price must be greater than 0
//!   (`invalid_order`, level `order`). `qty × price` and the collar use
//!   checked arithmetic: an overflow refuses the order, never panics.
//! - **Time in force.** A missing one is the venue's default (`gtc` for
//!   limit, `ioc` for market orders); any other type without one fails a
//!   configured list.
//! - **Client order ids.** Recorded when a check passes and a duplicate
//!   window applies, and refused again for the account within the window
//!   (a record from the future, after a clock step back, counts as within).
//!   [`Outcome::Rejected`] forgets the id: the venue refused the order, so
//!   the id may be reused. [`Outcome::Done`], [`Outcome::Resting`] and
//!   [`Outcome::Unknown`] keep it: an accepted (or possibly accepted)
//!   order's id may not be reused, and a blind retry of an order of
//!   unknown outcome is exactly the duplicate the window exists to stop.
//! - **Unknown outcomes.** [`Outcome::Unknown`] (timeout, lost connection)
//!   keeps the slot: the order may rest on the book. Dropping a [`Ticket`]
//!   without settling it counts as unknown, for the same reason (a request
//!   future dropped mid-forward may have reached the venue). Such slots are
//!   freed only by [`Engine::reconcile_open_orders`];
//!   [`Engine::unknown_orders`] tells the gateway when to reconcile. A
//!   request refused by a later gateway phase before forwarding must be
//!   settled with [`Outcome::Rejected`].
//! - **Memory.** `max_tracked` bounds the client-order-id records and,
//!   separately, the tracked open order ids (split evenly over the shards).
//!   At the bound the oldest client order ids are evicted (counted in the
//!   snapshot as `client_order_id_evictions`: a duplicate within the window
//!   could then pass, so size the bound above peak orders per window). An
//!   open order id beyond the bound is not remembered but its slot stays
//!   counted (as unknown, until reconciliation): memory is bounded without
//!   ever freeing a slot early. Accounts and keys with nothing open and no
//!   remembered ids are dropped.
//! - **Allow lists** are compared exactly against their lowercased entries
//!   (an order type `LIMIT` does not match `limit`; [`parse_order`] only
//!   produces lowercase values). At most 64 distinct values across all lists
//!   (a value beyond that never matches; [`PretradeConfig::validate`] says
//!   so).
//! - **Reload** swaps the configuration atomically and keeps counts, order
//!   ids, client-order-id memory and fetched reference prices.
//! - **Time.** `now_ms` / `at_ms` are Unix milliseconds supplied by the
//!   caller (a fake clock in tests); only [`Engine::snapshot`] reads the
//!   system clock.
//!
//! # Concurrency
//!
//! [`Engine`] is `Sync`. Account state lives in shards chosen by a keyed
//! hash of the account id, key counts in shards by key id, each behind a
//! `parking_lot` mutex held only for a few map operations. The check of the
//! open-order limit and the reservation happen under the same locks, so
//! concurrent checks can never reserve more than the limit. Lock order is
//! always account shard, then key shard; the configuration's read lock is
//! held across a check and never taken while a shard lock is held.
//!
//! Maps keyed by account ids, key ids, symbols and upstream order ids use a
//! fast unkeyed hash (these keys are not client-chosen, or are only looked
//! up in tables the client cannot insert into); client order ids, which a
//! client chooses and the engine stores, keep the keyed SipHash.

mod compiled;
mod engine;
mod fasthash;
mod parse;
mod types;

pub use engine::{Engine, Outcome, Ticket};
pub use parse::{
    parse_order, OwnedOrder, MAX_CLIENT_ORDER_ID_LEN, MAX_FRAC_DIGITS, MAX_INT_DIGITS,
};
pub use types::{
    level, limit, Limits, Order, PretradeConfig, Violation, Who, DEFAULT_MAX_TRACKED,
    DEFAULT_REFERENCE_MAX_AGE_MS,
};
