"""The SM clock and power of each product under load: each kernel launched back to back
for `--seconds` (a synchronize every 20 launches) while `nvidia-smi` samples the clock,
power and temperature every 50 ms: our 2:4, dense and hybrid 50% f16 kernels and torch's
2:4 path and cuBLAS at N = K = size, M rows. A product that is power-bound runs at the
card's power limit with its clock below the maximum; one that spends less energy per
product keeps a higher clock (README, round 20). torch's 2:4 calls are host-bound back to
back (their Python dispatch), so their clock and power are not comparable.

    python benchmarks/gpu_clocks.py [--size 8192] [--rows 4096] [--seconds 2.5] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from statistics import median
from typing import Any

import stoicc_py
from stoicc_py.backends.gpu import driver
from stoicc_py.benchmarks.gpu import formats, source, torch_on_device, write_rows
from stoicc_py.gpu import GpuKernel

QUERY = ("clocks.sm", "power.draw", "temperature.gpu")
SETTLE = 0.4
"""Seconds of samples left out at the start of each kernel's run."""


def launches(size: int, m: int, torch: Any) -> dict[str, Callable[[], object]]:
    program = stoicc_py.compile(source(size, size), target="gpu")
    weights = formats(size)
    x = torch.randn(m, size, device="cuda").half()
    runs: dict[str, Callable[[], object]] = {}
    for name, w in weights.items():
        kernel = program.kernels[name]
        assert isinstance(kernel, GpuKernel)
        runs[f"ours {name}"] = kernel.prepare(x, kernel.to_device("w", w))[1]
    sparse = torch.sparse.to_sparse_semi_structured(torch.from_numpy(weights["sparse_f16"]).cuda().half())
    dense = torch.from_numpy(weights["dense_f16"]).cuda().half()
    runs["torch 2:4"] = lambda: torch.nn.functional.linear(x, sparse)
    runs["cuBLAS"] = lambda: torch.nn.functional.linear(x, dense)
    return runs


def under_load(launch: Callable[[], object], seconds: float, torch: Any) -> dict[str, float]:
    """µs a launch, and the median (and least) clock, median power and last temperature sampled meanwhile."""
    launch()
    torch.cuda.synchronize()
    smi = subprocess.Popen(["nvidia-smi", f"--query-gpu={','.join(QUERY)}", "--format=csv,noheader,nounits", "-lms", "50"],
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(SETTLE)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            launch()
        count += 20
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    smi.terminate()
    samples = [[float(v) for v in line.split(",")] for line in smi.communicate()[0].splitlines() if line.count(",") == 2]
    samples = samples[int(SETTLE / 0.05) :] or [[0.0, 0.0, 0.0]]
    clocks, power = [s[0] for s in samples], [s[1] for s in samples]
    return {"us": elapsed / count * 1e6, "mhz": median(clocks), "mhz_least": min(clocks), "watts": median(power),
            "celsius": samples[-1][2]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192, help="N = K")
    parser.add_argument("--rows", type=int, default=4096, help="M")
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    if (torch := torch_on_device("benchmarks/gpu_clocks.py")) is None:
        return 1
    print(f"device: {driver.device_name()} (torch {torch.__version__})")
    rows, runs = [], launches(args.size, args.rows, torch)
    for round_ in range(args.rounds):
        for name, launch in runs.items():
            row = {"kernel": name, "round": round_, **under_load(launch, args.seconds, torch)}
            print(f"round {round_} {name:16s} {row['us']:8.1f} us a launch  {row['mhz']:5.0f} MHz (least "
                  f"{row['mhz_least']:.0f})  {row['watts']:4.0f} W  {row['celsius']:.0f} C", flush=True)  # fmt: skip
            rows.append(row)
            time.sleep(1.0)
    write_rows(args.json, rows, size=args.size, m=args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
