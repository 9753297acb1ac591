"""convert-vector-to-llvm: the vector dialect's register ops become llvm ops, and
vector memory accesses get element alignment.

Runs after lower-memory-to-ptr and convert-ptr-to-llvm (which turn
vector.load/store into llvm.load/store). An llvm.load of <16 x float> without an
`align` is assumed 64-byte aligned and may fault on a numpy buffer, which is only
element-aligned; unaligned vector moves cost nothing extra on aligned data.

A reduction is a call of LLVM's vector.reduce intrinsic, declared as a function so
that the call carries `reassoc` (xDSL's translator drops the flags of
llvm.call_intrinsic): LLVM expands it into the tree of halving shuffles, not the
strictly ordered sum. One op per reduction instead of 2·log2(lanes)+1 keeps the IR,
and every pass after this one, short.
"""

from dataclasses import dataclass

from xdsl.backend.llvm.convert_op import intrinsic_suffix
from xdsl.backend.llvm.convert_type import convert_type
from xdsl.context import Context
from xdsl.dialects import llvm, vector
from xdsl.dialects.builtin import (
    AnyFloat,
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    VectorType,
    i32,
)
from xdsl.dialects.utils.fast_math import FastMathFlag
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.utils.exceptions import DiagnosticException
from xdsl.utils.hints import isa

from stoicc_py.codegen.apply_once import apply_once
from stoicc_py.passes.mangle_symbols import declare_called


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


_REDUCTIONS: dict[vector.CombiningKindFlag, str] = {
    vector.CombiningKindFlag.ADD: "add",
    vector.CombiningKindFlag.MAXIMUMF: "fmaximum",  # NaN-propagating, as arith.maximumf
}


@dataclass
class ReductionLowering(RewritePattern):
    """vector.reduction <add> or <maximumf>: a call of llvm.vector.reduce.{fadd, add,
    fmaximum}, then the accumulator."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: vector.ReductionOp, rewriter: PatternRewriter, /):
        if (kind := _REDUCTIONS.get(op.kind.data)) is None:
            raise DiagnosticException(f"convert-vector-to-llvm: reduction <{op.kind.data}> is not supported")
        v, typ = op.vector, op.dest.type
        assert isa(v.type, VectorType)
        is_int = isinstance(typ, IntegerType)
        flags = llvm.FastMathAttr(None) if is_int else llvm.FastMathAttr(sorted({*op.fastmath.data, FastMathFlag.REASSOC}))
        suffix = f"v{v.type.get_shape()[0]}{intrinsic_suffix(convert_type(typ))}"
        if kind == "add" and not is_int:
            assert isinstance(typ, AnyFloat)
            # The intrinsic's start value; -0.0 is the identity of IEEE addition.
            start = rewriter.insert(llvm.ConstantOp(FloatAttr(-0.0, typ), typ)).result
            total = rewriter.insert(llvm.CallOp(f"llvm.vector.reduce.fadd.{suffix}", start, v, return_type=typ,
                                                fastmath=flags)).returned  # fmt: skip
        else:
            total = rewriter.insert(llvm.CallOp(f"llvm.vector.reduce.{kind}.{suffix}", v, return_type=typ,
                                                fastmath=flags)).returned  # fmt: skip
        assert total is not None
        if op.acc is not None:
            if is_int:
                total = rewriter.insert(llvm.AddOp(total, op.acc)).res
            elif kind == "add":
                total = rewriter.insert(llvm.FAddOp(total, op.acc, llvm.FastMathAttr(op.fastmath.data))).res
            else:
                total = rewriter.insert(llvm.CallIntrinsicOp(f"llvm.maximum.{intrinsic_suffix(convert_type(typ))}",
                                                             [total, op.acc], [typ])).results[0]  # fmt: skip
        rewriter.replace_all_uses_with(op.dest, total)
        rewriter.erase(op)


@dataclass(frozen=True)
class ConvertVectorToLLVM(ModulePass):
    name = "convert-vector-to-llvm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        align = AlignVectorAccess()
        apply_once(op, {llvm.LoadOp: align, llvm.StoreOp: align, vector.BroadcastOp: BroadcastLowering(),
                        vector.FMAOp: FMALowering(), vector.ReductionOp: ReductionLowering(),
                        vector.BitcastOp: BitcastLowering(), vector.ShuffleOp: ShuffleLowering(),
                        vector.ExtractOp: ExtractLowering()})  # fmt: skip
        declare_called(op, lambda name: name.startswith("llvm.vector.reduce."), self.name)
