#!/usr/bin/env bash
# Produces the structured-pruning tables of docs/compression.md: for each reference model, an
# F32 base dequantized from the shipped file, `kestrel prune --drop-layers N` (N = 1, 2, 4) and
# `--ffn-keep F` (F = 0.75, 0.5) with calibration on ../shared/data/calibration.txt, and size,
# parameters, perplexity, KL-divergence and top-1 agreement against the F32 base on the first
# chunks of ../shared/data/wiki.test.raw.
#
# usage: scripts/structured-table.sh OUT_DIR [SMOLLM_CHUNKS] [GEMMA_CHUNKS]
# (a chunk count of 0 skips that model). Calibration uses $CALIB_CHUNKS (default 4) chunks of
# 512 tokens. Needs a release build (target/release/kestrel or $KESTREL) and the models in
# $KESTREL_MODELS or ~/.cache/kestrel/models. Prints markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: structured-table.sh OUT_DIR [SMOLLM_CHUNKS] [GEMMA_CHUNKS]}
CH_SMOL=${2:-4}
CH_GEMMA=${3:-3}
K=${KESTREL:-target/release/kestrel}
MODELS=${KESTREL_MODELS:-$HOME/.cache/kestrel/models}
WIKI=../shared/data/wiki.test.raw
CALIB=../shared/data/calibration.txt
CC=${CALIB_CHUNKS:-4}
mkdir -p "$OUT"

table() { # name shipped-file chunks
  local name=$1 shipped=$2 chunks=$3 d="$OUT/$1"
  mkdir -p "$d"
  [ -f "$d/f32.gguf" ] || "$K" convert "$MODELS/$shipped" "$d/f32.gguf" --type f32 >/dev/null 2>&1
  local models=()
  for spec in drop:1 drop:2 drop:4 ffn:0.75 ffn:0.5; do
    local kind=${spec%%:*} val=${spec#*:} f="$d/${spec/:/-}.gguf" opt
    [ "$kind" = drop ] && opt=--drop-layers || opt=--ffn-keep
    [ -f "$f" ] || "$K" prune "$d/f32.gguf" "$f" "$opt" "$val" --calib "$CALIB" -c 512 \
        --chunks "$CC" --json >"$f.json" 2>/dev/null
    models+=(-m "$f")
  done
  "$K" kld --base "$d/f32.gguf" "${models[@]}" -f "$WIKI" -c 512 --chunks "$chunks" --json \
      >"$d/kld.jsonl" 2>"$d/kld.log"
  python3 - "$d" "$name" <<'PY'
import json, os, sys
d, name = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(f"{d}/kld.jsonl")]
print(f"\n### {name} ({rows[0]['chunks']} chunks of {rows[0]['ctx']} tokens, {rows[0]['scored']} positions scored; F32 perplexity {rows[0]['base_ppl']:.3f})\n")
print("| recipe | removed | parameters | file size | perplexity | KLD vs F32 | top-1 agreement |")
print("|---|---|---:|---:|---:|---:|---:|")
for r in rows:
    p = r["model"]
    j = json.load(open(p + ".json"))
    label = os.path.basename(p).removesuffix(".gguf").replace("drop-", "--drop-layers ").replace("ffn-", "--ffn-keep ")
    removed = f"blocks {j['dropped_layers']}" if j["dropped_layers"] else f"FFN {j['n_ff']} -> {j['n_ff_kept']}"
    print(f"| {label} | {removed} | {j['params_after']/1e6:.1f}M of {j['params_before']/1e6:.1f}M | {os.path.getsize(p)/2**20:.1f} MiB | {r['ppl']:.3f} | {r['mean_kld']:.4f} ± {r['kld_stderr']:.4f} | {100*r['top1_agreement']:.1f}% |")
sims = json.load(open(f"{d}/drop-1.gguf.json"))["block_similarity"]
print("\nBlock input/output cosine (calibration): " + " ".join(f"{s:.3f}" for s in sims))
PY
}

[ "$CH_SMOL" -gt 0 ] && table "SmolLM2-135M-Instruct" SmolLM2-135M-Instruct.Q4_1.gguf "$CH_SMOL"
[ "$CH_GEMMA" -gt 0 ] && table "gemma-3-270m" gemma-3-270m-q4_k_m.gguf "$CH_GEMMA"
true
