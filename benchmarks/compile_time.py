"""Compile time of the example programs (examples/*.tdsl), each compiled whole:

- in a fresh subprocess (interpreter start and imports count): cold, with an empty
  on-disk cache (STOICC_CACHE_DIR set to a new temporary directory), then cached (the
  same source compiled again by a new process once that cache is warm);
- in this process: cold (a new empty cache directory) and cached (the same directory).

And how compile time grows with a kernel's length (`python benchmarks/compile_time.py`):
a chain of n elementwise statements and a sum of n parameters, each compiled without
a cache, split into the front end with our passes (CPU time of this process) and LLVM
(the worker's O3 and code emission), with the growth exponent fitted to each.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import stoicc_py
from stoicc_py.timing import is_timing

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


SIZES = (50, 100, 200, 400)
"""Statement counts within the front end's limit of operations (stoicc_py.limits)."""
LLVM_STEPS = frozenset({"xdsl-to-llvmlite", "llvm-parse", "llvm-o3", "llvm-codegen"})
_CHAIN_OPS = ("{} + x", "{} * x", "relu({})", "{} - x")


def chain_source(n: int) -> str:
    """A kernel of n statements, each one elementwise op on the one before."""
    lines = [f"  h{i} = " + _CHAIN_OPS[i % 4].format(f"h{i - 1}") for i in range(1, n + 1)]
    return "kernel k(x: f32[M, 64]) -> f32[M, 64] {\n  h0 = x\n" + "\n".join(lines) + f"\n  return h{n}\n}}\n"


def sum_source(n: int) -> str:
    """A kernel returning the sum of its n parameters, one expression of n - 1 additions."""
    params = ", ".join(f"a{i}: f32[M, 64]" for i in range(n))
    return f"kernel k({params}) -> f32[M, 64] {{\n  return {' + '.join(f'a{i}' for i in range(n))}\n}}\n"


def stage_seconds(source: str, upto: str = "loops", runs: int = 3) -> float:
    """The least CPU time of this process, over `runs`, of the front end and the passes
    up to `upto` (no LLVM): robust to other work on the machine, which mostly delays."""
    from stoicc_py.lowering import STAGES, front_end, lower
    from stoicc_py.options import Options

    best = math.inf
    for _ in range(runs):
        start = time.process_time()
        lower(front_end(source, "<bench>"), STAGES[upto], Options())
        best = min(best, time.process_time() - start)
    return best


def growth_exponent(sizes: list[float], seconds: list[float]) -> float:
    """The slope of log(seconds) against log(size), least squares: 1 is linear growth."""
    xs, ys = [math.log(n) for n in sizes], [math.log(max(s, 1e-9)) for s in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


class _StepTimes(logging.Handler):
    """Sums the timing records (stoicc_py.timing) of the LLVM steps."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.llvm = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if is_timing(record) and record.getMessage().split(":")[0] in LLVM_STEPS:
            self.llvm += record.elapsed  # type: ignore[attr-defined]


def scaling(kind: str, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """Compile times of `kind` ("chain" or "sum") at each size: the whole compile (wall),
    its LLVM steps, the rest; and the growth exponents of each."""
    source = {"chain": chain_source, "sum": sum_source}[kind]
    package = logging.getLogger("stoicc_py")
    handler, level = _StepTimes(), package.level
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)
    rows = []
    try:
        for n in sizes:
            handler.llvm = 0.0
            start = time.perf_counter()
            stoicc_py.compile(source(n), cache=False)
            total = time.perf_counter() - start
            rows.append({"size": n, "total_s": total, "llvm_s": handler.llvm, "passes_s": total - handler.llvm})
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
    ns = [r["size"] for r in rows]
    exponents = {key: growth_exponent(ns, [r[f"{key}_s"] for r in rows]) for key in ("total", "passes", "llvm")}
    return {"kind": kind, "rows": rows, "exponents": exponents}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="statement counts (default %(default)s)")
    parser.add_argument("--no-examples", action="store_true", help="skip the examples' cold compiles")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    result: dict[str, Any] = {"scaling": [], "examples": []}
    for kind in ("chain", "sum"):
        record = scaling(kind, sizes)
        result["scaling"].append(record)
        print(f"{kind}: size  total_s  passes_s  llvm_s")
        for row in record["rows"]:
            print(f"  {row['size']:>9}  {row['total_s']:7.2f}  {row['passes_s']:8.2f}  {row['llvm_s']:6.2f}")
        print("  growth exponent: " + ", ".join(f"{k} {v:.2f}" for k, v in record["exponents"].items()))
    if not args.no_examples:
        result["examples"] = compile_times(example_files())
        for record in result["examples"]:
            print(_example_line(record))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def _example_line(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"{record['file']}: {record['error']}"
    return (f"{record['file']}: cold {record['subprocess_cold_s']:.2f} s (imports {record['subprocess_import_s']:.2f} s, "
            f"compile {record['subprocess_cold_compile_s']:.2f} s), in process {record['in_process_cold_s']:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
