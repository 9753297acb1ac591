"""Loop nests over quantized buffers: decode, quantize, and the fused products.

Everything reads the tensor's StorageAttr (codes packed `per_byte` to a byte, LSB
first; scales and zero points per `group` consecutive elements of a row, or per
row, or per tensor), the description the packer fills. The arithmetic follows
docs/formats.md ("Quantized storage") exactly, so that integer paths are
bit-exact with the numpy model in stoicc_py.packing.quant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.dialects import arith
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import IndexType, IntegerAttr, IntegerType, MemRefType, f32, i8, i16, i32
from xdsl.ir import SSAValue

from stoicc_py.codec.sq import HIGH, INDEX, LOW
from stoicc_py.codec.uniform import CodeBits
from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.codegen.quant_decode import CodeDecoder
from stoicc_py.codegen.sparse_loops import Size, nm_decoder, slots_of
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import AssembleOp, ComposedLayoutAttr, PackedType
from stoicc_py.dialects.quant import SQAttr, UniformQuantAttr
from stoicc_py.dialects.sparse import NMAttr

Lead = SSAValue | list[SSAValue]
"""A row index, or the leading indices of a codes buffer of higher rank."""


def _int(b: LoopBuilder, value: int, type: IntegerType = i32) -> SSAValue:
    return b.insert(arith.ConstantOp(IntegerAttr(value, type)))


def _for(b: LoopBuilder, lb: SSAValue, ub: SSAValue, body: Callable[[LoopBuilder, SSAValue], None], name: str) -> None:
    def step(inner: LoopBuilder, iv: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
        body(inner, iv)
        return ()

    b.loop(lb, ub, b.index(1), step, name=name)


def _fold(b: LoopBuilder, lb: SSAValue, ub: SSAValue, init: SSAValue,
          body: Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue], name: str) -> SSAValue:  # fmt: skip
    """Fold `body(builder, iv, acc) -> acc` over lb..ub."""
    (result,) = b.loop(lb, ub, b.index(1), lambda inner, iv, acc: [body(inner, iv, acc[0])], [init], name=name)
    return result


@dataclass
class QuantView:
    """A quantized [rows, width] tensor, read through its storage: the codes as the codec
    says (stoicc_py.codec.uniform.CodeBits, decoded by codegen.quant_decode), scales and
    zero points per `group` consecutive elements of a row (the last group of a row may
    hold fewer: the remainder)."""

    layout: UniformQuantAttr
    buffers: dict[str, SSAValue]
    decoder: CodeDecoder
    group: int
    """Elements per scale; -1: the row, whose width only the run time knows (group_len)."""

    @staticmethod
    def of(value: SSAValue, layout: UniformQuantAttr | None = None, prefix: str = "",
           width: Size | None = None) -> QuantView:  # fmt: skip
        """The quantized part of a packed value: its buffers are the roles under `prefix`; rows of
        `width` codes (default: the values buffer's, which a symbolic weight knows only at run time)."""
        packed, assemble = value.type, value.owner
        assert isinstance(packed, PackedType) and isinstance(assemble, AssembleOp)
        layout = layout or packed.layout  # type: ignore[assignment]
        assert isinstance(layout, UniformQuantAttr)
        buffers = {
            role.removeprefix(prefix): assemble.buffer(role) for role in packed.storage.roles if role.startswith(prefix)
        }
        return QuantView.over(layout, buffers, width)

    @staticmethod
    def over(layout: UniformQuantAttr, buffers: dict[str, SSAValue], width: Size | None = None) -> QuantView:
        """The view of code buffers (role -> value): the row width is `width`, or the values buffer's."""
        code = CodeBits.of(layout)
        if width is None:
            width = buffers["values"].type.get_shape()[-1] * 8 // code.bits  # type: ignore[attr-defined]
        group = layout.group_size(width if isinstance(width, int) else -1)
        return QuantView(layout, buffers, CodeDecoder(code, width), group)

    @property
    def group_len(self) -> Size:
        """Elements per scale, at run time where it is the row's width."""
        return self.decoder.width if self.group < 0 else self.group

    @property
    def bits(self) -> int:
        return self.decoder.code.bits

    @property
    def qmax(self) -> int:
        """A symmetric code's largest magnitude (CodeBits.qmax: int7's 63 in a byte)."""
        return self.decoder.code.qmax

    @property
    def symmetric(self) -> bool:
        return self.layout.is_symmetric

    @property
    def per(self) -> str:
        return self.layout.per.data

    def scale_indices(self, b: LoopBuilder, row: Lead, g: SSAValue) -> list[SSAValue]:
        """Where the scale of group g of `row` (a row index, or the leading indices
        of a higher-rank codes buffer) is stored."""
        lead = row if isinstance(row, list) else [row]
        if self.per == "tensor":
            return [b.index(0)]
        if self.per == "group":
            return [*lead, g]
        if self.layout.per_column:
            return [g]  # groups of one element: g is the column
        return lead

    def scale(self, b: LoopBuilder, row: Lead, g: SSAValue) -> SSAValue:
        return b.load(self.buffers["scales"], self.scale_indices(b, row, g))

    def offset(self, b: LoopBuilder, row: Lead, g: SSAValue) -> SSAValue:
        """The float zero's offset of group g of `row`, as f32."""
        return b.load(self.buffers["offsets"], self.scale_indices(b, row, g))

    @property
    def offsets(self) -> Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue] | None:
        """The offset of a group (row, g) with a float zero, else None."""
        return self.offset if self.layout.float_offset else None

    def code(self, b: LoopBuilder, row: Lead, k: SSAValue) -> SSAValue:
        """The integer q - zero_point of element (row, k) (the unsigned code with a float zero), as i32."""
        lead = row if isinstance(row, list) else [row]
        code = self.decoder.scalar(b, self.buffers["values"], lead, k)
        if self.symmetric or self.layout.float_offset:
            return code
        return b.insert(arith.SubiOp(code, self.zero_point(b, row, self.group_of(b, k))))

    def zero_point(self, b: LoopBuilder, row: Lead, g: SSAValue) -> SSAValue:
        """The (asymmetric) zero point of group g of `row`, as i32."""
        zp = b.load(self.buffers["zero_points"], self.scale_indices(b, row, g))
        return b.insert(arith.ExtUIOp(zp, i32))

    def group_of(self, b: LoopBuilder, k: SSAValue) -> SSAValue:
        """The scale group of element k of a row."""
        # Per-tensor scales over a list of unknown length have no group size to divide by.
        return b.index(0) if self.per == "tensor" else b.div(k, b.index(self.group_len))

    def value(self, b: LoopBuilder, row: Lead, k: SSAValue) -> SSAValue:
        """scale * (q - zero_point) (+ offset) of element (row, k), as f32."""
        q = b.insert(arith.SIToFPOp(self.code(b, row, k), f32))
        g = self.group_of(b, k)
        value = b.fmul(self.scale(b, row, g), q)
        return value if self.offsets is None else b.fadd(value, self.offset(b, row, g))


def dequantize(b: LoopBuilder, packed: SSAValue, out: SSAValue) -> None:
    """out = 0, then every part of the weight adds scale * (q - zero_point) at each
    slot's column: one write per element for plain quantization, low + high for SQ."""
    b.nest(b.sizes(out), lambda b, ivs: b.store(b.f32(0.0), out, ivs))
    width = packed.type.dims[1]  # type: ignore[attr-defined]
    for walk in weight_walks(b, packed, width if width >= 0 else b.size(out, 1)):

        def row(b: LoopBuilder, n: SSAValue, walk: WeightWalk = walk) -> None:
            def group(b: LoopBuilder, g: SSAValue) -> None:
                scale = walk.scale(b, n, g)
                t0, t1 = walk.span(b, g)

                offset = None if walk.offset is None else walk.offset(b, n, g)

                def slot(b: LoopBuilder, t: SSAValue) -> None:
                    where = [n, walk.column(b, n, t)]
                    value = b.fmul(scale, b.insert(arith.SIToFPOp(walk.code(b, n, t), f32)))
                    if offset is not None:
                        value = b.fadd(value, offset)
                    b.store(b.fadd(b.load(out, where), value), out, where)

                _for(b, t0, t1, slot, "t")

            _for(b, b.index(0), b.index(walk.groups), group, "g")

        _for(b, b.index(0), b.size(out, 0), row, "n")


@dataclass
class WeightWalk:
    """How a product walks one quantized weight row: `groups` scale groups of
    `group_len` slots, the last holding the rest of the `slots`; slot t holds an integer
    code for activation column `column(n, t)`, and group g of row n has one scale."""

    groups: Size
    group_len: Size
    column: Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]
    code: Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]
    scale: Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]
    slots: Size = 0
    """The slots of a row when the last group may be ragged (0: groups * group_len)."""
    offset: Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue] | None = None
    """A float zero's offset of group g of row n (value = scale * code + offset), else None."""

    def span(self, b: LoopBuilder, g: SSAValue) -> tuple[SSAValue, SSAValue]:
        """The slots of group g."""
        t0 = b.mul(g, b.index(self.group_len))
        t1 = b.add(t0, b.index(self.group_len))
        return t0, b.min(t1, b.index(self.slots)) if isinstance(self.slots, SSAValue) or self.slots else t1


def _ceil_div(b: LoopBuilder, a: Size, d: Size) -> Size:
    if isinstance(a, int) and isinstance(d, int):
        return -(-a // d)
    return b.div(b.insert(arith.SubiOp(b.add(b.index(a), b.index(d)), b.index(1))), b.index(d))


def dense_walk(b: LoopBuilder, w: QuantView, width: Size) -> WeightWalk:
    """A quantized dense row: slot t is column t (a width known only at run time may end
    in a ragged group)."""
    group = w.group_len
    ragged = width if not (isinstance(width, int) and isinstance(group, int)) or width % group else 0
    return WeightWalk(_ceil_div(b, width, group), group, lambda b, n, t: t, w.code, w.scale, ragged, w.offsets)


def float_row(b: LoopBuilder, x: SSAValue, i: SSAValue, walk: WeightWalk, n: SSAValue) -> SSAValue:
    """sum over the walk of x[i, column] * value, each group's dot product on the
    codes accumulated in f32 and scaled once per group (the reassociation trick); a
    float zero adds offset * (the group's sum of x), the sum taken in the same loop."""
    sums = 1 if walk.offset is None else 2

    def group(b: LoopBuilder, g: SSAValue, acc: SSAValue) -> SSAValue:
        t0, t1 = walk.span(b, g)

        def term(b: LoopBuilder, t: SSAValue, gacc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            q = b.insert(arith.SIToFPOp(walk.code(b, n, t), f32))
            xv = b.load(x, [i, walk.column(b, n, t)])
            return [b.mul_add(gacc[0], xv, q), *[b.fadd(s, xv) for s in gacc[1:]]]

        dot, *xsum = b.loop(t0, t1, b.index(1), term, [b.f32(0.0)] * sums, name="k")
        acc = b.fadd(acc, b.fmul(walk.scale(b, n, g), dot, fast=True), fast=True)
        if walk.offset is not None:
            acc = b.fadd(acc, b.fmul(walk.offset(b, n, g), xsum[0], fast=True), fast=True)
        return acc

    return _fold(b, b.index(0), b.index(walk.groups), b.f32(0.0), group, "g")


def integer_row(b: LoopBuilder, x: QuantView, i: SSAValue, walk: WeightWalk, n: SSAValue) -> SSAValue:
    """Integer dot products per weight group in i32, one float rescale per group (times
    x's scale of the group where x has one per group of w's; else the caller applies the
    activation's scale, once per output); with a float zero a group's term is
    fma(offset, the group's sum of x's codes (exact in i32, taken in the same loop),
    scale * dot)."""
    sums = 1 if walk.offset is None else 2

    def group(b: LoopBuilder, g: SSAValue, acc: SSAValue) -> SSAValue:
        t0, t1 = walk.span(b, g)

        def step(b: LoopBuilder, t: SSAValue, iacc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            xq = x.code(b, i, walk.column(b, n, t))
            return [b.mul_add(iacc[0], xq, walk.code(b, n, t)), *[b.insert(arith.AddiOp(s, xq)) for s in iacc[1:]]]

        dot, *xsum = b.loop(t0, t1, b.index(1), step, [_int(b, 0)] * sums, name="k")
        term = b.fmul(walk.scale(b, n, g), b.insert(arith.SIToFPOp(dot, f32)))
        if walk.offset is not None:
            term = b.insert(mathd.FmaOp(walk.offset(b, n, g), b.insert(arith.SIToFPOp(xsum[0], f32)), term))
        if x.per == "group":
            term = b.fmul(term, x.scale(b, i, g))
        return b.fadd(acc, term)

    return _fold(b, b.index(0), b.index(walk.groups), b.f32(0.0), group, "g")


Source = Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]
"""The value at (row, column) of the tensor being quantized."""


def quantize(b: LoopBuilder, x: SSAValue, packed: SSAValue) -> None:
    """Quantize x to int8 codes and scales (see quantize_values)."""
    quantize_values(b, lambda b, r, k: b.load(x, [r, k]), b.size(x, 0), b.size(x, 1), QuantView.of(packed))


def quantize_values(b: LoopBuilder, x: Source, rows: SSAValue, width: SSAValue, view: QuantView) -> None:
    """int8 codes and scales per tensor, per row (token) or per group of a row,
    symmetric or asymmetric, with the packer's arithmetic."""
    if view.per == "tensor":
        span = (b.index(0), rows, b.index(0), width)
        params = _quant_params(b, x, view, span)
        _for(b, b.index(0), rows, lambda b, r: quant_codes(b, x, view, (r, b.index(0), width), params), "r")
        store_params(b, view, [b.index(0)], params)
        return
    if view.per == "channel" and view.layout.axis.data == 1:
        _quantize_columns(b, x, rows, width, view)
        return
    group = b.index(view.group) if view.per == "group" else width
    ragged = view.per == "group" and view.decoder.static_width % view.group != 0

    def row(b: LoopBuilder, r: SSAValue) -> None:
        def one_group(b: LoopBuilder, g: SSAValue) -> None:
            k0 = b.mul(g, group)
            k1 = b.min(b.add(k0, group), width) if ragged else b.add(k0, group)  # a ragged last group: the rest
            params = _quant_params(b, x, view, (r, b.add(r, b.index(1)), k0, k1))
            quant_codes(b, x, view, (r, k0, k1), params)
            store_params(b, view, view.scale_indices(b, r, g), params)

        groups = b.div(b.add(width, b.index(view.group - 1)), group) if ragged else b.div(width, group)
        _for(b, b.index(0), groups, one_group, "g")

    _for(b, b.index(0), rows, row, "r")


def _quantize_columns(b: LoopBuilder, x: Source, rows: SSAValue, width: SSAValue, view: QuantView) -> None:
    """One scale per column (per=channel, axis=1): each column's params over all rows."""

    def column(b: LoopBuilder, k: SSAValue) -> None:
        k1 = b.add(k, b.index(1))
        params = _quant_params(b, x, view, (b.index(0), rows, k, k1))
        _for(b, b.index(0), rows, lambda b, r: quant_codes(b, x, view, (r, k, k1), params), "r")
        store_params(b, view, view.scale_indices(b, b.index(0), k), params)

    _for(b, b.index(0), width, column, "k")


def _reduce(b: LoopBuilder, x: Source, span: tuple[SSAValue, SSAValue, SSAValue, SSAValue], init: float,
            combine: Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]) -> SSAValue:  # fmt: skip
    r0, r1, k0, k1 = span
    return _fold(b, r0, r1, b.f32(init), lambda b, r, acc: _fold(
        b, k0, k1, acc, lambda b, k, a: combine(b, a, x(b, r, k)), "k"), "r")  # fmt: skip


def _quant_params(b: LoopBuilder, x: Source, view: QuantView,
                  span: tuple[SSAValue, SSAValue, SSAValue, SSAValue]) -> tuple[SSAValue, SSAValue, SSAValue]:  # fmt: skip
    """(stored scale, divisor, zero point as f32) of one scale group."""
    levels = (1 << view.bits) - 1
    if view.symmetric:
        return symmetric_params(b, view, _reduce(b, x, span, 0.0, lambda b, a, v: b.fmax(a, b.insert(mathd.AbsFOp(v)))))
    lo = _reduce(b, x, span, 0.0, lambda b, a, v: b.insert(arith.MinimumfOp(a, v)))
    hi = _reduce(b, x, span, 0.0, lambda b, a, v: b.fmax(a, v))
    stored, divisor = _stored_scale(b, view, b.fdiv(b.insert(arith.SubfOp(hi, lo)), b.f32(float(levels))))
    zp = _clamp(b, b.insert(mathd.RoundEvenOp(b.fdiv(b.insert(arith.NegfOp(lo)), divisor))), 0, levels)
    return stored, divisor, zp


def symmetric_params(b: LoopBuilder, view: QuantView, amax: SSAValue) -> tuple[SSAValue, SSAValue, SSAValue]:
    """The params of a symmetric group whose largest magnitude is amax (zero point 0)."""
    stored, divisor = _stored_scale(b, view, b.fdiv(amax, b.f32(float(view.qmax))))
    return stored, divisor, b.f32(0.0)


def _stored_scale(b: LoopBuilder, view: QuantView, scale: SSAValue) -> tuple[SSAValue, SSAValue]:
    """The scale as stored (an f16 or bf16 scale is rounded, and the codes divide by the rounded
    value), and the divisor of the codes (1 where the scale is 0)."""
    stored = scale
    scales = view.buffers["scales"].type
    if isinstance(scales, MemRefType) and scales.element_type in tdsl.HALF_FLOATS:
        stored = b.insert(arith.TruncFOp(scale, scales.element_type))
        scale = b.insert(arith.ExtFOp(stored, f32))
    is_zero = b.insert(arith.CmpfOp(scale, b.f32(0.0), "oeq"))
    return stored, b.insert(arith.SelectOp(is_zero, b.f32(1.0), scale))


def _clamp(b: LoopBuilder, v: SSAValue, lo: int, hi: int) -> SSAValue:
    return b.insert(arith.MinimumfOp(b.fmax(v, b.f32(float(lo))), b.f32(float(hi))))


def quant_codes(b: LoopBuilder, x: Source, view: QuantView, span: tuple[SSAValue, SSAValue, SSAValue],
                params: tuple[SSAValue, SSAValue, SSAValue]) -> None:  # fmt: skip
    """The codes of x[r, k0:k1] (span = (r, k0, k1)), one element at a time."""
    r, k0, k1 = span
    _, divisor, zp = params
    levels = (1 << view.bits) - 1
    lo, hi = (-view.qmax, view.qmax) if view.symmetric else (0, levels)

    def code(b: LoopBuilder, k: SSAValue) -> None:
        q = b.insert(mathd.RoundEvenOp(b.fdiv(x(b, r, k), divisor)))
        if not view.symmetric:
            q = b.fadd(q, zp)
        q = b.insert(arith.FPToSIOp(_clamp(b, q, lo, hi), i32))
        b.store(b.insert(arith.TruncIOp(q, i8)), view.buffers["values"], [r, k])

    _for(b, k0, k1, code, "k")


def store_params(b: LoopBuilder, view: QuantView, where: list[SSAValue],
                 params: tuple[SSAValue, SSAValue, SSAValue]) -> None:  # fmt: skip
    """A group's stored scale (and zero point) at `where` in the scale buffers."""
    stored, _, zp = params
    b.store(stored, view.buffers["scales"], where)
    if not view.symmetric:
        zp_i8 = b.insert(arith.TruncIOp(b.insert(arith.FPToSIOp(zp, i32)), i8))
        b.store(zp_i8, view.buffers["zero_points"], where)


def weight_walks(b: LoopBuilder, weight: SSAValue, width: Size) -> list[WeightWalk]:
    """The quantized parts of a packed weight whose rows have `width` columns, each walked by the product."""
    packed = weight.type
    assert isinstance(packed, PackedType)
    layout = packed.layout
    if isinstance(layout, UniformQuantAttr):
        return [dense_walk(b, QuantView.of(weight, width=width), width)]
    if isinstance(layout, ComposedLayoutAttr) and isinstance(layout.sparse, NMAttr):
        decoder = nm_decoder(layout.sparse, width)
        slots = slots_of(b, decoder, width)
        view = QuantView.of(weight, layout.quant, width=slots)  # type: ignore[arg-type]
        indices = view.buffers["indices"]
        group = view.group_len
        groups = slots // group if isinstance(slots, int) and isinstance(group, int) else None
        walk = WeightWalk(
            b.div(b.index(slots), b.index(group)) if groups is None else groups, group,
            lambda b, n, t: decoder.column(b, indices, [n], t), view.code, view.scale,
        )  # fmt: skip
        return [walk]
    if isinstance(layout, SQAttr):
        return [dense_walk(b, QuantView.of(weight, layout.low, LOW, width), width),
                sq_high_walk(b, weight, layout)]  # fmt: skip
    raise AssertionError(f"no walk for {layout.summary()}")


def sq_high_walk(b: LoopBuilder, weight: SSAValue, layout: SQAttr) -> WeightWalk:
    """SQ-format's high part: `count` int8 codes per group of `group` columns, at
    the positions `high.index` gives, with one scale per row (or tensor)."""
    assemble = weight.owner
    assert isinstance(assemble, AssembleOp)
    values, index = assemble.buffer(HIGH + "values"), assemble.buffer(INDEX)
    scales = assemble.buffer(HIGH + "scales")
    group, count = layout.group.data, layout.count.data
    stored_slots: int = weight.type.storage.param("slots")  # type: ignore[attr-defined]
    slots = stored_slots if stored_slots >= 0 else b.size(values, 1)  # symbolic dims: the high values' row
    per_row = layout.high.per.data == "channel"

    def column(b: LoopBuilder, n: SSAValue, t: SSAValue) -> SSAValue:
        position = b.insert(arith.ExtUIOp(b.load(index, [n, t]), i32))
        start = b.mul(b.div(t, b.index(count)), b.index(group))
        return b.add(start, b.insert(arith.IndexCastOp(position, IndexType())))

    def code(b: LoopBuilder, n: SSAValue, t: SSAValue) -> SSAValue:
        return b.insert(arith.ExtSIOp(b.load(values, [n, t]), i32))

    def scale(b: LoopBuilder, n: SSAValue, g: SSAValue) -> SSAValue:
        return b.load(scales, [n if per_row else b.index(0)])

    return WeightWalk(1, slots, column, code, scale)


# ---------------------------------------------------------------- SQ-format activations


def sq_quantize(b: LoopBuilder, x: SSAValue, packed: SSAValue, layout: SQAttr) -> None:
    """The per-call split of SQ-format: in each group, the `count` elements of
    largest |x| (ties: lower position) become int8 codes with one scale per row; the
    rest, those positions zeroed, is quantized with the low layout."""
    assemble = packed.owner
    assert isinstance(assemble, AssembleOp)
    index, values = assemble.buffer(INDEX), assemble.buffer(HIGH + "values")
    group, count = layout.group.data, layout.count.data
    rows, width = b.size(x, 0), b.size(x, 1)
    slots = packed.type.storage.param("slots")  # type: ignore[attr-defined]

    def magnitude(b: LoopBuilder, r: SSAValue, k: SSAValue) -> SSAValue:
        return b.insert(mathd.AbsFOp(b.load(x, [r, k])))

    def select(b: LoopBuilder, r: SSAValue, g: SSAValue) -> None:
        k0 = b.mul(g, b.index(group))

        def candidate(b: LoopBuilder, k: SSAValue, taken: SSAValue) -> SSAValue:
            mk = magnitude(b, r, k)

            def above(b: LoopBuilder, j: SSAValue, rank: SSAValue) -> SSAValue:
                mj = magnitude(b, r, j)
                tie = b.insert(arith.AndIOp(b.insert(arith.CmpfOp(mj, mk, "oeq")), b.insert(arith.CmpiOp(j, k, "ult"))))
                ahead = b.insert(arith.OrIOp(b.insert(arith.CmpfOp(mj, mk, "ogt")), tie))
                return b.add(rank, b.insert(arith.IndexCastOp(b.insert(arith.ExtUIOp(ahead, i32)), IndexType())))

            rank = _fold(b, k0, b.add(k0, b.index(group)), b.index(0), above, "j")

            def keep(b: LoopBuilder) -> Sequence[SSAValue]:
                slot = b.add(b.mul(g, b.index(count)), taken)
                position = b.insert(arith.IndexCastOp(b.insert(arith.SubiOp(k, k0)), i32))
                b.store(b.insert(arith.TruncIOp(position, i16)), index, [r, slot])
                return [b.add(taken, b.index(1))]

            return b.if_(b.insert(arith.CmpiOp(rank, b.index(count), "ult")), keep, [taken])[0]

        _fold(b, k0, b.add(k0, b.index(group)), b.index(0), candidate, "k")

    _for(b, b.index(0), rows, lambda b, r: _for(b, b.index(0), b.div(width, b.index(group)),
                                                 lambda b, g: select(b, r, g), "g"), "r")  # fmt: skip
    column = sq_high_walk(b, packed, layout).column
    high = QuantView.over(layout.high, {"values": values, "scales": assemble.buffer(HIGH + "scales")})
    quantize_values(b, lambda b, r, t: b.load(x, [r, column(b, r, t)]), rows, b.index(slots), high)

    def masked(b: LoopBuilder, r: SSAValue, k: SSAValue) -> SSAValue:
        """x[r, k], or 0 where k is one of its group's high positions."""
        g = b.div(k, b.index(group))
        position = b.insert(arith.IndexCastOp(b.rem(k, b.index(group)), i32))

        def hit(b: LoopBuilder, c: SSAValue, found: SSAValue) -> SSAValue:
            stored = b.insert(arith.ExtUIOp(b.load(index, [r, b.add(b.mul(g, b.index(count)), c)]), i32))
            return b.insert(arith.OrIOp(found, b.insert(arith.CmpiOp(stored, position, "eq"))))

        found = _fold(b, b.index(0), b.index(count), b.insert(arith.ConstantOp(IntegerAttr(0, 1))), hit, "c")
        return b.insert(arith.SelectOp(found, b.f32(0.0), b.load(x, [r, k])))

    quantize_values(b, masked, rows, width, QuantView.of(packed, layout.low, LOW))


def sq_activation_row(b: LoopBuilder, xs: SSAValue, i: SSAValue, w: SSAValue, n: SSAValue, layout: SQAttr) -> SSAValue:
    """y[i, n] with SQ-format activations and an f32 weight row, in one pass over
    the dense low part and one over the high part."""
    width = w.type.get_shape()[1]  # type: ignore[attr-defined]
    low = QuantView.of(xs, layout.low, LOW)
    walk = sq_high_walk(b, xs, layout)

    def term(b: LoopBuilder, k: SSAValue, acc: SSAValue) -> SSAValue:
        q = b.insert(arith.SIToFPOp(low.code(b, i, k), f32))
        value = b.fmul(low.scale(b, i, b.div(k, b.index(low.group))), q)
        return b.mul_add(acc, value, b.load(w, [n, k]))

    dense = _fold(b, b.index(0), b.index(width), b.f32(0.0), term, "k")

    def outlier(b: LoopBuilder, t: SSAValue, acc: SSAValue) -> SSAValue:
        q = b.insert(arith.SIToFPOp(walk.code(b, i, t), f32))
        return b.mul_add(acc, q, b.load(w, [n, walk.column(b, i, t)]))

    sparse = _fold(b, b.index(0), b.index(walk.group_len), b.f32(0.0), outlier, "t")
    return b.fadd(dense, b.fmul(walk.scale(b, i, b.index(0)), sparse))
