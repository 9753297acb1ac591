"""tdsl-vectorize-integer's outer-product blocks (PanelKernel), for calls of many rows
of a product with one scale group per row, or groups of whole quads along k: w packed per
n-tile into a panel of dwords of k, so that accumulators hold whole outputs (as oneDNN's
and ggml's VNNI kernels)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.dialects import arith, vector
from xdsl.dialects.builtin import VectorType, f32
from xdsl.ir import SSAValue

from stoicc_py.codegen.integer_dot import Dot
from stoicc_py.codegen.integer_product import Product, group_term, row_groups, row_total, store_results
from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.codegen.register_blocks import Shape, for_
from stoicc_py.codegen.shuffles import transpose


@dataclass
class PanelKernel:
    """The outer-product form, for an unscaled or scaled product whose k is a whole
    number of steps (with several scale groups: `grouped`): per n-tile, the tile's rows of w are packed once, offset as
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
    computed whole) is the 1-vector blocks', whose `finish` stores its columns of out only.
    Codes narrower than a byte are unpacked by a loop over the transpose's
    rows into `staging` (i8 [lanes, step]), not by `lanes` copies of their unpacking (an
    int2 row's is ~17 ops; int8's, a load and a flip, stays unrolled)."""

    product: Product
    dot: Dot
    panel: SSAValue
    offsets: SSAValue | None
    """The rows' offsets per group (row_offsets), None where there is none (a float zero)."""
    scales: SSAValue | None
    """With a scaled product, f32 [groups, tn]: the panel's columns' w scales, gathered as
    packed (once per n-tile, not per block)."""
    sums: SSAValue
    """i32 [rows, cols * lanes]; with several groups f32, the outputs' running sums."""
    staging: SSAValue | None
    w_offsets: SSAValue | None = None
    """With a float zero, f32 [groups, tn]: the columns' offsets, as `scales`."""
    x_sums: SSAValue | None = None
    """With a float zero, IntegerKernel.x_sums."""

    @property
    def grouped(self) -> bool:
        """Several scale groups along k: each group's dot products are scaled into f32 sums as
        they end (the dot-product blocks' store_results order, so the same bits)."""
        return self.product.groups.count > 1

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
            self._gather(b, j0, j1, self.product.scales[1], self.scales)
        if self.w_offsets is not None and self.product.w.offsets is not None:
            self._gather(b, j0, j1, self.product.w.offsets, self.w_offsets)

    def _gather(self, b: LoopBuilder, j0: SSAValue, j1: SSAValue,
                value: Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue], into: SSAValue) -> None:  # fmt: skip
        """into[g, j - j0] = value(j, g) (f32) for w's rows j0..j1 and every group g."""

        def row(b: LoopBuilder, j: SSAValue) -> None:
            column = b.insert(arith.SubiOp(j, j0))
            for_(b, b.index(0), b.index(self.product.groups.count), 1,
                 lambda b, g: b.store(value(b, j, g), into, [g, column]), "g")  # fmt: skip

        for_(b, j0, j1, 1, row, "j")

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

    def emit(self, b: LoopBuilder, shape: Shape, i: SSAValue, first: SSAValue) -> None:
        """Rows i.. of the panel's vectors of columns from `first` on, into sums' rows 0.. (raw)."""
        p, lanes = self.product, self.dot.lanes
        rows = [b.add(i, b.index(r)) for r in range(shape.rows)]
        columns = [b.add(first, b.index(c * lanes)) for c in range(shape.cols)]

        def k_step(b: LoopBuilder, q: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            ws = [b.vload(self.panel, [q, column], lanes) for column in columns]
            k = b.mul(q, b.index(4))
            xs = [b.splat_value(b.dword(p.x, [r, k]), lanes) for r in rows]
            return [self.dot.accumulate(b, acc[r * shape.cols + c], ws[c], xs[r])
                    for r in range(shape.rows) for c in range(shape.cols)]  # fmt: skip

        zeros = [b.splat(self.dot.acc, 0)] * (shape.rows * shape.cols)
        if self.grouped:
            self._groups(b, shape, rows, first, lambda b, q0, q1: b.loop(q0, q1, b.index(1), k_step, zeros, name="q"))
            return
        quads = b.index(p.x.type.get_shape()[1] // 4)  # type: ignore[attr-defined]
        accs = b.loop(b.index(0), quads, b.index(1), k_step, zeros, name="q")
        for r in range(shape.rows):
            for c in range(shape.cols):
                b.vstore(accs[r * shape.cols + c], self.sums, [b.index(r), b.index(c * lanes)])

    def _groups(self, b: LoopBuilder, shape: Shape, rows: list[SSAValue], first: SSAValue,
                dots: Callable[[LoopBuilder, SSAValue, SSAValue], Sequence[SSAValue]]) -> None:  # fmt: skip
        """sums = the f32 sum over groups of each group's term, for the block's outputs:
        `dots(b, q0, q1)` the exact products over quads q0..q1 (a group's), less the rows'
        offsets, times the columns' scales (fma of the float zero's offsets and the rows'
        sums of x; times x's scales of the group, where it has one a group), added in group
        order as store_results adds them."""
        p, lanes = self.product, self.dot.lanes
        at = [(b.index(r), b.index(c * lanes)) for r in range(shape.rows) for c in range(shape.cols)]
        for r, c in at:
            b.vstore(b.splat(VectorType(f32, [lanes]), 0.0), self.sums, [r, c])
        quads = (p.groups.length or 0) // 4

        def group(b: LoopBuilder, g: SSAValue) -> None:
            q0 = b.mul(g, b.index(quads))
            accs = dots(b, q0, b.add(q0, b.index(quads)))
            columns = [b.add(first, b.index(c * lanes)) for c in range(shape.cols)]
            assert self.scales is not None
            sw = [b.vload(self.scales, [g, column], lanes) for column in columns]
            mw = None if self.w_offsets is None else [b.vload(self.w_offsets, [g, column], lanes) for column in columns]
            for r, row in enumerate(rows):
                offset, x_sum, x_scale = (None if buffer is None else row_groups(b, buffer, row, g, 1, lanes)
                                          for buffer in (self.offsets, self.x_sums, p.x_scales))  # fmt: skip
                for c in range(shape.cols):
                    raw = accs[r * shape.cols + c]
                    if offset is not None:
                        raw = b.insert(arith.SubiOp(raw, offset))
                    shift = None if mw is None or x_sum is None else (mw[c], x_sum)
                    term = group_term(b, sw[c], raw, shift, x_scale)
                    where = [b.index(r), b.index(c * lanes)]
                    b.vstore(b.fadd(b.vload(self.sums, where, lanes), term), self.sums, where)

        for_(b, b.index(0), b.index(p.groups.count), 1, group, "g")

    def finish(self, b: LoopBuilder, i: SSAValue, rows: int, j: SSAValue, column: SSAValue,
               end: SSAValue | int) -> None:  # fmt: skip
        """out[i:i+rows, j:...] (the panel's columns column..) from a block's sums: less each
        row's offset, scaled as Product says; a whole block's `end` is its width, a constant
        (LLVM unrolls its vectors, as the accumulators' own stores were), a ragged last
        vector's the column where out ends (stored one column at a time). The loops run over
        out's own columns j.., so that mark-parallel-loops proves each n-tile's stores its own."""
        lanes, p = self.dot.lanes, self.product

        def row(b: LoopBuilder, r: SSAValue) -> None:
            at = b.add(i, r)
            offset = None if self.grouped or self.offsets is None else b.load(self.offsets, [at, b.index(0)])

            def columns(lanes: int) -> Callable[[LoopBuilder, SSAValue], None]:
                def body(b: LoopBuilder, jj: SSAValue) -> None:
                    c = b.insert(arith.SubiOp(jj, j))
                    if self.grouped:  # sums hold each output's f32 sum over groups
                        b.vstore(row_total(b, p, at, b.vload(self.sums, [r, c], lanes), lanes), p.out, [at, jj])
                        return
                    assert offset is not None  # one group: unsigned bytes, offset
                    raw = b.insert(arith.SubiOp(b.vload(self.sums, [r, c], lanes), b.splat_value(offset, lanes)))
                    store_results(b, p, [at], jj, lanes, lambda _b, _g: [raw],
                                  lambda b, _g: b.vload(self.scales, [b.index(0), b.add(column, c)], lanes))  # type: ignore[arg-type]  # fmt: skip

                return body

            if isinstance(end, int):
                for_(b, j, b.add(j, b.index(end)), lanes, columns(lanes), "j")
            else:
                for_(b, j, end, 1, columns(1), "j")

        for_(b, b.index(0), b.index(rows), 1, row, "r")
