"""Variants of the staged wgmma kernel side by side on the device, through GpuKernel
calls: config_for's StagedConfig with one field set to each of `--values` (by default
clusters of 1, 2 and 4 blocks: x's k-tile multicast by TMA to every block of a cluster;
or the launch's groups, the stages, ...), for 2:4, hybrid 50% and dense f16 weights at
N = K = size and M rows, against torch's semi-structured 2:4 path (2:4) and cuBLAS (the
others). The minimum of `--rounds` interleaved rounds, each result checked against
torch's (max |ours - torch| / max |torch| < 1e-2). A value that a kernel does not take
(a ValueError where it is built: stages past shared memory, say) is left out of its row.

    python benchmarks/gpu_variants.py [--field cluster] [--values 1,2,4] [--kernels sparse_f16,...]
        [--sizes 4096,8192] [--rows 2048,4096,8192] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import stoicc_py
from stoicc_py import gpu
from stoicc_py.backends.gpu import driver, staged
from stoicc_py.backends.gpu.kernel import GemmSpec
from stoicc_py.backends.gpu.staged import StagedConfig
from stoicc_py.benchmarks.gpu import error, formats, source, timed, torch_on_device, write_rows
from stoicc_py.gpu import GpuKernel

KERNELS = ("sparse_f16", "hybrid_f16", "dense_f16")


def _with(default: Callable[[GemmSpec], StagedConfig], field: str, value: int, spec: GemmSpec) -> StagedConfig:
    return replace(default(spec), **{field: value})  # type: ignore[arg-type]  # a field of int or bool


def measure(size: int, rows: tuple[int, ...], field: str, values: tuple[int, ...], kernels: tuple[str, ...],
            rounds: int, torch: Any) -> list[dict[str, Any]]:  # fmt: skip
    linear = torch.nn.functional.linear
    program = stoicc_py.compile(source(size, size), target="gpu")
    every = formats(size)
    weights = {name: every[name] for name in kernels}
    peers = {name: torch.sparse.to_sparse_semi_structured(torch.from_numpy(w).cuda().half())
             for name, w in weights.items() if name == "sparse_f16"}  # fmt: skip
    default = staged.config_for
    results = []
    for m in rows:
        x = torch.randn(m, size, device="cuda").half()
        for name, w in weights.items():
            kernel, dense = program.kernels[name], torch.from_numpy(w).cuda().half()
            assert isinstance(kernel, GpuKernel)
            w_device, want = kernel.to_device("w", w), linear(x, dense)
            best = dict.fromkeys(values, float("inf"))
            peer = float("inf")
            try:
                for _ in range(rounds):
                    peer = min(peer, timed(partial(linear, x, peers.get(name, dense)), torch))
                    for value in list(best):
                        staged.config_for = gpu.config_for = partial(_with, default, field, value)
                        kernel._functions.clear()  # loaded functions are kept per spec, not per config
                        try:
                            y, launch = kernel.prepare(x, w_device)
                        except ValueError as refused:
                            print(f"{name} {size}^2 M={m} {field}={value}: {refused}", flush=True)
                            del best[value]
                            continue
                        best[value] = min(best[value], timed(launch, torch))
                        if (err := error(y, want)) >= 1e-2:
                            raise AssertionError(f"{name} {size}^2 M={m} {field}={value}: error {err:.1e}")
            finally:
                staged.config_for = gpu.config_for = default
                kernel._functions.clear()
            row = {"kernel": name, "size": size, "m": m, "peer_us": peer, **{f"{field}{v}_us": t for v, t in best.items()}}
            print(f"{name} {size}^2 M={m}: " + "  ".join(f"{field}={v} {t:7.1f}" for v, t in best.items())
                  + f"  {'torch 2:4' if name in peers else 'cuBLAS'} {peer:7.1f} us", flush=True)  # fmt: skip
            results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--field", default="cluster", help="the StagedConfig field that varies")
    parser.add_argument("--values", default="1,2,4", help="its values")
    parser.add_argument("--kernels", default=",".join(KERNELS), help="of " + ", ".join(KERNELS))
    parser.add_argument("--sizes", default="4096,8192", help="N = K values")
    parser.add_argument("--rows", default="2048,4096,8192", help="M values (past 512: 8-warp blocks)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    if args.field not in StagedConfig.__dataclass_fields__ or not set(args.kernels.split(",")) <= set(KERNELS):
        parser.error(f"--field is one of {', '.join(StagedConfig.__dataclass_fields__)}; --kernels of {', '.join(KERNELS)}")
    if (torch := torch_on_device("benchmarks/gpu_variants.py")) is None:
        return 1
    print(f"device: {driver.device_name()} (torch {torch.__version__})")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += measure(size, tuple(int(m) for m in args.rows.split(",")), args.field,
                        tuple(int(v) for v in args.values.split(",")), tuple(args.kernels.split(",")), args.rounds, torch)  # fmt: skip
    write_rows(args.json, rows, field=args.field)
    return 0

if __name__ == "__main__":
    sys.exit(main())
