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
