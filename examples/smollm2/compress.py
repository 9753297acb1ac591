"""SmolLM2-135M compressed layer by layer (stoicc_py.models.llama_model.compress_model: GPTQ,
SparseGPT, Wanda, or round-to-nearest and magnitude), calibrated on the text the model wrote
itself (calibration_generated.npy, make_calibration.py) or calibration.txt, and its
perplexity on eval.txt next to the float32 model's; docs/models.md has the table.

    python examples/smollm2/compress.py --layout "int4(group=32)" "int4(group=32)" --method gptq
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from stoicc_py.models import layerwise
from stoicc_py.models.gguf_llama import gguf_tokenizer, load_gguf
from stoicc_py.models.llama_model import (
    CompiledLlama,
    NumpyLlama,
    calibration_windows,
    compress_model,
    perplexity,
)
from stoicc_py.models.smollm2 import smollm2_gguf_path
from stoicc_py.packing import PackedTensor

HERE = Path(__file__).resolve().parent
PROJECTIONS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


@contextmanager
def output_errors() -> Iterator[list[float]]:
    """Records, for each projection compress_layers packs from a Hessian (in PROJECTIONS order
    within a layer), its relative output error on the calibration inputs it was packed from,
    ||x (w - v)^T|| / ||x w^T|| = sqrt(tr(D H D^T) / tr(W H W^T)) with D = w - v (H = 2 x^T x / n:
    the n cancels). It wraps the pack that compress_layers calls: the packing is unchanged."""
    errors: list[float] = []
    original = layerwise.pack

    def recording(w: np.ndarray, layout: str, **options: Any) -> PackedTensor:
        packed = original(w, layout, **options)
        if (h := options.get("hessian")) is not None:
            w64 = w.astype(np.float64)
            d = w64 - packed.unpack()
            errors.append(float(np.sqrt(((d @ h) * d).sum() / ((w64 @ h) * w64).sum())))
        return packed

    with mock.patch.object(layerwise, "pack", recording):
        yield errors


def print_errors(errors: list[float], layers: list[int]) -> None:
    """The errors of the compressed `layers` by projection (compress_layers packs a layer's
    projections in PROJECTIONS order) and by layer: the mean over the other axis, the worst layers."""
    table = np.asarray(errors).reshape(len(layers), len(PROJECTIONS))
    print("relative output error on the calibration inputs, mean over layers:")
    print("  " + "  ".join(f"{n} {e:.4f}" for n, e in zip(PROJECTIONS, table.mean(axis=0))))
    per_layer = table.mean(axis=1)
    print("  per layer (mean over projections): " + " ".join(f"{i}:{e:.3f}" for i, e in zip(layers, per_layer)))
    worst = np.argsort(-per_layer)[:5]
    print("  worst layers: " + ", ".join(f"{layers[j]} ({per_layer[j]:.3f})" for j in worst))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", nargs=2, required=True, metavar=("ATTN", "MLP"))
    parser.add_argument("--method", nargs="+", default=["gptq"], help="one method, or the attention's and the MLP's")
    parser.add_argument("--sparsity", type=float, default=None, help="pack(sparsity=): csr, block, hybrid")
    parser.add_argument("--plan-auto", action="store_true",
                        help="hybrid: plan_hybrid's tiles on the Hessian (pack plan='auto'), with --method magnitude")  # fmt: skip
    parser.add_argument("--damp", type=float, default=None, help="pack(damp=): of mean(diag H), default 0.01")
    parser.add_argument("--calibration", choices=("text", "generated", "both"), default="text",
                        help="calibration.txt's windows, calibration_generated.npy's rows (make_calibration.py), or both")  # fmt: skip
    parser.add_argument("--act-order", action="store_true")
    parser.add_argument("--grid", choices=("minmax", "mse", "hmse"), default="minmax",
                        help="pack(grid=): min/max ranges, GPTQ's search of shrunk ranges (rtn, gptq), or that search weighted by diag H (gptq)")  # fmt: skip
    parser.add_argument("--sequential", action="store_true", help="GPTQ's true-sequential order inside a layer")
    parser.add_argument("--window", type=int, default=512, help="tokens per perplexity and calibration window")
    parser.add_argument("--stride", type=int, default=256, help="calibration windows start every STRIDE tokens")
    parser.add_argument("--baseline", action="store_true", help="also the float32 model's perplexity")
    parser.add_argument("--compiled", action="store_true", help="also the perplexity on the compiled layers")
    parser.add_argument("--dense-layers", nargs="+", type=int, default=[], metavar="I",
                        help="these layers stay float32 (the others take --layout): a per-layer allocation")  # fmt: skip
    parser.add_argument("--layer-errors", action="store_true",
                        help="also each projection's relative output error on its calibration inputs (data methods)")  # fmt: skip
    args = parser.parse_args(argv)

    path = smollm2_gguf_path()
    weights, tok = load_gguf(path), gguf_tokenizer(path)
    tokens = tok.encode((HERE / "eval.txt").read_text()).ids
    windows = []
    if args.calibration != "generated":
        windows += calibration_windows(tok.encode((HERE / "calibration.txt").read_text()).ids, args.window, args.stride)
    if args.calibration != "text":
        windows += [list(row) for row in np.load(HERE / "calibration_generated.npy")]
    print(f"calibration ({args.calibration}): {sum(map(len, windows))} rows; eval: {len(tokens)} tokens")
    if args.baseline:
        print(f"float32 perplexity {perplexity(NumpyLlama(weights), tokens, args.window):.3f}")

    method = args.method[0] if len(args.method) == 1 else tuple(args.method)
    options = {"sparsity": args.sparsity} if args.sparsity is not None else {}
    if args.act_order:
        options["act_order"] = True
    if args.grid != "minmax":
        options["grid"] = args.grid
    if args.damp is not None:
        options["damp"] = args.damp
    if args.plan_auto:
        options["plan"] = "auto"
    layouts = tuple(args.layout)
    n = len(weights.layers)
    if any(not 0 <= i < n for i in args.dense_layers):
        parser.error(f"--dense-layers: the model has layers 0 to {n - 1}")
    per_layer = [("dense", "dense") if i in args.dense_layers else layouts for i in range(n)]
    cpu = time.process_time()  # the host is shared: CPU seconds (both cores' threads) say more than wall time
    with output_errors() if args.layer_errors else nullcontext([]) as errors:
        out = compress_model(weights, per_layer, windows, method, args.sequential, **options)
    cpu = time.process_time() - cpu
    dense = sum(w.nbytes for layer in weights.layers for n, w in layer.items() if w.ndim == 2)
    packed = sum(t.nbytes for layer in out.packed for t in layer.values())
    packed += sum(
        w.nbytes for layer, p in zip(weights.layers, out.packed) for n, w in layer.items() if w.ndim == 2 and n not in p
    )
    print(f"{' / '.join(layouts)} by {'/'.join(args.method)}: {out.seconds:.0f} s ({cpu:.0f} CPU s); "
          f"projections {packed:,} bytes ({dense / packed:.2f}x smaller than float32's {dense:,})")  # fmt: skip
    if args.layer_errors:
        print_errors(errors, [i for i in range(n) if i not in args.dense_layers])
    start = time.perf_counter()
    print(
        f"perplexity {perplexity(NumpyLlama(out.weights), tokens, args.window):.3f} (numpy, {time.perf_counter() - start:.0f} s)"
    )
    if args.compiled:
        compiled = CompiledLlama(weights, per_layer, packed=out.packed)
        print(f"perplexity {perplexity(compiled, tokens, args.window):.3f} (compiled layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
