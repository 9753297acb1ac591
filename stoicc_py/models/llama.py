"""A LLaMA-family decoder layer in numpy: the reference that examples/llama_block.tdsl
is checked against, and the numpy peer that benchmarks/llama_block.py times; and
`block_source`, the .tdsl text of the layer for any configuration (the example is its
rendering for SmolLM2-135M).

It follows Hugging Face's LlamaDecoderLayer: RMSNorm, q/k/v projections, RoPE on the
rotated halves of each head (`rotate_half`), grouped-query attention with a causal
mask over the cached keys and values, the output projection, RMSNorm and a SwiGLU MLP,
each with a residual. Weights are stored [out, in] as a linear layer's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
Linear = Callable[[str, Array], Array]
"""(weight name, input [..., T, in]) -> the projection's output [..., T, out]: how decoder_block applies
each matrix (a hook sees every projection's input: layer-by-layer calibration reads them)."""


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
FUSED = {"wqkv": ("wq", "wk", "wv"), "w_gate_up": ("w_gate", "w_up")}
"""The projections that read one input, stacked by rows into one weight in `block_source(...,
fused=True)`: one product per input (one weight stream, one parallel loop) instead of two or three."""
FUSED_WEIGHTS = ("attn_norm", "wqkv", "wo", "mlp_norm", "w_gate_up", "w_down")
"""The fused layer's weights, in the order its program takes them."""


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


def project(a: Array, w: Array) -> Array:
    """a [..., in] @ w.T as one matrix product (numpy multiplies a stack [B, T, in] matrix by
    matrix: B products of T rows, each reading all of w)."""
    return (a.reshape(-1, a.shape[-1]) @ w.T).reshape(*a.shape[:-1], w.shape[0])


def decoder_block(x: Array, cos: Array, sin: Array, k_cache: Array, v_cache: Array, w: dict[str, Array],
                  c: LlamaConfig, linear: Linear | None = None) -> tuple[Array, Array, Array]:  # fmt: skip
    """One layer on T new tokens x [..., T, hidden] after P cached ones (k_cache, v_cache
    [..., kv_heads, P, head_dim]); returns the layer's output and the caches [..., kv_heads,
    P+T, head_dim]. Leading dims are a batch of sequences at the same positions (cos, sin
    [T, head_dim]): one matrix product per projection for all of them. `linear` applies the
    projections (default: input @ w[name].T)."""
    lin = linear or (lambda name, a: project(a, w[name]))
    lead, t, p, d = x.shape[:-2], x.shape[-2], k_cache.shape[-2], c.head_dim

    def heads(a: Array, n: int) -> Array:  # [..., T, n * d] -> [..., n, T, d]
        return np.swapaxes(a.reshape(*lead, t, n, d), -3, -2)

    h = rms_norm(x, w["attn_norm"], c.rms_eps)
    q, k, v = heads(lin("wq", h), c.heads), heads(lin("wk", h), c.kv_heads), heads(lin("wv", h), c.kv_heads)
    q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    keys, values = np.concatenate([k_cache, k], axis=-2), np.concatenate([v_cache, v], axis=-2)
    group = c.heads // c.kv_heads  # query heads g*group ... g*group+group-1 read key/value head g
    scores = q.reshape(*lead, c.kv_heads, group * t, d) @ np.swapaxes(keys, -1, -2) / np.sqrt(d)
    causal = np.arange(p + t)[None, :] <= np.arange(t)[:, None] + p
    scores = np.where(causal, scores.reshape(*lead, c.kv_heads, group, t, p + t), -np.inf)
    attn = _softmax(scores).reshape(*lead, c.kv_heads, group * t, p + t) @ values
    x = x + lin("wo", np.swapaxes(attn.reshape(*lead, c.heads, t, d), -3, -2).reshape(*lead, t, c.heads * d))
    h = rms_norm(x, w["mlp_norm"], c.rms_eps)
    x = x + lin("w_down", _silu(lin("w_gate", h)) * lin("w_up", h))
    return x, keys, values


def _projection_inputs(activations: str | None) -> Callable[[str], str]:
    """The line that quantizes a projection's input `name` in place (none without `activations`)."""
    return lambda name: f"  {name} = quantize({name}, {activations})\n" if activations else ""


def _projections(c: LlamaConfig, fused: bool) -> tuple[str, str, list[str], str, str]:
    """block_source's (q/k/v weight parameters, lines before the heads, the expressions of q, k
    and v [T, n * d], the MLP's gate/up parameters, the line that gives a = silu(gate) * up)."""
    inter, q_n, kv_n, h = c.intermediate, c.heads * c.head_dim, c.kv_heads * c.head_dim, c.hidden
    if not fused:
        return (f"wq: f32[{q_n}, {h}] @ ATTN, wk: f32[{kv_n}, {h}] @ ATTN, wv: f32[{kv_n}, {h}] @ ATTN", "",
                ["linear(h, wq)", "linear(h, wk)", "linear(h, wv)"],
                f"w_gate: f32[{inter}, {h}] @ MLP, w_up: f32[{inter}, {h}] @ MLP",
                "  a = silu(linear(h, w_gate)) * linear(h, w_up)")  # fmt: skip
    return (f"wqkv: f32[{q_n + 2 * kv_n}, {h}] @ ATTN", "  qkv = linear(h, wqkv)\n",
            [f"qkv[:, 0:{q_n}]", f"qkv[:, {q_n}:{q_n + kv_n}]", f"qkv[:, {q_n + kv_n}:{q_n + 2 * kv_n}]"],
            f"w_gate_up: f32[{2 * inter}, {h}] @ MLP",
            f"  gate_up = linear(h, w_gate_up)\n  a = silu(gate_up[:, 0:{inter}]) * gate_up[:, {inter}:{2 * inter}]")  # fmt: skip


def block_source(c: LlamaConfig, attn: str = "dense", mlp: str = "dense", activations: str | None = None,
                 fused: bool = False) -> str:  # fmt: skip
    """examples/llama_block.tdsl for configuration `c`, the attention projections in
    layout `attn` and the MLP's in `mlp` (any weight layout of docs/language.md).
    `activations` (e.g. `int8(per=token)`): each projection's input quantized to it at
    run time, once per input (W4A8 and the like: integer dot products with an integer weight).
    `fused`: q, k and v one product of the weight `wqkv` (wq, wk, wv stacked by rows), gate
    and up one of `w_gate_up` (FUSED): the program takes FUSED_WEIGHTS."""
    lin = _projection_inputs(activations)
    h, d, heads, kv, group, half = c.hidden, c.head_dim, c.heads, c.kv_heads, c.heads // c.kv_heads, c.head_dim // 2
    if heads % kv or d % 2:
        raise ValueError(f"{heads} query heads do not share {kv} key/value heads evenly, or head size {d} is odd")
    attn_params, qkv_lines, (q, k, v), mlp_params, act_line = _projections(c, fused)
    if fused or activations:
        mlp_lines = f"{lin('h')}{act_line}\n{lin('a')}  x = x + linear(a, w_down)"
    else:  # the example's one line
        mlp_lines = "  x = x + linear(silu(linear(h, w_gate)) * linear(h, w_up), w_down)"
    heads_read = ", ".join(f"{group}g+{i}" if i else f"{group}g" for i in range(group))
    # the literals as the example spells them: 1e-5, not Python's 1e-05
    eps, scale = f"{c.rms_eps:.6g}".replace("e-0", "e-"), repr(float(1 / np.sqrt(d)))
    return f"""\
# One LLaMA decoder layer, whole: hidden {h}, {heads} query heads and {kv} key/value heads
# of {d}, MLP {c.intermediate}. T new tokens follow P cached ones: prefill is T tokens after
# an empty cache (P = 0), decoding one token after P. Rendered by
# stoicc_py.models.llama.block_source, whose numpy decoder_block is the reference it is
# checked against. The projections' layouts are declared once, so any layout serves
# (e.g. `layout ATTN = nm(2, 4)` or `int4(group=32)`).

layout ATTN = {attn}
layout MLP = {mlp}

kernel llama_block(
  x: f32[T, {h}],                          # the layer's input, one row per new token
  cos: f32[T, {d}], sin: f32[T, {d}],        # RoPE tables at positions P ... P+T-1
  k_cache: f32[{kv}, P, {d}], v_cache: f32[{kv}, P, {d}],
  attn_norm: f32[{h}],
  {attn_params}, wo: f32[{h}, {heads * d}] @ ATTN,
  mlp_norm: f32[{h}],
  {mlp_params}, w_down: f32[{h}, {c.intermediate}] @ MLP
) -> (f32[T, {h}], f32[{kv}, P + T, {d}], f32[{kv}, P + T, {d}]) {{
  h = x * rsqrt(mean(x * x, axis=-1, keepdims=true) + {eps}) * attn_norm
{lin("h")}{qkv_lines}
  # heads as a leading dim: [T, {heads} * {d}] -> [{heads}, T, {d}]
  q = transpose(reshape({q}, [T, {heads}, {d}]), [1, 0, 2])
  k = transpose(reshape({k}, [T, {kv}, {d}]), [1, 0, 2])
  v = transpose(reshape({v}, [T, {kv}, {d}]), [1, 0, 2])

  # RoPE: each head's halves rotated (Hugging Face's rotate_half)
  q = q * cos + concat(-q[:, :, {half}:{d}], q[:, :, 0:{half}], axis=2) * sin
  k = k * cos + concat(-k[:, :, {half}:{d}], k[:, :, 0:{half}], axis=2) * sin
  keys = concat(k_cache, k, axis=1)
  values = concat(v_cache, v, axis=1)

  # grouped-query attention: query heads {heads_read} read key/value head g
  scores = matmul(reshape(q, [{kv}, {group} * T, {d}]), transpose(keys)) * {scale}
  causal = iota([T, P + T], axis=1) <= iota([T, P + T], axis=0) + P
  scores = where(causal, reshape(scores, [{kv}, {group}, T, P + T]), -1e30)
  probs = reshape(softmax(scores, axis=-1), [{kv}, {group} * T, P + T])
  attn = reshape(transpose(reshape(matmul(probs, values), [{heads}, T, {d}]), [1, 0, 2]), [T, {heads * d}])
{lin("attn")}  x = x + linear(attn, wo)

  h = x * rsqrt(mean(x * x, axis=-1, keepdims=true) + {eps}) * mlp_norm
{mlp_lines}
  return x, keys, values
}}
"""
