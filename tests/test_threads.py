"""Row-parallel kernels on several threads: which kernels split, and that a split call
gives the same bits as a whole one."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py import kernel as kernel_module
from stoicc_py import parallel
from stoicc_py.backends.llvm import runtime
from stoicc_py.parallel import MIN_BLOCK_WORK, MIN_ROWS, row_blocks

Array = np.ndarray[Any, Any]
HYBRID = "hybrid(tile=[32, 32], formats=[dense, nm(2, 4)])"
ROW_PARALLEL = f"""
kernel dense(x: f32[M, 256], w: f32[128, 256], b: f32[128]) -> f32[M, 128] {{ return gelu(linear(x, w, b)) }}
kernel nm(x: f32[M, 256], w: f32[128, 256] @ nm(2, 4)) -> f32[M, 128] {{ return linear(x, w) }}
kernel hybrid(x: f32[M, 256], w: f32[128, 256] @ {HYBRID}) -> f32[M, 128] {{ return relu(linear(x, w)) }}
kernel csr(x: f32[M, 256], w: f32[128, 256] @ csr) -> f32[M, 128] {{ return linear(x, w) }}
kernel int4(x: f32[M, 256], w: f32[128, 256] @ int4(group=128)) -> f32[M, 128] {{ return linear(x, w) }}
kernel w8a8(x: f32[M, 256], w: f32[128, 256] @ int8(axis=0)) -> f32[M, 128] {{
  return linear(quantize(x, int8(per=token)), w)
}}
kernel i8(x: i8[M, 256], w: i8[128, 256] @ nm(2, 4)) -> i32[M, 128] {{ return linear(x, w) }}
kernel rows(x: f32[M, 64], w: f32[32, 64], b: f32[M, 32]) -> f32[M, 32] {{ return softmax(linear(x, w) + b, axis=1) }}
"""
NOT_ROW_PARALLEL = """
kernel centered(x: f32[M, 64]) -> f32[M, 64] { return x - sum(x, axis=0) }
kernel softmax0(x: f32[M, 64]) -> f32[M, 64] { return softmax(x, axis=0) }
kernel per_tensor(x: f32[M, 64], w: f32[32, 64]) -> f32[M, 32] { return linear(quantize(x, int8), w) }
kernel per_column(x: f32[M, 64], w: f32[32, 64]) -> f32[M, 32] { return linear(quantize(x, int8(axis=1)), w) }
kernel gram(x: f32[M, 64]) -> f32[M, M] { return matmul(x, transpose(x)) }
kernel pair(a: f32[M, 64]) -> (f32[M, 64], f32[64]) { return a * a, sum(a, axis=0) }
"""


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    yield
    stoicc_py.set_threads(None)


@pytest.fixture(scope="module")
def rows_prog() -> stoicc_py.Program:
    return stoicc_py.compile(ROW_PARALLEL)


def _weights(prog: stoicc_py.Program, rng: np.random.Generator) -> dict[str, tuple[Any, ...]]:
    w = rand(rng, 128, 256)
    hybrid = w.copy()
    hybrid[:32, :32] = 0  # an empty tile
    hybrid[32:64, 1::2] = 0  # 2:4 tiles
    w8 = rng.integers(-128, 128, (128, 256), dtype=np.int8)
    return {
        "dense": (w, rand(rng, 128)),
        "nm": (prog.nm.pack("w", w, prune="magnitude"),),
        "hybrid": (prog.hybrid.pack("w", hybrid),),
        "csr": (prog.csr.pack("w", np.where(rng.random(w.shape) < 0.1, w, 0).astype(np.float32)),),
        "int4": (prog.int4.pack("w", w),),
        "w8a8": (prog.w8a8.pack("w", w),),
        "i8": (prog.i8.pack("w", w8, prune="magnitude"),),
        "rows": (rand(rng, 32, 64),),
    }


def _args(name: str, rng: np.random.Generator, m: int, weights: tuple[Any, ...]) -> tuple[Any, ...]:
    if name == "i8":
        return rng.integers(-128, 128, (m, 256), dtype=np.int8), *weights
    if name == "rows":
        return rand(rng, m, 64), weights[0], rand(rng, m, 32)
    return rand(rng, m, 256), *weights


def _counting_blocks(monkeypatch: pytest.MonkeyPatch, min_work: int = 1) -> list[int]:
    """Patch the kernels' block runner to record how many blocks each split call ran; blocks
    of `min_work` pay (small test kernels split as large ones would)."""
    counts: list[int] = []
    monkeypatch.setattr(parallel, "MIN_BLOCK_WORK", min_work)

    def run(call: Callable[[int, int], None], blocks: list[tuple[int, int]]) -> None:
        counts.append(len(blocks))
        parallel.run_blocks(call, blocks)

    monkeypatch.setattr(kernel_module, "run_blocks", run)
    return counts


@pytest.mark.parametrize("m", [17, 33, 96, 257])  # 96: rows 0-31 of a whole call's 64-row block alone
def test_threads_give_the_same_bits(rows_prog: stoicc_py.Program, m: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(m)
    weights = _weights(rows_prog, rng)
    counts = _counting_blocks(monkeypatch)
    for name, kernel in rows_prog.kernels.items():
        assert kernel.abi.row_split is not None and kernel.abi.row_split.symbol == "M", name
        args = _args(name, rng, m, weights[name])
        kernel.threads = 1
        one = kernel(*args)
        kernel.threads = 2
        two = kernel(*args)
        assert one.dtype == two.dtype and np.array_equal(one.view(np.uint32), two.view(np.uint32)), name
        if m == 257:
            assert_close(two, kernel.reference(*args).astype(two.dtype), rtol=1e-3)
    # a kernel with an N:M or hybrid weight splits at multiples of 32 rows: its panel blocks;
    # one whose loops split over the native pool (abi.native_threads) is never split here
    split = [k for k in rows_prog.kernels.values()
             if not k.abi.native_threads and m >= 2 * max(MIN_ROWS, k.abi.row_split.granule)]  # fmt: skip
    assert counts == [2] * len(split)
    assert rows_prog.nm.abi.row_split.granule == rows_prog.hybrid.abi.row_split.granule == 32


def test_the_global_setting_and_the_kernels_own(rows_prog: stoicc_py.Program, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dense kernel's loops split over the native pool: a call asks it for the kernel's
    threads, else the global setting."""
    asked: list[int] = []
    monkeypatch.setattr(kernel_module, "use_threads", lambda n: asked.append(n) or runtime.use_threads(n))
    rng = np.random.default_rng(0)
    x, w, b = rand(rng, 64, 256), rand(rng, 128, 256), rand(rng, 128)
    kernel = rows_prog.dense
    assert kernel.abi.native_threads
    kernel.threads = None
    stoicc_py.set_threads(1)
    kernel(x, w, b)
    assert asked == [1]
    kernel.threads = 3  # the kernel's own setting wins
    kernel(x, w, b)
    assert asked == [1, 3]
    kernel.threads = None
    stoicc_py.set_threads(2)
    assert stoicc_py.get_threads() == 2
    kernel(x, w, b)
    assert asked == [1, 3, 2]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive int"):
            kernel.threads = bad  # type: ignore[assignment]
        with pytest.raises(ValueError, match="threads must be a positive int"):
            stoicc_py.set_threads(bad)  # type: ignore[arg-type]


def test_calls_on_many_threads_while_the_pool_grows(
    rows_prog: stoicc_py.Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python threads calling kernels while other calls grow the shared pool (more blocks
    than it has threads): no call may find the pool shut down, and every result is whole."""
    monkeypatch.setattr(parallel, "MIN_BLOCK_WORK", 1)
    stoicc_py.set_threads(16)
    rng = np.random.default_rng(5)
    kernel, (w, b) = rows_prog.dense, (rand(rng, 128, 256), rand(rng, 128))
    x = rand(rng, 16 * MIN_ROWS, 256)
    rows = [MIN_ROWS * blocks for blocks in range(2, 17)]  # 2 to 16 blocks
    want = {m: kernel(x[:m], w, b) for m in rows}

    def calls(first: int) -> list[int]:
        wrong = []
        for m in rows[first:] + rows[:first]:
            if not np.array_equal(kernel(x[:m], w, b), want[m]):
                wrong.append(m)
        return wrong

    for _ in range(4):
        parallel._forget_pool()  # a new pool, grown again by the calls below
        with ThreadPoolExecutor(12) as callers:
            assert [m for wrong in callers.map(calls, range(12)) for m in wrong] == []


def test_a_failed_call_waits_for_its_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block that raises, or a pool that refuses a block, fails the call only once the
    blocks already handed out have finished writing."""
    done: list[tuple[int, int]] = []

    def block(start: int, stop: int) -> None:
        if start == 0:
            raise ArithmeticError("block 0")
        time.sleep(0.05)
        done.append((start, stop))

    blocks = [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ArithmeticError, match="block 0"):
        parallel.run_blocks(block, blocks)
    assert sorted(done) == blocks[1:]

    class Refusing(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args: Any, **kwargs: Any) -> Future[Any]:
            if self.submitted:  # the first block only
                raise RuntimeError("cannot schedule new futures after shutdown")
            self.submitted += 1
            return super().submit(*args, **kwargs)

    done.clear()
    parallel._forget_pool()
    monkeypatch.setattr(parallel, "_pool", Refusing(4))
    monkeypatch.setattr(parallel, "_pool_size", 4)
    with pytest.raises(RuntimeError, match="after shutdown"):
        parallel.run_blocks(block, blocks)
    assert done == [(1, 2)]
    parallel._forget_pool()


def test_environment_default(monkeypatch: pytest.MonkeyPatch) -> None:
    parallel.default_threads.cache_clear()
    try:
        monkeypatch.setenv(parallel.ENV, "3")
        assert stoicc_py.get_threads() == 3
        parallel.default_threads.cache_clear()
        monkeypatch.delenv(parallel.ENV)
        assert stoicc_py.get_threads() == len(os.sched_getaffinity(0))
        parallel.default_threads.cache_clear()
        monkeypatch.setenv(parallel.ENV, "many")
        with pytest.raises(ValueError, match="STOICC_NUM_THREADS must be a positive integer, got 'many'"):
            stoicc_py.get_threads()
    finally:
        parallel.default_threads.cache_clear()


def test_kernels_that_read_other_rows_never_split(monkeypatch: pytest.MonkeyPatch) -> None:
    prog = stoicc_py.compile(NOT_ROW_PARALLEL)
    counts = _counting_blocks(monkeypatch)  # any work would pay a split
    stoicc_py.set_threads(2)
    rng = np.random.default_rng(3)
    for name, kernel in prog.kernels.items():
        assert kernel.abi.row_split is None, name
        if name == "per_column":
            continue  # its CPU code is wrong with one thread as with many (reported): the analysis only
        args = [rand(rng, 257, 64)] + ([rand(rng, 32, 64)] if "per_" in name else [])
        got, want = kernel(*args), kernel.reference(*args)
        for g, r in zip(*((got, want) if isinstance(got, tuple) else ((got,), (want,))), strict=True):
            assert_close(g, r, rtol=1e-3)
    assert counts == []


def test_row_blocks() -> None:
    big = MIN_BLOCK_WORK
    assert row_blocks(2 * MIN_ROWS - 1, 16, 8, big) == [(0, 2 * MIN_ROWS - 1)]
    assert row_blocks(1000, 16, 1, big) == [(0, 1000)]
    assert row_blocks(33, 16, 2, big) == [(0, 16), (16, 33)]
    assert row_blocks(257, 16, 2, big) == [(0, 128), (128, 257)]
    assert row_blocks(257, 16, 4, -(-2 * big // 257)) == [(0, 128), (128, 257)]  # work for two blocks only
    assert row_blocks(257, 16, 4, big // 257) == [(0, 257)]
    for rows, granule, threads in [(1000, 16, 3), (4096, 48, 7), (100, 1, 4), (40, 32, 4)]:
        blocks = row_blocks(rows, granule, threads, big)
        assert blocks[0][0] == 0 and blocks[-1][1] == rows and len(blocks) <= threads
        assert all(a < b and b == c and b % granule == 0 for (a, b), (c, _) in zip(blocks, blocks[1:]))
