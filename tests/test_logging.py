"""Logging: library modules log through logging.getLogger(__name__) and never print;
`stoicc -v` shows their records and `--time-passes` the time of every pass, on every
subcommand that compiles (before or after the command name)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import stoicc_py
from stoicc_py.cli import main

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = [ROOT / d for d in ("stoicc_py", "dialects", "passes", "backends")]
COMMANDS = {ROOT / "stoicc_py" / "cli.py"}  # the only module that writes to the terminal
CPU = "kernel f(x: f32[M, 8], w: f32[4, 8]) -> f32[M, 4] { return relu(linear(x, w)) }\n"
ACCEL = "kernel g(x: i8[M, 64], w: i8[32, 64]) -> i32[M, 32] { return linear(x, w) }\n"


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name
    ]  # fmt: skip


def test_library_modules_log_and_never_print() -> None:
    for path in (p for d in LIBRARY for p in d.rglob("*.py") if p not in COMMANDS):
        tree = ast.parse(path.read_text())
        assert not _calls(tree, "print"), f"{path} prints: log through logging.getLogger(__name__)"
        for call in _calls(tree, "getLogger"):
            assert ast.unparse(call.args) == "__name__", f"{path}: getLogger({ast.unparse(call.args)})"


@pytest.fixture
def tdsl(tmp_path: Path) -> Path:
    (tmp_path / "f.tdsl").write_text(CPU)
    (tmp_path / "g.tdsl").write_text(ACCEL)
    return tmp_path


def test_time_passes_on_compile(tdsl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(tdsl / "f.tdsl"), "--emit", "llvm-ir", "--time-passes"]) == 0
    out, err = capsys.readouterr()
    assert "define" in out
    for step in ("front-end", "tdsl-fuse-epilogue", "tdsl-lower-to-loops", "outline-loop-nests", "translate-to-llvm", "llvm-opt"):
        assert f"// {step}: " in err
    assert "stoicc:" not in err  # timings only, without -v


@pytest.mark.parametrize("before", [True, False])
def test_verbose_run_before_or_after_the_command(tdsl: Path, before: bool, capsys: pytest.CaptureFixture[str]) -> None:
    run = ["run", str(tdsl / "f.tdsl"), "--repeat", "1"]
    assert main(["-v", *run] if before else [*run, "--verbose"]) == 0
    err = capsys.readouterr().err
    assert "stoicc: compiling" in err or "stoicc: loaded" in err
    assert main(run) == 0
    assert "stoicc:" not in capsys.readouterr().err, "a later call without -v is quiet again"
    assert logging.getLogger("stoicc_py").handlers == [], "main() leaves no handler behind"


def test_run_no_cache_time_passes_and_sim(tdsl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tdsl / "f.tdsl"), "--no-cache", "--repeat", "1", "--time-passes"]) == 0
    err = capsys.readouterr().err
    assert "// compile " in err and "// llvm-codegen: " in err
    assert main(["sim", str(tdsl / "g.tdsl"), "--dim", "M=16", "-v", "--time-passes"]) == 0
    err = capsys.readouterr().err
    assert "// accel-schedule: " in err and "stoicc: building the accelerator program of g" in err


def test_verbose_opt(tdsl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "opt", str(tdsl / "f.tdsl"), "-p", "tdsl-fold-transpose"]) == 0
    assert "tdsl.linear" in capsys.readouterr().out


def test_library_records_reach_an_embedding_programs_handler(tdsl: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="stoicc_py"):
        stoicc_py.compile(tdsl / "f.tdsl", cache=False)
    names = {r.name for r in caplog.records}
    assert {"stoicc_py.api", "stoicc_py.pipeline", "stoicc_py.backends.llvm.codegen"} <= names
    assert all(hasattr(r, "elapsed") for r in caplog.records if r.name == "stoicc_py.pipeline")


def test_verbose_shows_the_traceback_of_an_internal_error(
    tdsl: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("stoicc_py.lowering.front_end", broken)
    assert main(["compile", str(tdsl / "f.tdsl")]) == 2
    err = capsys.readouterr().err
    assert "internal compiler error: RuntimeError: a bug" in err and "Traceback" not in err
    assert main(["compile", str(tdsl / "f.tdsl"), "-v"]) == 2
    assert "Traceback" in capsys.readouterr().err
