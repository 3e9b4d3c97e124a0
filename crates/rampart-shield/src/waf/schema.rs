//! Route schemas: the supported subset of JSON Schema, compiled once and
//! checked against parsed values. The keyword list and the document format
//! are in the [module docs](super).

use std::fmt::Write as _;

use regex::Regex;
use serde_json::Value as Json;

use super::json::{Number, Value};
use super::pointer::{self, Seg};

const T_NULL: u8 = 1;
const T_BOOL: u8 = 2;
const T_INT: u8 = 4;
const T_NUM: u8 = 8;
const T_STR: u8 = 16;
const T_ARR: u8 = 32;
const T_OBJ: u8 = 64;

/// Keywords that carry no validation and are accepted as they are.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "example",
    "deprecated",
    "readOnly",
    "writeOnly",
    "format",
    "contentMediaType",
    "contentEncoding",
];

/// A route's compiled positive model: schemas for its path params, query
/// and JSON body. See the [module docs](super) for the document format.
#[derive(Debug, Clone)]
pub struct RouteSchema {
    params: Option<Node>,
    query: Option<Node>,
    body: Option<Node>,
}

/// One problem found while compiling a schema document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// JSON pointer into the schema document.
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

/// A schema document that cannot be compiled, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route schema: {}", render(.problems))]
pub struct SchemaError {
    problems: Vec<SchemaProblem>,
}

impl SchemaError {
    /// Every problem, in document order.
    #[must_use]
    pub fn problems(&self) -> &[SchemaProblem] {
        &self.problems
    }
}

fn render(problems: &[SchemaProblem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "`{}`: {}", p.pointer, p.message);
    }
    out
}

impl RouteSchema {
    /// Compiles a route schema document
    /// (`{"params": …, "query": …, "body": …}`, every member optional).
    ///
    /// # Errors
    ///
    /// [`SchemaError`] listing every unsupported keyword, ill-typed keyword
    /// value and invalid pattern in the document.
    pub fn from_json(doc: &Json) -> Result<Self, SchemaError> {
        let mut problems = Vec::new();
        let Some(members) = doc.as_object() else {
            return Err(SchemaError {
                problems: vec![SchemaProblem {
                    pointer: String::new(),
                    message: "a route schema must be an object".into(),
                }],
            });
        };
        let mut schema = Self {
            params: None,
            query: None,
            body: None,
        };
        for (key, value) in members {
            let at = pointer::join("", key);
            match key.as_str() {
                "params" => schema.params = Some(compile(value, &at, &mut problems)),
                "query" => schema.query = Some(compile(value, &at, &mut problems)),
                "body" => schema.body = Some(compile(value, &at, &mut problems)),
                "$schema" | "$comment" | "title" | "description" => {}
                _ => problems.push(SchemaProblem {
                    pointer: at,
                    message: "unknown member (expected `params`, `query` or `body`)".into(),
                }),
            }
        }
        if problems.is_empty() {
            Ok(schema)
        } else {
            Err(SchemaError { problems })
        }
    }

    /// Parses and compiles a route schema document from JSON text.
    ///
    /// # Errors
    ///
    /// [`SchemaError`] when the text is not JSON or the document does not
    /// compile.
    pub fn from_json_str(text: &str) -> Result<Self, SchemaError> {
        let doc: Json = serde_json::from_str(text).map_err(|e| SchemaError {
            problems: vec![SchemaProblem {
                pointer: String::new(),
                message: format!("not JSON: {e}"),
            }],
        })?;
        Self::from_json(&doc)
    }

    /// Whether the route takes a JSON body.
    #[must_use]
    pub fn takes_body(&self) -> bool {
        self.body.is_some()
    }

    pub(crate) fn params(&self) -> Option<&Node> {
        self.params.as_ref()
    }

    pub(crate) fn query(&self) -> Option<&Node> {
        self.query.as_ref()
    }

    pub(crate) fn body(&self) -> Option<&Node> {
        self.body.as_ref()
    }
}

/// A compiled schema.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// `true` or `{}` with nothing to check.
    Any,
    /// `false`: nothing is valid.
    Never,
    Rules(Box<Rules>),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    types: u8,
    enumeration: Option<Vec<Json>>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Pattern>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<f64>,
    items: Option<Node>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    properties: Vec<(String, Node)>,
    required: Vec<String>,
    additional: Option<Node>,
    property_names: Option<Node>,
    min_properties: Option<usize>,
    max_properties: Option<usize>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Node>,
    condition: Option<Box<Condition>>,
}

#[derive(Debug, Clone)]
struct Condition {
    test: Node,
    then: Option<Node>,
    otherwise: Option<Node>,
}

#[derive(Debug, Clone)]
struct Pattern {
    re: Regex,
    source: String,
}

fn problem(problems: &mut Vec<SchemaProblem>, at: &str, message: impl Into<String>) {
    problems.push(SchemaProblem {
        pointer: at.to_owned(),
        message: message.into(),
    });
}

fn compile(v: &Json, at: &str, problems: &mut Vec<SchemaProblem>) -> Node {
    let obj = match v {
        Json::Bool(true) => return Node::Any,
        Json::Bool(false) => return Node::Never,
        Json::Object(obj) => obj,
        _ => {
            problem(problems, at, "a schema must be an object or a boolean");
            return Node::Never;
        }
    };
    let mut r = Rules::default();
    let mut nullable = false;
    let mut has_rules = false;
    for (key, value) in obj {
        let here = pointer::join(at, key);
        let here = here.as_str();
        if ANNOTATIONS.contains(&key.as_str()) || key.starts_with("x-") {
            continue;
        }
        has_rules = true;
        match key.as_str() {
            "type" => r.types = types(value, here, problems),
            "enum" => match value.as_array() {
                Some(values) if !values.is_empty() => r.enumeration = Some(values.clone()),
                _ => problem(problems, here, "must be a non-empty array"),
            },
            "const" => r.enumeration = Some(vec![value.clone()]),
            "minLength" => r.min_length = count(value, here, problems),
            "maxLength" => r.max_length = count(value, here, problems),
            "minItems" => r.min_items = count(value, here, problems),
            "maxItems" => r.max_items = count(value, here, problems),
            "minProperties" => r.min_properties = count(value, here, problems),
            "maxProperties" => r.max_properties = count(value, here, problems),
            "pattern" => r.pattern = pattern(value, here, problems),
            "minimum" => r.minimum = number(value, here, problems),
            "maximum" => r.maximum = number(value, here, problems),
            "exclusiveMinimum" => r.exclusive_minimum = number(value, here, problems),
            "exclusiveMaximum" => r.exclusive_maximum = number(value, here, problems),
            "multipleOf" => {
                r.multiple_of = number(value, here, problems);
                if r.multiple_of.is_some_and(|m| m <= 0.0) {
                    problem(problems, here, "must be greater than 0");
                }
            }
            "items" => {
                if value.is_array() {
                    problem(problems, here, "tuple `items` is not supported");
                } else {
                    r.items = Some(compile(value, here, problems));
                }
            }
            "properties" => match value.as_object() {
                Some(props) => {
                    for (name, schema) in props {
                        let p = pointer::join(here, name);
                        r.properties
                            .push((name.clone(), compile(schema, &p, problems)));
                    }
                }
                None => problem(problems, here, "must be an object"),
            },
            "required" => match value.as_array() {
                Some(names) => {
                    for (i, name) in names.iter().enumerate() {
                        match name.as_str() {
                            Some(n) => r.required.push(n.to_owned()),
                            None => problem(problems, &format!("{here}/{i}"), "must be a string"),
                        }
                    }
                }
                None => problem(problems, here, "must be an array of strings"),
            },
            "additionalProperties" => r.additional = Some(compile(value, here, problems)),
            "propertyNames" => r.property_names = Some(compile(value, here, problems)),
            "allOf" => r.all_of = list(value, here, problems),
            "anyOf" => r.any_of = list(value, here, problems),
            "oneOf" => r.one_of = list(value, here, problems),
            "not" => r.not = Some(compile(value, here, problems)),
            "if" | "then" | "else" => {}
            "nullable" => match value.as_bool() {
                Some(b) => nullable = b,
                None => problem(problems, here, "must be a boolean"),
            },
            other => problem(
                problems,
                here,
                format!("unsupported keyword `{}`", other.escape_debug()),
            ),
        }
    }
    if let Some(test) = obj.get("if") {
        let here = format!("{at}/if");
        r.condition = Some(Box::new(Condition {
            test: compile(test, &here, problems),
            then: obj
                .get("then")
                .map(|s| compile(s, &format!("{at}/then"), problems)),
            otherwise: obj
                .get("else")
                .map(|s| compile(s, &format!("{at}/else"), problems)),
        }));
    }
    if nullable && r.types != 0 {
        r.types |= T_NULL;
    }
    if has_rules {
        Node::Rules(Box::new(r))
    } else {
        Node::Any
    }
}

fn types(v: &Json, at: &str, problems: &mut Vec<SchemaProblem>) -> u8 {
    let one = |name: &str| match name {
        "null" => Some(T_NULL),
        "boolean" => Some(T_BOOL),
        "integer" => Some(T_INT),
        "number" => Some(T_NUM),
        "string" => Some(T_STR),
        "array" => Some(T_ARR),
        "object" => Some(T_OBJ),
        _ => None,
    };
    let names: Vec<&Json> = match v {
        Json::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut bits = 0;
    for name in names {
        match name.as_str().and_then(one) {
            Some(b) => bits |= b,
            None => {
                problem(problems, at, "must be a type name or a list of them");
                return 0;
            }
        }
    }
    if bits == 0 {
        problem(problems, at, "must name at least one type");
    }
    bits
}

fn count(v: &Json, at: &str, problems: &mut Vec<SchemaProblem>) -> Option<usize> {
    match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
        Some(n) => Some(n),
        None => {
            problem(problems, at, "must be a non-negative integer");
            None
        }
    }
}

fn number(v: &Json, at: &str, problems: &mut Vec<SchemaProblem>) -> Option<f64> {
    match v.as_f64() {
        Some(n) => Some(n),
        None => {
            problem(problems, at, "must be a number");
            None
        }
    }
}

fn list(v: &Json, at: &str, problems: &mut Vec<SchemaProblem>) -> Vec<Node> {
    match v.as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(i, s)| compile(s, &format!("{at}/{i}"), problems))
            .collect(),
        _ => {
            problem(problems, at, "must be a non-empty array of schemas");
            Vec::new()
        }
    }
}

fn pattern(v: &Json, at: &str, problems: &mut Vec<SchemaProblem>) -> Option<Pattern> {
    let Some(source) = v.as_str() else {
        problem(problems, at, "must be a string");
        return None;
    };
    match Regex::new(&translate_pattern(source)) {
        Ok(re) => Some(Pattern {
            re,
            source: source.to_owned(),
        }),
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or("invalid pattern").trim();
            problem(problems, at, format!("unsupported pattern: {first}"));
            None
        }
    }
}

/// Rewrites an ECMA-262 pattern for the `regex` crate: `\d` and `\w` become
/// their ASCII classes (the crate's are Unicode), and `[`, `&`, `~` inside a
/// class are escaped (the crate reads them as class-set syntax).
pub(crate) fn translate_pattern(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 8);
    let mut in_class = false;
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
                Some('w') => out.push_str(if in_class {
                    "0-9A-Za-z_"
                } else {
                    "[0-9A-Za-z_]"
                }),
                Some('D') if !in_class => out.push_str("[^0-9]"),
                Some('W') if !in_class => out.push_str("[^0-9A-Za-z_]"),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' if in_class => out.push_str("\\["),
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '[' => {
                in_class = true;
                out.push('[');
                // A `]` right after `[` or `[^` is a literal in the crate
                // but ends an empty class in ECMA-262; both are rare, and
                // the crate's reading is the stricter one.
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

/// A validation failure: segments innermost first, and a message safe for
/// the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub(crate) path: Vec<Seg>,
    pub(crate) message: String,
}

impl Fail {
    fn new(message: impl Into<String>) -> Self {
        Self {
            path: Vec::new(),
            message: message.into(),
        }
    }

    fn at(mut self, seg: Seg) -> Self {
        self.path.push(seg);
        self
    }
}

fn type_names(bits: u8) -> String {
    let mut names = Vec::new();
    for (bit, name) in [
        (T_STR, "a string"),
        (T_INT, "an integer"),
        (T_NUM, "a number"),
        (T_BOOL, "a boolean"),
        (T_OBJ, "an object"),
        (T_ARR, "an array"),
        (T_NULL, "null"),
    ] {
        if bits & bit != 0 && !(bit == T_INT && bits & T_NUM != 0) {
            names.push(name);
        }
    }
    names.join(" or ")
}

fn value_matches_types(bits: u8, v: &Value<'_>) -> bool {
    if bits == 0 {
        return true;
    }
    let need = match v {
        Value::Null => T_NULL,
        Value::Bool(_) => T_BOOL,
        Value::Number(Number { integer: true, .. }) => T_INT | T_NUM,
        Value::Number(_) => T_NUM,
        Value::String(_) => T_STR,
        Value::Array(_) => T_ARR,
        Value::Object(_) => T_OBJ,
    };
    bits & need != 0
}

fn json_eq(v: &Value<'_>, j: &Json) -> bool {
    match (v, j) {
        (Value::Null, Json::Null) => true,
        (Value::Bool(a), Json::Bool(b)) => a == b,
        (Value::Number(n), Json::Number(m)) => m.as_f64() == Some(n.value),
        (Value::String(s), Json::String(t)) => s == t,
        (Value::Array(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(a), Json::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, x)| b.get(k.as_ref()).is_some_and(|y| json_eq(x, y)))
        }
        _ => false,
    }
}

fn enum_message(values: &[Json]) -> String {
    let mut out = String::from("must be one of ");
    for (i, v) in values.iter().enumerate() {
        if i == 8 {
            out.push_str(", …");
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        let text = match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        let text: String = text.chars().take(32).collect();
        let _ = write!(out, "`{text}`");
    }
    out
}

/// Reads a query or path value as the scalar type its schema wants.
fn coerce<'a>(bits: u8, s: &str) -> Option<Value<'a>> {
    if bits & (T_INT | T_NUM) != 0 {
        let digits = s.strip_prefix('-').unwrap_or(s);
        if !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = s.parse::<f64>() {
                return Some(Value::Number(Number {
                    value: n,
                    integer: true,
                }));
            }
        }
        if bits & T_NUM != 0 && s.len() <= 64 {
            if let Ok(serde_json::Value::Number(n)) = serde_json::from_str::<Json>(s) {
                if let Some(value) = n.as_f64() {
                    return Some(Value::Number(Number {
                        value,
                        integer: value.fract() == 0.0,
                    }));
                }
            }
        }
    }
    if bits & T_BOOL != 0 {
        match s {
            "true" => return Some(Value::Bool(true)),
            "false" => return Some(Value::Bool(false)),
            _ => {}
        }
    }
    None
}

impl Node {
    /// Checks `v`; with `coerce`, a string where the schema wants an
    /// integer, a number or a boolean is read as one (query and params).
    pub(crate) fn validate(&self, v: &Value<'_>, coerce_scalars: bool) -> Result<(), Fail> {
        let r = match self {
            Node::Any => return Ok(()),
            Node::Never => return Err(Fail::new("is not allowed")),
            Node::Rules(r) => r,
        };
        if coerce_scalars && r.types != 0 && r.types & T_STR == 0 {
            if let Value::String(s) = v {
                return match coerce(r.types, s) {
                    Some(c) => self.validate(&c, false),
                    None => Err(Fail::new(format!("must be {}", type_names(r.types)))),
                };
            }
        }
        if !value_matches_types(r.types, v) {
            return Err(Fail::new(format!("must be {}", type_names(r.types))));
        }
        if let Some(values) = &r.enumeration {
            if !values.iter().any(|j| json_eq(v, j)) {
                return Err(Fail::new(enum_message(values)));
            }
        }
        match v {
            Value::String(s) => r.check_string(s)?,
            Value::Number(n) => r.check_number(n.value)?,
            Value::Array(items) => r.check_array(items, coerce_scalars)?,
            Value::Object(members) => r.check_object(members, coerce_scalars)?,
            Value::Null | Value::Bool(_) => {}
        }
        r.check_combinators(v, coerce_scalars)
    }

    fn passes(&self, v: &Value<'_>, coerce_scalars: bool) -> bool {
        self.validate(v, coerce_scalars).is_ok()
    }
}

impl Rules {
    fn check_string(&self, s: &str) -> Result<(), Fail> {
        if let Some(max) = self.max_length {
            if s.len() > max && s.chars().count() > max {
                return Err(Fail::new(format!("must be at most {max} characters")));
            }
        }
        if let Some(min) = self.min_length {
            if s.len() < min || s.chars().count() < min {
                return Err(Fail::new(format!("must be at least {min} characters")));
            }
        }
        if let Some(p) = &self.pattern {
            if !p.re.is_match(s) {
                let shown: String = p.source.chars().take(80).collect();
                return Err(Fail::new(format!("must match `{shown}`")));
            }
        }
        Ok(())
    }

    fn check_number(&self, n: f64) -> Result<(), Fail> {
        if let Some(min) = self.minimum {
            if n < min {
                return Err(Fail::new(format!("must be at least {min}")));
            }
        }
        if let Some(max) = self.maximum {
            if n > max {
                return Err(Fail::new(format!("must be at most {max}")));
            }
        }
        if let Some(min) = self.exclusive_minimum {
            if n <= min {
                return Err(Fail::new(format!("must be greater than {min}")));
            }
        }
        if let Some(max) = self.exclusive_maximum {
            if n >= max {
                return Err(Fail::new(format!("must be less than {max}")));
            }
        }
        if let Some(m) = self.multiple_of {
            let q = n / m;
            if !q.is_finite() || (q - q.round()).abs() > 1e-9 {
                return Err(Fail::new(format!("must be a multiple of {m}")));
            }
        }
        Ok(())
    }

    fn check_array(&self, items: &[Value<'_>], coerce_scalars: bool) -> Result<(), Fail> {
        if let Some(min) = self.min_items {
            if items.len() < min {
                return Err(Fail::new(format!("must have at least {min} items")));
            }
        }
        if let Some(max) = self.max_items {
            if items.len() > max {
                return Err(Fail::new(format!("must have at most {max} items")));
            }
        }
        if let Some(node) = &self.items {
            for (i, item) in items.iter().enumerate() {
                node.validate(item, coerce_scalars)
                    .map_err(|f| f.at(Seg::Index(i)))?;
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        members: &[(std::borrow::Cow<'_, str>, Value<'_>)],
        coerce_scalars: bool,
    ) -> Result<(), Fail> {
        for (key, value) in members {
            let key: &str = key;
            if let Some(names) = &self.property_names {
                let as_value = Value::String(std::borrow::Cow::Borrowed(key));
                names.validate(&as_value, false).map_err(|f| {
                    Fail::new(format!("name {}", f.message)).at(Seg::Key(key.into()))
                })?;
            }
            let declared = self.properties.iter().find(|(name, _)| name == key);
            let node = match (declared, &self.additional) {
                (Some((_, node)), _) => node,
                (None, Some(node)) => node,
                (None, None) => continue,
            };
            node.validate(value, coerce_scalars)
                .map_err(|f| f.at(Seg::Key(key.into())))?;
        }
        for name in &self.required {
            if !members.iter().any(|(k, _)| k == name) {
                return Err(Fail::new("is required").at(Seg::Key(name.clone())));
            }
        }
        if let Some(min) = self.min_properties {
            if members.len() < min {
                return Err(Fail::new(format!("must have at least {min} members")));
            }
        }
        if let Some(max) = self.max_properties {
            if members.len() > max {
                return Err(Fail::new(format!("must have at most {max} members")));
            }
        }
        Ok(())
    }

    fn check_combinators(&self, v: &Value<'_>, coerce_scalars: bool) -> Result<(), Fail> {
        for node in &self.all_of {
            node.validate(v, coerce_scalars)?;
        }
        if !self.any_of.is_empty() && !self.any_of.iter().any(|n| n.passes(v, coerce_scalars)) {
            return Err(Fail::new("does not match any allowed form"));
        }
        if !self.one_of.is_empty() {
            let n = self
                .one_of
                .iter()
                .filter(|n| n.passes(v, coerce_scalars))
                .count();
            if n != 1 {
                return Err(Fail::new("must match exactly one allowed form"));
            }
        }
        if let Some(not) = &self.not {
            if not.passes(v, coerce_scalars) {
                return Err(Fail::new("matches a forbidden form"));
            }
        }
        if let Some(c) = &self.condition {
            let branch = if c.test.passes(v, coerce_scalars) {
                &c.then
            } else {
                &c.otherwise
            };
            if let Some(node) = branch {
                node.validate(v, coerce_scalars)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::json::{parse, ParseLimits};
    use super::*;
    use serde_json::json;

    const LIMITS: ParseLimits = ParseLimits {
        max_depth: 16,
        max_fields: 1000,
        max_string_bytes: 4096,
    };

    fn check(schema: Json, doc: &str) -> Result<(), String> {
        let node = match compile_one(&schema) {
            Ok(n) => n,
            Err(e) => return Err(format!("schema: {e}")),
        };
        let v = parse(doc.as_bytes(), LIMITS).map_err(|e| e.message)?;
        node.validate(&v, false)
            .map_err(|f| format!("{} {}", pointer::from_rev("/body", &f.path), f.message))
    }

    fn compile_one(schema: &Json) -> Result<Node, SchemaError> {
        let mut problems = Vec::new();
        let node = compile(schema, "/body", &mut problems);
        if problems.is_empty() {
            Ok(node)
        } else {
            Err(SchemaError { problems })
        }
    }

    fn order() -> Json {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["symbol", "qty"],
            "properties": {
                "symbol": {"type": "string", "pattern": "^[A-Z]{3}-[A-Z]{3}$"},
                "qty": {"type": "string", "pattern": "^[0-9]{1,20}(\\.[0-9]{1,18})?$"},
                "side": {"enum": ["buy", "sell"]},
                "n": {"type": "integer", "minimum": 1, "maximum": 10},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2}
            }
        })
    }

    #[test]
    fn accepts_valid_and_reports_first_failure_with_pointer() {
        assert_eq!(
            check(order(), r#"{"symbol":"BTC-USD","qty":"0.5"}"#),
            Ok(())
        );
        assert_eq!(
            check(order(), r#"{"symbol":"BTC-USD"}"#),
            Err("/body/qty is required".into())
        );
        assert_eq!(
            check(order(), r#"{"symbol":"BTC-USD","qty":0.5}"#),
            Err("/body/qty must be a string".into())
        );
        assert_eq!(
            check(order(), r#"{"symbol":"btc","qty":"1"}"#),
            Err("/body/symbol must match `^[A-Z]{3}-[A-Z]{3}$`".into())
        );
        assert_eq!(
            check(order(), r#"{"symbol":"BTC-USD","qty":"1","x":1}"#),
            Err("/body/x is not allowed".into())
        );
        assert_eq!(
            check(order(), r#"{"symbol":"BTC-USD","qty":"1","side":"hold"}"#),
            Err("/body/side must be one of `buy`, `sell`".into())
        );
        assert_eq!(
            check(order(), r#"{"symbol":"BTC-USD","qty":"1","n":11}"#),
            Err("/body/n must be at most 10".into())
        );
        assert_eq!(
            check(order(), r#"{"symbol":"BTC-USD","qty":"1","n":1.5}"#),
            Err("/body/n must be an integer".into())
        );
        assert_eq!(
            check(order(), r#"{"symbol":"BTC-USD","qty":"1","n":2.0}"#),
            Ok(())
        );
        assert_eq!(
            check(
                order(),
                r#"{"symbol":"BTC-USD","qty":"1","tags":["a","abcd"]}"#
            ),
            Err("/body/tags/1 must be at most 3 characters".into())
        );
        assert_eq!(
            check(order(), r#"["BTC-USD"]"#),
            Err("/body must be an object".into())
        );
    }

    #[test]
    fn max_length_counts_characters() {
        let s = json!({"type": "string", "maxLength": 3});
        assert_eq!(check(s.clone(), r#""äöü""#), Ok(()));
        assert!(check(s, r#""äöüx""#).is_err());
    }

    #[test]
    fn digit_classes_are_ascii() {
        let s = json!({"type": "string", "pattern": "^\\d+$"});
        assert_eq!(check(s.clone(), r#""123""#), Ok(()));
        assert!(check(s, "\"１２３\"").is_err());
        let w = json!({"type": "string", "pattern": "^[\\w-]+$"});
        assert_eq!(check(w.clone(), r#""a_b-c""#), Ok(()));
        assert!(check(w, r#""é""#).is_err());
    }

    #[test]
    fn combinators_and_conditions() {
        let s = json!({
            "type": "object",
            "properties": {"type": {"enum": ["limit", "market"]}, "price": {"type": "string"}},
            "if": {"properties": {"type": {"const": "limit"}}},
            "then": {"required": ["price"]},
            "else": {"properties": {"price": false}}
        });
        assert_eq!(check(s.clone(), r#"{"type":"limit","price":"1"}"#), Ok(()));
        assert_eq!(
            check(s.clone(), r#"{"type":"limit"}"#),
            Err("/body/price is required".into())
        );
        assert_eq!(
            check(s.clone(), r#"{"type":"market","price":"1"}"#),
            Err("/body/price is not allowed".into())
        );
        assert_eq!(check(s, r#"{"type":"market"}"#), Ok(()));
        let any = json!({"anyOf": [{"type": "string"}, {"type": "null"}]});
        assert_eq!(check(any.clone(), "null"), Ok(()));
        assert!(check(any, "1").is_err());
        let one = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
        assert!(check(one.clone(), "1").is_err());
        assert_eq!(check(one, "1.5"), Ok(()));
        let not = json!({"not": {"const": "x"}});
        assert!(check(not, r#""x""#).is_err());
    }

    #[test]
    fn unsupported_keywords_are_refused_all_at_once() {
        let e = compile_one(&json!({
            "type": "strin",
            "$ref": "#/x",
            "properties": {"a": {"patternProperties": {}}},
            "pattern": "(?=x)",
            "description": "ok",
            "x-rampart": true,
            "format": "date-time"
        }))
        .unwrap_err();
        let pointers: Vec<&str> = e.problems().iter().map(|p| p.pointer.as_str()).collect();
        assert!(pointers.contains(&"/body/type"), "{e}");
        assert!(pointers.contains(&"/body/$ref"), "{e}");
        assert!(
            pointers.contains(&"/body/properties/a/patternProperties"),
            "{e}"
        );
        assert!(pointers.contains(&"/body/pattern"), "{e}");
        assert_eq!(e.problems().len(), 4, "{e}");
    }

    #[test]
    fn route_documents() {
        assert!(RouteSchema::from_json(&json!({"body": {"type": "object"}})).is_ok());
        assert!(RouteSchema::from_json(&json!({"bdoy": {}})).is_err());
        assert!(RouteSchema::from_json(&json!([])).is_err());
        assert!(RouteSchema::from_json_str("{").is_err());
        let r = RouteSchema::from_json_str("{}").unwrap();
        assert!(!r.takes_body());
    }

    #[test]
    fn coercion_for_query_values() {
        let s = json!({"type": "integer", "minimum": 1, "maximum": 100});
        let node = compile_one(&s).unwrap();
        let v = |t: &str| Value::String(std::borrow::Cow::Owned(t.to_owned()));
        assert!(node.validate(&v("10"), true).is_ok());
        assert!(node.validate(&v("0"), true).is_err());
        assert!(node.validate(&v("1e2"), true).is_err());
        assert!(node.validate(&v("+5"), true).is_err());
        assert!(node.validate(&v("five"), true).is_err());
        assert!(node.validate(&v("10"), false).is_err());
        let b = compile_one(&json!({"type": "boolean"})).unwrap();
        assert!(b.validate(&v("true"), true).is_ok());
        assert!(b.validate(&v("1"), true).is_err());
    }
}
