"""tdsl-vectorize-quant: `linear(x, w)` with f32 (or bf16/f16, widened as they are
loaded) activations and a weight in a
uniform quantized layout (int8, int4, int2, ternary, binary; one scale per tensor,
row or group) becomes a vector nest that unpacks the codes in registers.

The semantics stay weight-only: y = x @ dequantize(w)^T with x never rounded, and
no dequantized copy of the weight is made. Per scale group the codes' dot products
with x accumulate in f32 vectors and are scaled once (the reassociation of
tdsl-lower-to-loops' float rows).

Unpacking (codegen.quant_decode.VectorCodes, per bit plane): a chunk of `width` code bytes is loaded as vector<width x i8> and
widened to i32 lanes, so lane t holds codes P*t .. P*t + P-1 (P codes per byte, LSB
first). Field j of every lane is masked in place (it holds u * 2^(b*j), u unsigned),
OR-ed into the bits of the float 2^23 (giving 2^23 + u * 2^(b*j) exactly), and one
subtraction of 2^23 + base * 2^(b*j) leaves q * 2^(b*j) exactly. So no shifts (they
compete with the widening for one port; masks run on any), no int-to-float
conversion, and codes stay exact, as in the scalar nest (no offset is left for
sums of x to cancel). Two's complement fields have their sign bits flipped first
(one xori per load), so u = q + 2^(b-1); asymmetric fields are u = q + zero point;
binary bits are read doubled (the word shifted left once per load), u = q + 1.

x is copied once per call into activation-sized scratch whose chunks list column
P*t + j at j*width + t, times 2^-(b*j) (exact), by vector.shuffle, so each field
meets one contiguous x vector: one vector.fma per row of x. Symmetric int8 bytes
are sign-extended and converted, and read x in place.

A float zero (`zero=float`: value = scale * code + offset) reads its unsigned codes
with base 0 and adds offset * (the segment's sum of x) per segment: the sums are taken
once per call, as `width` lanes per (row, segment) in scratch, so each segment costs one
more vector fma per output, and the lanes are reduced with the rest.

`matmul(x, w)` with w stored [K, N] (its codes and scale groups along N) is bufferized
as a dequantize into a scratch weight that the matmul reads; the pair becomes
`QuantStream`, the axpy form over the codes themselves (docs in the class), which this
pass therefore runs before tdsl-microkernel takes the matmul.

Loops: n-tiles (a panel of weight rows stays in L2 across row blocks), row blocks
of `rows` rows (the unpacked fields of `cols` weight rows are each used by every
row of the block), column blocks; a single row (GEMV) takes `gemv_cols` weight
rows at a time; the last columns of a ragged n take 1x1 kernels. No k-tiles: a
panel of codes is small, long streams keep GEMV at full bandwidth, and every output
is reduced once, in the same order whatever its block (results do not depend on
the batch size). Weights whose groups are not whole chunks of at least 4 lanes
(e.g. per-column scales) are left to tdsl-lower-to-loops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from xdsl.context import Context
from xdsl.dialects import arith, memref, scf, vector
from xdsl.dialects.builtin import (
    DenseArrayBase,
    ModuleOp,
    VectorType,
    bf16,
    f32,
    i32,
    i64,
)
from xdsl.ir import Block, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import Rewriter
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.codegen.loop_builder import LoopBuilder, computes_in_f32, element_type
from stoicc_py.codegen.prefetch import least_bytes, prefetch_rows, rows_ahead
from stoicc_py.codegen.quant_decode import VectorCodes, concatenated
from stoicc_py.codegen.quant_loops import QuantView
from stoicc_py.codegen.register_blocks import Body, Shape, floor_to, for_
from stoicc_py.codegen.remarks import decline
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import BUFFER_ALIGNMENT, AssembleOp, PackedType
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.passes.tdsl_lower_to_loops import TileNest, apply_epilogue, before, span
from stoicc_py.passes.tdsl_microkernel import (
    PAIR_SHAPE,
    PairKernel,
    offsets,
    pack_pairs,
    pair_panel,
    pair_panel_alloc,
    pair_tile,
    pairs_fit,
)
from stoicc_py.passes.tdsl_tile import TARGET_TILES

NAME = "tdsl-vectorize-quant"

MIN_WIDTH = 4
"""The narrowest vectors used: smaller scale groups (e.g. one scale per column) stay scalar."""

PREFETCH_STEP_BYTES = 16
"""The least bytes of a weight row a 16-lane GEMV step reads for the GEMV blocks to prefetch
rows ahead (codegen.prefetch; scaled to narrower targets by least_bytes): a 16-lane step
reads 16 and asks for each line 4 times, and still SmolLM2's lm head (int8 g32, 576-byte
rows) ran 2.6x faster with them (Zen 4); an 8-lane one reads 8, and the head ran 3x
faster with them on Zen 3 (cold calls)."""

Step = Callable[[LoopBuilder, SSAValue, Sequence[SSAValue]], Sequence[SSAValue]]


def _scratch(b: LoopBuilder, m: SSAValue, shape: list[int], name: str) -> SSAValue:
    buf = b.insert(memref.AllocOp.get(f32, BUFFER_ALIGNMENT, shape, [m] if shape[0] < 0 else []))
    buf.name_hint = name
    return buf


def _lane_order(b: LoopBuilder, x: SSAValue, m: SSAValue, k_size: int, codes: VectorCodes) -> SSAValue:
    """x as the kernels read it against one bit plane, into activation-sized scratch once
    per call: each chunk lists column P*t + j at j*width + t, times 2^(shift - b*j). int8
    reads x in place."""
    if codes.per_byte == 1:
        return x
    p, lanes = codes.per_byte, codes.width
    ordered = _scratch(b, m, [x.type.get_shape()[0], k_size], "x_lanes")  # type: ignore[attr-defined]
    masks = [DenseArrayBase.from_list(i64, [p * t + j for t in range(lanes)]) for j in range(p)]

    def chunk(b: LoopBuilder, i: SSAValue, k: SSAValue) -> None:
        v = b.vload(x, [i, k], codes.chunk)
        for j, mask in enumerate(masks):
            part = b.insert(vector.ShuffleOp(v, v, mask, result_type=codes.vec))
            scale = codes.x_scale(j)
            scaled = part if scale == 1 else b.fmul(part, b.splat(codes.vec, scale))
            b.b.insert(vector.StoreOp(scaled, ordered, [i, b.add(k, b.index(j * lanes))]))

    for_(b, b.index(0), m, 1, lambda b, i: for_(b, b.index(0), b.index(k_size), codes.chunk,
                                                 lambda b, k: chunk(b, i, k), "k"), "i")  # fmt: skip
    return ordered


def _segment_sums(b: LoopBuilder, x: SSAValue, m: SSAValue, k_size: int, segment: int, width: int) -> SSAValue:
    """x's sums over each segment of a row as `width` partial lanes, into scratch
    [rows, segments * width] once per call (lane t sums columns t, t + width, ...)."""
    segments = -(-k_size // segment)
    sums = _scratch(b, m, [x.type.get_shape()[0], segments * width], "x_sums")  # type: ignore[attr-defined]
    lanes = VectorType(f32, [width])

    def row(b: LoopBuilder, i: SSAValue) -> None:
        def one(b: LoopBuilder, k0: SSAValue) -> None:
            k1 = b.add(k0, b.index(segment))
            if k_size % segment:  # the last segment holds the rest of the row
                k1 = b.min(k1, b.index(k_size))
            (total,) = b.loop(k0, k1, b.index(width), lambda b, k, acc: [b.fadd(acc[0], b.vload(x, [i, k], width))],
                              [b.splat(lanes, 0.0)], name="k")  # fmt: skip
            b.vstore(total, sums, [i, b.mul(b.div(k0, b.index(segment)), b.index(width))])

        for_(b, b.index(0), b.index(k_size), segment, one, "s")

    for_(b, b.index(0), m, 1, row, "i")
    return sums


def group_base(b: LoopBuilder, w: QuantView, codes: VectorCodes, n: SSAValue, g: SSAValue) -> SSAValue | None:
    """u - q of the fields of weight row n in group g, as f32 lanes; None with a float zero
    (q = u: nothing to subtract)."""
    if w.layout.float_offset:
        return None
    if codes.base is not None:
        return b.splat(codes.vec, float(codes.base))
    zp = b.load(w.buffers["zero_points"], w.scale_indices(b, n, g))
    return b.insert(vector.BroadcastOp(b.insert(arith.SIToFPOp(b.insert(arith.ExtUIOp(zp, i32)), f32)), codes.vec))


@dataclass(frozen=True)
class PlaneInput:
    """One bit plane of the weight's codes and the activations ordered for it."""

    codes: VectorCodes
    x: SSAValue


@dataclass
class QuantKernel:
    """out[i:i+rows, j:j+cols] = x[i:i+rows, :] . dequantize(w)[j:j+cols, :], each
    segment of codes that share a scale scaled once (a ragged last segment holds the
    rest of the row)."""

    planes: list[PlaneInput]
    """Each bit plane with the activations in its lane order (x itself for int8)."""
    w: QuantView
    out: SSAValue
    k_size: int
    segment: int
    """Codes per scale: a group, or the whole row."""
    sums: SSAValue | None = None
    """A float zero's partial sums of x per segment (_segment_sums), else None."""
    ahead: int = 0
    """Rows of w ahead of each row read whose bytes a step prefetches (codegen.prefetch; 0: none)."""
    widened: SSAValue | None = None
    """Scratch [2 * cols, groups] f32 where a block first widens its columns' half-float
    scales (rows c) and float zeros' offsets (rows cols + c), all groups in a vectorised
    loop, so that each segment broadcasts them from L1 (a load folded into its fma) and
    does not widen them one at a time (3 ops each, 8 a step in a 1 x 4 GEMV block of
    Q4_1's grid); None: read where they are stored."""

    @property
    def codes(self) -> VectorCodes:
        """The low plane: the lanes and vectors of every plane."""
        return self.planes[0].codes

    @property
    def step(self) -> int:
        """Codes per step: a chunk of every plane (the narrowest plane's is the longest)."""
        return max(p.codes.chunk for p in self.planes)

    def emit(self, b: LoopBuilder, shape: Shape, i: SSAValue, j: SSAValue) -> None:
        rows, cols = shape.indices(b, i, j)
        zeros = [b.splat(self.codes.vec, 0.0)] * (shape.rows * shape.cols)

        if self.widened is not None:
            self._widen(b, cols)

        def segment(b: LoopBuilder, k0: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            return self._segment(b, rows, cols, k0, acc)

        totals = b.loop(b.index(0), b.index(self.k_size), b.index(self.segment), segment, zeros, name="s")
        for s, total in enumerate(totals):
            b.store(b.reduce_lanes(total, "sum"), self.out, [rows[s // shape.cols], cols[s % shape.cols]])

    def _segment(self, b: LoopBuilder, rows: list[SSAValue], cols: list[SSAValue], k0: SSAValue,
                 totals: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
        """totals + scale * (codes k0 .. k0+segment . x) for each (row, col)."""
        codes = self.codes
        g = b.div(k0, b.index(self.segment))
        bases = [group_base(b, self.w, self.codes, col, g) for col in cols]
        zeros = [b.splat(codes.vec, 0.0)] * len(totals)
        k1 = b.add(k0, b.index(self.segment))
        if self.k_size % self.segment:  # the last group holds the rest of the row
            k1 = b.min(k1, b.index(self.k_size))
        dots = b.loop(k0, k1, b.index(self.step), self._chunk(rows, cols, bases), zeros, name="k")
        new = list(totals)
        for c in range(len(cols)):
            scale = b.insert(vector.BroadcastOp(self._scale(b, cols, c, g), codes.vec))
            for r in range(len(rows)):
                at = r * len(cols) + c
                new[at] = b.insert(vector.FMAOp(scale, dots[at], totals[at]))
        if self.sums is not None:  # + offset * sum(x) of the segment
            at_g = b.mul(g, b.index(codes.width))
            xs = [b.vload(self.sums, [row, at_g], codes.width) for row in rows]
            for c in range(len(cols)):
                offset = b.insert(vector.BroadcastOp(self._scale(b, cols, c, g, offset=True), codes.vec))
                for r, x_sum in enumerate(xs):
                    new[r * len(cols) + c] = b.insert(vector.FMAOp(offset, x_sum, new[r * len(cols) + c]))
        return new

    def _widen(self, b: LoopBuilder, cols: list[SSAValue]) -> None:
        """The columns' scales (and offsets) of every group, as f32, into self.widened."""

        def group(b: LoopBuilder, g: SSAValue) -> None:
            for c, col in enumerate(cols):
                b.store(self.w.scale(b, col, g), self.widened, [b.index(c), g])  # type: ignore[arg-type]
                if self.sums is not None:
                    b.store(self.w.offset(b, col, g), self.widened, [b.index(len(cols) + c), g])  # type: ignore[arg-type]

        for_(b, b.index(0), b.index(-(-self.k_size // self.segment)), 1, group, "g")

    def _scale(self, b: LoopBuilder, cols: list[SSAValue], c: int, g: SSAValue, offset: bool = False) -> SSAValue:
        """The scale (or the float zero's offset) of group g of the block's column c, as f32."""
        if self.widened is not None:
            return b.load(self.widened, [b.index(len(cols) + c if offset else c), g])
        return (self.w.offset if offset else self.w.scale)(b, cols[c], g)

    def _chunk(self, rows: list[SSAValue], cols: list[SSAValue], bases: list[SSAValue | None]) -> Step:
        """One step: each weight row's bytes of each plane loaded once, each field used by
        every row of x."""

        def step(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            prefetch_rows(b, self.w.buffers["values"], cols, self.ahead, k, self.k_size)
            for plane in self.planes:
                for at in range(0, self.step, plane.codes.chunk):
                    kc = b.offset(k, at)
                    acc = self._plane(b, plane, rows, cols, bases, kc, acc)
            return acc

        return step

    def _plane(self, b: LoopBuilder, plane: PlaneInput, rows: list[SSAValue], cols: list[SSAValue],
               bases: list[SSAValue | None], k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:  # fmt: skip
        """acc + the products of one chunk of one plane."""
        codes = plane.codes
        words = [codes.load(b, self.w.buffers["values"], col, k) for col in cols]
        low = codes.plane.shift == 0  # the plane that subtracts the base

        def phase(b: LoopBuilder, j: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            at = b.add(k, b.mul(j, b.index(codes.width)))
            xs = [b.vload(plane.x, [row, at], codes.width) for row in rows]
            mask, unit = codes.phase(b, j)
            new = list(acc)
            for c, word in enumerate(words):
                q = codes.field(b, word, mask, codes.bias(b, bases[c] if low else None, unit))
                for r, xv in enumerate(xs):
                    s = r * len(cols) + c
                    new[s] = b.insert(vector.FMAOp(xv, q, new[s]))
            return new

        # A loop, not P copies: LLVM unrolls it (and folds the masks) at no compile-time cost to us.
        if codes.per_byte == 1:
            return phase(b, b.index(0), acc)
        return b.loop(b.index(0), b.index(codes.per_byte), b.index(1), phase, acc, name="f")


@dataclass(frozen=True)
class Blocking:
    """The register blocks: `rows` x `cols` outputs for row blocks, 1 x `gemv_cols` for a
    single row; the target's f32 `lanes` (a product's vectors may be narrower)."""

    rows: int
    cols: int
    gemv_cols: int
    lanes: int

    @property
    def columns(self) -> int:
        """Column blocks of both kernels end on multiples of this."""
        return math.lcm(self.cols, self.gemv_cols)


def lower_quant_linear(op: tdsl.LinearOp, view: QuantView, planes: list[VectorCodes], blocking: Blocking) -> None:
    """Replace a bufferized linear with a quantized weight by its vector nest."""
    out = op.out
    assert out is not None
    tn = (op.tile_sizes or TARGET_TILES["cpu"][tdsl.LinearOp])[1]
    tn = max(blocking.columns, tn // blocking.columns * blocking.columns)  # n-tiles of whole column blocks
    n_size, k_size = op.rhs.type.dims  # type: ignore[attr-defined]
    b = before(op)
    m, n = b.size(op.lhs, 0), b.size(out, 1)
    inputs = [PlaneInput(codes, _lane_order(b, op.lhs, m, k_size, codes)) for codes in planes]
    segment = view.group if view.per == "group" else k_size
    width = planes[0].width
    sums = _segment_sums(b, op.lhs, m, k_size, segment, width) if view.layout.float_offset else None
    kernel = QuantKernel(inputs, view, out, k_size, segment, sums)
    least = least_bytes(PREFETCH_STEP_BYTES, blocking.lanes)
    ahead = rows_ahead(view.buffers["values"].type, k_size, kernel.step, blocking.gemv_cols, least)
    gemv = replace(kernel, ahead=ahead)
    groups = -(-k_size // segment)
    halves = [view.buffers[r].type.element_type != f32 for r in ("scales", "offsets") if r in view.buffers]  # type: ignore[attr-defined]
    widen = groups > 1 and any(halves)  # f32 ones are broadcast where they are stored
    block = Shape(width, blocking.rows, blocking.cols)
    one_row, corner = Shape(width, 1, blocking.gemv_cols), Shape(width, 1, 1)
    ragged_n = n_size < 0 or n_size % blocking.columns != 0  # a symbolic N may be ragged

    i_end = floor_to(b, b.index(0), m, block.rows)

    def columns(b: LoopBuilder, j0: SSAValue) -> tuple[SSAValue, SSAValue]:
        """The n-tile's end, and where its whole column blocks end."""
        j1 = span(b, j0, tn, n)
        return j1, floor_to(b, j0, j1, blocking.columns) if ragged_n else j1

    def blocks(s: Shape, j0: SSAValue, jc: SSAValue, by: QuantKernel = kernel) -> Body:
        return lambda b, i: for_(b, j0, jc, s.cols, lambda b, j: by.emit(b, s, i, j), "j")

    def row_blocks(b: LoopBuilder, j0: SSAValue) -> None:
        for_(b, b.index(0), i_end, block.rows, blocks(block, j0, columns(b, j0)[1]), "i")
        if not widen:
            rows_left(b, j0)

    def rows_left(b: LoopBuilder, j0: SSAValue) -> None:
        """The rows left after the row blocks, the ragged last columns, the epilogue."""
        j1, jc = columns(b, j0)
        if widen:  # its GEMV blocks' widened scales, in scratch of the n-tile (of one thread)

            def widened_rows(b: LoopBuilder) -> Sequence[SSAValue]:
                widened = _scratch(b, m, [2 * one_row.cols, groups], "widened")
                for_(b, i_end, m, 1, blocks(one_row, j0, jc, replace(gemv, widened=widened)), "i")
                b.b.insert(memref.DeallocOp.get(widened))
                return []

            b.if_(b.insert(arith.CmpiOp(i_end, m, "ult")), widened_rows, [])
        else:
            for_(b, i_end, m, 1, blocks(one_row, j0, jc, gemv), "i")
        if ragged_n:  # the last columns, one at a time for every row
            TileNest(b, out, b.index(0), m, jc, j1).each(lambda b, i, j: kernel.emit(b, corner, i, j))
        apply_epilogue(op, TileNest(b, out, b.index(0), m, j0, j1))

    for_(b, b.index(0), n, tn, row_blocks, "j0")
    if widen:  # a loop of its own: a call (the scratch's allocation) in the row blocks' costs them 7%
        for_(b, b.index(0), n, tn, rows_left, "j0")
    for scratch in [*(p.x for p in inputs), sums]:
        if scratch is not None and scratch is not op.lhs:
            b.b.insert(memref.DeallocOp.get(scratch))


def _quant_codes(op: tdsl.LinearOp, max_width: int) -> tuple[QuantView, list[VectorCodes]] | None:
    """The weight's view and the vector decoders of its planes when the product is f32
    (or bf16/f16) activations times a uniform quantized weight whose scale groups (the ragged last one
    too) are whole steps of a vector width."""
    w = op.rhs
    if op.out is None or not isinstance(w.owner, AssembleOp):
        return None
    if not isinstance(w.type, PackedType) or not isinstance(w.type.layout, UniformQuantAttr):
        return None
    if not (computes_in_f32(op.lhs) and computes_in_f32(op.out)):
        if not isinstance(op.lhs.type, PackedType):  # int8 activations are tdsl-vectorize-integer's
            decline(op, f"{NAME}: its kernels take f32, bf16 or f16 activations and results")
        return None
    if w.type.dims[1] < 0:  # a symbolic K: the generic loop nest (a symbolic N is read at run time here)
        decline(op, f"{NAME}: the weight's K is a symbol (its kernels need a static K)")
        return None
    view = QuantView.of(w)
    unit, k_size = view.decoder.code.unit, w.type.dims[1]
    width = max_width
    while width >= MIN_WIDTH and (view.group % (unit * width) or k_size % (unit * width)):
        width //= 2
    if width < MIN_WIDTH:
        decline(op, f"{NAME}: K ({k_size}) or the scale group ({view.group}) is not a multiple of "
                    f"{unit * MIN_WIDTH} codes, a vector of {MIN_WIDTH} lanes")  # fmt: skip
        return None
    return view, view.decoder.planes(width)


@dataclass
class QuantStream:
    """out[i:i+rows, j:j+chunks*chunk] = x[i:i+rows, :] @ dequantize(w)[:, j:...] for a
    weight stored [K, N], codes along N (the axpy form: no reductions, w read along
    whole rows). Per k, each chunk of codes is loaded once and decoded field by field
    (lane t of field f holds column P*t + f, times 2^(b*f): VectorCodes), multiplied by
    the scale of (k, its group) unless scales are per column or per tensor, and added
    to every row's accumulator times the broadcast x[i, k]. At the end each field is
    scaled by 2^-(b*f) (exact), the fields are interleaved back into column order, and
    per-column or per-tensor scales are applied."""

    x: SSAValue
    w: QuantView
    codes: VectorCodes
    out: SSAValue

    @property
    def scaled_at_end(self) -> bool:
        return self.w.layout.per_column or self.w.per == "tensor"

    @property
    def offsets(self) -> bool:
        """Whether each (k, group) adds a constant to its values (a float zero's offset,
        or -scale * zero point): one more accumulator per chunk, added at the end."""
        return not self.w.symmetric

    @property
    def accumulators_per_chunk(self) -> int:
        return self.codes.per_byte + self.offsets

    def emit(self, b: LoopBuilder, i: SSAValue, rows: int, j: SSAValue, chunks: int, k_size: SSAValue) -> None:
        codes, p, per_chunk = self.codes, self.codes.per_byte, self.accumulators_per_chunk
        xs_at, cols = offsets(b, i, rows), [b.offset(j, c * codes.chunk) for c in range(chunks)]
        base = None if codes.base is None else b.splat(codes.vec, float(codes.base))  # None: unsigned codes
        fields = [(mask, codes.bias(b, base, unit)) for mask, unit in (codes.constant_phase(b, f) for f in range(p))]

        def step(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            x_k = [b.load(self.x, [r, k]) for r in xs_at]
            xs = [b.splat_value(x, codes.width) for x in x_k]
            new = list(acc)
            for c, col in enumerate(cols):
                word = codes.load(b, self.w.buffers["values"], k, col)
                g = self.w.group_of(b, col)
                scale = None if self.scaled_at_end else self.w.scale(b, k, g)
                if self.offsets:
                    offset = self._offset(b, k, g, scale)
                    for r, xv in enumerate(xs):
                        at = (r * chunks + c) * per_chunk + p
                        new[at] = b.insert(vector.FMAOp(xv, b.splat_value(offset, codes.width), new[at]))
                row_xs = xs
                if scale is not None and rows == 1:  # one broadcast of x * scale, not a product per field
                    row_xs, scale = [b.splat_value(b.fmul(x_k[0], scale), codes.width)], None
                for f, (mask, bias) in enumerate(fields):
                    q = codes.field(b, word, mask, bias)
                    q = q if scale is None else b.fmul(q, b.splat_value(scale, codes.width))
                    for r, xv in enumerate(row_xs):
                        at = (r * chunks + c) * per_chunk + f
                        new[at] = b.insert(vector.FMAOp(xv, q, new[at]))
            return new

        zeros = [b.splat(codes.vec, 0.0)] * (rows * chunks * per_chunk)
        totals = b.loop(b.index(0), k_size, b.index(1), step, zeros, name="k")
        for r, row in enumerate(xs_at):
            for c, col in enumerate(cols):
                at = (r * chunks + c) * per_chunk
                parts = [b.fmul(t, b.splat(codes.vec, codes.x_scale(f))) if f else t
                         for f, t in enumerate(totals[at : at + p])]  # fmt: skip
                for v, vec in enumerate(column_order(b, parts)):
                    j_v = b.offset(col, v * codes.width)
                    vec = self._end_scale(b, vec, j_v)
                    b.vstore(b.fadd(vec, totals[at + p]) if self.offsets else vec, self.out, [row, j_v])

    def _offset(self, b: LoopBuilder, k: SSAValue, g: SSAValue, scale: SSAValue | None) -> SSAValue:
        """What group g of row k adds to each value beyond scale * code: a float zero's
        offset, or -scale * zero point."""
        if self.w.layout.float_offset:
            return self.w.offset(b, k, g)
        assert scale is not None, "zero points with scales per row or group"
        zero_point = b.insert(arith.SIToFPOp(self.w.zero_point(b, k, g), f32))
        return b.insert(arith.NegfOp(b.fmul(scale, zero_point)))

    def _end_scale(self, b: LoopBuilder, vec: SSAValue, j: SSAValue) -> SSAValue:
        if self.w.layout.per_column:
            return b.fmul(vec, b.vload(self.w.buffers["scales"], [j], self.codes.width))
        if self.w.per == "tensor":
            return b.fmul(vec, b.splat_value(self.w.scale(b, j, j), self.codes.width))
        return vec

    def scalar(self, b: LoopBuilder, i: SSAValue, j: SSAValue, k_size: SSAValue) -> None:
        """out[i, j] alone: the columns past the last whole chunk."""
        (total,) = b.loop(b.index(0), k_size, b.index(1),
                          lambda b, k, acc: [b.mul_add(acc[0], b.load(self.x, [i, k]), self.w.value(b, k, j))],
                          [b.f32(0.0)], name="k")  # fmt: skip
        b.store(total, self.out, [i, j])


def _lanes(v: SSAValue) -> int:
    return v.type.get_shape()[0]  # type: ignore[attr-defined]


def column_order(b: LoopBuilder, fields: list[SSAValue]) -> list[SSAValue]:
    """The P vectors of a chunk's codes in order, from its fields (code P*t + f is lane t
    of field f): the fields concatenated, then each vector's lanes picked."""
    p, width = len(fields), _lanes(fields[0])
    if p == 1:
        return fields
    cat = concatenated(b, fields)
    return [b.insert(vector.ShuffleOp(cat, cat, DenseArrayBase.from_list(i64, [m % p * width + m // p for m in range(v * width, (v + 1) * width)]),
                                      result_type=VectorType(f32, [width])))
            for v in range(p)]  # fmt: skip


PANEL_ROWS = 16
"""bf16 activations of at least this many rows meet the weight dequantized into panels of
bf16 pairs for tdsl-microkernel's PairKernel (`bf16_panels`): the panel's decoding costs
about what ten rows' products do, and vdpbf16ps makes twice the FMA's products."""

def dequantize_panel(b: LoopBuilder, w: QuantView, codes: VectorCodes, n0: SSAValue, rows: SSAValue,
                     k_size: int, panel: SSAValue) -> None:  # fmt: skip
    """panel[r, :] = dequantize(w)[n0 + r, :] for r < rows, a chunk of codes at a time:
    its fields decoded (VectorCodes), scaled, put back in column order and stored
    (rounded to the panel's dtype)."""
    values = w.buffers["values"]

    def row(b: LoopBuilder, r: SSAValue) -> None:
        n = b.add(n0, r)

        def chunk(b: LoopBuilder, k: SSAValue) -> None:
            g = w.group_of(b, k)
            scale = None if w.layout.per_column else w.scale(b, n, g)
            word = codes.load(b, values, n, k)
            base = group_base(b, w, codes, n, g)
            parts = []
            for f in range(codes.per_byte):
                mask, unit = codes.constant_phase(b, f)
                q = codes.field(b, word, mask, codes.bias(b, base, unit))
                factor = b.f32(codes.x_scale(f)) if scale is None else b.fmul(scale, b.f32(codes.x_scale(f)))
                parts.append(b.fmul(q, b.splat_value(factor, codes.width)))
            for v, vec in enumerate(column_order(b, parts)):
                at = b.offset(k, v * codes.width)
                if w.layout.per_column:
                    vec = b.fmul(vec, b.vload(w.buffers["scales"], [at], codes.width))
                if w.layout.float_offset:
                    vec = b.fadd(vec, b.splat_value(w.offset(b, n, g), codes.width))
                b.vstore(vec, panel, [r, at])

        for_(b, b.index(0), b.index(k_size), codes.chunk, chunk, "k")

    for_(b, b.index(0), rows, 1, row, "r")


Decode = Callable[[LoopBuilder, SSAValue, SSAValue, SSAValue], None]
"""decode(b, n0, count, staging): the weight's rows n0 .. n0 + count (at most 16) in bf16
into staging's rows 0 .. count."""


def lower_panels(op: tdsl.LinearOp, decode: Decode) -> None:
    """A bufferized linear of bf16 x and an encoded weight (k a multiple of PAIR_STEP) as,
    per n-tile, a panel of the tile's decoded weight rows in bf16 pairs (16 rows at a time
    decoded into `staging`, then packed by tdsl-microkernel's pack_pairs) times x by its
    PairKernel straight into out; then the epilogue."""
    out = op.out
    assert out is not None
    n_size, k_size = op.rhs.type.dims  # type: ignore[attr-defined]
    tn = min(pair_tile(k_size), -(-n_size // 16) * 16)
    b = before(op)
    m, n = b.size(op.lhs, 0), b.size(out, 1)
    panel = pair_panel_alloc(b, k_size, tn)
    staging = b.insert(memref.AllocOp.get(bf16, BUFFER_ALIGNMENT, [16, k_size]))

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        rows = b.insert(arith.SubiOp(span(b, j0, tn, n), j0))

        def group(b: LoopBuilder, r0: SSAValue) -> None:
            count = b.min(b.index(16), b.insert(arith.SubiOp(rows, r0)))
            decode(b, b.add(j0, r0), count, staging)
            pack_pairs(b, staging, (b.index(0), count), k_size, panel, r0)

        for_(b, b.index(0), rows, 16, group, "r0")
        TileNest(b, out, b.index(0), m, j0, b.add(j0, rows)).zero()
        pair_panel(b, PAIR_SHAPE, PairKernel(op.lhs, panel, out, j0), m, rows, k_size)

    for_(b, b.index(0), n, tn, n_tile, "j0")
    for buffer in (panel, staging):
        b.b.insert(memref.DeallocOp.get(buffer))
    apply_epilogue(op, TileNest(b, out, b.index(0), m, b.index(0), n))


def lower_panels_or(op: tdsl.LinearOp, decode: Decode, fewer: Callable[[tdsl.LinearOp], None],
                    rows: int = PANEL_ROWS) -> None:  # fmt: skip
    """At least `rows` rows: lower_panels; fewer: `fewer` (the format's own kernels)."""
    b = before(op)
    many = b.insert(arith.CmpiOp(b.size(op.lhs, 0), b.index(rows), "uge"))
    panels, kernels = op.clone(), op.clone()
    b.b.insert(scf.IfOp(many, [], Region(Block([panels, scf.YieldOp()])), Region(Block([kernels, scf.YieldOp()]))))
    lower_panels(panels, decode)
    fewer(kernels)
    for copy in (panels, kernels):
        Rewriter.erase_op(copy)


def lower_quant_matmul(op: tdsl.MatmulOp, view: QuantView, codes: VectorCodes, accumulators: int) -> None:
    """Replace a bufferized matmul of x and a [K, N] quantized weight by QuantStream
    kernels: per n-tile (its codes stay in L2 across row blocks) blocks of `rows` rows
    x a few chunks, then the rows left one at a time x the whole tile; the chunks past
    the last whole tile and the columns past the last whole chunk one by one."""
    out = op.out
    assert out is not None
    kernel = QuantStream(op.lhs, view, codes, out)
    p = kernel.accumulators_per_chunk
    rows = min(4, max(1, accumulators // p))
    block_chunks = max(1, accumulators // (rows * p))
    gemv_chunks = max(1, accumulators // p) // block_chunks * block_chunks  # a tile of whole blocks
    tile = gemv_chunks * codes.chunk
    b = before(op)
    m, n, k_size = b.size(op.lhs, 0), b.size(out, 1), b.size(op.lhs, 1)
    i_end, tiles_end = floor_to(b, b.index(0), m, rows), floor_to(b, b.index(0), n, tile)

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        for_(b, b.index(0), i_end, rows, lambda b, i: for_(b, j0, b.add(j0, b.index(tile)), block_chunks * codes.chunk,
                                                           lambda b, j: kernel.emit(b, i, rows, j, block_chunks, k_size), "j"), "i")  # fmt: skip
        for_(b, i_end, m, 1, lambda b, i: kernel.emit(b, i, 1, j0, gemv_chunks, k_size), "i")

    for_(b, b.index(0), tiles_end, tile, n_tile, "j0")
    chunks_end = floor_to(b, tiles_end, n, codes.chunk)
    TileNest(b, out, b.index(0), m, tiles_end, chunks_end).rows(
        lambda b, i: for_(b, tiles_end, chunks_end, codes.chunk, lambda b, j: kernel.emit(b, i, 1, j, 1, k_size), "j"))
    TileNest(b, out, b.index(0), m, chunks_end, n).each(lambda b, i, j: kernel.scalar(b, i, j, k_size))
    apply_epilogue(op, TileNest(b, out, b.index(0), m, b.index(0), n))


def _filled_by_dequantize(op: tdsl.MatmulOp) -> tdsl.DequantizeOp | None:
    """The dequantize that fills op's rhs, where that buffer exists for op alone
    (allocated, filled, read by op, freed)."""
    rhs = op.rhs
    if not isinstance(rhs.owner, memref.AllocOp):
        return None
    users = [use.operation for use in rhs.uses]
    fills = [u for u in users if isinstance(u, tdsl.DequantizeOp) and u.out is rhs]
    if len(fills) != 1 or any(u is not op and u is not fills[0] and not isinstance(u, memref.DeallocOp) for u in users):
        return None
    return fills[0]


def _stream_codes(op: tdsl.MatmulOp, fill: tdsl.DequantizeOp, max_width: int) -> tuple[QuantView, VectorCodes] | None:
    """The weight's view and its decoder when QuantStream reads it: f32 (bf16/f16)
    activations and results, symmetric codes of one bit plane, scale groups of whole
    chunks."""
    w = fill.input
    if op.out is None or not isinstance(w.owner, AssembleOp) or not isinstance(w.type, PackedType):
        return None
    layout = w.type.layout
    if not isinstance(layout, UniformQuantAttr) or len(op.out.type.get_shape()) != 2:  # type: ignore[attr-defined]
        return None
    if not (computes_in_f32(op.lhs) and computes_in_f32(op.out)):
        decline(op, f"{NAME}: its [K, N] kernel takes f32, bf16 or f16 activations and results")
        return None
    view = QuantView.of(w)
    code = view.decoder.code
    if len(code.planes) != 1:
        decline(op, f"{NAME}: its [K, N] kernel reads codes of one bit plane, not {layout.summary()}")
        return None
    if not layout.is_symmetric and (layout.per_column or view.per == "tensor"):
        decline(op, f"{NAME}: its [K, N] kernel reads zero points per row or group, not {layout.summary()}")
        return None
    if view.per == "group" and view.group < 0:
        return None
    per_byte = code.planes[0].per_byte
    width = max_width
    while width >= MIN_WIDTH and view.per == "group" and view.group % (per_byte * width):
        width //= 2
    if width < MIN_WIDTH:
        decline(op, f"{NAME}: the scale group ({view.group}) is not a multiple of {per_byte * MIN_WIDTH} codes")
        return None
    return view, view.decoder.planes(width)[0]


@dataclass
class VectorizeQuantMatmul(RewritePattern):
    width: int
    accumulators: int

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.MatmulOp, rewriter: PatternRewriter, /):
        fill = _filled_by_dequantize(op)
        if fill is None or (found := _stream_codes(op, fill, self.width)) is None:
            return
        scratch = op.rhs
        lower_quant_matmul(op, *found, self.accumulators)
        rewriter.erase(op)
        rewriter.erase(fill)
        for use in list(scratch.uses):
            rewriter.erase(use.operation)
        rewriter.erase(scratch.owner)  # type: ignore[arg-type]


@dataclass
class VectorizeQuantLinear(RewritePattern):
    width: int
    blocking: Blocking
    bf16_panels: bool

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.LinearOp, rewriter: PatternRewriter, /):
        found = _quant_codes(op, self.width)
        if found is None:
            return
        view, planes = found
        k_size = op.rhs.type.dims[1]  # type: ignore[attr-defined]
        if (self.bf16_panels and element_type(op.lhs) == bf16 and len(planes) == 1 and self.width == 16
                and pairs_fit(k_size)):  # fmt: skip
            decode: Decode = lambda b, n0, rows, staging: dequantize_panel(  # noqa: E731
                b, view, planes[0], n0, rows, k_size, staging)
            lower_panels_or(op, decode, lambda copy: lower_quant_linear(copy, view, planes, self.blocking))
        else:
            lower_quant_linear(op, view, planes, self.blocking)
        rewriter.erase(op)


@dataclass(frozen=True)
class VectorizeQuant(ModulePass):
    """At most `width` f32 lanes per vector (16 for AVX-512, 8 for AVX2, 4 for
    SSE/NEON; fewer when a scale group is smaller than a chunk); a `rows` x `cols`
    block of outputs per row block (2*rows*cols accumulators: the segment's dot
    products and the scaled totals), `gemv_cols` outputs for a single row."""

    name = NAME

    width: int = 16
    rows: int = 4
    cols: int = 2
    gemv_cols: int = 4
    accumulators: int = 16
    """QuantStream's vector accumulators (half the vector registers)."""
    bf16_panels: bool = False
    """bf16 activations of PANEL_ROWS rows or more meet dequantized bf16 panels of the
    weight through tdsl-microkernel's vdpbf16ps kernel (set where it has one: AVX-512 BF16)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if min(self.width, self.rows, self.cols, self.gemv_cols) <= 0:
            raise DiagnosticException("tdsl-vectorize-quant: width, rows, cols and gemv_cols must be positive")
        if self.width & (self.width - 1):
            raise DiagnosticException(f"tdsl-vectorize-quant: width must be a power of two, got {self.width}")
        blocking = Blocking(self.rows, self.cols, self.gemv_cols, self.width)
        patterns = [VectorizeQuantLinear(self.width, blocking, self.bf16_panels),
                    VectorizeQuantMatmul(self.width, self.accumulators)]  # fmt: skip
        PatternRewriteWalker(GreedyRewritePatternApplier(patterns), apply_recursively=False).rewrite_module(op)
