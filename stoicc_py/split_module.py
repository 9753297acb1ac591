"""A module's functions cut into pieces of bounded size, each piece a module of its own
that the rest of the pipeline can lower and LLVM can compile while the next is lowered.

A piece holds whole functions, in the module's order, and the declarations that its
calls need: a runtime function's declaration is copied; a function that another piece
defines is declared, and its definition becomes public, since a private (internal)
function is seen by its own object only.
"""

from __future__ import annotations

from xdsl.dialects import func, llvm
from xdsl.dialects.builtin import ModuleOp

Group = list[tuple[func.FuncOp, set[str]]]
"""A piece's functions, each with the names it calls."""


def split_functions(module: ModuleOp, piece_ops: int) -> list[ModuleOp]:
    """`module`'s functions in pieces of about `piece_ops` ops or more (a larger function
    is a piece of its own), which move out of `module` (its declarations stay); [module]
    itself where it holds anything besides functions or fits one piece."""
    if not all(isinstance(op, func.FuncOp) for op in module.ops):
        return [module]
    groups = _groups(module, piece_ops)
    if len(groups) == 1:
        return [module]
    declared = {fn.sym_name.data: fn for fn in module.ops if isinstance(fn, func.FuncOp) and fn.is_declaration}
    defined = {fn.sym_name.data: (i, fn) for i, group in enumerate(groups) for fn, _ in group}
    pieces = []
    for i, group in enumerate(groups):
        piece = ModuleOp([], attributes=dict(module.attributes))
        for callee in sorted({c for _, callees in group for c in callees}):
            if callee in declared:
                piece.body.block.add_op(declared[callee].clone())
            elif callee in defined and (home := defined[callee])[0] != i:
                home[1].sym_visibility = None
                inputs, outputs = home[1].function_type.inputs.data, home[1].function_type.outputs.data
                piece.body.block.add_op(func.FuncOp.external(callee, inputs, outputs))
        for fn, _ in group:
            fn.detach()
            piece.body.block.add_op(fn)
        pieces.append(piece)
    return pieces


def _groups(module: ModuleOp, piece_ops: int) -> list[Group]:
    """The module's defined functions, in order, cut after each group reaches `piece_ops` ops."""
    groups: list[Group] = [[]]
    size = 0
    for fn in module.ops:
        if not isinstance(fn, func.FuncOp) or fn.is_declaration:
            continue
        if size >= piece_ops:
            groups.append([])
            size = 0
        callees: set[str] = set()
        for op in fn.walk():
            size += 1
            if isinstance(op, func.CallOp):
                callees.add(op.callee.string_value())
            elif isinstance(op, llvm.AddressOfOp):  # parallelize-loops' block functions
                callees.add(op.global_name.string_value())
        groups[-1].append((fn, callees))
    return groups
