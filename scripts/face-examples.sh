#!/usr/bin/env bash
# The README's before/after pictures of face framing: scikit-image's public-domain `astronaut`
# (pipeline/tests/fixtures/photos/astronaut.jpg) through `rythmiq process` for two photo rules
# that frame by the face, written to docs/face/. Needs the models (scripts/fetch-models.sh).
#
# Usage: scripts/face-examples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin rythmiq
mkdir -p docs/face
cp pipeline/tests/fixtures/photos/astronaut.jpg docs/face/astronaut-input.jpg
for slug in passport-india-photo neet-ug-2026-photo; do
  target/debug/rythmiq process pipeline/tests/fixtures/photos/astronaut.jpg \
    --portal "$slug" --out "docs/face/astronaut-$slug.jpg"
done
ls -l docs/face
