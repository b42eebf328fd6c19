#!/usr/bin/env bash
# Image pipeline speed + compliance benchmark (a benchmark, not a timed test).
#
# Builds a corpus of real public-domain photos (phone-sized JPEGs, camera JPEGs, small uploads,
# A4 PNG scans; see make_corpus.py), then, per image and seeded portal rule, in one run:
#   - ours:   `pipeline::process_image` (the code `rythmiq process` runs, no OCR) via the
#             pipeline's `fit_bench` example, process CPU time, median of --reps after a warm-up;
#             rules with a `[face]` table get only the portraits, framed by the face detector,
#             and are timed again with the framing off (the fast path) for summary.md;
#   - libvips `thumbnail` in-process through pyvips (warmed up, operation cache off);
#   - ImageMagick `convert … -define jpeg:extent=` (a process per call; start-up reported apart).
# Every output goes through one independent checker (bench.py): format, exact pixel size, DPI,
# bytes within [min_kb × 1024, max_kb × 1000]. Results: target/image-bench/out/{summary.md,
# results.json} and the outputs themselves.
#
# Usage: load/image/bench.sh [--reps N]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=5
[ "${1:-}" = "--reps" ] && REPS="${2:?--reps needs a number}"
WORK="$PWD/target/image-bench"
mkdir -p "$WORK"

# The corpus, and the Python dependencies it installed (pyvips).
CORPUS=$(bash load/image/corpus.sh)
export PYTHONPATH="$WORK/pydeps${PYTHONPATH:+:$PYTHONPATH}"

# The face detector, which the rules with a `[face]` table frame the portraits by (idempotent).
bash scripts/fetch-models.sh >&2

cargo build --release -p rythmiq-pipeline --example fit_bench
OUT="$WORK/out"
rm -rf "$OUT"
python3 load/image/bench.py --fit-bench target/release/examples/fit_bench --corpus "$CORPUS" \
  --out "$OUT" --reps "$REPS" | tee "$OUT.summary.md"
mv "$OUT.summary.md" "$OUT/summary.md"
