"""tdsl-vectorize-integer: integer products become register-blocked vector kernels
whose inner step is a 4-byte dot product per i32 lane (vpdpbusd with AVX-512 VNNI).

The products: `linear(x, w)` on i8 x i8 -> i32 (exact, wrapping like the
reference), and W8A8 / W4A8-style: int8 activations (symmetric, one scale per row)
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
for codes of at most 7 bits; 8-bit ones widen to i16 pairs for pmaddwd: DotKind);
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

With 4-byte lanes (VNNI, pmaddubsw), a call of PANEL_MIN_ROWS rows or more of a product with one scale group
per row, no zero points and whole steps of k runs its whole blocks of rows in the
outer-product form instead (PanelKernel): w packed per n-tile into a panel of dwords
of k, so that accumulators hold whole outputs and need neither reduction nor a
per-block offset of w (as oneDNN's and ggml's VNNI kernels). Its results are the same
bits as the dot-product blocks'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from xdsl.context import Context
from xdsl.dialects import arith, llvm, memref, vector
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    IntegerType,
    MemRefType,
    ModuleOp,
    VectorType,
    f32,
    i8,
    i16,
    i32,
)
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

from stoicc_py.codec.uniform import CodeBits, Sign
from stoicc_py.codegen import quant_loops
from stoicc_py.codegen.loop_builder import FAST, LoopBuilder, computes_in_f32
from stoicc_py.codegen.prefetch import STEP_BYTES, least_bytes, prefetch_rows, rows_ahead, steps_to_line
from stoicc_py.codegen.quant_decode import CodeDecoder
from stoicc_py.codegen.quant_loops import QuantView
from stoicc_py.codegen.remarks import decline
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import BUFFER_ALIGNMENT, AssembleOp, PackedType
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.passes.tdsl_lower_to_loops import TileNest, apply_epilogue, before, span
from stoicc_py.passes.tdsl_microkernel import Shape, blocks, floor_to, for_, ragged, register_blocks, shuffle, transpose
from stoicc_py.passes.tdsl_tile import TARGET_TILES

NAME = "tdsl-vectorize-integer"

Code = Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]
"""The integer code at (row, k) as i32: the scalar tail's operand."""
Scale = Callable[[LoopBuilder, SSAValue], SSAValue]
"""The f32 scale of a row of x, or of a row of w (an output column)."""
GroupScale = Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]
"""The f32 scale of a weight row's group."""
Step = Callable[[LoopBuilder, SSAValue, Sequence[SSAValue]], Sequence[SSAValue]]


def _sext(b: LoopBuilder, value: SSAValue) -> SSAValue:
    return b.insert(arith.ExtSIOp(value, i32))


def _widen(b: LoopBuilder, v: SSAValue, type: VectorType, signed: bool) -> SSAValue:
    # xDSL's arith.extsi/extui take scalars only; LLVM's casts take vectors.
    return b.insert(llvm.SExtOp(v, type) if signed else llvm.ZExtOp(v, type))


class DotKind(Enum):
    """How a step multiplies weight bytes (unsigned) by activation bytes (signed) into i32 lanes."""

    VNNI = "vnni"
    """vpdpbusd: the 4 products of a lane's bytes added to it in one instruction."""
    MADD = "madd"
    """pmaddubsw then pmaddwd by ones (SSSE3, AVX2, AVX-512BW): vpdpbusd's lane sums in
    two instructions, as ggml's AVX2 kernels step. pmaddubsw saturates its i16 pair sums,
    which stay exact for weight bytes below 128 (|2 * 127 * -128| < 2^15): codes of at
    most 7 bits, offset or not; 8-bit codes step as PAIRS."""
    PAIRS = "pairs"
    """Bytes widened to i16, pmaddwd: 2 bytes a lane, any bytes."""
    WIDEN = "widen"
    """Bytes widened to i32, multiplied and added: 1 byte a lane (LLVM picks vpmaddwd,
    or vpdpwssd): no target's intrinsic."""


PMADDUBSW = {4: "llvm.x86.ssse3.pmadd.ub.sw.128", 8: "llvm.x86.avx2.pmadd.ub.sw", 16: "llvm.x86.avx512.pmaddubs.w.512"}
PMADDWD = {4: "llvm.x86.sse2.pmadd.wd", 8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}
"""x86's byte and word multiply-adds by i32 lanes of their results."""
BYTES_PER_LANE = {DotKind.VNNI: 4, DotKind.MADD: 4, DotKind.PAIRS: 2, DotKind.WIDEN: 1}


@dataclass(frozen=True)
class Dot:
    """How `lanes` i32 accumulators gather products of weight bytes (unsigned) and
    activation bytes (signed), `step` bytes of each per instruction."""

    lanes: int
    kind: DotKind

    @property
    def step(self) -> int:
        return BYTES_PER_LANE[self.kind] * self.lanes

    @property
    def dwords(self) -> bool:
        """Whether a lane sums 4 consecutive bytes (vpdpbusd's, PanelKernel's layout)."""
        return BYTES_PER_LANE[self.kind] == 4

    @property
    def acc(self) -> VectorType:
        return VectorType(i32, [self.lanes])

    @property
    def bytes(self) -> VectorType:
        return VectorType(i8, [self.step])

    @property
    def words(self) -> VectorType:
        return VectorType(i16, [2 * self.lanes])

    def for_bits(self, bits: int) -> Dot:
        """This dot for weight codes of `bits` (MADD's bytes must stay below 128)."""
        return replace(self, kind=DotKind.PAIRS) if self.kind is DotKind.MADD and bits > 7 else self

    def fitting(self, groups: Groups) -> Dot | None:
        """This dot, or with several groups the widest one (down to 4 lanes) whose
        steps tile a group: each group's dot product is then exact on its own."""
        lanes = self.lanes
        while groups.count > 1 and lanes >= 4 and groups.ragged(replace(self, lanes=lanes).step):
            lanes //= 2
        return replace(self, lanes=lanes) if lanes >= 4 else None

    def spanning(self, groups: Groups, phases: int) -> int:
        """How many whole groups each step of this dot spans (Groups.per_step), where
        an accumulator of `phases` columns has lanes for each of its columns' groups."""
        per = groups.per_step(self.step)
        return per if per * phases <= self.lanes else 1

    def operand(self, b: LoopBuilder, v: SSAValue, signed: bool) -> SSAValue:
        """A loaded byte vector as the step takes it (done once per load, not per product)."""
        if self.dwords:
            return b.insert(vector.BitcastOp(v, self.acc))
        return _widen(b, v, self.words if self.kind is DotKind.PAIRS else self.acc, signed)

    def accumulate_all(self, b: LoopBuilder, acc: SSAValue, operands: Sequence[tuple[SSAValue, SSAValue]],
                       bits: int) -> SSAValue:  # fmt: skip
        """acc plus the dot products of every (w, x) of `operands`, weight codes of `bits`.
        With MADD, where their i16 pair sums (each at most 2 * (2^bits - 1) * 128) add up
        exactly in i16 (the P parts of int4 or int2 codes), pmaddubsw's are added before
        one pmaddwd: one pmaddwd and add per accumulator and step, as P = 1 codes take."""
        if self.kind is not DotKind.MADD or pair_bound(bits, len(operands)) >= 1 << 15:
            for w, x in operands:
                acc = self.accumulate(b, acc, w, x)
            return acc
        return b.insert(arith.AddiOp(acc, self.word_sums(b, self.pair_sums(b, operands))))

    def pair_sums(self, b: LoopBuilder, operands: Sequence[tuple[SSAValue, SSAValue]]) -> SSAValue:
        """The i16 sum of pmaddubsw's pair sums of every (w, x) (MADD; exact within pair_bound)."""
        pairs = None
        for w, x in operands:
            part = self._byte_pairs(b, w, x)
            pairs = part if pairs is None else b.insert(arith.AddiOp(pairs, part))
        assert pairs is not None
        return pairs

    @property
    def avx2(self) -> bool:
        """Whether this is AVX2's pmaddubsw/pmaddwd step (8 lanes, no VNNI), which the
        blocks arrange for (halves, _phase_x, IntegerKernel.scale_rows); VNNI's and
        AVX-512's blocks are as they were."""
        return self.lanes == 8 and self.kind in (DotKind.MADD, DotKind.PAIRS)

    @property
    def halves(self) -> int:
        """The 128-bit halves of AVX2's vectors that the blocks' sums keep apart: each
        holds its own accumulators' columns, so that the reductions shuffle within
        halves (unpacks), as AVX2's in-lane shuffles do, and never across them (vpermq)."""
        return 2 if self.avx2 else 1

    def _byte_pairs(self, b: LoopBuilder, w: SSAValue, x: SSAValue) -> SSAValue:
        w, x = (b.insert(vector.BitcastOp(v, self.bytes)) for v in (w, x))
        return b.insert(llvm.CallIntrinsicOp(PMADDUBSW[self.lanes], [w, x], [self.words]))

    def word_sums(self, b: LoopBuilder, pairs: SSAValue) -> SSAValue:
        return b.insert(llvm.CallIntrinsicOp(PMADDWD[self.lanes], [pairs, b.splat(self.words, 1)], [self.acc]))

    def accumulate(self, b: LoopBuilder, acc: SSAValue, w: SSAValue, x: SSAValue) -> SSAValue:
        if self.kind is DotKind.VNNI:
            name = f"llvm.x86.avx512.vpdpbusd.{32 * self.lanes}"
            return b.insert(llvm.CallIntrinsicOp(name, [acc, w, x], [self.acc]))
        if self.kind is DotKind.MADD:
            products = self.word_sums(b, self._byte_pairs(b, w, x))
        elif self.kind is DotKind.PAIRS:
            products = b.insert(llvm.CallIntrinsicOp(PMADDWD[self.lanes], [w, x], [self.acc]))
        else:
            # Both factors fit in 16 bits: LLVM multiplies them as such (vpmaddwd, or
            # vpdpwssd), not with vpmulld.
            products = b.insert(arith.MuliOp(w, x))
        return b.insert(arith.AddiOp(acc, products))

    def reduce(self, b: LoopBuilder, acc: SSAValue) -> SSAValue:
        kind = vector.CombiningKindAttr(vector.CombiningKindFlag.ADD)
        return b.insert(vector.ReductionOp.create(operands=[acc], result_types=[i32], properties={"kind": kind}))


def pair_bound(bits: int, parts: int) -> int:
    """The largest magnitude of `parts` pmaddubsw pair sums added in i16, of unsigned
    bytes below 2^bits by int8 activations: they are exact while it stays below 2^15."""
    return parts * 2 * ((1 << bits) - 1) * 128


@dataclass
class Weight:
    """Integer codes [n, k] as the decoder reads them, each code + offset: a constant,
    or with `zero_point` (i32 of a row's group) that group's zero point."""

    values: SSAValue
    decoder: CodeDecoder
    code: Code
    zero_point: GroupScale | None = None

    def signed(self, dot: Dot) -> bool:
        """Whether `dot` reads the codes as they are, signed bytes (offset 0): AVX2's i16
        pairs (PAIRS) widen int8 codes without zero points as they widen x, where
        vpdpbusd's and pmaddubsw's unsigned operand needs them offset."""
        code = self.decoder.code
        pairs = dot.avx2 and dot.kind is DotKind.PAIRS
        return pairs and self.zero_point is None and code.bits == 8 and code.sign is Sign.TWOS

    def offset(self, dot: Dot) -> int:
        """The constant offset (the row sums' factor): 2^(b-1), 1 with zero points, 0 for signed codes."""
        return 0 if self.signed(dot) else 1 if self.zero_point is not None else self.decoder.code.sign_bit

    def biased(self, b: LoopBuilder, n: SSAValue, k: SSAValue, dot: Dot) -> SSAValue:
        """Codes k .. k+step of row n, plus the offset, as unsigned bytes (signed ones: as they are)."""
        if self.signed(dot):
            return b.insert(vector.LoadOp(self.values, [n, k], dot.bytes))
        return self.decoder.offset_bytes(b, self.values, n, k, dot.step)


@dataclass(frozen=True)
class Groups:
    """The scale groups along k: `count` groups of `length` columns (None: unknown
    until the call), the last holding the rest of a row of `width` when the groups do
    not tile it (width 0: they do). A group that ends off a step, which only a single
    group (one scale per row) or the ragged last one may, ends with a scalar tail."""

    count: int
    length: int | None
    width: int = 0

    def ragged(self, step: int) -> bool:
        """Whether the whole groups end off a step."""
        return ragged(self.length, step)

    def tail(self, step: int) -> bool:
        """Whether some group (the ragged last one too) ends off a step."""
        return self.ragged(step) or bool(self.width and self.length and (self.width % self.length) % step)

    def per_step(self, step: int) -> int:
        """How many whole groups a step of `step` columns spans: more than one where
        several groups of a known length tile the row and a step (1 otherwise)."""
        if self.count == 1 or not self.length or self.width or step % self.length:
            return 1
        per = step // self.length
        return per if self.count % per == 0 else 1


@dataclass
class Product:
    """An integer product: x's int8 codes [m, k] and the weight, into `out`: the exact
    dot products (i32), or with `scales` (of x's rows, of w's rows per group) the
    f32 sum over groups of sw * dot, times sx: the order of tdsl-lower-to-loops'
    integer rows, so that the results are the same bits."""

    x: SSAValue
    w: Weight
    out: SSAValue
    groups: Groups
    scales: tuple[Scale, GroupScale] | None = None
    w_scales: SSAValue | None = None
    """w's scales buffer [n, groups] where there is one per group: read `per_step`
    groups' scales of a row at a time."""

    def x_code(self, b: LoopBuilder, i: SSAValue, k: SSAValue) -> SSAValue:
        return _sext(b, b.load(self.x, [i, k]))

    def span(self, b: LoopBuilder, g: SSAValue, step: int, count: int = 1) -> tuple[SSAValue, SSAValue, SSAValue]:
        """Where group g starts, where the whole steps of groups g..g+count end, and where they end."""
        length = self.groups.length
        size = b.size(self.x, 1) if length is None else b.index(length)
        k0 = b.mul(g, size)
        k1 = b.add(k0, size if count == 1 else b.mul(size, b.index(count)))
        if self.groups.width:  # the last group holds the rest of the row
            k1 = b.min(k1, b.index(self.groups.width))
        # several groups to a step: Groups.per_step found them whole steps
        return k0, floor_to(b, k0, k1, step) if count == 1 and self.groups.tail(step) else k1, k1


def store_results(b: LoopBuilder, p: Product, rows: list[SSAValue], j: SSAValue, lanes: int,
                  dots: Callable[[LoopBuilder, SSAValue], list[SSAValue]],
                  w_scales: Callable[[LoopBuilder, SSAValue], SSAValue], per: int = 1) -> None:  # fmt: skip
    """out[rows, j:j+lanes] from the exact dot products of groups g..g+per, `dots(b, g)`
    (per row, one i32 vector of the columns' products, lane c*per+h column c's of group
    g+h): as they are, or scaled as Product says, by the columns' w scales of these
    groups, `w_scales(b, g)` in the same lanes (called only for a scaled product)."""
    if p.scales is None:
        for row, sums in zip(rows, dots(b, b.index(0))):
            b.vstore(sums, p.out, [row, j])
        return
    x_scale = p.scales[0]
    floats = VectorType(f32, [lanes * per])

    # Each output's f32 sum over groups runs in its own lane, in group order: the
    # same operations, so the same bits, as one scalar chain per output. With several
    # groups to a vector, each product sw * dot is formed in its lane, then the
    # columns' products of each group are gathered (a shuffle) and added in order.
    def group(b: LoopBuilder, g: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
        sw = w_scales(b, g)
        terms = [b.fmul(sw, b.insert(llvm.SIToFPOp(d, floats))) for d in dots(b, g)]
        new = []
        for a, t in zip(acc, terms):
            for h in range(per):
                a = b.fadd(a, t if per == 1 else shuffle(b, t, t, list(range(h, lanes * per, per))))
            new.append(a)
        return new

    zeros = [b.splat(VectorType(f32, [lanes]), 0.0)] * len(rows)
    if p.groups.count == 1:  # no loop of one trip for LLVM to fold
        totals = group(b, b.index(0), zeros)
    else:
        totals = b.loop(b.index(0), b.index(p.groups.count), b.index(per), group, zeros, name="g")
    for row, total in zip(rows, totals):
        b.vstore(b.fmul(b.splat_value(x_scale(b, row), lanes), total), p.out, [row, j])


@dataclass
class IntegerKernel:
    """out[i:i+rows, j:j+cols] from x[i:i+rows, :] . w[j:j+cols, :]."""

    product: Product
    dot: Dot
    offsets: SSAValue | None
    """offset * the sum of x[i, :] over each group's whole steps, at [i, g] (i32); None
    where the offset is 0 (Weight.signed)."""
    per_step: int = 1
    """Groups a step spans (Groups.per_step): each accumulator holds that many groups'
    products, in consecutive segments, and one reduction serves them all."""
    ahead: int = 0
    """Rows of w ahead of each row read whose bytes a step prefetches (0: none)."""
    phase_x: SSAValue | None = None
    """x's rows as phased steps read them (_phase_x), where it is built."""
    rotation: tuple[int, int] = (1, 0)
    """The GEMV blocks' prefetch rotation (prefetch_rows): on AVX2, a line of each row
    ahead once, where each step of fewer bytes asked for it again."""
    scale_rows: SSAValue | None = None
    """Where given, [groups, c] of w's scales (as stored): a block of c columns first
    transposes its columns' scales into it, c groups at a time (_transpose_scales), and
    each group then loads its columns' scales as one vector, where it gathered them (a
    strided insert per column and group)."""

    def emit(self, b: LoopBuilder, shape: Shape, i: SSAValue, j: SSAValue) -> None:
        rows, cols = shape.indices(b, i, j)
        scale_rows = self.scale_rows
        if scale_rows is not None and len(cols) != scale_rows.type.get_shape()[1]:  # type: ignore[attr-defined]
            scale_rows = None  # the 1-column blocks of ragged columns

        def w_scales(b: LoopBuilder, g: SSAValue) -> SSAValue:
            return self._w_scales(b, cols, g) if scale_rows is None else b.vload(scale_rows, [g, b.index(0)], len(cols))

        if scale_rows is not None:
            self._transpose_scales(b, cols, scale_rows)
        store_results(b, self.product, rows, j, len(cols), lambda b, g: self._dots(b, rows, cols, g), w_scales,
                      self.per_step)  # fmt: skip

    def _transpose_scales(self, b: LoopBuilder, cols: list[SSAValue], scale_rows: SSAValue) -> None:
        """The columns' w scales into scale_rows[g, c]: c groups of c columns by a c x c
        transpose of their loads, the groups past the last whole c one column at a time."""
        scales, count, c = self.product.w_scales, self.product.groups.count, len(cols)
        assert scales is not None
        element = scales.type.element_type  # type: ignore[attr-defined]

        def groups(b: LoopBuilder, g: SSAValue) -> None:
            runs = [b.insert(vector.LoadOp(scales, [col, g], VectorType(element, [c]))) for col in cols]
            for t, run in enumerate(_interleave_transpose(b, runs)):
                b.b.insert(vector.StoreOp(run, scale_rows, [b.offset(g, t), b.index(0)]))

        def group(b: LoopBuilder, g: SSAValue) -> None:
            run = _vector_of(b, [b.insert(memref.LoadOp.get(scales, [col, g])) for col in cols])
            b.b.insert(vector.StoreOp(run, scale_rows, [g, b.index(0)]))

        for_(b, b.index(0), b.index(count // c * c), c, groups, "g")
        for_(b, b.index(count // c * c), b.index(count), 1, group, "g")

    def _w_scales(self, b: LoopBuilder, cols: list[SSAValue], g: SSAValue) -> SSAValue:
        """The columns' w scales of groups g..g+per_step, lane c*per_step+h column c's of
        group g+h: with several groups, each column's are loaded together as one integer
        (a 32- or 64-bit load, half the inserts of one per scale) and the vector of them
        bitcast back to scales."""
        p, per = self.product, self.per_step
        if per == 1:
            return _vector_of(b, [p.scales[1](b, col, g) for col in cols])  # type: ignore[index]
        assert p.w_scales is not None  # several groups: scales per group
        element = p.w_scales.type.element_type  # type: ignore[attr-defined]
        run = IntegerType(per * element.bitwidth)
        words = [b.insert(vector.ExtractOp(b.insert(vector.BitcastOp(
                    b.insert(vector.LoadOp(p.w_scales, [col, g], VectorType(element, [per]))), VectorType(run, [1]))), [0], run))
                 for col in cols]  # fmt: skip
        scales = b.insert(vector.BitcastOp(_vector_of(b, words), VectorType(element, [len(cols) * per])))
        return scales if element == f32 else b.insert(llvm.FPExtOp(scales, VectorType(f32, [len(cols) * per])))

    def _dots(self, b: LoopBuilder, rows: list[SSAValue], cols: list[SSAValue], g: SSAValue) -> list[SSAValue]:
        """The exact dot products of groups g..g+per_step: per row, the columns' as one
        i32 vector (lane c*per_step+h column c's of group g+h). Codes of P > 1 fields a
        byte in a multiple of P columns go P columns at a time: an accumulator holds all
        P, each in a P-th of its lanes (CodeDecoder.field_phases), each P-th holding the
        groups in order."""
        x, w, dot = self.product.x, self.product.w, self.dot
        groups, spanned = self.product.groups, self.per_step
        per, together, span = self.phasing(len(cols))
        k0, kv, k1 = self.product.span(b, g, span, spanned)
        blocks = len(cols) // together
        parts = dot.halves if together % dot.halves == 0 and len(cols) % (together * dot.halves) == 0 else 1
        bits = w.decoder.code.bits
        segment = dot.lanes // (together * spanned)
        levels = self._word_levels(per, segment, span)
        chunk = self._word_chunk(per) if levels is None else 0
        words = levels is not None or chunk > 0

        def weights(inner: LoopBuilder, k: SSAValue) -> list[list[SSAValue]]:
            if per > 1:
                return [[dot.operand(inner, part, False) for part in w.decoder.field_phases(inner, w.values, c, k, span)]
                        for c in _accumulator_rows(cols, together, parts)]  # fmt: skip
            return [[dot.operand(inner, w.biased(inner, col, k, dot), w.signed(dot))] for col in cols]

        def k_step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            prefetch_rows(inner, w.values, cols, self.ahead, k, x.type.get_shape()[1], self.rotation)  # type: ignore[attr-defined]
            xs = self._x_parts(inner, rows, k, per, together)
            new = list(acc)
            for c, w_parts in enumerate(weights(inner, k)):
                for r, x_parts in enumerate(xs):
                    at, operands = r * blocks + c, list(zip(w_parts, x_parts))
                    new[at] = (inner.insert(arith.AddiOp(new[at], dot.pair_sums(inner, operands))) if words
                               else dot.accumulate_all(inner, new[at], operands, bits))  # fmt: skip
            return new

        count = len(rows) * blocks
        zero = b.splat(dot.words if words else dot.acc, 0)
        if chunk:  # runs of `chunk` steps in i16, each run's words added to i32 by one pmaddwd

            def run(inner: LoopBuilder, kc: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
                end = inner.min(inner.add(kc, inner.index(chunk * span)), kv)
                sums = inner.loop(kc, end, inner.index(span), k_step, [zero] * count, name="k")
                return [inner.insert(arith.AddiOp(a, dot.word_sums(inner, v))) for a, v in zip(acc, sums)]

            accs = b.loop(k0, kv, b.index(chunk * span), run, [b.splat(dot.acc, 0)] * count, name="kc")
        else:
            accs = b.loop(k0, kv, b.index(span), k_step, [zero] * count, name="k")
        lanes = len(cols) * spanned
        offsets = None if self.offsets is None else self._offsets(b, rows, cols, g)

        def row_sums(row: Sequence[SSAValue]) -> SSAValue:
            if levels is None:
                return column_sums(b, row, segment, lanes, parts)
            # the first levels of the tree in i16 (exact: _word_levels), then the pairs' i32 sums
            words, length = merge_pairs(b, row, 2 * segment, levels, parts)
            return column_sums(b, [dot.word_sums(b, v) for v in words], length // 2, lanes, parts)

        def less_offset(r: int) -> SSAValue:
            sums = row_sums(accs[r * blocks : (r + 1) * blocks])
            return sums if offsets is None else b.insert(arith.SubiOp(sums, offsets[r]))

        sums = [less_offset(r) for r in range(len(rows))]
        if spanned == 1 and groups.tail(span):  # exact in i32: the tail's sums add in any order
            zeros = [b.insert(arith.ConstantOp.from_int_and_width(0, i32))] * (len(rows) * lanes)
            tails = b.loop(kv, k1, b.index(1), self._scalar_step(rows, cols), zeros, name="k")
            sums = [b.insert(arith.AddiOp(s, _vector_of(b, tails[r * lanes:(r + 1) * lanes])))
                    for r, s in enumerate(sums)]  # fmt: skip
        return sums

    def _offsets(self, b: LoopBuilder, rows: list[SSAValue], cols: list[SSAValue], g: SSAValue) -> list[SSAValue]:
        """Per row, what the columns' sums of groups g..g+per_step take off: the rows'
        offsets (times each group's zero point, with zero points)."""
        spanned, w, lanes = self.per_step, self.product.w, len(cols) * self.per_step
        assert self.offsets is not None
        if spanned == 1:
            offsets = [b.splat_value(b.load(self.offsets, [r, g]), lanes) for r in rows]
        else:  # the groups' offsets, repeated per column
            runs = [b.insert(vector.LoadOp(self.offsets, [r, g], VectorType(i32, [spanned]))) for r in rows]
            offsets = [shuffle(b, run, run, list(range(spanned)) * len(cols)) for run in runs]
        if w.zero_point is not None:  # offset * sum x: the group's zero point times the row's sum
            zps = _vector_of(b, [w.zero_point(b, col, b.add(g, b.index(h))) for col in cols for h in range(spanned)])
            offsets = [b.insert(arith.MuliOp(off, zps)) for off in offsets]
        return offsets

    def phasing(self, cols: int) -> tuple[int, int, int]:
        """How a block of `cols` columns steps: (P, the rows a weight vector holds, the
        codes a step spans), (P, P, step) for P > 1 phases (phase_rows), (1, 1, step) else."""
        per = self.product.w.decoder.phases
        together = phase_rows(self.dot, per, self.product.groups)
        if together == 0 or cols % together:
            return 1, 1, self.dot.step
        return per, together, self.dot.step * per // together

    def _x_parts(self, b: LoopBuilder, rows: list[SSAValue], k: SSAValue, per: int,
                 together: int) -> list[list[SSAValue]]:  # fmt: skip
        """Per row, the step's activation operands at k, in `per` phases for `together`
        weight rows (_phase_parts), read from phase_x where it is built."""
        dot, x = self.dot, self.product.x
        if per > 1 and self.phase_x is not None:
            at = b.mul(k, b.index(together))
            return [[dot.operand(b, b.insert(vector.LoadOp(self.phase_x, [row, b.offset(at, j * dot.step)], dot.bytes)), True)
                     for j in range(per)] for row in rows]  # fmt: skip
        loads = [b.insert(vector.LoadOp(x, [row, k], VectorType(i8, [dot.step * per // together]))) for row in rows]
        return [[dot.operand(b, part, True) for part in (_phase_parts(b, xv, per, together) if per > 1 else [xv])]
                for xv in loads]  # fmt: skip

    def _word_levels(self, per: int, segment: int, span: int) -> int | None:
        """With MADD, where a group's steps' pair sums (of `per` parts a step) add up
        exactly in i16 (pair_bound), the levels of the column sums' tree that still do
        (the first, while at least a pair of words per column is left for pmaddwd): the
        steps then accumulate pmaddubsw's words, one pmaddwd per tree output where P = 1
        codes took one per accumulator and step. None: the steps accumulate in i32."""
        dot, length = self.dot, self.product.groups.length
        if dot.kind is not DotKind.MADD or length is None:
            return None
        bound = length * self.per_step // span * pair_bound(self.product.w.decoder.code.bits, per)
        if bound >= 1 << 15:
            return None
        levels = 0
        while 1 << levels < segment and bound << (levels + 1) < 1 << 15:
            levels += 1
        return levels

    def _word_chunk(self, per: int) -> int:
        """On AVX2 (MADD), where more than one step's pair sums (of `per` parts a step)
        add exactly in i16 but not a group's: the steps of a run that do (ternary: 10), each
        run's words then summed by one pmaddwd into the i32 accumulators, where every step
        took one (0: none)."""
        dot = self.dot
        steps = (1 << 15) // (pair_bound(self.product.w.decoder.code.bits, per) + 1)
        return steps if dot.avx2 and dot.kind is DotKind.MADD and steps > 1 else 0

    def _scalar_step(self, rows: list[SSAValue], cols: list[SSAValue]) -> Step:
        def step(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            xs = [self.product.x_code(b, r, k) for r in rows]
            ws = [self.product.w.code(b, c, k) for c in cols]
            return [b.mul_add(acc[r * len(cols) + c], xv, wv) for r, xv in enumerate(xs) for c, wv in enumerate(ws)]

        return step


@dataclass
class PanelKernel:
    """The outer-product form, for an unscaled or per-row-scaled product whose k is a
    whole number of steps: per n-tile, the tile's rows of w are packed once, offset as
    unsigned bytes, into a `panel` of i32 [k/4, tn] (4 consecutive k of a column to a
    lane, one vector of `lanes` columns per 4 k), so that a `rows` x `cols`-vector block
    steps by `cols` vector loads, one broadcast dword of x per row and rows*cols vpdpbusd,
    its accumulators holding whole outputs: no reduction across lanes, no offset of w per
    block (tdsl-vectorize-integer's dot-product blocks spend both per block and group).

    A block stores its accumulators as they are into `sums` (i32 [rows, cols * lanes]),
    and a loop over its rows (`finish`) takes off the rows' offsets and scales them into
    out: rolled, where each accumulator's own subtraction, conversion, scaling and store
    made three quarters of the block's IR, for one store and one load of L1 per vector
    against the block's k/4 steps of `cols` vpdpbusd each. The whole blocks cover whole
    vectors of columns; a ragged last vector (packed from copies of w's last row and
    computed whole) is the 1-vector blocks', whose `finish` stores its columns of out only. Codes narrower than a byte are unpacked by a loop over the transpose's
    rows into `staging` (i8 [lanes, step]), not by `lanes` copies of their unpacking (an
    int2 row's is ~17 ops; int8's, a load and a flip, stays unrolled)."""

    product: Product
    dot: Dot
    panel: SSAValue
    offsets: SSAValue
    scales: SSAValue | None
    """With a scaled product, f32 [tn]: the panel's columns' w scales, gathered as packed
    (once per n-tile, not per block)."""
    sums: SSAValue
    staging: SSAValue | None

    def pack(self, b: LoopBuilder, j0: SSAValue, j1: SSAValue) -> None:
        """w's rows j0..j1 into the panel's columns 0..j1-j0 (and a ragged last vector's
        columns past j1 from w's last row): a step of codes per row, `lanes` rows
        transposed to dwords of k."""
        dot = self.dot
        k_size = self.product.x.type.get_shape()[1]  # type: ignore[attr-defined]
        n = self.product.out.type.get_shape()[1]  # type: ignore[attr-defined]
        # w's last row, where a vector of columns can be ragged (N not a known multiple of lanes)
        last = None if n > 0 and n % dot.lanes == 0 else b.insert(arith.SubiOp(b.size(self.product.out, 1), b.index(1)))

        def columns(b: LoopBuilder, j: SSAValue) -> None:
            column = b.insert(arith.SubiOp(j, j0))

            def step(b: LoopBuilder, k: SSAValue) -> None:
                first = b.div(k, b.index(4))
                for q, v in enumerate(transpose(b, [dot.operand(b, u, False) for u in self._codes(b, j, last, k)])):
                    b.vstore(v, self.panel, [b.add(first, b.index(q)), column])

            for_(b, b.index(0), b.index(k_size), dot.step, step, "k")

        for_(b, j0, j1, dot.lanes, columns, "j")
        if self.scales is not None and self.product.scales is not None:
            w_scale, scales = self.product.scales[1], self.scales
            for_(b, j0, j1, 1,
                 lambda b, j: b.store(w_scale(b, j, b.index(0)), scales, [b.insert(arith.SubiOp(j, j0))]), "j")  # fmt: skip

    def _codes(self, b: LoopBuilder, j: SSAValue, last: SSAValue | None, k: SSAValue) -> list[SSAValue]:
        """The offset bytes k .. k+step of w's rows j, j+1, ... (each at most `last`)."""
        dot, w, staging = self.dot, self.product.w, self.staging

        def at(b: LoopBuilder, c: SSAValue) -> SSAValue:
            row = b.add(j, c)
            return row if last is None else b.min(row, last)

        if staging is None:
            return [w.biased(b, at(b, b.index(c)), k, dot) for c in range(dot.lanes)]
        zero = b.index(0)

        def row(b: LoopBuilder, c: SSAValue) -> None:
            b.b.insert(vector.StoreOp(w.biased(b, at(b, c), k, dot), staging, [c, zero]))

        for_(b, zero, b.index(dot.lanes), 1, row, "c")
        return [b.insert(vector.LoadOp(staging, [b.index(c), zero], dot.bytes)) for c in range(dot.lanes)]

    def emit(self, b: LoopBuilder, shape: Shape, i: SSAValue, jv: SSAValue) -> None:
        """Rows i.. of the panel's vectors of columns jv.., into sums' rows 0.. (raw)."""
        p, lanes = self.product, self.dot.lanes
        rows = [b.add(i, b.index(r)) for r in range(shape.rows)]
        first = b.mul(jv, b.index(lanes))
        columns = [b.add(first, b.index(c * lanes)) for c in range(shape.cols)]

        def k_step(b: LoopBuilder, q: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            ws = [b.vload(self.panel, [q, column], lanes) for column in columns]
            k = b.mul(q, b.index(4))
            xs = [b.splat_value(_dword(b, p.x, r, k), lanes) for r in rows]
            return [self.dot.accumulate(b, acc[r * shape.cols + c], ws[c], xs[r])
                    for r in range(shape.rows) for c in range(shape.cols)]  # fmt: skip

        quads = b.index(p.x.type.get_shape()[1] // 4)  # type: ignore[attr-defined]
        accs = b.loop(b.index(0), quads, b.index(1), k_step, [b.splat(self.dot.acc, 0)] * (shape.rows * shape.cols),
                      name="q")  # fmt: skip
        for r in range(shape.rows):
            for c in range(shape.cols):
                b.vstore(accs[r * shape.cols + c], self.sums, [b.index(r), b.index(c * lanes)])

    def finish(self, b: LoopBuilder, i: SSAValue, rows: int, j: SSAValue, column: SSAValue, width: SSAValue) -> None:
        """out[i:i+rows, j:j+width] (the panel's columns column..) from a block's sums: less
        each row's offset, scaled as Product says. A whole block's width is a constant, so
        that LLVM unrolls its columns (and drops the scalar tail) as the accumulators' own
        stores were."""
        lanes = self.dot.lanes
        whole = floor_to(b, b.index(0), width, lanes)

        def row(b: LoopBuilder, r: SSAValue) -> None:
            at = b.add(i, r)
            offset = b.load(self.offsets, [at, b.index(0)])

            def columns(lanes: int) -> Callable[[LoopBuilder, SSAValue], None]:
                def body(b: LoopBuilder, c: SSAValue) -> None:
                    raw = b.insert(arith.SubiOp(b.vload(self.sums, [r, c], lanes), b.splat_value(offset, lanes)))
                    store_results(b, self.product, [at], b.add(j, c), lanes, lambda _b, _g: [raw],
                                  lambda b, _g: b.vload(self.scales, [b.add(column, c)], lanes))  # type: ignore[arg-type]  # fmt: skip

                return body

            for_(b, b.index(0), whole, lanes, columns(lanes), "j")
            for_(b, whole, width, 1, columns(1), "j")

        for_(b, b.index(0), b.index(rows), 1, row, "r")


def _dword(b: LoopBuilder, x: SSAValue, row: SSAValue, k: SSAValue) -> SSAValue:
    """x[row, k:k+4] (bytes) as one i32."""
    four = b.insert(vector.LoadOp(x, [row, k], VectorType(i8, [4])))
    return b.insert(vector.ExtractOp(b.insert(vector.BitcastOp(four, VectorType(i32, [1]))), [0], i32))


def _interleave_transpose(b: LoopBuilder, rows: list[SSAValue]) -> list[SSAValue]:
    """The n x n transpose of n vectors of n lanes (n a power of two) by log2(n) perfect
    shuffles: each pass interleaves row r with row r + n/2, low halves into row 2r, high
    ones into 2r+1 (element unpacks: 24 punpck[lh]wd for 8 x 8 half floats in xmm, where
    transpose's block swaps cost LLVM byte shuffles at 16-bit granularity)."""
    n = len(rows)
    low = [t for lane in range(n // 2) for t in (lane, n + lane)]
    for _ in range(n.bit_length() - 1):
        rows = [shuffle(b, rows[r], rows[r + n // 2], [t + half * n // 2 for t in low])
                for r in range(n // 2) for half in (0, 1)]  # fmt: skip
    return rows


def _vector_of(b: LoopBuilder, scalars: Sequence[SSAValue]) -> SSAValue:
    """The scalars as the lanes of one vector (a strided gather: per-output scales).
    Scalars widened from half floats (f16/bf16 scales) are gathered as they are stored
    and widened once, as a vector (one vcvtph2ps, not one per lane)."""
    if all(isinstance(s.owner, arith.ExtFOp) for s in scalars):
        halves = _vector_of(b, [s.owner.input for s in scalars])  # type: ignore[union-attr]
        return b.insert(llvm.FPExtOp(halves, VectorType(f32, [len(scalars)])))
    v = b.splat_value(scalars[0], len(scalars))
    for lane, s in enumerate(scalars[1:], 1):
        v = b.insert(llvm.InsertElementOp(v, s, b.insert(arith.ConstantOp.from_int_and_width(lane, i32))))
    return v


def lane_count(v: SSAValue) -> int:
    return v.type.get_shape()[0]  # type: ignore[attr-defined]


def _in_parts(b: LoopBuilder, u: SSAValue, v: SSAValue, mask: list[int], parts: int) -> SSAValue:
    """The shuffle of u and v by `mask` (over one of their `parts` equal parts and its
    twin in v), done in each part alike: the parts' lanes never mix."""
    n, total = lane_count(u) // parts, lane_count(u)
    return shuffle(b, u, v, [h * n + m if m < n else total + h * n + m - n for h in range(parts) for m in mask])


def _add_halves(b: LoopBuilder, u: SSAValue, v: SSAValue | None, length: int, parts: int = 1) -> SSAValue:
    """The lanes of u (then v's, if given) in segments of `length`: each segment's
    halves added, in segment order, within each of `parts` parts (i32 or i16 lanes, or
    f32 ones with the kernels' fast-math flags)."""
    n = lane_count(u) // parts
    firsts = [s + t for s in range(0, n * (1 if v is None else 2), length) for t in range(length // 2)]
    w = u if v is None else v
    first, second = (_in_parts(b, u, w, mask, parts) for mask in (firsts, [f + length // 2 for f in firsts]))
    if isinstance(u.type.element_type, IntegerType):  # type: ignore[attr-defined]
        return b.insert(arith.AddiOp(first, second))
    return b.insert(arith.AddfOp(first, second, FAST))


def merge_pairs(b: LoopBuilder, accs: Sequence[SSAValue], length: int, levels: int,
                parts: int = 1) -> tuple[list[SSAValue], int]:  # fmt: skip
    """column_sums' first `levels` levels (at most): accumulators merged in pairs, each
    segment folding in half; the vectors left and their segments' length. Padded with
    zero vectors to a power of two (LLVM folds their adds away)."""
    if levels <= 0:
        return list(accs), length
    level = [*accs, *[b.splat(accs[0].type, 0)] * ((1 << (len(accs) - 1).bit_length()) - len(accs))]  # type: ignore[arg-type]
    while levels > 0 and length > 1 and len(level) > 1:
        level = [_add_halves(b, u, v, length, parts) for u, v in zip(level[::2], level[1::2])]
        length, levels = length // 2, levels - 1
    return level, length


def column_sums(b: LoopBuilder, accs: Sequence[SSAValue], length: int, count: int, parts: int = 1) -> SSAValue:
    """The sums of `count` columns' lanes as one vector (i32 or f32), lane c column c's: `accs`
    hold the columns in order, each in a segment of `length` lanes (a power of two); with
    `parts`, each of their equal parts holds its own columns (part h of every accumulator
    the h-th of the columns, in order). A transposing tree of shuffles and adds, about 3
    instructions per accumulator, where a horizontal reduction of each costs
    2*log2(lanes) and a move to a scalar register."""
    level, length = merge_pairs(b, accs, length, len(accs), parts)
    while len(level) > 1:  # more columns than lanes: 1-lane segments concatenate
        level = [_in_parts(b, u, v, list(range(2 * lane_count(u) // parts)), parts)
                 for u, v in zip(level[::2], level[1::2])]  # fmt: skip
    sums = level[0]
    while length > 1:  # fewer columns than lanes: the segments fold on their own
        sums, length = _add_halves(b, sums, None, length, parts), length // 2
    if lane_count(sums) == count:
        return sums
    return _in_parts(b, sums, sums, list(range(count // parts)), parts)


def _accumulator_rows(cols: list[SSAValue], per: int, parts: int) -> list[list[SSAValue]]:
    """The weight rows of each accumulator of P = `per` phases: P consecutive columns,
    or with `parts` (column_sums' parts) the first columns of each part (a P/parts-th of
    the columns each) in part 0, the next ones in part 1, ..., so that the parts' sums
    hold the columns in order."""
    if parts == 1:
        return [cols[c : c + per] for c in range(0, len(cols), per)]
    each, run = len(cols) // parts, per // parts
    return [[col for h in range(parts) for col in cols[h * each + c : h * each + c + run]] for c in range(0, each, run)]


def _phase_parts(b: LoopBuilder, x: SSAValue, per: int, together: int) -> list[SSAValue]:
    """A step's activation bytes as CodeDecoder.field_phases pairs them with the weight's
    `together` rows: part j is the step's bytes k+j, k+j+per, ..., repeated for each row."""
    count = x.type.get_shape()[0]  # type: ignore[attr-defined]
    return [shuffle(b, x, x, list(range(j, count, per)) * together) for j in range(per)]


def phase_rows(dot: Dot, per: int, groups: Groups) -> int:
    """The weight rows of P = `per` phases whose bytes a step's vector holds: P, each a
    P-th of the step's bytes; on AVX2, one to a 128-bit half (Dot.halves), where such
    steps (of step * P / 2 codes) tile the groups: int2's and ternary's 16 bytes of 64
    codes a row, where 4 rows of 8 bytes took a 64-bit load and an insert each. 0: not
    phased (P = 1, or a row's bytes would not fill whole dwords)."""
    if per < 2:
        return 0
    together = min(per, dot.halves) if dot.halves > 1 else per
    span = dot.step * per // together
    if together < per and groups.count > 1 and (groups.length is None or groups.length % span):
        together = per
    return together if dot.step % (4 * together) == 0 else 0


def _phase_x(b: LoopBuilder, product: Product, dot: Dot, rows: tuple[SSAValue, SSAValue]) -> SSAValue | None:
    """With AVX2's MADD steps (Dot.halves) and P > 1 phases of weight codes, a scratch
    i8[m, P * K] of x's `rows` (lo, hi) permuted as the phased steps read them: the P
    parts of the step at k (_phase_parts) at P*k, P*k + step, ... Built once per call,
    so that every column block's step loads its parts (into pmaddubsw's memory operand)
    where each permuted them again (a byte shuffle and a lane permute per part)."""
    per, k_size = product.w.decoder.phases, product.x.type.get_shape()[1]  # type: ignore[attr-defined]
    together = phase_rows(dot, per, product.groups)
    span = dot.step * per // max(together, 1)
    if dot.halves == 1 or together == 0 or k_size < span:
        return None
    whole = k_size // span * span
    m_size = product.x.type.get_shape()[0]  # type: ignore[attr-defined]
    alloc = b.insert(memref.AllocOp.get(i8, BUFFER_ALIGNMENT, [m_size, together * whole], [rows[1]] if m_size < 0 else []))  # fmt: skip
    alloc.name_hint = "phase_x"

    def row(b: LoopBuilder, i: SSAValue) -> None:
        def step(b: LoopBuilder, k: SSAValue) -> None:
            at = b.mul(k, b.index(together))
            xv = b.insert(vector.LoadOp(product.x, [i, k], VectorType(i8, [span])))
            for j, part in enumerate(_phase_parts(b, xv, per, together)):
                b.b.insert(vector.StoreOp(part, alloc, [i, b.offset(at, j * dot.step)]))

        for_(b, b.index(0), b.index(whole), span, step, "k")

    for_(b, rows[0], rows[1], 1, row, "i")
    return alloc


def _scale_rows(b: LoopBuilder, product: Product, kernel: IntegerKernel, row_cols: int) -> SSAValue | None:
    """IntegerKernel.scale_rows for the GEMV blocks of AVX2's steps (Dot.avx2), where
    they read a scale per group of at least `row_cols` groups (a power of two) one group a step."""
    scales, count = product.w_scales, product.groups.count
    if scales is None or not kernel.dot.avx2 or kernel.per_step > 1 or count < row_cols or row_cols & (row_cols - 1):
        return None
    alloc = b.insert(memref.AllocOp.get(scales.type.element_type, BUFFER_ALIGNMENT, [count, row_cols]))  # type: ignore[attr-defined]
    alloc.name_hint = "scale_rows"
    return alloc


def _row_offsets(b: LoopBuilder, product: Product, dot: Dot, m: SSAValue, by: int) -> SSAValue | None:
    """A scratch i32[m, groups] of the corrections: offset `by` * the sum of x[i, :] over
    each group's whole steps, by the same dot steps against a weight of ones (None for 0)."""
    if by == 0:
        return None
    rows, groups = product.x.type.get_shape()[0], product.groups  # type: ignore[attr-defined]
    alloc = b.insert(memref.AllocOp.get(i32, BUFFER_ALIGNMENT, [rows, groups.count], [m] if rows < 0 else []))
    alloc.name_hint = "row_offsets"
    ones = dot.operand(b, b.splat(dot.bytes, 1), False)
    offset = b.insert(arith.ConstantOp.from_int_and_width(by, i32))

    def row(b: LoopBuilder, i: SSAValue) -> None:
        def k_step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            xv = dot.operand(inner, inner.insert(vector.LoadOp(product.x, [i, k], dot.bytes)), True)
            return [dot.accumulate(inner, acc[0], ones, xv)]

        def group(b: LoopBuilder, g: SSAValue) -> None:
            k0, kv, _ = product.span(b, g, dot.step)
            (acc,) = b.loop(k0, kv, b.index(dot.step), k_step, [b.splat(dot.acc, 0)], name="k")
            b.store(b.insert(arith.MuliOp(dot.reduce(b, acc), offset)), alloc, [i, g])

        for_(b, b.index(0), b.index(groups.count), 1, group, "g")

    for_(b, b.index(0), m, 1, row, "i")
    return alloc


def lower_integer(op: tdsl.LinearOp, product: Product, dot: Dot, shape: Shape, row_cols: int,
                  panel: Shape | None = None, wide: Dot | None = None) -> None:  # fmt: skip
    """Replace a bufferized integer linear by its vector kernel nest: with a `panel`
    block, PanelKernel's over the whole blocks of rows of calls of PANEL_MIN_ROWS rows or
    more; else (and for the rows left, and the columns past the panels' whole vectors)
    `shape` blocks over whole blocks of rows, then 1 x `row_cols` blocks over the rows left.
    The blocks step by `dot`, or by `wide` where its steps span several whole groups
    (Dot.spanning: groups of 32 codes two to a 64-byte step, where `dot` is narrowed to
    32-byte steps, and one reduction for both)."""
    out = op.out
    assert out is not None
    tn = (op.tile_sizes or TARGET_TILES["cpu"][tdsl.LinearOp])[1]
    whole = math.lcm(shape.cols, row_cols)
    tn = max(whole, tn // whole * whole)  # n-tiles of whole column blocks
    b = before(op)
    m, n = b.size(out, 0), b.size(out, 1)
    spanned = 1 if wide is None else wide.spanning(product.groups, product.w.decoder.phases)
    step = dot if wide is None or spanned == 1 else wide
    kernel = IntegerKernel(product, step, _row_offsets(b, product, dot, m, product.w.offset(step)), spanned)
    lo = b.index(0) if panel is None else _panel_rows(op, kernel, panel, shape)
    kernel.phase_x = _phase_x(b, product, step, (lo, m))
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
        scale_rows = _scale_rows(b, product, kernel, row_cols)
        register_blocks(b, Shape(shape.width, 1, row_cols), (m_blocks, m), (j0, j1),
                        replace(gemv, scale_rows=scale_rows).emit)  # fmt: skip
        if scale_rows is not None:
            b.b.insert(memref.DeallocOp.get(scale_rows))
        apply_epilogue(op, TileNest(b, out, lo, m, j0, j1))

    for_(b, b.index(0), n, tn, n_tile, "j0")
    for scratch in (kernel.offsets, kernel.phase_x):
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
    dot, m, n = kernel.dot, b.size(out, 0), b.size(out, 1)
    unit = math.lcm(block.rows, shape.rows)
    enough = b.insert(arith.CmpiOp(m, b.index(max(PANEL_MIN_ROWS, unit)), "uge"))
    rows = b.insert(arith.SelectOp(enough, floor_to(b, b.index(0), m, unit), b.index(0)))
    end = b.insert(arith.SelectOp(enough, n, b.index(0)))  # no panel to pack
    tn = PANEL_TILE * block.cols * dot.lanes
    k_size = kernel.product.x.type.get_shape()[1]  # type: ignore[attr-defined]
    buffers: dict[str, tuple[Attribute, list[int]]] = {"panel": (i32, [k_size // 4, tn]),
                                                       "panel_sums": (i32, [block.rows, block.cols * dot.lanes])}  # fmt: skip
    if kernel.product.w.decoder.code.bits < 8:
        buffers["panel_staging"] = (i8, [dot.lanes, dot.step])
    if kernel.product.scales is not None:
        buffers["panel_scales"] = (f32, [tn])
    allocs = {name: b.insert(memref.AllocOp.get(element, BUFFER_ALIGNMENT, dims)) for name, (element, dims) in buffers.items()}  # fmt: skip
    for name, alloc in allocs.items():
        alloc.name_hint = name
    assert kernel.offsets is not None  # the panels' steps read unsigned bytes, offset
    panel = PanelKernel(kernel.product, dot, allocs["panel"], kernel.offsets, allocs.get("panel_scales"),
                        allocs["panel_sums"], allocs.get("panel_staging"))  # fmt: skip
    edge = Shape(block.width, block.rows, 1)
    lanes = b.index(dot.lanes)

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        j1 = span(b, j0, tn, n)
        width = b.insert(arith.SubiOp(j1, j0))
        panel.pack(b, j0, j1)
        whole = floor_to(b, b.index(0), b.div(width, lanes), block.cols)  # vectors in whole blocks
        vectors = b.div(b.add(width, b.index(dot.lanes - 1)), lanes)  # a ragged last one too

        def row_block(b: LoopBuilder, i: SSAValue) -> None:
            def run(shape: Shape, columns: Callable[[LoopBuilder, SSAValue], SSAValue]) -> Callable[[LoopBuilder, SSAValue], None]:
                def body(b: LoopBuilder, jv: SSAValue) -> None:
                    panel.emit(b, shape, i, jv)
                    column = b.mul(jv, lanes)
                    panel.finish(b, i, shape.rows, b.add(j0, column), column, columns(b, column))

                return body

            for_(b, b.index(0), whole, block.cols, run(block, lambda b, _c: b.index(block.cols * dot.lanes)), "j")
            for_(b, whole, vectors, 1, run(edge, lambda b, c: b.min(lanes, b.insert(arith.SubiOp(width, c)))), "j")

        for_(b, b.index(0), rows, block.rows, row_block, "i")
        apply_epilogue(op, TileNest(b, out, b.index(0), rows, j0, j1))

    for_(b, b.index(0), end, tn, n_tile, "j0")
    for alloc in allocs.values():
        b.b.insert(memref.DeallocOp.get(alloc))
    return rows


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
    return Product(op.lhs, Weight(w, decoder, lambda b, n, k: _sext(b, b.load(w, [n, k]))), out, groups)


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
    """int8 activations with one scale per row x integer weights -> f32."""
    x, w, out = _quantized(op.lhs, ("int8",)), _quantized(op.rhs, WEIGHT_CODES, symmetric=False), op.out
    if x is None or w is None or out is None or _element(out) != f32:
        return None
    k_size = op.rhs.type.dims[1]  # type: ignore[attr-defined]
    if x.group != k_size:
        return None
    weight = Weight(w.buffers["values"], w.decoder, w.code, None if w.symmetric else w.zero_point)
    scales = (lambda b, i: x.scale(b, i, b.index(0)), w.scale)
    groups = Groups(-(-k_size // w.group), w.group, k_size if k_size % w.group else 0)
    return Product(x.buffers["values"], weight, out, groups, scales, w.buffers["scales"] if w.per == "group" else None)


MANTISSA_SHIFT = 1.5 * 2**23
"""Added to a whole number q in -127..127, leaves q in two's complement in the low
bits of the float (exactly): its low byte is the int8 code. This converts vectors,
which xDSL's arith.fptosi cannot and LLVM's saturating conversion scalarises. A NaN
(from a NaN or infinite x; a quiet NaN without payload) has a zero low byte: code
0, as the scalar path's saturating conversion gives."""


@dataclass
class RowQuantizer:
    """int8 codes with one symmetric scale per row of x, `lanes` floats at a time, by
    quant_loops.quantize's arithmetic element for element (the same bits; the row's
    largest magnitude is the same in any order); a ragged row ends with its scalar loop."""

    x: SSAValue
    view: QuantView
    lanes: int

    @property
    def floats(self) -> VectorType:
        return VectorType(f32, [self.lanes])

    def emit(self, b: LoopBuilder, r: SSAValue, kv: SSAValue, width: SSAValue) -> None:
        params = quant_loops.symmetric_params(b, self.view, self._amax(b, r, kv, width))
        self._codes(b, r, kv, params[1])
        quant_loops.quant_codes(b, lambda b, r, k: b.load(self.x, [r, k]), self.view, (r, kv, width), params)
        quant_loops.store_params(b, self.view, self.view.scale_indices(b, r, b.index(0)), params)

    def _amax(self, b: LoopBuilder, r: SSAValue, kv: SSAValue, width: SSAValue) -> SSAValue:
        # Magnitudes order as their bit patterns (a NaN above every number, so it
        # propagates as in the scalar maximum): one integer max per vector, where
        # arith.maximumf is a chain of NaN checks.
        bits = VectorType(i32, [self.lanes])
        magnitude = b.splat(bits, 0x7FFFFFFF)

        def step(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            v = b.insert(vector.BitcastOp(b.vload(self.x, [r, k], self.lanes), bits))
            return [b.insert(arith.MaxUIOp(acc[0], b.insert(arith.AndIOp(v, magnitude))))]

        (lanes,) = b.loop(b.index(0), kv, b.index(self.lanes), step, [b.splat(bits, 0)], name="k")
        top = b.insert(vector.ExtractOp(lanes, [0], i32))
        for lane in range(1, self.lanes):
            top = b.insert(arith.MaxUIOp(top, b.insert(vector.ExtractOp(lanes, [lane], i32))))

        def tail(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            return [b.fmax(acc[0], b.insert(mathd.AbsFOp(b.load(self.x, [r, k]))))]

        return b.loop(kv, width, b.index(1), tail, [b.insert(arith.BitcastOp(top, f32))], name="k")[0]

    def _codes(self, b: LoopBuilder, r: SSAValue, kv: SSAValue, divisor: SSAValue) -> None:
        divisors = b.insert(vector.BroadcastOp(divisor, self.floats))
        low, high, shift = (b.splat(self.floats, v) for v in (-127.0, 127.0, MANTISSA_SHIFT))
        words, codes = VectorType(i32, [self.lanes]), VectorType(i8, [self.lanes])

        def step(b: LoopBuilder, k: SSAValue) -> None:
            q = b.fdiv(b.vload(self.x, [r, k], self.lanes), divisors)
            q = b.insert(arith.MinimumfOp(b.fmax(b.insert(mathd.RoundEvenOp(q)), low), high))
            word = b.insert(vector.BitcastOp(b.fadd(q, shift), words))
            b.b.insert(vector.StoreOp(b.insert(llvm.TruncOp(word, codes)), self.view.buffers["values"], [r, k]))

        for_(b, b.index(0), kv, self.lanes, step, "k")


def _row_quantizer(op: tdsl.QuantizeOp, lanes: int) -> RowQuantizer | None:
    """Symmetric int8 quantization of an f32 (or bf16/f16, widened as loaded) matrix
    with one scale per row."""
    out, x = op.out, op.input
    if out is None or not computes_in_f32(x) or x.type.get_shape()[1] < 0:  # type: ignore[attr-defined]
        return None
    view = _quantized(out, ("int8",))
    one_per_row = view is not None and view.per != "tensor" and view.group == x.type.get_shape()[1]  # type: ignore[attr-defined]
    return RowQuantizer(x, view, lanes) if one_per_row else None  # type: ignore[arg-type]


@dataclass
class VectorizeQuantize(RewritePattern):
    lanes: int

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.QuantizeOp, rewriter: PatternRewriter, /):
        quantizer = _row_quantizer(op, self.lanes)
        if quantizer is None:
            return
        b = before(op)
        rows, width = b.size(quantizer.x, 0), b.size(quantizer.x, 1)
        tail = ragged(quantizer.x.type.get_shape()[1], self.lanes)  # type: ignore[attr-defined]
        kv = floor_to(b, b.index(0), width, self.lanes) if tail else width
        for_(b, b.index(0), rows, 1, lambda b, r: quantizer.emit(b, r, kv, width), "r")
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
                decline(op, f"{NAME}: its kernels take i8 x i8 -> i32, or int8 activations (a scale per row) "
                            f"times {'/'.join(WEIGHT_CODES)} weights (scales per row or group) -> f32")  # fmt: skip
            return
        wide = self.dot.for_bits(product.w.decoder.code.bits)
        dot = wide.fitting(product.groups)
        if dot is None or dot.step % product.w.decoder.code.unit:  # a step covers whole bytes of every plane
            decline(op, f"{NAME}: K or the scale group is not a whole number of its dot-product steps")
            return
        # PanelKernel's offset is a constant (no zero points) and its k whole steps of one group
        panel = product.groups.count == 1 and not product.groups.tail(dot.step) and product.w.zero_point is None
        lower_integer(op, product, dot, self.shape, self.row_cols, self.panel if dot.dwords and panel else None, wide)
        rewriter.erase(op)


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
