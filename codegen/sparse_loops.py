"""Loop nests for a linear layer whose weight is packed: one per storage format.

`y[i, n] = sum_k x[i, k] * w[n, k]` iterates only the stored entries of w, in the
order the storage lays them out, and for each stored value w at (n, k) updates a
block of rows: `y[i0:i1, n] += w * x[i0:i1, k]`. Each stored value is read once
per row block, and only the metadata that locates it (indices, row pointers, tile
schedules) is read besides. All buffer roles, shapes and encoding parameters come
from the weight's StorageAttr, the same description the packer fills.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.dialects import arith
from xdsl.dialects.builtin import IndexType, IntegerAttr, i32
from xdsl.ir import SSAValue

from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.dialects.layout import AssembleOp, StorageAttr
from stoicc_py.dialects.sparse import BlockAttr, CSRAttr, HybridAttr, NMAttr

Decode = Callable[[LoopBuilder, str, list[SSAValue], SSAValue], SSAValue]


@dataclass
class RowBlock:
    """Rows i0..i1 of x and y, the block one stored weight value updates."""

    x: SSAValue
    out: SSAValue
    i0: SSAValue
    i1: SSAValue
    assemble: AssembleOp
    storage: StorageAttr
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


def _range(b: LoopBuilder, count: int, body: Callable[[LoopBuilder, SSAValue], None], name: str) -> None:
    _for(b, b.index(0), b.index(count), body, name)


def _stored(b: LoopBuilder, rowptr: SSAValue, row: SSAValue, body: Callable[[LoopBuilder, SSAValue], None]) -> None:
    """Visit the stored entries rowptr[row] .. rowptr[row + 1] of a compressed row."""
    start = b.load_index(rowptr, [row])
    end = b.load_index(rowptr, [b.add(row, b.index(1))])
    _for(b, start, end, body, "p")


def nm_column(b: LoopBuilder, indices: SSAValue, where: Sequence[SSAValue], s: SSAValue,
              params: dict[str, int]) -> SSAValue:  # fmt: skip
    """The dense column of slot s of an N:M row, (s // N) * M + index(s), index(s)
    being `index_bits` bits at (s % per_word) * index_bits of word s // per_word of
    the row's index words at `where`."""
    n, m, bits, per_word = params["n"], params["m"], params["index_bits"], params["per_word"]
    word = b.load(indices, [*where, b.div(s, b.index(per_word))])
    shift = b.insert(arith.IndexCastOp(b.mul(b.rem(s, b.index(per_word)), b.index(bits)), i32))
    field = b.insert(arith.AndIOp(b.insert(arith.ShRUIOp(word, shift)), _i32(b, m - 1)))
    return b.add(b.mul(b.div(s, b.index(n)), b.index(m)), b.insert(arith.IndexCastOp(field, IndexType())))


def _nm_rows(b: LoopBuilder, blk: RowBlock, params: dict[str, int], role: str, indices: SSAValue,
             prefix: Sequence[SSAValue], rows: int, n_of: Callable[[LoopBuilder, SSAValue], SSAValue],
             k_base: SSAValue) -> None:  # fmt: skip
    """N:M rows: slot s of row r updates the column k_base + nm_column(s)."""

    def row(b: LoopBuilder, r: SSAValue) -> None:
        def slot(b: LoopBuilder, s: SSAValue) -> None:
            k = b.add(k_base, nm_column(b, indices, [*prefix, r], s, params))
            blk.axpy(b, blk.value(b, role, [*prefix, r], s), n_of(b, r), k)

        _range(b, params["slots"], slot, "s")

    _range(b, rows, row, "r")


def _dense_tile(b: LoopBuilder, blk: RowBlock, role: str, p: SSAValue, n0: SSAValue, k0: SSAValue,
                shape: tuple[int, int]) -> None:  # fmt: skip
    """A stored dense [rows, cols] tile p whose top-left weight is at (n0, k0)."""
    rows, cols = shape
    _range(b, rows, lambda b, r: _range(
        b, cols, lambda b, c: blk.axpy(b, blk.value(b, role, [p, r], c), b.add(n0, r), b.add(k0, c)), "c"), "r")  # fmt: skip


def _i32(b: LoopBuilder, value: int) -> SSAValue:
    return b.insert(arith.ConstantOp(IntegerAttr(value, i32)))


def _params(storage: StorageAttr, prefix: str = "") -> dict[str, int]:
    return {k.removeprefix(prefix): storage.param(k) for k in storage.params.data if k.startswith(prefix)}


def nm(b: LoopBuilder, blk: RowBlock, layout: NMAttr) -> None:
    rows = blk.storage.buffer("indices").get_shape()[0]
    zero = b.index(0)
    _nm_rows(b, blk, _params(blk.storage), "", blk.buf("indices"), [], rows, lambda b, r: r, zero)


def block(b: LoopBuilder, blk: RowBlock, layout: BlockAttr) -> None:
    bh, bw = layout.bh.data, layout.bw.data
    block_rows = blk.storage.buffer("rowptr").get_shape()[0] - 1

    def block_row(b: LoopBuilder, br: SSAValue) -> None:
        def stored(b: LoopBuilder, p: SSAValue) -> None:
            k0 = b.mul(b.load_index(blk.buf("cols"), [p]), b.index(bw))
            _dense_tile(b, blk, "", p, b.mul(br, b.index(bh)), k0, (bh, bw))

        _stored(b, blk.buf("rowptr"), br, stored)

    _range(b, block_rows, block_row, "br")


def csr(b: LoopBuilder, blk: RowBlock, layout: CSRAttr) -> None:
    rows = blk.storage.buffer("rowptr").get_shape()[0] - 1

    def row(b: LoopBuilder, n: SSAValue) -> None:
        def stored(b: LoopBuilder, p: SSAValue) -> None:
            k = b.load_index(blk.buf("cols"), [p], unsigned=True)  # the storage marks csr columns unsigned
            blk.axpy(b, blk.value(b, "", [], p), n, k)

        _stored(b, blk.buf("rowptr"), n, stored)

    _range(b, rows, row, "n")


def hybrid(b: LoopBuilder, blk: RowBlock, layout: HybridAttr) -> None:
    """Per tile row, one loop per tile format over that format's tiles: the
    schedule dispatches, no per-element branch."""
    th, tw = layout.tile_shape
    tile_rows = blk.storage.buffer("table").get_shape()[0]

    def tile_row(b: LoopBuilder, tr: SSAValue) -> None:
        n0 = b.mul(tr, b.index(th))
        for f, fmt in enumerate(layout.formats.data):
            prefix = f"tile{f}."

            def tile(b: LoopBuilder, p: SSAValue, fmt=fmt, prefix=prefix) -> None:  # noqa: B023
                k0 = b.mul(b.load_index(blk.buf(prefix + "cols"), [p]), b.index(tw))
                if isinstance(fmt, NMAttr):
                    params = _params(blk.storage, prefix)
                    _nm_rows(
                        b, blk, params, prefix, blk.buf(prefix + "indices"), [p], th, lambda b, r: b.add(n0, r), k0
                    )
                else:
                    _dense_tile(b, blk, prefix, p, n0, k0, (th, tw))

            _stored(b, blk.buf(prefix + "rowptr"), tr, tile)

    _range(b, tile_rows, tile_row, "tr")


FORMATS: dict[type, Callable[..., None]] = {NMAttr: nm, BlockAttr: block, CSRAttr: csr, HybridAttr: hybrid}
