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
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, memref, vector
from xdsl.dialects.builtin import (
    DenseArrayBase,
    ModuleOp,
    VectorType,
    f32,
    i32,
    i64,
)
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.codegen.loop_builder import LoopBuilder, computes_in_f32
from stoicc_py.codegen.quant_decode import VectorCodes
from stoicc_py.codegen.quant_loops import QuantView
from stoicc_py.codegen.remarks import decline
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import BUFFER_ALIGNMENT, AssembleOp, PackedType
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.passes.tdsl_lower_to_loops import TileNest, apply_epilogue, before, span
from stoicc_py.passes.tdsl_microkernel import Body, Shape, floor_to, for_, reduce_add
from stoicc_py.passes.tdsl_tile import TARGET_TILES

NAME = "tdsl-vectorize-quant"

MIN_WIDTH = 4
"""The narrowest vectors used: smaller scale groups (e.g. one scale per column) stay scalar."""

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

        def segment(b: LoopBuilder, k0: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            return self._segment(b, rows, cols, k0, acc)

        totals = b.loop(b.index(0), b.index(self.k_size), b.index(self.segment), segment, zeros, name="s")
        for s, total in enumerate(totals):
            b.store(reduce_add(b, total), self.out, [rows[s // shape.cols], cols[s % shape.cols]])

    def _segment(self, b: LoopBuilder, rows: list[SSAValue], cols: list[SSAValue], k0: SSAValue,
                 totals: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
        """totals + scale * (codes k0 .. k0+segment . x) for each (row, col)."""
        codes = self.codes
        g = b.div(k0, b.index(self.segment))
        bases = [self._base(b, col, g) for col in cols]
        zeros = [b.splat(codes.vec, 0.0)] * len(totals)
        k1 = b.add(k0, b.index(self.segment))
        if self.k_size % self.segment:  # the last group holds the rest of the row
            k1 = b.min(k1, b.index(self.k_size))
        dots = b.loop(k0, k1, b.index(self.step), self._chunk(rows, cols, bases), zeros, name="k")
        new = list(totals)
        for c, col in enumerate(cols):
            scale = b.insert(vector.BroadcastOp(self.w.scale(b, col, g), codes.vec))
            for r in range(len(rows)):
                at = r * len(cols) + c
                new[at] = b.insert(vector.FMAOp(scale, dots[at], totals[at]))
        if self.sums is not None:  # + offset * sum(x) of the segment
            at_g = b.mul(g, b.index(codes.width))
            xs = [b.vload(self.sums, [row, at_g], codes.width) for row in rows]
            for c, col in enumerate(cols):
                offset = b.insert(vector.BroadcastOp(self.w.offset(b, col, g), codes.vec))
                for r, x_sum in enumerate(xs):
                    new[r * len(cols) + c] = b.insert(vector.FMAOp(offset, x_sum, new[r * len(cols) + c]))
        return new

    def _base(self, b: LoopBuilder, col: SSAValue, g: SSAValue) -> SSAValue | None:
        """u - q of the fields of weight row `col` in group g, as f32 lanes; None with a float
        zero (q = u: nothing to subtract)."""
        if self.w.layout.float_offset:
            return None
        if self.codes.base is not None:
            return b.splat(self.codes.vec, float(self.codes.base))
        zp = b.load(self.w.buffers["zero_points"], self.w.scale_indices(b, col, g))
        zp = b.insert(arith.SIToFPOp(b.insert(arith.ExtUIOp(zp, i32)), f32))
        return b.insert(vector.BroadcastOp(zp, self.codes.vec))

    def _chunk(self, rows: list[SSAValue], cols: list[SSAValue], bases: list[SSAValue | None]) -> Step:
        """One step: each weight row's bytes of each plane loaded once, each field used by
        every row of x."""

        def step(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            for plane in self.planes:
                for at in range(0, self.step, plane.codes.chunk):
                    kc = b.add(k, b.index(at)) if at else k
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
    """The register blocks: `rows` x `cols` outputs for row blocks, 1 x `gemv_cols` for a single row."""

    rows: int
    cols: int
    gemv_cols: int

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
    block = Shape(width, blocking.rows, blocking.cols)
    one_row, corner = Shape(width, 1, blocking.gemv_cols), Shape(width, 1, 1)
    ragged_n = n_size < 0 or n_size % blocking.columns != 0  # a symbolic N may be ragged

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        j1 = span(b, j0, tn, n)
        jc = floor_to(b, j0, j1, blocking.columns) if ragged_n else j1

        def blocks(s: Shape) -> Body:
            return lambda b, i: for_(b, j0, jc, s.cols, lambda b, j: kernel.emit(b, s, i, j), "j")

        i_end = floor_to(b, b.index(0), m, block.rows)
        for_(b, b.index(0), i_end, block.rows, blocks(block), "i")
        for_(b, i_end, m, 1, blocks(one_row), "i")
        tile = TileNest(b, out, b.index(0), m, j0, j1)
        if ragged_n:  # the last columns, one at a time for every row
            TileNest(b, out, b.index(0), m, jc, j1).each(lambda b, i, j: kernel.emit(b, corner, i, j))
        apply_epilogue(op, tile)

    for_(b, b.index(0), n, tn, n_tile, "j0")
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
class VectorizeQuantLinear(RewritePattern):
    width: int
    blocking: Blocking

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.LinearOp, rewriter: PatternRewriter, /):
        found = _quant_codes(op, self.width)
        if found is None:
            return
        lower_quant_linear(op, *found, self.blocking)
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

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if min(self.width, self.rows, self.cols, self.gemv_cols) <= 0:
            raise DiagnosticException("tdsl-vectorize-quant: width, rows, cols and gemv_cols must be positive")
        if self.width & (self.width - 1):
            raise DiagnosticException(f"tdsl-vectorize-quant: width must be a power of two, got {self.width}")
        pattern = VectorizeQuantLinear(self.width, Blocking(self.rows, self.cols, self.gemv_cols))
        PatternRewriteWalker(pattern, apply_recursively=False).rewrite_module(op)
