"""Software prefetch of a GEMV's weight rows into L2, ahead of the rows being read (and,
prefetch_span, of the next pieces of the N:M panel nest's rows).

A GEMV block of `row_cols` weight rows reads them as `row_cols` streams at once, each
of a few lines (SmolLM2's rows: 288-576 bytes, 5-9 lines), too short for the
hardware's stream prefetchers to find; each step of a block therefore asks for the
bytes at the same place in the rows a few blocks ahead. Into L2 (locality 1:
prefetcht2), not L1: there the prefetches would wait for its few miss buffers.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import arith, llvm, ptr
from xdsl.dialects.builtin import MemRefType, NoneAttr, i32
from xdsl.ir import Attribute, SSAValue

from stoicc_py.codegen.loop_builder import LoopBuilder

BLOCKS_AHEAD = 2
"""How many GEMV blocks (of row_cols rows of w) ahead of its own a block prefetches."""
STEP_BYTES = 32
"""The least bytes of a weight row a step reads for the GEMV blocks to prefetch (a
prefetch per step and row: narrower steps would ask for each line 4 times or more)."""
LINE_BYTES = 64
"""A cache line: what one prefetch brings in."""


FULL_LANES = 16
"""The f32 lanes of the vectors (AVX-512's, Zen 4) on which the callers' least bytes were set."""


def least_bytes(least: int, lanes: int) -> int:
    """A least of bytes per step set on FULL_LANES-lane vectors, for a target of `lanes`: its
    steps read lanes/FULL_LANES the bytes of a row, and ask for each line as many times more
    often, which still paid on Zen 3 (8 lanes): SmolLM2's W4A8 decode layers 1.6x faster, its
    int8 g32 lm head 2-3x (rows of 576 bytes, which no hardware prefetcher found)."""
    return least * lanes // FULL_LANES


def rows_ahead(values: Attribute, width: int, step: int, row_cols: int, least: int = STEP_BYTES,
               smallest: int = 0) -> int:  # fmt: skip
    """The rows of w ahead of a GEMV block's that each of its steps prefetches, for a
    block of `row_cols` rows whose steps read `step` codes of rows of `width` codes
    stored in `values`. 0 where `values` is not a dense static [n, row] buffer, a
    step reads fewer than `least` bytes of a row, or the buffer holds fewer than
    `smallest` bytes (with `smallest`, its rows too must be static)."""
    if not (isinstance(values, MemRefType) and isinstance(values.layout, NoneAttr) and width > 0):
        return 0
    row_bytes = _row_bytes(values)
    if smallest and values.get_shape()[0] * row_bytes < smallest:  # a size-symbol n (-1) is below any
        return 0
    return BLOCKS_AHEAD * row_cols if row_bytes > 0 and step * row_bytes >= least * width else 0


def _row_bytes(values: MemRefType) -> int:
    """Bytes of a row of a [n, row] buffer (negative where the row is not static)."""
    return values.get_shape()[1] * values.element_type.bitwidth // 8  # type: ignore[attr-defined]


def steps_to_line(values: Attribute, width: int, step: int) -> int:
    """How many steps of `step` codes read a cache line of a row of `width` codes stored
    in `values` (a power of two; 1 where a step reads a line or more, or rows are not static)."""
    if not (isinstance(values, MemRefType) and width > 0 and _row_bytes(values) > 0):
        return 1
    per_step = step * _row_bytes(values) // width
    return 1 << max(0, (LINE_BYTES // per_step).bit_length() - 1) if per_step else 1


def prefetch_rows(b: LoopBuilder, values: SSAValue, rows: Sequence[SSAValue], ahead: int, k: SSAValue,
                  width: int, rotation: tuple[int, int] = (1, 0)) -> None:  # fmt: skip
    """A prefetch of the bytes of code k of each row `ahead` rows after one of `rows` of
    `values` (rows_ahead's count: nothing where it is 0). With `rotation` (s, step): steps
    of `step` codes, s to a line of a row (steps_to_line), and consecutive rows, a
    multiple of s of them: only the rows r with r = k/step (mod s), a line of each row
    once (where every step asked for the line of each, s times in all)."""
    lines, step = rotation
    if not ahead:
        return
    if lines == 1 or len(rows) % lines:
        for row in rows:
            _prefetch_row(b, values, b.add(row, b.index(ahead)), k, width)
        return
    phase = b.insert(arith.RemUIOp(b.div(k, b.index(step)), b.index(lines)))
    first = b.add(b.add(rows[0], b.index(ahead)), phase)
    for r in range(0, len(rows), lines):
        _prefetch_row(b, values, b.offset(first, r), k, width)


def prefetch_span(b: LoopBuilder, values: SSAValue, row: SSAValue, first: SSAValue, count: int) -> None:
    """Prefetches of the lines of `count` elements of a row of `values` (a dense [n, row]
    buffer) from element `first`: a loop nest that reads short pieces of many rows (the
    N:M panel nest: a k-tile of each of 32 rows) asks for each row's next piece itself."""
    if not (isinstance(values.type, MemRefType) and isinstance(values.type.layout, NoneAttr)):
        return
    width = values.type.get_shape()[1]
    per_line = max(1, LINE_BYTES * width // _row_bytes(values.type))
    for line in range(-(-count // per_line)):
        _prefetch_row(b, values, row, b.offset(first, line * per_line), width)


def _prefetch_row(b: LoopBuilder, values: SSAValue, row: SSAValue, k: SSAValue, width: int) -> None:
    """A prefetch of the bytes of code k of a row of `values` (a dense [n, row] buffer
    of rows of `width` codes, where the bytes of k lie about k * bytes / width into the
    row; past the last row, it touches nothing: prefetches do not fault)."""
    row_bytes = _row_bytes(values.type)  # type: ignore[arg-type]
    codes = width // row_bytes  # codes to a byte: a division (a shift), where there is a whole number
    into = (
        b.div(k, b.index(codes)) if codes * row_bytes == width else b.div(b.mul(k, b.index(row_bytes)), b.index(width))
    )
    at = b.add(b.mul(row, b.index(row_bytes)), into)
    address = b.insert(ptr.PtrAddOp(b.insert(ptr.ToPtrOp(values)), at))
    # a read, into L2 (locality 1: prefetcht2), of data
    flags = [b.insert(arith.ConstantOp.from_int_and_width(v, i32)) for v in (0, 1, 1)]
    b.b.insert(llvm.CallIntrinsicOp("llvm.prefetch.p0", [address, *flags], []))
