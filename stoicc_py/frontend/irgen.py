"""Syntax tree to `tdsl` IR: one func.func per kernel, every op typed and located.

Shapes are checked here, with the ops' own `infer` functions, so that a user sees a
shape error at the expression that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.builder import Builder
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    IntAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    UnitAttr,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint
from xdsl.utils.exceptions import VerifyException

from stoicc_py.diagnostics import CompileError, SourceLoc
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import DENSE, Dim, LayoutAttr, QuantLayoutAttr
from stoicc_py.dialects.tdsl import DTYPES, TensorType
from stoicc_py.frontend import ast
from stoicc_py.frontend.layouts import build_layout
from stoicc_py.limits import MAX_OPERATIONS, too_large

_REDUCE_OPS: dict[str, type[tdsl.ReduceOp]] = {"sum": tdsl.SumOp, "max": tdsl.MaxOp, "mean": tdsl.MeanOp}
_AXIS_OPS: dict[str, type[tdsl.AxisOp]] = {**_REDUCE_OPS, "softmax": tdsl.SoftmaxOp}
_ONE_INPUT_OPS: dict[str, type[tdsl.OneInputOp]] = {
    "transpose": tdsl.TransposeOp, "dequantize": tdsl.DequantizeOp, **tdsl.UNARY_OPS,
}  # fmt: skip
# (fewest arguments, most arguments, keyword arguments) of every function but quantize
_SIGNATURES: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "matmul": (2, 2, ()), "linear": (2, 3, ()), **{name: (1, 1, ()) for name in _ONE_INPUT_OPS},
    **{name: (1, 1, ("axis",)) for name in _AXIS_OPS}, **{name: (1, 1, ("axis", "keepdims")) for name in _REDUCE_OPS},
    "where": (3, 3, ()), "iota": (1, 1, ("axis",)),
}  # fmt: skip
_KNOWN_FUNCS = (
    "matmul", "linear", "transpose", "quantize", "dequantize", "cast", *_AXIS_OPS, *tdsl.UNARY_OPS, "where", "iota",
)  # fmt: skip
_BOOLEANS = {"true": True, "false": False}
"""The values of a boolean keyword argument (`keepdims=true`)."""


def _layout_term(e: ast.Expr) -> ast.LayoutTerm:
    """A layout written as a call argument (`int8(per=token)`) as a layout term."""

    def value(v: ast.Expr) -> object:
        if isinstance(v, ast.Number):
            return int(v.value) if v.value == int(v.value) else v.value
        return _layout_term(v)

    match e:
        case ast.Var(name=name):
            return ast.LayoutTerm(name, [], {}, e.loc)
        case ast.Call(func=func, args=args, kwargs=kwargs):
            return ast.LayoutTerm(func, [value(a) for a in args], {k: value(v) for k, v in kwargs.items()}, e.loc, True)
    raise CompileError("expected a layout here, e.g. int8(per=token)", e.loc)


def tensor_type(spec: ast.TypeSpec, layout: LayoutAttr = DENSE) -> TensorType:
    if spec.dtype not in DTYPES:
        raise CompileError(f"unknown dtype '{spec.dtype}' (expected one of {', '.join(DTYPES)})", spec.loc)
    for d in spec.dims:
        if isinstance(d, int) and d <= 0:
            raise CompileError(f"dimension sizes must be positive, got {d}", spec.loc)
    check_static_size(spec.dims, spec.loc)
    try:
        return TensorType(spec.dims, DTYPES[spec.dtype], layout)
    except VerifyException as err:
        raise CompileError(f"{err} (in type {spec.dtype}[{', '.join(map(str, spec.dims))}])", spec.loc) from None


def check_static_size(dims: Sequence[int | str], loc: SourceLoc) -> None:
    """Refuse a type whose static dims alone exceed the size limit (stoicc_py.limits)."""
    reason = too_large(d for d in dims if isinstance(d, int))
    if reason is not None:
        raise CompileError(f"tensor too large: {reason}", loc)


class _KernelGen:
    def __init__(self, kernel: ast.Kernel, layouts: dict[str, LayoutAttr], ops: int):
        self.kernel = kernel
        self.layouts = layouts
        self.ops = ops  # in the file so far, this kernel's included
        arg_types = []
        for p in kernel.params:
            layout = build_layout(p.layout, layouts) if p.layout else DENSE
            arg_types.append(tensor_type(p.type, layout))
        self.result_types = [tensor_type(r) for r in kernel.results]
        self.block = Block(arg_types=arg_types)
        self.builder = Builder(InsertPoint.at_end(self.block))
        self.env: dict[str, SSAValue] = {}
        for p, arg in zip(kernel.params, self.block.args):
            if p.name in self.env:
                raise CompileError(f"parameter '{p.name}' is declared twice", p.loc)
            arg.name_hint = p.name
            self.env[p.name] = arg

    def dense(self, value: SSAValue, loc: SourceLoc) -> SSAValue:
        """A quantized value read as numbers goes through an explicit dequantize, which
        tdsl-fuse-dequant later folds into the product that reads it."""
        if isinstance(value.type, TensorType) and isinstance(value.type.layout, QuantLayoutAttr):
            return self.emit(tdsl.DequantizeOp, [value, None], loc)
        return value

    def emit(self, op_cls: type[tdsl.TdslOp], operands: Sequence[SSAValue | None], loc: SourceLoc,
             attributes: dict[str, Attribute] | None = None) -> SSAValue:  # fmt: skip
        attributes = attributes or {}
        if op_cls is not tdsl.DequantizeOp:
            operands = [self.dense(o, loc) if o is not None else None for o in operands]
        types = [o.type for o in operands if o is not None]
        assert all(isinstance(t, TensorType) for t in types)
        try:
            result_type = op_cls.infer(types, attributes)  # type: ignore[arg-type]
        except VerifyException as err:
            raise CompileError(str(err), loc) from None
        check_static_size(result_type.dims, loc)
        op = op_cls.build(
            operands=[[o] if o is not None else [] for o in operands],
            result_types=[[result_type]],
            attributes=attributes,
        )
        return self.insert(op, loc).results[0]

    def insert(self, op: Operation, loc: SourceLoc) -> Operation:
        """Insert `op`, written at `loc`, within the file's limit of MAX_OPERATIONS."""
        if self.ops >= MAX_OPERATIONS:
            raise CompileError(
                f"the program is too long: more than the limit of {MAX_OPERATIONS} operations (operators, calls and "
                "numbers), which bounds the compiler's time", loc
            )  # fmt: skip
        self.ops += 1
        op.location = loc.attr()
        return self.builder.insert(op)

    def expr(self, root: ast.Expr) -> SSAValue:
        """The value of `root`, its operands emitted first, left to right. With an explicit
        stack, not recursion: `x + x + ... + x` is a tree as deep as the sum is long."""
        values: list[SSAValue] = []
        todo: list[tuple[ast.Expr, list[ast.Expr] | None]] = [(root, None)]
        while todo:
            e, operands = todo.pop()
            if operands is None:  # first visit: check the form, then evaluate its operands
                operands = self.operands(e)
                todo.append((e, operands))
                todo.extend((o, None) for o in reversed(operands))
                continue
            args = values[len(values) - len(operands) :]
            del values[len(values) - len(operands) :]
            values.append(self.apply(e, args))
        (value,) = values
        return value

    def operands(self, e: ast.Expr) -> list[ast.Expr]:
        """The subexpressions whose values `e` computes from, once its form is checked."""
        match e:
            case ast.Neg(operand=operand):
                return [operand]
            case ast.BinOp(lhs=lhs, rhs=rhs):
                return [lhs, rhs]
            case ast.Call():
                return self.call_operands(e)
        return []

    def apply(self, e: ast.Expr, args: list[SSAValue]) -> SSAValue:
        """The value of `e` from the values of its operands."""
        match e:
            case ast.Var(name=name):
                if name not in self.env:
                    return self.size_value(name, e.loc)
                return self.env[name]
            case ast.Number(value=value):
                return self.insert(tdsl.ConstantOp(value, TensorType([])), e.loc).results[0]
            case ast.Neg():
                return self.emit(tdsl.NegOp, [*args, None], e.loc)
            case ast.BinOp(op="@"):
                return self.emit(tdsl.MatmulOp, [*args, None, None], e.loc)
            case ast.BinOp(op=op) if op in tdsl.COMPARISONS:
                return self.emit(tdsl.COMPARISONS[op], [*args, None], e.loc)
            case ast.BinOp(op=op):
                return self.emit(tdsl.BINARY_OPS[op], [*args, None], e.loc)
            case ast.Call():
                return self.call(e, args)
            case ast.ListExpr():
                raise CompileError("a list [...] is not a value: it is the shape or permutation argument of a call", e.loc)
        raise CompileError(f"unsupported expression {type(e).__name__}", e.loc)

    def call_operands(self, call: ast.Call) -> list[ast.Expr]:
        """The tensor arguments of `call`, once its name, keywords and argument count are checked."""
        if call.func == "quantize":  # its second argument is a layout, not a value
            if len(call.args) != 2 or call.kwargs:
                raise CompileError(
                    "quantize() takes a tensor and a layout, e.g. quantize(x, int8(per=token))", call.loc
                )
            return call.args[:1]
        if call.func == "cast":  # its second argument is a dtype
            if len(call.args) != 2 or call.kwargs or not isinstance(call.args[1], ast.Var):
                raise CompileError(f"cast() takes a tensor and a dtype, e.g. cast(x, bf16) ({', '.join(DTYPES)})",
                                   call.loc)  # fmt: skip
            if call.args[1].name not in DTYPES:
                raise CompileError(f"unknown dtype '{call.args[1].name}' (expected one of {', '.join(DTYPES)})",
                                   call.args[1].loc)  # fmt: skip
            return call.args[:1]
        if call.func not in _SIGNATURES:
            raise CompileError(f"unknown function '{call.func}' (known: {', '.join(_KNOWN_FUNCS)})", call.loc)
        low, high, kwargs = _SIGNATURES[call.func]
        for key in call.kwargs:
            if key not in kwargs:
                raise CompileError(f"{call.func}() has no keyword argument '{key}'", call.kwarg_locs[key])
        if not low <= len(call.args) <= high:
            count = str(low) if low == high else f"{low} to {high}"
            raise CompileError(f"{call.func}() takes {count} arguments, got {len(call.args)}", call.loc)
        return [] if call.func == "iota" else call.args  # iota's argument is a shape, not a value

    def _axis(self, call: ast.Call, operand: TensorType) -> int:
        if "axis" not in call.kwargs:
            raise CompileError(f"{call.func}() needs an axis, e.g. {call.func}(a, axis=1)", call.loc)
        value = call.kwargs["axis"]
        axis = value.value if isinstance(value, ast.Number) else None
        if axis is None or axis != int(axis):
            raise CompileError("axis must be an integer literal", call.kwarg_locs["axis"])
        rank = operand.rank
        if not -rank <= axis < rank:
            raise CompileError(f"axis={int(axis)} is out of range for {operand}", call.kwarg_locs["axis"])
        return int(axis) % rank

    def _axis_attributes(self, call: ast.Call, operand: TensorType) -> dict[str, Attribute]:
        """`axis`, and `keepdims` where it is true: a literal `true` or `false`."""
        attributes: dict[str, Attribute] = {"axis": IntegerAttr(self._axis(call, operand), i64)}
        if "keepdims" in call.kwargs:
            value = call.kwargs["keepdims"]
            if not isinstance(value, ast.Var) or value.name not in _BOOLEANS:
                raise CompileError("keepdims must be true or false", call.kwarg_locs["keepdims"])
            if _BOOLEANS[value.name]:
                attributes["keepdims"] = UnitAttr()
        return attributes

    def size_value(self, name: str, loc: SourceLoc) -> SSAValue:
        """A size symbol used as a value (no value of that name is bound): a rank-0 i32
        tensor holding its size, read from the first dense parameter that has it."""
        for arg in self.block.args:
            assert isinstance(arg.type, TensorType)
            if name in arg.type.dims and arg.type.layout.is_dense:
                axis = IntegerAttr(arg.type.dims.index(name), i64)
                return self.emit(tdsl.DimOp, [arg, None], loc, {"axis": axis})
        raise CompileError(f"unknown name '{name}'", loc)

    def list_dim(self, e: ast.Expr) -> Dim:
        """One entry of a shape list `[...]` as a dim: a positive integer or a size symbol."""
        match e:
            case ast.Number(value=value) if value == int(value) and value > 0:
                return int(value)
            case ast.Var(name=name) if any(name in p.type.dims for p in self.kernel.params):
                return name
        raise CompileError("a shape entry must be a positive integer or a size symbol of a parameter", e.loc)

    def iota(self, call: ast.Call) -> SSAValue:
        shape = call.args[0]
        if not isinstance(shape, ast.ListExpr) or not shape.items:
            raise CompileError("iota() takes a shape, e.g. iota([T, S], axis=1)", shape.loc)
        dims = [self.list_dim(d) for d in shape.items]
        attributes: dict[str, Attribute] = {
            "shape": ArrayAttr(IntAttr(d) if isinstance(d, int) else StringAttr(d) for d in dims),
            "axis": IntegerAttr(self._axis(call, TensorType(dims, i32)), i64),
        }
        return self.emit(tdsl.IotaOp, [None], call.loc, attributes)

    def call(self, call: ast.Call, args: list[SSAValue]) -> SSAValue:
        """The value of a call whose form call_operands checked, from its arguments' values."""
        name = call.func
        if name == "matmul":
            return self.emit(tdsl.MatmulOp, [*args, None, None], call.loc)
        if name == "linear":
            x, w, *bias = args
            return self.emit(tdsl.LinearOp, [x, w, bias[0] if bias else None, None], call.loc)
        if name in _AXIS_OPS:
            operand = args[0].type
            assert isinstance(operand, TensorType)
            attributes: dict[str, Attribute] = (
                self._axis_attributes(call, operand) if name in _REDUCE_OPS
                else {"axis": IntegerAttr(self._axis(call, operand), i64)}
            )  # fmt: skip
            return self.emit(_AXIS_OPS[name], [args[0], None], call.loc, attributes)
        if name == "where":
            return self.emit(tdsl.WhereOp, [*args, None], call.loc)
        if name == "iota":
            return self.iota(call)
        if name == "quantize":
            layout = build_layout(ast.LayoutExpr([_layout_term(call.args[1])], call.args[1].loc), self.layouts)
            return self.emit(tdsl.QuantizeOp, [args[0], None], call.loc, {"layout": layout})
        if name == "cast":
            assert isinstance(call.args[1], ast.Var)
            return self.emit(tdsl.CastOp, [args[0], None], call.loc, {"to": DTYPES[call.args[1].name]})
        return self.emit(_ONE_INPUT_OPS[name], [args[0], None], call.loc)

    def ret(self, stmt: ast.Return) -> None:
        values = [self.dense(self.expr(v), v.loc) for v in stmt.values]
        if len(values) != len(self.result_types):
            raise CompileError(
                f"kernel '{self.kernel.name}' declares {len(self.result_types)} result"
                f"{'s' if len(self.result_types) != 1 else ''} but returns {len(values)}",
                stmt.loc,
            )
        for value, expected, expr in zip(values, self.result_types, stmt.values):
            assert isinstance(value.type, TensorType)
            values_type = value.type.with_dims(value.type.dims)  # dims and dtype, in the dense layout
            if values_type != expected:
                raise CompileError(
                    f"returned value has type {value.type}, but the kernel declares {expected}", expr.loc
                )
            if value.type != values_type:  # func.return's verifier compares the whole type
                raise CompileError(
                    f"returned value is stored in layout {value.type.layout.summary()}, but a kernel's results are "
                    "dense: a tensor in a sparse or packed layout is read by the ops that take it, e.g. as the "
                    "weight of linear(x, w)", expr.loc
                )  # fmt: skip
        op = self.builder.insert(func.ReturnOp(*values))
        op.location = stmt.loc.attr()

    def build(self) -> func.FuncOp:
        returned = False
        for stmt in self.kernel.body:
            if returned:
                raise CompileError("statement after return", stmt.loc)
            if isinstance(stmt, ast.Assign):
                self.env[stmt.name] = self.expr(stmt.value)
                self.env[stmt.name].name_hint = stmt.name
            else:
                self.ret(stmt)
                returned = True
        if not returned:
            raise CompileError(f"kernel '{self.kernel.name}' has no return statement", self.kernel.loc)
        fn = func.FuncOp(
            self.kernel.name,
            ([a.type for a in self.block.args], self.result_types),
            Region(self.block),
            arg_attrs=ArrayAttr(DictionaryAttr({"tdsl.name": StringAttr(p.name)}) for p in self.kernel.params),
        )
        fn.location = self.kernel.loc.attr()
        return fn


def irgen(module: ast.Module) -> ModuleOp:
    """Generate the `tdsl` IR of every kernel; raises CompileError, also for a file
    without a kernel (which would compile to nothing)."""
    try:
        layouts: dict[str, LayoutAttr] = {}
        for decl in module.layouts:
            if decl.name in layouts:
                raise CompileError(f"layout '{decl.name}' is declared twice", decl.loc)
            layouts[decl.name] = build_layout(decl.layout, layouts)
        if not module.kernels:
            raise CompileError("no kernel", SourceLoc(module.file, 1, 1))
        funcs: list[func.FuncOp] = []
        names: set[str] = set()
        ops = 0
        for kernel in module.kernels:
            if kernel.name in names:
                raise CompileError(f"kernel '{kernel.name}' is defined twice", kernel.loc)
            names.add(kernel.name)
            gen = _KernelGen(kernel, layouts, ops)
            funcs.append(gen.build())
            ops = gen.ops
    except CompileError as err:
        raise err.with_source(module.source) from None
    return ModuleOp(funcs)
