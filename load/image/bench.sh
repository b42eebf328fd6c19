#!/usr/bin/env bash
# Image pipeline speed + compliance benchmark (a benchmark, not a timed test).
#
# Builds a corpus of real public-domain photos (phone-sized JPEGs, camera JPEGs, small uploads,
# A4 PNG scans; see make_corpus.py), then, per image and seeded portal rule, in one run:
#   - ours:   `pipeline::process_image` (the code `rythmiq process` runs, no OCR) via the
#             pipeline's `fit_bench` example, process CPU time, median of --reps after a warm-up;
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

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "bench: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

# Debian packages: libvips (pyvips loads libvips.so.42 through cffi, no compiler needed),
# ImageMagick 6 and pip.
missing=()
ldconfig -p 2>/dev/null | grep -q 'libvips\.so\.42' || missing+=(libvips42)
command -v convert-im6.q16 >/dev/null 2>&1 || missing+=(imagemagick)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench: installing ${missing[*]} (apt-get)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# pyvips from PyPI into a private directory (--target: no venv needed, and Debian's
# externally-managed system Python stays untouched).
PYDEPS="$WORK/pydeps"
export PYTHONPATH="$PYDEPS${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c 'import pyvips' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$PYDEPS" 'pyvips>=2.2,<4'
fi

# The photos: scikit-image's sample data from its PyPI wheel (public domain / CC0; only the data
# files are read, so any platform's wheel will do).
SKIMAGE=scikit-image==0.26.0
DATA="$WORK/skimage-data"
if [ ! -f "$DATA/astronaut.png" ]; then
  wheels="$WORK/wheels"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
    -d "$wheels" "$SKIMAGE"
  python3 - "$wheels" "$DATA" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "scikit_image-*.whl"))[0]
os.makedirs(sys.argv[2], exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
              "page.png", "text.png"):
        with open(os.path.join(sys.argv[2], n), "wb") as f:
            f.write(z.read("skimage/data/" + n))
PY
fi
CORPUS="$WORK/corpus"
if [ ! -f "$CORPUS/scan-certificate-a4-300dpi.png" ]; then
  python3 load/image/make_corpus.py "$DATA" pipeline/tests/fixtures/photos "$CORPUS"
fi

cargo build --release -p rythmiq-pipeline --example fit_bench
OUT="$WORK/out"
rm -rf "$OUT"
python3 load/image/bench.py --fit-bench target/release/examples/fit_bench --corpus "$CORPUS" \
  --out "$OUT" --reps "$REPS" | tee "$OUT.summary.md"
mv "$OUT.summary.md" "$OUT/summary.md"
