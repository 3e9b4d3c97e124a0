//! `rampart kill-switch engage / release / list`: the admin listener's kill
//! switch from the command line.
//!
//! ```text
//! rampart kill-switch engage  --target global|account:ID|key:ID [--reason TEXT]
//! rampart kill-switch release --target global|account:ID|key:ID
//! rampart kill-switch list
//!     [--admin-url https://HOST:PORT] [--ca FILE] [--credentials FILE]
//!     [--session TOKEN]
//! ```
//!
//! Once an operator has a WebAuthn credential, engage and release need an
//! operator session (sign in on the admin listener's `/operator` page):
//! `--session`, or the `RAMPART_ADMIN_SESSION` environment variable, sent
//! as `Authorization: Bearer`.
//!
//! The admin URL and the CA that signs its certificate default to the
//! credentials file's `admin_url` and `ca_cert_path` (what `rampart demo`
//! writes, as for `rampart call`). Prints the listener's JSON answer (for
//! an engage with `[kill_switch] cancel_all`, the cancel-all results too).
//! Exit 0 for a 2xx status, 1 for another status, 2 for a usage,
//! credentials or transport error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use rampart_client::http::{HeaderMap, Method};
use rampart_client::{Client, Credentials};

/// Exit code for usage, credentials and transport errors.
const EXIT_ERROR: u8 = 2;

/// Where the admin listener is and which CA to trust.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Admin listener base URL (`https://127.0.0.1:9443`); default: the
    /// credentials file's `admin_url`.
    #[arg(long, value_name = "URL")]
    admin_url: Option<String>,
    /// CA certificate (PEM) of the admin listener; default: the credentials
    /// file's `ca_cert_path`.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Credentials file (the `demo-credentials.json` shape).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "./rampart-data/demo-credentials.json"
    )]
    credentials: PathBuf,
    /// Operator session token (from signing in on `/operator`); default:
    /// the `RAMPART_ADMIN_SESSION` environment variable.
    #[arg(long, value_name = "TOKEN")]
    session: Option<String>,
}

/// Environment variable holding the operator session.
const SESSION_ENV: &str = "RAMPART_ADMIN_SESSION";

/// The `Authorization: Bearer` header of the session, if any.
fn session_headers(a: &AdminArgs) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    let session = a
        .session
        .clone()
        .or_else(|| std::env::var(SESSION_ENV).ok())
        .filter(|s| !s.trim().is_empty());
    if let Some(s) = session {
        let v = rampart_client::http::HeaderValue::from_str(&format!("Bearer {}", s.trim()))
            .map_err(|_| "the session token is not a valid header value".to_owned())?;
        h.insert(rampart_client::http::header::AUTHORIZATION, v);
    }
    Ok(h)
}

/// `rampart kill-switch …`.
#[derive(Debug, Subcommand)]
pub enum KillCmd {
    /// Engage a kill switch: the target's trading requests are refused (and,
    /// with `[kill_switch] cancel_all`, its open orders cancelled upstream).
    Engage {
        /// `global`, `account:ID` or `key:ID`.
        #[arg(long, value_parser = parse_target)]
        target: String,
        /// Why (recorded in the audit trail).
        #[arg(long, value_name = "TEXT", default_value = "operator")]
        reason: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Release a kill switch.
    Release {
        /// `global`, `account:ID` or `key:ID`.
        #[arg(long, value_parser = parse_target)]
        target: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the engaged kill switches.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Checks a `--target` value.
fn parse_target(v: &str) -> Result<String, String> {
    let ok = match v.split_once(':') {
        None => v == "global",
        Some(("account" | "key", id)) => {
            !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control)
        }
        Some(_) => false,
    };
    if ok {
        Ok(v.to_owned())
    } else {
        Err("use global, account:ID or key:ID".to_owned())
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters and `:`
/// stay as they are).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The method and origin-form target of a command.
fn request_of(cmd: &KillCmd) -> (Method, String) {
    match cmd {
        KillCmd::Engage { target, reason, .. } => (
            Method::POST,
            format!(
                "/v1/kill-switch?target={}&reason={}",
                encode(target),
                encode(reason)
            ),
        ),
        KillCmd::Release { target, .. } => (
            Method::POST,
            format!("/v1/kill-switch/release?target={}", encode(target)),
        ),
        KillCmd::List { .. } => (Method::GET, "/v1/kill-switch".to_owned()),
    }
}

/// The admin origin (`https://authority`, no path) and CA PEM.
fn endpoint(a: &AdminArgs) -> Result<(String, Vec<u8>), String> {
    let creds = if a.admin_url.is_none() || a.ca.is_none() {
        Some(Credentials::load(&a.credentials).map_err(|e| {
            format!(
                "cannot load the credentials: {e} (start `rampart demo` first, or pass --admin-url and --ca)"
            )
        })?)
    } else {
        None
    };
    let url = match (&a.admin_url, &creds) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.admin_url.clone().ok_or_else(|| {
            format!(
                "`{}` has no admin_url; pass --admin-url",
                a.credentials.display()
            )
        })?,
        (None, None) => return Err("pass --admin-url".to_owned()),
    };
    let ca_path = match (&a.ca, &creds) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => c.ca_cert_path.clone(),
        (None, None) => return Err("pass --ca".to_owned()),
    };
    let ca = std::fs::read(&ca_path)
        .map_err(|e| format!("cannot read the CA `{}`: {e}", ca_path.display()))?;
    Ok((url.trim_end_matches('/').to_owned(), ca))
}

/// Runs a `rampart kill-switch …` command.
pub fn run(cmd: KillCmd) -> ExitCode {
    let admin = match &cmd {
        KillCmd::Engage { admin, .. }
        | KillCmd::Release { admin, .. }
        | KillCmd::List { admin } => admin,
    };
    let (method, target) = request_of(&cmd);
    let result = endpoint(admin).and_then(|(url, ca)| {
        let headers = session_headers(admin)?;
        let client = Client::new(&url, &ca).map_err(|e| e.to_string())?;
        let rt = crate::policy_cmd::runtime()?;
        rt.block_on(client.send(None, method, &target, None, headers))
            .map_err(|e| e.to_string())
    });
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart kill-switch: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match response.json() {
        Some(v) => println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
        ),
        None => println!("{}", String::from_utf8_lossy(&response.body)),
    }
    if response.status.is_success() {
        ExitCode::SUCCESS
    } else {
        eprintln!("rampart kill-switch: HTTP {}", response.status.as_u16());
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct T {
        #[command(subcommand)]
        cmd: KillCmd,
    }

    fn parse(args: &[&str]) -> Result<KillCmd, clap::Error> {
        T::try_parse_from(std::iter::once("kill-switch").chain(args.iter().copied())).map(|t| t.cmd)
    }

    #[test]
    fn targets_are_checked() {
        for ok in ["global", "account:desk-1", "key:k_123"] {
            assert_eq!(parse_target(ok).unwrap(), ok);
        }
        for bad in ["", "all", "account:", "key:", "user:x", "global:x"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert!(parse(&["engage", "--target", "nobody"]).is_err());
        assert!(parse(&["release"]).is_err(), "release needs --target");
    }

    #[test]
    fn arguments_become_admin_requests() {
        let cmd = parse(&[
            "engage",
            "--target",
            "account:desk 1&x=y",
            "--reason",
            "fat finger: 100×",
        ]);
        // Spaces are not control characters: the id is sent encoded.
        let (m, pq) = request_of(&cmd.unwrap());
        assert_eq!(m, Method::POST);
        assert_eq!(
            pq,
            "/v1/kill-switch?target=account:desk%201%26x%3Dy&reason=fat%20finger:%20100%C3%97"
        );
        let (m, pq) = request_of(&parse(&["release", "--target", "global"]).unwrap());
        assert_eq!(
            (m, pq.as_str()),
            (Method::POST, "/v1/kill-switch/release?target=global")
        );
        let (m, pq) = request_of(&parse(&["list"]).unwrap());
        assert_eq!((m, pq.as_str()), (Method::GET, "/v1/kill-switch"));
        let (_, pq) = request_of(&parse(&["engage", "--target", "key:k1"]).unwrap());
        assert_eq!(pq, "/v1/kill-switch?target=key:k1&reason=operator");
    }

    #[test]
    fn endpoint_defaults_come_from_the_credentials_file() {
        let d = std::env::temp_dir().join(format!("rampart-kill-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ca.pem"), b"PEM").unwrap();
        std::fs::write(
            d.join("creds.json"),
            br#"{"gateway_url":"https://127.0.0.1:8443","admin_url":"https://127.0.0.1:9443/","ca_cert_path":"ca.pem","account":"demo","keys":[]}"#,
        )
        .unwrap();
        let args = AdminArgs {
            admin_url: None,
            ca: None,
            credentials: d.join("creds.json"),
            session: None,
        };
        let (url, ca) = endpoint(&args).unwrap();
        assert_eq!(url, "https://127.0.0.1:9443");
        assert_eq!(ca, b"PEM");
        let args = AdminArgs {
            admin_url: Some("https://10.0.0.1:9443".into()),
            ca: Some(d.join("ca.pem")),
            credentials: d.join("missing.json"),
            session: None,
        };
        assert_eq!(endpoint(&args).unwrap().0, "https://10.0.0.1:9443");
        let args = AdminArgs {
            admin_url: None,
            ca: None,
            credentials: d.join("missing.json"),
            session: None,
        };
        assert!(endpoint(&args)
            .unwrap_err()
            .contains("cannot load the credentials"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_session_is_sent_as_a_bearer_token() {
        let cli = crate::Cli::try_parse_from([
            "rampart",
            "kill-switch",
            "list",
            "--session",
            "abc_DEF-1",
        ])
        .unwrap();
        let crate::Cmd::KillSwitch {
            cmd: KillCmd::List { admin },
        } = cli.cmd
        else {
            panic!("not a list");
        };
        let h = session_headers(&admin).unwrap();
        assert_eq!(h["authorization"], "Bearer abc_DEF-1");
        let bad = AdminArgs {
            session: Some("a\nb".into()),
            ..admin
        };
        assert!(session_headers(&bad).is_err());
    }
}
