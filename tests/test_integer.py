"""Integer kernels: i8 x i8 products accumulate exactly in i32, for dense and sparse weights.

Every result is compared bit for bit with plain numpy (int64 products, wrapped to
int32) and with the reference interpreter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import Array

import stoicc_py
from stoicc_py.diagnostics import CompileError
from stoicc_py.frontend.irgen import irgen
from stoicc_py.frontend.parser import parse

N, K = 48, 256  # 256 products of up to 128 * 128 each: sums far outside int16
ROWS = (1, 7, 33)  # ragged against the row blocks of 4


def _int8(rng: np.random.Generator, rows: int, cols: int) -> Array:
    """Random int8 values, about a quarter of them the extremes -128 and 127."""
    a = rng.integers(-128, 128, (rows, cols), dtype=np.int8)
    extreme = rng.random((rows, cols)) < 0.25
    a[extreme] = rng.choice(np.array([-128, 127], np.int8), int(extreme.sum()))
    return a


def _nm_mask(rng: np.random.Generator, rows: int, cols: int, n: int, m: int) -> Array:
    """0..n non-zeros in every m consecutive columns."""
    order = np.argsort(rng.random((rows, cols // m, m)), axis=-1)
    return (order < rng.integers(0, n + 1, (rows, cols // m, 1))).reshape(rows, cols)


def _block_mask(rng: np.random.Generator, rows: int, cols: int, bh: int, bw: int, density: float) -> Array:
    return np.kron(rng.random((rows // bh, cols // bw)) < density, np.ones((bh, bw), bool))


def _hybrid_mask(rng: np.random.Generator, rows: int, cols: int, th: int, tw: int) -> Array:
    """Tiles empty, dense or 2:4, with a tile row of each non-empty kind alone."""
    kinds = rng.integers(0, 3, (rows // th, cols // tw))
    kinds[0, :], kinds[1, :] = 1, 2
    mask = np.zeros((rows, cols), bool)
    for (r, c), kind in np.ndenumerate(kinds):
        tile = (slice(r * th, (r + 1) * th), slice(c * tw, (c + 1) * tw))
        if kind == 1:
            mask[tile] = True
        elif kind == 2:
            mask[tile] = _nm_mask(rng, th, tw, 2, 4)
    return mask


MASKS: dict[str, Callable[[np.random.Generator], Array]] = {
    "dense": lambda rng: np.ones((N, K), bool),
    "nm(2, 4)": lambda rng: _nm_mask(rng, N, K, 2, 4),
    "nm(1, 4)": lambda rng: _nm_mask(rng, N, K, 1, 4),
    "block([4, 4])": lambda rng: _block_mask(rng, N, K, 4, 4, 0.4),
    "csr": lambda rng: _block_mask(rng, N, K, 1, 1, 0.3),
    "hybrid(tile=[8, 16], formats=[dense, nm(2, 4)])": lambda rng: _hybrid_mask(rng, N, K, 8, 16),
}


def _weight(rng: np.random.Generator, layout: str) -> Array:
    """A random int8 [N, K] weight that satisfies the layout, with extreme values,
    and its first row -128 wherever it is stored (with x's first row -128 too, the
    largest products)."""
    mask = MASKS[layout](rng)
    w = np.where(mask, _int8(rng, N, K), np.int8(0))
    w[0, mask[0]] = -128
    return w


def _exact(kernel: stoicc_py.Kernel, args: tuple[object, ...], want: Array) -> None:
    """The native kernel and the reference interpreter both give exactly `want`."""
    for got in (kernel(*args), kernel.reference(*args)):
        assert isinstance(got, np.ndarray) and got.dtype == np.int32
        assert np.array_equal(got, want)


def _products(x: Array, w: Array) -> Array:
    """x @ w.T exactly, in int64."""
    return x.astype(np.int64) @ w.astype(np.int64).T


PRODUCTS = """
kernel lin(x: i8[M, {K}], w: i8[{N}, {K}] @ {L}) -> i32[M, {N}] {{ return linear(x, w) }}
kernel mm(x: i8[M, {K}], w: i8[{N}, {K}] @ {L}) -> i32[M, {N}] {{ return matmul(x, transpose(w)) }}
kernel lin_bias_relu(x: i8[M, {K}], w: i8[{N}, {K}] @ {L}, b: i32[{N}]) -> i32[M, {N}] {{
  return relu(linear(x, w, b))
}}
kernel mm_bias(x: i8[M, {K}], w: i8[{N}, {K}] @ {L}, b: i32[{N}]) -> i32[M, {N}] {{ return x @ transpose(w) + b }}
"""


@pytest.mark.parametrize("layout", sorted(MASKS))
def test_i8_products_are_exact(layout: str) -> None:
    prog = stoicc_py.compile(PRODUCTS.format(K=K, N=N, L=layout), tile=(4, 16, 32))
    rng = np.random.default_rng(len(layout))
    w = _weight(rng, layout)
    weight = w if layout == "dense" else prog.lin.pack("w", w)
    if layout != "dense":
        assert all(a.dtype == np.int8 for role, a in weight.arrays.items() if role.endswith("values"))
        unpacked = weight.unpack()
        assert unpacked.dtype == np.int8 and np.array_equal(unpacked, w)
    for m in ROWS:
        x = _int8(rng, m, K)
        x[0] = -128
        b = rng.integers(-(2**20), 2**20, N, dtype=np.int32)
        p = _products(x, w)
        assert p[0, 0] == 128 * 128 * np.count_nonzero(w[0]) and np.abs(p).max() > np.iinfo(np.int16).max
        _exact(prog.lin, (x, weight), p.astype(np.int32))
        _exact(prog.mm, (x, weight), p.astype(np.int32))
        _exact(prog.lin_bias_relu, (x, weight, b), np.maximum(p + b, 0).astype(np.int32))
        _exact(prog.mm_bias, (x, weight, b), (p + b).astype(np.int32))
    if layout != "dense":  # an int8 array is packed on the way in
        _exact(prog.lin, (x, w), p.astype(np.int32))


def test_i8_matmul_reads_a_k_by_n_matrix() -> None:
    """matmul(x, w) with w [K, N] (the row-update loop order), bias and relu fused."""
    prog = stoicc_py.compile(
        f"kernel f(x: i8[M, {K}], w: i8[{K}, {N}], b: i32[{N}]) -> i32[M, {N}] {{ return relu(matmul(x, w) + b) }}",
        tile=(4, 16, 32),
    )
    rng = np.random.default_rng(3)
    w, b = _int8(rng, K, N), rng.integers(-(2**20), 2**20, N, dtype=np.int32)
    for m in ROWS:
        x = _int8(rng, m, K)
        _exact(prog.f, (x, w, b), np.maximum(_products(x, w.T) + b, 0).astype(np.int32))


def test_integer_elementwise_ops_on_a_product() -> None:
    """A product read twice is not fused: relu, neg, abs and + run on i32 on their own."""
    prog = stoicc_py.compile(
        "kernel f(x: i8[M, 64], w: i8[32, 64], b: i32[M, 32]) -> (i32[M, 32], i32[M, 32]) {\n"
        "  y = linear(x, w)\n"
        "  return y, relu(-y) + abs(y) - b * b\n"
        "}"
    )
    rng = np.random.default_rng(4)
    x, w = _int8(rng, 9, 64), _int8(rng, 32, 64)
    b = rng.integers(-1000, 1000, (9, 32), dtype=np.int32)
    y = _products(x, w)
    want = (y.astype(np.int32), (np.maximum(-y, 0) + np.abs(y) - b.astype(np.int64) ** 2).astype(np.int32))
    for got in (prog.f(x, w, b), prog.f.reference(x, w, b)):
        assert all(g.dtype == np.int32 and np.array_equal(g, e) for g, e in zip(got, want, strict=True))


def test_int8_packing_keeps_int8_values() -> None:
    rng = np.random.default_rng(5)
    for layout in MASKS:
        w = _weight(rng, layout)
        packed = stoicc_py.pack(w, layout)
        assert packed.dtype == np.int8 and np.array_equal(packed.unpack(), w) and packed.unpack().dtype == np.int8
    pruned = stoicc_py.pack(_int8(rng, 8, 16), "nm(2, 4)", prune="magnitude").unpack()
    assert pruned.dtype == np.int8
    # |-128| is the largest magnitude: magnitude pruning keeps it
    row = np.array([[-128, 127, 1, -1] * 4] * 8, np.int8)
    assert np.array_equal(stoicc_py.pack(row, "nm(1, 4)", prune="magnitude").unpack(), np.where(row == -128, row, 0))
    with pytest.raises(TypeError, match=r"an int8 matrix packs into dense and sparse layouts .* not int8\(axis=0\)"):
        stoicc_py.pack(w, "int8(axis=0)")


HEAD = "kernel f(x: i8[M, 64], w: i8[32, 64], b: i8[32], c: i32[32], v: f32[32, 64]) -> i32[M, 32] {\n"

ERRORS = [
    ("  return linear(x, w, b)\n}", 2, 10,
     "bias i8[32] must have the product's element type i32: i8 operands accumulate in i32"),
    ("  return linear(x, w) + b\n}", 2, 10, "operands have different element types: i32[M, 32] and i8[32]"),
    ("  return gelu(linear(x, w, c))\n}", 2, 10, "gelu is not defined on i32 (an integer tensor)"),
    ("  y = linear(x, w)\n  return silu(y)\n}", 3, 10, "silu is not defined on i32 (an integer tensor)"),
    ("  return sigmoid(linear(x, w))\n}", 2, 10, "sigmoid is not defined on i32 (an integer tensor)"),
    ("  return tanh(linear(x, w))\n}", 2, 10, "tanh is not defined on i32 (an integer tensor)"),
    ("  return sqrt(linear(x, w))\n}", 2, 10, "sqrt is not defined on i32 (an integer tensor)"),
    ("  return softmax(linear(x, w), axis=1)\n}", 2, 10, "softmax is not defined on i32 (an integer tensor)"),
    ("  return linear(x, w) / c\n}", 2, 10, "div is not defined on i32 (an integer tensor)"),
    ("  return linear(x, v)\n}", 2, 10, "operands have different element types: i8[M, 64] and f32[32, 64]"),
    ("  return matmul(x, transpose(v))\n}", 2, 10, "operands have different element types: i8[M, 64] and f32[64, 32]"),
]  # fmt: skip


@pytest.mark.parametrize("body,line,col,message", ERRORS)
def test_integer_type_errors(body: str, line: int, col: int, message: str) -> None:
    with pytest.raises(CompileError) as info:
        irgen(parse(HEAD + body, "k.tdsl"))
    err = info.value
    assert err.message == message
    assert err.loc is not None and (err.loc.line, err.loc.col) == (line, col)
    assert str(err).splitlines()[0] == f"k.tdsl:{line}:{col}: error: {message}"


@pytest.mark.parametrize(
    "source,line,col,message",
    [
        ("kernel f(x: i8[M, 64]) -> i8[64] {\n  return sum(x, axis=0)\n}", 2, 10,
         "'sum' on i8 tensors is not supported by the CPU backend yet"),
        ("kernel f(x: i32[M, 64], w: i32[32, 64]) -> i32[M, 32] {\n  return linear(x, w)\n}", 2, 10,
         "the CPU backend multiplies integers as i8 x i8 products (i32 results), got i32 operands"),
        ("kernel f(x: i8[M, 64], w: i8[32, 64] @ int8(axis=0)) -> i32[M, 32] {\n  return linear(x, w)\n}", 2, 10,
         "an i8 product reads its operands' stored values: dense activations and a dense or sparse "
         "(nm, block, csr, hybrid) weight, not layout int8(axis=0)"),
    ],
)  # fmt: skip
def test_integer_kernels_the_cpu_backend_rejects(source: str, line: int, col: int, message: str) -> None:
    with pytest.raises(CompileError) as info:
        stoicc_py.compile(source, cache=False)
    err = info.value
    assert err.message == message
    assert err.loc is not None and (err.loc.line, err.loc.col) == (line, col)
