"""Differential testing: random products x layouts x shapes, on the CPU (bounds-checked)
and on the accelerator simulator, against the reference interpreter.

A case is a `linear` layer with a random weight layout (dense, N:M, block, CSR, hybrid,
int8 ... binary, composed, SQ), activation path (f32 through elementwise ops or a
softmax, i8, int8 per token, bit-split), bias, what follows (an activation, a second
use of the product, a softmax), and static N and K drawn around the vector paths' thresholds (K a
multiple of 32 or not, N below a register block of 6 or 16 columns, ragged); each
compiled kernel runs on several M (1, below a 4-row block, ragged). A target that
refuses a combination must say where, with a located CompileError. Bounded in CI (a
derandomized set, ~30 s); STOICC_FUZZ_EXAMPLES=N runs N random cases per target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st
from tdsl_strategies import fuzz_settings

import stoicc_py
from stoicc_py.diagnostics import CompileError

ROWS = (1, 3, 5, 17)  # M = 1, below a 4-row register block, ragged
# What follows the product, fused or not: activations, a second use, a row softmax.
EPILOGUES = ("{0}", "relu({0})", "gelu({0})", "sigmoid({0})", "{0} + 1.5", "{0} * sigmoid({0})", "softmax({0}, axis=1)")
FAMILIES = ("dense", "nm", "block", "csr", "hybrid", "quant", "nm-quant", "sq")
# What the f32 activations go through first: nothing, elementwise ops, a softmax.
PROLOGUES = ("x", "x", "(x * 0.5 - 1.0)", "tanh(x)", "softmax(x, axis=1)")


@dataclass(frozen=True)
class Case:
    layout: str
    n: int
    k: int
    activations: str  # f32 | i8 | int8-token | bitsplit
    bias: bool
    epilogue: str
    prologue: str = "x"

    @property
    def integer(self) -> bool:
        return self.activations == "i8"

    @property
    def quantized(self) -> bool:
        return any(self.layout.startswith(q) for q in ("int", "ternary", "binary", "sq")) or " with " in self.layout

    def source(self) -> str:
        xdt, rdt = ("i8", "i32") if self.integer else ("f32", "f32")
        wdt = "i8" if self.integer and not self.quantized else "f32"  # else a located dtype error
        x = {"int8-token": "quantize(x, int8(per=token))", "bitsplit": "quantize(x, bitsplit(int8))"}.get(
            self.activations, self.prologue if self.activations == "f32" else "x"
        )
        product = f"linear({x}, w, b)" if self.bias else f"linear({x}, w)"
        body = self.epilogue.format(product) if not self.integer else product  # float epilogues need floats
        return (
            f"kernel k(x: {xdt}[M, {self.k}], w: {wdt}[{self.n}, {self.k}] @ {self.layout}, b: {rdt}[{self.n}]) "
            f"-> {rdt}[M, {self.n}] {{ return {body} }}"
        )


def _multiples(of: int) -> st.SearchStrategy[int]:
    """Sizes in units of `of`: around 32 and 64 (vector thresholds) and ragged counts."""
    return st.sampled_from([of * c for c in (1, 2, 3, 5, 8, 9)])


@st.composite
def cases(draw: st.DrawFn, activations: tuple[str, ...] = ("f32", "i8", "int8-token", "bitsplit"),
          families: tuple[str, ...] = FAMILIES, epilogues: tuple[str, ...] = EPILOGUES) -> Case:  # fmt: skip
    family = draw(st.sampled_from(families))
    n, k, layout = draw(st.sampled_from([1, 5, 6, 7, 16, 17, 33])), draw(_multiples(4)), "dense"
    quant = draw(st.sampled_from(["int8(axis=0)", "int4(group=32)", "int2(group=32)", "ternary(axis=0)", "binary",
                                  "int4(group=16, symmetric=false)", "int5(group=32, symmetric=false)", "int8"]))  # fmt: skip
    match family:
        case "nm":
            nm = draw(st.sampled_from([(2, 4), (1, 4), (2, 8)]))
            k, layout = draw(_multiples(nm[1])), f"nm({nm[0]}, {nm[1]})"
        case "block":
            bh, bw = draw(st.sampled_from([(1, 4), (2, 8)]))
            n, k, layout = bh * draw(st.sampled_from([1, 3, 8])), draw(_multiples(bw)), f"block([{bh}, {bw}])"
        case "csr":
            layout = draw(st.sampled_from(["csr", "csr(index=i8)", "csr(index=i16)"]))
        case "hybrid":
            th, tw = draw(st.sampled_from([(8, 16), (16, 32)]))
            n, k = th * draw(st.sampled_from([1, 2, 3])), tw * draw(st.sampled_from([1, 2, 3]))
            layout = f"hybrid(tile=[{th}, {tw}], formats=[dense, nm(2, 4)])"
        case "quant" | "nm-quant" | "sq":
            k = draw(st.sampled_from([32, 64, 96, 160]))  # whole groups of 16 and 32
            sparse = "nm(2, 4) with " if family == "nm-quant" else ""
            layout = f"sq(low={quant}, high=int8, high_density=0.1)" if family == "sq" else sparse + quant
    epilogue, prologue = draw(st.sampled_from(epilogues)), draw(st.sampled_from(PROLOGUES))
    return Case(layout, n, k, draw(st.sampled_from(activations)), draw(st.booleans()), epilogue, prologue)


def _inputs(kernel: Any, case: Case, m: int, rng: np.random.Generator) -> list[Any]:
    if case.integer:
        x, w = rng.integers(-128, 128, (m, case.k), np.int8), rng.integers(-128, 128, (case.n, case.k), np.int8)
        b = rng.integers(-(2**16), 2**16, case.n, np.int32)
    else:
        x, w = (rng.standard_normal(s).astype(np.float32) for s in ((m, case.k), (case.n, case.k)))
        b = rng.standard_normal(case.n).astype(np.float32)
    if case.layout == "dense":
        return [x, w, b]
    prune = None if case.quantized and " with " not in case.layout else "magnitude"
    return [x, kernel.pack("w", w, prune=prune), b]


def _agree(got: np.ndarray, want: np.ndarray, case: Case) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    if case.integer:
        np.testing.assert_array_equal(got, want, err_msg=case.source())
    else:
        scale = max(float(np.max(np.abs(want))), 1e-6)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=case.source())


def run_case(case: Case, target: str) -> None:
    """Every M agrees with the reference, or the target refuses the kernel at its source
    line (the CPU when compiling; the accelerator when it builds a program for the first M)."""
    rng = np.random.default_rng(case.n * 1000 + case.k)
    try:
        prog: Any = stoicc_py.compile(case.source(), target, check_bounds=target == "cpu")
        for m in ROWS:
            args = _inputs(prog.k, case, m, rng)
            _agree(prog.k(*args), prog.k.reference(*args), case)
    except CompileError as err:
        assert err.loc is not None, f"unlocated refusal of {case.source()}: {err}"
        event(f"{target} refuses: {err.message.split(':')[0][:60]}")
        return
    event(f"{target} runs")


@fuzz_settings(ci_examples=7)
@given(case=cases())
def test_cpu_against_reference(case: Case) -> None:
    run_case(case, "cpu")


@fuzz_settings(ci_examples=15)  # cheap: a refusal costs the front end, a program is simulated
@given(case=cases(activations=("i8", "int8-token", "bitsplit"), epilogues=EPILOGUES[:4]))
def test_accelerator_against_reference(case: Case) -> None:
    run_case(case, "accel")


@fuzz_settings(ci_examples=40)
@given(case=cases(activations=("i8", "int8-token"), families=("dense", "nm", "hybrid", "quant", "nm-quant", "sq"),
                  epilogues=EPILOGUES[:4]).filter(lambda case: case.integer != case.quantized))  # fmt: skip
def test_accelerator_formats_against_reference(case: Case) -> None:
    """The formats the accelerator runs, with the activations each takes (i8 weights with i8
    activations, quantized ones with int8 per token), so that most cases reach the simulator."""
    run_case(case, "accel")
