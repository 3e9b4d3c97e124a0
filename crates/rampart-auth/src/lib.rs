//! Rampart request authentication: the wire formats.
//!
//! This crate turns an HTTP request into *claims* (who says they signed it,
//! when, with which nonce) and checks a signature against key material. It
//! does no I/O and keeps no state: key lookup, freshness windows, replay
//! caches and the problem responses live in the gateway, which calls this
//! crate in two steps — [`Claims`] first (no key needed), then `verify`
//! with the key the claims name. Each scheme also signs, for
//! `rampart-client`, the tests and the benchmarks.
//!
//! Schemes: [`rfc9421`] (HTTP Message Signatures with [`digest`], RFC 9530
//! `Content-Digest`) and the exchange-compatible [`profiles`] (Binance,
//! Kraken, Coinbase-style JWT).
//!
//! It must never: panic on any input (every parser is fuzzed); compare a
//! MAC in variable time; put a secret, a signature or a MAC into an error
//! or `Debug` output; read past the bounds the gateway already enforces.

pub mod digest;
pub mod directory;
pub mod principal;
pub mod profiles;
pub mod replay;
pub mod rfc9421;
pub mod totp;
mod types;
pub mod webauthn;
#[cfg(feature = "test-util")]
pub mod webauthn_soft;

pub use directory::{
    AccountDirectory, AccountRecord, DirectoryError, KeyDirectory, KeyOrderLimits, KeyRecord,
    MfaCheck,
};
pub use principal::Principal;
pub use replay::{MemoryNonceStore, NonceCheck, NonceStore};
pub use types::{AuthError, Claims, KeyMaterial, RequestView, Scheme, TimeUnit};
