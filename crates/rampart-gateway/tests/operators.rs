//! Operator sign-in on the real admin listener (TLS, SQLite store, audit
//! trail) with a software WebAuthn authenticator: enrolment with a
//! one-time token, sign-in, sessions guarding the kill switch, and every
//! ceremony failure answering with its problem code.
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

use std::net::SocketAddr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use common::authn::*;
use common::*;
use http_body_util::Full;
use rampart_auth::webauthn_soft::SoftAuthenticator;
use rampart_gateway::admin::operators::{new_token, token_hash};
use rampart_store::{AnyStore, EnrolmentToken, Operator, SqliteStore, Store as _};
use serde_json::{json, Value};

const RP: &str = "admin.test";
const ORIGIN: &str = "https://admin.test";

// ------------------------------------------------ software authenticator

type Authenticator = SoftAuthenticator;

fn p256(id: u8) -> Authenticator {
    SoftAuthenticator::p256(vec![id; 16], RP, ORIGIN)
}

fn ed25519(id: u8) -> Authenticator {
    SoftAuthenticator::ed25519(vec![id; 32], RP, ORIGIN)
}

// ------------------------------------------------------------ harness

struct T {
    e: Env,
    admin: SocketAddr,
    store: AnyStore,
    w: Arc<HeldWriter>,
    _dir: tempfile::TempDir,
}

async fn setup(operators_extra: &str) -> T {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let w = Arc::new(HeldWriter::default());
    let extra = format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[admin.operators]\nrp_id = \"{RP}\"\norigins = [\"{ORIGIN}\"]\n{operators_extra}\n\n[storage]\ndata_dir = \"{}\"\n",
        dir.path().display()
    );
    let e = env_store(
        EXCHANGE_ROUTES,
        &extra,
        Some(auditor(
            w.clone(),
            rampart_core::config::AuditOnFull::Reject,
        )),
        Some(store.clone()),
    )
    .await;
    let admin = e._g.admin_addr.unwrap();
    T {
        e,
        admin,
        store,
        w,
        _dir: dir,
    }
}

impl T {
    async fn req(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = http::Request::builder().method(method).uri(path);
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .unwrap();
        send(&self.e.pki, self.admin, false, req).await
    }
    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.req("POST", path, Some(&body.to_string()), &[]).await
    }
    /// Creates an operator and a token valid for `ttl_ms`; the token.
    async fn operator(&self, name: &str, ttl_ms: i64) -> String {
        if self.store.get_operator(name).await.is_err() {
            self.store
                .create_operator(&Operator {
                    name: name.into(),
                    user_handle: vec![7; 16],
                    created_ms: now_ms(),
                    disabled: false,
                    disabled_ms: None,
                })
                .await
                .unwrap();
        }
        self.token(name, ttl_ms).await
    }
    async fn token(&self, name: &str, ttl_ms: i64) -> String {
        let token = new_token().unwrap().to_string();
        self.store
            .put_enrolment_token(&EnrolmentToken {
                token_hash: token_hash(&token),
                operator: name.into(),
                created_ms: now_ms(),
                expires_ms: now_ms() + ttl_ms,
            })
            .await
            .unwrap();
        token
    }
    async fn register(&self, a: &Authenticator, name: &str, token: &str) -> Resp {
        let start = self
            .post(
                "/v1/operators/register/start",
                &json!({"operator": name, "token": token}),
            )
            .await;
        if start.status != 200 {
            return start;
        }
        let opts = start.json();
        self.post(
            "/v1/operators/register/finish",
            &json!({"ceremony": opts["ceremony"], "credential": a.create(&opts)}),
        )
        .await
    }
    async fn login(&self, a: &mut Authenticator, name: &str) -> Resp {
        let start = self
            .post("/v1/operators/login/start", &json!({"operator": name}))
            .await;
        assert_eq!(start.status, 200, "{:?}", start.body);
        let opts = start.json();
        self.post(
            "/v1/operators/login/finish",
            &json!({"ceremony": opts["ceremony"], "credential": a.get(&opts)}),
        )
        .await
    }
    async fn session(&self, a: &mut Authenticator, name: &str) -> String {
        let r = self.login(a, name).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.json()["session"].as_str().unwrap().to_owned()
    }
    async fn engage(&self, headers: &[(&str, &str)]) -> Resp {
        self.req(
            "POST",
            "/v1/kill-switch?target=account:demo&reason=test",
            None,
            headers,
        )
        .await
    }
}

fn bearer(s: &str) -> String {
    format!("Bearer {s}")
}

fn assert_problem(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn register_login_and_engage_the_kill_switch_with_a_session() {
    let t = setup("").await;
    // No operator yet: the mutating endpoints stay open (as before).
    let r = t.engage(&[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = t
        .req(
            "POST",
            "/v1/kill-switch/release?target=account:demo",
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);

    // Enrol alice with a one-time token.
    let token = t.operator("alice", 60_000).await;
    let mut a = p256(1);
    let r = t.register(&a, "alice", &token).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.json()["operator"], "alice");

    // From now on a session is required; reads stay open.
    let r = t.engage(&[]).await;
    assert_problem(&r, 401, "OPERATOR_AUTH_REQUIRED");
    for path in ["/v1/abuse/unlock?all=1", "/v1/risk/trust?prefix=10.0.0.0/8"] {
        let r = t.req("POST", path, None, &[]).await;
        assert_problem(&r, 401, "OPERATOR_AUTH_REQUIRED");
    }
    let r = t.engage(&[("authorization", "Bearer not-a-session")]).await;
    assert_problem(&r, 401, "OPERATOR_AUTH_REQUIRED");
    for path in ["/v1/kill-switch", "/healthz", "/v1/abuse"] {
        assert_eq!(t.req("GET", path, None, &[]).await.status, 200, "{path}");
    }

    // Sign in: the session comes back once, as JSON and as a cookie.
    let r = t.login(&mut a, "alice").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    let session = v["session"].as_str().unwrap().to_owned();
    assert_eq!(URL_SAFE_NO_PAD.decode(&session).unwrap().len(), 32);
    assert!(v["expires_ms"].as_i64().unwrap() > now_ms());
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    for part in [
        "rampart_admin=",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }

    // The session engages the kill switch; the audit names alice.
    let r = t.engage(&[("authorization", &bearer(&session))]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(String::from_utf8_lossy(&r.body).contains("\"engaged\":true"));
    let ev =
        t.w.events()
            .into_iter()
            .rev()
            .find(|e| e.action == "KillSwitchEngage")
            .unwrap();
    assert_eq!(ev.actor.id, "alice");
    assert!(t
        .w
        .events()
        .iter()
        .any(|e| e.action == "OperatorLogin" && e.event_type == "auth.success"));
    // No token or session in the audit trail.
    let all = format!("{:?}", t.w.entries.lock());
    let raw: Vec<String> =
        t.w.entries
            .lock()
            .iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect();
    assert!(
        !raw.concat().contains(&session) && !raw.concat().contains(&token),
        "{all}"
    );

    let r = t
        .req(
            "GET",
            "/v1/operators/me",
            None,
            &[("authorization", &bearer(&session))],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["operator"].clone()),
        (200, json!("alice"))
    );

    // The cookie works only with the CSRF header.
    let c = format!("rampart_admin={session}");
    let r = t
        .req(
            "POST",
            "/v1/kill-switch/release?target=account:demo",
            None,
            &[("cookie", &c)],
        )
        .await;
    assert_problem(&r, 401, "OPERATOR_AUTH_REQUIRED");
    let r = t
        .req(
            "POST",
            "/v1/kill-switch/release?target=account:demo",
            None,
            &[("cookie", &c), ("x-rampart-csrf", "1")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Sign out: the session is gone.
    let r = t
        .req(
            "POST",
            "/v1/operators/logout",
            None,
            &[("authorization", &bearer(&session))],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = t.engage(&[("authorization", &bearer(&session))]).await;
    assert_problem(&r, 401, "OPERATOR_AUTH_REQUIRED");

    // An Ed25519 authenticator enrols and signs in too.
    let token = t.token("alice", 60_000).await;
    let mut ed = ed25519(2);
    assert_eq!(t.register(&ed, "alice", &token).await.status, 201);
    let s2 = t.session(&mut ed, "alice").await;
    assert_eq!(
        t.engage(&[("authorization", &bearer(&s2))]).await.status,
        200
    );
}

#[tokio::test]
async fn ceremony_failures_answer_with_problem_codes() {
    let t = setup("").await;
    let token = t.operator("bob", 60_000).await;

    // Wrong origin and wrong RP id at registration; the token is not spent.
    let mut evil = p256(3);
    evil.origin = "https://evil.example".into();
    assert_problem(
        &t.register(&evil, "bob", &token).await,
        401,
        "OPERATOR_AUTH_FAILED",
    );
    let mut other_rp = p256(3);
    other_rp.rp = "evil.example".into();
    assert_problem(
        &t.register(&other_rp, "bob", &token).await,
        401,
        "OPERATOR_AUTH_FAILED",
    );
    // A token for another operator, or an unknown one.
    assert_problem(
        &t.register(&p256(3), "carol", &token).await,
        401,
        "OPERATOR_AUTH_FAILED",
    );
    assert_problem(
        &t.register(&p256(3), "bob", "nope").await,
        401,
        "OPERATOR_AUTH_FAILED",
    );

    // A replayed challenge: the ceremony is single use.
    let mut a = p256(4);
    let start = t
        .post(
            "/v1/operators/register/start",
            &json!({"operator": "bob", "token": token}),
        )
        .await
        .json();
    let finish = json!({"ceremony": start["ceremony"], "credential": a.create(&start)});
    assert_eq!(
        t.post("/v1/operators/register/finish", &finish)
            .await
            .status,
        201
    );
    assert_problem(
        &t.post("/v1/operators/register/finish", &finish).await,
        401,
        "OPERATOR_AUTH_FAILED",
    );

    // The token was spent: reusing it fails at start.
    assert_problem(
        &t.register(&p256(5), "bob", &token).await,
        401,
        "OPERATOR_AUTH_FAILED",
    );
    // An expired token.
    let expired = t.token("bob", -1).await;
    assert_problem(
        &t.register(&p256(5), "bob", &expired).await,
        401,
        "OPERATOR_AUTH_FAILED",
    );

    // Sign-in: a replayed assertion (the same ceremony twice).
    let opts = t
        .post("/v1/operators/login/start", &json!({"operator": "bob"}))
        .await
        .json();
    let body = json!({"ceremony": opts["ceremony"], "credential": a.get(&opts)});
    assert_eq!(
        t.post("/v1/operators/login/finish", &body).await.status,
        200
    );
    assert_problem(
        &t.post("/v1/operators/login/finish", &body).await,
        401,
        "OPERATOR_AUTH_FAILED",
    );

    // Wrong origin and wrong RP id at sign-in.
    let mut wrong = a.clone_device();
    wrong.origin = "https://evil.example".into();
    wrong.count = 100;
    assert_problem(
        &t.login(&mut wrong, "bob").await,
        401,
        "OPERATOR_AUTH_FAILED",
    );
    let mut wrong = a.clone_device();
    wrong.rp = "evil.example".into();
    wrong.count = 100;
    assert_problem(
        &t.login(&mut wrong, "bob").await,
        401,
        "OPERATOR_AUTH_FAILED",
    );

    // A cloned authenticator: its counter does not grow past the original's.
    let mut clone = a.clone_device();
    assert_eq!(t.login(&mut a, "bob").await.status, 200);
    assert_eq!(t.login(&mut a, "bob").await.status, 200);
    let r = t.login(&mut clone, "bob").await;
    assert_problem(&r, 401, "OPERATOR_AUTH_FAILED");
    assert!(t
        .w
        .events()
        .iter()
        .any(|e| format!("{e:?}").contains("cloned authenticator")));

    // An unknown operator gets plausible options, stable per name, then fails.
    let o1 = t
        .post("/v1/operators/login/start", &json!({"operator": "mallory"}))
        .await;
    assert_eq!(o1.status, 200);
    let o1 = o1.json();
    let o2 = t
        .post("/v1/operators/login/start", &json!({"operator": "mallory"}))
        .await
        .json();
    assert_eq!(
        o1["publicKey"]["allowCredentials"],
        o2["publicKey"]["allowCredentials"]
    );
    assert_eq!(
        o1["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(o1["publicKey"]["rpId"], RP);
    assert_eq!(o1["publicKey"]["userVerification"], "required");
    let body = json!({"ceremony": o1["ceremony"], "credential": p256(9).get(&o1)});
    let unknown = t.post("/v1/operators/login/finish", &body).await;
    assert_problem(&unknown, 401, "OPERATOR_AUTH_FAILED");
    // The same detail as a known operator's failure.
    let known = t.login(&mut p256(9), "bob").await;
    assert_eq!(unknown.json()["detail"], known.json()["detail"]);

    // A disabled operator: its session stops working, it cannot sign in.
    let session = t.session(&mut a, "bob").await;
    assert_eq!(
        t.engage(&[("authorization", &bearer(&session))])
            .await
            .status,
        200
    );
    t.store.disable_operator("bob", now_ms()).await.unwrap();
    assert_problem(
        &t.engage(&[("authorization", &bearer(&session))]).await,
        401,
        "OPERATOR_AUTH_REQUIRED",
    );
    assert_problem(&t.login(&mut a, "bob").await, 401, "OPERATOR_AUTH_FAILED");
    // Every credential revoked: the admin side stays locked.
    assert_problem(&t.engage(&[]).await, 401, "OPERATOR_AUTH_REQUIRED");

    // Oversized, malformed, unknown fields, wrong content type.
    let big = json!({"operator": "x".repeat(20 * 1024)});
    assert_problem(
        &t.post("/v1/operators/login/start", &big).await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    let r = t
        .req(
            "POST",
            "/v1/operators/login/start",
            Some("{\"operator\":"),
            &[],
        )
        .await;
    assert_problem(&r, 400, "BAD_REQUEST");
    let r = t
        .post(
            "/v1/operators/login/start",
            &json!({"operator": "bob", "admin": true}),
        )
        .await;
    assert_problem(&r, 400, "BAD_REQUEST");
    let r = t
        .post(
            "/v1/operators/login/start",
            &json!({"operator": "has space"}),
        )
        .await;
    assert_problem(&r, 400, "BAD_REQUEST");
    let r = t
        .req(
            "POST",
            "/v1/operators/login/start",
            None,
            &[("content-type", "text/plain")],
        )
        .await;
    assert_problem(&r, 400, "BAD_REQUEST");
    let r = t.req("GET", "/v1/operators/login/start", None, &[]).await;
    assert_problem(&r, 405, "METHOD_NOT_ALLOWED");
    // Failures are audited.
    assert!(t
        .w
        .events()
        .iter()
        .any(|e| e.event_type == "auth.failure" && e.action == "OperatorRegister"));
}

#[tokio::test]
async fn an_idle_session_expires() {
    let t = setup("session_idle = \"1s\"\nsession_ttl = \"1h\"").await;
    let token = t.operator("dana", 60_000).await;
    let mut a = p256(6);
    assert_eq!(t.register(&a, "dana", &token).await.status, 201);
    let s = t.session(&mut a, "dana").await;
    let auth = bearer(&s);
    let me = [("authorization", auth.as_str())];
    assert_eq!(
        t.req("GET", "/v1/operators/me", None, &me).await.status,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let r = t.req("GET", "/v1/operators/me", None, &me).await;
    assert_problem(&r, 401, "OPERATOR_AUTH_REQUIRED");
}

#[tokio::test]
async fn the_sign_in_page_is_self_contained() {
    let t = setup("").await;
    let r = t.req("GET", "/operator", None, &[]).await;
    assert_eq!(r.status, 200);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("navigator.credentials.get"));
    assert!(!body.contains("<script src"));
    // Without a store the endpoints say so rather than pretend.
    let e = env_with("\n[admin]\nlisten = \"127.0.0.1:0\"\n").await;
    let r = send(
        &e.pki,
        e._g.admin_addr.unwrap(),
        false,
        post_json("/v1/operators/login/start", "{\"operator\":\"a\"}"),
    )
    .await;
    assert_problem(&r, 503, "AUTH_UNAVAILABLE");
}
