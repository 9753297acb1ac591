"""LLVM-dialect IR to optimised machine code for the host or a named CPU: LLVM IR
text, assembly, object files.

backends/llvm/translate.py prints the IR of stage `ptr` as LLVM IR text; LLVM's own O2
pipeline (new pass manager) then optimises it for the target CPU, in an LLVM worker
process (backends/llvm/worker.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from xdsl.dialects.builtin import ModuleOp

from stoicc_py.backends.llvm.target import MachineOptions, host_options, machine_for
from stoicc_py.backends.llvm.translate import translate
from stoicc_py.backends.llvm.worker import POOL, Output, WorkerDied
from stoicc_py.diagnostics import CompileError
from stoicc_py.timing import log_elapsed, timed

log = logging.getLogger(__name__)


def to_llvm_ir(module: ModuleOp, target: MachineOptions | None = None) -> str:
    """Unoptimised LLVM IR text of a module at stage LLVM, for `target` (default: the host)."""
    machine = machine_for(target or host_options())
    with timed(log, "translate-to-llvm"):
        return translate(module, machine.triple, str(machine.target_data))


def optimize(ir_text: str, output: Output, kernels: Sequence[str], target: MachineOptions | None = None) -> str | bytes:
    """LLVM IR text, verified and optimised (O2) for `target` (default: the host): object
    code, assembly or optimised IR. RuntimeError with LLVM's message for bad IR;
    CompileError if LLVM crashed on it."""
    start = time.perf_counter()
    try:
        result, timings = POOL.optimize(ir_text, output, target or host_options())
    except WorkerDied as e:
        what = f"kernel{'s' if len(kernels) != 1 else ''} {', '.join(kernels)}"
        raise CompileError(f"LLVM crashed while optimising {what} ({e})") from None
    for step, seconds in timings:
        log_elapsed(log, step, seconds)
    # the worker's start when it was not ready yet, and the IR's and results' way through the pipes
    log_elapsed(log, "llvm-worker", time.perf_counter() - start - sum(s for _, s in timings))
    return result
