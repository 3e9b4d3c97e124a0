//! A capacity-bounded map whose entries know when they stop mattering.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Keys are keyed SipHash outputs ([`crate::KeyHasher`]): uniform and
/// unpredictable to clients, so the map uses them as their own hash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type IdentityState = BuildHasherDefault<IdentityHasher>;

/// State whose relevance ends at known instants.
pub(crate) trait Expiring {
    /// After this instant the entry holds nothing that changes a decision
    /// (no lock, no failures, no throttle): forgetting it is exact, except
    /// for history ([`Self::keep_until`]).
    fn live_until(&self) -> u64;
    /// After this instant the entry holds nothing worth keeping at all,
    /// history (lock strikes) included. At least [`Self::live_until`].
    fn keep_until(&self) -> u64 {
        self.live_until()
    }
}

impl Expiring for u64 {
    fn live_until(&self) -> u64 {
        *self
    }
}

/// What a full table does with a new key when no entry has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Refuse the new key: live entries are never forgotten.
    Refuse,
    /// Forget an arbitrary entry (for state whose loss is always safe).
    EvictAny,
}

/// A `HashMap<u64, V>` holding at most `cap` entries.
///
/// When a new key meets a full table, entries past their
/// [`Expiring::keep_until`] are swept, then (if still full) entries past
/// their [`Expiring::live_until`], which loses only history. If that frees
/// nothing, [`WhenFull`] decides. Sweeps run only when the lower bound on
/// every entry's `live_until` says one may find something, so a table full
/// of live state costs O(1) per refused insert, not a scan.
#[derive(Debug)]
pub(crate) struct Table<V> {
    map: HashMap<u64, V, IdentityState>,
    cap: usize,
    when_full: WhenFull,
    /// INVARIANT: at most every entry's `live_until`, or 0 (unknown).
    earliest_live: u64,
}

impl<V: Expiring + Default> Table<V> {
    pub fn new(cap: usize, when_full: WhenFull) -> Self {
        Self {
            map: HashMap::with_hasher(IdentityState::default()),
            cap: cap.max(1),
            when_full,
            earliest_live: u64::MAX,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, key: u64) -> Option<&V> {
        self.map.get(&key)
    }

    /// Applies `f` to the entry under `key`, if there is one.
    pub fn update<R>(&mut self, key: u64, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let v = self.map.get_mut(&key)?;
        let r = f(v);
        self.earliest_live = self.earliest_live.min(v.live_until());
        Some(r)
    }

    /// Applies `f` to the entry under `key`, first inserting a default one
    /// if needed. `None` if the key is new and the table is full of live
    /// state (with [`WhenFull::Refuse`]).
    pub fn upsert<R>(&mut self, key: u64, now: u64, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        if !self.map.contains_key(&key) && self.map.len() >= self.cap && !self.make_room(now) {
            return None;
        }
        let v = self.map.entry(key).or_default();
        let r = f(v);
        self.earliest_live = self.earliest_live.min(v.live_until());
        Some(r)
    }

    fn make_room(&mut self, now: u64) -> bool {
        if now >= self.earliest_live {
            self.sweep(now);
        }
        if self.map.len() < self.cap {
            return true;
        }
        match self.when_full {
            WhenFull::Refuse => false,
            WhenFull::EvictAny => {
                if let Some(k) = self.map.keys().next().copied() {
                    self.map.remove(&k);
                }
                self.map.len() < self.cap
            }
        }
    }

    /// Drops expired entries: first those past `keep_until`, then, if the
    /// table is still full, those past `live_until`.
    pub fn sweep(&mut self, now: u64) {
        self.map.retain(|_, v| v.keep_until() > now);
        if self.map.len() >= self.cap {
            self.map.retain(|_, v| v.live_until() > now);
        }
        self.earliest_live = self
            .map
            .values()
            .map(Expiring::live_until)
            .min()
            .unwrap_or(u64::MAX);
    }

    /// Visits every entry mutably; entries for which `f` returns `false`
    /// are removed. Entries may lose state here (unlocks), so the sweep
    /// bound is reset.
    pub fn retain_mut(&mut self, mut f: impl FnMut(&mut V) -> bool) {
        self.map.retain(|_, v| f(v));
        self.earliest_live = 0;
    }

    /// Removes the entry under `key`.
    pub fn remove(&mut self, key: u64) -> Option<V> {
        self.map.remove(&key)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_when_full_of_live_entries_and_sweeps_expired() {
        let mut t: Table<u64> = Table::new(2, WhenFull::Refuse);
        assert!(t.upsert(1, 0, |v| *v = 100).is_some());
        assert!(t.upsert(2, 0, |v| *v = 200).is_some());
        assert!(t.upsert(3, 50, |v| *v = 300).is_none());
        // Existing keys still update.
        assert!(t.upsert(1, 50, |v| *v = 150).is_some());
        // At 150 key 1 has expired and makes room.
        assert!(t.upsert(3, 150, |v| *v = 300).is_some());
        assert!(t.get(1).is_none());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn evict_any_always_makes_room() {
        let mut t: Table<u64> = Table::new(2, WhenFull::EvictAny);
        for k in 0..10 {
            assert!(t.upsert(k, 0, |v| *v = 1_000).is_some());
        }
        assert_eq!(t.len(), 2);
        assert!(t.get(9).is_some());
    }
}
