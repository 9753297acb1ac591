"""tdsl-fuse-epilogue: fold a bias add and an activation into the matrix product.

`relu(linear(x, w) + b)` becomes one `tdsl.linear %x, %w bias %b {act = "relu"}`,
whose loop nest applies bias and activation to each output tile while it is still
in cache, instead of two more passes over the output.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Attribute, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from stoicc_py.dialects.tdsl import ACTIVATIONS, AddOp, ContractionOp, TensorType, UnaryOp, broadcasts_into


def _sole_contraction(value: SSAValue) -> ContractionOp | None:
    """The unfused contraction that produces `value`, if nothing else reads it."""
    op = value.owner
    if isinstance(op, ContractionOp) and not op.is_bufferized and value.has_one_use():
        return op
    return None


def _rebuild(op: ContractionOp, bias: SSAValue | None, attributes: dict[str, Attribute],
             rewriter: PatternRewriter, replaced: SSAValue) -> None:  # fmt: skip
    fused = type(op)(op.lhs, op.rhs, bias, replaced.type, attributes)
    fused.location = op.location
    owner = replaced.owner
    rewriter.replace(owner, fused)  # type: ignore[arg-type]
    rewriter.erase(op)


@dataclass
class FuseBias(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, add: AddOp, rewriter: PatternRewriter, /):
        if add.result is None:
            return
        for product, bias in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
            op = _sole_contraction(product)
            if op is None or op.bias is not None or op.act is not None:
                continue
            assert isinstance(product.type, TensorType) and isinstance(bias.type, TensorType)
            # Only a bias that broadcasts into the product fuses; one that widens it does not.
            if not broadcasts_into(bias.type.dims, product.type.dims):
                continue
            _rebuild(op, bias, dict(op.attributes), rewriter, add.result)
            return


@dataclass
class FuseActivation(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, act: UnaryOp, rewriter: PatternRewriter, /):
        kind = act.name.removeprefix("tdsl.")
        if act.result is None or kind not in ACTIVATIONS:
            return
        op = _sole_contraction(act.input)
        if op is None or op.act is not None:
            return
        _rebuild(op, op.bias, {**op.attributes, "act": StringAttr(kind)}, rewriter, act.result)


@dataclass(frozen=True)
class FuseEpilogue(ModulePass):
    name = "tdsl-fuse-epilogue"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier([FuseBias(), FuseActivation()])).rewrite_module(op)
