"""lower-views: accesses through a contiguous view become accesses of a flat buffer.

A view (`memref.reinterpret_cast` to a row-major memref, as tdsl-unbatch and the
bufferization of `reshape` make) has dynamic sizes that only its operands know:
once it is a pointer (lower-memory-to-ptr), nothing could answer the `memref.dim`
that its strides need. So, while the sizes are at hand, every `memref.dim` of a
view becomes the size, and every load and store (scalar or vector) at indices
(i0, ..., in) becomes one at the row-major linear index of a one-dimensional view
of the same memory, which needs no stride.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, memref, vector
from xdsl.dialects.builtin import DYNAMIC_INDEX, IntegerAttr, MemRefType, ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.codegen.loop_builder import LoopBuilder


def _sizes(b: LoopBuilder, cast: memref.ReinterpretCastOp) -> list[SSAValue]:
    dynamic = iter(cast.sizes)
    return [next(dynamic) if s == DYNAMIC_INDEX else b.index(s) for s in cast.static_sizes.get_values()]


def _linear(b: LoopBuilder, indices: Sequence[SSAValue], sizes: Sequence[SSAValue]) -> SSAValue:
    """((i0 * s1 + i1) * s2 + i2) ..."""
    index = indices[0]
    for iv, size in zip(indices[1:], sizes[1:]):
        index = b.add(b.mul(index, size), iv)
    return index


def _lower(cast: memref.ReinterpretCastOp) -> None:
    b = LoopBuilder(Builder(InsertPoint.after(cast)))
    sizes = _sizes(b, cast)
    assert isinstance(cast.result.type, MemRefType)
    flat_type = MemRefType(cast.result.type.element_type, [DYNAMIC_INDEX])
    total = sizes[0]
    for size in sizes[1:]:
        total = b.mul(total, size)
    flat = b.insert(memref.ReinterpretCastOp.from_dynamic(cast.source, list(cast.offsets), [total], [1], flat_type))
    for use in list(cast.result.uses):
        user = use.operation
        at = LoopBuilder(Builder(InsertPoint.before(user)))
        new: Operation
        match user:
            case memref.DimOp(index=SSAValue(owner=arith.ConstantOp(value=IntegerAttr(value=axis)))):
                Rewriter.replace_op(user, [], [sizes[axis.data]])
                continue
            case memref.LoadOp():
                new = memref.LoadOp.get(flat, [_linear(at, user.indices, sizes)])
            case memref.StoreOp():
                new = memref.StoreOp.get(user.value, flat, [_linear(at, user.indices, sizes)])
            case vector.LoadOp():
                new = vector.LoadOp(flat, [_linear(at, user.indices, sizes)], user.result.type)
            case vector.StoreOp():
                new = vector.StoreOp(user.vector, flat, [_linear(at, user.indices, sizes)])
            case _:
                raise DiagnosticException(f"lower-views: cannot lower a view used by '{user.name}'")
        Rewriter.replace_op(user, new)
    Rewriter.erase_op(cast)


@dataclass(frozen=True)
class LowerViews(ModulePass):
    name = "lower-views"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        views = [v for v in op.walk() if isinstance(v, memref.ReinterpretCastOp) ]
        for view in views:
            _lower(view)
