"""The reference semantics of the `tdsl` ops, in numpy: the golden model.

Tests and `stoicc run` check compiled kernels against it. It computes in float64 and
rounds results to the declared element type, so that it is more accurate than any
kernel it checks; a bf16 or f16 result is rounded (to nearest even) after every op,
as a kernel stores it. Integer tensors stay integers of their declared width, whose
arithmetic wraps around; a product of integers is computed exactly in int64 and
then wrapped to its declared type (i32 for i8 operands).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.interpreter import Interpreter, InterpreterFunctions, OpImplResult, PythonValues, impl, register_impls
from xdsl.interpreters.func import FuncFunctions
from xdsl.ir import Operation

from stoicc_py import dims
from stoicc_py.arrays import NUMPY_DTYPES
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.layout import LayoutAttr
from stoicc_py.dialects.quant import BitSplitAttr, SQAttr, UniformQuantAttr
from stoicc_py.packing.bitsplit import fake_bitsplit
from stoicc_py.packing.common import layout_as
from stoicc_py.packing.quant import fake_quantize, sharing_scale
from stoicc_py.packing.sq import fake_sq

if TYPE_CHECKING:
    from stoicc_py.packing import PackedTensor

Array = np.ndarray[Any, Any]
_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: Array) -> Array:
    """The exact (erf) GELU, as in BERT and torch.nn.GELU()."""
    return 0.5 * x * (1.0 + np.asarray(_erf(x / math.sqrt(2.0))).astype(x.dtype))


def sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


REFERENCE_DTYPES: dict[str, np.dtype[Any]] = {
    "f32": np.dtype(np.float64),
    "bf16": np.dtype(np.float64),
    "f16": np.dtype(np.float64),
    "i8": np.dtype(np.int8),
    "i32": np.dtype(np.int32),
    "bool": np.dtype(np.bool_),
}
"""The numpy dtype that holds a tensor of each dtype while the reference runs."""
STORED_DTYPES = ("bf16", "f16")
"""The dtypes whose values the reference rounds to after every op (held in float64)."""


def rounded(x: Array, dtype: str) -> Array:
    """x (float64) rounded to nearest even to a 16-bit float dtype, as float64 again."""
    with np.errstate(over="ignore"):  # beyond the dtype's max rounds to inf, as it should
        return x.astype(NUMPY_DTYPES[dtype]).astype(np.float64) if dtype in STORED_DTYPES else x


def cast(x: Array, to: str) -> Array:
    """cast(x, to) on reference values (float64 or integers): docs/language.md, Dtypes."""
    target = REFERENCE_DTYPES[to]
    if target.kind == "b":  # NaN != 0 holds: NaN gives true, as numpy's astype(bool)
        return x != 0
    if x.dtype.kind == "b":  # false and true are 0 and 1 of every dtype
        return x.astype(target)
    if target.kind == "f":  # integers round through f32 as the kernels do (exact for i8)
        source = x.astype(np.float32) if x.dtype.kind != "f" else x
        return rounded(source.astype(np.float64), to)
    info = np.iinfo(target)
    with np.errstate(invalid="ignore"):
        values = np.rint(x) if x.dtype.kind == "f" else x
        return np.clip(np.nan_to_num(values, nan=0.0), info.min, info.max).astype(target)

UNARY: dict[type[tdsl.UnaryOp], Callable[[Array], Array]] = {
    tdsl.ReluOp: lambda x: np.maximum(x, 0),  # a python 0 keeps an integer x's dtype
    tdsl.GeluOp: gelu,
    tdsl.SiluOp: lambda x: x * sigmoid(x),
    tdsl.SigmoidOp: sigmoid,
    tdsl.TanhOp: np.tanh,
    tdsl.ExpOp: np.exp,
    tdsl.NegOp: np.negative,
    tdsl.AbsOp: np.abs,
    tdsl.SqrtOp: np.sqrt,
    tdsl.RsqrtOp: lambda x: 1.0 / np.sqrt(x),
}
ACTIVATION: dict[str, Callable[[Array], Array]] = {
    op.name.removeprefix("tdsl."): fn for op, fn in UNARY.items() if op.name.removeprefix("tdsl.") in tdsl.ACTIVATIONS
}
BINARY: dict[type[tdsl.ElementwiseBinaryOp], Callable[[Array, Array], Array]] = {
    tdsl.AddOp: np.add,
    tdsl.SubOp: np.subtract,
    tdsl.MulOp: np.multiply,
    tdsl.DivOp: np.divide,
    tdsl.LtOp: np.less,
    tdsl.LeOp: np.less_equal,
    tdsl.GtOp: np.greater,
    tdsl.GeOp: np.greater_equal,
    tdsl.EqOp: np.equal,
    tdsl.NeOp: np.not_equal,
}


@dataclass(frozen=True)
class Sparse:
    """A matrix in a sparse layout: its values, and which entries the layout stores
    (PackedTensor.stored). The others are structural zeros: a product never multiplies
    them (docs/language.md, "Non-finite values"); any other op reads the values."""

    values: Array
    stored: Array

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Array:
        return self.values if dtype is None else self.values.astype(dtype)

    @property
    def T(self) -> Sparse:
        return Sparse(self.values.T, self.stored.T)


Value = Array | Sparse
"""What an SSA value holds while the reference runs."""


def matmul(a: Value, b: Value) -> Array:
    """a @ b over the entries each operand stores: a structural zero meeting an inf or NaN
    contributes nothing, where a stored zero gives NaN as in IEEE arithmetic."""
    (av, am), (bv, bm) = _parts(a), _parts(b)
    if am is None and bm is None:
        return av @ bv
    fa, fb = np.isfinite(av), np.isfinite(bv)
    out = np.where(fa, av, 0) @ np.where(fb, bv, 0)  # every product of two finite entries
    with np.errstate(invalid="ignore"):  # inf * 0 at structural zeros, which np.where drops
        for i in np.flatnonzero(~fa.all(axis=1)):  # a's non-finite entries with b's stored rows
            ks = np.flatnonzero(~fa[i])
            out[i] += np.where(bm[ks], av[i, ks, None] * bv[ks], 0).sum(axis=0)
        for j in np.flatnonzero(~fb.all(axis=0)):  # b's non-finite entries with a's finite stored columns
            ks = np.flatnonzero(~fb[:, j])
            out[:, j] += np.where(am[:, ks] & fa[:, ks], av[:, ks] * bv[ks, j], 0).sum(axis=1)
    return out


def batched_matmul(a: Value, b: Value) -> Array:
    """matmul() on operands of rank >= 2, the leading dims broadcast as in numpy: a
    rank-2 (possibly sparse) b multiplies the rows of a, else both are dense."""
    if np.ndim(a) == 2 and np.ndim(b) == 2:
        return matmul(a, b)
    if np.ndim(b) == 2:
        av = np.asarray(a)
        return matmul(av.reshape(-1, av.shape[-1]), b).reshape(*av.shape[:-1], -1)
    return np.matmul(np.asarray(a), np.asarray(b))


def _parts(a: Value) -> tuple[Array, Array]:
    """(values, stored) of an operand; a dense array stores every entry."""
    return (a.values, a.stored) if isinstance(a, Sparse) else (a, np.ones(a.shape, bool))


def runtime_quantize(x: Array, layout: LayoutAttr) -> Array:
    """The values that quantize(x, layout) computes with. A non-finite x makes its scale
    non-finite: every value sharing a scale with one is NaN (docs/language.md)."""
    bad = ~np.isfinite(x)
    out = _fake_quantize(np.where(bad, np.float32(0), x), layout)
    out[_sharing_scale(bad, layout)] = np.nan
    return out


def _fake_quantize(x: Array, layout: LayoutAttr) -> Array:
    if isinstance(layout, BitSplitAttr):
        return fake_bitsplit(x, layout)
    if isinstance(layout, SQAttr):
        return fake_sq(x, layout)
    return fake_quantize(x, layout_as(layout, UniformQuantAttr, "a quantized layout (int8 ... binary)"))


def _sharing_scale(bad: Array, layout: LayoutAttr) -> Array:
    if isinstance(layout, BitSplitAttr):  # int8 codes with one scale per row
        return sharing_scale(bad, "int8(axis=0)")
    if isinstance(layout, SQAttr):  # a low and a high scale per element
        return sharing_scale(bad, layout.low) | sharing_scale(bad, layout.high)
    return sharing_scale(bad, layout)  # type: ignore[arg-type]


def softmax(x: Array, axis: int) -> Array:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class TdslFunctions(InterpreterFunctions):
    """One method per op, on float64 numpy arrays; elementwise ops come from tables.
    `sizes` binds the kernel's size symbols (for the dims that ops name)."""

    def __init__(self, sizes: Mapping[str, int] | None = None):
        self.sizes = dict(sizes or {})

    @impl(tdsl.TransposeOp)
    def run_transpose(self, interpreter: Interpreter, op: tdsl.TransposeOp, args: tuple[Value]):
        x = args[0]
        return (x.T if isinstance(x, Sparse) else np.transpose(x, op.permutation),)

    @impl(tdsl.ReshapeOp)
    def run_reshape(self, interpreter: Interpreter, op: tdsl.ReshapeOp, args: tuple[Value]):
        assert op.result is not None
        return (np.reshape(np.asarray(args[0]), [dims.evaluate(d, self.sizes) for d in op.result.type.dims]),)

    @impl(tdsl.SliceOp)
    def run_slice(self, interpreter: Interpreter, op: tdsl.SliceOp, args: tuple[Value]):
        x = np.asarray(args[0])
        index = []
        for axis, (start, stop) in enumerate(op.bounds):
            a, b = dims.evaluate(start, self.sizes), dims.evaluate(stop, self.sizes)
            if not 0 <= a < b <= x.shape[axis]:
                raise ValueError(f"slice {start}:{stop} (= {a}:{b}) is out of range for axis {axis} of size {x.shape[axis]}")
            index.append(slice(a, b))
        return (x[tuple(index)],)

    @impl(tdsl.ConcatOp)
    def run_concat(self, interpreter: Interpreter, op: tdsl.ConcatOp, args: tuple[Value, ...]):
        return (np.concatenate([np.asarray(a) for a in args], axis=op.axis_index),)

    @impl(tdsl.SumOp)
    def run_sum(self, interpreter: Interpreter, op: tdsl.SumOp, args: tuple[Value]):
        x = np.asarray(args[0])
        return (x.sum(axis=op.axis_index, dtype=x.dtype, keepdims=op.keeps_dims),)

    @impl(tdsl.MaxOp)
    def run_max(self, interpreter: Interpreter, op: tdsl.MaxOp, args: tuple[Value]):
        return (np.asarray(args[0]).max(axis=op.axis_index, keepdims=op.keeps_dims),)

    @impl(tdsl.MeanOp)
    def run_mean(self, interpreter: Interpreter, op: tdsl.MeanOp, args: tuple[Value]):
        return (np.asarray(args[0]).mean(axis=op.axis_index, keepdims=op.keeps_dims),)

    @impl(tdsl.WhereOp)
    def run_where(self, interpreter: Interpreter, op: tdsl.WhereOp, args: tuple[Value, Value, Value]):
        return (np.where(*(np.asarray(a) for a in args)),)

    @impl(tdsl.IotaOp)
    def run_iota(self, interpreter: Interpreter, op: tdsl.IotaOp, args: tuple[()]):
        assert op.result is not None
        shape = [dims.evaluate(d, self.sizes) for d in op.result.type.dims]
        index = np.arange(shape[op.axis_index], dtype=np.int32)
        return (np.broadcast_to(np.expand_dims(index, [a for a in range(len(shape)) if a != op.axis_index]), shape),)

    @impl(tdsl.DimOp)
    def run_dim(self, interpreter: Interpreter, op: tdsl.DimOp, args: tuple[Value]):
        return (np.array(np.asarray(args[0]).shape[op.axis_index], np.int32),)

    @impl(tdsl.SoftmaxOp)
    def run_softmax(self, interpreter: Interpreter, op: tdsl.SoftmaxOp, args: tuple[Value]):
        return (softmax(np.asarray(args[0]), op.axis_index),)

    @impl(tdsl.MatmulOp)
    def run_matmul(self, interpreter: Interpreter, op: tdsl.MatmulOp, args: tuple[Array, ...]):
        return self.contraction(op, args)

    @impl(tdsl.LinearOp)
    def run_linear(self, interpreter: Interpreter, op: tdsl.LinearOp, args: tuple[Array, ...]):
        return self.contraction(op, args)

    @staticmethod
    def contraction(op: tdsl.ContractionOp, args: tuple[Value, ...]) -> tuple[Array]:
        assert op.result is not None
        result = op.result.type
        operands: Sequence[Value] = args
        if result.is_integer:  # exact in int64, then wrapped to the declared width
            operands = [np.asarray(v).astype(np.int64) for v in args]
        a, b, *bias = operands
        out = batched_matmul(a, b.T if op.RHS_TRANSPOSED else b)
        if bias:
            out = out + bias[0]
        if result.is_integer:
            out = out.astype(REFERENCE_DTYPES[result.dtype])
        if op.activation is not None:
            out = ACTIVATION[op.activation](out)
        return (out,)

    @impl(tdsl.QuantizeOp)
    def run_quantize(self, interpreter: Interpreter, op: tdsl.QuantizeOp, args: tuple[Value]):
        # The kernel quantizes float32 values: round the golden model's float64 first.
        assert op.layout is not None, "quantize's layout is inferred with its type (QuantizeOp.infer)"
        return (runtime_quantize(np.asarray(args[0], np.float32), op.layout).astype(np.float64),)

    @impl(tdsl.DequantizeOp)
    def run_dequantize(self, interpreter: Interpreter, op: tdsl.DequantizeOp, args: tuple[Array]):
        return (args[0],)  # a quantized value already holds its dequantized numbers

    @impl(tdsl.CastOp)
    def run_cast(self, interpreter: Interpreter, op: tdsl.CastOp, args: tuple[Value]):
        assert op.result is not None
        return (cast(np.asarray(args[0]), op.result.type.dtype),)

    @impl(tdsl.ConstantOp)
    def run_constant(self, interpreter: Interpreter, op: tdsl.ConstantOp, args: tuple[()]):
        assert op.result is not None
        return (cast(np.asarray(op.scalar), op.result.type.dtype),)


def _elementwise(fn: Callable[..., Array]) -> Callable[..., tuple[Array]]:
    def run(self: TdslFunctions, interpreter: Interpreter, op: tdsl.TdslOp, args: tuple[Array, ...]):
        return (fn(*args),)

    return run


# register_impls finds implementations as class attributes, one function object each
_ELEMENTWISE: list[tuple[type[tdsl.TdslOp], Callable[..., Array]]] = [*UNARY.items(), *BINARY.items()]
for _op, _fn in _ELEMENTWISE:
    setattr(TdslFunctions, f"run_{_op.name.removeprefix('tdsl.')}", impl(_op)(_elementwise(_fn)))
register_impls(TdslFunctions)


def reference_inputs(args: Sequence[Array | PackedTensor]) -> list[Value]:
    """The call's prepared arguments as the reference reads them: a packed argument as its
    dense values, and for a sparse layout which of them are stored."""
    inputs: list[Value] = []
    for a in args:
        stored = None if isinstance(a, np.ndarray) else a.stored()
        inputs.append(a if isinstance(a, np.ndarray) else a.unpack() if stored is None else Sparse(a.unpack(), stored))
    return inputs


def _as_dtype(x: Value, dtype: np.dtype[Any]) -> Value:
    return Sparse(x.values.astype(dtype), x.stored) if isinstance(x, Sparse) else np.asarray(x, dtype=dtype)


class _RoundingInterpreter(Interpreter):
    """Rounds every bf16 or f16 result to its dtype, whichever op made it."""

    def _run_op(self, op: Operation, inputs: PythonValues) -> OpImplResult:
        result = super()._run_op(op, inputs)
        types = [r.type for r in op.results]
        if not any(isinstance(t, tdsl.TensorType) and t.dtype in STORED_DTYPES for t in types):
            return result
        values = tuple(rounded(np.asarray(v), t.dtype) if isinstance(t, tdsl.TensorType) else v
                       for v, t in zip(result.values, types))  # fmt: skip
        return OpImplResult(values, result.terminator_value)


def _bound_sizes(types: Sequence[object], inputs: Sequence[Value]) -> dict[str, int]:
    """The size of each symbol that a parameter's type binds (a plain-symbol dim)."""
    return {d: size for t, x in zip(types, inputs) if isinstance(t, tdsl.TensorType)
            for d, size in zip(t.dims, np.shape(x.values if isinstance(x, Sparse) else x)) if dims.is_symbol(d)}  # fmt: skip


def run_reference(
    module: ModuleOp, kernel: str, inputs: Sequence[Value], out_dtypes: Sequence[np.dtype[Any]]
) -> list[Array]:
    """Run `kernel` of a tensor-level module on `inputs`; results in `out_dtypes`."""
    interpreter = _RoundingInterpreter(module)
    interpreter.register_implementations(FuncFunctions())
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == kernel)
    types = fn.function_type.inputs.data
    interpreter.register_implementations(TdslFunctions(_bound_sizes(types, inputs)))
    dtypes = [REFERENCE_DTYPES[t.dtype] for t in types if isinstance(t, tdsl.TensorType)]
    args = tuple(_as_dtype(x, dt) for x, dt in zip(inputs, dtypes, strict=True))
    results = interpreter.call_op(kernel, args)
    return [np.asarray(r).astype(dt) for r, dt in zip(results, out_dtypes)]
