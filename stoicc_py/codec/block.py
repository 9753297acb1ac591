"""The block codec: block-CSR, [bh, bw] blocks that are all zero (skipped) or stored dense.

`rowptr` [block rows + 1] and `cols` (ascending block columns per block row) schedule
the stored blocks; `values` [stored, bh, bw] holds them in schedule order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stoicc_py.codec import Array, Codec, cut_schedule
from stoicc_py.codec.schedule import check_schedule, entry_rows, schedule, tiles, untile


@dataclass(frozen=True)
class BlockCodec(Codec):
    bh: int
    bw: int
    shape: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        """Block rows and columns (bh and bw divide the shape)."""
        return self.shape[0] // self.bh, self.shape[1] // self.bw

    def encode(self, w: Array) -> dict[str, Array]:
        blocks = tiles(w, self.bh, self.bw)
        stored = (blocks != 0).any(axis=(2, 3))
        rowptr, cols = schedule(stored)
        return {"rowptr": rowptr, "cols": cols, "values": blocks[stored]}

    def decode(self, arrays: dict[str, Array]) -> Array:
        values = arrays["values"]
        blocks = np.zeros((*self.grid, self.bh, self.bw), values.dtype)
        blocks[entry_rows(arrays["rowptr"]), arrays["cols"]] = values
        return untile(blocks)

    def check(self, arrays: dict[str, Array]) -> None:
        check_schedule(arrays["rowptr"], arrays["cols"], self.grid[1])

    def row_granule(self) -> int:
        return self.bh

    def cut_rows(self, arrays: dict[str, Array], start: int, stop: int) -> dict[str, Array]:
        return cut_schedule(arrays, ("rowptr",), start // self.bh, stop // self.bh)
