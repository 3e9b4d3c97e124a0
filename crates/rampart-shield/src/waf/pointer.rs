//! RFC 6901 JSON pointers built from client-controlled keys, escaped so
//! they are safe to return and to log.

use std::fmt::Write as _;

/// Longest pointer token kept from a client key, in bytes of the source.
const MAX_TOKEN_BYTES: usize = 64;

/// One step of a path inside a parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// Appends `/` and the escaped `token` to `out`.
///
/// `~` and `/` become `~0` and `~1` (RFC 6901); `%`, characters outside
/// printable ASCII and the characters `"<>\`{}|^` and backslash are
/// percent-encoded (UTF-8), as in the URI fragment form of a pointer. The
/// token is cut after [`MAX_TOKEN_BYTES`] bytes of input and marked with
/// `...`.
pub(crate) fn push_token(out: &mut String, token: &str) {
    out.push('/');
    let mut used = 0;
    for c in token.chars() {
        used += c.len_utf8();
        if used > MAX_TOKEN_BYTES {
            out.push_str("...");
            return;
        }
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            '%' | '"' | '<' | '>' | '\\' | '`' | '{' | '}' | '|' | '^' => pct(out, c),
            ' '..='~' => out.push(c),
            _ => pct(out, c),
        }
    }
}

fn pct(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        let _ = write!(out, "%{b:02X}");
    }
}

/// `prefix` followed by the segments, which are stored innermost first
/// (they are pushed while an error unwinds).
pub(crate) fn from_rev(prefix: &str, rev: &[Seg]) -> String {
    let mut out = String::from(prefix);
    for seg in rev.iter().rev() {
        match seg {
            Seg::Key(k) => push_token(&mut out, k),
            Seg::Index(i) => {
                let _ = write!(out, "/{i}");
            }
        }
    }
    out
}

/// `prefix` followed by one escaped token.
pub(crate) fn join(prefix: &str, token: &str) -> String {
    let mut out = String::from(prefix);
    push_token(&mut out, token);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_rfc6901_and_unsafe_characters() {
        assert_eq!(join("/body", "qty"), "/body/qty");
        assert_eq!(join("/body", "a/b~c"), "/body/a~1b~0c");
        assert_eq!(join("/body", "<script>"), "/body/%3Cscript%3E");
        assert_eq!(join("/body", "a\nb"), "/body/a%0Ab");
        assert_eq!(join("/body", "Zoë"), "/body/Zo%C3%AB");
        let long = "x".repeat(200);
        let p = join("/query", &long);
        assert!(p.len() < 80, "{p}");
        assert!(p.ends_with("..."));
    }

    #[test]
    fn reversed_segments() {
        let rev = vec![
            Seg::Key("qty".into()),
            Seg::Index(3),
            Seg::Key("orders".into()),
        ];
        assert_eq!(from_rev("/body", &rev), "/body/orders/3/qty");
    }
}
