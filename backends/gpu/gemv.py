"""The GEMV schedule (calls of at most 16 rows of x): dense, int4/int8, 2:4 and hybrid
weights read once, 16 bytes a lane, by enough warps to keep the GPU's memory busy.

A block owns 16 weight rows (one mma tile) and its `warps` warps (GEMV_WARPS) split K
among them, step by step (a step: 4 lanes x one 16-byte piece of a row per lane), and
add their accumulators through shared memory at the end. A call of one row of a dense
weight has N / 16 blocks of 16 warps: 4096 warps for N = 4096, each with 4 steps'
loads in flight.

The reduction along K does not care in which order it meets the columns, so the
tensor cores are given the columns in the order the loads bring them: lane (g, t)
loads 16 bytes of weight rows g and g + 8 and of x row g at the same columns
c, ..., c + 7 (c = the step's first + 8t), and gives each m16n8k16 instruction its
pairs (c, c+1), (c+2, c+3) as the logical k-pairs 2t and 2t + 8 (then c + 4 ..., in a
second instruction). A and B are permuted alike, so the product is the same; every
load is a whole 16-byte vector and each warp's loads of a row are contiguous.

int4/int8 codes: a 16-byte piece holds 32 (16) codes of a row, all of one scale
group (the group a multiple of that, checked by the caller); they are dequantised in
registers (code x scale in f32, rounded once) into the pairs above, with 4 (2) pieces
of x to match.

2:4 weights (mma.sp.m16n8k32, packing/mma.py's metadata as it is): a warp's unit is a
chunk of 4 k-steps of 32 columns; lane t loads step t's 16 stored values of rows g and
g + 8 (2 x 16 bytes each). mma.sp pairs A's stored values with B's columns through
the metadata, so the permutation must move whole groups of 4 columns with their
nibbles: instruction i of a chunk takes group i of each half of every lane's step, i.e.
its logical group t of half h is group i of half h of step t. A's registers are then
the lane's own words; B's are x at those columns (lane t's pairs lie in steps t / 2 and
t / 2 + 2: two pieces of x per (step, half), half of each used); and the metadata word
a lane gives for half h is a 4 x 4 transpose of nibbles of the 4 steps' words (one
32-bit load each, as the other schedules read them). Half the weight's bytes of a
dense row, and an eighth more for the metadata.

Hybrid weights: warp w takes tile columns w, w + warps, ... of the block's tile row
(one warp a tile column where there are enough warps): a load of the tile map, then
a switch to the tile's dense steps or 2:4 chunks over its stored values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from stoicc_py.backends.gpu.kernel import LLVM_TYPES, SCALE_TYPES, GemmSpec, _Gemm, _Source
from stoicc_py.backends.gpu.target import MMA_SPARSE, WARP
from stoicc_py.packing.mma import FILL, MAP_CODE_BITS

GEMV_WARPS = {"dense": (16, 8), "int4": (8, 8), "int8": (8, 8), "nm24": (8, 8), "hybrid": (16, 8)}
"""Warps per block by weight format, for calls of one 8-row column of x and of two (more
warps did not fit the registers of two columns: 1024 threads of ~86 registers); a hybrid
weight's at most one a tile column. Measured on an H100 (docs/gpu.md)."""
GEMV_UNROLL = {"nm24": 1, "int4": 1}
"""Units (steps, 2:4 chunks) per loop iteration of a warp, 4 where not given: their loads
are issued together. One for int4 and 2:4: fewer registers, more blocks resident (H100
sweep, docs/gpu.md)."""
VECTOR = "<4 x i32>"
CODE_BITS = {"dense": 16, "int8": 8, "int4": 4}
MAGIC = {("int4", "f16"): (0x6400, 1024), ("int4", "bf16"): (0x4300, 128), ("int8", "f16"): (0x6400, 1024)}
"""(codes, dtype) -> (the bits of a float `base` whose unit in the last place is 1, base):
base + u is exact for every unsigned code u (bf16's 8-bit significand holds 128 + 255 not
exactly: int8 in bf16 takes the f32 path)."""


def _float_hex(ty: str, value: float) -> str:
    """An LLVM constant of type ty (half, bfloat) and value (exact in it), as its bits."""
    bits = (
        np.array(value, np.float16).view(np.uint16)
        if ty == "half"
        else np.array(value, np.float32).view(np.uint32) >> 16
    )
    return f"0x{'H' if ty == 'half' else 'R'}{int(bits):04X}"


def piece_columns(weight: str) -> int:
    """Weight columns in one 16-byte piece of a row."""
    return 128 // CODE_BITS[weight]


class _Gemv(_Gemm):
    """Builds a GEMV-schedule kernel (spec.schedule == "gemv", spec.cols 8-row columns of x)."""

    @staticmethod
    def unit_columns(format: str) -> int:
        """Dense columns of a warp's unit of work: a step (4 lanes x a piece) or a 2:4 chunk."""
        return 4 * (MMA_SPARSE[2] if format == "nm24" else piece_columns(format))

    def vector(self, base: str, row: str, rows: int | str, col: str, cols: int, row_bytes: int, bits: int,
               zero_rows: bool = True) -> str:  # fmt: skip
        """The 16 bytes of row `row` from column `col` of a row-major buffer of `bits`-bit
        elements (<4 x i32>), zero outside [rows, cols] (a piece is whole or absent): past
        cols unless the k-loop stays inside (whole_k), past rows where `zero_rows` (rows past
        x's feed only output columns that are not stored; their loads read row 0)."""
        b = self.b
        row_ok, col_ok = b.op(f"icmp ult i32 {row}, {rows}"), b.op(f"icmp ult i32 {col}, {cols}")
        # the row's part of the address apart: loop-invariant, LLVM hoists it out of the k-loop
        r, c = b.op(f"select i1 {row_ok}, i32 {row}, i32 0"), b.op(f"select i1 {col_ok}, i32 {col}, i32 0")
        row_at = b.op(f"mul i64 {b.op(f'zext i32 {r} to i64')}, {row_bytes}")
        row_ptr = b.op(f"getelementptr inbounds i8, ptr addrspace(1) {base}, i64 {row_at}")
        byte = b.op(f"zext i32 {b.i32('lshr', b.i32('mul', c, bits), 3)} to i64")
        ptr = b.op(f"getelementptr inbounds i8, ptr addrspace(1) {row_ptr}, i64 {byte}")
        value = b.op(f"load <4 x i32>, ptr addrspace(1) {ptr}, align 16, !invariant.load !{{}}")
        checks = [ok for ok, needed in ((row_ok, zero_rows), (col_ok, not self.whole_k)) if needed]
        if not checks:
            return value
        inside = checks[0] if len(checks) == 1 else b.op(f"and i1 {row_ok}, {col_ok}")
        return b.op(f"select i1 {inside}, <4 x i32> {value}, <4 x i32> zeroinitializer")

    @property
    def whole_k(self) -> bool:
        """Whether every unit of the k-loop lies inside K: a whole weight (k_split) whose K is
        whole units, as many as the warps' stride divides (no unit is padding); never with
        every_mask."""
        s = self.s
        if self.every_mask:
            return False
        unit = self.unit_columns(s.weight)
        return s.k % unit == 0 and s.k // unit % (s.warps * GEMV_UNROLL.get(s.weight, 4)) == 0

    def words(self, vector: str) -> list[str]:
        return [self.b.op(f"extractelement <4 x i32> {vector}, i32 {i}") for i in range(4)]

    def weight_pairs(self, format: str, words: list[str], scale: str | None, scaled: bool = True) -> list[str]:
        """The pairs of a piece of a row (its 4 words): 4 (dense), 8 (int8), 16 (int4),
        int4/int8 codes dequantised with their group's `scale` (of its stored type; the
        codes as they are where not `scaled`: post_scaled's steps)."""
        s, b = self.s, self.b
        bits = CODE_BITS[format]
        if scale is None:
            return words
        if (s.weight, s.dtype) in MAGIC and s.scale_type == s.dtype:
            return [p for word in words for p in self.magic_pairs(word, scale if scaled else None)]
        if s.scale_type != "f32":
            scale = b.op(f"fpext {SCALE_TYPES[s.scale_type]} {scale} to float")
        ty = LLVM_TYPES[s.dtype]
        values = []
        for word in words:  # codes LSB first: the lower column in the lower bits
            for j in range(32 // bits):
                shifted = b.op(f"shl i32 {word}, {32 - bits * (j + 1)}")
                code = b.op(f"sitofp i32 {b.op(f'ashr i32 {shifted}, {32 - bits}')} to float")
                values.append(b.op(f"fptrunc float {b.op(f'fmul float {code}, {scale}')} to {ty}"))
        pairs = []
        for low, high in zip(values[::2], values[1::2]):
            pair = b.op(f"insertelement <2 x {ty}> undef, {ty} {low}, i32 0")
            pair = b.op(f"insertelement <2 x {ty}> {pair}, {ty} {high}, i32 1")
            pairs.append(b.op(f"bitcast <2 x {ty}> {pair} to i32"))
        return pairs

    def scale(self, row: str, col: str) -> str:
        """The scale (of its stored type) of row `row`'s group at column `col`."""
        s, b = self.s, self.b
        groups = -(-s.k // s.group)
        scale_ty = SCALE_TYPES[s.scale_type]
        inside = b.op(f"icmp ult i32 {row}, {s.n}")
        r = b.op(f"select i1 {inside}, i32 {row}, i32 0")
        g = b.op(f"select i1 {b.op(f'icmp ult i32 {col}, {s.k}')}, i32 {b.i32('udiv', col, s.group)}, i32 0")
        at = b.offset("%scales", b.i32("add", b.i32("mul", r, groups), g), scale_ty)
        return b.op(f"load {scale_ty}, ptr addrspace(1) {at}, !invariant.load !{{}}")

    def magic_pairs(self, word: str, scale: str | None) -> list[str]:
        """A word's codes as pairs of the dtype by the float bit trick (MAGIC): each code,
        offset to unsigned, is OR-ed into the low mantissa bits of a float whose value is
        then exactly base + code + offset; one subtraction gives the code exactly and one
        multiplication by the scale rounds code x scale once (as the f32 path does: the
        product of a 4- or 8-bit code and a scale of the dtype is exact in f32). int4 in f16:
        nibble_pairs; else two codes per 32-bit lane (prmt places a pair's bytes)."""
        s, b = self.s, self.b
        bits = CODE_BITS[s.weight]
        magic, base = MAGIC[s.weight, s.dtype]
        ty = LLVM_TYPES[s.dtype]
        offset = 1 << (bits - 1)
        unsigned = b.op(f"xor i32 {word}, {int.from_bytes(bytes([offset * (17 if bits == 4 else 1)] * 4), 'little')}")
        if self.interleaved(s.weight):
            values = self.nibble_pairs(unsigned, magic, base + offset, base // 16 + offset)
        else:
            mask = 0x000F000F if bits == 4 else 0x00FF00FF
            low = b.op(f"bitcast i32 {unsigned} to <4 x i8>")
            high = b.op(f"bitcast i32 {b.op(f'lshr i32 {unsigned}, 4')} to <4 x i8>") if bits == 4 else low
            minus = self.splat(ty, base + offset)
            values = []
            for j in range(32 // bits // 2):  # int4: byte j's nibbles; int8: bytes 2j, 2j + 1
                lanes = (j, 4 + j) if bits == 4 else (2 * j, 2 * j + 1)  # each twice: bytes 0 and 2 are kept
                picked = b.op(f"shufflevector <4 x i8> {low}, <4 x i8> {high}, <4 x i32> "
                              f"<i32 {lanes[0]}, i32 {lanes[0]}, i32 {lanes[1]}, i32 {lanes[1]}>")  # fmt: skip
                masked = b.op(f"and i32 {b.op(f'bitcast <4 x i8> {picked} to i32')}, {mask}")
                bits32 = b.op(f"or i32 {masked}, {magic * 0x10001}")
                values.append(b.op(f"fsub <2 x {ty}> {b.op(f'bitcast i32 {bits32} to <2 x {ty}>')}, {minus}"))
        if scale is not None:
            pair = b.op(f"insertelement <2 x {ty}> undef, {ty} {scale}, i32 0")
            scales = b.op(f"shufflevector <2 x {ty}> {pair}, <2 x {ty}> undef, <2 x i32> zeroinitializer")
            values = [b.op(f"fmul <2 x {ty}> {v}, {scales}") for v in values]
        return [b.op(f"bitcast <2 x {ty}> {v} to i32") for v in values]

    def nibble_pairs(self, unsigned: str, magic: int, low_minus: int, high_minus: int) -> list[str]:
        """The 8 unsigned nibbles of a word as 4 pairs of the dtype, code - offset exact:
        columns (0, 4), (1, 5), (2, 6), (3, 7) of its 8, the pairs one lop3 each leaves in
        place (nibbles 0 and 4 as the low mantissa bits; 1 and 5 sixteen times them, scaled
        back by the same fma that subtracts), of the word and of it shifted by a byte.
        step_mma pairs x's columns alike (interleaved)."""
        b, ty = self.b, LLVM_TYPES[self.s.dtype]
        sixteenth = self.splat(ty, 1 / 16)
        pairs = []
        for word in (unsigned, b.op(f"lshr i32 {unsigned}, 8")):
            for high in (False, True):
                mask = 0x00F000F0 if high else 0x000F000F
                # (word & mask) | magic in one instruction (LLVM's and + or are two for ptxas)
                fused = b.op(f'call i32 asm "lop3.b32 $0, $1, $2, $3, 0xEA;", "=r,r,n,n"'
                             f"(i32 {word}, i32 {mask}, i32 {magic * 0x10001})")  # fmt: skip
                value = b.op(f"bitcast i32 {fused} to <2 x {ty}>")
                if high:
                    scaled = b.op(f"fmul contract <2 x {ty}> {value}, {sixteenth}")
                    pairs.append(b.op(f"fsub contract <2 x {ty}> {scaled}, {self.splat(ty, high_minus)}"))
                else:
                    pairs.append(b.op(f"fsub <2 x {ty}> {value}, {self.splat(ty, low_minus)}"))
        return pairs

    @staticmethod
    def splat(ty: str, value: float) -> str:
        return f"<{ty} {_float_hex(ty, value)}, {ty} {_float_hex(ty, value)}>"

    def halves(self, first: str, second: str, high: int) -> str:
        """The word of `first`'s and `second`'s low (high: 1) 16-bit halves (a prmt)."""
        b = self.b
        a, c = (b.op(f"bitcast i32 {w} to <2 x i16>") for w in (first, second))
        return b.op(f"bitcast <2 x i16> {b.op(f'shufflevector <2 x i16> {a}, <2 x i16> {c}, <2 x i32> <i32 {high}, i32 {2 + high}>')} to i32")

    @property
    def every_mask(self) -> bool:
        """Whether every load keeps its masks (rows past N or M, columns past K): 2:4 and
        hybrid weights, whose PTX stays as measured (without them ptxas gave the 2:4 GEMV of
        two columns a stack frame, H100 8192², M = 16 34.9 -> 47.1 µs, and the hybrid one at
        M = 1 ran 39.7 -> 41.0)."""
        return self.s.weight in ("hybrid", "nm24")

    @property
    def ragged_n(self) -> bool:
        """Whether some block's 16 weight rows reach past N (or every_mask)."""
        return self.s.n % 16 != 0 or self.every_mask

    def x_pairs(self, format: str, words: list[str]) -> list[str]:
        """A piece of x (4 words, 8 columns) as the pairs that weight pairs 4p ... 4p + 3 of
        its columns meet: its words, or (c, c + 4), (c + 1, c + 5) ... where interleaved."""
        if not self.interleaved(format):
            return words
        return [self.halves(words[h], words[h + 2], odd) for h in range(2) for odd in range(2)]

    def interleaved(self, format: str) -> bool:
        """Whether a step's weight pairs hold columns (c, c + 4) (nibble_pairs), not (c, c + 1):
        int4 in f16 with f16 scales (bf16's 7 mantissa bits cannot hold a nibble at bits 4-7,
        the place nibble_pairs' second lop3 leaves it; bf16 keeps a prmt a pair)."""
        s = self.s
        return format == "int4" and s.dtype == "f16" and s.scale_type == s.dtype

    def fetch(self, src: _Source, index: str) -> tuple[list[tuple[str, str]], Callable[[list[str]], None]]:
        """The loads of unit `index` of src, as (type, value), and what computes with them."""
        return (self.fetch_chunk if src.format == "nm24" else self.fetch_step)(src, index)

    def unit(self, src: _Source, index: str) -> None:
        loaded, compute = self.fetch(src, index)
        compute([value for _, value in loaded])

    def fetch_step(self, src: _Source, index: str) -> tuple[list[tuple[str, str]], Callable[[list[str]], None]]:
        """A step of a dense or int4/int8 source (4 lanes x a piece of rows g and g + 8):
        the two weight pieces (and their scales), the pieces of x at their columns."""
        s, b = self.s, self.b
        bits = CODE_BITS[src.format]
        col = b.i32(
            "add", b.i32("mul", index, self.unit_columns(src.format)), b.i32("mul", "%t", piece_columns(src.format))
        )
        rows = [b.i32("add", src.row0, r) for r in ("%g", b.i32("add", "%g", 8))]
        loaded = [(VECTOR, self.vector(src.base, r, src.rows, col, src.cols, src.cols * bits // 8, bits, self.ragged_n))
                  for r in rows]  # fmt: skip
        if src.format != "dense":
            loaded += [(SCALE_TYPES[s.scale_type], self.scale(r, col)) for r in rows]
        x_col = b.i32("add", src.k_base, col)
        pieces = 16 // bits  # of x, 8 columns each: 1 (dense), 2 (int8), 4 (int4)
        loaded += [(VECTOR, self.x_piece(j, b.i32("add", x_col, 8 * p))) for j in range(s.cols) for p in range(pieces)]
        return loaded, lambda values: self.step_mma(src.format, values)

    def step_mma(self, format: str, values: list[str]) -> None:
        """A step's mma from its loads (fetch_step's order)."""
        s = self.s
        quantized = format != "dense"
        scales: list[str | None] = [*values[2:4]] if quantized else [None, None]
        post = self.post_scaled(format)
        low, high = (self.weight_pairs(format, self.words(v), scale, not post) for v, scale in zip(values[:2], scales))
        xs = values[4 if quantized else 2 :]
        pieces = len(low) // 4
        for j in range(s.cols):
            sums = ["0.0"] * 4
            for p in range(pieces):  # a piece of x: 8 columns, 2 instructions
                x = self.x_pairs(format, self.words(xs[j * pieces + p]))
                for h in range(2):
                    a = [low[4 * p + 2 * h], high[4 * p + 2 * h], low[4 * p + 2 * h + 1], high[4 * p + 2 * h + 1]]
                    if post:
                        sums = self.mma_values("dense", a, x[2 * h : 2 * h + 2], sums)
                    else:
                        self.mma("dense", a, x[2 * h : 2 * h + 2], (0, j), None)
            if post:
                self.add_scaled(sums, values[2:4], j)

    def post_scaled(self, format: str) -> bool:
        """Whether a step's codes go to the tensor cores unscaled, their f32 sums then scaled
        once (add_scaled): int4 by nibble_pairs where a step (4 lanes x 32 codes) lies in one
        scale group of each row, 4 multiply-adds a step instead of 32 f16x2 multiplications.
        Calls of one 8-row column only: with two, its sums took the kernel from 64 registers
        to 76, 3 blocks an SM instead of 4 (H100: 8192², M = 16 26.5 -> 38.5 µs, 2 waves)."""
        s = self.s
        whole = s.group % self.unit_columns(format) == 0 or s.group >= s.k
        return s.cols == 1 and self.interleaved(format) and whole

    def add_scaled(self, sums: list[str], scales: list[str], j: int) -> None:
        """Column j's accumulators += a step's sums x their rows' scales (rows g, g + 8: sums 0-1, 2-3)."""
        b, ty = self.b, SCALE_TYPES[self.s.scale_type]
        factors = [b.op(f"fpext {ty} {scale} to float") for scale in scales]
        for i, value in enumerate(sums):
            slot = self.acc_slot((0, j), i)
            scaled = b.op(f"fmul contract float {value}, {factors[i // 2]}")
            total = b.op(f"fadd contract float {scaled}, {b.op(f'load float, ptr {slot}')}")
            b.emit(f"store float {total}, ptr {slot}")

    def x_piece(self, j: int, col: str) -> str:
        """The 16 bytes of x row g of 8-row column j from column `col` (zero outside x; rows
        past M not zeroed but with every_mask)."""
        s, b = self.s, self.b
        row = b.i32("add", "%m.block", b.i32("add", "%g", 8 * j))
        return self.vector("%x", row, "%M", col, s.k, s.k * 2, 16, self.every_mask)

    def fetch_chunk(self, src: _Source, index: str) -> tuple[list[tuple[str, str]], Callable[[list[str]], None]]:
        """Chunk `index` of a 2:4 source: 4 k-steps of 32 dense columns, lane t loading
        step t's 16 stored values of rows g and g + 8 (two 16-byte pieces each). Instruction
        i takes group i of every lane's halves: its logical group t of half h is group i of
        half h of step t, so A's pairs are the lane's own words, B's x at those columns, and
        the metadata nibbles a 4 x 4 transpose of the steps' words (nibble_transpose)."""
        s, b = self.s, self.b
        first = b.i32("shl", index, 2)
        col = b.i32("shl", b.i32("add", first, "%t"), 4)  # stored values: 16 a step
        rows = [b.i32("add", src.row0, r) for r in ("%g", b.i32("add", "%g", 8))]
        loaded = [(VECTOR, self.vector(src.base, r, src.rows, b.i32("add", col, 8 * h), src.cols, src.cols * 2, 16,
                                       self.ragged_n)) for r in rows for h in range(2)]  # fmt: skip
        loaded += [("i32", self.meta_word(src, b.i32("add", first, step))) for step in range(4)]
        for j in range(s.cols):  # b_q (q < 4) of lane t: half q // 2 of step t // 2 + 2 (q % 2), its two pieces
            for q in range(4):
                dense = b.i32("shl", b.i32("add", first, b.i32("add", "%t.half", 2 * (q % 2))), 5)
                dense = b.i32("add", src.k_base, b.i32("add", dense, 16 * (q // 2)))
                loaded += [(VECTOR, self.x_piece(j, b.i32("add", dense, 8 * p))) for p in range(2)]
        return loaded, self.chunk_mma

    def chunk_mma(self, values: list[str]) -> None:
        """A chunk's mma.sp from its loads (fetch_chunk's order)."""
        s, b = self.s, self.b
        w = [self.words(v) for v in values[:4]]  # [row g half 0, row g half 1, row g + 8 half 0, half 1]
        meta = self.nibble_transpose(values[4:8])
        odd = b.op("icmp ne i32 %t1, 0")
        for j in range(s.cols):
            pieces = [self.words(v) for v in values[8 + 8 * j : 16 + 8 * j]]  # [q][p]
            for i in range(4):
                a = [w[0][i], w[2][i], w[1][i], w[3][i]]
                x = [b.op(f"select i1 {odd}, i32 {pieces[2 * q + i // 2][2 * (i % 2) + 1]}, "
                          f"i32 {pieces[2 * q + i // 2][2 * (i % 2)]}") for q in range(4)]  # fmt: skip
                self.mma("nm24", a, x, (0, j), meta[i])

    def meta_word(self, src: _Source, step: str) -> str:
        """Lane (g, t)'s word of packing/mma.py's metadata at k-step `step` of the block's 16
        rows, half t % 2 (the half that lane supplies); FILL past the source's steps."""
        b = self.b
        tile = b.i32("lshr", src.row0, 4)
        inside = b.op(f"icmp ult i32 {step}, {src.meta_steps}")
        at = b.i32("add", b.i32("shl", b.i32("add", b.i32("mul", tile, src.meta_steps), step), 4), "%meta.lane")
        at = b.op(f"select i1 {inside}, i32 {at}, i32 0")
        word = b.op(f"load i32, ptr addrspace(1) {b.offset(str(src.meta), at, 'i32')}, align 4, !invariant.load !{{}}")
        return b.op(f"select i1 {inside}, i32 {word}, i32 {FILL}")

    def nibble_transpose(self, words: list[str]) -> list[str]:
        """out[i] nibble t = words[t] nibble i, in each 16-bit half (rows g and g + 8): the
        bytes of step pairs interleaved (prmt), then each nibble shifted into place."""
        b = self.b
        as_bytes = [b.op(f"bitcast i32 {w} to <4 x i8>") for w in words]
        mixed = [[b.op(f"bitcast <4 x i8> {b.op(f'shufflevector <4 x i8> {as_bytes[2 * u]}, <4 x i8> {as_bytes[2 * u + 1]}, <4 x i32> <i32 {e}, i32 {4 + e}, i32 {2 + e}, i32 {6 + e}>')} to i32")
                  for e in range(2)] for u in range(2)]  # fmt: skip
        # mixed[u][e] (per half) holds byte e of words 2u and 2u + 1: their nibbles 2e + f at f and 2 + f

        def moved(word: str, src: int, dst: int) -> str:
            shift = 4 * (dst - src)
            op = f"shl i32 {word}, {shift}" if shift > 0 else f"lshr i32 {word}, {-shift}"
            return b.op(f"and i32 {b.op(op) if shift else word}, {0x000F000F << (4 * dst)}")

        out = []
        for i in range(4):
            e, f = i // 2, i % 2
            parts = [moved(mixed[t // 2][e], f + 2 * (t % 2), t) for t in range(4)]
            out.append(
                b.op(f"or i32 {b.op(f'or i32 {parts[0]}, {parts[1]}')}, {b.op(f'or i32 {parts[2]}, {parts[3]}')}")
            )
        return out

    def k_split(self) -> None:
        """A whole weight: warp w takes units w, w + warps, ...; GEMV_UNROLL of them an
        iteration, their loads issued together. (Loading the next iteration's while
        computing, carried in registers, was slower on the H100: more registers, no gain.)"""
        s, b = self.s, self.b
        base = {"dense": "%w"}.get(s.weight, "%values")
        cols = s.k // 2 if s.weight == "nm24" else s.k
        src = _Source(s.weight, base, "%n.warp", s.n, cols, "0", "%meta", -(-s.k // MMA_SPARSE[2]))
        units = -(-s.k // self.unit_columns(s.weight))
        unroll = GEMV_UNROLL.get(s.weight, 4)
        stride = s.warps * unroll

        def iteration(i: str) -> None:
            for u in range(unroll):
                self.unit(src, b.i32("add", b.i32("add", i, u * s.warps), "%warp"))

        b.loop(-(-units // stride) * stride, stride, iteration, unroll=False)

    def hybrid(self) -> None:
        """A hybrid weight: warp w takes tile columns w, w + warps, ... of the block's tile
        row (a tile: a switch on its map entry to its format's units, GEMV_UNROLL of them
        together: one a loop iteration, each unit's loads waited for the one before's mma,
        4096^2, M = 1, 8.4 µs against dense's 7.7 on the H100).

        Calls of two 8-row columns of x, where a warp has at most 32 tiles, load their map
        entries at once, one a lane, and each tile takes its own by a shuffle, so that its
        loads wait for one load, not two in a row (H100, M = 16: 8192^2 51.0 -> 43.7 µs,
        4096^2 9.9 -> 9.6). Calls of one column load a tile's entry in its iteration: with
        the shuffle, ptxas issued some of a dense tile's loads after its first mma (8192^2,
        M = 1: 40.7 -> 43.6 µs)."""
        s, b = self.s, self.b
        (th, tw), tile_cols = s.tile, s.tile_grid[1]
        tile_row = b.i32("udiv", "%n.warp", th)  # the grid covers N: inside
        row0 = b.i32("sub", "%n.warp", b.i32("mul", tile_row, th))
        mask = (1 << MAP_CODE_BITS) - 1

        def map_entry(kt: str) -> tuple[str, str]:  # (kt inside the row, its entry: the first's past it)
            inside = b.op(f"icmp ult i32 {kt}, {tile_cols}")
            at = b.op(f"select i1 {inside}, i32 {b.i32('add', b.i32('mul', tile_row, tile_cols), kt)}, i32 0")
            return inside, b.op(
                f"load i32, ptr addrspace(1) {b.offset('%map', at, 'i32')}, align 4, !invariant.load !{{}}"
            )

        def tile(kt: str, code: str, slot: str) -> None:
            def case(f: int, format: str, values: str) -> None:
                sparse = format == "nm24"
                meta = b.offset(f"%meta{f}", b.i32("mul", slot, th // 16 * (tw // 32) * 16), "i32") if sparse else None
                src = _Source(format, values, row0, th, tw // 2 if sparse else tw, b.i32("mul", kt, tw), meta, tw // 32)
                units, together = -(-tw // self.unit_columns(format)), GEMV_UNROLL.get(format, 4)

                def some(first: str) -> None:  # units from `first`, their loads issued together
                    for u in range(min(units, together)):
                        self.unit(src, b.i32("add", first, u))

                if units <= together:  # straight-line: all the tile's
                    some("0")
                else:
                    b.loop(-(-units // together) * together, together, some)

            self.switch_on_format(code, slot, case)

        per_warp = -(-tile_cols // s.warps)
        if s.cols > 1 and per_warp <= WARP:  # lane l: the entry of the warp's tile l (0 past the row's last)
            inside, entry = map_entry(b.i32("add", "%warp", b.i32("mul", "%lane", s.warps)))
            held = b.op(f"select i1 {inside}, i32 {entry}, i32 0")

            def shuffled(j: str) -> None:
                mine = b.op(f"call i32 @llvm.nvvm.shfl.sync.idx.i32(i32 -1, i32 {held}, i32 {j}, i32 31)")
                tile(
                    b.i32("add", "%warp", b.i32("mul", j, s.warps)),
                    b.i32("and", mine, mask),
                    b.i32("lshr", mine, MAP_CODE_BITS),
                )

            b.loop(per_warp, 1, shuffled, unroll=False)
            return

        def loaded(i: str) -> None:
            kt = b.i32("add", i, "%warp")
            inside, entry = map_entry(kt)
            code = b.op(f"select i1 {inside}, i32 {b.i32('and', entry, mask)}, i32 0")
            tile(kt, code, b.i32("lshr", entry, MAP_CODE_BITS))

        b.loop(per_warp * s.warps, s.warps, loaded, unroll=False)

    def reduce(self) -> None:
        """The warps' accumulators added through shared memory:
        slot i < 128 x cols holds lane i % 32's accumulator (i / 32) % 4 of column i / 128,
        summed over the warps by thread i % threads (in passes where there are fewer threads)."""
        s, b = self.s, self.b
        per_warp = 4 * s.cols * 32
        for j in range(s.cols):
            for i in range(4):
                total = b.op(f"load float, ptr {self.acc_slot((0, j), i)}")
                slot = b.i32("add", b.i32("mul", "%warp", per_warp), b.i32("add", "%lane", (j * 4 + i) * 32))
                b.emit(f"store float {total}, ptr addrspace(3) "
                       f"{b.op(f'getelementptr inbounds float, ptr addrspace(3) @partial, i32 {slot}')}")  # fmt: skip
        b.emit("call void @llvm.nvvm.barrier0()")
        for first in range(0, per_warp, s.threads):
            self.sum_slot(b.i32("add", "%tid", first), per_warp)
        b.emit("ret void")

    def sum_slot(self, index: str, per_warp: int) -> None:
        """y at slot `index` (if < per_warp) = the warps' partial sums there."""
        s, b = self.s, self.b

        def add_and_store() -> None:
            total = "0.0"
            for other in range(s.warps):
                at = b.op(
                    f"getelementptr inbounds float, ptr addrspace(3) @partial, i32 {b.i32('add', index, other * per_warp)}"
                )
                total = b.op(f"fadd float {total}, {b.op(f'load float, ptr addrspace(3) {at}')}")
            lane, slot, col = b.i32("and", index, 31), b.i32("and", b.i32("lshr", index, 5), 3), b.i32("lshr", index, 7)
            g, t = b.i32("lshr", lane, 2), b.i32("and", lane, 3)
            n = b.i32("add", "%n.warp", b.i32("add", g, b.i32("mul", b.i32("lshr", slot, 1), 8)))
            m = b.i32("add", "%m.block", b.i32("mul", col, 8))
            m = b.i32("add", m, b.i32("add", b.i32("shl", t, 1), b.i32("and", slot, 1)))
            self.store(total, m, n)

        b.when(b.op(f"icmp ult i32 {index}, {per_warp}"), "sum", add_and_store)

    def build(self) -> str:
        s, b = self.s, self.b
        self.prologue()
        b.emit("%t1 = and i32 %t, 1")
        b.emit("%t.half = lshr i32 %t, 1")
        b.emit("%meta.lane = add i32 %t1, " + b.i32("shl", "%g", 1))
        if s.weight == "hybrid":
            self.hybrid()
        else:
            self.k_split()
        self.reduce()
        shared = f"@partial = internal addrspace(3) global [{s.warps * 4 * s.cols * 32} x float] undef, align 16"
        declared = ["declare void @llvm.nvvm.barrier0()"]
        if s.weight == "hybrid":
            declared.append("declare i32 @llvm.nvvm.shfl.sync.idx.i32(i32, i32, i32, i32)")
        return self.module((shared,), tuple(declared))

    def warp_rows_offset(self) -> str:
        return "0"  # the block's warps share its 16 rows


def gemv_spec(spec: GemmSpec, m: int) -> GemmSpec | None:
    """The GEMV schedule of a call of m (<= 16) rows of `spec`, if its weight's rows are
    whole 16-byte pieces (dense: K a multiple of 8, int8 16, int4 32, a scale group a
    multiple of that; 2:4: 16 stored values; hybrid: K a multiple of 8, x's pieces)."""
    s = spec
    if s.weight in CODE_BITS:
        piece = piece_columns(s.weight)
        fits = s.k % piece == 0 and (s.weight == "dense" or s.group % piece == 0)
    else:
        fits = s.k % (16 if s.weight == "nm24" else 8) == 0
    if not fits:
        return None
    cols = max(1, -(-m // 8))
    warps = GEMV_WARPS[s.weight][cols - 1]
    if s.weight == "hybrid":
        warps = min(warps, s.tile_grid[1])
    return replace(s, warps=warps, warp_rows=1, cols=cols, schedule="gemv")


def gemv_ir(spec: GemmSpec) -> str:
    """The GEMV-schedule kernel of `spec` as LLVM IR text."""
    return _Gemv(spec).build()
