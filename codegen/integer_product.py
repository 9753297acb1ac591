"""An integer product as the integer vector kernels read it: x's int8 codes, the
weight's codes with their offset (Weight), the scale groups along k (Groups) and the
scales, and how its outputs are formed from exact dot products (store_results): the
order of tdsl-lower-to-loops' integer rows, so that the results are the same bits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from xdsl.dialects import arith, llvm, vector
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import VectorType, f32, i32
from xdsl.ir import SSAValue

from stoicc_py.codec.uniform import Sign
from stoicc_py.codegen.integer_dot import Dot, DotKind
from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.codegen.quant_decode import CodeDecoder
from stoicc_py.codegen.register_blocks import floor_to, ragged
from stoicc_py.codegen.shuffles import shuffle

Code = Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]
"""The integer code at (row, k) as i32: the scalar tail's operand."""
Scale = Callable[[LoopBuilder, SSAValue], SSAValue]
"""The f32 scale of a row of x, or of a row of w (an output column)."""
GroupScale = Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]
"""The f32 scale of a weight row's group."""


def sext(b: LoopBuilder, value: SSAValue) -> SSAValue:
    return b.insert(arith.ExtSIOp(value, i32))


@dataclass
class Weight:
    """Integer codes [n, k] as the decoder reads them, each code + offset: a constant,
    or with `zero_point` (i32 of a row's group) that group's zero point. With a float
    zero, `offsets` (f32 of a row's group: value = scale * code + offset) and the
    unsigned codes as they are (offset 0): each group's term then adds offset * the
    group's sum of x (store_results), a float term no integer offset can carry."""

    values: SSAValue
    decoder: CodeDecoder
    code: Code
    zero_point: GroupScale | None = None
    offsets: GroupScale | None = None

    def signed(self, dot: Dot) -> bool:
        """Whether `dot` reads the codes as they are, signed bytes (offset 0): AVX2's i16
        pairs (PAIRS) widen int8 codes without zero points as they widen x, where
        vpdpbusd's and pmaddubsw's unsigned operand needs them offset."""
        code = self.decoder.code
        pairs = dot.avx2 and dot.kind is DotKind.PAIRS
        return pairs and self.zero_point is None and code.bits == 8 and code.sign is Sign.TWOS

    def offset(self, dot: Dot) -> int:
        """The constant offset (the row sums' factor): 2^(b-1), 1 with zero points, 0 for
        signed codes and a float zero's unsigned ones."""
        if self.signed(dot) or self.offsets is not None:
            return 0
        return 1 if self.zero_point is not None else self.decoder.code.sign_bit

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

    def fitting(self, dot: Dot) -> Dot | None:
        """`dot`, or with several groups the widest one (down to 4 lanes) whose steps
        tile a group: each group's dot product is then exact on its own."""
        lanes = dot.lanes
        while self.count > 1 and lanes >= 4 and self.ragged(replace(dot, lanes=lanes).step):
            lanes //= 2
        return replace(dot, lanes=lanes) if lanes >= 4 else None

    def spanned(self, dot: Dot, phases: int) -> int:
        """How many whole groups each step of `dot` spans (per_step), where an
        accumulator of `phases` columns has lanes for each of its columns' groups."""
        per = self.per_step(dot.step)
        return per if per * phases <= dot.lanes else 1


@dataclass
class Product:
    """An integer product: x's int8 codes [m, k] and the weight, into `out`: the exact
    dot products (i32), or with `scales` (of x's rows, of w's rows per group) the f32 sum
    over groups of sw * dot (fma(offset, the group's sum of x, sw * dot) with a float
    zero; times the group's x scale where x has one per group), times sx: the order of
    tdsl-lower-to-loops' integer rows, so that the results are the same bits."""

    x: SSAValue
    w: Weight
    out: SSAValue
    groups: Groups
    scales: tuple[Scale, GroupScale] | None = None
    w_scales: SSAValue | None = None
    """w's scales buffer [n, groups] where there is one per group: read `per_step`
    groups' scales of a row at a time."""
    x_max: int = 128
    """The largest magnitude of x's codes (i8's -128; int7's 64 bounds -63..63), which
    decides where pmaddubsw's pair sums stay exact (integer_dot.pair_bound)."""
    w_offsets: SSAValue | None = None
    """A float zero's offsets buffer, as w_scales (Weight.offsets)."""
    x_scales: SSAValue | None = None
    """x's scales [m, groups] where x has one per group of w's (ggml's q8 activations):
    each group's term is then scaled by its x scale, and the sum is not."""

    def x_code(self, b: LoopBuilder, i: SSAValue, k: SSAValue) -> SSAValue:
        return sext(b, b.load(self.x, [i, k]))

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
                  w_scales: Callable[[LoopBuilder, SSAValue], SSAValue], per: int = 1,
                  offsets: Callable[[LoopBuilder, SSAValue], tuple[SSAValue, list[SSAValue]]] | None = None) -> None:  # fmt: skip
    """out[rows, j:j+lanes] from the exact dot products of groups g..g+per, `dots(b, g)`
    (per row, one i32 vector of the columns' products, lane c*per+h column c's of group
    g+h): as they are, or scaled as Product says, by the columns' w scales of these
    groups, `w_scales(b, g)` in the same lanes (called only for a scaled product); with
    a float zero, `offsets(b, g)` gives the columns' offsets in these lanes and, per row,
    the groups' f32 sums of x's codes in them, and each group's term is
    fma(offset, sum, sw * dot)."""
    if p.scales is None:
        for row, sums in zip(rows, dots(b, b.index(0))):
            b.vstore(sums, p.out, [row, j])
        return

    # Each output's f32 sum over groups runs in its own lane, in group order: the
    # same operations, so the same bits, as one scalar chain per output. With several
    # groups to a vector, each product sw * dot is formed in its lane, then the
    # columns' products of each group are gathered (a shuffle) and added in order.
    def group(b: LoopBuilder, g: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
        sw, ds = w_scales(b, g), dots(b, g)
        mw, sums = offsets(b, g) if offsets is not None else (None, [None] * len(ds))
        terms = [group_term(b, sw, d, None if mw is None or x_sum is None else (mw, x_sum),
                            None if p.x_scales is None else row_groups(b, p.x_scales, row, g, per, lanes))
                 for d, x_sum, row in zip(ds, sums, rows)]  # fmt: skip
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
        b.vstore(row_total(b, p, row, total, lanes), p.out, [row, j])


def group_term(b: LoopBuilder, sw: SSAValue, dot: SSAValue, shift: tuple[SSAValue, SSAValue] | None = None,
               x_scale: SSAValue | None = None) -> SSAValue:  # fmt: skip
    """One group's f32 term of a vector of outputs from their exact dot products `dot`
    (i32): sw * dot; with a float zero (`shift`: the columns' offsets, the row's sum of x's
    codes) fma(offset, sum, that); where x has a scale per group, times it. Every integer
    kernel forms it so, in the order of tdsl-lower-to-loops' integer rows (the same bits)."""
    term = b.fmul(sw, b.insert(llvm.SIToFPOp(dot, VectorType(f32, dot.type.get_shape()))))  # type: ignore[attr-defined]
    if shift is not None:
        term = b.insert(mathd.FmaOp(shift[0], shift[1], term))
    return term if x_scale is None else b.fmul(term, x_scale)


def row_total(b: LoopBuilder, p: Product, row: SSAValue, total: SSAValue, lanes: int) -> SSAValue:
    """An output vector from its f32 sum over groups: times x's scale of the row, unless x
    has one per group (each group's term took its own)."""
    if p.x_scales is not None or p.scales is None:
        return total
    return b.fmul(b.splat_value(p.scales[0](b, row), lanes), total)


def row_groups(b: LoopBuilder, buffer: SSAValue, row: SSAValue, g: SSAValue, per: int, lanes: int) -> SSAValue:
    """buffer[row, g .. g+per] (f32, or widened) in the lanes of `lanes` columns' groups, lane
    c*per+h group g+h's."""
    if per == 1:
        return b.splat_value(b.load(buffer, [row, g]), lanes)
    run = b.vload(buffer, [row, g], per)
    return shuffle(b, run, run, list(range(per)) * lanes)
