"""SQ-format: a dense low-precision part plus a fixed count of high-precision elements per group.

The exact model (docs/formats.md, "SQ-format"): in each group of `group` consecutive
columns of a row, the `count` elements of largest |x| (ties: the lower position) are
the high part. The low part is `quantize(x with those positions zeroed, low)`; the
high part is `quantize(their values as an [R, slots] matrix, high)`, slots of group g
at [g * count, (g + 1) * count) in ascending position order. The value a kernel
computes with is dequantize_codes(low) + (the high part's dequantized values at
their positions, 0 elsewhere), one float32 addition per element.

`sq_split` is the offline (weight) form and `sq_quantize` the same split of
activations at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stoicc_py.codec.uniform import (
    QuantCodes,
    check_codes,
    code_arrays,
    codes_from,
    dequantize_codes,
    finite_matrix,
    quantize,
)
from stoicc_py.dialects.layout import LayoutAttr, StorageAttr
from stoicc_py.dialects.quant import SQAttr
from stoicc_py.packing.common import Array, Format, Options, Shape, checked_shape, layout_as

F32 = np.float32


@dataclass(frozen=True)
class SQCodes:
    """The SQ form of an [R, K] matrix: `low` codes [R, K] (with the high positions zeroed
    before quantizing), `high` codes [R, slots] and `index` (uint16 [R, slots], each high
    element's position within its group)."""

    low: QuantCodes
    high: QuantCodes
    index: Array


def _attr(layout: LayoutAttr | str) -> SQAttr:
    return layout_as(layout, SQAttr, "an sq(...) layout")


def _checked_attr(layout: SQAttr | str, x: Array) -> SQAttr:
    attr = _attr(layout)
    checked_shape(attr, x.shape)  # groups (SQ's and low's) divide the columns
    return attr


def high_positions(x: Array, attr: SQAttr) -> Array:
    """Positions within their group [R, slots] of the `count` largest |x| of each group,
    ascending per group; ties go to the lower position (a stable sort of -|x|)."""
    group, count = attr.group.data, attr.count.data
    grouped = x.reshape(-1, group)
    chosen = np.argsort(-np.abs(grouped), axis=1, kind="stable")[:, :count]
    return np.sort(chosen, axis=1).reshape(x.shape[0], -1)


def _columns(index: Array, attr: SQAttr) -> Array:
    """Dense columns [R, slots] of the high slots: slot s belongs to group s // count."""
    group_of_slot = np.arange(index.shape[1]) // attr.count.data
    return group_of_slot * attr.group.data + index.astype(np.intp)


def sq_quantize(x: Array, layout: SQAttr | str) -> SQCodes:
    """The SQ codes of the float32 matrix x [R, K] (see the module docstring)."""
    x = finite_matrix(x, "sq")
    attr = _checked_attr(layout, x)
    index = high_positions(x, attr)
    cols = _columns(index, attr)
    low = x.copy()
    np.put_along_axis(low, cols, F32(0), axis=1)
    high = np.take_along_axis(x, cols, axis=1)
    return SQCodes(quantize(low, attr.low), quantize(high, attr.high), index.astype(np.uint16))


def sq_split(w: Array, layout: SQAttr | str) -> tuple[QuantCodes, QuantCodes, Array]:
    """(low codes, high codes, uint16 index) of the float32 weight w: sq_quantize as a tuple."""
    codes = sq_quantize(w, layout)
    return codes.low, codes.high, codes.index


def sq_dequantize(codes: SQCodes, layout: SQAttr | str) -> Array:
    """The float32 [R, K] values: dequantized low plus the dequantized high values scattered
    to their positions (a float32 add of 0 elsewhere)."""
    attr = _attr(layout)
    high = np.zeros(codes.low.codes.shape, F32)
    np.put_along_axis(high, _columns(codes.index, attr), dequantize_codes(codes.high, attr.high), axis=1)
    return dequantize_codes(codes.low, attr.low) + high


def fake_sq(x: Array, layout: SQAttr | str) -> Array:
    """sq_dequantize(sq_quantize(x)): x rounded to the values SQ stores."""
    return sq_dequantize(sq_quantize(x, layout), layout)


# ---------------------------------------------------------------------------- the format


def _pack(w: Array, layout: SQAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    if opts.prune:
        raise ValueError(f"prune= applies to sparse layouts, not {layout.summary()}")
    codes = sq_quantize(w, layout)
    return {
        **code_arrays(codes.low, layout.low, "low."),
        **code_arrays(codes.high, layout.high, "high."),
        "high.index": codes.index,
    }


def codes_of_sq(arrays: dict[str, Array], attr: SQAttr) -> SQCodes:
    """The SQCodes stored in the (checked) buffers of an SQ packed tensor."""
    return SQCodes(codes_from(arrays, attr.low, "low."), codes_from(arrays, attr.high, "high."), arrays["high.index"])


def _unpack(layout: SQAttr, shape: Shape, arrays: dict[str, Array]) -> Array:
    return sq_dequantize(codes_of_sq(arrays, layout), layout)


def _index_error(index: Array, attr: SQAttr) -> str | None:
    """Why the first bad row of high.index is malformed: each group's positions must be below
    `group`, distinct and ascending (kernels and dequantize scatter through them)."""
    group, count = attr.group.data, attr.count.data
    by_group = index.astype(np.int64).reshape(index.shape[0], -1, count)
    bad = (by_group >= group).any(axis=2) | (np.diff(by_group, axis=2) <= 0).any(axis=2)
    if not bad.any():
        return None
    r, g = (int(i) for i in np.argwhere(bad)[0])
    return (
        f"row {r}, group {g}: positions {by_group[r, g].tolist()} are not distinct, ascending "
        f"and below {group} ({int(bad.sum())} groups are malformed)"
    )


def _check(attr: SQAttr, shape: Shape, arrays: dict[str, Array]) -> None:
    check_codes(arrays, attr.low, "low.")
    check_codes(arrays, attr.high, "high.")
    if error := _index_error(arrays["high.index"], attr):
        raise ValueError(f"high.index of {error}")


SQ = Format(_pack, _unpack, _check)
