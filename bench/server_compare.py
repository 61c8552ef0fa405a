#!/usr/bin/env python3
"""kestrel serve beside llama.cpp's llama-server on the same model and machine.

Builds llama-server from the llama-cpp-python sdist (as bench/compare.py builds llama-bench),
starts each server in turn with the same slots, context per slot and threads, and loads it with
scripts/bench-server.py (1, 4 and 8 concurrent streaming chat clients, 128 tokens each):
aggregate completion tokens/s and median time to first token.

    bench/server_compare.py [-m MODEL] [--clients 1 4 8] [--requests 3] [-t 2] [--unbatched]

--unbatched also runs kestrel with --no-batch-prompts (each new prompt evaluated alone), in the
same run, to measure what evaluating the prompts that arrive together in one pass gives.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

ROOT = compare.ROOT


def wait_healthy(url, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"server_compare: server exited with {proc.returncode}")
        try:
            if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("server_compare: server did not become healthy")


def load(url, clients, requests, max_tokens):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench-server.py"), "--url", url,
                          "--clients", *map(str, clients), "--requests", str(requests),
                          "--max-tokens", str(max_tokens)], check=True, capture_output=True, text=True)
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def prompts_batched(url):
    """kestrel's count of prompts evaluated in passes shared with others (GET /metrics)."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith("kestrel_prompts_batched_total "):
            return int(line.split()[1])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default=str(compare.MODELS / compare.DEFAULT_MODELS[0]))
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--ctx", type=int, default=2048, help="context per slot")
    ap.add_argument("--unbatched", action="store_true",
                    help="also run kestrel with --no-batch-prompts")
    a = ap.parse_args()
    slots = max(a.clients)
    llama = compare.build_llama_tool("llama-server")
    kestrel = compare.build_kestrel()
    servers = {
        "kestrel": [str(kestrel), "serve", "-m", a.model, "--port", "18181", "--parallel", str(slots),
                    "--ctx", str(a.ctx), "-t", str(a.threads)],
        "llama.cpp": [str(llama), "-m", a.model, "--port", "18182", "-np", str(slots),
                      "-c", str(a.ctx * slots), "-t", str(a.threads), "--no-webui"],
    }
    ports = {"kestrel": 18181, "llama.cpp": 18182}
    if a.unbatched:
        servers["unbatched"] = servers["kestrel"][:] + ["--no-batch-prompts"]
        servers["unbatched"][servers["unbatched"].index("18181")] = "18183"
        ports["unbatched"] = 18183
    results, batched = {}, {}
    for name, cmd in servers.items():
        env = dict(os.environ, LD_LIBRARY_PATH=str(llama.parent))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            url = f"http://127.0.0.1:{ports[name]}"
            wait_healthy(url, proc)
            compare.log(f"{name}: loading with {a.clients} clients ...")
            results[name] = load(url, a.clients, a.requests, a.max_tokens)
            if name != "llama.cpp":
                batched[name] = prompts_batched(url)
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"\n{Path(a.model).name}, {a.threads} threads, {slots} slots, {a.max_tokens} tokens per "
          f"request, {a.requests} requests per client\n")
    print("| clients | kestrel tok/s | llama.cpp tok/s | ratio | kestrel TTFT ms | llama.cpp TTFT ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, l in zip(results["kestrel"], results["llama.cpp"]):
        print(f"| {k['clients']} | {k['throughput_tok_s']} | {l['throughput_tok_s']} | "
              f"{k['throughput_tok_s'] / l['throughput_tok_s']:.2f} | {k['ttft_median_ms']} | "
              f"{l['ttft_median_ms']} |")
        for r in (k, l):
            if r.get("errors"):
                print(f"  ({r['errors']} errors: {r.get('first_error')})")
    print(f"\nkestrel: {batched['kestrel']} of its prompts evaluated in shared passes")
    if a.unbatched:
        print("\nkestrel with shared prompt passes vs --no-batch-prompts (each prompt alone):\n")
        print("| clients | batched tok/s | unbatched tok/s | ratio | batched TTFT ms | unbatched TTFT ms |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for k, u in zip(results["kestrel"], results["unbatched"]):
            print(f"| {k['clients']} | {k['throughput_tok_s']} | {u['throughput_tok_s']} | "
                  f"{k['throughput_tok_s'] / u['throughput_tok_s']:.2f} | {k['ttft_median_ms']} | "
                  f"{u['ttft_median_ms']} |")


if __name__ == "__main__":
    main()
