"""tdsl-microkernel: dense f32 `linear` products become register-blocked vector
microkernels, which LLVM's auto-vectoriser does not find on the scalar nest.

`y = x @ transpose(w)` with w stored [n, k]: both operands are contiguous along
k, so a `rows` x `cols` block of y is held as rows*cols vector accumulators that
each gather `width` partial sums along k (one vector.fma per pair of loaded rows,
no packing and no gather), reduced once per k-tile. Loops, outermost first:
n-tiles (a weight panel of tn rows x tk columns stays in L2), k-tiles, row blocks,
column blocks (a call of one row: n-tiles, column blocks, k-tiles); the ragged edges
of m and n use 1-row and 1-column kernels, a ragged k a scalar tail. The epilogue
(bias, activation) runs on each finished n-tile.

`matmul(a, b)` with b stored [k, n] takes the outer-product form (AxpyKernel) over its
whole blocks of rows, and the rows left (a GEMV's one) the streaming form (StreamKernel),
which reads b along whole rows.

With `bf16` (a target with AVX-512 BF16) a product of bf16 x and bf16 w steps with
vdpbf16ps instead: each accumulator lane adds the products of a pair of adjacent k
columns, so the rows of x and w, contiguous along k, are its operands as stored (no
packing, no widening), 2*width columns a step, twice the f32 FMA's products. Where k
is static and a multiple of 32, the whole groups of 16 rows take the outer-product form
on vdpbf16ps instead (PairKernel): per n-tile, w's rows are packed into a panel of bf16
pairs (pack_pairs, 16 x 16 dword transposes), so that the accumulators hold whole
outputs, with no reductions; tdsl-vectorize-quant and -sparse decode weights into the
same panels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from xdsl.context import Context
from xdsl.dialects import arith, llvm, memref, scf, vector
from xdsl.dialects.builtin import MemRefType, ModuleOp, UnitAttr, VectorType, bf16, f32, i32
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

from stoicc_py.codegen.loop_builder import LoopBuilder, compute_type, element_type
from stoicc_py.codegen.prefetch import LINE_BYTES, prefetch_rows, rows_ahead
from stoicc_py.codegen.register_blocks import Body, Emit, Shape, floor_to, for_, ragged, register_blocks
from stoicc_py.codegen.remarks import decline
from stoicc_py.codegen.shuffles import transpose
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import BUFFER_ALIGNMENT, PackedType
from stoicc_py.passes.parallelize_loops import MERGED, ROWS_LEFT
from stoicc_py.passes.tdsl_lower_to_loops import TileNest, apply_epilogue, before, span
from stoicc_py.passes.tdsl_tile import TARGET_TILES

NAME = "tdsl-microkernel"


def _is_dense_f32(value: SSAValue) -> bool:
    """A dense buffer whose elements compute in f32: f32, or bf16/f16 (widened as loaded)."""
    return isinstance(value.type, MemRefType) and compute_type(value.type.element_type) == f32


def _dense_f32(op: tdsl.LinearOp | tdsl.MatmulOp) -> bool:
    """Whether `op` is this pass's: dense operands computed in f32; a dense product of
    other types is declined (a remark says so)."""
    if op.out is None or any(isinstance(v.type, PackedType) for v in (op.lhs, op.rhs)):
        return False
    if not all(_is_dense_f32(v) for v in (op.lhs, op.rhs, op.out)):
        decline(op, f"{NAME}: its kernels take f32, bf16 or f16 operands and results (i8 x i8 is "
                    "tdsl-vectorize-integer's)")  # fmt: skip
        return False
    return True


@dataclass
class DotKernel(ABC):
    """out[i:i+rows, j:j+cols] += x[i:i+rows, k0:k1] . w[j:j+cols, k0:k1], with
    rows*cols vector accumulators reduced once per k-tile; the weight format
    decides how a step of `granule` columns loads and multiplies."""

    x: SSAValue
    out: SSAValue
    k_tail: bool
    """Whether a k-tile may end off a step boundary (needs the scalar tail)."""

    @abstractmethod
    def granule(self, shape: Shape) -> int:
        """Dense columns per vector step."""

    @abstractmethod
    def step(self, b: LoopBuilder, shape: Shape, rows: list[SSAValue], cols: list[SSAValue], k: SSAValue,
             acc: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
        """The accumulators after the step at dense column k (acc[r * cols + c])."""

    @abstractmethod
    def tail(self, b: LoopBuilder, rows: list[SSAValue], cols: list[SSAValue], k0: SSAValue, k1: SSAValue,
             sums: Sequence[SSAValue]) -> Sequence[SSAValue]:  # fmt: skip
        """The scalar sums after adding columns k0..k1 (less than a step)."""

    def emit(self, b: LoopBuilder, shape: Shape, i: SSAValue, j: SSAValue, k0: SSAValue, k1: SSAValue) -> None:
        rows, cols = shape.indices(b, i, j)
        granule = self.granule(shape)
        kv = floor_to(b, k0, k1, granule) if self.k_tail else k1
        zero = b.splat(shape.vec, 0.0)

        def k_step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            return self.step(inner, shape, rows, cols, k, acc)

        accs = b.loop(k0, kv, b.index(granule), k_step, [zero] * (shape.rows * shape.cols), name="k")
        sums: Sequence[SSAValue] = [b.reduce_lanes(acc, "sum") for acc in accs]
        if self.k_tail:
            sums = self.tail(b, rows, cols, kv, k1, sums)
        for r, row in enumerate(rows):
            for c, col in enumerate(cols):
                b.store(b.fadd(b.load(self.out, [row, col]), sums[r * shape.cols + c]), self.out, [row, col])


@dataclass
class DenseKernel(DotKernel):
    """A dense weight w[n, k]: one vector of x and of w per row, one FMA per pair."""

    w: SSAValue
    ahead: int = 0
    """Rows of w ahead of each row read whose bytes a step of a 1-row block prefetches
    (codegen.prefetch; 0: none)."""

    def granule(self, shape: Shape) -> int:
        return shape.width

    def step(self, b: LoopBuilder, shape: Shape, rows: list[SSAValue], cols: list[SSAValue], k: SSAValue,
             acc: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
        if shape.rows == 1:
            prefetch_rows(b, self.w, cols, self.ahead, k, self.w.type.get_shape()[1])  # type: ignore[attr-defined]
        xs = [b.vload(self.x, [r, k], shape.width) for r in rows]
        return dense_fma(b, shape, xs, lambda c: b.vload(self.w, [cols[c], k], shape.width), acc)

    def tail(self, b: LoopBuilder, rows: list[SSAValue], cols: list[SSAValue], k0: SSAValue, k1: SSAValue,
             sums: Sequence[SSAValue]) -> Sequence[SSAValue]:  # fmt: skip
        def step(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            xs = [b.load(self.x, [r, k]) for r in rows]
            ws = [b.load(self.w, [c, k]) for c in cols]
            return [b.mul_add(acc[r * len(cols) + c], xv, wv) for r, xv in enumerate(xs) for c, wv in enumerate(ws)]

        return b.loop(k0, k1, b.index(1), step, sums, name="k")


DPBF16 = "llvm.x86.avx512bf16.dpbf16ps.512"
"""acc[i] += a[2i+1]*b[2i+1] + a[2i]*b[2i] on <32 x bf16> a, b (declared on <16 x i32>, its
signature before LLVM had bfloat vectors, which LLVM upgrades as it reads the IR: bf16
is i16 in our llvm dialect). Products are exact in f32; the sums round to nearest even,
bf16 subnormal inputs and f32 subnormal results are flushed to zero (DAZ/FTZ)."""


@dataclass
class BF16Kernel(DenseKernel):
    """A dense bf16 w[n, k] and bf16 x: one vdpbf16ps per (row, column) pair per step of
    2*width columns; the scalar tail (a k-tile off a step) as DenseKernel's, in f32."""

    def granule(self, shape: Shape) -> int:
        return 2 * shape.width

    def step(self, b: LoopBuilder, shape: Shape, rows: list[SSAValue], cols: list[SSAValue], k: SSAValue,
             acc: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
        pairs = VectorType(i32, [shape.width])

        def load(buf: SSAValue, row: SSAValue) -> SSAValue:
            halves = b.insert(vector.LoadOp(buf, [row, k], VectorType(bf16, [2 * shape.width])))
            return b.insert(vector.BitcastOp(halves, pairs))

        xs = [load(self.x, r) for r in rows]
        new = list(acc)
        for c, col in enumerate(cols):
            wv = load(self.w, col)
            for r, xv in enumerate(xs):
                i = r * shape.cols + c
                new[i] = b.insert(llvm.CallIntrinsicOp(DPBF16, [acc[i], xv, wv], [shape.vec]))
        return new


def dense_fma(b: LoopBuilder, shape: Shape, xs: list[SSAValue], w: Callable[[int], SSAValue],
              acc: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
    """acc[r, c] += xs[r] * w(c): each weight vector is loaded once for all rows."""
    new = list(acc)
    for c in range(shape.cols):
        wv = w(c)
        for r, xv in enumerate(xs):
            new[r * shape.cols + c] = b.insert(vector.FMAOp(xv, wv, acc[r * shape.cols + c]))
    return new


def lower_linear(op: tdsl.LinearOp, shape: Shape, kernel: DotKernel, first_row: SSAValue | None = None) -> None:
    """Replace a bufferized linear by the nest of `kernel`'s register blocks, over
    the rows from `first_row` (default 0) on."""
    out = op.out
    assert out is not None
    _tm, tn, tk = op.tile_sizes or TARGET_TILES["cpu"][tdsl.LinearOp]
    granule = kernel.granule(shape)
    tn = max(shape.cols, tn // shape.cols * shape.cols)  # n-tiles of whole column blocks
    tk = max(granule, tk // granule * granule)
    b = before(op)
    m, k_size, n = b.size(op.lhs, 0), b.size(op.lhs, 1), b.size(out, 1)
    static_k = op.lhs.type.get_shape()[1]  # type: ignore[attr-defined]
    lo = first_row or b.index(0)

    def k_tiles(b: LoopBuilder, body: Callable[[LoopBuilder, SSAValue, SSAValue], None]) -> None:
        for_(b, b.index(0), k_size, tk, lambda b, k0: body(b, k0, span(b, k0, tk, k_size)), "k0")

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        j1 = span(b, j0, tn, n)
        tile = TileNest(b, out, lo, m, j0, j1)
        tile.zero()

        def k_outer(b: LoopBuilder) -> None:
            def k_tile(b: LoopBuilder, k0: SSAValue, k1: SSAValue) -> None:
                register_blocks(b, shape, (lo, m), (j0, j1), lambda b, s, i, j: kernel.emit(b, s, i, j, k0, k1))

            k_tiles(b, k_tile)

        def k_inner(b: LoopBuilder) -> None:
            def block(b: LoopBuilder, s: Shape, i: SSAValue, j: SSAValue) -> None:
                k_tiles(b, lambda b, k0, k1: kernel.emit(b, s, i, j, k0, k1))

            register_blocks(b, Shape(shape.width, 1, shape.cols), (lo, m), (j0, j1), block)

        # One row (a GEMV) takes its blocks' k-tiles one after another, so that each block
        # reads its rows of w whole, not a k-tile of every row of the n-tile in turn: the
        # same sums in the same order (the same bits), 13% faster at 1x576x1536 on Zen 3.
        # More rows keep a k-tile of the n-tile's panel in L2 for all of them. Where K is
        # one k-tile, the two are one nest.
        if 0 <= static_k <= tk:
            k_outer(b)
        else:
            b.branch(b.insert(arith.CmpiOp(b.insert(arith.SubiOp(m, lo)), b.index(1), "eq")), k_inner, k_outer)
        apply_epilogue(op, tile)

    for_(b, b.index(0), n, tn, n_tile, "j0")


@dataclass
class AxpyKernel:
    """out[i:i+rows, j:j+cols*width] += a[i:i+rows, k0:k1] @ b[k0:k1, j:j+cols*width] for
    a b stored [k, n]: rows*cols vector accumulators held across k, each step one vector
    load of b per column block and one broadcast element of a per row (an outer
    product), so no reduction. Columns of b in units of whole vectors; column c of b is
    column `first` + c of out (0 for matmul's b, the n-tile of a packed panel)."""

    a: SSAValue
    b: SSAValue
    out: SSAValue
    first: SSAValue | None = None

    def out_column(self, b: LoopBuilder, c: SSAValue) -> SSAValue:
        return c if self.first is None else b.add(c, self.first)

    def emit(self, b: LoopBuilder, shape: Shape, i: SSAValue, jv: SSAValue, k0: SSAValue, k1: SSAValue) -> None:
        rows = [b.add(i, b.index(r)) for r in range(shape.rows)]
        j = b.mul(jv, b.index(shape.width))
        cols = [b.add(j, b.index(c * shape.width)) for c in range(shape.cols)]
        outs = [self.out_column(b, c) for c in cols]
        acc = [b.insert(vector.LoadOp(self.out, [r, c], shape.vec)) for r in rows for c in outs]

        def k_step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            return self.step(inner, shape, rows, cols, k, acc)

        sums = b.loop(k0, k1, b.index(self.depth), k_step, acc, name="k")
        for s, (r, c) in enumerate((r, c) for r in rows for c in outs):
            b.b.insert(vector.StoreOp(sums[s], self.out, [r, c]))

    depth: ClassVar[int] = 1
    """Columns of a (rows of b) per step."""

    def step(self, b: LoopBuilder, shape: Shape, rows: list[SSAValue], cols: list[SSAValue], k: SSAValue,
             acc: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
        bs = [b.vload(self.b, [k, c], shape.width) for c in cols]
        xs = [b.insert(vector.BroadcastOp(b.load(self.a, [r, k]), shape.vec)) for r in rows]
        return dense_fma(b, shape, xs, lambda c: bs[c], acc)

    def scalar_columns(self, b: LoopBuilder, rows: tuple[SSAValue, SSAValue], cols: tuple[SSAValue, SSAValue],
                       k0: SSAValue, k1: SSAValue) -> None:  # fmt: skip
        """b's columns cols[0]..cols[1] (past the last whole vector) in rows rows[0]..rows[1],
        one dot product each."""

        def dot(b: LoopBuilder, i: SSAValue, c: SSAValue) -> None:
            def step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
                return [self.scalar_step(inner, i, c, k, acc[0])]

            j = self.out_column(b, c)
            (total,) = b.loop(k0, k1, b.index(self.depth), step, [b.load(self.out, [i, j])], name="k")
            b.store(total, self.out, [i, j])

        TileNest(b, self.out, *rows, *cols).each(dot)

    def scalar_step(self, b: LoopBuilder, i: SSAValue, c: SSAValue, k: SSAValue, acc: SSAValue) -> SSAValue:
        return b.mul_add(acc, b.load(self.a, [i, k]), b.load(self.b, [k, c]))


def axpy_panel(b: LoopBuilder, shape: Shape, kernel: AxpyKernel, m: SSAValue, cols: tuple[SSAValue, SSAValue],
               k_size: SSAValue, tk: int, whole_rows: bool = False) -> None:  # fmt: skip
    """kernel's register blocks over rows 0..m and b's columns cols[0]..cols[1] (cols[0]
    a multiple of the vector width), k-tiles of tk; the output already holds the sums so far.
    `whole_rows`: m is a multiple of shape.rows (no 1-row edge kernels)."""
    lo, hi = cols
    end = floor_to(b, lo, hi, shape.width)  # where the whole vectors end
    width = b.index(shape.width)

    def k_tile(b: LoopBuilder, k0: SSAValue) -> None:
        k1 = span(b, k0, tk, k_size)
        vectors = (b.div(lo, width), b.div(end, width))
        emit: Emit = lambda b, s, i, j: kernel.emit(b, s, i, j, k0, k1)  # noqa: E731
        register_blocks(b, shape, (b.index(0), m), vectors, emit, whole_rows=whole_rows)
        kernel.scalar_columns(b, (b.index(0), m), (end, hi), k0, k1)

    for_(b, b.index(0), k_size, tk, k_tile, "k0")


PAIR_STEP = 32
"""k per square of pack_pairs: 16 dwords of bf16 pairs, 16 rows at a time."""

PAIR_SHAPE = Shape(16, 6, 4)
"""PairKernel's block: 6 rows x 4 vectors of columns (24 accumulators, 4 loaded vectors of
the panel, the rows' broadcast pairs), as the f32 outer product's."""

PAIR_PANEL_BYTES = 256 << 10
"""A panel of pairs holds at most this much (in columns of whole 4-vector blocks): at
SmolLM2's K = 1536, panels of 768 KB (256 columns) measured 7-20% slower than 196 KB
(64 columns) in a process that runs many kernels (1 thread, Zen 4), the same alone."""


def pair_tile(k_size: int) -> int:
    """The n-tile of a panel of pairs of k_size columns (PAIR_PANEL_BYTES)."""
    block = PAIR_SHAPE.width * PAIR_SHAPE.cols
    return max(block, PAIR_PANEL_BYTES // (2 * k_size) // block * block)


PAIR_TK = 256
"""PairKernel's k-tile (128 pairs: a 4-vector strip of the panel is 32 KB). 64, 128 and
576, and column blocks outside row blocks, measured the same at SmolLM2's shapes (Zen 4:
the block is bound by vdpbf16ps, 24 a step against 4 loads and 6 broadcasts)."""


@dataclass
class PairKernel(AxpyKernel):
    """AxpyKernel's outer product on vdpbf16ps: a is bf16 [m, k] (k even) and b a panel of
    i32 [k/2, n] whose dword (p, c) holds column c's bf16 pair at k = 2p, 2p + 1
    (pack_pairs), so that a step of two columns of a loads one vector of b per `width`
    columns and broadcasts each row's pair of a as a dword; the accumulators hold whole
    outputs, with no reduction across lanes (BF16Kernel's dot-product blocks reduce each
    of theirs per k-tile)."""

    depth: ClassVar[int] = 2

    def step(self, b: LoopBuilder, shape: Shape, rows: list[SSAValue], cols: list[SSAValue], k: SSAValue,
             acc: Sequence[SSAValue]) -> list[SSAValue]:  # fmt: skip
        p = b.div(k, b.index(2))
        ws = [b.insert(vector.LoadOp(self.b, [p, c], VectorType(i32, [shape.width]))) for c in cols]
        xs = [b.splat_value(b.dword(self.a, [r, k]), shape.width) for r in rows]
        new = list(acc)
        for c, wv in enumerate(ws):
            for r, xv in enumerate(xs):
                i = r * shape.cols + c
                new[i] = b.insert(llvm.CallIntrinsicOp(DPBF16, [acc[i], xv, wv], [shape.vec]))
        return new

    def scalar_step(self, b: LoopBuilder, i: SSAValue, c: SSAValue, k: SSAValue, acc: SSAValue) -> SSAValue:
        word = b.insert(vector.LoadOp(self.b, [b.div(k, b.index(2)), c], VectorType(i32, [1])))
        ws = b.insert(arith.ExtFOp(b.insert(vector.BitcastOp(word, VectorType(bf16, [2]))), VectorType(f32, [2])))
        for t in range(2):
            w = b.insert(vector.ExtractOp(ws, [t], f32))
            acc = b.mul_add(acc, b.load(self.a, [i, b.offset(k, t)]), w)
        return acc


def pack_pairs(b: LoopBuilder, w: SSAValue, rows: tuple[SSAValue, SSAValue], k_size: int, panel: SSAValue,
               first: SSAValue) -> None:  # fmt: skip
    """panel[p, first + r - rows[0]] = w[r, 2p : 2p + 2] as one dword for the bf16 rows
    rows[0]..rows[1] of w, and copies of the last of them up to a multiple of 16 columns:
    per PAIR_STEP k of 16 rows, the rows' 16 dwords transposed in registers."""
    lo, hi = rows
    last = b.insert(arith.SubiOp(hi, b.index(1)))
    pairs = VectorType(i32, [PAIR_STEP // 2])

    def square(b: LoopBuilder, r0: SSAValue, k: SSAValue) -> None:
        sources = [b.min(b.add(lo, b.add(r0, b.index(t))), last) for t in range(16)]
        loaded = [b.insert(vector.LoadOp(w, [r, k], VectorType(bf16, [PAIR_STEP]))) for r in sources]
        p, column = b.div(k, b.index(2)), b.add(first, r0)
        for q, v in enumerate(transpose(b, [b.insert(vector.BitcastOp(u, pairs)) for u in loaded])):
            b.b.insert(vector.StoreOp(v, panel, [b.add(p, b.index(q)), column]))

    count = b.insert(arith.SubiOp(hi, lo))
    for_(b, b.index(0), count, 16, lambda b, r0: for_(b, b.index(0), b.index(k_size), PAIR_STEP,
                                                       lambda b, k: square(b, r0, k), "k"), "r")  # fmt: skip


def pairs_fit(k_size: int) -> bool:
    """Whether a static k takes pair panels (pack_pairs' whole squares)."""
    return k_size > 0 and k_size % PAIR_STEP == 0


def pair_panel_alloc(b: LoopBuilder, k_size: int, tn: int) -> SSAValue:
    return b.insert(memref.AllocOp.get(i32, BUFFER_ALIGNMENT, [k_size // 2, tn]))


def lower_pair_linear(op: tdsl.LinearOp, shape: Shape, k_size: int, m: SSAValue) -> None:
    """Rows 0..m of a linear of bf16 x and bf16 w (k a multiple of PAIR_STEP) as PairKernel's
    outer product: per n-tile, the tile's rows of w packed into a panel of pairs."""
    out = op.out
    assert out is not None
    tn = pair_tile(k_size)
    b = before(op)
    panel = pair_panel_alloc(b, k_size, tn)
    n = b.size(out, 1)

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        j1 = span(b, j0, tn, n)
        pack_pairs(b, op.rhs, (j0, j1), k_size, panel, b.index(0))
        tile = TileNest(b, out, b.index(0), m, j0, j1)
        tile.zero()
        pair_panel(b, shape, PairKernel(op.lhs, panel, out, j0), m, b.insert(arith.SubiOp(j1, j0)), k_size)
        apply_epilogue(op, tile)

    for_(b, b.index(0), n, tn, n_tile, "j0")
    b.b.insert(memref.DeallocOp.get(panel))


def pair_panel(b: LoopBuilder, shape: Shape, kernel: PairKernel, m: SSAValue, columns: SSAValue, k_size: int) -> None:
    """kernel over rows 0..m and the panel's columns 0..columns, into an output holding zeros."""
    axpy_panel(b, shape, kernel, m, (b.index(0), columns), b.index(k_size), PAIR_TK)


def axpy_tile(shape: Shape, tn: int) -> int:
    """An n-tile of whole column blocks."""
    return max(shape.width * shape.cols, tn // (shape.width * shape.cols) * shape.width * shape.cols)


def lower_matmul(op: tdsl.MatmulOp, shape: Shape) -> None:
    """Replace a bufferized dense f32 matmul by AxpyKernel's register blocks over its whole
    blocks of shape.rows rows: n-tiles (a panel of b of tk x tn stays in cache), k-tiles,
    row blocks, vector-column blocks; 1-vector kernels at the ragged column edge, scalar dot
    products for the last columns when n is not a multiple of the vector width. The rows
    left (all of them below shape.rows: a GEMV) take StreamKernel."""
    out = op.out
    assert out is not None
    _tm, tn, tk = op.tile_sizes or TARGET_TILES["cpu"][tdsl.MatmulOp]
    tn = axpy_tile(shape, tn)
    kernel = AxpyKernel(op.lhs, op.rhs, out)
    b = before(op)
    m, k_size, n = b.size(op.lhs, 0), b.size(op.lhs, 1), b.size(out, 1)
    whole = floor_to(b, b.index(0), m, shape.rows)

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        j1 = span(b, j0, tn, n)
        tile = TileNest(b, out, b.index(0), whole, j0, j1)
        tile.zero()
        axpy_panel(b, shape, kernel, whole, (j0, j1), k_size, tk, whole_rows=True)
        apply_epilogue(op, tile)

    for_(b, b.index(0), n, tn, n_tile, "j0")
    stream_rows(b, op, StreamKernel(op.lhs, op.rhs, out, shape.width), kernel, (whole, m), shape.rows)


STREAM_COLUMNS = 2048
"""Columns per n-tile of StreamKernel at most: each step reads 8 KB runs of `depth` rows of b
(two pages each: wider tiles measured no faster on the Zen 4, 1024 slower at 1x4096x4096)."""

STREAM_TILES = 2
"""n-tiles of StreamKernel per call, where STREAM_COLUMNS allows: the native pool splits a
GEMV's n-tiles over its threads, each thread's run as one tile (parallelize_loops.MERGED).
Narrower tiles measured 10-25% slower on one thread at SmolLM2's shapes (runs of b's rows
shorter than whole rows), so two: a half for each of two threads, whole rows on one."""

STREAM_DEPTH = 8
"""Rows of b per StreamKernel step at most: 16 FMAs a loaded vector of out at M = 1 measured
slower than 8 (16 streams of b), 4 slower too (a load and a store of out per 4 FMAs)."""

STREAM_BROADCASTS = 16
"""Vector registers a StreamKernel step holds broadcast elements of a in (rows x depth):
half the register file, the rest for the loaded rows of b and the accumulators."""


def offsets(b: LoopBuilder, base: SSAValue, count: int) -> list[SSAValue]:
    """base, base + 1, .., base + count - 1."""
    return [base] + [b.add(base, b.index(t)) for t in range(1, count)]


@dataclass
class StreamKernel:
    """out[i:i+rows, cols] += a[i:i+rows, :] @ b[:, cols] for fewer rows than a register
    block (the axpy form): per step of `depth` rows of b, each row's a[r, k:k+depth] is
    broadcast once; then each vector of out is loaded, takes `depth` FMAs (one load of
    each of those rows of b, shared by the rows of out) and is stored. b streams along
    whole rows, `depth` at a time, where a 1-row register block would read a few vectors
    of each row, N*4 bytes apart. Each output sums over k in order from zero, as
    AxpyKernel's and the scalar columns' do, so a row's bits do not depend on its kernel."""

    a: SSAValue
    b: SSAValue
    out: SSAValue
    width: int

    def emit(self, b: LoopBuilder, i: SSAValue, rows: int, k_size: SSAValue, cols: tuple[SSAValue, SSAValue]) -> None:
        """Rows i..i+rows, columns cols[0]..cols[1] (whole vectors)."""
        depth = max(1, min(STREAM_DEPTH, STREAM_BROADCASTS // rows))
        end = floor_to(b, b.index(0), k_size, depth) if depth > 1 else k_size
        for_(b, b.index(0), end, depth, lambda b, k: self.step(b, offsets(b, i, rows), offsets(b, k, depth), cols), "k")
        if depth > 1:
            for_(b, end, k_size, 1, lambda b, k: self.step(b, offsets(b, i, rows), [k], cols), "k")

    def step(self, b: LoopBuilder, rows: list[SSAValue], ks: list[SSAValue], cols: tuple[SSAValue, SSAValue]) -> None:
        xs = [[b.splat_value(b.load(self.a, [r, k]), self.width) for k in ks] for r in rows]

        def column(b: LoopBuilder, j: SSAValue) -> None:
            ws = [b.vload(self.b, [k, j], self.width) for k in ks]
            for r, x in zip(rows, xs):
                acc = b.vload(self.out, [r, j], self.width)
                for xv, wv in zip(x, ws):
                    acc = b.insert(vector.FMAOp(xv, wv, acc))
                b.vstore(acc, self.out, [r, j])

        for_(b, *cols, self.width, column, "j")


def stream_rows(b: LoopBuilder, op: tdsl.MatmulOp, stream: StreamKernel, kernel: AxpyKernel,
                rows: tuple[SSAValue, SSAValue], block_rows: int) -> None:  # fmt: skip
    """Rows rows[0]..rows[1] (fewer than block_rows) of op by StreamKernel, per n-tile
    (stream_tile): in groups of the powers of two below block_rows, largest first (5
    rows: 4 + 1), so that each group reads b once; scalar dot products for the columns
    past the last whole vector; then the epilogue.

    The n-tile loop is top-level, and has no iterations where no rows are left (its end is
    0, not n: no `if`, which would hide it), so that mark-parallel-loops proves its tiles
    independent and a GEMV's run on the native pool (one row: abi.one_row_pool); marked
    ROWS_LEFT, so that calls of 32 rows or more keep their row split (calls_pool), and
    MERGED: a column's sum does not depend on its tile, so a thread's tiles run as one."""
    out = op.out
    assert out is not None
    k_size, n = b.size(op.lhs, 1), b.size(out, 1)
    groups = [1 << p for p in reversed(range((block_rows - 1).bit_length()))]
    tile = stream_tile(b, n, stream.width)
    end = b.insert(arith.SelectOp(b.insert(arith.CmpiOp(rows[1], rows[0], "ugt")), n, b.index(0)))

    def n_tile(b: LoopBuilder, j0: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
        j1 = b.min(b.add(j0, tile), end)
        nest = TileNest(b, out, *rows, j0, j1)
        nest.zero()
        vectors = (j0, floor_to(b, j0, j1, stream.width))

        def group(size: int) -> Body:
            return lambda b, i: stream.emit(b, i, size, k_size, vectors)

        lo = rows[0]
        for size in groups:
            hi = floor_to(b, lo, rows[1], size) if size > 1 else rows[1]
            for_(b, lo, hi, size, group(size), "i")
            lo = hi
        kernel.scalar_columns(b, rows, (vectors[1], j1), b.index(0), k_size)
        apply_epilogue(op, nest)
        return ()

    b.loop(b.index(0), end, tile, n_tile, name="j0")
    loop = op.prev_op
    assert isinstance(loop, scf.ForOp)
    loop.attributes[ROWS_LEFT] = loop.attributes[MERGED] = UnitAttr()


def stream_tile(b: LoopBuilder, n: SSAValue, width: int) -> SSAValue:
    """StreamKernel's n-tile: n / STREAM_TILES columns rounded up to whole vectors (one at
    least: never a step of 0), at most STREAM_COLUMNS. Whole vectors, so that the columns past
    the last one, and no others, take the scalar dot products at every n."""
    unit = STREAM_TILES * width
    vectors = b.insert(arith.MaxUIOp(b.div(b.add(n, b.index(unit - 1)), b.index(unit)), b.index(1)))
    return b.min(b.mul(vectors, b.index(width)), b.index(STREAM_COLUMNS))


def lower_packed_linear(op: tdsl.LinearOp, shape: Shape, k_size: int, m: SSAValue) -> None:
    """Rows 0..m of a linear with a short static k as a matmul: per n-tile, the tile's
    rows of w are copied transposed into a [k, tn] panel, which AxpyKernel reads (no
    reductions)."""
    out = op.out
    assert out is not None
    tn = axpy_tile(shape, TARGET_TILES["cpu"][tdsl.MatmulOp][1])
    b = before(op)
    panel = b.insert(memref.AllocOp.get(f32, BUFFER_ALIGNMENT, [k_size, tn]))
    n, k = b.size(out, 1), b.index(k_size)

    def n_tile(b: LoopBuilder, j0: SSAValue) -> None:
        j1 = span(b, j0, tn, n)

        def pack_row(b: LoopBuilder, j: SSAValue) -> None:
            column = b.insert(arith.SubiOp(j, j0))
            for_(b, b.index(0), k, 1, lambda b, kk: b.store(b.load(op.rhs, [j, kk]), panel, [kk, column]), "k")

        for_(b, j0, j1, 1, pack_row, "j")
        tile = TileNest(b, out, b.index(0), m, j0, j1)
        tile.zero()
        axpy_panel(b, shape, AxpyKernel(op.lhs, panel, out, j0), m, (b.index(0), b.insert(arith.SubiOp(j1, j0))),
                   k, k_size)  # fmt: skip
        apply_epilogue(op, tile)

    for_(b, b.index(0), n, tn, n_tile, "j0")
    b.b.insert(memref.DeallocOp.get(panel))


@dataclass
class VectorizeMatmul(RewritePattern):
    shape: Shape

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.MatmulOp, rewriter: PatternRewriter, /):
        if not _dense_f32(op):
            return
        lower_matmul(op, self.shape)
        rewriter.erase(op)


PACK_ROWS = 16
"""A short-k linear (Microkernel.pack_k) packs w for its whole groups of this many rows."""


def _packed_rows(op: tdsl.LinearOp, shape: Shape, k_size: int,
                 lower: Callable[[tdsl.LinearOp, Shape, int, SSAValue], None]) -> SSAValue:  # fmt: skip
    """Lower the whole groups of PACK_ROWS rows of op the packed way (`lower`:
    lower_packed_linear or lower_pair_linear; under `if` there are any, the packing being
    no use otherwise); return where they end. A row takes the same kernel whether a call
    is whole or split into row blocks (codegen/row_parallel.py), so the results agree bit
    for bit."""
    b = before(op)
    m = b.size(op.lhs, 0)
    whole = floor_to(b, b.index(0), m, PACK_ROWS)
    copy = op.clone()
    b.b.insert(scf.IfOp(b.insert(arith.CmpiOp(whole, b.index(0), "ugt")), [], Region(Block([copy, scf.YieldOp()]))))
    lower(copy, shape, k_size, whole)
    Rewriter.erase_op(copy)
    return whole


PREFETCH_BYTES = 24 << 20
"""The least bytes of a dense f32 weight whose GEMV rows prefetch. Its rows (576 values
and more: 36 lines) are streams the hardware prefetchers follow; the software prefetches
pay only where w leaves L3 between calls (Zen 4, 32 MB of L3, 1 thread: 576^2 to
1024 x 4096 (17 MB) ran 1.14-1.34x faster without, hot or cold; 12288 x 576 (28 MB) 1.2x
faster with, 4096^2 and 14336 x 4096 1.03-1.05x)."""


@dataclass
class VectorizeLinear(RewritePattern):
    shape: Shape
    axpy: Shape
    pack_k: int
    bf16: bool

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.LinearOp, rewriter: PatternRewriter, /):
        if (out := op.out) is None or not _dense_f32(op):
            return
        k_size = op.lhs.type.get_shape()[1]  # type: ignore[attr-defined]
        kind = BF16Kernel if self.bf16 and element_type(op.lhs) == element_type(op.rhs) == bf16 else DenseKernel
        first = None
        if kind is BF16Kernel and pairs_fit(k_size):
            first = _packed_rows(op, self.axpy, k_size, lower_pair_linear)
        elif 0 <= k_size <= self.pack_k:
            first = _packed_rows(op, self.axpy, k_size, lower_packed_linear)
        step = 2 * self.shape.width if kind is BF16Kernel else self.shape.width
        kernel = kind(op.lhs, out, ragged(k_size if k_size >= 0 else None, step), op.rhs)
        # f32 GEMV rows prefetch w's rows ahead where a step reads a line of each (16 lanes:
        # measured there; with 8, Zen 3 ran SmolLM2's shapes 6-45% faster without) and w is
        # PREFETCH_BYTES or more, not from a view (no pointer to lower-views)
        if element_type(op.lhs) == f32 and not isinstance(op.rhs.owner, memref.ReinterpretCastOp):
            kernel.ahead = rows_ahead(op.rhs.type, k_size, step, self.shape.cols, LINE_BYTES, PREFETCH_BYTES)
        lower_linear(op, self.shape, kernel, first_row=first)
        rewriter.erase(op)


@dataclass(frozen=True)
class Microkernel(ModulePass):
    """`width` f32 lanes per vector (16 for AVX-512, 8 for AVX2, 4 for SSE/NEON);
    a `rows` x `cols` block of accumulators (rows*cols + rows + 1 vector registers).
    A linear whose k is static and at most `pack_k` (attention scores, k = 64: the dot
    products' reductions would cost more than their FMAs) runs its whole groups of
    PACK_ROWS rows as matmul's outer product on a panel of w copied transposed per
    n-tile, the rows left with dot products. `bf16` (AVX-512 BF16, width 16): a linear
    of bf16 x and bf16 w steps with vdpbf16ps (BF16Kernel)."""

    name = NAME

    width: int = 16
    rows: int = 4
    cols: int = 6
    pack_k: int = 128
    bf16: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if min(self.width, self.rows, self.cols) <= 0:
            raise DiagnosticException("tdsl-microkernel: width, rows and cols must be positive")
        if self.bf16 and self.width != 16:
            raise DiagnosticException(f"tdsl-microkernel: vdpbf16ps has 16 f32 lanes, got width={self.width}")
        shape = Shape(self.width, self.rows, self.cols)
        # matmul's blocks are rows x column vectors, the transpose of linear's (the same registers)
        axpy = Shape(self.width, self.cols, self.rows)
        PatternRewriteWalker(
            GreedyRewritePatternApplier([VectorizeLinear(shape, axpy, self.pack_k, self.bf16), VectorizeMatmul(axpy)]), apply_recursively=False
        ).rewrite_module(op)
