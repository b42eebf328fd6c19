#!/usr/bin/env bash
# The one command that runs every check: set-up, formatting, lints, unit tests, integration tests
# against real Postgres clusters the tests start themselves, and the end-to-end run of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The image pipeline is pure CPU code: no async runtime, database, web or storage crate in it.
pipeline_deps=$(cargo tree -p rythmiq-pipeline -e normal --prefix none --locked)
forbidden=$(grep -oE '^(tokio|sqlx|axum|object_store)[a-z0-9_-]* ' <<<"$pipeline_deps" | sort -u || true)
if [ -n "$forbidden" ]; then
  echo "error: rythmiq-pipeline must stay free of I/O crates, but depends on:" $forbidden >&2
  exit 1
fi
cargo test --workspace --locked --no-fail-fast
# Dashboards, alert rules and their unit tests (grafana/README.md).
bash grafana/check.sh
bash deploy/check.sh
