"""tdsl-unbatch: a batched matrix product becomes 2-D products on views of its buffers.

A bufferized product whose operands have leading (batch) dims, e.g.
`[9, T, 64] x [9, S, 64] -> [9, T, S]`, becomes a loop nest over the batch in which
a rank-2 product of the same kind reads and writes contiguous views
(`memref.reinterpret_cast`, no copy) of one batch of each operand; a batch dim of
size 1 is broadcast (its view is the same for every batch). Where the rhs has no
batch dims (a linear layer's weight, in any layout), the rows of every batch are
one matrix: x [B, M, K] is viewed as [B*M, K] and one product covers them all.
The 2-D products then take the fast paths of the passes that follow
(tdsl-microkernel, the vectorisers, tdsl-lower-to-loops).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, ModuleOp
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern

from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.diagnostics import op_error
from stoicc_py.dialects import tdsl
from stoicc_py.passes.tdsl_lower_to_loops import before


def _shape(value: SSAValue) -> tuple[int, ...]:
    return tuple(value.type.get_shape()) if isinstance(value.type, MemRefType) else ()


def _rows_view(b: LoopBuilder, buf: SSAValue) -> SSAValue:
    """buf [..., M, K] as the matrix [(...)*M, K]."""
    sizes, shape = b.sizes(buf), _shape(buf)
    rows = sizes[0]
    for size in sizes[1:-1]:
        rows = b.mul(rows, size)
    static_rows = DYNAMIC_INDEX if any(d < 0 for d in shape[:-1]) else math.prod(shape[:-1])
    return b.view(buf, b.index(0), [rows, sizes[-1]], [static_rows, shape[-1]])


def _batch_view(b: LoopBuilder, buf: SSAValue, batch: Sequence[SSAValue]) -> SSAValue:
    """The last two dims of `buf` at the batch indices `batch` (those of the result,
    aligned at the right; a dim of size 1 broadcasts). A value of rank 2 or less is itself."""
    shape = _shape(buf)
    if len(shape) <= 2:
        return buf
    sizes = b.sizes(buf)
    ivs = list(batch[len(batch) - (len(shape) - 2) :])
    offset = b.index(0)
    for axis, iv in enumerate(ivs):  # offset = ((i0 * s1 + i1) * s2 + ...) * M * N
        offset = b.mul(offset, sizes[axis])
        if shape[axis] != 1:
            offset = b.add(offset, iv)
    offset = b.mul(b.mul(offset, sizes[-2]), sizes[-1])
    return b.view(buf, offset, sizes[-2:], shape[-2:])


@dataclass
class UnbatchContraction(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.ContractionOp, rewriter: PatternRewriter, /):
        out = op.out
        if out is None or len(_shape(out)) <= 2:
            return
        if not isinstance(op.lhs.type, MemRefType):
            raise op_error(op, "a batched product needs dense activations (packed ones are rank 2)")
        flat = len(_shape(op.rhs)) <= 2 and (op.bias is None or len(_shape(op.bias)) <= 1)
        if not flat and not isinstance(op.rhs.type, MemRefType):
            raise op_error(op, "a batched product with a packed weight takes a bias of rank 1 at most")
        b = before(op)
        attributes = dict(op.attributes)

        def emit(b: LoopBuilder, lhs: SSAValue, rhs: SSAValue, bias: SSAValue | None, into: SSAValue) -> None:
            operands = [[lhs], [rhs], [bias] if bias is not None else [], [into]]
            new = type(op).build(operands=operands, result_types=[[]], attributes=attributes)
            new.location = op.location
            b.b.insert(new)

        if flat:  # a rank-2 (or packed) rhs: every batch's rows at once
            emit(b, _rows_view(b, op.lhs), op.rhs, op.bias, _rows_view(b, out))
        else:
            def batch(b: LoopBuilder, ivs: list[SSAValue]) -> None:
                views = [_batch_view(b, v, ivs) if v is not None else None for v in (op.lhs, op.rhs, op.bias, out)]
                lhs, rhs, bias, into = views
                assert lhs is not None and rhs is not None and into is not None
                emit(b, lhs, rhs, bias, into)

            b.nest(b.sizes(out)[:-2], batch, names="bcdefg")
        rewriter.erase(op)


@dataclass(frozen=True)
class Unbatch(ModulePass):
    name = "tdsl-unbatch"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(UnbatchContraction(), apply_recursively=False).rewrite_module(op)
