#!/usr/bin/env python3
"""Routing evaluation (docs/routing.md): a small local model in front of a bigger remote one.

Starts a remote `kestrel serve` (default gemma-3-270m) and, for each threshold, a local
`kestrel serve --route-remote` (default SmolLM2-135M) whose policy routes a request when the mean
top-1 probability of its first 8 tokens is below the threshold. Every prompt of prompts.json is
sent greedily through /v1/completions; for each threshold it reports the share answered
locally, the latency, how often the answer matched the remote model's own answer, and how
often it was correct (prompts.json lists accepted answers). A
threshold of 0 (never route) and the remote alone are measured as references.

Usage: bench/routing/eval.py [--kestrel BIN] [--local GGUF] [--remote GGUF] [--signal top1|entropy]
                             [--thresholds 0.4,0.55,0.7] [--threads N] [--json OUT]
Python standard library only.
"""

import argparse
import json
import os
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.expanduser(os.environ.get("KESTREL_MODELS", "~/.cache/kestrel/models"))


def serve(kestrel, model, threads, extra=()):
    """Start `kestrel serve` on a free port; return (process, base URL)."""
    p = subprocess.Popen(
        [kestrel, "serve", "-m", model, "-t", str(threads), "--port", "0", "--parallel", "1", *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    for line in p.stderr:
        if "listening on " in line:
            base = line.split("listening on ")[1].split()[0]
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, base
    raise SystemExit(f"kestrel serve with {model} did not start")


def complete(base, prompt, cfg):
    body = json.dumps({
        "prompt": prompt, "max_tokens": cfg["max_tokens"], "stop": cfg["stop"], "temperature": 0,
    }).encode()
    req = urllib.request.Request(base + "/v1/completions", body, {"content-type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        v = json.load(r)
    return v, time.perf_counter() - t0


def norm(s):
    s = s.strip().lower()
    return " ".join(w.strip(string.punctuation) for w in s.split() if w.strip(string.punctuation))


def run_all(base, cfg):
    out = []
    complete(base, "Q: Warm up.\nA:", cfg)
    for p in cfg["prompts"]:
        v, dt = complete(base, cfg["format"].format(question=p["question"]), cfg)
        out.append({"id": p["id"], "kind": p["kind"], "text": v["choices"][0]["text"],
                    "latency_s": dt, "kestrel": v.get("kestrel")})
    return out


def agree(a, b):
    na, nb = norm(a), norm(b)
    first = (na.split() or [""])[0] == (nb.split() or [""])[0]
    return na == nb, first


def correct(text, answers):
    words = " " + norm(text) + " "
    return any(" " + norm(a) + " " in words for a in answers)


def summary(rows, remote_ref, answers, remote_only=False):
    lat = [r["latency_s"] for r in rows]
    where = "remote" if remote_only else "local"
    local = [r for r in rows if (r["kestrel"] or {}).get("routed", where) == "local"]
    exact = first = 0
    for r in rows:
        e, f = agree(r["text"], remote_ref[r["id"]])
        exact += e
        first += f
    loc_exact = sum(agree(r["text"], remote_ref[r["id"]])[0] for r in local)
    by_kind = {k: sum(1 for r in local if r["kind"] == k) / max(1, sum(1 for r in rows if r["kind"] == k))
               for k in ("easy", "hard")}
    q = statistics.quantiles(lat, n=10)
    return {
        "n": len(rows), "local_share": len(local) / len(rows),
        "local_share_easy": by_kind["easy"], "local_share_hard": by_kind["hard"],
        "latency_mean_s": statistics.mean(lat), "latency_p50_s": statistics.median(lat),
        "latency_p90_s": q[-1], "match_exact": exact / len(rows), "match_first_word": first / len(rows),
        "local_answers_matching_remote": (loc_exact / len(local)) if local else None,
        "correct": sum(correct(r["text"], answers[r["id"]]) for r in rows) / len(rows),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kestrel", default=os.path.join(HERE, "../../target/release/kestrel"))
    ap.add_argument("--local", default=os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--remote", default=os.path.join(MODELS, "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--signal", choices=["top1", "entropy"], default="top1",
                    help="route on mean top-1 probability below, or mean entropy (nats) above, the threshold")
    ap.add_argument("--thresholds", help="default: 0.4,0.55,0.7 (top1) or 3.0,2.5,2.0 (entropy)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", default=os.path.join(HERE, "prompts.json"))
    ap.add_argument("--json", help="write every answer and the summaries here")
    a = ap.parse_args()
    cfg = json.load(open(a.prompts))
    default = "0.4,0.55,0.7" if a.signal == "top1" else "3.0,2.5,2.0"
    thresholds = [float(t) for t in (a.thresholds or default).split(",")]
    # The first setting never routes: the local model alone.
    never = 0.0 if a.signal == "top1" else 1e9
    procs = []
    try:
        rp, remote = serve(a.kestrel, a.remote, a.threads)
        procs.append(rp)
        ref = run_all(remote, cfg)
        remote_ref = {r["id"]: r["text"] for r in ref}
        answers = {p["id"]: p["answers"] for p in cfg["prompts"]}
        results = {"remote only": {"summary": summary(ref, remote_ref, answers, True), "rows": ref}}
        with tempfile.TemporaryDirectory() as d:
            for t in [never] + thresholds:
                pol = os.path.join(d, f"p{t}.json")
                conf = {"tokens": 8, "min_top1": None, "max_entropy": None}
                conf["min_top1" if a.signal == "top1" else "max_entropy"] = t
                json.dump({"confidence": conf}, open(pol, "w"))
                lp, local = serve(a.kestrel, a.local, a.threads, ["--route-remote", remote, "--route-policy", pol])
                procs.append(lp)
                rows = run_all(local, cfg)
                lp.terminate()
                lp.wait()
                key = "min_top1" if a.signal == "top1" else "max_entropy"
                name = "local only (never routes)" if t == never else f"{key} {t}"
                results[name] = {"summary": summary(rows, remote_ref, answers), "rows": rows}
    finally:
        for p in procs:
            p.terminate()
    hdr = "| setting | answered locally (easy / hard) | latency mean / p50 / p90 (s) | same answer as remote: exact / first word | local answers matching remote | correct |"
    print(hdr)
    print("|" + "---|" * 6)
    for name, r in results.items():
        s = r["summary"]
        lm = s["local_answers_matching_remote"]
        print(f"| {name} | {s['local_share']:.0%} ({s['local_share_easy']:.0%} / {s['local_share_hard']:.0%}) "
              f"| {s['latency_mean_s']:.2f} / {s['latency_p50_s']:.2f} / {s['latency_p90_s']:.2f} "
              f"| {s['match_exact']:.0%} / {s['match_first_word']:.0%} | {'-' if lm is None else f'{lm:.0%}'} "
              f"| {s['correct']:.0%} |")
    if a.json:
        json.dump(results, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
