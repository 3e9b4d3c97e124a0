//! Rampart key hierarchy and encryption at rest.
//!
//! This crate owns every secret-key operation of Rampart: the key providers
//! that hold the root key ([`local`], later PKCS#11), the data keys (DEKs)
//! per [`Purpose`] that the root key wraps, and the AES-256-GCM envelope
//! format that binds each encrypted field to its record ([`envelope`]).
//!
//! ```text
//! root key (provider: local file, sealed by argon2id passphrase | HSM)
//!   └─ wraps ─ DEK(purpose, version)   e.g. api-secrets v1, v2 …
//!                ├─ seals ─ field envelope (format 1), AAD = record type ‖ id ‖ field ‖ purpose ‖ version
//!                └─ HKDF with the account's shred handle ─ account key ─ seals ─ field envelope (format 2)
//! ```
//!
//! It must never: log, print or return key material or plaintext in any
//! `Debug`, `Display` or error; panic on attacker-controlled bytes (every
//! parser returns [`CryptoError`]); reuse a nonce (all nonces are random and
//! each data key refuses to seal past its limit); or pull in a second crypto
//! library (aws-lc-rs only; `ring` and `openssl` are banned).

pub mod account;
pub mod aead;
pub mod envelope;
pub mod error;
pub mod events;
pub mod keyring;
pub mod local;
pub mod pkcs11;
pub mod provider;
pub mod purpose;

pub use account::AccountKey;
pub use envelope::{AadContext, Envelope, Scope};
pub use error::{CryptoError, Result};
pub use events::{KeyEvent, KeyEventSink, LogSink};
pub use keyring::{DataKeyStatus, Keyring, KeyringLimits, WrappedDataKey};
pub use local::{wrapped_root_version, KdfParams, LocalKeyProvider};
pub use pkcs11::{Pkcs11Config, Pkcs11KeyProvider};
pub use provider::{DataKey, KeyProvider, ProviderHealth};
pub use purpose::Purpose;
pub use secrecy::SecretString;
