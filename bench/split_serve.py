#!/usr/bin/env python3
"""`kestrel serve --split-remote` (a device-side OpenAI server that splits every generation)
beside plain `kestrel serve` and llama.cpp's `llama-server` on the same model and machine.

The split server (`kestrel serve --split-server`) and the device-side server each get
--threads threads; the plain servers get the same. On one machine both halves of a split share
its cores, so this measures the split's overhead (protocol, HTTP, the sequences stepped in
turn instead of batched), not a speed-up: that needs a server faster than the device (see
docs/split.md, "Measured"). Load: scripts/bench-server.py (streaming chat clients, 128 tokens).
With --rtt, the device-side server reaches the split server through bench/verify_remote.py's
user-space delaying proxy (half the RTT each way), on loopback.

    bench/split_serve.py [-m MODEL] [--clients 1 4] [--requests 3] [-t 1] [-k 15] [--rtt 0 20]
"""

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
from server_compare import load, wait_healthy  # noqa: E402


def start(cmd, port, env=None):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_healthy(f"http://127.0.0.1:{port}", proc)
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy(upstream_port, rtt_ms):
    """A delaying proxy to the split server; returns (process, port)."""
    port = free_port()
    p = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "verify_remote.py"),
                          "--role", "proxy", "--listen", f"127.0.0.1:{port}",
                          "--upstream", f"127.0.0.1:{upstream_port}", "--delay-ms", str(rtt_ms / 2)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if p.stdout.readline().strip() != "ready":
        sys.exit("split_serve: the delaying proxy did not start")
    return p, port


def stop(*procs):
    for p in procs:
        p.terminate()
        p.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default=str(compare.MODELS / compare.DEFAULT_MODELS[0]))
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=1, help="threads of each server")
    ap.add_argument("-k", "--split-layer", type=int, default=15)
    ap.add_argument("--wires", nargs="+", default=["f32", "f16"])
    ap.add_argument("--rtt", type=float, nargs="+", default=[0, 20], help="ms between the two servers")
    ap.add_argument("--ctx", type=int, default=2048, help="context per slot")
    a = ap.parse_args()
    slots = max(a.clients)
    kestrel = str(compare.build_kestrel())
    llama = compare.build_llama_tool("llama-server")
    common = ["-m", a.model, "--parallel", str(slots), "--ctx", str(a.ctx), "-t", str(a.threads)]
    results = {}

    proc = start([kestrel, "serve", "--port", "18281", *common], 18281)
    try:
        compare.log("kestrel serve ...")
        results["kestrel serve"] = load("http://127.0.0.1:18281", a.clients, a.requests, a.max_tokens)
    finally:
        stop(proc)

    split = start([kestrel, "serve", "--port", "18282", "--split-server", *common], 18282)
    try:
        for rtt in a.rtt:
            px, port = proxy(18282, rtt) if rtt > 0 else (None, 18282)
            try:
                for w in a.wires:
                    dev = start([kestrel, "serve", "--port", "18283", *common, "--split-remote",
                                 f"http://127.0.0.1:{port}", "--split-layer", str(a.split_layer),
                                 "--split-wire", w], 18283)
                    try:
                        name = f"split k={a.split_layer} {w}, RTT {rtt:g} ms"
                        compare.log(f"kestrel serve --split-remote ({name}) ...")
                        results[name] = load("http://127.0.0.1:18283", a.clients, a.requests,
                                             a.max_tokens)
                    finally:
                        stop(dev)
            finally:
                if px:
                    stop(px)
    finally:
        stop(split)

    env = dict(os.environ, LD_LIBRARY_PATH=str(llama.parent))
    proc = start([str(llama), "-m", a.model, "--port", "18284", "-np", str(slots),
                  "-c", str(a.ctx * slots), "-t", str(a.threads), "--no-webui"], 18284, env)
    try:
        compare.log("llama-server ...")
        results["llama-server"] = load("http://127.0.0.1:18284", a.clients, a.requests, a.max_tokens)
    finally:
        stop(proc)

    print(f"\n{Path(a.model).name}, {a.threads} thread(s) per server, {slots} slots, "
          f"{a.max_tokens} tokens per request, {a.requests} requests per client\n")
    print("| server | clients | tok/s | vs llama-server | median TTFT ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    ref = {r["clients"]: r["throughput_tok_s"] for r in results["llama-server"]}
    for name, rows in results.items():
        for r in rows:
            ratio = r["throughput_tok_s"] / ref[r["clients"]] if ref.get(r["clients"]) else float("nan")
            print(f"| {name} | {r['clients']} | {r['throughput_tok_s']} | {ratio:.2f} | "
                  f"{r['ttft_median_ms']} |")
            if r.get("errors"):
                print(f"  ({r['errors']} errors: {r.get('first_error')})")


if __name__ == "__main__":
    main()
