"""parallelize-loops: the loops that mark-parallel-loops marked run on the native thread
pool (backends/llvm/runtime.py).

After outline-loop-nests, on pointers, it replaces each marked loop
by `stoicc_parallel_for(&body, ctx, iterations, work)`: `body(ctx, start, stop)` is a
private function running iterations [start, stop) of the same loop, with the loop's
free values (kernel arguments, allocations, sizes) read from the context buffer `ctx`
that the caller fills (on its stack). `work` is a static estimate of one iteration's cost (ops times
the constant trip counts of the loops inside; a symbolic one counts SYMBOLIC_TRIPS),
which the runtime weighs against its hand-off cost. Each iteration runs exactly the
code it runs in the whole loop, so results agree bit for bit with one thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, llvm, ptr, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, ModuleOp, UnitAttr, UnrealizedConversionCastOp, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from stoicc_py.backends.llvm.runtime import ENTRY
from stoicc_py.backends.llvm.translate import NO_INLINE
from stoicc_py.passes.mangle_symbols import needs_declaration
from stoicc_py.passes.mark_parallel_loops import PARALLEL, constant
from stoicc_py.passes.outline_loop_nests import Outliner, free_values

SYMBOLIC_TRIPS = 16
"""The trip count that the work estimate assumes for a loop with symbolic bounds."""
PARALLEL_WORK, SERIAL_WORK = "stoicc.parallel_work", "stoicc.serial_work"
"""The largest work estimate of a function's parallel (serial) top-level loops, for calls_pool."""
ROWS_LEFT = "stoicc.rows_left"
"""Unit attribute (tdsl-microkernel) on a loop over only the rows that a kernel's register
blocks leave, fewer than a block (a GEMV's one: StreamKernel's n-tiles). Marked parallel, it
runs on the pool, but its work (ROWS_LEFT_WORK) does not make calls of many rows run whole
(calls_pool with a Python split): its estimate counts SYMBOLIC_TRIPS rows, where it has
fewer than a block, so it would pass the register blocks' nest that does most rows."""
ROWS_LEFT_WORK = "stoicc.rows_left_work"
MERGED = "stoicc.merged_tiles"
"""Unit attribute (tdsl-microkernel) on a loop over column tiles [j0, min(j0 + step, ub)) whose
body reads its width as the step itself, and whose result does not depend on the tiling
(StreamKernel's n-tiles: a column's sum runs over k in order whatever its tile): a block of
iterations [start, stop) that the pool hands a thread runs as one tile of the block's span.
So one thread (the pool's serial path: one block) streams whole rows of b, as a call with
one tile does, and two threads a half each."""
PANEL_ROWS = "stoicc.panel_rows"
"""Unit attribute (tdsl-vectorize-sparse) on a top-level `if` around a loop over a kernel's
row panels, whose scratch it allocates only where a call has such rows: its loops count as
the function's serial work (calls_pool), as they would at top level."""
MIN_LOOP_WORK = 1 << 20
"""The least estimated work (`_trips` x `_work` of its body) of a marked loop that runs on the
pool; a smaller one stays serial, without a dispatch. Each dispatched loop costs compile
time (a context reader, the loop's constants again in its function, LLVM over both): the
decoder layer's 51 marked loops cost 1.2-1.6 s of CPU over its ~3 s compile, and all but
its 7 matrix products (9M and more; elementwise nests ~7K, attention's per-head loops
30K-140K) would seldom outweigh the pool's hand-off."""
SLOT = 8
"""Bytes per context slot: every free value is a pointer, an index or a scalar of 64 bits or fewer."""


def _trips(loop: scf.ForOp) -> int:
    lb, ub, step = constant(loop.lb), constant(loop.ub), constant(loop.step)
    return SYMBOLIC_TRIPS if None in (lb, ub, step) else max(0, -(-(ub - lb) // step))  # type: ignore[operator]


def _work(region: Region) -> int:
    """Ops of one run of `region`, loops counted by their trip counts."""
    total = 0
    for op in (o for block in region.blocks for o in block.ops):
        if isinstance(op, scf.ForOp):
            total += _trips(op) * _work(op.body)
        else:
            total += 1 + max((_work(r) for r in op.regions), default=0)
    return total


def _slot_type(v: SSAValue) -> Attribute:
    """The type a context slot holds `v` as: a pointer as an llvm pointer (the loads and
    stores of the ptr dialect hold values, not ptr_xdsl pointers, once lowered)."""
    return llvm.LLVMPointerType() if isinstance(v.type, ptr.PtrType) else v.type


class _Body(Outliner):
    """Iterations [start, stop) of a loop, as two functions: `NAME(ctx, start, stop)` reads
    the loop's free values from the context and calls `NAME.loop(values..., start, stop)`,
    which runs them. The values arrive as arguments, so the loop's buffers keep the
    `noalias` of the function it came from: loaded from memory, LLVM would have to assume
    they alias, version every vectorised loop with run-time overlap checks, and take
    longer over it (the decoder layer's O3 2.9 -> 1.8 s with every marked loop split)."""

    def __init__(self, function: func.FuncOp, loop: scf.ForOp) -> None:
        super().__init__(function)
        self.loop = loop
        for v in free_values(loop):
            self.value(v)

    def build(self, name: str) -> list[func.FuncOp]:
        """The context reader `name` and the loop `name.loop` (noalias buffers where the
        loop's function has them: Outliner.noalias)."""
        lb, ub, step = (self.mapping[v] for v in (self.loop.lb, self.loop.ub, self.loop.step))
        bounds = [self.block.insert_arg(i64, len(self.block.args)) for _ in range(2)]
        start, stop = (arith.IndexCastOp(a, IndexType()) for a in bounds)
        first = arith.AddiOp(lb, (s := arith.MuliOp(start, step)))
        end = arith.AddiOp(lb, (e := arith.MuliOp(stop, step)))
        last = arith.MinUIOp(end, ub)
        loop = self.loop  # moved, not copied: a copy of a matrix product's nest is most of this pass's time
        for v, new in self.mapping.items():
            v.replace_uses_with_if(new, lambda use: loop.is_ancestor(use.operation))
        loop.detach()
        ops: list[Operation] = [start, stop, s, first, e, end, last]
        if MERGED in loop.attributes:  # the block's tiles as one: its step is the block's span
            ops.append(span := arith.SubiOp(last, first))
            step.replace_uses_with_if(span.result, lambda use: loop.is_ancestor(use.operation))
            step = span.result
        loop.operands = [first.result, last.result, step]
        for mark in (PARALLEL, MERGED):
            loop.attributes.pop(mark, None)
        self.block.add_ops([*ops, loop, func.ReturnOp()])
        inner = self.function(f"{name}.loop")
        return [self._reader(name, inner), inner]

    def _reader(self, name: str, inner: func.FuncOp) -> func.FuncOp:
        block = Block(arg_types=[ptr.PtrType(), i64, i64])
        values: list[SSAValue] = []
        for i, v in enumerate(self.operands):
            offset = arith.ConstantOp.from_int_and_width(i * SLOT, IndexType())
            address = ptr.PtrAddOp(block.args[0], offset.result)
            load = ptr.LoadOp(address.result, _slot_type(v))
            block.add_ops([offset, address, load])
            value: SSAValue = load.res
            if isinstance(v.type, ptr.PtrType):
                cast = UnrealizedConversionCastOp.get([load.res], [v.type])
                block.add_op(cast)
                value = cast.results[0]
            values.append(value)
        block.add_ops([func.CallOp(inner.sym_name.data, [*values, *block.args[1:]], []), func.ReturnOp()])
        fn = func.FuncOp(name, (block.arg_types, ()), Region(block), visibility="private")
        fn.attributes[NO_INLINE] = UnitAttr()
        return fn


def _guarded(fn: func.FuncOp) -> list[scf.ForOp]:
    """The loops right under a top-level PANEL_ROWS `if`."""
    ifs = [o for o in fn.body.block.ops if isinstance(o, scf.IfOp) and PANEL_ROWS in o.attributes]
    return [o for i in ifs for region in i.regions for block in region.blocks for o in block.ops if isinstance(o, scf.ForOp)]


def _dispatch(loop: scf.ForOp, body: _Body, name: str) -> list[Operation]:
    """The caller's side: fill a context, call the runtime with the iteration count, free it."""
    ops: list[Operation] = []

    def add(op: Operation) -> SSAValue:
        ops.append(op)
        return op.results[0]

    # On the caller's stack: parallel_for returns once every block has run (an aligned_alloc
    # and free of it cost ~0.05-0.1 µs a dispatch here).
    slots = add(arith.ConstantOp.from_int_and_width(max(len(body.operands), 1), i64))
    context = add(UnrealizedConversionCastOp.get([add(llvm.AllocaOp(slots, i64, 64))], [ptr.PtrType()]))
    for i, v in enumerate(body.operands):
        offset = add(arith.ConstantOp.from_int_and_width(i * SLOT, IndexType()))
        slot = add(ptr.PtrAddOp(context, offset))
        if isinstance(v.type, ptr.PtrType):
            v = add(UnrealizedConversionCastOp.get([v], [_slot_type(v)]))
        ops.append(ptr.StoreOp(slot, v))
    one = add(arith.ConstantOp.from_int_and_width(1, IndexType()))
    zero = add(arith.ConstantOp.from_int_and_width(0, IndexType()))
    # iterations = ub > lb ? (ub - lb + step - 1) / step : 0
    span = add(arith.SubiOp(add(arith.AddiOp(add(arith.SubiOp(loop.ub, loop.lb)), loop.step)), one))
    count = add(arith.DivUIOp(span, loop.step))
    runs = add(arith.CmpiOp(loop.ub, loop.lb, "ugt"))
    iterations = add(arith.IndexCastOp(add(arith.SelectOp(runs, count, zero)), i64))
    work = add(arith.ConstantOp.from_int_and_width(max(_work(loop.body), 1), i64))
    address = add(llvm.AddressOfOp(name, llvm.LLVMPointerType()))
    fn = add(UnrealizedConversionCastOp.get([address], [ptr.PtrType()]))
    ops.append(func.CallOp(ENTRY, [fn, context, iterations, work], []))
    return ops


def _declare(module: ModuleOp) -> None:
    if needs_declaration(module, ENTRY, ParallelizeLoops.name):
        module.body.block.add_op(func.FuncOp.external(ENTRY, [ptr.PtrType(), ptr.PtrType(), i64, i64], []))


@dataclass(frozen=True)
class ParallelizeLoops(ModulePass):
    name = "parallelize-loops"

    min_work: int = MIN_LOOP_WORK
    """A marked loop estimated below this stays serial (MIN_LOOP_WORK)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        count = 0
        for fn in list(op.ops):
            if not isinstance(fn, func.FuncOp) or fn.is_declaration:
                continue
            loops = [o for o in fn.body.block.ops if isinstance(o, scf.ForOp)]
            for loop in loops:
                if PARALLEL in loop.attributes and _work(loop.body) * _trips(loop) < self.min_work:
                    del loop.attributes[PARALLEL]
            parallel = [o for o in loops if PARALLEL in o.attributes]
            serial = [o for o in loops if PARALLEL not in o.attributes] + _guarded(fn)
            for kind, chosen in ((PARALLEL_WORK, [o for o in parallel if ROWS_LEFT not in o.attributes]),
                                 (ROWS_LEFT_WORK, [o for o in parallel if ROWS_LEFT in o.attributes]),
                                 (SERIAL_WORK, serial)):  # fmt: skip
                fn.attributes[kind] = IntegerAttr(max((_work(o.body) for o in chosen), default=0), i64)
            for i, loop in enumerate([o for o in loops if PARALLEL in o.attributes]):
                body = _Body(fn, loop)
                name = f"{fn.sym_name.data}.par{i}"
                fn.body.block.insert_ops_before(_dispatch(loop, body, name), loop)
                op.body.block.insert_ops_after(body.build(name), fn)
                count += 1
        if count:
            _declare(op)


def calls_pool(module: ModuleOp, kernel: str, python_split: bool) -> bool:
    """Whether calls of the function `kernel` of `module` should run whole, their loops split
    over the pool: it has parallel loops, and no Python split (`python_split`: a row or
    column split in its ABI) or its largest loop is a parallel one. A kernel whose main loop
    stays serial (int4's column tiles) keeps the Python split. A loop over the rows left
    (ROWS_LEFT) counts only for calls without a Python split (abi.one_row_pool)."""
    functions = {f.sym_name.data: f for f in module.ops if isinstance(f, func.FuncOp)}
    seen: set[str] = set()
    pending = [kernel]
    work = {PARALLEL_WORK: 0, ROWS_LEFT_WORK: 0, SERIAL_WORK: 0}
    while pending:
        name = pending.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        fn = functions[name]
        for kind in work:
            if isinstance(value := fn.attributes.get(kind), IntegerAttr):
                work[kind] = max(work[kind], value.value.data)
        pending += [c.callee.string_value() for c in fn.walk() if isinstance(c, func.CallOp)]
    if python_split:
        return 0 < work[PARALLEL_WORK] >= work[SERIAL_WORK]
    return max(work[PARALLEL_WORK], work[ROWS_LEFT_WORK]) > 0
