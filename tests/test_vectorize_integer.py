"""The integer vector kernels (tdsl-vectorize-integer) on ragged shapes, with
vpdpbusd where the host has AVX-512 VNNI, pmaddubsw/pmaddwd where it has those (AVX2)
and with the portable widening path:
i8 x i8 -> i32 bit for bit, W8A8 / W4A8 bit for bit against a numpy model of the
same arithmetic (exact integer dot products, then the two scales)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Array, assert_close, rand
from integer_paths import PATHS, compile_for_path

import stoicc_py
from stoicc_py.codegen.integer_dot import PMADDWD
from stoicc_py.packing.quant import codes_of, fake_quantize, quantize

ROWS = (1, 3, 17)  # ragged against row blocks of 4
DWORDS = [path for path in PATHS if path != "portable"]
"""The paths that step 4-byte lanes (PanelKernel's, the wide steps')."""


def _int8(rng: np.random.Generator, rows: int, cols: int) -> Array:
    """Random int8 values, a third of them the extremes -128 and 127."""
    a = rng.integers(-128, 128, (rows, cols), dtype=np.int8)
    extreme = rng.random((rows, cols)) < 0.33
    a[extreme] = rng.choice(np.array([-128, 127], np.int8), int(extreme.sum()))
    return a


@pytest.mark.parametrize("path", PATHS)
def test_i8_products_are_exact(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """N off the 6-column blocks, K off the 64-byte steps and off multiples of 4."""
    prog = compile_for_path(
        "kernel f(x: i8[M, K], w: i8[N, K], b: i32[N]) -> i32[M, N] { return relu(linear(x, w, b)) }",
        path,
        monkeypatch,
    )
    loops = prog.ir("loops")
    assert "vector.load" in loops and ("vpdpbusd" in loops) == (path == "vnni")
    assert any(name in loops for name in PMADDWD.values()) == (path == "madd")  # 8-bit codes: i16 pairs
    rng = np.random.default_rng(1)
    for n, k in ((5, 3), (7, 130), (13, 256), (50, 66)):
        w, b = _int8(rng, n, k), rng.integers(-(2**20), 2**20, n, dtype=np.int32)
        w[0] = -128  # with x's first row -128 too: the largest products
        for m in ROWS:
            x = _int8(rng, m, k)
            x[0] = -128
            want = np.maximum(x.astype(np.int64) @ w.astype(np.int64).T + b, 0).astype(np.int32)
            got = prog.f(x, w, b)
            assert got.dtype == np.int32 and np.array_equal(got, want), (n, k, m)


def _w8a8_model(x: Array, packed: stoicc_py.PackedTensor, b: Array, length: int = 0, x_per_group: bool = False) -> Array:
    """The kernel's arithmetic in numpy: per weight scale group (of `length` codes, the
    last one the rest; 0: the row in equal groups), the exact integer dot product of the
    codes (less each group's zero point) times the group's scale (with a float zero,
    fma(offset, the group's sum of x's codes, that); with `x_per_group`, x quantized per
    group of `length`, times x's scale of the group), summed in float32 in group order;
    then (one x scale per row) times the activation scale, the bias and relu."""
    xq = quantize(x, f"int8(group={length})" if x_per_group else "int8(per=token)")
    wq = codes_of(packed)
    qx, qw = xq.codes.astype(np.int64), wq.codes.astype(np.int64)
    sw = wq.scales.astype(np.float32).reshape(qw.shape[0], -1)
    sx = xq.scales.astype(np.float32).reshape(qx.shape[0], -1)
    mw = None if wq.offsets is None else wq.offsets.astype(np.float32).reshape(qw.shape[0], -1)
    zp = None if wq.zero_points is None else wq.zero_points.astype(np.int64).reshape(qw.shape[0], -1)
    length = length or qw.shape[1] // sw.shape[1]
    acc = np.zeros((qx.shape[0], qw.shape[0]), np.float32)
    for g in range(sw.shape[1]):
        cols = slice(g * length, (g + 1) * length)
        codes = qw[:, cols] if zp is None else qw[:, cols] - zp[:, g : g + 1]
        term = sw[:, g] * (qx[:, cols] @ codes.T).astype(np.float32)
        if mw is not None:  # fma: the product exact in float64, the sum rounded to float32
            sums = qx[:, cols].sum(axis=1, keepdims=True).astype(np.float32)
            term = (mw[:, g].astype(np.float64) * sums + term).astype(np.float32)
        acc = acc + (term * sx[:, g : g + 1] if x_per_group else term)
    return np.maximum((acc if x_per_group else sx * acc) + b, np.float32(0))


# K = 130: eight 16-float vectors of x to quantize and two ragged columns, two
# 64-byte steps and a ragged k tail. Groups of 32 codes take 32-byte VNNI steps.
# With pmaddubsw, int4 and ternary step as with VNNI, int8 in i16 pairs.
# (W8A8 with int8 weights: tests/test_quant.py, through this pass too.)
WEIGHTS = {
    "vnni": (("int4(axis=0)", 130), ("int4(group=32, scale=f16)", 128)),
    "madd": (
        ("int4(axis=0)", 130),
        ("int4(group=32, scale=f16)", 128),
        ("ternary(axis=0)", 132),
        ("int8(group=32, scale=f16)", 128),
    ),
    "portable": (("int4(group=32, scale=f16)", 128),),
}


@pytest.mark.parametrize("path", PATHS)
def test_quantized_products_match_the_integer_model(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    source = "".join(
        f"kernel q{i}(x: f32[M, {k}], w: f32[7, {k}] @ {layout}, b: f32[7]) -> f32[M, 7] "
        f"{{ return relu(linear(quantize(x, int8(per=token)), w, b)) }}\n"
        for i, (layout, k) in enumerate(WEIGHTS[path])
    )
    prog = compile_for_path(source, path, monkeypatch)
    loops = prog.ir("loops")
    assert "llvm.zext" in loops and ("vpdpbusd.256" in loops) == (path == "vnni")  # int4 unpacked in vectors
    assert ("pmadd.ub.sw" in loops) == (path == "madd")
    rng = np.random.default_rng(2)
    for i, (layout, k) in enumerate(WEIGHTS[path]):
        kernel = getattr(prog, f"q{i}")
        packed, b = kernel.pack("w", rand(rng, 7, k)), rand(rng, 7)
        for m in ROWS:
            x = rand(rng, m, k) * 4
            x[0, :5] = 0.0
            x[-1, -1] = -100.0  # the row's largest magnitude in the quantizer's scalar tail
            got = kernel(x, packed, b)
            assert np.array_equal(got, _w8a8_model(x, packed, b)), (layout, m)
        assert_close(got, kernel.reference(x, packed, b))


@pytest.mark.parametrize("layout", ["int8(per=token, scale=f16)", "int8(group=32, scale=f16)", "int8(group=48)"])
def test_vector_quantize_is_bit_exact_with_f16_scales(layout: str) -> None:
    """Per row (K = 50: a ragged scalar tail) and per group of whole vectors (K = 96)."""
    k = 50 if "token" in layout else 96
    prog = stoicc_py.compile(f"kernel h(x: f32[M, {k}]) -> f32[M, {k}] {{ return dequantize(quantize(x, {layout})) }}")
    assert "vector.load %x" in prog.h.ir("loops")
    x = rand(np.random.default_rng(3), 17, k) * 3
    x[1] = 0.0
    assert np.array_equal(prog.h(x), fake_quantize(x, layout))


@pytest.mark.parametrize("path", DWORDS)
def test_panel_products_are_exact(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls of 16 rows or more run PanelKernel (w packed per n-tile of 192 columns; with
    pmaddubsw, int4's only: 8-bit codes step in i16 pairs, the dot-product blocks'):
    rows off its 8-row blocks, N = 213 leaving a second n-tile of one vector and 5 ragged
    columns (packed from copies of w's last row, computed as a whole vector, 5 stored),
    bias + relu per n-tile; i8 bit for bit, W8A8 and per-channel W4A8 (its codes unpacked
    row by row through a staging buffer) bit for bit against the integer model; 9 rows
    stay on the dot-product blocks."""
    n, k = 213, 128
    prog = compile_for_path(
        f"kernel ints(x: i8[M, {k}], w: i8[{n}, {k}], b: i32[{n}]) -> i32[M, {n}] {{ return relu(linear(x, w, b)) }}\n"
        + "".join(f"kernel q{c}(x: f32[M, {k}], w: f32[{n}, {k}] @ {c}(axis=0), b: f32[{n}]) -> f32[M, {n}] "
                  f"{{ return relu(linear(quantize(x, int8(per=token)), w, b)) }}\n" for c in ("int8", "int4")),
        path,
        monkeypatch,
    )  # fmt: skip
    panels = [path == "vnni", path == "vnni", True]
    assert ["%panel" in kernel.ir("loops") for kernel in (prog.ints, prog.qint8, prog.qint4)] == panels
    assert "%panel_staging" in prog.qint4.ir("loops")
    rng = np.random.default_rng(4)
    w, b = _int8(rng, n, k), rng.integers(-(2**20), 2**20, n, dtype=np.int32)
    packed = [prog.qint8.pack("w", rand(rng, n, k)), prog.qint4.pack("w", rand(rng, n, k))]
    bf = rand(rng, n)
    for m in (9, 16, 27):
        x = _int8(rng, m, k)
        want = np.maximum(x.astype(np.int64) @ w.astype(np.int64).T + b, 0).astype(np.int32)
        assert np.array_equal(prog.ints(x, w, b), want), m
        xf = rand(rng, m, k) * 4
        for kernel, p in zip((prog.qint8, prog.qint4), packed):
            assert np.array_equal(kernel(xf, p, bf), _w8a8_model(xf, p, bf)), m


GROUPED = (("int4(group=32, scale=f16)", "int8(per=token)"), ("int4(group=32, zero=float, scale=f16)", "int8(per=token)"),
           ("int8(group=32, scale=f16)", "int8(per=token)"), ("int4(group=32, zero=float, scale=f16)", "int8(group=32)"),
           ("int4(group=64)", "int8(per=token)"))  # fmt: skip
"""Q4_0's, Q4_1's (a float zero) and Q8_0's grids, Q4_1's with x per group of 32, groups of 64."""


@pytest.mark.parametrize("path", DWORDS)
def test_grouped_panel_products_are_exact(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights in groups along k take PanelKernel too (calls of 16 rows or more): the n-tile's
    scales (and a float zero's offsets) gathered per group into f32 panels, each group's 8 or
    16 quads of vpdpbusd into whole outputs, then the group's term (less the rows' offsets,
    scaled; fma of the offsets and x's sums; times x's scale of the group) added into each
    output's f32 sum: bit for bit against the integer model (the dot-product blocks' order)
    at 9 rows (dot-product blocks only), 16 and 27 (panels, and 3 rows left), N = 213 (a
    second n-tile of one vector and 5 ragged columns), bias + relu; on 1 and 2 threads (the
    n-tiles split over the pool)."""
    n, k = 213, 128
    prog = compile_for_path(
        "".join(f"kernel g{i}(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}, b: f32[{n}]) -> f32[M, {n}] "
                f"{{ return relu(linear(quantize(x, {x_layout}), w, b)) }}\n"
                for i, (layout, x_layout) in enumerate(GROUPED)),
        path,
        monkeypatch,
    )  # fmt: skip
    rng = np.random.default_rng(9)
    for i, (layout, x_layout) in enumerate(GROUPED):
        kernel = getattr(prog, f"g{i}")
        length = 64 if "64" in layout else 32
        if path == "vnni" or not layout.startswith("int8"):  # pmaddubsw: 8-bit codes step in i16 pairs, no panels
            assert f"%panel_scales = memref.alloc() {{alignment = 64 : i64}} : memref<{k // length}x" in kernel.ir("loops")
        packed, b = kernel.pack("w", rand(rng, n, k)), rand(rng, n)
        assert kernel.abi.native_threads  # each n-tile with its own scratch: the pool splits them
        for m in (9, 16, 27):
            x = rand(rng, m, k) * 4
            want = _w8a8_model(x, packed, b, length, x_layout != "int8(per=token)")
            for threads in (1, 2):
                kernel.threads = threads
                assert np.array_equal(kernel(x, packed, b), want), (layout, x_layout, m, threads)


@pytest.mark.parametrize("path", DWORDS)
def test_group_pairs_and_prefetched_rows_are_exact(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Q8_0's and Q4_0's grids (groups of 32 codes, f16 scales): the 64-byte steps (with
    16 lanes) span two groups, reduced together, and the GEMV's 1 x 8 blocks prefetch rows ahead (past
    the last row too). N = 21: two whole 8-column blocks and 5 one-column ones, K = 320
    five spans, 10 groups (on AVX2 the blocks' scales transposed 8 groups at a time, the
    last 2 gathered); N a size symbol for int8 (the column split's kernels), static for int4;
    1 and 3 rows (the 4-row blocks' rows left); bit for bit against the integer model.
    Ternary per channel at K = 772: on AVX2, steps of 64 codes, two rows to a vector, in
    runs of 10 summed in i16 (a whole run and a ragged one), and a ragged k tail."""
    layouts = {"int8": ("N", 320, "int8(group=32, scale=f16)"), "int4": ("21", 320, "int4(group=32, scale=f16)"),
               "ternary": ("21", 772, "ternary(axis=0)")}  # fmt: skip
    prog = compile_for_path(
        "".join(f"kernel q{c}(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}, b: f32[{n}]) -> f32[M, {n}] "
                f"{{ return relu(linear(quantize(x, int8(per=token)), w, b)) }}\n"
                for c, (n, k, layout) in layouts.items()),
        path,
        monkeypatch,
    )  # fmt: skip
    assert all("llvm.prefetch" in k.ir("loops") for k in (prog.qint8, prog.qint4))
    # the static kernels' n-tiles stay provably independent (their scratch their own, PanelKernel's
    # too): the pool splits them
    assert prog.qint4.abi.native_threads and prog.qternary.abi.native_threads
    rng = np.random.default_rng(5)
    for name, (_n, k, _layout) in layouts.items():
        kernel = getattr(prog, f"q{name}")
        packed, b = kernel.pack("w", rand(rng, 21, k)), rand(rng, 21)
        for m in (1, 3):
            x = rand(rng, m, k) * 4
            assert np.array_equal(kernel(x, packed, b), _w8a8_model(x, packed, b)), m


FLOAT_ZERO = (("int4(group=32, zero=float, scale=f16)", 320, 32), ("int4(group=64, zero=float)", 160, 64),
              ("int4(axis=0, zero=float)", 130, 0), ("int8(group=32, zero=float, scale=f16)", 128, 32),
              ("int2(group=32, zero=float)", 128, 32))  # fmt: skip
"""Q4_1's grid (groups of 32 codes two to a 64-byte step) over 10 groups, groups of 64 with
a ragged last one of 32 (its tail in the x sums' scalar loop), one group per row ending off
a step, int8 and int2 codes."""


@pytest.mark.parametrize("path", PATHS)
def test_a_float_zero_is_exact_on_the_integer_kernels(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """int8 activations times a float zero's weight (value = scale * code + offset): each
    group's exact dot product of the unsigned codes times its scale, plus its offset times
    the group's sum of x's codes, bit for bit against the integer model at 1, 3, 17 and 40
    rows (GEMV blocks, row blocks and what they leave) and N = 21 and 7; the same bits from
    tdsl-lower-to-loops' integer rows where the groups (of 10) are no whole number of steps."""
    source = "".join(f"kernel q{i}(x: f32[M, {k}], w: f32[N, {k}] @ {layout}, b: f32[N]) -> f32[M, N] "
                     f"{{ return relu(linear(quantize(x, int8(per=token)), w, b)) }}\n"
                     for i, (layout, k, _length) in enumerate(FLOAT_ZERO))  # fmt: skip
    source += "kernel s(x: f32[M, 50], w: f32[N, 50] @ int4(group=10, zero=float), b: f32[N]) -> f32[M, N] " \
              "{ return relu(linear(quantize(x, int8(per=token)), w, b)) }"  # fmt: skip
    prog = compile_for_path(source, path, monkeypatch)
    assert all("%x_sums" in getattr(prog, f"q{i}").ir("loops") for i in range(len(FLOAT_ZERO)))
    assert "%x_sums" not in prog.s.ir("loops")  # tdsl-lower-to-loops' scalar rows
    rng = np.random.default_rng(6)
    cases = [(getattr(prog, f"q{i}"), k, length) for i, (_layout, k, length) in enumerate(FLOAT_ZERO)]
    for kernel, k, length in [*cases, (prog.s, 50, 10)]:
        for n in (21, 7):
            packed, b = kernel.pack("w", rand(rng, n, k)), rand(rng, n)
            for m in (1, 3, 17, 40):
                x = rand(rng, m, k) * 4
                assert np.array_equal(kernel(x, packed, b), _w8a8_model(x, packed, b, length)), (kernel.name, n, m)
        assert_close(kernel(x, packed, b), kernel.reference(x, packed, b))


X_GROUPS = (("int4(group=32, zero=float, scale=f16)", 320, 32), ("int4(group=32, scale=f16)", 576, 32),
            ("int8(group=32, scale=f16)", 128, 32), ("int4(group=64, symmetric=false)", 160, 64),
            ("int4(group=10, zero=float)", 50, 10))  # fmt: skip
"""Q4_1's and Q4_0's grids (two groups to a 64-byte step) over 10 and 18 groups, Q8_0's,
integer zero points in groups of 64 with a ragged last one of 32, and groups of 10 (no whole
steps: tdsl-lower-to-loops' integer rows)."""


@pytest.mark.parametrize("path", PATHS)
def test_activations_per_group_of_the_weights_are_exact(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`quantize(x, int8(group=G))` times a weight in groups of G (ggml's q8 activations): x's
    codes and scales per group (RowQuantizer per group of whole vectors), each group's exact
    integer product scaled by both groups' scales, bit for bit against the integer model at
    1, 3, 17 and 40 rows and N = 21 and 7; x's groups other than w's stay dequantized."""
    source = "".join(f"kernel q{i}(x: f32[M, {k}], w: f32[N, {k}] @ {layout}, b: f32[N]) -> f32[M, N] "
                     f"{{ return relu(linear(quantize(x, int8(group={g})), w, b)) }}\n"
                     for i, (layout, k, g) in enumerate(X_GROUPS))  # fmt: skip
    source += ("kernel other(x: f32[M, 128], w: f32[N, 128] @ int4(group=32)) -> f32[M, N] "
               "{ return linear(quantize(x, int8(group=64)), w) }")  # fmt: skip
    prog = compile_for_path(source, path, monkeypatch)
    assert all("tdsl.dequantize" not in getattr(prog, f"q{i}").ir("opt") for i in range(len(X_GROUPS)))
    assert "tdsl.dequantize" in prog.other.ir("opt")
    rng = np.random.default_rng(8)
    for i, (_layout, k, length) in enumerate(X_GROUPS):
        kernel = getattr(prog, f"q{i}")
        for n in (21, 7):
            packed, b = kernel.pack("w", rand(rng, n, k)), rand(rng, n)
            for m in (1, 3, 17, 40):
                x = rand(rng, m, k) * 4
                assert np.array_equal(kernel(x, packed, b), _w8a8_model(x, packed, b, length, True)), (i, n, m)
        assert_close(kernel(x, packed, b), kernel.reference(x, packed, b))
