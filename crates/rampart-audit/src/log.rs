//! The audit log writer: one dedicated thread, group commit, two
//! durability classes, signed checkpoints and torn-tail recovery.
//!
//! - [`AuditLog::append`] is for request decisions: it never blocks; when
//!   the bounded queue is full it returns [`LogError::QueueFull`] and the
//!   caller applies its overflow policy.
//! - [`AuditLog::append_durable`] is for administrative and key events:
//!   it waits for room in the queue (never dropped) and its [`Durable`]
//!   resolves to the entry's index only once the entry is fsynced.
//!
//! The writer drains the queue in batches, writes records to the current
//! segment through a buffer, appends the tree hashes, and fsyncs at least
//! every `group_commit` interval, at once when a durable entry is in the
//! batch. After an fsync it signs a checkpoint when `checkpoint_every`
//! entries or `checkpoint_interval` have passed, appends it to
//! `checkpoints.log` (fsynced) and replaces `checkpoint.latest`
//! atomically. A signing failure is logged and retried; it never loses
//! entries. Each tick it also drains the spool (see [`crate::spool`]).
//!
//! On open the last segment is scanned: the first record that is short
//! or fails its CRC or index check starts the torn tail, which is moved to
//! `torn-<time>-<file>.bin` and truncated away, unless that would cut
//! below the latest checkpoint (then the log refuses to open with
//! [`LogError::Corrupt`]: signed data is damaged, run verify).

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, BufWriter, Read as _, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::event::MAX_ENTRY_BYTES;
use crate::merkle::{leaf_hash, Hash, MerkleError};
use crate::note::{
    sign_checkpoint, signer_verifier_key, Checkpoint, CheckpointSigner, NoteError, VerifierKey,
};
use crate::reader::{scan_checkpoints, CheckpointRecord};
use crate::segment::{
    create_segment, list_segments, record_header, segment_file_name, sync_dir, write_atomic,
    HeaderError, ScanError, SegmentHeader, SegmentScanner, DEFAULT_SEGMENT_MAX_BYTES,
    RECORD_HEADER_LEN,
};
use crate::tree::{CompactRange, TreeWriter};

/// Errors of the audit log, its files and its readers.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another process holds the log's lock (use the spool).
    #[error("the audit log in `{}` is locked by another process", .0.display())]
    Locked(PathBuf),
    /// The queue is full: the entry was not accepted (the caller applies
    /// its overflow policy).
    #[error("the audit queue is full")]
    QueueFull,
    /// The log is closed.
    #[error("the audit log is closed")]
    Closed,
    /// The writer failed (a write or fsync error) and stopped.
    #[error("the audit log writer failed: {0}")]
    Failed(String),
    /// Signed or durable data is damaged: an operator must run verify.
    #[error("the audit log is damaged at index {index}: {reason}")]
    Corrupt {
        /// The first index affected.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file does not have the expected format.
    #[error("malformed audit file `{}`: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The entry is larger than [`crate::event::MAX_ENTRY_BYTES`].
    #[error("an audit entry of {0} bytes is larger than the limit")]
    TooLarge(usize),
    /// The index is not in the log.
    #[error("index {index} is not in the log (entries {first}..{len})")]
    OutOfRange {
        /// The index asked for.
        index: u64,
        /// The first index present.
        first: u64,
        /// One past the last index present.
        len: u64,
    },
    /// The configuration is invalid.
    #[error("invalid audit log configuration: {0}")]
    Config(String),
    /// A checkpoint could not be signed or parsed.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A Merkle operation failed.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
}

/// A closure mapping an I/O error to [`LogError::Io`] with context.
pub(crate) fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> LogError {
    let context = format!("{what} `{}`", path.display());
    move |source| LogError::Io { context, source }
}

/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the checkpoint history.
pub const CHECKPOINTS_FILE: &str = "checkpoints.log";
/// Name of the file holding the latest signed checkpoint.
pub const LATEST_CHECKPOINT_FILE: &str = "checkpoint.latest";
/// Name of the file holding the verifier keys, one per line.
pub const PUBLIC_KEY_FILE: &str = "audit.pub";

pub(crate) use crate::clock::now_us;

/// Configuration of an [`AuditLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The audit directory.
    pub dir: PathBuf,
    /// The log's origin line in checkpoints (a unique name, such as
    /// `rampart.example.com/audit`).
    pub origin: String,
    /// Longest time an accepted entry waits for its fsync (10 ms).
    pub group_commit: Duration,
    /// Capacity of the queue (65 536 entries).
    pub queue_capacity: usize,
    /// A checkpoint is signed at least every this many entries (100 000).
    pub checkpoint_every: u64,
    /// A checkpoint is signed at least this often while the log grows
    /// (1 s).
    pub checkpoint_interval: Duration,
    /// Size at which a new segment is started (64 MiB).
    pub segment_max_bytes: u64,
}

impl LogConfig {
    /// The defaults for `dir` and `origin`.
    pub fn new(dir: impl Into<PathBuf>, origin: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            origin: origin.into(),
            group_commit: Duration::from_millis(10),
            queue_capacity: 65_536,
            checkpoint_every: 100_000,
            checkpoint_interval: Duration::from_secs(1),
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
        }
    }

    /// Checks the values.
    ///
    /// # Errors
    ///
    /// [`LogError::Config`] naming every invalid value.
    pub fn validate(&self) -> Result<(), LogError> {
        let mut errors = Vec::new();
        if self.origin.is_empty() || self.origin.chars().any(char::is_control) {
            errors.push("the origin must be a non-empty line of text");
        }
        if self.group_commit.is_zero() || self.group_commit > Duration::from_secs(10) {
            errors.push("group_commit must be between 1 µs and 10 s");
        }
        if self.queue_capacity == 0 {
            errors.push("queue_capacity must be at least 1");
        }
        if self.checkpoint_every == 0 {
            errors.push("checkpoint_every must be at least 1");
        }
        if self.checkpoint_interval.is_zero() {
            errors.push("checkpoint_interval must not be zero");
        }
        if self.segment_max_bytes < 4096 {
            errors.push("segment_max_bytes must be at least 4096");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LogError::Config(errors.join("; ")))
        }
    }
}

/// What [`AuditLog::open`] found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Entries in the log.
    pub size: u64,
    /// Bytes moved out of the log files as torn tails.
    pub truncated_bytes: u64,
    /// Where the torn tail of the last segment was kept, if there was one.
    pub torn_file: Option<PathBuf>,
    /// Every torn-tail file written (segments and `checkpoints.log`).
    pub torn_files: Vec<PathBuf>,
    /// Whether `tree.hashes` did not match and was rewritten.
    pub tree_rebuilt: bool,
}

/// Counters of a running log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// Entries written by the writer (not necessarily fsynced).
    pub size: u64,
    /// Entries known to be on disk.
    pub durable_size: u64,
    /// Entries waiting in the queue.
    pub queue_len: usize,
    /// Capacity of the queue.
    pub queue_capacity: usize,
    /// Size of the latest signed checkpoint.
    pub last_checkpoint_size: u64,
    /// Entries refused with [`LogError::QueueFull`] since open.
    pub rejected_full: u64,
}

/// The acknowledgement of a durable append: resolves to the entry's
/// index once it is fsynced. Await it, or call [`Durable::wait`] from a
/// thread that may block.
#[derive(Debug)]
#[must_use = "a durable append is only known to be on disk once the ack resolves"]
pub struct Durable {
    slot: Arc<AckSlot>,
}

#[derive(Debug, Default)]
struct AckSlot {
    state: Mutex<AckState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct AckState {
    done: bool,
    result: Option<Result<u64, LogError>>,
    waker: Option<Waker>,
}

impl AckSlot {
    fn complete(&self, result: Result<u64, LogError>) {
        let waker = {
            let mut s = self.state.lock();
            if s.done {
                return;
            }
            s.done = true;
            s.result = Some(result);
            s.waker.take()
        };
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The writer's side of a [`Durable`]; completes with
/// [`LogError::Closed`] if dropped unanswered.
#[derive(Debug)]
struct Ack(Arc<AckSlot>);

impl Ack {
    fn send(self, result: Result<u64, LogError>) {
        self.0.complete(result);
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        self.0.complete(Err(LogError::Closed));
    }
}

impl Durable {
    fn pair() -> (Self, Ack) {
        let slot = Arc::new(AckSlot::default());
        (Self { slot: slot.clone() }, Ack(slot))
    }

    fn ready(result: Result<u64, LogError>) -> Self {
        let slot = Arc::new(AckSlot::default());
        slot.complete(result);
        Self { slot }
    }

    /// Blocks until the entry is on disk (or the log failed or closed).
    ///
    /// # Errors
    ///
    /// [`LogError::TooLarge`], [`LogError::Closed`] or
    /// [`LogError::Failed`]: the entry is not known to be durable.
    pub fn wait(self) -> Result<u64, LogError> {
        let mut s = self.slot.state.lock();
        while !s.done {
            self.slot.cv.wait(&mut s);
        }
        s.result.take().unwrap_or(Err(LogError::Closed))
    }

    /// Like [`Durable::wait`], giving up after `timeout` (`None`).
    pub fn wait_timeout(self, timeout: Duration) -> Option<Result<u64, LogError>> {
        let deadline = Instant::now() + timeout;
        let mut s = self.slot.state.lock();
        while !s.done {
            if self.slot.cv.wait_until(&mut s, deadline).timed_out() && !s.done {
                return None;
            }
        }
        Some(s.result.take().unwrap_or(Err(LogError::Closed)))
    }
}

impl Future for Durable {
    type Output = Result<u64, LogError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.state.lock();
        if s.done {
            return Poll::Ready(s.result.take().unwrap_or(Err(LogError::Closed)));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

enum Item {
    Entry(Vec<u8>),
    Durable(Vec<u8>, Ack),
    /// Fsync everything queued before; ack with the durable size.
    Sync(Ack),
    /// Block the writer until the sender is dropped (tests).
    Stall(Receiver<()>),
    Close,
}

#[derive(Debug)]
struct Shared {
    size: AtomicU64,
    durable_size: AtomicU64,
    last_checkpoint_size: AtomicU64,
    queue_len: AtomicUsize,
    rejected_full: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    /// Whether appends are accepted; appenders hold the read lock while
    /// sending so that close sees every accepted entry.
    gate: RwLock<bool>,
}

impl Shared {
    fn failure(&self) -> LogError {
        LogError::Failed(
            self.failure
                .lock()
                .clone()
                .unwrap_or_else(|| "unknown error".to_owned()),
        )
    }
}

/// Keeps the writer blocked while alive; see [`AuditLog::stall_writer`].
#[doc(hidden)]
#[derive(Debug)]
pub struct WriterStall {
    _tx: mpsc::Sender<()>,
}

/// A handle on the audit log; cheap to clone. The log is closed by
/// [`AuditLog::close`] or, best effort, when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    tx: SyncSender<Item>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<Result<(), LogError>>>>,
    close_error: Mutex<Option<String>>,
    key: VerifierKey,
    cfg: LogConfig,
    /// The directory lock, released once the writer has stopped.
    lock: Mutex<Option<File>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.thread.lock().is_some() {
            if let Err(e) = self.close() {
                tracing::error!(target: "rampart::audit", error = %e, "closing the audit log on drop failed");
            }
        }
    }
}

impl Handle {
    fn close(&self) -> Result<(), LogError> {
        let mut thread = self.thread.lock();
        let Some(handle) = thread.take() else {
            return match self.close_error.lock().clone() {
                Some(e) => Err(LogError::Failed(e)),
                None => Ok(()),
            };
        };
        *self.shared.gate.write() = false;
        // The writer drains everything before `Close`; if it is gone the
        // send fails and joining reports why.
        let _ = self.tx.send(Item::Close);
        let result = match handle.join() {
            Ok(r) => r,
            Err(_) => Err(LogError::Failed("the writer thread panicked".to_owned())),
        };
        if let Err(e) = &result {
            *self.close_error.lock() = Some(e.to_string());
        }
        // Closing the file releases the flock.
        self.lock.lock().take();
        result
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `cfg.dir`, recovers a torn tail,
    /// checks `tree.hashes` and starts the writer thread.
    ///
    /// # Errors
    ///
    /// [`LogError::Config`] for an invalid configuration or an origin that
    /// differs from the log's, [`LogError::Locked`] if another process
    /// has the log open, [`LogError::Corrupt`] if signed data is damaged,
    /// [`LogError::Io`] / [`LogError::Format`] for file errors.
    pub fn open(
        cfg: LogConfig,
        signer: Arc<dyn CheckpointSigner>,
    ) -> Result<(AuditLog, OpenReport), LogError> {
        cfg.validate()?;
        let key = signer_verifier_key(signer.as_ref())?;
        let dir = cfg.dir.clone();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("creating directory", &dir))?;
        let lock = lock_dir(&dir)?;
        record_public_key(&dir, &key)?;
        let mut report = OpenReport {
            size: 0,
            truncated_bytes: 0,
            torn_file: None,
            torn_files: Vec::new(),
            tree_rebuilt: false,
        };
        remove_stale_tmp(&dir);

        // Checkpoints: drop a torn final record.
        let cps_path = dir.join(CHECKPOINTS_FILE);
        let scan = scan_checkpoints(&cps_path)?;
        if let Some(tail) = scan.torn_tail {
            let torn = move_tail(&dir, &cps_path, tail)?;
            report.truncated_bytes += scan.file_len.saturating_sub(tail);
            report.torn_files.push(torn);
        }
        let latest = scan.list.last().map(|c| c.checkpoint.clone());
        if let Some(cp) = &latest {
            if cp.origin != cfg.origin {
                return Err(LogError::Config(format!(
                    "the log's origin is `{}`, not `{}`",
                    cp.origin, cfg.origin
                )));
            }
        }
        let cp_size = latest.as_ref().map_or(0, |c| c.size);
        let cp_seq = scan.next_seq;

        // Segments: find the last one with a complete header.
        let mut segments = list_segments(&dir)?;
        let scanner = loop {
            let Some(last) = segments.last().cloned() else {
                if cp_size > 0 {
                    return Err(LogError::Corrupt {
                        index: 0,
                        reason: "the segments are missing".to_owned(),
                    });
                }
                create_segment(
                    &dir,
                    &SegmentHeader::new(0, Vec::new())
                        .map_err(|e| LogError::Config(e.to_string()))?,
                )?;
                segments = list_segments(&dir)?;
                continue;
            };
            match SegmentScanner::open(&last.path, u64::MAX) {
                Ok(s) => break (s, last),
                Err(HeaderError::Incomplete) => {
                    // A segment torn at creation: it holds no record.
                    if segments.len() == 1 && (last.first_index > 0 || cp_size > 0) {
                        return Err(LogError::Corrupt {
                            index: last.first_index,
                            reason: format!(
                                "the header of `{}` is incomplete and no earlier segment exists",
                                last.path.display()
                            ),
                        });
                    }
                    let len = file_len(&last.path)?;
                    let torn = move_tail(&dir, &last.path, 0)?;
                    std::fs::remove_file(&last.path).map_err(io_err("removing", &last.path))?;
                    sync_dir(&dir)?;
                    report.truncated_bytes += len;
                    report.torn_files.push(torn);
                    segments.pop();
                }
                Err(HeaderError::Invalid(reason)) => {
                    return Err(LogError::Corrupt {
                        index: last.first_index,
                        reason: format!("`{}`: {reason}", last.path.display()),
                    })
                }
                Err(HeaderError::Io(e)) => return Err(e),
            }
        };
        let (mut scanner, last) = scanner;
        let header = scanner.header().clone();
        if header.first_index != last.first_index {
            return Err(LogError::Corrupt {
                index: last.first_index,
                reason: format!(
                    "`{}` holds a header for index {}",
                    last.path.display(),
                    header.first_index
                ),
            });
        }
        let mut range = CompactRange::from_roots(header.first_index, header.frontier.clone())?;
        let check_root = |range: &CompactRange| -> Result<(), LogError> {
            if let Some(cp) = &latest {
                if range.size() == cp.size && range.root() != cp.root {
                    return Err(LogError::Corrupt {
                        index: header.first_index,
                        reason: format!(
                            "the entries of `{}` do not match the checkpoint at size {}",
                            last.path.display(),
                            cp.size
                        ),
                    });
                }
            }
            Ok(())
        };
        check_root(&range)?;
        let mut tail: Option<u64> = None;
        loop {
            let expected = range.size();
            match scanner.next_record() {
                Ok(Some(r)) if r.crc_ok && r.index == expected => {
                    range.push(leaf_hash(r.entry))?;
                    check_root(&range)?;
                }
                Ok(Some(r)) => {
                    tail = Some(r.offset);
                    break;
                }
                Ok(None) => break,
                Err(ScanError::Io(e)) => return Err(e),
                Err(e) => {
                    tail = e.offset();
                    break;
                }
            }
        }
        drop(scanner);
        let size = range.size();
        if size < cp_size {
            return Err(LogError::Corrupt {
                index: size,
                reason: format!(
                    "the log holds {size} entries but its latest checkpoint is at size {cp_size}; run verify"
                ),
            });
        }
        if let Some(offset) = tail {
            let len = file_len(&last.path)?;
            let torn = move_tail(&dir, &last.path, offset)?;
            report.truncated_bytes += len.saturating_sub(offset);
            tracing::warn!(target: "rampart::audit", size, bytes = len.saturating_sub(offset), torn = %torn.display(), "recovered a torn audit log tail");
            report.torn_file = Some(torn.clone());
            report.torn_files.push(torn);
        }
        report.size = size;

        let tree = TreeWriter::open(&dir, size, latest.as_ref().map(|c| (c.size, c.root)))?;
        if tree.range != range {
            return Err(LogError::Corrupt {
                index: header.first_index,
                reason: "the segments do not form one tree (a segment header does not match the entries before it); run verify".to_owned(),
            });
        }
        report.tree_rebuilt = tree.rebuilt;

        let seg_file = OpenOptions::new()
            .append(true)
            .open(&last.path)
            .map_err(io_err("opening", &last.path))?;
        let seg_len = file_len(&last.path)?;
        let cps = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&cps_path)
            .map_err(io_err("opening", &cps_path))?;
        let spool = dir.join(crate::spool::SPOOL_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&spool)
            .map_err(io_err("creating directory", &spool))?;

        let shared = Arc::new(Shared {
            size: AtomicU64::new(size),
            durable_size: AtomicU64::new(size),
            last_checkpoint_size: AtomicU64::new(cp_size),
            queue_len: AtomicUsize::new(0),
            rejected_full: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            gate: RwLock::new(true),
        });
        let (tx, rx) = mpsc::sync_channel(cfg.queue_capacity);
        let now = Instant::now();
        let busy = Arc::new(AtomicBool::new(false));
        let checkpointer = Checkpointer {
            dir: dir.clone(),
            origin: cfg.origin.clone(),
            signer,
            shared: shared.clone(),
            busy: busy.clone(),
            cps,
            cps_path,
            cp_seq,
            tree: tree.writer.sync_handle()?,
            last_size: cp_size,
            _lock: lock
                .try_clone()
                .map_err(io_err("opening", &dir.join(LOCK_FILE)))?,
        };
        let (cp_tx, cp_rx) = mpsc::sync_channel(1);
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let cp_thread = std::thread::Builder::new()
            .name("rampart-audit-checkpoint".to_owned())
            .spawn(move || {
                let _ = done_tx.send(checkpointer.run(cp_rx));
            })
            .map_err(io_err("starting the checkpoint thread for", &dir))?;
        let writer = Writer {
            cfg: cfg.clone(),
            shared: shared.clone(),
            rx,
            seg: BufWriter::with_capacity(SEGMENT_BUFFER, seg_file),
            seg_path: last.path.clone(),
            seg_len,
            seg_first: header.first_index,
            tree: tree.writer,
            range,
            durable_size: size,
            dirty_since: None,
            pending: Vec::new(),
            last_cp_at: now,
            last_tick: now,
            spooled: Vec::new(),
            checkpointer: Some(CheckpointerHandle {
                tx: cp_tx,
                thread: cp_thread,
                done: done_rx,
                busy,
            }),
        };
        let thread = std::thread::Builder::new()
            .name("rampart-audit-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(io_err("starting the writer thread for", &dir))?;
        let log = AuditLog {
            inner: Arc::new(Handle {
                tx,
                shared,
                thread: Mutex::new(Some(thread)),
                close_error: Mutex::new(None),
                key,
                cfg,
                lock: Mutex::new(Some(lock)),
            }),
        };
        Ok((log, report))
    }

    /// Queues an entry without blocking (request-decision class).
    ///
    /// # Errors
    ///
    /// [`LogError::QueueFull`] when the queue is full (the caller applies
    /// its overflow policy), [`LogError::TooLarge`] above
    /// [`MAX_ENTRY_BYTES`], [`LogError::Closed`] after close,
    /// [`LogError::Failed`] if the writer failed.
    pub fn append(&self, entry: Vec<u8>) -> Result<(), LogError> {
        if entry.len() > MAX_ENTRY_BYTES {
            return Err(LogError::TooLarge(entry.len()));
        }
        let shared = &self.inner.shared;
        if shared.failed.load(Ordering::Acquire) {
            return Err(shared.failure());
        }
        let gate = shared.gate.read();
        if !*gate {
            return Err(LogError::Closed);
        }
        shared.queue_len.fetch_add(1, Ordering::Relaxed);
        match self.inner.tx.try_send(Item::Entry(entry)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                shared.queue_len.fetch_sub(1, Ordering::Relaxed);
                shared.rejected_full.fetch_add(1, Ordering::Relaxed);
                Err(LogError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => {
                shared.queue_len.fetch_sub(1, Ordering::Relaxed);
                Err(LogError::Closed)
            }
        }
    }

    /// Queues an entry that must not be lost (administrative and key
    /// class): waits for room in the queue, and the returned [`Durable`]
    /// resolves to the entry's index once it is fsynced.
    ///
    /// This may block the calling thread while the queue is full.
    pub fn append_durable(&self, entry: Vec<u8>) -> Durable {
        if entry.len() > MAX_ENTRY_BYTES {
            return Durable::ready(Err(LogError::TooLarge(entry.len())));
        }
        let (durable, ack) = Durable::pair();
        self.send_blocking(Item::Durable(entry, ack));
        durable
    }

    /// Resolves once every entry queued before the call is fsynced, to
    /// the durable size.
    pub fn sync(&self) -> Durable {
        let (durable, ack) = Durable::pair();
        self.send_blocking(Item::Sync(ack));
        durable
    }

    fn send_blocking(&self, item: Item) {
        let shared = &self.inner.shared;
        let reject = |item: Item, e: LogError| {
            if let Item::Durable(_, ack) | Item::Sync(ack) = item {
                ack.send(Err(e));
            }
        };
        if shared.failed.load(Ordering::Acquire) {
            return reject(item, shared.failure());
        }
        let gate = shared.gate.read();
        if !*gate {
            return reject(item, LogError::Closed);
        }
        shared.queue_len.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::SendError(item)) = self.inner.tx.send(item) {
            shared.queue_len.fetch_sub(1, Ordering::Relaxed);
            drop(gate);
            reject(item, LogError::Closed);
        }
    }

    /// Blocks the writer thread until the returned guard is dropped (the
    /// request goes through the queue). For tests of back-pressure.
    #[doc(hidden)]
    pub fn stall_writer(&self) -> WriterStall {
        let (tx, rx) = mpsc::channel();
        self.send_blocking(Item::Stall(rx));
        WriterStall { _tx: tx }
    }

    /// Whether appends are accepted (open, not closed, writer healthy).
    #[must_use]
    pub fn is_accepting(&self) -> bool {
        let shared = &self.inner.shared;
        !shared.failed.load(Ordering::Acquire) && *shared.gate.read()
    }

    /// The log's counters.
    #[must_use]
    pub fn stats(&self) -> LogStats {
        let s = &self.inner.shared;
        LogStats {
            size: s.size.load(Ordering::Acquire),
            durable_size: s.durable_size.load(Ordering::Acquire),
            queue_len: s.queue_len.load(Ordering::Relaxed),
            queue_capacity: self.inner.cfg.queue_capacity,
            last_checkpoint_size: s.last_checkpoint_size.load(Ordering::Acquire),
            rejected_full: s.rejected_full.load(Ordering::Relaxed),
        }
    }

    /// The Ed25519 public key that signs checkpoints.
    #[must_use]
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.key.public_key()
    }

    /// The verifier key of the checkpoints.
    #[must_use]
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.inner.key
    }

    /// The configuration the log was opened with.
    #[must_use]
    pub fn config(&self) -> &LogConfig {
        &self.inner.cfg
    }

    /// Stops accepting entries, writes and fsyncs what is queued, signs a
    /// final checkpoint and stops the writer. Idempotent.
    ///
    /// # Errors
    ///
    /// [`LogError`] if the final fsync or checkpoint failed (entries that
    /// were acknowledged as durable stay durable).
    pub fn close(&self) -> Result<(), LogError> {
        self.inner.close()
    }
}

fn file_len(path: &Path) -> Result<u64, LogError> {
    Ok(std::fs::metadata(path)
        .map_err(io_err("reading metadata of", path))?
        .len())
}

/// Takes the exclusive lock of the directory.
fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("opening", &path))?;
    // A lock released a moment ago can still be held by a descriptor that
    // a forked child of this process has not closed yet (between fork and
    // exec), or by a process that is exiting: retry briefly before
    // reporting the log as held.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::AGAIN => {
                if std::time::Instant::now() >= deadline {
                    return Err(LogError::Locked(dir.to_path_buf()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(io_err("locking", &path)(e.into())),
        }
    }
}

/// How long the writer lets request decisions accumulate after a batch
/// that did not need an fsync: an eighth of the group commit, between
/// 100 µs and 2 ms.
fn collect_pause(group_commit: Duration) -> Duration {
    (group_commit / 8).clamp(Duration::from_micros(100), Duration::from_millis(2))
}

/// How long [`lock_dir`] waits for a lock that is held.
const LOCK_PATIENCE: Duration = Duration::from_millis(500);

/// Adds the signer's verifier key to `audit.pub` if it is not there (a
/// rotated key is appended, so older checkpoints still verify).
fn record_public_key(dir: &Path, key: &VerifierKey) -> Result<(), LogError> {
    let path = dir.join(PUBLIC_KEY_FILE);
    let mut text = String::new();
    match File::open(&path) {
        Ok(f) => {
            f.take(64 * 1024)
                .read_to_string(&mut text)
                .map_err(io_err("reading", &path))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("opening", &path)(e)),
    }
    let line = key.to_string();
    if text.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    if !text.is_empty() {
        tracing::warn!(target: "rampart::audit", key = %line, "the checkpoint key changed; the new key is added to audit.pub");
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    text.push_str(&line);
    text.push('\n');
    write_atomic(&path, text.as_bytes())
}

/// Reads the verifier keys of `dir/audit.pub`.
///
/// # Errors
///
/// [`LogError`] if the file cannot be read or holds an invalid key.
pub fn read_public_keys(dir: &Path) -> Result<Vec<VerifierKey>, LogError> {
    let path = dir.join(PUBLIC_KEY_FILE);
    let mut text = String::new();
    File::open(&path)
        .map_err(io_err("opening", &path))?
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(io_err("reading", &path))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| VerifierKey::parse(l).map_err(LogError::from))
        .collect()
}

/// Removes temporary files a crash may have left (`.<name>.<uuid>.tmp`).
fn remove_stale_tmp(dir: &Path) {
    let Ok(items) = std::fs::read_dir(dir) else {
        return;
    };
    for item in items.flatten() {
        let name = item.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(item.path());
        }
    }
}

/// Copies the bytes of `path` from `offset` to a new `torn-…` file
/// (fsynced), then truncates `path` to `offset` (fsynced).
fn move_tail(dir: &Path, path: &Path, offset: u64) -> Result<PathBuf, LogError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut torn = dir.join(format!("torn-{}-{name}.bin", now_us()));
    if torn.exists() {
        torn = dir.join(format!(
            "torn-{}-{name}-{}.bin",
            now_us(),
            uuid::Uuid::new_v4().simple()
        ));
    }
    let mut src = File::open(path).map_err(io_err("opening", path))?;
    use std::io::Seek as _;
    src.seek(io::SeekFrom::Start(offset))
        .map_err(io_err("seeking in", path))?;
    let mut out = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&torn)
        .map_err(io_err("creating", &torn))?;
    io::copy(&mut src, &mut out).map_err(io_err("writing", &torn))?;
    out.sync_all().map_err(io_err("syncing", &torn))?;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err("opening", path))?;
    f.set_len(offset).map_err(io_err("truncating", path))?;
    f.sync_all().map_err(io_err("syncing", path))?;
    sync_dir(dir)?;
    Ok(torn)
}

/// Write buffer of the current segment: records reach the file in chunks
/// of this size between fsyncs.
const SEGMENT_BUFFER: usize = 128 * 1024;

/// Most items the writer takes from the queue before writing them out.
const MAX_BATCH: usize = 16 * 1024;

/// Most spool files taken per tick.
const MAX_SPOOL_BATCH: usize = 1024;

struct Writer {
    cfg: LogConfig,
    shared: Arc<Shared>,
    rx: Receiver<Item>,
    seg: BufWriter<File>,
    seg_path: PathBuf,
    seg_len: u64,
    seg_first: u64,
    tree: TreeWriter,
    range: CompactRange,
    durable_size: u64,
    /// When the oldest unsynced entry was written.
    dirty_since: Option<Instant>,
    /// Durable acks waiting for the next fsync, with their indices.
    pending: Vec<(Ack, u64)>,
    /// When the last checkpoint job was handed to the checkpointer.
    last_cp_at: Instant,
    last_tick: Instant,
    /// Spool files whose entries are written but not yet fsynced.
    spooled: Vec<PathBuf>,
    checkpointer: Option<CheckpointerHandle>,
}

/// A checkpoint to sign: the durable tree at `size`.
struct CpJob {
    size: u64,
    root: Hash,
}

struct CheckpointerHandle {
    tx: SyncSender<CpJob>,
    thread: JoinHandle<()>,
    /// The result of the checkpointer's last job, sent when it stops.
    done: Receiver<Result<(), LogError>>,
    busy: Arc<AtomicBool>,
}

/// How long close waits for the final checkpoint (a hung key provider
/// must not hang shutdown). The checkpoint thread keeps the directory
/// lock until it finishes, so no other writer can start meanwhile.
const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(30);

/// Signs checkpoints on its own thread, so a slow signer (an HSM, a
/// remote key service) never stalls the writer.
struct Checkpointer {
    dir: PathBuf,
    origin: String,
    signer: Arc<dyn CheckpointSigner>,
    shared: Arc<Shared>,
    busy: Arc<AtomicBool>,
    cps: File,
    cps_path: PathBuf,
    cp_seq: u64,
    /// `tree.hashes`, to fsync before signing.
    tree: File,
    last_size: u64,
    /// A descriptor of the directory lock: held until this thread ends.
    _lock: File,
}

impl Checkpointer {
    /// Signs each job; returns the result of the last one (the final
    /// checkpoint at close).
    fn run(mut self, rx: Receiver<CpJob>) -> Result<(), LogError> {
        let mut last = Ok(());
        while let Ok(job) = rx.recv() {
            last = if job.size > self.last_size {
                self.write(&job)
            } else {
                Ok(())
            };
            if let Err(e) = &last {
                tracing::error!(target: "rampart::audit", size = job.size, error = %e, "signing an audit checkpoint failed; will retry");
            }
            self.busy.store(false, Ordering::Release);
        }
        last
    }

    fn write(&mut self, job: &CpJob) -> Result<(), LogError> {
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size: job.size,
            root: job.root,
        };
        // The checkpoint vouches for tree.hashes up to its size (the
        // writer wrote them before handing over the job).
        self.tree
            .sync_data()
            .map_err(io_err("syncing", &self.dir.join(crate::tree::TREE_FILE)))?;
        let note = sign_checkpoint(&cp, self.signer.as_ref())?;
        let rec = CheckpointRecord {
            time_us: now_us(),
            size: job.size,
            note: note.clone(),
        };
        let json = serde_json::to_vec(&rec).map_err(|e| LogError::Failed(e.to_string()))?;
        let mut bytes = Vec::with_capacity(RECORD_HEADER_LEN + json.len());
        crate::segment::encode_record(self.cp_seq, &json, &mut bytes)?;
        let before = self
            .cps
            .metadata()
            .map_err(io_err("reading metadata of", &self.cps_path))?
            .len();
        let written = self
            .cps
            .write_all(&bytes)
            .and_then(|()| self.cps.sync_data());
        if let Err(e) = written {
            // Do not leave a torn record in the middle of the history.
            if let Err(e2) = self.cps.set_len(before) {
                return Err(LogError::Failed(format!(
                    "writing a checkpoint failed ({e}) and truncating it failed ({e2})"
                )));
            }
            return Err(io_err("writing", &self.cps_path)(e));
        }
        self.cp_seq += 1;
        self.last_size = job.size;
        self.shared
            .last_checkpoint_size
            .store(job.size, Ordering::Release);
        if let Err(e) = write_atomic(&self.dir.join(LATEST_CHECKPOINT_FILE), note.as_bytes()) {
            tracing::warn!(target: "rampart::audit", error = %e, "writing checkpoint.latest failed");
        }
        Ok(())
    }
}

impl Writer {
    fn run(mut self) -> Result<(), LogError> {
        let result = self.main_loop();
        match result {
            Ok(()) => self.finish(),
            Err(e) => {
                self.fail(&e);
                let _ = self.stop_checkpointer(false);
                // Keep answering until close so no sender blocks forever.
                self.drain_failed();
                Err(e)
            }
        }
    }

    fn main_loop(&mut self) -> Result<(), LogError> {
        let mut closing = false;
        while !closing {
            let now = Instant::now();
            let mut deadline = self.last_tick + self.cfg.checkpoint_interval;
            if let Some(since) = self.dirty_since {
                deadline = deadline.min(since + self.cfg.group_commit);
            }
            let first = match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(now))
            {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    closing = true;
                    None
                }
            };
            let mut urgent = false;
            if let Some(item) = first {
                self.shared.queue_len.fetch_sub(1, Ordering::Relaxed);
                let mut batch = 1usize;
                let mut next = Some(item);
                while let Some(item) = next.take() {
                    match item {
                        Item::Close => closing = true,
                        other => urgent |= self.handle(other)?,
                    }
                    if closing || batch >= MAX_BATCH {
                        break;
                    }
                    match self.rx.try_recv() {
                        Ok(item) => {
                            self.shared.queue_len.fetch_sub(1, Ordering::Relaxed);
                            batch += 1;
                            next = Some(item);
                        }
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => closing = true,
                    }
                }
                self.shared.size.store(self.range.size(), Ordering::Release);
                // Under load, let request decisions pile up for a moment
                // instead of being woken for each one: producers only pay
                // for a wake-up (a futex call and a context switch) when
                // the writer is parked in `recv`, not while it sleeps.
                // Durable items wait at most this long on top of their
                // fsync.
                if !urgent && !closing && batch < MAX_BATCH {
                    std::thread::sleep(collect_pause(self.cfg.group_commit));
                }
            }
            if closing {
                // Everything sent before `Close` is ahead of it in the
                // queue; take what raced in after it too.
                while let Ok(item) = self.rx.try_recv() {
                    self.shared.queue_len.fetch_sub(1, Ordering::Relaxed);
                    if !matches!(item, Item::Close) {
                        self.handle(item)?;
                    }
                }
                self.shared.size.store(self.range.size(), Ordering::Release);
                break;
            }
            let now = Instant::now();
            let commit_due = self
                .dirty_since
                .is_some_and(|since| now >= since + self.cfg.group_commit);
            if urgent || commit_due {
                self.sync()?;
                self.maybe_checkpoint();
            }
            if now >= self.last_tick + self.cfg.checkpoint_interval {
                self.last_tick = now;
                self.drain_spool()?;
                self.sync()?;
                self.maybe_checkpoint();
            }
        }
        Ok(())
    }

    /// Writes one item; returns whether it needs an fsync now.
    fn handle(&mut self, item: Item) -> Result<bool, LogError> {
        match item {
            Item::Entry(entry) => {
                self.write(&entry)?;
                Ok(false)
            }
            Item::Durable(entry, ack) => {
                let index = self.write(&entry)?;
                self.pending.push((ack, index));
                Ok(true)
            }
            Item::Sync(ack) => {
                let size = self.range.size();
                // Index of the last entry, acked as the size below.
                self.pending.push((ack, size));
                if self.dirty_since.is_none() {
                    self.dirty_since = Some(Instant::now());
                }
                Ok(true)
            }
            Item::Stall(rx) => {
                let _ = rx.recv();
                Ok(false)
            }
            Item::Close => Ok(false),
        }
    }

    /// Writes one record and its tree hashes; returns its index.
    fn write(&mut self, entry: &[u8]) -> Result<u64, LogError> {
        let index = self.range.size();
        let head = record_header(index, entry)?;
        let rec_len = (RECORD_HEADER_LEN + entry.len()) as u64;
        if index > self.seg_first && self.seg_len + rec_len > self.cfg.segment_max_bytes {
            self.roll()?;
        }
        self.seg
            .write_all(&head)
            .and_then(|()| self.seg.write_all(entry))
            .map_err(io_err("writing", &self.seg_path))?;
        self.seg_len += rec_len;
        let tree = &mut self.tree;
        let mut err = None;
        self.range.push_with(leaf_hash(entry), |h| {
            if err.is_none() {
                if let Err(e) = tree.append(h) {
                    err = Some(e);
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        Ok(index)
    }

    /// Fsyncs the current segment and starts the next one.
    fn roll(&mut self) -> Result<(), LogError> {
        self.sync()?;
        let header =
            SegmentHeader::new(self.range.size(), self.range.roots().to_vec()).map_err(|e| {
                LogError::Corrupt {
                    index: self.range.size(),
                    reason: e.to_string(),
                }
            })?;
        let (file, len) = create_segment(&self.cfg.dir, &header)?;
        self.seg = BufWriter::with_capacity(SEGMENT_BUFFER, file);
        self.seg_path = self.cfg.dir.join(segment_file_name(header.first_index));
        self.seg_len = len;
        self.seg_first = header.first_index;
        Ok(())
    }

    /// Makes everything written durable and acknowledges it.
    fn sync(&mut self) -> Result<(), LogError> {
        if self.dirty_since.is_none() && self.pending.is_empty() && self.spooled.is_empty() {
            return Ok(());
        }
        self.seg
            .flush()
            .map_err(io_err("writing", &self.seg_path))?;
        self.seg
            .get_ref()
            .sync_data()
            .map_err(io_err("syncing", &self.seg_path))?;
        // Readers and proofs see the tree hashes; they are not fsynced.
        self.tree.flush()?;
        self.durable_size = self.range.size();
        self.shared
            .durable_size
            .store(self.durable_size, Ordering::Release);
        self.dirty_since = None;
        for (ack, index) in self.pending.drain(..) {
            ack.send(Ok(index));
        }
        if !self.spooled.is_empty() {
            for path in self.spooled.drain(..) {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(target: "rampart::audit", path = %path.display(), error = %e, "removing a drained spool file failed; it will be appended again");
                }
            }
            if let Err(e) = sync_dir(&self.cfg.dir.join(crate::spool::SPOOL_DIR)) {
                tracing::warn!(target: "rampart::audit", error = %e, "syncing the spool directory failed");
            }
        }
        Ok(())
    }

    /// Hands a checkpoint of the durable tree to the checkpointer if one
    /// is due and it is idle. Failures are logged there and retried at
    /// the next interval.
    fn maybe_checkpoint(&mut self) {
        let size = self.durable_size;
        let last = self.shared.last_checkpoint_size.load(Ordering::Acquire);
        if size <= last || self.range.size() != size {
            return;
        }
        let due = size - last >= self.cfg.checkpoint_every
            || self.last_cp_at.elapsed() >= self.cfg.checkpoint_interval;
        let Some(cp) = self.checkpointer.as_ref() else {
            return;
        };
        if !due || cp.busy.load(Ordering::Acquire) {
            return;
        }
        cp.busy.store(true, Ordering::Release);
        let job = CpJob {
            size,
            root: self.range.root(),
        };
        if cp.tx.try_send(job).is_err() {
            cp.busy.store(false, Ordering::Release);
        }
        self.last_cp_at = Instant::now();
    }

    /// Stops the checkpointer after a final job for the durable tree (if
    /// `final_job`), returning the result of its last job.
    fn stop_checkpointer(&mut self, final_job: bool) -> Result<(), LogError> {
        let Some(cp) = self.checkpointer.take() else {
            return Ok(());
        };
        if final_job && self.range.size() == self.durable_size {
            let job = CpJob {
                size: self.durable_size,
                root: self.range.root(),
            };
            let _ = cp.tx.send(job);
        }
        drop(cp.tx);
        match cp.done.recv_timeout(FINAL_CHECKPOINT_TIMEOUT) {
            Ok(r) => {
                let _ = cp.thread.join();
                r
            }
            Err(RecvTimeoutError::Timeout) => Err(LogError::Failed(format!(
                "the final checkpoint was not signed within {} s; entries are durable and the next open signs them",
                FINAL_CHECKPOINT_TIMEOUT.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(LogError::Failed(
                "the checkpoint thread panicked".to_owned(),
            )),
        }
    }

    /// Appends spooled entries (as durable entries; each file is removed
    /// after the fsync that makes its entry durable).
    fn drain_spool(&mut self) -> Result<(), LogError> {
        let dir = self.cfg.dir.join(crate::spool::SPOOL_DIR);
        let files = match crate::spool::pending(&dir, MAX_SPOOL_BATCH) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(target: "rampart::audit", error = %e, "reading the spool failed");
                return Ok(());
            }
        };
        for path in files {
            match crate::spool::read_entry(&path) {
                Ok(entry) => {
                    self.write(&entry)?;
                    self.spooled.push(path);
                }
                Err(e) => {
                    tracing::error!(target: "rampart::audit", path = %path.display(), error = %e, "a spool file is unreadable; it is set aside");
                    crate::spool::set_aside(&dir, &path);
                }
            }
        }
        self.shared.size.store(self.range.size(), Ordering::Release);
        Ok(())
    }

    fn finish(mut self) -> Result<(), LogError> {
        let result = self.drain_spool().and_then(|()| self.sync());
        if let Err(e) = result {
            self.fail(&e);
            let _ = self.stop_checkpointer(false);
            return Err(e);
        }
        self.tree.flush()?;
        self.stop_checkpointer(true)
    }

    fn fail(&mut self, e: &LogError) {
        tracing::error!(target: "rampart::audit", error = %e, "the audit log writer failed; no further entries are accepted");
        *self.shared.failure.lock() = Some(e.to_string());
        self.shared.failed.store(true, Ordering::Release);
        let msg = e.to_string();
        for (ack, _) in self.pending.drain(..) {
            ack.send(Err(LogError::Failed(msg.clone())));
        }
    }

    fn drain_failed(&mut self) {
        let msg = self.shared.failure().to_string();
        while let Ok(item) = self.rx.recv() {
            self.shared.queue_len.fetch_sub(1, Ordering::Relaxed);
            match item {
                Item::Durable(_, ack) | Item::Sync(ack) => {
                    ack.send(Err(LogError::Failed(msg.clone())))
                }
                Item::Entry(_) => {}
                Item::Stall(rx) => {
                    let _ = rx.recv();
                }
                Item::Close => break,
            }
        }
    }
}
