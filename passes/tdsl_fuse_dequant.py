"""tdsl-fuse-dequant: read quantized operands of a linear layer in place.

`linear(x, dequantize(w))` becomes `linear(x, w)`: the kernel unpacks and scales
w's codes inside its loop nest, one group at a time, and never materialises a
float copy of the weight. When w is quantized and the activations are too
(`linear(dequantize(quantize(x, int8(per=token))), dequantize(w))`, or per group of
w's own groups), the lhs folds as well, and the product runs on integers (W8A8, W4A8):
integer dot products per weight group with an i32 accumulator, one float rescale per
group and output.
SQ-format activations fold into a product with a dense weight (one fused pass over
their low and high parts).
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern

from stoicc_py.codec.uniform import ACTIVATION_CODES
from stoicc_py.dialects.layout import ComposedLayoutAttr
from stoicc_py.dialects.quant import BitSplitAttr, SQAttr, UniformQuantAttr
from stoicc_py.dialects.sparse import NMAttr
from stoicc_py.dialects.tdsl import DequantizeOp, LinearOp, TensorType

INTEGER_ACTIVATIONS = ("token", "tensor")
"""Activation scales that do not vary along the reduction axis, so that one float
rescale per output (or weight group) suffices."""


def _dequantized(value: SSAValue) -> SSAValue | None:
    """The quantized tensor behind a dequantize that nothing else reads."""
    op = value.owner
    if isinstance(op, DequantizeOp) and not op.is_bufferized and value.has_one_use():
        return op.input
    return None


def _quantized(value: SSAValue) -> UniformQuantAttr | None:
    t = value.type
    return t.layout if isinstance(t, TensorType) and isinstance(t.layout, UniformQuantAttr) else None


def _sq(value: SSAValue) -> bool:
    return isinstance(value.type, TensorType) and isinstance(value.type.layout, SQAttr)


def _dense(value: SSAValue) -> bool:
    return isinstance(value.type, TensorType) and value.type.layout.is_dense


def _integer_activation(value: SSAValue, w: SSAValue) -> bool:
    """int8 (or int7) codes with a scale per token or tensor, or per group of the weight's
    own groups (ggml's q8 activations: each group's integer product then scaled by both
    groups' scales), or bit-split int8 codes."""
    t = value.type
    if isinstance(t, TensorType) and isinstance(t.layout, BitSplitAttr):
        return True
    act = _quantized(value)
    if act is None or act.codes.data not in ACTIVATION_CODES:
        return False
    if act.per.data == "group":
        weight = _quantized(w)
        return weight is not None and weight.per.data == "group" and weight.group.data == act.group.data
    return act.per.data in INTEGER_ACTIVATIONS


def _integer_weight(value: SSAValue, x: SSAValue) -> bool:
    """Whether a weight's codes are walked by the integer path with activations `x`:
    quantized, SQ, or N:M with quantized values. A float zero (zero=float) adds offset *
    the group's sum of x's codes to each group's integer product, which the integer
    kernels take for int8 (or int7) codes, not for bit-split activations."""
    t = value.type
    if not isinstance(t, TensorType):
        return False
    layout = t.layout
    if isinstance(layout, UniformQuantAttr) and layout.float_offset:
        return _quantized(x) is not None
    return isinstance(layout, UniformQuantAttr | SQAttr) or (
        isinstance(layout, ComposedLayoutAttr) and isinstance(layout.sparse, NMAttr)
    )


@dataclass
class FuseDequant(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: LinearOp, rewriter: PatternRewriter, /):
        if op.result is None:
            return
        lhs, rhs = op.lhs, op.rhs
        if (w := _dequantized(rhs)) is not None:
            rhs = w
        x = _dequantized(lhs)
        if x is not None and (_integer_activation(x, rhs) and _integer_weight(rhs, x) or _sq(x) and _dense(rhs)):
            lhs = x
        if (lhs, rhs) == (op.lhs, op.rhs):
            return
        fused = LinearOp(lhs, rhs, op.bias, op.result.type, dict(op.attributes))
        fused.location = op.location
        old = [o.owner for o in (op.lhs, op.rhs) if o not in (lhs, rhs)]
        rewriter.replace(op, fused)
        for dead in old:
            rewriter.erase(dead)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FuseDequantPass(ModulePass):
    name = "tdsl-fuse-dequant"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(FuseDequant()).rewrite_module(op)
