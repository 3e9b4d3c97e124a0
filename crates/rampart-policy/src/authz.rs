//! Cedar authorization: may this API key perform this action on this
//! resource, in this context?
//!
//! The gateway calls [`Authorizer::authorize`] once per authenticated
//! request, after the signature verified. This module owns the Cedar schema
//! (`policies/rampart.cedarschema`), the policies that enforce each key's own
//! settings (`policies/keys.cedar`), the shipped defaults the operator may
//! edit (`policies/defaults.cedar`: KYC tiers, MFA for sensitive actions) and
//! the evaluation of operator `.cedar` files. It does no I/O and stores no
//! keys: the caller passes each key's settings as a [`PreparedKey`].
//!
//! # Key settings are attributes, not policies
//!
//! A key's scopes, instrument and product allow lists, IP ranges, expiry and
//! read-only flag are attributes of the `Rampart::ApiKey` principal, read by
//! a handful of generic policies (`keys.cedar`), rather than one literal
//! policy per key (`forbid (principal == Rampart::ApiKey::"k1", …)`). With
//! 100k keys, per-key policies would mean 100k+ policies to parse, validate
//! and keep in memory, and — unless indexed — scanned on every decision; a
//! settings change would mean a policy-set rebuild instead of a data update.
//! Cedar's own guidance is the same: keep per-principal facts in entity data
//! and write policies over attributes, reserving templates and literal
//! policies for genuinely per-principal rules. [`render_key_policies`]
//! prints the literal per-key equivalent, for `rampart policy explain`.
//!
//! # Decisions
//!
//! Cedar's semantics — default deny, any satisfied `forbid` overrides every
//! `permit` — plus one rule Cedar does not have: **any policy evaluation
//! error denies** (Cedar skips an erroring policy; a skipped `forbid` would
//! fail open). A request the authorizer cannot even express (unknown action
//! or instrument, an order quantity that is not an exact Cedar decimal, an
//! inconsistent key) is denied before evaluation, with the reason in
//! [`Decision::errors`].
//!
//! Each deny carries a stable [`DenyCode`], taken from the `@code`
//! annotation of the satisfied `forbid` policies (none: `FORBIDDEN_BY_POLICY`).
//! When several forbids are satisfied the code is chosen by a fixed priority
//! (see [`DenyCode::priority`]): `KEY_EXPIRED` > `IP_NOT_ALLOWED` >
//! `SCOPE_MISSING` > `MFA_REQUIRED` > `FORBIDDEN_BY_POLICY`. Facts about the
//! key itself come first; `MFA_REQUIRED` outranks the generic code so that a
//! caller without a fresh MFA proof learns nothing about the account's
//! other rules (address book, tiers) before stepping up.
//!
//! # Speed
//!
//! Cedar evaluates every policy of the set it is given, so the cost of a
//! decision is the number of policies evaluated. Policies are indexed at load
//! by their scope (`index.rs`): the action constraint is resolved against the
//! schema's action groups to the concrete actions it can match; the
//! principal and resource constraints put a policy in the bucket of the
//! entity they name (`==`, `in`, `is T in`), of the type they name (`is T`),
//! or in the unconstrained bucket. Per action, the policies that name no
//! entity are merged into one set per (principal type, resource type), so
//! the generic policies (key settings, defaults, unconstrained operator
//! rules) are one evaluation. A request then evaluates only the sets that
//! can match: that merged set, the buckets of the key and its ancestors
//! (account, parent, grandparent), and of the resource (the instrument; or
//! the target account and its ancestors). Combining the per-set responses
//! with Cedar's rules gives Cedar's answer over the whole set: a policy
//! outside these sets has a scope that cannot match, and Cedar evaluates
//! the scope before the conditions and short-circuits, so it can be neither
//! satisfied nor erroring (`tests/authz_prop.rs` checks this against plain
//! Cedar over random policy sets).
//!
//! Entities are built off the hot path: [`Authorizer::prepare_key`] builds
//! the key and account entities with their ancestors already closed (account
//! entities are shared by the keys of an account), action and instrument
//! entities are built at load, and a request assembles its entity store
//! from these shared values without recomputing the hierarchy. Extension
//! values (`ip`, `decimal`) are built without Cedar's public constructors,
//! which re-parse the function name on every call; this uses
//! `cedar-policy-core` directly, pinned to cedar-policy's exact version.
//!
//! # Sub-accounts
//!
//! A key's ancestry is fixed when it is prepared: its account, the account's
//! parent, and the parent's parent when the parent's facts are given. A
//! request on another account names it (`target_account`) and, for a
//! sub-account, its parent (`target_account_parent`); that entity has no
//! attributes (a policy reading them errors, and so denies) and can never
//! make the key a member of anything new.
//!
//! # Decimals
//!
//! Cedar's `decimal` has exactly 4 fractional digits and the range of an
//! `i64` scaled by 10⁴. Order quantities and notionals arrive as strings;
//! one with more fractional digits (a BTC quantity of `0.00012345`) is
//! **rounded up** to the fourth place, so an upper limit (`qty > 10`, the
//! common case: largest size, largest notional) can never be slipped under
//! by rounding; a minimum-size policy sees at most 0.0001 more than the real
//! size. Exact limits belong to `[pretrade]`. A value out of range, or not a
//! decimal, denies the request with an explanatory error.

mod compiled;
mod index;
mod load;
mod native;
mod prepare;
mod render;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use cedar_policy::{Entities, EntityUid, PolicyId, PolicySet, Request};

pub use load::{PolicyError, PolicyIssue};
pub use prepare::PreparedKey;
pub use render::render_key_policies;

const SCHEMA: &str = include_str!("../policies/rampart.cedarschema");
const KEY_POLICIES: &str = include_str!("../policies/keys.cedar");
const DEFAULT_POLICIES: &str = include_str!("../policies/defaults.cedar");

/// Source name of the key-settings policies in errors and explanations.
pub const KEY_POLICIES_SOURCE: &str = "keys.cedar";
/// Source name of the shipped default policies.
pub const DEFAULT_POLICIES_SOURCE: &str = "defaults.cedar";

/// The Cedar schema (namespace `Rampart`) as shipped: entity types, context,
/// action groups and the built-in actions. Extra actions from
/// [`AuthzConfig::actions`] are appended at construction
/// ([`Authorizer::schema`] returns the full text).
pub fn schema_text() -> &'static str {
    SCHEMA
}

/// The key-settings policies (always loaded).
pub fn key_policies_text() -> &'static str {
    KEY_POLICIES
}

/// The shipped default policies (loaded when [`AuthzConfig::defaults`]).
pub fn default_policies_text() -> &'static str {
    DEFAULT_POLICIES
}

/// An action the gateway's routes name, beyond (or restating) the built-in
/// ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionDef {
    /// Action name (`PlaceOrder`); ASCII letters, digits and `_`.
    pub name: String,
    /// The scope the action's routes require. When `groups` is empty it
    /// places the action in the group of the same name if that is `public`,
    /// `read`, `trade` or `withdraw`.
    pub scope: String,
    /// Action groups (`read`, `trade`, `sensitive`, or new ones). For a
    /// built-in action these must already be among its groups.
    pub groups: Vec<String>,
}

/// One instrument of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentDef {
    /// Symbol (`BTC-USD`).
    pub symbol: String,
    /// Product: `spot`, `perp` or `option`.
    pub product: String,
}

/// An API key's settings, as stored. Empty allow lists mean "unrestricted".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySettings {
    /// Key id.
    pub key_id: String,
    /// The account the key belongs to.
    pub account_id: String,
    /// Scopes (`read`, `trade`, `withdraw`, …).
    pub scopes: Vec<String>,
    /// Instrument allow list; empty: any instrument.
    pub instruments: Vec<String>,
    /// Product allow list (`spot`, `perp`, `option`); empty: any product.
    pub products: Vec<String>,
    /// Source IP allow list; empty: any address.
    pub nets: Vec<ipnet::IpNet>,
    /// Expiry, Unix milliseconds; `None`: never.
    pub expires_at_ms: Option<i64>,
    /// Only market data and account reads.
    pub read_only: bool,
}

/// What the authorizer needs to know about an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFacts {
    /// Account id.
    pub id: String,
    /// Parent account, for a sub-account.
    pub parent_id: Option<String>,
    /// KYC tier: 0 market data, 1 spot and withdrawals, 2 derivatives.
    pub kyc_tier: u8,
    /// Risk profile label (`retail`, `professional`, …).
    pub risk_profile: String,
    /// The withdrawal address book.
    pub withdrawal_addresses: Vec<String>,
}

/// The order a request carries, as the gateway parsed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFacts {
    /// `buy` / `sell`, as sent.
    pub side: String,
    /// `limit` / `market` / …, as sent.
    pub order_type: String,
    /// Quantity, a decimal string (`"0.5"`); rounded up to 4 fractional
    /// digits for Cedar.
    pub qty: String,
    /// Notional, when known; same rule as `qty`.
    pub notional: Option<String>,
    /// Instrument symbol.
    pub instrument: String,
}

/// One authorization question.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Action name (the route's).
    pub action: &'a str,
    /// The scope the route requires (`public`: none).
    pub required_scope: &'a str,
    /// The account the request acts on; `None`: the key's own.
    pub target_account: Option<&'a str>,
    /// The parent of `target_account`, when the caller knows it (needed for
    /// a parent key to act on its sub-account).
    pub target_account_parent: Option<&'a str>,
    /// The instrument the request names; defaults to the order's.
    pub instrument: Option<&'a str>,
    /// Source address (IPv4-mapped IPv6 addresses are treated as IPv4).
    pub source_ip: IpAddr,
    /// Adaptive risk score, 0..=100.
    pub risk_score: u8,
    /// Seconds since the last verified MFA; `None`: none.
    pub mfa_age_secs: Option<u64>,
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// The order, for order entry.
    pub order: Option<&'a OrderFacts>,
    /// `(asset, address)` for a withdrawal.
    pub withdrawal: Option<(&'a str, &'a str)>,
}

/// Operator-supplied policy text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// Name used in errors and explanations (usually the file path).
    pub name: String,
    /// Cedar policy text.
    pub text: String,
}

/// What [`Authorizer::new`] loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzConfig {
    /// Actions named by routes (built-in ones may be restated).
    pub actions: Vec<ActionDef>,
    /// The instrument catalogue.
    pub instruments: Vec<InstrumentDef>,
    /// Load the shipped `defaults.cedar`.
    pub defaults: bool,
    /// Operator policy files.
    pub sources: Vec<PolicySource>,
}

/// Stable, client-facing reason for a deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DenyCode {
    /// The key has expired.
    KeyExpired,
    /// The source address is not on the key's allow list.
    IpNotAllowed,
    /// The key lacks the scope (or is read-only).
    ScopeMissing,
    /// A fresh MFA proof is required (step up and retry).
    MfaRequired,
    /// Any other deny: a forbid without `@code`, no permit, an evaluation
    /// error, or a request that could not be evaluated.
    ForbiddenByPolicy,
}

impl DenyCode {
    /// Every code, highest priority first.
    pub const ALL: [DenyCode; 5] = [
        DenyCode::KeyExpired,
        DenyCode::IpNotAllowed,
        DenyCode::ScopeMissing,
        DenyCode::MfaRequired,
        DenyCode::ForbiddenByPolicy,
    ];

    /// The code as written in `@code("…")` and sent to clients.
    pub const fn as_str(self) -> &'static str {
        match self {
            DenyCode::KeyExpired => "KEY_EXPIRED",
            DenyCode::IpNotAllowed => "IP_NOT_ALLOWED",
            DenyCode::ScopeMissing => "SCOPE_MISSING",
            DenyCode::MfaRequired => "MFA_REQUIRED",
            DenyCode::ForbiddenByPolicy => "FORBIDDEN_BY_POLICY",
        }
    }

    /// Parses an `@code` value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Priority when several forbids are satisfied: lower wins. Facts about
    /// the key (expired, wrong network, missing scope) first, then a missing
    /// MFA proof, then everything else.
    pub const fn priority(self) -> u8 {
        match self {
            DenyCode::KeyExpired => 0,
            DenyCode::IpNotAllowed => 1,
            DenyCode::ScopeMissing => 2,
            DenyCode::MfaRequired => 3,
            DenyCode::ForbiddenByPolicy => 4,
        }
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Why not; `None` when allowed.
    pub code: Option<DenyCode>,
    /// Ids of the determining policies, sorted: the satisfied permits when
    /// allowed; the satisfied forbids, or else the policies that failed to
    /// evaluate, when denied; empty for a default deny.
    pub policies: Vec<String>,
    /// Evaluation errors and reasons a request could not be evaluated.
    pub errors: Vec<String>,
}

impl Decision {
    fn refused(error: String) -> Self {
        Self {
            allowed: false,
            code: Some(DenyCode::ForbiddenByPolicy),
            policies: Vec::new(),
            errors: vec![error],
        }
    }
}

/// A policy's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `permit`.
    Permit,
    /// `forbid`.
    Forbid,
}

impl From<cedar_policy::Effect> for Effect {
    fn from(e: cedar_policy::Effect) -> Self {
        match e {
            cedar_policy::Effect::Permit => Effect::Permit,
            cedar_policy::Effect::Forbid => Effect::Forbid,
        }
    }
}

/// A satisfied policy, for explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SatisfiedPolicy {
    /// Policy id.
    pub id: String,
    /// Effect.
    pub effect: Effect,
    /// Source name (`keys.cedar`, `defaults.cedar`, an operator file).
    pub source: String,
    /// The `@code` of a forbid.
    pub code: Option<DenyCode>,
    /// The policy text.
    pub text: String,
}

/// A decision with its reasons, for `rampart policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision (as [`Authorizer::authorize`] makes it).
    pub decision: Decision,
    /// Every satisfied policy (each evaluated on its own), forbids first.
    pub satisfied: Vec<SatisfiedPolicy>,
    /// Evaluation errors, per policy.
    pub errors: Vec<String>,
    /// The key's settings as literal per-key policies.
    pub key_policies: String,
}

/// Per-policy facts kept beside the policy sets.
#[derive(Debug, Clone)]
struct PolicyMeta {
    source: Arc<str>,
    code: Option<DenyCode>,
    effect: Effect,
    text: String,
}

/// A concrete (non-group) action of the schema.
#[derive(Debug, Clone)]
struct ActionInfo {
    index: usize,
    uid: EntityUid,
    entity: Arc<prepare::CoreEntity>,
    /// The built-in groups it is in, for the native shipped policies.
    groups: native::Groups,
    /// Every group it is in (transitively), by id.
    group_ids: Vec<String>,
}

/// The authorization engine: schema, validated policies, their index, and
/// the catalogue entities. Immutable; share it behind an `Arc` and rebuild
/// on reload.
#[derive(Debug)]
pub struct Authorizer {
    schema_full: String,
    all: PolicySet,
    meta: HashMap<PolicyId, PolicyMeta>,
    actions: HashMap<String, ActionInfo>,
    instruments: HashMap<String, load::CatalogueEntry>,
    index: index::Index,
    types: load::Types,
    accounts: prepare::AccountCache,
    cedar: cedar_policy::Authorizer,
    /// `defaults.cedar` is loaded (evaluated natively, like `keys.cedar`).
    defaults: bool,
}

/// What the evaluated buckets said, before the deny rules.
#[derive(Debug, Default)]
struct Outcome {
    permits: BTreeSet<String>,
    forbids: Vec<PolicyId>,
    errored: BTreeSet<String>,
    errors: Vec<String>,
    /// Satisfied shipped forbids, evaluated natively, with their codes.
    native_forbids: Vec<(&'static str, DenyCode)>,
    /// Satisfied shipped permits, evaluated natively.
    native_permits: Vec<&'static str>,
}

impl Authorizer {
    /// Loads the schema (plus `cfg.actions`), the key-settings policies, the
    /// defaults when asked, and the operator sources; validates every policy
    /// against the schema in strict mode. The error lists every problem found,
    /// each with its source name, line and column.
    pub fn new(cfg: &AuthzConfig) -> Result<Self, PolicyError> {
        let loaded = load::load(cfg)?;
        // The shipped policies are evaluated natively (`native.rs`); the
        // index holds the operator's.
        let operator: Vec<load::LoadedPolicy> = loaded
            .policies
            .iter()
            .filter(|p| !is_shipped(&p.source))
            .cloned()
            .collect();
        let index = index::Index::build(&operator, &loaded.action_order)
            .map_err(|e| PolicyError::single("policies", e))?;
        let mut meta = HashMap::with_capacity(loaded.policies.len());
        let mut all = PolicySet::new();
        for p in loaded.policies {
            meta.insert(
                p.policy.id().clone(),
                PolicyMeta {
                    source: p.source,
                    code: p.code,
                    effect: p.policy.effect().into(),
                    text: p.text,
                },
            );
            // INVARIANT: ids were checked unique by `load`.
            if let Err(e) = all.add(p.policy) {
                return Err(PolicyError::single("policies", e.to_string()));
            }
        }
        Ok(Self {
            schema_full: loaded.schema_text,
            all,
            meta,
            actions: loaded.actions,
            instruments: loaded.instruments,
            index,
            types: loaded.types,
            accounts: prepare::AccountCache::default(),
            cedar: cedar_policy::Authorizer::new(),
            defaults: cfg.defaults,
        })
    }

    /// Builds the per-key entities once; cache the result with the key and
    /// rebuild it when the key's or its accounts' facts change. `parent` is
    /// the facts of `account.parent_id`, when there is one. An inconsistent
    /// input (the key's account is not `account`, a cycle) yields a
    /// `PreparedKey` every request of which is denied.
    pub fn prepare_key(
        &self,
        key: &KeySettings,
        account: &AccountFacts,
        parent: Option<&AccountFacts>,
    ) -> PreparedKey {
        prepare::prepare(&self.types, &self.accounts, key, account, parent)
    }

    /// Decides one request. Never panics; anything that cannot be evaluated
    /// denies.
    ///
    /// The shipped policies are evaluated natively; Cedar evaluates only the
    /// operator's policy sets the index finds for the request, and the Cedar
    /// request is built only when there is at least one.
    pub fn authorize(&self, key: &PreparedKey, req: &RequestFacts<'_>) -> Decision {
        self.decide_request(key, req, true)
            .unwrap_or_else(|| Decision::refused("no evaluation".into()))
    }

    /// [`Self::authorize`] without Cedar: `None` when the decision needs
    /// Cedar (an operator policy that does not compile, or a compiled
    /// evaluation that cannot decide). For tests that check the compiled
    /// evaluation itself against Cedar.
    #[doc(hidden)]
    pub fn authorize_without_cedar(
        &self,
        key: &PreparedKey,
        req: &RequestFacts<'_>,
    ) -> Option<Decision> {
        self.decide_request(key, req, false)
    }

    fn decide_request(
        &self,
        key: &PreparedKey,
        req: &RequestFacts<'_>,
        cedar: bool,
    ) -> Option<Decision> {
        // The same checks, in the same order and with the same messages,
        // as `request` (the reference path).
        let Some(action) = self.actions.get(req.action) else {
            return Some(Decision::refused(format!(
                "unknown action `{}`",
                req.action
            )));
        };
        let instrument = match self.instrument(req) {
            Ok(i) => i,
            Err(e) => return Some(Decision::refused(e)),
        };
        if let Err(e) = key.check() {
            return Some(Decision::refused(e));
        }
        let (target, target_ancestors) = match key.target(req) {
            Ok(t) => t,
            Err(e) => return Some(Decision::refused(e)),
        };
        // Order decimals as Cedar sees them (10⁻⁴ units).
        let (mut qty, mut notional) = (None, None);
        if let Some(o) = req.order {
            match prepare::cedar_units("qty", &o.qty) {
                Ok(q) => qty = Some(q),
                Err(e) => return Some(Decision::refused(e)),
            }
            if let Some(n) = &o.notional {
                match prepare::cedar_units("notional", n) {
                    Ok(n) => notional = Some(n),
                    Err(e) => return Some(Decision::refused(e)),
                }
            }
        }

        // Operator policy sets that can apply.
        let (key_uid, key_ancestors) = key.principal_chain();
        let mut principals: Vec<index::Key<'_>> = Vec::with_capacity(3 + key_ancestors.len());
        principals.push(index::Key::Any);
        principals.push(index::Key::Type(key_uid.type_name()));
        principals.push(index::Key::Uid(key_uid));
        principals.extend(key_ancestors.iter().map(index::Key::Uid));
        let mut resources: Vec<index::Key<'_>> = Vec::with_capacity(7);
        resources.push(index::Key::Any);
        let resource_ty = match instrument {
            Some((_, e)) => {
                resources.push(index::Key::Type(e.uid.type_name()));
                resources.push(index::Key::Uid(&e.uid));
                e.uid.type_name()
            }
            None => {
                resources.push(index::Key::Type(target.type_name()));
                resources.push(index::Key::Uid(&target));
                resources.extend(target_ancestors.iter().map(index::Key::Uid));
                target.type_name()
            }
        };
        let mut sets: Vec<&index::Bucket> = Vec::new();
        let applies = self.index.for_each(
            action.index,
            (key_uid.type_name(), &principals),
            (resource_ty, &resources),
            |set| sets.push(set),
        );
        if !applies {
            return Some(Decision::refused(format!(
                "action `{}` does not apply to `{}` and `{}`",
                req.action,
                key_uid.type_name(),
                resource_ty
            )));
        }

        let mut out = Outcome::default();
        let own = key.principal_chain().1.first();
        let resolved = native::Resolved {
            groups: action.groups,
            instrument: instrument.map(|(symbol, e)| (symbol, e.product)),
            target_in_own: own.is_some_and(|o| *target == *o || target_ancestors.contains(o)),
        };
        native::evaluate(&key.facts, req, &resolved, self.defaults, &mut out);
        if sets.is_empty() {
            return Some(self.decide(out));
        }
        // Operator sets: compiled where every policy compiled, else (or when
        // the compiled evaluation cannot decide) by Cedar.
        let own_chain = &key.facts.chain;
        let target_id = target.id().unescaped();
        let foreign_ancestors: Vec<String> = if own_chain.iter().any(|c| c == target_id) {
            Vec::new()
        } else {
            target_ancestors
                .iter()
                .map(|u| u.id().unescaped().to_string())
                .collect()
        };
        let ip = req.source_ip.to_canonical();
        let env = compiled::Env {
            req,
            key_id: key.key_id(),
            key: &key.facts,
            chain: own_chain,
            action: req.action,
            action_groups: &action.group_ids,
            instrument: resolved.instrument,
            target: target_id,
            target_ancestors: &foreign_ancestors,
            source_net: key
                .facts
                .nets
                .iter()
                .find(|n| n.contains(&ip))
                .map(compiled::Ip::net),
            source_ip: compiled::Ip::addr(ip),
            qty,
            notional,
        };
        let mut cedar_request = None;
        for bucket in sets {
            if let Some(policies) = &bucket.compiled {
                if let Ok(satisfied) = policies
                    .iter()
                    .filter_map(|p| match env.satisfied(p) {
                        Ok(true) => Some(Ok(p)),
                        Ok(false) => None,
                        Err(f) => Some(Err(f)),
                    })
                    .collect::<Result<Vec<_>, compiled::Fallback>>()
                {
                    for p in satisfied {
                        match p.effect {
                            Effect::Permit => {
                                out.permits.insert(p.id.to_string());
                            }
                            Effect::Forbid => out.forbids.push(p.id.clone()),
                        }
                    }
                    continue;
                }
            }
            if !cedar {
                return None;
            }
            if cedar_request.is_none() {
                match key.request(
                    &self.types,
                    req,
                    &action.uid,
                    &action.entity,
                    instrument.map(|(_, e)| (&e.uid, &e.entity)),
                ) {
                    Ok(v) => cedar_request = Some(v),
                    Err(e) => return Some(Decision::refused(e)),
                }
            }
            if let Some((request, entities)) = &cedar_request {
                self.evaluate(&bucket.set, request, entities, &mut out);
            }
        }
        Some(self.decide(out))
    }

    /// Decides one request against the whole policy set, without the index
    /// (the reference the index must agree with; slow with many policies).
    pub fn authorize_unindexed(&self, key: &PreparedKey, req: &RequestFacts<'_>) -> Decision {
        let (request, entities, _) = match self.request(key, req) {
            Ok(v) => v,
            Err(e) => return Decision::refused(e),
        };
        let mut out = Outcome::default();
        self.evaluate(&self.all, &request, &entities, &mut out);
        self.decide(out)
    }

    /// The decision, every satisfied policy with its source and text, the
    /// evaluation errors, and the key's settings as per-key policies.
    pub fn explain(&self, key: &PreparedKey, req: &RequestFacts<'_>) -> Explanation {
        let decision = self.authorize(key, req);
        let key_policies = render_key_policies(key.settings());
        let (request, entities, _) = match self.request(key, req) {
            Ok(v) => v,
            Err(e) => {
                return Explanation {
                    decision,
                    satisfied: Vec::new(),
                    errors: vec![e],
                    key_policies,
                }
            }
        };
        let mut satisfied = Vec::new();
        let mut errors = Vec::new();
        for policy in self.all.policies() {
            let mut one = PolicySet::new();
            if one.add(policy.clone()).is_err() {
                continue;
            }
            let resp = self.cedar.is_authorized(&request, &one, &entities);
            errors.extend(resp.diagnostics().errors().map(ToString::to_string));
            if resp.diagnostics().reason().next().is_none() {
                continue;
            }
            let Some(m) = self.meta.get(policy.id()) else {
                continue;
            };
            satisfied.push(SatisfiedPolicy {
                id: policy.id().to_string(),
                effect: m.effect,
                source: m.source.to_string(),
                code: m.code,
                text: m.text.clone(),
            });
        }
        satisfied.sort_by(|a, b| {
            let rank = |e: Effect| u8::from(e == Effect::Permit);
            (rank(a.effect), &a.id).cmp(&(rank(b.effect), &b.id))
        });
        errors.sort();
        Explanation {
            decision,
            satisfied,
            errors,
            key_policies,
        }
    }

    /// Number of policies loaded (key settings, defaults, operator).
    pub fn policy_count(&self) -> usize {
        self.all.num_of_policies()
    }

    /// The full schema text: [`schema_text`] plus the generated actions.
    pub fn schema(&self) -> &str {
        &self.schema_full
    }

    /// Every loaded policy, as one Cedar policy set (ids as in decisions).
    pub fn policy_set(&self) -> &PolicySet {
        &self.all
    }

    /// The Cedar request and entities `authorize` evaluates for these facts
    /// (for tools and reference evaluation). Errors say why the request
    /// cannot be evaluated (and would be denied).
    pub fn cedar_request(
        &self,
        key: &PreparedKey,
        req: &RequestFacts<'_>,
    ) -> Result<(Request, Entities), String> {
        self.request(key, req).map(|(r, e, _)| (r, e))
    }

    fn request(
        &self,
        key: &PreparedKey,
        req: &RequestFacts<'_>,
    ) -> Result<(Request, Entities, usize), String> {
        let action = self
            .actions
            .get(req.action)
            .ok_or_else(|| format!("unknown action `{}`", req.action))?;
        let instrument = self.instrument(req)?;
        let (request, entities) = key.request(
            &self.types,
            req,
            &action.uid,
            &action.entity,
            instrument.map(|(_, e)| (&e.uid, &e.entity)),
        )?;
        Ok((request, entities, action.index))
    }

    /// The catalogue entry of the instrument the request names (or its
    /// order's), or why it cannot be evaluated.
    fn instrument(
        &self,
        req: &RequestFacts<'_>,
    ) -> Result<Option<(&str, &load::CatalogueEntry)>, String> {
        match (req.instrument, req.order.map(|o| o.instrument.as_str())) {
            (Some(a), Some(b)) if a != b => Err(format!(
                "the request names instrument `{a}` but its order is for `{b}`"
            )),
            (Some(a), _) | (None, Some(a)) => self
                .instruments
                .get_key_value(a)
                .map(|(k, v)| Some((k.as_str(), v)))
                .ok_or_else(|| format!("unknown instrument `{a}`")),
            (None, None) => Ok(None),
        }
    }

    fn evaluate(&self, set: &PolicySet, request: &Request, entities: &Entities, out: &mut Outcome) {
        let resp = self.cedar.is_authorized(request, set, entities);
        let diag = resp.diagnostics();
        for err in diag.errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = err;
            out.errored.insert(e.policy_id().to_string());
            out.errors.push(err.to_string());
        }
        match resp.decision() {
            cedar_policy::Decision::Allow => {
                out.permits.extend(diag.reason().map(ToString::to_string));
            }
            cedar_policy::Decision::Deny => out.forbids.extend(diag.reason().cloned()),
        }
    }

    fn decide(&self, mut out: Outcome) -> Decision {
        out.errors.sort();
        if !out.forbids.is_empty() || !out.native_forbids.is_empty() {
            let code = out
                .forbids
                .iter()
                .map(|id| {
                    self.meta
                        .get(id)
                        .and_then(|m| m.code)
                        .unwrap_or(DenyCode::ForbiddenByPolicy)
                })
                .chain(out.native_forbids.iter().map(|(_, c)| *c))
                .min_by_key(|c| c.priority())
                .unwrap_or(DenyCode::ForbiddenByPolicy);
            let mut policies: Vec<String> = out
                .forbids
                .iter()
                .map(ToString::to_string)
                .chain(out.native_forbids.iter().map(|(id, _)| (*id).to_string()))
                .collect();
            policies.sort();
            policies.dedup();
            return Decision {
                allowed: false,
                code: Some(code),
                policies,
                errors: out.errors,
            };
        }
        if !out.errors.is_empty() {
            return Decision {
                allowed: false,
                code: Some(DenyCode::ForbiddenByPolicy),
                policies: out.errored.into_iter().collect(),
                errors: out.errors,
            };
        }
        out.permits
            .extend(out.native_permits.iter().map(|id| (*id).to_string()));
        if out.permits.is_empty() {
            return Decision {
                allowed: false,
                code: Some(DenyCode::ForbiddenByPolicy),
                policies: Vec::new(),
                errors: Vec::new(),
            };
        }
        Decision {
            allowed: true,
            code: None,
            policies: out.permits.into_iter().collect(),
            errors: Vec::new(),
        }
    }
}

/// Whether a policy source is one of the shipped files (evaluated
/// natively; operator sources may not take these names).
fn is_shipped(source: &str) -> bool {
    source == KEY_POLICIES_SOURCE || source == DEFAULT_POLICIES_SOURCE
}

/// Parses, validates and counts the policies `cfg` would load (for
/// `rampart policy check`): key settings, defaults when enabled, operator
/// sources.
pub fn check_sources(cfg: &AuthzConfig) -> Result<usize, PolicyError> {
    load::load(cfg).map(|l| l.policies.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_code_priority_is_total_and_documented_order() {
        let mut v = DenyCode::ALL.to_vec();
        v.sort_by_key(|c| c.priority());
        assert_eq!(v, DenyCode::ALL.to_vec());
        for c in DenyCode::ALL {
            assert_eq!(DenyCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(DenyCode::parse("NOPE"), None);
    }

    #[test]
    fn shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Authorizer>();
        send_sync::<PreparedKey>();
        send_sync::<Decision>();
    }

    #[test]
    fn shipped_files_load() {
        let cfg = AuthzConfig {
            defaults: true,
            ..AuthzConfig::default()
        };
        let n = check_sources(&cfg).unwrap();
        assert!(n >= 14, "{n}");
    }
}
