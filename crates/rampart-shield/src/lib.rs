//! Rampart's rate limits: an exact GCRA (Generic Cell Rate Algorithm)
//! limiter, generic over where its state lives and what time it is.
//!
//! - [`gcra`]: [`Quota`], [`Decision`] and the pure [`gcra_step`], integer
//!   nanoseconds only, no clock, no storage.
//! - [`store`]: the [`LimiterStore`] trait (one atomic read-modify-write of
//!   a key's TAT) and the sharded, bounded [`MemoryStore`].
//! - [`clock`]: [`Clock`], the production [`MonotonicClock`] and the
//!   [`ManualClock`] for tests.
//! - [`RateLimiter`] ties the three together; [`KeyHasher`] turns a
//!   (limit, scope, value) triple into the 64-bit key stores use.
//!
//! This crate does no I/O and spawns no tasks. It must never allow a
//! request it cannot account for: any store failure is a deny
//! ([`Decision::FailClosed`]).

pub mod abuse;
pub mod alert;
pub mod clock;
pub mod gcra;
pub mod risk;
pub mod store;
pub mod waf;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use gcra::{gcra_refund, gcra_step, Decision, Quota, QuotaError};
pub use store::{LimiterStore, MemoryStore, MemoryStoreError, StoreError};

/// Derives limiter keys from (limit id, scope, value) with SipHash-1-3
/// under a key drawn at random when the hasher is built.
///
/// Clients choose the values (an API key id, an IP address, a symbol), so
/// the mapping must be unpredictable to them or they could aim many values
/// at one shard or one map bucket. Build one `KeyHasher` per process and
/// share it: keys from different hashers do not match. Compute the key
/// once per request and limit, outside the limiter's hot path.
///
/// Two different triples share a limit only on a 64-bit collision, which
/// the random key makes impossible to aim for.
#[derive(Debug, Clone)]
pub struct KeyHasher {
    state: RandomState,
}

impl KeyHasher {
    /// A hasher with a fresh random key.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: RandomState::new(),
        }
    }

    /// The key for `value` under limit `limit_id` in `scope`. Lengths are
    /// hashed too, so `("ab", "c")` and `("a", "bc")` differ.
    #[must_use]
    pub fn key(&self, limit_id: u32, scope: &[u8], value: &[u8]) -> u64 {
        let mut h = self.state.build_hasher();
        h.write_u32(limit_id);
        h.write_usize(scope.len());
        h.write(scope);
        h.write_usize(value.len());
        h.write(value);
        h.finish()
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// A rate limiter: GCRA decisions over a [`LimiterStore`], timed by a
/// [`Clock`].
///
/// A key must always be checked against the same [`Quota`] (make the limit
/// id part of the key, as [`KeyHasher::key`] does); the stored TAT is
/// absolute time, so it stays meaningful, but mixing quotas on one key
/// mixes their budgets.
#[derive(Debug)]
pub struct RateLimiter<S: LimiterStore, C: Clock> {
    store: S,
    clock: C,
}

impl<S: LimiterStore, C: Clock> RateLimiter<S, C> {
    /// A limiter over `store`, reading time from `clock`.
    pub fn new(store: S, clock: C) -> Self {
        Self { store, clock }
    }

    /// Checks a request of `weight` against `quota` on `key`, consuming the
    /// weight if and only if the decision is [`Decision::Allowed`].
    ///
    /// The clock is read before the key is locked, so under contention a
    /// thread may apply a slightly older `now` than one that went before
    /// it; GCRA then sees a fuller bucket, which can only deny more, never
    /// allow more.
    pub fn check(&self, key: u64, quota: &Quota, weight: u32) -> Decision {
        let now = self.clock.now_ns();
        self.store
            .update(key, now, |tat| gcra_step(tat, now, quota, weight))
            .unwrap_or_else(|cause| Decision::FailClosed { cause })
    }

    /// Returns `weight` to `key` after an allowed [`Self::check`] whose
    /// request a later rule refused (see [`gcra_refund`]). A store failure
    /// is ignored: the weight stays consumed, which only denies more.
    pub fn refund(&self, key: u64, quota: &Quota, weight: u32) {
        let now = self.clock.now_ns();
        let _ = self
            .store
            .update(key, now, |tat| ((), gcra_refund(tat, now, quota, weight)));
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}
