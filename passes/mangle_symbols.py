"""Moves every function the module defines into the compiler's namespace of symbols:
`@k` becomes `@stoicc_k` (stoicc_py.abi.symbol_name), and the calls to it follow.

A kernel's name is the user's. As a bare symbol of the object code it would answer
the calls that the generated code makes to libc and libm (a kernel named `expf`
called by LLVM's own expansion of exp, recursing until the stack overflows) and
clash with the runtime functions that lower-alloc declares and translated math calls
(`aligned_alloc`, `free`, `tanhf`, ...). Declarations, which are those runtime
functions, keep their names; no runtime name starts with the prefix.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, llvm
from xdsl.dialects.builtin import ModuleOp, StringAttr, SymbolRefAttr
from xdsl.passes import ModulePass
from xdsl.traits import SymbolTable
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.abi import symbol_name


@dataclass(frozen=True)
class MangleSymbols(ModulePass):
    name = "mangle-symbols"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        renamed: dict[str, str] = {}
        for fn in op.ops:
            if isinstance(fn, func.FuncOp) and not fn.is_declaration:
                renamed[fn.sym_name.data] = symbol_name(fn.sym_name.data)
                fn.sym_name = StringAttr(renamed[fn.sym_name.data])
        for call in op.walk():
            if isinstance(call, func.CallOp) and (new := renamed.get(call.callee.string_value())):
                call.callee = SymbolRefAttr(new)


def needs_declaration(module: ModuleOp, runtime_function: str, pass_name: str) -> bool:
    """Whether the runtime function must still be declared in `module`; a function
    the module defines under its name (a kernel not yet mangled) is an error."""
    found = SymbolTable.lookup_symbol(module, runtime_function)
    if found is None:
        return True
    if isinstance(found, func.FuncOp | llvm.FuncOp) and found.body.blocks:
        raise DiagnosticException(
            f"{pass_name}: @{runtime_function} is defined in this module, but the code calls the C library's;"
            " run mangle-symbols first"
        )
    return False
