//! The gateway's key directory over the vault: API keys from the store,
//! secrets decrypted through the vault, cached in memory for a short TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rampart_auth::directory::BoxFuture;
use rampart_auth::{
    AccountDirectory, AccountRecord, DirectoryError, KeyDirectory, KeyMaterial, KeyRecord,
    MfaCheck, Scheme,
};
use rampart_store::{ApiKey, CipherRef, KeyState, Store, StoreError};
use zeroize::Zeroizing;

use crate::Vault;

/// Most cached entries (known and unknown key ids); emptied when full.
const CACHE_MAX: usize = 100_000;

/// A short-TTL cache of lookups by id (known and unknown ids alike);
/// emptied when full; `ttl` 0 = no caching.
struct TtlCache<V> {
    ttl: Duration,
    map: RwLock<HashMap<String, Cached<V>>>,
}

/// When a lookup was made, and its answer (`None`: unknown id).
type Cached<V> = (Instant, Option<Arc<V>>);

impl<V> TtlCache<V> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The cached answer for `id`, if still fresh.
    fn get(&self, id: &str) -> Option<Option<Arc<V>>> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.read();
        let (at, v) = map.get(id)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    fn put(&self, id: &str, v: Option<Arc<V>>) {
        if self.ttl.is_zero() || id.len() > 256 {
            return;
        }
        let mut map = self.map.write();
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(id.to_owned(), (Instant::now(), v));
    }

    fn remove(&self, id: &str) {
        self.map.write().remove(id);
    }

    fn len(&self) -> usize {
        self.map.read().len()
    }
}

/// [`KeyDirectory`] backed by a [`Vault`].
pub struct VaultDirectory {
    vault: Arc<Vault>,
    cache: TtlCache<KeyRecord>,
}

impl std::fmt::Debug for VaultDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultDirectory")
            .field("ttl", &self.cache.ttl)
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl VaultDirectory {
    /// A directory caching lookups for `ttl` (0 = no cache).
    #[must_use]
    pub fn new(vault: Arc<Vault>, ttl: Duration) -> Self {
        Self {
            vault,
            cache: TtlCache::new(ttl),
        }
    }

    /// Drops the cached entry of `key_id` (after a revoke or rotate in this
    /// process, so it applies at once).
    pub fn invalidate(&self, key_id: &str) {
        self.cache.remove(key_id);
    }

    async fn load(&self, key_id: &str) -> Result<Option<Arc<KeyRecord>>, DirectoryError> {
        let key = match self.vault.store().get_api_key(key_id).await {
            Ok(k) => k,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(DirectoryError(e.to_string())),
        };
        let record = record_for(&self.vault, &key)
            .await
            .map_err(|e| DirectoryError(format!("key `{key_id}`: {e}")))?;
        Ok(Some(Arc::new(record)))
    }
}

fn de(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Builds the verification record of a stored key (decrypting its secret).
///
/// # Errors
/// A message for an unknown scheme, a missing or undecryptable secret, a
/// malformed public key or network.
pub async fn record_for(vault: &Vault, key: &ApiKey) -> Result<KeyRecord, String> {
    let scheme =
        Scheme::parse(&key.scheme).ok_or_else(|| format!("unknown scheme `{}`", key.scheme))?;
    let hmac = matches!(
        scheme,
        Scheme::Rfc9421HmacSha256 | Scheme::BinanceHmac | Scheme::KrakenHmac
    );
    let material = if hmac {
        let secret = vault.open_api_secret(key).await.map_err(de)?;
        KeyMaterial::Hmac(Zeroizing::new(secret.to_vec()))
    } else {
        let pk = key
            .public_key
            .as_deref()
            .ok_or_else(|| "asymmetric key without a public key".to_owned())?;
        match scheme {
            Scheme::Rfc9421Ed25519 | Scheme::BinanceEd25519 | Scheme::CoinbaseJwtEdDsa => {
                KeyMaterial::Ed25519(
                    pk.try_into()
                        .map_err(|_| "Ed25519 public key is not 32 bytes".to_owned())?,
                )
            }
            _ => KeyMaterial::EcdsaP256(pk.to_vec()),
        }
    };
    let previous = if hmac {
        match vault
            .store()
            .get_previous_secret(&key.key_id)
            .await
            .map_err(de)?
        {
            Some((ct, until)) => {
                let loc = CipherRef::ApiKeyPreviousSecret {
                    key_id: key.key_id.clone(),
                };
                let plain = vault
                    .open_field(&loc, &key.account_id, &ct)
                    .await
                    .map_err(de)?;
                Some((KeyMaterial::Hmac(Zeroizing::new(plain.to_vec())), until))
            }
            None => None,
        }
    } else {
        None
    };
    let allowed_nets = key
        .allowed_cidrs
        .iter()
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("invalid allowed network `{c}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let parent_account_id = vault
        .store()
        .get_account(&key.account_id)
        .await
        .map_err(de)?
        .parent_id;
    Ok(KeyRecord {
        key_id: key.key_id.clone(),
        account_id: key.account_id.clone(),
        parent_account_id,
        scheme,
        scopes: key.scopes.clone(),
        allowed_nets,
        expires_at_ms: key.expires_at_ms,
        cert_fingerprint: key
            .cert_fingerprint
            .as_ref()
            .map(|f| f.to_ascii_lowercase()),
        revoked: key.state == KeyState::Revoked,
        material,
        previous,
        nonce_window: if scheme == Scheme::KrakenHmac {
            vault
                .store()
                .get_key_nonce_window(&key.key_id)
                .await
                .map_err(de)?
        } else {
            0
        },
        instruments: key.permissions.instruments.clone(),
        products: key.permissions.products.clone(),
        read_only: key.permissions.read_only,
        order_limits: rampart_auth::KeyOrderLimits {
            max_qty: key.permissions.max_order_qty.clone(),
            max_notional: key.permissions.max_notional.clone(),
            max_open_orders: key.permissions.max_open_orders,
        },
    })
}

impl KeyDirectory for VaultDirectory {
    fn lookup<'a>(
        &'a self,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<KeyRecord>>, DirectoryError>> {
        Box::pin(async move {
            if let Some(rec) = self.cache.get(key_id) {
                return Ok(rec);
            }
            let rec = self.load(key_id).await?;
            self.cache.put(key_id, rec.clone());
            Ok(rec)
        })
    }

    fn advance_counter<'a>(
        &'a self,
        key_id: &'a str,
        nonce: u64,
        window: u64,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        Box::pin(async move {
            let store = self.vault.store();
            let res = if window == 0 {
                store.advance_key_counter(key_id, nonce).await
            } else {
                store.accept_windowed_nonce(key_id, nonce, window).await
            };
            match res {
                Ok(accepted) => Ok(accepted),
                Err(StoreError::Conflict(_)) => Ok(false),
                Err(e) => Err(DirectoryError(e.to_string())),
            }
        })
    }
}

/// [`AccountDirectory`] over the vault: accounts (KYC tier, parent, risk
/// profile) and their effective withdrawal addresses from the store,
/// cached for a short TTL; TOTP seeds decrypted on use, never cached.
/// A code is spent with the store's conditional update, so two gateways
/// (or two requests) can never both accept the same code.
pub struct VaultAccounts {
    vault: Arc<Vault>,
    cache: TtlCache<AccountRecord>,
}

impl std::fmt::Debug for VaultAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultAccounts")
            .field("ttl", &self.cache.ttl)
            .finish_non_exhaustive()
    }
}

impl VaultAccounts {
    /// Accounts cached for `ttl` (0 = no cache).
    #[must_use]
    pub fn new(vault: Arc<Vault>, ttl: Duration) -> Self {
        Self {
            vault,
            cache: TtlCache::new(ttl),
        }
    }

    async fn load(&self, id: &str) -> Result<Option<Arc<AccountRecord>>, DirectoryError> {
        let store = self.vault.store();
        let a = match store.get_account(id).await {
            Ok(a) => a,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(DirectoryError(e.to_string())),
        };
        let now = crate::now_ms();
        let withdrawal_addresses = store
            .list_withdrawal_addresses(id)
            .await
            .map_err(|e| DirectoryError(e.to_string()))?
            .into_iter()
            .filter(|w| w.effective_at_ms <= now)
            .map(|w| w.address)
            .collect();
        let mfa_enrolled = match store.get_mfa(id, "totp").await {
            Ok(_) => true,
            Err(StoreError::NotFound(_)) => false,
            Err(e) => return Err(DirectoryError(e.to_string())),
        };
        Ok(Some(Arc::new(AccountRecord {
            id: a.id,
            parent_id: a.parent_id,
            kyc_tier: a.kyc_tier,
            risk_profile: a.risk_profile.unwrap_or_else(|| "standard".to_owned()),
            withdrawal_addresses,
            mfa_enrolled,
        })))
    }
}

fn totp_params(e: &rampart_store::MfaEnrolment) -> Option<rampart_auth::totp::TotpParams> {
    Some(rampart_auth::totp::TotpParams {
        algorithm: rampart_auth::totp::TotpAlgorithm::parse(&e.algorithm)?,
        digits: u32::from(e.digits),
        period_secs: u64::from(e.period_secs),
        skew_steps: 1,
    })
}

impl AccountDirectory for VaultAccounts {
    fn account<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<AccountRecord>>, DirectoryError>> {
        Box::pin(async move {
            if let Some(rec) = self.cache.get(id) {
                return Ok(rec);
            }
            let rec = self.load(id).await?;
            self.cache.put(id, rec.clone());
            Ok(rec)
        })
    }

    fn verify_totp<'a>(
        &'a self,
        account_id: &'a str,
        code: &'a str,
        unix_secs: u64,
    ) -> BoxFuture<'a, Result<MfaCheck, DirectoryError>> {
        Box::pin(async move {
            let store = self.vault.store();
            let e = match store.get_mfa(account_id, "totp").await {
                Ok(e) => e,
                Err(StoreError::NotFound(_)) => return Ok(MfaCheck::NotEnrolled),
                Err(e) => return Err(DirectoryError(e.to_string())),
            };
            let params = totp_params(&e)
                .ok_or_else(|| DirectoryError("MFA enrolment has an unknown algorithm".into()))?;
            let seed = self
                .vault
                .open_mfa_seed(&e)
                .await
                .map_err(|e| DirectoryError(e.to_string()))?;
            match rampart_auth::totp::verify(&seed, &params, code, unix_secs, e.last_used_step) {
                Ok(step) => {
                    // The replay guard: only one caller can advance to `step`.
                    let won = store
                        .advance_mfa_step(account_id, "totp", step)
                        .await
                        .map_err(|e| DirectoryError(e.to_string()))?;
                    Ok(if won {
                        MfaCheck::Verified
                    } else {
                        MfaCheck::Reused
                    })
                }
                Err(rampart_auth::totp::TotpError::Reused) => Ok(MfaCheck::Reused),
                Err(rampart_auth::totp::TotpError::BadParams(m)) => Err(DirectoryError(format!(
                    "MFA enrolment of `{account_id}`: {m}"
                ))),
                Err(_) => Ok(MfaCheck::Invalid),
            }
        })
    }

    fn use_recovery_code<'a>(
        &'a self,
        account_id: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<MfaCheck, DirectoryError>> {
        Box::pin(async move {
            let store = self.vault.store();
            match store.get_mfa(account_id, "totp").await {
                Ok(e) if e.recovery_hashes.is_empty() => return Ok(MfaCheck::NotEnrolled),
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => return Ok(MfaCheck::NotEnrolled),
                Err(e) => return Err(DirectoryError(e.to_string())),
            }
            let hash = rampart_auth::totp::recovery::hash(code);
            let used = store
                .consume_recovery_code(account_id, "totp", &hash)
                .await
                .map_err(|e| DirectoryError(e.to_string()))?;
            Ok(if used {
                MfaCheck::Verified
            } else {
                MfaCheck::Invalid
            })
        })
    }

    fn withdrawal_addresses<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, i64)>, DirectoryError>> {
        Box::pin(async move {
            Ok(self
                .vault
                .store()
                .list_withdrawal_addresses(account_id)
                .await
                .map_err(|e| DirectoryError(e.to_string()))?
                .into_iter()
                .map(|w| (w.address, w.effective_at_ms))
                .collect())
        })
    }

    fn add_withdrawal_address<'a>(
        &'a self,
        account_id: &'a str,
        address: &'a str,
        now_ms: i64,
        effective_at_ms: i64,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        Box::pin(async move {
            let res = self
                .vault
                .store()
                .add_withdrawal_address(&rampart_store::WithdrawalAddress {
                    account_id: account_id.to_owned(),
                    address: address.to_owned(),
                    asset: None,
                    label: None,
                    added_at_ms: now_ms,
                    effective_at_ms,
                })
                .await;
            self.cache.remove(account_id);
            match res {
                Ok(()) => Ok(true),
                Err(StoreError::Conflict(_)) => Ok(false),
                Err(e) => Err(DirectoryError(e.to_string())),
            }
        })
    }

    fn remove_withdrawal_address<'a>(
        &'a self,
        account_id: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        Box::pin(async move {
            let res = self
                .vault
                .store()
                .remove_withdrawal_address(account_id, address)
                .await
                .map_err(|e| DirectoryError(e.to_string()));
            self.cache.remove(account_id);
            res
        })
    }

    fn account_ids(&self) -> BoxFuture<'_, Result<Vec<String>, DirectoryError>> {
        Box::pin(async move {
            Ok(self
                .vault
                .store()
                .list_accounts()
                .await
                .map_err(|e| DirectoryError(e.to_string()))?
                .into_iter()
                .map(|a| a.id)
                .collect())
        })
    }
}
