//! Rampart durable store.
//!
//! This crate owns Rampart's durable state: accounts and sub-accounts, API
//! keys, MFA enrolments and the keyring's data-key metadata (later also
//! policies). Callers use the backend-neutral [`Store`] trait; the embedded
//! backend is [`SqliteStore`] (one SQLite file under the data dir, WAL,
//! foreign keys on, schema from embedded migrations). A PostgreSQL backend
//! can be added behind the same trait without touching callers, and must
//! pass the same conformance suite (the `conformance` feature exposes
//! `rampart_store::conformance`).
//!
//! It must never: store or see a plaintext secret (API secrets, MFA seeds
//! and data keys arrive already sealed by rampart-crypto as opaque bytes
//! and leave the same way); print those bytes in any `Debug` output; put
//! stored values into error messages; or panic on anything read back from
//! the database (malformed rows are a [`StoreError::Backend`]).
//!
//! ```
//! use rampart_store::{Account, SqliteStore, Store, StoreError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! let store = SqliteStore::open_in_memory().await?; // `open_in_dir(data_dir)` in production
//! let desk = Account { id: "desk".into(), name: "Desk".into(), parent_id: None, created_at_ms: 0 };
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
pub use model::{Account, ApiKey, DekState, KeyMetadata, KeyState, MfaEnrolment};
pub use sqlite::SqliteStore;
pub use store::Store;
