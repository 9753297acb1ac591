"""NMDecoder: the IR that decodes N:M index words, in every form a kernel needs.

As MLIR's `NOutOfMLevel`, every code path that reads an N:M weight's positions goes
through this one class, which reads the field layout from the format's codec
(stoicc_py.codec.nm.NMCodec): the scalar slot -> column of the loop nests, the
unrolled decode of a whole word (the panel nest) and the lane-selection vector (the
permute kernels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.dialects import arith, vector
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, IndexType, IntegerAttr, VectorType, i32
from xdsl.ir import SSAValue

from stoicc_py.codec.nm import NMCodec
from stoicc_py.codegen.loop_builder import LoopBuilder


def _i32(b: LoopBuilder, value: int) -> SSAValue:
    return b.insert(arith.ConstantOp(IntegerAttr(value, i32)))


@dataclass(frozen=True)
class NMDecoder:
    code: NMCodec

    # ------------------------------------------------------------------ scalar

    def column(self, b: LoopBuilder, indices: SSAValue, where: Sequence[SSAValue], s: SSAValue) -> SSAValue:
        """The dense column of slot s of the row whose index words are at `where`:
        (s // N) * M + its field, `index_bits` bits at (s % per_word) * index_bits of
        word s // per_word."""
        code = self.code
        word = b.load(indices, [*where, b.div(s, b.index(code.per_word))])
        shift = b.insert(arith.IndexCastOp(b.mul(b.rem(s, b.index(code.per_word)), b.index(code.index_bits)), i32))
        field = b.insert(arith.AndIOp(b.insert(arith.ShRUIOp(word, shift)), _i32(b, code.m - 1)))
        return b.add(b.mul(b.div(s, b.index(code.n)), b.index(code.m)), b.insert(arith.IndexCastOp(field, IndexType())))

    def valid_slots(self, b: LoopBuilder, columns: SSAValue) -> SSAValue:
        """The slots of a row's first `columns` dense columns (a multiple of M)."""
        return b.mul(b.div(columns, b.index(self.code.m)), b.index(self.code.n))

    # ------------------------------------------------------------------ one word, unrolled

    def mask(self, b: LoopBuilder) -> SSAValue:
        """The i32 field mask, made once per word."""
        return _i32(b, self.code.m - 1)

    def field(self, b: LoopBuilder, word: SSAValue, t: int, mask: SSAValue) -> SSAValue:
        """The position (index) of the word's t-th slot in its group."""
        shifted = b.insert(arith.ShRUIOp(word, _i32(b, self.code.word_of(t)[1])))
        return b.insert(arith.IndexCastOp(b.insert(arith.AndIOp(shifted, mask)), IndexType()))

    # ------------------------------------------------------------------ lane selection

    def slot_of_column(self, b: LoopBuilder, k: SSAValue) -> SSAValue:
        """The first slot of dense column k's group (k a multiple of M)."""
        code = self.code
        if code.m % code.n == 0:
            return b.div(k, b.index(code.m // code.n))
        return b.mul(b.div(k, b.index(code.m)), b.index(code.n))

    def word_of_column(self, b: LoopBuilder, k: SSAValue) -> SSAValue:
        """The index word of dense column k (a multiple of word_cols)."""
        return b.div(k, b.index(self.code.word_cols))

    def selectable(self, width: int) -> bool:
        """Whether an index word splits into steps of `width` slots, each selecting
        `width` lanes from two vectors of `width` columns (whole groups of M, each
        wholly in one of the two: M divides the width)."""
        code = self.code
        return (code.whole_groups_per_word and code.per_word % width == 0 and code.m == 2 * code.n
                and width % code.m == 0)  # fmt: skip

    def steps(self, width: int) -> int:
        """The steps of `width` slots (2 * width dense columns) of one index word (`selectable`)."""
        return self.code.per_word // width

    def step_slots(self, width: int, half: int) -> range:
        """The slots of an index word's step `half`."""
        return range(half * width, (half + 1) * width)

    def step_columns(self, width: int, half: int) -> list[int]:
        """Each lane's group's first column, relative to the first of step `half`."""
        slots = self.step_slots(width, half)
        return [self.code.column_of(s) - self.code.column_of(slots[0]) for s in slots]

    def selection(self, b: LoopBuilder, word: SSAValue, width: int, half: int = 0) -> SSAValue:
        """The lane permutation of step `half` of an index word (`selectable`): lane j
        reads element step_columns[j] + position(slot j of the step) of the step's
        2 * width columns."""
        code = self.code
        lanes = VectorType(i32, [width])
        const = lambda values: b.insert(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(lanes, values)))  # noqa: E731
        shifts = [code.word_of(s)[1] for s in self.step_slots(width, half)]
        fields = b.insert(arith.ShRUIOp(b.insert(vector.BroadcastOp(word, lanes)), const(shifts)))
        fields = b.insert(arith.AndIOp(fields, const([code.m - 1])))
        return b.insert(arith.AddiOp(fields, const(self.step_columns(width, half))))
