"""Resource limits: absurd sizes are refused with a clear error, never allocated."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import stoicc_py
from stoicc_py.cli import main
from stoicc_py.diagnostics import CompileError, SourceLoc
from stoicc_py.interpreter import run_reference
from stoicc_py.limits import MAX_ELEMENTS, MAX_NESTING, MAX_OPERATIONS, MAX_SOURCE_CHARS
from stoicc_py.lowering import front_end


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


def test_accelerator_refuses_a_program_too_large_to_unroll(tmp_path: Path) -> None:
    # 16 KiB scratchpads: no tiles of this product take fewer than 2^14 tile products (on the
    # default machine [512, 512, 512] tiles take 4096)
    (tmp_path / "small.toml").write_text("[buffers]\ninp = 16\nwgt = 16\nacc = 16\n")
    prog = stoicc_py.compile("kernel k(x: i8[M, 16384], w: i8[4096, 16384]) -> i32[M, 4096] { return linear(x, w) }",
                             target="accel", machine=str(tmp_path / "small.toml"))  # fmt: skip
    # 192 MB of segments fit the default machine's DRAM (a larger program is refused for that first)
    with pytest.raises(CompileError, match=r"would unroll at least \d+ tile products, more than the limit of 16384") as err:
        prog.k.program_for(M=4096)
    assert err.value.loc is not None


def test_cli_refuses_absurd_dims(capsys: pytest.CaptureFixture[str]) -> None:
    mlp = Path(__file__).parent.parent / "examples" / "mlp.tdsl"
    assert main(["run", str(mlp), "--dim", "M=10000000000"]) == 1
    assert "--dim: parameter 'x' of mlp: a dimension of 10000000000 is larger than the limit" in capsys.readouterr().err


def _front_end_error(source: str) -> CompileError:
    with pytest.raises(CompileError) as err:
        front_end(source, "long.tdsl")
    return err.value


def _sum(terms: int) -> str:
    return "kernel k(x: f32[4]) -> f32[4] { return " + " + ".join(["x"] * terms) + " }"


def test_source_length_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A source up to MAX_SOURCE_CHARS parses; one character more is refused where it
    starts, at once, also for a 10 MB line (which once ran minutes into gigabytes)."""
    kernel = "kernel k(x: f32[4]) -> f32[4] { return x }\n# "
    front_end(kernel.ljust(MAX_SOURCE_CHARS, "c"), "long.tdsl")
    err = _front_end_error(kernel.ljust(MAX_SOURCE_CHARS + 1, "c"))
    assert err.loc == SourceLoc("long.tdsl", 2, MAX_SOURCE_CHARS - len(kernel) + 3)
    assert err.message == f"the source is longer than the limit of {MAX_SOURCE_CHARS} characters"
    path = tmp_path / "huge.tdsl"
    path.write_text("kernel k(x: f32[4]) -> f32[4] { return " + " + x" * 2_500_000 + " }")
    start = time.perf_counter()
    assert main(["compile", str(path), "--emit", "ir"]) == 1
    assert time.perf_counter() - start < 5
    out = capsys.readouterr().err
    assert out.startswith(f"{path}:1:{MAX_SOURCE_CHARS + 1}: error: the source is longer") and len(out) < 600


def test_nesting_limit() -> None:
    """MAX_NESTING brackets nest; one more is refused at that bracket, also where a
    layout's arguments would have been read recursively."""
    def nested(depth: int) -> str:
        return "kernel k(x: f32[4]) -> f32[4] { return " + "relu(" * depth + "x" + ")" * depth + " }"

    front_end(nested(MAX_NESTING), "long.tdsl")
    err = _front_end_error(nested(MAX_NESTING + 1))
    assert err.loc is not None and err.loc.col == nested(MAX_NESTING + 1).index("(x)") + 1  # the innermost bracket
    assert err.message == f"brackets nested too deeply (more than the limit of {MAX_NESTING})"
    layout = "kernel k(x: f32[4]) -> f32[4] { return quantize(x, int8(per=" + "f(" * 500 + ")" * 500 + ")) }"
    assert "nested too deeply" in _front_end_error(layout).message


def test_operation_limit() -> None:
    """A file compiles to at most MAX_OPERATIONS operations, its kernels together: a
    sum of 500 terms is within it and right; the first operation past it is refused."""
    module = front_end(_sum(500), "long.tdsl")
    x = np.array([-1.5, 0.0, 0.25, 3.0], np.float32)
    assert (run_reference(module, "k", [x], [np.dtype(np.float32)])[0] == 500 * x).all()
    front_end(_sum(MAX_OPERATIONS + 1), "long.tdsl")  # n terms, n - 1 additions
    err = _front_end_error(_sum(MAX_OPERATIONS + 2))
    assert err.loc is not None and err.loc.col == len("kernel k(x: f32[4]) -> f32[4] { return ") + 1
    assert err.message.startswith(f"the program is too long: more than the limit of {MAX_OPERATIONS} operations")
    err = _front_end_error(_sum(MAX_OPERATIONS // 2 + 1) + "\n" + _sum(MAX_OPERATIONS // 2 + 2).replace(" k(", " j("))
    assert err.loc is not None and err.loc.line == 2


def test_long_chain_compiles_natively() -> None:
    """A def-use chain of some seventy operations, through every pass to native code."""
    prog = stoicc_py.compile("kernel k(x: f32[4], y: f32[4]) -> f32[4] {\n  t = " + " + ".join(["x"] * 40)
                             + "\n  return " + "relu(" * 15 + "-" * 14 + "t - y" + ")" * 15 + "\n}", cache=False)  # fmt: skip
    x, y = np.array([-1.5, 0.0, 0.25, 3.0], np.float32), np.array([1.0, -2.0, 0.5, 0.0], np.float32)
    np.testing.assert_array_equal(prog.k(x, y), np.maximum(40 * x - y, 0))
