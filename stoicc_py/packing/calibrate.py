"""Offline calibration: per-input-channel factors s that make a weight easier to quantize.

Both methods return s [K] (float32, positive) for a weight w [R, K] seen by activations
x [N, K]. The product is unchanged in exact arithmetic, x @ w.T = (x / s) @ (w * s).T,
so the weight is packed as Q(w * s) and the caller feeds x / s: 1/s is folded into the
op that produces x (a norm's gain, the previous layer's output channels), as
SmoothQuant and AWQ do. `pack(..., calibrate=...)` records s as `input_scale`.
"""

from __future__ import annotations

import numpy as np

from stoicc_py.dialects.layout import LayoutAttr
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.packing.common import Array
from stoicc_py.packing.quant import fake_quantize

F32 = np.float32
METHODS = ("smoothquant", "awq")


def _check(x: Array, w: Array) -> None:
    for name, a in (("activations", x), ("w", w)):
        if not isinstance(a, np.ndarray) or a.dtype != F32 or a.ndim != 2:
            raise ValueError(f"calibrate: {name} must be a 2-D float32 array")
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"calibrate: activations have {x.shape[1]} channels, w has {w.shape[1]} input channels (columns)"
        )


def smoothquant(x: Array, w: Array, alpha: float = 0.5) -> Array:
    """SmoothQuant's s[k] = max|x[:, k]|^alpha / max|w[:, k]|^(1 - alpha): migrates the
    activations' outlier channels into the weight. A channel that is zero in x or w gets 1."""
    _check(x, w)
    if not 0 <= alpha <= 1:
        raise ValueError(f"smoothquant: alpha must be in [0, 1], got {alpha}")
    ax, aw = np.abs(x).max(axis=0), np.abs(w).max(axis=0)
    live = (ax > 0) & (aw > 0)
    ratio = np.power(ax, F32(alpha)) / np.power(np.where(live, aw, F32(1)), F32(1 - alpha))
    return np.where(live, ratio, F32(1)).astype(F32)


def _output_error(x: Array, w: Array, y: Array, s: Array, layout: UniformQuantAttr | str) -> float:
    """||y - (x / s) @ Q(w * s).T||_F with y = x @ w.T."""
    return float(np.linalg.norm(y - (x / s) @ fake_quantize(w * s, layout).T))


def awq(x: Array, w: Array, layout: UniformQuantAttr | str, grid: int = 20) -> Array:
    """AWQ's activation-aware scales: s = mean|x[:, k]|^a for a = i / grid (i = 0 .. grid - 1),
    normalised by sqrt(max(s) * min(s)); the s minimising the output error of the quantized
    weight. a = 0 (s = 1) is plain round to nearest, so AWQ never does worse on x; ties
    keep the smaller a."""
    _check(x, w)
    if grid < 1:
        raise ValueError(f"awq: grid must be positive, got {grid}")
    mean = np.abs(x).mean(axis=0, dtype=F32)
    positive = mean[mean > 0]
    # A channel x never uses must not send s to 0 or inf; give it the quietest live one's mean.
    mean = np.where(mean > 0, mean, positive.min() if positive.size else F32(1))
    y = x @ w.T
    best, best_err = np.ones_like(mean), np.inf
    for i in range(grid):
        s = np.power(mean, F32(i / grid))
        s = s / np.sqrt(s.max() * s.min())
        err = _output_error(x, w, y, s, layout)
        if err < best_err:
            best, best_err = s, err
    return best


def input_scale(w: Array, layout: LayoutAttr, method: str, activations: Array | None, alpha: float) -> Array:
    """The factors s of `method` for packing w in `layout` (see pack's `calibrate`)."""
    if method not in METHODS:
        raise ValueError(f"pack: calibrate must be None, 'smoothquant' or 'awq', got {method!r}")
    if not isinstance(layout, UniformQuantAttr):
        raise ValueError(f"pack: calibrate={method!r} applies to quantized layouts, not {layout.summary()}")
    if activations is None:
        raise ValueError(f"pack: calibrate={method!r} needs activations= (sample inputs [N, {w.shape[1]}])")
    if method == "smoothquant":
        return smoothquant(activations, w, alpha)
    return awq(activations, w, layout)
