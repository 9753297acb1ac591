"""Call overhead: what one call of a tiny kernel costs from Python, where the work itself is
nothing (x f32[1, 8] times an 8 x 8 weight), for a dense weight and two packed ones, beside
numpy's `x @ w.T` on the same shapes. A model decoding a token makes ~200 such calls.

Each kernel's time is split into the native call alone (the entry of backends/llvm/entry.py
with its tuple of arrays and table ready, or kernel._native._fn with the pointers ready where
there is no entry), a call whose argument shapes were seen before (every call of a
model after its first: the runtime reuses what the complete check bound), and a call that
takes the complete check (kernel._native._checked_call: any first call, or one with new
shapes). Medians of `repeat` rounds of `number` calls each (timeit), after a checked call.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.arrays import data_pointers

from .kernels import check

SOURCE = """
kernel dense(x: f32[M, 8], w: f32[8, 8]) -> f32[M, 8] { return linear(x, w) }
kernel int4(x: f32[M, 8], w: f32[8, 8] @ int4(group=8)) -> f32[M, 8] { return linear(x, w) }
kernel nm24(x: f32[M, 8], w: f32[8, 8] @ nm(2, 4)) -> f32[M, 8] { return linear(x, w) }
"""
SHAPE = (1, 8, 8)  # M, N, K
RTOL = 1e-4


def call_overheads(number: int, repeat: int) -> list[dict[str, Any]]:
    """One row per kernel and one for numpy: the checked result, then (number > 0) the times in µs."""
    m, n, k = SHAPE
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((n, k)).astype(np.float32)
    program = stoicc_py.compile(SOURCE)
    rows = [_row("numpy x @ w.T", lambda: x @ w.T, None, (), number, repeat)]
    for kernel in program.kernels.values():
        options = {"prune": "magnitude"} if kernel.name == "nm24" else {}
        weight = w if kernel.name == "dense" else kernel.pack("w", w, **options)
        rows.append(_row(f"ours {kernel.name}", partial(kernel, x, weight), kernel, (x, weight), number, repeat))
    return rows


def _row(name: str, call: Callable[[], object], kernel: Any, args: tuple[object, ...],
         number: int, repeat: int) -> dict[str, Any]:  # fmt: skip
    m, n, k = SHAPE
    row: dict[str, Any] = {"name": name, "m": m, "n": n, "k": k, "status": "ok", "max_rel_error": None}
    row |= dict.fromkeys(["median_us", "native_us", "checked_us"])
    if kernel is not None:
        passed, row["max_rel_error"] = check(np.asarray(call()), np.asarray(kernel.reference(*args)), RTOL)
        row["status"] = "ok" if passed else "fail"
    if not number:
        return row
    row["median_us"] = _median_us(call, number, repeat)
    if kernel is not None:
        native = kernel._native
        scan = native._scan(args)  # the arguments' buffers, as the checked call left them
        assert scan is not None
        inputs, bound, out = scan[1], native._seen[scan[0]], np.empty((m, n), np.float32)
        if native._entry is not None and bound.table is not None:
            bare: Callable[[], object] = partial(native._entry, (*inputs, out, bound.table))
        else:
            bare = partial(native._fn, *data_pointers([*inputs, out]), *bound.values)
        row["native_us"] = _median_us(bare, number, repeat)
        row["checked_us"] = _median_us(lambda: native._checked_call(args), number, repeat)
    return row


def _median_us(call: Callable[[], object], number: int, repeat: int) -> float:
    return statistics.median(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6
