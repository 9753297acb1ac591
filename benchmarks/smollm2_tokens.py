"""SmolLM2-135M-Instruct end to end: prefill and decode tokens/s of the compiled model
(CompiledLlama: the 30 decoder layers on one compiled program, embeddings, final norm and
lm head in numpy, as examples/smollm2/run.py runs it) against llama.cpp's `llama-bench`
on the same Q4_1 GGUF file, side by side in one run:

    python benchmarks/smollm2_tokens.py                                  # ours only
    python benchmarks/smollm2_tokens.py --llama-bench /tmp/llama.cpp/build/bin/llama-bench
    python benchmarks/smollm2_tokens.py --models int4 --threads 1 --profile

What is timed, as llama-bench defines its tests: ppP is a prefill of P tokens from an
empty cache with the logits of the last one (llama-bench's pp: one batch of P tokens, one
output); tgN decodes N tokens one at a time from an empty cache, each with its logits
(llama-bench's tg; the tokens are fixed, no sampling). Ours: the best of `--repeat` runs;
llama-bench: the mean of its `-r` runs. Models (`--models`): `int4` is
`int4(group=32, zero=float, scale=f16)` on every projection, Q4_1's own grid (rounding
the dequantized file to it gives back exactly the GGUF's weights, docs/models.md), at
equal weight bits with llama.cpp's Q4_1; `dense` is the same weights in float32. Before
timing, each model's logits on a few tokens are checked against NumpyLlama on the weights
its kernels read. numpy's BLAS (the lm head) gets as many threads as the kernels.

`--profile` splits one decode run (1 thread) by where the time goes, from cProfile: the
layer calls (and within them the native kernels), the lm head, the norms, RoPE tables
and the rest of the numpy glue. benchmarks/README.md says how to build llama-bench.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
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
MODELS = {"int4": Q4_1_GRID, "dense": "dense"}
LABELS = {"int4": "ours int4 g32 zero=float", "dense": "ours dense f32", "llama.cpp": "llama.cpp Q4_1"}
FIRST_TOKEN = 1000
"""The token ids timed are FIRST_TOKEN, FIRST_TOKEN + 1, ... (any ids do: nothing is sampled)."""


def build(weights: LlamaWeights, name: str) -> CompiledLlama:
    """The compiled model `name` (MODELS), its projections packed by round to nearest."""
    layout = MODELS[name]
    packed = None if layout == "dense" else compress_model(weights, (layout, layout), [], "rtn").packed
    return CompiledLlama(weights, (layout, layout), packed=packed)


def check(model: CompiledLlama, tokens: int = 8) -> None:
    """The model's logits against numpy's on the weights its kernels read."""
    ids = list(range(FIRST_TOKEN, FIRST_TOKEN + tokens))
    got = model.forward(ids, model.empty_cache())[0]
    ref = NumpyLlama(model.weights_read())
    want = ref.forward(ids, ref.empty_cache())[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))


def prefill(model: CompiledLlama, n: int) -> None:
    model.forward(np.arange(FIRST_TOKEN, FIRST_TOKEN + n), model.empty_cache(), last=True)


def decode(model: CompiledLlama, n: int) -> None:
    cache = model.empty_cache()
    for i in range(n):
        _, cache = model.forward([FIRST_TOKEN + i], cache, last=True)


def best_tokens_per_s(run: Callable[[], None], tokens: int, repeat: int) -> float:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return tokens / min(seconds)


def set_threads(model: CompiledLlama, threads: int) -> None:
    for kernel in model.kernels:
        kernel.threads = threads


def ours(model: CompiledLlama, threads: int, p: int, n: int, repeat: int) -> dict[str, float]:
    set_threads(model, threads)
    with library_threads(threads):
        return {
            f"pp{p}": best_tokens_per_s(lambda: prefill(model, p), p, repeat),
            f"tg{n}": best_tokens_per_s(lambda: decode(model, n), n, repeat),
        }


PARTS = {  # (file name, function name) -> part; cumulative times, "native" within "layers"
    ("llama_model.py", "block"): "layers (30 calls)",
    ("kernel.py", "_run"): "  of which native kernels",
    ("llama.py", "project"): "lm head (49,152 x 576 f32, numpy)",
    ("llama.py", "rms_norm"): "final RMSNorm",
    ("llama.py", "rope_tables"): "RoPE tables",
}


def profile_decode(model: CompiledLlama, n: int) -> dict[str, float]:
    """Milliseconds per decoded token by part (PARTS; "total" and "other glue": embeddings,
    cache list, argument checks), from cProfile over decode(model, n) on one thread. cProfile
    adds ~1 µs per Python call, charged to the glue."""
    set_threads(model, 1)
    profiler = cProfile.Profile()
    with library_threads(1):
        profiler.runcall(decode, model, n)
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    ms = dict.fromkeys(PARTS.values(), 0.0)
    for (file, _, func), (_, _, _, cumulative, _) in stats.items():
        part = PARTS.get((Path(file).name, func))
        if part is not None:
            ms[part] += 1e3 * cumulative / n
        if func == "decode" and Path(file).name == Path(__file__).name:
            ms["total"] = 1e3 * cumulative / n
    ms["other glue"] = ms["total"] - sum(v for k, v in ms.items() if k in PARTS.values() and not k.startswith(" "))
    return ms


def llama_bench(path: Path, gguf: Path, threads: list[int], p: int, n: int, repeat: int) -> dict[int, dict[str, float]]:
    """llama-bench's mean tokens/s per thread count and test (ppP, tgN), from its JSON output."""
    command = [str(path), "-m", str(gguf), "-p", str(p), "-n", str(n), "-r", str(repeat),
               "-t", ",".join(map(str, threads)), "-o", "json"]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    figures: dict[int, dict[str, float]] = {}
    for test in json.loads(out):
        name = f"pp{test['n_prompt']}" if test["n_prompt"] else f"tg{test['n_gen']}"
        figures.setdefault(int(test["n_threads"]), {})[name] = float(test["avg_ts"])
    return figures


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
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="split a decode run by part, 1 thread")
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
    if args.llama_bench:
        figures["llama.cpp"] = llama_bench(args.llama_bench, gguf, threads, args.prompt, args.gen, args.repeat)
    for name in names:
        model = build(weights, name)
        check(model)
        figures[name] = {t: ours(model, t, args.prompt, args.gen, args.repeat) for t in threads}
        if args.profile:
            data["profile"][name] = profile_decode(model, args.gen)
    data["load_avg_end"] = list(os.getloadavg())
    print(f"SmolLM2-135M-Instruct, tokens/s ({gguf.name}); load average {data['load_avg'][0]:.2f} at the start, "
          f"{data['load_avg_end'][0]:.2f} at the end")  # fmt: skip
    print(table(figures, threads, tests))
    for name, parts in data["profile"].items():
        print(f"\n{LABELS[name]}, decode, 1 thread, ms per token (cProfile):")
        for part, ms in parts.items():
            print(f"  {part:36} {ms:7.2f}")
    if args.json:
        write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
