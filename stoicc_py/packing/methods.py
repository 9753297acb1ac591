"""Error-compensating compression methods: the VALUES a layout stores (its codec encodes them).

`compress(w, layout, method, ...)` returns float32 values that satisfy the layout's pattern
exactly and, for a quantized layout, lie on the grid (scales, zero points) it returns, so
`pack` encodes them without loss: the kernel computes with exactly the method's weights.

- "gptq" (Frantar et al. 2022), quantized layouts: the columns are quantized one by one, and
  after each the OBS update spreads its error over the columns not yet quantized, weighted by
  the inverse Hessian of the calibration activations (its upper Cholesky factor U, so that row
  i of U is the update once column i is fixed); lazy batches of 128 columns. The grid of a
  group is the codec's (uniform.quantize on the group's current, updated columns), computed
  when the sweep reaches the group. `act_order=True` sweeps columns by decreasing diag(H); the
  groups stay those of the original column indices (the layout's), and their grid is then
  computed up front on the original w (the reference's `static_groups`), as are per-channel
  and per-tensor grids always. `grid="mse"`: each of those grids is the searched one
  (uniform.searched_grid: the shrunk min/max range of least sum |w - q|^2.4, GPTQ's reference
  Quantizer with mse=True), computed on the same weights at the same point of the sweep;
  `grid="hmse"` weighs each column's errors in that search by diag(H).
- "sparsegpt" (Frantar & Alistarh 2023), sparse layouts: the same sweep, where pruning a weight
  is rounding it to 0. The mask is chosen on the current weights by w^2 / U[i, i]^2 (the OBS
  error) per group of M columns (nm), per row of each 32 columns (csr, at `sparsity`),
  per [bh, bw] block summed (block), per tile (hybrid: the tiles whose 2:4 OBS error per weight
  saved is least, then 2:4 inside them). `nm(N, M) with Q`: the kept weights are quantized in
  the same sweep, on a grid computed per scale group of stored slots from its kept weights.
- "wanda" (Sun et al. 2023): the mask by |w| * ||x_k||_2 (per group of M, or per row at
  `sparsity`), no update; the cheap baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stoicc_py.codec.hybrid import table_code
from stoicc_py.codec.uniform import CodeBits, Grid, Shrink, quantize, round_codes, searched_grid
from stoicc_py.dialects.layout import ComposedLayoutAttr, LayoutAttr
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.dialects.sparse import BlockAttr, CSRAttr, HybridAttr, NMAttr
from stoicc_py.packing.common import Array
from stoicc_py.packing.hessian import checked, dead, hessian_of, inverse_cholesky
from stoicc_py.packing.hybrid_plan import choose_tiles, tile_sizes

F32 = np.float32
METHODS = ("rtn", "magnitude", "wanda", "gptq", "sparsegpt")
GRIDS = ("minmax", "mse", "hmse")
"""pack(grid=...): a group's range is its min and max; GPTQ's reference search of shrunk ranges
(Shrink: the least sum |w - q|^2.4); or that search with each column's errors weighted by
diag(H) (gptq only: the inputs the layer's output depends on most count most)."""
DATA_METHODS = ("gptq", "sparsegpt", "wanda")
"""The methods that read a Hessian of calibration inputs."""
"""pack(method=...): rtn and magnitude are pack's own rounding and pruning; the others are here."""
BATCH = 128
"""Columns per lazy batch of the sweep (rounded to whole units: groups, tiles)."""
MASK_COLUMNS = 32
"""csr: the columns an unstructured mask is chosen over, on the weights updated so far (the
reference's 128 lost most of SparseGPT's gain over magnitude on the tests' correlated layer)."""


@dataclass(frozen=True)
class Compressed:
    """A method's result: `values` (float32 [R, K], the matrix pack stores), the quantization
    `grid` they lie on (None: not quantized), and the hybrid tile `plan` (table codes) if any."""

    values: Array
    grid: Grid | None = None
    plan: Array | None = None


# ---------------------------------------------------------------------------- masks from scores


def nm_keep(score: Array, n: int, m: int) -> Array:
    """bool: the n highest-scoring of every m consecutive columns of each row (a ragged last
    group is padded with the lowest scores, as pack pads a ragged tile with zeros)."""
    rows, width = score.shape
    pad = -width % m
    padded = np.pad(score, ((0, 0), (0, pad)), constant_values=-np.inf).reshape(rows, -1, m)
    ranks = np.argsort(np.argsort(-padded, axis=2, kind="stable"), axis=2, kind="stable")
    return (ranks < n).reshape(rows, -1)[:, :width]


def row_keep(score: Array, sparsity: float) -> Array:
    """bool: each row's highest scores but round(sparsity * width) of them."""
    drop = round(sparsity * score.shape[1])
    keep = np.ones(score.shape, bool)
    np.put_along_axis(keep, np.argsort(score, axis=1, kind="stable")[:, :drop], False, axis=1)
    return keep


def block_keep(score: Array, bh: int, bw: int, sparsity: float) -> Array:
    """bool: whole [bh, bw] blocks, all but the round(sparsity * blocks) of least summed score."""
    rows, width = score.shape
    tr, tc = -(-rows // bh), -(-width // bw)
    padded = np.zeros((tr * bh, tc * bw))
    padded[:rows, :width] = score
    sums = padded.reshape(tr, bh, tc, bw).sum(axis=(1, 3)).ravel()
    keep = np.ones(sums.size, bool)
    keep[np.argsort(sums, kind="stable")[: round(sparsity * sums.size)]] = False
    return np.repeat(np.repeat(keep.reshape(tr, tc), bh, axis=0), bw, axis=1)[:rows, :width]


Masker = Callable[[int, Array], Array]
"""(first column, scores [R, width] of a unit of columns) -> the bool mask of weights kept."""


def _masker(sparse: LayoutAttr, sparsity: float | None, plan: Array | None) -> tuple[Masker, int]:
    """The mask of `sparse` and its unit (the columns it is chosen over)."""
    if isinstance(sparse, NMAttr):
        n, m = sparse.n.data, sparse.m.data
        return (lambda j, s: nm_keep(s, n, m)), m
    rate = _sparsity(sparse, sparsity)
    if isinstance(sparse, CSRAttr):
        return (lambda j, s: row_keep(s, rate)), MASK_COLUMNS
    if isinstance(sparse, BlockAttr):
        bh, bw = sparse.bh.data, sparse.bw.data
        return (lambda j, s: block_keep(s, bh, bw, rate)), bw * max(1, BATCH // bw)
    assert isinstance(sparse, HybridAttr) and plan is not None
    th, tw = sparse.tile_shape
    nm_rows = np.repeat(plan == table_code(_formats(sparse).index("nm(2, 4)")), th, axis=0)

    def hybrid_keep(j: int, s: Array) -> Array:
        return nm_keep(s, 2, 4) | ~nm_rows[: s.shape[0], j // tw, None]

    return hybrid_keep, tw


def _sparsity(layout: LayoutAttr, sparsity: float | None) -> float:
    if sparsity is None or not 0 <= sparsity < 1:
        raise ValueError(f"pack: {layout.summary()} needs sparsity= in [0, 1) (the fraction pruned), got {sparsity}")
    return float(sparsity)


def _formats(layout: HybridAttr) -> list[str]:
    formats = [f.summary() for f in layout.formats.data]
    if sorted(formats) != ["dense", "nm(2, 4)"]:
        raise ValueError(
            f"pack: the methods plan hybrid layouts with formats dense and nm(2, 4), not {layout.summary()}"
        )
    return formats


# ---------------------------------------------------------------------------- the grid, column by column


@dataclass
class ColumnGrid:
    """The quantization grid of the stored matrix, filled as the sweep goes: `scales` (stored
    dtype) and `zero_points` (int32) or a float zero's `offsets` (stored dtype) in the layout's
    scale_shape of the stored matrix ([R, K],
    or the [R, K * n / m] slots of `nm(n, m) with Q`). `dynamic`: a group's (or column's)
    grid is computed when the sweep reaches it; else the whole grid was computed up front."""

    attr: UniformQuantAttr
    scales: Array
    zero_points: Array | None
    offsets: Array | None
    dynamic: bool
    n: int = 1
    m: int = 1
    order: Array | None = None
    """act_order: the original column of each swept column (whose group's grid it takes)."""
    search: Shrink | None = None
    """grid='mse' / 'hmse': each grid is the searched one (uniform.searched_grid), not the min/max one."""
    importance: Array | None = None
    """grid='hmse': diag(H) of the original columns, weighing each column's errors in the search."""

    @staticmethod
    def of(w: Array, attr: UniformQuantAttr, static: bool, n: int = 1, m: int = 1,
           search: Shrink | None = None, importance: Array | None = None) -> ColumnGrid:  # fmt: skip
        if attr.per.data == "token":
            raise ValueError(f"pack: a weight is not quantized per token ({attr.summary()})")
        q = grid_of(w, attr, search, importance)  # the grid of the original w: kept when static, else overwritten
        per_group = attr.per.data == "group" or attr.per_column
        return ColumnGrid(attr, q.scales.copy(), _copy(q.zero_points), _copy(q.offsets), per_group and not static,
                          n, m, search=search, importance=importance)  # fmt: skip

    @property
    def span(self) -> int:
        """Dense columns per dynamic scale group (1 when static: no grid to compute on the way)."""
        if not self.dynamic:
            return 1
        return 1 if self.attr.per_column else self.attr.group.data * self.m // self.n

    def _index(self, j: int) -> tuple[slice | int, ...]:
        """Where column j's scales are in scale_shape: one per row, or one for all."""
        per = self.attr.per.data
        if per == "tensor":
            return (0,)
        if self.attr.per_column:
            return (j,)
        if per == "channel":
            return (slice(None),)
        return slice(None), j // self.span if self.dynamic else (j // self.m * self.n) // self.attr.group.data

    def begin(self, j: int, kept: Array) -> None:
        """A dynamic group starts at column j: its grid from its kept weights [R, slots]."""
        sub = self.attr if self.attr.per_column else self.attr.regrouped(kept.shape[1])
        # dynamic grids are swept in the original column order (no act_order): column j is j
        importance = None if self.importance is None else self.importance[j : j + kept.shape[1]]
        q = grid_of(np.ascontiguousarray(kept, F32), sub, self.search, importance)
        at = self._index(j)
        self.scales[at] = q.scales.reshape(-1)
        if self.zero_points is not None and q.zero_points is not None:
            self.zero_points[at] = q.zero_points.reshape(-1)
        if self.offsets is not None and q.offsets is not None:
            self.offsets[at] = q.offsets.reshape(-1)

    def round(self, j: int, x: Array) -> Array:
        """Column j's weights x [R] rounded onto its grid: float32 scale * (code - zero point)
        (+ offset), as uniform.dequantize_codes computes it."""
        at = self._index(j if self.order is None else int(self.order[j]))

        def column(a: Array | None) -> Array | None:  # a grid array at column j, float32 [R, 1]
            return None if a is None else np.broadcast_to(a[at], x.shape)[:, None].astype(F32)

        s, m = column(self.scales), column(self.offsets)
        assert s is not None
        codes, zero = round_codes(x.astype(F32)[:, None], s, CodeBits.of(self.attr), column(self.zero_points), m)
        return (s * (codes - zero) if m is None else s * codes + m)[:, 0]

    def result(self) -> Grid:
        return Grid(self.scales, self.zero_points, self.offsets)


def grid_of(x: Array, attr: UniformQuantAttr, search: Shrink | None, importance: Array | None = None) -> Grid:
    """The grid of x in attr: the codec's min/max grid, or the searched one."""
    if search is not None:
        return searched_grid(x, attr, search, importance)
    q = quantize(x, attr)
    return Grid(q.scales, q.zero_points, q.offsets)


def shrink_of(grid: str, method: str | None, layout: LayoutAttr) -> Shrink | None:
    """pack's grid= option: the search it asks for, or a ValueError where it does not apply."""
    if grid not in GRIDS:
        raise ValueError(f"pack: grid must be one of {', '.join(map(repr, GRIDS))}, got {grid!r}")
    if grid == "minmax":
        return None
    if grid == "hmse" and method != "gptq":
        raise ValueError(f"pack: grid='hmse' weighs errors by the Hessian of method='gptq', not method={method!r} "
                         "(grid='mse' needs none)")  # fmt: skip
    if method not in (None, "rtn", "gptq") or not isinstance(layout, UniformQuantAttr):
        raise ValueError(f"pack: grid={grid!r} goes with method='rtn' or 'gptq' on a quantized layout, "
                         f"not method={method!r} on {layout.summary()}")  # fmt: skip
    if layout.codes.data in ("ternary", "binary"):
        raise ValueError(f"pack: grid={grid!r} shrinks a min/max range (int2 ... int8); {layout.summary()}'s scale "
                         "is the mean |w|")  # fmt: skip
    return Shrink()


def _copy(a: Array | None) -> Array | None:
    return None if a is None else a.copy()


# ---------------------------------------------------------------------------- the OBS sweep


@dataclass
class Step:
    """What the sweep does at each unit of columns (choose the mask, start a grid group) and
    each column (prune, round)."""

    unit: int
    mask: Masker | None = None
    grid: ColumnGrid | None = None

    def begin(self, j: int, current: Array, d: Array) -> Array:
        keep = np.ones(current.shape, bool) if self.mask is None else self.mask(j, current**2 / d**2)
        if self.grid is not None and self.grid.dynamic:
            self.grid.begin(j, current[keep].reshape(current.shape[0], -1) if self.mask else current)
        return keep

    def column(self, j: int, x: Array, keep: Array) -> Array:
        if self.grid is not None:
            x = self.grid.round(j, x)
        return np.where(keep, x, F32(0))


def sweep(w: Array, u: Array, step: Step) -> Array:
    """The GPTQ / SparseGPT sweep of w [R, K] with U (inverse_cholesky): each column fixed by
    `step` in turn, its error (w - q) / U[i, i] subtracted along row i of U from the later
    columns: at once inside the batch, lazily (one matrix product) after it."""
    rows, cols = w.shape
    batch = step.unit * max(1, BATCH // step.unit)
    work, out, d = w.astype(F32), np.empty((rows, cols), F32), np.diag(u).astype(F32)
    u = u.astype(F32)
    for b0 in range(0, cols, batch):
        b1 = min(b0 + batch, cols)
        w1, u1 = work[:, b0:b1].copy(), u[b0:b1, b0:b1]
        errors, keep = np.empty((rows, b1 - b0), F32), np.ones((rows, b1 - b0), bool)
        for i in range(b1 - b0):
            j = b0 + i
            if j % step.unit == 0:
                end = min(i + step.unit, b1 - b0)
                keep[:, i:end] = step.begin(j, w1[:, i:end], d[j : b0 + end])
            out[:, j] = step.column(j, w1[:, i], keep[:, i])
            errors[:, i] = (w1[:, i] - out[:, j]) / u1[i, i]
            w1[:, i:] -= np.outer(errors[:, i], u1[i, i:])
        work[:, b1:] -= errors @ u[b0:b1, b1:]
    return out


# ---------------------------------------------------------------------------- the methods


def _gptq(w: Array, h: Array, attr: UniformQuantAttr, act_order: bool, damp: float, search: Shrink | None,
          weighted: bool) -> Compressed:  # fmt: skip
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(w.shape[1])
    importance = np.diag(h).astype(F32) if weighted else None
    grid = ColumnGrid.of(w, attr, static=act_order, search=search, importance=importance)
    grid.order = order if act_order else None
    values = np.empty_like(w)
    values[:, order] = sweep(w[:, order], inverse_cholesky(h[np.ix_(order, order)], damp), Step(grid.span, grid=grid))
    return Compressed(values, grid.result())


def _sparsegpt(w: Array, h: Array, layout: LayoutAttr, sparsity: float | None, damp: float) -> Compressed:
    sparse, q = (layout.sparse, layout.quant) if isinstance(layout, ComposedLayoutAttr) else (layout, None)
    u = inverse_cholesky(h, damp)
    plan = obs_plan(w, u, sparse, sparsity) if isinstance(sparse, HybridAttr) else None
    mask, unit = _masker(sparse, sparsity, plan)
    grid = None
    if q is not None:
        grid = _joint_grid(w, sparse, q)
        unit = max(unit, grid.span)
    return Compressed(sweep(w, u, Step(unit, mask, grid)), None if grid is None else grid.result(), plan)


def _joint_grid(w: Array, sparse: LayoutAttr, q: LayoutAttr) -> ColumnGrid:
    if not isinstance(sparse, NMAttr) or not isinstance(q, UniformQuantAttr):
        raise ValueError(
            f"pack: method='sparsegpt' quantizes jointly under nm(N, M) only, not {sparse.summary()} with "
            f"{q.summary()} (prune with 'sparsegpt' into {sparse.summary()}, or use 'wanda'/'magnitude')"
        )
    n, m = sparse.n.data, sparse.m.data
    if q.per_column or (q.per.data == "group" and q.group.data % n):
        raise ValueError(f"pack: method='sparsegpt' under {sparse.summary()} needs {q.summary()}'s groups to "
                         f"hold whole groups of {n} slots (per channel, per tensor or a group a multiple of {n})")  # fmt: skip
    slots = nm_keep(np.abs(w), n, m)  # a first mask, for the static grids' shape only
    return ColumnGrid.of(w[slots].reshape(w.shape[0], -1), q, static=q.per.data != "group", n=n, m=m)


def obs_plan(w: Array, u: Array, layout: HybridAttr, sparsity: float | None) -> Array:
    """Hybrid table codes: the tiles made 2:4 are those whose OBS error of 2:4 pruning (the sum
    over the tile of w^2 / U[k, k]^2 of the weights 2:4 drops) per weight saved is least."""
    formats = _formats(layout)
    rate = _sparsity(layout, sparsity)
    th, tw = layout.tile_shape
    score = w.astype(np.float64) ** 2 / np.diag(u) ** 2
    dropped = np.where(nm_keep(score, 2, 4), 0.0, score)
    rows, cols = w.shape
    tr, tc = -(-rows // th), -(-cols // tw)
    padded = np.zeros((tr * th, tc * tw))
    padded[:rows, :cols] = dropped
    loss = padded.reshape(tr, th, tc, tw).sum(axis=(1, 3))
    chosen = choose_tiles(loss, tile_sizes(w.shape, th, tw) / 2, rate)
    nm, dense = table_code(formats.index("nm(2, 4)")), table_code(formats.index("dense"))
    return np.where(chosen, nm, dense).astype(np.int8)


def _wanda(w: Array, h: Array, layout: LayoutAttr, sparsity: float | None) -> Compressed:
    sparse = layout.sparse if isinstance(layout, ComposedLayoutAttr) else layout
    if isinstance(sparse, HybridAttr):
        raise ValueError("pack: method='wanda' does not plan hybrid tiles: use 'sparsegpt' (or plan=)")
    mask, _ = _masker(sparse, sparsity, None)
    score = np.abs(w) * np.sqrt(np.diag(h))[None, :]  # ||x_k||_2 is proportional to sqrt(H[k, k])
    return Compressed(np.where(mask(0, score), w, F32(0)))


def _layout_kind(layout: LayoutAttr) -> str:
    if isinstance(layout, UniformQuantAttr):
        return "quant"
    sparse = layout.sparse if isinstance(layout, ComposedLayoutAttr) else layout
    return "sparse" if isinstance(sparse, NMAttr | CSRAttr | BlockAttr | HybridAttr) else "other"


def compress(
    w: Array,
    layout: LayoutAttr,
    method: str,
    *,
    activations: object = None,
    hessian: Array | None = None,
    sparsity: float | None = None,
    act_order: bool = False,
    damp: float = 0.01,
    grid: str = "minmax",
) -> Compressed:
    """The values (and grid, plan) of method "gptq", "sparsegpt" or "wanda" for the float32 w
    [R, K] in `layout`, from calibration `activations` ([n, K], or an iterable of batches) or
    their Hessian 2 x^T x / n (`hessian`, [K, K]); `grid` (GRIDS) chooses GPTQ's grids."""
    kind = _layout_kind(layout)
    want = {"gptq": "quant", "sparsegpt": "sparse", "wanda": "sparse"}.get(method)
    if want is None:
        raise ValueError(f"pack: method must be one of {', '.join(METHODS)}, got {method!r}")
    if kind != want:
        what = (
            "a quantized layout (int8 ... binary)"
            if want == "quant"
            else "a sparse layout (nm, csr, block, hybrid, S with Q)"
        )
        raise ValueError(f"pack: method={method!r} needs {what}, not {layout.summary()}")  # fmt: skip
    if act_order and method != "gptq":
        raise ValueError(f"pack: act_order applies to method='gptq', not {method!r}")
    search = shrink_of(grid, method, layout)
    h = _hessian(w, activations, hessian, method)
    w = np.where(dead(h)[None, :], F32(0), w)  # a weight on an input that is always 0 changes nothing
    if method == "gptq":
        assert isinstance(layout, UniformQuantAttr)
        return _gptq(w, h, layout, act_order, damp, search, grid == "hmse")
    if method == "wanda":
        return _wanda(w, h, layout, sparsity)
    return _sparsegpt(w, h, layout, sparsity, damp)


def _hessian(w: Array, activations: object, h: Array | None, method: str) -> Array:
    if (activations is None) == (h is None):
        raise ValueError(
            f"pack: method={method!r} needs activations= (inputs [n, {w.shape[1]}]) or hessian= (not both)"
        )
    if h is not None:
        return checked(h, w.shape[1])
    return hessian_of(activations, w.shape[1])  # type: ignore[arg-type]
