//! The inspector: header hygiene, limits, positive model, negative model,
//! in that order (see the [module docs](super)).

use std::borrow::Cow;

use super::detect::{self, Hit};
use super::headers;
use super::json::{self, ParseLimits, Value};
use super::pointer;
use super::query::{self, Pair};
use super::schema::{Node, RouteSchema};
use super::{Limits, Request, Violation};

/// Checks requests against route schemas and the injection detectors.
///
/// Build one at start-up and share it (it is `Send + Sync` and holds no
/// per-request state).
#[derive(Debug, Clone, Default)]
pub struct Inspector {
    limits: Limits,
}

/// A step on the way to a value inside a body, for building its pointer
/// only when something is found there.
#[derive(Debug, Clone, Copy)]
enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

fn blocked(hit: Hit, location: String) -> Violation {
    Violation::Blocked {
        rule: hit.rule,
        location,
        detail: hit.reason.to_owned(),
    }
}

fn is_json_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

fn is_form_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

impl Inspector {
    /// An inspector enforcing `limits`.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            max_depth: self.limits.max_depth,
            max_fields: self.limits.max_fields,
            max_string_bytes: self.limits.max_string_bytes,
        }
    }

    /// Checks one request: header hygiene and size limits, then the
    /// positive model when `schema` is given, then the negative model on
    /// every string that got through (all of them when `schema` is `None`).
    ///
    /// # Errors
    ///
    /// The first [`Violation`] found.
    pub fn inspect(
        &self,
        schema: Option<&RouteSchema>,
        req: &Request<'_>,
    ) -> Result<(), Violation> {
        self.inspect_with(schema, req, &[])
    }

    /// [`Self::inspect`] for a request whose credential scheme adds its own
    /// parameters to the query or the JSON body (Binance-style
    /// `timestamp` / `recvWindow` / `signature`, Kraken-style `nonce`):
    /// query params and top-level body members named in `credential_params`
    /// are left out of the positive model — the route's schema describes
    /// the application's fields, not the signing scheme's — but still go
    /// through the negative model like every other value.
    ///
    /// # Errors
    ///
    /// The first [`Violation`] found.
    pub fn inspect_with(
        &self,
        schema: Option<&RouteSchema>,
        req: &Request<'_>,
        credential_params: &[&str],
    ) -> Result<(), Violation> {
        let limits = &self.limits;
        if let Some(h) = headers::check(req.headers) {
            return Err(Violation::Blocked {
                rule: h.rule,
                location: pointer::join("/headers", &h.header),
                detail: h.reason.to_owned(),
            });
        }
        if let Some((name, _)) = req
            .headers
            .iter()
            .find(|(_, v)| v.len() > limits.max_header_bytes)
        {
            return Err(Violation::invalid(
                pointer::join("/headers", name),
                format!("is longer than {} bytes", limits.max_header_bytes),
            ));
        }
        if req.body.len() > limits.max_body_bytes {
            return Err(Violation::invalid(
                "/body",
                format!("is larger than {} bytes", limits.max_body_bytes),
            ));
        }
        let raw_query = req.query.unwrap_or("");
        if raw_query.len() > limits.max_query_bytes {
            return Err(Violation::invalid(
                "/query",
                format!("is longer than {} bytes", limits.max_query_bytes),
            ));
        }
        let params = query::decode_params(req.params, limits.max_string_bytes)?;
        let pairs = query::parse_query(
            raw_query,
            "/query",
            limits.max_fields,
            limits.max_string_bytes,
        )?;

        let body = match schema {
            Some(schema) => {
                check_pairs(schema.params(), &params, "/params")?;
                if credential_params.is_empty() {
                    check_pairs(schema.query(), &pairs, "/query")?;
                } else {
                    let app: Vec<Pair<'_>> = pairs
                        .iter()
                        .filter(|(k, _)| !credential_params.contains(&k.as_ref()))
                        .cloned()
                        .collect();
                    check_pairs(schema.query(), &app, "/query")?;
                }
                self.positive_body(schema.body(), req, credential_params)?
            }
            None => self.free_body(req)?,
        };

        // Negative model.
        for (name, value) in &params {
            self.scan(value, || pointer::join("/params", name))?;
        }
        if let Some(hit) = scan_path(req.path, limits.max_decode_rounds) {
            return Err(blocked(hit, "/path".to_owned()));
        }
        for (name, value) in &pairs {
            let at = || pointer::join("/query", name);
            self.scan(name, at)?;
            self.scan(value, at)?;
        }
        match &body {
            Body::None => {}
            Body::Json(v) => {
                let mut path = Vec::new();
                self.scan_tree(v, &mut path)?;
            }
            Body::Form(form) => {
                for (name, value) in form {
                    let at = || pointer::join("/body", name);
                    self.scan(name, at)?;
                    self.scan(value, at)?;
                }
            }
            Body::Text(text) => {
                if let Some(hit) = detect::scan_injections(text, limits.max_decode_rounds) {
                    return Err(blocked(hit, "/body".to_owned()));
                }
            }
        }
        self.scan_headers(req.headers)
    }

    fn positive_body<'r>(
        &self,
        node: Option<&Node>,
        req: &Request<'r>,
        credential_params: &[&str],
    ) -> Result<Body<'r>, Violation> {
        let Some(node) = node else {
            if req.body.is_empty() {
                return Ok(Body::None);
            }
            return Err(Violation::invalid("/body", "this route takes no body"));
        };
        if let Some(ct) = req.content_type {
            if !is_json_type(ct) {
                return Err(Violation::invalid(
                    "/headers/content-type",
                    "must be application/json",
                ));
            }
        }
        if req.body.is_empty() {
            return Err(Violation::invalid("/body", "is required"));
        }
        let value = self.parse_json(req.body)?;
        let app;
        let checked = match &value {
            Value::Object(members)
                if members
                    .iter()
                    .any(|(k, _)| credential_params.contains(&k.as_ref())) =>
            {
                app = Value::Object(
                    members
                        .iter()
                        .filter(|(k, _)| !credential_params.contains(&k.as_ref()))
                        .cloned()
                        .collect(),
                );
                &app
            }
            _ => &value,
        };
        node.validate(checked, false)
            .map_err(|f| Violation::Invalid {
                pointer: pointer::from_rev("/body", &f.path),
                message: f.message,
            })?;
        Ok(Body::Json(value))
    }

    fn parse_json<'r>(&self, body: &'r [u8]) -> Result<Value<'r>, Violation> {
        json::parse(body, self.parse_limits()).map_err(|e| Violation::Invalid {
            pointer: pointer::from_rev("/body", &e.path),
            message: e.message,
        })
    }

    /// Without a schema the body is read by its content type: JSON (also
    /// when untyped and it starts like JSON), a form, or text.
    fn free_body<'r>(&self, req: &Request<'r>) -> Result<Body<'r>, Violation> {
        let body = req.body;
        if body.is_empty() {
            return Ok(Body::None);
        }
        let looks_json = || {
            body.iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'{' || b == b'[')
        };
        match req.content_type {
            Some(ct) if is_json_type(ct) => self.parse_json(body).map(Body::Json),
            None if looks_json() => self.parse_json(body).map(Body::Json),
            Some(ct) if is_form_type(ct) => {
                let text = std::str::from_utf8(body)
                    .map_err(|_| Violation::invalid("/body", "is not valid UTF-8"))?;
                query::parse_query(
                    text,
                    "/body",
                    self.limits.max_fields,
                    self.limits.max_string_bytes,
                )
                .map(Body::Form)
            }
            _ => Ok(Body::Text(String::from_utf8_lossy(body))),
        }
    }

    fn scan(&self, value: &str, at: impl Fn() -> String) -> Result<(), Violation> {
        match detect::scan(value, self.limits.max_decode_rounds) {
            Some(hit) => Err(blocked(hit, at())),
            None => Ok(()),
        }
    }

    fn scan_tree<'v>(&self, v: &'v Value<'_>, path: &mut Vec<Step<'v>>) -> Result<(), Violation> {
        match v {
            Value::String(s) => self.scan(s, || body_pointer(path)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    self.scan_tree(item, path)?;
                    path.pop();
                }
                Ok(())
            }
            Value::Object(members) => {
                for (key, value) in members {
                    path.push(Step::Key(key));
                    self.scan(key, || body_pointer(path))?;
                    self.scan_tree(value, path)?;
                    path.pop();
                }
                Ok(())
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }

    fn scan_headers(&self, headers: &[(&str, &[u8])]) -> Result<(), Violation> {
        let rounds = self.limits.max_decode_rounds;
        for &(name, value) in headers {
            let Some(&known) = headers::SCANNED
                .iter()
                .find(|s| s.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            let text = String::from_utf8_lossy(value);
            let at = || pointer::join("/headers", known);
            if known == "user-agent" {
                let folded = super::normalize::normalize(&text, rounds);
                if let Some(reason) = detect::cmdi::scanner_agent(&folded) {
                    return Err(blocked(
                        Hit {
                            rule: "scanner",
                            reason,
                        },
                        at(),
                    ));
                }
            }
            if known == "cookie" {
                for pair in text.split(';') {
                    let (k, v) = pair.split_once('=').unwrap_or(("", pair));
                    self.scan(k.trim(), at)?;
                    self.scan(v.trim().trim_matches('"'), at)?;
                }
            } else {
                self.scan(&text, at)?;
            }
        }
        Ok(())
    }
}

/// The path gets the control checks and traversal only: its params are
/// scanned in full on their own.
fn scan_path(path: &str, rounds: usize) -> Option<Hit> {
    if let Some(hit) = detect::controls(path) {
        return Some(hit);
    }
    let decoded = super::normalize::decode(path, rounds);
    if let Some(hit) = detect::controls(&decoded) {
        return Some(hit);
    }
    let folded = super::normalize::fold(decoded);
    detect::traversal::detect(&folded).map(|reason| Hit {
        rule: "path-traversal",
        reason,
    })
}

fn body_pointer(path: &[Step<'_>]) -> String {
    let mut out = String::from("/body");
    for step in path {
        match step {
            Step::Key(k) => pointer::push_token(&mut out, k),
            Step::Index(i) => {
                use std::fmt::Write as _;
                let _ = write!(out, "/{i}");
            }
        }
    }
    out
}

/// A body after the positive model (or parsed without one).
enum Body<'r> {
    None,
    Json(Value<'r>),
    Form(Vec<Pair<'r>>),
    Text(Cow<'r, str>),
}

/// The first name that appears twice.
fn repeated<'p>(pairs: &'p [Pair<'_>]) -> Option<&'p str> {
    if pairs.len() <= 16 {
        return pairs.iter().enumerate().find_map(|(i, (name, _))| {
            pairs
                .iter()
                .skip(i + 1)
                .any(|(other, _)| other == name)
                .then_some(name.as_ref())
        });
    }
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_ref()).collect();
    names.sort_unstable();
    names.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

/// Validates path params or query params against their schema: a part
/// without a schema takes nothing; a repeated name is refused.
fn check_pairs(node: Option<&Node>, pairs: &[Pair<'_>], prefix: &str) -> Result<(), Violation> {
    let Some(node) = node else {
        return match pairs.first() {
            None => Ok(()),
            Some((name, _)) => Err(Violation::invalid(
                pointer::join(prefix, name),
                "is not allowed",
            )),
        };
    };
    if let Some(name) = repeated(pairs) {
        return Err(Violation::invalid(
            pointer::join(prefix, name),
            "is repeated",
        ));
    }
    let object = Value::Object(
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    Cow::Borrowed(k.as_ref()),
                    Value::String(Cow::Borrowed(v.as_ref())),
                )
            })
            .collect(),
    );
    node.validate(&object, true)
        .map_err(|f| Violation::Invalid {
            pointer: pointer::from_rev(prefix, &f.path),
            message: f.message,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspector_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Inspector>();
        assert_send_sync::<RouteSchema>();
    }
}
