"""The native thread pool (backends/llvm/runtime.py) and the loops that parallelize-loops
splits over it: GEMVs of dense (linear and matmul), W4A8 and every weight-only format on two
threads against one thread (bit for bit) and the reference; the pool after shutdown and in a forked child."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import stoicc_py
from stoicc_py.backends.llvm import runtime

K = 128
LAYOUTS = {
    "dense": "",
    "int8": " @ int8(axis=0)",
    "q4": " @ int4(group=32)",
    "q4g128": " @ int4(group=128)",
    "q4_1": " @ int4(group=32, zero=float, scale=f16)",
    "nm": " @ nm(2, 4)",
    "nm_q4": " @ nm(2, 4) with int4(group=16)",
    "ternary": " @ ternary(axis=0)",
    "hybrid": " @ hybrid(tile=[32, 32], formats=[dense, nm(2, 4)])",
}
SOURCE = (
    "\n".join(
        f"kernel {name}(x: f32[M, {K}], w: f32[N, {K}]{layout}) -> f32[M, N] {{ return linear(x, w) }}"
        for name, layout in LAYOUTS.items()
    )
    + f"""
kernel w4a8(x: f32[M, {K}], w: f32[N, {K}] @ int4(group=32)) -> f32[M, N] {{
  return linear(quantize(x, int8(per=token)), w)
}}
kernel matmul(x: f32[M, {K}], w: f32[{K}, N]) -> f32[M, N] {{ return matmul(x, w) }}
"""
)


@pytest.fixture(scope="module")
def prog() -> Any:
    return stoicc_py.compile(SOURCE)


def _weight(kernel: Any, n: int, rng: np.random.Generator) -> Any:
    w = rng.standard_normal((n, K)).astype(np.float32)
    sparse = kernel.name in ("nm", "nm_q4", "hybrid")
    return w if kernel.name == "dense" else kernel.pack("w", w, **({"prune": "magnitude"} if sparse else {}))


def _calls(kernel: Any, args: tuple[Any, ...]) -> tuple[Any, Any]:
    kernel.threads = 1
    try:
        one = kernel(*args)
        kernel.threads = 2
        return one, kernel(*args)
    finally:
        kernel.threads = None


@pytest.mark.parametrize("name", [*LAYOUTS, "w4a8"])
@pytest.mark.parametrize(("m", "n"), [(1, 1536), (1, 96), (33, 480)])
def test_two_threads_agree_bit_for_bit(prog: Any, name: str, m: int, n: int) -> None:
    kernel = getattr(prog, name)
    rng = np.random.default_rng(m * n)
    args = (rng.standard_normal((m, K)).astype(np.float32), _weight(kernel, n, rng))
    one, two = _calls(kernel, args)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(two, kernel.reference(*args), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("m", "n"), [(1, 1536), (1, 100), (3, 1536), (40, 200)])
def test_matmul_gemv_splits_its_stream_tiles(prog: Any, m: int, n: int) -> None:
    """matmul with w [K, N]: the rows left after its register blocks (a GEMV's one) stream
    per n-tile of n / 2 columns, which the pool splits at one row (one_row_pool); calls of 32
    rows or more keep the Python row split (not native_threads). Bit for bit as one thread."""
    kernel = prog.matmul
    assert kernel.abi.one_row_pool and not kernel.abi.native_threads
    rng = np.random.default_rng(m + n)
    x, w = rng.standard_normal((m, K)).astype(np.float32), rng.standard_normal((K, n)).astype(np.float32)
    one, two = _calls(kernel, (x, w))
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(two, x.astype(np.float64) @ w, rtol=1e-4, atol=1e-4)


def test_which_gemvs_split_natively(prog: Any) -> None:
    """Every format's GEMV splits its column tiles in compiled code (mark-parallel-loops
    proves the quantized kernels' two-column blocks stay in their tile). 2:4's row-panel
    nests, which fill a scratch buffer that every iteration shares, stay serial: its calls of
    one row (the column-tile nest) run on the pool, larger ones keep the Python row split.
    hybrid's one-row nest loops over tile rows and writes out[tr * 32 + r], r < 32: proved
    as tiles of 32 columns."""
    for name in [*LAYOUTS, "w4a8"]:
        kernel = getattr(prog, name)
        assert kernel.abi.native_threads or kernel.abi.one_row_pool, name
    assert prog.nm.abi.one_row_pool and not prog.nm.abi.native_threads
    assert prog.hybrid.abi.one_row_pool


def test_pool_restarts_after_shutdown(prog: Any) -> None:
    rng = np.random.default_rng(1)
    args = (rng.standard_normal((1, K)).astype(np.float32), rng.standard_normal((1536, K)).astype(np.float32))
    one, _ = _calls(prog.dense, args)
    runtime.shutdown()
    assert runtime.load().workers == 0
    _, two = _calls(prog.dense, args)
    assert runtime.load().workers == 1
    np.testing.assert_array_equal(one, two)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_forked_child_starts_its_own_pool(prog: Any) -> None:
    rng = np.random.default_rng(2)
    args = (rng.standard_normal((1, K)).astype(np.float32), rng.standard_normal((1536, K)).astype(np.float32))
    one, two = _calls(prog.dense, args)  # the parent's workers run
    pid = os.fork()
    if pid == 0:  # the child: its pool has no workers until a call starts them
        ok = runtime.load().workers == 0 and np.array_equal(_calls(prog.dense, args)[1], two)
        os._exit(0 if ok and runtime.load().workers == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    np.testing.assert_array_equal(one, two)


def test_objects_to_link_do_not_call_the_pool(prog: Any, tmp_path: Any) -> None:
    """The JIT's dense kernel runs on the pool; `stoicc compile --emit obj` of the same
    source needs no symbol but libc's and libm's (the pool is not shipped for linking)."""
    from stoicc_py.cli import main

    assert prog.dense.abi.native_threads
    source, obj = tmp_path / "k.tdsl", tmp_path / "k.o"
    source.write_text(SOURCE)
    assert main(["compile", str(source), "--emit", "obj", "-o", str(obj)]) == 0
    assert b"stoicc_parallel_for" not in obj.read_bytes()
