"""stoicc_py: a compiler for sparse and quantized tensor kernels.

prog = stoicc_py.compile("examples/mlp.tdsl")
y = prog.mlp(x, w1, b1, w2)          # native code, on numpy arrays
y_ref = prog.mlp.reference(x, w1, b1, w2)
w_packed = stoicc_py.pack(w, "nm(2, 4)")
stoicc_py.set_threads(4)             # threads per call of a row-parallel kernel (prog.mlp.threads: its own)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stoicc_py.api import Kernel, Program, compile
    from stoicc_py.diagnostics import CompileError
    from stoicc_py.packing import PackedTensor, pack
    from stoicc_py.parallel import get_threads, set_threads

__all__ = ["CompileError", "Kernel", "PackedTensor", "Program", "compile", "get_threads", "pack", "set_threads"]
__version__ = "0.1.0"

# Imported on first use, so that tools which only need the dialects (xdsl-opt
# through the xdsl.universe entry point) do not load the whole compiler.
_HOME = {
    "CompileError": "stoicc_py.diagnostics",
    "Kernel": "stoicc_py.api",
    "Program": "stoicc_py.api",
    "compile": "stoicc_py.api",
    "PackedTensor": "stoicc_py.packing",
    "pack": "stoicc_py.packing",
    "get_threads": "stoicc_py.parallel",
    "set_threads": "stoicc_py.parallel",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'stoicc_py' has no attribute '{name}'")
