#!/usr/bin/env bash
# Fetches the real scans of the OCR evaluation into target/ocr-scans/ (ignored), each
# pinned by version and sha256 so an image never changes under its reference text in
# load/ocr/scans/ (licences and origins: load/ocr/scans/README.md):
# - skimage-page.png: scikit-image's `skimage/data/page.png`, a photographed book page (384×191,
#   grey, uneven lighting, gently curved lines), from its PyPI wheel. Only the data file is
#   read, so any platform's wheel will do.
# - linn.png (+ linn.txt, upstream's text of it), typewriter.png and c03-29.jpg: OCRmyPDF's test
#   resources, from its PyPI sdist (tests/resources/). c03-29.jpg is the JPEG that
#   c03-29.pdf wraps, copied out byte for byte.
#
# Used by load/ocr/bench.sh and scripts/setup.sh --test (for ocr/tests/accuracy.rs).
# Idempotent and offline once done: nothing is downloaded when every file is there and matches
# its sha256.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=target/ocr-scans
SKIMAGE=scikit-image==0.26.0
OCRMYPDF=ocrmypdf==17.13.0
OCRMYPDF_SDIST_SHA256=151c35d810eb628fbc5cb9bbe80b834ecf094737efa0e7a2e9e1fac3c730ed49
# File in $OUT, its sha256.
SKIMAGE_FILES=(
  skimage-page.png 341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3
)
OCRMYPDF_FILES=(
  linn.png dcd90f08a6b8a733612f818330153636c13283dd548e2e092cad1fe628ec7bf3
  linn.txt 18fbd25ca0fc7783f3b7f0e93e91e9408d2d517739f646fecbdf6209628204b1
  typewriter.png 6f7a83685a83af954e9672b3e2db3253af165513d2826d780a48e175742f4469
  c03-29.jpg 3bcdaf988e0578b772c78a1dc4dd038a8b35540855469cedbf133ba8d3874bc5
)

sha() { sha256sum "$1" | cut -d' ' -f1; }

# True when every "file sha256" pair given is present in $OUT with that hash.
all_present() {
  while [ $# -gt 0 ]; do
    [ -f "$OUT/$1" ] && [ "$(sha "$OUT/$1")" = "$2" ] || return 1
    shift 2
  done
}

# Checks freshly extracted files; a mismatching one is removed so the next run fetches again.
verify() {
  local source=$1 bad=0
  shift
  while [ $# -gt 0 ]; do
    if [ "$(sha "$OUT/$1")" != "$2" ]; then
      rm -f "$OUT/$1"
      echo "fetch-scans: $1 from $source does not match the pinned sha256" >&2
      bad=1
    else
      echo "fetch-scans: $OUT/$1"
    fi
    shift 2
  done
  return "$bad"
}

mkdir -p "$OUT"

if ! all_present "${SKIMAGE_FILES[@]}"; then
  rm -rf "$OUT/wheels" && mkdir -p "$OUT/wheels"
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
  verify "$SKIMAGE" "${SKIMAGE_FILES[@]}"
fi

if ! all_present "${OCRMYPDF_FILES[@]}"; then
  rm -rf "$OUT/sdist" && mkdir -p "$OUT/sdist"
  # --require-hashes: pip refuses a tar.gz that does not match the pin. pip prepares the
  # sdist's metadata, which installs its build backend in a throw-away environment.
  echo "$OCRMYPDF --hash=sha256:$OCRMYPDF_SDIST_SHA256" >"$OUT/sdist/requirements.txt"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary=:all: \
    --require-hashes -r "$OUT/sdist/requirements.txt" -d "$OUT/sdist"
  python3 - "$OUT/sdist/ocrmypdf-17.13.0.tar.gz" "$OUT" <<'PY'
import os, re, sys, tarfile

sdist, out = sys.argv[1], sys.argv[2]
res = "ocrmypdf-17.13.0/tests/resources/"


def write(name, data):
    tmp = os.path.join(out, name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(out, name))


with tarfile.open(sdist) as t:
    for name in ["linn.png", "linn.txt", "typewriter.png"]:
        write(name, t.extractfile(res + name).read())
    pdf = t.extractfile(res + "c03-29.pdf").read()
# The page's one image: a baseline JPEG (DCTDecode, 770×995), stored as is.
m = re.search(rb"/Filter /DCTDecode[^>]*/Length (\d+) >>\s*stream\r?\n", pdf)
if m is None:
    sys.exit("fetch-scans: no JPEG image in c03-29.pdf")
write("c03-29.jpg", pdf[m.end() : m.end() + int(m.group(1))])
PY
  rm -rf "$OUT/sdist"
  verify "$OCRMYPDF" "${OCRMYPDF_FILES[@]}"
fi
