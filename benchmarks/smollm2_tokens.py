"""SmolLM2-135M-Instruct end to end: prefill and decode tokens/s of the compiled model
(CompiledLlama: the 30 decoder layers on one compiled program, as examples/smollm2/run.py
runs them; embeddings and final norm in numpy) against llama.cpp's `llama-bench` on the
same Q4_1 GGUF file, side by side in one run:

    python benchmarks/smollm2_tokens.py                                  # ours only
    python benchmarks/smollm2_tokens.py --llama-bench /tmp/llama.cpp/build/bin/llama-bench
    python benchmarks/smollm2_tokens.py --models int4 --threads 1 --profile

What is timed, as llama-bench defines its tests: ppP is a prefill of P tokens from an
empty cache with the logits of the last one (llama-bench's pp: one batch of P tokens, one
output); tgN decodes N tokens one at a time from an empty cache, each with its logits
(llama-bench's tg; the tokens are fixed, no sampling). `--repeat` rounds, each running
llama-bench once (`-r 1`) and each of our models once, interleaved so that the shared
host's load changes reach all alike; the best round of each is reported.

Models (`--models`, MODELS): `int4` is
`int4(group=32, zero=float, scale=f16)` on every projection, Q4_1's own grid (rounding
the dequantized file to it gives back exactly the GGUF's weights, docs/models.md), and
the lm head on an `int8(group=32, scale=f16)` kernel, Q8_0's grid (the file's tied
embeddings are Q8_0: exact too): the weights and bits llama.cpp reads. `int4-f32-head`
runs the lm head in numpy in float32 instead (run.py's way); `w4a8` rounds the file's
weights to `int4(group=32, scale=f16)` (Q4_0's grid, 4.5 bits a weight against Q4_1's 5)
and quantizes every projection's input, the lm head's too, to int8 per token at run time,
as ggml does for its q4/q8 products (CompiledLlama's `activations`): integer dot products
(`int4-q4_0`: the same weights, float32 activations; `w4a8-unfused`: W4A8 with q/k/v and
gate/up as separate products, CompiledLlama's `fuse=False`, as before the fusion);
`w4a8-q4_1` is `int4`'s weights (the file's, Q4_1's grid and bits) with `w4a8`'s int8
activations: each group's integer dot product plus its float offset times the group's sum
of x's codes, ggml's own q4_1 x q8_1 arithmetic (with one x scale per token where ggml
has one per 32); `w4a8-q4_1-g32` quantizes x per group of 32 instead (`int8(group=32)`,
ggml's q8_1 granularity: each group's product scaled by both groups' scales);
`dense` is the same weights in float32, the lm head on a compiled float32 kernel too (in
numpy, OpenBLAS's threads spin ~0.1 s after each call and took the second core from the
next token's layers: 48.8 against 64.8 tokens/s decode on 2 threads, Zen 4). Before timing, each model's logits on a few tokens are
checked against NumpyLlama on the weights its kernels read, and those weights against the
file's (the table's header says which models read exactly the file's). numpy's BLAS gets
as many threads as the kernels.

`--profile` splits one decode run on each thread count by where the time goes
(profile_decode): the layer calls, the lm head and the rest of the numpy glue. benchmarks/README.md says how to
build llama-bench.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stoicc_py.benchmarks.measure import library_threads
from stoicc_py.cmdline import write_json
from stoicc_py.models.gguf_llama import load_gguf
from stoicc_py.models.llama_model import CompiledLlama, LlamaWeights, NumpyLlama, compress_model
from stoicc_py.models.smollm2 import smollm2_gguf_path

Q4_1_GRID = "int4(group=32, zero=float, scale=f16)"
Q8_0_GRID = "int8(group=32, scale=f16)"
Q4_0_GRID = "int4(group=32, scale=f16)"
PER_TOKEN = "int8(per=token)"
PER_GROUP = "int8(group=32)"
MODELS = {"int4": (Q4_1_GRID, Q8_0_GRID, None, True), "int4-f32-head": (Q4_1_GRID, None, None, True),
          "w4a8": (Q4_0_GRID, Q8_0_GRID, PER_TOKEN, True), "w4a8-unfused": (Q4_0_GRID, Q8_0_GRID, PER_TOKEN, False),
          "w4a8-q4_1": (Q4_1_GRID, Q8_0_GRID, PER_TOKEN, True), "w4a8-q4_1-g32": (Q4_1_GRID, Q8_0_GRID, PER_GROUP, True),
          "int4-q4_0": (Q4_0_GRID, Q8_0_GRID, None, True), "dense": ("dense", "dense", None, True)}  # fmt: skip
"""name -> (the projections' layout, the lm head's on a kernel or None: numpy float32, the
activations' layout or None: float32, whether q/k/v and gate/up run fused: CompiledLlama's `fuse`)."""
LABELS = {"int4": "ours int4 (Q4_1 grid), Q8_0 head", "int4-f32-head": "ours int4, f32 numpy head",
          "w4a8": "ours W4A8 (Q4_0 grid, int8 x), Q8_0 head", "w4a8-unfused": "ours W4A8, 7 products a layer",
          "w4a8-q4_1": "ours W4A8 (Q4_1 grid, int8 x), Q8_0 head", "w4a8-q4_1-g32": "ours W4A8 (Q4_1 grid, int8 x g32), Q8_0 head",
          "int4-q4_0": "ours int4 (Q4_0 grid, f32 x), Q8_0 head",
          "dense": "ours f32",
          "llama.cpp": "llama.cpp Q4_1"}  # fmt: skip
ACTIVATIONS_TOLERANCE = 0.04
"""How far (relative norm) a model with quantized activations may be from `interpreted`:
1% on a Zen 4, 3.3% on a Zen 3 (8-lane float sums flip other int8 roundings over 30
layers; the same logits bit for bit before and after that host's integer-kernel changes)."""
FIRST_TOKEN = 1000
"""The token ids timed are FIRST_TOKEN, FIRST_TOKEN + 1, ... (any ids do: nothing is sampled)."""


def build(weights: LlamaWeights, name: str) -> CompiledLlama:
    """The compiled model `name` (MODELS), its weights rounded to nearest."""
    layout, head, activations, fuse = MODELS[name]
    packed = None if layout == "dense" else compress_model(weights, (layout, layout), [], "rtn").packed
    return CompiledLlama(weights, (layout, layout), packed=packed, lm_head=head, activations=activations, fuse=fuse)


def check(model: CompiledLlama, tokens: int = 8) -> None:
    """The model's logits against numpy's on the weights its kernels read; with quantized
    activations, against its kernels' reference interpreter (`interpreted`)."""
    ids = list(range(FIRST_TOKEN, FIRST_TOKEN + tokens))
    got = model.forward(ids, model.empty_cache())[0]
    ref = NumpyLlama(model.weights_read()) if model.activations is None else interpreted(model)
    want = ref.forward(ids, ref.empty_cache())[0]
    if model.activations is not None:  # int8 codes that round otherwise move the logits (`interpreted`)
        error = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        assert error < ACTIVATIONS_TOLERANCE, f"logits {error:.3f} from the interpreter's (relative norm)"
        return
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))


def interpreted(model: CompiledLlama) -> CompiledLlama:
    """The model with its kernels' numpy interpreter (`kernel.reference`) in their place:
    with quantized activations, the reference. Any two evaluations that round otherwise
    (float32 and the interpreter's float64; NumpyLlama's RMSNorm x / sqrt against the
    layer's x * rsqrt) give a few values on the other side of an int8 rounding boundary,
    and on SmolLM2's activation outliers one code step of a projection's input is large:
    a layer's outputs agree to 1e-6 with the interpreter's, the logits after 30 layers to
    1% (relative norm; 3% against NumpyLlama's fake quantization, 6.4% between int8 and
    float32 activations)."""
    ref = copy.copy(model)
    ref.kernels = [kernel.reference for kernel in model.kernels]  # type: ignore[misc]  # called alike
    ref.head_kernel = model.head_kernel and model.head_kernel.reference
    return ref


def reads_file_weights(model: CompiledLlama, weights: LlamaWeights) -> bool:
    """Whether the kernels read exactly the file's (dequantized) weights."""
    read = model.weights_read()
    layers = all(np.array_equal(r[n], w[n]) for r, w in zip(read.layers, weights.layers) for n in w)
    return layers and np.array_equal(read.lm_head, weights.lm_head)


def prefill(model: CompiledLlama, n: int) -> None:
    model.forward(np.arange(FIRST_TOKEN, FIRST_TOKEN + n), model.empty_cache(), last=True)


def decode(model: CompiledLlama, n: int) -> None:
    cache = model.empty_cache()
    for i in range(n):
        _, cache = model.forward([FIRST_TOKEN + i], cache, last=True)


def tokens_per_s(run: Callable[[], None], tokens: int) -> float:
    start = time.perf_counter()
    run()
    return tokens / (time.perf_counter() - start)


def set_threads(model: CompiledLlama, threads: int) -> None:
    for kernel in [*model.kernels, model.head_kernel]:
        if kernel is not None:
            kernel.threads = threads


def ours(model: CompiledLlama, threads: int, p: int, n: int) -> dict[str, float]:
    """One run of each test on `threads` threads, tokens/s."""
    set_threads(model, threads)
    with library_threads(threads):
        return {
            f"pp{p}": tokens_per_s(lambda: prefill(model, p), p),
            f"tg{n}": tokens_per_s(lambda: decode(model, n), n),
        }


def profile_decode(model: CompiledLlama, n: int, threads: int = 1) -> dict[str, float]:
    """Where a decode run's time goes on `threads` threads: ms per token in the 30 layer calls (the
    compiled program, its Python call included), in the lm head and in the rest (embedding
    lookup, RoPE tables, final RMSNorm, the loop), from timers around `block` and `head`;
    and the GB/s of weight bytes the layer calls read."""
    spent = {"layers": 0.0, "lm head": 0.0}

    def timed(part: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            start = time.perf_counter()
            out = f(*args)
            spent[part] += time.perf_counter() - start
            return out

        return call

    set_threads(model, threads)
    model.block, model.head = timed("layers", model.block), timed("lm head", model.head)  # type: ignore[method-assign]
    try:
        with library_threads(threads):
            per_token = 1 / tokens_per_s(lambda: decode(model, n), n)
    finally:
        del model.block, model.head  # the class's methods again
    ms = {part: 1e3 * s / n for part, s in spent.items()}
    ms["other glue"] = 1e3 * per_token - sum(ms.values())
    ms["total"] = 1e3 * per_token
    layer_bytes = sum(getattr(a, "nbytes_breakdown", lambda a=a: {"total": a.nbytes})()["total"]
                      for args in model.args for a in args)  # fmt: skip
    ms["layer weights GB/s"] = layer_bytes / (spent["layers"] / n) / 1e9
    return ms


def llama_bench(path: Path, gguf: Path, threads: list[int], p: int, n: int) -> dict[int, dict[str, float]]:
    """llama-bench's tokens/s per thread count and test (ppP, tgN): one run of each (`-r 1`,
    after llama-bench's own warm-up run), from its JSON output."""
    command = [str(path), "-m", str(gguf), "-p", str(p), "-n", str(n), "-r", "1",
               "-t", ",".join(map(str, threads)), "-o", "json"]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    figures: dict[int, dict[str, float]] = {}
    for test in json.loads(out):
        name = f"pp{test['n_prompt']}" if test["n_prompt"] else f"tg{test['n_gen']}"
        figures.setdefault(int(test["n_threads"]), {})[name] = float(test["avg_ts"])
    return figures


def best(figures: dict[str, dict[int, dict[str, float]]], name: str, new: dict[int, dict[str, float]]) -> None:
    """The best tokens/s so far of `name` per thread count and test."""
    for t, tests in new.items():
        seen = figures.setdefault(name, {}).setdefault(t, {})
        seen.update({test: max(v, seen.get(test, 0.0)) for test, v in tests.items()})


def table(figures: dict[str, dict[int, dict[str, float]]], threads: list[int], tests: list[str]) -> str:
    base = figures.get("llama.cpp")
    columns = [m for m in figures if m != "llama.cpp"]
    head = ["threads", "test", *(LABELS[m] for m in figures)] + [f"{m} / llama.cpp" for m in columns if base]
    rows = [head]
    for t in threads:
        for test in tests:
            row = [str(t), test, *(f"{figures[m][t][test]:.1f}" for m in figures)]
            if base:
                row += [f"{figures[m][t][test] / base[t][test]:.2f}x" for m in columns]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-bench", type=Path, help="llama.cpp's llama-bench binary (benchmarks/README.md)")
    parser.add_argument("--models", default="int4,dense", help=f"ours, of {','.join(MODELS)}")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--prompt", type=int, default=128, help="tokens of the prefill (pp)")
    parser.add_argument("--gen", type=int, default=128, help="tokens decoded (tg)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best of them is reported")
    parser.add_argument("--profile", action="store_true", help="split a decode run by part, on each thread count")
    parser.add_argument("--json", type=Path, help="every figure as JSON")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    if unknown := [m for m in names if m not in MODELS]:
        parser.error(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")
    if args.llama_bench and not os.access(args.llama_bench, os.X_OK):
        parser.error(f"{args.llama_bench}: not an executable file")
    threads = [int(t) for t in args.threads.split(",")]
    tests = [f"pp{args.prompt}", f"tg{args.gen}"]
    gguf = smollm2_gguf_path()
    data: dict[str, Any] = {"gguf": str(gguf), "load_avg": list(os.getloadavg()), "figures": {}, "profile": {}}
    weights = load_gguf(gguf)
    figures: dict[str, dict[int, dict[str, float]]] = data["figures"]
    models = {name: build(weights, name) for name in names}
    for model in models.values():
        check(model)
    data["exact"] = [name for name, model in models.items() if reads_file_weights(model, weights)]
    for _ in range(args.repeat):  # rounds, each model and llama.cpp once: load changes hit all alike
        if args.llama_bench:
            best(figures, "llama.cpp", llama_bench(args.llama_bench, gguf, threads, args.prompt, args.gen))
        for name, model in models.items():
            best(figures, name, {t: ours(model, t, args.prompt, args.gen) for t in threads})
    if args.profile:
        data["profile"] = {
            name: {t: profile_decode(model, args.gen, t) for t in threads} for name, model in models.items()
        }
    data["load_avg_end"] = list(os.getloadavg())
    print(f"SmolLM2-135M-Instruct, tokens/s ({gguf.name}); load average {data['load_avg'][0]:.2f} at the start, "
          f"{data['load_avg_end'][0]:.2f} at the end; the file's exact weights: {', '.join(data['exact']) or 'none'}")  # fmt: skip
    print(table(figures, threads, tests))
    for name, per_threads in data["profile"].items():
        for t, parts in per_threads.items():
            print(f"\n{LABELS[name]}, decode of {args.gen} tokens, {t} thread(s), ms per token:")
            print("  " + "  ".join(f"{part} {ms:.2f}" for part, ms in parts.items()))
    if args.json:
        write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
