//! Read-only access to an audit log directory, without taking its lock
//! (verify, proofs, export, search).
//!
//! A reader sees the entries present when it was opened; an incomplete
//! final record (one the writer is still writing, or a torn tail not yet
//! recovered) is ignored. Random access goes through a sparse in-memory
//! offset index (one offset every [`SPARSE_EVERY`] records), built per
//! segment on first use.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::event::MAX_ENTRY_BYTES;
use crate::log::{io_err, LogError, CHECKPOINTS_FILE};
use crate::merkle::{leaf_hash, Hash};
use crate::note::{parse_checkpoint_unverified, Checkpoint};
use crate::segment::{
    be_u32, be_u64, list_segments, read_segment_header, record_crc, RecordScanner, ScanError,
    SegmentScanner, RECORD_HEADER_LEN,
};
use crate::tree::{header_err, CompactRange};

/// One offset is kept in memory per this many records.
pub const SPARSE_EVERY: u64 = 64;

/// Longest checkpoint record accepted in `checkpoints.log`.
const MAX_CHECKPOINT_RECORD: usize = 32 * 1024;

/// A checkpoint as stored in `checkpoints.log`, parsed without checking
/// its signature (verification does that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// When it was signed, microseconds since the Unix epoch.
    pub time_us: i64,
    /// The signed note.
    pub note: String,
    /// Its content.
    pub checkpoint: Checkpoint,
}

/// The JSON of one `checkpoints.log` record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointRecord {
    pub time_us: i64,
    pub size: u64,
    pub note: String,
}

/// What scanning `checkpoints.log` found.
#[derive(Debug, Default)]
pub(crate) struct CheckpointScan {
    pub list: Vec<StoredCheckpoint>,
    /// Offset of an incomplete or torn final record.
    pub torn_tail: Option<u64>,
    pub file_len: u64,
    /// Sequence number of the next record.
    pub next_seq: u64,
}

/// Reads `checkpoints.log`. A damaged final record (the one being written
/// when the process stopped) is reported as a torn tail; damage before it
/// is an error.
pub(crate) fn scan_checkpoints(path: &Path) -> Result<CheckpointScan, LogError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CheckpointScan::default()),
        Err(e) => return Err(io_err("opening", path)(e)),
    };
    let file_len = file
        .metadata()
        .map_err(io_err("reading metadata of", path))?
        .len();
    let mut scan = CheckpointScan {
        file_len,
        ..CheckpointScan::default()
    };
    let mut records = RecordScanner::new(file, path, 0, file_len)?;
    // Only the final record can be torn: each is fsynced before the next.
    let is_tail = |offset: u64| {
        file_len.saturating_sub(offset) <= (RECORD_HEADER_LEN + MAX_CHECKPOINT_RECORD) as u64
    };
    let corrupt = |offset: u64, reason: &str| LogError::Format {
        path: path.to_path_buf(),
        reason: format!("record at offset {offset}: {reason}"),
    };
    loop {
        match records.next_record() {
            Ok(None) => break,
            Ok(Some(r)) => {
                let offset = r.offset;
                let end = offset + (RECORD_HEADER_LEN + r.entry.len()) as u64;
                if !r.crc_ok || r.index != scan.next_seq {
                    if end == file_len || is_tail(offset) {
                        scan.torn_tail = Some(offset);
                        break;
                    }
                    return Err(corrupt(offset, "checksum or sequence mismatch"));
                }
                let rec: CheckpointRecord =
                    serde_json::from_slice(r.entry).map_err(|e| corrupt(offset, &e.to_string()))?;
                let checkpoint = parse_checkpoint_unverified(&rec.note)
                    .map_err(|e| corrupt(offset, &e.to_string()))?;
                if checkpoint.size != rec.size {
                    return Err(corrupt(offset, "the size does not match the note"));
                }
                scan.list.push(StoredCheckpoint {
                    time_us: rec.time_us,
                    note: rec.note,
                    checkpoint,
                });
                scan.next_seq += 1;
            }
            Err(ScanError::Io(e)) => return Err(e),
            Err(e) => {
                let offset = e.offset().unwrap_or(0);
                if is_tail(offset) {
                    scan.torn_tail = Some(offset);
                    break;
                }
                return Err(corrupt(offset, &e.to_string()));
            }
        }
    }
    Ok(scan)
}

#[derive(Debug)]
struct SegInfo {
    first_index: u64,
    /// One past the last index read from this segment.
    end_index: u64,
    path: PathBuf,
    header_len: u64,
    /// Offset after the last record read from this segment.
    end_offset: u64,
    frontier: Vec<Hash>,
    sparse: OnceLock<Result<Arc<Vec<u64>>, String>>,
    file: Mutex<Option<Arc<File>>>,
}

impl SegInfo {
    fn file(&self) -> Result<Arc<File>, LogError> {
        let mut f = self.file.lock();
        if let Some(f) = &*f {
            return Ok(f.clone());
        }
        let file = Arc::new(File::open(&self.path).map_err(io_err("opening", &self.path))?);
        *f = Some(file.clone());
        Ok(file)
    }

    /// Offsets of records `first_index + k·SPARSE_EVERY`.
    fn sparse(&self) -> Result<Arc<Vec<u64>>, LogError> {
        let built = self
            .sparse
            .get_or_init(|| build_sparse(self).map(Arc::new).map_err(|e| e.to_string()));
        built.clone().map_err(|reason| LogError::Format {
            path: self.path.clone(),
            reason,
        })
    }
}

fn build_sparse(seg: &SegInfo) -> Result<Vec<u64>, LogError> {
    let mut scanner =
        SegmentScanner::open(&seg.path, seg.end_offset).map_err(|e| header_err(&seg.path, e))?;
    let mut out = Vec::new();
    let mut expected = seg.first_index;
    while expected < seg.end_index {
        match scanner.next_record() {
            Ok(Some(r)) if r.index == expected => {
                if (expected - seg.first_index).is_multiple_of(SPARSE_EVERY) {
                    out.push(r.offset);
                }
                expected += 1;
            }
            Ok(Some(_))
            | Ok(None)
            | Err(ScanError::Incomplete { .. } | ScanError::TooLarge { .. }) => {
                return Err(LogError::Corrupt {
                    index: expected,
                    reason: format!("damaged record in `{}`", seg.path.display()),
                })
            }
            Err(ScanError::Io(e)) => return Err(e),
        }
    }
    Ok(out)
}

/// Read-only access to the log in a directory. Takes no lock.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    segs: Vec<SegInfo>,
    first: u64,
    len: u64,
}

impl LogReader {
    /// Opens the log in `dir` as it is now.
    ///
    /// # Errors
    ///
    /// [`LogError`] if the directory or a segment header cannot be read,
    /// or the segments do not follow each other.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let files = list_segments(dir)?;
        let mut segs: Vec<SegInfo> = Vec::with_capacity(files.len());
        let count = files.len();
        for (i, f) in files.iter().enumerate() {
            let last = i + 1 == count;
            let (header, header_len) = match read_segment_header(&f.path) {
                Ok(h) => h,
                // A segment being created (or torn at creation) holds no
                // entry yet.
                Err(crate::segment::HeaderError::Incomplete) if last && i > 0 => break,
                Err(e) => return Err(header_err(&f.path, e)),
            };
            if header.first_index != f.first_index {
                return Err(LogError::Format {
                    path: f.path.clone(),
                    reason: format!("the header says first index {}", header.first_index),
                });
            }
            let end_offset = std::fs::metadata(&f.path)
                .map_err(io_err("reading metadata of", &f.path))?
                .len();
            segs.push(SegInfo {
                first_index: header.first_index,
                end_index: header.first_index,
                path: f.path.clone(),
                header_len,
                end_offset,
                frontier: header.frontier,
                sparse: OnceLock::new(),
                file: Mutex::new(None),
            });
        }
        // Non-last segments end where the next begins.
        for i in 1..segs.len() {
            let next_first = segs.get(i).map_or(0, |s| s.first_index);
            if let Some(prev) = segs.get_mut(i - 1) {
                if next_first < prev.first_index {
                    return Err(LogError::Format {
                        path: prev.path.clone(),
                        reason: "segments overlap".to_owned(),
                    });
                }
                prev.end_index = next_first;
            }
        }
        // The last segment: read up to the last complete, valid record.
        if let Some(last) = segs.last_mut() {
            let mut scanner = SegmentScanner::open(&last.path, last.end_offset)
                .map_err(|e| header_err(&last.path, e))?;
            let mut sparse = Vec::new();
            let mut expected = last.first_index;
            let mut end_offset = scanner.position();
            loop {
                match scanner.next_record() {
                    Ok(Some(r)) if r.crc_ok && r.index == expected && expected < u64::MAX => {
                        if (expected - last.first_index).is_multiple_of(SPARSE_EVERY) {
                            sparse.push(r.offset);
                        }
                        expected += 1;
                        end_offset = r.offset + (RECORD_HEADER_LEN + r.entry.len()) as u64;
                    }
                    Err(ScanError::Io(e)) => return Err(e),
                    _ => break,
                }
            }
            last.end_index = expected;
            last.end_offset = end_offset;
            let _ = last.sparse.set(Ok(Arc::new(sparse)));
        }
        let first = segs.first().map_or(0, |s| s.first_index);
        let len = segs.last().map_or(0, |s| s.end_index);
        Ok(Self {
            dir: dir.to_path_buf(),
            segs,
            first,
            len,
        })
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first index present (above 0 once retention pruned old
    /// segments).
    #[must_use]
    pub fn first_index(&self) -> u64 {
        self.first
    }

    /// One past the last entry.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log holds no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == self.first
    }

    /// The compact range of the tree before the first present entry (the
    /// first segment's frontier).
    #[must_use]
    pub fn first_frontier(&self) -> &[Hash] {
        self.segs.first().map_or(&[], |s| s.frontier.as_slice())
    }

    fn segment_of(&self, index: u64) -> Result<&SegInfo, LogError> {
        if index < self.first || index >= self.len {
            return Err(LogError::OutOfRange {
                index,
                first: self.first,
                len: self.len,
            });
        }
        let pos = self.segs.partition_point(|s| s.first_index <= index);
        self.segs
            .get(pos.saturating_sub(1))
            .ok_or(LogError::OutOfRange {
                index,
                first: self.first,
                len: self.len,
            })
    }

    /// The entries from `index` to the end, in order. The iterator stops
    /// after the first error.
    pub fn iter_from(
        &self,
        index: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        LogIter {
            reader: self,
            seg: None,
            scanner: None,
            next: index.max(self.first),
            done: false,
        }
    }

    /// The entry at `index`.
    ///
    /// # Errors
    ///
    /// [`LogError::OutOfRange`] if it is not present, [`LogError::Corrupt`]
    /// if its record is damaged.
    pub fn get(&self, index: u64) -> Result<Vec<u8>, LogError> {
        let seg = self.segment_of(index)?;
        let sparse = seg.sparse()?;
        let rel = index - seg.first_index;
        let block = usize::try_from(rel / SPARSE_EVERY).unwrap_or(usize::MAX);
        let mut offset = *sparse.get(block).ok_or(LogError::Corrupt {
            index,
            reason: "missing from the offset index".to_owned(),
        })?;
        let mut at = seg.first_index + (block as u64) * SPARSE_EVERY;
        let file = seg.file()?;
        let corrupt = |reason: &str| LogError::Corrupt {
            index,
            reason: format!("{reason} in `{}`", seg.path.display()),
        };
        loop {
            let mut head = [0u8; RECORD_HEADER_LEN];
            file.read_exact_at(&mut head, offset)
                .map_err(io_err("reading", &seg.path))?;
            let len = be_u32(&head) as usize;
            let rec_index = be_u64(head.get(8..).unwrap_or_default());
            if len > MAX_ENTRY_BYTES || rec_index != at {
                return Err(corrupt("damaged record"));
            }
            if at == index {
                let mut entry = vec![0u8; len];
                file.read_exact_at(&mut entry, offset + RECORD_HEADER_LEN as u64)
                    .map_err(io_err("reading", &seg.path))?;
                if record_crc(index, &entry) != be_u32(head.get(4..).unwrap_or_default()) {
                    return Err(corrupt("checksum mismatch"));
                }
                return Ok(entry);
            }
            offset += (RECORD_HEADER_LEN + len) as u64;
            at += 1;
        }
    }

    /// The leaf hash of the entry at `index`.
    ///
    /// # Errors
    ///
    /// As [`LogReader::get`].
    pub fn leaf(&self, index: u64) -> Result<Hash, LogError> {
        Ok(leaf_hash(&self.get(index)?))
    }

    /// The compact range of the tree of the first `index` entries,
    /// computed from the frontier of the segment holding `index` and the
    /// entries before it in that segment.
    ///
    /// # Errors
    ///
    /// [`LogError::OutOfRange`] if `index` is below the first entry or
    /// beyond the end, or a read error.
    pub fn frontier_before(&self, index: u64) -> Result<CompactRange, LogError> {
        if index < self.first || index > self.len {
            return Err(LogError::OutOfRange {
                index,
                first: self.first,
                len: self.len,
            });
        }
        let pos = self.segs.partition_point(|s| s.first_index <= index);
        let Some(seg) = self.segs.get(pos.saturating_sub(1)) else {
            return Ok(CompactRange::new());
        };
        let mut range = CompactRange::from_roots(seg.first_index, seg.frontier.clone())?;
        if index > seg.first_index {
            for item in self.iter_from(seg.first_index) {
                let (i, entry) = item?;
                range.push(leaf_hash(&entry))?;
                if i + 1 >= index {
                    break;
                }
            }
        }
        Ok(range)
    }

    /// Every checkpoint in `checkpoints.log`, oldest first.
    ///
    /// # Errors
    ///
    /// [`LogError`] if the file cannot be read or a record before the
    /// last is damaged.
    pub fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, LogError> {
        Ok(scan_checkpoints(&self.dir.join(CHECKPOINTS_FILE))?.list)
    }

    /// The latest checkpoint in `checkpoints.log`.
    ///
    /// # Errors
    ///
    /// As [`LogReader::checkpoints`].
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LogError> {
        Ok(self.checkpoints()?.pop())
    }

    /// The segments: `(first index, end index, path)`.
    #[must_use]
    pub fn segments(&self) -> Vec<(u64, u64, PathBuf)> {
        self.segs
            .iter()
            .map(|s| (s.first_index, s.end_index, s.path.clone()))
            .collect()
    }

    /// The offset of the first record of a segment, for scanners.
    fn start_offset(seg: &SegInfo, index: u64) -> Result<u64, LogError> {
        if index <= seg.first_index {
            return Ok(seg.header_len);
        }
        let sparse = seg.sparse()?;
        let block = usize::try_from((index - seg.first_index) / SPARSE_EVERY).unwrap_or(usize::MAX);
        Ok(sparse.get(block).copied().unwrap_or(seg.header_len))
    }
}

struct LogIter<'a> {
    reader: &'a LogReader,
    seg: Option<usize>,
    scanner: Option<SegmentScanner>,
    next: u64,
    done: bool,
}

impl LogIter<'_> {
    fn step(&mut self) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        let r = self.reader;
        if self.next >= r.len {
            return Ok(None);
        }
        loop {
            let seg_i = match self.seg {
                Some(i) => i,
                None => {
                    let pos = r.segs.partition_point(|s| s.first_index <= self.next);
                    let i = pos.saturating_sub(1);
                    self.seg = Some(i);
                    i
                }
            };
            let Some(seg) = r.segs.get(seg_i) else {
                return Ok(None);
            };
            if self.next >= seg.end_index {
                self.seg = Some(seg_i + 1);
                self.scanner = None;
                continue;
            }
            if self.scanner.is_none() {
                let offset = LogReader::start_offset(seg, self.next)?;
                self.scanner = Some(
                    SegmentScanner::open_at(&seg.path, offset, seg.end_offset)
                        .map_err(|e| header_err(&seg.path, e))?,
                );
            }
            let Some(scanner) = self.scanner.as_mut() else {
                return Ok(None);
            };
            let corrupt = |index: u64, reason: &str| LogError::Corrupt {
                index,
                reason: format!("{reason} in `{}`", seg.path.display()),
            };
            match scanner.next_record() {
                Ok(Some(rec)) if rec.index < self.next && rec.crc_ok => continue,
                Ok(Some(rec)) if rec.index == self.next && rec.crc_ok => {
                    let out = (rec.index, rec.entry.to_vec());
                    self.next += 1;
                    return Ok(Some(out));
                }
                Ok(Some(rec)) if !rec.crc_ok => {
                    return Err(corrupt(self.next, "checksum mismatch"))
                }
                Ok(Some(_)) => return Err(corrupt(self.next, "unexpected index")),
                Ok(None) => return Err(corrupt(self.next, "the segment ends early")),
                Err(ScanError::Io(e)) => return Err(e),
                Err(e) => return Err(corrupt(self.next, &e.to_string())),
            }
        }
    }
}

impl Iterator for LogIter<'_> {
    type Item = Result<(u64, Vec<u8>), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(x)) => Some(Ok(x)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
