//! `rampart operators add / token / list / disable` against a real config
//! and SQLite store: the token is printed once, stored only as its hash,
//! and disabling revokes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};

mod common;

use common::{ok, rampart, text};

fn write_config(dir: &Path) -> PathBuf {
    let f = dir.join("rampart.toml");
    std::fs::write(
        &f,
        "[server]\nlisten = \"127.0.0.1:0\"\n[dangerous]\nplaintext = true\n\
         [upstreams.ex]\nendpoints = [\"127.0.0.1:9\"]\n\
         [[routes]]\nmethod = \"GET\"\npath = \"/v1/time\"\nupstream = \"ex\"\naction = \"GetTime\"\nscope = \"public\"\n\
         [storage]\ndata_dir = \"data\"\n",
    )
    .unwrap();
    f
}

/// The token line of `add` / `token` output.
fn token_of(out: &str) -> String {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with("enrolment token"));
    lines.next().unwrap();
    lines.next().unwrap().trim().to_owned()
}

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn operators_add_token_list_disable() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path());
    let c = cfg.to_str().unwrap();

    let out = ok(&["operators", "add", "--config", c, "alice"]);
    assert!(out.contains("operator `alice` created"), "{out}");
    let t1 = token_of(&out);
    assert_eq!(t1.len(), 43, "{out}");
    let o = rampart(&["operators", "add", "--config", c, "alice"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("already exists"));
    let o = rampart(&["operators", "add", "--config", c, "bad name"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let t2 = token_of(&ok(&["operators", "token", "--config", c, "alice"]));
    assert_ne!(t1, t2);
    let o = rampart(&["operators", "token", "--config", c, "nobody"]);
    assert!(text(&o).contains("no operator `nobody`"), "{}", text(&o));

    let out = ok(&["operators", "list", "--config", c]);
    assert!(out.contains("alice  enabled  0  -"), "{out}");

    // Only hashes are stored: the token's text is nowhere under the data dir.
    let bytes = all_bytes(&d.path().join("data"));
    for t in [&t1, &t2] {
        assert!(
            !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
            "token stored in clear"
        );
    }

    let out = ok(&["operators", "disable", "--config", c, "alice"]);
    assert!(
        out.contains("operator `alice` disabled; 0 credential(s) revoked"),
        "{out}"
    );
    let out = ok(&["operators", "list", "--config", c]);
    assert!(out.contains("alice  disabled"), "{out}");
    let o = rampart(&["operators", "token", "--config", c, "alice"]);
    assert!(text(&o).contains("is disabled"), "{}", text(&o));
    let o = rampart(&["operators", "disable", "--config", c, "nobody"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
