//! Records the store keeps. Times are Unix milliseconds chosen by the
//! caller (so tests can run on a fake clock); secret-bearing fields are
//! opaque ciphertext produced by rampart-crypto.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The highest KYC tier an account can hold (tiers are `0..=MAX_KYC_TIER`).
pub const MAX_KYC_TIER: u8 = 3;

/// An account or sub-account: the owner of API keys and MFA enrolments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Stable account id, unique across the store.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The parent account when this is a sub-account.
    pub parent_id: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// KYC tier, `0..=`[`MAX_KYC_TIER`]. New accounts should start at 0,
    /// the secure default (market data only); accounts stored before the
    /// tier existed read back as 0. The store refuses a tier above
    /// [`MAX_KYC_TIER`].
    pub kyc_tier: u8,
    /// Name of the risk profile the account is held to, if any (resolved
    /// by the policy layer; the store keeps the name only).
    pub risk_profile: Option<String>,
}

/// What an API key may do, beyond its scopes. Every list that is empty and
/// every limit that is `None` means "no restriction from this key" (the
/// account's KYC tier and risk profile still apply). `Default` is that
/// unrestricted key, which is also what keys stored before permissions
/// existed read back as.
///
/// Stored as one JSON object, so later settings need no schema change.
/// Reading tolerates fields it does not know (written by a newer version;
/// they are dropped, and rewritten without them if this version saves the
/// permissions again) and missing fields (their defaults), but a known
/// field of the wrong type makes the key unreadable (a backend error), so
/// a malformed restriction is never silently lifted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyPermissions {
    /// Instruments (symbols) the key may trade; empty means any.
    pub instruments: Vec<String>,
    /// Product types the key may trade (`spot`, `perp`, `option`); empty
    /// means any.
    pub products: Vec<String>,
    /// The key may only read, never place, amend or cancel.
    pub read_only: bool,
    /// Largest quantity of one order, as a decimal string.
    pub max_order_qty: Option<String>,
    /// Largest notional value of one order, as a decimal string.
    pub max_notional: Option<String>,
    /// Most orders the key may have open at once.
    pub max_open_orders: Option<u32>,
}

/// Lifecycle state of an API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// The key may authenticate requests.
    Enabled,
    /// The key is revoked for good; it never authenticates again.
    Revoked,
}

impl KeyState {
    /// The stored spelling of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Revoked => "revoked",
        }
    }

    /// Parses the stored spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enabled" => Some(Self::Enabled),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// An API key. `key_id` is public; the secret (if the scheme has one) is
/// only ever held here as ciphertext sealed by rampart-crypto.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Public key id, unique across the store.
    pub key_id: String,
    /// Owning account.
    pub account_id: String,
    /// Authentication scheme name (for example `hmac-sha256`, `ed25519`).
    pub scheme: String,
    /// Granted scopes, in the order given.
    pub scopes: Vec<String>,
    /// Allowed client networks in CIDR notation; empty means any.
    pub allowed_cidrs: Vec<String>,
    /// Expiry time, Unix milliseconds, if the key expires.
    pub expires_at_ms: Option<i64>,
    /// Fingerprint of the client certificate the key is bound to (mTLS).
    pub cert_fingerprint: Option<String>,
    /// Exchange-compatible signing profile name, if any.
    pub profile: Option<String>,
    /// Enabled or revoked.
    pub state: KeyState,
    /// Revocation time, Unix milliseconds, once revoked.
    pub revoked_at_ms: Option<i64>,
    /// The key's secret, sealed by rampart-crypto; never plaintext.
    pub secret_ciphertext: Option<Vec<u8>>,
    /// The key's public key (asymmetric schemes).
    pub public_key: Option<Vec<u8>>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// What the key may do beyond its scopes; `Default` for no
    /// restriction.
    pub permissions: KeyPermissions,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key_id", &self.key_id)
            .field("account_id", &self.account_id)
            .field("scheme", &self.scheme)
            .field("scopes", &self.scopes)
            .field("allowed_cidrs", &self.allowed_cidrs)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("cert_fingerprint", &self.cert_fingerprint)
            .field("profile", &self.profile)
            .field("state", &self.state)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .field(
                "secret_ciphertext",
                &self.secret_ciphertext.as_ref().map(|c| Redacted(c.len())),
            )
            .field("public_key", &self.public_key.as_ref().map(Vec::len))
            .field("created_at_ms", &self.created_at_ms)
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// The one-time-password algorithms an [`MfaEnrolment`] may name
/// (RFC 6238 HMAC hashes, spelled as in `otpauth://` URIs).
pub const MFA_ALGORITHMS: [&str; 3] = ["SHA1", "SHA256", "SHA512"];

/// The algorithm of enrolments stored before it was recorded.
pub const DEFAULT_MFA_ALGORITHM: &str = "SHA1";

/// The code length of enrolments stored before it was recorded.
pub const DEFAULT_MFA_DIGITS: u8 = 6;

/// The time step of enrolments stored before it was recorded, in seconds.
pub const DEFAULT_MFA_PERIOD_SECS: u32 = 30;

/// An MFA enrolment of an account (one per account and kind).
///
/// `Debug` prints the seed's length and the number of recovery hashes,
/// never their bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MfaEnrolment {
    /// Enrolled account.
    pub account_id: String,
    /// MFA kind (for example `totp`).
    pub kind: String,
    /// The MFA seed, sealed by rampart-crypto; never plaintext.
    pub seed_ciphertext: Vec<u8>,
    /// Enrolment time, Unix milliseconds.
    pub created_at_ms: i64,
    /// The last time step a code was accepted for (TOTP: a code is
    /// accepted at most once per enrolment); `None` before the first.
    /// Advanced only through
    /// [`Store::advance_mfa_step`](crate::Store::advance_mfa_step), which
    /// is race-free. At most `i64::MAX`.
    pub last_used_step: Option<u64>,
    /// Lowercase hex SHA-256 of each unused recovery code; one is removed
    /// when used
    /// ([`Store::consume_recovery_code`](crate::Store::consume_recovery_code)).
    pub recovery_hashes: Vec<String>,
    /// HMAC algorithm, one of [`MFA_ALGORITHMS`]
    /// ([`DEFAULT_MFA_ALGORITHM`] for enrolments stored before it was
    /// recorded).
    pub algorithm: String,
    /// Code length, `6..=10` ([`DEFAULT_MFA_DIGITS`] before it was
    /// recorded).
    pub digits: u8,
    /// Time step in seconds, at least 1 ([`DEFAULT_MFA_PERIOD_SECS`]
    /// before it was recorded).
    pub period_secs: u32,
}

impl fmt::Debug for MfaEnrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaEnrolment")
            .field("account_id", &self.account_id)
            .field("kind", &self.kind)
            .field("seed_ciphertext", &Redacted(self.seed_ciphertext.len()))
            .field("created_at_ms", &self.created_at_ms)
            .field("last_used_step", &self.last_used_step)
            .field("recovery_hashes", &Count(self.recovery_hashes.len()))
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period_secs", &self.period_secs)
            .finish()
    }
}

/// One entry of an account's withdrawal address book. An entry exists
/// from `added_at_ms` but may only be withdrawn to from `effective_at_ms`
/// on (a configured delay, so a stolen session cannot add an address and
/// drain to it at once); callers compare the time themselves. Addresses
/// are compared byte-wise: callers normalise them (for example the case
/// of a hex address) before storing and looking up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalAddress {
    /// Owning account.
    pub account_id: String,
    /// The destination address, unique per account.
    pub address: String,
    /// The asset (or network) the address is for, if restricted to one.
    pub asset: Option<String>,
    /// A human-readable label.
    pub label: Option<String>,
    /// When the entry was added, Unix milliseconds.
    pub added_at_ms: i64,
    /// From when withdrawals to the address are allowed, Unix
    /// milliseconds; never before `added_at_ms`.
    pub effective_at_ms: i64,
}

/// State of a data-key version in the keyring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DekState {
    /// New writes may use this version.
    Active,
    /// Kept for decryption only.
    Retired,
}

impl DekState {
    /// The stored spelling of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    /// Parses the stored spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// Metadata of one data-key (DEK) version of a purpose, as the keyring
/// persists it. The DEK itself is only stored wrapped by the root key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMetadata {
    /// Purpose name (for example `api-secrets`).
    pub purpose: String,
    /// Version within the purpose.
    pub version: u32,
    /// The DEK wrapped by the root key; opaque bytes.
    pub wrapped_dek: Vec<u8>,
    /// Version of the root key that wrapped `wrapped_dek` (a root-key
    /// rotation rewraps every DEK and bumps this).
    pub root_key_version: u32,
    /// How many encryptions this version has performed.
    pub encryptions: u64,
    /// Active or retired.
    pub state: DekState,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

impl fmt::Debug for KeyMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMetadata")
            .field("purpose", &self.purpose)
            .field("version", &self.version)
            .field("wrapped_dek", &Redacted(self.wrapped_dek.len()))
            .field("root_key_version", &self.root_key_version)
            .field("encryptions", &self.encryptions)
            .field("state", &self.state)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// The per-account shred handle: a random secret (32 bytes in practice)
/// mixed into the derivation of the account's field keys. Shredding deletes
/// the secret, which makes every field sealed under those keys
/// unrecoverable; the record stays as a tombstone saying when.
///
/// The secret is zeroed in memory on drop; `Debug` prints only its length
/// (or `shredded`).
#[derive(Clone, PartialEq, Eq)]
pub struct AccountKey {
    /// The account the handle belongs to (one handle per account).
    pub account_id: String,
    /// The secret; `None` once shredded.
    pub secret: Option<Zeroizing<Vec<u8>>>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Shredding time, Unix milliseconds; `Some` exactly when `secret` is
    /// `None`.
    pub shredded_at_ms: Option<i64>,
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKey")
            .field("account_id", &self.account_id)
            .field(
                "secret",
                &SecretState(self.secret.as_ref().map(|s| s.len())),
            )
            .field("created_at_ms", &self.created_at_ms)
            .field("shredded_at_ms", &self.shredded_at_ms)
            .finish()
    }
}

/// Where one encrypted field lives. The derived order (every current
/// API-key secret by key id, then every previous API-key secret by key id,
/// then every MFA seed by account and kind) is the order in which
/// [`Store::scan_ciphertexts`](crate::Store::scan_ciphertexts) walks them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CipherRef {
    /// The current secret of an API key.
    ApiKeySecret {
        /// Public key id.
        key_id: String,
    },
    /// The previous secret of a rotated API key, kept for the overlap
    /// window (see
    /// [`Store::rotate_api_key_secret`](crate::Store::rotate_api_key_secret)).
    ApiKeyPreviousSecret {
        /// Public key id.
        key_id: String,
    },
    /// The seed of an MFA enrolment.
    MfaSeed {
        /// Enrolled account.
        account_id: String,
        /// MFA kind (for example `totp`).
        kind: String,
    },
}

impl CipherRef {
    /// The kind of record holding the field (`api_key` or
    /// `mfa_enrolment`).
    pub fn record_type(&self) -> &'static str {
        match self {
            Self::ApiKeySecret { .. } | Self::ApiKeyPreviousSecret { .. } => "api_key",
            Self::MfaSeed { .. } => "mfa_enrolment",
        }
    }

    /// The name of the field within its record (`secret`,
    /// `previous_secret` or `seed`).
    pub fn field(&self) -> &'static str {
        match self {
            Self::ApiKeySecret { .. } => "secret",
            Self::ApiKeyPreviousSecret { .. } => "previous_secret",
            Self::MfaSeed { .. } => "seed",
        }
    }

    /// The id of the record: the key id, or `account_id/kind`.
    pub fn record_id(&self) -> String {
        match self {
            Self::ApiKeySecret { key_id } | Self::ApiKeyPreviousSecret { key_id } => key_id.clone(),
            Self::MfaSeed { account_id, kind } => format!("{account_id}/{kind}"),
        }
    }
}

/// One stored encrypted field, as a scan returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCiphertext {
    /// Where the field lives.
    pub location: CipherRef,
    /// The account owning the record.
    pub account_id: String,
    /// The sealed bytes, as stored.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for StoredCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCiphertext")
            .field("location", &self.location)
            .field("account_id", &self.account_id)
            .field("ciphertext", &Redacted(self.ciphertext.len()))
            .finish()
    }
}

/// A compare-and-swap of one encrypted field: replace the stored bytes by
/// `new` only if they still equal `expected`.
#[derive(Clone, PartialEq, Eq)]
pub struct CipherSwap {
    /// Where the field lives.
    pub location: CipherRef,
    /// The bytes the field must hold for the swap to apply.
    pub expected: Vec<u8>,
    /// The replacement bytes.
    pub new: Vec<u8>,
}

impl fmt::Debug for CipherSwap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CipherSwap")
            .field("location", &self.location)
            .field("expected", &Redacted(self.expected.len()))
            .field("new", &Redacted(self.new.len()))
            .finish()
    }
}

/// Prints the length of a secret, or `shredded` when it is gone.
struct SecretState(Option<usize>);

impl fmt::Debug for SecretState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(len) => write!(f, "<{len} bytes>"),
            None => f.write_str("shredded"),
        }
    }
}

/// Prints only how many entries a secret-bearing list holds.
struct Count(usize);

impl fmt::Debug for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} entries>", self.0)
    }
}

/// Prints only the length of an opaque byte field.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

/// An operator: a human who may change the gateway on the admin listener
/// (kill switch, unlocks, trusted sources), signing in with WebAuthn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// The operator's name, unique across the store.
    pub name: String,
    /// The WebAuthn user handle (random bytes chosen at creation, not the
    /// name), 1 to 64 bytes.
    pub user_handle: Vec<u8>,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// A disabled operator can neither sign in nor enrol.
    pub disabled: bool,
    /// When the operator was disabled, Unix milliseconds.
    pub disabled_ms: Option<i64>,
}

/// The COSE algorithm of an ES256 (P-256) operator credential.
pub const COSE_ES256: i32 = -7;
/// The COSE algorithm of an EdDSA (Ed25519) operator credential.
pub const COSE_EDDSA: i32 = -8;

/// A WebAuthn credential of an operator, as the relying-party verifier
/// keeps it: the credential id, its public key with the COSE algorithm
/// ([`COSE_ES256`]: the uncompressed P-256 point; [`COSE_EDDSA`]: the
/// 32-byte Ed25519 key) and the last signature counter seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorCredential {
    /// Credential id (from the authenticator), unique across the store.
    pub credential_id: Vec<u8>,
    /// Owning operator.
    pub operator: String,
    /// COSE algorithm: [`COSE_ES256`] or [`COSE_EDDSA`].
    pub algorithm: i32,
    /// The public key (not secret).
    pub public_key: Vec<u8>,
    /// The last signature counter accepted (0: the authenticator keeps
    /// none). Advanced only through
    /// [`Store::advance_operator_credential`](crate::Store::advance_operator_credential).
    pub sign_count: u32,
    /// Registration time, Unix milliseconds.
    pub created_ms: i64,
    /// Last successful sign-in, Unix milliseconds.
    pub last_used_ms: Option<i64>,
    /// Revocation time (the operator was disabled); a revoked credential
    /// never signs in again.
    pub revoked_ms: Option<i64>,
}

/// A one-time enrolment token of an operator: only the SHA-256 of the
/// token is stored. `Debug` prints the hash's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolmentToken {
    /// SHA-256 of the token (32 bytes).
    pub token_hash: [u8; 32],
    /// The operator it enrols a credential for.
    pub operator: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Expiry, Unix milliseconds: usable while `now < expires_ms`.
    pub expires_ms: i64,
}

impl fmt::Debug for EnrolmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrolmentToken")
            .field("token_hash", &Redacted(self.token_hash.len()))
            .field("operator", &self.operator)
            .field("created_ms", &self.created_ms)
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}
