"""The seeds' unified formats on the CPU: sparse x quantized composition, SQ-format
weights, and SPARQLe-style bit-split activations, against numpy models."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py.packing.bitsplit import bitsplit_linear
from stoicc_py.packing.quant import fake_quantize


def _linear(layout: str, act: str | None = None, k: int = 256, n: int = 48) -> stoicc_py.Kernel:
    x = f"quantize(x, {act})" if act else "x"
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}) -> f32[M, {n}] {{ return linear({x}, w) }}",
        tile=(4, 16, 64),
    )
    return prog.f


def _float_product(x: np.ndarray, w: stoicc_py.PackedTensor) -> np.ndarray:
    return (x.astype(np.float64) @ w.dequantize().astype(np.float64).T).astype(np.float32)


@pytest.mark.parametrize("layout", ["nm(2, 4) with int4(group=64)", "nm(2, 4) with int8(axis=0)",
                                    "nm(1, 4) with ternary(axis=0)", "nm(4, 8) with int4(group=32, symmetric=false)",
                                    "nm(2, 4) with int2(group=16, scale=f16)"])  # fmt: skip
def test_sparse_quantized_weights(layout: str) -> None:
    f = _linear(layout)
    for m in (1, 7, 33):
        rng = np.random.default_rng(m)
        x, w = rand(rng, m, 256), f.pack("w", rand(rng, 48, 256), prune="magnitude")
        got = f(x, w)
        assert_close(got, _float_product(x, w))
        assert_close(got, f.reference(x, w))


def test_sparse_int4_bytes_per_weight() -> None:
    w = stoicc_py.pack(rand(np.random.default_rng(0), 256, 1024), "nm(2, 4) with int4(group=128)", prune="magnitude")
    assert abs(w.nbytes / (256 * 1024) - 0.39) < 0.005


@pytest.mark.parametrize("layout", ["nm(2, 4) with int4(group=64)", "sq(low=int4(group=128), high=int8(axis=0))"])
def test_integer_products_of_composite_weights(layout: str) -> None:
    """W4A8 on a sparse or SQ weight: int8 per-token activations, i32 group dots."""
    f = _linear(layout, act="int8(per=token)")
    assert "arith.muli" in f.ir("loops")
    rng = np.random.default_rng(1)
    x = rand(rng, 9, 256)
    w = f.pack("w", rand(rng, 48, 256), **({"prune": "magnitude"} if "nm" in layout else {}))
    xq = fake_quantize(x, "int8(per=token)")
    assert_close(f(x, w), _float_product(xq, w))


@pytest.mark.parametrize("layout", ["sq(low=int4(group=128), high=int8, high_density=0.05)",
                                    "sq(low=int4(axis=0, symmetric=false), high=int8(axis=0), group=64, count=4)",
                                    "sq(low=ternary(group=64), high=int8(axis=0), high_density=0.1)"])  # fmt: skip
def test_sq_weights(layout: str) -> None:
    f = _linear(layout)
    rng = np.random.default_rng(2)
    w_dense = rand(rng, 48, 256)
    w_dense[rng.random(w_dense.shape) < 0.02] *= 20  # outliers for the high part
    w = f.pack("w", w_dense)
    assert 0 < w.high_fraction < 0.2
    for m in (1, 7, 33):
        x = rand(rng, m, 256)
        assert_close(f(x, w), _float_product(x, w))


def test_sq_beats_low_precision_alone_on_outliers() -> None:
    rng = np.random.default_rng(3)
    w = rand(rng, 64, 256)
    w[rng.random(w.shape) < 0.01] *= 30
    sq = stoicc_py.pack(w, "sq(low=int4(group=128), high=int8(axis=0), high_density=0.05)")
    low = stoicc_py.pack(w, "int4(group=128)")
    assert sq.error(w)["rel_fro"] < 0.5 * low.error(w)["rel_fro"]


@pytest.mark.parametrize("weight", ["int8(axis=0)", "int4(group=64)", "int8(group=32, symmetric=false)"])
@pytest.mark.parametrize("offset", [False, True])
def test_bitsplit_is_bit_exact(weight: str, offset: bool) -> None:
    """The CPU runs bit-split activations as int8 per token (tdsl-bitsplit-as-int8: the
    two 4-bit passes sum to the int8 codes' products), which equals the model's split exactly."""
    layout = f"bitsplit(int8, low_bits=4{', offset=true' if offset else ''})"
    f = _linear(weight, act=layout)
    assert "bitsplit" not in f.ir("opt")
    for m in (1, 6):
        rng = np.random.default_rng(m)
        x = (rng.laplace(0, 0.05, (m, 256)) + (rng.random((m, 256)) < 0.01) * 4).astype(np.float32)
        w = f.pack("w", rand(rng, 48, 256))
        got = f(x, w)
        assert np.array_equal(got, bitsplit_linear(stoicc_py.pack(x, layout), w))
        assert_close(got, _float_product(fake_quantize(x, "int8(per=token)"), w))


def test_offset_raises_msb_sparsity() -> None:
    rng = np.random.default_rng(4)
    x = (rng.laplace(0, 0.03, (16, 512)) + (rng.random((16, 512)) < 0.005) * 5).astype(np.float32)
    plain = stoicc_py.pack(x, "bitsplit(int8, low_bits=4)").msb_zero_fraction
    shifted = stoicc_py.pack(x, "bitsplit(int8, low_bits=4, offset=true)").msb_zero_fraction
    assert shifted > plain


def test_bitsplit_values_are_int8_per_token() -> None:
    """Read as values, bit-split activations are fake_quantize(x, int8(per=token)), as the model's."""
    f = stoicc_py.compile("kernel f(x: f32[M, 64]) -> f32[M, 64] { return relu(quantize(x, bitsplit(int8))) }").f
    x = rand(np.random.default_rng(6), 5, 64)
    assert np.array_equal(f(x), np.maximum(fake_quantize(x, "int8(per=token)"), 0))
    assert np.array_equal(f(x), f.reference(x))


@pytest.mark.parametrize("layout", ["sq(low=int8(per=token), high=int8(axis=0), group=64, count=3)",
                                    "sq(low=int8(group=32, symmetric=false), high=int8(axis=0), high_density=0.05)"])  # fmt: skip
def test_sq_activations_split_per_call(layout: str) -> None:
    """The kernel splits activations into low and high parts exactly as the model."""
    from stoicc_py.packing.sq import fake_sq

    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, 128], w: f32[128, 128]) -> f32[M, 128] {{ return linear(quantize(x, {layout}), w) }}"
    )
    rng = np.random.default_rng(5)
    x = rand(rng, 6, 128)
    x[rng.random(x.shape) < 0.03] *= 25  # activation outliers
    x[0, :8] = 1.5  # ties are broken by position
    assert np.array_equal(prog.f(x, np.eye(128, dtype=np.float32)), fake_sq(x, layout))
    w = rand(rng, 128, 128)
    assert_close(prog.f(x, w), (fake_sq(x, layout).astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("layout", ["block([4, 8]) with int8(axis=0)", "block([4, 4]) with int4(group=2, symmetric=false)",
                                    "csr with int8", "csr(index=i16) with int4",
                                    "hybrid(tile=[8, 16], formats=[dense, nm(2, 4)]) with int4(group=8)",
                                    "hybrid(tile=[8, 32], formats=[dense, nm(2, 4)]) with ternary(axis=0)"])  # fmt: skip
def test_every_sparse_format_with_quantization(layout: str) -> None:
    """Block, CSR and hybrid weights with quantized values: the format's loop reads
    each stored code and its scale, and matches numpy on dequantize()."""
    f = _linear(layout)
    rng = np.random.default_rng(7)
    w = rand(rng, 48, 256)
    w[rng.random(w.shape) < 0.6] = 0.0
    w[:8, 32:64] = 0.0  # some empty blocks and tiles
    packed = f.pack("w", w, prune="magnitude") if "nm" in layout else f.pack("w", w)
    for m in (1, 7):
        x = rand(rng, m, 256)
        assert_close(f(x, packed), _float_product(x, packed))
