"""What every format packer shares: its interface, compressed-row schedules and tiles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX
from xdsl.utils.exceptions import VerifyException

from stoicc_py.dialects.layout import LayoutAttr, StorageAttr
from stoicc_py.frontend.layouts import parse_layout

if TYPE_CHECKING:
    from stoicc_py.packing.tensor import PackedTensor

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Options:
    prune: bool
    plan: Array | None


@dataclass(frozen=True)
class Format:
    """How one layout class packs a matrix into role -> array, unpacks, and checks the arrays
    beyond their dtypes and shapes (which the tensor checks against the storage)."""

    pack: Callable[[Array, Any, StorageAttr, Options], dict[str, Array]]
    unpack: Callable[[PackedTensor], Array]
    check: Callable[[PackedTensor], None]


def schedule(mask: Array) -> tuple[Array, Array]:
    """Compressed-row schedule of a boolean [rows, cols] mask: row pointers and ascending columns."""
    rowptr = np.zeros(mask.shape[0] + 1, np.int64)
    np.cumsum(np.count_nonzero(mask, axis=1), out=rowptr[1:])
    # Boolean indexing of a broadcast column range is several times faster than np.nonzero.
    return rowptr, np.broadcast_to(np.arange(mask.shape[1]), mask.shape)[mask]


def entry_rows(rowptr: Array) -> Array:
    """The row of each entry of a (checked) compressed-row schedule."""
    return np.repeat(np.arange(rowptr.size - 1), np.diff(rowptr.astype(np.int64)))


def check_schedule(packed: PackedTensor, prefix: str, n_cols: int) -> None:
    """ValueError unless rowptr starts at 0, never decreases and ends at len(cols), and each
    row's cols are in [0, n_cols) and strictly ascending."""
    rowptr = packed.arrays[prefix + "rowptr"].astype(np.int64)
    cols = packed.arrays[prefix + "cols"]
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


def check_finite(w: Array, what: str) -> None:
    """ValueError naming the first non-finite element of the matrix w by row and column: the
    packers (pruning, patterns, scales) assume finite weights, and no kernel could honour others."""
    if w.dtype.kind == "f" and not np.isfinite(w).all():
        bad = np.argwhere(~np.isfinite(w))
        r, c = (int(i) for i in bad[0])
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{what} at row {r}, column {c} is {w[r, c]}{more}; a stored weight must be finite")


def tiles(x: Array, th: int, tw: int) -> Array:
    """The [rows/th, cols/tw, th, tw] tiles (or blocks) of x, as a view."""
    rows, cols = x.shape
    return x.reshape(rows // th, th, cols // tw, tw).swapaxes(1, 2)


def untile(t: Array) -> Array:
    tr, tc, th, tw = t.shape
    return t.swapaxes(1, 2).reshape(tr * th, tc * tw)


def tile_name(r: int, c: int, th: int, tw: int) -> str:
    return f"tile ({r}, {c}) (rows {r * th}..{r * th + th - 1}, columns {c * tw}..{c * tw + tw - 1})"


def checked_shape(layout: LayoutAttr, shape: tuple[int, ...]) -> tuple[int, int]:
    """shape as two ints, if the layout can store it: shapes are never padded to a multiple."""
    if len(shape) != 2 or not all(isinstance(d, int | np.integer) and d > 0 for d in shape):
        raise ValueError(f"a packed tensor has two positive dims, got shape {list(shape)}")
    rows, cols = int(shape[0]), int(shape[1])
    try:
        layout.verify_for([rows, cols], "f32")
    except VerifyException as err:
        raise ValueError(
            f"{layout.summary()} cannot store shape [{rows}, {cols}] (shapes are not padded): {err}"
        ) from None
    return rows, cols


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("?" if d == DYNAMIC_INDEX else str(d) for d in shape) + "]"


L = TypeVar("L", bound=LayoutAttr)


def layout_as(layout: LayoutAttr | str, kind: type[L], what: str) -> L:
    """`layout` (an attribute, or text to parse) as a `kind`, else a ValueError naming `what`."""
    layout = parse_layout(layout) if isinstance(layout, str) else layout
    if not isinstance(layout, kind):
        raise ValueError(f"expected {what}, got {layout.summary()}")
    return layout
