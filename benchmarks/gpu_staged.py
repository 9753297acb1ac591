"""Variants of the staged schedule (backends/gpu/staged.py) side by side on the device:
4 or 8 warps a block (128 or 256 rows of x), stages, the launch order's groups and the
fragments read across k-tiles (StagedConfig), for dense, 2:4 and hybrid 50% f16 weights
at N = K = size and M rows, against cuBLAS (`F.linear`); each result checked against
torch's (`err`), and each variant on ragged shapes (M = 130 and 300, N = 200-264, K = 200-208,
hybrid tiles [128, 64] of 2:4, dense and empty: `ragged err`).

    python benchmarks/gpu_staged.py [--sizes 4096] [--rows 4096] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.backends.gpu import driver
from stoicc_py.backends.gpu.staged import StagedConfig, shared_bytes, split_spec, staged_ir
from stoicc_py.backends.gpu.target import emit_ptx
from stoicc_py.benchmarks.gpu import error, formats, source, timed, torch_on_device, write_rows
from stoicc_py.codec.nm import NMCodec
from stoicc_py.gpu import GpuKernel, GpuWeight, staged_launch

_C = StagedConfig
VARIANTS = {
    "dense_f16": [(4, _C()), (4, _C(pipelined=True)), (4, _C(3, 16, True)), (8, _C()), (8, _C(pipelined=True)), (8, _C(group=16)),
                  (8, _C(3, 16, True)), (8, _C(4, 16, True))],
    "sparse_f16": [(4, _C()), (4, _C(3, 16, True)), (8, _C(group=16)), (8, _C(3, 16, True))],
    "hybrid_f16": [(4, _C()), (4, _C(3, 16, True)), (8, _C(group=16)), (8, _C(3, 16, True))],
}  # fmt: skip
"""(warps, config) per kernel: the first is the schedule before config_for (but for hybrid
weights' tile-map entries loaded a k-tile ahead); config_for's is among them."""


def launcher(kernel: GpuKernel, warps: int, config: StagedConfig, x: Any, w: Any, y: Any) -> Any:
    """A launch of the variant into y."""
    m = x.shape[0]
    spec = split_spec(replace(kernel.schedule(m), warps=warps), m, config)
    function = driver.Module(emit_ptx(staged_ir(spec, config))).function(spec.name)
    driver.allow_shared(function, shared_bytes(spec, config))
    weight = [a.ptr for a in w.arrays] if isinstance(w, GpuWeight) else [w.data_ptr()]  # packed, or a dense tensor
    return staged_launch(function, spec, config, [x.data_ptr(), *weight, y.data_ptr()], m)


RAGGED = """
kernel dense_f16(x: f16[M, 200], w: f16[264, 200]) -> f16[M, 264] { return linear(x, w) }
kernel sparse_f16(x: f16[M, 208], w: f16[200, 208] @ nm(2, 4)) -> f16[M, 200] { return linear(x, w) }
kernel hybrid_f16(x: f16[M, 200], w: f16[264, 200] @ hybrid(tile=[128, 64], formats=[dense, nm(2, 4)])) -> f16[M, 264] {
  return linear(x, w)
}
"""


def ragged_weight(name: str, n: int, k: int, rng: np.random.Generator, tile_cols: int = 64) -> Any:
    """A random weight; 2:4 pruned, or [128, tile_cols] tiles of 2:4, dense and zero in turn."""
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    if name == "sparse_f16":
        return NMCodec(2, 4, k).prune(w)
    if name == "hybrid_f16":
        for i, (r, c) in enumerate((r, c) for r in range(0, n, 128) for c in range(0, k, tile_cols)):
            block = w[r : r + 128, c : c + tile_cols]
            whole = block.shape[1] // 4 * 4
            if i % 3 == 0:
                block[:, :whole], block[:, whole:] = NMCodec(2, 4, whole).prune(block[:, :whole]), 0
            elif i % 3 == 2:
                block[:] = 0
    return w


def ragged_error(program: Any, name: str, warps: int, config: StagedConfig, torch: Any) -> float:
    """The variant's largest error against torch over calls of 130 and 300 rows."""
    kernel = program.kernels[name]
    assert isinstance(kernel, GpuKernel)
    w = ragged_weight(name, kernel.spec.n, kernel.spec.k, np.random.default_rng(1))
    wt = torch.from_numpy(w).cuda().half()
    wd = wt if name == "dense_f16" else kernel.to_device("w", w)
    worst = 0.0
    for m in (130, 300):
        x = torch.randn(m, kernel.spec.k, device="cuda").half()
        y = torch.full((m, kernel.spec.n), float("nan"), device="cuda", dtype=torch.float16)
        launcher(kernel, warps, config, x, wd, y)()
        worst = max(worst, error(y, torch.nn.functional.linear(x, wt)))
    return worst


def measure(size: int, m: int, torch: Any) -> list[dict[str, Any]]:
    program = stoicc_py.compile(source(size, size), target="gpu")
    weights = formats(size)
    x = torch.randn(m, size, device="cuda").half()
    ragged = stoicc_py.compile(RAGGED, target="gpu")
    rows = []
    for name, w in weights.items():
        kernel = program.kernels[name]
        assert isinstance(kernel, GpuKernel)
        wt = torch.from_numpy(w).cuda().half()
        want = torch.nn.functional.linear(x, wt)
        cublas = timed(partial(torch.nn.functional.linear, x, wt), torch)
        wd = wt if name == "dense_f16" else kernel.to_device("w", w)
        for warps, config in VARIANTS[name]:
            y = torch.empty(m, size, device="cuda", dtype=torch.float16)
            launch = launcher(kernel, warps, config, x, wd, y)
            us = timed(launch, torch)
            row = {"kernel": name, "N=K": size, "M": m, "warps": warps, **config.__dict__, "us": us,
                   "cublas us": cublas, "err": error(y, want),
                   "ragged err": ragged_error(ragged, name, warps, config, torch)}  # fmt: skip
            print(f"{name} {size} M={m} warps={warps} {config}: {us:8.1f} us ({cublas / us:5.1%} of cuBLAS "
                  f"{cublas:.1f}) err {row['err']:.1e} ragged {row['ragged err']:.1e}", flush=True)  # fmt: skip
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4096")
    parser.add_argument("--rows", default="4096")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if (torch := torch_on_device("benchmarks/gpu_staged.py")) is None:
        return 1
    rows = [r for s in args.sizes.split(",") for m in args.rows.split(",") for r in measure(int(s), int(m), torch)]
    write_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
