//! Runs the audit log benchmark and prints its report as JSON.
//!
//! ```text
//! cargo run --release -p rampart-audit --example audit_bench -- [entries] [dir]
//! ```

use std::process::ExitCode;

use rampart_audit::bench::{run, BenchOptions};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut opts = BenchOptions::default();
    if let Some(n) = args.next().and_then(|a| a.parse().ok()) {
        opts.entries = n;
    }
    if let Some(dir) = args.next() {
        opts.dir = Some(dir.into());
    }
    match run(opts).await {
        Ok(report) => match serde_json::to_string_pretty(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("audit bench: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("audit bench: {e}");
            ExitCode::FAILURE
        }
    }
}
