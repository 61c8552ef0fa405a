#!/usr/bin/env python3
"""Side-by-side speed comparison: kestrel bench against llama.cpp's llama-bench.

Builds llama.cpp once from the llama-cpp-python source distribution on PyPI (the same release
that made ../shared/golden) into a cache directory, builds kestrel, then runs the two
benchmarks alternately, round after round, on the same models, thread counts and sizes, so
that both see the same machine noise. Prints the medians and the ratio kestrel / llama.cpp for
prefill tok/s, decode tok/s, time to first token and peak resident memory.

    bench/compare.py [-m MODEL ...] [-t 1,2] [-p 512] [-n 128] [-r 5] [--depth D [--depth-prefill]] [--json]
    bench/compare.py --suite real-sizes [--depth 4096] ...   # the reference models + real-size shapes

Measured the same way on both sides:
  * prefill: a -p token prompt into an empty context (llama-bench `-p P -n 0`);
  * decode: -n tokens after a -p token context (llama-bench `-p 0 -n N -d P`);
  * time to first token: kestrel's prefill plus choosing the token; for llama.cpp the prompt's
    evaluation time P / prefill tok/s (llama-bench does not sample);
  * peak RSS: the maximum resident set of the benchmark process (from wait4), model mapping
    included, the larger of llama-bench's two processes;
  * with --depth D, also decode at depth: -n tokens after a context of D tokens that is filled
    untimed (llama-bench `-p 0 -n N -d D`, kestrel bench `-p 0 -n N -d D`; not in peak RSS);
  * with --depth-prefill as well, prefill of the -p token prompt after that context
    (`-p P -n 0 -d D` on both sides), where attention over the cache outweighs the weights.

--suite real-sizes runs both reference models, the synthetic real-size shapes of
bench/synth_model.py in Q4_K_M (qwen3-0.6b, llama-3.2-1b, qwen2.5-1.5b, llama-3.2-3b,
llama-3.1-8b) and llama-3.2-1b in Q4_0 and Q8_0, making the synthetic files first where missing.
The output starts with the CPU model and its SIMD flags; kestrel's ISA is shown per row.
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
import synth_model  # noqa: E402

DEFAULT_MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]
# Suites: (shape, type) pairs of bench/synth_model.py after the reference models.
SUITES = {
    "real-sizes": [(shape, t) for shape in synth_model.SHAPES
                   for t in synth_model.DEFAULT_TYPES[shape]],
}
ISA_FLAGS = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_int8"]


def build_llama_bench() -> Path:
    """llama-bench from the sdist's vendored llama.cpp, built once into the cache."""
    return build_llama_tool("llama-bench")


def cpu_info():
    """The CPU model and which of the SIMD flags that matter here it has (Linux /proc/cpuinfo)."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            k = k.strip()
            if k == "model name" and model == "unknown":
                model = v.strip()
            elif k == "flags" and not flags:
                flags = set(v.split())
    except OSError:
        pass
    return {"model": model, "isa_flags": [f for f in ISA_FLAGS if f in flags],
            "cores": os.cpu_count()}


def suite_models(name):
    """The models of a suite, making the synthetic ones that are missing."""
    models = [MODELS / m for m in DEFAULT_MODELS]
    missing = {}
    for shape, t in SUITES[name]:
        path = synth_model.OUT / synth_model.file_name(shape, t)
        models.append(path)
        if not path.exists():
            missing.setdefault(shape, []).append(t)
    for shape, types in missing.items():
        log(f"making {shape} {','.join(types)} (bench/synth_model.py) ...")
        subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "synth_model.py"),
                        "--shapes", shape, "--types", ",".join(types)], check=True)
    return models


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


def llama_round(exe, model, threads, p, n, depth=0, depth_prefill=False):
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
    if n > 0 and depth > 0:
        out, _ = run_measured(common + ["-p", "0", "-n", str(n), "-d", str(depth)], env)
        res["decode_depth_tps"] = json.loads(out)[0]["avg_ts"]
    if p > 0 and depth > 0 and depth_prefill:
        out, _ = run_measured(common + ["-p", str(p), "-n", "0", "-d", str(depth)], env)
        res["prefill_depth_tps"] = json.loads(out)[0]["avg_ts"]
    res["peak_rss_bytes"] = rss
    return res


def kestrel_round(exe, model, threads, p, n, depth=0, depth_prefill=False):
    common = [str(exe), "bench", "-m", str(model), "-t", str(threads), "-r", "1", "--json"]
    out, rss = run_measured(common + ["-p", str(p), "-n", str(n)])
    j = json.loads(out.splitlines()[-1])
    res = {"peak_rss_bytes": rss}
    if "isa" in j:
        res["isa"] = j["isa"]
    if p > 0:
        res["prefill_tps"] = j["prefill_tps"]
        res["ttft_ms"] = j["ttft_ms"]
    if n > 0:
        res["decode_tps"] = j["decode_tps"]
    # kestrel alone: decode's share of the measured memory read speed, and load time.
    for key in ("decode_bw_fraction", "mem_read_bytes_per_s", "load_ms"):
        if key in j and (n > 0 or key == "load_ms"):
            res[key] = j[key]
    if n > 0 and depth > 0:
        out, _ = run_measured(common + ["-p", "0", "-n", str(n), "-d", str(depth)])
        res["decode_depth_tps"] = json.loads(out.splitlines()[-1])["decode_tps"]
    if p > 0 and depth > 0 and depth_prefill:
        out, _ = run_measured(common + ["-p", str(p), "-n", "0", "-d", str(depth)])
        res["prefill_depth_tps"] = json.loads(out.splitlines()[-1])["prefill_tps"]
    return res


FIGURES = [("prefill_tps", "prefill tok/s", True), ("decode_tps", "decode tok/s", True),
           ("decode_depth_tps", "decode tok/s at depth", True),
           ("prefill_depth_tps", "prefill tok/s at depth", True),
           ("ttft_ms", "time to first token, ms", False), ("peak_rss_bytes", "peak RSS, MiB", False)]


# Figures only kestrel bench reports (medians over the rounds, in each row as kestrel_KEY).
KESTREL_ONLY = ["decode_bw_fraction", "mem_read_bytes_per_s", "load_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", action="append", help="GGUF file (repeatable) [both reference models]")
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--rounds", type=int, default=5, help="alternating rounds per configuration")
    ap.add_argument("-d", "--depth", type=int, default=0,
                    help="also measure decode of -n tokens after an untimed context of D tokens")
    ap.add_argument("--depth-prefill", action="store_true",
                    help="with --depth, also measure prefill of -p tokens after that context")
    ap.add_argument("--suite", choices=sorted(SUITES),
                    help="run a suite of models (real-sizes: the reference models and the "
                         "synthetic real-size shapes, made first where missing)")
    ap.add_argument("--kestrel", type=Path, help="kestrel binary to use [build this checkout]")
    ap.add_argument("--json", action="store_true", help="one JSON object per configuration")
    a = ap.parse_args()
    if a.suite and a.model:
        ap.error("--suite and -m are exclusive")
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores; ISA flags: {' '.join(cpu['isa_flags']) or 'none'}",
          file=sys.stderr if a.json else sys.stdout, flush=True)
    for m in [MODELS / m for m in DEFAULT_MODELS] if a.suite or not a.model else []:
        if not m.exists():
            sys.exit(f"compare: {m} is missing (scripts/fetch-models.sh fetches the reference models)")
    if a.suite:
        models = suite_models(a.suite)
    else:
        models = [Path(m) for m in a.model] if a.model else [MODELS / m for m in DEFAULT_MODELS]
    for m in models:
        if not m.exists():
            sys.exit(f"compare: {m} is missing")
    llama = build_llama_bench()
    kestrel = a.kestrel or build_kestrel()
    rows = []
    for model in models:
        for t in [int(x) for x in a.threads.split(",")]:
            ks, ls = [], []
            for r in range(a.rounds):
                log(f"{model.name} t={t}: round {r + 1}/{a.rounds}")
                # Alternate which goes first so neither always runs on a warmer machine.
                args = (model, t, a.n_prompt, a.n_gen, a.depth, a.depth_prefill)
                if r % 2 == 0:
                    ks.append(kestrel_round(kestrel, *args))
                    ls.append(llama_round(llama, *args))
                else:
                    ls.append(llama_round(llama, *args))
                    ks.append(kestrel_round(kestrel, *args))
            row = {"model": model.name, "threads": t, "n_prompt": a.n_prompt, "n_gen": a.n_gen,
                   "depth": a.depth, "depth_prefill": a.depth_prefill, "rounds": a.rounds, "cpu": cpu,
                   "kestrel_isa": ks[-1].get("isa")}
            for key in KESTREL_ONLY:
                kv = [x[key] for x in ks if key in x]
                if kv:
                    row["kestrel_" + key] = statistics.median(kv)
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
        print("| model | threads | kestrel ISA | figure | kestrel | llama.cpp | ratio |")
        print("| --- | ---: | --- | --- | ---: | ---: | ---: |")
        for row in rows:
            for key, label, _ in FIGURES:
                if key not in row:
                    continue
                if key == "decode_tps" and a.n_prompt > 0:
                    label += f" @ d{a.n_prompt}"
                elif key == "decode_depth_tps":
                    label = f"decode tok/s @ d{a.depth}"
                elif key == "prefill_depth_tps":
                    label = f"prefill tok/s @ d{a.depth}"
                v = row[key]
                scale = 1 / 2**20 if key == "peak_rss_bytes" else 1
                print(f"| {row['model']} | {row['threads']} | {row['kestrel_isa'] or '?'} | {label} "
                      f"| {v['kestrel'] * scale:.1f} | {v['llama_cpp'] * scale:.1f} | {v['ratio']:.2f} |")
        print("\nkestrel alone: decode's share of the memory read speed measured in the same "
              "process (the weights and KV cache one decode step reads, times tok/s), and load time.\n")
        print("| model | threads | read speed, GB/s | decode, % of it | load ms |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for row in rows:
            bw, frac = row.get("kestrel_mem_read_bytes_per_s"), row.get("kestrel_decode_bw_fraction")
            load = row.get("kestrel_load_ms")
            print(f"| {row['model']} | {row['threads']} | {bw / 1e9 if bw else float('nan'):.1f} "
                  f"| {100 * frac if frac else float('nan'):.0f} | {load or float('nan'):.0f} |")
    log(f"done at {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()
