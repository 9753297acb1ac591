"""Lowers the math dialect to LLVM intrinsics, or to libm calls for the functions
LLVM has no intrinsic for (erf, ...) or only expands to a libm call (tanh, ...).

Intrinsics are `llvm.call_intrinsic` with type-mangled names rather than xDSL's
dedicated ops (`llvm.intr.exp`, ...): xDSL's llvmlite translator declares those
under the unmangled name, so a module that uses e.g. exp on both f32 and f64, or
on f32 and vector<8xf32>, fails to translate. The fast-math flags that only the
dedicated ops could hold were dropped by the translator anyway.

The libm functions are declared once per module as external `llvm.func`s; the JIT
resolves them against the libm already loaded into the process.
"""

from dataclasses import dataclass

from xdsl.backend.llvm.convert_op import intrinsic_suffix
from xdsl.backend.llvm.convert_type import convert_type
from xdsl.context import Context
from xdsl.dialects import llvm, math
from xdsl.dialects.builtin import Float32Type, Float64Type, ModuleOp
from xdsl.ir import Attribute, Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.codegen.apply_once import apply_once
from stoicc_py.passes.mangle_symbols import declare_called

_INTRINSICS: dict[type[Operation], str] = {
    math.AbsFOp: "llvm.fabs",
    math.CeilOp: "llvm.ceil",
    math.FloorOp: "llvm.floor",
    math.RoundOp: "llvm.round",
    math.RoundEvenOp: "llvm.roundeven",
    math.TruncOp: "llvm.trunc",
    math.SqrtOp: "llvm.sqrt",
    math.ExpOp: "llvm.exp",
    math.Exp2Op: "llvm.exp2",
    math.LogOp: "llvm.log",
    math.Log2Op: "llvm.log2",
    math.Log10Op: "llvm.log10",
    math.SinOp: "llvm.sin",
    math.CosOp: "llvm.cos",
    math.PowFOp: "llvm.pow",
    math.CopySignOp: "llvm.copysign",
}

# Double-precision names; the single-precision variant appends "f".
_LIBM_FUNCTIONS: dict[type[Operation], str] = {
    math.TanhOp: "tanh",
    math.ErfOp: "erf",
    math.TanOp: "tan",
    math.AsinOp: "asin",
    math.AcosOp: "acos",
    math.AtanOp: "atan",
    math.Atan2Op: "atan2",
    math.SinhOp: "sinh",
    math.CoshOp: "cosh",
    math.AsinhOp: "asinh",
    math.AcoshOp: "acosh",
    math.AtanhOp: "atanh",
    math.ExpM1Op: "expm1",
    math.Log1pOp: "log1p",
    math.CbrtOp: "cbrt",
}

_LIBM_SUFFIXES: dict[type[Attribute], str] = {Float32Type: "f", Float64Type: ""}

_LIBM_NAMES = frozenset(base + suffix for base in _LIBM_FUNCTIONS.values() for suffix in _LIBM_SUFFIXES.values())

_FloatMathOp = math.FloatingPointLikeUnaryMathOperation | math.FloatingPointLikeBinaryMathOperation


class IntrinsicLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: _FloatMathOp, rewriter: PatternRewriter, /) -> None:
        if (intrinsic := _INTRINSICS.get(type(op))) is None:
            return
        name = f"{intrinsic}.{intrinsic_suffix(convert_type(op.result.type))}"
        rewriter.replace(op, llvm.CallIntrinsicOp(name, op.operands, op.result_types))


class FmaLowering(RewritePattern):
    """xDSL's translator mangles the name of llvm.intr.fma itself, but rejects
    fast-math flags on it; the fusion they could allow is what fma already is."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: math.FmaOp, rewriter: PatternRewriter, /) -> None:
        rewriter.replace(op, llvm.FMAOp(op.a, op.b, op.c))


class LibmCallLowering(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: _FloatMathOp, rewriter: PatternRewriter, /) -> None:
        if (function := _LIBM_FUNCTIONS.get(type(op))) is None:
            return
        result_type = op.result.type
        if (suffix := _LIBM_SUFFIXES.get(type(result_type))) is None:
            raise DiagnosticException(f"convert-math-to-llvm: no libm {function} for {result_type}")
        call = llvm.CallOp(
            function + suffix,
            *op.operands,
            return_type=result_type,
            fastmath=llvm.FastMathAttr(op.fastmath.data),
        )
        rewriter.replace(op, call)


@dataclass(frozen=True)
class ConvertMathToLLVM(ModulePass):
    name = "convert-math-to-llvm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        apply_once(op, {**dict.fromkeys(_INTRINSICS, IntrinsicLowering()),
                        **dict.fromkeys(_LIBM_FUNCTIONS, LibmCallLowering()), math.FmaOp: FmaLowering()})  # fmt: skip
        declare_called(op, _LIBM_NAMES.__contains__, self.name)
