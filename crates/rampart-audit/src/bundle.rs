//! Export bundles: a range of the log with what is needed to verify it
//! alone, as JSON lines.
//!
//! ```text
//! {"format":"rampart-audit-bundle/1","origin":…,"verifier_key":…,"first_index":a,"end_index":b,"frontier":[…]}
//! {"index":a,"entry":{…the entry, verbatim…}}
//! {"index":a+1,"entry_b64":"…"}              (entries that are not one-line JSON)
//! …
//! {"checkpoint":"<signed note>","time_us":…}   (checkpoints with a <= size <= b)
//! {"checkpoint":"<signed note>","time_us":…,"consistency_from":b,"proof":[…]}
//! ```
//!
//! The frontier (the compact range of the tree before `first_index`) lets
//! the verifier compute the root at every size from `a` on; the
//! checkpoints inside the range are compared with those roots, and the
//! last line (when the log has a checkpoint beyond `b`) carries a
//! consistency proof from the tree at `b` to that checkpoint, so every
//! entry of the bundle is covered by a signature.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::log::{io_err, read_public_keys, LogError};
use crate::merkle::{leaf_hash, verify_consistency, Hash};
use crate::note::{encode_hash, open_checkpoint_any};
use crate::reader::{LogReader, StoredCheckpoint};
use crate::segment::sync_dir;
use crate::tree::{consistency_path, MemTree, TreeFile};

/// The `format` of the header line.
pub const BUNDLE_FORMAT: &str = "rampart-audit-bundle/1";

/// Longest line a bundle reader accepts.
pub const MAX_LINE_BYTES: usize = 512 * 1024;

/// The first line of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHeader {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The log's origin.
    pub origin: String,
    /// The verifier key of the log's current signing key.
    pub verifier_key: String,
    /// Earlier verifier keys of the log (after key rotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_keys: Vec<String>,
    /// Index of the first entry in the bundle.
    pub first_index: u64,
    /// One past the last entry in the bundle.
    pub end_index: u64,
    /// Compact range of the tree of the entries before `first_index`,
    /// largest subtree first, base64.
    pub frontier: Vec<String>,
}

/// A checkpoint line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleCheckpoint {
    /// The signed note.
    pub checkpoint: String,
    /// When it was signed.
    pub time_us: i64,
    /// For a checkpoint beyond the bundle: the bundle's end, from which
    /// `proof` is a consistency proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency_from: Option<u64>,
    /// The consistency proof, base64 hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Vec<String>>,
}

/// What [`export_bundle`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    /// The bundle file.
    pub path: PathBuf,
    /// First index exported.
    pub first_index: u64,
    /// One past the last index exported.
    pub end_index: u64,
    /// Checkpoints inside the range.
    pub checkpoints: usize,
    /// Whether a consistency proof to a later checkpoint was included.
    pub extended: bool,
}

/// Whether `entry` can be embedded verbatim as a JSON value on one line
/// (and read back byte for byte).
fn embeddable(entry: &[u8]) -> bool {
    if entry == b"null" || entry.contains(&b'\n') || entry.contains(&b'\r') {
        return false;
    }
    let Ok(text) = std::str::from_utf8(entry) else {
        return false;
    };
    match serde_json::from_str::<&serde_json::value::RawValue>(text) {
        Ok(raw) => raw.get().len() == text.len(),
        Err(_) => false,
    }
}

/// Writes one entry line.
pub(crate) fn write_entry_line(
    out: &mut impl Write,
    index: u64,
    entry: &[u8],
) -> std::io::Result<()> {
    if embeddable(entry) {
        write!(out, "{{\"index\":{index},\"entry\":")?;
        out.write_all(entry)?;
        out.write_all(b"}\n")
    } else {
        writeln!(
            out,
            "{{\"index\":{index},\"entry_b64\":\"{}\"}}",
            B64.encode(entry)
        )
    }
}

/// Exports entries `range` (`[start, end)`, default: all present) of the
/// log in `dir` to `out_path`, durably (temporary file, fsync, rename,
/// directory fsync).
///
/// # Errors
///
/// [`LogError::OutOfRange`] for a range outside the log,
/// [`LogError::Config`] if the log has no checkpoint yet (its origin is
/// unknown), or a read or write error.
pub fn export_bundle(
    dir: &Path,
    out_path: &Path,
    range: Option<(u64, u64)>,
) -> Result<BundleReport, LogError> {
    let reader = LogReader::open(dir)?;
    let (start, end) = range.unwrap_or((reader.first_index(), reader.len()));
    if start > end || start < reader.first_index() || end > reader.len() {
        return Err(LogError::OutOfRange {
            index: if start < reader.first_index() {
                start
            } else {
                end
            },
            first: reader.first_index(),
            len: reader.len(),
        });
    }
    let checkpoints = reader.checkpoints()?;
    let origin = checkpoints
        .last()
        .map(|c| c.checkpoint.origin.clone())
        .ok_or_else(|| LogError::Config("the log has no checkpoint yet".to_owned()))?;
    let keys = read_public_keys(dir)?;
    let (current, others) = keys
        .split_last()
        .ok_or_else(|| LogError::Config("audit.pub holds no key".to_owned()))?;
    let mut tree = reader.frontier_before(start)?;
    let header = BundleHeader {
        format: BUNDLE_FORMAT.to_owned(),
        origin,
        verifier_key: current.to_string(),
        other_keys: others.iter().map(ToString::to_string).collect(),
        first_index: start,
        end_index: end,
        frontier: tree.roots().iter().map(encode_hash).collect(),
    };

    let parent = out_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("creating", &tmp))?;
    let result = (|| {
        let mut out = BufWriter::with_capacity(1024 * 1024, file);
        let w = io_err("writing", &tmp);
        let json = serde_json::to_vec(&header).map_err(|e| LogError::Failed(e.to_string()))?;
        out.write_all(&json)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(w)?;
        if end > start {
            for item in reader.iter_from(start) {
                let (index, entry) = item?;
                write_entry_line(&mut out, index, &entry).map_err(io_err("writing", &tmp))?;
                tree.push(leaf_hash(&entry))?;
                if index + 1 >= end {
                    break;
                }
            }
        }
        if tree.size() != end {
            return Err(LogError::Corrupt {
                index: tree.size(),
                reason: "the log ended before the bundle range".to_owned(),
            });
        }
        let mut count = 0;
        for cp in checkpoints
            .iter()
            .filter(|c| (start..=end).contains(&c.checkpoint.size))
        {
            write_checkpoint_line(&mut out, cp, None).map_err(io_err("writing", &tmp))?;
            count += 1;
        }
        let mut extended = false;
        if end > 0 {
            if let Some(next) = checkpoints.iter().find(|c| c.checkpoint.size > end) {
                match extension_proof(dir, end, &tree.root(), next) {
                    Some(proof) => {
                        write_checkpoint_line(&mut out, next, Some((end, &proof)))
                            .map_err(io_err("writing", &tmp))?;
                        extended = true;
                    }
                    None => {
                        tracing::warn!(target: "rampart::audit", end, size = next.checkpoint.size, "no consistency proof to a later checkpoint could be built for the bundle");
                    }
                }
            }
        }
        out.flush().map_err(io_err("writing", &tmp))?;
        out.get_ref().sync_all().map_err(io_err("syncing", &tmp))?;
        Ok((count, extended))
    })();
    let (count, extended) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out_path).map_err(io_err("renaming to", out_path))?;
    sync_dir(parent)?;
    // Sanity: the keys can open the checkpoints written (warn only).
    if let Some(cp) = checkpoints.last() {
        if open_checkpoint_any(&cp.note, &keys).is_err() {
            tracing::warn!(target: "rampart::audit", "the latest checkpoint does not verify with audit.pub");
        }
    }
    Ok(BundleReport {
        path: out_path.to_path_buf(),
        first_index: start,
        end_index: end,
        checkpoints: count,
        extended,
    })
}

fn write_checkpoint_line(
    out: &mut impl Write,
    cp: &StoredCheckpoint,
    ext: Option<(u64, &[Hash])>,
) -> std::io::Result<()> {
    let line = BundleCheckpoint {
        checkpoint: cp.note.clone(),
        time_us: cp.time_us,
        consistency_from: ext.map(|(from, _)| from),
        proof: ext.map(|(_, p)| p.iter().map(encode_hash).collect()),
    };
    let json = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
    out.write_all(&json)?;
    out.write_all(b"\n")
}

/// A consistency proof from the tree of `end` entries (root `root`) to
/// the checkpoint `next`, checked before it is returned.
fn extension_proof(
    dir: &Path,
    end: u64,
    root: &Hash,
    next: &StoredCheckpoint,
) -> Option<Vec<Hash>> {
    let size = next.checkpoint.size;
    let ok = |p: &Vec<Hash>| verify_consistency(end, size, root, &next.checkpoint.root, p).is_ok();
    if let Ok(tree) = TreeFile::open(dir) {
        if tree.covers(size) {
            if let Ok(p) = consistency_path(&tree, end, size) {
                if ok(&p) {
                    return Some(p);
                }
            }
        }
    }
    let mem = MemTree::build(dir, size).ok()?;
    consistency_path(&mem, end, size).ok().filter(ok)
}
