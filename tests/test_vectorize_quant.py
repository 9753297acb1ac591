"""tdsl-vectorize-quant: weight-only quantized products (f32 activations) as vector
kernels, against the reference interpreter on ragged shapes: every bit width, one
scale per tensor, row or group (32, 64, 128), symmetric and asymmetric codes, f32
and f16 scales, one and several n-tiles; codes stay exact, so activations far from
zero lose no accuracy."""

import ml_dtypes
import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py.backends.llvm.target import has_avx512bf16, host_features
from stoicc_py.passes.tdsl_vectorize_quant import PANEL_ROWS
from stoicc_py.passes.tdsl_vectorize_sparse import NM_PANEL_ROWS

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
    # Q4_1's and Q8_0's grids (SmolLM2's int4 model): GEMV blocks widen the f16 scales
    # (and offsets) of their rows into scratch per n-tile and prefetch rows ahead
    ("int4(group=32, zero=float, scale=f16)", 160, (16, 16, 64)),
    ("int8(group=32, scale=f16)", 96, ()),
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
        got = prog.f(x, packed, b)
        assert_close(got, want)
        # a row of a row block, and the same row alone (a GEMV block): the same bits
        assert np.array_equal(got[:1], prog.f(x[:1], packed, b))
        assert_close(prog.f(_unaligned(x), packed, b), want)
        far = x + 100  # sums of x in the thousands: an offset code would cancel them away
        assert_close(prog.f(far, packed, b), prog.f.reference(far, packed, b), rtol=1e-6)


KN_CASES = [  # (layout of a [K, N] weight, its codes and scales along N)
    "int4(group=128)",  # a GEMV tile of 8 chunks of 32 codes spans two groups
    "int8(axis=0)",  # a scale per row k
    "int8(axis=1)",  # a scale per column, applied once at the end
    "int4(group=32, zero=float, scale=f16)",  # Q4_1: an offset per group, its own accumulator
    "int4(group=64, symmetric=false)",  # zero points: -scale * zero point per group
    "int2(group=32)",  # 4 fields a byte; 8 lanes (a group holds 32 codes)
    "ternary",  # one scale for the tensor
    "binary(axis=0)",  # 8 fields a byte
]


@pytest.fixture(scope="module")
def kn_program() -> stoicc_py.Program:
    """`matmul(x, w)` with a quantized w stored [K, N]: N = 296 leaves a ragged tile, a
    ragged chunk and scalar columns; one kernel has a symbolic N and bf16 activations."""
    kernels = [f"kernel k{i}(x: f32[M, 64], w: f32[64, 296] @ {layout}, b: f32[296]) -> f32[M, 296] "
               "{ return relu(matmul(x, w) + b) }" for i, layout in enumerate(KN_CASES)]  # fmt: skip
    kernels.append("kernel generic(x: bf16[M, 96], w: bf16[96, N] @ int4(group=32)) -> bf16[M, N] { return matmul(x, w) }")
    return stoicc_py.compile("\n".join(kernels))


@pytest.mark.parametrize("case", range(len(KN_CASES)))
def test_kn_weight_matches_reference(kn_program: stoicc_py.Program, case: int) -> None:
    kernel = getattr(kn_program, f"k{case}")
    assert "tdsl.dequantize" not in kernel.ir("loops")  # read in place, no dequantized copy
    rng = np.random.default_rng(case)
    packed, b = kernel.pack("w", rand(rng, 64, 296)), rand(rng, 296)
    for m in (1, 3, 6):  # a GEMV, rows one at a time, a row block and an edge row
        x = rand(rng, m, 64)
        assert_close(kernel(x, packed, b), kernel.reference(x, packed, b))


def test_kn_weight_with_symbolic_n_and_bf16_activations(kn_program: stoicc_py.Program) -> None:
    kernel = kn_program.generic
    rng = np.random.default_rng(7)
    for n in (32, 290):
        packed = kernel.pack("w", rand(rng, 96, n))
        x = rand(rng, 5, 96).astype(ml_dtypes.bfloat16)
        got, want = kernel(x, packed).astype(np.float32), kernel.reference(x, packed).astype(np.float32)
        assert_close(got, want, rtol=1e-2)  # results rounded to bf16's 8 significant bits


PANEL_CASES = ["int4(group=64)", "int8(axis=0, scale=f16)", "int4(group=32, zero=float)", "int2(group=32, symmetric=false)", "ternary",
               "nm(2, 4)", "nm(2, 4) with int4(group=16)"]  # fmt: skip
# (nm with int4: tdsl-vectorize-sparse densifies its index words into the same panels; 2:4 of bf16
# values takes its own pair panels, PairProduct: tests/test_sparse.py)


@pytest.fixture(scope="module")
def panel_program() -> stoicc_py.Program:
    """bf16 activations and quantized or 2:4 weights (N = 40: a ragged n-tile) with bias and relu."""
    return stoicc_py.compile("\n".join(
        f"kernel p{i}(x: bf16[M, 128], w: bf16[40, 128] @ {layout}, b: bf16[40]) -> bf16[M, 40] "
        "{ return relu(linear(x, w, b)) }" for i, layout in enumerate(PANEL_CASES)))  # fmt: skip


@pytest.mark.parametrize("case", range(len(PANEL_CASES)))
def test_bf16_activations_match_reference(panel_program: stoicc_py.Program, case: int) -> None:
    """Below PANEL_ROWS rows (2:4: NM_PANEL_ROWS) the format's own kernel; from it on (where
    the host has AVX-512 BF16) the weight decoded into panels of bf16 pairs for the
    microkernel's PairKernel (2:4 of bf16 values: x's pair panels, PairProduct)."""
    kernel = getattr(panel_program, f"p{case}")
    if has_avx512bf16(host_features()):
        assert "dpbf16ps" in kernel.ir("loops")
    rng = np.random.default_rng(case)
    prune = "magnitude" if PANEL_CASES[case].startswith("nm") else None
    packed = kernel.pack("w", rand(rng, 40, 128).astype(ml_dtypes.bfloat16), prune=prune)
    b = rand(rng, 40).astype(ml_dtypes.bfloat16)
    first = NM_PANEL_ROWS if prune else PANEL_ROWS
    for m in (3, first, first + 21):
        x = rand(rng, m, 128).astype(ml_dtypes.bfloat16)
        got, want = kernel(x, packed, b).astype(np.float32), kernel.reference(x, packed, b).astype(np.float32)
        assert_close(got, want, rtol=1e-2)  # results rounded to bf16's 8 significant bits
