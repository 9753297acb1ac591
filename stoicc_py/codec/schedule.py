"""What the compressed sparse codecs share: compressed-row schedules and (ragged) tiles.

A schedule lists, per row of a grid, the ascending columns of its stored entries
(`rowptr`, `cols`), as CSR does for elements and block and hybrid do for blocks and tiles.
"""

from __future__ import annotations

import numpy as np

from stoicc_py.codec import Array


def schedule(mask: Array) -> tuple[Array, Array]:
    """Compressed-row schedule of a boolean [rows, cols] mask: row pointers and ascending columns."""
    rowptr = np.zeros(mask.shape[0] + 1, np.int64)
    np.cumsum(np.count_nonzero(mask, axis=1), out=rowptr[1:])
    # Boolean indexing of a broadcast column range is several times faster than np.nonzero.
    return rowptr, np.broadcast_to(np.arange(mask.shape[1]), mask.shape)[mask]


def entry_rows(rowptr: Array) -> Array:
    """The row of each entry of a (checked) compressed-row schedule."""
    counts: Array = np.diff(rowptr.astype(np.int64))
    return np.repeat(np.arange(rowptr.size - 1), counts)


def check_schedule(rowptr: Array, cols: Array, n_cols: int, prefix: str = "") -> None:
    """ValueError unless rowptr starts at 0, never decreases and ends at len(cols), and each
    row's cols are in [0, n_cols) and strictly ascending (`prefix` names the buffers)."""
    rowptr = rowptr.astype(np.int64)
    if rowptr[0] != 0:
        raise ValueError(f"{prefix}rowptr[0] = {rowptr[0]}, expected 0")
    drops = np.flatnonzero(np.diff(rowptr) < 0)
    if drops.size:
        i = int(drops[0])
        raise ValueError(
            f"{prefix}rowptr decreases after row {i}: rowptr[{i}] = {rowptr[i]} > rowptr[{i + 1}] = {rowptr[i + 1]}"
        )
    if rowptr[-1] != cols.size:
        raise ValueError(f"{prefix}rowptr[-1] = {rowptr[-1]}, but {prefix}cols holds {cols.size} entries")
    out = np.flatnonzero((cols < 0) | (cols >= n_cols))
    if out.size:
        k = int(out[0])
        raise ValueError(f"{prefix}cols[{k}] = {cols[k]} (row {_row_of(rowptr, k)}) is out of range [0, {n_cols})")
    starts_row = np.zeros(cols.size + 1, bool)
    starts_row[rowptr] = True
    unordered = np.flatnonzero((cols[1:] <= cols[:-1]) & ~starts_row[1:-1])
    if unordered.size:
        k = int(unordered[0]) + 1
        raise ValueError(
            f"{prefix}cols of row {_row_of(rowptr, k)} are not strictly ascending: "
            f"cols[{k - 1}] = {cols[k - 1]}, cols[{k}] = {cols[k]}"
        )


def _row_of(rowptr: Array, k: int) -> int:
    return int(np.searchsorted(rowptr, k, side="right")) - 1


def grid(shape: tuple[int, int], th: int, tw: int) -> tuple[int, int]:
    """Tile rows and columns of a matrix of `shape`; the last of each may be ragged (partial)."""
    return -(-shape[0] // th), -(-shape[1] // tw)


def tiles(x: Array, th: int, tw: int) -> Array:
    """The [tile rows, tile cols, th, tw] tiles (or blocks) of x: a view where th and tw divide
    x's shape, else a copy whose ragged last tiles are padded with zeros."""
    rows, cols = x.shape
    tr, tc = grid((rows, cols), th, tw)
    if (tr * th, tc * tw) != (rows, cols):
        x = np.pad(x, ((0, tr * th - rows), (0, tc * tw - cols)))
    return x.reshape(tr, th, tc, tw).swapaxes(1, 2)


def untile(t: Array, shape: tuple[int, int] | None = None) -> Array:
    """The matrix of tiles t, cropped to `shape` (the ragged last tiles' padding dropped)."""
    tr, tc, th, tw = t.shape
    whole = t.swapaxes(1, 2).reshape(tr * th, tc * tw)
    return whole if shape is None else whole[: shape[0], : shape[1]]


def tile_name(r: int, c: int, th: int, tw: int) -> str:
    return f"tile ({r}, {c}) (rows {r * th}..{r * th + th - 1}, columns {c * tw}..{c * tw + tw - 1})"
