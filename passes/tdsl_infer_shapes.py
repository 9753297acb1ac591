"""tdsl-infer-shapes: specialise size symbols and re-derive every result type.

`tdsl-infer-shapes{bind="M=16"}` turns the symbol M into the static size 16 in the
kernel's parameter types (and in dim expressions, M+T becoming T+16, and the dims
that reshape and slices name) (a kernel specialised for one batch size gets static loop
bounds); every tdsl result type is then re-inferred from its operands in program
order, with the op's own `infer`, and the signature follows what is returned.
Without `bind` it re-checks a module whose types a rewrite may have left stale.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from stoicc_py import dims
from stoicc_py.diagnostics import op_error
from stoicc_py.dialects.tdsl import IotaOp, ReshapeOp, SliceOp, TdslOp, TensorType, dims_attr


def _bound(t: TensorType, sizes: dict[str, int]) -> TensorType:
    return TensorType([dims.bind(d, sizes) for d in t.dims], t.element_type, t.layout)


def _bind_attributes(op: TdslOp, sizes: dict[str, int]) -> None:
    """Bind the symbols in the dims an op names (reshape's and iota's shape, a slice's bounds)."""
    if not isinstance(op, ReshapeOp | SliceOp | IotaOp):
        return
    for name in ("shape", "starts", "stops"):
        attr = op.attributes.get(name)
        if isinstance(attr, ArrayAttr):
            op.attributes[name] = dims_attr([dims.bind(d.data, sizes) for d in attr.data])


@dataclass
class InferFunc(RewritePattern):
    sizes: dict[str, int]

    @op_type_rewrite_pattern
    def match_and_rewrite(self, fn: func.FuncOp, rewriter: PatternRewriter, /):
        for arg in fn.args:
            if isinstance(arg.type, TensorType) and (new := _bound(arg.type, self.sizes)) != arg.type:
                rewriter.replace_value_with_new_type(arg, new)
        for op in fn.walk():
            if not isinstance(op, TdslOp) or op.is_bufferized:
                continue
            if self.sizes:
                _bind_attributes(op, self.sizes)
            try:
                expected = op.infer([o.type for o in op.tensor_operands()], op.attributes)  # type: ignore[misc]
            except VerifyException as err:
                raise op_error(op, str(err)) from None
            if op.results[0].type != expected:
                rewriter.replace_value_with_new_type(op.results[0], expected)
        ret = fn.get_return_op()
        if ret is not None and (list(fn.function_type.inputs) != [a.type for a in fn.args]
                                or list(fn.function_type.outputs) != list(ret.operand_types)):  # fmt: skip
            fn.update_function_type()
            rewriter.handle_operation_modification(fn)


def parse_bindings(bind: tuple[str, ...]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for item in bind:
        name, _, size = item.partition("=")
        if not name.isidentifier() or not size.isdigit() or int(size) <= 0:
            raise DiagnosticException(f"tdsl-infer-shapes: bind expects SYMBOL=SIZE with a positive size, got '{item}'")
        sizes[name] = int(size)
    return sizes


@dataclass(frozen=True)
class InferShapes(ModulePass):
    name = "tdsl-infer-shapes"

    bind: tuple[str, ...] = ()

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(InferFunc(parse_bindings(self.bind)), apply_recursively=False).rewrite_module(op)
