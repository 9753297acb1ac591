"""The CSR codec: compressed sparse rows of single elements.

`rowptr` [rows + 1] (int32), `cols` (unsigned, `index_bits` wide, ascending per row)
and `values` in row-major order of the non-zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stoicc_py.codec import Array, Codec, cut_schedule
from stoicc_py.codec.schedule import check_schedule, entry_rows, schedule

ROWPTR_LIMIT = 2**31 - 1
"""Row pointers are int32."""


@dataclass(frozen=True)
class CSRCodec(Codec):
    """(The column indices' width is the storage's `cols` element type.)"""

    shape: tuple[int, int]

    def encode(self, w: Array) -> dict[str, Array]:
        nonzero = w != 0
        nnz = int(np.count_nonzero(nonzero))
        if nnz > ROWPTR_LIMIT:
            raise ValueError(f"csr: {nnz} non-zeros overflow the int32 row pointers (at most 2**31 - 1)")
        rowptr, cols = schedule(nonzero)
        return {"rowptr": rowptr, "cols": cols, "values": w[nonzero]}

    def decode(self, arrays: dict[str, Array]) -> Array:
        values = arrays["values"]
        dense = np.zeros(self.shape, values.dtype)
        dense[entry_rows(arrays["rowptr"]), arrays["cols"]] = values
        return dense

    def check(self, arrays: dict[str, Array]) -> None:
        check_schedule(arrays["rowptr"], arrays["cols"], self.shape[1])

    def row_granule(self) -> int:
        return 1

    def cut_rows(self, arrays: dict[str, Array], start: int, stop: int) -> dict[str, Array]:
        return cut_schedule(arrays, ("rowptr",), start, stop)
