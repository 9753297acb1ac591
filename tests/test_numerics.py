"""Every op compiles to native code and matches numpy, on ragged shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import Array, check_kernel, rand

import stoicc_py

ELEMENTWISE = """
kernel unary(x: f32[M, N]) -> (f32[M, N], f32[M, N], f32[M, N], f32[M, N], f32[M, N], f32[M, N], f32[M, N], f32[M, N], f32[M, N]) {
  return relu(x), gelu(x), silu(x), sigmoid(x), tanh(x), exp(x), -x, abs(x), sqrt(abs(x))
}
kernel binary(a: f32[M, N], b: f32[N], c: f32[M, 1]) -> (f32[M, N], f32[M, N], f32[M, N], f32[M, N]) {
  return a + b, a - c, a * b * 0.5, a / (abs(c) + 1.0)
}
kernel reduce(x: f32[M, N]) -> (f32[N], f32[M], f32[M], f32[N], f32[M, N], f32[M, N], f32[N, M]) {
  return sum(x, axis=0), sum(x, axis=1), max(x, axis=-1), max(x, axis=0), softmax(x, axis=1), softmax(x, axis=0), transpose(x)
}
kernel rank3(x: f32[B, M, N], y: f32[M, 1]) -> (f32[B, M, N], f32[B, N]) {
  return x * y - 1, sum(x, axis=1)
}
"""

PRODUCTS = """
kernel mlp(x: f32[M, 64], w1: f32[128, 64], b1: f32[128], w2: f32[64, 128]) -> f32[M, 64] {
  h = relu(linear(x, w1, b1))
  return matmul(h, transpose(w2))
}
kernel products(a: f32[M, K], b: f32[K, N], w: f32[N, K], bias: f32[N]) -> (f32[M, N], f32[M, N], f32[M, N], f32[M, N]) {
  return a @ b, linear(a, w), gelu(linear(a, w, bias)), sigmoid(matmul(a, b) + bias)
}
"""


def _gelu(x: Array) -> Array:
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: Array, axis: int) -> Array:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture(scope="module")
def elementwise() -> stoicc_py.Program:
    return stoicc_py.compile(ELEMENTWISE)


@pytest.fixture(scope="module")
def products() -> stoicc_py.Program:
    return stoicc_py.compile(PRODUCTS, tile=(8, 16, 32))  # small tiles: ragged edges on every shape


SHAPES = [(1, 1), (1, 7), (7, 33), (33, 5), (64, 64)]


@pytest.mark.parametrize("m,n", SHAPES)
def test_unary(elementwise: stoicc_py.Program, m: int, n: int) -> None:
    x = rand(np.random.default_rng(m * 100 + n), m, n)
    check_kernel(
        elementwise.unary,
        lambda x: (
            np.maximum(x, 0),
            _gelu(x),
            x * _sigmoid(x),
            _sigmoid(x),
            np.tanh(x),
            np.exp(x),
            -x,
            np.abs(x),
            np.sqrt(np.abs(x)),
        ),  # fmt: skip
        x,
    )


@pytest.mark.parametrize("m,n", SHAPES)
def test_binary_broadcast(elementwise: stoicc_py.Program, m: int, n: int) -> None:
    rng = np.random.default_rng(m + n)
    check_kernel(
        elementwise.binary,
        lambda a, b, c: (a + b, a - c, a * b * 0.5, a / (np.abs(c) + 1.0)),
        rand(rng, m, n), rand(rng, n), rand(rng, m, 1),
    )  # fmt: skip


@pytest.mark.parametrize("m,n", SHAPES)
def test_reductions(elementwise: stoicc_py.Program, m: int, n: int) -> None:
    x = rand(np.random.default_rng(7 * m + n), m, n)
    check_kernel(
        elementwise.reduce,
        lambda x: (x.sum(0), x.sum(1), x.max(-1), x.max(0), _softmax(x, 1), _softmax(x, 0), x.T),
        x,
    )


def test_rank3(elementwise: stoicc_py.Program) -> None:
    rng = np.random.default_rng(3)
    check_kernel(elementwise.rank3, lambda x, y: (x * y - 1, x.sum(1)), rand(rng, 3, 5, 7), rand(rng, 5, 1))


@pytest.mark.parametrize("m", [1, 7, 33, 100])
def test_mlp(products: stoicc_py.Program, m: int) -> None:
    rng = np.random.default_rng(m)
    args = rand(rng, m, 64), rand(rng, 128, 64), rand(rng, 128), rand(rng, 64, 128)
    check_kernel(products.mlp, lambda x, w1, b1, w2: np.maximum(x @ w1.T + b1, 0) @ w2.T, *args)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 50, 3), (7, 33, 17), (33, 64, 40), (9, 100, 70)])
def test_products(products: stoicc_py.Program, m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * k + n)
    args = rand(rng, m, k), rand(rng, k, n), rand(rng, n, k), rand(rng, n)
    check_kernel(
        products.products,
        lambda a, b, w, bias: (a @ b, a @ w.T, _gelu(a @ w.T + bias), _sigmoid(a @ b + bias)),
        *args,
    )


def test_default_tiles_large_k() -> None:
    """Several k-tiles of the default tile sizes accumulate into one output."""
    prog = stoicc_py.compile("kernel f(x: f32[M, 700], w: f32[130, 700]) -> f32[M, 130] { return linear(x, w) }")
    rng = np.random.default_rng(1)
    check_kernel(prog.f, lambda x, w: x @ w.T, rand(rng, 19, 700), rand(rng, 130, 700))
