//! Properties of the authorizer over random policy sets and requests:
//! the indexed evaluation agrees with plain Cedar over the whole set (with
//! errors → deny on top), a satisfied forbid always denies, an evaluation
//! error never allows; and the rendered per-key policies agree with the
//! generic key-settings policies.
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

use std::collections::BTreeSet;
use std::net::IpAddr;

use cedar_policy::{Decision as CedarDecision, PolicyId, PolicySet};
use common::*;
use proptest::prelude::*;
use proptest::sample::select;
use rampart_policy::authz::{
    key_policies_text, render_key_policies, Authorizer, KeySettings, OrderFacts, PreparedKey,
    RequestFacts,
};

const ACCOUNTS: [&str; 4] = ["A", "AS", "B", "AS2"];
const KEYS: [(&str, &str); 3] = [("kA", "A"), ("kAS", "AS"), ("kB", "B")];
const ACTIONS: [&str; 8] = [
    "GetTime",
    "GetAccount",
    "ListOrders",
    "PlaceOrder",
    "CancelOrder",
    "Withdraw",
    "CreateKey",
    "Stream",
];
const GROUPS: [&str; 6] = ["public", "read", "trade", "withdraw", "sensitive", "manage"];
const INSTRUMENTS: [&str; 4] = ["BTC-USD", "ETH-USD", "BTC-PERP", "BTC-C-70000"];
const CODES: [&str; 5] = [
    "KEY_EXPIRED",
    "IP_NOT_ALLOWED",
    "SCOPE_MISSING",
    "MFA_REQUIRED",
    "FORBIDDEN_BY_POLICY",
];

fn principal() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("principal".to_string()),
        Just("principal is Rampart::ApiKey".to_string()),
        select(KEYS.to_vec()).prop_map(|(k, _)| format!("principal == Rampart::ApiKey::\"{k}\"")),
        select(ACCOUNTS.to_vec()).prop_map(|a| format!("principal in Rampart::Account::\"{a}\"")),
        select(ACCOUNTS.to_vec())
            .prop_map(|a| format!("principal is Rampart::ApiKey in Rampart::Account::\"{a}\"")),
        select(KEYS.to_vec()).prop_map(|(k, _)| format!("principal in Rampart::ApiKey::\"{k}\"")),
    ]
}

fn action() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("action".to_string()),
        select(ACTIONS.to_vec()).prop_map(|a| format!("action == Rampart::Action::\"{a}\"")),
        select(GROUPS.to_vec()).prop_map(|g| format!("action in Rampart::Action::\"{g}\"")),
        (select(ACTIONS.to_vec()), select(GROUPS.to_vec())).prop_map(|(a, g)| format!(
            "action in [Rampart::Action::\"{a}\", Rampart::Action::\"{g}\"]"
        )),
    ]
}

fn resource() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("resource".to_string()),
        Just("resource is Rampart::Instrument".to_string()),
        Just("resource is Rampart::Account".to_string()),
        select(INSTRUMENTS.to_vec())
            .prop_map(|i| format!("resource == Rampart::Instrument::\"{i}\"")),
        select(ACCOUNTS.to_vec()).prop_map(|a| format!("resource in Rampart::Account::\"{a}\"")),
    ]
}

/// Well-typed conditions; some fail at run time (overflow, an attribute of
/// an account entity the authorizer only knows by id).
fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        (0i64..3).prop_map(|n| format!("principal.account.kyc_tier >= {n}")),
        select(vec!["read", "trade", "withdraw"])
            .prop_map(|s| format!("principal.scopes.contains(\"{s}\")")),
        (0i64..100).prop_map(|n| format!("context.risk_score > {n}")),
        // Overflows when risk_score >= 2.
        Just("context.risk_score * 4611686018427387904 > 1".to_string()),
        // Overflows when the hour >= 1.
        Just("context.hour + 9223372036854775807 > 0".to_string()),
        // Errors when the target account is only known by id.
        Just("context.account.kyc_tier >= 1".to_string()),
        (0i64..400).prop_map(|n| format!("(context has mfa_age && context.mfa_age < {n})")),
        Just("(resource is Rampart::Instrument && resource.product == \"perp\")".to_string()),
        select(vec!["0.5", "1.0", "100.0"]).prop_map(|q| format!(
            "(context has order && context.order.qty.greaterThan(decimal(\"{q}\")))"
        )),
        Just("context.source_ip.isInRange(ip(\"10.0.0.0/8\"))".to_string()),
        (0i64..24).prop_map(|h| format!("context.hour < {h}")),
        Just("context.account in principal.account".to_string()),
        Just("principal.any_ip".to_string()),
        extra_atom(),
    ]
}

/// More of the language, for the compiled evaluation of operator policies
/// (`compiled.rs`): every construct it models, and some it does not (which
/// Cedar then evaluates).
fn extra_atom() -> impl Strategy<Value = String> {
    select(vec![
        "principal.account.risk_profile == \"retail\"",
        "principal.account in Rampart::Account::\"A\"",
        "principal in principal.account",
        "(resource is Rampart::Instrument && resource.symbol == \"BTC-USD\")",
        "resource in Rampart::Account::\"AS\"",
        "(context has order && context.order.side == \"sell\")",
        "(context has order && context.order.type != \"market\")",
        "(context has order && context.order has notional && context.order.notional.lessThan(decimal(\"10.0\")))",
        "(context has order && context.order.qty == decimal(\"0.5000\"))",
        "(context has order && context.order.qty.lessThanOrEqual(decimal(\"-1.5\")))",
        "(context has order && context.order.qty.greaterThanOrEqual(decimal(\"2.0\")))",
        "(context has order && context.order.instrument == \"BTC-PERP\")",
        "(context has withdrawal && context.withdrawal.address == \"addr-ok\")",
        "(context has withdrawal && context.withdrawal.asset like \"BT*\")",
        "principal.nets.contains(ip(\"10.0.0.0/8\"))",
        "(context has source_net && context.source_net == ip(\"10.0.0.0/8\"))",
        "context.source_ip.isIpv4()",
        "context.source_ip.isIpv6()",
        "context.source_ip.isLoopback()",
        "context.source_ip.isMulticast()",
        "context.source_ip.isInRange(ip(\"2001:db8::/32\"))",
        "[1, 2, 3].contains(context.risk_score)",
        "principal.scopes.containsAll([\"read\", \"trade\"])",
        "principal.scopes.containsAny([\"withdraw\"])",
        "principal.instruments.isEmpty()",
        "(if context.risk_score > 50 then context.hour < 12 else principal.read_only)",
        "-context.risk_score < -10",
        "context.risk_score - 3 >= 0",
        "(principal.expires && principal.expires_at <= context.now)",
        "action in Rampart::Action::\"trade\"",
        "action == Rampart::Action::\"Withdraw\"",
        "principal.account.withdrawal_addresses.contains(\"addr-ok\")",
        "context.account == principal.account",
        "principal is Rampart::ApiKey",
        "Rampart::Account::\"A\".kyc_tier >= 1",
        "Rampart::Instrument::\"ETH-USD\".product == \"spot\"",
        "context.required_scope == \"trade\"",
        "[context.account, principal.account].contains(Rampart::Account::\"AS\")",
        "context.account in [Rampart::Account::\"A\", Rampart::Account::\"B\"]",
        "(context has mfa_age && context.mfa_age * 2 <= 600)",
        "principal.products.containsAny([\"perp\", \"option\"])",
        "principal.nets == [ip(\"10.0.0.0/8\")]",
        "!(context has mfa_age)",
        "context has source_net",
        "(context has order && !(context.order has notional))",
        "principal.account has risk_profile",
        "context.account has kyc_tier",
        "resource has product",
    ])
    .prop_map(str::to_string)
}

fn condition() -> impl Strategy<Value = String> {
    combine(atom().boxed())
}

/// Conditions without the atoms that fail at run time (overflows, the
/// attributes of an account known only by id), so that the compiled
/// evaluation usually decides on its own.
fn safe_condition() -> impl Strategy<Value = String> {
    combine(
        prop_oneof![
            extra_atom(),
            extra_atom(),
            (0i64..3).prop_map(|n| format!("principal.account.kyc_tier >= {n}")),
            (0i64..100).prop_map(|n| format!("context.risk_score > {n}")),
            (0i64..24).prop_map(|h| format!("context.hour < {h}")),
            Just("context.account in principal.account".to_string()),
        ]
        .boxed(),
    )
}

fn combine(atom: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    atom.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

fn policy() -> impl Strategy<Value = String> {
    policy_with(condition().boxed())
}

fn policy_with(condition: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        proptest::option::of(select(CODES.to_vec())),
        principal(),
        action(),
        resource(),
        proptest::collection::vec((any::<bool>(), condition), 0..3),
    )
        .prop_map(|(permit, code, p, a, r, conds)| {
            let mut s = String::new();
            if let (false, Some(c)) = (permit, code) {
                s.push_str(&format!("@code(\"{c}\")\n"));
            }
            s.push_str(if permit { "permit" } else { "forbid" });
            s.push_str(&format!(" ({p}, {a}, {r})"));
            for (when, c) in conds {
                s.push_str(if when { " when { " } else { " unless { " });
                s.push_str(&c);
                s.push_str(" }");
            }
            s.push_str(";\n");
            s
        })
}

#[derive(Debug, Clone)]
struct Req {
    key: usize,
    action: &'static str,
    scope: &'static str,
    target: Option<(&'static str, Option<&'static str>)>,
    instrument: Option<&'static str>,
    ip: IpAddr,
    risk: u8,
    mfa: Option<u64>,
    now_ms: i64,
    order_qty: Option<&'static str>,
    withdrawal: Option<&'static str>,
}

fn request() -> impl Strategy<Value = Req> {
    (
        (
            0usize..KEYS.len(),
            select(ACTIONS.to_vec()),
            select(vec!["public", "read", "trade", "withdraw"]),
            proptest::option::of((
                select(ACCOUNTS.to_vec()),
                proptest::option::of(select(ACCOUNTS.to_vec())),
            )),
            proptest::option::of(select(INSTRUMENTS.to_vec())),
        ),
        (
            select(vec![
                "10.1.2.3",
                "192.0.2.7",
                "2001:db8::1",
                "::ffff:10.1.2.3",
            ]),
            prop_oneof![Just(0u8), Just(1), Just(2), 0u8..=100],
            proptest::option::of(0u64..600),
            0i64..(3 * 86_400_000),
            proptest::option::of(select(vec!["0.5", "2", "150.25", "0.00001"])),
            proptest::option::of(select(vec!["addr-ok", "addr-evil"])),
        ),
    )
        .prop_map(
            |((key, action, scope, target, instrument), (ip, risk, mfa, t, qty, w))| Req {
                key,
                action,
                scope,
                target,
                instrument,
                ip: ip.parse().unwrap(),
                risk,
                mfa,
                now_ms: NOW_MS + t,
                order_qty: qty,
                withdrawal: w,
            },
        )
}

fn keys(a: &Authorizer, tiers: &[u8; 3]) -> Vec<PreparedKey> {
    let accounts = [
        account("A", None, tiers[0]),
        account("AS", Some("A"), tiers[1]),
        account("B", None, tiers[2]),
    ];
    let mut k_as = key("kAS", "AS", &["read", "trade"]);
    k_as.nets = vec!["10.0.0.0/8".parse().unwrap()];
    vec![
        a.prepare_key(
            &key("kA", "A", &["read", "trade", "withdraw"]),
            &accounts[0],
            None,
        ),
        a.prepare_key(&k_as, &accounts[1], Some(&accounts[0])),
        a.prepare_key(&key("kB", "B", &["read"]), &accounts[2], None),
    ]
}

fn facts<'a>(r: &'a Req, order: Option<&'a OrderFacts>) -> RequestFacts<'a> {
    RequestFacts {
        action: r.action,
        required_scope: r.scope,
        target_account: r.target.map(|t| t.0),
        target_account_parent: r.target.and_then(|t| t.1),
        instrument: r.instrument,
        source_ip: r.ip,
        risk_score: r.risk,
        mfa_age_secs: r.mfa,
        now_ms: r.now_ms,
        order,
        withdrawal: r.withdrawal.map(|w| ("BTC", w)),
    }
}

fn order_for(r: &Req) -> Option<OrderFacts> {
    r.order_qty.map(|q| OrderFacts {
        side: "sell".into(),
        order_type: "limit".into(),
        qty: q.into(),
        notional: None,
        instrument: r.instrument.unwrap_or("BTC-USD").into(),
    })
}

/// The request's entity hierarchy, computed independently: the key's chain
/// (key → account → parent) plus, for a target outside that chain, the edge
/// to its claimed parent (unless it claims itself); `in` is reachability.
fn check_hierarchy(r: &Req, entities: &cedar_policy::Entities) {
    let (key, account) = KEYS[r.key];
    let mut edges: Vec<(String, String)> = vec![(format!("k:{key}"), account.to_string())];
    if account == "AS" {
        edges.push(("AS".into(), "A".into()));
    }
    let chain: Vec<&str> = if account == "AS" {
        vec!["AS", "A"]
    } else {
        vec![account]
    };
    if let Some((t, Some(p))) = r.target {
        if !chain.contains(&t) && t != p {
            edges.push((t.to_string(), p.to_string()));
        }
    }
    let reach = |from: &str, to: &str| {
        let mut seen = vec![from.to_string()];
        let mut i = 0;
        while i < seen.len() {
            let cur = seen[i].clone();
            for (a, b) in &edges {
                if *a == cur && !seen.contains(b) {
                    seen.push(b.clone());
                }
            }
            i += 1;
        }
        from != to && seen.iter().any(|s| s == to)
    };
    let uid = |n: &str| -> cedar_policy::EntityUid {
        match n.strip_prefix("k:") {
            Some(k) => format!("Rampart::ApiKey::\"{k}\"").parse().unwrap(),
            None => format!("Rampart::Account::\"{n}\"").parse().unwrap(),
        }
    };
    let mut universe: Vec<String> = ACCOUNTS.iter().map(|a| a.to_string()).collect();
    universe.push(format!("k:{key}"));
    for a in &universe {
        for b in &universe {
            if a == b {
                continue;
            }
            assert_eq!(
                entities.is_ancestor_of(&uid(b), &uid(a)),
                reach(a, b),
                "{a} in {b}? {r:?}"
            );
        }
    }
}

/// Parses `text`, naming each policy by its `@id` (when it has one).
fn by_annotated_id(text: &str) -> PolicySet {
    let parsed: PolicySet = text.parse().unwrap();
    let mut out = PolicySet::new();
    for p in parsed.policies() {
        let p = match p.annotation("id") {
            Some(id) => p.new_id(PolicyId::new(id)),
            None => p.clone(),
        };
        out.add(p).unwrap();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn indexed_equals_reference_and_errors_never_allow(
        policies in proptest::collection::vec(policy(), 0..14),
        defaults in any::<bool>(),
        tiers in (0u8..3, 0u8..3, 0u8..3),
        reqs in proptest::collection::vec(request(), 1..24),
    ) {
        let text = policies.concat();
        let mut cfg = config(&[("random.cedar", &text)]);
        cfg.defaults = defaults;
        let a = match Authorizer::new(&cfg) {
            Ok(a) => a,
            Err(e) => panic!("{e}\n{text}"),
        };
        let ks = keys(&a, &[tiers.0, tiers.1, tiers.2]);
        let cedar = cedar_policy::Authorizer::new();
        for r in &reqs {
            let order = order_for(r);
            let f = facts(r, order.as_ref());
            let k = &ks[r.key];
            let d = a.authorize(k, &f);
            prop_assert_eq!(&a.authorize_unindexed(k, &f), &d);
            let Ok((request, entities)) = a.cedar_request(k, &f) else {
                // Not expressible: denied with the reason.
                prop_assert!(!d.allowed);
                prop_assert_eq!(d.errors.len(), 1);
                continue;
            };
            check_hierarchy(r, &entities);
            let resp = cedar.is_authorized(&request, a.policy_set(), &entities);
            let errored: BTreeSet<String> = resp
                .diagnostics()
                .errors()
                .map(|e| {
                    let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
                    e.policy_id().to_string()
                })
                .collect();
            let reasons: BTreeSet<String> =
                resp.diagnostics().reason().map(ToString::to_string).collect();
            let forbid_satisfied = resp.decision() == CedarDecision::Deny && !reasons.is_empty();
            // A satisfied forbid always denies; an error never allows.
            if forbid_satisfied || !errored.is_empty() {
                prop_assert!(!d.allowed, "{:?} {:?}\n{}", d, r, text);
            }
            // Reference: plain Cedar, errors → deny.
            let ref_allowed = resp.decision() == CedarDecision::Allow && errored.is_empty();
            prop_assert_eq!(d.allowed, ref_allowed, "{:?} {:?}\n{}", d, r, text);
            let got: BTreeSet<String> = d.policies.iter().cloned().collect();
            let want = if forbid_satisfied || errored.is_empty() { reasons } else { errored.clone() };
            prop_assert_eq!(got, want, "{:?} {:?}\n{}", d, r, text);
            prop_assert_eq!(d.errors.len(), resp.diagnostics().errors().count());
            // The explanation lists each satisfied forbid of a deny.
            if forbid_satisfied {
                let e = a.explain(k, &f);
                for id in &d.policies {
                    prop_assert!(e.satisfied.iter().any(|p| &p.id == id));
                }
            }
        }
    }

    #[test]
    fn missing_optional_attribute_without_has_is_refused(
        policies in proptest::collection::vec(policy(), 0..4),
        attr in select(vec!["context.mfa_age > 3", "context.order.qty.lessThan(decimal(\"1.0\"))", "context.withdrawal.address == \"x\"", "context.source_net == ip(\"10.0.0.0/8\")"]),
    ) {
        let text = format!("{}forbid (principal, action, resource) when {{ {attr} }};\n", policies.concat());
        let line = text.lines().count();
        let e = Authorizer::new(&config(&[("random.cedar", &text)])).unwrap_err();
        prop_assert_eq!(e.issues.len(), 1, "{}", e);
        prop_assert_eq!(e.issues[0].line, Some(line));
    }

    #[test]
    fn rendered_key_policies_match_the_generic_ones(
        scopes in proptest::sample::subsequence(vec!["read", "trade", "withdraw"], 0..=3),
        instruments in proptest::sample::subsequence(INSTRUMENTS.to_vec(), 0..=2),
        products in proptest::sample::subsequence(vec!["spot", "perp", "option"], 0..=2),
        nets in proptest::sample::subsequence(vec!["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"], 0..=2),
        expires in proptest::option::of(-5_000i64..5_000),
        read_only in any::<bool>(),
        reqs in proptest::collection::vec(request(), 1..12),
    ) {
        let a = authorizer(&[]);
        let ks = KeySettings {
            key_id: "kA".into(),
            account_id: "A".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            instruments: instruments.iter().map(|s| s.to_string()).collect(),
            products: products.iter().map(|s| s.to_string()).collect(),
            nets: nets.iter().map(|n| n.parse().unwrap()).collect(),
            expires_at_ms: expires.map(|e| NOW_MS + e),
            read_only,
        };
        let k = a.prepare_key(&ks, &account("A", None, 2), None);
        let permit_all = "permit (principal, action, resource);\n";
        let generic = by_annotated_id(&format!("{}{permit_all}", key_policies_text()));
        let per_key = by_annotated_id(&format!("{}{permit_all}", render_key_policies(&ks)));
        let cedar = cedar_policy::Authorizer::new();
        let norm = |id: String| id.rsplit('.').next().unwrap_or_default().to_string();
        for r in &reqs {
            let mut r = r.clone();
            r.now_ms = NOW_MS + (r.now_ms - NOW_MS) % 10_000 - 5_000;
            let order = order_for(&r);
            let f = facts(&r, order.as_ref());
            let Ok((request, entities)) = a.cedar_request(&k, &f) else { continue };
            let g = cedar.is_authorized(&request, &generic, &entities);
            let p = cedar.is_authorized(&request, &per_key, &entities);
            prop_assert_eq!(g.decision(), p.decision());
            prop_assert_eq!(g.diagnostics().errors().count(), 0);
            prop_assert_eq!(p.diagnostics().errors().count(), 0);
            let gs: BTreeSet<String> = g.diagnostics().reason().map(|i| norm(i.to_string())).collect();
            let ps: BTreeSet<String> = p.diagnostics().reason().map(|i| norm(i.to_string())).collect();
            if g.decision() == CedarDecision::Deny {
                prop_assert_eq!(gs, ps, "{:?}", r);
            }
        }
    }
}

/// Random key settings over the fixture accounts (`A`, its sub-account
/// `AS`, `B`), for the native evaluation of the shipped policies.
#[derive(Debug, Clone)]
struct RandomKey {
    account: usize,
    scopes: Vec<&'static str>,
    instruments: Vec<&'static str>,
    products: Vec<&'static str>,
    nets: Vec<&'static str>,
    expires: Option<i64>,
    read_only: bool,
}

fn random_key() -> impl Strategy<Value = RandomKey> {
    (
        0usize..3,
        proptest::sample::subsequence(vec!["read", "trade", "withdraw", "manage"], 0..=4),
        proptest::sample::subsequence(INSTRUMENTS.to_vec(), 0..=2),
        proptest::sample::subsequence(vec!["spot", "perp", "option"], 0..=2),
        prop_oneof![
            Just(Vec::new()),
            proptest::sample::subsequence(
                vec!["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "10.1.2.3/32"],
                0..=2,
            ),
        ],
        proptest::option::weighted(0.3, -5_000i64..(4 * 86_400_000)),
        any::<bool>(),
    )
        .prop_map(
            |(account, scopes, instruments, products, nets, expires, read_only)| RandomKey {
                account,
                scopes,
                instruments,
                products,
                nets,
                expires,
                read_only,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The shipped policies are evaluated in Rust (`native.rs`); plain Cedar
    /// over their text is the reference. Random key settings, KYC tiers,
    /// address books, account trees, actions of every group, targets,
    /// instruments, addresses, MFA ages and times; with and without the
    /// defaults, and with a few random operator policies so that native and
    /// Cedar results are combined.
    #[test]
    fn native_shipped_policies_equal_cedar(
        rk in random_key(),
        defaults in any::<bool>(),
        tiers in (0u8..3, 0u8..3, 0u8..3),
        addresses in proptest::sample::subsequence(vec!["addr-ok", "addr-evil", "addr-new"], 0..=2),
        policies in proptest::collection::vec(policy(), 0..3),
        actions in proptest::collection::vec(select(vec![
            "GetTime", "GetMarkets", "GetAccount", "ListOrders", "MfaVerify", "PlaceOrder",
            "CancelOrder", "Withdraw", "CreateKey", "ChangePermissions", "AddressBookChange",
            "DisableMFA", "Stream", "ListMarkets",
        ]), 1..6),
        reqs in proptest::collection::vec(request(), 1..24),
    ) {
        let text = policies.concat();
        let mut cfg = config(&[("random.cedar", &text)]);
        cfg.defaults = defaults;
        let a = Authorizer::new(&cfg).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let tiers = [tiers.0, tiers.1, tiers.2];
        let mut accounts = [
            account("A", None, tiers[0]),
            account("AS", Some("A"), tiers[1]),
            account("B", None, tiers[2]),
        ];
        for acc in &mut accounts {
            acc.withdrawal_addresses = addresses.iter().map(|s| s.to_string()).collect();
        }
        let ks = KeySettings {
            key_id: "kR".into(),
            account_id: accounts[rk.account].id.clone(),
            scopes: rk.scopes.iter().map(|s| s.to_string()).collect(),
            instruments: rk.instruments.iter().map(|s| s.to_string()).collect(),
            products: rk.products.iter().map(|s| s.to_string()).collect(),
            nets: rk.nets.iter().map(|n| n.parse().unwrap()).collect(),
            expires_at_ms: rk.expires.map(|e| NOW_MS + e),
            read_only: rk.read_only,
        };
        let parent = (rk.account == 1).then(|| &accounts[0]);
        let k = a.prepare_key(&ks, &accounts[rk.account], parent);
        for (r, action) in reqs.iter().zip(actions.iter().cycle()) {
            let mut r = r.clone();
            r.action = action;
            let order = order_for(&r);
            let f = facts(&r, order.as_ref());
            let d = a.authorize(&k, &f);
            prop_assert_eq!(&a.authorize_unindexed(&k, &f), &d, "{:?} {:?}\n{}", rk, r, text);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The compiled evaluation of operator policies (`compiled.rs`), on its
    /// own (no Cedar fallback), agrees with plain Cedar whenever it decides;
    /// and it does decide most requests of policies it models.
    #[test]
    fn compiled_operator_policies_equal_cedar(
        policies in proptest::collection::vec(policy_with(safe_condition().boxed()), 1..6),
        defaults in any::<bool>(),
        tiers in (0u8..3, 0u8..3, 0u8..3),
        reqs in proptest::collection::vec(request(), 8..24),
    ) {
        let text = policies.concat();
        let mut cfg = config(&[("random.cedar", &text)]);
        cfg.defaults = defaults;
        let a = Authorizer::new(&cfg).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let ks = keys(&a, &[tiers.0, tiers.1, tiers.2]);
        let mut decided = 0usize;
        for r in &reqs {
            let order = order_for(r);
            let f = facts(r, order.as_ref());
            let k = &ks[r.key];
            let reference = a.authorize_unindexed(k, &f);
            prop_assert_eq!(&a.authorize(k, &f), &reference, "{:?}\n{}", r, text);
            if let Some(d) = a.authorize_without_cedar(k, &f) {
                decided += 1;
                prop_assert_eq!(&d, &reference, "{:?}\n{}", r, text);
            }
        }
        COMPILED.with(|c| {
            let (d, n) = c.get();
            c.set((d + decided, n + reqs.len()));
        });
    }
}

thread_local! {
    static COMPILED: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// Most requests over modelled policies are decided without Cedar (the
/// rest hit a `like`, or a run-time error only Cedar reports).
#[test]
fn compiled_evaluation_decides_most_requests() {
    compiled_operator_policies_equal_cedar();
    let (decided, total) = COMPILED.with(std::cell::Cell::get);
    assert!(total > 1000, "{total}");
    assert!(
        decided * 10 >= total * 6,
        "{decided} of {total} decided without Cedar"
    );
    eprintln!("{decided} of {total} decided without Cedar");
}
