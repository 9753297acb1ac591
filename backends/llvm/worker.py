"""LLVM's optimisation and code emission, in a worker process.

llvmlite's new-pass-manager binding leaks native memory on every optimisation run (each pass
builder allocates instrumentation callbacks that nothing frees: about 0.5 MB for a
program of a few kernels), so a process that compiles for long would grow without
bound. Instead the compiling process sends the unoptimised IR text to a worker
(`python -m stoicc_py.backends.llvm.worker`, which imports llvmlite and the target
only), which parses, verifies and optimises it and sends back the object code,
assembly or optimised IR; a worker that has grown is replaced. MCJIT loading stays in
the compiling process, which gives the worker its machine's options with each job.

The pipes carry frames: an 8-byte little-endian length, then a pickle. The worker
first sends READY; a request is (MachineOptions, IR text, Output); a reply is (the
output or None, LLVM's error text or None, the steps' timings, the worker's RSS).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Literal

import llvmlite.binding as llvm

from stoicc_py.backends.llvm.target import MachineOptions, machine_for

Output = Literal["object", "asm", "llvm-ir"]
Timings = list[tuple[str, float]]
Result = tuple[str | bytes, Timings]

log = logging.getLogger(__name__)

MODULE = "stoicc_py.backends.llvm.worker"
MAX_RSS = 256 << 20
"""A worker whose RSS has grown past this is replaced (it starts near 90 MB and keeps
what every run leaked)."""
MAX_JOBS = 1000
READY = "ready"
_HEADER = struct.Struct("<Q")
_EMIT: dict[Output, tuple[str, Callable[[llvm.TargetMachine, llvm.ModuleRef], str | bytes]]] = {
    "object": ("llvm-codegen", lambda machine, mod: machine.emit_object(mod)),
    "asm": ("llvm-asm", lambda machine, mod: machine.emit_assembly(mod)),
    "llvm-ir": ("llvm-print", lambda _machine, mod: str(mod)),
}


def optimize(options: MachineOptions, ir_text: str, output: Output) -> Result:
    """Parse, verify and optimise (O2, SPEED_LEVEL) LLVM IR text for `options`' machine: the output
    and how long parsing, optimising and the emission took. Runs in the worker, or in the compiling
    process where no worker starts."""
    start = time.perf_counter()
    machine = machine_for(options)
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    parsed = time.perf_counter()
    tuning = llvm.create_pipeline_tuning_options(speed_level=SPEED_LEVEL)
    tuning.loop_vectorization = True
    # The vector passes emit the vectors they need. SLP packs the scalar index
    # arithmetic of the panel nests into vectors and pays a lane extract per address
    # (tdsl-vectorize-sparse's 2:4 nest ran 25% slower with it).
    tuning.slp_vectorization = False
    builder = llvm.create_pass_builder(machine, tuning)
    builder.getModulePassManager().run(mod, builder)
    optimised = time.perf_counter()
    step, emit = _EMIT[output]
    result = emit(machine, mod)
    return result, [
        ("llvm-parse", parsed - start),
        ("llvm-opt", optimised - parsed),
        (step, time.perf_counter() - optimised),
    ]


def _write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    """The next message, or None at the end of the stream (the other side is gone)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def _rss() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the job count alone recycles workers
        return 0


SPEED_LEVEL = 2
"""LLVM's O2: O3 took 1.5x its time for no speed. In an interleaved study on the Zen 4 (12
weight formats at 1536x512, 512x1536 and 1024x1024 with M = 1, 64, 256, and the decoder
layer's prefill and decode, 1 thread, best of 7 alternating runs) the O3 kernel took
0.94-1.10x the O2 kernel's time, geometric mean 1.00."""

WORKER_LLVM_OPTIONS = ("-unroll-runtime=0",)
"""LLVM's command-line options in the worker (process-wide, so never set in a compiling
process that may host other llvmlite users). Runtime unrolling copies every loop of
unknown trip count (the loops over M and T, and the scalar nests LLVM vectorises) with
remainder loops: it doubled the decoder layer's O3 and code emission (3.1 -> 1.6 s, the
object 145 -> 88 KB) for no measured speed (the layer's prefill and decode, and
shape-generic int4/2:4/int8/dense kernels, within the noise of thread CPU time)."""


def serve() -> None:
    """The worker's loop: a reply per request until the compiling process closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the compiling process, which drops us
    for option in WORKER_LLVM_OPTIONS:
        llvm.set_option("", option)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what LLVM prints to stdout must not corrupt the replies
    requests = sys.stdin.buffer
    _write(replies, READY)
    while (request := _read(requests)) is not None:
        try:
            result, timings = optimize(*request)
            reply: tuple[Any, ...] = (result, None, timings)
        except RuntimeError as e:  # llvmlite's parse and verifier errors
            reply = (None, str(e), [])
        _write(replies, (*reply, _rss()))


class WorkerDied(Exception):
    """The worker exited before answering: the message says how, with its last words."""


class _Worker:
    """One worker process: its pipes, and its stderr in a file (LLVM's last words)."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()
        path = os.pathsep.join(os.path.abspath(p) for p in sys.path)
        # -P and the parent's sys.path: the worker imports what this process imported,
        # whatever the current directory holds.
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env={**os.environ, "PYTHONPATH": path},
        )
        self.ready = False
        self.jobs = 0
        self.rss = 0

    def wait_ready(self) -> bool:
        """Whether the worker has started (it said READY, now or before)."""
        if not self.ready:
            self.ready = _read(self.proc.stdout) == READY  # type: ignore[arg-type]
        return self.ready

    def call(self, request: tuple[MachineOptions, str, Output]) -> tuple[Any, ...]:
        """The worker's reply; WorkerDied if it exited first."""
        written = self.stderr.seek(0, os.SEEK_END)
        try:
            _write(self.proc.stdin, request)  # type: ignore[arg-type]
            reply = _read(self.proc.stdout)  # type: ignore[arg-type]
        except BrokenPipeError:
            reply = None
        if reply is None:
            raise WorkerDied(self.death(written))
        self.jobs += 1
        self.rss = reply[-1]
        return reply

    def worn(self) -> bool:
        return self.rss > MAX_RSS or self.jobs >= MAX_JOBS

    def death(self, written: int) -> str:
        """How the process ended, with what it wrote to stderr from offset `written` on."""
        status = self.proc.wait()
        how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
        self.stderr.seek(written)
        last_words = self.stderr.read()[-2000:].decode(errors="replace").strip()
        return f"{how}: {last_words}" if last_words else how

    def stop(self) -> None:
        """Ends the process and reaps it (no zombie); it holds nothing worth keeping."""
        self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(BrokenPipeError):  # a request it did not read stays in the buffer
            self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.stderr.close()


LANES = min(2, len(os.sched_getaffinity(0)))
"""Workers that run at once: a compile's pieces (stoicc_py.lowering.build) share the cores."""


class _Lane:
    """One worker at a time, for any thread (a lock), started on demand or ahead of a
    compile, replaced when worn out or dead; LLVM runs in this process where the pool
    gave up starting workers."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.lock = threading.Lock()
        self.worker: _Worker | None = None

    def started(self) -> _Worker | None:
        if self.worker is None and not self.pool.in_process:
            try:
                self.worker = _Worker()
            except OSError as e:
                self.pool.give_up(f"cannot start it ({e})")
        return self.worker

    def drop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def optimize(self, request: tuple[MachineOptions, str, Output]) -> Result:
        try:
            return self._run(request)
        except WorkerDied:  # it may have died idle (killed, out of memory): once more in a fresh one
            return self._run(request)

    def _run(self, request: tuple[MachineOptions, str, Output]) -> Result:
        worker = self.started()
        if worker is not None and not worker.wait_ready():
            self.pool.give_up(f"did not start ({worker.death(0)})")
            worker = None
        if worker is None:
            with self.pool.in_process_lock:  # LLVM's global context is this process's
                return optimize(*request)
        try:
            reply = worker.call(request)
        except BaseException:  # dead, or interrupted mid-job: the pipes are out of step
            self.drop()
            raise
        if worker.worn():
            self.drop()
            self.started()  # the next compile finds it started
        return _result(reply)


class WorkerPool:
    """This process's workers, one per lane (LANES): a job takes a free lane, or waits
    for the first. Where no worker can start, LLVM runs in this process, with a warning once."""

    def __init__(self, lanes: int = LANES) -> None:
        self.lanes = [_Lane(self) for _ in range(lanes)]
        self.in_process = False
        self.in_process_lock = threading.Lock()

    @property
    def _worker(self) -> _Worker | None:
        """The first lane's worker (the one a lone compile uses)."""
        return self.lanes[0].worker

    def prestart(self) -> None:
        """Start the workers now, so that their start overlaps the front end and passes."""
        for lane in self.lanes:
            with lane.lock:
                lane.started()

    def give_up(self, why: str) -> None:
        if not self.in_process:
            log.warning("LLVM runs in this process, which grows with every compile: the LLVM worker %s", why)
        self.in_process = True
        for lane in self.lanes:
            lane.drop()

    def optimize(self, ir_text: str, output: Output, options: MachineOptions) -> Result:
        """optimize() for `options`' machine, in a worker; WorkerDied if LLVM crashed on this IR."""
        request = (options, ir_text, output)
        for lane in self.lanes:
            if lane.lock.acquire(blocking=False):
                try:
                    return lane.optimize(request)
                finally:
                    lane.lock.release()
        with self.lanes[0].lock:
            return self.lanes[0].optimize(request)

    def shutdown(self) -> None:
        """At exit: no lock, which a daemon thread may hold mid-job."""
        for lane in self.lanes:
            if (worker := lane.worker) is not None:
                worker.proc.kill()
                worker.proc.wait()

    def after_fork(self) -> None:
        """A forked child shares the parent's worker pipes: it gets its own workers."""
        self.lanes = [_Lane(self) for _ in self.lanes]


def _result(reply: tuple[Any, ...]) -> Result:
    result, error, timings, _rss = reply
    if error is not None:
        raise RuntimeError(error)
    return result, timings


POOL = WorkerPool()
atexit.register(POOL.shutdown)
os.register_at_fork(after_in_child=POOL.after_fork)

if __name__ == "__main__":
    serve()
