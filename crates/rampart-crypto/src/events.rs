//! Key-operation events. Every create, rotation, retirement and unwrap
//! failure is reported through [`KeyEventSink`]; the audit layer will
//! implement it, and until then [`LogSink`] writes a structured log line.
//! Events carry purposes and versions, never key material.

use std::fmt;

use crate::purpose::Purpose;

/// One key operation worth an audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyEvent {
    /// A new data-key version was created (first key or rotation).
    DataKeyCreated {
        /// Purpose of the key.
        purpose: Purpose,
        /// New version.
        version: u32,
        /// Root key version that wrapped it.
        root_key_version: u32,
    },
    /// Versions below `min_version` were retired after a rewrap.
    DataKeysRetired {
        /// Purpose of the keys.
        purpose: Purpose,
        /// New minimum decryption version.
        min_version: u32,
        /// How many versions were dropped.
        dropped: usize,
    },
    /// A wrapped data key failed to unwrap (wrong root key or tampering).
    UnwrapFailed {
        /// Purpose of the key.
        purpose: Purpose,
        /// Version of the key.
        version: u32,
    },
}

impl KeyEvent {
    /// Stable event name, e.g. `key.data_key_created`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            KeyEvent::DataKeyCreated { .. } => "key.data_key_created",
            KeyEvent::DataKeysRetired { .. } => "key.data_keys_retired",
            KeyEvent::UnwrapFailed { .. } => "key.unwrap_failed",
        }
    }
}

/// Receives key events. Implementations must not block for long: events
/// are emitted on the calling thread.
pub trait KeyEventSink: Send + Sync + fmt::Debug {
    /// Records one event.
    fn record(&self, event: &KeyEvent);
}

/// The interim sink: one structured `tracing` line per event, target
/// `rampart::keys`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

impl KeyEventSink for LogSink {
    fn record(&self, event: &KeyEvent) {
        match event {
            KeyEvent::DataKeyCreated {
                purpose,
                version,
                root_key_version,
            } => tracing::info!(
                target: "rampart::keys",
                event = event.name(),
                purpose = purpose.as_str(),
                version,
                root_key_version,
                "data key created"
            ),
            KeyEvent::DataKeysRetired {
                purpose,
                min_version,
                dropped,
            } => tracing::info!(
                target: "rampart::keys",
                event = event.name(),
                purpose = purpose.as_str(),
                min_version,
                dropped,
                "data key versions retired"
            ),
            KeyEvent::UnwrapFailed { purpose, version } => tracing::warn!(
                target: "rampart::keys",
                event = event.name(),
                purpose = purpose.as_str(),
                version,
                "data key unwrap failed"
            ),
        }
    }
}
