//! The in-memory keyring: unwrapped data keys per purpose and version, the
//! envelope encrypt/decrypt operations, and per-key encryption counters.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::account::AccountKey;
use crate::aead::TAG_LEN;
use crate::aead::{self, Aes256GcmKey};
use crate::envelope::{build_aad, header_prefix, AadContext, Envelope, Scope, HEADER_LEN};
use crate::error::{CryptoError, Result};
use crate::events::{KeyEvent, KeyEventSink, LogSink};
use crate::provider::{DataKey, KeyProvider};
use crate::purpose::Purpose;

/// Encryptions after which a data key is reported due for rotation (2^31),
/// half of the 2^32 NIST SP 800-38D limit for random 96-bit nonces.
pub const DEFAULT_ROTATE_AFTER: u64 = 1 << 31;
/// Encryptions after which a data key refuses to seal (2^32 − 2^24): the
/// AES-GCM random-nonce limit minus a safety margin.
pub const DEFAULT_HARD_LIMIT: u64 = (1 << 32) - (1 << 24);

/// Encryption-count thresholds of a [`Keyring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyringLimits {
    /// Report rotation as due from this many encryptions on the newest key.
    pub rotate_after: u64,
    /// Refuse encryption with a key from this many encryptions.
    pub hard_limit: u64,
}

impl Default for KeyringLimits {
    fn default() -> Self {
        Self {
            rotate_after: DEFAULT_ROTATE_AFTER,
            hard_limit: DEFAULT_HARD_LIMIT,
        }
    }
}

/// A data key in its wrapped (storable) form. This is what the store
/// persists; the plaintext key never leaves the keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    /// Purpose of the key.
    pub purpose: Purpose,
    /// Version of the key within its purpose (1, 2, …).
    pub version: u32,
    /// Version of the root key that wrapped it.
    pub root_key_version: u32,
    /// Provider-specific wrapped bytes.
    pub wrapped: Vec<u8>,
}

/// Status of one data key, for metrics, `keys status` and persistence of
/// the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyStatus {
    /// Purpose of the key.
    pub purpose: Purpose,
    /// Version of the key.
    pub version: u32,
    /// Encryptions performed with it so far.
    pub encryptions: u64,
    /// Whether it is the newest version (the one new writes use).
    pub current: bool,
}

struct DekEntry {
    raw: DataKey,
    aead: Aes256GcmKey,
    encryptions: AtomicU64,
    /// Value of `encryptions` at the last [`Keyring::take_encryption_deltas`].
    flushed: AtomicU64,
}

impl DekEntry {
    fn new(raw: DataKey, aead: Aes256GcmKey, encryptions: u64) -> Self {
        Self {
            raw,
            aead,
            encryptions: AtomicU64::new(encryptions),
            flushed: AtomicU64::new(encryptions),
        }
    }
}

/// Cached account-scoped keys: (account, purpose, version) → derived key,
/// with the account secret it was derived from (compared on lookup, so a
/// replaced account secret never hits a stale entry).
/// Keyed by account first so a lookup borrows the account id (no allocation
/// on the hot path).
type DerivedCache =
    HashMap<String, HashMap<(Purpose, u32), (Zeroizing<[u8; 32]>, Arc<Aes256GcmKey>)>>;

/// Most derived account keys kept in memory; the cache is emptied when full.
const DERIVED_CACHE_MAX: usize = 4096;

#[derive(Default)]
struct PurposeKeys {
    versions: BTreeMap<u32, Arc<DekEntry>>,
    /// Versions below this are retired: dropped from memory, refused on decrypt.
    min_version: u32,
}

impl PurposeKeys {
    fn newest(&self) -> Option<(u32, &Arc<DekEntry>)> {
        self.versions.iter().next_back().map(|(v, e)| (*v, e))
    }
}

/// Unwrapped data keys of every purpose, shared by all encrypting code.
///
/// `encrypt` always uses the newest version of a purpose; `decrypt` uses the
/// version named in the ciphertext header.
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    limits: KeyringLimits,
    keys: RwLock<HashMap<Purpose, PurposeKeys>>,
    derived: RwLock<DerivedCache>,
    events: Arc<dyn KeyEventSink>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.read();
        let mut versions: Vec<(Purpose, Vec<u32>)> = keys
            .iter()
            .map(|(p, k)| (*p, k.versions.keys().copied().collect()))
            .collect();
        versions.sort();
        f.debug_struct("Keyring")
            .field("provider", &self.provider)
            .field("limits", &self.limits)
            .field("versions", &versions)
            .field("events", &self.events)
            .finish()
    }
}

impl Keyring {
    /// An empty keyring over `provider` with default limits.
    #[must_use]
    pub fn new(provider: Arc<dyn KeyProvider>) -> Self {
        Self::with_limits(provider, KeyringLimits::default())
    }

    /// An empty keyring with explicit encryption-count limits.
    #[must_use]
    pub fn with_limits(provider: Arc<dyn KeyProvider>, limits: KeyringLimits) -> Self {
        Self {
            provider,
            limits,
            keys: RwLock::new(HashMap::new()),
            derived: RwLock::new(HashMap::new()),
            events: Arc::new(LogSink),
        }
    }

    /// Sends key events to `sink` instead of the log.
    #[must_use]
    pub fn with_event_sink(mut self, sink: Arc<dyn KeyEventSink>) -> Self {
        self.events = sink;
        self
    }

    /// The key provider holding the root key.
    #[must_use]
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// Creates a new data key for `purpose` (version 1 if it has none, else
    /// newest + 1) and makes it current. The caller persists the returned
    /// wrapped key; old versions stay available for decryption.
    ///
    /// # Errors
    /// RNG or provider errors; [`CryptoError::Unreachable`] if the version
    /// space is exhausted.
    pub fn rotate(&self, purpose: Purpose) -> Result<WrappedDataKey> {
        let dek = DataKey::generate()?;
        let aead = Aes256GcmKey::new(dek.expose())?;
        // Hold the write lock across version choice and insert so two
        // concurrent rotations never pick the same version.
        let mut keys = self.keys.write();
        let entry = keys.entry(purpose).or_default();
        let version = match entry.newest() {
            None => 1,
            Some((v, _)) => v
                .checked_add(1)
                .ok_or(CryptoError::Unreachable("data key versions exhausted"))?,
        };
        let wrapped = self.provider.wrap_data_key(purpose, version, &dek)?;
        entry
            .versions
            .insert(version, Arc::new(DekEntry::new(dek, aead, 0)));
        drop(keys);
        let root_key_version = self.provider.root_key_version();
        self.events.record(&KeyEvent::DataKeyCreated {
            purpose,
            version,
            root_key_version,
        });
        Ok(WrappedDataKey {
            purpose,
            version,
            root_key_version,
            wrapped,
        })
    }

    /// Loads a persisted wrapped key with its persisted encryption count.
    /// Loading the same key twice is harmless; loading different key
    /// material under an existing purpose and version is refused.
    ///
    /// # Errors
    /// [`CryptoError::Unwrap`] if the provider cannot unwrap it;
    /// [`CryptoError::ConflictingDataKey`] as above.
    pub fn load(&self, wrapped: &WrappedDataKey, encryptions: u64) -> Result<()> {
        let dek = self
            .provider
            .unwrap_data_key(wrapped.purpose, wrapped.version, &wrapped.wrapped)
            .inspect_err(|_| {
                self.events.record(&KeyEvent::UnwrapFailed {
                    purpose: wrapped.purpose,
                    version: wrapped.version,
                });
            })?;
        let aead = Aes256GcmKey::new(dek.expose())?;
        let mut keys = self.keys.write();
        let entry = keys.entry(wrapped.purpose).or_default();
        if wrapped.version < entry.min_version {
            return Err(CryptoError::RetiredKeyVersion {
                purpose: wrapped.purpose,
                version: wrapped.version,
                min_version: entry.min_version,
            });
        }
        if let Some(existing) = entry.versions.get(&wrapped.version) {
            if bool::from(existing.raw.ct_eq(&dek)) {
                existing
                    .encryptions
                    .fetch_max(encryptions, Ordering::Relaxed);
                return Ok(());
            }
            return Err(CryptoError::ConflictingDataKey {
                purpose: wrapped.purpose,
                version: wrapped.version,
            });
        }
        entry.versions.insert(
            wrapped.version,
            Arc::new(DekEntry::new(dek, aead, encryptions)),
        );
        Ok(())
    }

    /// Creates and wraps a new data key for `purpose` with the next version
    /// number, *without* making it current. The caller persists it and then
    /// [`Keyring::load`]s it; if persisting fails because another node
    /// created that version first, the caller loads that node's key instead.
    /// This is how a fleet sharing one store rotates without two different
    /// keys under one version.
    ///
    /// # Errors
    /// RNG or provider errors.
    pub fn prepare_rotation(&self, purpose: Purpose) -> Result<WrappedDataKey> {
        let version = match self.current_version(purpose) {
            None => 1,
            Some(v) => v
                .checked_add(1)
                .ok_or(CryptoError::Unreachable("data key versions exhausted"))?,
        };
        let dek = DataKey::generate()?;
        let wrapped = self.provider.wrap_data_key(purpose, version, &dek)?;
        Ok(WrappedDataKey {
            purpose,
            version,
            root_key_version: self.provider.root_key_version(),
            wrapped,
        })
    }

    /// Reports a data key created through [`Keyring::prepare_rotation`] and
    /// persisted by this node.
    pub fn record_created(&self, wrapped: &WrappedDataKey) {
        self.events.record(&KeyEvent::DataKeyCreated {
            purpose: wrapped.purpose,
            version: wrapped.version,
            root_key_version: wrapped.root_key_version,
        });
    }

    /// Re-wraps the loaded data key `purpose`/`version` with the provider's
    /// current root key (after a root rotation). The caller persists it.
    ///
    /// # Errors
    /// [`CryptoError::UnknownKeyVersion`] if the key is not loaded; provider errors.
    pub fn rewrap_data_key(&self, purpose: Purpose, version: u32) -> Result<WrappedDataKey> {
        let entry = self
            .keys
            .read()
            .get(&purpose)
            .and_then(|pk| pk.versions.get(&version))
            .map(Arc::clone)
            .ok_or(CryptoError::UnknownKeyVersion { purpose, version })?;
        let wrapped = self.provider.wrap_data_key(purpose, version, &entry.raw)?;
        let root_key_version = self.provider.wrapped_root_version(&wrapped)?;
        Ok(WrappedDataKey {
            purpose,
            version,
            root_key_version,
            wrapped,
        })
    }

    /// Encryptions performed since the previous call, per loaded key, for
    /// adding to the store's counters: `(purpose, version, delta)` for every
    /// key with a non-zero delta.
    #[must_use]
    pub fn take_encryption_deltas(&self) -> Vec<(Purpose, u32, u64)> {
        let keys = self.keys.read();
        let mut out = Vec::new();
        for (purpose, pk) in keys.iter() {
            for (version, entry) in &pk.versions {
                let now = entry.encryptions.load(Ordering::Relaxed);
                let before = entry.flushed.swap(now, Ordering::Relaxed);
                if now > before {
                    out.push((*purpose, *version, now - before));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Raises the local counter of a key to `total`, the count the store
    /// holds across every node sharing it, so rotation triggers on the
    /// fleet-wide count. Never lowers a counter.
    pub fn observe_total(&self, purpose: Purpose, version: u32, total: u64) {
        if let Some(entry) = self
            .keys
            .read()
            .get(&purpose)
            .and_then(|pk| pk.versions.get(&version))
        {
            entry.encryptions.fetch_max(total, Ordering::Relaxed);
            entry.flushed.fetch_max(total, Ordering::Relaxed);
        }
    }

    /// Forgets every cached derived key of `account_id` (after shredding).
    pub fn forget_account(&self, account_id: &str) {
        self.derived.write().remove(account_id);
    }

    /// The newest version of `purpose`, if any.
    #[must_use]
    pub fn current_version(&self, purpose: Purpose) -> Option<u32> {
        self.keys.read().get(&purpose)?.newest().map(|(v, _)| v)
    }

    /// Whether the newest key of `purpose` reached the rotation threshold.
    #[must_use]
    pub fn rotation_due(&self, purpose: Purpose) -> bool {
        self.keys
            .read()
            .get(&purpose)
            .and_then(PurposeKeys::newest)
            .is_some_and(|(_, e)| e.encryptions.load(Ordering::Relaxed) >= self.limits.rotate_after)
    }

    /// Purposes whose newest key is due for rotation, in id order.
    #[must_use]
    pub fn due_rotations(&self) -> Vec<Purpose> {
        Purpose::ALL
            .into_iter()
            .filter(|p| self.rotation_due(*p))
            .collect()
    }

    /// Rotates every purpose that is due and returns the new wrapped keys to
    /// persist. Call it periodically, or after `encrypt` when
    /// [`Keyring::rotation_due`] turns true.
    ///
    /// # Errors
    /// As [`Keyring::rotate`]; purposes rotated before the error stay rotated.
    pub fn rotate_due(&self) -> Result<Vec<WrappedDataKey>> {
        self.due_rotations()
            .into_iter()
            .map(|p| self.rotate(p))
            .collect()
    }

    /// Status of every loaded data key, sorted by purpose then version.
    #[must_use]
    pub fn status(&self) -> Vec<DataKeyStatus> {
        let keys = self.keys.read();
        let mut out = Vec::new();
        for (purpose, pk) in keys.iter() {
            let newest = pk.newest().map(|(v, _)| v);
            for (version, entry) in &pk.versions {
                out.push(DataKeyStatus {
                    purpose: *purpose,
                    version: *version,
                    encryptions: entry.encryptions.load(Ordering::Relaxed),
                    current: Some(*version) == newest,
                });
            }
        }
        out.sort_by_key(|s| (s.purpose, s.version));
        out
    }

    /// Encrypts `plaintext` for `ctx` with the newest data key of `purpose`.
    ///
    /// # Errors
    /// [`CryptoError::NoDataKey`] if the purpose has no key;
    /// [`CryptoError::KeyExhausted`] at the hard limit; RNG errors.
    pub fn encrypt(
        &self,
        purpose: Purpose,
        ctx: &AadContext<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let (version, entry) = self.current_entry(purpose)?;
        self.count_encryption(purpose, version, &entry)?;
        seal(
            &entry.aead,
            Scope::Purpose,
            purpose,
            version,
            ctx,
            plaintext,
        )
    }

    /// Encrypts `plaintext` of `account` for `ctx` with the account key
    /// derived from the newest data key of `purpose` (format 2). Shredding
    /// the account key makes the result unrecoverable.
    ///
    /// # Errors
    /// As [`Keyring::encrypt`].
    pub fn encrypt_for(
        &self,
        purpose: Purpose,
        account: &AccountKey,
        ctx: &AadContext<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let (version, entry) = self.current_entry(purpose)?;
        self.count_encryption(purpose, version, &entry)?;
        let key = self.derived_key(purpose, version, &entry, account)?;
        seal(&key, Scope::Account, purpose, version, ctx, plaintext)
    }

    fn current_entry(&self, purpose: Purpose) -> Result<(u32, Arc<DekEntry>)> {
        let keys = self.keys.read();
        let (v, e) = keys
            .get(&purpose)
            .and_then(PurposeKeys::newest)
            .ok_or(CryptoError::NoDataKey(purpose))?;
        Ok((v, Arc::clone(e)))
    }

    fn count_encryption(&self, purpose: Purpose, version: u32, entry: &DekEntry) -> Result<()> {
        let hard_limit = self.limits.hard_limit;
        entry
            .encryptions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < hard_limit).then_some(n.saturating_add(1))
            })
            .map(|_| ())
            .map_err(|_| CryptoError::KeyExhausted { purpose, version })
    }

    fn derived_key(
        &self,
        purpose: Purpose,
        version: u32,
        entry: &DekEntry,
        account: &AccountKey,
    ) -> Result<Arc<Aes256GcmKey>> {
        if let Some((secret, key)) = self
            .derived
            .read()
            .get(account.account_id())
            .and_then(|m| m.get(&(purpose, version)))
        {
            if bool::from(secret.as_slice().ct_eq(account.expose().as_slice())) {
                return Ok(Arc::clone(key));
            }
        }
        let raw = account.derive(purpose, version, entry.raw.expose())?;
        let key = Arc::new(Aes256GcmKey::new(raw.as_slice())?);
        let mut cache = self.derived.write();
        if cache.len() >= DERIVED_CACHE_MAX {
            cache.clear();
        }
        cache
            .entry(account.account_id().to_owned())
            .or_default()
            .insert(
                (purpose, version),
                (Zeroizing::new(*account.expose()), Arc::clone(&key)),
            );
        Ok(key)
    }

    /// Decrypts an envelope produced by [`Keyring::encrypt`] for the same
    /// `purpose` and `ctx`, with the key version its header names.
    ///
    /// # Errors
    /// Parse errors, [`CryptoError::WrongPurpose`],
    /// [`CryptoError::ScopeMismatch`] for an account-scoped envelope,
    /// [`CryptoError::UnknownKeyVersion`], [`CryptoError::Decrypt`].
    pub fn decrypt(
        &self,
        purpose: Purpose,
        ctx: &AadContext<'_>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let env = Envelope::parse(ciphertext)?;
        if env.scope != Scope::Purpose {
            return Err(CryptoError::ScopeMismatch(
                "account-scoped ciphertext needs its account key",
            ));
        }
        let entry = self.entry_for(purpose, &env)?;
        entry
            .aead
            .open(&env.nonce, &env.aad(ctx), env.ciphertext_and_tag)
    }

    /// Decrypts an envelope produced by [`Keyring::encrypt_for`] with the
    /// same `purpose`, `account` and `ctx`.
    ///
    /// # Errors
    /// As [`Keyring::decrypt`]; [`CryptoError::ScopeMismatch`] for a
    /// purpose-scoped envelope.
    pub fn decrypt_for(
        &self,
        purpose: Purpose,
        account: &AccountKey,
        ctx: &AadContext<'_>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let env = Envelope::parse(ciphertext)?;
        if env.scope != Scope::Account {
            return Err(CryptoError::ScopeMismatch(
                "purpose-scoped ciphertext opened with an account key",
            ));
        }
        let entry = self.entry_for(purpose, &env)?;
        let key = self.derived_key(purpose, env.key_version, &entry, account)?;
        key.open(&env.nonce, &env.aad(ctx), env.ciphertext_and_tag)
    }

    fn entry_for(&self, purpose: Purpose, env: &Envelope<'_>) -> Result<Arc<DekEntry>> {
        if env.purpose != purpose {
            return Err(CryptoError::WrongPurpose {
                expected: purpose,
                found: env.purpose,
            });
        }
        let keys = self.keys.read();
        let pk = keys.get(&purpose);
        let min_version = pk.map_or(0, |pk| pk.min_version);
        if env.key_version < min_version {
            return Err(CryptoError::RetiredKeyVersion {
                purpose,
                version: env.key_version,
                min_version,
            });
        }
        pk.and_then(|pk| pk.versions.get(&env.key_version))
            .map(Arc::clone)
            .ok_or(CryptoError::UnknownKeyVersion {
                purpose,
                version: env.key_version,
            })
    }

    /// Whether `ciphertext` was sealed with an older version than the
    /// current one of its purpose (a rewrap candidate). Unparseable input
    /// is reported as an error, not as "needs rewrap".
    ///
    /// # Errors
    /// Envelope parse errors; [`CryptoError::NoDataKey`].
    pub fn needs_rewrap(&self, ciphertext: &[u8]) -> Result<bool> {
        let env = Envelope::parse(ciphertext)?;
        let current = self
            .current_version(env.purpose)
            .ok_or(CryptoError::NoDataKey(env.purpose))?;
        Ok(env.key_version < current)
    }

    /// Re-encrypts a record with the current version of `purpose` if it is on
    /// an older one: the building block of online rewrap. Returns `None` when
    /// the ciphertext is already current. The plaintext only lives in a
    /// zeroizing buffer between the two operations.
    ///
    /// # Errors
    /// As [`Keyring::decrypt`] and [`Keyring::encrypt`].
    pub fn reencrypt(
        &self,
        purpose: Purpose,
        ctx: &AadContext<'_>,
        ciphertext: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let plain = self.decrypt(purpose, ctx, ciphertext)?;
        if !self.needs_rewrap(ciphertext)? {
            return Ok(None);
        }
        self.encrypt(purpose, ctx, &plain).map(Some)
    }

    /// [`Keyring::reencrypt`] for an account-scoped envelope.
    ///
    /// # Errors
    /// As [`Keyring::decrypt_for`] and [`Keyring::encrypt_for`].
    pub fn reencrypt_for(
        &self,
        purpose: Purpose,
        account: &AccountKey,
        ctx: &AadContext<'_>,
        ciphertext: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let plain = self.decrypt_for(purpose, account, ctx, ciphertext)?;
        if !self.needs_rewrap(ciphertext)? {
            return Ok(None);
        }
        self.encrypt_for(purpose, account, ctx, &plain).map(Some)
    }

    /// Retires every version of `purpose` below `min_version`: their keys are
    /// dropped from memory and their ciphertexts refused. Call only after a
    /// completed rewrap; the store persists `min_version`. Returns how many
    /// versions were dropped.
    ///
    /// # Errors
    /// [`CryptoError::InvalidRetirement`] if `min_version` is above the
    /// current version or below the present minimum.
    pub fn retire_below(&self, purpose: Purpose, min_version: u32) -> Result<usize> {
        let mut keys = self.keys.write();
        let pk = keys.entry(purpose).or_default();
        let current = pk.newest().map_or(0, |(v, _)| v);
        if min_version > current || min_version < pk.min_version {
            return Err(CryptoError::InvalidRetirement {
                purpose,
                min_version,
                current,
            });
        }
        let kept = pk.versions.split_off(&min_version);
        let dropped = std::mem::replace(&mut pk.versions, kept).len();
        pk.min_version = min_version;
        drop(keys);
        for per_account in self.derived.write().values_mut() {
            per_account.retain(|(p, v), _| *p != purpose || *v >= min_version);
        }
        self.events.record(&KeyEvent::DataKeysRetired {
            purpose,
            min_version,
            dropped,
        });
        Ok(dropped)
    }

    /// Oldest version of `purpose` still accepted for decryption (0 if none retired).
    #[must_use]
    pub fn min_version(&self, purpose: Purpose) -> u32 {
        self.keys
            .read()
            .get(&purpose)
            .map_or(0, |pk| pk.min_version)
    }
}

fn seal(
    key: &Aes256GcmKey,
    scope: Scope,
    purpose: Purpose,
    version: u32,
    ctx: &AadContext<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let nonce = aead::random_nonce()?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&header_prefix(scope, purpose, version));
    out.extend_from_slice(&nonce);
    let aad = build_aad(scope, purpose, version, ctx);
    key.seal_append(&nonce, &aad, plaintext, &mut out)?;
    Ok(out)
}
