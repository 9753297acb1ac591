"""The seeds' claims, checked on the simulated accelerator (docs/accel.md, "Reproduction").

    python benchmarks/accel_formats.py            # prefill 512 x 4096 x 4096, decode 1 x 4096 x 4096
    python benchmarks/accel_formats.py --quick    # 128 x 1024 x 1024 and 1 x 1024 x 1024
    python benchmarks/accel_formats.py --json results.json

Every kernel's output is checked (bit-exact against numpy for the integer ones,
against the reference interpreter for the others) before its cost is reported.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.backends.accel.simulator import Report

Array = np.ndarray[Any, Any]


def _kernel(signature: str, body: str) -> Any:
    """A one-product kernel for the accelerator; integer if x is i8."""
    n = signature.split("[")[2].split(",")[0]
    result = f"i32[M, {n}]" if signature.startswith("x: i8") else f"f32[M, {n}]"
    return stoicc_py.compile(f"kernel f({signature}) -> {result} {{ return {body} }}", target="accel").f


def _row(name: str, report: Report, base: Report | None = None, error: float | None = None) -> dict[str, Any]:
    row = {
        "kernel": name,
        "cycles": report.cycles,
        "speedup": base.cycles / report.cycles if base else 1.0,
        "mac_util": report.mac_utilization,
        "dram_bytes": sum(report.dram_bytes.values()),
        "energy_uj": report.total_energy_pj / 1e6,
        "energy_saving": 1 - report.total_energy_pj / base.total_energy_pj if base else 0.0,
    }
    if error is not None:
        row["rel_error"] = error
    return row


def sparsity_2_4(m: int, n: int, k: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Dense int8 against 2:4 int8 (the N:M mode doubles the array's throughput)."""
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    dense = _kernel(f"x: i8[M, {k}], w: i8[{n}, {k}]", "linear(x, w)")
    sparse = _kernel(f"x: i8[M, {k}], w: i8[{n}, {k}] @ nm(2, 4)", "linear(x, w)")
    got = dense(x, w)
    assert np.array_equal(got, (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int32))
    packed = sparse.pack("w", w, prune="magnitude")
    got = sparse(x, packed)
    assert np.array_equal(got, (x.astype(np.float64) @ packed.unpack().T.astype(np.float64)).astype(np.int32))
    return [_row(f"dense int8 {m}x{n}x{k}", dense.last_report),
            _row(f"2:4 int8 {m}x{n}x{k}", sparse.last_report, dense.last_report)]  # fmt: skip


def activations(m: int, k: int, rng: np.random.Generator) -> Array:
    """Transformer-like activations: Laplace-distributed, with a few outlier channels,
    so per-token int8 codes concentrate near zero."""
    x = rng.laplace(0, 1, (m, k)).astype(np.float32)
    x[:, rng.choice(k, 4, replace=False)] *= 25
    return x


def bitsplit(m: int, n: int, k: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """W8A8 against SPARQLe-style bit-split activations on the same int8 weights."""
    x, w = activations(m, k, rng), rng.standard_normal((n, k)).astype(np.float32)
    base = _kernel(f"x: f32[M, {k}], w: f32[{n}, {k}] @ int8(axis=0)", "linear(quantize(x, int8(per=token)), w)")
    split = _kernel(f"x: f32[M, {k}], w: f32[{n}, {k}] @ int8(axis=0)", "linear(quantize(x, bitsplit(int8)), w)")
    packed = base.pack("w", w)
    rows: list[dict[str, Any]] = []
    for name, kernel in (("W8A8", base), ("bit-split A8 (W8)", split)):
        got = kernel(x, packed)
        want = kernel.reference(x, packed)
        assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        rows.append(_row(f"{name} {m}x{n}x{k}", kernel.last_report, rows and base.last_report or None))
    codes = np.clip(np.rint(x / (np.abs(x).max(axis=1, keepdims=True) / 127)), -127, 127).astype(np.int32)
    rows[-1]["msb_zero_fraction"] = float(np.mean((codes >> 4) == 0))
    return rows


def outlier_weights(n: int, k: int, rng: np.random.Generator) -> Array:
    w = rng.standard_normal((n, k)).astype(np.float32)
    hit = rng.random((n, k)) < 0.005
    w[hit] *= 20
    return w


def sq_format(m: int, n: int, k: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """W8A8, W4A8 (int4 g128) and SQ-format weights (int4 g128 + the 5% largest of each
    128 in int8), all on per-token int8 activations."""
    x, w = activations(m, k, rng), outlier_weights(n, k, rng)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    layouts = {"W8A8": "int8(axis=0)", "W4A8 (int4 g128)": "int4(group=128)",
               "SQ (int4 g128 + 5% int8)": "sq(low=int4(group=128), high=int8, high_density=0.05)"}  # fmt: skip
    rows: list[dict[str, Any]] = []
    base: Report | None = None
    for name, layout in layouts.items():
        kernel = _kernel(f"x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}", "linear(quantize(x, int8(per=token)), w)")
        packed = kernel.pack("w", w)
        got = kernel(x, packed)
        want = kernel.reference(x, packed)
        assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        error = float(np.linalg.norm(got - exact) / np.linalg.norm(exact))
        rows.append(_row(f"{name} {m}x{n}x{k}", kernel.last_report, base, error))
        base = base or kernel.last_report
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller shapes")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    size, prefill = (1024, 128) if args.quick else (4096, 512)
    rng = np.random.default_rng(0)
    tables = {
        "2:4 sparsity": sparsity_2_4(prefill, size, size, rng) + sparsity_2_4(1, size, size, rng),
        "bit-split activations": bitsplit(prefill, size, size, rng) + bitsplit(1, size, size, rng),
        "SQ-format": sq_format(prefill, size, size, rng) + sq_format(1, size, size, rng),
    }
    for title, rows in tables.items():
        print(f"\n### {title}\n")
        keys = list(dict.fromkeys(key for row in rows for key in row))
        print("| " + " | ".join(keys) + " |")
        print("|" + "---|" * len(keys))
        for row in rows:
            print("| " + " | ".join(_cell(row.get(key)) for key in keys) + " |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(tables, out, indent=2)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    main()
