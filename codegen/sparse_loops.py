"""Loop nests for a linear layer whose weight is packed: one per storage format.

`y[i, n] = sum_k x[i, k] * w[n, k]` iterates only the stored entries of w, in the
order the storage lays them out, and for each stored value w at (n, k) updates a
block of rows: `y[i0:i1, n] += w * x[i0:i1, k]`. Each stored value is read once
per row block, and only the metadata that locates it (indices, row pointers, tile
schedules) is read besides; a dense tile (block sparsity, hybrid's dense tiles) is
read once per row of x instead, its rows' dot products with x's contiguous columns
summed in registers. All buffer roles, shapes and encoding parameters come
from the weight's StorageAttr, the same description the packer fills; a size that
depends on a size symbol (a weight `f32[N, K] @ nm(2, 4)`) is read at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from xdsl.dialects import arith
from xdsl.ir import SSAValue

from stoicc_py.codec import hybrid as hybrid_code
from stoicc_py.codec.nm import NMCodec
from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.codegen.nm_decoder import NMDecoder
from stoicc_py.dialects.layout import AssembleOp, StorageAttr
from stoicc_py.dialects.sparse import BlockAttr, CSRAttr, HybridAttr, NMAttr

Decode = Callable[[LoopBuilder, str, list[SSAValue], SSAValue], SSAValue]
Size = int | SSAValue
"""A size known when compiling, or only at run time (an index value)."""


def nm_decoder(layout: NMAttr, width: Size) -> NMDecoder:
    """The decoder of N:M rows of `width` columns; its fields do not depend on the width,
    so a width known only at run time decodes with a one-group codec (slots: valid_slots)."""
    return NMDecoder(layout.codec([1, width if isinstance(width, int) else layout.m.data]))


def slots_of(b: LoopBuilder, decoder: NMDecoder, width: Size) -> Size:
    """The slots of an N:M row of `width` columns."""
    return decoder.code.slots if isinstance(width, int) else decoder.valid_slots(b, width)


@dataclass
class RowBlock:
    """Rows i0..i1 of x and y, the block one stored weight value updates."""

    x: SSAValue
    out: SSAValue
    i0: SSAValue
    i1: SSAValue
    assemble: AssembleOp
    storage: StorageAttr
    shape: tuple[Size, Size]
    """The weight's logical [rows, cols]."""
    decode: Decode | None = None
    """Reads a stored value whose values buffer holds quantized codes."""

    def buf(self, role: str) -> SSAValue:
        return self.assemble.buffer(role)

    def value(self, b: LoopBuilder, prefix: str, lead: list[SSAValue], k: SSAValue) -> SSAValue:
        """The stored value at [*lead, k] of the `<prefix>values` buffer."""
        if self.decode is not None:
            return self.decode(b, prefix, lead, k)
        return b.load(self.buf(prefix + "values"), [*lead, k])

    def axpy(self, b: LoopBuilder, w: SSAValue, n: SSAValue, k: SSAValue) -> None:
        """y[i, n] += w * x[i, k] for the block's rows (in y's type: i8 values and
        activations multiply and add in i32)."""
        w = b.widen(w, self.out.type.element_type)  # type: ignore[attr-defined]  # once, not per row

        def step(inner: LoopBuilder, i: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
            x = inner.load(self.x, [i, k])
            inner.store(inner.mul_add(inner.load(self.out, [i, n]), w, x), self.out, [i, n])
            return ()

        b.loop(self.i0, self.i1, b.index(1), step, name="i")


def _for(b: LoopBuilder, lb: SSAValue, ub: SSAValue, body: Callable[[LoopBuilder, SSAValue], None], name: str) -> None:
    def step(inner: LoopBuilder, iv: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
        body(inner, iv)
        return ()

    b.loop(lb, ub, b.index(1), step, name=name)


def _range(b: LoopBuilder, count: int | SSAValue, body: Callable[[LoopBuilder, SSAValue], None], name: str) -> None:
    zero = b.index(0)
    _for(b, zero, b.index(count), body, name)


def _stored(b: LoopBuilder, rowptr: SSAValue, row: SSAValue, body: Callable[[LoopBuilder, SSAValue], None]) -> None:
    """Visit the stored entries rowptr[row] .. rowptr[row + 1] of a compressed row."""
    start = b.load_index(rowptr, [row])
    end = b.load_index(rowptr, [b.add(row, b.index(1))])
    _for(b, start, end, body, "p")


def _nm_rows(b: LoopBuilder, blk: RowBlock, decoder: NMDecoder, role: str, indices: SSAValue,
             prefix: Sequence[SSAValue], rows: int | SSAValue, n_of: Callable[[LoopBuilder, SSAValue], SSAValue],
             k_base: SSAValue, slots: int | SSAValue) -> None:  # fmt: skip
    """N:M rows: slot s < slots of row r < rows updates the column k_base + its decoded column."""

    def row(b: LoopBuilder, r: SSAValue) -> None:
        def slot(b: LoopBuilder, s: SSAValue) -> None:
            k = b.add(k_base, decoder.column(b, indices, [*prefix, r], s))
            blk.axpy(b, blk.value(b, role, [*prefix, r], s), n_of(b, r), k)

        _range(b, slots, slot, "s")

    _range(b, rows, row, "r")


def _dense_tile(b: LoopBuilder, blk: RowBlock, role: str, p: SSAValue, n0: SSAValue, k0: SSAValue,
                shape: tuple[int | SSAValue, int | SSAValue]) -> None:  # fmt: skip
    """A stored dense tile p whose top-left weight is at (n0, k0), its first shape[0] rows
    and shape[1] columns: per row of x and of the tile, the dot product of the tile row
    with x's contiguous columns k0.., summed in a register and added to y once (an axpy
    per weight over the rows of x read x and y a row apart: gathers, ~100x slower)."""
    rows, cols = shape

    def row_of_x(b: LoopBuilder, i: SSAValue) -> None:
        def tile_row(b: LoopBuilder, r: SSAValue) -> None:
            n = b.add(n0, r)

            def column(inner: LoopBuilder, c: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
                w = inner.widen(blk.value(inner, role, [p, r], c), acc[0].type)
                return [inner.mul_add(acc[0], w, inner.load(blk.x, [i, inner.add(k0, c)]))]

            (total,) = b.loop(b.index(0), b.index(cols), b.index(1), column, [b.load(blk.out, [i, n])], name="c")
            b.store(total, blk.out, [i, n])

        _range(b, rows, tile_row, "r")

    _for(b, blk.i0, blk.i1, row_of_x, "i")


def nm(b: LoopBuilder, blk: RowBlock, layout: NMAttr) -> None:
    rows, width = blk.shape
    decoder = nm_decoder(layout, width)
    zero = b.index(0)
    _nm_rows(b, blk, decoder, "", blk.buf("indices"), [], rows, lambda b, r: r, zero, slots_of(b, decoder, width))


def _table_rows(b: LoopBuilder, rowptr: SSAValue) -> Size:
    """The rows of a schedule: its row pointers less one."""
    rows = b.size(rowptr, 0)
    return b.insert(arith.SubiOp(rows, b.index(1)))


def block(b: LoopBuilder, blk: RowBlock, layout: BlockAttr) -> None:
    bh, bw = layout.bh.data, layout.bw.data
    block_rows = _table_rows(b, blk.buf("rowptr"))

    def block_row(b: LoopBuilder, br: SSAValue) -> None:
        def stored(b: LoopBuilder, p: SSAValue) -> None:
            k0 = b.mul(b.load_index(blk.buf("cols"), [p]), b.index(bw))
            _dense_tile(b, blk, "", p, b.mul(br, b.index(bh)), k0, (bh, bw))

        _stored(b, blk.buf("rowptr"), br, stored)

    _range(b, block_rows, block_row, "br")


def csr(b: LoopBuilder, blk: RowBlock, layout: CSRAttr) -> None:
    rows = _table_rows(b, blk.buf("rowptr"))

    def row(b: LoopBuilder, n: SSAValue) -> None:
        def stored(b: LoopBuilder, p: SSAValue) -> None:
            k = b.load_index(blk.buf("cols"), [p], unsigned=True)  # the storage marks csr columns unsigned
            blk.axpy(b, blk.value(b, "", [], p), n, k)

        _stored(b, blk.buf("rowptr"), n, stored)

    _range(b, rows, row, "n")


def _extent(b: LoopBuilder, start: SSAValue, tile: int, size: Size) -> Size:
    """min(tile, size - start): a tile's rows or columns inside the matrix (`tile` itself where
    the tile divides the matrix, so that no tile is ragged)."""
    if isinstance(size, int) and size % tile == 0:
        return tile
    return b.min(b.index(tile), b.insert(arith.SubiOp(b.index(size), start)))


def hybrid(b: LoopBuilder, blk: RowBlock, layout: HybridAttr) -> None:
    """Per tile row, one loop per tile format over that format's tiles: the
    schedule dispatches, no per-element branch. A ragged last tile row or column
    stops at the matrix's edge (its padding is stored, never read)."""
    th, tw = layout.tile_shape
    rows_, cols_ = blk.shape
    code = layout.codec([d if isinstance(d, int) else t for d, t in zip(blk.shape, (th, tw))])  # its tile formats

    def tile_row(b: LoopBuilder, tr: SSAValue) -> None:
        n0 = b.mul(tr, b.index(th))
        rows = _extent(b, n0, th, rows_)
        for f, nm in enumerate(code.formats):
            role = partial(hybrid_code.role, f)

            def tile(b: LoopBuilder, p: SSAValue, nm: NMCodec | None = nm, role: Callable[[str], str] = role) -> None:
                k0 = b.mul(b.load_index(blk.buf(role("cols")), [p]), b.index(tw))
                cols = _extent(b, k0, tw, cols_)
                if nm is None:
                    _dense_tile(b, blk, role(""), p, n0, k0, (rows, cols))
                    return
                decoder = NMDecoder(nm)
                slots = nm.slots if isinstance(cols, int) else decoder.valid_slots(b, cols)
                _nm_rows(b, blk, decoder, role(""), blk.buf(role("indices")), [p], rows, lambda b, r: b.add(n0, r),
                         k0, slots)  # fmt: skip

            _stored(b, blk.buf(role("rowptr")), tr, tile)

    _range(b, b.size(blk.buf("table"), 0), tile_row, "tr")


FORMATS: dict[type, Callable[..., None]] = {NMAttr: nm, BlockAttr: block, CSRAttr: csr, HybridAttr: hybrid}
