"""`stoicc compress MODEL.gguf`: a LLaMA-family model compressed layer by layer as a recipe says
(stoicc_py.compress.compress_llama -> llama_model.compress_model), written with its config and
loaded back (stoicc_py.models.llama_packed) to run on the compiled layers; the recipes that
compress_model cannot follow and corrupt files are clear errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stoicc_py import cli
from stoicc_py.compress import RecipeError, compress_llama, llama_plan, load_recipe
from stoicc_py.models.llama import decoder_block, rope_tables
from stoicc_py.models.llama_model import NumpyLlama, random_llama
from stoicc_py.packing import pack, save_packed
from stoicc_py.packing.hessian import hessian_of

gguf = pytest.importorskip("gguf")
from test_llama_model import PAIRS, TINY, TOKENS  # noqa: E402

from stoicc_py.models.gguf_llama import gguf_tokenizer, load_gguf, write_gguf  # noqa: E402
from stoicc_py.models.llama_packed import load_llama  # noqa: E402

Array = np.ndarray[Any, Any]
TEXT = "the heron stands in the river and the rain eats the stone on the shore"
RECIPE = '[layers]\n"blk.1.ffn_*" = {layout = "int8(axis=0)", method = "gptq"}\n"*embd*" = {layout = "dense"}\n'
LAYOUTS = [("dense", "dense"), ("dense", "int8(axis=0)")]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_gguf(path, random_llama(TINY, layers=2, vocab=len(TOKENS), seed=3), TOKENS, PAIRS)
    return path


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cli_compresses_layer_by_layer_and_the_file_runs(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, text = tmp_path / "out.safetensors", _file(tmp_path, "calibration.txt", TEXT)
    args = ["compress", str(model_file), "--recipe", str(_file(tmp_path, "r.toml", RECIPE)), "-o", str(out)]
    assert cli.main([*args, "--calibration", str(text)]) == 0
    table = capsys.readouterr().out
    assert "blk.1.ffn_up.weight" in table and "int8(axis=0)  gptq" in table and f"wrote {out}" in table
    model = load_llama(out)
    assert model.layouts == LAYOUTS
    # layer 1's gate by GPTQ on the Hessian of its inputs: the text's tokens through layer 0 (dense)
    weights = load_gguf(model_file)
    tokens = gguf_tokenizer(model_file).encode(TEXT).ids
    cos, sin = rope_tables(np.arange(len(tokens)), weights.config)
    empty = np.zeros((weights.config.kv_heads, 0, weights.config.head_dim), np.float32)
    x = decoder_block(weights.embed[tokens], cos, sin, empty, empty, weights.layers[0], weights.config)[0]
    inputs: dict[str, Array] = {}
    decoder_block(x, cos, sin, empty, empty, weights.layers[1], weights.config,
                  lambda name, a: inputs.setdefault(name, a) @ weights.layers[1][name].T)  # fmt: skip
    want = pack(
        weights.layers[1]["w_gate"], "int8(axis=0)", method="gptq", hessian=hessian_of(inputs["w_gate"], TINY.hidden)
    )
    assert [set(p) for p in model.packed] == [set(), {"w_gate", "w_up", "w_down"}]
    np.testing.assert_array_equal(model.packed[1]["w_gate"].unpack(), want.unpack())
    np.testing.assert_array_equal(model.weights.layers[0]["wq"], weights.layers[0]["wq"])
    # tests/test_llama_model.py runs such a file on the compiled layers (sharing its programs)
    ref = NumpyLlama(model.weights)
    logits = ref.forward(tokens, ref.empty_cache())[0]
    layers = [dict(weights.layers[0]), {**weights.layers[1], **{n: t.unpack() for n, t in model.packed[1].items()}}]
    np.testing.assert_array_equal(
        logits, NumpyLlama(replace(weights, layers=layers)).forward(tokens, ref.empty_cache())[0]
    )


def test_corrupt_or_foreign_file(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.safetensors"
    recipe = _file(tmp_path, "r.toml", '[layers]\n"blk.0.attn_*" = {layout = "int8(axis=0)"}\n')
    assert cli.main(["compress", str(model_file), "--recipe", str(recipe), "-o", str(out), "-q"]) == 0
    assert load_llama(out).layouts == [("int8(axis=0)", "dense"), ("dense", "dense")]
    data = bytearray(out.read_bytes())
    data[-1] ^= 0xFF  # the last tensor's bytes (blk.1's or output_norm's)
    out.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"^{out}: tensor .*checksum mismatch.*the file is corrupt"):
        load_llama(out)
    save_packed({"w": np.ones((2, 2), np.float32)}, other := tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=rf"^{other}: no 'stoicc_py.llama' metadata"):
        load_llama(other)


BAD = {
    "group": ('"blk.*.attn_q.weight" = {layout = "int8"}',
              r"layers.'blk.\*.attn_q.weight': gives blk.0.attn_q.weight int8\(\), but no rule packs "
              r"blk.0.attn_k.weight dense: a LLaMA layer's attention projections"),
    "embedding": ('"*" = {layout = "int8"}', r"layers.'\*': packs token_embd.weight, but .* stay dense"),
    "method": ('"blk.0.*" = {layout = "int8", method = "gptq"}\n"blk.*" = {layout = "int8", method = "rtn"}',
               r"layers.'blk.\*': method 'rtn' with options \{\}, but layers.'blk.0.\*' gives 'gptq'"),
    "options": ('"blk.*.attn_*" = {layout = "int4(group=64)", method = "gptq", options = {act_order = true}}\n'
                '"blk.*.ffn_*" = {layout = "nm(2, 4)", method = "sparsegpt"}',
                r"layers.'blk.\*.ffn_\*': options \{\} differ from layers.'blk.\*.attn_\*'"),
    "calibrate": ('"blk.*" = {layout = "int8", options = {calibrate = "awq"}}',
                  r"layers.'blk.\*': options.calibrate: .* no input scales"),
}  # fmt: skip


@pytest.mark.parametrize("what", list(BAD))
def test_recipe_that_compress_model_cannot_follow(what: str, model_file: Path, tmp_path: Path) -> None:
    text, message = BAD[what]
    path = _file(tmp_path, "r.toml", f"[layers]\n{text}\n")
    with pytest.raises(RecipeError, match=f"^{path}: {message}"):
        llama_plan(load_recipe(path), _weights(model_file))


def test_data_method_needs_calibration(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, "r.toml", '[layers]\n"blk.*.ffn_*" = {layout = "nm(2, 4)", method = "sparsegpt"}\n')
    with pytest.raises(RecipeError, match=r"layers.'blk.\*.ffn_\*': method 'sparsegpt' needs calibration text"):
        compress_llama(_weights(model_file), load_recipe(path))
    assert cli.main(["compress", str(model_file), "--recipe", str(path), "-o", str(tmp_path / "o.safetensors")]) == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith("stoicc: error: ")


_loaded: dict[Path, Any] = {}


def _weights(path: Path) -> Any:
    if path not in _loaded:
        _loaded[path] = load_gguf(path)
    return _loaded[path]
