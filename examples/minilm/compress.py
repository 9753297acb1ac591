"""all-MiniLM-L6-v2 with every linear layer compressed layer by layer
(stoicc_py.models.bert.compress_minilm: SparseGPT, Wanda, GPTQ, or magnitude and round to
nearest), calibrated on the sentences of examples/smollm2/calibration.txt, and the cosine of
each held-out sentence's embedding (examples/smollm2/eval.txt, another text) with the fp32
one; docs/minilm.md has the table.

    python examples/minilm/compress.py --layout "nm(2, 4)" --method magnitude wanda sparsegpt
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from stoicc_py.models import encode, load_weights, minilm_linear, minilm_weights_path, tokenize
from stoicc_py.models.bert import compress_minilm
from stoicc_py.models.minilm import LINEAR_LAYERS

TEXTS = Path(__file__).resolve().parent.parent / "smollm2"


def sentences(path: Path) -> list[str]:
    """The sentences of a text file: split after . ! or ? and white space."""
    return [s for s in re.split(r"(?<=[.!?])\s+", path.read_text()) if s.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", default="nm(2, 4)")
    parser.add_argument("--method", nargs="+", default=["magnitude", "sparsegpt"])
    parser.add_argument("--damp", type=float, default=0.01, help="pack(damp=) of the Hessian methods")
    parser.add_argument("--sparsity", type=float, default=None, help="pack(sparsity=): csr, block, hybrid")
    parser.add_argument("--only", nargs="+", choices=LINEAR_LAYERS, default=LINEAR_LAYERS, metavar="NAME",
                        help="compress only these linear layers of every encoder layer (the rest stay fp32): "
                             f"{', '.join(LINEAR_LAYERS)}")  # fmt: skip
    parser.add_argument(
        "--one-pass", action="store_true", help="all of a layer's inputs from one pass (not true-sequential)"
    )
    parser.add_argument("--compiled", action="store_true", help="also run the compressed weights on compiled kernels")
    args = parser.parse_args(argv)

    weights = load_weights(minilm_weights_path())
    calibration, held_out = sentences(TEXTS / "calibration.txt"), sentences(TEXTS / "eval.txt")
    ids, mask = tokenize(held_out)
    cal_ids, cal_mask = tokenize(calibration)
    fp32 = encode(weights, ids, mask)
    print(f"calibration: {len(calibration)} sentences, {int(cal_mask.sum())} tokens; "
          f"held out: {len(held_out)} sentences, {int(mask.sum())} tokens")  # fmt: skip
    for method in args.method:
        options = {"damp": args.damp} if method in ("gptq", "sparsegpt", "wanda") else {}
        if args.sparsity is not None:
            options["sparsity"] = args.sparsity
        start = time.perf_counter()
        rules = dict.fromkeys(args.only, (args.layout, method))
        compressed, _ = compress_minilm(weights, rules, cal_ids, cal_mask, sequential=not args.one_pass, **options)
        seconds = time.perf_counter() - start
        cosine = (encode(compressed, ids, mask) * fp32).sum(axis=1)
        print(
            f"{args.layout} by {method}{'' if len(args.only) == len(LINEAR_LAYERS) else ' on ' + ', '.join(args.only)}: cosine with fp32 min {cosine.min():.4f} mean {cosine.mean():.4f} ({seconds:.0f} s)"
        )
        if args.compiled:  # the compressed values fit the layout: packing them again keeps them
            kernels = minilm_linear(compressed, args.layout)
            same = float(abs(encode(compressed, ids, mask, kernels) - encode(compressed, ids, mask)).max())
            print(f"  compiled kernels vs numpy on the same weights: max |difference| {same:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
