"""tdsl-bufferize: tensors become memref buffers, kernels take destination buffers.

A kernel `f(x: f32[M, 64]) -> f32[M, 8]` becomes
`func.func @f(%x: memref<?x64xf32>, %out0: memref<?x8xf32>, %M: index)`: inputs,
then one output buffer per result, then one index per size symbol. This is the C
ABI of the compiled kernel. Each op writes `into` a buffer: the output buffer for a
returned value, a fresh `memref.alloc` (freed before returning) otherwise.
"""

from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    DictionaryAttr,
    FloatAttr,
    IndexType,
    IntAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    UnitAttr,
)
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from stoicc_py.diagnostics import op_error
from stoicc_py.dialects.tdsl import ConstantOp, TdslOp, TensorType

SUPPORTED_DTYPES = ("f32",)


def memref_type(t: TensorType) -> MemRefType:
    return MemRefType(t.element_type, [d if isinstance(d, int) else DYNAMIC_INDEX for d in t.dims])


def dims_attr(t: TensorType) -> ArrayAttr[Attribute]:
    return ArrayAttr(IntAttr(d) if isinstance(d, int) else StringAttr(d) for d in t.dims)


def kernel_symbols(fn: func.FuncOp) -> list[str]:
    """Size symbols in order of first appearance in the parameters: the ABI's order."""
    seen: dict[str, None] = {}
    for t in fn.function_type.inputs:
        assert isinstance(t, TensorType)
        seen.update((d, None) for d in t.dims if isinstance(d, str))
    return list(seen)


def _check_supported(fn: func.FuncOp) -> None:
    for i, t in enumerate(fn.function_type.inputs):
        assert isinstance(t, TensorType)
        if not t.layout.is_dense:
            raise op_error(
                fn, f"parameter {i} has layout {t.layout.summary()}, which the CPU backend cannot compile yet"
            )
    for op in fn.walk():
        for t in (*op.result_types, *(fn.function_type.inputs if op is fn else ())):
            if isinstance(t, TensorType) and t.dtype not in SUPPORTED_DTYPES:
                raise op_error(op, f"{t.dtype} tensors are not supported by the CPU backend yet (only f32)")


class _FuncBufferizer:
    def __init__(self, fn: func.FuncOp):
        self.fn = fn
        inputs = [t for t in fn.function_type.inputs if isinstance(t, TensorType)]
        outputs = [t for t in fn.function_type.outputs if isinstance(t, TensorType)]
        self.symbols = kernel_symbols(fn)
        self.block = Block(arg_types=[*map(memref_type, inputs), *map(memref_type, outputs)]
                           + [IndexType()] * len(self.symbols))  # fmt: skip
        args = self.block.args
        self.outs = list(args[len(inputs) : len(inputs) + len(outputs)])
        self.sizes = dict(zip(self.symbols, args[len(inputs) + len(outputs) :]))
        self.values: dict[SSAValue, SSAValue] = dict(zip(fn.args, args))
        self.builder = Builder(InsertPoint.at_end(self.block))
        self.allocs: list[SSAValue] = []
        ret = fn.get_return_op()
        assert ret is not None
        self.ret = ret
        # The first producer of each returned value writes straight into its output buffer.
        self.dest: dict[SSAValue, SSAValue] = {}
        for value, out in zip(ret.arguments, self.outs):
            self.dest.setdefault(value, out)
        for name, old, new in zip(self._names(len(inputs)), fn.args, args):
            new.name_hint = old.name_hint or name
        for i, out in enumerate(self.outs):
            out.name_hint = f"out{i}"
        for sym, arg in self.sizes.items():
            arg.name_hint = sym

    def _names(self, count: int) -> list[str]:
        attrs = self.fn.arg_attrs.data if self.fn.arg_attrs else []
        names = [a.data.get("tdsl.name") for a in attrs]
        return [n.data if isinstance(n, StringAttr) else f"arg{i}" for i, n in enumerate(names)] or [
            f"arg{i}" for i in range(count)
        ]

    def buffer_for(self, value: SSAValue) -> SSAValue:
        if value in self.dest and value.owner is not None and not isinstance(value.owner, Block):
            return self.dest[value]
        t = value.type
        assert isinstance(t, TensorType)
        dynamic = [self.sizes[d] for d in t.dims if isinstance(d, str)]
        alloc = self.builder.insert(memref.AllocOp.get(t.element_type, 64, memref_type(t).shape, dynamic))
        alloc.memref.name_hint = value.name_hint
        self.allocs.append(alloc.memref)
        return alloc.memref

    def constant(self, op: ConstantOp) -> SSAValue:
        assert op.result is not None
        buf = self.buffer_for(op.result)
        scalar = self.builder.insert(arith.ConstantOp(FloatAttr(op.scalar, op.result.type.element_type)))
        self.builder.insert(memref.StoreOp.get(scalar, buf, []))
        return buf

    def op(self, op: TdslOp) -> SSAValue:
        result = op.results[0]
        out = self.buffer_for(result)
        operands = [[self.values[v] for v in getattr(op, name)] if isinstance(getattr(op, name), tuple)
                    else [self.values[getattr(op, name)]] if getattr(op, name) is not None else []
                    for name, _ in op.get_irdl_definition().operands if name != "out"]  # fmt: skip
        new = type(op).build(operands=[*operands, [out]], result_types=[[]], attributes=dict(op.attributes))
        new.location = op.location
        self.builder.insert(new)
        return out

    def run(self) -> func.FuncOp:
        for op in self.fn.body.block.ops:
            if isinstance(op, ConstantOp):
                self.values[op.results[0]] = self.constant(op)
            elif isinstance(op, TdslOp):
                self.values[op.results[0]] = self.op(op)
            elif op is not self.ret:
                raise op_error(op, f"cannot bufferize '{op.name}'")
        for value, out in zip(self.ret.arguments, self.outs):
            if self.values[value] is not out:
                self.builder.insert(memref.CopyOp(self.values[value], out))
        for buf in self.allocs:
            self.builder.insert(memref.DeallocOp.get(buf))
        self.builder.insert(func.ReturnOp())
        return self._signature()

    def _signature(self) -> func.FuncOp:
        old_attrs = list(self.fn.arg_attrs.data) if self.fn.arg_attrs else [DictionaryAttr({})] * len(self.fn.args)
        types = self.fn.function_type
        attrs = [
            DictionaryAttr({**a.data, "tdsl.dims": dims_attr(t)})
            for a, t in zip(old_attrs, types.inputs)  # type: ignore[arg-type]
        ]
        attrs += [DictionaryAttr({"tdsl.dims": dims_attr(t), "tdsl.output": UnitAttr()}) for t in types.outputs]  # type: ignore[arg-type]
        attrs += [DictionaryAttr({"tdsl.symbol": StringAttr(s)}) for s in self.symbols]
        new = func.FuncOp(
            self.fn.sym_name.data,
            ([a.type for a in self.block.args], []),
            Region(self.block),
            arg_attrs=ArrayAttr(attrs),
        )
        new.attributes["stoicc.noalias_args"] = UnitAttr()
        new.location = self.fn.location
        return new


@dataclass(frozen=True)
class Bufferize(ModulePass):
    name = "tdsl-bufferize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in list(op.ops):
            if isinstance(fn, func.FuncOp) and any(isinstance(t, TensorType) for t in fn.function_type.inputs):
                _check_supported(fn)
                Rewriter.replace_op(fn, _FuncBufferizer(fn).run())
