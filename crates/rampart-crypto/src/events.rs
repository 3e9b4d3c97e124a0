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
    /// A root key version was created and is now used for new wraps.
    RootKeyCreated {
        /// Provider kind.
        provider: &'static str,
        /// New root key version.
        version: u32,
    },
    /// A data key was re-wrapped under a newer root key version.
    DataKeyRewrapped {
        /// Purpose of the key.
        purpose: Purpose,
        /// Version of the key.
        version: u32,
        /// Root key version that now wraps it.
        root_key_version: u32,
    },
    /// Root key versions below `below` were destroyed.
    RootKeysDestroyed {
        /// Provider kind.
        provider: &'static str,
        /// Versions below this one are gone.
        below: u32,
        /// How many versions were destroyed.
        destroyed: usize,
    },
    /// A rewrap pass over stored records finished.
    RewrapCompleted {
        /// Encrypted fields examined.
        scanned: u64,
        /// Fields re-encrypted to the current version.
        rewrapped: u64,
        /// Fields left as they were because they changed concurrently.
        raced: u64,
        /// Fields that could not be decrypted (shredded accounts, damage).
        unreadable: u64,
    },
    /// An account key was destroyed: the account's encrypted fields are
    /// unrecoverable from now on.
    AccountShredded {
        /// The account.
        account_id: String,
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
            KeyEvent::RootKeyCreated { .. } => "key.root_key_created",
            KeyEvent::DataKeyRewrapped { .. } => "key.data_key_rewrapped",
            KeyEvent::RootKeysDestroyed { .. } => "key.root_keys_destroyed",
            KeyEvent::RewrapCompleted { .. } => "key.rewrap_completed",
            KeyEvent::AccountShredded { .. } => "key.account_shredded",
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

impl fmt::Display for KeyEvent {
    /// `key=value` pairs of the event's fields (no key material exists in
    /// any event).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyEvent::DataKeyCreated {
                purpose,
                version,
                root_key_version,
            } => write!(
                f,
                "purpose={purpose} version={version} root_key_version={root_key_version}"
            ),
            KeyEvent::DataKeysRetired {
                purpose,
                min_version,
                dropped,
            } => write!(
                f,
                "purpose={purpose} min_version={min_version} dropped={dropped}"
            ),
            KeyEvent::UnwrapFailed { purpose, version } => {
                write!(f, "purpose={purpose} version={version}")
            }
            KeyEvent::RootKeyCreated { provider, version } => {
                write!(f, "provider={provider} version={version}")
            }
            KeyEvent::DataKeyRewrapped {
                purpose,
                version,
                root_key_version,
            } => write!(
                f,
                "purpose={purpose} version={version} root_key_version={root_key_version}"
            ),
            KeyEvent::RootKeysDestroyed {
                provider,
                below,
                destroyed,
            } => write!(f, "provider={provider} below={below} destroyed={destroyed}"),
            KeyEvent::RewrapCompleted {
                scanned,
                rewrapped,
                raced,
                unreadable,
            } => write!(
                f,
                "scanned={scanned} rewrapped={rewrapped} raced={raced} unreadable={unreadable}"
            ),
            KeyEvent::AccountShredded { account_id } => write!(f, "account_id={account_id}"),
        }
    }
}

impl KeyEventSink for LogSink {
    fn record(&self, event: &KeyEvent) {
        if matches!(event, KeyEvent::UnwrapFailed { .. }) {
            tracing::warn!(target: "rampart::keys", event = event.name(), detail = %event, "key event");
        } else {
            tracing::info!(target: "rampart::keys", event = event.name(), detail = %event, "key event");
        }
    }
}
