"""bf16 dense GEMM, 1 thread: our bf16 `linear` (AMX tiles where the host has them and
the OS grants them, passes/tdsl_amx.py; else bf16 widened into the f32 microkernel)
against PyTorch's bf16 and f32 `F.linear` (oneDNN: AMX or AVX-512 BF16 where present)
and our f32 kernel, on SmolLM2-135M's shapes and 1024^3 (`python benchmarks/bf16_gemm.py`).
Each result is checked against numpy on the same bf16 values first."""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

import stoicc_py
from stoicc_py.arrays import bf16_dtype
from stoicc_py.backends.llvm.target import host_features
from stoicc_py.benchmarks.measure import library_threads, time_calls

SHAPES = [(m, n, k) for m in (64, 128, 512) for n, k in ((576, 576), (1536, 576), (576, 1536))] + [(1024, 1024, 1024)]


def _kernel(dtype: str, n: int, k: int) -> stoicc_py.Kernel:
    source = f"kernel k(x: {dtype}[M, {k}], w: {dtype}[{n}, {k}]) -> {dtype}[M, {n}] {{ return linear(x, w) }}"
    return stoicc_py.compile(source).k


def run(shapes: list[tuple[int, int, int]], repeat: int, budget: float) -> list[dict[str, float]]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    rows = []
    for m, n, k in shapes:
        rng = np.random.default_rng(0)
        x, w = rng.standard_normal((m, k)).astype(bf16_dtype()), rng.standard_normal((n, k)).astype(bf16_dtype())
        ours, ours_f32 = _kernel("bf16", n, k), _kernel("f32", n, k)
        ours.threads = ours_f32.threads = 1
        exact = x.astype(np.float64) @ w.astype(np.float64).T
        y = ours(x, w)
        assert isinstance(y, np.ndarray) and np.abs(y.astype(np.float64) - exact).max() <= 2.0**-7 * np.abs(exact).max()
        xf, wf = x.astype(np.float32), w.astype(np.float32)
        tx, tw = torch.from_numpy(xf).bfloat16(), torch.from_numpy(wf).bfloat16()
        txf, twf = torch.from_numpy(xf), torch.from_numpy(wf)
        with library_threads(1):
            times = {
                "ours_bf16": time_calls(partial(ours, x, w), repeat, budget, None).min_s,
                "ours_f32": time_calls(partial(ours_f32, xf, wf), repeat, budget, None).min_s,
                "torch_bf16": time_calls(partial(F.linear, tx, tw), repeat, budget, None).min_s,
                "torch_f32": time_calls(partial(F.linear, txf, twf), repeat, budget, None).min_s,
            }
        rows.append({"m": m, "n": n, "k": k} | times)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--shapes", help="MxNxK,... (default: SmolLM2's at M = 64, 128, 512, and 1024^3)")
    args = parser.parse_args()
    shapes = [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")] if args.shapes else SHAPES
    amx = {"amx-tile", "amx-bf16"} <= host_features()
    print(f"# {time.strftime('%Y-%m-%d')}, 1 thread, AMX {'used' if amx else 'absent'}; ms (GFLOP/s)")
    print("| M×N×K | ours bf16 | ours f32 | torch bf16 | torch f32 | ours bf16 / torch bf16 |")
    print("|---|---|---|---|---|---|")
    for r in run(shapes, args.repeat, args.budget):  # type: ignore[arg-type]
        cells = " | ".join(_cell(r, name) for name in ("ours_bf16", "ours_f32", "torch_bf16", "torch_f32"))
        print(f"| {r['m']}×{r['n']}×{r['k']} | {cells} | {r['torch_bf16'] / r['ours_bf16']:.2f}× |")


def _cell(row: dict[str, float], name: str) -> str:
    seconds = row[name]
    return f"{seconds * 1e3:.3f} ({2 * row['m'] * row['n'] * row['k'] / seconds / 1e9:.0f})"


if __name__ == "__main__":
    main()
