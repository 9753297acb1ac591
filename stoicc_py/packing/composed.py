"""`S with Q` in the packer (stoicc_py.codec.composed has the bits): a sparse format (nm,
block, csr, hybrid) packed as plain S — same schedules, slots, padding, index words, tables;
`prune=`, `plan=` and the violation errors work the same — whose values buffers the codec
then quantizes; and the model of `nm(N, M) with Q` as functions (nm_quantize, nm_dequantize).
"""

from __future__ import annotations

from xdsl.dialects.builtin import f32

from stoicc_py.codec import codec_for
from stoicc_py.codec.composed import ComposedCodec, quantize_values
from stoicc_py.codec.uniform import QuantCodes, dequantize_codes, finite_matrix
from stoicc_py.dialects.layout import ComposedLayoutAttr, LayoutAttr, StorageAttr
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.dialects.sparse import BlockAttr, CSRAttr, HybridAttr, NMAttr
from stoicc_py.packing.common import Array, Format, Options, Shape, checked_shape, layout_as
from stoicc_py.packing.compressed import BLOCK, CSR
from stoicc_py.packing.hybrid import HYBRID
from stoicc_py.packing.nm import NM

SPARSE: dict[type[LayoutAttr], Format] = {NMAttr: NM, BlockAttr: BLOCK, CSRAttr: CSR, HybridAttr: HYBRID}
"""The sparse formats a uniform quantization composes with."""

Sparse = NMAttr | BlockAttr | CSRAttr | HybridAttr


def parts(layout: LayoutAttr | str) -> tuple[Sparse, UniformQuantAttr]:
    """The sparse and uniform-quant halves of `S with Q`, else a ValueError."""
    layout = layout_as(layout, ComposedLayoutAttr, "a layout 'S with Q'")
    sparse, q = layout.sparse, layout.quant
    if type(sparse) not in SPARSE or not isinstance(q, UniformQuantAttr):
        raise ValueError(
            f"no packer for layout {layout.summary()}: a sparse layout (nm, block, csr, hybrid) composes "
            "only with a uniform quantization (int8 ... binary)"
        )
    assert isinstance(sparse, Sparse)
    return sparse, q


def _codec(layout: ComposedLayoutAttr, shape: Shape) -> ComposedCodec:
    codec = codec_for(layout, shape)
    assert isinstance(codec, ComposedCodec)
    return codec


# ---------------------------------------------------------------------------- nm: the model as functions


def nm_quantize(w: Array, layout: ComposedLayoutAttr | str, prune: bool = False) -> tuple[QuantCodes, Array]:
    """`nm(N, M) with Q` only: the codes of the compressed values [R, S] (scales in
    Q.scale_shape([R, S])) and the int32 index words [R, W] of the float32 matrix w [R, K]."""
    composed = layout_as(layout, ComposedLayoutAttr, "a layout 'S with Q'")
    nm, q = _nm_parts(composed)
    w = finite_matrix(w, "pack")  # a NaN would otherwise be reported at its slot, not its column
    shape = checked_shape(composed, w.shape)  # M divides K; Q's groups divide S
    plain = NM.pack(w, nm, nm.storage(shape, f32), Options(prune, None))
    return quantize_values(plain["values"], q), plain["indices"]


def nm_dequantize(codes: QuantCodes, words: Array, layout: ComposedLayoutAttr | str) -> Array:
    """The dense float32 [R, K] matrix a kernel computes with: each slot's dequantized value
    at its position (the positions of a group are distinct, so no two slots collide)."""
    nm, q = _nm_parts(layout)
    slots = codes.codes.shape[1]
    code = nm.codec([slots // nm.n.data * nm.m.data])
    return code.decode_rows(dequantize_codes(codes, q), words)


def _nm_parts(layout: LayoutAttr | str) -> tuple[NMAttr, UniformQuantAttr]:
    sparse, q = parts(layout)
    if not isinstance(sparse, NMAttr):
        raise ValueError(f"expected a layout 'nm(N, M) with Q', got {sparse.summary()} with {q.summary()}")
    return sparse, q


# ---------------------------------------------------------------------------- the format


def _pack(w: Array, layout: ComposedLayoutAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    """S's packer (pruning, plans, violation errors), then the codec quantizes S's values."""
    sparse, _ = parts(layout)
    plain = SPARSE[type(sparse)].pack(w, sparse, sparse.storage(w.shape, f32), opts)
    return _codec(layout, w.shape).encode_values(plain, opts.grid)


def decoded(layout: ComposedLayoutAttr, shape: Shape, arrays: dict[str, Array]) -> tuple[Sparse, dict[str, Array]]:
    """The plain sparse layout S of a tensor in `S with Q`, and its (checked) arrays with the
    values dequantized."""
    sparse, _ = parts(layout)
    return sparse, _codec(layout, shape).decode_values(arrays)


SPARSE_QUANT = Format(_pack)
