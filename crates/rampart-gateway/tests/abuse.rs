//! Failed-authentication defense and adaptive risk through the real
//! gateway, over real TLS, from many real source addresses (Linux routes
//! all of 127.0.0.0/8 to loopback, so a client can bind 127.x.y.z):
//! credential stuffing from 200 IPs over 1,000 key ids is detected and
//! throttled while a legitimate key keeps working; a pair locks after 10
//! failures without locking the victim key; a key that suddenly trades
//! from a new network at 10× its usual size is stepped up, a steady one
//! never.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    missing_docs,
    reason = "test code"
)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use common::authn::*;
use common::*;
use http::Method;
use rampart_auth::rfc9421::SigningKey;
use rampart_auth::Scheme;
use zeroize::Zeroizing;

/// A plain-HTTP webhook receiver that verifies each alert's signature and
/// keeps the verified alerts' kinds.
async fn webhook(secret: Vec<u8>) -> (std::net::SocketAddr, Arc<parking_lot::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let kinds = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let k2 = kinds.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (kinds, secret) = (k2.clone(), secret.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (kinds, secret) = (kinds.clone(), secret.clone());
                        async move {
                            let sig = req.headers()[rampart_shield::alert::SIGNATURE_HEADER]
                                .to_str()
                                .unwrap()
                                .to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_secs();
                            rampart_shield::alert::verify_webhook(
                                &secret,
                                &sig,
                                &body,
                                now,
                                std::time::Duration::from_secs(300),
                            )
                            .unwrap();
                            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            kinds.lock().push(v["kind"].as_str().unwrap().to_owned());
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, kinds)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn get_signed(
    path: &str,
    key_id: &str,
    sk: &SigningKey,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    signed(
        Method::GET,
        path,
        "",
        key_id,
        Scheme::Rfc9421HmacSha256,
        sk,
        now_ms() / 1000,
        &nonce(),
    )
}

fn order_with_qty(
    cid: &str,
    qty: &str,
    key_id: &str,
    sk: &SigningKey,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let body = order(cid).replace("\"qty\":\"0.01\"", &format!("\"qty\":\"{qty}\""));
    let mut req = signed(
        Method::POST,
        "/v1/orders",
        &body,
        key_id,
        Scheme::Rfc9421HmacSha256,
        sk,
        now_ms() / 1000,
        &nonce(),
    );
    req.headers_mut()
        .insert("user-agent", "desk-algo/2.1".parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuffing_from_200_ips_over_1000_keys_is_throttled_while_a_real_key_works() {
    // Alerts go to a signed webhook.
    let secret = b"0123456789abcdef0123456789abcdef-stuffing".to_vec();
    let (hook, kinds) = webhook(secret.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("alerts.key");
    std::fs::write(&key_file, &secret).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let e = Arc::new(
        env_with(&format!(
            "\n[alerts]\nwebhook = \"http://{hook}/hook\"\nsecret_file = \"{}\"\n",
            key_file.display()
        ))
        .await,
    );
    let (sk, km) = hmac_key();
    e.add(record("real-key", "demo", Scheme::Rfc9421HmacSha256, km));
    let home = ip("127.0.0.1");
    let ok = send_from(
        &e.pki,
        e.addr,
        home,
        get_signed("/v1/account", "real-key", &sk),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));

    // 200 sources in 50 /24s; 1,000 guessed key ids; a wrong secret.
    let wrong = SigningKey::Hmac(Zeroizing::new(vec![9u8; 32]));
    let sources: Vec<IpAddr> = (0..200)
        .map(|i| ip(&format!("127.1.{}.{}", i / 4, i % 4 + 1)))
        .collect();
    let mut statuses = Vec::new();
    let mut legit = Vec::new();
    let attempts = 2_000usize;
    for batch in 0..(attempts / 20) {
        let mut tasks = Vec::new();
        for j in 0..20 {
            let n = batch * 20 + j;
            let src = sources[n % sources.len()];
            let key_id = format!("guess-{}", n % 1_000);
            let req = get_signed("/v1/account", &key_id, &wrong);
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                let r = send_from(&e.pki, e.addr, src, req).await;
                (
                    n,
                    r.status.as_u16(),
                    if r.status == 429 {
                        r.json()["limit"].as_str().map(str::to_owned)
                    } else {
                        None
                    },
                )
            }));
        }
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        // The legitimate key, from its usual address, in the middle of it.
        let r = send_from(
            &e.pki,
            e.addr,
            home,
            get_signed("/v1/account", "real-key", &sk),
        )
        .await;
        legit.push(r.status.as_u16());
    }
    let rt = e._g.gateway.runtime();
    let status = rt.defense.guard().unwrap().status();
    assert!(status.under_attack, "attack not detected: {status:?}");
    let reached = statuses.iter().filter(|(_, s, _)| *s == 401).count();
    let throttled = statuses
        .iter()
        .filter(|(_, s, l)| *s == 429 && l.as_deref() == Some("pre-auth"))
        .count();
    let first_throttle = statuses
        .iter()
        .filter(|(_, s, _)| *s == 429)
        .map(|(n, _, _)| *n)
        .min()
        .unwrap_or(attempts);
    println!(
        "stuffing: {attempts} attempts from 200 IPs over 1000 key ids: {reached} reached verification (401), {throttled} throttled before it (429 pre-auth), first throttled at attempt {first_throttle}; guard: {} distinct failing IPs, {} distinct key ids, under attack = {}; legitimate requests: {} ok of {}",
        status.distinct_failing_ips,
        status.distinct_failing_keys,
        status.under_attack,
        legit.iter().filter(|s| **s == 200).count(),
        legit.len()
    );
    // Detection needs 50 IPs and 100 key ids (about 100 attempts); after it
    // an unknown source gets 2 attempts per 10 minutes, so at most
    // 100 + 200 × 2 attempts (plus one batch in flight) reach verification.
    assert!(
        reached <= 100 + 400 + 20,
        "{reached} attempts reached verification"
    );
    assert_eq!(reached + throttled, attempts);
    assert!(
        legit.iter().all(|s| *s == 200),
        "the real key was hurt: {legit:?}"
    );
    // The detection reached the webhook, signed.
    for _ in 0..100 {
        if kinds.lock().iter().any(|k| k == "credential_stuffing") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let got = kinds.lock().clone();
    assert!(
        got.iter().any(|k| k == "credential_stuffing"),
        "alerts received: {got:?}"
    );
    assert!(statuses.iter().all(|(_, s, _)| *s == 401 || *s == 429));
}

#[tokio::test]
async fn a_pair_locks_after_10_failures_without_locking_the_victim_key() {
    let e = env_with("\n[admin]\nlisten = \"127.0.0.1:0\"\n").await;
    let (sk, km) = hmac_key();
    e.add(record("victim", "demo", Scheme::Rfc9421HmacSha256, km));
    let attacker = ip("127.2.0.9");
    let wrong = SigningKey::Hmac(Zeroizing::new(vec![1u8; 32]));
    for i in 0..10 {
        let r = send_from(
            &e.pki,
            e.addr,
            attacker,
            get_signed("/v1/account", "victim", &wrong),
        )
        .await;
        assert_eq!(r.status, 401, "attempt {i}");
        assert_eq!(r.code(), "SIGNATURE_INVALID");
    }
    // The 11th attempt is refused before verification, even with the right
    // secret: the pair (attacker IP, key id) is locked for 30 minutes.
    let r = send_from(
        &e.pki,
        e.addr,
        attacker,
        get_signed("/v1/account", "victim", &sk),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "LOCKED_OUT");
    assert_eq!(r.json()["lock"], "pair");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1700..=1800).contains(&retry), "retry-after {retry}");
    // The real owner, from elsewhere, is not locked out.
    let r = send_from(
        &e.pki,
        e.addr,
        ip("127.0.0.1"),
        get_signed("/v1/account", "victim", &sk),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // An operator unlocks the pair on the admin listener (audited); the
    // attacker address with the right secret then passes.
    let admin = e._g.admin_addr.unwrap();
    let status = admin_post(&e.pki, admin, "/v1/abuse/unlock?ip=127.2.0.9&key=victim").await;
    assert_eq!(status.0, 200, "{}", status.1);
    assert!(status.1.contains("\"unlocked\":1"), "{}", status.1);
    let r = send_from(
        &e.pki,
        e.addr,
        attacker,
        get_signed("/v1/account", "victim", &sk),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let view = admin_post(&e.pki, admin, "/v1/abuse/unlock?bogus=1").await;
    assert_eq!(view.0, 400);
}

#[tokio::test]
async fn new_network_at_10x_size_is_stepped_up_and_a_steady_key_never_is() {
    let e = env_with(
        r#"
[risk]
learning_requests = 20
learning_period = "1ms"
"#,
    )
    .await;
    let (sk, km) = hmac_key();
    e.add(record("desk", "demo", Scheme::Rfc9421HmacSha256, km));
    e.add(record(
        "steady",
        "demo2",
        Scheme::Rfc9421HmacSha256,
        hmac_key().1,
    ));
    let home = ip("127.0.0.1");
    // Both keys build a profile: 0.01 BTC orders from 127.0.0.1.
    for i in 0..25 {
        for key in ["desk", "steady"] {
            let r = send_from(
                &e.pki,
                e.addr,
                home,
                order_with_qty(&format!("{key}-{i}"), "0.01", key, &sk),
            )
            .await;
            assert_eq!(
                r.status,
                201,
                "{key} order {i}: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    // The desk key suddenly trades 10× its size from a network it never used.
    let r = send_from(
        &e.pki,
        e.addr,
        ip("127.3.0.7"),
        order_with_qty("desk-odd", "0.10", "desk", &sk),
    )
    .await;
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.code(), "MFA_REQUIRED");
    let v = r.json();
    assert!(v["risk_score"].as_u64().unwrap() >= 50, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("new_prefix") && detail.contains("order_size"),
        "{detail}"
    );
    // The steady key keeps trading as usual and is never stepped up.
    for i in 25..40 {
        let r = send_from(
            &e.pki,
            e.addr,
            home,
            order_with_qty(&format!("steady-{i}"), "0.01", "steady", &sk),
        )
        .await;
        assert_eq!(
            r.status,
            201,
            "steady order {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[tokio::test]
async fn a_sensitive_request_right_after_a_credential_change_is_stepped_up() {
    // ListOrders stands in for an address-book change here; PlaceOrder for
    // a withdrawal (scored with the stricter thresholds).
    let e = env_with(
        r#"
[risk]
learning_requests = 5
learning_period = "1ms"
sensitive_actions = ["PlaceOrder"]
credential_change_actions = ["ListOrders"]
"#,
    )
    .await;
    let (sk, km) = hmac_key();
    e.add(record("acct-key", "demo", Scheme::Rfc9421HmacSha256, km));
    let home = ip("127.0.0.1");
    for i in 0..8 {
        let r = send_from(
            &e.pki,
            e.addr,
            home,
            order_with_qty(&format!("cc-{i}"), "0.01", "acct-key", &sk),
        )
        .await;
        assert_eq!(
            r.status,
            201,
            "order {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = send_from(
        &e.pki,
        e.addr,
        home,
        get_signed("/v1/orders", "acct-key", &sk),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send_from(
        &e.pki,
        e.addr,
        home,
        order_with_qty("cc-after", "0.01", "acct-key", &sk),
    )
    .await;
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.code(), "MFA_REQUIRED");
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("recent_credential_change"));
}

#[tokio::test]
async fn limit_lockout_and_validation_refusals_are_audited_with_their_reason() {
    let w = Arc::new(HeldWriter::default());
    let routes = EXCHANGE_ROUTES.replace(
        "action = \"PlaceOrder\"",
        &format!(
            "action = \"PlaceOrder\"\nschema = \"{}/../rampart-shield/corpus/schemas/PlaceOrder.json\"",
            env!("CARGO_MANIFEST_DIR")
        ),
    );
    let e = env_routes(
        &routes,
        "\n[[limits.rules]]\nname = \"time-ip\"\nby = [\"ip\"]\nrate = 1\nper = \"1h\"\nactions = [\"GetTime\"]\n",
        Some(auditor(w.clone(), rampart_core::config::AuditOnFull::Reject)),
    )
    .await;
    let (sk, km) = hmac_key();
    e.add(record("audited", "demo", Scheme::Rfc9421HmacSha256, km));
    // A rate-limit refusal.
    assert_eq!(
        send(&e.pki, e.addr, false, get("/v1/time")).await.status,
        200
    );
    assert_eq!(
        send(&e.pki, e.addr, false, get("/v1/time")).await.status,
        429
    );
    // A validation refusal.
    let sqli = order("a1").replace('}', ",\"note\":\"1' OR '1'='1' --\"}");
    let req = signed(
        Method::POST,
        "/v1/orders",
        &sqli,
        "audited",
        Scheme::Rfc9421HmacSha256,
        &sk,
        now_ms() / 1000,
        &nonce(),
    );
    assert_eq!(send(&e.pki, e.addr, false, req).await.status, 403);
    // A lockout.
    let wrong = SigningKey::Hmac(Zeroizing::new(vec![3u8; 32]));
    let src = ip("127.4.0.2");
    for _ in 0..10 {
        let r = send_from(
            &e.pki,
            e.addr,
            src,
            get_signed("/v1/account", "audited", &wrong),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let r = send_from(
        &e.pki,
        e.addr,
        src,
        get_signed("/v1/account", "audited", &sk),
    )
    .await;
    assert_eq!(r.status, 429);

    let evs = w.events();
    let find = |code: &str| {
        evs.iter()
            .find(|e| e.reason.as_deref() == Some(code))
            .unwrap_or_else(|| panic!("no {code} record in {evs:#?}"))
            .clone()
    };
    let limited = find("RATE_LIMITED");
    assert_eq!(limited.event_type, "request.rejected");
    assert_eq!(limited.decision, rampart_audit::Decision::Deny);
    let blocked = find("REQUEST_BLOCKED");
    let payload = serde_json::to_string(&blocked.payload).unwrap();
    assert!(
        payload.contains("sqli") && payload.contains("/body/note"),
        "{payload}"
    );
    assert!(
        !payload.contains("'1'='1'"),
        "the raw value is not recorded: {payload}"
    );
    let locked = find("LOCKED_OUT");
    assert_eq!(locked.event_type, "auth.failure");
    assert_eq!(locked.source_ip, Some(src));
    assert!(serde_json::to_string(&locked.payload)
        .unwrap()
        .contains("pair"));
}
