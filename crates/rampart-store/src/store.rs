//! The backend-neutral store trait.

use std::future::Future;

use crate::error::Result;
use crate::model::{
    Account, AccountKey, ApiKey, CipherRef, CipherSwap, DekState, EnrolmentToken, KeyMetadata,
    KeyPermissions, MfaEnrolment, Operator, OperatorCredential, StoredCiphertext,
    WithdrawalAddress,
};

/// The durable store every backend (SQLite now, PostgreSQL later) implements.
///
/// Callers depend on this trait only. Each method is one atomic operation.
/// Backends must pass the conformance suite (feature `conformance`) unchanged.
pub trait Store: Send + Sync {
    /// Creates an account; [`Conflict`](crate::StoreError::Conflict) if the
    /// id exists, [`MissingReference`](crate::StoreError::MissingReference)
    /// if `parent_id` names no account, `Conflict("kyc tier out of range")`
    /// if `kyc_tier` is above [`MAX_KYC_TIER`](crate::MAX_KYC_TIER).
    fn create_account(&self, account: &Account) -> impl Future<Output = Result<()>> + Send;

    /// Sets the KYC tier and risk profile of an account (both replaced).
    /// `Conflict("kyc tier out of range")` above
    /// [`MAX_KYC_TIER`](crate::MAX_KYC_TIER) (checked first);
    /// `NotFound("account")` if the account does not exist.
    fn set_account_kyc(
        &self,
        id: &str,
        kyc_tier: u8,
        risk_profile: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Fetches one account; `NotFound` if absent.
    fn get_account(&self, id: &str) -> impl Future<Output = Result<Account>> + Send;

    /// Lists the direct sub-accounts of `parent_id`, ordered by id.
    fn list_sub_accounts(
        &self,
        parent_id: &str,
    ) -> impl Future<Output = Result<Vec<Account>>> + Send;

    /// Lists every account (sub-accounts included), ordered by id (compared
    /// byte-wise).
    fn list_accounts(&self) -> impl Future<Output = Result<Vec<Account>>> + Send;

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

    /// Replaces the permissions of an API key; `NotFound("api key")` if
    /// absent.
    fn set_api_key_permissions(
        &self,
        key_id: &str,
        permissions: &KeyPermissions,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Fetches one API key by its public id; `NotFound` if absent.
    fn get_api_key(&self, key_id: &str) -> impl Future<Output = Result<ApiKey>> + Send;

    /// Lists the API keys of an account (revoked ones included), ordered by
    /// key id.
    fn list_api_keys(&self, account_id: &str) -> impl Future<Output = Result<Vec<ApiKey>>> + Send;

    /// A page of at most `limit` API keys of every account (revoked ones
    /// included) with a key id strictly after `after` (from the start when
    /// `None`), ordered by key id compared byte-wise.
    ///
    /// Pagination is by key, as for
    /// [`scan_ciphertexts`](Self::scan_ciphertexts): passing the last key id
    /// of a page as the next `after` visits every key present for the whole
    /// walk exactly once, and `after` need not exist. An empty page means
    /// the walk is over.
    fn list_all_api_keys(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ApiKey>>> + Send;

    /// Revokes an API key at `at_ms`; `NotFound` if absent. Revoking a
    /// revoked key keeps the first revocation time.
    fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> impl Future<Output = Result<()>> + Send;

    /// Rotates the secret of an API key, in one transaction: the current
    /// secret ciphertext becomes the key's previous secret, accepted until
    /// `previous_valid_until_ms` (replacing any earlier previous secret and
    /// its validity), and `new_ciphertext` becomes the current secret.
    ///
    /// `NotFound("api key")` if the key does not exist;
    /// `Conflict("api key secret")` if it has no current secret (asymmetric
    /// schemes). Nothing changes on error.
    ///
    /// The stored bytes move as they are. A ciphertext whose associated
    /// data names its field (sealed for [`CipherRef::ApiKeySecret`]) does
    /// not open as [`CipherRef::ApiKeyPreviousSecret`] until the caller
    /// re-seals it there, for example with a compare-and-swap through
    /// [`swap_ciphertexts`](Self::swap_ciphertexts).
    fn rotate_api_key_secret(
        &self,
        key_id: &str,
        new_ciphertext: &[u8],
        previous_valid_until_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The previous secret ciphertext of an API key and the time (Unix
    /// milliseconds) until which it is accepted; `None` when the key has
    /// none. An expired previous secret is returned until
    /// [`drop_expired_previous_secrets`](Self::drop_expired_previous_secrets)
    /// removes it, so callers compare the time themselves. `NotFound("api
    /// key")` if the key does not exist.
    fn get_previous_secret(
        &self,
        key_id: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, i64)>>> + Send;

    /// Deletes every previous secret whose validity ended, that is whose
    /// `valid_until_ms <= now_ms`, and returns how many were deleted. The
    /// current secrets are untouched.
    fn drop_expired_previous_secrets(
        &self,
        now_ms: i64,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Accepts a request nonce of an API key if, and only if, it is
    /// strictly greater than the last nonce accepted for the key (any nonce
    /// is accepted when none was), storing it as the new last nonce.
    /// Returns whether it was accepted: `false` for a nonce equal to or
    /// below the stored one, which stays as it is.
    ///
    /// Atomic: of concurrent calls with the same nonce, exactly one is
    /// accepted. Nonces are stored as signed 64-bit integers, so a nonce
    /// above `i64::MAX` is refused with `Conflict("nonce out of range")`
    /// (checked first, before the key). `MissingReference("key counter")`
    /// if the key does not exist.
    fn advance_key_counter(
        &self,
        key_id: &str,
        nonce: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The last nonce accepted for an API key; `None` if none was (also
    /// when the key does not exist).
    fn get_key_counter(&self, key_id: &str) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Sets the nonce window of an API key (0 = strictly increasing nonces).
    /// `MissingReference("key counter")` if the key does not exist;
    /// `Conflict("nonce out of range")` above `i64::MAX`.
    fn set_key_nonce_window(
        &self,
        key_id: &str,
        window: u64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The nonce window of an API key (0 when never set or unknown).
    fn get_key_nonce_window(&self, key_id: &str) -> impl Future<Output = Result<u64>> + Send;

    /// Accepts `nonce` for a key with a nonce window of `window`: accepted
    /// if it is above `highest - window` (where `highest` is the highest
    /// nonce accepted so far, 0 when none) and was never accepted before.
    /// One transaction: concurrent calls with the same nonce accept it once.
    /// Nonces that fall out of the window are forgotten (they can never be
    /// accepted again anyway). `MissingReference("key counter")` if the key
    /// does not exist; `Conflict("nonce out of range")` above `i64::MAX`.
    fn accept_windowed_nonce(
        &self,
        key_id: &str,
        nonce: u64,
        window: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Stores an MFA enrolment, replacing any earlier one of the same
    /// account and kind; `MissingReference` if the account does not exist.
    ///
    /// Refused with `Conflict("mfa parameters")` (before anything is
    /// written) unless `algorithm` is one of
    /// [`MFA_ALGORITHMS`](crate::MFA_ALGORITHMS), `digits` is `6..=10` and
    /// `period_secs` is at least 1; with `Conflict("recovery code hash")`
    /// unless every recovery hash is 64 lowercase hex digits and none is
    /// repeated (so a plaintext code is never stored by mistake); and with
    /// `Conflict("mfa step out of range")` if `last_used_step` is above
    /// `i64::MAX`.
    ///
    /// Every field is written as given, with one exception that keeps the
    /// replay guard from going backwards: replacing an enrolment by one
    /// with the same seed ciphertext and period (a read-modify-write of
    /// the same enrolment) never lowers `last_used_step`. The recovery
    /// hashes are replaced as given, so to use a code, call
    /// [`consume_recovery_code`](Self::consume_recovery_code) rather than
    /// writing back a shorter list.
    fn put_mfa(&self, enrolment: &MfaEnrolment) -> impl Future<Output = Result<()>> + Send;

    /// The TOTP replay guard: records `step` as the last time step a code
    /// of the enrolment was accepted for, if, and only if, it is above the
    /// stored one (or none is stored). Returns whether it was recorded:
    /// `false` when this or a later step was already used, and then
    /// nothing changes, so the caller must refuse the code.
    ///
    /// Atomic (one conditional write): of concurrent calls with the same
    /// step, on any number of connections, exactly one returns `true`.
    /// `Conflict("mfa step out of range")` above `i64::MAX` (checked
    /// first); `NotFound("mfa enrolment")` if there is no such enrolment.
    fn advance_mfa_step(
        &self,
        account_id: &str,
        kind: &str,
        step: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Uses a recovery code: removes `hash` (the lowercase hex SHA-256 of
    /// the code) from the enrolment's recovery hashes if present, and
    /// returns whether it was removed. Atomic: of concurrent calls with
    /// the same hash exactly one returns `true`, so each code works once.
    /// The other hashes keep their order. `NotFound("mfa enrolment")` if
    /// there is no such enrolment.
    fn consume_recovery_code(
        &self,
        account_id: &str,
        kind: &str,
        hash: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes the MFA enrolment of an account and kind (its sealed seed
    /// is zeroed on disk by the backend where it can), returning whether
    /// one was deleted.
    fn delete_mfa(&self, account_id: &str, kind: &str)
        -> impl Future<Output = Result<bool>> + Send;

    /// Fetches the MFA enrolment of an account and kind; `NotFound` if absent.
    fn get_mfa(
        &self,
        account_id: &str,
        kind: &str,
    ) -> impl Future<Output = Result<MfaEnrolment>> + Send;

    /// Lists the MFA enrolments of an account, ordered by kind.
    fn list_mfa(&self, account_id: &str) -> impl Future<Output = Result<Vec<MfaEnrolment>>> + Send;

    /// Adds an entry to an account's withdrawal address book.
    /// `Conflict("withdrawal address")` if the account already has that
    /// address (compared byte-wise), `MissingReference("withdrawal
    /// address")` if the account does not exist, and
    /// `Conflict("withdrawal address effective time")` (checked first) if
    /// `effective_at_ms` is before `added_at_ms`.
    fn add_withdrawal_address(
        &self,
        address: &WithdrawalAddress,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes an address from an account's address book, at once
    /// (removal needs no delay), returning whether it was there.
    fn remove_withdrawal_address(
        &self,
        account_id: &str,
        address: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Lists every entry of an account's address book, those not yet
    /// effective included (callers compare `effective_at_ms` with the
    /// time), ordered by address compared byte-wise. Empty for an unknown
    /// account.
    fn list_withdrawal_addresses(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Vec<WithdrawalAddress>>> + Send;

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

    /// The number of stored encrypted fields: API keys with a secret, every
    /// previous secret of a rotated key (expired ones included until
    /// dropped), plus every MFA enrolment.
    fn count_ciphertexts(&self) -> impl Future<Output = Result<u64>> + Send;

    /// A page of at most `limit` stored encrypted fields strictly after
    /// `after` (from the start when `None`), in [`CipherRef`] order: every
    /// current API-key secret by key id, then every previous API-key secret
    /// by key id, then every MFA seed by account and kind, ids compared
    /// byte-wise as Rust strings are (SQLite's `BINARY` collation; a
    /// PostgreSQL backend needs `COLLATE "C"`). Keys without a secret are
    /// skipped. The `account_id` of a previous secret is its key's account.
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

    /// Creates an operator; `Conflict("operator")` if the name exists,
    /// `Conflict("operator user handle")` (checked first) unless the user
    /// handle is 1 to 64 bytes.
    fn create_operator(&self, operator: &Operator) -> impl Future<Output = Result<()>> + Send;

    /// Fetches one operator; `NotFound("operator")` if absent.
    fn get_operator(&self, name: &str) -> impl Future<Output = Result<Operator>> + Send;

    /// Lists every operator (disabled ones included), ordered by name
    /// compared byte-wise.
    fn list_operators(&self) -> impl Future<Output = Result<Vec<Operator>>> + Send;

    /// Disables an operator at `at_ms`, in one transaction: the operator is
    /// marked disabled (a disabled operator keeps its first time), every
    /// credential of it not yet revoked is revoked at `at_ms`, and every
    /// unused enrolment token of it is marked used. Returns how many
    /// credentials were revoked. `NotFound("operator")` if absent.
    fn disable_operator(&self, name: &str, at_ms: i64) -> impl Future<Output = Result<u64>> + Send;

    /// Stores a one-time enrolment token (its hash).
    /// `MissingReference("enrolment token")` if the operator does not
    /// exist, `Conflict("operator disabled")` if it is disabled,
    /// `Conflict("enrolment token")` if the hash exists.
    fn put_enrolment_token(
        &self,
        token: &EnrolmentToken,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The operator a usable token enrols, without spending it: `Some`
    /// only if the token is unused, `now_ms < expires_ms` and its operator
    /// is not disabled; `None` otherwise (unknown hash included).
    fn enrolment_token_operator(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Registers a credential with an enrolment token, in one
    /// transaction: the token is spent by one conditional write (unused,
    /// not expired at `now_ms`, issued for `credential.operator`, whose
    /// operator is not disabled) and the credential is stored. Returns
    /// `false`, storing nothing, if the token was not usable, so of
    /// concurrent uses of one token exactly one returns `true`.
    /// `Conflict("operator credential")` if the credential id exists (the
    /// token is not spent then); `Conflict("operator credential key")`
    /// (checked first) for an algorithm other than
    /// [`COSE_ES256`](crate::COSE_ES256) or
    /// [`COSE_EDDSA`](crate::COSE_EDDSA), or an empty credential id or key.
    fn enrol_operator_credential(
        &self,
        token_hash: &[u8; 32],
        credential: &OperatorCredential,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The credentials of an operator (revoked ones included), ordered by
    /// registration time, then credential id. Empty for an unknown
    /// operator.
    fn list_operator_credentials(
        &self,
        operator: &str,
    ) -> impl Future<Output = Result<Vec<OperatorCredential>>> + Send;

    /// Records a sign-in with a credential: stores `sign_count` and
    /// `used_ms` if, and only if, the credential is not revoked and the
    /// counter grew (`sign_count` above the stored one), or both are 0
    /// (the authenticator keeps no counter). Returns whether it was
    /// recorded: `false` for a counter that did not grow (a cloned
    /// authenticator) or a revoked credential, and then nothing changes.
    /// Atomic (one conditional write): of concurrent sign-ins with the
    /// same non-zero counter exactly one returns `true`.
    /// `NotFound("operator credential")` if the credential does not exist.
    fn advance_operator_credential(
        &self,
        credential_id: &[u8],
        sign_count: u32,
        used_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Whether any operator credential was ever registered (revoked ones
    /// count): from then on the admin listener requires a session.
    fn operator_credentials_exist(&self) -> impl Future<Output = Result<bool>> + Send;
}
