//! Offline verification of a log directory or an export bundle.
//!
//! Verification trusts nothing derived: it recomputes every leaf hash and
//! the tree from the entries (never reading `tree.hashes`, except for a
//! hint that names a suspect entry after a failure), checks every record
//! CRC and the index sequence, every checkpoint signature, that the root
//! recomputed at each checkpoint's size is the signed root (so all
//! checkpoints are consistent with each other and with the entries), that
//! a trusted older checkpoint given by the operator is consistent, and
//! that the log is not shorter than its latest checkpoint.
//!
//! A failure names the exact index where the index sequence or a CRC
//! breaks. An entry altered with a recomputed CRC is caught by the next
//! checkpoint: the failure then names the range between the last matching
//! checkpoint and that one (and, if `tree.hashes` still holds the original
//! leaf hashes, the suspect entry).
//!
//! Verification streams the segments with large buffered reads and does
//! not allocate or parse JSON per entry.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::bundle::{BundleCheckpoint, BundleHeader, BUNDLE_FORMAT, MAX_LINE_BYTES};
use crate::log::{read_public_keys, LogError, CHECKPOINTS_FILE};
use crate::merkle::{leaf_hash, verify_consistency, Hash};
use crate::note::{decode_hash, encode_hash, open_checkpoint_any, Checkpoint, VerifierKey};
use crate::reader::{scan_checkpoints, LogReader};
use crate::segment::{list_segments, HeaderError, ScanError, SegmentScanner};
use crate::tree::{leaf_slot, CompactRange, TreeFile};

/// What to verify against.
#[derive(Default)]
pub struct VerifyOptions {
    /// The trusted verifier key. Without it, the keys of the directory's
    /// `audit.pub` (or the bundle's header) are used, which proves
    /// integrity but not origin.
    pub public_key: Option<VerifierKey>,
    /// A signed checkpoint obtained earlier (from a witness, an auditor's
    /// records): the log must be consistent with it.
    pub from_checkpoint: Option<String>,
    /// Called now and then with (entries verified, entries expected).
    pub progress: Option<Box<dyn Fn(u64, u64) + Send + Sync>>,
}

impl fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("public_key", &self.public_key)
            .field("from_checkpoint", &self.from_checkpoint)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// The kind of a verification failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A record's CRC does not match its index and entry: the entry (or
    /// its framing) was altered.
    AlteredEntry,
    /// Entries are missing: the index sequence skips ahead.
    MissingEntry,
    /// An extra entry: an index appears twice.
    InsertedEntry,
    /// Entries are out of order: a skipped index appears later.
    Reordered,
    /// The log (or a segment) ends early: it is shorter than a
    /// checkpoint, or a segment ends inside a record.
    Truncated,
    /// A checkpoint's signature does not verify with the trusted keys.
    BadCheckpointSignature,
    /// The root recomputed at a checkpoint's size is not the signed root.
    CheckpointMismatch,
    /// A segment header is invalid or does not continue the previous
    /// segment.
    BadSegmentHeader,
    /// Something asked for cannot be checked (a trusted checkpoint older
    /// than the first retained entry, no key).
    Unverifiable,
    /// A file is malformed (checkpoint history, bundle).
    Malformed,
    /// A file could not be read.
    Io,
}

impl FailureKind {
    /// Stable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::AlteredEntry => "altered_entry",
            FailureKind::MissingEntry => "missing_entry",
            FailureKind::InsertedEntry => "inserted_entry",
            FailureKind::Reordered => "reordered",
            FailureKind::Truncated => "truncated",
            FailureKind::BadCheckpointSignature => "bad_checkpoint_signature",
            FailureKind::CheckpointMismatch => "checkpoint_mismatch",
            FailureKind::BadSegmentHeader => "bad_segment_header",
            FailureKind::Unverifiable => "unverifiable",
            FailureKind::Malformed => "malformed",
            FailureKind::Io => "io",
        }
    }
}

/// Why verification failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyFailure {
    /// The first index known to be bad (for a checkpoint mismatch, the
    /// first index of the range it covers).
    pub first_bad_index: Option<u64>,
    /// What is wrong.
    pub kind: FailureKind,
    /// Explanation for the operator.
    pub message: String,
    /// For a checkpoint mismatch: the entries `[start, end)` between the
    /// last checkpoint that matched and the one that did not.
    pub range: Option<(u64, u64)>,
    /// For a checkpoint mismatch: the first entry whose leaf hash differs
    /// from the one `tree.hashes` recorded when it was written (a hint:
    /// `tree.hashes` is not signed).
    pub suspect_index: Option<u64>,
}

impl VerifyFailure {
    fn new(kind: FailureKind, index: Option<u64>, message: impl Into<String>) -> Self {
        Self {
            first_bad_index: index,
            kind,
            message: message.into(),
            range: None,
            suspect_index: None,
        }
    }

    fn from_log(e: &LogError) -> Self {
        let (kind, index) = match e {
            LogError::Io { .. } => (FailureKind::Io, None),
            LogError::Corrupt { index, .. } => (FailureKind::Malformed, Some(*index)),
            _ => (FailureKind::Malformed, None),
        };
        Self::new(kind, index, e.to_string())
    }
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.as_str())?;
        if let Some(i) = self.first_bad_index {
            write!(f, " at index {i}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for VerifyFailure {}

/// What a successful verification checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The log's origin (from its checkpoints or the bundle header).
    pub origin: Option<String>,
    /// The first index present.
    pub first_index: u64,
    /// One past the last entry.
    pub size: u64,
    /// The recomputed root at `size`, base64.
    pub root: String,
    /// Segments read (0 for a bundle).
    pub segments: usize,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints_checked: usize,
    /// Checkpoints whose signature was checked but whose size is outside
    /// the entries present (before a pruned start, or beyond a bundle).
    pub checkpoints_skipped: usize,
    /// The latest checkpoint's size.
    pub latest_checkpoint_size: Option<u64>,
    /// The largest size at which the recomputed root matched a signed
    /// root: entries from there to `size` are not yet covered by a
    /// signature.
    pub signed_size: u64,
    /// The size of the trusted checkpoint checked, if one was given.
    pub from_checkpoint_size: Option<u64>,
    /// The verifier keys used.
    pub keys: Vec<String>,
    /// Whether the keys came from the directory or the bundle itself
    /// rather than from the caller (integrity, not origin, is proven).
    pub keys_from_data: bool,
    /// Bytes of an incomplete final record that were ignored (a record
    /// being written, or a torn tail not yet recovered).
    pub ignored_tail_bytes: u64,
    /// Time taken, microseconds.
    pub elapsed_us: u64,
    /// Entries verified per second.
    pub entries_per_sec: f64,
}

/// A root the recomputed tree must reach.
#[derive(Debug, Clone)]
struct Target {
    size: u64,
    root: Hash,
    label: String,
}

/// Recomputes the tree leaf by leaf and checks the targets.
struct Checker {
    range: CompactRange,
    targets: Vec<Target>,
    next: usize,
    /// Size of the next checkpoint to check; `None` when none is left (no
    /// sentinel size: every `u64` is a possible tree size).
    next_size: Option<u64>,
    last_ok: u64,
    checked: usize,
    skipped: usize,
}

impl Checker {
    fn new(range: CompactRange, mut targets: Vec<Target>) -> Result<Self, VerifyFailure> {
        targets.sort_by_key(|t| t.size);
        let start = range.size();
        let mut c = Self {
            last_ok: start,
            range,
            targets,
            next: 0,
            next_size: None,
            checked: 0,
            skipped: 0,
        };
        while c.targets.get(c.next).is_some_and(|t| t.size < start) {
            c.next += 1;
            c.skipped += 1;
        }
        c.set_next();
        c.check()?;
        Ok(c)
    }

    fn set_next(&mut self) {
        self.next_size = self.targets.get(self.next).map(|t| t.size);
    }

    #[inline]
    fn push(&mut self, leaf: Hash) -> Result<(), VerifyFailure> {
        if self.range.push(leaf).is_err() {
            return Err(VerifyFailure::new(
                FailureKind::Malformed,
                Some(self.range.size()),
                "the tree is full",
            ));
        }
        if Some(self.range.size()) == self.next_size {
            self.check()?;
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), VerifyFailure> {
        let size = self.range.size();
        if self.next_size != Some(size) {
            return Ok(());
        }
        let root = self.range.root();
        while let Some(t) = self.targets.get(self.next).filter(|t| t.size == size) {
            if t.root != root {
                let mut f = VerifyFailure::new(
                    FailureKind::CheckpointMismatch,
                    Some(self.last_ok),
                    format!(
                        "the entries {}..{} do not produce the root signed in {} (size {}): an entry in this range was altered, or the checkpoint belongs to another history",
                        self.last_ok, size, t.label, size
                    ),
                );
                f.range = Some((self.last_ok, size));
                return Err(f);
            }
            self.checked += 1;
            self.next += 1;
        }
        self.last_ok = size;
        self.set_next();
        Ok(())
    }

    /// Fails if a target is beyond the entries.
    fn finish(&self) -> Result<(), VerifyFailure> {
        let size = self.range.size();
        if let Some(t) = self.targets.get(self.next) {
            return Err(VerifyFailure::new(
                FailureKind::Truncated,
                Some(size),
                format!(
                    "the log ends at {size} but {} has size {}: entries {size}..{} are missing",
                    t.label, t.size, t.size
                ),
            ));
        }
        Ok(())
    }
}

fn load_keys(
    opts: &VerifyOptions,
    fallback: impl FnOnce() -> Result<Vec<VerifierKey>, VerifyFailure>,
) -> Result<(Vec<VerifierKey>, bool), VerifyFailure> {
    match &opts.public_key {
        Some(k) => Ok((vec![k.clone()], false)),
        None => {
            let keys = fallback()?;
            if keys.is_empty() {
                return Err(VerifyFailure::new(
                    FailureKind::Unverifiable,
                    None,
                    "no verifier key",
                ));
            }
            Ok((keys, true))
        }
    }
}

/// Checks the trusted old checkpoint and turns it into a target.
fn from_target(
    opts: &VerifyOptions,
    keys: &[VerifierKey],
    origin: Option<&str>,
) -> Result<Option<Target>, VerifyFailure> {
    let Some(note) = &opts.from_checkpoint else {
        return Ok(None);
    };
    let cp = open_checkpoint_any(note, keys).map_err(|e| {
        VerifyFailure::new(
            FailureKind::BadCheckpointSignature,
            None,
            format!("the trusted checkpoint does not verify: {e}"),
        )
    })?;
    if let Some(o) = origin {
        if cp.origin != o {
            return Err(VerifyFailure::new(
                FailureKind::CheckpointMismatch,
                None,
                format!("the trusted checkpoint is for `{}`, not `{o}`", cp.origin),
            ));
        }
    }
    Ok(Some(Target {
        size: cp.size,
        root: cp.root,
        label: "the trusted checkpoint".to_owned(),
    }))
}

/// The verified stored checkpoints.
struct StoredTargets {
    targets: Vec<Target>,
    origin: Option<String>,
    latest: Option<u64>,
}

/// Checks signatures and order of stored checkpoints; returns targets.
fn checkpoint_targets<'a>(
    list: impl Iterator<Item = (usize, &'a str, &'a Checkpoint, i64)>,
    keys: &[VerifierKey],
) -> Result<StoredTargets, VerifyFailure> {
    let mut targets = Vec::new();
    let mut origin: Option<String> = None;
    let mut prev: Option<(u64, Hash)> = None;
    for (seq, note, stored, time_us) in list {
        let label = format!(
            "checkpoint #{seq} (size {}, signed at {time_us} µs)",
            stored.size
        );
        let cp = open_checkpoint_any(note, keys).map_err(|e| {
            VerifyFailure::new(
                FailureKind::BadCheckpointSignature,
                Some(stored.size),
                format!("{label} does not verify: {e}"),
            )
        })?;
        match &origin {
            None => origin = Some(cp.origin.clone()),
            Some(o) if *o != cp.origin => {
                return Err(VerifyFailure::new(
                    FailureKind::CheckpointMismatch,
                    Some(cp.size),
                    format!("{label} is for origin `{}`, not `{o}`", cp.origin),
                ))
            }
            Some(_) => {}
        }
        if let Some((psize, proot)) = prev {
            if cp.size < psize || (cp.size == psize && cp.root != proot) {
                return Err(VerifyFailure::new(
                    FailureKind::CheckpointMismatch,
                    Some(cp.size),
                    format!("{label} does not follow the previous checkpoint (size {psize})"),
                ));
            }
        }
        prev = Some((cp.size, cp.root));
        targets.push(Target {
            size: cp.size,
            root: cp.root,
            label,
        });
    }
    Ok(StoredTargets {
        targets,
        origin,
        latest: prev.map(|(s, _)| s),
    })
}

/// How often progress is reported.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Records to look ahead when classifying an index anomaly.
const LOOKAHEAD: usize = 1 << 20;

/// Verifies the log in `dir`.
///
/// # Errors
///
/// A [`VerifyFailure`] naming the first problem found.
pub fn verify_dir(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyFailure> {
    verify_dir_inner(dir, opts).map_err(|f| add_suspect(dir, f))
}

fn verify_dir_inner(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyFailure> {
    let started = Instant::now();
    let (keys, keys_from_data) = load_keys(opts, || {
        read_public_keys(dir).map_err(|e| {
            VerifyFailure::new(
                FailureKind::Unverifiable,
                None,
                format!("no verifier key: {e}"),
            )
        })
    })?;
    let scan = scan_checkpoints(&dir.join(CHECKPOINTS_FILE)).map_err(|e| {
        VerifyFailure::new(
            FailureKind::Malformed,
            None,
            format!("the checkpoint history is damaged: {e}"),
        )
    })?;
    let StoredTargets {
        mut targets,
        origin,
        latest,
    } = checkpoint_targets(
        scan.list
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.note.as_str(), &c.checkpoint, c.time_us)),
        &keys,
    )?;
    let from = from_target(opts, &keys, origin.as_deref())?;
    let from_size = from.as_ref().map(|t| t.size);
    targets.extend(from.clone());

    let segments = list_segments(dir).map_err(|e| VerifyFailure::from_log(&e))?;
    let seg_count = segments.len();
    let mut checker: Option<Checker> = None;
    let mut ignored_tail_bytes = 0u64;
    let mut expected_total = latest.unwrap_or(0);
    let mut last_progress = 0u64;
    let mut header_mismatch: Option<VerifyFailure> = None;
    for (si, seg) in segments.iter().enumerate() {
        let is_last = si + 1 == seg_count;
        let mut scanner = match SegmentScanner::open(&seg.path, u64::MAX) {
            Ok(s) => s,
            Err(HeaderError::Incomplete) if is_last && si > 0 => {
                // A segment being created: it holds no record yet.
                break;
            }
            Err(HeaderError::Io(e)) => return Err(VerifyFailure::from_log(&e)),
            Err(e) => {
                return Err(VerifyFailure::new(
                    FailureKind::BadSegmentHeader,
                    Some(seg.first_index),
                    format!("`{}`: {e}", seg.path.display()),
                ))
            }
        };
        let header = scanner.header().clone();
        if header.first_index != seg.first_index {
            return Err(VerifyFailure::new(
                FailureKind::BadSegmentHeader,
                Some(seg.first_index),
                format!(
                    "`{}` holds the header of index {}",
                    seg.path.display(),
                    header.first_index
                ),
            ));
        }
        let c = match checker.as_mut() {
            None => {
                let range = CompactRange::from_roots(header.first_index, header.frontier.clone())
                    .map_err(|e| VerifyFailure::from_log(&e))?;
                if let Some(f) = &from {
                    if f.size < header.first_index {
                        return Err(VerifyFailure::new(
                            FailureKind::Unverifiable,
                            Some(f.size),
                            format!(
                                "the trusted checkpoint (size {}) is older than the first retained entry ({}); verify the archived bundle",
                                f.size, header.first_index
                            ),
                        ));
                    }
                }
                checker.insert(Checker::new(range, std::mem::take(&mut targets))?)
            }
            Some(c) => {
                let expected = c.range.size();
                if header.first_index > expected {
                    return Err(VerifyFailure::new(
                        FailureKind::MissingEntry,
                        Some(expected),
                        format!(
                            "entries {expected}..{} are missing (no segment holds them)",
                            header.first_index
                        ),
                    ));
                }
                if header.first_index < expected {
                    return Err(VerifyFailure::new(
                        FailureKind::InsertedEntry,
                        Some(header.first_index),
                        format!(
                            "`{}` starts at {} but the previous segment ends at {expected}",
                            seg.path.display(),
                            header.first_index
                        ),
                    ));
                }
                if header.frontier != c.range.roots() && header_mismatch.is_none() {
                    // Either an entry before this segment was rewritten
                    // (with a valid CRC) or the header was forged: the
                    // next checkpoint decides. Verification goes on with
                    // the recomputed tree.
                    header_mismatch = Some(VerifyFailure::new(
                        FailureKind::BadSegmentHeader,
                        Some(header.first_index),
                        format!(
                            "the frontier in the header of `{}` does not match the entries before it, which match the checkpoints",
                            seg.path.display()
                        ),
                    ));
                }
                c
            }
        };
        expected_total = expected_total.max(header.first_index);
        loop {
            let expected = c.range.size();
            let rec = match scanner.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(ScanError::Incomplete { offset }) if is_last => {
                    ignored_tail_bytes = std::fs::metadata(&seg.path)
                        .map_or(0, |m| m.len().saturating_sub(offset));
                    break;
                }
                Err(ScanError::Incomplete { offset }) => {
                    return Err(VerifyFailure::new(
                        FailureKind::Truncated,
                        Some(expected),
                        format!(
                            "`{}` ends inside the record at offset {offset}",
                            seg.path.display()
                        ),
                    ))
                }
                Err(ScanError::TooLarge { offset, len }) => {
                    return Err(VerifyFailure::new(
                        FailureKind::AlteredEntry,
                        Some(expected),
                        format!(
                            "the record at offset {offset} of `{}` declares {len} bytes: its framing was altered",
                            seg.path.display()
                        ),
                    ))
                }
                Err(ScanError::Io(e)) => return Err(VerifyFailure::from_log(&e)),
            };
            if !rec.crc_ok {
                return Err(VerifyFailure::new(
                    FailureKind::AlteredEntry,
                    Some(expected),
                    format!(
                        "the record at offset {} of `{}` fails its checksum: the entry was altered",
                        rec.offset,
                        seg.path.display()
                    ),
                ));
            }
            if rec.index != expected {
                let (offset, found) = (rec.offset, rec.index);
                return Err(classify(&seg.path, offset, expected, found));
            }
            c.push(leaf_hash(rec.entry))?;
            if let Some(f) = &header_mismatch {
                if f.first_bad_index.is_some_and(|i| c.last_ok >= i) {
                    return Err(f.clone());
                }
            }
            if let Some(p) = &opts.progress {
                let done = expected + 1;
                if done - last_progress >= PROGRESS_EVERY {
                    last_progress = done;
                    p(done, expected_total.max(done));
                }
            }
        }
    }
    let checker = match checker {
        Some(c) => c,
        None => Checker::new(CompactRange::new(), targets)?,
    };
    checker.finish()?;
    if let Some(mut f) = header_mismatch {
        f.message = f.message.replace(
            "which match the checkpoints",
            "and no later checkpoint decides whether the entries or the header were altered",
        );
        return Err(f);
    }
    let size = checker.range.size();
    if let Some(p) = &opts.progress {
        p(size, size);
    }
    let first_index = segments.first().map_or(0, |s| s.first_index);
    let elapsed = started.elapsed();
    let n = size.saturating_sub(first_index);
    Ok(VerifyReport {
        origin,
        first_index,
        size,
        root: encode_hash(&checker.range.root()),
        segments: seg_count,
        checkpoints_checked: checker.checked,
        checkpoints_skipped: checker.skipped,
        latest_checkpoint_size: latest,
        signed_size: checker.last_ok,
        from_checkpoint_size: from_size,
        keys: keys.iter().map(ToString::to_string).collect(),
        keys_from_data,
        ignored_tail_bytes,
        elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        entries_per_sec: rate(n, elapsed.as_secs_f64()),
    })
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Names why the record at `offset` holds index `found` instead of
/// `expected`: a later occurrence of `expected` means reordering; none
/// means entries are missing; an index already seen means an insertion.
fn classify(path: &Path, offset: u64, expected: u64, found: u64) -> VerifyFailure {
    if found < expected {
        return VerifyFailure::new(
            FailureKind::InsertedEntry,
            Some(found),
            format!(
                "the record at offset {offset} of `{}` repeats index {found} (expected {expected}): an entry was inserted",
                path.display()
            ),
        );
    }
    let mut reappears = false;
    if let Ok(mut s) = SegmentScanner::open_at(path, offset, u64::MAX) {
        for _ in 0..LOOKAHEAD {
            match s.next_record() {
                Ok(Some(r)) if r.index == expected => {
                    reappears = true;
                    break;
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
    if reappears {
        VerifyFailure::new(
            FailureKind::Reordered,
            Some(expected),
            format!(
                "entry {expected} appears after entry {found} in `{}`: entries were reordered",
                path.display()
            ),
        )
    } else {
        VerifyFailure::new(
            FailureKind::MissingEntry,
            Some(expected),
            format!(
                "entries {expected}..{found} are missing from `{}`",
                path.display()
            ),
        )
    }
}

/// For a checkpoint mismatch, finds the first entry in the range whose
/// leaf hash differs from the one recorded in `tree.hashes`.
fn add_suspect(dir: &Path, mut f: VerifyFailure) -> VerifyFailure {
    let Some((lo, hi)) = f
        .range
        .filter(|_| f.kind == FailureKind::CheckpointMismatch)
    else {
        return f;
    };
    let (Ok(tree), Ok(reader)) = (TreeFile::open(dir), LogReader::open(dir)) else {
        return f;
    };
    for item in reader.iter_from(lo) {
        let Ok((i, entry)) = item else { break };
        if i >= hi {
            break;
        }
        match tree.slot(leaf_slot(i)) {
            Ok(Some(stored)) if stored != leaf_hash(&entry) => {
                f.suspect_index = Some(i);
                f.message.push_str(&format!(
                    "; entry {i} differs from the leaf hash recorded when it was written"
                ));
                break;
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    f
}

/// One line of a bundle after the header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine<'a> {
    index: u64,
    #[serde(borrow, default)]
    entry: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    entry_b64: Option<String>,
}

/// Reads one line of at most [`MAX_LINE_BYTES`] into `buf` (without the
/// newline); `false` at the end of the file.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>, line_no: u64) -> Result<bool, VerifyFailure> {
    buf.clear();
    let n = r
        .by_ref()
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(|e| {
            VerifyFailure::new(FailureKind::Io, None, format!("reading the bundle: {e}"))
        })?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if n > MAX_LINE_BYTES {
        return Err(VerifyFailure::new(
            FailureKind::Malformed,
            None,
            format!("line {line_no} of the bundle is too long"),
        ));
    }
    Ok(true)
}

/// Verifies an export bundle with the same checks as [`verify_dir`].
///
/// # Errors
///
/// A [`VerifyFailure`] naming the first problem found.
pub fn verify_bundle(path: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyFailure> {
    let started = Instant::now();
    let file = File::open(path).map_err(|e| {
        VerifyFailure::new(
            FailureKind::Io,
            None,
            format!("opening `{}`: {e}", path.display()),
        )
    })?;
    let mut r = BufReader::with_capacity(1024 * 1024, file);
    let mut line = Vec::new();
    let malformed = |line_no: u64, what: String| {
        VerifyFailure::new(
            FailureKind::Malformed,
            None,
            format!("line {line_no} of the bundle: {what}"),
        )
    };
    if !read_line(&mut r, &mut line, 1)? {
        return Err(malformed(1, "the bundle is empty".to_owned()));
    }
    let header: BundleHeader =
        serde_json::from_slice(&line).map_err(|e| malformed(1, e.to_string()))?;
    if header.format != BUNDLE_FORMAT {
        return Err(malformed(1, format!("unknown format `{}`", header.format)));
    }
    let (keys, keys_from_data) = load_keys(opts, || {
        std::iter::once(&header.verifier_key)
            .chain(&header.other_keys)
            .map(|k| VerifierKey::parse(k).map_err(|e| malformed(1, e.to_string())))
            .collect()
    })?;
    let frontier = header
        .frontier
        .iter()
        .map(|h| {
            decode_hash(h)
                .ok_or_else(|| malformed(1, "a frontier hash is not base64 of 32 bytes".to_owned()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start_range = CompactRange::from_roots(header.first_index, frontier)
        .map_err(|_| malformed(1, "the frontier does not match first_index".to_owned()))?;

    // One pass: leaf hashes and indices of entries, and checkpoint lines.
    let mut indices: Vec<u64> = Vec::new();
    let mut leaves: Vec<Hash> = Vec::new();
    let mut cps: Vec<BundleCheckpoint> = Vec::new();
    let mut line_no = 1u64;
    loop {
        line_no += 1;
        if !read_line(&mut r, &mut line, line_no)? {
            break;
        }
        if line.starts_with(b"{\"index\"") {
            let e: EntryLine<'_> =
                serde_json::from_slice(&line).map_err(|e| malformed(line_no, e.to_string()))?;
            let leaf = match (e.entry, &e.entry_b64) {
                (Some(raw), None) => leaf_hash(raw.get().as_bytes()),
                (None, Some(b)) => leaf_hash(
                    &B64.decode(b)
                        .map_err(|_| malformed(line_no, "entry_b64 is not base64".to_owned()))?,
                ),
                _ => {
                    return Err(malformed(
                        line_no,
                        "an entry line needs one of entry or entry_b64".to_owned(),
                    ))
                }
            };
            indices.push(e.index);
            leaves.push(leaf);
        } else if line.starts_with(b"{\"checkpoint\"") {
            cps.push(serde_json::from_slice(&line).map_err(|e| malformed(line_no, e.to_string()))?);
        } else if !line.is_empty() {
            return Err(malformed(line_no, "unknown line".to_owned()));
        }
    }

    // Index sequence.
    for (pos, &found) in indices.iter().enumerate() {
        let expected = header.first_index.saturating_add(pos as u64);
        if found == expected {
            continue;
        }
        return Err(if found < expected {
            VerifyFailure::new(
                FailureKind::InsertedEntry,
                Some(found),
                format!(
                    "index {found} appears again after {}",
                    expected.saturating_sub(1)
                ),
            )
        } else if indices
            .get(pos..)
            .is_some_and(|rest| rest.contains(&expected))
        {
            VerifyFailure::new(
                FailureKind::Reordered,
                Some(expected),
                format!("entry {expected} appears after entry {found}"),
            )
        } else {
            VerifyFailure::new(
                FailureKind::MissingEntry,
                Some(expected),
                format!("entries {expected}..{found} are missing"),
            )
        });
    }
    let end = header
        .first_index
        .checked_add(leaves.len() as u64)
        .ok_or_else(|| malformed(1, "first_index is too large".to_owned()))?;

    // Checkpoints: signatures, then the roots inside the range.
    let mut parsed: Vec<Checkpoint> = Vec::with_capacity(cps.len());
    for (i, c) in cps.iter().enumerate() {
        let cp = open_checkpoint_any(&c.checkpoint, &keys).map_err(|e| {
            let size = crate::note::parse_checkpoint_unverified(&c.checkpoint)
                .ok()
                .map(|c| c.size);
            VerifyFailure::new(
                FailureKind::BadCheckpointSignature,
                size,
                format!("checkpoint {i} of the bundle does not verify: {e}"),
            )
        })?;
        if cp.origin != header.origin {
            return Err(VerifyFailure::new(
                FailureKind::CheckpointMismatch,
                Some(cp.size),
                format!(
                    "checkpoint {i} is for origin `{}`, not `{}`",
                    cp.origin, header.origin
                ),
            ));
        }
        parsed.push(cp);
    }
    let mut targets = Vec::new();
    let mut beyond = 0usize;
    for (i, (c, cp)) in cps.iter().zip(&parsed).enumerate() {
        if c.consistency_from.is_none() && cp.size <= end {
            targets.push(Target {
                size: cp.size,
                root: cp.root,
                label: format!("checkpoint {i} of the bundle"),
            });
        } else if c.consistency_from.is_none() {
            beyond += 1;
        }
    }
    let from = from_target(opts, &keys, Some(&header.origin))?;
    if let Some(f) = &from {
        if f.size < header.first_index || f.size > end {
            return Err(VerifyFailure::new(
                FailureKind::Unverifiable,
                Some(f.size),
                format!(
                    "the trusted checkpoint (size {}) is outside the bundle ({}..{end})",
                    f.size, header.first_index
                ),
            ));
        }
    }
    let from_size = from.as_ref().map(|t| t.size);
    targets.extend(from);
    let mut checker = Checker::new(start_range, targets)?;
    for (pos, leaf) in leaves.iter().enumerate() {
        checker.push(*leaf)?;
        if let Some(p) = &opts.progress {
            if (pos as u64).is_multiple_of(PROGRESS_EVERY) {
                p(pos as u64, leaves.len() as u64);
            }
        }
    }
    checker.finish()?;
    if end < header.end_index {
        return Err(VerifyFailure::new(
            FailureKind::Truncated,
            Some(end),
            format!(
                "the bundle ends at {end} but its header says {}",
                header.end_index
            ),
        ));
    }
    if end > header.end_index {
        return Err(VerifyFailure::new(
            FailureKind::InsertedEntry,
            Some(header.end_index),
            format!(
                "the bundle holds entries beyond its end {}",
                header.end_index
            ),
        ));
    }
    // Extensions: consistency from the end of the bundle to a later
    // checkpoint.
    let root = checker.range.root();
    let mut signed = checker.last_ok;
    let mut checked = checker.checked;
    for (c, cp) in cps.iter().zip(&parsed) {
        let Some(from) = c.consistency_from else {
            continue;
        };
        if from != end {
            return Err(VerifyFailure::new(
                FailureKind::Malformed,
                Some(from),
                format!("a consistency proof starts at {from}, not at the bundle's end {end}"),
            ));
        }
        let proof = c
            .proof
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|h| decode_hash(h))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                VerifyFailure::new(
                    FailureKind::Malformed,
                    Some(end),
                    "a proof hash is not base64 of 32 bytes",
                )
            })?;
        if let Err(e) = verify_consistency(end, cp.size, &root, &cp.root, &proof) {
            let mut f = VerifyFailure::new(
                FailureKind::CheckpointMismatch,
                Some(signed),
                format!(
                    "the entries {signed}..{end} are not consistent with the checkpoint at size {}: {e}",
                    cp.size
                ),
            );
            f.range = Some((signed, end));
            return Err(f);
        }
        signed = end;
        checked += 1;
    }
    let elapsed = started.elapsed();
    Ok(VerifyReport {
        origin: Some(header.origin.clone()),
        first_index: header.first_index,
        size: end,
        root: encode_hash(&root),
        segments: 0,
        checkpoints_checked: checked,
        checkpoints_skipped: checker.skipped + beyond,
        latest_checkpoint_size: parsed.iter().map(|c| c.size).max(),
        signed_size: signed,
        from_checkpoint_size: from_size,
        keys: keys.iter().map(ToString::to_string).collect(),
        keys_from_data,
        ignored_tail_bytes: 0,
        elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        entries_per_sec: rate(leaves.len() as u64, elapsed.as_secs_f64()),
    })
}
