"""The hybrid format's packer: which code each tile gets (derived, or a plan), the tiles made
to satisfy their codes (pruned, or checked), then HybridCodec's buffers."""

from __future__ import annotations

import numpy as np

from stoicc_py.codec.hybrid import EMPTY, HybridCodec, table_code
from stoicc_py.diagnostics import warn
from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.sparse import HybridAttr
from stoicc_py.packing.common import Array, Format, Options


def _planned_codes(plan: Array, grid: tuple[int, int], n_formats: int) -> Array:
    plan = np.asarray(plan)
    if not np.issubdtype(plan.dtype, np.integer):
        raise TypeError(f"plan must be an integer array of table codes, got dtype {plan.dtype}")
    if plan.shape != grid:
        raise ValueError(f"plan has shape {list(plan.shape)}, expected {list(grid)} (one code per tile)")
    bad = np.argwhere((plan < EMPTY) | (plan > table_code(n_formats - 1)))
    if bad.size:
        r, c = (int(i) for i in bad[0])
        raise ValueError(f"plan[{r}, {c}] = {plan[r, c]} is not a table code (0 = empty, 1..{n_formats} = formats)")
    return plan.astype(np.int8)


def _derived_codes(t: Array, layout: HybridAttr, code: HybridCodec, prune: bool) -> Array:
    """The codec's default table (empty, else the first nm format a tile satisfies, else dense);
    without a dense format, the tiles that fit no nm format are an error, or (when pruning)
    take the first nm format."""
    codes = code.codes(t)
    misfits = (codes == EMPTY) & (t != 0).any(axis=(2, 3))  # only without a dense format
    if misfits.any():
        first_nm = layout.formats.data[min(code.nm)]
        if not prune:
            r, c = (int(i) for i in np.argwhere(misfits)[0])
            raise ValueError(
                f"w's {code.tile_name(r, c)} fits none of the formats of {layout.summary()} "
                f"({int(misfits.sum())} tiles fit none; prune='magnitude' prunes them to {first_nm.summary()})"
            )
        codes[misfits] = table_code(min(code.nm))
    dense = [f for f, nm in enumerate(code.formats) if nm is None]
    stays = int(np.count_nonzero(codes == table_code(dense[0]))) if dense else 0
    if stays and code.nm and prune:  # pruning would need to know which tiles may lose weights
        warn(
            f"pack: prune='magnitude' prunes no tile of {layout.summary()} without plan=: {stays} of "
            f"{int((t != 0).any(axis=(2, 3)).sum())} non-empty tiles fit no nm format as they are and stay dense; "
            "pass plan='auto' with sparsity=s (or a table of codes) to choose the tiles to prune"
        )
    return codes


def _conform(t: Array, codes: Array, layout: HybridAttr, code: HybridCodec, prune: bool) -> Array:
    """The tiles, each made to satisfy its code by pruning, else a ValueError naming the first that does not."""
    th, tw = code.tile
    bad = {-1: (codes == EMPTY) & (t != 0).any(axis=(2, 3))}
    bad |= {f: (codes == table_code(f)) & code.violations(t, f) for f in code.nm}
    if not any(b.any() for b in bad.values()):
        return t
    if not prune:
        f, where = next((f, b) for f, b in bad.items() if b.any())
        r, c = (int(i) for i in np.argwhere(where)[0])
        if f < 0:
            why = f"planned empty, but it has {np.count_nonzero(t[r, c])} non-zeros"
        else:
            violation = code.nm[f].first_violation(t[r, c])
            assert violation is not None
            row, group, count, _ = violation
            m = code.nm[f].m
            first = c * tw + group * m
            why = (
                f"planned {layout.formats.data[f].summary()}, but row {r * th + row}, "
                f"columns {first}..{first + m - 1} hold {count} non-zeros"
            )
        raise ValueError(f"w violates the plan at {code.tile_name(r, c)}: {why} ({int(where.sum())} tiles violate it)")
    t = t.copy()  # never prune the caller's matrix in place
    t[bad[-1]] = 0
    for f, nm in code.nm.items():
        t[bad[f]] = nm.prune(t[bad[f]].reshape(-1, tw)).reshape(-1, th, tw)
    return t


def _pack(w: Array, layout: HybridAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    code = layout.codec(w.shape)
    t = code.tiles(w)
    if opts.plan is None:
        codes = _derived_codes(t, layout, code, opts.prune)
    else:
        codes = _planned_codes(opts.plan, code.grid, len(code.formats))
    t = _conform(t, codes, layout, code, opts.prune)
    return code.encode_tiles(t, codes)


HYBRID = Format(_pack)
