#!/usr/bin/env bash
# Fetches the real scans of the OCR evaluation (issue 4) into target/ocr-scans/ (ignored):
# scikit-image's `skimage/data/page.png`, a photographed book page (384×191, grey, uneven
# lighting, gently curved lines), from its PyPI wheel. Only the data file is read, so any
# platform's wheel will do; the version is pinned so the image never changes under the
# reference text in load/ocr/scans/skimage-page.txt.
#
# Licence: scikit-image's wheel covers every file not listed otherwise ("Files: *") with
# BSD-3-Clause, copyright the scikit-image team (scikit_image-0.26.0.dist-info/LICENSE.txt).
#
# Used by load/ocr/bench.sh and scripts/setup.sh --test (for ocr/tests/accuracy.rs).
# Idempotent: nothing is downloaded when the file is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

SKIMAGE=scikit-image==0.26.0
OUT=target/ocr-scans
PAGE_SHA256=341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3
[ -f "$OUT/skimage-page.png" ] && exit 0
mkdir -p "$OUT/wheels"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
  -d "$OUT/wheels" "$SKIMAGE"
python3 - "$OUT/wheels" "$OUT" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "scikit_image-0.26.0-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("skimage/data/page.png")
tmp = os.path.join(sys.argv[2], "skimage-page.png.part")
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, os.path.join(sys.argv[2], "skimage-page.png"))
PY
rm -rf "$OUT/wheels"
if [ "$(sha256sum "$OUT/skimage-page.png" | cut -d' ' -f1)" != "$PAGE_SHA256" ]; then
  rm -f "$OUT/skimage-page.png"
  echo "fetch-scans: skimage/data/page.png does not match the pinned sha256" >&2
  exit 1
fi
echo "fetch-scans: $OUT/skimage-page.png"
