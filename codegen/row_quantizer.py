"""The activations' per-row (or per-group) int8 (or int7) quantization, vectorised: the codes
and scales of quant_loops.quantize, `lanes` floats at a time, the same bits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.dialects import arith, llvm, vector
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import VectorType, f32, i8, i32
from xdsl.ir import SSAValue

from stoicc_py.codegen import quant_loops
from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.codegen.quant_loops import QuantView
from stoicc_py.codegen.register_blocks import for_

MANTISSA_SHIFT = 1.5 * 2**23
"""Added to a whole number q in -127..127 (-qmax..qmax), leaves q in two's complement in the low
bits of the float (exactly): its low byte is the int8 code. This converts vectors,
which xDSL's arith.fptosi cannot and LLVM's saturating conversion scalarises. A NaN
(from a NaN or infinite x; a quiet NaN without payload) has a zero low byte: code
0, as the scalar path's saturating conversion gives."""


@dataclass
class RowQuantizer:
    """int8 (or int7) codes with one symmetric scale per row of x, or per group of a row,
    `lanes` floats at a time, by quant_loops.quantize's arithmetic element for element (the
    same bits; a group's largest magnitude is the same in any order); a ragged row ends
    with its scalar loop."""

    x: SSAValue
    view: QuantView
    lanes: int

    @property
    def floats(self) -> VectorType:
        return VectorType(f32, [self.lanes])

    def emit(self, b: LoopBuilder, r: SSAValue, g: SSAValue, span: tuple[SSAValue, SSAValue, SSAValue]) -> None:
        """Row r's group g (0: the row), columns k0 .. k1 of which k0 .. kv in whole vectors."""
        k0, kv, k1 = span
        params = quant_loops.symmetric_params(b, self.view, self._amax(b, r, k0, kv, k1))
        self._codes(b, r, k0, kv, params[1])
        quant_loops.quant_codes(b, lambda b, r, k: b.load(self.x, [r, k]), self.view, (r, kv, k1), params)
        quant_loops.store_params(b, self.view, self.view.scale_indices(b, r, g), params)

    def _amax(self, b: LoopBuilder, r: SSAValue, k0: SSAValue, kv: SSAValue, width: SSAValue) -> SSAValue:
        # Magnitudes order as their bit patterns (a NaN above every number, so it
        # propagates as in the scalar maximum): one integer max per vector, where
        # arith.maximumf is a chain of NaN checks.
        bits = VectorType(i32, [self.lanes])
        magnitude = b.splat(bits, 0x7FFFFFFF)

        def step(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            v = b.insert(vector.BitcastOp(b.vload(self.x, [r, k], self.lanes), bits))
            return [b.insert(arith.MaxUIOp(acc[0], b.insert(arith.AndIOp(v, magnitude))))]

        (lanes,) = b.loop(k0, kv, b.index(self.lanes), step, [b.splat(bits, 0)], name="k")
        top = b.insert(vector.ExtractOp(lanes, [0], i32))
        for lane in range(1, self.lanes):
            top = b.insert(arith.MaxUIOp(top, b.insert(vector.ExtractOp(lanes, [lane], i32))))

        def tail(b: LoopBuilder, k: SSAValue, acc: Sequence[SSAValue]) -> Sequence[SSAValue]:
            return [b.fmax(acc[0], b.insert(mathd.AbsFOp(b.load(self.x, [r, k]))))]

        return b.loop(kv, width, b.index(1), tail, [b.insert(arith.BitcastOp(top, f32))], name="k")[0]

    def _codes(self, b: LoopBuilder, r: SSAValue, k0: SSAValue, kv: SSAValue, divisor: SSAValue) -> None:
        divisors = b.insert(vector.BroadcastOp(divisor, self.floats))
        qmax = float(self.view.qmax)
        low, high, shift = (b.splat(self.floats, v) for v in (-qmax, qmax, MANTISSA_SHIFT))
        words, codes = VectorType(i32, [self.lanes]), VectorType(i8, [self.lanes])

        def step(b: LoopBuilder, k: SSAValue) -> None:
            q = b.fdiv(b.vload(self.x, [r, k], self.lanes), divisors)
            q = b.insert(arith.MinimumfOp(b.fmax(b.insert(mathd.RoundEvenOp(q)), low), high))
            word = b.insert(vector.BitcastOp(b.fadd(q, shift), words))
            b.b.insert(vector.StoreOp(b.insert(llvm.TruncOp(word, codes)), self.view.buffers["values"], [r, k]))

        for_(b, k0, kv, self.lanes, step, "k")
