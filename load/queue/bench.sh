#!/usr/bin/env bash
# Queue overhead, measured against a peer (a benchmark, not a timed test): TASKS no-op tasks are
# enqueued as the API enqueues them, then claimed and completed by LOOPS worker loops through the
# worker crate's queue functions; graphile-worker (pinned in load/queue/graphile/package.json)
# runs as many no-op jobs with the same concurrency on the same Postgres right after. Prints
# jobs/s for each, their ratio, and statements and transactions per job (pg_stat_statements,
# pg_stat_database), with our statements listed. See load/queue/README.md.
#
# Usage: load/queue/bench.sh [--tasks N] [--loops N] [--pool-size N] [--fast]
#                            [--database-url URL] [--no-graphile] [--graphile-first]
#                            [--without-job-notify | --bare-schema]   (diagnoses, not how we run)
#   without --database-url: a private cluster in target/queue-bench/pg (started as the
#   `postgres` account when root), durable unless --fast, pg_stat_statements preloaded.
#   Writes target/queue-bench/last.json and .txt.
set -euo pipefail
cd "$(dirname "$0")/../.."

ARGS=() GRAPHILE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --tasks|--loops|--pool-size|--database-url) ARGS+=("$1" "$2"); shift 2 ;;
    --fast|--without-job-notify|--bare-schema|--graphile-first) ARGS+=("$1"); shift ;;
    --no-graphile) GRAPHILE=0; shift ;;
    *) echo "queue-bench: unknown argument $1" >&2; exit 2 ;;
  esac
done

WORK="$PWD/target/queue-bench"
mkdir -p "$WORK"

if [ "$GRAPHILE" = 1 ]; then
  # graphile-worker and its dependencies exactly as locked, into an ignored folder; the runner
  # script sits beside node_modules so that node resolves the package from there.
  NODE_DIR="$WORK/node"
  mkdir -p "$NODE_DIR"
  cp load/queue/graphile/package.json load/queue/graphile/package-lock.json "$NODE_DIR/"
  if ! grep -qs '"version": "0.16.6"' "$NODE_DIR/node_modules/graphile-worker/package.json"; then
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
  cp load/queue/graphile/run.mjs "$NODE_DIR/run.mjs"
  ARGS+=(--graphile-script "$NODE_DIR/run.mjs")
fi

# The release build, as workers run (the workspace crates are not optimised in the dev profile).
cargo build -q --release -p rythmiq-queue-bench
echo "queue-bench: load before the run: $(uptime)" >&2
target/release/rythmiq-queue-bench --data-dir "$WORK/pg" --json "$WORK/last.json" "${ARGS[@]}" \
  | tee "$WORK/last.txt"
echo "queue-bench: load after the run: $(uptime)" | tee -a "$WORK/last.txt"
