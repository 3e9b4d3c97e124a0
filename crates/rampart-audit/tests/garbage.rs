#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Parsers and verifiers never panic, whatever the bytes: notes, keys,
//! segment headers and files, checkpoint histories, bundles and proofs.

use std::sync::Arc;

use proptest::prelude::*;
use rampart_audit::log::{AuditLog, LogConfig, CHECKPOINTS_FILE};
use rampart_audit::note::{open_checkpoint, Checkpoint, Ed25519Signer, VerifierKey};
use rampart_audit::proof::{check_consistency, check_inclusion, ConsistencyProof, InclusionProof};
use rampart_audit::reader::LogReader;
use rampart_audit::segment::{encode_record, segment_file_name, SegmentHeader, MAGIC};
use rampart_audit::verify::{verify_bundle, verify_dir, VerifyOptions};

const ORIGIN: &str = "rampart.test/garbage";

fn key() -> VerifierKey {
    Ed25519Signer::from_seed(ORIGIN, &[1u8; 32])
        .unwrap()
        .verifier_key()
}

/// A valid segment header followed by `tail`.
fn segment_with(first: u64, tail: &[u8]) -> Vec<u8> {
    let frontier = vec![[7u8; 32]; first.count_ones() as usize];
    let mut b = SegmentHeader::new(first, frontier).unwrap().encode();
    b.extend_from_slice(tail);
    b
}

fn run_all_readers(dir: &std::path::Path) {
    let opts = VerifyOptions {
        public_key: Some(key()),
        ..VerifyOptions::default()
    };
    let _ = verify_dir(dir, &opts);
    if let Ok(r) = LogReader::open(dir) {
        for item in r.iter_from(0).take(100) {
            let _ = item;
        }
        let _ = r.get(0);
        let _ = r.get(r.len().saturating_sub(1));
        let _ = r.checkpoints();
        let _ = r.frontier_before(r.first_index());
    }
    let _ = rampart_audit::proof::inclusion(dir, 0);
    let _ = rampart_audit::proof::consistency(dir, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn notes_and_keys(s in ".{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = open_checkpoint(&s, &key());
        let _ = Checkpoint::parse_body(&s);
        let _ = VerifierKey::parse(&s);
        let lossy = String::from_utf8_lossy(&bytes);
        let _ = open_checkpoint(&lossy, &key());
        let note = format!("{ORIGIN}\n1\n{s}\n\n\u{2014} {ORIGIN} {s}\n");
        let _ = open_checkpoint(&note, &key());
    }

    #[test]
    fn segment_headers(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = SegmentHeader::decode(&bytes);
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&bytes);
        let _ = SegmentHeader::decode(&b);
    }

    #[test]
    fn segment_files(
        first in prop_oneof![Just(0u64), Just(5u64), Just(u64::MAX - 1), Just(u64::MAX), any::<u64>()],
        tail in proptest::collection::vec(any::<u8>(), 0..400),
        records in 0u64..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut body = Vec::new();
        for i in 0..records {
            encode_record(first.wrapping_add(i), b"{\"x\":1}", &mut body).unwrap();
        }
        body.extend_from_slice(&tail);
        std::fs::write(dir.path().join(segment_file_name(first)), segment_with(first, &body)).unwrap();
        let mut cps = Vec::new();
        encode_record(0, &tail, &mut cps).unwrap();
        std::fs::write(dir.path().join(CHECKPOINTS_FILE), &cps).unwrap();
        run_all_readers(dir.path());
        // Opening for writing either recovers or refuses, never panics.
        let signer = Arc::new(Ed25519Signer::from_seed(ORIGIN, &[1u8; 32]).unwrap());
        if let Ok((log, _)) = AuditLog::open(LogConfig::new(dir.path(), ORIGIN), signer) {
            let _ = log.append_durable(b"{}".to_vec()).wait();
            let _ = log.close();
        }
        run_all_readers(dir.path());
    }

    #[test]
    fn bundles(lines in proptest::collection::vec(".{0,120}", 0..6), first in any::<u64>()) {
        let dir = tempfile::tempdir().unwrap();
        let header = format!(
            "{{\"format\":\"rampart-audit-bundle/1\",\"origin\":\"{ORIGIN}\",\"verifier_key\":\"{}\",\"first_index\":{first},\"end_index\":{first},\"frontier\":[]}}",
            key()
        );
        let mut text = header + "\n";
        for (i, l) in lines.iter().enumerate() {
            if i % 2 == 0 {
                text.push_str(&format!("{{\"index\":{},\"entry_b64\":\"{}\"}}\n", first.wrapping_add(i as u64), l));
            } else {
                text.push_str(l);
                text.push('\n');
            }
        }
        let p = dir.path().join("b.jsonl");
        std::fs::write(&p, &text).unwrap();
        let _ = verify_bundle(&p, &VerifyOptions::default());
        std::fs::write(&p, lines.join("\n")).unwrap();
        let _ = verify_bundle(&p, &VerifyOptions::default());
    }

    #[test]
    fn proofs(index in any::<u64>(), size in any::<u64>(), h in ".{0,50}", proof in proptest::collection::vec(".{0,50}", 0..70)) {
        let p = InclusionProof {
            origin: ORIGIN.to_owned(),
            index,
            tree_size: size,
            leaf_hash: h.clone(),
            root_hash: h.clone(),
            proof: proof.clone(),
            checkpoint: h.clone(),
            entry: h.clone(),
        };
        let _ = check_inclusion(&p, &key());
        let c = ConsistencyProof {
            origin: ORIGIN.to_owned(),
            old_size: index,
            new_size: size,
            old_root: h.clone(),
            new_root: h.clone(),
            proof,
            checkpoint: h,
            old_checkpoint: None,
        };
        let _ = check_consistency(&c, &key());
    }
}

/// Fuzzer finding (audit_segment): a log whose size reaches `u64::MAX`
/// (first index near 2^64, no checkpoint) was reported as signed up to its
/// end, because the checker used `u64::MAX` as "no further checkpoint".
#[test]
fn a_log_ending_at_u64_max_is_not_reported_signed_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let first = u64::MAX - 3;
    let mut tail = Vec::new();
    for (i, index) in (first..u64::MAX).enumerate() {
        encode_record(index, format!("{{\"i\":{i}}}").as_bytes(), &mut tail).unwrap();
    }
    std::fs::write(
        dir.path().join(segment_file_name(first)),
        segment_with(first, &tail),
    )
    .unwrap();
    let opts = VerifyOptions {
        public_key: Some(key()),
        ..VerifyOptions::default()
    };
    let report = verify_dir(dir.path(), &opts).unwrap();
    assert_eq!(report.size, u64::MAX);
    assert_eq!(report.checkpoints_checked, 0);
    assert_eq!(report.signed_size, first, "{report:?}");
}
