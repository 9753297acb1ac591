"""The IR-side decoder of uniform quantization's codes: the one place where generated code
reads the bits that stoicc_py.codec.uniform.CodeBits defines (bit planes of LSB-first fields;
two's complement, binary's +-1, or unsigned codes).

Forms: `CodeDecoder.scalar` (one code as i32: the loop nests of quant_loops, the scalar
tails), `CodeDecoder.in_order` (`width` consecutive codes as i32 lanes: the sparse
vectoriser's stored values), `CodeDecoder.offset_bytes` (consecutive codes of any plane
layout as unsigned bytes, q + 2^(b-1) or the asymmetric code: the integer dot products) and `VectorCodes` (a plane's fields in place, as exact
f32 lanes, without shifts: tdsl-vectorize-quant, docs in that pass).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import arith, llvm, vector
from xdsl.dialects.builtin import (
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    IntegerAttr,
    IntegerType,
    VectorType,
    f32,
    i8,
    i32,
    i64,
)
from xdsl.ir import SSAValue

from stoicc_py.codec.uniform import CodeBits, Plane, Sign
from stoicc_py.codegen.loop_builder import LoopBuilder

MAGIC = float(1 << 23)
MAGIC_BITS = 0x4B000000
"""The bits of the f32 MAGIC = 2^23: OR-ed with an integer below 2^23, they make the
float 2^23 + that integer, exactly. An integer-to-float conversion in one bitwise op
(which LLVM fuses with the field's mask into one vpternlogd on AVX-512), whose 2^23
the subtraction of the code's offset absorbs."""


def _int(b: LoopBuilder, value: int, type: IntegerType = i32) -> SSAValue:
    return b.insert(arith.ConstantOp(IntegerAttr(value, type)))


def _lanes(v: SSAValue) -> int:
    return v.type.get_shape()[0]  # type: ignore[attr-defined]


def concatenated(b: LoopBuilder, parts: list[SSAValue]) -> SSAValue:
    """Vectors of one type, a power-of-two count of them, one after another in one vector."""
    while len(parts) > 1:
        kind = parts[0].type
        assert isinstance(kind, VectorType)
        wide = VectorType(kind.element_type, [2 * _lanes(parts[0])])
        parts = [b.insert(vector.ShuffleOp(u, v, DenseArrayBase.from_list(i64, list(range(2 * _lanes(u)))),
                                           result_type=wide))
                 for u, v in zip(parts[::2], parts[1::2])]  # fmt: skip
    return parts[0]


def _lane_const(b: LoopBuilder, type: VectorType, bits: int, width: int) -> SSAValue:
    """A splat of the unsigned `width`-bit pattern `bits`, as the lanes' signed integer."""
    return b.splat(type, bits - (1 << width) if bits >> (width - 1) else bits)


@dataclass(frozen=True)
class CodeDecoder:
    """Reads the codes of rows of `width` codes stored as `code` says."""

    code: CodeBits
    width: int | SSAValue
    """Codes per row; a value where only the run time knows it (the scalar forms read it)."""

    @property
    def static_width(self) -> int:
        """The width of the vector forms, which only static dims reach."""
        assert isinstance(self.width, int), "a run-time width reaches only the scalar form"
        return self.width

    def _start(self, b: LoopBuilder, plane: Plane) -> int | SSAValue:
        """Where `plane` starts in a row (plane.start, at run time for a run-time width)."""
        if isinstance(self.width, int) or not plane.shift:
            return plane.start(self.width) if isinstance(self.width, int) else 0
        return b.div(b.mul(self.width, b.index(plane.shift)), b.index(8))

    def _field(self, b: LoopBuilder, values: SSAValue, lead: list[SSAValue], k: SSAValue, plane: Plane) -> SSAValue:
        """Plane `plane`'s unsigned field of code k, as i32, in place (not shifted up)."""
        shift = b.insert(arith.IndexCastOp(b.mul(b.rem(k, b.index(plane.per_byte)), b.index(plane.bits)), i32))
        at = b.div(k, b.index(plane.per_byte))
        start = self._start(b, plane)
        byte = b.load(values, [*lead, b.add(at, b.index(start)) if isinstance(start, SSAValue) or start else at])
        field = b.insert(arith.ShRUIOp(b.insert(arith.ExtUIOp(byte, i32)), shift))
        return b.insert(arith.AndIOp(field, _int(b, plane.mask)))

    def scalar(self, b: LoopBuilder, values: SSAValue, lead: list[SSAValue], k: SSAValue) -> SSAValue:
        """Code k of row `lead` as i32: q, or the unsigned code (the caller subtracts the zero point)."""
        code = self.code
        if code.bits == 8:  # one code per byte: the byte's own extension
            byte = b.load(values, [*lead, k])
            return b.insert(arith.ExtUIOp(byte, i32) if code.sign is Sign.UNSIGNED else arith.ExtSIOp(byte, i32))
        field = None
        for plane in code.planes:
            part = self._field(b, values, lead, k, plane)
            if plane.shift:
                part = b.insert(arith.ShLIOp(part, _int(b, plane.shift)))
            field = part if field is None else b.insert(arith.OrIOp(field, part))
        assert field is not None
        if code.sign is Sign.PLUS_MINUS_ONE:  # bit 1 is +1, bit 0 is -1
            return b.insert(arith.SubiOp(b.insert(arith.MuliOp(field, _int(b, 2))), _int(b, 1)))
        if code.sign is Sign.UNSIGNED:
            return field
        # Two's complement in `bits` bits: shift the sign bit to bit 31 and back.
        up = _int(b, 32 - code.bits)
        return b.insert(arith.ShRSIOp(b.insert(arith.ShLIOp(field, up)), up))

    def in_order(self, b: LoopBuilder, values: SSAValue, row: SSAValue, k: SSAValue, width: int) -> SSAValue:
        """Codes k .. k+width of a row of symmetric int8 or int4 as i32 lanes (k a multiple of
        `width`): int4 bytes are duplicated, then each lane sign-extends its nibble."""
        lanes = VectorType(i32, [width])
        if self.code.bits == 8:
            return b.insert(llvm.SExtOp(b.insert(vector.LoadOp(values, [row, k], VectorType(i8, [width]))), lanes))
        assert self.code.bits == 4 and self.code.sign is Sign.TWOS
        half = b.insert(vector.LoadOp(values, [row, b.div(k, b.index(2))], VectorType(i8, [width // 2])))
        mask = DenseArrayBase.from_list(i64, [j // 2 for j in range(width)])
        q = b.insert(llvm.SExtOp(b.insert(vector.ShuffleOp(half, half, mask, result_type=VectorType(i8, [width]))),
                                 lanes))  # fmt: skip

        def const(values: list[int]) -> SSAValue:
            return b.insert(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(lanes, values)))

        return b.insert(arith.ShRSIOp(b.insert(arith.ShLIOp(q, const([28 - 4 * (j % 2) for j in range(width)]))),
                                      const([28])))  # fmt: skip

    def offset_bytes(self, b: LoopBuilder, values: SSAValue, n: SSAValue, k: SSAValue, count: int) -> SSAValue:
        """Codes k .. k+count of row n as unsigned bytes u in k order (count a multiple of
        `code.unit`): q + 2^(b-1) for two's complement codes (a flip of each code's sign
        bit), the code itself when unsigned. Each plane's fields move to their bits of a
        byte (`_plane_bytes`); the planes are OR-ed, the top one carrying the flip."""
        code = self.code
        assert code.sign is not Sign.PLUS_MINUS_ONE and count % code.unit == 0
        u = None
        for plane in code.planes:
            flip = code.sign is Sign.TWOS and plane.shift + plane.bits == code.bits
            part = self._plane_bytes(b, values, n, k, count, plane, code.sign_bit if flip else 0)
            u = part if u is None else b.insert(arith.OrIOp(u, part))
        assert u is not None
        return u

    @property
    def phases(self) -> int:
        """P, the fields a byte holds, for one plane of P > 1 fields of two's complement or
        unsigned codes (int4: 2; int2, ternary: 4), which `field_phases` reads; else 0."""
        planes = self.code.planes
        one = len(planes) == 1 and self.code.sign is not Sign.PLUS_MINUS_ONE
        return planes[0].per_byte if one and planes[0].per_byte > 1 else 0

    def field_phases(self, b: LoopBuilder, values: SSAValue, rows: list[SSAValue], k: SSAValue,
                     count: int) -> list[SSAValue]:  # fmt: skip
        """Codes k .. k+count of `rows` (P = `phases` of them, or as many as a caller packs
        to a vector) as unsigned bytes (offset_bytes' u), split by phase: vector j (of
        count/P bytes a row) holds, in a part per row, each row's codes k+j, k+j+P, ...
        The rows' bytes are concatenated and field j is shifted down and
        masked in place: a shift and a mask per field, where offset_bytes widens the bytes
        and moves every field; the activations are permuted to match instead, once per
        step for every P rows (their bytes at the same phases)."""
        per, plane = self.phases, self.code.planes[0]
        assert count % (4 * per) == 0
        at = b.div(k, b.index(per))
        both = concatenated(b, [b.insert(vector.LoadOp(values, [n, at], VectorType(i8, [count // per]))) for n in rows])
        if self.code.sign is Sign.TWOS:  # q + 2^(b-1): each field's sign bit flipped
            flip = sum(self.code.sign_bit << (plane.bits * j) for j in range(per))
            both = b.insert(arith.XOrIOp(both, _lane_const(b, both.type, flip, 8)))  # type: ignore[arg-type]
        mask = b.splat(both.type, plane.mask)  # type: ignore[arg-type]
        return [b.insert(arith.AndIOp(b.insert(arith.ShRUIOp(both, b.splat(both.type, plane.bits * j)))  # type: ignore[arg-type]
                                      if j else both, mask)) for j in range(per)]  # fmt: skip

    def _plane_bytes(self, b: LoopBuilder, values: SSAValue, n: SSAValue, k: SSAValue, count: int,
                     plane: Plane, flip: int) -> SSAValue:  # fmt: skip
        """Plane `plane`'s fields of codes k .. k+count, each at its bits of the code, one
        code per byte, XOR-ed with `flip`: a byte of P fields is widened to a lane of P
        bytes (i16 for int4 nibbles, i32, i64) in which field j moves to byte j, so that
        the lane, as bytes, is the fields in k order."""
        per_byte = plane.per_byte
        start = plane.start(self.static_width)
        at = b.div(k, b.index(per_byte))
        raw = b.insert(vector.LoadOp(values, [n, b.offset(at, start)],
                                     VectorType(i8, [count // per_byte])))  # fmt: skip
        lanes = VectorType(IntegerType(8 * per_byte), [count // per_byte])
        wide = raw if per_byte == 1 else b.insert(llvm.ZExtOp(raw, lanes))
        fields = None
        for j in range(per_byte if per_byte > 1 else 0):
            up = (8 - plane.bits) * j + plane.shift
            moved = b.insert(arith.ShLIOp(wide, b.splat(lanes, up))) if up else wide
            part = b.insert(arith.AndIOp(moved, _lane_const(b, lanes, plane.mask << (8 * j + plane.shift), 8 * per_byte)))
            fields = part if fields is None else b.insert(arith.OrIOp(fields, part))
        out = fields or wide
        if flip:  # the sign bit of every code in the lane
            out = b.insert(arith.XOrIOp(out, _lane_const(b, lanes, sum(flip << 8 * j for j in range(per_byte)), 8 * per_byte)))
        return out if per_byte == 1 else b.insert(vector.BitcastOp(out, VectorType(i8, [count])))

    def planes(self, width: int) -> list[VectorCodes]:
        """The vector decoders of each bit plane, `width` i32 lanes a load."""
        return [VectorCodes(self.code, p, width, p.start(self.static_width)) for p in self.code.planes]


@dataclass(frozen=True)
class VectorCodes:
    """How `width` bytes of one bit plane, widened to i32 lanes, give its fields one by one.

    Lane t of a chunk holds fields P*t .. P*t + P-1 (P to a byte). Field j is masked in
    place, so it is u * 2^(b*j) for the field's unsigned value u; the x columns it meets
    are scaled by 2^(shift - b*j) beforehand (exactly: a power of two), so no field needs
    a shift and the planes of a code add up to its unsigned value. The code is
    q = u - base: two's complement fields have the sign bits of their top plane flipped
    (u = q + 2^(b-1)), asymmetric fields are q + zero point, a binary bit is read doubled
    (u = q + 1); `base` is subtracted once, in the low plane. Every field is exact: no
    offset is left for sums of x to cancel."""

    code: CodeBits
    plane: Plane
    width: int
    start: int
    """Where the plane's bytes start in a row."""

    @property
    def bits(self) -> int:
        return self.plane.bits

    @property
    def per_byte(self) -> int:
        return self.plane.per_byte

    @property
    def chunk(self) -> int:
        """Codes per chunk: the columns of x that one load of the plane's bytes covers."""
        return self.per_byte * self.width

    @property
    def lanes(self) -> VectorType:
        return VectorType(i32, [self.width])

    @property
    def vec(self) -> VectorType:
        return VectorType(f32, [self.width])

    @property
    def binary(self) -> bool:
        return self.code.sign is Sign.PLUS_MINUS_ONE

    @property
    def direct(self) -> bool:
        """Whether the sign-extended bytes are the codes (symmetric int8)."""
        return self.code.sign is Sign.TWOS and self.code.bits == 8

    @property
    def base(self) -> int | None:
        """u - q for every field of this plane; None: the group's zero point."""
        if self.plane.shift:
            return 0
        if self.code.sign is Sign.UNSIGNED:
            return None
        return 1 if self.binary else self.code.sign_bit

    @property
    def flips_sign(self) -> bool:
        """Two's complement codes whose sign bits are in this plane (its top bit)."""
        top = self.plane.shift + self.plane.bits == self.code.bits
        return self.code.sign is Sign.TWOS and top and not self.direct

    @property
    def field_bits(self) -> int:
        """Field 0's bits in a lane: a binary bit is read doubled (the word is shifted
        left once per load), so that u = 2 * bit = q + 1."""
        return self.plane.mask << self.binary

    def x_scale(self, j: int) -> float:
        """What x's columns of field j are multiplied by: 2^(shift - b*j)."""
        return 2.0 ** (self.plane.shift - self.bits * j)

    def load(self, b: LoopBuilder, values: SSAValue, n: SSAValue, k: SSAValue) -> SSAValue:
        """The plane's bytes of codes k .. k+chunk of row n, one per i32 lane."""
        raw_type = VectorType(i8, [self.width])
        at = b.div(k, b.index(self.per_byte))
        raw = b.insert(vector.LoadOp(values, [n, b.offset(at, self.start)], raw_type))
        if self.flips_sign:  # once per byte, not per field
            sign_bits = sum(1 << (self.bits * (j + 1) - 1) for j in range(self.per_byte))
            raw = b.insert(arith.XOrIOp(raw, b.splat(raw_type, sign_bits - 256)))
        # xDSL's arith.extsi/extui take scalars only; LLVM's casts take vectors.
        if self.direct:
            return b.insert(llvm.SExtOp(raw, self.lanes))
        word = b.insert(llvm.ZExtOp(raw, self.lanes))
        return b.insert(arith.ShLIOp(word, b.splat(self.lanes, 1))) if self.binary else word

    def phase(self, b: LoopBuilder, j: SSAValue) -> tuple[SSAValue | None, SSAValue]:
        """Field j's bits in every lane (None when a byte is one code), and 2^(b*j) as
        f32 lanes."""
        if self.per_byte == 1:
            return None, b.splat(self.vec, 1.0)
        shift = b.insert(arith.IndexCastOp(b.mul(j, b.index(self.bits)), i32))
        shifts = b.insert(vector.BroadcastOp(shift, self.lanes))
        mask = b.insert(arith.ShLIOp(b.splat(self.lanes, self.field_bits), shifts))
        unit = b.insert(llvm.SIToFPOp(b.insert(arith.ShLIOp(b.splat(self.lanes, 1), shifts)), self.vec))
        return mask, unit

    def constant_phase(self, b: LoopBuilder, j: int) -> tuple[SSAValue | None, SSAValue]:
        """`phase` for a field known at compile time: constants."""
        if self.per_byte == 1:
            return None, b.splat(self.vec, 1.0)
        return _lane_const(b, self.lanes, self.field_bits << (self.bits * j), 32), b.splat(self.vec, float(1 << (self.bits * j)))

    def bias(self, b: LoopBuilder, base: SSAValue | None, unit: SSAValue) -> SSAValue:
        """2^23 + base * 2^(b*j): what 2^23 + field j exceeds q * 2^(b*j) by (an integer
        below 2^24, so exact); 2^23 for a plane above the low one (base None)."""
        if base is None:
            return b.splat(self.vec, MAGIC)
        return b.insert(vector.FMAOp(base, unit, b.splat(self.vec, MAGIC)))

    def field(self, b: LoopBuilder, word: SSAValue, mask: SSAValue | None, bias: SSAValue) -> SSAValue:
        """q * 2^(b*j) for the codes P*t + j of the chunk, as f32 lanes."""
        if self.direct:
            return b.insert(llvm.SIToFPOp(word, self.vec))
        if mask is not None:
            word = b.insert(arith.AndIOp(word, mask))
        magic = b.insert(arith.OrIOp(word, b.splat(self.lanes, MAGIC_BITS)))
        return b.insert(arith.SubfOp(b.insert(vector.BitcastOp(magic, self.vec)), bias))
