//! The negative model: control-character checks, normalisation and the
//! injection detectors, over one value at a time.
//!
//! [`scan`] is the whole pipeline for one value; the submodules each take a
//! value already normalised by [`normalize`](crate::waf::normalize::normalize)
//! and say why it reads as an attack.

pub mod cmdi;
pub mod sqli;
pub mod traversal;
pub mod xss;

use std::borrow::Cow;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

use crate::waf::normalize;

/// A fixed list of substrings searched for in one pass (Aho-Corasick),
/// compiled on first use.
pub(crate) struct Patterns {
    list: &'static [&'static str],
    automaton: OnceLock<Option<AhoCorasick>>,
}

impl Patterns {
    pub(crate) const fn new(list: &'static [&'static str]) -> Self {
        Self {
            list,
            automaton: OnceLock::new(),
        }
    }

    /// Does `s` contain any of the patterns?
    pub(crate) fn is_match(&self, s: &str) -> bool {
        match self
            .automaton
            .get_or_init(|| AhoCorasick::new(self.list).ok())
        {
            Some(ac) => ac.is_match(s),
            // Building cannot fail for these short lists; if it ever did,
            // the plain search gives the same answer, more slowly.
            None => self.list.iter().any(|p| s.contains(p)),
        }
    }
}

/// A detector's finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Stable rule id (`sqli`, `xss`, `cmdi`, `jndi`, `path-traversal`,
    /// `crlf`, `null-byte`, `control-char`, `scanner`).
    pub rule: &'static str,
    /// What matched, in a few words (never the value itself).
    pub reason: &'static str,
}

impl Hit {
    const fn new(rule: &'static str, reason: &'static str) -> Self {
        Self { rule, reason }
    }
}

/// NUL, CR / LF (and the `嘊嘍` pair some runtimes truncate to CR LF), and
/// other C0 controls except TAB.
#[must_use]
pub fn controls(s: &str) -> Option<Hit> {
    for b in s.bytes() {
        match b {
            0 => return Some(Hit::new("null-byte", "NUL character")),
            b'\r' | b'\n' => return Some(Hit::new("crlf", "CR or LF character")),
            b'\t' => {}
            0x01..=0x1f | 0x7f => return Some(Hit::new("control-char", "control character")),
            _ => {}
        }
    }
    if !s.is_ascii() {
        if s.contains('\u{560a}') && s.contains('\u{560d}') {
            return Some(Hit::new("crlf", "characters truncated to CR LF"));
        }
        if s.contains(['\u{2028}', '\u{2029}', '\u{85}']) {
            return Some(Hit::new("crlf", "Unicode line separator"));
        }
    }
    None
}

/// Values made only of ASCII letters, digits, `_`, `.` and `-`, with no
/// `..`, cannot carry anything the detectors look for; most identifiers,
/// decimals and enum values are like that.
fn inert(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !s.contains("..")
}

/// The injection detectors over a normalised value.
#[must_use]
pub fn detectors(folded: &str) -> Option<Hit> {
    if let Some((rule, reason)) = cmdi::detect(folded) {
        return Some(Hit::new(rule, reason));
    }
    if let Some(reason) = traversal::detect(folded) {
        return Some(Hit::new("path-traversal", reason));
    }
    if let Some(reason) = xss::detect(folded) {
        return Some(Hit::new("xss", reason));
    }
    if let Some(reason) = sqli::detect(folded) {
        return Some(Hit::new("sqli", reason));
    }
    None
}

/// The whole negative model for one value (already decoded once by its
/// protocol: a JSON string, a query value, a path param): control
/// characters, then [`normalize::decode`] (repeated percent-decoding, at
/// most `max_rounds` rounds, and NFKC), control characters again, case
/// folding, and the detectors. When decoding changed the value the
/// detectors also see it undecoded, so a payload cannot hide behind a
/// literal `%`.
#[must_use]
pub fn scan(value: &str, max_rounds: usize) -> Option<Hit> {
    if let Some(hit) = controls(value) {
        return Some(hit);
    }
    scan_text(value, max_rounds, true)
}

/// [`scan`] without the control-character checks on the value as given
/// (for raw non-JSON bodies, where line breaks are ordinary); controls
/// that appear only after decoding are still reported.
#[must_use]
pub fn scan_injections(value: &str, max_rounds: usize) -> Option<Hit> {
    scan_text(value, max_rounds, false)
}

fn scan_text(value: &str, max_rounds: usize, decoded_controls: bool) -> Option<Hit> {
    if inert(value) {
        return None;
    }
    let decoded = normalize::decode(value, max_rounds);
    let changed = matches!(decoded, Cow::Owned(_));
    if changed && decoded_controls {
        if let Some(hit) = controls(&decoded) {
            return Some(hit);
        }
    }
    let folded = normalize::fold(decoded);
    if let Some(hit) = detectors(&folded) {
        return Some(hit);
    }
    if changed && value.contains('%') {
        let raw = normalize::fold(Cow::Borrowed(value));
        return detectors(&raw);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_before_and_after_decoding() {
        assert_eq!(scan("a\0b", 4).map(|h| h.rule), Some("null-byte"));
        assert_eq!(scan("a%00b", 4).map(|h| h.rule), Some("null-byte"));
        assert_eq!(scan("a%2500b", 4).map(|h| h.rule), Some("null-byte"));
        assert_eq!(
            scan("x\r\nSet-Cookie: a=b", 4).map(|h| h.rule),
            Some("crlf")
        );
        assert_eq!(
            scan("x%0d%0aSet-Cookie:%20a=b", 4).map(|h| h.rule),
            Some("crlf")
        );
        assert_eq!(
            scan("x%E5%98%8A%E5%98%8DSet-Cookie", 4).map(|h| h.rule),
            Some("crlf")
        );
        assert_eq!(scan("a\u{1b}[31m", 4).map(|h| h.rule), Some("control-char"));
        assert_eq!(scan("tab\tseparated", 4), None);
        assert_eq!(scan_injections("line\nbreak", 4), None);
    }

    #[test]
    fn inert_values_need_no_detectors() {
        for s in [
            "BTC-USD", "65000.00", "abc-123", "union", "select", "sleep", "whoami", "script", "id",
            "1or1", "x-1-2", "gtc", "_",
        ] {
            assert!(inert(s), "{s}");
            let folded = normalize::normalize(s, 4);
            assert_eq!(detectors(&folded), None, "{s}");
        }
        assert!(!inert(".."));
        assert!(!inert("a b"));
    }
}
