//! The binary from the outside: `config check` exit codes and messages,
//! `serve` reloading on SIGHUP (valid and invalid files), and `demo` end to end.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

#[test]
fn config_check_reports_every_error_and_exits_64() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.toml");
    std::fs::write(
        &f,
        r#"[server]
listen = "nope"
max_body_bytes = 0
[server.tls]
cert = "missing.pem"
key = "missing.key"
[upstreams.a]
endpoints = []
colour = "blue"
[[routes]]
method = "GET"
path = "/x"
upstream = "b"
action = "X"
scope = "public"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        ":2: server.listen:",
        ":3: server.max_body_bytes:",
        ":5: server.tls.cert:",
        ":6: server.tls.key:",
        ":9: upstreams.a.colour: unknown field",
        ":13: routes[0].upstream: upstream `b` is not defined",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }

    let good = d.path().join("good.toml");
    std::fs::write(
        &good,
        "[server]\nlisten = \"127.0.0.1:0\"\n[dangerous]\nplaintext = true\n[upstreams.a]\nendpoints = [\"127.0.0.1:1\"]\n[[routes]]\nmethod = \"GET\"\npath = \"/x\"\nupstream = \"a\"\naction = \"X\"\nscope = \"public\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 routes, 1 upstream pools)"));

    // `serve` refuses an invalid file before binding, with the same exit code.
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
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

    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if l.contains(needle) {
                    return l;
                }
            }
        }
        panic!("no line containing `{needle}`");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plain HTTP/1.1 request (the reload test runs under `dangerous.plaintext`).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    (status, out)
}

fn plain_config(upstream: SocketAddr, routes: &[(&str, &str)]) -> String {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[dangerous]\nplaintext = true\n[log]\nlevel = \"info\"\n[upstreams.ex]\nendpoints = [\"{upstream}\"]\n"
    );
    for (path, action) in routes {
        s.push_str(&format!(
            "[[routes]]\nmethod = \"GET\"\npath = \"{path}\"\nupstream = \"ex\"\naction = \"{action}\"\nscope = \"public\"\n"
        ));
    }
    s
}

fn start_exchange() -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = l.local_addr().unwrap();
    rt.spawn(demo_exchange::serve(
        l,
        demo_exchange::Exchange::new_seeded(),
        std::future::pending(),
    ));
    (addr, rt)
}

#[test]
fn sighup_applies_valid_config_and_refuses_invalid() {
    let (ex, _rt) = start_exchange();
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("rampart.toml");
    std::fs::write(&f, plain_config(ex, &[("/v1/time", "GetTime")])).unwrap();
    let p = Proc::spawn(&["serve", "--config", f.to_str().unwrap()]);
    p.wait_for("DANGEROUS");
    let line = p.wait_for("rampart listening");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr: SocketAddr = v["addr"].as_str().unwrap().parse().unwrap();

    assert_eq!(http_get(addr, "/v1/time").0, 200);
    let (status, body) = http_get(addr, "/v1/markets");
    assert_eq!(status, 404);
    assert!(body.contains("\"code\":\"NOT_FOUND\""));

    // Valid new config: swapped in.
    std::fs::write(
        &f,
        plain_config(
            ex,
            &[("/v1/time", "GetTime"), ("/v1/markets", "ListMarkets")],
        ),
    )
    .unwrap();
    p.signal("-HUP");
    p.wait_for("configuration reloaded");
    assert_eq!(http_get(addr, "/v1/markets").0, 200);

    // Invalid new config: refused, the old one keeps serving.
    std::fs::write(&f, "[server]\nlisten = 12\n").unwrap();
    p.signal("-HUP");
    let refused = p.wait_for("reload refused");
    assert!(refused.contains("server.listen"), "{refused}");
    assert_eq!(http_get(addr, "/v1/markets").0, 200);
    assert_eq!(http_get(addr, "/v1/time").0, 200);

    // SIGTERM drains and exits 0.
    let mut p = p;
    p.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// HTTPS GET with the demo CA, over HTTP/2.
fn https_get(ca_pem: &str, addr: SocketAddr, path: &str) -> (u16, http::Version, Vec<u8>) {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        let der = rustls::pki_types::CertificateDer::from(pem_to_der(ca_pem));
        roots.add(der).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        let (mut s, c) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(c);
        let req = http::Request::get(format!("https://127.0.0.1{path}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = s.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let version = resp.version();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, version, body)
    })
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64_decode(&b64)
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|a| *a == c).unwrap() as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[test]
fn demo_serves_markets_over_tls13_h2_and_writes_credentials() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("data");
    let args = [
        "demo",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    let p = Proc::spawn(&args);
    p.wait_for("Rampart demo is running");
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("demo-credentials.json")).unwrap()).unwrap();
    for k in [
        "gateway_url",
        "admin_url",
        "ca_cert_path",
        "account",
        "keys",
        "totp_secret_base32",
        "withdrawal_addresses",
    ] {
        assert!(creds.get(k).is_some(), "credentials lack `{k}`: {creds}");
    }
    let names: Vec<&str> = creds["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "trader-hmac",
            "trader-ed25519",
            "reader",
            "treasury",
            "binance-style",
            "kraken-style",
            "coinbase-style"
        ]
    );
    for k in creds["keys"].as_array().unwrap() {
        assert!(k["key_id"].as_str().unwrap().len() > 10);
        assert!(k["scopes"].as_array().is_some_and(|s| !s.is_empty()));
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("demo-credentials.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "credentials must be private");

    let ca = std::fs::read_to_string(creds["ca_cert_path"].as_str().unwrap()).unwrap();
    let gw: SocketAddr = creds["gateway_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let (status, version, body) = https_get(&ca, gw, "/v1/markets");
    assert_eq!(status, 200);
    assert_eq!(version, http::Version::HTTP_2);
    assert!(String::from_utf8_lossy(&body).contains("BTC-PERP"));

    let admin: SocketAddr = creds["admin_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let (status, _, body) = https_get(&ca, admin, "/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("rampart_requests_total{route=\"ListMarkets\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("rampart_upstream_healthy"), "{text}");
    assert!(
        text.contains("rampart_request_duration_seconds_bucket"),
        "{text}"
    );
    drop(p);

    // A second start reuses the data dir: same CA, same keys.
    let first_key = creds["keys"][0]["key_id"].clone();
    let p = Proc::spawn(&args);
    p.wait_for("Rampart demo is running");
    let creds2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("demo-credentials.json")).unwrap()).unwrap();
    assert_eq!(creds2["keys"][0]["key_id"], first_key);
    assert_eq!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), ca);
}
