//! A dyn-compatible face of [`Store`], for choosing the backend at run
//! time (from configuration) without making every caller generic.
//!
//! [`DynStore`] is implemented for every [`Store`] by boxing its futures;
//! [`AnyStore`] wraps an `Arc<dyn DynStore>` and implements [`Store`] again,
//! so generic code (and the conformance suite) accepts it unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;
use crate::model::{
    Account, AccountKey, ApiKey, CipherRef, CipherSwap, DekState, EnrolmentToken, KeyMetadata,
    KeyPermissions, MfaEnrolment, Operator, OperatorCredential, StoredCiphertext,
    WithdrawalAddress,
};
use crate::store::Store;

/// A boxed, sendable future borrowing from `'a`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`Store::get_previous_secret`] finds: the ciphertext and the time
/// until which it is accepted.
type PreviousSecret = Option<(Vec<u8>, i64)>;

/// [`Store`] with boxed futures, so it can be used as `dyn DynStore`.
/// Each method means exactly what the [`Store`] method of the same name
/// means.
pub trait DynStore: Send + Sync {
    /// See [`Store::create_account`].
    fn create_account<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::set_account_kyc`].
    fn set_account_kyc<'a>(
        &'a self,
        id: &'a str,
        kyc_tier: u8,
        risk_profile: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::get_account`].
    fn get_account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Account>>;
    /// See [`Store::list_sub_accounts`].
    fn list_sub_accounts<'a>(&'a self, parent_id: &'a str) -> BoxFuture<'a, Result<Vec<Account>>>;
    /// See [`Store::list_accounts`].
    fn list_accounts(&self) -> BoxFuture<'_, Result<Vec<Account>>>;
    /// See [`Store::create_api_key`].
    fn create_api_key<'a>(&'a self, key: &'a ApiKey) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::create_api_keys`].
    fn create_api_keys<'a>(&'a self, keys: &'a [ApiKey]) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::set_api_key_secret`].
    fn set_api_key_secret<'a>(
        &'a self,
        key_id: &'a str,
        ciphertext: &'a [u8],
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::set_api_key_permissions`].
    fn set_api_key_permissions<'a>(
        &'a self,
        key_id: &'a str,
        permissions: &'a KeyPermissions,
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::get_api_key`].
    fn get_api_key<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<ApiKey>>;
    /// See [`Store::list_api_keys`].
    fn list_api_keys<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<ApiKey>>>;
    /// See [`Store::list_all_api_keys`].
    fn list_all_api_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ApiKey>>>;
    /// See [`Store::revoke_api_key`].
    fn revoke_api_key<'a>(&'a self, key_id: &'a str, at_ms: i64) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::rotate_api_key_secret`].
    fn rotate_api_key_secret<'a>(
        &'a self,
        key_id: &'a str,
        new_ciphertext: &'a [u8],
        previous_valid_until_ms: i64,
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::get_previous_secret`].
    fn get_previous_secret<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<PreviousSecret>>;
    /// See [`Store::drop_expired_previous_secrets`].
    fn drop_expired_previous_secrets(&self, now_ms: i64) -> BoxFuture<'_, Result<u64>>;
    /// See [`Store::advance_key_counter`].
    fn advance_key_counter<'a>(
        &'a self,
        key_id: &'a str,
        nonce: u64,
    ) -> BoxFuture<'a, Result<bool>>;
    /// See [`Store::get_key_counter`].
    fn get_key_counter<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Option<u64>>>;
    /// See [`Store::set_key_nonce_window`].
    fn set_key_nonce_window<'a>(
        &'a self,
        key_id: &'a str,
        window: u64,
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::get_key_nonce_window`].
    fn get_key_nonce_window<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<u64>>;
    /// See [`Store::accept_windowed_nonce`].
    fn accept_windowed_nonce<'a>(
        &'a self,
        key_id: &'a str,
        nonce: u64,
        window: u64,
    ) -> BoxFuture<'a, Result<bool>>;
    /// See [`Store::put_mfa`].
    fn put_mfa<'a>(&'a self, enrolment: &'a MfaEnrolment) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::get_mfa`].
    fn get_mfa<'a>(
        &'a self,
        account_id: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<MfaEnrolment>>;
    /// See [`Store::list_mfa`].
    fn list_mfa<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<MfaEnrolment>>>;
    /// See [`Store::advance_mfa_step`].
    fn advance_mfa_step<'a>(
        &'a self,
        account_id: &'a str,
        kind: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<bool>>;
    /// See [`Store::consume_recovery_code`].
    fn consume_recovery_code<'a>(
        &'a self,
        account_id: &'a str,
        kind: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<bool>>;
    /// See [`Store::delete_mfa`].
    fn delete_mfa<'a>(&'a self, account_id: &'a str, kind: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// See [`Store::add_withdrawal_address`].
    fn add_withdrawal_address<'a>(
        &'a self,
        address: &'a WithdrawalAddress,
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::remove_withdrawal_address`].
    fn remove_withdrawal_address<'a>(
        &'a self,
        account_id: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<bool>>;
    /// See [`Store::list_withdrawal_addresses`].
    fn list_withdrawal_addresses<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WithdrawalAddress>>>;
    /// See [`Store::put_account_key`].
    fn put_account_key<'a>(&'a self, key: &'a AccountKey) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::get_account_key`].
    fn get_account_key<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<AccountKey>>;
    /// See [`Store::shred_account_key`].
    fn shred_account_key<'a>(
        &'a self,
        account_id: &'a str,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::put_key_metadata`].
    fn put_key_metadata<'a>(&'a self, meta: &'a KeyMetadata) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::list_key_metadata`].
    fn list_key_metadata<'a>(&'a self, purpose: &'a str)
        -> BoxFuture<'a, Result<Vec<KeyMetadata>>>;
    /// See [`Store::add_encryptions`].
    fn add_encryptions<'a>(
        &'a self,
        purpose: &'a str,
        version: u32,
        by: u64,
    ) -> BoxFuture<'a, Result<u64>>;
    /// See [`Store::update_wrapped_dek`].
    fn update_wrapped_dek<'a>(
        &'a self,
        purpose: &'a str,
        version: u32,
        wrapped_dek: &'a [u8],
        root_key_version: u32,
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::set_key_state`].
    fn set_key_state<'a>(
        &'a self,
        purpose: &'a str,
        version: u32,
        state: DekState,
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::set_min_decrypt_version`].
    fn set_min_decrypt_version<'a>(
        &'a self,
        purpose: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::min_decrypt_version`].
    fn min_decrypt_version<'a>(&'a self, purpose: &'a str) -> BoxFuture<'a, Result<Option<u32>>>;
    /// See [`Store::count_ciphertexts`].
    fn count_ciphertexts(&self) -> BoxFuture<'_, Result<u64>>;
    /// See [`Store::scan_ciphertexts`].
    fn scan_ciphertexts<'a>(
        &'a self,
        after: Option<&'a CipherRef>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<StoredCiphertext>>>;
    /// See [`Store::swap_ciphertexts`].
    fn swap_ciphertexts<'a>(&'a self, swaps: &'a [CipherSwap]) -> BoxFuture<'a, Result<Vec<bool>>>;
    /// See [`Store::create_operator`].
    fn create_operator<'a>(&'a self, operator: &'a Operator) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::get_operator`].
    fn get_operator<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Operator>>;
    /// See [`Store::list_operators`].
    fn list_operators(&self) -> BoxFuture<'_, Result<Vec<Operator>>>;
    /// See [`Store::disable_operator`].
    fn disable_operator<'a>(&'a self, name: &'a str, at_ms: i64) -> BoxFuture<'a, Result<u64>>;
    /// See [`Store::put_enrolment_token`].
    fn put_enrolment_token<'a>(&'a self, token: &'a EnrolmentToken) -> BoxFuture<'a, Result<()>>;
    /// See [`Store::enrolment_token_operator`].
    fn enrolment_token_operator<'a>(
        &'a self,
        token_hash: &'a [u8; 32],
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Option<String>>>;
    /// See [`Store::enrol_operator_credential`].
    fn enrol_operator_credential<'a>(
        &'a self,
        token_hash: &'a [u8; 32],
        credential: &'a OperatorCredential,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<bool>>;
    /// See [`Store::list_operator_credentials`].
    fn list_operator_credentials<'a>(
        &'a self,
        operator: &'a str,
    ) -> BoxFuture<'a, Result<Vec<OperatorCredential>>>;
    /// See [`Store::advance_operator_credential`].
    fn advance_operator_credential<'a>(
        &'a self,
        credential_id: &'a [u8],
        sign_count: u32,
        used_ms: i64,
    ) -> BoxFuture<'a, Result<bool>>;
    /// See [`Store::operator_credentials_exist`].
    fn operator_credentials_exist(&self) -> BoxFuture<'_, Result<bool>>;
}

impl<S: Store> DynStore for S {
    fn create_account<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::create_account(self, account))
    }
    fn set_account_kyc<'a>(
        &'a self,
        id: &'a str,
        kyc_tier: u8,
        risk_profile: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::set_account_kyc(self, id, kyc_tier, risk_profile))
    }
    fn get_account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Account>> {
        Box::pin(Store::get_account(self, id))
    }
    fn list_sub_accounts<'a>(&'a self, parent_id: &'a str) -> BoxFuture<'a, Result<Vec<Account>>> {
        Box::pin(Store::list_sub_accounts(self, parent_id))
    }
    fn list_accounts(&self) -> BoxFuture<'_, Result<Vec<Account>>> {
        Box::pin(Store::list_accounts(self))
    }
    fn create_api_key<'a>(&'a self, key: &'a ApiKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::create_api_key(self, key))
    }
    fn create_api_keys<'a>(&'a self, keys: &'a [ApiKey]) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::create_api_keys(self, keys))
    }
    fn set_api_key_secret<'a>(
        &'a self,
        key_id: &'a str,
        ciphertext: &'a [u8],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::set_api_key_secret(self, key_id, ciphertext))
    }
    fn set_api_key_permissions<'a>(
        &'a self,
        key_id: &'a str,
        permissions: &'a KeyPermissions,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::set_api_key_permissions(self, key_id, permissions))
    }
    fn get_api_key<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<ApiKey>> {
        Box::pin(Store::get_api_key(self, key_id))
    }
    fn list_api_keys<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<ApiKey>>> {
        Box::pin(Store::list_api_keys(self, account_id))
    }
    fn revoke_api_key<'a>(&'a self, key_id: &'a str, at_ms: i64) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::revoke_api_key(self, key_id, at_ms))
    }
    fn list_all_api_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ApiKey>>> {
        Box::pin(Store::list_all_api_keys(self, after, limit))
    }
    fn rotate_api_key_secret<'a>(
        &'a self,
        key_id: &'a str,
        new_ciphertext: &'a [u8],
        previous_valid_until_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::rotate_api_key_secret(
            self,
            key_id,
            new_ciphertext,
            previous_valid_until_ms,
        ))
    }
    fn get_previous_secret<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<PreviousSecret>> {
        Box::pin(Store::get_previous_secret(self, key_id))
    }
    fn drop_expired_previous_secrets(&self, now_ms: i64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Store::drop_expired_previous_secrets(self, now_ms))
    }
    fn advance_key_counter<'a>(
        &'a self,
        key_id: &'a str,
        nonce: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::advance_key_counter(self, key_id, nonce))
    }
    fn get_key_counter<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(Store::get_key_counter(self, key_id))
    }
    fn set_key_nonce_window<'a>(
        &'a self,
        key_id: &'a str,
        window: u64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::set_key_nonce_window(self, key_id, window))
    }
    fn get_key_nonce_window<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(Store::get_key_nonce_window(self, key_id))
    }
    fn accept_windowed_nonce<'a>(
        &'a self,
        key_id: &'a str,
        nonce: u64,
        window: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::accept_windowed_nonce(self, key_id, nonce, window))
    }
    fn put_mfa<'a>(&'a self, enrolment: &'a MfaEnrolment) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::put_mfa(self, enrolment))
    }
    fn get_mfa<'a>(
        &'a self,
        account_id: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<MfaEnrolment>> {
        Box::pin(Store::get_mfa(self, account_id, kind))
    }
    fn list_mfa<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<MfaEnrolment>>> {
        Box::pin(Store::list_mfa(self, account_id))
    }
    fn advance_mfa_step<'a>(
        &'a self,
        account_id: &'a str,
        kind: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::advance_mfa_step(self, account_id, kind, step))
    }
    fn consume_recovery_code<'a>(
        &'a self,
        account_id: &'a str,
        kind: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::consume_recovery_code(self, account_id, kind, hash))
    }
    fn delete_mfa<'a>(&'a self, account_id: &'a str, kind: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::delete_mfa(self, account_id, kind))
    }
    fn add_withdrawal_address<'a>(
        &'a self,
        address: &'a WithdrawalAddress,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::add_withdrawal_address(self, address))
    }
    fn remove_withdrawal_address<'a>(
        &'a self,
        account_id: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::remove_withdrawal_address(self, account_id, address))
    }
    fn list_withdrawal_addresses<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WithdrawalAddress>>> {
        Box::pin(Store::list_withdrawal_addresses(self, account_id))
    }
    fn put_account_key<'a>(&'a self, key: &'a AccountKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::put_account_key(self, key))
    }
    fn get_account_key<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<AccountKey>> {
        Box::pin(Store::get_account_key(self, account_id))
    }
    fn shred_account_key<'a>(
        &'a self,
        account_id: &'a str,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::shred_account_key(self, account_id, at_ms))
    }
    fn put_key_metadata<'a>(&'a self, meta: &'a KeyMetadata) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::put_key_metadata(self, meta))
    }
    fn list_key_metadata<'a>(
        &'a self,
        purpose: &'a str,
    ) -> BoxFuture<'a, Result<Vec<KeyMetadata>>> {
        Box::pin(Store::list_key_metadata(self, purpose))
    }
    fn add_encryptions<'a>(
        &'a self,
        purpose: &'a str,
        version: u32,
        by: u64,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(Store::add_encryptions(self, purpose, version, by))
    }
    fn set_key_state<'a>(
        &'a self,
        purpose: &'a str,
        version: u32,
        state: DekState,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::set_key_state(self, purpose, version, state))
    }
    fn update_wrapped_dek<'a>(
        &'a self,
        purpose: &'a str,
        version: u32,
        wrapped_dek: &'a [u8],
        root_key_version: u32,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::update_wrapped_dek(
            self,
            purpose,
            version,
            wrapped_dek,
            root_key_version,
        ))
    }
    fn set_min_decrypt_version<'a>(
        &'a self,
        purpose: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::set_min_decrypt_version(self, purpose, version))
    }
    fn min_decrypt_version<'a>(&'a self, purpose: &'a str) -> BoxFuture<'a, Result<Option<u32>>> {
        Box::pin(Store::min_decrypt_version(self, purpose))
    }
    fn count_ciphertexts(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Store::count_ciphertexts(self))
    }
    fn scan_ciphertexts<'a>(
        &'a self,
        after: Option<&'a CipherRef>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<StoredCiphertext>>> {
        Box::pin(Store::scan_ciphertexts(self, after, limit))
    }
    fn swap_ciphertexts<'a>(&'a self, swaps: &'a [CipherSwap]) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(Store::swap_ciphertexts(self, swaps))
    }
    fn create_operator<'a>(&'a self, operator: &'a Operator) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::create_operator(self, operator))
    }
    fn get_operator<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Operator>> {
        Box::pin(Store::get_operator(self, name))
    }
    fn list_operators(&self) -> BoxFuture<'_, Result<Vec<Operator>>> {
        Box::pin(Store::list_operators(self))
    }
    fn disable_operator<'a>(&'a self, name: &'a str, at_ms: i64) -> BoxFuture<'a, Result<u64>> {
        Box::pin(Store::disable_operator(self, name, at_ms))
    }
    fn put_enrolment_token<'a>(&'a self, token: &'a EnrolmentToken) -> BoxFuture<'a, Result<()>> {
        Box::pin(Store::put_enrolment_token(self, token))
    }
    fn enrolment_token_operator<'a>(
        &'a self,
        token_hash: &'a [u8; 32],
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(Store::enrolment_token_operator(self, token_hash, now_ms))
    }
    fn enrol_operator_credential<'a>(
        &'a self,
        token_hash: &'a [u8; 32],
        credential: &'a OperatorCredential,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::enrol_operator_credential(
            self, token_hash, credential, now_ms,
        ))
    }
    fn list_operator_credentials<'a>(
        &'a self,
        operator: &'a str,
    ) -> BoxFuture<'a, Result<Vec<OperatorCredential>>> {
        Box::pin(Store::list_operator_credentials(self, operator))
    }
    fn advance_operator_credential<'a>(
        &'a self,
        credential_id: &'a [u8],
        sign_count: u32,
        used_ms: i64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::advance_operator_credential(
            self,
            credential_id,
            sign_count,
            used_ms,
        ))
    }
    fn operator_credentials_exist(&self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(Store::operator_credentials_exist(self))
    }
}

/// A shared handle on any backend, chosen at run time. Cloning is cheap.
#[derive(Clone)]
pub struct AnyStore(Arc<dyn DynStore>);

impl AnyStore {
    /// Wraps a backend.
    pub fn new(store: impl Store + 'static) -> Self {
        Self(Arc::new(store))
    }
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnyStore")
    }
}

impl Store for AnyStore {
    async fn create_account(&self, account: &Account) -> Result<()> {
        DynStore::create_account(&*self.0, account).await
    }
    async fn set_account_kyc(
        &self,
        id: &str,
        kyc_tier: u8,
        risk_profile: Option<&str>,
    ) -> Result<()> {
        DynStore::set_account_kyc(&*self.0, id, kyc_tier, risk_profile).await
    }
    async fn get_account(&self, id: &str) -> Result<Account> {
        DynStore::get_account(&*self.0, id).await
    }
    async fn list_sub_accounts(&self, parent_id: &str) -> Result<Vec<Account>> {
        DynStore::list_sub_accounts(&*self.0, parent_id).await
    }
    async fn list_accounts(&self) -> Result<Vec<Account>> {
        DynStore::list_accounts(&*self.0).await
    }
    async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        DynStore::create_api_key(&*self.0, key).await
    }
    async fn create_api_keys(&self, keys: &[ApiKey]) -> Result<()> {
        DynStore::create_api_keys(&*self.0, keys).await
    }
    async fn set_api_key_secret(&self, key_id: &str, ciphertext: &[u8]) -> Result<()> {
        DynStore::set_api_key_secret(&*self.0, key_id, ciphertext).await
    }
    async fn set_api_key_permissions(
        &self,
        key_id: &str,
        permissions: &KeyPermissions,
    ) -> Result<()> {
        DynStore::set_api_key_permissions(&*self.0, key_id, permissions).await
    }
    async fn get_api_key(&self, key_id: &str) -> Result<ApiKey> {
        DynStore::get_api_key(&*self.0, key_id).await
    }
    async fn list_api_keys(&self, account_id: &str) -> Result<Vec<ApiKey>> {
        DynStore::list_api_keys(&*self.0, account_id).await
    }
    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<()> {
        DynStore::revoke_api_key(&*self.0, key_id, at_ms).await
    }
    async fn list_all_api_keys(&self, after: Option<&str>, limit: u32) -> Result<Vec<ApiKey>> {
        DynStore::list_all_api_keys(&*self.0, after, limit).await
    }
    async fn rotate_api_key_secret(
        &self,
        key_id: &str,
        new_ciphertext: &[u8],
        previous_valid_until_ms: i64,
    ) -> Result<()> {
        DynStore::rotate_api_key_secret(&*self.0, key_id, new_ciphertext, previous_valid_until_ms)
            .await
    }
    async fn get_previous_secret(&self, key_id: &str) -> Result<Option<(Vec<u8>, i64)>> {
        DynStore::get_previous_secret(&*self.0, key_id).await
    }
    async fn drop_expired_previous_secrets(&self, now_ms: i64) -> Result<u64> {
        DynStore::drop_expired_previous_secrets(&*self.0, now_ms).await
    }
    async fn advance_key_counter(&self, key_id: &str, nonce: u64) -> Result<bool> {
        DynStore::advance_key_counter(&*self.0, key_id, nonce).await
    }
    async fn get_key_counter(&self, key_id: &str) -> Result<Option<u64>> {
        DynStore::get_key_counter(&*self.0, key_id).await
    }
    async fn set_key_nonce_window(&self, key_id: &str, window: u64) -> Result<()> {
        DynStore::set_key_nonce_window(&*self.0, key_id, window).await
    }
    async fn get_key_nonce_window(&self, key_id: &str) -> Result<u64> {
        DynStore::get_key_nonce_window(&*self.0, key_id).await
    }
    async fn accept_windowed_nonce(&self, key_id: &str, nonce: u64, window: u64) -> Result<bool> {
        DynStore::accept_windowed_nonce(&*self.0, key_id, nonce, window).await
    }
    async fn put_mfa(&self, enrolment: &MfaEnrolment) -> Result<()> {
        DynStore::put_mfa(&*self.0, enrolment).await
    }
    async fn get_mfa(&self, account_id: &str, kind: &str) -> Result<MfaEnrolment> {
        DynStore::get_mfa(&*self.0, account_id, kind).await
    }
    async fn list_mfa(&self, account_id: &str) -> Result<Vec<MfaEnrolment>> {
        DynStore::list_mfa(&*self.0, account_id).await
    }
    async fn advance_mfa_step(&self, account_id: &str, kind: &str, step: u64) -> Result<bool> {
        DynStore::advance_mfa_step(&*self.0, account_id, kind, step).await
    }
    async fn consume_recovery_code(
        &self,
        account_id: &str,
        kind: &str,
        hash: &str,
    ) -> Result<bool> {
        DynStore::consume_recovery_code(&*self.0, account_id, kind, hash).await
    }
    async fn delete_mfa(&self, account_id: &str, kind: &str) -> Result<bool> {
        DynStore::delete_mfa(&*self.0, account_id, kind).await
    }
    async fn add_withdrawal_address(&self, address: &WithdrawalAddress) -> Result<()> {
        DynStore::add_withdrawal_address(&*self.0, address).await
    }
    async fn remove_withdrawal_address(&self, account_id: &str, address: &str) -> Result<bool> {
        DynStore::remove_withdrawal_address(&*self.0, account_id, address).await
    }
    async fn list_withdrawal_addresses(&self, account_id: &str) -> Result<Vec<WithdrawalAddress>> {
        DynStore::list_withdrawal_addresses(&*self.0, account_id).await
    }
    async fn put_account_key(&self, key: &AccountKey) -> Result<()> {
        DynStore::put_account_key(&*self.0, key).await
    }
    async fn get_account_key(&self, account_id: &str) -> Result<AccountKey> {
        DynStore::get_account_key(&*self.0, account_id).await
    }
    async fn shred_account_key(&self, account_id: &str, at_ms: i64) -> Result<()> {
        DynStore::shred_account_key(&*self.0, account_id, at_ms).await
    }
    async fn put_key_metadata(&self, meta: &KeyMetadata) -> Result<()> {
        DynStore::put_key_metadata(&*self.0, meta).await
    }
    async fn list_key_metadata(&self, purpose: &str) -> Result<Vec<KeyMetadata>> {
        DynStore::list_key_metadata(&*self.0, purpose).await
    }
    async fn add_encryptions(&self, purpose: &str, version: u32, by: u64) -> Result<u64> {
        DynStore::add_encryptions(&*self.0, purpose, version, by).await
    }
    async fn update_wrapped_dek(
        &self,
        purpose: &str,
        version: u32,
        wrapped_dek: &[u8],
        root_key_version: u32,
    ) -> Result<()> {
        DynStore::update_wrapped_dek(&*self.0, purpose, version, wrapped_dek, root_key_version)
            .await
    }
    async fn set_key_state(&self, purpose: &str, version: u32, state: DekState) -> Result<()> {
        DynStore::set_key_state(&*self.0, purpose, version, state).await
    }
    async fn set_min_decrypt_version(&self, purpose: &str, version: u32) -> Result<()> {
        DynStore::set_min_decrypt_version(&*self.0, purpose, version).await
    }
    async fn min_decrypt_version(&self, purpose: &str) -> Result<Option<u32>> {
        DynStore::min_decrypt_version(&*self.0, purpose).await
    }
    async fn count_ciphertexts(&self) -> Result<u64> {
        DynStore::count_ciphertexts(&*self.0).await
    }
    async fn scan_ciphertexts(
        &self,
        after: Option<&CipherRef>,
        limit: u32,
    ) -> Result<Vec<StoredCiphertext>> {
        DynStore::scan_ciphertexts(&*self.0, after, limit).await
    }
    async fn swap_ciphertexts(&self, swaps: &[CipherSwap]) -> Result<Vec<bool>> {
        DynStore::swap_ciphertexts(&*self.0, swaps).await
    }
    async fn create_operator(&self, operator: &Operator) -> Result<()> {
        DynStore::create_operator(&*self.0, operator).await
    }
    async fn get_operator(&self, name: &str) -> Result<Operator> {
        DynStore::get_operator(&*self.0, name).await
    }
    async fn list_operators(&self) -> Result<Vec<Operator>> {
        DynStore::list_operators(&*self.0).await
    }
    async fn disable_operator(&self, name: &str, at_ms: i64) -> Result<u64> {
        DynStore::disable_operator(&*self.0, name, at_ms).await
    }
    async fn put_enrolment_token(&self, token: &EnrolmentToken) -> Result<()> {
        DynStore::put_enrolment_token(&*self.0, token).await
    }
    async fn enrolment_token_operator(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<String>> {
        DynStore::enrolment_token_operator(&*self.0, token_hash, now_ms).await
    }
    async fn enrol_operator_credential(
        &self,
        token_hash: &[u8; 32],
        credential: &OperatorCredential,
        now_ms: i64,
    ) -> Result<bool> {
        DynStore::enrol_operator_credential(&*self.0, token_hash, credential, now_ms).await
    }
    async fn list_operator_credentials(&self, operator: &str) -> Result<Vec<OperatorCredential>> {
        DynStore::list_operator_credentials(&*self.0, operator).await
    }
    async fn advance_operator_credential(
        &self,
        credential_id: &[u8],
        sign_count: u32,
        used_ms: i64,
    ) -> Result<bool> {
        DynStore::advance_operator_credential(&*self.0, credential_id, sign_count, used_ms).await
    }
    async fn operator_credentials_exist(&self) -> Result<bool> {
        DynStore::operator_credentials_exist(&*self.0).await
    }
}
