//! Per-key entities (built once, cached by the caller) and the per-request
//! Cedar request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use cedar_policy::{
    Context, Entities, Entity, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use cedar_policy_core::entities::{
    Dereference, Entities as CoreEntities, NoEntitiesSchema, TCComputation,
};
use cedar_policy_core::extensions::Extensions;
use ipnet::IpNet;
use rust_decimal::Decimal;

use super::load::{uid, Types};
use super::native::{AccountAttrs, KeyFacts};
use super::{AccountFacts, KeySettings, RequestFacts};

/// Cedar's internal entity type: the per-request entity store is assembled
/// from shared (`Arc`) entities whose ancestors are already closed, instead
/// of cloning and re-closing every entity per request.
pub(crate) type CoreEntity = cedar_policy_core::ast::Entity;

/// Shares a built entity.
pub(crate) fn share(e: &Entity) -> Arc<CoreEntity> {
    Arc::new(AsRef::<CoreEntity>::as_ref(e).clone())
}

/// A key's Cedar entities (the key, its account, the account's parent),
/// built once by [`Authorizer::prepare_key`](super::Authorizer::prepare_key)
/// and passed with every request of that key. It does not depend on the
/// policies loaded, so it survives a policy reload.
#[derive(Debug, Clone)]
pub struct PreparedKey {
    settings: KeySettings,
    account_id: String,
    account_ty: EntityTypeName,
    key_uid: EntityUid,
    account_uid: EntityUid,
    /// Every entity the key is `in`: account, parent, grandparent.
    ancestors: Vec<EntityUid>,
    /// Key, account, parent (when known), transitively closed.
    base: CoreEntities,
    /// The key's ranges, truncated to their network address, with their
    /// Cedar values (the `source_net` witness).
    nets: Vec<(IpNet, RestrictedExpression)>,
    /// What the shipped policies read, for their native evaluation.
    pub(crate) facts: KeyFacts,
    /// Why requests of this key cannot be evaluated.
    error: Option<String>,
}

impl PreparedKey {
    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.settings.key_id
    }

    /// The key's account.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The settings the key was prepared from.
    pub fn settings(&self) -> &KeySettings {
        &self.settings
    }

    /// Why every request of this key is denied, for an inconsistent key.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The key's entity and its ancestors (account, parent, grandparent):
    /// the principal's index buckets.
    pub(crate) fn principal_chain(&self) -> (&EntityUid, &[EntityUid]) {
        (&self.key_uid, &self.ancestors)
    }

    /// Whether requests of this key can be evaluated at all (else why not).
    pub(crate) fn check(&self) -> Result<(), String> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The account a request acts on and its ancestors, exactly as the
    /// request's entities will have them (see [`Self::target_entity`]): the
    /// key's own account or one of its ancestors keeps its prepared
    /// ancestry; any other account is a new leaf under the claimed parent.
    /// Errors as `request` would.
    pub(crate) fn target(
        &self,
        req: &RequestFacts<'_>,
    ) -> Result<(std::borrow::Cow<'_, EntityUid>, Vec<EntityUid>), String> {
        use std::borrow::Cow;
        let target = match req.target_account {
            None => Cow::Borrowed(&self.account_uid),
            Some(t) if t == self.account_id => Cow::Borrowed(&self.account_uid),
            Some(t) => Cow::Owned(uid(&self.account_ty, t)),
        };
        let ancestors_in_base = |u: &EntityUid| -> Vec<EntityUid> {
            let core: cedar_policy_core::ast::EntityUID = u.clone().into();
            match self.base.entity(&core) {
                Dereference::Data(e) => e.ancestors().cloned().map(EntityUid::from).collect(),
                _ => Vec::new(),
            }
        };
        if *target == self.account_uid || self.ancestors.contains(&target) {
            let anc = ancestors_in_base(&target);
            return Ok((target, anc));
        }
        let mut anc = Vec::new();
        if let Some(p) = req.target_account_parent {
            let p = uid(&self.account_ty, p);
            if p == *target {
                return Err(format!("account `{p}` cannot be its own parent"));
            }
            for a in ancestors_in_base(&p) {
                if a != p && !anc.contains(&a) {
                    anc.push(a);
                }
            }
            anc.insert(0, p);
        }
        Ok((target, anc))
    }

    /// The Cedar request and entities for `req`.
    pub(crate) fn request(
        &self,
        types: &Types,
        req: &RequestFacts<'_>,
        action: &EntityUid,
        action_entity: &Arc<CoreEntity>,
        instrument: Option<(&EntityUid, &Arc<CoreEntity>)>,
    ) -> Result<(Request, Entities), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let target_id = req.target_account.unwrap_or(&self.account_id);
        let target = uid(&self.account_ty, target_id);
        let mut extra: Vec<Arc<CoreEntity>> = Vec::with_capacity(3);
        extra.push(action_entity.clone());
        if let Some((_, e)) = instrument {
            extra.push(e.clone());
        }
        // A target that is the key's account or one of its ancestors keeps
        // the prepared entity (or none, beyond the parent): the caller's
        // `target_account_parent` never changes the principal's ancestry.
        if target != self.account_uid && !self.ancestors.contains(&target) {
            extra.push(Arc::new(
                self.target_entity(&target, req.target_account_parent)?,
            ));
        }
        // INVARIANT: closed and acyclic. The base was closed by Cedar at
        // prepare time; action entities come closed from the schema;
        // instruments have no parents; the target is a new leaf whose
        // ancestors are listed in full by `target_entity`.
        let entities = self
            .base
            .clone()
            .add_entities(
                extra,
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::all_available(),
            )
            .map(Entities::from)
            .map_err(|e| format!("entities: {e}"))?;
        let context = self.context(types, req, target)?;
        let resource = match instrument {
            Some((u, _)) => u.clone(),
            None => uid(
                &self.account_ty,
                req.target_account.unwrap_or(&self.account_id),
            ),
        };
        let request = Request::new(
            self.key_uid.clone(),
            action.clone(),
            resource,
            context,
            None,
        )
        .map_err(|e| format!("request: {e}"))?;
        Ok((request, entities))
    }

    /// A target account named by the request and not among the key's
    /// prepared entities: no attributes (a policy reading them errors, and so
    /// denies); its parent when the caller knows it, and that parent's
    /// ancestors when the key's entities know them.
    fn target_entity(
        &self,
        target: &EntityUid,
        parent: Option<&str>,
    ) -> Result<CoreEntity, String> {
        let mut parents = HashSet::new();
        let mut indirect = HashSet::new();
        if let Some(p) = parent {
            let p = uid(&self.account_ty, p);
            if &p == target {
                return Err(format!("account `{p}` cannot be its own parent"));
            }
            let p: cedar_policy_core::ast::EntityUID = p.into();
            if let Dereference::Data(pe) = self.base.entity(&p) {
                indirect.extend(pe.ancestors().filter(|a| **a != p).cloned());
            }
            parents.insert(p);
        }
        Ok(CoreEntity::new_with_attr_partial_value(
            target.clone().into(),
            [],
            indirect,
            parents,
            [],
        ))
    }

    fn context(
        &self,
        types: &Types,
        req: &RequestFacts<'_>,
        account: EntityUid,
    ) -> Result<Context, String> {
        let ip = req.source_ip.to_canonical();
        let now = req.now_ms.div_euclid(1000);
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(11);
        pairs.push(("source_ip".into(), types.ip(&ip.to_string())));
        if let Some((_, net)) = self.nets.iter().find(|(n, _)| n.contains(&ip)) {
            pairs.push(("source_net".into(), net.clone()));
        }
        pairs.push((
            "required_scope".into(),
            RestrictedExpression::new_string(req.required_scope.to_string()),
        ));
        pairs.push((
            "account".into(),
            RestrictedExpression::new_entity_uid(account),
        ));
        pairs.push((
            "risk_score".into(),
            RestrictedExpression::new_long(i64::from(req.risk_score)),
        ));
        if let Some(age) = req.mfa_age_secs {
            pairs.push((
                "mfa_age".into(),
                RestrictedExpression::new_long(i64::try_from(age).unwrap_or(i64::MAX)),
            ));
        }
        pairs.push(("now".into(), RestrictedExpression::new_long(now)));
        pairs.push((
            "hour".into(),
            RestrictedExpression::new_long(now.rem_euclid(86_400) / 3_600),
        ));
        if let Some(o) = req.order {
            let mut rec = vec![
                (
                    "side".to_string(),
                    RestrictedExpression::new_string(o.side.clone()),
                ),
                (
                    "type".to_string(),
                    RestrictedExpression::new_string(o.order_type.clone()),
                ),
                (
                    "qty".to_string(),
                    types.decimal(&cedar_decimal("qty", &o.qty)?),
                ),
                (
                    "instrument".to_string(),
                    RestrictedExpression::new_string(o.instrument.clone()),
                ),
            ];
            if let Some(n) = &o.notional {
                rec.push((
                    "notional".to_string(),
                    types.decimal(&cedar_decimal("notional", n)?),
                ));
            }
            pairs.push((
                "order".into(),
                RestrictedExpression::new_record(rec).map_err(|e| format!("order: {e}"))?,
            ));
        }
        if let Some((asset, address)) = req.withdrawal {
            pairs.push((
                "withdrawal".into(),
                RestrictedExpression::new_record([
                    (
                        "asset".to_string(),
                        RestrictedExpression::new_string(asset.to_string()),
                    ),
                    (
                        "address".to_string(),
                        RestrictedExpression::new_string(address.to_string()),
                    ),
                ])
                .map_err(|e| format!("withdrawal: {e}"))?,
            ));
        }
        Context::from_pairs(pairs).map_err(|e| format!("context: {e}"))
    }
}

/// The Cedar `decimal` literal for a decimal string, or why not.
///
/// Cedar decimals are `i64` multiples of 10⁻⁴. A value with more
/// fractional digits (a BTC quantity of `0.00012345`) is rounded **up**
/// (toward +∞) to the fourth place: the policy sees a size at least as
/// large as the real one, which is conservative for the upper limits
/// policies express (largest size, largest notional); a minimum-size
/// policy sees at most 0.0001 more. Exact limits are `[pretrade]`'s job.
/// A magnitude of 922337203685477.5807 or more is refused.
pub(crate) fn cedar_decimal(what: &str, s: &str) -> Result<String, String> {
    let units = cedar_units(what, s)?;
    let sign = if units < 0 { "-" } else { "" };
    let a = units.unsigned_abs();
    Ok(format!("{sign}{}.{:04}", a / 10_000, a % 10_000))
}

/// [`cedar_decimal`]'s value in 10⁻⁴ units (what the compiled evaluation
/// compares), without the round trip through text.
pub(crate) fn cedar_units(what: &str, s: &str) -> Result<i64, String> {
    let d = Decimal::from_str_exact(s.trim())
        .map_err(|e| format!("order {what} `{s}` is not a decimal number: {e}"))?
        .normalize();
    let d = if d.scale() > 4 {
        d.round_dp_with_strategy(4, rust_decimal::RoundingStrategy::ToPositiveInfinity)
            .normalize()
    } else {
        d
    };
    let scale = d.scale();
    10_i128
        .checked_pow(4 - scale)
        .and_then(|m| d.mantissa().checked_mul(m))
        .and_then(|u| i64::try_from(u).ok())
        .filter(|u| *u != i64::MIN)
        .ok_or_else(|| format!("order {what} `{s}` is out of the policy decimal range"))
}

fn set_of_strings(v: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        v.iter()
            .map(|s| RestrictedExpression::new_string(s.clone())),
    )
}

/// An entity with attributes, with its ancestors given in full (`parents`
/// direct, `indirect` the rest): the hierarchy is closed by construction.
fn closed_entity(
    uid: &EntityUid,
    attrs: HashMap<String, RestrictedExpression>,
    parents: &[&EntityUid],
    indirect: &[&EntityUid],
) -> Result<CoreEntity, String> {
    let e = Entity::new(uid.clone(), attrs, HashSet::new()).map_err(|e| format!("`{uid}`: {e}"))?;
    let (uid, attrs, _, _, tags) = AsRef::<CoreEntity>::as_ref(&e).clone().into_inner();
    let set = |v: &[&EntityUid]| v.iter().map(|u| (*u).clone().into()).collect();
    Ok(CoreEntity::new_with_attr_partial_value(
        uid,
        attrs,
        set(indirect),
        set(parents),
        tags,
    ))
}

fn account_entity(
    ty: &EntityTypeName,
    a: &AccountFacts,
    grandparent: Option<&str>,
) -> Result<CoreEntity, String> {
    let attrs = HashMap::from([
        (
            "kyc_tier".to_string(),
            RestrictedExpression::new_long(i64::from(a.kyc_tier)),
        ),
        (
            "risk_profile".to_string(),
            RestrictedExpression::new_string(a.risk_profile.clone()),
        ),
        (
            "withdrawal_addresses".to_string(),
            set_of_strings(&a.withdrawal_addresses),
        ),
    ]);
    let parent = a.parent_id.as_deref().map(|p| uid(ty, p));
    let gp = grandparent.filter(|_| parent.is_some()).map(|g| uid(ty, g));
    closed_entity(
        &uid(ty, &a.id),
        attrs,
        &parent.iter().collect::<Vec<_>>(),
        &gp.iter().collect::<Vec<_>>(),
    )
    .map_err(|e| format!("account {e}"))
}

/// Account entities shared by the prepared keys of an account (a key's
/// own entity is the bulk of the rest): keyed by id, reused while the facts
/// (and the grandparent) are unchanged and some prepared key still holds it.
#[derive(Debug, Default)]
pub(crate) struct AccountCache {
    inner: parking_lot::Mutex<AccountMap>,
}

type AccountEntry = (AccountFacts, Option<String>, Weak<CoreEntity>);

#[derive(Debug, Default)]
struct AccountMap {
    entries: HashMap<String, AccountEntry>,
    prune_at: usize,
}

impl AccountCache {
    fn get(
        &self,
        ty: &EntityTypeName,
        a: &AccountFacts,
        grandparent: Option<&str>,
    ) -> Result<Arc<CoreEntity>, String> {
        let mut map = self.inner.lock();
        if let Some((facts, gp, weak)) = map.entries.get(&a.id) {
            if facts == a && gp.as_deref() == grandparent {
                if let Some(e) = weak.upgrade() {
                    return Ok(e);
                }
            }
        }
        let e = Arc::new(account_entity(ty, a, grandparent)?);
        map.entries.insert(
            a.id.clone(),
            (
                a.clone(),
                grandparent.map(str::to_string),
                Arc::downgrade(&e),
            ),
        );
        if map.entries.len() > map.prune_at {
            map.entries.retain(|_, (_, _, w)| w.strong_count() > 0);
            map.prune_at = map.entries.len() * 2 + 1024;
        }
        Ok(e)
    }
}

fn key_entity(
    key_ty: &EntityTypeName,
    account_uid: &EntityUid,
    k: &KeySettings,
    nets: &[(IpNet, RestrictedExpression)],
    ancestors: &[EntityUid],
) -> Result<CoreEntity, String> {
    let expires_at = k.expires_at_ms.map_or(0, |ms| ms.div_euclid(1000));
    let attrs = HashMap::from([
        (
            "account".to_string(),
            RestrictedExpression::new_entity_uid(account_uid.clone()),
        ),
        ("scopes".to_string(), set_of_strings(&k.scopes)),
        ("instruments".to_string(), set_of_strings(&k.instruments)),
        (
            "any_instrument".to_string(),
            RestrictedExpression::new_bool(k.instruments.is_empty()),
        ),
        ("products".to_string(), set_of_strings(&k.products)),
        (
            "any_product".to_string(),
            RestrictedExpression::new_bool(k.products.is_empty()),
        ),
        (
            "read_only".to_string(),
            RestrictedExpression::new_bool(k.read_only),
        ),
        (
            "expires".to_string(),
            RestrictedExpression::new_bool(k.expires_at_ms.is_some()),
        ),
        (
            "expires_at".to_string(),
            RestrictedExpression::new_long(expires_at),
        ),
        (
            "nets".to_string(),
            RestrictedExpression::new_set(nets.iter().map(|(_, e)| e.clone())),
        ),
        (
            "any_ip".to_string(),
            RestrictedExpression::new_bool(nets.is_empty()),
        ),
    ]);
    let indirect: Vec<&EntityUid> = ancestors.iter().filter(|a| *a != account_uid).collect();
    closed_entity(&uid(key_ty, &k.key_id), attrs, &[account_uid], &indirect)
        .map_err(|e| format!("key {e}"))
}

/// Builds a [`PreparedKey`]; inconsistencies become its `error`.
pub(crate) fn prepare(
    types: &Types,
    accounts: &AccountCache,
    key: &KeySettings,
    account: &AccountFacts,
    parent: Option<&AccountFacts>,
) -> PreparedKey {
    let key_ty = &types.api_key;
    let account_ty = &types.account;
    let nets: Vec<(IpNet, RestrictedExpression)> = key
        .nets
        .iter()
        .map(|n| {
            let n = n.trunc();
            (n, types.ip(&n.to_string()))
        })
        .collect();
    let key_uid = uid(key_ty, &key.key_id);
    let account_uid = uid(account_ty, &key.account_id);
    let mut ancestors = vec![account_uid.clone()];
    if let Some(p) = &account.parent_id {
        ancestors.push(uid(account_ty, p));
        if let Some(gp) = parent.and_then(|p| p.parent_id.as_ref()) {
            ancestors.push(uid(account_ty, gp));
        }
    }
    let chain: Vec<String> = ancestors
        .iter()
        .map(|u| u.id().unescaped().to_string())
        .collect();
    let mut out = PreparedKey {
        settings: key.clone(),
        account_id: key.account_id.clone(),
        account_ty: account_ty.clone(),
        key_uid,
        account_uid: account_uid.clone(),
        ancestors,
        base: CoreEntities::new(),
        facts: KeyFacts {
            expires_at_s: key.expires_at_ms.map(|ms| ms.div_euclid(1000)),
            nets: nets.iter().map(|(n, _)| *n).collect(),
            scopes: key.scopes.clone(),
            instruments: key.instruments.clone(),
            products: key.products.clone(),
            read_only: key.read_only,
            account: AccountAttrs::of(account),
            parent: parent.map(AccountAttrs::of),
            chain,
        },
        nets,
        error: None,
    };
    let built = (|| -> Result<CoreEntities, String> {
        if key.account_id != account.id {
            return Err(format!(
                "key `{}` belongs to account `{}`, not `{}`",
                key.key_id, key.account_id, account.id
            ));
        }
        match (&account.parent_id, parent) {
            (Some(p), Some(pf)) if *p != pf.id => {
                return Err(format!(
                    "account `{}` has parent `{p}`, not `{}`",
                    account.id, pf.id
                ))
            }
            (None, Some(pf)) => {
                return Err(format!(
                    "account `{}` has no parent, but facts for `{}` were given",
                    account.id, pf.id
                ))
            }
            _ => {}
        }
        if account.parent_id.as_deref() == Some(account.id.as_str())
            || parent.is_some_and(|p| {
                p.parent_id.as_deref() == Some(p.id.as_str())
                    || p.parent_id.as_deref() == Some(account.id.as_str())
            })
        {
            return Err(format!("account `{}` is its own ancestor", account.id));
        }
        let gp = parent.and_then(|p| p.parent_id.as_deref());
        let mut v = vec![
            Arc::new(key_entity(
                key_ty,
                &account_uid,
                key,
                &out.nets,
                &out.ancestors,
            )?),
            accounts.get(account_ty, account, gp)?,
        ];
        if let Some(p) = parent {
            v.push(accounts.get(account_ty, p, None)?);
        }
        // INVARIANT: closed and acyclic: each entity lists all its
        // ancestors (key: account, parent, grandparent; account: parent,
        // grandparent; parent: grandparent), and the checks above refuse
        // every cycle three distinct-by-type-or-id levels could form.
        CoreEntities::new()
            .add_entities(
                v,
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::all_available(),
            )
            .map_err(|e| format!("entities: {e}"))
    })();
    match built {
        Ok(base) => out.base = base,
        Err(e) => out.error = Some(e),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(cedar_decimal("qty", "0.5").unwrap(), "0.5000");
        assert_eq!(cedar_decimal("qty", "0.50000000").unwrap(), "0.5000");
        assert_eq!(cedar_decimal("qty", "12").unwrap(), "12.0000");
        assert_eq!(cedar_decimal("qty", "-0.0001").unwrap(), "-0.0001");
        assert_eq!(
            cedar_decimal("qty", "922337203685477.5807").unwrap(),
            "922337203685477.5807"
        );
        assert_eq!(cedar_decimal("qty", "0.00001").unwrap(), "0.0001");
        assert_eq!(cedar_decimal("qty", "0.00012345").unwrap(), "0.0002");
        assert_eq!(cedar_decimal("qty", "1.00000001").unwrap(), "1.0001");
        assert_eq!(cedar_decimal("qty", "-0.00001").unwrap(), "0.0000");
        assert!(cedar_decimal("qty", "922337203685477.5808").is_err());
        assert!(cedar_decimal("qty", "-922337203685477.5808").is_err());
        assert!(cedar_decimal("qty", "1e3").is_err());
        assert!(cedar_decimal("qty", "").is_err());
        assert!(cedar_decimal("qty", "abc").is_err());
        assert!(cedar_decimal("qty", "99999999999999999999999999999").is_err());
    }

    /// The units the compiled evaluation compares are the value of the
    /// text Cedar is given.
    #[test]
    fn cedar_units_are_the_decimal_text_value() {
        for s in [
            "0.5",
            "0.50000000",
            "12",
            "-0.0001",
            "-0.5",
            "-12.34567",
            "922337203685477.5807",
            "-922337203685477.5807",
            "0.00001",
            "0.00012345",
            "1.00000001",
            "-0.00001",
            "65000.00",
            "130000000.000000",
        ] {
            let text = cedar_decimal("qty", s).unwrap();
            assert_eq!(
                Some(cedar_units("qty", s).unwrap()),
                super::super::compiled::parse_decimal(&text),
                "{s}"
            );
        }
        for s in ["922337203685477.5808", "1e3", "", "abc"] {
            assert!(cedar_units("qty", s).is_err(), "{s}");
        }
    }
}
