#!/usr/bin/env python3
"""Soak a `kestrel serve`: N clients for a set time with a mix of what real and hostile clients
send, while a monitor polls /health and samples the server's resident memory. Prints one JSON
summary (and a table): requests by kind and outcome, RSS at start, end and peak, /health polls.

  scripts/soak-server.py --model M.gguf --clients 8 --duration 1800      # starts the server
  scripts/soak-server.py --url http://127.0.0.1:8080 --pid PID ...       # one already running

Each client loops over: streamed chat (read to the end), non-streamed completion, a stream
cancelled after a few chunks (the socket closed mid-answer), a malformed body, a bad field,
an oversized body, and a slow client that sends half its headers and goes away. A good request
must get 200 and a complete answer; a bad one a 4xx with an OpenAI error body; any other
outcome is counted as a failure. Standard library only.
"""

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how rain forms, step by step.",
    "Describe a busy market in the morning.",
    "Tell me about the history of bicycles.",
    "Explain what a compiler does.",
    "Write a poem about the sea at night.",
]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Soak:
    def __init__(self, url, max_tokens):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.max_tokens = max_tokens
        self.lock = threading.Lock()
        self.counts = {}  # (kind, outcome) -> n
        self.tokens = 0

    def count(self, kind, outcome):
        with self.lock:
            self.counts[(kind, outcome)] = self.counts.get((kind, outcome), 0) + 1

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=300)

    def post(self, path, body):
        c = self.conn()
        c.request("POST", path, body, {"Content-Type": "application/json"})
        return c, c.getresponse()

    def chat_stream(self, rng):
        body = json.dumps({"messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
                           "max_tokens": self.max_tokens, "temperature": 0.7, "seed": rng.randrange(1 << 30),
                           "stream": True, "stream_options": {"include_usage": True}})
        c, r = self.post("/v1/chat/completions", body)
        if r.status != 200:
            return f"status {r.status}"
        done, usage = False, None
        for raw in r:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                ch = json.loads(line[6:])
                usage = ch.get("usage") or usage
        c.close()
        if not done or not usage:
            return "incomplete stream"
        with self.lock:
            self.tokens += usage["completion_tokens"]
        return "ok"

    def completion(self, rng):
        body = json.dumps({"prompt": rng.choice(PROMPTS), "max_tokens": self.max_tokens // 2,
                           "temperature": 0})
        c, r = self.post("/v1/completions", body)
        v = json.loads(r.read())
        c.close()
        if r.status != 200 or not v.get("choices"):
            return f"status {r.status}"
        with self.lock:
            self.tokens += v["usage"]["completion_tokens"]
        return "ok"

    def cancelled(self, rng):
        body = json.dumps({"messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
                           "max_tokens": self.max_tokens, "stream": True})
        c, r = self.post("/v1/chat/completions", body)
        if r.status != 200:
            return f"status {r.status}"
        for _ in range(rng.randrange(1, 6)):
            r.readline()
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        return "ok"

    def bad(self, body, want):
        try:
            c, r = self.post("/v1/chat/completions", body)
        except (BrokenPipeError, ConnectionResetError):
            # A server may answer 413 and close before a large body is all sent.
            return "ok: closed before the body was sent" if want == 413 else "reset"
        text = r.read()
        c.close()
        try:
            err = json.loads(text).get("error", {}).get("message")
        except ValueError:
            err = None
        return "ok" if r.status == want and err else f"status {r.status}: {text[:80]!r}"

    def slow(self, rng):
        s = socket.create_connection((self.host, self.port), timeout=30)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nContent-Len")
        time.sleep(rng.uniform(0.1, 1.0))
        s.close()
        return "ok"

    def client(self, stop, seed):
        rng = random.Random(seed)
        kinds = [
            ("chat_stream", self.chat_stream, 4),
            ("completion", self.completion, 2),
            ("cancelled", self.cancelled, 2),
            ("malformed", lambda r: self.bad(b'{"messages": [', 400), 1),
            ("bad_field", lambda r: self.bad(json.dumps({"messages": [{"role": "user", "content": "x"}],
                                                          "temperature": "hot"}), 400), 1),
            ("oversized", lambda r: self.bad(b'{"messages":"' + b"x" * (5 << 20) + b'"}', 413), 1),
            ("slow_client", self.slow, 1),
        ]
        bag = [k for k in kinds for _ in range(k[2])]
        while not stop.is_set():
            kind, f, _ = rng.choice(bag)
            try:
                outcome = f(rng)
            except Exception as e:  # a reset connection, a timeout: a failure to report
                outcome = f"{type(e).__name__}"
            self.count(kind, outcome)


def health(host, port):
    try:
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.request("GET", "/health")
        return c.getresponse().status
    except Exception:
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--model", help="start `kestrel serve` on this model (port 8093)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    server = None
    if a.model:
        exe = os.path.join(os.path.dirname(__file__), "..", "target", "release", "kestrel")
        server = subprocess.Popen([exe, "serve", "-m", a.model, "-t", a.threads, "--port", "8093",
                                   "--parallel", "8", "--ctx", "1024"],
                                  stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        a.url, a.pid = "http://127.0.0.1:8093", server.pid
        for _ in range(600):
            if health("127.0.0.1", 8093) == 200:
                break
            time.sleep(0.1)
    if not a.url or not a.pid:
        sys.exit("give --model, or --url and --pid")
    s = Soak(a.url, a.max_tokens)
    stop = threading.Event()
    threads = [threading.Thread(target=s.client, args=(stop, i), daemon=True) for i in range(a.clients)]
    for t in threads:
        t.start()
    # The first minute (a tenth of a short run) under the same load is warm-up: every slot's
    # KV cache and the model's pages are touched; RSS is measured from its end.
    warm = min(60.0, a.duration / 10)
    t0, rss0, peak, polls, bad_polls = time.time(), None, 0, 0, 0
    while time.time() - t0 < a.duration:
        time.sleep(5)
        polls += 1
        if health(s.host, s.port) != 200:
            bad_polls += 1
        r = rss_kib(a.pid)
        if rss0 is None and time.time() - t0 >= warm:
            rss0 = r
        peak = max(peak, r)
    rss0 = rss0 or rss_kib(a.pid)
    stop.set()
    for t in threads:
        t.join(timeout=600)
    rss1 = rss_kib(a.pid)
    alive = server.poll() is None if server else os.path.exists(f"/proc/{a.pid}")
    by_kind = {}
    for (kind, outcome), n in sorted(s.counts.items()):
        by_kind.setdefault(kind, {})[outcome] = n
    failures = sum(n for (k, o), n in s.counts.items() if not o.startswith("ok"))
    out = {"clients": a.clients, "duration_s": a.duration, "warm_up_s": warm, "requests": sum(s.counts.values()),
           "failures": failures, "by_kind": by_kind, "completion_tokens": s.tokens,
           "rss_start_mib": round(rss0 / 1024, 1), "rss_end_mib": round(rss1 / 1024, 1),
           "rss_peak_mib": round(peak / 1024, 1),
           "rss_change_pct": round(100 * (rss1 - rss0) / max(rss0, 1), 2),
           "health_polls": polls, "health_failures": bad_polls, "server_alive": alive}
    print(json.dumps(out, indent=1))
    if server:
        server.terminate()
        server.wait()
    sys.exit(0 if failures == 0 and bad_polls == 0 and alive else 1)


if __name__ == "__main__":
    main()
