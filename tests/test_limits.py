"""Resource limits: absurd sizes are refused with a clear error, never allocated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import stoicc_py
from stoicc_py.diagnostics import CompileError
from stoicc_py.limits import MAX_ELEMENTS


def _broadcast(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of `shape` that takes no memory (every stride 0)."""
    return np.broadcast_to(np.zeros((), np.float32), shape)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("kernel k(x: f32[1000000, 1000000]) -> f32[1000000, 1000000] { return relu(x) }", "1000000000000 elements"),
        ("kernel k(x: f32[M, 4]) -> f32[M, 99999999999999999999] { return x }", "a dimension of 99999999999999999999"),
        ("kernel k(x: f32[65536, 1], y: f32[1, 65537]) -> f32[1] { return sum(sum(x @ y, axis=1), axis=0) }",
         "4295032832 elements"),
    ],
)  # fmt: skip
def test_static_sizes_refused_at_compile_time(source: str, message: str) -> None:
    with pytest.raises(CompileError, match="tensor too large") as err:
        stoicc_py.compile(source, cache=False)
    assert err.value.loc is not None and message in str(err.value)


def test_call_refuses_huge_intermediate() -> None:
    """Both inputs are small, but their product [M, N] would be 10^12 elements."""
    prog = stoicc_py.compile("kernel k(x: f32[M, 4], y: f32[N, 4]) -> f32[M] { return sum(x @ transpose(y), axis=1) }")
    huge = _broadcast((10**6, 4))
    with pytest.raises(ValueError, match=r"k: these arguments make a tensor of shape \[1000000, 1000000\]"):
        prog.k(huge, huge)
    with pytest.raises(ValueError, match="these arguments make"):
        prog.k.reference(huge, huge)


def test_call_refuses_huge_argument_before_copying_it() -> None:
    prog = stoicc_py.compile("kernel k(x: f32[M, N]) -> f32[M, N] { return relu(x) }")
    with pytest.raises(ValueError, match="k: parameter 'x': .* more than the limit"):
        prog.k(_broadcast((MAX_ELEMENTS, 2)))


def test_pack_refuses_absurd_shape() -> None:
    with pytest.raises(ValueError, match="pack: w: 1000000000000 elements"):
        stoicc_py.pack(_broadcast((10**6, 10**6)), "nm(2, 4)")


def test_accelerator_refuses_a_program_too_large_to_unroll() -> None:
    prog = stoicc_py.compile(
        "kernel k(x: i8[M, 1024], w: i8[512, 1024]) -> i32[M, 512] { return linear(x, w) }", target="accel"
    )
    with pytest.raises(CompileError, match=r"would unroll \d+ tile products, more than the limit of 16384") as err:
        prog.k.program_for(M=10**7)
    assert err.value.loc is not None


def test_cli_refuses_absurd_dims(capsys: pytest.CaptureFixture[str]) -> None:
    from stoicc_py.cli import main

    mlp = Path(__file__).parent.parent / "examples" / "mlp.tdsl"
    assert main(["run", str(mlp), "--dim", "M=10000000000"]) == 1
    assert "--dim: parameter 'x' of mlp: a dimension of 10000000000 is larger than the limit" in capsys.readouterr().err
