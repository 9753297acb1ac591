"""Structure ops (batched products, transpose permutations, reshape, slices, concat) and
dim expressions (P+T), each checked against the reference interpreter and numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import assert_close

import stoicc_py
from stoicc_py import dims
from stoicc_py.diagnostics import CompileError
from stoicc_py.frontend.irgen import irgen
from stoicc_py.frontend.parser import parse

SOURCE = """
kernel cache(k_cache: f32[3, P, 8], k_new: f32[3, T, 8]) -> (f32[3, P + T, 8], f32[3, T, 8]) {
  k = concat(k_cache, k_new, axis=1)
  return k, k[:, P:P + T]
}
kernel heads(x: f32[T, 48]) -> (f32[2, 3 * T, 8], f32[6, 8, T]) {
  h = transpose(reshape(x, [T, 6, 8]), [1, 0, 2])
  return reshape(h, [2, 3 * T, 8]), transpose(h)
}
kernel attention(q: f32[3, T, 16], k: f32[3, S, 16], v: f32[3, S, 16]) -> f32[3, T, 16] {
  return softmax(q @ transpose(k), axis=2) @ v
}
kernel batched(a: f32[2, 3, M, K], b: f32[2, 1, K, N], x: f32[2, M, K], w: f32[N, K], c: f32[N]) -> (f32[2, 3, M, N], f32[2, M, N]) {
  return a @ b, linear(x, w, c)
}
kernel window(x: f32[P + T, 5], y: f32[T, 5], z: f32[P, 3]) -> (f32[T, 5], f32[P, 2]) {
  return x[P:P + T] + y, z[:, 1:]
}
kernel packed(x: f32[2, T, 16], w: f32[8, 16] @ int8(per=channel)) -> f32[2, T, 8] {
  return linear(x, w)
}
"""


@pytest.fixture(scope="module")
def prog() -> stoicc_py.Program:
    return stoicc_py.compile(SOURCE)


def rand(rng: np.random.Generator, *shape: int) -> np.ndarray[Any, Any]:
    return rng.standard_normal(shape).astype(np.float32)


def test_dim_expressions() -> None:
    assert dims.parse("T + P") == "P+T" and dims.parse("2 * T - 1") == "2*T-1" and dims.parse("3 - T") == "-T+3"
    assert dims.add("P", "T") == "P+T" and dims.sub("P+T", "P") == "T" and dims.sub("T", "T") == 0
    assert dims.evaluate("2*T-1", {"T": 4}) == 7 and dims.symbols("P+T") == ("P", "T")
    assert dims.product(["T", 9, 64]) == dims.product([3, "3*T", 64])
    with pytest.raises(ValueError, match="not a dim expression"):
        dims.parse("T *")


@pytest.mark.parametrize("p,t", [(1, 1), (5, 3), (2, 7)])
def test_kv_cache_concat(prog: stoicc_py.Program, p: int, t: int) -> None:
    rng = np.random.default_rng(p * 10 + t)
    cache, new = rand(rng, 3, p, 8), rand(rng, 3, t, 8)
    k, tail = prog.cache(cache, new)
    assert k.shape == (3, p + t, 8)
    np.testing.assert_array_equal(k, np.concatenate([cache, new], axis=1))
    np.testing.assert_array_equal(tail, new)
    for got, want in zip((k, tail), prog.cache.reference(cache, new)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("t", [1, 5])
def test_head_reshapes(prog: stoicc_py.Program, t: int) -> None:
    x = rand(np.random.default_rng(t), t, 48)
    grouped, swapped = prog.heads(x)
    h = x.reshape(t, 6, 8).transpose(1, 0, 2)
    np.testing.assert_array_equal(grouped, h.reshape(2, 3 * t, 8))
    np.testing.assert_array_equal(swapped, h.transpose(0, 2, 1))


@pytest.mark.parametrize("t,s", [(1, 7), (5, 3), (20, 37)])  # 20 rows: k packed for the outer product
def test_attention(prog: stoicc_py.Program, t: int, s: int) -> None:
    rng = np.random.default_rng(t + s)
    q, k, v = rand(rng, 3, t, 16), rand(rng, 3, s, 16), rand(rng, 3, s, 16)
    assert_close(prog.attention(q, k, v), prog.attention.reference(q, k, v))


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (5, 7, 19), (13, 40, 33)])
def test_batched_products(prog: stoicc_py.Program, m: int, k: int, n: int) -> None:
    """Ragged sizes: the vector kernels' edge blocks, and n past the last whole vector."""
    rng = np.random.default_rng(m * k * n)
    a, b, x, w, c = rand(rng, 2, 3, m, k), rand(rng, 2, 1, k, n), rand(rng, 2, m, k), rand(rng, n, k), rand(rng, n)
    ab, lin = prog.batched(a, b, x, w, c)
    assert_close(ab, np.matmul(a, b))
    assert_close(lin, x @ w.T + c)
    for got, want in zip((ab, lin), prog.batched.reference(a, b, x, w, c)):
        assert_close(got, want)


def test_packed_weight_batched_rows(prog: stoicc_py.Program) -> None:
    rng = np.random.default_rng(3)
    x, w = rand(rng, 2, 5, 16), rand(rng, 8, 16)
    packed = prog.packed.pack("w", w)
    assert_close(prog.packed(x, packed), prog.packed.reference(x, packed))


def test_symbolic_slices(prog: stoicc_py.Program) -> None:
    rng = np.random.default_rng(4)
    x, y, z = rand(rng, 7, 5), rand(rng, 3, 5), rand(rng, 4, 3)
    out, cols = prog.window(x, y, z)
    np.testing.assert_array_equal(out, x[4:7] + y)
    np.testing.assert_array_equal(cols, z[:, 1:])
    assert_close(out, prog.window.reference(x, y, z)[0])


def test_call_time_dim_checks(prog: stoicc_py.Program) -> None:
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match=r"parameter 'x' expects size P\+T = 7 \(P=4, T=3\) on axis 0"):
        prog.window(rand(rng, 8, 5), rand(rng, 3, 5), rand(rng, 4, 3))


def test_dynamic_slice_out_of_range() -> None:
    k = stoicc_py.compile("kernel f(x: f32[N, 4], y: f32[T, 4]) -> f32[T, 4] { return x[2:T + 2] }").f
    rng = np.random.default_rng(6)
    np.testing.assert_array_equal(k(rand(rng, 6, 4), rand(rng, 3, 4)), rand(np.random.default_rng(6), 6, 4)[2:5])
    with pytest.raises(ValueError, match=r"slice 2:T\+2 of axis 0 of f32\[N, 4\] is out of range with N=4, T=3"):
        k(rand(rng, 4, 4), rand(rng, 3, 4))


HEAD = "kernel f(x: f32[T, 48], c: f32[P, 8], n: f32[T, 4]) -> f32[T, 48] {\n"
ERRORS = [
    ("  return transpose(x, [1, 1])\n}", 2, 10, "transpose's permutation [1, 1] is not a permutation of the 2 axes"),
    ("  return reshape(x, [T, 5, 8])\n}", 2, 10, "reshape cannot change the number of elements: f32[T, 48] has 48*T"),
    ("  return x[0:T, 40:50]\n}", 2, 10, "slice 40:50 is out of range for axis 1 of f32[T, 48] (size 48)"),
    ("  return concat(c, n, axis=0)\n}", 2, 10, "concat along axis 0: dimension 1 differs, 8 in f32[P, 8]"),
    ("  return reshape(x, [Q, 48])\n}", 2, 22, "'Q' is not a size symbol of the parameters (they bind: T, P)"),
    ("  return reshape(x, [T * P, 48])\n}", 2, 22, "a dim is affine: T * P multiplies two size symbols"),
    ("  return transpose(x, x)\n}", 2, 23, "transpose()'s second argument is a permutation, e.g. [1, 0, 2]"),
    ("  return x[0:2, 0:2, 0:2]\n}", 2, 10, "3 slice indices for f32[T, 48] of rank 2"),
    ("  return linear(x, reshape(x, [T, 6, 8]))\n}", 2, 20, "linear expects a rank-2 weight [n, k], got f32[T, 6, 8]"),
]


@pytest.mark.parametrize("body,line,col,message", ERRORS)
def test_located_errors(body: str, line: int, col: int, message: str) -> None:
    with pytest.raises(CompileError) as info:
        irgen(parse(HEAD + body, "k.tdsl"))
    assert info.value.message.startswith(message)
    assert info.value.loc is not None and (info.value.loc.line, info.value.loc.col) == (line, col)


@pytest.mark.parametrize(
    "source,message",
    [
        ("kernel f(x: f32[P + T]) -> f32[P] { return x }", "size symbol P in dim P+T is bound by no parameter"),
        ("kernel f(x: f32[T], y: f32[T * T]) -> f32[T] { return x }", "a dim is affine: T * T multiplies two size"),
    ],
)
def test_declaration_errors(source: str, message: str) -> None:
    with pytest.raises(CompileError, match=message.replace("+", r"\+").replace("*", r"\*")):
        irgen(parse(source, "k.tdsl"))


def test_views_bounds_checked() -> None:
    """check_bounds guards the accesses through views (reshape, batched products)."""
    src = "kernel f(x: f32[T, 8], b: f32[2, 4, N]) -> f32[2, T, N] { return transpose(reshape(x, [T, 2, 4]), [1, 0, 2]) @ b }"
    k = stoicc_py.compile(src, check_bounds=True).f
    rng = np.random.default_rng(7)
    x, b = rand(rng, 5, 8), rand(rng, 2, 4, 19)
    assert_close(k(x, b), k.reference(x, b))
