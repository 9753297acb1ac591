"""zero=float: uniform quantization with a float offset per group (value = scale * code +
offset, ggml's Q4_1 grid). The codec reproduces a Q4_1 matrix exactly, RTN and GPTQ
choose values on the grid, the fused CPU kernels (vectorised and scalar) match the
reference on ragged shapes with f32 and bf16 activations, and what does not take a
float zero says so where it is written."""

import dataclasses
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py import pack
from stoicc_py.packing.bitsplit import bitsplit, bitsplit_linear

BF16 = np.dtype(ml_dtypes.bfloat16)
N = 19
"""Output features: not a multiple of any column block."""


def q4_1(rng: np.random.Generator, rows: int, groups: int) -> np.ndarray:
    """A matrix whose groups of 32 lie on a Q4_1 grid: f16 d and m, codes 0..15 (both ends used)."""
    d = rng.uniform(0.01, 0.05, (rows, groups, 1)).astype(np.float16).astype(np.float32)
    m = -rng.uniform(0.1, 0.3, (rows, groups, 1)).astype(np.float16).astype(np.float32)
    q = rng.integers(0, 16, (rows, groups, 32))
    q[:, :, :2] = [0, 15]
    return (d * q + m).astype(np.float32).reshape(rows, groups * 32)


def test_a_q4_1_matrix_packs_exactly_where_an_integer_zero_point_cannot() -> None:
    w = q4_1(np.random.default_rng(0), 6, 4)
    packed = pack(w, "int4(group=32, zero=float, scale=f16)")
    assert sorted(packed.arrays) == ["offsets", "scales", "values"]
    assert packed.arrays["offsets"].dtype == np.float16 and packed.arrays["offsets"].shape == (6, 4)
    np.testing.assert_array_equal(packed.unpack(), w)
    assert np.abs(pack(w, "int4(group=32, symmetric=false, scale=f16)").unpack() - w).max() > 1e-3


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_values_lie_on_the_float_zero_grid(act_order: bool) -> None:
    rng = np.random.default_rng(1)
    w, x = rand(rng, 8, 96), rand(rng, 256, 96) @ rand(rng, 96, 96)  # correlated inputs
    layout = "int4(group=64, zero=float)"  # 96 = 64 + a ragged 32
    rtn = pack(w, layout).unpack()
    packed = pack(w, layout, method="gptq", activations=x, act_order=act_order)
    v = packed.unpack()
    assert np.linalg.norm(x @ (w - v).T) < np.linalg.norm(x @ (w - rtn).T)
    q = (v[:, :64].reshape(8, 1, 64) - packed.arrays["offsets"][:, :1, None]) / packed.arrays["scales"][:, :1, None]
    np.testing.assert_allclose(q, np.rint(q), atol=1e-3)  # codes: whole numbers of steps above the offset


CASES = [  # (layout, K): vectorised kernels, a ragged last group, bit planes (int3: 2 + 1)
    ("int4(group=64, zero=float, scale=f16)", 96),
    ("int3(group=32, zero=float)", 96),
]


def _source(layout: str, k: int, dtype: str) -> str:
    return (f"kernel f(x: {dtype}[M, {k}], w: {dtype}[{N}, {k}] @ {layout}) -> {dtype}[M, {N}] "
            "{ return linear(x, w) }")  # fmt: skip


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def vector_kernel(request: pytest.FixtureRequest) -> tuple[Any, str, int]:
    layout, k = request.param
    return stoicc_py.compile(_source(layout, k, "f32")).f, layout, k


def test_vectorised_linear_matches_reference(vector_kernel: tuple[Any, str, int]) -> None:
    kernel, layout, k = vector_kernel
    assert "vector.fma" in kernel.ir("loops")
    rng = np.random.default_rng(k)
    packed = kernel.pack("w", rand(rng, N, k) - 0.5)  # offsets of either sign
    for m in (1, 6):  # GEMV and a row block with an edge row
        x = rand(rng, m, k)
        assert_close(kernel(x, packed), kernel.reference(x, packed))
        far = x + 100  # offset * sum(x) in the thousands
        assert_close(kernel(far, packed), kernel.reference(far, packed), rtol=1e-5)


def test_bf16_activations_and_the_scalar_nest() -> None:
    """bf16 x, widened as loaded (vectorised); one scale and offset per column (axis=1)
    and dequantize() run the scalar loop nests."""
    rng = np.random.default_rng(2)
    k = 64
    source = (_source("int4(group=32, zero=float, scale=bf16)", k, "bf16")
              + f"\nkernel g(x: f32[M, {k}], w: f32[{N}, {k}] @ int4(axis=1, zero=float)) -> f32[M, {N}] "
                "{ return linear(x, w) }"
              + f"\nkernel h(w: f32[{N}, {k}] @ int2(group=32, zero=float)) -> f32[{N}, {k}] "
                "{ return dequantize(w) }")  # fmt: skip
    prog = stoicc_py.compile(source)
    assert "vector.fma" in prog.f.ir("loops")
    w = rand(rng, N, k)
    x = rand(rng, 5, k).astype(BF16)
    packed = pack(w, "int4(group=32, zero=float, scale=bf16)", dtype="bf16")
    got, want = prog.f(x, packed).astype(np.float32), prog.f.reference(x, packed).astype(np.float32)
    assert np.abs(got - want).max() <= 2 * float(ml_dtypes.finfo(BF16).eps) * np.abs(want).max()
    columns = pack(w, "int4(axis=1, zero=float)")
    assert "vector.fma" not in prog.g.ir("loops")
    xf = rand(rng, 5, k) + 10
    assert_close(prog.g(xf, columns), prog.g.reference(xf, columns), rtol=1e-5)
    two = pack(w, "int2(group=32, zero=float)")
    np.testing.assert_array_equal(prog.h(two), two.unpack())


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("kernel f(x: f32[M, 64], w: f32[32, 64] @ nm(2, 4) with int4(group=16, zero=float)) -> f32[M, 32] "
         "{ return linear(x, w) }", r"1:\d+: error: .*does not compose with a sparse layout"),
        ("kernel f(x: f32[M, 64], w: f32[32, 64] @ sq(low=int4(group=32, zero=float))) -> f32[M, 32] "
         "{ return linear(x, w) }", r"1:\d+: error: sq: low .*float zero"),
        ("kernel f(x: f32[M, 64], w: f32[32, 64] @ int4(group=32, symmetric=true, zero=float)) -> f32[M, 32] "
         "{ return linear(x, w) }", r"1:\d+: error: quant: int4 with zero=float is asymmetric"),
        ("kernel f(x: f32[M, 64]) -> f32[M, 64] { return dequantize(quantize(x, int8(zero=float))) }",
         r"1:\d+: error: quantize computes no float zero at run time"),
    ],
)  # fmt: skip
def test_what_takes_no_float_zero_is_a_located_error(source: str, message: str) -> None:
    with pytest.raises(stoicc_py.CompileError, match=message):
        stoicc_py.compile(source)


def test_the_accelerator_refuses_a_float_zero_where_it_is_used() -> None:
    source = ("kernel f(x: f32[M, 64], w: f32[32, 64] @ int4(group=32, zero=float)) -> f32[M, 32] {\n"
              "  return linear(quantize(x, int8(per=token)), w)\n}")  # fmt: skip
    with pytest.raises(stoicc_py.CompileError, match=r"^<string>:2:\d+: error: the accel target has no float zero"):
        stoicc_py.compile(source, target="accel").f.program_for(M=4)


def test_int8_activations_meet_a_float_zero_on_the_integer_path() -> None:
    """tdsl-fuse-dequant folds quantize(x) into the product (an integer one: each group
    adds offset * the sum of x's codes; exactness in tests/test_vectorize_integer.py);
    bit-split activations have no such product and say so."""
    k = stoicc_py.compile("kernel f(x: f32[M, 64], w: f32[32, 64] @ int4(group=32, zero=float)) -> f32[M, 32] "
                          "{ return linear(quantize(x, int8(per=token)), w) }").f  # fmt: skip
    assert "tdsl.dequantize" not in k.ir("opt") and "%x_sums" in k.ir("loops")
    rng = np.random.default_rng(3)
    packed, x = k.pack("w", rand(rng, 32, 64)), rand(rng, 4, 64)
    assert_close(k(x, packed), k.reference(x, packed))
    with pytest.raises(ValueError, match="float zero .* has no integer product"):
        bitsplit_linear(bitsplit(x, "bitsplit(int8)"), packed)


def test_the_worked_example_of_formats_md() -> None:
    packed = pack(np.array([[0.25, 1, 4, 2, -3, -2.5, -1, -2.25]], np.float32), "int4(group=4, zero=float, scale=f16)")
    assert packed.arrays["values"].view(np.uint8).tolist() == [[0x30, 0x7F, 0x40, 0x6F]]
    assert packed.arrays["scales"].view(np.uint16).tolist() == [[0x3400, 0x3044]]
    assert packed.arrays["offsets"].view(np.uint16).tolist() == [[0x3400, 0xC200]]
    np.testing.assert_array_equal(packed.unpack(), [[0.25, 1, 4, 2, -3, -2.466796875, -1.00048828125, -2.2001953125]])
    assert packed.nbytes == 12
    offsets = packed.arrays["offsets"].copy()
    offsets[0, 1] = np.inf
    with pytest.raises(ValueError, match=r"offsets\[0, 1\] = inf is not a finite number"):
        dataclasses.replace(packed, arrays={**packed.arrays, "offsets": offsets}).validate()
