"""Lowers `memref.alloc` / `memref.dealloc` to C's `aligned_alloc` / `free`.

The calls are emitted as `func.call` to `func.func` declarations, which
backends/llvm/translate.py declares with the rest of the module. Runs before
lower-memory-to-ptr{signatures=true}, which only sees the `ptr_xdsl.from_ptr` / `ptr_xdsl.to_ptr`
casts this pass leaves between the returned pointer and the memref.
"""

from dataclasses import dataclass
from math import prod

from xdsl.context import Context
from xdsl.dialects import arith, func, memref, ptr
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    FixedBitwidthType,
    IndexType,
    MemRefType,
    ModuleOp,
    NoneAttr,
    i64,
)
from xdsl.ir import Attribute, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.codegen.apply_once import apply_once
from stoicc_py.passes.mangle_symbols import needs_declaration

ALLOC_FN = "aligned_alloc"
_FREE_FN = "free"

# C signatures: void *aligned_alloc(size_t alignment, size_t size); void free(void *).
_RUNTIME_SIGNATURES: dict[str, tuple[tuple[Attribute, ...], tuple[Attribute, ...]]] = {
    ALLOC_FN: ((i64, i64), (ptr.PtrType(),)),
    _FREE_FN: ((ptr.PtrType(),), ()),
}


def _byte_size(op: memref.AllocOp, alignment: int, rewriter: PatternRewriter) -> SSAValue:
    """Inserts the computation of the allocation size in bytes, rounded up to
    `alignment` because aligned_alloc requires a multiple of it."""
    memref_type = op.memref.type
    element_type = memref_type.element_type
    if not isinstance(memref_type.layout, NoneAttr) or not isinstance(element_type, FixedBitwidthType):
        raise DiagnosticException(f"lower-alloc: cannot size {memref_type}")
    static_dims = (d for d in memref_type.get_shape() if d != DYNAMIC_INDEX)
    static_bytes = element_type.size * prod(static_dims)

    if not op.dynamic_sizes:
        rounded = -(-static_bytes // alignment) * alignment
        return rewriter.insert(arith.ConstantOp.from_int_and_width(rounded, i64)).result

    size: SSAValue = rewriter.insert(arith.ConstantOp.from_int_and_width(static_bytes, IndexType())).result
    for dim in op.dynamic_sizes:
        size = rewriter.insert(arith.MuliOp(size, dim)).result
    bump = rewriter.insert(arith.ConstantOp.from_int_and_width(alignment - 1, IndexType()))
    mask = rewriter.insert(arith.ConstantOp.from_int_and_width(-alignment, IndexType()))
    size = rewriter.insert(arith.AddiOp(size, bump)).result
    size = rewriter.insert(arith.AndIOp(size, mask)).result
    return rewriter.insert(arith.IndexCastOp(size, i64)).result


@dataclass(frozen=True)
class LowerAllocOp(RewritePattern):
    alignment: int

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: memref.AllocOp, rewriter: PatternRewriter, /) -> None:
        alignment = max(self.alignment, op.alignment.value.data if op.alignment else 1)
        size = _byte_size(op, alignment, rewriter)
        align = rewriter.insert(arith.ConstantOp.from_int_and_width(alignment, i64))
        call = rewriter.insert(func.CallOp(ALLOC_FN, [align.result, size], [ptr.PtrType()]))
        rewriter.replace(op, ptr.FromPtrOp(call.res[0], op.memref.type))


class LowerDeallocOp(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: memref.DeallocOp, rewriter: PatternRewriter, /) -> None:
        if not isinstance(op.memref.type, MemRefType):
            raise DiagnosticException("lower-alloc: cannot free an unranked memref")
        to_ptr = rewriter.insert(ptr.ToPtrOp(op.memref))
        rewriter.replace(op, func.CallOp(_FREE_FN, [to_ptr.res], []))


def _declare_used_runtime_functions(module: ModuleOp) -> None:
    called = {o.callee.string_value() for o in module.walk() if isinstance(o, func.CallOp)}
    for name, (inputs, outputs) in _RUNTIME_SIGNATURES.items():
        if name in called and needs_declaration(module, name, LowerAlloc.name):
            module.body.block.add_op(func.FuncOp.external(name, inputs, outputs))


@dataclass(frozen=True)
class LowerAlloc(ModulePass):
    name = "lower-alloc"

    alignment: int = 64
    """Minimum alignment in bytes; 64 matches a cache line and an AVX-512 vector."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        apply_once(op, {memref.AllocOp: LowerAllocOp(self.alignment), memref.DeallocOp: LowerDeallocOp()})
        _declare_used_runtime_functions(op)
