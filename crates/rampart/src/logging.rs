//! Structured JSON logs to stdout. `RUST_LOG` overrides the configured level.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once; later calls are ignored.
pub fn init(level: &str) {
    init_to(level, false);
}

/// As [`init`], but to stderr: for commands whose stdout is their output
/// (`rampart keys …`, `rampart call`).
pub fn init_stderr(level: &str) {
    init_to(level, true);
}

fn init_to(level: &str, stderr: bool) {
    // rustls logs client mistakes (e.g. an IP address sent as SNI) at warn:
    // one line per connection that any client can trigger, so only its
    // errors are kept unless RUST_LOG says otherwise.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},rustls=error")))
        .unwrap_or_else(|_| EnvFilter::new("info,rustls=error"));
    let b = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter);
    let _ = if stderr {
        b.with_writer(std::io::stderr).try_init()
    } else {
        b.with_writer(std::io::stdout).try_init()
    };
}
