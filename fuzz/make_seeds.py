#!/usr/bin/env python3
"""Writes the starting corpus of every fuzz target into fuzz/corpus/TARGET (stdlib only).
Run once; libFuzzer grows the corpus from these, and scripts/fuzz.sh minimizes it.
The chat templates are read from the reference models (scripts/fetch-models.sh)."""
import json, os, struct, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
MODELS = Path(os.environ.get("KESTREL_MODELS", Path.home() / ".cache/kestrel/models"))


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# ---- GGUF: small valid files (every metadata type, a few tensor types) -------------------
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, ty, payload):
    return gstr(key) + struct.pack("<I", ty) + payload


def gguf(kvs, tensors, align=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    data, infos = b"", b""
    for name, dims, ty, blob in tensors:
        pad = (-len(data)) % align
        data += b"\0" * pad
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ty, len(data))
        data += blob
    out += infos
    out += b"\0" * ((-len(out)) % align)
    return out + data


metadata = [
    kv("general.architecture", 8, gstr("llama")),
    kv("general.name", 8, gstr("fuzz seed")),
    kv("llama.block_count", 4, struct.pack("<I", 2)),
    kv("llama.embedding_length", 4, struct.pack("<I", 32)),
    kv("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
    kv("a.u8", 0, b"\x07"), kv("a.i8", 1, b"\xf9"), kv("a.u16", 2, struct.pack("<H", 7)),
    kv("a.i16", 3, struct.pack("<h", -7)), kv("a.i32", 5, struct.pack("<i", -7)),
    kv("a.bool", 7, b"\x01"), kv("a.u64", 10, struct.pack("<Q", 7)),
    kv("a.i64", 11, struct.pack("<q", -7)), kv("a.f64", 12, struct.pack("<d", 0.5)),
    kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + gstr("a") + gstr("b") + gstr("<s>")),
    kv("a.nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2)),
]
f16_one = struct.pack("<e", 1.0)
tensors = [
    ("norm.weight", [32], 0, struct.pack("<32f", *([1.0] * 32))),
    ("half.weight", [32, 2], 1, f16_one * 64),
    ("q4.weight", [32, 2], 2, (f16_one + b"\x88" * 16) * 2),
    ("q8.weight", [32], 8, f16_one + bytes(range(32))),
    ("q4k.weight", [256], 12, f16_one * 2 + b"\x11" * 12 + b"\x77" * 128),
]
put("gguf", "small", gguf(metadata, tensors))
put("gguf", "metadata-only", gguf(metadata[:5], []))
put("gguf", "align-64", gguf([kv("general.alignment", 4, struct.pack("<I", 64))] + metadata[:3], tensors[:2], 64))

# ---- tokenizer: mode byte (bit 0 model, bit 1 decode, bit 2 special, bit 3 parse special) ----
texts = [
    "Hello, world!", "The capital of France is Paris.", "  leading and trailing  \n\n\t",
    "def f(x):\n    return x ** 2  # comment", "naïve café 日本語 😀 emoji", "<|im_start|>user\nhi<|im_end|>",
    "<start_of_turn>user\nhi<end_of_turn>", "1234567890 3.14159 1e-9", "",
]
for i, t in enumerate(texts):
    for mode in (0, 1, 4 | 8, 1 | 4 | 8):
        put("tokenizer", f"text-{i}-{mode}", bytes([mode]) + t.encode())
ids = [1, 2, 3, 100, 1000, 5000, 12000, 49151, 262143, 0, 50000]
for mode in (2, 3, 6, 7):
    put("tokenizer", f"ids-{mode}", bytes([mode]) + b"".join(struct.pack("<I", i) for i in ids))
put("tokenizer", "ids-utf8", bytes([2]) + b"".join(struct.pack("<I", i) for i in range(200, 400)))

# ---- chat templates: the models' own and a few hand-written ones ------------------------
conv = "\0".join(["system", "You are terse.", "user", "Hi!", "assistant", "Hello.", "user", "Bye"])
kestrel = ROOT.parent / "target/release/kestrel"
for f in ("SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"):
    p = MODELS / f
    if p.exists() and kestrel.exists():
        meta = json.loads(subprocess.check_output([str(kestrel), "inspect", "--json", str(p)]))["metadata"]
        tmpl = meta.get("tokenizer.chat_template")
        if isinstance(tmpl, str):
            put("chat_template", f.split(".")[0], tmpl + "\0" + conv)
    else:
        print(f"make_seeds: {p} or {kestrel} missing; its template is not seeded", file=sys.stderr)
for i, t in enumerate([
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{{ m.content | trim }}{% else %}{{ m.content | tojson }}{% endif %}{% endfor %}",
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ loop.index }}:{{ m.content[:5] }}{% endfor %}{{ ns.n }}",
    "{% macro say(x) %}[{{ x | upper }}]{% endmacro %}{% for m in messages %}{{ say(m.content) }}{% endfor %}",
    "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ strftime_now('%Y-%m-%d') }}",
]):
    put("chat_template", f"hand-{i}", t + "\0" + conv)

# ---- split protocol messages (crates/kestrel-collab/src/split/proto.rs) ------------------
def hdr(kind):
    return b"KSPL" + struct.pack("<HB", 2, kind)

put("split_wire", "open", hdr(1) + struct.pack("<QHBIII", 0x1234, 4, 1, 0, 2048, 512))
put("split_wire", "open-topk", hdr(1) + struct.pack("<QHBIII", 0x1234, 4, 2, 40, 2048, 512))
put("split_wire", "step", hdr(2) + struct.pack("<QIIB", 7, 0, 1, 1) + struct.pack("<8f", *range(8)))
put("split_wire", "close", hdr(3) + struct.pack("<Q", 7))
put("split_wire", "opened", hdr(0x81) + struct.pack("<QHII", 7, 30, 576, 49152))
put("split_wire", "ack", hdr(0x82))
put("split_wire", "logits", hdr(0x83) + struct.pack("<I4f", 4, 0.5, -1.0, 2.0, 0.0))
put("split_wire", "topk", hdr(0x84) + struct.pack("<IIfIf", 2, 5, 1.5, 9, 0.5))
put("split_wire", "closed", hdr(0x85))
put("split_wire", "error", hdr(0xff) + struct.pack("<HI", 4, 5) + b"gone!")
put("split_wire", "rows", bytes([2, 8, 0]) + struct.pack("<16f", *range(16)))

# ---- verify and OpenAI bodies ------------------------------------------------------------
for i, v in enumerate([
    {"prompt": [1, 2, 3], "draft": [4, 5], "temperature": 0.0, "logprobs": 2},
    {"prompt": "The capital of France is", "draft": [], "seed": 5, "top_p": 0.9},
    {"session": "vs-1-abc", "draft": [7, 8, 9]},
    {"object": "verify", "session": "vs-1", "accepted": 2, "next": 11, "n_tokens": 9,
     "logprobs": [{"id": 4, "logprob": -0.5, "top": [{"id": 4, "logprob": -0.5}]}]},
]):
    put("verify_wire", f"body-{i}", json.dumps(v))
for i, v in enumerate([
    {"model": "x", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
    {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
     "temperature": 0.7, "top_p": 0.9, "seed": 1, "stop": ["\n"], "stream": True, "stream_options": {"include_usage": True},
     "logprobs": True, "top_logprobs": 3, "logit_bias": {"42": -100}, "n": 1, "session_id": "abc"},
    {"prompt": "Once upon a time", "max_tokens": 16, "echo": True, "logprobs": 2, "presence_penalty": 0.5},
    {"prompt": [1, 2, 3], "stop": "x", "frequency_penalty": 1.0, "user": "u"},
    {"prompt": ["a", "b"], "max_tokens": -1},
]):
    put("openai_request", f"body-{i}", json.dumps(v))
print(f"seeds written under {CORPUS}")
