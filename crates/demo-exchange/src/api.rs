//! HTTP/JSON and WebSocket API over an [`Exchange`] (axum).
//!
//! The account is taken from the `Rampart-Account` header (set by the
//! gateway after authentication), defaulting to `demo`. When the exchange
//! requires the gateway's signature ([`Exchange::require_gateway_signature`]),
//! a request without a valid one is refused with 401 before any handler runs. Every error is JSON:
//! `{"error": "<human message>", "code": "<machine code>"}`.
//!
//! | route | |
//! |---|---|
//! | `GET /healthz` | `ok` |
//! | `GET /v1/time` | `{"server_time_ms": u64}` |
//! | `GET /v1/markets` | array of instruments |
//! | `GET /v1/markets/{symbol}/book?depth=N` | aggregated book (default 20, max 100 levels) |
//! | `GET /v1/account` | balances and positions |
//! | `GET /v1/orders` | open orders (array) |
//! | `POST /v1/orders` | place an order → 201 |
//! | `DELETE /v1/orders/{order_id}` | cancel → 200 |
//! | `DELETE /v1/orders` | cancel every open order of the account → `{"cancelled": n, "orders": [...]}` |
//! | `POST /v1/withdrawals` | withdraw → 201 |
//! | `GET /v1/stream` | WebSocket of `order` / `fill` events, `{"op":"ping"}` → `{"type":"pong"}` |

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::engine::{now_ms, EngineError, NewOrder};
use crate::num::parse_decimal;
use crate::types::{Event, OrderType, Side, TimeInForce};
use crate::Exchange;

/// Header carrying the authenticated account name.
pub const ACCOUNT_HEADER: &str = "rampart-account";
/// Account used when the header is absent.
pub const DEFAULT_ACCOUNT: &str = "demo";
/// Default number of book levels per side.
pub const DEFAULT_DEPTH: usize = 20;
/// Maximum number of book levels per side.
pub const MAX_DEPTH: usize = 100;
/// Maximum request body size in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Maximum WebSocket message size accepted from clients.
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;
/// Maximum account name length accepted in the header.
pub const MAX_ACCOUNT_LEN: usize = 64;

/// A JSON error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (e.g. `insufficient_balance`).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// Build an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let msg = e.to_string();
        match e {
            EngineError::Invalid(_) => Self::bad_request("invalid_request", msg),
            EngineError::UnknownSymbol(_) => Self::bad_request("unknown_symbol", msg),
            EngineError::UnknownAccount(_) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_account", msg)
            }
            EngineError::InsufficientBalance(_) => Self::bad_request("insufficient_balance", msg),
            EngineError::DuplicateClientOrderId(_) => {
                Self::new(StatusCode::CONFLICT, "duplicate_client_order_id", msg)
            }
            EngineError::OrderNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "order_not_found", msg)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": self.message, "code": self.code })),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

#[derive(Clone)]
struct AppState {
    ex: Arc<Exchange>,
    /// Flips to `true` when the server shuts down (closes WebSocket sessions).
    shutdown: Option<watch::Receiver<bool>>,
}

/// The API router over `ex` (WebSocket sessions live until the client leaves).
pub fn router(ex: Arc<Exchange>) -> Router {
    build_router(ex, None)
}

fn build_router(ex: Arc<Exchange>, shutdown: Option<watch::Receiver<bool>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/time", get(time))
        .route("/v1/markets", get(markets))
        .route("/v1/markets/{symbol}/book", get(book))
        .route("/v1/account", get(account))
        .route(
            "/v1/orders",
            get(list_orders).post(create_order).delete(cancel_all),
        )
        .route("/v1/orders/{order_id}", delete(cancel_order))
        .route("/v1/withdrawals", post(withdraw))
        .route("/v1/stream", get(stream))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&ex),
            gateway_signature,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState { ex, shutdown })
}

/// Serve `ex` on `listener` until `shutdown` resolves, then stop accepting,
/// finish in-flight requests and close WebSocket sessions. Several listeners
/// may serve the same `Arc<Exchange>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ex: Arc<Exchange>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let app = build_router(ex, Some(rx));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(true);
        })
        .await
}

/// Checks the gateway's RFC 9421 signature when the exchange requires it.
async fn gateway_signature(
    State(ex): State<Arc<Exchange>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use std::sync::atomic::Ordering;
    let Some(secret) = ex.gateway_key() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::bad_request("body_too_large", "request body too large").into_response();
    };
    let authority = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let pq = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let view = rampart_auth::RequestView {
        method: &parts.method,
        path_and_query: &pq,
        authority: &authority,
        scheme: "http",
        headers: &parts.headers,
        body: &bytes,
    };
    let key = rampart_auth::KeyMaterial::Hmac(secret);
    let verdict = match rampart_auth::rfc9421::parse(&view) {
        Ok(Some(p)) => {
            let fresh = p
                .created()
                .is_some_and(|c| (c - i64::try_from(now_ms() / 1000).unwrap_or(0)).abs() <= 60);
            if p.key_id() != "rampart-gateway" {
                Err("not signed by the gateway")
            } else if !fresh {
                Err("gateway signature is not fresh")
            } else {
                p.verify(&view, rampart_auth::Scheme::Rfc9421HmacSha256, &key)
                    .map_err(|_| "gateway signature does not verify")
            }
        }
        Ok(None) => Err("missing gateway signature"),
        Err(_) => Err("malformed gateway signature"),
    };
    match verdict {
        Ok(()) => {
            ex.accepted_signed.fetch_add(1, Ordering::Relaxed);
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Err(why) => {
            ex.rejected_unsigned.fetch_add(1, Ordering::Relaxed);
            ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "gateway_signature_required",
                message: why.to_owned(),
            }
            .into_response()
        }
    }
}

fn account_of(headers: &HeaderMap) -> ApiResult<String> {
    let Some(value) = headers.get(ACCOUNT_HEADER) else {
        return Ok(DEFAULT_ACCOUNT.to_string());
    };
    let name = value
        .to_str()
        .map(str::trim)
        .map_err(|_| ApiError::bad_request("invalid_account", "account header is not ASCII"))?;
    if name.is_empty() || name.len() > MAX_ACCOUNT_LEN {
        return Err(ApiError::bad_request(
            "invalid_account",
            format!("account header must be 1..={MAX_ACCOUNT_LEN} characters"),
        ));
    }
    Ok(name.to_string())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn time() -> Json<serde_json::Value> {
    Json(json!({ "server_time_ms": now_ms() }))
}

async fn markets(State(st): State<AppState>) -> Response {
    Json(st.ex.markets()).into_response()
}

async fn book(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Response> {
    let Path(symbol) =
        path.map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "unknown_symbol", e.body_text()))?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let depth = match query.get("depth") {
        None => DEFAULT_DEPTH,
        Some(s) => match s.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("depth must be an integer in 1..={MAX_DEPTH}"),
                ))
            }
            Ok(n) => n.min(MAX_DEPTH),
        },
    };
    st.ex
        .book(&symbol, depth)
        .map(|b| Json(b).into_response())
        .map_err(|e| match e {
            EngineError::UnknownSymbol(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_symbol", e.to_string())
            }
            other => other.into(),
        })
}

async fn account(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let name = account_of(&headers)?;
    Ok(Json(st.ex.account(&name)?).into_response())
}

async fn list_orders(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let name = account_of(&headers)?;
    Ok(Json(st.ex.open_orders(&name)?).into_response())
}

/// `POST /v1/orders` body. Decimals are strings.
#[derive(Debug, Deserialize)]
struct OrderRequest {
    symbol: String,
    side: Side,
    #[serde(rename = "type")]
    order_type: OrderType,
    qty: String,
    #[serde(default)]
    price: Option<String>,
    #[serde(default)]
    client_order_id: Option<String>,
    #[serde(default)]
    time_in_force: Option<TimeInForce>,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let body = body.map_err(|e| ApiError::new(e.status(), "invalid_body", e.body_text()))?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))
}

fn decimal(field: &str, s: &str) -> ApiResult<rust_decimal::Decimal> {
    parse_decimal(field, s).map_err(|m| ApiError::bad_request("invalid_decimal", m))
}

async fn create_order(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let name = account_of(&headers)?;
    let req: OrderRequest = parse_json(body)?;
    let qty = decimal("qty", &req.qty)?;
    let price = req
        .price
        .as_deref()
        .map(|p| decimal("price", p))
        .transpose()?;
    let order = st.ex.place_order(
        &name,
        NewOrder {
            symbol: req.symbol,
            side: req.side,
            order_type: req.order_type,
            qty,
            price,
            time_in_force: req.time_in_force,
            client_order_id: req.client_order_id,
        },
    )?;
    Ok((StatusCode::CREATED, Json(order)).into_response())
}

async fn cancel_order(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let name = account_of(&headers)?;
    let raw = path.map(|Path(p)| p).unwrap_or_default();
    let id = raw.parse::<u64>().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            format!("order {raw:?} not found"),
        )
    })?;
    Ok(Json(st.ex.cancel_order(&name, id)?).into_response())
}

/// `DELETE /v1/orders`: cancel every open order of the account.
async fn cancel_all(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let name = account_of(&headers)?;
    let cancelled = st.ex.cancel_all(&name)?;
    Ok(Json(serde_json::json!({
        "cancelled": cancelled.len(),
        "orders": cancelled,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct WithdrawalRequest {
    asset: String,
    amount: String,
    address: String,
}

async fn withdraw(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let name = account_of(&headers)?;
    let req: WithdrawalRequest = parse_json(body)?;
    let amount = decimal("amount", &req.amount)?;
    let w = st.ex.withdraw(&name, &req.asset, amount, &req.address)?;
    Ok((StatusCode::CREATED, Json(w)).into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn stream(
    State(st): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let name = account_of(&headers)?;
    if !st.ex.has_account(&name) {
        return Err(EngineError::UnknownAccount(name).into());
    }
    let ws = ws.map_err(|e| ApiError::new(e.status(), "websocket_required", e.body_text()))?;
    // Subscribe before the upgrade completes: no event after the handshake is missed.
    let rx = st.ex.subscribe();
    let shutdown = st.shutdown.clone();
    Ok(ws
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| ws_session(socket, name, rx, shutdown)))
}

async fn wait_shutdown(rx: Option<watch::Receiver<bool>>) {
    match rx {
        // Resolves when shutdown is signalled or the server is gone.
        Some(mut rx) => {
            let _ = rx.wait_for(|down| *down).await;
        }
        None => std::future::pending().await,
    }
}

/// Reply to a client text message.
fn handle_client_message(text: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => match v.get("op").and_then(|op| op.as_str()) {
            Some("ping") => match v.get("id") {
                Some(id) => json!({ "type": "pong", "id": id }),
                None => json!({ "type": "pong" }),
            },
            Some(other) => json!({ "type": "error", "error": format!("unknown op {other:?}") }),
            None => json!({ "type": "error", "error": "missing op" }),
        },
        Err(_) => json!({ "type": "error", "error": "invalid JSON" }),
    }
}

async fn ws_session(
    mut socket: WebSocket,
    account: String,
    mut rx: broadcast::Receiver<Event>,
    shutdown: Option<watch::Receiver<bool>>,
) {
    let shutdown = wait_shutdown(shutdown);
    tokio::pin!(shutdown);
    loop {
        let outgoing = tokio::select! {
            () = &mut shutdown => {
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1001,
                        reason: "server shutting down".into(),
                    })))
                    .await;
                break;
            }
            ev = rx.recv() => match ev {
                Ok(ev) if ev.account == account => serde_json::to_value(&ev).ok(),
                Ok(_) => None,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some(json!({ "type": "lagged", "missed": missed }))
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => Some(handle_client_message(text.as_str())),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                // Pings are answered by the protocol layer; binary frames are ignored.
                Some(Ok(_)) => None,
            },
        };
        if let Some(v) = outgoing {
            if socket
                .send(Message::Text(v.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    tracing::debug!(account, "stream session closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_pong_and_errors() {
        assert_eq!(
            handle_client_message(r#"{"op":"ping"}"#),
            json!({"type":"pong"})
        );
        assert_eq!(
            handle_client_message(r#"{"op":"ping","id":7}"#),
            json!({"type":"pong","id":7})
        );
        assert_eq!(handle_client_message("nope")["type"], "error");
        assert_eq!(handle_client_message(r#"{"op":"x"}"#)["type"], "error");
    }

    #[test]
    fn account_header() {
        let mut h = HeaderMap::new();
        assert_eq!(account_of(&h).unwrap(), "demo");
        h.insert(ACCOUNT_HEADER, "mm".parse().unwrap());
        assert_eq!(account_of(&h).unwrap(), "mm");
        h.insert(ACCOUNT_HEADER, "".parse().unwrap());
        assert!(account_of(&h).is_err());
    }

    #[test]
    fn engine_errors_map_to_statuses() {
        let s = |e: EngineError| ApiError::from(e).status;
        assert_eq!(s(EngineError::Invalid("x".into())), StatusCode::BAD_REQUEST);
        assert_eq!(
            s(EngineError::InsufficientBalance("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            s(EngineError::UnknownAccount("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            s(EngineError::OrderNotFound("1".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            s(EngineError::DuplicateClientOrderId("c".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::from(EngineError::InsufficientBalance("x".into())).code,
            "insufficient_balance"
        );
    }
}
