"""Offline calibration: per-input-channel factors s that make a weight easier to quantize.

Both methods return s [K] (float32, positive) for a weight w [R, K] seen by activations
x [N, K]. The product is unchanged in exact arithmetic, x @ w.T = (x / s) @ (w * s).T,
so the weight is packed as Q(w * s) and the caller feeds x / s: 1/s is folded into the
op that produces x (a norm's gain, the previous layer's output channels), as
SmoothQuant and AWQ do. `pack(..., calibrate=...)` records s as `input_scale`.

Weights that read the same activations (q, k and v read one normed input) need one s, folded
once: both methods take the group's matrices together (`w` a sequence), and pack(...,
calibrate=s) packs each with that s. Layouts: quantized (int8 ... binary) and `S with Q`;
AWQ's search packs w * s on the way, which it models for `nm(N, M) with Q` (pruned by
magnitude, then quantized) among those.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stoicc_py.dialects.layout import ComposedLayoutAttr, LayoutAttr
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.dialects.sparse import NMAttr
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing.common import Array
from stoicc_py.packing.composed import nm_dequantize, nm_quantize
from stoicc_py.packing.quant import fake_quantize

F32 = np.float32
METHODS = ("smoothquant", "awq")


Weights = Array | Sequence[Array]
"""One matrix [R, K], or the matrices [R_j, K] that read the same activations."""


def _check(x: Array, w: Weights) -> list[Array]:
    ws = [w] if isinstance(w, np.ndarray) else list(w)
    for name, a in (("activations", x), *(("w", m) for m in ws)):
        if not isinstance(a, np.ndarray) or a.dtype != F32 or a.ndim != 2:
            raise ValueError(f"calibrate: {name} must be a 2-D float32 array")
    if not ws:
        raise ValueError("calibrate: no weights")
    if bad := [m.shape[1] for m in ws if m.shape[1] != x.shape[1]]:
        raise ValueError(f"calibrate: activations have {x.shape[1]} channels, w has {bad[0]} input channels (columns)")
    return ws


def smoothquant(x: Array, w: Weights, alpha: float = 0.5) -> Array:
    """SmoothQuant's s[k] = max|x[:, k]|^alpha / max|w[:, k]|^(1 - alpha) (w: over every matrix
    of the group): migrates the activations' outlier channels into the weights. A channel that
    is zero in x or w gets 1."""
    ws = _check(x, w)
    if not 0 <= alpha <= 1:
        raise ValueError(f"smoothquant: alpha must be in [0, 1], got {alpha}")
    ax, aw = np.abs(x).max(axis=0), np.max([np.abs(m).max(axis=0) for m in ws], axis=0)
    live = (ax > 0) & (aw > 0)
    ratio = np.power(ax, F32(alpha)) / np.power(np.where(live, aw, F32(1)), F32(1 - alpha))
    return np.where(live, ratio, F32(1)).astype(F32)


def fake_pack(w: Array, layout: LayoutAttr) -> Array:
    """The matrix that packing w in `layout` stores: quantized (round to nearest), or for
    `nm(N, M) with Q` pruned by magnitude and quantized."""
    if isinstance(layout, UniformQuantAttr):
        return fake_quantize(w, layout)
    assert isinstance(layout, ComposedLayoutAttr)  # _layout's check
    codes, words = nm_quantize(w, layout, prune=True)
    return nm_dequantize(codes, words, layout)


def _output_error(x: Array, ws: list[Array], ys: list[Array], s: Array, layout: LayoutAttr) -> float:
    """sqrt(sum_j ||y_j - (x / s) @ P(w_j * s).T||_F^2) with y_j = x @ w_j.T, P fake_pack."""
    xs = x / s
    return float(np.sqrt(sum(np.square(y - xs @ fake_pack(w * s, layout).T).sum() for w, y in zip(ws, ys))))


def awq(x: Array, w: Weights, layout: LayoutAttr | str, grid: int = 20) -> Array:
    """AWQ's activation-aware scales: s = mean|x[:, k]|^a for a = i / grid (i = 0 .. grid - 1),
    normalised by sqrt(max(s) * min(s)); the s minimising the output error of the packed
    weights (summed over the group's matrices). a = 0 (s = 1) is plain packing, so AWQ never
    does worse on x; ties keep the smaller a."""
    ws = _check(x, w)
    if grid < 1:
        raise ValueError(f"awq: grid must be positive, got {grid}")
    attr = _layout(layout)
    mean = np.abs(x).mean(axis=0, dtype=F32)
    positive = mean[mean > 0]
    # A channel x never uses must not send s to 0 or inf; give it the quietest live one's mean.
    mean = np.where(mean > 0, mean, positive.min() if positive.size else F32(1))
    ys = [x @ m.T for m in ws]
    best, best_err = np.ones_like(mean), np.inf
    for i in range(grid):
        s = np.power(mean, F32(i / grid))
        s = s / np.sqrt(s.max() * s.min())
        err = _output_error(x, ws, ys, s, attr)
        if err < best_err:
            best, best_err = s, err
    return best


def _layout(layout: LayoutAttr | str) -> LayoutAttr:
    if isinstance(layout, str):
        layout = parse_layout(layout)
    if not isinstance(layout, UniformQuantAttr) and not (
        isinstance(layout, ComposedLayoutAttr) and isinstance(layout.sparse, NMAttr)
    ):
        raise ValueError(f"awq: packs quantized layouts and nm(N, M) with Q, not {layout.summary()}")
    return layout


def input_scale(w: Weights, layout: LayoutAttr, method: str | Array, activations: Array | None, alpha: float) -> Array:
    """The factors s of `method` for packing w (one matrix, or a group that reads the same
    activations) in `layout`, or `method` itself if it is factors (see pack's `calibrate`)."""
    if isinstance(method, np.ndarray):
        return given_scale(method, (w if isinstance(w, np.ndarray) else w[0]).shape[1])
    if method not in METHODS:
        raise ValueError(f"pack: calibrate must be None, 'smoothquant', 'awq' or factors s [cols], got {method!r}")
    if not isinstance(layout, UniformQuantAttr | ComposedLayoutAttr):
        raise ValueError(
            f"pack: calibrate={method!r} applies to quantized layouts and S with Q, not {layout.summary()}"
        )
    if activations is None:
        cols = (w if isinstance(w, np.ndarray) else w[0]).shape[1]
        raise ValueError(f"pack: calibrate={method!r} needs activations= (sample inputs [N, {cols}])")
    if method == "smoothquant":
        return smoothquant(activations, w, alpha)
    return awq(activations, w, layout)


def given_scale(s: Array, cols: int) -> Array:
    """Factors given to pack(calibrate=s) (e.g. a group's, for each of its matrices): float32
    [cols], finite and positive."""
    if s.dtype != F32 or s.shape != (cols,) or not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError(
            f"pack: calibrate factors must be finite positive float32[{cols}], got {s.dtype}{list(s.shape)}"
        )
    return s.copy()
