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
from pathlib import Path

import numpy as np

from stoicc_py.models.gguf_llama import gguf_tokenizer, load_gguf
from stoicc_py.models.llama_model import (
    CompiledLlama,
    NumpyLlama,
    calibration_windows,
    compress_model,
    perplexity,
)
from stoicc_py.models.smollm2 import smollm2_gguf_path

HERE = Path(__file__).resolve().parent


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
    cpu = time.process_time()  # the host is shared: CPU seconds (both cores' threads) say more than wall time
    out = compress_model(weights, layouts, windows, method, args.sequential, **options)
    cpu = time.process_time() - cpu
    dense = sum(w.nbytes for layer in weights.layers for n, w in layer.items() if w.ndim == 2)
    packed = sum(t.nbytes for layer in out.packed for t in layer.values())
    packed += sum(
        w.nbytes for layer, p in zip(weights.layers, out.packed) for n, w in layer.items() if w.ndim == 2 and n not in p
    )
    print(f"{' / '.join(layouts)} by {'/'.join(args.method)}: {out.seconds:.0f} s ({cpu:.0f} CPU s); "
          f"projections {packed:,} bytes ({dense / packed:.2f}x smaller than float32's {dense:,})")  # fmt: skip
    start = time.perf_counter()
    print(
        f"perplexity {perplexity(NumpyLlama(out.weights), tokens, args.window):.3f} (numpy, {time.perf_counter() - start:.0f} s)"
    )
    if args.compiled:
        compiled = CompiledLlama(weights, layouts, packed=out.packed)
        print(f"perplexity {perplexity(compiled, tokens, args.window):.3f} (compiled layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
