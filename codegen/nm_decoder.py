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
        """Whether one index word selects `width` lanes from two vectors of `width` columns."""
        return self.code.per_word == width and self.code.whole_groups_per_word and self.code.word_cols == 2 * width

    def selection(self, b: LoopBuilder, word: SSAValue) -> SSAValue:
        """The lane permutation of an index word (`selectable`): lane j reads element
        column_of(j) + position(j) of the word's columns."""
        code = self.code
        lanes = VectorType(i32, [code.per_word])
        const = lambda values: b.insert(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(lanes, values)))  # noqa: E731
        shifts = [code.word_of(j)[1] for j in range(code.per_word)]
        fields = b.insert(arith.ShRUIOp(b.insert(vector.BroadcastOp(word, lanes)), const(shifts)))
        fields = b.insert(arith.AndIOp(fields, const([code.m - 1])))
        return b.insert(arith.AddiOp(fields, const([code.column_of(j) for j in range(code.per_word)])))
