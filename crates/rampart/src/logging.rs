//! Structured JSON logs to stdout. `RUST_LOG` overrides the configured level.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once; later calls are ignored.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
