"""tdsl-bufferize: tensors become memref buffers, kernels take destination buffers.

A kernel `f(x: f32[M, 64]) -> f32[M, 8]` becomes
`func.func @f(%x: memref<?x64xf32>, %out0: memref<?x8xf32>, %M: index)`: inputs,
then one output buffer per result, then one index per size symbol. A non-dense
parameter becomes the buffers that metadata-layout recorded for it, viewed as one
value by `layout.assemble`. This is the C ABI of the compiled kernel. Each op writes `into` a buffer: the output buffer for a
returned value, a fresh `memref.alloc` (freed before returning) otherwise.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import func, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    DictionaryAttr,
    IndexType,
    IntAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    UnitAttr,
    f32,
)
from xdsl.ir import Attribute, Block, BlockArgument, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from stoicc_py import dims
from stoicc_py.backends.llvm.translate import NOALIAS_ARGS
from stoicc_py.codegen.loop_builder import LoopBuilder, compute_type
from stoicc_py.diagnostics import op_error
from stoicc_py.dialects.layout import BUFFER_ALIGNMENT, AssembleOp, PackedType, QuantLayoutAttr, StorageAttr
from stoicc_py.dialects.sparse import BlockAttr, CSRAttr, HybridAttr, NMAttr
from stoicc_py.dialects.tdsl import (
    HALF_FLOATS,
    CastOp,
    ConcatOp,
    ConstantOp,
    ContractionOp,
    DequantizeOp,
    DimOp,
    ElementwiseBinaryOp,
    IotaOp,
    LinearOp,
    QuantizeOp,
    ReshapeOp,
    SliceOp,
    TdslOp,
    TensorType,
    TransposeOp,
    UnaryOp,
    WhereOp,
    name_hint,
)
from stoicc_py.passes.metadata_layout import STORAGE, buffer_dims, derived_symbols, param_name

SUPPORTED_DTYPES = ("f32", "bf16", "f16", "i8", "i32", "bool")
INTEGER_WEIGHT_LAYOUTS = (NMAttr, BlockAttr, CSRAttr, HybridAttr)
"""The non-dense layouts of an i8 weight that an integer product reads (its stored i8 values)."""


def memref_type(t: TensorType) -> MemRefType:
    return MemRefType(t.element_type, [d if isinstance(d, int) else DYNAMIC_INDEX for d in t.dims])


def dims_attr(dims: Sequence[int | str]) -> ArrayAttr[Attribute]:
    """Sizes and size symbols, for resolve-memref-dims (a packed buffer's -1: decided by the data)."""
    return ArrayAttr(IntAttr(d) if isinstance(d, int) else StringAttr(d) for d in dims)


def kernel_symbols(fn: func.FuncOp) -> list[str]:
    """Size symbols in order of first appearance in the parameters (as a plain dim, which
    binds it), then the derived symbols of packed buffers' dims (metadata-layout): the ABI's order."""
    seen: dict[str, None] = {}
    for t in fn.function_type.inputs:
        assert isinstance(t, TensorType)
        seen.update((d, None) for d in t.dims if isinstance(d, str) and dims.is_symbol(d))
    return [*seen, *derived_symbols(fn)]


def _check_supported(fn: func.FuncOp) -> None:
    for i, (arg, t) in enumerate(zip(fn.args, fn.function_type.inputs)):
        assert isinstance(t, TensorType)
        if t.layout.is_dense:
            continue
        if _storage(fn, i) is None:
            raise op_error(fn, f"parameter '{param_name(fn, i)}' has no storage: run metadata-layout first")
        for use in arg.uses:
            reads = isinstance(use.operation, LinearOp) and (use.index == 1 or isinstance(t.layout, QuantLayoutAttr))
            if not (reads or isinstance(use.operation, DequantizeOp)):
                raise op_error(
                    use.operation,
                    f"'{param_name(fn, i)}' has layout {t.layout.summary()}; the CPU backend reads a non-dense "
                    "tensor only as the weight of linear(x, w) (or matmul(x, transpose(w)))",
                )
    for op in fn.walk():
        for t in (*op.result_types, *(fn.function_type.inputs if op is fn else ())):
            if isinstance(t, TensorType) and t.dtype not in SUPPORTED_DTYPES:
                raise op_error(op, f"{t.dtype} tensors are not supported by the CPU backend yet (only {', '.join(SUPPORTED_DTYPES)})")
        if isinstance(op, TdslOp) and (why := _integer_unsupported(op)):
            raise op_error(op, why)


def _integer_unsupported(op: TdslOp) -> str | None:
    """Why the CPU backend cannot compile `op` on integer tensors (None if it can):
    it compiles i8 x i8 products (i32 results) with a dense or sparse weight,
    transposes, the elementwise ops that are defined on integers, comparisons, where,
    iota and sizes."""
    operands = [t for t in (o.type for o in op.tensor_operands()) if isinstance(t, TensorType)]
    integers = [t for t in (*operands, *op.result_types) if isinstance(t, TensorType) and t.is_integer]
    if not integers or isinstance(
        op, UnaryOp | ElementwiseBinaryOp | TransposeOp | WhereOp | IotaOp | DimOp | CastOp | ReshapeOp | SliceOp | ConcatOp
    ):
        return None
    if not isinstance(op, ContractionOp):
        return (
            f"'{op.name.removeprefix('tdsl.')}' on {integers[0].dtype} tensors is not supported by the CPU backend yet"
        )
    lhs, rhs = operands[:2]
    if lhs.dtype != "i8":
        return f"the CPU backend multiplies integers as i8 x i8 products (i32 results), got {lhs.dtype} operands"
    if not lhs.layout.is_dense or not (rhs.layout.is_dense or isinstance(rhs.layout, INTEGER_WEIGHT_LAYOUTS)):
        layout = rhs.layout if lhs.layout.is_dense else lhs.layout
        return (
            f"an i8 product reads its operands' stored values: dense activations and a dense or sparse "
            f"(nm, block, csr, hybrid) weight, not layout {layout.summary()}"
        )
    return None


def _storage(fn: func.FuncOp, index: int) -> StorageAttr | None:
    storage = fn.arg_attrs.data[index].data.get(STORAGE) if fn.arg_attrs else None
    return storage if isinstance(storage, StorageAttr) else None


class _FuncBufferizer:
    def __init__(self, fn: func.FuncOp):
        self.fn = fn
        inputs = [t for t in fn.function_type.inputs if isinstance(t, TensorType)]
        outputs = [t for t in fn.function_type.outputs if isinstance(t, TensorType)]
        self.symbols = kernel_symbols(fn)
        # Each parameter becomes one buffer, or (non-dense) the buffers of its storage.
        self.param_buffers = [
            [b.type for b in storage.buffers.data] if (storage := _storage(fn, i)) else [memref_type(t)]
            for i, t in enumerate(inputs)
        ]
        flat_inputs = [t for group in self.param_buffers for t in group]
        self.block = Block(arg_types=[*flat_inputs, *map(memref_type, outputs), *[IndexType()] * len(self.symbols)])
        args = self.block.args
        self.outs = list(args[len(flat_inputs) : len(flat_inputs) + len(outputs)])
        self.sizes = dict(zip(self.symbols, args[len(flat_inputs) + len(outputs) :]))
        self.builder = Builder(InsertPoint.at_end(self.block))
        self.values: dict[SSAValue, SSAValue] = {}
        self._bind_params(inputs, list(args[: len(flat_inputs)]))
        self.allocs: list[SSAValue] = []
        ret = fn.get_return_op()
        assert ret is not None
        self.ret = ret
        # The first producer of each returned value writes straight into its output buffer.
        self.dest: dict[SSAValue, SSAValue] = {}
        for value, out in zip(ret.arguments, self.outs):
            self.dest.setdefault(value, out)
        for i, out in enumerate(self.outs):
            out.name_hint = f"out{i}"
        for sym, arg in self.sizes.items():
            arg.name_hint = name_hint(sym)

    def _bind_params(self, inputs: list[TensorType], args: list[BlockArgument]) -> None:
        for i, (old, t) in enumerate(zip(self.fn.args, inputs)):
            name = param_name(self.fn, i)
            count = len(self.param_buffers[i])
            mine, args = args[:count], args[count:]
            storage = _storage(self.fn, i)
            if storage is None:
                mine[0].name_hint = old.name_hint or name_hint(name)
                self.values[old] = mine[0]
                continue
            for arg, role in zip(mine, storage.roles):
                arg.name_hint = f"{name}_{role.replace('.', '_')}"
            packed = PackedType([d if isinstance(d, int) else DYNAMIC_INDEX for d in t.dims], t.layout, storage)
            self.values[old] = self.builder.insert(AssembleOp(mine, packed)).result
            self.values[old].name_hint = name_hint(name)

    def buffer_for(self, value: SSAValue) -> SSAValue:
        if value in self.dest and value.owner is not None and not isinstance(value.owner, Block):
            return self.dest[value]
        t = value.type
        assert isinstance(t, TensorType)
        if isinstance(value.owner, QuantizeOp):
            return self.packed_buffers(value.owner, t)
        return self.alloc(t, value.name_hint)

    def alloc(self, t: TensorType, name: str | None) -> SSAValue:
        """An aligned buffer for a value of type `t`, freed before returning."""
        sizes = LoopBuilder(self.builder)
        dynamic = [sizes.dim(d, self.sizes) for d in t.dims if isinstance(d, str)]
        alloc = self.builder.insert(memref.AllocOp.get(t.element_type, BUFFER_ALIGNMENT, memref_type(t).shape, dynamic))
        alloc.memref.name_hint = name
        self.allocs.append(alloc.memref)
        return alloc.memref

    def packed_buffers(self, op: QuantizeOp, t: TensorType) -> SSAValue:
        """Allocate the buffers that metadata-layout recorded for a quantized value."""
        storage = op.storage
        if storage is None:
            raise op_error(op, "quantize has no storage: run metadata-layout first")
        symbol = next((self.sizes[d] for d in t.dims if isinstance(d, str)), None)
        buffers = []
        for b in storage.buffers.data:
            shape = b.type.get_shape()
            dynamic = [symbol] * sum(1 for d in shape if d < 0)
            alloc = self.builder.insert(memref.AllocOp.get(b.type.element_type, BUFFER_ALIGNMENT, shape, dynamic))  # type: ignore[arg-type]
            alloc.memref.name_hint = f"{op.results[0].name_hint or 'q'}_{b.role.data}"
            self.allocs.append(alloc.memref)
            buffers.append(alloc.memref)
        dims = [d if isinstance(d, int) else DYNAMIC_INDEX for d in t.dims]
        return self.builder.insert(AssembleOp(buffers, PackedType(dims, t.layout, storage))).result

    def constant(self, op: ConstantOp) -> SSAValue:
        assert op.result is not None
        buf = self.buffer_for(op.result)
        b = LoopBuilder(self.builder)
        b.store(b.constant(compute_type(op.result.type.element_type), op.scalar), buf, [])  # bf16/f16: an exact f32
        return buf

    def op(self, op: TdslOp) -> SSAValue:
        result = op.results[0]
        out = self.buffer_for(result)
        if isinstance(op, ContractionOp) and isinstance(result.type, TensorType) and result.type.element_type in HALF_FLOATS:
            # A bf16/f16 product accumulates in f32 (every k-tile adds into its output) and is
            # rounded once, at the end: into an f32 buffer, then cast into its own.
            wide = self.alloc(result.type.with_element(f32), result.name_hint)
            self.build(op, wide)
            cast = CastOp.build(operands=[[wide], [out]], result_types=[[]], attributes={"to": result.type.element_type})
            cast.location = op.location
            self.builder.insert(cast)
            return out
        self.build(op, out)
        return out

    def build(self, op: TdslOp, out: SSAValue) -> None:
        """`op` in buffer form, writing into `out`."""
        operands = [[self.values[v] for v in getattr(op, name)] if isinstance(getattr(op, name), tuple)
                    else [self.values[getattr(op, name)]] if getattr(op, name) is not None else []
                    for name, _ in op.get_irdl_definition().operands if name != "out"]  # fmt: skip
        new = type(op).build(operands=[*operands, [out]], result_types=[[]], attributes=dict(op.attributes))
        new.location = op.location
        self.builder.insert(new)

    def reshape(self, op: ReshapeOp) -> SSAValue:
        """A reshape is a view of its input's buffer (row-major, contiguous): no copy."""
        assert op.result is not None
        t = op.result.type
        b = LoopBuilder(self.builder)
        sizes = [b.dim(d, self.sizes) for d in t.dims]
        return b.view(self.values[op.input], b.index(0), sizes, memref_type(t).get_shape())

    def run(self) -> func.FuncOp:
        for op in self.fn.body.block.ops:
            if isinstance(op, ConstantOp):
                self.values[op.results[0]] = self.constant(op)
            elif isinstance(op, ReshapeOp):
                self.values[op.results[0]] = self.reshape(op)
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
        attrs: list[DictionaryAttr] = []
        for i, (a, t) in enumerate(zip(old_attrs, types.inputs)):
            assert isinstance(t, TensorType)
            storage = _storage(self.fn, i)
            if storage is None:
                attrs.append(DictionaryAttr({**a.data, "tdsl.dims": dims_attr(t.dims)}))
            else:
                name = StringAttr(param_name(self.fn, i))
                dims = buffer_dims(a) or [[] for _ in storage.buffers.data]
                attrs += [DictionaryAttr({"tdsl.name": name, "tdsl.buffer": b.role,
                                          **({"tdsl.dims": dims_attr(d)} if any(isinstance(x, str) for x in d) else {})})
                          for b, d in zip(storage.buffers.data, dims)]  # fmt: skip
        attrs += [DictionaryAttr({"tdsl.dims": dims_attr(t.dims), "tdsl.output": UnitAttr()})  # type: ignore[attr-defined]
                  for t in types.outputs]  # fmt: skip
        attrs += [DictionaryAttr({"tdsl.symbol": StringAttr(s)}) for s in self.symbols]
        new = func.FuncOp(
            self.fn.sym_name.data,
            ([a.type for a in self.block.args], []),
            Region(self.block),
            arg_attrs=ArrayAttr(attrs),
        )
        new.attributes[NOALIAS_ARGS] = UnitAttr()
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
