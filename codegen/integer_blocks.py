"""tdsl-vectorize-integer's dot-product blocks: a `rows` x `cols` block of outputs held
as i32 vector accumulators stepped along k by a Dot, reduced once per scale group by a
transposing shuffle tree into one vector of the block's columns per row (column_sums),
less the weight's offset times the rows' sums of x (row_offsets), then rescaled in its
lanes (store_results)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.dialects import arith, llvm, memref, vector
from xdsl.dialects.builtin import IntegerType, VectorType, f32, i8, i32
from xdsl.ir import Attribute, SSAValue

from stoicc_py.codegen.integer_dot import Dot, DotKind, pair_bound
from stoicc_py.codegen.integer_phases import accumulator_rows, phase_parts, phase_rows
from stoicc_py.codegen.integer_product import Product, row_groups, store_results
from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.codegen.prefetch import prefetch_rows
from stoicc_py.codegen.register_blocks import Shape, for_
from stoicc_py.codegen.shuffles import column_sums, interleave_transpose, merge_pairs, shuffle, vector_of
from stoicc_py.dialects.layout import BUFFER_ALIGNMENT

Step = Callable[[LoopBuilder, SSAValue, Sequence[SSAValue]], Sequence[SSAValue]]


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
    """x's rows as phased steps read them (phase_x), where it is built."""
    rotation: tuple[int, int] = (1, 0)
    """The GEMV blocks' prefetch rotation (prefetch_rows): on AVX2, a line of each row
    ahead once, where each step of fewer bytes asked for it again."""
    scale_rows: SSAValue | None = None
    """Where given, [groups, c] of w's scales (as stored): a block of c columns first
    transposes its columns' scales into it, c groups at a time (_transpose_scales), and
    each group then loads its columns' scales as one vector, where it gathered them (a
    strided insert per column and group)."""
    x_sums: SSAValue | None = None
    """With a float zero (Weight.offsets), the sums of x[i, :] over each whole group, at
    [i, g] (f32, exact integers: x_sums): each group's term adds offset * this sum."""

    def emit(self, b: LoopBuilder, shape: Shape, i: SSAValue, j: SSAValue) -> None:
        rows, cols = shape.indices(b, i, j)
        scale_rows = self.scale_rows
        if scale_rows is not None and len(cols) != scale_rows.type.get_shape()[1]:  # type: ignore[attr-defined]
            scale_rows = None  # the 1-column blocks of ragged columns

        def w_scales(b: LoopBuilder, g: SSAValue) -> SSAValue:
            return self._w_scales(b, cols, g) if scale_rows is None else b.vload(scale_rows, [g, b.index(0)], len(cols))

        if scale_rows is not None:
            self._transpose_scales(b, cols, scale_rows)
        offsets = None if self.x_sums is None else lambda b, g: self._offset_terms(b, rows, cols, g)
        store_results(b, self.product, rows, j, len(cols), lambda b, g: self._dots(b, rows, cols, g), w_scales,
                      self.per_step, offsets)  # fmt: skip

    def _transpose_scales(self, b: LoopBuilder, cols: list[SSAValue], scale_rows: SSAValue) -> None:
        """The columns' w scales into scale_rows[g, c]: c groups of c columns by a c x c
        transpose of their loads, the groups past the last whole c one column at a time."""
        scales, count, c = self.product.w_scales, self.product.groups.count, len(cols)
        assert scales is not None
        element = scales.type.element_type  # type: ignore[attr-defined]

        def groups(b: LoopBuilder, g: SSAValue) -> None:
            runs = [b.insert(vector.LoadOp(scales, [col, g], VectorType(element, [c]))) for col in cols]
            for t, run in enumerate(interleave_transpose(b, runs)):
                b.b.insert(vector.StoreOp(run, scale_rows, [b.offset(g, t), b.index(0)]))

        def group(b: LoopBuilder, g: SSAValue) -> None:
            run = vector_of(b, [b.insert(memref.LoadOp.get(scales, [col, g])) for col in cols])
            b.b.insert(vector.StoreOp(run, scale_rows, [g, b.index(0)]))

        for_(b, b.index(0), b.index(count // c * c), c, groups, "g")
        for_(b, b.index(count // c * c), b.index(count), 1, group, "g")

    def _w_scales(self, b: LoopBuilder, cols: list[SSAValue], g: SSAValue) -> SSAValue:
        p = self.product
        return self._w_groups(b, cols, g, p.scales[1], p.w_scales)  # type: ignore[index]

    def _offset_terms(self, b: LoopBuilder, rows: list[SSAValue], cols: list[SSAValue],
                      g: SSAValue) -> tuple[SSAValue, list[SSAValue]]:  # fmt: skip
        """The columns' float offsets of groups g..g+per_step (in _w_scales' lanes) and,
        per row, its sums of x over these groups in the same lanes (store_results)."""
        w, spanned, sums = self.product.w, self.per_step, self.x_sums
        assert w.offsets is not None and sums is not None
        offsets = self._w_groups(b, cols, g, w.offsets, self.product.w_offsets)
        return offsets, [row_groups(b, sums, r, g, spanned, len(cols)) for r in rows]

    def _w_groups(self, b: LoopBuilder, cols: list[SSAValue], g: SSAValue,
                  scalar: Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue], buffer: SSAValue | None) -> SSAValue:  # fmt: skip
        """The columns' w scales (or offsets: `scalar` of a row's group, `buffer` [n, groups])
        of groups g..g+per_step, lane c*per_step+h column c's of group g+h: with several
        groups, each column's are loaded together as one integer (a 32- or 64-bit load,
        half the inserts of one per scale) and the vector of them bitcast back to scales."""
        per = self.per_step
        if per == 1:
            return vector_of(b, [scalar(b, col, g) for col in cols])
        assert buffer is not None  # several groups: scales per group
        element = buffer.type.element_type  # type: ignore[attr-defined]
        run = IntegerType(per * element.bitwidth)
        words = [b.insert(vector.ExtractOp(b.insert(vector.BitcastOp(
                    b.insert(vector.LoadOp(buffer, [col, g], VectorType(element, [per]))), VectorType(run, [1]))), [0], run))
                 for col in cols]  # fmt: skip
        scales = b.insert(vector.BitcastOp(vector_of(b, words), VectorType(element, [len(cols) * per])))
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
                        for c in accumulator_rows(cols, together, parts)]  # fmt: skip
            return [[dot.operand(inner, w.biased(inner, col, k, dot), w.signed(dot))] for col in cols]

        def k_step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            prefetch_rows(inner, w.values, cols, self.ahead, k, x.type.get_shape()[1], self.rotation)  # type: ignore[attr-defined]
            xs = self._x_parts(inner, rows, k, per, together)
            new = list(acc)
            for c, w_parts in enumerate(weights(inner, k)):
                for r, x_parts in enumerate(xs):
                    at, operands = r * blocks + c, list(zip(w_parts, x_parts))
                    new[at] = (inner.insert(arith.AddiOp(new[at], dot.pair_sums(inner, operands))) if words
                               else dot.accumulate_all(inner, new[at], operands, bits, self.product.x_max))  # fmt: skip
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
            sums = [b.insert(arith.AddiOp(s, vector_of(b, tails[r * lanes:(r + 1) * lanes])))
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
            zps = vector_of(b, [w.zero_point(b, col, b.add(g, b.index(h))) for col in cols for h in range(spanned)])
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
        weight rows (phase_parts), read from phase_x where it is built."""
        dot, x = self.dot, self.product.x
        if per > 1 and self.phase_x is not None:
            at = b.mul(k, b.index(together))
            return [[dot.operand(b, b.insert(vector.LoadOp(self.phase_x, [row, b.offset(at, j * dot.step)], dot.bytes)), True)
                     for j in range(per)] for row in rows]  # fmt: skip
        loads = [b.insert(vector.LoadOp(x, [row, k], VectorType(i8, [dot.step * per // together]))) for row in rows]
        return [[dot.operand(b, part, True) for part in (phase_parts(b, xv, per, together) if per > 1 else [xv])]
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
        p = self.product
        bound = length * self.per_step // span * pair_bound(p.w.decoder.code.bits, per, p.x_max)
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
        steps = (1 << 15) // (pair_bound(self.product.w.decoder.code.bits, per, self.product.x_max) + 1)
        return steps if dot.avx2 and dot.kind is DotKind.MADD and steps > 1 else 0

    def _scalar_step(self, rows: list[SSAValue], cols: list[SSAValue]) -> Step:
        def step(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            xs = [self.product.x_code(b, r, k) for r in rows]
            ws = [self.product.w.code(b, c, k) for c in cols]
            return [b.mul_add(acc[r * len(cols) + c], xv, wv) for r, xv in enumerate(xs) for c, wv in enumerate(ws)]

        return step


def scale_rows_buffer(b: LoopBuilder, product: Product, kernel: IntegerKernel, row_cols: int) -> SSAValue | None:
    """IntegerKernel.scale_rows for the GEMV blocks of AVX2's steps (Dot.avx2), where
    they read a scale per group of at least `row_cols` groups (a power of two) one group a step."""
    scales, count = product.w_scales, product.groups.count
    if scales is None or not kernel.dot.avx2 or kernel.per_step > 1 or count < row_cols or row_cols & (row_cols - 1):
        return None
    alloc = b.insert(memref.AllocOp.get(scales.type.element_type, BUFFER_ALIGNMENT, [count, row_cols]))  # type: ignore[attr-defined]
    alloc.name_hint = "scale_rows"
    return alloc


def row_offsets(b: LoopBuilder, product: Product, dot: Dot, m: SSAValue, by: int) -> SSAValue | None:
    """A scratch i32[m, groups] of the corrections: offset `by` * the sum of x[i, :] over
    each group's whole steps, by the same dot steps against a weight of ones (None for 0)."""
    if by == 0:
        return None
    offset = b.insert(arith.ConstantOp.from_int_and_width(by, i32))
    return _group_sums(b, product, dot, m, ("row_offsets", i32), lambda b, total: b.insert(arith.MuliOp(total, offset)))


def x_sums(b: LoopBuilder, product: Product, dot: Dot, m: SSAValue) -> SSAValue:
    """A scratch f32[m, groups] of the sums of x[i, :] over each whole group (a ragged
    last one and steps' tails too): exact integers (|sum| < 2^24 for rows of up to 2^17
    int8 codes), each converted once, as tdsl-lower-to-loops' integer rows convert theirs."""
    return _group_sums(b, product, dot, m, ("x_sums", f32), lambda b, total: b.insert(arith.SIToFPOp(total, f32)), True)


def _group_sums(b: LoopBuilder, product: Product, dot: Dot, m: SSAValue, scratch: tuple[str, Attribute],
                finish: Callable[[LoopBuilder, SSAValue], SSAValue], tail: bool = False) -> SSAValue:  # fmt: skip
    """A scratch [m, groups] (`scratch`: its name and element) of `finish` (i32 -> the
    element) of each row's sum of x over a group's whole steps, by the dot steps against a
    weight of ones; with `tail`, plus the codes past them."""
    rows, groups = product.x.type.get_shape()[0], product.groups  # type: ignore[attr-defined]
    name, element = scratch
    alloc = b.insert(memref.AllocOp.get(element, BUFFER_ALIGNMENT, [rows, groups.count], [m] if rows < 0 else []))
    alloc.name_hint = name
    ones = dot.operand(b, b.splat(dot.bytes, 1), False)

    def row(b: LoopBuilder, i: SSAValue) -> None:
        def k_step(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            xv = dot.operand(inner, inner.insert(vector.LoadOp(product.x, [i, k], dot.bytes)), True)
            return [dot.accumulate(inner, acc[0], ones, xv)]

        def code(inner: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            return [inner.insert(arith.AddiOp(acc[0], product.x_code(inner, i, k)))]

        def group(b: LoopBuilder, g: SSAValue) -> None:
            k0, kv, k1 = product.span(b, g, dot.step)
            (acc,) = b.loop(k0, kv, b.index(dot.step), k_step, [b.splat(dot.acc, 0)], name="k")
            total = b.reduce_lanes(acc, "sum")
            if tail and kv is not k1:
                (total,) = b.loop(kv, k1, b.index(1), code, [total], name="k")
            b.store(finish(b, total), alloc, [i, g])

        for_(b, b.index(0), b.index(groups.count), 1, group, "g")

    for_(b, b.index(0), m, 1, row, "i")
    return alloc
