"""tdsl-infer-shapes: re-derive every tdsl result type from its operands.

Rewrites that change an operand's type (or hand-written IR with stale result types)
leave results inconsistent; this pass propagates the op's own inference forward in
program order and updates the function signature to what it returns.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from stoicc_py.dialects.tdsl import TdslOp, TensorType


def infer_result(op: Operation, rewriter: PatternRewriter) -> None:
    if not isinstance(op, TdslOp) or op.is_bufferized:
        return
    types = [o.type for o in op.tensor_operands()]
    if not all(isinstance(t, TensorType) for t in types):
        return
    try:
        expected = op.infer(types, op.attributes)  # type: ignore[arg-type]
    except VerifyException as err:
        raise DiagnosticException(f"'{op.name}' at {op.location}: {err}") from None
    result = op.results[0]
    if result.type != expected:
        rewriter.replace_value_with_new_type(result, expected)


@dataclass
class InferFunc(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: func.FuncOp, rewriter: PatternRewriter, /):
        for inner in list(op.walk()):
            infer_result(inner, rewriter)
        ret = op.get_return_op()
        if ret is not None and list(op.function_type.outputs) != list(ret.operand_types):
            op.update_function_type()


@dataclass(frozen=True)
class InferShapes(ModulePass):
    name = "tdsl-infer-shapes"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(InferFunc(), apply_recursively=False).rewrite_module(op)
