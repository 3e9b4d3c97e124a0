//! Helpers shared by the profiles: header access, `application/x-www-form-urlencoded`
//! splitting and strict decoding, hex, strict JSON (duplicate keys rejected).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::AuthError;

/// Longest key id a profile accepts (header value or JWT `kid`).
pub(crate) const MAX_KEY_ID_LEN: usize = 256;

/// The single value of header `name`: `Ok(None)` when absent, `Malformed`
/// when repeated, empty or not visible ASCII. Surrounding whitespace is
/// trimmed.
pub(crate) fn single_header<'a>(
    headers: &'a http::HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed(format!("header {name} is repeated")));
    }
    let text = first
        .to_str()
        .map_err(|_| AuthError::Malformed(format!("header {name} is not visible ASCII")))?
        .trim_matches(|c: char| c == ' ' || c == '\t');
    if text.is_empty() {
        return Err(AuthError::Malformed(format!("header {name} is empty")));
    }
    Ok(Some(text))
}

/// A key id must be 1..=256 visible ASCII characters without spaces.
pub(crate) fn check_key_id(key_id: &str, what: &str) -> Result<(), AuthError> {
    if key_id.is_empty() || key_id.len() > MAX_KEY_ID_LEN {
        return Err(AuthError::Malformed(format!(
            "{what} must be 1 to {MAX_KEY_ID_LEN} characters"
        )));
    }
    if !key_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::Malformed(format!(
            "{what} must be visible ASCII without spaces"
        )));
    }
    Ok(())
}

/// The query part of a `path_and_query` (after the first `?`), empty if none.
pub(crate) fn query_of(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or("", |(_, query)| query)
}

/// The path part of a `path_and_query` (before the first `?`).
pub(crate) fn path_of(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or(path_and_query, |(path, _)| path)
}

/// The media type of the `Content-Type` header, lowercased, parameters
/// dropped; `None` when absent.
pub(crate) fn media_type(headers: &http::HeaderMap) -> Result<Option<String>, AuthError> {
    let Some(value) = single_header(headers, "content-type")? else {
        return Ok(None);
    };
    let essence = value.split(';').next().unwrap_or_default();
    Ok(Some(essence.trim().to_ascii_lowercase()))
}

/// Whether the request declares an `application/x-www-form-urlencoded` body.
pub(crate) fn is_form(headers: &http::HeaderMap) -> Result<bool, AuthError> {
    Ok(media_type(headers)?.as_deref() == Some("application/x-www-form-urlencoded"))
}

/// One `name=value` segment of a urlencoded string, still encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawParam<'a> {
    /// The name as sent.
    pub name: &'a [u8],
    /// The value as sent (empty when the segment has no `=`).
    pub value: &'a [u8],
    /// Offset of the segment's first byte in the input.
    pub start: usize,
    /// Offset just past the segment's last byte.
    pub end: usize,
}

/// Splits a urlencoded string at `&`, skipping empty segments. Never fails:
/// decoding is separate.
pub(crate) fn raw_params(input: &[u8]) -> impl Iterator<Item = RawParam<'_>> {
    let mut offset = 0usize;
    input.split(|b| *b == b'&').filter_map(move |segment| {
        let start = offset;
        let end = start.saturating_add(segment.len());
        offset = end.saturating_add(1);
        if segment.is_empty() {
            return None;
        }
        let (name, value) = match segment.iter().position(|b| *b == b'=') {
            Some(eq) => (
                segment.get(..eq).unwrap_or_default(),
                segment.get(eq.saturating_add(1)..).unwrap_or_default(),
            ),
            None => (segment, &[][..]),
        };
        Some(RawParam {
            name,
            value,
            start,
            end,
        })
    })
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict percent-decoding: `%` must be followed by two hex digits. With
/// `plus_is_space`, `+` decodes to a space (form encoding).
pub(crate) fn percent_decode(raw: &[u8], plus_is_space: bool) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex_val);
                let lo = bytes.next().and_then(hex_val);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => {
                        return Err(AuthError::Malformed(
                            "invalid percent-encoding in a parameter".to_owned(),
                        ))
                    }
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Form-decodes a parameter name or value (`application/x-www-form-urlencoded`:
/// `+` is a space, `%XX` escapes are strict).
///
/// # Errors
/// [`AuthError::Malformed`] for an invalid escape.
pub fn form_decode(raw: &[u8]) -> Result<Vec<u8>, AuthError> {
    percent_decode(raw, true)
}

/// Lowercase hex.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            if let Some(d) = DIGITS.get(usize::from(nibble)) {
                out.push(char::from(*d));
            }
        }
    }
    out
}

/// Decodes hex of either case into exactly `N` bytes.
pub(crate) fn hex_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N.checked_mul(2)? {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (hex_val(*hi)?, hex_val(*lo)?),
            _ => return None,
        };
        *slot = (hi << 4) | lo;
    }
    Some(out)
}

/// An unsigned decimal counter: 1..=20 ASCII digits that fit a `u64`.
pub(crate) fn parse_u64_digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Base64 engines used by the profiles.
pub(crate) mod b64 {
    use base64::alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

    /// Standard alphabet; padding optional on decode, emitted on encode;
    /// non-zero trailing bits rejected.
    pub(crate) const STANDARD_LENIENT_PAD: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );

    /// URL-safe alphabet, no padding (JWT): padding rejected.
    pub(crate) const URL_SAFE_NO_PAD: GeneralPurpose =
        base64::engine::general_purpose::URL_SAFE_NO_PAD;
}

/// A JSON value deserialized with duplicate object keys rejected at every depth.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Number::from_f64(v)
            .map(|n| Strict(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom("duplicate object key"));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Strict(Value::Object(object)))
    }
}

/// Parses a JSON object strictly: valid UTF-8 JSON, nothing after it, an
/// object at the top, no duplicate keys at any depth. `what` names the
/// document in the error.
pub(crate) fn strict_json_object(
    bytes: &[u8],
    what: &str,
) -> Result<Map<String, Value>, AuthError> {
    let Strict(value) = serde_json::from_slice::<Strict>(bytes).map_err(|e| {
        // serde_json's messages name the position and the problem, never
        // more than a short excerpt of the input.
        let reason = if e.to_string().contains("duplicate object key") {
            "duplicate key".to_owned()
        } else {
            format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            )
        };
        AuthError::Malformed(format!("{what} is not valid JSON: {reason}"))
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(AuthError::Malformed(format!("{what} is not a JSON object"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use super::*;

    #[test]
    fn raw_params_offsets() {
        let input = b"a=1&&b&c=x=y";
        let params: Vec<_> = raw_params(input).collect();
        assert_eq!(params.len(), 3);
        assert_eq!(params[0].name, b"a");
        assert_eq!(params[0].value, b"1");
        assert_eq!((params[0].start, params[0].end), (0, 3));
        assert_eq!(params[1].name, b"b");
        assert_eq!(params[1].value, b"");
        assert_eq!((params[1].start, params[1].end), (5, 6));
        assert_eq!(params[2].name, b"c");
        assert_eq!(params[2].value, b"x=y");
        assert_eq!((params[2].start, params[2].end), (7, 12));
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(form_decode(b"a+b%2Bc").unwrap(), b"a b+c");
        assert_eq!(percent_decode(b"a+b%2b", false).unwrap(), b"a+b+");
        assert!(form_decode(b"%").is_err());
        assert!(form_decode(b"%4").is_err());
        assert!(form_decode(b"%zz").is_err());
    }

    #[test]
    fn hex_round_trip() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex_lower(&bytes), "0001abff");
        assert_eq!(hex_decode::<4>("0001ABff").unwrap(), bytes);
        assert!(hex_decode::<4>("0001abf").is_none());
        assert!(hex_decode::<4>("0001abfg").is_none());
    }

    #[test]
    fn strict_json_rejects_duplicates_at_any_depth() {
        assert!(strict_json_object(br#"{"a":1,"b":{"c":1}}"#, "doc").is_ok());
        let top = strict_json_object(br#"{"a":1,"a":2}"#, "doc").unwrap_err();
        assert_eq!(
            top,
            AuthError::Malformed("doc is not valid JSON: duplicate key".to_owned())
        );
        assert!(strict_json_object(br#"{"a":[{"b":1,"b":1}]}"#, "doc").is_err());
        assert!(strict_json_object(br#"[1]"#, "doc").is_err());
        assert!(strict_json_object(br#"{"a":1} x"#, "doc").is_err());
    }

    #[test]
    fn u64_digits() {
        assert_eq!(parse_u64_digits(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64_digits(b"18446744073709551616"), None);
        assert_eq!(parse_u64_digits(b"+1"), None);
        assert_eq!(parse_u64_digits(b""), None);
    }
}
