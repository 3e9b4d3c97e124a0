//! Export bundles and proof documents from the input, through
//! `verify::verify_bundle` and `proof::check_inclusion` /
//! `check_consistency` against a fixed key. None may panic. The low two
//! bits of the first byte pick the mode:
//!
//! 0. the bytes are a bundle file, verified with the trusted key, with the
//!    keys of its own header, and against a trusted earlier checkpoint;
//! 1. the bytes are JSON for an `InclusionProof` and a `ConsistencyProof`,
//!    checked as they are and again with their checkpoints re-signed by
//!    the trusted key over the document's own size and root, so the
//!    RFC 9162 verification itself is reached: its verdict must equal
//!    that of an independent recursive implementation of the proof
//!    definitions (RFC 9162 §2.1.3.1 and §2.1.4.1);
//! 2. the input describes an honest bundle (a prefix of leaves before the
//!    first index, entries as JSON or base64, checkpoints signed by the
//!    key, maybe a consistency extension to a later checkpoint), written
//!    as the exporter would and, if bit 6 is set, damaged line by line:
//!    undamaged it must verify with the expected report; damaged, a report
//!    under the trusted key must never vouch for a wrong root;
//! 3. the input describes honest proofs over such a log, then edits their
//!    fields: undamaged they must check, and any edited proof that still
//!    checks must be for the honest entry or root.
//!
//! Inputs above 64 KiB are skipped.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use rampart_audit::bundle::{BundleCheckpoint, BundleHeader, BUNDLE_FORMAT};
use rampart_audit::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, verify_consistency, verify_inclusion,
    Hash, MerkleTree,
};
use rampart_audit::note::{
    decode_hash, encode_hash, parse_checkpoint_unverified, sign_checkpoint, Checkpoint,
    Ed25519Signer, VerifierKey,
};
use rampart_audit::proof::{
    check_consistency, check_consistency_any, check_inclusion, check_inclusion_any,
    ConsistencyProof, InclusionProof,
};
use rampart_audit::verify::{verify_bundle, VerifyOptions};

const MAX_INPUT: usize = 64 * 1024;
const ORIGIN: &str = "fuzz.example/log";

fn signer() -> &'static Ed25519Signer {
    static S: OnceLock<Ed25519Signer> = OnceLock::new();
    S.get_or_init(|| Ed25519Signer::from_seed(ORIGIN, &[0x42; 32]).expect("fixed signer"))
}

/// A signer the verifier does not trust (an attacker's).
fn foreign_signer() -> &'static Ed25519Signer {
    static S: OnceLock<Ed25519Signer> = OnceLock::new();
    S.get_or_init(|| Ed25519Signer::from_seed(ORIGIN, &[0x66; 32]).expect("fixed signer"))
}

fn key() -> &'static VerifierKey {
    static K: OnceLock<VerifierKey> = OnceLock::new();
    K.get_or_init(|| signer().verifier_key())
}

/// Reads the input front to back; past its end every read is zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.u8()))
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

fn signed(size: u64, root: Hash, signer: &Ed25519Signer) -> String {
    let cp = Checkpoint {
        origin: ORIGIN.to_owned(),
        size,
        root,
    };
    sign_checkpoint(&cp, signer).expect("signing a checkpoint")
}

fn options(use_key: bool, from: Option<String>) -> VerifyOptions {
    VerifyOptions {
        public_key: use_key.then(|| key().clone()),
        from_checkpoint: from,
        progress: Some(Box::new(|done, total| {
            let _ = (done, total);
        })),
    }
}

// ---------------------------------------------------------------------
// Reference proof verification, written from the recursive definitions
// of PATH and SUBPROOF (RFC 9162 §2.1.3.1, §2.1.4.1) rather than the
// iterative verifiers of §2.1.3.2 and §2.1.4.2 the crate implements.

/// The largest power of two smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root of the tree of `n` leaves whose leaf `m` is `leaf`, given
/// `PATH(m, D[n])` (sibling of the leaf first), if the path has exactly
/// the right length.
fn path_root(leaf: &Hash, m: u64, n: u64, path: &[Hash]) -> Option<Hash> {
    if n == 1 {
        return path.is_empty().then_some(*leaf);
    }
    let (top, rest) = path.split_last()?;
    let k = split(n);
    if m < k {
        Some(node_hash(&path_root(leaf, m, k, rest)?, top))
    } else {
        Some(node_hash(top, &path_root(leaf, m - k, n - k, rest)?))
    }
}

fn reference_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    index < size && path_root(leaf, index, size, path).as_ref() == Some(root)
}

/// The (old, new) roots that `SUBPROOF(m, D[n], b)` proves, given the
/// old root for the case where the old tree is a whole left subtree.
fn subproof_roots(m: u64, n: u64, b: bool, path: &[Hash], old: &Hash) -> Option<(Hash, Hash)> {
    if m == n {
        return match (b, path) {
            (true, []) => Some((*old, *old)),
            (false, [h]) => Some((*h, *h)),
            _ => None,
        };
    }
    let (top, rest) = path.split_last()?;
    let k = split(n);
    if m <= k {
        let (o, nw) = subproof_roots(m, k, b, rest, old)?;
        Some((o, node_hash(&nw, top)))
    } else {
        let (o, nw) = subproof_roots(m - k, n - k, false, rest, old)?;
        Some((node_hash(top, &o), node_hash(top, &nw)))
    }
}

fn reference_consistency(m: u64, n: u64, old: &Hash, new: &Hash, path: &[Hash]) -> bool {
    0 < m && m <= n && subproof_roots(m, n, true, path, old) == Some((*old, *new))
}

fn decode_all(hashes: &[String]) -> Option<Vec<Hash>> {
    hashes.iter().map(|h| decode_hash(h)).collect()
}

/// Both verifiers on the same inclusion claim must agree.
fn differential_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) {
    let ours = verify_inclusion(leaf, index, size, path, root);
    let reference = reference_inclusion(leaf, index, size, path, root);
    assert_eq!(
        ours.is_ok(),
        reference,
        "verify_inclusion(index {index}, size {size}, {} hashes) = {ours:?}, reference {reference}",
        path.len()
    );
}

/// Both verifiers on the same consistency claim must agree.
fn differential_consistency(m: u64, n: u64, old: &Hash, new: &Hash, path: &[Hash]) {
    let ours = verify_consistency(m, n, old, new, path);
    let reference = reference_consistency(m, n, old, new, path);
    assert_eq!(
        ours.is_ok(),
        reference,
        "verify_consistency({m}, {n}, {} hashes) = {ours:?}, reference {reference}",
        path.len()
    );
}

// ---------------------------------------------------------------------
// Mode 0: raw bundle bytes.

fn raw_bundle(dir: &Path, mut input: Input<'_>) {
    let path = dir.join("bundle.jsonl");
    let size = input.u64();
    let bytes = input.0;
    std::fs::write(&path, bytes).expect("writing the bundle");
    let _ = verify_bundle(&path, &options(true, None));
    let _ = verify_bundle(&path, &options(false, None));
    let note = signed(size, leaf_hash(bytes), signer());
    let _ = verify_bundle(&path, &options(true, Some(note.clone())));
    let _ = verify_bundle(&path, &options(false, Some(note)));
    let _ = verify_bundle(&dir.join("missing.jsonl"), &options(true, None));
}

// ---------------------------------------------------------------------
// Mode 1: raw proof documents.

/// The note of a re-signed checkpoint over `origin`, `size` and the base64
/// `root`, if they make a valid checkpoint.
fn resign(origin: &str, size: u64, root: &str) -> Option<String> {
    let cp = Checkpoint {
        origin: origin.to_owned(),
        size,
        root: decode_hash(root)?,
    };
    sign_checkpoint(&cp, signer()).ok()
}

fn raw_proofs(bytes: &[u8]) {
    let others = [foreign_signer().verifier_key(), key().clone()];
    if let Ok(mut p) = serde_json::from_slice::<InclusionProof>(bytes) {
        let _ = check_inclusion(&p, key());
        let _ = check_inclusion_any(&p, &others);
        let _ = parse_checkpoint_unverified(&p.checkpoint);
        let json = serde_json::to_string(&p).expect("serialising a proof");
        assert_eq!(
            serde_json::from_str::<InclusionProof>(&json).as_ref().ok(),
            Some(&p)
        );
        if let (Some(leaf), Some(root), Some(path)) = (
            decode_hash(&p.leaf_hash),
            decode_hash(&p.root_hash),
            decode_all(&p.proof),
        ) {
            differential_inclusion(&leaf, p.index, p.tree_size, &path, &root);
        }
        if let Some(note) = resign(&p.origin, p.tree_size, &p.root_hash) {
            p.checkpoint = note;
            let ours = check_inclusion(&p, key());
            // The document is then self-consistent but for the path and
            // the entry: the verdict is the path's.
            let entry = B64.decode(&p.entry).ok();
            let leaf = decode_hash(&p.leaf_hash);
            let expected = match (entry, leaf, decode_all(&p.proof)) {
                (Some(e), Some(l), Some(path)) if p.proof.len() <= 65 => {
                    leaf_hash(&e) == l
                        && decode_hash(&p.root_hash).is_some_and(|root| {
                            reference_inclusion(&l, p.index, p.tree_size, &path, &root)
                        })
                }
                _ => false,
            };
            assert_eq!(ours.is_ok(), expected, "check_inclusion({p:?}) = {ours:?}");
        }
    }
    if let Ok(mut p) = serde_json::from_slice::<ConsistencyProof>(bytes) {
        let _ = check_consistency(&p, key());
        let _ = check_consistency_any(&p, &others);
        let json = serde_json::to_string(&p).expect("serialising a proof");
        assert_eq!(
            serde_json::from_str::<ConsistencyProof>(&json)
                .as_ref()
                .ok(),
            Some(&p)
        );
        if let (Some(old), Some(new), Some(path)) = (
            decode_hash(&p.old_root),
            decode_hash(&p.new_root),
            decode_all(&p.proof),
        ) {
            differential_consistency(p.old_size, p.new_size, &old, &new, &path);
        }
        if let Some(note) = resign(&p.origin, p.new_size, &p.new_root) {
            p.checkpoint = note;
            if p.old_checkpoint.is_some() {
                p.old_checkpoint = resign(&p.origin, p.old_size, &p.old_root);
            }
            let ours = check_consistency(&p, key());
            let expected = match (
                decode_hash(&p.old_root),
                decode_hash(&p.new_root),
                decode_all(&p.proof),
            ) {
                (Some(old), Some(new), Some(path)) if p.proof.len() <= 65 => {
                    reference_consistency(p.old_size, p.new_size, &old, &new, &path)
                }
                _ => false,
            };
            assert_eq!(
                ours.is_ok(),
                expected,
                "check_consistency({p:?}) = {ours:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------
// The honest log of modes 2 and 3.

struct Log {
    /// Index of the first exported entry; leaves before it are the prefix.
    first: u64,
    /// One past the last exported entry.
    end: u64,
    /// Every leaf, `0..end + later`.
    leaves: Vec<Hash>,
    /// The entries `first..end`.
    entries: Vec<Vec<u8>>,
}

impl Log {
    fn build(input: &mut Input<'_>) -> Self {
        let first = u64::from(input.u8() % 20);
        let n = usize::from(input.u8() % 40);
        let later = u64::from(input.u8() % 8);
        let mut leaves: Vec<Hash> = (0..first).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = input.u8();
            let len = usize::from(kind >> 3) % 24;
            let raw = input.bytes(len);
            let entry = match kind % 4 {
                0 | 1 => raw.to_vec(),
                2 => serde_json::to_vec(&String::from_utf8_lossy(raw)).expect("string"),
                _ => {
                    serde_json::to_vec(&serde_json::json!({ "k": raw, "v": kind })).expect("object")
                }
            };
            leaves.push(leaf_hash(&entry));
            entries.push(entry);
        }
        let end = first + n as u64;
        leaves.extend((0..later).map(|i| leaf_hash(&[0xee, i as u8])));
        Self {
            first,
            end,
            leaves,
            entries,
        }
    }

    /// The entry bytes of leaf `index` (`index < self.size()`).
    fn entry(&self, index: u64) -> Vec<u8> {
        if index < self.first {
            index.to_be_bytes().to_vec()
        } else if index < self.end {
            self.entries[(index - self.first) as usize].clone()
        } else {
            vec![0xee, (index - self.end) as u8]
        }
    }

    fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    fn root(&self, size: u64) -> Option<Hash> {
        let leaves = self.leaves.get(..usize::try_from(size).ok()?)?;
        Some(MerkleTree::from_leaves(leaves).root())
    }

    fn frontier(&self, size: u64) -> Vec<String> {
        let leaves = self.leaves.get(..size as usize).unwrap_or_default();
        MerkleTree::from_leaves(leaves)
            .subtree_roots()
            .iter()
            .map(encode_hash)
            .collect()
    }

    fn header(&self, first: u64, end: u64, other_keys: Vec<String>) -> Vec<u8> {
        let header = BundleHeader {
            format: BUNDLE_FORMAT.to_owned(),
            origin: ORIGIN.to_owned(),
            verifier_key: key().to_string(),
            other_keys,
            first_index: first,
            end_index: end,
            frontier: self.frontier(first),
        };
        serde_json::to_vec(&header).expect("header")
    }
}

/// Whether the exporter would write `entry` verbatim.
fn embeddable(entry: &[u8]) -> bool {
    if entry == b"null" || entry.contains(&b'\n') || entry.contains(&b'\r') {
        return false;
    }
    let Ok(text) = std::str::from_utf8(entry) else {
        return false;
    };
    serde_json::from_str::<&serde_json::value::RawValue>(text)
        .is_ok_and(|raw| raw.get().len() == text.len())
}

fn entry_line(index: u64, entry: &[u8], verbatim: bool) -> Vec<u8> {
    if verbatim && embeddable(entry) {
        let mut line = format!("{{\"index\":{index},\"entry\":").into_bytes();
        line.extend_from_slice(entry);
        line.push(b'}');
        line
    } else {
        format!(
            "{{\"index\":{index},\"entry_b64\":\"{}\"}}",
            B64.encode(entry)
        )
        .into_bytes()
    }
}

fn checkpoint_line(note: String, time_us: i64, ext: Option<(u64, Vec<String>)>) -> Vec<u8> {
    let (consistency_from, proof) = match ext {
        Some((from, proof)) => (Some(from), Some(proof)),
        None => (None, None),
    };
    let line = BundleCheckpoint {
        checkpoint: note,
        time_us,
        consistency_from,
        proof,
    };
    serde_json::to_vec(&line).expect("checkpoint line")
}

// ---------------------------------------------------------------------
// Mode 2: built bundles.

fn built_bundle(dir: &Path, flags: u8, mut input: Input<'_>) {
    let log = Log::build(&mut input);
    let (first, end) = (log.first, log.end);
    let n = end - first;
    let other_keys = if flags & 4 == 4 {
        vec![foreign_signer().verifier_key().to_string()]
    } else {
        Vec::new()
    };
    let mut lines = vec![log.header(first, end, other_keys)];
    let verbatim = input.u8();
    for (k, entry) in log.entries.iter().enumerate() {
        lines.push(entry_line(
            first + k as u64,
            entry,
            verbatim & (1 << (k % 8)) != 0,
        ));
    }
    let mut cps: Vec<u64> = (0..input.u8() % 4)
        .map(|_| first + u64::from(input.u8()) % (n + 1))
        .collect();
    cps.sort_unstable();
    for &s in &cps {
        let root = log.root(s).expect("checkpoint inside the log");
        lines.push(checkpoint_line(
            signed(s, root, signer()),
            input.u16().into(),
            None,
        ));
    }
    // A consistency proof from the end to a later checkpoint.
    let later = (flags & 8 == 8 && end > 0 && log.size() > end)
        .then(|| end + 1 + u64::from(input.u8()) % (log.size() - end));
    if let Some(s) = later {
        let proof = consistency_proof(&log.leaves, end, s).expect("consistency proof");
        let root = log.root(s).expect("later root");
        lines.push(checkpoint_line(
            signed(s, root, signer()),
            0,
            Some((end, proof.iter().map(encode_hash).collect())),
        ));
    }
    let from = (flags & 0x10 == 0x10).then(|| {
        let s = first + u64::from(input.u8()) % (n + 2);
        if input.u8() < 64 {
            s.wrapping_sub(1)
        } else {
            s
        }
    });
    let from_note = from.map(|s| signed(s, log.root(s).unwrap_or([0xab; 32]), signer()));
    let mut trailing_newline = true;
    let mut truncate: Option<usize> = None;

    let damaged = flags & 0x40 == 0x40;
    if damaged {
        for _ in 0..1 + input.u8() % 3 {
            let op = input.u8();
            let p = usize::from(input.u16()) % lines.len().max(1);
            let q = usize::from(input.u16());
            let mask = input.u8() | 1;
            match op % 13 {
                0 if !lines.is_empty() => {
                    lines.remove(p);
                }
                1 if !lines.is_empty() => {
                    let l = lines[p].clone();
                    lines.insert(p, l);
                }
                2 if !lines.is_empty() => {
                    let q = q % lines.len();
                    lines.swap(p, q);
                }
                3 if !lines.is_empty() => {
                    let l = &mut lines[p];
                    let at = q % l.len().max(1);
                    match l.get_mut(at) {
                        Some(b) => *b ^= mask,
                        None => l.push(mask),
                    }
                }
                4 => {
                    let junk = input.bytes(usize::from(mask % 48)).to_vec();
                    lines.insert(p, junk);
                }
                5 if !lines.is_empty() => {
                    let e = end.wrapping_add(u64::from(mask % 4)).wrapping_sub(2);
                    lines[0] = log.header(first, e, Vec::new());
                }
                6 if n > 0 && lines.len() > 1 => {
                    // A legitimate narrower bundle: start one entry later.
                    lines[0] = log.header(first + 1, end, Vec::new());
                    lines.remove(1);
                }
                7 => {
                    let s = first + q as u64 % (n + 2);
                    let note = signed(s, leaf_hash(&[mask]), foreign_signer());
                    lines.insert(p, checkpoint_line(note, 0, None));
                }
                8 if log.size() > end && end > 0 => {
                    // A later checkpoint with a forged consistency proof.
                    let s = end + 1 + q as u64 % (log.size() - end);
                    let root = log.root(s).expect("later root");
                    let proof = (0..mask % 6)
                        .map(|i| encode_hash(&leaf_hash(&[i])))
                        .collect();
                    lines.push(checkpoint_line(
                        signed(s, root, signer()),
                        0,
                        Some((end, proof)),
                    ));
                }
                9 if n > 0 => {
                    // An altered entry, in either encoding.
                    let k = q % n as usize;
                    let mut entry = log.entries[k].clone();
                    entry.push(mask);
                    let at = 1 + k;
                    if let Some(l) = lines.get_mut(at) {
                        *l = entry_line(first + k as u64, &entry, mask & 2 == 2);
                    }
                }
                10 if n > 0 => {
                    // The same entry in the other encoding (not damage).
                    let k = q % n as usize;
                    if let Some(l) = lines.get_mut(1 + k) {
                        *l = entry_line(first + k as u64, &log.entries[k], mask & 2 == 2);
                    }
                }
                11 => truncate = Some(q),
                _ => trailing_newline = false,
            }
        }
    }

    let mut bytes = lines.join(&b'\n');
    if trailing_newline {
        bytes.push(b'\n');
    }
    if let Some(q) = truncate {
        bytes.truncate(q % (bytes.len() + 1));
    }
    let path = dir.join("bundle.jsonl");
    std::fs::write(&path, &bytes).expect("writing the bundle");

    let with_key = verify_bundle(&path, &options(true, from_note.clone()));
    let from_data = verify_bundle(&path, &options(false, from_note));
    if damaged {
        // Under the trusted key, a signed root is the honest one.
        if let Ok(report) = &with_key {
            if report.signed_size == report.size && report.checkpoints_checked > 0 {
                let honest = log.root(report.size).map(|r| encode_hash(&r));
                assert_eq!(
                    Some(&report.root),
                    honest.as_ref(),
                    "a damaged bundle verified with a wrong signed root: {report:?}"
                );
            }
        }
        return;
    }
    let from_ok = from.is_none_or(|s| s >= first && s <= end);
    for (result, keys_from_data) in [(with_key, false), (from_data, true)] {
        let report = match result {
            Ok(r) => r,
            Err(_) if !from_ok => continue,
            Err(e) => {
                panic!("an honest bundle ({first}..{end}, {cps:?}, later {later:?}) fails: {e}")
            }
        };
        assert!(
            from_ok,
            "a trusted checkpoint outside the bundle was accepted"
        );
        assert_eq!(report.first_index, first);
        assert_eq!(report.size, end);
        assert_eq!(
            Some(report.root.clone()),
            log.root(end).map(|r| encode_hash(&r))
        );
        assert_eq!(report.keys_from_data, keys_from_data);
        assert_eq!(
            report.checkpoints_checked,
            cps.len() + usize::from(from.is_some()) + usize::from(later.is_some())
        );
        assert_eq!(report.checkpoints_skipped, 0);
        assert_eq!(
            report.latest_checkpoint_size,
            cps.iter().chain(&later).copied().max()
        );
        let signed_size = if later.is_some() {
            end
        } else {
            cps.iter().chain(&from).copied().fold(first, u64::max)
        };
        assert_eq!(report.signed_size, signed_size);
        assert_eq!(report.origin.as_deref(), Some(ORIGIN));
    }
}

// ---------------------------------------------------------------------
// Mode 3: built proofs, edited.

fn built_proofs(flags: u8, mut input: Input<'_>) {
    let log = Log::build(&mut input);
    let size = log.size();
    if size == 0 {
        return;
    }
    let tree_size = 1 + u64::from(input.u16()) % size;
    let index = u64::from(input.u16()) % tree_size;
    let old_size = 1 + u64::from(input.u16()) % tree_size;
    let root = log.root(tree_size).expect("root");
    let old_root = log.root(old_size).expect("old root");
    let note = signed(tree_size, root, signer());
    let leaf = log.leaves[index as usize];
    let entry = log.entry(index);
    assert_eq!(leaf_hash(&entry), leaf);
    let path = inclusion_proof(&log.leaves, index, tree_size).expect("inclusion proof");
    let mut inc = InclusionProof {
        origin: ORIGIN.to_owned(),
        index,
        tree_size,
        leaf_hash: encode_hash(&leaf),
        root_hash: encode_hash(&root),
        proof: path.iter().map(encode_hash).collect(),
        checkpoint: note.clone(),
        entry: B64.encode(&entry),
    };
    let cpath = consistency_proof(&log.leaves, old_size, tree_size).expect("consistency proof");
    let mut con = ConsistencyProof {
        origin: ORIGIN.to_owned(),
        old_size,
        new_size: tree_size,
        old_root: encode_hash(&old_root),
        new_root: encode_hash(&root),
        proof: cpath.iter().map(encode_hash).collect(),
        checkpoint: note,
        old_checkpoint: (flags & 4 == 4).then(|| signed(old_size, old_root, signer())),
    };
    differential_inclusion(&leaf, index, tree_size, &path, &root);
    differential_consistency(old_size, tree_size, &old_root, &root, &cpath);

    let damaged = flags & 0x40 == 0x40;
    if damaged {
        for _ in 0..1 + input.u8() % 3 {
            let op = input.u8();
            let v = input.u64();
            let i = usize::from(input.u8());
            let h = encode_hash(&log.leaves[(v % size) as usize]);
            let edit = |proof: &mut Vec<String>| match (op >> 4) % 5 {
                0 if !proof.is_empty() => {
                    let at = i % proof.len();
                    proof[at] = h.clone();
                }
                1 if !proof.is_empty() => {
                    proof.remove(i % proof.len());
                }
                2 => {
                    let at = i % (proof.len() + 1);
                    proof.insert(at, h.clone());
                }
                3 if !proof.is_empty() => {
                    let at = i % proof.len();
                    proof.swap(0, at);
                }
                _ => proof.reverse(),
            };
            match op % 10 {
                0 => inc.index = v,
                1 => inc.index = v % (tree_size + 1),
                2 => inc.tree_size = v % (size + 2),
                3 => {
                    // Another leaf, with its entry.
                    inc.leaf_hash = h.clone();
                    inc.entry = B64.encode(log.entry(v % size));
                }
                4 => edit(&mut inc.proof),
                5 => con.old_size = v % (tree_size + 2),
                6 => con.old_root = h,
                7 => edit(&mut con.proof),
                8 => con.new_size = v % (size + 2),
                _ => {
                    // Edit the JSON text.
                    let mut json = serde_json::to_vec(&inc).expect("json");
                    if !json.is_empty() {
                        let at = (v as usize) % json.len();
                        json[at] ^= (i as u8) | 1;
                    }
                    if let Ok(p) = serde_json::from_slice(&json) {
                        inc = p;
                    }
                }
            }
        }
    }

    let inc_ok = check_inclusion(&inc, key());
    let con_ok = check_consistency(&con, key());
    if !damaged {
        inc_ok.unwrap_or_else(|e| panic!("an honest inclusion proof fails: {e}: {inc:?}"));
        con_ok.unwrap_or_else(|e| panic!("an honest consistency proof fails: {e}: {con:?}"));
        return;
    }
    if inc_ok.is_ok() {
        assert!(
            inc.index < tree_size && inc.tree_size == tree_size,
            "{inc:?}"
        );
        assert_eq!(
            inc.leaf_hash,
            encode_hash(&log.leaves[inc.index as usize]),
            "an edited inclusion proof checks for the wrong leaf: {inc:?}"
        );
    }
    if con_ok.is_ok() {
        assert_eq!(con.new_size, tree_size, "{con:?}");
        assert_eq!(
            Some(con.old_root.clone()),
            log.root(con.old_size).map(|r| encode_hash(&r)),
            "an edited consistency proof checks for the wrong old root: {con:?}"
        );
    }
    if let (Some(l), Some(r), Some(p)) = (
        decode_hash(&inc.leaf_hash),
        decode_hash(&inc.root_hash),
        decode_all(&inc.proof),
    ) {
        differential_inclusion(&l, inc.index, inc.tree_size, &p, &r);
    }
    if let (Some(o), Some(nw), Some(p)) = (
        decode_hash(&con.old_root),
        decode_hash(&con.new_root),
        decode_all(&con.proof),
    ) {
        differential_consistency(con.old_size, con.new_size, &o, &nw, &p);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut input = Input(data);
    let flags = input.u8();
    match flags % 4 {
        0 => {
            let dir = tempfile::tempdir().expect("temporary directory");
            raw_bundle(dir.path(), input);
        }
        1 => raw_proofs(input.0),
        2 => {
            let dir = tempfile::tempdir().expect("temporary directory");
            built_bundle(dir.path(), flags, input);
        }
        _ => built_proofs(flags, input),
    }
});
