//! Where the gateway finds keys: the [`KeyDirectory`] trait (implemented
//! over the vault and store) and the [`KeyRecord`] it returns.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use ipnet::IpNet;

use crate::types::{KeyMaterial, Scheme};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything the gateway needs to authenticate with one API key. Secrets
/// are already decrypted (the directory caches them in memory only).
pub struct KeyRecord {
    /// Public key id.
    pub key_id: String,
    /// Owning account (or sub-account).
    pub account_id: String,
    /// The parent account when `account_id` is a sub-account.
    pub parent_account_id: Option<String>,
    /// The key's registered scheme; a request must use it.
    pub scheme: Scheme,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Allowed client networks; empty = any.
    pub allowed_nets: Vec<IpNet>,
    /// Expiry, Unix ms.
    pub expires_at_ms: Option<i64>,
    /// Bound client-certificate fingerprint (hex SHA-256, lowercase).
    pub cert_fingerprint: Option<String>,
    /// Revoked keys never authenticate.
    pub revoked: bool,
    /// The current verification key.
    pub material: KeyMaterial,
    /// The previous secret of a rotated key, accepted until the given Unix ms.
    pub previous: Option<(KeyMaterial, i64)>,
    /// Kraken-style counter nonces: how far below the highest nonce a
    /// request may be (out of order, each once); 0 = strictly increasing.
    pub nonce_window: u64,
    /// Instruments the key may trade; empty = any.
    pub instruments: Vec<String>,
    /// Products (`spot`, `perp`, `option`) the key may trade; empty = any.
    pub products: Vec<String>,
    /// Read-only keys may only use `read`-scoped and public actions.
    pub read_only: bool,
    /// The key's own pre-trade limits (decimal strings), on top of
    /// `[pretrade]`: largest order quantity, largest notional, most open
    /// orders.
    pub order_limits: KeyOrderLimits,
}

/// A key's own pre-trade limits, from its stored settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOrderLimits {
    /// Largest quantity of one order.
    pub max_qty: Option<String>,
    /// Largest quantity × price of one order.
    pub max_notional: Option<String>,
    /// Most open orders of the key.
    pub max_open_orders: Option<u32>,
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_id", &self.key_id)
            .field("account_id", &self.account_id)
            .field("scheme", &self.scheme)
            .field("scopes", &self.scopes)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    /// Whether `ip` is inside the allowed networks (or no restriction is set).
    #[must_use]
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.allowed_nets.is_empty() || self.allowed_nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether the key grants `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a directory lookup failed (not "unknown key": that is `Ok(None)`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("key directory unavailable: {0}")]
pub struct DirectoryError(pub String);

/// Finds keys by id and keeps Kraken-style counters.
pub trait KeyDirectory: Send + Sync {
    /// The key with this id, `None` if there is none.
    fn lookup<'a>(
        &'a self,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<KeyRecord>>, DirectoryError>>;

    /// Accepts counter `nonce` for `key_id` (persisted): with `window` 0 iff
    /// it is strictly greater than every nonce accepted before; otherwise iff
    /// it is above `highest - window` and was never accepted.
    fn advance_counter<'a>(
        &'a self,
        key_id: &'a str,
        nonce: u64,
        window: u64,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>>;
}

/// What authorization needs to know of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Account id.
    pub id: String,
    /// The parent account of a sub-account.
    pub parent_id: Option<String>,
    /// KYC tier (0: market data only, 1: spot, 2: derivatives, …).
    pub kyc_tier: u8,
    /// Operator-assigned risk profile name.
    pub risk_profile: String,
    /// Withdrawal addresses usable now (their delay has passed).
    pub withdrawal_addresses: Vec<String>,
    /// Whether the account has a TOTP enrolment.
    pub mfa_enrolled: bool,
}

/// The result of checking a TOTP or recovery code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaCheck {
    /// The code is right and was not used before; it is now spent.
    Verified,
    /// Wrong code.
    Invalid,
    /// The code (or a later one) was already used.
    Reused,
    /// The account has no MFA enrolment.
    NotEnrolled,
}

/// Accounts, MFA enrolments and address books, for authorization and MFA.
pub trait AccountDirectory: Send + Sync {
    /// The account with this id, `None` if there is none.
    fn account<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<AccountRecord>>, DirectoryError>>;

    /// Checks a TOTP `code` of `account_id` at `unix_secs`; a verified
    /// code is spent atomically (accepted once per enrolment).
    fn verify_totp<'a>(
        &'a self,
        account_id: &'a str,
        code: &'a str,
        unix_secs: u64,
    ) -> BoxFuture<'a, Result<MfaCheck, DirectoryError>>;

    /// Checks and spends a recovery code of `account_id`.
    fn use_recovery_code<'a>(
        &'a self,
        account_id: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<MfaCheck, DirectoryError>>;

    /// Every account id (a global kill switch cancels each one's orders).
    fn account_ids(&self) -> BoxFuture<'_, Result<Vec<String>, DirectoryError>>;

    /// The account's address book: (address, usable from, Unix ms).
    fn withdrawal_addresses<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, i64)>, DirectoryError>>;

    /// Adds `address`, usable from `effective_at_ms`; `false` if it is
    /// already on the book.
    fn add_withdrawal_address<'a>(
        &'a self,
        account_id: &'a str,
        address: &'a str,
        now_ms: i64,
        effective_at_ms: i64,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>>;

    /// Removes `address` at once; `false` if it was not on the book.
    fn remove_withdrawal_address<'a>(
        &'a self,
        account_id: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>>;
}
