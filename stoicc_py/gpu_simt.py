"""The GPU target's kernels on the generic SIMT path (backends/gpu/simt.py, docs/gpu.md):
what the tensor-core kernels do not take, as the CPU pipeline's scalar loop nests on one
thread block. A call takes host arrays as a CPU kernel does (its parameters' packed
weights in their codecs' buffers, packed by the same packer), copies them to the
device, launches one block and copies the results back."""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp

from stoicc_py.abi import KernelABI
from stoicc_py.arrays import NUMPY_DTYPES
from stoicc_py.backends.gpu import driver
from stoicc_py.backends.gpu.simt import HEAP_BYTES, SLOT_BYTES, SLOTS, THREADS, simt_llvm_ir
from stoicc_py.backends.gpu.target import emit_ptx
from stoicc_py.kernel import CompiledProgram, KernelBase, bind_symbols, buffers, check_arguments, result_shape
from stoicc_py.pipeline import PassCallback, run_passes, simt_pipeline_spec

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]


class SimtKernel(KernelBase):
    """One kernel on the GPU's SIMT path: `reason` (why not the tensor cores), `opt` (its
    tensor-level IR), `lowered` (after the SIMT pipeline), `llvm_ir()`, `ptx()`; a call
    runs it on device 0."""

    def __init__(self, program: CompiledProgram, abi: KernelABI, opt: ModuleOp, reason: str,
                 after_pass: PassCallback | None = None):  # fmt: skip
        super().__init__(program, abi)
        self.opt, self.reason = opt, reason
        self.lowered = run_passes(opt.clone(), simt_pipeline_spec(), after_pass)
        fn = next(op for op in self.lowered.ops if isinstance(op, func.FuncOp) and op.sym_name.data == abi.symbol)
        slots = fn.attributes[SLOTS]
        assert isinstance(slots, IntegerAttr)  # gpu-simt-map records it
        self.slots = slots.value.data
        self._function: Any = None

    def llvm_ir(self, m: int | None = None) -> str:
        """The kernel's LLVM IR for NVPTX (one schedule for every number of rows: `m` is ignored)."""
        return simt_llvm_ir(self.lowered)

    def ptx(self, m: int | None = None) -> str:
        """The kernel's PTX for sm_90 (llvmlite's NVPTX backend)."""
        return emit_ptx(self.llvm_ir(), speed_level=2, unroll=False)

    def function(self) -> Any:
        if self._function is None:
            log.info("loading the PTX of %s (the SIMT path: one block of %d threads)", self.name, THREADS)
            driver.reserve_heap(HEAP_BYTES)
            self._function = driver.Module(self.ptx()).function(self.abi.symbol)
        return self._function

    def __call__(self, *args: object) -> Array | tuple[Array, ...]:
        """The kernel on host arrays (numpy, or PackedTensors for packed parameters), as a CPU
        kernel's call takes them; the results as numpy arrays."""
        prepared = check_arguments(self.abi, args)
        sizes = bind_symbols(self.abi, prepared)
        inputs = [driver.Buffer.of(a) for a in buffers(prepared)]
        outs = [np.empty(result_shape(r, sizes), NUMPY_DTYPES[r.dtype]) for r in self.abi.results]
        out_buffers = [driver.Buffer(o.nbytes) for o in outs]
        slots = driver.Buffer(SLOT_BYTES * max(1, self.slots))
        pointers = [b.ptr for b in (*inputs, *out_buffers)]
        values = (*pointers, *(sizes[s] for s in self.abi.symbols), slots.ptr)
        types = (*[ctypes.c_void_p] * len(pointers), *[ctypes.c_int64] * len(self.abi.symbols), ctypes.c_void_p)
        driver.launch_with(self.function(), (1, 1, 1), THREADS, values, types)
        for out, buffer in zip(outs, out_buffers):
            buffer.to_host(out)  # a synchronous copy, after the launch on the same stream
        return outs[0] if len(outs) == 1 else tuple(outs)
