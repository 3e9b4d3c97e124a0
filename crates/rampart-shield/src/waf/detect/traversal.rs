//! Path traversal and local file inclusion: a `..` path segment once the
//! value is decoded (`..%2f`, `%2e%2e%5c`, `%c0%ae%c0%ae/`, `..;/`,
//! `....//`, Unicode slashes), a well-known sensitive file
//! (`/etc/passwd`, `win.ini`, `/proc/self/…`), or a local-file URL scheme
//! (`file://`, `php://filter`, `phar://`).
//!
//! The input is the normalised value (decoded, NFKC, lower case).

use std::borrow::Cow;

use super::Patterns;

static SENSITIVE_FILES: Patterns = Patterns::new(SENSITIVE);
static FILE_SCHEMES: Patterns = Patterns::new(SCHEMES);

const SENSITIVE: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/hosts",
    "etc/issue",
    "etc/master.passwd",
    "etc/sudoers",
    "etc/crontab",
    "proc/self/",
    "proc/version",
    "proc/cmdline",
    "/.ssh/",
    "id_rsa",
    "id_dsa",
    "id_ed25519",
    ".bash_history",
    ".htpasswd",
    "/.htaccess",
    "win.ini",
    "system.ini",
    "boot.ini",
    "windows/system32",
    "winnt/system32",
    "system32/config",
    "wp-config.php",
    "/.git/config",
    "web-inf/web.xml",
    "/var/log/",
    "/var/run/secrets",
    "/root/.",
    "c:/windows/",
];

const SCHEMES: &[&str] = &[
    "file://",
    "file:/",
    "php://",
    "phar://",
    "zip://",
    "expect://",
    "glob://",
    "jar:file:",
    "netdoc:",
];

/// Characters some stacks treat as a path separator.
const SLASHES: &[char] = &[
    '\\', '\u{2215}', '\u{2044}', '\u{29f5}', '\u{fe68}', '\u{ff3c}',
];

/// Does a segment walk up (`..`, `..;x`, `....`)?
fn dot_segments(s: &str) -> bool {
    let has_sep = s.contains('/');
    let mut parts = s.split('/').peekable();
    while let Some(seg) = parts.next() {
        let last = parts.peek().is_none();
        let dots_only = !seg.is_empty() && seg.bytes().all(|b| b == b'.');
        if seg == ".." && (!last || has_sep || s == "..") {
            return true;
        }
        if dots_only && seg.len() >= 3 && !last {
            return true;
        }
        if seg.starts_with("..;") {
            return true;
        }
    }
    false
}

/// The reason the normalised value reads as path traversal, if it does.
#[must_use]
pub fn detect(folded: &str) -> Option<&'static str> {
    let unicode_slash = !folded.is_ascii() && folded.contains(SLASHES);
    if !unicode_slash
        && !folded
            .bytes()
            .any(|b| matches!(b, b'.' | b'/' | b'\\' | b':'))
    {
        return None;
    }
    let s: Cow<'_, str> = if unicode_slash || folded.contains('\\') {
        Cow::Owned(folded.replace(SLASHES, "/"))
    } else {
        Cow::Borrowed(folded)
    };
    if s.contains("..") && dot_segments(&s) {
        return Some("dot-dot path segment");
    }
    if SENSITIVE_FILES.is_match(&s) {
        return Some("sensitive file");
    }
    if s.contains(':') && FILE_SCHEMES.is_match(&s) {
        return Some("local file scheme");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn hit(s: &str) {
        let n = crate::waf::normalize::normalize(s, 4);
        assert!(detect(&n).is_some(), "missed: {s}");
    }

    #[track_caller]
    fn clean(s: &str) {
        let n = crate::waf::normalize::normalize(s, 4);
        assert_eq!(detect(&n), None, "false positive: {s}");
    }

    #[test]
    fn true_positives() {
        for s in [
            "../../../etc/passwd",
            "..\\..\\windows\\win.ini",
            "..%2f..%2fetc",
            "%2e%2e%2f%2e%2e%2f",
            "..%252f..%252f",
            "%c0%ae%c0%ae%c0%af",
            "..%c0%af..%c0%af",
            "..;/admin",
            "....//....//etc",
            "..",
            "a/..",
            "．．／．．／",
            "..%u2215..%u2215",
            "/etc/shadow",
            "file:///etc/hosts",
            "php://filter/convert.base64-encode/resource=index.php",
            "C:\\Windows\\System32\\drivers\\etc\\hosts",
            "/proc/self/environ",
        ] {
            hit(s);
        }
    }

    #[test]
    fn benign_text() {
        for s in [
            "Wait... then buy",
            "...",
            "so... / then",
            "BTC/USD hedge 1:2",
            "1/2 of BTC",
            "24/7 desk",
            "see https://example.com/a/b?c=d",
            "file: invoice 42.pdf",
            "C:\\Users\\me\\Documents",
            "v1.2.3",
            "hmm.. ok",
        ] {
            clean(s);
        }
    }
}
