//! The vault end to end on a real SQLite store and the local key provider.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rampart_crypto::{
    CryptoError, Envelope, KdfParams, KeyProvider, KeyringLimits, LocalKeyProvider, Purpose,
};
use rampart_store::{Account, AnyStore, ApiKey, CipherRef, KeyState, SqliteStore, Store};
use rampart_vault::{Vault, VaultError, VaultOptions};

fn opts() -> VaultOptions {
    VaultOptions {
        refresh_interval: Duration::from_millis(100),
        ..VaultOptions::default()
    }
}

async fn setup(dir: &Path) -> (AnyStore, Arc<dyn KeyProvider>) {
    let data = dir.join("data");
    let provider: Arc<dyn KeyProvider> =
        Arc::new(LocalKeyProvider::open_or_create(&data, None, KdfParams::default()).unwrap());
    let store = AnyStore::new(SqliteStore::open_in_dir(&data).await.unwrap());
    (store, provider)
}

fn account(id: &str) -> Account {
    Account {
        id: id.into(),
        name: id.into(),
        parent_id: None,
        created_at_ms: 0,
        kyc_tier: 0,
        risk_profile: None,
    }
}

fn api_key(key_id: &str, account_id: &str, ct: Vec<u8>) -> ApiKey {
    ApiKey {
        key_id: key_id.into(),
        account_id: account_id.into(),
        scheme: "hmac-sha256".into(),
        scopes: vec!["trade".into()],
        allowed_cidrs: vec![],
        expires_at_ms: None,
        cert_fingerprint: None,
        profile: None,
        state: KeyState::Enabled,
        revoked_at_ms: None,
        secret_ciphertext: Some(ct),
        public_key: None,
        created_at_ms: 0,
        permissions: rampart_store::KeyPermissions::default(),
    }
}

fn secret_of(i: usize) -> Vec<u8> {
    format!("secret-{i:06}-{}", "x".repeat(20)).into_bytes()
}

async fn seed(vault: &Vault, n: usize, accounts: usize) {
    for a in 0..accounts {
        vault
            .store()
            .create_account(&account(&format!("acct{a}")))
            .await
            .unwrap();
    }
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let acct = format!("acct{}", i % accounts);
        let key_id = format!("k{i:06}");
        let ct = vault
            .seal_api_secret(&acct, &key_id, &secret_of(i))
            .await
            .unwrap();
        keys.push(api_key(&key_id, &acct, ct));
    }
    for chunk in keys.chunks(2_000) {
        vault.store().create_api_keys(chunk).await.unwrap();
    }
}

async fn assert_all_readable(vault: &Vault, n: usize, on_version: Option<u32>) {
    for i in 0..n {
        let key = vault
            .store()
            .get_api_key(&format!("k{i:06}"))
            .await
            .unwrap();
        let plain = vault.open_api_secret(&key).await.unwrap();
        assert!(
            plain.starts_with(format!("secret-{i:06}").as_bytes()) || plain.starts_with(b"new-"),
            "record {i} decrypted to something else"
        );
        if let Some(v) = on_version {
            let env = Envelope::parse(key.secret_ciphertext.as_deref().unwrap()).unwrap();
            assert_eq!(env.key_version, v, "record {i}");
        }
    }
}

#[tokio::test]
async fn open_creates_and_reloads_one_key_per_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let (store, provider) = setup(dir.path()).await;
    let vault = Vault::open(store.clone(), Arc::clone(&provider), opts(), None)
        .await
        .unwrap();
    for p in Purpose::ALL {
        assert_eq!(vault.keyring().current_version(p), Some(1));
    }
    let status = vault.status().await.unwrap();
    assert_eq!(status.len(), 3);
    assert!(status.iter().all(|s| s.current && s.root_key_version == 1));
    store.create_account(&account("a")).await.unwrap();
    let ct = vault.seal_api_secret("a", "k", b"hunter2").await.unwrap();
    drop(vault);
    let again = Vault::open(store, provider, opts(), None).await.unwrap();
    assert_eq!(again.status().await.unwrap().len(), 3, "no extra versions");
    let key = api_key("k", "a", ct);
    assert_eq!(&again.open_api_secret(&key).await.unwrap()[..], b"hunter2");
}

#[tokio::test]
async fn sealed_fields_are_bound_to_record_field_and_account() {
    let dir = tempfile::tempdir().unwrap();
    let (store, provider) = setup(dir.path()).await;
    let vault = Vault::open(store.clone(), provider, opts(), None)
        .await
        .unwrap();
    store.create_account(&account("a")).await.unwrap();
    store.create_account(&account("b")).await.unwrap();
    let ct = vault.seal_api_secret("a", "k1", b"s1").await.unwrap();
    // Same bytes presented as another key's secret, another account's, or an MFA seed.
    assert!(vault
        .open_api_secret(&api_key("k2", "a", ct.clone()))
        .await
        .is_err());
    assert!(vault
        .open_api_secret(&api_key("k1", "b", ct.clone()))
        .await
        .is_err());
    let seed = CipherRef::MfaSeed {
        account_id: "a".into(),
        kind: "totp".into(),
    };
    assert!(vault.open_field(&seed, "a", &ct).await.is_err());
    assert_eq!(
        &vault
            .open_api_secret(&api_key("k1", "a", ct))
            .await
            .unwrap()[..],
        b"s1"
    );
}

#[tokio::test]
async fn rotate_then_rewrap_online_moves_everything_and_retires() {
    let dir = tempfile::tempdir().unwrap();
    let (store, provider) = setup(dir.path()).await;
    let vault = Arc::new(Vault::open(store, provider, opts(), None).await.unwrap());
    let n = 2_000;
    seed(&vault, n, 7).await;
    assert_eq!(vault.rotate_data_key(Purpose::ApiSecrets).await.unwrap(), 2);

    // A concurrent writer and reader while the rewrap runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (vault, stop) = (Arc::clone(&vault), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut i = 0usize;
            let mut writes = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let idx = (i * 7919) % n;
                let key_id = format!("k{idx:06}");
                let key = vault.store().get_api_key(&key_id).await.unwrap();
                vault.open_api_secret(&key).await.unwrap();
                let ct = vault
                    .seal_api_secret(&key.account_id, &key_id, format!("new-{idx}").as_bytes())
                    .await
                    .unwrap();
                vault
                    .store()
                    .set_api_key_secret(&key_id, &ct)
                    .await
                    .unwrap();
                writes += 1;
                i += 1;
                tokio::task::yield_now().await;
            }
            writes
        })
    };
    let mut last = None;
    let report = vault
        .rewrap(250, true, &mut |p| last = Some(p))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 0);
    assert_eq!(report.unreadable, 0);
    assert!(report.rewrapped > 0);
    assert_eq!(report.retired, vec![(Purpose::ApiSecrets, 2)]);
    assert!(last.unwrap().scanned >= n as u64);
    assert_all_readable(&vault, n, Some(2)).await;
    assert_eq!(
        vault.field_versions().await.unwrap(),
        vec![((Purpose::ApiSecrets, 2), n as u64)]
    );
    // v1 is retired: its ciphertexts are refused from now on.
    assert_eq!(
        vault
            .store()
            .min_decrypt_version("api-secrets")
            .await
            .unwrap(),
        Some(2)
    );
    // A second run has nothing to do.
    let again = vault.rewrap(250, true, &mut |_| {}).await.unwrap();
    assert_eq!(again.rewrapped, 0);
    assert_eq!(again.already_current, n as u64);
}

#[tokio::test]
async fn interrupted_rewrap_resumes_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (store, provider) = setup(dir.path()).await;
    let vault = Arc::new(Vault::open(store, provider, opts(), None).await.unwrap());
    let n = 3_000;
    seed(&vault, n, 3).await;
    vault.rotate_data_key(Purpose::ApiSecrets).await.unwrap();
    // Abort the rewrap task after its first pages.
    let task = {
        let vault = Arc::clone(&vault);
        tokio::spawn(async move {
            vault
                .rewrap(100, true, &mut |p| {
                    if p.scanned >= 500 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    task.abort();
    let _ = task.await;
    let versions = vault.field_versions().await.unwrap();
    let total: u64 = versions.iter().map(|(_, c)| c).sum();
    assert_eq!(total, n as u64, "no record lost: {versions:?}");
    assert_eq!(versions.len(), 2, "stopped midway: {versions:?}");
    // Resume.
    let report = vault.rewrap(500, true, &mut |_| {}).await.unwrap();
    assert_eq!(report.unreadable, 0);
    assert_eq!(report.retired, vec![(Purpose::ApiSecrets, 2)]);
    assert_all_readable(&vault, n, Some(2)).await;
}

#[tokio::test]
async fn shredding_makes_only_that_account_unrecoverable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, provider) = setup(dir.path()).await;
    let vault = Vault::open(store.clone(), Arc::clone(&provider), opts(), None)
        .await
        .unwrap();
    seed(&vault, 30, 3).await;
    vault.shred_account("acct1").await.unwrap();
    vault.shred_account("acct1").await.unwrap(); // idempotent
    for i in 0..30 {
        let key = store.get_api_key(&format!("k{i:06}")).await.unwrap();
        let res = vault.open_api_secret(&key).await;
        if key.account_id == "acct1" {
            assert!(matches!(
                res,
                Err(VaultError::Crypto(CryptoError::Shredded))
            ));
        } else {
            assert!(res.is_ok());
        }
    }
    let rec = store.get_account_key("acct1").await.unwrap();
    assert!(rec.secret.is_none() && rec.shredded_at_ms.is_some());
    // A fresh process (no caches) cannot read it either, and a new seal is refused.
    let fresh = Vault::open(store.clone(), provider, opts(), None)
        .await
        .unwrap();
    let key = store.get_api_key("k000001").await.unwrap();
    assert!(fresh.open_api_secret(&key).await.is_err());
    assert!(fresh.seal_api_secret("acct1", "k-new", b"x").await.is_err());
    // Rewrap skips shredded fields and still retires.
    fresh.rotate_data_key(Purpose::ApiSecrets).await.unwrap();
    let report = fresh.rewrap(100, true, &mut |_| {}).await.unwrap();
    assert_eq!(report.shredded, 10);
    assert_eq!(report.rewrapped, 20);
    assert_eq!(report.retired, vec![(Purpose::ApiSecrets, 2)]);
}

#[tokio::test]
async fn root_rotation_rewraps_every_key_and_destroys_the_old_root() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let (store, provider) = setup(dir.path()).await;
    let vault = Vault::open(store.clone(), Arc::clone(&provider), opts(), None)
        .await
        .unwrap();
    seed(&vault, 20, 2).await;
    vault.rotate_data_key(Purpose::MfaSeeds).await.unwrap();
    let report = vault.rotate_root().await.unwrap();
    assert_eq!((report.from, report.to), (1, 2));
    assert_eq!(report.rewrapped_keys, 4);
    assert_eq!(report.destroyed, 1);
    assert!(vault
        .status()
        .await
        .unwrap()
        .iter()
        .all(|s| s.root_key_version == 2));
    drop(vault);
    drop(provider);
    // A new process with the rotated root key file reads everything.
    let provider: Arc<dyn KeyProvider> = Arc::new(LocalKeyProvider::open(&data, None).unwrap());
    assert_eq!(provider.root_key_versions(), vec![2]);
    let vault = Vault::open(store, provider, opts(), None).await.unwrap();
    assert_all_readable(&vault, 20, None).await;
}

#[tokio::test]
async fn interrupted_root_rotation_finishes_on_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let (store, provider) = setup(dir.path()).await;
    let vault = Vault::open(store.clone(), Arc::clone(&provider), opts(), None)
        .await
        .unwrap();
    seed(&vault, 5, 1).await;
    // Crash right after the new root key was created.
    provider.rotate_root().unwrap();
    drop(vault);
    drop(provider);
    let provider: Arc<dyn KeyProvider> = Arc::new(LocalKeyProvider::open(&data, None).unwrap());
    assert_eq!(provider.root_key_versions(), vec![1, 2]);
    let vault = Vault::open(store, Arc::clone(&provider), opts(), None)
        .await
        .unwrap();
    let report = vault.rotate_root().await.unwrap();
    assert_eq!(report.to, 2);
    assert_eq!(provider.root_key_versions(), vec![2]);
    assert_all_readable(&vault, 5, None).await;
}

#[tokio::test]
async fn maintenance_rotates_by_count_and_age_and_counts_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, provider) = setup(dir.path()).await;
    let small = VaultOptions {
        limits: KeyringLimits {
            rotate_after: 50,
            hard_limit: 1_000,
        },
        ..opts()
    };
    let vault = Vault::open(store.clone(), Arc::clone(&provider), small, None)
        .await
        .unwrap();
    store.create_account(&account("a")).await.unwrap();
    for i in 0..60 {
        vault
            .seal_api_secret("a", &format!("k{i}"), b"s")
            .await
            .unwrap();
    }
    let rotated = vault.maintenance().await.unwrap();
    assert_eq!(rotated, vec![Purpose::ApiSecrets]);
    assert_eq!(
        vault.keyring().current_version(Purpose::ApiSecrets),
        Some(2)
    );
    let meta = store.list_key_metadata("api-secrets").await.unwrap();
    assert_eq!(meta[0].encryptions, 60, "counter flushed to the store");
    // A restart sees the persisted count.
    let again = Vault::open(store.clone(), Arc::clone(&provider), small, None)
        .await
        .unwrap();
    let st = again.keyring().status();
    assert!(st
        .iter()
        .any(|s| s.purpose == Purpose::ApiSecrets && s.version == 1 && s.encryptions == 60));
    // Age: a zero-ish max age rotates every purpose (minimum accepted is checked by config).
    let aged = VaultOptions {
        max_key_age: Duration::from_millis(1),
        ..opts()
    };
    let old = Vault::open(store, provider, aged, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(old.maintenance().await.unwrap(), Purpose::ALL.to_vec());
}

#[tokio::test]
async fn two_nodes_rotating_at_once_agree_on_one_key_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let (store, provider) = setup(dir.path()).await;
    let a = Vault::open(store.clone(), Arc::clone(&provider), opts(), None)
        .await
        .unwrap();
    let b = Vault::open(store.clone(), provider, opts(), None)
        .await
        .unwrap();
    store.create_account(&account("x")).await.unwrap();
    let (va, vb) = tokio::join!(
        a.rotate_data_key(Purpose::ApiSecrets),
        b.rotate_data_key(Purpose::ApiSecrets)
    );
    let (va, vb) = (va.unwrap(), vb.unwrap());
    assert!(va >= 2 && vb >= 2);
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    let ct = a.seal_api_secret("x", "k", b"shared").await.unwrap();
    assert_eq!(
        &b.open_api_secret(&api_key("k", "x", ct)).await.unwrap()[..],
        b"shared"
    );
}
