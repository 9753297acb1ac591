"""Dense, block (block-CSR) and csr: formats that store every entry of a compressed-row
schedule, so that every matrix satisfies them and packing never prunes. The bits of
block and csr are their codecs' (stoicc_py.codec.block, stoicc_py.codec.csr)."""

from __future__ import annotations

from stoicc_py.dialects.layout import LayoutAttr, StorageAttr
from stoicc_py.dialects.sparse import BlockAttr, CSRAttr
from stoicc_py.packing.common import Array, Format, Options, Shape


def _pack_dense(w: Array, layout: LayoutAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    return {"values": w}


def _unpack_dense(layout: LayoutAttr, shape: Shape, arrays: dict[str, Array]) -> Array:
    return arrays["values"].copy()


def _check_dense(layout: LayoutAttr, shape: Shape, arrays: dict[str, Array]) -> None:
    """Dense storage is fully checked by its buffer's dtype and shape."""


def _pack_codec(w: Array, layout: BlockAttr | CSRAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    return layout.codec(w.shape).encode(w)


DENSE = Format(_pack_dense, _unpack_dense, _check_dense)
BLOCK = Format(_pack_codec)
CSR = Format(_pack_codec)
