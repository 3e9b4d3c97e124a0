//! `rampart policy check / explain / schema`: the Cedar authorization
//! policies from the command line.
//!
//! - `check` parses and validates a configuration's policies (shipped
//!   defaults, `[policy] files`, extra files given on the command line)
//!   against the schema with the configuration's actions and instruments,
//!   and prints every problem with its source, line and column (exit 64).
//! - `explain` loads one API key with its account (and parent) from the
//!   store and shows what the gateway's policy decision would be for a
//!   request described on the command line: allow or deny with its code,
//!   the determining policies with their text, evaluation errors, and the
//!   key's settings as literal per-key policies. It reads settings only,
//!   never a secret. Exit 0 when allowed, 1 when denied.
//! - `schema` prints the Cedar schema.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use rampart_auth::AccountDirectory as _;
use rampart_core::config::{Config, PolicyConfig};
use rampart_policy::authz::{
    ActionDef, Authorizer, AuthzConfig, DenyCode, Effect, Explanation, InstrumentDef, KeySettings,
    OrderFacts, PolicyError, PolicySource, RequestFacts,
};
use rampart_store::{ApiKey, KeyState, Store as _, StoreError};

use crate::EXIT_CONFIG;

/// Exit code of `policy explain` for an error (1 means "denied").
const EXIT_ERROR: u8 = 2;

/// `rampart policy …`: Cedar authorization policies.
#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Validate the policies against the schema; print `ok (N policies)` or
    /// every error with its source, line and column (exit 64).
    ///
    /// With --config: the configuration's shipped defaults, `[policy]
    /// files`, actions (from its routes) and instrument catalogue. Without:
    /// the shipped defaults with the actions and instruments of `rampart
    /// demo`.
    Check {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Extra `.cedar` files to check with the configuration's.
        files: Vec<PathBuf>,
    },
    /// Show the policy decision for one request of an API key: allow or
    /// deny with its code, the determining policies and their text, errors,
    /// and the key's settings as per-key policies. Exit 0 when allowed, 1
    /// when denied, 2 on an error.
    Explain {
        #[command(flatten)]
        args: Box<ExplainArgs>,
    },
    /// Print the Cedar schema (with --config: including the actions the
    /// configuration's routes add).
    Schema {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Options of `rampart policy explain`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// TOML configuration file.
    #[arg(long, default_value = "rampart.toml")]
    config: PathBuf,
    /// The API key id.
    #[arg(long = "key", value_name = "KEY_ID")]
    key: String,
    /// The action (a route's `action`, e.g. PlaceOrder).
    #[arg(long)]
    action: String,
    /// The scope the action's route requires; by default the scope of the
    /// configuration's first route with this action.
    #[arg(long)]
    scope: Option<String>,
    /// The account the request acts on (default: the key's own).
    #[arg(long, value_name = "ID")]
    account: Option<String>,
    /// The instrument the request names (and the order's).
    #[arg(long, value_name = "SYM")]
    instrument: Option<String>,
    /// Source address.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Seconds since the last verified MFA (default: none).
    #[arg(long, value_name = "SECS")]
    mfa_age: Option<u64>,
    /// Adaptive risk score, 0 to 100.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    risk_score: u8,
    /// Order side (`buy`, `sell`); any order option describes an order.
    #[arg(long)]
    side: Option<String>,
    /// Order type (`limit`, `market`); default `limit` with --price, else
    /// `market`.
    #[arg(long = "type", value_name = "TYPE")]
    order_type: Option<String>,
    /// Order quantity (decimal).
    #[arg(long, value_name = "Q")]
    qty: Option<String>,
    /// Limit price (decimal); the notional is qty × price.
    #[arg(long, value_name = "P")]
    price: Option<String>,
    /// Withdrawal asset.
    #[arg(long, value_name = "A")]
    asset: Option<String>,
    /// Withdrawal address; describes a withdrawal.
    #[arg(long, value_name = "ADDR")]
    address: Option<String>,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
}

/// Reads a configuration, printing every error (exit 64 on failure).
pub(crate) fn load_config(path: &Path) -> Result<Config, ExitCode> {
    rampart_core::config::load(path).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("{}: {e}", path.display());
        }
        eprintln!("{} error(s)", errs.0.len());
        ExitCode::from(EXIT_CONFIG)
    })
}

/// A current-thread runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Runs a `rampart policy …` command.
pub fn run(cmd: PolicyCmd) -> ExitCode {
    crate::logging::init_stderr("warn");
    match cmd {
        PolicyCmd::Check { config, files } => check(config.as_deref(), &files),
        PolicyCmd::Schema { config } => schema(config.as_deref()),
        PolicyCmd::Explain { args } => {
            crate::keys::harden_process();
            explain(&args)
        }
    }
}

/// The routes of `rampart demo` (action, scope), for `check` without a
/// configuration. Keep in step with `demo.rs`.
const DEMO_ACTIONS: [(&str, &str); 10] = [
    ("GetTime", "public"),
    ("ListMarkets", "public"),
    ("GetBook", "public"),
    ("GetAccount", "read"),
    ("ListOrders", "read"),
    ("PlaceOrder", "trade"),
    ("CancelOrder", "trade"),
    ("Withdraw", "withdraw"),
    ("Stream", "read"),
    ("GetLimits", ""),
];

/// The instrument catalogue of `rampart demo`.
const DEMO_INSTRUMENTS: [(&str, &str); 4] = [
    ("BTC-USD", "spot"),
    ("ETH-USD", "spot"),
    ("BTC-PERP", "perp"),
    ("BTC-20261225-100000-C", "option"),
];

/// The Cedar configuration of `rampart demo`: shipped defaults, the demo
/// routes' actions (grouped as the gateway groups them) and instruments.
fn demo_authz_config() -> AuthzConfig {
    let sensitive = rampart_core::config::MfaConfig::default().sensitive_actions;
    AuthzConfig {
        actions: DEMO_ACTIONS
            .iter()
            .map(|(name, scope)| {
                let mut groups = Vec::new();
                if matches!(*scope, "public" | "read" | "trade" | "withdraw") {
                    groups.push((*scope).to_owned());
                }
                if sensitive.iter().any(|s| s == name) {
                    groups.push("sensitive".to_owned());
                }
                ActionDef {
                    name: (*name).to_owned(),
                    scope: (*scope).to_owned(),
                    groups,
                }
            })
            .collect(),
        instruments: DEMO_INSTRUMENTS
            .iter()
            .map(|(s, p)| InstrumentDef {
                symbol: (*s).to_owned(),
                product: (*p).to_owned(),
            })
            .collect(),
        defaults: true,
        sources: Vec::new(),
    }
}

/// The configuration's Cedar configuration; without `[policy]`, the one
/// it would have with `[policy]` holding only the shipped defaults.
fn config_authz(cfg: &Config) -> Result<AuthzConfig, String> {
    let mut with_policy;
    let cfg = if cfg.policy.is_some() {
        cfg
    } else {
        with_policy = cfg.clone();
        with_policy.policy = Some(PolicyConfig {
            defaults: true,
            files: Vec::new(),
            instruments: BTreeMap::new(),
        });
        &with_policy
    };
    rampart_gateway::authz::authz_config(cfg)?
        .ok_or_else(|| "the configuration has no [policy] section".to_owned())
}

fn print_policy_errors(e: &PolicyError) {
    for issue in &e.issues {
        eprintln!("{issue}");
    }
    eprintln!("{} error(s)", e.issues.len());
}

fn check(config: Option<&Path>, files: &[PathBuf]) -> ExitCode {
    let mut ac = match config {
        Some(path) => {
            let cfg = match load_config(path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if cfg.policy.is_none() {
                eprintln!(
                    "note: `{}` has no [policy] section (Cedar authorization is off); checking against the shipped defaults",
                    path.display()
                );
            }
            match config_authz(&cfg) {
                Ok(ac) => ac,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        None => demo_authz_config(),
    };
    for f in files {
        match std::fs::read_to_string(f) {
            Ok(text) => ac.sources.push(PolicySource {
                name: f.display().to_string(),
                text,
            }),
            Err(e) => {
                eprintln!("policy file `{}`: {e}", f.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    match rampart_policy::authz::check_sources(&ac) {
        Ok(n) => {
            println!("ok ({n} policies)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_policy_errors(&e);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn schema(config: Option<&Path>) -> ExitCode {
    let Some(path) = config else {
        print!("{}", rampart_policy::authz::schema_text());
        return ExitCode::SUCCESS;
    };
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let ac = match config_authz(&cfg) {
        Ok(ac) => ac,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match Authorizer::new(&ac) {
        Ok(a) => {
            print!("{}", a.schema());
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_policy_errors(&e);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// The key's settings as the gateway's authorizer sees them.
fn key_settings(key: &ApiKey) -> Result<KeySettings, String> {
    let nets = key
        .allowed_cidrs
        .iter()
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("key `{}`: invalid allowed network `{c}`", key.key_id))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeySettings {
        key_id: key.key_id.clone(),
        account_id: key.account_id.clone(),
        scopes: key.scopes.clone(),
        instruments: key.permissions.instruments.clone(),
        products: key.permissions.products.clone(),
        nets,
        expires_at_ms: key.expires_at_ms,
        read_only: key.permissions.read_only,
    })
}

/// qty × price, exactly, as the gateway computes an order's notional.
fn notional(qty: &str, price: Option<&str>) -> Option<String> {
    let q = qty.parse::<rust_decimal::Decimal>().ok()?;
    let p = price?.parse::<rust_decimal::Decimal>().ok()?;
    q.checked_mul(p).map(|n| n.to_string())
}

/// The scope the action's routes require.
fn required_scope(cfg: &Config, args: &ExplainArgs) -> Result<String, String> {
    if let Some(s) = &args.scope {
        return Ok(s.clone());
    }
    if let Some(r) = cfg.routes.iter().find(|r| r.action == args.action) {
        return Ok(r.scope.clone());
    }
    if args.action == "GetLimits" {
        return Ok(String::new());
    }
    Err(format!(
        "no route of the configuration has action `{}`; pass --scope",
        args.action
    ))
}

/// The order the options describe, if any.
fn order_facts(args: &ExplainArgs) -> Result<Option<OrderFacts>, String> {
    if args.side.is_none()
        && args.order_type.is_none()
        && args.qty.is_none()
        && args.price.is_none()
    {
        return Ok(None);
    }
    let instrument = args
        .instrument
        .clone()
        .ok_or_else(|| "an order (--side/--type/--qty/--price) needs --instrument".to_owned())?;
    let qty = args
        .qty
        .clone()
        .ok_or_else(|| "an order needs --qty".to_owned())?;
    Ok(Some(OrderFacts {
        side: args.side.clone().unwrap_or_else(|| "buy".to_owned()),
        order_type: args.order_type.clone().unwrap_or_else(|| {
            if args.price.is_some() {
                "limit".to_owned()
            } else {
                "market".to_owned()
            }
        }),
        notional: notional(&qty, args.price.as_deref()),
        qty,
        instrument,
    }))
}

fn explain(args: &ExplainArgs) -> ExitCode {
    let cfg = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let ac = match rampart_gateway::authz::authz_config(&cfg) {
        Ok(Some(ac)) => ac,
        Ok(None) => {
            eprintln!(
                "`{}` has no [policy] section: Cedar authorization is off (only key scopes, IP allow lists and expiry apply)",
                args.config.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let engine = match Authorizer::new(&ac) {
        Ok(a) => a,
        Err(e) => {
            print_policy_errors(&e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = runtime().and_then(|rt| rt.block_on(explain_async(&cfg, &engine, args)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart policy explain: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn explain_async(
    cfg: &Config,
    engine: &Authorizer,
    args: &ExplainArgs,
) -> Result<ExitCode, String> {
    let scope = required_scope(cfg, args)?;
    let order = order_facts(args)?;
    let vault = crate::keys::open_vault_with(cfg, None).await?;
    let key = match vault.store().get_api_key(&args.key).await {
        Ok(k) => k,
        Err(StoreError::NotFound(_)) => return Err(format!("no API key `{}`", args.key)),
        Err(e) => return Err(format!("store: {e}")),
    };
    let settings = key_settings(&key)?;
    let accounts = rampart_vault::directory::VaultAccounts::new(Arc::clone(&vault), Duration::ZERO);
    let account = lookup(&accounts, &key.account_id)
        .await?
        .ok_or_else(|| format!("the key's account `{}` is not in the store", key.account_id))?;
    let parent = match &account.parent_id {
        Some(p) => lookup(&accounts, p).await?,
        None => None,
    };
    let mut notes = Vec::new();
    if key.state == KeyState::Revoked {
        notes.push("the key is revoked: the gateway refuses it before any policy".to_owned());
    }
    if ac_sensitive(cfg, &args.action) && args.mfa_age.is_none() {
        notes.push(format!(
            "`{}` is a sensitive action ([mfa] sensitive_actions): the gateway asks for an MFA proof (MFA_REQUIRED) before the policy decision; try --mfa-age",
            args.action
        ));
    }
    let mut target_parent = None;
    if let Some(t) = args.account.as_deref().filter(|t| *t != account.id) {
        match lookup(&accounts, t).await? {
            Some(a) => target_parent = a.parent_id.clone(),
            None => notes.push(format!(
                "account `{t}` is not in the store: the gateway refuses it (FORBIDDEN_BY_POLICY)"
            )),
        }
    }
    let account_facts = rampart_gateway::authz::facts(&account);
    let parent_facts = parent.as_deref().map(rampart_gateway::authz::facts);
    let prepared = engine.prepare_key(&settings, &account_facts, parent_facts.as_ref());
    let withdrawal = args
        .address
        .as_deref()
        .map(|addr| (args.asset.as_deref().unwrap_or(""), addr));
    let req = RequestFacts {
        action: &args.action,
        required_scope: &scope,
        target_account: args.account.as_deref(),
        target_account_parent: target_parent.as_deref(),
        instrument: args.instrument.as_deref(),
        source_ip: rampart_gateway::authz::canonical_ip(args.ip),
        risk_score: args.risk_score,
        mfa_age_secs: args.mfa_age,
        now_ms: rampart_vault::now_ms(),
        order: order.as_ref(),
        withdrawal,
    };
    let ex = engine.explain(&prepared, &req);
    if args.json {
        let v = explanation_json(&ex, &notes);
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", explanation_text(&ex, &notes));
    }
    Ok(if ex.decision.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// An account as the gateway's directory reads it.
async fn lookup(
    accounts: &rampart_vault::directory::VaultAccounts,
    id: &str,
) -> Result<Option<Arc<rampart_auth::AccountRecord>>, String> {
    accounts
        .account(id)
        .await
        .map_err(|e| format!("account `{id}`: {e}"))
}

fn ac_sensitive(cfg: &Config, action: &str) -> bool {
    cfg.mfa.sensitive_actions.iter().any(|a| a == action)
}

fn effect_str(e: Effect) -> &'static str {
    match e {
        Effect::Permit => "permit",
        Effect::Forbid => "forbid",
    }
}

fn code_str(c: Option<DenyCode>) -> Option<&'static str> {
    c.map(DenyCode::as_str)
}

/// The explanation as JSON.
fn explanation_json(ex: &Explanation, notes: &[String]) -> serde_json::Value {
    let d = &ex.decision;
    serde_json::json!({
        "decision": if d.allowed { "allow" } else { "deny" },
        "allowed": d.allowed,
        "code": code_str(d.code),
        "determining_policies": d.policies,
        "decision_errors": d.errors,
        "satisfied": ex.satisfied.iter().map(|p| serde_json::json!({
            "id": p.id,
            "effect": effect_str(p.effect),
            "source": p.source,
            "code": code_str(p.code),
            "text": p.text,
        })).collect::<Vec<_>>(),
        "errors": ex.errors,
        "notes": notes,
        "key_policies": ex.key_policies,
    })
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("{by}{l}\n")
            }
        })
        .collect::<String>()
}

/// The explanation for a terminal.
fn explanation_text(ex: &Explanation, notes: &[String]) -> String {
    use std::fmt::Write as _;
    let d = &ex.decision;
    let mut out = String::new();
    match (d.allowed, d.code) {
        (true, _) => out.push_str("decision: allow\n"),
        (false, c) => {
            let _ = writeln!(
                out,
                "decision: deny ({})",
                c.unwrap_or(DenyCode::ForbiddenByPolicy)
            );
        }
    }
    if d.policies.is_empty() {
        if !d.allowed && d.errors.is_empty() {
            out.push_str("determining policies: none (no permit matched: default deny)\n");
        }
    } else {
        let _ = writeln!(out, "determining policies: {}", d.policies.join(", "));
    }
    for n in notes {
        let _ = writeln!(out, "note: {n}");
    }
    if !d.errors.is_empty() {
        out.push_str("\nwhy the request could not be evaluated:\n");
        for e in &d.errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    out.push_str("\nsatisfied policies:\n");
    if ex.satisfied.is_empty() {
        out.push_str("  (none)\n");
    }
    for p in &ex.satisfied {
        let determining = if d.policies.contains(&p.id) {
            " (determining)"
        } else {
            ""
        };
        let code = p.code.map(|c| format!(" [{c}]")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {} from {}{code}{determining}:",
            effect_str(p.effect),
            p.id,
            p.source
        );
        out.push_str(&indent(p.text.trim_end(), "    "));
    }
    if !ex.errors.is_empty() {
        out.push_str("\nevaluation errors:\n");
        for e in &ex.errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    out.push_str("\nthe key's settings as policies:\n");
    out.push_str(&indent(ex.key_policies.trim_end(), "  "));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use super::*;

    #[test]
    fn demo_config_checks() {
        let n = rampart_policy::authz::check_sources(&demo_authz_config()).unwrap();
        assert!(n > 10, "{n}");
    }

    #[test]
    fn notional_is_exact() {
        assert_eq!(
            notional("0.5", Some("65000.00")).as_deref(),
            Some("32500.000")
        );
        assert_eq!(notional("0.5", None), None);
        assert_eq!(notional("x", Some("1")), None);
    }
}
