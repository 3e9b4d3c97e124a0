//! The audit clock: UTC with microsecond precision, never going
//! backwards, and honest about whether it is synchronised.
//!
//! Regulators want timestamps traceable to UTC (MiFID II RTS 25 asks for
//! 1 ms or better for trading systems). A gateway cannot make the host's
//! clock accurate, but it can record, per event, whether the host said it
//! was synchronised, and it can refuse to let a stepped-back wall clock
//! reorder the log. Linux's `adjtimex` is not reachable without `unsafe`,
//! so the sync state comes from a marker the time daemon maintains
//! (`/run/systemd/timesync/synchronized` for systemd-timesyncd), from an
//! operator-named file (chrony or ptp4l hooks can touch one), or from the
//! operator's explicit assertion.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Whether the time in an event is known to be synchronised to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSync {
    /// The host's time daemon reported synchronisation (or the operator
    /// asserted it).
    Synced,
    /// The host reported that the clock is not synchronised.
    Unsynced,
    /// No source of sync state is available (containers, no daemon).
    Unknown,
    /// The wall clock went backwards; the event time was held at the
    /// last issued time plus 1 µs so the log stays ordered.
    Stepped,
}

impl ClockSync {
    fn to_u8(self) -> u8 {
        match self {
            ClockSync::Synced => 0,
            ClockSync::Unsynced => 1,
            ClockSync::Unknown => 2,
            ClockSync::Stepped => 3,
        }
    }
    fn from_u8(v: u8) -> Self {
        match v {
            0 => ClockSync::Synced,
            1 => ClockSync::Unsynced,
            3 => ClockSync::Stepped,
            _ => ClockSync::Unknown,
        }
    }

    /// Stable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ClockSync::Synced => "synced",
            ClockSync::Unsynced => "unsynced",
            ClockSync::Unknown => "unknown",
            ClockSync::Stepped => "stepped",
        }
    }
}

/// A point in time with its sync state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Microseconds since the Unix epoch, UTC.
    pub micros: i64,
    /// Sync state when it was read.
    pub sync: ClockSync,
}

/// A source of audit timestamps.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time. Successive calls never go backwards.
    fn now(&self) -> Timestamp;
}

/// Where [`SystemClock`] learns the sync state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSource {
    /// systemd-timesyncd's marker file, if the host has one; otherwise
    /// `unknown`.
    Auto,
    /// Synchronised while this file exists (a chrony or ptp4l hook keeps
    /// it); `unsynced` otherwise.
    File(PathBuf),
    /// The operator asserts the host clock is disciplined (e.g. PTP on the
    /// host of a container).
    Assume,
}

/// systemd-timesyncd creates this file once synchronised.
const TIMESYNCD_MARKER: &str = "/run/systemd/timesync/synchronized";

/// How often the sync state is re-read (µs).
const SYNC_RECHECK_US: i64 = 10_000_000;

/// The host's wall clock, held monotonic, with its sync state.
#[derive(Debug, Clone)]
pub struct SystemClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: SyncSource,
    last_us: AtomicI64,
    sync: AtomicU8,
    /// Wall time (µs) after which the sync state is read again.
    next_check_us: AtomicI64,
}

impl SystemClock {
    /// A clock reading sync state from `source`.
    #[must_use]
    pub fn new(source: SyncSource) -> Self {
        let clock = Self {
            inner: Arc::new(Inner {
                source,
                last_us: AtomicI64::new(i64::MIN),
                sync: AtomicU8::new(ClockSync::Unknown.to_u8()),
                next_check_us: AtomicI64::new(i64::MIN),
            }),
        };
        clock.refresh_sync();
        clock
    }

    fn refresh_sync(&self) {
        let state = match &self.inner.source {
            SyncSource::Assume => ClockSync::Synced,
            SyncSource::File(p) => {
                if p.exists() {
                    ClockSync::Synced
                } else {
                    ClockSync::Unsynced
                }
            }
            SyncSource::Auto => {
                if std::path::Path::new(TIMESYNCD_MARKER).exists() {
                    ClockSync::Synced
                } else {
                    ClockSync::Unknown
                }
            }
        };
        self.inner.sync.store(state.to_u8(), Ordering::Relaxed);
        self.inner
            .next_check_us
            .store(now_us().saturating_add(SYNC_RECHECK_US), Ordering::Relaxed);
    }

    /// Re-reads the sync state when it is due; one caller does it (the one
    /// that moves the deadline), the others go on. No lock, no extra clock
    /// read on the hot path.
    fn maybe_refresh(&self, wall: i64) {
        let next = self.inner.next_check_us.load(Ordering::Relaxed);
        if wall >= next
            && self
                .inner
                .next_check_us
                .compare_exchange(
                    next,
                    wall.saturating_add(SYNC_RECHECK_US),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.refresh_sync();
        }
    }

    /// The sync state as last read.
    #[must_use]
    pub fn sync_state(&self) -> ClockSync {
        ClockSync::from_u8(self.inner.sync.load(Ordering::Relaxed))
    }
}

/// The wall clock now, microseconds since the Unix epoch (0 before 1970),
/// without the monotonic hold or sync state of [`SystemClock`].
#[must_use]
pub fn now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        // Before 1970: a badly broken clock; the monotonic hold below keeps order.
        Err(_) => 0,
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let wall = now_us();
        self.maybe_refresh(wall);
        let mut sync = self.sync_state();
        let mut prev = self.inner.last_us.load(Ordering::Relaxed);
        loop {
            // Equal times are allowed (many events in one microsecond);
            // only a step backwards is held and flagged.
            let (t, stepped) = if wall >= prev {
                (wall, false)
            } else {
                (prev, true)
            };
            match self.inner.last_us.compare_exchange_weak(
                prev,
                t,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if stepped {
                        sync = ClockSync::Stepped;
                    }
                    return Timestamp { micros: t, sync };
                }
                Err(actual) => prev = actual,
            }
        }
    }
}

/// A clock that returns a fixed time (tests and replays).
#[derive(Debug)]
pub struct FixedClock {
    /// The time it returns.
    pub micros: AtomicI64,
    /// The sync state it reports.
    pub sync: ClockSync,
}

impl FixedClock {
    /// A clock stuck at `micros`.
    #[must_use]
    pub fn new(micros: i64, sync: ClockSync) -> Self {
        Self {
            micros: AtomicI64::new(micros),
            sync,
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp {
            micros: self.micros.load(Ordering::Relaxed),
            sync: self.sync,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards_and_flags_steps() {
        let c = SystemClock::new(SyncSource::Assume);
        let a = c.now();
        assert_eq!(a.sync, ClockSync::Synced);
        // Simulate a wall clock that stepped back by pushing the last
        // issued time into the future.
        c.inner
            .last_us
            .store(a.micros + 10_000_000, Ordering::Relaxed);
        let b = c.now();
        assert_eq!(b.micros, a.micros + 10_000_000);
        assert_eq!(b.sync, ClockSync::Stepped);
    }

    #[test]
    fn file_source_tracks_the_marker() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let marker = dir.path().join("synced");
        let c = SystemClock::new(SyncSource::File(marker.clone()));
        assert_eq!(c.now().sync, ClockSync::Unsynced);
        std::fs::write(&marker, b"").unwrap_or_else(|e| unreachable!("{e}"));
        c.refresh_sync();
        assert_eq!(c.now().sync, ClockSync::Synced);
    }
}
