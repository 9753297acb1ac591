"""The compilation pipeline: ordered stages, each a list of named passes.

Every pass is registered by name (stoicc_py.passes, plus xDSL's own), so the same
pipeline runs from Python, from `stoicc compile -p ...` and from `stoicc opt`.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum

from xdsl.context import Context
from xdsl.dialects import get_all_dialects
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import ErasedSSAValue, Operation
from xdsl.passes import ModulePass, PassPipeline
from xdsl.traits import IsTerminator
from xdsl.transforms import get_all_passes
from xdsl.utils.exceptions import VerifyException

from stoicc_py.backends.llvm.target import (
    has_avx512bf16,
    has_byte_madd,
    has_vnni,
    host_features,
    vector_registers,
)
from stoicc_py.dialects import DIALECTS
from stoicc_py.passes import PASSES
from stoicc_py.timing import log_elapsed, timed

log = logging.getLogger(__name__)


class Stage(IntEnum):
    """How far to lower; each stage's IR can be printed (`k.ir("loops")`)."""

    IR = 0  # tdsl ops on tensors, straight from the front end
    OPT = 1  # after the tensor-level passes (fusion, tiling)
    LOOPS = 2  # scf loop nests over memrefs
    PTR = 3  # loops over pointers, outlined: what translate-to-llvm reads (backends/llvm/translate.py)


STAGES = {"ir": Stage.IR, "opt": Stage.OPT, "loops": Stage.LOOPS, "ptr": Stage.PTR}
TEXT_STAGES = (*STAGES, "llvm", "llvm-ir", "asm")
"""What `stoicc compile --emit` and `Kernel.ir` print: a stage's IR, LLVM IR (before or after
LLVM's optimizer) or assembly."""


STAGE_PASSES: dict[Stage, tuple[str, ...]] = {
    Stage.OPT: (
        "tdsl-infer-shapes",
        "tdsl-fold-transpose",
        "tdsl-fuse-dequant",
        "tdsl-bitsplit-as-int8",
        "tdsl-dequantize-sq-activations",
        "tdsl-fuse-epilogue",
        "metadata-layout",
        "tdsl-tile",
    ),
    Stage.LOOPS: (
        "tdsl-bufferize",
        "tdsl-unbatch",
        "tdsl-vectorize-quant",
        "tdsl-microkernel",
        "tdsl-vectorize-integer",
        "tdsl-vectorize-sparse",
        "tdsl-vectorize-elementwise",
        "tdsl-lower-to-loops",
        "lower-views",
        "hoist-constants",
        "licm",
    ),
    Stage.PTR: (
        "mark-parallel-loops",
        "mangle-symbols",
        "lower-memory-to-ptr",
        "cse-pure",
        "resolve-memref-dims",
        "lower-alloc",
        "lower-memory-to-ptr{signatures=true}",
        "outline-loop-nests",
        "parallelize-loops",
    ),
}


CPU_ONLY = ("tdsl-bitsplit-as-int8", "tdsl-dequantize-sq-activations", "tdsl-tile")
"""Passes of stage OPT that the accelerator's pipeline leaves out: it runs bit-split and
SQ-format activations as such (its sparse passes skip the zero high nibbles, gather the
high part) and tiles its own way."""

NATIVE_THREAD_PASSES = ("mark-parallel-loops", "parallelize-loops")
"""The passes whose loops call the JIT's thread pool (backends/llvm/runtime.py)."""

AMX_KINDS = {"bf16": "amx-bf16", "int8": "amx-int8"}
"""tdsl-amx's options and the target features that turn them on, with amx-tile
(host_features has them only where the OS granted this process the tile state)."""


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
    return f"{{width={width} rows={rows} cols={cols} accumulators={registers // 2}}}"


def integer_options(features: frozenset[str]) -> str:
    """The microkernel's block and width, stepping with vpdpbusd where the target has it,
    else with pmaddubsw and pmaddwd where it has those; with 16 vector registers,
    PanelKernel blocks whose accumulators, a weight row and x's broadcast dword fit them."""
    vnni = has_vnni(features)
    options = microkernel_options(features).removesuffix("}") + f" vnni={str(vnni).lower()}"
    if not vnni and has_byte_madd(features):
        options += " madd=true"
    if vector_registers(features)[1] < 32:
        options += " panel_rows=4 panel_cols=2"
    return options + "}"


def sparse_options(features: frozenset[str]) -> str:
    """The target's vector width; panel blocks of 64 rows of x in at most 8 vectors (one
    accumulator each; with 16 lanes, 4 panels of 2 chains), so that each stored value,
    broadcast, meets 64 rows; and, below 16 lanes, the panel nest's prefetch of each weight
    row's next k-tile and hybrid's dense tiles over the panels (both measured on Zen 3 only:
    the AVX-512 nests are as they were)."""
    width = vector_registers(features)[0]
    narrow = str(width < 16).lower()
    return (f"{{width={width} panels={min(8, 64 // width)} prefetch={narrow} dense_panels={narrow} "
            f"bf16_panels={str(_bf16(features)).lower()}}}")  # fmt: skip


def _bf16(features: frozenset[str]) -> bool:
    """Whether the microkernel steps with vdpbf16ps: AVX-512 BF16, on 16-lane vectors."""
    return has_avx512bf16(features) and vector_registers(features)[0] == 16


def pipeline_passes(upto: Stage, tile: tuple[int, ...] = (), check_bounds: bool = False,
                    features: frozenset[str] | None = None, after: Stage = Stage.IR,
                    native_threads: bool = True) -> list[str]:  # fmt: skip
    """The CPU pipeline's passes with their options, from the stage after `after` up to
    `upto`, for a CPU with `features` (default: the host's); `check_bounds` guards every
    access of the loop nests. Without `native_threads`, no loop calls the JIT's thread
    pool (code that leaves the process, which has no pool to link)."""
    features = host_features() if features is None else features
    names = [p for stage in Stage if after < stage <= upto for p in STAGE_PASSES[stage]
             if native_threads or p not in NATIVE_THREAD_PASSES]  # fmt: skip
    amx = {kind: "amx-tile" in features and feature in features for kind, feature in AMX_KINDS.items()}
    if any(amx.values()) and "tdsl-microkernel" in names:
        names.insert(names.index("tdsl-microkernel"), "tdsl-amx")
    if check_bounds and after < Stage.PTR <= upto:
        names.insert(names.index(STAGE_PASSES[Stage.PTR][0]), "check-bounds")
    options = {
        "tdsl-amx": "{" + " ".join(f"{kind}={str(on).lower()}" for kind, on in amx.items()) + "}",
        "tdsl-microkernel": microkernel_options(features).removesuffix("}") + f" bf16={str(_bf16(features)).lower()}}}",
        "tdsl-vectorize-quant": quant_options(features).removesuffix("}")
        + f" bf16_panels={str(_bf16(features)).lower()}}}",
        "tdsl-vectorize-integer": integer_options(features),
        "tdsl-vectorize-sparse": sparse_options(features),
        "tdsl-vectorize-elementwise": f"{{width={vector_registers(features)[0]}}}",
    }
    if tile:
        options["tdsl-tile"] = f"{{sizes={','.join(map(str, tile))}}}"
    return [p + options.get(p, "") for p in names]


def pipeline_spec(upto: Stage, tile: tuple[int, ...] = (), check_bounds: bool = False,
                  features: frozenset[str] | None = None, native_threads: bool = True) -> str:  # fmt: skip
    """pipeline_passes up to `upto`, as one spec."""
    return ",".join(pipeline_passes(upto, tile, check_bounds, features, native_threads=native_threads))


def accel_pipeline_spec(bind: dict[str, int], machine: str = "", tile: tuple[int, ...] = ()) -> str:
    """The accelerator's pipeline: the tensor-level passes with every size symbol
    bound, accel tiles instead of CPU ones, then the program and its tokens."""
    binding = ",".join(f'"{k}={v}"' for k, v in bind.items())
    option = f'{{machine="{machine}"}}' if machine else ""
    names = [f"tdsl-infer-shapes{{bind={binding}}}" if p == "tdsl-infer-shapes" and bind else p
             for p in STAGE_PASSES[Stage.OPT] if p not in CPU_ONLY]  # fmt: skip
    sizes = f"{{sizes={','.join(map(str, tile))}}}" if tile else option
    return ",".join([*names, f"accel-tile{sizes}", f"convert-tdsl-to-accel{option}", "accel-schedule"])


def gpu_pipeline_spec(tile_options: str = "") -> str:
    """The GPU target's pipeline: the tensor-level passes, GPU block tiles instead of CPU
    ones (gpu-tile checks that the target runs each kernel); backends/gpu builds the kernel."""
    return ",".join([*(p for p in STAGE_PASSES[Stage.OPT] if p != "tdsl-tile"), f"gpu-tile{tile_options}"])


VECTORIZERS = ("tdsl-vectorize-quant", "tdsl-microkernel", "tdsl-vectorize-integer", "tdsl-vectorize-sparse",
               "tdsl-vectorize-elementwise")  # fmt: skip
"""The CPU's vector kernels: the GPU's SIMT path runs the scalar loop nests of tdsl-lower-to-loops."""
SIMT_TILE = (1, 64, 1024)
"""The SIMT path's product tiles: one row of x per iteration of the parallel loop, one thread's."""


def simt_pipeline_spec() -> str:
    """The GPU's generic SIMT path after gpu_pipeline_spec() (backends/gpu/simt.py): the CPU
    pipeline's loop-level stages without its vector kernels, device math, the pointer
    stage without outlining or the native thread pool, then the loops mapped onto a block."""
    loops = [p for p in STAGE_PASSES[Stage.LOOPS] if p not in VECTORIZERS]
    to_ptr = [p for p in STAGE_PASSES[Stage.PTR] if p not in ("outline-loop-nests", "parallelize-loops")]
    tile = f"tdsl-tile{{sizes={','.join(map(str, SIMT_TILE))}}}"
    return ",".join([tile, *loops, "gpu-expand-math", *to_ptr, "gpu-simt-map"])


PassCallback = Callable[[ModulePass, ModuleOp, float], None]
VERIFY_ENV = "STOICC_VERIFY"


def run_passes(module: ModuleOp, spec: str, after_pass: PassCallback | None = None,
               verify_each: bool = False) -> ModuleOp:  # fmt: skip
    """Run a comma-separated pass pipeline in place. With `verify_each`, verify the IR
    after every pass (what `stoicc opt -p` does, to locate a pass that breaks the IR);
    with `verify_each` or STOICC_VERIFY=1 (the test suite's setting), the result. A
    compile skips both, as clang's release builds skip LLVM's verifier: the final
    verification alone cost a tenth of a cold compile, it finds only compiler bugs, and
    LLVM's verifier still checks the IR that reaches it."""
    start = time.perf_counter()

    def callback(prev: ModulePass | None, mod: ModuleOp, _next: ModulePass | None) -> None:
        nonlocal start
        if verify_each:
            verify(mod)
        if prev is not None:
            elapsed = time.perf_counter() - start
            log_elapsed(log, prev.name, elapsed)
            if after_pass is not None:
                after_pass(prev, mod, elapsed)
        start = time.perf_counter()

    with paused_gc():
        PassPipeline.parse_spec(all_passes(), spec, callback).apply(context(), module)
        if not verify_each and os.environ.get(VERIFY_ENV) == "1":  # verify_each: the callback did
            with timed(log, "verify"):
                verify(module)
    return module


@contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic collector off for the `with` body, then as it was. The IR is one
    large graph of cyclic objects (ops, blocks, uses point at each other), which every
    full collection traverses: a quarter of the passes' time at 160 statements, and a
    growing share with length. A compile's garbage is bounded by the program limits
    (stoicc_py.limits) and collected once the collector runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def verify(module: ModuleOp) -> None:
    """What module.verify() checks, in time linear in the IR's size. xDSL's
    Operation.verify counts its region's blocks (a walk of the region) for the last op
    of every block: O(blocks^2) in a kernel lowered to branches, a few blocks per loop.
    Those ops get the same checks here, without the count; all others xDSL's own."""
    for op in module.walk():
        for block in (b for region in op.regions for b in region.blocks):
            if block.first_op is None:
                block.verify()  # an empty block: only whether its region allows one
        block = op.parent
        region = None if block is None else block.parent
        if block is None or region is None or block.last_op is not op or region.first_block is region.last_block:
            op.verify(verify_nested_ops=False)
        else:
            _verify_branching_terminator(op)


def _verify_branching_terminator(op: Operation) -> None:
    """Operation.verify's checks of the last op of a block in a multi-block region."""
    if any(isinstance(v, ErasedSSAValue) for v in op.operands):
        raise ValueError("Erased SSA value is used by the operation")
    if any(s.parent is not op.parent_region() for s in op.successors):
        raise VerifyException(f"Operation {op.name} is branching to a block of a different region")
    if not op.has_trait(IsTerminator):
        raise VerifyException(f"Operation {op.name} terminates block in multi-block region but is not a terminator")
    try:
        op.verify_()
    except VerifyException as err:
        op.emit_error(f"Operation does not verify: {err}", err)
