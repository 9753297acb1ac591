"""Decode GEMVs (M = 1) on 1 and 2 threads: our column split (abi.ColumnSplit) against numpy
and torch f32 on the same threads (the `w4a8`, `w8a8`, `w8a8-g32` and `ternary-a8` kernels
quantize x to int8 per call and multiply integers, checked against that rounded x times the
weight), in GB/s of weight bytes (the packed buffers' bytes over
the median call time; weights stay in cache between calls, so the small shapes are cache-
resident and 4096 x 4096 f32 is not).

A call of one row splits only in a kernel whose weight's N is a size symbol
(`w: f32[N, K] @ layout`); the `static` column is the same layout with N static, the kernel
that `stoicc bench` times, on one thread. `--min-work W` sets parallel.MIN_COLUMN_WORK
(multiply-adds per block) for this run, to see what a split costs below the threshold.

    python -m stoicc_py.benchmarks.gemv_threads                 # the shapes and formats below
    python -m stoicc_py.benchmarks.gemv_threads --min-work 1 --json out.json
    python -m stoicc_py.benchmarks.gemv_threads --smoke         # tiny, correctness only
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from importlib import import_module
from importlib.util import find_spec
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py import kernel as kernel_module
from stoicc_py.benchmarks.kernels import Format, check, make_weight
from stoicc_py.benchmarks.measure import add_script_options, chosen_formats, library_threads, time_calls
from stoicc_py.cmdline import write_json
from stoicc_py.packing.quant import fake_quantize

PER_TOKEN = "linear(quantize(x, int8(per=token)), w)"
FORMATS = {
    f.key: f
    for f in (
        Format("dense", "dense f32", ""),
        Format("int8", "int8 per-channel", "int8(axis=0)"),
        Format("int4", "int4 g32", "int4(group=32)"),
        Format("nm24", "2:4 f32", "nm(2, 4)", sparse=True),
        # groups of S with Q count stored values: 16 of them span 32 columns
        Format("nm24-int4", "2:4 + int4 g32", "nm(2, 4) with int4(group=16)", sparse=True),
        Format("ternary", "ternary per-channel", "ternary(axis=0)"),
        Format("int4-float", "int4 g32 zero=float (Q4_1 grid)", "int4(group=32, zero=float, scale=f16)"),
        # int8 activations quantized per call (as ggml's q8 activations): integer dot products
        Format("w4a8", "W4A8: int4 g32 (Q4_0 grid)", "int4(group=32, scale=f16)", PER_TOKEN),
        Format("w8a8", "W8A8: int8 per-channel", "int8(axis=0)", PER_TOKEN),
        Format("w8a8-g32", "W8A8: int8 g32 (Q8_0 grid)", "int8(group=32, scale=f16)", PER_TOKEN),
        Format("ternary-a8", "ternary-A8 per-channel", "ternary(axis=0)", PER_TOKEN),
    )
}
SHAPES = [(576, 576), (192, 576), (1536, 576), (576, 1536), (4096, 4096)]  # (N, K) of x [1, K] @ w[N, K]^T
"""SmolLM2-135M's projections (q/o, k/v, gate/up, down) and a 4096 x 4096 matrix."""
SMOKE_SHAPES = [(200, 64)]
THREADS = (1, 2)
RTOL = 1e-3


def source(fmt: Format, n: int | str, k: int) -> str:
    layout = f" @ {fmt.layout}" if fmt.layout else ""
    return f"kernel f(x: f32[1, {k}], w: f32[{n}, {k}]{layout}) -> f32[1, {n}] {{ return {fmt.body} }}"


def _peers(w: np.ndarray[Any, Any]) -> dict[str, Any]:
    """numpy and (if installed) torch f32 GEMVs on the dense weight: name -> call(x)."""
    peers: dict[str, Any] = {"numpy f32": lambda x: x @ w.T}
    if find_spec("torch"):
        torch = import_module("torch")
        tw = torch.from_numpy(w)
        peers["torch f32"] = lambda x: torch.nn.functional.linear(torch.from_numpy(x), tw)
    return peers


def measure(fmt: Format, n: int, k: int, repeat: int, budget: float, timed: bool) -> list[dict[str, Any]]:
    """One row per thread count: our symbolic-N kernel, the static one (1 thread), numpy, torch."""
    rng = np.random.default_rng(0)
    generic, static = (stoicc_py.compile(source(fmt, dim, k)).f for dim in ("N", n))
    weight = make_weight(fmt, generic, n, k, rng)
    dense = weight.arg if isinstance(weight.arg, np.ndarray) else weight.arg.dequantize()
    x = rng.standard_normal((1, k)).astype(np.float32)
    x_read = fake_quantize(x, "int8(per=token)") if fmt.body == PER_TOKEN else x  # what our kernels multiply
    want = {x_is: x_as.astype(np.float64) @ dense.astype(np.float64).T for x_is, x_as in (("read", x_read), ("f32", x))}
    calls = {"ours": partial(generic, x, weight.arg), "static": partial(static, x, weight.arg)}
    calls |= {name: partial(call, x) for name, call in _peers(dense).items()}
    rows = []
    for threads in THREADS:
        generic.threads = static.threads = threads
        row: dict[str, Any] = {"format": fmt.key, "n": n, "k": k, "threads": threads, "bytes": weight.bytes["total"]}
        with library_threads(threads):
            for name, call in calls.items():
                if name == "static" and threads > 1:
                    continue  # a static N has no columns to rebind: the call runs whole
                ok, error = check(np.asarray(call()), want["read" if name in ("ours", "static") else "f32"], RTOL)
                row[f"{name}_ok"], row[f"{name}_error"] = ok, error
                if timed:
                    stats = time_calls(call, repeat, budget, None)
                    row[f"{name}_us"], row[f"{name}_best_us"] = stats.median_s * 1e6, stats.min_s * 1e6
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """GB/s of weight bytes (dense f32 bytes for the peers) at the median time per format, shape
    and thread count; 2t/1t: our speed-up at the median and (in brackets) at the best times."""
    peers = [p for p in ("numpy f32", "torch f32") if f"{p}_us" in rows[0]]
    head = ["format", "1 x N x K", "weight MB", "static 1t", "ours 1t", "ours 2t", "2t/1t (best)"]
    head += [f"{p} {t}t" for p in peers for t in THREADS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for one, two in zip(rows[::2], rows[1::2]):
        gbs = lambda us, nbytes=one["bytes"]: f"{nbytes / us / 1e3:.1f}"  # noqa: E731
        f32 = one["n"] * one["k"] * 4
        cells = [one["format"], f"1x{one['n']}x{one['k']}", f"{one['bytes'] / 1e6:.2f}", gbs(one["static_us"]),
                 gbs(one["ours_us"]), gbs(two["ours_us"]),
                 f"{one['ours_us'] / two['ours_us']:.2f}x ({one['ours_best_us'] / two['ours_best_us']:.2f}x)"]  # fmt: skip
        cells += [gbs(r[f"{p}_us"], f32) for p in peers for r in (one, two)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_script_options(parser, FORMATS, repeat=200)
    parser.add_argument("--min-work", type=int, help="parallel.MIN_COLUMN_WORK for this run")
    args = parser.parse_args()
    formats = chosen_formats(parser, args.formats, FORMATS)
    if args.min_work is not None:
        kernel_module.MIN_COLUMN_WORK = args.min_work
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    rows = [r for key in formats for n, k in shapes for r in measure(FORMATS[key], n, k, args.repeat, args.budget,
                                                                       not args.smoke)]  # fmt: skip
    failed = [r for r in rows if not all(v for name, v in r.items() if name.endswith("_ok"))]
    print(json.dumps(rows, indent=1) if args.smoke else table(rows))
    if args.json:
        write_json(args.json, {"min_column_work": kernel_module.MIN_COLUMN_WORK, "results": rows})
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
