"""The GEMV schedule (calls of at most 16 rows of x): dense and int4/int8 weights read
once, 16 bytes a lane, by enough warps to keep the GPU's memory busy.

A block owns 16 weight rows (one mma tile) and its `warps` warps split K among them,
step by step (a step: 4 lanes x one 16-byte piece of a row per lane), and add their
accumulators through shared memory at the end. A call of one row has N / 16 blocks
of 8 warps: 2048 warps for N = 4096, each with 4 steps' loads in flight.

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
"""

from __future__ import annotations

import numpy as np

from stoicc_py.backends.gpu.kernel import LLVM_TYPES, SCALE_TYPES, GemmSpec, _Gemm

GEMV_WARPS = 8
GEMV_UNROLL = 4
"""Steps per loop iteration of a warp: their loads are issued together."""
CODE_BITS = {"dense": 16, "int8": 8, "int4": 4}
MAGIC = {("int4", "f16"): (0x6400, 1024), ("int4", "bf16"): (0x4300, 128), ("int8", "f16"): (0x6400, 1024)}
"""(codes, dtype) -> (the bits of a float `base` whose unit in the last place is 1, base):
base + u is exact for every unsigned code u (bf16's 8-bit significand holds 128 + 255 not
exactly: int8 in bf16 takes the f32 path)."""


def _float_hex(ty: str, value: int) -> str:
    """An LLVM constant of type ty (half, bfloat) and integer value, as its bits."""
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

    @property
    def step_columns(self) -> int:
        return 4 * piece_columns(self.s.weight)

    def vector(self, base: str, row: str, rows: int | str, col: str, cols: int, row_bytes: int, bits: int) -> str:
        """The 16 bytes of row `row` from column `col` of a row-major buffer of `bits`-bit
        elements (<4 x i32>), zero outside [rows, cols] (a piece is whole or absent)."""
        b = self.b
        inside = b.op(f"and i1 {b.op(f'icmp ult i32 {row}, {rows}')}, {b.op(f'icmp ult i32 {col}, {cols}')}")
        r, c = b.op(f"select i1 {inside}, i32 {row}, i32 0"), b.op(f"select i1 {inside}, i32 {col}, i32 0")
        wide_r, wide_c = b.op(f"zext i32 {r} to i64"), b.op(f"zext i32 {c} to i64")
        byte = b.op(f"lshr i64 {b.op(f'mul i64 {wide_c}, {bits}')}, 3")
        at = b.op(f"add i64 {b.op(f'mul i64 {wide_r}, {row_bytes}')}, {byte}")
        ptr = b.op(f"getelementptr inbounds i8, ptr addrspace(1) {base}, i64 {at}")
        value = b.op(f"load <4 x i32>, ptr addrspace(1) {ptr}, align 16, !invariant.load !{{}}")
        return b.op(f"select i1 {inside}, <4 x i32> {value}, <4 x i32> zeroinitializer")

    def words(self, vector: str) -> list[str]:
        return [self.b.op(f"extractelement <4 x i32> {vector}, i32 {i}") for i in range(4)]

    def weight_pairs(self, row: str, col: str) -> list[str]:
        """The pairs of row `row` from column `col`, one piece: 4 (dense), 8 (int8), 16 (int4)."""
        s, b = self.s, self.b
        bits = CODE_BITS[s.weight]
        base = "%w" if s.weight == "dense" else "%values"
        words = self.words(self.vector(base, row, s.n, col, s.k, s.k * bits // 8, bits))
        if s.weight == "dense":
            return words
        scale = self.scale(row, col)
        if (s.weight, s.dtype) in MAGIC and s.scale_type == s.dtype:
            return [p for word in words for p in self.magic_pairs(word, scale)]
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

    def magic_pairs(self, word: str, scale: str) -> list[str]:
        """A word's codes as pairs of the dtype by the float bit trick (MAGIC): each code,
        offset to unsigned, is OR-ed into the low mantissa bits of a float whose value is
        then exactly base + code + offset; one subtraction gives the code exactly and one
        multiplication by the scale rounds code x scale once (as the f32 path does: the
        product of a 4- or 8-bit code and a scale of the dtype is exact in f32). Two
        codes per 32-bit lane (prmt places a pair's bytes), ~2 instructions a code rather
        than the f32 path's ~5."""
        s, b = self.s, self.b
        bits = CODE_BITS[s.weight]
        magic, base = MAGIC[s.weight, s.dtype]
        ty = LLVM_TYPES[s.dtype]
        offset = 1 << (bits - 1)
        unsigned = b.op(f"xor i32 {word}, {int.from_bytes(bytes([offset * (17 if bits == 4 else 1)] * 4), 'little')}")
        mask = 0x000F000F if bits == 4 else 0x00FF00FF
        low = b.op(f"bitcast i32 {unsigned} to <4 x i8>")
        high = b.op(f"bitcast i32 {b.op(f'lshr i32 {unsigned}, 4')} to <4 x i8>") if bits == 4 else low
        minus = f"<{ty} {_float_hex(ty, base + offset)}, {ty} {_float_hex(ty, base + offset)}>"
        pair = b.op(f"insertelement <2 x {ty}> undef, {ty} {scale}, i32 0")
        scales = b.op(f"shufflevector <2 x {ty}> {pair}, <2 x {ty}> undef, <2 x i32> zeroinitializer")
        pairs = []
        for j in range(32 // bits // 2):  # int4: byte j's nibbles; int8: bytes 2j, 2j + 1
            lanes = (j, 4 + j) if bits == 4 else (2 * j, 2 * j + 1)  # each twice: bytes 0 and 2 are kept
            picked = b.op(f"shufflevector <4 x i8> {low}, <4 x i8> {high}, <4 x i32> "
                          f"<i32 {lanes[0]}, i32 {lanes[0]}, i32 {lanes[1]}, i32 {lanes[1]}>")  # fmt: skip
            masked = b.op(f"and i32 {b.op(f'bitcast <4 x i8> {picked} to i32')}, {mask}")
            bits32 = b.op(f"or i32 {masked}, {magic * 0x10001}")
            value = b.op(f"fsub <2 x {ty}> {b.op(f'bitcast i32 {bits32} to <2 x {ty}>')}, {minus}")
            pairs.append(b.op(f"bitcast <2 x {ty}> {b.op(f'fmul <2 x {ty}> {value}, {scales}')} to i32"))
        return pairs

    def step(self, index: str) -> None:
        """One step (4 lanes x a piece of rows g and g + 8): its loads, then its mma."""
        s, b = self.s, self.b
        col = b.i32("add", b.i32("mul", index, self.step_columns), b.i32("mul", "%t", piece_columns(s.weight)))
        low, high = self.weight_pairs("%row.low", col), self.weight_pairs("%row.high", col)
        for j in range(s.cols):
            x_row = b.i32("add", "%m.block", b.i32("add", "%g", 8 * j))
            for p in range(len(low) // 4):  # a piece of x: 8 columns, 2 instructions
                x = self.words(self.vector("%x", x_row, "%M", b.i32("add", col, 8 * p), s.k, s.k * 2, 16))
                for h in range(2):
                    a = [low[4 * p + 2 * h], high[4 * p + 2 * h], low[4 * p + 2 * h + 1], high[4 * p + 2 * h + 1]]
                    self.mma("dense", a, x[2 * h : 2 * h + 2], (0, j), None)

    def k_split(self) -> None:
        """Warp w takes steps w, w + warps, ...; GEMV_UNROLL of them an iteration. The
        warps are the spec's, as the launch's (GEMV_WARPS is only the default)."""
        s, b = self.s, self.b
        steps = -(-s.k // self.step_columns)
        stride = s.warps * GEMV_UNROLL

        def iteration(i: str) -> None:
            for u in range(GEMV_UNROLL):
                self.step(b.i32("add", b.i32("add", i, u * s.warps), "%warp"))

        b.loop(-(-steps // stride) * stride, stride, iteration, unroll=False)

    def reduce(self) -> None:
        """The warps' accumulators added through shared memory; thread i < 128 x cols
        stores lane i % 32's accumulator (i / 32) % 4 of column i / 128."""
        s, b = self.s, self.b
        per_warp = 4 * s.cols * 32
        for j in range(s.cols):
            for i in range(4):
                slot = b.i32("add", b.i32("mul", "%warp", per_warp), b.i32("add", "%lane", (j * 4 + i) * 32))
                b.emit(f"store float {b.op(f'load float, ptr {self.acc_slot((0, j), i)}')}, ptr addrspace(3) "
                       f"{b.op(f'getelementptr inbounds float, ptr addrspace(3) @partial, i32 {slot}')}")  # fmt: skip
        b.emit("call void @llvm.nvvm.barrier0()")
        then, done = b.label("sum"), b.label("end")
        b.emit(f"br i1 {b.op(f'icmp ult i32 %tid, {per_warp}')}, label %{then}, label %{done}")
        b.begin(then)
        total = "0.0"
        for other in range(s.warps):
            at = b.op(
                f"getelementptr inbounds float, ptr addrspace(3) @partial, i32 {b.i32('add', '%tid', other * per_warp)}"
            )
            total = b.op(f"fadd float {total}, {b.op(f'load float, ptr addrspace(3) {at}')}")
        lane, slot, col = b.i32("and", "%tid", 31), b.i32("and", b.i32("lshr", "%tid", 5), 3), b.i32("lshr", "%tid", 7)
        g, t = b.i32("lshr", lane, 2), b.i32("and", lane, 3)
        n = b.i32("add", "%n.warp", b.i32("add", g, b.i32("mul", b.i32("lshr", slot, 1), 8)))
        m = b.i32("add", "%m.block", b.i32("mul", col, 8))
        m = b.i32("add", m, b.i32("add", b.i32("shl", t, 1), b.i32("and", slot, 1)))
        self.store(total, m, n)
        b.emit(f"br label %{done}")
        b.begin(done)
        b.emit("ret void")

    def build(self) -> str:
        s, b = self.s, self.b
        self.prologue()
        b.emit("%row.low = add i32 %n.warp, %g")
        b.emit("%row.high = add i32 %row.low, 8")
        self.k_split()
        self.reduce()
        shared = f"@partial = internal addrspace(3) global [{s.warps * 4 * s.cols * 32} x float] undef, align 16"
        return self.module((shared,), ("declare void @llvm.nvvm.barrier0()",))

    def warp_rows_offset(self) -> str:
        return "0"  # the block's warps share its 16 rows


def gemv_ir(spec: GemmSpec) -> str:
    """The GEMV-schedule kernel of `spec` as LLVM IR text."""
    return _Gemv(spec).build()
