"""The compile path, from source to object code: the front end, the pipeline's stages,
LLVM, and the kernels' ABIs. stoicc_py.api imports it only on a cache miss (or for
IR and the reference), since it loads lark, xDSL and every pass."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import cast

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from stoicc_py.abi import KernelABI
from stoicc_py.backends.llvm.codegen import optimize, to_llvm_ir
from stoicc_py.backends.llvm.target import MachineOptions, machine_options, target_features
from stoicc_py.backends.llvm.worker import LANES, Output
from stoicc_py.frontend.irgen import irgen
from stoicc_py.frontend.parser import parse
from stoicc_py.options import Options
from stoicc_py.passes.parallelize_loops import calls_pool
from stoicc_py.pipeline import (
    STAGES,
    TEXT_STAGES,
    PassCallback,
    Stage,
    paused_gc,
    pipeline_passes,
    pipeline_spec,
    run_passes,
)
from stoicc_py.signature import kernel_abi
from stoicc_py.split_module import split_functions
from stoicc_py.timing import timed

log = logging.getLogger(__name__)


def front_end(source: str, file: str) -> ModuleOp:
    with timed(log, "front-end"), paused_gc():  # as the passes: 20% of a 4,096-operation front end
        module = irgen(parse(source, file))
        module.verify()
        return module


def only_kernel(module: ModuleOp, name: str) -> ModuleOp:
    """A copy of `module` with only the function `name`."""
    kept = module.clone()
    for op in list(kept.ops):
        if isinstance(op, func.FuncOp) and op.sym_name.data != name:
            kept.body.block.erase_op(op)
    return kept


def machine(options: Options) -> MachineOptions:
    """The machine that `options` compile for: the host, or --mcpu/--mattr's CPU."""
    return machine_options(options.cpu, options.mattr)


def lower(module: ModuleOp, upto: Stage, options: Options, after_pass: PassCallback | None = None,
          native_threads: bool = True) -> ModuleOp:  # fmt: skip
    """A lowered copy of a front-end module (for the CPU; the ABI's stage OPT for any target),
    with the vector widths and register blocks of the target CPU."""
    features = target_features(machine(options))
    spec = pipeline_spec(upto, options.tile, options.check_bounds, features, native_threads)
    return run_passes(module.clone(), spec, after_pass)


_LLVM_TEXT: dict[str, Output] = {"llvm-ir": "llvm-ir", "asm": "asm"}
"""The stages that LLVM itself prints, as the worker's outputs."""


def optimized_llvm(
    module: ModuleOp, output: Output, options: Options, after_pass: PassCallback | None = None
) -> str | bytes:
    """The module's object code, assembly or optimised LLVM IR for the target CPU: code to
    link elsewhere, so its loops run on the caller's thread (the thread pool is the JIT's)."""
    kernels = [op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)]
    target = machine(options)
    lowered = lower(module, Stage.PTR, options, after_pass, native_threads=False)
    return optimize(to_llvm_ir(lowered, target), output, kernels, target)


def object_code(module: ModuleOp, options: Options, after_pass: PassCallback | None = None) -> bytes:
    code = optimized_llvm(module, "object", options, after_pass)
    assert isinstance(code, bytes)
    return code


def kernel_abis(module: ModuleOp, options: Options) -> list[KernelABI]:
    """The ABI of every kernel, read after metadata-layout records the storage, as the code reads it."""
    return _abis(lower(module, Stage.OPT, options), options)


def _abis(opt: ModuleOp, options: Options) -> list[KernelABI]:
    """The ABIs of the kernels of a module at stage OPT."""
    return [replace(kernel_abi(op), check_bounds=options.check_bounds) for op in opt.ops if isinstance(op, func.FuncOp)]


PIECE_OPS = 600
"""Ops per piece of a module compiled in pieces: the decoder layer (5,000 ops after
outlining) makes 8, so that the workers share LLVM's work evenly and the last piece is short."""


def build(module: ModuleOp, options: Options) -> tuple[list[bytes], list[KernelABI]]:
    """Object code for the target CPU, in pieces, and the ABIs of a front-end module's
    kernels. Each kernel is lowered on its own, and each piece of its functions
    (stoicc_py.split_module) is translated to LLVM IR and handed to a free LLVM worker,
    which optimises and emits it while this process lowers and translates the next: LLVM,
    most of a compile, runs on every core (worker.LANES), beside our passes. The ABIs
    are read at stage OPT, on the way."""
    # Static relocations (absolute 64-bit addresses under the large code model): MCJIT
    # resolves a PIC object's GOT-relative constant-pool references (R_X86_64_GOTOFF64)
    # against the first `.got` section that it loaded, another piece's.
    target = machine(options)._replace(reloc="static")
    features = target_features(target)
    passes = partial(pipeline_passes, tile=options.tile, check_bounds=options.check_bounds, features=features)
    lowered = run_passes(module.clone(), ",".join(passes(Stage.OPT)))
    abis = _abis(lowered, options)
    to_ptr = ",".join(passes(Stage.PTR, after=Stage.OPT))
    kernels = [abi.name for abi in abis]
    lowered_abis = []
    with ThreadPoolExecutor(LANES, thread_name_prefix="stoicc-llvm") as llvm_thread:
        pending = []
        for abi, kernel in zip(abis, split_functions(lowered, 1), strict=True):  # a module per kernel, in order
            run_passes(kernel, to_ptr)
            python_split = bool(abi.row_split or abi.column_split)
            lowered_abis.append(replace(abi, native_threads=calls_pool(kernel, abi.symbol, python_split),
                                        one_row_pool=calls_pool(kernel, abi.symbol, False)))  # fmt: skip
            pending += [llvm_thread.submit(optimize, to_llvm_ir(piece, target), "object", kernels, target)
                        for piece in split_functions(kernel, PIECE_OPS)]  # fmt: skip
        objects = [cast(bytes, p.result()) for p in pending]
    return objects, lowered_abis


def emit_text(module: ModuleOp, stage: str, options: Options, after_pass: PassCallback | None = None) -> str:
    """The textual form of `module` lowered to `stage`."""
    if stage in STAGES:
        return str(lower(module, STAGES[stage], options, after_pass))
    if stage == "llvm":
        return to_llvm_ir(lower(module, Stage.PTR, options, after_pass), machine(options))
    if (output := _LLVM_TEXT.get(stage)) is not None:
        return str(optimized_llvm(module, output, options, after_pass))
    raise ValueError(f"unknown stage '{stage}' (expected one of {', '.join(TEXT_STAGES)})")
