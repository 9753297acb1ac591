"""Shared helpers: compile into a private cache, compare kernels with numpy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stoicc_py
from stoicc_py.codec.nm import NMCodec

Array = np.ndarray[Any, Any]
RTOL = 1e-4


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("kernel-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STOICC_CACHE_DIR", str(path))
        mp.setenv("STOICC_VERIFY", "1")  # every compile verifies the IR its passes leave
        yield path


def rand(rng: np.random.Generator, *shape: int) -> Array:
    return rng.standard_normal(shape).astype(np.float32)


def assert_close(got: Array, want: Array, rtol: float = RTOL) -> None:
    """f32 tolerance relative to the largest reference magnitude (sums cancel)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(float(np.max(np.abs(want))), 1e-6) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def check_kernel(kernel: stoicc_py.Kernel, numpy_fn: Callable[..., Any], *args: Array) -> None:
    """The native kernel, the reference interpreter and plain numpy all agree."""
    got, ref = kernel(*args), kernel.reference(*args)
    want = numpy_fn(*(a.astype(np.float64) for a in args))
    got_t, ref_t, want_t = ((got,), (ref,), (want,)) if not isinstance(got, tuple) else (got, ref, want)
    for g, r, w in zip(got_t, ref_t, want_t, strict=True):
        assert_close(g, r)
        assert_close(g, np.asarray(w, dtype=np.float32))


def hybrid_weight(rng: np.random.Generator, rows: int, cols: int, tile: tuple[int, int]) -> Array:
    """A random weight whose [th, tw] tiles are 2:4, dense or zero, in turn (ragged edges)."""
    th, tw = tile
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    for i, (r, c) in enumerate(product(range(0, rows, th), range(0, cols, tw))):
        block = w[r : r + th, c : c + tw]
        if i % 3 == 0:  # 2:4 up to the last whole group of a ragged tile, zero past it
            whole = block.shape[1] // 4 * 4
            block[:, :whole] = NMCodec(2, 4, whole).prune(block[:, :whole])
            block[:, whole:] = 0
        elif i % 3 == 2:
            block[:] = 0
    return w


SIMT_KERNELS = [
    ("kernel f(x: f32[M, 64], w: f32[32, 64]) -> f32[M, 32] { return linear(x, w) }", "take f16 or bf16 operands"),
    ("kernel f(x: f16[M, 64], w: f16[32, 64]) -> f16[M, 32] { return gelu(linear(x, w)) }",
     "activation gelu is not fused"),
    ("kernel f(x: f16[M, 64], w: f16[32, 64] @ int4(group=32, symmetric=false)) -> f16[M, 32] { return linear(x, w) }",
     r"int4\(.*\) is not supported on the GPU target yet"),
    ("kernel f(x: f16[M, 64], w: f16[32, 64] @ int2(group=32)) -> f16[M, 32] { return linear(x, w) }",
     r"int2\(.*\) is not supported on the GPU target yet"),
    ("kernel f(x: f16[M, 64], w: f16[32, 64] @ nm(1, 4)) -> f16[M, 32] { return linear(x, w) }",
     r"nm\(1, 4\) is not supported on the GPU target yet"),
    ("kernel f(x: bf16[M, 64], w: bf16[64, 32]) -> bf16[M, 32] { return matmul(x, w) }",
     "'tdsl.matmul' is not supported on the GPU target yet"),
    ("kernel f(x: f16[M, 64], w: f16[32, 64]) -> f16[M, 32] { return linear(x, w) * x[:, 0:32] }",
     "after the product is not supported"),
    ("kernel f(x: f16[M, 63], w: f16[32, 63]) -> f16[M, 32] { return linear(x, w) }", "an even k"),
    ("kernel f(x: f16[M, 64], w: f16[N, 64]) -> f16[M, N] { return linear(x, w) }", "static shape"),
]  # fmt: skip
"""Kernels that the GPU's tensor cores do not run, and why: the generic SIMT path runs them
(tests/test_gpu_compile.py checks the reason, tests/test_gpu.py the results)."""
