"""Integer GEMM against its peers on one thread: our `i8` kernel (i8 x i8 -> i32) against
`torch._int_mm` (oneDNN s8 x s8 -> s32), and our W8A8 (`linear(quantize(x, int8(per=token)),
w @ int8(axis=0))` -> f32) and W8A7 (the same with `int7(per=token)`: 7-bit codes of x)
against fbgemm's dynamic-quant linear (`torch.ao.nn.quantized.dynamic.Linear`, per-channel
int8 weight, x quantized per call; its forward passes `reduce_range=True`, which on a host
without VNNI quantizes x to 7 bits, 0..127, so that `vpmaddubsw` cannot saturate: W8A7 is
the same bits) on the `fbgemm` and `x86` engines, at SmolLM2-135M's shapes and 1024^3.

Every call is checked first: our i8 and `_int_mm` bit for bit, our W8A8 and fbgemm within
PEER_RTOL of the float64 product (our W8A8 before and after bit for bit the same, with `--ab`). Then the
calls are timed in interleaved rounds (each round one short burst of every call), so a
load that comes and goes on a shared host falls on all of them alike; the figure is each
call's minimum over all rounds. `--ab` adds our kernels as compiled without the packed-panel
path (`tdsl-vectorize-integer{panel=false}`), the kernels before it, for a before/after in one
process.

    python -m stoicc_py.benchmarks.int8_gemm --ab --rounds 15
    python -m stoicc_py.benchmarks.int8_gemm --smoke      # tiny, correctness only
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.benchmarks.measure import integer_options, library_threads
from stoicc_py.cmdline import write_json

Array = np.ndarray[Any, Any]
SHAPES = [(m, n, k) for m in (64, 128, 512) for n, k in ((576, 576), (1536, 576), (576, 1536))] + [(1024, 1024, 1024)]
SMOKE_SHAPES = [(64, 48, 128)]
I8 = "kernel f(x: i8[M, {k}], w: i8[{n}, {k}]) -> i32[M, {n}] {{ return linear(x, w) }}"
W8A8 = ("kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ int8(axis=0)) -> f32[M, {n}] "
        "{{ return linear(quantize(x, int8(per=token)), w) }}")  # fmt: skip
W8A7 = W8A8.replace("int8(per=token)", "int7(per=token)")
PEER_RTOL = 0.05
"""fbgemm quantizes x per tensor (ours per row): against the f32 product, relative to its largest |value|."""


def _ours(n: int, k: int, before: bool) -> tuple[Any, Any, Any]:
    """The i8, W8A8 and W8A7 kernels for (N, K)."""
    sources = [s.format(n=n, k=k) for s in (I8, W8A8, W8A7)]
    if not before:
        return tuple(stoicc_py.compile(s).f for s in sources)  # type: ignore[return-value]
    with integer_options("panel=false"):  # as before the packed-panel kernel
        return tuple(stoicc_py.compile(s, cache=False).f for s in sources)  # type: ignore[return-value]


def _fbgemm(w: Array, engine: str) -> Callable[[Any], Any]:
    """fbgemm's dynamic-quant linear on `engine`, with w's per-channel int8 weight."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear

    torch.backends.quantized.engine = engine
    scales = np.abs(w).max(axis=1) / 127
    qw = torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(scales.astype(np.float64)),
                                    torch.zeros(len(w), dtype=torch.int64), 0, torch.qint8)  # fmt: skip
    layer = Linear(w.shape[1], w.shape[0], bias_=False, dtype=torch.qint8)
    layer.set_weight_bias(qw, None)
    return layer


def calls(m: int, n: int, k: int, ab: bool) -> dict[str, tuple[Callable[[], Any], bool]]:
    """name -> (call, whether its result is right), each call checked once here."""
    import torch

    rng = np.random.default_rng([m, n, k])
    xi = rng.integers(-128, 128, (m, k), dtype=np.int8)
    wi = rng.integers(-128, 128, (n, k), dtype=np.int8)
    xf = rng.standard_normal((m, k)).astype(np.float32)
    wf = rng.standard_normal((n, k)).astype(np.float32)
    want_i = xi.astype(np.int64) @ wi.astype(np.int64).T
    want_f = xf.astype(np.float64) @ wf.astype(np.float64).T
    out: dict[str, tuple[Callable[[], Any], bool]] = {}
    first: dict[str, Array] = {}  # our W8A8's and W8A7's results, which every variant must give bit for bit
    for tag, before in (("", False), (" before", True)) if ab else (("", False),):
        i8, *quantized = _ours(n, k, before)
        out[f"ours i8{tag}"] = (partial(i8, xi, wi), np.array_equal(i8(xi, wi), want_i))
        for name, kernel in zip(("w8a8", "w8a7"), quantized):
            packed = kernel.pack("w", wf)
            got_f = kernel(xf, packed)
            ok = _close(got_f, want_f) and np.array_equal(got_f, first.setdefault(name, got_f))
            out[f"ours {name}{tag}"] = (partial(kernel, xf, packed), ok)
    xt, wt = torch.from_numpy(xi), torch.from_numpy(np.ascontiguousarray(wi.T))
    out["torch _int_mm"] = (lambda: torch._int_mm(xt, wt), np.array_equal(torch._int_mm(xt, wt).numpy(), want_i))
    xft = torch.from_numpy(xf)
    for engine in ("fbgemm", "x86"):
        layer = _fbgemm(wf, engine)
        out[f"{engine} dynamic linear"] = (
            partial(_on, engine, layer, xft),
            _close(_on(engine, layer, xft).numpy(), want_f),
        )
    return out


def _on(engine: str, layer: Any, x: Any) -> Any:
    import torch

    torch.backends.quantized.engine = engine
    return layer(x)


def _close(got: Array, want: Array) -> bool:
    return bool(np.max(np.abs(got - want)) <= PEER_RTOL * np.max(np.abs(want)))


def interleaved(named: dict[str, Callable[[], Any]], rounds: int, burst: float) -> dict[str, float]:
    """Each call's minimum time (s) over `rounds` rounds of `burst` seconds of each call."""
    best = dict.fromkeys(named, float("inf"))
    for _ in range(rounds):
        for name, call in named.items():
            stop = time.perf_counter() + burst
            while True:
                t0 = time.perf_counter()
                call()
                t1 = time.perf_counter()
                best[name] = min(best[name], t1 - t0)
                if t1 > stop:
                    break
    return best


def measure(shape: tuple[int, int, int], ab: bool, rounds: int, burst: float, timed: bool) -> dict[str, Any]:
    m, n, k = shape
    checked = calls(m, n, k, ab)
    row: dict[str, Any] = {"m": m, "n": n, "k": k, "ok": {name: ok for name, (_, ok) in checked.items()}}
    if timed:
        with library_threads(1):
            stoicc_py.set_threads(1)
            best = interleaved({name: call for name, (call, _) in checked.items()}, rounds, burst)
        row["min_ms"] = {name: s * 1e3 for name, s in best.items()}
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """Minimum ms per call, and our kernels' ratios (peer time over ours: above 1 we are faster)."""
    names = list(rows[0]["min_ms"])
    head = ["M x N x K", *names, "i8 / _int_mm", "w8a8 / best fbgemm", "w8a7 / best fbgemm"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r["min_ms"]
        fb = min(t["fbgemm dynamic linear"], t["x86 dynamic linear"])
        cells = [f"{r['m']}x{r['n']}x{r['k']}", *(f"{t[n]:.3f}" for n in names)]
        cells += [f"{t['torch _int_mm'] / t['ours i8']:.2f}", *(f"{fb / t[f'ours {q}']:.2f}" for q in ("w8a8", "w8a7"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shape(text: str) -> tuple[int, int, int]:
    m, n, k = (int(d) for d in text.split("x"))
    return m, n, k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ab", action="store_true", help="also our kernels without the packed-panel path")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--burst", type=float, default=0.05, help="seconds of each call per round")
    parser.add_argument("--shapes", help="MxNxK,... (default: SmolLM2's and 1024^3)")
    parser.add_argument("--smoke", action="store_true", help="one tiny shape, correctness only")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    if args.shapes:
        shapes = [_shape(s) for s in args.shapes.split(",")]
    rows = [measure(s, args.ab, args.rounds, args.burst, not args.smoke) for s in shapes]
    print(json.dumps(rows, indent=1) if args.smoke else table(rows))
    if args.json:
        write_json(args.json, {"results": rows})
    raise SystemExit(0 if all(all(r["ok"].values()) for r in rows) else 1)


if __name__ == "__main__":
    main()
