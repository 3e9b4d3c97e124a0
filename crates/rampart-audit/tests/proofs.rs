#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Inclusion and consistency proofs: built from a real log for many
//! sizes, JSON round trips, checked by the crate's checkers and by the
//! RFC 9162 verifiers directly, and rejected when tampered with.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rampart_audit::log::{AuditLog, LogConfig};
use rampart_audit::note::{decode_hash, Ed25519Signer};
use rampart_audit::proof::{
    check_consistency, check_inclusion, consistency, inclusion, ConsistencyProof, InclusionProof,
    ProofError, Prover,
};
use rampart_audit::tree::TREE_FILE;
use rampart_audit::{leaf_hash, verify_consistency, verify_inclusion, Hash, MerkleTree};

const ORIGIN: &str = "rampart.test/proofs";

fn signer() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[3u8; 32]).unwrap())
}

fn entry(i: u64) -> Vec<u8> {
    format!("{{\"i\":{i}}}").into_bytes()
}

fn hashes(v: &[String]) -> Vec<Hash> {
    v.iter().map(|h| decode_hash(h).unwrap()).collect()
}

/// A log of `n` entries closed with a final checkpoint.
fn log_of(n: u64, segment_max_bytes: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LogConfig::new(dir.path(), ORIGIN);
    cfg.segment_max_bytes = segment_max_bytes;
    cfg.checkpoint_interval = Duration::from_secs(3600);
    let (log, _) = AuditLog::open(cfg, signer()).unwrap();
    for i in 0..n {
        log.append(entry(i)).unwrap();
    }
    log.close().unwrap();
    dir
}

#[test]
fn inclusion_and_consistency_for_many_sizes() {
    let vk = signer().verifier_key();
    for n in [1u64, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 64, 100, 129] {
        let dir = log_of(n, 1 << 20);
        let mut tree = MerkleTree::new();
        let mut roots = vec![tree.root()];
        for i in 0..n {
            tree.push(leaf_hash(&entry(i))).unwrap();
            roots.push(tree.root());
        }
        let prover = Prover::open(dir.path()).unwrap();
        assert_eq!(prover.checkpoint().checkpoint.size, n);
        for i in 0..n {
            let p = prover.inclusion(i).unwrap();
            let json = serde_json::to_string_pretty(&p).unwrap();
            let back: InclusionProof = serde_json::from_str(&json).unwrap();
            assert_eq!(back, p);
            let cp = check_inclusion(&back, &vk).unwrap();
            assert_eq!((cp.size, cp.root), (n, tree.root()));
            // Any RFC 9162 verifier accepts it.
            verify_inclusion(
                &leaf_hash(&B64.decode(&p.entry).unwrap()),
                p.index,
                p.tree_size,
                &hashes(&p.proof),
                &decode_hash(&p.root_hash).unwrap(),
            )
            .unwrap();
        }
        for old in 1..=n {
            let p = prover.consistency(old).unwrap();
            let back: ConsistencyProof =
                serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            assert_eq!(back, p);
            check_consistency(&back, &vk).unwrap();
            assert_eq!(decode_hash(&p.old_root).unwrap(), roots[old as usize]);
            verify_consistency(
                old,
                n,
                &roots[old as usize],
                &tree.root(),
                &hashes(&p.proof),
            )
            .unwrap();
        }
        assert!(matches!(
            prover.inclusion(n),
            Err(ProofError::NotCovered { .. })
        ));
        assert!(matches!(
            prover.consistency(0),
            Err(ProofError::NotCovered { .. })
        ));
        assert!(matches!(
            prover.consistency(n + 1),
            Err(ProofError::NotCovered { .. })
        ));
    }
}

#[test]
fn proofs_survive_a_missing_or_damaged_tree_file_and_rolled_segments() {
    let vk = signer().verifier_key();
    let dir = log_of(300, 4096);
    let good = inclusion(dir.path(), 123).unwrap();
    // Damaged tree.hashes: the proof is checked against the signed root
    // and rebuilt from the entries.
    let path = dir.path().join(TREE_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().take(2000) {
        *b ^= 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(inclusion(dir.path(), 123).unwrap(), good);
    check_consistency(&consistency(dir.path(), 77).unwrap(), &vk).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(inclusion(dir.path(), 123).unwrap(), good);
    check_inclusion(&good, &vk).unwrap();
}

#[test]
fn tampered_proofs_are_rejected() {
    let vk = signer().verifier_key();
    let dir = log_of(50, 1 << 20);
    let p = inclusion(dir.path(), 20).unwrap();
    check_inclusion(&p, &vk).unwrap();
    let other = Ed25519Signer::from_seed(ORIGIN, &[4u8; 32])
        .unwrap()
        .verifier_key();
    assert!(check_inclusion(&p, &other).is_err());
    let mut cases: Vec<InclusionProof> = Vec::new();
    let mut t = p.clone();
    t.index = 21;
    cases.push(t);
    let mut t = p.clone();
    t.tree_size = 49;
    cases.push(t);
    let mut t = p.clone();
    t.entry = B64.encode(entry(21));
    cases.push(t);
    let mut t = p.clone();
    t.entry = B64.encode(entry(21));
    t.leaf_hash = rampart_audit::note::encode_hash(&leaf_hash(&entry(21)));
    cases.push(t);
    let mut t = p.clone();
    t.proof.pop();
    cases.push(t);
    let mut t = p.clone();
    t.proof.swap(0, 1);
    cases.push(t);
    let mut t = p.clone();
    t.origin = "other".to_owned();
    cases.push(t);
    let mut t = p.clone();
    t.root_hash = t.leaf_hash.clone();
    cases.push(t);
    let mut t = p.clone();
    t.checkpoint = t.checkpoint.replace("\n50\n", "\n51\n");
    cases.push(t);
    let mut t = p.clone();
    t.proof.push(t.proof[0].clone());
    cases.push(t);
    for (i, c) in cases.iter().enumerate() {
        assert!(check_inclusion(c, &vk).is_err(), "case {i}");
    }
    let c = consistency(dir.path(), 10).unwrap();
    check_consistency(&c, &vk).unwrap();
    let mut t = c.clone();
    t.old_size = 11;
    assert!(check_consistency(&t, &vk).is_err());
    let mut t = c.clone();
    t.old_root = t.new_root.clone();
    assert!(check_consistency(&t, &vk).is_err());
    let mut t = c;
    t.proof.reverse();
    assert!(check_consistency(&t, &vk).is_err());
    // Unknown fields are refused.
    let mut v = serde_json::to_value(&p).unwrap();
    v["extra"] = 1.into();
    assert!(serde_json::from_value::<InclusionProof>(v).is_err());
}
