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
import time
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
FRONT_END_SECONDS = 10  # CPU seconds of the front end alone, on a program at its limits (~2 s)
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
    dim = ["--dim", "M=5"] if re.search(r"[\[,]\s*M\s*[,\]]", source) else []  # a --dim of no symbol is an error
    check_input(source, tmp_path_factory.getbasetemp(), "isa", "--target", "accel", *dim)


@fuzz_settings(ci_examples=12)
@given(source=linear_programs(), dtype=st.sampled_from(["f16", "bf16"]))
def test_products_to_gpu_kernels(source: str, dtype: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same products in f16/bf16 as GPU kernels (PTX): each compiles or is refused, located."""
    check_input(re.sub(r"\b(f32|i8|i32)\b", dtype, source), tmp_path_factory.getbasetemp(), "ptx", "--target", "gpu")


@fuzz_settings(ci_examples=30)
@given(program=long_programs())
def test_long_and_deep_programs(program: LongProgram) -> None:
    """Long sums and products, deep calls, parentheses and minuses, many statements,
    long names and lines: the front end builds them without recursion in bounded time,
    and they compute what they say; or, past a documented limit, a located error says
    which (never a RecursionError)."""
    source, expected, fits = program
    x = np.array([-1.5, 0.0, 0.25, 3.0], np.float32)
    start = time.thread_time()  # the bound is on this thread's CPU time, which load does not stretch
    try:
        with time_limit(SECONDS_PER_INPUT):  # a hang
            module = front_end(source, "long.tdsl")
    except CompileError as err:
        assert not fits and err.loc is not None and LIMIT_ERRORS.search(err.message), str(err)[:500]
        return
    finally:
        assert time.thread_time() - start < FRONT_END_SECONDS
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


ROOT = Path(__file__).parent.parent
EXAMPLE = str(ROOT / "examples" / "mlp.tdsl")
ACCEL = str(ROOT / "tests" / "filecheck" / "driver" / "accel.tdsl")
LOCATED = re.compile(r"^\S+:\d+:\d+: error: ")


def run_main(argv: list[str]) -> tuple[int, str]:
    """`stoicc ARGV` in process: (exit status, stderr)."""
    err = io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()), time_limit(SECONDS_PER_INPUT):
            status = main(argv)
    except SystemExit as usage:  # argparse's own exit
        status = int(usage.code or 0)
    return status, err.getvalue()


def assert_one_error(status: int, err: str) -> None:
    """The agreed form of a failed command: status 2 (usage) or 1, and one `stoicc: error: ...`
    line, or the compiler's located diagnostic (its line, the source line and a caret)."""
    lines = err.rstrip("\n").split("\n")  # not splitlines(): a value echoed may hold \x1e, \u2028...
    assert status in (1, 2) and lines, err
    assert "Traceback" not in err and "internal" not in err and "codec can't" not in err, err
    assert LOCATED.match(lines[0]) or (lines[0].startswith("stoicc: error: ") and len(lines) == 1), err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "EXAMPLE", "--repeat", "0"], "argument --repeat: expected an integer from 1 to 1000000, got '0'"),
        (["run", "EXAMPLE", "--rtol", "-1"], "argument --rtol: expected a positive number, got '-1'"),
        (["run", "EXAMPLE", "--seed", "-1"], "argument --seed: expected a non-negative integer, got '-1'"),
        (["run", "EXAMPLE", "--kernel", "nope"], "stoicc: error: no kernel 'nope' in"),
        (["run", "EXAMPLE", "--dim", "N=4"], "stoicc: error: --dim N: kernel 'mlp' has no such size symbol"),
        (["run", "EXAMPLE", "--json", "x.json"], "stoicc: error: --json applies to --target accel"),
        (["compile", "EXAMPLE", "--dim", "M=4"], "stoicc: error: --dim applies to --target accel"),
        (["compile", "EXAMPLE", "--tile", "0,1,1"], "argument --tile: expected three positive integers"),
        (["compile", "EXAMPLE", "-p", "nosuch"], "Unrecognized passes: ['nosuch']"),
        (["opt", "--nosuch"], "stoicc: error: unrecognized arguments: --nosuch (see 'stoicc opt --help')"),
        (["bench", "--shapes", "1x2"], "stoicc: error: argument --shapes: expected positive MxNxK triples"),
    ],
)
def test_bad_command_lines(argv: list[str], message: str) -> None:
    """Options found wrong once: a usage error (status 2) or an error (status 1), never an internal one."""
    status, err = run_main([EXAMPLE if a == "EXAMPLE" else a for a in argv])
    assert_one_error(status, err)
    assert message in err, err


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Good inputs a command line needs, and bad files of every kind."""
    d = tmp_path_factory.mktemp("cli")
    np.savez(d / "w.npz", **{"l.weight": np.ones((8, 16), np.float32)})
    contents = {
        "binary.tdsl": b"kernel f(x: f32[4]) -> f32[4] { return x }\n// \xff\xfe\x00",
        "binary.s": b".kernel g\n\xff",
        "garbage.bin": b"\x00\x01garbage",
        "garbage.npz": b"\x00\x01 not an archive",
        "truncated.npz": (d / "w.npz").read_bytes()[:60],
        "pickle.npy": b"\x80\x04K\x01.",
        "garbage.npy": b"\x93NUMPY\x01\x00garbage",
        "garbage.safetensors": b"\xff" * 16,
        "weights.txt": b"1 2 3",
        "machine.toml": b"[array\nrows = ",
    }
    for name, data in contents.items():
        (d / name).write_bytes(data)
    paths = {name: str(d / name) for name in [*contents, "w.npz"]}
    return paths | {"missing": str(d / "missing.npz"), "directory": str(d)}


def _not(parse: type) -> st.SearchStrategy[str]:
    def fails(text: str) -> bool:
        try:
            parse(text)
        except ValueError:
            return True
        return False

    samples = [t for t in ("", "x", "1.5", "1e3", "0x10", "--", "nan") if fails(t)]  # "1.5" is a float, not an int
    return st.text(max_size=6).filter(fails) | st.sampled_from(samples)


def _ints(low: int, high: int | None = None) -> st.SearchStrategy[str]:
    """Text that is not an integer from `low` to `high`."""
    outside = st.integers(max_value=low - 1)
    if high is not None:
        outside |= st.integers(min_value=high + 1, max_value=10**40)
    return outside.map(str) | _not(int)


_FLOATS = st.floats(max_value=0).map(str) | st.sampled_from(["nan", "inf", "-inf"]) | _not(float)
# Per kind of value, text that is not one of them ({NAME}: a file of the `files` fixture).
BAD: dict[str, st.SearchStrategy[str]] = {
    "seed": _ints(0),
    "count": _ints(1),
    "repeat": _ints(1, 10**6),
    "rows": _ints(1, 2**16),
    "threads": _ints(1, 1024),
    "float": _FLOATS,
    "budget": _FLOATS.filter(lambda t: t != "0.0") | st.sampled_from(["-1", "1e9"]),
    "dim": st.sampled_from(["M", "=4", "M=", "4"]) | _ints(1).map("M={}".format),
    "tile": st.sampled_from(["1,2", "1,2,3,4", ",,", ""]) | _ints(1).map("{},16,16".format),
    "shapes": st.sampled_from(["1x2", "1x2x3x4", "axbxc"]) | _ints(1).map("{}x16x16".format),
    "formats": st.sampled_from(["nosuch", "dense,", "DENSE"]),
    "output": st.sampled_from(["{directory}", "{directory}/no/such/out.json", "{missing}/out.json"]),
    "machine": st.sampled_from(["{missing}", "{directory}", "{machine.toml}", "{garbage.bin}"]),
    "source": st.sampled_from(["{missing}.tdsl", "{directory}", "{binary.tdsl}"]),
    "program": st.sampled_from(["{missing}.bin", "{garbage.bin}", "{binary.s}"]),
    "weights": st.sampled_from(
        ["{missing}", "{directory}", "{garbage.npz}", "{truncated.npz}", "{weights.txt}", "{garbage.safetensors}"]
    ),  # fmt: skip
    "calibration": st.sampled_from(
        ["{missing}", "{garbage.npz}", "{truncated.npz}", "{pickle.npy}", "{garbage.npy}", "{w.npz}.npy"]
    ),  # fmt: skip
    "weight": st.sampled_from(["w", "=x.npy", "w=", "nosuch={w.npz}"])
    | st.sampled_from(["{missing}", "{directory}", "{pickle.npy}", "{garbage.npy}", "{w.npz}"]).map("w={}".format),
}
# A command line each option is added to (valid without it), and the options with their kind of value;
# a kind in place of the option is the positional file argument, put first.
COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "compile": (["compile", EXAMPLE], {"--tile": "tile", "-o": "output", "source": "source"}),
    "compile-accel": (
        ["compile", ACCEL, "--target", "accel", "--dim", "M=4", "--kernel", "patch", "--emit", "isa"],
        {"--dim": "dim", "--weight": "weight", "--machine": "machine"},
    ),  # fmt: skip
    "run": (
        ["run", EXAMPLE, "--repeat", "1"],
        {
            "--seed": "seed",
            "--repeat": "repeat",
            "--rtol": "float",
            "--dim": "dim",
            "--tile": "tile",
            "source": "source",
        },
    ),  # fmt: skip
    "sim": (
        ["sim", ACCEL, "--kernel", "g", "--dim", "M=4"],
        {
            "--seed": "seed",
            "--rtol": "float",
            "--dim": "dim",
            "--tile": "tile",
            "--json": "output",
            "--machine": "machine",
            "program": "program",
        },
    ),  # fmt: skip
    "explore": (
        ["explore", "{w.npz}", "--formats", "dense", "-q"],
        {
            "--rows": "rows",
            "--accel-rows": "count",
            "--tile": "count",
            "--threads": "threads",
            "--seed": "seed",
            "--json": "output",
            "--plot": "output",
            "--calibration": "calibration",
            "weights": "weights",
        },
    ),  # fmt: skip
    "bench": (
        ["bench", "--smoke", "--formats", "dense", "--no-compile-time"],
        {
            "--threads": "threads",
            "--repeat": "repeat",
            "--budget": "budget",
            "--json": "output",
            "--plot": "output",
            "--shapes": "shapes",
            "--formats": "formats",
        },
    ),  # fmt: skip
}


def _fill(text: str, files: dict[str, str]) -> str:
    """`text` with each {NAME} replaced by the path of that file."""
    return re.sub(r"\{([\w.]+)\}", lambda m: files[m.group(1)], text)


OPTIONS = [(command, option) for command, (_, options) in COMMANDS.items() for option in options]


@pytest.mark.parametrize(("command", "option"), OPTIONS, ids=[f"{c}{o}" for c, o in OPTIONS])
@fuzz_settings(ci_examples=6)
@given(data=st.data())
def test_bad_option_values(command: str, option: str, data: st.DataObject, files: dict[str, str]) -> None:
    """Every option (and file argument) of every command, given a bad value: negative, not a number,
    huge, a missing file, a directory, a binary or non-UTF-8 file, a corrupt archive, an unwritable
    output. The command must refuse it before any work: a usage error naming the option (status 2)
    or an error naming the file (status 1), in the agreed form."""
    argv, options = COMMANDS[command]
    kind = options[option]
    value = _fill(data.draw(BAD[kind], label=kind), files)
    if option.startswith("-"):
        argv = [*argv, option, value]
    else:  # the positional file argument replaces the command's
        argv = [argv[0], value, *argv[2:]]
    status, err = run_main([_fill(a, files) for a in argv])
    assert_one_error(status, err)
    if status == 2:
        assert f"argument {option}" in err or "argument -o/--output" in err or "expected one argument" in err, err


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
