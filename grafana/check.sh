#!/usr/bin/env bash
# Checks everything under grafana/ and exits non-zero on any problem:
#   1. promtool check rules / check config: the rules and the example Prometheus configuration;
#   2. promtool test rules: every alert fires and stays quiet where it should;
#   3. tools/lint.py: the dashboards against the metric catalog, the migrations, the rules, the
#      provisioning files and the Grafana dashboard schema types;
#   4. tools/lint_selftest.py: the lint (and the promtool tests) fail on deliberately broken
#      copies, so a green run means something;
#   5. tools/sql_check.py: every dashboard SQL query runs on a scratch PostgreSQL migrated with
#      apalis-postgres' and our migrations (skipped, and said so, without a PostgreSQL server);
#   6. tools/live_check.py: the real `rythmiq dev` (target/debug/rythmiq) and Prometheus on
#      loopback with the rules loaded, real jobs (one killed with its worker, one failing), then
#      every dashboard target returns data from Prometheus and, as the Grafana login, from the
#      database. Never skipped: a missing prometheus or binary fails it.
# Needs promtool and prometheus (Debian's `prometheus` package), PostgreSQL, a built
# target/debug/rythmiq and, from PyPI, grafana-foundation-sdk and PyYAML: `scripts/setup.sh
# --test` and `cargo build` provide them.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v promtool >/dev/null 2>&1; then
  echo "grafana/check.sh: promtool not found; run scripts/setup.sh --test" >&2
  exit 1
fi

promtool check rules alerts/rythmiq.rules.yml
promtool check config prometheus/prometheus.yml
promtool test rules alerts/tests/*.yml
python3 tools/lint.py
python3 tools/lint_selftest.py
python3 tools/sql_check.py
python3 tools/live_check.py
echo "grafana/check.sh: all checks passed"
