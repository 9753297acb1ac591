"""The fuzzer: every input ends in compiled code or a located diagnostic.

Programs come from the grammar (tests/tdsl_strategies.py) and from token mutations of
examples/*.tdsl; each goes through the `stoicc compile` command (in process), which
must exit 0, or 1 with `FILE:LINE:COL: error: ...` - never an internal error, a
Python traceback or a hang. In CI the examples are derandomized and few (a fixed
set, ~30 s); `STOICC_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py` runs a longer,
random search whose failures hypothesis replays from its database (docs/testing.md).
Inputs that once crashed are kept in tests/fuzz_regressions/.
"""

from __future__ import annotations

import io
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from types import FrameType

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from tdsl_strategies import (
    LongProgram,
    fuzz_settings,
    grammar_programs,
    layouts,
    linear_programs,
    long_programs,
    mutated_examples,
)

import stoicc_py
from stoicc_py.cli import main
from stoicc_py.diagnostics import CompileError
from stoicc_py.interpreter import run_reference
from stoicc_py.lowering import front_end

SECONDS_PER_INPUT = 60  # a generous bound: the slowest valid input compiles in a few seconds
FRONT_END_SECONDS = 10  # the front end alone, on a program at its limits (~1 s)
# Where `w: f32[16, 64] @ LAYOUT` may go (x: f32[16, 64]; v = w), and the result's type
LAYOUT_USES = {
    "w": "f32[16, 64]", "v": "f32[16, 64]", "relu(w)": "f32[16, 64]", "w + x": "f32[16, 64]", "-w": "f32[16, 64]",
    "transpose(transpose(w))": "f32[16, 64]", "softmax(w, axis=1)": "f32[16, 64]", "sum(w, axis=0)": "f32[64]",
    "dequantize(w)": "f32[16, 64]", "quantize(w, int8)": "f32[16, 64]", "linear(x, w)": "f32[16, 16]",
    "linear(w, x)": "f32[16, 16]", "matmul(x, transpose(w))": "f32[16, 16]", "transpose(w) @ x": "f32[64, 64]",
}  # fmt: skip
LIMIT_ERRORS = re.compile(r"longer than the limit|nested too deeply|too long: more than the limit")
REGRESSIONS = sorted((Path(__file__).parent / "fuzz_regressions").glob("*.tdsl"))
_EXPECT = re.compile(r"^# expect: (ok|error: .*)$", re.MULTILINE)


class Hang(BaseException):
    """Raised in the compiler when an input takes too long (BaseException: the CLI must not catch it)."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(path: Path, emit: str, *options: str) -> tuple[int, str]:
    """`stoicc compile PATH --emit EMIT OPTIONS` in process: (exit status, stderr)."""
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()), time_limit(SECONDS_PER_INPUT):
        status = main(["compile", str(path), "--emit", emit, *options])
    return status, err.getvalue()


def check_input(source: str, directory: Path, emit: str = "loops", *options: str) -> str:
    """Compile `source` through the CLI; it must succeed or give a located error. Returns stderr."""
    path = directory / "fuzz.tdsl"
    path.write_text(source, encoding="utf-8")
    status, err = run_cli(path, emit, *options)
    assert status in (0, 1), f"internal error on:\n{source}\n{err}"
    assert "Traceback" not in err, err
    if status == 1:
        assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error: ", err), f"unlocated error on:\n{source}\n{err}"
    return err


@fuzz_settings(ci_examples=30)
@given(source=mutated_examples())
def test_mutated_examples(source: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    check_input(source, tmp_path_factory.getbasetemp())


@fuzz_settings(ci_examples=30)
@given(source=grammar_programs())
def test_grammar_programs(source: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    check_input(source, tmp_path_factory.getbasetemp())


@fuzz_settings(ci_examples=20)
@given(source=linear_programs())
def test_products_to_llvm(source: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Products with random layouts and sizes through every pass to the llvm dialect."""
    check_input(source, tmp_path_factory.getbasetemp(), emit="llvm")


@fuzz_settings(ci_examples=30)
@given(source=linear_programs())
def test_products_to_accelerator_programs(source: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same products as accelerator programs (assembly), for a ragged M."""
    check_input(source, tmp_path_factory.getbasetemp(), "isa", "--target", "accel", "--dim", "M=5")


@fuzz_settings(ci_examples=30)
@given(program=long_programs())
def test_long_and_deep_programs(program: LongProgram) -> None:
    """Long sums and products, deep calls, parentheses and minuses, many statements,
    long names and lines: the front end builds them without recursion in bounded time,
    and they compute what they say; or, past a documented limit, a located error says
    which (never a RecursionError)."""
    source, expected, fits = program
    x = np.array([-1.5, 0.0, 0.25, 3.0], np.float32)
    try:
        with time_limit(FRONT_END_SECONDS):
            module = front_end(source, "long.tdsl")
    except CompileError as err:
        assert not fits and err.loc is not None and LIMIT_ERRORS.search(err.message), str(err)[:500]
        return
    (got,) = run_reference(module, "k", [x], [np.dtype(np.float32)])
    np.testing.assert_array_equal(got, expected(x))


@fuzz_settings(ci_examples=25)
@given(
    layout=layouts(),
    use=st.sampled_from(sorted(LAYOUT_USES)),
)
@example(layout="nm(2, 4)", use="w")
@example(layout="nm(2, 4) with int4(group=16)", use="v")
@example(layout="csr", use="relu(w)")
def test_layout_parameters_anywhere(layout: str, use: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A parameter in any layout, read by any op or returned (also through a name):
    compiled code or a located error (a packed `return w` once failed xDSL's verifier)."""
    result = LAYOUT_USES[use]
    check_input(f"kernel k(x: f32[16, 64], w: f32[16, 64] @ {layout}) -> {result} {{\n  v = w\n  return {use}\n}}\n",
                tmp_path_factory.getbasetemp())  # fmt: skip


@fuzz_settings(ci_examples=60)
@given(
    layout=layouts(),
    shape=st.tuples(st.sampled_from([1, 3, 8, 24, 64]), st.sampled_from([1, 4, 16, 96, 128])),
    prune=st.sampled_from([None, "magnitude"]),
    values=st.sampled_from(["normal", "zeros", "int8", "nan", "huge"]),
)
def test_pack_any_layout(layout: str, shape: tuple[int, int], prune: str | None, values: str) -> None:
    """pack() on any layout text and matrix: a validated tensor that unpacks, or a clear error."""
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, shape, np.int8) if values == "int8" else rng.standard_normal(shape).astype(np.float32)
    w[0, 0] = {"zeros": 0, "nan": np.nan, "huge": 3e38}.get(values, w[0, 0])
    try:
        packed = stoicc_py.pack(w, layout, prune=prune)
    except (ValueError, TypeError, CompileError):  # the documented refusals (CompileError: the layout text)
        return
    assert packed.unpack().shape == shape


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "EXAMPLE", "--repeat", "0"], "argument --repeat: expected a positive int, got '0'"),
        (["run", "EXAMPLE", "--rtol", "-1"], "argument --rtol: expected a positive float, got '-1'"),
        (["run", "EXAMPLE", "--kernel", "nope"], "stoicc: error: no kernel 'nope' in"),
        (["compile", "EXAMPLE", "--tile", "0,1,1"], "--tile expects three positive integers"),
        (["compile", "EXAMPLE", "-p", "nosuch"], "Unrecognized passes: ['nosuch']"),
    ],
)
def test_bad_command_lines(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Options found wrong once: a usage error (status 2) or an error (status 1), never an internal one."""
    example = str(Path(__file__).parent.parent / "examples" / "mlp.tdsl")
    try:
        status = main([example if a == "EXAMPLE" else a for a in argv])
    except SystemExit as usage:  # argparse's own errors
        status = int(usage.code or 0)
    err = capsys.readouterr().err
    assert status in (1, 2) and message in err and "internal" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_regressions(path: Path, tmp_path: Path) -> None:
    """Each file once crashed the compiler; its `# expect:` line says how it must end now."""
    expect = _EXPECT.search(path.read_bytes().decode(errors="replace"))
    assert expect, f"{path} needs an '# expect: ok' or '# expect: error: ...' line"
    status, err = run_cli(path, "llvm")
    if expect.group(1) == "ok":
        assert status == 0, err
    else:
        assert status == 1 and re.match(rf"{re.escape(str(path))}:\d+:\d+: {re.escape(expect.group(1))}", err), err
