"""convert-vector-to-llvm: the vector dialect's register ops become llvm ops, and
vector memory accesses get element alignment.

Runs after convert-vector-to-ptr and convert-ptr-to-llvm (which turn
vector.load/store into llvm.load/store). An llvm.load of <16 x float> without an
`align` is assumed 64-byte aligned and may fault on a numpy buffer, which is only
element-aligned; unaligned vector moves cost nothing extra on aligned data.

A reduction is a tree of halving shuffles and adds (LLVM's vector.reduce.fadd
intrinsic would be strictly ordered: xDSL's translator drops the reassoc flag).
"""

from collections.abc import Callable
from dataclasses import dataclass

from xdsl.backend.llvm.convert_op import intrinsic_suffix
from xdsl.backend.llvm.convert_type import convert_type
from xdsl.context import Context
from xdsl.dialects import llvm, vector
from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, IntegerType, ModuleOp, VectorType, i32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.utils.exceptions import DiagnosticException


@dataclass
class AlignVectorAccess(RewritePattern):
    """An llvm.load or llvm.store of a vector without an alignment gets its element's."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, llvm.LoadOp | llvm.StoreOp) or op.alignment is not None:
            return
        accessed = (op.dereferenced_value if isinstance(op, llvm.LoadOp) else op.value).type
        if isinstance(accessed, VectorType):
            op.properties["alignment"] = IntegerAttr(max(1, accessed.element_type.bitwidth // 8), 64)
            rewriter.handle_operation_modification(op)


def _shuffle(rewriter: PatternRewriter, v: SSAValue, lanes: range) -> SSAValue:
    assert isinstance(v.type, VectorType)
    mask = DenseArrayBase.from_list(i32, list(lanes))
    out_type = VectorType(v.type.element_type, [len(lanes)])
    return rewriter.insert(llvm.ShuffleVectorOp(v, v, mask, out_type)).results[0]


@dataclass
class BroadcastLowering(RewritePattern):
    """A scalar into lane 0, then a zero-mask shuffle."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: vector.BroadcastOp, rewriter: PatternRewriter, /):
        if isinstance(op.source.type, VectorType):
            raise DiagnosticException("convert-vector-to-llvm: only scalars are broadcast")
        undef = rewriter.insert(llvm.UndefOp(op.vector.type)).results[0]
        lane0 = rewriter.insert(llvm.ConstantOp(IntegerAttr(0, i32), i32)).results[0]
        first = rewriter.insert(llvm.InsertElementOp(undef, op.source, lane0)).results[0]
        mask = DenseArrayBase.from_list(i32, [0] * op.vector.type.get_shape()[0])
        rewriter.replace(op, llvm.ShuffleVectorOp(first, first, mask, op.vector.type))


@dataclass
class BitcastLowering(RewritePattern):
    """Reinterpret a vector's bits: bytes as the i32 lanes of a 4-byte dot product."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: vector.BitcastOp, rewriter: PatternRewriter, /):
        rewriter.replace(op, llvm.BitcastOp(op.source, op.result.type))


@dataclass
class ShuffleLowering(RewritePattern):
    """vector.shuffle of 1-D vectors: llvm.shufflevector takes its mask as i32."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: vector.ShuffleOp, rewriter: PatternRewriter, /):
        mask = DenseArrayBase.from_list(i32, list(op.mask.get_values()))
        rewriter.replace(op, llvm.ShuffleVectorOp(op.v1, op.v2, mask, op.result.type))


@dataclass
class ExtractLowering(RewritePattern):
    """One lane of a 1-D vector: a one-lane shuffle, bitcast to the element (xDSL's
    llvm dialect has no extractelement)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: vector.ExtractOp, rewriter: PatternRewriter, /):
        lanes = op.static_position.get_values()
        if op.dynamic_position or len(lanes) != 1:
            raise DiagnosticException("convert-vector-to-llvm: only static lanes of 1-D vectors are extracted")
        lane = _shuffle(rewriter, op.vector, range(lanes[0], lanes[0] + 1))
        rewriter.replace(op, llvm.BitcastOp(lane, op.result.type))


@dataclass
class FMALowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: vector.FMAOp, rewriter: PatternRewriter, /):
        rewriter.replace(op, llvm.FMAOp(op.lhs, op.rhs, op.acc))


@dataclass
class ReductionLowering(RewritePattern):
    """vector.reduction <add> or <maximumf>: halve the vector with shuffles until one
    lane is left."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: vector.ReductionOp, rewriter: PatternRewriter, /):
        if op.kind.data not in (vector.CombiningKindFlag.ADD, vector.CombiningKindFlag.MAXIMUMF):
            raise DiagnosticException(f"convert-vector-to-llvm: reduction <{op.kind.data}> is not supported")
        v = op.vector
        assert isinstance(v.type, VectorType)
        lanes = v.type.get_shape()[0]
        if lanes & (lanes - 1):
            raise DiagnosticException(f"convert-vector-to-llvm: reductions need a power-of-two width, got {lanes}")
        is_int = isinstance(v.type.element_type, IntegerType)
        flags = llvm.FastMathAttr(op.fastmath.data) if not is_int else None
        add: Callable[[SSAValue, SSAValue], Operation] = (
            (lambda a, b: llvm.AddOp(a, b)) if is_int else (lambda a, b: llvm.FAddOp(a, b, flags))
        )
        if op.kind.data == vector.CombiningKindFlag.MAXIMUMF:  # NaN-propagating, as arith.maximumf
            add = lambda a, b: llvm.CallIntrinsicOp(  # noqa: E731
                f"llvm.maximum.{intrinsic_suffix(convert_type(a.type))}", [a, b], [a.type]
            )
        while lanes > 1:
            lanes //= 2
            v = rewriter.insert(
                add(_shuffle(rewriter, v, range(lanes)), _shuffle(rewriter, v, range(lanes, 2 * lanes)))
            ).results[0]
        total = rewriter.insert(llvm.BitcastOp(v, op.dest.type)).results[0]
        if op.acc is not None:
            total = rewriter.insert(add(total, op.acc)).results[0]
        rewriter.replace_all_uses_with(op.dest, total)
        rewriter.erase(op)


@dataclass(frozen=True)
class ConvertVectorToLLVM(ModulePass):
    name = "convert-vector-to-llvm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [
                    AlignVectorAccess(),
                    BroadcastLowering(),
                    FMALowering(),
                    ReductionLowering(),
                    BitcastLowering(),
                    ShuffleLowering(),
                    ExtractLowering(),
                ]
            ),
            apply_recursively=False,
        ).rewrite_module(op)
