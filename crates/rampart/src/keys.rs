//! Key management from the command line (`rampart keys …`) and the shared
//! start-up path that opens the data dir, the key provider, the store and
//! the vault for `serve` and `demo`.

use std::fs;
use std::io::{IsTerminal, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use rampart_audit::Clock as _;
use rampart_core::config::{Config, KeyProviderConfig, KeysConfig, SecretSource};
use rampart_crypto::{
    KdfParams, KeyProvider, KeyringLimits, LocalKeyProvider, Pkcs11Config, Pkcs11KeyProvider,
    Purpose, SecretString,
};
use rampart_store::{AnyStore, SqliteStore};
use rampart_vault::{Vault, VaultOptions};

use crate::EXIT_CONFIG;

/// Largest passphrase / PIN file accepted.
const MAX_SECRET_FILE: u64 = 4096;

/// `rampart keys …`: API keys and the key hierarchy.
#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create an API key: HMAC secrets are generated and shown once;
    /// asymmetric keys are registered by public key.
    Create {
        #[command(flatten)]
        args: crate::apikeys::CreateArgs,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// List API keys (all, or one account's).
    List {
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Show one API key's settings (never its secret).
    Show {
        /// The key id.
        key_id: String,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Revoke an API key for good (its tokens stop working too).
    Revoke {
        /// The key id.
        key_id: String,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Give an HMAC key a new secret (shown once); the old one keeps
    /// working during the overlap window, then stops.
    Rotate {
        /// The key id.
        key_id: String,
        /// How long the old secret keeps working.
        #[arg(long, default_value = "24h")]
        overlap: humantime::Duration,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Show the provider, root key versions, data-key versions and which
    /// versions stored fields use.
    Status {
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Make a new data-key version of PURPOSE current for new writes
    /// (api-secrets, mfa-seeds, audit-fields). Run `keys rewrap` afterwards.
    RotateDataKey {
        /// api-secrets, mfa-seeds or audit-fields.
        purpose: Purpose,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Re-encrypt every stored field to the current data-key versions,
    /// online and resumably, then retire old versions.
    Rewrap {
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
        /// Fields per read/write batch.
        #[arg(long, default_value_t = 500)]
        batch: u32,
        /// Do not retire old versions afterwards.
        #[arg(long)]
        no_retire: bool,
    },
    /// Create a new root key, re-wrap every data key under it, then destroy
    /// the old root key. Resumes an interrupted rotation.
    RotateRoot {
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Crypto-shred ACCOUNT: destroy its account key so its encrypted fields
    /// (API secrets, MFA seeds) can never be decrypted again. Irreversible.
    ShredAccount {
        /// The account id.
        account: String,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
        /// Confirm the irreversible operation.
        #[arg(long)]
        yes: bool,
    },
}

/// Turns off core dumps and ptrace-style attachment for this process, so a
/// crash never writes unwrapped keys to disk. Best effort: logs what the
/// platform refused.
pub fn harden_process() {
    use rustix::process::{setrlimit, Resource, Rlimit};
    if let Err(e) = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    ) {
        tracing::warn!(error = %e, "could not disable core dumps (RLIMIT_CORE)");
    }
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %e, "could not mark the process non-dumpable (PR_SET_DUMPABLE)");
    }
}

/// Whether the process is marked non-dumpable (for tests and `keys status`).
#[must_use]
pub fn core_dumps_disabled() -> bool {
    matches!(
        rustix::process::dumpable_behavior(),
        Ok(rustix::process::DumpableBehavior::NotDumpable)
    ) && rustix::process::getrlimit(rustix::process::Resource::Core).maximum == Some(0)
}

/// Reads a passphrase or PIN from its configured source.
///
/// # Errors
/// A message that names the source and what to do; never the value.
pub fn read_secret(src: &SecretSource, what: &str) -> Result<SecretString, String> {
    match src {
        SecretSource::Env(name) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
            Ok(_) => Err(format!("the {what} environment variable `{name}` is empty")),
            Err(_) => Err(format!(
                "the {what} environment variable `{name}` is not set; export it before starting"
            )),
        },
        SecretSource::File(path) => {
            let meta = fs::metadata(path)
                .map_err(|e| format!("cannot read the {what} file `{}`: {e}", path.display()))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "the {what} file `{}` has permissions {mode:04o}; run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ));
            }
            let mut buf = zeroize::Zeroizing::new(String::new());
            fs::File::open(path)
                .and_then(|f| f.take(MAX_SECRET_FILE).read_to_string(&mut buf))
                .map_err(|e| format!("cannot read the {what} file `{}`: {e}", path.display()))?;
            let line = buf.lines().next().unwrap_or("");
            if line.is_empty() {
                return Err(format!("the {what} file `{}` is empty", path.display()));
            }
            Ok(SecretString::from(line.to_owned()))
        }
    }
}

/// Creates the data dir (0700) if missing; refuses one with world
/// permission bits.
///
/// # Errors
/// A message with the `chmod` that fixes it.
pub fn check_data_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create data dir `{}`: {e}", dir.display()))?;
    }
    let meta = fs::metadata(dir).map_err(|e| format!("data dir `{}`: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("data dir `{}` is not a directory", dir.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(format!(
            "data dir `{}` is accessible to every user (mode {mode:04o}); run `chmod 700 {}`",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Opens the configured key provider.
///
/// The local provider creates a root key only for a brand-new data dir: if
/// a database exists but the root key file is missing, it refuses (a new
/// key would make every stored secret unreadable).
///
/// # Errors
/// A message that says what to do.
pub fn open_provider(data_dir: &Path, keys: &KeysConfig) -> Result<Arc<dyn KeyProvider>, String> {
    check_data_dir(data_dir)?;
    match &keys.provider {
        KeyProviderConfig::Local { passphrase } => {
            let pass = passphrase
                .as_ref()
                .map(|s| read_secret(s, "root key passphrase"))
                .transpose()?;
            let root = rampart_crypto::local::root_key_path(data_dir);
            let db = data_dir.join(rampart_store::sqlite::DB_FILE_NAME);
            let provider = if !root.exists() && !db.exists() {
                LocalKeyProvider::create(data_dir, pass.as_ref(), KdfParams::default())
            } else {
                LocalKeyProvider::open(data_dir, pass.as_ref())
            }
            .map_err(|e| format!("root key: {e}"))?;
            if !provider.is_sealed() {
                tracing::warn!(
                    path = %provider.path().display(),
                    "the root key file is not sealed with a passphrase; set keys.passphrase_env or keys.passphrase_file, or use the pkcs11 provider, in production"
                );
            }
            Ok(Arc::new(provider))
        }
        KeyProviderConfig::Pkcs11 {
            module,
            token,
            pin,
            label,
        } => {
            let pin = read_secret(pin, "HSM PIN")?;
            let mut cfg = Pkcs11Config::new(module.clone(), token.clone(), pin);
            cfg.key_label.clone_from(label);
            Pkcs11KeyProvider::open(&cfg)
                .map(|p| Arc::new(p) as Arc<dyn KeyProvider>)
                .map_err(|e| format!("HSM: {e}"))
        }
    }
}

/// Vault options from the configuration.
#[must_use]
pub fn vault_options(keys: &KeysConfig) -> VaultOptions {
    VaultOptions {
        limits: KeyringLimits {
            rotate_after: keys.rotate_after_encryptions,
            ..KeyringLimits::default()
        },
        max_key_age: keys.max_data_key_age,
        refresh_interval: keys.refresh_interval,
    }
}

/// Opens provider, store and vault for `cfg`, reporting key events to `events` (the audit trail).
///
/// # Errors
/// A message that says what failed and what to do.
pub async fn open_vault_with(
    cfg: &Config,
    events: Option<Arc<dyn rampart_crypto::KeyEventSink>>,
) -> Result<Arc<Vault>, String> {
    let data_dir = &cfg.storage.data_dir;
    let provider = open_provider(data_dir, &cfg.keys)?;
    let store = SqliteStore::open_in_dir(data_dir)
        .await
        .map_err(|e| format!("store: {e}"))?;
    let vault = Vault::open(
        AnyStore::new(store),
        provider,
        vault_options(&cfg.keys),
        events,
    )
    .await
    .map_err(|e| format!("keys: {e}"))?;
    Ok(Arc::new(vault))
}

/// Reads (or creates, 0600, 32 random bytes base64) the secret with which
/// the gateway signs the identity it sends upstream.
///
/// # Errors
/// A message for loose permissions or a malformed file.
pub fn upstream_identity_secret(cfg: &Config) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use base64::Engine as _;
    let path = cfg
        .auth
        .upstream_identity_key_file
        .clone()
        .unwrap_or_else(|| cfg.storage.data_dir.join("upstream-identity.key"));
    if !path.exists() {
        let secret: [u8; 32] = rand::random();
        let text = zeroize::Zeroizing::new(format!(
            "{}\n",
            base64::engine::general_purpose::STANDARD.encode(secret)
        ));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "created the upstream identity secret; give the same file to the trading core");
    }
    let text = read_secret(
        &SecretSource::File(path.clone()),
        "upstream identity secret",
    )?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secrecy::ExposeSecret::expose_secret(&text).trim())
        .map_err(|_| format!("`{}` is not base64", path.display()))?;
    if bytes.len() < 32 {
        return Err(format!("`{}` must hold at least 32 bytes", path.display()));
    }
    Ok(zeroize::Zeroizing::new(bytes))
}

/// Access tokens are signed by the key provider's Ed25519 signing key (so
/// an HSM holds it when the provider is `pkcs11`).
struct ProviderTokenSigner {
    provider: Arc<dyn KeyProvider>,
    public: [u8; 32],
}

impl rampart_gateway::tokens::TokenSigner for ProviderTokenSigner {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], String> {
        self.provider.sign(message).map_err(|e| e.to_string())
    }
}

/// The authentication services for the gateway: the vault-backed key
/// directory, the in-memory nonce cache and the upstream identity signer.
///
/// # Errors
/// As [`upstream_identity_secret`].
pub fn auth_services(
    cfg: &Config,
    vault: &Arc<Vault>,
    audit: Option<Arc<rampart_gateway::audit::Auditor>>,
) -> Result<Arc<rampart_gateway::auth::AuthServices>, String> {
    let secret = upstream_identity_secret(cfg)?;
    Ok(Arc::new(rampart_gateway::auth::AuthServices {
        directory: Arc::new(rampart_vault::directory::VaultDirectory::new(
            Arc::clone(vault),
            cfg.auth.key_cache_ttl,
        )),
        nonces: Arc::new(rampart_auth::MemoryNonceStore::new(
            cfg.auth.nonce_cache_entries,
        )),
        identity: Arc::new(rampart_gateway::auth::IdentitySigner::hmac(&secret)?),
        tokens: Some(Arc::new(rampart_gateway::tokens::Tokens::new(Arc::new(
            ProviderTokenSigner {
                provider: Arc::clone(vault.provider()),
                public: vault
                    .provider()
                    .signing_public_key()
                    .map_err(|e| e.to_string())?,
            },
        )))),
        audit,
        accounts: Some(Arc::new(rampart_vault::directory::VaultAccounts::new(
            Arc::clone(vault),
            cfg.auth.key_cache_ttl,
        ))),
    }))
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    rampart_core::config::load(path).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("{}: {e}", path.display());
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Runs a `rampart keys …` command.
pub fn run(cmd: KeysCmd) -> ExitCode {
    harden_process();
    crate::logging::init_stderr("warn");
    let rt = match tokio::runtime::Builder::new_current_thread()
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
        match run_async(cmd).await {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("rampart keys: {msg}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run_async(cmd: KeysCmd) -> Result<ExitCode, String> {
    let config = match &cmd {
        KeysCmd::Create { config, .. }
        | KeysCmd::List { config, .. }
        | KeysCmd::Show { config, .. }
        | KeysCmd::Revoke { config, .. }
        | KeysCmd::Rotate { config, .. }
        | KeysCmd::Status { config }
        | KeysCmd::RotateDataKey { config, .. }
        | KeysCmd::Rewrap { config, .. }
        | KeysCmd::RotateRoot { config }
        | KeysCmd::ShredAccount { config, .. } => config.clone(),
    };
    let cfg = match load_config(&config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let KeysCmd::ShredAccount { yes: false, .. } = &cmd {
        return Err("shredding is irreversible; repeat with --yes".to_owned());
    }
    // Changes are audited: key events through the vault's sink, API key
    // changes as records below; both durable before the command returns.
    let read_only = matches!(
        cmd,
        KeysCmd::List { .. } | KeysCmd::Show { .. } | KeysCmd::Status { .. }
    );
    let clock = crate::audit::clock(&cfg);
    let sink = Arc::new(crate::audit::KeyAuditSink::new(
        Arc::clone(&clock) as Arc<dyn rampart_audit::Clock>,
        crate::audit::operator(),
    ));
    let vault = open_vault_with(
        &cfg,
        (!read_only).then(|| Arc::clone(&sink) as Arc<dyn rampart_crypto::KeyEventSink>),
    )
    .await?;
    let target = if read_only {
        crate::audit::AdminTarget::Disabled
    } else {
        crate::audit::AdminTarget::open(&cfg, vault.provider())?
    };
    sink.attach(target.clone());
    let admin = |event_type: &str, key_id: &str, account: &str| {
        rampart_audit::AuditEvent::new(
            clock.now(),
            event_type,
            crate::audit::operator(),
            format!("keys.{}", event_type.trim_start_matches("apikey.")),
            format!("api-key/{key_id}"),
            rampart_audit::Decision::Info,
        )
        .account(account)
    };
    match cmd {
        KeysCmd::Create { args, .. } => {
            let key = crate::apikeys::create(&vault, args).await?;
            let ev = admin(
                rampart_audit::event::types::APIKEY_CREATED,
                &key.key_id,
                &key.account_id,
            )
            .plain("scheme", key.scheme.as_str())
            .plain("scopes", key.scopes.join(" "))
            .plain("allowed_networks", key.allowed_cidrs.join(" "));
            target.record_blocking(&ev)?;
        }
        KeysCmd::List { account, .. } => crate::apikeys::list(&vault, account).await?,
        KeysCmd::Show { key_id, .. } => crate::apikeys::show(&vault, &key_id).await?,
        KeysCmd::Revoke { key_id, .. } => {
            let account = crate::apikeys::revoke(&vault, &key_id).await?;
            target.record_blocking(&admin(
                rampart_audit::event::types::APIKEY_REVOKED,
                &key_id,
                &account,
            ))?;
        }
        KeysCmd::Rotate {
            key_id, overlap, ..
        } => {
            let overlap: std::time::Duration = overlap.into();
            let account = crate::apikeys::rotate(&vault, &key_id, overlap).await?;
            target.record_blocking(
                &admin(
                    rampart_audit::event::types::APIKEY_ROTATED,
                    &key_id,
                    &account,
                )
                .plain("overlap_s", overlap.as_secs()),
            )?;
        }
        KeysCmd::Status { .. } => status(&vault).await?,
        KeysCmd::RotateDataKey { purpose, .. } => {
            let v = vault
                .rotate_data_key(purpose)
                .await
                .map_err(|e| e.to_string())?;
            println!("{purpose}: version {v} is now current for new writes; run `rampart keys rewrap` to move existing records");
        }
        KeysCmd::Rewrap {
            batch, no_retire, ..
        } => rewrap(&vault, batch, !no_retire).await?,
        KeysCmd::RotateRoot { .. } => {
            let r = vault.rotate_root().await.map_err(|e| e.to_string())?;
            println!(
                "root key rotated ({}): version {} -> {}; {} data keys re-wrapped; {} old root key version(s) destroyed",
                vault.provider().kind(),
                r.from,
                r.to,
                r.rewrapped_keys,
                r.destroyed
            );
        }
        KeysCmd::ShredAccount { account, .. } => {
            vault
                .shred_account(&account)
                .await
                .map_err(|e| e.to_string())?;
            println!("account `{account}` shredded: its encrypted fields are unrecoverable");
        }
    }
    vault.flush_counters().await.map_err(|e| e.to_string())?;
    target.close()?;
    Ok(ExitCode::SUCCESS)
}

async fn status(vault: &Vault) -> Result<(), String> {
    let health = vault.provider().health();
    println!(
        "provider: {} ({}), healthy: {}, root key versions: {:?}",
        health.kind,
        health.detail,
        health.healthy,
        vault.provider().root_key_versions()
    );
    println!(
        "core dumps: {}",
        if core_dumps_disabled() {
            "disabled"
        } else {
            "NOT disabled (see the log)"
        }
    );
    println!("purpose        version  state    current  encryptions  root");
    for s in vault.status().await.map_err(|e| e.to_string())? {
        println!(
            "{:<14} {:>7}  {:<7}  {:<7}  {:>11}  {:>4}",
            s.purpose.as_str(),
            s.version,
            s.state.as_str(),
            if s.current { "yes" } else { "" },
            s.encryptions,
            s.root_key_version
        );
    }
    println!("stored fields by data-key version:");
    for ((p, v), n) in vault.field_versions().await.map_err(|e| e.to_string())? {
        println!("  {p} v{v}: {n}");
    }
    Ok(())
}

async fn rewrap(vault: &Vault, batch: u32, retire: bool) -> Result<(), String> {
    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(0);
    if tty {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "rewrap pass {msg} [{bar:40}] {pos}/{len} fields ({per_sec}, eta {eta})",
            )
            .map_err(|e| e.to_string())?,
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut last_line = 0u64;
    let report = vault
        .rewrap(batch, retire, &mut |p| {
            bar.set_length(p.total.max(p.scanned));
            bar.set_position(p.scanned);
            bar.set_message(p.pass.to_string());
            // Without a terminal: one line per 10% (and the end).
            let step = (p.total / 10).max(1);
            if !tty && (p.scanned / step != last_line || p.scanned >= p.total) {
                last_line = p.scanned / step;
                eprintln!("rewrap: pass {} {}/{} fields", p.pass, p.scanned, p.total);
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    println!(
        "rewrap done: {} scanned, {} rewrapped, {} already current, {} changed concurrently, {} shredded, {} unreadable",
        report.scanned,
        report.rewrapped,
        report.already_current,
        report.raced,
        report.shredded,
        report.unreadable
    );
    for (purpose, min) in &report.retired {
        println!("{purpose}: versions below {min} retired");
    }
    if report.unreadable > 0 {
        return Err(format!(
            "{} field(s) could not be decrypted; old versions were NOT retired (see the log)",
            report.unreadable
        ));
    }
    Ok(())
}
