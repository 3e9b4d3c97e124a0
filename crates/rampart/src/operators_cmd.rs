//! `rampart operators …`: operator accounts of the admin listener (who may
//! engage the kill switch, unlock and trust sources), from the command
//! line.
//!
//! ```text
//! rampart operators add NAME       # prints a one-time enrolment token (24 h)
//! rampart operators token NAME     # a new enrolment token
//! rampart operators list
//! rampart operators disable NAME   # also revokes its credentials
//! ```
//!
//! The operator registers a WebAuthn credential with the token on the
//! admin listener's `/operator` page. The token is printed once and stored
//! only as its SHA-256. Every change is audited before the command returns.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use rampart_audit::event::types;
use rampart_gateway::admin::operators::{
    new_token, new_user_handle, token_hash, valid_name, ENROLMENT_TOKEN_TTL_MS,
};
use rampart_store::{EnrolmentToken, Operator, Store as _, StoreError};
use rampart_vault::now_ms;

use crate::accounts_cmd::{run_with, Session};

/// `rampart operators …`.
#[derive(Subcommand)]
pub enum OperatorsCmd {
    /// Create an operator and print a one-time enrolment token (valid 24 h).
    Add {
        /// The operator's name (letters, digits, `.`, `_`, `-`, `@`).
        name: String,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Print a new one-time enrolment token for an operator (valid 24 h).
    Token {
        /// The operator's name.
        name: String,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// List operators with their credentials.
    List {
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
    /// Disable an operator: its credentials are revoked, its sessions end
    /// at their next use, its unused tokens stop working.
    Disable {
        /// The operator's name.
        name: String,
        /// TOML configuration file.
        #[arg(long, default_value = "rampart.toml")]
        config: PathBuf,
    },
}

/// Runs a `rampart operators …` command.
pub fn run(cmd: OperatorsCmd) -> ExitCode {
    let config = match &cmd {
        OperatorsCmd::Add { config, .. }
        | OperatorsCmd::Token { config, .. }
        | OperatorsCmd::List { config }
        | OperatorsCmd::Disable { config, .. } => config.clone(),
    };
    run_with("operators", &config, async move |cfg| {
        let changes = !matches!(cmd, OperatorsCmd::List { .. });
        let s = Session::open(cfg, changes).await?;
        match cmd {
            OperatorsCmd::Add { name, .. } => add(&s, &name).await?,
            OperatorsCmd::Token { name, .. } => token(&s, &name).await?,
            OperatorsCmd::List { .. } => list(&s).await?,
            OperatorsCmd::Disable { name, .. } => disable(&s, &name).await?,
        }
        s.close().await
    })
}

fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err("operator names are 1 to 64 letters, digits, `.`, `_`, `-` or `@`".to_owned())
    }
}

/// Issues, stores (as its hash) and prints a new enrolment token.
async fn issue(s: &Session, name: &str) -> Result<(), String> {
    let token = new_token()?;
    let now = now_ms();
    s.vault
        .store()
        .put_enrolment_token(&EnrolmentToken {
            token_hash: token_hash(&token),
            operator: name.to_owned(),
            created_ms: now,
            expires_ms: now.saturating_add(ENROLMENT_TOKEN_TTL_MS),
        })
        .await
        .map_err(|e| match e {
            StoreError::MissingReference(_) => format!("no operator `{name}`"),
            StoreError::Conflict("operator disabled") => {
                format!("operator `{name}` is disabled")
            }
            e => format!("operator `{name}`: {e}"),
        })?;
    s.record(
        &s.admin_event(
            types::PERMISSION_CHANGED,
            "OperatorEnrolmentToken",
            format!("operator:{name}"),
        )
        .plain("operator", name)
        .plain("expires_ms", now.saturating_add(ENROLMENT_TOKEN_TTL_MS)),
    )?;
    println!("enrolment token for `{name}` (valid 24 h, shown once):");
    println!("{}", token.as_str());
    println!(
        "register a security key with it on the admin listener's /operator page; once any operator has a credential, admin changes need a session"
    );
    Ok(())
}

async fn add(s: &Session, name: &str) -> Result<(), String> {
    check_name(name)?;
    let op = Operator {
        name: name.to_owned(),
        user_handle: new_user_handle()?,
        created_ms: now_ms(),
        disabled: false,
        disabled_ms: None,
    };
    s.vault
        .store()
        .create_operator(&op)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => format!("operator `{name}` already exists"),
            e => format!("operator `{name}`: {e}"),
        })?;
    s.record(
        &s.admin_event(
            types::PERMISSION_CHANGED,
            "OperatorAdd",
            format!("operator:{name}"),
        )
        .plain("operator", name),
    )?;
    println!("operator `{name}` created");
    issue(s, name).await
}

async fn token(s: &Session, name: &str) -> Result<(), String> {
    check_name(name)?;
    issue(s, name).await
}

async fn list(s: &Session) -> Result<(), String> {
    let store = s.vault.store();
    let ops = store.list_operators().await.map_err(|e| e.to_string())?;
    println!("name  state  credentials  last_sign_in_ms");
    for op in ops {
        let creds = store
            .list_operator_credentials(&op.name)
            .await
            .map_err(|e| e.to_string())?;
        let live = creds.iter().filter(|c| c.revoked_ms.is_none()).count();
        let last = creds.iter().filter_map(|c| c.last_used_ms).max();
        println!(
            "{}  {}  {live}  {}",
            op.name,
            if op.disabled { "disabled" } else { "enabled" },
            last.map_or_else(|| "-".to_owned(), |t| t.to_string())
        );
    }
    Ok(())
}

async fn disable(s: &Session, name: &str) -> Result<(), String> {
    check_name(name)?;
    let revoked = s
        .vault
        .store()
        .disable_operator(name, now_ms())
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => format!("no operator `{name}`"),
            e => format!("operator `{name}`: {e}"),
        })?;
    s.record(
        &s.admin_event(
            types::PERMISSION_CHANGED,
            "OperatorDisable",
            format!("operator:{name}"),
        )
        .plain("operator", name)
        .plain("credentials_revoked", revoked),
    )?;
    println!("operator `{name}` disabled; {revoked} credential(s) revoked");
    Ok(())
}
