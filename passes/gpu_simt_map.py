"""gpu-simt-map: a kernel's CPU loop nests (stage ptr, before outlining) as the body of
one GPU thread block: the generic SIMT path of the GPU target (backends/gpu/simt.py).

Every thread of the block runs the function body; at its top level
- a loop that mark-parallel-loops proved parallel (`stoicc.parallel`) is distributed
  over the threads: iteration i0 + tid * step, stepping by step * ntid;
- any other op that writes memory or calls (a serial loop nest, a store, a free) runs
  on thread 0 alone (consecutive ones under one `scf.if`);
- a block barrier (`llvm.nvvm.barrier0`, which also orders global memory between the
  block's threads) follows each of those, so that the next nest reads what it wrote;
- a temporary (lower-alloc's `aligned_alloc`) is allocated by thread 0 from the device
  heap (`malloc`, which the PTX JIT resolves, 16-byte aligned: the nests are scalar)
  and shared through the kernel's last parameter, `slots` (8 bytes a temporary, given
  by the host), read back by every thread after a barrier; one inside a loop is its
  thread's own;
- arithmetic and loads stay on every thread (each computes the same values; a
  load after thread 0's ops, after their barrier).
The function becomes a `ptx_kernel`. An op that writes memory and yields a value at
the top level has no such mapping: an error (lower-to-loops builds none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

from xdsl.context import Context
from xdsl.dialects import arith, func, llvm, ptr, scf
from xdsl.dialects.builtin import FunctionType, IndexType, IntegerAttr, ModuleOp, StringAttr, i32, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.backends.gpu.simt import BARRIER, KERNEL_CC, MALLOC, NTID, SLOT_BYTES, SLOTS, TID
from stoicc_py.backends.llvm.translate import CALLING_CONVENTION
from stoicc_py.codegen.pure import computes_only
from stoicc_py.passes.lower_alloc import ALLOC_FN
from stoicc_py.passes.mark_parallel_loops import PARALLEL


def _writes(op: Operation) -> bool:
    """Whether `op` (or an op inside it) stores or calls."""
    return any(isinstance(o, ptr.StoreOp | func.CallOp | llvm.CallIntrinsicOp) for o in op.walk())


def _is_parallel(op: Operation) -> TypeGuard[scf.ForOp]:
    return isinstance(op, scf.ForOp) and PARALLEL in op.attributes


def _is_alloc(op: Operation) -> TypeGuard[func.CallOp]:
    return isinstance(op, func.CallOp) and op.callee.string_value() == ALLOC_FN


class _Mapper:
    """Rewrites one function's top level; `tid`, `ntid` and `first` (tid == 0) at its entry."""

    def __init__(self, fn: func.FuncOp) -> None:
        self.block = fn.body.block
        self.slots = self.block.insert_arg(ptr.PtrType(), len(self.block.args))
        inputs = [*fn.function_type.inputs.data, ptr.PtrType()]
        fn.function_type = FunctionType.from_lists(inputs, fn.function_type.outputs.data)
        self.at = InsertPoint.at_start(self.block)
        self.tid = self._index(TID)
        self.ntid = self._index(NTID)
        zero = self._insert(arith.ConstantOp(IntegerAttr(0, IndexType())))
        self.first = self._insert(arith.CmpiOp(self.tid, zero, "eq"))
        self.allocs = 0

    def _insert(self, op: Operation) -> SSAValue:
        Rewriter.insert_op(op, self.at)
        return op.results[0]

    def _index(self, register: str) -> SSAValue:
        return self._insert(arith.IndexCastOp(self._insert(llvm.CallIntrinsicOp(register, [], [i32])), IndexType()))

    def _barrier(self) -> None:
        self._insert_void(llvm.CallIntrinsicOp(BARRIER, [], []))

    def _insert_void(self, op: Operation) -> None:
        Rewriter.insert_op(op, self.at)

    def _on_first(self, ops: list[Operation]) -> None:
        """`ops` (moved) under `if tid == 0`, then a barrier."""
        for op in ops:
            op.detach()
        self._insert_void(scf.IfOp(self.first, [], [*ops, scf.YieldOp()]))
        self._barrier()

    def map(self) -> None:
        serial: list[Operation] = []  # top-level ops for thread 0, not yet placed
        for op in list(self.block.ops)[self._entry_ops() :]:
            if computes_only(op):  # a load may read what a pending serial op writes: it waits
                continue
            if _writes(op) and not _is_alloc(op) and not _is_parallel(op) and not any(r.uses for r in op.results):
                serial.append(op)
                continue
            self.at = InsertPoint.before(op)
            if serial:
                self._on_first(serial)
                serial = []
            if isinstance(op, func.ReturnOp):
                return
            if _is_alloc(op):
                self._shared_alloc(op)
            elif _is_parallel(op):
                self._distribute(op)
            elif _writes(op):
                raise DiagnosticException(f"gpu-simt-map: {op.name} writes memory and yields a value at the top level")

    def _entry_ops(self) -> int:
        """The ops this mapper put at the entry (before the body's own)."""
        return next(i for i, op in enumerate(self.block.ops) if op is self.first.owner) + 1

    def _distribute(self, loop: scf.ForOp) -> None:
        start = self._insert(arith.AddiOp(loop.lb, self._insert(arith.MuliOp(self.tid, loop.step))))
        stride = self._insert(arith.MuliOp(loop.step, self.ntid))
        loop.operands[0], loop.operands[2] = start, stride
        self.at = InsertPoint.after(loop)
        self._barrier()

    def _shared_alloc(self, call: func.CallOp) -> None:
        """Thread 0's malloc, stored in its slot; every thread's load of it after a barrier."""
        offset = self._insert(arith.ConstantOp(IntegerAttr(SLOT_BYTES * self.allocs, IndexType())))
        self.allocs += 1
        slot = self._insert(ptr.PtrAddOp(self.slots, offset))
        malloc = func.CallOp(MALLOC, [call.arguments[1]], [ptr.PtrType()])
        self._insert_void(scf.IfOp(self.first, [], [malloc, ptr.StoreOp(slot, malloc.res[0]), scf.YieldOp()]))
        self._barrier()
        shared = self._insert(ptr.LoadOp(slot, ptr.PtrType()))
        call.res[0].replace_all_uses_with(shared)
        call.detach()
        call.erase()


def _private_alloc(call: func.CallOp) -> None:
    """A temporary inside a loop: its thread's own, from the device heap."""
    Rewriter.replace_op(call, func.CallOp(MALLOC, [call.arguments[1]], [ptr.PtrType()]))


@dataclass(frozen=True)
class GpuSimtMap(ModulePass):
    name = "gpu-simt-map"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp)]:
            if fn.sym_name.data == ALLOC_FN:
                fn.sym_name = StringAttr(MALLOC)
                fn.function_type = FunctionType.from_lists([i64], [ptr.PtrType()])
            elif fn.body.blocks:
                mapper = _Mapper(fn)
                mapper.map()
                fn.attributes[CALLING_CONVENTION] = StringAttr(KERNEL_CC)
                fn.attributes[SLOTS] = IntegerAttr(mapper.allocs, i64)
        for call in [o for o in op.walk() if _is_alloc(o)]:
            _private_alloc(call)

