//! Key management from the outside: `rampart keys …` against real files, a
//! real SQLite store and a real SoftHSM2 token; start-up refusals; the demo
//! leaves no plaintext secret in the gateway's files.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_crypto::{Envelope, KeyProvider, LocalKeyProvider, Purpose};
use rampart_store::{Account, AnyStore, ApiKey, KeyState, SqliteStore, Store};
use rampart_vault::{Vault, VaultOptions};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// A minimal valid configuration with a data dir and a `[keys]` section.
fn write_config(dir: &Path, keys: &str) -> PathBuf {
    let f = dir.join("rampart.toml");
    std::fs::write(
        &f,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[dangerous]\nplaintext = true\n\
             [upstreams.ex]\nendpoints = [\"127.0.0.1:9\"]\n\
             [[routes]]\nmethod = \"GET\"\npath = \"/v1/time\"\nupstream = \"ex\"\naction = \"GetTime\"\nscope = \"public\"\n\
             [storage]\ndata_dir = \"data\"\n{keys}"
        ),
    )
    .unwrap();
    f
}

fn rampart(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("RUST_LOG");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str], envs: &[(&str, &str)]) -> String {
    let o = rampart(args, envs);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails_with(args: &[&str], envs: &[(&str, &str)], needle: &str) {
    let o = rampart(args, envs);
    assert!(!o.status.success(), "should fail: {}", text(&o));
    let all = text(&o);
    assert!(all.contains(needle), "expected `{needle}` in:\n{all}");
}

#[test]
fn startup_refuses_wrong_passphrase_missing_key_and_open_permissions() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "[keys]\npassphrase_env = \"TEST_ROOT_PASS\"\n");
    let c = cfg.to_str().unwrap();
    let good = [("TEST_ROOT_PASS", "correct horse battery staple")];

    fails_with(
        &["keys", "status", "--config", c],
        &[],
        "environment variable `TEST_ROOT_PASS` is not set",
    );
    let out = ok(&["keys", "status", "--config", c], &good);
    assert!(out.contains("api-secrets"), "{out}");
    assert!(out.contains("core dumps: disabled"), "{out}");
    let data = d.path().join("data");
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );

    fails_with(
        &["keys", "status", "--config", c],
        &[("TEST_ROOT_PASS", "wrong")],
        "wrong passphrase",
    );

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    fails_with(&["keys", "status", "--config", c], &good, "chmod 700");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();

    let root = data.join("root.key");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o644)).unwrap();
    fails_with(&["keys", "status", "--config", c], &good, "chmod 600");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A database without its root key: refuse, never silently create a new one.
    std::fs::rename(&root, d.path().join("root.key.bak")).unwrap();
    fails_with(
        &["keys", "status", "--config", c],
        &good,
        "restore it from backup",
    );
    assert!(!root.exists());
    std::fs::rename(d.path().join("root.key.bak"), &root).unwrap();
    ok(&["keys", "status", "--config", c], &good);

    // Passphrase from a file: must be private.
    let pass_file = d.path().join("pass.txt");
    std::fs::write(&pass_file, "correct horse battery staple\n").unwrap();
    std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg2 = write_config(d.path(), "[keys]\npassphrase_file = \"pass.txt\"\n");
    let c2 = cfg2.to_str().unwrap();
    fails_with(&["keys", "status", "--config", c2], &[], "chmod 600");
    std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(&["keys", "status", "--config", c2], &[]);
}

#[test]
fn serve_runs_without_core_dumps() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "");
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The JSON log goes to stdout.
    wait_for_line(child.stdout.take().unwrap(), "rampart listening");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], &["0", "0"], "{core}");
    let _ = child.kill();
    let _ = child.wait();
}

async fn open_vault(dir: &Path) -> Vault {
    let data = dir.join("data");
    let provider: Arc<dyn KeyProvider> = Arc::new(LocalKeyProvider::open(&data, None).unwrap());
    let store = AnyStore::new(SqliteStore::open_in_dir(&data).await.unwrap());
    Vault::open(
        store,
        provider,
        VaultOptions {
            refresh_interval: Duration::from_millis(200),
            ..VaultOptions::default()
        },
        None,
    )
    .await
    .unwrap()
}

fn secret_of(i: usize) -> Vec<u8> {
    format!("hmac-secret-{i:06}-0123456789abcdef").into_bytes()
}

/// The issue's rotation test: 100k records, rotate, rewrap while reads and
/// writes continue, kill the rewrap process midway, resume: every record
/// decrypts, none lost, all on the new version.
#[test]
fn rewrap_100k_records_online_survives_kill_and_resumes() {
    const N: usize = 100_000;
    const ACCOUNTS: usize = 50;
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "[keys]\nrefresh_interval = \"200ms\"\n");
    let c = cfg.to_str().unwrap();
    ok(&["keys", "status", "--config", c], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vault = Arc::new(rt.block_on(open_vault(d.path())));

    rt.block_on(async {
        for a in 0..ACCOUNTS {
            vault
                .store()
                .create_account(&Account {
                    id: format!("acct{a}"),
                    name: "a".into(),
                    parent_id: None,
                    created_at_ms: 0,
                    kyc_tier: 0,
                    risk_profile: None,
                })
                .await
                .unwrap();
        }
        let mut batch = Vec::with_capacity(5_000);
        for i in 0..N {
            let account_id = format!("acct{}", i % ACCOUNTS);
            let key_id = format!("k{i:06}");
            let ct = vault
                .seal_api_secret(&account_id, &key_id, &secret_of(i))
                .await
                .unwrap();
            batch.push(ApiKey {
                key_id,
                account_id,
                scheme: "hmac-sha256".into(),
                scopes: vec!["trade".into()],
                allowed_cidrs: vec![],
                expires_at_ms: None,
                cert_fingerprint: None,
                profile: None,
                state: KeyState::Enabled,
                revoked_at_ms: None,
                secret_ciphertext: Some(ct),
                public_key: None,
                created_at_ms: 0,
                permissions: rampart_store::KeyPermissions::default(),
            });
            if batch.len() == 5_000 {
                vault.store().create_api_keys(&batch).await.unwrap();
                batch.clear();
            }
        }
    });

    let out = ok(
        &["keys", "rotate-data-key", "api-secrets", "--config", c],
        &[],
    );
    assert!(out.contains("version 2"), "{out}");
    rt.block_on(vault.refresh()).unwrap();
    assert_eq!(
        vault.keyring().current_version(Purpose::ApiSecrets),
        Some(2)
    );

    // Concurrent traffic: reads and re-writes of secrets during the rewrap.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (vault, stop) = (Arc::clone(&vault), Arc::clone(&stop));
        rt.spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = (n * 7_919) % N;
                let key_id = format!("k{i:06}");
                let key = vault.store().get_api_key(&key_id).await.unwrap();
                let plain = vault.open_api_secret(&key).await.unwrap();
                assert_eq!(&plain[..], &secret_of(i)[..]);
                if n.is_multiple_of(4) {
                    let ct = vault
                        .seal_api_secret(&key.account_id, &key_id, &secret_of(i))
                        .await
                        .unwrap();
                    vault
                        .store()
                        .set_api_key_secret(&key_id, &ct)
                        .await
                        .unwrap();
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        })
    };

    // First rewrap: killed (SIGKILL) once it is well into the pass.
    let mut child = Command::new(BIN)
        .args(["keys", "rewrap", "--config", c, "--batch", "500"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut killed_at = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("rewrap: pass 1 ") {
            let done: u64 = rest.split('/').next().unwrap().parse().unwrap();
            if done >= 30_000 {
                child.kill().unwrap();
                killed_at = Some(done);
                break;
            }
        }
        assert!(Instant::now() < deadline, "rewrap too slow");
    }
    let _ = child.wait();
    let killed_at = killed_at.expect("rewrap finished before it could be killed");
    assert!(killed_at < N as u64);

    let versions = rt.block_on(vault.field_versions()).unwrap();
    let total: u64 = versions.iter().map(|(_, n)| n).sum();
    assert_eq!(total, N as u64, "no record lost: {versions:?}");
    assert!(
        versions.contains(&((Purpose::ApiSecrets, 1), versions[0].1)) && versions.len() == 2,
        "killed midway, so both versions are present: {versions:?}"
    );

    // Resume to the end.
    let out = ok(&["keys", "rewrap", "--config", c, "--batch", "1000"], &[]);
    assert!(
        out.contains("api-secrets: versions below 2 retired"),
        "{out}"
    );
    assert!(out.contains("0 unreadable"), "{out}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let requests = rt.block_on(traffic).unwrap();
    assert!(requests > 10, "traffic ran during the rewrap: {requests}");

    rt.block_on(async {
        vault.refresh().await.unwrap();
        assert_eq!(
            vault.field_versions().await.unwrap(),
            vec![((Purpose::ApiSecrets, 2), N as u64)]
        );
        for i in (0..N).step_by(97) {
            let key = vault
                .store()
                .get_api_key(&format!("k{i:06}"))
                .await
                .unwrap();
            assert_eq!(
                &vault.open_api_secret(&key).await.unwrap()[..],
                &secret_of(i)[..]
            );
            let env = Envelope::parse(key.secret_ciphertext.as_deref().unwrap()).unwrap();
            assert_eq!(env.key_version, 2);
        }
    });
    let status = ok(&["keys", "status", "--config", c], &[]);
    assert!(status.contains("api-secrets v2: 100000"), "{status}");
}

#[test]
fn rotate_root_and_shred_account_from_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "");
    let c = cfg.to_str().unwrap();
    ok(&["keys", "status", "--config", c], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let vault = open_vault(d.path()).await;
        for a in ["alice", "bob"] {
            vault
                .store()
                .create_account(&Account {
                    id: a.into(),
                    name: a.into(),
                    parent_id: None,
                    created_at_ms: 0,
                    kyc_tier: 0,
                    risk_profile: None,
                })
                .await
                .unwrap();
            let ct = vault
                .seal_mfa_seed(a, "totp", b"JBSWY3DPEHPK3PXP")
                .await
                .unwrap();
            vault
                .store()
                .put_mfa(&rampart_store::MfaEnrolment {
                    account_id: a.into(),
                    kind: "totp".into(),
                    seed_ciphertext: ct,
                    created_at_ms: 0,
                    last_used_step: None,
                    recovery_hashes: Vec::new(),
                    algorithm: rampart_store::DEFAULT_MFA_ALGORITHM.to_owned(),
                    digits: rampart_store::DEFAULT_MFA_DIGITS,
                    period_secs: rampart_store::DEFAULT_MFA_PERIOD_SECS,
                })
                .await
                .unwrap();
        }
    });
    let out = ok(&["keys", "rotate-root", "--config", c], &[]);
    assert!(out.contains("version 1 -> 2"), "{out}");
    assert!(out.contains("3 data keys re-wrapped"), "{out}");
    let status = ok(&["keys", "status", "--config", c], &[]);
    assert!(status.contains("root key versions: [2]"), "{status}");

    fails_with(
        &["keys", "shred-account", "alice", "--config", c],
        &[],
        "--yes",
    );
    let out = ok(
        &["keys", "shred-account", "alice", "--config", c, "--yes"],
        &[],
    );
    assert!(out.contains("shredded"), "{out}");
    rt.block_on(async {
        let vault = open_vault(d.path()).await;
        let alice = vault.store().get_mfa("alice", "totp").await.unwrap();
        assert!(vault.open_mfa_seed(&alice).await.is_err());
        let bob = vault.store().get_mfa("bob", "totp").await.unwrap();
        assert_eq!(
            &vault.open_mfa_seed(&bob).await.unwrap()[..],
            b"JBSWY3DPEHPK3PXP"
        );
    });
}

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The PKCS#11 path end to end through the binary: a fresh SoftHSM2 token,
/// the root key generated inside it, rotate-root, wrong PIN.
#[test]
fn pkcs11_provider_through_the_binary() {
    assert!(
        Path::new(SOFTHSM_MODULE).exists(),
        "SoftHSM2 is not installed: `apt-get install softhsm2` (.ci/run does this)"
    );
    let d = tempfile::tempdir().unwrap();
    let tokens = d.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = d.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let conf_s = conf.to_str().unwrap();
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "rampart-cli",
            "--so-pin",
            "12345678",
            "--pin",
            "87654321",
        ])
        .env("SOFTHSM2_CONF", conf_s)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let cfg = write_config(
        d.path(),
        &format!(
            "[keys]\nprovider = \"pkcs11\"\n[keys.pkcs11]\nmodule = \"{SOFTHSM_MODULE}\"\ntoken = \"rampart-cli\"\npin_env = \"TEST_HSM_PIN\"\n"
        ),
    );
    let c = cfg.to_str().unwrap();
    let env = [("SOFTHSM2_CONF", conf_s), ("TEST_HSM_PIN", "87654321")];
    let status = ok(&["keys", "status", "--config", c], &env);
    assert!(status.contains("provider: pkcs11"), "{status}");
    assert!(status.contains("root key versions: [1]"), "{status}");
    // No root key material on disk: the data dir has only the database.
    let data = d.path().join("data");
    assert!(!data.join("root.key").exists());
    let out = ok(&["keys", "rotate-root", "--config", c], &env);
    assert!(out.contains("version 1 -> 2"), "{out}");
    let status = ok(&["keys", "status", "--config", c], &env);
    assert!(status.contains("root key versions: [2]"), "{status}");
    fails_with(
        &["keys", "status", "--config", c],
        &[("SOFTHSM2_CONF", conf_s), ("TEST_HSM_PIN", "00000000")],
        "wrong PIN",
    );
}

/// After `rampart demo`, no file of the gateway holds a demo API secret or
/// the TOTP seed in plaintext (the client's own copy, `demo-credentials.json`,
/// is the one exception, as CONTRACT.md requires), and the store really
/// holds them, encrypted.
#[test]
fn demo_keeps_no_plaintext_secret_on_disk() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("demo");
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(child.stderr.take().unwrap(), "Rampart demo is running");
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("demo-credentials.json")).unwrap()).unwrap();
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    let mut secrets = Vec::new();
    for k in creds["keys"].as_array().unwrap() {
        if let Some(b64) = k["secret_b64"].as_str() {
            let raw = b64_decode(b64);
            needles.push((format!("{} base64", k["name"]), b64.as_bytes().to_vec()));
            needles.push((format!("{} raw", k["name"]), raw.clone()));
            needles.push((format!("{} hex", k["name"]), hex(&raw).into_bytes()));
            secrets.push((k["key_id"].as_str().unwrap().to_owned(), raw));
        }
    }
    for k in creds["keys"].as_array().unwrap() {
        if let Some(ascii) = k["secret"].as_str() {
            needles.push((format!("{} ascii", k["name"]), ascii.as_bytes().to_vec()));
            secrets.push((
                k["key_id"].as_str().unwrap().to_owned(),
                ascii.as_bytes().to_vec(),
            ));
        }
    }
    // trader-hmac, reader, treasury, kraken-style (base64) and binance-style (ASCII).
    assert_eq!(secrets.len(), 5);
    let totp = creds["totp_secret_base32"].as_str().unwrap();
    let totp_raw = b32_decode(totp);
    needles.push(("totp base32".into(), totp.as_bytes().to_vec()));
    needles.push(("totp raw".into(), totp_raw.clone()));
    needles.push(("totp hex".into(), hex(&totp_raw).into_bytes()));

    let scan = |when: &str| {
        let mut files = Vec::new();
        walk(&dir, &mut files);
        assert!(
            files.iter().any(|f| f.ends_with("gateway/rampart.sqlite3")),
            "{files:?}"
        );
        for f in files {
            if f.file_name().unwrap() == "demo-credentials.json" {
                continue;
            }
            // SQLite's transient files (journals) may vanish between the
            // listing and the read while the demo runs.
            let bytes = match std::fs::read(&f) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", f.display()),
            };
            for (what, needle) in &needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                    "{when}: {} contains the {what} in plaintext",
                    f.display()
                );
            }
        }
    };
    scan("while running");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    scan("after stop");

    // The secrets are there, encrypted: the vault opens them.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let data = dir.join("gateway");
        let provider: Arc<dyn KeyProvider> = Arc::new(LocalKeyProvider::open(&data, None).unwrap());
        let store = AnyStore::new(SqliteStore::open_in_dir(&data).await.unwrap());
        let vault = Vault::open(store, provider, VaultOptions::default(), None)
            .await
            .unwrap();
        for (key_id, raw) in &secrets {
            let key = vault.store().get_api_key(key_id).await.unwrap();
            assert_eq!(&vault.open_api_secret(&key).await.unwrap()[..], &raw[..]);
        }
        let mfa = vault.store().get_mfa("demo", "totp").await.unwrap();
        assert_eq!(&vault.open_mfa_seed(&mfa).await.unwrap()[..], &totp_raw[..]);
    });
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn b64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    decode_bits(s.trim_end_matches('='), A, 6)
}

fn b32_decode(s: &str) -> Vec<u8> {
    decode_bits(
        s.trim_end_matches('='),
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
        5,
    )
}

fn decode_bits(s: &str, alphabet: &[u8], width: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = alphabet.iter().position(|a| *a == c).unwrap() as u32;
        buf = (buf << width) | v;
        bits += width;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

/// `rampart demo` requires signatures on non-public routes; every key of
/// `demo-credentials.json` works through `rampart call`, the curl script
/// signs too, and a key gets an OAuth token.
#[test]
fn demo_requires_signatures_and_every_demo_key_works() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("demo");
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(child.stderr.take().unwrap(), "Rampart demo is running");
    let creds_path = dir.join("demo-credentials.json");
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&creds_path).unwrap()).unwrap();
    let gw = creds["gateway_url"].as_str().unwrap().to_owned();
    let c = creds_path.to_str().unwrap();
    let call = |args: &[&str]| {
        let mut all = vec!["call", "--credentials", c];
        all.extend_from_slice(args);
        rampart(&all, &[])
    };
    let account = format!("{gw}/v1/account");
    let orders = format!("{gw}/v1/orders");

    let o = call(&["GET", &account]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("MISSING_CREDENTIALS"), "{}", text(&o));
    let o = call(&["GET", &format!("{gw}/v1/markets")]);
    assert!(o.status.success(), "{}", text(&o));

    for k in creds["keys"].as_array().unwrap() {
        let name = k["name"].as_str().unwrap();
        let o = call(&["--key", name, "GET", &account]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(text(&o).contains("\"demo\""), "{name}: {}", text(&o));
    }
    let body = r#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.01","price":"64000.00","client_order_id":"cli-1","time_in_force":"gtc"}"#;
    let o = call(&["--key", "trader-hmac", "--data", body, "POST", &orders]);
    assert!(o.status.success(), "{}", text(&o));
    let o = call(&[
        "--key",
        "reader",
        "--data",
        &body.replace("cli-1", "cli-2"),
        "POST",
        &orders,
    ]);
    assert!(text(&o).contains("SCOPE_MISSING"), "{}", text(&o));

    // curl + openssl only.
    let hmac = creds["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "trader-hmac")
        .unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rampart-curl.sh");
    let o = Command::new("bash")
        .arg(&script)
        .args([
            hmac["key_id"].as_str().unwrap(),
            hmac["secret_b64"].as_str().unwrap(),
            "POST",
            &orders,
            &body.replace("cli-1", "curl-1"),
        ])
        .env("CA", creds["ca_cert_path"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("curl-1"),
        "{}",
        text(&o)
    );

    // OAuth client credentials, then the token on a read route.
    let o = call(&[
        "--key",
        "trader-hmac",
        "--data",
        r#"{"grant_type":"client_credentials","scope":"read"}"#,
        "POST",
        &format!("{gw}/oauth/token"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let json_start = out.find('{').unwrap();
    let v: serde_json::Value = serde_json::from_str(&out[json_start..]).unwrap();
    let token = v["access_token"].as_str().unwrap();
    let o = call(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        "GET",
        &account,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// `keys create / list / show / rotate / revoke` through the binary, checked
/// against what the gateway's key directory then sees.
#[test]
fn api_key_lifecycle_from_the_cli() {
    use rampart_auth::KeyDirectory as _;
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "");
    let c = cfg.to_str().unwrap();
    let out = ok(
        &[
            "keys",
            "create",
            "--config",
            c,
            "--account",
            "desk",
            "--scheme",
            "hmac-sha256",
            "--scopes",
            "read,trade",
            "--allow-ip",
            "10.0.0.0/8",
            "--expires-in",
            "30days",
        ],
        &[],
    );
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    let first = b64(created["secret_b64"].as_str().unwrap());
    assert_eq!(first.len(), 32);
    fails_with(
        &[
            "keys",
            "create",
            "--config",
            c,
            "--account",
            "desk",
            "--scheme",
            "ed25519",
        ],
        &[],
        "--public-key",
    );
    let list = ok(&["keys", "list", "--config", c], &[]);
    assert!(
        list.contains(&key_id) && list.contains("read,trade"),
        "{list}"
    );
    let show = ok(&["keys", "show", &key_id, "--config", c], &[]);
    assert!(
        !show.contains(created["secret_b64"].as_str().unwrap()),
        "show never prints the secret"
    );
    assert!(show.contains("10.0.0.0/8"), "{show}");

    let out = ok(
        &["keys", "rotate", &key_id, "--overlap", "1h", "--config", c],
        &[],
    );
    let rotated: serde_json::Value = serde_json::from_str(&out).unwrap();
    let second = b64(rotated["secret_b64"].as_str().unwrap());
    assert_ne!(first, second);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let vault = Arc::new(open_vault(d.path()).await);
        let dir = rampart_vault::directory::VaultDirectory::new(Arc::clone(&vault), Duration::ZERO);
        let rec = dir.lookup(&key_id).await.unwrap().unwrap();
        let rampart_auth::KeyMaterial::Hmac(now) = &rec.material else {
            panic!()
        };
        assert_eq!(&now[..], &second[..]);
        let (prev, until) = rec.previous.as_ref().unwrap();
        let rampart_auth::KeyMaterial::Hmac(prev) = prev else {
            panic!()
        };
        assert_eq!(
            &prev[..],
            &first[..],
            "the old secret works during the overlap"
        );
        assert!(*until > rampart_vault::now_ms());
        assert!(!rec.revoked);
        assert_eq!(rec.allowed_nets.len(), 1);
        // Rewrap covers previous secrets too (they are readable fields).
        vault.rotate_data_key(Purpose::ApiSecrets).await.unwrap();
        let report = vault.rewrap(100, false, &mut |_| {}).await.unwrap();
        assert_eq!(report.unreadable, 0);
        assert_eq!(report.rewrapped, 2);
    });
    let out = ok(
        &[
            "keys",
            "create",
            "--config",
            c,
            "--account",
            "desk",
            "--scheme",
            "kraken-hmac-sha512",
            "--scopes",
            "trade",
            "--nonce-window",
            "500",
        ],
        &[],
    );
    let kraken: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(kraken["nonce_window"], 500);
    assert_eq!(b64(kraken["secret_b64"].as_str().unwrap()).len(), 64);
    fails_with(
        &[
            "keys",
            "create",
            "--config",
            c,
            "--account",
            "desk",
            "--nonce-window",
            "5",
        ],
        &[],
        "kraken-hmac-sha512 keys only",
    );
    rt.block_on(async {
        let vault = Arc::new(open_vault(d.path()).await);
        let dir = rampart_vault::directory::VaultDirectory::new(vault, Duration::ZERO);
        let rec = dir
            .lookup(kraken["key_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.nonce_window, 500);
        assert!(dir.advance_counter(&rec.key_id, 1_000, 500).await.unwrap());
        assert!(dir.advance_counter(&rec.key_id, 700, 500).await.unwrap());
        assert!(!dir.advance_counter(&rec.key_id, 700, 500).await.unwrap());
        assert!(!dir.advance_counter(&rec.key_id, 400, 500).await.unwrap());
    });
    ok(&["keys", "revoke", &key_id, "--config", c], &[]);
    rt.block_on(async {
        let vault = Arc::new(open_vault(d.path()).await);
        let dir = rampart_vault::directory::VaultDirectory::new(vault, Duration::ZERO);
        assert!(dir.lookup(&key_id).await.unwrap().unwrap().revoked);
    });
}

fn b64(s: &str) -> Vec<u8> {
    b64_decode(s)
}

/// Reads `pipe` until a line contains `needle`, then keeps draining it in
/// the background: closing the pipe early would make the child's next write
/// fail (and `eprintln!` panics on a closed stderr).
fn wait_for_line(pipe: impl std::io::Read + Send + 'static, needle: &'static str) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if line.contains(needle) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no line containing `{needle}`"));
}
