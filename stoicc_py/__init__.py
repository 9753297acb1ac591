"""stoicc_py: a compiler for sparse and quantized tensor kernels.

prog = stoicc_py.compile("examples/mlp.tdsl")
y = prog.mlp(x, w1, b1, w2)          # native code, on numpy arrays (or torch CPU tensors, DLPack, buffers)
y_ref = prog.mlp.reference(x, w1, b1, w2)
w_packed = stoicc_py.pack(w, "nm(2, 4)")
w_packed.save("w.safetensors"); w_packed = stoicc_py.load("w.safetensors")   # save_packed/load_packed: many
stoicc_py.set_threads(4)             # threads per call of a row-parallel kernel (prog.mlp.threads: its own)

The stable API is what `__all__` names, and the documented submodules
`stoicc_py.torch` and `stoicc_py.models` (docs/api.md); every other module is private
and may change.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stoicc_py.abi import BufferSpec, ColumnSplit, KernelABI, RowSplit, TensorSpec
    from stoicc_py.accel import AccelKernel, AccelProgram
    from stoicc_py.api import Kernel, Program, compile
    from stoicc_py.backends.accel.isa import Program as MachineProgram
    from stoicc_py.backends.accel.simulator import Report, simulate
    from stoicc_py.diagnostics import CompileError, StoiccWarning
    from stoicc_py.gpu import GpuKernel, GpuProgram
    from stoicc_py.packing import PackedTensor, load, load_packed, pack, save_packed
    from stoicc_py.packing.hybrid_plan import plan_hybrid
    from stoicc_py.parallel import get_threads, set_threads

__all__ = [
    "AccelKernel", "AccelProgram", "BufferSpec", "ColumnSplit", "CompileError", "GpuKernel", "GpuProgram", "Kernel",
    "KernelABI", "MachineProgram", "PackedTensor", "Program", "Report", "RowSplit", "TensorSpec", "compile", "get_threads",
    "load", "load_packed", "pack", "plan_hybrid", "save_packed", "set_threads", "simulate", "StoiccWarning",
]  # fmt: skip

# name -> (module, name there). Imported on first use, so that tools which only need
# the dialects (xdsl-opt through the xdsl.universe entry point) do not load the whole
# compiler, and a CPU program from the cache loads neither xDSL nor the simulator.
_HOME = {
    "__version__": ("stoicc_py.version", "__version__"),
    "compile": ("stoicc_py.api", "compile"),
    "Program": ("stoicc_py.api", "Program"),
    "Kernel": ("stoicc_py.api", "Kernel"),
    "CompileError": ("stoicc_py.diagnostics", "CompileError"),
    "StoiccWarning": ("stoicc_py.diagnostics", "StoiccWarning"),
    "pack": ("stoicc_py.packing", "pack"),
    "PackedTensor": ("stoicc_py.packing", "PackedTensor"),
    "save_packed": ("stoicc_py.packing", "save_packed"),
    "load_packed": ("stoicc_py.packing", "load_packed"),
    "load": ("stoicc_py.packing", "load"),
    "plan_hybrid": ("stoicc_py.packing.hybrid_plan", "plan_hybrid"),
    "get_threads": ("stoicc_py.parallel", "get_threads"),
    "set_threads": ("stoicc_py.parallel", "set_threads"),
    "KernelABI": ("stoicc_py.abi", "KernelABI"),
    "TensorSpec": ("stoicc_py.abi", "TensorSpec"),
    "BufferSpec": ("stoicc_py.abi", "BufferSpec"),
    "RowSplit": ("stoicc_py.abi", "RowSplit"),
    "ColumnSplit": ("stoicc_py.abi", "ColumnSplit"),
    "AccelProgram": ("stoicc_py.accel", "AccelProgram"),
    "AccelKernel": ("stoicc_py.accel", "AccelKernel"),
    "GpuProgram": ("stoicc_py.gpu", "GpuProgram"),
    "GpuKernel": ("stoicc_py.gpu", "GpuKernel"),
    "MachineProgram": ("stoicc_py.backends.accel.isa", "Program"),
    "Report": ("stoicc_py.backends.accel.simulator", "Report"),
    "simulate": ("stoicc_py.backends.accel.simulator", "simulate"),
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        module, attr = _HOME[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'stoicc_py' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
