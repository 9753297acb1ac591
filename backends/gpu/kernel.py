"""The LLVM IR of one GPU matrix product `y = act(x @ w.T + bias)`, for NVPTX.

x is [M, K] (M given at launch), w [N, K] dense or 2:4 (the nm codec's values and
the mma.sp metadata that packing/mma.py lays out from its index words), y [M, N];
f16 or bf16 with f32 accumulation. The weight is the tensor cores' A operand (rows of
w are rows of the mma tile) and x the B operand ("col": K contiguous per column, which
is x's row-major layout): y is computed transposed, tile by tile, so that a call of
one to eight rows of x fills the instruction's n = 8 rather than its m = 16.

Schedule: a block of `warps` warps owns `warps * 16 * warp_rows` weight rows and
`8 * cols` rows of x; each warp `warp_rows` x `cols` mma tiles, its accumulators in
registers across the whole k-loop. Fragments are loaded straight from global memory
as 32-bit pairs, in the layouts of the PTX ISA's "Matrix Fragments for mma.m16n8k16"
(dense) and "for sparse mma.m16n8k32" (2:4); a pair past an edge of x or w is zero
from a clamped, always valid address, so ragged M, N and K need no separate path.
The epilogue adds the bias, applies the activation, rounds and stores what lies
inside y.
"""

from __future__ import annotations

from dataclasses import dataclass

from stoicc_py.backends.gpu.target import DATA_LAYOUT, MMA_DENSE, MMA_SPARSE, TRIPLE, WARP

LLVM_TYPES = {"f16": "half", "bf16": "bfloat"}
ACTIVATIONS = ("relu",)
"""Epilogue activations the kernels apply (others are refused by gpu-tile, located)."""

_MMA = {
    (False, "f16"): ("llvm.nvvm.mma.m16n8k16.row.col.f32.f32", "<2 x half>"),
    (False, "bf16"): ("llvm.nvvm.mma.m16n8k16.row.col.bf16", "i32"),
    (True, "f16"): ("llvm.nvvm.mma.sp.ordered.metadata.m16n8k32.row.col.f32.f32", "<2 x half>"),
    (True, "bf16"): ("llvm.nvvm.mma.sp.ordered.metadata.m16n8k32.row.col.bf16", "i32"),
}
"""(2:4, dtype) -> the NVVM intrinsic and the type of its A/B registers (pairs of 16-bit values)."""

_ACC = "{float, float, float, float}"
K_UNROLL = 4
"""k-steps per iteration of the k-loop: the loads of four steps are in flight together
(one step's are too few to cover the latency of global memory with few warps per SM)."""
_SREG = ("tid.x", "ctaid.x", "ctaid.y")


@dataclass(frozen=True)
class GemmSpec:
    """One product's kernel: its static sizes, weight format, epilogue and schedule."""

    name: str
    dtype: str  # "f16" | "bf16"
    n: int
    k: int
    sparse: bool = False  # 2:4 weights through mma.sp
    bias: bool = False
    act: str | None = None
    warps: int = 4
    warp_rows: int = 2  # 16-row mma tiles per warp along w's rows
    cols: int = 4  # 8-row mma tiles per block along x's rows

    @property
    def n_by_k(self) -> tuple[int, int]:
        """The dense weight's shape."""
        return self.n, self.k

    @property
    def k_step(self) -> int:
        return (MMA_SPARSE if self.sparse else MMA_DENSE)[2]

    @property
    def block_rows(self) -> int:
        """Weight rows (columns of y) per block."""
        return self.warps * 16 * self.warp_rows

    @property
    def block_cols(self) -> int:
        """Rows of x (rows of y) per block."""
        return 8 * self.cols

    @property
    def threads(self) -> int:
        return self.warps * WARP

    def grid(self, m: int) -> tuple[int, int, int]:
        return -(-self.n // self.block_rows), -(-m // self.block_cols), 1

    @property
    def params(self) -> tuple[str, ...]:
        """The kernel's pointer parameters, in order (then i32 M)."""
        weight = ("values", "meta") if self.sparse else ("w",)
        return ("x", *weight, *(("bias",) if self.bias else ()), "y")


class _Builder:
    """LLVM IR text with fresh SSA names; each method returns the value it defines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._count = 0

    def fresh(self, hint: str = "v") -> str:
        self._count += 1
        return f"%{hint}{self._count}"

    def op(self, text: str, hint: str = "v") -> str:
        name = self.fresh(hint)
        self.lines.append(f"  {name} = {text}")
        return name

    def emit(self, text: str) -> None:
        self.lines.append(text if text.endswith(":") else f"  {text}")

    def i32(self, opcode: str, a: str | int, b: str | int) -> str:
        return self.op(f"{opcode} i32 {a}, {b}")

    def index(self, row: str, stride: int, col: str) -> str:
        """row * stride + col in i64 (buffers of more than 2^31 elements)."""
        wide_row, wide_col = self.op(f"zext i32 {row} to i64"), self.op(f"zext i32 {col} to i64")
        return self.op(f"add i64 {self.op(f'mul i64 {wide_row}, {stride}')}, {wide_col}")


class _Gemm:
    """Builds the kernel of one GemmSpec."""

    def __init__(self, spec: GemmSpec):
        self.s, self.b = spec, _Builder()

    def pair(self, base: str, row: str, rows: str | int, col: str, cols: int) -> str:
        """The 32-bit pair of 16-bit elements [row][col, col+1] of a row-major [rows, cols]
        global buffer, or 0 outside it (col is even and cols even: a pair is whole or absent)."""
        b = self.b
        inside = b.op(f"and i1 {b.op(f'icmp ult i32 {row}, {rows}')}, {b.op(f'icmp ult i32 {col}, {cols}')}")
        r, c = b.op(f"select i1 {inside}, i32 {row}, i32 0"), b.op(f"select i1 {inside}, i32 {col}, i32 0")
        ptr = b.op(f"getelementptr inbounds i16, ptr addrspace(1) {base}, i64 {b.index(r, cols, c)}")
        value = b.op(f"load i32, ptr addrspace(1) {ptr}, align 4")
        return b.op(f"select i1 {inside}, i32 {value}, i32 0")

    def registers(self, pairs: list[str]) -> list[str]:
        """Pairs as the intrinsic's register type (<2 x half> for f16, i32 for bf16)."""
        reg = _MMA[self.s.sparse, self.s.dtype][1]
        return pairs if reg == "i32" else [self.b.op(f"bitcast i32 {p} to {reg}") for p in pairs]

    def a_fragment(self, n0: str, kk: str) -> list[str]:
        """A (16 weight rows): rows g, g+8 at k-pairs 2t and 2t+8 (of the 16 stored values
        per row of a 2:4 k-step of 32, or of a dense k-step of 16)."""
        s, b = self.s, self.b
        base, cols = ("%values", s.k // 2) if s.sparse else ("%w", s.k)
        k0 = b.i32("lshr", kk, 1) if s.sparse else kk
        low, high = b.i32("add", n0, "%g"), b.i32("add", n0, b.i32("add", "%g", 8))
        ka, kb = b.i32("add", k0, "%t2"), b.i32("add", k0, b.i32("add", "%t2", 8))
        return [self.pair(base, r, s.n, c, cols) for c in (ka, kb) for r in (low, high)]

    def b_fragment(self, m0: str, kk: str) -> list[str]:
        """B (8 rows of x): row g at k-pairs 2t + 8i (i < 2 dense, i < 4 for k32)."""
        s, b = self.s, self.b
        row = b.i32("add", m0, "%g")
        ks = [b.i32("add", kk, b.i32("add", "%t2", 8 * i)) for i in range(s.k_step // 8)]
        return [self.pair("%x", row, "%M", k, s.k) for k in ks]

    def metadata(self, n0: str, kk: str) -> str:
        """The mma.sp metadata word of lane (g, t) for the 16 rows at n0 and k-step kk:
        entry [n0 / 16][kk / 32][g][t % 2] of packing/mma.py's layout (16 per tile and step)."""
        s, b = self.s, self.b
        steps = -(-s.k // MMA_SPARSE[2])
        tile = b.i32("add", b.i32("mul", b.i32("udiv", n0, 16), steps), b.i32("udiv", kk, MMA_SPARSE[2]))
        lane = b.i32("add", b.i32("shl", "%g", 1), b.i32("and", "%t", 1))
        inside = b.op(f"icmp ult i32 {n0}, {s.n}")
        index = b.op(f"select i1 {inside}, i32 {b.i32('add', b.i32('shl', tile, 4), lane)}, i32 0")
        ptr = b.op(f"getelementptr inbounds i32, ptr addrspace(1) %meta, i32 {index}")
        return b.op(f"load i32, ptr addrspace(1) {ptr}, align 4")

    def mma(self, a: list[str], bf: list[str], acc: list[str], meta: str | None) -> list[str]:
        name, reg = _MMA[self.s.sparse, self.s.dtype]
        args = [f"{reg} {v}" for v in (*self.registers(a), *self.registers(bf))] + [f"float {c}" for c in acc]
        if meta is not None:
            args += [f"i32 {meta}", "i32 0"]  # sparsity selector 0: lanes with t % 2 == t give metadata
        result = self.b.op(f"call {_ACC} @{name}({', '.join(args)})")
        return [self.b.op(f"extractvalue {_ACC} {result}, {i}") for i in range(4)]

    def tiles(self) -> list[tuple[int, int]]:
        return [(r, j) for r in range(self.s.warp_rows) for j in range(self.s.cols)]

    def prologue(self) -> None:
        s, b = self.s, self.b
        tid, bx, by = (b.op(f"call i32 @llvm.nvvm.read.ptx.sreg.{r}()", r.replace(".", "")) for r in _SREG)
        lane, warp = b.i32("and", tid, WARP - 1), b.i32("lshr", tid, 5)
        b.emit(f"%g = lshr i32 {lane}, 2")
        b.emit(f"%t = and i32 {lane}, 3")
        b.emit("%t2 = shl i32 %t, 1")
        b.emit(f"%n.warp = add i32 {b.i32('mul', bx, s.block_rows)}, {b.i32('mul', warp, 16 * s.warp_rows)}")
        b.emit(f"%m.block = mul i32 {by}, {s.block_cols}")
        b.emit("br label %loop")

    def loop(self) -> dict[tuple[int, int], list[str]]:
        """The k-loop (one block; the accumulators are its phis); the accumulators after it."""
        s, b = self.s, self.b
        b.emit("loop:")
        b.emit("%kk = phi i32 [ 0, %entry ], [ %kk.next, %loop ]")
        acc = {tile: [f"%acc.{tile[0]}.{tile[1]}.{i}" for i in range(4)] for tile in self.tiles()}
        phis = len(b.lines)
        new = {}
        for r in range(s.warp_rows):
            n0 = b.i32("add", "%n.warp", 16 * r)
            a = self.a_fragment(n0, "%kk")
            meta = self.metadata(n0, "%kk") if s.sparse else None
            for j in range(s.cols):
                new[r, j] = self.mma(a, self.b_fragment(b.i32("add", "%m.block", 8 * j), "%kk"), acc[r, j], meta)
        b.lines[phis:phis] = [f"  {acc[t][i]} = phi float [ 0.0, %entry ], [ {new[t][i]}, %loop ]"
                              for t in self.tiles() for i in range(4)]  # fmt: skip
        b.emit(f"%kk.next = add i32 %kk, {s.k_step}")
        b.emit(f"%more = icmp ult i32 %kk.next, {s.k}")
        b.emit("br i1 %more, label %loop, label %epilogue, !llvm.loop !0")
        return new

    def store(self, value: str, m: str, n: str) -> None:
        """y[m][n] = act(value + bias[n]) rounded, where (m, n) lies inside y."""
        s, b = self.s, self.b
        inside = b.op(f"and i1 {b.op(f'icmp ult i32 {m}, %M')}, {b.op(f'icmp ult i32 {n}, {s.n}')}")
        then, done = b.fresh("store").lstrip("%"), b.fresh("next").lstrip("%")
        b.emit(f"br i1 {inside}, label %{then}, label %{done}")
        b.emit(f"{then}:")
        ty = LLVM_TYPES[s.dtype]
        if s.bias:
            at = b.op(f"getelementptr inbounds {ty}, ptr addrspace(1) %bias, i32 {n}")
            bias = b.op(f"load {ty}, ptr addrspace(1) {at}")
            value = b.op(f"fadd float {value}, {b.op(f'fpext {ty} {bias} to float')}")
        if s.act == "relu":
            value = b.op(f"call float @llvm.maxnum.f32(float {value}, float 0.0)")
        ptr = b.op(f"getelementptr inbounds {ty}, ptr addrspace(1) %y, i64 {b.index(m, s.n, n)}")
        b.emit(f"store {ty} {b.op(f'fptrunc float {value} to {ty}')}, ptr addrspace(1) {ptr}")
        b.emit(f"br label %{done}")
        b.emit(f"{done}:")

    def epilogue(self, acc: dict[tuple[int, int], list[str]]) -> None:
        """C fragment: c0, c1 at weight row g, c2, c3 at g + 8; x rows 2t and 2t + 1."""
        b = self.b
        b.emit("epilogue:")
        for (r, j), values in acc.items():
            n0, m0 = b.i32("add", "%n.warp", 16 * r), b.i32("add", "%m.block", 8 * j)
            for i, value in enumerate(values):
                n = b.i32("add", n0, b.i32("add", "%g", 8 * (i // 2)))
                self.store(value, b.i32("add", m0, b.i32("add", "%t2", i % 2)), n)
        b.emit("ret void")

    def build(self) -> str:
        s = self.s
        self.prologue()
        self.epilogue(self.loop())
        params = ", ".join([f"ptr addrspace(1) noalias %{p}" for p in s.params] + ["i32 %M"])
        name, reg = _MMA[s.sparse, s.dtype]
        operands = [reg] * (8 if s.sparse else 6) + ["float"] * 4 + (["i32", "i32"] if s.sparse else [])
        declarations = [f"declare i32 @llvm.nvvm.read.ptx.sreg.{r}()" for r in _SREG] + [
            f"declare {_ACC} @{name}({', '.join(operands)})",
            "declare float @llvm.maxnum.f32(float, float)",
        ]
        return "\n".join([
            f'target datalayout = "{DATA_LAYOUT}"',
            f'target triple = "{TRIPLE}"',
            *declarations,
            "",
            f"define ptx_kernel void @{s.name}({params}) {{",
            "entry:",
            *self.b.lines,
            "}",
            "",
            "!0 = distinct !{!0, !1}",
            f'!1 = !{{!"llvm.loop.unroll.count", i32 {K_UNROLL}}}',
            "",
        ])  # fmt: skip


def gemm_ir(spec: GemmSpec) -> str:
    """The kernel of `spec` as LLVM IR text (one `ptx_kernel` function named spec.name)."""
    return _Gemm(spec).build()
