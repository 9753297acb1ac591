"""The staged schedule (calls of more than 16 rows of x): block tiles of 128 weight rows
x 128 rows of x through shared memory, for dense, 2:4 and hybrid weights.

A block of 4 warps (2 x 2, each 64 weight rows x 64 rows of x: 4 x 8 mma tiles, 128
f32 accumulators a lane) walks K in k-tiles of 64 dense columns. Each k-tile's slices
of the weight (128 rows x 64 values, or 32 stored values and their mma.sp metadata
for 2:4) and of x (128 rows x 64) are copied to shared memory by `cp.async` (16 bytes
a copy, zero-filled past an edge of x or w: ragged M, N and K need no other path),
STAGES k-tiles in flight; the warps read their fragments with `ldmatrix` (rows padded
by 16 bytes: the 8 rows of an 8 x 8 matrix fall in distinct banks). The mma.sp
metadata is copied as packing/mma.py lays it out (16 words per 16 rows and k-step),
and each lane reads its word as the direct schedule does.

A hybrid weight's block lies in one tile row (th a multiple of 128) and each k-tile
in one tile (tw a multiple of 64): per k-tile, one load of the tile map and a switch,
uniform across the block, to that format's copies and instructions (an empty tile:
neither). Needs rows of 16-byte multiples: K a multiple of 8 (16 for 2:4), checked by
the caller, which takes the direct schedule otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from stoicc_py.backends.gpu.kernel import GemmSpec, _Gemm
from stoicc_py.backends.gpu.target import ARCH, ARCH_WGMMA, MMA_SPARSE
from stoicc_py.packing.mma import MAP_CODE_BITS

K_TILE = 64
BLOCK = 128
"""Weight rows per block (2 warps of 64); rows of x per block: 64 a warp along them."""
PAD = 16
ROW_BYTES = {"dense": 2 * K_TILE + PAD, "nm24": K_TILE + PAD, "x": 2 * K_TILE + PAD}
"""Bytes per row of a k-tile in shared memory: 64 (32 stored) 16-bit values and a pad."""
SWIZZLE_BYTES = 2 * K_TILE
"""A row of a wgmma stage: the k-tile's 64 16-bit values, unpadded, the 128-byte swizzle's
row (its 16-byte chunk c of row r at chunk c ^ (r % 8), as TMA's SWIZZLE_128B writes it)."""
SWIZZLE_ATOM = 8 * SWIZZLE_BYTES
"""8 rows, after which the swizzle repeats: the stages' alignment and the matrix descriptor's
stride between 8-row groups."""
DESCRIPTOR_OFFSETS = (16, SWIZZLE_ATOM)
"""The matrix descriptor's leading and stride byte offsets (PTX ISA, "Matrix Descriptor
Format"; the leading one is not used by a K-major operand swizzled by 128 bytes)."""
WGMMA_ROW_BYTES = {"dense": SWIZZLE_BYTES, "nm24": SWIZZLE_BYTES // 2, "x": SWIZZLE_BYTES}
"""A row of a wgmma stage per operand: a 2:4 k-tile's 32 stored values fill 64 bytes, which
the 64-byte swizzle takes (its 16-byte chunk c of row r at c ^ (r / 2 % 4): the address
bits 4-5 xor 7-8, as for 128 bytes bits 4-6 xor 7-9)."""
SWIZZLE_MODE = {SWIZZLE_BYTES: 1, SWIZZLE_BYTES // 2: 2}
"""The matrix descriptor's layout type (bits 62-63) per swizzled row width: 128 or 64 bytes."""
SPARSITY_SELECTOR = 0
"""wgmma.sp's (and mma.sp's) sparsity selector: lanes 4g and 4g + 1 of a quad give the
metadata (lanes 4g + 2 and 4g + 3 hold the same words: either selector reads them)."""
WGMMA_ROWS = 64
"""Weight rows of one wgmma (m64nNk16: N rows of x, the block's, 16 values of k; the
2:4 wgmma.sp: m64nNk32, 16 stored values)."""
MBARRIER_BYTES = 8
SHARED_LIMIT = 227 * 1024
"""Dynamic shared memory a block may have on sm_90."""
SM_COUNT = 132
"""The H100's (and H200's) multiprocessors, which split-K fills (k_splits)."""
MIN_SPLIT_TILES = 8
"""The fewest k-tiles a split of K takes: its pipeline's fill and its turn at the tile's
sum (sum_splits) cost about what a few k-tiles do."""
META_BYTES = (BLOCK // 16) * (K_TILE // MMA_SPARSE[2]) * 16 * 4
A_BYTES = BLOCK * ROW_BYTES["dense"]


@dataclass(frozen=True)
class StagedConfig:
    """How the staged kernel pipelines: k-tiles in flight, the launch order's groups of
    weight-row blocks (0: the launch's own order), and whether the first k-step's
    fragments of the next k-tile are read during the current one's last k-step."""

    stages: int = 3
    group: int = 0
    pipelined: bool = False
    wide_m: int | None = None
    """Calls of more rows than this take blocks of 8 warps (None: never)."""
    wgmma: bool = False
    """Hopper's wgmma (sm_90a) from swizzled stages instead of mma.sync: dense tiles through
    wgmma, 2:4 ones through wgmma.sp, instead of mma.sync and mma.sp from ldmatrix fragments."""
    wgmma_pending: int = 1
    """wgmma groups a warpgroup leaves running past its k-tile (0 or 1): with 1, the tensor
    cores overlap the next k-tile's wait and barrier, and the copies run a stage less ahead."""
    cluster: int = 1
    """Blocks of a cluster (wgmma: 1, 2 or 4), neighbours along the weight's rows that share
    their rows of x: with c > 1, each loads 1/c of x's k-tile by TMA and multicasts it to
    every block of the cluster (x's L2 traffic divided by c), instead of every block copying
    all of it by cp.async."""
    tma_w: bool = False
    """A 2:4 weight's values by TMA too (in clusters, where the stages have mbarriers): thread
    0 loads the block's k-tile of them as one box (64-byte swizzle, as wgmma.sp reads them),
    completing on the stage's mbarrier with x's, instead of every thread's cp.async of 16
    bytes, a warp's from 8 rows of 64 bytes (twice the shared-memory wavefronts of their
    bytes, by ncu: 9% of the kernel's)."""


WIDE_M = 128
"""Calls of more rows take 8-warp blocks where the config says so (wide_m)."""
WGMMA_WIDE_M = 512
"""The same for dense weights through wgmma (4 warps measured faster at M = 512, 8 at 2048)."""


def config_for(spec: GemmSpec) -> StagedConfig:
    """The variant measured fastest on the H100 (README): wgmma for every format, 4-warp
    blocks of 6 stages up to WGMMA_WIDE_M rows, 8-warp blocks past it (the spec's warps are
    the scheduled ones), one wgmma group in flight, launches in groups of 16. Dense
    (benchmarks/gpu_wgmma.py, 2026-12-07: 0.92-0.93x cuBLAS at M >= 2048, mma.sync's
    0.54-0.56x; 4096^2, M = 128: 24.1 µs, 8 warps 28.6; M = 512: 29.2 against 42.5-45.0):
    8-warp blocks of 4 stages, what fits. 2:4 through wgmma.sp (benchmarks/gpu_wgmma_sparse.py,
    2026-12-07, round 8: 4096^2, M = 128/512 21.4/25.3 µs on 4 warps, 35.0/31.2 on 8;
    M = 2048/4096 76.3/155.8 on 8 warps of 5 stages, 79.6/158.7 on 4; mma.sp 154.7/302.8):
    8-warp blocks of 5 stages in clusters of 2 that multicast x (round 9: 4096^2, M = 2048/4096
    76.5/155.8 -> 69.0/136.8 µs; 8192^2, M = 2048/8192 286.2/1198.3 -> 253.7/1017.7; on 4-warp
    blocks no faster: 21.7/25.3 at M = 128/512). Hybrid: its dense tiles through wgmma, its 2:4
    ones through wgmma.sp, 8-warp blocks of 4 stages (its stage holds a dense k-tile) in clusters
    of 2 (round 10, the tile map in shared memory: 4096^2, M = 2048/4096 86.1/177.8 -> 86.9/172.6
    µs, 8192^2, M = 2048/8192 343.0/1452.2 -> 331.7/1356.7; round 9, the map read from L2, had
    measured clusters slower: 85.6 -> 100.2 µs at 4096^2, M = 2048)."""
    if spec.warps == 4:
        return StagedConfig(6, 16, wide_m=WGMMA_WIDE_M, wgmma=True)
    if spec.weight == "nm24":
        return StagedConfig(5, 16, wide_m=WGMMA_WIDE_M, wgmma=True, cluster=2)
    return StagedConfig(4, 16, wide_m=WGMMA_WIDE_M, wgmma=True, cluster=2 if spec.weight == "hybrid" else 1)


def staged_warps(m: int, config: StagedConfig) -> int:
    """Warps a block of a call of m rows: 8 (2 x 4, 128 weight rows x 256 rows of x) share
    each k-tile of the weight in shared memory among twice the rows of x (a third less
    L2 traffic per product), where the call has the rows to fill them; else 4 (2 x 2)."""
    return 8 if config.wide_m is not None and m > config.wide_m else 4


def staged_spec(spec: GemmSpec, m: int, config: StagedConfig, warps: int | None = None) -> GemmSpec:
    """`spec` as the staged schedule runs a call of m rows: staged_warps' warps (or `warps`),
    128 weight rows x 64 rows of x a warp pair."""
    return replace(spec, warps=warps or staged_warps(m, config), warp_rows=4, cols=8, schedule="staged")


def loop_tiles(spec: GemmSpec, splits: int) -> int:
    """The k-tiles of a block's k-loop: K's, split `splits` ways, an even count where the
    weight has 2:4 tiles (_Wgmma.mainloop runs them in pairs)."""
    tiles = -(-spec.k // K_TILE)
    per = -(-tiles // splits)
    return per + per % 2 if "nm24" in _spec_formats(spec) else per


def k_splits(spec: GemmSpec, m: int, config: StagedConfig) -> int:
    """Blocks along K of a call of m rows (split-K): where its output blocks fill less than
    half of SM_COUNT's multiprocessors, as many as fill them, of MIN_SPLIT_TILES k-tiles
    or more each, none empty; 1 in clusters and without wgmma (their kernels take no split)."""
    blocks_x, blocks_y, _ = spec.grid(m)
    tiles = -(-spec.k // K_TILE)
    splits = min(SM_COUNT // (blocks_x * blocks_y), tiles // MIN_SPLIT_TILES)
    if not config.wgmma or config.cluster > 1 or splits < 2:
        return 1
    return -(-tiles // loop_tiles(spec, splits))


def split_spec(spec: GemmSpec, m: int, config: StagedConfig) -> GemmSpec:
    """`spec` (staged_spec's) with the k_splits of a call of m rows."""
    return replace(spec, k_splits=k_splits(spec, m, config))


def staged_grid(spec: GemmSpec, m: int, config: StagedConfig) -> tuple[int, int, int]:
    """The launch's blocks: spec.grid's, the weight-row blocks rounded up to whole clusters
    (a block past N loads zeros, stores nothing and still multicasts its share of x)."""
    blocks, rows, depth = spec.grid(m)
    return blocks + -blocks % config.cluster, rows, depth


def multicast_box(spec: GemmSpec, config: StagedConfig) -> tuple[int, int] | None:
    """The TMA box of x a block loads (rows of x, k), where its cluster multicasts x, else None."""
    return (spec.block_cols // config.cluster, K_TILE) if config.cluster > 1 else None


def values_box(spec: GemmSpec, config: StagedConfig) -> tuple[int, int] | None:
    """The TMA box of a 2:4 weight's values a block loads a k-tile (weight rows, stored
    values), where config.tma_w says so, else None."""
    return (spec.block_rows, K_TILE // 2) if config.tma_w else None


def _spec_formats(spec: GemmSpec) -> tuple[str, ...]:
    return spec.tile_formats if spec.weight == "hybrid" else (spec.weight,)


def wgmma_a_row_bytes(spec: GemmSpec) -> int:
    """A row of the weight's k-tile in a wgmma stage: 64 bytes for 2:4 weights, else 128
    (a hybrid weight's stage takes its dense tiles; its 2:4 ones use the first half)."""
    return WGMMA_ROW_BYTES["nm24" if set(_spec_formats(spec)) == {"nm24"} else "dense"]


def stage_bytes(spec: GemmSpec, config: StagedConfig | None = None) -> int:
    """One stage: the weight's k-tile, x's, the 2:4 metadata (wgmma: unpadded rows, the
    metadata only where a format is 2:4)."""
    if (config or config_for(spec)).wgmma:
        meta = META_BYTES if "nm24" in _spec_formats(spec) else 0
        return spec.block_rows * wgmma_a_row_bytes(spec) + spec.block_cols * SWIZZLE_BYTES + meta
    return A_BYTES + spec.block_cols * ROW_BYTES["x"] + META_BYTES


def shared_bytes(spec: GemmSpec, config: StagedConfig | None = None) -> int:
    """Dynamic shared memory of the staged kernel (the same for every format; wgmma: and
    the slack to align the stages to the swizzle's 1024-byte pattern; a cluster's: and an
    mbarrier a stage; and map_bytes)."""
    config = config or config_for(spec)
    return _pipeline_bytes(spec, config) + map_bytes(spec, config)


def _pipeline_bytes(spec: GemmSpec, config: StagedConfig) -> int:
    barriers = MBARRIER_BYTES * config.stages if config.cluster > 1 else 0
    return config.stages * stage_bytes(spec, config) + (SWIZZLE_ATOM if config.wgmma else 0) + barriers


def map_bytes(spec: GemmSpec, config: StagedConfig) -> int:
    """A hybrid weight's tile row of the tile map in shared memory (wgmma), where it fits
    beside the stages, else 0: read there, a k-tile's format costs no load from L2 on the
    path of the block's wgmma."""
    if spec.weight != "hybrid" or not config.wgmma:
        return 0
    size = -(-4 * spec.tile_grid[1] // 16) * 16
    return size if _pipeline_bytes(spec, config) + size <= SHARED_LIMIT else 0


def staged_arch(spec: GemmSpec, config: StagedConfig | None = None) -> str:
    """The target of the staged kernel: sm_90a for wgmma."""
    return ARCH_WGMMA if (config or config_for(spec)).wgmma else ARCH


_ASYNC = [
    "declare void @llvm.nvvm.cp.async.cg.shared.global.16.s(ptr addrspace(3), ptr addrspace(1), i32)",
    "declare void @llvm.nvvm.cp.async.commit.group()",
    "declare void @llvm.nvvm.cp.async.wait.group(i32)",
    "declare {i32, i32, i32, i32} @llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.b16(ptr addrspace(3))",
    "declare void @llvm.nvvm.barrier0()",
    "declare i32 @llvm.nvvm.read.ptx.sreg.nctaid.y()",
]


Fragments = tuple[list[list[str]], list[list[str]], list[str]]
"""One k-step's registers of a warp: A's 4 ldmatrix.x4, B's pairs per 8 rows of x, the
mma.sp metadata words (2:4)."""


class _Staged(_Gemm):
    """Builds a staged-schedule kernel (spec.schedule == "staged")."""

    def __init__(self, spec: GemmSpec, config: StagedConfig):
        super().__init__(spec)
        if spec.k_splits > 1 and (not config.wgmma or config.cluster > 1):
            raise ValueError(f"split-K takes the wgmma staged kernel without clusters, not {config}")
        if config.tma_w and (not config.wgmma or spec.weight != "nm24" or config.cluster == 1):
            raise ValueError(f"the staged kernel loads a weight by TMA only where it is 2:4, through wgmma in "
                             f"clusters: {config}")  # fmt: skip
        if (size := shared_bytes(spec, config)) > SHARED_LIMIT:
            raise ValueError(f"the staged kernel's {config.stages} stages take {size} bytes of shared memory, "
                             f"more than a block may have ({SHARED_LIMIT}): {config}")  # fmt: skip
        self.config = config
        self.x_region = A_BYTES  # x's k-tile in a stage, then the metadata
        self.meta_region = A_BYTES + spec.block_cols * ROW_BYTES["x"]
        self.row_bytes, self.pad, self.swizzle = ROW_BYTES, PAD, False
        self.stage_size = stage_bytes(spec, config)

    def block_ids(self) -> None:
        """The launch's blocks in groups of `config.group` weight-row blocks, each group
        walking x's rows before the next: the blocks in flight together share more of
        their weight rows and of x in L2 than the launch's order (all weight-row blocks
        of a few x-row blocks) lets them."""
        b, group = self.b, self.config.group
        if not group:
            super().block_ids()
            return
        b.emit("%bx.launch = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()")
        b.emit("%by.launch = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.y()")
        blocks_x = staged_grid(self.s, 1, self.config)[0]  # whole clusters, as groups are: a cluster shares %by
        blocks_y = b.op("call i32 @llvm.nvvm.read.ptx.sreg.nctaid.y()")
        pid = b.i32("add", b.i32("mul", "%by.launch", blocks_x), "%bx.launch")
        per_group = b.i32("mul", blocks_y, group)
        first = b.i32("mul", b.i32("udiv", pid, per_group), group)
        within = b.i32("urem", pid, per_group)
        left = b.i32("sub", blocks_x, first)
        width = b.op(f"select i1 {b.op(f'icmp ult i32 {left}, {group}')}, i32 {left}, i32 {group}")
        b.emit(f"%bx = add i32 {first}, {b.i32('urem', within, width)}")
        b.emit(f"%by = udiv i32 {within}, {width}")

    def warp_rows_offset(self) -> str:
        return self.b.i32("mul", self.b.i32("and", "%warp", 1), 64)

    def warp_cols_offset(self) -> str:
        return self.b.i32("mul", self.b.i32("lshr", "%warp", 1), 64)

    def shared(self, offset: str | int) -> str:
        return self.b.op(f"getelementptr inbounds i8, ptr addrspace(3) @smem, i32 {offset}")

    def copy(self, dst: str, base: str, element: str, inside: str) -> None:
        """cp.async of 16 bytes from element `element` (i64, 16-bit elements) of base, or
        where not `inside` from the buffer's first 16 bytes."""
        b = self.b
        at = b.op(f"select i1 {inside}, i64 {element}, i64 0")
        src = b.op(f"getelementptr inbounds i16, ptr addrspace(1) {base}, i64 {at}")
        b.emit(f"call void @llvm.nvvm.cp.async.cg.shared.global.16.s(ptr addrspace(3) {self.shared(dst)}, "
               f"ptr addrspace(1) {src}, i32 16)")  # fmt: skip

    def copy_rows(self, stage: str, region: int, row_bytes: int, block: int, base: str, row0: str,
                  rows: int | str, col0: str, cols: int | str, stride: int) -> None:  # fmt: skip
        """A [block, row_bytes - PAD] slice of a row-major [rows, cols] 16-bit buffer (row
        stride `stride` elements) from (row0, col0) into shared memory at stage + region.

        Thread tid copies chunk tid % chunks of rows tid / chunks + i * (threads / chunks):
        one source pointer and one shared address a thread, the copies at constant offsets
        from them (immediates), so that no per-copy address stays live across the k-loop
        (a 64-bit address per copy did: ~50 registers). A slice that crosses an edge of the
        buffer (or lies past it) takes a second path: a copy outside the buffer reads nothing
        (source size 0: zeros) from the buffer's first element, not from past the edge (the
        fault this was built for was a freed x, gpu.py's launch; copies of size 0 past x's
        allocation ran without a fault in round 16, 0.6-1.5% faster, one call, not a spec).
        Its row test is against a limit that is 0 past K, so it is made per k-tile, not
        hoisted out of the loop. Swizzled
        (wgmma): a row's chunk c at c ^ (row / (8 / chunks) % chunks) (row_bytes' swizzle, 128
        or 64 bytes), the same for all of a thread's rows."""
        b = self.b
        chunks = (row_bytes - self.pad) // 16
        step = self.s.threads // chunks  # rows between a thread's copies
        row, chunk = b.i32("udiv", "%tid", chunks), b.i32("urem", "%tid", chunks)
        k = b.i32("add", col0, b.i32("mul", chunk, 8))
        left = b.i32("sub", b.i32("sub", rows, row0), row)  # rows from the thread's first to the edge
        limit = b.op(f"select i1 {b.op(f'icmp ult i32 {k}, {cols}')}, i32 {left}, i32 0")
        src = b.op(f"getelementptr i16, ptr addrspace(1) {base}, i64 {b.index(b.i32('add', row0, row), stride, k)}")
        at = chunk
        if self.swizzle:
            at = b.i32("xor", chunk, b.i32("and", b.i32("lshr", row, (8 // chunks).bit_length() - 1), chunks - 1))
        dst = b.i32("add", stage, b.i32("add", region, b.i32("add", b.i32("mul", row, row_bytes), b.i32("shl", at, 4))))

        def copies(edge: bool) -> None:
            for i in range(block // step):
                at, size = b.op(f"getelementptr i16, ptr addrspace(1) {src}, i64 {i * step * stride}"), "16"
                if edge:
                    inside = b.op(f"icmp slt i32 {i * step}, {limit}")
                    size = b.op(f"select i1 {inside}, i32 16, i32 0")
                    at = b.op(f"select i1 {inside}, ptr addrspace(1) {at}, ptr addrspace(1) {base}")
                b.emit(f"call void @llvm.nvvm.cp.async.cg.shared.global.16.s(ptr addrspace(3) "
                       f"{self.shared(b.i32('add', dst, i * step * row_bytes))}, ptr addrspace(1) {at}, i32 {size})")  # fmt: skip

        rows_in = b.op(f"icmp ule i32 {b.i32('add', row0, block)}, {rows}")
        cols_in = b.op(f"icmp ule i32 {b.i32('add', col0, chunks * 8)}, {cols}")
        b.when(b.op(f"and i1 {rows_in}, {cols_in}"), "copy.whole", lambda: copies(False), lambda: copies(True))

    def copy_meta(self, stage: str, meta: str, tile0: str, tiles: int | str, step0: str, steps: int) -> None:
        """The metadata of the block's 8 16-row tiles at k-steps step0, step0 + 1 (of `steps`
        per tile) into stage's metadata region: 64 copies of 16 bytes (threads 0 to 63).
        Past the weight: the first tile's words (values there are 0; a nibble 0 is not
        valid metadata)."""
        b = self.b
        tile, step, quarter = (
            b.i32("lshr", "%tid", 3),
            b.i32("and", b.i32("lshr", "%tid", 2), 1),
            b.i32("and", "%tid", 3),
        )
        row_tile, k_step = b.i32("add", tile0, tile), b.i32("add", step0, step)
        inside = b.op(f"and i1 {b.op(f'icmp ult i32 {row_tile}, {tiles}')}, {b.op(f'icmp ult i32 {k_step}, {steps}')}")
        word = b.i32(
            "add", b.i32("shl", b.i32("add", b.i32("mul", row_tile, steps), k_step), 4), b.i32("shl", quarter, 2)
        )
        element = b.op(f"zext i32 {b.i32('shl', word, 1)} to i64")  # in 16-bit elements
        dst = b.i32("add", stage, self.meta_region)
        b.when(b.op("icmp ult i32 %tid, 64"), "meta",
               lambda: self.copy(b.i32("add", dst, b.i32("shl", "%tid", 4)), meta, element, inside))  # fmt: skip

    def tile_row(self) -> str:
        """A hybrid weight's tile row of the block (past N: 0)."""
        b, th = self.b, self.s.tile[0]
        inside = b.op(f"icmp ult i32 %n.block, {self.s.n}")
        return b.op(f"select i1 {inside}, i32 {b.i32('udiv', '%n.block', th)}, i32 0")

    def map_entry(self, kt: str) -> str:
        """A hybrid weight's tile-map entry of k-tile kt's tile (past K: the first tile's)."""
        b = self.b
        k = b.i32("mul", kt, K_TILE)
        inside = b.op(f"icmp ult i32 {k}, {self.s.k}")
        return self.load_entry(self.tile_row(), b.i32("udiv", k, self.s.tile[1]), inside)

    def load_entry(self, tile_row: str, tile_col: str, inside: str) -> str:
        b = self.b
        at = b.i32("add", b.i32("mul", tile_row, self.s.tile_grid[1]), tile_col)
        return b.op(
            f"load i32, ptr addrspace(1) {b.offset('%map', b.op(f'select i1 {inside}, i32 {at}, i32 0'), 'i32')}, align 4"
        )

    def on_formats(self, kt: str, body: Callable[[str, str, str, str, tuple[str, str] | None], None],
                   entry: str | None = None, empty: Callable[[], None] | None = None) -> None:  # fmt: skip
        """body(format, values, first row, first column, (slot, metadata) of a stored
        hybrid tile or None) for k-tile kt: the weight's format, or its tile's (a switch
        on its tile-map entry, `entry` where given; an empty tile: empty())."""
        s, b = self.s, self.b
        if s.weight != "hybrid":
            base = "%w" if s.weight == "dense" else "%values"
            col = b.i32("mul", kt, K_TILE if s.weight == "dense" else K_TILE // 2)
            body(s.weight, base, "%n.block", col, None)
            return
        th, tw = s.tile
        tile_row = self.tile_row()
        row0 = b.i32("sub", "%n.block", b.i32("mul", tile_row, th))
        k = b.i32("mul", kt, K_TILE)
        tile_col = b.i32("udiv", k, tw)
        inside = b.op(f"icmp ult i32 {k}, {s.k}")  # a k-tile past K (the last stages' copies): empty
        entry = entry or self.load_entry(tile_row, tile_col, inside)
        code = b.op(f"select i1 {inside}, i32 {b.i32('and', entry, (1 << MAP_CODE_BITS) - 1)}, i32 0")
        slot = b.i32("lshr", entry, MAP_CODE_BITS)
        in_tile = b.i32("sub", k, b.i32("mul", tile_col, tw))

        def case(f: int, format: str, values: str) -> None:
            col = b.i32("lshr", in_tile, 1) if format == "nm24" else in_tile
            body(format, values, row0, col, (slot, f"%meta{f}"))

        self.switch_on_format(code, slot, case, empty)

    def stage(self, kt: str) -> str:
        """The shared-memory offset of k-tile kt's stage."""
        return self.b.i32("mul", self.b.i32("urem", kt, self.config.stages), self.stage_size)

    def load_stage(self, kt: str) -> None:
        """cp.async of k-tile kt (past K: zeros) into its stage, then a commit."""
        s, b = self.s, self.b
        stage = self.stage(kt)

        def body(format: str, base: str, row0: str, col: str, stored: tuple[str, str] | None) -> None:
            self.copy_x(stage, kt)
            halved = 2 if format == "nm24" else 1
            rows, cols = (s.tile[0], s.tile[1] // halved) if stored else (s.n, s.k // halved)
            if not self.config.tma_w:
                self.copy_rows(stage, 0, self.row_bytes[format], s.block_rows, base, row0, rows, col, cols, cols)
            if format != "nm24":
                return
            step0 = b.i32("udiv", b.i32("shl", col, 1), MMA_SPARSE[2])
            if stored is None:
                self.copy_meta(stage, "%meta", b.i32("lshr", row0, 4), -(-s.n // 16), step0, -(-s.k // MMA_SPARSE[2]))
                return
            (th, tw), (slot, meta) = s.tile, stored
            per_tile = th // 16 * (tw // MMA_SPARSE[2]) * 16 * 2  # a stored tile's metadata in 16-bit elements
            at = b.op(f"getelementptr inbounds i16, ptr addrspace(1) {meta}, i32 {b.i32('mul', slot, per_tile)}")
            self.copy_meta(stage, at, b.i32("lshr", row0, 4), th // 16, step0, tw // MMA_SPARSE[2])

        self.on_formats(kt, body)
        b.emit("call void @llvm.nvvm.cp.async.commit.group()")

    def copy_x(self, stage: str, kt: str) -> None:
        """cp.async of x's k-tile kt into `stage`."""
        s, b = self.s, self.b
        k = b.i32("mul", kt, K_TILE)
        self.copy_rows(stage, self.x_region, self.row_bytes["x"], s.block_cols, "%x", "%m.block", "%M", k, s.k, s.k)

    def ldmatrix(self, address: str) -> list[str]:
        b = self.b
        result = b.op(
            f"call {{i32, i32, i32, i32}} @llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.b16(ptr addrspace(3) {self.shared(address)})"
        )
        return [b.op(f"extractvalue {{i32, i32, i32, i32}} {result}, {i}") for i in range(4)]

    def fragments(self, format: str, stage: str, ks: int, with_meta: bool = True) -> Fragments:
        """The warp's registers of k-step ks of the k-tile at `stage` (2:4: the metadata
        words too, `with_meta`)."""
        b = self.b
        a = []
        for mi in range(4):  # A: rows lane % 16, the 8 values from 8 (lane / 16)
            row = b.i32("add", "%a.row", mi * 16)
            at = b.i32("add", b.i32("mul", row, ROW_BYTES[format]), b.i32("add", "%a.col", ks * 32))
            a.append(self.ldmatrix(b.i32("add", stage, at)))
        xs = []
        x_stage = b.i32("add", stage, self.x_region)
        if format == "nm24":  # B of k32: one ldmatrix.x4 per 8 rows of x, its 4 matrices along k
            for nj in range(8):
                row = b.i32("add", b.i32("and", "%lane", 7), b.i32("add", "%x.row0", nj * 8))
                at = b.i32("add", b.i32("mul", row, ROW_BYTES["x"]),
                           b.i32("add", b.i32("shl", b.i32("lshr", "%lane", 3), 4), ks * 64))  # fmt: skip
                xs.append(self.ldmatrix(b.i32("add", x_stage, at)))
        else:  # B of k16: one ldmatrix.x4 per 16 rows of x (2 tiles x 2 halves of k)
            for nj in range(4):
                row = b.i32("add", "%b.row", nj * 16)
                at = b.i32("add", b.i32("mul", row, ROW_BYTES["x"]), b.i32("add", "%b.col", ks * 32))
                four = self.ldmatrix(b.i32("add", x_stage, at))
                xs += [four[:2], four[2:]]
        metas = [self.meta_word(stage, ks, mi) for mi in range(4)] if format == "nm24" and with_meta else []
        return a, xs, metas

    def meta_word(self, stage: str, ks: int, mi: int) -> str:
        """The lane's mma.sp metadata word of k-step ks for the warp's 16-row tile mi."""
        b = self.b
        at = b.i32("add", stage, self.meta_region + ks * 64)
        at = b.i32("add", at, b.i32("add", b.i32("mul", b.i32("add", "%meta.tile", mi), 128), "%meta.lane"))
        return b.op(f"load i32, ptr addrspace(3) {self.shared(at)}, align 4")

    def mma_step(self, format: str, fragments: Fragments, stage: str = "", ks: int = 0) -> None:
        """The k-step's mma; a 2:4 one's metadata words from `fragments` or, where they
        are not there, read before each 16-row tile's mma from (stage, ks)."""
        a, xs, metas = fragments
        for mi in range(4):
            meta = None
            if format == "nm24":
                meta = metas[mi] if metas else self.meta_word(stage, ks, mi)
            for nj in range(8):
                self.mma(format, a[mi], xs[nj], (mi, nj), meta)

    def compute_stage(self, kt: str) -> None:
        stage = self.stage(kt)

        def body(format: str, *_: object) -> None:
            for ks in range(K_TILE // _k_step(format)):
                self.mma_step(format, self.fragments(format, stage, ks, with_meta=False), stage, ks)

        self.on_formats(kt, body)

    def lanes(self) -> None:
        """Per-lane offsets of the ldmatrix rows and of the metadata word."""
        b = self.b
        b.emit(f"%a.row = add i32 {b.i32('and', '%lane', 15)}, {b.i32('mul', b.i32('and', '%warp', 1), 64)}")
        b.emit(f"%a.col = shl i32 {b.i32('lshr', '%lane', 4)}, 4")
        b.emit(f"%x.row0 = mul i32 {b.i32('lshr', '%warp', 1)}, 64")
        # B of k16: matrix q = lane / 8 holds rows 8 (q / 2) + lane % 8 at k 8 (q % 2)
        b.emit(
            f"%b.row = add i32 %x.row0, {b.i32('add', b.i32('and', '%lane', 7), b.i32('shl', b.i32('lshr', '%lane', 4), 3))}"
        )
        b.emit(f"%b.col = shl i32 {b.i32('and', b.i32('lshr', '%lane', 3), 1)}, 4")
        b.emit(f"%meta.tile = mul i32 {b.i32('and', '%warp', 1)}, 4")
        b.emit(f"%meta.lane = shl i32 {b.i32('add', b.i32('shl', '%g', 1), b.i32('and', '%t', 1))}, 2")

    def wait_and_sync(self) -> None:
        """Until k-tile kt + 1's copies (all but the last stages - 2 groups) are in, for every warp."""
        self.b.emit(f"call void @llvm.nvvm.cp.async.wait.group(i32 {self.config.stages - 2})")
        self.b.emit("call void @llvm.nvvm.barrier0()")

    def mainloop(self) -> None:
        """The main loop as measured: wait, barrier, the copies of k-tile kt + stages - 1,
        then kt's k-steps (each k-step's fragments, then its mma)."""
        b, stages = self.b, self.config.stages
        tiles = -(-self.s.k // K_TILE)
        for p in range(stages - 1):
            self.load_stage(str(p))

        def iteration(kt: str) -> None:
            self.wait_and_sync()
            self.load_stage(b.i32("add", kt, stages - 1))
            self.compute_stage(kt)

        b.loop(tiles, 1, iteration, unroll=False)
        b.emit("call void @llvm.nvvm.cp.async.wait.group(i32 0)")  # the empty copies past K

    def pipelined_mainloop(self) -> None:
        """The main loop with the fragments read one k-step ahead, across k-tiles too:
        k-tile kt + 1's wait and barrier come after the last k-step's fragments are read
        and before the k-step before it runs, and its first k-step's fragments are read
        before the last k-step's mma, so that the tensor cores need not wait for the
        barrier or for ldmatrix. The copies of k-tile kt + stages - 1 go to kt - 1's stage,
        which every warp has read before that barrier of iteration kt - 1. The fragments
        carried to the next iteration (and a hybrid weight's next tile-map entry, loaded
        an iteration ahead) live in allocas: registers, after SROA. A hybrid k-tile
        switches on its format; the next one's first fragments, on that one's (an empty
        tile: only the barrier and the next fragments)."""
        s, b, stages = self.s, self.b, self.config.stages
        tiles, hybrid = -(-s.k // K_TILE), s.weight == "hybrid"
        count = max(_fragment_count(f) for f in self.formats())
        b.emit(f"%frag = alloca [{count} x i32], align 4")  # in the entry block: SROA promotes it
        entry: str | None = None
        if hybrid:
            b.emit("%map.ahead = alloca i32, align 4")
            entry = self.map_entry("0")
        for p in range(stages - 1):
            self.load_stage(str(p))
        self.wait_and_sync()
        self.on_formats("0", lambda format, *_: self.keep(self.fragments(format, self.stage("0"), 0), count), entry)
        if entry is not None:  # iteration kt switches on k-tile kt's entry, loaded in iteration kt - 1
            b.emit(f"store i32 {entry}, ptr %map.ahead")

        b.loop(tiles, 1, lambda kt: self.pipelined_iteration(kt, count), unroll=False)
        b.emit("call void @llvm.nvvm.cp.async.wait.group(i32 0)")  # the empty copies past K

    def pipelined_iteration(self, kt: str, count: int) -> None:
        """Iteration kt of pipelined_mainloop (`count` registers carried)."""
        b = self.b
        self.load_stage(b.i32("add", kt, self.config.stages - 1))
        following_kt = b.i32("add", kt, 1)
        entry = following_entry = None
        if self.s.weight == "hybrid":
            entry = b.op("load i32, ptr %map.ahead")
            following_entry = self.map_entry(following_kt)

        def ahead() -> None:
            def first(format: str, *_: object) -> None:
                self.keep(self.fragments(format, self.stage(following_kt), 0), count)

            self.on_formats(following_kt, first, following_entry)

        def body(format: str, *_: object) -> None:
            steps = K_TILE // _k_step(format)
            current = self.restore(format, count)
            for ks in range(steps):
                following = self.fragments(format, self.stage(kt), ks + 1) if ks + 1 < steps else current
                if ks + 2 == steps:
                    self.wait_and_sync()
                if ks + 1 == steps:
                    ahead()
                self.mma_step(format, current)
                current = following

        def empty() -> None:
            self.wait_and_sync()
            ahead()

        self.on_formats(kt, body, entry, empty)
        if following_entry is not None:
            b.emit(f"store i32 {following_entry}, ptr %map.ahead")

    def keep(self, fragments: Fragments, count: int) -> None:
        for i, value in enumerate(_flat(fragments)):
            at = self.b.op(f"getelementptr inbounds [{count} x i32], ptr %frag, i32 0, i32 {i}")
            self.b.emit(f"store i32 {value}, ptr {at}")

    def restore(self, format: str, count: int) -> Fragments:
        b = self.b
        values = []
        for i in range(_fragment_count(format)):
            at = b.op(f"getelementptr inbounds [{count} x i32], ptr %frag, i32 0, i32 {i}")
            values.append(b.op(f"load i32, ptr {at}"))
        a = [values[4 * i : 4 * i + 4] for i in range(4)]
        per = _pair_count(format)
        xs = [values[16 + per * j : 16 + per * j + per] for j in range(8)]
        return a, xs, values[16 + 8 * per :]

    def build(self) -> str:
        self.prologue()
        self.lanes()
        if self.config.pipelined:
            self.pipelined_mainloop()
        else:
            self.mainloop()
        self.epilogue()
        return self.module(("@smem = external addrspace(3) global [0 x i8], align 16",), tuple(_ASYNC))


class _Wgmma(_Staged):
    """The staged kernel through wgmma (config.wgmma): dense, 2:4 and hybrid weights; each
    of the block's warpgroups (4 warps; the spec's 4 or 8: 1 or 2) takes an equal part of its
    weight rows (128 or 64 of the staged spec's 128), as m64 slices, times all its rows of x
    (N = 128 or 256; smaller blocks where the spec says so: N <= 256, 64 weight rows a
    warpgroup or more). The stages hold unpadded rows swizzled by their width (128 bytes; a
    2:4 k-tile's stored values 64), which the tensor cores read through matrix descriptors.
    Each k-tile is, per slice, 4 k-steps of wgmma (dense) or 2 of wgmma.sp (2:4: A the 64 x 16
    stored values, its metadata a register per thread, read from the stage where packing/mma.py's
    layout puts it: warp w of a warpgroup holds rows 16w ... 16w + 15 of the slice, as mma.sp's
    m16n8k32 does, CUTLASS's ELayout_64x32), committed as a group; a hybrid k-tile switches
    between the two on its tile's format. The cp.async copies reach the async proxy through
    fence.proxy.async before the barrier. The accumulators (128 a thread) pass through the
    wgmma and wait_group inline PTX as tied operands, so nothing reads them in flight. In
    clusters (config.cluster), x's k-tiles come by TMA, each block's share multicast to
    all (multicast_x, wait_x, cluster_barrier); a hybrid weight's block reads its tile row
    of the tile map from shared memory (stage_map)."""

    def __init__(self, spec: GemmSpec, config: StagedConfig):
        super().__init__(spec, config)
        groups = spec.warps // 4
        if spec.warps % 4 or spec.block_rows % (groups * WGMMA_ROWS) or spec.block_cols > 256:
            raise ValueError(f"the wgmma staged kernel takes 64 weight rows a warpgroup or more, not {spec}")
        if spec.weight == "hybrid" and spec.tile[0] % spec.block_rows:
            raise ValueError(f"a hybrid weight's block lies in one tile row: {spec}")
        if config.cluster not in (1, 2, 4) or spec.block_cols // config.cluster % 8 or config.group % config.cluster:
            raise ValueError(f"the wgmma staged kernel takes clusters of 1, 2 or 4 blocks, whole in the launch's "
                             f"groups, not {config}")  # fmt: skip
        self.slices = spec.block_rows // WGMMA_ROWS // groups
        self.row_bytes, self.pad, self.swizzle = WGMMA_ROW_BYTES, 0, True
        self.x_region = spec.block_rows * wgmma_a_row_bytes(spec)
        self.meta_region = self.x_region + spec.block_cols * SWIZZLE_BYTES
        self.barriers = config.stages * self.stage_size  # a cluster's mbarriers: one a stage
        self.map_region = _pipeline_bytes(spec, config) - SWIZZLE_ATOM  # then the tile row's map (map_bytes)

    @property
    def acc_count(self) -> int:
        return self.slices * self.s.block_cols // 2

    def warp_rows_offset(self) -> str:
        """The warp's 16 rows of its warpgroup's first slice."""
        b = self.b
        group = b.i32("mul", b.i32("lshr", "%warp", 2), self.slices * WGMMA_ROWS)
        return b.i32("add", group, b.i32("mul", b.i32("and", "%warp", 3), 16))

    def warp_cols_offset(self) -> str:
        return "0"

    def lanes(self) -> None:
        """The pad that aligns the stages to the swizzle's pattern; the warpgroup's first
        weight row in a stage (its byte offset in the weight's region); for 2:4 tiles, the
        thread's first metadata tile of the block and its word among the tile's 16 (mma.sp's)."""
        b = self.b
        b.emit("%smem.at = ptrtoint ptr addrspace(3) @smem to i32")
        b.emit(f"%smem.pad = and i32 {b.i32('sub', 0, '%smem.at')}, {SWIZZLE_ATOM - 1}")
        rows = b.i32("mul", b.i32("lshr", "%warp", 2), self.slices * WGMMA_ROWS * wgmma_a_row_bytes(self.s))
        b.emit(f"%group.rows = add i32 {rows}, 0")
        if "nm24" in self.formats():
            b.emit(f"%meta.lane = shl i32 {b.i32('add', b.i32('shl', '%g', 1), b.i32('and', '%lane', 1))}, 2")
            tile = b.i32("mul", b.i32("lshr", "%warp", 2), self.slices * WGMMA_ROWS // 16)
            b.emit(f"%meta.tile = add i32 {tile}, {b.i32('and', '%warp', 3)}")

    def shared(self, offset: str | int) -> str:
        return self.b.op(
            f"getelementptr inbounds i8, ptr addrspace(3) @smem, i32 {self.b.i32('add', offset, '%smem.pad')}"
        )

    def address(self, offset: str | int) -> str:
        """The shared-memory address (32 bits) of `offset` in the stages, for inline PTX."""
        return self.b.i32("add", "%smem.at", self.b.i32("add", offset, "%smem.pad"))

    def barrier(self, kt: str) -> str:
        """The address of the mbarrier of k-tile kt's stage."""
        return self.address(
            self.b.i32("add", self.barriers, self.b.i32("shl", self.b.i32("urem", kt, self.config.stages), 3))
        )

    @property
    def k_tiles(self) -> int:
        """The k-loop's k-tiles (a split's of K; an even count with 2:4 tiles: mainloop)."""
        return loop_tiles(self.s, self.s.k_splits)

    def load_ahead(self, first: str, kt: str | int) -> None:
        """load_stage of the split's k-tile kt (from its first, `first`); past the split's
        last, an empty commit (the waits count groups), not the next split's copies."""
        b = self.b
        if self.s.k_splits == 1:
            self.load_stage(str(kt))
            return
        b.when(b.op(f"icmp ult i32 {kt}, {self.k_tiles}"), "ahead", lambda: self.load_stage(b.i32("add", first, kt)),
               lambda: b.emit("call void @llvm.nvvm.cp.async.commit.group()"))  # fmt: skip

    def copy_x(self, stage: str, kt: str) -> None:
        if self.config.cluster == 1:
            super().copy_x(stage, kt)

    def load_stage(self, kt: str) -> None:
        """A cluster's: x's k-tile by TMA (multicast_x), the weight's by cp.async."""
        if self.config.cluster > 1:
            self.multicast_x(kt)
        super().load_stage(kt)

    def multicast_x(self, kt: str) -> None:
        """Thread 0: this block's share of x's k-tile kt (a box of multicast_box's rows from
        the block's first plus its rank's share, zeros past M and K) by TMA from the tensor
        map %xmap to every block of the cluster, at the same offset in each, completing on
        each one's mbarrier of the stage, which expects the whole k-tile's bytes; none past
        the k-loop's last k-tile (no block waits for it)."""
        b = self.b
        rows = self.s.block_cols // self.config.cluster

        def issue() -> None:
            barrier = self.barrier(kt)
            values = values_box(self.s, self.config)  # (rows, 16-bit values) or None
            expected = self.s.block_cols * SWIZZLE_BYTES + (values[0] * values[1] * 2 if values else 0)
            b.emit(f'call void asm sideeffect "mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], $1;", '
                   f'"r,r,~{{memory}}"(i32 {barrier}, i32 {expected})')  # fmt: skip
            if values:  # the block's k-tile of the values, into its own stage
                copy = "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [$0], [$1, {$2, $3}], [$4];"
                b.emit(f'call void asm sideeffect "{copy}", "r,l,r,r,r,~{{memory}}"(i32 {self.address(self.stage(kt))}, '
                       f"ptr %wmap, i32 {b.i32('mul', kt, K_TILE // 2)}, i32 %n.block, i32 {barrier})")  # fmt: skip
            share = b.i32("mul", "%cluster.rank", rows)
            offset = b.i32("add", self.x_region, b.i32("mul", share, SWIZZLE_BYTES))
            dst = self.address(b.i32("add", self.stage(kt), offset))
            copy = ("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster "
                    "[$0], [$1, {$2, $3}], [$4], $5;")  # fmt: skip
            b.emit(f'call void asm sideeffect "{copy}", "r,l,r,r,r,h,~{{memory}}"(i32 {dst}, ptr %xmap, '
                   f"i32 {b.i32('mul', kt, K_TILE)}, i32 {b.i32('add', '%m.block', share)}, i32 {barrier}, "
                   f"i16 {(1 << self.config.cluster) - 1})")  # fmt: skip

        inside, first = b.op(f"icmp ult i32 {kt}, {self.k_tiles}"), b.op("icmp eq i32 %tid, 0")
        b.when(b.op(f"and i1 {inside}, {first}"), "tma", issue)

    def cluster_barrier(self, step: str) -> None:
        """A cluster's barrier.cluster `step` (all threads; arrivals relaxed: a release would
        wait for the thread's copies in flight, MEMBAR.ALL.GPU in the SASS, which made the
        kernel 2-3x slower); nothing without a cluster."""
        if self.config.cluster > 1:
            self.b.emit(f"call void @llvm.nvvm.barrier.cluster.{step}.aligned()")

    def wait_x(self, kt: str) -> None:
        """A cluster's: until x's k-tile kt is in the stage (its mbarrier's phase kt / stages completes)."""
        b = self.b
        if self.config.cluster == 1:
            return
        barrier, parity = self.barrier(kt), b.i32("and", b.i32("udiv", kt, self.config.stages), 1)
        spin, ready = b.label("x.wait"), b.label("x.ready")
        b.emit(f"br label %{spin}")
        b.begin(spin)
        test = "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [$1], $2; selp.u32 $0, 1, 0, p; }"
        done = b.op(f'call i32 asm sideeffect "{test}", "=r,r,r,~{{memory}}"(i32 {barrier}, i32 {parity})')
        b.emit(f"br i1 {b.op(f'icmp ne i32 {done}, 0')}, label %{ready}, label %{spin}")
        b.begin(ready)

    def cluster_setup(self) -> None:
        """Thread 0 initialises the stages' mbarriers (one arrival: its own, with the bytes
        expected); the cluster syncs, so that no block multicasts to a peer's barriers before
        they are. Nothing without a cluster."""
        b = self.b
        if self.config.cluster == 1:
            return
        b.emit("%cluster.rank = call i32 @llvm.nvvm.read.ptx.sreg.cluster.ctarank()")

        def init() -> None:
            for stage in range(self.config.stages):
                b.emit(f'call void asm sideeffect "mbarrier.init.shared::cta.b64 [$0], 1;", "r,~{{memory}}"'
                       f"(i32 {self.barrier(str(stage))})")  # fmt: skip
            b.emit('call void asm sideeffect "fence.mbarrier_init.release.cluster;", "~{memory}"()')

        b.when(b.op("icmp eq i32 %tid, 0"), "mbarrier.init", init)
        self.cluster_barrier("arrive.relaxed")
        self.cluster_barrier("wait")

    def descriptor(self, offset: str, row_bytes: int = SWIZZLE_BYTES) -> str:
        """The matrix descriptor of the K-major operand at `offset` in the stages (rows of
        `row_bytes`, swizzled by as many bytes)."""
        b = self.b
        at = b.i32("add", "%smem.at", b.i32("add", offset, "%smem.pad"))
        start = b.op(f"zext i32 {b.i32('and', b.i32('lshr', at, 4), 0x3FFF)} to i64")
        leading, stride = DESCRIPTOR_OFFSETS
        stride = stride * row_bytes // SWIZZLE_BYTES  # 8 rows
        return b.op(f"or i64 {start}, {(leading >> 4) << 16 | (stride >> 4) << 32 | SWIZZLE_MODE[row_bytes] << 62}")

    def accumulators(self, asm: str, constraints: list[str], inputs: list[str], first: int, count: int) -> None:
        """acc[first:first + count] through inline PTX `asm` (its outputs, then `inputs`, then the accumulators tied)."""
        b = self.b
        slots = [self.acc_at(first + i) for i in range(count)]
        values = [b.op(f"load float, ptr {slot}") for slot in slots]
        struct = "{" + ", ".join(["float"] * count) + "}"
        spec = ",".join(["=f"] * count + constraints + [str(i) for i in range(count)])
        operands = ", ".join([*inputs, *(f"float {v}" for v in values)])
        result = b.op(f'call {struct} asm sideeffect "{asm}", "{spec}"({operands})')
        for i, slot in enumerate(slots):
            b.emit(f"store float {b.op(f'extractvalue {struct} {result}, {i}')}, ptr {slot}")

    def wgmma(self, a: str, x: str, r: int, meta: str | None = None) -> None:
        """Slice r's accumulators += its 64 weight rows (descriptor a) x the block's rows of
        x (descriptor x): 16 of k, or 32 through wgmma.sp with the thread's metadata `meta`."""
        n, ty = self.s.block_cols, self.s.dtype
        count = n // 2
        registers = ", ".join(f"${i}" for i in range(count))
        if meta is None:
            asm = f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ty}.{ty} {{{registers}}}, ${count}, ${count + 1}, 1, 1, 1, 0, 0;"
            self.accumulators(asm, ["l", "l"], [f"i64 {a}", f"i64 {x}"], r * count, count)
            return
        asm = (f"wgmma.mma_async.sp.sync.aligned.m64n{n}k32.f32.{ty}.{ty} {{{registers}}}, ${count}, ${count + 1}, "
               f"${count + 2}, {SPARSITY_SELECTOR}, 1, 1, 1, 0, 0;")  # fmt: skip
        self.accumulators(asm, ["l", "l", "r"], [f"i64 {a}", f"i64 {x}", f"i32 {meta}"], r * count, count)

    def wait(self, pending: int, live: list[str]) -> None:
        """Until the warpgroup's wgmma groups but the last `pending` are done; the metadata
        registers `live` (those of the group it retires) are its inputs, so that LLVM keeps
        them apart from the next k-tile's words (the PTX of the two parities' registers
        differs; ptxas then keeps them to the wait, which backends/gpu/sass.py checks)."""
        inputs = [f"i32 {v}" for v in live]
        self.accumulators(f"wgmma.wait_group.sync.aligned {pending};", ["r"] * len(inputs), inputs, 0, self.acc_count)

    @property
    def live_count(self) -> int:
        """A k-tile's wgmma.sp metadata registers (0 without 2:4 tiles)."""
        return self.slices * (K_TILE // MMA_SPARSE[2]) if "nm24" in self.formats() else 0

    def live(self, parity: int) -> list[str]:
        """The metadata registers of the last k-tile of this parity (zeros before one, or
        an older one's where the last was dense or empty: live longer than needed, harmless)."""
        b = self.b
        return [b.op(f"load i32, ptr {self.live_slot(parity, i)}") for i in range(self.live_count)]

    def live_slot(self, parity: int, i: int) -> str:
        return self.b.op(f"getelementptr inbounds [{self.live_count} x i32], ptr %meta.live{parity}, i32 0, i32 {i}")

    def issue_k_tile(self, kt: str, parity: int) -> None:
        """k-tile kt's wgmma (a hybrid weight's: its tile's format's; an empty tile's: none),
        one group, then the wait for the group before it, whose metadata registers (the
        other parity's) stay live until then: wgmma.sp reads its metadata register after
        it issues, and a register the compiler reuses for the next k-tile's words would
        change it under the running group."""
        b = self.b
        stage, before = self.stage(kt), self.live(1 - parity)

        def commit() -> None:
            b.emit("call void @llvm.nvvm.wgmma.commit_group.sync.aligned()")

        def body(format: str, *_: object) -> None:
            self.k_steps(format, stage, parity)
            commit()

        self.on_formats(kt, body, None, commit)
        self.wait(self.config.wgmma_pending, before)

    def k_steps(self, format: str, stage: str, parity: int) -> None:
        """The k-tile's k-steps at `stage`: 4 of wgmma a slice (dense), 2 of wgmma.sp (2:4),
        after the fence; 2:4's metadata words read before it (a register written between
        wgmma makes ptxas insert a warpgroup.arrive there) and kept in parity's slots."""
        b, k_step = self.b, _k_step(format)
        row_bytes, steps = self.row_bytes[format], range(K_TILE // k_step)
        step_bytes = k_step // (2 if format == "nm24" else 1) * 2  # the stored values' bytes a k-step
        group = "%group.rows" if row_bytes == wgmma_a_row_bytes(self.s) else b.i32("lshr", "%group.rows", 1)
        metas = [[self.meta_word(stage, ks, r) for r in range(self.slices)] for ks in steps] if format == "nm24" else []
        for i, word in enumerate(w for words in metas for w in words):
            b.emit(f"store i32 {word}, ptr {self.live_slot(parity, i)}")
        b.emit("call void @llvm.nvvm.wgmma.fence.sync.aligned()")
        for ks in steps:
            x = self.descriptor(b.i32("add", stage, self.x_region + ks * k_step * 2))
            for r in range(self.slices):
                rows = b.i32("add", group, r * WGMMA_ROWS * row_bytes + ks * step_bytes)
                a = self.descriptor(b.i32("add", stage, rows), row_bytes)
                self.wgmma(a, x, r, metas[ks][r] if metas else None)

    def meta_word(self, stage: str, ks: int, mi: int) -> str:
        """The thread's wgmma.sp metadata word of k-step ks for slice mi (its warp's 16 rows of it)."""
        b = self.b
        tile = b.i32("add", "%meta.tile", mi * WGMMA_ROWS // 16)
        at = b.i32(
            "add", b.i32("add", stage, self.meta_region + ks * 64), b.i32("add", b.i32("mul", tile, 128), "%meta.lane")
        )
        return b.op(f"load i32, ptr addrspace(3) {self.shared(at)}, align 4")

    def mainloop(self) -> None:
        """Wait for k-tile kt's copies, fence them to the async proxy, barrier (every
        warpgroup is past its wgmma groups of k-tile kt - 1 - pending), copy k-tile
        kt + ahead into that one's stage, then kt's wgmma. With 2:4 tiles the loop runs two
        k-tiles an iteration, each keeping its metadata registers in its own slots: carried
        around one loop, the next k-tile's words would be loaded into the registers of the
        running group's and copied over after its wait."""
        b, pending = self.b, self.config.wgmma_pending
        ahead = self.config.stages - 1 - pending
        if ahead < 1 or pending not in (0, 1):
            raise ValueError(f"the wgmma staged kernel needs stages > 1 + pending (0 or 1): {self.config}")
        for parity in range(2 if self.live_count else 0):
            b.emit(f"%meta.live{parity} = alloca [{self.live_count} x i32], align 4")
            for i in range(self.live_count):
                b.emit(f"store i32 0, ptr {self.live_slot(parity, i)}")
        self.stage_map()  # after the allocas: SROA promotes only the entry block's
        self.cluster_setup()
        first = b.i32("mul", "%bz", self.k_tiles) if self.s.k_splits > 1 else "0"  # the split's first k-tile
        for p in range(ahead):
            self.load_ahead(first, p)
        self.cluster_barrier("arrive.relaxed")  # an arrival an iteration, paired with the next one's wait

        def iteration(local: str, parity: int) -> None:
            kt = local if self.s.k_splits == 1 else b.i32("add", first, local)
            b.emit(f"call void @llvm.nvvm.cp.async.wait.group(i32 {ahead - 1})")
            b.emit("call void @llvm.nvvm.fence.proxy.async.shared_cta()")
            b.emit("call void @llvm.nvvm.barrier0()")
            self.cluster_barrier("wait")  # every block is past k-tile kt - 1 - pending, whose stage is refilled
            self.load_ahead(first, b.i32("add", local, ahead))
            self.wait_x(kt)
            self.issue_k_tile(kt, parity)
            self.cluster_barrier("arrive.relaxed")

        def pair(kt: str) -> None:
            iteration(kt, 0)
            iteration(b.i32("add", kt, 1), 1)

        # with 2:4 tiles an even count: a k-tile past K (zeros; a hybrid's, empty) rounds an odd
        # one up, as a last k-tile after the loop had its words loaded into the running group's
        # registers (backends/gpu/sass.py found it; ptxas serialized pure 2:4 there, C7513)
        if not self.live_count:
            b.loop(self.k_tiles, 1, lambda kt: iteration(kt, 0), unroll=False)
        else:
            b.loop(self.k_tiles, 2, pair, unroll=False)
        self.wait(0, self.live(1) if self.live_count else [])
        b.emit("call void @llvm.nvvm.cp.async.wait.group(i32 0)")  # the empty copies past K
        self.cluster_barrier("wait")  # no block leaves while its peer may still multicast to it

    def block_ids(self) -> None:
        super().block_ids()
        if self.s.k_splits > 1:
            self.b.emit("%bz = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.z()")

    def sum_splits(self) -> None:
        """Split-K: the blocks of an output tile add their sums in the order of their splits
        (%bz) through the workspace %work, each after the one before it has stored there
        (the tile's flag, counting the splits done, then back to 0 for the next launch);
        the last goes on to the epilogue's stores. The workspace holds the accumulators
        in their registers' order, float4 i of thread t at (tile * acc_count / 4 + i) *
        threads + t: whole, coalesced and never past an edge. Its loads and stores bypass
        L1 (.cg), where another split's sums could be stale; the flag is waited for by
        an acquire and set after a fence, as CUTLASS's split-K semaphore does."""
        s, b = self.s, self.b
        blocks_x = staged_grid(s, 1, self.config)[0]
        tile = b.i32("add", b.i32("mul", "%by", blocks_x), "%bx")
        flag = b.op(f"ptrtoint ptr addrspace(1) {b.offset('%flags', tile, 'i32')} to i64")
        first, last = b.op("icmp eq i32 %bz, 0"), b.op(f"icmp eq i32 %bz, {s.k_splits - 1}")
        leader = b.op("icmp eq i32 %tid, 0")

        def wait() -> None:
            spin, ready = b.label("split.spin"), b.label("split.ready")
            b.emit(f"br label %{spin}")
            b.begin(spin)
            done = b.op(f'call i32 asm sideeffect "ld.acquire.gpu.global.u32 $0, [$1];", "=r,l,~{{memory}}"(i64 {flag})')
            b.emit(f"br i1 {b.op(f'icmp eq i32 {done}, %bz')}, label %{ready}, label %{spin}")
            b.begin(ready)

        b.when(b.op(f"and i1 {leader}, {b.op('xor i1 ' + first + ', true')}"), "split.wait", wait)
        b.emit("call void @llvm.nvvm.barrier0()")
        vectors = self.acc_count // 4
        base = b.i32("add", b.i32("mul", tile, vectors * s.threads), "%tid")
        addresses = [
            b.op(f"ptrtoint ptr addrspace(1) {b.offset('%work', b.i32('add', base, i * s.threads), '<4 x float>')} to i64")
            for i in range(vectors)
        ]  # fmt: skip

        def add() -> None:
            for i, at in enumerate(addresses):
                four = b.op(f'call {{float, float, float, float}} asm sideeffect "ld.global.cg.v4.f32 {{$0, $1, $2, $3}}, '
                            f'[$4];", "=f,=f,=f,=f,l,~{{memory}}"(i64 {at})')  # fmt: skip
                for j in range(4):
                    slot = self.acc_at(4 * i + j)
                    total = b.op(f"fadd float {b.op(f'load float, ptr {slot}')}, {b.op(f'extractvalue {{float, float, float, float}} {four}, {j}')}")
                    b.emit(f"store float {total}, ptr {slot}")

        b.when(b.op(f"xor i1 {first}, true"), "split.add", add)
        keep, hand_on = b.label("split.last"), b.label("split.store")
        b.emit(f"br i1 {last}, label %{keep}, label %{hand_on}")
        b.begin(hand_on)
        for i, at in enumerate(addresses):
            values = ", ".join(f"float {b.op(f'load float, ptr {self.acc_at(4 * i + j)}')}" for j in range(4))
            b.emit(f'call void asm sideeffect "st.global.cg.v4.f32 [$0], {{$1, $2, $3, $4}};", "l,f,f,f,f,~{{memory}}"'
                   f"(i64 {at}, {values})")  # fmt: skip
        b.emit("call void @llvm.nvvm.barrier0()")
        next_split = b.i32("add", "%bz", 1)
        b.when(leader, "split.signal", lambda: b.emit(
            f'call void asm sideeffect "fence.acq_rel.gpu; st.relaxed.gpu.global.u32 [$0], $1;", "l,r,~{{memory}}"'
            f"(i64 {flag}, i32 {next_split})"))  # fmt: skip
        b.emit("ret void")
        b.begin(keep)
        b.when(leader, "split.reset", lambda: b.emit(
            f'call void asm sideeffect "st.relaxed.gpu.global.u32 [$0], 0;", "l,~{{memory}}"(i64 {flag})'))  # fmt: skip

    def epilogue(self) -> None:
        """Slice r's accumulator 4i + j: weight row 64r + g + 8 (j / 2) of the warp's, row 8i + 2t + j % 2 of x
        (after sum_splits, split-K's)."""
        s, b = self.s, self.b
        if s.k_splits > 1:
            self.sum_splits()
        count = s.block_cols // 2
        for r in range(self.slices):
            for i in range(count // 4):
                for j in range(4):
                    slot = self.acc_at(r * count + 4 * i + j)
                    n = b.i32("add", "%n.warp", r * WGMMA_ROWS + 8 * (j // 2))
                    m = b.i32("add", "%m.warp", 8 * i + j % 2)
                    self.store(b.op(f"load float, ptr {slot}"), b.i32("add", m, "%t2"), b.i32("add", n, "%g"))
        b.emit("ret void")

    def stage_map(self) -> None:
        """A hybrid weight's tile row of the tile map into shared memory (map_bytes), a word a thread."""
        s, b = self.s, self.b
        if not map_bytes(s, self.config):
            return
        tile_cols = s.tile_grid[1]
        first = b.i32("mul", self.tile_row(), tile_cols)

        def copy(column: str) -> None:
            entry = b.op(f"load i32, ptr addrspace(1) {b.offset('%map', b.i32('add', first, column), 'i32')}, align 4")
            b.emit(
                f"store i32 {entry}, ptr addrspace(3) {self.shared(b.i32('add', self.map_region, b.i32('shl', column, 2)))}"
            )

        for i in range(0, tile_cols, s.threads):
            column = b.i32("add", "%tid", i)
            b.when(b.op(f"icmp ult i32 {column}, {tile_cols}"), "map.copy", partial(copy, column))
        b.emit("call void @llvm.nvvm.barrier0()")

    def load_entry(self, tile_row: str, tile_col: str, inside: str) -> str:
        """The entry from shared memory, where stage_map put the block's tile row (tile_row's)."""
        b = self.b
        if not map_bytes(self.s, self.config):
            return super().load_entry(tile_row, tile_col, inside)
        at = b.i32("add", self.map_region, b.i32("shl", b.op(f"select i1 {inside}, i32 {tile_col}, i32 0"), 2))
        return b.op(f"load i32, ptr addrspace(3) {self.shared(at)}, align 4")

    def build(self) -> str:
        self.prologue()
        self.lanes()
        self.mainloop()
        self.epilogue()
        wgmma = [f"declare void @llvm.nvvm.wgmma.{name}.sync.aligned()" for name in ("fence", "commit_group")]
        declared = (*_ASYNC, *wgmma, "declare void @llvm.nvvm.fence.proxy.async.shared_cta()")
        if self.s.k_splits > 1:
            declared = (*declared, "declare i32 @llvm.nvvm.read.ptx.sreg.ctaid.z()")
        if self.config.cluster == 1:
            return self.module(("@smem = external addrspace(3) global [0 x i8], align 16",), declared)
        cluster = tuple(f"declare {f}()" for f in ("void @llvm.nvvm.barrier.cluster.arrive.relaxed.aligned",
                        "void @llvm.nvvm.barrier.cluster.wait.aligned", "i32 @llvm.nvvm.read.ptx.sreg.cluster.ctarank"))  # fmt: skip
        # x's tensor map (and the values') by value in the parameter space (CUDA's __grid_constant__ CUtensorMap)
        maps = ("%xmap", "%wmap") if self.config.tma_w else ("%xmap",)
        return self.module(("@smem = external addrspace(3) global [0 x i8], align 16",), (*declared, *cluster),
                           tuple(f'ptr byval([128 x i8]) align 64 "nvvm.grid_constant" {m}' for m in maps),
                           f'"nvvm.cluster_dim"="{self.config.cluster},1,1"')  # fmt: skip


def _k_step(format: str) -> int:
    return MMA_SPARSE[2] if format == "nm24" else 16


def _pair_count(format: str) -> int:
    """B's registers per 8 rows of x and k-step."""
    return _k_step(format) // 8


def _fragment_count(format: str) -> int:
    """A k-step's registers: A's 16, B's 8 x pairs, 4 metadata words (2:4)."""
    return 16 + 8 * _pair_count(format) + (4 if format == "nm24" else 0)


def _flat(fragments: Fragments) -> list[str]:
    a, xs, metas = fragments
    return [v for four in a for v in four] + [v for pair in xs for v in pair] + metas


def staged_ir(spec: GemmSpec, config: StagedConfig | None = None) -> str:
    """The staged-schedule kernel of `spec` as LLVM IR text (spec.warp_rows 4, spec.cols 8,
    spec.warps 4 or 8: 128 or 256 rows of x a block), by config_for(spec) unless given."""
    config = config or config_for(spec)
    return (_Wgmma if config.wgmma else _Staged)(spec, config).build()
