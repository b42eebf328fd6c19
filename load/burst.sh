#!/usr/bin/env bash
# The capacity plan's burst (a benchmark, not a timed test): USERS users upload DOCS documents
# each at the same moment through the HTTP API and wait for them with `?wait=`; about 70 % photos
# and signatures, 30 % document scans and poor photos. Prints and writes (target/burst/burst.json
# and a self-contained burst.html): jobs, completed, failed, error rate, end-to-end p50/p95/p99
# split into waiting and processing, documents per minute, CPU-s per document from `cpu_metrics`
# (mean, per path, per input, per stage) beside the serving process's own CPU, monthly
# CPU-hours at 1,000 and 57,175 documents a day, the capacity plan's decision and the worker
# cores that would bring the p95 under 30 s.
#
# Inputs are real: the photos of load/image/corpus.sh (scikit-image's public-domain samples), the
# scanned pages of load/ocr/fetch-scans.sh, and those photos made dark and blurred (ImageMagick)
# for the poor ones.
#
# Usage: load/burst.sh [--host URL] [--users N] [--docs N] [--heavy-percent P] [--workers N]
#                      [--database-url URL] [--debug] [--rythmiq BIN]
#   without --host: starts `rythmiq dev --workers N` (default 2) on a fresh data dir, release
#   build, and measures that process's CPU (API and workers; its Postgres is a separate process
#   and not counted). With --host: RYTHMIQ_JWT_SECRET must be the API's secret, and
#   --database-url (or DATABASE_URL) the database to read cpu_metrics from (optional).
#   --rythmiq BIN: serve the burst with that `rythmiq` binary instead of this checkout's (another
#   build of the project, e.g. an earlier commit's, as the peer of a before/after comparison).
set -euo pipefail
cd "$(dirname "$0")/.."

HOST="" USERS=50 DOCS=5 HEAVY=30 WORKERS=2 DB_URL="${DATABASE_URL:-}" PROFILE=release SERVER=""
while [ $# -gt 0 ]; do
  case "$1" in
    --host) HOST="$2"; shift 2 ;;
    --users) USERS="$2"; shift 2 ;;
    --docs) DOCS="$2"; shift 2 ;;
    --heavy-percent) HEAVY="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --database-url) DB_URL="$2"; shift 2 ;;
    # The test build: quicker to build (dependencies and the pipeline are optimised in it too),
    # for trying the script; the figures in the README come from the release build.
    --debug) PROFILE=debug; shift ;;
    --rythmiq) SERVER="$2"; shift 2 ;;
    *) echo "burst: unknown argument $1" >&2; exit 2 ;;
  esac
done

WORK="$PWD/target/burst"
mkdir -p "$WORK"

# Inputs.
CORPUS=$(bash load/image/corpus.sh)
bash load/ocr/fetch-scans.sh >&2
IN="$WORK/inputs"
mkdir -p "$IN/photos" "$IN/documents" "$IN/poor"
for f in "$CORPUS"/phone-*.jpg "$CORPUS"/camera-*.jpg "$CORPUS"/small-*; do
  [ -f "$f" ] && cp -f "$f" "$IN/photos/"
done
for f in target/ocr-scans/*.png target/ocr-scans/*.jpg; do
  [ -f "$f" ] && cp -f "$f" "$IN/documents/"
done
for f in "$IN"/photos/phone-*.jpg; do
  out="$IN/poor/poor-$(basename "$f")"
  # Under-exposed, low-contrast and out of focus: QUALITY sends these down the standard path.
  [ -f "$out" ] || convert-im6.q16 "$f" -modulate 45 -level 0%,140% -blur 0x3 -quality 85 "$out"
done

if [ "$PROFILE" = release ]; then
  cargo build --release --locked -p rythmiq -p rythmiq-burst
else
  cargo build --locked -p rythmiq -p rythmiq-burst
fi
BIN="target/$PROFILE"
SERVER="${SERVER:-$BIN/rythmiq}"
PID_ARGS=()
MACHINE_ARGS=()
DEV_PID=""
cleanup() { if [ -n "$DEV_PID" ]; then kill -INT "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT
if [ -z "$HOST" ]; then
  bash scripts/fetch-models.sh >&2
  DATA="$WORK/dev-data"
  rm -rf "$DATA"
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  HOST="http://127.0.0.1:$PORT"
  export RYTHMIQ_JWT_SECRET
  RYTHMIQ_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  # The start-up line naming the matrix-product kernel is logged at info, the rest at warn.
  RYTHMIQ_MODELS_DIR="$PWD/models" RUST_LOG=warn,rythmiq::cli::serve=info "$SERVER" dev \
    --listen "127.0.0.1:$PORT" --data-dir "$DATA" --workers "$WORKERS" >"$WORK/dev.log" 2>&1 &
  DEV_PID=$!
  for _ in $(seq 1 600); do
    grep -q "rythmiq dev is ready" "$WORK/dev.log" && break
    kill -0 "$DEV_PID" 2>/dev/null || { cat "$WORK/dev.log" >&2; exit 1; }
    sleep 0.2
  done
  DB_URL=$(sed -n 's/^Database (superuser, loopback only): //p' "$WORK/dev.log")
  PID_ARGS=(--pid "$DEV_PID" --since-start)
  # The machine the figures belong to: CPU model, cores, and the kernel the products ran on.
  CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  KERNEL=$(sed -n 's/.*models loaded matmul=\([^ ]*\).*/\1/p' "$WORK/dev.log" | head -n 1)
  MACHINE_ARGS=(--machine "${CPU_MODEL:-unknown CPU}, $(nproc) cores, products on ${KERNEL:-an unknown kernel}")
fi
: "${RYTHMIQ_JWT_SECRET:?set RYTHMIQ_JWT_SECRET to the secret of the API}"

DB_ARGS=()
[ -n "$DB_URL" ] && DB_ARGS=(--database-url "$DB_URL")
"$BIN/rythmiq-burst" --host "$HOST" --users "$USERS" --docs "$DOCS" \
  --heavy-percent "$HEAVY" --slots "$WORKERS" --photos "$IN/photos" --documents "$IN/documents" \
  --poor "$IN/poor" --out "$WORK" "${PID_ARGS[@]}" "${DB_ARGS[@]}" "${MACHINE_ARGS[@]}"
