#!/usr/bin/env bash
# The one command that runs every check: set-up, formatting, lints, unit tests, integration tests
# against real Postgres clusters the tests start themselves, and the end-to-end run of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
