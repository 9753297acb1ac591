"""The vector passes at the widths of smaller hosts (AVX2: 8 f32 lanes and 16
registers; SSE: 4 and 16; no VNNI), compiled and run here: the same generic vector
ops, narrower, with the register blocks and fallbacks those hosts get (2:4 lane
selection with vpermilps on AVX2, over copied panels alone on SSE; integer products
without vpdpbusd)."""

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py import pipeline
from stoicc_py.backends.llvm.target import host_features

KERNELS = {
    "dense": "kernel f(x: f32[M, 200], w: f32[24, 200], b: f32[24]) -> f32[M, 24] { return relu(linear(x, w, b)) }",
    "nm24": "kernel f(x: f32[M, 200], w: f32[24, 200] @ nm(2, 4)) -> f32[M, 24] { return linear(x, w) }",
    "int4": "kernel f(x: f32[M, 256], w: f32[24, 256] @ int4(group=64)) -> f32[M, 24] { return linear(x, w) }",
    "w8a8": "kernel f(x: f32[M, 200], w: f32[24, 200] @ int8(axis=0)) -> f32[M, 24] "
    "{ return linear(quantize(x, int8(per=token)), w) }",
}


@pytest.mark.parametrize("registers", [(8, 16), (4, 16)])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_narrow_hosts(monkeypatch: pytest.MonkeyPatch, registers: tuple[int, int], kernel: str) -> None:
    monkeypatch.setattr(pipeline, "vector_registers", lambda _features: registers)
    monkeypatch.setattr(pipeline, "has_vnni", lambda _features: False)
    prog = stoicc_py.compile(KERNELS[kernel], cache=False)  # the cache key knows the host, not these widths
    loops = prog.f.ir("loops")
    assert f"vector<{registers[0]}xf32>" in loops or f"vector<{4 * registers[0]}xi8>" in loops
    assert "vpermi2var" not in loops and "vpdpbusd" not in loops
    assert ("vpermilvar" in loops) == (kernel == "nm24" and registers[0] == 8)
    rng = np.random.default_rng(registers[0])
    params = prog.f.abi.params
    for m in (1, 7, 33):
        args = [rand(rng, m, params[0].dims[1]) if i == 0 else None for i in range(len(params))]
        w_shape = params[1].dims
        w = rand(rng, *w_shape)
        if kernel == "nm24":
            w = w * (np.arange(w_shape[1]) % 4 < 2)  # a 2:4 pattern
        args[1] = prog.f.pack("w", w) if not params[1].is_dense else w
        if len(params) > 2:
            args[2] = rand(rng, w_shape[0])
        assert_close(prog.f(*args), prog.f.reference(*args))


LANE_SELECTION = {  # (layout, N, K): ragged N and K (a k tail past the last index word, a ragged tile column)
    "nm24": ("nm(2, 4)", 37, 200),
    "nm12": ("nm(1, 2)", 21, 136),
    "nm24-int4": ("nm(2, 4) with int4(group=16)", 19, 160),
    "nm24-int8": ("nm(2, 4) with int8(axis=0)", 13, 96),
    "hybrid": ("hybrid(tile=[32, 64], formats=[dense, nm(2, 4)])", 83, 200),
    "hybrid12": ("hybrid(tile=[32, 64], formats=[dense, nm(1, 2)])", 45, 136),  # [0, 1, 1, 0] is 1:2 too
}


SELECTS = {8: ("llvm.x86.avx.vpermilvar.ps.256", (8, 16)), 16: ("llvm.x86.avx512.vpermi2var.ps.512", (16, 32))}
"""Each vector width's lane selection and registers; 16 lanes run where the host has AVX-512."""


@pytest.mark.parametrize("width", [8, pytest.param(16, marks=pytest.mark.skipif(
    "avx512f" not in host_features(), reason="the host has no AVX-512"))])  # fmt: skip
@pytest.mark.parametrize("name", sorted(LANE_SELECTION))
def test_lane_selection(monkeypatch: pytest.MonkeyPatch, name: str, width: int) -> None:
    """tdsl-vectorize-sparse's lane selection and hybrid kernel with 8 lanes (AVX2's) and 16
    (AVX-512's), against the reference at ragged M (GEMV; the rows of no panel block; a
    panel block of 32 and of 16, then rows left), N and K; 1:2's index words are of two
    steps at either width."""
    select, registers = SELECTS[width]
    monkeypatch.setattr(pipeline, "vector_registers", lambda _features: registers)
    layout, n, k = LANE_SELECTION[name]
    prog = stoicc_py.compile(f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}) -> f32[M, {n}] "
                             "{ return linear(x, w) }", cache=False)  # fmt: skip
    loops = prog.f.ir("loops")
    assert select in loops and f"vector<{width}xf32>" in loops
    rng = np.random.default_rng(8)
    w = rand(rng, n, k)
    pattern = np.float32([1, 0] if name == "nm12" else [0, 1, 1, 0])
    w = w * np.resize(pattern, k)
    if name.startswith("hybrid"):
        w[:32] = rand(rng, 32, k)  # a dense tile row; the ragged last one 2:4
    packed = prog.f.pack("w", w)
    for m in (1, 3, 13, 53):
        x = rand(rng, m, k)
        assert_close(prog.f(x, packed), prog.f.reference(x, packed))
