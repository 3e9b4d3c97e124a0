//! Running the `rampart` binary from the CLI tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::process::{Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// Runs `rampart ARGS` (without `RUST_LOG`).
pub fn rampart(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `rampart ARGS`, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = rampart(args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}
