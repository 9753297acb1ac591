"""mark-parallel-loops: marks the top-level loops whose iterations are independent
(parallelize-loops then runs them on the native thread pool: see passes/parallelize_loops.py).

On memrefs, before lower-memory-to-ptr, it marks a top-level
`scf.for` without results `stoicc.parallel` when it can prove that no two iterations
touch the same element of a buffer that one of them writes: every buffer written in
the loop is defined outside it, reached through one SSA value (not a view of it that
the loop also uses), has the identity layout, and each of its accesses stays on one
axis inside the iteration's tile [j0, min(j0 + step, ub)) (the column tiles of a
linear, the rows of an elementwise op). Index bounds are followed through constant
offsets, `minui`, the loops nested in the tile and the register blocks' tail pattern
`e - (e - lb) % s` (a loop of step s from lb to it never passes e; nor does one whose
step divides s). Ops other than
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
"""(a, b): the value is >= j0 + a and <= tile_end - b; None where unknown."""


def constant(v: SSAValue) -> int | None:
    if isinstance(v.owner, arith.ConstantOp) and isinstance(v.owner.value, IntegerAttr):
        return v.owner.value.value.data
    return None


class _Tile:
    """Index bounds relative to one loop's iteration tile [j0, tile_end)."""

    def __init__(self, loop: scf.ForOp) -> None:
        self.loop = loop
        self.j0 = loop.body.block.args[0]
        self.memo: dict[SSAValue, Bounds] = {}

    def is_end(self, v: SSAValue) -> bool:
        """v = minui(j0 + step, ub), the tile's end; or j0 + 1 for a loop of step 1."""
        op = v.owner
        if isinstance(op, arith.MinUIOp) and op.rhs == self.loop.ub and isinstance(op.lhs.owner, arith.AddiOp):
            add = op.lhs.owner
            return add.lhs == self.j0 and constant(add.rhs) == constant(self.loop.step) is not None
        return False

    def bounds(self, v: SSAValue) -> Bounds:
        if v not in self.memo:
            self.memo[v] = self._bounds(v)
        return self.memo[v]

    def _bounds(self, v: SSAValue) -> Bounds:
        if v == self.j0:
            return (0, 0 if constant(self.loop.step) is None else 1)
        if self.is_end(v):
            return (1, 0)
        op = v.owner
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
        """Whether ub - lb is a multiple of `step`, so that the last iteration starts at ub - step:
        ub is a tail end `e - (e - lb) % s` (the quantized kernels' two-column blocks end
        where the one-row edge's four-column ones do), or the tile's end [j0, min(j0 + S, UB))
        of a loop whose constant bounds and step S are multiples of `step` (a static N)."""
        if isinstance(loop.ub.owner, arith.SubiOp) and (tail := _tail(loop.ub.owner)) is not None:
            return tail[0] == loop.lb and tail[1] % step == 0
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


def _computes(op: Operation) -> bool:
    """Whether `op` only computes a value: computes_only, or arithmetic, vector ops and
    register intrinsics on values (xDSL gives divisions, vector.reduction and
    llvm.call_intrinsic no effect traits)."""
    on_values = not op.regions and not any(isinstance(v.type, MemRefType | ptr.PtrType) for v in op.operands)
    if isinstance(op, llvm.CallIntrinsicOp):
        return on_values and op.intrin.data.startswith(_REGISTER_INTRINSICS)
    return computes_only(op) or (on_values and op.name.split(".")[0] in ("arith", "math", "vector"))


def is_parallel(loop: scf.ForOp, noalias: bool) -> bool:
    """Whether no two iterations of `loop` touch an element of a buffer that one writes."""
    if loop.results or constant(loop.step) is None:
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
    tile = _Tile(loop)
    return all(r.owner in inside or _stays_in_tile(tile, accesses[r]) for r in written)


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


