#!/usr/bin/env bash
# Decode speed of every recipe in docs/compression.md's tables: the same files as
# scripts/compression-table.sh (same OUT_DIR layout; missing ones are made the same way, plus
# Q4_K_M + AWQ), each measured with `kestrel bench` (decode only, median of the repetitions),
# all in one bench run so the figures share the machine's state.
#
# usage: scripts/recipe-speed.sh OUT_DIR [THREADS] [N_GEN] [REPS]
# Needs a release build (target/release/kestrel or $KESTREL) and the models in
# $KESTREL_MODELS or ~/.cache/kestrel/models. Prints markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: recipe-speed.sh OUT_DIR [THREADS] [N_GEN] [REPS]}
THREADS=${2:-2}
NGEN=${3:-64}
REPS=${4:-5}
K=${KESTREL:-target/release/kestrel}
MODELS=${KESTREL_MODELS:-$HOME/.cache/kestrel/models}
CALIB=../shared/data/calibration.txt
mkdir -p "$OUT"

speed() { # name shipped-file
  local name=$1 shipped=$2 d="$OUT/$1"
  mkdir -p "$d"
  [ -f "$d/f32.gguf" ] || "$K" convert "$MODELS/$shipped" "$d/f32.gguf" --type f32 >/dev/null 2>&1
  [ -f "$d/imatrix.gguf" ] || "$K" imatrix -m "$d/f32.gguf" -f "$CALIB" -o "$d/imatrix.gguf" \
      -c 512 --chunks "${IMATRIX_CHUNKS:-16}" >/dev/null 2>&1
  local models=(-m "$d/f32.gguf")
  for spec in Q8_0 Q6_K Q5_K_M Q4_K_M Q4_K_M:im Q4_K_M:awq Q4_0 Q4_0:im Q3_K_M:im Q2_K:im; do
    local ty=${spec%%:*} f="$d/${spec/:/-}.gguf" extra=()
    case "$spec" in
      *:im) extra=(--imatrix "$d/imatrix.gguf") ;;
      *:awq) extra=(--method awq --imatrix "$d/imatrix.gguf") ;;
    esac
    [ -f "$f" ] || "$K" quantize "$d/f32.gguf" "$f" --type "$ty" "${extra[@]}" >/dev/null 2>&1
    models+=(-m "$f")
  done
  models+=(-m "$MODELS/$shipped")
  "$K" bench "${models[@]}" -p 0 -n "$NGEN" -t "$THREADS" -r "$REPS" --json >"$d/speed.jsonl" \
      2>"$d/speed.log"
  python3 - "$d" "$name" "$THREADS" "$NGEN" "$REPS" <<'PY'
import json, os, sys
d, name, threads, ngen, reps = sys.argv[1:6]
rows = [json.loads(l) for l in open(f"{d}/speed.jsonl")]
print(f"\n### {name}: decode tok/s ({ngen} tokens after an empty prompt, {threads} threads, median of {reps})\n")
print("| recipe | file size | decode tok/s (median) | min .. max |")
print("|---|---:|---:|---:|")
for r in rows:
    p = r["model_path"]
    label = os.path.basename(p).removesuffix(".gguf").replace("-im", " + imatrix").replace("-awq", " + AWQ")
    if label == "f32":
        label = "F32 (dequantized from the shipped file)"
    elif not p.startswith(d):
        label = f"shipped file ({os.path.basename(p)})"
    dec = r["decode"]
    print(f"| {label} | {os.path.getsize(p)/2**20:.1f} MiB | {dec['median']:.1f} | {dec['min']:.1f} .. {dec['max']:.1f} |")
PY
}

speed "SmolLM2-135M-Instruct" SmolLM2-135M-Instruct.Q4_1.gguf
[ "${SKIP_GEMMA:-0}" = 1 ] || speed "gemma-3-270m" gemma-3-270m-q4_k_m.gguf
true
