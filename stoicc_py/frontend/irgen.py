"""Syntax tree to `tdsl` IR: one func.func per kernel, every op typed and located.

Shapes are checked here, with the ops' own `infer` functions, so that a user sees a
shape error at the expression that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.builder import Builder
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.rewriter import InsertPoint
from xdsl.utils.exceptions import VerifyException

from stoicc_py.diagnostics import CompileError, SourceLoc
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import DENSE, LayoutAttr, QuantLayoutAttr
from stoicc_py.dialects.tdsl import DTYPES, TensorType
from stoicc_py.frontend import ast
from stoicc_py.frontend.layouts import build_layout
from stoicc_py.limits import too_large

_AXIS_OPS: dict[str, type[tdsl.AxisOp]] = {"sum": tdsl.SumOp, "max": tdsl.MaxOp, "softmax": tdsl.SoftmaxOp}
_KNOWN_FUNCS = ("matmul", "linear", "transpose", "quantize", "dequantize", *_AXIS_OPS, *tdsl.UNARY_OPS)


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
    def __init__(self, kernel: ast.Kernel, layouts: dict[str, LayoutAttr]):
        self.kernel = kernel
        self.layouts = layouts
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
        op.location = loc.attr()
        self.builder.insert(op)
        return op.results[0]

    def expr(self, e: ast.Expr) -> SSAValue:
        match e:
            case ast.Var(name=name):
                if name not in self.env:
                    raise CompileError(f"unknown name '{name}'", e.loc)
                return self.env[name]
            case ast.Number(value=value):
                op = self.builder.insert(tdsl.ConstantOp(value, TensorType([])))
                op.location = e.loc.attr()
                return op.results[0]
            case ast.Neg(operand=operand):
                return self.emit(tdsl.NegOp, [self.expr(operand), None], e.loc)
            case ast.BinOp(op="@", lhs=lhs, rhs=rhs):
                return self.emit(tdsl.MatmulOp, [self.expr(lhs), self.expr(rhs), None, None], e.loc)
            case ast.BinOp(op=op, lhs=lhs, rhs=rhs):
                return self.emit(tdsl.BINARY_OPS[op], [self.expr(lhs), self.expr(rhs), None], e.loc)
            case ast.Call():
                return self.call(e)
        raise CompileError(f"unsupported expression {type(e).__name__}", e.loc)

    def _arity(self, call: ast.Call, low: int, high: int, kwargs: tuple[str, ...] = ()) -> list[SSAValue]:
        for key in call.kwargs:
            if key not in kwargs:
                raise CompileError(f"{call.func}() has no keyword argument '{key}'", call.kwarg_locs[key])
        if not low <= len(call.args) <= high:
            count = str(low) if low == high else f"{low} to {high}"
            raise CompileError(f"{call.func}() takes {count} arguments, got {len(call.args)}", call.loc)
        return [self.expr(a) for a in call.args]

    def _axis(self, call: ast.Call, operand: SSAValue) -> int:
        if "axis" not in call.kwargs:
            raise CompileError(f"{call.func}() needs an axis, e.g. {call.func}(a, axis=1)", call.loc)
        value = call.kwargs["axis"]
        axis = value.value if isinstance(value, ast.Number) else None
        if axis is None or axis != int(axis):
            raise CompileError("axis must be an integer literal", call.kwarg_locs["axis"])
        assert isinstance(operand.type, TensorType)
        rank = operand.type.rank
        if not -rank <= axis < rank:
            raise CompileError(f"axis={int(axis)} is out of range for {operand.type}", call.kwarg_locs["axis"])
        return int(axis) % rank

    def call(self, call: ast.Call) -> SSAValue:
        name = call.func
        if name == "matmul":
            a, b = self._arity(call, 2, 2)
            return self.emit(tdsl.MatmulOp, [a, b, None, None], call.loc)
        if name == "linear":
            x, w, *bias = self._arity(call, 2, 3)
            return self.emit(tdsl.LinearOp, [x, w, bias[0] if bias else None, None], call.loc)
        if name == "transpose":
            (a,) = self._arity(call, 1, 1)
            return self.emit(tdsl.TransposeOp, [a, None], call.loc)
        if name in _AXIS_OPS:
            (a,) = self._arity(call, 1, 1, ("axis",))
            axis = IntegerAttr(self._axis(call, a), i64)
            return self.emit(_AXIS_OPS[name], [a, None], call.loc, {"axis": axis})
        if name == "quantize":
            return self.quantize(call)
        if name == "dequantize":
            (a,) = self._arity(call, 1, 1)
            return self.emit(tdsl.DequantizeOp, [a, None], call.loc)
        if name in tdsl.UNARY_OPS:
            (a,) = self._arity(call, 1, 1)
            return self.emit(tdsl.UNARY_OPS[name], [a, None], call.loc)
        raise CompileError(f"unknown function '{name}' (known: {', '.join(_KNOWN_FUNCS)})", call.loc)

    def quantize(self, call: ast.Call) -> SSAValue:
        if len(call.args) != 2 or call.kwargs:
            raise CompileError("quantize() takes a tensor and a layout, e.g. quantize(x, int8(per=token))", call.loc)
        x = self.expr(call.args[0])
        layout = build_layout(ast.LayoutExpr([_layout_term(call.args[1])], call.args[1].loc), self.layouts)
        return self.emit(tdsl.QuantizeOp, [x, None], call.loc, {"layout": layout})

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
            if value.type.dims != expected.dims or value.type.element_type != expected.element_type:
                raise CompileError(
                    f"returned value has type {value.type}, but the kernel declares {expected}", expr.loc
                )
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
    """Generate the `tdsl` IR of every kernel; raises CompileError."""
    try:
        layouts: dict[str, LayoutAttr] = {}
        for decl in module.layouts:
            if decl.name in layouts:
                raise CompileError(f"layout '{decl.name}' is declared twice", decl.loc)
            layouts[decl.name] = build_layout(decl.layout, layouts)
        funcs: list[func.FuncOp] = []
        names: set[str] = set()
        for kernel in module.kernels:
            if kernel.name in names:
                raise CompileError(f"kernel '{kernel.name}' is defined twice", kernel.loc)
            names.add(kernel.name)
            funcs.append(_KernelGen(kernel, layouts).build())
    except CompileError as err:
        raise err.with_source(module.source) from None
    return ModuleOp(funcs)
