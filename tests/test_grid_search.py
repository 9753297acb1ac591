"""GPTQ's grid search (pack(..., grid="mse"): stoicc_py.codec.uniform.searched_grid), checked
against the codec's min/max grid in plain numpy: never a larger error per group, the same grid
where the min/max one is already exact, valid codes, and GPTQ's sweep on the searched grids."""

from __future__ import annotations

import numpy as np
import pytest

import stoicc_py
from stoicc_py.codec.uniform import Shrink, dequantize_codes, quantize, searched_grid
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing.methods import compress
from stoicc_py.packing.quant import fake_quantize

NORM = Shrink().norm
LAYOUTS = [  # (layout, columns per scale group: None = a whole row, 0 = the whole matrix)
    ("int4(group=32)", 32),
    ("int3(group=32, symmetric=false)", 32),
    ("int4(group=64, zero=float, scale=f16)", 64),
    ("int4(group=48, zero=float)", 48),  # 96 = 2 * 48 ... and 100 columns: a ragged last group
    ("int2(group=32, symmetric=false)", 32),
    ("int8(per=channel)", None),
    ("int5", 0),
    ("int6(group=32, scale=bf16)", 32),
]


def rows(kind: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_t(2, shape) if kind == "heavy" else rng.standard_normal(shape)
    return (0.02 * w + (0.01 if kind == "shifted" else 0)).astype(np.float32)


def group_error(w: np.ndarray, v: np.ndarray, group: int | None, importance: np.ndarray | None = None) -> np.ndarray:
    """sum (importance) |w - v|^norm per scale group [R, groups] (float64), the last group ragged."""
    e = np.abs(w.astype(np.float64) - v) ** NORM * (1 if importance is None else importance)
    if group == 0:
        return e.sum(keepdims=True)
    return e.sum(axis=1, keepdims=True) if group is None else np.add.reduceat(e, np.arange(0, w.shape[1], group), axis=1)


@pytest.mark.parametrize(("layout", "group"), LAYOUTS)
@pytest.mark.parametrize("kind", ["normal", "heavy", "shifted"])
def test_search_never_loses_to_min_max(layout: str, group: int | None, kind: str) -> None:
    w = rows(kind, (24, 100 if group == 48 else 128), seed=len(layout) + len(kind))
    attr = parse_layout(layout)
    packed = stoicc_py.pack(w, attr, grid="mse")  # validates the codes, scales, zero points, offsets
    grid = searched_grid(w, attr, Shrink())
    np.testing.assert_array_equal(packed.unpack(), dequantize_codes(quantize(w, attr, grid), attr))
    searched, minmax = group_error(w, packed.unpack(), group), group_error(w, fake_quantize(w, attr), group)
    assert (searched <= minmax * (1 + 1e-5)).all()  # float32 scoring against float64 here
    if kind == "heavy" and group is not None:  # outliers: clipping them pays in groups (a row at 8 bits keeps them)
        assert searched.sum() < minmax.sum()
    assert (np.abs(grid.scales.astype(np.float32)) <= quantize(w, attr).scales.astype(np.float32)).all()


@pytest.mark.parametrize(("layout", "group"), LAYOUTS[2:5])
def test_weighted_search(layout: str, group: int | None) -> None:
    # grid='hmse': each column's errors weighed by its importance (diag H); all ones is the reference's
    w = rows("heavy", (24, 100 if group == 48 else 128), seed=5)
    attr = parse_layout(layout)
    importance = np.random.default_rng(6).uniform(0, 4, w.shape[1]).astype(np.float32)
    plain, ones = searched_grid(w, attr, Shrink()), searched_grid(w, attr, Shrink(), np.ones(w.shape[1], np.float32))
    np.testing.assert_array_equal(plain.scales, ones.scales)
    weighted = dequantize_codes(quantize(w, attr, searched_grid(w, attr, Shrink(), importance)), attr)
    got = group_error(w, weighted, group, importance)
    assert (got <= group_error(w, fake_quantize(w, attr), group, importance) * (1 + 1e-5)).all()
    assert (got <= group_error(w, dequantize_codes(quantize(w, attr, plain), attr), group, importance) * (1 + 1e-5)).all()
    assert (weighted != dequantize_codes(quantize(w, attr, plain), attr)).any()


@pytest.mark.parametrize("layout", ["int4(group=32)", "int3(group=32, symmetric=false)", "int4(group=32, zero=float, scale=f16)"])  # fmt: skip
def test_rows_on_a_grid_keep_it(layout: str) -> None:
    # values already on their min/max grid: that grid has (almost) no error and no shrunk one
    # comes close, so the search returns it exactly (the reference Q4_1 model's case)
    attr = parse_layout(layout)
    w = fake_quantize(rows("heavy", (16, 64), seed=3), attr)
    grid, minmax = searched_grid(w, attr, Shrink()), quantize(w, attr)
    for got, want in [(grid.scales, minmax.scales), (grid.zero_points, minmax.zero_points), (grid.offsets, minmax.offsets)]:  # fmt: skip
        np.testing.assert_array_equal(got, want)


def test_gptq_with_the_search() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((384, 128)).astype(np.float32) @ rng.standard_normal((128, 128)).astype(np.float32)
    w = rows("heavy", (48, 128), seed=1)
    y = x.astype(np.float64) @ w.T

    def out_error(p: stoicc_py.PackedTensor) -> float:
        return float(np.linalg.norm(y - x @ p.unpack().T.astype(np.float64)) / np.linalg.norm(y))

    layout = "int3(group=32, symmetric=false)"
    rtn = out_error(stoicc_py.pack(w, layout, grid="mse"))
    for act_order in (False, True):
        packed = stoicc_py.pack(w, layout, method="gptq", activations=x, act_order=act_order, grid="mse")
        values = compress(w, packed.layout, "gptq", activations=x, act_order=act_order, grid="mse").values  # type: ignore[arg-type]
        np.testing.assert_array_equal(packed.unpack(), values)
        assert out_error(packed) < 0.8 * rtn
    # a diagonal Hessian updates nothing: each group's grid is searched on w itself, as RTN's,
    # and with grid='hmse' each column's errors weighed by H's diagonal
    h = np.diag(np.linspace(1, 2, 128))
    diagonal = stoicc_py.pack(w, layout, method="gptq", hessian=h, grid="mse")
    np.testing.assert_array_equal(diagonal.unpack(), stoicc_py.pack(w, layout, method="rtn", grid="mse").unpack())
    attr = parse_layout(layout)
    weighted = searched_grid(w, attr, Shrink(), np.diag(h).astype(np.float32))
    np.testing.assert_array_equal(stoicc_py.pack(w, attr, method="gptq", hessian=h, grid="hmse").unpack(),
                                  dequantize_codes(quantize(w, attr, weighted), attr))  # fmt: skip
    hmse = stoicc_py.pack(w, layout, method="gptq", activations=x, act_order=True, grid="hmse")
    np.testing.assert_array_equal(hmse.unpack(), compress(w, attr, "gptq", activations=x, act_order=True, grid="hmse").values)
    assert out_error(hmse) < 0.8 * rtn


def test_errors() -> None:
    w = rows("normal", (8, 64), seed=0)
    with pytest.raises(ValueError, match="grid must be one of 'minmax', 'mse', 'hmse', got 'l2'"):
        stoicc_py.pack(w, "int4", grid="l2")
    with pytest.raises(ValueError, match=r"grid='mse' goes with method='rtn' or 'gptq' .* not method='sparsegpt'"):
        stoicc_py.pack(w, "nm(2, 4) with int4", method="sparsegpt", activations=w, grid="mse")
    with pytest.raises(ValueError, match=r"grid='mse' goes with .* on nm\(2, 4\)"):
        stoicc_py.pack(w, "nm(2, 4)", prune="magnitude", grid="mse")
    with pytest.raises(ValueError, match=r"grid='hmse' weighs errors by the Hessian of method='gptq', not method='rtn'"):
        stoicc_py.pack(w, "int4", method="rtn", grid="hmse")
    with pytest.raises(ValueError, match="scale is the mean"):
        stoicc_py.pack(w, "ternary(group=32)", grid="mse")
