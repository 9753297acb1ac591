"""Calibration Hessians for the error-compensating methods (stoicc_py.packing.methods).

A linear layer y = x w^T quantized or pruned to v adds the output error
||x (w - v)^T||^2 = sum_r (w_r - v_r) H (w_r - v_r)^T / 2 * n over the n rows of x, with
H = 2 x^T x / n [K, K]: the one statistic GPTQ, SparseGPT and Wanda (its diagonal) read.
It is accumulated chunk by chunk, so memory stays one [K, K] per layer whatever the number
of calibration rows: each chunk's x^T x in float32 (BLAS's fast product; a sum of at most
CHUNK rows, relative error ~1e-6), their sum in float64.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from stoicc_py.packing.common import Array

CHUNK = 2048
"""Rows of activations multiplied at a time."""
DAMP = 0.01
"""The default damping: 1% of the mean of diag(H) added to the diagonal, as GPTQ does."""
FACTORS_KEPT = 2
"""inverse_cholesky keeps its last factors, by the Hessian's contents: the projections that
read one input (q/k/v, gate/up) share its Hessian (SmolLM2 int4 g64 GPTQ, whole model:
99 -> 92 s, the same weights)."""
_factors: dict[tuple[bytes, tuple[int, ...], float], Array] = {}


class HessianAccumulator:
    """H = 2 x^T x / n over activations fed in batches (each [rows, cols], any float dtype)."""

    def __init__(self, cols: int) -> None:
        self.cols = cols
        self.rows = 0
        self._sum = np.zeros((cols, cols))

    def add(self, x: Array) -> None:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.cols:
            raise ValueError(
                f"activations must have shape [rows, {self.cols}] (one column per input channel of w), "
                f"got {list(x.shape)}"
            )
        if x.dtype.kind != "f" or not np.isfinite(x).all():
            raise ValueError("activations must be finite floats")
        for start in range(0, x.shape[0], CHUNK):
            c = np.ascontiguousarray(x[start : start + CHUNK], np.float32)
            self._sum += c.T @ c
        self.rows += x.shape[0]

    def hessian(self) -> Array:
        if self.rows == 0:
            raise ValueError("no activations: the Hessian needs at least one row")
        return 2 * self._sum / self.rows


def hessian_of(activations: Array | Iterable[Array], cols: int) -> Array:
    """H [cols, cols] (float64) of activations: one array [n, cols], or an iterable of batches."""
    acc = HessianAccumulator(cols)
    for batch in [activations] if isinstance(activations, np.ndarray) else activations:
        acc.add(batch)
    return acc.hessian()


def checked(h: object, cols: int) -> Array:
    """h as a finite symmetric float64 [cols, cols] matrix, else a ValueError."""
    h = np.asarray(h, np.float64)
    if h.shape != (cols, cols):
        raise ValueError(f"hessian must have shape [{cols}, {cols}] (w's input channels), got {list(h.shape)}")
    if not np.isfinite(h).all():
        raise ValueError("hessian is not finite (NaN or inf in the calibration activations?)")
    return h


def dead(h: Array) -> Array:
    """bool [K]: the input channels the activations never use (diag(H) = 0)."""
    return np.diag(h) == 0


def inverse_cholesky(h: Array, damp: float = DAMP) -> Array:
    """U, upper triangular, with U^T U = (H + damp * mean(diag H) * I)^-1, where a dead channel's
    diagonal is set to 1 (its weight multiplies zeros). Row i of U gives the OBS update of the
    columns after i once column i is fixed; U[i, i]^2 is the inverse Hessian's diagonal
    conditioned on the columns before i. ValueError if H is not positive definite once damped.
    The result is read-only (kept for the next call with the same H and damp: FACTORS_KEPT)."""
    if damp < 0:
        raise ValueError(f"damp must be >= 0, got {damp}")
    key = (hashlib.blake2b(np.ascontiguousarray(h).tobytes(), digest_size=16).digest(), h.shape, damp)
    if (u := _factors.get(key)) is None:
        u = _inverse_cholesky(h, damp)
        u.flags.writeable = False  # shared by the projections of one input
        while len(_factors) >= FACTORS_KEPT:
            del _factors[next(iter(_factors))]
        _factors[key] = u
    return u


def _inverse_cholesky(h: Array, damp: float) -> Array:
    h = h.copy()
    h[np.diag_indices_from(h)] = np.where(dead(h), 1.0, np.diag(h))
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    try:
        # With J the reversal and J H J = L L^T: H^-1 = (J L^-1 J)^T (J L^-1 J), and J L^-1 J is
        # upper triangular: one Cholesky and one inverse, not the reference's three factorizations.
        lower = np.linalg.cholesky(h[::-1, ::-1])
        return np.ascontiguousarray(np.linalg.inv(lower)[::-1, ::-1])
    except np.linalg.LinAlgError:
        raise ValueError(
            f"hessian is not positive definite after damping {damp} x mean(diag): raise damp= "
            "or calibrate on more (and more varied) rows"
        ) from None
