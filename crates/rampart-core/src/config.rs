//! Configuration: TOML text → raw structs (`deny_unknown_fields`) → typed,
//! validated [`Config`].
//!
//! [`parse`] collects *every* error it can find in one pass, each with its key
//! path and line, instead of stopping at the first: each section, each
//! upstream and each route is deserialised on its own, and the semantic checks
//! (references, ranges, templates, files) all run. Within one table serde stops
//! at that table's first type error; the other tables are still checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;

mod abuse;
mod alerts;
mod authz;
mod limits;
mod waf;
pub use abuse::{AbuseConfig, RiskSettings};
pub use alerts::{AlertSeverity, AlertWebhook, AlertsConfig};
pub use authz::{KillSwitchConfig, MfaConfig, PolicyConfig, PretradeConfig, PretradeLimits};
pub use limits::{EscalationConfig, LimitBy, LimitCost, LimitRoutes, LimitRule, LimitsConfig};
pub use waf::WafConfig;

/// One configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `routes[2].upstream`.
    pub path: String,
    /// 1-based line in the file, where it could be located.
    pub line: Option<usize>,
    /// Lowercase message, user input in backticks.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// All errors of one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------- typed config

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The public listener.
    pub server: ServerConfig,
    /// The admin listener (metrics, health), if enabled.
    pub admin: Option<AdminConfig>,
    /// Logging.
    pub log: LogConfig,
    /// Settings that weaken security; each logs a warning at start.
    pub dangerous: DangerousConfig,
    /// Upstream pools by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Routes in file order.
    pub routes: Vec<RouteConfig>,
    /// Where durable state lives.
    pub storage: StorageConfig,
    /// The key hierarchy: root key provider and data-key rotation.
    pub keys: KeysConfig,
    /// Request authentication.
    pub auth: AuthConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Rate limits (`[limits]`).
    pub limits: LimitsConfig,
    /// Input validation and injection detection (`[waf]`).
    pub waf: WafConfig,
    /// Failed-authentication defense (`[abuse]`).
    pub abuse: AbuseConfig,
    /// Adaptive risk scoring (`[risk]`).
    pub risk: RiskSettings,
    /// Security alerts: log, and optionally a signed webhook (`[alerts]`).
    pub alerts: AlertsConfig,
    /// Cedar authorization (`[policy]`); `None`: only key scopes, IP
    /// allow lists and expiry are enforced.
    pub policy: Option<PolicyConfig>,
    /// MFA step-up (`[mfa]`).
    pub mfa: MfaConfig,
    /// Pre-trade risk limits (`[pretrade]`); `None`: off.
    pub pretrade: Option<PretradeConfig>,
    /// Kill switch behaviour (`[kill_switch]`).
    pub kill_switch: KillSwitchConfig,
}

/// Request authentication settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Oldest accepted request (its claimed creation time).
    pub max_age: Duration,
    /// How far in the future a request's creation time may be (clock skew).
    pub max_future: Duration,
    /// Most nonces remembered at once (each for `max_age + max_future`).
    pub nonce_cache_entries: usize,
    /// How long a key looked up in the store is cached in memory (bounds
    /// how long a revocation made by another process takes to apply).
    pub key_cache_ttl: Duration,
    /// Lifetime of OAuth access tokens (at most 15 minutes).
    pub token_lifetime: Duration,
    /// File holding the HMAC secret with which the gateway signs the
    /// identity headers it sends upstream (base64, owner-only). Created
    /// under the data dir when not set.
    pub upstream_identity_key_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(5),
            max_future: Duration::from_secs(1),
            nonce_cache_entries: 1_000_000,
            key_cache_ttl: Duration::from_secs(1),
            token_lifetime: Duration::from_secs(900),
            upstream_identity_key_file: None,
        }
    }
}

/// What the gateway does when the audit writer's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOnFull {
    /// Refuse new requests on authenticated routes (503
    /// `AUDIT_UNAVAILABLE`) until the writer catches up: no request is
    /// served without its audit record. The default.
    Reject,
    /// Keep serving and count the records lost (an `audit.overflow` event
    /// records how many). For venues that rank availability above a
    /// complete trail; never the default.
    Continue,
}

/// Where the audit clock learns whether the host clock is synchronised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockSyncConfig {
    /// systemd-timesyncd's marker if present, else `unknown`.
    Auto,
    /// The operator asserts the host clock is disciplined.
    Assume,
    /// Synchronised while this file exists.
    File(PathBuf),
}

/// One audit exporter (OCSF JSON lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditExporterConfig {
    /// Appends to a local file.
    File {
        /// Exporter name (names its cursor).
        name: String,
        /// File to append to.
        path: PathBuf,
    },
    /// RFC 5424 over TCP with TLS 1.3 (RFC 5425 framing).
    Syslog {
        /// Exporter name (names its cursor).
        name: String,
        /// `host:port` of the collector.
        address: String,
        /// TLS server name to verify.
        server_name: String,
        /// CA certificate (PEM) the collector's certificate chains to.
        ca_file: PathBuf,
        /// Syslog facility (0–23; default 13, log audit).
        facility: u8,
    },
}

/// The audit trail settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Whether the gateway writes the audit trail (default true).
    pub enabled: bool,
    /// Log directory (default `<data_dir>/audit`).
    pub dir: Option<PathBuf>,
    /// Checkpoint origin line and signing key name.
    pub origin: String,
    /// Longest time a request decision waits for its group commit (fsync).
    pub group_commit: Duration,
    /// Request decisions queued for the writer at most.
    pub queue_capacity: usize,
    /// Policy when the queue is full.
    pub on_full: AuditOnFull,
    /// A checkpoint at least every this many entries …
    pub checkpoint_every: u64,
    /// … and at least this often while the log grows.
    pub checkpoint_interval: Duration,
    /// Segment files roll over at this size.
    pub segment_max_bytes: u64,
    /// Entries younger than this are never deleted (PCI DSS 10.5.1: 12
    /// months).
    pub retention: Duration,
    /// Where segments are exported before they are pruned (default
    /// `<data_dir>/audit-archive`).
    pub archive_dir: Option<PathBuf>,
    /// Clock sync source.
    pub clock_sync: ClockSyncConfig,
    /// Exporters.
    pub exporters: Vec<AuditExporterConfig>,
}

/// Shortest retention the configuration accepts: PCI DSS 10.5.1's twelve
/// months.
pub const MIN_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            origin: "rampart/audit".to_owned(),
            group_commit: Duration::from_millis(10),
            queue_capacity: 65_536,
            on_full: AuditOnFull::Reject,
            checkpoint_every: 100_000,
            checkpoint_interval: Duration::from_secs(1),
            segment_max_bytes: 64 * 1024 * 1024,
            retention: MIN_AUDIT_RETENTION,
            archive_dir: None,
            clock_sync: ClockSyncConfig::Auto,
            exporters: Vec::new(),
        }
    }
}

impl AuditConfig {
    /// The log directory for a data dir.
    #[must_use]
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("audit"))
    }

    /// The archive directory for a data dir.
    #[must_use]
    pub fn archive_dir_in(&self, data_dir: &Path) -> PathBuf {
        self.archive_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("audit-archive"))
    }
}

/// Where durable state lives.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Data directory (root key file, database). Relative paths are
    /// resolved against the configuration file's directory. Must not be
    /// world-accessible.
    pub data_dir: PathBuf,
}

/// Where a secret (passphrase, PIN) is read from at start. The value itself
/// never appears in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of the process.
    Env(String),
    /// A file (first line, trailing newline removed); must be readable by
    /// its owner only.
    File(PathBuf),
}

/// Which provider holds the root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProviderConfig {
    /// A root key file under the data dir, optionally sealed with a
    /// passphrase (argon2id).
    Local {
        /// Where the passphrase comes from; `None` = unsealed file.
        passphrase: Option<SecretSource>,
    },
    /// A PKCS#11 token (HSM); the root key never leaves it.
    Pkcs11 {
        /// Path of the PKCS#11 module (`.so`).
        module: PathBuf,
        /// Token label.
        token: String,
        /// Where the user PIN comes from.
        pin: SecretSource,
        /// Label prefix of Rampart's objects in the token.
        label: String,
    },
}

/// The key hierarchy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysConfig {
    /// Root key provider.
    pub provider: KeyProviderConfig,
    /// Rotate a data key after this many encryptions (at most 2^31).
    pub rotate_after_encryptions: u64,
    /// Rotate a data key once it is this old.
    pub max_data_key_age: Duration,
    /// How often the gateway flushes encryption counters, picks up new
    /// key versions and rotates due keys.
    pub refresh_interval: Duration,
}

/// Most encryptions a data key may be configured to perform before rotation:
/// half the 2^32 NIST SP 800-38D bound for random 96-bit nonces.
pub const MAX_ROTATE_AFTER_ENCRYPTIONS: u64 = 1 << 31;

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            provider: KeyProviderConfig::Local { passphrase: None },
            rotate_after_encryptions: MAX_ROTATE_AFTER_ENCRYPTIONS,
            max_data_key_age: Duration::from_secs(90 * 24 * 3600),
            refresh_interval: Duration::from_secs(5),
        }
    }
}

/// Public listener settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Concurrent connections served; more get `OVERLOADED`.
    pub max_connections: usize,
    /// Bytes of request line + headers.
    pub max_header_bytes: usize,
    /// Default request body limit (routes may override).
    pub max_body_bytes: usize,
    /// Time allowed to receive a complete request head.
    pub header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Time allowed to receive the request body.
    pub request_timeout: Duration,
    /// TLS; `None` only when `dangerous.plaintext` is set.
    pub tls: Option<TlsConfig>,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates requested.
    None,
    /// Requested and verified when presented.
    Optional,
    /// Required; the handshake fails without one.
    Required,
}

/// Certificate settings of a listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
}

/// Admin listener settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// TLS; defaults to the server's certificate.
    pub tls: Option<TlsConfig>,
    /// Operator sign-in with WebAuthn (`[admin.operators]`).
    pub operators: OperatorsConfig,
}

/// Operator sign-in on the admin listener (`[admin.operators]`): the
/// WebAuthn relying party and the sessions it issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorsConfig {
    /// WebAuthn RP id: the domain credentials are bound to (`localhost`).
    pub rp_id: String,
    /// RP name shown by authenticators (`Rampart admin`).
    pub rp_name: String,
    /// Origins a ceremony may come from (`https://…`); empty means
    /// `https://<rp_id>:<admin port>`, resolved when the listener binds.
    pub origins: Vec<String>,
    /// Require the user-verified flag (PIN or biometric); `true` unless
    /// `user_verification = "preferred"`.
    pub require_uv: bool,
    /// A session ends after this long without use (15 min).
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not (8 h).
    pub session_ttl: Duration,
    /// A ceremony (challenge) must finish within this (5 min).
    pub ceremony_ttl: Duration,
    /// Most ceremonies pending at once (256); more are refused with 503.
    pub max_ceremonies: usize,
    /// Most sessions held at once (1024); more are refused with 503.
    pub max_sessions: usize,
}

impl Default for OperatorsConfig {
    fn default() -> Self {
        Self {
            rp_id: "localhost".to_owned(),
            rp_name: "Rampart admin".to_owned(),
            origins: Vec::new(),
            require_uv: true,
            session_idle: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(8 * 3600),
            ceremony_ttl: Duration::from_secs(5 * 60),
            max_ceremonies: 256,
            max_sessions: 1024,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// One JSON line per request.
    pub access_log: bool,
    /// `tracing` filter directive (e.g. `info`).
    pub level: String,
}

/// Settings that weaken security.
#[derive(Debug, Clone, Default)]
pub struct DangerousConfig {
    /// Serve plain HTTP on the public listener (no TLS).
    pub plaintext: bool,
}

/// Protocol spoken to an upstream pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    H2,
}

/// An upstream pool.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `host:port` authorities.
    pub endpoints: Vec<String>,
    /// Protocol to the upstream.
    pub protocol: UpstreamProtocol,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Default per-attempt response timeout.
    pub timeout: Duration,
    /// Requests in flight to the pool before it fails fast (circuit breaker).
    pub max_in_flight: usize,
    /// Extra attempts on other endpoints, where a retry is safe.
    pub retries: u32,
    /// Active health checks.
    pub health: Option<HealthConfig>,
    /// Passive ejection.
    pub passive: PassiveConfig,
}

/// Active health check settings.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Path requested with GET.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Time allowed per check.
    pub timeout: Duration,
    /// Consecutive successes to re-admit.
    pub healthy_threshold: u32,
    /// Consecutive failures to eject.
    pub unhealthy_threshold: u32,
}

/// Passive ejection (outlier detection).
#[derive(Debug, Clone)]
pub struct PassiveConfig {
    /// Consecutive failed requests that eject an endpoint.
    pub consecutive_failures: u32,
    /// How long an ejected endpoint stays out before a trial request.
    pub ejection: Duration,
}

/// When a failed attempt may be sent again to another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Safe methods (GET, HEAD, OPTIONS) on any failure; others only when
    /// the request provably never reached the upstream.
    Safe,
    /// Only when the request provably never reached the upstream.
    ConnectOnly,
    /// Never.
    Never,
}

/// One route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// HTTP method.
    pub method: Method,
    /// Path template, e.g. `/v1/orders/{order_id}`.
    pub path: String,
    /// Upstream pool name.
    pub upstream: String,
    /// Action name (`PlaceOrder`, …) for authorization and audit.
    pub action: String,
    /// Required scope (`public` means no credentials).
    pub scope: String,
    /// Request weight for rate limits.
    pub weight: u32,
    /// Upstream path template using the same `{name}` placeholders.
    pub rewrite: Option<String>,
    /// Body limit overriding the server's.
    pub max_body_bytes: Option<usize>,
    /// Upstream timeout overriding the pool's.
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Route group for rate limits (`orders`, `cancels`, …).
    pub group: Option<String>,
    /// The route's positive model: a JSON document with optional `params`,
    /// `query` and `body` JSON Schemas.
    pub schema: Option<PathBuf>,
    /// Injection detection on this route; `None` = `[waf] mode`.
    pub waf: Option<WafMode>,
    /// Where the account the request acts on is named (object-level
    /// authorization); `None`: the key's own account.
    pub account: Option<Locator>,
    /// Where the order id the request acts on is named; its recorded owner
    /// must be the key's account or one of its sub-accounts.
    pub order_id: Option<Locator>,
    /// Where the instrument is named (authorization resource).
    pub instrument: Option<Locator>,
}

/// Where a value lives in a request: `path:NAME`, `query:NAME` or
/// `body:/json/pointer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// A path placeholder.
    Path(String),
    /// A query parameter.
    Query(String),
    /// A JSON pointer into the body.
    Body(String),
}

impl Locator {
    /// Parses `path:NAME`, `query:NAME` or `body:/pointer`.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_once(':')?;
        let name_ok = !rest.is_empty()
            && rest.len() <= 64
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'));
        if !name_ok {
            return None;
        }
        match kind {
            "path" if !rest.contains('/') => Some(Self::Path(rest.to_owned())),
            "query" if !rest.contains('/') => Some(Self::Query(rest.to_owned())),
            "body" if rest.starts_with('/') => Some(Self::Body(rest.to_owned())),
            _ => None,
        }
    }
}

/// What the injection detector does with a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafMode {
    /// Refuse the request with `403 REQUEST_BLOCKED`.
    Block,
    /// Let it through, log and audit the hit.
    Detect,
    /// Do not run the detector.
    Off,
}

// ------------------------------------------------------------------ raw structs

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    #[serde(default = "d_max_connections")]
    max_connections: usize,
    #[serde(default = "d_max_header_bytes")]
    max_header_bytes: usize,
    #[serde(default = "d_max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default = "d_header_read_timeout")]
    header_read_timeout: String,
    #[serde(default = "d_idle_timeout")]
    idle_timeout: String,
    #[serde(default = "d_request_timeout")]
    request_timeout: String,
    tls: Option<RawTls>,
}

fn d_max_connections() -> usize {
    10_000
}
fn d_max_header_bytes() -> usize {
    16 * 1024
}
fn d_max_body_bytes() -> usize {
    64 * 1024
}
fn d_header_read_timeout() -> String {
    "5s".into()
}
fn d_idle_timeout() -> String {
    "60s".into()
}
fn d_request_timeout() -> String {
    "10s".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
    client_ca: Option<String>,
    client_auth: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
    tls: Option<RawTls>,
    operators: Option<RawOperators>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperators {
    #[serde(default = "d_rp_id")]
    rp_id: String,
    #[serde(default = "d_rp_name")]
    rp_name: String,
    #[serde(default)]
    origins: Vec<String>,
    #[serde(default = "d_user_verification")]
    user_verification: String,
    #[serde(default = "d_session_idle")]
    session_idle: String,
    #[serde(default = "d_session_ttl")]
    session_ttl: String,
    #[serde(default = "d_ceremony_ttl")]
    ceremony_ttl: String,
    #[serde(default = "d_max_ceremonies")]
    max_ceremonies: usize,
    #[serde(default = "d_max_sessions")]
    max_sessions: usize,
}

fn d_rp_id() -> String {
    "localhost".into()
}
fn d_rp_name() -> String {
    "Rampart admin".into()
}
fn d_user_verification() -> String {
    "required".into()
}
fn d_session_idle() -> String {
    "15m".into()
}
fn d_session_ttl() -> String {
    "8h".into()
}
fn d_ceremony_ttl() -> String {
    "5m".into()
}
fn d_max_ceremonies() -> usize {
    256
}
fn d_max_sessions() -> usize {
    1024
}

/// Whether `host` is a plain DNS name (lowercase labels of letters, digits
/// and hyphens), the form an RP id must take.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Compiles `[admin.operators]`.
fn compile_operators(c: &mut Compiler<'_>, raw: RawOperators, base: &[Seg]) -> OperatorsConfig {
    let p = |n: &str| {
        let mut v = base.to_vec();
        v.push(k(n));
        v
    };
    if !is_dns_name(&raw.rp_id) {
        c.err(
            &p("rp_id"),
            format!(
                "`{}` is not a lowercase domain name (no scheme, port or path)",
                raw.rp_id
            ),
        );
    }
    if raw.rp_name.is_empty() || raw.rp_name.len() > 64 || raw.rp_name.chars().any(char::is_control)
    {
        c.err(
            &p("rp_name"),
            "must be 1 to 64 characters without control characters",
        );
    }
    for o in &raw.origins {
        // An origin is `https://host[:port]`, and the RP id must be the
        // host or a parent domain of it (WebAuthn §5.1.3).
        let host = o
            .strip_prefix("https://")
            .filter(|rest| !rest.contains('/') && !rest.is_empty())
            .map(|rest| {
                rest.rsplit_once(':').map_or(rest, |(h, port)| {
                    if port.parse::<u16>().is_ok() {
                        h
                    } else {
                        rest
                    }
                })
            });
        match host {
            None => c.err(
                &p("origins"),
                format!("`{o}` is not an `https://host[:port]` origin"),
            ),
            Some(h) if h != raw.rp_id && !h.ends_with(&format!(".{}", raw.rp_id)) => c.err(
                &p("origins"),
                format!(
                    "the host of `{o}` is not `{}` or a subdomain of it",
                    raw.rp_id
                ),
            ),
            Some(_) => {}
        }
    }
    let require_uv = match raw.user_verification.as_str() {
        "required" => true,
        "preferred" => false,
        other => {
            c.err(
                &p("user_verification"),
                format!("`{other}` is not `required` or `preferred`"),
            );
            true
        }
    };
    let session_idle = c.duration(&raw.session_idle, &p("session_idle"));
    let session_ttl = c.duration(&raw.session_ttl, &p("session_ttl"));
    let ceremony_ttl = c.duration(&raw.ceremony_ttl, &p("ceremony_ttl"));
    if session_idle > session_ttl {
        c.err(&p("session_idle"), "must not be longer than `session_ttl`");
    }
    c.positive(raw.max_ceremonies, &p("max_ceremonies"));
    c.positive(raw.max_sessions, &p("max_sessions"));
    OperatorsConfig {
        rp_id: raw.rp_id,
        rp_name: raw.rp_name,
        origins: raw.origins,
        require_uv,
        session_idle,
        session_ttl,
        ceremony_ttl,
        max_ceremonies: raw.max_ceremonies,
        max_sessions: raw.max_sessions,
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "d_true")]
    access_log: bool,
    #[serde(default = "d_level")]
    level: String,
}

fn d_true() -> bool {
    true
}
fn d_level() -> String {
    "info".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDangerous {
    #[serde(default)]
    plaintext: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    max_age: Option<String>,
    max_future: Option<String>,
    nonce_cache_entries: Option<usize>,
    key_cache_ttl: Option<String>,
    token_lifetime: Option<String>,
    upstream_identity_key_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    enabled: Option<bool>,
    dir: Option<String>,
    origin: Option<String>,
    group_commit: Option<String>,
    queue_capacity: Option<usize>,
    on_full: Option<String>,
    checkpoint_every: Option<u64>,
    checkpoint_interval: Option<String>,
    segment_max_bytes: Option<u64>,
    retention: Option<String>,
    archive_dir: Option<String>,
    clock_sync: Option<String>,
    #[serde(default)]
    exporters: Vec<RawAuditExporter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuditExporter {
    name: String,
    kind: String,
    path: Option<String>,
    address: Option<String>,
    server_name: Option<String>,
    ca_file: Option<String>,
    facility: Option<u8>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    provider: Option<String>,
    passphrase_env: Option<String>,
    passphrase_file: Option<String>,
    rotate_after_encryptions: Option<u64>,
    max_data_key_age: Option<String>,
    refresh_interval: Option<String>,
    pkcs11: Option<RawPkcs11>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPkcs11 {
    module: String,
    token: String,
    pin_env: Option<String>,
    pin_file: Option<String>,
    label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    endpoints: Vec<String>,
    #[serde(default = "d_protocol")]
    protocol: String,
    #[serde(default = "d_connect_timeout")]
    connect_timeout: String,
    #[serde(default = "d_upstream_timeout")]
    timeout: String,
    #[serde(default = "d_max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "d_retries")]
    retries: u32,
    health: Option<RawHealth>,
    passive: Option<RawPassive>,
}

fn d_protocol() -> String {
    "http1".into()
}
fn d_connect_timeout() -> String {
    "1s".into()
}
fn d_upstream_timeout() -> String {
    "5s".into()
}
fn d_max_in_flight() -> usize {
    4096
}
fn d_retries() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: String,
    #[serde(default = "d_health_interval")]
    interval: String,
    #[serde(default = "d_health_timeout")]
    timeout: String,
    #[serde(default = "d_two")]
    healthy_threshold: u32,
    #[serde(default = "d_three")]
    unhealthy_threshold: u32,
}

fn d_health_interval() -> String {
    "2s".into()
}
fn d_health_timeout() -> String {
    "1s".into()
}
fn d_two() -> u32 {
    2
}
fn d_three() -> u32 {
    3
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPassive {
    #[serde(default = "d_three")]
    consecutive_failures: u32,
    #[serde(default = "d_ejection")]
    ejection: String,
}

fn d_ejection() -> String {
    "10s".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: String,
    path: String,
    upstream: String,
    action: String,
    scope: String,
    #[serde(default = "d_weight")]
    weight: u32,
    rewrite: Option<String>,
    max_body_bytes: Option<usize>,
    timeout: Option<String>,
    retry: Option<String>,
    group: Option<String>,
    schema: Option<String>,
    waf: Option<String>,
    account: Option<String>,
    order_id: Option<String>,
    instrument: Option<String>,
}

fn d_weight() -> u32 {
    1
}

// --------------------------------------------------------------------- compile

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() {
        s.push_str("(root)");
    }
    s
}

struct Compiler<'a> {
    text: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.bytes().filter(|b| *b == b'\n').count())
        + 1
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

impl<'a> Compiler<'a> {
    /// Finds the line of the deepest existing item on `path`.
    fn locate(&self, path: &[Seg]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item: &toml_edit::Item = doc.as_item();
        let mut best = None;
        for seg in path {
            let next: Option<&toml_edit::Item> = match seg {
                Seg::Key(key) => {
                    if let Some(t) = item.as_table_like() {
                        if let Some((kk, _)) = t.get_key_value(key) {
                            if let Some(span) = kk.span() {
                                best = Some(span.start);
                            }
                        }
                        t.get(key)
                    } else {
                        None
                    }
                }
                Seg::Index(i) => {
                    if let Some(aot) = item.as_array_of_tables() {
                        if let Some(span) = aot.get(*i).and_then(|t| t.span()) {
                            best = Some(span.start);
                        }
                        // Tables inside an array of tables are not Items; fall
                        // through by looking the key up on the next step.
                        match aot.get(*i) {
                            Some(t) => {
                                return self.locate_in_table(t, path_after(path, seg), best);
                            }
                            None => None,
                        }
                    } else if let Some(arr) = item.as_array() {
                        if let Some(v) = arr.get(*i) {
                            if let Some(span) = v.span() {
                                best = Some(span.start);
                            }
                        }
                        None
                    } else {
                        None
                    }
                }
            };
            match next {
                Some(n) => {
                    if let Some(span) = n.span() {
                        best = Some(span.start);
                    }
                    item = n;
                }
                None => break,
            }
        }
        best.map(|o| line_of(self.text, o))
    }

    fn locate_in_table(
        &self,
        table: &toml_edit::Table,
        rest: &[Seg],
        mut best: Option<usize>,
    ) -> Option<usize> {
        if let Some(Seg::Key(key)) = rest.first() {
            if let Some((kk, v)) = table.get_key_value(key) {
                if let Some(span) = kk.span().or_else(|| v.span()) {
                    best = Some(span.start);
                }
            }
        }
        best.map(|o| line_of(self.text, o))
    }

    fn err(&mut self, path: &[Seg], message: impl Into<String>) {
        let line = self.locate(path);
        self.errors.push(ConfigError {
            path: path_string(path),
            line,
            message: message.into(),
        });
    }

    fn de<T: DeserializeOwned>(&mut self, value: toml::Value, path: &[Seg]) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut full: Vec<Seg> = path.to_vec();
                for s in e.path().iter() {
                    match s {
                        serde_path_to_error::Segment::Map { key } => {
                            full.push(Seg::Key(key.clone()))
                        }
                        serde_path_to_error::Segment::Seq { index } => {
                            full.push(Seg::Index(*index))
                        }
                        _ => {}
                    }
                }
                let msg = e.into_inner().to_string();
                let msg = msg.trim().trim_end_matches('.').to_owned();
                // Unknown field errors name the field; point at it.
                if let Some(name) = msg
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                {
                    if !matches!(full.last(), Some(Seg::Key(last)) if last == name) {
                        full.push(Seg::Key(name.to_owned()));
                    }
                }
                self.err(&full, msg);
                None
            }
        }
    }

    fn duration(&mut self, s: &str, path: &[Seg]) -> Duration {
        match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(path, "must be greater than zero");
                Duration::from_secs(1)
            }
            Err(_) => {
                self.err(
                    path,
                    format!("`{s}` is not a duration (use e.g. `250ms`, `5s`, `1m`)"),
                );
                Duration::from_secs(1)
            }
        }
    }

    fn addr(&mut self, s: &str, path: &[Seg]) -> SocketAddr {
        match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(path, format!("`{s}` is not an `ip:port` socket address"));
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        }
    }

    fn positive(&mut self, v: usize, path: &[Seg]) {
        if v == 0 {
            self.err(path, "must be greater than zero");
        }
    }

    fn file(&mut self, s: &str, path: &[Seg]) -> PathBuf {
        let p = Path::new(s);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        };
        if !p.is_file() {
            self.err(path, format!("file `{}` does not exist", p.display()));
        }
        p
    }

    fn tls(&mut self, raw: RawTls, path: &[Seg]) -> TlsConfig {
        let mut p = path.to_vec();
        p.push(k("cert"));
        let cert = self.file(&raw.cert, &p);
        p.pop();
        p.push(k("key"));
        let key = self.file(&raw.key, &p);
        p.pop();
        p.push(k("client_ca"));
        let client_ca = raw.client_ca.map(|c| self.file(&c, &p));
        p.pop();
        p.push(k("client_auth"));
        let client_auth = match (raw.client_auth.as_deref(), client_ca.is_some()) {
            (None, false) | (Some("none"), false) => ClientAuth::None,
            (None, true) | (Some("optional"), true) => ClientAuth::Optional,
            (Some("required"), true) => ClientAuth::Required,
            (Some("none"), true) => ClientAuth::None,
            (Some("optional" | "required"), false) => {
                self.err(&p, "needs `client_ca`");
                ClientAuth::None
            }
            (Some(other), _) => {
                self.err(
                    &p,
                    format!("`{other}` is not one of `none`, `optional`, `required`"),
                );
                ClientAuth::None
            }
        };
        TlsConfig {
            cert,
            key,
            client_ca,
            client_auth,
        }
    }
}

fn path_after<'p>(path: &'p [Seg], seg: &Seg) -> &'p [Seg] {
    let pos = path
        .iter()
        .position(|s| std::ptr::eq(s, seg))
        .map_or(path.len(), |p| p + 1);
    path.get(pos..).unwrap_or(&[])
}

/// A parsed path template segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TemplateSeg {
    /// Must match exactly.
    Literal(String),
    /// Matches one non-empty segment and binds it.
    Param(String),
}

/// Parses `/a/{b}/c` into segments; errors are lowercase messages.
pub fn parse_template(t: &str) -> Result<Vec<TemplateSeg>, String> {
    let rest = t
        .strip_prefix('/')
        .ok_or_else(|| format!("`{t}` must start with `/`"))?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for part in rest.split('/') {
        if part.is_empty() {
            return Err(format!("`{t}` has an empty segment"));
        }
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{part}` is not a valid placeholder"));
            }
            if !names.insert(name.to_owned()) {
                return Err(format!("placeholder `{name}` appears twice"));
            }
            out.push(TemplateSeg::Param(name.to_owned()));
        } else if part.contains(['{', '}', '?', '#', '%']) {
            return Err(format!("segment `{part}` has a reserved character"));
        } else {
            out.push(TemplateSeg::Literal(part.to_owned()));
        }
    }
    Ok(out)
}

const KNOWN_SECTIONS: [&str; 19] = [
    "policy",
    "mfa",
    "pretrade",
    "kill_switch",
    "audit",
    "alerts",
    "abuse",
    "risk",
    "limits",
    "waf",
    "auth",
    "server",
    "admin",
    "log",
    "dangerous",
    "upstreams",
    "routes",
    "storage",
    "keys",
];

impl Compiler<'_> {
    fn path_in_base(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn secret_source(
        &mut self,
        env: Option<String>,
        file: Option<String>,
        path: &[Seg],
        env_key: &str,
        file_key: &str,
    ) -> Option<SecretSource> {
        match (env, file) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                let mut p = path.to_vec();
                p.push(k(file_key));
                self.err(
                    &p,
                    format!("set either `{env_key}` or `{file_key}`, not both"),
                );
                None
            }
            (Some(name), None) => {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    let mut p = path.to_vec();
                    p.push(k(env_key));
                    self.err(&p, "must be an environment variable name");
                }
                Some(SecretSource::Env(name))
            }
            (None, Some(f)) => Some(SecretSource::File(self.path_in_base(&f))),
        }
    }

    fn auth(&mut self, table: &toml::Table) -> AuthConfig {
        let raw = match table.get("auth") {
            Some(v) => self
                .de::<RawAuth>(v.clone(), &[k("auth")])
                .unwrap_or_default(),
            None => RawAuth::default(),
        };
        let d = AuthConfig::default();
        let p = |n: &str| [k("auth"), k(n)];
        let max_age = raw
            .max_age
            .map_or(d.max_age, |s| self.duration(&s, &p("max_age")));
        if max_age < Duration::from_millis(100) || max_age > Duration::from_secs(300) {
            self.err(&p("max_age"), "must be between 100ms and 5m");
        }
        let max_future = raw
            .max_future
            .map_or(d.max_future, |s| self.duration(&s, &p("max_future")));
        if max_future > Duration::from_secs(60) {
            self.err(&p("max_future"), "must be at most 1m");
        }
        let nonce_cache_entries = raw.nonce_cache_entries.unwrap_or(d.nonce_cache_entries);
        if !(1_000..=100_000_000).contains(&nonce_cache_entries) {
            self.err(
                &p("nonce_cache_entries"),
                "must be between 1000 and 100000000",
            );
        }
        let key_cache_ttl = raw
            .key_cache_ttl
            .map_or(d.key_cache_ttl, |s| self.duration(&s, &p("key_cache_ttl")));
        if key_cache_ttl > Duration::from_secs(60) {
            self.err(&p("key_cache_ttl"), "must be at most 1m");
        }
        let token_lifetime = raw.token_lifetime.map_or(d.token_lifetime, |s| {
            self.duration(&s, &p("token_lifetime"))
        });
        if token_lifetime < Duration::from_secs(10) || token_lifetime > Duration::from_secs(900) {
            self.err(&p("token_lifetime"), "must be between 10s and 15m");
        }
        AuthConfig {
            max_age,
            max_future,
            nonce_cache_entries,
            key_cache_ttl,
            token_lifetime,
            upstream_identity_key_file: raw
                .upstream_identity_key_file
                .map(|f| self.path_in_base(&f)),
        }
    }

    fn audit(&mut self, table: &toml::Table) -> AuditConfig {
        let raw = match table.get("audit") {
            Some(v) => self
                .de::<RawAudit>(v.clone(), &[k("audit")])
                .unwrap_or_default(),
            None => RawAudit::default(),
        };
        let d = AuditConfig::default();
        let p = |n: &str| [k("audit"), k(n)];
        let origin = raw.origin.unwrap_or(d.origin);
        // C2SP signed-note: a key name is non-empty, has no spaces or `+`,
        // and the origin is one line.
        if origin.is_empty()
            || origin.len() > 256
            || origin
                .chars()
                .any(|c| c.is_whitespace() || c == '+' || c.is_control())
        {
            self.err(
                &p("origin"),
                "must be 1–256 characters with no spaces, `+` or control characters",
            );
        }
        let group_commit = raw
            .group_commit
            .map_or(d.group_commit, |s| self.duration(&s, &p("group_commit")));
        if group_commit < Duration::from_millis(1) || group_commit > Duration::from_millis(100) {
            self.err(&p("group_commit"), "must be between 1ms and 100ms");
        }
        let queue_capacity = raw.queue_capacity.unwrap_or(d.queue_capacity);
        if !(1_024..=16_777_216).contains(&queue_capacity) {
            self.err(&p("queue_capacity"), "must be between 1024 and 16777216");
        }
        let on_full = match raw.on_full.as_deref() {
            None | Some("reject") => AuditOnFull::Reject,
            Some("continue") => AuditOnFull::Continue,
            Some(other) => {
                self.err(
                    &p("on_full"),
                    format!("unknown policy `{other}`, expected `reject` or `continue`"),
                );
                AuditOnFull::Reject
            }
        };
        let checkpoint_every = raw.checkpoint_every.unwrap_or(d.checkpoint_every);
        if !(1..=10_000_000).contains(&checkpoint_every) {
            self.err(&p("checkpoint_every"), "must be between 1 and 10000000");
        }
        let checkpoint_interval = raw.checkpoint_interval.map_or(d.checkpoint_interval, |s| {
            self.duration(&s, &p("checkpoint_interval"))
        });
        if checkpoint_interval < Duration::from_millis(100)
            || checkpoint_interval > Duration::from_secs(1)
        {
            self.err(&p("checkpoint_interval"), "must be between 100ms and 1s");
        }
        let segment_max_bytes = raw.segment_max_bytes.unwrap_or(d.segment_max_bytes);
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&segment_max_bytes) {
            self.err(
                &p("segment_max_bytes"),
                "must be between 1048576 (1 MiB) and 1073741824 (1 GiB)",
            );
        }
        let retention = raw
            .retention
            .map_or(d.retention, |s| self.duration(&s, &p("retention")));
        if retention < MIN_AUDIT_RETENTION {
            self.err(
                &p("retention"),
                "must be at least 365days (PCI DSS 10.5.1 keeps audit records for 12 months)",
            );
        }
        let clock_sync = match raw.clock_sync.as_deref() {
            None | Some("auto") => ClockSyncConfig::Auto,
            Some("assume") => ClockSyncConfig::Assume,
            Some(s) => match s.strip_prefix("file:") {
                Some(f) if !f.is_empty() => ClockSyncConfig::File(self.path_in_base(f)),
                _ => {
                    self.err(&p("clock_sync"), "expected `auto`, `assume` or `file:PATH`");
                    ClockSyncConfig::Auto
                }
            },
        };
        let mut exporters = Vec::new();
        let mut names = BTreeSet::new();
        for (i, e) in raw.exporters.into_iter().enumerate() {
            let ep = |n: &str| [k("audit"), k("exporters"), Seg::Index(i), k(n)];
            if e.name.is_empty()
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                self.err(&ep("name"), "must be non-empty: letters, digits, `-`, `_`");
            }
            if !names.insert(e.name.clone()) {
                self.err(&ep("name"), format!("duplicate exporter name `{}`", e.name));
            }
            match e.kind.as_str() {
                "file" => match e.path {
                    Some(path) => exporters.push(AuditExporterConfig::File {
                        name: e.name,
                        path: self.path_in_base(&path),
                    }),
                    None => self.err(&ep("path"), "missing: a file exporter needs `path`"),
                },
                "syslog" => {
                    let facility = e.facility.unwrap_or(13);
                    if facility > 23 {
                        self.err(&ep("facility"), "must be between 0 and 23");
                    }
                    match (e.address, e.server_name, e.ca_file) {
                        (Some(address), Some(server_name), Some(ca_file)) => {
                            exporters.push(AuditExporterConfig::Syslog {
                                name: e.name,
                                address,
                                server_name,
                                ca_file: self.path_in_base(&ca_file),
                                facility,
                            });
                        }
                        _ => self.err(
                            &ep("kind"),
                            "a syslog exporter needs `address`, `server_name` and `ca_file` (TLS is required)",
                        ),
                    }
                }
                other => self.err(
                    &ep("kind"),
                    format!("unknown exporter kind `{other}`, expected `file` or `syslog`"),
                ),
            }
        }
        AuditConfig {
            enabled: raw.enabled.unwrap_or(true),
            dir: raw.dir.map(|f| self.path_in_base(&f)),
            origin,
            group_commit,
            queue_capacity,
            on_full,
            checkpoint_every,
            checkpoint_interval,
            segment_max_bytes,
            retention,
            archive_dir: raw.archive_dir.map(|f| self.path_in_base(&f)),
            clock_sync,
            exporters,
        }
    }

    fn storage(&mut self, table: &toml::Table) -> StorageConfig {
        let raw = match table.get("storage") {
            Some(v) => self
                .de::<RawStorage>(v.clone(), &[k("storage")])
                .unwrap_or_default(),
            None => RawStorage::default(),
        };
        let data_dir = raw.data_dir.unwrap_or_else(|| "rampart-data".to_owned());
        if data_dir.is_empty() {
            self.err(&[k("storage"), k("data_dir")], "must not be empty");
        }
        StorageConfig {
            data_dir: self.path_in_base(&data_dir),
        }
    }

    fn keys(&mut self, table: &toml::Table) -> KeysConfig {
        let base = [k("keys")];
        let raw = match table.get("keys") {
            Some(v) => self.de::<RawKeys>(v.clone(), &base).unwrap_or_default(),
            None => RawKeys::default(),
        };
        let defaults = KeysConfig::default();
        let p = |n: &str| [k("keys"), k(n)];
        let passphrase = self.secret_source(
            raw.passphrase_env,
            raw.passphrase_file,
            &base,
            "passphrase_env",
            "passphrase_file",
        );
        let provider = match raw.provider.as_deref().unwrap_or("local") {
            "local" => {
                if raw.pkcs11.is_some() {
                    self.err(
                        &p("pkcs11"),
                        "`[keys.pkcs11]` is only used with `provider = \"pkcs11\"`",
                    );
                }
                KeyProviderConfig::Local { passphrase }
            }
            "pkcs11" => {
                if passphrase.is_some() {
                    self.err(
                        &p("provider"),
                        "`passphrase_env`/`passphrase_file` apply to the local provider only",
                    );
                }
                match raw.pkcs11 {
                    None => {
                        self.err(
                            &p("pkcs11"),
                            "missing: `provider = \"pkcs11\"` needs a `[keys.pkcs11]` table",
                        );
                        KeyProviderConfig::Local { passphrase: None }
                    }
                    Some(hsm) => {
                        let hb = [k("keys"), k("pkcs11")];
                        let module = self.file(&hsm.module, &[k("keys"), k("pkcs11"), k("module")]);
                        if hsm.token.is_empty() {
                            self.err(&[k("keys"), k("pkcs11"), k("token")], "must not be empty");
                        }
                        let pin = self.secret_source(
                            hsm.pin_env,
                            hsm.pin_file,
                            &hb,
                            "pin_env",
                            "pin_file",
                        );
                        let pin = pin.unwrap_or_else(|| {
                            self.err(
                                &[k("keys"), k("pkcs11"), k("pin_env")],
                                "missing: set `pin_env` or `pin_file`",
                            );
                            SecretSource::Env(String::new())
                        });
                        KeyProviderConfig::Pkcs11 {
                            module,
                            token: hsm.token,
                            pin,
                            label: hsm.label.unwrap_or_else(|| "rampart".to_owned()),
                        }
                    }
                }
            }
            other => {
                self.err(
                    &p("provider"),
                    format!("unknown key provider `{other}`, expected `local` or `pkcs11`"),
                );
                KeyProviderConfig::Local { passphrase: None }
            }
        };
        let rotate_after_encryptions = raw
            .rotate_after_encryptions
            .unwrap_or(defaults.rotate_after_encryptions);
        if rotate_after_encryptions == 0 || rotate_after_encryptions > MAX_ROTATE_AFTER_ENCRYPTIONS
        {
            self.err(
                &p("rotate_after_encryptions"),
                format!("must be between 1 and {MAX_ROTATE_AFTER_ENCRYPTIONS} (2^31, half the AES-GCM random-nonce bound)"),
            );
        }
        let max_data_key_age = raw.max_data_key_age.map_or(defaults.max_data_key_age, |s| {
            self.duration(&s, &p("max_data_key_age"))
        });
        if max_data_key_age < Duration::from_secs(60) {
            self.err(&p("max_data_key_age"), "must be at least 1 minute");
        }
        let refresh_interval = raw.refresh_interval.map_or(defaults.refresh_interval, |s| {
            self.duration(&s, &p("refresh_interval"))
        });
        if refresh_interval < Duration::from_millis(100)
            || refresh_interval > Duration::from_secs(300)
        {
            self.err(&p("refresh_interval"), "must be between 100ms and 5m");
        }
        KeysConfig {
            provider,
            rotate_after_encryptions,
            max_data_key_age,
            refresh_interval,
        }
    }
}

/// Reads and compiles a configuration file. Relative file paths inside it are
/// resolved against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: "(file)".into(),
            line: None,
            message: format!("cannot read `{}`: {e}", path.display()),
        }])
    })?;
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    parse(&text, &base)
}

/// Compiles configuration text; `base_dir` resolves relative file paths.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Compiler {
        text,
        doc: None,
        base_dir: base_dir.to_path_buf(),
        errors: Vec::new(),
    };
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| line_of(text, s.start));
            return Err(ConfigErrors(vec![ConfigError {
                path: "(syntax)".into(),
                line,
                message: e.message().trim().to_owned(),
            }]));
        }
    };
    c.doc = toml_edit::ImDocument::parse(text).ok();

    for key in table.keys() {
        if !KNOWN_SECTIONS.contains(&key.as_str()) {
            c.err(
                &[k(key)],
                format!(
                    "unknown section `{key}`, expected one of {}",
                    KNOWN_SECTIONS.map(|s| format!("`{s}`")).join(", ")
                ),
            );
        }
    }

    // [dangerous]
    let dangerous = match table.get("dangerous") {
        Some(v) => c
            .de::<RawDangerous>(v.clone(), &[k("dangerous")])
            .unwrap_or_default(),
        None => RawDangerous::default(),
    };
    let dangerous = DangerousConfig {
        plaintext: dangerous.plaintext,
    };

    let storage = c.storage(&table);
    let keys = c.keys(&table);
    let auth = c.auth(&table);
    let audit = c.audit(&table);

    // [log]
    let log = match table.get("log") {
        Some(v) => c.de::<RawLog>(v.clone(), &[k("log")]).unwrap_or_default(),
        None => RawLog {
            access_log: true,
            level: d_level(),
        },
    };
    let log = LogConfig {
        access_log: log.access_log,
        level: log.level,
    };

    // [server]
    let server = match table.get("server") {
        None => {
            c.err(&[k("server")], "missing required section");
            None
        }
        Some(v) => c.de::<RawServer>(v.clone(), &[k("server")]),
    };
    let server = server.map(|s| {
        let p = |n: &str| [k("server"), k(n)];
        let listen = c.addr(&s.listen, &p("listen"));
        c.positive(s.max_connections, &p("max_connections"));
        if s.max_header_bytes < 1024 || s.max_header_bytes > 1024 * 1024 {
            c.err(&p("max_header_bytes"), "must be between 1024 and 1048576");
        }
        c.positive(s.max_body_bytes, &p("max_body_bytes"));
        let header_read_timeout = c.duration(&s.header_read_timeout, &p("header_read_timeout"));
        let idle_timeout = c.duration(&s.idle_timeout, &p("idle_timeout"));
        let request_timeout = c.duration(&s.request_timeout, &p("request_timeout"));
        let tls = s.tls.map(|t| c.tls(t, &p("tls")));
        if tls.is_none() && !dangerous.plaintext {
            c.err(
                &p("tls"),
                "missing: TLS is required unless `dangerous.plaintext = true`",
            );
        }
        ServerConfig {
            listen,
            max_connections: s.max_connections,
            max_header_bytes: s.max_header_bytes,
            max_body_bytes: s.max_body_bytes,
            header_read_timeout,
            idle_timeout,
            request_timeout,
            tls,
        }
    });

    // [admin]
    let admin = table.get("admin").and_then(|v| {
        let raw = c.de::<RawAdmin>(v.clone(), &[k("admin")])?;
        let listen = c.addr(&raw.listen, &[k("admin"), k("listen")]);
        let tls = raw.tls.map(|t| c.tls(t, &[k("admin"), k("tls")]));
        let operators = raw.operators.map_or_else(OperatorsConfig::default, |o| {
            compile_operators(&mut c, o, &[k("admin"), k("operators")])
        });
        Some(AdminConfig {
            listen,
            tls,
            operators,
        })
    });

    // [upstreams.NAME]
    let mut upstreams = BTreeMap::new();
    match table.get("upstreams") {
        None => c.err(&[k("upstreams")], "missing required section"),
        Some(toml::Value::Table(t)) => {
            for (name, v) in t {
                let base = [k("upstreams"), k(name)];
                let Some(raw) = c.de::<RawUpstream>(v.clone(), &base) else {
                    continue;
                };
                if let Some(u) = compile_upstream(&mut c, raw, &base) {
                    upstreams.insert(name.clone(), u);
                }
            }
        }
        Some(_) => c.err(&[k("upstreams")], "must be a table of named pools"),
    }

    // [[routes]]
    let mut routes = Vec::new();
    match table.get("routes") {
        None => c.err(&[k("routes")], "missing required section"),
        Some(toml::Value::Array(arr)) => {
            let mut seen = BTreeSet::new();
            for (i, v) in arr.iter().enumerate() {
                let base = [k("routes"), Seg::Index(i)];
                let Some(raw) = c.de::<RawRoute>(v.clone(), &base) else {
                    continue;
                };
                if let Some(r) = compile_route(&mut c, raw, &base, &upstreams, &table) {
                    let key = (r.method.to_string(), normalise_template(&r.path));
                    if !seen.insert(key) {
                        c.err(
                            &[k("routes"), Seg::Index(i), k("path")],
                            format!("duplicate route `{} {}`", r.method, r.path),
                        );
                    }
                    routes.push(r);
                }
            }
        }
        Some(_) => c.err(&[k("routes")], "must be an array of tables (`[[routes]]`)"),
    }

    let limits = c.limits(&table, &routes);
    let waf = c.waf(&table);
    let alerts = c.alerts(&table);
    let abuse = c.abuse(&table);
    let risk = c.risk(&table, &routes);
    let policy = c.policy(&table);
    let mfa = c.mfa(&table);
    let pretrade = c.pretrade(&table);
    let kill_switch = c.kill_switch(&table);

    match (server, c.errors.is_empty()) {
        (Some(server), true) => Ok(Config {
            server,
            admin,
            log,
            dangerous,
            upstreams,
            routes,
            storage,
            keys,
            auth,
            audit,
            limits,
            waf,
            abuse,
            risk,
            alerts,
            policy,
            mfa,
            pretrade,
            kill_switch,
        }),
        _ => Err(ConfigErrors(c.errors)),
    }
}

/// Replaces placeholder names so `/a/{x}` and `/a/{y}` count as the same path.
fn normalise_template(t: &str) -> String {
    match parse_template(t) {
        Ok(segs) => segs
            .iter()
            .map(|s| match s {
                TemplateSeg::Literal(l) => format!("/{l}"),
                TemplateSeg::Param(_) => "/{}".to_owned(),
            })
            .collect(),
        Err(_) => t.to_owned(),
    }
}

fn compile_upstream(
    c: &mut Compiler<'_>,
    raw: RawUpstream,
    base: &[Seg],
) -> Option<UpstreamConfig> {
    let p = |n: &str| {
        let mut v = base.to_vec();
        v.push(k(n));
        v
    };
    let before = c.errors.len();
    if raw.endpoints.is_empty() {
        c.err(&p("endpoints"), "must list at least one `host:port`");
    }
    for (i, e) in raw.endpoints.iter().enumerate() {
        let mut ep = p("endpoints");
        ep.push(Seg::Index(i));
        match e.parse::<http::uri::Authority>() {
            Ok(a) if a.port_u16().is_some() && !a.as_str().contains('@') => {}
            _ => c.err(&ep, format!("`{e}` is not a `host:port` endpoint")),
        }
    }
    let protocol = match raw.protocol.as_str() {
        "http1" => UpstreamProtocol::Http1,
        "h2" => UpstreamProtocol::H2,
        other => {
            c.err(
                &p("protocol"),
                format!("`{other}` is not one of `http1`, `h2`"),
            );
            UpstreamProtocol::Http1
        }
    };
    let connect_timeout = c.duration(&raw.connect_timeout, &p("connect_timeout"));
    let timeout = c.duration(&raw.timeout, &p("timeout"));
    c.positive(raw.max_in_flight, &p("max_in_flight"));
    if raw.retries > 5 {
        c.err(&p("retries"), "must be at most 5");
    }
    let health = raw.health.map(|h| {
        let hp = |n: &str| {
            let mut v = p("health");
            v.push(k(n));
            v
        };
        if !h.path.starts_with('/') {
            c.err(&hp("path"), format!("`{}` must start with `/`", h.path));
        }
        let interval = c.duration(&h.interval, &hp("interval"));
        let timeout = c.duration(&h.timeout, &hp("timeout"));
        if h.healthy_threshold == 0 {
            c.err(&hp("healthy_threshold"), "must be greater than zero");
        }
        if h.unhealthy_threshold == 0 {
            c.err(&hp("unhealthy_threshold"), "must be greater than zero");
        }
        HealthConfig {
            path: h.path,
            interval,
            timeout,
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
        }
    });
    let passive = match raw.passive {
        Some(pv) => {
            let pp = |n: &str| {
                let mut v = p("passive");
                v.push(k(n));
                v
            };
            if pv.consecutive_failures == 0 {
                c.err(&pp("consecutive_failures"), "must be greater than zero");
            }
            PassiveConfig {
                consecutive_failures: pv.consecutive_failures,
                ejection: c.duration(&pv.ejection, &pp("ejection")),
            }
        }
        None => PassiveConfig {
            consecutive_failures: 3,
            ejection: Duration::from_secs(10),
        },
    };
    (c.errors.len() == before).then_some(UpstreamConfig {
        endpoints: raw.endpoints,
        protocol,
        connect_timeout,
        timeout,
        max_in_flight: raw.max_in_flight,
        retries: raw.retries,
        health,
        passive,
    })
}

fn compile_route(
    c: &mut Compiler<'_>,
    raw: RawRoute,
    base: &[Seg],
    upstreams: &BTreeMap<String, UpstreamConfig>,
    table: &toml::Table,
) -> Option<RouteConfig> {
    let p = |n: &str| {
        let mut v = base.to_vec();
        v.push(k(n));
        v
    };
    let before = c.errors.len();
    let method = match Method::from_bytes(raw.method.as_bytes()) {
        Ok(m) if raw.method.chars().all(|ch| ch.is_ascii_uppercase()) => m,
        _ => {
            c.err(
                &p("method"),
                format!("`{}` is not an uppercase HTTP method", raw.method),
            );
            Method::GET
        }
    };
    let params = match parse_template(&raw.path) {
        Ok(segs) => segs
            .into_iter()
            .filter_map(|s| match s {
                TemplateSeg::Param(n) => Some(n),
                TemplateSeg::Literal(_) => None,
            })
            .collect::<BTreeSet<_>>(),
        Err(m) => {
            c.err(&p("path"), m);
            BTreeSet::new()
        }
    };
    if let Some(rw) = &raw.rewrite {
        match parse_template(rw) {
            Ok(segs) => {
                for s in segs {
                    if let TemplateSeg::Param(n) = s {
                        if !params.contains(&n) {
                            c.err(
                                &p("rewrite"),
                                format!("placeholder `{n}` is not in the route path"),
                            );
                        }
                    }
                }
            }
            Err(m) => c.err(&p("rewrite"), m),
        }
    }
    // Only report a missing upstream when the upstream table itself parsed.
    let upstream_declared = table
        .get("upstreams")
        .and_then(|u| u.as_table())
        .is_some_and(|t| t.contains_key(&raw.upstream));
    if !upstreams.contains_key(&raw.upstream) && !upstream_declared {
        c.err(
            &p("upstream"),
            format!(
                "upstream `{}` is not defined in `[upstreams]`",
                raw.upstream
            ),
        );
    }
    if raw.action.is_empty() || !raw.action.chars().all(|ch| ch.is_ascii_alphanumeric()) {
        c.err(
            &p("action"),
            format!("`{}` must be a non-empty alphanumeric name", raw.action),
        );
    }
    if raw.scope.is_empty()
        || !raw
            .scope
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch == ':' || ch == '_')
    {
        c.err(&p("scope"), format!("`{}` is not a valid scope", raw.scope));
    }
    if raw.weight == 0 {
        c.err(&p("weight"), "must be greater than zero");
    }
    if let Some(m) = raw.max_body_bytes {
        c.positive(m, &p("max_body_bytes"));
    }
    let timeout = raw.timeout.as_deref().map(|t| c.duration(t, &p("timeout")));
    let retry = match raw.retry.as_deref() {
        None | Some("safe") => RetryPolicy::Safe,
        Some("connect-only") => RetryPolicy::ConnectOnly,
        Some("never") => RetryPolicy::Never,
        Some(other) => {
            c.err(
                &p("retry"),
                format!("`{other}` is not one of `safe`, `connect-only`, `never`"),
            );
            RetryPolicy::Safe
        }
    };
    let group = raw.group.filter(|g| {
        let ok = !g.is_empty()
            && g.len() <= 32
            && g.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !ok {
            c.err(
                &p("group"),
                "must be 1–32 characters of A–Z, a–z, 0–9, `-`, `_`",
            );
        }
        ok
    });
    let schema = raw.schema.map(|s| c.file(&s, &p("schema")));
    let waf = raw.waf.as_deref().and_then(|m| c.waf_mode(m, &p("waf")));
    let mut locator = |v: Option<&str>, name: &str| {
        let s = v?;
        let l = Locator::parse(s);
        match &l {
            None => c.err(
                &p(name),
                format!("`{s}` is not `path:NAME`, `query:NAME` or `body:/pointer`"),
            ),
            Some(Locator::Path(n)) if !params.contains(n) => c.err(
                &p(name),
                format!("placeholder `{n}` is not in the route path"),
            ),
            _ => {}
        }
        l
    };
    let account = locator(raw.account.as_deref(), "account");
    let order_id = locator(raw.order_id.as_deref(), "order_id");
    let instrument = locator(raw.instrument.as_deref(), "instrument");
    (c.errors.len() == before).then_some(RouteConfig {
        account,
        order_id,
        instrument,
        group,
        schema,
        waf,
        method,
        path: raw.path,
        upstream: raw.upstream,
        action: raw.action,
        scope: raw.scope,
        weight: raw.weight,
        rewrite: raw.rewrite,
        max_body_bytes: raw.max_body_bytes,
        timeout,
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_certs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("c.pem"), "x").unwrap();
        std::fs::write(d.path().join("k.pem"), "x").unwrap();
        d
    }

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8443"
[server.tls]
cert = "c.pem"
key = "k.pem"

[upstreams.ex]
endpoints = ["127.0.0.1:9001", "localhost:9002"]
[upstreams.ex.health]
path = "/v1/time"

[[routes]]
method = "GET"
path = "/v1/markets/{symbol}/book"
upstream = "ex"
action = "GetBook"
scope = "public"
rewrite = "/internal/{symbol}"
"#;

    #[test]
    fn admin_operators_default_and_validate() {
        let d = dir_with_certs();
        let cfg = parse(
            &format!("{GOOD}\n[admin]\nlisten = \"127.0.0.1:9443\"\n"),
            d.path(),
        )
        .unwrap();
        let ops = cfg.admin.unwrap().operators;
        assert_eq!(ops, OperatorsConfig::default());
        assert_eq!(ops.rp_id, "localhost");
        assert!(ops.require_uv && ops.origins.is_empty());
        assert_eq!(ops.session_idle, Duration::from_secs(900));
        assert_eq!(ops.session_ttl, Duration::from_secs(8 * 3600));

        let text = format!(
            "{GOOD}\n[admin]\nlisten = \"127.0.0.1:9443\"\n[admin.operators]\nrp_id = \"admin.venue.example\"\norigins = [\"https://admin.venue.example\", \"https://ops.admin.venue.example:9443\"]\nuser_verification = \"preferred\"\nsession_idle = \"1m\"\n"
        );
        let ops = parse(&text, d.path()).unwrap().admin.unwrap().operators;
        assert_eq!(ops.origins.len(), 2);
        assert!(!ops.require_uv);
        assert_eq!(ops.session_idle, Duration::from_secs(60));

        let bad = format!(
            "{GOOD}\n[admin]\nlisten = \"127.0.0.1:9443\"\n[admin.operators]\nrp_id = \"https://Admin\"\norigins = [\"http://localhost:9443\", \"https://evil.example\"]\nuser_verification = \"maybe\"\nsession_idle = \"9h\"\nmax_sessions = 0\nbogus = 1\n"
        );
        let errs = parse(&bad, d.path()).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|e| e.contains("bogus")), "{text:?}");
        let bad = bad.replace("bogus = 1\n", "");
        let errs = parse(&bad, d.path()).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        for needle in [
            "admin.operators.rp_id",
            "`http://localhost:9443` is not an `https://host[:port]` origin",
            "user_verification",
            "admin.operators.session_idle",
            "admin.operators.max_sessions",
        ] {
            assert!(
                text.iter().any(|e| e.contains(needle)),
                "{needle}: {text:?}"
            );
        }
        let bad = format!(
            "{GOOD}\n[admin]\nlisten = \"127.0.0.1:9443\"\n[admin.operators]\norigins = [\"https://evil.example\"]\n"
        );
        let errs = parse(&bad, d.path()).unwrap_err().0;
        assert!(
            errs[0]
                .to_string()
                .contains("not `localhost` or a subdomain"),
            "{errs:?}"
        );
    }

    #[test]
    fn good_config_compiles() {
        let d = dir_with_certs();
        let cfg = parse(GOOD, d.path()).unwrap();
        assert_eq!(cfg.server.listen.port(), 8443);
        assert_eq!(cfg.server.max_body_bytes, 65536);
        assert_eq!(cfg.routes.len(), 1);
        assert_eq!(cfg.upstreams["ex"].endpoints.len(), 2);
        assert_eq!(
            cfg.upstreams["ex"]
                .health
                .as_ref()
                .unwrap()
                .healthy_threshold,
            2
        );
        assert_eq!(cfg.routes[0].retry, RetryPolicy::Safe);
    }

    #[test]
    fn collects_every_error_with_path_and_line() {
        let d = dir_with_certs();
        let text = r#"
[server]
listen = "not-an-addr"
idle_timeout = "forever"
[server.tls]
cert = "c.pem"
key = "missing.pem"

[bogus]
x = 1

[upstreams.ex]
endpoints = ["127.0.0.1:9001"]
protocl = "h2"

[upstreams.ok]
endpoints = ["nope"]

[[routes]]
method = "GET"
path = "/v1/x"
upstream = "nowhere"
action = "X"
scope = "public"

[[routes]]
method = "get"
path = "v1/y"
upstream = "ok"
action = "Y"
scope = "public"
weight = 0
"#;
        let errs = parse(text, d.path()).unwrap_err().0;
        let find = |p: &str| {
            errs.iter()
                .find(|e| e.path == p)
                .unwrap_or_else(|| panic!("no error for {p}: {errs:#?}"))
        };
        assert_eq!(find("server.listen").line, Some(3));
        assert_eq!(find("server.idle_timeout").line, Some(4));
        assert_eq!(find("server.tls.key").line, Some(7));
        assert_eq!(find("bogus").line, Some(9));
        let e = find("upstreams.ex.protocl");
        assert!(e.message.contains("unknown field"), "{e:?}");
        assert_eq!(e.line, Some(14));
        assert_eq!(find("upstreams.ok.endpoints[0]").line, Some(17));
        assert_eq!(find("routes[0].upstream").line, Some(22));
        assert_eq!(find("routes[1].method").line, Some(27));
        assert_eq!(find("routes[1].path").line, Some(28));
        assert_eq!(find("routes[1].weight").line, Some(32));
        assert!(errs.len() >= 10, "{errs:#?}");
    }

    #[test]
    fn syntax_error_has_line() {
        let errs = parse("[server]\nlisten = \n", Path::new("."))
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(2));
    }

    #[test]
    fn plaintext_needs_dangerous() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\n[upstreams.a]\nendpoints=[\"127.0.0.1:2\"]\n[[routes]]\nmethod=\"GET\"\npath=\"/\"\nupstream=\"a\"\naction=\"A\"\nscope=\"public\"\n";
        let errs = parse(text, Path::new(".")).unwrap_err().0;
        assert_eq!(errs[0].path, "server.tls");
        let ok = format!("{text}[dangerous]\nplaintext = true\n");
        assert!(parse(&ok, Path::new(".")).unwrap().dangerous.plaintext);
    }

    #[test]
    fn duplicate_routes_rejected() {
        let d = dir_with_certs();
        let text = format!(
            "{GOOD}\n[[routes]]\nmethod = \"GET\"\npath = \"/v1/markets/{{s}}/book\"\nupstream = \"ex\"\naction = \"B\"\nscope = \"public\"\n"
        );
        let errs = parse(&text, d.path()).unwrap_err().0;
        assert!(errs[0].message.contains("duplicate route"), "{errs:?}");
    }

    #[test]
    fn template_parser() {
        assert_eq!(
            parse_template("/v1/orders/{id}").unwrap(),
            vec![
                TemplateSeg::Literal("v1".into()),
                TemplateSeg::Literal("orders".into()),
                TemplateSeg::Param("id".into())
            ]
        );
        assert!(parse_template("/a//b").is_err());
        assert!(parse_template("/a/{x}/{x}").is_err());
        assert!(parse_template("/a/{}").is_err());
        assert!(parse_template("/a/b%2f").is_err());
        assert_eq!(parse_template("/").unwrap(), vec![]);
    }

    #[test]
    fn storage_and_keys_defaults() {
        let d = dir_with_certs();
        let cfg = parse(GOOD, d.path()).unwrap();
        assert_eq!(cfg.storage.data_dir, d.path().join("rampart-data"));
        assert_eq!(cfg.keys, KeysConfig::default());
        assert_eq!(
            cfg.keys.provider,
            KeyProviderConfig::Local { passphrase: None }
        );
    }

    #[test]
    fn keys_local_with_passphrase_and_pkcs11() {
        let d = dir_with_certs();
        let text = format!(
            "{GOOD}[storage]\ndata_dir = \"/var/lib/rampart\"\n[keys]\npassphrase_file = \"secrets/pass\"\nrotate_after_encryptions = 1000000\nmax_data_key_age = \"30days\"\nrefresh_interval = \"2s\"\n"
        );
        let cfg = parse(&text, d.path()).unwrap();
        assert_eq!(cfg.storage.data_dir, PathBuf::from("/var/lib/rampart"));
        assert_eq!(
            cfg.keys.provider,
            KeyProviderConfig::Local {
                passphrase: Some(SecretSource::File(d.path().join("secrets/pass")))
            }
        );
        assert_eq!(cfg.keys.rotate_after_encryptions, 1_000_000);
        assert_eq!(cfg.keys.max_data_key_age, Duration::from_secs(30 * 86_400));
        assert_eq!(cfg.keys.refresh_interval, Duration::from_secs(2));

        std::fs::write(d.path().join("hsm.so"), "x").unwrap();
        let text = format!(
            "{GOOD}[keys]\nprovider = \"pkcs11\"\n[keys.pkcs11]\nmodule = \"hsm.so\"\ntoken = \"prod\"\npin_env = \"HSM_PIN\"\n"
        );
        let cfg = parse(&text, d.path()).unwrap();
        assert_eq!(
            cfg.keys.provider,
            KeyProviderConfig::Pkcs11 {
                module: d.path().join("hsm.so"),
                token: "prod".into(),
                pin: SecretSource::Env("HSM_PIN".into()),
                label: "rampart".into(),
            }
        );
    }

    #[test]
    fn keys_errors_are_all_reported() {
        let d = dir_with_certs();
        let text = format!(
            "{GOOD}[keys]\nprovider = \"pkcs11\"\npassphrase_env = \"A\"\npassphrase_file = \"b\"\nrotate_after_encryptions = 4294967296\nrefresh_interval = \"1ms\"\n[keys.pkcs11]\nmodule = \"missing.so\"\ntoken = \"\"\n"
        );
        let errs = parse(&text, d.path()).unwrap_err().0;
        let joined = errs
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect::<Vec<_>>()
            .join("\n");
        for needle in [
            "not both",
            "rotate_after_encryptions: must be between 1 and 2147483648",
            "refresh_interval: must be between",
            "missing.so` does not exist",
            "token: must not be empty",
            "set `pin_env` or `pin_file`",
        ] {
            assert!(joined.contains(needle), "missing `{needle}` in:\n{joined}");
        }
        let hsm_with_pass = format!(
            "{GOOD}[keys]\nprovider = \"pkcs11\"\npassphrase_env = \"A\"\n[keys.pkcs11]\nmodule = \"c.pem\"\ntoken = \"t\"\npin_env = \"P\"\n"
        );
        let errs = parse(&hsm_with_pass, d.path()).unwrap_err().0;
        assert!(errs[0].message.contains("apply to the local provider only"));
        let unknown = format!("{GOOD}[keys]\nprovider = \"kms\"\n");
        let errs = parse(&unknown, d.path()).unwrap_err().0;
        assert!(errs[0].message.contains("unknown key provider `kms`"));
    }
    #[test]
    fn audit_defaults_and_settings() {
        let d = dir_with_certs();
        let cfg = parse(GOOD, d.path()).unwrap();
        assert_eq!(cfg.audit, AuditConfig::default());
        assert!(cfg.audit.enabled);
        assert_eq!(cfg.audit.on_full, AuditOnFull::Reject);
        assert!(cfg.audit.group_commit <= Duration::from_millis(10));
        assert!(cfg.audit.checkpoint_interval <= Duration::from_secs(1));
        assert_eq!(
            cfg.audit.dir_in(Path::new("/data")),
            PathBuf::from("/data/audit")
        );
        let text = format!(
            "{GOOD}[audit]\norigin = \"venue.example/audit\"\ngroup_commit = \"5ms\"\non_full = \"continue\"\nretention = \"400days\"\nclock_sync = \"file:/run/chrony.synced\"\n[[audit.exporters]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"siem.internal:6514\"\nserver_name = \"siem.internal\"\nca_file = \"ca.pem\"\n[[audit.exporters]]\nname = \"file\"\nkind = \"file\"\npath = \"ocsf.jsonl\"\n"
        );
        let cfg = parse(&text, d.path()).unwrap();
        assert_eq!(cfg.audit.origin, "venue.example/audit");
        assert_eq!(cfg.audit.group_commit, Duration::from_millis(5));
        assert_eq!(cfg.audit.on_full, AuditOnFull::Continue);
        assert_eq!(cfg.audit.retention, Duration::from_secs(400 * 86_400));
        assert_eq!(
            cfg.audit.clock_sync,
            ClockSyncConfig::File(PathBuf::from("/run/chrony.synced"))
        );
        assert_eq!(cfg.audit.exporters.len(), 2);
        assert!(matches!(
            &cfg.audit.exporters[0],
            AuditExporterConfig::Syslog { facility: 13, ca_file, .. } if *ca_file == d.path().join("ca.pem")
        ));
    }

    #[test]
    fn audit_errors_are_all_reported() {
        let d = dir_with_certs();
        let text = format!(
            "{GOOD}[audit]\norigin = \"has space\"\ngroup_commit = \"1s\"\non_full = \"drop\"\nretention = \"30days\"\ncheckpoint_interval = \"10s\"\nclock_sync = \"ntp\"\n[[audit.exporters]]\nname = \"s\"\nkind = \"syslog\"\naddress = \"x:1\"\n[[audit.exporters]]\nname = \"s\"\nkind = \"kafka\"\n"
        );
        let errs = parse(&text, d.path()).unwrap_err().0;
        let joined = errs
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect::<Vec<_>>()
            .join("\n");
        for needle in [
            "audit.origin: must be",
            "audit.group_commit: must be between 1ms and 100ms",
            "unknown policy `drop`",
            "audit.retention: must be at least 365days",
            "audit.checkpoint_interval: must be between",
            "audit.clock_sync: expected",
            "TLS is required",
            "duplicate exporter name `s`",
            "unknown exporter kind `kafka`",
        ] {
            assert!(joined.contains(needle), "missing `{needle}` in:\n{joined}");
        }
    }
}
