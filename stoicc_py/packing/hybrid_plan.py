"""Which hybrid tiles become 2:4: a cost-driven plan for a target sparsity.

STOICC's inspector assigns tile formats at random; here each tile is scored by the
output error that 2:4 pruning would introduce there, and the tiles that lose least
per unit of time saved are made 2:4 until the savings reach the target sparsity's
(docs/explore.md). In the spirit of PATCH's prior, tiles whose weights are spread
evenly lose little to 2:4; tiles that hold concentrated large weights stay dense.

    plan = plan_hybrid(w, 64, 0.25, x)     # table codes for hybrid(..., formats=[dense, nm(2, 4)])
    packed = pack(w, "hybrid(tile=[64, 64], formats=[dense, nm(2, 4)])", prune="magnitude", plan=plan)
"""

from __future__ import annotations

import numpy as np

from stoicc_py.codec.hybrid import table_code
from stoicc_py.codec.schedule import grid, tiles, untile
from stoicc_py.dialects.sparse import HybridAttr, NMAttr
from stoicc_py.packing.common import Array

DENSE_CODE, NM_CODE = table_code(0), table_code(1)
"""Table codes of `hybrid(tile=..., formats=[dense, nm(2, 4)])`, the layout plans are made for."""
MAX_SPARSITY = 0.5
"""Every tile 2:4: half the weights zero."""


def _tile_shape(tile: int | tuple[int, int]) -> tuple[int, int]:
    th, tw = (tile, tile) if isinstance(tile, int | np.integer) else tile
    return int(th), int(tw)


def _grid(shape: tuple[int, ...], th: int, tw: int) -> tuple[int, int]:
    """The tile grid; the last tile row and column may be ragged (stored whole, zero-padded)."""
    if len(shape) != 2 or th <= 0 or tw <= 0 or tw % 4:
        raise ValueError(f"tile [{th}, {tw}] does not split w of shape {list(shape)} into 2:4 tiles")
    return grid((int(shape[0]), int(shape[1])), th, tw)


def tile_sizes(shape: tuple[int, ...], th: int, tw: int) -> Array:
    """[tile rows, tile cols]: the weights of w each tile holds (fewer in a ragged last tile)."""
    tr, tc = _grid(shape, th, tw)
    rows = np.minimum(th, shape[0] - th * np.arange(tr))
    cols = np.minimum(tw, shape[1] - tw * np.arange(tc))
    return np.outer(rows, cols).astype(np.float64)


def _check_sparsity(sparsity: float) -> None:
    if not 0 <= sparsity <= MAX_SPARSITY:
        raise ValueError(f"sparsity must be in [0, {MAX_SPARSITY}] (a 2:4 tile is half zeros), got {sparsity}")


def prune_loss(w: Array, tile: int | tuple[int, int], x: Array | None = None, hessian: Array | None = None) -> Array:
    """[tile rows, tile cols]: the squared output error that pruning each tile alone to 2:4 (by
    magnitude, as pack does) adds, ||x_c @ d^T||_F^2 with d the tile's pruned weights and x_c
    its columns of the activations; without x, ||d||_F^2 (x the identity). From the Hessian
    2 x^T x / n [K, K] instead of x: sum over the tile's rows of d_r H_cc d_r^T, the same loss
    times 2 / n (layer-by-layer calibration keeps the Hessian, not the rows)."""
    th, tw = _tile_shape(tile)
    tr, tc = _grid(w.shape, th, tw)
    # pruned as pack prunes: each tile's rows whole, a ragged tile's padded with zeros
    padded = untile(tiles(w.astype(np.float32), th, tw))
    dropped = (padded - NMAttr(2, 4).codec(padded.shape).prune(padded))[:, : w.shape[1]]
    if hessian is not None:
        return _hessian_loss(dropped, hessian, th, tw)
    if x is None:
        return (tiles(dropped.astype(np.float64), th, tw) ** 2).sum(axis=(2, 3))
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"activations must have shape [rows, {w.shape[1]}], got {list(x.shape)}")
    loss = np.empty((tr, tc))
    for c in range(tc):
        cols = slice(c * tw, (c + 1) * tw)
        # this tile column's error [rows of x, rows of w]; contiguous operands take BLAS's fast path
        out = np.ascontiguousarray(x[:, cols], np.float32) @ np.ascontiguousarray(dropped[:, cols]).T
        loss[:, c] = np.square(out, dtype=np.float64).reshape(x.shape[0], tr, th).sum(axis=(0, 2))
    return loss


def _hessian_loss(dropped: Array, h: Array, th: int, tw: int) -> Array:
    rows, cols = dropped.shape
    if h.shape != (cols, cols):
        raise ValueError(f"hessian must have shape [{cols}, {cols}], got {list(h.shape)}")
    d = dropped.astype(np.float64)
    tr, tc = _grid(d.shape, th, tw)
    per_row = np.stack(  # [rows, tile cols]: d_r H_cc d_r^T for each tile column c
        [((d[:, c : c + tw] @ h[c : c + tw, c : c + tw]) * d[:, c : c + tw]).sum(axis=1) for c in range(0, cols, tw)],
        axis=1,
    )
    return np.pad(per_row, ((0, tr * th - rows), (0, 0))).reshape(tr, th, tc).sum(axis=1)


def nm_tiles(w: Array, tile: int | tuple[int, int], sparsity: float, x: Array | None = None,
             cost: Array | None = None, hessian: Array | None = None) -> Array:  # fmt: skip
    """bool [tile rows, tile cols]: the tiles to store 2:4 (see plan_hybrid)."""
    th, tw = _tile_shape(tile)
    loss = prune_loss(w, (th, tw), x, hessian)
    saving = tile_sizes(w.shape, th, tw) / 2 if cost is None else np.asarray(cost, np.float64)
    return choose_tiles(loss, saving, sparsity)


def choose_tiles(loss: Array, saving: Array, sparsity: float) -> Array:
    """bool [tile rows, tile cols]: the tiles of least loss per saving whose savings reach the
    target sparsity's (nm_tiles; stoicc_py.packing.methods scores tiles by their OBS error)."""
    _check_sparsity(sparsity)
    if saving.shape != loss.shape or not (saving > 0).all():
        raise ValueError(f"cost must be positive, one per tile: shape {list(loss.shape)}, got {list(saving.shape)}")
    order = np.argsort((loss / saving).ravel(), kind="stable")
    # The fewest tiles, cheapest first, whose savings reach the target's: with equal savings,
    # ceil(2 * sparsity * tiles) of them.
    target = 2 * sparsity * saving.sum() * (1 - 1e-12)
    count = int(np.searchsorted(np.cumsum(saving.ravel()[order]), target)) + (target > 0)
    chosen = np.zeros(loss.size, bool)
    chosen[order[: min(count, loss.size)]] = True
    return chosen.reshape(loss.shape)


def plan_hybrid(
    w: Array, tile: int | tuple[int, int], sparsity: float, x: Array | None = None, cost: Array | None = None
) -> Array:
    """Table codes (int8 [tile rows, tile cols]) for `w` in `hybrid(tile=[th, tw], formats=[dense,
    nm(2, 4)])` at `sparsity` (0..0.5 of w's weights zero): the tiles where 2:4 pruning costs the
    least output error per unit of time it saves (prune_loss, on the activations `x` [rows, K] if
    given) are NM_CODE, the others DENSE_CODE. `cost` [tile rows, tile cols]: the time each tile
    saves as 2:4 (any unit); by default half its multiply-adds, th * tw / 2 (a ragged last tile's:
    half its real size, `tile_sizes`), so with whole tiles the plan keeps the ceil(2 * sparsity *
    tiles) cheapest. Pack with prune="magnitude"."""
    chosen = nm_tiles(np.asarray(w), tile, sparsity, x, cost)
    return np.where(chosen, NM_CODE, DENSE_CODE).astype(np.int8)


def random_plan(
    shape: tuple[int, int], tile: int | tuple[int, int], sparsity: float, rng: np.random.Generator
) -> Array:
    """The baseline: as many 2:4 tiles as plan_hybrid's default with whole tiles (equal costs),
    chosen at random."""
    _check_sparsity(sparsity)
    th, tw = _tile_shape(tile)
    tr, tc = _grid(shape, th, tw)
    count = int(np.ceil(2 * sparsity * tr * tc * (1 - 1e-12)))
    codes = np.full(tr * tc, DENSE_CODE, np.int8)
    codes[rng.permutation(codes.size)[:count]] = NM_CODE
    return codes.reshape(tr, tc)


def auto_plan(w: Array, layout: HybridAttr, sparsity: float | None, x: Array | None,
              hessian: Array | None = None) -> Array:  # fmt: skip
    """pack(..., plan="auto"): plan_hybrid's tiles in `layout`'s own table codes, scored on the
    activations `x` or their `hessian`."""
    formats = [f.summary() for f in layout.formats.data]
    if sparsity is None or "dense" not in formats or "nm(2, 4)" not in formats:
        raise ValueError(
            f"plan='auto' needs sparsity= and a hybrid layout with formats dense and nm(2, 4), got "
            f"{layout.summary()} and sparsity={sparsity}"
        )
    chosen = nm_tiles(w, layout.tile_shape, sparsity, x, hessian=hessian)
    codes = table_code(formats.index("nm(2, 4)")), table_code(formats.index("dense"))
    return np.where(chosen, *codes).astype(np.int8)
