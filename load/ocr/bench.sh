#!/usr/bin/env bash
# OCR accuracy + speed benchmark (a benchmark, not a timed test).
#
# Renders the evaluation set (2000-px pages: several DejaVu fonts and sizes;
# clean, blurred, noisy, dark, skewed ±2–3°, rotated 180° and 90°), reads
# each page with rythmiq-ocr and with Tesseract 5 in the same run, and
# prints CER and CPU-seconds per page (median) for both. The real scans
# (load/ocr/fetch-scans.sh: scikit-image's page.png and OCRmyPDF's linn.png,
# typewriter.png and c03-29 page; references and licences in load/ocr/scans/)
# are read in the same run and reported with them. Then load/capture/bench.sh: phone captures
# read raw and after CAPTURE, with their CPU per page.
#
# Usage: load/ocr/bench.sh [--threads N] [--keep DIR] [--no-tesseract]
#   --keep DIR  keep the rendered pages (PNG) and their reference text there
# Needs: models (scripts/fetch-models.sh, run below), pip (for the scans), Debian packages
# fonts-dejavu-core and tesseract-ocr (+ tesseract-ocr-eng, pulled in by it).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/fetch-models.sh
bash load/ocr/fetch-scans.sh
export RYTHMIQ_MODELS_DIR="${RYTHMIQ_MODELS_DIR:-$PWD/models}"
if ! command -v tesseract >/dev/null; then
  echo "bench: tesseract not installed (apt-get install tesseract-ocr); running without the comparison" >&2
fi
# Tesseract uses OpenMP; leave its default threading so it is measured as
# shipped. Our engine gets --threads (default 2, the machine's cores).
cargo build --release -p rythmiq-ocr --example ocr_eval
scans=()
for s in skimage-page.png linn.png typewriter.png c03-29.jpg; do
  scans+=(--scan "target/ocr-scans/$s=load/ocr/scans/${s%.*}.txt")
done
target/release/examples/ocr_eval "${scans[@]}" "$@"

# The capture path beside the pages above: phone captures of rendered pages read raw (the path
# without CAPTURE) and after CAPTURE, line recall, CER and CPU per page, and the same with
# Tesseract (load/capture/README.md; its last line sums up both paths).
echo
echo "phone captures (load/capture/bench.sh): raw frame vs CAPTURE + OCR of the flattened page"
capture_args=()
for a in "$@"; do
  if [ "$a" = --no-tesseract ]; then capture_args+=(--no-tesseract); fi
done
bash load/capture/bench.sh "${capture_args[@]}"
