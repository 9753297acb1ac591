"""Uniform quantization in the packer: the public model (stoicc_py.codec.uniform has the
bits and the arithmetic; these take a layout's text too) and the quant Format."""

from __future__ import annotations

from stoicc_py.codec import codec_for, uniform
from stoicc_py.codec.uniform import QuantCodes, codes_from
from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.packing.common import Array, Format, Options, Packed, layout_as


def _attr(layout: UniformQuantAttr | str) -> UniformQuantAttr:
    return layout_as(layout, UniformQuantAttr, "a quantized layout (int8 ... binary)")


def quantize(x: Array, layout: UniformQuantAttr | str) -> QuantCodes:
    """The codes, scales and zero points of the float32 [R, K] matrix x (stoicc_py.codec.uniform.quantize)."""
    return uniform.quantize(x, _attr(layout))


def dequantize_codes(q: QuantCodes, layout: UniformQuantAttr | str) -> Array:
    """The float32 values float32(scale) * float32(code - zero_point) of quantized codes."""
    return uniform.dequantize_codes(q, _attr(layout))


def sharing_scale(mask: Array, layout: UniformQuantAttr | str) -> Array:
    """bool, the shape of the [R, K] mask: the elements that share a scale with one in mask."""
    return uniform.sharing_scale(mask, _attr(layout))


def fake_quantize(x: Array, layout: UniformQuantAttr | str) -> Array:
    """dequantize_codes(quantize(x)): x rounded to the values the layout can store."""
    attr = _attr(layout)
    return uniform.dequantize_codes(uniform.quantize(x, attr), attr)


def _pack(w: Array, layout: UniformQuantAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    if opts.prune:
        raise ValueError(f"prune= applies to sparse layouts, not {layout.summary()}")
    codec = codec_for(layout, w.shape)
    assert isinstance(codec, uniform.UniformCodec)
    return codec.encode(w, opts.grid)


def codes_of(packed: Packed) -> QuantCodes:
    """The QuantCodes stored in a (checked) quantized packed tensor."""
    attr = packed.layout
    assert isinstance(attr, UniformQuantAttr)
    return codes_from(packed.arrays, attr)


QUANT = Format(_pack)
