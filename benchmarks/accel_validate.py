"""The accelerator's timing model against SCALE-Sim 3.0.0 (docs/accel.md, "Validation").

    python benchmarks/accel_validate.py                 # our model against SCALE-Sim's recorded cycles
    python benchmarks/accel_validate.py --scalesim      # run SCALE-Sim too (slow: it steps every cycle)
    python benchmarks/accel_validate.py --setup         # create SCALE-Sim's virtual environment first

The same dense int8 GEMMs (M x N x K) run through SCALE-Sim (ARM and Georgia Tech's
systolic-array simulator, `pip install scalesim==3.0.0`) and through our simulator
configured to match: a 32 x 32 array of the same dataflow (weight- and
output-stationary), SCALE-Sim's SRAM sizes (512 KiB ifmap and filter, 1 MiB ofmap)
and 64 B/cycle of DRAM bandwidth, single-buffered weight tiles and outputs as
SCALE-Sim computes them. SCALE-Sim needs numpy < 2, so it runs in a virtual
environment of its own, driven by subprocess: the interpreter named by
$STOICC_SCALESIM_PYTHON, else .venv/scalesim/bin/python (what --setup creates from
benchmarks/scalesim-requirements.txt, in about 6 s).
Its cycles are recorded in benchmarks/scalesim_3.0.0.json with the command that
made them; --scalesim reruns it and rewrites the record.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import stoicc_py

ROOT = Path(__file__).resolve().parent.parent
RECORD = Path(__file__).with_name("scalesim_3.0.0.json")
REQUIREMENTS = Path(__file__).with_name("scalesim-requirements.txt")
VENV = ROOT / ".venv" / "scalesim"
SHAPES = [(1, 4096, 4096), (16, 4096, 4096), (64, 4096, 4096), (512, 4096, 4096),
          (128, 768, 3072), (128, 3072, 768), (2048, 1024, 1024)]  # fmt: skip
DATAFLOWS = ("ws", "os")
ARRAY, BANDWIDTH = 32, 64
SRAM_KIB = {"ifmap": 512, "filter": 512, "ofmap": 1024}
COMPUTE_BOUND = 64  # M from which a GEMM keeps a 32 x 32 array busy: the tolerance applies there
TOLERANCE = 0.05

CONFIG = """[general]
run_name = stoicc

[architecture_presets]
ArrayHeight = {array}
ArrayWidth = {array}
IfmapSramSzkB = {ifmap}
FilterSramSzkB = {filter}
OfmapSramSzkB = {ofmap}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {bandwidth}
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = {bandwidth}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = {bandwidth}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False
"""


def scalesim_python() -> str:
    return os.environ.get("STOICC_SCALESIM_PYTHON") or str(VENV / "bin" / "python")


def setup() -> None:
    """SCALE-Sim 3.0.0 and numpy < 2 in a virtual environment of their own (.venv/scalesim),
    as scalesim-requirements.txt pins them."""
    try:  # no pip of its own (bootstrapping one takes longer than the install): ours installs into it
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(VENV)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(VENV / "bin" / "python"), "install", "--quiet",
                        "--no-deps", "-r", str(REQUIREMENTS)], check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        shutil.rmtree(VENV, ignore_errors=True)  # not half an environment that the next run would take as whole
        raise


def scalesim_command(directory: Path, python: str) -> list[str]:
    return [python, "-m", "scalesim.scale", "-c", str(directory / "scale.cfg"), "-t", str(directory / "gemm.csv"),
            "-l", str(directory / "layout.csv"), "-p", str(directory / "out"), "-i", "gemm", "-s", "N"]  # fmt: skip


def run_scalesim(m: int, n: int, k: int, dataflow: str, python: str | None = None) -> dict[str, Any]:
    """SCALE-Sim's COMPUTE_REPORT for one GEMM: its total cycles (compute and stalls) and the
    cycles with the initial DRAM prefetch."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "scale.cfg").write_text(CONFIG.format(array=ARRAY, bandwidth=BANDWIDTH, dataflow=dataflow,
                                                           **SRAM_KIB))  # fmt: skip
        (directory / "gemm.csv").write_text(f"Layer, M, N, K,\ngemm, {m}, {n}, {k},\n")
        (directory / "layout.csv").write_text("Layer name,\n")  # no custom layout
        subprocess.run(scalesim_command(directory, python or scalesim_python()), check=True, cwd=directory,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        with open(directory / "out" / "stoicc" / "COMPUTE_REPORT.csv") as report:
            row = [cell.strip() for cell in list(csv.reader(report))[1]]
    return {"cycles": int(row[2]), "cycles_with_prefetch": int(row[1]), "stalls": int(row[3])}


def machine_file(dataflow: str, directory: Path) -> Path:
    """Our machine configured as SCALE-Sim's: the default 32 x 32 array, 512 KiB of inp and wgt
    and 1 MiB of acc, 64 B/cycle, single-buffered in the array (SCALE-Sim loads a tile,
    fills, streams and drains before the next)."""
    path = directory / f"scalesim_{dataflow}.toml"
    path.write_text(f'[array]\nrows = {ARRAY}\nwidth = {ARRAY}\ndataflow = "{dataflow}"\ndouble_buffered = false\n'
                    f'[buffers]\ninp = {SRAM_KIB["ifmap"]}\nwgt = {SRAM_KIB["filter"]}\nacc = {SRAM_KIB["ofmap"]}\n'
                    f"[dram]\nbytes_per_cycle = {BANDWIDTH}\n")  # fmt: skip
    return path


def closed_form(m: int, n: int, k: int, dataflow: str) -> int:
    """SCALE-Sim 3.0.0's compute cycles (its total less its stalls) on a 32 x 32 array, as
    every run of it we made obeys: per fold, ws loads a weight tile (32 cycles), streams
    the M rows and fills and drains (31 + 31); os streams K through a block of outputs
    and fills and drains; less one cycle."""
    fill_drain = 2 * ARRAY - 2
    if dataflow == "ws":
        return -(-n // ARRAY) * -(-k // ARRAY) * (m + ARRAY + fill_drain) - 1
    return -(-m // ARRAY) * -(-n // ARRAY) * (k + fill_drain) - 1


def scalesim_tiles(m: int, n: int, k: int, dataflow: str) -> tuple[int, int, int]:
    """Tiles that give our program SCALE-Sim's loop nest: ws streams all M rows through each
    weight tile (tm = M; 128-wide k-chunks leave room for 2048 rows), os streams all of K
    through each block of outputs (tk = K); rows and channels as many as fit twice."""
    if dataflow == "ws":  # two output slots, so that stores overlap the next tile's GEMMs
        return m, _power_of_two(min(1024, n, SRAM_KIB["ofmap"] * 1024 // (8 * m))), min(k, 128)
    return (_power_of_two(min(64, m, SRAM_KIB["ifmap"] * 1024 // (2 * k))),
            _power_of_two(min(256, n, SRAM_KIB["filter"] * 1024 // (2 * k))), k)  # fmt: skip


def _power_of_two(limit: int) -> int:
    return 1 << (limit.bit_length() - 1)


def run_ours(m: int, n: int, k: int, machine: Path, tile: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """Our simulator's cycles for the dense int8 GEMM (accel-tile's tiles, or `tile`), its
    output checked against numpy first."""
    source = f"kernel f(x: i8[M, {k}], w: i8[{n}, {k}]) -> i32[M, {n}] {{ return linear(x, w) }}"
    kernel = stoicc_py.compile(source, target="accel", machine=str(machine), tile=tile or ()).f
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    got = kernel(x, w)
    rows = slice(0, min(m, 8))
    assert np.array_equal(got[rows], (x[rows].astype(np.float64) @ w.T.astype(np.float64)).astype(np.int32))
    report = kernel.last_report
    assert report is not None
    return {"cycles": report.cycles, "array_busy": report.queues["ex"]["busy"],
            "mac_utilization": report.mac_utilization, "dram_bytes": sum(report.dram_bytes.values())}  # fmt: skip


def compare(shapes: list[tuple[int, int, int]], scalesim: dict[str, Any], directory: Path) -> list[dict[str, Any]]:
    """One row per shape and dataflow: SCALE-Sim's compute cycles (its total less its memory
    stalls; run, or its closed form where it was not), ours with SCALE-Sim's loop nest
    (`scalesim_tiles`: the program's cycles, and its GEMMs' alone, the execute queue's busy
    time) and ours with accel-tile's own choice."""
    rows = []
    for dataflow in DATAFLOWS:
        machine = machine_file(dataflow, directory)
        for m, n, k in shapes:
            theirs = scalesim.get(f"{m}x{n}x{k} {dataflow}")
            reference = theirs["cycles"] - theirs["stalls"] if theirs else closed_form(m, n, k, dataflow)
            tile = scalesim_tiles(m, n, k, dataflow)
            same = run_ours(m, n, k, machine, tile)
            chosen = run_ours(m, n, k, machine)
            rows.append({"shape": f"{m}x{n}x{k}", "dataflow": dataflow, "scalesim": reference, "ran": bool(theirs),
                         "scalesim_stalls": theirs["stalls"] if theirs else None, "tile": tile,
                         "ours": same["cycles"], "difference": same["cycles"] / reference - 1,
                         "ours_gemms": same["array_busy"],
                         "ours_chosen": chosen["cycles"], "chosen_difference": chosen["cycles"] / reference - 1,
                         "chosen_dram_bytes": chosen["dram_bytes"]})  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| M x N x K | dataflow | SCALE-Sim compute cycles | ours, SCALE-Sim's loop nest (tiles) | "
             "ours, accel-tile's tiles | SCALE-Sim's memory stalls |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        ran = "" if r["ran"] else " (closed form)"
        stalls = f"{r['scalesim_stalls']:,}" if r["ran"] else "not run"
        tile = ", ".join(map(str, r["tile"]))
        lines.append(f"| {r['shape'].replace('x', ' x ')} | {r['dataflow']} | {r['scalesim']:,}{ran} | "
                     f"{r['ours']:,} ({r['difference']:+.1%}; GEMMs {r['ours_gemms']:,}; [{tile}]) | {r['ours_chosen']:,} "
                     f"({r['chosen_difference']:+.1%}) | {stalls} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="create .venv/scalesim with SCALE-Sim 3.0.0 first")
    parser.add_argument("--scalesim", action="store_true", help="run SCALE-Sim and rewrite its record")
    parser.add_argument("--shape", action="append", help="M,N,K instead of the default shapes (repeatable)")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape] if args.shape else SHAPES
    if args.setup:
        setup()
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {"results": {}}
    if args.scalesim:
        for m, n, k in shapes:
            for dataflow in DATAFLOWS:
                record["results"][f"{m}x{n}x{k} {dataflow}"] = run_scalesim(m, n, k, dataflow)
        record["command"] = ("python benchmarks/accel_validate.py --scalesim --shape M,N,K (SCALE-Sim 3.0.0 from "
                             "scalesim-requirements.txt, Python 3.11, numpy 1.26.4; the config of accel_validate.CONFIG)")
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        rows = compare(shapes, record["results"], Path(tmp))  # type: ignore[arg-type]
    print(table(rows))
    bound = [r for r in rows if int(r["shape"].split("x")[0]) >= COMPUTE_BOUND]
    worst = max((abs(r["difference"]) for r in bound), default=0.0)
    print(f"\nlargest difference with SCALE-Sim's loop nest at M >= {COMPUTE_BOUND}: {worst:.1%} "
          f"(tolerance {TOLERANCE:.0%})")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
