"""tdsl-lower-to-loops: bufferized tdsl ops become scf.for nests over memrefs.

Elementwise ops loop over the output and load broadcast operands in place; matrix
products become the tiled nest that tdsl-tile chose, with the fused epilogue (bias,
activation) applied to each output tile right after its last k-tile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import MemRefType, ModuleOp
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint

from stoicc_py.codec.uniform import ACTIVATION_CODES
from stoicc_py.codegen import quant_loops, sparse_loops
from stoicc_py.codegen.loop_builder import LoopBuilder, binary, convert, symbol_args, unary
from stoicc_py.codegen.remarks import report
from stoicc_py.diagnostics import op_error
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import AssembleOp, ComposedLayoutAttr, PackedType
from stoicc_py.dialects.quant import BitSplitAttr, SQAttr, UniformQuantAttr
from stoicc_py.dialects.sparse import NMAttr
from stoicc_py.passes.tdsl_tile import TARGET_TILES


def before(op: Operation) -> LoopBuilder:
    return LoopBuilder(Builder(InsertPoint.before(op)))


def _replace_by_nest(op: Operation, buf: SSAValue, body: Callable[[LoopBuilder, list[SSAValue]], None],
                     rewriter: PatternRewriter) -> None:  # fmt: skip
    """Replace `op` by a loop nest over the index space of `buf`."""
    b = before(op)
    b.nest(b.sizes(buf), body)
    rewriter.erase(op)


def _bufferized(op: tdsl.TdslOp) -> SSAValue:
    out = op.out
    if out is None:
        raise op_error(op, f"'{op.name}' must be bufferized (run tdsl-bufferize) before tdsl-lower-to-loops")
    return out


@dataclass
class LowerElementwise(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, tdsl.UnaryOp | tdsl.ElementwiseBinaryOp):
            return
        out = _bufferized(op)
        inputs = op.tensor_operands()

        def body(b: LoopBuilder, ivs: list[SSAValue]) -> None:
            args = [b.broadcast_load(x, ivs) for x in inputs]
            if isinstance(op, tdsl.UnaryOp):
                value = unary(b, type(op), args[0])
            else:
                value = binary(b, type(op), args[0], args[1])
            b.store(value, out, ivs)

        _replace_by_nest(op, out, body, rewriter)


@dataclass
class LowerCast(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.CastOp, rewriter: PatternRewriter, /):
        out = _bufferized(op)
        assert isinstance(out.type, MemRefType)
        to = out.type.element_type
        _replace_by_nest(op, out, lambda b, ivs: b.store(convert(b, b.load(op.input, ivs), to), out, ivs), rewriter)


@dataclass
class LowerTranspose(RewritePattern):
    """out[ivs] = input[idx] with idx[perm[i]] = ivs[i]."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.TransposeOp, rewriter: PatternRewriter, /):
        out, perm = _bufferized(op), op.permutation
        inverse = [perm.index(axis) for axis in range(len(perm))]
        _replace_by_nest(op, out, lambda b, ivs: b.store(b.load(op.input, [ivs[i] for i in inverse]), out, ivs), rewriter)


@dataclass
class LowerSlice(RewritePattern):
    """out[ivs] = input[ivs + starts], the starts computed from the size symbols."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.SliceOp, rewriter: PatternRewriter, /):
        out = _bufferized(op)
        symbols = symbol_args(op)
        starts = [before(op).dim(start, symbols) for start, _ in op.bounds]
        _replace_by_nest(op, out, lambda b, ivs: b.store(b.load(op.input, list(map(b.add, ivs, starts))), out, ivs),
                         rewriter)  # fmt: skip


@dataclass
class LowerConcat(RewritePattern):
    """Each input copied into the output at the running offset along the axis."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.ConcatOp, rewriter: PatternRewriter, /):
        out, axis = _bufferized(op), op.axis_index
        b = before(op)
        offset = b.index(0)
        for x in op.inputs:

            def copy(b: LoopBuilder, ivs: list[SSAValue], x: SSAValue = x, offset: SSAValue = offset) -> None:
                b.store(b.load(x, ivs), out, [*ivs[:axis], b.add(ivs[axis], offset), *ivs[axis + 1 :]])

            b.nest(b.sizes(x), copy)
            offset = b.add(offset, b.size(x, axis))
        rewriter.erase(op)


@dataclass
class LowerCopy(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: memref.CopyOp, rewriter: PatternRewriter, /):
        dest = op.destination
        _replace_by_nest(op, dest, lambda b, ivs: b.store(b.load(op.source, ivs), dest, ivs), rewriter)


def _reduce_axis(b: LoopBuilder, src: SSAValue, outer: Sequence[SSAValue], axis: int, init: SSAValue,
                 combine: str) -> SSAValue:  # fmt: skip
    """Fold src[outer[:axis], k, outer[axis:]] over k with `combine` ("sum" or "max")."""

    def step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
        x = inner.load(src, [*outer[:axis], k, *outer[axis:]])
        return [inner.fadd(acc[0], x, fast=True) if combine == "sum" else inner.fmax(acc[0], x)]

    (result,) = b.loop(b.index(0), b.size(src, axis), b.index(1), step, [init], name="k")
    return result


@dataclass
class LowerReduce(RewritePattern):
    """Each output element folds its line of the input; mean divides the sum by the
    line's length; with keepdims the output's index along the axis (0) is skipped."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.ReduceOp, rewriter: PatternRewriter, /):
        out, axis = _bufferized(op), op.axis_index
        combine = "max" if isinstance(op, tdsl.MaxOp) else "sum"

        def body(b: LoopBuilder, ivs: list[SSAValue]) -> None:
            outer = ivs[:axis] + ivs[axis + 1 :] if op.keeps_dims else ivs
            init = b.f32(0.0 if combine == "sum" else float("-inf"))
            value = _reduce_axis(b, op.input, outer, axis, init, combine)
            if isinstance(op, tdsl.MeanOp):
                value = b.fdiv(value, b.index_to_f32(b.size(op.input, axis)))
            b.store(value, out, ivs)

        _replace_by_nest(op, out, body, rewriter)


@dataclass
class LowerWhere(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.WhereOp, rewriter: PatternRewriter, /):
        out = _bufferized(op)

        def body(b: LoopBuilder, ivs: list[SSAValue]) -> None:
            cond, lhs, rhs = (b.broadcast_load(x, ivs) for x in (op.cond, op.lhs, op.rhs))
            b.store(b.insert(arith.SelectOp(cond, lhs, rhs)), out, ivs)

        _replace_by_nest(op, out, body, rewriter)


@dataclass
class LowerIota(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.IotaOp, rewriter: PatternRewriter, /):
        out = _bufferized(op)
        element = out.type.element_type  # type: ignore[attr-defined]
        store = lambda b, ivs: b.store(b.insert(arith.IndexCastOp(ivs[op.axis_index], element)), out, ivs)  # noqa: E731
        _replace_by_nest(op, out, store, rewriter)


@dataclass
class LowerDim(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.DimOp, rewriter: PatternRewriter, /):
        out = _bufferized(op)
        b = before(op)
        element = out.type.element_type  # type: ignore[attr-defined]
        b.store(b.insert(arith.IndexCastOp(b.size(op.input, op.axis_index), element)), out, [])
        rewriter.erase(op)


@dataclass
class LowerSoftmax(RewritePattern):
    """Three passes along the axis: max, sum of exp(x - max) (stored), scale by 1/sum."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.SoftmaxOp, rewriter: PatternRewriter, /):
        out, src, axis = _bufferized(op), op.input, op.axis_index

        def body(b: LoopBuilder, outer: list[SSAValue]) -> None:
            at = lambda k: [*outer[:axis], k, *outer[axis:]]  # noqa: E731
            top = _reduce_axis(b, src, outer, axis, b.f32(float("-inf")), "max")

            def exp_step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
                e = inner.exp(inner.insert(arith.SubfOp(inner.load(src, at(k)), top)))
                inner.store(e, out, at(k))
                return [inner.fadd(acc[0], e, fast=True)]

            size = b.size(src, axis)
            (total,) = b.loop(b.index(0), size, b.index(1), exp_step, [b.f32(0.0)], name="k")
            scale = b.fdiv(b.f32(1.0), total)

            def scale_step(inner: LoopBuilder, k: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
                inner.store(inner.fmul(inner.load(out, at(k)), scale), out, at(k))
                return ()

            b.loop(b.index(0), size, b.index(1), scale_step, name="k")

        b = before(op)
        sizes = b.sizes(src)
        b.nest(sizes[:axis] + sizes[axis + 1 :], body)
        rewriter.erase(op)


def span(b: LoopBuilder, start: SSAValue, tile: int, size: SSAValue) -> SSAValue:
    return b.min(b.add(start, b.index(tile)), size)


@dataclass
class LowerContraction(RewritePattern):
    """for i0, j0 tiles: zero the tile; for each k-tile accumulate; then the epilogue."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.ContractionOp, rewriter: PatternRewriter, /):
        out = _bufferized(op)
        if isinstance(op.rhs.type, PackedType):
            _lower_packed(op, out)
            rewriter.erase(op)
            return
        if isinstance(op.lhs.type, PackedType):
            _lower_sq_activations(op, out)
            rewriter.erase(op)
            return
        tm, tn, tk = op.tile_sizes or TARGET_TILES["cpu"][type(op)]
        b = before(op)
        m, k_size = b.size(op.lhs, 0), b.size(op.lhs, 1)
        n = b.size(out, 1)

        def row_tile(b: LoopBuilder, i0: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
            i1 = span(b, i0, tm, m)

            def col_tile(b: LoopBuilder, j0: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
                j1 = span(b, j0, tn, n)
                tile = TileNest(b, out, i0, i1, j0, j1)
                tile.zero()

                def k_tile(b: LoopBuilder, k0: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
                    k1 = span(b, k0, tk, k_size)
                    _accumulate(op, TileNest(b, out, i0, i1, j0, j1), k0, k1)
                    return ()

                b.loop(b.index(0), k_size, b.index(tk), k_tile, name="k0")
                apply_epilogue(op, tile)
                return ()

            b.loop(b.index(0), n, b.index(tn), col_tile, name="j0")
            return ()

        b.loop(b.index(0), m, b.index(tm), row_tile, name="i0")
        rewriter.erase(op)


def apply_epilogue(op: tdsl.ContractionOp, tile: TileNest) -> None:
    if op.bias is not None or op.activation is not None:
        out = tile.out
        tile.each(lambda b, i, j: b.store(_epilogue(op, b, b.load(out, [i, j]), i, j), out, [i, j]))


def _walked(layout: object) -> bool:
    """Whether a weight is read as quantized codes walked group by group (so that
    group scales apply once per group, and int8 activations multiply integers)."""
    return isinstance(layout, UniformQuantAttr | SQAttr) or (
        isinstance(layout, ComposedLayoutAttr) and isinstance(layout.sparse, NMAttr)
    )


def _lower_packed(op: tdsl.ContractionOp, out: SSAValue) -> None:
    """Row blocks of tm rows: compute each quantized dot product, or zero the rows and
    let the sparse format's loop add every stored value's contribution; then apply
    the epilogue."""
    packed = op.rhs.type
    assert isinstance(packed, PackedType)
    layout = packed.layout
    walked = _walked(layout)
    if isinstance(op.lhs.type, PackedType) and not walked:
        raise op_error(op, f"quantized activations need a quantized or N:M-quantized weight, got {layout.summary()}")
    sparse = layout.sparse if isinstance(layout, ComposedLayoutAttr) else layout
    assemble = op.rhs.owner
    if not walked and (not isinstance(assemble, AssembleOp) or type(sparse) not in sparse_loops.FORMATS):
        raise op_error(op, f"cannot lower a product with a weight in layout {layout.summary()}")
    tm = (op.tile_sizes or TARGET_TILES["cpu"][type(op)])[0]
    b = before(op)
    m, n = b.size(out, 0), b.size(out, 1)
    shape = _weight_shape(b, op, n)

    def row_block(b: LoopBuilder, i0: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
        i1 = span(b, i0, tm, m)
        rows = TileNest(b, out, i0, i1, b.index(0), n)
        if walked:
            _quantized_rows(op, rows, shape[1])
        else:
            rows.zero()
            decode = _decoder(op.rhs, layout.quant) if isinstance(layout, ComposedLayoutAttr) else None
            assert isinstance(assemble, AssembleOp)  # not walked: checked above
            block = sparse_loops.RowBlock(op.lhs, out, i0, i1, assemble, packed.storage, shape, decode)
            sparse_loops.FORMATS[type(sparse)](b, block, sparse)
        apply_epilogue(op, rows)
        return ()

    b.loop(b.index(0), m, b.index(tm), row_block, name="i0")


def _weight_shape(b: LoopBuilder, op: tdsl.ContractionOp, n: SSAValue) -> tuple[sparse_loops.Size, sparse_loops.Size]:
    """The packed weight's [rows, cols] of linear(x, w): a symbolic dim is read at run time,
    rows as the output's columns `n`, cols as x's (int8 activations have a static width)."""
    packed, x = op.rhs.type, op.lhs
    assert isinstance(packed, PackedType)
    rows, cols = packed.dims
    width: sparse_loops.Size = cols
    if cols < 0:
        width = x.type.dims[1] if isinstance(x.type, PackedType) else b.size(x, 1)
    return (rows if rows >= 0 else n), width


def _decoder(weight: SSAValue, quant: object) -> sparse_loops.Decode:
    """Stored values of a sparse weight whose values buffers hold quantized codes."""
    assert isinstance(quant, UniformQuantAttr)

    def decode(b: LoopBuilder, prefix: str, lead: list[SSAValue], k: SSAValue) -> SSAValue:
        view = quant_loops.QuantView.of(weight, quant, prefix=prefix)
        return view.value(b, lead, k)

    return decode


def _quantized_rows(op: tdsl.ContractionOp, rows: TileNest, width: sparse_loops.Size) -> None:
    """y[i, n] for the block's rows: f32 activations (weight-only quantization)
    or int8 activations (integer products), summed over the weight's parts; the
    weight's rows have `width` columns."""
    walks = quant_loops.weight_walks(rows.b, op.rhs, width)
    x = quant_loops.QuantView.of(op.lhs) if isinstance(op.lhs.type, PackedType) else None

    def output(b: LoopBuilder, i: SSAValue, n: SSAValue) -> None:
        if x is None:
            parts = [quant_loops.float_row(b, op.lhs, i, walk, n) for walk in walks]
        else:
            parts = [quant_loops.integer_row(b, x, i, walk, n) for walk in walks]
        value = parts[0]
        for part in parts[1:]:
            value = b.fadd(value, part)
        if x is not None and x.per != "group":  # per group: integer_row scaled each group
            value = b.fmul(x.scale(b, i, b.index(0)), value)
        b.store(value, rows.out, [i, n])

    rows.each(output)


def _lower_sq_activations(op: tdsl.ContractionOp, out: SSAValue) -> None:
    """SQ-format activations times an f32 weight: low and high parts in one pass."""
    lhs = op.lhs.type
    assert isinstance(lhs, PackedType)  # the caller's test
    layout = lhs.layout
    if not isinstance(layout, SQAttr) or not op.RHS_TRANSPOSED:
        raise op_error(op, f"a product with {layout.summary()} activations needs a linear weight")
    b = before(op)
    rows = TileNest(b, out, b.index(0), b.size(out, 0), b.index(0), b.size(out, 1))
    rows.each(lambda b, i, n: b.store(quant_loops.sq_activation_row(b, op.lhs, i, op.rhs, n, layout), out, [i, n]))
    apply_epilogue(op, rows)


@dataclass
class LowerQuantize(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.QuantizeOp, rewriter: PatternRewriter, /):
        out = _bufferized(op)
        layout = out.type.layout if isinstance(out.type, PackedType) else None
        if isinstance(layout, BitSplitAttr):  # tdsl-bitsplit-as-int8 took every other use
            raise op_error(op, "the CPU backend reads bit-split activations only as a product's input or as values")
        if isinstance(layout, SQAttr) and layout.low.codes.data == "int8":
            quant_loops.sq_quantize(before(op), op.input, out, layout)
        elif isinstance(layout, UniformQuantAttr) and layout.codes.data in ACTIVATION_CODES:
            quant_loops.quantize(before(op), op.input, out)
        else:
            raise op_error(
                op,
                "the CPU backend quantizes activations to int8 (e.g. int8(per=token)), int7(per=token), bitsplit(int8) "
                "(as int8 per token), or sq(...) with an int8 low part",
            )
        rewriter.erase(op)


@dataclass
class LowerDequantize(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.DequantizeOp, rewriter: PatternRewriter, /):
        quant_loops.dequantize(before(op), op.input, _bufferized(op))
        rewriter.erase(op)


@dataclass
class TileNest:
    """The i0..i1 x j0..j1 block of a contraction's output."""

    b: LoopBuilder
    out: SSAValue
    i0: SSAValue
    i1: SSAValue
    j0: SSAValue
    j1: SSAValue

    def rows(self, body: Callable[[LoopBuilder, SSAValue], None]) -> None:
        def step(b: LoopBuilder, i: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
            body(b, i)
            return ()

        self.b.loop(self.i0, self.i1, self.b.index(1), step, name="i")

    def cols(self, b: LoopBuilder, body: Callable[[LoopBuilder, SSAValue], None]) -> None:
        def step(inner: LoopBuilder, j: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
            body(inner, j)
            return ()

        b.loop(self.j0, self.j1, b.index(1), step, name="j")

    def each(self, body: Callable[[LoopBuilder, SSAValue, SSAValue], None]) -> None:
        self.rows(lambda b, i: self.cols(b, lambda b, j: body(b, i, j)))

    @property
    def element_type(self) -> Attribute:
        """The output's element type (out is a memref)."""
        assert isinstance(self.out.type, MemRefType)
        return self.out.type.element_type

    def zero(self) -> None:
        """Clear the block: the start of an accumulation, in the output's element type."""
        zero = self.b.zero(self.element_type)
        self.each(lambda b, i, j: b.store(zero, self.out, [i, j]))


def _accumulate(op: tdsl.ContractionOp, tile: TileNest, k0: SSAValue, k1: SSAValue) -> None:
    """out[i, j] += sum over k0..k1 of lhs[i, k] * rhs[k, j], with the innermost loop
    along contiguous memory: k for linear (w is [n, k]), j for matmul (b is [k, n]).
    Each step is a mul_add in the output's type: f32, or i32 for i8 operands."""
    lhs, rhs, out = op.lhs, op.rhs, tile.out
    if op.RHS_TRANSPOSED:

        def dot(b: LoopBuilder, i: SSAValue, j: SSAValue) -> None:
            def step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
                return [inner.mul_add(acc[0], inner.load(lhs, [i, k]), inner.load(rhs, [j, k]))]

            (total,) = b.loop(k0, k1, b.index(1), step, [b.load(out, [i, j])], name="k")
            b.store(total, out, [i, j])

        tile.each(dot)
        return

    def row(b: LoopBuilder, i: SSAValue) -> None:
        def k_step(inner: LoopBuilder, k: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
            a = inner.widen(inner.load(lhs, [i, k]), tile.element_type)

            def axpy(b2: LoopBuilder, j: SSAValue) -> None:
                b2.store(b2.mul_add(b2.load(out, [i, j]), a, b2.load(rhs, [k, j])), out, [i, j])

            tile.cols(inner, axpy)
            return ()

        b.loop(k0, k1, b.index(1), k_step, name="k")

    tile.rows(row)


def _epilogue(op: tdsl.ContractionOp, b: LoopBuilder, value: SSAValue, i: SSAValue, j: SSAValue) -> SSAValue:
    if op.bias is not None:
        value = binary(b, tdsl.AddOp, value, b.broadcast_load(op.bias, [i, j]))
    if op.activation is not None:
        value = unary(b, tdsl.UNARY_OPS[op.activation], value)
    return value


SCALAR_NESTS = (tdsl.UnaryOp, tdsl.ElementwiseBinaryOp, tdsl.CastOp, tdsl.TransposeOp, tdsl.SliceOp,
                tdsl.ConcatOp, tdsl.ReduceOp, tdsl.WhereOp, tdsl.IotaOp, tdsl.SoftmaxOp, tdsl.ContractionOp,
                tdsl.QuantizeOp, tdsl.DequantizeOp)  # fmt: skip
"""The ops this pass lowers to loop nests of scalar code (dims and copies aside)."""


@dataclass(frozen=True)
class LowerToLoops(ModulePass):
    name = "tdsl-lower-to-loops"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for inner in op.walk():
            if isinstance(inner, SCALAR_NESTS):
                report(inner)
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [
                    LowerElementwise(),
                    LowerCast(),
                    LowerTranspose(),
                    LowerSlice(),
                    LowerConcat(),
                    LowerReduce(),
                    LowerWhere(),
                    LowerIota(),
                    LowerDim(),
                    LowerSoftmax(),
                    LowerContraction(),
                    LowerQuantize(),
                    LowerDequantize(),
                    LowerCopy(),
                ]
            ),
            apply_recursively=False,
        ).rewrite_module(op)
