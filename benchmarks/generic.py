"""Static versus shape-generic packed kernels: the same `linear(x, w)` with the weight's
dims static (`w: f32[576, 1536] @ nm(2, 4)`, one compile per weight shape, vectorised
kernels) or symbolic (`w: f32[N, K] @ nm(2, 4)`, one compile for every shape, the
generic loop nests), on SmolLM2-135M's projection shapes at M = 1 (decode) and M = 128
(prefill), one thread. Both are checked against numpy on the unpacked weight.

    python benchmarks/generic.py                     # every format and shape
    python benchmarks/generic.py --formats nm24 --repeat 5 --json out.json
    python benchmarks/generic.py --smoke             # tiny shapes, correctness only
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.benchmarks.measure import add_script_options, chosen_formats, time_calls
from stoicc_py.cmdline import write_json

Array = np.ndarray[Any, Any]
FORMATS = {
    "int4": "int4(group=32)",
    "nm24": "nm(2, 4)",
    "hybrid50": "hybrid(tile=[64, 64], formats=[dense, nm(2, 4)])",
}
SHAPES = [(n, k) for n, k in ((576, 576), (192, 576), (1536, 576), (576, 1536))]
ROWS = (1, 128)
SMOKE_SHAPES, SMOKE_ROWS = [(128, 64)], (3,)


@dataclass
class Case:
    """One format and weight shape: its weight, packed once, and the kernels that take it."""

    key: str
    n: int
    k: int
    w: Any  # PackedTensor
    static: Any
    generic: Any
    static_compile_s: float


def source(layout: str, n: int | str, k: int | str) -> str:
    return f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}) -> f32[M, {n}] {{ return linear(x, w) }}"


def compiled(text: str) -> tuple[Any, float]:
    """The kernel of `text`, compiled now (not from the cache), and the seconds it took."""
    start = time.perf_counter()
    kernel = stoicc_py.compile(text, cache=False).f
    kernel.threads = 1
    return kernel, time.perf_counter() - start


def pack(kernel: Any, key: str, n: int, k: int, rng: np.random.Generator) -> Any:
    """A random weight pruned to the format (2:4, or 2:4 in a random half of the hybrid tiles)."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    if key == "hybrid50":
        plan = np.ones((n // 64) * (k // 64), np.int8)
        plan[rng.permutation(plan.size)[: plan.size // 2]] = 2
        return kernel.pack("w", w, prune="magnitude", plan=plan.reshape(n // 64, k // 64))
    return kernel.pack("w", w, prune="magnitude" if key != "int4" else None)


def run(formats: list[str], shapes: list[tuple[int, int]], rows: tuple[int, ...], repeat: int,
        budget: float, timed: bool = True) -> dict[str, Any]:  # fmt: skip
    rng = np.random.default_rng(0)
    results: list[dict[str, Any]] = []
    compile_s: dict[str, dict[str, float]] = {}
    for key in formats:
        generic, generic_s = compiled(source(FORMATS[key], "N", "K"))
        compile_s[key] = {"generic_s": generic_s, "static_s": 0.0}
        for n, k in shapes:
            static, static_s = compiled(source(FORMATS[key], n, k))
            compile_s[key]["static_s"] += static_s
            case = Case(key, n, k, pack(generic, key, n, k, rng), static, generic, static_s)
            results += [measure(case, m, rng, repeat, budget, timed) for m in rows]
    return {"compile": compile_s, "results": results}


def measure(case: Case, m: int, rng: np.random.Generator, repeat: int, budget: float, timed: bool) -> dict[str, Any]:
    x = rng.standard_normal((m, case.k)).astype(np.float32)
    want = x.astype(np.float64) @ case.w.unpack().astype(np.float64).T
    record: dict[str, Any] = {"format": case.key, "m": m, "n": case.n, "k": case.k}
    for name, kernel in (("static", case.static), ("generic", case.generic)):
        got = kernel(x, case.w)
        record[f"{name}_ok"] = bool(np.allclose(got, want, rtol=1e-3, atol=1e-3))
        if timed:
            record[f"{name}_us"] = time_calls(partial(kernel, x, case.w), repeat, budget, None).median_s * 1e6
    return record


def table(report: dict[str, Any]) -> str:
    lines = [f"{'format':9} {'M x N x K':>16} {'static us':>10} {'generic us':>11} {'generic/static':>15}"]
    for r in report["results"]:
        shape = f"{r['m']}x{r['n']}x{r['k']}"
        ratio = r["generic_us"] / r["static_us"]
        lines.append(f"{r['format']:9} {shape:>16} {r['static_us']:10.1f} {r['generic_us']:11.1f} {ratio:15.2f}")
    lines.append("compile time: " + "; ".join(
        f"{key}: one generic kernel {c['generic_s']:.2f} s, {len(SHAPES)} static kernels {c['static_s']:.2f} s"
        for key, c in report["compile"].items()))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_script_options(parser, FORMATS, repeat=20)
    args = parser.parse_args()
    formats = chosen_formats(parser, args.formats, FORMATS)
    shapes, rows = (SMOKE_SHAPES, SMOKE_ROWS) if args.smoke else (SHAPES, ROWS)
    report = run(formats, shapes, rows, args.repeat, args.budget, timed=not args.smoke)
    failed = [r for r in report["results"] if not (r["static_ok"] and r["generic_ok"])]
    print(json.dumps(report, indent=1) if args.smoke else table(report))
    if args.json:
        write_json(args.json, report)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
