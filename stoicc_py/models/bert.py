"""The MiniLM (BERT) encoder's forward pass in numpy, float32, as sentence-transformers runs
all-MiniLM-L6-v2: embeddings, post-LayerNorm encoder layers (exact erf GELU), mean pooling
over the attention mask, L2 normalisation.

Every linear layer goes through a `Linear` callable, so that the same forward pass runs
with numpy's matrix products (`NumpyLinear`) or compiled kernels
(stoicc_py.models.compiled.CompiledLinear).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from stoicc_py.models.layerwise import Hook, Layerwise, Rule, compress_layers
from stoicc_py.models.minilm import LINEAR_LAYERS, MiniLMConfig, config_of
from stoicc_py.models.weights import Array, Weights
from stoicc_py.packing import PackedTensor

_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


class Linear(Protocol):
    def __call__(self, name: str, x: Array, gelu: bool, /) -> Array:
        """Layer `name` (the prefix of its `.weight` and `.bias`) on x [rows, in], then GELU if
        `gelu`: float32 [rows, out]."""
        ...


def erf(x: Array) -> Array:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26), vectorised: numpy has none, and
    math.erf element by element would take most of the forward pass's time."""
    a = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + _ERF_P * a)
    poly = t * (_ERF_A[0] + t * (_ERF_A[1] + t * (_ERF_A[2] + t * (_ERF_A[3] + t * _ERF_A[4]))))
    return (np.sign(x) * (1.0 - poly * np.exp(-a * a))).astype(x.dtype)


def gelu(x: Array) -> Array:
    """The exact (erf) GELU, as BERT and the `gelu` of the language."""
    return 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))


class NumpyLinear:
    """The linear layers as numpy float32 products on `weights` (the fp32 model, or any
    weights of the same names, e.g. the dequantized and pruned ones of a compiled model)."""

    def __init__(self, weights: Mapping[str, Array]) -> None:
        self.weights = weights

    def __call__(self, name: str, x: Array, gelu_after: bool) -> Array:
        y = x @ self.weights[f"{name}.weight"].T + self.weights[f"{name}.bias"]
        return gelu(y) if gelu_after else y


def encode(weights: Weights, input_ids: Array, attention_mask: Array, linear: Linear | None = None) -> Array:
    """Sentence embeddings [sentences, hidden], L2-normalised, of token ids and their mask
    (both [sentences, tokens]); `linear` runs the linear layers (default: numpy on `weights`)."""
    config = config_of(weights)
    linear = linear or NumpyLinear(weights)
    hidden = _embeddings(weights, input_ids, config)
    for i in range(config.layers):
        hidden = _encoder_layer(weights, f"encoder.layer.{i}", hidden, attention_mask, config, linear)
    return _mean_pool(hidden, attention_mask)


def layer_inputs(weights: Weights, input_ids: Array, attention_mask: Array) -> dict[str, Array]:
    """The input x [tokens, in] of every linear layer in the fp32 forward pass, for the tokens
    the mask keeps (padding rows dropped): calibration activations."""
    recorder = _InputRecorder(weights, attention_mask.reshape(-1) > 0)
    encode(weights, input_ids, attention_mask, recorder)
    return recorder.inputs


class _InputRecorder(NumpyLinear):
    def __init__(self, weights: Weights, keep: Array) -> None:
        super().__init__(weights)
        self.keep, self.inputs = keep, dict[str, Array]()

    def __call__(self, name: str, x: Array, gelu_after: bool) -> Array:
        self.inputs[name] = x[self.keep]
        return super().__call__(name, x, gelu_after)


def layer_norm(x: Array, gain: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mean).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(eps)) * gain + bias


def softmax(x: Array) -> Array:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _norm(weights: Weights, name: str, x: Array, config: MiniLMConfig) -> Array:
    return layer_norm(x, weights[f"{name}.weight"], weights[f"{name}.bias"], config.eps)


def _embeddings(weights: Weights, input_ids: Array, config: MiniLMConfig) -> Array:
    """[sentences * tokens, hidden]: word + position + token type 0, normalised."""
    tokens = input_ids.shape[1]
    if input_ids.size and not 0 <= input_ids.min() <= input_ids.max() < config.vocab:
        raise ValueError(
            f"token ids must be in 0..{config.vocab - 1} (the vocabulary), got {input_ids.min()}..{input_ids.max()}"
        )
    if tokens > config.positions:
        raise ValueError(f"{tokens} tokens, more than the {config.positions} positions of the model")
    x = (
        weights["embeddings.word_embeddings.weight"][input_ids]
        + weights["embeddings.position_embeddings.weight"][:tokens]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    return _norm(weights, "embeddings.LayerNorm", x.reshape(-1, config.hidden), config)


def _encoder_layer(weights: Weights, prefix: str, x: Array, mask: Array, config: MiniLMConfig, linear: Linear) -> Array:
    attended = linear(f"{prefix}.attention.output.dense", _attention(prefix, x, mask, config, linear), False)
    x = _norm(weights, f"{prefix}.attention.output.LayerNorm", attended + x, config)
    expanded = linear(f"{prefix}.intermediate.dense", x, True)
    return _norm(weights, f"{prefix}.output.LayerNorm", linear(f"{prefix}.output.dense", expanded, False) + x, config)


def _attention(prefix: str, x: Array, mask: Array, config: MiniLMConfig, linear: Linear) -> Array:
    """Multi-head self-attention over each sentence's tokens (padding masked out), before the
    output projection: [sentences * tokens, hidden]."""
    sentences, tokens = mask.shape
    q, k, v = (
        linear(f"{prefix}.attention.self.{part}", x, False)
        .reshape(sentences, tokens, config.heads, -1)
        .transpose(0, 2, 1, 3)
        for part in ("query", "key", "value")
    )
    # Padding keys get the lowest float, as in transformers: exp() makes their weight 0.
    padding = np.where(mask[:, None, None, :] > 0, np.float32(0), np.finfo(np.float32).min)
    scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(q.shape[-1])) + padding
    context = softmax(scores) @ v
    return context.transpose(0, 2, 1, 3).reshape(sentences * tokens, config.hidden)


def _mean_pool(hidden: Array, mask: Array) -> Array:
    tokens = hidden.reshape(*mask.shape, -1)
    weight = mask[..., None].astype(np.float32)
    mean = (tokens * weight).sum(axis=1) / np.maximum(weight.sum(axis=1), np.float32(1e-9))
    norm: Any = np.linalg.norm(mean, axis=1, keepdims=True)
    return mean / np.maximum(norm, np.float32(1e-12))


# ---------------------------------------------------------------------------- layer-by-layer compression

INPUT_OF = {"attention.self.query": "x", "attention.self.key": "x", "attention.self.value": "x",
            "attention.output.dense": "context", "intermediate.dense": "attended", "output.dense": "expanded"}  # fmt: skip
"""Each linear layer's input within an encoder layer: query, key and value share one Hessian."""
STAGES = (LINEAR_LAYERS[:3], LINEAR_LAYERS[3:4], LINEAR_LAYERS[4:5], LINEAR_LAYERS[5:])
"""The linear layers in the order their inputs are computed (true-sequential calibration)."""


def compress_minilm(weights: Weights, rule: Rule | Mapping[str, Rule], input_ids: Array, attention_mask: Array,
                    batch: int = 64, sequential: bool = True, **options: Any) -> tuple[Weights, list[dict[str, PackedTensor]]]:  # fmt: skip
    """Every linear layer's weight packed as `rule` says ((layout, method), or one per LINEAR_LAYERS
    name) with pack() `options`, calibrated layer by layer on the sentences `input_ids` and
    `attention_mask` (stoicc_py.models.layerwise: each layer's Hessians from the sentences run
    through the compressed layers before it, padding dropped), `batch` sentences at a time.
    Returns the weights with the packed ones' values (NumpyLinear runs them) and, per encoder
    layer, its packed weights by LINEAR_LAYERS name."""
    config = config_of(weights)
    rules = dict.fromkeys(LINEAR_LAYERS, rule) if isinstance(rule, tuple) else dict(rule)

    def run(i: int, layer: Mapping[str, Array], b: tuple[Array, Array], hook: Hook | None) -> tuple[Array, Array]:
        hidden, mask = b
        linear = _LayerLinear(weights, f"encoder.layer.{i}", layer, mask.reshape(-1) > 0, hook)
        return _encoder_layer(weights, f"encoder.layer.{i}", hidden, mask, config, linear), mask

    layers = [{n: weights[f"encoder.layer.{i}.{n}.weight"] for n in LINEAR_LAYERS} for i in range(config.layers)]
    batches = [
        (_embeddings(weights, input_ids[s : s + batch], config), attention_mask[s : s + batch])
        for s in range(0, len(input_ids), batch)
    ]
    stages = STAGES if sequential else ()
    out = compress_layers(Layerwise(layers, INPUT_OF, run), [rules] * config.layers, batches, stages, **options)
    compressed = {f"encoder.layer.{i}.{n}.weight": w for i, layer in enumerate(out.layers) for n, w in layer.items()}
    return dict(weights) | compressed, out.packed


class _LayerLinear(NumpyLinear):
    """Encoder layer `prefix`'s linear layers in numpy with weights `layer` (by LINEAR_LAYERS
    name), giving `hook` each one's input rows that `keep` keeps (the real tokens)."""

    def __init__(self, weights: Weights, prefix: str, layer: Mapping[str, Array], keep: Array, hook: Hook | None):
        super().__init__({**weights, **{f"{prefix}.{n}.weight": w for n, w in layer.items()}})
        self.prefix, self.keep, self.hook = prefix, keep, hook

    def __call__(self, name: str, x: Array, gelu_after: bool) -> Array:
        if self.hook is not None:
            self.hook(name.removeprefix(f"{self.prefix}."), x[self.keep])
        return super().__call__(name, x, gelu_after)
