"""examples/llama_block.tdsl, a whole LLaMA decoder layer compiled as one kernel, against
the numpy layer of stoicc_py.models.llama: prefill after an empty cache, decoding one
token after a cache, and a prefill that equals its tokens decoded one at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stoicc_py
from stoicc_py.models.llama import BLOCK_WEIGHTS, SMOLLM2_135M, decoder_block, random_block, rope_tables

EXAMPLE = Path(__file__).parent.parent / "examples" / "llama_block.tdsl"
C = SMOLLM2_135M
Array = np.ndarray[Any, Any]


@pytest.fixture(scope="module")
def block() -> Any:
    return stoicc_py.compile(EXAMPLE).llama_block


@pytest.fixture(scope="module")
def weights() -> dict[str, Array]:
    return random_block(C, np.random.default_rng(0))


def _inputs(t: int, p: int, seed: int) -> tuple[Array, ...]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, C.hidden)).astype(np.float32)
    cos, sin = rope_tables(np.arange(p, p + t), C)
    shape = (C.kv_heads, p, C.head_dim)
    return x, cos, sin, rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def _check(got: tuple[Array, ...], want: tuple[Array, ...]) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4 * float(np.abs(w).max()))


@pytest.mark.parametrize(("t", "p"), [(1, 0), (5, 0), (77, 0), (512, 0), (1, 1), (1, 37), (3, 20)])
def test_block_matches_numpy(block: Any, weights: dict[str, Array], t: int, p: int) -> None:
    args = _inputs(t, p, seed=t * 1000 + p)
    got = block(*args, *(weights[n] for n in BLOCK_WEIGHTS))
    _check(got, decoder_block(*args, weights, C))


def test_prefill_equals_decoding_token_by_token(block: Any, weights: dict[str, Array]) -> None:
    x, cos, sin, k_cache, v_cache = _inputs(6, 0, seed=5)
    w = [weights[n] for n in BLOCK_WEIGHTS]
    whole, keys, values = block(x, cos, sin, k_cache, v_cache, *w)
    rows = []
    for i in range(6):
        out, k_cache, v_cache = block(x[i : i + 1], cos[i : i + 1], sin[i : i + 1], k_cache, v_cache, *w)
        rows.append(out)
    _check((np.concatenate(rows), k_cache, v_cache), (whole, keys, values))


@pytest.mark.parametrize(("t", "p"), [(1, 37), (77, 0)])
def test_block_threads_agree_bit_for_bit(block: Any, weights: dict[str, Array], t: int, p: int) -> None:
    """The layer's loops split over the native pool (passes/parallelize_loops.py): two threads
    compute what one does, bit for bit, decoding and prefilling."""
    assert block.abi.native_threads
    args = (*_inputs(t, p, seed=7), *(weights[n] for n in BLOCK_WEIGHTS))
    block.threads = 1
    try:
        one = block(*args)
        block.threads = 2
        two = block(*args)
    finally:
        block.threads = None
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    _check(two, decoder_block(*_inputs(t, p, seed=7), weights, C))
