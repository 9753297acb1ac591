"""`S with Q`'s codec: a sparse format (nm, block, csr, hybrid) whose values are quantized.

The exact model (docs/formats.md, "Sparse with quantization"): encode w as plain S
(same schedules, slots, padding, index words, tables), then quantize each of S's values
buffers (`values`, or `tile{f}.values` for hybrid) on its own, viewed as a matrix
[prod(leading dims), last dim]: `quantize(values.reshape(rows, last), Q)`. A row is
an N:M row's slots, a row of a stored block or hybrid tile, or csr's whole list of
non-zeros; per channel (axis=0) is one scale per row, per group groups the last dim,
per tensor spans the whole buffer. Scale groups therefore count *stored* values.
A values buffer `<prefix>values` becomes Q's buffers `<prefix>values` (the codes),
`<prefix>scales` and `<prefix>zero_points`; csr's one row of codes is padded to whole
bytes with zero fields.

A kernel adds x[col(s)] * value(s) for every stored slot s, padding included (an nm
padding slot, the zeros inside a stored block or dense tile), so the dense matrix it
computes with puts each slot's dequantized value at the slot's position: zero for a
stored zero for every Q but binary, where it is +scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from stoicc_py.codec import Array, Codec, cut_leading
from stoicc_py.codec.uniform import (
    CodeBits,
    Grid,
    QuantCodes,
    QuantScheme,
    Sign,
    UniformCodec,
    check_codes,
    code_arrays,
    codes_from,
    dequantize_codes,
    quantize,
    scale_dtype,
    scale_roles,
)

Shape = tuple[int, ...]
"""A buffer's shape, its dynamic dim (at most one) -1."""


def prefix(role: str) -> str:
    """The role prefix of a values buffer's role: "" for `values`, "tile{f}." for `tile{f}.values`."""
    return role.removesuffix("values")


def as_matrix(values: Array) -> Array:
    """A values buffer [d0, ..., dn] as [d0 * ... * d(n-1), dn] (csr's list: one row)."""
    return values.reshape(1, -1) if values.ndim == 1 else values.reshape(-1, values.shape[-1])


def _matrix_shape(shape: list[int]) -> tuple[int, int]:
    """[rows, width] of a values buffer of `shape` viewed as a matrix (see as_matrix)."""
    return (1, shape[0]) if len(shape) == 1 else (int(np.prod(shape[:-1])), shape[-1])


def quantize_values(values: Array, q: QuantScheme, grid: Grid | None = None) -> QuantCodes:
    """The codes of a values buffer as a [rows, last] matrix: `quantize(matrix, q, grid)`, except
    that a buffer storing nothing has scale 0 (and zero point 0) where its scale shape has room."""
    matrix = as_matrix(values)
    if matrix.size:
        return quantize(matrix, q, grid)
    shape = q.scale_shape(matrix.shape)
    scales = np.zeros(shape, scale_dtype(q))
    return QuantCodes(np.zeros(matrix.shape, np.int32), scales, None if q.is_symmetric else np.zeros(shape, np.int32))


def _padded_width(width: int, code: CodeBits) -> int:
    """A row of `width` codes rounded up to whole bytes in every plane (csr's one row)."""
    return width + -width % code.unit


def _padded_codes(codes: QuantCodes, code: CodeBits) -> QuantCodes:
    """A one-row (csr) matrix of codes padded to whole bytes: the pad fields are 0 bits."""
    width = codes.codes.shape[1]
    pad = _padded_width(width, code) - width
    if not pad:
        return codes
    zero_field = -1 if code.sign is Sign.PLUS_MINUS_ONE else 0
    return dataclasses.replace(codes, codes=np.pad(codes.codes, ((0, 0), (0, pad)), constant_values=zero_field))


@dataclass(frozen=True)
class ComposedCodec(Codec):
    """A matrix in `S with Q`: S's codec, Q's scheme, and the shapes of S's values buffers
    (`plain`, by role) and of every buffer of the composed storage (`stored`, by role)."""

    sparse: Codec
    quant: QuantScheme
    plain: Mapping[str, Shape]
    stored: Mapping[str, Shape]

    @property
    def code(self) -> CodeBits:
        return CodeBits.of(self.quant)

    def _logical_shape(self, role: str, arrays: dict[str, Array]) -> list[int]:
        """The shape of plain values buffer `role`: its dynamic dim counts the entries (blocks,
        tiles, non-zeros) of its schedule, i.e. of `<prefix>cols`."""
        return [arrays[prefix(role) + "cols"].size if d == -1 else d for d in self.plain[role]]

    def _code_buffers(self, values: Array, pre: str, grid: Grid | None) -> dict[str, Array]:
        """The `<pre>values`, `scales`, `zero_points` buffers of one values buffer, in their stored shapes."""
        arrays = code_arrays(_padded_codes(quantize_values(values, self.quant, grid), self.code), self.quant, pre)
        return {role: a.reshape(self.stored[role]) for role, a in arrays.items() if role in self.stored}

    def _codes_view(self, arrays: dict[str, Array], pre: str, shape: list[int]) -> dict[str, Array]:
        """The code buffers of a values buffer of logical `shape`, its codes' bytes viewed as those of
        the [rows, width] matrix ([rows, width / per_byte], csr's rounded up). Scales and zero points
        keep their stored shapes: their row-major order is the matrix's groups' order."""
        rows, width = _matrix_shape(shape)
        codes = arrays[pre + "values"].reshape(rows, self.code.row_bytes(_padded_width(width, self.code)))
        return {
            **{r: arrays[r] for r in (pre + "scales", pre + "zero_points") if r in arrays},
            pre + "values": codes,
        }

    def encode_values(self, plain: dict[str, Array], grid: Grid | None = None) -> dict[str, Array]:
        """The composed buffers of S's buffers `plain`: each values buffer quantized (on `grid`,
        in the scale shape of the values matrix, if given: S must have one values buffer)."""
        if grid is not None and len(self.plain) != 1:
            raise ValueError(f"a quantization grid applies to a sparse format with one values buffer, not {list(self.plain)}")
        arrays = dict(plain)
        for role in self.plain:
            arrays |= self._code_buffers(plain[role], prefix(role), grid)
        return arrays

    def decode_values(self, arrays: dict[str, Array]) -> dict[str, Array]:
        """S's buffers of (checked) composed buffers, the values dequantized to float32."""
        plain = dict(arrays)
        for role in self.plain:
            shape, pre = self._logical_shape(role, arrays), prefix(role)
            codes = codes_from(self._codes_view(arrays, pre, shape), self.quant, pre)
            codes = dataclasses.replace(codes, codes=codes.codes[:, : shape[-1]])  # csr: drop the pad fields
            plain[role] = dequantize_codes(codes, self.quant).reshape(shape)
        return plain

    def encode(self, w: Array) -> dict[str, Array]:
        return self.encode_values(self.sparse.encode(w))

    def decode(self, arrays: dict[str, Array]) -> Array:
        return self.sparse.decode(self.decode_values(arrays))

    def check(self, arrays: dict[str, Array]) -> None:
        self.sparse.check(arrays)  # S's checks never read the values
        for role in self.plain:
            pre, logical = prefix(role), self._logical_shape(role, arrays)
            codes = arrays[pre + "values"]
            if len(logical) == 1:  # csr: the codes' length is in bytes, which the buffer shapes do not tie to cols
                want = self.code.row_bytes(_padded_width(logical[0], self.code))
                if codes.size != want:
                    raise ValueError(
                        f"{pre}values holds {codes.size} bytes, expected {want} for the {logical[0]} entries of "
                        f"{pre}cols ({self.code.bits} bits per code, rows of {self.code.unit} codes)"
                    )
            check_codes(self._codes_view(arrays, pre, logical), self.quant, pre)

    def row_granule(self) -> int:
        return self.sparse.row_granule()

    def cut_rows(self, arrays: dict[str, Array], start: int, stop: int) -> dict[str, Array]:
        cut = self.sparse.cut_rows(arrays, start, stop)
        for role in self.plain:  # codes that S cut by rows (N:M's values): their rows' scale groups too
            pre = prefix(role)
            rows = arrays[pre + "values"].shape[0]
            if cut[pre + "values"] is not arrays[pre + "values"]:
                cut = cut_leading(cut, scale_roles(self.quant, arrays, pre), rows, start, stop)
        return cut


def composed_codec(
    sparse: Codec, quant: Codec, plain: Mapping[str, Shape], stored: Mapping[str, Shape]
) -> ComposedCodec:
    """The codec of `S with Q` from S's codec and Q's (a uniform quantization's), else a ValueError."""
    if not isinstance(quant, UniformCodec):
        raise ValueError(f"a sparse layout composes only with a uniform quantization, not {type(quant).__name__}")
    return ComposedCodec(sparse, quant.attr, plain, stored)
