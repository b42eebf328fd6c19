#!/usr/bin/env bash
# Fetches the real portraits of the face detector's accuracy test (face/tests/portraits.rs) into
# target/face-portraits/ (ignored), pinned by version and sha256: the photographs in
# face_recognition 1.3.0's PyPI sdist (tests/test_images/; the package is MIT-licensed, the
# photographs are official White House photographs, works of the U.S. federal government and in
# the public domain, 17 U.S.C. § 105; their EXIF descriptions name the sittings).
#
# Used by scripts/setup.sh --test. Idempotent and offline once done: nothing is downloaded when
# every file is there and matches its sha256.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=target/face-portraits
SDIST=face_recognition-1.3.0.tar.gz
SDIST_SHA256=5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec
# File in $OUT, its sha256.
FILES=(
  obama.jpg 0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6
  obama2.jpg a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6
  obama3.jpg 76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3
  biden.jpg 3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c
  obama_partial_face.jpg c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117
  obama_partial_face2.jpg 9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028
)

sha() { sha256sum "$1" | cut -d' ' -f1; }

all_present() {
  local i
  for ((i = 0; i < ${#FILES[@]}; i += 2)); do
    [ -f "$OUT/${FILES[i]}" ] && [ "$(sha "$OUT/${FILES[i]}")" = "${FILES[i + 1]}" ] || return 1
  done
}

if all_present; then
  exit 0
fi
mkdir -p "$OUT"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary=:all: \
  -d "$tmp" face_recognition==1.3.0
if [ "$(sha "$tmp/$SDIST")" != "$SDIST_SHA256" ]; then
  echo "fetch-portraits: $SDIST does not match the pinned sha256" >&2
  exit 1
fi
tar -xzf "$tmp/$SDIST" -C "$tmp" face_recognition-1.3.0/tests/test_images
for ((i = 0; i < ${#FILES[@]}; i += 2)); do
  f="${FILES[i]}"
  src="$tmp/face_recognition-1.3.0/tests/test_images/$f"
  if [ "$(sha "$src")" != "${FILES[i + 1]}" ]; then
    echo "fetch-portraits: $f does not match the pinned sha256" >&2
    exit 1
  fi
  cp "$src" "$OUT/.$f.part"
  mv -f "$OUT/.$f.part" "$OUT/$f"
  echo "fetch-portraits: $OUT/$f"
done
