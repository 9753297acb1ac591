"""lower-memory-to-ptr: memref and vector loads and stores, views and casts become
pointer arithmetic on the ptr dialect; with `signatures=true`, memref arguments,
results and calls become pointers instead.

An access becomes `ptradd(to_ptr(m), (sum_i index_i * stride_i) * type_offset)`, the
ops of xDSL's convert-memref-to-ptr and convert-vector-to-ptr, but each memref's
pointer, strides (memref.dim ops for a dynamic shape) and element size are built once,
after the memref's definition, and shared by its accesses: xDSL's patterns build them
again for every access (seven to ten ops each, of which cse-pure kept three or four),
the largest pass of a compile. Views and casts keep xDSL's patterns. One sweep visits
only the ops it rewrites (codegen/apply_once.py).
"""

from dataclasses import dataclass, field

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, func, memref, ptr, vector
from xdsl.dialects.builtin import IndexType, MemRefType, ModuleOp
from xdsl.ir import Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern
from xdsl.rewriter import InsertPoint
from xdsl.transforms import convert_memref_to_ptr as memref_to_ptr

from stoicc_py.codegen.apply_once import apply_once

Access = memref.LoadOp | memref.StoreOp | vector.LoadOp | vector.StoreOp


@dataclass
class _Base:
    """A memref's pointer, strides (1, or a value) and element size in bytes."""

    pointer: SSAValue
    strides: list[int | SSAValue]
    size: SSAValue


@dataclass
class LowerAccesses(RewritePattern):
    """Loads and stores of memrefs and vectors through each memref's shared _Base."""

    bases: dict[SSAValue, _Base] = field(default_factory=dict)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        assert isinstance(op, Access)
        buf = op.base if isinstance(op, vector.LoadOp | vector.StoreOp) else op.memref
        base = self.bases.get(buf) or self._base(buf)
        offset: SSAValue | None = None
        for index, stride in zip(op.indices, base.strides, strict=True):
            term = rewriter.insert(arith.MuliOp(index, stride)).result if isinstance(stride, SSAValue) else index
            offset = term if offset is None else rewriter.insert(arith.AddiOp(offset, term)).result
        address = base.pointer
        if offset is not None:
            address = rewriter.insert(ptr.PtrAddOp(address, rewriter.insert(arith.MuliOp(offset, base.size)).result)).result
        match op:
            case memref.LoadOp() | vector.LoadOp():
                rewriter.replace(op, ptr.LoadOp(address, op.results[0].type))
            case memref.StoreOp():
                rewriter.replace(op, ptr.StoreOp(address, op.value))
            case vector.StoreOp():
                rewriter.replace(op, ptr.StoreOp(address, op.vector))

    def _base(self, buf: SSAValue) -> _Base:
        memref_type = buf.type
        assert isinstance(memref_type, MemRefType)
        if isinstance(buf, BlockArgument):
            assert isinstance(buf.owner, Block)
            builder = Builder(InsertPoint.at_start(buf.owner))
        else:
            builder = Builder(InsertPoint.after(buf.owner))  # type: ignore[arg-type]
        pointer = builder.insert(ptr.ToPtrOp(buf)).res
        strides = [s if isinstance(s, SSAValue) or s == 1 else builder.insert(arith.ConstantOp.from_int_and_width(s, IndexType())).result
                   for s in memref_to_ptr.get_strides(buf, memref_type, builder)]  # fmt: skip
        size = builder.insert(ptr.TypeOffsetOp(memref_type.element_type, IndexType())).offset
        self.bases[buf] = _Base(pointer, strides, size)
        return self.bases[buf]


@dataclass(frozen=True)
class LowerMemoryToPtr(ModulePass):
    name = "lower-memory-to-ptr"

    signatures: bool = False
    """Lower function signatures, returns and calls (after every access is lowered)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.signatures:
            apply_once(op, {func.FuncOp: memref_to_ptr.LowerMemRefFuncOpPattern(),
                            func.CallOp: memref_to_ptr.LowerMemRefFuncCallPattern(),
                            func.ReturnOp: memref_to_ptr.LowerMemRefFuncReturnPattern()})  # fmt: skip
            return
        accesses = LowerAccesses()
        apply_once(op, {memref.StoreOp: accesses, memref.LoadOp: accesses, vector.StoreOp: accesses,
                        vector.LoadOp: accesses,
                        memref.SubviewOp: memref_to_ptr.ConvertSubviewPattern(),
                        memref.CastOp: memref_to_ptr.ConvertCastOp(),
                        memref.ReinterpretCastOp: memref_to_ptr.ConvertReinterpretCastOp()})  # fmt: skip
