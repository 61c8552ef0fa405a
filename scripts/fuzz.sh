#!/usr/bin/env bash
# Run the fuzz targets (fuzz/fuzz_targets) for a set time each, growing their corpora under
# fuzz/corpus/TARGET, then minimize each corpus. A crash leaves its input under
# fuzz/artifacts/TARGET and stops that target with a non-zero status.
#   scripts/fuzz.sh [-s SECONDS] [-j PARALLEL] [TARGET ...]    (default: all targets, 600 s each, 1 at a time)
# Needs the nightly toolchain and cargo-fuzz (installed here when missing), and the reference
# models for the tokenizer target (scripts/fetch-models.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=600
par=1
while getopts "s:j:" o; do
  case $o in
    s) secs=$OPTARG ;;
    j) par=$OPTARG ;;
    *) echo "usage: $0 [-s SECONDS] [-j PARALLEL] [TARGET ...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
all=(gguf tokenizer chat_template split_wire verify_wire openai_request)
targets=("${@:-${all[@]}}")
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd fuzz
cargo +nightly fuzz build -O >/dev/null
mkdir -p logs
run() {
  local t=$1
  mkdir -p "corpus/$t"
  # Bounded memory and time per input: a template or file that explodes is a finding too.
  if cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
      -timeout=10 -print_final_stats=1 >"logs/$t.log" 2>&1; then
    status=ok
  else
    status="FAILED (see fuzz/logs/$t.log and fuzz/artifacts/$t)"
  fi
  local execs cov
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*' || true)
  cargo +nightly fuzz cmin -O "$t" "corpus/$t" >"logs/$t.cmin.log" 2>&1 || true
  echo "$t: $status, ${secs} s, ${execs:-?} executions, coverage ${cov:-?} edges, corpus $(ls "corpus/$t" | wc -l) inputs"
}
i=0
for t in "${targets[@]}"; do
  run "$t" &
  i=$((i + 1))
  if (( i % par == 0 )); then wait; fi
done
wait
