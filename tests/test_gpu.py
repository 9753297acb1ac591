"""The GPU target's kernels on a CUDA device, against the reference interpreter and
plain numpy, on ragged shapes (M, N and K not multiples of the block tiles or of the
tensor-core steps). Skipped where cuda-python or a CUDA device is missing (CI);
`python benchmarks/gpu.py` times them. tests/test_gpu_compile.py checks the PTX and
the metadata on any host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SIMT_KERNELS, hybrid_weight

import stoicc_py
from stoicc_py import gpu
from stoicc_py.arrays import NUMPY_DTYPES
from stoicc_py.backends.gpu import driver, staged
from stoicc_py.backends.gpu.staged import WIDE_M, StagedConfig
from stoicc_py.cli import main
from stoicc_py.codec.nm import NMCodec

pytestmark = pytest.mark.skipif(not driver.available(), reason="no CUDA device (or no cuda-python)")

Array = np.ndarray[Any, Any]

SOURCE = """
kernel dense(x: f16[M, 72], w: f16[40, 72], b: f16[40]) -> f16[M, 40] { return relu(linear(x, w, b)) }
kernel dense_bf16(w: bf16[200, 136], x: bf16[M, 136]) -> bf16[M, 200] { return linear(x, w) }
kernel sparse(x: f16[M, 72], w: f16[40, 72] @ nm(2, 4)) -> f16[M, 40] { return linear(x, w) }
kernel sparse_bf16(x: bf16[M, 200], w: bf16[136, 200] @ nm(2, 4), b: bf16[136]) -> bf16[M, 136] { return relu(linear(x, w, b)) }
layout H = hybrid(tile=[64, 64], formats=[dense, nm(2, 4)])
kernel hybrid(x: f16[M, 200], w: f16[136, 200] @ H, b: f16[136]) -> f16[M, 136] { return linear(x, w, b) }
kernel int4(x: f16[M, 200], w: f16[40, 200] @ int4(group=64)) -> f16[M, 40] { return relu(linear(x, w)) }
kernel int8(x: bf16[M, 136], w: bf16[200, 136] @ int8(axis=0, scale=f16)) -> bf16[M, 200] { return linear(x, w) }
kernel sparse_staged(x: f16[M, 208], w: f16[200, 208] @ nm(2, 4), b: f16[200]) -> f16[M, 200] { return relu(linear(x, w, b)) }
layout H2 = hybrid(tile=[128, 64], formats=[dense, nm(2, 4)])
kernel hybrid_staged(x: bf16[M, 200], w: bf16[264, 200] @ H2) -> bf16[M, 264] { return linear(x, w) }
kernel int4_gemv(x: f16[M, 96], w: f16[40, 96] @ int4(group=32)) -> f16[M, 40] { return linear(x, w) }
kernel int8_gemv(x: bf16[M, 160], w: bf16[24, 160] @ int8(axis=0, scale=f16), b: bf16[24]) -> bf16[M, 24] { return linear(x, w, b) }
kernel int4_magic(x: f16[M, 192], w: f16[40, 192] @ int4(group=64, scale=f16)) -> f16[M, 40] { return linear(x, w) }
kernel int4_magic_bf16(x: bf16[M, 96], w: bf16[24, 96] @ int4(group=32, scale=bf16)) -> bf16[M, 24] { return linear(x, w) }
kernel int8_magic(x: f16[M, 160], w: f16[40, 160] @ int8(group=32, scale=f16), b: f16[40]) -> f16[M, 40] { return linear(x, w, b) }
kernel sparse_gemv(x: bf16[M, 160], w: bf16[40, 160] @ nm(2, 4), b: bf16[40]) -> bf16[M, 40] { return relu(linear(x, w, b)) }
layout H3 = hybrid(tile=[32, 96], formats=[nm(2, 4), dense])
kernel hybrid_gemv(x: f16[M, 296], w: f16[72, 296] @ H3) -> f16[M, 72] { return linear(x, w) }
kernel long_dense(x: f16[M, 2120], w: f16[24, 2120]) -> f16[M, 24] { return linear(x, w) }
kernel long_sparse(x: bf16[M, 8336], w: bf16[40, 8336] @ nm(2, 4)) -> bf16[M, 40] { return linear(x, w) }
kernel long_int4(x: f16[M, 4160], w: f16[24, 4160] @ int4(group=64, scale=f16)) -> f16[M, 24] { return linear(x, w) }
layout H5 = hybrid(tile=[32, 64], formats=[dense, nm(2, 4)])
kernel long_hybrid(x: f16[M, 2312], w: f16[72, 2312] @ H5) -> f16[M, 72] { return linear(x, w) }
kernel int4_post(x: f16[M, 1024], w: f16[40, 1024] @ int4(group=128, scale=f16)) -> f16[M, 40] { return linear(x, w) }
kernel int4_post_bf16(x: bf16[M, 640], w: bf16[48, 640] @ int4(group=128, scale=bf16)) -> bf16[M, 48] { return linear(x, w) }
kernel dense_whole(x: f16[M, 2048], w: f16[64, 2048]) -> f16[M, 64] { return linear(x, w) }
kernel sparse_whole(x: f16[M, 1024], w: f16[32, 1024] @ nm(2, 4)) -> f16[M, 32] { return linear(x, w) }
"""
LONG = {"long_dense", "long_sparse", "long_int4", "long_hybrid"}
"""K long enough for several GEMV iterations a warp (and long_sparse's 512 threads: registers within the block's;
long_hybrid's 37 tile columns: more than two a warp)."""
STAGED = {"dense", "dense_bf16", "sparse_staged", "hybrid_staged", "sparse_gemv", "long_dense", "long_sparse",
          "dense_whole", "sparse_whole"}  # fmt: skip
"""Calls of more than 16 rows: staged.py."""
WHOLE = {"int4_post", "int4_post_bf16", "dense_whole", "sparse_whole"}
"""GEMV calls whose steps lie in one scale group (int4_post*: codes to the tensor cores unscaled, the sums scaled)
or whose K the warps' units fill (no column zeroed; dense_whole's and sparse_whole's N whole blocks too)."""
GEMV = {"dense", "dense_bf16", "int4_gemv", "int8_gemv", "int4_magic", "int4_magic_bf16", "int8_magic",
        "sparse_staged", "hybrid", "hybrid_staged", "sparse_gemv", "hybrid_gemv", *LONG, *WHOLE}  # fmt: skip
"""Calls of at most 16 rows: gemv.py (the *_magic kernels: codes dequantised by the float bit trick; 2:4 and
hybrid weights whose rows are whole 16-byte pieces, K a multiple of 16 and 8: sparse, sparse_bf16 are not)."""
ROWS = (1, 7, 9, 33, 130)  # every schedule (<= 8 rows, <= 16, more), ragged blocks of 32 and 128 rows
TOLERANCE = {"f16": 2e-3, "bf16": 1.6e-2}  # a few units in the last place of the result, relative to its largest


@pytest.fixture(scope="module")
def program() -> Any:
    return stoicc_py.compile(SOURCE, target="gpu")


def inputs(k: Any, m: int, seed: int) -> list[Array]:
    """Random arguments in the kernel's order; 2:4 weights pruned (dense, packed by the call)."""
    rng = np.random.default_rng(seed)
    args = []
    for p in k.abi.params:
        shape = [m if d == "M" else d for d in p.dims]
        a = rng.standard_normal(shape).astype(np.float32)
        if p.layout.startswith("nm"):
            a = NMCodec(2, 4, shape[1]).prune(a)
        elif p.layout.startswith("hybrid"):
            a = hybrid_weight(rng, *shape, k.spec.tile)  # 2:4, dense and empty tiles
        args.append(a.astype(NUMPY_DTYPES[p.dtype]))
    return args


def plain_numpy(k: Any, args: list[Array]) -> Array:
    ops = k.operands
    w = k.pack(k.abi.params[ops.w].name, args[ops.w]).dequantize() if k.spec.weight != "dense" else args[ops.w]
    x, w = args[ops.x].astype(np.float64), w.astype(np.float64)
    y = x @ w.T + (args[ops.bias].astype(np.float64) if ops.bias is not None else 0)
    return np.maximum(y, 0) if k.spec.act == "relu" else y


def assert_matches(got: Array, want: Array, dtype: str) -> None:
    scale = max(float(np.max(np.abs(want.astype(np.float64)))), 1e-6)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=0, atol=TOLERANCE[dtype] * scale)


@pytest.mark.parametrize("name", ["dense", "dense_bf16", "sparse", "sparse_bf16", "hybrid", "int4", "int8",
                                  "sparse_staged", "hybrid_staged", "int4_gemv", "int8_gemv", "int4_magic",
                                  "int4_magic_bf16", "int8_magic", "sparse_gemv", "hybrid_gemv",
                                  *sorted(LONG), *sorted(WHOLE)])  # fmt: skip
@pytest.mark.parametrize("m", ROWS)
def test_numpy_calls_match_the_reference(program: Any, name: str, m: int) -> None:
    k = program.kernel(name)
    expected = "gemv" if m <= 16 and name in GEMV else "staged" if m > 16 and name in STAGED else "direct"
    assert k.schedule(m).schedule == expected
    args = inputs(k, m, seed=m)
    got = k(*args)
    assert got.shape == (m, k.spec.n) and got.dtype == NUMPY_DTYPES[k.spec.dtype]
    assert_matches(got, k.reference(*args), k.spec.dtype)
    assert_matches(got, plain_numpy(k, args), k.spec.dtype)


WGMMA_SOURCE = """
kernel dense(x: f16[M, 200], w: f16[264, 200], b: f16[264]) -> f16[M, 264] { return relu(linear(x, w, b)) }
kernel dense_bf16(x: bf16[M, 136], w: bf16[200, 136]) -> bf16[M, 200] { return linear(x, w) }
kernel sparse(x: f16[M, 208], w: f16[200, 208] @ nm(2, 4), b: f16[200]) -> f16[M, 200] { return relu(linear(x, w, b)) }
kernel sparse_bf16(x: bf16[M, 336], w: bf16[136, 336] @ nm(2, 4)) -> bf16[M, 136] { return linear(x, w) }
layout H2 = hybrid(tile=[128, 64], formats=[dense, nm(2, 4)])
kernel hybrid(x: bf16[M, 200], w: bf16[264, 200] @ H2) -> bf16[M, 264] { return linear(x, w) }
kernel hybrid_f16(x: f16[M, 200], w: f16[264, 200] @ H2, b: f16[264]) -> f16[M, 264] { return linear(x, w, b) }
layout H4 = hybrid(tile=[128, 128], formats=[nm(2, 4), dense])
kernel hybrid_wide(x: f16[M, 400], w: f16[264, 400] @ H4) -> f16[M, 264] { return linear(x, w) }
kernel sparse_long(x: f16[M, 1040], w: f16[264, 1040] @ nm(2, 4)) -> f16[M, 264] { return linear(x, w) }
kernel hybrid_odd(x: f16[M, 320], w: f16[136, 320] @ H4) -> f16[M, 136] { return linear(x, w) }
"""
WGMMA_INSTRUCTION = {"sparse": "wgmma.mma_async.sp", "hybrid": "wgmma.mma_async.sp"}
WGMMA_CONFIGS = {
    "s4": StagedConfig(4, 16, wide_m=WIDE_M, wgmma=True),
    "s5": StagedConfig(5, 16, wide_m=WIDE_M, wgmma=True),
    "c2": StagedConfig(4, 16, wide_m=WIDE_M, wgmma=True, cluster=2),
    "c2s5": StagedConfig(5, 16, wide_m=WIDE_M, wgmma=True, cluster=2),
    "c4": StagedConfig(4, 16, wide_m=WIDE_M, wgmma=True, cluster=4),
    "c4s5": StagedConfig(5, 16, wide_m=WIDE_M, wgmma=True, cluster=4),
    "c2tma": StagedConfig(5, 16, wide_m=WIDE_M, wgmma=True, cluster=2, tma_w=True),
}
"""Past WIDE_M rows, 8-warp blocks (128 weight rows x 256 rows of x) of 4 or 5 stages (config_for:
2:4 5 past 512 rows, in clusters of 2); c2, c2s5: in clusters of 2 blocks that multicast x by TMA
(N = 264: three blocks of weight rows, the second cluster's second block past N); c4, c4s5:
clusters of 4 (one, its fourth block past N; 5 stages of a dense k-tile do not fit); c2tma: c2s5
with the 2:4 values by TMA too (zeros past N and K). Consecutive 2:4
k-tiles (every 2:4 weight, hybrid_wide's 128-wide tiles) keep two wgmma.sp groups' metadata
registers live at once; sparse_long's 17 k-tiles and hybrid_odd's 5 (its weight all 2:4 tiles)
end on an odd one."""


@pytest.mark.parametrize("m", (33, 130, 300))
@pytest.mark.parametrize(
    ("name", "config"),
    [(name, "s4") for name in ("dense", "dense_bf16", "sparse", "sparse_bf16", "sparse_long", "hybrid", "hybrid_f16",
                               "hybrid_wide", "hybrid_odd")]
    + [(name, "s5") for name in ("sparse", "sparse_bf16", "sparse_long")]
    + [(name, "c2") for name in ("dense", "dense_bf16", "sparse_bf16", "hybrid", "hybrid_wide", "hybrid_odd")]
    + [(name, "c2s5") for name in ("sparse", "sparse_long")]
    + [(name, "c4") for name in ("dense", "hybrid_wide")]
    + [(name, "c4s5") for name in ("sparse", "sparse_long")]
    + [(name, "c2tma") for name in ("sparse", "sparse_bf16", "sparse_long")],
)  # fmt: skip
def test_the_wgmma_variant_matches_the_reference(name: str, config: str, m: int, monkeypatch: Any) -> None:
    """The staged kernel through wgmma (StagedConfig.wgmma, sm_90a) on ragged M, N and K:
    4 warps (128 rows of x a block) up to WIDE_M rows, 8 past (WGMMA_CONFIGS); 2:4 weights
    and tiles through wgmma.sp (hybrid: its tiles 2:4, dense and empty, hybrid_weight's)."""
    wgmma = WGMMA_CONFIGS[config]
    for module in (gpu, staged):
        monkeypatch.setattr(module, "config_for", lambda spec: wgmma)
    k = stoicc_py.compile(WGMMA_SOURCE, target="gpu").kernel(name)  # its own: loaded functions are kept per spec
    instruction = WGMMA_INSTRUCTION.get(name.split("_")[0], "wgmma.mma_async")
    assert k.schedule(m).schedule == "staged" and instruction in k.ptx(m)
    args = wgmma_inputs(k, m)
    got = k(*args)
    assert_matches(got, k.reference(*args), k.spec.dtype)
    assert_matches(got, plain_numpy(k, args), k.spec.dtype)


def wgmma_inputs(k: Any, m: int) -> list[Array]:
    """inputs(), hybrid_odd's tiles all 2:4 (its last two k-tiles both through wgmma.sp)."""
    args = inputs(k, m, seed=m)
    if k.name == "hybrid_odd":
        w = args[k.operands.w]
        args[k.operands.w] = NMCodec(2, 4, w.shape[1]).prune(w.astype(np.float32)).astype(w.dtype)
    return args


@pytest.mark.parametrize("m", (33, 300))
@pytest.mark.parametrize("name", ["dense", "sparse", "sparse_long", "hybrid", "hybrid_wide", "hybrid_odd"])  # K of 4+ k-tiles
def test_split_k_matches_the_reference_with_the_same_bits_each_call(name: str, m: int, monkeypatch: Any) -> None:
    """Split-K (staged.k_splits, here with splits of 2 k-tiles or more, so that these
    short K split 2 to 5 ways; the default's 4-warp blocks): the splits' sums added in
    the order of their splits, the same bits on every call."""
    monkeypatch.setattr(staged, "MIN_SPLIT_TILES", 2)
    k = stoicc_py.compile(WGMMA_SOURCE, target="gpu").kernel(name)
    assert k.schedule(m).k_splits > 1
    args = wgmma_inputs(k, m)
    got = k(*args)
    assert_matches(got, k.reference(*args), k.spec.dtype)
    assert_matches(got, plain_numpy(k, args), k.spec.dtype)
    assert np.array_equal(k(*args), got)


def test_torch_tensors_stay_on_the_device(program: Any) -> None:
    torch = pytest.importorskip("torch")
    for name in ("dense", "sparse_bf16", "hybrid", "int4"):
        k = program.kernel(name)
        args = inputs(k, 33, seed=1)
        dtype = {"f16": torch.float16, "bf16": torch.bfloat16}[k.spec.dtype]
        on_device = [torch.from_numpy(a.astype(np.float32)).to("cuda", dtype) for a in args]
        weight = k.to_device(k.abi.params[k.operands.w].name, args[k.operands.w])  # packed once, uploaded once
        on_device[k.operands.w] = weight
        got = k(*on_device)
        assert isinstance(got, torch.Tensor) and got.device.type == "cuda" and got.dtype == dtype
        assert_matches(got.float().cpu().numpy(), k.reference(*args), k.spec.dtype)
        out = torch.empty_like(got)
        assert k(*on_device, out=out) is out
        assert torch.equal(out, got)


def test_cupy_arrays_stay_on_the_device(program: Any) -> None:
    cupy = pytest.importorskip("cupy")
    k = program.sparse
    args = inputs(k, 9, seed=2)
    got = k(cupy.asarray(args[0]), k.to_device("w", args[1]))
    assert isinstance(got, cupy.ndarray)
    assert_matches(cupy.asnumpy(got), k.reference(*args), "f16")


def test_an_empty_batch_returns_an_empty_result(program: Any) -> None:
    k = program.dense
    args = inputs(k, 0, seed=0)
    assert k(*args).shape == (0, 40)


EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.tdsl"))
EXAMPLE_DIMS = {"llama_block.tdsl": ["T=5", "P=3"]}  # the others: M rows


@pytest.mark.parametrize("rows", [1, 37])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_runs_as_the_reference_computes(path: Path, rows: int, capsys: Any) -> None:
    """`stoicc run FILE --target gpu`: every kernel (SIMT or tensor cores) on random inputs
    against the reference interpreter (f32: rtol 1e-4; integers bit-exact; f16: 1e-2)."""
    dims = EXAMPLE_DIMS.get(path.name, [f"M={rows}"])
    if path.name in EXAMPLE_DIMS and rows == 1:
        dims = ["T=1", "P=6"]  # decoding one token after six
    rtol = "1e-2" if path.name == "gpu.tdsl" else "1e-4"
    args = ["run", str(path), "--target", "gpu", "--rtol", rtol, *(a for d in dims for a in ("--dim", d))]
    code = main(args)
    out = capsys.readouterr().out
    print(out)
    assert code == 0 and "MISMATCH" not in out and out.count(" ok ") >= 1


@pytest.mark.parametrize("source", [s for s, _ in SIMT_KERNELS])
def test_simt_kernels_match_the_reference(source: str, tmp_path: Path, capsys: Any) -> None:
    """f16/bf16 kernels the tensor cores do not run (other layouts, epilogues, ops, shapes)."""
    path = tmp_path / "k.tdsl"
    path.write_text(source)
    extra = ["--dim", "N=24"] if "[N, 64]" in source else []
    code = main(["run", str(path), "--target", "gpu", "--dim", "M=41", *extra, "--rtol", "1e-2"])
    out = capsys.readouterr().out
    print(out)
    assert code == 0 and " ok " in out


MATH = """
kernel tanh_(x: f32[M, 128]) -> f32[M, 128] { return tanh(x) }
kernel gelu_(x: f32[M, 128]) -> f32[M, 128] { return gelu(x) }
kernel exp_(x: f32[M, 128]) -> f32[M, 128] { return exp(x) }
kernel silu_(x: f32[M, 128]) -> f32[M, 128] { return silu(x) }
kernel softmax_(x: f32[M, 128]) -> f32[M, 128] { return softmax(x, axis=-1) }
"""


def test_device_math_is_as_accurate_as_libm_within_a_few_ulp() -> None:
    """The SIMT path's exp, tanh and erf (gpu-expand-math: no libm on the device) over
    [-20, 20] and near 0, element by element against the reference."""
    program = stoicc_py.compile(MATH, target="gpu")
    x = np.concatenate([np.linspace(-20, 20, 256), np.linspace(-1e-3, 1e-3, 128)]).astype(np.float32).reshape(3, 128)
    for k in program.kernels.values():
        got, want = k(x), k.reference(x)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-7, err_msg=k.name)
