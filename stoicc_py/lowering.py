"""The compile path, from source to object code: the front end, the pipeline's stages,
LLVM, and the kernels' ABIs. stoicc_py.api imports it only on a cache miss (or for
IR and the reference), since it loads lark, xDSL and every pass."""

from __future__ import annotations

import logging
from dataclasses import replace

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from stoicc_py.abi import KernelABI
from stoicc_py.backends.llvm.codegen import optimize, to_llvm_ir
from stoicc_py.backends.llvm.target import MachineOptions, machine_options, target_features
from stoicc_py.backends.llvm.worker import Output
from stoicc_py.frontend.irgen import irgen
from stoicc_py.frontend.parser import parse
from stoicc_py.options import Options
from stoicc_py.pipeline import PassCallback, Stage, pipeline_spec, run_passes
from stoicc_py.signature import kernel_abi
from stoicc_py.timing import timed

log = logging.getLogger(__name__)
STAGES = {"ir": Stage.IR, "opt": Stage.OPT, "loops": Stage.LOOPS, "llvm": Stage.LLVM}
TEXT_STAGES = (*STAGES, "llvm-ir", "asm")


def front_end(source: str, file: str) -> ModuleOp:
    with timed(log, "front-end"):
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


def lower(module: ModuleOp, upto: Stage, options: Options, after_pass: PassCallback | None = None) -> ModuleOp:
    """A lowered copy of a front-end module (for the CPU; the ABI's stage OPT for any target),
    with the vector widths and register blocks of the target CPU."""
    features = target_features(machine(options))
    return run_passes(module.clone(), pipeline_spec(upto, options.tile, options.check_bounds, features), after_pass)


_LLVM_TEXT: dict[str, Output] = {"llvm-ir": "llvm-ir", "asm": "asm"}
"""The stages that LLVM itself prints, as the worker's outputs."""


def optimized_llvm(
    module: ModuleOp, output: Output, options: Options, after_pass: PassCallback | None = None
) -> str | bytes:
    """The module's object code, assembly or optimised LLVM IR for the target CPU."""
    kernels = [op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)]
    target = machine(options)
    return optimize(to_llvm_ir(lower(module, Stage.LLVM, options, after_pass), target), output, kernels, target)


def object_code(module: ModuleOp, options: Options, after_pass: PassCallback | None = None) -> bytes:
    code = optimized_llvm(module, "object", options, after_pass)
    assert isinstance(code, bytes)
    return code


def kernel_abis(module: ModuleOp, options: Options) -> list[KernelABI]:
    """The ABI of every kernel, read after metadata-layout records the storage, as the code reads it."""
    return [replace(kernel_abi(op), check_bounds=options.check_bounds)
            for op in lower(module, Stage.OPT, options).ops if isinstance(op, func.FuncOp)]  # fmt: skip


def build(module: ModuleOp, options: Options) -> tuple[bytes, list[KernelABI]]:
    """Object code for the target CPU and the ABIs of a front-end module's kernels."""
    return object_code(module, options), kernel_abis(module, options)


def emit_text(module: ModuleOp, stage: str, options: Options, after_pass: PassCallback | None = None) -> str:
    """The textual form of `module` lowered to `stage`."""
    if stage in STAGES:
        return str(lower(module, STAGES[stage], options, after_pass))
    if (output := _LLVM_TEXT.get(stage)) is not None:
        return str(optimized_llvm(module, output, options, after_pass))
    raise ValueError(f"unknown stage '{stage}' (expected one of {', '.join(TEXT_STAGES)})")
