#!/usr/bin/env bash
# Phone captures → CAPTURE → OCR (ours and Tesseract 5): line recall, CER and CPU per page,
# beside our OCR on the raw frame (the path without CAPTURE). See load/capture/README.md.
#
# Usage: load/capture/bench.sh [--n N] [--keep DIR] [--no-tesseract]
# Needs: the models (scripts/fetch-models.sh), fonts-dejavu-core, and for the comparison
# tesseract-ocr (apt-get install tesseract-ocr).
set -euo pipefail
cd "$(dirname "$0")/../.."

n=4
keep=""
tess=1
while [ $# -gt 0 ]; do
  case "$1" in
    --n) n="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --no-tesseract) tess=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$tess" = 1 ] && ! command -v tesseract >/dev/null; then
  echo "bench: tesseract not installed (apt-get install tesseract-ocr); running without it" >&2
  tess=0
fi
out="${keep:-$(mktemp -d)}"
mkdir -p "$out"

cargo run --quiet --release -p rythmiq-pipeline --example capture_eval -- --out "$out" --n "$n" \
  | tee "$out/ours.jsonl"

if [ "$tess" = 1 ]; then
  # Tesseract on the flattened page and on the raw frame; recall and CER by the same rules
  # (a reference line is found when a read line, or two neighbours joined, is within CER 0.1).
  for ref in "$out"/*.txt; do
    case "$ref" in *.tess*.txt) continue ;; esac
    stem="${ref%.txt}"
    for kind in flat.png jpg; do
      /usr/bin/time -f "%U %S" -o "$stem.$kind.time" tesseract "$stem.$kind" "$stem.tess.$kind" >/dev/null 2>&1
      python3 - "$ref" "$stem.tess.$kind.txt" "$stem.$kind.time" "$(basename "$stem")" "$kind" <<'PY'
import json, sys
ref = [l for l in open(sys.argv[1]).read().split("\n") if l.strip()]
hyp = [l for l in open(sys.argv[2]).read().split("\n") if l.strip()]
def norm(s): return " ".join(s.split())
def cer(r, h):
    r, h = norm(r), norm(h)
    if not r: return 0.0 if not h else 1.0
    prev = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        cur = [i] + [0] * len(h)
        for j in range(1, len(h) + 1):
            cur[j] = min(prev[j - 1] + (r[i - 1] != h[j - 1]), prev[j] + 1, cur[j - 1] + 1)
        prev = cur
    return prev[len(h)] / len(r)
cands = hyp + [a + " " + b for a, b in zip(hyp, hyp[1:])]
found = sum(1 for l in ref if any(cer(l, c) <= 0.1 for c in cands))
u, s = map(float, open(sys.argv[3]).read().split()[-2:])
print(json.dumps({"capture": sys.argv[4], "tesseract_on": "flattened" if sys.argv[5] == "flat.png" else "raw_frame",
                  "line_recall": found / len(ref), "cer": cer("\n".join(ref), "\n".join(hyp)),
                  "cpu_seconds": u + s}))
PY
    done
  done | tee "$out/tesseract.jsonl"
fi
[ -n "$keep" ] || rm -rf "$out"
