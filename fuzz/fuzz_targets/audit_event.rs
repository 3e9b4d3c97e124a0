//! Arbitrary bytes as a log entry through the audit event decoder and the
//! OCSF export mapping. None may panic, and:
//!
//! - an entry that decodes re-encodes (`to_entry`) to bytes that decode
//!   to an equal event, and re-encoding that event gives the same bytes
//!   (the encoding is stable);
//! - the OCSF record of any entry serialises to a non-empty JSON object,
//!   and an entry that does not decode maps to the "unparsable" record.
//!
//! An input that is a JSON object is also merged over a valid entry, so
//! the decoder's success path is reached without a seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_audit::event::{AuditEvent, EventError, MAX_ENTRY_BYTES};
use rampart_audit::ocsf::{OcsfRecord, UNPARSABLE_TYPE};

/// A valid entry (as `to_entry` writes it) whose fields a JSON object
/// input overrides, so the decoder's success path is reached without a
/// seed corpus.
const TEMPLATE: &str = r#"{"v":1,"id":"3f9c0a1b2c3d4e5f-1a","time_us":1700000000123456,"clock":"synced","type":"auth.success","actor":{"kind":"key","id":"k1"},"account":"acct-1","source_ip":"192.0.2.1","action":"order.create","resource":"/api/v3/order","decision":"allow","request_id":"req-1","payload":{"body":{"sealed":"c2VhbGVk"},"method":{"plain":"POST"},"scheme":{"plain":"rfc9421"},"x":"redacted"}}"#;

/// Decoding, re-encoding and OCSF mapping of one entry.
fn check(data: &[u8]) {
    let decoded = AuditEvent::from_entry(data);
    if let Ok(ev) = &decoded {
        match ev.to_entry() {
            Ok(entry) => {
                let back = AuditEvent::from_entry(&entry).unwrap_or_else(|e| {
                    panic!(
                        "re-encoded entry {:?} does not decode: {e}",
                        String::from_utf8_lossy(&entry)
                    )
                });
                assert_eq!(&back, ev, "{:?}", String::from_utf8_lossy(&entry));
                let again = back.to_entry().expect("re-encoding a re-decoded event");
                assert_eq!(again, entry, "unstable encoding");
            }
            Err(EventError::TooLarge(n)) => assert!(n > MAX_ENTRY_BYTES),
            Err(e) => panic!("encoding a decoded event: {e}"),
        }
    }

    for (index, export_time_us) in [(0, 0), (u64::MAX, i64::MIN), (7, i64::MAX)] {
        let rec = OcsfRecord::from_entry(data, index, export_time_us);
        assert_eq!(rec.index, index);
        match &decoded {
            Ok(ev) => assert_eq!(rec.event_type, ev.event_type),
            Err(_) => assert_eq!(rec.event_type, UNPARSABLE_TYPE),
        }
        let json = rec.to_json();
        let value: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("OCSF JSON {json:?}: {e}"));
        assert!(value.is_object(), "{json}");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 2 * MAX_ENTRY_BYTES {
        return;
    }
    check(data);
    // A JSON object input overrides fields of a valid entry.
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(data) {
        let mut entry: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(TEMPLATE).expect("template");
        assert!(AuditEvent::from_entry(TEMPLATE.as_bytes()).is_ok());
        for (k, v) in fields {
            entry.insert(k, v);
        }
        check(&serde_json::to_vec(&entry).expect("entry"));
    }
});
