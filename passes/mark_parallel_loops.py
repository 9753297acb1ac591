"""mark-parallel-loops: marks the top-level loops whose iterations are independent
(parallelize-loops then runs them on the native thread pool: see passes/parallelize_loops.py).

On memrefs, before lower-memory-to-ptr, it marks a top-level
`scf.for` without results `stoicc.parallel` when it can prove that no two iterations
touch the same element of a buffer that one of them writes: every buffer written in
the loop is defined outside it, reached through one SSA value (not a view of it that
the loop also uses), has the identity layout, and each of its accesses stays on one
axis inside the iteration's tile [j0, min(j0 + step, ub)) (the column tiles of a
linear, the rows of an elementwise op; the step may be a value, as StreamKernel's n-tiles'
width is, taken positive as scf.for's must be). Index bounds are followed through constant
offsets, `minui`, the loops nested in the tile and the register blocks' tail pattern
`e - (e - lb) % s` (a loop of step s from lb to it never passes e; nor does one whose
step divides s; a tiled loop that ends so has only whole tiles [j0, j0 + step), and a loop
from lb to lb + c takes whole steps where its step divides c). A loop over tile rows of S elements (hybrid's one-row nest) is proved the
same way in tiles [S*j0, S*j0 + S*step): an index S*j0 + c where c's range (constants,
the tile row's height min(S*j0 + S*step, n) - S*j0 under a loop that ends at ceil(n / S),
inner loops, minui, tail ends) lies in [0, S*step). Ops other than
pure arithmetic, loads, stores, local allocations and structured control flow
(calls) keep the loop serial. A buffer that a loop fills whole in every iteration
(2:4's panel scratch) is not privatised: that loop stays serial.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, llvm, memref, ptr, scf, vector
from xdsl.dialects.builtin import IntegerAttr, MemRefType, ModuleOp, NoneAttr, UnitAttr, VectorType
from xdsl.ir import BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass

from stoicc_py.backends.llvm.translate import NOALIAS_ARGS
from stoicc_py.codegen.pure import computes_only

PARALLEL = "stoicc.parallel"
"""Unit attribute on a top-level scf.for whose iterations are independent."""

Bounds = tuple[int | None, int | None]
"""(a, b): the value is >= j0 + a and <= tile_end - b; None where unknown (a tile of
scale S: >= S*j0 + a and <= S*j0 + S*step - b)."""
Range = tuple[int, int | None]
"""(lo, hi): an offset from a scaled tile's start, lo <= value <= hi (hi None: unknown)."""


def constant(v: SSAValue) -> int | None:
    if isinstance(v.owner, arith.ConstantOp) and isinstance(v.owner.value, IntegerAttr):
        return v.owner.value.value.data
    return None


class _Tile:
    """Index bounds relative to one loop's iteration tile [j0, tile_end), or, with a
    scale S > 1, [S*j0, S*j0 + S*step): the iterations of a loop over tile rows of S
    elements each write their own rows (hybrid's one-row nest: out[tr*32 + c], c < 32)."""

    def __init__(self, loop: scf.ForOp, scale: int = 1) -> None:
        self.loop = loop
        self.j0 = loop.body.block.args[0]
        self.scale = scale
        self.memo: dict[SSAValue, Bounds] = {}
        self.ranges: dict[SSAValue, Range | None] = {}

    def is_end(self, v: SSAValue) -> bool:
        """v = minui(j0 + step, ub), the tile's end; or j0 + 1 for a loop of step 1 (scaled:
        minui(S*j0 + S*step, n) where the loop ends at ceil(n / S), so S*j0 < n)."""
        op = v.owner
        if not (isinstance(op, arith.MinUIOp) and isinstance(add := op.lhs.owner, arith.AddiOp)):
            return False
        step = constant(self.loop.step)
        if self.scale > 1:
            return self.is_start(add.lhs) and step is not None and constant(add.rhs) == self.scale * step \
                and self._rows_before(op.rhs)  # fmt: skip
        return op.rhs == self.loop.ub and add.lhs == self.j0 and (add.rhs == self.loop.step or constant(add.rhs) == step is not None)

    def is_start(self, v: SSAValue) -> bool:
        """v = S*j0, a scaled tile's first element."""
        op = v.owner
        return isinstance(op, arith.MuliOp) and op.lhs == self.j0 and constant(op.rhs) == self.scale > 1

    def _rows_before(self, n: SSAValue) -> bool:
        """Whether S*j0 < n in every iteration: the loop ends at ceil(n / S) (or constants with
        S*(ub - 1) < n)."""
        s, ub = self.scale, self.loop.ub
        if (c_ub := constant(ub)) is not None and (c_n := constant(n)) is not None:
            return s * (c_ub - 1) < c_n
        div = ub.owner
        if not (isinstance(div, arith.DivUIOp) and constant(div.rhs) == s and isinstance(div.lhs.owner, arith.AddiOp)):
            return False
        return div.lhs.owner.lhs == n and constant(div.lhs.owner.rhs) == s - 1

    def bounds(self, v: SSAValue) -> Bounds:
        if v not in self.memo:
            self.memo[v] = self._bounds(v)
        return self.memo[v]

    def _bounds(self, v: SSAValue) -> Bounds:
        if v == self.j0:
            if self.scale > 1:
                return (None, None)
            step = constant(self.loop.step)  # a symbolic step is positive (scf.for's): j0 < the tile's end
            return (0, 1 if step is None else step if self._whole_steps(self.loop, step) else 1)
        if self.is_end(v):
            return (1, 0)
        if self.is_start(v):
            return (0, self.scale * constant(self.loop.step))  # type: ignore[operator]
        op = v.owner
        if isinstance(op, arith.AddiOp) and self.scale > 1 and (shifted := self._start_plus_range(op)) is not None:
            return shifted
        if isinstance(op, arith.AddiOp | arith.SubiOp):
            return self._offset(op)
        if isinstance(op, arith.MinUIOp):
            (la, lb), (ra, rb) = self.bounds(op.lhs), self.bounds(op.rhs)
            low = None if la is None or ra is None else min(la, ra)
            high = max((b for b in (lb, rb) if b is not None), default=None)
            return (low, high)
        if isinstance(v, BlockArgument) and isinstance(loop := v.block.parent_op(), scf.ForOp) and v.index == 0:
            return self._induction(loop)
        return (None, None)

    def _start_plus_range(self, op: arith.AddiOp) -> Bounds | None:
        """Bounds of p + r (either order) for p in the scaled tile and r an offset range."""
        for p, r in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            (a, b), offset = self.bounds(p), self.range(r)
            if a is not None and offset is not None and constant(r) is None:
                return (a + offset[0], None if b is None or offset[1] is None else b - offset[1])
        return None

    def range(self, v: SSAValue) -> Range | None:
        if v not in self.ranges:
            self.ranges[v] = self._range(v)
        return self.ranges[v]

    def _range(self, v: SSAValue) -> Range | None:
        """An offset's (lo, hi), for a scaled tile: constants, p - S*j0 for p in the tile
        (the height of a ragged last tile row), minui, loop induction variables, and the
        register blocks' tail ends e - (e - lb) % s."""
        if (c := constant(v)) is not None:
            return (c, c) if c >= 0 else None
        op = v.owner
        if isinstance(op, arith.SubiOp) and self.is_start(op.rhs):
            a, b = self.bounds(op.lhs)
            return None if a is None or a < 0 else (a, None if b is None else self.scale * constant(self.loop.step) - b)  # type: ignore[operator]
        if isinstance(op, arith.SubiOp) and (tail := _tail(op)) is not None:
            lb, end = self.range(tail[0]), self.range(op.lhs)
            if lb is None or lb[1] is None or end is None or end[0] < lb[1]:
                return None  # e may be below lb, where e - lb wraps
            return (lb[0], end[1])
        if isinstance(op, arith.MinUIOp) and (x := self.range(op.lhs)) and (y := self.range(op.rhs)):
            his = [h for h in (x[1], y[1]) if h is not None]
            return (min(x[0], y[0]), min(his, default=None))
        if isinstance(op, arith.AddiOp) and (c := constant(op.rhs)) is not None and (x := self.range(op.lhs)):
            return (x[0] + c, None if x[1] is None else x[1] + c) if c >= 0 else None
        if isinstance(v, BlockArgument) and isinstance(loop := v.block.parent_op(), scf.ForOp) and v.index == 0:
            return self._induction_range(loop)
        return None

    def _induction_range(self, loop: scf.ForOp) -> Range | None:
        step = constant(loop.step)
        lb, ub = self.range(loop.lb), self.range(loop.ub)
        if step is None or step < 1 or lb is None or ub is None or ub[1] is None:
            return None
        tail = _tail(loop.ub.owner) if isinstance(loop.ub.owner, arith.SubiOp) else None
        whole = tail is not None and tail[0] == loop.lb and tail[1] % step == 0
        return (lb[0], ub[1] - (step if whole else 1))

    def _offset(self, op: arith.AddiOp | arith.SubiOp) -> Bounds:
        sign = 1 if isinstance(op, arith.AddiOp) else -1
        for base, c in ((op.lhs, constant(op.rhs)), (op.rhs, constant(op.lhs) if sign == 1 else None)):
            if c is not None:
                a, b = self.bounds(base)
                return (None if a is None else a + sign * c, None if b is None else b - sign * c)
        if isinstance(op, arith.SubiOp) and (tail := _tail(op)) is not None:
            return (self.bounds(tail[0])[0], self.bounds(op.lhs)[1])
        if sign == -1 and isinstance(op.rhs.owner, arith.RemUIOp):  # e - (x % s) <= e
            return (None, self.bounds(op.lhs)[1])
        return (None, None)

    def _induction(self, loop: scf.ForOp) -> Bounds:
        step = constant(loop.step)
        if step is None or step < 1:
            return (None, None)
        low, (_, high) = self.bounds(loop.lb)[0], self.bounds(loop.ub)
        return (low, None if high is None else high + (step if self._whole_steps(loop, step) else 1))

    def _whole_steps(self, loop: scf.ForOp, step: int) -> bool:
        """Whether `loop`'s ub - lb (a loop in the tile, or the tiled loop itself: then every tile is
        [j0, j0 + step) whole) is a multiple of `step`, so that the last iteration starts at ub - step:
        ub is a tail end `e - (e - lb) % s` (the quantized kernels' two-column blocks end
        where the one-row edge's four-column ones do), or the tile's end [j0, min(j0 + S, UB))
        of a loop whose constant bounds and step S are multiples of `step` (a static N)."""
        if isinstance(loop.ub.owner, arith.SubiOp) and (tail := _tail(loop.ub.owner)) is not None:
            return tail[0] == loop.lb and tail[1] % step == 0
        add = loop.ub.owner
        if isinstance(add, arith.AddiOp) and add.lhs == loop.lb and (c := constant(add.rhs)) is not None:
            return c % step == 0  # lb + c: c / step whole steps
        outer = (constant(v) for v in (self.loop.lb, self.loop.ub, self.loop.step))
        return loop.lb == self.j0 and self.is_end(loop.ub) and all(c is not None and c % step == 0 for c in outer)


def _tail(op: arith.SubiOp) -> tuple[SSAValue, int] | None:
    """(lb, s) where op is e - (e - lb) % s: the end of the whole steps of s from lb to e."""
    rem = op.rhs.owner
    if not isinstance(rem, arith.RemUIOp) or not isinstance(diff := rem.lhs.owner, arith.SubiOp):
        return None
    step = constant(rem.rhs)
    return (diff.rhs, step) if diff.lhs == op.lhs and step is not None else None


_READS = (memref.LoadOp, vector.LoadOp)
_WRITES = (memref.StoreOp, vector.StoreOp)
_PRIVATE = (memref.AllocOp, memref.AllocaOp, memref.DeallocOp, memref.DimOp)
_VIEWS = (memref.ReinterpretCastOp, memref.SubviewOp, memref.CastOp)


def _root(v: SSAValue) -> SSAValue:
    while isinstance(v.owner, _VIEWS):
        v = v.owner.operands[0]
    return v


def _access(op: Operation) -> tuple[SSAValue, list[SSAValue], int] | None:
    """(memref, indices, elements along the last axis) of a load or store."""
    if isinstance(op, memref.LoadOp | memref.StoreOp):
        return op.memref, list(op.indices), 1
    if isinstance(op, vector.LoadOp | vector.StoreOp):
        values = op.result if isinstance(op, vector.LoadOp) else op.vector
        assert isinstance(values.type, VectorType)
        return op.base, list(op.indices), values.type.get_shape()[-1]
    return None


_REGISTER_INTRINSICS = ("llvm.x86.avx", "llvm.vector.", "llvm.maximum.", "llvm.minimum.")
"""Intrinsics that compute on vector registers alone (vpdpbusd, vpermi2var, vdpbf16ps,
reductions); AMX's tile instructions (`llvm.x86.t*`, `ldtilecfg`) are a thread's state."""


_HINT_INTRINSICS = ("llvm.prefetch.",)
"""Intrinsics that only hint the caches about an address: no element is read or written."""


def _computes(op: Operation) -> bool:
    """Whether `op` only computes a value: computes_only, or arithmetic, vector ops and
    register intrinsics on values (xDSL gives divisions, vector.reduction and
    llvm.call_intrinsic no effect traits), an address (a buffer's pointer, plus an
    offset), or a cache hint at one."""
    on_values = not op.regions and not any(isinstance(v.type, MemRefType | ptr.PtrType) for v in op.operands)
    if isinstance(op, llvm.CallIntrinsicOp):
        return (on_values and op.intrin.data.startswith(_REGISTER_INTRINSICS)) or op.intrin.data.startswith(_HINT_INTRINSICS)
    return computes_only(op) or isinstance(op, ptr.ToPtrOp | ptr.PtrAddOp) or (
        on_values and op.name.split(".")[0] in ("arith", "math", "vector"))


def is_parallel(loop: scf.ForOp, noalias: bool) -> bool:
    """Whether no two iterations of `loop` touch an element of a buffer that one writes."""
    if loop.results:
        return False
    inside = {op for op in loop.walk()}
    accesses: dict[SSAValue, list[tuple[SSAValue, list[SSAValue], int]]] = {}
    written: set[SSAValue] = set()
    for op in loop.body.walk():
        if (access := _access(op)) is not None:
            accesses.setdefault(_root(access[0]), []).append(access)
            if isinstance(op, _WRITES):
                written.add(_root(access[0]))
        elif not (_computes(op) or isinstance(op, (scf.ForOp, scf.IfOp, scf.YieldOp, *_PRIVATE))):
            return False
    outer_roots = [r for r in accesses if r.owner not in inside]
    if not noalias and len([r for r in outer_roots if isinstance(r, BlockArgument)]) > 1 and written:
        return False  # arguments that may alias: no element is provably its own
    scales = _scales(loop) if constant(loop.step) is not None else set()
    tiles = [_Tile(loop), *(_Tile(loop, s) for s in scales)]
    return all(r.owner in inside or any(_stays_in_tile(t, accesses[r]) for t in tiles) for r in written)


def _scales(loop: scf.ForOp) -> set[int]:
    """The constants S of the products S*j0 of the loop's induction variable (tile rows of S)."""
    j0 = loop.body.block.args[0]
    return {c for use in j0.uses if isinstance(mul := use.operation, arith.MuliOp) and mul.lhs == j0
            and (c := constant(mul.rhs)) is not None and c > 1}  # fmt: skip


def _stays_in_tile(tile: _Tile, accesses: list[tuple[SSAValue, list[SSAValue], int]]) -> bool:
    """Whether every access goes through one identity-layout memref and stays in the tile on one axis."""
    values = {m for m, _, _ in accesses}
    if len(values) != 1:
        return False
    typ = next(iter(values)).type
    if not isinstance(typ, MemRefType) or not isinstance(typ.layout, NoneAttr):
        return False
    rank = typ.get_num_dims()

    def inside(indices: list[SSAValue], width: int, axis: int) -> bool:
        a, b = tile.bounds(indices[axis])
        return a is not None and b is not None and a >= 0 and b >= (width if axis == rank - 1 else 1)

    return any(all(inside(ix, w, axis) for _, ix, w in accesses) for axis in range(rank))


@dataclass(frozen=True)
class MarkParallelLoops(ModulePass):
    name = "mark-parallel-loops"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if not isinstance(fn, func.FuncOp) or fn.is_declaration:
                continue
            for loop in fn.body.block.ops:
                if isinstance(loop, scf.ForOp) and is_parallel(loop, NOALIAS_ARGS in fn.attributes):
                    loop.attributes[PARALLEL] = UnitAttr()


