"""The proof that a quant format is one place: int3/int5/int6 (bit planes) and ragged last
groups, through the codec, the packer, the reference interpreter, the CPU kernels (scalar
loops, the vector quant path, the integer path) and the accelerator, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, rand
from hypothesis import given, settings
from hypothesis import strategies as st

import stoicc_py
from stoicc_py.codec.uniform import CodeBits
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing.quant import fake_quantize, quantize

WIDTHS = ["int3", "int5", "int6"]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["int3", "int5", "int6", "int4", "int2", "int8", "binary"]), st.booleans(),
       st.integers(1, 3), st.integers(1, 6), st.integers(0, 2**32 - 1))  # fmt: skip
def test_code_bytes_round_trip(codes: str, symmetric: bool, rows: int, units: int, seed: int) -> None:
    """encode/decode invert each other on every level, and a row is bits * width / 8 bytes."""
    symmetric = symmetric or codes == "binary"
    attr = parse_layout(f"{codes}(symmetric={str(symmetric).lower()})")
    code = CodeBits.of(attr)
    width = code.unit * units
    low, high = (-code.qmax, code.qmax) if symmetric else (0, code.levels - 1)
    q = np.random.default_rng(seed).integers(low, high + 1, (rows, width)).astype(np.int32)
    if codes == "binary":
        q = np.where(q == 0, 1, q).astype(np.int32)
    data = code.encode(q)
    assert data.shape == (rows, width * code.bits // 8)
    assert np.array_equal(code.decode(data), q)


def _layouts(codes: str) -> list[str]:
    return [f"{codes}(axis=0)", f"{codes}(group=32)", f"{codes}(axis=0, symmetric=false)",
            f"{codes}(group=32, symmetric=false)"]  # fmt: skip


@pytest.mark.parametrize("layout", [lay for c in WIDTHS for lay in _layouts(c)])
def test_new_widths_weight_only(layout: str) -> None:
    """int3/int5/int6 on the vector quant path (bit planes) and against the reference."""
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, 128], w: f32[24, 128] @ {layout}) -> f32[M, 24] {{ return linear(x, w) }}"
    )
    rng = np.random.default_rng(3)
    x, w = rand(rng, 5, 128), rand(rng, 24, 128)
    packed = prog.f.pack("w", w)
    assert packed.arrays["values"].shape == (24, 128 * CodeBits.of(parse_layout(layout)).bits // 8)
    want = x.astype(np.float64) @ packed.dequantize().astype(np.float64).T
    assert_close(prog.f(x, packed), want.astype(np.float32))
    assert_close(prog.f(x, packed), prog.f.reference(x, packed))
    assert "vector.fma" in prog.f.ir("loops")  # the vector path, not a scalar fallback


RAGGED = [(576, "int4(group=128)"), (576, "int3(group=128, symmetric=false)"), (200, "int4(group=64)"),
          (200, "int8(group=64, symmetric=false)"), (200, "int3(group=64)"), (576, "int8(group=128)")]  # fmt: skip


@pytest.mark.parametrize(("k", "layout"), RAGGED)
def test_ragged_last_group(k: int, layout: str) -> None:
    """The last group of a row holds the remainder: scales [rows, ceil(K / group)]; the
    weight-only product (vector quant path) and dequantize match the reference."""
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[16, {k}] @ {layout}) -> f32[M, 16] {{ return linear(x, w) }}\n"
        f"kernel d(w: f32[16, {k}] @ {layout}) -> f32[16, {k}] {{ return dequantize(w) }}"
    )
    rng = np.random.default_rng(k)
    x, w = rand(rng, 3, k), rand(rng, 16, k)
    w[:, -1] = 40.0  # the last group's scale is its own
    packed = prog.f.pack("w", w)
    group = parse_layout(layout).group.data
    assert packed.arrays["scales"].shape == (16, -(-k // group))
    assert np.array_equal(prog.d(packed), packed.dequantize())
    tail = packed.dequantize()[:, k - k % group :]
    assert np.abs(tail - w[:, k - k % group :]).max() <= 40 / 3  # rounding to the ragged group's own scale
    want = x.astype(np.float64) @ packed.dequantize().astype(np.float64).T
    assert_close(prog.f(x, packed), want.astype(np.float32))


@pytest.mark.parametrize(("k", "layout"), [(576, "int4(group=128)"), (200, "int4(group=64)"), (200, "int8(group=64)")])
def test_ragged_last_group_integer(k: int, layout: str) -> None:
    """W8A8/W4A8 with a ragged last weight group: the integer path equals the reference bit for bit."""
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[16, {k}] @ {layout}) -> f32[M, 16] "
        f"{{ return linear(quantize(x, int8(per=token)), w) }}"
    )
    rng = np.random.default_rng(k + 1)
    x, w = rand(rng, 5, k), rand(rng, 16, k)
    packed = prog.f.pack("w", w)
    assert_close(prog.f(x, packed), prog.f.reference(x, packed))


def test_ragged_model_matches_two_layouts() -> None:
    """quantize on a ragged row = the whole groups, then the rest as one group of its own."""
    x = rand(np.random.default_rng(7), 4, 200)
    q = quantize(x, "int4(group=64)")
    head, tail = quantize(x[:, :192], "int4(group=64)"), quantize(np.ascontiguousarray(x[:, 192:]), "int4(group=8)")
    assert np.array_equal(q.codes, np.concatenate([head.codes, tail.codes], axis=1))
    assert np.array_equal(q.scales, np.concatenate([head.scales, tail.scales], axis=1))


@pytest.mark.parametrize("layout", ["int8(group=48)", "int8(group=48, symmetric=false)"])
def test_ragged_runtime_quantize_is_bit_exact(layout: str) -> None:
    """Activations quantized at run time in groups of 48 on rows of 64: the last group holds 16."""
    prog = stoicc_py.compile(f"kernel q(x: f32[M, 64]) -> f32[M, 64] {{ return dequantize(quantize(x, {layout})) }}")
    x = rand(np.random.default_rng(2), 5, 64) * 3
    x[:, 60] = 50.0
    assert np.array_equal(prog.q(x), fake_quantize(x, layout))


def _integer_model(x: np.ndarray, packed: stoicc_py.PackedTensor, layout: str) -> np.ndarray:
    """The integer path's arithmetic in numpy: per weight group the exact dot product of
    x's int8 codes and w's codes minus zero points, then sx * (((0 + sw_0 * dot_0) + sw_1 * dot_1) + ...)
    in float32."""
    attr = parse_layout(layout)
    xq = quantize(x, "int8(per=token)")
    zp = packed.arrays.get("zero_points")
    w = CodeBits.of(attr).decode(packed.arrays["values"]).astype(np.int64)
    k = w.shape[1]
    group = attr.group_size(k)
    scales = packed.arrays["scales"].reshape(w.shape[0], -1)
    acc = np.zeros((x.shape[0], w.shape[0]), np.float32)
    for g, k0 in enumerate(range(0, k, group)):
        wg = w[:, k0 : k0 + group] - (0 if zp is None else zp.reshape(w.shape[0], -1)[:, g : g + 1].astype(np.int64))
        dot = (xq.codes[:, k0 : k0 + group].astype(np.int64) @ wg.T).astype(np.int32).astype(np.float32)
        acc = acc + scales[:, g][None, :] * dot
    return xq.scales.reshape(-1, 1) * acc


def _integer_cases() -> list[tuple[str, int]]:
    """Every layout at K = 200, which ends off a step (a scalar tail, a ragged last group);
    at K = 128 the layouts whose whole steps take a path of their own: symmetric per channel
    (the panel kernel) and asymmetric per group (zero points over whole groups, two groups
    to a step with 16 lanes). The others' whole steps are those of K = 200 before its tail."""
    widths = [*WIDTHS, "int2"]
    return [(lay, 200) for c in widths for lay in _layouts(c)] + [
        (lay, 128) for c in widths for lay in (f"{c}(axis=0)", f"{c}(group=32, symmetric=false)")
    ]


@pytest.mark.parametrize(("layout", "k"), _integer_cases())
def test_new_widths_integer_path(layout: str, k: int) -> None:
    """int3/int5/int6 (and int2) weights times int8 per-token activations: the integer
    vector path (bytes unpacked from the bit planes, 4-byte dot products), bit for bit the
    integer model, symmetric or not, per channel or per group."""
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[24, {k}] @ {layout}) -> f32[M, 24] "
        f"{{ return linear(quantize(x, int8(per=token)), w) }}"
    )
    assert "%row_offsets" in prog.f.ir("loops")  # tdsl-vectorize-integer took it
    rng = np.random.default_rng(k)
    packed = prog.f.pack("w", rand(rng, 24, k))
    for m in (1, 7):
        x = rand(rng, m, k)
        assert np.array_equal(prog.f(x, packed), _integer_model(x, packed, layout))
        assert_close(prog.f(x, packed), prog.f.reference(x, packed))
