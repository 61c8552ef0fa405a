"""What the bench scripts share: the cache locations, llama.cpp's programs built once from the
llama-cpp-python sdist on PyPI (the release that made ../shared/golden), and a private venv
for the few PyPI packages the scripts need (gguf, numpy, cmake).

    from llamacpp import build_llama_tool, bench_venv
    exe = build_llama_tool("llama-quantize")   # ~/.cache/kestrel/llama.cpp-0.3.36/build/bin/...
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

LLAMA_CPP_PYTHON = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KESTREL_CACHE", Path.home() / ".cache" / "kestrel"))
MODELS = Path(os.environ.get("KESTREL_MODELS", CACHE / "models"))
VENV = CACHE / "bench-venv"
# What the venv holds; gguf is pinned to the version the synthetic models were made with.
VENV_PACKAGES = ["gguf==0.19.0", "numpy", "cmake"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def bench_venv() -> Path:
    """The bench venv (created with VENV_PACKAGES on first use); returns its bin directory."""
    bindir = VENV / "bin"
    stamp = VENV / ".kestrel-packages"
    want = "\n".join(VENV_PACKAGES)
    if stamp.exists() and stamp.read_text() == want and (bindir / "python").exists():
        return bindir
    log(f"creating {VENV} ({', '.join(VENV_PACKAGES)}) ...")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *VENV_PACKAGES], check=True)
    stamp.write_text(want)
    return bindir


def fetch_sdist(dest: Path) -> Path:
    """Download the llama-cpp-python sdist through PyPI's simple index and check its hash."""
    tgz = dest / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if tgz.exists() and hashlib.sha256(tgz.read_bytes()).hexdigest() == SDIST_SHA256:
        return tgz
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    page = urllib.request.urlopen(f"{index}/llama-cpp-python/", timeout=60).read().decode()
    name = f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    links = [l for l in re.findall(r'href="([^"]+)"', page) if name in l]
    if not links:
        sys.exit(f"{name} not found in {index}/llama-cpp-python/")
    url = links[0].split("#")[0]
    if url.startswith("/"):
        url = re.match(r"https?://[^/]+", index).group(0) + url
    log(f"downloading {name} ...")
    data = urllib.request.urlopen(url, timeout=600).read()
    if hashlib.sha256(data).hexdigest() != SDIST_SHA256:
        sys.exit(f"{name}: sha256 mismatch")
    dest.mkdir(parents=True, exist_ok=True)
    tgz.write_bytes(data)
    return tgz


def llama_src() -> Path:
    """The sdist's vendored llama.cpp source tree, extracted once into the cache."""
    base = CACHE / f"llama.cpp-{LLAMA_CPP_PYTHON}"
    src = base / "src"
    if not (src / "CMakeLists.txt").exists():
        tgz = fetch_sdist(CACHE / "downloads")
        log(f"extracting {tgz.name} ...")
        with tarfile.open(tgz) as t:
            members = [m for m in t.getmembers() if "/vendor/llama.cpp/" in m.name]
            t.extractall(base / "x", members=members, filter="data")
        vendored = next((base / "x").glob("*/vendor/llama.cpp"))
        if src.exists():
            shutil.rmtree(src)
        vendored.rename(src)
        shutil.rmtree(base / "x")
    return src


# Release, CPU only, tuned for this machine (GGML_NATIVE): llama.cpp at its best here. AMX off:
# 0.3.36's AMX matmul dies of SIGILL (`tilezero` before a tile config, seen on a Xeon whose
# kernel grants AMX), and kestrel has no AMX path, so both sides run AVX-512 VNNI at most.
# Under GGML_NATIVE only the compiler flags turn it off (gcc keeps an explicit -mno-* against
# -march=native); ggml's GGML_AMX_* options apply to non-native builds.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", f"-DCMAKE_C_FLAGS={NO_AMX}",
               f"-DCMAKE_CXX_FLAGS={NO_AMX}", "-DLLAMA_CURL=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON"]


def build_llama_tool(target: str) -> Path:
    """A llama.cpp program (llama-bench, llama-server, llama-quantize, ...) from the sdist,
    built once into the cache (again when CMAKE_FLAGS change)."""
    base = CACHE / f"llama.cpp-{LLAMA_CPP_PYTHON}"
    build = base / "build"
    exe = build / "bin" / target
    stamp = build / ".kestrel-cmake-flags"
    flags = "\n".join(CMAKE_FLAGS)
    configured = stamp.exists() and stamp.read_text() == flags
    if exe.exists() and configured:
        return exe
    src = llama_src()
    cmake = shutil.which("cmake") or str(bench_venv() / "cmake")
    log(f"building {target} (several minutes, once) ...")
    if not configured:
        subprocess.run([cmake, "-S", str(src), "-B", str(build), *CMAKE_FLAGS],
                       check=True, stdout=subprocess.DEVNULL)
        # Programs built under other flags are stale; each is rebuilt when next asked for.
        for old in (build / "bin").glob("llama-*"):
            old.unlink()
        stamp.write_text(flags)
    subprocess.run([cmake, "--build", str(build), "--target", target, "-j",
                    str(os.cpu_count() or 2)], check=True, stdout=subprocess.DEVNULL)
    return exe
