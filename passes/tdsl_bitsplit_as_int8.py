"""tdsl-bitsplit-as-int8 (CPU): bit-split activations that only feed products (or
are read as values) are quantized as int8 per token instead.

A product of bit-split activations is bit-identical to the integer W8A8 product of the
unsplit codes (docs/formats.md, "Bit-split activations": the passes over the low and
the high nibbles sum to the int8 codes' dot products). The split pays on a machine that
skips the zero high nibbles (the accelerator, whose pipeline keeps it); on a CPU it is
a scalar nest over the nibbles and the bitmap, 85-290 times the int8 path's time. So,
after tdsl-fuse-dequant has made them a product's operand, a `quantize(x, bitsplit(...))`
whose every use is a product's activations or a dequantize (whose values are
`fake_quantize(x, int8(per=token))` either way) becomes `quantize(x, int8(per=token))`,
which the W8A8 kernels read (tdsl-vectorize-integer).
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern

from stoicc_py.dialects.quant import TOKEN_INT8, BitSplitAttr
from stoicc_py.dialects.tdsl import ContractionOp, DequantizeOp, QuantizeOp, TensorType


@dataclass
class BitSplitAsInt8(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: QuantizeOp, rewriter: PatternRewriter, /):
        result = op.result
        if result is None or not isinstance(op.layout, BitSplitAttr):
            return
        if not all(isinstance(u.operation, ContractionOp) and u.index == 0 or isinstance(u.operation, DequantizeOp)
                   for u in result.uses):  # fmt: skip
            return
        t = result.type
        assert isinstance(t, TensorType)
        quantized = TensorType(t.dims, t.element_type, TOKEN_INT8)
        attributes = dict(op.attributes) | {"layout": TOKEN_INT8}
        rewriter.replace(op, QuantizeOp.build(operands=[[op.input], []], result_types=[[quantized]], attributes=attributes))


@dataclass(frozen=True)
class BitSplitAsInt8Pass(ModulePass):
    name = "tdsl-bitsplit-as-int8"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(BitSplitAsInt8(), apply_recursively=False).rewrite_module(op)
