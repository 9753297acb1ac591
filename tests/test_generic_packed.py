"""Shape-generic packed kernels: one compile of a kernel whose packed weight has size
symbols serves ragged shapes (M, N, K), checked against the reference; a size that
breaks the layout's granule is refused at call time, naming the parameter and sizes."""

import numpy as np
import pytest

import stoicc_py

LAYOUTS = {
    "nm": "nm(2, 4)",
    "hybrid": "hybrid(tile=[8, 32], formats=[dense, nm(2, 4)])",
    "int4": "int4(group=32)",
    "nm_int4": "nm(2, 4) with int4(group=32)",
    "csr": "csr",
    "block": "block([4, 8])",
}
SOURCE = "\n".join(
    f"kernel {name}(x: f32[M, K], w: f32[N, K] @ {layout}) -> f32[M, N] {{ return linear(x, w) }}"
    for name, layout in LAYOUTS.items()
)
SHAPES = [(3, 24, 64), (5, 20, 128), (17, 36, 576)]  # (M, N, K): N, M not multiples of 8/16; K=576 as SmolLM2
OPTIONS = {"nm": {"prune": "magnitude"}, "nm_int4": {"prune": "magnitude"}, "csr": {"prune": "magnitude"},
           "block": {"prune": "magnitude"}, "hybrid": {"prune": "magnitude", "plan": "auto", "sparsity": 0.5}}  # fmt: skip


@pytest.fixture(scope="module")
def program() -> stoicc_py.Program:
    return stoicc_py.compile(SOURCE)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_one_compile_serves_ragged_shapes(program: stoicc_py.Program, name: str) -> None:
    kernel = getattr(program, name)
    assert "w_values_dim1" in kernel.abi.symbols or name in ("csr", "block", "hybrid")
    rng = np.random.default_rng(17)
    for m, n, k in SHAPES:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = kernel.pack("w", rng.standard_normal((n, k)).astype(np.float32), **OPTIONS.get(name, {}))
        y = kernel(x, w)
        assert y.shape == (m, n)
        np.testing.assert_allclose(y, kernel.reference(x, w), rtol=1e-4, atol=1e-4)


def test_granule_violation_names_parameter_dims_and_granule(program: stoicc_py.Program) -> None:
    w = np.ones((12, 10), np.float32)
    with pytest.raises(ValueError, match=r"nm: parameter 'w' \(w: f32\[N, K\] @ nm\(2, 4\) where N=12, K=10\): "
                                         r".*group size M = 4 does not divide the dimension of size 10"):  # fmt: skip
        program.nm.pack("w", w)
    with pytest.raises(ValueError, match=r"where N=12, K=96\).*make K a multiple of 64"):
        program.nm_int4.pack("w", np.ones((12, 96), np.float32))


def test_static_granule_violation_stays_a_compile_error() -> None:
    with pytest.raises(stoicc_py.CompileError, match=r":1:\d+: error: .*does not divide the dimension of size 10"):
        stoicc_py.compile("kernel f(x: f32[M, 10], w: f32[N, 10] @ nm(2, 4)) -> f32[M, N] { return linear(x, w) }")


def test_static_vs_generic_benchmark_smoke() -> None:
    from stoicc_py.benchmarks.generic import SMOKE_ROWS, SMOKE_SHAPES, run

    report = run(["nm24"], SMOKE_SHAPES, SMOKE_ROWS, repeat=1, budget=0.0, timed=False)
    assert [(r["static_ok"], r["generic_ok"]) for r in report["results"]] == [(True, True)]
    assert report["compile"]["nm24"]["generic_s"] > 0


def test_symbolic_rows_keep_the_vectorised_quantized_kernel() -> None:
    """w: f32[N, 64] @ int4(group=32): a static K keeps tdsl-vectorize-quant's nest, N read at run time."""
    kernel = stoicc_py.compile("kernel f(x: f32[M, 64], w: f32[N, 64] @ int4(group=32)) -> f32[M, N] "
                               "{ return linear(x, w) }").f  # fmt: skip
    assert "vector.load" in kernel.ir("loops")
    rng = np.random.default_rng(3)
    for m, n in ((1, 20), (7, 37)):
        x = rng.standard_normal((m, 64)).astype(np.float32)
        w = kernel.pack("w", rng.standard_normal((n, 64)).astype(np.float32))
        np.testing.assert_allclose(kernel(x, w), kernel.reference(x, w), rtol=1e-4, atol=1e-4)
