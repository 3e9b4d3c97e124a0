//! A log directory made from the input, through the segment scanner, the
//! read-only `LogReader`, the prover and the offline verifier
//! (`verify::verify_dir`). None may panic. The first byte picks the mode:
//!
//! - raw (bit 7 clear): the bytes themselves are a segment file and
//!   `checkpoints.log` (or a second segment, `tree.hashes`, `audit.pub`
//!   with the trusted key): everything must fail cleanly or succeed, and
//!   a segment header or record that decodes re-encodes to the same bytes;
//! - built (bit 7 set): the input describes an honest log (first index
//!   and frontier, entries, segment cuts, checkpoints signed with a fixed
//!   key, optionally `tree.hashes`, `audit.pub` and a trusted earlier
//!   checkpoint), written with valid CRCs and then, if bit 6 is set,
//!   damaged by input-chosen operations an attacker without the key could
//!   do (alter, drop, duplicate, swap or renumber records with valid CRCs,
//!   bad CRCs, torn tails, flipped bytes, forged segment frontiers, dropped,
//!   reordered or foreign-key checkpoints).
//!
//! Undamaged, every reader must return exactly the honest entries and
//! roots, verification must succeed with the expected report, and every
//! proof must check. Damaged, verification may fail but must never vouch
//! for a wrong root at a signed size, and a proof that checks under the
//! key must carry the honest entry and root.
//!
//! Inputs above 64 KiB are skipped, so each run stays small.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rampart_audit::log::{CHECKPOINTS_FILE, PUBLIC_KEY_FILE};
use rampart_audit::merkle::{leaf_hash, Hash};
use rampart_audit::note::{encode_hash, sign_checkpoint, Checkpoint, Ed25519Signer, VerifierKey};
use rampart_audit::proof::{check_consistency, check_inclusion, Prover};
use rampart_audit::reader::LogReader;
use rampart_audit::segment::{
    encode_record, list_segments, read_segment_header, record_crc, segment_file_name,
    SegmentHeader, SegmentScanner, RECORD_HEADER_LEN,
};
use rampart_audit::tree::{slot_count, CompactRange, TREE_FILE};
use rampart_audit::verify::{verify_dir, VerifyOptions};
use serde_json::json;

const MAX_INPUT: usize = 64 * 1024;
const ORIGIN: &str = "fuzz.example/log";

fn signer() -> &'static Ed25519Signer {
    static S: OnceLock<Ed25519Signer> = OnceLock::new();
    S.get_or_init(|| Ed25519Signer::from_seed(ORIGIN, &[0x42; 32]).expect("fixed signer"))
}

/// A signer the verifier does not trust (an attacker's).
fn foreign_signer() -> &'static Ed25519Signer {
    static S: OnceLock<Ed25519Signer> = OnceLock::new();
    S.get_or_init(|| Ed25519Signer::from_seed(ORIGIN, &[0x66; 32]).expect("fixed signer"))
}

fn key() -> &'static VerifierKey {
    static K: OnceLock<VerifierKey> = OnceLock::new();
    K.get_or_init(|| signer().verifier_key())
}

/// Reads the input front to back; past its end every read is zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.u8()))
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    for (o, i) in a.iter_mut().zip(b) {
        *o = *i;
    }
    u64::from_be_bytes(a)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("writing a fuzz file");
}

fn options(use_key: bool, from: Option<String>) -> VerifyOptions {
    VerifyOptions {
        public_key: use_key.then(|| key().clone()),
        from_checkpoint: from,
        progress: Some(Box::new(|done, total| {
            let _ = (done, total);
        })),
    }
}

fn signed(size: u64, root: Hash, signer: &Ed25519Signer) -> String {
    let cp = Checkpoint {
        origin: ORIGIN.to_owned(),
        size,
        root,
    };
    sign_checkpoint(&cp, signer).expect("signing a checkpoint")
}

/// `checkpoints.log`: one record per `(time, note)`, numbered from 0.
fn checkpoint_log(notes: &[(i64, u64, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, (time_us, size, note)) in notes.iter().enumerate() {
        let rec = json!({ "time_us": time_us, "size": size, "note": note });
        let bytes = serde_json::to_vec(&rec).expect("checkpoint record");
        encode_record(seq as u64, &bytes, &mut out).expect("small record");
    }
    out
}

/// Scans every segment file directly; checks that what decodes
/// re-encodes to the same bytes.
fn scan_files(dir: &Path) {
    let Ok(segments) = list_segments(dir) else {
        return;
    };
    for seg in segments {
        let bytes = std::fs::read(&seg.path).unwrap_or_default();
        if let Ok((header, len)) = SegmentHeader::decode(&bytes) {
            assert_eq!(header.encoded_len(), len);
            assert_eq!(Some(header.encode().as_slice()), bytes.get(..len));
        }
        let _ = read_segment_header(&seg.path);
        if let Ok(mut scanner) = SegmentScanner::open(&seg.path, u64::MAX) {
            let header_len = scanner.header_len();
            assert_eq!(scanner.position(), header_len);
            let _ = scanner.header();
            let mut second = None;
            while let Ok(Some(r)) = scanner.next_record() {
                if r.crc_ok {
                    let mut enc = Vec::new();
                    encode_record(r.index, r.entry, &mut enc).expect("a read record re-encodes");
                    let at = usize::try_from(r.offset).expect("small file");
                    assert_eq!(Some(enc.as_slice()), bytes.get(at..at + enc.len()));
                }
                if r.offset > header_len && second.is_none() {
                    second = Some(r.offset);
                }
            }
            let _ = scanner.position();
            // Re-open at a record boundary, reading no further than the
            // file's end.
            if let Some(offset) = second {
                if let Ok(mut s) = SegmentScanner::open_at(&seg.path, offset, bytes.len() as u64) {
                    while let Ok(Some(_)) = s.next_record() {}
                    let _ = s.position();
                }
            }
        }
    }
}

/// The honest log a built input describes.
struct Honest {
    first: u64,
    end: u64,
    /// The compact range at every size `first..=end`.
    ranges: Vec<CompactRange>,
    /// The entries `first..end`.
    entries: Vec<Vec<u8>>,
    damaged: bool,
    /// Checkpoint sizes, as written (undamaged: ascending).
    checkpoints: Vec<u64>,
    /// The trusted earlier checkpoint's size.
    from: Option<u64>,
    keys_from_data: bool,
}

impl Honest {
    fn range(&self, size: u64) -> Option<&CompactRange> {
        let i = usize::try_from(size.checked_sub(self.first)?).ok()?;
        self.ranges.get(i)
    }
    fn root(&self, size: u64) -> Option<Hash> {
        self.range(size).map(CompactRange::root)
    }
    fn entry(&self, index: u64) -> Option<&[u8]> {
        let i = usize::try_from(index.checked_sub(self.first)?).ok()?;
        self.entries.get(i).map(Vec::as_slice)
    }
}

/// Reads the log with `LogReader`; `picks` are indices to look up.
fn read(dir: &Path, honest: Option<&Honest>, picks: &[u64]) {
    let reader = match LogReader::open(dir) {
        Ok(r) => r,
        Err(e) => {
            if let Some(h) = honest.filter(|h| !h.damaged) {
                panic!("LogReader::open of an honest log (first {}): {e}", h.first);
            }
            return;
        }
    };
    let (first, len) = (reader.first_index(), reader.len());
    let _ = (reader.is_empty(), reader.first_frontier(), reader.dir());
    let segments = reader.segments();
    let _ = reader.latest_checkpoint();
    let checkpoints = reader.checkpoints();
    let honest = honest.filter(|h| !h.damaged);
    if let Some(h) = honest {
        assert_eq!((first, len), (h.first, h.end));
        assert!(!segments.is_empty());
        let cps = checkpoints.expect("checkpoints of an honest log");
        let sizes: Vec<u64> = cps.iter().map(|c| c.checkpoint.size).collect();
        assert_eq!(sizes, h.checkpoints);
    }

    let mut count = 0u64;
    for item in reader.iter_from(first) {
        match item {
            Ok((i, entry)) => {
                if let Some(h) = honest {
                    assert_eq!(i, first + count);
                    assert_eq!(Some(entry.as_slice()), h.entry(i), "entry {i}");
                }
                count += 1;
            }
            Err(e) => {
                assert!(honest.is_none(), "iterating an honest log: {e}");
                break;
            }
        }
    }
    if let Some(h) = honest {
        assert_eq!(count, h.end - h.first);
    }
    for &i in picks {
        let got = reader.get(i);
        let leaf = reader.leaf(i);
        let range = reader.frontier_before(i);
        let from_i: Vec<_> = reader.iter_from(i).take(3).collect();
        if let Some(h) = honest {
            if i >= h.first && i < h.end {
                let entry = h.entry(i);
                assert_eq!(got.ok().as_deref(), entry, "get({i})");
                assert_eq!(leaf.ok(), entry.map(leaf_hash));
                assert!(
                    matches!(from_i.first(), Some(Ok((j, _))) if *j == i),
                    "iter_from({i})"
                );
            }
            if i >= h.first && i <= h.end {
                let range = range.unwrap_or_else(|e| panic!("frontier_before({i}): {e}"));
                assert_eq!(Some(&range), h.range(i));
            }
        }
    }
}

/// Verifies the directory and checks the report against the honest log.
fn verify(dir: &Path, opts: &VerifyOptions, honest: Option<&Honest>) {
    let result = verify_dir(dir, opts);
    let Some(h) = honest else {
        if let Ok(report) = &result {
            assert!(report.signed_size <= report.size || report.size == report.first_index);
        }
        return;
    };
    if h.damaged {
        let Ok(report) = result else {
            return;
        };
        if let Some(latest) = report.latest_checkpoint_size {
            assert!(latest <= report.size, "{report:?}");
        }
        // A root the report says is signed is the honest one.
        if report.signed_size == report.size && report.size > report.first_index {
            assert_eq!(report.first_index, h.first, "{report:?}");
            let honest_root = h.root(report.size).map(|r| encode_hash(&r));
            assert_eq!(
                Some(&report.root),
                honest_root.as_ref(),
                "a damaged log verified with a wrong signed root: {report:?}"
            );
        }
        return;
    }
    let from_ok = h.from.is_none_or(|s| s >= h.first && s <= h.end);
    let report = match result {
        Ok(r) => r,
        Err(e) if !from_ok => {
            let _ = e;
            return;
        }
        Err(e) => panic!(
            "an honest log (first {}, end {}) fails: {e}",
            h.first, h.end
        ),
    };
    assert!(from_ok, "a trusted checkpoint outside the log was accepted");
    assert_eq!(report.first_index, h.first);
    assert_eq!(report.size, h.end);
    assert_eq!(
        Some(report.root.clone()),
        h.root(h.end).map(|r| encode_hash(&r))
    );
    assert_eq!(report.keys_from_data, h.keys_from_data);
    assert_eq!(report.latest_checkpoint_size, h.checkpoints.last().copied());
    assert_eq!(
        report.checkpoints_checked,
        h.checkpoints.len() + usize::from(h.from.is_some())
    );
    assert_eq!(report.checkpoints_skipped, 0);
    let signed = h
        .checkpoints
        .iter()
        .chain(&h.from)
        .copied()
        .fold(h.first, u64::max);
    assert_eq!(report.signed_size, signed);
    assert_eq!(report.origin.is_some(), !h.checkpoints.is_empty());
    assert_eq!(report.ignored_tail_bytes, 0);
}

/// Builds proofs; a proof that checks under the key must be honest.
fn prove(dir: &Path, honest: Option<&Honest>, picks: &[u64]) {
    let prover = match Prover::open(dir) {
        Ok(p) => p,
        Err(e) => {
            if let Some(h) = honest.filter(|h| !h.damaged && !h.checkpoints.is_empty()) {
                panic!("Prover::open of an honest log (first {}): {e}", h.first);
            }
            return;
        }
    };
    let size = prover.checkpoint().checkpoint.size;
    let _ = prover.reader().len();
    // Undamaged and unpruned, every proof must be built.
    let must = honest.filter(|h| !h.damaged && h.first == 0);
    for &i in picks {
        match prover.inclusion(i) {
            Ok(p) => {
                let checked = check_inclusion(&p, key());
                if let Some(h) = honest {
                    if !h.damaged {
                        checked
                            .as_ref()
                            .unwrap_or_else(|e| panic!("inclusion {i}: {e}"));
                    }
                    if checked.is_ok() {
                        assert!(p.index < h.end);
                        let entry = h.entry(p.index).map(leaf_hash).map(|l| encode_hash(&l));
                        assert_eq!(
                            Some(&p.leaf_hash),
                            entry.as_ref(),
                            "dishonest inclusion proof {p:?}"
                        );
                    }
                }
            }
            Err(e) => {
                if must.is_some() && i < size {
                    panic!("inclusion({i}) of an honest log, size {size}: {e}");
                }
            }
        }
        match prover.consistency(i) {
            Ok(p) => {
                let checked = check_consistency(&p, key());
                if let Some(h) = honest {
                    if !h.damaged {
                        checked
                            .as_ref()
                            .unwrap_or_else(|e| panic!("consistency {i}: {e}"));
                    }
                    if checked.is_ok() && p.old_size >= h.first {
                        let root = h.root(p.old_size).map(|r| encode_hash(&r));
                        assert_eq!(
                            Some(&p.old_root),
                            root.as_ref(),
                            "dishonest consistency proof {p:?}"
                        );
                    }
                }
            }
            Err(e) => {
                if must.is_some() && i >= 1 && i <= size {
                    panic!("consistency({i}) of an honest log, size {size}: {e}");
                }
            }
        }
    }
}

/// Raw mode: the input's bytes are the files.
fn raw(dir: &Path, flags: u8, mut input: Input<'_>) {
    let split = usize::from(input.u16());
    let rest = input.0;
    let (seg, other) = rest.split_at(split.min(rest.len()));
    let name_of = |bytes: &[u8]| {
        if flags & 1 == 1 {
            segment_file_name(be_u64(bytes.get(12..20).unwrap_or_default()))
        } else {
            segment_file_name(0)
        }
    };
    write(dir, &name_of(seg), seg);
    if flags & 2 == 2 {
        let name = segment_file_name(be_u64(other.get(12..20).unwrap_or_default()));
        if name != name_of(seg) {
            write(dir, &name, other);
        }
    } else {
        write(dir, CHECKPOINTS_FILE, other);
    }
    if flags & 4 == 4 {
        write(dir, PUBLIC_KEY_FILE, format!("{}\n", key()).as_bytes());
    }
    if flags & 8 == 8 {
        write(dir, TREE_FILE, other);
    }
    scan_files(dir);
    let picks = [
        0,
        be_u64(seg.get(12..20).unwrap_or_default()).wrapping_add(1),
        be_u64(other),
    ];
    read(dir, None, &picks);
    verify(dir, &options(flags & 4 == 0, None), None);
    if flags & 16 == 16 {
        let note = signed(be_u64(other), leaf_hash(seg), signer());
        verify(dir, &options(true, Some(note)), None);
    }
    prove(dir, None, &picks);
}

/// One record as it will be written.
#[derive(Clone)]
struct Rec {
    index: u64,
    entry: Vec<u8>,
    crc_flip: u32,
}

/// Built mode: an honest log from the input, maybe damaged.
fn built(dir: &Path, flags: u8, mut input: Input<'_>) {
    let n = usize::from(input.u8() % 48);
    let first = match input.u8() % 4 {
        0 => 0,
        1 => u64::from(input.u8()),
        2 => u64::from(input.u16()),
        _ => input.u64().min(u64::MAX - n as u64),
    };
    let frontier: Vec<Hash> = (0..first.count_ones())
        .map(|k| leaf_hash(&[0xf0, k as u8]))
        .collect();
    let mut range = CompactRange::from_roots(first, frontier).expect("frontier");
    let mut ranges = vec![range.clone()];
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let len = usize::from(input.u8() % 40);
        let entry = input.bytes(len).to_vec();
        range.push(leaf_hash(&entry)).expect("room for the entries");
        ranges.push(range.clone());
        entries.push(entry);
    }
    let end = first + n as u64;
    let mut cps: Vec<u64> = (0..input.u8() % 5)
        .map(|_| first + u64::from(input.u16()) % (n as u64 + 1))
        .collect();
    cps.sort_unstable();
    let from = (flags & 0x20 == 0x20).then(|| {
        let s = first.wrapping_add(u64::from(input.u16()) % (n as u64 + 2));
        if input.u8() < 64 {
            s.wrapping_sub(1)
        } else {
            s
        }
    });
    let keys_from_data = flags & 0x10 == 0x10;
    let mut honest = Honest {
        first,
        end,
        ranges,
        entries,
        damaged: false,
        checkpoints: cps.clone(),
        from,
        keys_from_data,
    };

    // Segment cuts (record positions), strictly increasing.
    let mut cuts: Vec<usize> = (0..input.u8() % 3)
        .map(|_| usize::from(input.u16()) % (n + 1))
        .collect();
    let empty_last = flags & 8 == 8;
    let with_tree = flags & 4 == 4 && first <= 512;

    let mut recs: Vec<Rec> = honest
        .entries
        .iter()
        .enumerate()
        .map(|(k, e)| Rec {
            index: first + k as u64,
            entry: e.clone(),
            crc_flip: 0,
        })
        .collect();
    let mut notes: Vec<(i64, u64, String)> = cps
        .iter()
        .map(|&s| {
            let root = honest.root(s).expect("checkpoint inside the log");
            (input.u16().into(), s, signed(s, root, signer()))
        })
        .collect();

    // Damage.
    let mut flips: Vec<(u8, usize, u8)> = Vec::new();
    let mut torn: Option<usize> = None;
    let mut forged: Vec<(usize, u8)> = Vec::new();
    if flags & 0x40 == 0x40 {
        honest.damaged = true;
        for _ in 0..1 + input.u8() % 3 {
            let op = input.u8();
            let p = usize::from(input.u16());
            let q = usize::from(input.u16());
            let mask = input.u8() | 1;
            let len = recs.len();
            match op % 12 {
                0 if len > 0 => {
                    let e = &mut recs[p % len].entry;
                    let at = q % e.len().max(1);
                    match e.get_mut(at) {
                        Some(b) => *b ^= mask,
                        None => e.push(mask),
                    }
                }
                1 if len > 0 => {
                    recs.remove(p % len);
                }
                2 if len > 0 => {
                    let r = recs[p % len].clone();
                    recs.insert(p % len, r);
                }
                3 if len > 0 => recs.swap(p % len, q % len),
                4 if len > 0 => {
                    let r = &mut recs[p % len];
                    r.index = r.index.wrapping_add(u64::from(mask));
                }
                5 if len > 0 => recs[p % len].crc_flip = u32::from(mask),
                6 => torn = Some(q),
                7 => flips.push((op >> 4, q, mask)),
                8 => forged.push((p, mask)),
                9 if !notes.is_empty() => {
                    notes.remove(p % notes.len());
                }
                10 if !notes.is_empty() => notes.reverse(),
                11 => {
                    // A checkpoint signed by a key the verifier does not
                    // trust, over a root of the attacker's choice.
                    let size = first.wrapping_add((p as u64) % (n as u64 + 2));
                    let at = q % (notes.len() + 1);
                    notes.insert(
                        at,
                        (0, size, signed(size, leaf_hash(&[mask]), foreign_signer())),
                    );
                }
                _ => cuts.push(p % (len + 1)),
            }
        }
    }

    // Segments: a header at each cut, with the honest frontier there.
    cuts.push(0);
    cuts.sort_unstable();
    cuts.dedup();
    if empty_last {
        cuts.push(recs.len());
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut last_first: Option<u64> = None;
    let mut seg_starts: Vec<(usize, u64)> = Vec::new();
    for &c in &cuts {
        let index = first.saturating_add(c as u64).min(end);
        if last_first.is_some_and(|l| index <= l) {
            continue;
        }
        last_first = Some(index);
        seg_starts.push((c, index));
    }
    for (s, &(start, index)) in seg_starts.iter().enumerate() {
        let stop = seg_starts.get(s + 1).map_or(recs.len(), |&(c, _)| c);
        let mut frontier = honest
            .range(index)
            .expect("cut inside the log")
            .roots()
            .to_vec();
        for &(which, mask) in &forged {
            if which % seg_starts.len() == s {
                let at = usize::from(mask) % frontier.len().max(1);
                if let Some(h) = frontier.get_mut(at) {
                    h[0] ^= mask;
                }
            }
        }
        let header = SegmentHeader::new(index, frontier).expect("header");
        let mut bytes = header.encode();
        for r in recs.get(start..stop).unwrap_or_default() {
            let crc = record_crc(r.index, &r.entry) ^ r.crc_flip;
            bytes.extend_from_slice(&(r.entry.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&crc.to_be_bytes());
            bytes.extend_from_slice(&r.index.to_be_bytes());
            bytes.extend_from_slice(&r.entry);
        }
        files.push((segment_file_name(index), bytes));
    }
    if let (Some(cut), Some((_, last))) = (torn, files.last_mut()) {
        let keep = last.len().saturating_sub(cut % (RECORD_HEADER_LEN + 48));
        last.truncate(keep);
    }
    files.push((CHECKPOINTS_FILE.to_owned(), checkpoint_log(&notes)));
    if with_tree {
        // Post-order slots; those of entries before `first` are zero
        // (pruned).
        let mut slots = vec![0u8; usize::try_from(slot_count(first)).expect("small") * 32];
        let mut tree = honest.range(first).expect("first").clone();
        for e in &honest.entries {
            tree.push_with(leaf_hash(e), |h| slots.extend_from_slice(h))
                .expect("room");
        }
        files.push((TREE_FILE.to_owned(), slots));
    }
    for &(which, pos, mask) in &flips {
        let k = usize::from(which) % files.len();
        let bytes = &mut files[k].1;
        if !bytes.is_empty() {
            let at = pos % bytes.len();
            bytes[at] ^= mask;
        }
    }
    for (name, bytes) in &files {
        write(dir, name, bytes);
    }
    if keys_from_data {
        write(dir, PUBLIC_KEY_FILE, format!("{}\n", key()).as_bytes());
    }

    scan_files(dir);
    let mut picks = vec![end.saturating_sub(1), end];
    picks.extend((0..2).map(|_| first + u64::from(input.u8()) % (n as u64 + 1)));
    read(dir, Some(&honest), &picks);
    let from_note = from.map(|s| signed(s, honest.root(s).unwrap_or([0xab; 32]), signer()));
    verify(dir, &options(!keys_from_data, from_note), Some(&honest));
    prove(dir, Some(&honest), &picks);
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut input = Input(data);
    let flags = input.u8();
    let dir = tempfile::tempdir().expect("temporary directory");
    if flags & 0x80 == 0 {
        raw(dir.path(), flags, input);
    } else {
        built(dir.path(), flags, input);
    }
});
