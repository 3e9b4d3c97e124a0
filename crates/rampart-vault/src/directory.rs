//! The gateway's key directory over the vault: API keys from the store,
//! secrets decrypted through the vault, cached in memory for a short TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rampart_auth::directory::BoxFuture;
use rampart_auth::{DirectoryError, KeyDirectory, KeyMaterial, KeyRecord, Scheme};
use rampart_store::{ApiKey, CipherRef, KeyState, Store, StoreError};
use zeroize::Zeroizing;

use crate::Vault;

/// Most cached entries (known and unknown key ids); emptied when full.
const CACHE_MAX: usize = 100_000;

type Entry = (Instant, Option<Arc<KeyRecord>>);

/// [`KeyDirectory`] backed by a [`Vault`].
pub struct VaultDirectory {
    vault: Arc<Vault>,
    ttl: Duration,
    cache: RwLock<HashMap<String, Entry>>,
}

impl std::fmt::Debug for VaultDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultDirectory")
            .field("ttl", &self.ttl)
            .field("cached", &self.cache.read().len())
            .finish()
    }
}

impl VaultDirectory {
    /// A directory caching lookups for `ttl` (0 = no cache).
    #[must_use]
    pub fn new(vault: Arc<Vault>, ttl: Duration) -> Self {
        Self {
            vault,
            ttl,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Drops the cached entry of `key_id` (after a revoke or rotate in this
    /// process, so it applies at once).
    pub fn invalidate(&self, key_id: &str) {
        self.cache.write().remove(key_id);
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
    })
}

impl KeyDirectory for VaultDirectory {
    fn lookup<'a>(
        &'a self,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<KeyRecord>>, DirectoryError>> {
        Box::pin(async move {
            if !self.ttl.is_zero() {
                if let Some((at, rec)) = self.cache.read().get(key_id) {
                    if at.elapsed() < self.ttl {
                        return Ok(rec.clone());
                    }
                }
            }
            let rec = self.load(key_id).await?;
            if !self.ttl.is_zero() && key_id.len() <= 256 {
                let mut cache = self.cache.write();
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key_id.to_owned(), (Instant::now(), rec.clone()));
            }
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
