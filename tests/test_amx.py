"""bf16 and int8 linear on AMX tiles (passes/tdsl_amx.py): in the pipeline only where the
target has amx-tile and amx-bf16 or amx-int8 (the host's unless STOICC_AMX=0); its results
against numpy on the same values, on a host that has AMX (skipped elsewhere; run on an
Emerald Rapids Xeon, 2026-12-06)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import stoicc_py
from stoicc_py.backends.llvm.target import host_features
from stoicc_py.pipeline import Stage, pipeline_passes

BF16 = np.dtype(ml_dtypes.bfloat16)
AMX = {"amx-tile", "amx-bf16", "amx-int8"}


def _amx_pass(features: set[str]) -> str | None:
    passes = pipeline_passes(Stage.LOOPS, features=frozenset({"avx512f", *features}))
    return next((p for p in passes if p.startswith("tdsl-amx")), None)


def test_pipeline_has_amx_only_with_the_features() -> None:
    assert _amx_pass({"amx-tile", "amx-bf16"}) == "tdsl-amx{bf16=true int8=false}"
    assert _amx_pass({"amx-tile", "amx-int8"}) == "tdsl-amx{bf16=false int8=true}"
    assert _amx_pass({"amx-tile"}) is None
    assert _amx_pass({"amx-bf16", "amx-int8"}) is None


def test_a_named_amx_cpu_gets_tile_code(tmp_path) -> None:
    """Compiled for Sapphire Rapids (any host can emit it), the product is tile instructions."""
    from stoicc_py.cli import main

    source = tmp_path / "k.tdsl"
    source.write_text("kernel k(x: bf16[M, 64], w: bf16[96, 64]) -> bf16[M, 96] { return linear(x, w) }\n")
    out = tmp_path / "k.s"
    assert main(["compile", str(source), "--mcpu", "sapphirerapids", "--emit", "asm", "-o", str(out)]) == 0
    asm = out.read_text()
    assert "tdpbf16ps" in asm and "ldtilecfg" in asm and "tilerelease" in asm
    source.write_text("kernel k(x: i8[M, 128], w: i8[96, 128]) -> i32[M, 96] { return linear(x, w) }\n")
    assert main(["compile", str(source), "--mcpu", "sapphirerapids", "--emit", "asm", "-o", str(out)]) == 0
    assert "tdpbssd" in out.read_text()


needs_amx = pytest.mark.skipif(
    not AMX <= host_features(), reason="no AMX: the host has none, the OS did not grant it, or STOICC_AMX=0"
)


@needs_amx
@pytest.mark.parametrize("m", [1, 31, 32, 33, 70])
@pytest.mark.parametrize(("n", "k"), [(32, 32), (96, 64), (64, 576)])
def test_amx_linear_matches_numpy(m: int, n: int, k: int) -> None:
    """Whole and ragged 32-row blocks; the tiles accumulate into the product's f32 buffer
    (whole blocks store into it straight), rounded once to the bf16 result."""
    kernel = stoicc_py.compile(
        f"kernel k(x: bf16[M, {k}], w: bf16[{n}, {k}]) -> bf16[M, {n}] {{ return linear(x, w) }}", cache=False
    ).k
    assert "tdpbf16ps" in kernel.ir("asm")
    rng = np.random.default_rng(m * n + k)
    x, w = rng.standard_normal((m, k)).astype(BF16), rng.standard_normal((n, k)).astype(BF16)
    exact = x.astype(np.float64) @ w.astype(np.float64).T
    y = kernel(x, w).astype(np.float64)
    # f32 accumulation of exact products (within k f32 roundings of the sum of magnitudes),
    # then the result's own rounding to bf16
    bound = k * 2.0**-23 * (np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T) + 2.0**-8 * np.abs(exact)
    assert np.all(np.abs(y - exact) <= bound + 1e-30)


@needs_amx
@pytest.mark.parametrize("m", [1, 31, 32, 33, 70])
@pytest.mark.parametrize(("n", "k"), [(32, 64), (96, 128), (64, 576)])
def test_amx_int8_linear_is_exact(m: int, n: int, k: int) -> None:
    """i8 x i8 -> i32 on tdpbssd: the exact integer product, whole and ragged row blocks."""
    kernel = stoicc_py.compile(
        f"kernel k(x: i8[M, {k}], w: i8[{n}, {k}]) -> i32[M, {n}] {{ return linear(x, w) }}", cache=False
    ).k
    assert "tdpbssd" in kernel.ir("asm")
    rng = np.random.default_rng(m * n + k)
    x, w = (rng.integers(-128, 128, shape, dtype=np.int8) for shape in ((m, k), (n, k)))
    np.testing.assert_array_equal(kernel(x, w), x.astype(np.int64) @ w.astype(np.int64).T)
