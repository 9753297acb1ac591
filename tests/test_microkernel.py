"""The vector microkernels (tdsl-microkernel) against numpy on ragged shapes: every
edge of the register block, the vector width and the k-tile."""

import numpy as np
import pytest

import stoicc_py


@pytest.mark.parametrize(("n", "k"), [(1, 1), (5, 15), (7, 17), (48, 64), (50, 1100), (13, 2049)])
@pytest.mark.parametrize("m", [1, 3, 4, 5, 17])
def test_linear_matches_numpy_on_every_edge(m: int, n: int, k: int) -> None:
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}], b: f32[{n}]) -> f32[M, {n}] {{ return relu(linear(x, w, b)) }}"
    )
    rng = np.random.default_rng(m * 1000 + n + k)
    x, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((n, k), dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    expected = np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + b, 0)
    np.testing.assert_allclose(prog.f(x, w, b), expected, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_unaligned_buffers() -> None:
    """numpy buffers are only element-aligned: vector loads must not assume more."""
    prog = stoicc_py.compile("kernel f(x: f32[M, 64], w: f32[8, 64]) -> f32[M, 8] { return linear(x, w) }")
    raw_x, raw_w = np.zeros(4 * 64 + 1, np.float32), np.zeros(8 * 64 + 1, np.float32)
    x, w = raw_x[1:].reshape(4, 64), raw_w[1:].reshape(8, 64)  # 4 bytes past an aligned start
    x[:], w[:] = np.arange(4 * 64).reshape(4, 64) % 7, np.arange(8 * 64).reshape(8, 64) % 5
    np.testing.assert_allclose(prog.f(x, w), x @ w.T, rtol=1e-6)
