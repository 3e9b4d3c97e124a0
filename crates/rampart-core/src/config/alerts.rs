//! `[alerts]`: where security alerts go besides the log.
//!
//! ```toml
//! [alerts]
//! webhook = "https://siem.example/hooks/rampart" # http:// or https://; absent = log only
//! secret_file = "alerts.key"  # HMAC-SHA256 key: owner-only (chmod 600), at least 32 bytes
//! ca_file = "siem-ca.pem"     # PEM roots for an https:// webhook (required for https)
//! timeout = "2s"              # per attempt: connect, TLS, request, response head
//! max_attempts = 5            # 1 = no retry
//! backoff = "250ms"           # first retry delay, doubled each retry …
//! max_backoff = "30s"         # … up to this, plus up to 25% jitter
//! queue = 1024                # alerts waiting to be sent; when full, new ones are dropped
//! min_severity = "warning"    # info | warning | critical: the least severe alert sent
//! ```
//!
//! Every alert is logged whatever these settings; they only decide which
//! alerts are also POSTed, and how. The key is the file's bytes with one
//! trailing newline removed, used as is (not hex- or base64-decoded), so
//! `openssl rand -hex 32 > alerts.key` gives a 64-byte ASCII key that a
//! receiver configures verbatim.
//!
//! An `https://` webhook trusts only the roots in `ca_file`: the gateway
//! ships no built-in root store. For a receiver with a public certificate
//! point `ca_file` at the system bundle (Debian:
//! `/etc/ssl/certs/ca-certificates.crt`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{k, Compiler};

/// How urgent an alert is; mirrors the alert payload's `severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertSeverity {
    /// Worth recording; no action expected.
    Info,
    /// Someone should look soon.
    Warning,
    /// Someone should look now.
    Critical,
}

impl AlertSeverity {
    /// The name used in the configuration and in alert payloads.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The receiver alerts are POSTed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertWebhook {
    /// `http://` or `https://` URL with a host, no user info, no fragment.
    /// May carry a token in its query: never log it whole.
    pub url: http::Uri,
    /// File holding the HMAC-SHA256 key (owner-only, at least 32 bytes).
    pub secret_file: PathBuf,
    /// PEM roots trusted for an `https://` receiver; `Some` exactly when the
    /// URL is `https://`.
    pub ca_file: Option<PathBuf>,
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// Where to POST alerts; `None` = the log only.
    pub webhook: Option<AlertWebhook>,
    /// Limit on one delivery attempt (connect, TLS, request, response head).
    pub timeout: Duration,
    /// Attempts per alert, the first included (1..=20).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub backoff: Duration,
    /// Longest delay between two attempts (before jitter).
    pub max_backoff: Duration,
    /// Alerts waiting to be sent; when full, new alerts are dropped.
    pub queue: usize,
    /// Alerts less severe than this are logged but not sent.
    pub min_severity: AlertSeverity,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook: None,
            timeout: Duration::from_secs(2),
            max_attempts: 5,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            queue: 1024,
            min_severity: AlertSeverity::Warning,
        }
    }
}

impl AlertsConfig {
    /// Shortest HMAC key accepted, in bytes (the SHA-256 output size).
    pub const MIN_SECRET_BYTES: u64 = 32;
    /// Largest HMAC key file accepted, in bytes.
    pub const MAX_SECRET_BYTES: u64 = 4096;
}

const MIN_SECRET_BYTES: u64 = AlertsConfig::MIN_SECRET_BYTES;
const MAX_SECRET_BYTES: u64 = AlertsConfig::MAX_SECRET_BYTES;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    webhook: Option<String>,
    secret_file: Option<String>,
    ca_file: Option<String>,
    timeout: Option<String>,
    max_attempts: Option<u32>,
    backoff: Option<String>,
    max_backoff: Option<String>,
    queue: Option<usize>,
    min_severity: Option<String>,
}

impl Compiler<'_> {
    pub(super) fn alerts(&mut self, table: &toml::Table) -> AlertsConfig {
        let raw = match table.get("alerts") {
            Some(v) => self
                .de::<RawAlerts>(v.clone(), &[k("alerts")])
                .unwrap_or_default(),
            None => RawAlerts::default(),
        };
        let d = AlertsConfig::default();
        let p = |n: &str| [k("alerts"), k(n)];

        let timeout = raw
            .timeout
            .map_or(d.timeout, |s| self.duration(&s, &p("timeout")));
        if timeout > Duration::from_secs(60) {
            self.err(&p("timeout"), "must be at most 60s");
        }
        let max_attempts = raw.max_attempts.unwrap_or(d.max_attempts);
        if !(1..=20).contains(&max_attempts) {
            self.err(&p("max_attempts"), "must be between 1 and 20");
        }
        let backoff = raw
            .backoff
            .map_or(d.backoff, |s| self.duration(&s, &p("backoff")));
        let max_backoff = raw
            .max_backoff
            .map_or(d.max_backoff, |s| self.duration(&s, &p("max_backoff")));
        if max_backoff < backoff {
            self.err(&p("max_backoff"), "must not be shorter than `backoff`");
        }
        if max_backoff > Duration::from_secs(3600) {
            self.err(&p("max_backoff"), "must be at most 1h");
        }
        let queue = raw.queue.unwrap_or(d.queue);
        if !(1..=1_000_000).contains(&queue) {
            self.err(&p("queue"), "must be between 1 and 1000000");
        }
        let min_severity = match raw.min_severity.as_deref() {
            None => d.min_severity,
            Some("info") => AlertSeverity::Info,
            Some("warning") => AlertSeverity::Warning,
            Some("critical") => AlertSeverity::Critical,
            Some(other) => {
                self.err(
                    &p("min_severity"),
                    format!("`{other}` is not one of `info`, `warning`, `critical`"),
                );
                d.min_severity
            }
        };

        let webhook = match raw.webhook {
            None => {
                for (key, set) in [
                    ("secret_file", raw.secret_file.is_some()),
                    ("ca_file", raw.ca_file.is_some()),
                ] {
                    if set {
                        self.err(&p(key), "is only used with `webhook`");
                    }
                }
                None
            }
            Some(url) => self.webhook(&url, raw.secret_file, raw.ca_file),
        };

        AlertsConfig {
            webhook,
            timeout,
            max_attempts,
            backoff,
            max_backoff,
            queue,
            min_severity,
        }
    }

    fn webhook(
        &mut self,
        url: &str,
        secret_file: Option<String>,
        ca_file: Option<String>,
    ) -> Option<AlertWebhook> {
        let p = |n: &str| [k("alerts"), k(n)];
        let before = self.errors.len();
        let uri = match check_url(url) {
            Ok(u) => Some(u),
            Err(why) => {
                self.err(&p("webhook"), why);
                None
            }
        };
        let https = uri
            .as_ref()
            .is_some_and(|u| u.scheme() == Some(&http::uri::Scheme::HTTPS));
        let secret_file = match secret_file {
            None => {
                self.err(
                    &p("secret_file"),
                    "missing: a `webhook` needs a `secret_file` holding the HMAC key",
                );
                None
            }
            Some(f) => {
                let path = self.file(&f, &p("secret_file"));
                if let Err(why) = check_secret_file(&path) {
                    self.err(&p("secret_file"), why);
                }
                Some(path)
            }
        };
        let ca_file = match ca_file {
            Some(f) => {
                let path = self.file(&f, &p("ca_file"));
                if uri.is_some() && !https {
                    self.err(&p("ca_file"), "is only used with an `https://` webhook");
                }
                Some(path)
            }
            None => {
                if https {
                    self.err(
                        &p("ca_file"),
                        "missing: an `https://` webhook needs `ca_file` (the receiver's CA, or the system bundle such as `/etc/ssl/certs/ca-certificates.crt`)",
                    );
                }
                None
            }
        };
        match (uri, secret_file, self.errors.len() == before) {
            (Some(url), Some(secret_file), true) => Some(AlertWebhook {
                url,
                secret_file,
                ca_file,
            }),
            _ => None,
        }
    }
}

/// Parses a webhook URL: `http` or `https`, a host, no user info, no
/// fragment.
fn check_url(s: &str) -> Result<http::Uri, String> {
    let bad = || format!("`{s}` is not an `http://` or `https://` URL");
    if s.contains(['#', ' ', '\t', '\r', '\n']) {
        return Err(bad());
    }
    let uri: http::Uri = s.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "scheme `{other}` is not supported: use `http://` or `https://`"
            ))
        }
        None => return Err(bad()),
    }
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{s}` must not carry user info (`user@`): the HMAC signature authenticates the gateway"
        ));
    }
    if authority.host().is_empty() {
        return Err(bad());
    }
    Ok(uri)
}

/// Checks a key file's size and, on Unix, that only its owner can access
/// it; the message names the fix.
fn check_secret_file(path: &Path) -> Result<(), String> {
    // A missing file was reported by `Compiler::file` already.
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the HMAC key file `{}` has permissions {mode:04o}; run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    if meta.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the HMAC key file `{}` holds {} bytes, fewer than {MIN_SECRET_BYTES} (try `openssl rand -hex 32`)",
            path.display(),
            meta.len()
        ));
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "the HMAC key file `{}` holds {} bytes, more than {MAX_SECRET_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]
mod tests {
    use super::super::parse;
    use super::*;

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8443"
[dangerous]
plaintext = true
[upstreams.ex]
endpoints = ["127.0.0.1:9001"]
[[routes]]
method = "GET"
path = "/v1/time"
upstream = "ex"
action = "GetTime"
scope = "public"
"#;

    struct Dir {
        dir: tempfile::TempDir,
    }

    impl Dir {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let d = Self { dir };
            d.write("alerts.key", &[b'k'; 64], 0o600);
            d.write("ca.pem", b"-----BEGIN CERTIFICATE-----\n", 0o644);
            d
        }

        fn write(&self, name: &str, bytes: &[u8], mode: u32) {
            let p = self.dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            #[cfg(not(unix))]
            let _ = mode;
        }

        fn parse(&self, alerts: &str) -> Result<super::super::Config, Vec<String>> {
            parse(&format!("{BASE}{alerts}"), self.dir.path()).map_err(|e| {
                e.0.into_iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect()
            })
        }

        fn errors(&self, alerts: &str) -> Vec<String> {
            self.parse(alerts).err().unwrap_or_default()
        }
    }

    fn has(errors: &[String], path: &str, needle: &str) -> bool {
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle))
    }

    #[test]
    fn absent_section_is_log_only_with_defaults() {
        let d = Dir::new();
        let cfg = d.parse("").unwrap();
        assert_eq!(cfg.alerts, AlertsConfig::default());
        assert!(cfg.alerts.webhook.is_none());
        assert_eq!(cfg.alerts.min_severity, AlertSeverity::Warning);
    }

    #[test]
    fn full_https_section_compiles() {
        let d = Dir::new();
        let cfg = d
            .parse(
                r#"
[alerts]
webhook = "https://siem.example:8443/hooks/rampart?tenant=7"
secret_file = "alerts.key"
ca_file = "ca.pem"
timeout = "500ms"
max_attempts = 3
backoff = "10ms"
max_backoff = "1s"
queue = 16
min_severity = "critical"
"#,
            )
            .unwrap();
        let a = cfg.alerts;
        let w = a.webhook.unwrap();
        assert_eq!(w.url.host(), Some("siem.example"));
        assert_eq!(w.url.port_u16(), Some(8443));
        assert_eq!(w.secret_file, d.dir.path().join("alerts.key"));
        assert_eq!(w.ca_file, Some(d.dir.path().join("ca.pem")));
        assert_eq!(a.timeout, Duration::from_millis(500));
        assert_eq!(a.max_attempts, 3);
        assert_eq!(a.backoff, Duration::from_millis(10));
        assert_eq!(a.max_backoff, Duration::from_secs(1));
        assert_eq!(a.queue, 16);
        assert_eq!(a.min_severity, AlertSeverity::Critical);
    }

    #[test]
    fn plain_http_needs_no_ca() {
        let d = Dir::new();
        let cfg = d
            .parse("[alerts]\nwebhook = \"http://127.0.0.1:9000/\"\nsecret_file = \"alerts.key\"\n")
            .unwrap();
        let w = cfg.alerts.webhook.unwrap();
        assert_eq!(w.ca_file, None);
    }

    #[test]
    fn missing_secret_file() {
        let d = Dir::new();
        let e = d.errors("[alerts]\nwebhook = \"http://127.0.0.1:9000/\"\n");
        assert!(has(&e, "alerts.secret_file", "missing"), "{e:#?}");
        let e = d
            .errors("[alerts]\nwebhook = \"http://127.0.0.1:9000/\"\nsecret_file = \"nope.key\"\n");
        assert!(has(&e, "alerts.secret_file", "does not exist"), "{e:#?}");
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_are_refused() {
        let d = Dir::new();
        for mode in [0o640, 0o604, 0o644, 0o660] {
            d.write("loose.key", &[b'k'; 64], mode);
            let e = d.errors(
                "[alerts]\nwebhook = \"http://127.0.0.1:9000/\"\nsecret_file = \"loose.key\"\n",
            );
            assert!(
                has(&e, "alerts.secret_file", &format!("permissions {mode:04o}"))
                    && has(&e, "alerts.secret_file", "chmod 600"),
                "{mode:o}: {e:#?}"
            );
        }
        d.write("tight.key", &[b'k'; 64], 0o400);
        let e = d.errors(
            "[alerts]\nwebhook = \"http://127.0.0.1:9000/\"\nsecret_file = \"tight.key\"\n",
        );
        assert!(e.is_empty(), "{e:#?}");
    }

    #[test]
    fn short_secret_is_refused() {
        let d = Dir::new();
        d.write("short.key", b"0123456789abcdef0123456789abcde", 0o600);
        let e = d.errors(
            "[alerts]\nwebhook = \"http://127.0.0.1:9000/\"\nsecret_file = \"short.key\"\n",
        );
        assert!(has(&e, "alerts.secret_file", "fewer than 32"), "{e:#?}");
        d.write("huge.key", &[b'k'; 5000], 0o600);
        let e = d
            .errors("[alerts]\nwebhook = \"http://127.0.0.1:9000/\"\nsecret_file = \"huge.key\"\n");
        assert!(has(&e, "alerts.secret_file", "more than 4096"), "{e:#?}");
    }

    #[test]
    fn bad_urls() {
        let d = Dir::new();
        for (url, needle) in [
            ("ftp://siem.example/x", "scheme `ftp`"),
            ("siem.example/hook", "is not an"),
            ("/hook", "is not an"),
            ("https://user:pw@siem.example/x", "user info"),
            ("http://siem.example/x#frag", "is not an"),
            ("http:// siem.example/", "is not an"),
            ("", "is not an"),
        ] {
            let e = d.errors(&format!(
                "[alerts]\nwebhook = \"{url}\"\nsecret_file = \"alerts.key\"\n"
            ));
            assert!(has(&e, "alerts.webhook", needle), "{url}: {e:#?}");
        }
    }

    #[test]
    fn ca_file_rules() {
        let d = Dir::new();
        let e = d.errors(
            "[alerts]\nwebhook = \"https://siem.example/\"\nsecret_file = \"alerts.key\"\n",
        );
        assert!(has(&e, "alerts.ca_file", "needs `ca_file`"), "{e:#?}");
        let e = d.errors(
            "[alerts]\nwebhook = \"http://siem.example/\"\nsecret_file = \"alerts.key\"\nca_file = \"ca.pem\"\n",
        );
        assert!(
            has(&e, "alerts.ca_file", "only used with an `https://`"),
            "{e:#?}"
        );
        let e = d.errors(
            "[alerts]\nwebhook = \"https://siem.example/\"\nsecret_file = \"alerts.key\"\nca_file = \"missing.pem\"\n",
        );
        assert!(has(&e, "alerts.ca_file", "does not exist"), "{e:#?}");
    }

    #[test]
    fn settings_without_webhook_are_refused() {
        let d = Dir::new();
        let e = d.errors("[alerts]\nsecret_file = \"alerts.key\"\nca_file = \"ca.pem\"\n");
        assert!(
            has(&e, "alerts.secret_file", "only used with `webhook`"),
            "{e:#?}"
        );
        assert!(
            has(&e, "alerts.ca_file", "only used with `webhook`"),
            "{e:#?}"
        );
        // Tuning without a webhook is harmless and allowed.
        assert!(d
            .errors("[alerts]\nqueue = 8\nmin_severity = \"info\"\n")
            .is_empty());
    }

    #[test]
    fn every_mistake_is_reported() {
        let d = Dir::new();
        let e = d.errors(
            r#"
[alerts]
webhook = "gopher://x/"
timeout = "2 fortnights"
max_attempts = 0
backoff = "2s"
max_backoff = "1s"
queue = 0
min_severity = "panic"
"#,
        );
        for (path, needle) in [
            ("alerts.webhook", "scheme `gopher`"),
            ("alerts.secret_file", "missing"),
            ("alerts.timeout", "not a duration"),
            ("alerts.max_attempts", "between 1 and 20"),
            ("alerts.max_backoff", "shorter than `backoff`"),
            ("alerts.queue", "between 1 and 1000000"),
            ("alerts.min_severity", "`panic` is not one of"),
        ] {
            assert!(has(&e, path, needle), "missing {path} in {e:#?}");
        }
        let e = d.errors("[alerts]\nmax_attempts = 21\ntimeout = \"0s\"\nqueue = 2000000\nmax_backoff = \"2h\"\n");
        for path in [
            "alerts.max_attempts",
            "alerts.timeout",
            "alerts.queue",
            "alerts.max_backoff",
        ] {
            assert!(
                e.iter().any(|m| m.starts_with(&format!("{path}:"))),
                "missing {path} in {e:#?}"
            );
        }
        let e = d.errors("[alerts]\ntimeout = \"90s\"\n");
        assert!(has(&e, "alerts.timeout", "at most 60s"), "{e:#?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let d = Dir::new();
        let e = d.errors("[alerts]\nsecret = \"hunter2\"\n");
        assert!(e.iter().any(|m| m.starts_with("alerts.secret:")), "{e:#?}");
    }

    #[test]
    fn severity_order_and_names() {
        assert!(AlertSeverity::Info < AlertSeverity::Warning);
        assert!(AlertSeverity::Warning < AlertSeverity::Critical);
        assert_eq!(AlertSeverity::Critical.as_str(), "critical");
    }
}
