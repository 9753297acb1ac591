"""hoist-constants: one `arith.constant` per value and type in each function, at its entry.

The loop-level passes create the constants they need where they need them (the
vectoriser's lane offsets, each nest's bounds and strides), so a kernel holds the same
constant many times: a third of sparse.tdsl's loop-level ops were constants. Every
later pass converts each copy again. MLIR's canonicalizer uniques and hoists constants
the same way (its OperationFolder); CSE would too, at the cost of hashing every op.
Constants are keyed by their attribute, which compares floats by their bits (-0.0 and
0.0 stay apart), and their result type. Ops isolated from above keep their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Attribute, Operation
from xdsl.passes import ModulePass
from xdsl.traits import IsolatedFromAbove


def _constants(op: Operation) -> Iterator[arith.ConstantOp]:
    """The constants in `op`'s regions, not those of ops isolated from above."""
    for region in op.regions:
        for block in region.blocks:
            for inner in block.ops:
                if isinstance(inner, arith.ConstantOp):
                    yield inner
                elif inner.regions and not inner.has_trait(IsolatedFromAbove):
                    yield from _constants(inner)


def hoist(fn: func.FuncOp) -> None:
    entry = fn.body.blocks.first
    if entry is None:
        return
    kept: dict[tuple[Attribute, Attribute], arith.ConstantOp] = {}
    for const in list(_constants(fn)):
        first = kept.setdefault((const.value, const.result.type), const)
        if first is not const:
            const.result.replace_all_uses_with(first.result)
            const.detach()
            const.erase()
    for const in kept.values():
        const.detach()
    if entry.first_op is None:
        entry.add_ops(kept.values())
    else:
        entry.insert_ops_before(list(kept.values()), entry.first_op)


@dataclass(frozen=True)
class HoistConstants(ModulePass):
    name = "hoist-constants"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                hoist(fn)
