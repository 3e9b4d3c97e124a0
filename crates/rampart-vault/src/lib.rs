//! Rampart key management: the keyring of `rampart-crypto` persisted in the
//! store of `rampart-store`.
//!
//! [`Vault`] is what the gateway and the `rampart keys` commands use:
//!
//! - **open**: loads every wrapped data key (DEK) from the store, unwraps it
//!   through the key provider, applies the minimum decryption versions, and
//!   creates version 1 of any purpose that has none;
//! - **seal / open** of account-owned fields (API secrets, MFA seeds) with
//!   account-scoped keys, so that [`Vault::shred_account`] makes them
//!   unrecoverable;
//! - **rotation**: [`Vault::rotate_data_key`] (new DEK version for new
//!   writes), automatic rotation by encryption count and by age in
//!   [`Vault::maintenance`], fleet-safe (two nodes never put two keys under
//!   one version);
//! - **rewrap**: [`Vault::rewrap`] re-encrypts every stored field to the
//!   current version online (compare-and-swap, so concurrent writes win),
//!   resumably (a re-run skips what is already current), and retires old
//!   versions only after a clean verification pass;
//! - **root rotation**: [`Vault::rotate_root`] re-wraps every DEK under a new
//!   root key, then destroys the old root key; crash-safe and resumable.
//!
//! It must never: let a plaintext secret reach the store or a log; retire a
//! data-key version while any readable record still uses it; or destroy a
//! root key version while any live DEK is still wrapped by it.

pub mod directory;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use rampart_crypto::{
    AadContext, AccountKey, CryptoError, Envelope, KeyEvent, KeyEventSink, KeyProvider, Keyring,
    KeyringLimits, LogSink, Purpose, WrappedDataKey,
};
use rampart_store::{
    AnyStore, ApiKey, CipherRef, CipherSwap, DekState, KeyMetadata, MfaEnrolment, Store, StoreError,
};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// Purposes whose every ciphertext lives in the store, so a rewrap pass can
/// prove no record uses an old version and retire it. `audit-fields`
/// ciphertexts live in the append-only audit log, which is never rewritten,
/// so its old versions are never retired.
pub const RETIRABLE: [Purpose; 2] = [Purpose::ApiSecrets, Purpose::MfaSeeds];

/// Most account keys cached in memory; the cache is emptied when full and
/// on every refresh.
const ACCOUNT_CACHE_MAX: usize = 65_536;

/// What can go wrong in key management.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A cryptographic or key-provider operation failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored state is inconsistent with what the operation needs.
    #[error("{0}")]
    State(String),
}

/// Result alias for vault operations.
pub type Result<T> = std::result::Result<T, VaultError>;

/// Tunables of a [`Vault`].
#[derive(Debug, Clone, Copy)]
pub struct VaultOptions {
    /// Encryption-count thresholds of the keyring.
    pub limits: KeyringLimits,
    /// Rotate a data key once it is this old.
    pub max_key_age: Duration,
    /// How often the gateway runs [`Vault::maintenance`]. A rewrap waits
    /// twice this long after a rotation before retiring, so every node has
    /// picked up the new version.
    pub refresh_interval: Duration,
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            limits: KeyringLimits::default(),
            max_key_age: Duration::from_secs(90 * 24 * 3600),
            refresh_interval: Duration::from_secs(5),
        }
    }
}

/// Progress of a running rewrap, for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewrapProgress {
    /// Which pass (1 = the main pass; later passes pick up stragglers).
    pub pass: u32,
    /// Encrypted fields examined in this pass so far.
    pub scanned: u64,
    /// Fields in the store when the pass started.
    pub total: u64,
}

/// Outcome of [`Vault::rewrap`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Fields examined (over all passes).
    pub scanned: u64,
    /// Fields re-encrypted to the current version.
    pub rewrapped: u64,
    /// Fields already on the current version when examined.
    pub already_current: u64,
    /// Fields that changed between read and write (left to the concurrent
    /// writer, re-checked by the next pass).
    pub raced: u64,
    /// Fields of shredded accounts (unrecoverable by design).
    pub shredded: u64,
    /// Fields that failed to parse or decrypt (damage, wrong key): these
    /// block retirement and are reported.
    pub unreadable: u64,
    /// Per purpose: the new minimum decryption version, when old versions
    /// were retired.
    pub retired: Vec<(Purpose, u32)>,
}

/// Outcome of [`Vault::rotate_root`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRotationReport {
    /// Root key version before.
    pub from: u32,
    /// Root key version now.
    pub to: u32,
    /// Data keys re-wrapped under `to`.
    pub rewrapped_keys: usize,
    /// Root key versions destroyed.
    pub destroyed: usize,
}

/// One data-key version as `rampart keys status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionStatus {
    /// Purpose.
    pub purpose: Purpose,
    /// Version.
    pub version: u32,
    /// Active (may decrypt) or retired.
    pub state: DekState,
    /// Whether new writes use it.
    pub current: bool,
    /// Encryptions recorded in the store.
    pub encryptions: u64,
    /// Root key version wrapping it.
    pub root_key_version: u32,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// The keyring bound to its store. Cheap to share behind an `Arc`.
pub struct Vault {
    store: AnyStore,
    keyring: Arc<Keyring>,
    events: Arc<dyn KeyEventSink>,
    options: VaultOptions,
    accounts: RwLock<HashMap<String, AccountKey>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("keyring", &self.keyring)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Current time in Unix milliseconds.
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The purpose and associated-data context of a stored field.
#[must_use]
pub fn purpose_of(location: &CipherRef) -> Purpose {
    match location {
        CipherRef::ApiKeySecret { .. } | CipherRef::ApiKeyPreviousSecret { .. } => {
            Purpose::ApiSecrets
        }
        CipherRef::MfaSeed { .. } => Purpose::MfaSeeds,
    }
}

impl Vault {
    /// Opens the vault: loads every data key from `store` through
    /// `provider`, and creates version 1 of any purpose without one.
    ///
    /// # Errors
    /// A data key that does not unwrap (wrong root key, damage) stops the
    /// start: [`CryptoError::Unwrap`]. Store errors.
    pub async fn open(
        store: AnyStore,
        provider: Arc<dyn KeyProvider>,
        options: VaultOptions,
        events: Option<Arc<dyn KeyEventSink>>,
    ) -> Result<Self> {
        let events = events.unwrap_or_else(|| Arc::new(LogSink));
        let keyring = Arc::new(
            Keyring::with_limits(provider, options.limits).with_event_sink(Arc::clone(&events)),
        );
        let vault = Self {
            store,
            keyring,
            events,
            options,
            accounts: RwLock::new(HashMap::new()),
        };
        vault.refresh().await?;
        for purpose in Purpose::ALL {
            if vault.keyring.current_version(purpose).is_none() {
                vault.rotate_data_key(purpose).await?;
            }
        }
        Ok(vault)
    }

    /// The keyring (for direct encrypt/decrypt of non-account data).
    #[must_use]
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// The key provider.
    #[must_use]
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        self.keyring.provider()
    }

    /// Loads key versions created elsewhere (another node, the CLI), applies
    /// raised minimum versions, and drops cached account keys (so a shred
    /// done elsewhere takes effect here within one refresh).
    ///
    /// # Errors
    /// Store errors; a new version that does not unwrap.
    pub async fn refresh(&self) -> Result<()> {
        for purpose in Purpose::ALL {
            let min = self
                .store
                .min_decrypt_version(purpose.as_str())
                .await?
                .unwrap_or(0);
            for meta in self.store.list_key_metadata(purpose.as_str()).await? {
                if meta.version < min || meta.state == DekState::Retired {
                    continue;
                }
                let wrapped = WrappedDataKey {
                    purpose,
                    version: meta.version,
                    root_key_version: meta.root_key_version,
                    wrapped: meta.wrapped_dek.clone(),
                };
                self.keyring.load(&wrapped, meta.encryptions)?;
            }
            if min > self.keyring.min_version(purpose) {
                self.keyring.retire_below(purpose, min)?;
            }
        }
        self.accounts.write().clear();
        Ok(())
    }

    /// Makes a new data-key version of `purpose` current for new writes and
    /// returns it. Old versions keep decrypting until a rewrap retires them.
    /// If another node created the same version first, its key is used.
    ///
    /// # Errors
    /// Provider and store errors.
    pub async fn rotate_data_key(&self, purpose: Purpose) -> Result<u32> {
        // Pick up versions created elsewhere first, so the next number is right.
        self.refresh().await?;
        let wrapped = self.keyring.prepare_rotation(purpose)?;
        let meta = KeyMetadata {
            purpose: purpose.as_str().to_owned(),
            version: wrapped.version,
            wrapped_dek: wrapped.wrapped.clone(),
            encryptions: 0,
            state: DekState::Active,
            created_at_ms: now_ms(),
            root_key_version: wrapped.root_key_version,
        };
        match self.store.put_key_metadata(&meta).await {
            Ok(()) => {
                self.keyring.load(&wrapped, 0)?;
                self.keyring.record_created(&wrapped);
            }
            Err(StoreError::Conflict(_)) => {
                // Another node won the race for this version: use its key.
                self.refresh().await?;
            }
            Err(e) => return Err(e.into()),
        }
        self.keyring
            .current_version(purpose)
            .ok_or_else(|| VaultError::State(format!("no current data key for `{purpose}`")))
    }

    /// The account key (shred handle) of `account_id`, created on first use.
    ///
    /// # Errors
    /// [`CryptoError::Shredded`] once the account was shredded; store errors.
    pub async fn account_key(&self, account_id: &str) -> Result<AccountKey> {
        if let Some(k) = self.accounts.read().get(account_id) {
            return Ok(k.clone());
        }
        let key = match self.store.get_account_key(account_id).await {
            Ok(rec) => Self::from_record(&rec)?,
            Err(StoreError::NotFound(_)) => {
                let fresh = AccountKey::generate(account_id)?;
                let rec = rampart_store::AccountKey {
                    account_id: account_id.to_owned(),
                    secret: Some(Zeroizing::new(fresh.expose().to_vec())),
                    created_at_ms: now_ms(),
                    shredded_at_ms: None,
                };
                match self.store.put_account_key(&rec).await {
                    Ok(()) => fresh,
                    // Created concurrently: use the stored one.
                    Err(StoreError::Conflict(_)) => {
                        Self::from_record(&self.store.get_account_key(account_id).await?)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let mut cache = self.accounts.write();
        if cache.len() >= ACCOUNT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(account_id.to_owned(), key.clone());
        Ok(key)
    }

    fn from_record(rec: &rampart_store::AccountKey) -> Result<AccountKey> {
        match &rec.secret {
            Some(secret) => Ok(AccountKey::from_bytes(&rec.account_id, secret)?),
            None => Err(CryptoError::Shredded.into()),
        }
    }

    /// Encrypts the field at `location`, owned by `account_id`, with the
    /// current version of its purpose and the account's key.
    ///
    /// # Errors
    /// As [`Vault::account_key`] and [`Keyring::encrypt_for`].
    pub async fn seal(
        &self,
        location: &CipherRef,
        account_id: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let account = self.account_key(account_id).await?;
        let record_id = location.record_id();
        let ctx = AadContext::new(location.record_type(), &record_id, location.field());
        Ok(self
            .keyring
            .encrypt_for(purpose_of(location), &account, &ctx, plaintext)?)
    }

    /// Decrypts the field at `location` owned by `account_id`.
    ///
    /// # Errors
    /// [`CryptoError::Shredded`], [`CryptoError::Decrypt`] (moved or
    /// tampered ciphertext), retired or unknown key versions.
    pub async fn open_field(
        &self,
        location: &CipherRef,
        account_id: &str,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let account = self.account_key(account_id).await?;
        let record_id = location.record_id();
        let ctx = AadContext::new(location.record_type(), &record_id, location.field());
        Ok(self
            .keyring
            .decrypt_for(purpose_of(location), &account, &ctx, ciphertext)?)
    }

    /// Seals an API key secret for `key_id` of `account_id`.
    ///
    /// # Errors
    /// As [`Vault::seal`].
    pub async fn seal_api_secret(
        &self,
        account_id: &str,
        key_id: &str,
        secret: &[u8],
    ) -> Result<Vec<u8>> {
        let loc = CipherRef::ApiKeySecret {
            key_id: key_id.to_owned(),
        };
        self.seal(&loc, account_id, secret).await
    }

    /// Decrypts the secret of a stored API key.
    ///
    /// # Errors
    /// [`VaultError::State`] if the key has no secret; as [`Vault::open_field`].
    pub async fn open_api_secret(&self, key: &ApiKey) -> Result<Zeroizing<Vec<u8>>> {
        let ct = key
            .secret_ciphertext
            .as_deref()
            .ok_or_else(|| VaultError::State("API key has no secret".to_owned()))?;
        let loc = CipherRef::ApiKeySecret {
            key_id: key.key_id.clone(),
        };
        self.open_field(&loc, &key.account_id, ct).await
    }

    /// Seals an MFA seed of `account_id` and `kind`.
    ///
    /// # Errors
    /// As [`Vault::seal`].
    pub async fn seal_mfa_seed(
        &self,
        account_id: &str,
        kind: &str,
        seed: &[u8],
    ) -> Result<Vec<u8>> {
        let loc = CipherRef::MfaSeed {
            account_id: account_id.to_owned(),
            kind: kind.to_owned(),
        };
        self.seal(&loc, account_id, seed).await
    }

    /// Decrypts the seed of a stored MFA enrolment.
    ///
    /// # Errors
    /// As [`Vault::open_field`].
    pub async fn open_mfa_seed(&self, enrolment: &MfaEnrolment) -> Result<Zeroizing<Vec<u8>>> {
        let loc = CipherRef::MfaSeed {
            account_id: enrolment.account_id.clone(),
            kind: enrolment.kind.clone(),
        };
        self.open_field(&loc, &enrolment.account_id, &enrolment.seed_ciphertext)
            .await
    }

    /// Crypto-shredding: destroys the account key of `account_id`, so every
    /// field sealed for the account is unrecoverable from now on, and
    /// records it. Idempotent.
    ///
    /// # Errors
    /// Store errors ([`StoreError::MissingReference`] for an unknown account).
    pub async fn shred_account(&self, account_id: &str) -> Result<()> {
        match self.store.get_account_key(account_id).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                // Never had a key: create one so the shredded state is recorded.
                match self.account_key(account_id).await {
                    Ok(_) | Err(VaultError::Crypto(CryptoError::Shredded)) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.store.shred_account_key(account_id, now_ms()).await?;
        self.accounts.write().remove(account_id);
        self.keyring.forget_account(account_id);
        self.events.record(&KeyEvent::AccountShredded {
            account_id: account_id.to_owned(),
        });
        Ok(())
    }

    /// Adds this node's encryption counts to the store and raises the local
    /// counters to the fleet-wide totals.
    ///
    /// # Errors
    /// Store errors (the deltas of a failed flush are lost: at most one
    /// refresh interval of counts, far below the 2^31 margin between the
    /// rotation threshold and the AES-GCM bound).
    pub async fn flush_counters(&self) -> Result<()> {
        for (purpose, version, delta) in self.keyring.take_encryption_deltas() {
            let total = self
                .store
                .add_encryptions(purpose.as_str(), version, delta)
                .await?;
            self.keyring.observe_total(purpose, version, total);
        }
        Ok(())
    }

    /// One maintenance round (the gateway runs it every refresh interval):
    /// flush counters, pick up changes made elsewhere, and rotate every
    /// purpose whose current key reached its encryption threshold or its
    /// maximum age. Returns the purposes rotated.
    ///
    /// # Errors
    /// Store and provider errors.
    pub async fn maintenance(&self) -> Result<Vec<Purpose>> {
        self.flush_counters().await?;
        self.refresh().await?;
        let mut rotated = Vec::new();
        let max_age_ms = i64::try_from(self.options.max_key_age.as_millis()).unwrap_or(i64::MAX);
        for purpose in Purpose::ALL {
            let by_count = self.keyring.rotation_due(purpose);
            let by_age = match self.keyring.current_version(purpose) {
                None => true,
                Some(v) => self
                    .store
                    .list_key_metadata(purpose.as_str())
                    .await?
                    .iter()
                    .find(|m| m.version == v)
                    .is_some_and(|m| now_ms().saturating_sub(m.created_at_ms) >= max_age_ms),
            };
            if by_count || by_age {
                tracing::info!(
                    target: "rampart::keys",
                    purpose = purpose.as_str(),
                    by_count,
                    by_age,
                    "data key due for rotation"
                );
                self.rotate_data_key(purpose).await?;
                rotated.push(purpose);
            }
        }
        Ok(rotated)
    }

    /// Runs [`Vault::maintenance`] every refresh interval until `shutdown`,
    /// then flushes the counters one last time. Failures are logged and
    /// retried next round (the keyring keeps working on what it has).
    pub fn spawn_maintenance(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let vault = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(vault.options.refresh_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = vault.maintenance().await {
                            tracing::error!(target: "rampart::keys", error = %e, "key maintenance failed; retrying next round");
                        }
                    }
                }
            }
            if let Err(e) = vault.flush_counters().await {
                tracing::error!(target: "rampart::keys", error = %e, "final encryption-counter flush failed");
            }
        })
    }

    /// Re-encrypts every stored field that is on an older data-key version
    /// to the current one, online: reads page by page, writes back with
    /// compare-and-swap (a field changed concurrently is left to its writer
    /// and re-checked by a later pass). Safe to interrupt at any point and to
    /// run again: a re-run skips fields already current.
    ///
    /// When `retire` is set and a verification pass finds no readable field
    /// on an old version of a [`RETIRABLE`] purpose, versions below the
    /// current one are retired (after waiting, if needed, until the current
    /// version is two refresh intervals old so every gateway writes with it).
    ///
    /// # Errors
    /// Store errors; crypto errors other than per-record decryption failures
    /// (which are counted as unreadable).
    pub async fn rewrap(
        &self,
        batch: u32,
        retire: bool,
        progress: &mut (dyn FnMut(RewrapProgress) + Send),
    ) -> Result<RewrapReport> {
        self.refresh().await?;
        let batch = batch.clamp(1, 10_000);
        let mut report = RewrapReport::default();
        let mut clean = false;
        for pass in 1..=3 {
            let before = report.clone();
            // Shredded and unreadable counts describe the store as the last
            // pass saw it; "already current" is what the first pass found.
            report.shredded = 0;
            report.unreadable = 0;
            self.rewrap_pass(pass, batch, &mut report, progress).await?;
            if pass > 1 {
                report.already_current = before.already_current;
            }
            let changed = report.rewrapped > before.rewrapped || report.raced > before.raced;
            if !changed {
                clean = true;
                break;
            }
        }
        if !clean {
            // Still racing after three passes (heavy concurrent writes on
            // old versions): one more check decides.
            clean = self.stragglers().await? == 0;
        }
        if retire && clean && report.unreadable == 0 {
            report.retired = self.retire_old_versions().await?;
        }
        self.events.record(&KeyEvent::RewrapCompleted {
            scanned: report.scanned,
            rewrapped: report.rewrapped,
            raced: report.raced,
            unreadable: report.unreadable,
        });
        Ok(report)
    }

    async fn rewrap_pass(
        &self,
        pass: u32,
        batch: u32,
        report: &mut RewrapReport,
        progress: &mut (dyn FnMut(RewrapProgress) + Send),
    ) -> Result<()> {
        let total = self.store.count_ciphertexts().await?;
        let mut cursor: Option<CipherRef> = None;
        let mut scanned = 0u64;
        loop {
            let page = self.store.scan_ciphertexts(cursor.as_ref(), batch).await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.location.clone());
            let mut swaps = Vec::new();
            for item in &page {
                scanned += 1;
                report.scanned += 1;
                let purpose = purpose_of(&item.location);
                match self.keyring.needs_rewrap(&item.ciphertext) {
                    Ok(false) => {
                        report.already_current += 1;
                        continue;
                    }
                    Ok(true) => {}
                    Err(_) => {
                        report.unreadable += 1;
                        continue;
                    }
                }
                let account = match self.account_key(&item.account_id).await {
                    Ok(a) => a,
                    Err(VaultError::Crypto(CryptoError::Shredded)) => {
                        report.shredded += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let record_id = item.location.record_id();
                let ctx = AadContext::new(
                    item.location.record_type(),
                    &record_id,
                    item.location.field(),
                );
                match self
                    .keyring
                    .reencrypt_for(purpose, &account, &ctx, &item.ciphertext)
                {
                    Ok(Some(new)) => swaps.push(CipherSwap {
                        location: item.location.clone(),
                        expected: item.ciphertext.clone(),
                        new,
                    }),
                    Ok(None) => report.already_current += 1,
                    Err(CryptoError::KeyExhausted { purpose, version }) => {
                        return Err(CryptoError::KeyExhausted { purpose, version }.into())
                    }
                    Err(e) => {
                        tracing::warn!(
                            target: "rampart::keys",
                            record_type = item.location.record_type(),
                            error = %e,
                            "rewrap: field does not decrypt"
                        );
                        report.unreadable += 1;
                    }
                }
            }
            if !swaps.is_empty() {
                let applied = self.store.swap_ciphertexts(&swaps).await?;
                for ok in applied {
                    if ok {
                        report.rewrapped += 1;
                    } else {
                        report.raced += 1;
                    }
                }
            }
            progress(RewrapProgress {
                pass,
                scanned,
                total,
            });
        }
        Ok(())
    }

    /// Readable fields of retirable purposes still on an old version
    /// (header check only; shredded accounts do not count).
    async fn stragglers(&self) -> Result<u64> {
        let mut cursor: Option<CipherRef> = None;
        let mut n = 0u64;
        loop {
            let page = self.store.scan_ciphertexts(cursor.as_ref(), 5_000).await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.location.clone());
            for item in &page {
                if self.keyring.needs_rewrap(&item.ciphertext).unwrap_or(false) {
                    match self.account_key(&item.account_id).await {
                        Err(VaultError::Crypto(CryptoError::Shredded)) => {}
                        _ => n += 1,
                    }
                }
            }
        }
        Ok(n)
    }

    async fn retire_old_versions(&self) -> Result<Vec<(Purpose, u32)>> {
        // Every gateway must have picked up the current versions before the
        // final check, or one could still write with an old version.
        let grace_ms = i64::try_from(self.options.refresh_interval.as_millis().saturating_mul(2))
            .unwrap_or(i64::MAX);
        let mut newest_created = 0i64;
        for purpose in RETIRABLE {
            if let Some(v) = self.keyring.current_version(purpose) {
                if let Some(m) = self
                    .store
                    .list_key_metadata(purpose.as_str())
                    .await?
                    .iter()
                    .find(|m| m.version == v)
                {
                    newest_created = newest_created.max(m.created_at_ms);
                }
            }
        }
        let wait_ms = newest_created
            .saturating_add(grace_ms)
            .saturating_sub(now_ms());
        if wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))).await;
        }
        self.refresh().await?;
        if self.stragglers().await? > 0 {
            return Ok(Vec::new());
        }
        let mut retired = Vec::new();
        for purpose in RETIRABLE {
            let Some(current) = self.keyring.current_version(purpose) else {
                continue;
            };
            if current <= self.keyring.min_version(purpose).max(1) {
                continue;
            }
            self.store
                .set_min_decrypt_version(purpose.as_str(), current)
                .await?;
            for meta in self.store.list_key_metadata(purpose.as_str()).await? {
                if meta.version < current && meta.state != DekState::Retired {
                    self.store
                        .set_key_state(purpose.as_str(), meta.version, DekState::Retired)
                        .await?;
                }
            }
            self.keyring.retire_below(purpose, current)?;
            retired.push((purpose, current));
        }
        Ok(retired)
    }

    /// Re-wraps every live data key under a new root key version, then
    /// destroys the old root key versions. Resumable: if a previous run
    /// stopped after creating the new root key, this run finishes it.
    ///
    /// # Errors
    /// Provider and store errors; [`VaultError::State`] if a live data key
    /// could not be moved (the old root key is then kept).
    pub async fn rotate_root(&self) -> Result<RootRotationReport> {
        self.refresh().await?;
        let provider = Arc::clone(self.keyring.provider());
        let from = provider.root_key_version();
        let to = if provider.root_key_versions().len() > 1 {
            from // an interrupted rotation: finish it
        } else {
            let to = provider.rotate_root()?;
            self.events.record(&KeyEvent::RootKeyCreated {
                provider: provider.kind(),
                version: to,
            });
            to
        };
        let mut rewrapped_keys = 0usize;
        for purpose in Purpose::ALL {
            let min = self.keyring.min_version(purpose);
            for meta in self.store.list_key_metadata(purpose.as_str()).await? {
                let live = meta.version >= min && meta.state != DekState::Retired;
                if !live || meta.root_key_version >= to {
                    continue;
                }
                let w = self.keyring.rewrap_data_key(purpose, meta.version)?;
                self.store
                    .update_wrapped_dek(
                        purpose.as_str(),
                        meta.version,
                        &w.wrapped,
                        w.root_key_version,
                    )
                    .await?;
                self.events.record(&KeyEvent::DataKeyRewrapped {
                    purpose,
                    version: meta.version,
                    root_key_version: w.root_key_version,
                });
                rewrapped_keys += 1;
            }
        }
        // Verify from the store before destroying anything.
        for purpose in Purpose::ALL {
            let min = self.keyring.min_version(purpose);
            for meta in self.store.list_key_metadata(purpose.as_str()).await? {
                let live = meta.version >= min && meta.state != DekState::Retired;
                if live && provider.wrapped_root_version(&meta.wrapped_dek)? < to {
                    return Err(VaultError::State(format!(
                        "data key `{purpose}` v{} is still wrapped by an old root key; old root key kept",
                        meta.version
                    )));
                }
            }
        }
        let destroyed = provider.destroy_root_versions_below(to)?;
        self.events.record(&KeyEvent::RootKeysDestroyed {
            provider: provider.kind(),
            below: to,
            destroyed,
        });
        Ok(RootRotationReport {
            from: if from == to {
                to.saturating_sub(1)
            } else {
                from
            },
            to,
            rewrapped_keys,
            destroyed,
        })
    }

    /// Every data-key version in the store, for `rampart keys status`.
    ///
    /// # Errors
    /// Store errors.
    pub async fn status(&self) -> Result<Vec<KeyVersionStatus>> {
        let mut out = Vec::new();
        for purpose in Purpose::ALL {
            let current = self.keyring.current_version(purpose);
            for meta in self.store.list_key_metadata(purpose.as_str()).await? {
                out.push(KeyVersionStatus {
                    purpose,
                    version: meta.version,
                    state: meta.state,
                    current: Some(meta.version) == current,
                    encryptions: meta.encryptions,
                    root_key_version: meta.root_key_version,
                    created_at_ms: meta.created_at_ms,
                });
            }
        }
        Ok(out)
    }

    /// Number of stored fields per (purpose, data-key version), read from
    /// their headers (no decryption).
    ///
    /// # Errors
    /// Store errors.
    pub async fn field_versions(&self) -> Result<Vec<((Purpose, u32), u64)>> {
        let mut counts: HashMap<(Purpose, u32), u64> = HashMap::new();
        let mut cursor: Option<CipherRef> = None;
        loop {
            let page = self.store.scan_ciphertexts(cursor.as_ref(), 5_000).await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.location.clone());
            for item in &page {
                if let Ok(env) = Envelope::parse(&item.ciphertext) {
                    *counts.entry((env.purpose, env.key_version)).or_default() += 1;
                }
            }
        }
        let mut out: Vec<_> = counts.into_iter().collect();
        out.sort_unstable();
        Ok(out)
    }
}
