"""2:4 and hybrid weights as the GPU kernels read them: layouts of their codecs' arrays.

The nm codec (codec/nm.py) packs a row's 2-bit positions LSB-first, 16 to a 32-bit
word, slot order, ascending within each group of 4: word w of a row holds the dense
columns 32w ... 32w + 31, bits 16p ... 16p + 15 its columns 32w + 16p ... + 15, each
group's two positions in one nibble (lower position in the lower two bits). That is
the metadata nibble of mma.sp (PTX ISA, "Sparse matrix storage"), so the GPU layout
only moves 16-bit halves of the codec's words: for the m16n8k32 instruction with
sparsity selector 0, lane 4g + p of a warp holds, for its tile's rows g (low half)
and g + 8 (high half), the metadata of the step's columns 16p ... 16p + 15.

    meta[tile, step, g, p] = half p of word `step` of row 16 tile + g
                           | half p of word `step` of row 16 tile + g + 8  << 16

wgmma.sp (m64nNk32, the staged kernel's wgmma variant) reads the same words in a second
arrangement: thread 32w + 4g + q of the warpgroup passes, for its 64-row slice s and k-step,
word [4s + w, step, g, q % 2] (warp w holds the slice's rows 16w ... 16w + 15 as mma.sp's
m16n8k32 holds a tile; lanes 4g + 2 and 4g + 3 repeat 4g and 4g + 1, so either sparsity
selector reads them). That is CUTLASS's ELayout_64x32 (cute/atom/mma_traits_sm90_gmma_sparse.hpp:
thread (2, 2, 8, 4) : (16 columns, 0, 1 row, 16 rows), value (16, 2) : (1 column, 8 rows))
and the metadata XLA's sparse dot passes wgmma.sp; wgmma_sp_registers() spells it out.

Columns past the weight's k in its last word (which the codec leaves 0) and rows
past its n get the nibble 0b0100 (positions 0 and 1): 0b0000 is not valid metadata
(undefined behaviour), and those columns multiply zero values anyway. The stored
values need no change: a row's slots are the compressed A operand, as they are.

A hybrid weight (codec/hybrid.py) keeps its stored tiles as they are (each 2:4 tile's
metadata laid out as above, tile by tile) and replaces the table and schedules by a
tile map: per tile, its table code in the low 8 bits and its index among its format's
stored tiles above (what a GPU block reads for the tile in one load).
"""

from __future__ import annotations

import numpy as np

from stoicc_py.codec import Array
from stoicc_py.codec.hybrid import HybridCodec, role, table_code
from stoicc_py.codec.nm import INDEX_WORD_BITS, NMCodec
from stoicc_py.codec.schedule import entry_rows

TILE_ROWS, STEP_COLS = 16, 32
"""mma.sp.m16n8k32: 16 weight rows and 32 dense columns (one index word) per instruction."""
SLICE_ROWS = 64
"""wgmma.sp.m64nNk32: 64 weight rows (4 warps' tiles) of a warpgroup."""
HALF_BITS = INDEX_WORD_BITS // 2
FILL = 0x4444_4444
"""Index words of positions (0, 1) in every group: valid metadata for what holds no weight."""
MAP_CODE_BITS = 8


def _filled(codec: NMCodec, words: Array, rows: int) -> Array:
    """Index words [tiles * 16, steps] as uint32, with the rows past `rows` and the groups
    past the codec's width given valid metadata nibbles."""
    tiles = -(-rows // TILE_ROWS)
    out = np.full((tiles * TILE_ROWS, codec.words), FILL, np.uint32)
    out[:rows] = words.view(np.uint32)
    groups_per_word = INDEX_WORD_BITS // (codec.n * codec.index_bits)
    last_groups = codec.groups - (codec.words - 1) * groups_per_word
    if last_groups < groups_per_word:  # the last word's empty groups
        nibbles = last_groups * codec.n * codec.index_bits
        pad = np.uint32((FILL >> nibbles) << nibbles)
        out[:rows, -1] |= pad
    return out


def mma_sp_metadata(codec: NMCodec, words: Array, rows: int) -> Array:
    """The metadata [ceil(rows / 16), steps, 8, 2] (uint32) of 2:4 rows whose int32 index
    words [rows, steps] the nm codec wrote: see the module's docstring."""
    if (codec.n, codec.m) != (2, 4):
        raise ValueError(f"mma.sp takes 2:4 weights, not {codec.n}:{codec.m}")
    full = _filled(codec, words, rows)
    tiles = full.shape[0] // TILE_ROWS
    by_row = full.reshape(tiles, 2, 8, codec.words)  # [tile, row half (g or g + 8), g, step]
    halves = [(by_row >> np.uint32(HALF_BITS * p)) & np.uint32(0xFFFF) for p in range(2)]
    meta = np.stack([h[:, 0] | (h[:, 1] << np.uint32(HALF_BITS)) for h in halves], axis=-1)  # [tile, g, step, p]
    return np.ascontiguousarray(meta.transpose(0, 2, 1, 3))


def wgmma_sp_registers(meta: Array) -> Array:
    """The metadata register [ceil(tiles / 4), steps, 128] (uint32) of each thread of a
    warpgroup for wgmma.sp per 64-row slice and k-step, from mma_sp_metadata's words
    [tiles, steps, 8, 2] (a slice past the last tile: FILL): see the module's docstring."""
    tiles, steps = meta.shape[:2]
    slices = -(-tiles // (SLICE_ROWS // TILE_ROWS))
    words = np.full((slices * SLICE_ROWS // TILE_ROWS, steps, 8, 2), FILL, np.uint32)
    words[:tiles] = meta
    by_thread = words.reshape(slices, 4, steps, 8, 1, 2).repeat(2, axis=4)  # [slice, w, step, g, q // 2, q % 2]
    return np.ascontiguousarray(by_thread.transpose(0, 2, 1, 3, 4, 5).reshape(slices, steps, 128))


def hybrid_tile_map(codec: HybridCodec, arrays: dict[str, Array]) -> Array:
    """int32 [tile rows * tile cols]: each tile's table code | its index among its format's
    stored tiles (schedule order) << MAP_CODE_BITS; 0 for an empty tile."""
    tile_rows, tile_cols = codec.grid
    tile_map = np.zeros(tile_rows * tile_cols, np.int64)
    for f in range(len(codec.formats)):
        rowptr, cols = arrays[role(f, "rowptr")], arrays[role(f, "cols")]
        at = entry_rows(rowptr) * tile_cols + cols.astype(np.int64)
        tile_map[at] = table_code(f) | (np.arange(at.size) << MAP_CODE_BITS)
    return tile_map.astype(np.int32)


def hybrid_gpu_arrays(codec: HybridCodec, arrays: dict[str, Array]) -> list[Array]:
    """The hybrid weight's arrays in the kernel's parameter order: the tile map, then per
    format its stored tiles' values and, for 2:4, their metadata [tiles, th / 16, tw / 32, 8, 2]."""
    th, _ = codec.tile
    out = [hybrid_tile_map(codec, arrays)]
    for f, code in enumerate(codec.formats):
        values = arrays[role(f, "values")]
        out.append(values)
        if code is not None:
            indices = arrays[role(f, "indices")]
            tiles = indices.shape[0]
            meta = mma_sp_metadata(code, indices.reshape(tiles * th, code.words), tiles * th)
            out.append(meta.reshape(tiles, th // TILE_ROWS, *meta.shape[1:]))
    return out
