"""Decode GEMVs (M = 1) on 1 and 2 threads, every weight-only format and the int8-activation
ones (`w4a8`, `w4a8-q4_1`, `w4a8-q4_1-g32`, `w8a8`, `w8a8-g32`, `ternary-a8` quantize x to int8 per call and multiply
integers, checked against that rounded x times the weight), against numpy and torch f32 on
the same threads: least call times in µs over rounds that alternate 1 and 2 threads in one
process (the host is shared), and the one-thread GB/s of weight bytes (weights stay in
cache between calls: the small shapes are cache-resident, 4096 x 4096 f32 is not).

Two kernels per format: `static` (N static, as `stoicc bench` and the models compile it)
and `ours` (N a size symbol, which the Python column split, abi.ColumnSplit, may cut).
Both split a GEMV's column tiles over the native pool where mark-parallel-loops proves
them independent (abi.native_threads / abi.one_row_pool); each thread count's result is
checked bit for bit against one thread's. `--min-work W` sets parallel.MIN_COLUMN_WORK
(the Python split's multiply-adds per block) for this run.

    python -m stoicc_py.benchmarks.gemv_threads                 # the shapes and formats below
    python -m stoicc_py.benchmarks.gemv_threads --min-work 1 --json out.json
    python -m stoicc_py.benchmarks.gemv_threads --smoke         # tiny, correctness only
"""

from __future__ import annotations

import argparse
import json
import re
import time
from functools import partial
from importlib import import_module
from importlib.util import find_spec
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py import kernel as kernel_module
from stoicc_py.benchmarks.kernels import Format, check, hybrid_tile, make_weight
from stoicc_py.benchmarks.measure import (
    add_script_options,
    chosen_formats,
    integer_options,
    library_threads,
    time_calls,
)
from stoicc_py.cmdline import write_json
from stoicc_py.packing.quant import fake_quantize

PER_TOKEN = "linear(quantize(x, int8(per=token)), w)"
FORMATS = {
    f.key: f
    for f in (
        Format("dense", "dense f32", ""),
        Format("int8", "int8 per-channel", "int8(axis=0)"),
        Format("int4", "int4 g32", "int4(group=32)"),
        Format("int4-g128", "int4 g128", "int4(group=128)"),
        Format("nm24", "2:4 f32", "nm(2, 4)", sparse=True),
        # groups of S with Q count stored values: 16 of them span 32 columns
        Format("nm24-int4", "2:4 + int4 g32", "nm(2, 4) with int4(group=16)", sparse=True),
        Format("ternary", "ternary per-channel", "ternary(axis=0)"),
        Format("hybrid50", "hybrid 50% 2:4", "hybrid(tile=[{tile}, {tile}], formats=[dense, nm(2, 4)])", sparse=True),
        Format("int4-float", "int4 g32 zero=float (Q4_1 grid)", "int4(group=32, zero=float, scale=f16)"),
        # int8 activations quantized per call (as ggml's q8 activations): integer dot products
        Format("w4a8", "W4A8: int4 g32 (Q4_0 grid)", "int4(group=32, scale=f16)", PER_TOKEN),
        Format("w4a8-q4_1", "W4A8: int4 g32 zero=float (Q4_1 grid)", "int4(group=32, zero=float, scale=f16)", PER_TOKEN),
        Format("w4a8-q4_1-g32", "W4A8: Q4_1 grid, x per group of 32 (q8_1's)", "int4(group=32, zero=float, scale=f16)",
               "linear(quantize(x, int8(group=32)), w)"),
        Format("w8a8", "W8A8: int8 per-channel", "int8(axis=0)", PER_TOKEN),
        Format("w8a8-g32", "W8A8: int8 g32 (Q8_0 grid)", "int8(group=32, scale=f16)", PER_TOKEN),
        Format("ternary-a8", "ternary-A8 per-channel", "ternary(axis=0)", PER_TOKEN),
    )
}
SHAPES = [(576, 576), (1536, 576), (576, 1536), (4096, 4096)]  # (N, K) of x [1, K] @ w[N, K]^T
"""SmolLM2-135M's projections (q/o, gate/up, down) and a 4096 x 4096 matrix."""
SMOKE_SHAPES = [(200, 64)]
THREADS = (1, 2)
SETTLE_S = 0.3
"""The pause before each timed kernel: OpenBLAS's pool threads spin for up to ~0.1 s after
its calls, and on a 2-core host one that spins takes the core our second thread needs
(Zen 4, 2026-12-07: dense 1x1536x576 on 2 threads 42.5 µs after the peers without the
pause, 20.4-22.6 with it; 2-thread rows still vary from run to run on that host)."""
RTOL = 1e-3


def source(fmt: Format, dim: int | str, n: int, k: int) -> str:
    """The GEMV kernel with N = `dim` (n, or a size symbol), a hybrid weight tiled for n x k."""
    layout = f" @ {fmt.layout.format(tile=hybrid_tile(n, k))}" if fmt.layout else ""
    return f"kernel f(x: f32[1, {k}], w: f32[{dim}, {k}]{layout}) -> f32[1, {dim}] {{ return {fmt.body} }}"


def _peers(w: np.ndarray[Any, Any]) -> dict[str, Any]:
    """numpy and (if installed) torch f32 GEMVs on the dense weight: name -> call(x)."""
    peers: dict[str, Any] = {"numpy f32": lambda x: x @ w.T}
    if find_spec("torch"):
        torch = import_module("torch")
        tw = torch.from_numpy(w)
        peers["torch f32"] = lambda x: torch.nn.functional.linear(torch.from_numpy(x), tw)
    return peers


def measure(fmt: Format, n: int, k: int, rounds: int, repeat: int, budget: float, timed: bool,
            ab: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One row per thread count: our symbolic-N and static-N kernels, numpy, torch (and with
    `ab`, the static kernel compiled with these tdsl-vectorize-integer options added: `ab`);
    checked against float64 (and each kernel's two-thread result against its one-thread one,
    bit for bit), then timed in `rounds` rounds that alternate the thread counts (A/B in one
    process on a loaded host): `_us` the least round median, `_best_us` the least call."""
    rng = np.random.default_rng(0)
    generic, static = (stoicc_py.compile(source(fmt, dim, n, k)).f for dim in ("N", n))
    kernels = {"ours": generic, "static": static}
    if ab is not None:
        with integer_options(ab):
            kernels["ab"] = stoicc_py.compile(source(fmt, n, n, k), cache=False).f
    weight = make_weight(fmt, generic, n, k, rng)
    dense = weight.arg if isinstance(weight.arg, np.ndarray) else weight.arg.dequantize()
    x = rng.standard_normal((1, k)).astype(np.float32)
    activations = re.search(r"quantize\(x, (.*)\), w\)", fmt.body)
    x_read = fake_quantize(x, activations[1]) if activations else x  # what our kernels multiply
    want = {x_is: x_as.astype(np.float64) @ dense.astype(np.float64).T for x_is, x_as in (("read", x_read), ("f32", x))}
    calls = {name: partial(kernel, x, weight.arg) for name, kernel in kernels.items()}
    calls |= {name: partial(call, x) for name, call in _peers(dense).items()}
    rows: dict[int, dict[str, Any]] = {
        t: {"format": fmt.key, "n": n, "k": k, "threads": t, "bytes": weight.bytes["total"]} for t in THREADS
    }
    first: dict[str, Any] = {}
    for threads in THREADS:
        for kernel in kernels.values():
            kernel.threads = threads
        with library_threads(threads):
            for name, call in calls.items():
                got = np.asarray(call())
                ours = name in kernels
                rows[threads][f"{name}_ok"], rows[threads][f"{name}_error"] = check(
                    got, want["read" if ours else "f32"], RTOL
                )
                if ours:  # bit for bit as one thread
                    rows[threads][f"{name}_ok"] &= bool(np.array_equal(first.setdefault(name, got), got))
    for _ in range(rounds if timed else 0):
        for threads in THREADS:
            for kernel in kernels.values():
                kernel.threads = threads
            row = rows[threads]
            with library_threads(threads):
                for name, call in calls.items():
                    time.sleep(SETTLE_S)  # the last peer's pool threads stop spinning on the second core
                    stats = time_calls(call, repeat, budget, None)
                    for key, value in ((f"{name}_us", stats.median_s), (f"{name}_best_us", stats.min_s)):
                        row[key] = min(row.get(key, np.inf), value * 1e6)
    return list(rows.values())


def table(rows: list[dict[str, Any]]) -> str:
    """The least call time (µs) per kernel, format, shape and thread count, our two-thread
    speed-ups at those minima (and, in brackets, at the least round medians), and the
    one-thread static kernel's GB/s of weight bytes at its minimum (and --ab's kernel's)."""
    peers = [p for p in ("numpy f32", "torch f32") if f"{p}_us" in rows[0]]
    ours = [kernel for kernel in ("static", "ours", "ab") if f"{kernel}_us" in rows[0]]
    head = ["format", "1 x N x K", "weight MB", "GB/s 1t"]
    head += [f"{kernel} {t}t" for kernel in ours for t in (*THREADS, "2/1")]
    head += [f"{p} {t}t" for p in peers for t in THREADS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for one, two in zip(rows[::2], rows[1::2]):
        cells = [one["format"], f"1x{one['n']}x{one['k']}", f"{one['bytes'] / 1e6:.2f}",
                 f"{one['bytes'] / one['static_best_us'] / 1e3:.1f}"]  # fmt: skip
        for kernel in ours:
            best, median = (one[f"{kernel}{s}_us"] / two[f"{kernel}{s}_us"] for s in ("_best", ""))
            cells += [f"{r[f'{kernel}_best_us']:,.1f}" for r in (one, two)] + [f"{best:.2f}x ({median:.2f}x)"]
        cells += [f"{r[f'{p}_best_us']:,.1f}" for p in peers for r in (one, two)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_script_options(parser, FORMATS, repeat=200)
    parser.add_argument("--min-work", type=int, help="parallel.MIN_COLUMN_WORK for this run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds alternating 1 and 2 threads")
    parser.add_argument("--shapes", help="comma-separated NxK (w: [N, K]) instead of the shapes above")
    parser.add_argument("--ab", metavar="OPTIONS", help="also time the static kernel with these tdsl-vectorize-integer "
                        "options added (`ab`), e.g. 'madd=false' (the portable steps)")  # fmt: skip
    args = parser.parse_args()
    formats = chosen_formats(parser, args.formats, FORMATS)
    if args.min_work is not None:
        kernel_module.MIN_COLUMN_WORK = args.min_work
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    if args.shapes:
        shapes = [(int(n), int(k)) for n, k in (shape.split("x") for shape in args.shapes.split(","))]
    rows = [r for key in formats for n, k in shapes for r in measure(FORMATS[key], n, k, args.rounds, args.repeat,
                                                                       args.budget, not args.smoke, args.ab)]  # fmt: skip
    failed = [r for r in rows if not all(v for name, v in r.items() if name.endswith("_ok"))]
    print(json.dumps(rows, indent=1) if args.smoke else table(rows))
    if args.json:
        write_json(args.json, {"min_column_work": kernel_module.MIN_COLUMN_WORK, "results": rows})
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
