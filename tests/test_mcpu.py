"""`stoicc compile --mcpu/--mattr`: code for a named CPU rather than the host (its
vector widths in the passes, its instructions from LLVM, its features in the header),
clear errors for names LLVM does not know, and the cache key; and the CLI's
"compiling …" note on a terminal."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from stoicc_py import cli
from stoicc_py.backends.llvm.target import host_features, host_options, machine_options, target_features
from stoicc_py.cli import main
from stoicc_py.options import Options

SOURCE = """
kernel dense(x: f32[M, 64], w: f32[32, 64], b: f32[32]) -> f32[M, 32] { return relu(linear(x, w, b)) }
kernel int8(x: f32[M, 256], w: f32[24, 256] @ int8(axis=0)) -> f32[M, 24] { return linear(quantize(x, int8(per=token)), w) }
"""
pytestmark = pytest.mark.skipif(not host_options().triple.startswith("x86_64"), reason="x86 CPU names")


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "k.tdsl"
    path.write_text(SOURCE)
    return path


def _compile(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["compile", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _registers(asm: str) -> set[str]:
    return set(re.findall(r"%([xyz])mm\d", asm))


def test_sse_only_cpu_gets_no_wide_registers(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, asm, _ = _compile(capsys, str(program), "--emit", "asm", "--mcpu", "x86-64")
    assert status == 0 and _registers(asm) == {"x"}
    _, loops, _ = _compile(capsys, str(program), "--emit", "loops", "--mcpu", "x86-64")
    assert "vector<4xf32>" in loops and "vector<16xf32>" not in loops and "vpdpbusd" not in loops


def test_mattr_removes_avx512_from_a_cpu(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, asm, _ = _compile(capsys, str(program), "--emit", "asm", "--mcpu", "x86-64-v4", "--mattr=-avx512f")
    assert status == 0 and "z" not in _registers(asm) and "y" in _registers(asm)


@pytest.mark.skipif("avx512f" not in host_features(), reason="the host has no AVX-512")
def test_host_code_uses_avx512(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, asm, _ = _compile(capsys, str(program), "--emit", "asm")
    assert status == 0 and "z" in _registers(asm)


def test_object_for_a_named_cpu(program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "k.o"
    status, _, _ = _compile(capsys, str(program), "--emit", "obj", "-o", str(out), "--mcpu", "x86-64-v3")
    assert status == 0 and out.read_bytes().startswith(b"\x7fELF")


def test_header_states_the_cpu_and_its_features(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, header, _ = _compile(capsys, str(program), "--emit", "header", "--mcpu", "x86-64-v3", "--mattr=-fma")
    line = next(line for line in header.splitlines() if line.startswith("/* Compiled for"))
    features = set(line.removeprefix("/* Compiled for x86-64-v3: ").removesuffix(" */").split(","))
    assert {"+avx", "+avx2", "+sse4.2"} <= features and not {"+fma", "+avx512f"} & features
    _, host_header, _ = _compile(capsys, str(program), "--emit", "header")
    assert f"/* Compiled for {host_options().cpu}: " in host_header


def test_named_cpu_features_are_llvms() -> None:
    assert target_features(machine_options("x86-64")) == {"64bit", "cmov", "cx16", "cx8", "fxsr", "mmx", "sahf",
                                                          "sse", "sse2"}  # fmt: skip
    v4 = target_features(machine_options("x86-64-v4"))
    assert {"avx512f", "avx512bw", "avx512vl", "fma"} <= v4 and "avx512vnni" not in v4
    vector = {"avx", "avx2", "avx512f", "avx512vnni", "avxvnni"}  # LLVM's model of a CPU may differ in the rest
    assert target_features(machine_options(host_options().cpu)) & vector == host_features() & vector


@pytest.mark.parametrize(("flag", "message"), [
    ("--mcpu=skylake-avx513", "unknown CPU 'skylake-avx513' (--mcpu)"),
    ("--mattr=+avx2,+avx9000", "unknown feature '+avx9000' (--mattr)"),
])  # fmt: skip
def test_unknown_names_are_errors(program: Path, flag: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _compile(capsys, str(program), "--emit", "obj", "-o", "k.o", flag)
    assert status == 1 and out == "" and err.startswith(f"stoicc: error: {message} for ") and err.count("\n") == 1


def test_run_refuses_another_cpu(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(program), "--mcpu", "x86-64"]) == 1
    assert "stoicc run runs the kernels on this CPU" in capsys.readouterr().err
    assert main(["run", str(program), "--mcpu", host_options().cpu, "--repeat", "1"]) == 0


def test_mcpu_is_for_the_cpu_target(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _compile(capsys, str(program), "--target", "accel", "--mcpu", "x86-64")
    assert status == 1 and err == "stoicc: error: --mcpu applies to --target cpu\n"


def test_cache_key_has_the_cpu() -> None:
    keys = {Options().key(), Options(cpu="x86-64").key(), Options(cpu="x86-64", mattr="+avx").key()}
    assert len(keys) == 3


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("terminal", "after", "noted"), [(True, 0.0, True), (True, 60.0, False), (False, 0.0, False)])
def test_compiling_note_only_on_a_terminal_after_a_while(
    program: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool, after: float, noted: bool
) -> None:
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(cli.sys, "stderr", stderr)
    monkeypatch.setattr(cli, "NOTE_AFTER", after)
    assert main(["compile", str(program), "--emit", "llvm-ir", "-o", str(program.with_suffix(".ll"))]) == 0
    note = re.fullmatch(rf"stoicc: compiling {re.escape(str(program))} … \d+\.\d s\n", stderr.getvalue())
    assert (note is not None) == noted, stderr.getvalue()
