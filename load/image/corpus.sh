#!/usr/bin/env bash
# The image corpus of the benchmarks (load/image/bench.sh, load/burst.sh): real public-domain
# photos from scikit-image's sample data, made into phone-sized JPEGs, camera JPEGs, small
# uploads and A4 PNG scans by make_corpus.py, in target/image-bench/corpus. Installs what it needs
# (libvips, ImageMagick, pip; pyvips into target/image-bench/pydeps) on first use.
#
# Usage: load/image/corpus.sh   (prints the corpus directory)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="$PWD/target/image-bench"
mkdir -p "$WORK"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "corpus: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

# Debian packages: libvips (pyvips loads libvips.so.42 through cffi, no compiler needed),
# ImageMagick 6 and pip.
missing=()
ldconfig -p 2>/dev/null | grep -q 'libvips\.so\.42' || missing+=(libvips42)
command -v convert-im6.q16 >/dev/null 2>&1 || missing+=(imagemagick)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "corpus: installing ${missing[*]} (apt-get)" >&2
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
  python3 load/image/make_corpus.py "$DATA" pipeline/tests/fixtures/photos "$CORPUS" >&2
fi

echo "$CORPUS"
