"""bf16 x bf16 `linear` on the vdpbf16ps microkernels (tdsl-microkernel's BF16Kernel and,
for static k a multiple of 32 and 16 rows or more, PairKernel, where the host has AVX-512 BF16) and on the portable f32 FMA kernel (the same kernel
with the feature off), on ragged shapes: bit for bit where every partial sum is exact
(then only the result's one rounding to bf16 remains), within the f32 summation bound
on random data, and vdpbf16ps's flush of bf16 subnormals (DAZ)."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from conftest import Array

import stoicc_py
from stoicc_py import pipeline
from stoicc_py.backends.llvm.target import has_avx512bf16, host_features
from stoicc_py.cli import main

BF16 = np.dtype(ml_dtypes.bfloat16)
PATHS = ["dpbf16", "portable"] if has_avx512bf16(host_features()) else ["portable"]
SOURCE = """
kernel exact(x: bf16[M, K], w: bf16[N, K]) -> bf16[M, N] { return linear(x, w) }
kernel biased(x: bf16[M, K], w: bf16[N, K], b: bf16[N]) -> bf16[M, N] { return relu(linear(x, w, b)) }
"""
SHAPES = ((1, 5, 3), (3, 7, 33), (17, 13, 64), (6, 50, 1056), (23, 40, 96))  # m, n, k: ragged against
# 4x6 blocks, 32-column steps; k = 1056 past the f32 kernel's k-tile of 1024; k = 64 and 96 (multiples
# of 32) take the pair panels' outer product for the first 16 rows (6-row blocks and 1-row edges,
# 2 whole vectors of columns and 8 dot products past them at n = 40), the dot-product blocks after


@pytest.fixture(scope="module", params=PATHS)
def program(request: pytest.FixtureRequest) -> tuple[str, stoicc_py.Program]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "has_avx512bf16", lambda _features: request.param == "dpbf16")
        prog = stoicc_py.compile(SOURCE, cache=False)
        assert isinstance(prog, stoicc_py.Program)
        assert ("dpbf16ps" in prog.ir("loops")) == (request.param == "dpbf16")  # IR made under the patch
    return request.param, prog


def _exact(a: Array, b: Array) -> Array:
    return a.astype(np.float64) @ b.astype(np.float64).T


def test_exact_sums_round_once(program: tuple[str, stoicc_py.Program]) -> None:
    """Small integers: every product and partial sum is exact in f32 in any order, so the
    result is the exact sum rounded once to bf16 (also past a k-tile of 1024: the
    product sums into an f32 buffer, tdsl-bufferize's, and is cast once)."""
    _, prog = program
    rng = np.random.default_rng(3)
    for m, n, k in SHAPES:
        x, w = (rng.integers(-8, 9, shape).astype(BF16) for shape in ((m, k), (n, k)))
        want = _exact(x, w).astype(np.float32).astype(BF16)
        got = prog.exact(x, w)
        assert got.dtype == BF16 and np.array_equal(got.view(np.uint16), want.view(np.uint16)), (m, n, k)


def test_random_within_summation_bound(program: tuple[str, stoicc_py.Program]) -> None:
    """Random normals with a bias and relu: |got - exact| <= the bf16 roundings of the sum
    and of the bias add (2 half ulps, 2^-8 |exact|) + f32 summation's bound k 2^-24 sum|x w|."""
    _, prog = program
    rng = np.random.default_rng(4)
    for m, n, k in SHAPES:
        x, w = (rng.standard_normal(shape).astype(BF16) for shape in ((m, k), (n, k)))
        b = rng.standard_normal(n).astype(BF16)
        exact = np.maximum(_exact(x, w) + b.astype(np.float64), 0)
        bound = 2.0**-8 * np.abs(exact) + (k + 2) * 2.0**-24 * (np.abs(_exact(x, w)) + _exact(abs(x), abs(w)))
        got = prog.biased(x, w, b).astype(np.float64)
        assert np.all(np.abs(got - exact) <= bound), (m, n, k, np.max(np.abs(got - exact) - bound))


def test_subnormal_bf16_inputs(program: tuple[str, stoicc_py.Program]) -> None:
    """vdpbf16ps reads bf16 subnormals as zero (DAZ): 2^-130 * 2^100 = 2^-30, a normal
    product, is 0 on that path; the f32 kernel keeps it (and the scalar k tail, past the
    last whole 32 columns, keeps it on both)."""
    path, prog = program
    k = 40
    x, w = np.zeros((2, k), BF16), np.zeros((1, k), BF16)
    x[0, 3] = x[1, 35] = BF16.type(2.0**-130)
    w[0, 3] = w[0, 35] = BF16.type(2.0**100)
    got = prog.exact(x, w).astype(np.float64)
    assert got[1, 0] == 2.0**-30
    assert got[0, 0] == (0.0 if path == "dpbf16" else 2.0**-30)


@pytest.mark.skipif("dpbf16" not in PATHS, reason="the host has no AVX-512 BF16")
def test_mattr_without_avx512bf16(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--mattr=-avx512bf16` takes the f32 kernel (the pipeline reads the target's
    features, not the host's): no vdpbf16ps in its assembly, which the host's has."""
    source = tmp_path / "k.tdsl"
    source.write_text("kernel f(x: bf16[M, 64], w: bf16[8, 64]) -> bf16[M, 8] { return linear(x, w) }\n")
    asm = {}
    for mattr in ("", "--mattr=-avx512bf16"):
        assert main(["compile", str(source), "--emit", "asm", *([mattr] if mattr else [])]) == 0
        asm[mattr] = capsys.readouterr().out
    assert "vdpbf16ps" in asm[""] and "vdpbf16ps" not in asm["--mattr=-avx512bf16"]
    assert "vfmadd" in asm["--mattr=-avx512bf16"]
