"""Register-blocked loop nests, as the vector kernels of tdsl-microkernel,
-vectorize-quant, -vectorize-sparse and -vectorize-integer lay them out: a block's
Shape, loops over whole blocks of a size with their ragged edges after them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.dialects import arith
from xdsl.dialects.builtin import VectorType, f32
from xdsl.ir import SSAValue

from stoicc_py.codegen.loop_builder import LoopBuilder

Body = Callable[[LoopBuilder, SSAValue], None]


def for_(b: LoopBuilder, lb: SSAValue, ub: SSAValue, step: int, body: Body, name: str) -> None:
    def step_body(inner: LoopBuilder, iv: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
        body(inner, iv)
        return ()

    b.loop(lb, ub, b.index(step), step_body, name=name)


def floor_to(b: LoopBuilder, lo: SSAValue, hi: SSAValue, multiple: int) -> SSAValue:
    """The largest lo + t*multiple <= hi: where whole blocks of `multiple` end."""
    return b.insert(arith.SubiOp(hi, b.rem(b.insert(arith.SubiOp(hi, lo)), b.index(multiple))))


def ragged(k_size: int | None, granule: int) -> bool:
    """Whether k-tiles can end off a step boundary (k unknown, or not a multiple)."""
    return k_size is None or k_size % granule != 0


@dataclass(frozen=True)
class Shape:
    """The register block and vector width of one kernel."""

    width: int
    rows: int
    cols: int

    @property
    def vec(self) -> VectorType:
        return VectorType(f32, [self.width])

    def indices(self, b: LoopBuilder, i: SSAValue, j: SSAValue) -> tuple[list[SSAValue], list[SSAValue]]:
        """The rows i.. and columns j.. of a block of this shape."""
        return [b.add(i, b.index(r)) for r in range(self.rows)], [b.add(j, b.index(c)) for c in range(self.cols)]


def blocks(b: LoopBuilder, lo: SSAValue, hi: SSAValue, size: int, full: Body, edge: Body, name: str) -> None:
    """`full` at every whole block of `size` from lo, then `edge` at each leftover index."""
    end = floor_to(b, lo, hi, size) if size > 1 else hi
    for_(b, lo, end, size, full, name)
    if size > 1:
        for_(b, end, hi, 1, edge, name)


Emit = Callable[[LoopBuilder, Shape, SSAValue, SSAValue], None]


def register_blocks(b: LoopBuilder, shape: Shape, rows: tuple[SSAValue, SSAValue], cols: tuple[SSAValue, SSAValue],
                    emit: Emit, cols_outer: str = "", whole_rows: bool = False) -> None:  # fmt: skip
    """emit(b, block, i, j) over rows x cols: `shape` blocks, then 1-row, 1-column and
    1x1 blocks at the ragged edges (no 1-row blocks with `whole_rows`: the rows are a
    multiple of shape.rows). Loops run rows (i) outside columns (j), or, with
    `cols_outer` naming the column loop, columns outside rows (so that a block of
    weight rows stays in cache while every block of x passes)."""
    edge_rows, edge_cols = Shape(shape.width, 1, shape.cols), Shape(shape.width, shape.rows, 1)
    corner = Shape(shape.width, 1, 1)
    if cols_outer:

        def col_block(s: Shape, t: Shape) -> Body:
            return lambda b, j: blocks(
                b, *rows, s.rows, lambda b, i: emit(b, s, i, j), lambda b, i: emit(b, t, i, j), "i"
            )

        blocks(b, *cols, shape.cols, col_block(shape, edge_rows), col_block(edge_cols, corner), cols_outer)
        return

    def row_block(s: Shape, t: Shape) -> Body:
        return lambda b, i: blocks(b, *cols, s.cols, lambda b, j: emit(b, s, i, j), lambda b, j: emit(b, t, i, j), "j")

    if whole_rows:
        for_(b, *rows, shape.rows, row_block(shape, edge_cols), "i")
    else:
        blocks(b, *rows, shape.rows, row_block(shape, edge_cols), row_block(edge_rows, corner), "i")
