"""The hybrid codec: [th, tw] tiles, each empty or stored in one of the layout's formats.

`table` [tile rows, tile cols] (int8) holds each tile's code: EMPTY (0) or
`table_code(f)` = 1 + f for formats[f]. Per format f, the buffers `tile{f}.rowptr`,
`tile{f}.cols` schedule its tiles by tile row, and `tile{f}.values` [tiles, th, tw]
(dense) or `tile{f}.values` [tiles, th, slots] and `tile{f}.indices` [tiles, th, words]
(an N:M tile's rows, NMCodec of width tw) hold them in schedule order.

The last tile row and column may be ragged (the shape need not be a multiple of the
tile): their tiles are stored whole, padded with zeros past the matrix, so every
stored tile has the same size; kernels stop at the matrix's edge (an N:M tile's
slots there are those of its first `valid_slots(cols - k0)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stoicc_py.codec import Array, Codec, cut_leading, cut_schedule
from stoicc_py.codec.nm import NMCodec
from stoicc_py.codec.schedule import check_schedule, entry_rows, grid, schedule, tile_name, tiles, untile

EMPTY = 0
"""The table code of an all-zero tile, neither stored nor visited."""


def table_code(f: int) -> int:
    """The table code of a tile stored in formats[f]."""
    return 1 + f


def format_of(code: int) -> int | None:
    """The format index of table code `code` (None for EMPTY)."""
    return None if code == EMPTY else code - 1


def role(f: int, name: str) -> str:
    """The storage role of buffer `name` (rowptr, cols, values, indices) of format f's tiles."""
    return f"tile{f}.{name}"


@dataclass(frozen=True)
class HybridCodec(Codec):
    tile: tuple[int, int]
    shape: tuple[int, int]
    formats: tuple[NMCodec | None, ...]
    """Per format, the codec of an N:M tile's rows, or None for a dense tile."""

    @property
    def grid(self) -> tuple[int, int]:
        return grid(self.shape, *self.tile)

    @property
    def nm(self) -> dict[int, NMCodec]:
        """The N:M formats' row codecs, by format index."""
        return {f: code for f, code in enumerate(self.formats) if code is not None}

    @property
    def ragged(self) -> tuple[bool, bool]:
        """Whether the last tile row, the last tile column is partial."""
        return self.shape[0] % self.tile[0] != 0, self.shape[1] % self.tile[1] != 0

    def tiles(self, w: Array) -> Array:
        """w's tiles [tile rows, tile cols, th, tw], ragged ones padded with zeros."""
        return tiles(w, *self.tile)

    def tile_name(self, r: int, c: int) -> str:
        return tile_name(r, c, *self.tile)

    def violations(self, t: Array, f: int) -> Array:
        """bool [tile rows, tile cols]: whether each tile of t has a group with more than N
        non-zeros of nm format f."""
        code = self.nm[f]
        return np.asarray(np.asarray(code.counts(_as_rows(t)) > code.n).reshape(*t.shape[:2], -1).any(axis=-1))

    def codes(self, t: Array) -> Array:
        """The default table: EMPTY for all-zero tiles, else the first nm format a tile
        satisfies, else the first dense format (EMPTY where none fits)."""
        todo = (t != 0).any(axis=(2, 3))
        codes = np.zeros(todo.shape, np.int8)
        for f in self.nm:
            fits = todo & ~self.violations(t, f)
            codes[fits] = table_code(f)
            todo &= ~fits
        dense = [f for f, code in enumerate(self.formats) if code is None]
        if dense:
            codes[todo] = table_code(dense[0])
        return codes

    def encode(self, w: Array) -> dict[str, Array]:
        """The buffers of w with the default table (`codes`)."""
        t = self.tiles(w)
        return self.encode_tiles(t, self.codes(t))

    def encode_tiles(self, t: Array, codes: Array) -> dict[str, Array]:
        """The buffers of tiles t (`tiles(w)`) with table `codes`, each tile satisfying its code."""
        arrays = {"table": codes.astype(np.int8)}
        th = self.tile[0]
        for f, code in enumerate(self.formats):
            chosen = codes == table_code(f)
            arrays[role(f, "rowptr")], arrays[role(f, "cols")] = schedule(chosen)
            data = t[chosen]  # tile-row-major, like the schedule
            if code is None:
                arrays[role(f, "values")] = data
                continue
            values, indices = code.encode_rows(_as_rows(data))
            arrays[role(f, "values")] = values.reshape(-1, th, code.slots)
            arrays[role(f, "indices")] = indices.reshape(-1, th, code.words)
        return arrays

    def decode(self, arrays: dict[str, Array]) -> Array:
        th, tw = self.tile
        dtype = arrays[role(0, "values")].dtype
        t = np.zeros((*self.grid, th, tw), dtype)
        for f, code in enumerate(self.formats):
            data = arrays[role(f, "values")]
            if code is not None:
                data = code.decode_rows(_as_rows(data), _as_rows(arrays[role(f, "indices")])).reshape(-1, th, tw)
            t[entry_rows(arrays[role(f, "rowptr")]), arrays[role(f, "cols")]] = data
        return untile(t, self.shape)

    def check(self, arrays: dict[str, Array]) -> None:
        table, n_formats = arrays["table"], len(self.formats)
        bad = np.argwhere((table < EMPTY) | (table > table_code(n_formats - 1)))
        if bad.size:
            r, c = (int(i) for i in bad[0])
            raise ValueError(f"table[{r}, {c}] = {table[r, c]} is not a code (0 = empty, 1..{n_formats} = formats)")
        for f, code in enumerate(self.formats):
            rowptr, cols = arrays[role(f, "rowptr")], arrays[role(f, "cols")]
            check_schedule(rowptr, cols, table.shape[1], role(f, ""))
            listed = np.zeros(table.shape, bool)
            listed[entry_rows(rowptr), cols] = True
            mismatch = np.argwhere(listed != (table == table_code(f)))
            if mismatch.size:
                r, c = (int(i) for i in mismatch[0])
                lists = "lists" if listed[r, c] else "does not list"
                raise ValueError(f"table[{r}, {c}] = {table[r, c]}, but the tile{f} schedule {lists} tile ({r}, {c})")
            if code is not None and (error := code.index_error(_as_rows(arrays[role(f, "indices")]))):
                row, why = error
                th = self.tile[0]
                raise ValueError(f"{role(f, 'indices')} of stored tile {row // th}, row {row % th}: {why}")

    def row_granule(self) -> int:
        return self.tile[0]

    def cut_rows(self, arrays: dict[str, Array], start: int, stop: int) -> dict[str, Array]:
        # Tile rows [r0, r1): their table rows, and each format's schedule rows (kernels visit a
        # tile row's tiles through its rowptr, at their absolute offsets in cols and values).
        r0, r1 = start // self.tile[0], -(-stop // self.tile[0])
        cut = cut_leading(arrays, ("table",), self.grid[0], r0, r1)
        return cut_schedule(cut, [role(f, "rowptr") for f in range(len(self.formats))], r0, r1)


def _as_rows(t: Array) -> Array:
    """Tiles [..., th, width] as rows [tiles * th, width]."""
    return t.reshape(int(np.prod(t.shape[:-1])), t.shape[-1])
