"""SQ-format's codec: a dense low-precision part plus a fixed count of high-precision elements per group.

The exact model (docs/formats.md, "SQ-format"): in each group of `group` consecutive
columns of a row, the `count` elements of largest |x| (ties: the lower position) are
the high part. The low part is `quantize(x with those positions zeroed, low)`; the
high part is `quantize(their values as an [R, slots] matrix, high)`, slots of group g
at [g * count, (g + 1) * count) in ascending position order. `high.index` holds each
high element's position within its group (INDEX_DTYPE). The value a kernel computes
with is dequantize_codes(low) + (the high part's dequantized values at their
positions, 0 elsewhere), one float32 addition per element.

The buffers are the low part's (`low.` roles) and the high part's (`high.` roles) as
stoicc_py.codec.uniform stores them, and `high.index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from xdsl.dialects.builtin import IntAttr

from stoicc_py.codec import Array, Codec
from stoicc_py.codec.uniform import (
    QuantCodes,
    QuantScheme,
    check_codes,
    code_arrays,
    codes_from,
    dequantize_codes,
    finite_matrix,
    quantize,
)

F32 = np.float32
INDEX_DTYPE = np.uint16
"""A high element's position within its group: one uint16 per slot."""
INDEX_BYTES = np.dtype(INDEX_DTYPE).itemsize
LOW, HIGH, INDEX = "low.", "high.", "high.index"
"""The role prefixes of the two parts, and the role of the positions."""


class SQScheme(Protocol):
    """What this codec reads of a `#quant.sq` attribute (dialects/quant.py's SQAttr)."""

    @property
    def low(self) -> QuantScheme: ...

    @property
    def high(self) -> QuantScheme: ...

    @property
    def group(self) -> IntAttr: ...

    @property
    def count(self) -> IntAttr: ...


@dataclass(frozen=True)
class SQCodes:
    """The SQ form of an [R, K] matrix: `low` codes [R, K] (with the high positions zeroed
    before quantizing), `high` codes [R, slots] and `index` (INDEX_DTYPE [R, slots], each high
    element's position within its group)."""

    low: QuantCodes
    high: QuantCodes
    index: Array


def columns(index: Array, group: int, count: int) -> Array:
    """Dense columns [R, slots] of the high slots: slot s belongs to group s // count."""
    group_of_slot = np.arange(index.shape[1]) // count
    return group_of_slot * group + index.astype(np.intp)


def high_positions(x: Array, group: int, count: int) -> Array:
    """Positions within their group [R, slots] of the `count` largest |x| of each group,
    ascending per group; ties go to the lower position (a stable sort of -|x|)."""
    grouped = x.reshape(-1, group)
    chosen = np.argsort(-np.abs(grouped), axis=1, kind="stable")[:, :count]
    return np.sort(chosen, axis=1).reshape(x.shape[0], -1)


def sq_quantize(x: Array, attr: SQScheme) -> SQCodes:
    """The SQ codes of the finite float32 matrix x [R, K], whose groups the layout divides."""
    x = finite_matrix(x, "sq")
    group, count = attr.group.data, attr.count.data
    index = high_positions(x, group, count)
    cols = columns(index, group, count)
    low = x.copy()
    np.put_along_axis(low, cols, F32(0), axis=1)
    high = np.take_along_axis(x, cols, axis=1)
    return SQCodes(quantize(low, attr.low), quantize(high, attr.high), index.astype(INDEX_DTYPE))


def sq_dequantize(codes: SQCodes, attr: SQScheme) -> Array:
    """The float32 [R, K] values: dequantized low plus the dequantized high values scattered
    to their positions (a float32 add of 0 elsewhere)."""
    high = np.zeros(codes.low.codes.shape, F32)
    cols = columns(codes.index, attr.group.data, attr.count.data)
    np.put_along_axis(high, cols, dequantize_codes(codes.high, attr.high), axis=1)
    return dequantize_codes(codes.low, attr.low) + high


def sq_arrays(codes: SQCodes, attr: SQScheme) -> dict[str, Array]:
    """The buffers (role -> array) of SQ codes."""
    return {**code_arrays(codes.low, attr.low, LOW), **code_arrays(codes.high, attr.high, HIGH), INDEX: codes.index}


def sq_codes(arrays: dict[str, Array], attr: SQScheme) -> SQCodes:
    """The SQCodes stored in (checked) buffers; inverse of sq_arrays."""
    return SQCodes(codes_from(arrays, attr.low, LOW), codes_from(arrays, attr.high, HIGH), arrays[INDEX])


def index_error(index: Array, group: int, count: int) -> str | None:
    """Why the first bad row of high.index is malformed: each group's positions must be below
    `group`, distinct and ascending (kernels and dequantize scatter through them)."""
    by_group = index.astype(np.int64).reshape(index.shape[0], -1, count)
    bad = (by_group >= group).any(axis=2) | (np.diff(by_group, axis=2) <= 0).any(axis=2)
    if not bad.any():
        return None
    r, g = (int(i) for i in np.argwhere(bad)[0])
    return (
        f"row {r}, group {g}: positions {by_group[r, g].tolist()} are not distinct, ascending "
        f"and below {group} ({int(bad.sum())} groups are malformed)"
    )


@dataclass(frozen=True)
class SQCodec(Codec):
    """An [R, K] matrix in a `#quant.sq` layout."""

    attr: SQScheme
    shape: tuple[int, int]

    def encode(self, w: Array) -> dict[str, Array]:
        return sq_arrays(sq_quantize(w, self.attr), self.attr)

    def decode(self, arrays: dict[str, Array]) -> Array:
        return sq_dequantize(sq_codes(arrays, self.attr), self.attr)

    def check(self, arrays: dict[str, Array]) -> None:
        check_codes(arrays, self.attr.low, LOW)
        check_codes(arrays, self.attr.high, HIGH)
        if error := index_error(arrays[INDEX], self.attr.group.data, self.attr.count.data):
            raise ValueError(f"{INDEX} of {error}")


def sq_codec(layout: SQScheme, shape: Sequence[int]) -> SQCodec:
    rows, width = shape
    return SQCodec(layout, (rows, width))
