//! The spool: how other processes hand durable entries to the writer.
//!
//! While `rampart serve` holds the log's lock, CLI commands cannot open
//! the log; they write each entry to `spool/<time_us, 20 digits>-<uuid>.entry`
//! (temporary file, fsync, rename, directory fsync: the entry is durable
//! when [`submit`] returns). The writer appends spool files in name order
//! at each checkpoint tick, as durable entries, and removes each file only
//! after the fsync that made its entry durable.
//!
//! Delivery is at least once: if the writer stops between that fsync and
//! the removal, the entry is appended again at the next drain. A spool
//! file that cannot be read or is too large is moved to `spool/rejected/`.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::event::MAX_ENTRY_BYTES;
use crate::log::{io_err, now_us, AuditLog, LogConfig, LogError};
use crate::note::CheckpointSigner;
use crate::segment::sync_dir;

/// Name of the spool directory inside the audit directory.
pub const SPOOL_DIR: &str = "spool";

/// Name of the directory (inside the spool) for unreadable spool files.
pub const REJECTED_DIR: &str = "rejected";

/// Suffix of spool files.
const SUFFIX: &str = ".entry";

/// Writes `entry` durably to the spool of the audit directory `dir` and
/// returns the spool file's path.
///
/// # Errors
///
/// [`LogError::TooLarge`] above [`MAX_ENTRY_BYTES`], [`LogError::Io`] on
/// file errors.
pub fn submit(dir: &Path, entry: &[u8]) -> Result<PathBuf, LogError> {
    if entry.len() > MAX_ENTRY_BYTES {
        return Err(LogError::TooLarge(entry.len()));
    }
    let spool = dir.join(SPOOL_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&spool)
        .map_err(io_err("creating directory", &spool))?;
    let id = uuid::Uuid::new_v4().simple();
    let name = format!("{:020}-{id}{SUFFIX}", now_us().max(0));
    let tmp = spool.join(format!(".{name}.tmp"));
    let path = spool.join(&name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        f.write_all(entry).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("renaming to", &path))?;
        sync_dir(&spool)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

/// Up to `max` spool files waiting in `spool`, in name (time) order.
///
/// # Errors
///
/// [`LogError::Io`] if the directory cannot be read.
pub fn pending(spool: &Path, max: usize) -> Result<Vec<PathBuf>, LogError> {
    let items = match std::fs::read_dir(spool) {
        Ok(items) => items,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("reading directory", spool)(e)),
    };
    let mut names: Vec<String> = Vec::new();
    for item in items {
        let item = item.map_err(io_err("reading directory", spool))?;
        let Ok(name) = item.file_name().into_string() else {
            continue;
        };
        if !name.starts_with('.') && name.ends_with(SUFFIX) {
            names.push(name);
        }
    }
    names.sort_unstable();
    names.truncate(max);
    Ok(names.into_iter().map(|n| spool.join(n)).collect())
}

/// Reads one spool file (at most [`MAX_ENTRY_BYTES`]).
///
/// # Errors
///
/// [`LogError::TooLarge`] if it is larger, [`LogError::Io`] if it cannot
/// be read.
pub fn read_entry(path: &Path) -> Result<Vec<u8>, LogError> {
    let f = File::open(path).map_err(io_err("opening", path))?;
    let mut entry = Vec::new();
    f.take(MAX_ENTRY_BYTES as u64 + 1)
        .read_to_end(&mut entry)
        .map_err(io_err("reading", path))?;
    if entry.len() > MAX_ENTRY_BYTES {
        return Err(LogError::TooLarge(entry.len()));
    }
    Ok(entry)
}

/// Moves an unusable spool file to `spool/rejected/`.
pub(crate) fn set_aside(spool: &Path, path: &Path) {
    let rejected = spool.join(REJECTED_DIR);
    let moved = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&rejected)
        .and_then(|()| {
            let name = path.file_name().unwrap_or_default();
            std::fs::rename(path, rejected.join(name))
        });
    if let Err(e) = moved {
        tracing::error!(target: "rampart::audit", path = %path.display(), error = %e, "moving a rejected spool file failed");
    }
}

/// Where [`append_or_spool`] put the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Appended to the log and fsynced, at this index.
    Log(u64),
    /// The log is held by another process: spooled (durable) at this
    /// path; that process appends it at its next checkpoint tick.
    Spooled(PathBuf),
}

/// Appends a durable entry for a short-lived process (a CLI command): if
/// the log's lock is free, opens the log, appends, waits for the fsync
/// and closes; if another process holds it, spools the entry.
///
/// # Errors
///
/// Any [`LogError`] of [`AuditLog::open`] other than
/// [`LogError::Locked`], of the append, or of [`submit`].
pub fn append_or_spool(
    cfg: LogConfig,
    signer: Arc<dyn CheckpointSigner>,
    entry: Vec<u8>,
) -> Result<Appended, LogError> {
    let dir = cfg.dir.clone();
    match AuditLog::open(cfg, signer) {
        Ok((log, _report)) => {
            let appended = log.append_durable(entry).wait();
            let closed = log.close();
            let index = appended?;
            closed?;
            Ok(Appended::Log(index))
        }
        Err(LogError::Locked(_)) => submit(&dir, &entry).map(Appended::Spooled),
        Err(e) => Err(e),
    }
}
