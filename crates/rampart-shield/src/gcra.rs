//! The Generic Cell Rate Algorithm, as a pure function over integer
//! nanoseconds.
//!
//! State per key is a single number, the *theoretical arrival time* (TAT):
//! the instant at which the bucket would be full again. With emission
//! interval `T = period / rate` and burst tolerance `τ = T × (burst − 1)`,
//! a request of weight `w` at time `now` is allowed iff, after
//! `TAT = max(TAT, now)`,
//!
//! ```text
//! TAT − now ≤ τ − T × (w − 1)      ⇔      TAT + T × w − now ≤ T × burst
//! ```
//!
//! and on allow `TAT += T × w`. On deny nothing changes. A TAT at or
//! before `now` means a full bucket, which is the same as no state at all;
//! stores rely on that to forget such keys without changing any decision.
//!
//! Nothing here reads a clock or touches storage, so the same function
//! serves the in-memory store, a future remote store (which must port the
//! same arithmetic), the tests' reference model and the benchmarks.

use std::time::Duration;

/// Why a [`Quota`] was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// `rate` was 0.
    #[error("rate must be at least 1 per period")]
    ZeroRate,
    /// `burst` was 0.
    #[error("burst must be at least 1")]
    ZeroBurst,
    /// `period` was zero.
    #[error("period must be longer than zero")]
    ZeroPeriod,
    /// `period`, or `period / rate × burst`, does not fit in 64-bit
    /// nanoseconds (about 584 years).
    #[error("period or period / rate × burst exceeds 584 years")]
    TooLong,
}

/// A validated rate limit: `rate` requests per `period`, with bursts of up
/// to `burst` requests.
///
/// The emission interval `T` is `period / rate` rounded *up* to the next
/// nanosecond, so the configured rate is never exceeded; the error is below
/// one nanosecond per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    rate: u32,
    period: Duration,
    burst: u32,
    /// Emission interval `T` in ns; at least 1.
    interval_ns: u64,
    /// `T × burst` in ns: the largest allowed `TAT − now` after an allow.
    /// INVARIANT: does not overflow (checked in [`Quota::new`]).
    capacity_ns: u64,
}

impl Quota {
    /// Validates and builds a quota of `rate` per `period` with bursts of
    /// `burst`.
    ///
    /// # Errors
    ///
    /// [`QuotaError`] if `rate`, `burst` or `period` is zero, or the period
    /// does not fit in 64-bit nanoseconds.
    pub fn new(rate: u32, period: Duration, burst: u32) -> Result<Self, QuotaError> {
        if rate == 0 {
            return Err(QuotaError::ZeroRate);
        }
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        if period.is_zero() {
            return Err(QuotaError::ZeroPeriod);
        }
        let period_ns = u64::try_from(period.as_nanos()).map_err(|_| QuotaError::TooLong)?;
        let interval_ns = period_ns.div_ceil(u64::from(rate));
        let capacity_ns = interval_ns
            .checked_mul(u64::from(burst))
            .ok_or(QuotaError::TooLong)?;
        Ok(Self {
            rate,
            period,
            burst,
            interval_ns,
            capacity_ns,
        })
    }

    /// Requests allowed per [`period`](Self::period) in steady state.
    #[must_use]
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The window `rate` applies to.
    #[must_use]
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The largest number of weight-1 requests allowed at once from a full
    /// bucket; also the largest weight that can ever be allowed.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The emission interval `T` (`period / rate`, rounded up to 1 ns).
    #[must_use]
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    /// The burst tolerance `τ = T × (burst − 1)`.
    #[must_use]
    pub fn tolerance(&self) -> Duration {
        Duration::from_nanos(self.capacity_ns.saturating_sub(self.interval_ns))
    }

    /// `T` in nanoseconds.
    #[must_use]
    pub fn emission_interval_ns(&self) -> u64 {
        self.interval_ns
    }
}

use crate::store::StoreError;

/// The outcome of one rate-limit check.
///
/// Only [`Decision::Allowed`] lets a request through; every other variant
/// is a deny, each with its own cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// The request is allowed and its weight has been consumed.
    Allowed {
        /// Weight-1 requests that would still be allowed right now.
        remaining: u32,
        /// Time until the bucket is full again.
        reset_after: Duration,
    },
    /// The request is denied for now; nothing was consumed.
    Denied {
        /// Exact time after which the same request would be allowed,
        /// assuming no other traffic on the key.
        retry_after: Duration,
        /// Weight-1 requests that would still be allowed right now (may be
        /// non-zero when the denied request was heavier than 1).
        remaining: u32,
        /// Time until the bucket is full again.
        reset_after: Duration,
    },
    /// The request's weight exceeds the quota's burst: it can never be
    /// allowed, however long the client waits. Nothing was consumed.
    Never {
        /// The request's weight.
        weight: u32,
        /// The quota's burst, the largest weight that can ever pass.
        burst: u32,
    },
    /// The store could not record the request, so it is denied (fail
    /// closed). Nothing was consumed.
    FailClosed {
        /// What the store reported.
        cause: StoreError,
    },
}

impl Decision {
    /// Whether the request may proceed.
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }

    /// For [`Decision::Denied`], how long until the same request would pass.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Denied { retry_after, .. } => Some(*retry_after),
            Self::Allowed { .. } | Self::Never { .. } | Self::FailClosed { .. } => None,
        }
    }

    /// Weight-1 requests that would still pass now, where known.
    #[must_use]
    pub fn remaining(&self) -> Option<u32> {
        match self {
            Self::Allowed { remaining, .. } | Self::Denied { remaining, .. } => Some(*remaining),
            Self::Never { .. } | Self::FailClosed { .. } => None,
        }
    }

    /// Time until the bucket is full again, where known.
    #[must_use]
    pub fn reset_after(&self) -> Option<Duration> {
        match self {
            Self::Allowed { reset_after, .. } | Self::Denied { reset_after, .. } => {
                Some(*reset_after)
            }
            Self::Never { .. } | Self::FailClosed { .. } => None,
        }
    }
}

/// Weight-1 requests that fit when the bucket is `level_ns` full.
fn remaining(quota: &Quota, level_ns: u64) -> u32 {
    let free = quota.capacity_ns.saturating_sub(level_ns) / quota.interval_ns;
    // free ≤ capacity / T = burst, which is a u32.
    u32::try_from(free).unwrap_or(quota.burst)
}

/// One GCRA step: the decision for a request of `weight` at `now_ns` on a
/// key whose stored TAT is `tat` (`None`: no state, i.e. a full bucket),
/// and the TAT to store afterwards (`None`: keep no state).
///
/// On deny, [`Decision::Never`] and weight 0 the returned TAT equals the
/// input. Arithmetic is integer and saturating; no floats.
pub fn gcra_step(
    tat: Option<u64>,
    now_ns: u64,
    quota: &Quota,
    weight: u32,
) -> (Decision, Option<u64>) {
    if weight > quota.burst {
        return (
            Decision::Never {
                weight,
                burst: quota.burst,
            },
            tat,
        );
    }
    // TAT = max(TAT, now); `level` = TAT − now is how full the bucket is.
    let level = tat.map_or(0, |t| t.saturating_sub(now_ns));
    if weight == 0 {
        // Always allowed, consumes nothing, even if a stale `now` (a racing
        // thread, a clock set backwards in tests) makes the level look
        // higher than the capacity.
        return (
            Decision::Allowed {
                remaining: remaining(quota, level),
                reset_after: Duration::from_nanos(level),
            },
            tat,
        );
    }
    // INVARIANT: weight ≤ burst, so T × weight ≤ T × burst fits in u64.
    let cost = quota.interval_ns.saturating_mul(u64::from(weight));
    let after = level.saturating_add(cost);
    if after <= quota.capacity_ns {
        (
            Decision::Allowed {
                remaining: remaining(quota, after),
                reset_after: Duration::from_nanos(after),
            },
            Some(now_ns.saturating_add(after)),
        )
    } else {
        (
            Decision::Denied {
                retry_after: Duration::from_nanos(after - quota.capacity_ns),
                remaining: remaining(quota, level),
                reset_after: Duration::from_nanos(level),
            },
            tat,
        )
    }
}

/// Gives back `weight` that an earlier [`gcra_step`] allowed on this key,
/// for a request a later check refused: the TAT moves back by `T × weight`
/// (never below `now`, which is a full bucket and stored as no state).
///
/// Between the step and the refund other requests on the key may have been
/// decided against the higher TAT; they can only have been denied more, so
/// a refund never lets anything through that the limit would not.
pub fn gcra_refund(tat: Option<u64>, now_ns: u64, quota: &Quota, weight: u32) -> Option<u64> {
    let cost = quota.interval_ns.saturating_mul(u64::from(weight));
    tat.map(|t| t.saturating_sub(cost)).filter(|t| *t > now_ns)
}
