"""Golden bytes of the sparse formats: docs/formats.md's hand-worked examples, byte for byte.

Each example's buffers are asserted against the packer, decoded by the numpy codec, and
multiplied by compiled CPU kernels (the scalar loop nest and the vectorised path) and, for
the formats it runs, by the accelerator simulator. Ragged hybrid tiles are checked against
the reference on shapes that are not multiples of the tile.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stoicc_py
from stoicc_py import lowering, pack
from stoicc_py.backends.llvm.target import host_features, vector_registers
from stoicc_py.codec import codec_for
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.passes.tdsl_vectorize_sparse import PERMUTE

Array = np.ndarray[Any, Any]
HYBRID = "hybrid(tile=[2, 4], formats=[dense, nm(2, 4)])"
GOLDEN: dict[str, tuple[list[list[int]], dict[str, str]]] = {
    "nm(2, 4)": (
        [[0, 1, 0, -2, 3, 0, 0, 0], [0, 0, 0, 0, 0, 0, 4, 5]],
        {"values": "0000803f000000c000004040000000000000000000000000000080400000a040",
         "indices": "4d000000e4000000"},
    ),
    "block([2, 2])": (
        [[1, 2, 0, 0], [3, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 5]],
        {"rowptr": "000000000100000002000000", "cols": "0000000001000000",
         "values": "0000803f0000004000004040000080400000000000000000000000000000a040"},
    ),
    "csr(index=i8)": (
        [[0, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 3]],
        {"rowptr": "00000000010000000100000003000000", "cols": "010003", "values": "000000400000803f00004040"},
    ),
    "csr(index=i16)": (
        [[0, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 3]],
        {"rowptr": "00000000010000000100000003000000", "cols": "010000000300", "values": "000000400000803f00004040"},
    ),
    HYBRID: (  # 3 rows: the last tile row is ragged, stored as if padded with a zero row
        [[1, 2, 3, 4, 0, 0, 0, 0], [5, 6, 7, 8, 0, 0, 0, 0], [0, 0, 0, 0, 0, 9, 0, 0]],
        {"table": "01000002", "tile0.rowptr": "000000000100000001000000", "tile0.cols": "00000000",
         "tile0.values": "0000803f0000004000004040000080400000a0400000c0400000e04000000041",
         "tile1.rowptr": "000000000000000001000000", "tile1.cols": "01000000",
         "tile1.values": "00000000000010410000000000000000", "tile1.indices": "0400000004000000"},
    ),
}  # fmt: skip
DOCS = (Path(__file__).parents[1] / "docs" / "formats.md").read_text()


def _matrix(layout: str) -> Array:
    return np.array(GOLDEN[layout][0], np.float32)


def _from_bytes(layout: str) -> dict[str, Array]:
    """The golden buffers as arrays of the storage's dtypes and shapes."""
    packed = pack(_matrix(layout), layout)
    return {role: np.frombuffer(bytes.fromhex(h), packed.arrays[role].dtype).reshape(packed.arrays[role].shape)
            for role, h in GOLDEN[layout][1].items()}  # fmt: skip


@pytest.mark.parametrize("layout", GOLDEN)
def test_packer_writes_the_golden_bytes(layout: str) -> None:
    packed = pack(_matrix(layout), layout)
    assert packed.storage.roles == list(GOLDEN[layout][1])
    assert {r: a.tobytes().hex() for r, a in packed.arrays.items()} == GOLDEN[layout][1]
    # an int8 matrix: the same metadata bytes, int8 values
    ints = pack(_matrix(layout).astype(np.int8), layout)
    assert all(ints.arrays[r].tobytes() == packed.arrays[r].tobytes() for r in ints.arrays if "values" not in r)


@pytest.mark.parametrize("layout", GOLDEN)
def test_docs_show_the_golden_bytes(layout: str) -> None:
    section = DOCS[DOCS.index(f"golden: {layout}") :]
    for role, h in GOLDEN[layout][1].items():
        assert " ".join(h[i : i + 8] for i in range(0, len(h), 8)) in section, role


@pytest.mark.parametrize("layout", GOLDEN)
def test_codec_decodes_the_golden_bytes(layout: str) -> None:
    w = _matrix(layout)
    code = codec_for(parse_layout(layout), w.shape)
    arrays = _from_bytes(layout)
    code.check(arrays)
    np.testing.assert_array_equal(code.decode(arrays), w)


def _no_vectoriser(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = lowering.pipeline_spec
    monkeypatch.setattr(lowering, "pipeline_spec", lambda *a: re.sub(r"tdsl-vectorize-sparse\{[^}]*\},", "", spec(*a)))


def _check_cpu(layout: str, w: Array, rows: int, scalar: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The compiled kernel against numpy and the reference on `rows` rows of x; the program."""
    if scalar:
        _no_vectoriser(monkeypatch)
    n, k = w.shape
    src = f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}) -> f32[M, {n}] {{ return linear(x, w) }}"
    prog = stoicc_py.compile(src, cache=False)  # the cache key does not know the pipeline
    packed = prog.f.pack("w", w)
    x = np.random.default_rng(0).standard_normal((rows, k)).astype(np.float32)
    np.testing.assert_allclose(prog.f(x, packed), x.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(prog.f(x, packed), prog.f.reference(x, packed), rtol=1e-4, atol=1e-4)
    return prog


VECTORISED = {"nm(2, 4)"}
"""The golden examples a vectoriser takes (docs/formats.md's table: block and csr have no
vector path, and the hybrid example's tiles are narrower than 32)."""


@pytest.mark.parametrize("scalar", [True, False], ids=["scalar", "vector"])
@pytest.mark.parametrize("layout", GOLDEN)
def test_cpu_kernels_multiply_the_golden_bytes(layout: str, scalar: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    prog = _check_cpu(layout, _matrix(layout), 33, scalar, monkeypatch)
    assert ("vector.fma" in prog.f.ir("loops")) == (not scalar and layout in VECTORISED)


@pytest.mark.parametrize("layout", ["nm(2, 4)", HYBRID])
def test_simulator_multiplies_the_golden_bytes(layout: str) -> None:
    """The accelerator runs whole hybrid tiles: the hybrid example with its padding row."""
    w = _matrix(layout).astype(np.int8)
    w = np.vstack([w, np.zeros((w.shape[0] % 2, w.shape[1]), np.int8)])
    n, k = w.shape
    prog = stoicc_py.compile(f"kernel f(x: i8[M, {k}], w: i8[{n}, {k}] @ {layout}) -> i32[M, {n}] "
                             "{ return linear(x, w) }", target="accel")  # fmt: skip
    packed = prog.f.pack("w", w)
    assert {r: packed.arrays[r].tobytes().hex() for r in GOLDEN[layout][1] if "values" not in r} == {
        r: h for r, h in GOLDEN[layout][1].items() if "values" not in r
    }
    x = np.arange(3 * k, dtype=np.int8).reshape(3, k)
    np.testing.assert_array_equal(prog.f(x, packed), x.astype(np.int32) @ w.T.astype(np.int32))


RAGGED_ACCEL = [((83, 200), (64, 64), 5), ((576, 1536), (128, 128), 3), ((192, 576), (128, 128), 70)]


def _ragged_matrix(shape: tuple[int, int], tile: tuple[int, int], rng: np.random.Generator) -> Array:
    """Normal weights with empty, dense and 2:4 tiles; the ragged corner tile 2:4."""
    w = rng.standard_normal(shape).astype(np.float32)
    th, tw = tile
    w[:th, tw:] = 0  # some empty tiles
    w[th:, :tw] *= np.tile([1, 0, 0, 1], tw // 4)  # some 2:4 tiles
    corner = w[shape[0] // th * th :, shape[1] // tw * tw :]
    corner *= np.resize([0, 1, 1, 0], corner.shape[1])
    return w


@pytest.mark.parametrize(
    ("shape", "tile"), [((83, 200), (64, 64)), ((576, 1536), (128, 128)), ((192, 576), (128, 128))]
)
def test_ragged_hybrid_tiles_match_the_reference(shape: tuple[int, int], tile: tuple[int, int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Partial last tile rows and columns: packer, codec, the vectorised kernels (70 rows of x:
    a block of panels for the 2:4 tiles, then register blocks and their 1-row edges, a ragged
    M) and the scalar loops."""
    layout = f"hybrid(tile=[{tile[0]}, {tile[1]}], formats=[dense, nm(2, 4)])"
    w = _ragged_matrix(shape, tile, np.random.default_rng(1))
    packed = pack(w, layout)
    assert set(np.unique(packed.arrays["table"]).tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(packed.unpack(), w)
    loops = _check_cpu(layout, w, 70, scalar=False, monkeypatch=monkeypatch).f.ir("loops")
    permute = PERMUTE[vector_registers(host_features())[0]]  # vpermi2var on AVX-512, vpermilps on AVX2
    assert "vector.fma" in loops and permute in loops  # the vector path, dense and 2:4 tiles
    if shape[0] < 100:
        _check_cpu(layout, w, 5, scalar=True, monkeypatch=monkeypatch)


def test_ragged_nm_tile_column_must_hold_whole_groups() -> None:
    with pytest.raises(
        stoicc_py.CompileError, match=r"2:28: error: hybrid: the last tile column holds 6 of the 70 columns"
    ):
        stoicc_py.compile("\nkernel f(x: f32[M, 70], w: f32[8, 70] @ hybrid(tile=[8, 64], formats=[nm(2, 4)])) "
                          "-> f32[M, 8] { return linear(x, w) }")  # fmt: skip


@pytest.mark.parametrize(("shape", "tile", "rows"), RAGGED_ACCEL)
def test_accelerator_runs_ragged_hybrid_tiles(shape: tuple[int, int], tile: tuple[int, int], rows: int) -> None:
    """Ragged tiles on the simulator: each GEMM stops at the matrix's edge (rows and columns),
    bit-exact against the reference and numpy."""
    n, k = shape
    layout = f"hybrid(tile=[{tile[0]}, {tile[1]}], formats=[dense, nm(2, 4)])"
    prog = stoicc_py.compile(f"kernel f(x: i8[M, {k}], w: i8[{n}, {k}] @ {layout}) -> i32[M, {n}] "
                             "{ return linear(x, w) }", target="accel")  # fmt: skip
    w = (_ragged_matrix(shape, tile, np.random.default_rng(2)) * 30).clip(-127, 127).astype(np.int8)
    packed = prog.f.pack("w", w)
    assert packed.arrays["table"][-1, -1] != 0  # the ragged corner tile is stored and multiplied
    x = np.random.default_rng(3).integers(-128, 128, (rows, k), dtype=np.int8)
    got = prog.f(x, packed)
    np.testing.assert_array_equal(got, x.astype(np.int32) @ w.T.astype(np.int32))
    np.testing.assert_array_equal(got, prog.f.reference(x, packed))
