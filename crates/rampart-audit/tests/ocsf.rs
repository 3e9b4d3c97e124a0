#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! OCSF mapping: one test per class (Authentication, Account Change, API
//! Activity), the common fields, the payload kept as stored (sealed stays
//! sealed), and the minimal record of an unparsable entry.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rampart_audit::event::types;
use rampart_audit::ocsf::{
    to_ocsf, OcsfClass, OcsfRecord, LOG_NAME, OCSF_VERSION, UNPARSABLE_TYPE,
};
use rampart_audit::{Actor, AuditEvent, ClockSync, Decision, PayloadValue, Timestamp};
use serde_json::{json, Value};

const T: i64 = 1_700_000_000_123_456;

fn now() -> Timestamp {
    Timestamp {
        micros: T,
        sync: ClockSync::Synced,
    }
}

fn ev(event_type: &str, actor: Actor, decision: Decision) -> AuditEvent {
    AuditEvent::new(
        now(),
        event_type,
        actor,
        "PlaceOrder",
        "/api/v3/order",
        decision,
    )
}

fn class_and_activity(v: &Value) -> (u64, u64, u64, u64) {
    (
        v["class_uid"].as_u64().unwrap(),
        v["category_uid"].as_u64().unwrap(),
        v["activity_id"].as_u64().unwrap(),
        v["type_uid"].as_u64().unwrap(),
    )
}

#[test]
fn authentication_success_and_common_fields() {
    let e = ev(types::AUTH_SUCCESS, Actor::key("k-123"), Decision::Allow)
        .account("acct-1")
        .source_ip("192.0.2.7".parse().unwrap())
        .request_id("req-9")
        .plain("scheme", "rfc9421");
    let v = to_ocsf(&e, 42);
    assert_eq!(class_and_activity(&v), (3002, 3, 1, 300_201));
    assert_eq!(v["class_name"], "Authentication");
    assert_eq!(v["activity_name"], "Logon");
    assert_eq!(v["type_name"], "Authentication: Logon");
    assert_eq!(v["time"], json!(T / 1000));
    assert_eq!(v["severity_id"], 1);
    assert_eq!(v["severity"], "Informational");
    assert_eq!(v["status_id"], 1);
    assert_eq!(v["status"], "Success");
    assert!(v.get("status_code").is_none());
    let user =
        json!({"uid": "k-123", "type": "API Key", "type_id": 99, "account": {"uid": "acct-1"}});
    assert_eq!(v["actor"]["user"], user);
    assert_eq!(v["user"], user);
    assert_eq!(v["src_endpoint"], json!({"ip": "192.0.2.7"}));
    assert_eq!(v["auth_protocol"], "rfc9421");
    assert_eq!(v["auth_protocol_id"], 99);
    assert_eq!(
        v["metadata"],
        json!({
            "version": OCSF_VERSION,
            "product": {"name": "Rampart", "vendor_name": "Rampart", "version": env!("CARGO_PKG_VERSION")},
            "uid": e.id,
            "sequence": 42,
            "log_name": LOG_NAME,
        })
    );
    assert_eq!(v["metadata"]["version"], "1.1.0");
    let u = &v["unmapped"];
    assert_eq!(u["type"], "auth.success");
    assert_eq!(u["clock_sync"], "synced");
    assert_eq!(u["time_us"], json!(T));
    assert_eq!(u["decision"], "allow");
    assert_eq!(u["request_id"], "req-9");
    assert_eq!(u["payload"], json!({"scheme": {"plain": "rfc9421"}}));
}

#[test]
fn authentication_failure_of_an_anonymous_claim() {
    let mut e = ev(
        types::AUTH_FAILURE,
        Actor::anonymous("claimed-key"),
        Decision::Deny,
    )
    .reason("AUTH_BAD_SIGNATURE");
    e.clock = ClockSync::Unsynced;
    let v = to_ocsf(&e, 7);
    assert_eq!(class_and_activity(&v), (3002, 3, 1, 300_201));
    assert_eq!(v["status_id"], 2);
    assert_eq!(v["status"], "Failure");
    assert_eq!(v["status_code"], "AUTH_BAD_SIGNATURE");
    assert_eq!(v["severity_id"], 3);
    assert_eq!(v["severity"], "Medium");
    assert_eq!(
        v["user"],
        json!({"uid": "claimed-key", "type": "Unknown", "type_id": 0})
    );
    // No address: no `src_endpoint` (it is optional in Authentication).
    assert!(v.get("src_endpoint").is_none());
    assert_eq!(v["unmapped"]["clock_sync"], "unsynced");
    assert_eq!(v["unmapped"]["actor_kind"], "anonymous");
}

#[test]
fn account_change_activities() {
    let cases = [
        (types::APIKEY_CREATED, 1, "Create"),
        (types::APIKEY_ROTATED, 3, "Password Change"),
        (types::APIKEY_REVOKED, 5, "Disable"),
        (types::ACCOUNT_CHANGED, 99, "Other"),
        (types::PERMISSION_CHANGED, 99, "Other"),
        ("account.created", 1, "Create"),
        ("account.deleted", 6, "Delete"),
        ("account.mfa_enabled", 10, "MFA Factor Enable"),
        ("account.mfa_disabled", 11, "MFA Factor Disable"),
        ("account.locked", 9, "Lock"),
        ("permission.attached", 7, "Attach Policy"),
        ("key.data_key_created", 1, "Create"),
        ("key.dek_rotated", 3, "Password Change"),
        ("key.account_shredded", 6, "Delete"),
        ("key.unwrap_failed", 99, "Other"),
        // A word that merely ends like one is not it.
        ("key.uncreated", 99, "Other"),
    ];
    for (t, activity, name) in cases {
        let e = AuditEvent::new(
            now(),
            t,
            Actor::user("alice"),
            "keys.create",
            "k-77",
            Decision::Info,
        )
        .account("acct-2");
        let v = to_ocsf(&e, 1);
        assert_eq!(OcsfClass::of_type(t), OcsfClass::AccountChange, "{t}");
        assert_eq!(
            class_and_activity(&v),
            (3001, 3, activity, 300_100 + activity),
            "{t}"
        );
        assert_eq!(v["activity_name"], name, "{t}");
        assert_eq!(v["class_name"], "Account Change");
        assert_eq!(v["status_id"], 1, "{t}");
        assert_eq!(
            v["actor"]["user"],
            json!({"uid": "alice", "type": "User", "type_id": 1, "account": {"uid": "acct-2"}})
        );
        // The user that changed: the resource (key id, account, purpose).
        assert_eq!(
            v["user"],
            json!({"uid": "k-77", "account": {"uid": "acct-2"}}),
            "{t}"
        );
        let severity = if t == "key.unwrap_failed" { 4 } else { 1 };
        assert_eq!(v["severity_id"], severity, "{t}");
    }
}

#[test]
fn api_activity_by_method_and_status() {
    let cases = [
        (Some("POST"), 1),
        (Some("get"), 2),
        (Some("HEAD"), 2),
        (Some("PUT"), 3),
        (Some("PATCH"), 3),
        (Some("DELETE"), 4),
        (Some("OPTIONS"), 99),
        (None, 99),
    ];
    for (method, activity) in cases {
        let mut e = ev(types::AUTHZ_DECISION, Actor::key("k1"), Decision::Allow)
            .request_id("req-1")
            .source_ip("2001:db8::1".parse().unwrap());
        if let Some(m) = method {
            e = e.plain("method", m);
        }
        let v = to_ocsf(&e, 3);
        assert_eq!(
            class_and_activity(&v),
            (6003, 6, activity, 600_300 + activity),
            "{method:?}"
        );
        assert_eq!(v["class_name"], "API Activity");
        assert_eq!(v["category_name"], "Application Activity");
        assert_eq!(
            v["api"],
            json!({"operation": "PlaceOrder", "request": {"uid": "req-1"}})
        );
        assert_eq!(v["src_endpoint"], json!({"ip": "2001:db8::1"}));
        assert_eq!(v["resources"], json!([{"uid": "/api/v3/order"}]));
        match method {
            Some(m) => assert_eq!(v["http_request"]["http_method"], m.to_ascii_uppercase()),
            None => assert!(v.get("http_request").is_none()),
        }
    }
    // The `http_method` spelling works too.
    let e = ev(types::REQUEST_REJECTED, Actor::key("k1"), Decision::Deny)
        .plain("http_method", "DELETE")
        .reason("RATE_LIMITED");
    let v = to_ocsf(&e, 4);
    assert_eq!(class_and_activity(&v), (6003, 6, 4, 600_304));
    assert_eq!(v["status_id"], 2);
    assert_eq!(v["severity_id"], 3);
    assert_eq!(v["status_code"], "RATE_LIMITED");

    // Step-up: status Other.
    let v = to_ocsf(
        &ev(types::AUTHZ_DECISION, Actor::key("k1"), Decision::StepUp),
        5,
    );
    assert_eq!(v["status_id"], 99);
    assert_eq!(v["status"], "Other");
    assert_eq!(v["severity_id"], 1);

    // Lifecycle events are API Activity too; `src_endpoint` (required in
    // the class) is present even without an address.
    for t in [
        types::CONFIG_LOADED,
        types::GATEWAY_START,
        types::GATEWAY_STOP,
        types::AUDIT_OVERFLOW,
    ] {
        let v = to_ocsf(&ev(t, Actor::system(), Decision::Info), 6);
        assert_eq!(class_and_activity(&v), (6003, 6, 99, 600_399), "{t}");
        assert_eq!(v["src_endpoint"], json!({}));
        assert_eq!(
            v["actor"]["user"],
            json!({"uid": "rampart", "type": "System", "type_id": 3})
        );
        assert_eq!(v["api"], json!({"operation": "PlaceOrder"}));
    }
}

#[test]
fn payload_exported_as_stored_sealed_stays_sealed() {
    let mut e = ev(types::AUTHZ_DECISION, Actor::key("k1"), Decision::Deny)
        .plain("qty", 5)
        .sensitive(None, "address", b"bc1q-secret-address");
    e.payload.insert(
        "body".to_owned(),
        PayloadValue::Sealed(B64.encode(b"opaque-envelope")),
    );
    let entry = e.to_entry().unwrap();
    let record = OcsfRecord::from_entry(&entry, 11, 0);
    let payload = &record.value["unmapped"]["payload"];
    assert_eq!(
        payload,
        &json!({
            "address": "redacted",
            "body": {"sealed": B64.encode(b"opaque-envelope")},
            "qty": {"plain": 5},
        })
    );
    // Exactly the stored encoding.
    let stored: Value = serde_json::from_slice(&entry).unwrap();
    assert_eq!(payload, &stored["payload"]);
    let line = record.to_json();
    assert!(!line.contains("bc1q-secret-address"));
    assert!(!line.contains('\n'));
}

#[test]
fn records_are_deterministic() {
    let e = ev(types::AUTH_SUCCESS, Actor::key("k1"), Decision::Allow).plain("b", "x");
    let entry = e.to_entry().unwrap();
    let a = OcsfRecord::from_entry(&entry, 9, 1);
    let b = OcsfRecord::from_entry(&entry, 9, 2);
    assert_eq!(a, b);
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(a.event_type, "auth.success");
    assert_eq!(a.index, 9);
    assert_eq!(a.time_us, T);
    assert_eq!(a.severity_id, 1);
}

#[test]
fn time_is_floored_to_milliseconds() {
    let mut e = ev(types::GATEWAY_START, Actor::system(), Decision::Info);
    e.time_us = -1;
    assert_eq!(to_ocsf(&e, 0)["time"], -1);
    e.time_us = 1_999;
    assert_eq!(to_ocsf(&e, 0)["time"], 1);
}

#[test]
fn unparsable_entries_carry_their_bytes() {
    let export_time = 1_800_000_000_000_000;
    for entry in [
        b"not json at all".to_vec(),
        br#"{"v":9,"id":"x","time_us":1}"#.to_vec(),
        vec![0xff, 0x00, 0x80],
        Vec::new(),
    ] {
        let r = OcsfRecord::from_entry(&entry, 77, export_time);
        assert_eq!(r.event_type, UNPARSABLE_TYPE);
        assert_eq!(r.index, 77);
        assert_eq!(r.severity_id, 3);
        assert_eq!(r.time_us, export_time);
        let v = &r.value;
        assert_eq!(class_and_activity(v), (0, 0, 99, 99));
        assert_eq!(v["time"], json!(export_time / 1000));
        assert_eq!(v["metadata"]["sequence"], 77);
        assert_eq!(v["metadata"]["uid"], "idx-77");
        assert_eq!(v["metadata"]["log_name"], LOG_NAME);
        assert_eq!(v["unmapped"]["type"], UNPARSABLE_TYPE);
        assert!(!v["unmapped"]["error"].as_str().unwrap().is_empty());
        let back = B64
            .decode(v["unmapped"]["entry_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(back, entry);
    }
}
