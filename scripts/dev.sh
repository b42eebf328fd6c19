#!/usr/bin/env bash
# The one command that runs Rythmiq locally on the embedded default: installs what is missing,
# builds, and starts `rythmiq dev` (its own Postgres cluster, local storage, API and workers).
# Extra arguments go to `rythmiq dev`, e.g. `scripts/dev.sh --listen 127.0.0.1:9000`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked
exec target/release/rythmiq dev "$@"
