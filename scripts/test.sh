#!/usr/bin/env bash
# The test command: fetch the reference models if missing, then build and run every test.
# Needs ../shared (goldens and evaluation text) beside the checkout, python3 with pip, cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d ../shared/golden ] && [ -z "${KESTREL_GOLDEN:-}" ]; then
  echo "test.sh: ../shared/golden is missing (the llama.cpp reference outputs the tests compare against)" >&2
  exit 1
fi
scripts/fetch-models.sh all
cargo test --release --workspace "$@"
