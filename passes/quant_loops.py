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
from xdsl.dialects.builtin import Float16Type, IntegerAttr, IntegerType, MemRefType, f32, i8, i32
from xdsl.ir import SSAValue

from stoicc_py.dialects.layout import AssembleOp, PackedType
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.passes.loop_builder import LoopBuilder


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
    """A quantized [rows, width] tensor, read through its storage."""

    layout: UniformQuantAttr
    buffers: dict[str, SSAValue]
    bits: int
    per_byte: int
    group: int
    symmetric: bool

    @staticmethod
    def of(value: SSAValue) -> QuantView:
        packed, assemble = value.type, value.owner
        assert isinstance(packed, PackedType) and isinstance(assemble, AssembleOp)
        assert isinstance(packed.layout, UniformQuantAttr)
        storage = packed.storage
        return QuantView(
            packed.layout,
            {role: assemble.buffer(role) for role in storage.roles},
            storage.param("bits"),
            storage.param("per_byte"),
            storage.param("group"),
            bool(storage.param("symmetric")),
        )

    @property
    def per(self) -> str:
        return self.layout.per.data

    def scale_indices(self, b: LoopBuilder, row: SSAValue, g: SSAValue) -> list[SSAValue]:
        """Where the scale of group g of `row` is stored."""
        if self.per == "tensor":
            return [b.index(0)]
        if self.per == "group":
            return [row, g]
        if self.per == "channel" and self.layout.axis.data == 1:
            return [g]  # groups of one element: g is the column
        return [row]

    def scale(self, b: LoopBuilder, row: SSAValue, g: SSAValue) -> SSAValue:
        s = b.load(self.buffers["scales"], self.scale_indices(b, row, g))
        return b.insert(arith.ExtFOp(s, f32)) if isinstance(s.type, Float16Type) else s

    def code(self, b: LoopBuilder, row: SSAValue, k: SSAValue) -> SSAValue:
        """The integer q - zero_point of element (row, k), as i32."""
        byte = b.load(self.buffers["values"], [row, b.div(k, b.index(self.per_byte))])
        if self.per_byte == 1:
            code = b.insert(arith.ExtSIOp(byte, i32) if self.symmetric else arith.ExtUIOp(byte, i32))
        else:
            shift = b.insert(arith.IndexCastOp(b.mul(b.rem(k, b.index(self.per_byte)), b.index(self.bits)), i32))
            field = b.insert(arith.ShRUIOp(b.insert(arith.ExtUIOp(byte, i32)), shift))
            field = b.insert(arith.AndIOp(field, _int(b, (1 << self.bits) - 1)))
            code = self._signed(b, field) if self.symmetric else field
        if self.symmetric:
            return code
        zp = b.load(self.buffers["zero_points"], self.scale_indices(b, row, b.div(k, b.index(self.group))))
        return b.insert(arith.SubiOp(code, b.insert(arith.ExtUIOp(zp, i32))))

    def _signed(self, b: LoopBuilder, field: SSAValue) -> SSAValue:
        if self.layout.codes.data == "binary":  # bit 1 is +1, bit 0 is -1
            return b.insert(arith.SubiOp(b.insert(arith.MuliOp(field, _int(b, 2))), _int(b, 1)))
        # Two's complement in `bits` bits: shift the sign bit to bit 31 and back.
        up = _int(b, 32 - self.bits)
        return b.insert(arith.ShRSIOp(b.insert(arith.ShLIOp(field, up)), up))

    def value(self, b: LoopBuilder, row: SSAValue, k: SSAValue) -> SSAValue:
        q = b.insert(arith.SIToFPOp(self.code(b, row, k), f32))
        return b.fmul(self.scale(b, row, b.div(k, b.index(self.group))), q)


def dequantize(b: LoopBuilder, packed: SSAValue, out: SSAValue) -> None:
    """out[r, k] = scale * (q - zero_point)."""
    view = QuantView.of(packed)
    b.nest(b.sizes(out), lambda b, ivs: b.store(view.value(b, ivs[0], ivs[1]), out, ivs))


def weight_only_row(b: LoopBuilder, x: SSAValue, i: SSAValue, w: QuantView, n: SSAValue, width: SSAValue) -> SSAValue:
    """sum_k x[i, k] * w[n, k], with each group's dot product accumulated on the
    codes in f32 and scaled once per group (the reassociation trick)."""

    def group(b: LoopBuilder, g: SSAValue, acc: SSAValue) -> SSAValue:
        k0 = b.mul(g, b.index(w.group))

        def term(b: LoopBuilder, k: SSAValue, gacc: SSAValue) -> SSAValue:
            q = b.insert(arith.SIToFPOp(w.code(b, n, k), f32))
            return b.fadd(gacc, b.fmul(b.load(x, [i, k]), q, fast=True), fast=True)

        dot = _fold(b, k0, b.add(k0, b.index(w.group)), b.f32(0.0), term, "k")
        return b.fadd(acc, b.fmul(w.scale(b, n, g), dot, fast=True), fast=True)

    return _fold(b, b.index(0), b.div(width, b.index(w.group)), b.f32(0.0), group, "g")


def integer_row(b: LoopBuilder, x: QuantView, i: SSAValue, w: QuantView, n: SSAValue, width: SSAValue) -> SSAValue:
    """Integer dot products per weight group in i32, one float rescale per group,
    and the activation scale once per output."""

    def group(b: LoopBuilder, g: SSAValue, acc: SSAValue) -> SSAValue:
        k0 = b.mul(g, b.index(w.group))

        def term(b: LoopBuilder, k: SSAValue, iacc: SSAValue) -> SSAValue:
            return b.insert(arith.AddiOp(iacc, b.insert(arith.MuliOp(x.code(b, i, k), w.code(b, n, k)))))

        dot = _fold(b, k0, b.add(k0, b.index(w.group)), _int(b, 0), term, "k")
        return b.fadd(acc, b.fmul(w.scale(b, n, g), b.insert(arith.SIToFPOp(dot, f32))))

    total = _fold(b, b.index(0), b.div(width, b.index(w.group)), b.f32(0.0), group, "g")
    return b.fmul(x.scale(b, i, b.index(0)), total)


def quantize(b: LoopBuilder, x: SSAValue, packed: SSAValue) -> None:
    """Quantize x to int8 codes and scales: per tensor, per row (token) or per
    group of a row, symmetric or asymmetric, with the packer's arithmetic."""
    view = QuantView.of(packed)
    rows, width = b.size(x, 0), b.size(x, 1)
    if view.per == "tensor":
        span = (b.index(0), rows, b.index(0), width)
        params = _quant_params(b, x, view, span)
        _for(b, b.index(0), rows, lambda b, r: _quant_codes(b, x, view, (r, b.index(0), width), params), "r")
        _store_params(b, view, [b.index(0)], params)
        return
    group = b.index(view.group) if view.per == "group" else width

    def row(b: LoopBuilder, r: SSAValue) -> None:
        def one_group(b: LoopBuilder, g: SSAValue) -> None:
            k0 = b.mul(g, group)
            params = _quant_params(b, x, view, (r, b.add(r, b.index(1)), k0, b.add(k0, group)))
            _quant_codes(b, x, view, (r, k0, b.add(k0, group)), params)
            _store_params(b, view, view.scale_indices(b, r, g), params)

        _for(b, b.index(0), b.div(width, group), one_group, "g")

    _for(b, b.index(0), rows, row, "r")


def _reduce(b: LoopBuilder, x: SSAValue, span: tuple[SSAValue, SSAValue, SSAValue, SSAValue], init: float,
            combine: Callable[[LoopBuilder, SSAValue, SSAValue], SSAValue]) -> SSAValue:  # fmt: skip
    r0, r1, k0, k1 = span
    return _fold(b, r0, r1, b.f32(init), lambda b, r, acc: _fold(
        b, k0, k1, acc, lambda b, k, a: combine(b, a, b.load(x, [r, k])), "k"), "r")  # fmt: skip


def _quant_params(b: LoopBuilder, x: SSAValue, view: QuantView,
                  span: tuple[SSAValue, SSAValue, SSAValue, SSAValue]) -> tuple[SSAValue, SSAValue, SSAValue]:  # fmt: skip
    """(stored scale, divisor, zero point as f32) of one scale group."""
    levels = (1 << view.bits) - 1
    if view.symmetric:
        amax = _reduce(b, x, span, 0.0, lambda b, a, v: b.fmax(a, b.insert(mathd.AbsFOp(v))))
        scale = b.fdiv(amax, b.f32(float(levels // 2)))
        zp = b.f32(0.0)
    else:
        lo = _reduce(b, x, span, 0.0, lambda b, a, v: b.insert(arith.MinimumfOp(a, v)))
        hi = _reduce(b, x, span, 0.0, lambda b, a, v: b.fmax(a, v))
        scale = b.fdiv(b.insert(arith.SubfOp(hi, lo)), b.f32(float(levels)))
    stored = scale
    if isinstance(view.buffers["scales"].type, MemRefType) and isinstance(
        view.buffers["scales"].type.element_type, Float16Type
    ):
        stored = b.insert(arith.TruncFOp(scale, view.buffers["scales"].type.element_type))
        scale = b.insert(arith.ExtFOp(stored, f32))
    is_zero = b.insert(arith.CmpfOp(scale, b.f32(0.0), "oeq"))
    divisor = b.insert(arith.SelectOp(is_zero, b.f32(1.0), scale))
    if not view.symmetric:
        zp = _clamp(b, b.insert(mathd.RoundEvenOp(b.fdiv(b.insert(arith.NegfOp(lo)), divisor))), 0, levels)
    return stored, divisor, zp


def _clamp(b: LoopBuilder, v: SSAValue, lo: int, hi: int) -> SSAValue:
    return b.insert(arith.MinimumfOp(b.fmax(v, b.f32(float(lo))), b.f32(float(hi))))


def _quant_codes(b: LoopBuilder, x: SSAValue, view: QuantView, span: tuple[SSAValue, SSAValue, SSAValue],
                 params: tuple[SSAValue, SSAValue, SSAValue]) -> None:  # fmt: skip
    r, k0, k1 = span
    _, divisor, zp = params
    levels = (1 << view.bits) - 1
    lo, hi = (-(levels // 2), levels // 2) if view.symmetric else (0, levels)

    def code(b: LoopBuilder, k: SSAValue) -> None:
        q = b.insert(mathd.RoundEvenOp(b.fdiv(b.load(x, [r, k]), divisor)))
        if not view.symmetric:
            q = b.fadd(q, zp)
        q = b.insert(arith.FPToSIOp(_clamp(b, q, lo, hi), i32))
        b.store(b.insert(arith.TruncIOp(q, i8)), view.buffers["values"], [r, k])

    _for(b, k0, k1, code, "k")


def _store_params(b: LoopBuilder, view: QuantView, where: list[SSAValue],
                  params: tuple[SSAValue, SSAValue, SSAValue]) -> None:  # fmt: skip
    stored, _, zp = params
    b.store(stored, view.buffers["scales"], where)
    if not view.symmetric:
        zp_i8 = b.insert(arith.TruncIOp(b.insert(arith.FPToSIOp(zp, i32)), i8))
        b.store(zp_i8, view.buffers["zero_points"], where)
