#!/usr/bin/env python3
"""Device drafts / server verifies against plain remote decoding, at simulated round-trip times.

The device and the server live in two network namespaces joined by a veth pair, both made here
and removed at the end (also on failure or Ctrl-C). The round-trip time is added with `tc netem`
when the kernel has it; otherwise (this machine: no sch_netem) by a user-space delaying TCP
proxy on the device side that holds every chunk for RTT/2 in each direction. Without root or
`ip netns`, everything runs on loopback (still through the delaying proxy) and the output says so.

Compared, for each RTT and prompt, from the first request to the last token (model loading
excluded), greedy, the same number of tokens:
  stream    streaming POST /v1/completions: the server decodes alone and pushes each token; the
            RTT is paid once. The usual way a thin client uses a remote model.
  lockstep  POST /v1/verify with empty drafts: one server token per round trip. What the device
            loop costs without drafts, so the gain of drafting is seen apart from streaming.
  verify    kestrel run --verify-remote: the device drafts with its own model, one round trip
            per draft.

Usage: sudo python3 bench/verify_remote.py [--kestrel target/release/kestrel] [--rtt 10 50]
       [--tokens 64] [--draft MODEL] [--json OUT]
"""

import argparse
import asyncio
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("KESTREL_MODELS", Path.home() / ".cache/kestrel/models"))
TARGET = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = {
    "story": "<|im_start|>user\nWrite a short story about a fox who learns to fly.<|im_end|>\n<|im_start|>assistant\n",
    "code": "<|im_start|>user\nWrite a Python function that checks whether a number is prime.<|im_end|>\n<|im_start|>assistant\n",
    "summary": "<|im_start|>user\nSummarize: The Industrial Revolution began in Britain in the late 18th century. "
    "It replaced hand production with machines, new chemical processes and iron production, and the "
    "factory system. Steam power and the textile industry grew quickly.<|im_end|>\n<|im_start|>assistant\n",
}


# ---------------------------------------------------------------- the delaying proxy

async def _pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()

    async def read():
        while True:
            data = await reader.read(65536)
            await q.put((loop.time() + delay, data))
            if not data:
                return

    async def write():
        while True:
            due, data = await q.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, OSError):
        writer.close()


def _nodelay(w):
    s = w.get_extra_info("socket")
    if s is not None:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _proxy(listen, upstream, delay):
    uh, up = upstream.rsplit(":", 1)

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection(uh, int(up))
        except OSError:
            cw.close()
            return
        _nodelay(cw)
        _nodelay(uw)
        await asyncio.gather(_pipe(cr, uw, delay), _pipe(ur, cw, delay))

    lh, lp = listen.rsplit(":", 1)
    srv = await asyncio.start_server(handle, lh, int(lp))
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()


# ---------------------------------------------------------------- the baseline clients

def _post(url, body, stream=False):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    return urllib.request.urlopen(req, timeout=300)


def client_stream(base, prompt, n):
    t0 = time.perf_counter()
    r = _post(base + "/v1/completions", {"prompt": prompt, "max_tokens": n, "temperature": 0,
                                          "stream": True, "ignore_eos": True,
                                          "stream_options": {"include_usage": True}})
    tokens = None
    for line in r:
        line = line.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            tokens = ev["usage"]["completion_tokens"]
    ms = (time.perf_counter() - t0) * 1e3
    return {"tokens": tokens, "ms": ms}


def client_lockstep(base, prompt, n):
    t0 = time.perf_counter()
    r = json.load(_post(base + "/v1/verify", {"prompt": prompt, "draft": []}))
    sid, got = r["session"], [r["next"]]
    while len(got) < n:
        r = json.load(_post(base + "/v1/verify", {"session": sid, "draft": []}))
        got.append(r["next"])
    ms = (time.perf_counter() - t0) * 1e3
    req = urllib.request.Request(base + "/v1/verify/" + sid, method="DELETE")
    urllib.request.urlopen(req, timeout=60).read()
    return {"tokens": len(got), "ms": ms, "ids": got}


# ---------------------------------------------------------------- the network

class Net:
    """Two namespaces and a veth pair, or loopback when that cannot be had."""

    def __init__(self, tag):
        self.dev, self.srv = f"kvd-{tag}", f"kvs-{tag}"
        self.if_dev, self.if_srv = f"kvd{tag}"[:15], f"kvs{tag}"[:15]
        self.server_ip = "127.0.0.1"
        self.netns = False
        self.note = ""

    def setup(self):
        if os.geteuid() != 0 or not shutil.which("ip"):
            self.note = "not root or no `ip`: loopback"
            return
        try:
            sh(["ip", "netns", "add", self.dev])
            self.netns = True
            sh(["ip", "netns", "add", self.srv])
            sh(["ip", "link", "add", self.if_dev, "type", "veth", "peer", "name", self.if_srv])
            sh(["ip", "link", "set", self.if_dev, "netns", self.dev])
            sh(["ip", "link", "set", self.if_srv, "netns", self.srv])
            for ns, itf, ip in ((self.dev, self.if_dev, "10.231.7.1"), (self.srv, self.if_srv, "10.231.7.2")):
                sh(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", itf])
                sh(["ip", "-n", ns, "link", "set", itf, "up"])
                sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            self.server_ip = "10.231.7.2"
            self.note = "network namespaces joined by a veth pair"
        except subprocess.CalledProcessError as e:
            self.teardown()
            self.netns = False
            self.server_ip = "127.0.0.1"
            self.note = f"no network namespaces ({e.stderr.strip() if e.stderr else e}): loopback"

    def teardown(self):
        for ns in (self.dev, self.srv):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def on_dev(self, cmd):
        return (["ip", "netns", "exec", self.dev] + cmd) if self.netns else cmd

    def on_srv(self, cmd):
        return (["ip", "netns", "exec", self.srv] + cmd) if self.netns else cmd

    def netem(self, rtt_ms):
        """Add RTT/2 each way with netem; False when the kernel lacks it."""
        if not self.netns:
            return False
        ok = True
        for ns, itf in ((self.dev, self.if_dev), (self.srv, self.if_srv)):
            r = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", itf, "root",
                                "netem", "delay", f"{rtt_ms / 2}ms"], capture_output=True, text=True)
            ok = ok and r.returncode == 0
        if not ok:
            self.clear_netem()
        return ok

    def clear_netem(self):
        if self.netns:
            for ns, itf in ((self.dev, self.if_dev), (self.srv, self.if_srv)):
                subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", itf, "root"],
                               capture_output=True)


def sh(cmd):
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_ready(proc, word, what):
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline() if word == "listening" else proc.stdout.readline()
        if not line:
            raise SystemExit(f"{what} exited before it was ready")
        if word in line:
            return line
    raise SystemExit(f"{what} did not start")


def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kestrel", default=str(ROOT / "target/release/kestrel"))
    ap.add_argument("--rtt", type=float, nargs="+", default=[10, 50])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--draft", help="device model (default: a Q8_0 copy of SmolLM2 made here)")
    ap.add_argument("--draft-max", type=int, default=6)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--device-args", default="", help="more options for the device's kestrel run, e.g. '--draft ngram'")
    ap.add_argument("--json", help="write the results here too")
    # Internal: the proxy and the baseline clients run as subprocesses inside the device namespace.
    ap.add_argument("--role", choices=["proxy", "stream", "lockstep"], help=argparse.SUPPRESS)
    ap.add_argument("--listen", help=argparse.SUPPRESS)
    ap.add_argument("--upstream", help=argparse.SUPPRESS)
    ap.add_argument("--delay-ms", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--prompt", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.role == "proxy":
        asyncio.run(_proxy(a.listen, a.upstream, a.delay_ms / 1e3))
        return
    if a.role in ("stream", "lockstep"):
        f = client_stream if a.role == "stream" else client_lockstep
        print(json.dumps(f(a.base, a.prompt, a.tokens)))
        return

    kestrel = a.kestrel
    tmp = Path(tempfile.mkdtemp(prefix="kestrel-verify-bench-"))
    procs = []
    net = Net(f"{os.getpid() % 100000}")

    def cleanup(*_):
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        net.clear_netem()
        net.teardown()
        shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    draft = a.draft
    if not draft:
        draft = str(tmp / "smollm2-q8_0.gguf")
        sh([kestrel, "quantize", "--type", "Q8_0", str(TARGET), draft])
    net.setup()
    port = 8080 if net.netns else free_port()
    srv = subprocess.Popen(net.on_srv([kestrel, "serve", "-m", str(TARGET), "-t", a.threads, "--ctx", "1024",
                                       "--parallel", "1", "--host", net.server_ip, "--port", str(port)]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs.append(srv)
    wait_ready(srv, "listening", "kestrel serve")
    upstream = f"{net.server_ip}:{port}"
    me = [sys.executable, str(Path(__file__).resolve())]

    results = []
    for rtt in a.rtt:
        how = "netem"
        proxy = None
        if net.netem(rtt):
            base = f"http://{upstream}"
        else:
            how = "user-space delaying proxy (no netem)"
            lp = free_port() if not net.netns else 18000
            proxy = subprocess.Popen(net.on_dev(me + ["--role", "proxy", "--listen", f"127.0.0.1:{lp}",
                                                      "--upstream", upstream, "--delay-ms", str(rtt / 2)]),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(proxy)
            wait_ready(proxy, "ready", "the delaying proxy")
            base = f"http://127.0.0.1:{lp}"
        for name, prompt in PROMPTS.items():
            row = {"rtt_ms": rtt, "delay": how, "network": net.note, "prompt": name,
                   "device": f"{Path(draft).name} {a.device_args}".strip(), "draft_max": a.draft_max}
            for role in ("stream", "lockstep"):
                r = run_json(net.on_dev(me + ["--role", role, "--base", base, "--prompt", prompt,
                                              "--tokens", str(a.tokens)]))
                row[role] = {"tokens": r["tokens"], "ms": r["ms"], "tps": r["tokens"] * 1e3 / r["ms"]}
                if role == "lockstep":
                    want = r["ids"]
            v = run_json(net.on_dev([kestrel, "run", "-m", draft, "-t", a.threads, "-c", "1024", "-p", prompt,
                                     "-n", str(a.tokens), "--temp", "0", "--json", "--ignore-eos",
                                     "--verify-remote", base, "--draft-max", str(a.draft_max)] + a.device_args.split()))
            vr = v["verify_remote"]
            row["verify"] = {"tokens": len(v["tokens"]), "ms": v["timings"]["total_ms"],
                             "tps": v["timings"]["tps"], "rounds": vr["rounds"],
                             "acceptance": vr["acceptance_rate"], "wait_ms": v["timings"]["wait_ms"],
                             "answered_by": vr["answered_by"],
                             "same_tokens_as_lockstep": v["tokens"] == want[: len(v["tokens"])]}
            results.append(row)
            s, l, ve = row["stream"], row["lockstep"], row["verify"]
            print(f"rtt {rtt:>4.0f} ms  {name:<8} stream {s['tps']:6.1f} tok/s   lockstep {l['tps']:6.1f} tok/s   "
                  f"verify {ve['tps']:6.1f} tok/s ({ve['rounds']} rounds, acceptance {ve['acceptance']:.2f}, "
                  f"same tokens: {ve['same_tokens_as_lockstep']})", flush=True)
        if proxy:
            proxy.kill()
            proxy.wait()
        net.clear_netem()
    print(f"network: {net.note}; delay: {results[0]['delay'] if results else '-'}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
