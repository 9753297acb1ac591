"""Softmax and RMSNorm, compiled, against numpy (and torch, if installed), f32, one thread.

Shapes of a SmolLM2-sized decoder block (9 heads, hidden 576) at T tokens: softmax
over the attention scores [9*T, T] (rows of length T), RMSNorm over [T, 576].

    python benchmarks/norms.py [--tokens 1,128,512] [--json FILE]

Prints one line per (op, T): the median time of each and the ratio numpy / compiled
(above 1: the compiled kernel is faster). Results are checked against numpy first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib import import_module
from importlib.util import find_spec
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.cmdline import write_json

SOURCE = """
kernel softmax_rows(s: f32[R, T]) -> f32[R, T] {
  return softmax(s, axis=-1)
}
kernel rmsnorm(x: f32[T, 576], g: f32[576]) -> f32[T, 576] {
  return x * rsqrt(mean(x * x, axis=-1, keepdims=true) + 1e-5) * g
}
"""
EPS = np.float32(1e-5)


def numpy_softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_rmsnorm(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + EPS) * g


def median_time(call: Callable[..., object], *args: object, budget: float = 0.3, repeat: int = 200) -> float:
    call(*args)
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < repeat and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        call(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="1,128,512")
    parser.add_argument("--json")
    args = parser.parse_args()
    program = stoicc_py.compile(SOURCE)
    torch: Any = import_module("torch") if find_spec("torch") else None
    if torch is not None:
        torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    for t in map(int, args.tokens.split(",")):
        s = rng.standard_normal((9 * t, t)).astype(np.float32)
        x, g = rng.standard_normal((t, 576)).astype(np.float32), rng.standard_normal(576).astype(np.float32)
        cases: dict[str, tuple[Any, ...]] = {
            "softmax": ((s,), numpy_softmax, program.softmax_rows,
                        (lambda ts: torch.softmax(ts[0], dim=-1)) if torch else None),
            "rmsnorm": ((x, g), numpy_rmsnorm, program.rmsnorm,
                        (lambda ts: ts[0] * torch.rsqrt((ts[0] * ts[0]).mean(-1, keepdim=True) + 1e-5) * ts[1])
                        if torch else None),
        }  # fmt: skip
        for name, (inputs, ref, kernel, torch_fn) in cases.items():
            np.testing.assert_allclose(kernel(*inputs), ref(*inputs), rtol=1e-4, atol=1e-6)
            row: dict[str, Any] = {"op": name, "T": t, "compiled_s": median_time(kernel, *inputs),
                   "numpy_s": median_time(ref, *inputs)}  # fmt: skip
            if torch_fn is not None:
                tensors = [torch.from_numpy(a) for a in inputs]
                row["torch_s"] = median_time(torch_fn, tensors)
            rows.append(row)
            extra = f"  torch {row['torch_s'] * 1e6:9.1f} us" if "torch_s" in row else ""
            print(f"{name:8} T={t:4}  compiled {row['compiled_s'] * 1e6:9.1f} us  numpy {row['numpy_s'] * 1e6:9.1f} us"
                  f"  numpy/compiled {row['numpy_s'] / row['compiled_s']:5.2f}x{extra}")  # fmt: skip
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
