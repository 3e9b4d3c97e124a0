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
//!
//! # Layout
//!
//! Each shard is a mutex around an open-addressing table of 16-byte
//! `(key, TAT)` slots, four to a cache line, so a decision on a key that
//! is not in cache costs about one miss for its slot (the shard's lock and
//! table header share a line of their own). A key's home slot is
//! `key × 2⁶⁴/φ` scaled to the table's size; collisions probe linearly;
//! removing a key shifts the rest of its probe run back instead of leaving
//! a tombstone, so runs stay as short as the load allows. A table grows by
//! a quarter whenever it is four fifths full, up to the size that holds
//! `keys_per_shard` keys at that load, so memory follows the keys actually
//! held and stays dense (20–25 bytes of slots per key once grown): a
//! smaller table misses cache less often. Key 0 marks a free slot, so a
//! real key 0 is kept in a slot of its own beside the table, never merged
//! with another key.

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

/// One stored `(key, TAT)` pair, four to a cache line. A `key` of [`FREE`]
/// marks an empty slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(16))]
struct Slot {
    key: u64,
    tat: u64,
}

/// The key of an empty slot. A real key 0 is kept in [`Table::zero`].
const FREE: u64 = 0;

/// `2⁶⁴/φ`, odd. `key × SPREAD`, scaled to the table's size, is a key's
/// home slot (Fibonacci hashing). Keys from [`crate::KeyHasher`] are
/// random already; the multiply keeps structured keys (small integers,
/// keys that differ only in their high bits) from piling into one probe
/// run.
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

/// The smallest table, in slots.
const MIN_SLOTS: usize = 16;

/// The largest table, in slots: more than any address space can hold
/// (2⁵⁸ × 16 bytes on 64-bit targets), so in practice the bound is
/// `keys_per_shard`.
const MAX_SLOTS: usize = 1 << (usize::BITS - 6);

/// The most keys a table of `n` slots holds: four fifths, which keeps
/// probe runs short (about 3 slots per hit on average at the limit).
fn max_used(n: usize) -> usize {
    n.saturating_sub(n.div_ceil(5))
}

/// The fewest slots that hold `keys` keys (see [`max_used`]).
fn slots_for(keys: usize) -> usize {
    keys.saturating_add(keys.div_ceil(4))
        .clamp(MIN_SLOTS, MAX_SLOTS)
}

/// Where a probe for a key ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The key is in this slot, with this TAT.
    Found(usize, u64),
    /// The key is absent; this free slot ends its probe run.
    Vacant(usize),
}

/// An open-addressing table from key to TAT with linear probing and
/// backward-shift deletion.
///
/// INVARIANT: `slots.len()` is in `MIN_SLOTS..=MAX_SLOTS`; at most
/// [`max_used`] slots are used, so every probe run ends at a free slot;
/// every used slot is reachable from its key's home slot through used
/// slots only (no holes, no tombstones); no key is stored twice and no
/// slot holds [`FREE`] as a real key.
#[derive(Debug)]
struct Table {
    slots: Box<[Slot]>,
    /// Used slots.
    used: usize,
    /// The TAT of key 0, which cannot live in `slots` (0 marks a free
    /// slot). Kept apart rather than merged with another key.
    zero: Option<u64>,
}

impl Table {
    /// An empty table of `n` slots (in `MIN_SLOTS..=MAX_SLOTS`).
    fn with_slots(n: usize) -> Self {
        Self {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            used: 0,
            zero: None,
        }
    }

    /// Keys held, key 0 included.
    fn len(&self) -> usize {
        self.used.saturating_add(usize::from(self.zero.is_some()))
    }

    /// A key's home slot: `key × SPREAD` scaled from `0..2⁶⁴` to
    /// `0..slots.len()` (a multiply, not a modulo, so any size works).
    fn home(&self, key: u64) -> usize {
        let n = u128::try_from(self.slots.len()).unwrap_or(0);
        let scaled = u128::from(key.wrapping_mul(SPREAD)).wrapping_mul(n) >> 64;
        // `scaled < slots.len()`, so it fits.
        usize::try_from(scaled).unwrap_or(0)
    }

    /// The slot after `i`, wrapping round.
    fn next(&self, i: usize) -> usize {
        let j = i.wrapping_add(1);
        if j >= self.slots.len() {
            0
        } else {
            j
        }
    }

    /// How many steps forward from slot `from` slot `to` is.
    fn distance(&self, from: usize, to: usize) -> usize {
        if to >= from {
            to.wrapping_sub(from)
        } else {
            to.wrapping_add(self.slots.len()).wrapping_sub(from)
        }
    }

    /// Where `key` (not [`FREE`]) is, or the free slot that ends its probe
    /// run. `None` only if no slot is free, which the load limit excludes.
    fn probe(&self, key: u64) -> Option<Probe> {
        let mut i = self.home(key);
        for _ in 0..self.slots.len() {
            let slot = self.slots.get(i)?;
            if slot.key == key {
                return Some(Probe::Found(i, slot.tat));
            }
            if slot.key == FREE {
                return Some(Probe::Vacant(i));
            }
            i = self.next(i);
        }
        None
    }

    /// Overwrites the TAT in used slot `i`.
    fn set_tat(&mut self, i: usize, tat: u64) {
        if let Some(slot) = self.slots.get_mut(i) {
            slot.tat = tat;
        }
    }

    /// Records a new `key` whose probe ended at `Probe::Vacant(i)`, growing
    /// the table by a quarter first if it is at its load limit. `false`
    /// (and nothing changed) if it cannot grow past `max_slots`.
    fn insert(&mut self, i: usize, key: u64, tat: u64, max_slots: usize) -> bool {
        let mut i = i;
        if self.used >= max_used(self.slots.len()) {
            let n = self.slots.len();
            let bigger = n.saturating_add(n / 4).min(max_slots);
            if self.used >= max_used(bigger) {
                return false;
            }
            let Some(bigger) = self.resized(bigger) else {
                return false;
            };
            *self = bigger;
            match self.probe(key) {
                Some(Probe::Vacant(j)) => i = j,
                _ => return false,
            }
        }
        match self.slots.get_mut(i) {
            Some(slot) if slot.key == FREE => {
                *slot = Slot { key, tat };
                self.used = self.used.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// Empties used slot `hole` and shifts the rest of its probe run back
    /// so no later key is cut off from its home slot (no tombstones).
    fn remove_at(&mut self, hole: usize) {
        let mut hole = hole;
        let mut j = hole;
        for _ in 0..self.slots.len() {
            j = self.next(j);
            let Some(&next) = self.slots.get(j) else {
                break;
            };
            if next.key == FREE {
                break;
            }
            // `next` may fill the hole iff the hole lies on its probe path,
            // i.e. its home is no nearer to it than the hole is.
            if self.distance(self.home(next.key), j) >= self.distance(hole, j) {
                if let Some(slot) = self.slots.get_mut(hole) {
                    *slot = next;
                }
                hole = j;
            }
        }
        if let Some(slot) = self.slots.get_mut(hole) {
            *slot = Slot::default();
        }
        self.used = self.used.saturating_sub(1);
    }

    /// Drops every entry with TAT ≤ `now_ns`; returns a lower bound on the
    /// TATs left (`u64::MAX` if none are).
    fn sweep(&mut self, now_ns: u64) -> u64 {
        let mut earliest = u64::MAX;
        match self.zero {
            Some(tat) if tat <= now_ns => self.zero = None,
            Some(tat) => earliest = tat,
            None => {}
        }
        // Scan once round the table from just after a free slot. A removal
        // only moves entries from slots not yet scanned into the slot being
        // scanned (scanned again) or into later ones, so every entry is
        // seen exactly once.
        let Some(start) = self.slots.iter().position(|s| s.key == FREE) else {
            // Unreachable (the load limit keeps a slot free); 0 is always
            // a valid lower bound.
            return 0;
        };
        let mut i = start;
        for _ in 0..self.slots.len() {
            i = self.next(i);
            while let Some(&slot) = self.slots.get(i) {
                if slot.key == FREE {
                    break;
                }
                if slot.tat > now_ns {
                    earliest = earliest.min(slot.tat);
                    break;
                }
                self.remove_at(i);
            }
        }
        earliest
    }

    /// The same entries in a table of `n` slots (`None` if they would
    /// pass its load limit; never the case for callers).
    fn resized(&self, n: usize) -> Option<Self> {
        if self.used > max_used(n) {
            return None;
        }
        let mut table = Self::with_slots(n);
        table.zero = self.zero;
        for slot in self.slots.iter().filter(|s| s.key != FREE) {
            let Some(Probe::Vacant(i)) = table.probe(slot.key) else {
                return None;
            };
            *table.slots.get_mut(i)? = *slot;
            table.used = table.used.saturating_add(1);
        }
        Some(table)
    }

    /// Gives memory back after a purge: a table left at most an eighth
    /// full shrinks to twice its keys, so it does not regrow at once.
    fn shrink(&mut self) {
        let n = self.used.saturating_mul(2).max(MIN_SLOTS);
        if self.used <= self.slots.len() / 8 && n < self.slots.len() {
            if let Some(smaller) = self.resized(n) {
                *self = smaller;
            }
        }
    }
}

/// One shard, on its own cache lines so neighbouring locks do not contend.
/// The lock and the table's header share a line; the slots are elsewhere.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    inner: Mutex<ShardInner>,
}

#[derive(Debug)]
struct ShardInner {
    table: Table,
    /// A lower bound on every stored TAT: no entry can be a full bucket
    /// before this instant, so sweeping earlier would find nothing. Every
    /// TAT written lowers it if needed, so it stays valid between sweeps.
    earliest_tat: u64,
}

impl ShardInner {
    /// Drops every full-bucket entry (TAT ≤ now) and recomputes the bound.
    fn sweep(&mut self, now_ns: u64) {
        self.earliest_tat = self.table.sweep(now_ns);
    }

    /// Makes sure one more key fits under `keys_per_shard`, sweeping if the
    /// shard is full and something may have expired. `Ok(true)` if it
    /// swept (slot positions changed).
    fn make_room(&mut self, now_ns: u64, keys_per_shard: usize) -> Result<bool, StoreError> {
        if self.table.len() < keys_per_shard {
            return Ok(false);
        }
        let swept = now_ns >= self.earliest_tat;
        if swept {
            self.sweep(now_ns);
        }
        if self.table.len() >= keys_per_shard {
            return Err(StoreError::Full);
        }
        Ok(swept)
    }

    fn note_tat(&mut self, tat: u64) {
        // GCRA only ever raises a TAT, but keep the bound valid for any
        // `f`.
        self.earliest_tat = self.earliest_tat.min(tat);
    }

    /// [`LimiterStore::update`] for key 0, which lives beside the table.
    fn update_zero<R, F>(
        &mut self,
        now_ns: u64,
        keys_per_shard: usize,
        f: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(Option<u64>) -> (R, Option<u64>),
    {
        let old = self.table.zero;
        let (result, new) = f(old);
        match new {
            None => self.table.zero = None,
            Some(tat) => {
                if old.is_none() {
                    self.make_room(now_ns, keys_per_shard)?;
                }
                self.table.zero = Some(tat);
                self.note_tat(tat);
            }
        }
        Ok(result)
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
/// mutex around a bounded open-addressing table from key to TAT (see the
/// module docs for its layout).
///
/// Memory is bounded by `shards × keys_per_shard` entries. Full-bucket
/// entries are evicted when a shard needs room (exact, see the module
/// docs); a shard full of live entries refuses new keys (fail closed).
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Shard]>,
    mask: u64,
    keys_per_shard: usize,
    /// The most slots a shard's table grows to: enough for
    /// `keys_per_shard` keys at the load limit.
    max_slots: usize,
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
                    table: Table::with_slots(MIN_SLOTS),
                    earliest_tat: u64::MAX,
                }),
            })
            .collect();
        let mask = u64::try_from(shards.len().saturating_sub(1)).unwrap_or(0);
        Self {
            shards,
            mask,
            keys_per_shard,
            max_slots: slots_for(keys_per_shard),
        }
    }

    /// The total number of keys currently held (locks each shard in turn;
    /// for tests and metrics, not the hot path).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.inner.lock().table.len()).sum()
    }

    /// Whether no key holds state.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every full-bucket entry (TAT ≤ `now_ns`) in every shard, and
    /// shrinks tables left at most an eighth full. Not needed for
    /// correctness; lets a periodic task return memory early.
    pub fn purge(&self, now_ns: u64) {
        for shard in self.shards.iter() {
            let mut inner = shard.inner.lock();
            inner.sweep(now_ns);
            inner.table.shrink();
        }
    }

    fn shard(&self, key: u64) -> Option<&Shard> {
        // Shard from bits 32..; the table's home slot comes from all 64
        // bits (multiplied), so keys within a shard still spread.
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
        // closed rather than panic if it ever is not (likewise below for
        // probes, which the load limit keeps from running out of slots).
        let shard = self.shard(key).ok_or(StoreError::Full)?;
        let mut guard = shard.inner.lock();
        let inner = &mut *guard;
        if key == FREE {
            return inner.update_zero(now_ns, self.keys_per_shard, f);
        }
        match inner.table.probe(key).ok_or(StoreError::Full)? {
            // Existing key: update in place.
            Probe::Found(i, old) => {
                let (result, new) = f(Some(old));
                match new {
                    Some(tat) => {
                        inner.table.set_tat(i, tat);
                        inner.note_tat(tat);
                    }
                    None => inner.table.remove_at(i),
                }
                Ok(result)
            }
            // New key: insert only if `f` wants state kept.
            Probe::Vacant(i) => {
                let (result, new) = f(None);
                let Some(tat) = new else {
                    return Ok(result);
                };
                let i = if inner.make_room(now_ns, self.keys_per_shard)? {
                    match inner.table.probe(key) {
                        Some(Probe::Vacant(j)) => j,
                        _ => return Err(StoreError::Full),
                    }
                } else {
                    i
                };
                if !inner.table.insert(i, key, tat, self.max_slots) {
                    return Err(StoreError::Full);
                }
                inner.note_tat(tat);
                Ok(result)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Checks every [`Table`] invariant and that it holds exactly `model`.
    fn assert_table_matches(table: &Table, model: &HashMap<u64, u64>) {
        let n = table.slots.len();
        assert!(n >= MIN_SLOTS);
        let used: Vec<(usize, Slot)> = table
            .slots
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, s)| s.key != FREE)
            .collect();
        assert_eq!(table.used, used.len());
        assert!(table.used <= max_used(n), "over the load limit");
        assert_eq!(table.len(), model.len());
        assert_eq!(table.zero, model.get(&0).copied());
        for &(at, slot) in &used {
            // No hole between a key's home slot and the key.
            let mut i = table.home(slot.key);
            while i != at {
                assert_ne!(table.slots[i].key, FREE, "key {} cut off", slot.key);
                i = table.next(i);
            }
            assert_eq!(model.get(&slot.key), Some(&slot.tat));
            assert_eq!(table.probe(slot.key), Some(Probe::Found(at, slot.tat)));
        }
        for (&key, &tat) in model {
            if key != FREE {
                assert!(matches!(table.probe(key), Some(Probe::Found(_, t)) if t == tat));
            }
        }
    }

    /// Sets `key` to `tat` (insert or update), as [`MemoryStore::update`]
    /// drives the table.
    fn table_set(table: &mut Table, key: u64, tat: u64, max_slots: usize) -> bool {
        if key == FREE {
            table.zero = Some(tat);
            return true;
        }
        match table.probe(key) {
            Some(Probe::Found(i, _)) => {
                table.set_tat(i, tat);
                true
            }
            Some(Probe::Vacant(i)) => table.insert(i, key, tat, max_slots),
            None => panic!("no free slot"),
        }
    }

    fn table_remove(table: &mut Table, key: u64) {
        if key == FREE {
            table.zero = None;
        } else if let Some(Probe::Found(i, _)) = table.probe(key) {
            table.remove_at(i);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u64, u64),
        Remove(u64),
        Sweep(u64),
        Shrink,
    }

    /// Small key spaces (so probe runs collide, merge and wrap round the
    /// end of a 16-slot table) in three shapes: small integers, integers
    /// in the high half only, and arbitrary keys.
    fn key() -> impl Strategy<Value = u64> {
        prop_oneof![0_u64..48, (0_u64..48).prop_map(|k| k << 32), any::<u64>(),]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (key(), 1_u64..100).prop_map(|(k, t)| Op::Set(k, t)),
            4 => key().prop_map(Op::Remove),
            1 => (0_u64..100).prop_map(Op::Sweep),
            1 => Just(Op::Shrink),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random inserts, updates, backward-shift deletes, sweeps and
        /// shrinks against a `HashMap`, checking the probe invariant after
        /// every step.
        #[test]
        fn table_matches_a_hash_map(
            max_slots in prop_oneof![Just(16_usize), Just(21), Just(1_000)],
            ops in proptest::collection::vec(op(), 1..400),
        ) {
            let mut table = Table::with_slots(MIN_SLOTS);
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Set(k, t) => {
                        let room = model.contains_key(&k)
                            || k == FREE
                            || model.len() - usize::from(model.contains_key(&FREE))
                                < max_used(max_slots);
                        prop_assert_eq!(table_set(&mut table, k, t, max_slots), room);
                        if room {
                            model.insert(k, t);
                        }
                    }
                    Op::Remove(k) => {
                        table_remove(&mut table, k);
                        model.remove(&k);
                    }
                    Op::Sweep(now) => {
                        let earliest = table.sweep(now);
                        model.retain(|_, t| *t > now);
                        prop_assert_eq!(earliest, model.values().copied().min().unwrap_or(u64::MAX));
                    }
                    Op::Shrink => table.shrink(),
                }
                prop_assert!(table.slots.len() <= max_slots);
                assert_table_matches(&table, &model);
            }
        }
    }

    /// What a [`MemoryStore`] must do, per the module docs, for one shard
    /// of `cap` keys.
    struct ModelStore {
        cap: usize,
        tats: HashMap<u64, u64>,
    }

    impl ModelStore {
        fn update(
            &mut self,
            key: u64,
            now: u64,
            new: Option<u64>,
        ) -> Result<Option<u64>, StoreError> {
            let old = self.tats.get(&key).copied();
            match (old, new) {
                (_, None) => {
                    self.tats.remove(&key);
                }
                (Some(_), Some(tat)) => {
                    self.tats.insert(key, tat);
                }
                (None, Some(tat)) => {
                    if self.tats.len() >= self.cap {
                        self.tats.retain(|_, t| *t > now);
                    }
                    if self.tats.len() >= self.cap {
                        return Err(StoreError::Full);
                    }
                    self.tats.insert(key, tat);
                }
            }
            Ok(old)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The store (one shard, so capacity is exact) against the
        /// documented semantics: exact state per key, full buckets
        /// forgotten only when room is needed, new keys refused when the
        /// shard is full of live entries.
        #[test]
        fn memory_store_matches_its_documented_model(
            cap in 1_usize..40,
            ops in proptest::collection::vec(
                (key(), 0_u64..60, prop::option::weighted(0.8, 1_u64..100), 0_u8..20),
                1..400,
            ),
        ) {
            let store = MemoryStore::new(1, cap).unwrap();
            let mut model = ModelStore { cap, tats: HashMap::new() };
            for (key, now, new, purge) in ops {
                if purge == 0 {
                    store.purge(now);
                    model.tats.retain(|_, t| *t > now);
                } else {
                    let got = store.update(key, now, |old| (old, new));
                    prop_assert_eq!(got, model.update(key, now, new));
                }
                prop_assert_eq!(store.len(), model.tats.len());
                let inner = store.shards[0].inner.lock();
                assert_table_matches(&inner.table, &model.tats);
                prop_assert!(model.tats.values().all(|t| *t >= inner.earliest_tat));
                prop_assert!(inner.table.slots.len() <= store.max_slots);
            }
        }
    }

    #[test]
    fn a_shard_lock_and_its_table_header_share_one_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        assert_eq!(std::mem::align_of::<Shard>(), 128);
        assert!(std::mem::size_of::<Mutex<ShardInner>>() <= 64);
    }

    #[test]
    fn growth_capped_below_the_next_key_refuses_it() {
        // A table may grow from 16 to 20 slots and then only to 21, which
        // holds no more keys than 20 (four fifths of 21 is 16).
        let mut table = Table::with_slots(MIN_SLOTS);
        for k in 1..=16 {
            assert!(table_set(&mut table, k, k, 21));
        }
        assert_eq!(table.slots.len(), 20);
        assert!(!table_set(&mut table, 17, 17, 21));
        assert_eq!(table.slots.len(), 20, "nothing changed");
        let model: HashMap<u64, u64> = (1..=16).map(|k| (k, k)).collect();
        assert_table_matches(&table, &model);
    }

    /// Keys whose home slot in a 16-slot table is `home`.
    fn keys_homed_at(home: usize, count: usize) -> Vec<u64> {
        let t = Table::with_slots(MIN_SLOTS);
        (1_u64..)
            .filter(|k| t.home(*k) == home)
            .take(count)
            .collect()
    }

    #[test]
    fn backward_shift_keeps_a_wrapping_run_reachable() {
        // Five keys homed at the last slot: the run wraps to slots 0..4.
        // Then two keys homed at slot 1, which land after the run.
        let wrap = keys_homed_at(MIN_SLOTS - 1, 5);
        let after = keys_homed_at(1, 2);
        let mut table = Table::with_slots(MIN_SLOTS);
        let mut model = HashMap::new();
        for (n, &k) in wrap.iter().chain(&after).enumerate() {
            let tat = 10 + n as u64;
            assert!(table_set(&mut table, k, tat, MIN_SLOTS));
            model.insert(k, tat);
        }
        assert_eq!(table.slots[MIN_SLOTS - 1].key, wrap[0]);
        assert_eq!(table.slots[3].key, wrap[4]);
        assert_eq!(table.slots[5].key, after[1]);
        assert_table_matches(&table, &model);
        // Removing the run's head shifts every later entry back one slot,
        // across the end of the table.
        table_remove(&mut table, wrap[0]);
        model.remove(&wrap[0]);
        assert_eq!(table.slots[MIN_SLOTS - 1].key, wrap[1]);
        assert_eq!(table.slots[2].key, wrap[4]);
        assert_eq!(table.slots[3].key, after[0]);
        assert_eq!(table.slots[4].key, after[1]);
        assert_eq!(table.slots[5].key, FREE);
        assert_table_matches(&table, &model);
        // Removing from the middle of the wrapped part.
        table_remove(&mut table, wrap[3]);
        model.remove(&wrap[3]);
        assert_table_matches(&table, &model);
        // One sweep drops TATs 11, 12 and 14 (wrap[1], wrap[2], wrap[4]),
        // leaving after[0] and after[1].
        assert_eq!(table.sweep(14), 15);
        model.retain(|_, t| *t > 14);
        assert_table_matches(&table, &model);
    }

    #[test]
    fn key_zero_is_its_own_key() {
        let store = MemoryStore::new(1, 2).unwrap();
        let set = |key: u64, tat: Option<u64>| store.update(key, 0, |old| (old, tat));
        assert_eq!(set(0, Some(5)), Ok(None));
        // Not merged with key 1 (nor any other key).
        assert_eq!(set(1, Some(7)), Ok(None));
        assert_eq!(set(0, Some(6)), Ok(Some(5)));
        assert_eq!(set(1, Some(8)), Ok(Some(7)));
        assert_eq!(store.len(), 2);
        // Key 0 counts against the capacity like any key.
        assert_eq!(set(2, Some(9)), Err(StoreError::Full));
        assert_eq!(store.update(2, 0, |old| (old, None)), Ok(None));
        // It is swept like any key once its bucket is full again.
        assert_eq!(store.update(2, 6, |old| (old, Some(9))), Ok(None));
        assert_eq!(set(0, None), Ok(None), "key 0 was forgotten at 6");
        assert_eq!(set(1, Some(8)), Ok(Some(8)));
        assert_eq!(store.len(), 2);
        // Dropped by `f`, and by purge.
        assert_eq!(set(0, Some(3)), Err(StoreError::Full));
        assert_eq!(set(2, None), Ok(Some(9)));
        assert_eq!(set(0, Some(3)), Ok(None));
        store.purge(3);
        assert_eq!(set(0, None), Ok(None));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn full_table_fails_closed_for_new_keys_only() {
        // 12 keys per shard: a 16-slot table, at its load limit.
        let store = MemoryStore::new(1, 12).unwrap();
        assert_eq!(store.max_slots, 16);
        for k in 1..=12_u64 {
            assert_eq!(store.update(k << 32, 0, |_| ((), Some(100 + k))), Ok(()));
        }
        assert_eq!(
            store.update(13 << 32, 0, |_| ((), Some(200))),
            Err(StoreError::Full)
        );
        assert_eq!(store.shards[0].inner.lock().table.slots.len(), 16);
        // Existing keys keep exact state; asking about a new key without
        // storing anything still works.
        assert_eq!(
            store.update(5 << 32, 0, |old| (old, Some(150))),
            Ok(Some(105))
        );
        assert_eq!(store.update(13 << 32, 0, |old| (old, None)), Ok(None));
        // Nothing has expired at 100: the sweep finds nothing.
        assert_eq!(
            store.update(13 << 32, 100, |_| ((), Some(200))),
            Err(StoreError::Full)
        );
        // At 103, keys 1..=3 are full buckets: swept, and 13 fits.
        assert_eq!(
            store.update(13 << 32, 103, |old| (old, Some(200))),
            Ok(None)
        );
        assert_eq!(store.len(), 10);
        // Dropping a key makes room at once.
        assert_eq!(store.update(4 << 32, 103, |old| (old, None)), Ok(Some(104)));
        assert_eq!(
            store.update(14 << 32, 103, |old| (old, Some(300))),
            Ok(None)
        );
        assert_eq!(store.len(), 10);
    }

    #[test]
    fn tables_grow_to_the_bound_and_shrink_on_purge() {
        assert_eq!(slots_for(1), MIN_SLOTS);
        assert_eq!(slots_for(12), 16);
        assert_eq!(slots_for(13), 17);
        assert_eq!(slots_for(16_384), 20_480);
        assert_eq!(slots_for(65_536), 81_920);
        assert_eq!(slots_for(usize::MAX), MAX_SLOTS);
        for keys in [1, 12, 13, 99, 100, 101, 16_384] {
            let n = slots_for(keys);
            assert!(max_used(n) >= keys && (n == MIN_SLOTS || max_used(n - 1) < keys));
        }
        let store = MemoryStore::new(1, 1_000).unwrap();
        assert_eq!(store.max_slots, 1_250);
        let mut x = 0x2545_F491_4F6C_DD1D_u64;
        let mut keys = Vec::new();
        for _ in 0..1_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            keys.push(x);
            assert_eq!(store.update(x, 0, |_| ((), Some(x % 1_000 + 1))), Ok(()));
        }
        assert_eq!(store.len(), 1_000);
        assert_eq!(store.shards[0].inner.lock().table.slots.len(), 1_250);
        assert_eq!(store.update(1, 0, |_| ((), Some(5))), Err(StoreError::Full));
        // Keep about 1 in 20.
        store.purge(950);
        let left = store.len();
        assert!((20..=80).contains(&left), "{left} left");
        assert!(store.shards[0].inner.lock().table.slots.len() <= 2 * left);
        for k in keys {
            let expected = Some(k % 1_000 + 1).filter(|t| *t > 950);
            assert_eq!(store.update(k, 950, |old| (old, old)), Ok(expected));
        }
        store.purge(u64::MAX);
        assert!(store.is_empty());
        assert_eq!(store.shards[0].inner.lock().table.slots.len(), MIN_SLOTS);
    }
}
