//! Stored tree hashes (`tree.hashes`) and proof generation from them.
//!
//! Every node of the Merkle tree is stored in a fixed 32-byte slot, in
//! post-order: appending leaf `i` writes its leaf hash and then the hash
//! of every parent it completes. Leaf `i` is at slot `2i − popcount(i)`,
//! and a tree of `n` leaves fills `2n − popcount(n)` slots. The root of
//! the perfect subtree of `2^h` leaves starting at `s` is the slot of leaf
//! `s + 2^h − 1` plus `h`, so an inclusion or consistency proof needs
//! O(log n) reads.
//!
//! The file is derived data: the writer never fsyncs it on the hot path
//! (only before signing a checkpoint), it is checked on open and rebuilt
//! from the segments when it does not match, and proofs built from it
//! are checked against the signed root before they are handed out.
//! Slots of pruned entries may be zero; a zero slot reads as missing.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::log::{io_err, LogError};
use crate::merkle::{
    consistency_path_with, empty_root, inclusion_path_with, node_hash, Hash, MerkleError,
    MerkleTree, HASH_LEN,
};
use crate::segment::{list_segments, HeaderError, SegmentScanner};

/// File name of the stored tree hashes.
pub const TREE_FILE: &str = "tree.hashes";

/// The slot of leaf `index`: `2·index − popcount(index)`.
#[must_use]
pub fn leaf_slot(index: u64) -> u64 {
    index
        .saturating_mul(2)
        .saturating_sub(u64::from(index.count_ones()))
}

/// The number of slots of a tree of `size` leaves: `2·size − popcount(size)`.
#[must_use]
pub fn slot_count(size: u64) -> u64 {
    leaf_slot(size)
}

/// The slot of the root of the perfect subtree of `2^level` leaves
/// starting at `start` (which must be a multiple of `2^level`).
#[must_use]
pub fn node_slot(start: u64, level: u32) -> u64 {
    let last = start.saturating_add((1u64 << level.min(63)) - 1);
    leaf_slot(last).saturating_add(u64::from(level))
}

/// A compact range from index 0: the roots of the perfect subtrees of a
/// tree, one per set bit of its size, largest first. A thin view of
/// [`MerkleTree`] whose constructor reports a bad frontier as log damage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange(MerkleTree);

impl CompactRange {
    /// The empty range.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A range from its roots (such as a segment header's frontier).
    ///
    /// # Errors
    ///
    /// [`LogError::Corrupt`] if the number of roots is not the number of
    /// set bits of `size`.
    pub fn from_roots(size: u64, roots: Vec<Hash>) -> Result<Self, LogError> {
        MerkleTree::from_subtree_roots(size, roots)
            .map(Self)
            .map_err(|_| LogError::Corrupt {
                index: size,
                reason: "the frontier does not match the tree size".to_owned(),
            })
    }

    /// The number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.0.size()
    }

    /// The perfect subtree roots, largest first.
    #[must_use]
    pub fn roots(&self) -> &[Hash] {
        self.0.subtree_roots()
    }

    /// The RFC 9162 root.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.0.root()
    }

    /// Appends a leaf hash. `on_node` receives the leaf hash and then each
    /// parent it completes: the slots to append to `tree.hashes`.
    ///
    /// # Errors
    ///
    /// [`MerkleError::TreeFull`] at `u64::MAX` leaves.
    pub fn push_with(&mut self, leaf: Hash, on_node: impl FnMut(&Hash)) -> Result<(), MerkleError> {
        self.0.push_with(leaf, on_node).map(|_| ())
    }

    /// Appends a leaf hash.
    ///
    /// # Errors
    ///
    /// [`MerkleError::TreeFull`] at `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<(), MerkleError> {
        self.0.push(leaf).map(|_| ())
    }
}

/// A source of perfect subtree roots.
pub trait NodeSource {
    /// The root of the perfect subtree of `2^level` leaves starting at
    /// `start` (a multiple of `2^level`).
    ///
    /// # Errors
    ///
    /// An error if the node is not available.
    fn node(&self, start: u64, level: u32) -> Result<Hash, LogError>;
}

/// The root of leaves `start .. start + n`, where `start` is a multiple
/// of the smallest power of two `>= n` (as in every range the RFC 9162
/// proof recursions visit): the fold of the perfect subtrees given by the
/// bits of `n`.
///
/// # Errors
///
/// The source's error, or [`LogError::Corrupt`] for a misaligned range.
pub fn range_root<S: NodeSource + ?Sized>(src: &S, start: u64, n: u64) -> Result<Hash, LogError> {
    if n == 0 {
        return Ok(empty_root());
    }
    let mut nodes = Vec::with_capacity(n.count_ones() as usize);
    let mut at = start;
    for level in (0..64u32).rev() {
        if n & (1u64 << level) != 0 {
            if at & ((1u64 << level) - 1) != 0 {
                return Err(LogError::Corrupt {
                    index: at,
                    reason: "misaligned subtree".to_owned(),
                });
            }
            nodes.push(src.node(at, level)?);
            at = at.saturating_add(1u64 << level);
        }
    }
    let mut it = nodes.iter().rev();
    let last = it.next().copied().unwrap_or_else(empty_root);
    Ok(it.fold(last, |acc, left| node_hash(left, &acc)))
}

/// The compact range of the first `size` leaves.
///
/// # Errors
///
/// The source's error.
pub fn frontier_at<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<CompactRange, LogError> {
    let mut roots = Vec::new();
    let mut at = 0u64;
    for level in (0..64u32).rev() {
        if size & (1u64 << level) != 0 {
            roots.push(src.node(at, level)?);
            at += 1u64 << level;
        }
    }
    CompactRange::from_roots(size, roots)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves
/// (RFC 9162 §2.1.3.1), with O(log n) node reads.
///
/// # Errors
///
/// [`LogError::Merkle`] if `index >= size`, or the source's error.
pub fn inclusion_path<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, LogError> {
    inclusion_path_with(|start, n| range_root(src, start, n), index, size)
}

/// The consistency proof between the trees of `old_size` and `new_size`
/// leaves (RFC 9162 §2.1.4.1), with O(log n) node reads.
///
/// # Errors
///
/// [`LogError::Merkle`] if `old_size` is 0 or larger than `new_size`, or
/// the source's error.
pub fn consistency_path<S: NodeSource + ?Sized>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, LogError> {
    consistency_path_with(|start, n| range_root(src, start, n), old_size, new_size)
}

/// `tree.hashes` opened read-only.
#[derive(Debug)]
pub struct TreeFile {
    file: File,
    path: PathBuf,
    slots: u64,
}

impl TreeFile {
    /// Opens `dir/tree.hashes`.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if it cannot be opened.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(TREE_FILE);
        let file = File::open(&path).map_err(io_err("opening", &path))?;
        let len = file
            .metadata()
            .map_err(io_err("reading metadata of", &path))?
            .len();
        Ok(Self {
            file,
            path,
            slots: len / HASH_LEN as u64,
        })
    }

    /// The number of complete slots in the file.
    #[must_use]
    pub fn slots(&self) -> u64 {
        self.slots
    }

    /// Whether the file holds every slot of a tree of `size` leaves.
    #[must_use]
    pub fn covers(&self, size: u64) -> bool {
        self.slots >= slot_count(size)
    }

    /// Reads one slot; `None` if it is beyond the file or zero.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if reading fails.
    pub fn slot(&self, slot: u64) -> Result<Option<Hash>, LogError> {
        if slot >= self.slots {
            return Ok(None);
        }
        let mut h = [0u8; HASH_LEN];
        self.file
            .read_exact_at(&mut h, slot.saturating_mul(HASH_LEN as u64))
            .map_err(io_err("reading", &self.path))?;
        Ok((h != [0u8; HASH_LEN]).then_some(h))
    }
}

impl NodeSource for TreeFile {
    fn node(&self, start: u64, level: u32) -> Result<Hash, LogError> {
        let slot = node_slot(start, level);
        self.slot(slot)?.ok_or_else(|| LogError::Format {
            path: self.path.clone(),
            reason: format!("slot {slot} is missing"),
        })
    }
}

/// Tree slots held in memory, built from the segments (the fallback when
/// `tree.hashes` is short or does not match). Only the slots from the
/// first retained entry on are held in a vector; before it, only the
/// first segment's frontier nodes are known.
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    /// Slot number of `slots[0]`.
    base: u64,
    /// Frontier nodes before `base`: (slot, hash).
    prefix: Vec<(u64, Hash)>,
    slots: Vec<Hash>,
    range: CompactRange,
}

impl MemTree {
    /// Builds the slots of the first `size` entries from the segments of
    /// `dir`. Nodes of pruned entries are missing, except the frontier of
    /// the first segment.
    ///
    /// # Errors
    ///
    /// [`LogError`] if the segments cannot be read, are damaged, or hold
    /// fewer than `size` entries.
    pub fn build(dir: &Path, size: u64) -> Result<Self, LogError> {
        let mut tree = Self::default();
        let mut first = true;
        for seg in list_segments(dir)? {
            if tree.range.size() >= size {
                break;
            }
            let mut scanner =
                SegmentScanner::open(&seg.path, u64::MAX).map_err(|e| header_err(&seg.path, e))?;
            let header = scanner.header().clone();
            if first {
                first = false;
                tree.start_at(header.first_index, header.frontier.clone())?;
            } else if header.first_index != tree.range.size()
                || header.frontier != tree.range.roots()
            {
                return Err(LogError::Corrupt {
                    index: tree.range.size(),
                    reason: format!(
                        "segment `{}` does not continue the previous one",
                        seg.path.display()
                    ),
                });
            }
            while tree.range.size() < size {
                let expected = tree.range.size();
                let leaf = match scanner.next_record() {
                    Ok(Some(r)) if r.crc_ok && r.index == expected => {
                        crate::merkle::leaf_hash(r.entry)
                    }
                    Ok(Some(_)) | Err(_) => {
                        return Err(LogError::Corrupt {
                            index: expected,
                            reason: "damaged record".to_owned(),
                        })
                    }
                    Ok(None) => break,
                };
                tree.push(leaf)?;
            }
        }
        if tree.range.size() < size {
            return Err(LogError::OutOfRange {
                index: size.saturating_sub(1),
                first: 0,
                len: tree.range.size(),
            });
        }
        Ok(tree)
    }

    fn start_at(&mut self, first_index: u64, frontier: Vec<Hash>) -> Result<(), LogError> {
        self.range = CompactRange::from_roots(first_index, frontier)?;
        self.base = slot_count(first_index);
        self.slots.clear();
        self.prefix.clear();
        let mut at = 0u64;
        let mut roots = self.range.roots().iter();
        for level in (0..64u32).rev() {
            if first_index & (1u64 << level) != 0 {
                if let Some(root) = roots.next() {
                    self.prefix.push((node_slot(at, level), *root));
                }
                at += 1u64 << level;
            }
        }
        Ok(())
    }

    /// Appends a leaf hash.
    ///
    /// # Errors
    ///
    /// [`MerkleError::TreeFull`] at `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<(), LogError> {
        let slots = &mut self.slots;
        self.range.push_with(leaf, |h| slots.push(*h))?;
        Ok(())
    }

    /// The number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The root of all leaves.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.range.root()
    }
}

impl NodeSource for MemTree {
    fn node(&self, start: u64, level: u32) -> Result<Hash, LogError> {
        let slot = node_slot(start, level);
        let found = if slot < self.base {
            self.prefix
                .iter()
                .find(|(s, _)| *s == slot)
                .map(|(_, h)| *h)
        } else {
            usize::try_from(slot - self.base)
                .ok()
                .and_then(|s| self.slots.get(s))
                .copied()
        };
        found.ok_or(LogError::OutOfRange {
            index: start,
            first: 0,
            len: self.range.size(),
        })
    }
}

pub(crate) fn header_err(path: &Path, e: HeaderError) -> LogError {
    match e {
        HeaderError::Io(e) => e,
        other => LogError::Format {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// The writer's handle on `tree.hashes`: buffered appends, flushed (not
/// fsynced) with each group commit, fsynced before each checkpoint.
#[derive(Debug)]
pub struct TreeWriter {
    out: BufWriter<File>,
    path: PathBuf,
    slots: u64,
}

/// What [`TreeWriter::open`] found.
#[derive(Debug)]
pub struct TreeOpen {
    /// The writer, positioned after the slots of `size` leaves.
    pub writer: TreeWriter,
    /// The compact range of `size` leaves recomputed while checking.
    pub range: CompactRange,
    /// Whether any slot had to be rewritten or the file was longer or
    /// shorter than the log.
    pub rebuilt: bool,
}

impl TreeWriter {
    /// Opens `dir/tree.hashes` for a log of `size` entries, checks it and
    /// rebuilds what does not match.
    ///
    /// The slots up to `trusted` (the size of the latest checkpoint, whose
    /// root is `trusted_root`; the writer fsyncs the file before signing)
    /// are accepted if their frontier gives that root; the rest is
    /// recomputed from the segments. Without a usable trusted prefix the
    /// whole file is rebuilt from the first segment.
    ///
    /// # Errors
    ///
    /// [`LogError`] on file errors or damaged segments.
    pub fn open(dir: &Path, size: u64, trusted: Option<(u64, Hash)>) -> Result<TreeOpen, LogError> {
        let path = dir.join(TREE_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        let len = file
            .metadata()
            .map_err(io_err("reading metadata of", &path))?
            .len();
        let reader = TreeFile {
            file: file.try_clone().map_err(io_err("opening", &path))?,
            path: path.clone(),
            slots: len / HASH_LEN as u64,
        };
        let segments = list_segments(dir)?;
        let first_index = segments.first().map_or(0, |s| s.first_index);
        let mut rebuilt = len != slot_count(size).saturating_mul(HASH_LEN as u64);
        // Where to start recomputing, and the compact range there.
        let mut start: Option<CompactRange> = None;
        if let Some((t, root)) = trusted {
            if t <= size && t >= first_index && reader.covers(t) {
                if let Ok(range) = frontier_at(&reader, t) {
                    if range.root() == root {
                        start = Some(range);
                    }
                }
            }
        }
        let mut stored_ok = start.is_some();
        let (mut range, base) = match start {
            Some(range) => {
                let slots = slot_count(range.size());
                (range, slots)
            }
            None => {
                rebuilt = true;
                // Full rebuild: zero everything, then write the first
                // segment's frontier nodes.
                let header = match segments.first() {
                    Some(seg) => SegmentScanner::open(&seg.path, u64::MAX)
                        .map_err(|e| header_err(&seg.path, e))?
                        .header()
                        .clone(),
                    None => crate::segment::SegmentHeader {
                        first_index: 0,
                        frontier: Vec::new(),
                    },
                };
                let range = CompactRange::from_roots(header.first_index, header.frontier)?;
                file.set_len(0).map_err(io_err("truncating", &path))?;
                file.set_len(slot_count(range.size()).saturating_mul(HASH_LEN as u64))
                    .map_err(io_err("extending", &path))?;
                let mut at = 0u64;
                let mut roots = range.roots().iter();
                for level in (0..64u32).rev() {
                    if range.size() & (1u64 << level) != 0 {
                        if let Some(root) = roots.next() {
                            file.write_all_at(
                                root,
                                node_slot(at, level).saturating_mul(HASH_LEN as u64),
                            )
                            .map_err(io_err("writing", &path))?;
                        }
                        at += 1u64 << level;
                    }
                }
                let slots = slot_count(range.size());
                (range, slots)
            }
        };
        // Recompute from `range.size()` to `size`, writing over the stored
        // slots and noting whether they differed. Reading slot `j` before
        // writing it is safe: the buffered writes are all below `j`.
        let mut file = file;
        {
            use std::io::Seek as _;
            file.seek(std::io::SeekFrom::Start(
                base.saturating_mul(HASH_LEN as u64),
            ))
            .map_err(io_err("seeking in", &path))?;
        }
        let mut writer = Self {
            out: BufWriter::with_capacity(256 * 1024, file),
            path: path.clone(),
            slots: base,
        };
        if range.size() < size {
            let mut failed: Option<LogError> = None;
            replay(&segments, &mut range, size, |h| {
                if failed.is_some() {
                    return;
                }
                if stored_ok {
                    match reader.slot(writer.slots) {
                        Ok(Some(old)) if old == *h => {}
                        Ok(_) => stored_ok = false,
                        Err(e) => failed = Some(e),
                    }
                }
                if let Err(e) = writer.append(h) {
                    failed = Some(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        if !stored_ok {
            rebuilt = true;
        }
        writer.flush()?;
        let end = writer.slots.saturating_mul(HASH_LEN as u64);
        writer
            .out
            .get_ref()
            .set_len(end)
            .map_err(io_err("truncating", &path))?;
        Ok(TreeOpen {
            writer,
            range,
            rebuilt,
        })
    }

    /// Appends one slot (buffered).
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if writing fails.
    pub fn append(&mut self, hash: &Hash) -> Result<(), LogError> {
        self.out
            .write_all(hash)
            .map_err(io_err("writing", &self.path))?;
        self.slots += 1;
        Ok(())
    }

    /// Writes buffered slots to the file (no fsync).
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if writing fails.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.out.flush().map_err(io_err("writing", &self.path))
    }

    /// Flushes and fsyncs.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if writing or syncing fails.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(io_err("syncing", &self.path))
    }

    /// Another handle on the file (to fsync it from another thread).
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the descriptor cannot be duplicated.
    pub fn sync_handle(&self) -> Result<File, LogError> {
        self.out
            .get_ref()
            .try_clone()
            .map_err(io_err("opening", &self.path))
    }

    /// The number of slots written.
    #[must_use]
    pub fn slots(&self) -> u64 {
        self.slots
    }
}

/// Pushes the leaves `range.size() .. size` read from the segments into
/// `range`, reporting every node.
fn replay(
    segments: &[crate::segment::SegmentFile],
    range: &mut CompactRange,
    size: u64,
    mut on_node: impl FnMut(&Hash),
) -> Result<(), LogError> {
    let from = range.size();
    // The last segment starting at or before `from`.
    let pos = segments.partition_point(|s| s.first_index <= from);
    for seg in segments.iter().skip(pos.saturating_sub(1)) {
        if range.size() >= size {
            break;
        }
        let mut scanner =
            SegmentScanner::open(&seg.path, u64::MAX).map_err(|e| header_err(&seg.path, e))?;
        loop {
            if range.size() >= size {
                break;
            }
            let expected = range.size();
            match scanner.next_record() {
                Ok(Some(r)) if r.crc_ok && r.index < expected => {}
                Ok(Some(r)) if r.crc_ok && r.index == expected => {
                    range.push_with(crate::merkle::leaf_hash(r.entry), &mut on_node)?;
                }
                Ok(None) => break,
                Ok(Some(_)) | Err(_) => {
                    return Err(LogError::Corrupt {
                        index: expected,
                        reason: format!("damaged record in `{}`", seg.path.display()),
                    })
                }
            }
        }
    }
    if range.size() < size {
        return Err(LogError::Corrupt {
            index: range.size(),
            reason: "the segments end before the log size".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof, leaf_hash, root_of};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn slot_layout() {
        assert_eq!(leaf_slot(0), 0);
        assert_eq!(leaf_slot(1), 1);
        assert_eq!(leaf_slot(2), 3);
        assert_eq!(leaf_slot(3), 4);
        assert_eq!(slot_count(4), 7);
        assert_eq!(node_slot(0, 2), 6);
        assert_eq!(node_slot(4, 1), 9);
    }

    #[test]
    fn mem_tree_proofs_match_the_merkle_module() {
        let ls = leaves(70);
        let mut t = MemTree::default();
        for (i, l) in ls.iter().enumerate() {
            t.push(*l).unwrap();
            let size = i as u64 + 1;
            assert_eq!(range_root(&t, 0, size).unwrap(), root_of(&ls[..=i]));
            assert_eq!(t.base + t.slots.len() as u64, slot_count(size));
            for m in 0..size {
                assert_eq!(
                    inclusion_path(&t, m, size).unwrap(),
                    inclusion_proof(&ls, m, size).unwrap(),
                    "inclusion {m} {size}"
                );
                if m > 0 {
                    assert_eq!(
                        consistency_path(&t, m, size).unwrap(),
                        consistency_proof(&ls, m, size).unwrap(),
                        "consistency {m} {size}"
                    );
                }
            }
            assert_eq!(frontier_at(&t, size).unwrap(), t.range);
        }
    }
}
