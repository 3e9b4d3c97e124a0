//! Where per-key limiter state (one TAT per key) lives.
//!
//! A store knows nothing about GCRA: it offers one atomic
//! read-modify-write per key, and the limiter runs [`crate::gcra_step`]
//! inside it. A remote store (Redis, a later issue) cannot ship a closure,
//! so it will run the same arithmetic server-side (a script) behind an
//! async counterpart of this trait; keeping the math in a pure function is
//! what makes the two agree.
//!
//! # Forgetting full buckets is exact
//!
//! A stored TAT at or before `now` describes a full bucket, and a full
//! bucket is exactly what a missing key means. [`MemoryStore`] therefore
//! evicts such entries when it needs room, and no decision changes because
//! of it: eviction is not an approximation.
//!
//! # Full of live state: fail closed
//!
//! If a shard is at capacity and every entry in it is still live (TAT in
//! the future), a *new* key cannot be recorded. Evicting a live entry would
//! hand that key a fresh burst, which an attacker could trigger at will by
//! spraying new keys; so instead the new key's request is refused with
//! [`StoreError::Full`] (the limiter turns it into
//! [`crate::Decision::FailClosed`]). Keys already in the store keep working
//! exactly, and requests that would not need state (weight 0, a weight
//! above the burst) are still answered.
//!
//! Eviction is a sweep of the whole shard under its lock, run only when a
//! new key meets a full shard *and* the shard's lower bound on its TATs
//! says some entry may have expired; it costs O(keys per shard) and is the
//! one non-constant path. Size shards so that it stays rare.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use parking_lot::Mutex;

/// Why a store could not apply an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The key is new and its shard is full of live entries.
    #[error("limiter store is full of live entries")]
    Full,
}

/// Per-key TAT storage with one atomic read-modify-write.
pub trait LimiterStore: Send + Sync {
    /// Atomically applies `f` to the state stored under `key`.
    ///
    /// `f` receives the stored TAT (`None` if the key has no state) and
    /// returns a result plus the TAT to store (`None`: drop the state).
    /// `now_ns` is the caller's clock reading, which the store may use to
    /// recognise entries that are full buckets (TAT ≤ now) and may be
    /// forgotten. `f` runs at most once, with no other update to `key`
    /// interleaved.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the new state cannot be recorded; nothing has
    /// changed then and the caller must deny.
    fn update<R, F>(&self, key: u64, now_ns: u64, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(Option<u64>) -> (R, Option<u64>);
}

impl<S: LimiterStore + ?Sized> LimiterStore for std::sync::Arc<S> {
    fn update<R, F>(&self, key: u64, now_ns: u64, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(Option<u64>) -> (R, Option<u64>),
    {
        (**self).update(key, now_ns, f)
    }
}

/// Keys passed to stores are already keyed SipHash outputs (see
/// [`crate::KeyHasher`]), uniformly distributed and unpredictable to
/// clients, so maps use them as their own hash.
#[derive(Debug, Default, Clone, Copy)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used for `u64` keys; a plain fold keeps it total.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdentityState = BuildHasherDefault<IdentityHasher>;

/// One shard, on its own cache lines so neighbouring locks do not contend.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    inner: Mutex<ShardInner>,
}

#[derive(Debug)]
struct ShardInner {
    tats: HashMap<u64, u64, IdentityState>,
    /// A lower bound on every stored TAT: no entry can be a full bucket
    /// before this instant, so sweeping earlier would find nothing. TATs
    /// only grow once stored, so the bound stays valid between sweeps.
    earliest_tat: u64,
}

impl ShardInner {
    /// Drops every full-bucket entry (TAT ≤ now) and recomputes the bound.
    fn sweep(&mut self, now_ns: u64) {
        let mut earliest = u64::MAX;
        self.tats.retain(|_, tat| {
            let live = *tat > now_ns;
            if live {
                earliest = earliest.min(*tat);
            }
            live
        });
        self.earliest_tat = earliest;
    }
}

/// Why a [`MemoryStore`] configuration was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemoryStoreError {
    /// The shard count was not a power of two in `1..=65536`.
    #[error("shard count must be a power of two between 1 and 65536")]
    Shards,
    /// The per-shard capacity was 0.
    #[error("keys per shard must be at least 1")]
    Capacity,
}

/// An in-process [`LimiterStore`]: a power-of-two number of shards, each a
/// mutex around a bounded `HashMap<key, TAT>`.
///
/// Memory is bounded by `shards × keys_per_shard` entries. Full-bucket
/// entries are evicted when a shard needs room (exact, see the module
/// docs); a shard full of live entries refuses new keys (fail closed).
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Shard]>,
    mask: u64,
    keys_per_shard: usize,
}

impl MemoryStore {
    /// Default shard count.
    pub const DEFAULT_SHARDS: usize = 64;
    /// Default capacity per shard: 64 × 16 384 ≈ 1 M keys in total.
    pub const DEFAULT_KEYS_PER_SHARD: usize = 16_384;

    /// A store with `shards` shards (a power of two, at most 65 536) of up
    /// to `keys_per_shard` keys each.
    ///
    /// # Errors
    ///
    /// [`MemoryStoreError`] if either number is out of range.
    pub fn new(shards: usize, keys_per_shard: usize) -> Result<Self, MemoryStoreError> {
        if !shards.is_power_of_two() || shards > 65_536 {
            return Err(MemoryStoreError::Shards);
        }
        if keys_per_shard == 0 {
            return Err(MemoryStoreError::Capacity);
        }
        Ok(Self::build(shards, keys_per_shard))
    }

    fn build(shards: usize, keys_per_shard: usize) -> Self {
        let shards: Box<[Shard]> = (0..shards)
            .map(|_| Shard {
                inner: Mutex::new(ShardInner {
                    tats: HashMap::with_hasher(IdentityState::default()),
                    earliest_tat: u64::MAX,
                }),
            })
            .collect();
        let mask = u64::try_from(shards.len().saturating_sub(1)).unwrap_or(0);
        Self {
            shards,
            mask,
            keys_per_shard,
        }
    }

    /// The total number of keys currently held (locks each shard in turn;
    /// for tests and metrics, not the hot path).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.inner.lock().tats.len()).sum()
    }

    /// Whether no key holds state.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every full-bucket entry (TAT ≤ `now_ns`) in every shard. Not
    /// needed for correctness; lets a periodic task return memory early.
    pub fn purge(&self, now_ns: u64) {
        for shard in self.shards.iter() {
            shard.inner.lock().sweep(now_ns);
        }
    }

    fn shard(&self, key: u64) -> Option<&Shard> {
        // Shard from bits 32.., so the bits the map itself uses (low bits
        // for the bucket, top 7 for the control byte) stay random within a
        // shard.
        let idx = usize::try_from((key >> 32) & self.mask).ok()?;
        self.shards.get(idx)
    }
}

impl Default for MemoryStore {
    /// [`MemoryStore::DEFAULT_SHARDS`] shards of
    /// [`MemoryStore::DEFAULT_KEYS_PER_SHARD`] keys.
    fn default() -> Self {
        Self::build(Self::DEFAULT_SHARDS, Self::DEFAULT_KEYS_PER_SHARD)
    }
}

impl LimiterStore for MemoryStore {
    fn update<R, F>(&self, key: u64, now_ns: u64, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(Option<u64>) -> (R, Option<u64>),
    {
        // INVARIANT: `mask < shards.len()`, so this is always `Some`; fail
        // closed rather than panic if it ever is not.
        let shard = self.shard(key).ok_or(StoreError::Full)?;
        let mut guard = shard.inner.lock();
        let inner = &mut *guard;
        // Existing key: one probe, update in place.
        if let Some(slot) = inner.tats.get_mut(&key) {
            let (result, new) = f(Some(*slot));
            match new {
                Some(tat) => {
                    *slot = tat;
                    // GCRA only ever raises a TAT, but keep the bound valid
                    // for any `f`.
                    inner.earliest_tat = inner.earliest_tat.min(tat);
                }
                None => {
                    inner.tats.remove(&key);
                }
            }
            return Ok(result);
        }
        // New key: insert only if `f` wants state kept.
        let (result, new) = f(None);
        if let Some(tat) = new {
            if inner.tats.len() >= self.keys_per_shard {
                if now_ns >= inner.earliest_tat {
                    inner.sweep(now_ns);
                }
                if inner.tats.len() >= self.keys_per_shard {
                    return Err(StoreError::Full);
                }
            }
            inner.tats.insert(key, tat);
            inner.earliest_tat = inner.earliest_tat.min(tat);
        }
        Ok(result)
    }
}
