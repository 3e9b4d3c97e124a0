#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Exporters: the cursor file, the file sink across restarts and crashes
//! (at least once: no gaps, duplicates only for a batch written but not
//! yet acknowledged by the cursor), the loop with retries and shutdown,
//! and the syslog sink against an in-test TLS receiver (RFC 5425 framing,
//! RFC 5424 header, TLS 1.3 only, reconnects).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rampart_audit::event::types;
use rampart_audit::ocsf::{OcsfRecord, UNPARSABLE_TYPE};
use rampart_audit::sink::{
    format_message, frame, rfc3339_micros, run_exporter_with, syslog_severity, Cursor, EntrySource,
    ExportOptions, Exporter, FileSink, Sink, SinkError, SyslogConfig, SyslogSink,
};
use rampart_audit::{Actor, AuditEvent, ClockSync, Decision, Timestamp};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------
// An in-memory log.

#[derive(Debug, Clone, Default)]
struct MemLog {
    first: u64,
    entries: Vec<Vec<u8>>,
    fail_at: Option<u64>,
}

impl MemLog {
    fn with_events(n: u64) -> Self {
        let mut log = Self::default();
        log.push_events(n);
        log
    }

    fn push_events(&mut self, n: u64) {
        for _ in 0..n {
            let i = self.end_index();
            self.entries.push(event(i).to_entry().unwrap());
        }
    }
}

impl EntrySource for MemLog {
    type Error = String;

    fn first_index(&self) -> u64 {
        self.first
    }

    fn end_index(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    fn entries_from(
        &self,
        index: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), String>> + '_ {
        (index.max(self.first)..self.end_index()).map(move |i| {
            if Some(i) == self.fail_at {
                Err("checksum mismatch".to_owned())
            } else {
                Ok((i, self.entries[(i - self.first) as usize].clone()))
            }
        })
    }

    fn entry(&self, index: u64) -> Result<Vec<u8>, String> {
        index
            .checked_sub(self.first)
            .and_then(|i| self.entries.get(i as usize))
            .cloned()
            .ok_or_else(|| format!("no entry {index}"))
    }
}

const T0: i64 = 1_700_000_000_000_000;

fn event(i: u64) -> AuditEvent {
    let (t, decision) = match i % 4 {
        0 => (types::AUTH_SUCCESS, Decision::Allow),
        1 => (types::AUTHZ_DECISION, Decision::Deny),
        2 => (types::APIKEY_CREATED, Decision::Info),
        _ => ("key.unwrap_failed", Decision::Info),
    };
    AuditEvent::new(
        Timestamp {
            micros: T0 + i as i64 * 1_000,
            sync: ClockSync::Synced,
        },
        t,
        Actor::key(format!("k{}", i % 3)),
        "PlaceOrder",
        "/api/v3/order",
        decision,
    )
    .request_id(format!("req-{i}"))
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every line of an export file: `Ok(sequence)` for a record, `Err(line)`
/// for a line that is not one.
fn file_lines(path: &Path) -> Vec<Result<u64, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["metadata"]["sequence"].as_u64())
                .ok_or_else(|| line.to_owned())
        })
        .collect()
}

fn sequences(path: &Path) -> Vec<u64> {
    file_lines(path).into_iter().map(Result::unwrap).collect()
}

// ---------------------------------------------------------------------
// Cursor.

#[test]
fn cursor_names_format_and_atomic_store() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "../x", "a/b", "a.b", "é", &"x".repeat(65)] {
        assert!(
            matches!(
                Cursor::load(dir.path(), bad),
                Err(SinkError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    let state = dir.path().join("state");
    let mut cursor = Cursor::load(&state, "siem-1").unwrap();
    assert_eq!(cursor.next(), None);
    assert_eq!(cursor.path(), state.join("export-siem-1.cursor"));
    cursor.store(42).unwrap();
    assert_eq!(cursor.next(), Some(42));
    assert_eq!(std::fs::read_to_string(cursor.path()).unwrap(), "42\n");
    assert_eq!(mode(cursor.path()), 0o600);
    assert_eq!(mode(&state), 0o700);
    cursor.store(43).unwrap();
    assert_eq!(Cursor::load(&state, "siem-1").unwrap().next(), Some(43));
    // Only the cursor is left (no temporary file).
    let names: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["export-siem-1.cursor"]);

    // A damaged cursor is an error, never a silent restart.
    for garbage in ["", "12x\n", "-1\n", "99999999999999999999999\n", " 5\n"] {
        std::fs::write(cursor.path(), garbage).unwrap();
        assert!(
            matches!(
                Cursor::load(&state, "siem-1"),
                Err(SinkError::Cursor { .. })
            ),
            "{garbage:?}"
        );
    }
    std::fs::write(cursor.path(), "7").unwrap();
    assert_eq!(Cursor::load(&state, "siem-1").unwrap().next(), Some(7));
}

// ---------------------------------------------------------------------
// File sink.

#[tokio::test]
async fn file_sink_survives_restarts_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out/audit.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut log = MemLog::with_events(2500);

    let mut exporter = Exporter::open(&state, "file").unwrap();
    let mut sink = FileSink::new(&out);
    let sent = exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    assert_eq!(sent, 2500);
    assert_eq!(exporter.cursor().next(), Some(2500));
    assert_eq!(sequences(&out), (0..2500).collect::<Vec<_>>());
    assert_eq!(mode(&out), 0o600);
    // Caught up: nothing more, the cursor stays.
    assert_eq!(exporter.export_batch(&log, &mut sink).await.unwrap(), 0);
    drop((exporter, sink));

    // Restart: a new process picks up at the cursor.
    log.push_events(700);
    let mut exporter = Exporter::open(&state, "file").unwrap();
    assert_eq!(exporter.cursor().next(), Some(2500));
    let mut sink = FileSink::new(&out);
    let sent = exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    assert_eq!(sent, 700);
    assert_eq!(sequences(&out), (0..3200).collect::<Vec<_>>());

    // Rotation by renaming: the next batch starts a new file.
    let rotated = dir.path().join("out/audit.jsonl.1");
    std::fs::rename(&out, &rotated).unwrap();
    log.push_events(5);
    exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    assert_eq!(sequences(&rotated), (0..3200).collect::<Vec<_>>());
    assert_eq!(sequences(&out), (3200..3205).collect::<Vec<_>>());
    assert_eq!(mode(&out), 0o600);
    let out = rotated;

    // The lines are the OCSF records of the entries.
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .nth(3)
            .unwrap(),
    )
    .unwrap();
    let expected = OcsfRecord::from_entry(&log.entry(3).unwrap(), 3, 0).value;
    assert_eq!(first, expected);
}

#[tokio::test]
async fn killed_between_write_and_cursor_duplicates_only_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("audit.jsonl");
    let log = MemLog::with_events(3000);

    let mut exporter = Exporter::open(&state, "file").unwrap().with_batch_size(500);
    let mut sink = FileSink::new(&out);
    for _ in 0..2 {
        assert_eq!(exporter.export_batch(&log, &mut sink).await.unwrap(), 500);
    }
    assert_eq!(exporter.cursor().next(), Some(1000));

    // The process writes the next batch and dies before the cursor moves,
    // in the middle of writing the batch after it (a torn line).
    let batch: Vec<_> = (1000..1500)
        .map(|i| OcsfRecord::from_entry(&log.entry(i).unwrap(), i, 0))
        .collect();
    sink.send(&batch).await.unwrap();
    drop((exporter, sink));
    let torn = OcsfRecord::from_entry(&log.entry(1500).unwrap(), 1500, 0).to_json();
    let mut file = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
    std::io::Write::write_all(&mut file, &torn.as_bytes()[..40]).unwrap();
    drop(file);

    // Restart.
    let mut exporter = Exporter::open(&state, "file").unwrap();
    assert_eq!(exporter.cursor().next(), Some(1000));
    let mut sink = FileSink::new(&out);
    assert_eq!(
        exporter
            .export_available(&log, &mut sink, None)
            .await
            .unwrap(),
        2000
    );

    let lines = file_lines(&out);
    // The torn fragment is alone on its line, the only invalid one.
    let invalid: Vec<_> = lines.iter().filter_map(|l| l.as_ref().err()).collect();
    assert_eq!(invalid, [&torn[..40].to_owned()]);
    let mut counts = BTreeMap::<u64, usize>::new();
    for seq in lines.iter().filter_map(|l| l.as_ref().ok()) {
        *counts.entry(*seq).or_default() += 1;
    }
    // No gap; duplicates exactly for the unacknowledged batch.
    assert_eq!(counts.len(), 3000);
    for (seq, n) in counts {
        let expected = if (1000..1500).contains(&seq) { 2 } else { 1 };
        assert_eq!(n, expected, "entry {seq}");
    }
}

#[tokio::test]
async fn unparsable_entries_are_exported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("audit.jsonl");
    // An existing file with a wider mode is restricted.
    std::fs::write(&out, "").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut log = MemLog::with_events(3);
    log.entries.push(b"\x00garbage".to_vec());
    log.push_events(2);
    let mut exporter = Exporter::open(dir.path(), "x").unwrap();
    let mut sink = FileSink::new(&out);
    exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    assert_eq!(sequences(&out), [0, 1, 2, 3, 4, 5]);
    assert_eq!(mode(&out), 0o600);
    let text = std::fs::read_to_string(&out).unwrap();
    let record: Value = serde_json::from_str(text.lines().nth(3).unwrap()).unwrap();
    assert_eq!(record["class_uid"], 0);
    assert_eq!(record["unmapped"]["type"], UNPARSABLE_TYPE);
    assert_eq!(
        B64.decode(record["unmapped"]["entry_base64"].as_str().unwrap())
            .unwrap(),
        b"\x00garbage"
    );
}

#[tokio::test]
async fn pruned_log_skips_forward_and_shorter_log_rewinds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("audit.jsonl");
    let mut cursor = Cursor::load(dir.path(), "x").unwrap();
    cursor.store(10).unwrap();

    // Entries 10..50 were pruned before they were exported.
    let mut log = MemLog::with_events(60);
    log.entries.drain(..50);
    log.first = 50;
    let mut exporter = Exporter::open(dir.path(), "x").unwrap();
    let mut sink = FileSink::new(&out);
    exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    assert_eq!(sequences(&out), (50..60).collect::<Vec<_>>());
    assert_eq!(exporter.cursor().next(), Some(60));

    // The log is restored from an older backup (ends at 55): the cursor
    // moves back to its end, and what is appended then is exported.
    let mut log = MemLog::with_events(55);
    log.entries.drain(..50);
    log.first = 50;
    assert_eq!(exporter.export_batch(&log, &mut sink).await.unwrap(), 0);
    assert_eq!(exporter.cursor().next(), Some(55));
    assert_eq!(Cursor::load(dir.path(), "x").unwrap().next(), Some(55));
    log.push_events(3);
    exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    assert_eq!(sequences(&out), (50..60).chain(55..58).collect::<Vec<_>>());

    // A new exporter starts at the first entry present.
    let mut fresh = Exporter::open(dir.path(), "fresh").unwrap();
    let out2 = dir.path().join("fresh.jsonl");
    let mut sink2 = FileSink::new(&out2);
    fresh
        .export_available(&log, &mut sink2, None)
        .await
        .unwrap();
    assert_eq!(sequences(&out2), (50..58).collect::<Vec<_>>());
}

#[tokio::test]
async fn unreadable_entry_stops_the_exporter_at_that_index() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("audit.jsonl");
    let mut log = MemLog::with_events(100);
    log.fail_at = Some(30);
    let mut exporter = Exporter::open(dir.path(), "x").unwrap();
    let mut sink = FileSink::new(&out);
    // Entries before the bad one go out, then the error.
    assert_eq!(exporter.export_batch(&log, &mut sink).await.unwrap(), 30);
    let err = exporter.export_batch(&log, &mut sink).await.unwrap_err();
    assert!(
        matches!(err, SinkError::Source(ref m) if m.contains("entry 30")),
        "{err}"
    );
    assert!(exporter
        .export_available(&log, &mut sink, None)
        .await
        .is_err());
    assert_eq!(exporter.cursor().next(), Some(30));
    assert_eq!(sequences(&out), (0..30).collect::<Vec<_>>());
    // Repaired: it carries on from there.
    log.fail_at = None;
    exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    assert_eq!(sequences(&out), (0..100).collect::<Vec<_>>());
}

/// Fails its first `failures` batches, then records them.
#[derive(Clone, Default)]
struct FlakySink {
    failures: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<u64>>>,
    closed: Arc<AtomicUsize>,
}

impl Sink for FlakySink {
    async fn send(&mut self, batch: &[OcsfRecord]) -> Result<(), SinkError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(SinkError::Send {
                address: "test".into(),
                reason: "refused".into(),
            });
        }
        self.got
            .lock()
            .unwrap()
            .extend(batch.iter().map(|r| r.index));
        Ok(())
    }

    async fn close(&mut self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn loop_retries_with_backoff_follows_the_log_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(MemLog::with_events(2345)));
    let sink = FlakySink::default();
    sink.failures.store(3, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let options = ExportOptions {
        poll: Duration::from_millis(20),
        batch_size: 1000,
        retry_initial: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
    };
    // The source is reopened on every round, as the log reader is.
    let opens = Arc::new(AtomicUsize::new(0));
    let task = {
        let log = log.clone();
        let opens = opens.clone();
        let state = dir.path().to_path_buf();
        let sink = sink.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_exporter_with(
                move || {
                    // The first open fails, like a log not there yet.
                    if opens.fetch_add(1, Ordering::SeqCst) == 0 {
                        return Err("no log yet".to_owned());
                    }
                    Ok(log.lock().unwrap().clone())
                },
                &state,
                "loop",
                sink,
                options,
                shutdown,
            )
            .await
        })
    };
    wait_for("the first entries", || {
        sink.got.lock().unwrap().len() == 2345
    })
    .await;
    log.lock().unwrap().push_events(10);
    wait_for("the new entries", || sink.got.lock().unwrap().len() == 2355).await;
    shutdown.cancel();
    let total = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(total, 2355);
    // Failed batches never reached the sink; no duplicates, no gaps.
    assert_eq!(*sink.got.lock().unwrap(), (0..2355).collect::<Vec<_>>());
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 3 + 3 + 1);
    assert_eq!(sink.closed.load(Ordering::SeqCst), 1);
    assert_eq!(Cursor::load(dir.path(), "loop").unwrap().next(), Some(2355));
}

#[tokio::test]
async fn loop_rejects_an_invalid_name_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let result = run_exporter_with(
        || Ok::<_, String>(MemLog::default()),
        dir.path(),
        "../escape",
        FlakySink::default(),
        ExportOptions::new(Duration::from_millis(10)),
        CancellationToken::new(),
    )
    .await;
    assert!(matches!(result, Err(SinkError::InvalidName(_))));
}

// ---------------------------------------------------------------------
// Syslog framing and format.

#[test]
fn timestamps_frames_and_severities() {
    assert_eq!(rfc3339_micros(0).unwrap(), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        rfc3339_micros(1_700_000_000_123_456).unwrap(),
        "2023-11-14T22:13:20.123456Z"
    );
    assert_eq!(
        rfc3339_micros(1_709_164_800_000_000).unwrap(),
        "2024-02-29T00:00:00.000000Z"
    );
    assert_eq!(
        rfc3339_micros(951_868_799_999_999).unwrap(),
        "2000-02-29T23:59:59.999999Z"
    );
    assert_eq!(rfc3339_micros(-1).unwrap(), "1969-12-31T23:59:59.999999Z");
    assert_eq!(
        rfc3339_micros(253_402_300_799_999_999).unwrap(),
        "9999-12-31T23:59:59.999999Z"
    );
    assert_eq!(rfc3339_micros(253_402_300_800_000_000), None);
    assert_eq!(rfc3339_micros(i64::MIN), None);
    assert_eq!(rfc3339_micros(i64::MAX), None);

    assert_eq!(frame("hello"), b"5 hello");
    assert_eq!(frame("é"), b"2 \xc3\xa9");

    assert_eq!(
        [1, 2, 3, 4, 5, 6, 0, 99].map(syslog_severity),
        [6, 5, 4, 3, 2, 1, 5, 5]
    );

    let record = OcsfRecord::from_event(&event(1), 17);
    let msg = format_message(&record, 13, "gw 1\u{e9}");
    let expected_prefix =
        "<108>1 2023-11-14T22:13:20.001000Z gw_1_ rampart - authz.decision [rampart@32473 idx=\"17\"] {";
    assert!(msg.starts_with(expected_prefix), "{msg}");
    let json: Value = serde_json::from_str(&msg[expected_prefix.len() - 1..]).unwrap();
    assert_eq!(json, record.value);
    // Long or odd types are cut to a valid MSGID; an empty host is `-`.
    let mut long = event(0);
    long.event_type = "key.a_very_long_event_type_name_beyond_32".into();
    let msg = format_message(&OcsfRecord::from_event(&long, 0), 4, "");
    assert!(msg.starts_with(
        "<38>1 2023-11-14T22:13:20.000000Z - rampart - key.a_very_long_event_type_name_ ["
    ));
}

// ---------------------------------------------------------------------
// Syslog over TLS against an in-test receiver.

struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

/// A CA and a server certificate for `localhost` and `127.0.0.1`.
fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key_der: key.serialize_der(),
    }
}

fn server_config(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            pki.chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone())),
        )
        .unwrap();
    Arc::new(config)
}

#[derive(Debug)]
enum Seen {
    /// A frame on connection `conn` (numbered from 0).
    Frame { conn: usize, text: String },
    /// The handshake failed.
    HandshakeFailed(String),
    /// The receiver closed connection `conn` after `close_after` frames.
    Closed { conn: usize },
}

/// Reads one RFC 5425 frame: `MSG-LEN SP SYSLOG-MSG`; `None` at the end.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<String> {
    let mut len = 0usize;
    let mut digits = 0;
    loop {
        let b = r.read_u8().await.ok()?;
        if b == b' ' {
            break;
        }
        assert!(b.is_ascii_digit(), "MSG-LEN must be digits, got {b:#x}");
        assert!(!(digits == 0 && b == b'0'), "MSG-LEN must not start with 0");
        len = len * 10 + usize::from(b - b'0');
        digits += 1;
    }
    assert!(digits > 0);
    let mut msg = vec![0u8; len];
    r.read_exact(&mut msg).await.unwrap();
    Some(String::from_utf8(msg).unwrap())
}

/// A syslog-over-TLS receiver: reports every frame; with `close_after`,
/// closes each connection cleanly after that many frames.
fn start_receiver(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    close_after: Option<usize>,
) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        let mut conn = 0usize;
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let id = conn;
            conn += 1;
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        let _ = tx.send(Seen::HandshakeFailed(e.to_string()));
                        return;
                    }
                };
                assert_eq!(
                    tls.get_ref().1.protocol_version(),
                    Some(rustls::ProtocolVersion::TLSv1_3)
                );
                let mut reader = BufReader::new(tls);
                let mut frames = 0usize;
                while let Some(text) = read_frame(&mut reader).await {
                    let _ = tx.send(Seen::Frame { conn: id, text });
                    frames += 1;
                    if close_after == Some(frames) {
                        let mut tls = reader.into_inner();
                        tls.shutdown().await.unwrap();
                        let _ = tx.send(Seen::Closed { conn: id });
                        return;
                    }
                }
            });
        }
    });
    rx
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn syslog_sink(pki: &Pki, addr: SocketAddr, facility: u8) -> SyslogSink {
    let mut config = SyslogConfig::new(addr.to_string(), "localhost", "/nonexistent");
    config.facility = facility;
    config.hostname = "gw-1".to_owned();
    config.connect_timeout = Duration::from_secs(5);
    config.write_timeout = Duration::from_secs(5);
    SyslogSink::with_ca_pem(&config, pki.ca_pem.as_bytes()).unwrap()
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("receiver timed out")
        .expect("receiver gone")
}

/// Parses `<PRI>1 TS HOST APP PROCID MSGID [SD] MSG` and checks it
/// against the log entry it claims to carry.
fn check_message(text: &str, log: &MemLog, facility: u8) -> u64 {
    let parts: Vec<&str> = text.splitn(9, ' ').collect();
    assert_eq!(parts.len(), 9, "{text}");
    let (pri, version) = parts[0]
        .strip_prefix('<')
        .and_then(|p| p.split_once('>'))
        .unwrap();
    assert_eq!(version, "1");
    let idx: u64 = parts[7]
        .strip_prefix("idx=\"")
        .and_then(|p| p.strip_suffix("\"]"))
        .unwrap()
        .parse()
        .unwrap();
    let event = AuditEvent::from_entry(&log.entry(idx).unwrap()).unwrap();
    let record = OcsfRecord::from_event(&event, idx);
    let pri: u16 = pri.parse().unwrap();
    assert_eq!(
        pri,
        u16::from(facility) * 8 + u16::from(syslog_severity(record.severity_id)),
        "{text}"
    );
    assert_eq!(parts[1], rfc3339_micros(event.time_us).unwrap());
    assert_eq!(parts[2], "gw-1");
    assert_eq!(parts[3], "rampart");
    assert_eq!(parts[4], "-");
    assert_eq!(parts[5], event.event_type);
    assert_eq!(parts[6], "[rampart@32473");
    let json: Value = serde_json::from_str(parts[8]).unwrap();
    assert_eq!(json, record.value);
    assert_eq!(json["metadata"]["sequence"], idx);
    idx
}

#[tokio::test]
async fn syslog_sends_rfc5424_over_tls13_with_octet_counting() {
    let pki = pki();
    let (listener, addr) = listen().await;
    let config = server_config(&pki, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let mut rx = start_receiver(listener, config, None);
    let log = MemLog::with_events(1234);
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = Exporter::open(dir.path(), "syslog").unwrap();
    let mut sink = syslog_sink(&pki, addr, 10);
    assert!(!sink.is_connected());
    let sent = exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    assert_eq!(sent, 1234);
    assert!(sink.is_connected());
    let mut severities = BTreeMap::<u8, usize>::new();
    for expected in 0..1234u64 {
        match next_seen(&mut rx).await {
            Seen::Frame { conn, text } => {
                assert_eq!(conn, 0, "one connection for every batch");
                assert_eq!(check_message(&text, &log, 10), expected);
                let pri: u8 = text[1..text.find('>').unwrap()].parse().unwrap();
                *severities.entry(pri % 8).or_default() += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    // Informational, warning (deny) and error (key.unwrap_failed).
    assert_eq!(severities.keys().copied().collect::<Vec<_>>(), [3, 4, 6]);
    sink.close().await;
    assert!(!sink.is_connected());
}

#[tokio::test]
async fn syslog_refuses_a_tls12_only_receiver() {
    let pki = pki();
    let (listener, addr) = listen().await;
    let mut rx = start_receiver(
        listener,
        server_config(&pki, &[&rustls::version::TLS12]),
        None,
    );
    let mut sink = syslog_sink(&pki, addr, 13);
    let batch = [OcsfRecord::from_event(&event(0), 0)];
    let err = sink.send(&batch).await.unwrap_err();
    // The receiver answers a TLS 1.3-only hello with a protocol_version
    // alert.
    assert!(
        matches!(err, SinkError::Connect { ref reason, .. } if reason.contains("ProtocolVersion")),
        "{err}"
    );
    assert!(!sink.is_connected());
    match next_seen(&mut rx).await {
        Seen::HandshakeFailed(reason) => {
            assert!(reason.contains("Tls12NotOffered"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn syslog_refuses_an_untrusted_or_misnamed_receiver() {
    let pki = pki();
    let other = pki_other();
    let (listener, addr) = listen().await;
    let _rx = start_receiver(
        listener,
        server_config(&pki, &[&rustls::version::TLS13]),
        None,
    );
    let batch = [OcsfRecord::from_event(&event(0), 0)];
    // Another CA.
    let mut sink = syslog_sink(&other, addr, 13);
    let err = sink.send(&batch).await.unwrap_err();
    assert!(
        matches!(err, SinkError::Connect { ref reason, .. } if reason.contains("certificate")),
        "{err}"
    );
    // The right CA, the wrong name.
    let mut config = SyslogConfig::new(addr.to_string(), "syslog.example", "/nonexistent");
    config.connect_timeout = Duration::from_secs(5);
    let mut sink = SyslogSink::with_ca_pem(&config, pki.ca_pem.as_bytes()).unwrap();
    let err = sink.send(&batch).await.unwrap_err();
    assert!(matches!(err, SinkError::Connect { .. }), "{err}");
    // Configuration errors.
    assert!(matches!(
        SyslogSink::with_ca_pem(&config, b"no pem here"),
        Err(SinkError::Config(_))
    ));
    config.facility = 24;
    assert!(matches!(
        SyslogSink::with_ca_pem(&config, pki.ca_pem.as_bytes()),
        Err(SinkError::Config(_))
    ));
    assert!(matches!(
        SyslogSink::new(&SyslogConfig::new("x:1", "x", "/nonexistent/ca.pem")),
        Err(SinkError::Config(_))
    ));
}

fn pki_other() -> Pki {
    pki()
}

#[tokio::test]
async fn syslog_reconnects_after_the_receiver_closes() {
    let pki = pki();
    let (listener, addr) = listen().await;
    let mut rx = start_receiver(
        listener,
        server_config(&pki, &[&rustls::version::TLS13]),
        Some(10),
    );
    let mut log = MemLog::with_events(10);
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = Exporter::open(dir.path(), "syslog").unwrap();
    let mut sink = syslog_sink(&pki, addr, 13);
    exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        match next_seen(&mut rx).await {
            Seen::Frame { conn: 0, text } => got.push(check_message(&text, &log, 13)),
            Seen::Closed { conn: 0 } => break,
            other => panic!("{other:?}"),
        }
    }
    // The receiver closed the idle connection; the next batch notices
    // before writing and goes out on a new connection: nothing lost.
    tokio::time::sleep(Duration::from_millis(50)).await;
    log.push_events(5);
    exporter
        .export_available(&log, &mut sink, None)
        .await
        .unwrap();
    for _ in 0..5 {
        match next_seen(&mut rx).await {
            Seen::Frame { conn: 1, text } => got.push(check_message(&text, &log, 13)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, (0..15).collect::<Vec<_>>());
    assert_eq!(exporter.cursor().next(), Some(15));
}

#[tokio::test]
async fn syslog_loop_waits_for_a_receiver_that_is_down() {
    let pki = pki();
    // Reserve a port, then free it: nothing listens there at first.
    let (listener, addr) = listen().await;
    drop(listener);
    let log = MemLog::with_events(25);
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let options = ExportOptions {
        poll: Duration::from_millis(20),
        batch_size: 10,
        retry_initial: Duration::from_millis(10),
        retry_max: Duration::from_millis(80),
    };
    let task = {
        let log = log.clone();
        let state = dir.path().to_path_buf();
        let sink = syslog_sink(&pki, addr, 13);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_exporter_with(
                move || Ok::<_, String>(log.clone()),
                &state,
                "syslog",
                sink,
                options,
                shutdown,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(Cursor::load(dir.path(), "syslog").unwrap().next(), None);
    let listener = TcpListener::bind(addr).await.unwrap();
    let mut rx = start_receiver(
        listener,
        server_config(&pki, &[&rustls::version::TLS13]),
        None,
    );
    let mut got = Vec::new();
    while got.len() < 25 {
        match next_seen(&mut rx).await {
            Seen::Frame { text, .. } => got.push(check_message(&text, &log, 13)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, (0..25).collect::<Vec<_>>());
    wait_for("the cursor", || {
        Cursor::load(dir.path(), "syslog").unwrap().next() == Some(25)
    })
    .await;
    shutdown.cancel();
    let total = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(total, 25);
}

// ---------------------------------------------------------------------
// End to end: the log on disk, `LogReader`, `run_exporter`.

const ORIGIN: &str = "rampart.test/audit";

fn open_log(dir: &Path) -> rampart_audit::log::AuditLog {
    let signer =
        Arc::new(rampart_audit::note::Ed25519Signer::from_seed(ORIGIN, &[7u8; 32]).unwrap());
    rampart_audit::log::AuditLog::open(rampart_audit::log::LogConfig::new(dir, ORIGIN), signer)
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_from_the_log_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let state = dir.path().join("state");
    let out = dir.path().join("audit.jsonl");
    let log = open_log(&audit);
    for i in 0..1500 {
        log.append(event(i).to_entry().unwrap()).unwrap();
    }
    log.append(b"written by something else".to_vec()).unwrap();
    log.sync().await.unwrap();

    let shutdown = CancellationToken::new();
    // Spawned: the exporter's future is `Send`.
    let task = {
        let (audit, state, out, shutdown) =
            (audit.clone(), state.clone(), out.clone(), shutdown.clone());
        tokio::spawn(async move {
            rampart_audit::sink::run_exporter(
                &audit,
                &state,
                "file",
                FileSink::new(out),
                Duration::from_millis(20),
                shutdown,
            )
            .await
        })
    };
    wait_for("the first entries", || file_lines(&out).len() == 1501).await;
    for i in 1501..1800 {
        log.append(event(i).to_entry().unwrap()).unwrap();
    }
    log.sync().await.unwrap();
    wait_for("the new entries", || file_lines(&out).len() == 1800).await;
    shutdown.cancel();
    let total = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(total, 1800);
    assert_eq!(Cursor::load(&state, "file").unwrap().next(), Some(1800));

    // Each line is the OCSF record of the entry at its index.
    let reader = rampart_audit::reader::LogReader::open(&audit).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    for (i, line) in text.lines().enumerate() {
        let i = i as u64;
        let got: Value = serde_json::from_str(line).unwrap();
        let expected = OcsfRecord::from_entry(&reader.get(i).unwrap(), i, 0);
        if i == 1500 {
            assert_eq!(got["unmapped"]["type"], UNPARSABLE_TYPE);
            assert_eq!(
                got["unmapped"]["entry_base64"],
                expected.value["unmapped"]["entry_base64"]
            );
        } else {
            assert_eq!(got, expected.value, "line {i}");
        }
    }
    log.close().unwrap();
}
