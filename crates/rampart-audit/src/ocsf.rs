//! Audit events as OCSF 1.1 records, for SIEMs.
//!
//! [`OcsfRecord::from_event`] maps one [`AuditEvent`] and its log index to
//! a JSON object shaped like an event of the
//! [Open Cybersecurity Schema Framework](https://schema.ocsf.io/1.1.0/)
//! 1.1.0. The mapping is a pure function of the event and the index: the
//! same entry always exports to the same object, so a duplicate delivered
//! by an at-least-once exporter is byte-identical to the original and can
//! be dropped by `metadata.uid` (the event id) or `metadata.sequence` (the
//! log index).
//!
//! # Classes
//!
//! | Rampart type | OCSF class | Activity |
//! |---|---|---|
//! | `auth.*` | Authentication (3002, category 3) | Logon (1) |
//! | `apikey.*`, `account.*`, `permission.*`, `key.*` | Account Change (3001, category 3) | from the type's last word, see below |
//! | everything else (`authz.decision`, `request.rejected`, `config.loaded`, `gateway.*`, `audit.*`, …) | API Activity (6003, category 6) | from the HTTP method in the payload, else Other (99) |
//!
//! Authentication carries `user`, the party that authenticated (for an
//! anonymous failure, only who the request claimed to be), and, when the
//! payload has a plain `scheme`, `auth_protocol` = that scheme with
//! `auth_protocol_id` Other (99).
//!
//! Account Change carries `user`, what changed: `uid` = the event's
//! resource (API key id, account, key purpose) and `account.uid` = its
//! account. Its activity comes from the last word of the type
//! (`apikey.created` → `created`, `key.data_key_created` → `created`):
//! `created` → Create (1), `enabled` → Enable (2), `rotated` /
//! `password_changed` → Password Change (3, the closest OCSF activity to a
//! secret rotation), `reset` → Password Reset (4), `revoked` / `disabled` /
//! `suspended` → Disable (5), `deleted` / `removed` / `destroyed` /
//! `shredded` → Delete (6), `attached` → Attach Policy (7), `detached` →
//! Detach Policy (8), `locked` → Lock (9), `mfa_enabled` / `mfa_enrolled` →
//! MFA Factor Enable (10), `mfa_disabled` → MFA Factor Disable (11), any
//! other → Other (99).
//!
//! API Activity carries `api.operation` (the action), `api.request.uid`
//! (the request id, when there is one), `resources[0].uid` (the
//! resource) and `http_request.http_method`, and takes its activity from
//! the payload field `method` (or `http_method`), a plain string: `POST`
//! → Create (1), `GET` / `HEAD` → Read (2), `PUT` / `PATCH` → Update (3),
//! `DELETE` → Delete (4), any other or none → Other (99). Its
//! `src_endpoint` (required by the class) is always present, empty when
//! the address is unknown.
//!
//! # Common fields
//!
//! - `class_uid`, `class_name`, `category_uid`, `category_name`,
//!   `activity_id`, `activity_name`, `type_uid` (`class_uid * 100 +
//!   activity_id`), `type_name`;
//! - `time`: milliseconds since the Unix epoch (the event keeps
//!   microseconds; the full value is in `unmapped.time_us`);
//! - `severity_id`: High (4) for `key.unwrap_failed`, Medium (3) for any
//!   denial, Informational (1) otherwise;
//! - `status_id`: Success (1) for `allow` and `info`, Failure (2) for
//!   `deny`, Other (99) for `step_up`; `status_code`: the stable reason
//!   code, when there is one;
//! - `actor.user`: `uid` (key id, user name, `rampart`), `type` and
//!   `type_id` (`key` → Other (99) "API Key", `user` → User (1), `system`
//!   → System (3), `anonymous` → Unknown (0), the `uid` then being only what
//!   the client claimed), and `account.uid` when the event has an account;
//! - `src_endpoint.ip`, when the event comes from a request;
//! - `metadata`: `version` `1.1.0`, `product` (`name` and `vendor_name`
//!   `Rampart`, `version` of this crate), `uid` = event id, `sequence` =
//!   log index, `log_name` `rampart-audit`;
//! - `unmapped`: the Rampart type, decision, action, resource, account,
//!   schema version, microsecond time, the clock's sync state (`synced`,
//!   `unsynced`, `unknown`, `stepped`) and the payload **as stored**:
//!   `{"plain": …}`, `{"sealed": "<base64 envelope>"}` or `"redacted"`.
//!   Sealed values stay sealed: the exporter never holds the audit data
//!   key, and a SIEM gets exactly what the tamper-evident log holds.
//!
//! An entry that is not a valid event (a future schema version, or bytes
//! no Rampart wrote) is never skipped: [`OcsfRecord::from_entry`] exports
//! it as a Base Event (class 0, activity Other) carrying the whole entry
//! in base64 (`unmapped.entry_base64`) and the parse error.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::event::{ActorKind, AuditEvent, Decision, PayloadValue};

/// OCSF schema version of the records.
pub const OCSF_VERSION: &str = "1.1.0";
/// `metadata.product.name` and `metadata.product.vendor_name`.
pub const PRODUCT_NAME: &str = "Rampart";
/// `metadata.log_name`.
pub const LOG_NAME: &str = "rampart-audit";
/// The Rampart type given to entries that do not parse as events (in
/// `unmapped.type` and as the syslog MSGID). No producer uses it.
pub const UNPARSABLE_TYPE: &str = "audit.unparsable";

/// OCSF `severity_id` Informational.
pub const SEVERITY_INFORMATIONAL: u8 = 1;
/// OCSF `severity_id` Medium.
pub const SEVERITY_MEDIUM: u8 = 3;
/// OCSF `severity_id` High.
pub const SEVERITY_HIGH: u8 = 4;

/// The OCSF event classes Rampart events map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcsfClass {
    /// Base Event (0): entries that are not valid events.
    Base,
    /// Account Change (3001).
    AccountChange,
    /// Authentication (3002).
    Authentication,
    /// API Activity (6003).
    ApiActivity,
}

impl OcsfClass {
    /// The class of a Rampart event type.
    #[must_use]
    pub fn of_type(event_type: &str) -> Self {
        let area = event_type.split('.').next().unwrap_or("");
        match area {
            "auth" => OcsfClass::Authentication,
            "apikey" | "account" | "permission" | "key" => OcsfClass::AccountChange,
            _ => OcsfClass::ApiActivity,
        }
    }

    /// `class_uid`.
    #[must_use]
    pub const fn uid(self) -> u32 {
        match self {
            OcsfClass::Base => 0,
            OcsfClass::AccountChange => 3001,
            OcsfClass::Authentication => 3002,
            OcsfClass::ApiActivity => 6003,
        }
    }

    /// `class_name`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            OcsfClass::Base => "Base Event",
            OcsfClass::AccountChange => "Account Change",
            OcsfClass::Authentication => "Authentication",
            OcsfClass::ApiActivity => "API Activity",
        }
    }

    /// `category_uid`.
    #[must_use]
    pub const fn category_uid(self) -> u32 {
        match self {
            OcsfClass::Base => 0,
            OcsfClass::AccountChange | OcsfClass::Authentication => 3,
            OcsfClass::ApiActivity => 6,
        }
    }

    /// `category_name`.
    #[must_use]
    pub const fn category_name(self) -> &'static str {
        match self {
            OcsfClass::Base => "Uncategorized",
            OcsfClass::AccountChange | OcsfClass::Authentication => "Identity & Access Management",
            OcsfClass::ApiActivity => "Application Activity",
        }
    }
}

/// One exported record: the OCSF object and what a transport needs to
/// frame it without looking inside.
#[derive(Debug, Clone, PartialEq)]
pub struct OcsfRecord {
    /// Log index of the entry (`metadata.sequence`).
    pub index: u64,
    /// The Rampart event type, or [`UNPARSABLE_TYPE`].
    pub event_type: String,
    /// OCSF `severity_id`.
    pub severity_id: u8,
    /// Event time, microseconds since the Unix epoch (UTC); for an
    /// unparsable entry, the export time passed to
    /// [`OcsfRecord::from_entry`].
    pub time_us: i64,
    /// The OCSF object.
    pub value: Value,
}

impl OcsfRecord {
    /// Maps an event at log index `index`.
    #[must_use]
    pub fn from_event(event: &AuditEvent, index: u64) -> Self {
        Self {
            index,
            event_type: event.event_type.clone(),
            severity_id: severity_id(event),
            time_us: event.time_us,
            value: to_ocsf(event, index),
        }
    }

    /// Maps a raw log entry: an event if it parses, otherwise the minimal
    /// record of [`unparsable_to_ocsf`] stamped with `export_time_us`.
    #[must_use]
    pub fn from_entry(entry: &[u8], index: u64, export_time_us: i64) -> Self {
        match AuditEvent::from_entry(entry) {
            Ok(event) => Self::from_event(&event, index),
            Err(e) => Self {
                index,
                event_type: UNPARSABLE_TYPE.to_owned(),
                severity_id: SEVERITY_MEDIUM,
                time_us: export_time_us,
                value: unparsable_to_ocsf(entry, index, &e.to_string(), export_time_us),
            },
        }
    }

    /// The object as one line of compact JSON (no trailing newline).
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serialising a `Value` cannot fail (string keys only).
        serde_json::to_string(&self.value).unwrap_or_default()
    }
}

/// OCSF `severity_id` of an event: High (4) for `key.unwrap_failed`,
/// Medium (3) for a denial, Informational (1) otherwise.
#[must_use]
pub fn severity_id(event: &AuditEvent) -> u8 {
    if event.event_type == "key.unwrap_failed" {
        SEVERITY_HIGH
    } else if event.decision == Decision::Deny {
        SEVERITY_MEDIUM
    } else {
        SEVERITY_INFORMATIONAL
    }
}

/// Caption of an OCSF `severity_id`.
#[must_use]
pub const fn severity_name(id: u8) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        6 => "Fatal",
        99 => "Other",
        _ => "Unknown",
    }
}

/// OCSF `status_id` and caption of a decision.
#[must_use]
pub const fn status(decision: Decision) -> (u8, &'static str) {
    match decision {
        Decision::Allow | Decision::Info => (1, "Success"),
        Decision::Deny => (2, "Failure"),
        Decision::StepUp => (99, "Other"),
    }
}

/// OCSF `activity_id` and caption of an event in its class.
#[must_use]
pub fn activity(class: OcsfClass, event: &AuditEvent) -> (u8, &'static str) {
    match class {
        OcsfClass::Authentication => (1, "Logon"),
        OcsfClass::AccountChange => account_change_activity(&event.event_type),
        OcsfClass::ApiActivity => api_activity(http_method(event)),
        OcsfClass::Base => (99, "Other"),
    }
}

/// Account Change activity from the type's last word.
fn account_change_activity(event_type: &str) -> (u8, &'static str) {
    let last = event_type.rsplit('.').next().unwrap_or("");
    let ends = |words: &[&str]| {
        words
            .iter()
            .any(|w| last == *w || last.strip_suffix(w).is_some_and(|head| head.ends_with('_')))
    };
    // Longer, more specific words first (`mfa_enabled` before `enabled`).
    if ends(&["mfa_enabled", "mfa_enrolled"]) {
        (10, "MFA Factor Enable")
    } else if ends(&["mfa_disabled"]) {
        (11, "MFA Factor Disable")
    } else if ends(&["password_changed", "rotated"]) {
        (3, "Password Change")
    } else if ends(&["created"]) {
        (1, "Create")
    } else if ends(&["enabled"]) {
        (2, "Enable")
    } else if ends(&["reset"]) {
        (4, "Password Reset")
    } else if ends(&["revoked", "disabled", "suspended"]) {
        (5, "Disable")
    } else if ends(&["deleted", "removed", "destroyed", "shredded"]) {
        (6, "Delete")
    } else if ends(&["attached"]) {
        (7, "Attach Policy")
    } else if ends(&["detached"]) {
        (8, "Detach Policy")
    } else if ends(&["locked"]) {
        (9, "Lock")
    } else {
        (99, "Other")
    }
}

/// The HTTP method recorded in the payload (`method` or `http_method`,
/// a plain string), upper-cased.
fn http_method(event: &AuditEvent) -> Option<String> {
    ["method", "http_method"]
        .iter()
        .find_map(|k| match event.payload.get(*k) {
            Some(PayloadValue::Plain(Value::String(m))) if !m.is_empty() => {
                Some(m.to_ascii_uppercase())
            }
            _ => None,
        })
}

/// API Activity activity from the HTTP method.
fn api_activity(method: Option<String>) -> (u8, &'static str) {
    match method.as_deref() {
        Some("POST") => (1, "Create"),
        Some("GET" | "HEAD") => (2, "Read"),
        Some("PUT" | "PATCH") => (3, "Update"),
        Some("DELETE") => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// OCSF `user.type_id` and `user.type` of an actor kind.
#[must_use]
pub const fn user_type(kind: ActorKind) -> (u8, &'static str) {
    match kind {
        ActorKind::Key => (99, "API Key"),
        ActorKind::User => (1, "User"),
        ActorKind::System => (3, "System"),
        ActorKind::Anonymous => (0, "Unknown"),
    }
}

fn kind_name(kind: ActorKind) -> &'static str {
    match kind {
        ActorKind::Key => "key",
        ActorKind::User => "user",
        ActorKind::System => "system",
        ActorKind::Anonymous => "anonymous",
    }
}

/// The OCSF object of an event at log index `index` (see the module
/// documentation for the mapping).
#[must_use]
pub fn to_ocsf(event: &AuditEvent, index: u64) -> Value {
    let class = OcsfClass::of_type(&event.event_type);
    let (activity_id, activity_name) = activity(class, event);
    let severity = severity_id(event);
    let (status_id, status_name) = status(event.decision);
    let (type_id, type_name) = user_type(event.actor.kind);

    let mut actor_user = Map::new();
    actor_user.insert("uid".into(), json!(event.actor.id));
    actor_user.insert("type".into(), json!(type_name));
    actor_user.insert("type_id".into(), json!(type_id));
    if let Some(account) = &event.account {
        actor_user.insert("account".into(), json!({ "uid": account }));
    }
    let actor_user = Value::Object(actor_user);

    let mut o = Map::new();
    o.insert("class_uid".into(), json!(class.uid()));
    o.insert("class_name".into(), json!(class.name()));
    o.insert("category_uid".into(), json!(class.category_uid()));
    o.insert("category_name".into(), json!(class.category_name()));
    o.insert("activity_id".into(), json!(activity_id));
    o.insert("activity_name".into(), json!(activity_name));
    o.insert(
        "type_uid".into(),
        json!(u64::from(class.uid()) * 100 + u64::from(activity_id)),
    );
    o.insert(
        "type_name".into(),
        json!(format!("{}: {activity_name}", class.name())),
    );
    o.insert("time".into(), json!(event.time_us.div_euclid(1000)));
    o.insert("severity_id".into(), json!(severity));
    o.insert("severity".into(), json!(severity_name(severity)));
    o.insert("status_id".into(), json!(status_id));
    o.insert("status".into(), json!(status_name));
    if let Some(reason) = &event.reason {
        o.insert("status_code".into(), json!(reason));
    }
    o.insert(
        "message".into(),
        json!(format!(
            "{} {} {}: {}",
            event.event_type,
            event.action,
            event.resource,
            event.decision.as_str()
        )),
    );
    o.insert("actor".into(), json!({ "user": actor_user.clone() }));
    let mut src = Map::new();
    if let Some(ip) = event.source_ip {
        src.insert("ip".into(), json!(ip.to_string()));
    }
    // API Activity requires `src_endpoint`; elsewhere it is only present
    // when known.
    if !src.is_empty() || class == OcsfClass::ApiActivity {
        o.insert("src_endpoint".into(), Value::Object(src));
    }

    match class {
        OcsfClass::Authentication => {
            // The user who authenticated (or, for an anonymous failure,
            // who the request claimed to be).
            o.insert("user".into(), actor_user);
            if let Some(PayloadValue::Plain(Value::String(scheme))) = event.payload.get("scheme") {
                o.insert("auth_protocol".into(), json!(scheme));
                o.insert("auth_protocol_id".into(), json!(99));
            }
        }
        OcsfClass::AccountChange => {
            // The user (API key, account, key purpose) that changed.
            let mut user = Map::new();
            user.insert("uid".into(), json!(event.resource));
            if let Some(account) = &event.account {
                user.insert("account".into(), json!({ "uid": account }));
            }
            o.insert("user".into(), Value::Object(user));
        }
        OcsfClass::ApiActivity | OcsfClass::Base => {
            let mut api = Map::new();
            api.insert("operation".into(), json!(event.action));
            // `request.uid` is required in OCSF's Request object: no
            // request id, no `request`.
            if let Some(id) = &event.request_id {
                api.insert("request".into(), json!({ "uid": id }));
            }
            o.insert("api".into(), Value::Object(api));
            o.insert("resources".into(), json!([{ "uid": event.resource }]));
            if let Some(method) = http_method(event) {
                o.insert("http_request".into(), json!({ "http_method": method }));
            }
        }
    }

    o.insert("metadata".into(), metadata(&event.id, index));

    let mut unmapped = Map::new();
    unmapped.insert("v".into(), json!(event.v));
    unmapped.insert("type".into(), json!(event.event_type));
    unmapped.insert("actor_kind".into(), json!(kind_name(event.actor.kind)));
    unmapped.insert("decision".into(), json!(event.decision.as_str()));
    unmapped.insert("action".into(), json!(event.action));
    unmapped.insert("resource".into(), json!(event.resource));
    if let Some(account) = &event.account {
        unmapped.insert("account".into(), json!(account));
    }
    if let Some(id) = &event.request_id {
        unmapped.insert("request_id".into(), json!(id));
    }
    unmapped.insert("time_us".into(), json!(event.time_us));
    unmapped.insert("clock_sync".into(), json!(event.clock.as_str()));
    if !event.payload.is_empty() {
        // Exactly the stored encoding of `PayloadValue`.
        unmapped.insert(
            "payload".into(),
            serde_json::to_value(&event.payload).unwrap_or(Value::Null),
        );
    }
    o.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(o)
}

/// The minimal record of an entry that is not a valid event: a Base Event
/// (class 0, activity Other (99), `type_uid` 99), severity Medium, status
/// Unknown, `time` = `export_time_us` in milliseconds, the usual
/// `metadata` (`uid` is `idx-<index>`), and `unmapped` holding the Rampart
/// type [`UNPARSABLE_TYPE`], the parse `error` and the entry in base64.
#[must_use]
pub fn unparsable_to_ocsf(entry: &[u8], index: u64, error: &str, export_time_us: i64) -> Value {
    json!({
        "class_uid": OcsfClass::Base.uid(),
        "class_name": OcsfClass::Base.name(),
        "category_uid": OcsfClass::Base.category_uid(),
        "category_name": OcsfClass::Base.category_name(),
        "activity_id": 99,
        "activity_name": "Other",
        "type_uid": 99,
        "type_name": "Base Event: Other",
        "time": export_time_us.div_euclid(1000),
        "severity_id": SEVERITY_MEDIUM,
        "severity": severity_name(SEVERITY_MEDIUM),
        "status_id": 0,
        "status": "Unknown",
        "message": "audit log entry is not a valid Rampart event",
        "metadata": metadata(&format!("idx-{index}"), index),
        "unmapped": {
            "type": UNPARSABLE_TYPE,
            "error": error,
            "time_source": "export",
            "entry_base64": B64.encode(entry),
        },
    })
}

fn metadata(uid: &str, index: u64) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": PRODUCT_NAME,
            "vendor_name": PRODUCT_NAME,
            "version": env!("CARGO_PKG_VERSION"),
        },
        "uid": uid,
        "sequence": index,
        "log_name": LOG_NAME,
    })
}
