"""metadata-layout: decide the physical buffers of every non-dense parameter.

Each sparse or quantized parameter gets a `tdsl.storage` argument attribute, and
each `tdsl.quantize` a `storage` attribute:
the buffers (values, indices, row pointers, tile tables) with their element types,
shapes and encoding parameters, as its layout attribute derives them for this
target. Bufferization turns exactly these buffers into kernel arguments, and the
runtime packer fills exactly these buffers: one description, read by both.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DYNAMIC_INDEX, ArrayAttr, DictionaryAttr, ModuleOp, StringAttr
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.utils.exceptions import VerifyException

from stoicc_py.diagnostics import op_error
from stoicc_py.dialects.tdsl import QuantizeOp, TensorType

STORAGE = "tdsl.storage"


def param_name(fn: func.FuncOp, index: int) -> str:
    attrs = fn.arg_attrs.data[index].data if fn.arg_attrs else {}
    name = attrs.get("tdsl.name")
    return name.data if isinstance(name, StringAttr) else f"arg{index}"


@dataclass
class RecordStorage(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, fn: func.FuncOp, rewriter: PatternRewriter, /):
        old = list(fn.arg_attrs.data) if fn.arg_attrs else [DictionaryAttr({})] * len(fn.args)
        new = list(old)
        for i, t in enumerate(fn.function_type.inputs):
            if not isinstance(t, TensorType) or t.layout.is_dense or STORAGE in old[i].data:
                continue
            name = param_name(fn, i)
            if not all(isinstance(d, int) for d in t.dims):
                raise op_error(
                    fn, f"parameter '{name}' has layout {t.layout.summary()}, which needs static dims, got {t}"
                )
            try:
                storage = t.layout.storage([int(d) for d in t.dims], t.element_type)
            except VerifyException as err:
                raise op_error(fn, f"parameter '{name}': {err}") from None
            new[i] = DictionaryAttr({**old[i].data, STORAGE: storage})
        if new != old:
            fn.arg_attrs = ArrayAttr(new)
            rewriter.handle_operation_modification(fn)


@dataclass
class RecordQuantizeStorage(RewritePattern):
    """The storage of a value quantized at run time; its leading dim may be a symbol."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: QuantizeOp, rewriter: PatternRewriter, /):
        if op.storage is not None or op.result is None:
            return
        t = op.result.type
        if not isinstance(t.dims[-1], int):
            raise op_error(op, f"quantize needs a static last dimension, got {t}")
        dims = [d if isinstance(d, int) else DYNAMIC_INDEX for d in t.dims]
        op.attributes["storage"] = t.layout.storage(dims, t.element_type)
        rewriter.handle_operation_modification(op)


@dataclass(frozen=True)
class MetadataLayout(ModulePass):
    name = "metadata-layout"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier([RecordStorage(), RecordQuantizeStorage()])).rewrite_module(op)
