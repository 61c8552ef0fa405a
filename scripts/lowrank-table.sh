#!/usr/bin/env bash
# Produces the low-rank factorization tables of docs/compression.md: for each reference model,
# an F32 base dequantized from the shipped file, `kestrel lowrank` at a few settings, and size,
# parameters, perplexity, KL-divergence and top-1 agreement against the F32 base on the first
# chunks of ../shared/data/wiki.test.raw. The activation-weighted row uses an importance matrix
# from $CALIB_CHUNKS (default 16) chunks of 512 tokens of ../shared/data/calibration.txt.
#
# usage: scripts/lowrank-table.sh OUT_DIR [SMOLLM_CHUNKS] [GEMMA_CHUNKS]
# (a chunk count of 0 skips that model). ONLY="1 2" limits the run to those recipe indices
# (0-based, in the order of RECIPES below). Needs a release build (target/release/kestrel or
# $KESTREL) and the models in $KESTREL_MODELS or ~/.cache/kestrel/models. Prints markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: lowrank-table.sh OUT_DIR [SMOLLM_CHUNKS] [GEMMA_CHUNKS]}
CH_SMOL=${2:-4}
CH_GEMMA=${3:-3}
K=${KESTREL:-target/release/kestrel}
MODELS=${KESTREL_MODELS:-$HOME/.cache/kestrel/models}
WIKI=../shared/data/wiki.test.raw
CALIB=../shared/data/calibration.txt
CC=${CALIB_CHUNKS:-16}
mkdir -p "$OUT"

# label | kestrel lowrank options
RECIPES=(
  "full rank, all 7 block matrices (--always)|--rank 100000 --always"
  "--energy 0.95 on ffn_*|--energy 0.95 --tensors ffn_*"
  "--energy 0.9 on ffn_*|--energy 0.9 --tensors ffn_*"
  "--energy 0.9 on ffn_*, activation-weighted (--imatrix)|--energy 0.9 --tensors ffn_* --imatrix IMATRIX"
  "--energy 0.9 on ffn_*, Q8_0 factors|--energy 0.9 --tensors ffn_* --type q8_0"
  "--rank 256 on attn_*|--rank 256 --tensors attn_*"
  "--rank 128 on ffn_*|--rank 128 --tensors ffn_*"
)

table() { # name shipped-file chunks
  local name=$1 shipped=$2 chunks=$3 d="$OUT/$1"
  mkdir -p "$d"
  [ -f "$d/f32.gguf" ] || "$K" convert "$MODELS/$shipped" "$d/f32.gguf" --type f32 >/dev/null 2>&1
  [ -f "$d/imatrix.gguf" ] || "$K" imatrix -m "$d/f32.gguf" -f "$CALIB" -o "$d/imatrix.gguf" \
      -c 512 --chunks "$CC" >/dev/null 2>&1
  local models=() i=0
  : >"$d/labels"
  for r in "${RECIPES[@]}"; do
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $i "* ]]; then i=$((i + 1)); continue; fi
    local label=${r%%|*} opts=${r#*|} f="$d/lr$i.gguf"
    opts=${opts/IMATRIX/$d/imatrix.gguf}
    # shellcheck disable=SC2086
    [ -f "$f" ] || "$K" lowrank "$d/f32.gguf" "$f" $opts --json >"$f.json" 2>/dev/null
    echo "$f|$label|$opts" >>"$d/labels"
    models+=(-m "$f")
    i=$((i + 1))
  done
  "$K" kld --base "$d/f32.gguf" "${models[@]}" -f "$WIKI" -c 512 --chunks "$chunks" --json \
      >"$d/kld.jsonl" 2>"$d/kld.log"
  python3 - "$d" "$name" <<'PY'
import json, os, sys
d, name = sys.argv[1], sys.argv[2]
labels = {l.split("|")[0]: l.split("|")[1] for l in open(f"{d}/labels").read().splitlines()}
rows = [json.loads(l) for l in open(f"{d}/kld.jsonl")]
base = os.path.getsize(f"{d}/f32.gguf")
print(f"\n### {name} ({rows[0]['chunks']} chunks of {rows[0]['ctx']} tokens, {rows[0]['scored']} positions scored; F32 perplexity {rows[0]['base_ppl']:.3f}, file {base/2**20:.1f} MiB)\n")
print("| recipe | matrices factored | mean rank / full | energy kept | parameters | file size | perplexity | KLD vs F32 | top-1 agreement |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    p = r["model"]
    j = json.load(open(p + ".json"))
    f = j["factored"]
    rank = sum(x["rank"] for x in f) / len(f)
    full = sum(min(x["rows"], x["cols"]) for x in f) / len(f)
    en = sum(x["energy"] for x in f) / len(f)
    print(f"| {labels[p]} | {len(f)} | {rank:.0f} / {full:.0f} | {en:.3f} | {j['params_after']/1e6:.1f}M of {j['params_before']/1e6:.1f}M | {os.path.getsize(p)/2**20:.1f} MiB | {r['ppl']:.3f} | {r['mean_kld']:.4f} ± {r['kld_stderr']:.4f} | {100*r['top1_agreement']:.1f}% |")
PY
}

[ "$CH_SMOL" -gt 0 ] && table "SmolLM2-135M-Instruct" SmolLM2-135M-Instruct.Q4_1.gguf "$CH_SMOL"
[ "$CH_GEMMA" -gt 0 ] && table "gemma-3-270m" gemma-3-270m-q4_k_m.gguf "$CH_GEMMA"
true
