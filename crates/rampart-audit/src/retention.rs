//! Retention: archive and remove whole old segments.
//!
//! A segment is pruned only if it is not the active (last) segment and
//! every entry in it is older than `now − retention` (its `time_us` is
//! read with a light parse; an entry without a readable time keeps its
//! segment). Pruning goes from the oldest segment and stops at the first
//! segment that must be kept, so the log stays one contiguous range. Each
//! segment is first exported as a bundle to the archive directory
//! (fsynced), the bundle is verified, and only then is the segment
//! removed. The next segment's header holds the frontier of the tree
//! before it, so the log still verifies from its new first index.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bundle::export_bundle;
use crate::log::{io_err, read_public_keys, LogError};
use crate::reader::LogReader;
use crate::segment::sync_dir;
use crate::verify::{verify_bundle, VerifyOptions};

/// One pruned segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunedSegment {
    /// Its first index.
    pub first_index: u64,
    /// One past its last index.
    pub end_index: u64,
    /// The bundle it was archived to.
    pub archive: PathBuf,
}

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// The segments archived and removed, oldest first.
    pub pruned: Vec<PrunedSegment>,
    /// The first index the log holds now.
    pub first_index: u64,
    /// Why pruning stopped where it did.
    pub stopped: String,
}

#[derive(Deserialize)]
struct EntryTime {
    time_us: Option<i64>,
}

/// The `time_us` of an entry, if it is a JSON object with an integer
/// `time_us`.
#[must_use]
pub fn entry_time_us(entry: &[u8]) -> Option<i64> {
    serde_json::from_slice::<EntryTime>(entry).ok()?.time_us
}

/// The archive file name of the segment `[first, end)`.
#[must_use]
pub fn archive_file_name(first: u64, end: u64) -> String {
    format!("audit-{first:020}-{end:020}.bundle.jsonl")
}

/// Archives and removes the segments of `dir` whose entries are all older
/// than `now_us − retention`.
///
/// # Errors
///
/// [`LogError`] if reading, exporting, verifying the archive or removing
/// fails; segments already pruned stay pruned (and archived).
pub fn prune(
    dir: &Path,
    retention: Duration,
    archive_dir: &Path,
    now_us: i64,
) -> Result<PruneReport, LogError> {
    let retention_us = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    let cutoff = now_us.saturating_sub(retention_us);
    std::fs::create_dir_all(archive_dir).map_err(io_err("creating directory", archive_dir))?;
    let reader = LogReader::open(dir)?;
    let segments = reader.segments();
    let mut report = PruneReport {
        pruned: Vec::new(),
        first_index: reader.first_index(),
        stopped: "only the active segment is left".to_owned(),
    };
    let keys = read_public_keys(dir)?;
    let signed = reader.latest_checkpoint()?.map_or(0, |c| c.checkpoint.size);
    for (first, end, path) in segments.iter().take(segments.len().saturating_sub(1)) {
        if *end > signed {
            report.stopped = format!(
                "segment {first}..{end} is not yet covered by a checkpoint (size {signed})"
            );
            break;
        }
        let mut keep: Option<String> = None;
        for item in reader.iter_from(*first) {
            let (index, entry) = item?;
            if index >= *end {
                break;
            }
            match entry_time_us(&entry) {
                Some(t) if t < cutoff => {}
                Some(t) => {
                    keep = Some(format!(
                        "entry {index} ({t} µs) is within the retention period"
                    ));
                    break;
                }
                None => {
                    keep = Some(format!("entry {index} has no readable time"));
                    break;
                }
            }
        }
        if let Some(why) = keep {
            report.stopped = why;
            break;
        }
        let archive = archive_dir.join(archive_file_name(*first, *end));
        let bundle = export_bundle(dir, &archive, Some((*first, *end)))?;
        let opts = VerifyOptions {
            public_key: keys.last().cloned(),
            ..VerifyOptions::default()
        };
        // With several keys (rotation), accept any of the directory's.
        let verified = verify_bundle(&archive, &opts).or_else(|e| {
            if keys.len() > 1 {
                verify_bundle(&archive, &VerifyOptions::default())
            } else {
                Err(e)
            }
        });
        if let Err(e) = verified {
            return Err(LogError::Corrupt {
                index: *first,
                reason: format!("the archive of segment {first}..{end} does not verify: {e}"),
            });
        }
        std::fs::remove_file(path).map_err(io_err("removing", path))?;
        sync_dir(dir)?;
        tracing::info!(target: "rampart::audit", first, end, archive = %bundle.path.display(), "pruned an audit segment");
        report.pruned.push(PrunedSegment {
            first_index: *first,
            end_index: *end,
            archive,
        });
        report.first_index = *end;
    }
    Ok(report)
}
