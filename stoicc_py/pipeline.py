"""The compilation pipeline: ordered stages, each a list of named passes.

Every pass is registered by name (stoicc_py.passes, plus xDSL's own), so the same
pipeline runs from Python, from `stoicc compile -p ...` and from `stoicc opt`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import IntEnum

from xdsl.context import Context
from xdsl.dialects import get_all_dialects
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass, PassPipeline
from xdsl.transforms import get_all_passes

from stoicc_py.backends.llvm.target import has_vnni, host_features, vector_registers
from stoicc_py.dialects import DIALECTS
from stoicc_py.passes import PASSES
from stoicc_py.timing import log_elapsed

log = logging.getLogger(__name__)


class Stage(IntEnum):
    """How far to lower; each stage's IR can be printed (`k.ir("loops")`)."""

    IR = 0  # tdsl ops on tensors, straight from the front end
    OPT = 1  # after the tensor-level passes (fusion, tiling)
    LOOPS = 2  # scf loop nests over memrefs
    LLVM = 3  # the llvm dialect, ready for llvmlite


STAGE_PASSES: dict[Stage, tuple[str, ...]] = {
    Stage.OPT: (
        "tdsl-infer-shapes",
        "tdsl-fold-transpose",
        "tdsl-fuse-dequant",
        "tdsl-fuse-epilogue",
        "metadata-layout",
        "tdsl-tile",
    ),
    Stage.LOOPS: (
        "tdsl-bufferize",
        "tdsl-unbatch",
        "tdsl-microkernel",
        "tdsl-vectorize-quant",
        "tdsl-vectorize-integer",
        "tdsl-vectorize-sparse",
        "tdsl-lower-to-loops",
        "lower-views",
        "canonicalize",
        "cse",
        "licm",
    ),
    Stage.LLVM: (
        "mangle-symbols",
        "convert-memref-to-ptr",
        "convert-vector-to-ptr",
        "resolve-memref-dims",
        "lower-alloc",
        "convert-memref-to-ptr{lower_func=true}",
        "convert-scf-to-cf",
        "convert-ptr-type-offsets",
        "convert-ptradd-to-gep",
        "lower-ptr-to-llvm",
        "convert-vector-to-llvm",
        "convert-arith-to-llvm",
        "convert-math-to-llvm",
        "convert-cf-to-llvm",
        "convert-func-to-llvm",
        "reconcile-unrealized-casts",
    ),
}


def all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    return {**get_all_passes(), **PASSES}


def context() -> Context:
    """A context with xDSL's dialects and ours, loaded lazily."""
    ctx = Context()
    for name, factory in {**get_all_dialects(), **DIALECTS}.items():
        ctx.register_dialect(name, factory)
    return ctx


def microkernel_options(features: frozenset[str]) -> str:
    """The target's vector width, and the largest register block that fits its
    vector registers with room for one row of x per block row and a weight row."""
    width, registers = vector_registers(features)
    rows, cols = (4, 6) if registers >= 32 else (3, 4)
    return f"{{width={width} rows={rows} cols={cols}}}"


def quant_options(features: frozenset[str]) -> str:
    """The target's vector width, and a register block whose 2*rows*cols accumulators
    (group dot products and scaled totals), a row of x per block row and the unpacked
    codes fit."""
    width, registers = vector_registers(features)
    rows, cols = (4, 2) if registers >= 32 else (2, 2)
    return f"{{width={width} rows={rows} cols={cols}}}"


def integer_options(features: frozenset[str]) -> str:
    """The microkernel's block and width, stepping with vpdpbusd where the target has it."""
    return microkernel_options(features).removesuffix("}") + f" vnni={str(has_vnni(features)).lower()}}}"


def pipeline_spec(upto: Stage, tile: tuple[int, ...] = (), check_bounds: bool = False,
                  features: frozenset[str] | None = None) -> str:  # fmt: skip
    """The CPU pipeline up to `upto` for a CPU with `features` (default: the host's);
    `check_bounds` guards every access of the loop nests."""
    features = host_features() if features is None else features
    names = [p for stage in Stage if Stage.IR < stage <= upto for p in STAGE_PASSES[stage]]
    if check_bounds and upto >= Stage.LLVM:
        names.insert(names.index(STAGE_PASSES[Stage.LLVM][0]), "check-bounds")
    options = {
        "tdsl-microkernel": microkernel_options(features),
        "tdsl-vectorize-quant": quant_options(features),
        "tdsl-vectorize-integer": integer_options(features),
        "tdsl-vectorize-sparse": f"{{width={vector_registers(features)[0]}}}",
    }
    if tile:
        options["tdsl-tile"] = f"{{sizes={','.join(map(str, tile))}}}"
    return ",".join(p + options.get(p, "") for p in names)


def accel_pipeline_spec(bind: dict[str, int], machine: str = "", tile: tuple[int, ...] = ()) -> str:
    """The accelerator's pipeline: the tensor-level passes with every size symbol
    bound, accel tiles instead of CPU ones, then the program and its tokens."""
    binding = ",".join(f'"{k}={v}"' for k, v in bind.items())
    option = f'{{machine="{machine}"}}' if machine else ""
    names = [f"tdsl-infer-shapes{{bind={binding}}}" if p == "tdsl-infer-shapes" and bind else p
             for p in STAGE_PASSES[Stage.OPT] if p != "tdsl-tile"]  # fmt: skip
    sizes = f"{{sizes={','.join(map(str, tile))}}}" if tile else option
    return ",".join([*names, f"accel-tile{sizes}", f"convert-tdsl-to-accel{option}", "accel-schedule"])


PassCallback = Callable[[ModulePass, ModuleOp, float], None]


def run_passes(module: ModuleOp, spec: str, after_pass: PassCallback | None = None,
               verify_each: bool = False) -> ModuleOp:  # fmt: skip
    """Run a comma-separated pass pipeline in place and verify the result; with
    `verify_each`, after every pass too (what `stoicc opt -p` does, to locate a
    pass that breaks the IR; a compile skips it: it costs a third of the passes' time)."""
    start = time.perf_counter()

    def callback(prev: ModulePass | None, mod: ModuleOp, _next: ModulePass | None) -> None:
        nonlocal start
        if verify_each:
            mod.verify()
        if prev is not None:
            elapsed = time.perf_counter() - start
            log_elapsed(log, prev.name, elapsed)
            if after_pass is not None:
                after_pass(prev, mod, elapsed)
        start = time.perf_counter()

    PassPipeline.parse_spec(all_passes(), spec, callback).apply(context(), module)
    module.verify()
    return module
