"""bf16 and f16 end to end: the conversions themselves against ml_dtypes, and kernels of
every weight layout that has f32 kernels against the reference, which rounds each op's
result to the declared dtype (docs/language.md, "Dtypes")."""

import importlib.util
import re
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import stoicc_py
from stoicc_py import CompileError, pack
from stoicc_py.models import load_weights, save_weights

BF16 = np.dtype(ml_dtypes.bfloat16)
NUMPY = {"bf16": BF16, "f16": np.dtype(np.float16)}
LAYOUTS = {
    "dense": "dense",
    "nm": "nm(2, 4)",
    "block": "block([4, 8])",
    "csr": "csr",
    "hybrid": "hybrid(tile=[8, 32], formats=[dense, nm(2, 4)])",
    "int8": "int8(axis=0)",
    "int4": "int4(group=32, scale=bf16)",
    "nm_int4": "nm(2, 4) with int4(group=16)",
    "sq": "sq(low=int4(group=32), high=int8, high_density=0.0625)",
}
PRUNE = {"nm", "nm_int4", "block", "csr", "hybrid"}


def _kernel(dtype: str, layout: str) -> str:
    return f"""
kernel f(x: {dtype}[M, 64], w: {dtype}[32, 64] @ {layout}, b: {dtype}[32]) -> {dtype}[M, 32] {{
  return gelu(linear(x, w, b))
}}
"""


def _close(out: np.ndarray, ref: np.ndarray, ulps: float = 2.0) -> None:
    """Within a few units of the dtype's last place of the largest reference magnitude
    (the kernel computes in f32, the reference in float64: both round the same result)."""
    assert out.dtype == ref.dtype
    eps = float(ml_dtypes.finfo(out.dtype).eps)
    a, r = out.astype(np.float64), ref.astype(np.float64)
    assert np.abs(a - r).max() <= ulps * eps * np.abs(r).max(), np.abs(a - r).max()


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_linear_layouts(dtype: str, name: str) -> None:
    k = stoicc_py.compile(_kernel(dtype, LAYOUTS[name]))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 64)).astype(NUMPY[dtype])
    w = (rng.standard_normal((32, 64)) * 0.2).astype(np.float32)
    b = rng.standard_normal(32).astype(NUMPY[dtype])
    prune = "magnitude" if name in PRUNE else None
    packed = w.astype(NUMPY[dtype]) if name == "dense" else pack(w, LAYOUTS[name], dtype=dtype, prune=prune)
    _close(k.f(x, packed, b), k.f.reference(x, packed, b))


def test_attention_in_half() -> None:
    """The ops of attention on bf16/f16 tensors: batched products (the vectorised matmul
    of b [k, n] too: 64 columns), a causal mask, softmax, slices, concat and reshapes."""
    k = stoicc_py.compile("".join(f"""
kernel {d}(q: {d}[2, T, 64], kv: {d}[2, S, 64]) -> {d}[T, 128] {{
  s = where(iota([T, S], axis=1) <= iota([T, S], axis=0) + S - T, matmul(q, transpose(kv)) * 0.125, -1e30)
  o = matmul(softmax(s, axis=-1), concat(kv[:, :, 32:64], kv[:, :, 0:32], axis=2))
  return reshape(transpose(o, [1, 0, 2]), [T, 128])
}}""" for d in NUMPY))  # fmt: skip
    rng = np.random.default_rng(3)
    for dtype, numpy_dtype in NUMPY.items():
        args = rng.standard_normal((2, 5, 64)).astype(numpy_dtype), rng.standard_normal((2, 9, 64)).astype(numpy_dtype)
        _close(getattr(k, dtype)(*args), getattr(k, dtype).reference(*args), ulps=4.0)


def test_runtime_quantize_rounds_its_16_bit_scales() -> None:
    """quantize(x, int8(per=token, scale=f16|bf16)) divides by the scale as stored (rounded
    to its dtype), as the reference does: codes and scales agree for both 16-bit scales."""
    k = stoicc_py.compile("".join(f"""
kernel {d}(x: f32[M, 64]) -> f32[M, 64] {{
  return dequantize(quantize(x, int8(per=token, scale={d})))
}}""" for d in NUMPY))  # fmt: skip
    x = (np.random.default_rng(4).standard_normal((5, 64)) * 3).astype(np.float32)
    for dtype in NUMPY:
        _same(getattr(k, dtype)(x), getattr(k, dtype).reference(x))


def test_quantized_activations() -> None:
    """quantize(x, int8(per=token)) of bf16/f16 activations (widened as loaded, then the
    f32 arithmetic), alone and as the int8 x int8 product's input."""
    k = stoicc_py.compile("".join(f"""
kernel {d}(x: {d}[M, 64], w: {d}[32, 64] @ int8(axis=0)) -> ({d}[M, 32], {d}[M, 64]) {{
  q = quantize(x, int8(per=token))
  return linear(q, w), dequantize(q)
}}""" for d in NUMPY))  # fmt: skip
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((5, 64)), (rng.standard_normal((32, 64)) * 0.2).astype(np.float32)
    for dtype, numpy_dtype in NUMPY.items():
        args = x.astype(numpy_dtype), pack(w, "int8(axis=0)", dtype=dtype)
        y, q = getattr(k, dtype)(*args)
        y_ref, q_ref = getattr(k, dtype).reference(*args)
        _close(y, y_ref)
        _same(q, q_ref)


EDGES = np.array(
    [0.0, -0.0, 1.0, 1.00390625, 1.01171875, 1.005859375, 1.0 + 2**-8 + 2**-20, -1.00390625,  # ties to even, above
     3.3895314e38, 3.4028235e38, -3.4028235e38, 1e-38, 1e-40, 2**-133, 3 * 2**-134, 1.5 * 2**-149,  # max, subnormals
     6.1e-5, 6.0e-8, 65504.0, 65520.0, 1e5, np.inf, -np.inf, np.nan, -np.nan],
    np.float32,
)


@pytest.fixture(scope="module")
def casts() -> stoicc_py.Program:
    return stoicc_py.compile("""
kernel down(x: f32[N]) -> (bf16[N], f16[N], i8[N]) {
  return cast(x, bf16), cast(x, f16), cast(x, i8)
}
kernel up(b: bf16[N], h: f16[N], i: i32[N]) -> (f32[N], f32[N], i8[N], bf16[N]) {
  return cast(b, f32), cast(h, f32), cast(i, i8), cast(i, bf16)
}
kernel weak(b: bf16[N], h: f16[N]) -> (bf16[N], f16[N], bf16[N], i32[N]) {
  eps = 1e-5
  return b * 0.1 + eps, h - -eps, where(b > 0.0, b, -1e30), iota([N], axis=0) * 3 - 1
}
kernel truth(x: f32[N], h: bf16[N], i: i32[N], q: i8[N]) -> (bool[N], bool[N], bool[N], bool[N], f32[N], f16[N], i32[N], i8[N]) {
  c = x > 0.0
  return cast(x, bool), cast(h, bool), cast(i, bool), cast(q, bool), cast(c, f32), cast(c, f16), cast(c, i32), cast(c, i8)
}
""")


def _same(out: np.ndarray, want: np.ndarray) -> None:
    """Equal values, NaN where NaN (numpy compares bf16 through float32)."""
    np.testing.assert_array_equal(out.astype(np.float32), want.astype(np.float32))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_rounding_matches_ml_dtypes(casts: stoicc_py.Program) -> None:
    bf, h, i = casts.down(EDGES)
    _same(bf, EDGES.astype(BF16))  # round to nearest even, subnormals kept, overflow to inf
    _same(h, EDGES.astype(np.float16))
    with np.errstate(invalid="ignore"):
        want = np.clip(np.nan_to_num(np.rint(EDGES.astype(np.float64)), nan=0, posinf=127, neginf=-128), -128, 127)
    np.testing.assert_array_equal(i, want.astype(np.int8))  # rounds to even, saturates, NaN gives 0
    for out, ref in zip((bf, h, i), casts.down.reference(EDGES)):
        _same(out, ref)


def test_widening_is_exact(casts: stoicc_py.Program) -> None:
    bits = np.arange(0, 1 << 16, 7, dtype=np.uint16)  # every exponent, both signs, NaNs and infinities
    b, h = bits.view(BF16), bits.view(np.float16)
    ints = np.array([-(2**31), -129, -128, 127, 128, 2**24 + 1, 2**31 - 1] * (len(bits) // 7 + 1), np.int32)[: len(bits)]
    fb, fh, i8, ib = casts.up(b, h, ints)
    _same(fb, b.astype(np.float32))
    _same(fh, h.astype(np.float32))
    np.testing.assert_array_equal(i8, np.clip(ints, -128, 127).astype(np.int8))
    _same(ib, ints.astype(np.float32).astype(BF16))  # through f32, as documented
    for out, ref in zip((fb, fh, i8, ib), casts.up.reference(b, h, ints)):
        _same(out, ref)


def test_call_refuses_float32_for_bf16(casts: stoicc_py.Program) -> None:
    with np.errstate(all="ignore"), pytest.raises(TypeError, match=r"expects dtype bfloat16 .*astype\(ml_dtypes.bfloat16\)"):
        casts.up(EDGES, EDGES.astype(np.float16), EDGES.astype(np.int32))


def test_literals_take_the_dtype_they_meet(casts: stoicc_py.Program) -> None:
    """A literal is rounded to its partner's dtype first, as numpy 2 and JAX type scalars."""
    b = np.linspace(-2, 2, 9).astype(BF16)
    h = np.linspace(-1, 1, 9).astype(np.float16)
    out = casts.weak(b, h)
    f32 = np.float32
    want = (
        ((b.astype(f32) * f32(BF16.type(0.1))).astype(BF16).astype(f32) + f32(BF16.type(1e-5))).astype(BF16),
        (h.astype(f32) + f32(np.float16(1e-5))).astype(np.float16),
        np.where(b > 0, b, BF16.type(-1e30)),
        np.arange(9, dtype=np.int32) * 3 - 1,
    )
    for o, w, r in zip(out, want, casts.weak.reference(b, h)):
        assert o.dtype == w.dtype == r.dtype
        _same(o, w)
        _same(o, r)


def test_bool_casts(casts: stoicc_py.Program) -> None:
    """To bool is x != 0 (NaN gives true, -0.0 false), from bool 0 or 1: numpy's astype."""
    x = np.array([0.0, -0.0, 1.0, -2.0, np.nan, -np.inf, 1e-45, 0.5], np.float32)
    ints = np.array([0, 1, -1, 0, 300, -(2**31), 0, 7], np.int32)
    args = (x, x.astype(BF16), ints, ints.astype(np.int8))
    out = casts.truth(*args)
    want = [a.astype(bool) for a in args] + [(x > 0).astype(t) for t in (np.float32, np.float16, np.int32, np.int8)]
    for o, w, r in zip(out, want, casts.truth.reference(*args)):
        assert o.dtype == w.dtype == r.dtype
        np.testing.assert_array_equal(o, w)
        np.testing.assert_array_equal(r, w)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("i + 1.5", "the literal 1.5 meets an i32 tensor, whose dtype it takes, but is not an i32"),
        ("q * 300", "the literal 300 meets an i8 tensor, whose dtype it takes, but is not an i8 (an integer in -128..127)"),
        ("i + b", "operands have different element types: i32[4] and bf16[4]"),
    ],
)
def test_literal_errors(body: str, message: str) -> None:
    source = f"kernel k(i: i32[4], q: i8[4], b: bf16[4]) -> i32[4] {{\n  return {body}\n}}\n"
    with pytest.raises(CompileError, match=r"^<string>:2:\d+: error: " + re.escape(message)):
        stoicc_py.compile(source)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_weights_keep_their_dtype(suffix: str, tmp_path: Path) -> None:
    """save_weights/load_weights round-trip bf16 and f16 tensors (safetensors "BF16"/"F16",
    npz of ml_dtypes arrays), with numpy alone; files of the safetensors package read alike."""
    rng = np.random.default_rng(3)
    weights = {"w": rng.standard_normal((3, 4)).astype(BF16), "h": rng.standard_normal(5).astype(np.float16),
               "f": rng.standard_normal((2, 2)).astype(np.float32), "e": np.zeros((0, 3), np.int8)}  # fmt: skip
    loaded = load_weights(save_weights(weights, tmp_path / f"m{suffix}"))
    assert {n: a.dtype for n, a in loaded.items()} == {n: a.dtype for n, a in weights.items()}
    for name, array in weights.items():
        np.testing.assert_array_equal(loaded[name].view(np.uint8), array.view(np.uint8))  # the same bits
    if suffix == ".safetensors" and importlib.util.find_spec("safetensors"):
        from safetensors.numpy import load_file, save_file

        assert load_file(str(tmp_path / "m.safetensors"))["h"].tobytes() == weights["h"].tobytes()
        save_file({"h": weights["h"], "f": weights["f"]}, str(tmp_path / "p.safetensors"))
        np.testing.assert_array_equal(load_weights(tmp_path / "p.safetensors")["h"], weights["h"])
