"""The GPU target on a host without a GPU: the mma.sp metadata the packer lays out from
the nm codec reads back, as the PTX ISA says the instruction reads it, to the weight
the codec's own decoder gives; every kernel becomes PTX with the tensor-core
instructions it should use and nothing NVPTX could not lower; what the tensor cores do
not run takes the generic SIMT path, with the reason as a remark, and every example
becomes PTX. tests/test_gpu.py runs the kernels where there is a GPU."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

import gpu_emulator
import llvmlite.binding as llvm
import numpy as np
import pytest
from conftest import SIMT_KERNELS, hybrid_weight

import stoicc_py
from stoicc_py import gpu
from stoicc_py.arrays import NUMPY_DTYPES
from stoicc_py.backends.gpu import driver
from stoicc_py.backends.gpu.gemv import gemv_ir
from stoicc_py.backends.gpu.kernel import gemm_ir
from stoicc_py.backends.gpu.sass import metadata_hazards
from stoicc_py.backends.gpu.staged import (
    WIDE_M,
    StagedConfig,
    config_for,
    k_splits,
    loop_tiles,
    multicast_box,
    shared_bytes,
    staged_arch,
    staged_grid,
    staged_ir,
    staged_warps,
    values_box,
)
from stoicc_py.backends.gpu.target import emit_ptx, optimized
from stoicc_py.cli import main
from stoicc_py.codec import codec_for
from stoicc_py.codec.hybrid import HybridCodec
from stoicc_py.codec.nm import NMCodec
from stoicc_py.gpu import GpuKernel
from stoicc_py.gpu_simt import SimtKernel
from stoicc_py.packing.mma import MAP_CODE_BITS, hybrid_gpu_arrays, mma_sp_metadata, wgmma_sp_registers

Array = np.ndarray[Any, Any]

GPU_SOURCE = """
kernel dense(x: f16[M, 72], w: f16[40, 72], b: f16[40]) -> f16[M, 40] { return relu(linear(x, w, b)) }
kernel dense_bf16(w: bf16[33, 40], x: bf16[M, 40]) -> bf16[M, 33] { return linear(x, w) }
kernel sparse(x: f16[M, 72], w: f16[40, 72] @ nm(2, 4)) -> f16[M, 40] { return linear(x, w) }
kernel sparse_bf16(x: bf16[M, 96], w: bf16[24, 96] @ nm(2, 4), b: bf16[24]) -> bf16[M, 24] { return linear(x, w, b) }
layout H = hybrid(tile=[32, 64], formats=[nm(2, 4), dense])
kernel hybrid(x: bf16[M, 136], w: bf16[72, 136] @ H, b: bf16[72]) -> bf16[M, 72] { return relu(linear(x, w, b)) }
kernel int4(x: f16[M, 200], w: f16[40, 200] @ int4(group=64)) -> f16[M, 40] { return linear(x, w) }
kernel int8(x: bf16[M, 72], w: bf16[24, 72] @ int8(axis=0, scale=f16), b: bf16[24]) -> bf16[M, 24] { return linear(x, w, b) }
kernel int4_post(x: f16[M, 1024], w: f16[48, 1024] @ int4(group=128, scale=f16)) -> f16[M, 48] { return linear(x, w) }
"""
MMA = {
    "dense": "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
    "dense_bf16": "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
    "sparse": "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32",
    "sparse_bf16": "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32",
}
SCHEDULES = {
    "dense": [("gemv", 1), ("staged", 8), ("staged", 8)], "dense_bf16": [("gemv", 1), ("staged", 8), ("staged", 8)],
    "sparse": [("direct", 1), ("direct", 4), ("direct", 4)],
    "sparse_bf16": [("gemv", 1), ("staged", 8), ("staged", 8)],
    "hybrid": [("gemv", 1), ("direct", 4), ("direct", 4)],
    "int4": [("direct", 1), ("direct", 4), ("direct", 4)], "int8": [("direct", 1), ("direct", 4), ("direct", 4)],
}  # fmt: skip
"""(schedule, 8-row columns) of a call of 5, 37 and 600 rows (stoicc_py/gpu.py: GpuKernel.schedule;
600: 8-warp blocks, those of 2:4 weights in clusters of 2, x's tensor map passed)."""
HYBRID_MMA = {"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", MMA["sparse_bf16"]}
INSTRUCTIONS = {**{name: {mma} for name, mma in MMA.items()}, "hybrid": HYBRID_MMA,
                "int4": {MMA["dense"]}, "int8": {"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"}}  # fmt: skip


@pytest.fixture(scope="module")
def program() -> Any:
    return stoicc_py.compile(GPU_SOURCE, target="gpu")


def two_of_four(rng: np.random.Generator, rows: int, cols: int) -> Array:
    """A random 2:4 matrix whose groups have 0, 1 or 2 non-zeros (the codec pads the rest)."""
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w[rng.random(w.shape) < 0.2] = 0
    return NMCodec(2, 4, cols).prune(w)


def as_mma_sp_reads(meta: Array, values: Array, rows: int, cols: int) -> Array:
    """The dense weight that mma.sp.m16n8k32 (sparsity selector 0) multiplies, from the
    metadata and the stored values, as the PTX ISA describes it: lane 4g + p of a warp holds
    rows g (bits 0-15) and g + 8 (bits 16-31) of its tile for the step's columns 16p ...
    16p + 15, a nibble per group of 4, two 2-bit positions of its two stored values."""
    tiles, steps = meta.shape[:2]
    stored = np.zeros((tiles * 16, steps * 16), values.dtype)
    stored[:rows, : values.shape[1]] = values
    dense = np.zeros((tiles * 16, steps * 32), values.dtype)
    for tile, step, row, group in product(range(tiles), range(steps), range(16), range(8)):
        word = int(meta[tile, step, row % 8, group // 4])
        nibble = word >> (16 * (row // 8) + 4 * (group % 4)) & 0xF
        first, second = nibble & 3, nibble >> 2
        assert first < second, f"metadata nibble {nibble:04b} is not two ascending positions"
        for slot, position in enumerate((first, second)):
            dense[tile * 16 + row, step * 32 + 4 * group + position] += stored[
                tile * 16 + row, step * 16 + 2 * group + slot
            ]
    return dense[:rows, :cols]


def as_wgmma_sp_reads(registers: Array, values: Array, rows: int, cols: int) -> Array:
    """The dense weight that wgmma.sp.m64nNk32 multiplies, from each warpgroup thread's
    metadata register, as CUTLASS's ELayout_64x32 maps (thread, value) to (row, column) of
    the 64 x 32 slice: thread t = (t % 2, t / 2 % 2, t / 4 % 8, t / 32) with strides (16
    columns, 0, 1 row, 16 rows), its 32 bits (16, 2) with strides (1 column, 8 rows): bit
    16h + 4n + b of thread t, row 16 (t / 32) + t / 4 % 8 + 8h, group n of columns 16 (t % 2) ..."""
    slices, steps = registers.shape[:2]
    stored = np.zeros((slices * 64, steps * 16), values.dtype)
    stored[:rows, : values.shape[1]] = values
    dense = np.zeros((slices * 64, steps * 32), values.dtype)
    for s, step, t, h, n in product(range(slices), range(steps), range(128), range(2), range(4)):
        row = 64 * s + 16 * (t // 32) + t // 4 % 8 + 8 * h
        group = 4 * (t % 2) + n  # of the step's 8 groups of 4 columns
        nibble = int(registers[s, step, t]) >> (16 * h + 4 * n) & 0xF
        first, second = nibble & 3, nibble >> 2
        assert first < second, f"metadata nibble {nibble:04b} is not two ascending positions"
        for slot, position in enumerate((first, second)):
            value = stored[row, step * 16 + 2 * group + slot]
            at = (row, step * 32 + 4 * group + position)
            assert dense[at] in (0, value), "threads that repeat a word must agree"  # t / 2 % 2: stride 0
            dense[at] = value
    return dense[:rows, :cols]


def read_hybrid(spec: Any, arrays: dict[str, Array]) -> Array:
    """The dense weight the hybrid kernel multiplies: each tile through the map, a 2:4 tile
    through its metadata as mma.sp reads it."""
    (th, tw), (tile_rows, tile_cols) = spec.tile, spec.tile_grid
    dense = np.zeros((tile_rows * th, tile_cols * tw), np.float64)
    for r, c in product(range(tile_rows), range(tile_cols)):
        entry = int(arrays["map"][r * tile_cols + c])
        code, slot = entry & ((1 << MAP_CODE_BITS) - 1), entry >> MAP_CODE_BITS
        if code == 0:
            continue
        f = code - 1
        values = arrays[f"values{f}"][slot]
        if spec.tile_formats[f] == "nm24":
            values = as_mma_sp_reads(arrays[f"meta{f}"][slot], values, th, tw)
        dense[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = values
    return dense[: spec.n, : spec.k]


def test_the_hybrid_tile_map_and_tiles_read_back_as_the_codec_decodes(program: Any) -> None:
    k = program.hybrid
    w = hybrid_weight(np.random.default_rng(7), k.spec.n, k.spec.k, k.spec.tile)
    packed = k.pack("w", w)
    codec = codec_for(packed.layout, packed.shape)
    assert isinstance(codec, HybridCodec)
    assert sorted(np.unique(packed.arrays["table"]).tolist()) == [0, 1, 2]  # empty, 2:4 and dense tiles
    names = [p for p in k.spec.params if p not in ("x", "bias", "y")]
    arrays = dict(zip(names, hybrid_gpu_arrays(codec, packed.arrays), strict=True))
    reference = codec.decode(packed.arrays).astype(np.float64)
    np.testing.assert_array_equal(reference, w.astype(NUMPY_DTYPES["bf16"]).astype(np.float64))
    np.testing.assert_array_equal(read_hybrid(k.spec, arrays), reference)


@pytest.mark.parametrize("rows, cols", [(40, 72), (16, 32), (7, 4), (33, 100)])
def test_mma_sp_metadata_reads_back_as_the_codec_decodes(rows: int, cols: int) -> None:
    rng = np.random.default_rng(rows * cols)
    w = two_of_four(rng, rows, cols)
    codec = NMCodec(2, 4, cols)
    arrays = codec.encode(w)
    meta = mma_sp_metadata(codec, arrays["indices"], rows)
    assert meta.shape == (-(-rows // 16), -(-cols // 32), 8, 2) and meta.dtype == np.uint32
    reference = codec.decode(arrays)
    np.testing.assert_array_equal(reference, w)
    np.testing.assert_array_equal(as_mma_sp_reads(meta, arrays["values"], rows, cols), reference)


@pytest.mark.parametrize("rows, cols", [(64, 32), (40, 72), (130, 100)])
def test_wgmma_sp_registers_read_back_as_the_codec_decodes(rows: int, cols: int) -> None:
    """wgmma.sp's arrangement of the same words (the staged kernel's wgmma variant reads
    them from its stage so): through CUTLASS's thread-value layout, the codec's matrix."""
    rng = np.random.default_rng(rows + cols)
    w = two_of_four(rng, rows, cols)
    codec = NMCodec(2, 4, cols)
    arrays = codec.encode(w)
    registers = wgmma_sp_registers(mma_sp_metadata(codec, arrays["indices"], rows))
    assert registers.shape == (-(-rows // 64), -(-cols // 32), 128) and registers.dtype == np.uint32
    np.testing.assert_array_equal(as_wgmma_sp_reads(registers, arrays["values"], rows, cols), codec.decode(arrays))


def test_the_wgmma_sp_example_of_formats_md() -> None:
    """docs/formats.md's worked example ("On the GPU"): rows 17 and 25's index words, where
    mma.sp's lanes and wgmma.sp's threads find them."""
    words = np.full((64, 1), 0x44444444, np.uint32)
    words[17, 0], words[25, 0] = 0xE8D44DE4, 0x44448888
    meta = mma_sp_metadata(NMCodec(2, 4, 32), words.view(np.int32), 64)
    assert (int(meta[1, 0, 1, 0]), int(meta[1, 0, 1, 1])) == (0x88884DE4, 0x4444E8D4)
    registers = wgmma_sp_registers(meta)
    assert [int(registers[0, 0, t]) for t in (36, 37, 38, 39)] == [0x88884DE4, 0x4444E8D4] * 2
    docs = (Path(__file__).parents[1] / "docs" / "formats.md").read_text()
    assert "mma_sp_metadata[1, 0, 1, 1] = 0x4444 << 16 | 0xE8D4 = 0x4444E8D4" in docs
    assert "threads 37, 39 (q = 1, 3) pass 0x4444E8D4" in docs


def test_mma_sp_metadata_refuses_other_patterns() -> None:
    codec = NMCodec(1, 4, 32)
    with pytest.raises(ValueError, match="2:4"):
        mma_sp_metadata(codec, codec.encode(np.zeros((16, 32), np.float32))["indices"], 16)


WGMMA_DEFAULT = {name: {f"wgmma.mma_async{sp}.sync.aligned.m64n128k{k}.f32.{ty}.{ty}"} for name, ty, sp, k in
                 (("dense", "f16", "", 16), ("dense_bf16", "bf16", "", 16), ("sparse_bf16", "bf16", ".sp", 32))}  # fmt: skip
"""The large schedule's instruction where it is the staged kernel through wgmma (4 warps at 100 rows)."""


@pytest.mark.parametrize("name", list(INSTRUCTIONS))
def test_each_kernel_is_ptx_with_its_tensor_core_instruction(program: Any, name: str) -> None:
    k = program.kernel(name)
    for m in (1, 100):  # the small-batch and the large schedule
        ptx = k.ptx(m)
        assert f".visible .entry {name}(" in ptx and ".target sm_90" in ptx
        want = WGMMA_DEFAULT[name] if m == 100 and name in WGMMA_DEFAULT else INSTRUCTIONS[name]
        assert set(re.findall(r"\b(?:wgmma\.)?mma[._]\S*", ptx)) == want
        assert ".extern .func" not in ptx and "call" not in ptx.split(f".entry {name}(")[1]
        params = len(k.spec.params) + 1
        assert len(re.findall(rf"\.param \S+( \S+)* {name}_param_\d+", ptx)) == params


def emulated(k: Any, spec: Any, m: int) -> tuple[gpu_emulator.Accesses, dict[str, Array], Callable[..., set[str]]]:
    """A call of m rows of `spec` (k's schedule) run by gpu_emulator on buffers of the sizes
    a call uploads (x, y and the bias zeros; a packed weight's arrays themselves, where its
    values pick addresses: a hybrid tile map; split-K's scratch), with what it touched, the
    buffers, and a function naming the buffers that (address, bytes) pairs lie in."""
    config = config_for(spec) if spec.schedule == "staged" else None
    grid = staged_grid(spec, m, config) if config else spec.grid(m)
    n, kk, tiles = spec.n, spec.k, grid[0] * grid[1]
    sizes = {"x": 2 * m * kk, "w": 2 * n * kk, "bias": 2 * n, "y": 2 * m * n,
             "work": 4 * tiles * spec.block_rows * spec.block_cols, "flags": 4 * tiles}  # fmt: skip
    buffers = {p: np.zeros(sizes.get(p, 0), np.uint8) for p in spec.params}
    if spec.weight != "dense":
        rng = np.random.default_rng(5)
        w = hybrid_weight(rng, n, kk, spec.tile) if spec.weight == "hybrid" else rng.standard_normal((n, kk), np.float32)
        w = NMCodec(2, 4, kk).prune(w) if spec.weight == "nm24" else w
        weight = [np.ascontiguousarray(a).view(np.uint8).reshape(-1) for a in gpu.gpu_arrays(k.pack("w", w))]
        buffers.update(zip(spec.params[1 : 1 + len(weight)], weight, strict=True))
    bounds = {p: (b.ctypes.data, b.ctypes.data + b.size) for p, b in buffers.items()}
    ir = staged_ir(spec, config) if config else gemv_ir(spec) if spec.schedule == "gemv" else gemm_ir(spec)
    ir = str(optimized(ir, arch=staged_arch(spec) if config else "sm_90"))  # as NVPTX compiles it
    accesses = gpu_emulator.run(ir, spec.name, [b.ctypes.data for b in buffers.values()], m, grid, spec.threads)

    def owners(touched: list[tuple[int, int]]) -> set[str]:
        return {next((p for p, (lo, hi) in bounds.items() if lo <= at and at + max(size, 1) <= hi), "outside")
                for at, size in touched}  # fmt: skip

    return accesses, buffers, owners


def stores_each_element_once(accesses: gpu_emulator.Accesses, y: Array) -> bool:
    return sorted(at for at, _ in accesses.stores) == list(range(y.ctypes.data, y.ctypes.data + y.size, 2))


@pytest.mark.parametrize(("source", "m"), [
    ("kernel f(x: bf16[M, 1040], w: bf16[40, 1040] @ nm(2, 4)) -> bf16[M, 40] { return linear(x, w) }", 130),
    ("kernel f(x: f16[M, 1096], w: f16[72, 1096], b: f16[72]) -> f16[M, 72] { return relu(linear(x, w, b)) }", 300),
    ("kernel f(x: f16[M, 2120], w: f16[24, 2120]) -> f16[M, 24] { return linear(x, w) }", 37),
    ("layout H = hybrid(tile=[128, 64], formats=[dense, nm(2, 4)])\n"
     "kernel f(x: bf16[M, 1096], w: bf16[264, 1096] @ H) -> bf16[M, 264] { return linear(x, w) }", 300),
])  # fmt: skip
@pytest.mark.parametrize("split", [True, False])
def test_a_staged_calls_copies_and_stores_stay_inside_its_buffers(source: str, m: int, split: bool) -> None:
    """The kernel run on the CPU thread by thread (gpu_emulator): every cp.async names an
    address inside its buffer, size 0 or not (round 10's fault: copies of rows past M
    named addresses ~2 MB past x), split-K's workspace and flags stay in theirs and end at
    0, and y gets each of its elements once. Ragged M, N and K; split and not; a hybrid
    weight's packed arrays as the kernel reads them (its copies follow its tile map)."""
    k = stoicc_py.compile(source, target="gpu").kernel("f")
    spec = k.schedule(m)
    assert spec.schedule == "staged" and (spec.k_splits > 1 or not split)
    accesses, buffers, owners = emulated(k, spec if split else replace(spec, k_splits=1), m)
    assert accesses.copies and any(size == 0 for _, size in accesses.copies)  # ragged: some copies read nothing
    assert owners(accesses.copies) <= {"x", "w", "values", "meta", "values0", "values1", "meta1"}
    assert owners(accesses.scratch) <= {"work", "flags"} and (bool(accesses.scratch) == split)
    assert not buffers.get("flags", np.zeros(1, np.uint8)).any()
    assert owners(accesses.stores) == {"y"} and stores_each_element_once(accesses, buffers["y"])


@pytest.mark.parametrize("name", ["dense", "dense_bf16", "sparse", "sparse_bf16", "hybrid", "int4", "int8", "int4_post"])
@pytest.mark.parametrize("m", [1, 9, 37])
def test_gemv_and_direct_calls_load_and_store_inside_their_buffers(program: Any, name: str, m: int) -> None:
    """The GEMV and direct schedules (ragged N and K, a packed weight's real arrays) under
    gpu_emulator: every load from global memory inside its buffer, y's elements stored once."""
    k = program.kernel(name)
    spec = k.schedule(m)
    if spec.schedule == "staged":
        pytest.skip("the staged schedule: test_a_staged_calls_copies_and_stores_stay_inside_its_buffers")
    accesses, buffers, owners = emulated(k, spec, m)
    assert accesses.loads and owners(accesses.loads) <= set(buffers) - {"y"}
    assert owners(accesses.stores) == {"y"} and stores_each_element_once(accesses, buffers["y"])


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_an_int4_gemv_step_of_one_scale_group_scales_its_sums_not_its_codes(dtype: str) -> None:
    """f16: a pair of nibbles by one lop3 (and + or) each; a step (4 lanes x 32 codes of a
    row) inside one group of 128, in a call of one 8-row column, gives mma.sync its codes
    unscaled and scales its sums in f32, where groups of 64, and calls of two columns
    (registers), scale every pair of codes. bf16 keeps a prmt a pair, scaled."""
    program = stoicc_py.compile("\n".join(
        f"kernel g{g}(x: {dtype}[M, 1024], w: {dtype}[48, 1024] @ int4(group={g}, scale={dtype})) -> {dtype}[M, 48] "
        "{ return linear(x, w) }" for g in (64, 128)), target="gpu")  # fmt: skip
    for group in (64, 128):
        for m in (1, 16):
            ptx = program.kernel(f"g{group}").ptx(m)
            scaled_codes = dtype == "bf16" or group == 64 or m == 16
            assert (ptx.count("lop3.b32") >= 8) == (dtype == "f16")
            assert (f"mul.rn.{dtype}x2" in ptx) == scaled_codes
            assert ("fma.rn.f32" in ptx) == (not scaled_codes)


@pytest.mark.skipif("+f16c" not in llvm.get_host_cpu_features().flatten(), reason="half arithmetic on the host: F16C")
@pytest.mark.parametrize("layout, dtype", [("int4(group=128, scale=f16)", "f16"), ("int4(group=64, scale=f16)", "f16"),
                                           ("int4(group=32, scale=bf16)", "bf16"), ("int8(group=32, scale=f16)", "f16")])
def test_a_gemv_piece_meets_x_at_its_columns_each_code_times_its_scale_rounded_once(layout: str, dtype: str) -> None:
    """gpu_emulator.gemv_pairs on one 16-byte piece of a row (32 int4 or 16 int8 codes) and
    x's columns, valued by their index: each weight value meets x's value of its own column
    and is that column's code times the scale rounded once to the dtype (or the code, where
    the sums are scaled instead); it fails for bf16 read by f16's nibble pairs."""
    k = stoicc_py.compile(f"kernel a(x: {dtype}[M, 256], w: {dtype}[16, 256] @ {layout}) -> {dtype}[M, 16] "
                          "{ return linear(x, w) }", target="gpu").kernel("a")  # fmt: skip
    bits, ty = 4 if layout.startswith("int4") else 8, NUMPY_DTYPES[dtype]
    rng = np.random.default_rng(5)
    codes = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), 128 // bits)
    words = [sum((int(c) % 2**bits) << (bits * i) for i, c in enumerate(codes[j : j + 32 // bits]))
             for j in range(0, len(codes), 32 // bits)]  # fmt: skip
    scale = np.asarray(0.0371, np.float64).astype(ty)
    x_words = np.arange(len(codes), dtype=np.float64).astype(ty).view(np.uint32).tolist()
    for scaled in (True, False):
        w, x = gpu_emulator.gemv_pairs(k.schedule(1), words, int(scale.view(np.uint16)), x_words, scaled)
        columns = x.astype(int)
        assert sorted(columns) == list(range(len(codes)))
        want = codes[columns] * (float(scale) if scaled else 1.0)
        np.testing.assert_array_equal(w, want.astype(ty).astype(np.float64))


def test_a_hybrid_gemv_of_two_columns_loads_its_map_entries_once_a_lane() -> None:
    """At M = 16 each warp's map entries (16 tile columns, 2 a warp) come in one load before
    its tile loop, a tile's by a shuffle; at M = 1 each tile loads its own in the loop (the
    faster there on the H100)."""
    program = stoicc_py.compile("layout H = hybrid(tile=[32, 64], formats=[dense, nm(2, 4)])\n"
                                "kernel h(x: f16[M, 1024], w: f16[64, 1024] @ H) -> f16[M, 64] { return linear(x, w) }",
                                target="gpu")  # fmt: skip
    for m, hoisted in ((16, True), (1, False)):
        ir = gemv_ir(program.kernel("h").schedule(m))
        before, loop = ir.split("\nloop", 1)  # the tile loop's head, and what follows
        assert (before.count("ptr addrspace(1) %map,"), loop.count("ptr addrspace(1) %map,")) == (hoisted, not hoisted)
        assert ("@llvm.nvvm.shfl.sync.idx.i32(i32 -1" in loop) == hoisted


@pytest.mark.parametrize("name", ["dense", "sparse_bf16", "hybrid"])
def test_the_staged_variants_are_ptx_within_shared_memory(program: Any, name: str) -> None:
    """benchmarks/gpu_staged.py's variants: 8-warp blocks, 4 stages, grouped launch order,
    fragments read across k-tiles; the default (config_for) is the fastest measured: 8 warps
    past WIDE_M rows, but 4 for hybrid weights."""
    k, wide = program.kernel(name), StagedConfig(4, 16, True, WIDE_M)
    assert staged_warps(WIDE_M, wide) == 4 and staged_warps(WIDE_M + 1, wide) == 8 == staged_warps(1000, wide)
    assert k.schedule(1000).warps == (4 if name == "hybrid" else 8) and k.schedule(WIDE_M).warps == 4
    spec = replace(k.spec, warps=8, warp_rows=4, cols=8, schedule="staged")
    assert spec.block_cols == 256 and spec.grid(300)[1] == 2
    assert shared_bytes(spec, wide) == 4 * (128 * 144 + 256 * 144 + 1024) <= 227 * 1024  # the device's most
    ptx = emit_ptx(staged_ir(spec, wide))
    assert ".maxntid 256" in ptx and "%nctaid.y" in ptx  # 8 warps; the groups read the grid
    assert set(re.findall(r"\bmma\S*", ptx)) == INSTRUCTIONS[name]
    # one barrier before the loop, one in each format's k-tile (and an empty hybrid tile's), or
    # more where LLVM copies a block that holds one into both paths of a branch (the copies' edge path)
    assert ptx.count("bar.sync") >= 1 + len(INSTRUCTIONS[name]) + (name == "hybrid")


WGMMA = StagedConfig(4, 16, wide_m=WIDE_M, wgmma=True)


@pytest.mark.parametrize(("name", "warps"), [("dense", 8), ("dense", 4), ("dense_bf16", 8)])
def test_the_wgmma_variant_is_sm_90a_ptx_of_fenced_warpgroup_mma(program: Any, name: str, warps: int) -> None:
    """StagedConfig.wgmma: m64nNk16 from descriptors (N the block's rows of x), 4 k-steps
    a k-tile per 64-row slice, one commit and one wait a k-tile (wait 1: one group left
    running) and wait 0 after the loop; the cp.async stages fenced to the async proxy
    before the barrier; the descriptors' 128-byte swizzle, stride 1024, leading 16. (K long
    enough that LLVM keeps the k-tile loop: one k-tile's instructions in the PTX.)"""
    k = program.kernel(name)
    spec = replace(k.spec, k=4096, warps=warps, warp_rows=4, cols=8, schedule="staged")
    assert staged_arch(spec, WGMMA) == "sm_90a" == staged_arch(spec) and staged_arch(spec, StagedConfig()) == "sm_90"
    assert shared_bytes(spec, WGMMA) == 4 * (128 + spec.block_cols) * 128 + 1024 <= 227 * 1024
    ptx = emit_ptx(staged_ir(spec, WGMMA), arch="sm_90a")
    assert ".target sm_90a" in ptx and f".maxntid {32 * warps}" in ptx
    ty = k.spec.dtype
    assert set(re.findall(r"\bwgmma\.mma_async\S*", ptx)) == {
        f"wgmma.mma_async.sync.aligned.m64n{spec.block_cols}k16.f32.{ty}.{ty}"
    }
    assert (
        ptx.count("wgmma.mma_async") == 4 * 128 // 64 // (warps // 4)
        and "mma.sync" not in ptx
        and "ldmatrix" not in ptx
    )
    at = ptx.index("cp.async.wait_group")
    loop = ptx[at:] + ptx[:at]  # from the k-loop's wait on, in the loop's order (LLVM may rotate the loop)
    assert loop.index("fence.proxy.async.shared::cta") < loop.index("bar.sync") < loop.index("wgmma.fence.sync.aligned")
    assert loop.index("wgmma.commit_group.sync.aligned") < loop.index("wgmma.wait_group.sync.aligned 1")
    assert ptx.count("wgmma.wait_group.sync.aligned 0") == 1 and ".local" not in ptx
    assert str(1 << 62 | (1024 >> 4) << 32 | (16 >> 4) << 16) in ptx  # the descriptor's constant bits
    assert ptx.count("xor.b32") >= 1  # the swizzled copies


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="no ptxas")
def test_ptxas_keeps_the_wgmma_pipeline_without_spills(program: Any, tmp_path: Path) -> None:
    """The wgmma variant assembles for sm_90a with no stack, and no serialization of the
    wgmma pipeline (ptxas warns C7515 where registers used in flight make it serialize)."""
    spec = replace(program.kernel("dense").spec, warps=8, warp_rows=4, cols=8, schedule="staged")
    (tmp_path / "k.ptx").write_text(emit_ptx(staged_ir(spec, WGMMA), arch="sm_90a"))
    done = subprocess.run(["ptxas", "-arch=sm_90a", "-v", str(tmp_path / "k.ptx"), "-o", str(tmp_path / "k.cubin")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    report = done.stdout + done.stderr
    assert "0 bytes stack frame" in report and "C75" not in report and "arning" not in report


@pytest.mark.parametrize(("name", "warps"), [("sparse", 8), ("sparse_bf16", 4), ("hybrid", 4), ("hybrid", 8)])
def test_the_wgmma_variant_runs_2_4_tiles_through_wgmma_sp(program: Any, name: str, warps: int) -> None:
    """2:4 weights and tiles: m64nNk32 wgmma.sp from descriptors (A the 64 x 16 stored
    values, 64-byte rows swizzled by 64 bytes: layout type 2, stride 512), the metadata a
    register read from the stage before the k-tile's fence, sparsity selector 0; 2 k-steps a
    k-tile per 64-row slice. A hybrid k-tile switches between wgmma and wgmma.sp (128-byte
    rows for its dense tiles) within one commit group. The stages: 64-byte rows of 2:4
    values (128 for hybrid), x's 128, and the metadata (1024 bytes a stage); a hybrid
    weight's tile row of the tile map after them, read from there (no global load in the loop). The loop runs
    two k-tiles, each with metadata registers of its own: the running group's are not
    overwritten by the next k-tile's words (the H100 gave wrong sums where they were)."""
    k = program.kernel(name)
    spec = replace(k.spec, k=4096, warps=warps, warp_rows=4, cols=8, schedule="staged")
    if name == "hybrid":  # the staged schedule's tiles: a block in one tile row
        spec = replace(spec, tile=(128, 64))
    a_row = 64 if name.startswith("sparse") else 128
    tile_map = 4 * 4096 // 64 if name == "hybrid" else 0  # the block's tile row of the map, in shared memory
    assert shared_bytes(spec, WGMMA) == 4 * (128 * a_row + spec.block_cols * 128 + 1024) + 1024 + tile_map <= 227 * 1024
    ptx = emit_ptx(staged_ir(spec, WGMMA), arch="sm_90a")
    ty, n = k.spec.dtype, spec.block_cols
    sparse = f"wgmma.mma_async.sp.sync.aligned.m64n{n}k32.f32.{ty}.{ty}"
    dense = {f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ty}.{ty}"} if name == "hybrid" else set()
    assert ".target sm_90a" in ptx and set(re.findall(r"\bwgmma\.mma_async\S*", ptx)) == {sparse, *dense}
    slices = 128 // 64 // (warps // 4)
    assert ptx.count("wgmma.mma_async.sp") == 2 * 2 * slices and "mma.sp::" not in ptx and "ldmatrix" not in ptx
    metas = re.findall(r"wgmma\.mma_async\.sp\S* \{[^}]*\}, %rd\d+, %rd\d+, (%r\d+), 0, 1, 1, 1, 0, 0;", ptx)
    assert len(metas) == len(set(metas)) == 2 * 2 * slices
    assert str((2 << 62 | (512 >> 4) << 32 | (16 >> 4) << 16) - (1 << 64)) in ptx  # the descriptor (signed in PTX)
    before = ptx[: ptx.index("wgmma.mma_async.sp")]
    fence = before.rindex("wgmma.fence.sync.aligned")
    assert re.search(r"ld\.shared\.b32\s[^\n]*\n\s*wgmma\.fence", before[fence - 200 : fence + 30])  # metadata, fence
    # a commit a k-tile, in each format's branch and an empty tile's (hybrid), two k-tiles an iteration
    commits = 2 * (3 if name == "hybrid" else 1)
    assert ptx.count("wgmma.commit_group.sync.aligned") == commits and ptx.count("wgmma.wait_group.sync.aligned 1") == 2
    assert ".local" not in ptx
    if name == "hybrid":  # the map's entries loaded once, before the loop; its k-tiles switch on shared words
        assert "ld.global" not in ptx[ptx.index("cp.async") : ptx.index("wgmma.wait_group.sync.aligned 0")]


CLUSTER = StagedConfig(5, 16, wide_m=WIDE_M, wgmma=True, cluster=2)


@pytest.mark.parametrize(
    ("name", "warps", "cluster"),
    [("sparse", 8, 2), ("sparse_bf16", 4, 2), ("dense", 8, 2), ("hybrid", 8, 2), ("sparse", 8, 4), ("dense", 8, 4)],
)
def test_a_cluster_multicasts_x_by_tma(program: Any, name: str, warps: int, cluster: int) -> None:
    """StagedConfig.cluster = 2 or 4: a kernel of clusters of that many blocks
    (.reqnctapercluster) and x's tensor map by value in the parameter space; thread 0 of
    each block loads its share of x's k-tile by TMA, multicast to every block of the
    cluster, completing on the stage's mbarrier (initialised once a stage, expecting the
    whole k-tile's bytes), which every thread waits on before the k-tile's wgmma; x is not
    copied by cp.async (the weight is); a cluster barrier an iteration, its arrivals relaxed
    (a release waited for the copies in flight); the launch rounded up to whole clusters;
    shared memory: an mbarrier a stage."""
    k = program.kernel(name)
    spec = replace(k.spec, k=4096, warps=warps, warp_rows=4, cols=8, schedule="staged")
    config = replace(CLUSTER, stages=4 if name != "sparse" else 5, cluster=cluster)
    if name == "hybrid":
        spec = replace(spec, tile=(128, 64))
    plain = replace(config, cluster=1)
    assert shared_bytes(spec, config) == shared_bytes(spec, plain) + 8 * config.stages <= 227 * 1024
    assert multicast_box(spec, config) == (spec.block_cols // cluster, 64) and multicast_box(spec, plain) is None
    rows = -(-300 // spec.block_cols)  # N = 40: one block of weight rows, and idle ones to make a cluster
    assert staged_grid(spec, 300, config) == (cluster, rows, 1) and staged_grid(spec, 300, plain) == (1, rows, 1)
    ptx, before = emit_ptx(staged_ir(spec, config), arch="sm_90a"), emit_ptx(staged_ir(spec, plain), arch="sm_90a")
    assert f".explicitcluster\n.reqnctapercluster {cluster}, 1, 1" in ptx and "cluster" not in before
    assert re.search(rf"\.param \.align 64 \.b8 {k.name}_param_\d+\[128\]", ptx)
    assert ptx.count("mbarrier.init.shared::cta.b64") == config.stages
    copies = re.findall(r"cp\.async\.bulk\.tensor\.2d\.shared::cluster\.global\.mbarrier::complete_tx::bytes"
                        r"\.multicast::cluster \[%r\d+\], \[%rd\d+, \{%r\d+, %r\d+\}\], \[%r\d+\], (%rs\d+);", ptx)  # fmt: skip
    # each copy's mask register holds every block of the cluster
    assert all(re.search(rf"mov\.b16\s+{mask}, {(1 << cluster) - 1};", ptx) for mask in copies)
    loop = ptx[ptx.index("bar.sync") :]
    assert len(copies) >= 2 and "mbarrier.arrive.expect_tx" in loop and "mbarrier.try_wait.parity" in loop
    if name != "hybrid":  # (its blocks are laid out in another order)
        assert loop.index("mbarrier.try_wait.parity") < loop.index("wgmma.fence.sync.aligned")
    assert "barrier.cluster.arrive.relaxed.aligned" in loop and "barrier.cluster.wait.aligned" in loop
    assert "barrier.cluster.arrive;" not in ptx and ".local" not in ptx
    # per k-tile, the copies of x (256 rows x 8 chunks; 128 for 4 warps) are gone, the weight's remain
    assert before.count("cp.async.cg.shared.global") - ptx.count("cp.async.cg.shared.global") >= spec.block_cols // 16


def test_a_cluster_loads_2_4_values_by_tma_where_the_config_says(program: Any) -> None:
    """StagedConfig.tma_w: thread 0 loads the block's k-tile of the 2:4 values (a box of its
    128 rows x 32 stored values, the values' own tensor map, a second by-value parameter)
    into the stage by TMA, not multicast, completing on the stage's mbarrier, which expects
    x's k-tile and those 8 KB; every thread's cp.async of the values is gone, the metadata's
    remain. Only for 2:4 weights through wgmma in clusters (elsewhere a ValueError where it is built)."""
    spec = replace(program.kernel("sparse").spec, k=4096, warps=8, warp_rows=4, cols=8, schedule="staged")
    config = replace(CLUSTER, tma_w=True)
    assert values_box(spec, config) == (128, 32) and values_box(spec, CLUSTER) is None
    ptx, before = emit_ptx(staged_ir(spec, config), arch="sm_90a"), emit_ptx(staged_ir(spec, CLUSTER), arch="sm_90a")
    assert len(re.findall(rf"\.param \.align 64 \.b8 {spec.name}_param_\d+\[128\]", ptx)) == 2
    own = re.findall(r"cp\.async\.bulk\.tensor\.2d\.shared::cluster\.global\.mbarrier::complete_tx::bytes "
                     r"\[%r\d+\], \[%rd\d+, \{%r\d+, %r\d+\}\], \[%r\d+\];", ptx)  # fmt: skip
    assert own and not re.search(r"complete_tx::bytes \[[^\n]*\];", before)
    x_bytes = spec.block_cols * 128  # the bytes each stage's mbarrier expects, in the register its arrival names
    expected = re.findall(r"mbarrier\.arrive\.expect_tx\.shared::cta\.b64 _, \[%r\d+\], (%r\d+);", ptx)
    assert expected and all(re.search(rf"mov\.b32\s+{r}, {x_bytes + 128 * 64};", ptx) for r in expected)
    assert re.search(rf"mov\.b32\s+%r\d+, {x_bytes};", before)
    # the values' copies (128 rows x 4 chunks over 256 threads: 2 a k-tile, each with its edge path) are gone
    assert before.count("cp.async.cg.shared.global") > ptx.count("cp.async.cg.shared.global") > 0
    dense = (replace(spec, weight="dense"), replace(config, stages=4))
    mma_sync = replace(config, wgmma=False, cluster=1)  # it would skip the values' copies and never load them
    for other in (dense, (spec, replace(config, cluster=1)), (spec, mma_sync)):
        with pytest.raises(ValueError, match="by TMA only"):
            staged_ir(*other)


def test_2_4_and_hybrid_calls_past_512_rows_run_in_clusters(program: Any) -> None:
    spec = replace(program.kernel("sparse").spec, warps=8, warp_rows=4, cols=8, schedule="staged")
    assert config_for(spec).cluster == 2 and config_for(replace(spec, warps=4)).cluster == 1
    assert config_for(replace(spec, weight="dense")).cluster == 1
    hybrid = replace(program.kernel("hybrid").spec, tile=(128, 64), warps=8, warp_rows=4, cols=8, schedule="staged")
    assert config_for(hybrid).cluster == 2 and config_for(hybrid).stages == 4  # its stage holds a dense k-tile
    assert shared_bytes(hybrid) <= 227 * 1024


@pytest.mark.parametrize("config", [WGMMA, StagedConfig(4, 16, True, WIDE_M)])
def test_a_copy_past_an_edge_reads_nothing_from_inside_its_buffer(program: Any, config: StagedConfig) -> None:
    """A k-tile slice that crosses an edge of x or w (or lies past it) takes the copies' edge
    path: each copy outside its buffer is a cp.async of source size 0 from the buffer's first
    element (an address past the allocation's pages faulted on the H100 even so); a slice
    inside both takes whole copies at immediate offsets from one pointer."""
    spec = replace(program.kernel("sparse").spec, k=4096, warps=4, warp_rows=4, cols=8, schedule="staged")
    ir = staged_ir(spec, config)
    for base in ("%x", "%values"):
        assert re.search(rf"select i1 %\S+, ptr addrspace\(1\) %\S+, ptr addrspace\(1\) {base}\n", ir), base
    whole = re.search(r"\ncopy\.whole\d+:(.*?)\ncopy\.whole\.else\d+:", ir, re.S)[1]  # type: ignore[index]
    assert "select" not in whole and whole.count("cp.async.cg.shared.global.16.s") == whole.count(", i32 16)")


def test_split_k_fills_the_multiprocessors_where_the_blocks_do_not(program: Any) -> None:
    """k_splits: 4096^2 at 128 rows is 32 blocks of 128 x 128: 4 splits of 16 k-tiles;
    at 512 rows, 128 blocks fill the H100: none; never in clusters; never an empty split
    (2:4's even k-tile counts: 17 k-tiles of 2:4 in 2 splits of 10, not 9)."""
    dense = replace(program.kernel("dense").spec, n=4096, k=4096, warp_rows=4, cols=8, schedule="staged")
    assert [k_splits(dense, m, WGMMA) for m in (128, 512, 2048)] == [4, 1, 1]
    assert k_splits(dense, 128, CLUSTER) == 1 and k_splits(dense, 128, StagedConfig(4)) == 1
    assert k_splits(replace(dense, k=8 * 64 * 2 - 64), 128, WGMMA) == 1  # 15 k-tiles: one split's worth
    sparse = replace(dense, weight="nm24", k=17 * 64)
    assert loop_tiles(sparse, 2) == 10 and loop_tiles(replace(sparse, weight="dense"), 2) == 9
    for k in (16 * 64, 17 * 64, 131 * 64 - 16, 4096):
        for spec in (replace(sparse, k=k), replace(dense, k=k)):
            splits = k_splits(spec, 33, WGMMA)
            assert (splits - 1) * loop_tiles(spec, splits) < -(-k // 64) <= splits * loop_tiles(spec, splits)


@pytest.mark.parametrize("name", ["dense", "sparse", "hybrid"])
def test_split_k_blocks_add_their_sums_in_the_order_of_their_splits(
    program: Any, name: str, tmp_path: Path
) -> None:
    """A split's block runs its own k-tiles (from %ctaid.z's), then waits (thread 0, an
    acquire at GPU scope) for the tile's flag to count the splits before it, adds their sums
    from the workspace (ld.global.cg, past L1), and stores its own there (st.global.cg) and
    sets the flag after a fence, or, the last split, resets the flag and stores y; no
    spills (ptxas), and in the SASS no wgmma.sp metadata register written under its group."""
    spec = replace(program.kernel(name).spec, k=4096, warps=4, warp_rows=4, cols=8, schedule="staged")
    if name == "hybrid":
        spec = replace(spec, tile=(128, 64))
    split = replace(spec, k_splits=4)
    assert split.params[-2:] == ("work", "flags") and split.grid(300)[2] == 4
    ptx, whole = emit_ptx(staged_ir(split, WGMMA), arch="sm_90a"), emit_ptx(staged_ir(spec, WGMMA), arch="sm_90a")
    assert "%ctaid.z" in ptx and "%ctaid.z" not in whole and "ld.acquire" not in whole
    tail = ptx[ptx.index("wgmma.wait_group.sync.aligned 0") :]
    for step in ("ld.acquire.gpu.global.u32", "bar.sync", "ld.global.cg.v4.f32", "st.global.cg.v4.f32",
                 "fence.acq_rel.gpu", "st.relaxed.gpu.global.u32"):  # fmt: skip
        assert step in tail, step
    assert tail.index("ld.acquire.gpu") < tail.index("ld.global.cg") < tail.index("st.global.cg") < tail.index("fence")
    assert tail.count("ld.global.cg.v4.f32") == tail.count("st.global.cg.v4.f32") == 128 * 128 // 128 // 4
    with pytest.raises(ValueError, match="split-K"):
        staged_ir(split, CLUSTER)
    if shutil.which("ptxas") is None or shutil.which("cuobjdump") is None:
        pytest.skip("no ptxas/cuobjdump")
    (tmp_path / "k.ptx").write_text(ptx)
    done = subprocess.run(["ptxas", "-arch=sm_90a", "-v", str(tmp_path / "k.ptx"), "-o", str(tmp_path / "k.cubin")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    report = done.stdout + done.stderr
    assert "0 bytes stack frame" in report and ("C75" not in report or name == "hybrid")  # its C7519s: unsplit too
    sass = subprocess.run(["cuobjdump", "-sass", str(tmp_path / "k.cubin")], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    assert metadata_hazards(sass) == []


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="no ptxas")
@pytest.mark.parametrize(("name", "config"), [("sparse", WGMMA), ("sparse_bf16", WGMMA), ("sparse", CLUSTER)])
def test_ptxas_keeps_the_wgmma_sp_pipeline_without_spills(
    program: Any, name: str, config: StagedConfig, tmp_path: Path
) -> None:
    """wgmma.sp's metadata registers, read before the fence, need no warpgroup.arrive
    between the k-tile's wgmma (ptxas injects one where a register is written among them)."""
    spec = replace(program.kernel(name).spec, k=4096, warps=8, warp_rows=4, cols=8, schedule="staged")
    (tmp_path / "k.ptx").write_text(emit_ptx(staged_ir(spec, config), arch="sm_90a"))
    done = subprocess.run(["ptxas", "-arch=sm_90a", "-v", str(tmp_path / "k.ptx"), "-o", str(tmp_path / "k.cubin")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    report = done.stdout + done.stderr
    assert "0 bytes stack frame" in report and "C75" not in report and "arning" not in report


@pytest.mark.skipif(shutil.which("ptxas") is None or shutil.which("cuobjdump") is None, reason="no ptxas/cuobjdump")
@pytest.mark.parametrize(("name", "warps", "k"), [("sparse", 8, 4096), ("sparse_bf16", 4, 4096), ("sparse", 8, 4160),
                                                  ("hybrid", 4, 4096), ("hybrid", 8, 4096), ("hybrid", 4, 4160),
                                                  ("hybrid", 8, 1040), ("sparse_bf16", 4, 400)])  # fmt: skip
@pytest.mark.parametrize("cluster", [1, 2])
def test_no_wgmma_sp_metadata_register_is_overwritten_under_its_group(
    program: Any, name: str, warps: int, k: int, cluster: int, tmp_path: Path
) -> None:
    """The SASS ptxas makes of the 2:4 and hybrid wgmma kernels (an odd number of k-tiles
    too: a last k-tile after the loop had its words loaded into the running group's registers;
    in clusters of 2 too) writes no metadata register of a running HGMMA.SP (backends/gpu/sass.py),
    and ptxas does not serialize the wgmma (C7513, where it had to for pure 2:4 there)."""
    spec = replace(program.kernel(name).spec, k=k, warps=warps, warp_rows=4, cols=8, schedule="staged")
    if name == "hybrid":
        spec = replace(spec, tile=(128, 128))
    config = replace(WGMMA, cluster=cluster)
    (tmp_path / "k.ptx").write_text(emit_ptx(staged_ir(spec, config), arch="sm_90a"))
    done = subprocess.run(["ptxas", "-arch=sm_90a", "-v", str(tmp_path / "k.ptx"), "-o", str(tmp_path / "k.cubin")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    sass = subprocess.run(["cuobjdump", "-sass", str(tmp_path / "k.cubin")], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    assert "HGMMA.SP" in sass and metadata_hazards(sass) == [] and "C7513" not in done.stdout + done.stderr


SASS = """
        /*0100*/                   LDS R10, [R2] ;
        /*0110*/                   HGMMA.SP.64x256x32.F32 R24, gdesc[UR4], R24, R10, 0x0, gsb0 ;
        /*0120*/                   WARPGROUP.DEPBAR.LE gsb0, 0x1 ;
        /*0130*/               @P0 IMAD.WIDE.U32 R9, R3, 0x4, R4 ;
        /*0140*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;
        /*0150*/                   LDS R10, [R2+0x40] ;
        /*0160*/                   HGMMA.SP.64x256x32.F32 R24, gdesc[UR4], R24, R10, 0x0, gsb0 ;
        /*0170*/                   ISETP.NE.AND P0, PT, R10, RZ, PT ;
        /*0180*/                   WARPGROUP.DEPBAR.LE gsb0, 0x1 ;
        /*0190*/                   MOV R11, R3 ;
        /*01a0*/               @P1 BRA 0x150 ;
"""


def test_the_metadata_check_finds_writes_under_a_running_group() -> None:
    """A wide write reaching the metadata register before the wait, and the loop's next
    load of it with its group still running (around the backward branch); not a predicate
    set from it, nor a write after a wait for every group."""
    assert metadata_hazards(SASS) == ["0130: IMAD.WIDE.U32 R9, R3, 0x4, R4", "0150: LDS R10, [R2+0x40]"]
    assert metadata_hazards(SASS.replace("gsb0, 0x1 ;\n        /*0190*/", "gsb0, 0x0 ;\n        /*0190*/")) == [
        "0130: IMAD.WIDE.U32 R9, R3, 0x4, R4"
    ]


def test_the_wgmma_variant_refuses_what_it_does_not_run(program: Any) -> None:
    spec = replace(program.kernel("sparse_bf16").spec, warps=8, warp_rows=4, cols=8, schedule="staged")
    with pytest.raises(ValueError, match="64 weight rows a warpgroup"):
        staged_ir(replace(spec, warp_rows=1), WGMMA)
    with pytest.raises(ValueError, match="stages"):
        staged_ir(spec, StagedConfig(2, wgmma=True))
    with pytest.raises(ValueError, match="one tile row"):
        staged_ir(replace(program.kernel("hybrid").spec, warps=8, warp_rows=4, cols=8, schedule="staged"), WGMMA)
    with pytest.raises(ValueError, match="clusters of 1, 2 or 4"):
        staged_ir(spec, replace(WGMMA, cluster=3))
    with pytest.raises(ValueError, match="whole in the launch's groups"):
        staged_ir(spec, replace(WGMMA, cluster=4, group=6))
    dense = replace(program.kernel("dense").spec, k=4096, warps=8, warp_rows=4, cols=8, schedule="staged")
    with pytest.raises(ValueError, match="5 stages take .* bytes of shared memory, more than a block may have"):
        staged_ir(dense, replace(WGMMA, stages=5))  # 5 x 48 KB: the device refused it (CUDA_ERROR_INVALID_VALUE)


def test_the_parameters_follow_the_product_not_the_signature(program: Any) -> None:
    k = program.dense_bf16
    assert (k.operands.x, k.operands.w, k.operands.bias) == (1, 0, None)
    assert k.spec.params == ("x", "w", "y") and (k.spec.n, k.spec.k) == (33, 40)
    assert program.sparse_bf16.spec.params == ("x", "values", "meta", "bias", "y")


def test_gpu_tile_records_the_block_tiles(program: Any) -> None:
    assert "tile = array<i64: 32, 128, 16>" in str(program.dense.opt)
    assert "tile = array<i64: 32, 128, 32>" in str(program.sparse.opt)
    small = stoicc_py.compile(GPU_SOURCE, target="gpu", tile=[8, 64])
    assert (small.dense.spec.cols, small.dense.spec.warp_rows) == (1, 1)
    with pytest.raises(stoicc_py.CompileError, match=r"GPU tiles are \[tm, tn\]"):
        stoicc_py.compile(GPU_SOURCE, target="gpu", tile=[12, 64])


@pytest.mark.parametrize("source, message", SIMT_KERNELS)
def test_what_the_tensor_cores_do_not_run_takes_the_simt_path_with_the_reason(source: str, message: str) -> None:
    k = stoicc_py.compile(source, target="gpu").kernel("f")
    assert isinstance(k, SimtKernel) and re.search(message, k.reason)
    assert "gpu.simt" in str(k.opt) and "ptx_kernel" in k.llvm_ir()


def test_stoicc_compile_emits_ptx(tmp_path: Any, capsys: Any) -> None:
    path = tmp_path / "k.tdsl"
    path.write_text(GPU_SOURCE)
    assert main(["compile", str(path), "--target", "gpu", "--emit", "ptx", "--kernel", "sparse"]) == 0
    assert MMA["sparse"] in capsys.readouterr().out
    assert main(["compile", str(path), "--target", "gpu", "--emit", "llvm", "--kernel", "dense"]) == 0
    assert "@llvm.nvvm.mma.m16n8k16.row.col.f32.f32" in capsys.readouterr().out
    assert main(["compile", str(path), "--emit", "ptx"]) == 1
    assert "add --target gpu" in capsys.readouterr().err


def dequantized(spec: Any, codes: Array, scales: Array) -> Array:
    """int4/int8 codes (two's complement, int4 two to a byte, low nibble first) times the
    scale of their group, as the kernel dequantises them."""
    if spec.weight == "int4":
        low, high = (codes << 4).astype(np.int8) >> 4, codes >> 4
        codes = np.stack([low, high], axis=-1).reshape(codes.shape[0], -1)
    full = np.repeat(scales.astype(np.float64), spec.group, axis=1)[:, : spec.k]
    return codes.astype(np.float64) * full


class FakeDevice:
    """The driver's memory and launches on the host: a launch runs a numpy model of the
    kernel on the buffers its pointers name (the metadata read as mma.sp reads it), so
    that a call's packing, uploads, argument order, grid and copy back are checked here."""

    def __init__(self, program: Any):
        self.program, self.memory, self.launches, self.shared = program, {}, [], []
        device = self

        class Buffer:
            def __init__(self, nbytes: int):
                self.data = np.zeros(max(nbytes, 1), np.uint8)
                self.ptr = self.data.ctypes.data
                device.memory[self.ptr] = self.data

            @classmethod
            def of(cls, host: Array) -> Any:
                buffer = cls(host.nbytes)
                buffer.data[: host.nbytes] = np.ascontiguousarray(host).reshape(-1).view(np.uint8)
                return buffer

            def to_host(self, out: Array) -> Array:
                out.reshape(-1).view(np.uint8)[:] = self.data[: out.nbytes]
                return out

            def __del__(self) -> None:  # freed: a launch that still names it finds no memory there
                device.memory.pop(self.ptr, None)

        class Module:
            def __init__(self, ptx: str):
                assert ".visible .entry" in ptx

            def function(self, name: str) -> str:
                return name

        self.Buffer, self.Module = Buffer, Module

    def array(self, ptr: int, shape: tuple[int, ...], dtype: Any) -> Array:
        return self.memory[ptr][: int(np.prod(shape)) * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    def hybrid_arrays(self, spec: Any, at: dict[str, int]) -> dict[str, Array]:
        (th, tw), (tile_rows, tile_cols) = spec.tile, spec.tile_grid
        arrays = {"map": self.array(at["map"], (tile_rows * tile_cols,), np.int32)}
        for f, format in enumerate(spec.tile_formats):
            shape = (th, tw // 2 if format == "nm24" else tw)
            tiles = self.memory[at[f"values{f}"]].size // (2 * th * shape[1])
            arrays[f"values{f}"] = self.array(at[f"values{f}"], (tiles, *shape), NUMPY_DTYPES[spec.dtype])
            if format == "nm24":
                arrays[f"meta{f}"] = self.array(at[f"meta{f}"], (tiles, th // 16, tw // 32, 8, 2), np.uint32)
        return arrays

    def allow_shared(self, function: str, nbytes: int) -> None:
        self.shared.append(nbytes)

    def tensor_map(self, ptr: int, dtype: str, shape: tuple[int, int], box: tuple[int, int]) -> Any:
        return ("tensor map", ptr, dtype, shape, box)

    def launch(self, function: str, grid: tuple[int, int, int], block: int, pointers: list[int], m: int,
               shared: int, maps: tuple[Any, ...] = ()) -> None:  # fmt: skip
        spec = self.program.kernel(function).schedule(m, all(p % 16 == 0 for p in pointers))
        staged = spec.schedule == "staged"
        config = config_for(spec) if staged else None
        assert grid == (staged_grid(spec, m, config) if config else spec.grid(m))
        assert block == spec.threads and (shared > 0) == staged
        self.launches.append(spec)
        n, k, dtype = spec.n, spec.k, NUMPY_DTYPES[spec.dtype]
        at = dict(zip(spec.params, pointers, strict=True))
        box = multicast_box(spec, config) if config else None  # x's tensor map, where the cluster multicasts it
        assert maps == ((("tensor map", at["x"], spec.dtype, (m, k), box),) if box else ())
        if spec.k_splits > 1:  # split-K's workspace (a tile's f32 sums each) and flags, which launches leave at 0
            tiles = grid[0] * grid[1]
            assert self.memory[at["work"]].size == 4 * tiles * spec.block_rows * spec.block_cols
            assert not self.array(at["flags"], (tiles,), np.int32).any()
        x = self.array(at["x"], (m, k), dtype).astype(np.float64)
        if spec.weight == "nm24":
            meta = self.array(at["meta"], (-(-n // 16), -(-k // 32), 8, 2), np.uint32)
            w = as_mma_sp_reads(meta, self.array(at["values"], (n, k // 2), dtype), n, k).astype(np.float64)
        elif spec.weight == "hybrid":
            w = read_hybrid(spec, self.hybrid_arrays(spec, at))
        elif spec.weight in ("int4", "int8"):
            groups = -(-k // spec.group)
            codes = self.array(at["values"], (n, k // 2 if spec.weight == "int4" else k), np.int8)
            scales = self.array(at["scales"], (n, groups), NUMPY_DTYPES[spec.scale_type])
            w = dequantized(spec, codes, scales)
        else:
            w = self.array(at["w"], (n, k), dtype).astype(np.float64)
        y = x @ w.T + (self.array(at["bias"], (n,), dtype).astype(np.float64) if spec.bias else 0)
        self.array(at["y"], (m, n), dtype)[:] = np.maximum(y, 0) if spec.act == "relu" else y


def fake_device(program: Any, monkeypatch: Any) -> FakeDevice:
    """A FakeDevice in the driver's place (and split-K's scratch its own, not kept for a real device)."""
    device = FakeDevice(program)
    for attr in ("Buffer", "Module", "launch", "allow_shared", "tensor_map"):
        monkeypatch.setattr(driver, attr, getattr(device, attr))
    monkeypatch.setattr(gpu, "split_scratch", cache(gpu.split_scratch.__wrapped__))
    return device


@pytest.mark.parametrize("name", list(INSTRUCTIONS))
def test_a_call_uploads_launches_and_copies_back_in_the_kernels_order(
    program: Any, name: str, monkeypatch: Any
) -> None:
    device = fake_device(program, monkeypatch)
    k = program.kernel(name)
    rng = np.random.default_rng(3)
    for m in (5, 37, 600):
        args = []
        for p in k.abi.params:
            a = rng.standard_normal([m if d == "M" else d for d in p.dims]).astype(np.float32)
            if p.layout.startswith("hybrid"):
                a = hybrid_weight(rng, *a.shape, k.spec.tile)
            elif p.layout != "dense":
                a = NMCodec(2, 4, a.shape[1]).prune(a)
            args.append(a.astype(NUMPY_DTYPES[p.dtype]))
        got = k(*args)
        want = k.reference(*args)
        assert got.dtype == want.dtype and got.shape == want.shape
        scale = float(np.max(np.abs(want.astype(np.float64))))
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), atol=2e-2 * scale)
    # GEMV, staged (rows of 16-byte multiples) or direct (small-batch, then large) schedules
    assert [(s.schedule, s.cols) for s in device.launches] == SCHEDULES[name]
    if SCHEDULES[name][1][0] == "staged":
        # wgmma's 6 stages of w (2:4: 64-byte rows and the metadata) and x (128 x 128 blocks), and the alignment
        stage = 128 * 128 * 2 if k.spec.weight == "dense" else 128 * 64 + 128 * 128 + 1024
        # then 8-warp blocks (128 x 256) of 4 stages, or 5 of 2:4 and an mbarrier each (x multicast)
        wide = 4 * (128 * 128 + 256 * 128) if k.spec.weight == "dense" else 5 * (128 * 64 + 256 * 128 + 1024 + 8)
        assert device.shared == [0, 6 * stage + 1024, wide + 1024]


def test_a_call_of_few_blocks_splits_k_with_one_scratch_for_its_size(monkeypatch: Any) -> None:
    program = stoicc_py.compile("kernel long(x: f16[M, 2120], w: f16[24, 2120]) -> f16[M, 24] { return linear(x, w) }",
                                target="gpu")  # fmt: skip
    device, k = fake_device(program, monkeypatch), program.long
    rng = np.random.default_rng(4)
    w = rng.standard_normal((24, 2120)).astype(np.float16)
    for m in (37, 130, 37):
        x = rng.standard_normal((m, 2120)).astype(np.float16)
        np.testing.assert_allclose(k(x, w).astype(np.float64), k.reference(x, w).astype(np.float64), atol=0.05)
    assert [s.k_splits for s in device.launches] == [4, 4, 4]  # 34 k-tiles in 4 splits (9, 9, 9, 7)
    assert gpu.split_scratch.cache_info().currsize == 2  # (1 tile), (2 tiles) of 128 x 128 sums


EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.tdsl"))
TENSOR_CORE_EXAMPLES = {"gpu.tdsl"}  # every kernel of the others takes the SIMT path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_compiles_to_ptx(path: Path) -> None:
    program = stoicc_py.compile(path, target="gpu")
    for k in program.kernels.values():
        assert isinstance(k, GpuKernel if path.name in TENSOR_CORE_EXAMPLES else SimtKernel), k.name
        ptx = k.ptx()
        assert f".entry {k.abi.symbol if isinstance(k, SimtKernel) else k.name}(" in ptx
        externs = set(re.findall(r"\.extern \.func\s+(?:\([^)]*\)\s*)?(\w+)", ptx))
        assert externs <= {"malloc", "free"}


def test_a_simt_kernel_is_a_remark(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "k.tdsl"
    path.write_text(SIMT_KERNELS[1][0])
    assert main(["compile", str(path), "--target", "gpu", "--emit", "opt", "--remarks"]) == 0
    err = capsys.readouterr().err
    assert f"{path}:1:" in err and "runs on the GPU's generic SIMT path" in err and "gelu is not fused" in err
