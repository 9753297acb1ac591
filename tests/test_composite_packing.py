"""Composite formats in the runtime packer: `nm(N, M) with Q`, SQ-format and bit-split
activations, against independent numpy written here from docs/formats.md (loops over
rows and groups, bytes assembled by hand), the documented worked examples, byte
breakdowns, validate() on corrupt tensors, and properties."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoicc_py.diagnostics import CompileError
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing import PackedTensor, pack
from stoicc_py.packing.bitsplit import BitSplit, bitsplit, bitsplit_linear, fake_bitsplit
from stoicc_py.packing.composed import nm_dequantize, nm_quantize
from stoicc_py.packing.quant import codes_of, dequantize_codes, fake_quantize, quantize
from stoicc_py.packing.sq import fake_sq, sq_quantize, sq_split

Array = np.ndarray[Any, Any]
F32 = np.float32
HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sparse_weights(rows: int, cols: int, n: int, m: int, seed: int = 0) -> Array:
    """Random weights satisfying n:m, some groups with fewer than n non-zeros (padding)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(F32)
    keep = rng.random((rows, cols // m, m)).argsort(axis=-1) < rng.integers(0, n + 1, (rows, cols // m, 1))
    return np.where(keep.reshape(rows, cols), w, F32(0))


def outlier_weights(rows: int, cols: int, seed: int = 0, fraction: float = 0.01, size: float = 20.0) -> Array:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(F32)
    spikes = rng.random((rows, cols)) < fraction
    return np.where(spikes, w * F32(size), w).astype(F32)


def laplace_activations(rows: int, cols: int, seed: int = 0) -> Array:
    """Activations concentrated near zero, with one large outlier of random sign per row."""
    rng = np.random.default_rng(seed)
    x = rng.laplace(0.0, 1.0, (rows, cols)).astype(F32)
    x[np.arange(rows), rng.integers(0, cols, rows)] = F32(60.0) * rng.choice([F32(-1), F32(1)], rows)
    return x


def corrupt(packed: PackedTensor, role: str, change: Any) -> PackedTensor:
    arrays = {r: a.copy() for r, a in packed.arrays.items()}
    arrays[role] = change(arrays[role])
    return PackedTensor(packed.layout, packed.shape, arrays)


def set_at(index: tuple[int, ...], value: Any) -> Any:
    def change(a: Array) -> Array:
        a[index] = value
        return a

    return change


# ---------------------------------------------------------------------------- nm with Q: the reference


def reference_nm_slots(w: Array, n: int, m: int) -> tuple[Array, Array]:
    """(values [R, S], dense columns [R, S]) of plain nm: each group's non-zeros, padded with
    its smallest zero positions, ascending."""
    values, cols = [], []
    for row in w:
        rv, rc = [], []
        for g in range(row.size // m):
            nonzero = [p for p in range(m) if row[g * m + p] != 0]
            zeros = [p for p in range(m) if row[g * m + p] == 0]
            for p in sorted(nonzero + zeros[: n - len(nonzero)]):
                rv.append(row[g * m + p])
                rc.append(g * m + p)
        values.append(rv)
        cols.append(rc)
    return np.array(values, F32), np.array(cols)


def reference_nm_quant(w: Array, n: int, m: int, q: str) -> Array:
    """The dense matrix a kernel computes with: each slot's dequantized value at its column."""
    values, cols = reference_nm_slots(w, n, m)
    deq = fake_quantize(values, q)  # the [R, S] values quantized exactly as a plain matrix
    dense = np.zeros(w.shape, F32)
    for r in range(w.shape[0]):
        for s in range(cols.shape[1]):
            dense[r, cols[r, s]] += deq[r, s]
    return dense


NM_QUANT_LAYOUTS = [
    ("nm(2, 4) with int4(group=64)", 2, 4, "int4(group=64)"),
    ("nm(2, 4) with int8(axis=0)", 2, 4, "int8(axis=0)"),
    ("nm(1, 4) with int4(group=16, symmetric=false)", 1, 4, "int4(group=16, symmetric=false)"),
    ("nm(4, 8) with int2(group=32, scale=f16)", 4, 8, "int2(group=32, scale=f16)"),
    ("nm(2, 4) with ternary(axis=0)", 2, 4, "ternary(axis=0)"),
    ("nm(1, 2) with int8", 1, 2, "int8"),
]


@pytest.mark.parametrize("text,n,m,q", NM_QUANT_LAYOUTS)
def test_nm_quant_matches_reference(text: str, n: int, m: int, q: str) -> None:
    w = sparse_weights(6, 256, n, m)
    packed = pack(w, text)
    assert np.array_equal(packed.dequantize(), reference_nm_quant(w, n, m, q))
    assert np.array_equal(packed.unpack(), packed.dequantize())
    # The indices are plain nm's, and the codes quantize([R, S] values) exactly.
    plain = pack(w, f"nm({n}, {m})")
    assert np.array_equal(packed.arrays["indices"], plain.arrays["indices"])
    want = quantize(plain.arrays["values"], q)
    codes, words = nm_quantize(w, text)
    assert np.array_equal(codes.codes, want.codes) and np.array_equal(codes.scales, want.scales)
    assert np.array_equal(words, plain.arrays["indices"])
    assert np.array_equal(nm_dequantize(codes, words, text), packed.dequantize())
    assert list(packed.storage.roles)[-1] == "indices"


def test_nm_quant_prune_and_violation() -> None:
    w = np.random.default_rng(1).standard_normal((4, 64)).astype(F32)
    packed = pack(w, "nm(2, 4) with int4(group=16)", prune="magnitude")
    pruned = pack(w, "nm(2, 4)", prune="magnitude").unpack()
    assert np.array_equal(packed.dequantize(), reference_nm_quant(pruned, 2, 4, "int4(group=16)"))
    with pytest.raises(ValueError, match=r"w violates nm\(2, 4\) at row 0, group 0 \(columns 0..3\)"):
        pack(w, "nm(2, 4) with int4(group=16)")


def test_nm_quant_padding_slots() -> None:
    """A padding slot holds 0: its value is 0 (asymmetric: the code is zp), except binary (+s)."""
    w = np.zeros((1, 16), F32)
    w[0, 1], w[0, 6] = 3.0, 5.0  # one non-zero in groups 0 and 1: one padding slot each
    asym = pack(w, "nm(2, 4) with int4(symmetric=false)")
    assert asym.arrays["zero_points"].tolist() == [0]
    assert np.array_equal(asym.dequantize(), fake_quantize(w, "int4(symmetric=false)"))
    binary = pack(w, "nm(2, 4) with binary")
    s = float(binary.arrays["scales"][0])  # mean |values| over the 8 stored slots
    assert s == 1.0 and binary.dequantize().tolist() == [[1, 1, 0, 0, 1, 0, 1, 0] + [1, 1, 0, 0] * 2]


def test_nm_quant_bytes() -> None:
    """2:4 with int4(group=128) and f32 scales: about 0.39 bytes per dense weight."""
    rows, cols = 64, 1024
    packed = pack(sparse_weights(rows, cols, 2, 4), "nm(2, 4) with int4(group=128)")
    b = packed.nbytes_breakdown()
    assert b["values"] == rows * cols // 4
    assert b["scales"] == rows * (cols // 2 // 128) * 4
    assert b["metadata"] == rows * (cols // 2 // 16) * 4
    assert b["table"] == 0 and b["total"] / (rows * cols) == pytest.approx(0.390625)


def test_doc_nm_quant() -> None:
    w = np.array([[0, 7, 0, -2.5, 3.5, 0, 0, 0], [0, 0, 0, 0, 14, -5, 0, 0]], F32)
    packed = pack(w, "nm(2, 4) with int4(group=2)")
    assert packed.arrays["values"].view(np.uint8).tolist() == [[0xE7, 0x07], [0x00, 0xE7]]
    assert packed.arrays["scales"].tolist() == [[1, 0.5], [0, 2]]
    assert packed.arrays["indices"].tolist() == [[0x4D], [0x44]]
    assert packed.dequantize().tolist() == [[0, 7, 0, -2, 3.5, 0, 0, 0], [0, 0, 0, 0, 14, -4, 0, 0]]
    assert packed.nbytes_breakdown() == {"values": 4, "metadata": 8, "scales": 16, "table": 0, "total": 28}


def test_nm_quant_rejections() -> None:
    w = sparse_weights(4, 64, 2, 4)
    with pytest.raises(ValueError, match=r"no packer for layout block\(\[2, 4\]\) with int8\(\)"):
        pack(w, "block([2, 4]) with int8")
    with pytest.raises(ValueError, match="only nm"):
        pack(w, "csr with int4(group=16)")
    with pytest.raises(ValueError, match="only nm"):
        pack(w, "nm(2, 4) with sq(low=int4(group=16), group=16, count=1)")
    with pytest.raises(ValueError, match="group=64 does not divide"):
        pack(w, "nm(2, 4) with int4(group=64)")  # 32 stored values per row


NM_QUANT_CORRUPTIONS = [
    ("indices", set_at((1, 0), 0x7), r"indices of row 1: group 0 positions \[3, 1\] are not distinct"),
    ("values", set_at((2, 0), -128), r"values: the code of row 2, column 1 is -8"),
    ("scales", set_at((0, 1), np.nan), r"scales\[0, 1\] = nan"),
]


@pytest.mark.parametrize("role,change,message", NM_QUANT_CORRUPTIONS)
def test_nm_quant_validate(role: str, change: Any, message: str) -> None:
    bad = corrupt(pack(sparse_weights(4, 64, 2, 4), "nm(2, 4) with int4(group=16)"), role, change)
    with pytest.raises(ValueError, match=message):
        bad.validate()


# ---------------------------------------------------------------------------- SQ: the reference


def reference_sq(x: Array, text: str) -> tuple[Array, Array, Array, Array]:
    """(low input [R, K], high values [R, slots], positions [R, slots], dense columns)."""
    attr = parse_layout(text)
    group, count = attr.group.data, attr.count.data
    low, high, index, cols = x.copy(), [], [], []
    for r, row in enumerate(x):
        rh, ri, rc = [], [], []
        for g in range(row.size // group):
            part = row[g * group : (g + 1) * group]
            chosen = sorted(sorted(range(group), key=lambda p, part=part: (-abs(float(part[p])), p))[:count])
            for p in chosen:
                rh.append(part[p])
                ri.append(p)
                rc.append(g * group + p)
                low[r, g * group + p] = 0
        high.append(rh)
        index.append(ri)
        cols.append(rc)
    return low, np.array(high, F32), np.array(index), np.array(cols)


def reference_fake_sq(x: Array, text: str) -> Array:
    attr = parse_layout(text)
    low, high, _, cols = reference_sq(x, text)
    scattered = np.zeros(x.shape, F32)
    deq = fake_quantize(high, attr.high)
    for r in range(x.shape[0]):
        scattered[r, cols[r]] = deq[r]
    return fake_quantize(low, attr.low) + scattered


SQ_LAYOUTS = [
    "sq(low=int4(group=128), high=int8, high_density=0.05)",
    "sq(low=int4(group=32), group=16, count=2)",
    "sq(low=int2(axis=0, symmetric=false), high=int8(axis=0, scale=f16), group=64, count=3)",
    "sq(low=ternary(group=64), high=int8, group=8, count=1)",
    "sq(low=int4(per=token), high=int8(axis=0), group=32, count=32)",
]


@pytest.mark.parametrize("text", SQ_LAYOUTS)
def test_sq_matches_reference(text: str) -> None:
    attr = parse_layout(text)
    w = outlier_weights(6, 256, seed=2)
    w[1, :40] = 0  # ties among zeros go to the lower position
    packed = pack(w, text)
    low_in, high_in, index, _ = reference_sq(w, text)
    low, high, got_index = sq_split(w, text)
    assert got_index.dtype == np.uint16 and np.array_equal(got_index, index)
    for got, want in ((low, quantize(low_in, attr.low)), (high, quantize(high_in, attr.high))):
        assert np.array_equal(got.codes, want.codes) and np.array_equal(got.scales, want.scales)
    assert np.array_equal(packed.arrays["high.index"], index)
    assert np.array_equal(packed.dequantize(), reference_fake_sq(w, text))
    assert np.array_equal(fake_sq(w, text), packed.dequantize())
    assert packed.high_fraction == attr.count.data / attr.group.data


def test_sq_activations_at_run_time() -> None:
    x = laplace_activations(5, 128, seed=4)
    text = "sq(low=int4(per=token), high=int8(axis=0), group=32, count=2)"
    codes = sq_quantize(x, text)
    low_in, high_in, index, _ = reference_sq(x, text)
    assert np.array_equal(codes.index, index)
    assert np.array_equal(codes.low.codes, quantize(low_in, "int4(per=token)").codes)
    assert np.array_equal(codes.high.codes, quantize(high_in, "int8(axis=0)").codes)
    assert np.array_equal(fake_sq(x, text), reference_fake_sq(x, text))


def test_sq_beats_low_only_on_outliers() -> None:
    w = outlier_weights(64, 512, seed=5)
    low_only = pack(w, "int4(group=128)").error(w)["rel_fro"]
    sq = pack(w, "sq(low=int4(group=128), high=int8, high_density=0.05)").error(w)["rel_fro"]
    assert sq < 0.7 * low_only


def test_sq_bytes() -> None:
    rows, cols = 64, 1024
    packed = pack(outlier_weights(rows, cols), "sq(low=int4(group=128), high=int8, high_density=0.05)")
    slots = cols // 128 * 6  # count = round(0.05 * 128)
    assert packed.high_fraction == 6 / 128
    b = packed.nbytes_breakdown()
    assert b["values"] == rows * cols // 2 + rows * slots
    assert b["metadata"] == rows * slots * 2
    assert b["scales"] == rows * cols // 128 * 4 + 4
    assert b["total"] / (rows * cols) == pytest.approx(0.5 + 22 / 128, abs=1e-4)


def test_doc_sq() -> None:
    w = np.array([[0.5, -127, 1, -1.5, 3.5, 0.25, -3.5, 2], [3.5, -7, 7, 100, 0, 0, 0, 0]], F32)
    packed = pack(w, "sq(low=int4(axis=0), high=int8, group=4, count=1)")
    a = packed.arrays
    assert a["low.values"].view(np.uint8).tolist() == [[0x01, 0xD2, 0x00, 0x49], [0x94, 0x07, 0x00, 0x00]]
    assert a["low.scales"].tolist() == [0.5, 1]
    assert a["high.values"].view(np.uint8).tolist() == [[0x81, 0x04], [0x64, 0x00]]
    assert a["high.index"].tolist() == [[1, 0], [3, 0]] and a["high.scales"].tolist() == [1]
    assert packed.dequantize().tolist() == [[0.5, -127, 1, -1.5, 4, 0, -3.5, 2], [4, -7, 7, 100, 0, 0, 0, 0]]
    assert packed.nbytes_breakdown() == {"values": 12, "metadata": 8, "scales": 12, "table": 0, "total": 32}
    assert packed.high_fraction == 0.25 and packed.msb_zero_fraction is None


SQ_CORRUPTIONS = [
    ("high.index", set_at((0, 1), 0), r"high.index of row 0, group 0: positions \[1, 0, 7\] are not distinct"),
    ("high.index", set_at((2, 5), 16), r"high.index of row 2, group 1: positions \[\d+, \d+, 16\]"),
    ("high.values", set_at((1, 0), -128), r"high.values: the code of row 1, column 0 is -128"),
    ("low.values", set_at((3, 2), -128), r"low.values: the code of row 3, column 5 is -8"),
    ("low.scales", set_at((0, 0), -1.0), r"low.scales\[0, 0\] = -1.0"),
    ("high.scales", set_at((0,), np.inf), r"high.scales\[0\] = inf"),
    ("high.index", lambda a: a.astype(np.int16), r"buffer 'high.index' has dtype int16, expected uint16"),
]


@pytest.mark.parametrize("role,change,message", SQ_CORRUPTIONS)
def test_sq_validate(role: str, change: Any, message: str) -> None:
    packed = pack(outlier_weights(4, 64), "sq(low=int4(group=16), high=int8, group=16, count=3)")
    packed.arrays["high.index"][0, :3] = [1, 3, 7]  # known positions for the messages
    bad = corrupt(packed, role, change)
    with pytest.raises(ValueError, match=message):
        bad.validate()


def test_sq_rejections() -> None:
    w = outlier_weights(4, 64)
    with pytest.raises(ValueError, match="prune= applies to sparse layouts"):
        pack(w, "sq(low=int4(group=16), group=16, count=1)", prune="magnitude")
    with pytest.raises(ValueError, match="group=48 does not divide"):
        pack(w, "sq(low=int4(group=16), group=48, count=1)")
    with pytest.raises(ValueError, match=r"x\[0, 0\] = nan is not finite"):
        sq_split(np.where(np.arange(64) == 0, F32(np.nan), w), "sq(low=int4(group=16), group=16, count=1)")


# ---------------------------------------------------------------------------- bit-split: the reference


def reference_bitsplit(x: Array, offset: bool) -> dict[str, Array]:
    """The buffers, row by row and byte by byte, from the formulas."""
    rows, cols = x.shape
    out = {
        "lo": np.zeros((rows, cols // 2), np.uint8),
        "hi": np.zeros((rows, cols // 2), np.uint8),
        "bitmap": np.zeros((rows, cols // 8), np.uint8),
        "counts": np.zeros(rows, np.int32),
        "scales": np.zeros(rows, F32),
        "offsets": np.zeros(rows, np.int32),
    }
    for r in range(rows):
        s = np.max(np.abs(x[r])) / F32(127)
        c = [int(v) for v in np.clip(np.rint(x[r] / (s if s else F32(1))), -127, 127)]
        o = 0
        if offset:
            fits = [sum(0 <= v + o <= 15 for v in c) for o in range(min(15, 127 - max(c)) + 1)]
            o = fits.index(max(fits))
        j = 0
        for k, v in enumerate(c):
            u = v + o
            hi, lo = u // 16, u % 16  # floor division: u = 16 * hi + lo with 0 <= lo < 16
            out["lo"][r, k // 2] |= lo << (4 * (k % 2))
            if hi:
                out["bitmap"][r, k // 8] |= 1 << (k % 8)
                out["hi"][r, j // 2] |= (hi & 15) << (4 * (j % 2))
                j += 1
        out["counts"][r], out["scales"][r], out["offsets"][r] = j, s, o
    out["hi"] = out["hi"].view(np.int8)
    if not offset:
        del out["offsets"]
    return out


@pytest.mark.parametrize("offset", [False, True])
def test_bitsplit_matches_reference(offset: bool) -> None:
    x = laplace_activations(7, 96, seed=6)
    x[2] = 0  # an all-zero row: s = 0, every code 0
    x[3, 5] = F32(-200)  # a negative outlier: o is free to move
    text = f"bitsplit(int8, low_bits=4, offset={'true' if offset else 'false'})"
    packed = pack(x, text)
    want = reference_bitsplit(x, offset)
    assert list(packed.arrays) == list(packed.storage.roles)
    for role, a in want.items():
        assert packed.arrays[role].dtype == a.dtype and np.array_equal(packed.arrays[role], a), role
    assert np.array_equal(packed.dequantize(), fake_quantize(x, "int8(per=token)"))
    assert np.array_equal(fake_bitsplit(x, text), packed.dequantize())
    codes = quantize(x, "int8(per=token)").codes
    assert np.array_equal(bitsplit(x, text).codes(), codes)
    assert packed.msb_zero_fraction == 1 - want["counts"].sum() / x.size
    assert packed.high_fraction is None


def test_doc_bitsplit() -> None:
    x = np.array([[127, -3, 0, 5, -8, 20, 2, -1], [-127, -3, 0, 5, -8, 1, 2, -1]], F32)
    packed = pack(x, "bitsplit(int8, low_bits=4, offset=true)")
    a = {r: v.view(np.uint8) if v.dtype.itemsize == 1 else v for r, v in packed.arrays.items()}
    assert a["lo"].tolist() == [[0xDF, 0x50, 0x48, 0xF2], [0x59, 0xD8, 0x90, 0x7A]]
    assert a["hi"].tolist() == [[0xF7, 0x1F, 0x0F, 0x00], [0x08, 0x00, 0x00, 0x00]]
    assert a["bitmap"].tolist() == [[0xB3], [0x01]]
    assert a["counts"].tolist() == [5, 1] and a["offsets"].tolist() == [0, 8] and a["scales"].tolist() == [1, 1]
    assert packed.dequantize().tolist() == x.tolist() and packed.msb_zero_fraction == 0.625
    assert packed.nbytes_breakdown() == {"values": 16, "metadata": 2, "scales": 16, "table": 8, "total": 42}
    plain = pack(x, "bitsplit(int8, low_bits=4)")
    assert plain.arrays["lo"][1].tolist() == [0xD1, 0x50, 0x18, 0xF2]
    assert plain.arrays["hi"][1].view(np.uint8).tolist() == [0xF8, 0xFF, 0x00, 0x00]
    assert plain.arrays["bitmap"].tolist() == [[0xB3], [0x93]] and plain.msb_zero_fraction == 0.4375


def test_offset_zeroes_more_high_nibbles() -> None:
    x = laplace_activations(32, 512, seed=7)
    plain = pack(x, "bitsplit(int8, low_bits=4)")
    shifted = pack(x, "bitsplit(int8, low_bits=4, offset=true)")
    assert plain.msb_zero_fraction is not None and shifted.msb_zero_fraction is not None
    assert shifted.msb_zero_fraction > plain.msb_zero_fraction + 0.1
    # u = c + o must stay <= 127: a row whose outlier is positive (a code of 127) cannot shift;
    # one whose outlier is negative shifts by about 8 and has almost no high nibbles left.
    positive = x.max(axis=1) == np.abs(x).max(axis=1)
    offsets, counts = shifted.arrays["offsets"], shifted.arrays["counts"]
    assert positive.any() and (offsets[positive] == 0).all()
    assert (offsets[~positive] >= 6).all() and counts[~positive].sum() / (x.shape[1] * (~positive).sum()) < 0.05


def reference_w8a8(x: Array, w: PackedTensor) -> Array:
    """The integer W8A8 order on the unsplit codes: i32 group dots, f32 group sum, then s_x."""
    xq, wq = quantize(x, "int8(per=token)"), codes_of(w)
    attr = w.layout
    group = attr.group_size(w.shape[1])
    groups = w.shape[1] // group
    qw = wq.codes.astype(np.int64)
    if wq.zero_points is not None:
        qw -= np.repeat(np.broadcast_to(wq.zero_points.reshape(-1, groups), (w.shape[0], groups)), group, axis=1)
    sw = np.broadcast_to(wq.scales.astype(F32).reshape(-1, groups), (w.shape[0], groups))
    acc = np.zeros((x.shape[0], w.shape[0]), F32)
    for g in range(groups):
        k = slice(g * group, (g + 1) * group)
        acc = acc + sw[:, g] * (xq.codes[:, k].astype(np.int64) @ qw[:, k].T).astype(F32)
    return xq.scales.astype(F32)[:, None] * acc


@pytest.mark.parametrize(
    "weight", ["int8(axis=0)", "int4(group=32)", "int4(group=16, symmetric=false)", "int8", "ternary(axis=0)"]
)
@pytest.mark.parametrize("offset", [False, True])
def test_bitsplit_linear_is_the_integer_product(weight: str, offset: bool) -> None:
    rng = np.random.default_rng(8)
    x = laplace_activations(9, 128, seed=9)
    w = pack(rng.standard_normal((12, 128)).astype(F32), weight)
    xs = pack(x, f"bitsplit(int8, low_bits=4, offset={'true' if offset else 'false'})")
    got = bitsplit_linear(xs, w)
    assert np.array_equal(got, reference_w8a8(x, w))
    assert np.array_equal(bitsplit_linear(BitSplit.of_arrays(xs.arrays), w), got)
    exact = fake_quantize(x, "int8(per=token)").astype(np.float64) @ w.dequantize().astype(np.float64).T
    np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())


def test_bitsplit_linear_rejects_column_scales() -> None:
    x = pack(laplace_activations(2, 32), "bitsplit(int8, low_bits=4)")
    w = pack(np.ones((4, 32), F32), "int8(axis=1)")
    with pytest.raises(ValueError, match="one scale per row or row group"):
        bitsplit_linear(x, w)


BITSPLIT_CORRUPTIONS = [
    ("counts", set_at((1,), 0), r"counts\[1\] = 0, but row 1 of the bitmap has \d+ set bits"),
    ("hi", set_at((0, -1), 0x10), r"hi of row 0: nibble 127 is 1, past the row's count"),
    ("hi", set_at((2, 0), 0), r"hi of row 2: nibble 0 is zero, but the bitmap counts it"),
    ("offsets", set_at((3,), 16), r"offsets\[3\] = 16 is out of range \[0, 15\]"),
    ("scales", set_at((0,), -2.0), r"scales\[0\] = -2.0 is not a finite non-negative number"),
    ("lo", lambda a: a.view(np.int8), r"buffer 'lo' has dtype int8, expected uint8"),
]


@pytest.mark.parametrize("role,change,message", BITSPLIT_CORRUPTIONS)
def test_bitsplit_validate(role: str, change: Any, message: str) -> None:
    x = laplace_activations(4, 128, seed=10)
    bad = corrupt(pack(x, "bitsplit(int8, low_bits=4, offset=true)"), role, change)
    with pytest.raises(ValueError, match=message):
        bad.validate()


def test_bitsplit_validate_code_range() -> None:
    """u = 16 * -8 + 0 = -128 is not an int8 code of the quantizer."""
    packed = pack(np.array([[-127, 1, 2, 3, 4, 5, 6, 7]], F32), "bitsplit(int8, low_bits=4)")
    bad = corrupt(packed, "lo", set_at((0, 0), packed.arrays["lo"][0, 0] & 0xF0))
    with pytest.raises(ValueError, match=r"the code of row 0, column 0 is -128, outside -127..127"):
        bad.validate()


def test_bitsplit_rejections() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        pack(np.ones((2, 12), F32), "bitsplit(int8, low_bits=4)")
    with pytest.raises(CompileError, match="low_bits must be 4"):
        pack(np.ones((2, 16), F32), "bitsplit(int8, low_bits=2)")


# ---------------------------------------------------------------------------- properties


@st.composite
def matrices(draw: st.DrawFn, cols_unit: int) -> Array:
    rows = draw(st.integers(1, 4))
    cols = cols_unit * draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    x = rng.laplace(0, draw(st.sampled_from([1e-3, 1.0, 50.0])), (rows, cols)).astype(F32)
    x[rng.random((rows, cols)) < draw(st.sampled_from([0.0, 0.3, 0.9]))] = 0
    return x


@HYPOTHESIS
@given(matrices(16), st.booleans())
def test_property_bitsplit(x: Array, offset: bool) -> None:
    text = f"bitsplit(int8, low_bits=4, offset={'true' if offset else 'false'})"
    packed = pack(x, text)
    want = reference_bitsplit(x, offset)
    assert all(np.array_equal(packed.arrays[r], a) for r, a in want.items())
    assert np.array_equal(packed.dequantize(), fake_quantize(x, "int8(per=token)"))
    rebuilt = PackedTensor(packed.layout, packed.shape, {r: a.copy() for r, a in packed.arrays.items()})
    rebuilt.validate()
    plain = pack(x, "bitsplit(int8, low_bits=4)").msb_zero_fraction
    assert packed.msb_zero_fraction is not None and plain is not None
    assert packed.msb_zero_fraction >= plain  # o = 0 is always a candidate


@HYPOTHESIS
@given(matrices(32), st.sampled_from([(8, 1), (16, 3), (32, 32)]))
def test_property_sq(x: Array, shape: tuple[int, int]) -> None:
    group, count = shape
    text = f"sq(low=int4(group=16), high=int8(axis=0), group={group}, count={count})"
    packed = pack(x, text)
    assert np.array_equal(packed.dequantize(), reference_fake_sq(x, text))
    # Every high element is at least as large as every low one in its group.
    _, _, _, cols = reference_sq(x, text)
    high = np.zeros(x.shape, bool)
    np.put_along_axis(high, cols, True, axis=1)
    mag = np.abs(x).reshape(x.shape[0], -1, group)
    by_group = high.reshape(mag.shape)
    lowest_high = np.where(by_group, mag, np.inf).min(axis=2)
    highest_low = np.where(by_group, -np.inf, mag).max(axis=2)
    assert (lowest_high >= highest_low).all()


@HYPOTHESIS
@given(matrices(16), st.sampled_from(["int4(group=8)", "int8(axis=0, symmetric=false)", "binary(group=8)"]))
def test_property_nm_quant(x: Array, q: str) -> None:
    packed = pack(x, f"nm(2, 4) with {q}", prune="magnitude")
    pruned = pack(x, "nm(2, 4)", prune="magnitude").unpack()
    assert np.array_equal(packed.dequantize(), reference_nm_quant(pruned, 2, 4, q))
    codes, words = nm_quantize(pruned, f"nm(2, 4) with {q}")
    assert np.array_equal(dequantize_codes(codes, q), fake_quantize(reference_nm_slots(pruned, 2, 4)[0], q))
