"""LLVM optimises in a worker process (backends/llvm/worker.py), so that a process that
compiles again and again stays flat: llvmlite's pass builder leaks on every O3 run.
The worker's errors, crashes, death, wear and absence."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import assert_close

import stoicc_py
from stoicc_py.backends.llvm import codegen, worker
from stoicc_py.backends.llvm.target import host_options
from stoicc_py.backends.llvm.worker import WorkerPool

KERNEL = "kernel k(x: f32[M, 64]) -> f32[M, 64] {{ return gelu(x * {c}) }}"
WARM_UP = 10  # imports, caches, the worker, and the allocators' high-water marks
COMPILES = 40
GROWTH_BOUND = COMPILES * (15 << 20) // 200
"""Three quarters of the most allowed, 20 MB per 200 compiles. With LLVM in process,
a compile of KERNEL grows the process by about 130 KB (a program of three products,
0.65 MB); without, some allocator's high-water mark may still rise by 1-2 MB."""
# An intrinsic of another target: instruction selection aborts the process.
CRASHING_IR = """
declare <4 x float> @{name}(<4 x float>)
define <4 x float> @f(<4 x float> %x) {{
  %y = call <4 x float> @{name}(<4 x float> %x)
  ret <4 x float> %y
}}
""".format(name="llvm.aarch64.neon.frecpe.v4f32" if host_options().triple.startswith("x86") else "llvm.x86.sse.rcp.ps")


def _rss() -> int:
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)  # freed native memory back to the system: only a leak stays
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _compile(c: float) -> stoicc_py.Program:
    return stoicc_py.compile(KERNEL.format(c=c), cache=False)


def _check(program: stoicc_py.Program) -> None:
    x = np.linspace(-3, 3, 3 * 64, dtype=np.float32).reshape(3, 64)
    assert_close(program.k(x), program.k.reference(x))


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerPool]:
    """A pool of this test's own."""
    fresh = WorkerPool()
    monkeypatch.setattr(codegen, "POOL", fresh)
    monkeypatch.setattr(worker, "POOL", fresh)
    yield fresh
    fresh.shutdown()


def _pid(pool: WorkerPool) -> int:
    assert pool._worker is not None
    return pool._worker.proc.pid


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_distinct_compiles_stay_flat() -> None:
    for i in range(WARM_UP):
        _compile(1e6 + i)
    before = _rss()
    for i in range(COMPILES):
        _compile(i + 0.5)  # distinct constants: no cache hits
    growth = _rss() - before
    assert growth < GROWTH_BOUND, f"{COMPILES} compiles grew the process by {growth >> 10} KB"


def test_llvm_errors_come_back(pool: WorkerPool) -> None:
    with pytest.raises(RuntimeError, match="LLVM IR parsing error"):
        codegen.optimize("define i32 @f( {", "object", ["f"])
    pid = _pid(pool)
    _check(_compile(1.5))
    assert _pid(pool) == pid  # the same worker: an error is an answer


def test_llvm_crash_is_a_compile_error(pool: WorkerPool) -> None:
    with pytest.raises(
        stoicc_py.CompileError,
        match=r"LLVM crashed while optimising kernel f \(killed by SIGABRT: LLVM ERROR: Cannot select",
    ):
        codegen.optimize(CRASHING_IR, "object", ["f"])
    _check(_compile(2.5))  # a fresh worker


def test_a_dead_worker_is_replaced(pool: WorkerPool) -> None:
    _compile(3.5)
    dead = pool._worker
    assert dead is not None
    os.kill(dead.proc.pid, signal.SIGKILL)
    dead.proc.wait()
    _check(_compile(4.5))
    assert _pid(pool) != dead.proc.pid


def test_a_worn_worker_is_replaced_and_reaped(pool: WorkerPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "MAX_JOBS", 2)
    pool.prestart()
    first = _pid(pool)
    for c in (5.5, 6.5):
        _compile(c)
    assert _pid(pool) != first  # started for the next compile
    with pytest.raises(ChildProcessError):
        os.waitpid(first, os.WNOHANG)  # no zombie


@pytest.mark.parametrize("executable", ["/nonexistent/python", "/bin/false"])
def test_without_a_worker_llvm_runs_in_process(
    pool: WorkerPool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, executable: str
) -> None:
    monkeypatch.setattr(sys, "executable", executable)  # cannot start; starts and exits at once
    with caplog.at_level(logging.WARNING, logger=worker.__name__):
        for c in (7.5, 8.5):
            _check(_compile(c))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "LLVM runs in this process, which grows with every compile"
    ]
    assert pool._worker is None


def test_threads_compile_at_once() -> None:
    programs: dict[float, stoicc_py.Program] = {}

    def compile_one(c: float) -> None:
        programs[c] = _compile(c)

    threads = [threading.Thread(target=compile_one, args=(c,)) for c in (9.5, 10.5, 11.5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for program in programs.values():
        _check(program)
    assert len(programs) == 3


def test_a_forked_child_starts_its_own_worker() -> None:
    _compile(12.5)
    pid = os.fork()
    if pid == 0:  # the child: the parent's worker is not its own
        os._exit(0 if worker.POOL._worker is None else 1)
    assert os.waitpid(pid, 0)[1] == 0


def test_exit_stops_the_worker() -> None:
    code = "from stoicc_py.backends.llvm.worker import POOL; POOL.prestart(); print(POOL._worker.proc.pid)"
    pid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone before its parent was: killed and reaped at exit
