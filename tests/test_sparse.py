"""Sparse weights end to end: pack, compile, run, compare with numpy on unpack()."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py import kernel, lowering, pipeline
from stoicc_py.backends.llvm.target import has_avx512bf16, host_features


def _nm_weight(rng: np.random.Generator, rows: int, cols: int, n: int, m: int) -> np.ndarray:
    w = rand(rng, rows, cols).reshape(rows, cols // m, m)
    order = np.argsort(rng.random(w.shape), axis=-1)
    keep = order < rng.integers(0, n + 1, size=w.shape[:2])[..., None]  # 0..n non-zeros per group
    return (w * keep).reshape(rows, cols).astype(np.float32)


def _block_weight(rng: np.random.Generator, rows: int, cols: int, bh: int, bw: int, density: float) -> np.ndarray:
    mask = rng.random((rows // bh, cols // bw)) < density
    return (rand(rng, rows, cols) * np.kron(mask, np.ones((bh, bw)))).astype(np.float32)


def _hybrid_weight(rng: np.random.Generator, rows: int, cols: int, th: int, tw: int) -> np.ndarray:
    """Tiles drawn from empty, dense and 2:4, with some tile rows of a single kind."""
    w = np.zeros((rows, cols), np.float32)
    kinds = rng.integers(0, 3, size=(rows // th, cols // tw))
    kinds[0, :] = 1  # a tile row with no 2:4 tile
    if kinds.shape[0] > 1:
        kinds[1, :] = 2  # a tile row with no dense tile
    for (r, c), kind in np.ndenumerate(kinds):
        tile = (slice(r * th, (r + 1) * th), slice(c * tw, (c + 1) * tw))
        if kind == 1:
            w[tile] = rand(rng, th, tw)
        elif kind == 2:
            w[tile] = _nm_weight(rng, th, tw, 2, 4)
    return w


CASES = {
    "nm(2, 4)": lambda rng, n, k: _nm_weight(rng, n, k, 2, 4),
    "nm(1, 4)": lambda rng, n, k: _nm_weight(rng, n, k, 1, 4),
    "nm(4, 8)": lambda rng, n, k: _nm_weight(rng, n, k, 4, 8),
    "nm(2, 8)": lambda rng, n, k: _nm_weight(rng, n, k, 2, 8),
    "block([4, 4])": lambda rng, n, k: _block_weight(rng, n, k, 4, 4, 0.4),
    "block([8, 2])": lambda rng, n, k: _block_weight(rng, n, k, 8, 2, 0.6),
    "csr": lambda rng, n, k: _block_weight(rng, n, k, 1, 1, 0.2),
    "csr(index=i8)": lambda rng, n, k: _block_weight(rng, n, k, 1, 1, 0.5),
    "hybrid(tile=[8, 16], formats=[dense, nm(2, 4)])": lambda rng, n, k: _hybrid_weight(rng, n, k, 8, 16),
}
SHAPES = [(1, 16, 32), (7, 32, 64), (33, 48, 128)]  # (M, N, K): ragged M, N and K multiples of every granule


@pytest.mark.parametrize("layout", sorted(CASES))
def test_linear_with_sparse_weight(layout: str) -> None:
    for m, n, k in SHAPES:
        prog = stoicc_py.compile(
            f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}, b: f32[{n}]) -> f32[M, {n}] "
            "{ return gelu(linear(x, w, b)) }",
            tile=(4, 16, 32),  # row blocks of 4: ragged row blocks for every M
        )
        rng = np.random.default_rng(m * n + k)
        w, x, bias = CASES[layout](rng, n, k), rand(rng, m, k), rand(rng, n)
        packed = prog.f.pack("w", w)
        assert np.array_equal(packed.unpack(), w)
        got = prog.f(x, packed, bias)
        assert_close(got, prog.f.reference(x, packed, bias))
        z = x.astype(np.float64) @ w.T.astype(np.float64) + bias
        from stoicc_py.interpreter import gelu

        assert_close(got, gelu(z).astype(np.float32))
        assert_close(prog.f(x, w, bias), got)  # a dense array is packed on the way in


@pytest.mark.parametrize("layout", ["nm(2, 4)", "nm(1, 4)", "nm(2, 8)"])
@pytest.mark.parametrize("k", [104, 296, 2088])
def test_vectorised_nm_on_ragged_shapes(layout: str, k: int) -> None:
    """tdsl-vectorize-sparse: blocks of rows (64, then 32) ending mid-vector and mid-block, index
    words and k-tiles ending mid-way (k = 104 leaves 8 columns after the last 32, which the
    panels' transposed 16 x 16 squares leave to the per-element copy), several k-blocks of
    panels (k = 2088), 20 weight rows (one 16 x 16 square of the panel sums, then 4 columns)."""
    n = 20
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}) -> f32[M, {n}] {{ return linear(x, w) }}"
    )
    rng = np.random.default_rng(k)
    kept, group = (int(v) for v in layout[3:-1].split(", "))
    w = _nm_weight(rng, n, k, kept, group)
    packed = prog.f.pack("w", w)
    for m in (1, 15, 40, 64, 65, 100, 131):
        x = rand(rng, m, k)
        assert_close(prog.f(x, packed), (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("options", ["panels=1 permute=false", "panels=2 permute=false", "panels=2"])
def test_vectorised_nm_panel_options(monkeypatch: pytest.MonkeyPatch, options: str) -> None:
    """tdsl-vectorize-sparse with few panels: every row is computed, whichever blocks the
    option leaves (one-vector blocks or lane selection take the ragged end)."""
    spec = lowering.pipeline_spec
    monkeypatch.setattr(lowering, "pipeline_spec", lambda *a: spec(*a).replace("sparse{", "sparse{" + options + " "))
    layouts = ["nm(2, 4)", "hybrid(tile=[4, 32], formats=[dense, nm(2, 4)])"]
    rng = np.random.default_rng(5)
    for layout in layouts:
        src = f"kernel f(x: f32[M, 96], w: f32[20, 96] @ {layout}) -> f32[M, 20] {{ return linear(x, w) }}"
        prog = stoicc_py.compile(src, cache=False)  # the cache key does not know the options
        packed = prog.f.pack("w", rand(rng, 20, 96), prune="magnitude")
        for m in (1, 17, 33, 70):
            x = rand(rng, m, 96)
            assert_close(prog.f(x, packed), prog.f.reference(x, packed))


def test_vectorised_nm_epilogue_on_panel_and_edge_rows() -> None:
    """Bias and activation reach the rows of the panel blocks and the rows left after them."""
    prog = stoicc_py.compile("kernel f(x: f32[M, 96], w: f32[20, 96] @ nm(2, 4), b: f32[20]) -> f32[M, 20] "
                             "{ return relu(linear(x, w, b)) }")  # fmt: skip
    rng = np.random.default_rng(3)
    w, bias = _nm_weight(rng, 20, 96, 2, 4), rand(rng, 20)
    packed = prog.f.pack("w", w)
    for m in (64, 70):
        x = rand(rng, m, 96)
        want = np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + bias, 0).astype(np.float32)
        assert_close(prog.f(x, packed, bias), want)


@pytest.mark.parametrize("quant", ["int4(group=32)", "int4", "int8(axis=0)", "int4(axis=0, scale=f16)"])
def test_vectorised_nm_with_quantized_values(quant: str) -> None:
    """2:4 with int8/int4 codes: 16 codes decoded and scaled per step, then selected like f32 values
    (k = 104 ends in the scalar tail, which decodes one slot at a time)."""
    n, k = 12, 104 if "group" not in quant else 128
    layout = f"nm(2, 4) with {quant}"
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}) -> f32[M, {n}] {{ return linear(x, w) }}"
    )
    rng = np.random.default_rng(k)
    packed = prog.f.pack("w", _nm_weight(rng, n, k, 2, 4))
    w = packed.dequantize()
    for m in (1, 6, 17):
        x = rand(rng, m, k)
        assert_close(prog.f(x, packed), (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("tile", [(8, 32, 4), (6, 64, 4), (4, 32, 40)])
def test_vectorised_hybrid(tile: tuple[int, int, int]) -> None:
    """Hybrid tiles whose width holds whole vector steps: every tile row's dense and
    2:4 tiles add into one set of accumulators (6-row tiles leave ragged column
    blocks); from 64 rows of x on, the 2:4 tiles go over panels (40 tile columns:
    two k-blocks of them)."""
    th, tw, tile_cols = tile
    n, k = 4 * th, tile_cols * tw
    layout = f"hybrid(tile=[{th}, {tw}], formats=[dense, nm(2, 4)])"
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}, b: f32[{n}]) -> f32[M, {n}] {{ return relu(linear(x, w, b)) }}"
    )
    rng = np.random.default_rng(th)
    w, bias = _hybrid_weight(rng, n, k, th, tw), rand(rng, n)
    packed = prog.f.pack("w", w)
    for m in (1, 5, 18, 64, 83):
        x = rand(rng, m, k)
        z = x.astype(np.float64) @ w.T.astype(np.float64) + bias
        assert_close(prog.f(x, packed, bias), np.maximum(z, 0).astype(np.float32))


def test_vectorised_hybrid_of_symbolic_n() -> None:
    """A hybrid weight of N rows known at run time (K static) takes the same vector
    kernels as a static one (tdsl-vectorize-sparse reads N from the result): ragged
    last tile rows, x rows in and past the panel blocks, bit for bit as the static kernel."""
    layout = "hybrid(tile=[8, 32], formats=[dense, nm(2, 4)])"
    body = "{ return relu(linear(x, w, b)) }"
    prog = stoicc_py.compile(
        f"kernel g(x: f32[M, 96], w: f32[N, 96] @ {layout}, b: f32[N]) -> f32[M, N] {body}\n"
        f"kernel s(x: f32[M, 96], w: f32[20, 96] @ {layout}, b: f32[20]) -> f32[M, 20] {body}"
    )
    rng = np.random.default_rng(11)
    for n in (20, 44):
        w, bias = _hybrid_weight(rng, 48, 96, 8, 32)[:n], rand(rng, n)
        packed = prog.g.pack("w", w)
        for m in (1, 5, 70):
            x = rand(rng, m, 96)
            got = prog.g(x, packed, bias)
            z = x.astype(np.float64) @ w.T.astype(np.float64) + bias
            assert_close(got, np.maximum(z, 0).astype(np.float32))
            if n == 20:
                np.testing.assert_array_equal(got, prog.s(x, prog.s.pack("w", w), bias))


def test_matmul_of_transposed_sparse_weight() -> None:
    prog = stoicc_py.compile(
        "kernel f(x: f32[M, 64], w: f32[32, 64] @ nm(2, 4)) -> f32[M, 32] { return x @ transpose(w) }"
    )
    rng = np.random.default_rng(5)
    w, x = _nm_weight(rng, 32, 64, 2, 4), rand(rng, 9, 64)
    assert_close(prog.f(x, w), (x @ w.T).astype(np.float32))


CHECKED = (
    "kernel f(x: f32[M, 16], w: f32[8, 16] @ nm(2, 4)) -> f32[M, 8] { return linear(x, w) }\n"
    "kernel g(x: f32[M, 16], w: f32[8, 16] @ csr) -> f32[M, 8] { return linear(x, w) }"
)


def test_packed_tensor_is_checked() -> None:
    prog = stoicc_py.compile(CHECKED)
    rng = np.random.default_rng(0)
    x, w = rand(rng, 2, 16), _nm_weight(rng, 8, 16, 2, 4)
    with pytest.raises(ValueError, match="expects layout csr\\(index=i32\\), got a tensor packed as nm\\(2, 4\\)"):
        prog.g(x, prog.f.pack("w", w))
    with pytest.raises(ValueError, match="parameter 'w'.*violates nm\\(2, 4\\)"):
        prog.f(x, rand(rng, 8, 16))
    pruned = prog.f.pack("w", rand(rng, 8, 16), prune="magnitude")
    assert_close(prog.f(x, pruned), (x @ pruned.unpack().T).astype(np.float32))
    packed = prog.f.pack("w", w)  # read-only: a writeable copy to corrupt
    corrupt = stoicc_py.PackedTensor(packed.layout, packed.shape, {r: a.copy() for r, a in packed.arrays.items()})
    corrupt.arrays["indices"][0, 0] = -1  # every 2-bit index is 3: positions repeat within groups
    with pytest.raises(ValueError, match="corrupt packed tensor"):
        prog.f(x, corrupt)
    with pytest.raises(ValueError, match="expects shape"):
        prog.f(x, stoicc_py.pack(_nm_weight(rng, 4, 16, 2, 4), "nm(2, 4)"))


def test_byte_breakdown() -> None:
    rng = np.random.default_rng(1)
    packed = stoicc_py.pack(_nm_weight(rng, 128, 64, 2, 4), "nm(2, 4)")
    assert packed.nbytes_breakdown() == {"values": 128 * 32 * 4, "metadata": 128 * 2 * 4, "scales": 0, "table": 0,
                                         "total": 128 * 32 * 4 + 128 * 2 * 4}  # fmt: skip


def test_a_packed_weight_seen_before_skips_the_complete_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call with a packed weight in a layout and shapes that passed before skips the complete
    check if the tensor's read-only arrays passed validation; a writeable tensor (validated on
    every call), or one with a buffer swapped for another dtype, takes the complete check."""
    f = stoicc_py.compile(CHECKED).f  # a kernel of its own: no shapes seen yet
    checked: list[int] = []
    check_arguments = kernel.check_arguments
    monkeypatch.setattr(kernel, "check_arguments", lambda abi, args: checked.append(1) or check_arguments(abi, args))
    rng = np.random.default_rng(6)
    x, packed = rand(rng, 3, 16), f.pack("w", _nm_weight(rng, 8, 16, 2, 4))
    writeable = stoicc_py.PackedTensor(packed.layout, packed.shape, {r: a.copy() for r, a in packed.arrays.items()})
    for w in (packed, packed, writeable, writeable, packed):
        assert_close(f(x, w), (x @ w.unpack().T).astype(np.float32))
    assert len(checked) == 3
    writeable.arrays["indices"][0, 0] = -1  # every 2-bit index is 3: positions repeat within groups
    with pytest.raises(ValueError, match="corrupt packed tensor"):
        f(x, writeable)
    wide = {**packed.arrays, "values": packed.arrays["values"].astype(np.float64)}
    with pytest.raises(ValueError, match=r"parameter 'w': buffer 'values' must be float32\[8, 8\], got float64"):
        f(x, stoicc_py.PackedTensor(packed.layout, packed.shape, wide))


def test_a_packed_buffer_changed_in_place_is_checked_again() -> None:
    """A quick call's key holds the packed buffers' shapes and dtypes: numpy lets a read-only
    array's `dtype` or `shape` be set in place (same object, same memory), and such a call takes
    the complete check, which refuses it; set back, the tensor takes the quick path again."""
    f = stoicc_py.compile(CHECKED).f
    rng = np.random.default_rng(7)
    x, packed = rand(rng, 3, 16), f.pack("w", _nm_weight(rng, 8, 16, 2, 4))
    want = (x @ packed.unpack().T).astype(np.float32)
    assert_close(f(x, packed), want)
    seen = len(f._native._seen)
    indices, values = packed.arrays["indices"], packed.arrays["values"]
    indices.dtype = np.dtype(np.float32)  # same itemsize: the kernel would read the floats' bits as indices
    with pytest.raises(ValueError, match=r"buffer 'indices' must be int32\[8, 1\], got float32"):
        f(x, packed)
    indices.dtype = np.dtype(np.int32)
    values.shape = (4, 16)
    with pytest.raises(ValueError, match=r"buffer 'values' must be float32\[8, 8\], got float32\[4, 16\]"):
        f(x, packed)
    values.shape = (8, 8)
    assert_close(f(x, packed), want)
    assert len(f._native._seen) == seen


def test_weights_in_equal_layouts_share_the_quick_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model's layers call one kernel with their own packed weights, each its own layout
    object of equal value: once each layout passed a checked call, a new shape of x costs one
    checked call, not one per weight (the decode loop of a 30-layer model, a new shape a token)."""
    f = stoicc_py.compile(CHECKED).f
    rng = np.random.default_rng(8)
    weights = [f.pack("w", _nm_weight(rng, 8, 16, 2, 4)) for _ in range(3)]
    assert len({id(w.layout) for w in weights}) == 3
    checked = 0
    real = f._native._checked_call

    def counting(args: object) -> object:
        nonlocal checked
        checked += 1
        return real(args)  # type: ignore[arg-type]

    monkeypatch.setattr(f._native, "_checked_call", counting)
    for rows in (1, 2, 3):
        x = rand(rng, rows, 16)
        for w in weights:
            assert_close(f(x, w), (x @ w.unpack().T).astype(np.float32))
    assert checked == 3 + 2  # every weight's first call, then one a new shape


def test_a_packed_buffer_made_writeable_is_validated_again() -> None:
    """The quick path checks natively that a packed tensor's buffers, and every array they view,
    are still read-only (backends/llvm/entry.py's guard): memory written through the owner of a
    buffer (made writeable again, the buffer's own flag left read-only), or through the buffer
    made writeable, takes the complete check, which finds the corruption."""
    f = stoicc_py.compile(CHECKED).f
    rng = np.random.default_rng(9)
    x, packed = rand(rng, 3, 16), f.pack("w", _nm_weight(rng, 8, 16, 2, 4))
    want = (x @ packed.unpack().T).astype(np.float32)
    assert_close(f(x, packed), want)
    indices = packed.arrays["indices"]
    owner = indices
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    assert owner is not indices and not indices.flags.writeable
    owner.flags.writeable = True
    start = indices.ctypes.data - owner.ctypes.data
    alias = owner.reshape(-1).view(np.uint8)[start : start + indices.nbytes].view(np.int32)
    word = alias[0]
    alias[0] = -1  # every 2-bit index is 3: positions repeat within groups
    with pytest.raises(ValueError, match="corrupt packed tensor"):
        f(x, packed)
    alias[0] = word
    owner.flags.writeable = False
    assert_close(f(x, packed), want)  # read-only and valid again: validated, then the quick path
    assert f._native._scan((x, packed)) is not None
    owner.flags.writeable = True
    assert f._native._scan((x, packed)) is None  # an array that the buffer views is writeable
    indices.flags.writeable = True
    owner.flags.writeable = False
    assert f._native._scan((x, packed)) is None  # the buffer itself is


@pytest.mark.skipif(not has_avx512bf16(host_features()), reason="needs AVX-512 BF16 (vdpbf16ps)")
@pytest.mark.parametrize("permute", [True, False])
def test_2_4_bf16_pairs_match_numpy(permute: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 x over a 2:4 weight of bf16 values on PairProduct's panels (a vdpbf16ps per group
    and panel): K = 100 (three index words and a group past them: the pairs' tail), N = 21,
    rows in 64-row blocks, a 32-row one and the rows left (to the lane-selection kernel, or
    with permute=false to one-vector blocks, which pack past the last row), 0..2 stored
    values a group; within two bf16 units of the largest output of numpy's f32 product of the
    same bf16 values (the kernel sums in f32 and rounds once)."""
    if not permute:
        options = pipeline.sparse_options
        monkeypatch.setattr(pipeline, "sparse_options", lambda f: options(f).replace("}", " permute=false}"))
    bf16 = np.dtype(ml_dtypes.bfloat16)
    prog = stoicc_py.compile("kernel f(x: bf16[M, 100], w: bf16[21, 100] @ nm(2, 4)) -> bf16[M, 21] "
                             "{ return linear(x, w) }", cache=False)  # fmt: skip
    loops = prog.f.ir("loops")
    assert "memref<192x4x16xi32>" in loops and "dpbf16ps" in loops  # a k-block of 128 columns: 32 groups x 6 pairs
    rng = np.random.default_rng(7)
    w = _nm_weight(rng, 21, 100, 2, 4).astype(bf16)
    packed = prog.f.pack("w", w)
    for m in (1, 17, 64, 100, 150):
        x = rand(rng, m, 100).astype(bf16)
        want = x.astype(np.float32) @ w.astype(np.float32).T
        assert_close(prog.f(x, packed).astype(np.float32), want, rtol=2**-7)
