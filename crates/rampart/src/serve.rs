//! `rampart serve --config FILE`: validate before binding, serve, reload on
//! SIGHUP, drain on SIGTERM / Ctrl-C.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use rampart_audit::event::types;

use tokio::signal::unix::{signal, SignalKind};

use crate::EXIT_CONFIG;

/// Worker threads serving the public listener: `RAMPART_WORKERS` (1..=256),
/// default one per core.
fn workers() -> usize {
    std::env::var("RAMPART_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=256).contains(n))
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(std::num::NonZeroUsize::get)
        })
        .unwrap_or(1)
}

/// Runs the gateway until a termination signal.
pub fn run(path: &Path) -> ExitCode {
    let cfg = match rampart_core::config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{}: {e}", path.display());
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::logging::init(&cfg.log.level);
    crate::keys::harden_process();
    // The control runtime (signals, reloads, health checks, admin); the public
    // listener runs thread-per-core on its own workers.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Signal handlers first: a SIGHUP or SIGTERM that arrives while the
        // gateway starts must not take the default action (terminate).
        let (mut hup, mut term) = match (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(h), Ok(t)) => (h, t),
            _ => {
                eprintln!("cannot install signal handlers");
                return ExitCode::FAILURE;
            }
        };
        // Keys and store first: a wrong passphrase, PIN or permission stops
        // the start before anything listens.
        let clock = crate::audit::clock(&cfg);
        let key_sink = Arc::new(crate::audit::KeyAuditSink::new(
            Arc::clone(&clock) as Arc<dyn rampart_audit::Clock>,
            rampart_audit::Actor::system(),
        ));
        let vault = match crate::keys::open_vault_with(
            &cfg,
            Some(Arc::clone(&key_sink) as Arc<dyn rampart_crypto::KeyEventSink>),
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                eprintln!("rampart serve: {e}");
                tracing::error!(error = %e, "start failed");
                return ExitCode::FAILURE;
            }
        };
        // The audit log next: nothing is served that cannot be audited.
        let audit =
            match crate::audit::AuditSession::start(&cfg, path, &vault, clock, &key_sink).await {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("rampart serve: {e}");
                    tracing::error!(error = %e, "start failed");
                    return ExitCode::FAILURE;
                }
            };
        let maintenance_stop = tokio_util::sync::CancellationToken::new();
        let maintenance = vault.spawn_maintenance(maintenance_stop.clone());
        let auth = match crate::keys::auth_services(&cfg, &vault, audit.auditor()) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("rampart serve: {e}");
                return ExitCode::FAILURE;
            }
        };
        let store = vault.store().clone();
        let running =
            match rampart_gateway::start_sharded(cfg, workers(), Some(auth), Some(store)).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    tracing::error!(error = %e, "start failed");
                    return ExitCode::FAILURE;
                }
            };
        audit
            .record(
                audit
                    .event(
                        types::GATEWAY_START,
                        "gateway.start",
                        &running.addr.to_string(),
                    )
                    .plain("version", env!("CARGO_PKG_VERSION")),
            )
            .await;
        let gw = running.gateway.clone();
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!(file = %path.display(), "SIGHUP: reloading configuration");
                    let result = gw.reload_from_file(path).map_err(|e| e.to_string());
                    audit.reloaded(path, &result).await;
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        tracing::info!("shutting down: draining connections");
        gw.shutdown();
        gw.drained().await;
        maintenance_stop.cancel();
        let _ = maintenance.await;
        audit.finish().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}
