"""Syntax tree to `tdsl` IR: one func.func per kernel, every op typed and located.

Shapes are checked here, with the ops' own `infer` functions, so that a user sees a
shape error at the expression that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.builder import Builder
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    IntAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    UnitAttr,
    f32,
    i1,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue, TypeAttribute
from xdsl.rewriter import InsertPoint
from xdsl.utils.exceptions import VerifyException

from stoicc_py import dims
from stoicc_py.arrays import NUMPY_DTYPES
from stoicc_py.diagnostics import CompileError, SourceLoc
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import DENSE, LayoutAttr, QuantLayoutAttr
from stoicc_py.dialects.tdsl import DTYPES, Dim, TensorType, name_hint
from stoicc_py.frontend import ast
from stoicc_py.frontend.layouts import build_layout, check_parameter_layout
from stoicc_py.limits import MAX_OPERATIONS, too_large

_REDUCE_OPS: dict[str, type[tdsl.ReduceOp]] = {"sum": tdsl.SumOp, "max": tdsl.MaxOp, "mean": tdsl.MeanOp}
_AXIS_OPS: dict[str, type[tdsl.AxisOp]] = {**_REDUCE_OPS, "softmax": tdsl.SoftmaxOp}
_ONE_INPUT_OPS: dict[str, type[tdsl.OneInputOp]] = {"dequantize": tdsl.DequantizeOp, **tdsl.UNARY_OPS}
# (fewest arguments, most arguments, keyword arguments) of every function but quantize and cast
_SIGNATURES: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "matmul": (2, 2, ()), "linear": (2, 3, ()), **{name: (1, 1, ()) for name in _ONE_INPUT_OPS},
    **{name: (1, 1, ("axis",)) for name in _AXIS_OPS}, **{name: (1, 1, ("axis", "keepdims")) for name in _REDUCE_OPS},
    "where": (3, 3, ()), "iota": (1, 1, ("axis",)),
    "transpose": (1, 2, ()), "reshape": (2, 2, ()), "concat": (2, MAX_OPERATIONS, ("axis",)),
}  # fmt: skip
_KNOWN_FUNCS = (
    "matmul", "linear", "transpose", "reshape", "concat", "quantize", "dequantize", "cast", *_AXIS_OPS,
    *tdsl.UNARY_OPS, "where", "iota",
)  # fmt: skip
_BOOLEANS = {"true": True, "false": False}
"""The values of a boolean keyword argument (`keepdims=true`)."""
_LIST_ARGUMENT = {"transpose": "a permutation, e.g. [1, 0, 2]", "reshape": "a shape, e.g. [T, 9, 64]"}
"""The functions whose second argument is a list, not a tensor."""

Operand = SSAValue | ast.Number
"""A value, or a number literal not yet typed: it takes the dtype of what it meets."""
_HALF = ("bf16", "f16")
_INTEGER_RANGES: dict[str, tuple[int, int]] = {"i8": (-(2**7), 2**7 - 1), "i32": (-(2**31), 2**31 - 1)}


def _literal_value(number: ast.Number, dtype: str) -> float:
    """The literal as a value of `dtype`: a float rounded to nearest even (beyond the
    largest finite value to inf, as every bf16/f16 result); an integer exactly, or a
    located error where it is none or out of the integer's range."""
    if dtype in _HALF:
        with np.errstate(over="ignore"):
            return float(np.float64(number.value).astype(NUMPY_DTYPES[dtype]))
    if dtype not in _INTEGER_RANGES:
        return number.value
    low, high = _INTEGER_RANGES[dtype]
    if number.value != int(number.value) or not low <= number.value <= high:
        raise CompileError(
            f"the literal {number.value:g} meets an {dtype} tensor, whose dtype it takes, but is not an {dtype} "
            f"(an integer in {low}..{high}): write one, or cast the tensor, e.g. cast(x, f32)", number.loc
        )  # fmt: skip
    return int(number.value)


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


def _bound_symbols(kernel: ast.Kernel) -> list[str]:
    """The size symbols that the parameters bind (their plain-symbol dims); refuse a dim
    expression, in a parameter or a result, over a symbol that none binds."""
    bound = list(dict.fromkeys(d for p in kernel.params for d in p.type.dims if dims.is_symbol(d)))
    for spec in [p.type for p in kernel.params] + kernel.results:
        for d in spec.dims:
            unbound = [s for s in dims.symbols(d) if s not in bound]
            if unbound:
                raise CompileError(
                    f"size symbol {unbound[0]} in dim {d} is bound by no parameter (a parameter dim of just "
                    f"{unbound[0]} binds it)", spec.loc
                )  # fmt: skip
    return bound


class _KernelGen:
    def __init__(self, kernel: ast.Kernel, layouts: dict[str, LayoutAttr], ops: int):
        self.kernel = kernel
        self.layouts = layouts
        self.ops = ops  # in the file so far, this kernel's included
        arg_types = []
        for p in kernel.params:
            layout = build_layout(p.layout, layouts) if p.layout else DENSE
            if p.layout:
                check_parameter_layout(layout, p.layout.loc)
            arg_types.append(tensor_type(p.type, layout))
        self.symbols = _bound_symbols(kernel)
        self.result_types = [tensor_type(r) for r in kernel.results]
        self.block = Block(arg_types=arg_types)
        self.builder = Builder(InsertPoint.at_end(self.block))
        self.env: dict[str, Operand] = {}
        for p, arg in zip(kernel.params, self.block.args):
            if p.name in self.env:
                raise CompileError(f"parameter '{p.name}' is declared twice", p.loc)
            arg.name_hint = name_hint(p.name)
            self.env[p.name] = arg

    def dense(self, value: SSAValue, loc: SourceLoc) -> SSAValue:
        """A quantized value read as numbers goes through an explicit dequantize, which
        tdsl-fuse-dequant later folds into the product that reads it."""
        if isinstance(value.type, TensorType) and isinstance(value.type.layout, QuantLayoutAttr):
            return self.emit(tdsl.DequantizeOp, [value, None], loc)
        return value

    def emit(self, op_cls: type[tdsl.TdslOp], operands: Sequence[SSAValue | list[SSAValue] | None], loc: SourceLoc,
             attributes: dict[str, Attribute] | None = None) -> SSAValue:  # fmt: skip
        """Emit `op_cls` on `operands` (one per operand definition: a value, None for an
        absent optional one, a list for a variadic one), its result type inferred."""
        attributes = attributes or {}
        groups = [[] if o is None else o if isinstance(o, list) else [o] for o in operands]
        if op_cls is not tdsl.DequantizeOp:
            groups = [[self.dense(o, loc) for o in group] for group in groups]
        types = [o.type for group in groups for o in group]
        assert all(isinstance(t, TensorType) for t in types)
        try:
            result_type = op_cls.infer(types, attributes)  # type: ignore[arg-type]
        except VerifyException as err:
            raise CompileError(str(err), loc) from None
        check_static_size(result_type.dims, loc)
        op = op_cls.build(
            operands=groups,
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

    def expr(self, root: ast.Expr) -> Operand:
        """The value of `root`, its operands emitted first, left to right. With an explicit
        stack, not recursion: `x + x + ... + x` is a tree as deep as the sum is long."""
        values: list[Operand] = []
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
            case ast.Slice(base=base):
                return [base]
        return []

    def apply(self, e: ast.Expr, operands: list[Operand]) -> Operand:
        """The value of `e` from the values of its operands; a literal stays untyped
        (also through a name bound to it, and negation) until an op takes it."""
        match e:
            case ast.Var(name=name):
                if name not in self.env:
                    return self.size_value(name, e.loc)
                value = self.env[name]
                return ast.Number(e.loc, value.value) if isinstance(value, ast.Number) else value
            case ast.Number():
                return e
            case ast.Neg() if isinstance(operands[0], ast.Number):
                return ast.Number(e.loc, -operands[0].value)
        args = self.typed(e, operands)
        match e:
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
            case ast.Slice():
                return self.slice(e, args[0])
            case ast.ListExpr():
                raise CompileError("a list [...] is not a value: it is the shape or permutation argument of a call", e.loc)
        raise CompileError(f"unsupported expression {type(e).__name__}", e.loc)

    def typed(self, e: ast.Expr, operands: list[Operand]) -> list[SSAValue]:
        """The operands of `e` as values: a literal operand of an elementwise binary op, a
        comparison or `where`'s two choices takes the dtype of its partner (weak typing
        of scalars, as numpy 2 and JAX have it: `x_bf16 * 0.125` is bf16); any other
        literal, or two literals together, are f32."""
        partners: Sequence[int] = ()
        if isinstance(e, ast.BinOp) and e.op != "@":
            partners = (0, 1)
        elif isinstance(e, ast.Call) and e.func == "where":
            partners = (1, 2)
        types = [o.type for i, o in enumerate(operands) if i in partners and isinstance(o, SSAValue)]
        element = types[0].element_type if types and isinstance(types[0], TensorType) else f32
        return [self.literal(o, element if i in partners else f32) if isinstance(o, ast.Number) else o
                for i, o in enumerate(operands)]  # fmt: skip

    def literal(self, number: ast.Number, element: Attribute) -> SSAValue:
        """`number` as a rank-0 tensor of `element` (f32 where it meets a bool tensor,
        which has no arithmetic: the op that takes it says so)."""
        element = f32 if element == i1 else element
        assert isinstance(element, TypeAttribute)
        dtype = tdsl.DTYPE_NAMES[element]
        op = tdsl.ConstantOp(_literal_value(number, dtype), TensorType([], element))
        return self.insert(op, number.loc).results[0]

    def typed_operands(self, call: ast.Call) -> list[ast.Expr]:
        """The tensor of quantize(x, LAYOUT) or cast(x, DTYPE), whose second argument is no value."""
        if call.func == "quantize":
            if len(call.args) != 2 or call.kwargs:
                raise CompileError(
                    "quantize() takes a tensor and a layout, e.g. quantize(x, int8(per=token))", call.loc
                )
            return call.args[:1]
        if len(call.args) != 2 or call.kwargs or not isinstance(call.args[1], ast.Var):
            raise CompileError(f"cast() takes a tensor and a dtype, e.g. cast(x, bf16) ({', '.join(DTYPES)})",
                               call.loc)  # fmt: skip
        if call.args[1].name not in DTYPES:
            raise CompileError(f"unknown dtype '{call.args[1].name}' (expected one of {', '.join(DTYPES)})",
                               call.args[1].loc)  # fmt: skip
        return call.args[:1]

    def call_operands(self, call: ast.Call) -> list[ast.Expr]:
        """The tensor arguments of `call`, once its name, keywords and argument count are checked."""
        if call.func in ("quantize", "cast"):
            return self.typed_operands(call)
        if call.func not in _SIGNATURES:
            raise CompileError(f"unknown function '{call.func}' (known: {', '.join(_KNOWN_FUNCS)})", call.loc)
        low, high, kwargs = _SIGNATURES[call.func]
        for key in call.kwargs:
            if key not in kwargs:
                raise CompileError(f"{call.func}() has no keyword argument '{key}'", call.kwarg_locs[key])
        if not low <= len(call.args) <= high:
            count = str(low) if low == high else f"{low} or more" if high == MAX_OPERATIONS else f"{low} to {high}"
            raise CompileError(f"{call.func}() takes {count} arguments, got {len(call.args)}", call.loc)
        if call.func == "iota":  # its argument is a shape, not a value
            return []
        if call.func in _LIST_ARGUMENT:
            for extra in call.args[1:]:
                if not isinstance(extra, ast.ListExpr):
                    raise CompileError(f"{call.func}()'s second argument is {_LIST_ARGUMENT[call.func]}", extra.loc)
            return call.args[:1]
        return call.args

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

    def iota(self, call: ast.Call) -> SSAValue:
        shape = call.args[0]
        if not isinstance(shape, ast.ListExpr) or not shape.items:
            raise CompileError("iota() takes a shape, e.g. iota([T, S], axis=1)", shape.loc)
        sizes = [self.dim(d) for d in shape.items]
        for d, item in zip(sizes, shape.items):
            if isinstance(d, int) and d <= 0:
                raise CompileError(f"a shape entry must be positive, got {d}", item.loc)
        attributes: dict[str, Attribute] = {
            "shape": ArrayAttr(IntAttr(d) if isinstance(d, int) else StringAttr(d) for d in sizes),
            "axis": IntegerAttr(self._axis(call, TensorType(sizes, i32)), i64),
        }
        return self.emit(tdsl.IotaOp, [None], call.loc, attributes)

    def call(self, call: ast.Call, args: list[SSAValue]) -> SSAValue:
        """The value of a call whose form call_operands checked, from its arguments' values."""
        name = call.func
        if name == "matmul":
            return self.emit(tdsl.MatmulOp, [*args, None, None], call.loc)
        if name == "linear":
            x, w, *bias = args
            if isinstance(w.type, TensorType) and w.type.rank != 2:
                raise CompileError(f"linear expects a rank-2 weight [n, k], got {w.type}", call.args[1].loc)
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
        if name in ("transpose", "reshape", "concat"):
            return self.structure(call, args)
        if name == "quantize":
            layout = build_layout(ast.LayoutExpr([_layout_term(call.args[1])], call.args[1].loc), self.layouts)
            return self.emit(tdsl.QuantizeOp, [args[0], None], call.loc, {"layout": layout})
        if name == "cast":
            assert isinstance(call.args[1], ast.Var)
            return self.emit(tdsl.CastOp, [args[0], None], call.loc, {"to": DTYPES[call.args[1].name]})
        return self.emit(_ONE_INPUT_OPS[name], [args[0], None], call.loc)

    # --- structure: dims from expressions, transpose, reshape, concat, slices
    def dim(self, e: ast.Expr) -> Dim:
        """A dim written as an expression: an integer, a size symbol of the kernel's
        parameters, or a sum, difference or multiple of them (an affine expression)."""
        match e:
            case ast.Number(value=value) if value == int(value):
                return int(value)
            case ast.Var(name=name) if name in self.symbols:
                return name
            case ast.Var(name=name):
                bound = ", ".join(self.symbols) or "none"
                raise CompileError(f"'{name}' is not a size symbol of the parameters (they bind: {bound})", e.loc)
            case ast.Neg(operand=operand):
                return dims.scale(self.dim(operand), -1)
            case ast.BinOp(op="+" | "-" as op, lhs=lhs, rhs=rhs):
                return (dims.add if op == "+" else dims.sub)(self.dim(lhs), self.dim(rhs))
            case ast.BinOp(op="*", lhs=lhs, rhs=rhs):
                a, b = self.dim(lhs), self.dim(rhs)
                if isinstance(a, int) or isinstance(b, int):
                    return dims.scale(b, a) if isinstance(a, int) else dims.scale(a, b)  # type: ignore[arg-type]
                raise CompileError(f"a dim is affine: {a} * {b} multiplies two size symbols", e.loc)
        raise CompileError("expected a dim: an integer, a size symbol, or a sum or multiple of them", e.loc)

    def structure(self, call: ast.Call, args: list[SSAValue]) -> SSAValue:
        """transpose, reshape and concat, whose forms call_operands checked."""
        if call.func == "concat":
            assert isinstance(args[0].type, TensorType)
            axis = IntegerAttr(self._axis(call, args[0].type), i64)
            return self.emit(tdsl.ConcatOp, [args, None], call.loc, {"axis": axis})
        if len(call.args) == 1:
            return self.emit(tdsl.TransposeOp, [args[0], None], call.loc)
        items = call.args[1]
        assert isinstance(items, ast.ListExpr)  # call_operands checked it
        if call.func == "reshape":
            shape = [self.dim(d) for d in items.items]
            return self.emit(tdsl.ReshapeOp, [args[0], None], call.loc, {"shape": tdsl.dims_attr(shape)})
        perm = [self.dim(i) for i in items.items]
        if not all(isinstance(p, int) for p in perm):
            raise CompileError("a permutation lists axes as integers, e.g. [1, 0, 2]", items.loc)
        attr = DenseArrayBase.from_list(i64, perm)  # type: ignore[arg-type]
        return self.emit(tdsl.TransposeOp, [args[0], None], call.loc, {"perm": attr})

    def slice(self, e: ast.Slice, base: SSAValue) -> SSAValue:
        """base[a:b, ...]: omitted bounds are 0 and the size, omitted trailing axes whole."""
        t = self.dense(base, e.loc).type
        assert isinstance(t, TensorType)
        if len(e.bounds) > t.rank:
            raise CompileError(f"{len(e.bounds)} slice indices for {t} of rank {t.rank}", e.loc)
        bounds = [*e.bounds, *[(None, None)] * (t.rank - len(e.bounds))]
        starts = [self.dim(a) if a is not None else 0 for a, _ in bounds]
        stops = [self.dim(b) if b is not None else size for (_, b), size in zip(bounds, t.dims)]
        attrs: dict[str, Attribute] = {"starts": tdsl.dims_attr(starts), "stops": tdsl.dims_attr(stops)}
        return self.emit(tdsl.SliceOp, [base, None], e.loc, attrs)

    def value(self, e: ast.Expr) -> SSAValue:
        """The value of `e`, a literal as f32."""
        value = self.expr(e)
        return self.literal(value, f32) if isinstance(value, ast.Number) else value

    def ret(self, stmt: ast.Return) -> None:
        values = [self.dense(self.value(v), v.loc) for v in stmt.values]
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
                value = self.expr(stmt.value)
                if isinstance(value, SSAValue):
                    value.name_hint = name_hint(stmt.name)
                self.env[stmt.name] = value
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
