//! Query strings and path params: decoded once, as the application's own
//! framework would, within the limits.

use std::borrow::Cow;

use super::normalize::percent_decode;
use super::pointer;
use super::Violation;

/// A decoded name or value.
pub(crate) type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

fn decode_once<'a>(
    raw: &'a str,
    plus_as_space: bool,
    at: impl Fn() -> String,
    max_string_bytes: usize,
) -> Result<Cow<'a, str>, Violation> {
    let text = match percent_decode(raw.as_bytes(), plus_as_space) {
        Cow::Borrowed(_) => Cow::Borrowed(raw),
        Cow::Owned(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Cow::Owned(s),
            Err(_) => return Err(Violation::invalid(at(), "is not valid UTF-8")),
        },
    };
    if text.len() > max_string_bytes {
        return Err(Violation::invalid(
            at(),
            format!("is longer than {max_string_bytes} bytes"),
        ));
    }
    Ok(text)
}

/// Splits `raw` on `&` (only: `;` is part of a value, as in the
/// application's parser) and decodes each name and value once, `+` as a
/// space. Empty pieces are skipped; a piece without `=` has an empty value.
pub(crate) fn parse_query<'a>(
    raw: &'a str,
    prefix: &str,
    max_fields: usize,
    max_string_bytes: usize,
) -> Result<Vec<Pair<'a>>, Violation> {
    let mut out = Vec::new();
    for piece in raw.split('&') {
        if piece.is_empty() {
            continue;
        }
        if out.len() == max_fields {
            return Err(Violation::invalid(
                prefix,
                format!("more than {max_fields} parameters"),
            ));
        }
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let lossy = || {
            let n = percent_decode(name.as_bytes(), true);
            pointer::join(prefix, &String::from_utf8_lossy(&n))
        };
        let name_text = decode_once(name, true, lossy, max_string_bytes)?;
        let at = || pointer::join(prefix, &name_text);
        let value_text = decode_once(value, true, at, max_string_bytes)?;
        out.push((name_text, value_text));
    }
    Ok(out)
}

/// Decodes path params once (`+` stays `+`).
pub(crate) fn decode_params<'a>(
    params: &[(&'a str, &'a str)],
    max_string_bytes: usize,
) -> Result<Vec<Pair<'a>>, Violation> {
    params
        .iter()
        .map(|&(name, raw)| {
            let at = || pointer::join("/params", name);
            decode_once(raw, false, at, max_string_bytes).map(|v| (Cow::Borrowed(name), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("a=1&b=x+y%21&&c&d=%E2%82%AC;e", "/query", 10, 100).unwrap();
        let flat: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(flat, [("a", "1"), ("b", "x y!"), ("c", ""), ("d", "€;e")]);
    }

    #[test]
    fn query_limits() {
        assert!(parse_query("a=%ff", "/query", 10, 100).is_err());
        assert!(parse_query("a=1&b=2&c=3", "/query", 2, 100).is_err());
        let long = format!("a={}", "x".repeat(101));
        let e = parse_query(&long, "/query", 10, 100).unwrap_err();
        assert_eq!(
            e,
            Violation::invalid("/query/a", "is longer than 100 bytes")
        );
    }

    #[test]
    fn params_keep_plus() {
        let p = decode_params(&[("symbol", "BTC%2DUSD+x")], 100).unwrap();
        assert_eq!(p[0].1, "BTC-USD+x");
        assert!(decode_params(&[("symbol", "%c3")], 100).is_err());
    }
}
