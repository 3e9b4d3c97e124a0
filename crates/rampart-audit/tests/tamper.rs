#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Tampering with a log on disk: every change is caught by `verify_dir`,
//! which names the index (or, for an entry rewritten with a valid CRC,
//! the checkpoint range and the suspect entry).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rampart_audit::event::{Actor, AuditEvent, Decision};
use rampart_audit::log::{AuditLog, LogConfig, CHECKPOINTS_FILE};
use rampart_audit::note::{sign_checkpoint, Ed25519Signer};
use rampart_audit::reader::LogReader;
use rampart_audit::segment::{encode_record, list_segments, SegmentHeader, SegmentScanner};
use rampart_audit::verify::{verify_dir, FailureKind, VerifyFailure, VerifyOptions};
use rampart_audit::{ClockSync, Timestamp};

const ORIGIN: &str = "rampart.test/tamper";
const N: u64 = 3000;

fn signer() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[5u8; 32]).unwrap())
}

fn event(i: u64) -> Vec<u8> {
    let now = Timestamp {
        micros: 1_700_000_000_000_000 + i as i64 * 1000,
        sync: ClockSync::Synced,
    };
    let mut ev = AuditEvent::new(
        now,
        "authz.decision",
        Actor::key(format!("key-{}", i % 17)),
        "order.create",
        "/api/v3/order",
        if i.is_multiple_of(3) {
            Decision::Deny
        } else {
            Decision::Allow
        },
    )
    .account(format!("acct-{}", i % 5))
    .source_ip("192.0.2.7".parse().unwrap())
    .reason("AUTHZ_SCOPE")
    .request_id(format!("req-{i:08}"))
    .plain("scope", "trade");
    ev.id = format!("00000000-0000-4000-8000-{i:012}");
    ev.to_entry().unwrap()
}

/// The pristine log, built once: several segments and checkpoints.
fn pristine() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = LogConfig::new(dir.path(), ORIGIN);
        cfg.segment_max_bytes = 256 * 1024;
        cfg.checkpoint_every = 500;
        let (log, _) = AuditLog::open(cfg, signer()).unwrap();
        for i in 0..N {
            log.append(event(i)).unwrap();
            if i % 250 == 249 {
                log.sync().wait().unwrap();
            }
        }
        log.close().unwrap();
        let report = verify_dir(dir.path(), &opts()).unwrap();
        assert_eq!(report.size, N);
        assert!(report.checkpoints_checked >= 5, "{report:?}");
        assert!(report.segments >= 3, "{report:?}");
        dir
    })
    .path()
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        public_key: Some(signer().verifier_key()),
        ..VerifyOptions::default()
    }
}

fn copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for item in std::fs::read_dir(pristine()).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_file() {
            std::fs::copy(item.path(), dir.path().join(item.file_name())).unwrap();
        }
    }
    dir
}

struct Rec {
    path: PathBuf,
    offset: usize,
    len: usize,
}

fn find(dir: &Path, index: u64) -> Rec {
    for seg in list_segments(dir).unwrap() {
        let mut s = SegmentScanner::open(&seg.path, u64::MAX).unwrap();
        while let Some(r) = s.next_record().unwrap() {
            if r.index == index {
                return Rec {
                    path: seg.path.clone(),
                    offset: r.offset as usize,
                    len: 16 + r.entry.len(),
                };
            }
        }
    }
    panic!("index {index} not found");
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

fn fail(dir: &Path) -> VerifyFailure {
    match verify_dir(dir, &opts()) {
        Ok(r) => panic!("verify passed: {r:?}"),
        Err(f) => f,
    }
}

fn checkpoint_sizes() -> Vec<u64> {
    LogReader::open(pristine())
        .unwrap()
        .checkpoints()
        .unwrap()
        .iter()
        .map(|c| c.checkpoint.size)
        .collect()
}

/// The checkpoint range (previous size, size) holding `index`.
fn range_of(index: u64) -> (u64, u64) {
    let sizes = checkpoint_sizes();
    let hi = *sizes.iter().find(|s| **s > index).unwrap();
    let lo = sizes
        .iter()
        .rev()
        .find(|s| **s <= index)
        .copied()
        .unwrap_or(0);
    (lo, hi)
}

const FIELDS: [&str; 14] = [
    "v",
    "id",
    "time_us",
    "clock",
    "type",
    "actor",
    "account",
    "source_ip",
    "action",
    "resource",
    "decision",
    "reason",
    "request_id",
    "payload",
];

/// Offset, within the entry, of a byte of the value of `field`.
fn value_byte(entry: &[u8], field: &str) -> usize {
    let key = format!("\"{field}\":");
    let text = std::str::from_utf8(entry).unwrap();
    let at = text
        .find(&key)
        .unwrap_or_else(|| panic!("{field} not in {text}"))
        + key.len();
    // Skip an opening quote or brace to land inside the value.
    let mut i = at;
    while matches!(entry[i], b'"' | b'{' | b'[') {
        i += 1;
        if entry[i] == b'"' && entry[i - 1] == b'{' {
            // `{"kind":…`: step into the nested key.
            continue;
        }
    }
    i
}

fn change(b: u8) -> u8 {
    if b.is_ascii_digit() {
        if b == b'9' {
            b'0'
        } else {
            b + 1
        }
    } else if b == b'z' {
        b'a'
    } else {
        b + 1
    }
}

#[test]
fn pristine_log_verifies() {
    let report = verify_dir(pristine(), &opts()).unwrap();
    assert_eq!(
        (report.first_index, report.size, report.signed_size),
        (0, N, N)
    );
    assert!(!report.keys_from_data);
    // Without an explicit key, audit.pub is used.
    let r2 = verify_dir(pristine(), &VerifyOptions::default()).unwrap();
    assert!(r2.keys_from_data);
}

#[test]
fn a_changed_byte_in_any_field_names_the_index() {
    let k = 1234;
    for field in FIELDS {
        let dir = copy();
        let rec = find(dir.path(), k);
        let entry = event(k);
        let at = rec.offset + 16 + value_byte(&entry, field);
        edit(&rec.path, |b| b[at] = change(b[at]));
        let f = fail(dir.path());
        assert_eq!(
            (f.kind, f.first_bad_index),
            (FailureKind::AlteredEntry, Some(k)),
            "{field}: {f}"
        );
    }
}

#[test]
fn a_changed_field_with_a_recomputed_crc_is_caught_by_the_checkpoint() {
    let k = 1234;
    let (lo, hi) = range_of(k);
    for field in FIELDS {
        let dir = copy();
        let rec = find(dir.path(), k);
        let mut entry = event(k);
        let at = value_byte(&entry, field);
        entry[at] = change(entry[at]);
        let mut forged = Vec::new();
        encode_record(k, &entry, &mut forged).unwrap();
        edit(&rec.path, |b| {
            b.splice(rec.offset..rec.offset + rec.len, forged.iter().copied());
        });
        let f = fail(dir.path());
        assert_eq!(f.kind, FailureKind::CheckpointMismatch, "{field}: {f}");
        assert_eq!(f.range, Some((lo, hi)), "{field}: {f}");
        assert_eq!(f.first_bad_index, Some(lo), "{field}: {f}");
        // tree.hashes still holds the original leaf: the entry is named.
        assert_eq!(f.suspect_index, Some(k), "{field}: {f}");
    }
}

#[test]
fn a_deleted_entry_is_named() {
    for k in [0, 1, 1234, N - 1] {
        let dir = copy();
        let rec = find(dir.path(), k);
        edit(&rec.path, |b| {
            b.drain(rec.offset..rec.offset + rec.len);
        });
        let f = fail(dir.path());
        let want = if k == N - 1 {
            FailureKind::Truncated
        } else {
            FailureKind::MissingEntry
        };
        assert_eq!((f.kind, f.first_bad_index), (want, Some(k)), "{k}: {f}");
    }
}

#[test]
fn swapped_entries_are_named() {
    for (a, b) in [(1234, 1235), (1234, 1240), (0, 1)] {
        let dir = copy();
        let ra = find(dir.path(), a);
        let rb = find(dir.path(), b);
        assert_eq!(ra.path, rb.path);
        edit(&ra.path, |bytes| {
            let rec_a = bytes[ra.offset..ra.offset + ra.len].to_vec();
            let rec_b = bytes[rb.offset..rb.offset + rb.len].to_vec();
            // Replace the later one first so the earlier offset holds.
            bytes.splice(rb.offset..rb.offset + rb.len, rec_a);
            bytes.splice(ra.offset..ra.offset + ra.len, rec_b);
        });
        let f = fail(dir.path());
        assert_eq!(
            (f.kind, f.first_bad_index),
            (FailureKind::Reordered, Some(a)),
            "{a},{b}: {f}"
        );
    }
}

#[test]
fn an_inserted_entry_is_named() {
    let k = 1234;
    let dir = copy();
    let rec = find(dir.path(), k + 1);
    // A forged record claiming index k+1, with a valid CRC, before the
    // real k+1.
    let mut forged = Vec::new();
    encode_record(k + 1, &event(99_999), &mut forged).unwrap();
    edit(&rec.path, |b| {
        b.splice(rec.offset..rec.offset, forged.iter().copied());
    });
    let f = fail(dir.path());
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::InsertedEntry, Some(k + 1)),
        "{f}"
    );

    // The same, renumbering every later record (all CRCs valid): only the
    // checkpoints can tell, and they do.
    let dir = copy();
    let segs = list_segments(dir.path()).unwrap();
    let last = segs.last().unwrap();
    let first_in_last = last.first_index;
    let (lo, hi) = range_of(first_in_last + 10);
    let mut records = Vec::new();
    let mut s = SegmentScanner::open(&last.path, u64::MAX).unwrap();
    let header_len = s.header_len() as usize;
    while let Some(r) = s.next_record().unwrap() {
        records.push((r.index, r.entry.to_vec()));
    }
    let mut out = std::fs::read(&last.path).unwrap()[..header_len].to_vec();
    let mut index = first_in_last;
    for (i, e) in records {
        if i == first_in_last + 10 {
            encode_record(index, &event(77_777), &mut out).unwrap();
            index += 1;
        }
        encode_record(index, &e, &mut out).unwrap();
        index += 1;
    }
    std::fs::write(&last.path, out).unwrap();
    let f = fail(dir.path());
    assert_eq!(f.kind, FailureKind::CheckpointMismatch, "{f}");
    assert_eq!(f.range, Some((lo, hi)), "{f}");
}

#[test]
fn a_truncated_tail_is_named() {
    // Cut at a record boundary: the log is shorter than its checkpoint.
    let dir = copy();
    let rec = find(dir.path(), N - 10);
    edit(&rec.path, |b| b.truncate(rec.offset));
    let f = fail(dir.path());
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::Truncated, Some(N - 10)),
        "{f}"
    );
    // Cut inside a record.
    let dir = copy();
    let rec = find(dir.path(), N - 3);
    edit(&rec.path, |b| b.truncate(rec.offset + 20));
    let f = fail(dir.path());
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::Truncated, Some(N - 3)),
        "{f}"
    );
    // A whole segment removed from the middle.
    let dir = copy();
    let segs = list_segments(dir.path()).unwrap();
    std::fs::remove_file(&segs[1].path).unwrap();
    let f = fail(dir.path());
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::MissingEntry, Some(segs[1].first_index)),
        "{f}"
    );
    // The last segment removed.
    let dir = copy();
    let segs = list_segments(dir.path()).unwrap();
    let last = segs.last().unwrap();
    std::fs::remove_file(&last.path).unwrap();
    let f = fail(dir.path());
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::Truncated, Some(last.first_index)),
        "{f}"
    );
}

/// Rewrites checkpoint record `seq` of checkpoints.log with `edit` applied
/// to its note (CRC recomputed).
fn rewrite_checkpoint(dir: &Path, seq: usize, f: impl FnOnce(&str) -> String) -> u64 {
    let path = dir.join(CHECKPOINTS_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    let mut f = Some(f);
    let mut size = 0;
    while pos < bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let json = &bytes[pos + 16..pos + 16 + len];
        let mut v: serde_json::Value = serde_json::from_slice(json).unwrap();
        if i == seq {
            let note = v["note"].as_str().unwrap().to_owned();
            v["note"] = f.take().unwrap()(&note).into();
            size = v["size"].as_u64().unwrap();
        }
        encode_record(i as u64, &serde_json::to_vec(&v).unwrap(), &mut out).unwrap();
        pos += 16 + len;
        i += 1;
    }
    std::fs::write(&path, out).unwrap();
    size
}

#[test]
fn a_replaced_checkpoint_signature_is_named() {
    // A flipped signature byte.
    let dir = copy();
    let size = rewrite_checkpoint(dir.path(), 2, |note| {
        let (text, sig) = note.rsplit_once(' ').unwrap();
        let mut sig = sig.to_owned();
        let c = sig.remove(10);
        sig.insert(10, if c == 'A' { 'B' } else { 'A' });
        format!("{text} {sig}")
    });
    let f = fail(dir.path());
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::BadCheckpointSignature, Some(size)),
        "{f}"
    );
    // A valid signature by another key of the same name.
    let dir = copy();
    let other = Ed25519Signer::from_seed(ORIGIN, &[6u8; 32]).unwrap();
    let size = rewrite_checkpoint(dir.path(), 3, |note| {
        let cp = rampart_audit::note::parse_checkpoint_unverified(note).unwrap();
        sign_checkpoint(&cp, &other).unwrap()
    });
    let f = fail(dir.path());
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::BadCheckpointSignature, Some(size)),
        "{f}"
    );
    // A correctly signed checkpoint of another history (a fork) is a
    // mismatch, found at its size.
    let dir = copy();
    let sizes = checkpoint_sizes();
    let size = rewrite_checkpoint(dir.path(), 1, |note| {
        let mut cp = rampart_audit::note::parse_checkpoint_unverified(note).unwrap();
        cp.root[0] ^= 1;
        sign_checkpoint(&cp, signer().as_ref()).unwrap()
    });
    let f = fail(dir.path());
    assert_eq!(f.kind, FailureKind::CheckpointMismatch, "{f}");
    assert_eq!(f.range, Some((sizes[0], size)), "{f}");
}

#[test]
fn a_forged_segment_header_is_named() {
    let dir = copy();
    let segs = list_segments(dir.path()).unwrap();
    let seg = &segs[1];
    let s = SegmentScanner::open(&seg.path, u64::MAX).unwrap();
    let mut header = s.header().clone();
    let len = s.header_len() as usize;
    drop(s);
    header.frontier[0][0] ^= 1;
    let forged = SegmentHeader::new(header.first_index, header.frontier)
        .unwrap()
        .encode();
    edit(&seg.path, |b| {
        b.splice(0..len, forged);
    });
    let f = fail(dir.path());
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::BadSegmentHeader, Some(seg.first_index)),
        "{f}"
    );
    // A header byte flipped without fixing its CRC.
    let dir = copy();
    let seg = &list_segments(dir.path()).unwrap()[2];
    edit(&seg.path, |b| b[14] ^= 1);
    let f = fail(dir.path());
    assert_eq!(
        (f.kind, f.first_bad_index),
        (FailureKind::BadSegmentHeader, Some(seg.first_index)),
        "{f}"
    );
}

#[test]
fn any_flipped_byte_of_a_record_fails_verification() {
    let k = 2500;
    let rec = find(pristine(), k);
    let dir = copy();
    let path = dir.path().join(rec.path.file_name().unwrap());
    let original = std::fs::read(&path).unwrap();
    for i in (0..rec.len).step_by(7) {
        let mut b = original.clone();
        b[rec.offset + i] ^= 0x20;
        std::fs::write(&path, &b).unwrap();
        let f = fail(dir.path());
        assert!(f.first_bad_index.is_some_and(|x| x <= k), "byte {i}: {f}");
    }
}
