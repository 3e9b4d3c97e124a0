//! The backend-neutral store trait.

use std::future::Future;

use crate::error::Result;
use crate::model::{Account, ApiKey, DekState, KeyMetadata, MfaEnrolment};

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
}
