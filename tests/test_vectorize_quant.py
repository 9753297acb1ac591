"""tdsl-vectorize-quant: weight-only quantized products (f32 activations) as vector
kernels, against the reference interpreter on ragged shapes: every bit width, one
scale per tensor, row or group (32, 64, 128), symmetric and asymmetric codes, f32
and f16 scales, one and several n-tiles; codes stay exact, so activations far from
zero lose no accuracy."""

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py

N = 37
"""Output features: not a multiple of any column block, so every kernel edge runs."""

CASES = [  # (layout, K, tile sizes)
    ("int8(group=128)", 256, ()),  # sign-extended bytes are the codes
    ("int8(axis=0, symmetric=false)", 96, ()),  # zero points, x read in place
    ("int4(group=32)", 128, ()),  # one chunk of 16 lanes per group
    ("int4(group=64, symmetric=false, scale=f16)", 192, ()),
    ("int2(group=32, symmetric=false)", 128, ()),  # a group of 32 2-bit codes fills 8 lanes
    ("ternary(axis=0)", 192, (16, 16, 64)),  # n-tiles of 16 weight rows, the last one ragged
    ("binary", 320, ()),  # one scale; 8 lanes (320 is no multiple of 128 codes)
]


def _unaligned(x: np.ndarray) -> np.ndarray:
    """A copy of x 4 bytes past an aligned start: numpy buffers are only element-aligned,
    and vector loads must not assume more."""
    raw = np.empty(x.size + 1, np.float32)
    view = raw[1:].reshape(x.shape)
    view[:] = x
    return view


@pytest.mark.parametrize(("layout", "k", "tile"), CASES)
def test_matches_reference(layout: str, k: int, tile: tuple[int, ...]) -> None:
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[{N}, {k}] @ {layout}, b: f32[{N}]) -> f32[M, {N}] "
        "{ return relu(linear(x, w, b)) }",
        tile=tile,
    )
    assert "vector.fma" in prog.f.ir("loops")
    rng = np.random.default_rng(k)
    packed, b = prog.f.pack("w", rand(rng, N, k)), rand(rng, N)
    for m in (1, 3, 17):  # a single row, only edge rows, row blocks and an edge row
        x = rand(rng, m, k)
        want = prog.f.reference(x, packed, b)
        assert_close(prog.f(x, packed, b), want)
        assert_close(prog.f(_unaligned(x), packed, b), want)
        far = x + 100  # sums of x in the thousands: an offset code would cancel them away
        assert_close(prog.f(far, packed, b), prog.f.reference(far, packed, b), rtol=1e-6)
