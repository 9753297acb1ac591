"""Uniform quantization: the exact numpy model of the arithmetic, and the quant format.

`quantize` / `dequantize_codes` are the normative model (docs/formats.md, "Quantized
storage"): the packer, the reference interpreter's `quantize` op and the tests of
compiled kernels all use them. Every step is numpy float32 (no float64 intermediate)
with round half to even (`np.rint`), so kernels can reproduce it bit for bit.

Scales are computed on a *grouped* copy of x: a C-contiguous [groups, length] array
whose row g holds the elements sharing scale g, in row-major order (a column, for
per-channel axis=1). That fixes the float32 summation order of the mean-based
(ternary, binary) scales: numpy's pairwise sum over each group as one contiguous
vector, i.e. `np.sum(group)` on that 1-D float32 array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from xdsl.dialects.builtin import Float16Type

from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.packing.common import Array, Format, Options, layout_as

if TYPE_CHECKING:
    from stoicc_py.packing.tensor import PackedTensor

F32 = np.float32


@dataclass(frozen=True)
class QuantCodes:
    """The quantized form of an [R, K] matrix.

    `codes`: int32 [R, K], the signed level q (-qmax..qmax; -1/+1 for binary) or, when
    asymmetric, the unsigned code c (0..2^b - 1). `scales`: float32 or float16 in the
    layout's scale_shape. `zero_points`: int32 in scale_shape when asymmetric, else None.
    The value of element (r, k) is float32(scale) * float32(code - zero_point).
    """

    codes: Array
    scales: Array
    zero_points: Array | None


def _attr(layout: UniformQuantAttr | str) -> UniformQuantAttr:
    return layout_as(layout, UniformQuantAttr, "a quantized layout (int8 ... binary)")


def qmax(attr: UniformQuantAttr) -> int:
    """The largest signed level: 2^(b-1) - 1 (127, 7, 1; ternary 1, binary 0)."""
    return 2 ** (attr.bits - 1) - 1


def _levels(attr: UniformQuantAttr) -> int:
    return 2**attr.bits


def _grouped(x: Array, attr: UniformQuantAttr) -> Array:
    """x as a C-contiguous [groups, length] array: row g holds the elements of scale g."""
    rows, width = x.shape
    per = attr.per.data
    if per == "tensor":
        return x.reshape(1, rows * width)
    if per == "channel" and attr.axis.data == 1:
        return np.ascontiguousarray(x.T)
    if per == "group":
        return x.reshape(rows * width // attr.group.data, attr.group.data)
    return x  # per=channel axis=0 and per=token: a row


def _ungrouped(g: Array, shape: Sequence[int], attr: UniformQuantAttr) -> Array:
    """The inverse of _grouped."""
    if attr.per.data == "channel" and attr.axis.data == 1:
        return np.ascontiguousarray(g.T)
    return g.reshape(shape)


def _bounds(g: Array) -> tuple[Array, Array]:
    """lo = min(min(x), 0) and hi = max(max(x), 0) of each group: the range always holds 0,
    so that zero is exactly representable."""
    return np.minimum(g.min(axis=1), F32(0)), np.maximum(g.max(axis=1), F32(0))


def _float32_scales(g: Array, attr: UniformQuantAttr) -> Array:
    """The scale of each group (row of g), in float32, before rounding to the storage type."""
    if attr.codes.data in ("ternary", "binary"):
        # BitNet b1.58 absmean: float32 sum, then one float32 division by the count.
        return np.sum(np.abs(g), axis=1, dtype=F32) / F32(g.shape[1])
    if attr.is_symmetric:
        return np.max(np.abs(g), axis=1) / F32(qmax(attr))
    lo, hi = _bounds(g)
    return (hi - lo) / F32(_levels(attr) - 1)


def _stored_scales(s: Array, attr: UniformQuantAttr) -> Array:
    """s in the scale type; codes are computed with these (rounded) scales."""
    stored = s.astype(np.float16) if isinstance(attr.scale, Float16Type) else s
    _check_finite(stored, "scale", s)
    return stored


def _check_finite(a: Array, what: str, scale: Array) -> None:
    """ValueError naming the first group whose `what` is not finite: an overflow, since x is finite."""
    if not np.isfinite(a).all():
        g = int(np.argmin(np.isfinite(a)))
        raise ValueError(f"the {what} of group {g} overflows {a.dtype} (float32 scale {scale[g]})")


def _codes(g: Array, s: Array, attr: UniformQuantAttr) -> tuple[Array, Array]:
    """Float32 codes (q, or c when asymmetric) of grouped x and the zero points [groups, 1],
    given the float32 scales s [groups, 1]."""
    divisor = np.where(s == 0, F32(1), s)
    if attr.codes.data == "binary":
        return np.where(g >= 0, F32(1), F32(-1)), np.zeros_like(s)
    if attr.is_symmetric:
        return np.clip(np.rint(g / divisor), F32(-qmax(attr)), F32(qmax(attr))), np.zeros_like(s)
    top = F32(_levels(attr) - 1)
    zp = np.clip(np.rint(-_bounds(g)[0][:, None] / divisor), F32(0), top)
    return np.clip(np.rint(g / divisor) + zp, F32(0), top), zp


def finite_matrix(x: Array, what: str) -> Array:
    """x as an array if it is a finite 2-D float32 matrix, else a ValueError naming the problem."""
    x = np.asarray(x)
    if x.dtype != F32 or x.ndim != 2:
        raise ValueError(f"{what}: x must be a 2-D float32 array, got {x.dtype} of shape {list(x.shape)}")
    if not np.isfinite(x).all():
        r, k = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(f"{what}: x[{r}, {k}] = {x[r, k]} is not finite")
    return x


def quantize(x: Array, layout: UniformQuantAttr | str) -> QuantCodes:
    """The codes, scales and zero points of the float32 [R, K] matrix x in `layout`.

    Symmetric ints: s = max|x| / qmax, q = clip(rint(x / s), -qmax, qmax). Ternary:
    s = mean|x|, q = clip(rint(x / s), -1, 1). Binary: s = mean|x|, q = +1 where
    x >= 0 else -1. Asymmetric: s = (hi - lo) / (2^b - 1) with lo = min(min x, 0),
    hi = max(max x, 0), zp = clip(rint(-lo / s), 0, 2^b - 1), c = clip(rint(x / s) + zp,
    0, 2^b - 1). A zero scale divides by 1. Codes use the scale as stored (f16-rounded).
    ValueError if x is not finite, or a scale or value (near float32's max) overflows.
    """
    attr = _attr(layout)
    x = finite_matrix(x, "quantize")
    g = _grouped(x, attr)
    with np.errstate(over="ignore"):  # overflows are reported by group below
        scales = _stored_scales(_float32_scales(g, attr), attr)
        s = scales.astype(F32)[:, None]
        codes, zp = _codes(g, s, attr)
        _check_finite(s[:, 0] * np.abs(codes - zp).max(axis=1), "largest value", s[:, 0])
    shape = attr.scale_shape(x.shape)
    return QuantCodes(
        _ungrouped(codes.astype(np.int32), x.shape, attr),
        scales.reshape(shape),
        None if attr.is_symmetric else zp.astype(np.int32).reshape(shape),
    )


def dequantize_codes(q: QuantCodes, layout: UniformQuantAttr | str) -> Array:
    """The float32 values float32(scale) * float32(code - zero_point) of quantized codes."""
    attr = _attr(layout)
    g = _grouped(q.codes, attr)
    if q.zero_points is not None:
        g = g - q.zero_points.reshape(-1, 1)
    values = q.scales.astype(F32).reshape(-1, 1) * g.astype(F32)
    return _ungrouped(values, q.codes.shape, attr)


def sharing_scale(mask: Array, layout: UniformQuantAttr | str) -> Array:
    """bool, the shape of the [R, K] mask: the elements that share a scale with one in mask."""
    attr = _attr(layout)
    g = _grouped(mask, attr)
    return _ungrouped(np.broadcast_to(g.any(axis=1, keepdims=True), g.shape), mask.shape, attr)


def fake_quantize(x: Array, layout: UniformQuantAttr | str) -> Array:
    """dequantize_codes(quantize(x)): x rounded to the values the layout can store."""
    return dequantize_codes(quantize(x, layout), layout)


# ---------------------------------------------------------------------------- bit packing


def pack_fields(fields: Array, bits: int) -> Array:
    """uint8 bytes [R, K * bits / 8] of b-bit unsigned fields [R, K]: field k in byte
    k // per_byte at bits (k % per_byte) * b, least significant first."""
    per_byte = 8 // bits
    rows, width = fields.shape
    by_byte = fields.astype(np.uint8).reshape(rows, width // per_byte, per_byte)
    out = np.zeros(by_byte.shape[:2], np.uint8)
    for j in range(per_byte):  # whole-array operations, one per position in a byte
        out |= by_byte[:, :, j] << np.uint8(j * bits)
    return out


def unpack_fields(data: Array, bits: int) -> Array:
    """The b-bit unsigned fields [R, K] (uint8) of bytes [R, K * bits / 8]; inverse of pack_fields."""
    shifts = np.arange(0, 8, bits, dtype=np.uint8)
    fields = (data.view(np.uint8)[:, :, None] >> shifts) & np.uint8(2**bits - 1)
    return fields.reshape(data.shape[0], data.shape[1] * shifts.size)


def encode_values(codes: Array, attr: UniformQuantAttr) -> Array:
    """The "values" buffer of int32 codes: two's complement truncated to b bits when
    symmetric, the unsigned code when asymmetric, bit = (q == +1) for binary."""
    if attr.codes.data == "binary":
        fields = codes > 0
    else:
        fields = codes & (_levels(attr) - 1)
    return pack_fields(fields, attr.bits).view(np.int8 if attr.is_symmetric else np.uint8)


def decode_values(values: Array, attr: UniformQuantAttr) -> Array:
    """The int32 codes [R, K] of a "values" buffer; inverse of encode_values."""
    fields = unpack_fields(values, attr.bits).astype(np.int32)
    if attr.codes.data == "binary":
        return 2 * fields - 1
    if not attr.is_symmetric:
        return fields
    half = 2 ** (attr.bits - 1)
    return (fields ^ half) - half  # sign extension of b-bit two's complement


# ---------------------------------------------------------------------------- the format


def code_arrays(q: QuantCodes, attr: UniformQuantAttr, prefix: str = "") -> dict[str, Array]:
    """The buffers (role -> array) of quantized codes; `prefix` names a part of a composite
    format ("low.", "high.")."""
    arrays = {prefix + "values": encode_values(q.codes, attr), prefix + "scales": q.scales}
    if q.zero_points is not None:
        arrays[prefix + "zero_points"] = q.zero_points.astype(np.uint8)
    return arrays


def codes_from(arrays: dict[str, Array], attr: UniformQuantAttr, prefix: str = "") -> QuantCodes:
    """The QuantCodes stored in (checked) buffers; inverse of code_arrays."""
    zp = arrays.get(prefix + "zero_points")
    return QuantCodes(
        decode_values(arrays[prefix + "values"], attr),
        arrays[prefix + "scales"],
        None if zp is None else zp.astype(np.int32),
    )


def _first(bad: Array) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def check_scales(scales: Array, role: str) -> None:
    """ValueError at the first scale that is not a finite non-negative number."""
    bad = ~np.isfinite(scales) | (scales < 0)
    if bad.any():
        at = _first(bad)
        raise ValueError(f"{role}{list(at)} = {scales[at]} is not a finite non-negative number")


def check_codes(arrays: dict[str, Array], attr: UniformQuantAttr, prefix: str = "") -> None:
    """Scales finite and >= 0, zero points below 2^b, and symmetric codes in -qmax..qmax:
    the most negative b-bit pattern (-2^(b-1)) is never produced, and for ternary (0b10)
    and symmetric int2 it is not a level at all; kernels may rely on its absence."""
    check_scales(arrays[prefix + "scales"], prefix + "scales")
    zp = arrays.get(prefix + "zero_points")
    if zp is not None and (bad := zp >= _levels(attr)).any():
        at = _first(bad)
        raise ValueError(f"{prefix}zero_points{list(at)} = {zp[at]} is out of range [0, {_levels(attr) - 1}]")
    if attr.is_symmetric and attr.codes.data != "binary":
        codes = decode_values(arrays[prefix + "values"], attr)
        if (bad := codes < -qmax(attr)).any():
            r, k = _first(bad)
            raise ValueError(
                f"{prefix}values: the code of row {r}, column {k} is {codes[r, k]} "
                f"(0b{codes[r, k] & (_levels(attr) - 1):0{attr.bits}b}), outside -{qmax(attr)}..{qmax(attr)}"
            )


def _pack(w: Array, layout: UniformQuantAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    if opts.prune:
        raise ValueError(f"prune= applies to sparse layouts, not {layout.summary()}")
    return code_arrays(quantize(w, layout), layout)


def codes_of(packed: PackedTensor) -> QuantCodes:
    """The QuantCodes stored in a (checked) quantized packed tensor."""
    attr = packed.layout
    assert isinstance(attr, UniformQuantAttr)
    return codes_from(packed.arrays, attr)


def _unpack(packed: PackedTensor) -> Array:
    return dequantize_codes(codes_of(packed), packed.layout)


def _check(packed: PackedTensor) -> None:
    attr = packed.layout
    assert isinstance(attr, UniformQuantAttr)
    check_codes(packed.arrays, attr)


QUANT = Format(_pack, _unpack, _check)
