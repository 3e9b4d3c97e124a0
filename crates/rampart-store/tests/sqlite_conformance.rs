//! The store conformance suite on the SQLite backend, one fresh database
//! file per case, plus SQLite-specific checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use rampart_store::conformance;
use rampart_store::{SqliteStore, Store};

async fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in_dir(dir.path().join("data"))
        .await
        .unwrap();
    (dir, store)
}

macro_rules! conformance_cases {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (_dir, store) = fresh().await;
            conformance::$name(&store).await.unwrap();
        }
    )*};
}

conformance_cases!(
    accounts_round_trip,
    sub_accounts,
    api_keys_round_trip,
    api_key_id_unique,
    api_key_unknown_account,
    api_keys_list_by_account,
    api_key_revoke,
    mfa_round_trip,
    key_metadata_versions,
    min_decrypt_version,
);

#[tokio::test]
async fn run_all_on_one_file() {
    let (_dir, store) = fresh().await;
    conformance::run_all(&store).await.unwrap();
}

#[tokio::test]
async fn run_all_in_memory() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    conformance::run_all(&store).await.unwrap();
}

#[tokio::test]
async fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("store.sqlite3");
    conformance::persists_across_reopen(|| SqliteStore::open(path.clone()))
        .await
        .unwrap();
}

#[tokio::test]
async fn debug_never_prints_opaque_bytes() {
    let (_dir, store) = fresh().await;
    store
        .create_account(&conformance::account("dbg", None))
        .await
        .unwrap();
    let mut key = conformance::api_key("kid-dbg", "dbg");
    key.secret_ciphertext = Some(vec![0xde, 0xad, 0xbe, 0xef]);
    store.create_api_key(&key).await.unwrap();
    let shown = format!("{:?}", store.get_api_key("kid-dbg").await.unwrap());
    assert!(shown.contains("<4 bytes>"), "{shown}");
    assert!(!shown.contains("222"), "{shown}");
    assert!(
        !shown.contains("0xde") && !shown.contains("de, ad"),
        "{shown}"
    );
    let meta = format!("{:?}", conformance::key_meta("p", 3));
    assert!(meta.contains("wrapped_dek: <60 bytes>"), "{meta}");
    assert!(!meta.contains("[3"), "{meta}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_one_file_all_land() {
    let (_dir, store) = fresh().await;
    store
        .create_account(&conformance::account("busy", None))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_api_key(&conformance::api_key(&format!("kid-busy-{i:02}"), "busy"))
                .await
                .unwrap();
            store
                .get_api_key(&format!("kid-busy-{i:02}"))
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let keys = store.list_api_keys("busy").await.unwrap();
    assert_eq!(keys.len(), 64);
    assert_eq!(keys[0].key_id, "kid-busy-00");
    assert_eq!(keys[63].key_id, "kid-busy-63");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_encryption_counts_are_never_lost() {
    let (_dir, store) = fresh().await;
    store
        .put_key_metadata(&conformance::key_meta("cnt", 1))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                store.add_encryptions("cnt", 1, 3).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let meta = store.list_key_metadata("cnt").await.unwrap();
    assert_eq!(meta[0].encryptions, 32 * 10 * 3);
}

#[tokio::test]
async fn run_all_through_dyn_any_store() {
    let (_dir, store) = fresh().await;
    let any = rampart_store::AnyStore::new(store);
    conformance::run_all(&any).await.unwrap();
    let shared = any.clone();
    assert_eq!(
        shared.get_account("acc-rt").await.unwrap().name,
        "name of acc-rt"
    );
}
