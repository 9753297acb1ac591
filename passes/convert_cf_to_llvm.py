"""Lowers `cf.br` / `cf.cond_br` to `llvm.br` / `llvm.cond_br`, block arguments
included (the llvmlite translator turns them into phi nodes)."""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import cf, llvm
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    RewritePattern,
    op_type_rewrite_pattern,
)

from stoicc_py.codegen.apply_once import apply_once


class BranchLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: cf.BranchOp, rewriter: PatternRewriter, /) -> None:
        rewriter.replace(op, llvm.BrOp(op.successor, *op.arguments))


class ConditionalBranchLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: cf.ConditionalBranchOp, rewriter: PatternRewriter, /) -> None:
        rewriter.replace(
            op,
            llvm.CondBrOp(op.cond, op.then_block, op.then_arguments, op.else_block, op.else_arguments),
        )


@dataclass(frozen=True)
class ConvertCfToLLVM(ModulePass):
    name = "convert-cf-to-llvm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        apply_once(op, {cf.BranchOp: BranchLowering(), cf.ConditionalBranchOp: ConditionalBranchLowering()})
