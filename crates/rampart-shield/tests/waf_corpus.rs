#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
//! The team's corpora against the demo routes: every expanded attack is
//! refused, no benign request is, and the negative model alone catches the
//! injections placed in free-text fields. Prints detection and
//! false-positive rates per category (`cargo test -p rampart-shield --test
//! waf_corpus -- --nocapture`).

use std::collections::BTreeMap;

use rampart_shield::waf::corpus::{self, CorpusRequest};
use rampart_shield::waf::{Inspector, Limits, RouteSchema, Violation};

const ATTACKS: &str = include_str!("../corpus/attacks.jsonl");
const BENIGN: &str = include_str!("../corpus/benign.jsonl");

/// Categories the negative model must catch on its own.
const INJECTIONS: &[&str] = &[
    "sqli",
    "xss",
    "cmdi",
    "traversal",
    "crlf",
    "null-byte",
    "control-char",
];

/// The detection rate the negative model alone must reach on injections in
/// free-text fields (what it reaches is printed; see the assertion).
const FREE_TEXT_THRESHOLD: f64 = 0.99;

#[derive(Default)]
struct Tally {
    total: usize,
    invalid: usize,
    blocked: usize,
}

impl Tally {
    fn add(&mut self, outcome: &Result<(), Violation>) {
        self.total += 1;
        match outcome {
            Ok(()) => {}
            Err(Violation::Invalid { .. }) => self.invalid += 1,
            Err(Violation::Blocked { .. }) => self.blocked += 1,
        }
    }

    fn refused(&self) -> usize {
        self.invalid + self.blocked
    }

    fn rate(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        f64::from(u32::try_from(self.refused()).unwrap_or(u32::MAX))
            / f64::from(u32::try_from(self.total).unwrap_or(u32::MAX))
    }
}

fn schema_for<'s>(
    schemas: &'s [(&str, RouteSchema)],
    r: &CorpusRequest,
) -> Option<&'s RouteSchema> {
    schemas
        .iter()
        .find(|(action, _)| *action == r.action)
        .map(|(_, s)| s)
}

fn print_table(title: &str, tallies: &BTreeMap<String, Tally>) {
    println!("\n{title}");
    println!(
        "{:<22} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "category", "total", "refused", "invalid", "blocked", "rate"
    );
    let mut all = Tally::default();
    for (cat, t) in tallies {
        println!(
            "{:<22} {:>7} {:>8} {:>8} {:>8} {:>7.2}%",
            cat,
            t.total,
            t.refused(),
            t.invalid,
            t.blocked,
            t.rate() * 100.0
        );
        all.total += t.total;
        all.invalid += t.invalid;
        all.blocked += t.blocked;
    }
    println!(
        "{:<22} {:>7} {:>8} {:>8} {:>8} {:>7.2}%",
        "ALL",
        all.total,
        all.refused(),
        all.invalid,
        all.blocked,
        all.rate() * 100.0
    );
}

fn short(r: &CorpusRequest) -> String {
    let body = String::from_utf8_lossy(&r.body);
    let body: String = body.chars().take(160).collect();
    format!(
        "{} ({}) {} {} {}?{} body={body}",
        r.category,
        r.note,
        r.placement,
        r.method,
        r.path.chars().take(120).collect::<String>(),
        r.query
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect::<String>()
    )
}

#[test]
fn corpora_against_the_demo_routes() {
    let attacks = corpus::parse_attacks(ATTACKS).unwrap();
    let benign = corpus::parse_benign(BENIGN).unwrap();
    assert!(attacks.len() >= 300, "{} attack payloads", attacks.len());
    assert!(benign.len() >= 300, "{} benign requests", benign.len());
    let schemas = corpus::demo_schemas().unwrap();
    let inspector = Inspector::new(Limits::default());
    let expanded = corpus::expand_attacks(&attacks);
    println!(
        "{} attack payloads expanded to {} requests; {} benign requests",
        attacks.len(),
        expanded.len(),
        benign.len()
    );

    // Positive and negative model together.
    let mut with_schema: BTreeMap<String, Tally> = BTreeMap::new();
    let mut misses = Vec::new();
    for r in &expanded {
        let outcome = r.inspect(&inspector, schema_for(&schemas, r));
        if outcome.is_ok() {
            misses.push(short(r));
        }
        with_schema
            .entry(r.category.clone())
            .or_default()
            .add(&outcome);
    }
    print_table(
        "attacks, route schemas + detectors (detection rate)",
        &with_schema,
    );

    // The negative model alone.
    let mut alone_free: BTreeMap<String, Tally> = BTreeMap::new();
    let mut alone_all: BTreeMap<String, Tally> = BTreeMap::new();
    let mut free_misses = Vec::new();
    for r in &expanded {
        let outcome = r.inspect(&inspector, None);
        alone_all
            .entry(r.category.clone())
            .or_default()
            .add(&outcome);
        if r.free_text() {
            if outcome.is_ok() && INJECTIONS.contains(&r.category.as_str()) {
                free_misses.push(short(r));
            }
            alone_free
                .entry(r.category.clone())
                .or_default()
                .add(&outcome);
        }
    }
    print_table(
        "attacks, no schema, free-text fields only (/body/note, /body/memo)",
        &alone_free,
    );
    print_table("attacks, no schema, every placement", &alone_all);

    // Benign requests.
    let mut fp_schema: BTreeMap<String, Tally> = BTreeMap::new();
    let mut fp_alone: BTreeMap<String, Tally> = BTreeMap::new();
    let mut false_positives = Vec::new();
    for r in &benign {
        let outcome = r.inspect(&inspector, schema_for(&schemas, r));
        if let Err(v) = &outcome {
            false_positives.push(format!("with schema: {v} :: {}", short(r)));
        }
        fp_schema
            .entry(r.category.clone())
            .or_default()
            .add(&outcome);
        let outcome = r.inspect(&inspector, None);
        if let Err(v) = &outcome {
            false_positives.push(format!("no schema: {v} :: {}", short(r)));
        }
        fp_alone
            .entry(r.category.clone())
            .or_default()
            .add(&outcome);
    }
    print_table(
        "benign, route schemas + detectors (false-positive rate)",
        &fp_schema,
    );
    print_table("benign, no schema (false-positive rate)", &fp_alone);

    let injected: Vec<&Tally> = alone_free
        .iter()
        .filter(|(cat, _)| INJECTIONS.contains(&cat.as_str()))
        .map(|(_, t)| t)
        .collect();
    let total: usize = injected.iter().map(|t| t.total).sum();
    let caught: usize = injected.iter().map(|t| t.refused()).sum();
    let free_rate = f64::from(u32::try_from(caught).unwrap_or(0))
        / f64::from(u32::try_from(total.max(1)).unwrap_or(1));
    println!(
        "\nnegative model alone, injections in free text: {caught}/{total} = {:.2}%",
        free_rate * 100.0
    );

    for m in misses.iter().take(40) {
        println!("MISSED: {m}");
    }
    for m in free_misses.iter().take(40) {
        println!("MISSED WITHOUT SCHEMA: {m}");
    }
    for m in false_positives.iter().take(40) {
        println!("FALSE POSITIVE: {m}");
    }
    assert!(misses.is_empty(), "{} attacks passed", misses.len());
    assert!(
        false_positives.is_empty(),
        "{} benign requests refused",
        false_positives.len()
    );
    assert!(
        free_rate >= FREE_TEXT_THRESHOLD,
        "negative model alone caught {:.2}% of free-text injections",
        free_rate * 100.0
    );
}
