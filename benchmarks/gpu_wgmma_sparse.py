"""2:4 and hybrid weights through the staged schedule's wgmma variant (wgmma.sp for 2:4
tiles, StagedConfig.wgmma, sm_90a) on the device, in one run: every variant's PTX built
beforehand in a pool of processes, then through `ptxas -arch=sm_90a -v` and `cuobjdump -sass`
(HGMMA counted, the sparse ones apart: the tensor cores' Hopper path; metadata registers
written under a running group, backends/gpu/sass.py), checked (each variant in a process of
its own: a fault or a hang ends only its CUDA context) against float64 on fresh random data
(outputs poisoned with NaN first) at 4096^3 and ragged M, N and K (f16 and bf16; hybrid
tiles 128 wide, an odd k-tile count too), and timed in interleaved rounds (the minimum of
each) against cuBLAS dense (`F.linear`), our dense default (wgmma) and torch's
semi-structured path (`to_sparse_semi_structured`); hybrid 50% (128 x 128 tiles, a
checkerboard of dense and 2:4) also on hybrid weights of one format's tiles. The sparsity
selector is tried both ways (SPARSITY_SELECTOR: lanes 4g + 2 and 4g + 3 hold the same words,
so both must pass).

    python benchmarks/gpu_wgmma_sparse.py [--out DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.backends.gpu import driver, staged
from stoicc_py.backends.gpu.kernel import GemmSpec
from stoicc_py.backends.gpu.staged import (
    StagedConfig,
    config_for,
    shared_bytes,
    split_spec,
    staged_arch,
    staged_ir,
    staged_spec,
)
from stoicc_py.backends.gpu.target import emit_ptx
from stoicc_py.benchmarks.gpu import error, half_pruned, timed
from stoicc_py.benchmarks.gpu_staged import ragged_weight
from stoicc_py.benchmarks.gpu_wgmma import sass_report
from stoicc_py.codec.nm import NMCodec
from stoicc_py.gpu import GpuKernel, GpuWeight, staged_launch

_C = StagedConfig
Variant = tuple[str, int | None, StagedConfig | None, int]
VARIANTS: dict[str, Variant] = {
    "dense wg": ("dense", None, None, 0),
    "sp wg": ("nm24", None, None, 0),
    "hyb wg": ("hybrid", None, None, 0),
    "hyb wg4": ("hybrid", 4, _C(6, 16, wgmma=True), 0),
    "sp wg8 s5 sel1": ("nm24", 8, _C(5, 16, wgmma=True, cluster=2), 1),
    "sp wg8 c1": ("nm24", 8, _C(5, 16, wgmma=True), 0),
    "dense c2": ("dense", 8, _C(4, 16, wgmma=True, cluster=2), 0),
    "hyb c1": ("hybrid", 8, _C(4, 16, wgmma=True), 0),
    "hyb c2 p0": ("hybrid", 8, _C(4, 16, wgmma=True, cluster=2, wgmma_pending=0), 0),
}
"""name -> (weight format, warps (None: the default schedule's), config (None: config_for's),
sparsity selector). "sp wg", "hyb wg" and "dense wg" are config_for's (2:4 and hybrid past 512 rows:
8-warp blocks in clusters of 2 that multicast x; split-K where a call's blocks fill less than half
the GPU; "sp wg8 c1" and "hyb c1" the 2:4 and hybrid blocks without clusters, as round 8 and
round 9 ran them (round 10's "hyb c2", hybrid in clusters, is config_for's now); "dense c2": dense
in clusters; "hyb c2 p0": hybrid in clusters with no wgmma group left running, so that its 4 stages
copy 3 k-tiles ahead instead of 2: 1.3-1.4x slower in round 10)."""
CHECKS = {
    "dense": [(4096, 4096, 4096), (130, 264, 200), (300, 200, 208)],
    "nm24": [(4096, 4096, 4096), (130, 264, 208), (300, 200, 208), (257, 136, 80), (40, 1000, 1008)],
    "hybrid": [(4096, 4096, 4096), (130, 264, 200), (300, 264, 200), (300, 264, 1088)],
}
"""(M, N, K) checked per format: ragged M, N and K past the 128 x 256 blocks and the 64-wide k-tiles."""
LAYOUTS = {"dense": "", "nm24": " @ nm(2, 4)", "hybrid": " @ hybrid(tile=[128, 128], formats=[dense, nm(2, 4)])"}
"""Hybrid tiles of 2 k-tiles: consecutive k-tiles through wgmma.sp, as in the timed checkerboard."""
HYBRID_HALVES = {"dense tiles": "dense", "2:4 tiles": "nm24"}
"""Hybrid kernels are also timed on hybrid weights of one format's tiles (the checkerboard's
halves alone), against the dense and 2:4 kernels on the same values."""
TIMES = [(4096, m) for m in (128, 512, 2048, 4096)] + [(8192, m) for m in (2048, 8192)]
"""(N = K, M) timed."""
TOLERANCE = 1e-2


def source(layouts: dict[str, str], shapes: list[tuple[str, str, int, int]]) -> str:
    return "".join(f"kernel {name}(x: {dt}[M, {k}], w: {dt}[{n}, {k}]{layouts[name.split('_')[0]]}) -> {dt}[M, {n}] "
                   "{ return linear(x, w) }\n" for name, dt, n, k in shapes)  # fmt: skip


def schedule(kernel: GpuKernel, m: int, variant: Variant) -> tuple[GemmSpec, StagedConfig]:
    """The variant's spec and config for a call of m rows."""
    _, warps, config, _ = variant
    spec = kernel.schedule(m)
    config = config or config_for(spec)
    return split_spec(staged_spec(spec, m, config, warps), m, config), config


def build(job: tuple[GemmSpec, StagedConfig, int]) -> str:
    """The PTX of one (spec, config, selector): run in the pool, before CUDA starts."""
    spec, config, selector = job
    staged.SPARSITY_SELECTOR = selector
    return emit_ptx(staged_ir(spec, config), arch=staged_arch(spec, config))


class Built:
    """A variant's kernel of one spec, loaded."""

    def __init__(self, spec: GemmSpec, config: StagedConfig, ptx: str):
        self.spec, self.config, self.ptx = spec, config, ptx
        self.function = driver.Module(ptx).function(spec.name)
        driver.allow_shared(self.function, shared_bytes(spec, config))

    def launcher(self, x: Any, weight: list[int], y: Any) -> Any:
        return staged_launch(self.function, self.spec, self.config, [x.data_ptr(), *weight, y.data_ptr()], x.shape[0])


class Bench:
    """The programs, weights and built kernels of one run."""

    def __init__(self, out: Path):
        self.out = out
        shapes = [(f"{f}_{dt}_{i}", dt, n, k) for f, checks in CHECKS.items() for i, (_, n, k) in enumerate(checks)
                  for dt in ("f16", "bf16")]  # fmt: skip
        self.checks = stoicc_py.compile(source(LAYOUTS, shapes), target="gpu")
        timed_shapes = [(f"{f}_f16_{size}", "f16", size, size) for f in LAYOUTS for size in {s for s, _ in TIMES}]
        self.timed = stoicc_py.compile(source(LAYOUTS, timed_shapes), target="gpu")
        self.jobs: dict[tuple[GemmSpec, StagedConfig, int], str] = {}
        self.weights: dict[int, Any] = {}
        self.check_weights: dict[tuple[str, str, int], Any] = {}

    def kernel(self, name: str) -> GpuKernel:
        program = self.timed if name.split("_")[-1] in ("4096", "8192") else self.checks
        kernel = program.kernels[name]
        assert isinstance(kernel, GpuKernel)
        return kernel

    def plan(self) -> None:
        """Every (spec, config, selector) the run loads, built in a pool of processes."""
        for variant in VARIANTS.values():
            fmt = variant[0]
            for i, (m, _, _) in enumerate(CHECKS[fmt]):
                for dt in ("f16", "bf16"):
                    self.jobs[(*schedule(self.kernel(f"{fmt}_{dt}_{i}"), m, variant), variant[3])] = ""
            for size, m in TIMES:
                self.jobs[(*schedule(self.kernel(f"{fmt}_f16_{size}"), m, variant), variant[3])] = ""
        jobs = list(self.jobs)
        with multiprocessing.get_context("fork").Pool() as pool:
            for job, ptx in zip(jobs, pool.map(build, jobs)):
                self.jobs[job] = ptx

    def load(self, kernel: GpuKernel, m: int, variant: Variant) -> Built:
        spec, config = schedule(kernel, m, variant)
        return Built(spec, config, self.jobs[(spec, config, variant[3])])


def check_weight(bench: Bench, fmt: str, dt: str, i: int, torch: Any) -> tuple[Any, list[int]]:
    """Check i's random weight of `fmt` (2:4 pruned, or hybrid tiles of 2:4, dense and zero)
    in dtype dt, as a torch tensor and packed as the kernel reads it (cached)."""
    key = (fmt, dt, i)
    if key not in bench.check_weights:
        _, n, k = CHECKS[fmt][i]
        w = ragged_weight(
            {"nm24": "sparse_f16", "hybrid": "hybrid_f16"}.get(fmt, "dense"), n, k, np.random.default_rng(i), 128
        )
        wt = torch.from_numpy(w).cuda().to(torch.float16 if dt == "f16" else torch.bfloat16)
        pointers, packed = (
            ([wt.data_ptr()], None)
            if fmt == "dense"
            else uploaded(bench.kernel(f"{fmt}_{dt}_{i}"), wt.float().cpu().numpy())
        )
        bench.check_weights[key] = (wt, pointers, packed)
    wt, pointers, _ = bench.check_weights[key]
    return wt, pointers


def check(bench: Bench, variant: Variant, torch: Any) -> dict[str, float]:
    """The variant's worst relative error against float64 per (M, N, K, dtype)."""
    fmt = variant[0]
    errors = {}
    for i, (m, n, k) in enumerate(CHECKS[fmt]):
        for dt, tt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
            wt, pointers = check_weight(bench, fmt, dt, i, torch)
            x = torch.randn(m, k, device="cuda").to(tt)
            y = torch.full((m, n), float("nan"), device="cuda", dtype=tt)
            bench.load(bench.kernel(f"{fmt}_{dt}_{i}"), m, variant).launcher(x, pointers, y)()
            torch.cuda.synchronize()
            want = x.double() @ wt.double().T
            errors[f"{m}x{n}x{k} {dt}"] = error(y.double(), want) if not y.isnan().any() else float("nan")
    return errors


def verify(bench: Bench, name: str, report: dict[str, Any], torch: Any) -> None:
    """Variant `name`'s ptxas and SASS report and its errors, into report["variants"]."""
    variant = VARIANTS[name]
    entry: dict[str, Any] = {"format": variant[0], "warps": variant[1], "selector": variant[3],
                             "config": variant[2].__dict__ if variant[2] else "config_for"}  # fmt: skip
    try:
        spec, config = schedule(bench.kernel(f"{variant[0]}_f16_0"), CHECKS[variant[0]][0][0], variant)  # 4096^3
        ptx = bench.jobs[(spec, config, variant[3])]
        try:
            entry["sass"] = sass_report(ptx, staged_arch(spec, config), bench.out / "ptxas.log", f"{name}: {spec}")
        except OSError as e:  # no ptxas or cuobjdump: the checks still run
            entry["sass"] = f"{type(e).__name__}: {e}"
        entry["errors"] = check(bench, variant, torch)
        entry["correct"] = all(e < TOLERANCE for e in entry["errors"].values())  # NaN: False
    except Exception as e:  # a variant that fails to build or launch is a result too
        entry["failure"] = f"{type(e).__name__}: {e}"[:2000]
        entry["correct"] = False
    report["variants"][name] = entry


def uploaded(kernel: GpuKernel, w: Any) -> tuple[list[int], GpuWeight]:
    """A 2:4 or hybrid weight packed and uploaded: its arrays' pointers in the kernel's order (and the arrays)."""
    weight = kernel.to_device("w", w)
    assert isinstance(weight, GpuWeight)
    return [a.ptr for a in weight.arrays], weight


def weights(bench: Bench, size: int, torch: Any) -> tuple[dict[str, Any], dict[str, list[int]], Any]:
    """The timed weights at N = K = size (cached): torch's f16 tensors (dense, 2:4, hybrid
    50%, torch's semi-structured 2:4) and ours packed, as device pointers."""
    if size not in bench.weights:
        rng = np.random.default_rng(0)
        w32 = (rng.standard_normal((size, size), np.float32) / np.sqrt(size)).astype(np.float32)
        host = {"dense": w32, "nm24": NMCodec(2, 4, size).prune(w32), "hybrid": half_pruned(w32)}
        tensors: dict[str, Any] = {f: torch.from_numpy(w).cuda().half() for f, w in host.items()}
        try:
            from torch.sparse import to_sparse_semi_structured

            tensors["torch 2:4"] = to_sparse_semi_structured(tensors["nm24"])
        except (RuntimeError, ValueError, ImportError) as err:
            print(f"torch 2:4: {type(err).__name__}: {err}", flush=True)
        packed = {f: uploaded(bench.kernel(f"{f}_f16_{size}"), host[f]) for f in ("nm24", "hybrid")}
        for part, w in HYBRID_HALVES.items():  # a hybrid weight of one format's tiles only
            packed[part] = uploaded(bench.kernel(f"hybrid_f16_{size}"), host[w])
        pointers = {"dense": [tensors["dense"].data_ptr()], **{f: p[0] for f, p in packed.items()}}
        bench.weights[size] = (tensors, pointers, packed)
    return bench.weights[size]


def timings(bench: Bench, size: int, m: int, names: list[str], rounds: int, torch: Any) -> dict[str, Any]:
    """Microseconds per call of each at N = K = size, M = m: the minimum of interleaved rounds."""
    tensors, pointers, _ = weights(bench, size, torch)
    x = torch.randn(m, size, device="cuda").half()
    y = torch.empty(m, size, device="cuda", dtype=torch.float16)
    launches: dict[str, Any] = {"cublas": partial(torch.nn.functional.linear, x, tensors["dense"])}
    if "torch 2:4" in tensors:
        launches["torch 2:4"] = partial(torch.nn.functional.linear, x, tensors["torch 2:4"])
    for name in names:
        fmt = VARIANTS[name][0]
        built = bench.load(bench.kernel(f"{fmt}_f16_{size}"), m, VARIANTS[name])
        launches[name] = built.launcher(x, pointers[fmt], y)
        for part in HYBRID_HALVES if fmt == "hybrid" else ():
            launches[f"{name}, {part}"] = built.launcher(x, pointers[part], y)
    best = {name: float("inf") for name in launches}
    for _ in range(rounds):  # interleaved rounds: each once a round
        for name, launch in launches.items():
            best[name] = min(best[name], timed(launch, torch))
    return {"N=K": size, "M": m, "us": best}


MODULE = "stoicc_py.benchmarks.gpu_wgmma_sparse"
VERIFY_TIMEOUT_S = 90
VERIFY_PARALLEL = 4
"""Each variant's checks run in a process of their own (a kernel that faults or hangs ends
that CUDA context, not the run), a few at a time, at most VERIFY_TIMEOUT_S each."""


def verified(out: Path, names: list[str]) -> dict[str, Any]:
    """Each variant's report from a `--verify NAME` process, in VARIANTS' order."""

    def one(name: str) -> dict[str, Any]:
        path = out / f"verify-{list(VARIANTS).index(name)}.json"
        command = [sys.executable, "-P", "-m", MODULE, "--out", str(out), "--verify", name]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"failure": f"no result in {VERIFY_TIMEOUT_S} s (a hang?)", "correct": False}
        if done.returncode or not path.exists():
            return {"failure": f"rc {done.returncode}: {done.stderr[-1500:]}", "correct": False}
        entry: dict[str, Any] = json.loads(path.read_text())
        return entry

    with ThreadPoolExecutor(VERIFY_PARALLEL) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--verify", help="(internal) check one variant with the run's PTX, into --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(out)
    if args.verify:
        bench.jobs = pickle.loads((out / "ptx.pickle").read_bytes())
        import torch

        torch.cuda.init()
        report: dict[str, Any] = {"variants": {}}
        verify(bench, args.verify, report, torch)
        (out / f"verify-{list(VARIANTS).index(args.verify)}.json").write_text(
            json.dumps(report["variants"][args.verify])
        )
        return 0
    bench.plan()  # before CUDA: the pool forks
    (out / "ptx.pickle").write_bytes(pickle.dumps(bench.jobs))
    variants = verified(out, list(VARIANTS))
    for name, entry in variants.items():
        print(name, json.dumps({k: v for k, v in entry.items() if k != "config"}), flush=True)
    import torch

    torch.cuda.init()
    report = {"device": driver.device_name(), "variants": variants, "times": []}
    (out / "gpu_wgmma_sparse.json").write_text(json.dumps(report, indent=1))
    timed_variants = [n for n, e in variants.items() if e["correct"] and "sel1" not in n]
    for size, m in TIMES:
        try:
            report["times"].append(timings(bench, size, m, timed_variants, args.rounds, torch))
        except Exception as e:
            report["times"].append({"N=K": size, "M": m, "failure": f"{type(e).__name__}: {e}"[:500]})
        print(json.dumps(report["times"][-1]), flush=True)
        (out / "gpu_wgmma_sparse.json").write_text(json.dumps(report, indent=1))
    summary(report)
    return 0


def summary(report: dict[str, Any]) -> None:
    correct = ", ".join(f"{n}: {e['correct']}" for n, e in report["variants"].items())
    print(f"\n{report['device']}: correct = {correct}")
    rows = [r for r in report["times"] if "us" in r]
    if not rows:
        return
    names = list(rows[0]["us"])
    print("N=K   M     " + " ".join(f"{n[:11]:>11}" for n in names) + "   (us)")
    for row in rows:
        print(f"{row['N=K']:4} {row['M']:5} " + " ".join(f"{row['us'].get(n, float('nan')):11.1f}" for n in names))


if __name__ == "__main__":
    sys.exit(main())
