//! The store conformance suite on the SQLite backend, one fresh database
//! file per case, plus SQLite-specific checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::time::Instant;

use rampart_store::conformance::{self, key_ref, mfa_ref, prev_ref};
use std::sync::Arc;

use rampart_store::{AccountKey, CipherSwap, MfaEnrolment, SqliteStore, Store, StoredCiphertext};
use zeroize::Zeroizing;

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
    api_keys_batch_create,
    api_key_set_secret,
    api_key_unknown_account,
    api_keys_list_by_account,
    api_key_revoke,
    mfa_round_trip,
    account_keys_shred,
    key_metadata_versions,
    key_metadata_rewrap,
    min_decrypt_version,
    ciphertext_scan_order,
    ciphertext_swaps,
    accounts_list_all,
    api_keys_list_all,
    api_key_secret_rotation,
    previous_secrets_expire,
    ciphertext_scan_previous_secrets,
    key_counter_strictly_increasing,
    key_counter_concurrent_advances,
    key_nonce_window,
    account_kyc,
    api_key_permissions,
    mfa_parameters,
    mfa_step_replay_guard,
    mfa_step_concurrent_advances,
    mfa_recovery_codes,
    mfa_delete,
    withdrawal_address_book,
    operators_round_trip,
    operator_enrolment_tokens,
    operator_credential_counter,
    operator_disable,
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
    assert!(meta.contains("root_key_version: 1"), "{meta}");
    assert!(!meta.contains("[3"), "{meta}");

    let mut handle = conformance::account_key("dbg");
    handle.secret = Some(Zeroizing::new(vec![0xde; 32]));
    store.put_account_key(&handle).await.unwrap();
    let live = format!("{:?}", store.get_account_key("dbg").await.unwrap());
    assert!(live.contains("secret: <32 bytes>"), "{live}");
    assert!(!live.contains("222") && !live.contains("0xde"), "{live}");
    store.shred_account_key("dbg", 9).await.unwrap();
    let shredded = format!("{:?}", store.get_account_key("dbg").await.unwrap());
    assert!(shredded.contains("secret: shredded"), "{shredded}");
    assert!(shredded.contains("shredded_at_ms: Some(9)"), "{shredded}");

    store
        .rotate_api_key_secret("kid-dbg", &[0xde; 5], 1)
        .await
        .unwrap();
    let page = store.scan_ciphertexts(None, 10).await.unwrap();
    let shown = format!("{page:?}");
    assert!(
        shown.contains(
            "ApiKeySecret { key_id: \"kid-dbg\" }, account_id: \"dbg\", ciphertext: <5 bytes>"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("ApiKeyPreviousSecret { key_id: \"kid-dbg\" }, account_id: \"dbg\", ciphertext: <4 bytes>"),
        "{shown}"
    );
    assert!(!shown.contains("222"), "{shown}");
    let swap = CipherSwap {
        location: key_ref("kid-dbg"),
        expected: vec![0xde, 0xad, 0xbe, 0xef],
        new: vec![0xde; 7],
    };
    let shown = format!("{swap:?}");
    assert!(
        shown.contains("expected: <4 bytes>, new: <7 bytes>"),
        "{shown}"
    );
    assert!(!shown.contains("222"), "{shown}");
}

#[test]
fn cipher_ref_names_and_order() {
    let key = key_ref("kid-1");
    let prev = prev_ref("kid-1");
    let seed = mfa_ref("acc-1", "totp");
    assert_eq!(
        (key.record_type(), key.field(), key.record_id()),
        ("api_key", "secret", "kid-1".to_owned())
    );
    assert_eq!(
        (prev.record_type(), prev.field(), prev.record_id()),
        ("api_key", "previous_secret", "kid-1".to_owned())
    );
    assert_eq!(
        (seed.record_type(), seed.field(), seed.record_id()),
        ("mfa_enrolment", "seed", "acc-1/totp".to_owned())
    );
    let mut refs = vec![
        mfa_ref("b", "a"),
        prev_ref("a"),
        mfa_ref("a", "z"),
        key_ref("\u{10ffff}"),
        prev_ref("\u{10ffff}"),
        key_ref("B"),
        prev_ref("B"),
        key_ref("a"),
    ];
    refs.sort();
    assert_eq!(
        refs,
        vec![
            key_ref("B"),
            key_ref("a"),
            key_ref("\u{10ffff}"),
            prev_ref("B"),
            prev_ref("a"),
            prev_ref("\u{10ffff}"),
            mfa_ref("a", "z"),
            mfa_ref("b", "a"),
        ]
    );
}

/// Whether any 8-byte run of `secret` occurs in the file at `path` (a
/// missing file contains nothing). Runs, not the whole secret: SQLite may
/// overwrite part of a freed cell and leave the rest.
fn file_contains(path: &std::path::Path, secret: &[u8]) -> bool {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    secret
        .windows(8)
        .any(|run| bytes.windows(run.len()).any(|w| w == run))
}

#[tokio::test]
async fn shredded_secret_bytes_leave_the_database_file_and_wal() {
    let (_dir, store) = fresh().await;
    let db = store.path().unwrap().to_path_buf();
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    // 32 distinctive bytes (an LCG), unlikely to occur by chance.
    let mut x: u32 = 0x1234_5678;
    let secret: Vec<u8> = (0..32)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            x.to_be_bytes()[0]
        })
        .collect();
    for id in ["shred-me", "keep-me"] {
        store
            .create_account(&conformance::account(id, None))
            .await
            .unwrap();
    }
    store
        .put_account_key(&AccountKey {
            secret: Some(Zeroizing::new(secret.clone())),
            ..conformance::account_key("shred-me")
        })
        .await
        .unwrap();
    store
        .put_account_key(&conformance::account_key("keep-me"))
        .await
        .unwrap();
    assert!(
        file_contains(&db, &secret) || file_contains(&wal, &secret),
        "secret written before shredding"
    );
    store.checkpoint().await.unwrap();
    assert!(file_contains(&db, &secret), "secret checkpointed into file");
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);

    store.shred_account_key("shred-me", 1).await.unwrap();
    store.checkpoint().await.unwrap();
    assert!(!file_contains(&db, &secret), "secret left in database file");
    assert!(!file_contains(&wal, &secret), "secret left in WAL");
    assert_eq!(
        store.get_account_key("keep-me").await.unwrap(),
        conformance::account_key("keep-me")
    );
    store.close().await;
    assert!(!file_contains(&db, &secret), "secret back after close");
}

/// Seeds 100k API keys in batches, walks them in pages and rewraps them
/// all with compare-and-swaps, on a database file.
#[tokio::test]
async fn rewrap_walk_over_100k_keys() {
    const KEYS: usize = 100_000;
    let (_dir, store) = fresh().await;
    let started = Instant::now();
    for a in 0..10 {
        store
            .create_account(&conformance::account(&format!("bulk-{a}"), None))
            .await
            .unwrap();
    }
    let ciphertext = |i: usize, generation: u8| {
        let mut c = vec![generation; 40];
        c[..8].copy_from_slice(&(i as u64).to_be_bytes());
        c
    };
    let all_keys: Vec<usize> = (0..KEYS).collect();
    for chunk in all_keys.chunks(5_000) {
        let keys: Vec<_> = chunk
            .iter()
            .map(|&i| rampart_store::ApiKey {
                secret_ciphertext: Some(ciphertext(i, 1)),
                ..conformance::api_key(&format!("bulk-{i:06}"), &format!("bulk-{}", i % 10))
            })
            .collect();
        store.create_api_keys(&keys).await.unwrap();
    }
    let seeded = started.elapsed();
    assert_eq!(store.count_ciphertexts().await.unwrap(), KEYS as u64);

    let mut after = None;
    let mut pages = 0;
    let mut seen = 0;
    let mut applied = 0;
    loop {
        let page: Vec<StoredCiphertext> =
            store.scan_ciphertexts(after.as_ref(), 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.location.clone());
        pages += 1;
        for entry in &page {
            assert_eq!(entry.location, key_ref(&format!("bulk-{seen:06}")));
            assert_eq!(entry.account_id, format!("bulk-{}", seen % 10));
            assert_eq!(entry.ciphertext, ciphertext(seen, 1));
            seen += 1;
        }
        let swaps: Vec<CipherSwap> = page
            .into_iter()
            .map(|c| {
                let mut new = c.ciphertext.clone();
                new[8..].fill(2);
                CipherSwap {
                    location: c.location,
                    expected: c.ciphertext,
                    new,
                }
            })
            .collect();
        for batch in swaps.chunks(500) {
            let done = store.swap_ciphertexts(batch).await.unwrap();
            assert_eq!(done.len(), batch.len());
            applied += done.iter().filter(|&&a| a).count();
        }
    }
    let walked = started.elapsed() - seeded;
    assert_eq!((pages, seen, applied), (100, KEYS, KEYS));
    assert_eq!(store.count_ciphertexts().await.unwrap(), KEYS as u64);
    let again = store.scan_ciphertexts(None, 3).await.unwrap();
    assert_eq!(again.len(), 3);
    for (i, entry) in again.iter().enumerate() {
        assert_eq!(entry.ciphertext, ciphertext(i, 2));
    }
    let last = store
        .get_api_key(&format!("bulk-{:06}", KEYS - 1))
        .await
        .unwrap();
    assert_eq!(last.secret_ciphertext, Some(ciphertext(KEYS - 1, 2)));
    eprintln!("seeded {KEYS} keys in {seeded:?}, scanned and rewrapped in {walked:?}");
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

/// Tasks on several threads race to advance one key's counter on a
/// database file (one pool connection each): of identical nonces exactly
/// one is accepted per round, and the stored nonce only ever rises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_nonce_advances_on_one_file_accept_exactly_one() {
    const TASKS: usize = 16;
    const ROUNDS: u64 = 20;
    let (_dir, store) = fresh().await;
    store
        .create_account(&conformance::account("nonce", None))
        .await
        .unwrap();
    store
        .create_api_key(&conformance::api_key("kid-nonce", "nonce"))
        .await
        .unwrap();
    for round in 1..=ROUNDS {
        let nonce = 1_700_000_000_000 + round;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.advance_key_counter("kid-nonce", nonce).await.unwrap()
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            if task.await.unwrap() {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 1, "round {round}");
        assert_eq!(
            store.get_key_counter("kid-nonce").await.unwrap(),
            Some(nonce)
        );
        assert!(!store.advance_key_counter("kid-nonce", nonce).await.unwrap());
    }

    // Every task sends its own increasing nonces; interleaved with the
    // others, some are stale, but an accepted nonce always exceeds every
    // nonce accepted before it.
    let base = 1_800_000_000_000_u64;
    let tasks: Vec<_> = (0..TASKS as u64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut won = Vec::new();
                for i in 0..25 {
                    let nonce = base + i * TASKS as u64 + t;
                    if store.advance_key_counter("kid-nonce", nonce).await.unwrap() {
                        won.push(nonce);
                    }
                }
                won
            })
        })
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        won.extend(task.await.unwrap());
    }
    let largest = base + 24 * TASKS as u64 + (TASKS as u64 - 1);
    assert!(won.contains(&largest));
    let mut sorted = won.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), won.len(), "a nonce accepted twice");
    assert_eq!(
        store.get_key_counter("kid-nonce").await.unwrap(),
        Some(largest)
    );
}

/// A rotation racing readers and other rotations of the same key on a
/// database file: every rotation lands whole, so the final previous secret
/// is the current secret the last rotation replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_on_one_file_chain() {
    const TASKS: u8 = 8;
    let (_dir, store) = fresh().await;
    store
        .create_account(&conformance::account("rotrace", None))
        .await
        .unwrap();
    store
        .create_api_key(&rampart_store::ApiKey {
            secret_ciphertext: Some(vec![0]),
            ..conformance::api_key("kid-rotrace", "rotrace")
        })
        .await
        .unwrap();
    let tasks: Vec<_> = (1..=TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_api_key_secret("kid-rotrace", &[t], i64::from(t))
                    .await
                    .unwrap();
                store.get_previous_secret("kid-rotrace").await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_some());
    }
    // Each secret was current exactly once and is either current now or
    // was moved to previous (and possibly replaced) by the next rotation.
    let current = store
        .get_api_key("kid-rotrace")
        .await
        .unwrap()
        .secret_ciphertext
        .unwrap();
    let (previous, valid_until) = store
        .get_previous_secret("kid-rotrace")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(previous.len(), 1);
    assert_ne!(current, previous);
    assert_eq!(
        valid_until,
        i64::from(current[0]),
        "validity of the last rotation"
    );
    assert_eq!(store.count_ciphertexts().await.unwrap(), 2);
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

/// An online rewrap (scan, then compare-and-swap) racing a writer on the
/// same file: the walk visits every key once and never clobbers a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rewrap_never_clobbers_writes() {
    const KEYS: usize = 2_000;
    let (_dir, store) = fresh().await;
    store
        .create_account(&conformance::account("race", None))
        .await
        .unwrap();
    let original = |i: usize| format!("orig-{i}").into_bytes();
    let written = |i: usize| format!("written-{i}").into_bytes();
    let rewrap = |c: &[u8]| [c, b"+rewrapped"].concat();
    let keys: Vec<_> = (0..KEYS)
        .map(|i| rampart_store::ApiKey {
            secret_ciphertext: Some(original(i)),
            ..conformance::api_key(&format!("race-{i:05}"), "race")
        })
        .collect();
    store.create_api_keys(&keys).await.unwrap();

    // The writer walks backwards over every 7th key while the rewrap walks
    // forwards, so they cross.
    let touched: Vec<usize> = (0..KEYS).rev().step_by(7).collect();
    let writer = {
        let store = store.clone();
        let touched = touched.clone();
        tokio::spawn(async move {
            for i in touched {
                store
                    .set_api_key_secret(&format!("race-{i:05}"), &written(i))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut after = None;
    let mut visited = 0;
    loop {
        let page = store.scan_ciphertexts(after.as_ref(), 50).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.location.clone());
        visited += page.len();
        let swaps: Vec<CipherSwap> = page
            .into_iter()
            .map(|c| CipherSwap {
                new: rewrap(&c.ciphertext),
                location: c.location,
                expected: c.ciphertext,
            })
            .collect();
        store.swap_ciphertexts(&swaps).await.unwrap();
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert_eq!(visited, KEYS);
    for i in 0..KEYS {
        let got = store
            .get_api_key(&format!("race-{i:05}"))
            .await
            .unwrap()
            .secret_ciphertext
            .unwrap();
        if touched.contains(&i) {
            assert!(
                got == written(i) || got == rewrap(&written(i)),
                "key {i}: write lost"
            );
        } else {
            assert_eq!(got, rewrap(&original(i)), "key {i}");
        }
    }
}

/// Two stores (two separate pools) on one database file, each with tasks
/// on several threads, race to use the same TOTP steps and the same
/// recovery codes: each step and each code is accepted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mfa_uses_across_pools_on_one_file_accept_exactly_one() {
    const TASKS_PER_STORE: usize = 8;
    const ROUNDS: u64 = 20;
    let (_dir, first) = fresh().await;
    let second = SqliteStore::open(first.path().unwrap()).await.unwrap();
    first
        .create_account(&conformance::account("mfa-race", None))
        .await
        .unwrap();
    let codes: Vec<String> = (1..=ROUNDS as u8).map(conformance::recovery_hash).collect();
    first
        .put_mfa(&MfaEnrolment {
            recovery_hashes: codes.clone(),
            ..conformance::mfa("mfa-race", "totp", vec![1; 20])
        })
        .await
        .unwrap();
    let stores = [first.clone(), second.clone()];
    for round in 1..=ROUNDS {
        let step = 56_666_000 + round;
        let code = codes[usize::try_from(round - 1).unwrap()].clone();
        let barrier = Arc::new(tokio::sync::Barrier::new(2 * TASKS_PER_STORE));
        let tasks: Vec<_> = stores
            .iter()
            .flat_map(|store| std::iter::repeat_n(store, TASKS_PER_STORE))
            .enumerate()
            .map(|(i, store)| {
                let store = store.clone();
                let barrier = barrier.clone();
                let code = code.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    if i % 2 == 0 {
                        (
                            store
                                .advance_mfa_step("mfa-race", "totp", step)
                                .await
                                .unwrap(),
                            false,
                        )
                    } else {
                        (
                            false,
                            store
                                .consume_recovery_code("mfa-race", "totp", &code)
                                .await
                                .unwrap(),
                        )
                    }
                })
            })
            .collect();
        let (mut steps, mut used) = (0, 0);
        for task in tasks {
            let (step_won, code_won) = task.await.unwrap();
            steps += usize::from(step_won);
            used += usize::from(code_won);
        }
        assert_eq!((steps, used), (1, 1), "round {round}");
        for store in &stores {
            assert!(!store
                .advance_mfa_step("mfa-race", "totp", step)
                .await
                .unwrap());
            assert!(!store
                .consume_recovery_code("mfa-race", "totp", &code)
                .await
                .unwrap());
        }
    }
    let enrolment = second.get_mfa("mfa-race", "totp").await.unwrap();
    assert_eq!(enrolment.last_used_step, Some(56_666_000 + ROUNDS));
    assert!(enrolment.recovery_hashes.is_empty());
}

#[tokio::test]
async fn mfa_debug_prints_counts_not_seeds_or_recovery_hashes() {
    let enrolment = MfaEnrolment {
        seed_ciphertext: vec![0xde; 21],
        recovery_hashes: vec![
            conformance::recovery_hash(0xab),
            conformance::recovery_hash(0xcd),
        ],
        last_used_step: Some(7),
        ..conformance::mfa("dbg", "totp", Vec::new())
    };
    let shown = format!("{enrolment:?}");
    assert!(shown.contains("seed_ciphertext: <21 bytes>"), "{shown}");
    assert!(shown.contains("recovery_hashes: <2 entries>"), "{shown}");
    assert!(shown.contains("last_used_step: Some(7)"), "{shown}");
    assert!(shown.contains("algorithm: \"SHA1\""), "{shown}");
    assert!(!shown.contains("abab"), "{shown}");
    assert!(!shown.contains("222") && !shown.contains("0xde"), "{shown}");

    let key = format!("{:?}", conformance::api_key("kid", "acc"));
    assert!(key.contains("read_only: true"), "{key}");
}
