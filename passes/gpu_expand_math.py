"""gpu-expand-math: the math functions that the CPU takes from libm or from LLVM
intrinsics that NVPTX cannot lower (no libm on the device) become arithmetic that it can.

On the GPU's generic SIMT path (backends/gpu/simt.py) the loop nests are the CPU
pipeline's, whose scalar `math.exp` becomes `llvm.exp.f32` (NVPTX: "no libcall
available for fexp") and whose `math.tanh`/`math.erf` become libm calls. Here, on f32:
- exp: the polynomial the CPU's vector kernels use (codegen/loop_builder.py
  `vector_exp`, about 1 ulp; results below about 2^-125 flushed to 0);
- tanh(x) = copysign((1 - e) / (1 + e), x), e = exp(-2|x|) (absolute error ~1e-7);
- erf(x) = copysign(1 - t exp(-x^2 + P(t)), x), t = 1 / (1 + |x|/2): Numerical
  Recipes' erfc, a Chebyshev fit of relative error below 1.2e-7.
The math ops that NVPTX lowers to instructions (abs, sqrt, rounding, fma, copysign)
stay; any other is a located error rather than an unresolved call in the PTX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import Float32Type, ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern
from xdsl.rewriter import InsertPoint
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.codegen.loop_builder import LoopBuilder, vector_exp

NATIVE = (math.AbsFOp, math.CeilOp, math.FloorOp, math.RoundOp, math.RoundEvenOp, math.TruncOp, math.SqrtOp,
          math.CopySignOp, math.FmaOp)  # fmt: skip
"""The math ops NVPTX lowers to instructions (sqrt.rn, cvt.rni, fma.rn, ...)."""

_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
         -0.82215223, 0.17087277)  # fmt: skip
"""Numerical Recipes' erfcc: erfc(z) = t exp(-z^2 + c0 + c1 t + ... + c9 t^9), t = 1 / (1 + z/2), z >= 0."""


def _tanh(b: LoopBuilder, x: SSAValue) -> SSAValue:
    e = vector_exp(b, b.fmul(b.insert(math.AbsFOp(x)), b.like(x, -2.0)))
    one = b.like(x, 1.0)
    return b.insert(math.CopySignOp(b.fdiv(b.insert(arith.SubfOp(one, e)), b.fadd(one, e)), x))


def _erf(b: LoopBuilder, x: SSAValue) -> SSAValue:
    z = b.insert(math.AbsFOp(x))
    one = b.like(x, 1.0)
    t = b.fdiv(one, b.fadd(one, b.fmul(z, b.like(x, 0.5))))
    poly = b.like(x, _ERFC[-1])
    for c in reversed(_ERFC[:-1]):
        poly = b.insert(math.FmaOp(poly, t, b.like(x, c)))
    exponent = b.insert(arith.SubfOp(poly, b.fmul(z, z)))
    erfc = b.fmul(t, vector_exp(b, exponent))
    return b.insert(math.CopySignOp(b.insert(arith.SubfOp(one, erfc)), x))


EXPANSIONS: dict[type[Operation], Callable[[LoopBuilder, SSAValue], SSAValue]] = {math.ExpOp: vector_exp, math.TanhOp: _tanh, math.ErfOp: _erf}


class ExpandMath(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if not op.name.startswith("math.") or isinstance(op, NATIVE):
            return
        expand = EXPANSIONS.get(type(op))
        if expand is None or not isinstance(op.results[0].type, Float32Type):
            raise DiagnosticException(f"gpu-expand-math: {op.name} on {op.results[0].type} has no GPU lowering")
        value = expand(LoopBuilder(Builder(InsertPoint.before(op))), op.operands[0])
        rewriter.replace(op, [], [value])


@dataclass(frozen=True)
class GpuExpandMath(ModulePass):
    name = "gpu-expand-math"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(ExpandMath(), apply_recursively=False).rewrite_module(op)
