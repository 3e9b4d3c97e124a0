#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! The log writer: appends, durability, group commit, back-pressure,
//! checkpoints, segment rolls, the spool and the lock.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rampart_audit::log::{AuditLog, LogConfig, LogError, CHECKPOINTS_FILE, LATEST_CHECKPOINT_FILE};
use rampart_audit::note::{open_checkpoint, CheckpointSigner, Ed25519Signer};
use rampart_audit::reader::LogReader;
use rampart_audit::spool::{self, Appended};
use rampart_audit::{leaf_hash, MerkleTree};

const ORIGIN: &str = "rampart.test/audit";

fn signer() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[7u8; 32]).unwrap())
}

fn cfg(dir: &std::path::Path) -> LogConfig {
    LogConfig::new(dir, ORIGIN)
}

fn entry(i: u64) -> Vec<u8> {
    format!(
        "{{\"n\":{i},\"pad\":\"{}\"}}",
        "x".repeat((i % 50) as usize)
    )
    .into_bytes()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn append_durable_close_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    assert_eq!(report.size, 0);
    assert!(log.is_accepting());
    for i in 0..100 {
        log.append(entry(i)).unwrap();
    }
    let idx = log.append_durable(entry(100)).wait().unwrap();
    assert_eq!(idx, 100);
    assert!(log.stats().durable_size >= 101);
    log.close().unwrap();
    log.close().unwrap(); // idempotent
    assert!(!log.is_accepting());
    assert!(matches!(log.append(entry(0)), Err(LogError::Closed)));
    assert!(matches!(
        log.append_durable(entry(0)).wait(),
        Err(LogError::Closed)
    ));

    // The final checkpoint covers everything and verifies.
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!((reader.first_index(), reader.len()), (0, 101));
    let latest = reader.latest_checkpoint().unwrap().unwrap();
    let mut tree = MerkleTree::new();
    for i in 0..101 {
        assert_eq!(reader.get(i).unwrap(), entry(i));
        tree.push(leaf_hash(&entry(i))).unwrap();
    }
    let vk = signer().verifier_key();
    let cp = open_checkpoint(&latest.note, &vk).unwrap();
    assert_eq!((cp.size, cp.root), (101, tree.root()));
    let on_disk = std::fs::read_to_string(dir.path().join(LATEST_CHECKPOINT_FILE)).unwrap();
    assert_eq!(on_disk, latest.note);
    let all: Vec<_> = reader.iter_from(0).map(|r| r.unwrap()).collect();
    assert_eq!(all.len(), 101);
    assert_eq!(all[57], (57, entry(57)));
    let tail: Vec<_> = reader.iter_from(99).map(|r| r.unwrap().0).collect();
    assert_eq!(tail, vec![99, 100]);

    // Reopen and continue.
    let (log, report) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    assert_eq!(report.size, 101);
    assert_eq!(report.truncated_bytes, 0);
    assert!(!report.tree_rebuilt, "{report:?}");
    assert_eq!(log.append_durable(entry(101)).wait().unwrap(), 101);
    drop(log); // the last handle closes
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.len(), 102);
    assert_eq!(
        reader.latest_checkpoint().unwrap().unwrap().checkpoint.size,
        102
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_can_be_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    let mut acks = Vec::new();
    for i in 0..10 {
        acks.push(log.append_durable(entry(i)));
    }
    for (i, ack) in acks.into_iter().enumerate() {
        assert_eq!(ack.await.unwrap(), i as u64);
    }
    assert_eq!(log.sync().await.unwrap(), 10);
    log.close().unwrap();
}

#[test]
fn group_commit_makes_plain_appends_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.group_commit = Duration::from_millis(5);
    let (log, _) = AuditLog::open(c, signer()).unwrap();
    for i in 0..1000 {
        log.append(entry(i)).unwrap();
    }
    // No durable append and no sync: the group commit alone fsyncs.
    wait_until("group commit", || log.stats().durable_size == 1000);
    let s = log.stats();
    assert_eq!((s.size, s.queue_len, s.rejected_full), (1000, 0, 0));
    // And a checkpoint follows within the interval.
    wait_until("checkpoint", || log.stats().last_checkpoint_size == 1000);
    log.close().unwrap();
}

/// A signer that blocks in `sign` until released: stalls the writer.
#[derive(Debug)]
struct StallingSigner {
    inner: Ed25519Signer,
    gate: Mutex<Option<mpsc::Receiver<()>>>,
    entered: Mutex<Option<mpsc::Sender<()>>>,
}

impl CheckpointSigner for StallingSigner {
    fn key_name(&self) -> &str {
        self.inner.key_name()
    }
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String> {
        if let Some(tx) = self.entered.lock().unwrap().take() {
            let _ = tx.send(());
        }
        if let Some(rx) = self.gate.lock().unwrap().take() {
            let _ = rx.recv();
        }
        self.inner.sign(msg)
    }
}

#[test]
fn queue_full_when_the_writer_is_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.queue_capacity = 4;
    let (log, _) = AuditLog::open(c, signer()).unwrap();
    log.append_durable(entry(0)).wait().unwrap();
    let stall = log.stall_writer();
    // The stall request may still sit in the queue: wait until the writer
    // has taken it.
    wait_until("writer stalled", || log.stats().queue_len == 0);
    let mut accepted = 0;
    let err = loop {
        match log.append(entry(1 + accepted)) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= 4, "the queue never filled");
    };
    assert!(matches!(err, LogError::QueueFull), "{err:?}");
    assert_eq!(accepted, 4);
    assert!(matches!(log.append(entry(99)), Err(LogError::QueueFull)));
    let s = log.stats();
    assert_eq!((s.queue_len, s.queue_capacity, s.rejected_full), (4, 4, 2));
    assert!(log.is_accepting());
    // A durable append waits for room instead of failing.
    let log2 = log.clone();
    let durable = std::thread::spawn(move || log2.append_durable(entry(5)).wait());
    std::thread::sleep(Duration::from_millis(50));
    assert!(!durable.is_finished());
    drop(stall);
    assert_eq!(durable.join().unwrap().unwrap(), 5);
    log.close().unwrap();
    assert_eq!(LogReader::open(dir.path()).unwrap().len(), 6);
}

#[test]
fn a_stalled_signer_does_not_stall_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (release, gate) = mpsc::channel();
    let (entered_tx, entered) = mpsc::channel();
    let signer = Arc::new(StallingSigner {
        inner: Ed25519Signer::from_seed(ORIGIN, &[7u8; 32]).unwrap(),
        gate: Mutex::new(Some(gate)),
        entered: Mutex::new(Some(entered_tx)),
    });
    let mut c = cfg(dir.path());
    c.queue_capacity = 16;
    c.checkpoint_every = 1;
    let (log, _) = AuditLog::open(c, signer).unwrap();
    log.append_durable(entry(0)).wait().unwrap();
    // The checkpoint of size 1 is being signed, and the signer hangs.
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    for i in 1..1000u64 {
        if i.is_multiple_of(100) {
            assert_eq!(log.append_durable(entry(i)).wait().unwrap(), i);
        } else {
            loop {
                match log.append(entry(i)) {
                    Ok(()) => break,
                    Err(LogError::QueueFull) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    log.sync().wait().unwrap();
    assert_eq!(log.stats().durable_size, 1000);
    assert_eq!(log.stats().last_checkpoint_size, 0);
    release.send(()).unwrap();
    wait_until("checkpoints catch up", || {
        log.stats().last_checkpoint_size == 1000
    });
    log.close().unwrap();
}

#[test]
fn segments_roll_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_max_bytes = 4096;
    let (log, _) = AuditLog::open(c.clone(), signer()).unwrap();
    for i in 0..2000 {
        drop(log.append_durable(entry(i)));
    }
    log.sync().wait().unwrap();
    log.close().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    let segs = reader.segments();
    assert!(segs.len() > 10, "{}", segs.len());
    for w in segs.windows(2) {
        assert_eq!(w[0].1, w[1].0);
    }
    assert_eq!(reader.len(), 2000);
    for i in (0..2000).step_by(37) {
        assert_eq!(reader.get(i).unwrap(), entry(i));
    }
    let v: Vec<_> = reader.iter_from(1234).map(|r| r.unwrap()).collect();
    assert_eq!(v.len(), 766);
    assert_eq!(v[0], (1234, entry(1234)));
    // The frontier before any index gives the right root.
    let mut tree = MerkleTree::new();
    for i in 0..1500 {
        tree.push(leaf_hash(&entry(i))).unwrap();
    }
    assert_eq!(reader.frontier_before(1500).unwrap().root(), tree.root());
    assert!(matches!(reader.get(2000), Err(LogError::OutOfRange { .. })));
    // Reopen after rolls.
    let (log, report) = AuditLog::open(c, signer()).unwrap();
    assert_eq!(report.size, 2000);
    assert_eq!(log.append_durable(entry(2000)).wait().unwrap(), 2000);
    log.close().unwrap();
}

#[test]
fn a_second_open_is_locked_and_append_or_spool_spools() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.checkpoint_interval = Duration::from_millis(20);
    let (log, _) = AuditLog::open(c.clone(), signer()).unwrap();
    assert!(matches!(
        AuditLog::open(c.clone(), signer()),
        Err(LogError::Locked(_))
    ));
    log.append_durable(entry(0)).wait().unwrap();
    let out = spool::append_or_spool(c.clone(), signer(), entry(1)).unwrap();
    let Appended::Spooled(path) = out else {
        panic!("expected spooled, got {out:?}");
    };
    assert!(path.exists());
    // The writer drains the spool at its next tick and removes the file
    // once the entry is durable.
    wait_until("spool drained", || !path.exists());
    wait_until("durable", || log.stats().durable_size == 2);
    log.close().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.get(1).unwrap(), entry(1));
    // With the lock free, append_or_spool appends directly.
    let out = spool::append_or_spool(c, signer(), entry(2)).unwrap();
    assert_eq!(out, Appended::Log(2));
}

#[test]
fn spool_files_left_before_open_are_drained_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    for i in 0..5 {
        spool::submit(dir.path(), &entry(i)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    // An oversized or unreadable spool file is set aside, not appended.
    std::fs::write(
        dir.path()
            .join("spool")
            .join("00000000000000000001-bad.entry"),
        vec![b'x'; 70 * 1024],
    )
    .unwrap();
    let (log, _) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    log.close().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.len(), 5);
    for i in 0..5 {
        assert_eq!(reader.get(i).unwrap(), entry(i));
    }
    assert!(dir
        .path()
        .join("spool/rejected/00000000000000000001-bad.entry")
        .exists());
    assert!(spool::pending(&dir.path().join("spool"), 100)
        .unwrap()
        .is_empty());
}

#[test]
fn rejects_bad_config_and_origin_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.queue_capacity = 0;
    c.segment_max_bytes = 10;
    let err = AuditLog::open(c, signer()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("queue_capacity") && msg.contains("segment_max_bytes"),
        "{msg}"
    );
    let (log, _) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    log.append_durable(entry(0)).wait().unwrap();
    log.close().unwrap();
    let other = LogConfig::new(dir.path(), "other.origin");
    assert!(matches!(
        AuditLog::open(other, signer()),
        Err(LogError::Config(_))
    ));
    // Too large an entry.
    let (log, _) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    assert!(matches!(
        log.append(vec![b'x'; 65 * 1024]),
        Err(LogError::TooLarge(_))
    ));
    log.close().unwrap();
    assert!(dir.path().join(CHECKPOINTS_FILE).exists());
}

#[test]
fn key_rotation_keeps_old_keys_in_audit_pub() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    log.append_durable(entry(0)).wait().unwrap();
    log.close().unwrap();
    let new = Arc::new(Ed25519Signer::from_seed(ORIGIN, &[8u8; 32]).unwrap());
    let (log, _) = AuditLog::open(cfg(dir.path()), new.clone()).unwrap();
    log.append_durable(entry(1)).wait().unwrap();
    log.close().unwrap();
    let keys = rampart_audit::log::read_public_keys(dir.path()).unwrap();
    assert_eq!(keys, vec![signer().verifier_key(), new.verifier_key()]);
}

/// A signer that fails its first calls.
#[derive(Debug)]
struct FlakySigner {
    inner: Ed25519Signer,
    failures: std::sync::atomic::AtomicU32,
}

impl CheckpointSigner for FlakySigner {
    fn key_name(&self) -> &str {
        self.inner.key_name()
    }
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String> {
        use std::sync::atomic::Ordering;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("the key service is unavailable".to_owned());
        }
        self.inner.sign(msg)
    }
}

#[test]
fn a_failing_signer_loses_nothing_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Arc::new(FlakySigner {
        inner: Ed25519Signer::from_seed(ORIGIN, &[7u8; 32]).unwrap(),
        failures: std::sync::atomic::AtomicU32::new(3),
    });
    let mut c = cfg(dir.path());
    c.checkpoint_interval = Duration::from_millis(20);
    let (log, _) = AuditLog::open(c, signer).unwrap();
    for i in 0..50 {
        assert_eq!(log.append_durable(entry(i)).wait().unwrap(), i);
    }
    wait_until("checkpoint after retries", || {
        log.stats().last_checkpoint_size == 50
    });
    log.close().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.len(), 50);
    assert_eq!(
        reader.latest_checkpoint().unwrap().unwrap().checkpoint.size,
        50
    );
}

#[test]
fn close_reports_a_final_signing_failure_but_keeps_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Arc::new(FlakySigner {
        inner: Ed25519Signer::from_seed(ORIGIN, &[7u8; 32]).unwrap(),
        failures: std::sync::atomic::AtomicU32::new(u32::MAX),
    });
    let mut c = cfg(dir.path());
    c.checkpoint_interval = Duration::from_secs(3600);
    let (log, _) = AuditLog::open(c, signer).unwrap();
    log.append_durable(entry(0)).wait().unwrap();
    assert!(log.close().is_err());
    assert!(log.close().is_err());
    // The entry is there; the next open (with a working key) signs it.
    let (log, report) = AuditLog::open(cfg(dir.path()), self::signer()).unwrap();
    assert_eq!(report.size, 1);
    log.close().unwrap();
    assert_eq!(
        LogReader::open(dir.path())
            .unwrap()
            .latest_checkpoint()
            .unwrap()
            .unwrap()
            .checkpoint
            .size,
        1
    );
}
