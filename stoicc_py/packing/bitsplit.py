"""Bit-split activations in the packer: the public model, taking a layout's text too
(stoicc_py.codec.bitsplit has the bits), the product with a quantized weight
(`bitsplit_linear`) and the bitsplit Format.

A product with a quantized weight splits into a dense 4-bit pass over lo, a sparse pass
over the non-zero hi nibbles and an offset correction (`bitsplit_linear`).
"""

from __future__ import annotations

import numpy as np

from stoicc_py.codec import codec_for
from stoicc_py.codec.bitsplit import BitSplit, BitSplitCodec
from stoicc_py.codec.uniform import finite_matrix
from stoicc_py.dialects.layout import LayoutAttr, StorageAttr
from stoicc_py.dialects.quant import BitSplitAttr, UniformQuantAttr
from stoicc_py.packing.common import Array, Format, Options, Packed, checked_shape, layout_as
from stoicc_py.packing.quant import codes_of

F32 = np.float32


def _attr(layout: LayoutAttr | str) -> BitSplitAttr:
    return layout_as(layout, BitSplitAttr, "a bitsplit(...) layout")


def bitsplit(x: Array, layout: BitSplitAttr | str) -> BitSplit:
    """The bit split of the float32 activations x [R, K] (K a multiple of 8)."""
    attr = _attr(layout)
    x = finite_matrix(x, "quantize")
    checked_shape(attr, x.shape)  # whole bitmap bytes
    codec = codec_for(attr, x.shape)
    assert isinstance(codec, BitSplitCodec)
    return codec.split(x)


def fake_bitsplit(x: Array, layout: BitSplitAttr | str) -> Array:
    """The values kernels compute with: float32(s) * float32(c), which equals
    fake_quantize(x, "int8(per=token)") exactly (the split is lossless)."""
    return bitsplit(x, layout).dequantize()


# ---------------------------------------------------------------------------- the product


def _weight_groups(w: Packed) -> tuple[Array, Array, int]:
    """(integer weight q - zp as int64 [N, K], float32 scales [N, groups], group length) of a
    uniformly quantized weight with one scale per tensor, row or row group."""
    attr = w.layout
    if not isinstance(attr, UniformQuantAttr) or (attr.per.data == "channel" and attr.axis.data != 0):
        raise ValueError(f"bitsplit_linear: the weight needs one scale per row or row group, got {w.layout.summary()}")
    if attr.float_offset:  # offset * sum(x) is not an integer product
        raise ValueError(f"bitsplit_linear: a float zero ({attr.summary()}) has no integer product: use symmetric=false")
    rows, width = w.shape
    group = attr.group_size(width)
    q = codes_of(w)
    qw = q.codes.astype(np.int64)
    if q.zero_points is not None:
        qw -= np.repeat(np.broadcast_to(q.zero_points.reshape(-1, width // group), (rows, width // group)), group, 1)
    scales = np.broadcast_to(q.scales.astype(F32).reshape(-1, width // group), (rows, width // group))
    return qw, scales, group


def _as_bitsplit(x: BitSplit | Packed) -> BitSplit:
    if isinstance(x, BitSplit):
        return x
    _attr(x.layout)
    x.check()
    return BitSplit.of_arrays(x.arrays)


def bitsplit_linear(x: BitSplit | Packed, w: Packed) -> Array:
    """y = x @ w.T [R, N] as the kernels compute it, from bit-split x and a quantized weight.

    Per output (i, n) and weight group g, the i32 dot product
    acc_g = sum_k lo * qw + 16 * sum_{k in bitmap} hi * qw - o_i * sum_k qw (= sum_k c * qw),
    then y = s_x[i] * (((0 + s_w[n, 0] * acc_0) + s_w[n, 1] * acc_1) + ...) in float32:
    the integer W8A8 path's order.
    """
    xs = _as_bitsplit(x)
    qw, scales, group = _weight_groups(w)
    if xs.shape[1] != qw.shape[1]:
        raise ValueError(f"bitsplit_linear: x has {xs.shape[1]} columns, w has {qw.shape[1]}")
    lo, hi = (a.astype(np.int64) for a in xs.nibbles())
    hi = np.where(xs.mask(), hi, 0)  # the sparse pass visits the bitmap's elements only
    o = xs.offset_values().astype(np.int64)[:, None]
    acc = np.zeros((xs.shape[0], qw.shape[0]), F32)
    for g in range(qw.shape[1] // group):
        k = slice(g * group, (g + 1) * group)
        dot = lo[:, k] @ qw[:, k].T + 16 * (hi[:, k] @ qw[:, k].T) - o * qw[:, k].sum(axis=1)
        assert np.abs(dot).max(initial=0) < 2**31, "the i32 accumulator overflows"
        acc = acc + scales[:, g] * dot.astype(F32)
    return xs.scales.astype(F32)[:, None] * acc


# ---------------------------------------------------------------------------- the format


def _pack(x: Array, layout: BitSplitAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    if opts.prune:
        raise ValueError(f"prune= applies to sparse layouts, not {layout.summary()}")
    return bitsplit(x, layout).arrays()


BITSPLIT = Format(_pack)
