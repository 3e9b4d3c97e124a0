//! The authorization and trading-control phases of the pipeline (issue 6):
//! object-level checks and MFA proofs before adaptive risk, the Cedar
//! decision after it (it reads the risk score), pre-trade risk after the
//! rate limits, and learning from the upstream's answers (order owners,
//! open orders).

use super::*;
use crate::authz::{self, MfaProof};

/// What the first authorization phase established.
#[derive(Debug, Default)]
pub(super) struct Granted {
    /// A valid MFA proof came with the request.
    pub mfa_verified: bool,
    /// Seconds since that MFA was verified.
    pub mfa_age: Option<u64>,
    /// The account the request acts on when it names one (a sub-account).
    pub target: Option<Arc<rampart_auth::AccountRecord>>,
    /// The request body as JSON, when a phase needed it.
    pub body_json: Option<serde_json::Value>,
    /// An order-entry body, parsed once by the pre-trade engine's strict
    /// parser for the policy context and the pre-trade check (`None`: not
    /// order entry, or neither `[policy]` nor `[pretrade]` is on).
    pub order: Option<Result<rampart_policy::pretrade::OwnedOrder, String>>,
}

fn deny(
    p: Problem,
    rid: &str,
    route: &Arc<Route>,
    principal: &rampart_auth::Principal,
    notes: Vec<(&'static str, String)>,
) -> Box<Outcome> {
    let step_up = p.code == ProblemCode::MfaRequired;
    let mut o = Outcome::reject(p, rid, Some(route.clone()))
        .with_auth_denial(types::AUTHZ_DECISION, Actor::key(principal.key_id.as_str()))
        .noting(notes);
    if let Some(d) = o.denial.as_mut() {
        d.account = Some(principal.account_id.clone());
        if step_up {
            d.decision = Decision::StepUp;
        }
    }
    Box::new(o)
}

fn forbidden(detail: String) -> Problem {
    Problem::new(ProblemCode::ForbiddenByPolicy).detail(detail)
}

/// Object-level authorization and MFA proofs.
#[allow(clippy::too_many_arguments, reason = "the request's parts")]
pub(super) async fn authz_pre(
    rt: &Runtime,
    conn: &ConnInfo,
    route: &Arc<Route>,
    auth: &crate::auth::Authenticated,
    params: &[(&str, &str)],
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    rid: &str,
) -> Result<Granted, Box<Outcome>> {
    let p = &auth.principal;
    let mut g = Granted::default();
    let accounts = rt.auth.as_ref().and_then(|s| s.accounts.clone());
    if !body.is_empty()
        && is_order_entry(route)
        && (rt.authz.engine.is_some() || rt.trading.pretrade.is_some())
    {
        g.order = Some(rampart_policy::pretrade::parse_order(body));
    }
    // A JSON tree only where a locator reads the body, or where the policy
    // context needs body fields the strict order parse did not give.
    let body_locator = [
        &route.cfg.account,
        &route.cfg.order_id,
        &route.cfg.instrument,
    ]
    .iter()
    .any(|l| matches!(l, Some(rampart_core::config::Locator::Body(_))));
    let needs_json = !body.is_empty()
        && (body_locator || (rt.authz.engine.is_some() && !matches!(g.order, Some(Ok(_)))));
    if needs_json {
        g.body_json = serde_json::from_slice(body).ok();
    }
    // 1. The account the request acts on.
    if let Some(loc) = &route.cfg.account {
        if let Some(t) = authz::locate(loc, params, query, g.body_json.as_ref()) {
            if t != p.account_id {
                let Some(dir) = accounts.as_deref() else {
                    return Err(deny(
                        forbidden("this gateway cannot resolve sub-accounts".into()),
                        rid,
                        route,
                        p,
                        vec![("bola", "no account directory".into())],
                    ));
                };
                let rec = authz::account(dir, &t).await.map_err(|e| {
                    deny(*e, rid, route, p, vec![("bola", "unknown account".into())])
                })?;
                if !authz::within(&p.account_id, &rec) {
                    return Err(deny(
                        forbidden(
                            "the key may act only on its own account and its sub-accounts".into(),
                        ),
                        rid,
                        route,
                        p,
                        vec![("bola", "account".into()), ("target_account", t)],
                    ));
                }
                g.target = Some(rec);
            }
        }
    }
    // 2. The order the request acts on, when the gateway saw it placed.
    if let Some(loc) = &route.cfg.order_id {
        if let Some(oid) = authz::locate(loc, params, query, g.body_json.as_ref()) {
            if let Some((owner, _)) = rt.trading.orders.owner(&oid) {
                let acting = g
                    .target
                    .as_ref()
                    .map_or(p.account_id.as_str(), |t| t.id.as_str());
                let mut ok = owner == acting;
                if !ok && g.target.is_none() {
                    if let Some(dir) = accounts.as_deref() {
                        if let Ok(Some(rec)) = dir.account(&owner).await {
                            ok = authz::within(&p.account_id, &rec);
                        }
                    }
                }
                if !ok {
                    return Err(deny(
                        forbidden("the order belongs to another account".into()),
                        rid,
                        route,
                        p,
                        vec![("bola", "order".into()), ("order_id", oid)],
                    ));
                }
            }
        }
    }
    // 3. MFA proof: verified whenever one comes (the client sent it for
    //    this request), required for sensitive actions.
    let sensitive = rt.authz.is_sensitive(&route.cfg.action);
    let proof = headers
        .get(authz::MFA_HEADER)
        .map(|v| v.to_str().ok().and_then(authz::parse_proof));
    match proof {
        None => {}
        Some(None) => {
            return Err(deny(
                Problem::new(ProblemCode::MfaInvalid)
                    .detail("Rampart-MFA must be `totp=<code>` or `token=<step-up token>`"),
                rid,
                route,
                p,
                Vec::new(),
            ))
        }
        Some(Some(_)) if !p.mfa_covered => {
            return Err(deny(
                Problem::new(ProblemCode::MfaRequired).detail(
                    "the Rampart-MFA header must be a covered component of the request signature (\"rampart-mfa\")",
                ),
                rid,
                route,
                p,
                Vec::new(),
            ))
        }
        Some(Some(MfaProof::Totp(code))) => {
            let Some(dir) = accounts.as_deref() else {
                return Err(deny(
                    Problem::new(ProblemCode::MfaRequired)
                        .detail("this gateway has no MFA enrolments"),
                    rid,
                    route,
                    p,
                    Vec::new(),
                ));
            };
            if let Err(problem) =
                authz::verify_totp(dir, &p.account_id, code, crate::auth::now_ms()).await
            {
                if problem.code == ProblemCode::MfaInvalid {
                    if let Some(alert) =
                        rt.defense
                            .auth_failed(conn.peer.ip(), &p.key_id, ProblemCode::MfaInvalid)
                    {
                        record_alert(rt, conn, rid, &alert);
                    }
                }
                return Err(deny(*problem, rid, route, p, vec![("mfa", "totp".into())]));
            }
            g.mfa_verified = true;
            g.mfa_age = Some(0);
        }
        Some(Some(MfaProof::Token(tok))) => {
            let now = crate::auth::now_ms();
            match rt.trading.tokens.check(tok, &p.key_id, now) {
                Some(at) => {
                    g.mfa_verified = true;
                    g.mfa_age = Some(u64::try_from((now - at) / 1000).unwrap_or(0));
                }
                None => {
                    if let Some(alert) =
                        rt.defense
                            .auth_failed(conn.peer.ip(), &p.key_id, ProblemCode::MfaInvalid)
                    {
                        record_alert(rt, conn, rid, &alert);
                    }
                    return Err(deny(
                        Problem::new(ProblemCode::MfaInvalid)
                            .detail("the step-up token is unknown, expired or not this key's"),
                        rid,
                        route,
                        p,
                        vec![("mfa", "token".into())],
                    ));
                }
            }
        }
    }
    if sensitive && !g.mfa_verified {
        return Err(deny(
            Problem::new(ProblemCode::MfaRequired).detail(
                "this action needs a fresh MFA proof: Rampart-MFA: totp=<code> (covered by the signature) or a step-up token from POST /v1/mfa/verify",
            ),
            rid,
            route,
            p,
            Vec::new(),
        ));
    }
    Ok(g)
}

/// The Cedar decision (with `[policy]`), after adaptive risk gave a score.
#[allow(clippy::too_many_arguments, reason = "the request's parts")]
pub(super) async fn authz_cedar(
    rt: &Runtime,
    conn: &ConnInfo,
    route: &Arc<Route>,
    auth: &crate::auth::Authenticated,
    granted: &Granted,
    params: &[(&str, &str)],
    query: Option<&str>,
    risk_score: u8,
    rid: &str,
) -> Result<(), Box<Outcome>> {
    let Some(engine) = rt.authz.engine.as_ref() else {
        return Ok(());
    };
    let p = &auth.principal;
    let Some(svc) = rt.auth.as_ref() else {
        return Ok(());
    };
    let unavailable = || {
        Problem::new(ProblemCode::AuthUnavailable)
            .detail("authorization data is unavailable; the request was refused")
    };
    let Some(dir) = svc.accounts.as_deref() else {
        return Err(deny(unavailable(), rid, route, p, Vec::new()));
    };
    let key = &auth.record;
    let acct = authz::account(dir, &p.account_id)
        .await
        .map_err(|e| deny(*e, rid, route, p, Vec::new()))?;
    let parent = match &acct.parent_id {
        Some(pid) => Some(
            authz::account(dir, pid)
                .await
                .map_err(|e| deny(*e, rid, route, p, Vec::new()))?,
        ),
        None => None,
    };
    let prepared = rt.authz.prepared(engine, key, &acct, parent.as_deref());
    let body = granted.body_json.as_ref();
    let s = |v: Option<&serde_json::Value>, k: &str| {
        v.and_then(|b| b.get(k))
            .and_then(|x| x.as_str())
            .map(str::to_owned)
    };
    let instrument = route
        .cfg
        .instrument
        .as_ref()
        .and_then(|l| authz::locate(l, params, query, body));
    let order = if !is_order_entry(route) {
        None
    } else if let Some(Ok(o)) = &granted.order {
        // The strict parse's values: the same text the venue will read.
        let notional = o.price.and_then(|pr| o.qty.checked_mul(pr));
        Some(rampart_policy::authz::OrderFacts {
            side: o.side.to_owned(),
            order_type: o.order_type.to_owned(),
            qty: o.qty.to_string(),
            notional: notional.map(|n| n.to_string()),
            instrument: o.symbol.clone(),
        })
    } else {
        // Not a valid order (`[pretrade]` refuses it later, when on): the
        // policy still sees the fields as sent.
        body.map(|b| {
            let qty = s(Some(b), "qty").unwrap_or_default();
            let price = s(Some(b), "price");
            let notional = price.as_deref().and_then(|pr| {
                let q = qty.parse::<rust_decimal::Decimal>().ok()?;
                let pr = pr.parse::<rust_decimal::Decimal>().ok()?;
                q.checked_mul(pr).map(|n| n.to_string())
            });
            rampart_policy::authz::OrderFacts {
                side: s(Some(b), "side").unwrap_or_default(),
                order_type: s(Some(b), "type").unwrap_or_default(),
                qty,
                notional,
                instrument: s(Some(b), "symbol").unwrap_or_default(),
            }
        })
    };
    let instrument = instrument.or_else(|| order.as_ref().map(|o| o.instrument.clone()));
    let withdrawal = if route.cfg.action == "Withdraw" {
        Some((
            s(body, "asset").unwrap_or_default(),
            s(body, "address").unwrap_or_default(),
        ))
    } else {
        None
    };
    let req = rampart_policy::authz::RequestFacts {
        action: &route.cfg.action,
        required_scope: &route.cfg.scope,
        target_account: granted.target.as_ref().map(|t| t.id.as_str()),
        target_account_parent: granted.target.as_ref().and_then(|t| t.parent_id.as_deref()),
        instrument: instrument.as_deref().filter(|i| !i.is_empty()),
        source_ip: authz::canonical_ip(conn.peer.ip()),
        risk_score,
        mfa_age_secs: granted.mfa_age,
        now_ms: crate::auth::now_ms(),
        order: order.as_ref(),
        withdrawal: withdrawal.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
    };
    let d = engine.authorize(&prepared, &req);
    if d.allowed {
        return Ok(());
    }
    let code = match d.code.map_or(
        "FORBIDDEN_BY_POLICY",
        rampart_policy::authz::DenyCode::as_str,
    ) {
        "SCOPE_MISSING" => ProblemCode::ScopeMissing,
        "IP_NOT_ALLOWED" => ProblemCode::IpNotAllowed,
        "KEY_EXPIRED" => ProblemCode::KeyExpired,
        "MFA_REQUIRED" => ProblemCode::MfaRequired,
        _ => ProblemCode::ForbiddenByPolicy,
    };
    tracing::info!(
        target: "rampart::authz",
        request_id = rid,
        key_id = %p.key_id,
        action = route.cfg.action.as_str(),
        policies = ?d.policies,
        errors = ?d.errors,
        "denied by policy"
    );
    let detail = match code {
        ProblemCode::MfaRequired => "this action needs a fresher MFA proof",
        ProblemCode::ScopeMissing => "the key lacks the scope this action needs",
        ProblemCode::IpNotAllowed => "the key may not be used from this address",
        ProblemCode::KeyExpired => "the key has expired",
        _ => "the request is not permitted by the authorization policies",
    };
    let mut notes = vec![("policies", d.policies.join(","))];
    if !d.errors.is_empty() {
        notes.push(("policy_errors", d.errors.join("; ")));
    }
    Err(deny(
        Problem::new(code).detail(detail),
        rid,
        route,
        p,
        notes,
    ))
}

/// Whether the route enters orders.
pub(super) fn is_order_entry(route: &Route) -> bool {
    route.cfg.action == "PlaceOrder" || route.cfg.group.as_deref() == Some("orders")
}

/// The key's own limits (its stored settings) on top of `[pretrade]`.
fn key_limits(
    engine: &rampart_policy::pretrade::Engine,
    limits: &rampart_auth::KeyOrderLimits,
    key_id: &str,
    order: &rampart_policy::pretrade::Order<'_>,
    now_ms: i64,
) -> Result<(), rampart_policy::pretrade::Violation> {
    use rampart_policy::pretrade::{level, limit, Violation};
    use rust_decimal::Decimal;
    let v = |lim: &'static str, detail: String| Violation {
        limit: lim,
        level: level::KEY,
        detail,
    };
    let dec = |s: &Option<String>| s.as_deref().and_then(|x| x.parse::<Decimal>().ok());
    if let Some(max) = dec(&limits.max_qty) {
        if order.qty > max {
            return Err(v(
                limit::MAX_QTY,
                format!("qty `{}` exceeds the key's max_qty {max}", order.qty),
            ));
        }
    }
    if let Some(max) = dec(&limits.max_notional) {
        let price = order
            .price
            .or_else(|| engine.reference_price(order.symbol, now_ms))
            .ok_or_else(|| {
                v(
                    limit::REFERENCE_PRICE_UNAVAILABLE,
                    format!(
                        "no fresh reference price for `{}` to value the order",
                        order.symbol
                    ),
                )
            })?;
        match order.qty.checked_mul(price) {
            Some(n) if n <= max => {}
            Some(n) => {
                return Err(v(
                    limit::MAX_NOTIONAL,
                    format!("notional {n} exceeds the key's max_notional {max}"),
                ))
            }
            None => {
                return Err(v(
                    limit::MAX_NOTIONAL,
                    "the order's notional overflows".to_owned(),
                ))
            }
        }
    }
    if let Some(max) = limits.max_open_orders {
        let open = engine.key_open_orders(key_id);
        if open >= max {
            return Err(v(
                limit::MAX_OPEN_ORDERS,
                format!("the key has {open} open orders; its max_open_orders is {max}"),
            ));
        }
    }
    Ok(())
}

/// Pre-trade risk for an order-entry request: `422 RISK_LIMIT` naming the
/// limit and level, before the upstream sees the order.
pub(super) fn pretrade_phase(
    rt: &Runtime,
    route: &Arc<Route>,
    auth: &crate::auth::Authenticated,
    parsed: Option<&Result<rampart_policy::pretrade::OwnedOrder, String>>,
    body: &[u8],
    rid: &str,
) -> Result<Option<rampart_policy::pretrade::Ticket>, Box<Outcome>> {
    let Some(engine) = rt.trading.pretrade.as_ref() else {
        return Ok(None);
    };
    if !is_order_entry(route) {
        return Ok(None);
    }
    let p = &auth.principal;
    let fresh;
    let parsed = match parsed {
        Some(r) => r,
        None => {
            fresh = rampart_policy::pretrade::parse_order(body);
            &fresh
        }
    };
    let order = parsed.as_ref().map_err(|e| {
        Box::new(
            Outcome::reject(
                Problem::new(ProblemCode::ValidationFailed).detail(e),
                rid,
                Some(route.clone()),
            )
            .by(Some((p.key_id.as_str(), p.account_id.as_str()))),
        )
    })?;
    let who = rampart_policy::pretrade::Who {
        key_id: &p.key_id,
        account_id: &p.account_id,
        parent_account_id: p.parent_account_id.as_deref(),
    };
    let now = crate::auth::now_ms();
    // The key's stored limits (its settings), checked before a slot is taken.
    let own = key_limits(
        engine,
        &auth.record.order_limits,
        &p.key_id,
        &order.as_order(),
        now,
    );
    match own.and_then(|()| engine.check(&who, &order.as_order(), now)) {
        Ok(t) => Ok(Some(t)),
        Err(v) => {
            tracing::info!(target: "rampart::pretrade", request_id = rid, key_id = %p.key_id, limit = v.limit, level = v.level, "order refused by pre-trade risk");
            let problem = Problem::new(ProblemCode::RiskLimit)
                .detail(v.detail.clone())
                .with("limit", v.limit)
                .with("level", v.level);
            let mut o = Outcome::reject(problem, rid, Some(route.clone()))
                .with_auth_denial(types::AUTHZ_DECISION, Actor::key(p.key_id.as_str()))
                .noting(vec![
                    ("limit", v.limit.to_owned()),
                    ("level", v.level.to_owned()),
                ]);
            if let Some(d) = o.denial.as_mut() {
                d.account = Some(p.account_id.clone());
            }
            Err(Box::new(o))
        }
    }
}

/// Largest upstream answer read to learn order owners and open orders.
const MAX_LEARN_BODY: usize = 1024 * 1024;

/// Reads an upstream answer of at most [`MAX_LEARN_BODY`] bytes.
async fn read_limited(mut body: respond::Body) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return None;
        };
        if let Ok(d) = frame.into_data() {
            if buf.len() + d.len() > MAX_LEARN_BODY {
                return None;
            }
            buf.extend_from_slice(&d);
        }
    }
    Some(buf.freeze())
}

/// Whether the gateway reads this route's answers (order entry, cancels,
/// open-order lists).
pub(super) fn learns(rt: &Runtime, route: &Route) -> bool {
    is_order_entry(route)
        || route.cfg.action == "CancelOrder"
        || route.cfg.group.as_deref() == Some("cancels")
        // Open-order lists only feed pre-trade reconciliation.
        || (route.cfg.action == "ListOrders" && rt.trading.pretrade.is_some())
}

fn order_id(v: &serde_json::Value) -> Option<String> {
    match v.get("id").or_else(|| v.get("order_id"))? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The fields of an order-entry answer the gateway learns from. Like
/// [`order_id`] over a generic tree: `id` (else
/// `order_id`) as a string or a number, and `status`; other fields are
/// skipped without being built, and an answer that is not such an object
/// (or repeats one of these keys) teaches nothing.
#[derive(serde::Deserialize)]
struct OrderAnswer<'a> {
    #[serde(default, borrow)]
    id: AnswerId<'a>,
    #[serde(default, borrow)]
    order_id: AnswerId<'a>,
    #[serde(default, borrow)]
    status: Option<AnswerStatus<'a>>,
}

/// A status field: a string, or anything else (not resting).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AnswerStatus<'a> {
    Str(#[serde(borrow)] std::borrow::Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

/// An id field: absent, a string, a number, or anything else (`null`
/// included, which — as in a generic tree — hides `order_id`).
#[derive(serde::Deserialize, Default)]
#[serde(untagged)]
enum AnswerId<'a> {
    #[serde(skip)]
    #[default]
    Missing,
    Str(#[serde(borrow)] std::borrow::Cow<'a, str>),
    Num(serde_json::Number),
    Other(serde::de::IgnoredAny),
}

impl<'a> OrderAnswer<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    fn id(&self) -> Option<String> {
        // As `order_id`: `id` when present (even if unusable), else `order_id`.
        let id = match &self.id {
            AnswerId::Missing => &self.order_id,
            present => present,
        };
        match id {
            AnswerId::Str(s) => Some(s.to_string()),
            AnswerId::Num(n) => Some(n.to_string()),
            AnswerId::Missing | AnswerId::Other(_) => None,
        }
    }

    fn resting(&self) -> bool {
        matches!(
            &self.status,
            Some(AnswerStatus::Str(s)) if matches!(&**s, "new" | "open" | "partially_filled" | "resting")
        )
    }
}

/// Learns from the upstream's answer: order owners, pre-trade settlement,
/// closed orders, open-order reconciliation. The answer is buffered
/// (bounded) and passed on unchanged.
pub(super) async fn learn(
    rt: &Runtime,
    route: &Route,
    params: &[(&str, &str)],
    auth: &crate::auth::Authenticated,
    ticket: Option<rampart_policy::pretrade::Ticket>,
    mut out: Outcome,
    rid: &str,
) -> Outcome {
    use rampart_policy::pretrade::Outcome as Settle;
    let status = out.resp.status();
    if out.denial.is_some() || !status.is_success() {
        if let Some(t) = ticket {
            // Refused by the gateway before forwarding, or a 4xx from the
            // venue: rejected; a 5xx or no answer: unknown.
            let forwarded = out.upstream.is_some();
            t.settle(if status.is_client_error() || !forwarded {
                Settle::Rejected
            } else {
                Settle::Unknown
            });
        }
        return out;
    }
    // An open-order list is only a reconciliation hint: a large or
    // unsized one streams through untouched instead of being refused.
    if route.cfg.action == "ListOrders" {
        let small = out
            .resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n <= MAX_LEARN_BODY);
        if !small {
            return out;
        }
    }
    let (parts, body) =
        std::mem::replace(&mut out.resp, Response::new(respond::full(Bytes::new()))).into_parts();
    let bytes = match tokio::time::timeout(Duration::from_secs(10), read_limited(body)).await {
        Ok(Some(b)) => b,
        _ => {
            if let Some(t) = ticket {
                t.settle(Settle::Unknown);
            }
            tracing::warn!(target: "rampart::pretrade", request_id = rid, "upstream answer unreadable or too large to learn from");
            let p = &auth.principal;
            return Outcome::reject(
                Problem::new(ProblemCode::UpstreamUnavailable)
                    .detail("the upstream's answer could not be read; check the order's state before retrying"),
                rid,
                out.route.clone(),
            )
            .by(Some((p.key_id.as_str(), p.account_id.as_str())));
        }
    };
    let p = &auth.principal;
    if is_order_entry(route) {
        // Only the id and the status are read: a targeted parse, not a
        // generic JSON tree (the hot path of every order).
        let answer = OrderAnswer::parse(&bytes);
        let id = answer.as_ref().and_then(OrderAnswer::id);
        if let Some(id) = &id {
            rt.trading.orders.record(id, &p.account_id, &p.key_id);
        }
        if let Some(t) = ticket {
            t.settle(
                match (&id, answer.as_ref().is_some_and(OrderAnswer::resting)) {
                    (Some(id), true) => Settle::Resting(id.clone()),
                    _ => Settle::Done,
                },
            );
        }
        out.resp = Response::from_parts(parts, respond::full(bytes));
        return out;
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    if route.cfg.action == "ListOrders" {
        if let (Some(engine), Some(serde_json::Value::Array(list))) =
            (rt.trading.pretrade.as_ref(), json.as_ref())
        {
            let ids: Vec<(String, Option<String>)> = list
                .iter()
                .filter_map(order_id)
                .map(|id| {
                    let key = rt.trading.orders.owner(&id).map(|(_, k)| k);
                    (id, key)
                })
                .collect();
            engine.reconcile_open_orders(&p.account_id, &ids);
        }
    } else if let Some(id) = route
        .cfg
        .order_id
        .as_ref()
        .and_then(|l| crate::authz::locate(l, params, None, None))
        .or_else(|| json.as_ref().and_then(order_id))
    {
        // A cancel: the order is closed.
        rt.trading.orders.remove(&id);
        if let Some(engine) = rt.trading.pretrade.as_ref() {
            engine.order_closed(&p.account_id, &id);
        }
    }
    out.resp = Response::from_parts(parts, respond::full(bytes));
    out
}

/// Most bytes of a gateway endpoint's request body.
const MAX_ENDPOINT_BODY: usize = 1024;

/// Reads the small JSON body of a gateway endpoint, within the request
/// timeout.
async fn small_body(
    rt: &Runtime,
    body: Incoming,
    route: &Arc<Route>,
    rid: &str,
) -> Result<Bytes, Box<Outcome>> {
    match tokio::time::timeout(
        rt.cfg.server.request_timeout,
        read_body(body, MAX_ENDPOINT_BODY),
    )
    .await
    {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(BodyError::TooLarge)) => Err(Box::new(Outcome::reject(
            too_large(MAX_ENDPOINT_BODY),
            rid,
            Some(route.clone()),
        ))),
        _ => Err(Box::new(Outcome::reject(
            Problem::new(ProblemCode::BadRequest).detail("the request body could not be read"),
            rid,
            Some(route.clone()),
        ))),
    }
}

/// The gateway endpoint exchanging an MFA code for a step-up token.
pub const MFA_VERIFY_PATH: &str = "/v1/mfa/verify";

/// `POST /v1/mfa/verify` with `{"code":"123456"}` (TOTP) or
/// `{"recovery_code":"…"}`, signed by the key like any request: a
/// step-up token bound to that key, valid for `[mfa] step_up_ttl`. Wrong
/// or reused codes are `MFA_INVALID` and count toward lockout.
pub(super) async fn mfa_endpoint(
    rt: &Runtime,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    path: &str,
    rid: &str,
) -> Outcome {
    let route = rt.mfa_route.clone();
    if req.method() != Method::POST {
        return Outcome::method_not_allowed("POST", rid, Some(route));
    }
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
    let (parts, body) = req.into_parts();
    let body = match small_body(rt, body, &route, rid).await {
        Ok(b) => b,
        Err(o) => return *o,
    };
    let head = make_head(parts.method, &parts.uri, parts.headers);
    let auth =
        match auth_and_audit(rt, conn, &route, &head, path, &path_and_query, &body, rid).await {
            Ok(a) => a,
            Err(o) => return *o,
        };
    let p = &auth.principal;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        code: Option<String>,
        recovery_code: Option<String>,
    }
    let parsed: Option<Req> = serde_json::from_slice(&body).ok();
    let Some(dir) = rt.auth.as_ref().and_then(|s| s.accounts.clone()) else {
        return *deny(
            Problem::new(ProblemCode::MfaRequired).detail("this gateway has no MFA enrolments"),
            rid,
            &route,
            p,
            Vec::new(),
        );
    };
    let check = match parsed {
        Some(Req {
            code: Some(c),
            recovery_code: None,
        }) => authz::verify_totp(dir.as_ref(), &p.account_id, &c, crate::auth::now_ms())
            .await
            .map(|()| "totp"),
        Some(Req {
            code: None,
            recovery_code: Some(c),
        }) => match dir.use_recovery_code(&p.account_id, &c).await {
            Ok(rampart_auth::MfaCheck::Verified) => Ok("recovery_code"),
            Ok(rampart_auth::MfaCheck::NotEnrolled) => Err(Box::new(
                Problem::new(ProblemCode::MfaRequired).detail("the account has no recovery codes"),
            )),
            Ok(_) => Err(Box::new(
                Problem::new(ProblemCode::MfaInvalid).detail("the recovery code is not valid"),
            )),
            Err(_) => Err(Box::new(
                Problem::new(ProblemCode::AuthUnavailable)
                    .detail("the MFA check is unavailable; the request was refused"),
            )),
        },
        _ => Err(Box::new(
            Problem::new(ProblemCode::ValidationFailed).detail(
                "the body must be {\"code\":\"<TOTP code>\"} or {\"recovery_code\":\"<code>\"}",
            ),
        )),
    };
    let method = match check {
        Ok(m) => m,
        Err(problem) => {
            if problem.code == ProblemCode::MfaInvalid {
                if let Some(alert) =
                    rt.defense
                        .auth_failed(conn.peer.ip(), &p.key_id, ProblemCode::MfaInvalid)
                {
                    record_alert(rt, conn, rid, &alert);
                }
            }
            return *deny(*problem, rid, &route, p, vec![("mfa", "verify".into())]);
        }
    };
    let ttl = rt.authz.step_up_ttl;
    let token = match rt
        .trading
        .tokens
        .issue(&p.key_id, crate::auth::now_ms(), ttl)
    {
        Ok(t) => t,
        Err(problem) => return Outcome::reject(problem, rid, Some(route)),
    };
    // A completed MFA is a credential event for adaptive risk.
    if let Some(a) = auditor(rt) {
        let ev = AuditEvent::new(
            a.now(),
            types::AUTHZ_DECISION,
            Actor::key(p.key_id.as_str()),
            "MfaVerify",
            MFA_VERIFY_PATH,
            Decision::Allow,
        )
        .account(p.account_id.as_str())
        .source_ip(conn.peer.ip())
        .request_id(rid)
        .plain("method", method);
        if a.record_allow(&ev).is_err() {
            return audit_unavailable(rid, Some(route));
        }
    }
    let body = serde_json::json!({
        "token": token,
        "expires_in": ttl.as_secs(),
        "use": "Rampart-MFA: token=<token>, covered by the request signature",
    });
    let mut resp = respond::json(StatusCode::OK, &body);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Outcome {
        resp,
        route: Some(route),
        upstream: None,
        attempts: 0,
        denial: None,
    }
}

/// The header a WebSocket session sends on its upgrade to ask for
/// cancel-on-disconnect: `key` (the orders this key placed through the
/// gateway) or `account` (every open order of the account).
pub const CANCEL_ON_DISCONNECT: &str = "rampart-cancel-on-disconnect";

/// What a session asked to cancel when it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DisconnectScope {
    /// Orders the session's key placed through the gateway.
    Key,
    /// Every open order of the account.
    Account,
}

/// The session's cancel-on-disconnect request, if any.
///
/// # Errors
/// A value other than `key`, `true`, `1` or `account`.
pub(super) fn cancel_on_disconnect(headers: &HeaderMap) -> Result<Option<DisconnectScope>, ()> {
    let Some(v) = headers.get(CANCEL_ON_DISCONNECT) else {
        return Ok(None);
    };
    match v.to_str().map(str::trim) {
        Ok("key" | "true" | "1") => Ok(Some(DisconnectScope::Key)),
        Ok("account") => Ok(Some(DisconnectScope::Account)),
        _ => Err(()),
    }
}

/// A pending cancel-on-disconnect, fired when the session ends.
pub(super) struct Disconnect {
    pub rt: Arc<Runtime>,
    pub account: String,
    pub key: String,
    pub scope: DisconnectScope,
}

impl Disconnect {
    /// Sends the cancels and records them.
    pub async fn fire(self, rid: &str) {
        let (accounts, key) = match self.scope {
            DisconnectScope::Key => (Vec::new(), Some(self.key.as_str())),
            DisconnectScope::Account => (vec![self.account.clone()], None),
        };
        let res = crate::trading::cancel_all(&self.rt, &self.rt.trading, &accounts, key).await;
        tracing::warn!(
            target: "rampart::trading",
            request_id = rid,
            key_id = %self.key,
            account = %self.account,
            calls = res.len(),
            "websocket session dropped: cancel-on-disconnect sent"
        );
        if let Some(a) = auditor(&self.rt) {
            let ev = AuditEvent::new(
                a.now(),
                types::AUTHZ_DECISION,
                Actor::key(self.key.as_str()),
                "CancelOnDisconnect",
                "/v1/stream",
                Decision::Info,
            )
            .account(self.account.as_str())
            .request_id(rid)
            .plain("calls", serde_json::Value::from(res).to_string());
            a.record_deny(&ev);
        }
    }
}

/// The gateway endpoint of an account's withdrawal address book.
pub const ADDRESS_BOOK_PATH: &str = "/v1/address-book";

/// `GET /v1/address-book` (scope `read`): the account's addresses and when
/// each becomes usable. `POST` with `{"address":"…"}` adds one, usable
/// after `[mfa] address_delay`; `DELETE ?address=…` removes one at once.
/// Both changes are the sensitive action `AddressBookChange` (scope
/// `withdraw`, a fresh MFA proof, the Cedar policies) and are audited.
pub(super) async fn address_book_endpoint(
    rt: &Arc<Runtime>,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    path: &str,
    rid: &str,
) -> Outcome {
    let change = match *req.method() {
        Method::GET => false,
        Method::POST | Method::DELETE => true,
        _ => {
            return Outcome::method_not_allowed(
                "GET, POST, DELETE",
                rid,
                Some(rt.address_route.clone()),
            );
        }
    };
    let route = if change {
        rt.address_route.clone()
    } else {
        rt.address_list_route.clone()
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
    let query = req.uri().query().map(str::to_owned);
    let (parts, body) = req.into_parts();
    let body = match small_body(rt, body, &route, rid).await {
        Ok(b) => b,
        Err(o) => return *o,
    };
    let method = parts.method.clone();
    let head = make_head(parts.method, &parts.uri, parts.headers);
    let auth =
        match auth_and_audit(rt, conn, &route, &head, path, &path_and_query, &body, rid).await {
            Ok(a) => a,
            Err(o) => return *o,
        };
    let p = &auth.principal;
    let Some(dir) = rt.auth.as_ref().and_then(|s| s.accounts.clone()) else {
        return *deny(
            Problem::new(ProblemCode::AuthUnavailable).detail("this gateway has no address books"),
            rid,
            &route,
            p,
            Vec::new(),
        );
    };
    if !change {
        let list = match dir.withdrawal_addresses(&p.account_id).await {
            Ok(l) => l,
            Err(_) => {
                return *deny(
                    Problem::new(ProblemCode::AuthUnavailable)
                        .detail("the address book is unavailable"),
                    rid,
                    &route,
                    p,
                    Vec::new(),
                )
            }
        };
        let body = serde_json::json!({
            "account": p.account_id,
            "addresses": list.iter().map(|(a, at)| serde_json::json!({"address": a, "usable_from_ms": at})).collect::<Vec<_>>(),
        });
        let mut resp = respond::json(StatusCode::OK, &body);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Outcome {
            resp,
            route: Some(route),
            upstream: None,
            attempts: 0,
            denial: None,
        };
    }
    let address = if method == Method::POST {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Add {
            address: String,
        }
        serde_json::from_slice::<Add>(&body).ok().map(|a| a.address)
    } else {
        query
            .as_deref()
            .and_then(|q| authz::query_value(q, "address"))
    };
    let Some(address) = address.filter(|a| {
        !a.is_empty()
            && a.len() <= 128
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.'))
    }) else {
        return *deny(
            Problem::new(ProblemCode::ValidationFailed).detail(
                "give the address as {\"address\":\"…\"} (POST) or ?address=… (DELETE): 1–128 of A–Z a–z 0–9 : - _ .",
            ),
            rid,
            &route,
            p,
            Vec::new(),
        );
    };
    // MFA proof and policies, as for any sensitive route.
    let granted = match authz_pre(
        rt,
        conn,
        &route,
        &auth,
        &[],
        query.as_deref(),
        &head.headers,
        &body,
        rid,
    )
    .await
    {
        Ok(g) => g,
        Err(o) => return *o,
    };
    // Address-book changes always need MFA, whatever `sensitive_actions` says.
    if !granted.mfa_verified {
        return *deny(
            Problem::new(ProblemCode::MfaRequired).detail(
                "address-book changes need a fresh MFA proof (Rampart-MFA, covered by the signature)",
            ),
            rid,
            &route,
            p,
            Vec::new(),
        );
    }
    if let Err(o) = authz_cedar(
        rt,
        conn,
        &route,
        &auth,
        &granted,
        &[],
        query.as_deref(),
        0,
        rid,
    )
    .await
    {
        return *o;
    }
    let now = crate::auth::now_ms();
    let delay = i64::try_from(rt.cfg.mfa.address_delay.as_millis()).unwrap_or(i64::MAX);
    let usable_from = now.saturating_add(delay);
    let res = if method == Method::POST {
        dir.add_withdrawal_address(&p.account_id, &address, now, usable_from)
            .await
    } else {
        dir.remove_withdrawal_address(&p.account_id, &address).await
    };
    let changed = match res {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target: "rampart::authz", error = %e, "address book change failed");
            return *deny(
                Problem::new(ProblemCode::AuthUnavailable)
                    .detail("the address book is unavailable; nothing changed"),
                rid,
                &route,
                p,
                Vec::new(),
            );
        }
    };
    if let Some(a) = auditor(rt) {
        let ev = AuditEvent::new(
            a.now(),
            types::ACCOUNT_CHANGED,
            Actor::key(p.key_id.as_str()),
            "AddressBookChange",
            ADDRESS_BOOK_PATH,
            Decision::Allow,
        )
        .account(p.account_id.as_str())
        .source_ip(conn.peer.ip())
        .request_id(rid)
        .plain(
            "change",
            if method == Method::POST {
                "add"
            } else {
                "remove"
            },
        )
        .plain("address", address.clone())
        .plain("changed", changed)
        .plain("usable_from_ms", usable_from);
        if a.record_allow(&ev).is_err() {
            return audit_unavailable(rid, Some(route));
        }
    }
    // A completed address-book change is a credential event.
    rt.defense.note_credential_change(&p.account_id);
    rt.defense.note_credential_change(&p.key_id);
    let body = if method == Method::POST {
        serde_json::json!({"address": address, "added": changed, "usable_from_ms": usable_from})
    } else {
        serde_json::json!({"address": address, "removed": changed})
    };
    let status = if method == Method::POST && changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Outcome {
        resp: respond::json(status, &body),
        route: Some(route),
        upstream: None,
        attempts: 0,
        denial: None,
    }
}

#[cfg(test)]
mod answer_tests {
    use super::*;

    /// The targeted parse learns what the generic tree did.
    #[test]
    fn order_answer_matches_the_generic_reading() {
        let generic = |b: &str| -> (Option<String>, bool) {
            let v: Option<serde_json::Value> = serde_json::from_str(b).ok();
            let resting = v.as_ref().is_some_and(|v| {
                matches!(
                    v.get("status").and_then(|s| s.as_str()),
                    Some("new" | "open" | "partially_filled" | "resting")
                )
            });
            (v.as_ref().and_then(order_id), resting)
        };
        for b in [
            r#"{"id":"o-1","status":"new"}"#,
            r#"{"order_id":"o-2","status":"filled"}"#,
            r#"{"id":42,"status":"open","x":[1,{"a":null}]}"#,
            r#"{"id":1.5,"status":7}"#,
            r#"{"id":null,"order_id":"o-3","status":"resting"}"#,
            r#"{"id":{"n":1},"order_id":"o-4"}"#,
            r#"{"status":"partially_filled"}"#,
            r#"{"id":"o\"5","status":null}"#,
            r#"[{"id":"o-6"}]"#,
            r#""o-7""#,
            r#"{"id":"o-8","status":"open""#,
            "",
        ] {
            let a = OrderAnswer::parse(b.as_bytes());
            let got = (
                a.as_ref().and_then(OrderAnswer::id),
                a.as_ref().is_some_and(OrderAnswer::resting),
            );
            assert_eq!(got, generic(b), "{b}");
        }
    }
}
