"""tdsl-fold-transpose: read a transposed operand in place instead of transposing it.

`matmul(x, transpose(w))` becomes `linear(x, w)` (and `linear(x, transpose(w))`
becomes `matmul(x, w)`), so that a weight stored [out, in] (the layout that its
sparse and quantized formats compress along) is never copied.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern

from stoicc_py.dialects.tdsl import ContractionOp, LinearOp, MatmulOp, TransposeOp

_SWAPPED: dict[type[ContractionOp], type[ContractionOp]] = {MatmulOp: LinearOp, LinearOp: MatmulOp}


@dataclass
class FoldTransposedRhs(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ContractionOp, rewriter: PatternRewriter, /):
        producer = op.rhs.owner
        if op.is_bufferized or not isinstance(producer, TransposeOp) or producer.result is None:
            return
        rank = len(producer.permutation)
        if producer.permutation != (*range(rank - 2), rank - 1, rank - 2):
            return  # a permutation of other axes than the last two
        assert op.result is not None
        folded = _SWAPPED[type(op)](op.lhs, producer.input, op.bias, op.result.type, dict(op.attributes))
        folded.location = op.location
        rewriter.replace(op, folded)
        if not producer.result.uses:
            rewriter.erase(producer)


@dataclass(frozen=True)
class FoldTranspose(ModulePass):
    name = "tdsl-fold-transpose"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(FoldTransposedRhs()).rewrite_module(op)
