#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Crash safety: a child process appending under load is killed with
//! SIGKILL at random points; after each kill the log reopens, every entry
//! acknowledged as durable is present with the same bytes, and the log
//! verifies. Also hand-made torn tails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{digest, SHA256};
use rampart_audit::log::{AuditLog, LogConfig, LogError, CHECKPOINTS_FILE};
use rampart_audit::note::Ed25519Signer;
use rampart_audit::reader::LogReader;
use rampart_audit::segment::{
    encode_record, list_segments, read_segment_header, segment_file_name,
};
use rampart_audit::verify::{verify_dir, VerifyOptions};
use rand::Rng;

const ORIGIN: &str = "rampart.test/crash";
const CHILD_ENV: &str = "RAMPART_AUDIT_CRASH_CHILD";
const CHILD_TEST: &str = "sigkill_at_random_points_loses_no_acknowledged_entry";

fn signer() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[9u8; 32]).unwrap())
}

fn cfg(dir: &Path) -> LogConfig {
    let mut c = LogConfig::new(dir, ORIGIN);
    c.segment_max_bytes = 1024 * 1024;
    c.checkpoint_every = 500;
    c.checkpoint_interval = Duration::from_millis(30);
    c.queue_capacity = 1024;
    c
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha(entry: &[u8]) -> String {
    hex(digest(&SHA256, entry).as_ref())
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        public_key: Some(signer().verifier_key()),
        ..VerifyOptions::default()
    }
}

/// The child: appends from several threads until killed, printing one
/// line per durable acknowledgement.
fn child(dir: &str) {
    let (log, _) = AuditLog::open(cfg(Path::new(dir)), signer()).unwrap();
    let run = std::process::id();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < Duration::from_secs(20) {
                    for _ in 0..100 {
                        let e = format!(
                            "{{\"run\":{run},\"thread\":{t},\"n\":{n},\"pad\":\"{}\"}}",
                            "p".repeat(if n.is_multiple_of(4) {
                                1000
                            } else {
                                (n % 100) as usize
                            })
                        );
                        n += 1;
                        match log.append(e.into_bytes()) {
                            Ok(()) | Err(LogError::QueueFull) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    let e = format!("{{\"run\":{run},\"thread\":{t},\"n\":{n},\"durable\":true}}")
                        .into_bytes();
                    n += 1;
                    let hash = sha(&e);
                    let index = log.append_durable(e).wait().unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {index} {hash}").unwrap();
                    out.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_entry() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut torn_tails = 0;
    for iteration in 0..25u32 {
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ACK ") {
                    let (i, h) = rest.split_once(' ').unwrap();
                    acks.push((i.parse::<u64>().unwrap(), h.to_owned()));
                }
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..250)));
        child.kill().unwrap();
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        for (i, h) in acks {
            assert!(acked.insert(i, h).is_none(), "index {i} acknowledged twice");
        }

        // Every third kill also tears the last write (as a power loss
        // would): a random prefix of a record, or random bytes. Records are
        // only ever written after a segment's header is on disk, so a torn
        // record can only follow a complete header: a kill between creating
        // a segment and writing its header leaves it short (recovered as
        // "torn at creation"), never followed by record bytes.
        let mut injected = 0;
        let last_has_header = read_segment_header(&last_segment(dir.path())).is_ok();
        if iteration % 3 == 2 && last_has_header {
            let mut rec = Vec::new();
            encode_record(u64::MAX / 2, &vec![b'x'; rng.gen_range(1..2000)], &mut rec).unwrap();
            let cut = rng.gen_range(1..rec.len());
            let mut tail = rec[..cut].to_vec();
            if iteration.is_multiple_of(2) {
                rng.fill(&mut tail[..]);
            }
            injected = tail.len() as u64;
            append_bytes(&last_segment(dir.path()), &tail);
        }
        let (log, report) = AuditLog::open(cfg(dir.path()), signer())
            .unwrap_or_else(|e| panic!("iteration {iteration}: reopening failed: {e}"));
        assert!(report.truncated_bytes >= injected, "{report:?}");
        if report.truncated_bytes > 0 {
            torn_tails += 1;
            let torn = report
                .torn_file
                .as_ref()
                .or(report.torn_files.first())
                .unwrap();
            assert!(torn.exists());
        }
        let reader = LogReader::open(dir.path()).unwrap();
        assert_eq!(reader.len(), report.size);
        for (i, h) in &acked {
            let e = reader
                .get(*i)
                .unwrap_or_else(|e| panic!("iteration {iteration}: acknowledged entry {i}: {e}"));
            assert_eq!(&sha(&e), h, "iteration {iteration}: entry {i} changed");
        }
        let v = verify_dir(dir.path(), &opts())
            .unwrap_or_else(|f| panic!("iteration {iteration}: verify failed: {f}"));
        assert_eq!(v.size, report.size);
        log.close().unwrap();
    }
    let v = verify_dir(dir.path(), &opts()).unwrap();
    assert_eq!(v.signed_size, v.size);
    assert!(acked.len() > 100, "only {} acknowledgements", acked.len());
    eprintln!(
        "crash test: 25 kills, {} acknowledged entries, {} entries, {} torn tails, {} segments, {:?}",
        acked.len(),
        v.size,
        torn_tails,
        v.segments,
        started.elapsed()
    );
}

fn small_log(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    for i in 0..n {
        log.append(format!("{{\"i\":{i}}}").into_bytes()).unwrap();
    }
    log.close().unwrap();
    dir
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    list_segments(dir).unwrap().last().unwrap().path.clone()
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_torn_tail_is_moved_aside_and_truncated() {
    let dir = small_log(100);
    let seg = last_segment(dir.path());
    let before = std::fs::metadata(&seg).unwrap().len();
    // A complete record, then a partial one: the partial record starts
    // the tail.
    let mut garbage = Vec::new();
    encode_record(100, b"{\"i\":100}", &mut garbage).unwrap();
    let mut partial = Vec::new();
    encode_record(101, b"{\"i\":101,\"more\":\"......\"}", &mut partial).unwrap();
    garbage.extend_from_slice(&partial[..20]);
    append_bytes(&seg, &garbage);
    let (log, report) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    assert_eq!(report.size, 101);
    assert_eq!(report.truncated_bytes, 20);
    let torn = report.torn_file.clone().unwrap();
    assert!(torn
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("torn-"));
    assert!(torn.extension().unwrap() == "bin");
    assert_eq!(std::fs::read(&torn).unwrap(), &partial[..20]);
    log.close().unwrap();
    verify_dir(dir.path(), &opts()).unwrap();

    // A complete record with a bad CRC, then garbage.
    let seg = last_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    assert!(len > before);
    let mut bad = Vec::new();
    encode_record(101, b"{\"i\":101}", &mut bad).unwrap();
    bad[5] ^= 1;
    bad.extend_from_slice(b"\x00\x00garbage\xff\xff");
    append_bytes(&seg, &bad);
    let (log, report) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    assert_eq!(report.size, 101);
    assert_eq!(report.truncated_bytes, bad.len() as u64);
    assert_eq!(std::fs::read(report.torn_file.unwrap()).unwrap(), bad);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
    assert_eq!(
        log.append_durable(b"{\"i\":101}".to_vec()).wait().unwrap(),
        101
    );
    log.close().unwrap();
    verify_dir(dir.path(), &opts()).unwrap();
    let torn_files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let n = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            n.starts_with("torn-") && n.ends_with(".bin")
        })
        .count();
    assert_eq!(torn_files, 2);
}

#[test]
fn damage_below_the_latest_checkpoint_is_refused() {
    let dir = small_log(100);
    let seg = last_segment(dir.path());
    let bytes = std::fs::read(&seg).unwrap();
    // Flip a byte of entry 90's JSON (find it by content).
    let needle = b"{\"i\":90}";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut damaged = bytes.clone();
    damaged[at + 5] = b'8';
    std::fs::write(&seg, &damaged).unwrap();
    match AuditLog::open(cfg(dir.path()), signer()) {
        Err(LogError::Corrupt { index, .. }) => assert_eq!(index, 90),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a log damaged below its checkpoint"),
    }
    // Nothing was truncated or moved.
    assert_eq!(std::fs::read(&seg).unwrap(), damaged);
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("torn-")));
    // Entries cut off below the checkpoint are refused too.
    std::fs::write(&seg, &bytes[..bytes.len() - 5]).unwrap();
    assert!(matches!(
        AuditLog::open(cfg(dir.path()), signer()),
        Err(LogError::Corrupt { index: 99, .. })
    ));
}

#[test]
fn a_torn_checkpoint_record_and_a_torn_new_segment_are_recovered() {
    let dir = small_log(100);
    // Half a checkpoint record at the end of checkpoints.log.
    let cps = dir.path().join(CHECKPOINTS_FILE);
    let mut rec = Vec::new();
    encode_record(99, br#"{"time_us":1,"size":100,"note":"x"}"#, &mut rec).unwrap();
    append_bytes(&cps, &rec[..rec.len() / 2]);
    // A new segment whose header was being written.
    let next = dir.path().join(segment_file_name(100));
    std::fs::write(&next, b"RMPAUD01\x00").unwrap();
    let (log, report) = AuditLog::open(cfg(dir.path()), signer()).unwrap();
    assert_eq!(report.size, 100);
    assert_eq!(report.torn_files.len(), 2, "{report:?}");
    assert!(!next.exists());
    assert_eq!(log.append_durable(b"{}".to_vec()).wait().unwrap(), 100);
    log.close().unwrap();
    verify_dir(dir.path(), &opts()).unwrap();
    assert_eq!(
        LogReader::open(dir.path())
            .unwrap()
            .checkpoints()
            .unwrap()
            .len(),
        2
    );
}
