//! Operator policies compiled to a small tree evaluated over the request's
//! native facts, with Cedar as the fallback.
//!
//! Cedar's interpreter rebuilds each policy's condition expression and
//! works on its generic values (~1–2 µs per policy here, and ~6 µs to
//! build the Cedar request). The operator's policies are validated against
//! the schema in strict mode, so their types are known; this module
//! compiles the common part of the language — literals, `principal` /
//! `action` / `resource` / `context`, attribute access and `has`, `==`,
//! `!=`, `<`…`>=` on longs, `+ - *`, `&&`, `||`, `!`, `if`, `in`, `is`,
//! sets with `contains` / `containsAll` / `containsAny` / `isEmpty`,
//! `decimal` and `ip` literals with their comparison and range methods —
//! and evaluates it against the facts the authorizer already holds (the
//! prepared key, the catalogue, the request) without building Cedar
//! values.
//!
//! It never decides on its own where it might differ from Cedar:
//!
//! - a policy using anything else (`like`, templates, nested `has`,
//!   records, other extension functions) is not compiled, and the policy
//!   sets holding it are evaluated by Cedar;
//! - anything that would be an evaluation **error** in Cedar (a missing
//!   attribute, an entity not in the request, an overflow, a type error)
//!   makes the evaluation answer [`Fallback`], and the whole set is then
//!   evaluated by Cedar, which produces the error and the deny. Errors are
//!   rare (the validator rules out most), so the slow path is too.
//!
//! Short-circuits follow Cedar's (`&&`, `||`, `if` evaluate left to right
//! and stop where Cedar stops), so a compiled policy is satisfied exactly
//! when Cedar finds it satisfied. `tests/authz_prop.rs` checks the whole
//! decision against plain Cedar over random policies and requests.

use std::net::IpAddr;
use std::sync::Arc;

use cedar_policy::PolicyId;
use cedar_policy_core::ast::{self, BinaryOp, ExprKind, Literal, UnaryOp, Var};

use super::{Effect, RequestFacts};

/// Evaluation cannot decide without Cedar: Cedar would report an error
/// (or the construct is not modelled); evaluate the set with Cedar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fallback;

type R<T> = Result<T, Fallback>;

/// The entity types of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    ApiKey,
    Account,
    Instrument,
    Action,
    User,
}

impl Ty {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Rampart::ApiKey" => Ty::ApiKey,
            "Rampart::Account" => Ty::Account,
            "Rampart::Instrument" => Ty::Instrument,
            "Rampart::Action" => Ty::Action,
            "Rampart::User" => Ty::User,
            _ => return None,
        })
    }
}

/// An `ipaddr` value, as Cedar's extension keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ip {
    addr: IpAddr,
    prefix: u8,
}

impl Ip {
    /// A single address (`/32`, `/128`).
    pub(crate) fn addr(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// A network as `ip("a/p")` would give it.
    pub(crate) fn net(n: &ipnet::IpNet) -> Self {
        Self {
            addr: n.addr(),
            prefix: n.prefix_len(),
        }
    }

    /// Cedar's `ip("…")` parser (`extensions/ipaddr.rs`), ported.
    fn parse(s: &str) -> Option<Self> {
        if s.len() > 43 || (s.matches(':').count() >= 2 && s.matches('.').count() >= 2) {
            return None;
        }
        match s.split_once('/') {
            Some((a, p)) => {
                let addr: IpAddr = a.parse().ok()?;
                let (max, max_len) = if addr.is_ipv4() { (32, 2) } else { (128, 3) };
                if p.is_empty()
                    || p.len() > max_len
                    || !p.bytes().all(|b| b.is_ascii_digit())
                    || (p.starts_with('0') && p != "0")
                {
                    return None;
                }
                let prefix: u8 = p.parse().ok()?;
                (prefix <= max).then_some(Self { addr, prefix })
            }
            None => s.parse().ok().map(Self::addr),
        }
    }

    /// Cedar's `isInRange`.
    fn in_range(&self, other: &Self) -> bool {
        match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = |p: u8| u32::MAX.checked_shl(u32::from(32 - p)).unwrap_or(0);
                let host = |p: u8| u32::MAX.checked_shr(u32::from(p)).unwrap_or(0);
                let (a, b) = (u32::from(a), u32::from(b));
                (b & mask(other.prefix)) <= (a & mask(self.prefix))
                    && (a | host(self.prefix)) <= (b | host(other.prefix))
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = |p: u8| u128::MAX.checked_shl(u32::from(128 - p)).unwrap_or(0);
                let host = |p: u8| u128::MAX.checked_shr(u32::from(p)).unwrap_or(0);
                let (a, b) = (u128::from(a), u128::from(b));
                (b & mask(other.prefix)) <= (a & mask(self.prefix))
                    && (a | host(self.prefix)) <= (b | host(other.prefix))
            }
            _ => false,
        }
    }

    fn is_loopback(&self) -> bool {
        self.addr.is_loopback() && self.prefix >= if self.addr.is_ipv4() { 8 } else { 128 }
    }

    fn is_multicast(&self) -> bool {
        self.addr.is_multicast() && self.prefix >= if self.addr.is_ipv4() { 4 } else { 8 }
    }
}

/// Cedar's `decimal("…")` parser (`extensions/decimal.rs`), ported: `-?D+.D+`
/// with at most 4 fractional digits, as an `i64` of 10⁻⁴ units.
pub(crate) fn parse_decimal(s: &str) -> Option<i64> {
    let (l, r) = s.split_once('.')?;
    let digits = l.strip_prefix('-').unwrap_or(l);
    if digits.is_empty()
        || r.is_empty()
        || r.len() > 4
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !r.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let li: i64 = l.parse().ok()?;
    let li = li.checked_mul(10_000)?;
    let len = u32::try_from(r.len()).ok()?;
    let ri: i64 = r.parse().ok()?;
    let ri = ri.checked_mul(10_i64.checked_pow(4 - len)?)?;
    if l.starts_with('-') {
        li.checked_sub(ri)
    } else {
        li.checked_add(ri)
    }
}

/// A compiled expression.
#[derive(Debug, Clone)]
enum E {
    Bool(bool),
    Long(i64),
    Str(Arc<str>),
    Ent(Ty, Arc<str>),
    Dec(i64),
    Ip(Ip),
    Var(Var),
    If(Box<[E; 3]>),
    And(Box<[E; 2]>),
    Or(Box<[E; 2]>),
    Not(Box<E>),
    Neg(Box<E>),
    IsEmpty(Box<E>),
    Bin(BinaryOp, Box<[E; 2]>),
    Attr(Box<E>, Arc<str>),
    Has(Box<E>, Arc<str>),
    Is(Box<E>, Ty),
    Set(Vec<E>),
    DecCmp(DecOp, Box<[E; 2]>),
    InRange(Box<[E; 2]>),
    IpTest(IpOp, Box<E>),
}

#[derive(Debug, Clone, Copy)]
enum DecOp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
enum IpOp {
    V4,
    V6,
    Loopback,
    Multicast,
}

fn compile(e: &ast::Expr) -> Option<E> {
    let b = |e: &ast::Expr| compile(e).map(Box::new);
    let two = |a: &ast::Expr, c: &ast::Expr| Some(Box::new([compile(a)?, compile(c)?]));
    Some(match e.expr_kind() {
        ExprKind::Lit(l) => match l {
            Literal::Bool(v) => E::Bool(*v),
            Literal::Long(v) => E::Long(*v),
            Literal::String(s) => E::Str(Arc::from(s.as_str())),
            Literal::EntityUID(u) => E::Ent(
                Ty::parse(&u.entity_type().to_string())?,
                Arc::from(u.eid().as_ref()),
            ),
        },
        ExprKind::Var(v) => E::Var(*v),
        ExprKind::If {
            test_expr,
            then_expr,
            else_expr,
        } => E::If(Box::new([
            compile(test_expr)?,
            compile(then_expr)?,
            compile(else_expr)?,
        ])),
        ExprKind::And { left, right } => E::And(two(left, right)?),
        ExprKind::Or { left, right } => E::Or(two(left, right)?),
        ExprKind::UnaryApp { op, arg } => match op {
            UnaryOp::Not => E::Not(b(arg)?),
            UnaryOp::Neg => E::Neg(b(arg)?),
            UnaryOp::IsEmpty => E::IsEmpty(b(arg)?),
        },
        ExprKind::BinaryApp { op, arg1, arg2 } => match op {
            BinaryOp::Eq
            | BinaryOp::Less
            | BinaryOp::LessEq
            | BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::In
            | BinaryOp::Contains
            | BinaryOp::ContainsAll
            | BinaryOp::ContainsAny => E::Bin(*op, two(arg1, arg2)?),
            _ => return None,
        },
        ExprKind::ExtensionFunctionApp { fn_name, args } => {
            let name = fn_name.to_string();
            let lit = |i: usize| match args.get(i).map(ast::Expr::expr_kind) {
                Some(ExprKind::Lit(Literal::String(s))) => Some(s.as_str()),
                _ => None,
            };
            let arg = |i: usize| args.get(i).and_then(compile);
            match (name.as_str(), args.len()) {
                ("decimal", 1) => E::Dec(parse_decimal(lit(0)?)?),
                ("ip", 1) => E::Ip(Ip::parse(lit(0)?)?),
                ("lessThan", 2) => E::DecCmp(DecOp::Lt, Box::new([arg(0)?, arg(1)?])),
                ("lessThanOrEqual", 2) => E::DecCmp(DecOp::Le, Box::new([arg(0)?, arg(1)?])),
                ("greaterThan", 2) => E::DecCmp(DecOp::Gt, Box::new([arg(0)?, arg(1)?])),
                ("greaterThanOrEqual", 2) => E::DecCmp(DecOp::Ge, Box::new([arg(0)?, arg(1)?])),
                ("isInRange", 2) => E::InRange(Box::new([arg(0)?, arg(1)?])),
                ("isIpv4", 1) => E::IpTest(IpOp::V4, Box::new(arg(0)?)),
                ("isIpv6", 1) => E::IpTest(IpOp::V6, Box::new(arg(0)?)),
                ("isLoopback", 1) => E::IpTest(IpOp::Loopback, Box::new(arg(0)?)),
                ("isMulticast", 1) => E::IpTest(IpOp::Multicast, Box::new(arg(0)?)),
                _ => return None,
            }
        }
        ExprKind::GetAttr { expr, attr } => E::Attr(b(expr)?, Arc::from(attr.as_str())),
        ExprKind::HasAttr { expr, attr } => E::Has(b(expr)?, Arc::from(attr.as_str())),
        ExprKind::Is { expr, entity_type } => E::Is(b(expr)?, Ty::parse(&entity_type.to_string())?),
        ExprKind::Set(items) => E::Set(items.iter().map(compile).collect::<Option<_>>()?),
        _ => return None,
    })
}

/// A compiled operator policy.
#[derive(Debug)]
pub(crate) struct CompiledPolicy {
    pub(crate) id: PolicyId,
    pub(crate) effect: Effect,
    expr: E,
}

impl CompiledPolicy {
    /// Compiles `p` (its whole condition: scope, `when`, `unless`), or
    /// `None` when it uses something this module does not model.
    pub(crate) fn new(p: &cedar_policy::Policy) -> Option<Self> {
        let core: &ast::Policy = p.as_ref();
        Some(Self {
            id: p.id().clone(),
            effect: p.effect().into(),
            expr: compile(&core.condition())?,
        })
    }
}

/// A runtime value. Strings and entity ids borrow from the policies or the
/// request's facts.
#[derive(Debug, Clone)]
enum V<'a> {
    Bool(bool),
    Long(i64),
    Str(&'a str),
    Ent(Ty, &'a str),
    Set(Vec<V<'a>>),
    Rec(Rec),
    Dec(i64),
    Ip(Ip),
}

/// The records of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rec {
    Context,
    Order,
    Withdrawal,
}

impl V<'_> {
    /// Cedar's `==`: same kind and value (sets as sets); different kinds
    /// are unequal.
    fn eq(&self, o: &Self) -> R<bool> {
        Ok(match (self, o) {
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Long(a), V::Long(b)) => a == b,
            (V::Str(a), V::Str(b)) => a == b,
            (V::Ent(ta, a), V::Ent(tb, b)) => ta == tb && a == b,
            (V::Dec(a), V::Dec(b)) => a == b,
            (V::Ip(a), V::Ip(b)) => a == b,
            (V::Set(a), V::Set(b)) => subset(a, b)? && subset(b, a)?,
            // Records compare field by field in Cedar: not modelled.
            (V::Rec(_), _) | (_, V::Rec(_)) => return Err(Fallback),
            _ => false,
        })
    }
}

fn contains(set: &[V<'_>], x: &V<'_>) -> R<bool> {
    for v in set {
        if v.eq(x)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn subset(a: &[V<'_>], b: &[V<'_>]) -> R<bool> {
    for x in a {
        if !contains(b, x)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The facts of one request, as the Cedar request would hold them.
#[derive(Debug)]
pub(crate) struct Env<'a> {
    pub(crate) req: &'a RequestFacts<'a>,
    pub(crate) key_id: &'a str,
    pub(crate) key: &'a super::native::KeyFacts,
    /// The key's ancestors: account, parent, grandparent (ids).
    pub(crate) chain: &'a [String],
    /// The request's action and its groups (transitively).
    pub(crate) action: &'a str,
    pub(crate) action_groups: &'a [String],
    /// `(symbol, product)` of the request's instrument.
    pub(crate) instrument: Option<(&'a str, &'a str)>,
    /// The account acted on, and its ancestors when it is not in `chain`.
    pub(crate) target: &'a str,
    pub(crate) target_ancestors: &'a [String],
    /// `context.source_net`, when present.
    pub(crate) source_net: Option<Ip>,
    pub(crate) source_ip: Ip,
    /// `context.order.qty` / `.notional` in 10⁻⁴ units.
    pub(crate) qty: Option<i64>,
    pub(crate) notional: Option<i64>,
}

impl<'a> Env<'a> {
    /// Whether the request's entities hold `(ty, id)`, and its ancestors.
    fn entity(&self, ty: Ty, id: &str) -> Option<&'a [String]> {
        match ty {
            Ty::ApiKey if id == self.key_id => Some(self.chain),
            Ty::Account => {
                if self.chain.first().is_some_and(|a| a == id) {
                    return self.chain.get(1..);
                }
                if self.key.parent.is_some() && self.chain.get(1).is_some_and(|p| p == id) {
                    return self.chain.get(2..);
                }
                if id == self.target && !self.chain.iter().any(|c| c == id) {
                    return Some(self.target_ancestors);
                }
                None
            }
            Ty::Instrument if self.instrument.is_some_and(|(s, _)| s == id) => Some(&[]),
            Ty::Action if id == self.action => Some(self.action_groups),
            _ => None,
        }
    }

    fn is_in(&self, (ta, a): (Ty, &str), (tb, b): (Ty, &str)) -> bool {
        if ta == tb && a == b {
            return true;
        }
        let want = match (ta, tb) {
            (Ty::Action, Ty::Action) => true,
            (Ty::Action, _) | (_, Ty::Action) => false,
            (_, Ty::Account) => true,
            _ => false,
        };
        want && self
            .entity(ta, a)
            .is_some_and(|anc| anc.iter().any(|x| x == b))
    }

    fn strings(v: &'a [String]) -> V<'a> {
        V::Set(v.iter().map(|s| V::Str(s.as_str())).collect())
    }

    fn entity_attr(&self, ty: Ty, id: &'a str, attr: &str) -> R<V<'a>> {
        let k = self.key;
        match ty {
            Ty::ApiKey if id == self.key_id => Ok(match attr {
                "account" => V::Ent(Ty::Account, self.chain.first().ok_or(Fallback)?),
                "scopes" => Self::strings(&k.scopes),
                "instruments" => Self::strings(&k.instruments),
                "any_instrument" => V::Bool(k.instruments.is_empty()),
                "products" => Self::strings(&k.products),
                "any_product" => V::Bool(k.products.is_empty()),
                "read_only" => V::Bool(k.read_only),
                "expires" => V::Bool(k.expires_at_s.is_some()),
                "expires_at" => V::Long(k.expires_at_s.unwrap_or(0)),
                "nets" => V::Set(k.nets.iter().map(|n| V::Ip(Ip::net(n))).collect()),
                "any_ip" => V::Bool(k.nets.is_empty()),
                _ => return Err(Fallback),
            }),
            Ty::Account => {
                let facts = if self.chain.first().is_some_and(|a| a == id) {
                    &k.account
                } else {
                    match &k.parent {
                        Some(p) if self.chain.get(1).is_some_and(|x| x == id) => p,
                        _ => return Err(Fallback),
                    }
                };
                Ok(match attr {
                    "kyc_tier" => V::Long(facts.kyc_tier),
                    "risk_profile" => V::Str(&facts.risk_profile),
                    "withdrawal_addresses" => Self::strings(&facts.withdrawal_addresses),
                    _ => return Err(Fallback),
                })
            }
            Ty::Instrument => match self.instrument {
                Some((s, p)) if s == id => Ok(match attr {
                    "symbol" => V::Str(s),
                    "product" => V::Str(p),
                    _ => return Err(Fallback),
                }),
                _ => Err(Fallback),
            },
            _ => Err(Fallback),
        }
    }

    fn entity_has(&self, ty: Ty, id: &str, attr: &str) -> bool {
        if self.entity(ty, id).is_none() {
            return false;
        }
        match ty {
            Ty::ApiKey => matches!(
                attr,
                "account"
                    | "scopes"
                    | "instruments"
                    | "any_instrument"
                    | "products"
                    | "any_product"
                    | "read_only"
                    | "expires"
                    | "expires_at"
                    | "nets"
                    | "any_ip"
            ),
            Ty::Account => {
                // The key's account and a known parent carry the facts; a
                // target outside the key's chain has no attributes.
                let with_data = self.chain.first().is_some_and(|a| a == id)
                    || (self.key.parent.is_some() && self.chain.get(1).is_some_and(|p| p == id));
                with_data && matches!(attr, "kyc_tier" | "risk_profile" | "withdrawal_addresses")
            }
            Ty::Instrument => matches!(attr, "symbol" | "product"),
            Ty::Action | Ty::User => false,
        }
    }

    fn rec_attr(&self, r: Rec, attr: &str) -> R<V<'a>> {
        let req = self.req;
        match r {
            Rec::Context => Ok(match attr {
                "source_ip" => V::Ip(self.source_ip),
                "source_net" => V::Ip(self.source_net.ok_or(Fallback)?),
                "required_scope" => V::Str(req.required_scope),
                "account" => V::Ent(Ty::Account, self.target),
                "risk_score" => V::Long(i64::from(req.risk_score)),
                "mfa_age" => V::Long(
                    req.mfa_age_secs
                        .map(|a| i64::try_from(a).unwrap_or(i64::MAX))
                        .ok_or(Fallback)?,
                ),
                "now" => V::Long(req.now_ms.div_euclid(1000)),
                "hour" => V::Long(req.now_ms.div_euclid(1000).rem_euclid(86_400) / 3_600),
                "order" if req.order.is_some() => V::Rec(Rec::Order),
                "withdrawal" if req.withdrawal.is_some() => V::Rec(Rec::Withdrawal),
                _ => return Err(Fallback),
            }),
            Rec::Order => {
                let o = req.order.ok_or(Fallback)?;
                Ok(match attr {
                    "side" => V::Str(&o.side),
                    "type" => V::Str(&o.order_type),
                    "qty" => V::Dec(self.qty.ok_or(Fallback)?),
                    "notional" => V::Dec(self.notional.ok_or(Fallback)?),
                    "instrument" => V::Str(&o.instrument),
                    _ => return Err(Fallback),
                })
            }
            Rec::Withdrawal => {
                let (asset, address) = req.withdrawal.ok_or(Fallback)?;
                Ok(match attr {
                    "asset" => V::Str(asset),
                    "address" => V::Str(address),
                    _ => return Err(Fallback),
                })
            }
        }
    }

    fn rec_has(&self, r: Rec, attr: &str) -> bool {
        let req = self.req;
        match r {
            Rec::Context => match attr {
                "source_ip" | "required_scope" | "account" | "risk_score" | "now" | "hour" => true,
                "source_net" => self.source_net.is_some(),
                "mfa_age" => req.mfa_age_secs.is_some(),
                "order" => req.order.is_some(),
                "withdrawal" => req.withdrawal.is_some(),
                _ => false,
            },
            Rec::Order => match attr {
                "side" | "type" | "qty" | "instrument" => true,
                "notional" => req.order.is_some_and(|o| o.notional.is_some()),
                _ => false,
            },
            Rec::Withdrawal => matches!(attr, "asset" | "address"),
        }
    }

    fn bool(&self, e: &'a E) -> R<bool> {
        match self.eval(e)? {
            V::Bool(b) => Ok(b),
            _ => Err(Fallback),
        }
    }

    fn eval(&self, e: &'a E) -> R<V<'a>> {
        Ok(match e {
            E::Bool(b) => V::Bool(*b),
            E::Long(n) => V::Long(*n),
            E::Str(s) => V::Str(s),
            E::Ent(t, id) => V::Ent(*t, id),
            E::Dec(d) => V::Dec(*d),
            E::Ip(ip) => V::Ip(*ip),
            E::Var(v) => match v {
                Var::Principal => V::Ent(Ty::ApiKey, self.key_id),
                Var::Action => V::Ent(Ty::Action, self.action),
                Var::Resource => match self.instrument {
                    Some((s, _)) => V::Ent(Ty::Instrument, s),
                    None => V::Ent(Ty::Account, self.target),
                },
                Var::Context => V::Rec(Rec::Context),
            },
            E::If(b) => {
                let [c, t, f] = &**b;
                if self.bool(c)? {
                    self.eval(t)?
                } else {
                    self.eval(f)?
                }
            }
            E::And(b) => {
                let [l, r] = &**b;
                V::Bool(self.bool(l)? && self.bool(r)?)
            }
            E::Or(b) => {
                let [l, r] = &**b;
                V::Bool(self.bool(l)? || self.bool(r)?)
            }
            E::Not(x) => V::Bool(!self.bool(x)?),
            E::Neg(x) => match self.eval(x)? {
                V::Long(n) => V::Long(n.checked_neg().ok_or(Fallback)?),
                _ => return Err(Fallback),
            },
            E::IsEmpty(x) => match self.eval(x)? {
                V::Set(s) => V::Bool(s.is_empty()),
                _ => return Err(Fallback),
            },
            E::Bin(op, b) => {
                let [l, r] = &**b;
                let (l, r) = (self.eval(l)?, self.eval(r)?);
                self.binary(*op, &l, &r)?
            }
            E::Attr(x, a) => match self.eval(x)? {
                V::Rec(r) => self.rec_attr(r, a)?,
                V::Ent(t, id) => self.entity_attr(t, id, a)?,
                _ => return Err(Fallback),
            },
            E::Has(x, a) => match self.eval(x)? {
                V::Rec(r) => V::Bool(self.rec_has(r, a)),
                V::Ent(t, id) => V::Bool(self.entity_has(t, id, a)),
                _ => return Err(Fallback),
            },
            E::Is(x, t) => match self.eval(x)? {
                V::Ent(et, _) => V::Bool(et == *t),
                _ => return Err(Fallback),
            },
            E::Set(items) => V::Set(items.iter().map(|i| self.eval(i)).collect::<R<_>>()?),
            E::DecCmp(op, b) => {
                let [l, r] = &**b;
                match (self.eval(l)?, self.eval(r)?) {
                    (V::Dec(a), V::Dec(b)) => V::Bool(match op {
                        DecOp::Lt => a < b,
                        DecOp::Le => a <= b,
                        DecOp::Gt => a > b,
                        DecOp::Ge => a >= b,
                    }),
                    _ => return Err(Fallback),
                }
            }
            E::InRange(b) => {
                let [l, r] = &**b;
                match (self.eval(l)?, self.eval(r)?) {
                    (V::Ip(a), V::Ip(b)) => V::Bool(a.in_range(&b)),
                    _ => return Err(Fallback),
                }
            }
            E::IpTest(op, x) => match self.eval(x)? {
                V::Ip(ip) => V::Bool(match op {
                    IpOp::V4 => ip.addr.is_ipv4(),
                    IpOp::V6 => ip.addr.is_ipv6(),
                    IpOp::Loopback => ip.is_loopback(),
                    IpOp::Multicast => ip.is_multicast(),
                }),
                _ => return Err(Fallback),
            },
        })
    }

    fn binary(&self, op: BinaryOp, l: &V<'a>, r: &V<'a>) -> R<V<'a>> {
        let long = |f: fn(i64, i64) -> Option<i64>| match (l, r) {
            (V::Long(a), V::Long(b)) => f(*a, *b).map(V::Long).ok_or(Fallback),
            _ => Err(Fallback),
        };
        Ok(match op {
            BinaryOp::Eq => V::Bool(l.eq(r)?),
            BinaryOp::Less | BinaryOp::LessEq => match (l, r) {
                (V::Long(a), V::Long(b)) => {
                    V::Bool(if op == BinaryOp::Less { a < b } else { a <= b })
                }
                _ => return Err(Fallback),
            },
            BinaryOp::Add => long(i64::checked_add)?,
            BinaryOp::Sub => long(i64::checked_sub)?,
            BinaryOp::Mul => long(i64::checked_mul)?,
            BinaryOp::In => {
                let V::Ent(ta, a) = l else {
                    return Err(Fallback);
                };
                match r {
                    V::Ent(tb, b) => V::Bool(self.is_in((*ta, a), (*tb, b))),
                    V::Set(items) => {
                        let mut any = false;
                        for i in items {
                            let V::Ent(tb, b) = i else {
                                return Err(Fallback);
                            };
                            any = any || self.is_in((*ta, a), (*tb, b));
                        }
                        V::Bool(any)
                    }
                    _ => return Err(Fallback),
                }
            }
            BinaryOp::Contains => match l {
                V::Set(s) => V::Bool(contains(s, r)?),
                _ => return Err(Fallback),
            },
            BinaryOp::ContainsAll | BinaryOp::ContainsAny => match (l, r) {
                (V::Set(a), V::Set(b)) => V::Bool(if op == BinaryOp::ContainsAll {
                    subset(b, a)?
                } else {
                    let mut any = false;
                    for x in b {
                        if contains(a, x)? {
                            any = true;
                            break;
                        }
                    }
                    any
                }),
                _ => return Err(Fallback),
            },
            _ => return Err(Fallback),
        })
    }

    /// Whether `p` is satisfied, or [`Fallback`].
    pub(crate) fn satisfied(&self, p: &'a CompiledPolicy) -> R<bool> {
        self.bool(&p.expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_parser_matches_cedars_rules() {
        assert_eq!(parse_decimal("1.0"), Some(10_000));
        assert_eq!(parse_decimal("-0.5"), Some(-5_000));
        assert_eq!(parse_decimal("0.0001"), Some(1));
        assert_eq!(parse_decimal("922337203685477.5807"), Some(i64::MAX));
        assert_eq!(parse_decimal("-922337203685477.5808"), Some(i64::MIN));
        for bad in [
            "1",
            "1.",
            ".5",
            "1.00001",
            "--1.0",
            "1e3",
            "922337203685477.5808",
            "+1.0",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn ip_parser_and_range_match_cedars_rules() {
        let ip = |s: &str| Ip::parse(s).unwrap();
        assert!(ip("10.1.2.3").in_range(&ip("10.0.0.0/8")));
        assert!(!ip("11.1.2.3").in_range(&ip("10.0.0.0/8")));
        assert!(ip("10.0.0.0/16").in_range(&ip("10.0.0.0/8")));
        assert!(!ip("10.0.0.0/8").in_range(&ip("10.0.0.0/16")));
        assert!(ip("10.1.0.0/8").in_range(&ip("10.0.0.0/8")));
        assert!(!ip("10.1.2.3").in_range(&ip("::/0")));
        assert!(ip("2001:db8::1").in_range(&ip("2001:db8::/32")));
        assert!(ip("127.0.0.1").is_loopback());
        assert!(!ip("127.0.0.0/7").is_loopback());
        for bad in [
            "10.0.0.0/08",
            "10.0.0.0/33",
            "::ffff:1.2.3.4",
            "10.0.0.0/",
            "x",
            "::/129",
        ] {
            assert!(Ip::parse(bad).is_none(), "{bad}");
        }
    }
}
