"""The staged schedule's wgmma variant (StagedConfig.wgmma, sm_90a) on the device, in one
run: each variant's PTX through `ptxas -arch=sm_90a -v` (registers, spills, wgmma
serialization warnings) and `cuobjdump -sass` (HGMMA counted: the tensor cores' Hopper
path), checked against float64 on fresh random data (outputs poisoned with NaN first) at
4096^3 and ragged shapes, f16 and bf16, and timed against cuBLAS (`F.linear`) and the
mma.sync staged kernel (config_for's) in interleaved rounds (the minimum of each).
The matrix descriptor's leading/stride byte offsets are tried both ways round
(DESCRIPTOR_OFFSETS: only the right one can pass the checks). config_for's dense default
is "wg4 s6 p1" up to WGMMA_WIDE_M rows and "wg auto s4 p1" past them (README, round 6).

    python benchmarks/gpu_wgmma.py [--out DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from stoicc_py.backends.gpu import driver, staged
from stoicc_py.backends.gpu.kernel import GemmSpec
from stoicc_py.backends.gpu.sass import metadata_hazards
from stoicc_py.backends.gpu.staged import StagedConfig, shared_bytes, staged_arch, staged_ir, staged_warps
from stoicc_py.backends.gpu.target import emit_ptx
from stoicc_py.benchmarks.gpu import error, timed
from stoicc_py.gpu import staged_launch

Variant = tuple[int | None, tuple[int, int], StagedConfig, tuple[int, int]]
OFFSETS = staged.DESCRIPTOR_OFFSETS
STAGED = (4, 8)
WGMMA = StagedConfig(4, 16, wide_m=staged.WIDE_M, wgmma=True)
VARIANTS: dict[str, Variant] = {
    "mma.sync": (None, STAGED, StagedConfig(group=16, pipelined=True, wide_m=staged.WIDE_M), OFFSETS),
    "wg auto s4 p1": (None, STAGED, WGMMA, OFFSETS),
    "wg8 s4 p1 g0": (8, STAGED, replace(WGMMA, group=0), OFFSETS),
    "wg8 s4 p0": (8, STAGED, replace(WGMMA, wgmma_pending=0), OFFSETS),
    "wg8 s3 p0": (8, STAGED, replace(WGMMA, stages=3, wgmma_pending=0), OFFSETS),
    "wg4 s6 p1": (4, STAGED, replace(WGMMA, stages=6), OFFSETS),
    "wg4 64x128 s4": (4, (2, 8), WGMMA, OFFSETS),
    "wg4 64x64 s4": (4, (2, 4), WGMMA, OFFSETS),
    "wg8 s4 p1 offsets swapped": (8, STAGED, WGMMA, OFFSETS[::-1]),
}
"""(warps or None for staged_warps', (warp_rows, cols): the block's 16 * 2 * warp_rows weight
rows x 8 * cols * warps / 2 rows of x, config, descriptor offsets); the first is config_for's
mma.sync kernel, the second the wgmma default candidate (4 warps up to WIDE_M rows, 8 past)."""
CHECKS = [(4096, 4096, 4096), (130, 264, 200), (300, 200, 208), (257, 136, 72), (40, 1000, 1000)]
"""(M, N, K) checked: ragged M, N and K past the 128 x 256 blocks and the 64-wide k-tiles."""
TIMES = [(4096, m) for m in (128, 512, 2048, 4096)] + [(8192, m) for m in (2048, 8192)]
"""(N = K, M) timed."""
TOLERANCE = 1e-2


def spec_of(n: int, k: int, dtype: str, m: int, variant: Variant) -> GemmSpec:
    warps, (warp_rows, cols), config, _ = variant
    spec = GemmSpec(f"g_{dtype}", dtype, n, k, warp_rows=warp_rows, cols=cols, schedule="staged")
    return replace(spec, warps=warps or staged_warps(m, config))


class Built:
    """A variant's kernel of one spec, loaded."""

    def __init__(self, spec: GemmSpec, config: StagedConfig, offsets: tuple[int, int]):
        staged.DESCRIPTOR_OFFSETS = offsets
        try:
            self.ptx = emit_ptx(staged_ir(spec, config), arch=staged_arch(spec, config))
        finally:
            staged.DESCRIPTOR_OFFSETS = OFFSETS
        self.spec, self.config = spec, config
        self.function = driver.Module(self.ptx).function(spec.name)
        driver.allow_shared(self.function, shared_bytes(spec, config))

    def launcher(self, x: Any, w: Any, y: Any) -> Any:
        return staged_launch(
            self.function, self.spec, self.config, [x.data_ptr(), w.data_ptr(), y.data_ptr()], x.shape[0]
        )


def sass_report(ptx: str, arch: str, log: Path, title: str) -> dict[str, Any]:
    """ptxas's resource line and warnings, and the SASS's tensor-core instructions (wgmma's
    HGMMA, the sparse ones among them, mma.sync's HMMA) and wgmma.sp metadata registers
    overwritten under a running group (backends/gpu/sass.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        source_file, cubin = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        source_file.write_text(ptx)
        assembled = subprocess.run(["ptxas", f"-arch={arch}", "-v", str(source_file), "-o", str(cubin)],
                                   capture_output=True, text=True)  # fmt: skip
        sass = subprocess.run(["cuobjdump", "-sass", str(cubin)], capture_output=True, text=True).stdout
    with log.open("a") as f:
        f.write(f"== {title}\n{assembled.stdout}{assembled.stderr}\n")
    lines = (assembled.stdout + assembled.stderr).splitlines()
    gmma = [ln for ln in sass.splitlines() if "GMMA" in ln]
    return {
        "ptxas rc": assembled.returncode,
        "ptxas": [ln.strip() for ln in lines if "registers" in ln or "spill" in ln or "arn" in ln or "C75" in ln],
        "HGMMA": len(gmma),
        "sparse GMMA": sum(".SP" in ln for ln in gmma),
        "HMMA": sass.count("HMMA"),
        "gmma example": gmma[0].strip()[:160] if gmma else "",
        "metadata hazards": metadata_hazards(sass),
        "target": next((ln for ln in ptx.splitlines() if ln.startswith(".target")), ""),
    }


def check(variant: Variant, torch: Any) -> dict[str, Any]:
    """The variant's worst relative error against float64 per (M, N, K, dtype)."""
    config, offsets = variant[2:]
    errors = {}
    for m, n, k in CHECKS:
        for dtype, tt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
            built = Built(spec_of(n, k, dtype, m, variant), config, offsets)
            x, w = torch.randn(m, k, device="cuda").to(tt), torch.randn(n, k, device="cuda").to(tt)
            y = torch.full((m, n), float("nan"), device="cuda", dtype=tt)
            built.launcher(x, w, y)()
            torch.cuda.synchronize()
            want = x.double() @ w.double().T
            errors[f"{m}x{n}x{k} {dtype}"] = error(y.double(), want) if not y.isnan().any() else float("nan")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    torch.cuda.init()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"device": driver.device_name(), "variants": {}, "times": []}
    hypotheses = [n for n in VARIANTS if "swapped" in n]  # last: a fault there ends the context's work
    for name in [n for n in VARIANTS if n not in hypotheses]:
        verify(name, report, out, torch)
    timed_variants = [n for n, e in report["variants"].items() if e["correct"]]
    for size, m in TIMES:
        try:
            report["times"].append(timings(size, m, timed_variants, args.rounds, torch))
        except Exception as e:
            report["times"].append({"N=K": size, "M": m, "failure": f"{type(e).__name__}: {e}"[:500]})
        print(json.dumps(report["times"][-1]), flush=True)
        (out / "gpu_wgmma.json").write_text(json.dumps(report, indent=1))
    for name in hypotheses:
        verify(name, report, out, torch)
    (out / "gpu_wgmma.json").write_text(json.dumps(report, indent=1))
    summary(report, timed_variants)
    return 0


def verify(name: str, report: dict[str, Any], out: Path, torch: Any) -> None:
    """Variant `name`'s ptxas and SASS report and its errors, into report["variants"]."""
    warps, geometry, config, offsets = variant = VARIANTS[name]
    entry: dict[str, Any] = {"warps": warps, "geometry": geometry, "config": config.__dict__, "offsets": offsets}
    try:
        spec = spec_of(4096, 4096, "f16", 4096, variant)
        built = Built(spec, config, offsets)
        entry["sass"] = sass_report(built.ptx, staged_arch(spec, config), out / "ptxas.log", str(spec))
        entry["errors"] = check(variant, torch)
        entry["correct"] = all(e < TOLERANCE for e in entry["errors"].values())  # NaN: False
    except Exception as e:  # a variant that fails to build or launch is a result too
        entry["failure"] = f"{type(e).__name__}: {e}"[:2000]
        entry["correct"] = False
    report["variants"][name] = entry
    print(name, json.dumps({k: v for k, v in entry.items() if k != "config"}), flush=True)


def timings(size: int, m: int, names: list[str], rounds: int, torch: Any) -> dict[str, Any]:
    """Microseconds per call of cuBLAS and each variant at N = K = size, M = m: the minimum of interleaved rounds."""
    x = torch.randn(m, size, device="cuda").half()
    w = (torch.randn(size, size, device="cuda") / size**0.5).half()
    launches: dict[str, Any] = {"cublas": partial(torch.nn.functional.linear, x, w)}
    y = torch.empty(m, size, device="cuda", dtype=torch.float16)
    for name in names:
        _, _, config, offsets = variant = VARIANTS[name]
        launches[name] = Built(spec_of(size, size, "f16", m, variant), config, offsets).launcher(x, w, y)
    best = {name: float("inf") for name in launches}
    for _ in range(rounds):  # interleaved rounds: each variant once a round
        for name, launch in launches.items():
            best[name] = min(best[name], timed(launch, torch))
    flops = 2 * m * size * size
    return {"N=K": size, "M": m, "us": best, "tflops": {n: flops / us / 1e6 for n, us in best.items()}}


def summary(report: dict[str, Any], names: list[str]) -> None:
    correct = ", ".join(f"{n}: {e['correct']}" for n, e in report["variants"].items())
    print(f"\n{report['device']}: correct = {correct}")
    names = ["cublas", *names]
    print("N=K M     " + " ".join(f"{n[:14]:>14}" for n in names) + "   (us; x cuBLAS)")
    for row in report["times"]:
        if "us" in row:
            cells = [f"{row['us'][n]:7.1f} {row['us']['cublas'] / row['us'][n]:5.2f}x" for n in names]
            print(f"{row['N=K']:4} {row['M']:5} " + " ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    sys.exit(main())
