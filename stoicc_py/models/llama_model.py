"""A whole LLaMA-family model: embeddings -> decoder layers -> final RMSNorm -> lm head,
with a key/value cache per layer; its perplexity on a text and greedy generation.

The layers run either in numpy (`NumpyLlama`, stoicc_py.models.llama.decoder_block: the
reference) or on compiled kernels (`CompiledLlama`: examples/llama_block.tdsl rendered for
the model's configuration, one program for all layers whose weights are its arguments,
one per distinct pair of layouts when layers differ). docs/models.md shows them at work.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np

import stoicc_py
from stoicc_py.dialects.layout import DenseLayoutAttr
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.models.layerwise import Hook, Layerwise, compress_layers
from stoicc_py.models.llama import (
    BLOCK_WEIGHTS,
    FUSED,
    FUSED_WEIGHTS,
    LlamaConfig,
    block_shapes,
    block_source,
    decoder_block,
    project,
    random_block,
    rms_norm,
    rope_tables,
)
from stoicc_py.packing import PackedTensor
from stoicc_py.packing.quant import fake_quantize
from stoicc_py.packing.tensor import aligned_empty

Array = np.ndarray[Any, Any]
Cache = list[tuple[Array, Array]]
"""Per layer, the keys and values [kv_heads, P, head_dim] of the P tokens seen so far."""
Layouts = tuple[str, str] | Sequence[tuple[str, str]]
"""(attention projections' layout, MLP's) for every layer, or one such pair per layer."""


@dataclass
class LlamaWeights:
    config: LlamaConfig
    embed: Array  # [vocab, hidden]
    layers: list[dict[str, Array]]  # per layer, BLOCK_WEIGHTS
    norm: Array  # [hidden], the final RMSNorm's gain
    lm_head: Array  # [vocab, hidden]; the embeddings themselves when tied


def random_llama(c: LlamaConfig, layers: int, vocab: int, seed: int = 0) -> LlamaWeights:
    """A synthetic model of `layers` random layers (random_block) with tied embeddings."""
    rng = np.random.default_rng(seed)
    embed = rng.standard_normal((vocab, c.hidden)).astype(np.float32)
    norm = (1.0 + 0.1 * rng.standard_normal(c.hidden)).astype(np.float32)
    return LlamaWeights(c, embed, [random_block(c, rng) for _ in range(layers)], norm, embed)


def per_layer_layouts(layouts: Layouts, n: int) -> list[tuple[str, str]]:
    per_layer = cast("list[tuple[str, str]]", [layouts] * n if isinstance(layouts[0], str) else list(layouts))
    if len(per_layer) != n:
        raise ValueError(f"{len(per_layer)} layout pairs for {n} layers")
    return per_layer


class LlamaRunner:
    """The model around its decoder layers; a subclass runs the layers (`block`)."""

    def __init__(self, weights: LlamaWeights, activations: str | None = None):
        self.weights = weights
        self.config = weights.config
        self.activations = activations
        """A layout (e.g. `int8(per=token)`) that every projection's input, the lm head's
        too, is quantized to at run time; None: float32 inputs."""

    def rounded(self, a: Array) -> Array:
        """A projection's input as the projection reads it: fake-quantized to `activations`
        (as f32 rows, the kernels' way), or as it is."""
        if self.activations is None:
            return a
        rows = a.reshape(-1, a.shape[-1]).astype(np.float32)
        return fake_quantize(rows, self.activations).reshape(a.shape).astype(a.dtype)

    def block(self, i: int, x: Array, cos: Array, sin: Array, k_cache: Array, v_cache: Array) -> tuple[Array, ...]:
        raise NotImplementedError

    def head(self, x: Array) -> Array:
        """The lm head: logits [..., vocab] of the final-normed x [..., hidden]."""
        return project(self.rounded(x), self.weights.lm_head)

    def empty_cache(self, batch: tuple[int, ...] = ()) -> Cache:
        """No tokens seen yet, for one sequence, or a `batch` of them (NumpyLlama only)."""
        c = self.config
        empty = np.zeros((*batch, c.kv_heads, 0, c.head_dim), np.float32)
        return [(empty, empty)] * len(self.weights.layers)

    def forward(self, tokens: Sequence[int] | Array, cache: Cache, last: bool = False) -> tuple[Array, Cache]:
        """Logits [..., T, vocab] of the T new `tokens` [..., T] after those of `cache`, and the
        cache after them (leading dims: a batch of sequences, as the cache has them). `last`:
        the last token's logits only, [..., 1, vocab] (what generation reads: a prefill then
        runs the lm head, 49,152 × 576 for SmolLM2, on one row, as llama.cpp's does)."""
        w, c = self.weights, self.config
        tokens = np.asarray(tokens)
        p = cache[0][0].shape[-2]
        cos, sin = rope_tables(np.arange(p, p + tokens.shape[-1]), c)
        x = w.embed[tokens]
        new_cache = []
        for i, (keys, values) in enumerate(cache):
            x, keys, values = self.block(i, x, cos, sin, keys, values)
            new_cache.append((keys, values))
        if last:
            x = x[..., -1:, :]
        return self.head(rms_norm(x, w.norm, c.rms_eps)), new_cache


class NumpyLlama(LlamaRunner):
    """The layers in numpy: the reference (with `activations`, CompiledLlama's up to f32
    rounding: the same rounded inputs, multiplied in float)."""

    def block(self, i: int, x: Array, cos: Array, sin: Array, k_cache: Array, v_cache: Array) -> tuple[Array, ...]:
        w = self.weights.layers[i]
        linear = None if self.activations is None else lambda name, a: project(self.rounded(a), w[name])
        return decoder_block(x, cos, sin, k_cache, v_cache, w, self.config, linear)


class CompiledLlama(LlamaRunner):
    """The layers on compiled kernels. `layouts` is a pair (attention projections' layout,
    MLP's) for every layer, or one pair per layer; each distinct pair compiles one program,
    and each layer's weights are packed once, here, with `pack_options` (as for
    stoicc_py.pack: prune, calibrate, ...), but for those `packed` gives per layer already
    packed (compress_model's). `lm_head`: the lm head's layout on a compiled `linear`
    kernel, its weight rounded to nearest (`int8(group=32, scale=f16)` is Q8_0's grid: for
    SmolLM2's file, whose embeddings are Q8_0, exactly its weights); None: numpy, float32.
    `activations` (e.g. `int8(per=token)`): the projections' inputs quantized to it per call
    (block_source's), and the compiled lm head's, so that integer weights meet integer
    activations (W4A8, W8A8). `fuse`: where every layer of a layout pair allows it
    (`stack_rows`), its program is block_source's fused one, q/k/v and gate/up each one
    product of their packed weights stacked by rows: the same weights, read in fewer, longer
    products (a decoded token's layer runs 4 products, not 7: 4 parallel loops on 2 threads)."""

    def __init__(self, weights: LlamaWeights, layouts: tuple[str, str] | Sequence[tuple[str, str]] = ("dense", "dense"),
                 threads: int | None = None, pack_options: dict[str, Any] | None = None,
                 packed: Sequence[dict[str, PackedTensor]] | None = None, lm_head: str | None = None,
                 activations: str | None = None, fuse: bool = True):  # fmt: skip
        super().__init__(weights, activations)
        self.head_kernel: Any = None
        self.head_weight: Array | PackedTensor = weights.lm_head
        if lm_head is not None:
            vocab, hidden = weights.lm_head.shape
            x = f"quantize(x, {activations})" if activations else "x"
            source = (f"kernel lm_head(x: f32[T, {hidden}], w: f32[{vocab}, {hidden}] @ {lm_head}) "
                      f"-> f32[T, {vocab}] {{ return linear({x}, w) }}")  # fmt: skip
            self.head_kernel = stoicc_py.compile(source).lm_head
            self.head_kernel.threads = threads
            self.head_weight = self.head_kernel.pack("w", weights.lm_head)
        per_layer = per_layer_layouts(layouts, len(weights.layers))
        done = packed or [{}] * len(weights.layers)
        parts = [
            _pack_layer(layer, pair, p, pack_options or {}) for layer, pair, p in zip(weights.layers, per_layer, done)
        ]
        stacked = [_stack_layer(p) if fuse else None for p in parts]
        fused = {pair for pair in per_layer if all(s is not None for s, q in zip(stacked, per_layer) if q == pair)}
        programs = {pair: stoicc_py.compile(block_source(self.config, *pair, activations, pair in fused)).llama_block
                    for pair in set(per_layer)}  # fmt: skip
        for kernel in programs.values():
            kernel.threads = threads
        self.kernels = [programs[pair] for pair in per_layer]
        self.fused = [pair in fused for pair in per_layer]
        """Per layer, whether its program is the fused one (args in FUSED_WEIGHTS' order)."""
        self.args = [[s[n] for n in FUSED_WEIGHTS] if f and s else [p[n] for n in BLOCK_WEIGHTS]
                     for f, s, p in zip(self.fused, stacked, parts)]  # fmt: skip

    def weights_read(self) -> LlamaWeights:
        """The model with the weights the kernels read (pruned, dequantized): what NumpyLlama
        must run to give this model's output up to rounding."""

        def read(a: Any) -> Array:
            return getattr(a, "unpack", lambda: a)()

        shapes = block_shapes(self.config)
        layers = []
        for fused, args in zip(self.fused, self.args):
            layer = {n: read(a) for n, a in zip(FUSED_WEIGHTS if fused else BLOCK_WEIGHTS, args)}
            for name, names in FUSED.items() if fused else ():
                bounds = np.cumsum([shapes[n][0] for n in names])[:-1]
                layer.update(zip(names, np.split(layer.pop(name), bounds)))
            layers.append(layer)
        return replace(self.weights, layers=layers, lm_head=read(self.head_weight))

    def block(self, i: int, x: Array, cos: Array, sin: Array, k_cache: Array, v_cache: Array) -> tuple[Array, ...]:
        out = self.kernels[i](x, cos, sin, k_cache, v_cache, *self.args[i])
        assert isinstance(out, tuple)  # the block returns (x, keys, values)
        return out

    def head(self, x: Array) -> Array:
        if self.head_kernel is None:
            return super().head(x)
        logits = self.head_kernel(np.ascontiguousarray(x.reshape(-1, x.shape[-1])), self.head_weight)
        assert isinstance(logits, np.ndarray)  # one result
        return logits.reshape(*x.shape[:-1], logits.shape[-1])


def _pack_layer(layer: dict[str, Array], pair: tuple[str, str], packed: dict[str, PackedTensor],
                options: dict[str, Any]) -> dict[str, Array | PackedTensor]:  # fmt: skip
    """A layer's weights as its kernels read them: norms and dense projections as they are, the
    others `packed`'s or packed here in their layout (attention's or the MLP's) with `options`."""

    def arg(name: str) -> Array | PackedTensor:
        layout = pair[0] if name in ATTN else pair[1]
        if name.endswith("norm") or isinstance(parse_layout(layout), DenseLayoutAttr):
            return layer[name]
        return packed[name] if name in packed else stoicc_py.pack(layer[name], layout, **options)

    return {name: arg(name) for name in BLOCK_WEIGHTS}


def _stack_layer(parts: dict[str, Array | PackedTensor]) -> dict[str, Array | PackedTensor] | None:
    """The layer's arguments in FUSED_WEIGHTS' order, each FUSED weight its parts stacked by rows;
    None where a packed layout cannot stack them (stack_rows)."""
    args = dict(parts)
    for name, names in FUSED.items():
        if (stacked := stack_rows([parts[n] for n in names])) is None:
            return None
        args[name] = stacked
    return {name: args[name] for name in FUSED_WEIGHTS}


def stack_rows(parts: Sequence[Array | PackedTensor]) -> Array | PackedTensor | None:
    """The matrices `parts` stacked by rows (np.concatenate), in one storage: dense arrays, or
    packed tensors of one layout whose buffers, each stacked, hold them whole: cut_rows of the
    result gives back each part's buffers exactly (per-row or per-group codes and scales), so
    the stacked tensor holds the same values on the same grid. None where not (a scale for the
    whole tensor, a schedule of absolute offsets, calibrated input scales, mixed kinds)."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(cast("list[Array]", parts))
    if not all(isinstance(p, PackedTensor) for p in parts):
        return None
    packed = cast("list[PackedTensor]", parts)
    first = packed[0]
    if any(p.layout != first.layout or p.dtype != first.dtype or p.input_scale is not None for p in packed):
        return None
    arrays = {role: _read_only_stack([p.arrays[role] for p in packed]) for role in first.arrays}
    try:
        stacked = PackedTensor(
            first.layout, (sum(p.shape[0] for p in packed), first.shape[1]), arrays, dtype=first.dtype
        )
        stacked.validate()
        starts = np.cumsum([0, *(p.shape[0] for p in packed)])
        cuts = [stacked.cut_rows(int(a), int(b)) for a, b in zip(starts, starts[1:])]
    except ValueError:
        return None
    same = all(x.shape == y.shape and np.array_equal(x, y) for cut, p in zip(cuts, packed)
               for x, y in zip(cut, p.buffers()))  # fmt: skip
    return stacked if same else None


def _read_only_stack(arrays: list[Array]) -> Array:
    """np.concatenate of `arrays` into an aligned array that nothing can write, as pack()'s: a
    packed tensor of such arrays is validated once, not on every kernel call."""
    out = aligned_empty((sum(a.shape[0] for a in arrays), *arrays[0].shape[1:]), arrays[0].dtype)
    np.concatenate(arrays, out=out)
    view: object = out
    while isinstance(view, np.ndarray):  # the view and the buffer it cuts
        view.flags.writeable = False
        view = view.base
    return out


def log_softmax(logits: Array) -> Array:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def perplexity(model: LlamaRunner, tokens: Sequence[int], window: int) -> float:
    """exp of the mean negative log-likelihood of each token given those before it in its
    window: `tokens` cut into windows of `window` tokens, each run from an empty cache (the
    first token of a window is not predicted)."""
    nll, count = 0.0, 0
    for start in range(0, len(tokens) - 1, window):
        chunk = np.asarray(tokens[start : start + window])
        if len(chunk) < 2:
            break
        logp = log_softmax(model.forward(chunk, model.empty_cache())[0].astype(np.float64))
        nll -= float(logp[np.arange(len(chunk) - 1), chunk[1:]].sum())
        count += len(chunk) - 1
    return float(np.exp(nll / count))


def generate(model: LlamaRunner, prompt: Sequence[int], n: int) -> list[int]:
    """The `n` tokens greedy decoding gives after `prompt`: the prompt prefilled at once,
    then one token at a time against the cache."""
    logits, cache = model.forward(prompt, model.empty_cache(), last=True)
    out = [int(np.argmax(logits[-1]))]
    while len(out) < n:
        logits, cache = model.forward(out[-1:], cache, last=True)
        out.append(int(np.argmax(logits[-1])))
    return out[:n]


def sample(model: LlamaRunner, starts: Array, n: int, rng: np.random.Generator, temperature: float = 1.0) -> Array:
    """int32 [B, n]: B sequences sampled from `model` at `temperature`, sequence b starting
    with the tokens starts[b] ([B, S]; not in the result), all B decoded at once (one matrix
    product per projection and step): the data-free calibration text of LLM-QAT (Liu et al.
    2023). Each token is drawn by inverse CDF from one uniform of `rng`, so a seed fixes it."""
    starts = np.asarray(starts)
    logits, cache = model.forward(starts, model.empty_cache(starts.shape[:1]))
    out = np.empty((starts.shape[0], n), np.int32)
    for i in range(n):
        logp = log_softmax(logits[:, -1].astype(np.float64) / temperature)
        cdf = np.cumsum(np.exp(logp), axis=-1)
        u = rng.random(len(cdf))[:, None] * cdf[:, -1:]
        out[:, i] = np.minimum((cdf < u).sum(axis=-1), cdf.shape[-1] - 1)
        if i + 1 < n:
            logits, cache = model.forward(out[:, i : i + 1], cache)
    return out


# ---------------------------------------------------------------------------- layer-by-layer compression

INPUT_OF = {"wq": "attn_in", "wk": "attn_in", "wv": "attn_in", "wo": "attn_out",
            "w_gate": "mlp_in", "w_up": "mlp_in", "w_down": "mlp_act"}  # fmt: skip
"""Each projection's input: q/k/v share the normed input, gate/up the MLP's (one Hessian each)."""
ATTN = ("wq", "wk", "wv", "wo")
STAGES = (("wq", "wk", "wv"), ("wo",), ("w_gate", "w_up"), ("w_down",))
"""A layer's projections in the order their inputs are computed."""


@dataclass
class CompressedLlama:
    packed: list[dict[str, PackedTensor]]
    """Per layer, its packed projections (those not dense): CompiledLlama(..., packed=)."""
    weights: LlamaWeights
    """The model with the weights the packed tensors hold (unpacked): NumpyLlama runs it."""
    seconds: float


def calibration_windows(tokens: Sequence[int], window: int, stride: int | None = None) -> list[list[int]]:
    """`tokens` cut into windows of `window` tokens starting every `stride` (default: window),
    the last one cut short; overlapping windows see the same tokens in other contexts."""
    step = stride or window
    return [list(tokens[s : s + window]) for s in range(0, max(len(tokens) - 1, 1), step)]


BATCH_ROWS = 8192
"""Calibration tokens per batch of windows run through a layer at once (the attention scores
of 16 windows of 512 take ~75 MB)."""


def calibration_batches(windows: Sequence[Sequence[int]], rows: int = BATCH_ROWS) -> list[Array]:
    """The windows stacked into batches [b, T] of equal length T, at most `rows` tokens each."""
    by_length: dict[int, list[Sequence[int]]] = {}
    for t in windows:
        by_length.setdefault(len(t), []).append(t)
    return [np.asarray(same[i : i + max(1, rows // t)], np.int64)
            for t, same in by_length.items() for i in range(0, len(same), max(1, rows // t))]  # fmt: skip


def compress_model(weights: LlamaWeights, layouts: Layouts, calibration: Sequence[Sequence[int]],
                   method: str | tuple[str, str] = "gptq", sequential: bool = False,
                   **options: Any) -> CompressedLlama:  # fmt: skip
    """Each layer's projections packed in its layouts (as CompiledLlama takes them; "dense"
    stays dense) by `method` (one, or a pair: attention's, MLP's; any pack() method) with
    pack() `options`, calibrated as GPTQ does (stoicc_py.models.layerwise): the `calibration`
    token windows run through the model layer by layer (in batches of equal-length windows,
    calibration_batches), each layer seeing the outputs of the layers before it as
    compressed, and each projection compressed from the Hessian of its inputs there.
    `sequential` (GPTQ's true-sequential): o's inputs come from the compressed q/k/v,
    gate/up's from the layer's compressed attention, down's from compressed gate/up (one pass
    per stage, each stopped once its inputs are read); else all four inputs from one pass
    with the layer's original weights. Memory: one layer's Hessians and the calibration
    activations."""
    start = time.perf_counter()
    c = weights.config
    methods = (method, method) if isinstance(method, str) else method
    rules = [{n: (attn, methods[0]) if n in ATTN else (mlp, methods[1]) for n in INPUT_OF}
             for attn, mlp in per_layer_layouts(layouts, len(weights.layers))]  # fmt: skip
    batches = []
    for b in calibration_batches(calibration):
        cos, sin = rope_tables(np.arange(b.shape[1]), c)
        batches.append((weights.embed[b], cos, sin))

    def run(i: int, w: Mapping[str, Array], batch: _Batch, hook: Hook | None) -> _Batch:
        x, cos, sin = batch

        def linear(name: str, a: Array) -> Array:
            if hook is not None:
                hook(name, a.reshape(-1, a.shape[-1]))
            return project(a, w[name])

        empty = np.zeros((x.shape[0], c.kv_heads, 0, c.head_dim), np.float32)
        return decoder_block(x, cos, sin, empty, empty, dict(w), c, linear)[0], cos, sin

    out = compress_layers(Layerwise(weights.layers, INPUT_OF, run), rules, batches, STAGES if sequential else (),
                          **options)  # fmt: skip
    return CompressedLlama(out.packed, replace(weights, layers=out.layers), time.perf_counter() - start)


_Batch = tuple[Array, Array, Array]
"""A calibration batch through the layers: activations [b, T, hidden] and its RoPE tables."""
