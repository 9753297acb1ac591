"""The array timing model against SCALE-Sim 3.0.0 (benchmarks/accel_validate.py,
docs/accel.md "Validation"): its recorded runs, and a real one on a small shape.

SCALE-Sim needs numpy < 2, so it runs in .venv/scalesim (or $STOICC_SCALESIM_PYTHON),
which the real-run test creates from benchmarks/scalesim-requirements.txt when it is
missing (about 6 s: --no-deps, numpy 1.26 and tqdm wheels)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from stoicc_py.benchmarks import accel_validate as v

SHAPE = (64, 64, 1024)  # 10,111 (ws) and 4,343 (os) array cycles: SCALE-Sim steps them in about 2 s
ARRAY_TOLERANCE = 0.02  # our GEMMs' cycles against SCALE-Sim's compute cycles, with its loop nest


def _recorded() -> dict[str, dict[str, int]]:
    results: dict[str, dict[str, int]] = json.loads(v.RECORD.read_text())["results"]
    return results


def test_every_recorded_scalesim_run_obeys_its_closed_form() -> None:
    """The docs' table uses the closed form for the shapes SCALE-Sim was too slow to run."""
    runs = _recorded()
    assert len(runs) >= 4
    for key, run in runs.items():
        shape, dataflow = key.split()
        m, n, k = map(int, shape.split("x"))
        assert run["cycles"] - run["stalls"] == v.closed_form(m, n, k, dataflow), key


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    directory = tmp_path_factory.mktemp("machines")
    return {d: v.run_ours(*SHAPE, v.machine_file(d, directory), v.scalesim_tiles(*SHAPE, d)) for d in v.DATAFLOWS}


@pytest.mark.parametrize("dataflow", v.DATAFLOWS)
def test_array_cycles_match_recorded_scalesim(ours: dict[str, dict[str, float]], dataflow: str) -> None:
    theirs = _recorded()[f"{'x'.join(map(str, SHAPE))} {dataflow}"]
    compute = theirs["cycles"] - theirs["stalls"]
    assert abs(ours[dataflow]["array_busy"] / compute - 1) <= ARRAY_TOLERANCE
    assert ours[dataflow]["cycles"] >= ours[dataflow]["array_busy"]


def _scalesim_python() -> str:
    python = v.scalesim_python()
    if not os.environ.get("STOICC_SCALESIM_PYTHON") and not Path(python).exists():
        try:
            v.setup()
        except (OSError, subprocess.CalledProcessError) as err:  # no package index: the recorded runs stand
            pytest.skip(f"cannot create SCALE-Sim's environment ({err})")
    return python


def test_real_scalesim_agrees(ours: dict[str, dict[str, float]]) -> None:
    """One test for both dataflows, so that no two workers create the environment at once."""
    python = _scalesim_python()
    for dataflow in v.DATAFLOWS:
        theirs = v.run_scalesim(*SHAPE, dataflow, python)
        recorded = _recorded()[f"{'x'.join(map(str, SHAPE))} {dataflow}"]
        assert {k: recorded[k] for k in theirs} == theirs  # the record is what SCALE-Sim prints
        assert abs(ours[dataflow]["array_busy"] / (theirs["cycles"] - theirs["stalls"]) - 1) <= ARRAY_TOLERANCE
