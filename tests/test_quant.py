"""Quantized weights and activations end to end: fused kernels against numpy on
the packer's dequantized values, and integer paths bit-exact against a numpy model
of the same arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing.quant import codes_of, fake_quantize, quantize

WEIGHT_LAYOUTS = [
    "int8", "int8(axis=0)", "int8(axis=1)", "int8(group=16)", "int8(axis=0, symmetric=false)",
    "int4", "int4(group=32)", "int4(axis=0, scale=f16)", "int4(group=16, symmetric=false)", "int4(axis=1)",
    "int2(group=16)", "int2(axis=0, symmetric=false)", "int2(per=token)",
    "ternary", "ternary(group=32)", "ternary(axis=0)",
    "binary", "binary(group=16)", "binary(axis=0, scale=f16)",
]  # fmt: skip


@pytest.mark.parametrize("layout", WEIGHT_LAYOUTS)
def test_weight_only_linear(layout: str) -> None:
    """Fused dequant inside the product equals numpy on packed.dequantize()."""
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, 64], w: f32[24, 64] @ {layout}, b: f32[24]) -> f32[M, 24] {{ return linear(x, w, b) }}",
        tile=(4, 16, 64),
    )
    for m in (1, 7, 33):
        rng = np.random.default_rng(m)
        x, w, b = rand(rng, m, 64), rand(rng, 24, 64), rand(rng, 24)
        packed = prog.f.pack("w", w)
        want = x.astype(np.float64) @ packed.dequantize().astype(np.float64).T + b
        got = prog.f(x, packed, b)
        assert_close(got, want.astype(np.float32))
        assert_close(got, prog.f.reference(x, packed, b))


def test_dequantize_kernel_is_exact() -> None:
    prog = stoicc_py.compile(
        "kernel d(w: f32[8, 32] @ int4(group=8, symmetric=false)) -> f32[8, 32] { return dequantize(w) }\n"
        "kernel t(w: f32[8, 32] @ ternary(axis=0, scale=f16)) -> f32[8, 32] { return dequantize(w) }"
    )
    rng = np.random.default_rng(0)
    for k in (prog.d, prog.t):
        packed = k.pack("w", rand(rng, 8, 32))
        assert np.array_equal(k(packed), packed.dequantize())


@pytest.mark.parametrize("layout", ["int8(per=token)", "int8(per=token, symmetric=false)", "int8",
                                    "int8(group=16)", "int8(per=token, scale=f16)", "int8(axis=1)",
                                    "int8(axis=1, symmetric=false)"])  # fmt: skip
def test_runtime_quantize_is_bit_exact(layout: str) -> None:
    """The kernel's quantize computes the packer's codes and scales exactly."""
    prog = stoicc_py.compile(f"kernel q(x: f32[M, 48]) -> f32[M, 48] {{ return dequantize(quantize(x, {layout})) }}")
    for m in (1, 5, 16):
        x = rand(np.random.default_rng(m), m, 48) * 3
        x[0, :4] = 0.0
        assert np.array_equal(prog.q(x), fake_quantize(x, layout))
    assert np.array_equal(prog.q(np.zeros((2, 48), np.float32)), np.zeros((2, 48), np.float32))


def _integer_model(x: np.ndarray, act: str, w_packed: stoicc_py.PackedTensor, layout: str) -> np.ndarray:
    """The W8A8 arithmetic in numpy: i32 dot products per weight group, f32 group
    rescales accumulated in group order, then the activation scale."""
    xa, wa = quantize(x, act), codes_of(w_packed)
    attr = parse_layout(layout)
    qx = xa.codes.astype(np.int64) - (xa.zero_points[:, None] if xa.zero_points is not None else 0)
    qw = wa.codes.astype(np.int64)
    if wa.zero_points is not None:
        qw = qw - np.repeat(
            wa.zero_points.reshape(qw.shape[0], -1),
            qw.shape[1] // wa.zero_points.reshape(qw.shape[0], -1).shape[1],
            axis=1,
        )
    group = attr.group_size(qw.shape[1])
    scales = wa.scales.astype(np.float32).reshape(qw.shape[0], -1) if attr.per.data != "tensor" else None
    acc = np.zeros((x.shape[0], qw.shape[0]), np.float32)
    for g in range(qw.shape[1] // group):
        dot = qx[:, g * group : (g + 1) * group] @ qw[:, g * group : (g + 1) * group].T
        sw = scales[:, g] if scales is not None else wa.scales.astype(np.float32)[0]
        acc = acc + np.float32(sw) * dot.astype(np.float32)
    sx = xa.scales.astype(np.float32).reshape(-1, 1)
    return (sx if sx.shape[0] == x.shape[0] else sx[0]) * acc


@pytest.mark.parametrize(
    "act,layout",
    [("int8(per=token)", "int8(axis=0)"), ("int8(per=token)", "int4(group=32)"),
     ("int8(per=token, symmetric=false)", "int8(axis=0)"), ("int8", "int4(group=16, symmetric=false)"),
     ("int8(per=token)", "ternary(axis=0)")],
)  # fmt: skip
def test_integer_products_are_bit_exact(act: str, layout: str) -> None:
    """M = 1 (a GEMV: blocks of 8 columns) and 9 (blocks of 4 rows, then one row); 20
    columns leave ragged blocks in both."""
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, 64], w: f32[20, 64] @ {layout}) -> f32[M, 20] {{\n"
        f"  xq = quantize(x, {act})\n  return linear(xq, w)\n}}"
    )
    assert "arith.muli" in prog.f.ir("loops") and "tdsl.dequantize" not in prog.f.ir("opt")
    for m in (1, 9):
        rng = np.random.default_rng(m)
        x, packed = rand(rng, m, 64), prog.f.pack("w", rand(rng, 20, 64))
        got = prog.f(x, packed)
        assert np.array_equal(got, _integer_model(x, act, packed, layout))
        want = fake_quantize(x, act).astype(np.float64) @ packed.dequantize().astype(np.float64).T
        assert_close(got, want.astype(np.float32))


@pytest.mark.parametrize("layout", ["int4(group=32, scale=f16)", "ternary(axis=0)"])
def test_integer_products_with_symbolic_n_are_bit_exact(layout: str) -> None:
    """A size-symbol N (the column split's kernels) keeps the integer vector kernels."""
    act = "int8(per=token)"
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, 64], w: f32[N, 64] @ {layout}) -> f32[M, N] {{ return linear(quantize(x, {act}), w) }}"
    )
    assert "%row_offsets" in prog.f.ir("loops")  # tdsl-vectorize-integer took it
    rng = np.random.default_rng(7)
    for n, m in ((20, 1), (3, 9)):
        x, packed = rand(rng, m, 64), prog.f.pack("w", rand(rng, n, 64))
        assert np.array_equal(prog.f(x, packed), _integer_model(x, act, packed, layout))


def test_w8a8_against_float_model() -> None:
    """W8A8 with dynamic per-token activations stays close to the float product."""
    prog = stoicc_py.compile(
        "kernel f(x: f32[M, 256], w: f32[64, 256] @ int8(axis=0)) -> f32[M, 64] { return linear(quantize(x, int8(per=token)), w) }"
    )
    rng = np.random.default_rng(3)
    x, w = rand(rng, 32, 256), rand(rng, 64, 256)
    got = prog.f(x, w)  # a dense weight is quantized on the way in
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.linalg.norm(got - exact) / np.linalg.norm(exact) < 0.02


def test_unsupported_quantize_is_an_error() -> None:
    with pytest.raises(stoicc_py.CompileError, match="quantizes activations to int8"):
        stoicc_py.compile("kernel f(x: f32[M, 64]) -> f32[M, 64] { return dequantize(quantize(x, int4(group=32))) }")
