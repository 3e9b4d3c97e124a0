//! The request pipeline: request id → head limits → route → body limits →
//! upstream attempt(s) with safe retries → response shaping → access log and
//! metrics.
//!
//! Later layers (authentication, authorization, limits, audit) plug in between
//! routing and forwarding, as named phases of [`handle`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rampart_audit::event::types;
use rampart_audit::{Actor, AuditEvent, Decision};
use rampart_core::config::RetryPolicy;
use rampart_core::{Problem, ProblemCode};

use crate::respond::{self, Body, REQUEST_ID};
use crate::router::{upstream_path, Match, Route};
use crate::runtime::Runtime;
use crate::upstream::{Endpoint, Pool};

mod trading;

/// What the listener knows about the connection, passed to [`handle`] with
/// every request (`mTLS` key binding needs the client certificate). It also
/// holds the connection's slot under `max_connections`, so an upgraded
/// WebSocket keeps counting until its copy task ends.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// Negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// The verified client certificate (leaf, DER), if one was presented.
    pub client_cert: Option<rustls::pki_types::CertificateDer<'static>>,
    /// Hex SHA-256 fingerprint of `client_cert`.
    pub client_cert_sha256: Option<String>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Whether the connection speaks HTTP/2.
    pub h2: bool,
    /// The connection's slot; released when the last holder drops it.
    pub slot: Option<Arc<crate::listener::ConnSlot>>,
    /// Fires when the gateway shuts down (ends upgraded streams).
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Generates request ids: a random per-process prefix and a counter, so ids
/// are unique without a syscall per request.
pub fn new_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let p = PREFIX.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{p:016x}{n:016x}")
}

/// A client-sent id is kept only if it is short and plain (no log injection).
fn valid_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
    .then_some(s)
}

/// Headers that describe one hop and never cross the proxy (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Response headers that would reveal the upstream's software.
const UPSTREAM_REVEALING: [&str; 4] = ["server", "x-powered-by", "via", "x-aspnet-version"];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Headers named by Connection are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// Rough size of the request head as sent on the wire.
fn head_bytes(req: &Request<Incoming>) -> usize {
    let uri = req.uri();
    let mut n = req.method().as_str().len()
        + uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + 12;
    for (k, v) in req.headers() {
        n += k.as_str().len() + v.len() + 4;
    }
    n
}

/// Rejects targets a path-based router must not pass on: dot segments and
/// encoded separators that an upstream might decode into traversal.
fn suspicious_path(path: &str) -> bool {
    let lower_has = |pat: &str| {
        path.as_bytes()
            .windows(pat.len())
            .any(|w| w.eq_ignore_ascii_case(pat.as_bytes()))
    };
    path.split('/').any(|s| s == "." || s == "..")
        || lower_has("%2f")
        || lower_has("%5c")
        || lower_has("%2e")
        || lower_has("%00")
        || path.contains('\\')
}

fn is_safe_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

struct Outcome {
    resp: Response<Body>,
    route: Option<Arc<Route>>,
    upstream: Option<String>,
    attempts: u32,
    /// Set when the request was rejected: what the audit record says.
    denial: Option<Denial>,
}

/// The audit facts of a rejection.
struct Denial {
    code: ProblemCode,
    event_type: &'static str,
    actor: Option<Actor>,
    account: Option<String>,
    /// Facts for the audit record (rule, pointer, signals…).
    notes: Vec<(&'static str, String)>,
    /// The audit decision (deny, or step-up for an MFA challenge).
    decision: Decision,
}

impl Outcome {
    /// `405 METHOD_NOT_ALLOWED` naming the methods the path accepts, with
    /// the `Allow` header.
    fn method_not_allowed(allow: &str, rid: &str, route: Option<Arc<Route>>) -> Self {
        let mut o = Self::reject(
            Problem::new(ProblemCode::MethodNotAllowed).detail(format!("the path accepts {allow}")),
            rid,
            route,
        );
        if let Ok(v) = HeaderValue::from_str(allow) {
            o.resp.headers_mut().insert(header::ALLOW, v);
        }
        o
    }

    fn reject(p: Problem, rid: &str, route: Option<Arc<Route>>) -> Self {
        Self {
            resp: respond::problem(&p, Some(rid)),
            route,
            upstream: None,
            attempts: 0,
            denial: Some(Denial {
                code: p.code,
                event_type: types::REQUEST_REJECTED,
                actor: None,
                account: None,
                notes: Vec::new(),
                decision: Decision::Deny,
            }),
        }
    }

    /// Adds facts to the rejection's audit record.
    fn noting(mut self, notes: Vec<(&'static str, String)>) -> Self {
        if let Some(d) = self.denial.as_mut() {
            d.notes.extend(notes);
        }
        self
    }

    /// Marks the rejection as an authentication or authorization decision.
    fn with_auth_denial(mut self, event_type: &'static str, actor: Actor) -> Self {
        if let Some(d) = self.denial.as_mut() {
            d.event_type = event_type;
            d.actor = Some(actor);
        }
        self
    }

    /// Attributes a later-layer rejection to the authenticated key and
    /// account (copied only when there is a rejection).
    fn by(mut self, who: Option<(&str, &str)>) -> Self {
        if let (Some(d), Some((key, account))) = (self.denial.as_mut(), who) {
            if d.actor.is_none() {
                d.actor = Some(Actor::key(key));
                d.account = Some(account.to_owned());
            }
        }
        self
    }
}

/// Serves one request. Never fails: every error is a problem response.
pub async fn handle(
    rt: Arc<Runtime>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let start = Instant::now();
    let rid = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(valid_request_id)
        .map_or_else(new_request_id, str::to_owned);
    let method = req.method().clone();
    // One copy of the path, for the access log and the audit record.
    let auditor = rt.auth.as_ref().and_then(|a| a.audit.clone());
    let path_copy: Option<String> = (rt.cfg.log.access_log || auditor.is_some())
        .then(|| req.uri().path().chars().take(256).collect());

    let mut report: Option<crate::limits::Report> = None;
    let out = pipeline(&rt, &conn, req, &rid, &mut report).await;
    if let (Some(auditor), Some(denial), Some(path)) = (&auditor, &out.denial, &path_copy) {
        let action = out.route.as_ref().map_or("none", |r| r.cfg.action.as_str());
        let mut ev = AuditEvent::new(
            auditor.now(),
            denial.event_type,
            denial.actor.clone().unwrap_or_else(|| Actor::anonymous("")),
            action,
            path.as_str(),
            denial.decision,
        )
        .source_ip(conn.peer.ip())
        .request_id(rid.as_str())
        .reason(denial.code.as_str())
        .plain("method", method.as_str());
        if let Some(account) = &denial.account {
            ev = ev.account(account.as_str());
        }
        for (k, v) in &denial.notes {
            ev = ev.plain(k, v.as_str());
        }
        auditor.record_deny(&ev);
    }
    let mut resp = out.resp;
    respond::stamp(&mut resp, Some(&rid));
    if let Some(r) = &report {
        r.stamp(&rt.limits, resp.headers_mut());
    }
    if method == Method::HEAD {
        // A HEAD response carries no body (HTTP/2 treats one as a protocol error).
        *resp.body_mut() = respond::full(Bytes::new());
    }

    let status = resp.status().as_u16();
    let latency = start.elapsed();
    let route_label = out.route.as_ref().map_or("none", |r| r.cfg.action.as_str());
    let stats = match &out.route {
        Some(r) => &r.stats,
        None => crate::stats::unrouted(),
    };
    stats.record(status, latency.as_secs_f64());
    if let Some(path_for_log) = path_copy.as_deref().filter(|_| rt.cfg.log.access_log) {
        tracing::info!(
            target: "rampart::access",
            request_id = %rid,
            peer = %conn.peer,
            method = %method,
            path = %path_for_log,
            route = route_label,
            status,
            latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            upstream = out.upstream.as_deref().unwrap_or("-"),
            attempts = out.attempts,
        );
    }
    Ok(resp)
}

async fn pipeline(
    rt: &Arc<Runtime>,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    rid: &str,
    report: &mut Option<crate::limits::Report>,
) -> Outcome {
    let server = &rt.cfg.server;
    let credentialed = carries_credentials(req.headers());

    // Phase: head limits.
    if head_bytes(&req) > server.max_header_bytes {
        return Outcome::reject(
            Problem::new(ProblemCode::HeadersTooLarge).detail(format!(
                "the request head exceeds {} bytes",
                server.max_header_bytes
            )),
            rid,
            None,
        );
    }
    if req.uri().scheme().is_some() && req.version() < http::Version::HTTP_2 {
        return Outcome::reject(
            Problem::new(ProblemCode::BadRequest)
                .detail("absolute-form request targets are not accepted"),
            rid,
            None,
        );
    }
    let path = req.uri().path().to_owned();
    if suspicious_path(&path) {
        return Outcome::reject(
            Problem::new(ProblemCode::RequestBlocked)
                .detail("the path contains dot segments or encoded separators"),
            rid,
            None,
        );
    }

    // Gateway-local endpoints: OAuth token issuance, the JWKS, and a key's
    // own rate limits. They meet the edge limits that cover every request.
    let gateway_endpoint = path == "/oauth/token"
        || path == "/.well-known/jwks.json"
        || ((path == LIMITS_PATH
            || path == trading::MFA_VERIFY_PATH
            || path == trading::ADDRESS_BOOK_PATH)
            && rt.auth.is_some());
    if gateway_endpoint {
        if let Err(o) = edge_limits(rt, conn, None, credentialed, rid, report) {
            return *o;
        }
    }
    if path == LIMITS_PATH && rt.auth.is_some() {
        return limits_endpoint(rt, conn, req, &path, rid, report).await;
    }
    if path == trading::MFA_VERIFY_PATH && rt.auth.is_some() {
        return trading::mfa_endpoint(rt, conn, req, &path, rid).await;
    }
    if path == trading::ADDRESS_BOOK_PATH && rt.auth.is_some() {
        return trading::address_book_endpoint(rt, conn, req, &path, rid).await;
    }
    if path == "/oauth/token" || path == "/.well-known/jwks.json" {
        if let Some(o) = token_endpoints(rt, conn, req, &path, rid).await {
            return o;
        }
        return Outcome::reject(
            Problem::new(ProblemCode::NotFound).detail("no route matches the path"),
            rid,
            None,
        );
    }

    // Phase: route.
    let found = rt.router.lookup(req.method(), &path);
    if !matches!(found, Match::Found(..)) {
        if let Err(o) = edge_limits(rt, conn, None, credentialed, rid, report) {
            return *o;
        }
    }
    let (route, upath, params) = match found {
        Match::Found(r, params) => {
            let upath = upstream_path(r, &path, &params);
            (r.clone(), upath, params)
        }
        Match::NotFound => {
            return Outcome::reject(
                Problem::new(ProblemCode::NotFound).detail("no route matches the path"),
                rid,
                None,
            )
        }
        Match::MethodNotAllowed(allowed) => {
            let allow = allowed
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Outcome::method_not_allowed(&allow, rid, None);
        }
    };
    // Phase: edge rate limits (before any signature is verified).
    if let Err(o) = edge_limits(rt, conn, Some(&route), credentialed, rid, report) {
        return *o;
    }
    let Some(pool) = rt.pools.get(&route.cfg.upstream).cloned() else {
        // INVARIANT: config compile checks every route's upstream exists.
        return Outcome::reject(Problem::new(ProblemCode::InternalError), rid, Some(route));
    };

    let target = match req.uri().query() {
        Some(q) => format!("{upath}?{q}"),
        None => upath,
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let needs_auth = route.cfg.scope != "public";

    // Phase: upgrade (WebSocket) bypasses body buffering; it is
    // validated and authenticated first, with an empty body.
    if is_websocket_upgrade(&req) {
        if let Err(o) = waf_phase(
            rt,
            conn,
            &route,
            req.method(),
            &path,
            &params,
            req.uri().query(),
            req.headers(),
            &[],
            rid,
        ) {
            return *o;
        }
        let principal = if needs_auth {
            let head = make_head(req.method().clone(), req.uri(), req.headers().clone());
            match auth_and_audit(rt, conn, &route, &head, &path, &path_and_query, &[], rid).await {
                Ok(p) => Some(p),
                Err(o) => return *o,
            }
        } else {
            None
        };
        if let Some(a) = &principal {
            let g = match trading::authz_pre(
                rt,
                conn,
                &route,
                a,
                &params,
                req.uri().query(),
                req.headers(),
                &[],
                rid,
            )
            .await
            {
                Ok(g) => g,
                Err(o) => return *o,
            };
            let score = match risk_phase(
                rt,
                conn,
                &route,
                a,
                req.headers(),
                req.uri().query(),
                &[],
                g.mfa_verified,
                rid,
            ) {
                Ok(s) => s,
                Err(o) => return *o,
            };
            if let Err(o) = trading::authz_cedar(
                rt,
                conn,
                &route,
                a,
                &g,
                &params,
                req.uri().query(),
                score,
                rid,
            )
            .await
            {
                return *o;
            }
        }
        if let Err(o) = principal_limits(rt, conn, &route, principal.as_ref(), rid, report) {
            return *o;
        }
        let identity = rt.auth.as_ref().map(|a| Arc::clone(&a.identity));
        // Cancel-on-disconnect: the session asks for its open orders to be
        // cancelled when it drops.
        let Ok(asked) = trading::cancel_on_disconnect(req.headers()) else {
            return Outcome::reject(
                Problem::new(ProblemCode::BadRequest)
                    .detail("Rampart-Cancel-On-Disconnect must be `key` or `account`"),
                rid,
                Some(route),
            );
        };
        let cod = match (&principal, asked) {
            (Some(a), Some(scope)) => {
                if !a.principal.scopes.iter().any(|s| s == "trade") {
                    return Outcome::reject(
                        Problem::new(ProblemCode::ScopeMissing)
                            .detail("cancel-on-disconnect needs a key with the `trade` scope"),
                        rid,
                        Some(route),
                    );
                }
                Some(trading::Disconnect {
                    rt: Arc::clone(rt),
                    account: a.principal.account_id.clone(),
                    key: a.principal.key_id.clone(),
                    scope,
                })
            }
            (None, Some(_)) => {
                return Outcome::reject(
                    Problem::new(ProblemCode::BadRequest)
                        .detail("cancel-on-disconnect needs an authenticated session"),
                    rid,
                    Some(route),
                )
            }
            _ => None,
        };
        return websocket(
            &pool, conn, req, &target, rid, route, principal, identity, cod,
        )
        .await;
    }

    // Phase: body limits.
    let limit = route.cfg.max_body_bytes.unwrap_or(server.max_body_bytes);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Outcome::reject(too_large(limit), rid, Some(route));
    }
    let (mut parts, body) = req.into_parts();
    let body = match tokio::time::timeout(server.request_timeout, read_body(body, limit)).await {
        Err(_) => {
            return Outcome::reject(
                Problem::new(ProblemCode::RequestTimeout)
                    .detail("the request body was not received in time"),
                rid,
                Some(route),
            )
        }
        Ok(Err(BodyError::TooLarge)) => return Outcome::reject(too_large(limit), rid, Some(route)),
        Ok(Err(BodyError::Io)) => {
            return Outcome::reject(
                Problem::new(ProblemCode::BadRequest).detail("the request body could not be read"),
                rid,
                Some(route),
            )
        }
        Ok(Ok(b)) => b,
    };
    // Phase: validation (positive model, then injection detection), over
    // the client's own headers, before hop-by-hop ones are removed.
    if let Err(o) = waf_phase(
        rt,
        conn,
        &route,
        &parts.method,
        &path,
        &params,
        parts.uri.query(),
        &parts.headers,
        &body,
        rid,
    ) {
        return *o;
    }
    strip_hop_by_hop(&mut parts.headers);
    let parts_query = parts.uri.query().map(str::to_owned);
    let head = make_head(parts.method, &parts.uri, parts.headers);

    // Phase: authentication (over the buffered body).
    let mut principal = if needs_auth {
        match auth_and_audit(rt, conn, &route, &head, &path, &path_and_query, &body, rid).await {
            Ok(p) => Some(p),
            Err(o) => return *o,
        }
    } else {
        None
    };

    // Phase: kill switch (operator stop of new orders).
    if let Some(a) = &principal {
        let p = &a.principal;
        if let Err(problem) = rt.kill.check(&route.cfg.action, &p.key_id, &p.account_id) {
            return Outcome::reject(*problem, rid, Some(route.clone()))
                .by(Some((p.key_id.as_str(), p.account_id.as_str())));
        }
    }

    // Phase: authorization, object level (the account and order the
    // request acts on) and MFA proofs.
    let query = parts_query.as_deref();
    let granted = match &principal {
        Some(a) => match trading::authz_pre(
            rt,
            conn,
            &route,
            a,
            &params,
            query,
            &head.headers,
            &body,
            rid,
        )
        .await
        {
            Ok(g) => Some(g),
            Err(o) => return *o,
        },
        None => None,
    };

    // Phase: adaptive risk (score → allow / step-up / throttle / deny).
    let mut risk_score = 0;
    if let (Some(a), Some(g)) = (&principal, &granted) {
        match risk_phase(
            rt,
            conn,
            &route,
            a,
            &head.headers,
            target.split_once('?').map(|(_, q)| q),
            &body,
            g.mfa_verified,
            rid,
        ) {
            Ok(score) => risk_score = score,
            Err(o) => return *o,
        }
    }

    // Phase: authorization policies (Cedar), with the risk score.
    if let (Some(a), Some(g)) = (&mut principal, &granted) {
        if let Err(o) =
            trading::authz_cedar(rt, conn, &route, a, g, &params, query, risk_score, rid).await
        {
            return *o;
        }
        // Acting on a sub-account: the upstream sees that account.
        if let Some(t) = &g.target {
            let own = std::mem::replace(&mut a.principal.account_id, t.id.clone());
            a.principal.parent_account_id = Some(own);
        }
    }

    // Phase: rate limits by key and account.
    if let Err(o) = principal_limits(rt, conn, &route, principal.as_ref(), rid, report) {
        return *o;
    }

    // Phase: pre-trade risk (order entry).
    let ticket = match &principal {
        Some(a) => match trading::pretrade_phase(
            rt,
            &route,
            a,
            granted.as_ref().and_then(|g| g.order.as_ref()),
            &body,
            rid,
        ) {
            Ok(t) => t,
            Err(o) => return *o,
        },
        None => None,
    };

    // Phase: forward. A later rejection is attributed to the principal.
    let identity = rt.auth.as_ref().map(|a| Arc::clone(&a.identity));
    let changes_credentials = rt.defense.changes_credentials(&route.cfg.action);
    let learns = trading::learns(rt, &route);
    let route_for_learning = learns.then(|| route.clone());
    let out = forward(
        &pool,
        conn,
        head,
        body,
        &target,
        rid,
        route,
        principal.as_ref(),
        identity,
    )
    .await
    .by(principal
        .as_ref()
        .map(|a| (a.principal.key_id.as_str(), a.principal.account_id.as_str())));
    let out = match (route_for_learning, &principal) {
        (Some(r), Some(a)) => trading::learn(rt, &r, &params, a, ticket, out, rid).await,
        _ => {
            if let Some(t) = ticket {
                t.settle(rampart_policy::pretrade::Outcome::Unknown);
            }
            out
        }
    };
    // A completed MFA, key or address-book change makes the next requests
    // of that account and key carry the `recent_credential_change` signal.
    if let (true, Some(a)) = (changes_credentials, &principal) {
        if out.resp.status().is_success() {
            rt.defense.note_credential_change(&a.principal.account_id);
            rt.defense.note_credential_change(&a.principal.key_id);
        }
    }
    out
}

/// The gateway endpoint showing a key its own limits.
pub const LIMITS_PATH: &str = "/v1/limits";

/// Edge rate limits for `route` (`None`: unrouted requests and gateway
/// endpoints); a refusal is a 429 with the headers so far.
fn edge_limits(
    rt: &Runtime,
    conn: &ConnInfo,
    route: Option<&Arc<Route>>,
    credentialed: bool,
    rid: &str,
    report: &mut Option<crate::limits::Report>,
) -> Result<(), Box<Outcome>> {
    if rt.limits.is_empty() {
        return Ok(());
    }
    let who = crate::limits::Who {
        ip: conn.peer.ip(),
        principal: None,
        credentialed,
    };
    let r = route.map(|r| (r.index, &r.cfg));
    match rt.shield.edge(&rt.limits, r, &who) {
        Ok(rep) => {
            *report = Some(rep);
            Ok(())
        }
        Err(refused) => {
            let refused = *refused;
            *report = Some(refused.report);
            Err(Box::new(Outcome::reject(
                refused.problem,
                rid,
                route.cloned(),
            )))
        }
    }
}

/// Rate limits by key and account, after authentication.
fn principal_limits(
    rt: &Runtime,
    conn: &ConnInfo,
    route: &Arc<Route>,
    principal: Option<&crate::auth::Authenticated>,
    rid: &str,
    report: &mut Option<crate::limits::Report>,
) -> Result<(), Box<Outcome>> {
    let Some(a) = principal else {
        return Ok(());
    };
    if rt.limits.is_empty() {
        return Ok(());
    }
    let p = &a.principal;
    let who = crate::limits::Who {
        ip: conn.peer.ip(),
        principal: Some((p.key_id.as_str(), p.account_id.as_str())),
        credentialed: true,
    };
    let so_far = report.take().unwrap_or_default();
    match rt
        .shield
        .principal(&rt.limits, (route.index, &route.cfg), &who, so_far)
    {
        Ok(rep) => {
            *report = Some(rep);
            Ok(())
        }
        Err(refused) => {
            let refused = *refused;
            *report = Some(refused.report);
            Err(Box::new(
                Outcome::reject(refused.problem, rid, Some(route.clone()))
                    .by(Some((p.key_id.as_str(), p.account_id.as_str()))),
            ))
        }
    }
}

/// `GET /v1/limits`: any authenticated key sees its own rules and usage.
async fn limits_endpoint(
    rt: &Runtime,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    path: &str,
    rid: &str,
    _report: &mut Option<crate::limits::Report>,
) -> Outcome {
    let route = rt.limits_route.clone();
    if req.method() != Method::GET {
        return Outcome::method_not_allowed("GET", rid, Some(route));
    }
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
    let head = make_head(req.method().clone(), req.uri(), req.headers().clone());
    let auth = match auth_and_audit(rt, conn, &route, &head, path, &path_and_query, &[], rid).await
    {
        Ok(a) => a,
        Err(o) => return *o,
    };
    let p = &auth.principal;
    let body = rt.shield.usage(
        &rt.limits,
        &rt.cfg.routes,
        conn.peer.ip(),
        &p.key_id,
        &p.account_id,
    );
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

/// The validation phase: refuses (block mode) or records (detect mode) a
/// request that fails the route's positive model or trips the detector.
#[allow(clippy::too_many_arguments, reason = "the request's raw parts")]
fn waf_phase(
    rt: &Runtime,
    conn: &ConnInfo,
    route: &Arc<Route>,
    method: &Method,
    path: &str,
    params: &[(&str, &str)],
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    rid: &str,
) -> Result<(), Box<Outcome>> {
    match rt.waf.check(
        Some(route.index),
        method.as_str(),
        path,
        params,
        query,
        headers,
        body,
    ) {
        crate::waf::Verdict::Pass => Ok(()),
        crate::waf::Verdict::Refuse(v) => {
            tracing::info!(
                target: "rampart::waf",
                request_id = rid,
                peer = %conn.peer.ip(),
                route = route.cfg.action.as_str(),
                violation = %v,
                "request refused by input validation"
            );
            Err(Box::new(
                Outcome::reject(crate::waf::problem(&v), rid, Some(route.clone()))
                    .noting(crate::waf::notes(&v)),
            ))
        }
        crate::waf::Verdict::Detected(v) => {
            tracing::warn!(
                target: "rampart::waf",
                request_id = rid,
                peer = %conn.peer.ip(),
                route = route.cfg.action.as_str(),
                violation = %v,
                "input validation would refuse this request (detect-only route)"
            );
            if let Some(a) = auditor(rt) {
                let mut ev = AuditEvent::new(
                    a.now(),
                    types::WAF_DETECTED,
                    Actor::anonymous(&claimed_key_id(headers)),
                    route.cfg.action.as_str(),
                    path,
                    Decision::Info,
                )
                .source_ip(conn.peer.ip())
                .request_id(rid)
                .reason(v.code())
                .plain("method", method.as_str());
                for (k, val) in crate::waf::notes(&v) {
                    ev = ev.plain(k, val);
                }
                a.record_deny(&ev);
            }
            Ok(())
        }
    }
}

/// Writes an abuse or risk alert to the audit trail (the log and the
/// webhook already have it).
fn record_alert(rt: &Runtime, conn: &ConnInfo, rid: &str, alert: &rampart_shield::alert::Alert) {
    let Some(a) = auditor(rt) else {
        return;
    };
    let ty = if alert.kind.ends_with("_locked") {
        types::ABUSE_LOCKOUT
    } else {
        types::ABUSE_ALERT
    };
    let ev = AuditEvent::new(
        a.now(),
        ty,
        Actor::system(),
        "AuthGuard",
        alert.kind,
        Decision::Info,
    )
    .source_ip(conn.peer.ip())
    .request_id(rid)
    .reason(alert.kind)
    .plain("summary", alert.summary.as_str())
    .plain("details", alert.details.clone());
    a.record_deny(&ev);
}

/// The order facts adaptive risk looks at: the instrument and size, from
/// a JSON body (`symbol`, `qty`) or the query (`symbol`).
fn order_facts<'a>(query: Option<&'a str>, body: &'a [u8]) -> (Option<String>, Option<f64>) {
    #[derive(serde::Deserialize)]
    struct View<'b> {
        #[serde(borrow)]
        symbol: Option<std::borrow::Cow<'b, str>>,
        #[serde(borrow)]
        qty: Option<std::borrow::Cow<'b, str>>,
    }
    if body.first() == Some(&b'{') {
        if let Ok(v) = serde_json::from_slice::<View<'_>>(body) {
            let qty = v
                .qty
                .and_then(|q| q.parse::<f64>().ok())
                .filter(|q| q.is_finite());
            return (v.symbol.map(|s| s.chars().take(64).collect()), qty);
        }
    }
    let symbol = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("symbol="))
            .map(|s| s.chars().take(64).collect())
    });
    (symbol, None)
}

/// Adaptive risk for an authenticated request: allow (and learn), or
/// refuse with step-up / throttle / deny; every non-clean score is
/// recorded with its signals.
#[allow(clippy::too_many_arguments, reason = "the request's parts")]
fn risk_phase(
    rt: &Runtime,
    conn: &ConnInfo,
    route: &Arc<Route>,
    auth: &crate::auth::Authenticated,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    mfa_verified: bool,
    rid: &str,
) -> Result<u8, Box<Outcome>> {
    let p = &auth.principal;
    let (instrument, order_qty) = order_facts(query, body);
    let ctx = rampart_shield::risk::RiskContext {
        key_id: &p.key_id,
        account: &p.account_id,
        ip: conn.peer.ip(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        now_unix_ms: respond::unix_ms(),
        instrument: instrument.as_deref(),
        order_qty,
        sensitive_action: rt.defense.is_sensitive(&route.cfg.action),
    };
    let verdict = rt.defense.assess(&ctx, mfa_verified);
    let (assessment, refused) = match verdict {
        crate::defense::RiskVerdict::Allow => return Ok(0),
        crate::defense::RiskVerdict::Noted(a) => (a, None),
        crate::defense::RiskVerdict::Refuse(problem, a) => (a, Some(problem)),
    };
    let notes = crate::defense::notes(&assessment);
    if refused.is_some() || assessment.score > 0 {
        tracing::info!(
            target: "rampart::risk",
            request_id = rid,
            key_id = %p.key_id,
            route = route.cfg.action.as_str(),
            refused = refused.is_some(),
            risk = %assessment.explain(),
            "adaptive risk"
        );
    }
    match refused {
        None => {
            // Allowed with a non-zero score: an audit note, not a denial.
            if let Some(a) = auditor(rt) {
                if assessment.action != rampart_shield::risk::RiskAction::Allow {
                    let mut ev = AuditEvent::new(
                        a.now(),
                        types::RISK_DECISION,
                        Actor::key(p.key_id.as_str()),
                        route.cfg.action.as_str(),
                        route.cfg.path.as_str(),
                        Decision::Info,
                    )
                    .account(p.account_id.as_str())
                    .source_ip(conn.peer.ip())
                    .request_id(rid);
                    for (k, v) in notes {
                        ev = ev.plain(k, v);
                    }
                    a.record_deny(&ev);
                }
            }
            Ok(assessment.score)
        }
        Some(problem) => {
            let step_up = problem.code == ProblemCode::MfaRequired;
            let mut o = Outcome::reject(*problem, rid, Some(route.clone()))
                .by(Some((p.key_id.as_str(), p.account_id.as_str())))
                .noting(notes);
            if let Some(d) = o.denial.as_mut() {
                d.event_type = types::RISK_DECISION;
                if step_up {
                    d.decision = Decision::StepUp;
                }
            }
            Err(Box::new(o))
        }
    }
}

fn auditor(rt: &Runtime) -> Option<&Arc<crate::audit::Auditor>> {
    rt.auth.as_ref().and_then(|a| a.audit.as_ref())
}

fn audit_unavailable(rid: &str, route: Option<Arc<Route>>) -> Outcome {
    Outcome::reject(
        Problem::new(ProblemCode::AuditUnavailable)
            .detail("the audit trail cannot record the request right now; retry shortly")
            .retry_after(1),
        rid,
        route,
    )
}

/// Whether a request carries credentials of any scheme (claimed, not
/// proven): the same headers [`claimed_key_id`] reads, without copying.
fn carries_credentials(headers: &HeaderMap) -> bool {
    ["signature-input", "x-mbx-apikey", "api-key"]
        .iter()
        .any(|h| headers.contains_key(*h))
        || headers.get(header::AUTHORIZATION).is_some_and(|v| {
            v.as_bytes()
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer "))
        })
}

/// The key id a request claims (public by design): the RFC 9421 `keyid`
/// parameter, an exchange-style API key header, or `bearer`. Truncated;
/// never a secret or a signature.
fn claimed_key_id(headers: &HeaderMap) -> String {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(input) = text("signature-input") {
        if let Some(rest) = input.split("keyid=\"").nth(1) {
            return rest
                .split('"')
                .next()
                .unwrap_or("")
                .chars()
                .take(96)
                .collect();
        }
    }
    if let Some(k) = text("x-mbx-apikey").or_else(|| text("api-key")) {
        return k.chars().take(96).collect();
    }
    if text("authorization").is_some_and(|v| {
        v.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
    }) {
        return "bearer".to_owned();
    }
    String::new()
}

/// Authentication and authorization of a non-public route, with its audit
/// record: a denial becomes an `auth.failure` / `authz.decision` rejection;
/// an allow is recorded (queued for group commit) before the request goes
/// anywhere, and refused with `503 AUDIT_UNAVAILABLE` when the record
/// cannot be queued under the `reject` policy.
#[allow(clippy::too_many_arguments, reason = "one call per phase input")]
async fn auth_and_audit(
    rt: &Runtime,
    conn: &ConnInfo,
    route: &Arc<Route>,
    head: &Head,
    path: &str,
    path_and_query: &str,
    body: &[u8],
    rid: &str,
) -> Result<crate::auth::Authenticated, Box<Outcome>> {
    let audit = auditor(rt);
    if audit.is_some_and(|a| !a.admits()) {
        return Err(Box::new(audit_unavailable(rid, Some(route.clone()))));
    }
    let ip = conn.peer.ip();
    let claimed = claimed_key_id(&head.headers);
    // Failed-authentication defense: locked or throttled sources are
    // refused before any key lookup or signature check.
    if let Err(p) = rt.defense.pre_auth(ip, &claimed).await {
        let lock = p
            .extra
            .get("lock")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let o = Outcome::reject(*p, rid, Some(route.clone()))
            .with_auth_denial(types::AUTH_FAILURE, Actor::anonymous(&claimed))
            .noting(lock.map(|l| vec![("lock", l)]).unwrap_or_default());
        return Err(Box::new(o));
    }
    let auth = match authenticate_phase(rt, conn, route, head, path_and_query, body).await {
        Ok(a) => {
            rt.defense.auth_succeeded(ip, &a.principal.key_id);
            a
        }
        Err(p) => {
            let code = p.code;
            if let Some(alert) = rt.defense.auth_failed(ip, &claimed, code) {
                record_alert(rt, conn, rid, &alert);
            }
            let o = Outcome::reject(*p, rid, Some(route.clone()));
            // A missing scope is decided after the signature verified, so
            // the claimed key is the proven one.
            let o = match code {
                ProblemCode::ScopeMissing => {
                    o.with_auth_denial(types::AUTHZ_DECISION, Actor::key(claimed))
                }
                ProblemCode::AuthUnavailable => o,
                _ => o.with_auth_denial(types::AUTH_FAILURE, Actor::anonymous(&claimed)),
            };
            return Err(Box::new(o));
        }
    };
    let Some(a) = audit else {
        return Ok(auth);
    };
    let p = &auth.principal;
    let mut ev = AuditEvent::new(
        a.now(),
        types::AUTH_SUCCESS,
        Actor::key(p.key_id.as_str()),
        route.cfg.action.as_str(),
        path,
        Decision::Allow,
    )
    .account(p.account_id.as_str())
    .source_ip(conn.peer.ip())
    .request_id(rid)
    .plain("method", head.method.as_str())
    .plain("scheme", p.scheme.as_str())
    .plain("scope", route.cfg.scope.as_str());
    if let Some(t) = &p.token_id {
        ev = ev.plain("token_id", t.as_str());
    }
    if p.mfa_covered {
        ev = ev.plain("mfa", true);
    }
    // Order details travel in the query (exchange-style APIs) or the body:
    // sealed with the audit data key, never plaintext, never a bare digest
    // (a low-entropy order is easy to brute-force from its hash).
    if let Some((_, query)) = path_and_query.split_once('?') {
        ev = ev.sensitive(a.sealer(), "query", query.as_bytes());
    }
    if !body.is_empty() {
        let kept = body.get(..crate::audit::MAX_AUDITED_BODY).unwrap_or(body);
        ev = ev.sensitive(a.sealer(), "body", kept);
        if kept.len() < body.len() {
            ev = ev.plain("body_bytes", body.len());
        }
    }
    match a.record_allow(&ev) {
        Ok(()) => Ok(auth),
        Err(()) => Err(Box::new(audit_unavailable(rid, Some(route.clone())))),
    }
}

/// `POST /oauth/token` and `GET /.well-known/jwks.json`; `None` when the
/// gateway has no token service (then they do not exist).
async fn token_endpoints(
    rt: &Runtime,
    conn: &ConnInfo,
    req: Request<Incoming>,
    path: &str,
    rid: &str,
) -> Option<Outcome> {
    let svc = rt.auth.as_ref()?;
    let tokens = svc.tokens.as_ref()?;
    let json_response = |status: StatusCode, v: serde_json::Value| {
        let mut resp = Response::new(respond::full(Bytes::from(v.to_string())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Outcome {
            resp,
            route: None,
            upstream: None,
            attempts: 0,
            denial: None,
        }
    };
    if path == "/.well-known/jwks.json" {
        if req.method() != Method::GET {
            return Some(Outcome::reject(
                Problem::new(ProblemCode::MethodNotAllowed),
                rid,
                None,
            ));
        }
        return Some(json_response(StatusCode::OK, tokens.jwks()));
    }
    if req.method() != Method::POST {
        return Some(Outcome::method_not_allowed("POST", rid, None));
    }
    let pq = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.to_owned(), |p| p.as_str().to_owned());
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = match tokio::time::timeout(rt.cfg.server.request_timeout, read_body(body, 4096))
        .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => return Some(Outcome::reject(too_large(4096), rid, None)),
        _ => {
            return Some(Outcome::reject(
                Problem::new(ProblemCode::BadRequest).detail("the request body could not be read"),
                rid,
                None,
            ))
        }
    };
    let head = make_head(parts.method, &parts.uri, parts.headers);
    let authority = head.authority.as_deref().unwrap_or("").to_ascii_lowercase();
    let input = crate::auth::AuthInput {
        method: &head.method,
        path_and_query: &pq,
        authority: &authority,
        scheme: if conn.tls { "https" } else { "http" },
        headers: &head.headers,
        body: &body,
    };
    // grant_type, scope and an optional RFC 7523 client assertion, from a
    // form or a JSON body.
    let fields = token_request_fields(&head.headers, &body);
    let (grant, scope) = (fields.grant, fields.scope);
    let auth = match (fields.assertion_type.as_deref(), fields.assertion.as_deref()) {
        (Some(JWT_BEARER), Some(assertion)) => {
            let audience = format!(
                "{}://{authority}/oauth/token",
                if conn.tls { "https" } else { "http" }
            );
            crate::auth::authenticate_assertion(svc, conn, assertion, &audience).await
        }
        (Some(_), _) | (None, Some(_)) => Err(Problem::new(ProblemCode::ValidationFailed).detail(
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer, with client_assertion",
        )),
        (None, None) => crate::auth::authenticate(svc, &rt.cfg.auth, conn, None, &input).await,
    };
    let auth = match auth {
        Ok(a) => a,
        Err(p) => {
            let claimed = claimed_key_id(&head.headers);
            let o = if p.code == ProblemCode::AuthUnavailable {
                Outcome::reject(p, rid, None)
            } else {
                Outcome::reject(p, rid, None)
                    .with_auth_denial(types::AUTH_FAILURE, Actor::anonymous(&claimed))
            };
            return Some(o);
        }
    };
    let who = (
        auth.principal.key_id.clone(),
        auth.principal.account_id.clone(),
    );
    if grant.as_deref() != Some("client_credentials") {
        return Some(
            Outcome::reject(
                Problem::new(ProblemCode::ValidationFailed)
                    .detail("grant_type must be client_credentials"),
                rid,
                None,
            )
            .by(Some((who.0.as_str(), who.1.as_str()))),
        );
    }
    let key_scopes = &auth.principal.scopes;
    let scopes: Vec<String> = match scope {
        None => key_scopes.clone(),
        Some(s) => {
            let asked: Vec<String> = s
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(extra) = asked.iter().find(|a| !key_scopes.contains(a)) {
                return Some(
                    Outcome::reject(
                        Problem::new(ProblemCode::ScopeMissing).detail(format!(
                            "the key lacks the `{extra}` scope; a token cannot have more than its key"
                        )),
                        rid,
                        None,
                    )
                    .with_auth_denial(types::AUTHZ_DECISION, Actor::key(who.0.clone())),
                );
            }
            asked
        }
    };
    let lifetime = i64::try_from(rt.cfg.auth.token_lifetime.as_secs()).unwrap_or(900);
    let now_s = crate::auth::now_ms() / 1000;
    match tokens.issue(
        &auth.principal.key_id,
        &auth.principal.account_id,
        &scopes,
        now_s,
        lifetime,
    ) {
        Ok((token, jti)) => {
            if let Some(a) = auditor(rt) {
                let ev = AuditEvent::new(
                    a.now(),
                    types::AUTH_SUCCESS,
                    Actor::key(who.0.as_str()),
                    "oauth.token",
                    path,
                    Decision::Allow,
                )
                .account(who.1.as_str())
                .source_ip(conn.peer.ip())
                .request_id(rid)
                .plain("scheme", auth.principal.scheme.as_str())
                .plain("token_id", jti.as_str())
                .plain("scopes", scopes.join(" "));
                if a.record_allow(&ev).is_err() {
                    return Some(
                        audit_unavailable(rid, None).by(Some((who.0.as_str(), who.1.as_str()))),
                    );
                }
            }
            Some(json_response(
                StatusCode::OK,
                serde_json::json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": lifetime,
                    "scope": scopes.join(" "),
                }),
            ))
        }
        Err(e) => {
            tracing::error!(request_id = rid, error = %e, "token signing failed");
            Some(Outcome::reject(
                Problem::new(ProblemCode::AuthUnavailable)
                    .detail("tokens cannot be issued right now"),
                rid,
                None,
            ))
        }
    }
}

/// RFC 7523 client assertion type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Default)]
struct TokenFields {
    grant: Option<String>,
    scope: Option<String>,
    assertion_type: Option<String>,
    assertion: Option<String>,
}

fn token_request_fields(headers: &HeaderMap, body: &[u8]) -> TokenFields {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut f = TokenFields::default();
    if is_json {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let get = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        f.grant = get("grant_type");
        f.scope = get("scope");
        f.assertion_type = get("client_assertion_type");
        f.assertion = get("client_assertion");
        return f;
    }
    for pair in body.split(|b| *b == b'&') {
        let text = String::from_utf8_lossy(pair);
        let (k, v) = text.split_once('=').unwrap_or((&text, ""));
        // An invalid escape makes the field absent (and the request invalid).
        let Ok(v) = rampart_auth::profiles::form_decode(v.as_bytes()) else {
            continue;
        };
        let v = String::from_utf8_lossy(&v).into_owned();
        match k {
            "grant_type" => f.grant = Some(v),
            "scope" => f.scope = Some(v),
            "client_assertion_type" => f.assertion_type = Some(v),
            "client_assertion" => f.assertion = Some(v),
            _ => {}
        }
    }
    f
}

/// Runs [`crate::auth::authenticate`]; refuses (fail closed) when the
/// gateway has no authentication services.
async fn authenticate_phase(
    rt: &Runtime,
    conn: &ConnInfo,
    route: &Route,
    head: &Head,
    path_and_query: &str,
    body: &[u8],
) -> Result<crate::auth::Authenticated, Box<Problem>> {
    let Some(svc) = rt.auth.as_ref() else {
        return Err(Box::new(Problem::new(ProblemCode::AuthUnavailable).detail(
            "authentication is not configured on this gateway; non-public routes are refused",
        )));
    };
    let authority = head.authority.as_deref().unwrap_or("").to_ascii_lowercase();
    let input = crate::auth::AuthInput {
        method: &head.method,
        path_and_query,
        authority: &authority,
        scheme: if conn.tls { "https" } else { "http" },
        headers: &head.headers,
        body,
    };
    // The gateway's own endpoints (scope "") take any authenticated key.
    let scope = Some(route.cfg.scope.as_str()).filter(|s| !s.is_empty());
    let res = crate::auth::authenticate(svc, &rt.cfg.auth, conn, scope, &input).await;
    log_auth(&res, conn, &route.cfg.action, &head.headers);
    res.map_err(Box::new)
}

/// One structured line per authentication decision (target `rampart::auth`;
/// the audit log takes these over when it exists). Never a secret or a
/// signature: the key id comes from the principal, or for a failure from
/// the request's own claim (public by design), truncated.
fn log_auth(
    res: &Result<crate::auth::Authenticated, Problem>,
    conn: &ConnInfo,
    action: &str,
    headers: &HeaderMap,
) {
    match res {
        Ok(a) => tracing::debug!(
            target: "rampart::auth",
            decision = "allow",
            key_id = %a.principal.key_id,
            account = %a.principal.account_id,
            scheme = a.principal.scheme.as_str(),
            action,
            peer = %conn.peer.ip(),
            "authenticated"
        ),
        Err(p) => {
            let claimed = headers
                .get("signature-input")
                .or_else(|| headers.get("x-mbx-apikey"))
                .or_else(|| headers.get("api-key"))
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(96).collect::<String>())
                .unwrap_or_default();
            tracing::info!(
                target: "rampart::auth",
                decision = "deny",
                code = p.code.as_str(),
                action,
                peer = %conn.peer.ip(),
                claimed = %claimed,
                "authentication failed"
            );
        }
    }
}

/// The parts of the client request that the upstream request is built from.
struct Head {
    method: Method,
    headers: HeaderMap,
    authority: Option<String>,
}

fn make_head(method: Method, uri: &Uri, headers: HeaderMap) -> Head {
    let authority = uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    Head {
        method,
        headers,
        authority,
    }
}

fn too_large(limit: usize) -> Problem {
    Problem::new(ProblemCode::PayloadTooLarge)
        .detail(format!("the request body exceeds {limit} bytes"))
        .with("limit_bytes", limit)
}

enum BodyError {
    TooLarge,
    Io,
}

/// Reads a body into memory, never more than `limit` bytes.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Io)?;
        if let Ok(data) = frame.into_data() {
            if buf.len().saturating_add(data.len()) > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Rewrites the client's headers in place into the upstream request's.
/// Client headers never forwarded: credentials (every scheme's) and
/// anything in the gateway's own `rampart-*` / `x-rampart-*` namespaces.
fn is_credential_or_identity(name: &str) -> bool {
    name.starts_with("x-rampart-")
        || name.starts_with("rampart-")
        || name.starts_with("x-forwarded-")
        || matches!(
            name,
            "forwarded"
                | "host"
                | "signature"
                | "signature-input"
                | "authorization"
                | "x-mbx-apikey"
                | "api-key"
                | "api-sign"
        )
}

fn upstream_headers(
    head: &mut Head,
    conn: &ConnInfo,
    rid: &str,
    principal: Option<&crate::auth::Authenticated>,
) {
    let h = &mut head.headers;
    // Identity headers are set by the gateway alone; a client's copy is
    // dropped, and so are the client's credentials.
    let spoofable: Vec<HeaderName> = h
        .keys()
        .filter(|k| is_credential_or_identity(k.as_str()))
        .cloned()
        .collect();
    for name in spoofable {
        h.remove(name);
    }
    if let Some(a) = principal {
        for name in &a.strip {
            h.remove(*name);
        }
        let p = &a.principal;
        if let Ok(v) = HeaderValue::from_str(&p.account_id) {
            h.insert(crate::auth::H_ACCOUNT, v);
        }
        if let Ok(v) = HeaderValue::from_str(&p.key_id) {
            h.insert(crate::auth::H_KEY_ID, v);
        }
        if let Ok(v) = HeaderValue::from_str(&p.scopes.join(",")) {
            h.insert(crate::auth::H_SCOPES, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&conn.peer.ip().to_string()) {
        h.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
    );
    if let Some(a) = head
        .authority
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        h.insert(HeaderName::from_static("x-forwarded-host"), a);
    }
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert(REQUEST_ID.clone(), v);
    }
}

enum Failure {
    /// Never reached the upstream (connect failed): always safe to retry.
    NotSent(String),
    /// May have reached the upstream.
    Transport(String),
    Timeout,
    Status(StatusCode),
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn forward(
    pool: &Arc<Pool>,
    conn: &ConnInfo,
    mut head: Head,
    body: Bytes,
    target: &str,
    rid: &str,
    route: Arc<Route>,
    principal: Option<&crate::auth::Authenticated>,
    identity: Option<Arc<crate::auth::IdentitySigner>>,
) -> Outcome {
    // Circuit breaker: fail fast instead of queueing behind a stuck pool.
    let inflight = pool.in_flight.fetch_add(1, Ordering::AcqRel);
    let _guard = InFlight(&pool.in_flight);
    if inflight >= pool.cfg.max_in_flight {
        return Outcome::reject(
            Problem::new(ProblemCode::Overloaded)
                .detail("the upstream pool is at its concurrency limit"),
            rid,
            Some(route),
        );
    }
    let timeout = route.cfg.timeout.unwrap_or(pool.cfg.timeout);
    upstream_headers(&mut head, conn, rid, principal);
    let headers = head.headers;
    let safe = is_safe_method(&head.method);
    let max_attempts = pool.cfg.retries.saturating_add(1);
    let mut tried: Vec<usize> = Vec::with_capacity(2);
    let mut last: Option<(Failure, String)> = None;
    let mut attempts = 0u32;

    while attempts < max_attempts {
        let Some((idx, ep)) = pool.pick(&tried) else {
            break;
        };
        tried.push(idx);
        attempts += 1;
        let uri: Uri = match format!("{}{}", ep.base, target).parse() {
            Ok(u) => u,
            Err(_) => {
                return Outcome::reject(
                    Problem::new(ProblemCode::BadRequest).detail("the request target is not valid"),
                    rid,
                    Some(route),
                )
            }
        };
        let mut up = Request::new(Full::new(body.clone()));
        *up.method_mut() = head.method.clone();
        *up.headers_mut() = headers.clone();
        if let Some(signer) = &identity {
            if let Err(e) = signer.sign(
                &head.method,
                &ep.authority,
                target,
                up.headers_mut(),
                &body,
                &new_request_id(),
            ) {
                tracing::error!(request_id = rid, error = %e, "signing the upstream identity failed");
                return Outcome::reject(Problem::new(ProblemCode::InternalError), rid, Some(route));
            }
        }
        *up.uri_mut() = uri;

        ep.in_flight.fetch_add(1, Ordering::Relaxed);
        ep.requests.fetch_add(1, Ordering::Relaxed);
        let res = tokio::time::timeout(timeout, pool.client().request(up)).await;
        ep.in_flight.fetch_sub(1, Ordering::Relaxed);

        let failure = match res {
            Ok(Ok(resp)) if !resp.status().is_server_error() => {
                pool.record_success(&ep);
                return Outcome {
                    resp: shape_response(resp),
                    route: Some(route),
                    upstream: Some(ep.authority.clone()),
                    attempts,
                    denial: None,
                };
            }
            Ok(Ok(resp)) => Failure::Status(resp.status()),
            Ok(Err(e)) if e.is_connect() => Failure::NotSent(e.to_string()),
            Ok(Err(e)) => Failure::Transport(format!("{e:?}")),
            Err(_) => Failure::Timeout,
        };
        pool.record_failure(&ep);
        tracing::debug!(request_id = rid, endpoint = %ep.authority, "upstream attempt failed");
        let retry_ok = match (&failure, route.cfg.retry) {
            (_, RetryPolicy::Never) => false,
            (Failure::NotSent(_), _) => true,
            (_, RetryPolicy::Safe) => safe,
            (_, RetryPolicy::ConnectOnly) => false,
        };
        last = Some((failure, ep.authority.clone()));
        if !retry_ok {
            break;
        }
    }

    let upstream = last.as_ref().map(|(_, a)| a.clone());
    let p = match last {
        None => Problem::new(ProblemCode::UpstreamUnavailable)
            .detail("no healthy upstream endpoint is available; the request was not sent"),
        Some((Failure::NotSent(e), a)) => {
            tracing::warn!(request_id = rid, endpoint = %a, error = %e, "upstream connect failed");
            Problem::new(ProblemCode::UpstreamUnavailable)
                .detail("the upstream could not be reached; the request was not sent")
        }
        Some((f, a)) => {
            let unknown = if safe {
                ""
            } else {
                "; the request may have reached the upstream, so its outcome is unknown: check its state before retrying"
            };
            match f {
                Failure::Timeout => Problem::new(ProblemCode::UpstreamTimeout).detail(format!(
                    "the upstream did not answer within {} ms{unknown}",
                    timeout.as_millis()
                )),
                Failure::Status(s) => {
                    tracing::warn!(request_id = rid, endpoint = %a, status = s.as_u16(), "upstream answered with a server error");
                    Problem::new(ProblemCode::UpstreamUnavailable).detail(format!(
                        "the upstream failed to process the request{unknown}"
                    ))
                }
                Failure::Transport(e) | Failure::NotSent(e) => {
                    tracing::warn!(request_id = rid, endpoint = %a, error = %e, "upstream connection failed");
                    Problem::new(ProblemCode::UpstreamUnavailable)
                        .detail(format!("the connection to the upstream failed{unknown}"))
                }
            }
        }
    };
    let mut o = Outcome::reject(p, rid, Some(route));
    o.upstream = upstream;
    o.attempts = attempts;
    o
}

struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn shape_response(resp: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    for n in UPSTREAM_REVEALING {
        parts.headers.remove(n);
    }
    parts
        .headers
        .remove(HeaderName::from_static("rampart-server-time"));
    Response::from_parts(parts, body.map_err(respond::BoxError::from).boxed_unsync())
}

/// Proxies a WebSocket upgrade: a dedicated HTTP/1.1 connection to the
/// upstream, then bytes copied both ways until either side closes.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn websocket(
    pool: &Arc<Pool>,
    conn: &Arc<ConnInfo>,
    mut req: Request<Incoming>,
    target: &str,
    rid: &str,
    route: Arc<Route>,
    principal: Option<crate::auth::Authenticated>,
    identity: Option<Arc<crate::auth::IdentitySigner>>,
    cod: Option<trading::Disconnect>,
) -> Outcome {
    let mut head = make_head(req.method().clone(), req.uri(), req.headers().clone());
    strip_hop_by_hop(&mut head.headers);
    upstream_headers(&mut head, conn, rid, principal.as_ref());
    let mut headers = head.headers;
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let mut tried = Vec::new();
    let Some((idx, ep)) = pool.pick(&tried) else {
        return Outcome::reject(
            Problem::new(ProblemCode::UpstreamUnavailable)
                .detail("no healthy upstream endpoint is available"),
            rid,
            Some(route),
        );
    };
    tried.push(idx);
    if let Some(signer) = &identity {
        if let Err(e) = signer.sign(
            &Method::GET,
            &ep.authority,
            target,
            &mut headers,
            &[],
            &new_request_id(),
        ) {
            tracing::error!(request_id = rid, error = %e, "signing the upstream identity failed");
            return Outcome::reject(Problem::new(ProblemCode::InternalError), rid, Some(route));
        }
    }
    let res = tokio::time::timeout(
        pool.cfg.timeout,
        upgrade_upstream(&ep, headers, target, pool.cfg.connect_timeout),
    )
    .await;
    let mut uresp = match res {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            pool.record_failure(&ep);
            tracing::warn!(request_id = rid, endpoint = %ep.authority, error = %e, "websocket upstream failed");
            return Outcome::reject(
                Problem::new(ProblemCode::UpstreamUnavailable)
                    .detail("the upstream could not be reached"),
                rid,
                Some(route),
            );
        }
        Err(_) => {
            pool.record_failure(&ep);
            return Outcome::reject(
                Problem::new(ProblemCode::UpstreamTimeout)
                    .detail("the upstream did not accept the upgrade in time"),
                rid,
                Some(route),
            );
        }
    };
    if uresp.status().is_server_error() {
        pool.record_failure(&ep);
        tracing::warn!(request_id = rid, endpoint = %ep.authority, status = uresp.status().as_u16(), "websocket upstream answered with a server error");
        return Outcome::reject(
            Problem::new(ProblemCode::UpstreamUnavailable)
                .detail("the upstream failed to accept the stream"),
            rid,
            Some(route),
        );
    }
    pool.record_success(&ep);
    if uresp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let mut o = Outcome {
            resp: shape_response(uresp),
            route: Some(route),
            upstream: Some(ep.authority.clone()),
            attempts: 1,
            denial: None,
        };
        o.resp.headers_mut().remove(header::UPGRADE);
        return o;
    }
    let client_up = hyper::upgrade::on(&mut req);
    let upstream_up = hyper::upgrade::on(&mut uresp);
    let rid_owned = rid.to_owned();
    // The task holds the connection info (and so its max_connections slot)
    // until the stream ends, and stops when the gateway shuts down.
    let conn = conn.clone();
    tokio::spawn(async move {
        match tokio::try_join!(client_up, upstream_up) {
            Ok((c, u)) => {
                let mut c = TokioIo::new(c);
                let mut u = TokioIo::new(u);
                tokio::select! {
                    r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
                        if let Err(e) = r {
                            tracing::debug!(request_id = %rid_owned, error = %e, "websocket closed with error");
                        }
                    }
                    () = conn.shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::debug!(request_id = %rid_owned, error = %e, "websocket upgrade failed");
            }
        }
        drop(conn);
        if let Some(d) = cod {
            d.fire(&rid_owned).await;
        }
    });
    let mut resp = Response::new(respond::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let uh = uresp.headers();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in [
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ] {
        if let Some(v) = uh.get(&name) {
            h.insert(name, v.clone());
        }
    }
    Outcome {
        resp,
        route: Some(route),
        upstream: Some(ep.authority.clone()),
        attempts: 1,
        denial: None,
    }
}

async fn upgrade_upstream(
    ep: &Endpoint,
    headers: HeaderMap,
    target: &str,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, respond::BoxError> {
    let tcp = tokio::time::timeout(
        connect_timeout,
        tokio::net::TcpStream::connect(&ep.authority),
    )
    .await??;
    tcp.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = target.parse()?;
    *req.headers_mut() = headers;
    req.headers_mut()
        .insert(header::HOST, HeaderValue::from_str(&ep.authority)?);
    Ok(sender.send_request(req).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(valid_request_id(&HeaderValue::from_static("abc-123")).is_some());
        assert!(valid_request_id(&HeaderValue::from_static("a b")).is_none());
        assert!(valid_request_id(&HeaderValue::from_static("")).is_none());
        let long = "a".repeat(65);
        assert!(valid_request_id(&HeaderValue::from_str(&long).unwrap()).is_none());
    }

    #[test]
    fn suspicious_paths() {
        assert!(suspicious_path("/v1/../admin"));
        assert!(suspicious_path("/v1/orders/..%2Fadmin"));
        assert!(suspicious_path("/v1/%2e%2e/x"));
        assert!(suspicious_path("/v1/a%00"));
        assert!(!suspicious_path("/v1/markets/BTC-USD/book"));
        assert!(!suspicious_path("/v1/orders/abc.def"));
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-ok", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("te").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("x-ok").is_some());
    }
}
