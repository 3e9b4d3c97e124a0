//! The binary's audit glue: the checkpoint signer over the key provider,
//! the field sealer over the audit data key, the key-event sink, the
//! gateway's audit log, and the administrative records of CLI commands.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rampart_audit::event::types;
use rampart_audit::log::{AuditLog, LogConfig, LogError};
use rampart_audit::note::CheckpointSigner;
use rampart_audit::{Actor, AuditEvent, Clock, Decision, FieldSealer, SyncSource, SystemClock};
use rampart_core::config::{ClockSyncConfig, Config};
use rampart_crypto::{AadContext, KeyEvent, KeyEventSink, KeyProvider, Keyring, Purpose};

/// Signs checkpoints with the key provider's Ed25519 key (in the HSM when
/// the provider is PKCS#11).
#[derive(Debug)]
pub struct ProviderSigner {
    provider: Arc<dyn KeyProvider>,
    name: String,
    public: [u8; 32],
}

impl ProviderSigner {
    /// A signer named `name` (the checkpoint origin).
    ///
    /// # Errors
    /// The provider cannot give its public key.
    pub fn new(provider: Arc<dyn KeyProvider>, name: &str) -> Result<Self, String> {
        let public = provider
            .signing_public_key()
            .map_err(|e| format!("audit signing key: {e}"))?;
        Ok(Self {
            provider,
            name: name.to_owned(),
            public,
        })
    }
}

impl CheckpointSigner for ProviderSigner {
    fn key_name(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String> {
        self.provider.sign(msg).map_err(|e| e.to_string())
    }
}

/// Seals sensitive audit fields with the `audit-fields` data key. The AAD
/// binds record type `audit_event`, the event id and the field name.
#[derive(Debug)]
pub struct KeyringSealer {
    keyring: Arc<Keyring>,
}

impl KeyringSealer {
    /// A sealer over `keyring`.
    #[must_use]
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self { keyring }
    }
}

const AUDIT_RECORD: &str = "audit_event";

impl FieldSealer for KeyringSealer {
    fn seal(&self, event_id: &str, field: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let ctx = AadContext::new(AUDIT_RECORD, event_id, field);
        self.keyring
            .encrypt(Purpose::AuditFields, &ctx, plaintext)
            .map_err(|e| e.to_string())
    }

    fn open(&self, event_id: &str, field: &str, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        let ctx = AadContext::new(AUDIT_RECORD, event_id, field);
        self.keyring
            .decrypt(Purpose::AuditFields, &ctx, ciphertext)
            .map(|p| p.to_vec())
            .map_err(|e| e.to_string())
    }
}

/// The audit clock for a configuration.
#[must_use]
pub fn clock(cfg: &Config) -> Arc<SystemClock> {
    Arc::new(SystemClock::new(match &cfg.audit.clock_sync {
        ClockSyncConfig::Auto => SyncSource::Auto,
        ClockSyncConfig::Assume => SyncSource::Assume,
        ClockSyncConfig::File(p) => SyncSource::File(p.clone()),
    }))
}

/// The log directory of a configuration.
#[must_use]
pub fn log_dir(cfg: &Config) -> PathBuf {
    cfg.audit.dir_in(&cfg.storage.data_dir)
}

/// The log settings of a configuration.
#[must_use]
pub fn log_config(cfg: &Config) -> LogConfig {
    let mut lc = LogConfig::new(log_dir(cfg), &cfg.audit.origin);
    lc.group_commit = cfg.audit.group_commit;
    lc.queue_capacity = cfg.audit.queue_capacity;
    lc.checkpoint_every = cfg.audit.checkpoint_every;
    lc.checkpoint_interval = cfg.audit.checkpoint_interval;
    lc.segment_max_bytes = cfg.audit.segment_max_bytes;
    lc
}

/// Where administrative records go: the log itself when this process holds
/// it, or the spool that the process holding it (a running `rampart
/// serve`) drains within a second.
#[derive(Debug, Clone)]
pub enum AdminTarget {
    /// This process writes the log.
    Log(AuditLog),
    /// Another process holds the log; records are spooled durably.
    Spool(PathBuf),
    /// Auditing is disabled in the configuration.
    Disabled,
}

impl AdminTarget {
    /// Opens the log for a CLI command, or falls back to the spool when
    /// the gateway holds it.
    ///
    /// # Errors
    /// The log cannot be opened for another reason (permissions, damage).
    pub fn open(cfg: &Config, provider: &Arc<dyn KeyProvider>) -> Result<Self, String> {
        if !cfg.audit.enabled {
            return Ok(Self::Disabled);
        }
        let signer = ProviderSigner::new(Arc::clone(provider), &cfg.audit.origin)?;
        match AuditLog::open(log_config(cfg), Arc::new(signer)) {
            Ok((log, _report)) => Ok(Self::Log(log)),
            Err(LogError::Locked(_)) => Ok(Self::Spool(log_dir(cfg))),
            Err(e) => Err(format!("audit log: {e}")),
        }
    }

    /// Writes `event` durably (fsynced log entry, or fsynced spool file).
    ///
    /// # Errors
    /// The record could not be made durable.
    pub fn record_blocking(&self, event: &AuditEvent) -> Result<(), String> {
        let entry = event.to_entry().map_err(|e| e.to_string())?;
        match self {
            Self::Log(log) => log
                .append_durable(entry)
                .wait()
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Self::Spool(dir) => rampart_audit::spool::submit(dir, &entry)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Self::Disabled => Ok(()),
        }
    }

    /// Flushes and closes the log (a no-op for the spool).
    ///
    /// # Errors
    /// The final fsync or checkpoint failed.
    pub fn close(&self) -> Result<(), String> {
        match self {
            Self::Log(log) => log.close().map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }
}

/// Turns key-management events into durable audit records. Events that
/// happen before the log is attached (while the vault opens) are held and
/// written on [`KeyAuditSink::attach`].
#[derive(Debug)]
pub struct KeyAuditSink {
    clock: Arc<dyn Clock>,
    actor: Actor,
    target: OnceLock<AdminTarget>,
    pending: Mutex<Vec<AuditEvent>>,
}

impl KeyAuditSink {
    /// A sink whose records name `actor`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>, actor: Actor) -> Self {
        Self {
            clock,
            actor,
            target: OnceLock::new(),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Starts writing to `target`, first the held events.
    pub fn attach(&self, target: AdminTarget) {
        let held = std::mem::take(&mut *self.pending.lock());
        for ev in &held {
            if let Err(e) = target.record_blocking(ev) {
                tracing::error!(target: "rampart::audit", error = %e, event = %ev.event_type, "key event not audited");
            }
        }
        let _ = self.target.set(target);
    }

    fn event(&self, e: &KeyEvent) -> AuditEvent {
        let (resource, decision) = match e {
            KeyEvent::DataKeyCreated { purpose, .. }
            | KeyEvent::DataKeysRetired { purpose, .. }
            | KeyEvent::DataKeyRewrapped { purpose, .. } => (purpose.to_string(), Decision::Info),
            KeyEvent::UnwrapFailed { purpose, .. } => (purpose.to_string(), Decision::Deny),
            KeyEvent::RootKeyCreated { provider, .. }
            | KeyEvent::RootKeysDestroyed { provider, .. } => {
                (format!("root-key/{provider}"), Decision::Info)
            }
            KeyEvent::RewrapCompleted { .. } => ("stored-fields".to_owned(), Decision::Info),
            KeyEvent::AccountShredded { account_id } => {
                (format!("account/{account_id}"), Decision::Info)
            }
            _ => ("keys".to_owned(), Decision::Info),
        };
        let mut ev = AuditEvent::new(
            self.clock.now(),
            e.name(),
            self.actor.clone(),
            e.name(),
            resource,
            decision,
        )
        .plain("detail", e.to_string());
        if let KeyEvent::AccountShredded { account_id } = e {
            ev = ev.account(account_id.as_str());
        }
        ev
    }
}

impl KeyEventSink for KeyAuditSink {
    fn record(&self, event: &KeyEvent) {
        rampart_crypto::LogSink.record(event);
        let ev = self.event(event);
        match self.target.get() {
            Some(t) => {
                if let Err(e) = t.record_blocking(&ev) {
                    tracing::error!(target: "rampart::audit", error = %e, event = event.name(), "key event not audited");
                }
            }
            None => self.pending.lock().push(ev),
        }
    }
}

/// The operator running a CLI command: `$SUDO_USER`, `$USER`, or `cli`.
#[must_use]
pub fn operator() -> Actor {
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "cli".to_owned());
    Actor::user(name)
}

/// A lifecycle or change record by the gateway itself.
#[must_use]
pub fn system_event(
    clock: &dyn Clock,
    event_type: &str,
    action: &str,
    resource: &str,
) -> AuditEvent {
    AuditEvent::new(
        clock.now(),
        event_type,
        Actor::system(),
        action,
        resource,
        Decision::Info,
    )
}

/// The gateway's audit log with its request-path handle.
pub struct GatewayAudit {
    /// The log (this process holds its lock).
    pub log: AuditLog,
    /// The request path's handle.
    pub auditor: Arc<rampart_gateway::audit::Auditor>,
}

/// Opens the audit log for `serve` / `demo`, with the checkpoint signer
/// over the vault's key provider and the sealer over its keyring.
///
/// # Errors
/// A message saying what failed (another process holds the log, damage
/// below the last checkpoint, permissions).
pub fn open_gateway_audit(
    cfg: &Config,
    vault: &rampart_vault::Vault,
    clock: Arc<SystemClock>,
) -> Result<GatewayAudit, String> {
    let signer = ProviderSigner::new(Arc::clone(vault.provider()), &cfg.audit.origin)?;
    let (log, report) = match AuditLog::open(log_config(cfg), Arc::new(signer)) {
        Ok(x) => x,
        Err(LogError::Locked(_)) => {
            return Err(format!(
                "audit log {} is held by another process (is another gateway running on this data dir?)",
                log_dir(cfg).display()
            ))
        }
        Err(e) => return Err(format!("audit log {}: {e}", log_dir(cfg).display())),
    };
    if report.truncated_bytes > 0 {
        tracing::warn!(
            target: "rampart::audit",
            bytes = report.truncated_bytes,
            torn = ?report.torn_file,
            "audit log recovered from a torn tail (unacknowledged records only)"
        );
        let ev = system_event(
            clock.as_ref(),
            types::AUDIT_RECOVERED,
            "audit.recover",
            &log_dir(cfg).display().to_string(),
        )
        .plain("truncated_bytes", report.truncated_bytes)
        .plain("size", report.size);
        if let Ok(entry) = ev.to_entry() {
            drop(log.append_durable(entry));
        }
    }
    let auditor = Arc::new(rampart_gateway::audit::Auditor::new(
        Arc::new(log.clone()),
        clock as Arc<dyn Clock>,
        Some(Arc::new(KeyringSealer::new(Arc::clone(vault.keyring()))) as Arc<dyn FieldSealer>),
        cfg.audit.on_full,
    ));
    Ok(GatewayAudit { log, auditor })
}

/// Whether `dir` looks like an audit log directory.
#[must_use]
pub fn is_log_dir(dir: &Path) -> bool {
    dir.join("LOCK").exists() || dir.join("checkpoints.log").exists()
}

/// Hex SHA-256 of a file (the configuration's fingerprint in
/// `config.loaded` records); empty if it cannot be read.
#[must_use]
pub fn file_sha256(path: &Path) -> String {
    use std::fmt::Write as _;
    match std::fs::read(path) {
        Ok(bytes) => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes)
            .as_ref()
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            }),
        Err(_) => String::new(),
    }
}

/// The audit side of a running gateway (`serve`, `demo`): the log, its
/// background tasks (exporters, retention), lifecycle records.
pub struct AuditSession {
    audit: Option<GatewayAudit>,
    clock: Arc<SystemClock>,
    stop: tokio_util::sync::CancellationToken,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl AuditSession {
    /// Opens the log (unless auditing is disabled), attaches the key-event
    /// sink, starts the background tasks and records `config.loaded`.
    ///
    /// # Errors
    /// The log cannot be opened: the gateway must not start.
    pub async fn start(
        cfg: &Config,
        config_path: &Path,
        vault: &rampart_vault::Vault,
        clock: Arc<SystemClock>,
        key_sink: &KeyAuditSink,
    ) -> Result<Self, String> {
        let audit = if cfg.audit.enabled {
            let a = open_gateway_audit(cfg, vault, Arc::clone(&clock))?;
            key_sink.attach(AdminTarget::Log(a.log.clone()));
            Some(a)
        } else {
            tracing::warn!(
                target: "rampart::audit",
                "auditing is disabled in the configuration ([audit] enabled = false)"
            );
            None
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let background = match &audit {
            Some(_) => spawn_background(cfg, stop.clone()),
            None => Vec::new(),
        };
        let s = Self {
            audit,
            clock,
            stop,
            background,
        };
        s.record(
            s.event(
                types::CONFIG_LOADED,
                "config.load",
                &config_path.display().to_string(),
            )
            .plain("sha256", file_sha256(config_path)),
        )
        .await;
        Ok(s)
    }

    /// The request path's handle.
    #[must_use]
    pub fn auditor(&self) -> Option<Arc<rampart_gateway::audit::Auditor>> {
        self.audit.as_ref().map(|a| Arc::clone(&a.auditor))
    }

    /// A gateway lifecycle record.
    #[must_use]
    pub fn event(&self, event_type: &str, action: &str, resource: &str) -> AuditEvent {
        system_event(self.clock.as_ref(), event_type, action, resource)
    }

    /// Writes an administrative record durably (logged on failure).
    pub async fn record(&self, ev: AuditEvent) {
        if let Some(a) = &self.audit {
            if let Err(e) = a.auditor.record_admin(&ev).await {
                tracing::error!(target: "rampart::audit", error = %e, event = %ev.event_type, "lifecycle event not audited");
            }
        }
    }

    /// Records the outcome of a configuration reload.
    pub async fn reloaded(&self, path: &Path, result: &Result<(), String>) {
        let ev = self
            .event(
                types::CONFIG_LOADED,
                "config.reload",
                &path.display().to_string(),
            )
            .plain("sha256", file_sha256(path));
        let ev = match result {
            Ok(()) => ev,
            Err(e) => AuditEvent {
                decision: Decision::Deny,
                ..ev
            }
            .reason("CONFIG_INVALID")
            .plain("error", rampart_audit::event::truncate(e, 1024)),
        };
        self.record(ev).await;
    }

    /// Records `gateway.stop`, stops the background tasks and closes the
    /// log (final fsync and checkpoint).
    pub async fn finish(self) {
        self.record(self.event(types::GATEWAY_STOP, "gateway.stop", "signal"))
            .await;
        self.stop.cancel();
        for t in self.background {
            let _ = t.await;
        }
        if let Some(a) = &self.audit {
            if let Err(e) = a.log.close() {
                tracing::error!(target: "rampart::audit", error = %e, "closing the audit log failed");
            }
        }
    }
}

/// How often a running gateway prunes segments past the retention.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// How often exporters look for new entries once caught up.
const EXPORT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

use rampart_audit::clock::now_us;

/// Starts the exporters and the retention task of a running gateway. Each
/// logs its errors and retries; none can stop the request path.
///
/// The search index is not maintained here: `rampart audit search` brings
/// it up to date itself (it is derived data). Indexing in the gateway cost
/// more CPU per request than writing the log (one SQLite row with four
/// secondary indexes per entry), on the box that serves traffic.
pub fn spawn_background(
    cfg: &Config,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    use rampart_audit::sink::{ExportOptions, FileSink, SyslogConfig, SyslogSink};
    use rampart_core::config::AuditExporterConfig;

    let dir = log_dir(cfg);
    let mut tasks = Vec::new();
    for e in &cfg.audit.exporters {
        let (dir, stop) = (dir.clone(), stop.clone());
        let open = {
            let dir = dir.clone();
            move || rampart_audit::reader::LogReader::open(&dir)
        };
        let options = ExportOptions::new(EXPORT_POLL);
        match e.clone() {
            AuditExporterConfig::File { name, path } => {
                tasks.push(tokio::spawn(async move {
                    let sink = FileSink::new(path);
                    if let Err(e) = rampart_audit::sink::run_exporter_with(
                        open, &dir, &name, sink, options, stop,
                    )
                    .await
                    {
                        tracing::error!(target: "rampart::audit", exporter = %name, error = %e, "exporter stopped");
                    }
                }));
            }
            AuditExporterConfig::Syslog {
                name,
                address,
                server_name,
                ca_file,
                facility,
            } => {
                let mut sc = SyslogConfig::new(address, server_name, ca_file);
                sc.facility = facility;
                tasks.push(tokio::spawn(async move {
                    let sink = match SyslogSink::new(&sc) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(target: "rampart::audit", exporter = %name, error = %e, "syslog exporter not started");
                            return;
                        }
                    };
                    if let Err(e) = rampart_audit::sink::run_exporter_with(
                        open, &dir, &name, sink, options, stop,
                    )
                    .await
                    {
                        tracing::error!(target: "rampart::audit", exporter = %name, error = %e, "exporter stopped");
                    }
                }));
            }
        }
    }

    // Retention: whole segments entirely older than the retention, archived
    // first. Blocking file work runs off the runtime's workers.
    let retention = cfg.audit.retention;
    let archive = cfg.audit.archive_dir_in(&cfg.storage.data_dir);
    {
        let (dir, stop) = (dir.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let (d, a) = (dir.clone(), archive.clone());
                match tokio::task::spawn_blocking(move || {
                    rampart_audit::retention::prune(&d, retention, &a, now_us())
                })
                .await
                {
                    Ok(Ok(r)) => tracing::debug!(target: "rampart::audit", report = ?r, "retention pass"),
                    Ok(Err(e)) => tracing::error!(target: "rampart::audit", error = %e, "retention pass failed; nothing was deleted"),
                    Err(e) => tracing::error!(target: "rampart::audit", error = %e, "retention task failed"),
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(PRUNE_EVERY) => {}
                }
            }
        }));
    }

    tasks
}
