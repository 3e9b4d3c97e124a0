#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
//! Bounded work: inputs built to make a careless scanner quadratic (long
//! runs of separators, unclosed quotes, parens and tags, repeated openers)
//! go through the whole negative model in linear time. At 64 KiB a
//! quadratic pass would take seconds even in release; the bound here is
//! generous for an unoptimised build.

use std::time::{Duration, Instant};

use rampart_shield::waf::{detect, Inspector, Limits, Request};

fn adversarial() -> Vec<(&'static str, String)> {
    let n = 64 * 1024;
    let rep = |unit: &str| unit.repeat(n / unit.len());
    vec![
        ("spaces then a word", format!("{}a=1", " ".repeat(n))),
        ("unclosed tags", rep("<a ")),
        ("tags with unclosed quoted values", rep("<a x=\"")),
        ("quotes inside names", rep("a\"")),
        ("quotes and unquoted values", rep("\"a=x")),
        ("single quotes and spaces", rep("' ")),
        ("template openers", rep("{{")),
        (
            "closing braces then a lookup",
            format!("{}${{", "}".repeat(n)),
        ),
        ("nested lookups", rep("${")),
        ("logic and unclosed calls", rep(" or f(")),
        ("selects and commas", rep("select a,")),
        ("semicolons", rep("; ")),
        ("pipes and commands", rep("|cat ")),
        ("dots and slashes", rep("../")),
        ("percent signs", rep("%25")),
        ("entities", rep("&#x3c;")),
        ("parens", rep("(")),
        ("backticks", rep("`")),
        ("non-ASCII", rep("é<")),
    ]
}

#[test]
fn the_scan_is_linear_on_adversarial_text() {
    let limit = if cfg!(debug_assertions) {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(200)
    };
    for (name, text) in adversarial() {
        let start = Instant::now();
        let _ = detect::scan(&text, 4);
        let _ = detect::scan_injections(&text, 4);
        let took = start.elapsed();
        assert!(took < limit, "{name}: {took:?}");
    }
}

#[test]
fn raw_text_bodies_without_a_schema_are_bounded() {
    let inspector = Inspector::new(Limits {
        max_body_bytes: 128 * 1024,
        ..Limits::default()
    });
    for (name, text) in adversarial() {
        let req = Request {
            method: "POST",
            path: "/x",
            params: &[],
            query: None,
            headers: &[],
            content_type: Some("text/plain"),
            body: text.as_bytes(),
        };
        let start = Instant::now();
        let _ = inspector.inspect(None, &req);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "{name}: {took:?}");
    }
}
