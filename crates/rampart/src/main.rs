//! `rampart`: the one binary. Commands: `serve`, `demo`, `config check`,
//! `keys …`, `audit …`, `call`, `policy …`, `accounts …`, `mfa …`,
//! `kill-switch …`.
//!
//! This file only parses arguments and maps results to exit codes; the work
//! lives in the library crates and in the modules beside it.

mod accounts_cmd;
mod apikeys;
mod audit;
mod audit_cmd;
mod call;
mod demo;
mod keys;
mod kill_cmd;
mod logging;
mod operators_cmd;
mod policy_cmd;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: fewer cycles per allocation than glibc malloc under many
/// threads (see docs/benchmarks.md for the measurement).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid configuration (`EX_CONFIG`-style usage error).
pub const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "rampart", version, about = "Security gateway for trading APIs")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway from a configuration file (production entry point).
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run everything on this machine with embedded defaults: two demo
    /// exchange backends, the gateway on 127.0.0.1:8443 and the admin
    /// listener on 127.0.0.1:9443.
    Demo {
        /// Where certificates, config and credentials live (reused on restart).
        #[arg(long, default_value = "./rampart-data")]
        data_dir: PathBuf,
        /// Public listener address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// Admin listener address.
        #[arg(long, default_value = "127.0.0.1:9443")]
        admin_listen: std::net::SocketAddr,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Key management: data-key rotation, rewrap, root rotation, shredding.
    Keys {
        #[command(subcommand)]
        cmd: keys::KeysCmd,
    },
    /// The tamper-evident audit trail: verify, proofs, search, export.
    Audit {
        #[command(subcommand)]
        cmd: audit_cmd::AuditCmd,
    },
    /// Sign a request with a key from the credentials file, send it, print
    /// the status and body.
    ///
    /// Prints `HTTP <status>` then the body (pretty JSON when it is JSON).
    /// Exit 0 for 2xx, 1 for another status, 2 for usage or transport
    /// errors. Without --key the request is sent unsigned (public routes).
    Call {
        #[command(flatten)]
        args: call::CallArgs,
    },
    /// Cedar authorization policies: check, explain a decision, schema.
    Policy {
        #[command(subcommand)]
        cmd: policy_cmd::PolicyCmd,
    },
    /// Accounts: create, KYC tier, withdrawal address book, a key's
    /// trading permissions.
    Accounts {
        #[command(subcommand)]
        cmd: accounts_cmd::AccountsCmd,
    },
    /// TOTP enrolment of an account (MFA step-up for sensitive actions).
    Mfa {
        #[command(subcommand)]
        cmd: accounts_cmd::MfaCmd,
    },
    /// Operator accounts of the admin listener (WebAuthn sign-in):
    /// add, enrolment tokens, list, disable.
    Operators {
        #[command(subcommand)]
        cmd: operators_cmd::OperatorsCmd,
    },
    /// Engage, release or list kill switches on a running gateway (through
    /// its admin listener).
    KillSwitch {
        #[command(subcommand)]
        cmd: kill_cmd::KillCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a configuration file; print every error with key path and line.
    Check {
        /// TOML configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => config_check(&file),
        Cmd::Serve { config } => serve::run(&config),
        Cmd::Demo {
            data_dir,
            listen,
            admin_listen,
        } => demo::run(&data_dir, listen, admin_listen),
        Cmd::Keys { cmd } => keys::run(cmd),
        Cmd::Audit { cmd } => audit_cmd::run(cmd),
        Cmd::Call { args } => call::run(args),
        Cmd::Policy { cmd } => policy_cmd::run(cmd),
        Cmd::Accounts { cmd } => accounts_cmd::run(cmd),
        Cmd::Mfa { cmd } => accounts_cmd::run_mfa(cmd),
        Cmd::Operators { cmd } => operators_cmd::run(cmd),
        Cmd::KillSwitch { cmd } => kill_cmd::run(cmd),
    }
}

fn config_check(file: &std::path::Path) -> ExitCode {
    // Beyond the file itself: route schemas and rate-limit rules compile.
    let loaded = rampart_core::config::load(file).and_then(|cfg| {
        let extra = rampart_gateway::waf::Waf::compile(&cfg)
            .err()
            .into_iter()
            .chain(rampart_gateway::limits::Limits::compile(&cfg.limits, &cfg.routes).err())
            .chain(rampart_gateway::authz::Authz::compile(&cfg).err())
            .flat_map(|e| e.lines().map(str::to_owned).collect::<Vec<_>>())
            .map(|message| rampart_core::config::ConfigError {
                path: "(compile)".into(),
                line: None,
                message,
            })
            .collect::<Vec<_>>();
        if extra.is_empty() {
            Ok(cfg)
        } else {
            Err(rampart_core::config::ConfigErrors(extra))
        }
    });
    match loaded {
        Ok(cfg) => {
            println!(
                "{}: ok ({} routes, {} upstream pools)",
                file.display(),
                cfg.routes.len(),
                cfg.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                match e.line {
                    Some(l) => eprintln!("{}:{l}: {}: {}", file.display(), e.path, e.message),
                    None => eprintln!("{}: {}: {}", file.display(), e.path, e.message),
                }
            }
            eprintln!("{} error(s)", errs.0.len());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
