"""Lowers `ptr_xdsl.ptradd` to an inbounds `llvm.getelementptr` over bytes.

xDSL's convert-ptr-to-llvm lowers ptradd through ptrtoint/add/inttoptr, which
hides the pointer's provenance from LLVM's alias analysis and loop vectoriser.
A GEP keeps it. This pass runs before convert-ptr-to-llvm; the casts it leaves
between `!ptr_xdsl.ptr` and `!llvm.ptr` are removed by reconcile-unrealized-casts.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, llvm, ptr
from xdsl.dialects.builtin import (
    IndexType,
    ModuleOp,
    UnrealizedConversionCastOp,
    i8,
    i64,
)
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)


class PtrAddToGEP(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ptr.PtrAddOp, rewriter: PatternRewriter, /) -> None:
        new_ops: list[Operation] = []
        offset: SSAValue = op.offset
        # GEP indices must be integers; convert-arith-to-llvm folds this cast away.
        if isinstance(offset.type, IndexType):
            new_ops.append(index_cast := arith.IndexCastOp(offset, i64))
            offset = index_cast.result
        new_ops += [
            base := UnrealizedConversionCastOp.get([op.addr], [llvm.LLVMPointerType()]),
            gep := llvm.GEPOp.from_mixed_indices(base.results[0], [offset], pointee_type=i8, inbounds=True),
            back := UnrealizedConversionCastOp.get([gep.result], [ptr.PtrType()]),
        ]
        rewriter.replace(op, new_ops, back.results)


@dataclass(frozen=True)
class ConvertPtrAddToGEP(ModulePass):
    name = "convert-ptradd-to-gep"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(PtrAddToGEP(), apply_recursively=False).rewrite_module(op)
