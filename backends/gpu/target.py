"""The GPU that kernels are generated for: NVPTX through llvmlite, and the tensor-core
instruction shapes the kernels use (PTX ISA, "Warp-level matrix multiply-accumulate")."""

from __future__ import annotations

import re
from functools import cache

import llvmlite.binding as llvm

TRIPLE = "nvptx64-nvidia-cuda"
ARCH = "sm_90"
ARCH_WGMMA = "sm_90a"
"""Hopper's architecture-specific target: wgmma (the staged kernel's warpgroup variant) needs it."""
PTX_FEATURES = "+ptx85"  # PTX 8.5: mma.sp::ordered_metadata; CUDA 12.5+ drivers load it

DATA_LAYOUT = "e-p3:32:32-i64:64-i128:128-v16:16-v32:32-n16:32:64"
"""NVPTX's 64-bit layout with 32-bit shared-memory pointers (address space 3)."""

WARP = 32
WARPS = 4
"""Warps per block: each takes its own 16-row slices of the weight."""

MMA_DENSE = (16, 8, 16)
"""mma.sync.m16n8k16 (f16/bf16 in, f32 accumulators): [weight rows, x rows, k] per instruction."""
MMA_SPARSE = (16, 8, 32)
"""mma.sp.m16n8k32: 16 weight rows of 32 dense k, stored as 16 (2:4), times 8 rows of x."""

GPU_DTYPES = ("f16", "bf16")
DEVICE_RUNTIME = ("malloc", "free")
"""External functions that the driver's PTX JIT resolves (the device heap: the SIMT path's temporaries)."""


@cache
def _initialized() -> None:
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    # 32-bit shared-memory addresses in the PTX (DATA_LAYOUT's p3:32), as nvcc writes them:
    # one register a shared address instead of two (the staged kernel holds several)
    llvm.set_option("", "--nvptx-short-ptr")


def target_machine(arch: str = ARCH) -> llvm.TargetMachine:
    _initialized()
    return llvm.Target.from_triple(TRIPLE).create_target_machine(cpu=arch, features=PTX_FEATURES, opt=3)


def optimized(llvm_ir: str, speed_level: int = 3, unroll: bool = True, arch: str = ARCH) -> llvm.ModuleRef:
    """The module parsed, verified and optimised for the GPU: at O3 for the tensor-core
    kernels (unrolls the k-loop's fragment loads, folds the index arithmetic the kernel
    builder writes plainly); the SIMT path's scalar nests at O2 without unrolling (O3
    took 6 s of LLVM for the decoder layer's, O2 1.8 s)."""
    module = llvm.parse_assembly(llvm_ir)
    module.verify()
    tuning = llvm.create_pipeline_tuning_options(speed_level=speed_level)
    tuning.loop_unrolling = unroll
    builder = llvm.create_pass_builder(target_machine(arch), tuning)
    builder.getModulePassManager().run(module, builder)
    return module


def emit_ptx(llvm_ir: str, speed_level: int = 3, unroll: bool = True, arch: str = ARCH) -> str:
    """PTX text of LLVM IR for the GPU (`arch`: ARCH_WGMMA for wgmma). A call that NVPTX could not lower (an intrinsic
    LLVM does not know becomes an external function) is an error here, not when the
    driver links the module."""
    ptx = target_machine(arch).emit_assembly(optimized(llvm_ir, speed_level, unroll, arch))
    for name in re.findall(r"\.extern \.func\s+(?:\([^)]*\)\s*)?(\w+)", ptx):
        if name not in DEVICE_RUNTIME:
            raise ValueError(f"the GPU kernel calls an external function NVPTX cannot lower: {name}")
    return ptx
