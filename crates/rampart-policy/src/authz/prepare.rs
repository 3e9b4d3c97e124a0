//! Per-key entities (built once, cached by the caller) and the per-request
//! Cedar request.

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    Context, Entities, Entity, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use ipnet::IpNet;
use rust_decimal::Decimal;

use super::load::{uid, Types};
use super::{AccountFacts, KeySettings, RequestFacts};

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
    /// Key, account, parent (when known).
    entities: Vec<Entity>,
    /// The key's ranges, truncated to their network address.
    nets: Vec<IpNet>,
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

    /// The Cedar request and entities for `req`.
    pub(crate) fn request(
        &self,
        req: &RequestFacts<'_>,
        action: &EntityUid,
        action_entity: &Entity,
        instrument: Option<(&EntityUid, &Entity)>,
    ) -> Result<(Request, Entities), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let target_id = req.target_account.unwrap_or(&self.account_id);
        let target = uid(&self.account_ty, target_id);
        let mut entities: Vec<Entity> = Vec::with_capacity(self.entities.len() + 3);
        entities.extend(self.entities.iter().cloned());
        entities.push(action_entity.clone());
        if let Some((_, e)) = instrument {
            entities.push(e.clone());
        }
        // A target that is the key's account or one of its ancestors keeps
        // the prepared entity (or none, beyond the parent): the caller's
        // `target_account_parent` never changes the principal's ancestry.
        if target != self.account_uid && !self.ancestors.contains(&target) {
            let parents: HashSet<EntityUid> = req
                .target_account_parent
                .map(|p| uid(&self.account_ty, p))
                .into_iter()
                .collect();
            entities.push(Entity::new_no_attrs(target.clone(), parents));
        }
        let entities =
            Entities::from_entities(entities, None).map_err(|e| format!("entities: {e}"))?;
        let context = self.context(req, target)?;
        let resource = match instrument {
            Some((u, _)) => u.clone(),
            None => uid(
                &self.account_ty,
                req.target_account.unwrap_or(&self.account_id),
            ),
        };
        let request = Request::new(self.key_uid.clone(), action.clone(), resource, context, None)
            .map_err(|e| format!("request: {e}"))?;
        Ok((request, entities))
    }

    fn context(&self, req: &RequestFacts<'_>, account: EntityUid) -> Result<Context, String> {
        let ip = req.source_ip.to_canonical();
        let now = req.now_ms.div_euclid(1000);
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(11);
        pairs.push((
            "source_ip".into(),
            RestrictedExpression::new_ip(ip.to_string()),
        ));
        if let Some(net) = self.nets.iter().find(|n| n.contains(&ip)) {
            pairs.push((
                "source_net".into(),
                RestrictedExpression::new_ip(net.to_string()),
            ));
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
                    RestrictedExpression::new_decimal(cedar_decimal("qty", &o.qty)?),
                ),
                (
                    "instrument".to_string(),
                    RestrictedExpression::new_string(o.instrument.clone()),
                ),
            ];
            if let Some(n) = &o.notional {
                rec.push((
                    "notional".to_string(),
                    RestrictedExpression::new_decimal(cedar_decimal("notional", n)?),
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

/// The Cedar `decimal` literal for a decimal string, exactly, or why not.
///
/// Cedar decimals are `i64` multiples of 10⁻⁴. Trailing zeros are fine
/// (`"0.50000"`); any other digit past the fourth place, or a magnitude of
/// 922337203685477.5807 or more, is refused rather than rounded.
pub(crate) fn cedar_decimal(what: &str, s: &str) -> Result<String, String> {
    let d = Decimal::from_str_exact(s.trim())
        .map_err(|e| format!("order {what} `{s}` is not a decimal number: {e}"))?
        .normalize();
    let scale = d.scale();
    if scale > 4 {
        return Err(format!(
            "order {what} `{s}` has more than 4 fractional digits, the most a policy decimal holds"
        ));
    }
    let units = 10_i128
        .checked_pow(4 - scale)
        .and_then(|m| d.mantissa().checked_mul(m))
        .and_then(|u| i64::try_from(u).ok())
        .filter(|u| *u != i64::MIN)
        .ok_or_else(|| format!("order {what} `{s}` is out of the policy decimal range"))?;
    let sign = if units < 0 { "-" } else { "" };
    let a = units.unsigned_abs();
    Ok(format!("{sign}{}.{:04}", a / 10_000, a % 10_000))
}

fn set_of_strings(v: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(v.iter().map(|s| RestrictedExpression::new_string(s.clone())))
}

fn account_entity(
    ty: &EntityTypeName,
    a: &AccountFacts,
    parent: Option<&str>,
) -> Result<Entity, String> {
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
    let parents = parent.map(|p| uid(ty, p)).into_iter().collect();
    Entity::new(uid(ty, &a.id), attrs, parents).map_err(|e| format!("account `{}`: {e}", a.id))
}

fn key_entity(
    key_ty: &EntityTypeName,
    account_uid: &EntityUid,
    k: &KeySettings,
    nets: &[IpNet],
) -> Result<Entity, String> {
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
            RestrictedExpression::new_set(
                nets.iter()
                    .map(|n| RestrictedExpression::new_ip(n.to_string())),
            ),
        ),
        (
            "any_ip".to_string(),
            RestrictedExpression::new_bool(nets.is_empty()),
        ),
    ]);
    let parents = HashSet::from([account_uid.clone()]);
    Entity::new(uid(key_ty, &k.key_id), attrs, parents)
        .map_err(|e| format!("key `{}`: {e}", k.key_id))
}

/// Builds a [`PreparedKey`]; inconsistencies become its `error`.
pub(crate) fn prepare(
    types: &Types,
    key: &KeySettings,
    account: &AccountFacts,
    parent: Option<&AccountFacts>,
) -> PreparedKey {
    let key_ty = &types.api_key;
    let account_ty = &types.account;
    let nets: Vec<IpNet> = key.nets.iter().map(IpNet::trunc).collect();
    let key_uid = uid(key_ty, &key.key_id);
    let account_uid = uid(account_ty, &key.account_id);
    let mut ancestors = vec![account_uid.clone()];
    if let Some(p) = &account.parent_id {
        ancestors.push(uid(account_ty, p));
        if let Some(gp) = parent.and_then(|p| p.parent_id.as_ref()) {
            ancestors.push(uid(account_ty, gp));
        }
    }
    let mut out = PreparedKey {
        settings: key.clone(),
        account_id: key.account_id.clone(),
        account_ty: account_ty.clone(),
        key_uid,
        account_uid: account_uid.clone(),
        ancestors,
        entities: Vec::new(),
        nets,
        error: None,
    };
    let built = (|| -> Result<Vec<Entity>, String> {
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
        let mut v = vec![
            key_entity(key_ty, &account_uid, key, &out.nets)?,
            account_entity(account_ty, account, account.parent_id.as_deref())?,
        ];
        if let Some(p) = parent {
            v.push(account_entity(account_ty, p, p.parent_id.as_deref())?);
        }
        // Check once that the entities are well formed (the hot path then
        // skips the check): this catches a hierarchy cycle.
        Entities::from_entities(v.iter().cloned(), None).map_err(|e| format!("entities: {e}"))?;
        Ok(v)
    })();
    match built {
        Ok(v) => out.entities = v,
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
        assert!(cedar_decimal("qty", "0.00001").is_err());
        assert!(cedar_decimal("qty", "922337203685477.5808").is_err());
        assert!(cedar_decimal("qty", "-922337203685477.5808").is_err());
        assert!(cedar_decimal("qty", "1e3").is_err());
        assert!(cedar_decimal("qty", "").is_err());
        assert!(cedar_decimal("qty", "abc").is_err());
        assert!(cedar_decimal("qty", "99999999999999999999999999999").is_err());
    }
}
