"""check-bounds: every load and store of a kernel checks its indices against its buffer.

For `--check-bounds` / `compile(..., check_bounds=True)`. Runs on the loop nests
(after the LOOPS stage), before memrefs become pointers. Each `memref.load/store`
and `vector.load/store` on a kernel's buffer argument or allocation runs only if
every index is inside its axis (a vector's lanes too; an access through a flat view
of lower-views, if its position is inside the viewed buffer); otherwise it is skipped (a
load yields zeros) and the kernel records which buffer it missed in a status
buffer, so that the generated code never touches memory outside its buffers and
the caller can raise an error that names the kernel and the buffer. An access the
pass cannot check (a buffer of unknown size, a masked or transfer op) is an error,
never left unchecked.

The kernel gets trailing arguments, after its size symbols (abi.py describes them
for the runtime and the C header):
- `status: memref<2xi64>`: status[0] stays 0, or becomes the 1-based position of
  the pointer argument that an access missed (-1 for a temporary buffer), and
  status[1] is 1 for a store, 0 for a load (the last miss wins);
- one `index` per dynamic axis of a packed tensor's buffer (`tdsl.buffer`, whose
  lengths depend on the data, e.g. a CSR tensor's values), its extent, which the
  kernel cannot know otherwise. They become size symbols (`tdsl.symbol`), so that
  resolve-memref-dims resolves `memref.dim` of those buffers like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, memref, scf, vector
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FloatAttr,
    IndexType,
    IntAttr,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
    StringAttr,
    VectorType,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

Access = memref.LoadOp | memref.StoreOp | vector.LoadOp | vector.StoreOp
# Memory ops that no pass emits today: refused rather than left unchecked.
UNCHECKED = (vector.MaskedLoadOp, vector.MaskedStoreOp, vector.TransferReadOp, vector.TransferWriteOp)
STATUS_TYPE = MemRefType(i64, [2])
TEMPORARY = -1  # status[0] for a miss on an allocation


def extent_symbol(arg_index: int, axis: int) -> str:
    """The size symbol of a packed buffer's dynamic axis (the ABI derives the same order)."""
    return f"extent{arg_index}_{axis}"


def _constant(value: int, type_: IntegerType | IndexType | None = None) -> arith.ConstantOp:
    return arith.ConstantOp(IntegerAttr(value, type_ or IndexType()))


def _add_arg(fn: func.FuncOp, type_: Attribute, attrs: dict[str, Attribute], hint: str) -> BlockArgument:
    block = fn.body.block
    arg = block.insert_arg(type_, len(block.args))
    arg.name_hint = hint
    old = list(fn.arg_attrs.data) if fn.arg_attrs else [DictionaryAttr({}) for _ in block.args[:-1]]
    fn.arg_attrs = ArrayAttr([*old, DictionaryAttr(attrs)])
    fn.update_function_type()
    return arg


def _add_extents(fn: func.FuncOp) -> None:
    """An extent argument for each dynamic axis of a packed buffer, named as a size symbol."""
    if fn.arg_attrs is None:  # no argument is a packed buffer
        return
    for i, (arg, attrs) in enumerate(zip(list(fn.args), list(fn.arg_attrs.data))):
        if "tdsl.buffer" not in attrs.data or not isinstance(arg.type, MemRefType):
            continue
        shape = arg.type.get_shape()
        if all(d >= 0 for d in shape):
            continue
        dims = [IntAttr(d) if d >= 0 else StringAttr(extent_symbol(i, a)) for a, d in enumerate(shape)]
        fn.arg_attrs = ArrayAttr([*fn.arg_attrs.data[:i], DictionaryAttr({**attrs.data, "tdsl.dims": ArrayAttr(dims)}),
                                  *fn.arg_attrs.data[i + 1 :]])  # fmt: skip
        for a, d in enumerate(shape):
            if d < 0:
                symbol = extent_symbol(i, a)
                _add_arg(fn, IndexType(), {"tdsl.symbol": StringAttr(symbol)}, symbol)


def _buffer(op: Access) -> SSAValue:
    return op.base if isinstance(op, vector.LoadOp | vector.StoreOp) else op.memref


def _viewed(ref: SSAValue) -> SSAValue:
    """The buffer whose memory `ref` is: itself, or a flat view's source (lower-views)."""
    return ref.owner.source if isinstance(ref.owner, memref.ReinterpretCastOp) else ref


def _buffer_code(fn: func.FuncOp, op: Access) -> int:
    """status[0] for a miss on the buffer of `op`: a kernel argument's position, or TEMPORARY."""
    ref = _viewed(_buffer(op))
    if isinstance(ref, BlockArgument) and ref.block is fn.body.block:
        return ref.index + 1
    if isinstance(ref.owner, memref.AllocOp):
        return TEMPORARY
    raise DiagnosticException(f"check-bounds: cannot size the buffer of {op.name} in @{fn.sym_name.data}")


def _checked_axes(op: Access) -> list[tuple[SSAValue, int, int]]:
    """(index, axis, lanes) per index of an access: a vector covers `lanes` along its trailing axes."""
    indices = list(op.indices)
    lanes = [1] * len(indices)
    if isinstance(op, vector.LoadOp | vector.StoreOp):
        vtype = op.result.type if isinstance(op, vector.LoadOp) else op.vector.type
        assert isinstance(vtype, VectorType)
        for k, n in enumerate(reversed(vtype.get_shape())):
            lanes[len(indices) - 1 - k] = n
    return [(index, axis, n) for axis, (index, n) in enumerate(zip(indices, lanes))]


def _flat_extent(view: memref.ReinterpretCastOp) -> tuple[list[Operation], SSAValue]:
    """Ops computing the element count of a flat view's source (lower-views): its accesses
    are checked at their position in the source (offset + index), against all of it."""
    source = view.source
    assert isinstance(source.type, MemRefType)
    ops: list[Operation] = [_constant(1)]
    total = ops[0].results[0]
    for axis in range(source.type.get_num_dims()):
        axis_op = _constant(axis)
        size = memref.DimOp(source, axis_op)
        product = arith.MuliOp(total, size.result)
        ops += [axis_op, size, product]
        total = product.result
    return ops, total


def _in_bounds(op: Access, ref: SSAValue) -> tuple[list[Operation], SSAValue]:
    """Ops computing whether every index of `op` (and its lanes) lies inside `ref` (for a
    flat view, inside its source)."""
    ops: list[Operation] = [arith.ConstantOp(IntegerAttr(1, i1))]  # a rank-0 buffer: nothing to check
    ok = ops[0].results[0]
    view = ref.owner if isinstance(ref.owner, memref.ReinterpretCastOp) else None
    for index, axis, lanes in _checked_axes(op):
        axis_op, width = _constant(axis), _constant(lanes)
        ops += [axis_op, width]
        if view is not None:
            extent_ops, size = _flat_extent(view)
            position = arith.AddiOp(view.offsets[0], index)
            ops += [*extent_ops, position]
            index = position.result
        else:
            dim = memref.DimOp(ref, axis_op)
            dim.result.name_hint = "size"
            ops.append(dim)
            size = dim.result
        end = arith.AddiOp(index, width)
        # Unsigned: a negative index is a huge one. Both: index + lanes may wrap around.
        first, last = arith.CmpiOp(index, size, "ult"), arith.CmpiOp(end, size, "ule")
        both = arith.AndIOp(first, last)
        total = arith.AndIOp(ok, both)
        total.result.name_hint = "in_bounds"
        ops += [end, first, last, both, total]
        ok = total.result
    return ops, ok


def _zero(type_: Attribute) -> list[Operation]:
    """Ops whose last result is a zero of `type_` (a scalar or a vector of one)."""
    element = type_.element_type if isinstance(type_, VectorType) else type_
    scalar = arith.ConstantOp(IntegerAttr(0, element) if isinstance(element, IntegerType | IndexType)
                              else FloatAttr(0.0, element))  # type: ignore[arg-type]  # fmt: skip
    return [scalar, vector.BroadcastOp(scalar.result, type_)] if isinstance(type_, VectorType) else [scalar]


def _report(status: SSAValue, code: int, is_store: bool) -> list[Operation]:
    where, what = _constant(code, i64), _constant(int(is_store), i64)
    zero, one = _constant(0), _constant(1)
    return [where, what, zero, one, memref.StoreOp.get(where, status, [zero]), memref.StoreOp.get(what, status, [one])]


def _guard(op: Access, code: int, status: SSAValue) -> None:
    """Replace `op` by `if in-bounds { op } else { record the miss }`."""
    checks, ok = _in_bounds(op, _buffer(op))
    Rewriter.insert_op(checks, InsertPoint.before(op))
    is_load = isinstance(op, memref.LoadOp | vector.LoadOp)
    result_types = [op.results[0].type] if is_load else []
    miss = _report(status, code, not is_load)
    if is_load:
        zero = _zero(result_types[0])
        miss += [*zero, scf.YieldOp(zero[-1].results[0])]
    else:
        miss.append(scf.YieldOp())
    guarded = scf.IfOp(ok, result_types, [Block()], [Block(miss)])
    Rewriter.insert_op(guarded, InsertPoint.before(op))
    for old, new in zip(op.results, guarded.results):
        old.replace_all_uses_with(new)
    op.detach()
    guarded.true_region.block.add_ops([op, scf.YieldOp(*op.results)])


def _check_kernel(fn: func.FuncOp) -> None:
    unchecked = next((op for op in fn.walk() if isinstance(op, UNCHECKED)), None)
    if unchecked is not None:
        raise DiagnosticException(f"check-bounds: {unchecked.name} is not supported (in @{fn.sym_name.data})")
    codes = {op: _buffer_code(fn, op) for op in fn.walk() if isinstance(op, Access)}
    _add_extents(fn)
    status = _add_arg(fn, STATUS_TYPE, {"tdsl.status": StringAttr("bounds")}, "status")
    for op, code in codes.items():
        _guard(op, code, status)


@dataclass(frozen=True)
class CheckBounds(ModulePass):
    name = "check-bounds"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if isinstance(fn, func.FuncOp) and fn.body.blocks:
                _check_kernel(fn)
