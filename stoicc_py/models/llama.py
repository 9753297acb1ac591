"""A LLaMA-family decoder layer in numpy: the reference that examples/llama_block.tdsl
is checked against, and the numpy peer that benchmarks/llama_block.py times.

It follows Hugging Face's LlamaDecoderLayer: RMSNorm, q/k/v projections, RoPE on the
rotated halves of each head (`rotate_half`), grouped-query attention with a causal
mask over the cached keys and values, the output projection, RMSNorm and a SwiGLU MLP,
each with a residual. Weights are stored [out, in] as a linear layer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class LlamaConfig:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    rms_eps: float = 1e-5
    rope_theta: float = 10000.0


SMOLLM2_135M = LlamaConfig(hidden=576, heads=9, kv_heads=3, head_dim=64, intermediate=1536, rope_theta=100000.0)

BLOCK_WEIGHTS = ("attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w_gate", "w_up", "w_down")
"""A decoder layer's weights, in the order examples/llama_block.tdsl takes them."""


def block_shapes(c: LlamaConfig) -> dict[str, tuple[int, ...]]:
    kv = c.kv_heads * c.head_dim
    return {
        "attn_norm": (c.hidden,), "wq": (c.heads * c.head_dim, c.hidden), "wk": (kv, c.hidden),
        "wv": (kv, c.hidden), "wo": (c.hidden, c.heads * c.head_dim), "mlp_norm": (c.hidden,),
        "w_gate": (c.intermediate, c.hidden), "w_up": (c.intermediate, c.hidden), "w_down": (c.hidden, c.intermediate),
    }  # fmt: skip


def random_block(c: LlamaConfig, rng: np.random.Generator) -> dict[str, Array]:
    """Weights of a layer at a trained model's scale (norm gains near 1, projections
    ~ 1/sqrt(fan-in)), for tests and benchmarks without a checkpoint."""
    weights = {}
    for name, shape in block_shapes(c).items():
        if len(shape) == 1:
            weights[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            weights[name] = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
    return weights


def rope_tables(positions: Array, c: LlamaConfig) -> tuple[Array, Array]:
    """cos and sin [T, head_dim] for the given positions, both halves of a head alike
    (Hugging Face's layout, which rotate_half reads)."""
    inv_freq = c.rope_theta ** -(np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim)
    angles = np.outer(positions.astype(np.float64), inv_freq)
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rms_norm(x: Array, gain: Array, eps: float) -> Array:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gain


def _rope(x: Array, cos: Array, sin: Array) -> Array:
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def _silu(x: Array) -> Array:
    return x / (1.0 + np.exp(-x))


def _softmax(x: Array) -> Array:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def decoder_block(x: Array, cos: Array, sin: Array, k_cache: Array, v_cache: Array, w: dict[str, Array],
                  c: LlamaConfig) -> tuple[Array, Array, Array]:  # fmt: skip
    """One layer on T new tokens x [T, hidden] after P cached ones (k_cache, v_cache
    [kv_heads, P, head_dim]); returns the layer's output and the caches [kv_heads, P+T, head_dim]."""
    t, p, d = x.shape[0], k_cache.shape[1], c.head_dim
    h = rms_norm(x, w["attn_norm"], c.rms_eps)
    q = (h @ w["wq"].T).reshape(t, c.heads, d).transpose(1, 0, 2)
    k = (h @ w["wk"].T).reshape(t, c.kv_heads, d).transpose(1, 0, 2)
    v = (h @ w["wv"].T).reshape(t, c.kv_heads, d).transpose(1, 0, 2)
    q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    keys, values = np.concatenate([k_cache, k], axis=1), np.concatenate([v_cache, v], axis=1)
    group = c.heads // c.kv_heads  # query heads g*group ... g*group+group-1 read key/value head g
    scores = q.reshape(c.kv_heads, group * t, d) @ keys.transpose(0, 2, 1) / np.sqrt(d)
    causal = np.arange(p + t)[None, :] <= np.arange(t)[:, None] + p
    scores = np.where(causal, scores.reshape(c.kv_heads, group, t, p + t), -np.inf)
    attn = _softmax(scores).reshape(c.kv_heads, group * t, p + t) @ values
    x = x + attn.reshape(c.heads, t, d).transpose(1, 0, 2).reshape(t, c.heads * d) @ w["wo"].T
    h = rms_norm(x, w["mlp_norm"], c.rms_eps)
    x = x + (_silu(h @ w["w_gate"].T) * (h @ w["w_up"].T)) @ w["w_down"].T
    return x, keys, values
