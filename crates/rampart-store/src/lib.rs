//! Rampart durable store.
//!
//! This crate owns Rampart's durable state: accounts and sub-accounts (with
//! their KYC tier and risk profile), API keys (with their permissions, the
//! previous secret of a rotated key and the last accepted request nonce),
//! MFA enrolments (with the TOTP replay guard and recovery-code hashes),
//! withdrawal address books, per-account shred handles and the keyring's
//! data-key metadata (later also policies). Callers use the
//! backend-neutral [`Store`] trait; the embedded backend is [`SqliteStore`]
//! (one SQLite file under the data dir, WAL, foreign keys on,
//! `secure_delete` on, schema from embedded migrations). A PostgreSQL
//! backend can be added behind the same trait without touching callers, and
//! must pass the same conformance suite (the `conformance` feature exposes
//! `rampart_store::conformance`).
//!
//! Besides plain records, the store carries what key management needs:
//!
//! - **Root-key rotation**: every data-key version records the
//!   [`root_key_version`](KeyMetadata::root_key_version) that wrapped it,
//!   and [`Store::update_wrapped_dek`] replaces the wrapped bytes.
//! - **API-key secret rotation with an overlap window**:
//!   [`Store::rotate_api_key_secret`] makes the current secret the previous
//!   one, accepted until a given time ([`Store::get_previous_secret`]),
//!   and [`Store::drop_expired_previous_secrets`] sweeps the expired ones.
//! - **Strictly increasing request nonces** per API key, persisted:
//!   [`Store::advance_key_counter`] accepts a nonce only if it is above the
//!   last one, atomically, so a replayed or reordered nonce is refused even
//!   across restarts and concurrent requests.
//! - **Online rewrap** of encrypted fields (API-key secrets, previous
//!   secrets, MFA seeds): [`Store::count_ciphertexts`] and
//!   [`Store::scan_ciphertexts`] walk every field in a stable [`CipherRef`]
//!   order with keyset pagination (cheap on 100k+ records, correct under
//!   concurrent writes), and [`Store::swap_ciphertexts`] writes a batch of
//!   rewrapped fields as compare-and-swaps, so a concurrent write is never
//!   clobbered.
//!   [`Store::create_api_keys`] inserts keys in bulk, in one transaction.
//! - **What authorization and MFA need**: an account's KYC tier (0, market
//!   data only, unless raised) and risk profile
//!   ([`Store::set_account_kyc`]); a key's [`KeyPermissions`], one JSON
//!   column so later settings need no migration
//!   ([`Store::set_api_key_permissions`]); the TOTP replay guard
//!   [`Store::advance_mfa_step`] (a time step is used at most once, one
//!   conditional write, race-free across connections) and single-use
//!   recovery codes ([`Store::consume_recovery_code`]); and a withdrawal
//!   address book whose entries take effect after a delay
//!   ([`Store::add_withdrawal_address`]).
//! - **Operator accounts** for the admin listener: operators, their
//!   WebAuthn credentials (public keys and signature counters, advanced
//!   by one conditional write that refuses a counter that did not grow:
//!   [`Store::advance_operator_credential`]) and one-time enrolment
//!   tokens, stored as SHA-256 hashes and spent atomically with the
//!   credential they register ([`Store::enrol_operator_credential`]).
//! - **Crypto-shredding**: an [`AccountKey`] is a per-account secret mixed
//!   into the account's field keys; [`Store::shred_account_key`] deletes it
//!   (leaving a tombstone), making the account's fields unrecoverable. With
//!   `secure_delete` and [`SqliteStore::checkpoint`] the secret's bytes are
//!   gone from the database file and its WAL too.
//!
//! It must never: store or see a plaintext secret (API secrets, MFA seeds
//! and data keys arrive already sealed by rampart-crypto as opaque bytes
//! and leave the same way; the one raw secret it holds, an account's shred
//! handle, is kept in zeroizing memory and zeroed on disk when shredded);
//! print those bytes in any `Debug` output; put stored values into error
//! messages; or panic on anything read back from the database (malformed
//! rows are a [`StoreError::Backend`]).
//!
//! ```
//! use rampart_store::{Account, SqliteStore, Store, StoreError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! let store = SqliteStore::open_in_memory().await?; // `open_in_dir(data_dir)` in production
//! let desk = Account {
//!     id: "desk".into(),
//!     name: "Desk".into(),
//!     parent_id: None,
//!     created_at_ms: 0,
//!     kyc_tier: 0, // the secure default: market data only
//!     risk_profile: None,
//! };
//! store.create_account(&desk).await?;
//! assert_eq!(store.get_account("desk").await?, desk);
//! assert_eq!(store.get_account("nobody").await, Err(StoreError::NotFound("account")));
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod dyn_store;
pub mod error;
pub mod model;
pub mod sqlite;
pub mod store;

pub use dyn_store::{AnyStore, DynStore};
pub use error::{Result, StoreError};
pub use model::{
    Account, AccountKey, ApiKey, CipherRef, CipherSwap, DekState, EnrolmentToken, KeyMetadata,
    KeyPermissions, KeyState, MfaEnrolment, Operator, OperatorCredential, StoredCiphertext,
    WithdrawalAddress, COSE_EDDSA, COSE_ES256, DEFAULT_MFA_ALGORITHM, DEFAULT_MFA_DIGITS,
    DEFAULT_MFA_PERIOD_SECS, MAX_KYC_TIER, MFA_ALGORITHMS,
};
pub use sqlite::SqliteStore;
pub use store::Store;
