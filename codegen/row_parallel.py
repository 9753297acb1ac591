"""Row and column parallelism: whether a kernel computes each row (each column) of its
results on its own.

A kernel is row-parallel in the size symbol S that indexes the leading axis of its
results when row r of every result depends only on row r of the parameters whose
leading axis is S, and on the other parameters as a whole. Its rows can then be
computed by independent calls on blocks of rows (stoicc_py.abi.RowSplit), e.g. on
several threads.

The analysis follows values through the tensor-level kernel. Each value is FREE
(no S: the same for every block), LOCAL (S on axis 0 only, row r from rows r) or
MIXED (anything else: a reduction or softmax over S, a transpose of S, a scale
computed over the whole tensor, an op the analysis does not know).

Columns (column_split) are followed the same way for a GEMV: the symbol S that indexes
the last axis of the results, from the leading axis of a linear's weight [S, K] (dense
or packed: its rows become the product's columns), through bias and elementwise
epilogues, with LOCAL meaning S on the last axis only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum, auto

from xdsl.dialects import func
from xdsl.ir import Attribute, Operation, SSAValue

from stoicc_py import dims
from stoicc_py.abi import ColumnSplit, Dim, RowSplit
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import ComposedLayoutAttr
from stoicc_py.dialects.quant import SQAttr, UniformQuantAttr
from stoicc_py.dialects.sparse import HybridAttr, NMAttr

ROW_ALIGN = 16
"""Blocks also start on multiples of this many rows: a multiple of the row blocks that
the lowering's microkernels use (up to 16 rows), so they see the rows they see in a
whole call even where a product's row tile is smaller."""


PANEL_ROWS = 32
"""A multiple of the blocks of tdsl-vectorize-sparse's panel nests (on AVX-512: blocks
of 64 rows, then one of 32, a row summed in the same order in either): a kernel with
an N:M or hybrid weight splits at it, so every row takes the nest it takes in a whole
call."""

COLUMN_ALIGN = 48
"""Column blocks start on multiples of this: the n-tile of the linear lowerings (dense
microkernel and quantized vector nests, passes/tdsl_tile.py), so each column takes the
nest it takes in a whole call."""


class Rows(Enum):
    FREE = auto()
    LOCAL = auto()
    MIXED = auto()


def row_split(fn: func.FuncOp) -> RowSplit | None:
    """The RowSplit of a tensor-level kernel, or None if its rows are not independent."""
    outputs = fn.function_type.outputs.data
    symbol = outputs[0].dims[0] if outputs and isinstance(outputs[0], tdsl.TensorType) and outputs[0].rank else None
    if not isinstance(symbol, str) or _has_dim_expression(fn):
        return None
    rows: dict[SSAValue, Rows] = {arg: _parameter(arg.type, symbol) for arg in fn.args}
    if Rows.MIXED in rows.values():
        return None  # S on another axis, or in a packed layout: no pointer offset reaches its rows
    work: list[tuple[Dim, ...]] = []
    for op in fn.body.block.ops:
        if isinstance(op, func.ReturnOp):
            local = all(rows[v] is Rows.LOCAL for v in op.operands)
            return RowSplit(symbol, _granule(fn), tuple(work)) if local else None
        kind = _op_rows(op, [rows[v] for v in op.operands])
        for result in op.results:
            rows[result] = _checked(kind, result.type, symbol)
            if rows[result] is Rows.LOCAL:
                work.append(_row_work(op, result))
    return None


def _has_dim_expression(fn: func.FuncOp) -> bool:
    """Whether a value has a dim like P+T (not analysed: such kernels run whole)."""
    types = [*fn.function_type.inputs, *(r.type for op in fn.walk() for r in op.results)]
    return any(isinstance(t, tdsl.TensorType) and any(not dims.is_symbol(d) for d in t.dims if isinstance(d, str))
               for t in types)  # fmt: skip


def _parameter(t: Attribute, symbol: str) -> Rows:
    if not isinstance(t, tdsl.TensorType) or symbol not in t.dims:
        return Rows.FREE
    if t.dims[0] == symbol and symbol not in t.dims[1:] and t.layout.is_dense:
        return Rows.LOCAL
    return Rows.MIXED


def _checked(kind: Rows, t: Attribute, symbol: str) -> Rows:
    """`kind`, unless the value's type contradicts it (S where the rows are not)."""
    dims = t.dims if isinstance(t, tdsl.TensorType) else ()
    if kind is Rows.LOCAL and not (dims and dims[0] == symbol and symbol not in dims[1:]):
        return Rows.MIXED
    if kind is Rows.FREE and symbol in dims:
        return Rows.MIXED
    return kind


def _op_rows(op: Operation, operands: Sequence[Rows]) -> Rows:
    if Rows.MIXED in operands:
        return Rows.MIXED
    if Rows.LOCAL not in operands:
        return Rows.FREE  # constants, and values computed from whole parameters only
    if isinstance(op, tdsl.ContractionOp):
        return _contraction(op, operands)
    if isinstance(op, tdsl.ElementwiseBinaryOp | tdsl.WhereOp):
        return _elementwise(op, operands)
    if isinstance(op, tdsl.UnaryOp | tdsl.DequantizeOp):
        return Rows.LOCAL
    if isinstance(op, tdsl.ReduceOp | tdsl.SoftmaxOp):
        return Rows.LOCAL if op.axis_index != 0 else Rows.MIXED
    if isinstance(op, tdsl.QuantizeOp):
        return Rows.LOCAL if _per_row(op.layout) else Rows.MIXED
    return Rows.MIXED


def _rank(value: SSAValue) -> int:
    return value.type.rank if isinstance(value.type, tdsl.TensorType) else -1


def _elementwise(op: tdsl.ElementwiseBinaryOp | tdsl.WhereOp, operands: Sequence[Rows]) -> Rows:
    """Broadcasting aligns trailing axes: a LOCAL operand of lower rank than the result
    would put its rows on another axis."""
    rank = _rank(op.results[0])
    aligned = all(r is Rows.FREE or _rank(v) == rank for v, r in zip(op.operands, operands))
    return Rows.LOCAL if aligned else Rows.MIXED


def _contraction(op: tdsl.ContractionOp, operands: Sequence[Rows]) -> Rows:
    """Rows of lhs give rows of the product; rows of rhs are summed over or become columns."""
    lhs, rhs, *bias = operands
    if _rank(op.lhs) != 2 or _rank(op.rhs) != 2:
        return Rows.MIXED  # a batched product: its batch dims are not the rows of a matrix
    bias_ok = not bias or bias[0] is Rows.FREE or (op.bias is not None and _rank(op.bias) == 2)
    return Rows.LOCAL if lhs is Rows.LOCAL and rhs is Rows.FREE and bias_ok else Rows.MIXED


def _per_row(layout: Attribute | None) -> bool:
    """Whether a quantization computes its scales (and any outlier split) row by row."""
    if isinstance(layout, UniformQuantAttr):
        per, axis = layout.per.data, layout.axis.data
        return per in ("token", "group") or (per == "channel" and axis == 0)
    if isinstance(layout, SQAttr):
        return _per_row(layout.low) and _per_row(layout.high)
    return False


def _row_work(op: Operation, result: SSAValue) -> tuple[Dim, ...]:
    """The cost of one row of `result`: k x n multiply-adds for a product, else its elements."""
    assert isinstance(result.type, tdsl.TensorType)
    if isinstance(op, tdsl.ContractionOp) and isinstance(op.lhs.type, tdsl.TensorType):
        return op.lhs.type.dims[1], result.type.dims[1]
    return result.type.dims[1:]


def _granule(fn: func.FuncOp) -> int:
    """Row tiles of every product (and ROW_ALIGN, and PANEL_ROWS of a sparse weight) divide it."""
    products = [op for op in fn.walk() if isinstance(op, tdsl.ContractionOp)]
    panels = (_panel_rows(op.rhs.type) for op in products)
    return math.lcm(ROW_ALIGN, *panels, *(op.tile_sizes[0] for op in products if op.tile_sizes))


def _panel_rows(t: Attribute) -> int:
    layout = t.layout if isinstance(t, tdsl.TensorType) else None
    sparse = layout.sparse if isinstance(layout, ComposedLayoutAttr) else layout
    return PANEL_ROWS if isinstance(sparse, NMAttr | HybridAttr) else 1


def column_split(fn: func.FuncOp) -> ColumnSplit | None:
    """The ColumnSplit of a tensor-level kernel, or None if its columns are not independent.
    Rows.LOCAL here is S on the last axis only; a weight (S on the leading axis of a rank-2
    parameter) is LOCAL only as the weight of a linear."""
    outputs = fn.function_type.outputs.data
    symbol = outputs[0].dims[-1] if outputs and isinstance(outputs[0], tdsl.TensorType) and outputs[0].rank else None
    if not isinstance(symbol, str) or _has_dim_expression(fn):
        return None
    cols: dict[SSAValue, Rows] = {arg: _column_parameter(arg.type, symbol) for arg in fn.args}
    weights = {arg for arg in fn.args if _is_weight(arg.type, symbol)}
    if Rows.MIXED in cols.values():
        return None
    work: list[tuple[Dim, ...]] = []
    for op in fn.body.block.ops:
        if isinstance(op, func.ReturnOp):
            local = all(cols[v] is Rows.LOCAL and v not in weights for v in op.operands)
            return ColumnSplit(symbol, _column_granule(fn), tuple(work)) if local else None
        kind = _op_columns(op, [cols[v] for v in op.operands], [v in weights for v in op.operands])
        for result in op.results:
            cols[result] = _checked_columns(kind, result.type, symbol)
            if cols[result] is Rows.LOCAL:
                work.append(_column_work(op, result))
    return None


def _is_weight(t: Attribute, symbol: str) -> bool:
    return isinstance(t, tdsl.TensorType) and t.rank == 2 and t.dims[0] == symbol and symbol not in t.dims[1:]


def _column_parameter(t: Attribute, symbol: str) -> Rows:
    """A weight [S, K] (dense or packed: its rows are cut) or a dense [S] (bias) is LOCAL."""
    if not isinstance(t, tdsl.TensorType) or symbol not in t.dims:
        return Rows.FREE
    vector = t.dims == (symbol,) and t.layout.is_dense
    return Rows.LOCAL if vector or _is_weight(t, symbol) else Rows.MIXED


def _op_columns(op: Operation, operands: Sequence[Rows], weights: Sequence[bool]) -> Rows:
    if Rows.MIXED in operands:
        return Rows.MIXED
    if Rows.LOCAL not in operands:
        return Rows.FREE
    if isinstance(op, tdsl.LinearOp):
        lhs, rhs, *bias = operands
        weight_rhs = weights[1] and not weights[0] and not any(weights[2:])
        return Rows.LOCAL if _rank(op.lhs) == 2 and lhs is Rows.FREE and weight_rhs else Rows.MIXED
    if any(weights):
        return Rows.MIXED  # a weight's rows are columns only through a linear
    if isinstance(op, tdsl.ElementwiseBinaryOp | tdsl.WhereOp | tdsl.UnaryOp):
        return Rows.LOCAL  # trailing axes align: S stays on the last axis (_checked_columns)
    return Rows.MIXED


def _checked_columns(kind: Rows, t: Attribute, symbol: str) -> Rows:
    """`kind`, unless the value's type contradicts it (S where the columns are not)."""
    dims = t.dims if isinstance(t, tdsl.TensorType) else ()
    if kind is Rows.LOCAL and not (dims and dims[-1] == symbol and symbol not in dims[:-1]):
        return Rows.MIXED
    if kind is Rows.FREE and symbol in dims:
        return Rows.MIXED
    return kind


def _column_work(op: Operation, result: SSAValue) -> tuple[Dim, ...]:
    """The cost of one column of `result`: m x k multiply-adds for a product, else its elements."""
    assert isinstance(result.type, tdsl.TensorType)
    if isinstance(op, tdsl.ContractionOp) and isinstance(op.lhs.type, tdsl.TensorType):
        return op.lhs.type.dims
    return result.type.dims[:-1]


def _column_granule(fn: func.FuncOp) -> int:
    products = [op for op in fn.walk() if isinstance(op, tdsl.ContractionOp)]
    return math.lcm(COLUMN_ALIGN, *(op.tile_sizes[1] for op in products if op.tile_sizes))
