"""The runtime packer: round trips, the documented worked examples, violations, pruning,
hybrid plans, and validate() on corrupt packed tensors."""

from __future__ import annotations

import copy
import pickle
import re
import warnings
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from xdsl.dialects.builtin import DYNAMIC_INDEX, Float32Type, IntegerType

import stoicc_py
from stoicc_py.diagnostics import CompileError, StoiccWarning
from stoicc_py.dialects.sparse import HybridAttr, NMAttr
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing import ALIGNMENT, PackedTensor, pack

Array = np.ndarray[Any, Any]
HYPOTHESIS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------- matrices that satisfy a layout


def _values(rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
    v = rng.standard_normal(shape).astype(np.float32)
    return np.where(v == 0, np.float32(1), v)


def nm_matrix(rng: np.random.Generator, rows: int, cols: int, n: int, m: int, density: float) -> Array:
    """Each group keeps up to n random positions, each with probability `density`."""
    groups = rows * cols // m
    chosen = np.argsort(rng.random((groups, m)), axis=1)[:, :n]
    keep = np.zeros((groups, m), bool)
    np.put_along_axis(keep, chosen, rng.random((groups, n)) < density, axis=1)
    return np.where(keep, _values(rng, (groups, m)), np.float32(0)).reshape(rows, cols)


def sparse_matrix(rng: np.random.Generator, rows: int, cols: int, density: float) -> Array:
    return np.where(rng.random((rows, cols)) < density, _values(rng, (rows, cols)), np.float32(0))


def block_matrix(rng: np.random.Generator, rows: int, cols: int, bh: int, bw: int, density: float) -> Array:
    blocks = rng.random((rows // bh, 1, cols // bw, 1)) < density
    mask = np.broadcast_to(blocks, (rows // bh, bh, cols // bw, bw)).reshape(rows, cols)
    return np.where(mask, sparse_matrix(rng, rows, cols, 0.7), np.float32(0))


def hybrid_matrix(rng: np.random.Generator, rows: int, cols: int, layout: HybridAttr, density: float) -> Array:
    """Each tile is empty, or random data of a randomly chosen listed format."""
    th, tw = layout.tile_shape
    formats = layout.formats.data
    w = np.zeros((rows, cols), np.float32)
    for r in range(rows // th):
        for c in range(cols // tw):
            kind = int(rng.integers(len(formats) + 1))
            fmt = formats[kind - 1]
            if kind == 0:
                continue
            tile = (
                nm_matrix(rng, th, tw, fmt.n.data, fmt.m.data, density)
                if isinstance(fmt, NMAttr)
                else sparse_matrix(rng, th, tw, density)
            )
            w[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile
    return w


def matrix_for(layout_text: str, rows: int, cols: int, seed: int, density: float) -> Array:
    rng, layout = np.random.default_rng(seed), parse_layout(layout_text)
    if isinstance(layout, NMAttr):
        return nm_matrix(rng, rows, cols, layout.n.data, layout.m.data, density)
    if isinstance(layout, HybridAttr):
        return hybrid_matrix(rng, rows, cols, layout, density)
    if layout_text.startswith("block"):
        bh, bw = (int(s) for s in layout_text[7:-2].split(","))
        return block_matrix(rng, rows, cols, bh, bw, density)
    return sparse_matrix(rng, rows, cols, density)


def expected_dtype(packed: PackedTensor, role: str, element: Any) -> np.dtype[Any]:
    if isinstance(element, Float32Type):
        return np.dtype(np.float32)
    assert isinstance(element, IntegerType)
    unsigned = packed.layout.summary().startswith("csr") and role == "cols"
    return np.dtype(f"{'u' if unsigned else 'i'}{element.width.data // 8}")


def assert_matches_storage(packed: PackedTensor) -> None:
    for buf, a in zip(packed.storage.buffers.data, packed.buffers()):
        role, want = buf.role.data, buf.type.get_shape()
        assert a is packed.arrays[role]
        assert a.dtype == expected_dtype(packed, role, buf.type.element_type), role
        assert a.ndim == len(want) and all(w in (DYNAMIC_INDEX, d) for d, w in zip(a.shape, want)), role
        assert a.flags.c_contiguous and (a.size == 0 or a.ctypes.data % ALIGNMENT == 0), role
    sizes = packed.nbytes_breakdown()
    assert sizes["values"] + sizes["metadata"] + sizes["scales"] + sizes["table"] == sizes["total"] == packed.nbytes
    assert sizes["total"] == sum(a.nbytes for a in packed.buffers())


# ---------------------------------------------------------------------------- round trips

CASES = [
    ("dense", [(1, 1), (3, 5), (16, 8)]),
    ("nm(2, 4)", [(1, 4), (3, 8), (16, 64), (5, 36)]),
    ("nm(1, 2)", [(1, 2), (4, 66), (2, 64)]),
    ("nm(3, 8)", [(1, 8), (7, 88)]),
    ("nm(4, 32)", [(2, 32), (3, 224)]),
    ("block([2, 2])", [(2, 2), (4, 6), (8, 4)]),
    ("block([1, 4])", [(1, 4), (3, 12)]),
    ("csr(index=i8)", [(1, 1), (3, 256), (5, 7)]),
    ("csr(index=i16)", [(4, 9)]),
    ("csr(index=i32)", [(6, 3)]),
    ("csr(index=i64)", [(2, 5)]),
    ("hybrid(tile=[2, 4], formats=[dense, nm(2, 4)])", [(2, 4), (4, 8), (6, 16)]),
    ("hybrid(tile=[4, 8], formats=[nm(2, 4), nm(1, 8)])", [(4, 8), (8, 24)]),
    ("hybrid(tile=[1, 8], formats=[dense])", [(1, 8), (3, 16)]),
]
DENSITIES = [0.0, 0.3, 0.7, 1.0]


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize(("layout", "shape"), [(lay, shape) for lay, shapes in CASES for shape in shapes])
def test_round_trip(layout: str, shape: tuple[int, int], density: float) -> None:
    w = matrix_for(layout, *shape, seed=zlib.crc32(repr((layout, shape, density)).encode()), density=density)
    packed = pack(w, layout)
    assert packed.shape == shape
    assert_matches_storage(packed)
    out = packed.unpack()
    assert out.dtype == np.float32 and out.shape == shape
    assert np.array_equal(out.view(np.uint32), w.view(np.uint32))  # bit-exact


def test_pack_copies_and_keeps_layout_attribute() -> None:
    w = np.eye(4, dtype=np.float32)
    layout = parse_layout("dense")
    packed = pack(w, layout)
    assert packed.layout is layout and not np.shares_memory(packed.arrays["values"], w)
    assert packed.storage == layout.storage((4, 4), Float32Type())


def test_negative_zero_is_a_zero() -> None:
    w = np.array([[-0.0, 1, 0, 2]], np.float32)
    packed = pack(w, "nm(2, 4)")
    assert np.array_equal(packed.unpack(), w)
    assert packed.arrays["values"].tolist() == [[1, 2]]


def test_large_nm_pack() -> None:
    w = nm_matrix(np.random.default_rng(1), 512, 1024, 2, 4, 0.9)
    assert np.array_equal(pack(w, "nm(2, 4)").unpack(), w)


# ---------------------------------------------------------------------------- worked examples (docs/formats.md)


def test_nm_worked_example() -> None:
    w = np.array([[0, 1.5, 0, -2, 3, 0, 0, 0], [0, 0, 0, 0, 4, 5, 0, 0]], np.float32)
    packed = pack(w, "nm(2, 4)")
    assert packed.arrays["values"].tolist() == [[1.5, -2, 3, 0], [0, 0, 4, 5]]
    # row 0 positions 1, 3 | 0, 1 -> 01 00 11 01 ; row 1 positions 0, 1 | 0, 1 -> 01 00 01 00
    assert packed.arrays["indices"].tolist() == [[0x4D], [0x44]]
    assert packed.arrays["indices"].tolist() == [[0b01_00_11_01], [0b01_00_01_00]]
    assert packed.nbytes_breakdown() == {"values": 32, "metadata": 8, "scales": 0, "table": 0, "total": 40}


def test_nm_index_words_span_several_words() -> None:
    # nm(1, 2) on 68 columns: 34 one-bit indices, 32 to a word, so word 1 holds only slots 32 and 33.
    w = np.zeros((1, 68), np.float32)
    w[0, 1::2] = 1  # position 1 in every group
    packed = pack(w, "nm(1, 2)")
    assert packed.arrays["indices"].view(np.uint32).tolist() == [[0xFFFFFFFF, 0x3]]


def test_block_worked_example() -> None:
    w = np.array([[1, 2, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 4]], np.float32)
    packed = pack(w, "block([2, 2])")
    assert packed.arrays["rowptr"].tolist() == [0, 1, 2]
    assert packed.arrays["cols"].tolist() == [0, 1]
    assert packed.arrays["values"].tolist() == [[[1, 2], [0, 3]], [[0, 0], [0, 4]]]
    assert packed.nbytes_breakdown() == {"values": 32, "metadata": 8, "scales": 0, "table": 12, "total": 52}


def test_csr_worked_example() -> None:
    w = np.array([[0, 1, 0, 2], [0, 0, 0, 0], [3, 0, 4, 5]], np.float32)
    packed = pack(w, "csr(index=i8)")
    assert packed.arrays["rowptr"].tolist() == [0, 2, 2, 5]
    assert packed.arrays["cols"].dtype == np.uint8 and packed.arrays["cols"].tolist() == [1, 3, 0, 2, 3]
    assert packed.arrays["values"].tolist() == [1, 2, 3, 4, 5]
    assert packed.nbytes_breakdown() == {"values": 20, "metadata": 5, "scales": 0, "table": 16, "total": 41}


HYBRID_EXAMPLE = np.array(
    [
        [1, 2, 3, 4, 6, 0, 0, 0],
        [5, 0, 0, 0, 0, 0, 0, 7],
        [0, 0, 0, 0, 1, 0, 2, 0],
        [0, 0, 0, 0, 0, 0, 3, 4],
    ],
    np.float32,
)
HYBRID = "hybrid(tile=[2, 4], formats=[dense, nm(2, 4)])"


def test_hybrid_worked_example() -> None:
    packed = pack(HYBRID_EXAMPLE, HYBRID)
    a = {role: v.tolist() for role, v in packed.arrays.items()}
    assert a["table"] == [[1, 2], [0, 2]]
    assert a["tile0.rowptr"] == [0, 1, 1] and a["tile0.cols"] == [0]
    assert a["tile0.values"] == [[[1, 2, 3, 4], [5, 0, 0, 0]]]
    assert a["tile1.rowptr"] == [0, 1, 2] and a["tile1.cols"] == [1, 1]
    assert a["tile1.values"] == [[[6, 0], [0, 7]], [[1, 2], [3, 4]]]
    # positions (0, 1) (0, 3) | (0, 2) (2, 3): 2-bit fields, LSB first
    assert a["tile1.indices"] == [[[0b01_00], [0b11_00]], [[0b10_00], [0b11_10]]]
    assert packed.nbytes_breakdown() == {"values": 64, "metadata": 28, "scales": 0, "table": 28, "total": 120}
    assert packed.storage.roles == list(packed.arrays)
    assert "120 bytes" in repr(packed) and "hybrid(tile=[2, 4]" in repr(packed)


def test_nm_byte_breakdown() -> None:
    w = nm_matrix(np.random.default_rng(0), 128, 64, 2, 4, 0.5)
    sizes = pack(w, "nm(2, 4)").nbytes_breakdown()
    assert sizes == {"values": 128 * 32 * 4, "metadata": 128 * 2 * 4, "scales": 0, "table": 0, "total": 128 * 34 * 4}


# ---------------------------------------------------------------------------- violations, pruning, shapes


def test_nm_violation_names_the_group() -> None:
    w = np.zeros((4, 24), np.float32)
    w[3, 20:23] = 1
    with pytest.raises(
        ValueError, match=r"w violates nm\(2, 4\) at row 3, group 5 \(columns 20\.\.23\): 3 non-zeros, at most 2"
    ):
        pack(w, "nm(2, 4)")


def reference_prune(w: Array, n: int, m: int) -> Array:
    """Keep the n largest |values| of each group; ties keep the lower position."""
    out = np.zeros_like(w)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], m):
            group = w[r, g : g + m]
            order = sorted(range(m), key=lambda p: (-abs(float(group[p])), p))
            for p in order[:n]:
                out[r, g + p] = group[p]
    return out


@HYPOTHESIS
@given(
    st.integers(1, 4), st.integers(1, 4), st.sampled_from([(2, 4), (1, 4), (3, 8), (1, 2)]), st.integers(0, 2**32 - 1)
)
def test_prune_keeps_the_largest_magnitudes(rows: int, groups: int, nm: tuple[int, int], seed: int) -> None:
    n, m = nm
    rng = np.random.default_rng(seed)
    w = rng.integers(-3, 4, (rows, groups * m)).astype(np.float32)  # small integers: many ties
    packed = pack(w, f"nm({n}, {m})", prune="magnitude")
    assert np.array_equal(packed.unpack(), reference_prune(w, n, m))
    assert np.count_nonzero(packed.unpack().reshape(-1, m), axis=1).max() <= n


def test_prune_never_touches_the_input() -> None:
    w = np.ones((2, 8), np.float32)
    pack(w, "nm(2, 4)", prune="magnitude")
    pack(w, "hybrid(tile=[2, 4], formats=[nm(2, 4)])", prune="magnitude")
    assert (w == 1).all()


@pytest.mark.parametrize(
    ("layout", "shape", "rule"),
    [
        ("nm(2, 4)", (4, 10), "group size M = 4 does not divide the dimension of size 10"),
        ("block([2, 4])", (3, 8), "block height 2 does not divide the dimension of size 3"),
        ("block([2, 4])", (2, 6), "block width 4 does not divide the dimension of size 6"),
        ("hybrid(tile=[2, 8], formats=[dense, nm(2, 4)])", (4, 10), "last tile column holds 2 of the 10"),
        ("csr(index=i8)", (2, 257), "i8 column indices cannot address 257 columns"),
    ],
)
def test_shapes_not_divisible_are_rejected(layout: str, shape: tuple[int, int], rule: str) -> None:
    with pytest.raises(ValueError, match=f"cannot store shape .*not padded.*{rule}"):
        pack(np.zeros(shape, np.float32), layout)


@pytest.mark.parametrize(
    ("w", "kwargs", "error", "match"),
    [
        (np.zeros((2, 4)), {}, TypeError, "dtype float32, got float64"),
        ([[1.0]], {}, TypeError, "w must have dtype float32, got float64"),  # read as an array, not cast
        (np.zeros(4, np.float32), {}, ValueError, "must be 2-D"),
        (np.zeros((0, 4), np.float32), {}, ValueError, "two positive dims"),
        (np.zeros((2, 4), np.float32), {"prune": "random"}, ValueError, "prune must be None or 'magnitude'"),
        (np.zeros((2, 4), np.float32), {"plan": np.zeros((1, 1))}, ValueError, "plan= applies to hybrid layouts only"),
    ],
)
def test_bad_arguments(w: Any, kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        pack(w, "nm(2, 4)", **kwargs)


def test_layouts_without_a_packer() -> None:
    # quantized layouts and sparse with Q are packed (test_quant_packing.py, test_composite_packing.py)
    with pytest.raises(ValueError, match="no packer for layout"):
        pack(np.zeros((4, 8), np.float32), "block([2, 4]) with sq(low=int4(group=4), group=4, count=1)")


# ---------------------------------------------------------------------------- hybrid


def test_hybrid_rows_without_an_nm_tile_and_without_a_dense_tile() -> None:
    rng = np.random.default_rng(3)
    w = np.zeros((8, 16), np.float32)
    w[0:2] = _values(rng, (2, 16))  # tile row 0: all dense
    w[2:4] = nm_matrix(rng, 2, 16, 2, 4, 1.0)  # tile row 1: all 2:4
    # tile row 2 is empty; tile row 3 mixes the three
    w[6:8, 0:4] = _values(rng, (2, 4))
    w[6:8, 8:12] = nm_matrix(rng, 2, 4, 2, 4, 1.0)
    packed = pack(w, HYBRID)
    assert packed.arrays["table"].tolist() == [[1] * 4, [2] * 4, [0] * 4, [1, 0, 2, 0]]
    assert packed.arrays["tile0.rowptr"].tolist() == [0, 4, 4, 4, 5]
    assert packed.arrays["tile1.rowptr"].tolist() == [0, 0, 4, 4, 5]
    assert packed.arrays["tile1.cols"].tolist() == [0, 1, 2, 3, 2]
    assert np.array_equal(packed.unpack(), w)


def test_hybrid_takes_the_first_nm_format_that_fits() -> None:
    w = np.zeros((2, 8), np.float32)
    w[0, 0] = w[0, 4] = w[0, 5] = 1  # tile 0 fits nm(1, 4) and nm(2, 4); tile 1 only nm(2, 4)
    packed = pack(w, "hybrid(tile=[2, 4], formats=[dense, nm(1, 4), nm(2, 4)])")
    assert packed.arrays["table"].tolist() == [[2, 3]]


@pytest.mark.parametrize(
    ("plan", "dense_rowptr", "dense_cols", "nm_rowptr", "nm_cols"),
    [
        ([[1, 1], [0, 1]], [0, 2, 3], [0, 1, 1], [0, 0, 0], []),  # 2:4 tiles stored dense: no nm tile at all
        ([[1, 1], [1, 1]], [0, 2, 4], [0, 1, 0, 1], [0, 0, 0], []),  # an all-zero tile may be planned dense
        ([[1, 2], [2, 2]], [0, 1, 1], [0], [0, 1, 3], [1, 0, 1]),  # ... or nm
    ],
)
def test_hybrid_plan(
    plan: list[list[int]], dense_rowptr: list[int], dense_cols: list[int], nm_rowptr: list[int], nm_cols: list[int]
) -> None:
    packed = pack(HYBRID_EXAMPLE, HYBRID, plan=np.array(plan, np.int64))
    a = {role: v.tolist() for role, v in packed.arrays.items()}
    assert a["table"] == plan
    assert (a["tile0.rowptr"], a["tile0.cols"]) == (dense_rowptr, dense_cols)
    assert (a["tile1.rowptr"], a["tile1.cols"]) == (nm_rowptr, nm_cols)
    assert_matches_storage(packed)
    assert np.array_equal(packed.unpack(), HYBRID_EXAMPLE)


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        ([[1, 2], [0, 0]], r"at tile \(1, 1\) \(rows 2\.\.3, columns 4\.\.7\): planned empty, but it has 4 non-zeros"),
        (
            [[2, 2], [0, 2]],
            r"at tile \(0, 0\) \(rows 0\.\.1, columns 0\.\.3\): planned nm\(2, 4\), but row 0, columns 0\.\.3 hold 4",
        ),
    ],
)
def test_hybrid_plan_violations(plan: list[list[int]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pack(HYBRID_EXAMPLE, HYBRID, plan=np.array(plan))


def test_hybrid_plan_violation_names_the_matrix_row() -> None:
    w = HYBRID_EXAMPLE.copy()
    w[3, 5] = 9  # row 3, columns 4..7 = 0 9 3 4
    with pytest.raises(ValueError, match=r"at tile \(1, 1\) .*: planned nm\(2, 4\), but row 3, columns 4\.\.7 hold 3"):
        pack(w, HYBRID, plan=np.array([[1, 2], [0, 2]]))


def test_hybrid_plan_violations_pruned() -> None:
    packed = pack(HYBRID_EXAMPLE, HYBRID, plan=np.array([[2, 2], [0, 0]]), prune="magnitude")
    want = HYBRID_EXAMPLE.copy()
    want[2:4] = 0  # the tile planned empty
    want[0, 0:4] = [0, 0, 3, 4]  # the 2 largest of 1 2 3 4
    assert np.array_equal(packed.unpack(), want)


@pytest.mark.parametrize(
    ("plan", "error", "match"),
    [
        (np.array([[1, 2]]), ValueError, r"plan has shape \[1, 2\], expected \[2, 2\]"),
        (np.array([[1, 2], [3, 0]]), ValueError, r"plan\[1, 0\] = 3 is not a table code"),
        (np.array([[1.0, 2], [0, 2]]), TypeError, "integer array"),
    ],
)
def test_bad_plans(plan: Array, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        pack(HYBRID_EXAMPLE, HYBRID, plan=plan)


def test_hybrid_tile_that_fits_no_format() -> None:
    layout = "hybrid(tile=[2, 4], formats=[nm(2, 4)])"
    with pytest.raises(ValueError, match=r"tile \(0, 0\) \(rows 0\.\.1, columns 0\.\.3\) fits none of the formats"):
        pack(HYBRID_EXAMPLE, layout)
    pruned = pack(HYBRID_EXAMPLE, layout, prune="magnitude").unpack()
    assert pruned[0, 0:4].tolist() == [0, 0, 3, 4] and np.array_equal(pruned[:, 4:], HYBRID_EXAMPLE[:, 4:])


# ---------------------------------------------------------------------------- validate()


def rebuilt(packed: PackedTensor, **changes: Array) -> PackedTensor:
    arrays = {role: a.copy() for role, a in packed.arrays.items()} | changes
    return PackedTensor(packed.layout, packed.shape, arrays)


def test_validate_checks_buffers_against_the_storage() -> None:
    packed = pack(HYBRID_EXAMPLE, HYBRID)
    cases = {
        "dtype int64, expected int32": {"tile1.cols": packed.arrays["tile1.cols"].astype(np.int64)},
        r"'table' has shape \[2, 3\], expected \[2, 2\]": {"table": np.zeros((2, 3), np.int8)},
        r"'tile1.values' has shape \[2, 2\], expected \[\?, 2, 2\]": {"tile1.values": np.zeros((2, 2), np.float32)},
        r"'tile1.cols' \(2 entries\) and 'tile1.values' \(1\) disagree": {
            "tile1.values": packed.arrays["tile1.values"][:1]
        },
    }
    for match, change in cases.items():
        with pytest.raises(ValueError, match=match):
            rebuilt(packed, **change).validate()
    arrays = dict(packed.arrays)
    del arrays["table"]
    with pytest.raises(ValueError, match=r"buffers \['table'\] missing"):
        PackedTensor(packed.layout, packed.shape, arrays).validate()


def test_validate_messages() -> None:
    csr = pack(np.array([[0, 1, 0, 2], [0, 0, 0, 0], [3, 0, 4, 5]], np.float32), "csr(index=i8)")
    cases = [
        (csr, {"rowptr": np.array([1, 2, 2, 5], np.int32)}, r"rowptr\[0\] = 1, expected 0"),
        (csr, {"rowptr": np.array([0, 3, 2, 5], np.int32)}, r"rowptr decreases after row 1"),
        (csr, {"rowptr": np.array([0, 2, 2, 4], np.int32)}, r"rowptr\[-1\] = 4, but cols holds 5 entries"),
        (csr, {"cols": np.array([1, 3, 0, 2, 4], np.uint8)}, r"cols\[4\] = 4 \(row 2\) is out of range \[0, 4\)"),
        (csr, {"cols": np.array([1, 3, 0, 2, 2], np.uint8)}, r"cols of row 2 are not strictly ascending"),
    ]
    hybrid = pack(HYBRID_EXAMPLE, HYBRID)
    cases += [
        (hybrid, {"table": np.array([[1, 2], [0, 5]], np.int8)}, r"table\[1, 1\] = 5 is not a code"),
        (hybrid, {"table": np.array([[1, 2], [1, 2]], np.int8)}, r"table\[1, 0\] = 1, but the tile0 schedule does not"),
        (hybrid, {"table": np.array([[1, 0], [0, 2]], np.int8)}, r"table\[0, 1\] = 0, but the tile1 schedule lists"),
        (
            hybrid,
            {"tile1.indices": np.array([[[4], [12]], [[8], [15]]], np.int32)},
            r"tile 1, row 1: group 0 positions \[3, 3\]",
        ),
    ]
    nm = pack(np.array([[1, 1, 1, 0, 0, 0, 0, 0]], np.float32), "nm(3, 8)")  # 3 bits, 10 per word: bits 9..31 unused
    cases += [
        (nm, {"indices": nm.arrays["indices"] | (1 << 30)}, r"indices of row 0: word 0 = 0b01.* has bits set above")
    ]
    for packed, change, match in cases:
        with pytest.raises(ValueError, match=f"invalid packed .*{match}"):
            rebuilt(packed, **change).validate()


LAYOUTS = tuple(lay for lay, _ in CASES if lay != "dense")


@st.composite
def packed_tensors(draw: st.DrawFn, layouts: tuple[str, ...] = LAYOUTS) -> PackedTensor:
    """A packing of a random matrix that satisfies a random layout (small shapes)."""
    layout_text = draw(st.sampled_from(layouts))
    layout = parse_layout(layout_text)
    unit_rows, unit_cols = _units(layout)
    rows = unit_rows * draw(st.integers(1, 4))
    cols = unit_cols * draw(st.integers(1, 4))
    w = matrix_for(layout_text, rows, cols, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from(DENSITIES)))
    packed = pack(w, layout)
    assert np.array_equal(packed.unpack(), w)
    return packed


def _units(layout: Any) -> tuple[int, int]:
    """The smallest legal [rows, cols] step of a layout."""
    if isinstance(layout, NMAttr):
        return 1, layout.m.data
    if isinstance(layout, HybridAttr):
        return layout.tile_shape
    if layout.summary().startswith("block"):
        return layout.bh.data, layout.bw.data
    return 1, 1


@HYPOTHESIS
@given(packed_tensors())
def test_round_trip_property(packed: PackedTensor) -> None:
    assert_matches_storage(packed)
    assert np.array_equal(pack(packed.unpack(), packed.layout).unpack(), packed.unpack())


@HYPOTHESIS
@given(packed_tensors(), st.data())
def test_validate_catches_truncation(packed: PackedTensor, data: st.DataObject) -> None:
    role = data.draw(st.sampled_from([r for r, a in packed.arrays.items() if a.shape[0] > 0]))
    with pytest.raises(ValueError, match="invalid packed"):
        rebuilt(packed, **{role: packed.arrays[role][:-1]}).validate()


@HYPOTHESIS
@given(packed_tensors(tuple(lay for lay in LAYOUTS if not lay.startswith("nm"))), st.data())
def test_validate_catches_non_monotone_rowptr(packed: PackedTensor, data: st.DataObject) -> None:
    role = data.draw(st.sampled_from([r for r in packed.arrays if r.endswith("rowptr")]))
    rowptr = packed.arrays[role].copy()
    rowptr[data.draw(st.integers(1, rowptr.size - 1))] = rowptr[-1] + 1
    with pytest.raises(ValueError, match="rowptr"):
        rebuilt(packed, **{role: rowptr}).validate()


@HYPOTHESIS
@given(packed_tensors(tuple(lay for lay in LAYOUTS if not lay.startswith("nm"))), st.data())
def test_validate_catches_out_of_range_indices(packed: PackedTensor, data: st.DataObject) -> None:
    roles = [r for r, a in packed.arrays.items() if (r.endswith("cols") or r == "table") and a.size]
    assume(roles)  # an all-zero block or csr matrix stores no column index
    role = data.draw(st.sampled_from(roles))
    a = packed.arrays[role].copy()
    limit = len(packed.layout.formats.data) + 1 if role == "table" else _index_limit(packed)
    a.reshape(-1)[data.draw(st.integers(0, a.size - 1))] = data.draw(st.integers(limit, np.iinfo(a.dtype).max))
    with pytest.raises(ValueError, match="out of range|is not a code"):
        rebuilt(packed, **{role: a}).validate()


def _index_limit(packed: PackedTensor) -> int:
    """The number of columns (of blocks, of tiles) that cols index."""
    return packed.shape[1] // _units(packed.layout)[1]


@HYPOTHESIS
@given(packed_tensors(tuple(lay for lay in LAYOUTS if "nm" in lay)), st.data())
def test_validate_catches_flipped_index_bits(packed: PackedTensor, data: st.DataObject) -> None:
    """Flip an unused high bit, or make two positions of a group equal: both are caught."""
    roles = [r for r, a in packed.arrays.items() if r.endswith("indices") and a.size]
    assume(roles)  # a hybrid tensor may have no nm tile
    role = data.draw(st.sampled_from(roles))
    prefix = role[: -len("indices")]
    p = {k: packed.storage.param(prefix + k) for k in ("n", "index_bits", "per_word", "slots", "words")}
    words = packed.arrays[role].copy().reshape(-1, p["words"]).view(np.uint32)
    row = data.draw(st.integers(0, words.shape[0] - 1))
    used_last = (p["slots"] - (p["words"] - 1) * p["per_word"]) * p["index_bits"]
    if used_last < 32 and data.draw(st.booleans()):
        words[row, -1] ^= np.uint32(1 << data.draw(st.integers(used_last, 31)))
    elif p["n"] > 1:
        words[row, 0] &= ~np.uint32((1 << (2 * p["index_bits"])) - 1)  # slots 0 and 1 -> position 0 twice
    else:
        return
    with pytest.raises(ValueError, match="has bits set above|not distinct and ascending"):
        rebuilt(packed, **{role: words.view(np.int32).reshape(packed.arrays[role].shape)}).validate()


@pytest.mark.parametrize("duplicate", [copy.deepcopy, lambda p: pickle.loads(pickle.dumps(p))])
def test_copies_stay_aligned_read_only_and_validated(duplicate: Any) -> None:
    """numpy's copies lose the buffers' alignment and read-only flag; a copied tensor gets both back."""
    packed = pack(
        np.random.default_rng(0).standard_normal((8, 32)).astype(np.float32),
        "nm(2, 4) with int4(group=8)",
        prune="magnitude",
    )
    twin = duplicate(packed)
    for role, a in twin.arrays.items():
        assert a is not packed.arrays[role] and not a.flags.writeable and a.ctypes.data % ALIGNMENT == 0, role
    assert twin._checked is not None  # check() is O(1), as for pack()'s own tensor
    np.testing.assert_array_equal(twin.unpack(), packed.unpack())


def test_hybrid_prune_without_a_plan_warns_that_it_prunes_nothing() -> None:
    layout = "hybrid(tile=[8, 16], formats=[dense, nm(2, 4)])"
    w = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    w[:8, :16] = 0  # one empty tile: 3 non-empty, none 2:4 as they are
    with pytest.warns(StoiccWarning, match=r"prunes no tile .*: 3 of 3 non-empty tiles fit no nm format") as record:
        packed = pack(w, layout, prune="magnitude")
    assert record[0].filename == __file__  # the caller's line, not the packer's
    assert (packed.unpack() == w).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning with a plan, nor without prune=
        pack(w, layout, prune="magnitude", plan="auto", sparsity=0.25)
        pack(w, layout)


@pytest.mark.parametrize(
    ("layout", "k", "message"),
    [
        ("nm(2, 4) with int4(group=64)", 576, "K=576 columns store 288 values per row, not a multiple of 64; "
         "make K a multiple of 128, or use a group that divides 288"),
        ("nm(1, 4) with int4", 12, "K=12 columns store 3 values per row, not a multiple of 2; make K a multiple of 8$"),
    ],
)  # fmt: skip
def test_quantized_nm_rules_are_said_in_columns(layout: str, k: int, message: str) -> None:
    """Q's groups count the values nm stores: the error says so, in the K the user wrote."""
    with pytest.raises(ValueError, match=re.escape(message.removesuffix("$")) + ("$" if message.endswith("$") else "")):
        pack(np.ones((4, k), np.float32), layout, prune="magnitude")
    source = f"kernel k(x: f32[M, {k}], w: f32[4, {k}] @ {layout}) -> f32[M, 4] {{ return linear(x, w) }}"
    with pytest.raises(CompileError, match=re.escape(message.removesuffix("$"))) as err:
        stoicc_py.compile(source)
    assert err.value.loc is not None
