#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! The benchmark runs end to end on a small size.

use std::time::Duration;

use rampart_audit::bench::{run, BenchOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_small() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(BenchOptions {
        dir: Some(dir.path().to_path_buf()),
        entries: 5_000,
        producers: 2,
        group_commit: Duration::from_millis(10),
        sqlite_batch: 500,
        proofs: 200,
        keep: false,
    })
    .await
    .unwrap();
    assert_eq!(report.entries, 5_000);
    assert_eq!(report.verify.entries, 5_000);
    assert!(
        report.entry_bytes_mean > 250.0 && report.entry_bytes_mean < 400.0,
        "{report:?}"
    );
    assert!(report.log.entries_per_sec > 0.0 && report.sqlite.entries_per_sec > 0.0);
    assert!(report.proof_mean_us > 0.0);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("log_vs_sqlite"));
    // The working directory was removed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
