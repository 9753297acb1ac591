"""lower-memory-to-ptr: memref and vector loads and stores, views and casts become
pointer arithmetic on the ptr dialect; with `signatures=true`, memref arguments,
results and calls become pointers instead.

xDSL's convert-memref-to-ptr and convert-vector-to-ptr patterns, unchanged, in one
sweep that visits only the ops they rewrite (codegen/apply_once.py). xDSL's passes
walk the whole module once each, twice where they rewrite (the walker's fixpoint),
and `convert-memref-to-ptr{lower_func=true}` walks for the accesses again before its
signatures: four sweeps of every op for what touches one op in ten.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, memref, vector
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.transforms import convert_memref_to_ptr as memref_to_ptr
from xdsl.transforms import convert_vector_to_ptr as vector_to_ptr

from stoicc_py.codegen.apply_once import apply_once


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
        apply_once(op, {memref.StoreOp: memref_to_ptr.ConvertStorePattern(),
                        memref.LoadOp: memref_to_ptr.ConvertLoadPattern(),
                        memref.SubviewOp: memref_to_ptr.ConvertSubviewPattern(),
                        memref.CastOp: memref_to_ptr.ConvertCastOp(),
                        memref.ReinterpretCastOp: memref_to_ptr.ConvertReinterpretCastOp(),
                        vector.StoreOp: vector_to_ptr.VectorStoreToPtr(),
                        vector.LoadOp: vector_to_ptr.VectorLoadToPtr()})  # fmt: skip
