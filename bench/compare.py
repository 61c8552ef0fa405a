#!/usr/bin/env python3
"""Side-by-side speed comparison: kestrel bench against llama.cpp's llama-bench.

Builds llama.cpp once from the llama-cpp-python source distribution on PyPI (the same release
that made ../shared/golden) into a cache directory, builds kestrel, then runs the two
benchmarks alternately, round after round, on the same models, thread counts and sizes, so
that both see the same machine noise. Prints the medians and the ratio kestrel / llama.cpp for
prefill tok/s, decode tok/s, time to first token and peak resident memory.

    bench/compare.py [-m MODEL ...] [-t 1,2] [-p 512] [-n 128] [-r 5] [--json]

Measured the same way on both sides:
  * prefill: a -p token prompt into an empty context (llama-bench `-p P -n 0`);
  * decode: -n tokens after a -p token context (llama-bench `-p 0 -n N -d P`);
  * time to first token: kestrel's prefill plus choosing the token; for llama.cpp the prompt's
    evaluation time P / prefill tok/s (llama-bench does not sample);
  * peak RSS: the maximum resident set of the benchmark process (from wait4), model mapping
    included, the larger of llama-bench's two processes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The llama.cpp build is shared with the other bench scripts (they import it from here).
from llamacpp import (CACHE, LLAMA_CPP_PYTHON, MODELS, ROOT, build_llama_tool,  # noqa: E402,F401
                      fetch_sdist, log)

DEFAULT_MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]


def build_llama_bench() -> Path:
    """llama-bench from the sdist's vendored llama.cpp, built once into the cache."""
    return build_llama_tool("llama-bench")


def build_kestrel() -> Path:
    log("building kestrel (release) ...")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kestrel-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "kestrel"


def run_measured(cmd, env=None):
    """Run `cmd`; return (stdout, peak RSS bytes of the process)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"compare: {' '.join(map(str, cmd))} failed:\n{err.decode(errors='replace')}")
    return out.decode(), ru.ru_maxrss * 1024  # Linux reports KiB


def llama_round(exe, model, threads, p, n):
    env = dict(os.environ, LD_LIBRARY_PATH=str(exe.parent))
    common = [str(exe), "-m", str(model), "-t", str(threads), "-r", "1", "-o", "json"]
    res = {}
    rss = 0
    if p > 0:
        out, r = run_measured(common + ["-p", str(p), "-n", "0"], env)
        res["prefill_tps"] = json.loads(out)[0]["avg_ts"]
        res["ttft_ms"] = p / res["prefill_tps"] * 1e3
        rss = max(rss, r)
    if n > 0:
        out, r = run_measured(common + ["-p", "0", "-n", str(n), "-d", str(p)], env)
        res["decode_tps"] = json.loads(out)[0]["avg_ts"]
        rss = max(rss, r)
    res["peak_rss_bytes"] = rss
    return res


def kestrel_round(exe, model, threads, p, n):
    out, rss = run_measured([str(exe), "bench", "-m", str(model), "-t", str(threads), "-p", str(p),
                             "-n", str(n), "-r", "1", "--json"])
    j = json.loads(out.splitlines()[-1])
    res = {"peak_rss_bytes": rss}
    if p > 0:
        res["prefill_tps"] = j["prefill_tps"]
        res["ttft_ms"] = j["ttft_ms"]
    if n > 0:
        res["decode_tps"] = j["decode_tps"]
    return res


FIGURES = [("prefill_tps", "prefill tok/s", True), ("decode_tps", "decode tok/s", True),
           ("ttft_ms", "time to first token, ms", False), ("peak_rss_bytes", "peak RSS, MiB", False)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", action="append", help="GGUF file (repeatable) [both reference models]")
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--rounds", type=int, default=5, help="alternating rounds per configuration")
    ap.add_argument("--json", action="store_true", help="one JSON object per configuration")
    a = ap.parse_args()
    models = [Path(m) for m in a.model] if a.model else [MODELS / m for m in DEFAULT_MODELS]
    for m in models:
        if not m.exists():
            sys.exit(f"compare: {m} is missing (scripts/fetch-models.sh fetches the reference models)")
    llama = build_llama_bench()
    kestrel = build_kestrel()
    rows = []
    for model in models:
        for t in [int(x) for x in a.threads.split(",")]:
            ks, ls = [], []
            for r in range(a.rounds):
                log(f"{model.name} t={t}: round {r + 1}/{a.rounds}")
                # Alternate which goes first so neither always runs on a warmer machine.
                if r % 2 == 0:
                    ks.append(kestrel_round(kestrel, model, t, a.n_prompt, a.n_gen))
                    ls.append(llama_round(llama, model, t, a.n_prompt, a.n_gen))
                else:
                    ls.append(llama_round(llama, model, t, a.n_prompt, a.n_gen))
                    ks.append(kestrel_round(kestrel, model, t, a.n_prompt, a.n_gen))
            row = {"model": model.name, "threads": t, "n_prompt": a.n_prompt, "n_gen": a.n_gen,
                   "rounds": a.rounds}
            for key, _, _ in FIGURES:
                kv = [x[key] for x in ks if key in x]
                lv = [x[key] for x in ls if key in x]
                if kv and lv:
                    km, lm = statistics.median(kv), statistics.median(lv)
                    row[key] = {"kestrel": km, "llama_cpp": lm, "ratio": km / lm,
                                "kestrel_all": kv, "llama_cpp_all": lv}
            rows.append(row)
            if a.json:
                print(json.dumps(row), flush=True)
    if not a.json:
        print(f"\nMedians of {a.rounds} alternating rounds; ratio = kestrel / llama.cpp "
              f"(higher is better for tok/s, lower for time and memory).\n")
        print("| model | threads | figure | kestrel | llama.cpp | ratio |")
        print("| --- | ---: | --- | ---: | ---: | ---: |")
        for row in rows:
            for key, label, _ in FIGURES:
                if key not in row:
                    continue
                v = row[key]
                scale = 1 / 2**20 if key == "peak_rss_bytes" else 1
                print(f"| {row['model']} | {row['threads']} | {label} | {v['kestrel'] * scale:.1f} "
                      f"| {v['llama_cpp'] * scale:.1f} | {v['ratio']:.2f} |")
    log(f"done at {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()
