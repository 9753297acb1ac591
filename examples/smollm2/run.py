"""SmolLM2-135M-Instruct (LLaMA: 30 layers, hidden 576, 9 query / 3 key-value heads, MLP
1536, vocabulary 49,152) from its Q4_1 GGUF file, dequantized to float32, its 30 decoder
layers on one compiled program (examples/llama_block.tdsl): perplexity on eval.txt, the
speed of prefill and decoding, and a greedy generation, each against the same model in
numpy. README.md next to this file says how to install it; docs/models.md explains it.
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
    LlamaRunner,
    NumpyLlama,
    calibration_windows,
    compress_model,
    generate,
    perplexity,
)
from stoicc_py.models.smollm2 import smollm2_gguf_path

HERE = Path(__file__).resolve().parent
PROMPT = "The keeper climbed the stairs of the lighthouse and"


def tokens_per_s(model: LlamaRunner, tokens: list[int], repeat: int) -> tuple[float, float]:
    """(prefill tokens/s for `tokens` after an empty cache, decode tokens/s for one token
    after them), medians of `repeat` runs."""
    prefill, decode = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        _, cache = model.forward(tokens, model.empty_cache())
        prefill.append(len(tokens) / (time.perf_counter() - start))
        start = time.perf_counter()
        model.forward(tokens[-1:], cache)
        decode.append(1 / (time.perf_counter() - start))
    return float(np.median(prefill)), float(np.median(decode))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=HERE / "eval.txt", type=Path, help="the English text of the perplexity")
    parser.add_argument("--window", type=int, default=512, help="tokens per perplexity window")
    parser.add_argument("--layout", nargs=2, default=("dense", "dense"), metavar=("ATTN", "MLP"),
                        help="the layouts of the attention projections and of the MLP")  # fmt: skip
    parser.add_argument(
        "--method",
        nargs="+",
        default=None,
        help="compress layer by layer, calibrated on calibration.txt (gptq, sparsegpt, wanda, rtn, "
        "magnitude; one, or the attention's and the MLP's: compress.py); default: magnitude pruning",
    )
    parser.add_argument("--lm-head", default=None, metavar="LAYOUT",
                        help="run the lm head on a compiled kernel in LAYOUT, e.g. 'int8(group=32, scale=f16)' "
                        "(Q8_0's grid, the file's: exact), or 'dense' (float32 on our threads: numpy's "
                        "OpenBLAS threads spin after each call and can take a core from the next token's "
                        "layers); default: numpy, float32")  # fmt: skip
    parser.add_argument("--activations", default=None, metavar="LAYOUT",
                        help="quantize every projection's input to LAYOUT at run time, e.g. 'int8(per=token)' or "
                        "'int8(group=32)' (per group of 32, ggml's granularity) "
                        "(W4A8/W8A8: integer products); default: float32")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="the kernels' threads (default: all cores)")
    parser.add_argument("--generate", type=int, default=32, help="tokens of greedy generation")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    path = smollm2_gguf_path()
    start = time.perf_counter()
    weights, tok = load_gguf(path), gguf_tokenizer(path)
    print(f"{path.name}: loaded and dequantized in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    packed = None
    if args.method:
        calibration = calibration_windows(
            tok.encode((HERE / "calibration.txt").read_text()).ids, args.window, args.window // 2
        )
        method = args.method[0] if len(args.method) == 1 else tuple(args.method)
        packed = compress_model(weights, tuple(args.layout), calibration, method).packed
    compiled = CompiledLlama(weights, tuple(args.layout), threads=args.threads, pack_options={"prune": "magnitude"},
                             packed=packed, lm_head=args.lm_head, activations=args.activations)  # fmt: skip
    print(f"layouts {' / '.join(args.layout)}: compiled and packed in {time.perf_counter() - start:.1f} s")
    reference = NumpyLlama(compiled.weights_read(), args.activations)

    tokens = tok.encode(args.text.read_text()).ids
    print(f"\n{args.text.name}: {len(tokens)} tokens, windows of {args.window}")
    for name, model in (("stoicc", compiled), ("numpy", reference)):
        start = time.perf_counter()
        ppl = perplexity(model, tokens, args.window)
        print(f"  {name:6} perplexity {ppl:8.3f}  ({time.perf_counter() - start:.1f} s)")

    print("\nspeed: prefill of 128 tokens, then decoding one token after them")
    for name, model in (("stoicc", compiled), ("numpy", reference)):
        prefill, decode = tokens_per_s(model, tokens[:128], args.repeat)
        print(f"  {name:6} prefill {prefill:7.1f} tokens/s   decode {decode:6.1f} tokens/s")

    prompt = tok.encode(PROMPT).ids
    out = {name: generate(model, prompt, args.generate) for name, model in (("stoicc", compiled), ("numpy", reference))}
    print(
        f"\ngreedy, {args.generate} tokens ({'same as' if out['stoicc'] == out['numpy'] else 'DIFFERS from'} numpy's):"
    )
    print(f"  {PROMPT}{tok.decode(out['stoicc'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
