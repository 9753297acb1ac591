"""One LLaMA decoder layer (SmolLM2-135M's sizes) compiled whole from
examples/llama_block.tdsl, against the same layer in numpy (stoicc_py.models.llama)
and in PyTorch (eager, f32), side by side in one process:

    python benchmarks/llama_block.py                 # prefill T = 1, 128, 512; decode after P = 128, 512
    python benchmarks/llama_block.py --threads 1,2 --json out.json

Every figure follows a correctness check of our output against numpy's. Times are
medians of timed calls (benchmarks/measure.py).
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
    args = parser.parse_args(argv)
    rows = [r for n in args.threads.split(",") for r in measure(int(n), args.repeat, args.budget)]
    print("| phase | T | P | threads | stoicc ms | numpy ms | torch ms |\n|---|---|---|---|---|---|---|")
    for r in rows:
        torch_ms = f"{r['torch_ms']:.3f}" if "torch_ms" in r else "-"
        print(f"| {r['phase']} | {r['T']} | {r['P']} | {r['threads']} | {r['stoicc_ms']:.3f} | {r['numpy_ms']:.3f} | {torch_ms} |")
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
