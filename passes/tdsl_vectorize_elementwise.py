"""tdsl-vectorize-elementwise: f32 elementwise ops, reductions and softmax along the
innermost (contiguous) axis become vector loops.

Each row of the output (every index of the leading axes) is computed `width` lanes at a
time by vector loads and stores along the innermost axis, then a scalar tail for the
last `n % width` elements; an operand broadcast along that axis is loaded once per row
and splat. Reductions keep a vector accumulator, reduced across lanes once per row,
then fold the tail. Softmax takes three such sweeps of its row (max; exp(x - max),
stored and summed; scale by 1 / sum), exp by the polynomial of
`codegen.loop_builder.vector_exp` in the vector part and in the tail alike. The
elementwise bodies are those of the scalar lowering (`codegen.loop_builder.SCALAR`),
applied to vectors. Whatever is left (other axes, integers, bool, gelu and tanh,
which are libm calls) tdsl-lower-to-loops lowers element by element.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import MemRefType, ModuleOp, VectorType, f32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern

from stoicc_py.codegen.loop_builder import VECTOR_UNARY, LoopBuilder, binary, unary, vector_exp
from stoicc_py.codegen.register_blocks import floor_to
from stoicc_py.codegen.remarks import decline
from stoicc_py.dialects import tdsl
from stoicc_py.passes.tdsl_lower_to_loops import before

Step = Callable[[LoopBuilder, SSAValue, bool, Sequence[SSAValue]], Sequence[SSAValue]]
"""One step along a row: (builder, column, whether it is `width` lanes, accumulators) -> new accumulators."""


def _f32_memref(value: SSAValue | None) -> bool:
    return isinstance(value, SSAValue) and isinstance(value.type, MemRefType) and value.type.element_type == f32


def _rank(value: SSAValue) -> int:
    assert isinstance(value.type, MemRefType)
    return value.type.get_num_dims()


@dataclass(frozen=True)
class Row:
    """One row of an innermost axis of length `n`, stepped `width` lanes at a time."""

    width: int
    n: SSAValue

    @property
    def vec(self) -> VectorType:
        return VectorType(f32, [self.width])

    def sweep(self, b: LoopBuilder, step: Step, vector_init: Sequence[SSAValue] = (),
              lanes: Callable[[LoopBuilder, Sequence[SSAValue]], Sequence[SSAValue]] = lambda b, acc: acc,
              ) -> Sequence[SSAValue]:  # fmt: skip
        """Vector steps over whole `width`-lane blocks, `lanes` folding the vector
        accumulators into scalars, then scalar steps over the tail."""
        end = floor_to(b, b.index(0), self.n, self.width)
        acc = b.loop(b.index(0), end, b.index(self.width), lambda i, j, a: step(i, j, True, a), vector_init, name="j")
        return b.loop(end, self.n, b.index(1), lambda i, j, a: step(i, j, False, a), lanes(b, acc), name="j")

    def load(self, b: LoopBuilder, buf: SSAValue, ivs: Sequence[SSAValue], vec: bool) -> SSAValue:
        """The element (or `width` lanes) of `buf` that broadcasting pairs with the
        output's `ivs`; along a broadcast innermost axis one element, splat."""
        assert isinstance(buf.type, MemRefType)
        indices = b.broadcast_indices(buf, ivs)
        shape = buf.type.get_shape()
        if not vec:
            return b.load(buf, indices)
        if not shape or shape[-1] == 1:
            return b.splat_value(b.load(buf, indices), self.width)
        return b.vload(buf, indices, self.width)

    def store(self, b: LoopBuilder, value: SSAValue, buf: SSAValue, ivs: Sequence[SSAValue], vec: bool) -> None:
        if vec:
            b.vstore(value, buf, ivs)
        else:
            b.store(value, buf, ivs)


def _rows(op: Operation, src: SSAValue, width: int, body: Callable[[LoopBuilder, Row, list[SSAValue]], None]) -> None:
    """A nest over the leading axes of `src`; `body` computes one row of its innermost axis."""
    b = before(op)
    sizes = b.sizes(src)
    row = Row(width, sizes[-1])
    b.nest(sizes[:-1], lambda inner, ivs: body(inner, row, ivs))


def _reduce_row(b: LoopBuilder, row: Row, src: SSAValue, outer: list[SSAValue], combine: str,
                map_: Callable[[LoopBuilder, SSAValue], SSAValue] = lambda b, x: x) -> SSAValue:  # fmt: skip
    """The sum or max of map_(src[outer, j]) over the row."""
    identity = 0.0 if combine == "sum" else float("-inf")

    def step(b: LoopBuilder, j: SSAValue, vec: bool, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
        x = map_(b, row.load(b, src, [*outer, j], vec))
        return [b.fadd(acc[0], x, fast=True) if combine == "sum" else b.fmax(acc[0], x)]

    init = b.splat(row.vec, identity)
    (total,) = row.sweep(b, step, [init], lambda b, acc: [b.reduce_lanes(acc[0], combine)])
    return total


NAME = "tdsl-vectorize-elementwise"


@dataclass
class VectorizeElementwise(RewritePattern):
    width: int

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if isinstance(op, tdsl.UnaryOp):
            if type(op) not in VECTOR_UNARY:
                decline(op, f"{NAME}: {op.name.removeprefix('tdsl.')} is a libm call per element")
                return
        elif not isinstance(op, tdsl.ElementwiseBinaryOp):
            return
        elif isinstance(op, tdsl.CompareOp):
            decline(op, f"{NAME}: comparisons have no vector form yet")
            return
        out, inputs = op.out, op.tensor_operands()
        if out is None:
            return
        if not (_f32_memref(out) and all(_f32_memref(x) for x in inputs)):
            decline(op, f"{NAME}: its kernels take f32, bf16 or f16 operands and results")
            return
        if _rank(out) == 0:
            return

        def row(b: LoopBuilder, row: Row, outer: list[SSAValue]) -> None:
            def step(b: LoopBuilder, j: SSAValue, vec: bool, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
                ivs = [*outer, j]
                args = [row.load(b, x, ivs, vec) for x in inputs]
                value = unary(b, type(op), *args) if isinstance(op, tdsl.UnaryOp) else binary(b, type(op), *args)
                row.store(b, value, out, ivs, vec)
                return ()

            row.sweep(b, step)

        _rows(op, out, self.width, row)
        rewriter.erase(op)


def _innermost_f32(op: tdsl.AxisOp) -> bool:
    """Whether `op` works along the innermost axis of an f32 buffer, into an f32 buffer."""
    return (
        _f32_memref(op.out) and _f32_memref(op.input) and op.axis_index == _rank(op.input) - 1
    )


@dataclass
class VectorizeReduce(RewritePattern):
    width: int

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, tdsl.ReduceOp):
            return
        if not _innermost_f32(op):
            decline(op, f"{NAME}: only f32 reductions along the innermost axis are vectorised")
            return
        out = op.out
        assert out is not None
        combine = "max" if isinstance(op, tdsl.MaxOp) else "sum"

        def row(b: LoopBuilder, row: Row, outer: list[SSAValue]) -> None:
            value = _reduce_row(b, row, op.input, outer, combine)
            if isinstance(op, tdsl.MeanOp):
                value = b.fdiv(value, b.index_to_f32(row.n))
            b.store(value, out, [*outer, b.index(0)] if op.keeps_dims else outer)

        _rows(op, op.input, self.width, row)
        rewriter.erase(op)


@dataclass
class VectorizeSoftmax(RewritePattern):
    width: int

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, tdsl.SoftmaxOp):
            return
        if not _innermost_f32(op):
            decline(op, f"{NAME}: only an f32 softmax along the innermost axis is vectorised")
            return
        out, src = op.out, op.input
        assert out is not None

        def row(b: LoopBuilder, row: Row, outer: list[SSAValue]) -> None:
            top = _reduce_row(b, row, src, outer, "max")

            def exp_step(b: LoopBuilder, j: SSAValue, vec: bool, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
                x = row.load(b, src, [*outer, j], vec)
                e = vector_exp(b, b.insert(arith.SubfOp(x, b.splat_value(top, row.width) if vec else top)))
                row.store(b, e, out, [*outer, j], vec)
                return [b.fadd(acc[0], e, fast=True)]

            init = b.splat(row.vec, 0.0)
            (total,) = row.sweep(b, exp_step, [init], lambda b, acc: [b.reduce_lanes(acc[0], "sum")])
            scale = b.fdiv(b.f32(1.0), total)

            def scale_step(b: LoopBuilder, j: SSAValue, vec: bool, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
                ivs = [*outer, j]
                row.store(b, b.fmul(row.load(b, out, ivs, vec), b.splat_value(scale, row.width) if vec else scale),
                          out, ivs, vec)  # fmt: skip
                return ()

            row.sweep(b, scale_step)

        _rows(op, src, self.width, row)
        rewriter.erase(op)


@dataclass(frozen=True)
class VectorizeElementwisePass(ModulePass):
    name = NAME

    width: int = 16

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for pattern in (VectorizeElementwise(self.width), VectorizeReduce(self.width), VectorizeSoftmax(self.width)):
            PatternRewriteWalker(pattern, apply_recursively=False).rewrite_module(op)
