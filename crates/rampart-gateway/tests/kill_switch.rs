//! The kill switch through the real gateway: an operator stops new orders
//! for one account or everyone on the admin listener; orders get
//! `403 KILL_SWITCH` and never reach the exchange, cancels and reads keep
//! working, the switch is audited, survives a restart, and releases.
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

use std::sync::Arc;

use common::authn::*;
use common::*;
use http::Method;
use rampart_auth::Scheme;

fn place(
    cid: &str,
    key: &str,
    sk: &rampart_auth::rfc9421::SigningKey,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    signed(
        Method::POST,
        "/v1/orders",
        &order(cid),
        key,
        Scheme::Rfc9421HmacSha256,
        sk,
        now_ms() / 1000,
        &nonce(),
    )
}

#[tokio::test]
async fn an_engaged_switch_stops_new_orders_only_and_persists() {
    let data = tempfile::tempdir().unwrap();
    let w = Arc::new(HeldWriter::default());
    let extra = format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[storage]\ndata_dir = \"{}\"\n",
        data.path().display()
    );
    let e = env_full(
        &extra,
        Some(auditor(
            w.clone(),
            rampart_core::config::AuditOnFull::Reject,
        )),
    )
    .await;
    let (sk, km) = hmac_key();
    e.add(record("ka", "demo", Scheme::Rfc9421HmacSha256, km));
    e.add(record(
        "kb",
        "demo2",
        Scheme::Rfc9421HmacSha256,
        hmac_key().1,
    ));
    let admin = e._g.admin_addr.unwrap();

    assert_eq!(
        send(&e.pki, e.addr, false, place("k1", "ka", &sk))
            .await
            .status,
        201
    );
    let (st, body) = admin_post(
        &e.pki,
        admin,
        "/v1/kill-switch?target=account:demo&reason=runaway%20algo%20desk%203",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"engaged\":true"), "{body}");

    let r = send(&e.pki, e.addr, false, place("k2", "ka", &sk)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "KILL_SWITCH");
    let v = r.json();
    assert_eq!(v["scope"], "account");
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .contains("runaway algo desk 3"));
    assert_eq!(
        e.orders("demo"),
        1,
        "the stopped order never reached the exchange"
    );
    // Reads keep working for the stopped account; another account trades.
    let r = send(
        &e.pki,
        e.addr,
        false,
        signed(
            Method::GET,
            "/v1/orders",
            "",
            "ka",
            Scheme::Rfc9421HmacSha256,
            &sk,
            now_ms() / 1000,
            &nonce(),
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        send(&e.pki, e.addr, false, place("k3", "kb", &sk))
            .await
            .status,
        201
    );

    // Persisted: a new gateway on the same data dir starts engaged.
    let saved = std::fs::read_to_string(data.path().join("kill-switch.json")).unwrap();
    assert!(
        saved.contains("demo") && saved.contains("runaway"),
        "{saved}"
    );
    let reloaded =
        rampart_gateway::kill::KillSwitch::load(Some(data.path()), vec!["PlaceOrder".into()])
            .unwrap();
    assert!(reloaded.check("PlaceOrder", "any", "demo").is_err());

    // Global, then released.
    let (st, _) = admin_post(
        &e.pki,
        admin,
        "/v1/kill-switch?target=global&reason=market%20halt",
    )
    .await;
    assert_eq!(st, 200);
    let r = send(&e.pki, e.addr, false, place("k4", "kb", &sk)).await;
    assert_eq!(r.code(), "KILL_SWITCH");
    assert_eq!(r.json()["scope"], "global");
    for t in ["global", "account:demo"] {
        let (st, body) = admin_post(
            &e.pki,
            admin,
            &format!("/v1/kill-switch/release?target={t}"),
        )
        .await;
        assert_eq!(st, 200, "{body}");
        assert!(body.contains("\"changed\":true"), "{body}");
    }
    assert_eq!(
        send(&e.pki, e.addr, false, place("k5", "ka", &sk))
            .await
            .status,
        201
    );
    let (st, _) = admin_post(&e.pki, admin, "/v1/kill-switch?target=planet:x").await;
    assert_eq!(st, 400);

    // Audited: the operator's actions and the refused orders.
    let evs = w.events();
    assert!(evs.iter().any(|e| e.action == "KillSwitchEngage"));
    assert!(evs.iter().any(|e| e.action == "KillSwitchRelease"));
    let refused = evs
        .iter()
        .filter(|e| e.reason.as_deref() == Some("KILL_SWITCH"))
        .count();
    assert_eq!(refused, 2);
}
