"""Packed weights on disk (PackedTensor.save, stoicc_py.save_packed/load_packed/load), recipes
and `stoicc compress` (stoicc_py/packing/artifact.py, stoicc_py/compress.py, docs/compress.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import stoicc_py
from stoicc_py import cli
from stoicc_py.compress import RecipeError, compress, load_recipe
from stoicc_py.models import save_weights
from stoicc_py.packing import PackedTensor, packed_metadata
from stoicc_py.tensorfile import read_safetensors, write_safetensors

Array = np.ndarray[Any, Any]
HYBRID = "hybrid(tile=[16, 16], formats=[dense, nm(2, 4)])"
NMQ = "nm(2, 4) with int4(group=32)"
# One layout of every family; the int4 one has ragged groups (48 columns, groups of 32).
LAYOUTS = {
    "dense": ("dense", {}), "int4_g32_ragged": ("int4(group=32)", {}), "int8": ("int8", {}),
    "nm": ("nm(2, 4)", {"prune": "magnitude"}), "block": ("block([4, 8])", {"prune": "magnitude"}),
    "csr": ("csr(index=i16)", {}), "hybrid": (HYBRID, {"plan": "auto", "sparsity": 0.5, "prune": "magnitude"}),
    "composed": (NMQ, {"prune": "magnitude"}), "sq": ("sq(int4, group=16)", {}),
    "bitsplit": ("bitsplit(int8, low_bits=4, offset=true)", {}),
}  # fmt: skip
SOURCE = f"kernel f(x: f32[M, 64], w: f32[64, 64] @ {NMQ}) -> f32[M, 64] {{ return linear(x, w) }}"


def _matrix(rows: int, cols: int, seed: int = 0) -> Array:
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


def _same(a: PackedTensor, b: PackedTensor) -> None:
    assert (a.layout, a.shape, a.dtype) == (b.layout, b.shape, b.dtype)
    assert list(a.arrays) == list(b.arrays)
    for role in a.arrays:
        assert a.arrays[role].dtype == b.arrays[role].dtype and np.array_equal(a.arrays[role], b.arrays[role]), role
    np.testing.assert_array_equal(a.unpack(), b.unpack())


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("key", list(LAYOUTS))
def test_round_trip(tmp_path: Path, key: str, dtype: str) -> None:
    layout, options = LAYOUTS[key]
    w = _matrix(32, 48 if key == "int4_g32_ragged" else 64)
    if key == "csr":
        w[np.abs(w) < 1] = 0
    packed = stoicc_py.pack(w, layout, dtype=dtype, **options)
    loaded = stoicc_py.load(packed.save(tmp_path / "w.safetensors"))
    _same(packed, loaded)
    assert loaded._checked is not None  # validated once, read-only: kernels skip the check


def test_many_tensors_dense_int8_and_input_scale(tmp_path: Path) -> None:
    w, x = _matrix(32, 64), _matrix(16, 64, 1)
    tensors: dict[str, Any] = {
        "a": stoicc_py.pack(w, "int4(group=32)", calibrate="awq", activations=x),
        "b": stoicc_py.pack((w * 20).astype(np.int8), "nm(2, 4)", prune="magnitude"),
        "norm": np.arange(4, dtype=ml_dtypes.bfloat16),
    }
    loaded = stoicc_py.load_packed(stoicc_py.save_packed(tensors, tmp_path / "m.safetensors"))
    assert list(loaded) == ["a", "b", "norm"]
    for name in ("a", "b"):
        _same(tensors[name], loaded[name])
    np.testing.assert_array_equal(loaded["a"].input_scale, tensors["a"].input_scale)
    assert loaded["norm"].dtype == ml_dtypes.bfloat16 and np.array_equal(loaded["norm"], tensors["norm"])
    with pytest.raises(ValueError, match="holds 2 packed tensor.*1 dense.*load_packed"):
        stoicc_py.load(tmp_path / "m.safetensors")


def test_dense_checksum_and_metadata(tmp_path: Path) -> None:
    path = stoicc_py.save_packed({"norm": np.arange(8, dtype=np.float32)}, tmp_path / "d.safetensors", {"model": "x"})
    assert packed_metadata(path) == {"model": "x"}
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"^{path}: tensor 'norm': checksum mismatch .* corrupt"):
        stoicc_py.load_packed(path)
    with pytest.raises(ValueError, match="metadata key 'tensors' is the format's own"):
        stoicc_py.save_packed({}, path, {"tensors": "{}"})


@pytest.fixture(scope="module")
def kernel() -> Any:
    return stoicc_py.compile(SOURCE).f


def _check_kernel(kernel: Any, w: PackedTensor) -> None:
    """The kernel on loaded weights against numpy on the dequantized matrix, and the interpreter."""
    x = _matrix(5, 64, 7)
    y = kernel(x, w)
    np.testing.assert_allclose(y, x @ w.dequantize().T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, kernel.reference(x, w), rtol=1e-4, atol=1e-4)


def test_kernel_runs_loaded_weights(tmp_path: Path, kernel: Any) -> None:
    packed = stoicc_py.pack(_matrix(64, 64), NMQ, prune="magnitude")
    loaded = stoicc_py.load(packed.save(tmp_path / "w.safetensors"))
    _check_kernel(kernel, loaded)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return stoicc_py.pack(_matrix(64, 64), NMQ, prune="magnitude").save(tmp_path / "w.safetensors")


def _edit(path: Path, edit: Any) -> None:
    """Rewrite the file after edit(tensors, table) changed its tensors or its metadata table."""
    tensors, metadata = read_safetensors(path)
    table = json.loads(metadata["tensors"])
    edit(tensors, table["tensor"])
    write_safetensors(tensors, path, metadata | {"tensors": json.dumps(table)})


def _values_as_int16(tensors: dict[str, Array], entry: dict[str, Any]) -> None:
    # A wrong dtype with a matching checksum: the checksum cannot catch it, validation must.
    tensors["tensor/values"] = tensors["tensor/values"].view(np.int16)
    entry["sha256"] = stoicc_py.packing.artifact.checksum(tensors[f"tensor/{r}"] for r in entry["buffers"])


CORRUPTIONS = {
    "missing buffer": (lambda t, e: t.pop("tensor/scales"), r"tensor 'tensor': buffer 'tensor/scales' is missing"),
    "unknown layout": (lambda t, e: e.update(layout="nm(2, 4) with int9"), r"tensor 'tensor': layout .* does not parse"),
    "wrong shape": (lambda t, e: e.update(shape=[64, 32]), r"tensor 'tensor': .*shape"),
    "wrong dtype": (_values_as_int16, r"tensor 'tensor': .*buffer 'values' has dtype int16"),
    "bad entry": (lambda t, e: e.pop("sha256"), r"tensor 'tensor': its metadata must have exactly"),
    "stray buffer": (lambda t, e: t.update({"tensor/extra": np.zeros(1)}), r"'tensor/extra': not a buffer"),
}  # fmt: skip


@pytest.mark.parametrize("what", list(CORRUPTIONS))
def test_corrupt_header(saved: Path, what: str) -> None:
    edit, message = CORRUPTIONS[what]
    _edit(saved, edit)
    with pytest.raises(ValueError, match=f"^{saved}: .*{message}"):
        stoicc_py.load(saved)


def test_flipped_byte_is_a_checksum_error(saved: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[-1] ^= 0x10  # the last buffer's last byte
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"^{saved}: tensor 'tensor': checksum mismatch .* corrupt"):
        stoicc_py.load(saved)


def test_truncated_file(saved: Path) -> None:
    saved.write_bytes(saved.read_bytes()[:-10])
    with pytest.raises(ValueError, match=f"^{saved}: not a valid .safetensors file: tensor 'tensor/.*data_offsets"):
        stoicc_py.load(saved)
    saved.write_bytes(saved.read_bytes()[:20])
    with pytest.raises(ValueError, match=f"^{saved}: not a valid .safetensors file: its header length"):
        stoicc_py.load(saved)


def test_bad_metadata(saved: Path) -> None:
    tensors, metadata = read_safetensors(saved)
    write_safetensors(tensors, saved, metadata | {"tensors": "{not json"})
    with pytest.raises(ValueError, match=f"^{saved}: its __metadata__ 'tensors' is not valid JSON"):
        stoicc_py.load(saved)
    write_safetensors(tensors, saved, metadata | {"version": "1"})
    with pytest.raises(ValueError, match=f"^{saved}: packed-weights format version '1'; this stoicc_py reads 2"):
        stoicc_py.load(saved)
    write_safetensors(tensors, saved)
    with pytest.raises(ValueError, match="not a packed-weights file"):
        stoicc_py.load(saved)
    saved.write_bytes(b"\x04\x00\x00\x00\x00\x00\x00\x00{oo}")
    with pytest.raises(ValueError, match=f"^{saved}: not a valid .safetensors file: its header is not valid JSON"):
        stoicc_py.load(saved)


RECIPE = """
default = {layout = "int8"}
[layers]
"*embed*" = {layout = "dense"}
"*.mlp.*" = {layout = "nm(2, 4) with int4(group=32)", options = {prune = "magnitude"}}
"*.mlp.up" = {layout = "int4(group=32)"}   # never used: the glob above matches first
"""


def _recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_recipe_first_match_wins(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, RECIPE))
    layouts = {n: (r.layout and r.layout.summary(), r.key) for n in ("l.mlp.up", "embed", "l.attn.q")
               if (r := recipe.rule(n)) is not None}  # fmt: skip
    assert layouts == {
        "l.mlp.up": (NMQ, "layers.'*.mlp.*'"), "embed": (None, "layers.'*embed*'"), "l.attn.q": ("int8()", "default")
    }  # fmt: skip
    assert load_recipe(_recipe(tmp_path, "")).rule("x") is None


BAD_RECIPES = {
    "top key": ('defaults = {layout = "int8"}', r"the recipe: unknown key 'defaults' \(known: default, layers\)"),
    "rule key": ('[layers]\n"a" = {layout = "int8", methd = "x"}', r"layers.'a': unknown key 'methd'"),
    "layout": ('[layers]\n"a" = {layout = "nm(2, 4"}', r"layers.'a': layout 'nm\(2, 4': .*expected"),
    "no layout": ('[layers]\n"a" = {method = "x"}', r"layers.'a': must be a table with a layout"),
    "option": ('default = {layout = "int8", options = {bogus = 1}}', r"default.options: unknown key 'bogus'"),
    "toml": ("[layers", r"not valid TOML: Expected .]."),
}  # fmt: skip


@pytest.mark.parametrize("what", list(BAD_RECIPES))
def test_bad_recipe(tmp_path: Path, what: str) -> None:
    text, message = BAD_RECIPES[what]
    path = _recipe(tmp_path, text)
    with pytest.raises(RecipeError, match=f"^{path}: {message}"):
        load_recipe(path)


def test_recipe_method_goes_to_pack(tmp_path: Path) -> None:
    """A method is pack()'s keyword: pack() judges it."""
    path = _recipe(tmp_path, '[layers]\n"w" = {layout = "int4(group=32)", method = "no-such-method"}')
    with pytest.raises(ValueError, match=r"^w \(.*recipe.toml: layers.'w'\): .*no-such-method"):
        compress({"w": _matrix(8, 32)}, load_recipe(path))


def test_cli_compress(tmp_path: Path, kernel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    weights = {"model.embed": _matrix(16, 64, 1), "l0.mlp.up": _matrix(64, 64, 2),
               "l0.mlp.down": _matrix(64, 64, 3).astype(ml_dtypes.bfloat16), "l0.attn.q": _matrix(32, 64, 4),
               "l0.norm": np.ones(64, np.float32)}  # fmt: skip
    model, out = save_weights(weights, tmp_path / "m.safetensors"), tmp_path / "out.safetensors"
    assert cli.main(["compress", str(model), "--recipe", str(_recipe(tmp_path, RECIPE)), "-o", str(out)]) == 0
    table = capsys.readouterr().out
    assert "l0.mlp.down  64x64  bfloat16  nm(2, 4) with int4(group=32)" in table
    assert "total" in table and f"wrote {out}" in table
    loaded = stoicc_py.load_packed(out)
    assert list(loaded) == list(weights)
    for name in ("model.embed", "l0.norm"):
        assert np.array_equal(loaded[name], weights[name])
    for name, layout, options in [("l0.mlp.up", NMQ, {"prune": "magnitude"}), ("l0.mlp.down", NMQ, {"prune": "magnitude"}),
                                  ("l0.attn.q", "int8", {})]:  # fmt: skip
        _same(stoicc_py.pack(weights[name], layout, **options), loaded[name])
    _check_kernel(kernel, loaded["l0.mlp.up"])


def test_cli_compress_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = save_weights({"l.mlp.w": _matrix(8, 64)}, tmp_path / "m.safetensors")
    out = str(tmp_path / "o.safetensors")
    cases = [("[layers\n", "not valid TOML"),
             ('[layers]\n"*mlp*" = {layout = "nm(2, 4)"}\n"x" = {layout = "int8"}', "w violates nm(2, 4)")]  # fmt: skip
    for text, message in cases:
        assert cli.main(["compress", str(model), "--recipe", str(_recipe(tmp_path, text)), "-o", out]) == 1
        err = capsys.readouterr().err
        assert (
            "Traceback" not in err
            and message in err.splitlines()[-1]
            and err.splitlines()[-1].startswith("stoicc: error:")
        )
    assert "warning: " in err and "layers.'x' matches no tensor" in err
    assert cli.main(["compress", str(tmp_path / "m.bin"), "--recipe", str(_recipe(tmp_path, "")), "-o", out]) == 1
    assert "a model must be a .safetensors, .npz or .gguf file" in capsys.readouterr().err
