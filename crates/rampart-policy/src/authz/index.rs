//! The policy index: concrete action × principal bucket × resource bucket.
//!
//! A scope constraint pins down a specific entity (`== E`, `in E`,
//! `is T in E`: bucket `E`), only a type (`is T`: bucket `T`) or nothing
//! (bucket `Any`). It can only hold when `E` is the request's principal
//! (resource) itself or one of its ancestors in the request's entities, or
//! `T` its type, so a request looks up buckets `Any`, its principal's type,
//! the principal and its ancestors (key, account, parent, grandparent), and
//! within each, likewise for the resource (an instrument; or the target
//! account and its ancestors). The action constraint is resolved at load, against the
//! schema's action hierarchy, to the set of concrete actions it can match.
//!
//! A policy outside the looked-up buckets has a scope that cannot match,
//! and Cedar evaluates the scope before the conditions (and short-circuits),
//! so such a policy can be neither satisfied nor erroring: combining the
//! per-bucket responses with Cedar's rules gives Cedar's answer over the
//! whole set (`tests/authz_prop.rs` checks this against plain Cedar).

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, PolicySet, PrincipalConstraint, ResourceConstraint,
};

use std::sync::Arc;

use super::compiled::CompiledPolicy;
use super::load::{ActionScope, LoadedPolicy};

/// The policies of one bucket: as a Cedar set, and compiled when every one
/// of them compiles (`compiled.rs`).
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub(crate) set: PolicySet,
    pub(crate) compiled: Option<Vec<Arc<CompiledPolicy>>>,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            set: PolicySet::new(),
            compiled: Some(Vec::new()),
        }
    }
}

/// A bucket key: what a scope constraint pins down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    /// Unconstrained.
    Any,
    /// `is T`.
    Type(&'a EntityTypeName),
    /// `== E`, `in E`, `is T in E`.
    Uid(&'a EntityUid),
}

/// Values by bucket.
#[derive(Debug, Clone)]
struct Buckets<V> {
    any: Option<V>,
    by_type: HashMap<EntityTypeName, V>,
    by_uid: HashMap<EntityUid, V>,
}

impl<V> Default for Buckets<V> {
    fn default() -> Self {
        Self {
            any: None,
            by_type: HashMap::new(),
            by_uid: HashMap::new(),
        }
    }
}

impl<V: Default> Buckets<V> {
    fn entry(&mut self, key: Key<'_>) -> &mut V {
        match key {
            Key::Any => self.any.get_or_insert_with(V::default),
            Key::Type(t) => self.by_type.entry(t.clone()).or_default(),
            Key::Uid(u) => self.by_uid.entry(u.clone()).or_default(),
        }
    }
}

impl<V> Buckets<V> {
    fn get(&self, key: Key<'_>) -> Option<&V> {
        match key {
            Key::Any => self.any.as_ref(),
            Key::Type(t) => self.by_type.get(t),
            Key::Uid(u) => self.by_uid.get(u),
        }
    }
}

/// The policy sets of one concrete action.
#[derive(Debug, Default)]
struct ActionIndex {
    /// Policies whose principal and resource constraints name no entity,
    /// merged per (principal type, resource type) of a request: one
    /// evaluation covers them all.
    by_types: HashMap<(EntityTypeName, EntityTypeName), Bucket>,
    /// Policies naming an entity as principal or resource: principal bucket,
    /// then resource bucket.
    by_entity: Buckets<Buckets<Bucket>>,
}

/// Policy sets by action index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    actions: Vec<ActionIndex>,
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

/// Whether a type-level key admits entity type `t`.
fn admits(key: Key<'_>, t: &EntityTypeName) -> bool {
    match key {
        Key::Any => true,
        Key::Type(k) => k == t,
        Key::Uid(_) => false,
    }
}

fn add(
    bucket: &mut Bucket,
    p: &LoadedPolicy,
    compiled: Option<&Arc<CompiledPolicy>>,
) -> Result<(), String> {
    match (compiled, &mut bucket.compiled) {
        (Some(c), Some(v)) => v.push(c.clone()),
        _ => bucket.compiled = None,
    }
    // Ids are unique across the load, so `add` cannot fail; if it did,
    // dropping the policy could fail open.
    bucket
        .set
        .add(p.policy.clone())
        .map_err(|e| format!("index: {e}"))
}

impl Index {
    /// Indexes `policies` over the concrete `actions` (by index).
    pub(crate) fn build(
        policies: &[LoadedPolicy],
        actions: &[ActionScope],
    ) -> Result<Self, String> {
        let mut index = Self {
            actions: actions
                .iter()
                .map(|scope| {
                    // Every combination the action applies to has an entry
                    // (maybe empty): a missing one means a request the
                    // schema does not allow.
                    let mut slot = ActionIndex::default();
                    for pt in &scope.principals {
                        for rt in &scope.resources {
                            slot.by_types
                                .insert((pt.clone(), rt.clone()), Bucket::default());
                        }
                    }
                    slot
                })
                .collect(),
        };
        for p in policies {
            let compiled = CompiledPolicy::new(&p.policy).map(Arc::new);
            let compiled = compiled.as_ref();
            let principal = p.policy.principal_constraint();
            let principal = match &principal {
                PrincipalConstraint::Any => Key::Any,
                PrincipalConstraint::Is(t) => Key::Type(t),
                PrincipalConstraint::Eq(e)
                | PrincipalConstraint::In(e)
                | PrincipalConstraint::IsIn(_, e) => Key::Uid(e),
            };
            let resource = p.policy.resource_constraint();
            let resource = match &resource {
                ResourceConstraint::Any => Key::Any,
                ResourceConstraint::Is(t) => Key::Type(t),
                ResourceConstraint::Eq(e)
                | ResourceConstraint::In(e)
                | ResourceConstraint::IsIn(_, e) => Key::Uid(e),
            };
            let constraint = p.policy.action_constraint();
            for (scope, slot) in actions.iter().zip(index.actions.iter_mut()) {
                if !action_matches(&constraint, &scope.uid, &scope.groups) {
                    continue;
                }
                match (principal, resource) {
                    (Key::Uid(_), _) | (_, Key::Uid(_)) => {
                        add(slot.by_entity.entry(principal).entry(resource), p, compiled)?;
                    }
                    _ => {
                        for pt in scope.principals.iter().filter(|t| admits(principal, t)) {
                            for rt in scope.resources.iter().filter(|t| admits(resource, t)) {
                                if let Some(b) = slot.by_types.get_mut(&(pt.clone(), rt.clone())) {
                                    add(b, p, compiled)?;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(index)
    }

    /// Calls `f` with every policy set that can apply to a request for
    /// `action` whose principal has type `pt` and matches one of
    /// `principals` (`Any`, `Type(pt)`, itself and each of its ancestors,
    /// without repeats), and whose resource has type `rt` and matches one of
    /// `resources` (likewise). False, and no call, when the schema does not
    /// let `action` apply to these types.
    #[must_use]
    pub(crate) fn for_each<'s>(
        &'s self,
        action: usize,
        (pt, principals): (&EntityTypeName, &[Key<'_>]),
        (rt, resources): (&EntityTypeName, &[Key<'_>]),
        mut f: impl FnMut(&'s Bucket),
    ) -> bool {
        let Some(slot) = self.actions.get(action) else {
            return false;
        };
        let Some(bucket) = slot.by_types.get(&(pt.clone(), rt.clone())) else {
            return false;
        };
        if !bucket.set.is_empty() {
            f(bucket);
        }
        for p in principals {
            let Some(by_resource) = slot.by_entity.get(*p) else {
                continue;
            };
            for r in resources {
                if let Some(b) = by_resource.get(*r) {
                    f(b);
                }
            }
        }
        true
    }
}
