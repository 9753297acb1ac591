"""Lowers `func.func` / `func.return` / `func.call` to their llvm dialect twins.

Runs last among the dialect conversions: by then every argument and result type is
already an llvm-compatible type, so signatures carry over unchanged.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, llvm
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, UnitAttr
from xdsl.ir import Attribute
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.codegen.apply_once import apply_once

NOALIAS_ARGS = "stoicc.noalias_args"
"""Unit attribute on a func.func promising that its pointer arguments never alias."""
NO_INLINE = "stoicc.no_inline"
"""Unit attribute on a func.func that LLVM must not inline (the llvm.func's no_inline)."""


def _single_result(types: Sequence[Attribute], what: str) -> Attribute | None:
    if len(types) > 1:
        raise DiagnosticException(f"convert-func-to-llvm: {what} has several results")
    return types[0] if types else None


def _llvm_arg_attrs(op: func.FuncOp) -> ArrayAttr[DictionaryAttr] | None:
    """Keeps the `llvm.*` argument attributes and adds `llvm.noalias` to pointers
    when the function promises it: without it LLVM must assume that a store through
    one buffer may change another and will not vectorise the loops."""
    inputs = op.function_type.inputs.data
    given = op.arg_attrs.data if op.arg_attrs else (DictionaryAttr({}),) * len(inputs)
    noalias = NOALIAS_ARGS in op.attributes
    arg_attrs: list[DictionaryAttr] = []
    for typ, attrs in zip(inputs, given, strict=True):
        kept = {name: value for name, value in attrs.data.items() if name.startswith("llvm.")}
        if noalias and isinstance(typ, llvm.LLVMPointerType):
            kept["llvm.noalias"] = UnitAttr()
        arg_attrs.append(DictionaryAttr(kept))
    return ArrayAttr(arg_attrs) if any(d.data for d in arg_attrs) else None


class FuncLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: func.FuncOp, rewriter: PatternRewriter, /) -> None:
        output = _single_result(op.function_type.outputs.data, f"@{op.sym_name.data}")
        function_type = llvm.LLVMFunctionType(op.function_type.inputs, output)
        # a private definition is seen by its module only: internal linkage
        linkage = "internal" if op.sym_visibility == StringAttr("private") and op.body.blocks else "external"
        new_func = llvm.FuncOp(
            op.sym_name,
            function_type,
            linkage=llvm.LinkageAttr(linkage),
            body=rewriter.move_region_contents_to_new_regions(op.body),
            other_props={"arg_attrs": _llvm_arg_attrs(op), "no_inline": op.attributes.get(NO_INLINE)},
            extra_attrs={k: v for k, v in op.attributes.items() if k not in (NOALIAS_ARGS, NO_INLINE)},
        )
        rewriter.replace(op, new_func)


class ReturnLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: func.ReturnOp, rewriter: PatternRewriter, /) -> None:
        if len(op.arguments) > 1:
            raise DiagnosticException("convert-func-to-llvm: return of several values")
        rewriter.replace(op, llvm.ReturnOp(op.arguments[0] if op.arguments else None))


class CallLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: func.CallOp, rewriter: PatternRewriter, /) -> None:
        return_type = _single_result(op.result_types, f"call to {op.callee}")
        rewriter.replace(op, llvm.CallOp(op.callee, *op.arguments, return_type=return_type))


@dataclass(frozen=True)
class ConvertFuncToLLVM(ModulePass):
    name = "convert-func-to-llvm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        apply_once(op, {func.FuncOp: FuncLowering(), func.ReturnOp: ReturnLowering(), func.CallOp: CallLowering()})
