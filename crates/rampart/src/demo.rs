//! `rampart demo`: everything on one box with embedded defaults.
//!
//! Creates (or reuses) a directory with a demo CA and server certificate, a
//! generated `rampart.toml` and `demo-credentials.json` (the client's copy of
//! the demo keys, handed over once as CONTRACT.md specifies); the gateway's
//! own data dir is its `gateway/` subdirectory (root key, signing key,
//! database), where the demo keys' secrets and the TOTP seed exist only
//! encrypted. Starts two demo-exchange backends over one shared state (so
//! failover keeps orders consistent), the gateway and the admin listener;
//! stops cleanly on Ctrl-C.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Errors of the demo setup; messages name files, never key material.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("`{0}`: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("certificate generation failed: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{0}")]
    Other(String),
}

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |e| DemoError::Io(p.to_path_buf(), e)
}

/// Writes a file readable by the owner only.
fn write_private(path: &Path, data: &[u8]) -> Result<(), DemoError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))
}

fn prepare_dir(dir: &Path) -> Result<PathBuf, DemoError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    fs::canonicalize(dir).map_err(io_err(dir))
}

struct CertPaths {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Creates a demo CA and a server certificate for `localhost`/`127.0.0.1`,
/// unless they already exist.
fn ensure_certs(dir: &Path) -> Result<CertPaths, DemoError> {
    let paths = CertPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    if paths.ca.is_file() && paths.cert.is_file() && paths.key.is_file() {
        return Ok(paths);
    }
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "Rampart Demo CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut sp = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    sp.distinguished_name
        .push(DnType::CommonName, "rampart demo gateway");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = sp.signed_by(&key, &ca_cert, &ca_key)?;

    write_private(&paths.key, key.serialize_pem().as_bytes())?;
    fs::write(&paths.cert, format!("{}{}", cert.pem(), ca_cert.pem()))
        .map_err(io_err(&paths.cert))?;
    fs::write(&paths.ca, ca_cert.pem()).map_err(io_err(&paths.ca))?;
    Ok(paths)
}

fn base32(data: &[u8]) -> String {
    const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buf: u32 = 0;
    let mut bits = 0;
    for b in data {
        buf = (buf << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let i = ((buf >> bits) & 31) as usize;
            out.push(A.get(i).map_or('A', |c| char::from(*c)));
        }
    }
    if bits > 0 {
        let i = ((buf << (5 - bits)) & 31) as usize;
        out.push(A.get(i).map_or('A', |c| char::from(*c)));
    }
    out
}

fn key_id(prefix: &str) -> String {
    let r: [u8; 10] = rand::random();
    format!(
        "{prefix}_{}",
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A demo key with a shared secret, generated exactly as `rampart keys
/// create` generates it (same encodings, no modulo bias).
fn secret_key(
    name: &str,
    prefix: &str,
    scheme: rampart_auth::Scheme,
    scopes: &[&str],
) -> serde_json::Value {
    let (secret_fields, _raw) = crate::apikeys::new_secret(scheme);
    let mut key = json!({
        "name": name,
        "key_id": key_id(prefix),
        "scheme": scheme.as_str(),
        "scopes": scopes,
    });
    if let (Some(o), Some(f)) = (key.as_object_mut(), secret_fields.as_object()) {
        o.extend(f.clone());
    }
    key
}

fn hmac_key(name: &str, scopes: &[&str]) -> serde_json::Value {
    secret_key(name, "rk", rampart_auth::Scheme::Rfc9421HmacSha256, scopes)
}

/// Creates `demo-credentials.json` in the CONTRACT.md shape, or reuses it
/// (rewriting only the URLs and CA path, which depend on this run).
fn ensure_credentials(
    dir: &Path,
    ca: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Result<PathBuf, DemoError> {
    let path = dir.join("demo-credentials.json");
    let mut creds = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
            DemoError::Other(format!("`{}` is not valid JSON: {e}", path.display()))
        })?,
        Err(_) => {
            let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
            let totp: [u8; 20] = rand::random();
            json!({
                "account": "demo",
                "keys": [
                    hmac_key("trader-hmac", &["read", "trade"]),
                    {
                        "name": "trader-ed25519",
                        "key_id": key_id("rk"),
                        "scheme": "ed25519",
                        "private_key_pem": ed.serialize_pem(),
                        "scopes": ["read", "trade"],
                    },
                    hmac_key("reader", &["read"]),
                    hmac_key("treasury", &["read", "withdraw"]),
                ],
                "totp_secret_base32": base32(&totp),
                "withdrawal_addresses": ["bc1qdemo0rampart0allowlisted0address0000000"],
            })
        }
    };
    // Files from earlier versions lack the exchange-style keys: add them.
    if let Some(keys) = creds
        .get_mut("keys")
        .and_then(serde_json::Value::as_array_mut)
    {
        let has = |keys: &Vec<serde_json::Value>, n: &str| {
            keys.iter()
                .any(|k| k.get("name").and_then(serde_json::Value::as_str) == Some(n))
        };
        if !has(keys, "binance-style") {
            keys.push(secret_key(
                "binance-style",
                "bn",
                rampart_auth::Scheme::BinanceHmac,
                &["read", "trade"],
            ));
        }
        if !has(keys, "kraken-style") {
            keys.push(secret_key(
                "kraken-style",
                "kr",
                rampart_auth::Scheme::KrakenHmac,
                &["read", "trade"],
            ));
        }
        if !has(keys, "coinbase-style") {
            let ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            keys.push(json!({
                "name": "coinbase-style",
                "key_id": key_id("cb"),
                "scheme": "coinbase-jwt-es256",
                "private_key_pem": ec.serialize_pem(),
                "scopes": ["read", "trade"],
            }));
        }
    }
    if let Some(o) = creds.as_object_mut() {
        o.insert("gateway_url".into(), json!(format!("https://{listen}")));
        o.insert("admin_url".into(), json!(format!("https://{admin}")));
        o.insert("ca_cert_path".into(), json!(ca.display().to_string()));
    }
    let text = serde_json::to_string_pretty(&creds).map_err(|e| DemoError::Other(e.to_string()))?;
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// The demo configuration: every route of the demo exchange API.
fn demo_config(
    certs: &CertPaths,
    listen: SocketAddr,
    admin: SocketAddr,
    backends: &[SocketAddr],
) -> String {
    let eps = backends
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let routes: [(&str, &str, &str, &str, u32); 9] = [
        ("GET", "/v1/time", "GetTime", "public", 1),
        ("GET", "/v1/markets", "ListMarkets", "public", 1),
        ("GET", "/v1/markets/{symbol}/book", "GetBook", "public", 2),
        ("GET", "/v1/account", "GetAccount", "read", 5),
        ("GET", "/v1/orders", "ListOrders", "read", 2),
        ("POST", "/v1/orders", "PlaceOrder", "trade", 1),
        ("DELETE", "/v1/orders/{order_id}", "CancelOrder", "trade", 1),
        ("POST", "/v1/withdrawals", "Withdraw", "withdraw", 10),
        ("GET", "/v1/stream", "Stream", "read", 1),
    ];
    let mut s = format!(
        r#"# Generated by `rampart demo` at every start; edit a copy for `rampart serve`.
[server]
listen = "{listen}"
max_connections = 10000
max_header_bytes = 16384
max_body_bytes = 65536
header_read_timeout = "5s"
idle_timeout = "60s"
request_timeout = "10s"

[server.tls]
cert = "{cert}"
key = "{key}"

[admin]
listen = "{admin}"

[log]
access_log = true
level = "info"

[storage]
data_dir = "gateway"

[keys]
provider = "local"

[upstreams.exchange]
endpoints = [{eps}]
protocol = "http1"
connect_timeout = "500ms"
timeout = "5s"
retries = 1

[upstreams.exchange.health]
path = "/healthz"
interval = "1s"
timeout = "500ms"
healthy_threshold = 2
unhealthy_threshold = 2

[upstreams.exchange.passive]
consecutive_failures = 3
ejection = "10s"
"#,
        cert = certs.cert.display(),
        key = certs.key.display(),
    );
    for (m, p, a, sc, w) in routes {
        s.push_str(&format!(
            "\n[[routes]]\nmethod = \"{m}\"\npath = \"{p}\"\nupstream = \"exchange\"\naction = \"{a}\"\nscope = \"{sc}\"\nweight = {w}\n"
        ));
        s.push_str(&format!("schema = \"schemas/{a}.json\"\n"));
        if m == "POST" && p == "/v1/orders" {
            s.push_str("max_body_bytes = 4096\ngroup = \"orders\"\n");
        }
        if a == "CancelOrder" {
            s.push_str("group = \"cancels\"\norder_id = \"path:order_id\"\n");
        }
    }
    s.push_str(DEMO_LIMITS);
    s.push_str(DEMO_TRADING);
    s
}

/// Authorization and trading controls of the demo: Cedar policies with the
/// shipped defaults over the demo exchange's instruments, MFA step-up for
/// sensitive actions, venue-style pre-trade limits (reference prices from
/// the exchange's books), and a kill switch that cancels open orders.
const DEMO_TRADING: &str = r#"
[policy]
defaults = true
[policy.instruments]
"BTC-USD" = "spot"
"ETH-USD" = "spot"
"BTC-PERP" = "perp"
"BTC-20261225-100000-C" = "option"

[mfa]
issuer = "Rampart demo"
step_up_ttl = "5m"
address_delay = "24h"

[pretrade]
reference_max_age = "5s"
reference_refresh = "1s"
[pretrade.defaults]
max_qty = "100"
max_notional = "2000000"
collar_pct = "10"
max_open_orders = 200
duplicate_window = "10m"
[pretrade.fixed_prices]
"BTC-USD" = "65000"
"ETH-USD" = "3500"
"BTC-PERP" = "65000"
"BTC-20261225-100000-C" = "2500"

[kill_switch]
cancel_all = true
"#;

/// The positive model of every demo route (`schema = …`), shipped in the
/// binary and written next to the generated config.
const DEMO_SCHEMAS: [(&str, &str); 9] = [
    (
        "GetTime",
        include_str!("../../rampart-shield/corpus/schemas/GetTime.json"),
    ),
    (
        "ListMarkets",
        include_str!("../../rampart-shield/corpus/schemas/ListMarkets.json"),
    ),
    (
        "GetBook",
        include_str!("../../rampart-shield/corpus/schemas/GetBook.json"),
    ),
    (
        "GetAccount",
        include_str!("../../rampart-shield/corpus/schemas/GetAccount.json"),
    ),
    (
        "ListOrders",
        include_str!("../../rampart-shield/corpus/schemas/ListOrders.json"),
    ),
    (
        "PlaceOrder",
        include_str!("../../rampart-shield/corpus/schemas/PlaceOrder.json"),
    ),
    (
        "CancelOrder",
        include_str!("../../rampart-shield/corpus/schemas/CancelOrder.json"),
    ),
    (
        "Withdraw",
        include_str!("../../rampart-shield/corpus/schemas/Withdraw.json"),
    ),
    (
        "Stream",
        include_str!("../../rampart-shield/corpus/schemas/Stream.json"),
    ),
];

fn write_schemas(dir: &Path) -> Result<(), DemoError> {
    let sd = dir.join("schemas");
    fs::create_dir_all(&sd).map_err(io_err(&sd))?;
    for (action, text) in DEMO_SCHEMAS {
        let p = sd.join(format!("{action}.json"));
        fs::write(&p, text).map_err(io_err(&p))?;
    }
    Ok(())
}

/// The demo's rate limits, modelled on the big venues' published ones
/// (request weight per IP and per key per minute; orders per key per
/// second and per account per 10 s and per day; cancels per key per
/// second).
const DEMO_LIMITS: &str = include_str!("demo_limits.toml");

fn spawn_backend(
    l: tokio::net::TcpListener,
    ex: std::sync::Arc<demo_exchange::Exchange>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let _ = demo_exchange::serve(l, ex, async move { stop.cancelled_owned().await }).await;
    });
}

/// Runs the demo until Ctrl-C.
pub fn run(dir: &Path, listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_async(dir, listen, admin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `eprintln!` that never panics: a closed stderr (the terminal gone, a
/// pipe closed by a supervisor) must not stop the demo.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

async fn run_async(dir: &Path, listen: SocketAddr, admin: SocketAddr) -> Result<(), DemoError> {
    // Signal handlers first: a signal that arrives while the demo starts
    // must not take the default action (terminate without a clean stop).
    let mut hup = signal(SignalKind::hangup()).map_err(io_err(Path::new("SIGHUP")))?;
    let mut term = signal(SignalKind::terminate()).map_err(io_err(Path::new("SIGTERM")))?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(io_err(Path::new("SIGUSR1")))?;
    let dir = prepare_dir(dir)?;
    let certs = ensure_certs(&dir)?;

    // Two backends over one shared exchange state.
    let exchange = demo_exchange::Exchange::new_seeded();
    let stop = CancellationToken::new();
    let stop_guard = stop.clone().drop_guard();
    let mut backends = Vec::new();
    let mut second: Option<CancellationToken> = None;
    for i in 0..2 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io_err(Path::new("127.0.0.1:0")))?;
        backends.push(l.local_addr().map_err(io_err(Path::new("127.0.0.1:0")))?);
        let token = stop.child_token();
        if i == 1 {
            second = Some(token.clone());
        }
        spawn_backend(l, exchange.clone(), token);
    }

    write_schemas(&dir)?;
    let cfg_path = dir.join("rampart.toml");
    fs::write(&cfg_path, demo_config(&certs, listen, admin, &backends))
        .map_err(io_err(&cfg_path))?;
    let cfg = rampart_core::config::load(&cfg_path).map_err(|e| DemoError::Other(e.to_string()))?;
    crate::logging::init(&cfg.log.level);
    crate::keys::harden_process();
    let clock = crate::audit::clock(&cfg);
    let key_sink = std::sync::Arc::new(crate::audit::KeyAuditSink::new(
        std::sync::Arc::clone(&clock) as std::sync::Arc<dyn rampart_audit::Clock>,
        rampart_audit::Actor::system(),
    ));
    let vault = crate::keys::open_vault_with(
        &cfg,
        Some(std::sync::Arc::clone(&key_sink) as std::sync::Arc<dyn rampart_crypto::KeyEventSink>),
    )
    .await
    .map_err(DemoError::Other)?;
    let audit = crate::audit::AuditSession::start(&cfg, &cfg_path, &vault, clock, &key_sink)
        .await
        .map_err(DemoError::Other)?;
    let maintenance_stop = stop.child_token();
    let maintenance = vault.spawn_maintenance(maintenance_stop.clone());
    let auth =
        crate::keys::auth_services(&cfg, &vault, audit.auditor()).map_err(DemoError::Other)?;
    exchange.require_gateway_signature(
        &crate::keys::upstream_identity_secret(&cfg).map_err(DemoError::Other)?,
    );
    let running = rampart_gateway::start_full(cfg, Some(auth), Some(vault.store().clone()))
        .await
        .map_err(|e| DemoError::Other(e.to_string()))?;
    let creds = ensure_credentials(
        &dir,
        &certs.ca,
        running.addr,
        running.admin_addr.unwrap_or(admin),
    )?;
    seed_store(&vault, &creds).await?;
    audit
        .record(
            audit
                .event(
                    rampart_audit::event::types::GATEWAY_START,
                    "gateway.start",
                    &running.addr.to_string(),
                )
                .plain("version", env!("CARGO_PKG_VERSION"))
                .plain("mode", "demo"),
        )
        .await;

    say!(
        "\nRampart demo is running (Ctrl-C stops it).\n\
         \n  gateway   https://{gw}  (TLS 1.3; HTTP/2 and HTTP/1.1)\
         \n  admin     https://{ad}/metrics\
         \n  backends  {b0} and {b1} (demo exchange; `kill -USR1 {pid}` stops/restarts the second to show failover)\
         \n  config    {cfg}\
         \n  creds     {creds}\
         \n\nTry:\n  curl --cacert {ca} https://{gw}/v1/markets\
         \n  curl --cacert {ca} -X POST https://{gw}/v1/orders -H 'content-type: application/json' \\\n       -d '{{\"symbol\":\"BTC-USD\",\"side\":\"buy\",\"type\":\"limit\",\"qty\":\"0.5\",\"price\":\"65000.00\",\"client_order_id\":\"abc-123\",\"time_in_force\":\"gtc\"}}'\
         \n  curl --cacert {ca} https://{ad}/metrics\n",
        gw = running.addr,
        ad = running.admin_addr.map_or_else(|| admin.to_string(), |a| a.to_string()),
        b0 = backends.first().map(ToString::to_string).unwrap_or_default(),
        b1 = backends.get(1).map(ToString::to_string).unwrap_or_default(),
        cfg = cfg_path.display(),
        creds = creds.display(),
        ca = certs.ca.display(),
        pid = std::process::id(),
    );

    loop {
        tokio::select! {
            _ = hup.recv() => {
                let result = running.gateway.reload_from_file(&cfg_path).map_err(|e| e.to_string());
                audit.reloaded(&cfg_path, &result).await;
            }
            _ = usr1.recv() => {
                let addr = backends.get(1).copied().unwrap_or(listen);
                match second.take() {
                    Some(t) => {
                        t.cancel();
                        say!("backend {addr} stopped: watch it being ejected (admin /readyz, metrics rampart_upstream_healthy)");
                    }
                    None => match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => {
                            let t = stop.child_token();
                            spawn_backend(l, exchange.clone(), t.clone());
                            second = Some(t);
                            say!("backend {addr} restarted: health checks re-admit it");
                        }
                        Err(e) => say!("backend {addr} could not restart: {e}"),
                    },
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    say!("stopping…");
    running.gateway.shutdown();
    tokio::time::timeout(
        std::time::Duration::from_secs(12),
        running.gateway.drained(),
    )
    .await
    .ok();
    maintenance_stop.cancel();
    let _ = maintenance.await;
    audit.finish().await;
    drop(stop_guard);
    Ok(())
}

/// RFC 4648 base32 (no padding) → bytes; `None` on a bad character.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf: u32 = 0;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buf = (buf << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn str_field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    v.get(name)?.as_str()
}

/// Puts the demo account, its API keys and its TOTP enrolment into the
/// gateway's store, secrets sealed by the vault. Idempotent: what exists is
/// kept.
async fn seed_store(vault: &rampart_vault::Vault, creds_path: &Path) -> Result<(), DemoError> {
    use rampart_store::{Account, ApiKey, KeyState, MfaEnrolment, Store, StoreError};
    let other =
        |e: &dyn std::fmt::Display| DemoError::Other(format!("seeding the demo store: {e}"));
    let text = fs::read(creds_path).map_err(io_err(creds_path))?;
    let creds: serde_json::Value = serde_json::from_slice(&text).map_err(|e| other(&e))?;
    let account = str_field(&creds, "account").unwrap_or("demo").to_owned();
    let store = vault.store();
    let now = rampart_vault::now_ms();
    match store
        .create_account(&Account {
            id: account.clone(),
            name: "Demo trading account".to_owned(),
            parent_id: None,
            created_at_ms: now,
            kyc_tier: 2,
            risk_profile: None,
        })
        .await
    {
        Ok(()) | Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(other(&e)),
    }
    // The demo account trades derivatives (KYC tier 2) and may withdraw to
    // the addresses its credentials file lists (effective at once: seeded
    // by the operator, not added through the API's delayed path).
    store
        .set_account_kyc(&account, 2, None)
        .await
        .map_err(|e| other(&e))?;
    let listed: Vec<String> = store
        .list_withdrawal_addresses(&account)
        .await
        .map_err(|e| other(&e))?
        .into_iter()
        .map(|w| w.address)
        .collect();
    for addr in creds
        .get("withdrawal_addresses")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(serde_json::Value::as_str)
    {
        if listed.iter().any(|l| l == addr) {
            continue;
        }
        store
            .add_withdrawal_address(&rampart_store::WithdrawalAddress {
                account_id: account.clone(),
                address: addr.to_owned(),
                asset: Some("BTC".to_owned()),
                label: Some("demo allow list".to_owned()),
                added_at_ms: now,
                effective_at_ms: now,
            })
            .await
            .map_err(|e| other(&e))?;
    }
    for key in creds
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (Some(key_id), Some(scheme)) = (str_field(key, "key_id"), str_field(key, "scheme"))
        else {
            continue;
        };
        let mut record = ApiKey {
            key_id: key_id.to_owned(),
            account_id: account.clone(),
            scheme: scheme.to_owned(),
            scopes: key
                .get("scopes")
                .and_then(serde_json::Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            allowed_cidrs: Vec::new(),
            expires_at_ms: None,
            cert_fingerprint: None,
            profile: None,
            state: KeyState::Enabled,
            revoked_at_ms: None,
            secret_ciphertext: None,
            public_key: None,
            created_at_ms: now,
            permissions: rampart_store::KeyPermissions::default(),
        };
        if let Some(ascii) = str_field(key, "secret") {
            // Binance-style: the raw ASCII secret is the HMAC key.
            record.secret_ciphertext = Some(
                vault
                    .seal_api_secret(&account, key_id, ascii.as_bytes())
                    .await
                    .map_err(|e| other(&e))?,
            );
        } else if let Some(b64) = str_field(key, "secret_b64") {
            let secret = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| other(&e))?,
            );
            record.secret_ciphertext = Some(
                vault
                    .seal_api_secret(&account, key_id, &secret)
                    .await
                    .map_err(|e| other(&e))?,
            );
        } else if let Some(pem) = str_field(key, "private_key_pem") {
            // The gateway keeps only the public half of an asymmetric key.
            let pair = KeyPair::from_pem(pem)?;
            record.public_key = Some(pair.public_key_raw().to_vec());
        }
        match store.create_api_key(&record).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(other(&e)),
        }
    }
    if let Some(seed) = str_field(&creds, "totp_secret_base32").and_then(base32_decode) {
        let seed = zeroize::Zeroizing::new(seed);
        match store.get_mfa(&account, "totp").await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                let ct = vault
                    .seal_mfa_seed(&account, "totp", &seed)
                    .await
                    .map_err(|e| other(&e))?;
                store
                    .put_mfa(&MfaEnrolment {
                        account_id: account.clone(),
                        kind: "totp".to_owned(),
                        seed_ciphertext: ct,
                        created_at_ms: now,
                        last_used_step: None,
                        recovery_hashes: Vec::new(),
                        algorithm: rampart_store::DEFAULT_MFA_ALGORITHM.to_owned(),
                        digits: rampart_store::DEFAULT_MFA_DIGITS,
                        period_secs: rampart_store::DEFAULT_MFA_PERIOD_SECS,
                    })
                    .await
                    .map_err(|e| other(&e))?;
            }
            Err(e) => return Err(other(&e)),
        }
    }
    vault.flush_counters().await.map_err(|e| other(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b""), "");
    }

    #[test]
    fn base32_round_trip() {
        for data in [&b"foobar"[..], b"f", b"", &[0xff; 20]] {
            assert_eq!(base32_decode(&base32(data)).as_deref(), Some(data));
        }
        assert_eq!(
            base32_decode("MZXW6YTBOI======").as_deref(),
            Some(&b"foobar"[..])
        );
        assert_eq!(base32_decode("mzxw"), None);
    }
}
