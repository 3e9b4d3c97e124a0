//! A small, strict RFC 8941 Structured Field Values parser: just what
//! `Signature-Input`, `Signature` and `Content-Digest` need (dictionaries
//! whose members are items or inner lists, with parameters).
//!
//! Zero-copy where it can be: strings borrow from the input unless they
//! contain escapes, tokens borrow, byte sequences are handed back as their
//! (validated) base64 text and decoded by the caller into the buffer it
//! wants. Every member records the span of its value in the input, so
//! `@signature-params` can be taken exactly as received.
//!
//! Stricter than RFC 8941 on purpose (each a documented rejection, never a
//! silent reinterpretation):
//! - inputs longer than [`MAX_FIELD_LEN`] bytes are rejected before parsing;
//! - at most [`MAX_DICT_MEMBERS`] dictionary members, [`MAX_INNER_LIST`]
//!   inner-list items and [`MAX_PARAMS`] parameters per item;
//! - keys are at most [`MAX_KEY_LEN`] characters;
//! - a duplicate dictionary key or parameter key is an error (RFC 8941
//!   would let the last one win, which lets two parties read one header two
//!   ways);
//! - RFC 9651 dates (`@`) and display strings (`%`) are not understood.

use std::borrow::Cow;
use std::ops::Range;

/// Longest field value (all lines combined) the parser looks at.
pub(crate) const MAX_FIELD_LEN: usize = 8 * 1024;
/// Most dictionary members.
pub(crate) const MAX_DICT_MEMBERS: usize = 16;
/// Most items in one inner list.
pub(crate) const MAX_INNER_LIST: usize = 64;
/// Most parameters on one item or inner list.
pub(crate) const MAX_PARAMS: usize = 16;
/// Longest dictionary or parameter key.
pub(crate) const MAX_KEY_LEN: usize = 64;

/// Why a field value does not parse. The message never echoes input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SfError(pub(crate) &'static str);

/// A bare item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BareItem<'a> {
    /// `sf-integer`.
    Integer(i64),
    /// `sf-decimal`, in thousandths.
    Decimal(i64),
    /// `sf-string`, unescaped.
    String(Cow<'a, str>),
    /// `sf-token`.
    Token(&'a str),
    /// `sf-binary`: the base64 text between the colons, not yet decoded
    /// (only base64 alphabet characters and `=`).
    ByteSeq(&'a str),
    /// `sf-boolean`.
    Boolean(bool),
}

/// Parameters, in order, keys unique.
pub(crate) type Params<'a> = Vec<(&'a str, BareItem<'a>)>;

/// An item with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item<'a> {
    /// The bare item.
    pub(crate) bare: BareItem<'a>,
    /// Its parameters.
    pub(crate) params: Params<'a>,
    /// Where the bare item (without parameters) sits in the input.
    pub(crate) span: Range<usize>,
}

/// A dictionary member's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberValue<'a> {
    /// A single item.
    Item(Item<'a>),
    /// An inner list and its parameters.
    InnerList {
        /// The list's items.
        items: Vec<Item<'a>>,
        /// The list's own parameters.
        params: Params<'a>,
    },
}

/// One dictionary member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member<'a> {
    /// The member's key.
    pub(crate) key: &'a str,
    /// The member's value.
    pub(crate) value: MemberValue<'a>,
    /// Where the value, parameters included, sits in the input (for a bare
    /// `key` member, which is `true`, just its parameters).
    pub(crate) value_span: Range<usize>,
}

/// Parses an RFC 8941 Dictionary.
pub(crate) fn parse_dictionary(input: &str) -> Result<Vec<Member<'_>>, SfError> {
    if input.len() > MAX_FIELD_LEN {
        return Err(SfError("field value is too long"));
    }
    let mut p = Parser { s: input, pos: 0 };
    p.skip_sp();
    let mut members: Vec<Member<'_>> = Vec::new();
    if p.at_end() {
        return Ok(members);
    }
    loop {
        let key = p.parse_key()?;
        if members.iter().any(|m| m.key == key) {
            return Err(SfError("duplicate dictionary key"));
        }
        if members.len() >= MAX_DICT_MEMBERS {
            return Err(SfError("too many dictionary members"));
        }
        let (start, value) = if p.peek() == Some(b'=') {
            p.bump();
            let start = p.pos;
            (start, p.parse_item_or_inner_list()?)
        } else {
            let start = p.pos;
            let params = p.parse_params()?;
            let item = Item {
                bare: BareItem::Boolean(true),
                params,
                span: start..start,
            };
            (start, MemberValue::Item(item))
        };
        members.push(Member {
            key,
            value,
            value_span: start..p.pos,
        });
        p.skip_ows();
        if p.at_end() {
            return Ok(members);
        }
        if p.peek() != Some(b',') {
            return Err(SfError("expected `,` between dictionary members"));
        }
        p.bump();
        p.skip_ows();
        if p.at_end() {
            return Err(SfError("trailing `,` in dictionary"));
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn slice(&self, range: Range<usize>) -> Result<&'a str, SfError> {
        // INVARIANT: every boundary handed here sits next to an ASCII byte
        // the parser has checked, so it is a char boundary; `get` still
        // turns any mistake into an error rather than a panic.
        self.s.get(range).ok_or(SfError("internal: bad slice"))
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.bump();
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
    }

    fn parse_key(&mut self) -> Result<&'a str, SfError> {
        let start = self.pos;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.bump(),
            _ => return Err(SfError("expected a key")),
        }
        while let Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*') = self.peek() {
            self.bump();
        }
        if self.pos - start > MAX_KEY_LEN {
            return Err(SfError("key is too long"));
        }
        self.slice(start..self.pos)
    }

    fn parse_item_or_inner_list(&mut self) -> Result<MemberValue<'a>, SfError> {
        if self.peek() == Some(b'(') {
            self.parse_inner_list()
        } else {
            self.parse_item().map(MemberValue::Item)
        }
    }

    fn parse_inner_list(&mut self) -> Result<MemberValue<'a>, SfError> {
        // Caller saw `(`.
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.peek() == Some(b')') {
                self.bump();
                let params = self.parse_params()?;
                return Ok(MemberValue::InnerList { items, params });
            }
            if items.len() >= MAX_INNER_LIST {
                return Err(SfError("too many inner list items"));
            }
            items.push(self.parse_item()?);
            match self.peek() {
                Some(b' ' | b')') => {}
                None => return Err(SfError("unterminated inner list")),
                Some(_) => return Err(SfError("expected ` ` or `)` in inner list")),
            }
        }
    }

    fn parse_item(&mut self) -> Result<Item<'a>, SfError> {
        let start = self.pos;
        let bare = self.parse_bare_item()?;
        let span = start..self.pos;
        let params = self.parse_params()?;
        Ok(Item { bare, params, span })
    }

    fn parse_params(&mut self) -> Result<Params<'a>, SfError> {
        let mut params: Params<'a> = Vec::new();
        while self.peek() == Some(b';') {
            self.bump();
            self.skip_sp();
            let key = self.parse_key()?;
            let value = if self.peek() == Some(b'=') {
                self.bump();
                self.parse_bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            if params.iter().any(|(k, _)| *k == key) {
                return Err(SfError("duplicate parameter"));
            }
            if params.len() >= MAX_PARAMS {
                return Err(SfError("too many parameters"));
            }
            params.push((key, value));
        }
        Ok(params)
    }

    fn parse_bare_item(&mut self) -> Result<BareItem<'a>, SfError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.parse_number(),
            Some(b'"') => self.parse_string().map(BareItem::String),
            Some(b'*' | b'a'..=b'z' | b'A'..=b'Z') => self.parse_token().map(BareItem::Token),
            Some(b':') => self.parse_byte_seq().map(BareItem::ByteSeq),
            Some(b'?') => self.parse_boolean().map(BareItem::Boolean),
            _ => Err(SfError("expected an item")),
        }
    }

    fn parse_number(&mut self) -> Result<BareItem<'a>, SfError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.bump();
        }
        let mut int_part: i64 = 0;
        let mut int_digits = 0usize;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            int_digits += 1;
            if int_digits > 15 {
                return Err(SfError("integer has too many digits"));
            }
            int_part = int_part * 10 + i64::from(d - b'0');
            self.bump();
        }
        if int_digits == 0 {
            return Err(SfError("expected a digit"));
        }
        if self.peek() != Some(b'.') {
            return Ok(BareItem::Integer(if negative {
                -int_part
            } else {
                int_part
            }));
        }
        if int_digits > 12 {
            return Err(SfError("decimal has too many integer digits"));
        }
        self.bump();
        let mut frac: i64 = 0;
        let mut frac_digits = 0u32;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            frac_digits += 1;
            if frac_digits > 3 {
                return Err(SfError("decimal has too many fraction digits"));
            }
            frac = frac * 10 + i64::from(d - b'0');
            self.bump();
        }
        if frac_digits == 0 {
            return Err(SfError("decimal ends in `.`"));
        }
        let thousandths = int_part * 1000 + frac * 10_i64.pow(3 - frac_digits);
        Ok(BareItem::Decimal(if negative {
            -thousandths
        } else {
            thousandths
        }))
    }

    fn parse_string(&mut self) -> Result<Cow<'a, str>, SfError> {
        // Caller saw `"`.
        self.bump();
        let start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            match self.peek() {
                None => return Err(SfError("unterminated string")),
                Some(b'"') => {
                    let end = self.pos;
                    self.bump();
                    return match owned {
                        Some(s) => Ok(Cow::Owned(s)),
                        None => self.slice(start..end).map(Cow::Borrowed),
                    };
                }
                Some(b'\\') => {
                    let before = self.pos;
                    self.bump();
                    let c = match self.peek() {
                        Some(c @ (b'"' | b'\\')) => c,
                        _ => return Err(SfError("bad escape in string")),
                    };
                    self.bump();
                    let buf = match owned.as_mut() {
                        Some(buf) => buf,
                        None => owned.insert(self.slice(start..before)?.to_owned()),
                    };
                    buf.push(char::from(c));
                }
                Some(c @ 0x20..=0x7e) => {
                    self.bump();
                    if let Some(buf) = owned.as_mut() {
                        buf.push(char::from(c));
                    }
                }
                Some(_) => return Err(SfError("string has a character outside printable ASCII")),
            }
        }
    }

    fn parse_token(&mut self) -> Result<&'a str, SfError> {
        let start = self.pos;
        // Caller checked the first character.
        self.bump();
        while let Some(c) = self.peek() {
            if is_tchar(c) || c == b':' || c == b'/' {
                self.bump();
            } else {
                break;
            }
        }
        self.slice(start..self.pos)
    }

    fn parse_byte_seq(&mut self) -> Result<&'a str, SfError> {
        // Caller saw `:`.
        self.bump();
        let start = self.pos;
        loop {
            match self.peek() {
                Some(b':') => {
                    let end = self.pos;
                    self.bump();
                    return self.slice(start..end);
                }
                Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=') => self.bump(),
                None => return Err(SfError("unterminated byte sequence")),
                Some(_) => return Err(SfError("byte sequence has a non-base64 character")),
            }
        }
    }

    fn parse_boolean(&mut self) -> Result<bool, SfError> {
        // Caller saw `?`.
        self.bump();
        let v = match self.peek() {
            Some(b'1') => true,
            Some(b'0') => false,
            _ => return Err(SfError("bad boolean")),
        };
        self.bump();
        Ok(v)
    }
}

/// RFC 9110 `tchar`.
pub(crate) const fn is_tchar(c: u8) -> bool {
    matches!(
        c,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
            | b'0'..=b'9'
            | b'a'..=b'z'
            | b'A'..=b'Z'
    )
}

/// Base64 as RFC 8941 byte sequences use it: standard alphabet, padding
/// optional (RFC 8941 §3.3.5 says parsers SHOULD accept it missing), but
/// non-zero trailing bits rejected so one value has one encoding.
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Writes an RFC 8941 string (quotes and escapes) to `out`. The caller has
/// checked that `s` is printable ASCII.
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
mod tests {
    use super::*;

    #[test]
    fn signature_input_shape() {
        let s = r#"sig1=("@method" "@path");created=1618884473;keyid="k";alg="ed25519""#;
        let d = parse_dictionary(s).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].key, "sig1");
        assert_eq!(&s[d[0].value_span.clone()], &s[5..]);
        let MemberValue::InnerList { items, params } = &d[0].value else {
            panic!("inner list");
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].bare, BareItem::String("@method".into()));
        assert_eq!(&s[items[1].span.clone()], "\"@path\"");
        assert_eq!(params[0], ("created", BareItem::Integer(1_618_884_473)));
        assert_eq!(params[1], ("keyid", BareItem::String("k".into())));
    }

    #[test]
    fn bare_items() {
        let d =
            parse_dictionary(r#"a=1, b=-2.5, c="x\"y\\z", d=tok/en:1, e=:AAE=:, f=?0, g, h;p=1;q"#)
                .unwrap();
        let v: Vec<_> = d
            .iter()
            .map(|m| match &m.value {
                MemberValue::Item(i) => i.bare.clone(),
                MemberValue::InnerList { .. } => panic!(),
            })
            .collect();
        assert_eq!(
            v,
            vec![
                BareItem::Integer(1),
                BareItem::Decimal(-2500),
                BareItem::String("x\"y\\z".into()),
                BareItem::Token("tok/en:1"),
                BareItem::ByteSeq("AAE="),
                BareItem::Boolean(false),
                BareItem::Boolean(true),
                BareItem::Boolean(true),
            ]
        );
        let MemberValue::Item(h) = &d[7].value else {
            panic!()
        };
        assert_eq!(
            h.params,
            vec![("p", BareItem::Integer(1)), ("q", BareItem::Boolean(true))]
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "a=1,",
            "a=1,,b=2",
            "A=1",
            "a=1, a=2",
            "a=(\"x\"",
            "a=(\"x\"\"y\")",
            "a=\"unterminated",
            "a=\"bad\\n\"",
            "a=:abc",
            "a=:a-c:",
            "a=1234567890123456",
            "a=1.",
            "a=1.2345",
            "a=1;p;p",
            "a=?2",
            "a=@123",
            "a=%\"x\"",
            "a=1 b=2",
            "a=\"\u{e9}\"",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn limits() {
        let many: Vec<String> = (0..17).map(|i| format!("k{i}=1")).collect();
        assert!(parse_dictionary(&many.join(", ")).is_err());
        assert!(parse_dictionary(&many[..16].join(", ")).is_ok());
        let items: Vec<String> = (0..65).map(|i| format!("\"h{i}\"")).collect();
        assert!(parse_dictionary(&format!("s=({})", items.join(" "))).is_err());
        assert!(parse_dictionary(&format!("s=({})", items[..64].join(" "))).is_ok());
        let long = format!("a=\"{}\"", "x".repeat(MAX_FIELD_LEN));
        assert!(parse_dictionary(&long).is_err());
        assert!(parse_dictionary(&"k".repeat(65)).is_err());
    }

    #[test]
    fn whitespace() {
        let d = parse_dictionary("  a=1 ,\tb=( \"x\"  \"y\" );p=2  ").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].value_span.end, "  a=1 ,\tb=( \"x\"  \"y\" );p=2".len());
        assert!(parse_dictionary("").unwrap().is_empty());
    }
}
