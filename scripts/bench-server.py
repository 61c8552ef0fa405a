#!/usr/bin/env python3
"""Load a running `kestrel serve` (or any OpenAI-compatible server) with N concurrent streaming
clients and print aggregate throughput and time to first token; with --pid, also sample the
server's resident memory (a soak test: --duration 600 runs ten minutes).

  scripts/bench-server.py --url http://127.0.0.1:8080 --clients 1 4 8 --requests 4
  scripts/bench-server.py --url http://127.0.0.1:8080 --clients 4 --duration 600 --pid PID

Standard library only. Each client sends streaming chat requests back to back; a request's
time to first token is from sending it to the first content chunk; throughput is all completion
tokens (from the final usage chunk) divided by the wall time of the run.
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how rain forms, step by step.",
    "Describe a busy market in the morning.",
    "Tell me about the history of bicycles.",
    "Write a letter to a friend about a trip to the mountains.",
    "Explain what a compiler does.",
    "Describe the life cycle of a butterfly.",
    "Write a poem about the sea at night.",
]


def one_request(url, prompt, max_tokens, key):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    })
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}: {r.read()[:200]!r}")
    ttft, tokens = None, 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for c in chunk.get("choices", []):
            if ttft is None and c.get("delta", {}).get("content"):
                ttft = time.perf_counter() - t0
    conn.close()
    return ttft, tokens


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(url, clients, requests, duration, max_tokens, key, pid):
    ttfts, tokens, errors = [], [0], []
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration if duration else None

    def client(i):
        n = 0
        while (stop_at and time.perf_counter() < stop_at) or (not stop_at and n < requests):
            try:
                t, k = one_request(url, PROMPTS[(i + n) % len(PROMPTS)], max_tokens, key)
                with lock:
                    if t is not None:
                        ttfts.append(t)
                    tokens[0] += k
            except Exception as e:  # noqa: BLE001 - counted and shown
                with lock:
                    errors.append(repr(e))
            n += 1

    rss = []
    done = threading.Event()

    def sampler():
        while not done.is_set():
            rss.append(rss_kib(pid))
            done.wait(10)

    if pid:
        threading.Thread(target=sampler, daemon=True).start()
    t0 = time.perf_counter()
    ts = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    done.set()
    out = {
        "clients": clients,
        "requests": len(ttfts),
        "errors": len(errors),
        "completion_tokens": tokens[0],
        "wall_s": round(wall, 2),
        "throughput_tok_s": round(tokens[0] / wall, 2),
        "ttft_median_ms": round(statistics.median(ttfts) * 1e3, 1) if ttfts else None,
        "ttft_p90_ms": round(sorted(ttfts)[int(0.9 * (len(ttfts) - 1))] * 1e3, 1) if ttfts else None,
    }
    if pid:
        rss.append(rss_kib(pid))
        out["rss_mib_first_last_max"] = [round(rss[0] / 1024, 1), round(rss[-1] / 1024, 1), round(max(rss) / 1024, 1)]
    if errors:
        out["first_error"] = errors[0]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--requests", type=int, default=4, help="requests per client (without --duration)")
    ap.add_argument("--duration", type=float, default=0, help="run each level this many seconds instead")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--api-key")
    ap.add_argument("--pid", type=int, help="server process id: sample its resident memory")
    a = ap.parse_args()
    for n in a.clients:
        r = run(a.url, n, a.requests, a.duration, a.max_tokens, a.api_key, a.pid)
        print(json.dumps(r), flush=True)
    if a.pid:
        u = urllib.parse.urlparse(a.url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        c.request("GET", "/health")
        print(json.dumps({"health_after": c.getresponse().status}))


if __name__ == "__main__":
    main()
