//! Header checks: request smuggling and header injection over the whole
//! header set, and which headers' values the negative model reads.
//!
//! Refused as `smuggling`:
//! - `Content-Length` together with `Transfer-Encoding`;
//! - several `Transfer-Encoding` lines, or one whose value is not exactly
//!   `chunked` (after trimming spaces and tabs; `Chunked`, `chunked,
//!   identity`, `xchunked` are refused);
//! - a `Content-Length` that is not digits only, or several whose values
//!   differ (`5, 6`, or two lines `5` and `6`);
//! - several `Host` lines;
//! - a header name that is not an RFC 9110 token, or that spells a framing
//!   header with `_` (`transfer_encoding`, which some servers rewrite);
//! - obs-fold (a line break followed by a space or tab inside a value).
//!
//! Any other CR or LF in a value is `crlf`, a NUL is `null-byte`, and any
//! other control character except TAB is `control-char`.

/// Headers whose values are scanned by the negative model (client-chosen
/// text that applications log, reflect or parse). Cookie values are
/// scanned one by one.
pub const SCANNED: &[&str] = &[
    "user-agent",
    "referer",
    "origin",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "forwarded",
    "via",
];

/// A header finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderHit {
    /// Rule id (`smuggling`, `crlf`, `null-byte`, `control-char`).
    pub rule: &'static str,
    /// The header's name as received.
    pub header: String,
    /// What is wrong.
    pub reason: &'static str,
}

fn hit(rule: &'static str, header: &str, reason: &'static str) -> Option<HeaderHit> {
    Some(HeaderHit {
        rule,
        header: header.to_owned(),
        reason,
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
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
        )
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

fn value_controls(name: &str, v: &[u8]) -> Option<HeaderHit> {
    for (i, &b) in v.iter().enumerate() {
        match b {
            0 => return hit("null-byte", name, "NUL in header value"),
            b'\r' | b'\n' => {
                let mut j = i + 1;
                if b == b'\r' && v.get(j) == Some(&b'\n') {
                    j += 1;
                }
                if matches!(v.get(j), Some(b' ' | b'\t')) {
                    return hit("smuggling", name, "obs-fold in header value");
                }
                return hit("crlf", name, "CR or LF in header value");
            }
            b'\t' => {}
            0x01..=0x1f | 0x7f => {
                return hit("control-char", name, "control character in header value")
            }
            _ => {}
        }
    }
    None
}

/// Smuggling and control-character checks over every header line.
#[must_use]
pub fn check(headers: &[(&str, &[u8])]) -> Option<HeaderHit> {
    let mut content_lengths: Vec<&[u8]> = Vec::new();
    let mut transfer_encodings: Vec<&[u8]> = Vec::new();
    let mut hosts = 0usize;
    for &(name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return hit("smuggling", name, "header name is not a token");
        }
        if let Some(h) = value_controls(name, value) {
            return Some(h);
        }
        if name.eq_ignore_ascii_case("content-length") {
            content_lengths.push(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encodings.push(value);
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.contains('_') {
            let dashed = name.replace('_', "-");
            if dashed.eq_ignore_ascii_case("content-length")
                || dashed.eq_ignore_ascii_case("transfer-encoding")
            {
                return hit("smuggling", name, "framing header spelled with `_`");
            }
        }
    }
    if !content_lengths.is_empty() && !transfer_encodings.is_empty() {
        return hit(
            "smuggling",
            "transfer-encoding",
            "both content-length and transfer-encoding",
        );
    }
    if transfer_encodings.len() > 1 {
        return hit(
            "smuggling",
            "transfer-encoding",
            "several transfer-encoding headers",
        );
    }
    if let Some(te) = transfer_encodings.first() {
        if trim_ows(te) != b"chunked" {
            return hit(
                "smuggling",
                "transfer-encoding",
                "transfer-encoding other than chunked",
            );
        }
    }
    let mut length: Option<&[u8]> = None;
    for line in content_lengths {
        for part in line.split(|&b| b == b',') {
            let part = trim_ows(part);
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return hit("smuggling", "content-length", "malformed content-length");
            }
            let digits = match part.iter().position(|&b| b != b'0') {
                Some(p) => part.get(p..).unwrap_or_default(),
                None => b"0",
            };
            match length {
                None => length = Some(digits),
                Some(seen) if seen == digits => {}
                Some(_) => {
                    return hit(
                        "smuggling",
                        "content-length",
                        "differing content-length values",
                    )
                }
            }
        }
    }
    if hosts > 1 {
        return hit("smuggling", "host", "several host headers");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(headers: &[(&str, &[u8])]) -> Option<&'static str> {
        check(headers).map(|h| h.rule)
    }

    #[test]
    fn clean_sets() {
        assert_eq!(rule(&[]), None);
        assert_eq!(
            rule(&[
                ("host", b"api.example.com"),
                ("content-length", b"42"),
                ("user-agent", b"curl/8.5.0"),
                ("accept", b"*/*"),
            ]),
            None
        );
        assert_eq!(rule(&[("transfer-encoding", b"chunked")]), None);
        assert_eq!(
            rule(&[("content-length", b"5"), ("content-length", b"5")]),
            None
        );
        assert_eq!(rule(&[("content-length", b"5, 5")]), None);
        assert_eq!(rule(&[("x-note", b"tab\there \xc3\xa9")]), None);
    }

    #[test]
    fn smuggling_sets() {
        for set in [
            vec![
                ("content-length", &b"5"[..]),
                ("transfer-encoding", b"chunked"),
            ],
            vec![
                ("transfer-encoding", b"chunked"),
                ("transfer-encoding", b"identity"),
            ],
            vec![("transfer-encoding", b"Chunked")],
            vec![("transfer-encoding", b"chunked, identity")],
            vec![("transfer-encoding", b"xchunked")],
            vec![("content-length", b"5"), ("content-length", b"6")],
            vec![("content-length", b"5, 6")],
            vec![("content-length", b"+5")],
            vec![("content-length", b"0x5")],
            vec![("content-length", b"-1")],
            vec![("content-length", b"")],
            vec![("host", b"a.example"), ("host", b"b.example")],
            vec![("transfer_encoding", b"chunked")],
            vec![("content_length", b"5")],
            vec![("transfer-encoding ", b"chunked")],
            vec![("x-a", b"ok\r\n chunked")],
        ] {
            assert_eq!(rule(&set), Some("smuggling"), "{set:?}");
        }
    }

    #[test]
    fn injection_in_values() {
        assert_eq!(rule(&[("x-a", b"a\r\nset-cookie: x=1")]), Some("crlf"));
        assert_eq!(rule(&[("x-a", b"a\nb")]), Some("crlf"));
        assert_eq!(rule(&[("x-a", b"a\0b")]), Some("null-byte"));
        assert_eq!(rule(&[("x-a", b"a\x1bb")]), Some("control-char"));
    }
}
