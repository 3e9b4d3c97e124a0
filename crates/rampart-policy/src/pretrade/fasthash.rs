//! A fast, unkeyed hasher for maps whose keys the client does not choose.
//!
//! The engine's hot path hashes account ids, key ids, symbols and order ids
//! some twenty times per order; SipHash made that the largest cost. These
//! keys are server-side identities (accounts, keys, upstream order ids) or
//! lookups into tables the client cannot insert into (instruments, fixed
//! and fetched prices), so hash flooding is not possible through them.
//! Client-chosen keys that get inserted (client order ids) stay on the
//! keyed `RandomState`.

use std::hash::{BuildHasher, Hasher};

/// Builds [`FastHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FastState;

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

/// Multiply-rotate over 8-byte words (as rustc's FxHasher) with the
/// murmur3 finalizer, so every output bit depends on every input bit
/// (hashbrown uses the top bits as tags, the shard index the low bits).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FastHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        // The length first, so zero padding of the last word cannot collide.
        self.add(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(
                <[u8; 8]>::try_from(chunk).unwrap_or_default(),
            ));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word.iter_mut().zip(rest).for_each(|(w, b)| *w = *b);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Hands a `u64` key through unchanged: for keys that are already keyed
/// hashes (client order id fingerprints), uniform and unpredictable.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PassHasher(u64);

impl Hasher for PassHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for u64 keys; folds anything else in.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(K);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn distinct_short_strings_hash_apart() {
        let s = FastState;
        let inputs = [
            "",
            "a",
            "a\0",
            "\0a",
            "ab",
            "acct-00001",
            "acct-00002",
            "acct-000010",
        ];
        let hashes: HashSet<u64> = inputs.iter().map(|i| s.hash_one(i)).collect();
        assert_eq!(hashes.len(), inputs.len());
        // Sequential ids spread over 64 shards.
        let shards: HashSet<u64> = (0..1_000)
            .map(|i| s.hash_one(format!("acct-{i:05}")) % 64)
            .collect();
        assert_eq!(shards.len(), 64);
    }
}
