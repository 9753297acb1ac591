"""`S with Q`: a sparse format (nm, block, csr, hybrid) whose values are quantized.

The exact model (docs/formats.md, "Sparse with quantization"): pack w as plain S
(same schedules, slots, padding, index words, tables; `prune=`, `plan=` and the
violation errors work the same), then quantize each of S's values buffers
(`values`, or `tile{f}.values` for hybrid) on its own, viewed as a matrix
[prod(leading dims), last dim]: `quantize(values.reshape(rows, last), Q)`. A row is
an N:M row's slots, a row of a stored block or hybrid tile, or csr's whole list of
non-zeros; per channel (axis=0) is one scale per row, per group groups the last dim,
per tensor spans the whole buffer. Scale groups therefore count *stored* values.

A kernel adds x[col(s)] * value(s) for every stored slot s, padding included (an nm
padding slot, the zeros inside a stored block or dense tile), so the dense matrix it
computes with puts each slot's dequantized value at the slot's position: zero for a
stored zero for every Q but binary, where it is +scale.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX, Float16Type, f32

from stoicc_py.codec.uniform import (
    QuantCodes,
    check_codes,
    code_arrays,
    codes_from,
    dequantize_codes,
    finite_matrix,
    quantize,
)
from stoicc_py.dialects.layout import BufferAttr, ComposedLayoutAttr, LayoutAttr, StorageAttr
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


def _values_buffers(storage: StorageAttr) -> list[BufferAttr]:
    """The values buffers of a plain sparse storage: `values`, or `tile{f}.values`."""
    return [b for b in storage.buffers.data if b.kind.data == "values"]


def _prefix(b: BufferAttr) -> str:
    return b.role.data.removesuffix("values")


def _as_matrix(values: Array) -> Array:
    """A values buffer [d0, ..., dn] as [d0 * ... * d(n-1), dn] (csr's list: one row)."""
    return values.reshape(1, -1) if values.ndim == 1 else values.reshape(-1, values.shape[-1])


def _fit(a: Array, b: BufferAttr) -> Array:
    """a in buffer b's shape, its dynamic dim (at most one) inferred."""
    return a.reshape([-1 if d == DYNAMIC_INDEX else d for d in b.type.get_shape()])


def quantize_values(values: Array, q: UniformQuantAttr) -> QuantCodes:
    """The codes of a values buffer as a [rows, last] matrix: `quantize(matrix, q)`, except that
    a buffer storing nothing has scale 0 (and zero point 0) where its scale shape has room."""
    matrix = _as_matrix(values)
    if matrix.size:
        return quantize(matrix, q)
    shape = q.scale_shape(matrix.shape)
    scales = np.zeros(shape, np.float16 if isinstance(q.scale, Float16Type) else np.float32)
    return QuantCodes(np.zeros(matrix.shape, np.int32), scales, None if q.is_symmetric else np.zeros(shape, np.int32))


def _padded_codes(codes: QuantCodes, q: UniformQuantAttr) -> QuantCodes:
    """A one-row (csr) matrix of codes padded to whole bytes: the pad fields are 0 bits."""
    width = codes.codes.shape[1]
    pad = -width % q.unit
    if not pad:
        return codes
    zero_field = -1 if q.codes.data == "binary" else 0
    return dataclasses.replace(codes, codes=np.pad(codes.codes, ((0, 0), (0, pad)), constant_values=zero_field))


def _code_buffers(values: Array, q: UniformQuantAttr, storage: StorageAttr, prefix: str) -> dict[str, Array]:
    """The `<prefix>values`, `scales`, `zero_points` buffers of one values buffer, in the storage's shapes."""
    arrays = code_arrays(_padded_codes(quantize_values(values, q), q), q, prefix)
    return {b.role.data: _fit(arrays[b.role.data], b) for b in storage.buffers.data if b.role.data in arrays}


def _logical_shape(b: BufferAttr, arrays: dict[str, Array]) -> list[int]:
    """The shape of plain values buffer b: its dynamic dim counts the entries (blocks, tiles,
    non-zeros) of its schedule, i.e. of `<prefix>cols`."""
    return [arrays[_prefix(b) + "cols"].size if d == DYNAMIC_INDEX else d for d in b.type.get_shape()]


def _matrix_shape(shape: list[int]) -> tuple[int, int]:
    """[rows, width] of a values buffer of `shape` viewed as a matrix (see _as_matrix)."""
    return (1, shape[0]) if len(shape) == 1 else (int(np.prod(shape[:-1])), shape[-1])


def _codes_view(arrays: dict[str, Array], q: UniformQuantAttr, prefix: str, shape: list[int]) -> dict[str, Array]:
    """The code buffers of a values buffer of logical `shape`, its codes' bytes viewed as those of
    the [rows, width] matrix ([rows, width / per_byte], csr's rounded up). Scales and zero points
    keep their stored shapes: their row-major order is the matrix's groups' order."""
    rows, width = _matrix_shape(shape)
    codes = arrays[prefix + "values"].reshape(rows, q.row_bytes(width + -width % q.unit))
    return {
        **{r: arrays[r] for r in (prefix + "scales", prefix + "zero_points") if r in arrays},
        prefix + "values": codes,
    }


def _decoded(arrays: dict[str, Array], q: UniformQuantAttr, b: BufferAttr) -> Array:
    """The float32 values of plain values buffer b decoded from (checked) code buffers."""
    shape, prefix = _logical_shape(b, arrays), _prefix(b)
    codes = codes_from(_codes_view(arrays, q, prefix, shape), q, prefix)
    codes = dataclasses.replace(codes, codes=codes.codes[:, : shape[-1]])  # csr: drop the pad fields
    return dequantize_codes(codes, q).reshape(shape)


def _plain_storage(sparse: Sparse, shape: tuple[int, int]) -> StorageAttr:
    return sparse.storage(shape, f32)


# ---------------------------------------------------------------------------- nm: the model as functions


def nm_quantize(w: Array, layout: ComposedLayoutAttr | str, prune: bool = False) -> tuple[QuantCodes, Array]:
    """`nm(N, M) with Q` only: the codes of the compressed values [R, S] (scales in
    Q.scale_shape([R, S])) and the int32 index words [R, W] of the float32 matrix w [R, K]."""
    composed = layout_as(layout, ComposedLayoutAttr, "a layout 'S with Q'")
    nm, q = _nm_parts(composed)
    w = finite_matrix(w, "pack")  # a NaN would otherwise be reported at its slot, not its column
    shape = checked_shape(composed, w.shape)  # M divides K; Q's groups divide S
    plain = NM.pack(w, nm, _plain_storage(nm, shape), Options(prune, None))
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
    sparse, q = parts(layout)
    plain_storage = _plain_storage(sparse, w.shape)
    arrays = SPARSE[type(sparse)].pack(w, sparse, plain_storage, opts)
    for b in _values_buffers(plain_storage):
        arrays |= _code_buffers(arrays[b.role.data], q, storage, _prefix(b))
    return arrays


def decoded(layout: ComposedLayoutAttr, shape: Shape, arrays: dict[str, Array]) -> tuple[Sparse, dict[str, Array]]:
    """The plain sparse layout S of a tensor in `S with Q`, and its (checked) arrays with the
    values dequantized."""
    sparse, q = parts(layout)
    plain = dict(arrays)
    for b in _values_buffers(_plain_storage(sparse, shape)):
        plain[b.role.data] = _decoded(arrays, q, b)
    return sparse, plain


def _unpack(layout: ComposedLayoutAttr, shape: Shape, arrays: dict[str, Array]) -> Array:
    sparse, plain = decoded(layout, shape, arrays)
    return SPARSE[type(sparse)].unpack(sparse, shape, plain)


def _check(layout: ComposedLayoutAttr, shape: Shape, arrays: dict[str, Array]) -> None:
    sparse, q = parts(layout)
    SPARSE[type(sparse)].check(sparse, shape, arrays)  # S's checks never read the values
    for b in _values_buffers(_plain_storage(sparse, shape)):
        prefix, logical = _prefix(b), _logical_shape(b, arrays)
        codes = arrays[prefix + "values"]
        if len(logical) == 1:  # csr: the codes' length is in bytes, which the buffer shapes do not tie to cols
            want = q.row_bytes(logical[0] + -logical[0] % q.unit)
            if codes.size != want:
                raise ValueError(
                    f"{prefix}values holds {codes.size} bytes, expected {want} for the {logical[0]} entries of "
                    f"{prefix}cols ({q.bits} bits per code, rows of {q.unit} codes)"
                )
        check_codes(_codes_view(arrays, q, prefix, logical), q, prefix)


SPARSE_QUANT = Format(_pack, _unpack, _check)
