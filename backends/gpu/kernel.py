"""The LLVM IR of one GPU matrix product `y = act(x @ w.T + bias)`, for NVPTX.

x is [M, K] (M given at launch), w [N, K] dense, 2:4 (the nm codec's values and the
mma.sp metadata that packing/mma.py lays out from its index words) or hybrid tiles
(each dense, 2:4 or empty, found through packing/mma.py's tile map), y [M, N]; f16 or
bf16 with f32 accumulation. The weight is the tensor cores' A operand (rows of
w are rows of the mma tile) and x the B operand ("col": K contiguous per column, which
is x's row-major layout): y is computed transposed, tile by tile, so that a call of
one to eight rows of x fills the instruction's n = 8 rather than its m = 16.

Schedule: a block of `warps` warps owns `warps * 16 * warp_rows` weight rows and
`8 * cols` rows of x; each warp `warp_rows` x `cols` mma tiles, its accumulators in
registers across the whole k-loop. Fragments are loaded straight from global memory
as 32-bit pairs, in the layouts of the PTX ISA's "Matrix Fragments for mma.m16n8k16"
(dense) and "for sparse mma.m16n8k32" (2:4); a pair past an edge of x or w is zero
from a clamped, always valid address, so ragged M, N and K need no separate path.
A hybrid weight's k-loop runs over its tile columns and switches, per tile, to that
tile's format (the branch is uniform across a warp: its rows lie in one tile row).
The accumulators live in an alloca that LLVM's SROA turns into registers (phis at
every loop and join), so the builder writes plain structured control flow. The
epilogue adds the bias, applies the activation, rounds and stores what lies inside y.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stoicc_py.backends.gpu.target import DATA_LAYOUT, MMA_DENSE, MMA_SPARSE, TRIPLE, WARP
from stoicc_py.packing.mma import MAP_CODE_BITS

LLVM_TYPES = {"f16": "half", "bf16": "bfloat"}
ACTIVATIONS = ("relu",)
"""Epilogue activations the kernels apply (others are refused by gpu-tile, located)."""
FORMATS = ("dense", "nm24")
"""Weight formats with a tensor-core body: dense (mma.sync) and 2:4 (mma.sp)."""
QUANT_FORMATS = ("int4", "int8")
"""Weight-only symmetric integer codes (codec/uniform.py: two's complement, int4 two to a
byte LSB first) times a scale per group of a row: dequantised in registers, then mma.sync."""

_MMA = {
    ("dense", "f16"): ("llvm.nvvm.mma.m16n8k16.row.col.f32.f32", "<2 x half>"),
    ("dense", "bf16"): ("llvm.nvvm.mma.m16n8k16.row.col.bf16", "i32"),
    ("nm24", "f16"): ("llvm.nvvm.mma.sp.ordered.metadata.m16n8k32.row.col.f32.f32", "<2 x half>"),
    ("nm24", "bf16"): ("llvm.nvvm.mma.sp.ordered.metadata.m16n8k32.row.col.bf16", "i32"),
}
"""(format, dtype) -> the NVVM intrinsic and the type of its A/B registers (pairs of 16-bit values)."""

_ACC = "{float, float, float, float}"
_SREG = ("tid.x", "ctaid.x", "ctaid.y")
K_UNROLL = 4
"""k-steps per iteration of a k-loop: the loads of four steps are in flight together
(one step's are too few to cover the latency of global memory with few warps per SM)."""
K_STEP = {"dense": MMA_DENSE[2], "nm24": MMA_SPARSE[2], "int4": MMA_DENSE[2], "int8": MMA_DENSE[2]}
SCALE_TYPES = {"f32": "float", "f16": "half", "bf16": "bfloat"}


@dataclass(frozen=True)
class GemmSpec:
    """One product's kernel: its static sizes, weight format, epilogue and schedule."""

    name: str
    dtype: str  # "f16" | "bf16"
    n: int
    k: int
    weight: str = "dense"  # "dense", "nm24" (2:4 through mma.sp) or "hybrid"
    tile: tuple[int, int] = (0, 0)  # a hybrid weight's [th, tw]
    tile_formats: tuple[str, ...] = ()  # a hybrid weight's formats (FORMATS), table code 1 + index
    group: int = 0  # int4/int8: consecutive elements of a row that share a scale (even)
    scale_type: str = "f32"  # int4/int8: the scales' dtype
    bias: bool = False
    act: str | None = None
    warps: int = 4
    warp_rows: int = 2  # 16-row mma tiles per warp along w's rows
    cols: int = 4  # 8-row mma tiles per block along x's rows
    schedule: str = "direct"  # "direct" (this module), "gemv" (gemv.py) or "staged" (staged.py)
    k_splits: int = 1  # staged: blocks along K that add their sums (split-K, staged.py's k_splits)

    @property
    def n_by_k(self) -> tuple[int, int]:
        """The dense weight's shape."""
        return self.n, self.k

    @property
    def warp_grid(self) -> tuple[int, int]:
        """The block's warps along the weight's rows and along x's rows: the GEMV's warps
        share their rows, the staged schedule's are 2 x (warps / 2), the direct one's
        (warps, 1)."""
        return {"gemv": (1, 1), "staged": (2, self.warps // 2)}.get(self.schedule, (self.warps, 1))

    @property
    def block_rows(self) -> int:
        """Weight rows (columns of y) per block."""
        return 16 * self.warp_rows * self.warp_grid[0]

    @property
    def block_cols(self) -> int:
        """Rows of x (rows of y) per block."""
        return 8 * self.cols * self.warp_grid[1]

    @property
    def threads(self) -> int:
        return self.warps * WARP

    @property
    def tile_grid(self) -> tuple[int, int]:
        """A hybrid weight's tile rows and columns."""
        return -(-self.n // self.tile[0]), -(-self.k // self.tile[1])

    def grid(self, m: int) -> tuple[int, int, int]:
        return -(-self.n // self.block_rows), -(-m // self.block_cols), self.k_splits

    @property
    def params(self) -> tuple[str, ...]:
        """The kernel's pointer parameters, in order (then i32 M)."""
        if self.weight == "hybrid":
            buffers = [("values", "meta") if f == "nm24" else ("values",) for f in self.tile_formats]
            weight: tuple[str, ...] = ("map", *(f"{b}{i}" for i, names in enumerate(buffers) for b in names))
        else:
            weight = {"nm24": ("values", "meta"), "int4": ("values", "scales"), "int8": ("values", "scales")}.get(
                self.weight, ("w",)
            )
        splits = ("work", "flags") if self.k_splits > 1 else ()  # staged.py's sum_splits
        return ("x", *weight, *(("bias",) if self.bias else ()), "y", *splits)


@dataclass(frozen=True)
class _Source:
    """Where a k-loop's A operand lies: a row-major [rows, cols] block of 16-bit values
    (the whole weight, its 2:4 values, or one stored tile) whose row `row0` is the warp's
    first, and for 2:4 the metadata of the same rows (`meta_steps` k-steps per 16 rows)."""

    format: str
    base: str
    row0: str
    rows: int
    cols: int
    k_base: str  # the dense column of x at the block's column 0
    meta: str | None = None
    meta_steps: int = 0


class _Builder:
    """LLVM IR text with fresh SSA names; each method returns the value it defines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.metadata: list[str] = []  # loop IDs; !0 is the unroll count they share
        self.block = "entry"
        self._count = 0

    def fresh(self, hint: str = "v") -> str:
        self._count += 1
        return f"%{hint}{self._count}"

    def label(self, hint: str) -> str:
        """A fresh block label (without %)."""
        return self.fresh(hint).lstrip("%")

    def op(self, text: str, hint: str = "v") -> str:
        name = self.fresh(hint)
        self.lines.append(f"  {name} = {text}")
        return name

    def emit(self, text: str) -> None:
        self.lines.append(f"  {text}")

    def begin(self, label: str) -> None:
        self.lines.append(f"{label}:")
        self.block = label

    def i32(self, opcode: str, a: str | int, b: str | int) -> str:
        return self.op(f"{opcode} i32 {a}, {b}")

    def when(self, condition: str, hint: str, then: Callable[[], None],
             otherwise: Callable[[], None] | None = None) -> None:  # fmt: skip
        """if (condition) then() [else otherwise()], in blocks labelled from `hint`, joined after."""
        yes, done = self.label(hint), self.label(f"{hint}.done")
        no = self.label(f"{hint}.else") if otherwise else done
        self.emit(f"br i1 {condition}, label %{yes}, label %{no}")
        for label, body in ((yes, then), (no, otherwise)) if otherwise else ((yes, then),):
            self.begin(label)
            body()
            self.emit(f"br label %{done}")
        self.begin(done)

    def index(self, row: str, stride: int, col: str) -> str:
        """row * stride + col in i64 (buffers of more than 2^31 elements)."""
        wide_row, wide_col = self.op(f"zext i32 {row} to i64"), self.op(f"zext i32 {col} to i64")
        return self.op(f"add i64 {self.op(f'mul i64 {wide_row}, {stride}')}, {wide_col}")

    def offset(self, base: str, elements: str, ty: str) -> str:
        return self.op(
            f"getelementptr inbounds {ty}, ptr addrspace(1) {base}, i64 {self.op(f'zext i32 {elements} to i64')}"
        )

    def loop(self, stop: int, step: int, body: Callable[[str], None], unroll: bool = True) -> None:
        """for (i = 0; i < stop; i += step) body(i), with stop > 0 (a do-while); a k-loop
        unrolled by K_UNROLL (each loop its own distinct loop ID, as LLVM requires)."""
        head, latch, done = self.label("loop"), self.label("latch"), self.label("done")
        before, i, following = self.block, self.fresh("i"), self.fresh("i")
        self.emit(f"br label %{head}")
        self.begin(head)
        self.emit(f"{i} = phi i32 [ 0, %{before} ], [ {following}, %{latch} ]")
        body(i)
        self.emit(f"br label %{latch}")
        self.begin(latch)
        self.emit(f"{following} = add i32 {i}, {step}")
        branch = f"br i1 {self.op(f'icmp ult i32 {following}, {stop}')}, label %{head}, label %{done}"
        if unroll:
            node = len(self.metadata) + 1
            self.metadata.append(f"!{node} = distinct !{{!{node}, !0}}")
            branch += f", !llvm.loop !{node}"
        self.emit(branch)
        self.begin(done)


class _Gemm:
    """Builds the kernel of one GemmSpec."""

    def __init__(self, spec: GemmSpec):
        self.s, self.b = spec, _Builder()

    def pair(self, base: str, row: str, rows: int | str, col: str, cols: int,
             load: Callable[[str, str], str] | None = None) -> str:  # fmt: skip
        """The 32-bit pair of 16-bit elements [row][col, col+1] of a row-major [rows, cols]
        global buffer, or 0 outside it (col is even and cols even: a pair is whole or absent);
        `load(row, col)` reads a pair inside it (default: one 32-bit load)."""
        b = self.b
        inside = b.op(f"and i1 {b.op(f'icmp ult i32 {row}, {rows}')}, {b.op(f'icmp ult i32 {col}, {cols}')}")
        r, c = b.op(f"select i1 {inside}, i32 {row}, i32 0"), b.op(f"select i1 {inside}, i32 {col}, i32 0")
        if load is None:
            ptr = b.op(f"getelementptr inbounds i16, ptr addrspace(1) {base}, i64 {b.index(r, cols, c)}")
            value = b.op(f"load i32, ptr addrspace(1) {ptr}, align 4")
        else:
            value = load(r, c)
        return b.op(f"select i1 {inside}, i32 {value}, i32 0")

    def dequantized(self, row: str, col: str) -> str:
        """The pair [row][col, col+1] of an int4/int8 weight as two values of the kernel's
        dtype in 32 bits: each code (two's complement) times its group's scale, in f32,
        rounded once. col is even and groups are even: the pair shares one scale."""
        s, b = self.s, self.b
        if s.weight == "int4":  # one byte: col's code in the low nibble, col + 1's in the high one
            at = b.offset("%values", b.i32("add", b.i32("mul", row, s.k // 2), b.i32("lshr", col, 1)), "i8")
            byte = b.op(f"load i8, ptr addrspace(1) {at}")
            codes = [b.op(f"ashr i8 {b.op(f'shl i8 {byte}, 4')}, 4"), b.op(f"ashr i8 {byte}, 4")]
        else:  # two bytes, col's first
            at = b.offset("%values", b.i32("add", b.i32("mul", row, s.k), col), "i8")
            both = b.op(f"load i16, ptr addrspace(1) {at}, align 2")
            codes = [b.op(f"trunc i16 {both} to i8"), b.op(f"trunc i16 {b.op(f'lshr i16 {both}, 8')} to i8")]
        groups = -(-s.k // s.group)
        scale_ty = SCALE_TYPES[s.scale_type]
        at = b.offset("%scales", b.i32("add", b.i32("mul", row, groups), b.i32("udiv", col, s.group)), scale_ty)
        scale = b.op(f"load {scale_ty}, ptr addrspace(1) {at}")
        if scale_ty != "float":
            scale = b.op(f"fpext {scale_ty} {scale} to float")
        ty = LLVM_TYPES[s.dtype]
        pair = "undef"
        for i, code in enumerate(codes):
            value = b.op(f"fmul float {b.op(f'sitofp i8 {code} to float')}, {scale}")
            pair = b.op(f"insertelement <2 x {ty}> {pair}, {ty} {b.op(f'fptrunc float {value} to {ty}')}, i32 {i}")
        return b.op(f"bitcast <2 x {ty}> {pair} to i32")

    def registers(self, format: str, pairs: list[str]) -> list[str]:
        """Pairs as the intrinsic's register type (<2 x half> for f16, i32 for bf16)."""
        reg = _MMA[_instruction(format), self.s.dtype][1]
        return pairs if reg == "i32" else [self.b.op(f"bitcast i32 {p} to {reg}") for p in pairs]

    def a_fragment(self, src: _Source, n0: str, kk: str) -> list[str]:
        """A (16 weight rows from n0): rows g, g+8 at k-pairs 2t and 2t+8 (of the 16 stored
        values per row of a 2:4 k-step of 32, or of a dense k-step of 16)."""
        b = self.b
        k0 = b.i32("lshr", kk, 1) if src.format == "nm24" else kk
        low, high = b.i32("add", n0, "%g"), b.i32("add", n0, b.i32("add", "%g", 8))
        ka, kb = b.i32("add", k0, "%t2"), b.i32("add", k0, b.i32("add", "%t2", 8))
        load = self.dequantized if src.format in QUANT_FORMATS else None
        return [self.pair(src.base, r, src.rows, c, src.cols, load) for c in (ka, kb) for r in (low, high)]

    def b_fragment(self, m0: str, k: str, format: str) -> list[str]:
        """B (8 rows of x from m0): row g at k-pairs k + 2t + 8i (i < 2 dense, i < 4 for k32)."""
        b = self.b
        row = b.i32("add", m0, "%g")
        ks = [b.i32("add", k, b.i32("add", "%t2", 8 * i)) for i in range(K_STEP[format] // 8)]
        return [self.pair("%x", row, "%M", k, self.s.k) for k in ks]

    def metadata(self, src: _Source, n0: str, kk: str) -> str:
        """The mma.sp metadata word of lane (g, t) for the 16 rows at n0 and k-step kk:
        entry [n0 / 16][kk / 32][g][t % 2] of packing/mma.py's layout (16 per tile and step)."""
        b = self.b
        tile = b.i32("add", b.i32("mul", b.i32("udiv", n0, 16), src.meta_steps), b.i32("udiv", kk, MMA_SPARSE[2]))
        lane = b.i32("add", b.i32("shl", "%g", 1), b.i32("and", "%t", 1))
        inside = b.op(f"icmp ult i32 {n0}, {src.rows}")
        index = b.op(f"select i1 {inside}, i32 {b.i32('add', b.i32('shl', tile, 4), lane)}, i32 0")
        return b.op(f"load i32, ptr addrspace(1) {b.offset(str(src.meta), index, 'i32')}, align 4")

    def mma(self, format: str, a: list[str], bf: list[str], tile: tuple[int, int], meta: str | None) -> None:
        """acc[tile] += A x B, through the accumulator alloca."""
        b = self.b
        slots = [self.acc_slot(tile, i) for i in range(4)]
        acc = [b.op(f"load float, ptr {slot}") for slot in slots]
        for slot, value in zip(slots, self.mma_values(format, a, bf, acc, meta), strict=True):
            b.emit(f"store float {value}, ptr {slot}")

    def mma_values(self, format: str, a: list[str], bf: list[str], acc: list[str], meta: str | None = None) -> list[str]:
        """A x B + acc (a thread's 4 f32 values) by one instruction."""
        b = self.b
        name, reg = _MMA[_instruction(format), self.s.dtype]
        args = [f"{reg} {v}" for v in (*self.registers(format, a), *self.registers(format, bf))]
        args += [f"float {c}" for c in acc] + ([f"i32 {meta}", "i32 0"] if meta is not None else [])  # selector 0
        result = b.op(f"call {_ACC} @{name}({', '.join(args)})")
        return [b.op(f"extractvalue {_ACC} {result}, {i}") for i in range(4)]

    def acc_slot(self, tile: tuple[int, int], i: int) -> str:
        return self.acc_at((tile[0] * self.s.cols + tile[1]) * 4 + i)

    def acc_at(self, index: int) -> str:
        """The address of accumulator `index` in the thread's %acc array."""
        return self.b.op(f"getelementptr inbounds [{self.acc_count} x float], ptr %acc, i32 0, i32 {index}")

    @property
    def acc_count(self) -> int:
        return self.s.warp_rows * self.s.cols * 4

    def k_loop(self, src: _Source, extent: int) -> None:
        """The k-steps over `extent` dense columns of src, each warp_rows x cols mma."""
        s, b = self.s, self.b

        def step(kk: str) -> None:
            k = b.i32("add", src.k_base, kk)
            for r in range(s.warp_rows):
                n0 = b.i32("add", src.row0, 16 * r)
                a = self.a_fragment(src, n0, kk)
                meta = self.metadata(src, n0, kk) if src.format == "nm24" else None
                for j in range(s.cols):
                    self.mma(
                        src.format, a, self.b_fragment(b.i32("add", "%m.block", 8 * j), k, src.format), (r, j), meta
                    )

        b.loop(extent, K_STEP[src.format], step)

    def whole(self) -> None:
        """A dense, 2:4 or int4/int8 weight: one k-loop over K."""
        s = self.s
        if s.weight == "dense":
            self.k_loop(_Source("dense", "%w", "%n.warp", s.n, s.k, "0"), s.k)
        elif s.weight in QUANT_FORMATS:
            self.k_loop(_Source(s.weight, "%values", "%n.warp", s.n, s.k, "0"), s.k)
        else:
            steps = -(-s.k // MMA_SPARSE[2])
            self.k_loop(_Source("nm24", "%values", "%n.warp", s.n, s.k // 2, "0", "%meta", steps), s.k)

    def hybrid(self) -> None:
        """Tile by tile along the warp's tile row: each stored tile's own k-loop."""
        s, b = self.s, self.b
        (th, tw), tile_cols = s.tile, s.tile_grid[1]
        inside = b.op(f"icmp ult i32 %n.warp, {s.n}")
        tile_row = b.op(f"select i1 {inside}, i32 {b.i32('udiv', '%n.warp', th)}, i32 0")
        row0 = b.i32("sub", "%n.warp", b.i32("mul", tile_row, th))  # past the last tile row: >= th, loads 0

        def tile(kt: str) -> None:
            at = b.i32("add", b.i32("mul", tile_row, tile_cols), kt)
            entry = b.op(f"load i32, ptr addrspace(1) {b.offset('%map', at, 'i32')}, align 4")
            code, slot = b.i32("and", entry, (1 << MAP_CODE_BITS) - 1), b.i32("lshr", entry, MAP_CODE_BITS)
            k_base = b.i32("mul", kt, tw)

            def case(f: int, format: str, values: str) -> None:
                cols = tw // 2 if format == "nm24" else tw
                meta = (
                    b.offset(f"%meta{f}", b.i32("mul", slot, th // 16 * (tw // 32) * 16), "i32")
                    if format == "nm24"
                    else None
                )
                self.k_loop(_Source(format, values, row0, th, cols, k_base, meta, tw // 32), tw)

            self.switch_on_format(code, slot, case)

        b.loop(tile_cols, 1, tile, unroll=False)

    def switch_on_format(self, code: str, slot: str, case: Callable[[int, str, str], None],
                         empty_case: Callable[[], None] | None = None) -> None:  # fmt: skip
        """A switch on a hybrid tile's code from the tile map (format f is 1 + f; 0, an empty
        tile: `empty_case()` or nothing), uniform across the block: `case(f, format, values)`
        with the tile's stored values, slot `slot` of format f's buffer."""
        s, b = self.s, self.b
        th, tw = s.tile
        cases = [b.label(f"format{f}") for f in range(len(s.tile_formats))]
        empty, join = b.label("empty"), b.label("join")
        targets = " ".join(f"i32 {1 + f}, label %{label}" for f, label in enumerate(cases))
        b.emit(f"switch i32 {code}, label %{empty} [ {targets} ]")
        for f, (format, label) in enumerate(zip(s.tile_formats, cases)):
            b.begin(label)
            cols = tw // 2 if format == "nm24" else tw
            case(f, format, b.offset(f"%values{f}", b.i32("mul", slot, th * cols), "i16"))
            b.emit(f"br label %{join}")
        b.begin(empty)
        if empty_case is not None:
            empty_case()
        b.emit(f"br label %{join}")
        b.begin(join)

    def prologue(self) -> None:
        s, b = self.s, self.b
        b.emit(f"%tid = call i32 @llvm.nvvm.read.ptx.sreg.{_SREG[0]}()")
        self.block_ids()
        b.emit(f"%acc = alloca [{self.acc_count} x float], align 4")
        for i in range(self.acc_count):
            b.emit(
                f"store float 0.0, ptr {b.op(f'getelementptr inbounds [{self.acc_count} x float], ptr %acc, i32 0, i32 {i}')}"
            )
        b.emit(f"%lane = and i32 %tid, {WARP - 1}")
        b.emit("%warp = lshr i32 %tid, 5")
        b.emit("%g = lshr i32 %lane, 2")
        b.emit("%t = and i32 %lane, 3")
        b.emit("%t2 = shl i32 %t, 1")
        b.emit(f"%n.block = mul i32 %bx, {s.block_rows}")
        b.emit(f"%m.block = mul i32 %by, {s.block_cols}")
        b.emit(f"%n.warp = add i32 %n.block, {self.warp_rows_offset()}")
        b.emit(f"%m.warp = add i32 %m.block, {self.warp_cols_offset()}")

    def block_ids(self) -> None:
        """%bx (the block's weight rows) and %by (its rows of x): the launch's own."""
        for sreg, name in zip(_SREG[1:], ("%bx", "%by")):
            self.b.emit(f"{name} = call i32 @llvm.nvvm.read.ptx.sreg.{sreg}()")

    def warp_rows_offset(self) -> str:
        """The first weight row of the warp, from the block's."""
        return self.b.i32("mul", "%warp", 16 * self.s.warp_rows)

    def warp_cols_offset(self) -> str:
        """The first row of x of the warp, from the block's (the block's warps share them)."""
        return "0"

    def store(self, value: str, m: str, n: str) -> None:
        """y[m][n] = act(value + bias[n]) rounded, where (m, n) lies inside y."""
        s, b = self.s, self.b
        inside = b.op(f"and i1 {b.op(f'icmp ult i32 {m}, %M')}, {b.op(f'icmp ult i32 {n}, {s.n}')}")

        def store() -> None:
            ty, result = LLVM_TYPES[s.dtype], value
            if s.bias:
                at = b.op(f"getelementptr inbounds {ty}, ptr addrspace(1) %bias, i32 {n}")
                bias = b.op(f"load {ty}, ptr addrspace(1) {at}")
                result = b.op(f"fadd float {result}, {b.op(f'fpext {ty} {bias} to float')}")
            if s.act == "relu":
                result = b.op(f"call float @llvm.maxnum.f32(float {result}, float 0.0)")
            ptr = b.op(f"getelementptr inbounds {ty}, ptr addrspace(1) %y, i64 {b.index(m, s.n, n)}")
            b.emit(f"store {ty} {b.op(f'fptrunc float {result} to {ty}')}, ptr addrspace(1) {ptr}")

        b.when(inside, "store", store)

    def epilogue(self) -> None:
        """C fragment: c0, c1 at weight row g, c2, c3 at g + 8; x rows 2t and 2t + 1."""
        s, b = self.s, self.b
        for r in range(s.warp_rows):
            for j in range(s.cols):
                n0, m0 = b.i32("add", "%n.warp", 16 * r), b.i32("add", "%m.warp", 8 * j)
                for i in range(4):
                    value = b.op(f"load float, ptr {self.acc_slot((r, j), i)}")
                    n = b.i32("add", n0, b.i32("add", "%g", 8 * (i // 2)))
                    self.store(value, b.i32("add", m0, b.i32("add", "%t2", i % 2)), n)
        b.emit("ret void")

    def build(self) -> str:
        s = self.s
        self.prologue()
        if s.weight == "hybrid":
            self.hybrid()
        else:
            self.whole()
        self.epilogue()
        return self.module()

    def formats(self) -> list[str]:
        """The tensor-core bodies (FORMATS) the kernel runs."""
        s = self.s
        return sorted({_instruction(f) for f in (s.tile_formats if s.weight == "hybrid" else (s.weight,))})

    def module(self, globals_: tuple[str, ...] = (), declarations: tuple[str, ...] = (),
               more_params: tuple[str, ...] = (), attributes: str = "") -> str:  # fmt: skip
        """The module: the kernel function of the builder's lines and what it uses (its
        parameters: the spec's pointers, i32 M, then `more_params`; `attributes` added to
        the function's)."""
        s = self.s
        params = ", ".join([f"ptr addrspace(1) noalias %{p}" for p in s.params] + ["i32 %M", *more_params])
        declared = [f"declare i32 @llvm.nvvm.read.ptx.sreg.{r}()" for r in _SREG]
        for format in self.formats():
            name, reg = _MMA[format, s.dtype]
            operands = (
                [reg] * (8 if format == "nm24" else 6) + ["float"] * 4 + (["i32", "i32"] if format == "nm24" else [])
            )
            declared.append(f"declare {_ACC} @{name}({', '.join(operands)})")
        declared.append("declare float @llvm.maxnum.f32(float, float)")
        return "\n".join([
            f'target datalayout = "{DATA_LAYOUT}"',
            f'target triple = "{TRIPLE}"',
            *globals_,
            *declared,
            *declarations,
            "",
            f"define ptx_kernel void @{s.name}({params}) #0 {{",
            "entry:",
            *self.b.lines,
            "}",
            "",
            # the launch's block size: ptxas keeps the registers within what a block of it may have
            f'attributes #0 = {{ "nvvm.maxntid"="{s.threads}" {attributes}}}',
            f'!0 = !{{!"llvm.loop.unroll.count", i32 {K_UNROLL}}}',
            *self.b.metadata,
            "",
        ])  # fmt: skip


def _instruction(format: str) -> str:
    """The tensor-core body a weight format runs: int4/int8 codes dequantised run mma.sync's."""
    return "dense" if format in QUANT_FORMATS else format


def gemm_ir(spec: GemmSpec) -> str:
    """The kernel of `spec` as LLVM IR text (one `ptx_kernel` function named spec.name)."""
    return _Gemm(spec).build()
