"""What our kernels are compared with, measured in the same run: numpy (OpenBLAS) f32,
PyTorch CPU (f32, int8 weight-only, int4 g128 weight-only) where torch is installed,
and llama.cpp's `test-backend-ops perf -o MUL_MAT` figures when a binary is given.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
INT4_GROUP = 128
TORCH = find_spec("torch") is not None


@dataclass
class Baseline:
    """A baseline for one weight: `bind(x)` returns the call to time (inputs converted
    outside it); `weight` is the matrix it computes with, for the correctness check."""

    name: str
    nbytes: int  # weight bytes read per call (values + scales)
    bind: Callable[[Array], Callable[[], Any]]
    weight: Array
    rtol: float


def baselines(w: Array) -> list[Baseline]:
    """numpy f32, then the PyTorch baselines if torch is importable."""
    numpy_f32 = Baseline("numpy f32", w.nbytes, lambda x: lambda: x @ w.T, w, 1e-4)
    return [numpy_f32, *(_torch_baselines(w) if TORCH else [])]


def _torch_baselines(w: Array) -> list[Baseline]:
    import torch

    wt = torch.from_numpy(w)
    q8, s8 = _int8_per_channel(w)
    q8t, s8t = torch.from_numpy(q8), torch.from_numpy(s8)
    rows = [
        Baseline("torch f32", w.nbytes, lambda x: _bound(torch.matmul, x, None, wt.t()), w, 1e-4),
        # bf16 x and w (oneDNN: AMX or AVX-512 BF16 where the CPU has them); x is rounded too
        Baseline(
            "torch bf16",
            w.nbytes // 2,
            lambda x: _bound(torch.nn.functional.linear, x, torch.bfloat16, wt.bfloat16()),
            wt.bfloat16().float().numpy(),
            3e-2,
        ),
        Baseline(
            "torch int8",
            q8.nbytes + s8.nbytes,
            lambda x: _bound(torch.ops.aten._weight_int8pack_mm, x, None, q8t, s8t),
            q8 * s8[:, None],
            1e-3,
        ),
    ]
    if w.shape[1] % INT4_GROUP == 0:
        rows += _torch_int4(w)
    return rows


def _torch_int4(w: Array) -> list[Baseline]:
    """int4 g128 weight-only, with f32 activations and with bf16 ones (torch's fast path)."""
    import torch

    codes, scales = _int4_groups(w)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(torch.from_numpy(codes), 1)
    deq = ((codes.reshape(len(w), -1, INT4_GROUP) - 8) * scales[..., None]).reshape(w.shape).astype(np.float32)
    # [K / group, N, 2]: (scale, zero) with w = (code - 8) * scale + zero
    scale_zero = torch.from_numpy(np.stack([scales, np.zeros_like(scales)], -1).transpose(1, 0, 2).copy())
    rows = []
    for suffix, dtype, rtol in (("", torch.float32, 1e-3), (" bf16", torch.bfloat16, 3e-2)):
        sz = scale_zero.to(dtype)
        bind = _int4_binder(packed, sz, dtype)
        rows.append(Baseline(f"torch int4 g128{suffix}", packed.nbytes + sz.nbytes, bind, deq, rtol))
    return rows


def _bound(op: Callable[..., Any], x: Array, dtype: Any, *args: Any) -> Callable[[], Any]:
    import torch

    xt = torch.from_numpy(x) if dtype is None else torch.from_numpy(x).to(dtype)
    return lambda: op(xt, *args)


def _int4_binder(packed: Any, sz: Any, dtype: Any) -> Callable[[Array], Callable[[], Any]]:
    import torch

    return lambda x: _bound(torch.ops.aten._weight_int4pack_mm_for_cpu, x, dtype, packed, INT4_GROUP, sz)


def _int8_per_channel(w: Array) -> tuple[Array, Array]:
    """Symmetric int8 codes and one f32 scale per output row."""
    scales = np.abs(w).max(axis=1) / 127
    scales[scales == 0] = 1
    codes = np.clip(np.rint(w / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales.astype(np.float32)


def _int4_groups(w: Array) -> tuple[Array, Array]:
    """int4 codes + 8 (0..15, int32, as torch's CPU packer takes them) and one f32 scale per
    group of INT4_GROUP columns, so that w ~ (code - 8) * scale."""
    groups = w.reshape(len(w), -1, INT4_GROUP)
    scales = np.abs(groups).max(axis=2) / 7
    scales[scales == 0] = 1
    codes = np.clip(np.rint(groups / scales[..., None]), -8, 7) + 8
    return codes.reshape(w.shape).astype(np.int32), scales.astype(np.float32)


def as_numpy(y: Any) -> Array:
    """A baseline's result as a float32 numpy array."""
    return y.float().numpy() if hasattr(y, "float") else np.asarray(y, dtype=np.float32)


# llama.cpp / ggml: `test-backend-ops perf -o MUL_MAT` lines such as
#   MUL_MAT(type_a=q4_0,type_b=f32,m=4096,n=1,k=14336,bs=[1,1],...):  22152 runs -  45.22 us/run - ...
# ggml's m is our N (output features), its n our M (tokens).
_GGML_LINE = re.compile(r"MUL_MAT\((?P<params>[^)]*)\):\s+(?P<runs>\d+) runs -\s+(?P<us>[\d.]+) us/run")
GGML_BYTES_PER_WEIGHT = {
    "f32": 4.0,
    "f16": 2.0,
    "q8_0": 34 / 32,
    "q4_0": 18 / 32,
    "q4_K": 144 / 256,
    "tq2_0": 66 / 256,
    "tq1_0": 54 / 256,
}
GGML_TIMEOUT_S = 1800


def parse_ggml(text: str) -> list[dict[str, Any]]:
    """The single-matrix (bs=[1,1]) MUL_MAT figures in test-backend-ops output."""
    rows = []
    for match in _GGML_LINE.finditer(text):
        params = dict(p.split("=", 1) for p in re.split(r",(?![^\[]*\])", match["params"]))
        if params.get("bs", "[1,1]") != "[1,1]":
            continue
        rows.append(
            {
                "type_a": params["type_a"],
                "type_b": params["type_b"],
                "m": int(params["n"]),
                "n": int(params["m"]),
                "k": int(params["k"]),
                "us_per_run": float(match["us"]),
            }
        )
    return rows


def run_ggml(binary: str) -> dict[str, Any]:
    """Run `binary perf -o MUL_MAT` on the CPU backend and parse it; failures are recorded, not raised."""
    command = [binary, "perf", "-o", "MUL_MAT", "-b", "CPU"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=GGML_TIMEOUT_S, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        return {"binary": binary, "rows": [], "error": f"{' '.join(command)}: {err}"}
    rows = parse_ggml(done.stdout)
    return {"binary": binary, "rows": rows, "error": None if rows else "no MUL_MAT figures in its output"}
