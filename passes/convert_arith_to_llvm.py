"""Lowers the arith dialect to the llvm dialect and `index` to `i64`.

Ops with a uniform lowering go through lookup tables. Ops that xDSL's llvmlite
translator (`xdsl.backend.llvm.convert_op`) cannot express directly are lowered to
`llvm.call_intrinsic` with a type-mangled name (integer and float min/max,
fptosi/fptoui) or to a small pattern of supported ops (uitofp).

bf16 values become i16 (their bits), and conversions from and to f32 integer
arithmetic: widening is a shift, rounding is round-to-nearest-even on the f32 bits
(NaN stays a quiet NaN). LLVM would emit `vcvtneps2bf16` with AVX512-BF16, which
flushes subnormals to zero, and a `__truncsfbf2` call elsewhere, which the JIT
cannot resolve: this is exact on every target.
"""

from collections.abc import Callable
from dataclasses import dataclass

from llvmlite import ir
from xdsl.backend.llvm.convert_type import convert_type
from xdsl.context import Context
from xdsl.dialects import arith, llvm
from xdsl.dialects.builtin import (
    BFloat16Type,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    VectorType,
    i1,
    i16,
    i32,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint
from xdsl.utils.exceptions import DiagnosticException
from xdsl.utils.hints import isa

from stoicc_py.codegen.replace_types import ReplaceTypes

_INTEGER_BINARY_OPS: dict[type[Operation], type[Operation]] = {
    arith.AddiOp: llvm.AddOp,
    arith.SubiOp: llvm.SubOp,
    arith.MuliOp: llvm.MulOp,
    arith.DivSIOp: llvm.SDivOp,
    arith.DivUIOp: llvm.UDivOp,
    arith.RemSIOp: llvm.SRemOp,
    arith.RemUIOp: llvm.URemOp,
    arith.AndIOp: llvm.AndOp,
    arith.OrIOp: llvm.OrOp,
    arith.XOrIOp: llvm.XOrOp,
    arith.ShLIOp: llvm.ShlOp,
    arith.ShRSIOp: llvm.AShrOp,
    arith.ShRUIOp: llvm.LShrOp,
}

_FLOAT_BINARY_OPS: dict[type[Operation], type[Operation]] = {
    arith.AddfOp: llvm.FAddOp,
    arith.SubfOp: llvm.FSubOp,
    arith.MulfOp: llvm.FMulOp,
    arith.DivfOp: llvm.FDivOp,
}

# The translator has no op for most of these. It has ops for maxnum/minnum, but
# declares them under the unmangled name, which clashes as soon as two types use them.
_BINARY_INTRINSICS: dict[type[Operation], str] = {
    arith.MinSIOp: "llvm.smin",
    arith.MaxSIOp: "llvm.smax",
    arith.MinUIOp: "llvm.umin",
    arith.MaxUIOp: "llvm.umax",
    arith.MaximumfOp: "llvm.maximum",
    arith.MinimumfOp: "llvm.minimum",
    arith.MaxnumfOp: "llvm.maxnum",
    arith.MinnumfOp: "llvm.minnum",
}

_CAST_OPS: dict[type[Operation], type[Operation]] = {
    arith.ExtFOp: llvm.FPExtOp,
    arith.TruncFOp: llvm.FPTruncOp,
    arith.ExtSIOp: llvm.SExtOp,
    arith.ExtUIOp: llvm.ZExtOp,
    arith.TruncIOp: llvm.TruncOp,
    arith.SIToFPOp: llvm.SIToFPOp,
    arith.BitcastOp: llvm.BitcastOp,
}

# The saturating intrinsics refine fptosi/fptoui, whose out-of-range results are poison.
_FLOAT_TO_INT_INTRINSICS: dict[type[Operation], str] = {
    arith.FPToSIOp: "llvm.fptosi.sat",
    arith.FPToUIOp: "llvm.fptoui.sat",
}


def _type_suffix(typ: Attribute) -> str:
    """The overloaded-intrinsic mangling of a type, e.g. `i32`, `f64`, `v8f32`."""
    if isa(typ, VectorType):
        return f"v{typ.get_shape()[0]}{_type_suffix(typ.element_type)}"
    converted = convert_type(typ)
    assert isinstance(converted, ir.IntType | ir.HalfType | ir.FloatType | ir.DoubleType)
    return converted.intrinsic_name


def _fastmath(op: arith.FloatingPointLikeBinaryOperation | arith.NegfOp) -> llvm.FastMathAttr:
    return llvm.FastMathAttr(op.fastmath.data)


def _bitwidth(typ: Attribute) -> int:
    """Counts index as i64: an operand may be lowered after its user."""
    if isinstance(typ, IndexType):
        return 64
    assert isinstance(typ, IntegerType)
    return typ.bitwidth


class IndexToI64(ReplaceTypes):
    """`index` becomes i64 and bf16 its bits, i16, everywhere (result, argument and attribute types)."""

    def leaf(self, attr: Attribute) -> Attribute | None:
        return i64 if isinstance(attr, IndexType) else i16 if isinstance(attr, BFloat16Type) else None


def _is_bf16(typ: Attribute) -> bool:
    """bf16 (or a vector of it), or i16 where a bf16 operand was retyped before its user."""
    element = typ.element_type if isa(typ, VectorType) else typ
    return isinstance(element, BFloat16Type) or element == i16


def _like(typ: Attribute, element: Attribute) -> Attribute:
    """`element`, or a vector of it shaped as `typ`."""
    return VectorType(element, typ.get_shape()) if isa(typ, VectorType) else element


class BFloat16Lowering(RewritePattern):
    """extf bf16 -> f32 and truncf f32 -> bf16 as integer arithmetic on the bits."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.ExtFOp | arith.TruncFOp, rewriter: PatternRewriter, /) -> None:
        if isinstance(op, arith.ExtFOp) and _is_bf16(op.input.type):
            wide = rewriter.insert(llvm.ZExtOp(op.input, _like(op.input.type, i32))).res
            rewriter.replace(op, llvm.BitcastOp(self.op(rewriter, llvm.ShlOp, wide, 16), op.result.type))
        elif isinstance(op, arith.TruncFOp) and _is_bf16(op.result.type):
            rewriter.replace(op, llvm.TruncOp(self.rounded_bits(rewriter, op.input), _like(op.input.type, i16)))

    def rounded_bits(self, rewriter: PatternRewriter, x: SSAValue) -> SSAValue:
        """The f32 x's bits rounded to nearest even at bit 16, shifted down; a NaN keeps its sign
        and top mantissa bits and is made quiet (bit 6), so that rounding cannot make it inf."""
        bits = rewriter.insert(llvm.BitcastOp(x, _like(x.type, i32))).result
        top = self.op(rewriter, llvm.LShrOp, bits, 16)
        bias = self.op(rewriter, llvm.AddOp, self.op(rewriter, llvm.AndOp, top, 1), 0x7FFF)
        rounded = self.op(rewriter, llvm.LShrOp, rewriter.insert(llvm.AddOp(bits, bias)).res, 16)
        nan = rewriter.insert(llvm.FCmpOp(x, x, "uno")).res
        return rewriter.insert(llvm.SelectOp(nan, self.op(rewriter, llvm.OrOp, top, 0x40), rounded)).res

    @staticmethod
    def op(rewriter: PatternRewriter, kind: Callable[[SSAValue, SSAValue], Operation], a: SSAValue, c: int) -> SSAValue:
        """a kind c, for an integer (vector) a and a constant c."""
        typ = a.type
        value = DenseIntOrFPElementsAttr.from_list(typ, [c]) if isa(typ, VectorType[IntegerType]) else IntegerAttr(c, i32)
        constant = rewriter.insert(llvm.ConstantOp(value, a.type)).result
        return rewriter.insert(kind(a, constant)).results[0]


class ConstantLowering(RewritePattern):
    """Converts index constants itself, straight to llvm constants of i64."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.ConstantOp, rewriter: PatternRewriter, /) -> None:
        value = op.value
        if isinstance(value, IntegerAttr) and isinstance(value.type, IndexType):
            value = IntegerAttr(value.value.data, i64)
        if not isinstance(value, IntegerAttr | FloatAttr | DenseIntOrFPElementsAttr):
            return
        rewriter.replace(op, llvm.ConstantOp(value, value.get_type()))


class IntegerBinaryOpLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.SignlessIntegerBinaryOperation, rewriter: PatternRewriter, /) -> None:
        if (llvm_op := _INTEGER_BINARY_OPS.get(type(op))) is None:
            return
        properties: dict[str, Attribute] = {}
        # nsw/nuw let LLVM widen induction variables and vectorise.
        if isinstance(op, arith.SignlessIntegerBinaryOperationWithOverflow):
            flags = (llvm.OverflowFlag(f.value) for f in op.overflow_flags.data)
            properties["overflowFlags"] = IntegerAttr(llvm.OverflowAttr(flags).to_int(), 32)
        rewriter.replace(
            op,
            llvm_op.create(operands=op.operands, result_types=op.result_types, properties=properties),
        )


class FloatBinaryOpLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.FloatingPointLikeBinaryOperation, rewriter: PatternRewriter, /) -> None:
        if (llvm_op := _FLOAT_BINARY_OPS.get(type(op))) is None:
            return
        rewriter.replace(
            op,
            llvm_op.create(
                operands=op.operands,
                result_types=op.result_types,
                properties={"fastmathFlags": _fastmath(op)},
            ),
        )


class BinaryIntrinsicLowering(RewritePattern):
    """Fast-math flags are dropped: the translator rejects them on intrinsic calls
    (and ignores them on its maxnum/minnum ops)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(
        self,
        op: arith.SignlessIntegerBinaryOperation | arith.FloatingPointLikeBinaryOperation,
        rewriter: PatternRewriter,
        /,
    ) -> None:
        if (intrinsic := _BINARY_INTRINSICS.get(type(op))) is None:
            return
        name = f"{intrinsic}.{_type_suffix(op.result.type)}"
        rewriter.replace(op, llvm.CallIntrinsicOp(name, op.operands, op.result_types))


class NegfLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.NegfOp, rewriter: PatternRewriter, /) -> None:
        rewriter.replace(op, llvm.FNegOp(op.operand, _fastmath(op)))


class CmpiLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.CmpiOp, rewriter: PatternRewriter, /) -> None:
        mnemonic = arith.CMPI_COMPARISON_OPERATIONS[op.predicate.value.data]
        predicate = IntegerAttr(llvm.ICmpPredicateFlag(mnemonic).to_int(), i64)
        rewriter.replace(op, llvm.ICmpOp(op.lhs, op.rhs, predicate))


class CmpfLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.CmpfOp, rewriter: PatternRewriter, /) -> None:
        mnemonic = arith.CMPF_COMPARISON_OPERATIONS[op.predicate.value.data]
        # The translator has no fcmp false/true; they are constants anyway.
        if mnemonic in ("false", "true"):
            value = IntegerAttr.from_bool(mnemonic == "true")
            rewriter.replace(op, llvm.ConstantOp(value, i1))
            return
        fcmp = llvm.FCmpOp(op.lhs, op.rhs, mnemonic)
        fcmp.fastmathFlags = llvm.FastMathAttr(op.fastmath.data)
        rewriter.replace(op, fcmp)


class SelectLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.SelectOp, rewriter: PatternRewriter, /) -> None:
        rewriter.replace(op, llvm.SelectOp(op.cond, op.lhs, op.rhs))


class CastLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(
        self,
        op: arith.ExtFOp
        | arith.TruncFOp
        | arith.ExtSIOp
        | arith.ExtUIOp
        | arith.TruncIOp
        | arith.SIToFPOp
        | arith.BitcastOp,
        rewriter: PatternRewriter,
        /,
    ) -> None:
        # An index <-> i64 bitcast is the identity once index is i64.
        if op.input.type == op.result.type:
            rewriter.replace(op, (), (op.input,))
            return
        llvm_op = _CAST_OPS[type(op)]
        rewriter.replace(op, llvm_op.create(operands=[op.input], result_types=[op.result.type]))


class IndexCastLowering(RewritePattern):
    """With index as i64 the cast is a sign extension, a truncation or nothing."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.IndexCastOp, rewriter: PatternRewriter, /) -> None:
        source_width = _bitwidth(op.input.type)
        target_width = _bitwidth(op.result.type)
        if source_width == target_width:
            rewriter.replace(op, (), (op.input,))
        elif source_width < target_width:
            rewriter.replace(op, llvm.SExtOp(op.input, op.result.type))
        else:
            rewriter.replace(op, llvm.TruncOp(op.input, op.result.type))


class FloatToIntLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.FPToSIOp | arith.FPToUIOp, rewriter: PatternRewriter, /) -> None:
        intrinsic = _FLOAT_TO_INT_INTRINSICS[type(op)]
        name = f"{intrinsic}.{_type_suffix(op.result.type)}.{_type_suffix(op.input.type)}"
        rewriter.replace(op, llvm.CallIntrinsicOp(name, [op.input], [op.result.type]))


class UIToFPLowering(RewritePattern):
    """The translator has no uitofp. Narrow integers are zero-extended to i64, where
    sitofp is exact. An i64 with the top bit set is halved (keeping the low bit as a
    sticky bit so that rounding stays correct), converted and doubled."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.UIToFPOp, rewriter: PatternRewriter, /) -> None:
        value = op.input
        width = _bitwidth(value.type)
        if width > 64:
            raise DiagnosticException(f"convert-arith-to-llvm: cannot lower uitofp {value.type}")
        if width < 64:
            wide = rewriter.insert(llvm.ZExtOp(value, i64))
            rewriter.replace(op, llvm.SIToFPOp(wide.res, op.result.type))
            return
        float_type = op.result.type
        zero = rewriter.insert(llvm.ConstantOp(IntegerAttr(0, i64), i64))
        one = rewriter.insert(llvm.ConstantOp(IntegerAttr(1, i64), i64))
        is_large = rewriter.insert(
            llvm.ICmpOp(value, zero.result, IntegerAttr(llvm.ICmpPredicateFlag.SLT.to_int(), i64))
        )
        half = rewriter.insert(llvm.LShrOp(value, one.result))
        sticky = rewriter.insert(llvm.AndOp(value, one.result))
        rounded_half = rewriter.insert(llvm.OrOp(half.res, sticky.res))
        half_float = rewriter.insert(llvm.SIToFPOp(rounded_half.res, float_type))
        doubled = rewriter.insert(llvm.FAddOp(half_float.result, half_float.result))
        direct = rewriter.insert(llvm.SIToFPOp(value, float_type))
        rewriter.replace(op, llvm.SelectOp(is_large.res, doubled.res, direct.result))


class _RetypeThenLower(RewritePattern):
    """Constants first (they convert their own type); then every op is retyped before it
    is lowered, so that the lowerings see i64 rather than index; then an arith op is
    lowered. Only arith ops try the lowerings: the walker visits every op, the llvm ops
    this pass creates included, and trying each lowering on each was most of its time."""

    def __init__(self) -> None:
        super().__init__()
        self.constants, self.retype = ConstantLowering(), IndexToI64()
        self.lowerings = GreedyRewritePatternApplier(
            [
                BFloat16Lowering(),
                IntegerBinaryOpLowering(),
                FloatBinaryOpLowering(),
                BinaryIntrinsicLowering(),
                NegfLowering(),
                CmpiLowering(),
                CmpfLowering(),
                SelectLowering(),
                CastLowering(),
                IndexCastLowering(),
                FloatToIntLowering(),
                UIToFPLowering(),
            ],
            dce_enabled=False,
        )

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        self.constants.match_and_rewrite(op, rewriter)
        if rewriter.has_done_action:
            return
        if not op.name.startswith("arith."):
            self.retype.retype(op, rewriter)
            return
        if self.retype.unchanged(op.attributes.values()) and self.retype.unchanged(op.properties.values()):
            # The op is replaced below: its results take their new types in place, which
            # MLIR's Value::setType does and xDSL's API does not (it would build a copy of
            # the op for the lowering to replace again: a third of this pass's time).
            for result in op.results:
                result._type = self.retype.convert(result.type)  # pyright: ignore[reportPrivateUsage]
        else:
            op = self.retype.retype(op, rewriter)  # an arith op still
        # The retyped op is lowered in this visit (the walk does not come back to it).
        retyped, rewriter.has_done_action = rewriter.has_done_action, False
        rewriter.current_operation, rewriter.insertion_point = op, InsertPoint.before(op)
        self.lowerings.match_and_rewrite(op, rewriter)
        rewriter.has_done_action |= retyped


@dataclass(frozen=True)
class ConvertArithToLLVM(ModulePass):
    name = "convert-arith-to-llvm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(_RetypeThenLower(), apply_recursively=False).rewrite_module(op)
