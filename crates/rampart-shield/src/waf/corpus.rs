//! The demo exchange's routes and schemas, and the generator that turns the
//! team's corpora (`corpus/attacks.jsonl`, `corpus/benign.jsonl` in this
//! crate) into concrete requests, for the corpus test, the fuzz target and
//! the HTTP benchmark (`examples/corpus.rs` prints them as JSON lines).
//!
//! # Attack corpus
//!
//! One JSON object per line: `{"category": …, "payload": …, "note": …}`.
//! A string payload is placed, one request per placement, in every string
//! field of every demo route's JSON body, in every path param, in every
//! declared query param, in an extra undeclared query param `x`, and (when
//! it is a valid header value: printable ASCII) in `User-Agent`; generated
//! strings (`repeat`, `nest`) are not placed in headers, whose size is the
//! HTTP layer's business. A
//! non-string JSON payload (type confusion) is placed in every body field.
//! Objects with a `"$marker"` member are expanded:
//!
//! - `{"$marker": "repeat", "unit": S, "times": N}`: the string `S` × `N`,
//!   placed like a string (cut to [`MAX_URL_PAYLOAD`] bytes in URLs and
//!   headers);
//! - `{"$marker": "nest", "open": O, "close": C, "depth": N, "inner": I}`:
//!   the JSON text `O`×N `I` `C`×N as a body field's value, and as a string
//!   elsewhere;
//! - `{"$marker": "wide", "fields": N}`: an object of `N` members as a body
//!   field's value, and `N` extra query params;
//! - `{"$marker": "headers", "headers": [[name, value], …]}`: these header
//!   lines added to each route's valid request;
//! - `{"$marker": "duplicate-field"}`: each body field, and each declared
//!   query param, sent twice;
//! - `{"$marker": "raw-body", "text": T}`: each route's request with body
//!   `T` (as `application/json`).
//!
//! # Benign corpus
//!
//! One request per line: `{"method", "path", "query", "headers", "body"}`
//! with the path and query as sent (already encoded), headers as an object
//! and the body as a JSON value (or `null`).

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::{Inspector, Request, RouteSchema, SchemaError, Violation};

/// Longest payload placed in a path, a query or a header (URL and header
/// limits of real servers are about 8 KiB).
pub const MAX_URL_PAYLOAD: usize = 16 * 1024;

/// One route of the demo exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoRoute {
    /// The action name (also the schema's file name).
    pub action: &'static str,
    /// The method.
    pub method: &'static str,
    /// The path template, params in braces.
    pub template: &'static str,
    /// The route schema document (`corpus/schemas/<action>.json`).
    pub schema: &'static str,
}

/// Every route of the demo exchange with its schema document.
pub const DEMO_ROUTES: &[DemoRoute] = &[
    DemoRoute {
        action: "GetTime",
        method: "GET",
        template: "/v1/time",
        schema: include_str!("../../corpus/schemas/GetTime.json"),
    },
    DemoRoute {
        action: "ListMarkets",
        method: "GET",
        template: "/v1/markets",
        schema: include_str!("../../corpus/schemas/ListMarkets.json"),
    },
    DemoRoute {
        action: "GetBook",
        method: "GET",
        template: "/v1/markets/{symbol}/book",
        schema: include_str!("../../corpus/schemas/GetBook.json"),
    },
    DemoRoute {
        action: "GetAccount",
        method: "GET",
        template: "/v1/account",
        schema: include_str!("../../corpus/schemas/GetAccount.json"),
    },
    DemoRoute {
        action: "ListOrders",
        method: "GET",
        template: "/v1/orders",
        schema: include_str!("../../corpus/schemas/ListOrders.json"),
    },
    DemoRoute {
        action: "PlaceOrder",
        method: "POST",
        template: "/v1/orders",
        schema: include_str!("../../corpus/schemas/PlaceOrder.json"),
    },
    DemoRoute {
        action: "CancelOrder",
        method: "DELETE",
        template: "/v1/orders/{order_id}",
        schema: include_str!("../../corpus/schemas/CancelOrder.json"),
    },
    DemoRoute {
        action: "Withdraw",
        method: "POST",
        template: "/v1/withdrawals",
        schema: include_str!("../../corpus/schemas/Withdraw.json"),
    },
    DemoRoute {
        action: "Stream",
        method: "GET",
        template: "/v1/stream",
        schema: include_str!("../../corpus/schemas/Stream.json"),
    },
];

/// Compiles every demo route's schema, in [`DEMO_ROUTES`] order.
///
/// # Errors
///
/// The first schema that does not compile.
pub fn demo_schemas() -> Result<Vec<(&'static str, RouteSchema)>, SchemaError> {
    DEMO_ROUTES
        .iter()
        .map(|r| RouteSchema::from_json_str(r.schema).map(|s| (r.action, s)))
        .collect()
}

/// The demo route for `method` and a raw `path`, with its raw path params.
#[must_use]
pub fn match_route(
    method: &str,
    path: &str,
) -> Option<(&'static DemoRoute, Vec<(String, String)>)> {
    DEMO_ROUTES.iter().find_map(|r| {
        if r.method != method {
            return None;
        }
        let mut params = Vec::new();
        let mut have = path.split('/');
        for want in r.template.split('/') {
            let seg = have.next()?;
            match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                Some(name) if !seg.is_empty() => params.push((name.to_owned(), seg.to_owned())),
                Some(_) => return None,
                None if want == seg => {}
                None => return None,
            }
        }
        have.next().is_none().then_some((r, params))
    })
}

/// A corpus file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corpus line {line}: {message}")]
pub struct CorpusError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One line of the attack corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Attack {
    /// `sqli`, `xss`, `cmdi`, `traversal`, `crlf`, `smuggling`, …
    pub category: String,
    /// A string, a JSON value, or a `$marker` object.
    pub payload: Value,
    /// What the payload is.
    pub note: String,
}

/// Reads the attack corpus (blank lines are skipped).
///
/// # Errors
///
/// A line that is not an object with a string `category`.
pub fn parse_attacks(jsonl: &str) -> Result<Vec<Attack>, CorpusError> {
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| CorpusError {
            line: i + 1,
            message,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
        let category = v
            .get("category")
            .and_then(Value::as_str)
            .ok_or_else(|| err("missing `category`".into()))?;
        let payload = v
            .get("payload")
            .ok_or_else(|| err("missing `payload`".into()))?;
        out.push(Attack {
            category: category.to_owned(),
            payload: payload.clone(),
            note: v
                .get("note")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        });
    }
    Ok(out)
}

/// Attack or benign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// From the attack corpus: must be refused.
    Attack,
    /// From the benign corpus: must pass.
    Benign,
}

/// A concrete request from a corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusRequest {
    /// Attack or benign.
    pub kind: Kind,
    /// The attack category, or the action for a benign request.
    pub category: String,
    /// The attack's note (empty for benign requests).
    pub note: String,
    /// The demo route's action.
    pub action: &'static str,
    /// Where the payload is (`/body/memo`, `/query/x`, `/headers`, …);
    /// `""` for a benign request.
    pub placement: String,
    /// The method.
    pub method: String,
    /// The path, percent-encoded, params substituted.
    pub path: String,
    /// The path params as the router gives them (raw, percent-encoded).
    pub params: Vec<(String, String)>,
    /// The query string, percent-encoded, without `?`.
    pub query: Option<String>,
    /// Header lines (lower-case names, raw values), in order; framing
    /// headers only where the payload sets them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl CorpusRequest {
    /// The `Content-Type` header, if any.
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Whether the payload sits in a free-text field (`/body/note`,
    /// `/body/memo`), where only the negative model can stop it.
    #[must_use]
    pub fn free_text(&self) -> bool {
        matches!(self.placement.as_str(), "/body/note" | "/body/memo")
    }

    /// Whether an ordinary HTTP client can send this request as it is: no
    /// framing headers of its own, no repeated `Host`, header names that
    /// are tokens and values of printable ASCII.
    #[must_use]
    pub fn transport_safe(&self) -> bool {
        let mut hosts = 0;
        self.headers.iter().all(|(name, value)| {
            let framing = name.contains("content-length")
                || name.contains("content_length")
                || name.contains("transfer-encoding")
                || name.contains("transfer_encoding");
            if name == "host" {
                hosts += 1;
            }
            !framing
                && hosts <= 1
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                && value
                    .iter()
                    .all(|&b| (b' '..=b'~').contains(&b) || b == b'\t')
        })
    }

    /// Runs the request through `inspector`, as the gateway would see it
    /// (with `Host` and, for a body, `Content-Length` added when the
    /// request does not set its own framing).
    ///
    /// # Errors
    ///
    /// The inspector's [`Violation`].
    pub fn inspect(
        &self,
        inspector: &Inspector,
        schema: Option<&RouteSchema>,
    ) -> Result<(), Violation> {
        let params: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let length = self.body.len().to_string();
        let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(self.headers.len() + 2);
        let has = |n: &str| self.headers.iter().any(|(h, _)| h == n);
        if !has("host") {
            headers.push(("host", b"127.0.0.1:8443"));
        }
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        if !self.body.is_empty() && !has("content-length") && !has("transfer-encoding") {
            headers.push(("content-length", length.as_bytes()));
        }
        let req = Request {
            method: &self.method,
            path: &self.path,
            params: &params,
            query: self.query.as_deref(),
            headers: &headers,
            content_type: self.content_type(),
            body: &self.body,
        };
        inspector.inspect(schema, &req)
    }

    /// The request as one JSON object, for `examples/corpus.rs`:
    /// `{"kind", "category", "note", "action", "placement", "method", "path",
    /// "query", "headers" (an object; repeated names joined with ", "),
    /// "raw_headers" (the lines in order), "body" (a string or null),
    /// "transport_safe"}`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            let value = String::from_utf8_lossy(value).into_owned();
            let merged = match headers.get(name).and_then(Value::as_str) {
                Some(prev) => format!("{prev}, {value}"),
                None => value,
            };
            headers.insert(name.clone(), Value::String(merged));
        }
        let raw: Vec<Value> = self
            .headers
            .iter()
            .map(|(n, v)| json!([n, String::from_utf8_lossy(v)]))
            .collect();
        json!({
            "kind": match self.kind { Kind::Attack => "attack", Kind::Benign => "benign" },
            "category": self.category,
            "note": self.note,
            "action": self.action,
            "placement": self.placement,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": headers,
            "raw_headers": raw,
            "body": if self.body.is_empty() { Value::Null } else { Value::String(String::from_utf8_lossy(&self.body).into_owned()) },
            "transport_safe": self.transport_safe(),
        })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
#[must_use]
pub fn pct_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

type Pairs = &'static [(&'static str, &'static str)];

/// A demo route's valid request, the base every payload is placed into.
struct Base {
    route: &'static DemoRoute,
    params: Pairs,
    query: Pairs,
    body: Option<Pairs>,
}

fn bases() -> Vec<Base> {
    let route = |a: &str| DEMO_ROUTES.iter().find(|r| r.action == a);
    let mut out = Vec::new();
    let specs: [(&str, Pairs, Pairs, Option<Pairs>); 9] = [
        ("GetTime", &[], &[], None),
        ("ListMarkets", &[], &[], None),
        (
            "GetBook",
            &[("symbol", "BTC-USD")],
            &[("depth", "10")],
            None,
        ),
        ("GetAccount", &[], &[], None),
        ("ListOrders", &[], &[("symbol", "BTC-USD")], None),
        (
            "PlaceOrder",
            &[],
            &[],
            Some(&[
                ("symbol", "BTC-USD"),
                ("side", "buy"),
                ("type", "limit"),
                ("qty", "0.5"),
                ("price", "65000.00"),
                ("client_order_id", "abc-123"),
                ("time_in_force", "gtc"),
                ("note", "rebalance"),
            ]),
        ),
        ("CancelOrder", &[("order_id", "42")], &[], None),
        (
            "Withdraw",
            &[],
            &[],
            Some(&[
                ("asset", "BTC"),
                ("amount", "0.1"),
                ("address", "bc1qdemo0rampart0allowlisted0address0000000"),
                ("memo", "monthly"),
            ]),
        ),
        ("Stream", &[], &[], None),
    ];
    for (action, params, query, body) in specs {
        if let Some(route) = route(action) {
            out.push(Base {
                route,
                params,
                query,
                body,
            });
        }
    }
    out
}

/// A payload ready for placing.
enum Payload {
    /// Text placed as a string.
    Text(String),
    /// JSON text for a body field; `text` is what goes elsewhere (if
    /// anywhere).
    Json {
        json: String,
        text: Option<String>,
    },
    /// An object of `n` members / `n` query params.
    Wide(usize),
    Headers(Vec<(String, Vec<u8>)>),
    DuplicateField,
    RawBody(String),
}

fn payload(v: &Value) -> Option<Payload> {
    let Some(marker) = v.get("$marker").and_then(Value::as_str) else {
        return Some(match v {
            Value::String(s) => Payload::Text(s.clone()),
            other => Payload::Json {
                json: other.to_string(),
                text: None,
            },
        });
    };
    let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let num_of = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
    };
    Some(match marker {
        "repeat" => Payload::Text(str_of("unit").repeat(num_of("times"))),
        "nest" => {
            let depth = num_of("depth");
            let mut s =
                String::with_capacity(depth * (str_of("open").len() + str_of("close").len()) + 8);
            for _ in 0..depth {
                s.push_str(str_of("open"));
            }
            s.push_str(str_of("inner"));
            for _ in 0..depth {
                s.push_str(str_of("close"));
            }
            Payload::Json {
                text: Some(s.clone()),
                json: s,
            }
        }
        "wide" => Payload::Wide(num_of("fields")),
        "headers" => Payload::Headers(
            v.get("headers")?
                .as_array()?
                .iter()
                .filter_map(|pair| {
                    let name = pair.get(0)?.as_str()?;
                    let value = pair.get(1)?.as_str()?;
                    Some((name.to_owned(), value.as_bytes().to_vec()))
                })
                .collect(),
        ),
        "duplicate-field" => Payload::DuplicateField,
        "raw-body" => Payload::RawBody(str_of("text").to_owned()),
        _ => return None,
    })
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_URL_PAYLOAD {
        return s;
    }
    let mut end = MAX_URL_PAYLOAD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

struct Builder<'a> {
    base: &'a Base,
    attack: &'a Attack,
}

impl Builder<'_> {
    fn request(
        &self,
        placement: String,
        params: &[(&str, String)],
        query: Option<String>,
        extra_headers: Vec<(String, Vec<u8>)>,
        user_agent: Option<&str>,
        body: Option<String>,
    ) -> CorpusRequest {
        let mut path = String::new();
        let mut raw_params = Vec::new();
        for (i, seg) in self.base.route.template.split('/').enumerate() {
            if i > 0 {
                path.push('/');
            }
            match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let value = params
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    path.push_str(&value);
                    raw_params.push((name.to_owned(), value));
                }
                None => path.push_str(seg),
            }
        }
        let mut headers = vec![(
            "user-agent".to_owned(),
            user_agent
                .unwrap_or("rampart-corpus/1.0")
                .as_bytes()
                .to_vec(),
        )];
        if body.is_some() {
            headers.push(("content-type".to_owned(), b"application/json".to_vec()));
        }
        headers.extend(extra_headers);
        CorpusRequest {
            kind: Kind::Attack,
            category: self.attack.category.clone(),
            note: self.attack.note.clone(),
            action: self.base.route.action,
            placement,
            method: self.base.route.method.to_owned(),
            path,
            params: raw_params,
            query,
            headers,
            body: body.map(String::into_bytes).unwrap_or_default(),
        }
    }

    fn base_params(&self) -> Vec<(&'static str, String)> {
        self.base
            .params
            .iter()
            .map(|(n, v)| (*n, pct_encode(v.as_bytes())))
            .collect()
    }

    fn query_with(&self, replace: Option<(&str, &str)>, extra: Option<&str>) -> Option<String> {
        let mut parts: Vec<String> = self
            .base
            .query
            .iter()
            .map(|(n, v)| match replace {
                Some((r, val)) if r == *n => format!("{n}={}", pct_encode(val.as_bytes())),
                _ => format!("{n}={}", pct_encode(v.as_bytes())),
            })
            .collect();
        if let Some(x) = extra {
            parts.push(x.to_owned());
        }
        (!parts.is_empty()).then(|| parts.join("&"))
    }

    fn base_query(&self) -> Option<String> {
        self.query_with(None, None)
    }

    /// The base body with `field`'s value replaced by raw JSON text.
    fn body_with(&self, field: Option<&str>, raw: &str) -> Option<String> {
        let fields = self.base.body?;
        let mut out = String::from("{");
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_str(name));
            out.push(':');
            if Some(*name) == field {
                out.push_str(raw);
            } else {
                out.push_str(&json_str(value));
            }
        }
        out.push('}');
        Some(out)
    }

    fn base_body(&self) -> Option<String> {
        self.body_with(None, "")
    }

    fn expand(&self, out: &mut Vec<CorpusRequest>) {
        let Some(p) = payload(&self.attack.payload) else {
            return;
        };
        match p {
            Payload::Text(text) => {
                self.place_json(&json_str(&text), out);
                let literal = self.attack.payload.is_string();
                self.place_text(&text, literal, out);
            }
            Payload::Json { json, text } => {
                self.place_json(&json, out);
                if let Some(text) = text {
                    self.place_text(&text, false, out);
                }
            }
            Payload::Wide(n) => {
                let mut obj = String::from("{");
                for i in 0..n {
                    if i > 0 {
                        obj.push(',');
                    }
                    let _ = write!(obj, "\"k{i}\":0");
                }
                obj.push('}');
                self.place_json(&obj, out);
                let extra: Vec<String> = (0..n).map(|i| format!("k{i}=1")).collect();
                let q = self.query_with(None, Some(&extra.join("&")));
                out.push(self.request(
                    "/query".into(),
                    &self.base_params(),
                    q,
                    Vec::new(),
                    None,
                    self.base_body(),
                ));
            }
            Payload::Headers(headers) => {
                out.push(self.request(
                    "/headers".into(),
                    &self.base_params(),
                    self.base_query(),
                    headers,
                    None,
                    self.base_body(),
                ));
            }
            Payload::DuplicateField => {
                if let Some(fields) = self.base.body {
                    for (name, value) in fields {
                        let raw = format!("{},{}:\"1000000\"", json_str(value), json_str(name));
                        out.push(self.request(
                            format!("/body/{name}"),
                            &self.base_params(),
                            self.base_query(),
                            Vec::new(),
                            None,
                            self.body_with(Some(name), &raw),
                        ));
                    }
                }
                for (name, value) in self.base.query {
                    let dup = format!("{name}={}", pct_encode(value.as_bytes()));
                    out.push(self.request(
                        format!("/query/{name}"),
                        &self.base_params(),
                        self.query_with(None, Some(&dup)),
                        Vec::new(),
                        None,
                        self.base_body(),
                    ));
                }
            }
            Payload::RawBody(text) => {
                out.push(self.request(
                    "/body".into(),
                    &self.base_params(),
                    self.base_query(),
                    Vec::new(),
                    None,
                    Some(text),
                ));
            }
        }
    }

    /// A JSON value into every body field.
    fn place_json(&self, raw: &str, out: &mut Vec<CorpusRequest>) {
        let Some(fields) = self.base.body else {
            return;
        };
        for (name, _) in fields {
            out.push(self.request(
                format!("/body/{name}"),
                &self.base_params(),
                self.base_query(),
                Vec::new(),
                None,
                self.body_with(Some(name), raw),
            ));
        }
    }

    /// A string into every param, every declared query param, an extra
    /// query param and (for a literal payload) the user agent.
    fn place_text(&self, text: &str, in_header: bool, out: &mut Vec<CorpusRequest>) {
        let short = cut(text);
        let encoded = pct_encode(short.as_bytes());
        for (name, _) in self.base.params {
            let params: Vec<(&str, String)> = self
                .base
                .params
                .iter()
                .map(|(n, v)| {
                    if n == name {
                        (*n, encoded.clone())
                    } else {
                        (*n, pct_encode(v.as_bytes()))
                    }
                })
                .collect();
            out.push(self.request(
                format!("/params/{name}"),
                &params,
                self.base_query(),
                Vec::new(),
                None,
                self.base_body(),
            ));
        }
        for (name, _) in self.base.query {
            out.push(self.request(
                format!("/query/{name}"),
                &self.base_params(),
                self.query_with(Some((name, short)), None),
                Vec::new(),
                None,
                self.base_body(),
            ));
        }
        out.push(self.request(
            "/query/x".into(),
            &self.base_params(),
            self.query_with(None, Some(&format!("x={encoded}"))),
            Vec::new(),
            None,
            self.base_body(),
        ));
        if in_header && !short.is_empty() && short.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            out.push(self.request(
                "/headers/user-agent".into(),
                &self.base_params(),
                self.base_query(),
                Vec::new(),
                Some(short),
                self.base_body(),
            ));
        }
    }
}

/// Places every attack in every applicable position of every demo route.
#[must_use]
pub fn expand_attacks(attacks: &[Attack]) -> Vec<CorpusRequest> {
    let bases = bases();
    let mut out = Vec::new();
    for attack in attacks {
        for base in &bases {
            Builder { base, attack }.expand(&mut out);
        }
    }
    out
}

/// The valid request of each demo route, as the generator builds it (a
/// check that the bases themselves pass).
#[must_use]
pub fn base_requests() -> Vec<CorpusRequest> {
    let attack = Attack {
        category: "base".into(),
        payload: Value::Null,
        note: String::new(),
    };
    bases()
        .iter()
        .map(|base| {
            let b = Builder {
                base,
                attack: &attack,
            };
            let mut r = b.request(
                String::new(),
                &b.base_params(),
                b.base_query(),
                Vec::new(),
                None,
                b.base_body(),
            );
            r.kind = Kind::Benign;
            r
        })
        .collect()
}

/// Reads the benign corpus.
///
/// # Errors
///
/// A line that is not a request of a demo route.
pub fn parse_benign(jsonl: &str) -> Result<Vec<CorpusRequest>, CorpusError> {
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| CorpusError {
            line: i + 1,
            message,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
        let method = v
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| err("missing `method`".into()))?;
        let path = v
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| err("missing `path`".into()))?;
        let (route, params) = match_route(method, path)
            .ok_or_else(|| err(format!("no demo route for {method} {path}")))?;
        let headers = match v.get("headers") {
            Some(Value::Object(h)) => h
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_ascii_lowercase(),
                        v.as_str().unwrap_or("").as_bytes().to_vec(),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        let body = match v.get("body") {
            None | Some(Value::Null) => Vec::new(),
            Some(b) => b.to_string().into_bytes(),
        };
        out.push(CorpusRequest {
            kind: Kind::Benign,
            category: route.action.to_owned(),
            note: String::new(),
            action: route.action,
            placement: String::new(),
            method: method.to_owned(),
            path: path.to_owned(),
            params,
            query: v.get("query").and_then(Value::as_str).map(str::to_owned),
            headers,
            body,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_schemas_compile() {
        let schemas = demo_schemas().unwrap();
        assert_eq!(schemas.len(), DEMO_ROUTES.len());
    }

    #[test]
    fn routes_match() {
        let (r, p) = match_route("GET", "/v1/markets/BTC-USD/book").unwrap();
        assert_eq!(r.action, "GetBook");
        assert_eq!(p, [("symbol".to_owned(), "BTC-USD".to_owned())]);
        assert_eq!(
            match_route("DELETE", "/v1/orders/42").unwrap().0.action,
            "CancelOrder"
        );
        assert_eq!(
            match_route("POST", "/v1/orders").unwrap().0.action,
            "PlaceOrder"
        );
        assert!(match_route("GET", "/v1/markets//book").is_none());
        assert!(match_route("GET", "/v1/time/x").is_none());
        assert!(match_route("PUT", "/v1/time").is_none());
    }

    #[test]
    fn base_requests_pass() {
        let inspector = Inspector::default();
        let schemas = demo_schemas().unwrap();
        for r in base_requests() {
            let schema = schemas.iter().find(|(a, _)| *a == r.action).map(|(_, s)| s);
            assert_eq!(r.inspect(&inspector, schema), Ok(()), "{}", r.to_json());
            assert_eq!(r.inspect(&inspector, None), Ok(()), "{}", r.to_json());
        }
    }

    #[test]
    fn expansion_places_payloads() {
        let attacks = parse_attacks(
            r#"{"category":"sqli","payload":"' OR 1=1--","note":"t"}
{"category":"smuggling","payload":{"$marker":"headers","headers":[["content-length","1"],["transfer-encoding","chunked"]]},"note":"t"}"#,
        )
        .unwrap();
        let reqs = expand_attacks(&attacks);
        let placements: Vec<&str> = reqs.iter().map(|r| r.placement.as_str()).collect();
        for p in [
            "/body/note",
            "/body/memo",
            "/params/symbol",
            "/query/depth",
            "/query/x",
            "/headers/user-agent",
            "/headers",
        ] {
            assert!(placements.contains(&p), "{p}");
        }
        let book = reqs
            .iter()
            .find(|r| r.placement == "/params/symbol")
            .unwrap();
        assert_eq!(book.path, "/v1/markets/%27%20OR%201%3D1--/book");
        assert!(reqs
            .iter()
            .filter(|r| r.placement == "/headers")
            .all(|r| !r.transport_safe()));
    }
}
