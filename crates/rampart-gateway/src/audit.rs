//! The request path's side of the audit trail.
//!
//! Every request on a non-public route produces one decision record before
//! it is forwarded (`auth.success` with the authorization decision `allow`,
//! or `auth.failure` / `authz.decision` with `deny`), and every rejection by
//! any phase produces a `request.rejected` record. The records go to the
//! audit log's group-commit writer without waiting for the disk.
//!
//! Policy when the writer's queue is full (`[audit] on_full`):
//!
//! - `reject` (default): an authenticated request whose allow record
//!   cannot be queued is refused with `503 AUDIT_UNAVAILABLE` and never
//!   forwarded, so nothing is served unaudited. Denials and rejections of
//!   unauthenticated traffic are best effort: when the queue is full they
//!   are counted, not queued, and never block anything (otherwise a flood of
//!   garbage could deny service to signed traffic). The counts are written
//!   as one `audit.overflow` record as soon as the queue has room.
//! - `continue`: allowed requests are served even when their record is
//!   lost; the loss is counted and recorded the same way.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rampart_audit::event::types;
use rampart_audit::{Actor, AuditEvent, Clock, Decision, FieldSealer, Timestamp};
use rampart_core::config::AuditOnFull;

/// Why a record could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The writer's queue is full.
    Full,
    /// The writer has stopped (shutdown or a fatal I/O error).
    Closed,
}

/// The future of a durable append: the entry's index once it is on disk.
pub type DurableFuture = Pin<Box<dyn Future<Output = Result<u64, String>> + Send>>;

/// What the gateway needs from the audit log.
pub trait AuditWriter: Send + Sync + fmt::Debug {
    /// Queues a request-decision entry (group commit); never blocks.
    ///
    /// # Errors
    /// [`WriteError`] when the entry was not queued.
    fn try_append(&self, entry: Vec<u8>) -> Result<(), WriteError>;

    /// Appends an administrative entry; resolves after it is fsynced.
    fn append_durable(&self, entry: Vec<u8>) -> DurableFuture;

    /// Whether a request-decision entry would be queued right now.
    fn accepting(&self) -> bool;
}

impl AuditWriter for rampart_audit::log::AuditLog {
    fn try_append(&self, entry: Vec<u8>) -> Result<(), WriteError> {
        match self.append(entry) {
            Ok(()) => Ok(()),
            Err(rampart_audit::log::LogError::QueueFull) => Err(WriteError::Full),
            Err(_) => Err(WriteError::Closed),
        }
    }

    fn append_durable(&self, entry: Vec<u8>) -> DurableFuture {
        let durable = rampart_audit::log::AuditLog::append_durable(self, entry);
        Box::pin(async move { durable.await.map_err(|e| e.to_string()) })
    }

    fn accepting(&self) -> bool {
        self.is_accepting()
    }
}

/// The gateway's audit handle.
pub struct Auditor {
    writer: Arc<dyn AuditWriter>,
    clock: Arc<dyn Clock>,
    sealer: Option<Arc<dyn FieldSealer>>,
    on_full: AuditOnFull,
    /// Records not written because the queue was full or the writer closed.
    lost: AtomicU64,
    /// Requests refused because their record could not be queued.
    refused: AtomicU64,
    /// `lost` and `refused` as of the last `audit.overflow` record.
    reported_lost: AtomicU64,
    reported_refused: AtomicU64,
}

impl fmt::Debug for Auditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auditor")
            .field("on_full", &self.on_full)
            .field("lost", &self.lost.load(Ordering::Relaxed))
            .field("refused", &self.refused.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Largest request body kept (sealed) in a decision record.
pub const MAX_AUDITED_BODY: usize = 4096;

impl Auditor {
    /// A handle over `writer`.
    pub fn new(
        writer: Arc<dyn AuditWriter>,
        clock: Arc<dyn Clock>,
        sealer: Option<Arc<dyn FieldSealer>>,
        on_full: AuditOnFull,
    ) -> Self {
        Self {
            writer,
            clock,
            sealer,
            on_full,
            lost: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            reported_lost: AtomicU64::new(0),
            reported_refused: AtomicU64::new(0),
        }
    }

    /// The audit clock's current time.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The sealer for sensitive payload fields, if any.
    #[must_use]
    pub fn sealer(&self) -> Option<&dyn FieldSealer> {
        self.sealer.as_deref()
    }

    /// Whether an authenticated request may start: false only under the
    /// `reject` policy while the queue is full. Checked before the
    /// (comparatively costly) signature verification.
    #[must_use]
    pub fn admits(&self) -> bool {
        self.on_full == AuditOnFull::Continue || self.writer.accepting()
    }

    /// Records an allow decision. `Err` means the request must be refused
    /// (`reject` policy and the record could not be queued).
    ///
    /// # Errors
    /// `Err(())` when the request must not be served.
    #[allow(
        clippy::result_unit_err,
        reason = "the only information is: refuse the request"
    )]
    pub fn record_allow(&self, event: &AuditEvent) -> Result<(), ()> {
        match self.queue(event) {
            Ok(()) => Ok(()),
            Err(()) if self.on_full == AuditOnFull::Continue => Ok(()),
            Err(()) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("rampart_audit_refused_total").increment(1);
                Err(())
            }
        }
    }

    /// Records a denial or rejection, best effort (counted when lost).
    pub fn record_deny(&self, event: &AuditEvent) {
        let _ = self.queue(event);
    }

    fn queue(&self, event: &AuditEvent) -> Result<(), ()> {
        self.report_overflow();
        let entry = match event.to_entry() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(target: "rampart::audit", error = %e, "audit event not encodable");
                self.lost.fetch_add(1, Ordering::Relaxed);
                return Err(());
            }
        };
        match self.writer.try_append(entry) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("rampart_audit_lost_total").increment(1);
                if e == WriteError::Closed {
                    tracing::error!(target: "rampart::audit", "audit writer closed; record lost");
                }
                Err(())
            }
        }
    }

    /// Writes one `audit.overflow` record with the counts since the last
    /// one, once the queue has room again.
    fn report_overflow(&self) {
        let lost = self.lost.load(Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Relaxed);
        let prev_lost = self.reported_lost.load(Ordering::Relaxed);
        let prev_refused = self.reported_refused.load(Ordering::Relaxed);
        if (lost == prev_lost && refused == prev_refused) || !self.writer.accepting() {
            return;
        }
        // One reporter at a time: whoever moves the marker writes the record.
        if self
            .reported_lost
            .compare_exchange(prev_lost, lost, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.reported_refused.store(refused, Ordering::Relaxed);
        let ev = AuditEvent::new(
            self.now(),
            types::AUDIT_OVERFLOW,
            Actor::system(),
            "audit.overflow",
            "audit-queue",
            Decision::Info,
        )
        .plain("records_lost", lost.saturating_sub(prev_lost))
        .plain("requests_refused", refused.saturating_sub(prev_refused));
        // Queued like a request decision (never blocks a worker); if the
        // queue filled again in the meantime, the counts are reported with
        // the next record instead.
        let queued = ev
            .to_entry()
            .ok()
            .is_some_and(|entry| self.writer.try_append(entry).is_ok());
        if !queued {
            self.reported_refused.store(prev_refused, Ordering::Relaxed);
            self.reported_lost.store(prev_lost, Ordering::Release);
        }
    }

    /// Appends an administrative record and waits until it is on disk.
    ///
    /// # Errors
    /// The writer's error, or a timeout after 10 s.
    pub async fn record_admin(&self, event: &AuditEvent) -> Result<u64, String> {
        let entry = event.to_entry().map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(10), self.writer.append_durable(entry)).await
        {
            Ok(r) => r,
            Err(_) => Err("the audit writer did not confirm within 10 s".to_owned()),
        }
    }

    /// Records lost so far (queue full or writer closed).
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Requests refused so far because their record could not be queued.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}
