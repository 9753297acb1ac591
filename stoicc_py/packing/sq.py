"""SQ-format in the packer: the public model, taking a layout's text too
(stoicc_py.codec.sq has the bits and the arithmetic), and the sq Format.

`sq_split` is the offline (weight) form and `sq_quantize` the same split of
activations at run time.
"""

from __future__ import annotations

from stoicc_py.codec import codec_for
from stoicc_py.codec import sq as code
from stoicc_py.codec.sq import SQCodes
from stoicc_py.codec.uniform import QuantCodes, finite_matrix
from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.quant import SQAttr
from stoicc_py.packing.common import Array, Format, Options, checked_shape, layout_as


def _attr(layout: SQAttr | str) -> SQAttr:
    return layout_as(layout, SQAttr, "an sq(...) layout")


def sq_quantize(x: Array, layout: SQAttr | str) -> SQCodes:
    """The SQ codes of the float32 matrix x [R, K] (stoicc_py.codec.sq.sq_quantize)."""
    x = finite_matrix(x, "sq")
    attr = _attr(layout)
    checked_shape(attr, x.shape)  # groups (SQ's and low's) divide the columns
    return code.sq_quantize(x, attr)


def sq_split(w: Array, layout: SQAttr | str) -> tuple[QuantCodes, QuantCodes, Array]:
    """(low codes, high codes, uint16 index) of the float32 weight w: sq_quantize as a tuple."""
    codes = sq_quantize(w, layout)
    return codes.low, codes.high, codes.index


def sq_dequantize(codes: SQCodes, layout: SQAttr | str) -> Array:
    """The float32 [R, K] values: dequantized low plus the dequantized high values at their positions."""
    return code.sq_dequantize(codes, _attr(layout))


def fake_sq(x: Array, layout: SQAttr | str) -> Array:
    """sq_dequantize(sq_quantize(x)): x rounded to the values SQ stores."""
    return sq_dequantize(sq_quantize(x, layout), layout)


def _pack(w: Array, layout: SQAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    if opts.prune:
        raise ValueError(f"prune= applies to sparse layouts, not {layout.summary()}")
    return codec_for(layout, w.shape).encode(w)


SQ = Format(_pack)
