//! A bounded JSON parser: serde_json's tokenizer driving our own visitor,
//! which enforces depth, field count and string length while it parses and
//! refuses duplicate object keys.
//!
//! serde_json checks UTF-8, escapes, lone surrogates and trailing
//! characters; we never let it nest deeper than `max_depth` (well under its
//! own recursion limit of 128), so a body of a million `[` is refused after
//! `max_depth` of them, with no deep recursion and nothing built.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::pointer::Seg;

/// Hard ceiling on nesting, whatever the configured limit: below
/// serde_json's recursion limit (128), and what keeps dropping a [`Value`]
/// shallow.
pub(crate) const DEPTH_CEILING: usize = 100;

/// A parsed JSON value; strings borrow from the input where they had no
/// escapes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// Members in document order; keys are unique.
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// A JSON number, as an `f64` with a note of whether it was written (or is)
/// an integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number {
    pub(crate) value: f64,
    pub(crate) integer: bool,
}

/// Why a body could not be parsed; `path` holds the segments innermost
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) path: Vec<Seg>,
    pub(crate) message: String,
}

/// The limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParseLimits {
    pub(crate) max_depth: usize,
    pub(crate) max_fields: usize,
    pub(crate) max_string_bytes: usize,
}

struct Ctx {
    limits: ParseLimits,
    fields_left: usize,
    /// Our own error, when we stopped the parse (serde_json's errors carry
    /// their own message).
    error: Option<String>,
    path: Vec<Seg>,
}

impl Ctx {
    fn fail<E: de::Error>(&mut self, message: String) -> E {
        if self.error.is_none() {
            self.error = Some(message);
        }
        E::custom("rampart limit")
    }
}

/// Parses `bytes` as one JSON document within `limits`.
pub(crate) fn parse(bytes: &[u8], limits: ParseLimits) -> Result<Value<'_>, ParseError> {
    let limits = ParseLimits {
        max_depth: limits.max_depth.min(DEPTH_CEILING),
        ..limits
    };
    let mut ctx = Ctx {
        limits,
        fields_left: limits.max_fields,
        error: None,
        path: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = ValueSeed {
        ctx: &mut ctx,
        depth: 1,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match result {
        Ok(v) => Ok(v),
        Err(e) => {
            let message = match ctx.error.take() {
                Some(m) => m,
                None => syntax_message(&e),
            };
            Err(ParseError {
                path: ctx.path,
                message,
            })
        }
    }
}

fn syntax_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "is truncated JSON",
        Category::Syntax | Category::Data | Category::Io => "is not valid JSON",
    };
    // serde_json reports a byte of invalid UTF-8 inside a string as an
    // invalid code point; outside strings it is a syntax error.
    format!("{what} (line {}, column {})", e.line(), e.column())
}

struct ValueSeed<'c> {
    ctx: &'c mut Ctx,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed<'_> {
    fn string<'de, E: de::Error>(self, s: Cow<'de, str>) -> Result<Value<'de>, E> {
        if s.len() > self.ctx.limits.max_string_bytes {
            let max = self.ctx.limits.max_string_bytes;
            return Err(self.ctx.fail(format!("string longer than {max} bytes")));
        }
        Ok(Value::String(s))
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        if self.depth > self.ctx.limits.max_depth {
            let max = self.ctx.limits.max_depth;
            return Err(self.ctx.fail(format!("nested deeper than {max} levels")));
        }
        Ok(())
    }

    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        if self.ctx.fields_left == 0 {
            let max = self.ctx.limits.max_fields;
            return Err(self.ctx.fail(format!("more than {max} fields")));
        }
        self.ctx.fields_left -= 1;
        Ok(())
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        #[expect(
            clippy::cast_precision_loss,
            reason = "range checks on integers beyond 2^53 are approximate, as in JavaScript"
        )]
        let value = v as f64;
        Ok(Value::Number(Number {
            value,
            integer: true,
        }))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        #[expect(
            clippy::cast_precision_loss,
            reason = "range checks on integers beyond 2^53 are approximate, as in JavaScript"
        )]
        let value = v as f64;
        Ok(Value::Number(Number {
            value,
            integer: true,
        }))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Value::Number(Number {
            value: v,
            integer: v.is_finite() && v.fract() == 0.0,
        }))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.string(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.len() > self.ctx.limits.max_string_bytes {
            // Checked before copying the string.
            let max = self.ctx.limits.max_string_bytes;
            return Err(self.ctx.fail(format!("string longer than {max} bytes")));
        }
        Ok(Value::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.string(Cow::Owned(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        loop {
            let index = items.len();
            let next = seq.next_element_seed(ValueSeed {
                ctx: &mut *self.ctx,
                depth: self.depth + 1,
            });
            match next {
                Ok(Some(v)) => {
                    self.count()?;
                    items.push(v);
                }
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    self.ctx.path.push(Seg::Index(index));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        self.enter()?;
        let mut members: Vec<(Cow<'de, str>, Value<'de>)> = Vec::new();
        loop {
            let key = match map.next_key_seed(KeySeed {
                ctx: &mut *self.ctx,
            })? {
                Some(k) => k,
                None => break,
            };
            self.count()?;
            let value = map.next_value_seed(ValueSeed {
                ctx: &mut *self.ctx,
                depth: self.depth + 1,
            });
            match value {
                Ok(v) => members.push((key, v)),
                Err(e) => {
                    self.ctx.path.push(Seg::Key(key.into_owned()));
                    return Err(e);
                }
            }
        }
        if let Some(dup) = duplicate_key(&members) {
            self.ctx.path.push(Seg::Key(dup.to_owned()));
            return Err(self.ctx.fail("duplicate key".to_owned()));
        }
        Ok(Value::Object(members))
    }
}

/// The first key that appears twice, if any.
fn duplicate_key<'m>(members: &'m [(Cow<'_, str>, Value<'_>)]) -> Option<&'m str> {
    if members.len() <= 16 {
        for (i, (k, _)) in members.iter().enumerate() {
            if members.iter().skip(i + 1).any(|(other, _)| other == k) {
                return Some(k);
            }
        }
        return None;
    }
    let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

struct KeySeed<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.check(v)?;
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.check(v)?;
        Ok(Cow::Owned(v.to_owned()))
    }
}

impl KeySeed<'_> {
    fn check<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v.len() > self.ctx.limits.max_string_bytes {
            let max = self.ctx.limits.max_string_bytes;
            return Err(self.ctx.fail(format!("key longer than {max} bytes")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ParseLimits = ParseLimits {
        max_depth: 16,
        max_fields: 100,
        max_string_bytes: 64,
    };

    #[test]
    fn parses_values_and_borrows_plain_strings() {
        let v = parse(br#"{"a":"x","b":[1,2.5,true,null],"c":"\u00e9"}"#, LIMITS).unwrap();
        let Value::Object(m) = v else { panic!() };
        assert_eq!(m.len(), 3);
        assert!(matches!(&m[0].1, Value::String(Cow::Borrowed("x"))));
        assert!(matches!(&m[2].1, Value::String(s) if s == "é"));
    }

    #[test]
    fn refuses_duplicate_keys_with_pointer() {
        let e = parse(br#"{"o":{"qty":"1","qty":"9"}}"#, LIMITS).unwrap_err();
        assert_eq!(
            super::super::pointer::from_rev("/body", &e.path),
            "/body/o/qty"
        );
        assert_eq!(e.message, "duplicate key");
        let many: String = (0..40).map(|i| format!("\"k{i}\":1,")).collect();
        let doc = format!("{{{many}\"k7\":2}}");
        assert!(parse(doc.as_bytes(), LIMITS).is_err());
    }

    #[test]
    fn depth_is_enforced_fast() {
        let deep = "[".repeat(1_000_000);
        let e = parse(deep.as_bytes(), LIMITS).unwrap_err();
        assert!(e.message.contains("nested deeper than 16"), "{}", e.message);
        let ok = format!("{}{}", "[".repeat(16), "]".repeat(16));
        assert!(parse(ok.as_bytes(), LIMITS).is_ok());
        let bad = format!("{}{}", "[".repeat(17), "]".repeat(17));
        assert!(parse(bad.as_bytes(), LIMITS).is_err());
        let huge = ParseLimits {
            max_depth: 100_000,
            ..LIMITS
        };
        let e = parse(deep.as_bytes(), huge).unwrap_err();
        assert!(
            e.message.contains("nested deeper than 100"),
            "{}",
            e.message
        );
    }

    #[test]
    fn fields_and_strings_are_bounded() {
        let many = format!("[{}1]", "1,".repeat(100));
        assert!(parse(many.as_bytes(), LIMITS)
            .unwrap_err()
            .message
            .contains("more than 100 fields"));
        let fits = format!("[{}1]", "1,".repeat(99));
        assert!(parse(fits.as_bytes(), LIMITS).is_ok());
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(65));
        let e = parse(long.as_bytes(), LIMITS).unwrap_err();
        assert!(e.message.contains("longer than 64"));
        let escaped = format!("{{\"a\":\"{}\"}}", "\\n".repeat(65));
        assert!(parse(escaped.as_bytes(), LIMITS).is_err());
        let long_key = format!("{{\"{}\":1}}", "k".repeat(65));
        assert!(parse(long_key.as_bytes(), LIMITS).is_err());
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            &b"{"[..],
            b"{\"a\":1,}",
            b"{\"a\":1} x",
            b"\xef\xbb\xbf{}",
            b"{\"a\":\"\xff\"}",
            b"{'a':1}",
            b"NaN",
            b"{\"a\":\"\\ud800\"}",
            b"",
        ] {
            assert!(parse(bad, LIMITS).is_err(), "{bad:?}");
        }
    }
}
