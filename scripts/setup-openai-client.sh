#!/usr/bin/env bash
# Make a Python virtual environment with the official `openai` client (from PyPI), which the
# server tests (crates/kestrel-cli/tests/serve.rs) drive `kestrel serve` with, and `jsonschema`,
# which checks constrained output (crates/kestrel-grammar/tests/json_schema.rs).
# Usage: scripts/setup-openai-client.sh DIR   (idempotent; prints DIR/bin/python)
set -euo pipefail
dir=${1:?usage: $0 VENV_DIR}
py="$dir/bin/python"
if [ -x "$py" ] && "$py" -c 'import openai, httpx, jsonschema' 2>/dev/null; then
  echo "$py"
  exit 0
fi
rm -rf "$dir"
python3 -m venv "$dir"
"$py" -m pip install --quiet --disable-pip-version-check 'openai>=1.40,<3' 'jsonschema>=4.18,<5' >&2
"$py" -c 'import openai, httpx, jsonschema' >&2
echo "$py"
