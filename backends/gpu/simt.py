"""The GPU target's generic SIMT path: what the tensor-core kernels do not take
(passes/gpu_tile.py decides) runs as the CPU pipeline's own loop nests, mapped onto one
thread block (passes/gpu_simt_map.py) and translated by backends/llvm/translate.py for
NVPTX: docs/gpu.md, "The generic SIMT path"."""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp

from stoicc_py.backends.gpu.target import DATA_LAYOUT, TRIPLE
from stoicc_py.backends.llvm.translate import translate

THREADS = 256
"""Threads of the one block a call launches: the parallel loops' iterations are dealt among them."""
TID, NTID = "llvm.nvvm.read.ptx.sreg.tid.x", "llvm.nvvm.read.ptx.sreg.ntid.x"
BARRIER = "llvm.nvvm.barrier0"
MALLOC = "malloc"
"""The device heap's allocator (the PTX JIT resolves it, and `free`: DEVICE_RUNTIME in target.py)."""
SLOT_BYTES = 8
"""A temporary's slot in the kernel's last parameter: its address, from thread 0 to the others."""
SLOTS = "gpu.slots"
"""Integer attribute on a mapped kernel: how many temporaries' slots its `slots` parameter holds."""
KERNEL_CC = "ptx_kernel"
HEAP_BYTES = 256 << 20
"""The device heap the driver reserves before the first SIMT kernel runs (CUDA's default is 8 MB)."""


def simt_llvm_ir(module: ModuleOp) -> str:
    """LLVM IR for NVPTX of a module after the SIMT pipeline (pipeline.simt_pipeline_spec)."""
    return translate(module, TRIPLE, DATA_LAYOUT)
