"""lower-ptr-to-llvm: xDSL's convert-ptr-to-llvm (the same patterns), with
ReplaceTypes instead of its recursive type conversion, which took seconds on
vectorised kernels; the element sizes (`ptr_xdsl.type_offset`) that convert-ptradd-to-gep
left become constants in the same walk (xDSL's convert-ptr-type-offsets pattern)."""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import llvm, ptr
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Attribute
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import GreedyRewritePatternApplier, PatternRewriteWalker
from xdsl.transforms import convert_ptr_to_llvm as xdsl_ptr
from xdsl.transforms.convert_ptr_type_offsets import ConvertTypeOffsetOp

from stoicc_py.codegen.replace_types import ReplaceTypes


class PtrToLLVMPtr(ReplaceTypes):
    def leaf(self, attr: Attribute) -> Attribute | None:
        return llvm.LLVMPointerType() if isinstance(attr, ptr.PtrType) else None


@dataclass(frozen=True)
class LowerPtrToLLVM(ModulePass):
    name = "lower-ptr-to-llvm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        patterns = [xdsl_ptr.ConvertStoreOp(), xdsl_ptr.ConvertLoadOp(), xdsl_ptr.ConvertPtrAddOp(),
                    xdsl_ptr.ConvertToPtrOp(), xdsl_ptr.ConvertFromPtrOp(), ConvertTypeOffsetOp(), PtrToLLVMPtr()]  # fmt: skip
        PatternRewriteWalker(GreedyRewritePatternApplier(patterns), apply_recursively=False).rewrite_module(op)
