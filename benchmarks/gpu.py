"""The GPU target's products against torch on the same device, timed with CUDA events:
dense f16 and bf16 against cuBLAS (`F.linear`), 2:4 f16 against torch's semi-structured
sparse path (`to_sparse_semi_structured`) and against our dense kernel, hybrid 50%
(128 x 128 tiles, a checkerboard of dense and 2:4) against our dense kernel (and
cuBLAS on the same weight), int4 weight-only (group 128) GEMV against torch's f16 GEMV
of the same (dequantised) weight at M <= 16, for
M = 1, 16, 128, 2048, 4096, 8192 rows of x at N = K = 4096 and 8192. Each of our results is
checked against torch's (the `err` column: max |ours - torch| / max |torch|).

    python benchmarks/gpu.py [--sizes 4096,8192] [--rows 1,16,...] [--tile 32,128] [--json FILE]

Needs torch with CUDA and cuda-python (docs/gpu.md); a few minutes on an H100. Launches
are timed back to back behind a `torch.cuda._sleep` that lets the host queue them all,
so the figures are the GPU's time, not Python's launch overhead (ours and torch's alike).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.backends.gpu import driver
from stoicc_py.codec.nm import NMCodec
from stoicc_py.gpu import GpuKernel, GpuProgram

ROWS = (1, 16, 128, 2048, 4096, 8192)
SIZES = (4096, 8192)
GEMV_ROWS = 16
"""int4 weight-only is timed where it is meant for: calls of at most this many rows (decode)."""
INT4 = "int4(group=128, scale=f16)"
HYBRID_TILE = 128
HYBRID = f"hybrid(tile=[{HYBRID_TILE}, {HYBRID_TILE}], formats=[dense, nm(2, 4)])"


def half_pruned(w: Any) -> Any:
    """w with every other tile (a checkerboard of HYBRID_TILE tiles) pruned to 2:4: hybrid 50%."""
    tiles = w.reshape(w.shape[0] // HYBRID_TILE, HYBRID_TILE, w.shape[1] // HYBRID_TILE, HYBRID_TILE).swapaxes(1, 2)
    out = tiles.copy()
    for r, c in np.ndindex(*tiles.shape[:2]):
        if (r + c) % 2 == 0:
            out[r, c] = NMCodec(2, 4, HYBRID_TILE).prune(tiles[r, c])
    return out.swapaxes(1, 2).reshape(w.shape)


def formats(size: int) -> dict[str, Any]:
    """The benchmarks' f32 weights of N = K = size (seed 0, scaled by 1 / sqrt(K)): dense, pruned
    to 2:4, and hybrid 50% (half_pruned), by the names of source()'s f16 kernels."""
    w32 = (np.random.default_rng(0).standard_normal((size, size), np.float32) / np.sqrt(size)).astype(np.float32)
    return {"dense_f16": w32, "sparse_f16": NMCodec(2, 4, size).prune(w32), "hybrid_f16": half_pruned(w32)}


def timed(launch: Callable[[], None], torch: Any, budget_ms: float = 60.0, most: int = 50) -> float:
    """Microseconds per launch: a first timing sizes the repeats to about `budget_ms`."""
    launch()
    torch.cuda.synchronize()

    def run(count: int) -> float:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(20_000_000)  # ~10 ms of GPU: the host queues every launch meanwhile
        start.record()
        for _ in range(count):
            launch()
        stop.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(stop)) * 1000 / count

    first = run(1)
    return run(int(max(3, min(most, budget_ms * 1000 / max(first, 1.0)))))


def source(n: int, k: int) -> str:
    return (f"kernel dense_f16(x: f16[M, {k}], w: f16[{n}, {k}]) -> f16[M, {n}] {{ return linear(x, w) }}\n"
            f"kernel dense_bf16(x: bf16[M, {k}], w: bf16[{n}, {k}]) -> bf16[M, {n}] {{ return linear(x, w) }}\n"
            f"kernel sparse_f16(x: f16[M, {k}], w: f16[{n}, {k}] @ nm(2, 4)) -> f16[M, {n}] {{ return linear(x, w) }}\n"
            f"kernel hybrid_f16(x: f16[M, {k}], w: f16[{n}, {k}] @ {HYBRID}) -> f16[M, {n}] {{ return linear(x, w) }}\n"
            f"kernel int4_f16(x: f16[M, {k}], w: f16[{n}, {k}] @ {INT4}) -> f16[M, {n}] {{ return linear(x, w) }}\n")  # fmt: skip


def error(got: Any, want: Any) -> float:
    return float((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-30))


def measure_size(size: int, rows: tuple[int, ...], tile: tuple[int, ...], torch: Any) -> list[dict[str, Any]]:
    F = torch.nn.functional
    program = stoicc_py.compile(source(size, size), target="gpu", tile=tile)
    assert isinstance(program, GpuProgram) and all(isinstance(k, GpuKernel) for k in program.kernels.values())
    kernels: dict[str, GpuKernel] = program.kernels  # type: ignore[assignment]  # all tensor-core ones: asserted
    host = formats(size)
    w32, w24, w50 = host["dense_f16"], host["sparse_f16"], host["hybrid_f16"]
    weights = {
        "dense_f16": (torch.from_numpy(w32).cuda().half(), torch.float16),
        "dense_bf16": (torch.from_numpy(w32).cuda().bfloat16(), torch.bfloat16),
        "sparse_f16": (torch.from_numpy(w24).cuda().half(), torch.float16),
        "hybrid_f16": (torch.from_numpy(w50).cuda().half(), torch.float16),  # torch: its dense product
    }
    w4 = program.int4_f16.pack("w", w32)
    weights["int4_f16"] = (torch.from_numpy(w4.dequantize()).cuda().half(), torch.float16)  # torch: f16 GEMV
    packed = {"sparse_f16": w24, "hybrid_f16": w50, "int4_f16": w4}
    # dense weights straight from torch's memory; 2:4 and hybrid ones packed (values, mma.sp metadata) and uploaded
    ours = {name: kernels[name].to_device("w", packed.get(name, w)) for name, (w, _) in weights.items()}
    baselines: dict[str, Any] = {name: w for name, (w, _) in weights.items()}
    try:
        from torch.sparse import to_sparse_semi_structured

        baselines["sparse_f16"] = to_sparse_semi_structured(weights["sparse_f16"][0])
    except (RuntimeError, ValueError, ImportError) as err:
        baselines["sparse_f16"] = f"{type(err).__name__}: {err}"
    results = []
    for m in rows:
        x32 = torch.randn(m, size, device="cuda")
        row: dict[str, Any] = {"N=K": size, "M": m}
        for name, (_, dtype) in weights.items():
            if name == "int4_f16" and m > GEMV_ROWS:
                continue
            x = x32.to(dtype)
            y, launch = kernels[name].prepare(x, ours[name])
            row[f"{name} us"] = timed(launch, torch)
            baseline = baselines[name]
            try:
                if isinstance(baseline, str):
                    raise RuntimeError(baseline)
                row[f"{name} err"] = error(y, F.linear(x, baseline))
                row[f"{name} torch us"] = timed(partial(F.linear, x, baseline), torch)
            except RuntimeError as err:  # torch's semi-structured path refuses some shapes
                row[f"{name} torch"] = str(err).splitlines()[0]
        results.append(row)
        print(format_row(row), flush=True)
    return results


def format_row(row: dict[str, Any]) -> str:
    parts = [f"N=K={row['N=K']:5d} M={row['M']:5d}"]
    dense = row["dense_f16 us"]
    for name in ("dense_f16", "dense_bf16", "sparse_f16", "hybrid_f16", "int4_f16"):
        if f"{name} us" not in row:
            continue
        ours, theirs = row[f"{name} us"], row.get(f"{name} torch us")
        flops = 2 * row["M"] * row["N=K"] ** 2 / ours / 1e6
        text = f"{name}: {ours:9.1f} us {flops:6.1f} TF/s"
        if theirs is not None:
            text += f" (torch {theirs:9.1f} us, x{theirs / ours:5.2f}; err {row[f'{name} err']:.1e})"
        else:
            text += f" (torch: {row.get(f'{name} torch', 'n/a')[:60]})"
        if name in ("sparse_f16", "hybrid_f16"):
            text += f" vs our dense x{dense / ours:5.2f}"
        parts.append(text)
    return " | ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="N = K values")
    parser.add_argument("--rows", default=",".join(map(str, ROWS)), help="M values")
    parser.add_argument("--tile", default="", help="block tile tm,tn (gpu-tile's default: 32,128)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    if (torch := torch_on_device("benchmarks/gpu.py")) is None:
        return 1
    tile = tuple(int(t) for t in args.tile.split(",")) if args.tile else ()
    print(f"device: {driver.device_name()} (torch {torch.__version__}, tile {list(tile) or 'default'})")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += measure_size(size, tuple(int(m) for m in args.rows.split(",")), tile, torch)
    write_rows(args.json, rows, tile=list(tile))
    return 0


def torch_on_device(script: str) -> Any | None:
    """torch, its primary context initialised (ours then retains it), where torch and
    cuda-python both see a CUDA device; else None, after saying why on stderr."""
    try:
        import torch
    except ImportError:
        print(f"{script} compares with torch: install torch with CUDA", file=sys.stderr)
        return None
    if not torch.cuda.is_available() or not driver.available():
        print("no CUDA device (torch and cuda-python must both see one)", file=sys.stderr)
        return None
    torch.cuda.init()
    return torch


def write_rows(path: str | None, rows: list[dict[str, Any]], **extra: Any) -> None:
    """The rows, with the device's name (and `extra`), as JSON at `path` (None: nowhere)."""
    if path:
        with open(path, "w") as f:
            json.dump({"device": driver.device_name(), **extra, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
