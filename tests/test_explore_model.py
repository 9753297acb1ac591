"""`stoicc explore MODEL.gguf` (stoicc_py/explore_model.py): per-layer and whole-model
perplexities against whole-model runs, the proposal against brute force, the Dask run
against the serial one, and the command on a tiny GGUF model."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from stoicc_py import compile as compile_kernel
from stoicc_py import explore_model as em
from stoicc_py.cli import main
from stoicc_py.compress import load_recipe
from stoicc_py.models.llama import LlamaConfig
from stoicc_py.models.llama_model import NumpyLlama, compress_model, perplexity, random_llama
from stoicc_py.packing import pack

pytest.importorskip("gguf")
pytest.importorskip("tokenizers")
from stoicc_py.models.gguf_llama import write_gguf  # noqa: E402

# every projection 64 x 64: one kernel per format serves the whole model
CONFIG = LlamaConfig(hidden=64, heads=4, kv_heads=4, head_dim=16, intermediate=64, rope_theta=10000.0)
TOKENS = ["<|endoftext|>", *(chr(c) for c in range(ord("a"), ord("z") + 1)), "Ġ", "th"]
TEXT = "the keeper climbed the stairs of the lighthouse and saw the sea " * 6


@pytest.fixture(scope="module")
def model() -> Any:
    w = random_llama(CONFIG, layers=2, vocab=len(TOKENS), seed=2)
    embed = w.embed * np.float32(0.05)  # logits of a few units: perplexities of a few tens
    return replace(w, embed=embed, lm_head=embed)


@pytest.fixture(scope="module")
def texts() -> em.Texts:
    tokens = np.random.default_rng(0).integers(1, len(TOKENS), 160).tolist()
    return em.Texts([tokens[:64], tokens[64:128]], tokens[100:140], tokens[96:], 32)


CHOSEN = [em.model_candidates()[k] for k in ("int8", "int4-g32", "nm24")]


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread, as on the LocalCluster's workers: OpenBLAS's float32 products
    (GPTQ's Hessians and lazy updates) round differently on 1 and 2 threads on some CPUs
    (Zen 3: an int4 scale's last bit, perplexities apart in the 7th digit)."""
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def serial(model: Any, texts: em.Texts) -> list[em.Evaluation]:
    return em.evaluate_all(model, texts, CHOSEN)


def test_evaluations_equal_whole_model_runs(model: Any, texts: em.Texts, serial: list[em.Evaluation]) -> None:
    base, int4 = serial[0], serial[2]
    assert base.key == em.DENSE and base.ppl == perplexity(NumpyLlama(model), texts.eval_tokens, texts.window)
    out = compress_model(model, ("int4(group=32)", "int4(group=32)"), texts.calibration, "gptq")
    assert int4.ppl == perplexity(NumpyLlama(out.weights), texts.eval_tokens, texts.window)
    assert int4.layer_bytes == [sum(t.nbytes for t in p.values()) for p in out.packed]
    assert int4.layer_bytes[0] == 7 * pack(model.layers[0]["wq"], "int4(group=32)").nbytes
    for i in range(2):
        alone = replace(model, layers=[out.weights.layers[j] if j == i else model.layers[j] for j in range(2)])
        want = perplexity(NumpyLlama(alone), texts.layer_tokens, len(texts.layer_tokens))
        assert int4.layer_ppl[i] == pytest.approx(want, rel=1e-5)
        assert base.layer_ppl[i] == pytest.approx(perplexity(NumpyLlama(model), texts.layer_tokens, 40), rel=1e-5)
    assert 1 < base.ppl < 100 and serial[1].ppl == pytest.approx(base.ppl, rel=0.01)  # int8 barely moves it


def test_dask_gives_the_serial_results(model: Any, texts: em.Texts, serial: list[em.Evaluation]) -> None:
    pytest.importorskip("dask.distributed")
    seen: list[str] = []
    on_dask = em.evaluate_all(model, texts, CHOSEN, "local", workers=2, processes=True,
                              on_result=lambda e: seen.append(e.key))  # fmt: skip
    assert sorted(seen) == sorted(e.key for e in serial)
    for a, b in zip(serial, on_dask):
        assert (a.key, a.layer_bytes, a.layer_ppl, a.ppl, a.error) == (
            b.key,
            b.layer_bytes,
            b.layer_ppl,
            b.ppl,
            b.error,
        )
        for pa, pb in zip(a.packed, b.packed):
            assert all(np.array_equal(pa[n].unpack(), pb[n].unpack()) for n in pa)
    assert em.propose(serial, 60_000) == em.propose(on_dask, 60_000)


def _evaluations(options: list[list[tuple[int, float]]]) -> list[em.Evaluation]:
    """Evaluations of per-layer (bytes, perplexity increase) options; the baseline at 1000 B, +0."""
    layers = len(options[0])
    base = em.Evaluation(em.DENSE, [1000] * layers, [10.0] * layers, 10.0)
    return [base] + [
        em.Evaluation(f"c{k}", [b for b, _ in o], [10.0 + d for _, d in o], 11.0) for k, o in enumerate(options)
    ]


def test_proposal_is_on_the_pareto_front() -> None:
    rng = np.random.default_rng(4)
    options = [[(int(rng.integers(100, 900)), float(rng.uniform(-0.2, 3))) for _ in range(4)] for _ in range(5)]
    evaluations = _evaluations(options)
    per_layer = [[(e.layer_bytes[i], e.layer_ppl[i] - 10.0, e.key) for e in evaluations] for i in range(4)]
    every = [(sum(o[0] for o in combo), sum(o[1] for o in combo)) for combo in itertools.product(*per_layer)]
    smallest = sum(min(o[0] for o in layer) for layer in per_layer)
    for budget in (smallest, 2000, 2500, 3000, 3500, 4000):
        p = em.propose(evaluations, budget)
        got = sum(per_layer[i][[o[2] for o in per_layer[i]].index(k)][1] for i, k in enumerate(p.choice))
        assert p.bytes <= budget and got == pytest.approx(p.predicted_delta)
        assert not any(b <= p.bytes and d < p.predicted_delta - 1e-9 for b, d in every), budget
    with pytest.raises(ValueError, match="smallest choice per layer takes"):
        em.propose(evaluations, smallest - 1)
    assert em.propose(evaluations, 4000).choice == [em.DENSE] * 4  # float32 everywhere fits: nothing lost


@pytest.fixture(scope="module")
def gguf_model(model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("explore") / "tiny.gguf"
    write_gguf(path, model, TOKENS, ["t h"])
    (path.parent / "text.txt").write_text(TEXT)
    return path


def test_command(gguf_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, recipe = gguf_model.parent / "out.json", gguf_model.parent / "recipe.toml"
    args = ["explore", str(gguf_model), "--text", str(gguf_model.parent / "text.txt"), "--formats", "int8",
            "--window", "64", "--layer-tokens", "48", "--eval-tokens", "128", "--budget", "70kB",
            "--recipe-out", str(recipe), "--json", str(out), "--rows", "8", "--accel-rows", "4", "-q", "--per-matrix"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "int8: int8(axis=0)" in printed and "per layer" in printed and "proposal for 70,000 bytes" in printed
    data = json.loads(out.read_text())
    dense, int8 = data["rows"]
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    assert int8["bytes"] == 2 * 7 * pack(w, "int8(axis=0)").nbytes and dense["bytes"] == 2 * 7 * w.nbytes
    # the accelerator's figures: one 64 x 64 kernel's, times the model's 14 matrices
    k = compile_kernel("kernel f(x: f32[M, 64], w: f32[64, 64] @ int8(axis=0)) -> f32[M, 64] "
                       "{ return linear(quantize(x, int8(per=token)), w) }", target="accel").f  # fmt: skip
    k(np.ones((4, 64), np.float32), k.pack("w", w))
    assert int8["accel_cycles"] == 14 * k.last_report.cycles and int8["cpu_ms"] > 0
    assert dense["accel_error"] and dense["accel_cycles"] is None  # f32 weights: the accelerator refuses them
    assert data["proposal"]["choice"] == ["int8", "int8"]  # 2 x 7 x 16 KiB of float32 does not fit 70 kB
    rules = load_recipe(recipe)
    assert str(rules.rule("blk.1.ffn_up.weight").layout) == str(pack(w, "int8(axis=0)").layout)


def test_options_of_the_other_kind_are_errors(gguf_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npz = gguf_model.parent / "w.npz"
    np.savez(npz, w=np.ones((4, 4), np.float32))
    for args, said in (([str(gguf_model)], "give an English text with --text FILE"),
                       ([str(gguf_model), "--plot", "p.png"], "--plot is for .safetensors/.npz weights"),
                       ([str(npz), "--budget", "1MB"], "--budget is for a .gguf model")):  # fmt: skip
        assert main(["explore", *args, "-q"]) == 1
        assert said in capsys.readouterr().err
