//! Inclusion and consistency proofs as JSON documents.
//!
//! Proofs are built against the latest signed checkpoint, from the stored
//! tree hashes (O(log n) reads) with a fallback to recomputing the tree
//! from the entries, and every proof is checked against the signed root
//! before it is returned. Hashes and entries are standard base64, as in
//! checkpoints. The format is described in `docs/audit-format.md`.

use std::path::Path;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::log::LogError;
use crate::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash, MerkleError};
use crate::note::{
    decode_hash, encode_hash, open_checkpoint_any, Checkpoint, NoteError, VerifierKey,
};
use crate::reader::{LogReader, StoredCheckpoint};
use crate::tree::{consistency_path, inclusion_path, range_root, MemTree, NodeSource, TreeFile};

/// Most hashes a proof can need (the height of a tree of 2^64 leaves,
/// plus one).
const MAX_PROOF_HASHES: usize = 65;

/// Proof that an entry is in the log, against a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The log's origin.
    pub origin: String,
    /// The entry's index.
    pub index: u64,
    /// The tree size of the checkpoint.
    pub tree_size: u64,
    /// `SHA-256(0x00 ‖ entry)`, base64.
    pub leaf_hash: String,
    /// The checkpoint's root hash, base64.
    pub root_hash: String,
    /// The audit path (RFC 9162 §2.1.3.1), base64 hashes, leaf level first.
    pub proof: Vec<String>,
    /// The signed checkpoint (C2SP signed note).
    pub checkpoint: String,
    /// The entry bytes, base64.
    pub entry: String,
}

/// Proof that the log at `old_size` is a prefix of the log at a signed
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The log's origin.
    pub origin: String,
    /// The old tree size.
    pub old_size: u64,
    /// The new tree size (the checkpoint's).
    pub new_size: u64,
    /// The root of the old tree, base64.
    pub old_root: String,
    /// The root of the new tree, base64.
    pub new_root: String,
    /// The consistency proof (RFC 9162 §2.1.4.1), base64 hashes.
    pub proof: Vec<String>,
    /// The signed checkpoint of the new tree.
    pub checkpoint: String,
    /// The signed checkpoint of the old tree, if the log has one at
    /// exactly that size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_checkpoint: Option<String>,
}

/// Why a proof could not be built or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// Reading the log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The log has no checkpoint yet.
    #[error("the log has no signed checkpoint yet")]
    NoCheckpoint,
    /// The index or size is not covered by the latest checkpoint.
    #[error("{what} {value} is not covered by the latest checkpoint (size {size})")]
    NotCovered {
        /// What was asked for.
        what: &'static str,
        /// The index or size asked for.
        value: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The checkpoint's signature or format is invalid.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The proof does not verify.
    #[error("the proof does not verify: {0}")]
    Merkle(#[from] MerkleError),
    /// A field of the document is malformed.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// A field of the document disagrees with the signed checkpoint or
    /// the entry.
    #[error("the proof disagrees with {0}")]
    Mismatch(&'static str),
    /// The log's files do not produce a proof matching its own signed
    /// checkpoint.
    #[error("the log does not match its signed checkpoint at size {0}; run verify")]
    Inconsistent(u64),
}

/// Builds proofs for one log directory against its latest checkpoint;
/// reuse it to build many proofs.
#[derive(Debug)]
pub struct Prover {
    reader: LogReader,
    tree: Option<TreeFile>,
    checkpoint: StoredCheckpoint,
    all: Vec<StoredCheckpoint>,
    fallback: OnceLock<Result<MemTree, String>>,
}

impl Prover {
    /// Opens the log in `dir` and takes its latest checkpoint.
    ///
    /// # Errors
    ///
    /// [`ProofError::NoCheckpoint`] if there is none, or a read error.
    pub fn open(dir: &Path) -> Result<Self, ProofError> {
        let reader = LogReader::open(dir)?;
        let all = reader.checkpoints()?;
        let checkpoint = all.last().cloned().ok_or(ProofError::NoCheckpoint)?;
        let tree = TreeFile::open(dir).ok();
        Ok(Self {
            reader,
            tree,
            checkpoint,
            all,
            fallback: OnceLock::new(),
        })
    }

    /// The checkpoint proofs are built against.
    #[must_use]
    pub fn checkpoint(&self) -> &StoredCheckpoint {
        &self.checkpoint
    }

    /// The reader of the log.
    #[must_use]
    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    fn fallback(&self) -> Result<&MemTree, ProofError> {
        self.fallback
            .get_or_init(|| {
                MemTree::build(self.reader.dir(), self.checkpoint.checkpoint.size)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| {
                ProofError::Log(LogError::Corrupt {
                    index: self.reader.first_index(),
                    reason: e.clone(),
                })
            })
    }

    /// Tries `build` on `tree.hashes`, then on the recomputed tree;
    /// returns the first result `check` accepts.
    fn with_sources<T>(
        &self,
        build: impl Fn(&dyn NodeSource) -> Result<T, LogError>,
        check: impl Fn(&T) -> bool,
    ) -> Result<T, ProofError> {
        let size = self.checkpoint.checkpoint.size;
        if let Some(tree) = self.tree.as_ref().filter(|t| t.covers(size)) {
            if let Ok(out) = build(tree) {
                if check(&out) {
                    return Ok(out);
                }
            }
        }
        let mem = self.fallback()?;
        let out = build(mem)?;
        if check(&out) {
            Ok(out)
        } else {
            Err(ProofError::Inconsistent(size))
        }
    }

    /// The inclusion proof of the entry at `index`.
    ///
    /// # Errors
    ///
    /// [`ProofError::NotCovered`] if the checkpoint does not cover the
    /// index, [`ProofError::Inconsistent`] if the log does not match its
    /// checkpoint, or a read error.
    pub fn inclusion(&self, index: u64) -> Result<InclusionProof, ProofError> {
        let cp = &self.checkpoint.checkpoint;
        if index >= cp.size {
            return Err(ProofError::NotCovered {
                what: "index",
                value: index,
                size: cp.size,
            });
        }
        let entry = self.reader.get(index)?;
        let leaf = leaf_hash(&entry);
        let path = self.with_sources(
            |src| inclusion_path(src, index, cp.size),
            |path| verify_inclusion(&leaf, index, cp.size, path, &cp.root).is_ok(),
        )?;
        Ok(InclusionProof {
            origin: cp.origin.clone(),
            index,
            tree_size: cp.size,
            leaf_hash: encode_hash(&leaf),
            root_hash: encode_hash(&cp.root),
            proof: path.iter().map(encode_hash).collect(),
            checkpoint: self.checkpoint.note.clone(),
            entry: B64.encode(&entry),
        })
    }

    /// The consistency proof from the tree of `old_size` entries to the
    /// checkpoint.
    ///
    /// # Errors
    ///
    /// [`ProofError::NotCovered`] if `old_size` is 0 or above the
    /// checkpoint's size, [`ProofError::Inconsistent`] if the log does not
    /// match its checkpoint, or a read error.
    pub fn consistency(&self, old_size: u64) -> Result<ConsistencyProof, ProofError> {
        let cp = &self.checkpoint.checkpoint;
        if old_size == 0 || old_size > cp.size {
            return Err(ProofError::NotCovered {
                what: "size",
                value: old_size,
                size: cp.size,
            });
        }
        let (old_root, path) = self.with_sources(
            |src| {
                Ok((
                    range_root(src, 0, old_size)?,
                    consistency_path(src, old_size, cp.size)?,
                ))
            },
            |(old_root, path)| {
                verify_consistency(old_size, cp.size, old_root, &cp.root, path).is_ok()
            },
        )?;
        let old_checkpoint = self
            .all
            .iter()
            .find(|c| c.checkpoint.size == old_size && c.checkpoint.root == old_root)
            .map(|c| c.note.clone());
        Ok(ConsistencyProof {
            origin: cp.origin.clone(),
            old_size,
            new_size: cp.size,
            old_root: encode_hash(&old_root),
            new_root: encode_hash(&cp.root),
            proof: path.iter().map(encode_hash).collect(),
            checkpoint: self.checkpoint.note.clone(),
            old_checkpoint,
        })
    }
}

/// The inclusion proof of entry `index` of the log in `dir` against its
/// latest checkpoint.
///
/// # Errors
///
/// As [`Prover::open`] and [`Prover::inclusion`].
pub fn inclusion(dir: &Path, index: u64) -> Result<InclusionProof, ProofError> {
    Prover::open(dir)?.inclusion(index)
}

/// The consistency proof from size `old_size` to the latest checkpoint of
/// the log in `dir`.
///
/// # Errors
///
/// As [`Prover::open`] and [`Prover::consistency`].
pub fn consistency(dir: &Path, old_size: u64) -> Result<ConsistencyProof, ProofError> {
    Prover::open(dir)?.consistency(old_size)
}

fn decode_field(s: &str, what: &'static str) -> Result<Hash, ProofError> {
    decode_hash(s).ok_or(ProofError::Malformed(what))
}

fn decode_path(proof: &[String]) -> Result<Vec<Hash>, ProofError> {
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::Malformed("the proof is too long"));
    }
    proof
        .iter()
        .map(|h| decode_field(h, "a proof hash is not base64 of 32 bytes"))
        .collect()
}

fn check_against(cp: &Checkpoint, origin: &str, size: u64, root: &Hash) -> Result<(), ProofError> {
    if cp.origin != origin {
        return Err(ProofError::Mismatch("the checkpoint's origin"));
    }
    if cp.size != size {
        return Err(ProofError::Mismatch("the checkpoint's tree size"));
    }
    if cp.root != *root {
        return Err(ProofError::Mismatch("the checkpoint's root hash"));
    }
    Ok(())
}

/// Verifies an inclusion proof: the checkpoint's signature under `key`,
/// that its origin, size and root are the document's, that the leaf hash
/// is the entry's, and the RFC 9162 §2.1.3.2 verification. Returns the
/// verified checkpoint.
///
/// # Errors
///
/// [`ProofError`] naming the first check that fails.
pub fn check_inclusion(p: &InclusionProof, key: &VerifierKey) -> Result<Checkpoint, ProofError> {
    check_inclusion_any(p, std::slice::from_ref(key))
}

/// Like [`check_inclusion`], accepting a checkpoint signed by any of
/// `keys`.
///
/// # Errors
///
/// As [`check_inclusion`].
pub fn check_inclusion_any(
    p: &InclusionProof,
    keys: &[VerifierKey],
) -> Result<Checkpoint, ProofError> {
    let cp = open_checkpoint_any(&p.checkpoint, keys)?;
    let root = decode_field(&p.root_hash, "root_hash is not base64 of 32 bytes")?;
    check_against(&cp, &p.origin, p.tree_size, &root)?;
    let entry = B64
        .decode(&p.entry)
        .map_err(|_| ProofError::Malformed("entry is not base64"))?;
    let leaf = decode_field(&p.leaf_hash, "leaf_hash is not base64 of 32 bytes")?;
    if leaf_hash(&entry) != leaf {
        return Err(ProofError::Mismatch("the entry"));
    }
    let path = decode_path(&p.proof)?;
    verify_inclusion(&leaf, p.index, p.tree_size, &path, &cp.root)?;
    Ok(cp)
}

/// Verifies a consistency proof: the new checkpoint's signature under
/// `key` and its fields, the old checkpoint's if present, and the RFC 9162
/// §2.1.4.2 verification. Returns the verified new checkpoint.
///
/// # Errors
///
/// [`ProofError`] naming the first check that fails.
pub fn check_consistency(
    p: &ConsistencyProof,
    key: &VerifierKey,
) -> Result<Checkpoint, ProofError> {
    check_consistency_any(p, std::slice::from_ref(key))
}

/// Like [`check_consistency`], accepting checkpoints signed by any of
/// `keys`.
///
/// # Errors
///
/// As [`check_consistency`].
pub fn check_consistency_any(
    p: &ConsistencyProof,
    keys: &[VerifierKey],
) -> Result<Checkpoint, ProofError> {
    let cp = open_checkpoint_any(&p.checkpoint, keys)?;
    let new_root = decode_field(&p.new_root, "new_root is not base64 of 32 bytes")?;
    check_against(&cp, &p.origin, p.new_size, &new_root)?;
    let old_root = decode_field(&p.old_root, "old_root is not base64 of 32 bytes")?;
    if let Some(old) = &p.old_checkpoint {
        let old = open_checkpoint_any(old, keys)?;
        check_against(&old, &p.origin, p.old_size, &old_root)?;
    }
    let path = decode_path(&p.proof)?;
    verify_consistency(p.old_size, p.new_size, &old_root, &new_root, &path)?;
    Ok(cp)
}
