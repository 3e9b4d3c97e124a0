//! The audit trail from the outside: a running demo gateway records a
//! signed order, a rejected request, a key created from the CLI while it
//! runs, and its own lifecycle; `rampart audit verify / proof /
//! consistency / search / export` work on the result; order details never
//! reach the disk in plaintext; tampering with the files is caught.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{ok, rampart, text, BIN};

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

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Search results: one `{"index":…,"event":…}` line each.
fn search(dir: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["audit", "search", "--data-dir", dir];
    all.extend_from_slice(args);
    ok(&all)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn gateway_decisions_and_admin_changes_are_audited_and_verifiable() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("demo");
    let dir_s = dir.to_str().unwrap().to_owned();
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--data-dir",
            &dir_s,
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
    let hmac_id = creds["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "trader-hmac")
        .unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = creds_path.to_str().unwrap();

    // A signed order whose details must never be on disk in plaintext.
    let secret_cid = "audit-plain-93731";
    let body = format!(
        r#"{{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.01","price":"64123.45","client_order_id":"{secret_cid}","time_in_force":"gtc"}}"#
    );
    let o = rampart(&[
        "call",
        "--credentials",
        c,
        "--key",
        "trader-hmac",
        "--data",
        &body,
        "POST",
        &format!("{gw}/v1/orders"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // A rejected request (no credentials).
    let o = rampart(&[
        "call",
        "--credentials",
        c,
        "GET",
        &format!("{gw}/v1/account"),
    ]);
    assert!(text(&o).contains("MISSING_CREDENTIALS"), "{}", text(&o));
    // A key created from the CLI while the gateway holds the log: spooled,
    // then drained by the gateway.
    let cfg = dir.join("rampart.toml");
    let created: serde_json::Value = serde_json::from_str(&ok(&[
        "keys",
        "create",
        "--config",
        cfg.to_str().unwrap(),
        "--account",
        "demo",
        "--scopes",
        "read",
    ]))
    .unwrap();
    let new_key = created["key_id"].as_str().unwrap().to_owned();

    // The events are searchable while the gateway runs (the spool drains
    // within a checkpoint interval).
    let deadline = Instant::now() + Duration::from_secs(20);
    let created_events = loop {
        let hits = search(&dir_s, &["--type", "apikey.created"]);
        if !hits.is_empty() || Instant::now() > deadline {
            break hits;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(created_events.len(), 1, "{created_events:?}");
    let ev = &created_events[0]["event"];
    assert_eq!(ev["resource"], format!("api-key/{new_key}"));
    assert_eq!(ev["actor"]["kind"], "user");
    assert_eq!(ev["account"], "demo");

    let allows = search(&dir_s, &["--type", "auth.success", "--actor", &hmac_id]);
    let order = allows
        .iter()
        .find(|h| h["event"]["action"] == "PlaceOrder")
        .unwrap_or_else(|| panic!("no order decision in {allows:?}"));
    assert_eq!(order["event"]["decision"], "allow");
    assert_eq!(order["event"]["account"], "demo");
    assert!(
        order["event"]["payload"]["body"]["sealed"].is_string(),
        "{order}"
    );
    let fails = search(&dir_s, &["--type", "auth.failure", "--since", "10m"]);
    assert!(
        fails
            .iter()
            .any(|h| h["event"]["reason"] == "MISSING_CREDENTIALS"),
        "{fails:?}"
    );
    let starts = search(&dir_s, &["--type", "gateway.start"]);
    assert_eq!(starts.len(), 1);

    // Stop: gateway.stop is the last record, the log is closed.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let stops = search(&dir_s, &["--type", "gateway.stop"]);
    assert_eq!(stops.len(), 1);

    // Order details are sealed: not in any file of the gateway.
    let mut files = Vec::new();
    walk(&dir.join("gateway"), &mut files);
    assert!(files.iter().any(|f| f.to_string_lossy().contains("seg-")));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes
                .windows(secret_cid.len())
                .any(|w| w == secret_cid.as_bytes()),
            "{} holds the order in plaintext",
            f.display()
        );
    }

    // Verify, with the key printed by `public-key`, and proofs.
    let out = ok(&["audit", "verify", "--data-dir", &dir_s]);
    assert!(out.starts_with("OK:"), "{out}");
    let key_file = d.path().join("audit.pub");
    std::fs::write(
        &key_file,
        ok(&["audit", "public-key", "--data-dir", &dir_s]),
    )
    .unwrap();
    ok(&[
        "audit",
        "verify",
        "--data-dir",
        &dir_s,
        "--public-key",
        key_file.to_str().unwrap(),
    ]);
    let index = order["index"].as_u64().unwrap().to_string();
    let proof: serde_json::Value = serde_json::from_str(&ok(&[
        "audit",
        "proof",
        "--index",
        &index,
        "--data-dir",
        &dir_s,
    ]))
    .unwrap();
    assert_eq!(proof["index"].as_u64().unwrap().to_string(), index);
    assert!(proof["checkpoint"].as_str().unwrap().contains('\u{2014}'));
    let cons: serde_json::Value = serde_json::from_str(&ok(&[
        "audit",
        "consistency",
        "--old-size",
        "1",
        "--data-dir",
        &dir_s,
    ]))
    .unwrap();
    assert_eq!(cons["old_size"], 1);

    // An export bundle verifies offline.
    let bundle = d.path().join("bundle.jsonl");
    ok(&[
        "audit",
        "export",
        "--data-dir",
        &dir_s,
        "--out",
        bundle.to_str().unwrap(),
    ]);
    ok(&[
        "audit",
        "verify",
        "--export",
        bundle.to_str().unwrap(),
        "--public-key",
        key_file.to_str().unwrap(),
    ]);

    // Tampering: one byte of the order record's resource changed → exit 1,
    // naming its index.
    let seg = files
        .iter()
        .find(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seg-"))
        })
        .unwrap();
    let mut bytes = std::fs::read(seg).unwrap();
    let needle = b"\"resource\":\"/v1/orders\"";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at + 14] ^= 0x01;
    std::fs::write(seg, &bytes).unwrap();
    let o = rampart(&["audit", "verify", "--data-dir", &dir_s]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("index {index}")), "{err}");
}

/// `rampart serve` with a file exporter: lifecycle events and a rejection
/// reach the OCSF file; SIGHUP with a broken file is recorded as a refused
/// reload; the log verifies after stop.
#[test]
fn serve_exports_ocsf_and_records_reloads() {
    let d = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = d.path().join("rampart.toml");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[dangerous]\nplaintext = true\n\
         [upstreams.ex]\nendpoints = [\"127.0.0.1:9\"]\n\
         [[routes]]\nmethod = \"GET\"\npath = \"/v1/time\"\nupstream = \"ex\"\naction = \"GetTime\"\nscope = \"public\"\n\
         [storage]\ndata_dir = \"data\"\n\
         [audit]\norigin = \"test.example/audit\"\n\
         [[audit.exporters]]\nname = \"siem\"\nkind = \"file\"\npath = \"ocsf.jsonl\"\n"
    );
    std::fs::write(&cfg, &config).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_line(child.stdout.take().unwrap(), "rampart listening");
    // A public route whose upstream is down: 502, recorded as a rejection.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET /v1/time HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut resp = String::new();
    std::io::Read::read_to_string(&mut s, &mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    // A broken configuration on SIGHUP is refused and recorded.
    std::fs::write(&cfg, config.replace("[server]", "[server]\nbogus = 1")).unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let ocsf = d.path().join("ocsf.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let text = std::fs::read_to_string(&ocsf).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let reloads = lines
            .iter()
            .filter(|l| l["api"]["operation"] == "config.reload")
            .count();
        if reloads >= 1 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    let types: Vec<String> = lines
        .iter()
        .map(|l| {
            l["unmapped"]["type"]
                .as_str()
                .or_else(|| l["metadata"]["event_code"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let text = serde_json::to_string(&lines).unwrap();
    assert!(text.contains("gateway.start"), "{text}");
    assert!(text.contains("UPSTREAM_UNAVAILABLE"), "{text}");
    let reload = lines
        .iter()
        .find(|l| l["api"]["operation"] == "config.reload")
        .unwrap_or_else(|| panic!("no reload record in {types:?}: {text}"));
    assert_eq!(reload["status_id"], 2, "{reload}");
    assert!(lines
        .iter()
        .all(|l| l["metadata"]["product"]["name"] == "Rampart"));
    let data = d.path().join("data");
    let out = ok(&["audit", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(out.contains("test.example/audit"), "{out}");
    let stops = search(data.to_str().unwrap(), &["--type", "gateway.stop"]);
    assert_eq!(stops.len(), 1);
}
