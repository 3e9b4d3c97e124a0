//! Append-only segment files and their record framing.
//!
//! The log is a sequence of files `seg-<first index, 20 digits>.log`.
//! Each starts with a header:
//!
//! | bytes  | field                                                        |
//! |--------|--------------------------------------------------------------|
//! | 8      | magic `RMPAUD01`                                             |
//! | 2      | format version, u16 big-endian (1)                           |
//! | 2      | flags, u16 big-endian (0)                                    |
//! | 8      | first index, u64 big-endian                                  |
//! | 4      | frontier count `c`, u32 big-endian (= popcount(first index)) |
//! | 32 × c | frontier: roots of the perfect subtrees of the tree of the first `first index` entries, largest first |
//! | 4      | CRC32C of all preceding header bytes, big-endian             |
//!
//! followed by records:
//!
//! | bytes | field                                                    |
//! |-------|----------------------------------------------------------|
//! | 4     | entry length `n`, u32 big-endian (≤ `MAX_ENTRY_BYTES`)   |
//! | 4     | CRC32C of (index ‖ entry), big-endian                    |
//! | 8     | index, u64 big-endian                                    |
//! | n     | entry                                                    |
//!
//! The frontier lets verification start at any segment, so old segments
//! can be archived and removed. Parsing never panics and never reads
//! more than one record's declared length, which is bounded.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::event::MAX_ENTRY_BYTES;
use crate::log::{io_err, LogError};
use crate::merkle::{Hash, HASH_LEN};

/// The magic bytes at the start of every segment.
pub const MAGIC: [u8; 8] = *b"RMPAUD01";

/// The segment format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Length of the fixed part of a segment header (before the frontier).
const HEADER_FIXED_LEN: usize = 24;

/// Length of a record's framing (length, CRC, index).
pub const RECORD_HEADER_LEN: usize = 16;

/// Most frontier hashes a header can hold (one per bit of a u64 index).
pub const MAX_FRONTIER: usize = 64;

/// Longest possible segment header.
pub const MAX_HEADER_LEN: usize = HEADER_FIXED_LEN + MAX_FRONTIER * HASH_LEN + 4;

/// Default size at which the writer starts a new segment.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Size of the read buffer of scanners.
const SCAN_BUFFER: usize = 4 * 1024 * 1024;

/// The header of a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Index of the first record of the segment.
    pub first_index: u64,
    /// Roots of the perfect subtrees of the tree of all entries before
    /// `first_index`, largest (leftmost) first.
    pub frontier: Vec<Hash>,
}

/// Why a segment header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The file ends inside the header (a segment torn at creation).
    #[error("the segment header is incomplete")]
    Incomplete,
    /// The header is invalid.
    #[error("invalid segment header: {0}")]
    Invalid(&'static str),
    /// Reading failed.
    #[error(transparent)]
    Io(LogError),
}

impl SegmentHeader {
    /// A header, checking that the frontier has one hash per set bit of
    /// `first_index`.
    ///
    /// # Errors
    ///
    /// [`HeaderError::Invalid`] if the frontier length is wrong.
    pub fn new(first_index: u64, frontier: Vec<Hash>) -> Result<Self, HeaderError> {
        if frontier.len() != first_index.count_ones() as usize {
            return Err(HeaderError::Invalid(
                "the frontier does not match the first index",
            ));
        }
        Ok(Self {
            first_index,
            frontier,
        })
    }

    /// Length of the encoded header.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        HEADER_FIXED_LEN + self.frontier.len() * HASH_LEN + 4
    }

    /// The encoded header.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&self.first_index.to_be_bytes());
        let count = u32::try_from(self.frontier.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for h in &self.frontier {
            out.extend_from_slice(h);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// How many bytes the header starting with `prefix` needs in total,
    /// if `prefix` holds at least the fixed part.
    fn needed_len(prefix: &[u8]) -> Result<Option<usize>, HeaderError> {
        let Some(count) = prefix.get(20..24) else {
            return Ok(None);
        };
        let count = be_u32(count) as usize;
        if count > MAX_FRONTIER {
            return Err(HeaderError::Invalid("the frontier is too long"));
        }
        Ok(Some(HEADER_FIXED_LEN + count * HASH_LEN + 4))
    }

    /// Decodes a header from the start of `buf`; returns it and its
    /// length.
    ///
    /// # Errors
    ///
    /// [`HeaderError::Incomplete`] if `buf` ends inside the header,
    /// [`HeaderError::Invalid`] if it is not a valid header.
    pub fn decode(buf: &[u8]) -> Result<(Self, usize), HeaderError> {
        let n = buf.len().min(MAGIC.len());
        if buf.get(..n) != MAGIC.get(..n) {
            return Err(HeaderError::Invalid("bad magic"));
        }
        let magic = buf.get(..8).ok_or(HeaderError::Incomplete)?;
        if magic != MAGIC {
            return Err(HeaderError::Invalid("bad magic"));
        }
        let len = Self::needed_len(buf)?.ok_or(HeaderError::Incomplete)?;
        let all = buf.get(..len).ok_or(HeaderError::Incomplete)?;
        let (body, crc) = all.split_at(len - 4);
        if crc32c::crc32c(body) != be_u32(crc) {
            return Err(HeaderError::Invalid("header checksum mismatch"));
        }
        let version = u16::from_be_bytes([byte(body, 8), byte(body, 9)]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Invalid("unsupported format version"));
        }
        if byte(body, 10) != 0 || byte(body, 11) != 0 {
            return Err(HeaderError::Invalid("unknown header flags"));
        }
        let first_index = be_u64(body.get(12..20).unwrap_or_default());
        let frontier = body
            .get(HEADER_FIXED_LEN..)
            .unwrap_or_default()
            .chunks_exact(HASH_LEN)
            .map(|c| {
                let mut h = [0u8; HASH_LEN];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok((Self::new(first_index, frontier)?, len))
    }
}

fn byte(buf: &[u8], i: usize) -> u8 {
    buf.get(i).copied().unwrap_or(0)
}

/// Big-endian u32 of the first four bytes (zero-padded if shorter).
pub(crate) fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    for (o, i) in a.iter_mut().zip(b) {
        *o = *i;
    }
    u32::from_be_bytes(a)
}

/// Big-endian u64 of the first eight bytes (zero-padded if shorter).
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    for (o, i) in a.iter_mut().zip(b) {
        *o = *i;
    }
    u64::from_be_bytes(a)
}

/// The file name of the segment starting at `first_index`.
#[must_use]
pub fn segment_file_name(first_index: u64) -> String {
    format!("seg-{first_index:020}.log")
}

/// The first index encoded in a segment file name, if it is one.
#[must_use]
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment file found in the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// The first index, from the file name.
    pub first_index: u64,
    /// The path.
    pub path: PathBuf,
}

/// The segment files of `dir`, in index order.
///
/// # Errors
///
/// [`LogError::Io`] if the directory cannot be read.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, LogError> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io_err("reading directory", dir))? {
        let item = item.map_err(io_err("reading directory", dir))?;
        let name = item.file_name();
        if let Some(first_index) = name.to_str().and_then(parse_segment_file_name) {
            out.push(SegmentFile {
                first_index,
                path: item.path(),
            });
        }
    }
    out.sort_by_key(|s| s.first_index);
    Ok(out)
}

/// The CRC32C of a record: over the big-endian index and the entry.
#[must_use]
pub fn record_crc(index: u64, entry: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&index.to_be_bytes()), entry)
}

/// The framing of a record, to be followed by the entry bytes.
///
/// # Errors
///
/// [`LogError::TooLarge`] above [`MAX_ENTRY_BYTES`].
pub fn record_header(index: u64, entry: &[u8]) -> Result<[u8; RECORD_HEADER_LEN], LogError> {
    if entry.len() > MAX_ENTRY_BYTES {
        return Err(LogError::TooLarge(entry.len()));
    }
    let len = u32::try_from(entry.len()).map_err(|_| LogError::TooLarge(entry.len()))?;
    let mut h = [0u8; RECORD_HEADER_LEN];
    for (o, b) in h.iter_mut().zip(
        len.to_be_bytes()
            .into_iter()
            .chain(record_crc(index, entry).to_be_bytes())
            .chain(index.to_be_bytes()),
    ) {
        *o = b;
    }
    Ok(h)
}

/// Appends an encoded record to `out`.
///
/// # Errors
///
/// [`LogError::TooLarge`] above [`MAX_ENTRY_BYTES`].
pub fn encode_record(index: u64, entry: &[u8], out: &mut Vec<u8>) -> Result<(), LogError> {
    out.extend_from_slice(&record_header(index, entry)?);
    out.extend_from_slice(entry);
    Ok(())
}

/// One record read by a scanner; `entry` borrows the scanner's buffer.
#[derive(Debug)]
pub struct Record<'a> {
    /// File offset of the record's first byte.
    pub offset: u64,
    /// The index stored in the record.
    pub index: u64,
    /// Whether the stored CRC matches the index and entry.
    pub crc_ok: bool,
    /// The entry bytes.
    pub entry: &'a [u8],
}

/// Why a scanner stopped before the end of the data.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The data ends inside a record (a torn write, or a record still
    /// being written).
    #[error("incomplete record at offset {offset}")]
    Incomplete {
        /// Offset of the incomplete record.
        offset: u64,
    },
    /// A record declares a length above the limit.
    #[error("record at offset {offset} declares {len} bytes, more than the limit")]
    TooLarge {
        /// Offset of the record.
        offset: u64,
        /// The declared length.
        len: u64,
    },
    /// Reading failed.
    #[error(transparent)]
    Io(LogError),
}

impl ScanError {
    /// Offset of the record at which the scan stopped, if known.
    #[must_use]
    pub fn offset(&self) -> Option<u64> {
        match self {
            ScanError::Incomplete { offset } | ScanError::TooLarge { offset, .. } => Some(*offset),
            ScanError::Io(_) => None,
        }
    }
}

/// Reads records sequentially with large buffered reads and without
/// allocating per record.
#[derive(Debug)]
pub struct RecordScanner {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// File offset at which reading stops.
    limit: u64,
    eof: bool,
}

impl RecordScanner {
    /// A scanner of `file` from `offset`, reading no further than
    /// `limit` (use `u64::MAX` for the end of the file).
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if seeking fails.
    pub fn new(mut file: File, path: &Path, offset: u64, limit: u64) -> Result<Self, LogError> {
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err("seeking in", path))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            buf: vec![0u8; SCAN_BUFFER],
            start: 0,
            end: 0,
            buf_offset: offset,
            limit,
            eof: false,
        })
    }

    /// Opens `path` and scans it from `offset`.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be opened.
    pub fn open(path: &Path, offset: u64, limit: u64) -> Result<Self, LogError> {
        let file = File::open(path).map_err(io_err("opening", path))?;
        Self::new(file, path, offset, limit)
    }

    /// The file offset of the next unread byte.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.buf_offset + self.start as u64
    }

    /// Bytes buffered and not consumed.
    fn available(&self) -> usize {
        self.end - self.start
    }

    /// Makes at least `need` bytes available unless the data ends first;
    /// returns whether it did.
    fn fill(&mut self, need: usize) -> Result<bool, LogError> {
        if self.available() >= need {
            return Ok(true);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.buf_offset += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        while self.end < need && !self.eof {
            let file_pos = self.buf_offset + self.end as u64;
            let room = self.limit.saturating_sub(file_pos);
            let want = (self.buf.len() - self.end).min(usize::try_from(room).unwrap_or(usize::MAX));
            if want == 0 {
                self.eof = true;
                break;
            }
            let Some(dst) = self.buf.get_mut(self.end..self.end + want) else {
                self.eof = true;
                break;
            };
            match self.file.read(dst) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("reading", &self.path)(e)),
            }
        }
        Ok(self.available() >= need)
    }

    /// Bytes available starting at the read position (at least `need`
    /// if the data holds them).
    fn peek(&mut self, need: usize) -> Result<Option<&[u8]>, LogError> {
        if !self.fill(need)? {
            return Ok(None);
        }
        Ok(self.buf.get(self.start..self.end))
    }

    /// Consumes `n` bytes.
    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Whether the data is exhausted (no byte left to read).
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if reading fails.
    pub fn at_end(&mut self) -> Result<bool, LogError> {
        Ok(!self.fill(1)?)
    }

    /// The next record, `None` at the end of the data.
    ///
    /// # Errors
    ///
    /// [`ScanError::Incomplete`] if the data ends inside a record,
    /// [`ScanError::TooLarge`] if a record declares a length above
    /// [`MAX_ENTRY_BYTES`], [`ScanError::Io`] if reading fails.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ScanError> {
        let offset = self.position();
        if self.at_end().map_err(ScanError::Io)? {
            return Ok(None);
        }
        let len = match self.peek(RECORD_HEADER_LEN).map_err(ScanError::Io)? {
            Some(b) => be_u32(b) as usize,
            None => return Err(ScanError::Incomplete { offset }),
        };
        if len > MAX_ENTRY_BYTES {
            return Err(ScanError::TooLarge {
                offset,
                len: len as u64,
            });
        }
        let total = RECORD_HEADER_LEN + len;
        if !self.fill(total).map_err(ScanError::Io)? {
            return Err(ScanError::Incomplete { offset });
        }
        let start = self.start;
        self.consume(total);
        let rec = self
            .buf
            .get(start..start + total)
            .ok_or(ScanError::Incomplete { offset })?;
        let (head, entry) = rec.split_at(RECORD_HEADER_LEN);
        let crc = be_u32(head.get(4..8).unwrap_or_default());
        let index = be_u64(head.get(8..16).unwrap_or_default());
        Ok(Some(Record {
            offset,
            index,
            crc_ok: record_crc(index, entry) == crc,
            entry,
        }))
    }
}

/// A scanner of one segment file: its header, then its records.
#[derive(Debug)]
pub struct SegmentScanner {
    header: SegmentHeader,
    header_len: u64,
    records: RecordScanner,
}

impl SegmentScanner {
    /// Opens a segment, reads its header and positions at its first
    /// record. Reading stops at `limit` (`u64::MAX` for the whole file).
    ///
    /// # Errors
    ///
    /// [`HeaderError`] if the file cannot be opened or its header is
    /// incomplete or invalid.
    pub fn open(path: &Path, limit: u64) -> Result<Self, HeaderError> {
        let mut records = RecordScanner::open(path, 0, limit).map_err(HeaderError::Io)?;
        let needed = match records.peek(HEADER_FIXED_LEN).map_err(HeaderError::Io)? {
            Some(b) => {
                if b.get(..8) != Some(&MAGIC[..]) {
                    return Err(HeaderError::Invalid("bad magic"));
                }
                SegmentHeader::needed_len(b)?.ok_or(HeaderError::Incomplete)?
            }
            None => {
                // Shorter than the fixed part: incomplete if what is
                // there is a prefix of a header, else invalid.
                let b = records
                    .peek(1)
                    .map_err(HeaderError::Io)?
                    .unwrap_or_default();
                let n = b.len().min(MAGIC.len());
                if b.get(..n) != MAGIC.get(..n) {
                    return Err(HeaderError::Invalid("bad magic"));
                }
                return Err(HeaderError::Incomplete);
            }
        };
        let buf = records
            .peek(needed)
            .map_err(HeaderError::Io)?
            .ok_or(HeaderError::Incomplete)?;
        let (header, len) = SegmentHeader::decode(buf)?;
        records.consume(len);
        Ok(Self {
            header,
            header_len: len as u64,
            records,
        })
    }

    /// Opens a segment and positions at `offset` (which must be a record
    /// boundary, such as one returned by [`Record::offset`]).
    ///
    /// # Errors
    ///
    /// As [`SegmentScanner::open`].
    pub fn open_at(path: &Path, offset: u64, limit: u64) -> Result<Self, HeaderError> {
        let mut s = Self::open(path, limit)?;
        if offset > s.header_len {
            let file = File::open(path)
                .map_err(io_err("opening", path))
                .map_err(HeaderError::Io)?;
            s.records = RecordScanner::new(file, path, offset, limit).map_err(HeaderError::Io)?;
        }
        Ok(s)
    }

    /// The segment header.
    #[must_use]
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Length of the header in bytes (offset of the first record).
    #[must_use]
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// The file offset of the next record.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.records.position()
    }

    /// The next record; see [`RecordScanner::next_record`].
    ///
    /// # Errors
    ///
    /// As [`RecordScanner::next_record`].
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ScanError> {
        self.records.next_record()
    }
}

/// Reads only the header of a segment file.
///
/// # Errors
///
/// As [`SegmentScanner::open`].
pub fn read_segment_header(path: &Path) -> Result<(SegmentHeader, u64), HeaderError> {
    let file = File::open(path)
        .map_err(io_err("opening", path))
        .map_err(HeaderError::Io)?;
    let mut buf = Vec::with_capacity(MAX_HEADER_LEN);
    file.take(MAX_HEADER_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(io_err("reading", path))
        .map_err(HeaderError::Io)?;
    let (header, len) = SegmentHeader::decode(&buf)?;
    Ok((header, len as u64))
}

/// Creates a new segment file with `header`, fsyncs it and its
/// directory, and returns it opened for appending with its length.
///
/// # Errors
///
/// [`LogError::Io`] on any file error (including if it already exists).
pub fn create_segment(dir: &Path, header: &SegmentHeader) -> Result<(File, u64), LogError> {
    let path = dir.join(segment_file_name(header.first_index));
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("creating segment", &path))?;
    let bytes = header.encode();
    file.write_all(&bytes)
        .map_err(io_err("writing segment header", &path))?;
    file.sync_all().map_err(io_err("syncing", &path))?;
    sync_dir(dir)?;
    Ok((file, bytes.len() as u64))
}

/// Fsyncs a directory (so created, renamed and removed names are
/// durable).
///
/// # Errors
///
/// [`LogError::Io`] if the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

/// Writes `bytes` to `path` atomically and durably: a temporary file in
/// the same directory, fsync, rename, directory fsync.
///
/// # Errors
///
/// [`LogError::Io`] on any file error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        f.write_all(bytes).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err("renaming to", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejections() {
        let h = SegmentHeader::new(5, vec![[1u8; 32], [2u8; 32]]).unwrap();
        let bytes = h.encode();
        assert_eq!(bytes.len(), h.encoded_len());
        let (back, len) = SegmentHeader::decode(&bytes).unwrap();
        assert_eq!((back, len), (h, bytes.len()));
        for cut in 0..bytes.len() {
            assert!(matches!(
                SegmentHeader::decode(&bytes[..cut]),
                Err(HeaderError::Incomplete) | Err(HeaderError::Invalid(_))
            ));
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(SegmentHeader::decode(&b).is_err(), "byte {i}");
        }
        assert!(SegmentHeader::new(3, vec![[0u8; 32]]).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(segment_file_name(42), "seg-00000000000000000042.log");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for bad in [
            "seg-42.log",
            "seg-0000000000000000004x.log",
            "seg-00000000000000000042.lo",
        ] {
            assert_eq!(parse_segment_file_name(bad), None);
        }
    }

    #[test]
    fn scanner_reads_records_and_stops_on_damage() {
        let dir = tempfile::tempdir().unwrap();
        let h = SegmentHeader::new(0, vec![]).unwrap();
        let (mut f, _) = create_segment(dir.path(), &h).unwrap();
        let mut buf = Vec::new();
        for i in 0..1000u64 {
            encode_record(i, format!("entry {i}").as_bytes(), &mut buf).unwrap();
        }
        f.write_all(&buf).unwrap();
        let path = dir.path().join(segment_file_name(0));
        let mut s = SegmentScanner::open(&path, u64::MAX).unwrap();
        let mut n = 0u64;
        while let Some(r) = s.next_record().unwrap() {
            assert_eq!(r.index, n);
            assert!(r.crc_ok);
            assert_eq!(r.entry, format!("entry {n}").as_bytes());
            n += 1;
        }
        assert_eq!(n, 1000);
        // A torn final record.
        f.write_all(&[0, 0, 0, 9, 1, 2]).unwrap();
        let mut s = SegmentScanner::open(&path, u64::MAX).unwrap();
        let mut n = 0;
        let err = loop {
            match s.next_record() {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert_eq!(n, 1000);
        assert!(matches!(err, ScanError::Incomplete { .. }));
        // An absurd length.
        f.write_all(&[0xff; 16]).unwrap();
        drop(f);
        let bytes = std::fs::read(&path).unwrap();
        let torn_at = bytes.len() - 22;
        let mut b = bytes[..torn_at].to_vec();
        b.extend_from_slice(&[0xff; 16]);
        std::fs::write(&path, &b).unwrap();
        let mut s = SegmentScanner::open(&path, u64::MAX).unwrap();
        let err = loop {
            match s.next_record() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ScanError::TooLarge { offset, .. } if offset == torn_at as u64));
    }
}
