"""tdsl-amx: a bf16 or int8 `linear` on Intel AMX tiles, where the target has them.

`y = linear(x, w)` with x [M, K] and w [N, K] both bf16 (y f32 or bf16: `tdpbf16ps`) or
both i8 (y i32: `tdpbssd`), dense, N a static multiple of 32 and K of 32 (bf16) or 64
(i8) — a tile row's 64 bytes — becomes, per block of 32 columns of y:

- a panel of w's 32 rows copied into the tiles' operand layout: the dot product
  multiplies a 16 x 64-byte tile of x by a tile holding 16 rows of k *dwords* (2 bf16 or
  4 i8 of consecutive k) by 16 columns, so the panel is [K/kstep][2 column tiles][16
  dwords][16 columns] (w's rows transposed by 32-bit units; the "VNNI" layout), 16
  rows' 64 bytes at a time transposed in registers;
- for every block of 32 rows of x (the last one copied into a zero-padded buffer): four
  16 x 16 f32 or i32 accumulator tiles (tmm0-3), two tiles of x (tmm4-5) and two of the
  panel (tmm6-7) per step along k, then the accumulators stored straight into an f32 or
  i32 y, else to a 32 x 32 buffer and written to y 16 lanes at a time (rounded to bf16
  to nearest even for a bf16 y; element by element for the last, ragged block of rows).

The tiles are configured once per call (`ldtilecfg`: palette 1, eight tiles of 16 rows
by 64 bytes) and released at the end. Each product of two bf16 values is exact in f32;
`tdpbf16ps` adds the two products of a pair to the accumulator with round-to-nearest-
even, flushing denormal inputs and results to zero (Intel SDM, TDPBF16PS); `tdpbssd`
sums four signed byte products into each i32, exactly (wrapping as the i8 kernels do).
Other linears, and each kind on a target without its feature (`amx-bf16`, `amx-int8`:
the pass's options), are left to tdsl-microkernel and tdsl-vectorize-integer.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, llvm, memref, ptr, vector
from xdsl.dialects.builtin import Float32Type, MemRefType, ModuleOp, NoneAttr, VectorType, bf16, i8, i32, i64
from xdsl.ir import Attribute, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern
from xdsl.rewriter import InsertPoint

from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.codegen.register_blocks import floor_to
from stoicc_py.codegen.shuffles import transpose
from stoicc_py.dialects import tdsl

NAME = "tdsl-amx"
BLOCK = 32
"""Rows and columns of y per block: 2 x 2 accumulator tiles of 16 x 16."""
MAX_K = 8192
"""The panel and the padded rows of x: 2 x 32 x K elements (1 MB of bf16 at 8192), allocated per call."""
TILE_BYTES = 64
C_TILES, A_TILES, B_TILES = (0, 1, 2, 3), (4, 5), (6, 7)


@dataclass(frozen=True)
class Kind:
    """A tile dot product: its operands' element, its accumulator, its intrinsic."""

    element: Attribute
    acc: Attribute
    dot: str
    results: tuple[Attribute, ...]
    """The element types y may have (the accumulator's, or rounded to bf16)."""

    @property
    def size(self) -> int:
        return self.element.bitwidth // 8  # type: ignore[attr-defined]

    @property
    def k_step(self) -> int:
        """k per tile row: 64 bytes of x."""
        return TILE_BYTES // self.size


BF16 = Kind(bf16, Float32Type(), "tdpbf16ps", (Float32Type(), bf16))
INT8 = Kind(i8, i32, "tdpbssd", (i32,))


def _amx_operands(op: tdsl.LinearOp, kinds: tuple[Kind, ...]) -> tuple[Kind, int, int] | None:
    """(kind, N, K) where `op` is this pass's: dense x (contiguous rows) and w of one of
    `kinds`' elements, y of one of its results, no bias or activation, N a static multiple
    of 32 and K of the kind's k_step, K at most MAX_K."""
    x, w, y = op.lhs.type, op.rhs.type, op.out.type if op.out is not None else None
    if op.bias is not None or op.act is not None or not isinstance(y, MemRefType):
        return None
    if not (isinstance(x, MemRefType) and isinstance(w, MemRefType)) or len(x.get_shape()) != 2:
        return None
    if not isinstance(x.layout, NoneAttr):  # the tiles read x from its base address, row after row
        return None
    kind = next((kind for kind in kinds if x.element_type == w.element_type == kind.element), None)
    if kind is None or y.element_type not in kind.results:
        return None
    n, k = w.get_shape()
    if n <= 0 or k <= 0 or n % BLOCK or k % kind.k_step or k > MAX_K:
        return None
    return kind, n, k


class _Tiles:
    """The tile instructions, as LLVM's AMX intrinsics on immediate tile numbers."""

    def __init__(self, b: LoopBuilder, kind: Kind):
        self.b, self.kind = b, kind

    def _call(self, name: str, *args: SSAValue) -> None:
        self.b.b.insert(llvm.CallIntrinsicOp(f"llvm.x86.{name}", list(args), []))

    def tile(self, t: int) -> SSAValue:
        return self.b.constant(i8, t)

    def i64(self, value: int | SSAValue) -> SSAValue:
        return self.b.insert(arith.IndexCastOp(self.b.index(value), i64))

    def zero(self, t: int) -> None:
        self._call("tilezero", self.tile(t))

    def load(self, t: int, address: SSAValue, stride: int | SSAValue) -> None:
        self._call("tileloadd64", self.tile(t), address, self.i64(stride))

    def store(self, t: int, address: SSAValue, stride: int) -> None:
        self._call("tilestored64", self.tile(t), address, self.i64(stride))

    def dot(self, c: int, a: int, b: int) -> None:
        self._call(self.kind.dot, self.tile(c), self.tile(a), self.tile(b))

    def configure(self, config: SSAValue) -> None:
        self._call("ldtilecfg", config)

    def release(self) -> None:
        self._call("tilerelease")


def _config(b: LoopBuilder) -> SSAValue:
    """A 64-byte tile configuration: palette 1, tiles 0-7 of 16 rows by 64 bytes."""
    layout = [0] * 64
    layout[0] = 1  # the palette
    for t in range(8):  # bytes per row: a little-endian u16 at 16 + 2t; rows: a byte at 48 + t
        layout[16 + 2 * t], layout[48 + t] = TILE_BYTES, 16
    config = b.insert(memref.AllocOp.get(i8, 64, [64]))
    for offset, byte in enumerate(layout):
        b.store(b.constant(i8, byte), config, [b.index(offset)])
    return config


def _pack_panel(b: LoopBuilder, w: SSAValue, panel: SSAValue, n0: SSAValue, k: int, kind: Kind) -> None:
    """panel[((d / 16) * 2 + c / 16) * 16 + d % 16][c % 16] = dword d of w's row n0 + c: per
    64 bytes of k and 16 columns, the 16 rows' dwords transposed, 16 x 16, in registers."""
    words = VectorType(i32, [16])
    row_bytes = VectorType(kind.element, [kind.k_step])

    def dwords(s: LoopBuilder, kb: SSAValue, _: object) -> list[SSAValue]:
        for tile in range(2):
            rows = [s.insert(vector.BitcastOp(s.insert(vector.LoadOp(
                w, [s.add(n0, s.index(16 * tile + c)), s.mul(kb, s.index(kind.k_step))], row_bytes)), words))
                for c in range(16)]  # fmt: skip
            first = s.mul(s.add(s.mul(kb, s.index(2)), s.index(tile)), s.index(16 * kind.k_step))
            for q, row in enumerate(transpose(s, rows)):
                at = s.add(first, s.index(q * kind.k_step))
                s.b.insert(vector.StoreOp(s.insert(vector.BitcastOp(row, row_bytes)), panel, [at]))
        return []

    b.loop(b.index(0), b.index(k // kind.k_step), b.index(1), dwords, name="kb")


@dataclass
class _Product:
    """One linear's buffers and the addresses the tiles read and write."""

    kind: Kind
    x: SSAValue
    w: SSAValue
    y: SSAValue
    k: int
    panel: SSAValue
    padded: SSAValue
    staged: SSAValue

    @property
    def direct(self) -> bool:
        """Whether the tiles store whole blocks straight into y: accumulator rows of their own."""
        y = self.y.type
        return isinstance(y, MemRefType) and y.element_type == self.kind.acc and isinstance(y.layout, NoneAttr)

    def address(self, b: LoopBuilder, buffer: SSAValue, byte_offset: SSAValue) -> SSAValue:
        return b.insert(ptr.PtrAddOp(b.insert(ptr.ToPtrOp(buffer)), byte_offset))

    def block(self, b: LoopBuilder, n0: SSAValue, m0: SSAValue, a: SSAValue, a_row: SSAValue, valid: SSAValue,
              whole: bool) -> None:  # fmt: skip
        """y[m0 : m0 + valid, n0 : n0 + 32] from rows a_row .. a_row + 32 of the buffer `a` (x
        or its padded copy; `whole`: valid is 32)."""
        t = _Tiles(b, self.kind)
        for c in C_TILES:
            t.zero(c)

        def step(s: LoopBuilder, kb: SSAValue, _: object) -> list[SSAValue]:
            ts = _Tiles(s, self.kind)
            row_bytes = self.k * self.kind.size
            for i, tile in enumerate(A_TILES):
                row = s.add(a_row, s.index(16 * i))
                offset = s.add(s.mul(row, s.index(row_bytes)), s.mul(kb, s.index(TILE_BYTES)))
                ts.load(tile, self.address(s, a, offset), row_bytes)
            for i, tile in enumerate(B_TILES):
                offset = s.add(s.mul(kb, s.index(2 * 16 * TILE_BYTES)), s.index(16 * TILE_BYTES * i))
                ts.load(tile, self.address(s, self.panel, offset), TILE_BYTES)
            for c, (ta, tb) in zip(C_TILES, [(ta, tb) for ta in A_TILES for tb in B_TILES], strict=True):
                ts.dot(c, ta, tb)
            return []

        b.loop(b.index(0), b.index(self.k // self.kind.k_step), b.index(1), step, name="kb")
        if whole and self.direct:
            n = self.y.type.get_shape()[1]  # type: ignore[attr-defined]
            for c in C_TILES:
                row, col = divmod(c, 2)
                first = b.add(b.mul(b.add(m0, b.index(16 * row)), b.index(n)), b.add(n0, b.index(16 * col)))
                t.store(c, self.address(b, self.y, b.mul(first, b.index(4))), n * 4)
            return
        for c in C_TILES:
            row, col = divmod(c, 2)
            t.store(c, self.address(b, self.staged, b.index(row * 16 * BLOCK * 4 + col * 16 * 4)), BLOCK * 4)
        if whole:  # 16 f32 at a time, rounded to bf16 for a bf16 y
            b.nest([b.index(BLOCK), b.index(2)], lambda e, rh: e.vstore(
                e.vload(self.staged, [rh[0], e.mul(rh[1], e.index(16))], 16), self.y,
                [e.add(m0, rh[0]), e.add(n0, e.mul(rh[1], e.index(16)))]))  # fmt: skip
            return
        b.nest([valid, b.index(BLOCK)], lambda e, rc: e.store(
            e.insert(memref.LoadOp.get(self.staged, rc)), self.y, [e.add(m0, rc[0]), e.add(n0, rc[1])]))  # fmt: skip

    def pad_rows(self, b: LoopBuilder, first: SSAValue, left: SSAValue) -> None:
        """padded = rows first .. first + left of x, then zeros (whole rows of x are read only)."""

        def copy(e: LoopBuilder, rj: list[SSAValue]) -> None:
            inside = e.insert(arith.CmpiOp(rj[0], left, "ult"))
            row = e.insert(arith.SelectOp(inside, e.add(first, rj[0]), first))
            value = e.load(self.x, [row, rj[1]])  # bf16 widened to f32 and rounded back: exact
            zero = e.f32(0.0) if self.kind is BF16 else e.constant(self.kind.element, 0)
            e.store(e.insert(arith.SelectOp(inside, value, zero)), self.padded, rj)

        b.nest([b.index(BLOCK), b.index(self.k)], copy)

    def columns(self, b: LoopBuilder, n0: SSAValue, rows: SSAValue, whole: SSAValue) -> None:
        """32 columns of y: the panel, every whole block of 32 rows, then the rows left."""
        _pack_panel(b, self.w, self.panel, n0, self.k, self.kind)
        zero = b.index(0)

        def rows_block(mb: LoopBuilder, m0: SSAValue, _: object) -> list[SSAValue]:
            self.block(mb, n0, m0, self.x, m0, mb.index(BLOCK), True)
            return []

        b.loop(zero, whole, b.index(BLOCK), rows_block, name="m0")

        def tail(tb: LoopBuilder) -> list[SSAValue]:
            left = tb.insert(arith.SubiOp(rows, whole))
            self.pad_rows(tb, whole, left)
            self.block(tb, n0, whole, self.padded, tb.index(0), left, False)
            return []

        b.if_(b.insert(arith.CmpiOp(whole, rows, "ult")), tail, [])


@dataclass
class AmxLinear(RewritePattern):
    kinds: tuple[Kind, ...]

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tdsl.LinearOp, rewriter: PatternRewriter, /) -> None:
        if (shape := _amx_operands(op, self.kinds)) is None or op.out is None:
            return
        kind, n, k = shape
        b = LoopBuilder(Builder(InsertPoint.before(op)))
        scratch = [
            b.insert(memref.AllocOp.get(kind.element, 64, [k * BLOCK])),
            b.insert(memref.AllocOp.get(kind.element, 64, [BLOCK, k])),
            b.insert(memref.AllocOp.get(kind.acc, 64, [BLOCK, BLOCK])),
        ]
        product = _Product(kind, op.lhs, op.rhs, op.out, k, *scratch)
        config = _config(b)
        tiles = _Tiles(b, kind)
        tiles.configure(b.insert(ptr.ToPtrOp(config)))
        rows = b.size(op.lhs, 0)
        whole = floor_to(b, b.index(0), rows, BLOCK)

        def columns(nb: LoopBuilder, n0: SSAValue, _: object) -> list[SSAValue]:
            product.columns(nb, n0, rows, whole)
            return []

        b.loop(b.index(0), b.index(n), b.index(BLOCK), columns, name="n0")
        tiles.release()
        for buffer in (*scratch, config):
            b.b.insert(memref.DeallocOp.get(buffer))
        rewriter.erase(op)


@dataclass(frozen=True)
class Amx(ModulePass):
    """Runs only where the pipeline asks for it, on targets with amx-tile; `bf16` and
    `int8`: whether the target has amx-bf16 and amx-int8."""

    name = NAME
    bf16: bool = True
    int8: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        kinds = tuple(kind for kind, on in ((BF16, self.bf16), (INT8, self.int8)) if on)
        PatternRewriteWalker(AmxLinear(kinds), apply_recursively=False).rewrite_module(op)
