"""stoicc_py: a compiler for sparse and quantized tensor kernels.

prog = stoicc_py.compile("examples/mlp.tdsl")
y = prog.mlp(x, w1, b1, w2)          # native code, on numpy arrays
y_ref = prog.mlp.reference(x, w1, b1, w2)
"""

from stoicc_py.api import Kernel, Program, compile
from stoicc_py.diagnostics import CompileError

__all__ = ["CompileError", "Kernel", "Program", "compile"]
__version__ = "0.1.0"
