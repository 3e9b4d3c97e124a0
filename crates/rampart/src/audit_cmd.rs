//! `rampart audit …`: verify, proofs, search, export, retention, bench.
//!
//! Exit codes: 0 success, 1 verification failed (tampering or damage), 2
//! usage or I/O errors.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use rampart_audit::note::VerifierKey;
use rampart_audit::verify::{VerifyFailure, VerifyOptions};

/// Exit code when verification finds tampering or damage.
const EXIT_TAMPERED: u8 = 1;
/// Exit code for usage and I/O errors.
const EXIT_USAGE: u8 = 2;

/// Where the log is: an audit directory, or a data directory holding one
/// (`DIR/audit`, or the demo's `DIR/gateway/audit`).
#[derive(clap::Args, Debug, Clone)]
pub struct Source {
    /// Data directory (or the audit directory itself).
    #[arg(long, default_value = "./rampart-data")]
    data_dir: PathBuf,
}

impl Source {
    fn dir(&self) -> PathBuf {
        resolve_dir(&self.data_dir)
    }
}

/// The audit directory for `dir`: itself if it holds a log, else
/// `dir/audit`, else the demo layout `dir/gateway/audit`.
fn resolve_dir(dir: &Path) -> PathBuf {
    for candidate in [
        dir.to_path_buf(),
        dir.join("audit"),
        dir.join("gateway").join("audit"),
    ] {
        if crate::audit::is_log_dir(&candidate) {
            return candidate;
        }
    }
    dir.join("audit")
}

/// `rampart audit` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute every leaf and the tree, check every checkpoint signature
    /// and that each checkpoint is consistent with the last. Exit 1 naming
    /// the first bad index on any altered, deleted, inserted, reordered or
    /// truncated entry.
    Verify {
        /// Data directory (or the audit directory itself).
        #[arg(long, conflicts_with = "export")]
        data_dir: Option<PathBuf>,
        /// An export bundle (`rampart audit export`) instead of a directory.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Verifier key file (`name+keyid+base64`, as `rampart audit export`
        /// writes it); default: the one stored beside the log or in the bundle.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// A checkpoint you kept earlier: the log must still contain it.
        #[arg(long)]
        from_checkpoint: Option<PathBuf>,
    },
    /// Inclusion proof of entry N against the latest checkpoint (JSON).
    Proof {
        /// Entry index.
        #[arg(long)]
        index: u64,
        #[command(flatten)]
        source: Source,
    },
    /// Consistency proof from tree size M to the latest checkpoint (JSON).
    Consistency {
        /// Size of the older tree (a checkpoint you kept).
        #[arg(long)]
        old_size: u64,
        #[command(flatten)]
        source: Source,
    },
    /// Search events through the index (updated first). Times are RFC 3339
    /// (`2026-11-24T10:00:00Z`) or an age (`15m`, `2h`, `7days`).
    Search {
        /// Events at or after this time.
        #[arg(long)]
        since: Option<String>,
        /// Events before this time.
        #[arg(long)]
        until: Option<String>,
        /// Event type, e.g. `auth.failure`, or a prefix with `*` (`key.*`).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Actor id (key id, user, `rampart`).
        #[arg(long)]
        actor: Option<String>,
        /// Account.
        #[arg(long)]
        account: Option<String>,
        /// Decision: allow, deny, step_up, info.
        #[arg(long)]
        decision: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        source: Source,
    },
    /// Export a bundle an auditor can verify offline: entries (JSON lines),
    /// the checkpoints covering them and the verifier key.
    Export {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// First index (default: the oldest retained).
        #[arg(long)]
        from: Option<u64>,
        /// One past the last index (default: the latest checkpoint's size).
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        source: Source,
    },
    /// Print the verifier key of the log (give it to auditors).
    PublicKey {
        #[command(flatten)]
        source: Source,
    },
    /// Archive and delete segments entirely older than the retention
    /// (default 12 months; never anything inside it).
    Prune {
        /// TOML configuration file (retention, directories).
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Measure appends with group commit against SQLite batches and the raw
    /// write+fsync ceiling, verification speed and proof generation.
    Bench {
        /// Scratch directory (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Events to append.
        #[arg(long, default_value_t = 500_000)]
        events: u64,
    },
}

/// Runs a `rampart audit …` command.
pub fn run(cmd: AuditCmd) -> ExitCode {
    crate::logging::init_stderr("warn");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    rt.block_on(async move {
        match run_async(cmd).await {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("rampart audit: {msg}");
                ExitCode::from(EXIT_USAGE)
            }
        }
    })
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).map_err(|e| e.to_string())?
    );
    Ok(())
}

async fn run_async(cmd: AuditCmd) -> Result<ExitCode, String> {
    match cmd {
        AuditCmd::Verify {
            data_dir,
            export,
            public_key,
            from_checkpoint,
        } => verify(data_dir, export, public_key, from_checkpoint),
        AuditCmd::Proof { index, source } => {
            let p =
                rampart_audit::proof::inclusion(&source.dir(), index).map_err(|e| e.to_string())?;
            print_json(&p)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Consistency { old_size, source } => {
            let p = rampart_audit::proof::consistency(&source.dir(), old_size)
                .map_err(|e| e.to_string())?;
            print_json(&p)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Search {
            since,
            until,
            event_type,
            actor,
            account,
            decision,
            limit,
            source,
        } => {
            let now = now_us();
            let query = rampart_audit::index::Query {
                since_us: since.as_deref().map(|s| parse_time(s, now)).transpose()?,
                until_us: until.as_deref().map(|s| parse_time(s, now)).transpose()?,
                event_type,
                actor,
                account,
                decision: decision
                    .as_deref()
                    .map(|d| {
                        serde_json::from_value(serde_json::Value::String(d.to_owned())).map_err(
                            |_| format!("unknown decision `{d}`: allow, deny, step_up or info"),
                        )
                    })
                    .transpose()?,
                after_idx: None,
                limit: Some(limit),
            };
            search(&source.dir(), &query).await
        }
        AuditCmd::Export {
            out,
            from,
            to,
            source,
        } => {
            let range = match (from, to) {
                (None, None) => None,
                (f, t) => Some((f.unwrap_or(0), t.unwrap_or(u64::MAX))),
            };
            let report = rampart_audit::bundle::export_bundle(&source.dir(), &out, range)
                .map_err(|e| e.to_string())?;
            eprintln!("{report:?}");
            println!("bundle written to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::PublicKey { source } => {
            let key = read_text(&source.dir().join("audit.pub"))?;
            println!("{}", key.trim());
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Prune { config } => prune(&config),
        AuditCmd::Bench { dir, events } => {
            let opts = rampart_audit::bench::BenchOptions {
                entries: events,
                dir,
                ..Default::default()
            };
            let report = rampart_audit::bench::run(opts)
                .await
                .map_err(|e| e.to_string())?;
            print_json(&report)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

use rampart_audit::clock::now_us;

/// RFC 3339 time, or an age before `now_us` (`15m`, `2h`, `7days`).
fn parse_time(s: &str, now_us: i64) -> Result<i64, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .map_err(|_| format!("`{s}` is before 1970"));
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(now_us.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))),
        Err(_) => Err(format!(
            "`{s}` is neither an RFC 3339 time nor an age like `15m`"
        )),
    }
}

fn verify(
    data_dir: Option<PathBuf>,
    export: Option<PathBuf>,
    public_key: Option<PathBuf>,
    from_checkpoint: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let public_key = public_key
        .map(|p| {
            let text = read_text(&p)?;
            VerifierKey::parse(text.trim()).map_err(|e| format!("{}: {e}", p.display()))
        })
        .transpose()?;
    let from_checkpoint = from_checkpoint.map(|p| read_text(&p)).transpose()?;
    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(0);
    if tty {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "verify [{bar:40}] {pos}/{len} entries ({per_sec}, eta {eta})",
            )
            .map_err(|e| e.to_string())?,
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let progress_bar = bar.clone();
    let opts = VerifyOptions {
        public_key,
        from_checkpoint,
        progress: Some(Box::new(move |done: u64, total: u64| {
            progress_bar.set_length(total);
            progress_bar.set_position(done);
        })),
    };
    let result = match (&export, &data_dir) {
        (Some(bundle), _) => rampart_audit::verify::verify_bundle(bundle, &opts),
        (None, dir) => {
            let dir = resolve_dir(dir.as_deref().unwrap_or(Path::new("./rampart-data")));
            rampart_audit::verify::verify_dir(&dir, &opts)
        }
    };
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            println!(
                "OK: {} entries [{}, {}) of {} verified; root {}; {} checkpoint(s) checked ({} outside the entries present); latest checkpoint covers {}",
                r.size.saturating_sub(r.first_index),
                r.first_index,
                r.size,
                r.origin.as_deref().unwrap_or("?"),
                r.root,
                r.checkpoints_checked,
                r.checkpoints_skipped,
                r.latest_checkpoint_size.map_or_else(|| "nothing yet".to_owned(), |s| format!("{s} entries")),
            );
            if r.signed_size < r.size {
                println!(
                    "note: entries [{}, {}) are not yet covered by a signed checkpoint",
                    r.signed_size, r.size
                );
            }
            if r.keys_from_data {
                println!(
                    "note: the verifier key was read from the log itself; this proves the log is intact under that key. Pass --public-key with a key you obtained independently to prove it is the gateway's log."
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            report_failure(&failure);
            Ok(ExitCode::from(EXIT_TAMPERED))
        }
    }
}

fn report_failure(f: &VerifyFailure) {
    eprintln!("VERIFICATION FAILED: {f}");
    if let Some(i) = f.first_bad_index {
        eprintln!("first bad index: {i}");
    }
    if let Some((a, b)) = f.range {
        eprintln!("the damage lies in entries [{a}, {b})");
    }
}

async fn search(dir: &Path, query: &rampart_audit::index::Query) -> Result<ExitCode, String> {
    let reader = rampart_audit::reader::LogReader::open(dir).map_err(|e| e.to_string())?;
    let index = rampart_audit::index::AuditIndex::open_in_dir(dir)
        .await
        .map_err(|e| e.to_string())?;
    index.catch_up(&reader).await.map_err(|e| e.to_string())?;
    let hits = index.search(query).await.map_err(|e| e.to_string())?;
    for i in &hits {
        let entry = reader.get(*i).map_err(|e| e.to_string())?;
        println!(
            "{{\"index\":{i},\"event\":{}}}",
            String::from_utf8_lossy(&entry)
        );
    }
    index.close().await;
    eprintln!("{} event(s)", hits.len());
    Ok(ExitCode::SUCCESS)
}

fn prune(config: &Path) -> Result<ExitCode, String> {
    let cfg = rampart_core::config::load(config).map_err(|errs| {
        errs.0
            .iter()
            .map(|e| format!("{}: {e}", config.display()))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let dir = crate::audit::log_dir(&cfg);
    let archive = cfg.audit.archive_dir_in(&cfg.storage.data_dir);
    let report = rampart_audit::retention::prune(&dir, cfg.audit.retention, &archive, now_us())
        .map_err(|e| e.to_string())?;
    println!("{report:?}");
    Ok(ExitCode::SUCCESS)
}
