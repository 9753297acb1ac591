"""GEMV calls (one row) split over threads by the weight's rows (abi.ColumnSplit): which
kernels split, that a split call gives the bits of a whole one and numpy's values, for
dense and packed weights with a ragged N, and that what cannot split stays whole."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py import kernel as kernel_module

N, K = 250, 64  # N: not a multiple of the 48-column granule, nor of 2 or 3 blocks
LAYOUTS = {
    "dense": "",
    "int4": " @ int4(group=32, symmetric=false)",
    "int4_float": " @ int4(group=32, zero=float, scale=f16)",
    "nm24": " @ nm(2, 4)",
    "nm_int4": " @ nm(2, 4) with int4(group=16)",
    "block": " @ block([2, 8])",
    "csr": " @ csr",
    "hybrid": " @ hybrid(tile=[16, 32], formats=[dense, nm(2, 4)])",
    "sq": " @ sq(int4(group=32), int8, group=32, count=2)",  # cannot cut its rows
}
SOURCE = "\n".join(
    f"kernel {name}(x: f32[M, {K}], w: f32[N, {K}]{layout}, b: f32[N]) -> f32[M, N] {{ return relu(linear(x, w) + b) }}"
    for name, layout in LAYOUTS.items()
)
PRUNED = {"nm24", "nm_int4", "block", "csr"}


@pytest.fixture(scope="module")
def prog() -> stoicc_py.Program:
    return stoicc_py.compile(SOURCE)


@pytest.fixture
def blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[tuple[int, int]]]]:
    """The column blocks of each split call, with the work threshold at one multiply-add."""
    seen: list[list[tuple[int, int]]] = []
    run = kernel_module.run_blocks
    monkeypatch.setattr(kernel_module, "MIN_COLUMN_WORK", 1)
    monkeypatch.setattr(kernel_module, "run_blocks", lambda call, b: (seen.append(b), run(call, b)))
    yield seen


def _weight(kernel: Any, name: str, rng: np.random.Generator) -> tuple[Any, np.ndarray[Any, Any]]:
    """The weight as the kernel takes it, and the float32 matrix it holds."""
    w = rand(rng, N, K)
    if name == "dense":
        return w, w
    packed = kernel.pack("w", w, prune="magnitude" if name in PRUNED else None)
    return packed, packed.dequantize()


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_split_gemv_equals_whole_call_and_numpy(prog: stoicc_py.Program, name: str, blocks: list[Any]) -> None:
    kernel, rng = prog.kernel(name), np.random.default_rng(0)
    assert kernel.abi.column_split is not None and kernel.abi.column_split.symbol == "N"
    w, dense = _weight(kernel, name, rng)
    x, b = rand(rng, 1, K), rand(rng, N)
    kernel.threads = 1
    whole = kernel(x, w, b)
    assert not blocks
    for threads in (2, 3):
        kernel.threads = threads
        for _ in range(2):  # the checked call, then the quick path of a seen shape
            np.testing.assert_array_equal(kernel(x, w, b), whole)
    assert_close(whole, np.maximum(x @ dense.T + b, 0))
    if name == "sq" or kernel.abi.native_threads or kernel.abi.one_row_pool:
        assert not blocks  # sq's codec cannot cut its rows; a native split (one row on the pool) runs in compiled code
    else:
        assert blocks[-1] == [(0, 96), (96, 192), (192, 250)] and blocks[0] == [(0, 144), (144, 250)]


def test_tile_rows_set_the_granule(blocks: list[Any]) -> None:
    """hybrid cuts at tile rows (32): blocks start on multiples of lcm(the ABI's granule, 32);
    the last tile row is ragged."""
    rng = np.random.default_rng(1)
    kernel = stoicc_py.compile(
        f"kernel f(x: f32[1, {K}], w: f32[N, {K}] @ hybrid(tile=[32, 32], formats=[dense, nm(2, 4)])) -> f32[1, N] "
        "{ return linear(x, w) }"
    ).f
    assert kernel.abi.column_split is not None
    unit = math.lcm(kernel.abi.column_split.granule, 32)
    w = kernel.pack("w", rand(rng, 2 * unit + 16, K))
    x = rand(rng, 1, K)
    kernel.threads = 2
    assert_close(kernel(x, w), x @ w.dequantize().T)
    assert blocks == ([] if kernel.abi.native_threads or kernel.abi.one_row_pool else [[(0, unit), (unit, 2 * unit + 16)]])


def test_calls_of_several_rows_and_small_calls_stay_whole(prog: stoicc_py.Program, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, rng = prog.dense, np.random.default_rng(2)
    seen: list[Any] = []
    monkeypatch.setattr(kernel_module, "run_blocks", lambda call, b: seen.append(b))
    w, b = rand(rng, 200, K), rand(rng, 200)  # a shape no other test's call (threshold 1) remembers
    kernel.threads = 2
    x = rand(rng, 3, K)  # 3 rows: too few for rows, and the ABI has no row stride for columns
    assert_close(kernel(x, w, b), np.maximum(x @ w.T + b, 0))
    kernel(rand(rng, 1, K), w, b)  # one row, below MIN_COLUMN_WORK: the one-block quick path
    assert not seen
    (bound,) = [v for s, v in kernel._native._seen.items() if s[0] == (1, K) and s[1] == w.shape]
    assert bound.one_block and not bound.columns


NOT_SPLIT = """
kernel kn(x: f32[M, 64], w: f32[64, N]) -> f32[M, N] { return matmul(x, w) }
kernel softmax(x: f32[M, 64], w: f32[N, 64]) -> f32[M, N] { return softmax(linear(x, w), axis=1) }
kernel static(x: f32[M, 64], w: f32[48, 64]) -> f32[M, 48] { return linear(x, w) }
kernel on_x(x: f32[M, N], w: f32[N, N]) -> f32[M, N] { return linear(x, w) }
kernel row_of_n(x: f32[1, 64], w: f32[N, 64], c: f32[1, N]) -> f32[1, N] { return linear(x, w) + c }
kernel weight_out(x: f32[1, 64], w: f32[N, 64]) -> (f32[1, N], f32[N, 64]) { return linear(x, w), w * 2.0 }
"""


def test_kernels_without_independent_columns_do_not_split() -> None:
    """Columns of a [K, N] operand, a softmax over N, a static N, N on x, a [1, N] operand
    (its rows would need a stride), a weight returned: no column split."""
    kernels = stoicc_py.compile(NOT_SPLIT).kernels
    assert {name: k.abi.column_split for name, k in kernels.items()} == dict.fromkeys(kernels)


@pytest.mark.parametrize("fmt", ["int4", "w4a8"])
def test_gemv_threads_benchmark_smoke(fmt: str) -> None:
    from stoicc_py.benchmarks.gemv_threads import FORMATS, SMOKE_SHAPES, measure

    rows = measure(FORMATS[fmt], *SMOKE_SHAPES[0], rounds=1, repeat=1, budget=0.0, timed=False)
    assert [r["threads"] for r in rows] == [1, 2]
    assert all(v for r in rows for name, v in r.items() if name.endswith("_ok"))
