"""The step of an integer dot product: how `lanes` i32 accumulators gather the products
of weight bytes (unsigned) and activation bytes (signed), by target: vpdpbusd (AVX-512
VNNI), pmaddubsw then pmaddwd (x86 without VNNI), pmaddwd on i16 pairs (8-bit codes),
or widening multiply-adds elsewhere (DotKind); and, with pmaddubsw, the i16 pair sums
added before one pmaddwd where they stay exact (pair_bound)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

from xdsl.dialects import arith, llvm, vector
from xdsl.dialects.builtin import VectorType, i8, i16, i32
from xdsl.ir import SSAValue

from stoicc_py.codegen.loop_builder import LoopBuilder


def _widen(b: LoopBuilder, v: SSAValue, type: VectorType, signed: bool) -> SSAValue:
    # xDSL's arith.extsi/extui take scalars only; LLVM's casts take vectors.
    return b.insert(llvm.SExtOp(v, type) if signed else llvm.ZExtOp(v, type))


class DotKind(Enum):
    """How a step multiplies weight bytes (unsigned) by activation bytes (signed) into i32 lanes."""

    VNNI = "vnni"
    """vpdpbusd: the 4 products of a lane's bytes added to it in one instruction."""
    MADD = "madd"
    """pmaddubsw then pmaddwd by ones (SSSE3, AVX2, AVX-512BW): vpdpbusd's lane sums in
    two instructions, as ggml's AVX2 kernels step. pmaddubsw saturates its i16 pair sums,
    which stay exact while they stay below 2^15 (pair_bound): weight bytes below 128
    (|2 * 127 * -128| < 2^15), codes of at most 7 bits, offset or not; or any weight
    byte times int7 activations (|2 * 255 * -64| < 2^15); else 8-bit codes step as PAIRS."""
    PAIRS = "pairs"
    """Bytes widened to i16, pmaddwd: 2 bytes a lane, any bytes."""
    WIDEN = "widen"
    """Bytes widened to i32, multiplied and added: 1 byte a lane (LLVM picks vpmaddwd,
    or vpdpwssd): no target's intrinsic."""


PMADDUBSW = {4: "llvm.x86.ssse3.pmadd.ub.sw.128", 8: "llvm.x86.avx2.pmadd.ub.sw", 16: "llvm.x86.avx512.pmaddubs.w.512"}
PMADDWD = {4: "llvm.x86.sse2.pmadd.wd", 8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}
"""x86's byte and word multiply-adds by i32 lanes of their results."""
BYTES_PER_LANE = {DotKind.VNNI: 4, DotKind.MADD: 4, DotKind.PAIRS: 2, DotKind.WIDEN: 1}


@dataclass(frozen=True)
class Dot:
    """How `lanes` i32 accumulators gather products of weight bytes (unsigned) and
    activation bytes (signed), `step` bytes of each per instruction."""

    lanes: int
    kind: DotKind

    @property
    def step(self) -> int:
        return BYTES_PER_LANE[self.kind] * self.lanes

    @property
    def dwords(self) -> bool:
        """Whether a lane sums 4 consecutive bytes (vpdpbusd's, PanelKernel's layout)."""
        return BYTES_PER_LANE[self.kind] == 4

    @property
    def acc(self) -> VectorType:
        return VectorType(i32, [self.lanes])

    @property
    def bytes(self) -> VectorType:
        return VectorType(i8, [self.step])

    @property
    def words(self) -> VectorType:
        return VectorType(i16, [2 * self.lanes])

    def for_bits(self, bits: int, x_max: int) -> Dot:
        """This dot for weight codes of `bits` and activation codes of magnitude at most
        `x_max` (MADD's pair sums must stay exact: pair_bound)."""
        exact = pair_bound(bits, 1, x_max) < 1 << 15
        return replace(self, kind=DotKind.PAIRS) if self.kind is DotKind.MADD and not exact else self

    def operand(self, b: LoopBuilder, v: SSAValue, signed: bool) -> SSAValue:
        """A loaded byte vector as the step takes it (done once per load, not per product)."""
        if self.dwords:
            return b.insert(vector.BitcastOp(v, self.acc))
        return _widen(b, v, self.words if self.kind is DotKind.PAIRS else self.acc, signed)

    def accumulate_all(self, b: LoopBuilder, acc: SSAValue, operands: Sequence[tuple[SSAValue, SSAValue]],
                       bits: int, x_max: int) -> SSAValue:  # fmt: skip
        """acc plus the dot products of every (w, x) of `operands`, weight codes of `bits`,
        activation codes of magnitude at most `x_max`. With MADD, where their i16 pair sums
        (each at most 2 * (2^bits - 1) * x_max) add up exactly in i16 (the P parts of int4
        or int2 codes), pmaddubsw's are added before one pmaddwd: one pmaddwd and add per
        accumulator and step, as P = 1 codes take."""
        if self.kind is not DotKind.MADD or pair_bound(bits, len(operands), x_max) >= 1 << 15:
            for w, x in operands:
                acc = self.accumulate(b, acc, w, x)
            return acc
        return b.insert(arith.AddiOp(acc, self.word_sums(b, self.pair_sums(b, operands))))

    def pair_sums(self, b: LoopBuilder, operands: Sequence[tuple[SSAValue, SSAValue]]) -> SSAValue:
        """The i16 sum of pmaddubsw's pair sums of every (w, x) (MADD; exact within pair_bound)."""
        pairs = None
        for w, x in operands:
            part = self._byte_pairs(b, w, x)
            pairs = part if pairs is None else b.insert(arith.AddiOp(pairs, part))
        assert pairs is not None
        return pairs

    @property
    def avx2(self) -> bool:
        """Whether this is AVX2's pmaddubsw/pmaddwd step (8 lanes, no VNNI), which the
        blocks arrange for (halves, phase_x, IntegerKernel.scale_rows); VNNI's and
        AVX-512's blocks are as they were."""
        return self.lanes == 8 and self.kind in (DotKind.MADD, DotKind.PAIRS)

    @property
    def halves(self) -> int:
        """The 128-bit halves of AVX2's vectors that the blocks' sums keep apart: each
        holds its own accumulators' columns, so that the reductions shuffle within
        halves (unpacks), as AVX2's in-lane shuffles do, and never across them (vpermq)."""
        return 2 if self.avx2 else 1

    def _byte_pairs(self, b: LoopBuilder, w: SSAValue, x: SSAValue) -> SSAValue:
        w, x = (b.insert(vector.BitcastOp(v, self.bytes)) for v in (w, x))
        return b.insert(llvm.CallIntrinsicOp(PMADDUBSW[self.lanes], [w, x], [self.words]))

    def word_sums(self, b: LoopBuilder, pairs: SSAValue) -> SSAValue:
        return b.insert(llvm.CallIntrinsicOp(PMADDWD[self.lanes], [pairs, b.splat(self.words, 1)], [self.acc]))

    def accumulate(self, b: LoopBuilder, acc: SSAValue, w: SSAValue, x: SSAValue) -> SSAValue:
        if self.kind is DotKind.VNNI:
            name = f"llvm.x86.avx512.vpdpbusd.{32 * self.lanes}"
            return b.insert(llvm.CallIntrinsicOp(name, [acc, w, x], [self.acc]))
        if self.kind is DotKind.MADD:
            products = self.word_sums(b, self._byte_pairs(b, w, x))
        elif self.kind is DotKind.PAIRS:
            products = b.insert(llvm.CallIntrinsicOp(PMADDWD[self.lanes], [w, x], [self.acc]))
        else:
            # Both factors fit in 16 bits: LLVM multiplies them as such (vpmaddwd, or
            # vpdpwssd), not with vpmulld.
            products = b.insert(arith.MuliOp(w, x))
        return b.insert(arith.AddiOp(acc, products))


def pair_bound(bits: int, parts: int, x_max: int) -> int:
    """The largest magnitude of `parts` pmaddubsw pair sums added in i16, of unsigned
    bytes below 2^bits by activations of magnitude at most `x_max` (int8's 128, int7's
    64): they are exact while it stays below 2^15."""
    return parts * 2 * ((1 << bits) - 1) * x_max
