"""One LLaMA decoder layer (SmolLM2-135M's sizes) compiled whole from
examples/llama_block.tdsl, against the same layer in numpy (stoicc_py.models.llama)
and in PyTorch (eager, f32), side by side in one process:

    python benchmarks/llama_block.py                 # prefill T = 1, 128, 512; decode after P = 128, 512
    python benchmarks/llama_block.py --threads 1,2 --json out.json
    python benchmarks/llama_block.py --split --threads 1      # where a W4A8 decode layer's time goes

Every figure follows a correctness check of our output against numpy's. Times are
medians of timed calls (benchmarks/measure.py).

`--split` (decode_split) times a W4A8 decode step of SmolLM2-sized layers (P = 64, the mean
position of a 128-token decode) part by part, as separate compiled kernels on the same
shapes (LLVM's JIT code has no symbols for a profiler): the layer program with q/k/v and
gate/up fused (CompiledLlama's default) and without, each hot (one layer's weights again
and again: cache-resident) and in model order (30 layers' 60 MB of weights in turn: from
DRAM, as a decoded token reads them); its products alone, as one-product kernels in the
same order; the attention alone (RoPE, the cache concat, scores, softmax, P @ V); the cache
concat alone; an empty kernel call. Microseconds per layer, the least of `--repeat` rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.benchmarks.measure import kernel_threads, library_threads, time_calls
from stoicc_py.cmdline import write_json
from stoicc_py.models.llama import BLOCK_WEIGHTS, SMOLLM2_135M, LlamaConfig, decoder_block, random_block, rope_tables

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "llama_block.tdsl"
CASES = (("prefill", 1, 0), ("prefill", 128, 0), ("prefill", 512, 0), ("decode", 1, 128), ("decode", 1, 512))
Array = np.ndarray[Any, Any]


def torch_block(c: LlamaConfig, w: dict[str, Array]) -> Any:
    """The layer in eager PyTorch (f32), as Hugging Face's LlamaDecoderLayer computes it."""
    import torch
    import torch.nn.functional as F

    tw = {n: torch.from_numpy(a) for n, a in w.items()}

    def norm(x: Any, g: Any) -> Any:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c.rms_eps) * g

    def rope(x: Any, cos: Any, sin: Any) -> Any:
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    @torch.inference_mode()
    def run(x: Any, cos: Any, sin: Any, k_cache: Any, v_cache: Any) -> tuple[Any, Any, Any]:
        t, d = x.shape[0], c.head_dim
        h = norm(x, tw["attn_norm"])
        q = F.linear(h, tw["wq"]).view(t, c.heads, d).transpose(0, 1)
        k = F.linear(h, tw["wk"]).view(t, c.kv_heads, d).transpose(0, 1)
        v = F.linear(h, tw["wv"]).view(t, c.kv_heads, d).transpose(0, 1)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        keys, values = torch.cat([k_cache, k], dim=1), torch.cat([v_cache, v], dim=1)
        group = c.heads // c.kv_heads
        attn = F.scaled_dot_product_attention(
            q.view(c.kv_heads, group, t, d), keys[:, None], values[:, None],
            attn_mask=torch.ones(t, keys.shape[1], dtype=torch.bool).tril(keys.shape[1] - t),
        )  # fmt: skip
        x = x + F.linear(attn.reshape(c.heads, t, d).transpose(0, 1).reshape(t, c.heads * d), tw["wo"])
        h = norm(x, tw["mlp_norm"])
        return x + F.linear(F.silu(F.linear(h, tw["w_gate"])) * F.linear(h, tw["w_up"]), tw["w_down"]), keys, values

    return run


def measure(threads: int, repeat: int, budget: float) -> list[dict[str, Any]]:
    c = SMOLLM2_135M
    w = random_block(c, np.random.default_rng(0))
    start = time.perf_counter()
    kernel = stoicc_py.compile(EXAMPLE).llama_block
    print(f"compiled in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    weights = [w[n] for n in BLOCK_WEIGHTS]
    torch_run = torch_block(c, w) if find_spec("torch") else None
    rows = []
    for phase, t, p in CASES:
        rng = np.random.default_rng(t + p)
        x = rng.standard_normal((t, c.hidden)).astype(np.float32)
        cos, sin = rope_tables(np.arange(p, p + t), c)
        kc, vc = (rng.standard_normal((c.kv_heads, p, c.head_dim)).astype(np.float32) for _ in range(2))
        args = (x, cos, sin, kc, vc)
        want = decoder_block(*args, w, c)
        with library_threads(threads):
            kernel_threads(kernel, threads)
            got = kernel(*args, *weights)
            for g, r in zip(got, want):
                np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-4 * float(np.abs(r).max()))
            row: dict[str, Any] = {"phase": phase, "T": t, "P": p, "threads": threads}
            row["stoicc_ms"] = _ms(partial(kernel, *args, *weights), repeat, budget)
            row["numpy_ms"] = _ms(partial(decoder_block, *args, w, c), repeat, budget)
            if torch_run is not None:
                import torch

                targs = [torch.from_numpy(a) for a in args]
                torch_run(*targs)
                row["torch_ms"] = _ms(partial(torch_run, *targs), repeat, budget)
        rows.append(row)
        print(_line(row), file=sys.stderr)
    return rows


W4A8 = ("int4(group=32, scale=f16)", "int8(per=token)")
"""SmolLM2's W4A8 decode: Q4_0's weight grid, int8 activations per token."""
ATTENTION = """
kernel attention(q0: f32[T, 576], k0: f32[T, 192], v0: f32[T, 192], cos: f32[T, 64], sin: f32[T, 64],
                 k_cache: f32[3, P, 64], v_cache: f32[3, P, 64]) -> (f32[T, 576], f32[3, P + T, 64], f32[3, P + T, 64]) {
  q = transpose(reshape(q0, [T, 9, 64]), [1, 0, 2])
  k = transpose(reshape(k0, [T, 3, 64]), [1, 0, 2])
  v = transpose(reshape(v0, [T, 3, 64]), [1, 0, 2])
  q = q * cos + concat(-q[:, :, 32:64], q[:, :, 0:32], axis=2) * sin
  k = k * cos + concat(-k[:, :, 32:64], k[:, :, 0:32], axis=2) * sin
  keys = concat(k_cache, k, axis=1)
  values = concat(v_cache, v, axis=1)
  scores = matmul(reshape(q, [3, 3 * T, 64]), transpose(keys)) * 0.125
  causal = iota([T, P + T], axis=1) <= iota([T, P + T], axis=0) + P
  probs = reshape(softmax(where(causal, reshape(scores, [3, 3, T, P + T]), -1e30), axis=-1), [3, 3 * T, P + T])
  return reshape(transpose(reshape(matmul(probs, values), [9, T, 64]), [1, 0, 2]), [T, 576]), keys, values
}
kernel cache_concat(k: f32[3, T, 64], k_cache: f32[3, P, 64], v_cache: f32[3, P, 64])
    -> (f32[3, P + T, 64], f32[3, P + T, 64]) { return concat(k_cache, k, axis=1), concat(v_cache, k, axis=1) }
kernel empty(x: f32[T, 8]) -> f32[T, 8] { return x }
"""
"""decode_split's parts of a SmolLM2 layer (attention's as examples/llama_block.tdsl has it)."""


def decode_split(threads: int, rounds: int, layers: int = 30, p: int = 64) -> dict[str, float]:
    """Microseconds per layer of each part of a W4A8 decode step (the module docstring's --split)."""
    from stoicc_py.models.llama_model import CompiledLlama, random_llama

    c, (layout, act) = SMOLLM2_135M, W4A8
    weights = random_llama(c, layers, vocab=8)
    models = {
        f: CompiledLlama(weights, (layout, layout), activations=act, fuse=f, threads=threads) for f in (False, True)
    }
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, c.hidden)).astype(np.float32)
    cos, sin = rope_tables(np.arange(p, p + 1), c)
    cache = rng.standard_normal((c.kv_heads, p, c.head_dim)).astype(np.float32)
    parts = stoicc_py.compile(ATTENTION)
    products: dict[tuple[int, int], Any] = {}

    def product(shape: tuple[int, int]) -> Any:
        if shape not in products:
            n, k = shape
            source = f"kernel f(x: f32[1, {k}], w: f32[{n}, {k}] @ {layout}) -> f32[1, {n}] {{ return linear(quantize(x, {act}), w) }}"
            products[shape] = stoicc_py.compile(source).f
            kernel_threads(products[shape], threads)
        return products[shape]

    cases: dict[str, Callable[[], object]] = {}
    for fused, m in models.items():
        name = "fused" if fused else "unfused"
        calls = [[(product(a.shape), np.ones((1, a.shape[1]), np.float32), a) for a in args if len(a.shape) == 2]
                 for args in m.args]  # fmt: skip
        for order, hot in (("model order", False), ("hot", True)):
            cases[f"{name} layer, {order}"] = partial(_layers, m, hot, (x, cos, sin, cache, cache))
            cases[f"{name} products alone, {order}"] = partial(_products, calls, hot)
    for kernel in parts.kernels.values():
        kernel_threads(kernel, threads)
    q, kv = x.copy(), x[:, : c.kv_heads * c.head_dim].copy()
    cases["attention alone (RoPE, cache concat, scores, softmax, P @ V)"] = partial(
        _each, layers, lambda i: parts.attention(q, kv, kv, cos, sin, cache, cache)
    )
    cases["cache concat alone"] = partial(
        _each, layers, lambda i: parts.cache_concat(cache[:, :1].copy(), cache, cache)
    )
    cases["empty kernel call"] = partial(_each, layers, lambda i: parts.empty(x[:, :8].copy()))
    best: dict[str, float] = {}
    with library_threads(threads):
        for _ in range(rounds):  # interleaved, so that the shared host's load reaches every part alike
            for label, run in cases.items():
                run()
                start = time.perf_counter()
                run()
                best[label] = min(best.get(label, np.inf), 1e6 * (time.perf_counter() - start) / layers)
    return best


def _each(n: int, call: Callable[[int], object]) -> None:
    for i in range(n):
        call(i)


def _layers(model: Any, hot: bool, args: tuple[Array, ...]) -> None:
    """Each layer in turn (hot: the first layer's weights every time)."""
    for i in range(len(model.kernels)):
        model.block(0 if hot else i, *args)


def _products(calls: list[list[tuple[Any, Array, Any]]], hot: bool) -> None:
    for i in range(len(calls)):
        for kernel, x, w in calls[0 if hot else i]:
            kernel(x, w)


def _ms(call: Callable[[], object], repeat: int, budget: float) -> float:
    return 1e3 * time_calls(call, repeat, budget, None).median_s


def _line(row: dict[str, Any]) -> str:
    peers = [f"{peer} {row[f'{peer}_ms']:.3f} ms ({row[f'{peer}_ms'] / row['stoicc_ms']:.2f}x)"
             for peer in ("numpy", "torch") if f"{peer}_ms" in row]  # fmt: skip
    return (f"{row['phase']:7} T={row['T']:<4} P={row['P']:<4} threads={row['threads']}: "
            f"stoicc {row['stoicc_ms']:.3f} ms; " + "; ".join(peers))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1", help="comma-separated thread counts")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--json", help="write the rows as JSON")
    parser.add_argument("--split", action="store_true", help="a W4A8 decode layer's time by part (decode_split)")
    args = parser.parse_args(argv)
    if args.split:
        for n in args.threads.split(","):
            print(f"{n} thread(s), us per layer (least of {args.repeat} rounds):")
            for label, us in decode_split(int(n), args.repeat).items():
                print(f"  {label:62s} {us:8.1f}")
        return 0
    rows = [r for n in args.threads.split(",") for r in measure(int(n), args.repeat, args.budget)]
    print("| phase | T | P | threads | stoicc ms | numpy ms | torch ms |\n|---|---|---|---|---|---|---|")
    for r in rows:
        torch_ms = f"{r['torch_ms']:.3f}" if "torch_ms" in r else "-"
        print(
            f"| {r['phase']} | {r['T']} | {r['P']} | {r['threads']} | {r['stoicc_ms']:.3f} | {r['numpy_ms']:.3f} | {torch_ms} |"
        )
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
