"""tdsl-dequantize-sq-activations (CPU): a product of SQ-format activations and a dense
weight reads the activations' values instead of their two parts.

tdsl-fuse-dequant lets the product read the low and high parts in one pass (the
accelerator gathers the high part on chip); on a CPU that pass is a scalar nest, 5 to
12 times the W8A8 path's time, where dequantizing the split once per call (O(M*K)) and
running the dense kernel costs the GEMM's time. The values are the same (the parts sum
to fake_sq(x) exactly); only the order of the products' float sums changes, as between
any two kernels.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern

from stoicc_py.dialects.quant import SQAttr
from stoicc_py.dialects.tdsl import ContractionOp, DequantizeOp, TensorType


@dataclass
class DequantizeSQActivations(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ContractionOp, rewriter: PatternRewriter, /):
        lhs, rhs = op.lhs.type, op.rhs.type
        if op.result is None or not isinstance(lhs, TensorType) or not isinstance(lhs.layout, SQAttr):
            return
        if not isinstance(rhs, TensorType) or not rhs.layout.is_dense:
            return
        values = DequantizeOp.build(operands=[[op.lhs], []], result_types=[[TensorType(lhs.dims, lhs.element_type)]])
        product = type(op)(values.results[0], op.rhs, op.bias, op.result.type, dict(op.attributes))
        product.location = op.location
        rewriter.replace(op, [values, product], [product.results[0]])


@dataclass(frozen=True)
class DequantizeSQActivationsPass(ModulePass):
    name = "tdsl-dequantize-sq-activations"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(DequantizeSQActivations(), apply_recursively=False).rewrite_module(op)
