"""Compression methods on one SmolLM2-135M-shaped layer: relative output error and run time.

    python benchmarks/methods.py [--rows 576 --cols 1536 --samples 512] [--json out.json]

w [rows, cols] standard normal, calibration activations x = z @ a (z [samples, cols] standard
normal, a [cols, cols] random: correlated input channels); the error is
||x w^T - x v^T||_F / ||x w^T||_F with v the packed tensor's values, on the calibration x and
on a held-out x of as many rows.
The time is pack's (Hessian included); x 210 estimates all of SmolLM2-135M's matrices (every
one of its 210 has at most this one's rows x cols^2 work). docs/compress.md holds the table.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.cmdline import write_json

Array = np.ndarray[Any, Any]
MATRICES = 210
"""SmolLM2-135M: 30 decoder layers x (q, k, v, o, gate, up, down)."""
HYBRID = "hybrid(tile=[64, 64], formats=[dense, nm(2, 4)])"
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("int4(group=32)", "rtn", {}), ("int4(group=32)", "gptq", {}), ("int4(group=32)", "gptq", {"act_order": True}),
    ("int4(group=128)", "rtn", {}), ("int4(group=128)", "gptq", {}),
    ("int3(group=32)", "rtn", {}), ("int3(group=32)", "gptq", {}),
    ("int2(group=32)", "rtn", {}), ("int2(group=32)", "gptq", {"act_order": True}),
    ("ternary(group=32)", "rtn", {}), ("ternary(group=32)", "gptq", {}),
    ("nm(2, 4)", "magnitude", {}), ("nm(2, 4)", "wanda", {}), ("nm(2, 4)", "sparsegpt", {}),
    ("nm(2, 4) with int4(group=32)", "magnitude", {}), ("nm(2, 4) with int4(group=32)", "sparsegpt", {}),
    ("csr", "wanda", {"sparsity": 0.5}), ("csr", "sparsegpt", {"sparsity": 0.5}),
    (HYBRID, "magnitude", {"plan": "auto", "sparsity": 0.125}), (HYBRID, "sparsegpt", {"sparsity": 0.125}),
    (HYBRID, "magnitude", {"plan": "auto", "sparsity": 0.25}), (HYBRID, "sparsegpt", {"sparsity": 0.25}),
]  # fmt: skip
"""(layout, method, options): magnitude on hybrid is today's activation-aware plan (plan_hybrid)."""


def run(w: Array, x: Array, test: Array, layout: str, method: str, opts: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {} if method in ("rtn", "magnitude") and "plan" not in opts else {"activations": x}
    start = time.perf_counter()
    packed = stoicc_py.pack(w, layout, method=method, **data, **opts)
    seconds = time.perf_counter() - start
    v = packed.unpack().T.astype(np.float64)
    errors = [float(np.linalg.norm(a @ w.T - a @ v) / np.linalg.norm(a @ w.T)) for a in (x.astype(np.float64), test)]
    return {"layout": layout, "method": method, "options": opts, "calibration_error": errors[0],
            "held_out_error": errors[1], "seconds": seconds, "model_minutes": seconds * MATRICES / 60}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=576)
    parser.add_argument("--cols", type=int, default=1536)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.cols, args.cols)).astype(np.float32) / np.sqrt(args.cols)
    x, test = (rng.standard_normal((args.samples, args.cols)).astype(np.float32) @ a for _ in range(2))
    w = rng.standard_normal((args.rows, args.cols)).astype(np.float32)
    results = []
    print(f"{'layout':52} {'method':10} {'options':34} {'calib':>7} {'held':>7} {'s':>6} {'x210 min':>8}")
    for layout, method, opts in CASES:
        r = run(w, x, test.astype(np.float64), layout, method, opts)
        results.append(r)
        print(f"{layout:52} {method:10} {json.dumps(opts):34} {r['calibration_error']:7.4f} {r['held_out_error']:7.4f} {r['seconds']:6.2f} "
              f"{r['model_minutes']:8.2f}")  # fmt: skip
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
