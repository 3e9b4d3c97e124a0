//! Input validation on the request path: each route's positive model (its
//! `schema` file) and the injection detector ([`rampart_shield::waf`]),
//! compiled per config snapshot.
//!
//! The phase runs after the body is buffered and before authentication
//! (DESIGN.md's order): a malformed or hostile request is refused before
//! any key lookup or signature check, and the headers it sees are the
//! client's own, before hop-by-hop headers are removed, so smuggling
//! attempts (`Content-Length` with `Transfer-Encoding`, obs-fold) are
//! still visible.
//!
//! Modes: `block` refuses (`400 VALIDATION_FAILED` with the JSON pointer
//! of the first failing field, or `403 REQUEST_BLOCKED` naming the rule);
//! `detect` forwards the request and writes a `waf.detected` audit record
//! and a warning; `off` skips the phase for the route (schema included).

use std::sync::Arc;

use http::HeaderMap;
use rampart_core::config::{Config, RouteConfig, WafMode};
use rampart_core::problem::{Problem, ProblemCode};
use rampart_shield::waf::{Inspector, Limits, Request, RouteSchema, Violation};

/// The compiled positive models and detector of one snapshot.
#[derive(Debug)]
pub struct Waf {
    inspector: Inspector,
    /// Per route index: (mode, schema). `None` mode = off.
    routes: Vec<(Option<WafMode>, Option<Arc<RouteSchema>>)>,
    /// Mode for the gateway's own endpoints and unrouted requests.
    default: WafMode,
}

/// What the phase decided.
#[derive(Debug)]
pub enum Verdict {
    /// Nothing found (or the phase is off).
    Pass,
    /// Found in detect-only mode: forward, but record.
    Detected(Violation),
    /// Refuse.
    Refuse(Violation),
}

/// Reads and compiles a route's schema file.
fn load_schema(route: &RouteConfig) -> Result<Option<Arc<RouteSchema>>, String> {
    let Some(path) = &route.schema else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "route `{} {}`: cannot read schema `{}`: {e}",
            route.method,
            route.path,
            path.display()
        )
    })?;
    RouteSchema::from_json_str(&text)
        .map(|s| Some(Arc::new(s)))
        .map_err(|e| {
            format!(
                "route `{} {}`: schema `{}`: {e}",
                route.method,
                route.path,
                path.display()
            )
        })
}

impl Waf {
    /// Compiles every route's schema and the detector limits.
    ///
    /// # Errors
    ///
    /// Every unreadable or invalid schema, one line each.
    pub fn compile(cfg: &Config) -> Result<Self, String> {
        let w = &cfg.waf;
        let limits = Limits {
            max_depth: w.max_depth,
            max_string_bytes: w.max_string_bytes,
            max_fields: w.max_fields,
            // The body limit proper is enforced while reading the body.
            max_body_bytes: cfg.server.max_body_bytes,
            max_query_bytes: w.max_query_bytes,
            ..Limits::default()
        };
        let mut errors = Vec::new();
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            let mode = r.waf.unwrap_or(w.mode);
            let schema = match load_schema(r) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(e);
                    None
                }
            };
            routes.push(((mode != WafMode::Off).then_some(mode), schema));
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        Ok(Self {
            inspector: Inspector::new(limits),
            routes,
            default: w.mode,
        })
    }

    /// Runs the phase for `route` (`None`: gateway endpoints) over the
    /// request's raw parts.
    #[must_use]
    #[allow(clippy::too_many_arguments, reason = "the request's raw parts")]
    pub fn check(
        &self,
        route: Option<usize>,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Verdict {
        let (mode, schema) = match route.and_then(|i| self.routes.get(i)) {
            Some((mode, schema)) => (*mode, schema.as_deref()),
            None => (Some(self.default).filter(|m| *m != WafMode::Off), None),
        };
        let Some(mode) = mode else {
            return Verdict::Pass;
        };
        let lines: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let req = Request {
            method,
            path,
            params,
            query,
            headers: &lines,
            content_type,
            body,
        };
        match self
            .inspector
            .inspect_with(schema, &req, credential_params(headers))
        {
            Ok(()) => Verdict::Pass,
            Err(v) if mode == WafMode::Detect => Verdict::Detected(v),
            Err(v) => Verdict::Refuse(v),
        }
    }
}

/// The parameters an exchange-style signing scheme adds to the query or
/// the JSON body, by the scheme's own headers (the same detection as
/// authentication's): they are not part of any route's schema.
fn credential_params(headers: &HeaderMap) -> &'static [&'static str] {
    if headers.contains_key("x-mbx-apikey") {
        &["timestamp", "recvWindow", "signature"]
    } else if headers.contains_key("api-key") && headers.contains_key("api-sign") {
        &["nonce", "otp"]
    } else {
        &[]
    }
}

/// The problem a refusal is answered with. Only the pointer / rule and
/// location reach the client, never the matched value.
#[must_use]
pub fn problem(v: &Violation) -> Problem {
    match v {
        Violation::Invalid { pointer, message } => Problem::new(ProblemCode::ValidationFailed)
            .detail(format!("`{pointer}`: {message}"))
            .with("pointer", pointer.as_str()),
        Violation::Blocked { rule, location, .. } => Problem::new(ProblemCode::RequestBlocked)
            .detail(format!(
                "the request matched the `{rule}` rule at `{location}`"
            ))
            .with("rule", *rule)
            .with("location", location.as_str()),
    }
}

/// Audit and log facts of a violation: (key, value) pairs.
#[must_use]
pub fn notes(v: &Violation) -> Vec<(&'static str, String)> {
    match v {
        Violation::Invalid { pointer, message } => {
            vec![("pointer", pointer.clone()), ("message", message.clone())]
        }
        Violation::Blocked {
            rule,
            location,
            detail,
        } => vec![
            ("rule", (*rule).to_owned()),
            ("location", location.clone()),
            ("match", detail.clone()),
        ],
    }
}
