"""`stoicc explore MODEL.gguf`: weight formats tried on a whole LLaMA-family model.

Each candidate (a layout, the compression method that fills it, pack() options) compresses
every projection of the model layer by layer (llama_model.compress_model, calibrated on a
text), and is judged by perplexity: per layer (only that layer compressed, the others as
they were, on a short text) and for the whole model; its bytes come from the packed
tensors, its CPU time and accelerator cycles and energy from the compiled `linear` kernel
of each distinct projection shape (explore.measure), times the matrices of that shape.
From the per-layer figures, `propose` picks one candidate (or float32) per layer on the
Pareto front of bytes against summed perplexity increase, for a byte budget, and writes
it as a recipe of stoicc_py/compress.py. The candidates' evaluations are independent and
deterministic: `evaluate_all` runs them in order, or on a Dask cluster with the same
results. docs/explore.md shows it on SmolLM2-135M.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from stoicc_py.benchmarks.kernels import Format
from stoicc_py.explore import A8, Calibration, Candidate, Kernels, Settings, measure
from stoicc_py.models.llama import decoder_block, rms_norm, rope_tables
from stoicc_py.models.llama_model import LlamaWeights, NumpyLlama, compress_model, log_softmax, perplexity
from stoicc_py.packing import PackedTensor

Array = np.ndarray[Any, Any]
HYBRID = "hybrid(tile=[64, 64], formats=[dense, nm(2, 4)])"
DENSE = "dense"
"""The key of the uncompressed model (float32), every layer's fallback in a proposal."""


@dataclass(frozen=True)
class ModelCandidate:
    """A format for every projection of the model: a layout, the method that fills it, pack() options."""

    key: str
    layout: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.options.items())
        return f"{self.layout} by {self.method}{extra}"


def model_candidates() -> dict[str, ModelCandidate]:
    """Every candidate `stoicc explore MODEL.gguf` knows, by key, in the order of its table."""
    chosen = [
        ModelCandidate("int8", "int8(axis=0)", "rtn"),
        ModelCandidate("int4-g32-rtn", "int4(group=32)", "rtn"),
        ModelCandidate("int4-g32", "int4(group=32)", "gptq"),
        ModelCandidate("int4-g32-float", "int4(group=32, zero=float, scale=f16)", "rtn"),
        ModelCandidate("int4-g64", "int4(group=64)", "gptq"),
        ModelCandidate("int4-g128", "int4(group=128)", "gptq"),
        ModelCandidate("int3-g32", "int3(group=32)", "gptq"),
        ModelCandidate("nm24-magnitude", "nm(2, 4)", "magnitude"),
        ModelCandidate("nm24", "nm(2, 4)", "sparsegpt"),
        ModelCandidate("nm24-int4", "nm(2, 4) with int4(group=32)", "sparsegpt"),
        ModelCandidate("hybrid12.5", HYBRID, "sparsegpt", {"sparsity": 0.125}),
        ModelCandidate("hybrid25", HYBRID, "sparsegpt", {"sparsity": 0.25}),
    ]
    return {c.key: c for c in chosen}


@dataclass(frozen=True)
class Texts:
    """The token windows of the calibration, the short text of the per-layer perplexities
    (one window) and the windows of the whole-model perplexity."""

    calibration: list[list[int]]
    layer_tokens: list[int]
    eval_tokens: list[int]
    window: int


@dataclass
class Evaluation:
    """One candidate on the model: deterministic, so a Dask run gives the same (`seconds` aside)."""

    key: str
    layer_bytes: list[int] = field(default_factory=list)
    """Per layer, its projections' packed bytes."""
    layer_ppl: list[float] = field(default_factory=list)
    """Per layer, the short text's perplexity with only that layer compressed."""
    ppl: float | None = None
    """The whole model compressed, on the evaluation text."""
    error: str | None = None
    seconds: float = 0.0
    """compress_model's time."""
    packed: list[dict[str, PackedTensor]] = field(default_factory=list, repr=False)


def layer_perplexities(weights: LlamaWeights, layers: Sequence[dict[str, Array]], tokens: Sequence[int]) -> list[float]:
    """Per layer i, the perplexity of `tokens` (one window) through `weights` with its layer i
    replaced by `layers[i]`; the unchanged layers before i run once for all i."""
    c = weights.config
    cos, sin = rope_tables(np.arange(len(tokens)), c)
    empty = np.zeros((c.kv_heads, 0, c.head_dim), np.float32)

    def run(x: Array, blocks: Sequence[dict[str, Array]]) -> Array:
        for w in blocks:
            x = decoder_block(x, cos, sin, empty, empty, w, c)[0]
        return x

    x, out = weights.embed[np.asarray(tokens)], []
    for i, layer in enumerate(layers):
        y = run(run(x, [layer]), weights.layers[i + 1 :])
        out.append(_perplexity_of(rms_norm(y, weights.norm, c.rms_eps) @ weights.lm_head.T, tokens))
        x = run(x, [weights.layers[i]])
    return out


def _perplexity_of(logits: Array, tokens: Sequence[int]) -> float:
    logp = log_softmax(logits.astype(np.float64))
    return float(np.exp(-logp[np.arange(len(tokens) - 1), np.asarray(tokens[1:])].mean()))


def baseline(weights: LlamaWeights, texts: Texts) -> Evaluation:
    """The uncompressed model, as an Evaluation: its projections' float32 bytes."""
    layer_bytes = [sum(w.nbytes for w in layer.values() if w.ndim == 2) for layer in weights.layers]
    layer_ppl = layer_perplexities(weights, weights.layers, texts.layer_tokens)
    return Evaluation(DENSE, layer_bytes, layer_ppl, perplexity(NumpyLlama(weights), texts.eval_tokens, texts.window))


def evaluate(weights: LlamaWeights, texts: Texts, cand: ModelCandidate) -> Evaluation:
    """`cand` on every layer: compress_model, then the per-layer and whole-model perplexities.
    A method or layout that the packer refuses gives an Evaluation with its message."""
    try:
        out = compress_model(weights, (cand.layout, cand.layout), texts.calibration, cand.method, **cand.options)
    except ValueError as err:
        return Evaluation(cand.key, error=str(err))
    layer_bytes = [sum(t.nbytes for t in p.values()) for p in out.packed]
    layer_ppl = layer_perplexities(weights, out.weights.layers, texts.layer_tokens)
    ppl = perplexity(NumpyLlama(out.weights), texts.eval_tokens, texts.window)
    return Evaluation(cand.key, layer_bytes, layer_ppl, ppl, seconds=out.seconds, packed=out.packed)


def evaluate_all(weights: LlamaWeights, texts: Texts, chosen: Sequence[ModelCandidate], scheduler: str | None = None,
                 workers: int = 2, processes: bool = True,
                 on_result: Callable[[Evaluation], None] | None = None) -> list[Evaluation]:  # fmt: skip
    """The baseline, then `evaluate` for each candidate, in this order: serially without
    `scheduler`; on a Dask LocalCluster of `workers` (processes or threads) for "local";
    else on the Dask scheduler at that address (whose workers import stoicc_py)."""
    tasks: list[tuple[Callable[..., Evaluation], tuple[Any, ...]]] = [(baseline, ())]
    tasks += [(evaluate, (c,)) for c in chosen]
    if scheduler is None:
        results = []
        for fn, args in tasks:
            results.append(fn(weights, texts, *args))
            if on_result:
                on_result(results[-1])
        return results
    return _on_dask(weights, texts, tasks, scheduler, workers, processes, on_result)


def dask_distributed() -> Any:
    """The dask.distributed module, or a ModuleNotFoundError that says how to install it."""
    try:
        from dask import distributed
    except ModuleNotFoundError:
        raise ModuleNotFoundError("--dask/--scheduler need dask.distributed: pip install -e '.[distributed]'") from None
    return distributed


def _on_dask(weights: LlamaWeights, texts: Texts, tasks: list[tuple[Callable[..., Evaluation], tuple[Any, ...]]],
             scheduler: str, workers: int, processes: bool,
             on_result: Callable[[Evaluation], None] | None) -> list[Evaluation]:  # fmt: skip
    dd = dask_distributed()
    if scheduler == "local":
        cluster = dd.LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=":0")
        client = dd.Client(cluster)
    else:
        cluster, client = None, dd.Client(scheduler)
    try:
        # the model once to every worker, not once per task
        shared_weights, shared_texts = client.scatter([weights, texts], broadcast=True)
        futures = [client.submit(fn, shared_weights, shared_texts, *args, pure=False) for fn, args in tasks]
        for future in dd.as_completed(futures):
            if on_result:
                on_result(future.result())
        return [f.result() for f in futures]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---------------------------------------------------------------------------- kernel costs


@dataclass
class Cost:
    """A format's compiled `linear` kernels over all of a model's projections: CPU time on
    `rows` rows (x f32, as the compiled model runs it), and the accelerator's cycles and
    energy on `accel_rows` rows with x quantized to int8 per token (it multiplies integers)."""

    cpu_ms: float | None = None
    accel_cycles: int | None = None
    accel_energy_uj: float | None = None
    cpu_error: str | None = None
    accel_error: str | None = None


def shape_counts(weights: LlamaWeights) -> dict[tuple[int, int], int]:
    """How many projections of each shape [N, K] the model has."""
    counts: dict[tuple[int, int], int] = {}
    for layer in weights.layers:
        for w in layer.values():
            if w.ndim == 2:
                counts[w.shape] = counts.get(w.shape, 0) + 1
    return counts


def kernel_cost(weights: LlamaWeights, key: str, layout: str, options: dict[str, Any], calibration: Calibration,
                kernels: Kernels, settings: Settings) -> Cost:  # fmt: skip
    """`layout`'s kernels measured (explore.measure) on the first layer's matrix of each shape,
    each time multiplied by the model's matrices of that shape and summed. The timed weights
    are pruned by magnitude where the layout is sparse: a kernel's time does not depend on
    which weights the method kept."""
    sparse = layout.startswith(("nm", "hybrid"))
    sparsity = float(options.get("sparsity", 0.0))
    cpu = Candidate(Format(key, key, "" if layout == DENSE else layout, sparse=sparse), sparsity)
    accel = Candidate(replace(cpu.fmt, key=f"{key}-a8", body=A8), sparsity)  # Kernels knows kernels by key
    first = {w.shape: (n, w) for n, w in reversed(weights.layers[0].items()) if w.ndim == 2}
    counts, on_cpu, on_accel = shape_counts(weights), [], []
    for shape in counts:
        name, w = first[shape]
        x = calibration.activations(name, shape[1])
        exact = x.astype(np.float64) @ w.T.astype(np.float64)
        on_cpu.append(measure(cpu, name, w, x, exact, kernels, settings))
        on_accel.append(measure(accel, name, w, x, exact, kernels, settings))
    n = list(counts.values())
    return Cost(
        _total([r.cpu_ms for r in on_cpu], n),
        _total([r.accel_cycles for r in on_accel], n),
        _total([r.accel_energy_uj for r in on_accel], n),
        next((r.error for r in on_cpu if r.error), None),
        next((r.error or r.accel_error for r in on_accel if r.error or r.accel_error), None),
    )


def _total(values: Sequence[Any], counts: Sequence[int]) -> Any:
    """sum(count x value), None if a value is missing (its format refused on some shape)."""
    return None if any(v is None for v in values) else sum(c * v for c, v in zip(counts, values))


# ---------------------------------------------------------------------------- the proposal


@dataclass(frozen=True)
class Proposal:
    """One candidate key per layer (DENSE: left float32), its bytes and the summed per-layer
    perplexity increase it is predicted to cost."""

    choice: list[str]
    bytes: int
    predicted_delta: float


def propose(evaluations: Sequence[Evaluation], budget: int) -> Proposal:
    """Per layer, the option of each evaluated candidate (its bytes, its perplexity increase
    over the baseline when only that layer is compressed) or float32; the choice that fits
    `budget` bytes with the least summed increase along the lower convex hull of these sums
    (the additive Pareto front): every layer starts at its smallest option, then the
    upgrades of best perplexity gained per byte are taken in turn while they fit. ValueError
    when even the smallest options exceed `budget`."""
    base = next(e for e in evaluations if e.key == DENSE)
    usable = [e for e in evaluations if e.error is None]
    hulls = [_hull([(e.layer_bytes[i], e.layer_ppl[i] - base.layer_ppl[i], e.key) for e in usable])
             for i in range(len(base.layer_bytes))]  # fmt: skip
    at = [0] * len(hulls)
    total = sum(h[0][0] for h in hulls)
    if total > budget:
        raise ValueError(f"--budget {budget:,} bytes: the smallest choice per layer takes {total:,}")
    # a hull's rates fall, so this order takes each layer's upgrades in turn
    steps = sorted(
        ((h[j + 1][1] - h[j][1]) / (h[j + 1][0] - h[j][0]), i, j)
        for i, h in enumerate(hulls)
        for j in range(len(h) - 1)
    )
    for _, i, j in steps:
        grow = hulls[i][j + 1][0] - hulls[i][j][0]
        if total + grow > budget:
            break
        at[i], total = j + 1, total + grow
    chosen = [h[a] for h, a in zip(hulls, at)]
    return Proposal([c[2] for c in chosen], total, float(sum(c[1] for c in chosen)))


def _hull(options: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
    """The options on the lower convex hull of (bytes, increase), by bytes: each one more
    bytes and less increase than the one before, at a falling rate."""
    front: list[tuple[int, float, str]] = []
    for o in sorted(options):
        if front and o[1] >= front[-1][1]:
            continue  # no better than a smaller option
        while len(front) >= 2 and _cross(front[-2], front[-1], o) <= 0:
            front.pop()
        front.append(o)
    return front


def _cross(a: tuple[int, float, str], b: tuple[int, float, str], c: tuple[int, float, str]) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def proposed_weights(weights: LlamaWeights, evaluations: Sequence[Evaluation], proposal: Proposal) -> LlamaWeights:
    """The model of the proposal: each layer as its candidate's run compressed it."""
    by_key = {e.key: e for e in evaluations}
    layers = [
        w if key == DENSE else w | {n: t.unpack() for n, t in by_key[key].packed[i].items()}
        for i, (w, key) in enumerate(zip(weights.layers, proposal.choice))
    ]
    return replace(weights, layers=layers)


def recipe_text(proposal: Proposal, chosen: dict[str, ModelCandidate], header: str) -> str:
    """The proposal as a recipe (docs/compress.md) over the GGUF file's tensor names, one
    entry per layer: `blk.I.*` (norms are 1-D and stay dense; embeddings match nothing)."""
    lines = [f"# {line}" for line in header.splitlines()] + ["", "[layers]"]
    for i, key in enumerate(proposal.choice):
        if key == DENSE:
            lines.append(f'"blk.{i}.*" = {{layout = "dense"}}')
            continue
        c = chosen[key]
        options = ", ".join(f"{k} = {v!r}" for k, v in c.options.items())
        extra = f", options = {{{options}}}" if options else ""
        lines.append(f'"blk.{i}.*" = {{layout = "{c.layout}", method = "{c.method}"{extra}}}')
    return "\n".join(lines) + "\n"
