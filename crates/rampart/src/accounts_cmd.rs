//! `rampart accounts …` and `rampart mfa …`: accounts (KYC tier, risk
//! profile, withdrawal address book), a key's trading permissions, and TOTP
//! enrolment, from the command line.
//!
//! Every change is written to the audit trail before the command returns
//! (as `rampart keys` does): through the log when no gateway holds it, or
//! through the spool a running gateway drains. Records never hold an MFA
//! seed, a recovery code or an API secret; `accounts show` prints no secret
//! either.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use clap::Subcommand;
use rampart_audit::event::types;
use rampart_audit::{AuditEvent, Clock as _, Decision};
use rampart_auth::totp::{self, TotpParams};
use rampart_core::config::Config;
use rampart_store::{
    Account, KeyPermissions, MfaEnrolment, Store as _, StoreError, WithdrawalAddress, MAX_KYC_TIER,
};
use rampart_vault::{now_ms, Vault};

use crate::audit::AdminTarget;
use crate::policy_cmd::{load_config, runtime};

/// How many recovery codes an enrolment gets.
const RECOVERY_CODES: usize = 10;
/// The MFA kind enrolled here.
const TOTP: &str = "totp";
/// Products a key may be restricted to.
const PRODUCTS: [&str; 3] = ["spot", "perp", "option"];
/// Longest withdrawal address accepted.
const MAX_ADDRESS_LEN: usize = 256;

/// `rampart accounts …`.
#[derive(Subcommand)]
pub enum AccountsCmd {
    /// Create an account (KYC tier 0, market data only, unless --kyc-tier).
    Create {
        /// The account id.
        id: String,
        /// Parent account, for a sub-account.
        #[arg(long, value_name = "ID")]
        parent: Option<String>,
        /// KYC tier (0 market data, 1 spot and withdrawals, 2 derivatives).
        #[arg(long, default_value_t = 0)]
        kyc_tier: u8,
        /// Display name (default: the id).
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
        /// Risk profile label (`retail`, `professional`, …).
        #[arg(long, value_name = "P")]
        risk_profile: Option<String>,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Set an account's KYC tier (and risk profile; kept when not given).
    SetKyc {
        /// The account id.
        id: String,
        /// KYC tier, 0 to 3.
        tier: u8,
        /// Risk profile label; `-` clears it.
        #[arg(long, value_name = "P")]
        risk_profile: Option<String>,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Show an account: tier, risk profile, parent, sub-accounts, keys, MFA
    /// and the withdrawal address book (never a secret).
    Show {
        /// The account id.
        id: String,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// List every account.
    List {
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// The withdrawal address book.
    Address {
        #[command(subcommand)]
        cmd: AddressCmd,
    },
    /// Restrict what an API key may trade: instruments, products, read-only.
    /// Options not given are left as they are; an empty list (`""`) lifts
    /// that restriction.
    KeyPermissions {
        /// The key id.
        key_id: String,
        /// Comma-separated instruments the key may trade (empty: any).
        #[arg(long, value_name = "A,B")]
        instruments: Option<String>,
        /// Comma-separated products the key may trade: spot, perp, option
        /// (empty: any).
        #[arg(long, value_name = "spot,perp")]
        products: Option<String>,
        /// Only market data and account reads.
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        read_only: Option<bool>,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
}

/// `rampart accounts address …`.
#[derive(Subcommand)]
pub enum AddressCmd {
    /// Add a withdrawal address; usable after `[mfa] address_delay` unless
    /// --immediate.
    Add {
        /// The account id.
        id: String,
        /// The destination address (compared byte-wise, as clients send it).
        address: String,
        /// The asset (or network) the address is for.
        #[arg(long, value_name = "A")]
        asset: Option<String>,
        /// A label.
        #[arg(long, value_name = "L")]
        label: Option<String>,
        /// Operator override: usable at once, skipping the delay (audited
        /// as an override).
        #[arg(long)]
        immediate: bool,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Remove a withdrawal address (at once).
    Remove {
        /// The account id.
        id: String,
        /// The address.
        address: String,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
}

/// `rampart mfa …`.
#[derive(Subcommand)]
pub enum MfaCmd {
    /// Enrol an account in TOTP: prints the otpauth URI, its QR code and 10
    /// recovery codes, once. Refuses an enrolled account unless --force.
    Enroll {
        /// The account id.
        #[arg(long, value_name = "ID")]
        account: String,
        /// Also write the QR code as a PNG (mode 0600).
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
        /// Replace an existing enrolment (the old authenticator and
        /// recovery codes stop working).
        #[arg(long)]
        force: bool,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Remove an account's TOTP enrolment.
    Disable {
        /// The account id.
        #[arg(long, value_name = "ID")]
        account: String,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
}

/// An opened vault with the audit target of its changes.
pub(crate) struct Session {
    cfg: Config,
    pub(crate) vault: Arc<Vault>,
    target: AdminTarget,
    clock: Arc<rampart_audit::SystemClock>,
}

impl Session {
    /// Opens the vault; for a changing command also the audit trail (key
    /// events of the vault included).
    pub(crate) async fn open(cfg: Config, changes: bool) -> Result<Self, String> {
        let clock = crate::audit::clock(&cfg);
        let sink = Arc::new(crate::audit::KeyAuditSink::new(
            Arc::clone(&clock) as Arc<dyn rampart_audit::Clock>,
            crate::audit::operator(),
        ));
        let vault = crate::keys::open_vault_with(
            &cfg,
            changes.then(|| Arc::clone(&sink) as Arc<dyn rampart_crypto::KeyEventSink>),
        )
        .await?;
        let target = if changes {
            AdminTarget::open(&cfg, vault.provider())?
        } else {
            AdminTarget::Disabled
        };
        sink.attach(target.clone());
        Ok(Self {
            cfg,
            vault,
            target,
            clock,
        })
    }

    /// An administrative record by the operator.
    pub(crate) fn event(
        &self,
        event_type: &str,
        action: &str,
        resource: String,
        account: &str,
    ) -> AuditEvent {
        AuditEvent::new(
            self.clock.now(),
            event_type,
            crate::audit::operator(),
            action,
            resource,
            Decision::Info,
        )
        .account(account)
    }

    /// An administrative record by the operator, about no account.
    pub(crate) fn admin_event(
        &self,
        event_type: &str,
        action: &str,
        resource: String,
    ) -> AuditEvent {
        AuditEvent::new(
            self.clock.now(),
            event_type,
            crate::audit::operator(),
            action,
            resource,
            Decision::Info,
        )
    }

    pub(crate) fn record(&self, ev: &AuditEvent) -> Result<(), String> {
        self.target
            .record_blocking(ev)
            .map_err(|e| format!("the change was made but not audited: {e}"))
    }

    pub(crate) async fn close(self) -> Result<(), String> {
        self.vault
            .flush_counters()
            .await
            .map_err(|e| e.to_string())?;
        self.target.close()
    }
}

fn store_err(what: &str, id: &str, e: StoreError) -> String {
    match e {
        StoreError::NotFound(_) => format!("no {what} `{id}`"),
        e => format!("{what} `{id}`: {e}"),
    }
}

pub(crate) fn run_with<F>(prog: &str, config: &Path, work: F) -> ExitCode
where
    F: AsyncFnOnce(Config) -> Result<(), String>,
{
    crate::keys::harden_process();
    crate::logging::init_stderr("warn");
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match runtime().and_then(|rt| rt.block_on(work(cfg))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart {prog}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a `rampart accounts …` command.
pub fn run(cmd: AccountsCmd) -> ExitCode {
    let config = match &cmd {
        AccountsCmd::Create { config, .. }
        | AccountsCmd::SetKyc { config, .. }
        | AccountsCmd::Show { config, .. }
        | AccountsCmd::List { config }
        | AccountsCmd::KeyPermissions { config, .. }
        | AccountsCmd::Address {
            cmd: AddressCmd::Add { config, .. } | AddressCmd::Remove { config, .. },
        } => config.clone(),
    };
    run_with("accounts", &config, async move |cfg| {
        let changes = !matches!(cmd, AccountsCmd::Show { .. } | AccountsCmd::List { .. });
        let s = Session::open(cfg, changes).await?;
        match cmd {
            AccountsCmd::Create {
                id,
                parent,
                kyc_tier,
                name,
                risk_profile,
                ..
            } => create(&s, id, parent, kyc_tier, name, risk_profile).await?,
            AccountsCmd::SetKyc {
                id,
                tier,
                risk_profile,
                ..
            } => set_kyc(&s, &id, tier, risk_profile).await?,
            AccountsCmd::Show { id, .. } => show(&s, &id).await?,
            AccountsCmd::List { .. } => list(&s).await?,
            AccountsCmd::KeyPermissions {
                key_id,
                instruments,
                products,
                read_only,
                ..
            } => key_permissions(&s, &key_id, instruments, products, read_only).await?,
            AccountsCmd::Address {
                cmd:
                    AddressCmd::Add {
                        id,
                        address,
                        asset,
                        label,
                        immediate,
                        ..
                    },
            } => address_add(&s, &id, &address, asset, label, immediate).await?,
            AccountsCmd::Address {
                cmd: AddressCmd::Remove { id, address, .. },
            } => address_remove(&s, &id, &address).await?,
        }
        s.close().await
    })
}

/// Runs a `rampart mfa …` command.
pub fn run_mfa(cmd: MfaCmd) -> ExitCode {
    let config = match &cmd {
        MfaCmd::Enroll { config, .. } | MfaCmd::Disable { config, .. } => config.clone(),
    };
    run_with("mfa", &config, async move |cfg| {
        let s = Session::open(cfg, true).await?;
        match cmd {
            MfaCmd::Enroll {
                account,
                png,
                force,
                ..
            } => mfa_enroll(&s, &account, png.as_deref(), force).await?,
            MfaCmd::Disable { account, .. } => mfa_disable(&s, &account).await?,
        }
        s.close().await
    })
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{what} ids are 1 to 128 characters without spaces or control characters"
        ));
    }
    Ok(())
}

fn check_tier(tier: u8) -> Result<(), String> {
    if tier > MAX_KYC_TIER {
        return Err(format!("the KYC tier must be 0 to {MAX_KYC_TIER}"));
    }
    Ok(())
}

async fn create(
    s: &Session,
    id: String,
    parent: Option<String>,
    kyc_tier: u8,
    name: Option<String>,
    risk_profile: Option<String>,
) -> Result<(), String> {
    check_id("account", &id)?;
    check_tier(kyc_tier)?;
    let store = s.vault.store();
    if let Some(p) = &parent {
        store
            .get_account(p)
            .await
            .map_err(|e| store_err("parent account", p, e))?;
    }
    let account = Account {
        name: name.unwrap_or_else(|| id.clone()),
        id,
        parent_id: parent,
        created_at_ms: now_ms(),
        kyc_tier,
        risk_profile: risk_profile.filter(|p| !p.is_empty()),
    };
    store.create_account(&account).await.map_err(|e| match e {
        StoreError::Conflict(_) => format!("account `{}` already exists", account.id),
        e => format!("account `{}`: {e}", account.id),
    })?;
    s.record(
        &s.event(
            types::ACCOUNT_CHANGED,
            "accounts.create",
            format!("account/{}", account.id),
            &account.id,
        )
        .plain("parent", account.parent_id.clone().unwrap_or_default())
        .plain("kyc_tier", account.kyc_tier)
        .plain(
            "risk_profile",
            account.risk_profile.clone().unwrap_or_default(),
        ),
    )?;
    println!(
        "account `{}` created (KYC tier {}{})",
        account.id,
        account.kyc_tier,
        account
            .parent_id
            .as_ref()
            .map(|p| format!(", sub-account of `{p}`"))
            .unwrap_or_default()
    );
    Ok(())
}

async fn set_kyc(
    s: &Session,
    id: &str,
    tier: u8,
    risk_profile: Option<String>,
) -> Result<(), String> {
    check_tier(tier)?;
    let store = s.vault.store();
    let before = store
        .get_account(id)
        .await
        .map_err(|e| store_err("account", id, e))?;
    let profile = match risk_profile.as_deref() {
        None => before.risk_profile.clone(),
        Some("-" | "") => None,
        Some(p) => Some(p.to_owned()),
    };
    store
        .set_account_kyc(id, tier, profile.as_deref())
        .await
        .map_err(|e| store_err("account", id, e))?;
    s.record(
        &s.event(
            types::ACCOUNT_CHANGED,
            "accounts.set_kyc",
            format!("account/{id}"),
            id,
        )
        .plain("kyc_tier_before", before.kyc_tier)
        .plain("kyc_tier", tier)
        .plain(
            "risk_profile_before",
            before.risk_profile.clone().unwrap_or_default(),
        )
        .plain("risk_profile", profile.clone().unwrap_or_default()),
    )?;
    println!(
        "account `{id}`: KYC tier {} -> {tier}, risk profile {}",
        before.kyc_tier,
        profile.as_deref().unwrap_or("(none)")
    );
    Ok(())
}

/// RFC 3339 (UTC, seconds) of Unix milliseconds.
fn time(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `in 23h 59m` for a future time, rounded down to the minute.
fn until(ms: i64, now: i64) -> String {
    let secs = u64::try_from(ms.saturating_sub(now) / 1000).unwrap_or(0);
    let rounded = if secs >= 60 { secs - secs % 60 } else { secs };
    humantime::format_duration(Duration::from_secs(rounded)).to_string()
}

async fn show(s: &Session, id: &str) -> Result<(), String> {
    let store = s.vault.store();
    let a = store
        .get_account(id)
        .await
        .map_err(|e| store_err("account", id, e))?;
    let subs = store
        .list_sub_accounts(id)
        .await
        .map_err(|e| e.to_string())?;
    let keys = store.list_api_keys(id).await.map_err(|e| e.to_string())?;
    let mfa = match store.get_mfa(id, TOTP).await {
        Ok(m) => Some(m),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.to_string()),
    };
    let book = store
        .list_withdrawal_addresses(id)
        .await
        .map_err(|e| e.to_string())?;
    let now = now_ms();
    println!("account: {}", a.id);
    println!("name: {}", a.name);
    println!("parent: {}", a.parent_id.as_deref().unwrap_or("(none)"));
    println!("created: {}", time(a.created_at_ms));
    println!("kyc tier: {}", a.kyc_tier);
    println!(
        "risk profile: {}",
        a.risk_profile.as_deref().unwrap_or("(none: standard)")
    );
    let sub_ids: Vec<&str> = subs.iter().map(|s| s.id.as_str()).collect();
    println!(
        "sub-accounts: {}",
        if sub_ids.is_empty() {
            "(none)".to_owned()
        } else {
            sub_ids.join(", ")
        }
    );
    match &mfa {
        Some(m) => println!(
            "mfa: yes (totp {}, {} digits, {} s; enrolled {}; {} recovery codes left)",
            m.algorithm,
            m.digits,
            m.period_secs,
            time(m.created_at_ms),
            m.recovery_hashes.len()
        ),
        None => println!("mfa: no"),
    }
    println!("api keys: {}", keys.len());
    for k in &keys {
        let p = &k.permissions;
        let mut extra = Vec::new();
        if !p.instruments.is_empty() {
            extra.push(format!("instruments {}", p.instruments.join(",")));
        }
        if !p.products.is_empty() {
            extra.push(format!("products {}", p.products.join(",")));
        }
        if p.read_only {
            extra.push("read-only".to_owned());
        }
        println!(
            "  {} {} [{}] {}{}",
            k.key_id,
            k.scheme,
            k.scopes.join(","),
            k.state.as_str(),
            if extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", extra.join("; "))
            }
        );
    }
    println!("withdrawal addresses: {}", book.len());
    for w in &book {
        let state = if w.effective_at_ms <= now {
            "effective".to_owned()
        } else {
            format!("pending, in {}", until(w.effective_at_ms, now))
        };
        println!(
            "  {} asset {} label {} added {} effective {} ({state})",
            w.address,
            w.asset.as_deref().unwrap_or("any"),
            w.label.as_deref().unwrap_or("-"),
            time(w.added_at_ms),
            time(w.effective_at_ms),
        );
    }
    Ok(())
}

async fn list(s: &Session) -> Result<(), String> {
    let accounts = s
        .vault
        .store()
        .list_accounts()
        .await
        .map_err(|e| e.to_string())?;
    println!("id  kyc_tier  risk_profile  parent  name");
    for a in accounts {
        println!(
            "{}  {}  {}  {}  {}",
            a.id,
            a.kyc_tier,
            a.risk_profile.as_deref().unwrap_or("-"),
            a.parent_id.as_deref().unwrap_or("-"),
            a.name
        );
    }
    Ok(())
}

/// A comma-separated list; `None` when the option was not given.
fn split_list(v: Option<&str>) -> Option<Vec<String>> {
    v.map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Checks the lists against the products and the configuration's
/// instrument catalogue (when it has one).
fn check_permissions(cfg: &Config, p: &KeyPermissions) -> Result<(), String> {
    if let Some(bad) = p.products.iter().find(|x| !PRODUCTS.contains(&x.as_str())) {
        return Err(format!(
            "unknown product `{bad}` (use {})",
            PRODUCTS.join(", ")
        ));
    }
    if let Some(cat) = cfg.policy.as_ref().map(|p| &p.instruments) {
        if !cat.is_empty() {
            if let Some(bad) = p.instruments.iter().find(|i| !cat.contains_key(*i)) {
                return Err(format!(
                    "unknown instrument `{bad}` (not in [policy.instruments])"
                ));
            }
        }
    }
    Ok(())
}

async fn key_permissions(
    s: &Session,
    key_id: &str,
    instruments: Option<String>,
    products: Option<String>,
    read_only: Option<bool>,
) -> Result<(), String> {
    if instruments.is_none() && products.is_none() && read_only.is_none() {
        return Err("nothing to change: give --instruments, --products or --read-only".to_owned());
    }
    let store = s.vault.store();
    let key = store
        .get_api_key(key_id)
        .await
        .map_err(|e| store_err("API key", key_id, e))?;
    let before = key.permissions.clone();
    let mut p = before.clone();
    if let Some(v) = split_list(instruments.as_deref()) {
        p.instruments = v;
    }
    if let Some(v) = split_list(products.as_deref()) {
        p.products = v.into_iter().map(|x| x.to_ascii_lowercase()).collect();
    }
    if let Some(v) = read_only {
        p.read_only = v;
    }
    check_permissions(&s.cfg, &p)?;
    store
        .set_api_key_permissions(key_id, &p)
        .await
        .map_err(|e| store_err("API key", key_id, e))?;
    s.record(
        &s.event(
            types::PERMISSION_CHANGED,
            "accounts.key_permissions",
            format!("api-key/{key_id}"),
            &key.account_id,
        )
        .plain("instruments_before", before.instruments.join(" "))
        .plain("instruments", p.instruments.join(" "))
        .plain("products_before", before.products.join(" "))
        .plain("products", p.products.join(" "))
        .plain("read_only_before", before.read_only)
        .plain("read_only", p.read_only),
    )?;
    let any = |v: &[String]| {
        if v.is_empty() {
            "any".to_owned()
        } else {
            v.join(",")
        }
    };
    println!(
        "key `{key_id}`: instruments {}, products {}, read-only {}",
        any(&p.instruments),
        any(&p.products),
        p.read_only
    );
    Ok(())
}

fn check_address(address: &str) -> Result<(), String> {
    if address.is_empty()
        || address.len() > MAX_ADDRESS_LEN
        || address.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "a withdrawal address is 1 to {MAX_ADDRESS_LEN} characters without spaces or control characters"
        ));
    }
    Ok(())
}

async fn address_add(
    s: &Session,
    id: &str,
    address: &str,
    asset: Option<String>,
    label: Option<String>,
    immediate: bool,
) -> Result<(), String> {
    check_address(address)?;
    let store = s.vault.store();
    store
        .get_account(id)
        .await
        .map_err(|e| store_err("account", id, e))?;
    let now = now_ms();
    let delay = if immediate {
        0
    } else {
        i64::try_from(s.cfg.mfa.address_delay.as_millis()).unwrap_or(i64::MAX)
    };
    let entry = WithdrawalAddress {
        account_id: id.to_owned(),
        address: address.to_owned(),
        asset: asset.filter(|a| !a.is_empty()),
        label: label.filter(|l| !l.is_empty()),
        added_at_ms: now,
        effective_at_ms: now.saturating_add(delay),
    };
    store
        .add_withdrawal_address(&entry)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                format!("account `{id}` already has address `{address}`")
            }
            StoreError::MissingReference(_) => format!("no account `{id}`"),
            e => format!("account `{id}`: {e}"),
        })?;
    let mut ev = s
        .event(
            types::ACCOUNT_CHANGED,
            "accounts.address.add",
            format!("account/{id}/withdrawal-address"),
            id,
        )
        .plain("address", address)
        .plain("asset", entry.asset.clone().unwrap_or_default())
        .plain("label", entry.label.clone().unwrap_or_default())
        .plain("effective_at_ms", entry.effective_at_ms)
        .plain("immediate", immediate);
    if immediate {
        ev = ev
            .reason("OPERATOR_OVERRIDE")
            .plain("override", "address_delay skipped by the operator");
    }
    s.record(&ev)?;
    if immediate {
        eprintln!(
            "warning: operator override: `{address}` is usable at once, without the {} delay (audited)",
            humantime::format_duration(s.cfg.mfa.address_delay)
        );
        println!("address `{address}` added to `{id}`, effective now");
    } else {
        println!(
            "address `{address}` added to `{id}`, effective {} (in {})",
            time(entry.effective_at_ms),
            humantime::format_duration(s.cfg.mfa.address_delay)
        );
    }
    Ok(())
}

async fn address_remove(s: &Session, id: &str, address: &str) -> Result<(), String> {
    let removed = s
        .vault
        .store()
        .remove_withdrawal_address(id, address)
        .await
        .map_err(|e| store_err("account", id, e))?;
    if !removed {
        return Err(format!("account `{id}` has no address `{address}`"));
    }
    s.record(
        &s.event(
            types::ACCOUNT_CHANGED,
            "accounts.address.remove",
            format!("account/{id}/withdrawal-address"),
            id,
        )
        .plain("address", address),
    )?;
    println!("address `{address}` removed from `{id}`");
    Ok(())
}

/// Writes `bytes` to `path`, owner-only (0600), replacing a file there.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write `{}`: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(err)
}

async fn mfa_enroll(
    s: &Session,
    account: &str,
    png: Option<&Path>,
    force: bool,
) -> Result<(), String> {
    let store = s.vault.store();
    store
        .get_account(account)
        .await
        .map_err(|e| store_err("account", account, e))?;
    let replaced = match store.get_mfa(account, TOTP).await {
        Ok(_) if !force => {
            return Err(format!(
                "account `{account}` already has MFA; repeat with --force to replace it (the old authenticator and recovery codes stop working)"
            ))
        }
        Ok(_) => true,
        Err(StoreError::NotFound(_)) => false,
        Err(e) => return Err(e.to_string()),
    };
    let params = TotpParams::default();
    let digits = u8::try_from(params.digits).map_err(|e| e.to_string())?;
    let period_secs = u32::try_from(params.period_secs).map_err(|e| e.to_string())?;
    let seed = totp::generate_secret(params.algorithm).map_err(|e| e.to_string())?;
    let uri = totp::otpauth_uri(&s.cfg.mfa.issuer, account, &seed, &params);
    // Everything that can fail before the enrolment is stored.
    let qr = totp::qr_terminal(&uri).map_err(|e| e.to_string())?;
    let png_bytes = png
        .map(|_| totp::qr_png(&uri))
        .transpose()
        .map_err(|e| e.to_string())?;
    let codes = totp::recovery::generate(RECOVERY_CODES).map_err(|e| e.to_string())?;
    let seed_ciphertext = s
        .vault
        .seal_mfa_seed(account, TOTP, &seed)
        .await
        .map_err(|e| e.to_string())?;
    let enrolment = MfaEnrolment {
        account_id: account.to_owned(),
        kind: TOTP.to_owned(),
        seed_ciphertext,
        created_at_ms: now_ms(),
        last_used_step: None,
        recovery_hashes: codes.iter().map(|c| totp::recovery::hash(c)).collect(),
        algorithm: params.algorithm.as_str().to_owned(),
        digits,
        period_secs,
    };
    store
        .put_mfa(&enrolment)
        .await
        .map_err(|e| store_err("account", account, e))?;
    s.record(
        &s.event(
            types::ACCOUNT_CHANGED,
            "mfa.enroll",
            format!("account/{account}/mfa"),
            account,
        )
        .plain("kind", TOTP)
        .plain("algorithm", enrolment.algorithm.clone())
        .plain("digits", digits)
        .plain("period_secs", period_secs)
        .plain("recovery_codes", RECOVERY_CODES)
        .plain("replaced", replaced),
    )?;
    let mut out = String::new();
    out.push_str(&format!(
        "MFA enrolled for account `{account}` (TOTP {}, {digits} digits, {period_secs} s){}.\n\
         Scan the QR code with an authenticator app, or enter the URI:\n\n",
        params.algorithm.as_str(),
        if replaced {
            "; the previous enrolment is replaced"
        } else {
            ""
        }
    ));
    out.push_str(&qr);
    out.push('\n');
    out.push_str(&uri);
    out.push_str("\n\nRecovery codes (shown only now; each works once; keep them offline):\n");
    for c in &codes {
        out.push_str("  ");
        out.push_str(c);
        out.push('\n');
    }
    let out = zeroize::Zeroizing::new(out);
    print!("{}", out.as_str());
    if let (Some(path), Some(bytes)) = (png, png_bytes) {
        write_private(path, &bytes)?;
        println!("QR code written to {} (mode 0600)", path.display());
    }
    Ok(())
}

async fn mfa_disable(s: &Session, account: &str) -> Result<(), String> {
    let deleted = s
        .vault
        .store()
        .delete_mfa(account, TOTP)
        .await
        .map_err(|e| store_err("account", account, e))?;
    if !deleted {
        return Err(format!("account `{account}` has no MFA enrolment"));
    }
    s.record(
        &s.event(
            types::ACCOUNT_CHANGED,
            "mfa.disable",
            format!("account/{account}/mfa"),
            account,
        )
        .plain("kind", TOTP),
    )?;
    println!("MFA disabled for account `{account}`");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn lists_split_and_trim() {
        assert_eq!(split_list(None), None);
        assert_eq!(split_list(Some("")), Some(vec![]));
        assert_eq!(
            split_list(Some(" BTC-USD, ETH-USD ,")),
            Some(vec!["BTC-USD".to_owned(), "ETH-USD".to_owned()])
        );
    }

    #[test]
    fn ids_and_addresses_are_checked() {
        assert!(check_id("account", "desk-1").is_ok());
        assert!(check_id("account", "").is_err());
        assert!(check_id("account", "a b").is_err());
        assert!(check_address("bc1qxyz").is_ok());
        assert!(check_address("bc1 qxyz").is_err());
        assert!(check_address(&"x".repeat(MAX_ADDRESS_LEN + 1)).is_err());
    }

    #[test]
    fn times_render() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(until(86_400_000, 0), "1day");
        assert_eq!(until(90_500, 0), "1m");
    }
}
