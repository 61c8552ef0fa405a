#!/usr/bin/env bash
# Produces the tables of docs/compression.md: for each reference model, an F32 base dequantized
# from the shipped file, every quantization recipe (with and without an importance matrix from
# ../shared/data/calibration.txt), and size, bits per weight, perplexity, KL-divergence and
# top-1 agreement against the F32 base on the first chunks of ../shared/data/wiki.test.raw.
#
# usage: scripts/compression-table.sh OUT_DIR [SMOLLM_CHUNKS] [GEMMA_CHUNKS]
# (a chunk count of 0 skips that model). The importance matrices use 16 chunks of 512 tokens of
# calibration text ($IMATRIX_CHUNKS to change).
# Needs a release build (target/release/kestrel or $KESTREL) and the models in
# $KESTREL_MODELS or ~/.cache/kestrel/models. Prints markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: compression-table.sh OUT_DIR [SMOLLM_CHUNKS] [GEMMA_CHUNKS]}
CH_SMOL=${2:-4}
CH_GEMMA=${3:-3}
K=${KESTREL:-target/release/kestrel}
MODELS=${KESTREL_MODELS:-$HOME/.cache/kestrel/models}
WIKI=../shared/data/wiki.test.raw
CALIB=../shared/data/calibration.txt
mkdir -p "$OUT"

table() { # name shipped-file chunks
  local name=$1 shipped=$2 chunks=$3 d="$OUT/$1"
  mkdir -p "$d"
  [ -f "$d/f32.gguf" ] || "$K" convert "$MODELS/$shipped" "$d/f32.gguf" --type f32 >/dev/null 2>&1
  [ -f "$d/imatrix.gguf" ] || "$K" imatrix -m "$d/f32.gguf" -f "$CALIB" -o "$d/imatrix.gguf" \
      -c 512 --chunks "${IMATRIX_CHUNKS:-16}" >/dev/null 2>&1
  local models=()
  for spec in Q8_0 Q6_K Q5_K_M Q4_K_M Q4_K_M:im Q4_0 Q4_0:im Q3_K_M:im Q2_K:im; do
    local ty=${spec%%:*} f="$d/${spec/:/-}.gguf" extra=()
    [ "$spec" != "$ty" ] && extra=(--imatrix "$d/imatrix.gguf")
    [ -f "$f" ] || "$K" quantize "$d/f32.gguf" "$f" --type "$ty" "${extra[@]}" --json \
        >"$f.json" 2>/dev/null
    models+=(-m "$f")
  done
  models+=(-m "$MODELS/$shipped")
  "$K" kld --base "$d/f32.gguf" "${models[@]}" -f "$WIKI" -c 512 --chunks "$chunks" --json \
      >"$d/kld.jsonl" 2>"$d/kld.log"
  "$K" perplexity -m "$d/f32.gguf" -f "$WIKI" -c 512 --chunks "$chunks" --json >"$d/f32-ppl.json" 2>/dev/null
  python3 - "$d" "$name" "$K" <<'PY'
import json, os, subprocess, sys
d, name, k = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(f"{d}/kld.jsonl")]
base = json.load(open(f"{d}/f32-ppl.json"))
def info(path):
    # Bits per weight over the tensors (metadata excluded), as `kestrel inspect` reports it.
    v = json.loads(subprocess.run([k, "inspect", "--json", path], capture_output=True, check=True).stdout)
    return os.path.getsize(path), v["bits_per_weight"]
f32size = os.path.getsize(f"{d}/f32.gguf")
print(f"\n### {name} ({rows[0]['chunks']} chunks of {rows[0]['ctx']} tokens, {rows[0]['scored']} positions scored)\n")
print("| recipe | file size | bits/weight | perplexity | KLD vs F32 | top-1 agreement |")
print("|---|---:|---:|---:|---:|---:|")
print(f"| F32 (dequantized from the shipped file) | {f32size/2**20:.1f} MiB | 32.00 | {base['ppl']:.3f} | 0 | 100% |")
for r in rows:
    p = r["model"]
    size, bpw = info(p)
    label = os.path.basename(p).removesuffix(".gguf").replace("-im", " + imatrix")
    if not p.startswith(d):
        label = f"shipped file ({os.path.basename(p)})"
    bpw_s = f"{bpw:.2f}"
    print(f"| {label} | {size/2**20:.1f} MiB | {bpw_s} | {r['ppl']:.3f} | {r['mean_kld']:.4f} ± {r['kld_stderr']:.4f} | {100*r['top1_agreement']:.1f}% |")
PY
}

[ "$CH_SMOL" -gt 0 ] && table "SmolLM2-135M-Instruct" SmolLM2-135M-Instruct.Q4_1.gguf "$CH_SMOL"
[ "$CH_GEMMA" -gt 0 ] && table "gemma-3-270m" gemma-3-270m-q4_k_m.gguf "$CH_GEMMA"
true
