"""Compile time of the example programs (examples/*.tdsl), each compiled whole:

- in a fresh subprocess (interpreter start and imports count): cold, with no kernel in
  the on-disk cache (STOICC_CACHE_DIR set to a new temporary directory that holds only
  the parser's tables, which the first compile on a machine builds once), then cached
  (the same source compiled again by a new process once that cache is warm);
- in this process: cold (a new empty cache directory) and cached (the same directory).

And how compile time grows with a kernel's length (`python benchmarks/compile_time.py`):
a chain of n elementwise statements and a sum of n parameters, each compiled without
a cache, in CPU time split into the front end with our passes and LLVM (its O2 and code
emission, in this process), with the growth exponent fitted to each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import stoicc_py
from stoicc_py.cmdline import write_json

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_CHILD = """
import json, resource, sys, time
start = time.perf_counter()
import stoicc_py.api
imported = time.perf_counter()
program = stoicc_py.api.compile(sys.argv[1], sys.argv[2])
done = time.perf_counter()
from stoicc_py.backends.llvm.worker import POOL
POOL.shutdown()  # reaped: its CPU time joins RUSAGE_CHILDREN
cpu = sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
print(json.dumps({"import_s": imported - start, "compile_s": done - imported, "cpu_s": cpu, "kernels": list(program.kernels)}))
"""
_TABLES = "from stoicc_py.frontend.parser import _lark; _lark()"
CHILD_TIMEOUT_S = 600


TARGETS = {"gpu.tdsl": "gpu"}
"""Examples written for another target than the CPU (their header says how to run them)."""


def target(path: Path) -> str:
    """The target an example is compiled for, as its header runs it."""
    return TARGETS.get(path.name, "cpu")


def example_files() -> list[Path]:
    """The examples of the source tree (none when the suite runs from an installed package)."""
    return sorted(EXAMPLES.glob("*.tdsl"))


def compile_times(files: list[Path]) -> list[dict[str, Any]]:
    return [_one(path) for path in files]


def _one(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"file": path.name}
    try:
        with tempfile.TemporaryDirectory(prefix="stoicc-bench-cache-") as cache:
            _subprocess(None, cache)  # the parser's tables, as any compile but a machine's first finds them
            cold = _subprocess(path, cache)
            cached = _subprocess(path, cache)
        record |= {
            "kernels": cold["kernels"],
            "subprocess_cold_s": cold["wall_s"],
            "subprocess_cold_cpu_s": cold["cpu_s"],
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


def _subprocess(path: Path | None, cache: str) -> dict[str, Any]:
    """Run the child in a new interpreter; its own timings plus the wall time of the process.
    Without a path, the child only builds the parser's tables into the cache."""
    env = os.environ | {"STOICC_CACHE_DIR": cache}
    child = [_TABLES] if path is None else [_CHILD, str(path), target(path)]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", *child], env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        what = path.name if path else "the parser's tables"
        raise ValueError(f"compiling {what} in a subprocess failed: {done.stderr.strip().splitlines()[-1:]}")
    if path is None:
        return {}
    return json.loads(done.stdout.splitlines()[-1]) | {"wall_s": wall}


def _in_process(path: Path, cache: str) -> float:
    start = time.perf_counter()
    stoicc_py.compile(path, target(path), cache=cache)
    return time.perf_counter() - start


SIZES = (100, 200, 400, 800, 1600)
"""Statement counts within the front end's limit of operations (stoicc_py.limits): the
sum of 1600 parameters is 3199 operations."""
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
    """The least CPU time of this thread, over `runs`, of the front end and the passes up to
    `upto` (no LLVM): robust to other work on the machine, which mostly delays, and to other
    threads of the process (the native pool's workers spin for a while after a call)."""
    from stoicc_py.lowering import STAGES, front_end, lower
    from stoicc_py.options import Options

    best = math.inf
    for _ in range(runs):
        start = time.thread_time()
        lower(front_end(source, "<bench>"), STAGES[upto], Options())
        best = min(best, time.thread_time() - start)
    return best


def growth_exponent(sizes: list[float], seconds: list[float]) -> float:
    """The slope of log(seconds) against log(size), least squares: 1 is linear growth."""
    xs, ys = [math.log(n) for n in sizes], [math.log(max(s, 1e-9)) for s in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def cpu_seconds(source: str, runs: int = 1) -> tuple[float, float]:
    """The least CPU time, over `runs`, of the front end, the passes and the LLVM IR text;
    and of LLVM's parse, O3 and code emission, run in this process rather than in the
    worker so that this process's clock counts them. CPU time is robust to other work on
    the machine, which mostly delays."""
    from stoicc_py.backends.llvm.codegen import to_llvm_ir
    from stoicc_py.backends.llvm.target import host_options
    from stoicc_py.backends.llvm.worker import optimize
    from stoicc_py.lowering import STAGES, front_end, lower
    from stoicc_py.options import Options

    passes = llvm = math.inf
    for _ in range(runs):
        start = time.process_time()
        ir = to_llvm_ir(lower(front_end(source, "<bench>"), STAGES["ptr"], Options()))
        lowered = time.process_time()
        optimize(host_options(), ir, "object")
        passes, llvm = min(passes, lowered - start), min(llvm, time.process_time() - lowered)
    return passes, llvm


def scaling(kind: str, sizes: tuple[int, ...] = SIZES, runs: int = 1) -> dict[str, Any]:
    """CPU times of compiling `kind` ("chain" or "sum") at each size: the front end with
    our passes, LLVM, their total; and the growth exponent of each."""
    source = {"chain": chain_source, "sum": sum_source}[kind]
    rows = []
    for n in sizes:
        passes, llvm = cpu_seconds(source(n), runs)
        rows.append({"size": n, "total_s": passes + llvm, "passes_s": passes, "llvm_s": llvm})
    ns = [r["size"] for r in rows]
    exponents = {key: growth_exponent(ns, [r[f"{key}_s"] for r in rows]) for key in ("total", "passes", "llvm")}
    return {"kind": kind, "rows": rows, "exponents": exponents}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="statement counts (default %(default)s)")
    parser.add_argument("--runs", type=int, default=1, help="compiles per size, the least CPU time kept (default 1)")
    parser.add_argument("--no-examples", action="store_true", help="skip the examples' cold compiles")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    if len(set(sizes)) < 2:
        parser.error("--sizes needs two different statement counts to fit a growth exponent")
    result: dict[str, Any] = {"scaling": [], "examples": []}
    for kind in ("chain", "sum"):
        record = scaling(kind, sizes, args.runs)
        result["scaling"].append(record)
        print(f"{kind}: size  total_s  passes_s  llvm_s (CPU)")
        for row in record["rows"]:
            print(f"  {row['size']:>9}  {row['total_s']:7.2f}  {row['passes_s']:8.2f}  {row['llvm_s']:6.2f}")
        print("  growth exponent: " + ", ".join(f"{k} {v:.2f}" for k, v in record["exponents"].items()))
    if not args.no_examples:
        result["examples"] = compile_times(example_files())
        for record in result["examples"]:
            print(_example_line(record))
    if args.json:
        write_json(args.json, result)


def _example_line(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"{record['file']}: {record['error']}"
    return (f"{record['file']}: cold {record['subprocess_cold_s']:.2f} s (CPU {record['subprocess_cold_cpu_s']:.2f} s; "
            f"imports {record['subprocess_import_s']:.2f} s, "
            f"compile {record['subprocess_cold_compile_s']:.2f} s), in process {record['in_process_cold_s']:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
