"""The CPU benchmark suite's smoke mode (correctness only, no timing claims): every
format's kernel agrees with the reference, the JSON has the documented fields, and
`stoicc bench` runs it without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stoicc_py.benchmarks.baselines import parse_ggml
from stoicc_py.benchmarks.kernels import FORMATS
from stoicc_py.benchmarks.suite import SCHEMA
from stoicc_py.cli import main

GGML_OUTPUT = """\
Backend 1/1: CPU
  MUL_MAT(type_a=f32,type_b=f32,m=128,n=1,k=256,bs=[1,1],nr=[1,1],per=[0,1,2,3],v=0,o=1):   8192 runs -    12.50 us/run -  65 kFLOP/run
  MUL_MAT(type_a=q4_0,type_b=f32,m=128,n=5,k=256,bs=[1,1],nr=[1,1],per=[0,1,2,3],v=0,o=1):  8192 runs -     4.00 us/run - 327 kFLOP/run
  MUL_MAT(type_a=f32,type_b=f32,m=128,n=1,k=256,bs=[10,1],nr=[1,1],per=[0,1,2,3],v=0,o=1):  8192 runs -    99.00 us/run - 655 kFLOP/run
"""
TOP_FIELDS = {"schema", "mode", "machine", "config", "results", "weights", "compile", "ggml", "failures", "elapsed_s"}
ROW_FIELDS = {
    "name", "kind", "format", "label", "m", "n", "k", "threads", "threads_used", "dense_equivalent", "bytes",
    "ideal_work_ratio", "validate_s", "status", "error", "max_rel_error", "rtol", "warm", "cold", "gflops", "gbps",
    "cold_gflops", "cold_gbps", "peak_rss_mb", "rss_delta_mb", "rss_method", "ratios", "ratios_cold",
}  # fmt: skip
WEIGHT_FIELDS = {"format", "n", "k", "compile_s", "pack_s", "pack_peak_rss_mb", "bytes", "validate_s", "error"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One smoke run through `stoicc bench`, at 1 and 2 threads, with a stand-in test-backend-ops."""
    tmp = tmp_path_factory.mktemp("bench")
    ggml = tmp / "test-backend-ops"
    ggml.write_text(f"#!/bin/sh\ncat <<'EOF'\n{GGML_OUTPUT}EOF\n")
    ggml.chmod(0o755)
    out = tmp / "bench.json"
    status = main(["bench", "--smoke", "--threads", "1,2", "--ggml", str(ggml), "--json", str(out)])
    data = json.loads(out.read_text())
    assert status == 0, data["failures"]
    return data


def test_every_format_passes_its_check(smoke: dict) -> None:
    ours = [r for r in smoke["results"] if r["kind"] == "ours"]
    assert {r["format"] for r in ours} == set(FORMATS)
    assert {(r["m"], r["threads"]) for r in ours} == {(1, 1), (5, 1), (1, 2), (5, 2)}
    failed = [(r["name"], r["m"], r["threads"], r["error"], r["max_rel_error"]) for r in smoke["results"]
              if r["status"] not in ("ok", "reference")]  # fmt: skip
    assert not failed and not smoke["failures"]


def test_json_has_the_documented_fields(smoke: dict) -> None:
    assert TOP_FIELDS <= smoke.keys()
    assert smoke["schema"] == SCHEMA and smoke["mode"] == "smoke"
    for row in smoke["results"]:
        assert ROW_FIELDS <= row.keys(), ROW_FIELDS - row.keys()
        assert row["warm"] is None and row["cold"] is None  # smoke: no timing
        assert set(row["bytes"]) == {"values", "metadata", "scales", "table", "total"}
    for record in smoke["weights"]:
        assert WEIGHT_FIELDS <= record.keys()
    by_format = {r["format"]: r for r in smoke["results"] if r["kind"] == "ours"}
    assert by_format["nm24"]["ideal_work_ratio"] == 2 and by_format["nm24"]["dense_equivalent"]
    assert by_format["hybrid50"]["ideal_work_ratio"] == pytest.approx(4 / 3)
    assert "numpy f32" in {r["name"] for r in smoke["results"]}


def test_ggml_output_is_parsed(smoke: dict) -> None:
    assert smoke["ggml"]["error"] is None
    assert smoke["ggml"]["rows"] == parse_ggml(GGML_OUTPUT)
    assert [(r["type_a"], r["m"], r["n"], r["k"], r["us_per_run"]) for r in smoke["ggml"]["rows"]] == [
        ("f32", 1, 128, 256, 12.5),
        ("q4_0", 5, 128, 256, 4.0),
    ]


def test_bench_errors_are_messages(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--shapes", "1x2"])
    assert exit_.value.code == 2 and "MxNxK" in capsys.readouterr().err
    status = main(["bench", "--smoke", "--formats", "dense", "--json", str(tmp_path / "no-such-dir" / "out.json")])
    assert status == 1 and "Traceback" not in capsys.readouterr().err
