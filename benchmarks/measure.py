"""Timing, cache flushing, peak memory and thread counts.

Timing: after an untimed first call (the correctness check, which is the warm-up),
calls are timed one by one with perf_counter (the garbage collector off) until
`repeat` calls or `budget` seconds, at least one; the median and the minimum are
reported. Cold: every timed call is preceded by reading a buffer larger
than the last-level cache, which evicts the weights (and activations) from it.

Peak memory: on Linux, writing "5" to /proc/self/clear_refs resets the process's
peak RSS (VmHWM) to its current RSS, so the peak read from /proc/self/status after a
benchmark is that benchmark's own; elsewhere ru_maxrss is reported (a process-wide
maximum that only grows).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py import pipeline

L3_FALLBACK = 128 << 20
FLUSH_MIN = 128 << 20


@dataclass
class Stats:
    median_s: float
    min_s: float
    runs: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def add_script_options(parser: argparse.ArgumentParser, formats: Iterable[str], repeat: int) -> None:
    """The options that the benchmark scripts share: formats, repeats, budget, smoke, JSON."""
    keys = list(formats)
    parser.add_argument("--formats", default=",".join(keys), help=f"comma-separated, of {', '.join(keys)}")
    parser.add_argument("--repeat", type=int, default=repeat, help="timed calls per measurement at most")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per measurement at most")
    parser.add_argument("--smoke", action="store_true", help="one tiny shape, correctness only")
    parser.add_argument("--json", help="write every figure to this file")


def chosen_formats(parser: argparse.ArgumentParser, text: str, formats: Iterable[str]) -> list[str]:
    """--formats' keys, each one of `formats` (else the parser's error)."""
    known = list(formats)
    chosen = text.split(",")
    if unknown := [f for f in chosen if f not in known]:
        parser.error(f"unknown formats {unknown}; known: {', '.join(known)}")
    return chosen


def time_calls(call: Callable[[], object], repeat: int, budget: float, flush: Callable[[], object] | None) -> Stats:
    """Time `call` (warmed up by the caller) at most `repeat` times, stopping
    once `budget` seconds are spent; at least once. `flush` runs untimed before each call."""
    times: list[float] = []
    start = time.perf_counter()
    enabled = gc.isenabled()
    gc.disable()
    try:
        while not times or (len(times) < repeat and time.perf_counter() - start < budget):
            if flush is not None:
                flush()
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return Stats(statistics.median(times), min(times), len(times))


def l3_bytes() -> int:
    """The last-level cache size from sysfs (Linux), else L3_FALLBACK."""
    caches = sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"))
    sizes = [_size(p.read_text().strip()) for p in caches]
    return max(sizes, default=0) or L3_FALLBACK


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text and text[-1] in units else int(text or 0)


class Flusher:
    """Evicts the caches by reading a buffer of 4x the last-level cache (at least FLUSH_MIN)."""

    def __init__(self) -> None:
        self.nbytes = max(4 * l3_bytes(), FLUSH_MIN)
        self._buffer = np.ones(self.nbytes // 8)

    def __call__(self) -> float:
        return float(self._buffer.sum())


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in {_STATUS}")


@dataclass
class Memory:
    peak_mb: float
    delta_mb: float  # peak minus the RSS at the start
    method: str


@contextmanager
def peak_rss() -> Iterator[list[Memory]]:
    """Measures the peak RSS of the body; the result is appended to the yielded list."""
    out: list[Memory] = []
    try:
        _CLEAR_REFS.write_text("5")
        start, method = _status_kb("VmRSS"), "VmHWM"
    except OSError:
        start, method = _maxrss_kb(), "ru_maxrss"
    yield out
    peak = _status_kb("VmHWM") if method == "VmHWM" else _maxrss_kb()
    out.append(Memory(peak / 1024, (peak - start) / 1024, method))


def _maxrss_kb() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB elsewhere


@contextmanager
def integer_options(extra: str) -> Iterator[None]:
    """Compile with `extra` appended to tdsl-vectorize-integer's options (an A/B against
    another build of the integer kernels, e.g. 'panel=false'; compile those with cache=False:
    the disk cache's key does not see patched options)."""
    saved = pipeline.integer_options
    pipeline.integer_options = lambda features: saved(features).removesuffix("}") + f" {extra}}}"
    try:
        yield
    finally:
        pipeline.integer_options = saved


@contextmanager
def library_threads(count: int) -> Iterator[int | None]:
    """numpy's BLAS (through threadpoolctl) and torch limited to `count` threads for the body.
    Yields the BLAS thread count in force: without threadpoolctl it cannot be changed in a
    running process, so it is read from OPENBLAS_NUM_THREADS (None if unset)."""
    torch = import_module("torch") if find_spec("torch") else None
    before = torch.get_num_threads() if torch else 0
    if torch:
        torch.set_num_threads(count)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            env = os.environ.get("OPENBLAS_NUM_THREADS", "")
            yield int(env) if env.isdigit() else None
        else:
            with threadpool_limits(limits=count, user_api="blas"):
                yield count
    finally:
        if torch:
            torch.set_num_threads(before)


def kernel_threads(kernel: Any, count: int) -> int:
    """Ask our kernel for `count` threads where the runtime has the option (a `threads`
    attribute of the kernel, or stoicc_py.set_threads); returns the count it runs with."""
    if hasattr(kernel, "threads"):
        kernel.threads = count
        return count
    if hasattr(stoicc_py, "set_threads"):
        stoicc_py.set_threads(count)
        return count
    return 1
