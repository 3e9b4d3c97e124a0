//! Authorization: key settings, BOLA, MFA, operator files, errors, explain.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

#[path = "authz_common/mod.rs"]
mod common;

use std::net::IpAddr;

use cedar_policy::{PolicySet, Schema, ValidationMode, Validator};
use common::*;
use rampart_policy::authz::{
    check_sources, key_policies_text, render_key_policies, schema_text, ActionDef, Authorizer,
    AuthzConfig, Decision, DenyCode, Effect, KeySettings, OrderFacts, PolicyError,
};

fn allow(d: &Decision) {
    assert!(d.allowed, "expected allow, got {d:?}");
    assert_eq!(d.code, None);
    assert!(d.errors.is_empty(), "{d:?}");
}

fn deny(d: &Decision, code: DenyCode) {
    assert!(!d.allowed, "expected deny {code}, got {d:?}");
    assert_eq!(d.code, Some(code), "{d:?}");
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn order(instrument: &str, qty: &str) -> OrderFacts {
    OrderFacts {
        side: "buy".into(),
        order_type: "limit".into(),
        qty: qty.into(),
        notional: None,
        instrument: instrument.into(),
    }
}

fn load_err(sources: &[(&str, &str)]) -> PolicyError {
    match Authorizer::new(&config(sources)) {
        Ok(_) => panic!("policies should be refused"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- BOLA

#[test]
fn key_of_one_account_cannot_act_on_another() {
    let a = authorizer(&[]);
    let k = prepared(&a, &key("k", "A", &["read", "trade"]), 2);
    let mut r = req("GetAccount", "read");
    allow(&a.authorize(&k, &r));
    r.target_account = Some("B");
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert_eq!(d.policies, vec!["key.account"]);
    // Naming an instrument does not bypass the account check.
    let o = order("BTC-USD", "1");
    let mut r = req("PlaceOrder", "trade");
    r.order = Some(&o);
    r.target_account = Some("B");
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);
    // Claiming that B is a sub-account of someone else changes nothing.
    r.target_account_parent = Some("C");
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);
}

#[test]
fn parent_key_may_act_on_its_sub_account() {
    let a = authorizer(&[]);
    let k = prepared(&a, &key("kp", "A", &["read", "trade"]), 1);
    let mut r = req("ListOrders", "read");
    r.target_account = Some("A-sub");
    r.target_account_parent = Some("A");
    allow(&a.authorize(&k, &r));
    // Without knowing the sub-account's parent, the authorizer cannot tell.
    r.target_account_parent = None;
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);
    // A sub-account of a stranger.
    r.target_account_parent = Some("B");
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);
}

#[test]
fn sub_account_key_cannot_act_on_parent_or_sibling() {
    let a = authorizer(&[]);
    let sub = account("A-sub", Some("A"), 1);
    let parent = account("A", None, 1);
    let k = a.prepare_key(&key("ks", "A-sub", &["read"]), &sub, Some(&parent));
    let mut r = req("GetAccount", "read");
    allow(&a.authorize(&k, &r));
    r.target_account = Some("A");
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);
    r.target_account = Some("A-sub2");
    r.target_account_parent = Some("A");
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);
    // ...even claiming the sibling is its own child's parent.
    r.target_account_parent = Some("A-sub2");
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);
}

#[test]
fn operator_policy_on_parent_account_covers_sub_account_keys() {
    let desk = r#"
@id("desk.parent-no-trade")
forbid (principal in Rampart::Account::"A", action in Rampart::Action::"trade", resource);
"#;
    let a = authorizer(&[("desk.cedar", desk)]);
    let sub = account("A-sub", Some("A"), 2);
    let parent = account("A", None, 2);
    let k = a.prepare_key(&key("ks", "A-sub", &["trade"]), &sub, Some(&parent));
    let d = a.authorize(&k, &req("CancelOrder", "trade"));
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert_eq!(d.policies, vec!["desk.parent-no-trade"]);
    // The parent's facts are optional: the key is still `in` A.
    let k = a.prepare_key(&key("ks", "A-sub", &["trade"]), &sub, None);
    deny(
        &a.authorize(&k, &req("CancelOrder", "trade")),
        DenyCode::ForbiddenByPolicy,
    );
    assert_eq!(
        a.authorize(&k, &req("CancelOrder", "trade")),
        a.authorize_unindexed(&k, &req("CancelOrder", "trade"))
    );
}

// ---------------------------------------------------------- key settings

#[test]
fn ip_allow_list() {
    let a = authorizer(&[]);
    let mut ks = key("k", "A", &["read"]);
    ks.nets = vec![
        "10.1.0.0/16".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let k = prepared(&a, &ks, 1);
    let mut r = req("GetAccount", "read");
    allow(&a.authorize(&k, &r));
    r.source_ip = ip("10.2.0.1");
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::IpNotAllowed);
    assert_eq!(d.policies, vec!["key.ip"]);
    r.source_ip = ip("2001:db8::1");
    allow(&a.authorize(&k, &r));
    r.source_ip = ip("2001:db9::1");
    deny(&a.authorize(&k, &r), DenyCode::IpNotAllowed);
    // IPv4-mapped IPv6 is the IPv4 address.
    r.source_ip = ip("::ffff:10.1.9.9");
    allow(&a.authorize(&k, &r));
    // Public actions are still subject to the key's network.
    let mut r = req("GetTime", "public");
    r.source_ip = ip("192.0.2.1");
    deny(&a.authorize(&k, &r), DenyCode::IpNotAllowed);
    // Host bits in a configured range are ignored (10.1.2.3/16 = 10.1.0.0/16).
    ks.nets = vec!["10.1.2.3/16".parse().unwrap()];
    let k = prepared(&a, &ks, 1);
    r.source_ip = ip("10.1.200.1");
    allow(&a.authorize(&k, &r));
}

#[test]
fn expiry() {
    let a = authorizer(&[]);
    let mut ks = key("k", "A", &["read"]);
    ks.expires_at_ms = Some(NOW_MS + 1_000);
    let k = prepared(&a, &ks, 1);
    let mut r = req("GetAccount", "read");
    allow(&a.authorize(&k, &r));
    r.now_ms = NOW_MS + 1_000;
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::KeyExpired);
    assert_eq!(d.policies, vec!["key.expired"]);
    // Rounded down to the second: never late, at most 999 ms early.
    ks.expires_at_ms = Some(NOW_MS + 999);
    let k = prepared(&a, &ks, 1);
    r.now_ms = NOW_MS;
    deny(&a.authorize(&k, &r), DenyCode::KeyExpired);
    r.now_ms = NOW_MS - 1;
    allow(&a.authorize(&k, &r));
}

#[test]
fn instrument_and_product_allow_lists() {
    let a = authorizer(&[]);
    let mut ks = key("k", "A", &["read", "trade"]);
    ks.instruments = vec!["BTC-USD".into(), "BTC-PERP".into()];
    let k = prepared(&a, &ks, 2);
    let on = order("BTC-USD", "1");
    let off = order("ETH-USD", "1");
    let perp = order("BTC-PERP", "1");
    let mut r = req("PlaceOrder", "trade");
    r.order = Some(&on);
    allow(&a.authorize(&k, &r));
    r.order = Some(&off);
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert_eq!(d.policies, vec!["key.instrument"]);
    r.order = Some(&perp);
    allow(&a.authorize(&k, &r));
    // Market data is not restricted by the instrument list.
    let mut book = req("GetBook", "public");
    book.instrument = Some("ETH-USD");
    allow(&a.authorize(&k, &book));

    ks.instruments.clear();
    ks.products = vec!["spot".into()];
    let k = prepared(&a, &ks, 2);
    r.order = Some(&off);
    allow(&a.authorize(&k, &r));
    r.order = Some(&perp);
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert_eq!(d.policies, vec!["key.product"]);
}

#[test]
fn read_only_key() {
    let a = authorizer(&[]);
    let mut ks = key("k", "A", &["read", "trade", "withdraw"]);
    ks.read_only = true;
    let k = prepared(&a, &ks, 2);
    allow(&a.authorize(&k, &req("GetAccount", "read")));
    allow(&a.authorize(&k, &req("GetTime", "public")));
    allow(&a.authorize(&k, &req("Stream", "read")));
    let d = a.authorize(&k, &req("CancelOrder", "trade"));
    deny(&d, DenyCode::ScopeMissing);
    assert_eq!(d.policies, vec!["key.read_only"]);
}

#[test]
fn withdrawals_address_book_and_mfa() {
    let a = authorizer(&[]);
    let k = prepared(&a, &key("k", "A", &["read", "withdraw"]), 1);
    let mut r = req("Withdraw", "withdraw");
    r.withdrawal = Some(("BTC", "addr-ok"));
    r.mfa_age_secs = Some(30);
    let d = a.authorize(&k, &r);
    allow(&d);
    assert_eq!(d.policies, vec!["default.kyc1.withdraw"]);

    r.withdrawal = Some(("BTC", "addr-evil"));
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert_eq!(d.policies, vec!["key.withdrawal_address"]);

    // A withdrawal without its facts is never allowed.
    r.withdrawal = None;
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);

    r.withdrawal = Some(("BTC", "addr-ok"));
    r.mfa_age_secs = Some(301);
    deny(&a.authorize(&k, &r), DenyCode::MfaRequired);
    r.mfa_age_secs = Some(300);
    allow(&a.authorize(&k, &r));
    r.mfa_age_secs = None;
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::MfaRequired);
    assert_eq!(d.policies, vec!["default.mfa"]);
    // Stale MFA and a bad address: MFA first (no probing the address book
    // without a fresh proof).
    r.withdrawal = Some(("BTC", "addr-evil"));
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::MfaRequired);
    assert_eq!(d.policies, vec!["default.mfa", "key.withdrawal_address"]);
    // Huge MFA ages do not wrap.
    r.withdrawal = Some(("BTC", "addr-ok"));
    r.mfa_age_secs = Some(u64::MAX);
    deny(&a.authorize(&k, &r), DenyCode::MfaRequired);

    // Tier 0 cannot withdraw, even with MFA.
    let k0 = prepared(&a, &key("k0", "A0", &["withdraw"]), 0);
    let mut r = req("Withdraw", "withdraw");
    r.withdrawal = Some(("BTC", "addr-ok"));
    r.mfa_age_secs = Some(1);
    let d = a.authorize(&k0, &r);
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert!(d.policies.is_empty(), "default deny: {d:?}");
}

#[test]
fn code_priority_when_several_forbids_match() {
    let a = authorizer(&[]);
    let mut ks = key("k", "A", &[]);
    ks.expires_at_ms = Some(NOW_MS - 1);
    ks.nets = vec!["192.0.2.0/24".parse().unwrap()];
    let mut r = req("Withdraw", "withdraw");
    r.withdrawal = Some(("BTC", "nope"));
    r.target_account = Some("B");
    let d = a.authorize(&prepared(&a, &ks, 1), &r);
    deny(&d, DenyCode::KeyExpired);
    assert_eq!(
        d.policies,
        vec![
            "default.mfa",
            "key.account",
            "key.expired",
            "key.ip",
            "key.scope",
            "key.withdrawal_address"
        ]
    );
    ks.expires_at_ms = None;
    deny(
        &a.authorize(&prepared(&a, &ks, 1), &r),
        DenyCode::IpNotAllowed,
    );
    ks.nets.clear();
    deny(
        &a.authorize(&prepared(&a, &ks, 1), &r),
        DenyCode::ScopeMissing,
    );
    ks.scopes = vec!["withdraw".into()];
    deny(
        &a.authorize(&prepared(&a, &ks, 1), &r),
        DenyCode::MfaRequired,
    );
    r.mfa_age_secs = Some(5);
    deny(
        &a.authorize(&prepared(&a, &ks, 1), &r),
        DenyCode::ForbiddenByPolicy,
    );
}

// ------------------------------------------------------- operator files

#[test]
fn operator_forbid_overrides_shipped_permits() {
    let desk = r#"
// No perpetuals for account A, whatever its tier.
@id("desk.no-perp-A")
forbid (
  principal in Rampart::Account::"A",
  action == Rampart::Action::"PlaceOrder",
  resource == Rampart::Instrument::"BTC-PERP"
);

// Large orders need a fresh MFA proof.
@id("desk.large-order-mfa")
@code("MFA_REQUIRED")
forbid (principal, action == Rampart::Action::"PlaceOrder", resource)
when { context has order && context.order.qty.greaterThan(decimal("10.0")) }
unless { context has mfa_age && context.mfa_age <= 60 };

// No trading at night (UTC) for high-risk requests.
@id("desk.night")
forbid (principal, action in Rampart::Action::"trade", resource)
when { context.risk_score >= 80 && context.hour < 6 };
"#;
    let a = authorizer(&[("desk.cedar", desk)]);
    let k = prepared(&a, &key("k", "A", &["trade"]), 2);
    let kb = prepared(&a, &key("kb", "B", &["trade"]), 2);
    let perp = order("BTC-PERP", "1");
    let mut r = req("PlaceOrder", "trade");
    r.order = Some(&perp);
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert_eq!(d.policies, vec!["desk.no-perp-A"]);
    allow(&a.authorize(&kb, &r));

    let big = order("BTC-USD", "10.0001");
    r.order = Some(&big);
    deny(&a.authorize(&kb, &r), DenyCode::MfaRequired);
    r.mfa_age_secs = Some(60);
    allow(&a.authorize(&kb, &r));
    let ten = order("BTC-USD", "10");
    r.order = Some(&ten);
    r.mfa_age_secs = None;
    allow(&a.authorize(&kb, &r));

    r.risk_score = 80;
    r.now_ms = NOW_MS - NOW_MS.rem_euclid(86_400_000) + 5 * 3_600_000; // 05:00 UTC
    deny(&a.authorize(&kb, &r), DenyCode::ForbiddenByPolicy);
    r.now_ms += 3_600_000; // 06:00 UTC
    allow(&a.authorize(&kb, &r));
}

#[test]
fn operator_permits_replace_the_defaults() {
    let cfg_no_defaults = |sources: &[(&str, &str)]| {
        let mut c = config(sources);
        c.defaults = false;
        c
    };
    // Without the defaults nothing is permitted.
    let a = Authorizer::new(&cfg_no_defaults(&[])).unwrap();
    let k = prepared(&a, &key("k", "A", &["read"]), 2);
    let d = a.authorize(&k, &req("GetTime", "public"));
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert!(d.policies.is_empty());
    // An operator permit; the key settings still apply.
    let p = r#"@id("ops.reads") permit (principal, action in [Rampart::Action::"read", Rampart::Action::"public"], resource);"#;
    let a = Authorizer::new(&cfg_no_defaults(&[("ops.cedar", p)])).unwrap();
    let k = prepared(&a, &key("k", "A", &["read"]), 0);
    allow(&a.authorize(&k, &req("GetAccount", "read")));
    deny(
        &a.authorize(&k, &req("CancelOrder", "trade")),
        DenyCode::ScopeMissing,
    );
    let k = prepared(&a, &key("k", "A", &[]), 0);
    deny(
        &a.authorize(&k, &req("GetAccount", "read")),
        DenyCode::ScopeMissing,
    );
}

#[test]
fn invalid_policies_are_refused_with_source_and_line() {
    // Syntax error on line 3.
    let e = load_err(&[(
        "bad.cedar",
        "// one\n// two\npermit (principal, action, resource) when { ( };\n",
    )]);
    assert_eq!(e.issues[0].source, "bad.cedar");
    assert_eq!(e.issues[0].line, Some(3), "{e}");
    assert!(e.to_string().contains("bad.cedar:3:"), "{e}");

    // Unknown attribute on line 2.
    let e = load_err(&[(
        "attr.cedar",
        "\npermit (principal, action, resource) when { principal.karma > 3 };\n",
    )]);
    assert_eq!(e.issues.len(), 1, "{e}");
    assert_eq!(e.issues[0].source, "attr.cedar");
    assert_eq!(e.issues[0].line, Some(2), "{e}");
    assert!(e.issues[0].message.contains("karma"), "{e}");

    // Unknown action, in the second file; both files' errors are reported.
    let e = load_err(&[
        (
            "ok.cedar",
            "permit (principal, action == Rampart::Action::\"GetTime\", resource);",
        ),
        (
            "one.cedar",
            "permit (principal, action, resource) when { context.nope };",
        ),
        (
            "act.cedar",
            "@id(\"x\")\nforbid (principal, action == Rampart::Action::\"Teleport\", resource);",
        ),
    ]);
    assert_eq!(e.issues.len(), 2, "{e}");
    assert_eq!(e.issues[0].source, "one.cedar");
    assert_eq!(e.issues[1].source, "act.cedar");
    assert_eq!(e.issues[1].line, Some(2), "{e}");
    assert!(e.issues[1].message.contains("Teleport"), "{e}");

    // A missing optional attribute without `has` (strict validation).
    let e = load_err(&[(
        "mfa.cedar",
        "forbid (principal, action, resource) when { context.mfa_age > 3 };",
    )]);
    assert_eq!(e.issues[0].source, "mfa.cedar");
    assert_eq!(e.issues[0].line, Some(1));

    // Unknown entity type.
    let e = load_err(&[(
        "t.cedar",
        "permit (principal == Rampart::Robot::\"r\", action, resource);",
    )]);
    assert_eq!(e.issues[0].source, "t.cedar");

    // Unknown @code, @code on a permit, duplicate ids (also against the
    // shipped ones), templates.
    let e = load_err(&[
        ("c.cedar", "\n\n@code(\"NOPE\") forbid (principal, action, resource);"),
        ("p.cedar", "@code(\"MFA_REQUIRED\") permit (principal, action, resource);"),
        ("d.cedar", "@id(\"key.scope\") forbid (principal, action, resource);\n@id(\"same\") forbid (principal, action, resource);\n@id(\"same\") forbid (principal, action, resource);"),
        ("tpl.cedar", "permit (principal == ?principal, action, resource);"),
    ]);
    let text = e.to_string();
    assert_eq!(e.issues.len(), 5, "{text}");
    assert!(
        text.contains("c.cedar:3:1: policy `c.cedar:policy0`: `@code(\"NOPE\")`"),
        "{text}"
    );
    assert!(text.contains("p.cedar:1:1:"), "{text}");
    assert!(
        text.contains("d.cedar:1:1: policy id `key.scope` is already used in `keys.cedar`"),
        "{text}"
    );
    assert!(
        text.contains("d.cedar:3:1: policy id `same` is already used in `d.cedar`"),
        "{text}"
    );
    assert!(text.contains("tpl.cedar:1:1: policy templates"), "{text}");

    assert!(check_sources(&config(&[("bad.cedar", "nope")])).is_err());
    assert_eq!(
        check_sources(&config(&[(
            "ok.cedar",
            "permit (principal, action, resource);"
        )]))
        .unwrap(),
        authorizer(&[]).policy_count() + 1
    );
}

#[test]
fn invalid_catalogue_and_actions_are_refused() {
    let mut c = config(&[]);
    c.instruments.push(rampart_policy::authz::InstrumentDef {
        symbol: "X".into(),
        product: "future".into(),
    });
    c.instruments.push(rampart_policy::authz::InstrumentDef {
        symbol: "BTC-USD".into(),
        product: "spot".into(),
    });
    c.actions.push(ActionDef {
        name: "Bad Name".into(),
        scope: "read".into(),
        groups: vec![],
    });
    c.actions.push(ActionDef {
        name: "GetTime".into(),
        scope: "public".into(),
        groups: vec!["trade".into()],
    });
    c.actions.push(ActionDef {
        name: "Stream".into(),
        scope: "read".into(),
        groups: vec![],
    });
    let e = Authorizer::new(&c).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.issues.len(), 5, "{text}");
    assert!(text.contains("product `future`"), "{text}");
    assert!(text.contains("`BTC-USD` is listed twice"), "{text}");
    assert!(text.contains("action `Bad Name`"), "{text}");
    assert!(
        text.contains("built-in action `GetTime` is not in group `trade`"),
        "{text}"
    );
    assert!(text.contains("action `Stream` is defined twice"), "{text}");
}

#[test]
fn extra_actions_join_their_groups() {
    let mut c = config(&[]);
    c.actions.push(ActionDef {
        name: "AmendOrder".into(),
        scope: "trade".into(),
        groups: vec!["trade".into(), "desk_ops".into()],
    });
    c.actions.push(ActionDef {
        name: "Internal".into(),
        scope: "admin".into(),
        groups: vec![],
    });
    c.sources.push(rampart_policy::authz::PolicySource {
        name: "desk.cedar".into(),
        text: r#"@id("desk.ops") forbid (principal, action in Rampart::Action::"desk_ops", resource) when { context.risk_score > 50 };"#.into(),
    });
    let a = Authorizer::new(&c).unwrap();
    assert!(a
        .schema()
        .contains("action \"AmendOrder\" in [\"desk_ops\", \"trade\"]"));
    assert!(a.schema().starts_with(schema_text()));
    let k = prepared(&a, &key("k", "A", &["trade", "read", "admin"]), 1);
    allow(&a.authorize(&k, &req("AmendOrder", "trade")));
    let mut r = req("AmendOrder", "trade");
    r.risk_score = 51;
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);
    // Public extra action: tier 0.
    let k0 = prepared(&a, &key("k0", "A", &[]), 0);
    allow(&a.authorize(&k0, &req("ListMarkets", "public")));
    // An action in no group is permitted by nothing shipped.
    deny(
        &a.authorize(&k, &req("Internal", "admin")),
        DenyCode::ForbiddenByPolicy,
    );
}

// ------------------------------------------------ fail closed on errors

#[test]
fn evaluation_error_denies_where_cedar_alone_would_allow() {
    // Overflows when risk_score > 0 (the validator cannot know).
    let bad = r#"
@id("ops.overflow")
forbid (principal, action, resource)
when { context.risk_score * 9223372036854775807 > 100 };
"#;
    let a = authorizer(&[("ops.cedar", bad)]);
    let k = prepared(&a, &key("k", "A", &["read"]), 1);
    let mut r = req("GetAccount", "read");
    allow(&a.authorize(&k, &r));
    r.risk_score = 2;
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert_eq!(d.policies, vec!["ops.overflow"]);
    assert_eq!(d.errors.len(), 1);
    assert!(d.errors[0].contains("ops.overflow"), "{d:?}");
    // Plain Cedar skips the erroring forbid and allows.
    let (request, entities) = a.cedar_request(&k, &r).unwrap();
    let plain = cedar_policy::Authorizer::new().is_authorized(&request, a.policy_set(), &entities);
    assert_eq!(plain.decision(), cedar_policy::Decision::Allow);
    assert_eq!(a.authorize_unindexed(&k, &r), d);
}

#[test]
fn erroring_permit_denies_even_with_other_permits() {
    // Reads an attribute of the target account, which a sub-account the
    // caller only names does not have.
    let p = r#"
@id("ops.target-tier")
permit (principal, action in Rampart::Action::"read", resource)
when { context.account.kyc_tier >= 1 };
"#;
    let a = authorizer(&[("ops.cedar", p)]);
    let k = prepared(&a, &key("k", "A", &["read"]), 1);
    let mut r = req("GetAccount", "read");
    let d = a.authorize(&k, &r);
    allow(&d);
    assert_eq!(d.policies, vec!["default.kyc1.read", "ops.target-tier"]);
    r.target_account = Some("A-sub");
    r.target_account_parent = Some("A");
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert_eq!(d.policies, vec!["ops.target-tier"]);
    assert!(!d.errors.is_empty());
}

#[test]
fn requests_that_cannot_be_expressed_are_denied() {
    let a = authorizer(&[]);
    let k = prepared(&a, &key("k", "A", &["trade", "read"]), 2);
    // Unknown action, action group, unknown instrument.
    for (action, instrument) in [
        ("Teleport", None),
        ("trade", None),
        ("PlaceOrder", Some("DOGE-USD")),
    ] {
        let mut r = req(action, "trade");
        r.instrument = instrument;
        let d = a.authorize(&k, &r);
        deny(&d, DenyCode::ForbiddenByPolicy);
        assert_eq!(d.errors.len(), 1, "{d:?}");
    }
    let d = a.authorize(&k, &{
        let mut r = req("PlaceOrder", "trade");
        r.instrument = Some("DOGE-USD");
        r
    });
    assert_eq!(d.errors, vec!["unknown instrument `DOGE-USD`"]);
    // Instrument and order disagree.
    let o = order("BTC-USD", "1");
    let mut r = req("PlaceOrder", "trade");
    r.order = Some(&o);
    r.instrument = Some("BTC-PERP");
    deny(&a.authorize(&k, &r), DenyCode::ForbiddenByPolicy);
    r.instrument = Some("BTC-USD");
    allow(&a.authorize(&k, &r));
}

#[test]
fn order_decimals_round_up_or_deny() {
    let a = authorizer(&[]);
    let k = prepared(&a, &key("k", "A", &["trade"]), 2);
    for (qty, ok) in [
        ("0.5", true),
        ("0.0001", true),
        ("1.50000000", true),
        ("922337203685477.5807", true),
        ("0.00001", true),
        ("0.12345678", true),
        ("922337203685477.5808", false),
        ("1e9", false),
        ("NaN", false),
        ("", false),
    ] {
        let o = order("BTC-USD", qty);
        let mut r = req("PlaceOrder", "trade");
        r.order = Some(&o);
        let d = a.authorize(&k, &r);
        assert_eq!(d.allowed, ok, "{qty}: {d:?}");
        if !ok {
            assert_eq!(d.code, Some(DenyCode::ForbiddenByPolicy));
            assert!(d.errors[0].contains(qty), "{d:?}");
        }
    }
    let mut o = order("BTC-USD", "1");
    o.notional = Some("1e3".into());
    let mut r = req("PlaceOrder", "trade");
    r.order = Some(&o);
    let d = a.authorize(&k, &r);
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert!(d.errors[0].contains("notional"), "{d:?}");
}

#[test]
fn a_size_beyond_four_decimals_is_rounded_up_for_upper_limits() {
    // 10.00001 must not slip under a `qty > 10` forbid by rounding down.
    let a = authorizer(&[(
        "desk.cedar",
        r#"@id("max-ten") forbid(principal, action == Rampart::Action::"PlaceOrder", resource)
when { context has order && context.order.qty.greaterThan(decimal("10.0")) };"#,
    )]);
    let k = prepared(&a, &key("k", "A", &["trade"]), 2);
    for (qty, ok) in [("10", true), ("10.00001", false), ("9.99999", true)] {
        let o = order("BTC-USD", qty);
        let mut r = req("PlaceOrder", "trade");
        r.order = Some(&o);
        assert_eq!(a.authorize(&k, &r).allowed, ok, "{qty}");
    }
}

#[test]
fn inconsistent_prepared_keys_deny_everything() {
    let a = authorizer(&[]);
    let k = a.prepare_key(&key("k", "A", &["read"]), &account("B", None, 2), None);
    assert!(k.error().is_some());
    deny(
        &a.authorize(&k, &req("GetTime", "public")),
        DenyCode::ForbiddenByPolicy,
    );
    // Parent facts for the wrong account.
    let k = a.prepare_key(
        &key("k", "A", &["read"]),
        &account("A", Some("P"), 2),
        Some(&account("Q", None, 2)),
    );
    assert!(k.error().is_some());
    // A cycle.
    let k = a.prepare_key(
        &key("k", "A", &["read"]),
        &account("A", Some("P"), 2),
        Some(&account("P", Some("A"), 2)),
    );
    assert!(k.error().is_some());
    deny(
        &a.authorize(&k, &req("GetTime", "public")),
        DenyCode::ForbiddenByPolicy,
    );
    let k = a.prepare_key(&key("k", "A", &["read"]), &account("A", Some("A"), 2), None);
    assert!(k.error().is_some());
}

// ---------------------------------------------------------------- explain

#[test]
fn explain_shows_the_forbidding_policy() {
    let desk =
        "@id(\"desk.no-B\")\nforbid (principal in Rampart::Account::\"B\", action, resource);\n";
    let a = authorizer(&[("desk.cedar", desk)]);
    let mut ks = key("kb", "B", &["read"]);
    ks.nets = vec!["10.0.0.0/8".parse().unwrap()];
    let k = prepared(&a, &ks, 1);
    let e = a.explain(&k, &req("GetAccount", "read"));
    deny(&e.decision, DenyCode::ForbiddenByPolicy);
    assert_eq!(e.decision.policies, vec!["desk.no-B"]);
    let f = &e.satisfied[0];
    assert_eq!(f.id, "desk.no-B");
    assert_eq!(f.effect, Effect::Forbid);
    assert_eq!(f.source, "desk.cedar");
    assert_eq!(f.text, desk.trim_end());
    // The satisfied permit is listed too.
    assert!(e.satisfied.iter().any(|p| p.id == "default.kyc1.read"
        && p.effect == Effect::Permit
        && p.source == "defaults.cedar"));
    assert!(e
        .key_policies
        .contains("principal == Rampart::ApiKey::\"kb\""));
    assert!(e.key_policies.contains("ip(\"10.0.0.0/8\")"));

    let e = a.explain(&k, &req("CancelOrder", "trade"));
    let scope = e.satisfied.iter().find(|p| p.id == "key.scope").unwrap();
    assert_eq!(scope.code, Some(DenyCode::ScopeMissing));
    assert_eq!(scope.source, "keys.cedar");
    assert!(scope
        .text
        .contains("principal.scopes.contains(context.required_scope)"));
}

#[test]
fn rendered_key_policies_validate_against_the_schema() {
    let schema = Schema::from_cedarschema_str(schema_text()).unwrap().0;
    let validator = Validator::new(schema);
    let mut ks = KeySettings {
        key_id: "k\"1\\é".into(),
        account_id: "A".into(),
        scopes: vec!["read".into(), "trade".into()],
        instruments: vec!["BTC-USD".into()],
        products: vec!["spot".into(), "perp".into()],
        nets: vec![
            "10.1.2.3/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        expires_at_ms: Some(NOW_MS),
        read_only: true,
    };
    for _ in 0..2 {
        let text = render_key_policies(&ks);
        let set: PolicySet = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let r = validator.validate(&set, ValidationMode::Strict);
        assert!(r.validation_passed(), "{r}\n{text}");
        // And it loads next to the generic policies (no id clash).
        authorizer(&[("render.cedar", &text)]);
        ks = KeySettings {
            key_id: "plain".into(),
            account_id: "A".into(),
            ..KeySettings::default()
        };
    }
    assert!(key_policies_text().contains("@id(\"key.scope\")"));
}

#[test]
fn config_defaults() {
    let c = AuthzConfig::default();
    assert!(!c.defaults);
    let a = Authorizer::new(&c).unwrap();
    assert_eq!(a.policy_count(), 8);
}

#[test]
fn prepared_keys_see_the_account_facts_they_were_prepared_with() {
    let a = authorizer(&[]);
    let ks = key("k", "A", &["read"]);
    let old = a.prepare_key(&ks, &account("A", None, 0), None);
    deny(
        &a.authorize(&old, &req("GetAccount", "read")),
        DenyCode::ForbiddenByPolicy,
    );
    // The account is upgraded; a key prepared now sees it, the old one not.
    let new = a.prepare_key(&ks, &account("A", None, 1), None);
    allow(&a.authorize(&new, &req("GetAccount", "read")));
    deny(
        &a.authorize(&old, &req("GetAccount", "read")),
        DenyCode::ForbiddenByPolicy,
    );
    // Another key of the same account shares the current facts.
    let other = a.prepare_key(&key("k2", "A", &["read"]), &account("A", None, 1), None);
    allow(&a.authorize(&other, &req("GetAccount", "read")));
}

#[test]
fn three_level_hierarchy_is_closed() {
    let desk = r#"@id("desk.gp") forbid (principal in Rampart::Account::"GP", action in Rampart::Action::"trade", resource);"#;
    let a = authorizer(&[("desk.cedar", desk)]);
    let sub = account("S", Some("P"), 1);
    let parent = account("P", Some("GP"), 1);
    let k = a.prepare_key(&key("k", "S", &["trade"]), &sub, Some(&parent));
    let d = a.authorize(&k, &req("CancelOrder", "trade"));
    deny(&d, DenyCode::ForbiddenByPolicy);
    assert_eq!(d.policies, vec!["desk.gp"]);
    // The key's account may act on a sub-account of its own, which is
    // also under P and GP.
    let mut r = req("GetAccount", "read");
    r.target_account = Some("S-child");
    r.target_account_parent = Some("S");
    let k = a.prepare_key(&key("k", "S", &["read"]), &sub, Some(&parent));
    allow(&a.authorize(&k, &r));
    let (_, entities) = a.cedar_request(&k, &r).unwrap();
    for anc in ["S", "P", "GP"] {
        let child: cedar_policy::EntityUid = r#"Rampart::Account::"S-child""#.parse().unwrap();
        let anc: cedar_policy::EntityUid = format!("Rampart::Account::\"{anc}\"").parse().unwrap();
        assert!(entities.is_ancestor_of(&anc, &child));
    }
}
