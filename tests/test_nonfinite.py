"""Non-finite numbers (docs/language.md, "Non-finite values"): weights with a NaN or an
infinity are refused, naming the row and column, by every path that stores a weight;
activations with them give the same NaN and infinity positions in compiled kernels (CPU
and accelerator) and in the reference interpreter."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tdsl_strategies import fuzz_settings
from test_differential import FAMILIES, Case, cases

import stoicc_py
from stoicc_py.cli import main
from stoicc_py.diagnostics import CompileError
from stoicc_py.explore import Calibration, Settings, explore
from stoicc_py.explore import candidates as explore_candidates

NON_FINITE = (np.nan, np.inf, -np.inf)
LAYOUTS = {  # one layout per family, on a [16, 64] weight, and whether prune= applies
    "dense": ("dense", False),
    "nm": ("nm(2, 4)", True),
    "block": ("block([2, 8])", True),
    "csr": ("csr(index=i16)", True),
    "hybrid": ("hybrid(tile=[8, 16], formats=[dense, nm(2, 4)])", True),
    "quant": ("int4(group=32, symmetric=false)", False),
    "nm-quant": ("nm(2, 4) with int4(group=16)", True),
    "sq": ("sq(low=int4(group=32), high=int8, high_density=0.1)", False),
    "bitsplit": ("bitsplit(int8)", False),
}


def _located(r: int, c: int, v: float) -> str:
    return re.escape(f"at row {r}, column {c} is {np.float32(v)}")


def _weight(r: int, c: int, v: float, shape: tuple[int, int] = (16, 64)) -> np.ndarray[Any, Any]:
    w = np.random.default_rng(r * 100 + c).standard_normal(shape).astype(np.float32)
    w[r, c] = v
    return w


# ---------------------------------------------------------------------------- item: weights


@fuzz_settings(ci_examples=60)
@given(family=st.sampled_from(sorted(LAYOUTS)), v=st.sampled_from(NON_FINITE), r=st.integers(0, 15),
       c=st.integers(0, 63), extra=st.booleans(), prune=st.booleans())  # fmt: skip
def test_pack_names_the_first_non_finite_weight(
    family: str, v: float, r: int, c: int, extra: bool, prune: bool
) -> None:
    """Every layout family, pruned or not, refuses before any packer reads the values (an nm
    group with a NaN once kept N+1 values: 'cannot reshape array of size 65')."""
    layout, prunes = LAYOUTS[family]
    w = _weight(r, c, v)
    if extra:  # a second one later in row-major order: the first is named, the count given
        w[15, 63] = w[15, 63] if (r, c) == (15, 63) else np.inf
    more = " (and 1 more)" if extra and (r, c) != (15, 63) else ""
    with pytest.raises(
        ValueError, match=f"^pack: w {_located(r, c, v)}{re.escape(more)}; a stored weight must be finite$"
    ):
        stoicc_py.pack(w, layout, prune="magnitude" if prune and prunes else None)


def test_hybrid_auto_plan_and_calibration() -> None:
    w = _weight(3, 5, np.nan)
    with pytest.raises(ValueError, match=_located(3, 5, np.nan)):
        stoicc_py.pack(w, LAYOUTS["hybrid"][0], prune="magnitude", plan="auto", sparsity=0.5)
    with pytest.raises(ValueError, match=_located(3, 5, np.nan)):
        stoicc_py.pack(w, "int4(group=32)", calibrate="awq", activations=np.ones((4, 64), np.float32))


def test_a_call_with_a_dense_weight_for_a_packed_parameter() -> None:
    k = stoicc_py.compile(Case("nm(2, 4)", 16, 64, "f32", bias=True, epilogue="{0}").source()).k  # as below: cached
    x, b = np.ones((2, 64), np.float32), np.ones(16, np.float32)
    for call in (k, k.reference, lambda x, w, b: k.pack("w", w, prune="magnitude")):
        with pytest.raises(ValueError, match=f"^k: parameter 'w': pack: w {_located(7, 9, np.inf)}"):
            call(x, _weight(7, 9, np.inf), b)


@pytest.mark.parametrize("layout", ["dense", "nm(2, 4)", "int8(axis=0)"])
def test_torch_layers(layout: str) -> None:
    torch = pytest.importorskip("torch")
    stoicc_torch = pytest.importorskip("stoicc_py.torch")
    linear = torch.nn.Linear(64, 16)
    with torch.no_grad():
        linear.weight[4, 60] = float("-inf")
    with pytest.raises(ValueError, match=f"^Linear\\(64, 16\\) cannot take layout .*{_located(4, 60, -np.inf)}"):
        stoicc_torch.StoiccLinear.from_linear(linear, layout)
    with pytest.raises(ValueError, match=_located(4, 60, -np.inf)):
        stoicc_torch.compress(torch.nn.Sequential(linear), layout)


def test_explore_refuses_before_measuring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    known = explore_candidates(32)
    with pytest.raises(ValueError, match=f"^explore: matrix 'l0.w' {_located(2, 3, np.nan)}"):
        explore({"l0.w": _weight(2, 3, np.nan)}, [known["dense"]], Calibration("synthetic"), Settings())
    np.savez(tmp_path / "w.npz", **{"l0.w": _weight(2, 3, np.nan)})
    assert main(["explore", str(tmp_path / "w.npz"), "--formats", "dense", "-q"]) == 1
    assert f"row 2, column 3 is {np.float32(np.nan)}" in capsys.readouterr().err


# ---------------------------------------------------------------------------- item: activations


def _structured_zeros(case: Case, w: np.ndarray[Any, Any], rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """w with zeros that csr and block leave unstored (random entries, whole blocks, a whole
    row), so that infinities meet structural zeros; nm and hybrid prune by magnitude."""
    if case.layout.startswith("block"):
        bh, bw = (int(d) for d in re.findall(r"\d+", case.layout))
        keep = rng.random((case.n // bh, case.k // bw)) < 0.5
        return w * np.repeat(np.repeat(keep, bh, axis=0), bw, axis=1)
    if case.layout.startswith("csr"):
        w = w * (rng.random(w.shape) < 0.3)
        w[rng.integers(case.n)] = 0
    return w


def _inputs(kernel: Any, case: Case, m: int, rng: np.random.Generator) -> list[Any]:
    x = rng.standard_normal((m, case.k)).astype(np.float32)
    flat = x.reshape(-1)  # a few non-finite activations anywhere but the first row
    where = rng.choice(x.size - case.k, size=rng.integers(1, 4), replace=False) + case.k
    flat[where] = rng.choice(NON_FINITE, where.size)
    w = _structured_zeros(case, rng.standard_normal((case.n, case.k)).astype(np.float32), rng)
    b = rng.standard_normal(case.n).astype(np.float32)
    if case.layout == "dense":
        return [x, w, b]
    if case.layout.startswith("hybrid"):
        return [x, kernel.pack("w", w, prune="magnitude", plan="auto", sparsity=0.5), b]
    return [x, kernel.pack("w", w, prune=None if case.quantized and " with " not in case.layout else "magnitude"), b]


def _same_non_finite(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any], case: Case) -> None:
    for where in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(where(got), where(want), err_msg=f"{where.__name__}: {case.source()}")
    scale = max(float(np.max(np.abs(want[np.isfinite(want)]), initial=0)), 1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, equal_nan=True, err_msg=case.source())


def _run(case: Case, target: str) -> None:
    rng = np.random.default_rng(case.n * 1000 + case.k)
    try:
        k = stoicc_py.compile(case.source(), target).k
        for m in (2, 5):
            args = _inputs(k, case, m, rng)
            with np.errstate(invalid="ignore", over="ignore"):
                _same_non_finite(k(*args), k.reference(*args), case)
    except CompileError as err:  # a combination the target refuses, located
        assert err.loc is not None, f"unlocated refusal of {case.source()}: {err}"


SPARSE_OF = {"dense": "dense", "nm": "nm(2, 4)", "block": "block([2, 8])", "csr": "csr", "hybrid": LAYOUTS["hybrid"][0],
             "quant": "int8(axis=0)", "nm-quant": "nm(2, 4) with int4(group=16)", "sq": LAYOUTS["sq"][0]}  # fmt: skip
PATHS = [(family, "f32") for family in FAMILIES] + [("dense", "int8-token"), ("nm", "int8-token"),
                                                    ("quant", "int8-token"), ("quant", "bitsplit")]  # fmt: skip


@pytest.mark.parametrize(("family", "activations"), PATHS)
def test_every_family_agrees_on_non_finite_activations(family: str, activations: str) -> None:
    """Every layout family with f32 activations; runtime quantize per token (W8A8) and bit-split."""
    _run(Case(SPARSE_OF[family], 16, 64, activations, bias=True, epilogue="{0}"), "cpu")


@fuzz_settings(ci_examples=2)
@given(case=cases(activations=("f32", "int8-token", "bitsplit"), epilogues=("{0}", "{0} + 1.5")))
def test_cpu_non_finite_activations(case: Case) -> None:
    _run(Case(case.layout, case.n, case.k, case.activations, case.bias, case.epilogue), "cpu")


@fuzz_settings(ci_examples=4)
@given(case=cases(activations=("int8-token", "bitsplit"), families=("dense", "nm", "hybrid", "quant", "nm-quant"),
                  epilogues=("{0}",)))  # fmt: skip
def test_accelerator_non_finite_activations(case: Case) -> None:
    """The accelerator quantizes f32 activations on its vector unit: a row with an inf or NaN
    has codes 0 and a non-finite scale, so NaN values, as on the CPU."""
    _run(case, "accel")
