"""The native thread pool that compiled kernels split their parallel loops on.

`stoicc_parallel_for(fn, ctx, iters, work)` runs `fn(ctx, start, stop)` over blocks of
`[0, iters)`: the caller publishes the job, takes blocks itself and spins until the
workers have finished theirs. Workers are native threads (pthread_create) that spin
with `pause` for a bounded time after each job, so that the next call of a decode step
reaches them in well under a microsecond, then sleep on a futex so that an idle process
uses no core. passes/parallelize_loops.py emits the calls.

The runtime is LLVM IR, JIT-compiled once per process with MCJIT (as the kernels are)
when the first kernel library loads; its entry is registered as a process symbol
(llvm.add_symbol), so kernel objects resolve it as they resolve libc's. Python only
starts workers, sets how many take part (the threads setting), stops them at exit and
forgets them in a forked child (whose threads are gone).

Protocol: `claim` holds (generation << 32) | next block. A caller that holds `busy`
closes the claim word for the new generation, writes the job, opens the word, then
bumps `gen` (the futex word) and wakes sleepers. A block is claimed by a
compare-and-swap that keeps the generation, so a worker that read an older job cannot
take a block of the newer one. A call made while the pool is busy (another thread's
call, or a nested one) runs its loop whole on its own thread. A block computes exactly
what the same iterations compute in the whole loop: results agree bit for bit.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import threading

import llvmlite.binding as llvm

from stoicc_py.backends.llvm.target import new_host_machine

ENTRY = "stoicc_parallel_for"
"""The symbol that compiled code calls: void(ptr fn, ptr ctx, i64 iters, i64 work)."""
MAX_WORKERS = 63
BLOCKS_PER_THREAD = 2
"""Blocks per taking part thread: the caller and the workers claim them as they finish,
so that a thread the host delays (other processes on a 2-core host) leaves its share.
Each block costs a claim and a count on lines both cores write: on an idle Zen 4
(2026-12-08, 2 threads, least of 20 × 300 calls, 4 -> 2 blocks a thread) W4A8 GEMVs on
Q4_1's grid took 1×576² 4.50-4.73 -> 4.25-4.28 µs, 1×1536×576 7.73-7.78 -> 6.95-7.16,
1×576×1536 7.02-7.13 -> 6.88-6.91, and the f32-x one at 1×576×1536 15.2 -> 13.5-13.8
(one block a thread: within 2% of two)."""
SPIN = 200_000
"""pause iterations (~40 cycles each on Zen 4: a few ms) a worker spins after a job
before it sleeps: longer than the gaps between a decode step's calls."""
MIN_WORK = 1 << 15
"""The least estimated work (iterations x per-iteration cost, passes/parallelize_loops.py)
that a loop splits at: below it the hand-off (~1 us with spinning workers, a futex wake
~10 us with sleeping ones) costs more than a second core saves."""

_IR = r"""
@claim = internal global i64 0, align 64
@done = internal global i64 0, align 64
@gen = internal global i32 0, align 64
@sleepers = internal global i32 0, align 64
@job_fn = internal global ptr null, align 64
@job_ctx = internal global ptr null, align 8
@job_iters = internal global i64 0, align 8
@job_blocks = internal global i64 0, align 8
@busy = internal global i32 0, align 64
@stop = internal global i32 0, align 64
@workers = internal global i32 0, align 4
@tids = internal global [64 x i64] zeroinitializer, align 8
@stoicc_pool_threads = global i32 1, align 64
@stoicc_pool_spin = global i64 SPIN, align 8
@stoicc_pool_min_work = global i64 MIN_WORK, align 8

declare i64 @syscall(i64, ...)
declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_join(i64, ptr)
declare void @llvm.x86.sse2.pause()

; Claims and runs blocks of generation %g until none is left.
define internal void @run_blocks(i32 %g) {
entry:
  br label %loop
loop:
  %w = load atomic i64, ptr @claim seq_cst, align 8
  %wg = lshr i64 %w, 32
  %wg32 = trunc i64 %wg to i32
  %same = icmp eq i32 %wg32, %g
  br i1 %same, label %check, label %exit
check:
  %b = and i64 %w, 4294967295
  %n = load atomic i64, ptr @job_blocks monotonic, align 8
  %more = icmp ult i64 %b, %n
  br i1 %more, label %try, label %exit
try:
  %w1 = add i64 %w, 1
  %r = cmpxchg ptr @claim, i64 %w, i64 %w1 seq_cst seq_cst
  %ok = extractvalue { i64, i1 } %r, 1
  br i1 %ok, label %run, label %loop
run:
  %fn = load atomic ptr, ptr @job_fn monotonic, align 8
  %ctx = load atomic ptr, ptr @job_ctx monotonic, align 8
  %iters = load atomic i64, ptr @job_iters monotonic, align 8
  %s0 = mul i64 %b, %iters
  %start = udiv i64 %s0, %n
  %b1 = add i64 %b, 1
  %s1 = mul i64 %b1, %iters
  %end = udiv i64 %s1, %n
  call void %fn(ptr %ctx, i64 %start, i64 %end)
  %old = atomicrmw add ptr @done, i64 1 release
  br label %loop
exit:
  ret void
}

define void @stoicc_parallel_for(ptr %fn, ptr %ctx, i64 %iters, i64 %work) {
entry:
  %t32 = load atomic i32, ptr @stoicc_pool_threads monotonic, align 4
  %t = zext i32 %t32 to i64
  %total = mul i64 %iters, %work
  %min = load atomic i64, ptr @stoicc_pool_min_work monotonic, align 8
  %small = icmp ult i64 %total, %min
  %one = icmp ult i64 %t, 2
  %few = icmp ult i64 %iters, 2
  %a = or i1 %small, %one
  %whole = or i1 %a, %few
  br i1 %whole, label %serial, label %lock
lock:
  %r = cmpxchg ptr @busy, i32 0, i32 1 acquire monotonic
  %got = extractvalue { i32, i1 } %r, 1
  br i1 %got, label %publish, label %serial
serial:
  call void %fn(ptr %ctx, i64 0, i64 %iters)
  ret void
publish:
  %g0 = load atomic i32, ptr @gen monotonic, align 4
  %g = add i32 %g0, 1
  %g64 = zext i32 %g to i64
  %open = shl i64 %g64, 32
  %closed = or i64 %open, 4294967295
  store atomic i64 %closed, ptr @claim seq_cst, align 8
  %tb = mul i64 %t, BLOCKS_PER_THREAD
  %lt = icmp ult i64 %iters, %tb
  %blocks = select i1 %lt, i64 %iters, i64 %tb
  store atomic ptr %fn, ptr @job_fn monotonic, align 8
  store atomic ptr %ctx, ptr @job_ctx monotonic, align 8
  store atomic i64 %iters, ptr @job_iters monotonic, align 8
  store atomic i64 %blocks, ptr @job_blocks monotonic, align 8
  store atomic i64 0, ptr @done monotonic, align 8
  store atomic i64 %open, ptr @claim seq_cst, align 8
  store atomic i32 %g, ptr @gen seq_cst, align 4
  %s = load atomic i32, ptr @sleepers seq_cst, align 4
  %asleep = icmp ne i32 %s, 0
  br i1 %asleep, label %wake, label %work_
wake:
  %x = call i64 (i64, ...) @syscall(i64 202, ptr @gen, i32 129, i32 2147483647)
  br label %work_
work_:
  call void @run_blocks(i32 %g)
  br label %wait
wait:
  %d = load atomic i64, ptr @done acquire, align 8
  %finished = icmp uge i64 %d, %blocks
  br i1 %finished, label %release, label %spin
spin:
  call void @llvm.x86.sse2.pause()
  br label %wait
release:
  store atomic i32 0, ptr @busy release, align 4
  ret void
}

; A worker: %arg is its index; it takes part in jobs while index + 1 < threads.
define internal ptr @worker(ptr %arg) {
entry:
  %idx = ptrtoint ptr %arg to i64
  %idx32 = trunc i64 %idx to i32
  %me = add i32 %idx32, 1
  %g0 = load atomic i32, ptr @gen acquire, align 4
  br label %idle
idle:
  %seen = phi i32 [ %g0, %entry ], [ %g, %job ], [ %g, %take ]
  br label %poll
poll:
  %spins = phi i64 [ 0, %idle ], [ %spins1, %pause ], [ %spins, %slept ]
  %stopping = load atomic i32, ptr @stop acquire, align 4
  %halt = icmp ne i32 %stopping, 0
  br i1 %halt, label %exit, label %look
look:
  %g = load atomic i32, ptr @gen acquire, align 4
  %new = icmp ne i32 %g, %seen
  br i1 %new, label %job, label %idle_
idle_:
  %limit = load atomic i64, ptr @stoicc_pool_spin monotonic, align 8
  %young = icmp ult i64 %spins, %limit
  br i1 %young, label %pause, label %sleep
pause:
  call void @llvm.x86.sse2.pause()
  %spins1 = add i64 %spins, 1
  br label %poll
sleep:
  %in = atomicrmw add ptr @sleepers, i32 1 seq_cst
  %again = load atomic i32, ptr @gen seq_cst, align 4
  %moved = icmp ne i32 %again, %seen
  br i1 %moved, label %slept, label %futex
futex:
  %y = call i64 (i64, ...) @syscall(i64 202, ptr @gen, i32 128, i32 %seen, ptr null)
  br label %slept
slept:
  %out = atomicrmw sub ptr @sleepers, i32 1 seq_cst
  br label %poll
job:
  %t = load atomic i32, ptr @stoicc_pool_threads monotonic, align 4
  %takes = icmp ult i32 %me, %t
  br i1 %takes, label %take, label %idle
take:
  call void @run_blocks(i32 %g)
  br label %idle
exit:
  ret ptr null
}

; Starts workers until there are %n (at most 63); returns how many run.
define i32 @stoicc_pool_start(i32 %n) {
entry:
  br label %loop
loop:
  %k = load i32, ptr @workers, align 4
  %more = icmp slt i32 %k, %n
  br i1 %more, label %start, label %exit
start:
  %k64 = sext i32 %k to i64
  %slot = getelementptr [64 x i64], ptr @tids, i64 0, i64 %k64
  %arg = inttoptr i64 %k64 to ptr
  %rc = call i32 @pthread_create(ptr %slot, ptr null, ptr @worker, ptr %arg)
  %failed = icmp ne i32 %rc, 0
  br i1 %failed, label %exit, label %next
next:
  %k1 = add i32 %k, 1
  store i32 %k1, ptr @workers, align 4
  br label %loop
exit:
  %running = load i32, ptr @workers, align 4
  ret i32 %running
}

; Stops and joins every worker (no call may be in flight).
define void @stoicc_pool_stop() {
entry:
  store atomic i32 1, ptr @stop seq_cst, align 4
  %g = atomicrmw add ptr @gen, i32 1 seq_cst
  %x = call i64 (i64, ...) @syscall(i64 202, ptr @gen, i32 129, i32 2147483647)
  %n = load i32, ptr @workers, align 4
  br label %loop
loop:
  %k = phi i32 [ 0, %entry ], [ %k1, %join ]
  %more = icmp slt i32 %k, %n
  br i1 %more, label %join, label %exit
join:
  %k64 = sext i32 %k to i64
  %slot = getelementptr [64 x i64], ptr @tids, i64 0, i64 %k64
  %tid = load i64, ptr %slot, align 8
  %rc = call i32 @pthread_join(i64 %tid, ptr null)
  %k1 = add i32 %k, 1
  br label %loop
exit:
  store i32 0, ptr @workers, align 4
  store atomic i32 0, ptr @stop seq_cst, align 4
  ret void
}

; In a forked child: the parent's workers do not exist here.
define void @stoicc_pool_forget() {
entry:
  store i32 0, ptr @workers, align 4
  store i32 0, ptr @busy, align 4
  store i32 0, ptr @sleepers, align 4
  store i32 0, ptr @stop, align 4
  ret void
}
"""


class _Pool:
    """The runtime's engine (kept alive: it owns the code) and its entries."""

    def __init__(self) -> None:
        text = _IR.replace("BLOCKS_PER_THREAD", str(BLOCKS_PER_THREAD))
        text = text.replace("MIN_WORK", str(MIN_WORK)).replace("SPIN", str(SPIN))
        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(text), new_host_machine())
        self._engine.finalize_object()
        address = self._engine.get_function_address
        llvm.add_symbol(ENTRY, address(ENTRY))
        self.start = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32)(address("stoicc_pool_start"))
        self.stop = ctypes.CFUNCTYPE(None)(address("stoicc_pool_stop"))
        self.forget = ctypes.CFUNCTYPE(None)(address("stoicc_pool_forget"))
        self.threads = ctypes.c_int32.from_address(self._engine.get_global_value_address("stoicc_pool_threads"))
        self.spin = ctypes.c_int64.from_address(self._engine.get_global_value_address("stoicc_pool_spin"))
        self.min_work = ctypes.c_int64.from_address(self._engine.get_global_value_address("stoicc_pool_min_work"))
        self.workers = 0
        self.asked = 1


_pool: _Pool | None = None
_lock = threading.Lock()


def load() -> _Pool:
    """The process's pool runtime, compiled on first use (before any kernel object loads)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = _Pool()
            atexit.register(shutdown)
        return _pool


def use_threads(n: int) -> None:
    """Let `n` threads (the caller and n - 1 workers) take part in the next calls: starts
    the workers that are missing. Cheap when nothing changes (a kernel call asks each time)."""
    pool = _pool or load()
    if pool.asked == n:
        return
    with _lock:
        wanted = min(n - 1, MAX_WORKERS)
        if pool.workers < wanted:
            pool.workers = pool.start(wanted)
        pool.threads.value = min(n, pool.workers + 1)
        pool.asked = n


def shutdown() -> None:
    """Stop and join the workers (at exit; a later call starts them again)."""
    with _lock:
        if _pool is not None and _pool.workers:
            _pool.stop()
            _pool.workers, _pool.asked = 0, 1
            _pool.threads.value = 1


def _forget() -> None:
    global _lock
    _lock = threading.Lock()
    if _pool is not None:
        _pool.forget()
        _pool.workers, _pool.asked = 0, 1
        _pool.threads.value = 1


os.register_at_fork(after_in_child=_forget)
