"""tdsl-vectorize-integer: integer products become register-blocked vector kernels
whose inner step is a 4-byte dot product per i32 lane (vpdpbusd with AVX-512 VNNI).

The products: `linear(x, w)` on i8 x i8 -> i32 (exact, wrapping like the
reference), and W8A8 / W4A8-style: int8 (or int7) activations (symmetric, one scale per row)
times int8 ... int2 weights (int3/int5/int6 in bit planes), symmetric or with zero
points, with one scale per row or per group of k.
Each group's dot product is exact in i32 and scaled as tdsl-lower-to-loops does
(the f32 sum over groups of sw * dot, times sx), so the results are the same bits.
The activations' per-row int8 quantization is vectorised too (RowQuantizer).

vpdpbusd multiplies unsigned bytes by signed bytes. The weight is the unsigned
operand: codegen.quant_decode's `offset_bytes` unpacks its codes to one byte each,
a symmetric code q read as q + offset (2^(b-1): a flip of the sign bit, free while
the planes are unpacked), an asymmetric code as itself (q + its zero point), and
every output subtracts offset * sum_k x[i, k] per group, the sums precomputed once
per row of x (O(M*K), where column sums of w would cost O(N*K), as much as a GEMV);
in i32 this is exact.
Without VNNI, x86's pmaddubsw then pmaddwd by ones give vpdpbusd's lane sums (exact
for codes of at most 7 bits, or any weight byte times int7 activations: pair_bound;
else 8-bit ones widen to i16 pairs for pmaddwd: DotKind);
elsewhere the same operands go through widening multiplies and adds. A step spans
4*width bytes (VNNI, pmaddubsw), 2*width (pmaddwd pairs) or width bytes; with several groups per row, steps are narrowed until they tile a group.

As in tdsl-microkernel, both operands are read along k (w is [n, k]): a `rows` x
`cols` block of outputs is held as rows*cols i32 vector accumulators (int4, int2
and ternary weights: P = 2 or 4 columns to an accumulator, read in place by
CodeDecoder.field_phases against activations permuted to match), reduced once per
group by a transposing shuffle tree into one vector of the block's columns per row
(`column_sums`), whose lanes then take the group rescale: no horizontal reduction
or scalar float op per output. Groups shorter than a step that tile it (32 codes,
64-byte VNNI steps) share it: each accumulator holds every spanned group in its own
lanes and one tree reduces them all (Groups.per_step). Loops: n-tiles (a weight panel of tn rows; no
k-tiles: a panel of bytes is 4x smaller than f32's, and each output is reduced once
per group), whole blocks of `rows` rows, column blocks; the rows left (all of a
GEMV's one) in 1 x `row_cols` blocks, which prefetch their weight rows two blocks
ahead into L2 (codegen.prefetch); ragged columns in 1-column kernels, a ragged
k a scalar tail. The epilogue (bias, activation) runs on each finished n-tile.

With 4-byte lanes (VNNI, pmaddubsw: W8A7 too), a call of PANEL_MIN_ROWS rows or more of a product with one scale group
per row, or whole groups of whole quads of k (a float zero's too), no zero points and whole steps of k runs its whole
blocks of rows in the outer-product form instead (PanelKernel): w packed per n-tile into a panel of dwords
of k, so that accumulators hold whole outputs and need neither reduction nor a
per-block offset of w (as oneDNN's and ggml's VNNI kernels); with several groups each
group's products are scaled into f32 sums as it ends. Its results are the same
bits as the dot-product blocks'; each n-tile has its own scratch, so the pool splits them.

This module matches the products and lays out their loop nests; the kernels are in
codegen: integer_dot (the step: DotKind, Dot), integer_product (Weight, Groups,
Product, store_results), integer_phases (P-phase codes and x permuted to match),
integer_blocks (IntegerKernel, the rows' offsets, the GEMV's scale transposes),
integer_panel (PanelKernel), row_quantizer (RowQuantizer), shuffles (column_sums).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from xdsl.context import Context
from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import MemRefType, ModuleOp, f32, i8, i32
from xdsl.ir import Attribute, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.codec.uniform import ACTIVATION_CODES, CodeBits, Sign
from stoicc_py.codegen.integer_blocks import IntegerKernel, row_offsets, scale_rows_buffer, x_sums
from stoicc_py.codegen.integer_dot import Dot, DotKind
from stoicc_py.codegen.integer_panel import PanelKernel
from stoicc_py.codegen.integer_phases import phase_x
from stoicc_py.codegen.integer_product import Groups, Product, Weight, sext
from stoicc_py.codegen.loop_builder import LoopBuilder, computes_in_f32
from stoicc_py.codegen.prefetch import STEP_BYTES, least_bytes, rows_ahead, steps_to_line
from stoicc_py.codegen.quant_decode import CodeDecoder
from stoicc_py.codegen.quant_loops import QuantView
from stoicc_py.codegen.register_blocks import Shape, blocks, floor_to, for_, ragged, register_blocks
from stoicc_py.codegen.remarks import decline
from stoicc_py.codegen.row_quantizer import RowQuantizer
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import BUFFER_ALIGNMENT, AssembleOp, PackedType
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.passes.tdsl_lower_to_loops import TileNest, apply_epilogue, before, span
from stoicc_py.passes.tdsl_tile import TARGET_TILES

NAME = "tdsl-vectorize-integer"


def lower_integer(op: tdsl.LinearOp, product: Product, dot: Dot, shape: Shape, row_cols: int,
                  panel: Shape | None = None, wide: Dot | None = None) -> None:  # fmt: skip
    """Replace a bufferized integer linear by its vector kernel nest: with a `panel`
    block, PanelKernel's over the whole blocks of rows of calls of PANEL_MIN_ROWS rows or
    more; else (and for the rows left, and the columns past the panels' whole vectors)
    `shape` blocks over whole blocks of rows, then 1 x `row_cols` blocks over the rows left.
    The blocks step by `dot`, or by `wide` where its steps span several whole groups
    (Groups.spanned: groups of 32 codes two to a 64-byte step, where `dot` is narrowed to
    32-byte steps, and one reduction for both)."""
    out = op.out
    assert out is not None
    tn = (op.tile_sizes or TARGET_TILES["cpu"][tdsl.LinearOp])[1]
    whole = math.lcm(shape.cols, row_cols)
    tn = max(whole, tn // whole * whole)  # n-tiles of whole column blocks
    b = before(op)
    m, n = b.size(out, 0), b.size(out, 1)
    spanned = 1 if wide is None else product.groups.spanned(wide, product.w.decoder.phases)
    step = dot if wide is None or spanned == 1 else wide
    sums = None if product.w.offsets is None else x_sums(b, product, dot, m)
    kernel = IntegerKernel(product, step, row_offsets(b, product, dot, m, product.w.offset(step)), spanned,
                           x_sums=sums)  # fmt: skip
    lo = b.index(0) if panel is None else _panel_rows(op, kernel, panel, shape)
    kernel.phase_x = phase_x(b, product, step, (lo, m))
    width = product.x.type.get_shape()[1]  # type: ignore[attr-defined]
    values, codes = product.w.values.type, kernel.phasing(row_cols)[2]
    # AVX2's steps rotate their prefetches over the rows: any step's bytes then pay
    rotation = (steps_to_line(values, width, codes), codes) if kernel.dot.avx2 else (1, 0)
    ahead = rows_ahead(values, width, codes, row_cols, 1 if kernel.dot.avx2 else least_bytes(STEP_BYTES, shape.width))
    gemv = replace(kernel, ahead=ahead, rotation=rotation)
    m_blocks = floor_to(b, lo, m, shape.rows)

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        j1 = span(b, j0, tn, n)

        def row_block(b: LoopBuilder, i: SSAValue) -> None:
            edge = Shape(shape.width, shape.rows, 1)
            blocks(b, j0, j1, shape.cols, lambda b, j: kernel.emit(b, shape, i, j),
                   lambda b, j: kernel.emit(b, edge, i, j), "j")  # fmt: skip

        for_(b, lo, m_blocks, shape.rows, row_block, "i")
        # The rows left (all of a GEMV's one) in wider blocks: with one row, the
        # columns' accumulators are the registers to fill.
        # the scales' scratch of the n-tile's own: mark-parallel-loops proves n-tiles
        # independent only where each writes its own buffers
        scale_rows = scale_rows_buffer(b, product, kernel, row_cols)
        register_blocks(b, Shape(shape.width, 1, row_cols), (m_blocks, m), (j0, j1),
                        replace(gemv, scale_rows=scale_rows).emit)  # fmt: skip
        if scale_rows is not None:
            b.b.insert(memref.DeallocOp.get(scale_rows))
        apply_epilogue(op, TileNest(b, out, lo, m, j0, j1))

    for_(b, b.index(0), n, tn, n_tile, "j0")
    for scratch in (kernel.offsets, kernel.phase_x, kernel.x_sums):
        if scratch is not None:
            b.b.insert(memref.DeallocOp.get(scratch))


PANEL_MIN_ROWS = 16
"""A call of fewer rows does not pay for packing its panels (a GEMV's one row above all)."""
PANEL_TILE = 4
"""Column blocks per n-tile of panels: the block of rows of x read (from L1) by each."""


def _panel_rows(op: tdsl.LinearOp, kernel: IntegerKernel, block: Shape, shape: Shape) -> SSAValue:
    """Lower the whole blocks of rows the PanelKernel way in a call of PANEL_MIN_ROWS rows
    or more, in `block`s and `block.rows` x 1-vector ones; return where these rows end.
    Only these two blocks are emitted (the rows left go to the dot-product blocks, which
    exist for short calls anyway), so a compile pays for little more code. An output is
    the same bits in either kernel (the same exact dot product, scaled alike), so a call
    split by rows agrees with a whole one."""
    out = op.out
    assert out is not None
    b = before(op)
    m = b.size(out, 0)
    unit = math.lcm(block.rows, shape.rows)
    enough = b.insert(arith.CmpiOp(m, b.index(max(PANEL_MIN_ROWS, unit)), "uge"))
    rows = b.insert(arith.SelectOp(enough, floor_to(b, b.index(0), m, unit), b.index(0)))
    end = b.insert(arith.SelectOp(enough, b.size(out, 1), b.index(0)))  # no n-tile, no scratch: a GEMV's
    _panel_tiles(b, op, kernel, block, rows, end)
    return rows


def _panel_tiles(b: LoopBuilder, op: tdsl.LinearOp, kernel: IntegerKernel, block: Shape, rows: SSAValue,
                 end: SSAValue) -> None:  # fmt: skip
    """_panel_rows' n-tiles up to `end` over its `rows`, each with its own scratch (so that
    mark-parallel-loops proves the tiles independent, and a call without panel rows
    allocates none): the tile's panel packed, then its blocks of rows."""
    out = op.out
    assert out is not None
    dot = kernel.dot
    tn = PANEL_TILE * block.cols * dot.lanes
    k_size = kernel.product.x.type.get_shape()[1]  # type: ignore[attr-defined]
    product = kernel.product
    groups = product.groups.count
    sums = f32 if groups > 1 else i32  # several groups: each output's running f32 sum
    buffers: dict[str, tuple[Attribute, list[int]]] = {"panel": (i32, [k_size // 4, tn]),
                                                       "panel_sums": (sums, [block.rows, block.cols * dot.lanes])}  # fmt: skip
    if product.w.decoder.code.bits < 8:
        buffers["panel_staging"] = (i8, [dot.lanes, dot.step])
    if product.scales is not None:
        buffers["panel_scales"] = (f32, [groups, tn])
    if product.w.offsets is not None:
        buffers["panel_offsets"] = (f32, [groups, tn])
    edge = Shape(block.width, block.rows, 1)
    lanes = b.index(dot.lanes)

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        # the n-tile's scratch its own, so that mark-parallel-loops proves the tiles independent
        allocs = {name: b.insert(memref.AllocOp.get(element, BUFFER_ALIGNMENT, dims)) for name, (element, dims) in buffers.items()}  # fmt: skip
        for name, alloc in allocs.items():
            alloc.name_hint = name
        panel = PanelKernel(product, dot, allocs["panel"], kernel.offsets, allocs.get("panel_scales"),
                            allocs["panel_sums"], allocs.get("panel_staging"), allocs.get("panel_offsets"), kernel.x_sums)  # fmt: skip
        j1 = span(b, j0, tn, end)  # the loop's own bound (n where there are panel rows)
        width = b.insert(arith.SubiOp(j1, j0))
        panel.pack(b, j0, j1)
        step = block.cols * dot.lanes
        whole = floor_to(b, j0, j1, step)  # the columns in whole blocks
        vectors = b.add(j0, b.mul(b.div(b.add(width, b.index(dot.lanes - 1)), lanes), lanes))  # a ragged last one too

        def row_block(b: LoopBuilder, i: SSAValue) -> None:
            def run(shape: Shape, end: Callable[[LoopBuilder, SSAValue], SSAValue | int]) -> Callable[[LoopBuilder, SSAValue], None]:
                def body(b: LoopBuilder, j: SSAValue) -> None:
                    column = b.insert(arith.SubiOp(j, j0))
                    panel.emit(b, shape, i, column)
                    panel.finish(b, i, shape.rows, j, column, end(b, j))

                return body

            for_(b, j0, whole, step, run(block, lambda _b, _j: step), "j")
            for_(b, whole, vectors, dot.lanes, run(edge, lambda b, j: b.min(b.add(j, lanes), j1)), "j")

        for_(b, b.index(0), rows, block.rows, row_block, "i")
        apply_epilogue(op, TileNest(b, out, b.index(0), rows, j0, j1))
        for alloc in allocs.values():
            b.b.insert(memref.DeallocOp.get(alloc))

    for_(b, b.index(0), end, tn, n_tile, "j0")


def _element(value: SSAValue) -> Attribute | None:
    t = value.type
    return t.element_type if isinstance(t, MemRefType) else None


def _integer_product(op: tdsl.LinearOp) -> Product | None:
    """i8 x i8 -> i32: the output is the dot product itself."""
    out, w = op.out, op.rhs
    if not (_element(op.lhs) == i8 and _element(w) == i8 and out is not None and _element(out) == i32):
        return None
    k_size = op.lhs.type.get_shape()[1]  # type: ignore[attr-defined]
    groups = Groups(1, k_size if k_size >= 0 else None)
    decoder = CodeDecoder(CodeBits(8, Sign.TWOS), op.lhs.type.get_shape()[1])  # type: ignore[attr-defined]
    return Product(op.lhs, Weight(w, decoder, lambda b, n, k: sext(b, b.load(w, [n, k]))), out, groups)


def _quantized(value: SSAValue, codes: tuple[str, ...], symmetric: bool = True) -> QuantView | None:
    """The quantized view of a packed operand with `codes` (symmetric ones only, unless
    `symmetric` is false) and scale groups along its rows (not along its columns)."""
    t = value.type
    if not (
        isinstance(t, PackedType) and isinstance(t.layout, UniformQuantAttr) and isinstance(value.owner, AssembleOp)
    ):
        return None
    view = QuantView.of(value)
    along_rows = view.per == "group" or view.group == t.dims[1]
    return view if view.layout.codes.data in codes and (view.symmetric or not symmetric) and along_rows else None


WEIGHT_CODES = ("int8", "int6", "int5", "int4", "int3", "int2", "ternary")
"""Weight codes whose fields are two's complement or unsigned, unpacked to bytes by
CodeDecoder.offset_bytes: ternary's are int2's (-1, 0, 1 in two bits); binary's +-1 are not."""


def _quantized_product(op: tdsl.LinearOp) -> Product | None:
    """int8 (or int7) activations with one scale per row (or per group of the weight's)
    x integer weights -> f32."""
    x, w, out = _quantized(op.lhs, ACTIVATION_CODES), _quantized(op.rhs, WEIGHT_CODES, symmetric=False), op.out
    if x is None or w is None or out is None or _element(out) != f32:
        return None
    k_size = op.rhs.type.dims[1]  # type: ignore[attr-defined]
    x_groups = x.group != k_size  # a scale per group of w's (tdsl-fuse-dequant checked them alike)
    if x_groups and not (x.per == w.per == "group" and x.group == w.group):
        return None
    zero_point = None if w.symmetric or w.offsets else w.zero_point
    weight = Weight(w.buffers["values"], w.decoder, w.code, zero_point, w.offsets)
    scales = (lambda b, i: x.scale(b, i, b.index(0)), w.scale)
    groups = Groups(-(-k_size // w.group), w.group, k_size if k_size % w.group else 0)
    per_group = w.per == "group"
    return Product(x.buffers["values"], weight, out, groups, scales, w.buffers["scales"] if per_group else None,
                   x.qmax + 1, w.buffers.get("offsets") if per_group else None,
                   x.buffers["scales"] if x_groups else None)  # fmt: skip


def _row_quantizer(op: tdsl.QuantizeOp, lanes: int) -> RowQuantizer | None:
    """Symmetric int8 quantization of an f32 (or bf16/f16, widened as loaded) matrix
    with one scale per row, or per group of whole vectors that tile the row."""
    out, x = op.out, op.input
    width = x.type.get_shape()[1]  # type: ignore[attr-defined]
    if out is None or not computes_in_f32(x) or width < 0:
        return None
    view = _quantized(out, ACTIVATION_CODES)
    if view is None or view.per == "tensor":
        return None
    whole_vectors = view.group == width or (view.per == "group" and width % view.group == 0 and view.group % lanes == 0)
    return RowQuantizer(x, view, lanes) if whole_vectors else None


@dataclass
class VectorizeQuantize(RewritePattern):
    lanes: int

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.QuantizeOp, rewriter: PatternRewriter, /):
        quantizer = _row_quantizer(op, self.lanes)
        if quantizer is None:
            return
        b = before(op)
        rows, width, group = b.size(quantizer.x, 0), b.size(quantizer.x, 1), quantizer.view.group
        if group < quantizer.x.type.get_shape()[1]:  # type: ignore[attr-defined]  # groups of whole vectors

            def row(b: LoopBuilder, r: SSAValue) -> None:
                def one_group(b: LoopBuilder, g: SSAValue) -> None:
                    k0 = b.mul(g, b.index(group))
                    k1 = b.add(k0, b.index(group))
                    quantizer.emit(b, r, g, (k0, k1, k1))

                for_(b, b.index(0), b.div(width, b.index(group)), 1, one_group, "g")

            for_(b, b.index(0), rows, 1, row, "r")
        else:
            tail = ragged(quantizer.x.type.get_shape()[1], self.lanes)  # type: ignore[attr-defined]
            kv = floor_to(b, b.index(0), width, self.lanes) if tail else width
            for_(b, b.index(0), rows, 1, lambda b, r: quantizer.emit(b, r, b.index(0), (b.index(0), kv, width)), "r")
        rewriter.erase(op)


@dataclass
class VectorizeIntegerLinear(RewritePattern):
    dot: Dot
    shape: Shape
    row_cols: int
    panel: Shape | None

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.LinearOp, rewriter: PatternRewriter, /):
        integer_x = _element(op.lhs) == i8 or isinstance(op.lhs.type, PackedType)  # this pass's domain
        if integer_x and isinstance(op.rhs.type, PackedType) and op.rhs.type.dims[1] < 0:
            decline(op, f"{NAME}: the weight's K is a size symbol (its kernels need a static one; N is read at run time)")
            return
        product = _integer_product(op) or _quantized_product(op)
        if product is None:
            if integer_x:
                decline(op, f"{NAME}: its kernels take i8 x i8 -> i32, or int8 or int7 activations (a scale per row, "
                            f"or per group of the weight's) times {'/'.join(WEIGHT_CODES)} weights (scales per row "
                            "or group) -> f32")  # fmt: skip
            return
        wide = self.dot.for_bits(product.w.decoder.code.bits, product.x_max)
        dot = product.groups.fitting(wide)
        if dot is None or dot.step % product.w.decoder.code.unit:  # a step covers whole bytes of every plane
            decline(op, f"{NAME}: K or the scale group is not a whole number of its dot-product steps")
            return
        panel = _panels(product, dot, wide)
        lower_integer(op, product, dot, self.shape, self.row_cols, self.panel if dot.dwords and panel else None, wide)
        rewriter.erase(op)


def _panels(product: Product, dot: Dot, wide: Dot) -> bool:
    """Whether PanelKernel takes the product: its offset a constant per row and group (no
    zero points) and every group whole steps; one group (and no float zero's offsets), or
    whole groups of whole quads of k over a k of whole steps of IntegerKernel's (by which
    PanelKernel packs), each group's products scaled as it ends."""
    groups, w = product.groups, product.w
    if w.zero_point is not None or groups.tail(dot.step):
        return False
    if groups.count == 1:
        return w.offsets is None
    step = (wide if groups.spanned(wide, w.decoder.phases) > 1 else dot).step
    k_size = product.x.type.get_shape()[1]  # type: ignore[attr-defined]
    return not groups.width and (groups.length or 0) % 4 == 0 and k_size % step == 0


@dataclass(frozen=True)
class VectorizeInteger(ModulePass):
    """`width` i32 lanes per accumulator (16 for AVX-512); `vnni` steps with
    vpdpbusd (4*width bytes; needs AVX-512 VNNI, or AVX-VNNI for width 8), else `madd`
    with pmaddubsw and pmaddwd (4*width bytes; 2*width for 8-bit codes; needs SSSE3,
    AVX2 or AVX-512BW for width 4, 8, 16: DotKind), else with widening multiply-adds
    (width bytes); a `rows` x `cols` register block, and 1 x `row_cols` blocks for the
    rows left over (a GEMV's one). With `panel` and 4-byte lanes, a product with one
    scale group per row (or none) whose k is a whole number of steps runs calls of
    PANEL_MIN_ROWS rows or more in PanelKernel's blocks of `panel_rows` rows x
    `panel_cols` vectors of columns."""

    name = NAME

    width: int = 16
    rows: int = 4
    cols: int = 6
    vnni: bool = False
    madd: bool = False
    row_cols: int = 8
    panel: bool = True
    panel_rows: int = 8
    panel_cols: int = 3

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if min(self.width, self.rows, self.cols, self.row_cols, self.panel_rows, self.panel_cols) <= 0:
            raise DiagnosticException("tdsl-vectorize-integer: width, rows, cols, row_cols, panel_rows and panel_cols "
                                      "must be positive")  # fmt: skip
        if (self.vnni or self.madd) and self.width not in (4, 8, 16):
            raise DiagnosticException(f"tdsl-vectorize-integer: vpdpbusd, pmaddubsw and pmaddwd have 4, 8 or 16 lanes, "
                                      f"got width={self.width}")  # fmt: skip
        panel = Shape(self.width, self.panel_rows, self.panel_cols) if self.panel else None
        kind = DotKind.VNNI if self.vnni else DotKind.MADD if self.madd else DotKind.WIDEN
        linear = VectorizeIntegerLinear(Dot(self.width, kind), Shape(self.width, self.rows, self.cols),
                                        self.row_cols, panel)  # fmt: skip
        patterns = GreedyRewritePatternApplier([linear, VectorizeQuantize(self.width)])
        PatternRewriteWalker(patterns, apply_recursively=False).rewrite_module(op)
