//! The backend-neutral store trait.

use std::future::Future;

use crate::error::Result;
use crate::model::{
    Account, AccountKey, ApiKey, CipherRef, CipherSwap, DekState, KeyMetadata, MfaEnrolment,
    StoredCiphertext,
};

/// The durable store every backend (SQLite now, PostgreSQL later) implements.
///
/// Callers depend on this trait only. Each method is one atomic operation.
/// Backends must pass the conformance suite (feature `conformance`) unchanged.
pub trait Store: Send + Sync {
    /// Creates an account; [`Conflict`](crate::StoreError::Conflict) if the
    /// id exists, [`MissingReference`](crate::StoreError::MissingReference)
    /// if `parent_id` names no account.
    fn create_account(&self, account: &Account) -> impl Future<Output = Result<()>> + Send;

    /// Fetches one account; `NotFound` if absent.
    fn get_account(&self, id: &str) -> impl Future<Output = Result<Account>> + Send;

    /// Lists the direct sub-accounts of `parent_id`, ordered by id.
    fn list_sub_accounts(
        &self,
        parent_id: &str,
    ) -> impl Future<Output = Result<Vec<Account>>> + Send;

    /// Creates an API key; `Conflict` if `key_id` exists,
    /// `MissingReference` if the account does not.
    fn create_api_key(&self, key: &ApiKey) -> impl Future<Output = Result<()>> + Send;

    /// Creates many API keys in one transaction: all are stored or none.
    /// Fails like [`create_api_key`](Self::create_api_key) on the first
    /// offending key (`Conflict` for an existing or repeated `key_id`,
    /// `MissingReference` for an unknown account). An empty slice is a
    /// no-op.
    fn create_api_keys(&self, keys: &[ApiKey]) -> impl Future<Output = Result<()>> + Send;

    /// Replaces the secret ciphertext of an API key; `NotFound` if absent.
    fn set_api_key_secret(
        &self,
        key_id: &str,
        ciphertext: &[u8],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Fetches one API key by its public id; `NotFound` if absent.
    fn get_api_key(&self, key_id: &str) -> impl Future<Output = Result<ApiKey>> + Send;

    /// Lists the API keys of an account (revoked ones included), ordered by
    /// key id.
    fn list_api_keys(&self, account_id: &str) -> impl Future<Output = Result<Vec<ApiKey>>> + Send;

    /// Revokes an API key at `at_ms`; `NotFound` if absent. Revoking a
    /// revoked key keeps the first revocation time.
    fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> impl Future<Output = Result<()>> + Send;

    /// Stores an MFA enrolment, replacing any earlier one of the same
    /// account and kind; `MissingReference` if the account does not exist.
    fn put_mfa(&self, enrolment: &MfaEnrolment) -> impl Future<Output = Result<()>> + Send;

    /// Fetches the MFA enrolment of an account and kind; `NotFound` if absent.
    fn get_mfa(
        &self,
        account_id: &str,
        kind: &str,
    ) -> impl Future<Output = Result<MfaEnrolment>> + Send;

    /// Lists the MFA enrolments of an account, ordered by kind.
    fn list_mfa(&self, account_id: &str) -> impl Future<Output = Result<Vec<MfaEnrolment>>> + Send;

    /// Stores the shred handle of an account. `Conflict` if the account
    /// already has one (even a shredded one: a handle is never replaced),
    /// `MissingReference` if the account does not exist. A key that is not
    /// live (`secret` is `None` or `shredded_at_ms` is `Some`) is refused
    /// with `Conflict("account key")`.
    fn put_account_key(&self, key: &AccountKey) -> impl Future<Output = Result<()>> + Send;

    /// Fetches the shred handle of an account; `NotFound` if absent. A
    /// shredded handle comes back with `secret: None` and `shredded_at_ms`
    /// set.
    fn get_account_key(&self, account_id: &str) -> impl Future<Output = Result<AccountKey>> + Send;

    /// Shreds the handle of an account: deletes the secret and records
    /// `at_ms`. Shredding a shredded handle keeps the first time. `NotFound`
    /// if the account has no handle.
    fn shred_account_key(
        &self,
        account_id: &str,
        at_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Records a new data-key version; `Conflict` if that purpose and
    /// version exist.
    fn put_key_metadata(&self, meta: &KeyMetadata) -> impl Future<Output = Result<()>> + Send;

    /// Lists the data-key versions of a purpose, ordered by version.
    fn list_key_metadata(
        &self,
        purpose: &str,
    ) -> impl Future<Output = Result<Vec<KeyMetadata>>> + Send;

    /// Adds `by` to the encryption counter of a version and returns the new
    /// count; `NotFound` if absent.
    fn add_encryptions(
        &self,
        purpose: &str,
        version: u32,
        by: u64,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Replaces the wrapped DEK of a version and the root-key version that
    /// wrapped it (after a root-key rotation); `NotFound` if absent.
    fn update_wrapped_dek(
        &self,
        purpose: &str,
        version: u32,
        wrapped_dek: &[u8],
        root_key_version: u32,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets the state of a version; `NotFound` if absent.
    fn set_key_state(
        &self,
        purpose: &str,
        version: u32,
        state: DekState,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets the minimum decryption version of a purpose. It only rises:
    /// a lower value than the stored one is a `Conflict`.
    fn set_min_decrypt_version(
        &self,
        purpose: &str,
        version: u32,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The minimum decryption version of a purpose, `None` if never set.
    fn min_decrypt_version(
        &self,
        purpose: &str,
    ) -> impl Future<Output = Result<Option<u32>>> + Send;

    /// The number of stored encrypted fields: API keys with a secret, plus
    /// every MFA enrolment.
    fn count_ciphertexts(&self) -> impl Future<Output = Result<u64>> + Send;

    /// A page of at most `limit` stored encrypted fields strictly after
    /// `after` (from the start when `None`), in [`CipherRef`] order: every
    /// API-key secret by key id, then every MFA seed by account and kind,
    /// ids compared byte-wise as Rust strings are (SQLite's `BINARY`
    /// collation; a PostgreSQL backend needs `COLLATE "C"`). Keys without a
    /// secret are skipped.
    ///
    /// Pagination is by key, not offset: passing the last location of a
    /// page as the next `after` visits every field present for the whole
    /// walk exactly once, even while fields are inserted or updated
    /// concurrently, and each page costs the same however far the walk is.
    /// `after` need not exist any more. An empty page means the walk is
    /// over.
    fn scan_ciphertexts(
        &self,
        after: Option<&CipherRef>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredCiphertext>>> + Send;

    /// Applies compare-and-swaps, in order, in one transaction: each field
    /// is set to `new` only if it currently holds exactly `expected`.
    /// Returns, per swap, whether it was applied (`false` when the field
    /// changed since it was read, or its record is gone). This is how a
    /// rewrap writes without clobbering a concurrent write.
    fn swap_ciphertexts(
        &self,
        swaps: &[CipherSwap],
    ) -> impl Future<Output = Result<Vec<bool>>> + Send;
}
