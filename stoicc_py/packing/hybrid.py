"""Hybrid tiles: a format table, and per format its tiles with a tile-row schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from stoicc_py.diagnostics import warn
from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.sparse import HybridAttr, NMAttr
from stoicc_py.packing.common import (
    Array,
    Format,
    Options,
    check_schedule,
    entry_rows,
    schedule,
    tile_name,
    tiles,
    untile,
)
from stoicc_py.packing.nm import NMCode

if TYPE_CHECKING:
    from stoicc_py.packing.tensor import PackedTensor


def _nm_codes(layout: HybridAttr, storage: StorageAttr) -> dict[int, NMCode]:
    """The N:M encoding of each nm format, by format index."""
    return {f: NMCode.of(storage, f"tile{f}.") for f, fmt in enumerate(layout.formats.data) if isinstance(fmt, NMAttr)}


def _as_rows(t: Array) -> Array:
    """Tiles [..., th, tw] as rows [tiles * th, tw]."""
    return t.reshape(int(np.prod(t.shape[:-1])), t.shape[-1])


def _violations(t: Array, code: NMCode) -> Array:
    """[tile rows, tile cols]: whether each tile has a group with more than N non-zeros."""
    return (code.counts(_as_rows(t)) > code.n).reshape(*t.shape[:2], -1).any(axis=-1)


def _planned_codes(plan: Array, grid: tuple[int, int], n_formats: int) -> Array:
    plan = np.asarray(plan)
    if not np.issubdtype(plan.dtype, np.integer):
        raise TypeError(f"plan must be an integer array of table codes, got dtype {plan.dtype}")
    if plan.shape != grid:
        raise ValueError(f"plan has shape {list(plan.shape)}, expected {list(grid)} (one code per tile)")
    bad = np.argwhere((plan < 0) | (plan > n_formats))
    if bad.size:
        r, c = (int(i) for i in bad[0])
        raise ValueError(f"plan[{r}, {c}] = {plan[r, c]} is not a table code (0 = empty, 1..{n_formats} = formats)")
    return plan.astype(np.int8)


def _derived_codes(t: Array, layout: HybridAttr, codes_nm: dict[int, NMCode], prune: bool) -> Array:
    """Empty for all-zero tiles, else the first nm format a tile satisfies, else dense (or, when
    pruning, the first nm format)."""
    todo = (t != 0).any(axis=(2, 3))
    codes = np.zeros(todo.shape, np.int8)
    for f, code in codes_nm.items():
        fits = todo & ~_violations(t, code)
        codes[fits] = f + 1
        todo &= ~fits
    formats = layout.formats.data
    dense = [f for f, fmt in enumerate(formats) if f not in codes_nm]
    if todo.any() and not dense and not prune:
        r, c = (int(i) for i in np.argwhere(todo)[0])
        raise ValueError(
            f"w's {tile_name(r, c, *layout.tile_shape)} fits none of the formats of {layout.summary()} "
            f"({int(todo.sum())} tiles fit none; prune='magnitude' prunes them to {formats[min(codes_nm)].summary()})"
        )
    if todo.any() and dense and codes_nm and prune:  # pruning would need to know which tiles may lose weights
        warn(
            f"pack: prune='magnitude' prunes no tile of {layout.summary()} without plan=: {int(todo.sum())} of "
            f"{int((t != 0).any(axis=(2, 3)).sum())} non-empty tiles fit no nm format as they are and stay dense; "
            "pass plan='auto' with sparsity=s (or a table of codes) to choose the tiles to prune"
        )
    codes[todo] = (dense or [min(codes_nm)])[0] + 1
    return codes


def _conform(t: Array, codes: Array, layout: HybridAttr, codes_nm: dict[int, NMCode], prune: bool) -> Array:
    """The tiles, each made to satisfy its code by pruning, else a ValueError naming the first that does not."""
    th, tw = layout.tile_shape
    bad = {-1: (codes == 0) & (t != 0).any(axis=(2, 3))}
    bad |= {f: (codes == f + 1) & _violations(t, code) for f, code in codes_nm.items()}
    if not any(b.any() for b in bad.values()):
        return t
    if not prune:
        f, where = next((f, b) for f, b in bad.items() if b.any())
        r, c = (int(i) for i in np.argwhere(where)[0])
        if f < 0:
            why = f"planned empty, but it has {np.count_nonzero(t[r, c])} non-zeros"
        else:
            violation = codes_nm[f].first_violation(t[r, c])
            assert violation is not None
            row, group, count, _ = violation
            m = codes_nm[f].m
            first = c * tw + group * m
            why = (
                f"planned {layout.formats.data[f].summary()}, but row {r * th + row}, "
                f"columns {first}..{first + m - 1} hold {count} non-zeros"
            )
        raise ValueError(
            f"w violates the plan at {tile_name(r, c, th, tw)}: {why} ({int(where.sum())} tiles violate it)"
        )
    t = t.copy()  # never prune the caller's matrix in place
    t[bad[-1]] = 0
    for f, code in codes_nm.items():
        t[bad[f]] = code.prune(_as_rows(t[bad[f]])).reshape(-1, th, tw)
    return t


def _pack(w: Array, layout: HybridAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    th, tw = layout.tile_shape
    t = tiles(w, th, tw)
    codes_nm, n_formats = _nm_codes(layout, storage), len(layout.formats.data)
    if opts.plan is None:
        codes = _derived_codes(t, layout, codes_nm, opts.prune)
    else:
        codes = _planned_codes(opts.plan, t.shape[:2], n_formats)
    t = _conform(t, codes, layout, codes_nm, opts.prune)
    arrays = {"table": codes}
    for f in range(n_formats):
        prefix, chosen = f"tile{f}.", codes == f + 1
        arrays[prefix + "rowptr"], arrays[prefix + "cols"] = schedule(chosen)
        data = t[chosen]  # tile-row-major, like the schedule
        if f not in codes_nm:
            arrays[prefix + "values"] = data
            continue
        code, count = codes_nm[f], data.shape[0]
        values, indices = code.encode(_as_rows(data))
        arrays[prefix + "values"] = values.reshape(count, th, code.slots)
        arrays[prefix + "indices"] = indices.reshape(count, th, code.words)
    return arrays


def _unpack(packed: PackedTensor) -> Array:
    layout, arrays = packed.layout, packed.arrays
    assert isinstance(layout, HybridAttr)
    th, tw = layout.tile_shape
    t = np.zeros((packed.shape[0] // th, packed.shape[1] // tw, th, tw), packed.dtype)
    codes_nm = _nm_codes(layout, packed.storage)
    for f in range(len(layout.formats.data)):
        prefix = f"tile{f}."
        data = arrays[prefix + "values"]
        if f in codes_nm:
            rows = codes_nm[f].decode(_as_rows(data), _as_rows(arrays[prefix + "indices"]))
            data = rows.reshape(data.shape[0], th, tw)
        t[entry_rows(arrays[prefix + "rowptr"]), arrays[prefix + "cols"]] = data
    return untile(t)


def _check(packed: PackedTensor) -> None:
    layout, arrays = packed.layout, packed.arrays
    assert isinstance(layout, HybridAttr)
    table, n_formats = arrays["table"], len(layout.formats.data)
    bad = np.argwhere((table < 0) | (table > n_formats))
    if bad.size:
        r, c = (int(i) for i in bad[0])
        raise ValueError(f"table[{r}, {c}] = {table[r, c]} is not a code (0 = empty, 1..{n_formats} = formats)")
    codes_nm = _nm_codes(layout, packed.storage)
    for f in range(n_formats):
        prefix = f"tile{f}."
        check_schedule(packed, prefix, table.shape[1])
        listed = np.zeros(table.shape, bool)
        listed[entry_rows(arrays[prefix + "rowptr"]), arrays[prefix + "cols"]] = True
        mismatch = np.argwhere(listed != (table == f + 1))
        if mismatch.size:
            r, c = (int(i) for i in mismatch[0])
            lists = "lists" if listed[r, c] else "does not list"
            raise ValueError(f"table[{r}, {c}] = {table[r, c]}, but the tile{f} schedule {lists} tile ({r}, {c})")
        if f in codes_nm and (error := codes_nm[f].index_error(_as_rows(arrays[prefix + "indices"]))):
            row, why = error
            th = layout.tile_shape[0]
            raise ValueError(f"{prefix}indices of stored tile {row // th}, row {row % th}: {why}")


HYBRID = Format(_pack, _unpack, _check)
