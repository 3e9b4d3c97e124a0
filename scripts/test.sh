#!/usr/bin/env bash
# The test command of the README: every crate's unit and integration tests
# against real sockets and real TLS.
set -euo pipefail
cd "$(dirname "$0")/.."
# The PKCS#11 tests run against a real SoftHSM2 token.
if ! { [ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null; }; then
  echo "installing softhsm2 (PKCS#11 tests)"
  sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq softhsm2
fi
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
# Doc tests (nextest does not run them).
cargo test --workspace --locked --doc
