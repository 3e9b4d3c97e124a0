//! The shipped policies (`keys.cedar`, and `defaults.cedar` when loaded),
//! evaluated in Rust.
//!
//! The Cedar text stays the specification: it is parsed, validated against
//! the schema, shown by `rampart policy explain` and evaluated by
//! [`Authorizer::authorize_unindexed`](super::Authorizer::authorize_unindexed),
//! the reference. This module computes, for one request, exactly which of
//! those policies Cedar would find satisfied — none of them can error on a
//! request the authorizer accepts (every attribute they read is always
//! present: the key's, its own account's, the catalogue instrument's) — so
//! the decision no longer pays Cedar's interpreter (~0.65 µs a policy) nor,
//! when no operator policy applies, the building of the Cedar request at
//! all. `tests/authz_prop.rs` checks the result against plain Cedar over
//! random key settings, accounts and requests, and a unit test below that
//! the policy ids here are exactly the shipped files' ids.
//!
//! Each function is named after the policy it mirrors; keep the two in
//! step (the property test fails when they drift).

use std::net::IpAddr;

use cedar_policy::EntityUid;

use super::{DenyCode, Outcome, RequestFacts};

/// Key-settings policy ids (`keys.cedar`), in file order.
#[cfg(test)]
pub(crate) const KEY_IDS: [&str; 8] = [
    "key.expired",
    "key.ip",
    "key.scope",
    "key.read_only",
    "key.instrument",
    "key.product",
    "key.account",
    "key.withdrawal_address",
];

/// Default policy ids (`defaults.cedar`), in file order.
#[cfg(test)]
pub(crate) const DEFAULT_IDS: [&str; 7] = [
    "default.public",
    "default.kyc1.read",
    "default.kyc1.spot",
    "default.kyc2.derivatives",
    "default.kyc1.withdraw",
    "default.kyc1.manage",
    "default.mfa",
];

/// The built-in groups a concrete action is in (transitively).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Groups {
    pub(crate) public: bool,
    pub(crate) read: bool,
    pub(crate) trade: bool,
    pub(crate) withdraw: bool,
    pub(crate) manage: bool,
    pub(crate) sensitive: bool,
}

impl Groups {
    /// From the action's ancestor groups.
    pub(crate) fn of<'a>(groups: impl IntoIterator<Item = &'a EntityUid>) -> Self {
        let mut g = Self::default();
        for u in groups {
            if u.type_name().to_string() != "Rampart::Action" {
                continue;
            }
            match u.id().unescaped() {
                "public" => g.public = true,
                "read" => g.read = true,
                "trade" => g.trade = true,
                "withdraw" => g.withdraw = true,
                "manage" => g.manage = true,
                "sensitive" => g.sensitive = true,
                _ => {}
            }
        }
        g
    }
}

/// The key's facts the shipped policies read, kept beside its entities.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyFacts {
    /// `principal.expires_at` (seconds, rounded down) when `expires`.
    pub(crate) expires_at_s: Option<i64>,
    /// `principal.nets`, truncated to their network address.
    pub(crate) nets: Vec<ipnet::IpNet>,
    pub(crate) scopes: Vec<String>,
    pub(crate) instruments: Vec<String>,
    pub(crate) products: Vec<String>,
    pub(crate) read_only: bool,
    /// `principal.account`.
    pub(crate) account: AccountAttrs,
    /// The parent account's, when its facts were given (then it is in the
    /// request's entities).
    pub(crate) parent: Option<AccountAttrs>,
    /// The key's ancestors, by id: account, parent, grandparent.
    pub(crate) chain: Vec<String>,
}

/// An account entity's attributes.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccountAttrs {
    pub(crate) kyc_tier: i64,
    pub(crate) risk_profile: String,
    pub(crate) withdrawal_addresses: Vec<String>,
}

impl AccountAttrs {
    pub(crate) fn of(a: &super::AccountFacts) -> Self {
        Self {
            kyc_tier: i64::from(a.kyc_tier),
            risk_profile: a.risk_profile.clone(),
            withdrawal_addresses: a.withdrawal_addresses.clone(),
        }
    }
}

/// What the request resolves to, beyond its facts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved<'a> {
    pub(crate) groups: Groups,
    /// `(symbol, product)` when the resource is an instrument.
    pub(crate) instrument: Option<(&'a str, &'a str)>,
    /// `context.account in principal.account` (the target account is the
    /// key's own or below it). When the resource is an account it is that
    /// same target, so this is also `resource in principal.account`.
    pub(crate) target_in_own: bool,
}

/// Adds the satisfied shipped policies to `out`.
pub(crate) fn evaluate(
    key: &KeyFacts,
    req: &RequestFacts<'_>,
    r: &Resolved<'_>,
    defaults: bool,
    out: &mut Outcome,
) {
    let forbid = |out: &mut Outcome, id: &'static str, code: Option<DenyCode>| {
        out.native_forbids
            .push((id, code.unwrap_or(DenyCode::ForbiddenByPolicy)));
    };
    let g = r.groups;
    let now = req.now_ms.div_euclid(1000);
    // key.expired
    if key.expires_at_s.is_some_and(|e| e <= now) {
        forbid(out, "key.expired", Some(DenyCode::KeyExpired));
    }
    // key.ip
    if !key.nets.is_empty() {
        let ip: IpAddr = req.source_ip.to_canonical();
        if !key.nets.iter().any(|n| n.contains(&ip)) {
            forbid(out, "key.ip", Some(DenyCode::IpNotAllowed));
        }
    }
    // key.scope
    if !(req.required_scope == "public" || key.scopes.iter().any(|s| s == req.required_scope)) {
        forbid(out, "key.scope", Some(DenyCode::ScopeMissing));
    }
    // key.read_only
    if key.read_only && !(g.public || g.read) {
        forbid(out, "key.read_only", Some(DenyCode::ScopeMissing));
    }
    if let Some((symbol, product)) = r.instrument {
        // key.instrument
        if !(g.public || key.instruments.is_empty() || key.instruments.iter().any(|i| i == symbol))
        {
            forbid(out, "key.instrument", None);
        }
        // key.product
        if !(g.public || key.products.is_empty() || key.products.iter().any(|p| p == product)) {
            forbid(out, "key.product", None);
        }
    }
    // key.account
    if !r.target_in_own {
        forbid(out, "key.account", None);
    }
    // key.withdrawal_address
    if g.withdraw
        && !req
            .withdrawal
            .is_some_and(|(_, a)| key.account.withdrawal_addresses.iter().any(|w| w == a))
    {
        forbid(out, "key.withdrawal_address", None);
    }
    if !defaults {
        return;
    }
    let tier = key.account.kyc_tier;
    let mut permit = |id: &'static str| out.native_permits.push(id);
    if g.public {
        permit("default.public");
    }
    if g.read && tier >= 1 {
        permit("default.kyc1.read");
    }
    if g.trade && tier >= 1 && r.instrument.is_none_or(|(_, product)| product == "spot") {
        permit("default.kyc1.spot");
    }
    if g.trade && r.instrument.is_some() && tier >= 2 {
        permit("default.kyc2.derivatives");
    }
    if g.withdraw && tier >= 1 {
        permit("default.kyc1.withdraw");
    }
    if g.manage && tier >= 1 {
        permit("default.kyc1.manage");
    }
    // default.mfa
    if g.sensitive && req.mfa_age_secs.is_none_or(|a| a > 300) {
        forbid(out, "default.mfa", Some(DenyCode::MfaRequired));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::PolicySet;

    fn ids(text: &str) -> Vec<String> {
        let set: PolicySet = text.parse().unwrap();
        let mut v: Vec<(usize, String)> = set
            .policies()
            .map(|p| {
                let n = p
                    .id()
                    .to_string()
                    .strip_prefix("policy")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(usize::MAX);
                (n, p.annotation("id").unwrap_or_default().to_string())
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }

    #[test]
    fn native_ids_are_the_shipped_files_ids() {
        assert_eq!(ids(super::super::KEY_POLICIES), KEY_IDS.to_vec());
        assert_eq!(ids(super::super::DEFAULT_POLICIES), DEFAULT_IDS.to_vec());
    }
}
