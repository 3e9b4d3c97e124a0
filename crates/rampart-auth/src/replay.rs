//! Replay protection: a single-use nonce cache covering the freshness
//! window, behind the [`NonceStore`] trait so a shared store (Redis) can
//! replace the in-memory one for a fleet.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::directory::BoxFuture;

/// Outcome of recording a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// First use: accepted and remembered until its expiry.
    Fresh,
    /// Seen before within its lifetime: a replay.
    Replayed,
    /// The cache is full of live entries: refuse (fail closed) rather than
    /// forget a nonce that could then be replayed.
    Full,
}

/// A set of (key id, nonce) pairs remembered until they expire.
pub trait NonceStore: Send + Sync {
    /// Records `nonce` of `key_id`, remembered until `expires_at_ms`;
    /// `now_ms` drives expiry. Atomic: of concurrent calls with the same
    /// pair, exactly one gets [`NonceCheck::Fresh`].
    fn check_and_insert<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> BoxFuture<'a, NonceCheck>;
}

const SHARDS: usize = 64;

struct Shard {
    map: HashMap<(Box<str>, Box<str>), i64>,
    /// Earliest expiry in the map, to skip sweeps that would find nothing.
    next_expiry: i64,
}

/// The in-memory nonce store: 64 mutex-protected shards, a global bound on
/// live entries, expired entries swept lazily per shard.
pub struct MemoryNonceStore {
    shards: Vec<Mutex<Shard>>,
    live: AtomicUsize,
    max_entries: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for MemoryNonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNonceStore")
            .field("live", &self.live.load(Ordering::Relaxed))
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl MemoryNonceStore {
    /// A store holding at most `max_entries` live nonces.
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        next_expiry: i64::MAX,
                    })
                })
                .collect(),
            live: AtomicUsize::new(0),
            max_entries: max_entries.max(1),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Live entries (for metrics and tests).
    #[must_use]
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether no entry is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(&self, key_id: &str, nonce: &str) -> usize {
        let mut h = self.hasher.build_hasher();
        key_id.hash(&mut h);
        nonce.hash(&mut h);
        usize::try_from(h.finish() % SHARDS as u64).unwrap_or(0)
    }

    fn sweep(&self, shard: &mut Shard, now_ms: i64) {
        if shard.next_expiry > now_ms {
            return;
        }
        let before = shard.map.len();
        shard.map.retain(|_, exp| *exp > now_ms);
        shard.next_expiry = shard.map.values().copied().min().unwrap_or(i64::MAX);
        self.live
            .fetch_sub(before - shard.map.len(), Ordering::Relaxed);
    }

    /// The synchronous check used by the trait implementation.
    pub fn check(&self, key_id: &str, nonce: &str, now_ms: i64, expires_at_ms: i64) -> NonceCheck {
        let idx = self.shard_of(key_id, nonce);
        let Some(lock) = self.shards.get(idx) else {
            return NonceCheck::Full;
        };
        let mut shard = lock.lock();
        self.sweep(&mut shard, now_ms);
        let k = (Box::<str>::from(key_id), Box::<str>::from(nonce));
        if let Some(exp) = shard.map.get(&k) {
            if *exp > now_ms {
                return NonceCheck::Replayed;
            }
        }
        if self.live.load(Ordering::Relaxed) >= self.max_entries {
            // Try to free space everywhere before refusing.
            drop(shard);
            for s in &self.shards {
                let mut s = s.lock();
                self.sweep(&mut s, now_ms);
            }
            if self.live.load(Ordering::Relaxed) >= self.max_entries {
                return NonceCheck::Full;
            }
            shard = lock.lock();
        }
        if shard.map.insert(k, expires_at_ms).is_none() {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        shard.next_expiry = shard.next_expiry.min(expires_at_ms);
        NonceCheck::Fresh
    }
}

impl NonceStore for MemoryNonceStore {
    fn check_and_insert<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> BoxFuture<'a, NonceCheck> {
        let r = self.check(key_id, nonce, now_ms, expires_at_ms);
        Box::pin(std::future::ready(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_expiry_and_bound() {
        let s = MemoryNonceStore::new(3);
        assert_eq!(s.check("k", "n1", 0, 100), NonceCheck::Fresh);
        assert_eq!(s.check("k", "n1", 50, 150), NonceCheck::Replayed);
        assert_eq!(s.check("k2", "n1", 50, 150), NonceCheck::Fresh);
        assert_eq!(s.check("k", "n2", 50, 150), NonceCheck::Fresh);
        assert_eq!(s.check("k", "n3", 60, 160), NonceCheck::Full);
        // After n1 of k expires, there is room again, and n1 is fresh again
        // (the freshness window rejects such an old request anyway).
        assert_eq!(s.check("k", "n3", 100, 200), NonceCheck::Fresh);
        assert_eq!(s.len(), 3);
        assert_eq!(s.check("k", "n1", 151, 300), NonceCheck::Fresh);
    }

    #[test]
    fn concurrent_identical_nonces_exactly_one_wins() {
        let s = std::sync::Arc::new(MemoryNonceStore::new(1_000));
        let wins = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| {
                    for i in 0..200 {
                        if s.check("k", &format!("n{i}"), 0, 10) == NonceCheck::Fresh {
                            wins.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(wins.load(Ordering::Relaxed), 200);
    }
}
