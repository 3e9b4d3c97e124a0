//! The admin listener: Prometheus metrics, liveness/readiness and upstream
//! status, the kill switch, unlocks and trusted sources, and operator
//! sign-in ([`operators`]). Served over TLS on its own socket, never on
//! the public one.
//!
//! Read-only endpoints (`/metrics`, `/healthz`, `/readyz`,
//! `/v1/upstreams`, `/v1/abuse`, `GET /v1/kill-switch`) are open. The
//! mutating ones (`POST /v1/kill-switch`, `/v1/kill-switch/release`,
//! `/v1/abuse/unlock`, `/v1/risk/trust`) need an operator session once
//! any operator has a WebAuthn credential; before that they are open and
//! the gateway says so at start.

pub mod operators;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::respond::{self, Body};
use crate::runtime::Gateway;
use operators::{Ctx, Operators};

/// Installs the process-wide Prometheus recorder once and returns its handle.
/// `None` if another recorder was installed first (then `/metrics` is empty).
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let b = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("rampart_request_duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .ok()?;
            let h = b.install_recorder().ok()?;
            let h2 = h.clone();
            // Histograms are drained on upkeep; without it they only grow.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let mut t = tokio::time::interval(Duration::from_secs(5));
                    loop {
                        t.tick().await;
                        h2.run_upkeep();
                    }
                });
            }
            Some(h)
        })
        .as_ref()
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(respond::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    respond::stamp(&mut r, None);
    r
}

/// Dispatches one admin request: operator endpoints, then the guarded
/// mutating endpoints, then the read-only ones.
async fn dispatch(
    gw: &Gateway,
    ops: Option<&Operators>,
    peer: Option<std::net::IpAddr>,
    req: Request<Incoming>,
) -> Response<Body> {
    let ctx = Ctx { gw, peer };
    let req = match operators::handle(ops, ctx, req).await {
        Ok(r) => return r,
        Err(req) => *req,
    };
    let path = req.uri().path();
    let action = match path {
        "/v1/kill-switch" | "/v1/kill-switch/release" | "/v1/abuse/unlock" | "/v1/risk/trust"
            if req.method() == http::Method::POST =>
        {
            match path {
                "/v1/kill-switch" => "KillSwitchEngage",
                "/v1/kill-switch/release" => "KillSwitchRelease",
                "/v1/abuse/unlock" => "Unlock",
                _ => "RiskTrust",
            }
        }
        _ => return route(gw, &req),
    };
    let operator =
        match operators::authorize(ops, ctx, req.method(), req.headers(), action, path).await {
            Ok(op) => op,
            Err(resp) => return *resp,
        };
    match path {
        "/v1/kill-switch" | "/v1/kill-switch/release" => {
            kill_switch(gw, &req, operator.as_deref()).await
        }
        "/v1/abuse/unlock" => unlock(gw, &req, operator.as_deref()),
        _ => trust(gw, &req, operator.as_deref()),
    }
}

/// Who changed something: the signed-in operator, or the gateway itself
/// while the admin side is unauthenticated.
fn actor(operator: Option<&str>) -> rampart_audit::event::Actor {
    operator.map_or_else(
        rampart_audit::event::Actor::system,
        rampart_audit::event::Actor::user,
    )
}

fn route(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => {
            let body = metrics_handle()
                .map(PrometheusHandle::render)
                .unwrap_or_default();
            text(StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" | "/v1/upstreams" => {
            let rt = gw.runtime();
            let mut ready = true;
            let pools: serde_json::Map<String, serde_json::Value> = rt
                .pools
                .iter()
                .map(|(name, p)| {
                    let eps: Vec<serde_json::Value> = p
                        .endpoints
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "endpoint": e.authority,
                                "healthy": e.is_healthy(),
                                "ejected": e.is_ejected(),
                                "in_flight": e.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                                "requests": e.requests.load(std::sync::atomic::Ordering::Relaxed),
                            })
                        })
                        .collect();
                    ready &= p.endpoints.iter().any(|e| e.available());
                    (name.clone(), serde_json::Value::Array(eps))
                })
                .collect();
            let status = if ready || req.uri().path() == "/v1/upstreams" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::json!({"ready": ready, "pools": pools}).to_string();
            text(status, "application/json", body)
        }
        "/v1/abuse" => {
            let rt = gw.runtime();
            let guard = rt.defense.guard();
            let body = serde_json::json!({
                "guard": guard.map(|g| serde_json::to_value(g.status()).unwrap_or_default()),
                "locks": guard.map(|g| serde_json::to_value(g.locks(1000)).unwrap_or_default()),
                "rate_limit_bans": rt.shield.active_bans(),
                "rate_limit_cells": rt.shield.cells(),
                "risk_profiles": rt.defense.risk().map(rampart_shield::risk::RiskEngine::profile_count),
            });
            text(StatusCode::OK, "application/json", body.to_string())
        }
        "/v1/kill-switch" if req.method() == http::Method::GET => {
            let list: Vec<serde_json::Value> = gw
                .kill
                .list()
                .into_iter()
                .map(|(t, e)| serde_json::json!({"target": t, "reason": e.reason, "since_ms": e.since_ms}))
                .collect();
            text(
                StatusCode::OK,
                "application/json",
                serde_json::json!({ "engaged": list }).to_string(),
            )
        }
        "/v1/abuse/unlock" => respond::problem(
            &rampart_core::Problem::new(rampart_core::ProblemCode::MethodNotAllowed)
                .detail("the path accepts POST"),
            None,
        ),
        _ => respond::problem(
            &rampart_core::Problem::new(rampart_core::ProblemCode::NotFound),
            None,
        ),
    }
}

/// `POST /v1/kill-switch?target=global|account:ID|key:ID&reason=TEXT`
/// engages a kill switch; `POST /v1/kill-switch/release?target=…` releases
/// it. Audited; persisted in the data dir.
async fn kill_switch(
    gw: &Gateway,
    req: &Request<Incoming>,
    operator: Option<&str>,
) -> Response<Body> {
    use crate::kill::Target;
    let mut target = None;
    let mut reason = String::from("operator");
    for kv in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = crate::authz::pct_decode(v);
        match k {
            "target" => {
                target = match v.split_once(':') {
                    None if v == "global" => Some(Target::Global),
                    Some(("account", id)) if !id.is_empty() && id.len() <= 128 => {
                        Some(Target::Account(id.to_owned()))
                    }
                    Some(("key", id)) if !id.is_empty() && id.len() <= 128 => {
                        Some(Target::Key(id.to_owned()))
                    }
                    _ => None,
                };
            }
            "reason" => reason = v,
            _ => target = None,
        }
    }
    let Some(target) = target else {
        return respond::problem(
            &rampart_core::Problem::new(rampart_core::ProblemCode::BadRequest)
                .detail("use target=global|account:ID|key:ID[&reason=TEXT]"),
            None,
        );
    };
    let release = req.uri().path().ends_with("/release");
    let res = if release {
        gw.kill.release(&target)
    } else {
        gw.kill
            .engage(target.clone(), &reason, respond::unix_ms())
            .map(|()| true)
    };
    let (changed, warning) = match res {
        Ok(c) => (c, None),
        Err(e) => {
            tracing::error!(target: "rampart::kill", error = %e, "kill switch not persisted");
            (true, Some(e))
        }
    };
    tracing::warn!(target: "rampart::kill", target = ?target, release, reason = %reason, operator = ?operator, "kill switch changed by an operator");
    // Cancel-all upstream on engage, when configured.
    let rt = gw.runtime();
    let cancelled = if !release && rt.cfg.kill_switch.cancel_all {
        let (accounts, key) = match &target {
            Target::Global => {
                let mut ids = match rt.auth.as_ref().and_then(|s| s.accounts.clone()) {
                    Some(d) => d.account_ids().await.unwrap_or_default(),
                    None => Vec::new(),
                };
                ids.extend(gw.trading.orders.accounts());
                ids.sort();
                ids.dedup();
                (ids, None)
            }
            Target::Account(a) => (vec![a.clone()], None),
            Target::Key(k) => (Vec::new(), Some(k.clone())),
        };
        let res = crate::trading::cancel_all(&rt, &gw.trading, &accounts, key.as_deref()).await;
        tracing::warn!(target: "rampart::kill", calls = res.len(), "kill switch cancel-all sent upstream");
        Some(res)
    } else {
        None
    };
    if let Some(a) = gw.auth.as_ref().and_then(|s| s.audit.as_ref()) {
        let ev = rampart_audit::event::AuditEvent::new(
            a.now(),
            rampart_audit::event::types::PERMISSION_CHANGED,
            actor(operator),
            if release {
                "KillSwitchRelease"
            } else {
                "KillSwitchEngage"
            },
            "/v1/kill-switch",
            rampart_audit::event::Decision::Info,
        )
        .plain("target", format!("{target:?}"))
        .plain("reason", reason.clone())
        .plain("changed", changed)
        .plain(
            "cancel_all",
            cancelled.as_ref().map_or_else(
                || "off".to_owned(),
                |c| serde_json::Value::from(c.clone()).to_string(),
            ),
        );
        a.record_deny(&ev);
    }
    let body = serde_json::json!({
        "target": target,
        "engaged": !release,
        "changed": changed,
        "warning": warning,
        "cancel_all": cancelled,
    });
    text(StatusCode::OK, "application/json", body.to_string())
}

/// `POST /v1/risk/trust?prefix=CIDR[&remove=1]`: an operator marks a
/// source network trusted for adaptive risk (no location signals from it)
/// until restart, or removes the mark. Audited.
fn trust(gw: &Gateway, req: &Request<Incoming>, operator: Option<&str>) -> Response<Body> {
    let mut prefix = None;
    let mut remove = false;
    for kv in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
    {
        match kv.split_once('=') {
            Some(("prefix", v)) => {
                prefix = v
                    .replace("%2F", "/")
                    .replace("%2f", "/")
                    .parse::<ipnet::IpNet>()
                    .ok();
            }
            Some(("remove", v)) => remove = v == "1" || v == "true",
            _ => prefix = None,
        }
    }
    let rt = gw.runtime();
    let (Some(net), Some(engine)) = (prefix.map(|n| n.trunc()), rt.defense.risk()) else {
        return respond::problem(
            &rampart_core::Problem::new(rampart_core::ProblemCode::BadRequest)
                .detail("use prefix=CIDR[&remove=1] (adaptive risk must be enabled)"),
            None,
        );
    };
    let changed = if remove {
        engine.untrust(net)
    } else {
        engine.trust(net)
    };
    tracing::warn!(target: "rampart::risk", prefix = %net, remove, changed, "operator changed a trusted source");
    if let Some(a) = gw.auth.as_ref().and_then(|s| s.audit.as_ref()) {
        let ev = rampart_audit::event::AuditEvent::new(
            a.now(),
            rampart_audit::event::types::PERMISSION_CHANGED,
            actor(operator),
            if remove { "RiskUntrust" } else { "RiskTrust" },
            "/v1/risk/trust",
            rampart_audit::event::Decision::Info,
        )
        .plain("prefix", net.to_string())
        .plain("changed", changed);
        a.record_deny(&ev);
    }
    let body =
        serde_json::json!({"prefix": net.to_string(), "trusted": !remove, "changed": changed});
    text(StatusCode::OK, "application/json", body.to_string())
}

/// `POST /v1/abuse/unlock?ip=IP[&key=KEY] | ?prefix=CIDR | ?key=KEY | ?all=1`:
/// an operator lifts failed-authentication lockouts (PCI DSS 8.3.4's "until
/// an administrator unlocks"); `all=1` also lifts rate-limit bans. Audited.
fn unlock(gw: &Gateway, req: &Request<Incoming>, operator: Option<&str>) -> Response<Body> {
    use rampart_shield::abuse::Unlock;
    let bad = |d: &str| {
        respond::problem(
            &rampart_core::Problem::new(rampart_core::ProblemCode::BadRequest).detail(d.to_owned()),
            None,
        )
    };
    let mut ip = None;
    let mut key = None;
    let mut prefix = None;
    let mut all = false;
    for kv in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "ip" => match v.parse::<std::net::IpAddr>() {
                Ok(a) => ip = Some(a),
                Err(_) => return bad("`ip` is not an IP address"),
            },
            "prefix" => match v
                .replace("%2F", "/")
                .replace("%2f", "/")
                .parse::<ipnet::IpNet>()
            {
                Ok(n) => prefix = Some(n),
                Err(_) => return bad("`prefix` is not a CIDR network"),
            },
            "key" if !v.is_empty() && v.len() <= 128 => key = Some(v.to_owned()),
            "all" => all = v == "1" || v == "true",
            _ => return bad("use ip=IP[&key=KEY], prefix=CIDR, key=KEY or all=1"),
        }
    }
    let target = match (ip, key.clone(), prefix, all) {
        (Some(ip), Some(key_id), None, false) => Unlock::Pair { ip, key_id },
        (Some(ip), None, None, false) => Unlock::Ip(ip),
        (None, None, Some(n), false) => Unlock::Prefix(n),
        (None, Some(k), None, false) => Unlock::Key(k),
        (None, None, None, true) => Unlock::All,
        _ => return bad("use exactly one of ip=IP[&key=KEY], prefix=CIDR, key=KEY, all=1"),
    };
    let rt = gw.runtime();
    let what = format!("{target:?}");
    let unlocked = rt.defense.guard().map_or(0, |g| g.unlock(target));
    let bans = if all { rt.shield.clear_bans() } else { 0 };
    tracing::warn!(target: "rampart::abuse", what = %what, unlocked, bans, "operator unlock");
    if let Some(a) = gw.auth.as_ref().and_then(|s| s.audit.as_ref()) {
        let ev = rampart_audit::event::AuditEvent::new(
            a.now(),
            rampart_audit::event::types::ABUSE_UNLOCK,
            actor(operator),
            "Unlock",
            "/v1/abuse/unlock",
            rampart_audit::event::Decision::Info,
        )
        .plain("target", what)
        .plain("unlocked", unlocked)
        .plain("bans_lifted", bans);
        a.record_deny(&ev);
    }
    let body = serde_json::json!({"unlocked": unlocked, "bans_lifted": bans});
    text(StatusCode::OK, "application/json", body.to_string())
}

/// Serves the admin endpoints until the gateway shuts down.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    operators: Option<Arc<Operators>>,
) {
    let _ = metrics_handle();
    loop {
        let (tcp, peer) = tokio::select! {
            () = gw.shutdown.cancelled() => break,
            a = listener.accept() => match a { Ok(x) => x, Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue } },
        };
        let gw2 = gw.clone();
        let gw2_stop = gw.shutdown.clone();
        let tls = tls.clone();
        let ops = operators.clone();
        gw.tracker.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let gw3 = gw2.clone();
                let ops = ops.clone();
                async move {
                    Ok::<_, Infallible>(dispatch(&gw3, ops.as_deref(), Some(peer.ip()), req).await)
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // Each admin connection lives at most 60 s and ends at shutdown.
            let limit = Duration::from_secs(60);
            match tls {
                Some(acc) => {
                    if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(5), acc.accept(tcp)).await {
                        tokio::select! {
                            _ = tokio::time::timeout(limit, builder.serve_connection(TokioIo::new(s), svc)) => {}
                            () = gw2_stop.cancelled() => {}
                        }
                    }
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::timeout(limit, builder.serve_connection(TokioIo::new(tcp), svc)) => {}
                        () = gw2_stop.cancelled() => {}
                    }
                }
            }
        });
    }
}
