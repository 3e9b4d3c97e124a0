//! Prints the team's corpora as concrete HTTP requests, one JSON object per
//! line, for replaying against Rampart and other WAFs:
//!
//! ```text
//! cargo run -p rampart-shield --example corpus > requests.jsonl
//! cargo run -p rampart-shield --example corpus -- --kind benign
//! ```
//!
//! Each line is `{"kind": "attack"|"benign", "category", "note", "action",
//! "placement", "method", "path", "query", "headers", "raw_headers", "body",
//! "transport_safe"}`: the path and query are percent-encoded as sent,
//! `headers` is an object (repeated names joined with ", "), `raw_headers`
//! keeps every line in order, `body` is the body text or null. Requests
//! whose `transport_safe` is false carry framing headers or bytes that an
//! ordinary HTTP client will not send as they are (smuggling and header
//! injection sets); replay those over a raw socket or skip them. A count
//! per kind goes to stderr.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use rampart_shield::waf::corpus;

const ATTACKS: &str = include_str!("../corpus/attacks.jsonl");
const BENIGN: &str = include_str!("../corpus/benign.jsonl");

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut kind = String::from("all");
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--kind", Some(k)) if matches!(k.as_str(), "all" | "attack" | "benign") => kind = k,
            _ => {
                eprintln!("usage: corpus [--kind all|attack|benign]");
                return ExitCode::from(64);
            }
        }
    }
    let attacks = match corpus::parse_attacks(ATTACKS) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("attacks.jsonl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let benign = match corpus::parse_benign(BENIGN) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("benign.jsonl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut requests = Vec::new();
    if kind != "benign" {
        requests.extend(corpus::expand_attacks(&attacks));
    }
    if kind != "attack" {
        requests.extend(benign);
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for r in &requests {
        if writeln!(out, "{}", r.to_json()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    let attack = requests
        .iter()
        .filter(|r| r.kind == corpus::Kind::Attack)
        .count();
    eprintln!(
        "{attack} attack requests ({} payloads), {} benign requests",
        attacks.len(),
        requests.len() - attack
    );
    ExitCode::SUCCESS
}
