//! `rampart audit bench`: the log against SQLite and against the disk,
//! in one run, on realistic entries.
//!
//! 1. Appends per second through [`AuditLog::append`] from several
//!    producer threads, with the configured group commit, measured until
//!    every entry is durable.
//! 2. The same entries inserted into SQLite (WAL, `synchronous=FULL`) in
//!    batched transactions.
//! 3. The same bytes written sequentially to a plain file with an fsync
//!    every group-commit interval: the physical ceiling.
//! 4. Verification speed ([`crate::verify::verify_dir`]).
//! 5. Inclusion-proof generation time ([`crate::proof::Prover`]) over
//!    random indices.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::{ClockSync, Timestamp};
use crate::event::{Actor, AuditEvent, Decision};
use crate::log::{io_err, AuditLog, LogConfig, LogError};
use crate::note::Ed25519Signer;
use crate::proof::Prover;
use crate::segment::encode_record;
use crate::verify::{verify_dir, VerifyOptions};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Where to write (a fresh directory is created inside and removed
    /// afterwards); the system temporary directory by default. Use the
    /// disk the audit log will live on.
    pub dir: Option<PathBuf>,
    /// Entries to write (500 000).
    pub entries: u64,
    /// Producer threads for the log (2).
    pub producers: usize,
    /// Group commit of the log and fsync interval of the raw baseline
    /// (10 ms).
    pub group_commit: Duration,
    /// Entries per SQLite transaction (1 000).
    pub sqlite_batch: usize,
    /// Inclusion proofs to generate (10 000).
    pub proofs: usize,
    /// Keep the written files.
    pub keep: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            dir: None,
            entries: 500_000,
            producers: 2,
            group_commit: Duration::from_millis(10),
            sqlite_batch: 1_000,
            proofs: 10_000,
            keep: false,
        }
    }
}

/// One throughput figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// Entries written.
    pub entries: u64,
    /// Seconds taken.
    pub secs: f64,
    /// Entries per second.
    pub entries_per_sec: f64,
    /// Megabytes (10^6 bytes) of entries per second.
    pub mb_per_sec: f64,
}

impl Throughput {
    fn new(entries: u64, bytes: u64, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Self {
            entries,
            secs,
            entries_per_sec: entries as f64 / secs,
            mb_per_sec: bytes as f64 / secs / 1e6,
        }
    }
}

/// The results of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// Where the files were written.
    pub dir: PathBuf,
    /// Entries per test.
    pub entries: u64,
    /// Mean entry size in bytes.
    pub entry_bytes_mean: f64,
    /// Producer threads of the log test.
    pub producers: usize,
    /// Group commit interval, milliseconds.
    pub group_commit_ms: f64,
    /// The audit log, until every entry is durable.
    pub log: Throughput,
    /// Appends refused with `QueueFull` and retried by the producers.
    pub log_queue_full_retries: u64,
    /// SQLite, WAL, `synchronous=FULL`, batched transactions.
    pub sqlite: Throughput,
    /// Entries per SQLite transaction.
    pub sqlite_batch: usize,
    /// A plain file written sequentially with an fsync every group-commit
    /// interval.
    pub raw: Throughput,
    /// Log throughput divided by SQLite throughput.
    pub log_vs_sqlite: f64,
    /// Log throughput divided by the raw ceiling.
    pub log_vs_raw: f64,
    /// Verification of the whole log.
    pub verify: Throughput,
    /// Inclusion proofs generated.
    pub proofs: usize,
    /// Mean time to generate one inclusion proof (reading the entry and
    /// the tree hashes), microseconds.
    pub proof_mean_us: f64,
    /// 99th percentile, microseconds.
    pub proof_p99_us: f64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(String),
    /// A proof could not be generated.
    #[error("proof: {0}")]
    Proof(String),
    /// Verification failed.
    #[error("verify: {0}")]
    Verify(String),
    /// A worker thread failed.
    #[error("a benchmark thread failed: {0}")]
    Thread(String),
}

/// Realistic entries: request decisions of about 300 bytes.
fn entries(n: u64) -> Result<Vec<Vec<u8>>, BenchError> {
    let routes = [
        "/api/v3/order",
        "/api/v3/account",
        "/sapi/v1/capital/withdraw/apply",
        "/api/v3/openOrders",
    ];
    let codes = ["AUTH_BAD_SIGNATURE", "AUTHZ_SCOPE", "RATE_LIMITED", "OK"];
    (0..n)
        .map(|i| {
            let ts = Timestamp {
                micros: 1_750_000_000_000_000 + i64::try_from(i).unwrap_or(i64::MAX),
                sync: ClockSync::Synced,
            };
            let k = usize::try_from(i % 4).unwrap_or(0);
            let route = routes.get(k).copied().unwrap_or("/");
            let deny = i.is_multiple_of(5);
            let mut ev = AuditEvent::new(
                ts,
                crate::event::types::AUTHZ_DECISION,
                Actor::key(format!(
                    "ak_{:012x}",
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
                )),
                "order.create",
                route,
                if deny {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
            )
            .account(format!("acct-{:06}", i % 1000))
            .source_ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, (i % 250) as u8)))
            .request_id(format!("{:016x}", i.wrapping_mul(0x2545_f491_4f6c_dd1d)));
            if deny {
                ev = ev.reason(codes.get(k).copied().unwrap_or("OK"));
            }
            ev.to_entry().map_err(|e| BenchError::Thread(e.to_string()))
        })
        .collect()
}

/// A small deterministic generator for proof indices.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn join<T>(h: std::thread::JoinHandle<T>) -> Result<T, BenchError> {
    h.join()
        .map_err(|_| BenchError::Thread("a thread panicked".to_owned()))
}

fn bench_log(
    dir: PathBuf,
    data: Arc<Vec<Vec<u8>>>,
    producers: usize,
    group_commit: Duration,
) -> Result<(Throughput, u64), BenchError> {
    let mut cfg = LogConfig::new(&dir, "rampart.bench/audit");
    cfg.group_commit = group_commit;
    let signer = Arc::new(Ed25519Signer::generate("rampart.bench/audit").map_err(LogError::from)?);
    let (log, _) = AuditLog::open(cfg, signer)?;
    let producers = producers.max(1);
    let bytes: u64 = data.iter().map(|e| e.len() as u64).sum();
    let start = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let log = log.clone();
            let data = data.clone();
            std::thread::spawn(move || -> Result<u64, LogError> {
                let mut retries = 0u64;
                for e in data.iter().skip(p).step_by(producers) {
                    loop {
                        match log.append(e.clone()) {
                            Ok(()) => break,
                            Err(LogError::QueueFull) => {
                                // Back off instead of spinning: the writer
                                // needs the CPU.
                                retries += 1;
                                std::thread::sleep(Duration::from_micros(50));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Ok(retries)
            })
        })
        .collect();
    let mut retries = 0;
    for h in handles {
        retries += join(h)??;
    }
    log.sync().wait()?;
    let elapsed = start.elapsed();
    log.close()?;
    Ok((Throughput::new(data.len() as u64, bytes, elapsed), retries))
}

async fn bench_sqlite(
    dir: PathBuf,
    data: Arc<Vec<Vec<u8>>>,
    batch: usize,
) -> Result<Throughput, BenchError> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let err = |e: sqlx::Error| BenchError::Sqlite(e.to_string());
    let options = SqliteConnectOptions::new()
        .filename(dir.join("bench.sqlite3"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(err)?;
    sqlx::query("CREATE TABLE audit (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL)")
        .execute(&pool)
        .await
        .map_err(err)?;
    let bytes: u64 = data.iter().map(|e| e.len() as u64).sum();
    let start = Instant::now();
    for (b, chunk) in data.chunks(batch.max(1)).enumerate() {
        let mut tx = pool.begin().await.map_err(err)?;
        for (i, e) in chunk.iter().enumerate() {
            let idx = i64::try_from(b * batch.max(1) + i).unwrap_or(i64::MAX);
            sqlx::query("INSERT INTO audit (idx, entry) VALUES (?, ?)")
                .bind(idx)
                .bind(e.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
    }
    let elapsed = start.elapsed();
    pool.close().await;
    Ok(Throughput::new(data.len() as u64, bytes, elapsed))
}

fn bench_raw(dir: PathBuf, data: &[Vec<u8>], every: Duration) -> Result<Throughput, BenchError> {
    let path = dir.join("raw.bin");
    let file = File::create(&path).map_err(io_err("creating", &path))?;
    let mut out = BufWriter::with_capacity(128 * 1024, file);
    let bytes: u64 = data.iter().map(|e| e.len() as u64).sum();
    let mut rec = Vec::with_capacity(1024);
    let start = Instant::now();
    let mut last = start;
    for (i, e) in data.iter().enumerate() {
        rec.clear();
        encode_record(i as u64, e, &mut rec)?;
        out.write_all(&rec).map_err(io_err("writing", &path))?;
        if last.elapsed() >= every {
            out.flush().map_err(io_err("writing", &path))?;
            out.get_ref()
                .sync_data()
                .map_err(io_err("syncing", &path))?;
            last = Instant::now();
        }
    }
    out.flush().map_err(io_err("writing", &path))?;
    out.get_ref()
        .sync_data()
        .map_err(io_err("syncing", &path))?;
    Ok(Throughput::new(data.len() as u64, bytes, start.elapsed()))
}

fn bench_proofs(dir: &std::path::Path, count: usize) -> Result<(f64, f64), BenchError> {
    let prover = Prover::open(dir).map_err(|e| BenchError::Proof(e.to_string()))?;
    let size = prover.checkpoint().checkpoint.size.max(1);
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let index = rng.next() % size;
        let t = Instant::now();
        let p = prover
            .inclusion(index)
            .map_err(|e| BenchError::Proof(e.to_string()))?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p);
    }
    if times.is_empty() {
        return Ok((0.0, 0.0));
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let p99 = times
        .get((times.len() * 99 / 100).min(times.len() - 1))
        .copied()
        .unwrap_or(0.0);
    Ok((mean, p99))
}

/// Runs the benchmark.
///
/// # Errors
///
/// [`BenchError`] if a test could not run (disk full, SQLite error).
pub async fn run(opts: BenchOptions) -> Result<BenchReport, BenchError> {
    let base = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "rampart-audit-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).map_err(io_err("creating directory", &dir))?;
    let result = run_in(&dir, &opts).await;
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(dir: &std::path::Path, opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let n = opts.entries.max(1);
    let data = Arc::new(entries(n)?);
    let bytes: u64 = data.iter().map(|e| e.len() as u64).sum();
    let log_dir = dir.join("log");
    // (a) the log.
    let (d, p, g, ld) = (
        data.clone(),
        opts.producers,
        opts.group_commit,
        log_dir.clone(),
    );
    let (log, retries) = tokio::task::spawn_blocking(move || bench_log(ld, d, p, g))
        .await
        .map_err(|e| BenchError::Thread(e.to_string()))??;
    // (b) SQLite.
    let sqlite = bench_sqlite(dir.to_path_buf(), data.clone(), opts.sqlite_batch).await?;
    // (c) the raw ceiling.
    let (d, rd, every) = (data.clone(), dir.to_path_buf(), opts.group_commit);
    let raw = tokio::task::spawn_blocking(move || bench_raw(rd, &d, every))
        .await
        .map_err(|e| BenchError::Thread(e.to_string()))??;
    // (d) verification.
    let ld = log_dir.clone();
    let verify = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let r = verify_dir(&ld, &VerifyOptions::default())
            .map_err(|f| BenchError::Verify(f.to_string()))?;
        Ok::<_, BenchError>((r.size, t.elapsed()))
    })
    .await
    .map_err(|e| BenchError::Thread(e.to_string()))??;
    // (e) proofs.
    let (ld, count) = (log_dir.clone(), opts.proofs);
    let (proof_mean_us, proof_p99_us) =
        tokio::task::spawn_blocking(move || bench_proofs(&ld, count))
            .await
            .map_err(|e| BenchError::Thread(e.to_string()))??;
    Ok(BenchReport {
        dir: dir.to_path_buf(),
        entries: n,
        entry_bytes_mean: bytes as f64 / n as f64,
        producers: opts.producers,
        group_commit_ms: opts.group_commit.as_secs_f64() * 1e3,
        log_vs_sqlite: log.entries_per_sec / sqlite.entries_per_sec.max(1e-9),
        log_vs_raw: log.entries_per_sec / raw.entries_per_sec.max(1e-9),
        log,
        log_queue_full_retries: retries,
        sqlite,
        sqlite_batch: opts.sqlite_batch,
        raw,
        verify: Throughput::new(verify.0, bytes, verify.1),
        proofs: opts.proofs,
        proof_mean_us,
        proof_p99_us,
    })
}
