"""Comparisons, bool tensors, where, iota, size symbols as values, keepdims reductions,
mean, rsqrt, and the vectorised rows of tdsl-vectorize-elementwise (softmax, RMSNorm,
elementwise chains) on ragged row lengths: compiled kernels against the reference
interpreter and plain numpy. One program, compiled once for the module."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py.diagnostics import CompileError

SOURCE = """
kernel cmp(a: f32[M, N], b: f32[N]) -> (bool[M, N], bool[M, N], bool[M, N], bool[M, N], bool[M, N], bool[M, N]) {
  return a < b, a <= b, a > b, a >= b, a == b, a != b
}
kernel sel(c: bool[M, N], a: f32[M, N], b: f32[N]) -> f32[M, N] {
  return where(c, a, b)
}
kernel red(x: f32[M, N]) -> (f32[M, 1], f32[M, 1], f32[M, 1], f32[N], f32[1, N]) {
  return sum(x, axis=-1, keepdims=true), max(x, axis=1, keepdims=true), mean(x, axis=1, keepdims=true),
         mean(x, axis=0, keepdims=false), max(x, axis=0, keepdims=true)
}
kernel causal(s: f32[T, S], past: f32[P, 4]) -> (f32[T, S], bool[T, S], i32[]) {
  m = iota([T, S], axis=1) <= iota([T, S], axis=0) + P
  return softmax(where(m, s, -1e30), axis=-1), m, P
}
kernel ints(i: i32[M, N], j: i32[N]) -> (i32[M, N], bool[M, N], i32[M, N]) {
  return i * j - i + j, i >= j, where(i < j, i, j)
}
kernel norms(x: f32[T, N], g: f32[N]) -> (f32[T, N], f32[T, N], f32[T, N]) {
  r = x * rsqrt(mean(x * x, axis=-1, keepdims=true) + 1e-5) * g
  e = silu(x) * g + sigmoid(x) - exp(x / 4.0) + relu(x) / (abs(x) + 1.0) + sqrt(abs(g))
  return softmax(x, axis=-1), r, e
}
"""


@pytest.fixture(scope="module")
def program() -> stoicc_py.Program:
    return stoicc_py.compile(SOURCE)


def both(kernel: stoicc_py.Kernel, *args: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    got, want = kernel(*args), kernel.reference(*args)
    got, want = (got, want) if isinstance(got, tuple | list) else ((got,), (want,))
    return list(zip(got, want))


def test_comparisons_broadcast_to_bool(program: stoicc_py.Program) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(-2, 3, (5, 17)).astype(np.float32)
    b = rng.integers(-2, 3, 17).astype(np.float32)
    a[0, 0] = np.nan
    expected = [a < b, a <= b, a > b, a >= b, a == b, a != b]
    for (got, ref), want in zip(both(program.cmp, a, b), expected):
        assert got.dtype == np.bool_ and ref.dtype == np.bool_
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(ref, want)


def test_where_takes_numpy_bool(program: stoicc_py.Program) -> None:
    rng = np.random.default_rng(1)
    c, a, b = rng.random((3, 15)) < 0.5, rand(rng, 3, 15), rand(rng, 15)
    ((got, ref),) = both(program.sel, c, a, b)
    np.testing.assert_array_equal(got, np.where(c, a, b))
    np.testing.assert_array_equal(ref, np.where(c, a, b))


@pytest.mark.parametrize("n", [1, 15, 17])
def test_keepdims_reductions_and_mean(program: stoicc_py.Program, n: int) -> None:
    x = rand(np.random.default_rng(n), 3, n)
    wants = [x.sum(1, keepdims=True), x.max(1, keepdims=True), x.mean(1, keepdims=True), x.mean(0),
             x.max(0, keepdims=True)]  # fmt: skip
    for (got, ref), want in zip(both(program.red, x), wants):
        assert_close(got, want)
        assert_close(ref, want)


def test_causal_mask_from_iota_and_size_symbol(program: stoicc_py.Program) -> None:
    rng = np.random.default_rng(2)
    t, p = 5, 3
    s, past = rand(rng, t, t + p), rand(rng, p, 4)
    mask = np.arange(t + p)[None, :] <= np.arange(t)[:, None] + p
    scores = np.where(mask, s, np.float32(-1e30))
    e = np.exp(scores - scores.max(-1, keepdims=True))
    (probs, probs_ref), (m, m_ref), (size, size_ref) = both(program.causal, s, past)
    np.testing.assert_array_equal(m, mask)
    np.testing.assert_array_equal(m_ref, mask)
    assert size.dtype == np.int32 and int(size) == int(size_ref) == p
    assert_close(probs, e / e.sum(-1, keepdims=True))
    assert_close(probs_ref, probs)
    assert not probs[~mask].any()


def test_integer_arithmetic_and_comparisons(program: stoicc_py.Program) -> None:
    rng = np.random.default_rng(3)
    i, j = rng.integers(-100, 100, (4, 17)).astype(np.int32), rng.integers(-100, 100, 17).astype(np.int32)
    wants = [i * j - i + j, i >= j, np.where(i < j, i, j)]
    for (got, ref), want in zip(both(program.ints, i, j), wants):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(ref, want)


@pytest.mark.parametrize("n", [1, 15, 17, 576])
def test_softmax_rmsnorm_elementwise_rows(program: stoicc_py.Program, n: int) -> None:
    rng = np.random.default_rng(n)
    x, g = rand(rng, 3, n) * 4, rand(rng, n)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    e = np.exp(x64 - x64.max(-1, keepdims=True))
    sig = 1 / (1 + np.exp(-x64))
    wants = [
        e / e.sum(-1, keepdims=True),
        x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + 1e-5) * g64,
        x64 * sig * g64 + sig - np.exp(x64 / 4) + np.maximum(x64, 0) / (np.abs(x64) + 1) + np.sqrt(np.abs(g64)),
    ]
    for (got, ref), want in zip(both(program.norms, x, g), wants):
        assert_close(got, want.astype(np.float32))
        assert_close(ref, want.astype(np.float32))


def test_vector_exp_edges(program: stoicc_py.Program) -> None:
    """Softmax rows holding -inf (masked), NaN and huge values: numpy's results."""
    x = np.array([[0.0, -np.inf] * 9, [np.nan] + [1.0] * 17, [88.0, -88.0] * 9], np.float32)
    got = program.norms(x, np.ones(18, np.float32))[0]
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(-1, keepdims=True))
        want = e / e.sum(-1, keepdims=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[[0, 2]], want[[0, 2]], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return where(a, a, a)", "where() needs a bool condition (e.g. a comparison), got f32[4]"),
        ("return sum(a, axis=0, keepdims=1)", "keepdims must be true or false"),
        ("return sum(a, axis=0, keepdims=yes)", "keepdims must be true or false"),
        ("return a < i", "cannot compare tensors of different element types: f32[4] and i32[4]"),
        ("c = a < a\n  return c + c", "add is not defined on bool"),
        ("return iota([4, 2.5], axis=0)", "expected a dim: an integer, a size symbol, or a sum or multiple of them"),
        ("return iota([4], axis=1)", "axis=1 is out of range for i32[4]"),
        ("return Q", "unknown name 'Q'"),
    ],
)
def test_located_errors(body: str, message: str) -> None:
    source = f"kernel k(a: f32[4], i: i32[4]) -> f32[4] {{\n  {body}\n}}\n"
    with pytest.raises(CompileError, match=r"^<string>:\d+:\d+: error: " + re.escape(message)):
        stoicc_py.compile(source)


def test_comparisons_do_not_chain() -> None:
    with pytest.raises(CompileError, match=r"2:16: error: unexpected '<'"):
        stoicc_py.compile("kernel k(a: f32[4]) -> bool[4] {\n  return a < a < a\n}\n")
