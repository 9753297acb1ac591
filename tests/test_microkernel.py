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


@pytest.mark.parametrize("k", [300, 2100])
def test_a_linear_row_has_the_bits_of_a_call_of_that_row_alone(k: int) -> None:
    """A call of one row runs each column block's k-tiles in turn (its rows of w read whole),
    more rows every block of a k-tile before the next: each output still sums the same
    k-tiles of the same steps in the same order, so the bits agree (K = 2100: two whole
    k-tiles of 1024 and a ragged one). Two rows, fewer than any register block's, are two
    blocks of one row, as the call of one row is: blocks of several rows reduce their lanes
    in an order of LLVM's choosing (fast-math sums), which may differ in the last bit."""
    n = 101
    f = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}], b: f32[{n}]) -> f32[M, {n}] {{ return relu(linear(x, w, b)) }}"
    ).f
    f.threads = 1
    rng = np.random.default_rng(k)
    x, w = rng.standard_normal((2, k), dtype=np.float32), rng.standard_normal((n, k), dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    whole = f(x, w, b)
    rows = np.concatenate([f(x[i : i + 1], w, b) for i in range(len(x))])
    assert np.array_equal(rows.view(np.uint32), whole.view(np.uint32))


def test_unaligned_buffers() -> None:
    """numpy buffers are only element-aligned: vector loads must not assume more."""
    prog = stoicc_py.compile("kernel f(x: f32[M, 64], w: f32[8, 64]) -> f32[M, 8] { return linear(x, w) }")
    raw_x, raw_w = np.zeros(4 * 64 + 1, np.float32), np.zeros(8 * 64 + 1, np.float32)
    x, w = raw_x[1:].reshape(4, 64), raw_w[1:].reshape(8, 64)  # 4 bytes past an aligned start
    x[:], w[:] = np.arange(4 * 64).reshape(4, 64) % 7, np.arange(8 * 64).reshape(8, 64) % 5
    np.testing.assert_allclose(prog.f(x, w), x @ w.T, rtol=1e-6)


MATMUL_SHAPES = [(100, 37), (2100, 9)]
"""(n, k) of b [k, n]: n off every vector and register block (96 + 4 scalar columns), and
past one of StreamKernel's n-tiles (2048 columns); k off its 8-row steps."""


@pytest.fixture(scope="module", params=MATMUL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def matmul_kernel(request: pytest.FixtureRequest) -> tuple[stoicc_py.Kernel, int, int]:
    n, k = request.param
    source = f"kernel f(x: f32[M, {k}], w: f32[{k}, {n}], b: f32[{n}]) -> f32[M, {n}] {{ return relu(matmul(x, w) + b) }}"
    return stoicc_py.compile(source).f, n, k


@pytest.mark.parametrize("m", [1, 3, 7, 16])
def test_matmul_matches_numpy_on_every_edge(matmul_kernel: tuple[stoicc_py.Kernel, int, int], m: int) -> None:
    """One kernel (M symbolic) for every m: rows in register blocks of 6 and the rows left
    in StreamKernel's groups (1; 2 + 1; 6 + 1; 12 + 4)."""
    f, n, k = matmul_kernel
    rng = np.random.default_rng(m * 1000 + n + k)
    x, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    expected = np.maximum(x.astype(np.float64) @ w.astype(np.float64) + b, 0)
    np.testing.assert_allclose(f(x, w, b), expected, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_matmul_rows_agree_bit_for_bit_across_kernels(matmul_kernel: tuple[stoicc_py.Kernel, int, int]) -> None:
    """A row sums in the same order in a register block and in StreamKernel (so a call
    split into row blocks over threads gives the bits of a whole one)."""
    f, n, k = matmul_kernel
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((7, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    b = np.zeros(n, np.float32)
    whole = f(x, w, b)  # rows 0..5 in a register block, row 6 streamed
    np.testing.assert_array_equal(whole, np.concatenate([f(x[i : i + 1], w, b) for i in range(7)]))
