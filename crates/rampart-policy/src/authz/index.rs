//! The policy index: concrete action × principal bucket × resource bucket.
//!
//! A scope constraint is either about a specific entity (`== E`, `in E`,
//! `is T in E`: bucket `E`) or not (unconstrained, `is T`: bucket `None`).
//! Such a constraint can only hold when `E` is the request's principal
//! (resource) itself or one of its ancestors in the request's entities, so a
//! request looks up bucket `None` plus the buckets of the principal and its
//! ancestors (key, account, parent, grandparent), and within each, bucket
//! `None` plus the resource's (instrument; or target account and its
//! ancestors). The action constraint is resolved at load, against the
//! schema's action hierarchy, to the set of concrete actions it can match.
//!
//! A policy outside the looked-up buckets has a scope that cannot match,
//! and Cedar evaluates the scope before the conditions (and short-circuits),
//! so such a policy can be neither satisfied nor erroring: combining the
//! per-bucket responses with Cedar's rules gives Cedar's answer over the
//! whole set (`tests/authz_prop.rs` checks this against plain Cedar).

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, EntityUid, PolicySet, PrincipalConstraint, ResourceConstraint,
};

use super::load::LoadedPolicy;

/// Values by bucket: the unconstrained one, and one per entity.
#[derive(Debug, Clone)]
struct Buckets<V> {
    any: Option<V>,
    by_uid: HashMap<EntityUid, V>,
}

impl<V> Default for Buckets<V> {
    fn default() -> Self {
        Self {
            any: None,
            by_uid: HashMap::new(),
        }
    }
}

impl<V: Default> Buckets<V> {
    fn entry(&mut self, key: Option<EntityUid>) -> &mut V {
        match key {
            None => self.any.get_or_insert_with(V::default),
            Some(uid) => self.by_uid.entry(uid).or_default(),
        }
    }
}

impl<V> Buckets<V> {
    fn get(&self, key: Option<&EntityUid>) -> Option<&V> {
        match key {
            None => self.any.as_ref(),
            Some(uid) => self.by_uid.get(uid),
        }
    }
}

/// Policy sets by action index, then principal bucket, then resource bucket.
#[derive(Debug, Default)]
pub(crate) struct Index {
    actions: Vec<Buckets<Buckets<PolicySet>>>,
}

/// Whether a policy's action constraint can match `action` (with its
/// ancestor groups).
fn action_matches(c: &ActionConstraint, action: &EntityUid, groups: &HashSet<EntityUid>) -> bool {
    match c {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => a == action,
        ActionConstraint::In(list) => list.iter().any(|a| a == action || groups.contains(a)),
    }
}

impl Index {
    /// Indexes `policies` over the concrete `actions` (by index).
    pub(crate) fn build(
        policies: &[LoadedPolicy],
        actions: &[(EntityUid, HashSet<EntityUid>)],
    ) -> Result<Self, String> {
        let mut index = Self {
            actions: vec![Buckets::default(); actions.len()],
        };
        for p in policies {
            let principal = match p.policy.principal_constraint() {
                PrincipalConstraint::Any | PrincipalConstraint::Is(_) => None,
                PrincipalConstraint::Eq(e)
                | PrincipalConstraint::In(e)
                | PrincipalConstraint::IsIn(_, e) => Some(e),
            };
            let resource = match p.policy.resource_constraint() {
                ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
                ResourceConstraint::Eq(e)
                | ResourceConstraint::In(e)
                | ResourceConstraint::IsIn(_, e) => Some(e),
            };
            let constraint = p.policy.action_constraint();
            for ((action, groups), buckets) in actions.iter().zip(index.actions.iter_mut()) {
                if !action_matches(&constraint, action, groups) {
                    continue;
                }
                // Ids are unique across the load, so `add` cannot fail; if it
                // did, dropping the policy could fail open.
                buckets
                    .entry(principal.clone())
                    .entry(resource.clone())
                    .add(p.policy.clone())
                    .map_err(|e| format!("index: {e}"))?;
            }
        }
        Ok(index)
    }

    /// Calls `f` with every policy set that can apply to a request for
    /// `action` whose principal is in `principals` (which must start with
    /// `None`, then the principal and its ancestors) and whose resource is
    /// in `resources` (likewise).
    pub(crate) fn for_each(
        &self,
        action: usize,
        principals: &[Option<&EntityUid>],
        resources: &[Option<&EntityUid>],
        mut f: impl FnMut(&PolicySet),
    ) {
        let Some(buckets) = self.actions.get(action) else {
            return;
        };
        for p in principals {
            let Some(by_resource) = buckets.get(*p) else {
                continue;
            };
            for r in resources {
                if let Some(set) = by_resource.get(*r) {
                    f(set);
                }
            }
        }
    }
}
