#!/usr/bin/env python3
"""Random-weight GGUF models in the exact shapes of real ones, for speed benchmarks.

Random weights are honest for speed: both engines read the same file, and the time of a
forward pass depends on the shapes and tensor types, not on the values. Each shape is written
once as an F16 base (random normal weights, std 0.02; norm weights 1.0) with the real model's
hyperparameters and a byte-level BPE tokenizer of the real vocabulary size, then quantized by
llama.cpp's own llama-quantize (built from the llama-cpp-python 0.3.36 sdist, as
bench/compare.py builds llama-bench), so each file has llama.cpp's type mix for its type.

    bench/synth_model.py                              # every shape: Q4_K_M; llama-3.2-1b also Q4_0, Q8_0
    bench/synth_model.py --shapes llama-3.2-1b --types Q4_K_M,Q8_0 --out DIR [--keep-f16]

Files: DIR/NAME-shape.TYPE.gguf (default DIR: $KESTREL_MODELS/synth, i.e.
~/.cache/kestrel/models/synth); files that exist are skipped. The F16 base is deleted after
quantizing unless --keep-f16. Runs under nice 10 (llama-quantize included) and in its own venv
(~/.cache/kestrel/bench-venv, with the gguf and numpy packages), created on first use.
"""

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llamacpp import MODELS, VENV, bench_venv, build_llama_tool, log  # noqa: E402

# From the models' published Hugging Face configs (config.json).
SHAPES = {
    "qwen3-0.6b": dict(arch="qwen3", n_layer=28, n_embd=1024, n_ff=3072, n_head=16, n_head_kv=8,
                       head_dim=128, n_vocab=151936, tied=True, rope_base=1e6, eps=1e-6,
                       ctx=40960, tok="qwen2", qk_norm=True),
    "llama-3.2-1b": dict(arch="llama", n_layer=16, n_embd=2048, n_ff=8192, n_head=32, n_head_kv=8,
                         head_dim=64, n_vocab=128256, tied=True, rope_base=500000.0, eps=1e-5,
                         ctx=131072, tok="llama3", llama3_rope=32.0),
    "qwen2.5-1.5b": dict(arch="qwen2", n_layer=28, n_embd=1536, n_ff=8960, n_head=12, n_head_kv=2,
                         head_dim=128, n_vocab=151936, tied=True, rope_base=1e6, eps=1e-6,
                         ctx=32768, tok="qwen2", qkv_bias=True),
    "llama-3.2-3b": dict(arch="llama", n_layer=28, n_embd=3072, n_ff=8192, n_head=24, n_head_kv=8,
                         head_dim=128, n_vocab=128256, tied=True, rope_base=500000.0, eps=1e-5,
                         ctx=131072, tok="llama3", llama3_rope=32.0),
    "llama-3.1-8b": dict(arch="llama", n_layer=32, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8,
                         head_dim=128, n_vocab=128256, tied=False, rope_base=500000.0, eps=1e-5,
                         ctx=131072, tok="llama3", llama3_rope=8.0),
}
# What a plain run makes (and bench/compare.py --suite real-sizes uses).
DEFAULT_TYPES = {name: ["Q4_K_M"] for name in SHAPES}
DEFAULT_TYPES["llama-3.2-1b"] = ["Q4_K_M", "Q4_0", "Q8_0"]
QUANT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
               "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"]
OUT = MODELS / "synth"
POOL = 64 << 20  # f16 values in the shared random pool (128 MiB)
STD = 0.02


def file_name(shape: str, qtype: str) -> str:
    return f"{shape}-shape.{qtype}.gguf"


def n_params(s: dict) -> int:
    e, hd = s["n_embd"], s["head_dim"]
    q, kv = s["n_head"] * hd, s["n_head_kv"] * hd
    layer = e * (q + 2 * kv) + q * e + 3 * e * s["n_ff"]
    return s["n_layer"] * layer + s["n_vocab"] * e * (1 if s["tied"] else 2)


# ---- tokenizer -------------------------------------------------------------------------------

def byte_alphabet() -> list:
    """GPT-2's byte-level encoding: printable bytes stand for themselves, the others are
    shifted to code points from 256 up (the 256 base tokens of every byte-level BPE vocab)."""
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, shifted = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + shifted))
            shifted += 1
    return out


def tokenizer(s: dict):
    """(metadata dict, tokens, token types, merges): the 256 byte tokens, a few hundred merged
    pairs (with their merges), unique filler tokens up to the special tokens, and the family's
    special tokens at the real ids. Both engines load it; benchmarks use random token ids."""
    n = s["n_vocab"]
    tokens = byte_alphabet()
    letters = "Ġ" + "etaoinsrhldcumfpgwybvkxjqz"
    merges = []
    for a in letters:
        for b in letters[1:]:
            merges.append(f"{a} {b}")
            tokens.append(a + b)
    if s["tok"] == "llama3":
        first_special = 128000
        named = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>",
                 128006: "<|start_header_id|>", 128007: "<|end_header_id|>",
                 128008: "<|eom_id|>", 128009: "<|eot_id|>"}
        special = [named.get(i, f"<|reserved_special_token_{i - first_special}|>")
                   for i in range(first_special, n)]
        meta = dict(pre="llama-bpe", bos=128000, eos=128009, add_bos=True)
    else:  # qwen2 / qwen3
        first_special = 151643
        named = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        special = named + [f"[PAD{i}]" for i in range(first_special + len(named), n)]
        meta = dict(pre="qwen2", bos=151643, eos=151645, add_bos=False)
    while len(tokens) < first_special:
        tokens.append(f"synth{len(tokens)}")
    types = [1] * len(tokens) + [3] * len(special)  # NORMAL, CONTROL
    tokens += special
    assert len(tokens) == n and len(set(tokens)) == n
    return meta, tokens, types, merges


def llama3_rope_factors(s: dict) -> list:
    """Llama 3.1/3.2's rope frequency factors (rope_scaling type llama3: factor, low 1, high 4,
    original context 8192), as the GGUF converter stores them in rope_freqs.weight."""
    factor, low, high, orig = s["llama3_rope"], 1.0, 4.0, 8192
    hd = s["head_dim"]
    out = []
    for i in range(0, hd, 2):
        freq = 1.0 / s["rope_base"] ** (i / hd)
        wavelen = 2 * math.pi / freq
        if wavelen < orig / high:
            out.append(1.0)
        elif wavelen > orig / low:
            out.append(factor)
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return out


# ---- the F16 base ----------------------------------------------------------------------------

def tensor_plan(s: dict):
    """(name, numpy shape, kind) for every tensor; kind: 'w' (f16 random), 'b' (f32 random),
    'one' (f32 ones), 'rope' (f32 factors)."""
    e, f, hd = s["n_embd"], s["n_ff"], s["head_dim"]
    q, kv = s["n_head"] * hd, s["n_head_kv"] * hd
    plan = [("token_embd.weight", (s["n_vocab"], e), "w")]
    if "llama3_rope" in s:
        plan.append(("rope_freqs.weight", (hd // 2,), "rope"))
    for i in range(s["n_layer"]):
        b = f"blk.{i}."
        plan += [(b + "attn_norm.weight", (e,), "one"),
                 (b + "attn_q.weight", (q, e), "w"),
                 (b + "attn_k.weight", (kv, e), "w"),
                 (b + "attn_v.weight", (kv, e), "w")]
        if s.get("qkv_bias"):
            plan += [(b + "attn_q.bias", (q,), "b"), (b + "attn_k.bias", (kv,), "b"),
                     (b + "attn_v.bias", (kv,), "b")]
        if s.get("qk_norm"):
            plan += [(b + "attn_q_norm.weight", (hd,), "one"),
                     (b + "attn_k_norm.weight", (hd,), "one")]
        plan += [(b + "attn_output.weight", (e, q), "w"),
                 (b + "ffn_norm.weight", (e,), "one"),
                 (b + "ffn_gate.weight", (f, e), "w"),
                 (b + "ffn_up.weight", (f, e), "w"),
                 (b + "ffn_down.weight", (e, f), "w")]
    plan.append(("output_norm.weight", (e,), "one"))
    if not s["tied"]:
        plan.append(("output.weight", (s["n_vocab"], e), "w"))
    return plan


def write_f16(name: str, s: dict, path: Path):
    import gguf
    import numpy as np

    t0 = time.time()
    rng = np.random.default_rng(0x6b657374)
    pool = np.empty(POOL, dtype=np.float16)
    step = 1 << 22
    for i in range(0, POOL, step):
        pool[i:i + step] = rng.standard_normal(step, dtype=np.float32) * STD

    def sample(n):
        if n <= POOL:
            off = int(rng.integers(0, POOL - n + 1))
            return pool[off:off + n]
        parts, left = [], n
        while left > 0:
            k = min(left, POOL)
            off = int(rng.integers(0, POOL - k + 1))
            parts.append(pool[off:off + k])
            left -= k
        return np.concatenate(parts)

    arch = s["arch"]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"{name}-shape (random weights)")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["n_embd"])
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(s["n_ff"])
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"])
    w.add_key_length(s["head_dim"])
    w.add_value_length(s["head_dim"])
    w.add_rope_dimension_count(s["head_dim"])
    w.add_rope_freq_base(s["rope_base"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_vocab_size(s["n_vocab"])
    meta, tokens, types, merges = tokenizer(s)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(meta["pre"])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(meta["bos"])
    w.add_eos_token_id(meta["eos"])
    w.add_add_bos_token(meta["add_bos"])

    plan = tensor_plan(s)
    f16, f32 = np.dtype(np.float16), np.dtype(np.float32)
    for tname, shape, kind in plan:
        dt = f16 if kind == "w" else f32
        w.add_tensor_info(tname, shape, dt, math.prod(shape) * dt.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = sum(math.prod(sh) * (2 if k == "w" else 4) for _, sh, k in plan)
    done, last = 0, 0.0
    for tname, shape, kind in plan:
        n = math.prod(shape)
        if kind == "w":
            data = sample(n).reshape(shape)
        elif kind == "b":
            data = sample(n).astype(np.float32)
        elif kind == "one":
            data = np.ones(n, dtype=np.float32)
        else:
            data = np.array(llama3_rope_factors(s), dtype=np.float32)
        w.write_tensor_data(data)
        done += data.nbytes
        if time.time() - last > 10 or done == total:
            last = time.time()
            log(f"  {path.name}: {done / 2**30:.2f} / {total / 2**30:.2f} GiB "
                f"({time.time() - t0:.0f} s)")
    w.close()


# ---- driver ----------------------------------------------------------------------------------

def quantize(f16: Path, out: Path, qtype: str):
    exe = build_llama_tool("llama-quantize")
    env = dict(os.environ, LD_LIBRARY_PATH=str(exe.parent))
    part = out.with_name(out.name + ".part")
    t0 = time.time()
    log(f"  llama-quantize {f16.name} -> {out.name} ...")
    p = subprocess.run([str(exe), str(f16), str(part), qtype, str(os.cpu_count() or 2)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        part.unlink(missing_ok=True)
        sys.exit(f"synth_model: llama-quantize failed:\n{p.stdout[-4000:]}")
    part.rename(out)
    log(f"  {out.name}: {out.stat().st_size / 2**30:.2f} GiB in {time.time() - t0:.0f} s")


def make(shape: str, types: list, out_dir: Path, keep_f16: bool):
    s = SHAPES[shape]
    targets = [(t, out_dir / file_name(shape, t)) for t in types]
    todo = [(t, p) for t, p in targets if not p.exists()]
    base = out_dir / file_name(shape, "F16")
    if not todo and (base.exists() or not keep_f16):
        log(f"{shape}: all files exist, skipped")
        return
    if not base.exists():
        need = n_params(s) * 2 + sum(n_params(s) for _ in todo)  # F16 + at most 8 bits each
        free = shutil.disk_usage(out_dir).free
        if free < need * 1.05:
            sys.exit(f"synth_model: {shape} needs about {need / 2**30:.1f} GiB in {out_dir}, "
                     f"{free / 2**30:.1f} GiB free")
        log(f"{shape}: writing the F16 base ({n_params(s) / 1e9:.2f} B parameters) ...")
        part = base.with_name(base.name + ".part")
        write_f16(shape, s, part)
        part.rename(base)
    for t, p in todo:
        if t == "F16":
            continue
        quantize(base, p, t)
    if not keep_f16 and "F16" not in types:
        base.unlink()
        log(f"{shape}: removed {base.name}")


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="shapes: " + ", ".join(SHAPES) + "; types: F16 (the base itself), " + ", ".join(QUANT_TYPES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated [all, smallest first]")
    ap.add_argument("--types", help="comma-separated quantization types for every shape "
                                    "[Q4_K_M; llama-3.2-1b also Q4_0 and Q8_0]")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output directory [{OUT}]")
    ap.add_argument("--keep-f16", action="store_true", help="keep the F16 base (NAME-shape.F16.gguf)")
    a = ap.parse_args()
    shapes = [x for x in a.shapes.split(",") if x]
    for x in shapes:
        if x not in SHAPES:
            ap.error(f"unknown shape {x!r} (known: {', '.join(SHAPES)})")
    types = [x for x in a.types.split(",") if x] if a.types else None
    for t in types or []:
        if t != "F16" and t not in QUANT_TYPES:
            ap.error(f"unknown type {t!r} (known: F16, {', '.join(QUANT_TYPES)})")
    if not in_venv():
        py = bench_venv() / "python"
        os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])
    os.nice(10)  # others compile on the same cores; llama-quantize inherits it
    a.out.mkdir(parents=True, exist_ok=True)
    if any(t != "F16" and not (a.out / file_name(s, t)).exists()
           for s in shapes for t in (types or DEFAULT_TYPES[s])):
        build_llama_tool("llama-quantize")  # before the first base is written
    for s in shapes:
        make(s, types or DEFAULT_TYPES[s], a.out, a.keep_f16)
    for s in shapes:
        for t in types or DEFAULT_TYPES[s]:
            p = a.out / file_name(s, t)
            if p.exists():
                log(f"{p}  {p.stat().st_size / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
