#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Retention and bundles: old segments are archived as bundles and
//! removed; the log still verifies and proves from its new start, the
//! archives verify on their own, and tampered bundles do not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rampart_audit::bundle::export_bundle;
use rampart_audit::event::{Actor, AuditEvent, Decision};
use rampart_audit::log::{AuditLog, LogConfig, LogError};
use rampart_audit::note::Ed25519Signer;
use rampart_audit::proof::{check_consistency, check_inclusion, Prover};
use rampart_audit::reader::LogReader;
use rampart_audit::retention::{entry_time_us, prune};
use rampart_audit::tree::TREE_FILE;
use rampart_audit::verify::{verify_bundle, verify_dir, FailureKind, VerifyOptions};
use rampart_audit::{ClockSync, Timestamp};

const ORIGIN: &str = "rampart.test/retention";
const T0: i64 = 1_600_000_000_000_000;
const SECOND: i64 = 1_000_000;

fn signer() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[11u8; 32]).unwrap())
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        public_key: Some(signer().verifier_key()),
        ..VerifyOptions::default()
    }
}

fn event(i: u64) -> Vec<u8> {
    let ts = Timestamp {
        micros: T0 + i as i64 * SECOND,
        sync: ClockSync::Synced,
    };
    let mut ev = AuditEvent::new(
        ts,
        "auth.success",
        Actor::key("k1"),
        "order.create",
        "/api/v3/order",
        Decision::Allow,
    )
    .request_id(format!("req-{i}"));
    ev.id = format!("00000000-0000-4000-8000-{i:012}");
    ev.to_entry().unwrap()
}

fn cfg(dir: &std::path::Path) -> LogConfig {
    let mut c = LogConfig::new(dir, ORIGIN);
    c.segment_max_bytes = 16 * 1024;
    c.checkpoint_every = 100;
    c
}

fn build(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    for i in 0..n {
        log.append(event(i)).unwrap();
        if i % 50 == 49 {
            log.sync().wait().unwrap();
        }
    }
    log.close().unwrap();
    dir
}

#[test]
fn prune_archives_old_segments_and_the_log_still_verifies() {
    let n = 2000;
    let dir = build(n);
    let archive = tempfile::tempdir().unwrap();
    let before = verify_dir(dir.path(), &opts()).unwrap();
    let old_checkpoint = LogReader::open(dir.path()).unwrap().checkpoints().unwrap()[2].clone();
    // Keep the last ~800 seconds: entries 1200.. are within retention.
    let now = T0 + 2000 * SECOND;
    let report = prune(dir.path(), Duration::from_secs(800), archive.path(), now).unwrap();
    assert!(report.pruned.len() >= 3, "{report:?}");
    assert_eq!(report.pruned[0].first_index, 0);
    for w in report.pruned.windows(2) {
        assert_eq!(w[0].end_index, w[1].first_index);
    }
    let first = report.first_index;
    assert!(first > 0 && first <= 1200, "{report:?}");
    // The segment holding the cut-off was kept.
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.first_index(), first);
    assert_eq!(reader.len(), n);
    assert!(
        entry_time_us(&reader.get(reader.segments()[0].1 - 1).unwrap()).unwrap()
            >= now - 800 * SECOND
    );
    assert!(matches!(reader.get(0), Err(LogError::OutOfRange { .. })));
    assert_eq!(reader.get(first).unwrap(), event(first));

    // The log verifies from its new start, with the same root.
    let after = verify_dir(dir.path(), &opts()).unwrap();
    assert_eq!(
        (after.first_index, after.size, &after.root),
        (first, n, &before.root)
    );
    assert!(after.checkpoints_skipped > 0);
    // A trusted checkpoint older than the retained entries cannot be
    // checked against the directory, only against the archive.
    let f = verify_dir(
        dir.path(),
        &VerifyOptions {
            from_checkpoint: Some(old_checkpoint.note.clone()),
            ..opts()
        },
    )
    .unwrap_err();
    assert_eq!(f.kind, FailureKind::Unverifiable);

    // Every archive verifies alone, all its entries covered by a
    // signature (a consistency proof to a later checkpoint).
    for p in &report.pruned {
        let r = verify_bundle(&p.archive, &opts()).unwrap();
        assert_eq!(
            (r.first_index, r.size, r.signed_size),
            (p.first_index, p.end_index, p.end_index)
        );
        let r2 = verify_bundle(&p.archive, &VerifyOptions::default()).unwrap();
        assert!(r2.keys_from_data);
    }
    let first_archive = &report.pruned[0].archive;
    let r = verify_bundle(
        first_archive,
        &VerifyOptions {
            from_checkpoint: Some(old_checkpoint.note.clone()),
            ..opts()
        },
    );
    // Checkpoint #2 is at a size of a few hundred: inside the first
    // archives or not, it is checked or refused, never ignored.
    match r {
        Ok(r) => assert_eq!(r.from_checkpoint_size, Some(old_checkpoint.checkpoint.size)),
        Err(f) => assert_eq!(f.kind, FailureKind::Unverifiable),
    }

    // Proofs for retained entries still work (tree.hashes is kept).
    let prover = Prover::open(dir.path()).unwrap();
    let vk = signer().verifier_key();
    check_inclusion(&prover.inclusion(first + 5).unwrap(), &vk).unwrap();
    check_consistency(&prover.consistency(first + 1).unwrap(), &vk).unwrap();
    check_consistency(&prover.consistency(3).unwrap(), &vk).unwrap();

    // Reopen, append, close: still verifies. Then lose tree.hashes: it is
    // rebuilt from the first retained segment.
    let (log, open) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    assert_eq!(open.size, n);
    log.append_durable(event(n)).wait().unwrap();
    log.close().unwrap();
    std::fs::remove_file(dir.path().join(TREE_FILE)).unwrap();
    let (log, open) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    assert!(open.tree_rebuilt);
    log.append_durable(event(n + 1)).wait().unwrap();
    log.close().unwrap();
    let v = verify_dir(dir.path(), &opts()).unwrap();
    assert_eq!(
        (v.first_index, v.size, v.signed_size),
        (first, n + 2, n + 2)
    );
    let prover = Prover::open(dir.path()).unwrap();
    check_inclusion(&prover.inclusion(n + 1).unwrap(), &vk).unwrap();
    check_inclusion(&prover.inclusion(first).unwrap(), &vk).unwrap();

    // Pruning again with nothing old enough prunes nothing.
    let again = prune(dir.path(), Duration::from_secs(800), archive.path(), now).unwrap();
    assert!(again.pruned.is_empty(), "{again:?}");
}

#[test]
fn bundles_round_trip_and_tampering_is_caught() {
    let dir = build(700);
    let out = tempfile::tempdir().unwrap();
    let all = out.path().join("all.jsonl");
    let b = export_bundle(dir.path(), &all, None).unwrap();
    assert_eq!((b.first_index, b.end_index), (0, 700));
    let r = verify_bundle(&all, &opts()).unwrap();
    assert_eq!((r.size, r.signed_size), (700, 700));
    // Entries are embedded verbatim as JSON.
    let text = std::fs::read_to_string(&all).unwrap();
    let second = text.lines().nth(1).unwrap();
    assert_eq!(
        second,
        format!(
            "{{\"index\":0,\"entry\":{}}}",
            String::from_utf8(event(0)).unwrap()
        )
    );
    // A middle range, with progress reports.
    let mid = out.path().join("mid.jsonl");
    export_bundle(dir.path(), &mid, Some((123, 456))).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let c2 = calls.clone();
    let r = verify_bundle(
        &mid,
        &VerifyOptions {
            progress: Some(Box::new(move |_, _| {
                c2.fetch_add(1, Ordering::Relaxed);
            })),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!((r.first_index, r.size, r.signed_size), (123, 456, 456));
    assert!(calls.load(Ordering::Relaxed) > 0);
    // Non-JSON entries go as base64.
    let raw = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(cfg(raw.path()), signer()).unwrap();
    for e in [
        &b"not json"[..],
        b"{\"a\":1}\n",
        b" {}",
        b"null",
        b"\xff\xfe",
        b"{\"ok\":true}",
    ] {
        log.append_durable(e.to_vec()).wait().unwrap();
    }
    log.close().unwrap();
    let rb = out.path().join("raw.jsonl");
    export_bundle(raw.path(), &rb, None).unwrap();
    let t = std::fs::read_to_string(&rb).unwrap();
    assert_eq!(t.matches("entry_b64").count(), 5, "{t}");
    verify_bundle(&rb, &opts()).unwrap();

    // Tampering with the bundle.
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let write = |name: &str, lines: &[String]| {
        let p = out.path().join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    };
    let mut t = lines.clone();
    t[301] = t[301].replace("req-300", "req-999");
    let f = verify_bundle(&write("altered.jsonl", &t), &opts()).unwrap_err();
    assert_eq!(f.kind, FailureKind::CheckpointMismatch, "{f}");
    let (lo, hi) = f.range.unwrap();
    assert!(lo <= 300 && 300 < hi, "{f}");
    let mut t = lines.clone();
    t.remove(301);
    let f = verify_bundle(&write("deleted.jsonl", &t), &opts()).unwrap_err();
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::MissingEntry, Some(300)),
        "{f}"
    );
    let mut t = lines.clone();
    t.swap(301, 302);
    let f = verify_bundle(&write("swapped.jsonl", &t), &opts()).unwrap_err();
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::Reordered, Some(300)),
        "{f}"
    );
    let mut t = lines.clone();
    t.truncate(650);
    let f = verify_bundle(&write("truncated.jsonl", &t), &opts()).unwrap_err();
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::Truncated, Some(649)),
        "{f}"
    );
    let mut t = lines.clone();
    let cp_line = t
        .iter()
        .position(|l| l.starts_with("{\"checkpoint\""))
        .unwrap();
    t[cp_line] = t[cp_line].replacen(
        "\\u2014 rampart.test/retention ",
        "\\u2014 rampart.test/retention AAAA",
        1,
    );
    t[cp_line] = t[cp_line].replacen(
        "— rampart.test/retention ",
        "— rampart.test/retention AAAA",
        1,
    );
    let f = verify_bundle(&write("badsig.jsonl", &t), &opts()).unwrap_err();
    assert_eq!(f.kind, FailureKind::BadCheckpointSignature, "{f}");
    let mut t = lines;
    t[0] = t[0].replace("rampart-audit-bundle/1", "rampart-audit-bundle/9");
    assert_eq!(
        verify_bundle(&write("format.jsonl", &t), &opts())
            .unwrap_err()
            .kind,
        FailureKind::Malformed
    );
}
