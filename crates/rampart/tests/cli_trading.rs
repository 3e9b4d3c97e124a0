//! Trading controls from the outside: `rampart policy …`, `rampart
//! accounts …`, `rampart mfa …` and `rampart kill-switch …` against real
//! files, a real SQLite store (local key provider) and, for the kill
//! switch, a running `rampart demo`.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use common::{ok, rampart, text, BIN};

/// A valid configuration: three routes, SQLite in `data`, `[policy]` with
/// the shipped defaults, one operator file and a small instrument
/// catalogue.
fn write_config(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("desk.cedar"),
        "// Operator policy: no orders at a high risk score.\n\
         @id(\"desk.risk\")\n\
         forbid (principal, action == Rampart::Action::\"PlaceOrder\", resource)\n\
         when { context.risk_score > 90 };\n",
    )
    .unwrap();
    let f = dir.join("rampart.toml");
    std::fs::write(
        &f,
        "[server]\nlisten = \"127.0.0.1:0\"\n[dangerous]\nplaintext = true\n\
         [upstreams.ex]\nendpoints = [\"127.0.0.1:9\"]\n\
         [[routes]]\nmethod = \"GET\"\npath = \"/v1/time\"\nupstream = \"ex\"\naction = \"GetTime\"\nscope = \"public\"\n\
         [[routes]]\nmethod = \"POST\"\npath = \"/v1/orders\"\nupstream = \"ex\"\naction = \"PlaceOrder\"\nscope = \"trade\"\n\
         [[routes]]\nmethod = \"POST\"\npath = \"/v1/withdrawals\"\nupstream = \"ex\"\naction = \"Withdraw\"\nscope = \"withdraw\"\n\
         [storage]\ndata_dir = \"data\"\n\
         [policy]\ndefaults = true\nfiles = [\"desk.cedar\"]\n\
         [policy.instruments]\n\"BTC-USD\" = \"spot\"\n\"BTC-PERP\" = \"perp\"\n\
         [mfa]\nissuer = \"Rampart test\"\naddress_delay = \"24h\"\n",
    )
    .unwrap();
    f
}

fn exit_code(args: &[&str]) -> (i32, String) {
    let o = rampart(args);
    (o.status.code().unwrap_or(-1), text(&o))
}

/// Every file's bytes under `dir`, recursively.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn policy_check_reports_ok_and_every_error_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path());
    let c = cfg.to_str().unwrap();

    let out = ok(&["policy", "check", "--config", c]);
    assert!(
        out.starts_with("ok (") && out.contains(" policies)"),
        "{out}"
    );
    // Without a configuration: the demo's actions and instruments.
    let out = ok(&["policy", "check"]);
    assert!(out.starts_with("ok ("), "{out}");

    // A syntax error: file name, line and column; exit 64.
    let bad = d.path().join("broken.cedar");
    std::fs::write(
        &bad,
        "// fine so far\n@id(\"x\")\npermit (principal, action, resource)\nwhen { true ;\n",
    )
    .unwrap();
    let (code, all) = exit_code(&["policy", "check", "--config", c, bad.to_str().unwrap()]);
    assert_eq!(code, 64, "{all}");
    assert!(all.contains("broken.cedar:4:"), "{all}");

    // A policy that parses but does not validate against the schema.
    let invalid = d.path().join("invalid.cedar");
    std::fs::write(
        &invalid,
        "@id(\"y\")\npermit (principal is Rampart::ApiKey, action, resource)\n\
         when { principal.no_such_attribute == 1 };\n",
    )
    .unwrap();
    let (code, all) = exit_code(&["policy", "check", invalid.to_str().unwrap()]);
    assert_eq!(code, 64, "{all}");
    assert!(all.contains("invalid.cedar:3:"), "{all}");

    // A broken file named by the configuration itself.
    std::fs::write(d.path().join("desk.cedar"), "forbid (principal,\n").unwrap();
    let (code, all) = exit_code(&["policy", "check", "--config", c]);
    assert_eq!(code, 64, "{all}");
    assert!(all.contains("desk.cedar:"), "{all}");
}

#[test]
fn policy_schema_prints_the_rampart_namespace() {
    let out = ok(&["policy", "schema"]);
    assert!(out.contains("namespace Rampart"), "{out}");
    assert!(out.contains("PlaceOrder"), "{out}");
}

#[test]
fn accounts_mfa_addresses_and_explain() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path());
    let c = cfg.to_str().unwrap();

    // Accounts: create, set the tier, show.
    let out = ok(&[
        "accounts", "create", "--config", c, "desk", "--name", "Desk One",
    ]);
    assert!(out.contains("account `desk` created (KYC tier 0)"), "{out}");
    let (code, all) = exit_code(&["accounts", "create", "--config", c, "desk"]);
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("already exists"), "{all}");
    ok(&[
        "accounts", "create", "--config", c, "desk-sub", "--parent", "desk",
    ]);
    let out = ok(&[
        "accounts",
        "set-kyc",
        "--config",
        c,
        "desk",
        "1",
        "--risk-profile",
        "retail",
    ]);
    assert!(out.contains("KYC tier 0 -> 1"), "{out}");
    let (code, all) = exit_code(&["accounts", "set-kyc", "--config", c, "desk", "9"]);
    assert_eq!(code, 1, "{all}");
    let out = ok(&["accounts", "show", "--config", c, "desk"]);
    for needle in [
        "name: Desk One",
        "kyc tier: 1",
        "risk profile: retail",
        "parent: (none)",
        "sub-accounts: desk-sub",
        "mfa: no",
    ] {
        assert!(out.contains(needle), "`{needle}` in {out}");
    }
    let out = ok(&["accounts", "show", "--config", c, "desk-sub"]);
    assert!(out.contains("parent: desk"), "{out}");

    // MFA: the URI and 10 codes, once; a second enrolment needs --force.
    let png = d.path().join("qr.png");
    let out = ok(&[
        "mfa",
        "enroll",
        "--config",
        c,
        "--account",
        "desk",
        "--png",
        png.to_str().unwrap(),
    ]);
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .unwrap_or_else(|| panic!("no otpauth URI in {out}"));
    assert!(uri.contains("issuer=Rampart%20test"), "{uri}");
    let seed = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let codes: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 19 && l.matches('-').count() == 3)
        .collect();
    assert_eq!(codes.len(), 10, "{out}");
    let png_bytes = std::fs::read(&png).unwrap();
    assert!(png_bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&png).unwrap().permissions())
            & 0o777,
        0o600
    );
    let (code, all) = exit_code(&["mfa", "enroll", "--config", c, "--account", "desk"]);
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("--force"), "{all}");
    assert!(!all.contains("otpauth://"), "{all}");
    let out = ok(&["accounts", "show", "--config", c, "desk"]);
    assert!(
        out.contains("mfa: yes") && out.contains("10 recovery codes left"),
        "{out}"
    );
    assert!(!out.contains(&seed), "show prints no secret: {out}");
    // Neither the seed nor a recovery code is stored in plaintext anywhere
    // (store, audit trail).
    for (path, bytes) in all_bytes(&d.path().join("data")) {
        assert!(!contains(&bytes, seed.as_bytes()), "seed in {path:?}");
        for code in &codes {
            assert!(
                !contains(&bytes, code.as_bytes()),
                "recovery code in {path:?}"
            );
        }
    }
    // Replace, then disable.
    let out = ok(&["mfa", "enroll", "--config", c, "--account", "desk-sub"]);
    assert!(out.contains("otpauth://totp/"), "{out}");
    let out = ok(&[
        "mfa",
        "enroll",
        "--config",
        c,
        "--account",
        "desk-sub",
        "--force",
    ]);
    assert!(out.contains("previous enrolment is replaced"), "{out}");
    ok(&["mfa", "disable", "--config", c, "--account", "desk-sub"]);
    let (code, _) = exit_code(&["mfa", "disable", "--config", c, "--account", "desk-sub"]);
    assert_eq!(code, 1);
    assert!(ok(&["accounts", "show", "--config", c, "desk-sub"]).contains("mfa: no"));

    // Address book: delayed by default, at once with --immediate.
    let out = ok(&[
        "accounts",
        "address",
        "add",
        "--config",
        c,
        "desk",
        "bc1qdelayed",
        "--asset",
        "BTC",
        "--label",
        "cold",
    ]);
    assert!(out.contains("effective 20"), "{out}");
    let o = rampart(&[
        "accounts",
        "address",
        "add",
        "--config",
        c,
        "desk",
        "bc1qnow",
        "--immediate",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("operator override"),
        "{}",
        text(&o)
    );
    let out = ok(&["accounts", "show", "--config", c, "desk"]);
    let delayed = out
        .lines()
        .find(|l| l.contains("bc1qdelayed"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(delayed.contains("pending, in 23h"), "{delayed}");
    assert!(delayed.contains("asset BTC") && delayed.contains("label cold"));
    let effective: std::time::SystemTime = humantime_rfc3339(delayed);
    assert!(
        effective > std::time::SystemTime::now() + Duration::from_secs(23 * 3600),
        "{delayed}"
    );
    let now_line = out.lines().find(|l| l.contains("bc1qnow")).unwrap();
    assert!(now_line.ends_with("(effective)"), "{now_line}");
    ok(&[
        "accounts", "address", "remove", "--config", c, "desk", "bc1qnow",
    ]);
    let (code, _) = exit_code(&[
        "accounts", "address", "remove", "--config", c, "desk", "bc1qnow",
    ]);
    assert_eq!(code, 1);

    // A key of the tier-1 account; explain a perp order (denied: tier 2
    // needed) and a spot order (allowed).
    let created: serde_json::Value = serde_json::from_str(&ok(&[
        "keys",
        "create",
        "--config",
        c,
        "--account",
        "desk",
        "--scopes",
        "read,trade",
    ]))
    .unwrap();
    let key = created["key_id"].as_str().unwrap().to_owned();
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            "--config",
            c,
            "--key",
            key.as_str(),
            "--action",
            "PlaceOrder",
        ];
        args.extend_from_slice(extra);
        exit_code(&args)
    };
    let perp = [
        "--instrument",
        "BTC-PERP",
        "--side",
        "buy",
        "--type",
        "limit",
        "--qty",
        "1",
        "--price",
        "65000",
    ];
    let (code, all) = explain(&perp);
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("decision: deny (FORBIDDEN_BY_POLICY)"),
        "{all}"
    );
    assert!(all.contains("the key's settings as policies"), "{all}");
    let spot = [
        "--instrument",
        "BTC-USD",
        "--side",
        "buy",
        "--type",
        "limit",
        "--qty",
        "0.5",
        "--price",
        "65000.00",
    ];
    let (code, all) = explain(&spot);
    assert_eq!(code, 0, "{all}");
    assert!(all.contains("decision: allow"), "{all}");
    assert!(all.contains("default.kyc1.spot"), "{all}");
    assert!(
        all.contains("permit (principal is Rampart::ApiKey"),
        "{all}"
    );
    // The operator's policy, with its text, when it applies.
    let mut risky = spot.to_vec();
    risky.extend_from_slice(&["--risk-score", "95", "--json"]);
    let (code, all) = explain(&risky);
    assert_eq!(code, 1, "{all}");
    let stdout = all
        .split("stdout:\n")
        .nth(1)
        .unwrap()
        .split("\nstderr:")
        .next()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["code"], "FORBIDDEN_BY_POLICY");
    assert_eq!(v["determining_policies"], serde_json::json!(["desk.risk"]));
    assert!(v["satisfied"][0]["source"]
        .as_str()
        .unwrap()
        .ends_with("desk.cedar"));

    // Key permissions: products narrowed to perp: the spot order is now
    // refused by the key's own settings.
    let out = ok(&[
        "accounts",
        "key-permissions",
        "--config",
        c,
        &key,
        "--products",
        "perp",
    ]);
    assert!(out.contains("products perp"), "{out}");
    let (code, all) = explain(&spot);
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("key.product"), "{all}");
    let (code, all) = exit_code(&[
        "accounts",
        "key-permissions",
        "--config",
        c,
        &key,
        "--instruments",
        "DOGE-USD",
    ]);
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("unknown instrument `DOGE-USD`"), "{all}");
    ok(&[
        "accounts",
        "key-permissions",
        "--config",
        c,
        &key,
        "--products",
        "",
        "--read-only",
        "false",
    ]);
    let (code, all) = explain(&spot);
    assert_eq!(code, 0, "{all}");

    // Every change is in the audit trail.
    let audit = ok(&[
        "audit",
        "search",
        "--data-dir",
        d.path().join("data").to_str().unwrap(),
        "--limit",
        "1000",
    ]);
    for action in [
        "\"accounts.create\"",
        "\"accounts.set_kyc\"",
        "\"mfa.enroll\"",
        "\"mfa.disable\"",
        "\"accounts.address.add\"",
        "\"accounts.address.remove\"",
        "\"accounts.key_permissions\"",
    ] {
        assert!(audit.contains(action), "{action} not audited:\n{audit}");
    }
    assert!(audit.contains("OPERATOR_OVERRIDE"), "{audit}");
    assert!(!audit.contains(&seed));
    ok(&[
        "audit",
        "verify",
        "--data-dir",
        d.path().join("data").to_str().unwrap(),
    ]);
}

/// The RFC 3339 time after `effective ` in an address line.
fn humantime_rfc3339(line: &str) -> std::time::SystemTime {
    let t = line
        .split("effective ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    parse_rfc3339_utc(t)
}

/// `YYYY-MM-DDTHH:MM:SSZ` → time (days from civil, no leap seconds).
fn parse_rfc3339_utc(t: &str) -> std::time::SystemTime {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Self { child, lines: rx }
    }

    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if l.contains(needle) {
                    return;
                }
            }
        }
        panic!("no line containing `{needle}`");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kill_switch_engage_list_release_against_the_demo() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("data");
    let p = Proc::spawn(&[
        "demo",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    p.wait_for("Rampart demo is running");
    let creds = dir.join("demo-credentials.json");
    let creds = creds.to_str().unwrap();

    let json = |out: &str| -> serde_json::Value { serde_json::from_str(out).unwrap() };
    let v = json(&ok(&["kill-switch", "list", "--credentials", creds]));
    assert_eq!(v["engaged"], serde_json::json!([]), "{v}");

    let v = json(&ok(&[
        "kill-switch",
        "engage",
        "--credentials",
        creds,
        "--target",
        "account:demo",
        "--reason",
        "test: fat finger",
    ]));
    assert_eq!(v["engaged"], true, "{v}");
    assert_eq!(v["changed"], true, "{v}");
    // The demo has `[kill_switch] cancel_all = true`: the results are shown.
    assert!(v["cancel_all"].is_array(), "{v}");

    let v = json(&ok(&["kill-switch", "list", "--credentials", creds]));
    let engaged = v["engaged"].as_array().unwrap();
    assert_eq!(engaged.len(), 1, "{v}");
    assert_eq!(engaged[0]["reason"], "test: fat finger", "{v}");

    // Explicit --admin-url and --ca instead of the credentials file.
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(creds).unwrap()).unwrap();
    let v = json(&ok(&[
        "kill-switch",
        "release",
        "--admin-url",
        c["admin_url"].as_str().unwrap(),
        "--ca",
        c["ca_cert_path"].as_str().unwrap(),
        "--credentials",
        "/nonexistent",
        "--target",
        "account:demo",
    ]));
    assert_eq!(v["engaged"], false, "{v}");
    let v = json(&ok(&["kill-switch", "list", "--credentials", creds]));
    assert_eq!(v["engaged"], serde_json::json!([]), "{v}");

    // Usage errors.
    let (code, all) = exit_code(&[
        "kill-switch",
        "engage",
        "--credentials",
        creds,
        "--target",
        "everyone",
    ]);
    assert_eq!(code, 2, "{all}");
    let (code, all) = exit_code(&["kill-switch", "list", "--credentials", "/nonexistent"]);
    assert_eq!(code, 2, "{all}");
    assert!(all.contains("cannot load the credentials"), "{all}");
}
