"""LLVM-dialect IR to optimised machine code for the host: LLVM IR text, assembly,
object files.

xDSL's converter turns the `llvm` dialect into llvmlite's IR builder objects; LLVM's
own O3 pipeline (new pass manager) then optimises for the host CPU.
"""

from __future__ import annotations

import logging

import llvmlite.binding as llvm
from xdsl.backend.llvm.convert import convert_module
from xdsl.dialects.builtin import ModuleOp

from stoicc_py.backends.llvm.target import host_machine
from stoicc_py.timing import timed

log = logging.getLogger(__name__)


def to_llvm_ir(module: ModuleOp) -> str:
    """Unoptimised LLVM IR text of an `llvm`-dialect module."""
    machine = host_machine()
    with timed(log, "xdsl-to-llvmlite"):
        ir_module = convert_module(module, fallback_target_triple=machine.triple, data_layout=str(machine.target_data))
        return str(ir_module)


def optimize(ir_text: str) -> llvm.ModuleRef:
    """Parse, verify and optimise (O3) LLVM IR text for the host."""
    machine = host_machine()
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    tuning = llvm.create_pipeline_tuning_options(speed_level=3)
    tuning.loop_vectorization = True
    # The vector passes emit the vectors they need. SLP packs the scalar index
    # arithmetic of the panel nests into vectors and pays a lane extract per address
    # (tdsl-vectorize-sparse's 2:4 nest ran 25% slower with it).
    tuning.slp_vectorization = False
    builder = llvm.create_pass_builder(machine, tuning)
    with timed(log, "llvm-o3"):
        builder.getModulePassManager().run(mod, builder)
    return mod


def emit_asm(mod: llvm.ModuleRef) -> str:
    with timed(log, "llvm-asm"):
        return host_machine().emit_assembly(mod)


def emit_object(mod: llvm.ModuleRef) -> bytes:
    with timed(log, "llvm-codegen"):
        return host_machine().emit_object(mod)
