"""Lane shuffles the vector kernels share: two-source shuffles, n x n transposes, and
the transposing trees of shuffles and adds that sum accumulators' lanes into one
vector of columns (column_sums), where a horizontal reduction per accumulator would
cost 2*log2(lanes) instructions and a move to a scalar register."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import arith, llvm, vector
from xdsl.dialects.builtin import DenseArrayBase, IntegerType, VectorType, f32, i32, i64
from xdsl.ir import SSAValue

from stoicc_py.codegen.loop_builder import FAST, LoopBuilder


def shuffle(b: LoopBuilder, u: SSAValue, v: SSAValue, mask: list[int]) -> SSAValue:
    element = u.type.element_type  # type: ignore[attr-defined]
    return b.insert(
        vector.ShuffleOp(u, v, DenseArrayBase.from_list(i64, mask), result_type=VectorType(element, [len(mask)]))
    )


def transpose(b: LoopBuilder, vectors: list[SSAValue]) -> list[SSAValue]:
    """The n x n transpose of n vectors of n i32 lanes (n a power of two): off-diagonal
    blocks of h rows swap, for h = n/2 .. 1, each row pair by two two-source shuffles
    (n log2(n) shuffles in all, which LLVM matches to unpacks and lane shuffles)."""
    rows, n = list(vectors), len(vectors)
    h = n // 2
    while h:
        for r in (r for r in range(n) if not r & h):
            upper, lower = rows[r], rows[r + h]
            rows[r] = shuffle(b, upper, lower, [c if not c & h else n + c - h for c in range(n)])
            rows[r + h] = shuffle(b, upper, lower, [c + h if not c & h else n + c for c in range(n)])
        h //= 2
    return rows


def interleave_transpose(b: LoopBuilder, rows: list[SSAValue]) -> list[SSAValue]:
    """The n x n transpose of n vectors of n lanes (n a power of two) by log2(n) perfect
    shuffles: each pass interleaves row r with row r + n/2, low halves into row 2r, high
    ones into 2r+1 (element unpacks: 24 punpck[lh]wd for 8 x 8 half floats in xmm, where
    transpose's block swaps cost LLVM byte shuffles at 16-bit granularity)."""
    n = len(rows)
    low = [t for lane in range(n // 2) for t in (lane, n + lane)]
    for _ in range(n.bit_length() - 1):
        rows = [shuffle(b, rows[r], rows[r + n // 2], [t + half * n // 2 for t in low])
                for r in range(n // 2) for half in (0, 1)]  # fmt: skip
    return rows


def vector_of(b: LoopBuilder, scalars: Sequence[SSAValue]) -> SSAValue:
    """The scalars as the lanes of one vector (a strided gather: per-output scales).
    Scalars widened from half floats (f16/bf16 scales) are gathered as they are stored
    and widened once, as a vector (one vcvtph2ps, not one per lane)."""
    if all(isinstance(s.owner, arith.ExtFOp) for s in scalars):
        halves = vector_of(b, [s.owner.input for s in scalars])  # type: ignore[union-attr]
        return b.insert(llvm.FPExtOp(halves, VectorType(f32, [len(scalars)])))
    v = b.splat_value(scalars[0], len(scalars))
    for lane, s in enumerate(scalars[1:], 1):
        v = b.insert(llvm.InsertElementOp(v, s, b.insert(arith.ConstantOp.from_int_and_width(lane, i32))))
    return v


def lane_count(v: SSAValue) -> int:
    return v.type.get_shape()[0]  # type: ignore[attr-defined]


def _in_parts(b: LoopBuilder, u: SSAValue, v: SSAValue, mask: list[int], parts: int) -> SSAValue:
    """The shuffle of u and v by `mask` (over one of their `parts` equal parts and its
    twin in v), done in each part alike: the parts' lanes never mix."""
    n, total = lane_count(u) // parts, lane_count(u)
    return shuffle(b, u, v, [h * n + m if m < n else total + h * n + m - n for h in range(parts) for m in mask])


def _add_halves(b: LoopBuilder, u: SSAValue, v: SSAValue | None, length: int, parts: int = 1) -> SSAValue:
    """The lanes of u (then v's, if given) in segments of `length`: each segment's
    halves added, in segment order, within each of `parts` parts (i32 or i16 lanes, or
    f32 ones with the kernels' fast-math flags)."""
    n = lane_count(u) // parts
    firsts = [s + t for s in range(0, n * (1 if v is None else 2), length) for t in range(length // 2)]
    w = u if v is None else v
    first, second = (_in_parts(b, u, w, mask, parts) for mask in (firsts, [f + length // 2 for f in firsts]))
    if isinstance(u.type.element_type, IntegerType):  # type: ignore[attr-defined]
        return b.insert(arith.AddiOp(first, second))
    return b.insert(arith.AddfOp(first, second, FAST))


def merge_pairs(b: LoopBuilder, accs: Sequence[SSAValue], length: int, levels: int,
                parts: int = 1) -> tuple[list[SSAValue], int]:  # fmt: skip
    """column_sums' first `levels` levels (at most): accumulators merged in pairs, each
    segment folding in half; the vectors left and their segments' length. Padded with
    zero vectors to a power of two (LLVM folds their adds away)."""
    if levels <= 0:
        return list(accs), length
    level = [*accs, *[b.splat(accs[0].type, 0)] * ((1 << (len(accs) - 1).bit_length()) - len(accs))]  # type: ignore[arg-type]
    while levels > 0 and length > 1 and len(level) > 1:
        level = [_add_halves(b, u, v, length, parts) for u, v in zip(level[::2], level[1::2])]
        length, levels = length // 2, levels - 1
    return level, length


def column_sums(b: LoopBuilder, accs: Sequence[SSAValue], length: int, count: int, parts: int = 1) -> SSAValue:
    """The sums of `count` columns' lanes as one vector (i32 or f32), lane c column c's: `accs`
    hold the columns in order, each in a segment of `length` lanes (a power of two); with
    `parts`, each of their equal parts holds its own columns (part h of every accumulator
    the h-th of the columns, in order). A transposing tree of shuffles and adds, about 3
    instructions per accumulator, where a horizontal reduction of each costs
    2*log2(lanes) and a move to a scalar register."""
    level, length = merge_pairs(b, accs, length, len(accs), parts)
    while len(level) > 1:  # more columns than lanes: 1-lane segments concatenate
        level = [_in_parts(b, u, v, list(range(2 * lane_count(u) // parts)), parts)
                 for u, v in zip(level[::2], level[1::2])]  # fmt: skip
    sums = level[0]
    while length > 1:  # fewer columns than lanes: the segments fold on their own
        sums, length = _add_halves(b, sums, None, length, parts), length // 2
    if lane_count(sums) == count:
        return sums
    return _in_parts(b, sums, sums, list(range(count // parts)), parts)
