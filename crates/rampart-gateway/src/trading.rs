//! Gateway-wide trading-control state (issue 6) that outlives config
//! reloads: step-up tokens, the order-owner index, the pre-trade engine
//! with its open-order counts and reference prices, and the upstream
//! calls a kill switch and the reference-price refresher make.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use rampart_core::config::{Config, PretradeLimits};
use rampart_policy::pretrade::{Engine, Limits, PretradeConfig};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use crate::authz::{OrderIndex, StepUpTokens};

/// Gateway-wide trading state.
pub struct Trading {
    /// Step-up tokens from `POST /v1/mfa/verify`.
    pub tokens: StepUpTokens,
    /// Who placed which order.
    pub orders: OrderIndex,
    /// Pre-trade risk (`[pretrade]`); `None`: off.
    pub pretrade: Option<Engine>,
}

impl std::fmt::Debug for Trading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trading")
            .field("pretrade", &self.pretrade.is_some())
            .finish_non_exhaustive()
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn limits(l: &PretradeLimits) -> Limits {
    Limits {
        max_qty: l.max_qty,
        max_notional: l.max_notional,
        collar_pct: l.collar_pct,
        max_open_orders: l.max_open_orders,
        order_types: l.order_types.clone(),
        time_in_force: l.time_in_force.clone(),
        duplicate_window_ms: l.duplicate_window.map(ms),
    }
}

/// The engine's configuration for a gateway config's `[pretrade]`.
#[must_use]
pub fn pretrade_config(cfg: &Config) -> Option<PretradeConfig> {
    let p = cfg.pretrade.as_ref()?;
    let map = |m: &std::collections::BTreeMap<String, PretradeLimits>| {
        m.iter()
            .map(|(k, v)| (k.clone(), limits(v)))
            .collect::<HashMap<_, _>>()
    };
    Some(PretradeConfig {
        defaults: limits(&p.defaults),
        instruments: map(&p.instruments),
        accounts: map(&p.accounts),
        keys: map(&p.keys),
        reference_max_age_ms: ms(p.reference_max_age),
        fixed_prices: p
            .fixed_prices
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        max_tracked: p.max_tracked,
    })
}

impl Trading {
    /// The state for the first configuration.
    #[must_use]
    pub fn new(cfg: &Config) -> Self {
        Self {
            tokens: StepUpTokens::default(),
            orders: OrderIndex::default(),
            pretrade: pretrade_config(cfg).map(Engine::new),
        }
    }

    /// Applies a reloaded configuration (limits change at once; counts and
    /// prices stay). Turning `[pretrade]` on or off needs a restart.
    pub fn reload(&self, cfg: &Config) {
        match (&self.pretrade, pretrade_config(cfg)) {
            (Some(e), Some(c)) => e.reload(c),
            (None, None) => {}
            _ => tracing::warn!("adding or removing [pretrade] needs a restart"),
        }
    }
}

/// The pool and upstream of the order-entry route (`PlaceOrder` or the
/// `orders` group): where cancel-all and reference prices go.
fn orders_pool(rt: &crate::runtime::Runtime) -> Option<Arc<crate::upstream::Pool>> {
    let r = rt
        .cfg
        .routes
        .iter()
        .find(|r| r.action == "PlaceOrder" || r.group.as_deref() == Some("orders"))?;
    rt.pools.get(&r.upstream).cloned()
}

/// Sends one gateway-originated request upstream with a signed identity
/// for `account` (the kill switch's cancel-all). Returns the status.
async fn call_upstream(
    rt: &crate::runtime::Runtime,
    method: Method,
    path: &str,
    account: Option<&str>,
) -> Result<(u16, Bytes), String> {
    let pool = orders_pool(rt).ok_or("no order-entry route")?;
    let (_, ep) = pool.pick(&[]).ok_or("no healthy upstream endpoint")?;
    let mut headers = HeaderMap::new();
    let rid = crate::proxy::new_request_id();
    if let Ok(v) = HeaderValue::from_str(&rid) {
        headers.insert(crate::respond::REQUEST_ID.clone(), v);
    }
    if let Some(acct) = account {
        headers.insert(
            crate::auth::H_ACCOUNT,
            HeaderValue::from_str(acct).map_err(|_| "bad account id")?,
        );
        headers.insert(
            crate::auth::H_KEY_ID,
            HeaderValue::from_static(crate::auth::GATEWAY_KEY_ID),
        );
        headers.insert(crate::auth::H_SCOPES, HeaderValue::from_static("trade"));
    }
    if let Some(svc) = rt.auth.as_ref() {
        svc.identity
            .sign(&method, &ep.authority, path, &mut headers, &[], &rid)
            .map_err(|e| format!("identity signing failed: {e}"))?;
    }
    let uri = format!("http://{}{path}", ep.authority);
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    *req.headers_mut() = headers;
    let resp = tokio::time::timeout(pool.cfg.timeout, pool.client().request(req))
        .await
        .map_err(|_| "upstream timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(pool.cfg.timeout, read_bounded(resp.into_body()))
        .await
        .map_err(|_| "upstream timeout".to_owned())??;
    Ok((status, body))
}

/// Most bytes read of a gateway-originated call's answer.
const MAX_CALL_BODY: usize = 256 * 1024;

async fn read_bounded(mut body: hyper::body::Incoming) -> Result<Bytes, String> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(d) = frame.into_data() {
            if buf.len() + d.len() > MAX_CALL_BODY {
                return Err("upstream answer too large".to_owned());
            }
            buf.extend_from_slice(&d);
        }
    }
    Ok(buf.freeze())
}

/// Cancels the open orders of `accounts` upstream (`DELETE cancel_path`
/// per account) and, for a key, each order the gateway saw that key place.
/// Returns one line per call for the operator.
pub async fn cancel_all(
    rt: &crate::runtime::Runtime,
    trading: &Trading,
    accounts: &[String],
    key: Option<&str>,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    if let Some(k) = key {
        for (order_id, account) in trading.orders.by_key(k) {
            let path = format!(
                "{}/{}",
                rt.cfg.kill_switch.cancel_path.trim_end_matches('/'),
                order_id
            );
            let r = call_upstream(rt, Method::DELETE, &path, Some(&account)).await;
            if matches!(r, Ok((s, _)) if (200..300).contains(&s)) {
                trading.orders.remove(&order_id);
                if let Some(e) = &trading.pretrade {
                    e.order_closed(&account, &order_id);
                }
            }
            out.push(result_line(&account, Some(&order_id), r));
        }
    }
    for a in accounts {
        let r = call_upstream(rt, Method::DELETE, &rt.cfg.kill_switch.cancel_path, Some(a)).await;
        if let Ok((s, body)) = &r {
            if (200..300).contains(s) {
                if let Some(e) = &trading.pretrade {
                    e.reconcile_open_orders(a, &[]);
                }
                let _ = body;
            }
        }
        out.push(result_line(a, None, r));
    }
    out
}

fn result_line(
    account: &str,
    order: Option<&str>,
    r: Result<(u16, Bytes), String>,
) -> serde_json::Value {
    match r {
        Ok((s, _)) => serde_json::json!({"account": account, "order_id": order, "status": s}),
        Err(e) => serde_json::json!({"account": account, "order_id": order, "error": e}),
    }
}

/// Mid of the best bid and ask of a book answer
/// (`{"bids":[{"price":"…"}|["…",…]], "asks":[…]}`), or the one side there is.
#[must_use]
pub fn book_mid(body: &[u8]) -> Option<Decimal> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let best = |side: &str| -> Option<Decimal> {
        let lvl = v.get(side)?.as_array()?.first()?;
        let p = lvl
            .get("price")
            .or_else(|| lvl.as_array().and_then(|a| a.first()))?;
        match p {
            serde_json::Value::String(s) => s.parse().ok(),
            serde_json::Value::Number(n) => n.to_string().parse().ok(),
            _ => None,
        }
    };
    match (best("bids"), best("asks")) {
        (Some(b), Some(a)) => Some((b + a) / Decimal::TWO),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (None, None) => None,
    }
}

/// Refreshes reference prices from the upstream's books every
/// `reference_refresh`, for every instrument with limits or a catalogue
/// entry, until `stop`. A failed fetch leaves the old price to go stale
/// (then orders needing it are refused: fail closed).
pub async fn refresh_prices(gw: Arc<crate::runtime::Gateway>, stop: CancellationToken) {
    loop {
        let rt = gw.runtime();
        let Some(p) = rt.cfg.pretrade.clone() else {
            return;
        };
        let Some(every) = p.reference_refresh else {
            return;
        };
        if let Some(engine) = &gw.trading.pretrade {
            let mut symbols: Vec<String> = p.instruments.keys().cloned().collect();
            if let Some(pc) = &rt.cfg.policy {
                symbols.extend(pc.instruments.keys().cloned());
            }
            symbols.extend(p.fixed_prices.keys().cloned());
            symbols.sort();
            symbols.dedup();
            for sym in symbols {
                let path = p.reference_path.replace("{symbol}", &sym);
                match call_upstream(&rt, Method::GET, &path, None).await {
                    Ok((200, body)) => {
                        if let Some(mid) = book_mid(&body) {
                            engine.set_reference_price(&sym, mid, crate::auth::now_ms());
                        }
                    }
                    Ok((s, _)) => {
                        tracing::debug!(target: "rampart::pretrade", symbol = %sym, status = s, "reference price fetch refused");
                    }
                    Err(e) => {
                        tracing::debug!(target: "rampart::pretrade", symbol = %sym, error = %e, "reference price fetch failed");
                    }
                }
            }
        }
        drop(rt);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn mids() {
        let b = br#"{"bids":[{"price":"100","qty":"1"}],"asks":[{"price":"102","qty":"1"}]}"#;
        assert_eq!(book_mid(b), Some(Decimal::from(101)));
        let one = br#"{"bids":[],"asks":[["50.5","1"]]}"#;
        assert_eq!(book_mid(one), "50.5".parse().ok());
        assert_eq!(book_mid(b"{}"), None);
        assert_eq!(book_mid(b"nope"), None);
    }
}
