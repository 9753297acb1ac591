"""`nm(N, M) with Q`: N:M compressed values, quantized as an [R, S] matrix.

The exact model (docs/formats.md, "nm with quantization"): pack as plain nm (same
slots, padding, index words, pruning and violation errors), then `quantize` the
[R, S] compressed values with Q. Scale groups therefore count *stored* values: a
group of G stored values spans G * M / N dense columns. A kernel adds
x[col(s)] * value(s) for every slot s, padding slots included, so the dense matrix
it computes with puts each slot's dequantized value at the slot's position (a
padding slot's value is 0 for every Q but binary, where it is +scale).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stoicc_py.dialects.layout import ComposedLayoutAttr, LayoutAttr, StorageAttr
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.dialects.sparse import NMAttr
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing.common import Array, Format, Options, checked_shape
from stoicc_py.packing.nm import NMCode, conform
from stoicc_py.packing.quant import (
    QuantCodes,
    check_codes,
    code_arrays,
    codes_from,
    dequantize_codes,
    finite_matrix,
    quantize,
)

if TYPE_CHECKING:
    from stoicc_py.packing.tensor import PackedTensor


def parts(layout: LayoutAttr | str) -> tuple[NMAttr, UniformQuantAttr]:
    """The nm and uniform-quant halves of `nm(N, M) with Q`, else a ValueError: the only
    sparse-with-quant composition that has a storage (and a packer)."""
    layout = parse_layout(layout) if isinstance(layout, str) else layout
    if not isinstance(layout, ComposedLayoutAttr):
        raise ValueError(f"expected a layout 'nm(N, M) with Q', got {layout.summary()}")
    if not isinstance(layout.sparse, NMAttr) or not isinstance(layout.quant, UniformQuantAttr):
        raise ValueError(
            f"no packer for layout {layout.summary()}: only nm(N, M) with a uniform quantization "
            "(int8 ... binary) has a storage"
        )
    return layout.sparse, layout.quant


def _code(nm: NMAttr, width: int) -> NMCode:
    return NMCode(**nm.row_encoding(width))


def nm_quantize(w: Array, layout: ComposedLayoutAttr | str, prune: bool = False) -> tuple[QuantCodes, Array]:
    """The codes of the compressed values [R, S] (scales in Q.scale_shape([R, S])) and the
    int32 index words [R, W] of the float32 matrix w [R, K]."""
    layout = parse_layout(layout) if isinstance(layout, str) else layout
    nm, q = parts(layout)
    w = finite_matrix(w, "pack")  # a NaN would otherwise be reported at its slot, not its column
    checked_shape(layout, w.shape)  # M divides K; Q's groups divide S
    code = _code(nm, w.shape[1])
    values, words = code.encode(conform(w, nm, code, prune))
    return quantize(values, q), words


def nm_dequantize(codes: QuantCodes, words: Array, layout: ComposedLayoutAttr | str) -> Array:
    """The dense float32 [R, K] matrix a kernel computes with: each slot's dequantized value
    at its position (the positions of a group are distinct, so no two slots collide)."""
    nm, q = parts(layout)
    slots = codes.codes.shape[1]
    return _code(nm, slots // nm.n.data * nm.m.data).decode(dequantize_codes(codes, q), words)


# ---------------------------------------------------------------------------- the format


def _pack(w: Array, layout: ComposedLayoutAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    codes, words = nm_quantize(w, layout, opts.prune)
    return {**code_arrays(codes, parts(layout)[1]), "indices": words}


def _unpack(packed: PackedTensor) -> Array:
    q = parts(packed.layout)[1]
    return nm_dequantize(codes_from(packed.arrays, q), packed.arrays["indices"], packed.layout)


def _check(packed: PackedTensor) -> None:
    if error := NMCode.of(packed.storage).index_error(packed.arrays["indices"]):
        raise ValueError(f"indices of row {error[0]}: {error[1]}")
    check_codes(packed.arrays, parts(packed.layout)[1])


NM_QUANT = Format(_pack, _unpack, _check)
