#!/usr/bin/env python3
"""Quality at equal size, side by side: llama.cpp's llama-imatrix + llama-quantize Q4_K_M
against kestrel's 4-bit recipes, from the same F32 input and the same calibration text.

For each reference model:
  1. F32 base: `kestrel convert` of the shipped file (the same file for both tools);
  2. llama.cpp: `llama-imatrix` on ../shared/data/calibration.txt (16 chunks of 512 tokens),
     then `llama-quantize --imatrix ... Q4_K_M`;
  3. kestrel: `kestrel imatrix` on the same text and chunks, then each recipe (default:
     Q4_K_M + imatrix, Q4_K_M + AWQ, Q4_K_M + GPTQ);
  4. `kestrel kld` of all of them against the F32 base on the first --chunks chunks of 512
     tokens of ../shared/data/wiki.test.raw (scored as llama-perplexity scores them);
  5. `llama-perplexity` on a kestrel-written file against `kestrel perplexity` on the same
     chunks: they must agree within 1%.

llama.cpp's programs are built once from the llama-cpp-python sdist (bench/compare.py's
build_llama_tool). Prints markdown tables; --json prints one JSON object at the end.

    bench/quant_compare.py OUT_DIR [--models smollm,gemma] [--chunks 4] [--ppl-chunks 2]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import MODELS, ROOT, build_kestrel, build_llama_tool, log  # noqa: E402

SHIPPED = {
    "smollm": ("SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma": ("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf"),
}
CALIB = ROOT.parent / "shared" / "data" / "calibration.txt"
WIKI = ROOT.parent / "shared" / "data" / "wiki.test.raw"
CALIB_CHUNKS = 16

# Recipe label -> extra `kestrel quantize` arguments (all Q4_K_M; {im} is kestrel's imatrix).
RECIPES = {
    "Q4_K_M + imatrix": ["--imatrix", "{im}"],
    "Q4_K_M + AWQ": ["--method", "awq", "--imatrix", "{im}"],
    "Q4_K_M + GPTQ": ["--method", "gptq", "--calib", str(CALIB), "--chunks", str(CALIB_CHUNKS),
                      "--imatrix", "{im}"],
}


def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def slug(label):
    return label.replace(" + ", "-").replace(" ", "_")


def one_model(key, out: Path, kestrel: Path, tools, chunks, ppl_chunks, threads):
    name, shipped = SHIPPED[key]
    d = out / key
    d.mkdir(parents=True, exist_ok=True)
    f32 = d / "f32.gguf"
    if not f32.exists():
        run([kestrel, "convert", MODELS / shipped, f32, "--type", "f32"], stdout=subprocess.DEVNULL)
    # llama.cpp side.
    l_im = d / "llama-imatrix.gguf"
    if not l_im.exists():
        run([tools["llama-imatrix"], "-m", f32, "-f", CALIB, "-o", l_im, "-c", "512",
             "--chunks", CALIB_CHUNKS, "-t", threads, "--no-ppl"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    l_q = d / "llama-Q4_K_M-imatrix.gguf"
    if not l_q.exists():
        run([tools["llama-quantize"], "--imatrix", l_im, f32, l_q, "Q4_K_M", threads],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kestrel side.
    k_im = d / "kestrel-imatrix.gguf"
    if not k_im.exists():
        run([kestrel, "imatrix", "-m", f32, "-f", CALIB, "-o", k_im, "-c", "512",
             "--chunks", CALIB_CHUNKS], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = {"llama.cpp: llama-imatrix + llama-quantize Q4_K_M": l_q}
    for label, extra in RECIPES.items():
        f = d / f"kestrel-{slug(label)}.gguf"
        if not f.exists():
            args = [a.replace("{im}", str(k_im)) for a in extra]
            run([kestrel, "quantize", f32, f, "--type", "Q4_K_M", *args],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        files[f"kestrel: {label}"] = f
    cmd = [kestrel, "kld", "--base", f32, "-f", WIKI, "-c", "512", "--chunks", chunks, "--json"]
    for f in files.values():
        cmd += ["-m", f]
    rows = [json.loads(l) for l in run(cmd, capture_output=True, text=True).stdout.splitlines()
            if l.strip()]
    by_path = {r["model"]: r for r in rows}
    results = []
    for label, f in files.items():
        r = by_path[str(f)]
        results.append({"recipe": label, "file": str(f), "bytes": f.stat().st_size,
                        "ppl": r["ppl"], "kld": r["mean_kld"], "kld_se": r["kld_stderr"],
                        "top1": r["top1_agreement"]})
    # Perplexity agreement on a kestrel-written file (the GPTQ one).
    probe = files["kestrel: Q4_K_M + GPTQ"]
    lp = run([tools["llama-perplexity"], "-m", probe, "-f", WIKI, "-c", "512", "--chunks",
              ppl_chunks, "-t", threads], capture_output=True, text=True)
    llama_ppl = parse_llama_ppl(lp.stdout + lp.stderr)
    kp = json.loads(run([kestrel, "perplexity", "-m", probe, "-f", WIKI, "-c", "512",
                         "--chunks", ppl_chunks, "--json"], capture_output=True, text=True).stdout)
    agree = {"file": str(probe), "chunks": ppl_chunks, "llama_cpp": llama_ppl,
             "kestrel": kp["ppl"], "rel_diff": kp["ppl"] / llama_ppl - 1.0}
    return {"model": name, "chunks": chunks, "scored": rows[0].get("scored"),
            "base_ppl": rows[0]["base_ppl"], "results": results, "ppl_agreement": agree}


def parse_llama_ppl(text):
    # "Final estimate: PPL = 22.3292 +/- 1.23"
    for line in text.splitlines():
        if "Final estimate: PPL =" in line:
            return float(line.split("PPL =")[1].split()[0])
    sys.exit("quant_compare: llama-perplexity printed no final estimate:\n" + text[-2000:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="work folder (files are reused when present)")
    ap.add_argument("--models", default="smollm,gemma")
    ap.add_argument("--chunks", type=int, default=4, help="wiki.test.raw chunks for KLD")
    ap.add_argument("--ppl-chunks", type=int, default=2, help="chunks for the perplexity check")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    kestrel = Path(os.environ["KESTREL"]) if "KESTREL" in os.environ else build_kestrel()
    tools = {t: build_llama_tool(t) for t in ["llama-imatrix", "llama-quantize", "llama-perplexity"]}
    out = []
    ok = True
    for key in a.models.split(","):
        m = one_model(key, a.out, kestrel, tools, a.chunks, a.ppl_chunks, a.threads)
        out.append(m)
        llama = m["results"][0]
        best = min(m["results"][1:], key=lambda r: r["kld"])
        m["best_kestrel"] = best["recipe"]
        m["kestrel_wins"] = best["kld"] <= llama["kld"]
        m["ppl_within_1pct"] = abs(m["ppl_agreement"]["rel_diff"]) <= 0.01
        ok &= m["kestrel_wins"] and m["ppl_within_1pct"]
        if not a.json:
            print(f"\n### {m['model']} ({m['chunks']} chunks of 512 tokens, {m['scored']} positions)\n")
            print("| recipe (all Q4_K_M mixes) | file size | perplexity | KLD vs F32 | top-1 agreement |")
            print("|---|---:|---:|---:|---:|")
            for r in m["results"]:
                se = f" ± {r['kld_se']:.4f}" if r.get("kld_se") is not None else ""
                print(f"| {r['recipe']} | {r['bytes'] / 2**20:.1f} MiB | {r['ppl']:.3f} | "
                      f"{r['kld']:.4f}{se} | {100 * r['top1']:.1f}% |")
            g = m["ppl_agreement"]
            print(f"\nbest kestrel recipe: {best['recipe']} (KLD {best['kld']:.4f} vs llama.cpp "
                  f"{llama['kld']:.4f}: {'<=' if m['kestrel_wins'] else '>'})")
            print(f"perplexity of {Path(g['file']).name}, {g['chunks']} chunks: llama.cpp "
                  f"{g['llama_cpp']:.4f}, kestrel {g['kestrel']:.4f} ({100 * g['rel_diff']:+.2f}%)")
    if a.json:
        print(json.dumps(out))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
