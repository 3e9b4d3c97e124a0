//! Fixtures shared by the authorization tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::{IpAddr, Ipv4Addr};

use rampart_policy::authz::{
    AccountFacts, ActionDef, Authorizer, AuthzConfig, InstrumentDef, KeySettings, PolicySource,
    PreparedKey, RequestFacts,
};

/// Now, in the fixtures (2023-11-14T22:13:20Z).
pub const NOW_MS: i64 = 1_700_000_000_000;

pub fn instruments() -> Vec<InstrumentDef> {
    [
        ("BTC-USD", "spot"),
        ("ETH-USD", "spot"),
        ("BTC-PERP", "perp"),
        ("BTC-C-70000", "option"),
    ]
    .into_iter()
    .map(|(s, p)| InstrumentDef {
        symbol: s.into(),
        product: p.into(),
    })
    .collect()
}

/// The demo's extra routes (names the built-in schema does not have).
pub fn demo_actions() -> Vec<ActionDef> {
    vec![
        ActionDef {
            name: "ListMarkets".into(),
            scope: "public".into(),
            groups: vec![],
        },
        ActionDef {
            name: "Stream".into(),
            scope: "read".into(),
            groups: vec![],
        },
        ActionDef {
            name: "PlaceOrder".into(),
            scope: "trade".into(),
            groups: vec![],
        },
    ]
}

pub fn config(sources: &[(&str, &str)]) -> AuthzConfig {
    AuthzConfig {
        actions: demo_actions(),
        instruments: instruments(),
        defaults: true,
        sources: sources
            .iter()
            .map(|(n, t)| PolicySource {
                name: (*n).into(),
                text: (*t).into(),
            })
            .collect(),
    }
}

pub fn authorizer(sources: &[(&str, &str)]) -> Authorizer {
    match Authorizer::new(&config(sources)) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

pub fn account(id: &str, parent: Option<&str>, tier: u8) -> AccountFacts {
    AccountFacts {
        id: id.into(),
        parent_id: parent.map(Into::into),
        kyc_tier: tier,
        risk_profile: "retail".into(),
        withdrawal_addresses: vec!["addr-ok".into()],
    }
}

pub fn key(id: &str, account: &str, scopes: &[&str]) -> KeySettings {
    KeySettings {
        key_id: id.into(),
        account_id: account.into(),
        scopes: scopes.iter().map(|s| (*s).into()).collect(),
        ..KeySettings::default()
    }
}

/// A key of a top-level account `A` with KYC tier `tier`.
pub fn prepared(a: &Authorizer, k: &KeySettings, tier: u8) -> PreparedKey {
    a.prepare_key(k, &account(&k.account_id, None, tier), None)
}

pub fn req<'a>(action: &'a str, scope: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        action,
        required_scope: scope,
        target_account: None,
        target_account_parent: None,
        instrument: None,
        source_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        risk_score: 0,
        mfa_age_secs: None,
        now_ms: NOW_MS,
        order: None,
        withdrawal: None,
    }
}
