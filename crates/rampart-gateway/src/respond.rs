//! Building responses: problem+json bodies and the headers every response
//! carries (`X-Request-Id`, `Rampart-Server-Time`).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::Response;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use rampart_core::problem::PROBLEM_CONTENT_TYPE;
use rampart_core::Problem;

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response body: a buffered problem or a streamed upstream body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// `Rampart-Server-Time`.
pub static SERVER_TIME: HeaderName = HeaderName::from_static("rampart-server-time");
/// `X-Request-Id`.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A buffered body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Adds the headers every response carries.
pub fn stamp(resp: &mut Response<Body>, request_id: Option<&str>) {
    let h = resp.headers_mut();
    h.insert(SERVER_TIME.clone(), HeaderValue::from(unix_ms()));
    if let Some(id) = request_id.and_then(|i| HeaderValue::from_str(i).ok()) {
        h.insert(REQUEST_ID.clone(), id);
    }
}

/// Renders a problem as a complete response.
pub fn problem(p: &Problem, request_id: Option<&str>) -> Response<Body> {
    let mut resp = Response::new(full(p.to_json(request_id)));
    *resp.status_mut() = p.status();
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(s) = p.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if p.status() == http::StatusCode::UNAUTHORIZED {
        // RFC 9110 §11.6.1: a 401 names how to authenticate.
        h.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Signature realm=\"rampart\", Bearer realm=\"rampart\""),
        );
    }
    stamp(&mut resp, request_id);
    resp
}

/// Raw HTTP/1.1 bytes of a problem response that closes the connection, for
/// rejections written before hyper owns the connection.
pub fn raw_http1(p: &Problem, request_id: &str) -> Vec<u8> {
    let body = p.to_json(Some(request_id));
    let status = p.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_CONTENT_TYPE}\r\ncontent-length: {}\r\ncache-control: no-store\r\nrampart-server-time: {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        unix_ms()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A JSON response (`no-store`) for the gateway's own endpoints.
pub fn json(status: http::StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(v.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
