"""Lowers `ptr_xdsl.ptradd` to an inbounds `llvm.getelementptr` over bytes.

xDSL's convert-ptr-to-llvm lowers ptradd through ptrtoint/add/inttoptr, which
hides the pointer's provenance from LLVM's alias analysis and loop vectoriser.
A GEP keeps it. This pass runs before convert-ptr-to-llvm; the casts it leaves
between `!ptr_xdsl.ptr` and `!llvm.ptr` are removed by reconcile-unrealized-casts.

An offset that is `index * size` (lower-memory-to-ptr's element offset times the
element's `ptr_xdsl.type_offset`, or a constant) becomes the GEP's index over a type of
that size, and the multiplication goes where nothing else uses it: two ops fewer per
memory access for every pass after this one (LLVM would fold them the same way).
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, llvm, ptr
from xdsl.dialects.builtin import (
    FixedBitwidthType,
    IndexType,
    IntAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    UnrealizedConversionCastOp,
    i8,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    RewritePattern,
    op_type_rewrite_pattern,
)

from stoicc_py.codegen.apply_once import apply_once


def _size(factor: SSAValue) -> int:
    """The constant byte size `factor` holds (an element's `ptr_xdsl.type_offset` or a
    constant), else 0."""
    match factor.owner:
        case ptr.TypeOffsetOp(elem_type=FixedBitwidthType() as typ):
            return typ.size
        case arith.ConstantOp(value=IntegerAttr() as value) if value.value.data > 0:
            return value.value.data
    return 0


def _scaled(offset: SSAValue) -> tuple[SSAValue, Attribute, SSAValue | None]:
    """`offset` as (index, element type, size): (i, a type of c bytes, c) for `i * c` with a
    constant size c, else (offset, i8, None)."""
    mul = offset.owner
    if isinstance(mul, arith.MuliOp):
        for index, factor in ((mul.lhs, mul.rhs), (mul.rhs, mul.lhs)):
            if size := _size(factor):
                element = IntegerType(8 * size) if size in (1, 2, 4, 8) else llvm.LLVMArrayType(IntAttr(size), i8)
                return index, element, factor
    return offset, i8, None


class PtrAddToGEP(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ptr.PtrAddOp, rewriter: PatternRewriter, /) -> None:
        new_ops: list[Operation] = []
        offset, element, size = _scaled(op.offset)
        # GEP indices must be integers; convert-arith-to-llvm folds this cast away.
        if isinstance(offset.type, IndexType):
            new_ops.append(index_cast := arith.IndexCastOp(offset, i64))
            offset = index_cast.result
        new_ops += [
            base := UnrealizedConversionCastOp.get([op.addr], [llvm.LLVMPointerType()]),
            gep := llvm.GEPOp.from_mixed_indices(base.results[0], [offset], pointee_type=element, inbounds=True),
            back := UnrealizedConversionCastOp.get([gep.result], [ptr.PtrType()]),
        ]
        product = op.offset
        rewriter.replace(op, new_ops, back.results)
        # The multiplication and its size go where nothing else uses them.
        for value in (product, size) if size is not None else ():
            if isinstance(value.owner, Operation) and not value.uses:
                rewriter.erase(value.owner)


@dataclass(frozen=True)
class ConvertPtrAddToGEP(ModulePass):
    name = "convert-ptradd-to-gep"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        apply_once(op, {ptr.PtrAddOp: PtrAddToGEP()})
