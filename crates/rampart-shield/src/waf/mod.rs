//! Input validation: a positive model (one JSON Schema document per route)
//! checked first, then a negative model (normalisation and injection
//! detection) over everything the positive model let through.
//!
//! The gateway builds one [`Inspector`] at start-up, compiles one
//! [`RouteSchema`] per route, and calls [`Inspector::inspect`] with the raw
//! request as received ([`Request`]). The answer is `Ok(())` or a
//! [`Violation`]: [`Violation::Invalid`] (400 `VALIDATION_FAILED`, with the
//! JSON pointer of the first failing field) or [`Violation::Blocked`]
//! (403 `REQUEST_BLOCKED`, naming the rule). Per route, [`Mode`] says whether
//! a violation is enforced or only reported.
//!
//! This module does no I/O, keeps no state between requests and never
//! panics on any input: every limit is checked before or while the input
//! is parsed, and every pass over the input is linear in its size.
//!
//! # Order of checks
//!
//! 1. **Header hygiene** ([`headers`]): request smuggling (both
//!    `Content-Length` and `Transfer-Encoding`, differing `Content-Length`s,
//!    a `Transfer-Encoding` other than exactly `chunked`, header names that
//!    are not tokens or that alias the framing headers with `_`, several
//!    `Host`s, obs-fold), CR / LF (`crlf`), NUL (`null-byte`) and other
//!    control characters (`control-char`) in any header value.
//! 2. **Size limits** ([`Limits`]): body, query, header values, nesting
//!    depth, number of fields, length of any one string. They hold with and without a
//!    schema, and they are enforced while parsing: a 1 MB `[[[[…` body is
//!    refused at depth [`Limits::max_depth`] without building anything.
//! 3. **Positive model** (when the route has a [`RouteSchema`]): path
//!    params, then query, then body, each against its schema; the first
//!    failure is reported with its pointer (`/params/order_id`,
//!    `/query/depth`, `/body/qty`).
//! 4. **Negative model** on every string that got this far: the raw path,
//!    each path param, each query key and value, every key and string of a
//!    JSON body (every string of the body when there is no schema, and the
//!    raw text of a non-JSON body), and the values of the headers in
//!    [`headers::SCANNED`].
//!
//! # Route schema documents
//!
//! One JSON document per route, every member optional:
//!
//! ```json
//! {"params": {…}, "query": {…}, "body": {…}}
//! ```
//!
//! - `params` is a JSON Schema for the object of path params (name → value,
//!   percent-decoded once; `+` stays `+`). Without it the route takes no
//!   path params.
//! - `query` is a JSON Schema for the object of query params (percent-
//!   decoded once, `+` is a space). A key repeated in the query string is
//!   refused (`VALIDATION_FAILED`): parsers disagree on whether the first,
//!   the last or all values win (HTTP parameter pollution), and no demo
//!   route takes a list. Without `query` the route takes no query string.
//! - `body` is a JSON Schema for the JSON body. The body must then be
//!   present, valid UTF-8, valid JSON with no duplicate object keys, and
//!   the `Content-Type` must be absent, `application/json` or
//!   `application/*+json`. Without `body` the route takes only an empty
//!   body.
//!
//! Param and query values are strings on the wire. Where the property's
//! schema does not allow a string but allows `integer`, `number` or
//! `boolean`, the value is read as one strictly (`^-?[0-9]+$` for an
//! integer, a JSON number for a number, `true` / `false`), so
//! `{"type": "integer", "minimum": 1, "maximum": 100}` works for `?depth=`.
//!
//! Supported JSON Schema keywords (draft 2020-12 semantics): `type`
//! (a name or a list), `enum`, `const`, `minLength`, `maxLength` (in
//! characters), `pattern`, `minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum`, `multipleOf`, `items`, `minItems`, `maxItems`,
//! `properties`, `required`, `additionalProperties`, `propertyNames`,
//! `minProperties`, `maxProperties`, `allOf`, `anyOf`, `oneOf`, `not`,
//! `if` / `then` / `else`, boolean schemas, and OpenAPI's `nullable`.
//! Annotations (`$schema`, `$id`, `$comment`, `title`, `description`,
//! `default`, `examples`, `example`, `deprecated`, `readOnly`,
//! `writeOnly`, `format`, `contentMediaType`, `contentEncoding`, and any
//! `x-…` key) are accepted and ignored; `format` is an annotation only, as
//! in 2020-12. Every other keyword (`$ref`, `patternProperties`,
//! `uniqueItems`, …) is refused when the schema is compiled, so a schema
//! never silently checks less than it says. Nothing is ever fetched.
//!
//! `pattern` uses the `regex` crate (linear time, no look-around or
//! back-references; a pattern using them is refused at compile time).
//! `\d` and `\w` are ASCII-only, as in ECMA-262 (`\d` is `[0-9]`), so a
//! fullwidth `１` does not pass for a digit.
//!
//! # Negative model
//!
//! Each string is checked for NUL (`null-byte`), CR / LF (`crlf`) and other
//! C0 control characters except TAB (`control-char`), then normalised
//! ([`normalize`]): percent-decoding repeated until stable (at most
//! [`Limits::max_decode_rounds`] rounds, including `%uXXXX` and overlong
//! UTF-8 forms of `.`, `/` and `\`), Unicode NFKC (fullwidth `＇` is `'`),
//! lower-casing. The control checks are repeated on the decoded text (so
//! `%0d%0a` and `%2500` are caught), then the detectors run ([`detect`]):
//!
//! - `sqli`: a SQL tokenizer (strings, numbers, keywords, operators,
//!   functions, comments including MySQL `/*!…*/`), run as if the value
//!   stood bare, inside `'…'` and inside `"…"`; the token stream is then
//!   matched against the grammar of an injection (closing the string and
//!   continuing with a boolean condition, a comment or a statement; UNION
//!   SELECT; stacked statements; time and error functions), not against a
//!   list of words, so `SELECT your best price` and `a < b and c > d` pass.
//! - `xss`: an HTML tag tokenizer after entity decoding: dangerous elements,
//!   event-handler attributes, `javascript:` / `vbscript:` / `data:` URLs in
//!   URL attributes, breaking out of an attribute value, JavaScript string
//!   break-outs followed by a sink call. `<main>`, `a < b` and `5 > 3` pass.
//! - `cmdi`: a shell separator (`;`, `|`, `&`, `&&`, `||`, backticks,
//!   `$(`, `{…,…}`) followed by a known command in a command position, after
//!   removing quoting tricks (`c''at`, `c\at`, `$IFS`); shellshock; and
//!   `jndi` for Log4Shell lookups.
//! - `path-traversal`: `..` segments after decoding (`..%2f`, `%2e%2e\`,
//!   `..;/`, `....//`), well-known sensitive files (`/etc/passwd`,
//!   `win.ini`), and local-file URL schemes (`file://`, `php://`).
//! - `scanner`: a user agent of a well-known attack tool (headers only).
//!
//! Values made only of ASCII letters, digits, `_`, `.` and `-` (no `..`),
//! which is what most identifiers, decimals and enum values are, skip the
//! detectors: nothing they look for can be spelled with those characters.
//!
//! What the negative model deliberately refuses, and what it does not
//! cover:
//!
//! - CR or LF in any decoded value is `crlf`, JSON strings included: a
//!   multi-line memo is refused.
//! - A value that is exactly `..` is `path-traversal`; a value that starts
//!   with `javascript:` (or `vbscript:`, …), or with a `data:` URL of a type
//!   other than a raster image or plain text, is `xss`, even in prose.
//! - The detectors read SQL, HTML with inline JavaScript, and POSIX and
//!   `cmd.exe` shell syntax. They do not look for server-side template
//!   injection (beyond AngularJS `{{constructor…}}`), NoSQL operators,
//!   XML entities, LDAP filters or SSRF targets in free text; for fields
//!   with a schema the positive model refuses those shapes (`{"$gt": ""}`
//!   is not a string).
//! - Look-alike quotes that databases do not treat as quotes (U+2019,
//!   U+02BC) are not quotes to the SQL tokenizer.
//! - A payload percent-encoded more times than
//!   [`Limits::max_decode_rounds`] is seen with its last layers still
//!   encoded.
//!
//! # Mode
//!
//! [`Mode::Detect`] is for rolling out a schema or a rule set: the gateway
//! logs the violation and forwards the request. The inspector itself does
//! not look at the mode; [`Mode::enforces`] says what to do with a
//! violation.

pub mod corpus;
pub mod detect;
pub mod headers;
mod inspector;
mod json;
pub mod normalize;
mod pointer;
mod query;
mod schema;

pub use inspector::Inspector;
pub use schema::{RouteSchema, SchemaError, SchemaProblem};

/// Size and work limits, enforced with and without a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of arrays and objects in a JSON body (default 16;
    /// values above 100 are treated as 100).
    pub max_depth: usize,
    /// Longest string, in bytes after decoding: a JSON string or key, a
    /// query key or value, a path param (default 4096).
    pub max_string_bytes: usize,
    /// Most values in a JSON body (object members plus array elements,
    /// counted over the whole document) and most query params (default
    /// 1024).
    pub max_fields: usize,
    /// Largest body in bytes (default 64 KiB).
    pub max_body_bytes: usize,
    /// Longest raw query string in bytes (default 4096).
    pub max_query_bytes: usize,
    /// Longest header value in bytes (default 8192, as common servers'
    /// header buffers).
    pub max_header_bytes: usize,
    /// Most rounds of percent-decoding applied by the negative model before
    /// it gives up decoding further (default 4).
    pub max_decode_rounds: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 16,
            max_string_bytes: 4096,
            max_fields: 1024,
            max_body_bytes: 64 * 1024,
            max_query_bytes: 4096,
            max_header_bytes: 8192,
            max_decode_rounds: 4,
        }
    }
}

/// What the gateway does with a [`Violation`] on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Refuse the request (400 or 403).
    #[default]
    Block,
    /// Log the violation and forward the request anyway.
    Detect,
}

impl Mode {
    /// Whether a violation refuses the request in this mode.
    #[must_use]
    pub fn enforces(self) -> bool {
        matches!(self, Self::Block)
    }

    /// The mode's name in configuration: `block` or `detect`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Detect => "detect",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`Mode`] name that is neither `block` nor `detect`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown waf mode (expected `block` or `detect`)")]
pub struct ModeError;

impl std::str::FromStr for Mode {
    type Err = ModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(Self::Block),
            "detect" | "detect-only" => Ok(Self::Detect),
            _ => Err(ModeError),
        }
    }
}

/// A request as the gateway received it. Everything is raw, as on the
/// wire: the inspector does all decoding itself.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method (`GET`, `POST`, …).
    pub method: &'a str,
    /// The path, still percent-encoded, without the query.
    pub path: &'a str,
    /// Path params as matched by the router (name, raw value still
    /// percent-encoded).
    pub params: &'a [(&'a str, &'a str)],
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// Every header line: lower-case name and raw value bytes, in the
    /// order received (a repeated header appears once per line).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The `Content-Type` header's value, if any.
    pub content_type: Option<&'a str>,
    /// The body (already de-chunked by the HTTP layer).
    pub body: &'a [u8],
}

/// Why a request was refused.
///
/// Pointers and locations are RFC 6901 JSON pointers prefixed by the part
/// of the request: `/body/qty`, `/query/symbol`, `/params/order_id`,
/// `/headers/user-agent`, `/path`. A key that came from the client is
/// escaped (`~0`, `~1`, and any character outside printable ASCII or
/// `"<>\\`{}|^` percent-encoded) and cut to 64 bytes, so the pointer is safe
/// to return; messages never contain the client's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The positive model or a size limit refused the request: 400
    /// `VALIDATION_FAILED`.
    #[error("validation failed at `{pointer}`: {message}")]
    Invalid {
        /// The first failing field.
        pointer: String,
        /// A short reason, safe to return to the client.
        message: String,
    },
    /// The negative model refused the request: 403 `REQUEST_BLOCKED`.
    #[error("request blocked by rule `{rule}` at `{location}`")]
    Blocked {
        /// Stable rule id: `sqli`, `xss`, `cmdi`, `jndi`, `path-traversal`,
        /// `crlf`, `null-byte`, `control-char`, `smuggling`, `scanner`.
        rule: &'static str,
        /// Where the match was.
        location: String,
        /// What matched, for the log and the audit trail (never the raw
        /// value; at most about 100 bytes). Not for the client.
        detail: String,
    },
}

impl Violation {
    /// The problem code the gateway returns.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "VALIDATION_FAILED",
            Self::Blocked { .. } => "REQUEST_BLOCKED",
        }
    }

    /// The HTTP status the gateway returns.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::Blocked { .. } => 403,
        }
    }

    pub(crate) fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}
