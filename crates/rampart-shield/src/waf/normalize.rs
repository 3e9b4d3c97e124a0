//! Normalisation for the negative model: undo the encodings an attacker
//! uses to slip a payload past a pattern, so the detectors see what the
//! application behind the gateway may eventually see.
//!
//! Every function here is linear in its input, allocates only when it
//! changes something, and never fails: bytes that do not decode are kept
//! as they are (invalid UTF-8 becomes U+FFFD).

use std::borrow::Cow;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One round of percent-decoding: `%XX`, IIS-style `%uXXXX` (as UTF-8) and,
/// with `plus_as_space`, `+` as a space (form encoding). A `%` that does not
/// start a valid escape is kept.
#[must_use]
pub fn percent_decode(input: &[u8], plus_as_space: bool) -> Cow<'_, [u8]> {
    if !(input.contains(&b'%') || plus_as_space && input.contains(&b'+')) {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'%' => {
                if let (Some(h), Some(l)) = (
                    input.get(i + 1).copied().and_then(hex),
                    input.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                if matches!(input.get(i + 1), Some(b'u' | b'U')) {
                    if let Some(c) = unicode_escape(input.get(i + 2..i + 6)) {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        i += 6;
                        continue;
                    }
                }
                out.push(b'%');
                i += 1;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn unicode_escape(digits: Option<&[u8]>) -> Option<char> {
    let digits = digits?;
    let mut n: u32 = 0;
    for &d in digits {
        n = n << 4 | u32::from(hex(d)?);
    }
    char::from_u32(n)
}

/// Replaces overlong UTF-8 encodings (`C0 AE` for `.`, `E0 80 AF` for `/`,
/// …) with the character they spell, the trick that made old servers see a
/// `../` their filters did not.
#[must_use]
pub fn fix_overlong(input: &[u8]) -> Cow<'_, [u8]> {
    if !input
        .iter()
        .any(|&b| matches!(b, 0xC0 | 0xC1 | 0xE0 | 0xF0))
    {
        return Cow::Borrowed(input);
    }
    let cont = |b: Option<&u8>| {
        b.copied()
            .filter(|b| b & 0xC0 == 0x80)
            .map(|b| u32::from(b & 0x3F))
    };
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        let decoded = match b {
            0xC0 | 0xC1 => cont(input.get(i + 1)).map(|c1| ((u32::from(b & 0x1F) << 6) | c1, 2)),
            0xE0 => match (input.get(i + 1), cont(input.get(i + 2))) {
                (Some(&b1 @ 0x80..=0x9F), Some(c2)) => Some(((u32::from(b1 & 0x3F) << 6) | c2, 3)),
                _ => None,
            },
            0xF0 => match (
                input.get(i + 1),
                cont(input.get(i + 2)),
                cont(input.get(i + 3)),
            ) {
                (Some(&b1 @ 0x80..=0x8F), Some(c2), Some(c3)) => {
                    Some(((u32::from(b1 & 0x3F) << 12) | (c2 << 6) | c3, 4))
                }
                _ => None,
            },
            _ => None,
        };
        match decoded {
            Some((code, len)) => {
                let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += len;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// One round of percent-decoding plus overlong repair, as text; `None` when
/// nothing changed.
fn decode_round(s: &str) -> Option<String> {
    let Cow::Owned(bytes) = percent_decode(s.as_bytes(), false) else {
        return None;
    };
    let bytes = match fix_overlong(&bytes) {
        Cow::Borrowed(_) => bytes,
        Cow::Owned(fixed) => fixed,
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    (text != s).then_some(text)
}

/// Unicode NFKC; `None` when the text is already in NFKC.
fn nfkc(s: &str) -> Option<String> {
    if s.is_ascii() || matches!(is_nfkc_quick(s.chars()), IsNormalized::Yes) {
        return None;
    }
    let n: String = s.nfkc().collect();
    (n != s).then_some(n)
}

/// Percent-decoding repeated until the text is stable or `max_rounds`
/// rounds have run, interleaved with NFKC (which can itself produce a `%`
/// from a fullwidth `％`). Case is kept.
#[must_use]
pub fn decode(s: &str, max_rounds: usize) -> Cow<'_, str> {
    let mut cur: Cow<'_, str> = Cow::Borrowed(s);
    let mut rounds = 0;
    loop {
        let mut changed = false;
        if rounds < max_rounds {
            if let Some(d) = decode_round(&cur) {
                cur = Cow::Owned(d);
                rounds += 1;
                changed = true;
            }
        }
        if let Some(n) = nfkc(&cur) {
            cur = Cow::Owned(n);
            changed = true;
        }
        // NFKC is idempotent, so without a new decoding round nothing
        // changes any more.
        if !changed || rounds >= max_rounds {
            if let Some(n) = nfkc(&cur) {
                cur = Cow::Owned(n);
            }
            return cur;
        }
    }
}

/// Lower-case (Unicode) folding.
#[must_use]
pub fn fold(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(s.to_ascii_lowercase());
        }
        return s;
    }
    let lower = s.to_lowercase();
    if lower == *s {
        s
    } else {
        Cow::Owned(lower)
    }
}

/// The negative model's view of a value: [`decode`] then [`fold`].
#[must_use]
pub fn normalize(s: &str, max_rounds: usize) -> Cow<'_, str> {
    fold(decode(s, max_rounds))
}

/// Decodes HTML character references: decimal and hex (with or without the
/// final `;`, any number of leading zeros) and the named references that
/// matter for markup and URLs. One round; call it twice for `&amp;lt;`.
#[must_use]
pub fn html_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    let mut i = 0;
    while let Some(rel) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'&'))
    {
        let at = i + rel;
        match entity(bytes.get(at + 1..).unwrap_or_default()) {
            Some((c, len)) => {
                out.push_str(s.get(last..at).unwrap_or_default());
                out.push(c);
                last = at + 1 + len;
                i = last;
            }
            None => i = at + 1,
        }
    }
    out.push_str(s.get(last..).unwrap_or_default());
    Cow::Owned(out)
}

/// The character of the reference that starts just after a `&`, and how
/// many bytes it used.
fn entity(rest: &[u8]) -> Option<(char, usize)> {
    if let Some(num) = rest.strip_prefix(b"#") {
        let (radix, digits_at) = match num.first() {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = rest.get(digits_at..)?;
        let mut value: u32 = 0;
        let mut n = 0;
        for &d in digits {
            let v = match (radix, d) {
                (10, b'0'..=b'9') => u32::from(d - b'0'),
                (16, _) => match hex(d) {
                    Some(h) => u32::from(h),
                    None => break,
                },
                _ => break,
            };
            value = value.saturating_mul(radix).saturating_add(v);
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let mut len = digits_at + n;
        if rest.get(len) == Some(&b';') {
            len += 1;
        }
        let c = match value {
            0 => char::REPLACEMENT_CHARACTER,
            v => char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER),
        };
        return Some((c, len));
    }
    let name_len = rest
        .iter()
        .take(12)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    let name = std::str::from_utf8(rest.get(..name_len)?).ok()?;
    let has_semi = rest.get(name_len) == Some(&b';');
    let c = match name.to_ascii_lowercase().as_str() {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ if !has_semi => return None,
        "colon" => ':',
        "tab" => '\t',
        "newline" => '\n',
        "sol" => '/',
        "bsol" => '\\',
        "lpar" => '(',
        "rpar" => ')',
        "equals" => '=',
        "excl" => '!',
        "num" => '#',
        "dollar" => '$',
        "percnt" => '%',
        "period" => '.',
        "comma" => ',',
        "semi" => ';',
        "lsqb" | "lbrack" => '[',
        "rsqb" | "rbrack" => ']',
        "lcub" | "lbrace" => '{',
        "rcub" | "rbrace" => '}',
        "grave" => '`',
        "hat" => '^',
        "quest" => '?',
        "plus" => '+',
        "ast" | "midast" => '*',
        "lowbar" => '_',
        "vert" | "verbar" => '|',
        "commat" => '@',
        _ => return None,
    };
    Some((c, name_len + usize::from(has_semi)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(&*percent_decode(b"a%20b+c", true), b"a b c");
        assert_eq!(&*percent_decode(b"a%20b+c", false), b"a b+c");
        assert_eq!(&*percent_decode(b"%zz%4", false), b"%zz%4");
        assert_eq!(&*percent_decode(b"%u002e%U002F", false), b"./");
        assert_eq!(&*percent_decode(b"%ud800", false), b"%ud800");
        assert!(matches!(percent_decode(b"plain", true), Cow::Borrowed(_)));
    }

    #[test]
    fn repeated_decoding_is_capped() {
        assert_eq!(decode("%2527", 4), "'");
        assert_eq!(decode("%252527", 4), "'");
        // Five layers, four rounds: one layer stays.
        assert_eq!(decode("%2525252527", 4), "%27");
        assert_eq!(decode("100% sure", 4), "100% sure");
        assert_eq!(decode("50%25 off", 4), "50% off");
    }

    #[test]
    fn overlong_and_fullwidth() {
        assert_eq!(decode("%c0%ae%c0%ae%c0%af", 4), "../");
        assert_eq!(decode("%e0%80%ae", 4), ".");
        assert_eq!(decode("%f0%80%80%af", 4), "/");
        assert_eq!(decode("%ff", 4), "\u{fffd}");
        assert_eq!(normalize("＜ＳＣＲＩＰＴ＞", 4), "<script>");
        assert_eq!(normalize("＇ ｏｒ １＝１", 4), "' or 1=1");
        // A fullwidth percent sign decodes after NFKC.
        assert_eq!(normalize("％２７", 4), "'");
        assert_eq!(normalize("Zoë Müller 株式", 4), "zoë müller 株式");
    }

    #[test]
    fn html_references() {
        assert_eq!(html_decode("&lt;script&gt;"), "<script>");
        assert_eq!(html_decode("&#60;&#x3C;&#X3c&#0000060;"), "<<<<");
        assert_eq!(html_decode("java&Tab;script&colon;"), "java\tscript:");
        assert_eq!(
            html_decode("AT&T & co &unknown; &#;"),
            "AT&T & co &unknown; &#;"
        );
        assert_eq!(html_decode(&html_decode("&amp;lt;")), "<");
        assert_eq!(html_decode("&#99999999999999999999;"), "\u{fffd}");
        assert_eq!(html_decode("tail &"), "tail &");
    }
}
