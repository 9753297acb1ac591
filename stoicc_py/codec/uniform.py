"""Uniform quantization's codec: the bits of a code, and the exact numpy model of the arithmetic.

`CodeBits` is the one definition of how a b-bit code sits in bytes (docs/formats.md,
"Quantized storage"): which bit planes, LSB-first fields, and what a field means
(two's complement, binary's +-1, or an unsigned code with a zero point). The packer,
`PackedTensor.unpack()/dequantize()`, the reference interpreter, the accelerator's
functional simulator and the IR-side decoder (stoicc_py.codegen.quant_decode) all read it.

`quantize` / `dequantize_codes` are the normative model of the arithmetic: every step is
numpy float32 (no float64 intermediate) with round half to even (`np.rint`), so kernels
can reproduce it bit for bit.

Scales are computed on a *grouped* copy of x: a C-contiguous [groups, length] array
whose row g holds the elements sharing scale g, in row-major order (a column, for
per-channel axis=1). That fixes the float32 summation order of the mean-based
(ternary, binary) scales: numpy's pairwise sum over each group as one contiguous
vector, i.e. `np.sum(group)` on that 1-D float32 array. A ragged last group (per=group
on a row width that the group does not divide) is quantized on its own, as a group of
the remaining columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np
from xdsl.dialects.builtin import BFloat16Type, Float16Type, IntAttr, StringAttr
from xdsl.ir import TypeAttribute

from stoicc_py.arrays import bf16_dtype
from stoicc_py.codec import Array, Codec, cut_leading

F32 = np.float32
STORAGE_BITS = {"int8": 8, "int7": 8, "int6": 6, "int5": 5, "int4": 4, "int3": 3, "int2": 2, "ternary": 2, "binary": 1}
"""Bits per code of each storage type: the one table (the dialect, the language and the accelerator read it)."""
VALUE_BITS = {"int7": 7}
"""Codes narrower than their storage field: int7's 7-bit codes (-63..63), one to a byte, as
int8's. An activation code only (`quantize(x, int7(per=token))`): its products with 8-bit
weight bytes (0..255) pair-sum exactly in pmaddubsw's i16 (|2 * 255 * 64| < 2^15), where
int8 activations' do not (docs/formats.md, "int7 activations")."""
ACTIVATION_CODES = ("int8", "int7")
"""The codes the CPU backend quantizes activations to at run time."""


class QuantScheme(Protocol):
    """What this codec reads of a `#quant.uniform` attribute (dialects/quant.py's
    UniformQuantAttr, which registers `uniform_codec`): a structural type, so that the
    codecs, a layer below the dialects, name no dialect even for the type checker."""

    @property
    def codes(self) -> StringAttr: ...

    @property
    def per(self) -> StringAttr: ...

    @property
    def group(self) -> IntAttr: ...

    @property
    def scale(self) -> TypeAttribute: ...

    @property
    def per_column(self) -> bool: ...

    @property
    def is_symmetric(self) -> bool: ...

    @property
    def float_offset(self) -> bool: ...

    def regrouped(self, group: int) -> QuantScheme: ...

    def scale_shape(self, shape: Sequence[int]) -> list[int]: ...


# ---------------------------------------------------------------------------- the bits of a code


class Sign(Enum):
    """What a code's unsigned field u means."""

    TWOS = "two's complement"  # q = u sign-extended from b bits
    PLUS_MINUS_ONE = "+-1"  # binary: q = 2u - 1
    UNSIGNED = "unsigned"  # asymmetric: the code is u, the value scale * (u - zero point) or scale * u + offset


@dataclass(frozen=True)
class Plane:
    """Bits `shift` .. `shift + bits - 1` of every code of a row, packed `8 // bits` fields
    to a byte, least significant first; the plane's bytes start at byte `start(width)` of the row."""

    bits: int
    shift: int

    @property
    def per_byte(self) -> int:
        return 8 // self.bits

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    def start(self, width: int) -> int:
        """Where this plane starts in a row of `width` codes (the planes below it come first)."""
        return width * self.shift // 8


@dataclass(frozen=True)
class CodeBits:
    """How a `bits`-bit code is stored: a power-of-two width (8, 4, 2, 1) is one plane of
    fields; another width is split into power-of-two bit planes from the low bits up, as
    ggml's k-quants do (int3 = 2 + 1, int5 = 4 + 1, int6 = 4 + 2), each plane a run of
    whole bytes in the row (low plane first), so that every plane decodes like int4/int2/binary."""

    bits: int
    sign: Sign
    value_bits: int = 0
    """The code's own bits where fewer than its field's `bits` (int7: 7 in a byte); 0: `bits`."""

    @staticmethod
    def of(attr: QuantScheme) -> CodeBits:
        codes = attr.codes.data
        if codes == "binary":
            return CodeBits(1, Sign.PLUS_MINUS_ONE)
        sign = Sign.TWOS if attr.is_symmetric else Sign.UNSIGNED
        return CodeBits(STORAGE_BITS[codes], sign, VALUE_BITS.get(codes, 0))

    @property
    def planes(self) -> tuple[Plane, ...]:
        planes, shift = [], 0
        while shift < self.bits:
            width = 1 << ((self.bits - shift).bit_length() - 1)  # the widest power of two left
            planes.append(Plane(width, shift))
            shift += width
        return tuple(planes)

    @property
    def unit(self) -> int:
        """Codes that fill whole bytes in every plane: a row's width is a multiple of it."""
        return 8 // min(p.bits for p in self.planes)

    def row_bytes(self, width: int) -> int:
        return width * self.bits // 8

    @property
    def levels(self) -> int:
        return 1 << self.bits

    @property
    def qmax(self) -> int:
        """The largest signed level: 2^(b-1) - 1 (127, 63, 31, 15, 7, 3, 1; binary 0), b the code's own bits."""
        return (1 << ((self.value_bits or self.bits) - 1)) - 1

    @property
    def sign_bit(self) -> int:
        return 1 << (self.bits - 1)

    def pack(self, fields: Array) -> Array:
        """uint8 bytes [R, K * b / 8] of b-bit unsigned fields [R, K] (K a multiple of `unit`)."""
        return np.concatenate([pack_fields((fields >> p.shift) & p.mask, p.bits) for p in self.planes], axis=1)

    def unpack(self, data: Array) -> Array:
        """The unsigned fields [R, K] (int32) of bytes [R, K * b / 8]; inverse of pack."""
        width = data.shape[1] * 8 // self.bits
        out = np.zeros((data.shape[0], width), np.int32)
        for p in self.planes:
            part = data[:, p.start(width) : p.start(width) + width * p.bits // 8]
            out |= unpack_fields(part, p.bits).astype(np.int32) << p.shift
        return out

    def encode(self, codes: Array) -> Array:
        """The bytes of int32 codes: two's complement truncated to b bits, the unsigned code,
        or bit = (q == +1) for binary; int8 when signed, uint8 when unsigned."""
        fields = codes > 0 if self.sign is Sign.PLUS_MINUS_ONE else codes & (self.levels - 1)
        return self.pack(fields.astype(np.int32)).view(np.uint8 if self.sign is Sign.UNSIGNED else np.int8)

    def decode(self, data: Array) -> Array:
        """The int32 codes of bytes [R, K * b / 8]; inverse of encode."""
        return self.value(self.unpack(data.view(np.uint8)))

    def value(self, fields: Array) -> Array:
        """The codes of unsigned fields (any integer dtype): sign extension of b-bit two's
        complement ((u ^ 2^(b-1)) - 2^(b-1)), 2u - 1 for binary, u when unsigned."""
        if self.sign is Sign.PLUS_MINUS_ONE:
            return 2 * fields - 1
        if self.sign is Sign.UNSIGNED:
            return fields
        return (fields ^ self.sign_bit) - self.sign_bit


def pack_fields(fields: Array, bits: int) -> Array:
    """uint8 bytes [R, K * bits / 8] of `bits`-bit (8, 4, 2, 1) unsigned fields [R, K]:
    field k in byte k // per_byte at bits (k % per_byte) * b, least significant first."""
    per_byte = 8 // bits
    rows, width = fields.shape
    by_byte = fields.astype(np.uint8).reshape(rows, width // per_byte, per_byte)
    out = np.zeros(by_byte.shape[:2], np.uint8)
    for j in range(per_byte):  # whole-array operations, one per position in a byte
        out |= by_byte[:, :, j] << np.uint8(j * bits)
    return out


def unpack_fields(data: Array, bits: int) -> Array:
    """The `bits`-bit unsigned fields [R, K] (uint8) of bytes [R, K * bits / 8]; inverse of pack_fields."""
    shifts = np.arange(0, 8, bits, dtype=np.uint8)
    fields = (data.view(np.uint8)[:, :, None] >> shifts) & np.uint8(2**bits - 1)
    return fields.reshape(data.shape[0], data.shape[1] * shifts.size)


# ---------------------------------------------------------------------------- the arithmetic


@dataclass(frozen=True)
class QuantCodes:
    """The quantized form of an [R, K] matrix.

    `codes`: int32 [R, K], the signed level q (-qmax..qmax; -1/+1 for binary) or, when
    asymmetric, the unsigned code c (0..2^b - 1). `scales`: float32, float16 or bfloat16 in the
    layout's scale_shape. `zero_points`: int32 in scale_shape when asymmetric with an integer
    zero point, else None. `offsets`: with a float zero (`zero=float`), the offsets in the
    scales' dtype and shape, else None. The value of element (r, k) is float32(scale) *
    float32(code - zero_point), or float32(scale) * float32(code) + float32(offset).
    """

    codes: Array
    scales: Array
    zero_points: Array | None
    offsets: Array | None = None


def _split(attr: QuantScheme, width: int) -> tuple[int, QuantScheme] | None:
    """(columns of the whole groups, the layout of the ragged last group), or None when
    the groups tile the row."""
    group = attr.group.data
    if attr.per.data != "group" or width % group == 0 or width < group:
        return None
    return width - width % group, attr.regrouped(width % group)


def _grouped(x: Array, attr: QuantScheme) -> Array:
    """x as a C-contiguous [groups, length] array: row g holds the elements of scale g."""
    rows, width = x.shape
    per = attr.per.data
    if per == "tensor":
        return x.reshape(1, rows * width)
    if attr.per_column:
        return np.ascontiguousarray(x.T)
    if per == "group":
        length = min(attr.group.data, width)
        return x.reshape(rows * width // length, length)
    return x  # per=channel axis=0 and per=token: a row


def _ungrouped(g: Array, shape: Sequence[int], attr: QuantScheme) -> Array:
    """The inverse of _grouped."""
    return np.ascontiguousarray(g.T) if attr.per_column else g.reshape(shape)


def _bounds(g: Array) -> tuple[Array, Array]:
    """lo = min(min(x), 0) and hi = max(max(x), 0) of each group: the range always holds 0,
    so that zero is exactly representable."""
    return np.minimum(g.min(axis=1), F32(0)), np.maximum(g.max(axis=1), F32(0))


def _offsets(g: Array) -> Array:
    """A float zero's offset of each group: its min (the grid is min .. max, 0 need not be on it, as in Q4_1)."""
    return g.min(axis=1)


def _float32_scales(g: Array, attr: QuantScheme, code: CodeBits) -> Array:
    """The scale of each group (row of g), in float32, before rounding to the storage type."""
    if attr.codes.data in ("ternary", "binary"):
        # BitNet b1.58 absmean: float32 sum, then one float32 division by the count.
        return np.asarray(np.sum(np.abs(g), axis=1, dtype=F32) / F32(g.shape[1]))
    if attr.is_symmetric:
        return np.max(np.abs(g), axis=1) / F32(code.qmax)
    lo, hi = (g.min(axis=1), g.max(axis=1)) if attr.float_offset else _bounds(g)
    return (hi - lo) / F32(code.levels - 1)


def scale_dtype(attr: QuantScheme) -> np.dtype[Any]:
    """The numpy dtype of the stored scales: float32, float16 or bfloat16 (scale=...)."""
    if isinstance(attr.scale, Float16Type):
        return np.dtype(np.float16)
    return bf16_dtype() if isinstance(attr.scale, BFloat16Type) else np.dtype(F32)


def _stored_scales(s: Array, attr: QuantScheme, what: str = "scale") -> Array:
    """s (or offsets) in the scale type (rounded to nearest even); codes are computed with these."""
    stored = s.astype(scale_dtype(attr), copy=False)
    _check_finite(stored, what, s)
    return stored


def _check_finite(a: Array, what: str, scale: Array) -> None:
    """ValueError naming the first group whose `what` is not finite: an overflow, since x is finite."""
    if not np.isfinite(a).all():
        g = int(np.argmin(np.isfinite(a)))
        raise ValueError(f"the {what} of group {g} overflows {a.dtype} (float32 scale {scale[g]})")


def round_codes(g: Array, s: Array, code: CodeBits, zp: Array | None = None,
                offset: Array | None = None) -> tuple[Array, Array]:  # fmt: skip
    """Float32 codes (q, or c when asymmetric) of grouped x and the zero points [groups, 1],
    given the float32 scales s [groups, 1] and, when asymmetric, the zero points `zp` (by
    default each group's own, rint(-lo / s)) or the float32 offsets `offset` [groups, 1] of a
    float zero (c = clip(rint((x - offset) / s)); the zero points returned are then 0). The
    compression methods round one column at a time onto a grid they chose
    (stoicc_py.packing.methods) with this same arithmetic."""
    divisor = np.where(s == 0, F32(1), s)
    if offset is not None:
        return np.clip(np.rint((g - offset) / divisor), F32(0), F32(code.levels - 1)), np.zeros_like(s)
    if code.sign is Sign.PLUS_MINUS_ONE:
        return np.where(g >= 0, F32(1), F32(-1)), np.zeros_like(s)
    if code.sign is Sign.TWOS:
        return np.clip(np.rint(g / divisor), F32(-code.qmax), F32(code.qmax)), np.zeros_like(s)
    top = F32(code.levels - 1)
    if zp is None:
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


def _side_by_side(a: Array | None, b: Array | None) -> Array | None:
    return None if a is None or b is None else np.concatenate([a, b], axis=1)


def _cut(a: Array | None) -> tuple[Array | None, Array | None]:
    """Per-group arrays [R, groups]: the whole groups and the ragged last group."""
    return (None, None) if a is None else (a[:, :-1], a[:, -1:])


def _join(main: QuantCodes, last: QuantCodes) -> QuantCodes:
    """The codes of a row's whole groups and of its ragged last group, side by side."""
    return QuantCodes(np.concatenate([main.codes, last.codes], axis=1),
                      np.concatenate([main.scales, last.scales], axis=1),
                      _side_by_side(main.zero_points, last.zero_points),
                      _side_by_side(main.offsets, last.offsets))  # fmt: skip


@dataclass(frozen=True)
class Grid:
    """Scales (the stored dtype) and zero points (int32, or None when symmetric or with a
    float zero) or offsets (a float zero's, the scales' dtype) in a layout's scale_shape,
    chosen by a compression method rather than computed from the values."""

    scales: Array
    zero_points: Array | None
    offsets: Array | None = None


def _split_grid(grid: Grid | None) -> tuple[Grid | None, Grid | None]:
    """A grid's whole groups and its ragged last group (the last scale of each row)."""
    if grid is None:
        return None, None
    (s0, s1), (z0, z1), (m0, m1) = _cut(grid.scales), _cut(grid.zero_points), _cut(grid.offsets)
    assert s0 is not None and s1 is not None
    return Grid(s0, z0, m0), Grid(s1, z1, m1)


def _grid_scales(grid: Grid, attr: QuantScheme, shape: Sequence[int]) -> tuple[Array, Array | None, Array | None]:
    """A given grid's stored scales and offsets (flat, the groups' order) and zero points [groups, 1] (float32)."""
    want = attr.scale_shape(shape)
    for a in (grid.scales, grid.offsets):
        if a is not None and (list(a.shape) != want or a.dtype != scale_dtype(attr)):
            raise ValueError(f"quantize: a grid of {a.dtype} {list(a.shape)}, expected {scale_dtype(attr)} {want}")
    if (grid.zero_points is None) != (attr.is_symmetric or attr.float_offset):
        raise ValueError("quantize: a grid has zero points exactly when the layout is asymmetric with an integer zero")
    if (grid.offsets is None) == attr.float_offset:
        raise ValueError("quantize: a grid has offsets exactly when the layout has a float zero (zero=float)")
    zp = None if grid.zero_points is None else grid.zero_points.reshape(-1, 1).astype(F32)
    return grid.scales.reshape(-1), zp, None if grid.offsets is None else grid.offsets.reshape(-1)


def quantize(x: Array, attr: QuantScheme, grid: Grid | None = None) -> QuantCodes:
    """The codes, scales and zero points of the float32 [R, K] matrix x in `attr`; on `grid`
    (its scales and zero points) instead of x's own when given.

    Symmetric ints: s = max|x| / qmax, q = clip(rint(x / s), -qmax, qmax). Ternary:
    s = mean|x|, q = clip(rint(x / s), -1, 1). Binary: s = mean|x|, q = +1 where
    x >= 0 else -1. Asymmetric: s = (hi - lo) / (2^b - 1) with lo = min(min x, 0),
    hi = max(max x, 0), zp = clip(rint(-lo / s), 0, 2^b - 1), c = clip(rint(x / s) + zp,
    0, 2^b - 1). Float zero (zero=float): s = (max x - min x) / (2^b - 1), offset = min x,
    c = clip(rint((x - offset) / s), 0, 2^b - 1). A zero scale divides by 1. Codes use the
    scale and offset as stored (f16-rounded).
    ValueError if x is not finite, or a scale or value (near float32's max) overflows.
    """
    x = finite_matrix(x, "quantize")
    if (split := _split(attr, x.shape[1])) is not None:
        cut, last = split
        main, tail = _split_grid(grid)
        return _join(quantize(x[:, :cut], attr, main), quantize(np.ascontiguousarray(x[:, cut:]), last, tail))
    code = CodeBits.of(attr)
    g = _grouped(x, attr)
    with np.errstate(over="ignore"):  # overflows are reported by group below
        given = offsets = None
        if grid is None:
            scales = _stored_scales(_float32_scales(g, attr, code), attr)
            offsets = _stored_scales(_offsets(g), attr, "offset") if attr.float_offset else None
        else:
            scales, given, offsets = _grid_scales(grid, attr, x.shape)
        s = scales.astype(F32)[:, None]
        m = None if offsets is None else offsets.astype(F32)[:, None]
        codes, zp = round_codes(g, s, code, given, m)
        _check_finite(s[:, 0] * np.abs(codes - zp).max(axis=1) + (0 if m is None else np.abs(m[:, 0])),
                      "largest value", s[:, 0])  # fmt: skip
    shape = attr.scale_shape(x.shape)
    return QuantCodes(
        _ungrouped(codes.astype(np.int32), x.shape, attr),
        scales.reshape(shape),
        None if attr.is_symmetric or attr.float_offset else zp.astype(np.int32).reshape(shape),
        None if offsets is None else offsets.reshape(shape),
    )


@dataclass(frozen=True)
class Shrink:
    """GPTQ's grid search (the reference Quantizer with mse=True: IST-DASLab/gptq, quant.py,
    find_params): the min/max range [lo, hi] of each group is scaled to [p lo, p hi] for
    p = 1 - i / steps, i = 0 .. int(maxshrink * steps) - 1 (1.0 down to 0.21 by default), and
    the p whose grid quantizes the group with the least sum |x - q(x)|^norm is kept (the
    largest such p: p = 1, quantize's own grid, wins ties)."""

    norm: float = 2.4
    steps: int = 100
    maxshrink: float = 0.8

    def factors(self) -> Array:
        return (1 - np.arange(int(self.maxshrink * self.steps)) / self.steps).astype(F32)


SEARCH_ELEMENTS = 1 << 21
"""Elements of x times factors that searched_grid quantizes at once (a few float32 arrays of it)."""


def searched_grid(x: Array, attr: QuantScheme, shrink: Shrink, importance: Array | None = None) -> Grid:
    """The grid of the float32 [R, K] matrix x in `attr` (for quantize(x, attr, grid)) whose
    range, per scale group, is quantize's min/max range shrunk by the factor of `shrink` with
    the least error (Shrink). The range is [-max|x|, max|x|] when symmetric, [min(min x, 0),
    max(max x, 0)] with an integer zero point (rint(-p lo / s)), [min x, max x] with a float
    zero (offset p min x), all scaled by p as in the reference; each candidate is rounded as
    stored (f16 ...) before it is scored, so the error is the packed matrix's. `importance`
    (float32 [K], e.g. diag H) weighs each column's errors in the sum (the reference: 1)."""
    x = finite_matrix(x, "searched_grid")
    if attr.codes.data in ("ternary", "binary"):
        raise ValueError(f"searched_grid: {attr.codes.data} has a mean-|x| scale, not a min/max range to shrink")
    if (split := _split(attr, x.shape[1])) is not None:
        cut, last = split
        rest = None if importance is None else importance[cut:]
        main = searched_grid(x[:, :cut], attr, shrink, None if importance is None else importance[:cut])
        tail = searched_grid(np.ascontiguousarray(x[:, cut:]), last, shrink, rest)
        return Grid(np.concatenate([main.scales, tail.scales], axis=1), _side_by_side(main.zero_points, tail.zero_points),
                    _side_by_side(main.offsets, tail.offsets))  # fmt: skip
    code, g = CodeBits.of(attr), _grouped(x, attr)
    weight = None if importance is None else _grouped(np.broadcast_to(importance.astype(F32), x.shape), attr)
    lo, hi = _search_range(g, attr)
    factors = shrink.factors()
    best = np.full(g.shape[0], np.inf, F32)
    chosen = np.zeros(g.shape[0], F32)
    chunk = max(1, SEARCH_ELEMENTS // g.size)
    for c0 in range(0, factors.size, chunk):  # a chunk of factors at once: [P, groups, length]
        p = factors[c0 : c0 + chunk, None]
        s, zp, m = _candidate(p * lo, p * hi, attr, code)
        err = _search_error(g, s, zp, m, code, shrink.norm, weight)
        at = np.argmin(err, axis=0)  # the first of equal errors: the largest p
        least = np.take_along_axis(err, at[None], axis=0)[0]
        better = least < best
        best[better], chosen[better] = least[better], p[at[better], 0]
    s, zp, m = _candidate(chosen * lo, chosen * hi, attr, code)
    _check_finite(s, "scale", s.astype(F32))
    shape = attr.scale_shape(x.shape)
    return Grid(s.reshape(shape), None if zp is None else zp.astype(np.int32).reshape(shape),
                None if m is None else m.reshape(shape))  # fmt: skip


def _search_range(g: Array, attr: QuantScheme) -> tuple[Array, Array]:
    """The range [lo, hi] of each group that the scale and zero point (or offset) come from."""
    if attr.is_symmetric:
        top = np.max(np.abs(g), axis=1)
        return -top, top
    return (g.min(axis=1), g.max(axis=1)) if attr.float_offset else _bounds(g)


def _candidate(lo: Array, hi: Array, attr: QuantScheme, code: CodeBits) -> tuple[Array, Array | None, Array | None]:
    """The stored scales, the float32 zero points (integer zero) and the stored offsets (float
    zero) of ranges [lo, hi]: for p = 1 exactly quantize's."""
    with np.errstate(over="ignore"):  # an overflowing candidate scores inf; the chosen one is checked
        if attr.is_symmetric:
            return (hi / F32(code.qmax)).astype(scale_dtype(attr)), None, None
        s = ((hi - lo) / F32(code.levels - 1)).astype(scale_dtype(attr))
        if attr.float_offset:
            return s, None, lo.astype(scale_dtype(attr))
    divisor = np.where(s == 0, F32(1), s.astype(F32))
    return s, np.clip(np.rint(-lo / divisor), F32(0), F32(code.levels - 1)), None


def _search_error(g: Array, s: Array, zp: Array | None, m: Array | None, code: CodeBits, norm: float,
                  weight: Array | None) -> Array:  # fmt: skip
    """sum (weight) |g - q(g)|^norm over each group [P, groups] of candidate grids [P, groups]."""
    s32 = s.astype(F32)[..., None]
    m32 = None if m is None else m.astype(F32)[..., None]
    codes, zero = round_codes(g, s32, code, None if zp is None else zp[..., None], m32)
    values = s32 * (codes - zero) if m32 is None else s32 * codes + m32
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - values) ** F32(norm)
        err = np.sum(err if weight is None else weight * err, axis=-1)
    return np.where(np.isnan(err), F32(np.inf), err)


def _columns(q: QuantCodes, cut: int) -> tuple[QuantCodes, QuantCodes]:
    """q's whole groups (codes before column `cut`) and its ragged last group."""
    (s0, s1), (z0, z1), (m0, m1) = _cut(q.scales), _cut(q.zero_points), _cut(q.offsets)
    assert s0 is not None and s1 is not None
    return QuantCodes(q.codes[:, :cut], s0, z0, m0), QuantCodes(q.codes[:, cut:], s1, z1, m1)


def dequantize_codes(q: QuantCodes, attr: QuantScheme) -> Array:
    """The float32 values float32(scale) * float32(code - zero_point) of quantized codes (plus
    float32(offset), a float zero's, rounded once more)."""
    if (split := _split(attr, q.codes.shape[1])) is not None:
        main, last = _columns(q, split[0])
        return np.concatenate([dequantize_codes(main, attr), dequantize_codes(last, split[1])], axis=1)
    g = _grouped(q.codes, attr)
    if q.zero_points is not None:
        g = g - q.zero_points.reshape(-1, 1)
    values = q.scales.astype(F32).reshape(-1, 1) * g.astype(F32)
    if q.offsets is not None:
        values += q.offsets.astype(F32).reshape(-1, 1)
    return _ungrouped(values, q.codes.shape, attr)


def sharing_scale(mask: Array, attr: QuantScheme) -> Array:
    """bool, the shape of the [R, K] mask: the elements that share a scale with one in mask."""
    if (split := _split(attr, mask.shape[1])) is not None:
        cut, last = split
        return np.concatenate([sharing_scale(mask[:, :cut], attr), sharing_scale(mask[:, cut:], last)], axis=1)
    g = _grouped(mask, attr)
    return _ungrouped(np.broadcast_to(g.any(axis=1, keepdims=True), g.shape), mask.shape, attr)


# ---------------------------------------------------------------------------- the buffers


def code_arrays(q: QuantCodes, attr: QuantScheme, prefix: str = "") -> dict[str, Array]:
    """The buffers (role -> array) of quantized codes; `prefix` names a part of a composite
    format ("low.", "high.")."""
    arrays = {prefix + "values": CodeBits.of(attr).encode(q.codes), prefix + "scales": q.scales}
    if q.zero_points is not None:
        arrays[prefix + "zero_points"] = q.zero_points.astype(np.uint8)
    if q.offsets is not None:
        arrays[prefix + "offsets"] = q.offsets
    return arrays


def codes_from(arrays: dict[str, Array], attr: QuantScheme, prefix: str = "") -> QuantCodes:
    """The QuantCodes stored in (checked) buffers; inverse of code_arrays."""
    zp = arrays.get(prefix + "zero_points")
    return QuantCodes(
        CodeBits.of(attr).decode(arrays[prefix + "values"]),
        arrays[prefix + "scales"],
        None if zp is None else zp.astype(np.int32),
        arrays.get(prefix + "offsets"),
    )


def _first(bad: Array) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def check_scales(scales: Array, role: str) -> None:
    """ValueError at the first scale that is not a finite non-negative number."""
    bad = ~np.isfinite(scales) | (scales < 0)
    if bad.any():
        at = _first(bad)
        raise ValueError(f"{role}{list(at)} = {scales[at]} is not a finite non-negative number")


def check_codes(arrays: dict[str, Array], attr: QuantScheme, prefix: str = "") -> None:
    """Scales finite and >= 0, zero points below 2^b, and symmetric codes in -qmax..qmax:
    the most negative b-bit pattern (-2^(b-1)) is never produced (int7's bytes: none
    outside -63..63), and for ternary (0b10)
    and symmetric int2 it is not a level at all; kernels may rely on its absence."""
    code = CodeBits.of(attr)
    check_scales(arrays[prefix + "scales"], prefix + "scales")
    if (offsets := arrays.get(prefix + "offsets")) is not None and (bad := ~np.isfinite(offsets)).any():
        at = _first(bad)
        raise ValueError(f"{prefix}offsets{list(at)} = {offsets[at]} is not a finite number")
    zp = arrays.get(prefix + "zero_points")
    if zp is not None and (bad := zp >= code.levels).any():
        at = _first(bad)
        raise ValueError(f"{prefix}zero_points{list(at)} = {zp[at]} is out of range [0, {code.levels - 1}]")
    if code.sign is Sign.TWOS:
        codes = code.decode(arrays[prefix + "values"])
        if (bad := (codes < -code.qmax) | (codes > code.qmax)).any():
            r, k = _first(bad)
            raise ValueError(
                f"{prefix}values: the code of row {r}, column {k} is {codes[r, k]} "
                f"(0b{codes[r, k] & (code.levels - 1):0{code.bits}b}), outside -{code.qmax}..{code.qmax}"
            )


@dataclass(frozen=True)
class UniformCodec(Codec):
    """An [R, K] matrix in a `#quant.uniform` layout."""

    attr: QuantScheme
    shape: tuple[int, int]

    @property
    def code(self) -> CodeBits:
        return CodeBits.of(self.attr)

    def encode(self, w: Array, grid: Grid | None = None) -> dict[str, Array]:
        """The buffers of w, quantized on `grid` if given (see quantize)."""
        return code_arrays(quantize(w, self.attr, grid), self.attr)

    def decode(self, arrays: dict[str, Array]) -> Array:
        return dequantize_codes(codes_from(arrays, self.attr), self.attr)

    def check(self, arrays: dict[str, Array]) -> None:
        check_codes(arrays, self.attr)

    def row_granule(self) -> int:
        return 1

    def cut_rows(self, arrays: dict[str, Array], start: int, stop: int) -> dict[str, Array]:
        return cut_leading(arrays, ["values", *scale_roles(self.attr, arrays)], self.shape[0], start, stop)


def scale_roles(attr: QuantScheme, arrays: dict[str, Array], prefix: str = "") -> list[str]:
    """The scale buffers (scales, zero points or a float zero's offsets) of `arrays` that hold
    the matrix's rows in order: per group or per row (per=channel, axis=0), not one per tensor
    or per column."""
    per_row = attr.per.data != "tensor" and not attr.per_column
    return [prefix + role for role in ("scales", "zero_points", "offsets") if per_row and prefix + role in arrays]


def uniform_codec(layout: QuantScheme, shape: Sequence[int]) -> UniformCodec:
    rows, width = shape
    return UniformCodec(layout, (rows, width))
