"""Dense, block (block-CSR) and csr: formats that store every entry of a compressed-row
schedule, so that every matrix satisfies them and packing never prunes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from stoicc_py.dialects.layout import LayoutAttr, StorageAttr
from stoicc_py.dialects.sparse import BlockAttr, CSRAttr
from stoicc_py.packing.common import Array, Format, Options, check_schedule, entry_rows, schedule, tiles, untile

if TYPE_CHECKING:
    from stoicc_py.packing.tensor import PackedTensor


def _pack_dense(w: Array, layout: LayoutAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    return {"values": w}


def _unpack_dense(packed: PackedTensor) -> Array:
    return packed.arrays["values"].copy()


def _check_dense(packed: PackedTensor) -> None:
    """Dense storage is fully checked by its buffer's dtype and shape."""


def _pack_block(w: Array, layout: BlockAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    blocks = tiles(w, storage.param("bh"), storage.param("bw"))
    stored = (blocks != 0).any(axis=(2, 3))
    rowptr, cols = schedule(stored)
    return {"rowptr": rowptr, "cols": cols, "values": blocks[stored]}


def _unpack_block(packed: PackedTensor) -> Array:
    (rows, cols), bh, bw = packed.shape, packed.storage.param("bh"), packed.storage.param("bw")
    blocks = np.zeros((rows // bh, cols // bw, bh, bw), packed.dtype)
    blocks[entry_rows(packed.arrays["rowptr"]), packed.arrays["cols"]] = packed.arrays["values"]
    return untile(blocks)


def _check_block(packed: PackedTensor) -> None:
    check_schedule(packed, "", packed.shape[1] // packed.storage.param("bw"))


def _pack_csr(w: Array, layout: CSRAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    nonzero = w != 0
    nnz = int(np.count_nonzero(nonzero))
    if nnz >= 2**31:
        raise ValueError(f"csr: {nnz} non-zeros overflow the int32 row pointers (at most 2**31 - 1)")
    rowptr, cols = schedule(nonzero)
    return {"rowptr": rowptr, "cols": cols, "values": w[nonzero]}


def _unpack_csr(packed: PackedTensor) -> Array:
    dense = np.zeros(packed.shape, packed.dtype)
    dense[entry_rows(packed.arrays["rowptr"]), packed.arrays["cols"]] = packed.arrays["values"]
    return dense


def _check_csr(packed: PackedTensor) -> None:
    check_schedule(packed, "", packed.shape[1])


DENSE = Format(_pack_dense, _unpack_dense, _check_dense)
BLOCK = Format(_pack_block, _unpack_block, _check_block)
CSR = Format(_pack_csr, _unpack_csr, _check_csr)
