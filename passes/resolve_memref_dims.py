"""resolve-memref-dims: replace `memref.dim` by the value that defines that size.

A kernel's dynamic sizes are its symbol arguments (bufferization records which
symbol each buffer dim is in the `tdsl.dims` argument attribute); an allocation's
are its operands. Once buffers become raw pointers nothing else can answer
`memref.dim`, so this runs after lower-memory-to-ptr has emitted its stride
computations and before functions lose their memref arguments.
"""

from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import ArrayAttr, IndexType, IntAttr, IntegerAttr, MemRefType, ModuleOp, StringAttr
from xdsl.ir import BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern, op_type_rewrite_pattern
from xdsl.rewriter import InsertPoint

from stoicc_py import dims
from stoicc_py.codegen.apply_once import apply_once
from stoicc_py.codegen.loop_builder import LoopBuilder, symbol_args


def _arg_size(arg: BlockArgument, axis: int, at: Operation) -> int | SSAValue | None:
    """The size of an argument's axis: static, a symbol argument, or an expression of
    them (computed before `at`)."""
    fn = arg.block.parent_op()
    if not isinstance(fn, func.FuncOp) or fn.arg_attrs is None:
        return None
    shape = fn.arg_attrs.data[arg.index].data.get("tdsl.dims")
    if not isinstance(shape, ArrayAttr):
        return None
    dim = shape.data[axis]
    if isinstance(dim, IntAttr):
        return dim.data if dim.data >= 0 else None  # a length that the packed data decides
    assert isinstance(dim, StringAttr)
    symbols = symbol_args(fn)
    if any(s not in symbols for s in dims.symbols(dim.data)):
        return None
    return LoopBuilder(Builder(InsertPoint.before(at))).dim(dim.data, symbols)


def _alloc_size(alloc: memref.AllocOp, axis: int) -> int | SSAValue:
    shape = alloc.memref.type.get_shape()
    if shape[axis] >= 0:
        return shape[axis]
    return alloc.dynamic_sizes[sum(1 for s in shape[:axis] if s < 0)]


@dataclass
class ResolveDim(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: memref.DimOp, rewriter: PatternRewriter, /):
        index = op.index.owner
        if not isinstance(index, arith.ConstantOp) or not isinstance(index.value, IntegerAttr):
            return
        axis = index.value.value.data
        source = op.source
        assert isinstance(source.type, MemRefType)
        static = source.type.get_shape()[axis]
        size: int | SSAValue | None = static if static >= 0 else None
        if size is None and isinstance(source, BlockArgument):
            size = _arg_size(source, axis, op)
        elif size is None and isinstance(source.owner, memref.AllocOp):
            size = _alloc_size(source.owner, axis)
        if size is None:
            return
        if isinstance(size, int):
            rewriter.replace(op, arith.ConstantOp(IntegerAttr(size, IndexType())))
        else:
            rewriter.replace(op, (), (size,))


@dataclass(frozen=True)
class ResolveMemrefDims(ModulePass):
    name = "resolve-memref-dims"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        apply_once(op, {memref.DimOp: ResolveDim()})
