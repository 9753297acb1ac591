"""The vector passes at the widths of smaller hosts (AVX2: 8 f32 lanes and 16
registers; SSE: 4 and 16; no VNNI), compiled and run here: the same generic vector
ops, narrower, with the register blocks and fallbacks those hosts get (2:4 over
copied panels instead of lane selection, integer products without vpdpbusd)."""

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py import pipeline

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
