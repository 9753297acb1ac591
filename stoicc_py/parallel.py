"""Threads for row-parallel kernels: the setting, the blocks, one pool per process.

A ctypes call releases the GIL, so native kernels run in parallel on Python
threads. Starting a thread costs more than a small kernel call, so the threads are
kept in one pool, created on first use and grown to the largest count asked for.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import cache

MIN_ROWS = 16
"""The fewest rows in a block of their own."""
MIN_BLOCK_WORK = 1 << 23
"""The least work (multiply-adds, abi.RowSplit.work) worth a block of its own: ~200-300 us
on one core, several times the 20-100 us it takes to hand a block to a pool thread."""
MIN_COLUMN_WORK = 1 << 23
"""MIN_BLOCK_WORK for a block of columns (abi.ColumnSplit.work): the same hand-off to a
pool thread, measured against the GEMV it splits (benchmarks/README.md, gemv_threads)."""
ENV = "STOICC_NUM_THREADS"

_setting: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def checked_threads(n: object, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
    return n


@cache
def default_threads() -> int:
    """$STOICC_NUM_THREADS, else the cores this process may run on (read once)."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return len(os.sched_getaffinity(0))
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{ENV} must be a positive integer, got {text!r}")
    return int(text)


def set_threads(n: int | None) -> None:
    """Threads per call for every kernel without its own `threads`; None restores the default."""
    global _setting
    _setting = None if n is None else checked_threads(n, "threads")


def get_threads() -> int:
    """The threads a kernel call uses unless the kernel sets its own."""
    return _setting if _setting is not None else default_threads()


def row_blocks(rows: int, granule: int, threads: int, row_work: int, min_work: int | None = None) -> list[tuple[int, int]]:
    """[start, stop) blocks covering `rows` (or columns): at most `threads`, each starting on a multiple of
    `granule` with MIN_ROWS rows and `min_work` (MIN_BLOCK_WORK) work or more; one block when a split does not pay."""
    unit = max(granule, 1)
    smallest = -(-MIN_ROWS // unit) * unit
    count = min(threads, rows // smallest, rows * row_work // (MIN_BLOCK_WORK if min_work is None else min_work))
    units = -(-rows // unit)
    if count < 2:
        return [(0, rows)]
    bounds = [min(rows, i * units // count * unit) for i in range(count + 1)]
    return list(zip(bounds, bounds[1:]))


def run_blocks(call: Callable[[int, int], None], blocks: list[tuple[int, int]]) -> None:
    """call(start, stop) for every block: the first on this thread, the others on the pool.

    Returns or raises only once every block handed to the pool has finished, even when a
    block or a submission fails: the blocks write into buffers that the caller owns."""
    futures: list[Future[None]] = []
    try:
        _submit(call, blocks[1:], futures)
        call(*blocks[0])
    finally:
        wait(futures)
    for f in futures:
        f.result()


def _submit(call: Callable[[int, int], None], blocks: list[tuple[int, int]], futures: list[Future[None]]) -> None:
    """Hand `blocks` to the pool, appending each future as it is made. The pool is grown
    (replaced) and used under one lock: a call on another thread that grows it cannot
    shut it down between this call's submissions."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < len(blocks):
            if _pool is not None:
                _pool.shutdown(wait=False)  # its idle threads exit; the blocks it holds still run
            _pool, _pool_size = ThreadPoolExecutor(len(blocks), thread_name_prefix="stoicc"), len(blocks)
        for block in blocks:
            futures.append(_pool.submit(call, *block))


def _forget_pool() -> None:
    # A forked child has none of its parent's threads: it starts a pool of its own.
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
