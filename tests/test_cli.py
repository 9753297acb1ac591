"""The `stoicc` command itself: --help and --version, a closed stdout, outputs checked
before the work, and results kept by an interrupted run (bad option values: test_fuzz.py)."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stoicc_py.cli import main
from stoicc_py.models import weights

ROOT = Path(__file__).parent.parent
EXAMPLE = str(ROOT / "examples" / "mlp.tdsl")
ACCEL = str(ROOT / "tests" / "filecheck" / "driver" / "accel.tdsl")
COMMANDS = ["compile", "run", "sim", "opt", "bench", "explore"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_the_subcommand(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: stoicc {command} ")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"stoicc {version('stoicc_py')}\n"


def test_closed_stdout_is_quiet() -> None:
    """`stoicc ... | head`: the reader gone, no error message, the status of SIGPIPE."""
    cmd = [sys.executable, "-m", "stoicc_py.cli", "compile", EXAMPLE, "--emit", "loops"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # before anything is written: the first write fails
        err = process.stderr.read().decode()
    assert process.returncode == 141 and err == "", err


def test_no_kernel_is_a_located_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty or comment-only file: the front end's diagnostic, printed as any other."""
    path = tmp_path / "empty.tdsl"
    path.write_text("// nothing here\n")
    status = main(["run", str(path)])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith(f"{path}:1:1: error: no kernel"), err


# The work each command would start, replaced by a failure: the output must be refused first.
WORK = {"bench": "stoicc_py.benchmarks.suite.run", "explore": "stoicc_py.explore.explore",
        "sim": "stoicc_py.cli._run_checked"}  # fmt: skip


@pytest.mark.parametrize("command", sorted(WORK))
def test_output_checked_before_the_work(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savez(tmp_path / "w.npz", w=np.ones((8, 16), np.float32))
    inputs = {"bench": ["--smoke"], "explore": [str(tmp_path / "w.npz")], "sim": [ACCEL, "--dim", "M=4"]}
    monkeypatch.setattr(WORK[command], _fail)
    out = tmp_path / "no-such-dir" / "out.json"
    assert main([command, *inputs[command], "--json", str(out)]) == 1
    assert capsys.readouterr().err == f"stoicc: error: {out}: cannot write: no directory '{out.parent}'\n"


def _fail(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("the work started before the output was checked")


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, target: str, calls: int) -> None:
    """`target` (module.function) raises KeyboardInterrupt when called after `calls` calls."""
    module, name = target.rsplit(".", 1)
    real = getattr(importlib.import_module(module), name)
    count = [0]

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        if count[0] > calls:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(target, interrupted)


@pytest.mark.parametrize(
    ("command", "target", "records"),
    [
        ("bench", "stoicc_py.benchmarks.cpu._measure", lambda data: data["results"]),
        ("explore", "stoicc_py.explore.measure", lambda data: data["results"]),
        ("sim", "stoicc_py.cli._check", lambda data: data["reports"]),
    ],
)
def test_interrupted_run_keeps_its_results(
    command: str, target: str, records: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after two measurements, the --json file holds those two, marked incomplete."""
    np.savez(tmp_path / "w.npz", **{name: np.ones((8, 16), np.float32) for name in "abc"})
    inputs = {"bench": ["--smoke", "--formats", "dense", "--no-compile-time"],
              "explore": [str(tmp_path / "w.npz"), "--formats", "dense", "-q"], "sim": [ACCEL, "--dim", "M=4"]}  # fmt: skip
    _interrupt_after(monkeypatch, target, 2)
    out = tmp_path / "out.json"
    assert main([command, *inputs[command], "--json", str(out)]) == 130
    data = json.loads(out.read_text())
    assert data["complete"] is False and len(records(data)) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("name", "data", "load"),
    [
        ("w.npz", b"\x00 not an archive", "load_weights"),
        ("w.npz", b"PK\x03\x04 truncated", "load_weights"),
        ("x.npy", b"\x80\x04K\x01.", "load_array"),  # a pickle: numpy's words about trusting it are not ours
        ("x.npy", b"\x93NUMPY\x01\x00junk", "load_array"),
    ],
)
def test_corrupt_arrays_are_one_error(name: str, data: bytes, load: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    kind = Path(name).suffix
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not a valid \{kind} file \(") as err:
        getattr(weights, load)(path)
    assert "pickle" not in str(err.value)
