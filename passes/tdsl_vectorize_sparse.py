"""tdsl-vectorize-sparse: `linear(x, w)` with an N:M weight (f32, bf16 or f16 values;
x of the same dtype, widened to f32 as it is loaded) becomes a
nest vectorised over the batch: each stored value is broadcast and multiplies
`width` consecutive rows of x at once, so no gather is needed.

Per block of `panels * width` rows of x, per k-block of `kb` columns (their panels
stay in L2): x is copied into panels `xp[k, p, l] = x[i0 + p*width + l, kb + k]`
(zero past the last row; a column's panels are contiguous, so one slot's loads
differ by constant offsets). Per n-tile of `nt` weight rows, per k-tile of `kc`
columns (in L1), every row streams its stored values: one index word is loaded per
`per_word` slots and decoded by shifts, each slot is a broadcast and `panels`
FMAs, and the row's sums are added to `yp[n, p, l]`, copied back at the end of the
block. Both scratch buffers are block-sized, never weight-sized. A row whose slots
do not fill its last index word finishes with a per-slot tail.

After the whole blocks, one block of half as many panels (summing each row in the
same order, so a call split at its multiples gives the same bits). bf16 x over a 2:4
weight of bf16 values, where the target has vdpbf16ps, takes panels of x's pairs instead
(PairProduct: a panel for each pair of positions in a group, one vdpbf16ps per group and
panel). The rows left go,
for 2:4 and 1:2 with 16 lanes (AVX-512: vpermi2var) or 8 (AVX2: vpermilps of x's regrouped
128-bit halves and a blend), to a lane-selection microkernel that reads x in place
(PermuteKernel; it also takes int8/int4 values), else to one-vector blocks. Hybrid
weights (dense and 2:4 tiles), with 16 or 8 lanes: the same panel blocks take the 2:4
tiles, tile by tile (with `dense_panels`, the dense tiles too); the lane-selection kernel
takes the other tiles of every row and all the tiles of the rows left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import gcd
from typing import ClassVar

from xdsl.context import Context
from xdsl.dialects import arith, llvm, memref, scf, vector
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    ModuleOp,
    UnitAttr,
    VectorType,
    bf16,
    f32,
    i32,
    i64,
)
from xdsl.ir import Attribute, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.codec import hybrid as hybrid_code
from stoicc_py.codec.hybrid import HybridCodec
from stoicc_py.codegen.loop_builder import LoopBuilder, compute_type, computes_in_f32, element_type
from stoicc_py.codegen.nm_decoder import NMDecoder
from stoicc_py.codegen.prefetch import prefetch_span
from stoicc_py.codegen.quant_loops import QuantView
from stoicc_py.codegen.register_blocks import Shape, floor_to, for_, ragged, register_blocks
from stoicc_py.codegen.remarks import decline
from stoicc_py.codegen.shuffles import column_sums, lane_count, shuffle, transpose
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import AssembleOp, ComposedLayoutAttr, PackedType
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.dialects.sparse import HybridAttr, NMAttr
from stoicc_py.passes.parallelize_loops import PANEL_ROWS
from stoicc_py.passes.tdsl_bufferize import BUFFER_ALIGNMENT
from stoicc_py.passes.tdsl_lower_to_loops import TileNest, apply_epilogue, before, span
from stoicc_py.passes.tdsl_microkernel import DPBF16, DotKernel, dense_fma, lower_linear, pairs_fit
from stoicc_py.passes.tdsl_vectorize_quant import Decode, lower_panels_or

NAME = "tdsl-vectorize-sparse"

Accs = Sequence[SSAValue]
Row = Sequence[SSAValue]
Tiles = tuple[SSAValue, SSAValue, int, int]
"""A hybrid format's tile schedule: rowptr, cols, tile height and width."""
Body3 = Callable[[LoopBuilder, SSAValue, Accs], Accs]
XSteps = Callable[[int], list[tuple[SSAValue, SSAValue]]]
"""The two tables of x (select_lanes) of each row at each step of an index word."""
HYBRID_ROWS = {16: 4, 8: 2}
"""Rows of x per register block of the hybrid kernel (by 4 weight rows), by vector width: with
8 lanes' 16 registers, 2 x 4 accumulators measured 1.13x faster than 4 x 4 at 16 rows and
7 rows of x (1536x576, 50% 2:4 tiles of 64 x 64, Zen 3, 1 thread); a count that divides the
width, so that no block straddles the end of the panel blocks (panel_blocks)."""
DENSE_STEP = 8
"""Columns of a dense hybrid tile's row per unrolled step of the panel nest: 64 FMAs with 8
panels (16 columns measured no faster, Zen 3, and made 12% more LLVM IR for a hybrid kernel)."""
PAIR_ROWS, PAIR_PANELS = 2, 4
"""A dense hybrid tile's rows over the panels (`dense_panels`, 8 lanes), this many rows over
this many panels at a time: two broadcast values and four loads of x per 8 FMAs, where one
row over 8 panels loads 9 (one 256-bit load per FMA is Zen 3's L1 rate): dense tiles 1.10-1.16x
faster at SmolLM2's shapes, 64-512 rows (3 rows measured no faster), bit for bit as before."""
CHAINS = 8
"""Accumulators in flight per row: enough FMAs between dependent ones to cover
the FMA latency (4 cycles) at up to two FMAs per cycle."""


@dataclass
class PanelProduct:
    """What the nest reads: x, the weight's stored values, and the scratch:
    xp[kk, p, l] = x[i0 + p*width + l, kb + kk] for the k-block at kb (one column's
    panels are contiguous, so a slot's loads differ by constant offsets and a
    k-tile of them stays in L1) and yp[n, p, l]."""

    x: SSAValue
    values: SSAValue
    """[rows..., slots]: a weight row is named by every index but the last (a hybrid
    tile's are [tile, local row])."""
    xp: SSAValue
    yp: SSAValue
    kc: int
    chains: int
    """Independent accumulators per panel, to hide the FMA latency when panels are few."""

    @property
    def width(self) -> int:
        return self.xp.type.get_shape()[2]  # type: ignore[attr-defined]

    @property
    def vec(self) -> VectorType:
        return VectorType(f32, [self.width])

    @property
    def kb_cols(self) -> int:
        """The dense columns of a k-block (xp's)."""
        return self.xp.type.get_shape()[0]  # type: ignore[attr-defined]

    def pack(self, b: LoopBuilder, i0: SSAValue, panels: SSAValue, m: SSAValue, ks: tuple[SSAValue, SSAValue],
             whole: bool) -> None:  # fmt: skip
        _pack(b, self.x, self.xp, i0, panels, m, ks, whole)

    def slot(self, b: LoopBuilder, n: Row, s: SSAValue, kk: SSAValue, accs: Accs) -> list[SSAValue]:
        """accs[p] += values[n..., s] * xp[kk, p, :] for each panel p."""
        v = b.insert(vector.BroadcastOp(b.load(self.values, [*n, s]), self.vec))
        zero = b.index(0)
        return [b.insert(vector.FMAOp(v, b.insert(vector.LoadOp(self.xp, [kk, b.index(p), zero], self.vec)), acc))
                for p, acc in enumerate(accs)]  # fmt: skip

    def row(self, b: LoopBuilder, n: SSAValue, panels: int, body: Body3) -> None:
        """yp[n, :panels, :] += what `body` accumulates for row n."""
        zero = b.splat(self.vec, 0.0)
        accs = body(b, n, [zero] * (panels * self.chains))
        for p in range(panels):
            total = accs[p * self.chains]
            for c in range(1, self.chains):
                total = b.insert(arith.AddfOp(total, accs[p * self.chains + c]))
            at = [n, b.index(p), b.index(0)]
            total = b.insert(arith.AddfOp(b.insert(vector.LoadOp(self.yp, at, self.vec)), total))
            b.b.insert(vector.StoreOp(total, self.yp, at))


@dataclass
class DenseProduct(PanelProduct):
    """A dense hybrid tile's rows over the panels: `step_cols` columns a step, each a broadcast
    value and one FMA per panel (no decoding), as the 2:4 tiles' slots."""

    step_cols: int

    def step(self, b: LoopBuilder, n: Row, w: SSAValue, kb: SSAValue, accs: Accs) -> list[SSAValue]:
        """Columns w*step_cols ... of row n (less kb: xp's first), unrolled; column t feeds
        accumulator chain t % chains."""
        first = b.mul(w, b.index(self.step_cols))
        base = b.insert(arith.SubiOp(first, kb))
        chains = [list(accs[c :: self.chains]) for c in range(self.chains)]
        for t in range(self.step_cols):
            c = t % self.chains
            chains[c] = self.slot(b, n, b.offset(first, t), b.offset(base, t), chains[c])
        return [chains[c][p] for p in range(len(accs) // self.chains) for c in range(self.chains)]

    def rows_step(self, b: LoopBuilder, rows: Sequence[Row], w: SSAValue, kb: SSAValue, panels: range,
                  accs: Accs) -> list[SSAValue]:  # fmt: skip
        """`step` for several rows over `panels` (accs[i * len(panels) + j]: row i, panel j): per
        column a broadcast value per row and one load of each panel's x for all rows' FMAs."""
        first = b.mul(w, b.index(self.step_cols))
        base = b.insert(arith.SubiOp(first, kb))
        new, zero = list(accs), b.index(0)
        for t in range(self.step_cols):
            s, kk = b.offset(first, t), b.offset(base, t)
            values = [b.insert(vector.BroadcastOp(b.load(self.values, [*n, s]), self.vec)) for n in rows]
            for j, p in enumerate(panels):
                xv = b.insert(vector.LoadOp(self.xp, [kk, b.index(p), zero], self.vec))
                for i, v in enumerate(values):
                    new[i * len(panels) + j] = b.insert(vector.FMAOp(v, xv, new[i * len(panels) + j]))
        return new

    def rows_sum(self, b: LoopBuilder, ns: Sequence[SSAValue], panels: range,
                 body: Callable[[LoopBuilder, Accs], Accs]) -> None:  # fmt: skip
        """yp[n, panels, :] += what `body` accumulates (rows_step's accumulators), for each row n of ns."""
        accs = body(b, [b.splat(self.vec, 0.0)] * (len(ns) * len(panels)))
        for i, n in enumerate(ns):
            for j, p in enumerate(panels):
                at = [n, b.index(p), b.index(0)]
                acc = accs[i * len(panels) + j]
                total = b.insert(arith.AddfOp(b.insert(vector.LoadOp(self.yp, at, self.vec)), acc))
                b.b.insert(vector.StoreOp(total, self.yp, at))


@dataclass
class NMProduct(PanelProduct):
    """An N:M weight's rows over the panels: its index words, decoded by shifts."""

    indices: SSAValue
    decoder: NMDecoder

    @property
    def step_cols(self) -> int:
        return self.decoder.code.word_cols

    def step(self, b: LoopBuilder, n: Row, w: SSAValue, kb: SSAValue, accs: Accs) -> list[SSAValue]:
        """The per_word slots of index word w of row n, unrolled, `take` at a time (`feed`):
        their columns (less kb, the first column of xp relative to the row's) are the word's
        base plus each group's offset plus the slot's decoded field; step t feeds
        accumulator chain t % chains."""
        dec, code = self.decoder, self.decoder.code
        word = b.load(self.indices, [*n, w])
        base = b.insert(arith.SubiOp(b.mul(w, b.index(code.word_cols)), kb))
        first = b.mul(w, b.index(code.per_word))
        mask = dec.mask(b)
        chains = [list(accs[c :: self.chains]) for c in range(self.chains)]
        for t in range(0, code.per_word, self.take):
            fields = [dec.field(b, word, t + h, mask) for h in range(self.take)]
            c = t // self.take % self.chains
            chains[c] = self.feed(b, n, b.add(first, b.index(t)), b.add(base, b.index(code.column_of(t))), fields,
                                  chains[c])  # fmt: skip
        return [chains[c][p] for p in range(len(accs) // self.chains) for c in range(self.chains)]

    take: ClassVar[int] = 1
    """Slots a step of `feed` takes."""

    def feed(self, b: LoopBuilder, n: Row, s: SSAValue, column: SSAValue, fields: list[SSAValue], accs: Accs) -> list[SSAValue]:
        """Slot s of row n, whose group starts at `column` of the k-block, at its field's offset."""
        return self.slot(b, n, s, b.add(column, fields[0]), accs)

    def prefetch(self, b: LoopBuilder, n: SSAValue, k: SSAValue) -> None:
        """Row n's values and index words of the k-tile at dense column k, into L2: each
        k-tile reads a few lines of each of an n-tile's rows, too short and too many streams
        for the hardware prefetchers to follow out of DRAM (a 4096^2 weight, Zen 3)."""
        code = self.decoder.code
        words = self.kc // code.word_cols
        word = b.div(k, b.index(code.word_cols))
        prefetch_span(b, self.values, n, b.mul(word, b.index(code.per_word)), words * code.per_word)
        prefetch_span(b, self.indices, n, word, words)

    def tail(self, b: LoopBuilder, n: Row, kb: SSAValue, slots: tuple[SSAValue, SSAValue], accs: Accs) -> Accs:
        """The slots past the last whole index word, one at a time (chain 0 of each panel)."""

        def step(b: LoopBuilder, s: SSAValue, accs: Accs) -> Accs:
            kk = b.insert(arith.SubiOp(self.decoder.column(b, self.indices, list(n), s), kb))
            new = list(accs)
            new[:: self.chains] = self.slot(b, n, s, kk, accs[:: self.chains])
            return new

        return b.loop(*slots, b.index(1), step, accs, name="s")


COMBOS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
"""The ascending pairs of a 2:4 group's positions, in the order of PairProduct's panels of x."""


@dataclass
class PairProduct(NMProduct):
    """A 2:4 weight of bf16 values over bf16 x on vdpbf16ps: xp holds, per group of 4
    columns, a panel of x's pairs for each of the 6 pairs of positions (COMBOS: dword
    lanes (x[l, 4g + a], x[l, 4g + b]) of xp[6g + c, p, l]), so that a group's two
    stored values, one dword, broadcast, multiply the pair panel their positions name:
    one vdpbf16ps per group and panel (two products a lane) where the f32 nest takes one
    FMA per stored value, and the dense bf16 panels one vdpbf16ps per two columns."""

    @property
    def kb_cols(self) -> int:
        return self.xp.type.get_shape()[0] // len(COMBOS) * 4  # type: ignore[attr-defined]

    def pack(self, b: LoopBuilder, i0: SSAValue, panels: SSAValue, m: SSAValue, ks: tuple[SSAValue, SSAValue],
             whole: bool) -> None:  # fmt: skip
        _pack_pairs(b, self.x, self.xp, i0, panels, m, ks, whole)

    def pair(self, b: LoopBuilder, n: Row, s: SSAValue, row: SSAValue, accs: Accs) -> list[SSAValue]:
        """accs[p] += the stored pair at slots s, s + 1 of row n . xp[row, p, :] for each panel p."""
        pairs = VectorType(i32, [self.width])
        v = b.splat_value(b.dword(self.values, [*n, s]), self.width)
        zero = b.index(0)
        return [b.insert(llvm.CallIntrinsicOp(DPBF16, [acc, v, b.insert(vector.LoadOp(self.xp, [row, b.index(p), zero], pairs))],
                                              [self.vec]))  # fmt: skip
                for p, acc in enumerate(accs)]

    def combo_row(self, b: LoopBuilder, column: SSAValue, f0: SSAValue, f1: SSAValue) -> SSAValue:
        """xp's row of the group at `column` (relative to the k-block) whose stored values sit
        at positions f0 < f1: 6 * group + ((5 - f0) * f0) / 2 + f1 - 1 (COMBOS' order)."""
        start = b.div(b.mul(b.insert(arith.SubiOp(b.index(5), f0)), f0), b.index(2))
        combo = b.insert(arith.SubiOp(b.add(start, f1), b.index(1)))
        return b.add(b.mul(b.div(column, b.index(4)), b.index(len(COMBOS))), combo)

    take: ClassVar[int] = 2

    def feed(self, b: LoopBuilder, n: Row, s: SSAValue, column: SSAValue, fields: list[SSAValue], accs: Accs) -> list[SSAValue]:
        """A group's pair of slots s, s + 1 (a group's pair feeds chain q % chains, q its group in the word)."""
        return self.pair(b, n, s, self.combo_row(b, column, *fields), accs)

    def tail(self, b: LoopBuilder, n: Row, kb: SSAValue, slots: tuple[SSAValue, SSAValue], accs: Accs) -> Accs:
        """The groups past the last whole index word, one at a time (chain 0 of each panel)."""

        def step(b: LoopBuilder, s: SSAValue, accs: Accs) -> Accs:
            columns = [self.decoder.column(b, self.indices, list(n), b.offset(s, t)) for t in range(2)]
            group = b.mul(b.div(columns[0], b.index(4)), b.index(4))
            f0, f1 = (b.insert(arith.SubiOp(c, group)) for c in columns)
            new = list(accs)
            new[:: self.chains] = self.pair(b, n, s, self.combo_row(b, b.insert(arith.SubiOp(group, kb)), f0, f1),
                                            accs[:: self.chains])  # fmt: skip
            return new

        return b.loop(*slots, b.index(2), step, accs, name="s")


def _pack_pairs(b: LoopBuilder, x: SSAValue, xp: SSAValue, i0: SSAValue, panels: SSAValue, m: SSAValue,
                ks: tuple[SSAValue, SSAValue], whole: bool) -> None:  # fmt: skip
    """PairProduct's xp from bf16 x for columns ks (whole groups of 4) and p < panels, zero past
    row m (_copy_panels): each pair panel the high halves of one column's f32 bits (x widened:
    exact) over another's; the groups past the last whole square one row at a time."""
    lanes = VectorType(i32, [xp.type.get_shape()[2]])  # type: ignore[attr-defined]

    def pair(b: LoopBuilder, lo: SSAValue, hi: SSAValue, bits: Attribute) -> SSAValue:
        """(bf16 lo, bf16 hi) as a dword (`bits`: i32 or a vector of them): a bf16's f32 bits
        are its own above 16 zero bits."""
        lo_bits, hi_bits = (b.insert(arith.BitcastOp(v, bits)) for v in (lo, hi))
        low = b.insert(arith.ShRUIOp(lo_bits, b.constant(bits, 16)))
        return b.insert(arith.OrIOp(low, b.insert(arith.AndIOp(hi_bits, b.constant(bits, -65536)))))

    def put(b: LoopBuilder, kk: SSAValue, values: list[SSAValue], at: Callable[[SSAValue], list[SSAValue]],
            bits: Attribute) -> None:  # fmt: skip
        """The pairs of the groups of `values` (columns kk, kk + 1, ... of the k-block)."""
        group = b.div(kk, b.index(4))
        for q in range(len(values) // 4):
            for c, (lo, hi) in enumerate(COMBOS):
                row = b.add(b.mul(b.offset(group, q), b.index(len(COMBOS))), b.index(c))
                value = pair(b, values[4 * q + lo], values[4 * q + hi], bits)
                if isinstance(bits, VectorType):
                    b.b.insert(vector.StoreOp(value, xp, at(row)))
                else:
                    b.store(value, xp, at(row))

    _copy_panels(b, x, xp.type.get_shape()[2], (i0, panels, m), ks, whole,  # type: ignore[attr-defined]
                 lambda b, p, kk, columns: put(b, kk, columns, lambda row: [row, p, b.index(0)], lanes),
                 (4, lambda b, p, lane, kk, values: put(b, kk, values, lambda row: [row, p, lane], i32)))


def _pack(b: LoopBuilder, x: SSAValue, xp: SSAValue, i0: SSAValue, panels: SSAValue, m: SSAValue,
          ks: tuple[SSAValue, SSAValue], whole: bool) -> None:  # fmt: skip
    """xp[k - ks[0], p, l] = x[i0 + p*width + l, k] for k in ks and p < panels, zero past
    row m (_copy_panels): the columns past the last whole square one element at a time."""

    def square(b: LoopBuilder, p: SSAValue, kk: SSAValue, columns: list[SSAValue]) -> None:
        for t, column in enumerate(columns):
            b.b.insert(vector.StoreOp(column, xp, [b.add(kk, b.index(t)), p, b.index(0)]))

    _copy_panels(b, x, xp.type.get_shape()[2], (i0, panels, m), ks, whole, square,  # type: ignore[attr-defined]
                 (1, lambda b, p, lane, kk, values: b.store(values[0], xp, [kk, p, lane])))


Square = Callable[[LoopBuilder, SSAValue, SSAValue, list[SSAValue]], None]
"""Stores a square's transposed columns (lanes: rows) of panel p from column kk of the k-block on."""
Tail = tuple[int, Callable[[LoopBuilder, SSAValue, SSAValue, SSAValue, list[SSAValue]], None]]
"""(step, store): the columns past the squares, `step` at a time, of one row (panel, lane)."""


def _copy_panels(b: LoopBuilder, x: SSAValue, width: int, rows: tuple[SSAValue, SSAValue, SSAValue],
                 ks: tuple[SSAValue, SSAValue], whole: bool, square: Square, tail: Tail) -> None:  # fmt: skip
    """x's rows i0 + p*width + l (p < panels; rows = (i0, panels, m)), columns ks, into panels:
    per panel, width x width squares of x transposed in registers (rows past m read as zeros,
    unless the block is `whole`: all its rows below m) handed to `square`, then per row the
    columns past the last whole square, tail's step at a time (zeros past m)."""
    i0, panels, m = rows
    last = b.insert(arith.SubiOp(m, b.index(1)))
    zero_vec = b.splat(VectorType(f32, [width]), 0.0)
    squares = floor_to(b, ks[0], ks[1], width)

    def one_square(b: LoopBuilder, p: SSAValue, k: SSAValue) -> None:
        first = b.add(i0, b.mul(p, b.index(width)))

        def row(lane: int) -> SSAValue:
            i = b.add(first, b.index(lane))
            if whole:
                return b.vload(x, [i, k], width)
            inside = b.insert(arith.CmpiOp(i, m, "ult"))
            return b.insert(arith.SelectOp(inside, b.vload(x, [b.min(i, last), k], width), zero_vec))

        square(b, p, b.insert(arith.SubiOp(k, ks[0])), _transpose(b, [row(lane) for lane in range(width)]))

    squares_ = lambda b, p: for_(b, ks[0], squares, width, lambda b, k: one_square(b, p, k), "k")  # noqa: E731
    for_(b, b.index(0), panels, 1, squares_, "p")
    zero = b.f32(0.0)
    step, store = tail

    def row(b: LoopBuilder, r: SSAValue) -> None:
        p, lane = b.div(r, b.index(width)), b.rem(r, b.index(width))
        i = b.add(i0, r)
        inside = b.insert(arith.CmpiOp(i, m, "ult"))
        clamped = b.min(i, last)

        def columns(b: LoopBuilder, k: SSAValue) -> None:
            values = [b.insert(arith.SelectOp(inside, b.load(x, [clamped, b.offset(k, t)]), zero)) for t in range(step)]
            store(b, p, lane, b.insert(arith.SubiOp(k, ks[0])), values)

        for_(b, squares, ks[1], step, columns, "k")

    for_(b, b.index(0), b.mul(panels, b.index(width)), 1, row, "r")


def _transpose(b: LoopBuilder, rows: list[SSAValue]) -> list[SSAValue]:
    """The transpose of n vectors of n f32 lanes (the shuffles of tdsl-vectorize-integer's,
    on the same bits as i32)."""
    lanes = VectorType(i32, [len(rows)])
    columns = transpose(b, [b.insert(vector.BitcastOp(r, lanes)) for r in rows])
    return [b.insert(vector.BitcastOp(c, rows[0].type)) for c in columns]


def _unpack(b: LoopBuilder, yp: SSAValue, out: SSAValue, i0: SSAValue, rows: SSAValue, m: SSAValue,
            add: bool) -> None:  # fmt: skip
    """out[i0 + p*width + l, n] = yp[n, p, l] (or += with `add`) for the block's `rows` below
    m: the whole panels below m by width x width squares transposed in registers, then the
    rows and columns left one element at a time."""
    n_size, width = b.size(yp, 0), yp.type.get_shape()[2]  # type: ignore[attr-defined]
    rows = b.min(rows, b.insert(arith.SubiOp(m, i0)))
    whole_rows, whole_cols = floor_to(b, b.index(0), rows, width), floor_to(b, b.index(0), n_size, width)

    def put(b: LoopBuilder, value: SSAValue, at: list[SSAValue]) -> None:
        b.vstore(b.fadd(b.vload(out, at, width), value) if add else value, out, at)

    def square(b: LoopBuilder, r: SSAValue, n: SSAValue) -> None:
        p = b.div(r, b.index(width))
        ys = [b.insert(vector.LoadOp(yp, [b.add(n, b.index(j)), p, b.index(0)], VectorType(f32, [width])))
              for j in range(width)]  # fmt: skip
        for lane, values in enumerate(_transpose(b, ys)):
            put(b, values, [b.add(b.add(i0, r), b.index(lane)), n])

    def element(b: LoopBuilder, r: SSAValue, n: SSAValue) -> None:
        p, lane, i = b.div(r, b.index(width)), b.rem(r, b.index(width)), b.add(i0, r)
        value = b.load(yp, [n, p, lane])
        b.store(b.fadd(b.load(out, [i, n]), value) if add else value, out, [i, n])

    for_(b, b.index(0), whole_rows, width, lambda b, r: for_(b, b.index(0), whole_cols, width,
                                                            lambda b, n: square(b, r, n), "n"), "r")  # fmt: skip
    TileNest(b, out, b.index(0), whole_rows, whole_cols, n_size).each(element)
    TileNest(b, out, whole_rows, rows, b.index(0), n_size).each(element)


KBlock = Callable[[LoopBuilder, SSAValue, SSAValue], None]


Blocks = Sequence[tuple[int, SSAValue, SSAValue]]
"""Blocks of rows over panels: (vectors per block, first row, end), as panel_blocks gives."""


def _panel_blocks(b: LoopBuilder, blocks: Blocks, prod: PanelProduct, out: SSAValue, m: SSAValue,
                  k_block: Callable[[int], KBlock], add: bool, whole: bool = True) -> None:  # fmt: skip
    """Every block of `blocks` (whose counts halve, each one's rows starting where the
    last's end, so that a later count has at most one block) in one loop, whose packing
    and unpacking are emitted once (prod's xp and yp hold blocks[0]'s panels): per block,
    clear yp; per k-block (its panels in L2), pack and run the block's count's
    k_block(count)(b, kb, kb_end); then unpack into out. `whole`: every row below m."""
    if not blocks:
        return
    n_size, kb_cols, width = b.size(prod.yp, 0), prod.kb_cols, prod.width
    k_size, step, end = b.size(prod.x, 1), blocks[0][0] * width, blocks[-1][2]
    zero = b.splat(prod.vec, 0.0)

    def clear(b: LoopBuilder, n: SSAValue) -> None:
        for p in range(blocks[0][0]):
            b.b.insert(vector.StoreOp(zero, prod.yp, [n, b.index(p), b.index(0)]))

    def run(b: LoopBuilder, i0: SSAValue, kb: SSAValue, kb_end: SSAValue, blocks: Blocks) -> Sequence[SSAValue]:
        """The k-block of the count whose blocks hold row i0."""
        (count, _lo, hi), *later = blocks
        if later:
            b.if_(b.insert(arith.CmpiOp(i0, hi, "ult")), lambda b: run(b, i0, kb, kb_end, blocks[:1]), ())
            b.if_(b.insert(arith.CmpiOp(i0, hi, "uge")), lambda b: run(b, i0, kb, kb_end, later), ())
        else:
            k_block(count)(b, kb, kb_end)
        return ()

    def block(b: LoopBuilder, i0: SSAValue) -> None:
        rows = b.min(b.index(step), b.insert(arith.SubiOp(end, i0)))
        panels = b.div(b.add(rows, b.index(width - 1)), b.index(width))  # a ragged block's last panel whole
        for_(b, b.index(0), n_size, 1, clear, "n")

        def each(b: LoopBuilder, kb: SSAValue) -> None:
            kb_end = span(b, kb, kb_cols, k_size)
            prod.pack(b, i0, panels, m, (kb, kb_end), whole)
            run(b, i0, kb, kb_end, blocks)

        for_(b, b.index(0), k_size, kb_cols, each, "kb")
        _unpack(b, prod.yp, out, i0, rows, m, add)

    for_(b, blocks[0][1], end, step, block, "i0")


def _nm_k_block(prod: NMProduct, panels: int, nt: int, prefetch: bool) -> KBlock:
    """A k-block of a block of panels*width rows: per n-tile, per k-tile (its panels in
    L1), every row of the n-tile adds its slots in the k-tile (with `prefetch`, asking
    for its next k-tile's first); then the slots past the last whole word."""
    code, kc = prod.decoder.code, prod.kc
    words_per_row = code.slots // code.per_word
    tail = (words_per_row * code.per_word, code.slots)

    def k_block(b: LoopBuilder, kb: SSAValue, kb_end: SSAValue) -> None:
        n_size, k_size = b.size(prod.yp, 0), b.size(prod.x, 1)  # a symbolic N: yp's rows are the weight's

        def n_tile(b: LoopBuilder, n0: SSAValue) -> None:
            def k_tile(b: LoopBuilder, k0: SSAValue) -> None:
                w0 = b.div(k0, b.index(code.word_cols))
                w1 = b.min(b.div(span(b, k0, kc, k_size), b.index(code.word_cols)), b.index(words_per_row))

                def words(b: LoopBuilder, n: SSAValue, accs: Accs) -> Accs:
                    step = lambda b, w, accs: prod.step(b, [n], w, kb, accs)  # noqa: E731
                    return b.loop(w0, w1, b.index(1), step, accs, name="w")

                def row(b: LoopBuilder, n: SSAValue) -> None:
                    if prefetch:
                        prod.prefetch(b, n, b.add(k0, b.index(kc)))
                    prod.row(b, n, panels, words)

                for_(b, n0, span(b, n0, nt, n_size), 1, row, "n")

            for_(b, kb, kb_end, kc, k_tile, "k0")

        for_(b, b.index(0), n_size, nt, n_tile, "n0")
        if tail[0] < tail[1]:  # its columns lie in the last k-block, which holds less than a word
            last = b.insert(arith.CmpiOp(kb_end, k_size, "eq"))
            slots = (b.index(tail[0]), b.insert(arith.SelectOp(last, b.index(tail[1]), b.index(tail[0]))))
            rows = lambda b, n: prod.row(b, n, panels, lambda b, n, accs: prod.tail(b, [n], kb, slots, accs))  # noqa: E731
            for_(b, b.index(0), n_size, 1, rows, "n")

    return k_block


def _hybrid_k_block(prod: NMProduct | DenseProduct, panels: int, nt: int, tiles: Tiles) -> KBlock:
    """A k-block of one format's tiles (dense or 2:4) for a block of panels*width rows: per
    tile row, per n-tile of its rows, each stored tile whose columns lie in the k-block adds
    its steps (the other tiles' loops run zero times)."""
    rowptr, cols, th, tw = tiles
    words = tw // prod.step_cols

    def k_block(b: LoopBuilder, kb: SSAValue, kb_end: SSAValue) -> None:
        n_size = b.size(prod.yp, 0)  # a symbolic N: yp's rows are the weight's

        def tile_row(b: LoopBuilder, tr: SSAValue) -> None:
            def n_tile(b: LoopBuilder, r0: SSAValue) -> None:
                def tile(b: LoopBuilder, p: SSAValue) -> None:
                    col0 = b.mul(b.load_index(cols, [p]), b.index(tw))
                    inside = b.insert(arith.AndIOp(b.insert(arith.CmpiOp(kb, col0, "ule")),
                                                   b.insert(arith.CmpiOp(col0, kb_end, "ult"))))  # fmt: skip
                    w1 = b.insert(arith.SelectOp(inside, b.index(words), b.index(0)))
                    offset = b.insert(arith.SubiOp(kb, col0))

                    def row(b: LoopBuilder, r: SSAValue) -> None:
                        def body(b: LoopBuilder, _n: SSAValue, accs: Accs) -> Accs:
                            step = lambda b, w, accs: prod.step(b, [p, r], w, offset, accs)  # noqa: E731
                            return b.loop(b.index(0), w1, b.index(1), step, accs, name="w")

                        prod.row(b, b.add(b.mul(tr, b.index(th)), r), panels, body)

                    def rows(b: LoopBuilder, r: SSAValue) -> None:
                        assert isinstance(prod, DenseProduct)
                        rs = [b.offset(r, i) for i in range(PAIR_ROWS)]
                        ns = [b.add(b.mul(tr, b.index(th)), ri) for ri in rs]
                        for lo in range(0, panels, PAIR_PANELS):
                            group = range(lo, min(lo + PAIR_PANELS, panels))

                            def body(b: LoopBuilder, accs: Accs, group: range = group) -> Accs:
                                weights = [[p, ri] for ri in rs]
                                step = lambda b, w, accs: prod.rows_step(b, weights, w, offset, group, accs)  # noqa: E731
                                return b.loop(b.index(0), w1, b.index(1), step, accs, name="w")

                            prod.rows_sum(b, ns, group, body)

                    end, single = span(b, r0, nt, height), r0
                    if isinstance(prod, DenseProduct) and prod.chains == 1:  # one chain: each row's sums as `row`'s
                        single = floor_to(b, r0, end, PAIR_ROWS)
                        for_(b, r0, single, PAIR_ROWS, rows, "r")
                    for_(b, single, end, 1, row, "r")

                start, stop = (b.load_index(rowptr, [t]) for t in (tr, b.add(tr, b.index(1))))
                for_(b, start, stop, 1, tile, "p")

            height = tile_height(b, tr, th, n_size)
            for_(b, b.index(0), height, nt, n_tile, "r0")

        for_(b, b.index(0), tile_rows(b, n_size, th), 1, tile_row, "tr")

    return k_block


def tile_rows(b: LoopBuilder, n_size: SSAValue, th: int) -> SSAValue:
    """The tile rows of N weight rows, the last one ragged (N static or read at run time)."""
    return b.div(b.add(n_size, b.index(th - 1)), b.index(th))


def tile_height(b: LoopBuilder, tr: SSAValue, th: int, n_size: SSAValue) -> SSAValue:
    """The weight rows of tile row tr: th, fewer in a ragged last one (its padding rows,
    zeros, are neither multiplied nor stored)."""
    first = b.mul(tr, b.index(th))
    return b.insert(arith.SubiOp(span(b, first, th, n_size), first))


def zero_padded(b: LoopBuilder, x: SSAValue, width: int, vec: VectorType) -> SSAValue:
    """A copy of x [M, K] as [M, width] (width > K), zeros past column K: the tiles of a
    ragged last tile column, stored whole with zero weights past K, then read zeros (not
    past x's rows, where 0 * garbage may be NaN) and run as whole tiles. Whole vectors,
    then per element."""
    m, k_size = b.size(x, 0), b.size(x, 1)
    padded = b.insert(memref.AllocOp.get(f32, BUFFER_ALIGNMENT, [DYNAMIC_INDEX, width], [m]))
    lanes = vec.get_shape()[0]
    whole, last, zero = floor_to(b, b.index(0), k_size, lanes), b.insert(arith.SubiOp(k_size, b.index(1))), b.f32(0.0)

    def row(b: LoopBuilder, i: SSAValue) -> None:
        def vector_(b: LoopBuilder, k: SSAValue) -> None:
            b.b.insert(vector.StoreOp(b.vload(x, [i, k], lanes), padded, [i, k]))

        def element(b: LoopBuilder, k: SSAValue) -> None:
            inside = b.insert(arith.CmpiOp(k, k_size, "ult"))
            b.store(b.insert(arith.SelectOp(inside, b.load(x, [i, b.min(k, last)]), zero)), padded, [i, k])

        for_(b, b.index(0), whole, lanes, vector_, "k")
        for_(b, whole, b.index(width), 1, element, "k")

    for_(b, b.index(0), m, 1, row, "i")
    return padded


def panel_blocks(
    b: LoopBuilder, m: SSAValue, panels: int, width: int
) -> tuple[list[tuple[int, SSAValue, SSAValue]], SSAValue]:
    """(vectors per block, first row, end) of the blocks over panels of several vectors:
    of `panels` vectors of rows from row 0, then of half as many (at most one such
    block); and the row where they end."""
    blocks, start = [], b.index(0)
    for count in dict.fromkeys(c for c in (panels, panels // 2) if c > 1):
        end = floor_to(b, start, m, count * width)
        blocks.append((count, start, end))
        start = end
    return blocks, start


def scratch(b: LoopBuilder, shape: Sequence[int], sizes: Sequence[SSAValue] = ()) -> SSAValue:
    """An f32 scratch buffer of the panel blocks."""
    return b.insert(memref.AllocOp.get(f32, BUFFER_ALIGNMENT, shape, sizes))


def when_rows(op: tdsl.LinearOp, b: LoopBuilder, lo: SSAValue, hi: SSAValue,
              body: Callable[[LoopBuilder], Sequence[SSAValue]]) -> None:  # fmt: skip
    """`body` (a block's scratch, its loop over rows lo..hi, the scratch freed) under `if` there
    are rows: the scratch (KBs: each aligned_alloc and free ~0.15 µs) is allocated only by
    calls that reach the panels, not by a GEMV's. Marked PANEL_ROWS: parallelize-loops counts
    the loop as serial work of its function (calls_pool), as at top level."""
    b.if_(b.insert(arith.CmpiOp(hi, lo, "ugt")), body, ())
    guard = op.prev_op  # b inserts before the op it lowers
    assert isinstance(guard, scf.IfOp)
    guard.attributes[PANEL_ROWS] = UnitAttr()


def lower_nm(op: tdsl.LinearOp, width: int, panels: int, nt: int, kc: int, kb: int, prefetch: bool,
             rest: DotKernel | None, pairs: bool = False) -> None:  # fmt: skip
    """Blocks of `panels`, then of panels/2, vectors of rows over panels (a 2-thread
    row split of 64 rows still gets panels), on f32 FMAs or with `pairs` (2:4 bf16 over
    bf16 x) PairProduct's vdpbf16ps; the rows left by `rest`'s register blocks, or,
    without it, by one-vector blocks."""
    out, assemble, packed = op.out, op.rhs.owner, op.rhs.type
    assert out is not None and isinstance(assemble, AssembleOp) and isinstance(packed, PackedType)
    decoder = _decoder(packed)
    b = before(op)
    n_size, k_size = packed.dims[0], packed.dims[1]  # N may be symbolic (< 0): read at run time
    word_cols = decoder.code.word_cols
    kc = max(word_cols, min(kc, -(-k_size // word_cols) * word_cols) // word_cols * word_cols)  # whole words, <= K
    kb = min(max(kc, kb // kc * kc), -(-k_size // kc) * kc)
    values, indices = assemble.buffer("values"), assemble.buffer("indices")
    m, n = b.size(op.lhs, 0), b.size(out, 1)
    rows = ([n_size], []) if n_size >= 0 else ([DYNAMIC_INDEX], [n])
    blocks, start = panel_blocks(b, m, panels, width)
    ragged: Blocks = []
    if rest is None:  # one-vector blocks for every row left, the ragged end included
        ragged, start = [(1, start, m)], m
    for group, whole in ((blocks, True), (ragged, False)):
        if not group:
            continue

        def panel_rows(b: LoopBuilder, group: Blocks = group, whole: bool = whole) -> Sequence[SSAValue]:
            count = group[0][0]
            if pairs:
                xp = b.insert(memref.AllocOp.get(i32, BUFFER_ALIGNMENT, [kb // 4 * len(COMBOS), count, width]))
            else:
                xp = scratch(b, [kb, count, width])
            yp = scratch(b, [*rows[0], count, width], rows[1])  # the first count's

            def prod(count: int) -> NMProduct:
                # Every block count sums a row in the same order (the full blocks' chains) but the
                # one-vector blocks, which only ever take the last rows.
                chains = CHAINS if count == 1 else max(1, CHAINS // panels)
                return (PairProduct if pairs else NMProduct)(op.lhs, values, xp, yp, kc, chains, indices, decoder)

            k_block = lambda count: _nm_k_block(prod(count), count, nt, prefetch)  # noqa: E731
            _panel_blocks(b, group, prod(count), out, m, k_block, add=False, whole=whole)
            for buffer in (xp, yp):
                b.b.insert(memref.DeallocOp.get(buffer))
            return ()

        when_rows(op, b, group[0][1], group[-1][2], panel_rows)
    apply_epilogue(op, TileNest(b, out, b.index(0), start, b.index(0), n))
    if rest is not None:
        lower_linear(op, Shape(width, 4, 4), rest, first_row=start)


@dataclass
class PermuteKernel(DotKernel):
    """2:4 weights, no copy of x: a step covers one index word of a weight row (16
    slots = 32 dense columns), in steps of `width` slots = two vectors of each x row
    (one on AVX-512, two on AVX2); each step's part of the word becomes a lane
    permutation (shift, mask, plus each group's base) that selects, in registers,
    the x elements that its `width` stored values multiply."""

    values: StoredValues
    indices: SSAValue
    decoder: NMDecoder

    def granule(self, shape: Shape) -> int:
        return self.decoder.code.word_cols

    def step(self, b: LoopBuilder, shape: Shape, rows: list[SSAValue], cols: list[SSAValue], k: SSAValue,
             acc: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
        xs = word_steps(b, shape, self.x, rows, k)
        slot, word = self.decoder.slot_of_column(b, k), self.decoder.word_of_column(b, k)
        return permute_fma(b, shape, xs, self.decoder, lambda c: b.load(self.indices, [cols[c], word]),
                           lambda c, h: self.values.vector(b, shape, cols[c], b.offset(slot, h * shape.width)),
                           acc)  # fmt: skip

    def tail(self, b: LoopBuilder, rows: list[SSAValue], cols: list[SSAValue], k0: SSAValue, k1: SSAValue,
             sums: Sequence[SSAValue]) -> Sequence[SSAValue]:  # fmt: skip
        def step(b: LoopBuilder, s: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            ws = [(self.values.one(b, c, s), self.decoder.column(b, self.indices, [c], s)) for c in cols]
            return [b.mul_add(acc[r * len(cols) + c], b.load(self.x, [row, k]), w)
                    for r, row in enumerate(rows) for c, (w, k) in enumerate(ws)]  # fmt: skip

        slots = self.decoder.slot_of_column(b, k0), self.decoder.slot_of_column(b, k1)
        return b.loop(*slots, b.index(1), step, sums, name="s")


@dataclass
class StoredValues:
    """The stored values of an N:M weight, f32, bf16 or f16 (widened as loaded) or symmetric int8/int4 codes with
    their scales (composed `nm with int8/int4`: scale groups count stored values)."""

    values: SSAValue
    view: QuantView | None = None

    def one(self, b: LoopBuilder, row: SSAValue, slot: SSAValue) -> SSAValue:
        return b.load(self.values, [row, slot]) if self.view is None else self.view.value(b, row, slot)

    def vector(self, b: LoopBuilder, shape: Shape, row: SSAValue, slot: SSAValue) -> SSAValue:
        """The `width` values from `slot` (a multiple of width, so within one scale group)."""
        if self.view is None:
            return b.vload(self.values, [row, slot], shape.width)
        view = self.view
        codes = view.buffers["values"]
        q = view.decoder.in_order(b, codes, row, slot, shape.width)
        values = b.insert(llvm.SIToFPOp(q, shape.vec))  # arith casts reject vectors in xDSL
        group = b.index(0) if view.per == "tensor" else b.div(slot, b.index(view.group))
        scale = b.insert(vector.BroadcastOp(view.scale(b, row, group), shape.vec))
        return b.insert(arith.MulfOp(values, scale))


def stored_values(packed: PackedType, assemble: AssembleOp, rhs: SSAValue, width: int) -> StoredValues | None:
    """How an N:M weight's values are read by the vector kernels, or None if they cannot be."""
    layout = packed.layout
    if isinstance(layout, NMAttr):
        values = assemble.buffer("values")
        return StoredValues(values) if computes_in_f32(values) else None
    if not (isinstance(layout, ComposedLayoutAttr) and isinstance(layout.sparse, NMAttr)):
        return None
    quant = layout.quant
    if not isinstance(quant, UniformQuantAttr) or quant.codes.data not in ("int8", "int4"):
        return None
    view = QuantView.of(rhs, quant)
    if not view.symmetric or quant.per_column:
        return None
    if view.per == "group" and view.group % width:
        return None
    return StoredValues(assemble.buffer("values"), view)


PERMUTE = {16: "llvm.x86.avx512.vpermi2var.ps.512", 8: "llvm.x86.avx.vpermilvar.ps.256"}
"""The lane permutation of each vector width: 16 lanes from two tables (vpermi2var: lane
j = concat(a, b)[idx[j] % 32]); 8 lanes within each 128-bit half (vpermilps: lane j =
a[j // 4 * 4 + idx[j] % 4])."""
QUARTER = 4
"""f32 lanes of a 128-bit half of an 8-lane vector, within which vpermilps permutes."""


def x_pairs(
    b: LoopBuilder, shape: Shape, x: SSAValue, rows: list[SSAValue], k: SSAValue
) -> list[tuple[SSAValue, SSAValue]]:
    """The two vectors of each x row at dense columns k .. k + 2*width."""
    high = b.add(k, b.index(shape.width))
    return [(b.vload(x, [r, k], shape.width), b.vload(x, [r, high], shape.width)) for r in rows]


def word_steps(b: LoopBuilder, shape: Shape, x: SSAValue, rows: list[SSAValue], k: SSAValue) -> XSteps:
    """The tables (select_lanes) of each x row at each step of the index word at dense
    column k (step 0's made now). With 8 lanes, the 128-bit halves of each row's two
    vectors regrouped (vperm2f128) as (lo.0, hi.0) and (lo.1, hi.1): lane j's group,
    in half j // 2 of concat(lo, hi), then lies in half j // 4 of one of them, where
    vpermilps reaches it. Made once per x row and step, for every weight row of the block."""
    low, high = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]

    def tables(k: SSAValue) -> list[tuple[SSAValue, SSAValue]]:
        pairs = x_pairs(b, shape, x, rows, k)
        return pairs if shape.width == 16 else [(shuffle(b, lo, hi, low), shuffle(b, lo, hi, high)) for lo, hi in pairs]

    first = tables(k)
    return lambda h: tables(b.offset(k, 2 * shape.width * h)) if h else first


def select_lanes(b: LoopBuilder, shape: Shape, decoder: NMDecoder, half: int, tables: tuple[SSAValue, SSAValue],
                 select: SSAValue) -> SSAValue:  # fmt: skip
    """The elements of the step's x columns that `select` (step `half` of a word) names:
    one two-table permutation with 16 lanes; with 8, each table permuted within its
    halves and a constant blend (vblendps) taking each lane from the table that holds
    its group (M divides 4: a group lies in one 128-bit half)."""
    if shape.width == 16:
        return b.insert(llvm.CallIntrinsicOp(PERMUTE[16], [tables[0], select, tables[1]], [shape.vec]))
    low, high = (b.insert(llvm.CallIntrinsicOp(PERMUTE[shape.width], [t, select], [shape.vec])) for t in tables)
    halves = [c // QUARTER for c in decoder.step_columns(shape.width, half)]
    assert all(q // 2 == j // QUARTER for j, q in enumerate(halves)), "a group outside its lane's half"
    return shuffle(b, low, high, [j + shape.width * (q % 2) for j, q in enumerate(halves)])


def permute_fma(b: LoopBuilder, shape: Shape, xs: XSteps, decoder: NMDecoder, word: Callable[[int], SSAValue],
                values: Callable[[int, int], SSAValue], acc: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
    """acc[r, c] += values(c, h) * (the x elements of row r that step h of word(c) selects),
    for each step h of the word."""
    new = list(acc)
    for h in range(decoder.steps(shape.width)):
        pairs = xs(h)
        for c in range(shape.cols):
            select, v = decoder.selection(b, word(c), shape.width, h), values(c, h)
            for r, tables in enumerate(pairs):
                picked = select_lanes(b, shape, decoder, h, tables, select)
                new[r * shape.cols + c] = b.insert(vector.FMAOp(v, picked, new[r * shape.cols + c]))
    return new


@dataclass
class HybridKernel:
    """A hybrid weight: out[i:i+rows, n0+c0 : n0+c0+cols] in one pass over the
    stored tiles of tile row tr, each format's tiles with its own step (dense:
    vector FMAs; 2:4: lane selection), all into the same accumulators."""

    x: SSAValue
    out: SSAValue
    assemble: AssembleOp
    code: HybridCodec
    panel_rows: SSAValue
    """Rows of x below it leave the tiles of the formats in `panelled` to the panel nest
    (their loops run zero times)."""
    panelled: frozenset[int]

    def emit(self, b: LoopBuilder, shape: Shape, i: SSAValue, tr: SSAValue, c0: SSAValue) -> None:
        th, tw = self.code.tile
        rows, locals_ = shape.indices(b, i, c0)
        zero = b.splat(shape.vec, 0.0)
        acc: Sequence[SSAValue] = [zero] * (shape.rows * shape.cols)
        for f, code in enumerate(self.code.formats):
            buf = lambda name, f=f: self.assemble.buffer(hybrid_code.role(f, name))  # noqa: E731
            nm = None if code is None else NMDecoder(code)

            def tile(b: LoopBuilder, p: SSAValue, acc: Accs, buf=buf, nm=nm) -> Accs:  # noqa: ANN001
                k0 = b.mul(b.load_index(buf("cols"), [p]), b.index(tw))

                def step(b: LoopBuilder, kk: SSAValue, acc: Accs) -> Accs:
                    k = b.add(k0, kk)
                    if nm:
                        slot, word = nm.slot_of_column(b, kk), nm.word_of_column(b, kk)
                        return permute_fma(b, shape, word_steps(b, shape, self.x, rows, k), nm,
                                           lambda c: b.load(buf("indices"), [p, locals_[c], word]),
                                           lambda c, h: b.vload(buf("values"), [p, locals_[c],
                                                                b.offset(slot, h * shape.width)], shape.width),
                                           acc)  # fmt: skip
                    xs = [b.vload(self.x, [r, k], shape.width) for r in rows]
                    return dense_fma(
                        b,
                        shape,
                        xs,
                        lambda c: b.vload(buf("values"), [p, locals_[c], kk], shape.width),
                        acc,
                    )

                granule = nm.code.word_cols if nm else shape.width
                return b.loop(b.index(0), b.index(tw), b.index(granule), step, acc, name="kk")

            start, stop = b.load_index(buf("rowptr"), [tr]), b.load_index(buf("rowptr"), [b.add(tr, b.index(1))])
            if f in self.panelled:
                stop = b.insert(arith.SelectOp(b.insert(arith.CmpiOp(i, self.panel_rows, "ult")), start, stop))
            acc = b.loop(start, stop, b.index(1), tile, acc, name="p")
        n0 = b.add(b.mul(tr, b.index(th)), c0)
        if shape.rows * shape.cols == 1:
            b.store(b.reduce_lanes(acc[0], "sum"), self.out, [rows[0], n0])
            return
        sums = column_sums(b, acc, lane_count(acc[0]), len(acc))
        for r, row in enumerate(rows):
            lanes = list(range(r * shape.cols, (r + 1) * shape.cols))
            if shape.cols == 1:
                b.store(b.insert(vector.ExtractOp(sums, lanes, f32)), self.out, [row, n0])
            elif lane_count(sums) == shape.cols:
                b.vstore(sums, self.out, [row, n0])
            else:
                b.vstore(b.insert(vector.ShuffleOp(sums, sums, DenseArrayBase.from_list(i64, lanes),
                                                   result_type=VectorType(f32, [shape.cols]))), self.out, [row, n0])  # fmt: skip


def lower_hybrid(op: tdsl.LinearOp, shape: Shape, panels: int, nt: int, kb: int, dense_panels: bool) -> None:
    """Per tile row, per block of x rows, per block of weight rows: one kernel over
    the tile row's stored tiles (the x rows stay in L1, the tile row's dense tiles,
    read in contiguous runs of a tile's block rows, in L2). The rows of the panel blocks
    (panel_blocks) take the 2:4 tiles over panels instead, per k-block (_hybrid_k_block),
    and with `dense_panels` the dense tiles too (then only the rows left run the kernel)."""
    out, assemble, packed = op.out, op.rhs.owner, op.rhs.type
    assert out is not None and isinstance(assemble, AssembleOp) and isinstance(packed, PackedType)
    layout = packed.layout
    assert isinstance(layout, HybridAttr)
    code = layout.codec(packed.dims)
    (n_static, k_size), (th, tw) = code.shape, code.tile
    b = before(op)
    m, n_size, padded_k = b.size(op.lhs, 0), b.size(out, 1), code.grid[1] * tw  # N may be symbolic (< 0)
    x = zero_padded(b, op.lhs, padded_k, shape.vec) if padded_k != k_size else op.lhs
    blocks, panel_end = panel_blocks(b, m, panels, shape.width)
    assert shape.width % shape.rows == 0, "a register block across the end of the panel blocks"
    panelled = frozenset(f for f, nm in enumerate(code.formats) if nm is not None or dense_panels)
    # with dense_panels, the rows below panel_end never reach the kernel
    kernel = HybridKernel(x, out, assemble, code, panel_end, frozenset() if dense_panels else panelled)
    first = panel_end if dense_panels else b.index(0)

    def tile_row(b: LoopBuilder, tr: SSAValue) -> None:
        emit = lambda b, s, i, c0: kernel.emit(b, s, i, tr, c0)  # noqa: E731
        register_blocks(b, shape, (first, m), (b.index(0), tile_height(b, tr, th, n_size)), emit)

    for_(b, b.index(0), tile_rows(b, n_size, th), 1, tile_row, "tr")
    kb = min(max(tw, kb // tw * tw), padded_k)  # whole tiles per k-block
    rows = ([n_static], []) if n_static >= 0 else ([DYNAMIC_INDEX], [n_size])
    if blocks:

        def panel_rows(b: LoopBuilder) -> Sequence[SSAValue]:
            count = blocks[0][0]
            xp, yp = scratch(b, [kb, count, shape.width]), scratch(b, [*rows[0], count, shape.width], rows[1])
            chains = max(1, CHAINS // panels)
            products: list[tuple[NMProduct | DenseProduct, Tiles]] = []
            for f, nm in enumerate(code.formats):
                if f not in panelled:
                    continue
                buf = lambda name, f=f: assemble.buffer(hybrid_code.role(f, name))  # noqa: E731
                prod = (DenseProduct(x, buf("values"), xp, yp, tw, chains, gcd(tw, DENSE_STEP)) if nm is None else
                        NMProduct(x, buf("values"), xp, yp, tw, chains, buf("indices"), NMDecoder(nm)))  # fmt: skip
                products.append((prod, (buf("rowptr"), buf("cols"), th, tw)))

            def k_block(count: int) -> KBlock:
                parts = [_hybrid_k_block(prod, count, nt, tiles) for prod, tiles in products]

                def each_format(b: LoopBuilder, kb: SSAValue, kb_end: SSAValue) -> None:
                    for part in parts:
                        part(b, kb, kb_end)

                return each_format

            _panel_blocks(b, blocks, products[0][0], out, m, k_block, add=not dense_panels)
            for buffer in (xp, yp):
                b.b.insert(memref.DeallocOp.get(buffer))
            return ()

        when_rows(op, b, blocks[0][1], blocks[-1][2], panel_rows)
    if x is not op.lhs:
        b.b.insert(memref.DeallocOp.get(x))
    apply_epilogue(op, TileNest(b, out, b.index(0), m, b.index(0), n_size))


def _hybrid_vectorizable(packed: PackedType, width: int) -> bool:
    """Dense and lane-selectable (2:4) tiles whose width holds whole steps of both (a
    vector, an index word), with 16 or 8 lanes (ragged tiles too: lower_hybrid)."""
    layout = packed.layout
    values = [b.type.element_type for b in packed.storage.buffers.data if b.role.data.endswith("values")]
    if not isinstance(layout, HybridAttr) or width not in PERMUTE or any(compute_type(t) != f32 for t in values):
        return False
    code = layout.codec(packed.dims)
    decoders = [NMDecoder(nm) for nm in code.nm.values()]
    steps = [width, *(d.code.word_cols for d in decoders)]
    return all(code.tile[1] % s == 0 for s in steps) and all(d.selectable(width) for d in decoders)


def _decoder(packed: PackedType) -> NMDecoder:
    """The decoder of an nm (or `nm with Q`) weight's index words."""
    layout = packed.layout
    nm = layout.sparse if isinstance(layout, ComposedLayoutAttr) else layout
    assert isinstance(nm, NMAttr)
    return NMDecoder(nm.codec(packed.dims))


NM_PANEL_ROWS = 128
"""bf16 activations of at least this many rows meet 2:4 weights of quantized values
(`nm with int8/int4`) densified into bf16 pair panels (`bf16_panels`): below, the f32
nests, which make only the stored products, measured faster (Zen 4, 1 thread, torch bf16
time / ours, 2:4 of bf16 values before PairProduct took them: 64 rows 0.86 against
0.71-0.77; 128 rows 0.81 against 0.85-0.87): densifying an index word (32 columns) takes
about 44 vector ops in the IR, dequantizing 32 int4 codes about 25."""


def densify(values: StoredValues, indices: SSAValue, decoder: NMDecoder, k_size: int) -> Decode:
    """The rows of a lane-selectable N:M weight as dense bf16 (tdsl-vectorize-quant's
    lower_panels decodes into its staging with it): per index word, dense lane c of the
    word's 2 x 16 columns takes the stored value of the slot of its group whose position
    is c (positions within a group are distinct), else 0 — for each of the group's N
    slots, its position and value moved to the group's lanes by constant shuffles, a
    compare and a select."""
    code = decoder.code
    width = code.per_word
    shape = Shape(width, 1, 1)
    lanes = VectorType(i32, [width])

    def decode(b: LoopBuilder, n0: SSAValue, rows: SSAValue, staging: SSAValue) -> None:
        def word(b: LoopBuilder, r: SSAValue, k: SSAValue) -> None:
            n = b.add(n0, r)
            where = decoder.selection(b, b.load(indices, [n, decoder.word_of_column(b, k)]), width)
            stored = values.vector(b, shape, n, decoder.slot_of_column(b, k))
            for half in range(2):
                columns = [half * width + lane for lane in range(width)]
                here = b.insert(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(lanes, columns)))
                dense = b.splat(lanes, 0)
                for t in range(code.n):
                    slots = [c // code.m * code.n + t for c in columns]
                    # all ones where the slot's position is the lane's column (their xor, 0..31, is 0:
                    # minus 1, its sign bit spread), else 0; the backend has no vector compares
                    apart = b.insert(arith.XOrIOp(shuffle(b, where, where, slots), here))
                    hit = b.insert(arith.ShRSIOp(b.insert(arith.SubiOp(apart, b.splat(lanes, 1))), b.splat(lanes, 31)))
                    bits = b.insert(vector.BitcastOp(shuffle(b, stored, stored, slots), lanes))
                    dense = b.insert(arith.OrIOp(dense, b.insert(arith.AndIOp(hit, bits))))
                value = b.insert(vector.BitcastOp(dense, shape.vec))
                b.vstore(value, staging, [r, b.offset(k, half * width)])

        for_(b, b.index(0), rows, 1, lambda b, r: for_(b, b.index(0), b.index(k_size), code.word_cols,
                                                     lambda b, k: word(b, r, k), "k"), "r")  # fmt: skip

    return decode


def _pairs(packed: PackedType, x: SSAValue, values: StoredValues | None) -> bool:
    """Whether PairProduct takes the panel rows: bf16 x over a 2:4 weight of bf16 values."""
    code = _decoder(packed).code
    bf16_values = values is not None and values.view is None and element_type(values.values) == bf16
    return (code.n, code.m) == (2, 4) and element_type(x) == bf16 and bf16_values


def _permutable(packed: PackedType, width: int) -> bool:
    layout = packed.layout
    nm = layout.sparse if isinstance(layout, ComposedLayoutAttr) else layout
    return width in PERMUTE and isinstance(nm, NMAttr) and _decoder(packed).selectable(width)


def _missed(packed: PackedType, values: StoredValues | None, width: int) -> str:
    """Why no kernel of this pass reads `packed` (which it tried: panels, lane selection, hybrid)."""
    if isinstance(packed.layout, HybridAttr):
        return (f"hybrid weights need 16 or 8 lanes (here {width}), f32 tiles whose width holds whole "
                "vectors and index words, and 2:4 as their N:M format")  # fmt: skip
    if values is None:
        return "its stored values are neither f32 nor symmetric int8/int4 codes per row or per group of whole vectors"
    if values.view is None:
        return (f"the index words of {packed.layout} hold no whole number of its groups (the panel kernel "
                f"needs that), and lane selection reads 2:4 with 16 or 8 lanes, 1:2 with 8 (here {width})")  # fmt: skip
    return (f"`nm with Q` runs only as lane selection: 2:4 with 16 or 8 lanes, 1:2 with 8 "
            f"(here {packed.layout}, {width} lanes)")  # fmt: skip


@dataclass
class VectorizeNM(RewritePattern):
    width: int
    panels: int
    nt: int
    kc: int
    kb: int
    permute: bool
    bf16_panels: bool
    prefetch: bool
    dense_panels: bool

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.LinearOp, rewriter: PatternRewriter, /):
        packed, assemble = op.rhs.type, op.rhs.owner
        if not (isinstance(packed, PackedType) and isinstance(assemble, AssembleOp)) or op.out is None:
            return
        sparse = packed.layout.sparse if isinstance(packed.layout, ComposedLayoutAttr) else packed.layout
        if not isinstance(sparse, NMAttr | HybridAttr):
            return
        if packed.dims[1] < 0:  # the generic loop nest (a symbolic N is read at run time)
            decline(op, f"{NAME}: the weight's K is a symbol (its kernels need a static K)")
            return
        if not computes_in_f32(op.lhs):
            decline(op, f"{NAME}: its kernels take f32, bf16 or f16 activations")
            return
        values = stored_values(packed, assemble, op.rhs, self.width)
        # (values: an nm or `nm with Q` weight; its index words' groups are whole for the panel nest)
        panels = values is not None and values.view is None and _decoder(packed).code.whole_groups_per_word
        permute = None
        if values is not None and self.permute and _permutable(packed, self.width):
            decoder = _decoder(packed)
            permute = PermuteKernel(op.lhs, op.out, ragged(packed.dims[1], decoder.code.word_cols), values,
                                    assemble.buffer("indices"), decoder)  # fmt: skip
        if _hybrid_vectorizable(packed, self.width):  # N static or read at run time
            shape = Shape(self.width, HYBRID_ROWS[self.width], 4)
            lower_hybrid(op, shape, self.panels, self.nt, self.kb, self.dense_panels)
        elif not (panels or permute is not None):
            decline(op, f"{NAME}: {_missed(packed, values, self.width)}")
            return
        elif self.bf16_panels and panels and _pairs(packed, op.lhs, values):
            self._lower(op, panels, permute, pairs=True)
        elif (self.bf16_panels and permute is not None and values is not None and element_type(op.lhs) == bf16
              and permute.decoder.steps(self.width) == 1 and packed.dims[0] >= 0
              and pairs_fit(packed.dims[1])):  # fmt: skip
            decode = densify(values, assemble.buffer("indices"), permute.decoder, packed.dims[1])
            lower_panels_or(op, decode, lambda copy: self._lower(copy, panels, permute), NM_PANEL_ROWS)
        else:
            self._lower(op, panels, permute)
        rewriter.erase(op)

    def _lower(self, op: tdsl.LinearOp, panels: bool, permute: PermuteKernel | None, pairs: bool = False) -> None:
        """The panel nest (on f32, or with `pairs` on vdpbf16ps), else lane selection."""
        if panels:
            lower_nm(op, self.width, self.panels, self.nt, self.kc, self.kb, self.prefetch, permute, pairs)
        else:
            assert permute is not None
            lower_linear(op, Shape(self.width, 4, 4), permute)


@dataclass(frozen=True)
class VectorizeSparse(ModulePass):
    """`width` f32 lanes per vector; blocks of `panels` vectors of batch rows;
    k-tiles of `kc` columns (rounded to whole index words). The panel nest loads
    one vector of x per FMA, so it runs at the L1's load rate: kc = 128 (4 panels
    of a k-tile fill a 32 KB L1) and n-tiles of nt = 32 rows measured 2-9% faster than
    kc = 32, nt = 16 on Zen 4; kc = 256 (spilling to L2) 20-35% slower."""

    name = NAME

    width: int = 16
    panels: int = 4
    nt: int = 32
    kc: int = 128
    kb: int = 1024
    permute: bool = True
    prefetch: bool = False
    """The panel nest asks for each weight row's next k-tile of values and index words (into
    L2) as it starts one (set by the pipeline where measured: 8 lanes, Zen 3)."""
    dense_panels: bool = False
    """A hybrid weight's dense tiles, too, run over the panels (a broadcast value and one
    FMA per panel), not in HybridKernel's dot-product blocks: where the L1 serves a vector
    load per FMA (two 256-bit loads a cycle on Zen 3; Zen 4 serves one 512-bit load a
    cycle, so that its dense tiles keep the blocks). Set by the pipeline below 16 lanes."""
    bf16_panels: bool = False
    """Where the target has vdpbf16ps (AVX-512 BF16; set by the pipeline): bf16 activations
    times a 2:4 weight of bf16 values run the panel blocks on it (PairProduct); times a
    lane-selectable N:M weight of quantized values, k a multiple of 32, calls of
    NM_PANEL_ROWS rows or more densify the weight into tdsl-vectorize-quant's bf16 pair
    panels for tdsl-microkernel's PairKernel."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if min(self.width, self.panels, self.nt, self.kc, self.kb) <= 0:
            raise DiagnosticException("tdsl-vectorize-sparse: width, panels, nt, kc and kb must be positive")
        pattern = VectorizeNM(self.width, self.panels, self.nt, self.kc, self.kb, self.permute, self.bf16_panels,
                              self.prefetch, self.dense_panels)  # fmt: skip
        PatternRewriteWalker(pattern, apply_recursively=False).rewrite_module(op)
