"""Compile time of the example programs (examples/*.tdsl), each compiled whole:

- in a fresh subprocess (interpreter start and imports count): cold, with an empty
  on-disk cache (STOICC_CACHE_DIR set to a new temporary directory), then cached (the
  same source compiled again by a new process once that cache is warm);
- in this process: cold (a new empty cache directory) and cached (the same directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import stoicc_py

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_CHILD = """
import json, sys, time
start = time.perf_counter()
import stoicc_py.api
imported = time.perf_counter()
program = stoicc_py.api.compile(sys.argv[1])
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "compile_s": done - imported, "kernels": list(program.kernels)}))
"""
CHILD_TIMEOUT_S = 600


def example_files() -> list[Path]:
    """The examples of the source tree (none when the suite runs from an installed package)."""
    return sorted(EXAMPLES.glob("*.tdsl"))


def compile_times(files: list[Path]) -> list[dict[str, Any]]:
    return [_one(path) for path in files]


def _one(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"file": path.name}
    try:
        with tempfile.TemporaryDirectory(prefix="stoicc-bench-cache-") as cache:
            cold = _subprocess(path, cache)
            cached = _subprocess(path, cache)
        record |= {
            "kernels": cold["kernels"],
            "subprocess_cold_s": cold["wall_s"],
            "subprocess_cold_compile_s": cold["compile_s"],
            "subprocess_cached_s": cached["wall_s"],
            "subprocess_cached_compile_s": cached["compile_s"],
            "subprocess_import_s": cold["import_s"],
        }
        with tempfile.TemporaryDirectory(prefix="stoicc-bench-cache-") as cache:
            record["in_process_cold_s"] = _in_process(path, cache)
            record["in_process_cached_s"] = _in_process(path, cache)
    except (OSError, ValueError, subprocess.SubprocessError, stoicc_py.CompileError) as err:
        record["error"] = f"{type(err).__name__}: {err}"
    return record


def _subprocess(path: Path, cache: str) -> dict[str, Any]:
    """Run the child in a new interpreter; its own timings plus the wall time of the process."""
    env = os.environ | {"STOICC_CACHE_DIR": cache}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise ValueError(f"compiling {path.name} in a subprocess failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.splitlines()[-1]) | {"wall_s": wall}


def _in_process(path: Path, cache: str) -> float:
    start = time.perf_counter()
    stoicc_py.compile(path, cache=cache)
    return time.perf_counter() - start
