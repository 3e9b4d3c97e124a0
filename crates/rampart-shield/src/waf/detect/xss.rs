//! Cross-site scripting: the value is HTML-entity-decoded (twice) and
//! tokenized the way a browser's tag scanner would read it. A tag alone is
//! not an attack (`<main>`, `<b>`, `a<b and c>d`); a dangerous element
//! (`script`, `iframe`, `svg`, …), an event-handler attribute, a script URL
//! in a URL attribute, or `srcdoc` is. The value is also read as if it were
//! placed inside an attribute value (a quote followed by a new attribute)
//! or inside a JavaScript string (a quote, an operator, a sink call), and
//! as a URL (`javascript:` at its start).
//!
//! The input is the normalised value (decoded, NFKC, lower case).

use std::borrow::Cow;

use crate::waf::normalize::{fold, html_decode};

/// Elements that run script or load active content whatever their
/// attributes.
const DANGEROUS_TAGS: &[&str] = &[
    "script",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "base",
    "meta",
    "link",
    "style",
    "svg",
    "math",
    "xml",
    "import",
    "isindex",
    "xss",
    "vmlframe",
    "bgsound",
    "layer",
    "ilayer",
    "portal",
    "template",
    "noscript",
    "xmp",
    "plaintext",
    "listing",
    "noembed",
    "noframes",
    "param",
    "animate",
    "set",
    "handler",
    "foreignobject",
];

/// Attributes whose value is fetched or navigated to.
const URL_ATTRS: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "data",
    "xlink:href",
    "background",
    "dynsrc",
    "lowsrc",
    "poster",
    "codebase",
    "cite",
    "longdesc",
    "usemap",
    "profile",
    "classid",
    "icon",
    "manifest",
    "ping",
    "archive",
    "to",
    "from",
    "values",
    "by",
    "content",
];

/// Event handlers recognised outside a tag (after whitespace in an
/// unquoted attribute value); inside a tag any `on…=` counts.
const EVENTS: &[&str] = &[
    "onabort",
    "onafterprint",
    "onanimationend",
    "onanimationiteration",
    "onanimationstart",
    "onauxclick",
    "onbeforecopy",
    "onbeforecut",
    "onbeforeinput",
    "onbeforeprint",
    "onbeforeunload",
    "onbegin",
    "onblur",
    "oncanplay",
    "oncanplaythrough",
    "onchange",
    "onclick",
    "onclose",
    "oncontextmenu",
    "oncopy",
    "oncuechange",
    "oncut",
    "ondblclick",
    "ondrag",
    "ondragend",
    "ondragenter",
    "ondragleave",
    "ondragover",
    "ondragstart",
    "ondrop",
    "ondurationchange",
    "onend",
    "onended",
    "onerror",
    "onfocus",
    "onfocusin",
    "onfocusout",
    "onformdata",
    "onfullscreenchange",
    "onhashchange",
    "oninput",
    "oninvalid",
    "onkeydown",
    "onkeypress",
    "onkeyup",
    "onload",
    "onloadeddata",
    "onloadedmetadata",
    "onloadstart",
    "onmessage",
    "onmousedown",
    "onmouseenter",
    "onmouseleave",
    "onmousemove",
    "onmouseout",
    "onmouseover",
    "onmouseup",
    "onmousewheel",
    "onoffline",
    "ononline",
    "onpagehide",
    "onpageshow",
    "onpaste",
    "onpause",
    "onplay",
    "onplaying",
    "onpointerdown",
    "onpointerenter",
    "onpointerleave",
    "onpointermove",
    "onpointerout",
    "onpointerover",
    "onpointerup",
    "onpopstate",
    "onprogress",
    "onratechange",
    "onrepeat",
    "onreset",
    "onresize",
    "onscroll",
    "onscrollend",
    "onsearch",
    "onseeked",
    "onseeking",
    "onselect",
    "onselectionchange",
    "onselectstart",
    "onshow",
    "onstart",
    "onstorage",
    "onsubmit",
    "onsuspend",
    "ontimeupdate",
    "ontoggle",
    "ontouchend",
    "ontouchmove",
    "ontouchstart",
    "ontransitionend",
    "onunload",
    "onvolumechange",
    "onwaiting",
    "onwheel",
    "onbeforetoggle",
    "onanimationcancel",
    "ontransitioncancel",
    "ontransitionrun",
    "ontransitionstart",
    "onpointercancel",
    "onpointerrawupdate",
    "ongotpointercapture",
    "onlostpointercapture",
    "onafterscriptexecute",
    "onbeforescriptexecute",
    "onactivate",
    "onbeforeactivate",
    "onbeforedeactivate",
    "ondeactivate",
    "onreadystatechange",
    "onfinish",
    "onbounce",
    "onmozfullscreenchange",
    "onwebkitanimationend",
    "onwebkittransitionend",
    "onpropertychange",
    "onfilterchange",
    "onhelp",
    "onlayoutcomplete",
    "onmove",
    "onmoveend",
    "onmovestart",
];

/// Functions and objects whose use after a JavaScript string break-out is
/// an attack.
const SINKS: &[&str] = &[
    "alert",
    "prompt",
    "confirm",
    "eval",
    "settimeout",
    "setinterval",
    "function",
    "fetch",
    "import",
    "atob",
    "print",
    "document.cookie",
    "document.domain",
    "document.write",
    "document.location",
    "window.location",
    "location.href",
    "location=",
    "string.fromcharcode",
    "constructor",
    "xmlhttprequest",
    "navigator.sendbeacon",
];

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b)
}

/// Does a URL (attribute value) use a scheme that runs script?
fn script_url(value: &str) -> bool {
    // Only a value whose first visible character can start one of the
    // schemes is worth a closer look.
    let first = value
        .trim_start_matches(|c: char| c <= ' ' || matches!(c, '"' | '\'' | '`' | '\u{7f}'))
        .bytes()
        .next();
    if !matches!(first, Some(b'j' | b'v' | b'l' | b'm' | b'd')) {
        return false;
    }
    // Browsers drop tabs and newlines anywhere in a URL and leading
    // whitespace and control characters.
    let squeezed: String = value
        .chars()
        .filter(|&c| c > ' ' && c != '\u{7f}')
        .take(48)
        .collect();
    let s = squeezed.trim_start_matches(['"', '\'', '`']);
    if let Some(rest) = s.strip_prefix("data:") {
        // A data URL runs script when its type is markup or script; a
        // raster image or plain text does not, and `data:` without a type
        // is prose.
        let mime = rest.split([';', ',']).next().unwrap_or("");
        let typed = mime.split_once('/').is_some_and(|(kind, sub)| {
            !kind.is_empty()
                && kind.bytes().all(|b| b.is_ascii_alphabetic())
                && !sub.is_empty()
                && sub
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'))
        });
        return typed
            && ![
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "text/plain",
            ]
            .contains(&mime);
    }
    s.starts_with("javascript:")
        || s.starts_with("vbscript:")
        || s.starts_with("livescript:")
        || s.starts_with("mocha:")
}

fn dangerous_style(value: &str) -> bool {
    let squeezed: String = value
        .chars()
        .filter(|&c| !c.is_whitespace() && c != '\\')
        .collect();
    [
        "expression(",
        "javascript:",
        "vbscript:",
        "behavior:",
        "-moz-binding",
        "@import",
        "url(data:",
    ]
    .iter()
    .any(|p| squeezed.contains(p))
}

/// Checks one attribute; `in_tag` when it sits in a real tag (any `on…`
/// name counts), otherwise only known event names do.
fn attribute(name: &str, value: Option<&str>, in_tag: bool) -> Option<&'static str> {
    let name = name.trim_start_matches(['"', '\'', '`', '/']);
    if let Some(event) = name.strip_prefix("on") {
        let known = EVENTS.contains(&name);
        if (known || (in_tag && event.len() >= 3 && event.bytes().all(|b| b.is_ascii_alphabetic())))
            && value.is_some()
        {
            return Some("event handler attribute");
        }
    }
    let value = value?;
    if name == "srcdoc" {
        return Some("srcdoc attribute");
    }
    if name == "style" && dangerous_style(value) {
        return Some("script in style attribute");
    }
    if URL_ATTRS.contains(&name) && script_url(value) {
        return Some("script URL");
    }
    if name == "content"
        && value.contains("url=")
        && script_url(value.split("url=").nth(1).unwrap_or(""))
    {
        return Some("script URL");
    }
    None
}

/// Parses `name[=value]` at `i`; returns the name, the value and the index
/// after them.
fn parse_attribute(s: &str, i: usize) -> (&str, Option<&str>, usize) {
    let b = s.as_bytes();
    let start = i;
    let mut j = i + 1;
    // Names longer than any real attribute are cut: the scan stays linear
    // however the text is built.
    while j - start < MAX_NAME
        && b.get(j)
            .is_some_and(|&c| !is_space(c) && !matches!(c, b'/' | b'>' | b'=' | b'<'))
    {
        j += 1;
    }
    let name = s.get(start..j).unwrap_or("");
    let mut k = j;
    while b.get(k).is_some_and(|&c| is_space(c)) {
        k += 1;
    }
    if b.get(k) != Some(&b'=') {
        return (name, None, j);
    }
    k += 1;
    while b.get(k).is_some_and(|&c| is_space(c)) {
        k += 1;
    }
    match b.get(k) {
        Some(&q @ (b'"' | b'\'' | b'`')) => {
            let end = b
                .get(k + 1..)
                .and_then(|r| r.iter().position(|&c| c == q))
                .map_or(b.len(), |p| k + 1 + p);
            (
                name,
                Some(s.get(k + 1..end).unwrap_or("")),
                (end + 1).min(b.len()),
            )
        }
        _ => {
            let mut end = k;
            while b.get(end).is_some_and(|&c| !is_space(c) && c != b'>') {
                end += 1;
            }
            (name, Some(s.get(k..end).unwrap_or("")), end)
        }
    }
}

/// Longest attribute name read.
const MAX_NAME: usize = 64;

fn tag_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b':' | b'-' | b'_' | b'.')
}

/// Tags in the text.
fn tags(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    let mut from = 0;
    let mut parsed_until = 0;
    while let Some(lt) = b
        .get(from..)
        .and_then(|r| r.iter().position(|&c| c == b'<'))
    {
        let lt = from + lt;
        from = lt + 1;
        let mut j = lt + 1;
        let closing = b.get(j) == Some(&b'/');
        if closing {
            j += 1;
        }
        match b.get(j) {
            Some(c) if c.is_ascii_alphabetic() => {}
            Some(b'!') => {
                let rest = s.get(j..).unwrap_or("");
                if ["![cdata[", "!entity", "!doctype", "!--#"]
                    .iter()
                    .any(|p| rest.starts_with(p))
                {
                    return Some("markup declaration");
                }
                continue;
            }
            Some(b'?') => {
                let rest = s.get(j..).unwrap_or("");
                if ["?xml", "?php", "?=", "?import"]
                    .iter()
                    .any(|p| rest.starts_with(p))
                {
                    return Some("processing instruction");
                }
                continue;
            }
            _ => continue,
        }
        let name_start = j;
        while b.get(j).is_some_and(|&c| tag_name_byte(c)) {
            j += 1;
        }
        let name = s.get(name_start..j).unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        if DANGEROUS_TAGS.contains(&local) {
            return Some("dangerous element");
        }
        if closing || lt < parsed_until {
            continue;
        }
        // Attributes, up to `>`, the next `<` or the end; a `<` inside a
        // tag already read is not read again, so the scan stays linear.
        let mut k = j;
        loop {
            while b.get(k).is_some_and(|&c| is_space(c) || c == b'/') {
                k += 1;
            }
            parsed_until = k;
            match b.get(k) {
                None | Some(b'>' | b'<') => break,
                Some(_) => {}
            }
            let (name, value, next) = parse_attribute(s, k);
            if let Some(reason) = attribute(name, value, true) {
                return Some(reason);
            }
            // Parsers disagree on `/` inside an unquoted value
            // (`<img/src=x/onerror=…>`): read what follows a `/` as another
            // attribute too.
            if let Some(v) = value {
                for (slash, _) in v.match_indices('/').take(16) {
                    let rest = v.get(slash + 1..).unwrap_or("");
                    if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
                        let (n, val, _) = parse_attribute(rest, 0);
                        if let Some(reason) = attribute(n, val, true) {
                            return Some(reason);
                        }
                    }
                }
            }
            k = next.max(k + 1);
        }
    }
    None
}

/// The value as the rest of an attribute value: a quote (or whitespace,
/// for an unquoted value) and then a new attribute.
fn attribute_breakout(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    // Text already read as part of an attribute is not read again (it is
    // what a browser would do, and it keeps the scan linear).
    let mut parsed_until = 0;
    for (p, &c) in b.iter().enumerate() {
        let quoted = matches!(c, b'"' | b'\'' | b'`');
        if p < parsed_until || (!quoted && !is_space(c)) {
            continue;
        }
        let mut k = p + 1;
        while b.get(k).is_some_and(|&x| is_space(x) || x == b'/') {
            k += 1;
        }
        parsed_until = k;
        if !b.get(k).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        let (name, value, end) = parse_attribute(s, k);
        parsed_until = end;
        // After a quote any `on…` handler counts, after whitespace only
        // known ones (`online=yes` is prose).
        let hit = if quoted {
            attribute(name, value, true)
        } else {
            attribute(name, value, false)
        };
        if hit.is_some() {
            return hit;
        }
    }
    // The value at its start is also an attribute when injected unquoted.
    if b.first().is_some_and(u8::is_ascii_alphabetic) {
        let (name, value, _) = parse_attribute(s, 0);
        if let Some(hit) = attribute(name, value, false) {
            return Some(hit);
        }
    }
    None
}

/// `javascript:` and friends where a URL starts: the start of the value,
/// or after `=`, a quote, `(` or `>`.
fn url_context(s: &str) -> Option<&'static str> {
    if script_url(s) {
        return Some("script URL");
    }
    if !s.contains(':') {
        return None;
    }
    let squeezed: Cow<'_, str> = if s.bytes().any(|c| matches!(c, b'\t' | b'\n' | b'\r')) {
        Cow::Owned(
            s.chars()
                .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    };
    for scheme in ["javascript:", "vbscript:", "livescript:", "data:text/html"] {
        for (at, _) in squeezed.match_indices(scheme) {
            let before = squeezed
                .get(..at)
                .unwrap_or("")
                .trim_end_matches(|c: char| c.is_whitespace() || c.is_control());
            if before.is_empty() || before.ends_with(['=', '"', '\'', '`', '(', '>', ',']) {
                return Some("script URL");
            }
        }
    }
    None
}

fn sink_at(s: &str, i: usize) -> bool {
    let rest = s.get(i..).unwrap_or("");
    let rest = ["new ", "void ", "typeof ", "(", "["]
        .iter()
        .fold(rest, |r, p| r.strip_prefix(p).unwrap_or(r));
    let rest = [
        "top.",
        "window.",
        "self.",
        "this.",
        "parent.",
        "frames.",
        "globalthis.",
        "top[",
        "window[",
    ]
    .iter()
    .fold(rest, |r, p| r.strip_prefix(p).unwrap_or(r))
    .trim_start_matches(['\'', '"']);
    SINKS.iter().any(|sink| {
        rest.strip_prefix(sink).is_some_and(|after| {
            sink.contains('.')
                || sink.ends_with('=')
                || after
                    .trim_start_matches(['\'', '"', ']', ' '])
                    .starts_with(['(', '`'])
        })
    })
}

/// A JavaScript string break-out: a quote, optional closers, an operator,
/// then a sink (`';alert(1)//`, `'-alert(1)-'`, `"+alert(1)+"`); a
/// template literal `${…}` with a sink; a sink call as the whole value.
fn js_breakout(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    for (p, &c) in b.iter().enumerate() {
        if matches!(c, b'"' | b'\'' | b'`') {
            let mut k = p + 1;
            while b
                .get(k)
                .is_some_and(|&x| is_space(x) || matches!(x, b')' | b']' | b'}'))
            {
                k += 1;
            }
            let mut ops = 0;
            while b.get(k).is_some_and(|&x| {
                matches!(
                    x,
                    b';' | b'+'
                        | b'-'
                        | b'*'
                        | b'/'
                        | b'%'
                        | b','
                        | b'|'
                        | b'&'
                        | b'^'
                        | b'?'
                        | b':'
                        | b'='
                        | b'<'
                        | b'>'
                        | b'{'
                        | b'('
                )
            }) {
                k += 1;
                ops += 1;
            }
            if ops == 0 {
                continue;
            }
            while b.get(k).is_some_and(|&x| is_space(x)) {
                k += 1;
            }
            if sink_at(s, k) {
                return Some("script string break-out");
            }
        }
    }
    for (at, _) in s.match_indices("${") {
        if sink_at(s, at + 2) {
            return Some("template literal");
        }
    }
    if let Some(at) = s.find("{{") {
        let inner = s.get(at + 2..).unwrap_or("");
        if inner.contains("constructor") || inner.contains("$on") || inner.contains("$eval") {
            return Some("template expression");
        }
    }
    let start = s.trim_start();
    if ["alert", "prompt", "confirm", "eval"].iter().any(|f| {
        start
            .strip_prefix(f)
            .is_some_and(|r| r.starts_with(['(', '`']))
    }) {
        return Some("script sink call");
    }
    None
}

/// The reason the normalised value reads as XSS, if it does.
#[must_use]
pub fn detect(folded: &str) -> Option<&'static str> {
    if !folded
        .bytes()
        .any(|c| matches!(c, b'<' | b':' | b'=' | b'(' | b'`' | b'&' | b'{'))
    {
        return None;
    }
    let once = html_decode(folded);
    let twice = match html_decode(&once) {
        Cow::Borrowed(_) => once,
        Cow::Owned(s) => Cow::Owned(s),
    };
    // Character references can spell capitals (`&#83;`): fold again, but
    // only what decoding changed.
    let text = match twice {
        Cow::Borrowed(s) => Cow::Borrowed(s),
        Cow::Owned(s) => fold(Cow::Owned(s)),
    };
    tags(&text)
        .or_else(|| attribute_breakout(&text))
        .or_else(|| url_context(&text))
        .or_else(|| js_breakout(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn xss(s: &str) {
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
            "<script>alert(1)</script>",
            "<ScRiPt src=//evil.example/x.js>",
            "<svg/onload=alert(1)>",
            "<img src=x onerror=alert(1)>",
            "<img src=x onerror=alert(1)",
            "<img/src=x/onerror=alert(1)>",
            "<body onload=alert(1)>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
            "x=javas\tcript:alert(1)",
            "<iframe src=\"data:text/html,<script>alert(1)</script>\">",
            "\"><script>alert(1)</script>",
            "\" onmouseover=\"alert(1)",
            "' autofocus onfocus='alert(1)",
            "x onerror=alert(1)",
            "javascript:alert(document.domain)",
            "  JaVaScRiPt:alert(1)",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            "＜script＞alert(1)＜/script＞",
            "<details open ontoggle=alert(1)>",
            "<div style=\"background:url(javascript:alert(1))\">",
            "<div style=\"width:expression(alert(1))\">",
            "';alert(1);//",
            "'-alert(1)-'",
            "\"+alert(document.cookie)+\"",
            "</script><script>alert(1)</script>",
            "${alert(1)}",
            "{{constructor.constructor('alert(1)')()}}",
            "<x onclick=alert(1)>click",
            "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
            "<input autofocus onfocus=alert(1)>",
            "<a href=\"&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)\">",
            "jaVasCript:/*-/*`/*\\`/*'/*\"/**/(/* */oNcliCk=alert() )//",
            "<iframe srcdoc=\"&lt;script&gt;alert(1)&lt;/script&gt;\">",
            "alert(1)",
            "<form><button formaction=javascript:alert(1)>x",
        ] {
            xss(s);
        }
    }

    #[test]
    fn benign_text() {
        for s in [
            "a < b and c > d",
            "a<b and c>d",
            "5 > 3",
            "Zoë's <main> wallet",
            "Rebalance <main> → <hedge>",
            "I <3 BTC",
            "Use <b>bold</b> moves",
            "email <jane@example.com>",
            "see https://example.com/report?id=42&lang=en",
            "Book: JavaScript: The Good Parts",
            "on=off switch",
            "online=yes",
            "Don't forget: alert(me) later",
            "price alert(s) for BTC",
            "AT&T & co",
            "x = y + 1",
            "Transfer to O'Brien's cold wallet",
            "data: 42 points",
            "Note: {{ticker}} placeholder",
            "It's 'fine' - really",
            "<https://example.com/a?b=c>",
            "price<=65000",
        ] {
            clean(s);
        }
    }
}
