"""`python -m benchmarks` / `stoicc bench`: the command line of the CPU benchmark suite."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from stoicc_py.cmdline import Parser, integer, output_file, write_json

from . import report
from .baselines import run_ggml
from .calls import call_overheads
from .compile_time import compile_times, example_files
from .cpu import Config, Shape, run
from .kernels import FORMATS
from .measure import Flusher, l3_bytes

SCHEMA = "stoicc-bench-cpu/1"
MAX_THREADS = 1024
MAX_REPEAT = 10**6
BUSY_LOAD = 0.5
LLM_WEIGHTS = [(4096, 4096), (11008, 4096), (4096, 11008)]
FULL_SHAPES: list[Shape] = [(m, n, k) for m in (1, 16, 64, 256) for n, k in LLM_WEIGHTS] + [
    (1, 1024, 1024),
    (1024, 1024, 1024),
]
QUICK_SHAPES: list[Shape] = [(1, 1024, 1024), (64, 1024, 1024), (256, 1024, 1024)]  # one weight: one compile per format
SMOKE_SHAPES: list[Shape] = [(1, 128, 256), (5, 128, 256)]
# mode: shapes, threads, repeat, budget (s), compile-time files (None: all), call overhead (calls per round, rounds)
MODES: dict[str, tuple[list[Shape], list[int], int, float, list[str] | None, tuple[int, int] | None]] = {
    "full": (FULL_SHAPES, [1, 2], 10, 2.0, None, (20000, 7)),
    "quick": (QUICK_SHAPES, [1, 2], 5, 0.2, ["mlp.tdsl"], (2000, 5)),
    "smoke": (SMOKE_SHAPES, [1], 1, 0.0, [], None),
}


def _shapes(text: str) -> list[Shape]:
    try:
        shapes = [tuple(int(d) for d in s.lower().split("x")) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MxNxK[,MxNxK...], got {text!r}") from None
    if any(len(s) != 3 or min(s) <= 0 for s in shapes):
        raise argparse.ArgumentTypeError(f"expected positive MxNxK triples, got {text!r}")
    return shapes  # type: ignore[return-value]


def _threads(text: str) -> list[int]:
    try:
        return [integer(1, MAX_THREADS)(t) for t in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected thread counts from 1 to {MAX_THREADS} like 1,2, got {text!r}"
        ) from None


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 3600, got {text!r}")
    return value


def _formats(text: str) -> list[str]:
    keys = [t.strip() for t in text.split(",")]
    unknown = [key for key in keys if key not in FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown format(s) {', '.join(unknown)} (formats: {', '.join(FORMATS)})")
    return keys


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="stoicc bench",
        description="CPU benchmarks of stoicc kernels against numpy, PyTorch and llama.cpp (benchmarks/README.md).",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few small shapes, few repeats (under a minute)")
    mode.add_argument("--smoke", action="store_true", help="tiny shapes, correctness only, no timing (CI)")
    p.add_argument("--formats", type=_formats, help=f"comma-separated, of: {', '.join(FORMATS)} (default: all)")
    p.add_argument("--shapes", type=_shapes, help="comma-separated MxNxK (x: [M, K], weight: [N, K])")
    p.add_argument("--threads", type=_threads, help="thread counts, e.g. 1,2 (default: 1,2; smoke: 1)")
    p.add_argument("--repeat", type=integer(1, MAX_REPEAT),
                   help="timed calls per measurement, at most (default 10; quick 5)")  # fmt: skip
    p.add_argument("--budget", type=_budget, help="seconds of timed calls per measurement (default 2; quick 0.2)")
    p.add_argument("--json", metavar="FILE", type=output_file,
                   help="write every figure as JSON, after each measurement (schema in benchmarks/README.md)")  # fmt: skip
    p.add_argument("--plot", metavar="FILE.png", type=output_file, help="plot GFLOP/s per shape (needs matplotlib)")
    p.add_argument("--ggml", metavar="PATH", help="llama.cpp's test-backend-ops binary, to add its MUL_MAT figures")
    p.add_argument("--no-compile-time", action="store_true", help="skip compiling examples/*.tdsl")
    p.add_argument("--no-call-overhead", action="store_true", help="skip timing calls of tiny kernels")
    return p


def _config(args: argparse.Namespace, mode: str) -> tuple[Config, list[str] | None, tuple[int, int] | None]:
    shapes, threads, repeat, budget, examples, calls = MODES[mode]
    timing = mode != "smoke"
    config = Config(
        shapes=args.shapes or shapes,
        formats=args.formats or list(FORMATS),
        threads=args.threads or threads,
        repeat=args.repeat or repeat,
        budget=budget if args.budget is None else args.budget,
        timing=timing,
    )
    return config, [] if args.no_compile_time else examples, None if args.no_call_overhead else calls


def _machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), None)
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "l3_bytes": l3_bytes(),
        "load_avg": list(os.getloadavg()),
        "python": platform.python_version(),
        **{name: _version(name) for name in ("stoicc_py", "numpy", "torch", "threadpoolctl", "llvmlite")},
    }


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read().splitlines()
    except OSError:
        return []


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _failures(data: dict[str, Any]) -> list[str]:
    bad = [
        f"{r['name']} {r['m']}x{r['n']}x{r['k']} threads {r['threads']}: {r['status']}"
        + (f" ({r['error']})" if r["error"] else f" (relative error {r['max_rel_error']:.3g})")
        for r in data["results"]
        if r["status"] in ("fail", "error")
    ]
    bad += [f"compile {c['file']}: {c['error']}" for c in data["compile"] if c.get("error")]
    bad += [
        f"call {c['name']}: relative error {c['max_rel_error']:.3g}" for c in data["calls"] if c["status"] == "fail"
    ]
    return bad


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; 0 if every correctness check passed, else 1."""
    args = parser().parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    config, examples, calls = _config(args, mode)
    start = time.perf_counter()
    data: dict[str, Any] = {"schema": SCHEMA, "mode": mode, "complete": False, "machine": _machine()}

    if config.timing and data["machine"]["load_avg"][0] > BUSY_LOAD:
        _log(f"warning: load average {data['machine']['load_avg'][0]:.2f}: other work is running, timings are noisy")

    flusher = Flusher() if config.timing else None
    data["config"] = asdict(config) | {"flush_bytes": flusher and flusher.nbytes}
    data |= {"results": [], "weights": [], "compile": [], "calls": [], "ggml": None, "failures": [], "elapsed_s": None}
    for key, record in run(config, flusher, _log):
        data[key].append(record)
        _save(data, args)  # after each measurement: an interrupted run keeps what it measured
    files = [f for f in example_files() if examples is None or f.name in examples]
    data["compile"] = compile_times(files)
    _save(data, args)
    data["calls"] = call_overheads(*calls) if calls else []
    _save(data, args)
    data["ggml"] = run_ggml(args.ggml) if args.ggml else None
    if data["ggml"]:
        report.add_ggml_ratios(data["results"], data["ggml"]["rows"])
    data["failures"] = _failures(data)
    data["elapsed_s"] = time.perf_counter() - start
    data["machine"]["load_avg_end"] = list(os.getloadavg())
    data["complete"] = True
    _print(data, args)
    return 1 if data["failures"] else 0


def _save(data: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        write_json(args.json, data)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print(data: dict[str, Any], args: argparse.Namespace) -> None:
    title = f"stoicc CPU benchmarks ({data['mode']}): {data['machine']['cpu']}, {data['machine']['cores']} cores"
    print(title + ("; smoke: correctness only, no timing" if data["mode"] == "smoke" else ""))
    print(report.results_table(data["results"], data["mode"] != "smoke"))
    print(report.weights_table(data["weights"]))
    if data["compile"]:
        print(report.compile_table(data["compile"]))
    if data["calls"]:
        print(report.calls_table(data["calls"]))
    if data["ggml"]:
        print(report.ggml_table(data["ggml"]))
    legend = report.LEGEND if data["mode"] != "smoke" else report.CHECK_LEGEND
    print(f"\n{legend}\n\n{data['elapsed_s']:.1f} s in all")
    _save(data, args)
    if args.plot:
        _log(report.write_plot(args.plot, data["results"]))
    for failure in data["failures"]:
        _log(f"FAILED: {failure}")
    if data["failures"]:
        _log(f"{len(data['failures'])} correctness check(s) failed or errored: see above")
