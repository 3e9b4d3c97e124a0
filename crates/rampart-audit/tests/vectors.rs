#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Published RFC 6962 / RFC 9162 vectors (transparency-dev/merkle testdata).

use std::path::{Path, PathBuf};

use rampart_audit::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root_of,
    verify_consistency, verify_inclusion, Hash, MerkleTree,
};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors/rfc");

fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(VECTORS);
    assert!(
        dir.is_dir(),
        "test vectors missing: expected {} (the shared vectors beside the checkout)",
        dir.display()
    );
    dir
}

fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_hash(s: &str) -> Hash {
    hex(s).try_into().unwrap()
}

/// Standard base64 with padding.
fn base64(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 character {c}"),
        }
    }
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c) << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn base64_decoder_sanity() {
    assert_eq!(base64("V3JvbmdSb290"), b"WrongRoot");
    assert_eq!(base64("ZG9uJ3QgY2FyZSAx"), b"don't care 1");
    assert_eq!(base64("YQ=="), b"a");
    assert_eq!(base64("YWI="), b"ab");
    assert_eq!(base64(""), b"");
}

/// Decodes a base64 hash; `None` if it is not 32 bytes (unrepresentable as
/// a [`Hash`], so the verification it belongs to cannot succeed).
fn b64_hash(v: &Value) -> Option<Hash> {
    base64(v.as_str().unwrap()).try_into().ok()
}

/// The proof field: `null` means an empty proof.
fn b64_proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(b64_hash).collect(),
        other => panic!("unexpected proof shape {other}"),
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
}

fn load(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// This valid case compares two 12-byte "don't care" roots for equal sizes;
/// a [`Hash`] is always 32 bytes, so it cannot be expressed in this API.
const UNREPRESENTABLE: &[&str] =
    &["consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"];

fn relative(path: &Path) -> String {
    let base = vectors_dir().join("merkle_testdata");
    path.strip_prefix(&base)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn rfc6962_constants() {
    let v = load(&vectors_dir().join("rfc6962_merkle.json"));
    assert_eq!(
        empty_root(),
        hex_hash(v["empty_root_hex"].as_str().unwrap())
    );

    let leaves: Vec<Hash> = v["leaf_inputs_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| leaf_hash(&hex(s.as_str().unwrap())))
        .collect();
    let roots = v["root_hashes_by_size_hex"].as_array().unwrap();
    assert_eq!(roots.len(), leaves.len() + 1);

    let mut tree = MerkleTree::new();
    assert_eq!(tree.root(), hex_hash(roots[0].as_str().unwrap()));
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(tree.push(*leaf).unwrap(), i as u64);
        let want = hex_hash(roots[i + 1].as_str().unwrap());
        assert_eq!(tree.size(), i as u64 + 1);
        assert_eq!(tree.root(), want, "root of size {}", i + 1);
        assert_eq!(root_of(&leaves[..=i]), want);
    }

    // Level 0 is the leaf hashes; each next level pairs the previous one.
    let levels = v["node_hashes_by_level_hex"].as_array().unwrap();
    let mut level: Vec<Hash> = leaves.clone();
    let mut checked_levels = 0;
    for (depth, want) in levels.iter().enumerate() {
        let want: Vec<Hash> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|s| hex_hash(s.as_str().unwrap()))
            .collect();
        assert_eq!(level, want, "level {depth}");
        checked_levels += 1;
        if level.len() > 1 {
            level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
    }

    assert_eq!(checked_levels, 4);

    // Proofs generated over these leaves verify against these roots.
    for n in 1..=leaves.len() as u64 {
        let root = hex_hash(roots[n as usize].as_str().unwrap());
        for i in 0..n {
            let proof = inclusion_proof(&leaves, i, n).unwrap();
            verify_inclusion(&leaves[i as usize], i, n, &proof, &root).unwrap();
        }
        for m in 1..=n {
            let old = hex_hash(roots[m as usize].as_str().unwrap());
            let proof = consistency_proof(&leaves, m, n).unwrap();
            verify_consistency(m, n, &old, &root, &proof).unwrap();
        }
    }
}

#[test]
fn transparency_dev_inclusion() {
    let mut files = Vec::new();
    json_files(&vectors_dir().join("merkle_testdata/inclusion"), &mut files);
    assert!(
        files.len() >= 90,
        "only {} inclusion vectors found",
        files.len()
    );
    let (mut ok, mut bad) = (0, 0);
    for path in &files {
        let v = load(path);
        let name = relative(path);
        let want_err = v["wantErr"].as_bool().unwrap();
        let index = v["leafIdx"].as_u64().unwrap();
        let size = v["treeSize"].as_u64().unwrap();
        let result = match (
            b64_hash(&v["leafHash"]),
            b64_hash(&v["root"]),
            b64_proof(&v["proof"]),
        ) {
            (Some(leaf), Some(root), Some(proof)) => {
                verify_inclusion(&leaf, index, size, &proof, &root).map_err(|e| e.to_string())
            }
            _ => Err("a hash is not 32 bytes".to_owned()),
        };
        if want_err {
            assert!(result.is_err(), "{name}: tampered proof verified");
            bad += 1;
        } else {
            assert!(result.is_ok(), "{name}: valid proof rejected: {result:?}");
            ok += 1;
        }
    }
    assert!(ok > 0 && bad > 0, "valid {ok}, tampered {bad}");
}

#[test]
fn transparency_dev_consistency() {
    let mut files = Vec::new();
    json_files(
        &vectors_dir().join("merkle_testdata/consistency"),
        &mut files,
    );
    assert!(
        files.len() >= 90,
        "only {} consistency vectors found",
        files.len()
    );
    let (mut ok, mut bad, mut skipped) = (0, 0, 0);
    for path in &files {
        let v = load(path);
        let name = relative(path);
        let want_err = v["wantErr"].as_bool().unwrap();
        let size1 = v["size1"].as_u64().unwrap();
        let size2 = v["size2"].as_u64().unwrap();
        let parsed = (
            b64_hash(&v["root1"]),
            b64_hash(&v["root2"]),
            b64_proof(&v["proof"]),
        );
        if UNREPRESENTABLE.contains(&name.as_str()) {
            assert!(
                !want_err && parsed.0.is_none(),
                "{name}: exception no longer applies"
            );
            skipped += 1;
            continue;
        }
        let result = match parsed {
            (Some(r1), Some(r2), Some(proof)) => {
                verify_consistency(size1, size2, &r1, &r2, &proof).map_err(|e| e.to_string())
            }
            _ => Err("a hash is not 32 bytes".to_owned()),
        };
        if want_err {
            assert!(result.is_err(), "{name}: tampered proof verified");
            bad += 1;
        } else {
            assert!(result.is_ok(), "{name}: valid proof rejected: {result:?}");
            ok += 1;
        }
    }
    assert_eq!(skipped, UNREPRESENTABLE.len());
    assert!(ok > 0 && bad > 0, "valid {ok}, tampered {bad}");
}
