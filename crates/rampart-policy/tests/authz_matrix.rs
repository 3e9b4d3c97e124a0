//! The shipped policies as a decision table: every demo action × scope set ×
//! KYC tier × product (order entry) × MFA state, against an independent
//! plain-Rust statement of what the defaults mean.
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

use common::*;
use rampart_policy::authz::{DenyCode, OrderFacts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Public,
    Read,
    Trade,
    Withdraw,
}

/// The one table: action, the scope its route requires, its class.
const ACTIONS: [(&str, &str, Class); 9] = [
    ("GetTime", "public", Class::Public),
    ("GetMarkets", "public", Class::Public),
    ("GetBook", "public", Class::Public),
    ("GetAccount", "read", Class::Read),
    ("ListOrders", "read", Class::Read),
    ("StreamEvents", "read", Class::Read),
    ("PlaceOrder", "trade", Class::Trade),
    ("CancelOrder", "trade", Class::Trade),
    ("Withdraw", "withdraw", Class::Withdraw),
];

const SCOPE_SETS: [&[&str]; 5] = [
    &[],
    &["read"],
    &["read", "trade"],
    &["read", "withdraw"],
    &["read", "trade", "withdraw"],
];

const TIERS: [u8; 3] = [0, 1, 2];

/// Seconds since MFA: none, fresh, stale.
const MFA: [Option<u64>; 3] = [None, Some(10), Some(600)];

/// What the shipped policies promise, stated independently of Cedar.
fn expected(
    scope: &str,
    class: Class,
    scopes: &[&str],
    tier: u8,
    product: Option<&str>,
    mfa: Option<u64>,
) -> Result<(), DenyCode> {
    // Key facts outrank MFA, which outranks everything else.
    if scope != "public" && !scopes.contains(&scope) {
        return Err(DenyCode::ScopeMissing);
    }
    let sensitive = class == Class::Withdraw;
    if sensitive && mfa.is_none_or(|age| age > 300) {
        return Err(DenyCode::MfaRequired);
    }
    let permitted = match class {
        Class::Public => true,
        Class::Read | Class::Withdraw => tier >= 1,
        Class::Trade => match product {
            None | Some("spot") => tier >= 1,
            Some(_) => tier >= 2,
        },
    };
    if permitted {
        Ok(())
    } else {
        Err(DenyCode::ForbiddenByPolicy)
    }
}

#[test]
fn decision_matrix() {
    let a = authorizer(&[]);
    let mut cases = 0usize;
    let mut failures = Vec::new();
    for (action, scope, class) in ACTIONS {
        let products: &[Option<&str>] = if action == "PlaceOrder" {
            &[Some("spot"), Some("perp")]
        } else {
            &[None]
        };
        for scopes in SCOPE_SETS {
            for tier in TIERS {
                let k = prepared(&a, &key("k", "A", scopes), tier);
                for &product in products {
                    for mfa in MFA {
                        let order = product.map(|p| OrderFacts {
                            side: "buy".into(),
                            order_type: "limit".into(),
                            qty: "0.5".into(),
                            notional: Some("32500.25".into()),
                            instrument: if p == "spot" { "BTC-USD" } else { "BTC-PERP" }.into(),
                        });
                        let mut r = req(action, scope);
                        r.order = order.as_ref();
                        r.mfa_age_secs = mfa;
                        if class == Class::Withdraw {
                            r.withdrawal = Some(("BTC", "addr-ok"));
                        }
                        let d = a.authorize(&k, &r);
                        let want = expected(scope, class, scopes, tier, product, mfa);
                        let got = if d.allowed {
                            Ok(())
                        } else {
                            Err(d.code.unwrap())
                        };
                        cases += 1;
                        if got != want || !d.errors.is_empty() {
                            failures.push(format!(
                                "{action} scopes={scopes:?} tier={tier} product={product:?} mfa={mfa:?}: want {want:?}, got {d:?}"
                            ));
                        }
                        assert_eq!(a.authorize_unindexed(&k, &r), d);
                    }
                }
            }
        }
    }
    assert_eq!(cases, 10 * 5 * 3 * 3);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
