"""The `quant` dialect: layouts that store values in fewer bits with scales.

One attribute, `#quant.uniform<...>`, covers every storage type (int8 down to
binary) and granularity (per tensor, channel, group or token); the metadata-layout
pass turns it into packed values plus scale and zero-point arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
    Float32Type,
    IntAttr,
    StringAttr,
    bf16,
    f16,
    f32,
    i8,
    i16,
    i32,
)
from xdsl.ir import Attribute, Dialect, TypeAttribute
from xdsl.irdl import irdl_attr_definition
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from stoicc_py.codec import register
from stoicc_py.codec.bitsplit import BitSplitCodec, bitsplit_codec
from stoicc_py.codec.sq import HIGH, INDEX, LOW, sq_codec
from stoicc_py.codec.uniform import STORAGE_BITS, VALUE_BITS, uniform_codec
from stoicc_py.dialects.layout import BufferAttr, Dim, QuantLayoutAttr, StorageAttr, buffer

GRANULARITIES = ("tensor", "channel", "group", "token")
SYMMETRIC_ONLY = ("ternary", "binary")


@irdl_attr_definition
class UniformQuantAttr(QuantLayoutAttr):
    """Uniform quantization: value = scale * (q - zero_point), or, with a float zero
    (`zero = float`, ggml's Q4_1 grid), value = scale * q + offset.

    `per` chooses where scales vary: one for the tensor, one per index of `axis`
    (channel), one per `group` consecutive elements of the last (reduction) axis,
    or one per row computed at run time (token, for activations).
    """

    name = "quant.uniform"

    codes: StringAttr
    per: StringAttr
    axis: IntAttr
    group: IntAttr
    symmetric: IntAttr
    scale: TypeAttribute
    zero: StringAttr
    """"int": an integer zero point (asymmetric) or none; "float": an offset per group in the scale type."""

    def __init__(
        self,
        codes: str,
        per: str = "tensor",
        axis: int = 0,
        group: int = 0,
        symmetric: bool = True,
        scale: TypeAttribute = f32,
        zero: str = "int",
    ) -> None:
        super().__init__(
            StringAttr(codes), StringAttr(per), IntAttr(axis), IntAttr(group), IntAttr(int(symmetric)), scale,
            StringAttr(zero),
        )  # fmt: skip

    @property
    def bits(self) -> int:
        return STORAGE_BITS[self.codes.data]

    @property
    def unit(self) -> int:
        """Codes that fill whole bytes (in every bit plane: stoicc_py.codec.uniform.CodeBits);
        a row's width is a multiple of it."""
        return 8 // math.gcd(self.bits, 8)

    def row_bytes(self, width: int) -> int:
        return width * self.bits // 8

    @property
    def scales_per(self) -> str:
        if self.float_offset:  # a sparse layout's padding slots must decode to 0, which this grid may not hold
            raise VerifyException(f"{self.summary()} does not compose with a sparse layout: its grid need not "
                                  "hold 0 (use symmetric=false, an integer zero point)")  # fmt: skip
        return self.per.data

    @property
    def per_column(self) -> bool:
        """One scale per column (per=channel, axis=1): groups of one element of a row."""
        return self.per.data == "channel" and self.axis.data == 1

    def regrouped(self, group: int) -> UniformQuantAttr:
        """This layout with groups of `group` elements (a ragged last group's layout)."""
        return UniformQuantAttr(self.codes.data, "group", 0, group, self.is_symmetric, self.scale, self.zero.data)

    @property
    def is_symmetric(self) -> bool:
        return bool(self.symmetric.data)

    @property
    def float_offset(self) -> bool:
        """value = scale * code + offset, the offset a float per group (`zero = float`)."""
        return self.zero.data == "float"

    def width_unit(self) -> int:
        """Under a sparse layout, stored rows hold whole groups (no ragged last group) of whole bytes."""
        return math.lcm(self.group.data or 1, self.unit)

    def group_size(self, width: int) -> int:
        """How many consecutive elements of a row share one scale."""
        per = self.per.data
        if per == "group":
            return self.group.data
        if self.per_column:
            return 1
        return width

    def scale_shape(self, shape: Sequence[int]) -> list[int]:
        rows, width = shape
        return {
            "tensor": [1],
            "channel": [shape[self.axis.data]],
            "group": [rows, -(-width // max(self.group.data, 1))],
            "token": [rows],
        }[self.per.data]

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        """Codes packed in `bits * width / 8` bytes a row (stoicc_py.codec.uniform has the bits);
        scales (and zero points, when asymmetric) in the granularity's shape, the last
        group of a row holding the remainder. A leading dim may be DYNAMIC_INDEX
        (activations quantized at run time)."""
        rows, width = shape
        scales = self.scale_shape(shape)
        buffers = [
            buffer("values", [rows, self.row_bytes(width)], i8, "values", unsigned=not self.is_symmetric),
            buffer("scales", scales, self.scale, "scales"),
        ]
        params = {"bits": self.bits, "group": self.group_size(width), "symmetric": int(self.is_symmetric)}
        if self.float_offset:
            buffers.append(buffer("offsets", scales, self.scale, "scales"))
            params["float_offset"] = 1
        elif not self.is_symmetric:
            buffers.append(buffer("zero_points", scales, i8, "scales", unsigned=True))
        return StorageAttr(buffers, params)

    def verify(self) -> None:
        storage, per = self.codes.data, self.per.data
        if storage not in STORAGE_BITS:
            raise VerifyException(f"quant: unknown storage type '{storage}' (expected {', '.join(STORAGE_BITS)})")
        if per not in GRANULARITIES:
            raise VerifyException(f"quant: unknown granularity per={per} (expected {', '.join(GRANULARITIES)})")
        if per == "group" and self.group.data <= 0:
            raise VerifyException(f"quant: {storage} group size must be positive, got group={self.group.data}")
        if per != "group" and self.group.data != 0:
            raise VerifyException(f"quant: group={self.group.data} needs per=group, got per={per}")
        if self.axis.data < 0:
            raise VerifyException(f"quant: axis must be non-negative, got {self.axis.data}")
        if storage in VALUE_BITS and (per != "token" or not self.symmetric.data or self.scale != f32):
            raise VerifyException(f"quant: {storage} codes are activations quantized at run time, one f32 scale per "
                                  f"row: {storage}(per=token) only")  # fmt: skip
        if storage in SYMMETRIC_ONLY and not self.symmetric.data:
            raise VerifyException(f"quant: {storage} is symmetric only")
        if not isinstance(self.scale, Float32Type | Float16Type | BFloat16Type):
            raise VerifyException(f"quant: scale must be f32, bf16 or f16, got {self.scale}")
        if self.zero.data not in ("int", "float"):
            raise VerifyException(f"quant: zero must be int or float, got zero={self.zero.data}")
        if self.float_offset and self.symmetric.data:
            raise VerifyException(f"quant: {storage} with zero=float is asymmetric (symmetric=false)")
        if self.float_offset and per == "token":
            raise VerifyException("quant: zero=float is a weight grid, not per token (activations)")

    def verify_for(self, shape: Sequence[Dim], kind: str) -> None:
        if len(shape) != 2:
            raise VerifyException(f"quant: {self.summary()} needs a rank-2 tensor, got rank {len(shape)}")
        width = shape[-1]
        if isinstance(width, int) and width % self.unit:
            raise VerifyException(
                f"quant: {self.codes.data} packs {self.unit} codes in whole bytes, which must divide the "
                f"last dimension of size {width}"
            )
        if self.axis.data >= len(shape):
            raise VerifyException(f"quant: axis={self.axis.data} is out of range for a rank-{len(shape)} tensor")

    def summary(self) -> str:
        opts = {
            "tensor": [],
            "channel": [f"axis={self.axis.data}"],
            "group": [f"group={self.group.data}"],
            "token": ["per=token"],
        }[self.per.data]
        if self.float_offset:
            opts.append("zero=float")
        elif not self.symmetric.data:
            opts.append("symmetric=false")
        if self.scale in (f16, bf16):
            opts.append(f"scale={self.scale}")
        return f"{self.codes.data}({', '.join(opts)})"

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            storage = parser.parse_identifier()
            fields: dict[str, Attribute] = {}
            while parser.parse_optional_punctuation(","):
                key = parser.parse_identifier()
                parser.parse_punctuation("=")
                if key in ("per", "zero"):
                    fields[key] = StringAttr(parser.parse_identifier())
                elif key in ("axis", "group", "symmetric"):
                    fields[key] = IntAttr(parser.parse_integer())
                elif key == "scale":
                    fields[key] = parser.parse_type()
                else:
                    parser.raise_error(f"unknown quant.uniform field '{key}'")
        return (
            StringAttr(storage),
            fields.get("per", StringAttr("tensor")),
            fields.get("axis", IntAttr(0)),
            fields.get("group", IntAttr(0)),
            fields.get("symmetric", IntAttr(1)),
            fields.get("scale", f32),
            fields.get("zero", StringAttr("int")),
        )

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(
            f"<{self.codes.data}, per = {self.per.data}, axis = {self.axis.data}, group = {self.group.data}, "
            f"symmetric = {self.symmetric.data}, scale = "
        )
        printer.print_attribute(self.scale)
        printer.print_string(", zero = float>" if self.float_offset else ">")


@irdl_attr_definition
class SQAttr(QuantLayoutAttr):
    """SQ-format: a dense low-precision part plus a sparse high-precision part.

    In every group of `group` consecutive elements of a row, the `count` largest
    magnitudes form the high part (int8 codes, one scale per row, their positions
    in the group as u16); the rest, with those positions zeroed, is quantized with
    `low`. A value is low + high; the count per group is fixed so that hardware can
    schedule it.
    """

    name = "quant.sq"

    low: UniformQuantAttr
    high: UniformQuantAttr
    group: IntAttr
    count: IntAttr

    def __init__(self, low: UniformQuantAttr, high: UniformQuantAttr, group: int, count: int):
        super().__init__(low, high, IntAttr(group), IntAttr(count))

    def verify(self) -> None:
        if self.low.float_offset:
            raise VerifyException(f"sq: low {self.low.summary()}: a float zero is not supported in sq (use symmetric=false)")
        if self.low.codes.data in VALUE_BITS:
            raise VerifyException(f"sq: low {self.low.summary()}: {self.low.codes.data} is a product's activation code, "
                                  "not an SQ part (use int8)")  # fmt: skip
        if self.high.codes.data != "int8" or self.high.per.data not in ("tensor", "channel") or self.high.axis.data:
            raise VerifyException(f"sq: high must be int8 per tensor or per row (axis=0), got {self.high.summary()}")
        if not 0 < self.count.data <= self.group.data:
            raise VerifyException(f"sq: {self.count.data} high-precision elements per group of {self.group.data}")
        if self.group.data > 65536:
            raise VerifyException("sq: groups of at most 65536 elements (positions are u16)")

    def verify_for(self, shape: Sequence[Dim], kind: str) -> None:
        self.low.verify_for(shape, kind)
        width = shape[-1]
        if isinstance(width, int) and width % self.low.width_unit():
            raise VerifyException(f"sq: the low part's groups ({self.low.summary()}) must divide the reduction "
                                  f"dimension of size {width}")  # fmt: skip
        if isinstance(width, int) and width % self.group.data:
            raise VerifyException(
                f"sq: group={self.group.data} does not divide the reduction dimension of size {width}"
            )

    @property
    def density(self) -> float:
        return self.count.data / self.group.data

    def summary(self) -> str:
        return (f"sq(low={self.low.summary()}, high={self.high.summary()}, group={self.group.data}, "
                f"count={self.count.data})")  # fmt: skip

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        rows, width = shape
        low = self.low.storage(shape, element)
        slots = width // self.group.data * self.count.data
        buffers = [BufferAttr(LOW + b.role.data, b.type, b.kind.data, b.is_unsigned) for b in low.buffers.data]
        buffers += [
            buffer(HIGH + "values", [rows, slots], i8, "values"),
            buffer(INDEX, [rows, slots], i16, "metadata", unsigned=True),  # codec.sq.INDEX_DTYPE
            buffer(HIGH + "scales", self.high.scale_shape([rows, slots]), self.high.scale, "scales"),
        ]
        params = {**{LOW + k: low.param(k) for k in low.params.data}, "group": self.group.data,
                  "count": self.count.data, "slots": slots}  # fmt: skip
        return StorageAttr(buffers, params)


@irdl_attr_definition
class BitSplitAttr(QuantLayoutAttr):
    """SPARQLe-style activations: int8 codes per token split into a dense tensor of
    low nibbles and a sparse tensor of high nibbles with a precision bitmap; with
    `offset`, a per-row shift of the codes that makes most high nibbles zero."""

    name = "quant.bitsplit"

    low_bits: IntAttr
    offset: IntAttr

    def __init__(self, low_bits: int = 4, offset: bool = False):
        super().__init__(IntAttr(low_bits), IntAttr(int(offset)))

    def verify(self) -> None:
        if self.low_bits.data != 4:
            raise VerifyException(f"bitsplit: low_bits must be 4 (two 4-bit passes), got {self.low_bits.data}")

    def verify_for(self, shape: Sequence[Dim], kind: str) -> None:
        if len(shape) != 2:
            raise VerifyException(f"bitsplit needs a rank-2 tensor, got rank {len(shape)}")
        width = shape[-1]
        if isinstance(width, int) and width % 8:
            raise VerifyException(f"bitsplit: the last dimension ({width}) must be a multiple of 8 (bitmap bytes)")

    def summary(self) -> str:
        return f"bitsplit(int8, low_bits={self.low_bits.data}{', offset=true' if self.offset.data else ''})"

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        rows, width = shape
        buffers = [
            buffer("lo", [rows, width // 2], i8, "values", unsigned=True),
            buffer("hi", [rows, width // 2], i8, "values"),
            buffer("bitmap", [rows, width // 8], i8, "metadata", unsigned=True),
            buffer("counts", [rows], i32, "table"),
            buffer("scales", [rows], f32, "scales"),
        ]
        if self.offset.data:
            buffers.append(buffer("offsets", [rows], i32, "scales"))
        return StorageAttr(buffers, {"low_bits": self.low_bits.data, "offset": self.offset.data})


Quant = Dialect("quant", [], [UniformQuantAttr, SQAttr, BitSplitAttr])

register(UniformQuantAttr)(uniform_codec)
register(SQAttr)(sq_codec)

TOKEN_INT8 = UniformQuantAttr("int8", "token")
"""The codes that bit-split activations split: int8, symmetric, one scale per row."""


@register(BitSplitAttr)
def _bitsplit_codec(layout: BitSplitAttr, shape: Sequence[int]) -> BitSplitCodec:
    return bitsplit_codec(bool(layout.offset.data), TOKEN_INT8, shape)
