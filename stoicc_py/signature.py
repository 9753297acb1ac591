"""A kernel function's ABI, read from its tensor-level IR (after metadata-layout)."""

from __future__ import annotations

from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerType, MemRefType, StringAttr

from stoicc_py import dims
from stoicc_py.abi import BufferSpec, KernelABI, TensorSpec
from stoicc_py.codegen.row_parallel import column_split, row_split
from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.tdsl import DTYPE_NAMES, Dim, SliceOp, TensorType
from stoicc_py.passes.metadata_layout import buffer_dims
from stoicc_py.passes.tdsl_bufferize import kernel_symbols


def numpy_dtype(element: object, unsigned: bool = False) -> str:
    if isinstance(element, IntegerType):
        return f"{'u' if unsigned else ''}int{element.width.data}"
    return {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[DTYPE_NAMES[element]]  # type: ignore[index]


def buffer_specs(storage: StorageAttr, dims: list[list[int | str]] | None = None) -> tuple[BufferSpec, ...]:
    """The buffers of `storage`; `dims` (metadata-layout's buffer_dims) names the dims that size symbols hold."""
    specs = []
    for i, b in enumerate(storage.buffers.data):
        t: MemRefType = b.type
        shape = tuple(dims[i]) if dims else tuple(d if d >= 0 else -1 for d in t.get_shape())
        specs.append(BufferSpec(b.role.data, numpy_dtype(t.element_type, b.is_unsigned), shape, b.kind.data))
    return tuple(specs)


def kernel_abi(fn: func.FuncOp) -> KernelABI:
    attrs = fn.arg_attrs.data if fn.arg_attrs else ()
    params = []
    for i, t in enumerate(fn.function_type.inputs):
        assert isinstance(t, TensorType)
        arg = attrs[i].data if attrs else {}
        name = arg.get("tdsl.name")
        label = name.data if isinstance(name, StringAttr) else f"arg{i}"
        storage = arg.get("tdsl.storage")
        buffers = buffer_specs(storage, buffer_dims(attrs[i])) if isinstance(storage, StorageAttr) else ()
        params.append(TensorSpec(label, t.dtype, t.dims, t.layout.summary(), buffers))
    results = []
    for i, t in enumerate(fn.function_type.outputs):
        assert isinstance(t, TensorType)
        results.append(TensorSpec(f"out{i}", t.dtype, t.dims))
    return KernelABI(fn.sym_name.data, tuple(params), tuple(results), tuple(kernel_symbols(fn)), row_split(fn), column_split(fn),
                     temporaries(fn), limits(fn))  # fmt: skip


def temporaries(fn: func.FuncOp) -> tuple[tuple[int | str, ...], ...]:
    """The distinct shapes of the values computed in `fn` that have a size symbol."""
    shapes = dict.fromkeys(
        r.type.dims
        for op in fn.walk()
        for r in op.results
        if isinstance(r.type, TensorType) and any(isinstance(d, str) for d in r.type.dims)
    )
    return tuple(shapes)


def limits(fn: func.FuncOp) -> tuple[tuple[str, Dim], ...]:
    """What keeps each slice with symbolic bounds inside its tensor: start >= 0 and
    size - stop >= 0 (stop - start > 0 is its result's dim, checked like any other)."""
    found: list[tuple[str, Dim]] = []
    for op in fn.walk():
        if not isinstance(op, SliceOp):
            continue
        t = op.input.type
        assert isinstance(t, TensorType)
        for axis, (start, stop) in enumerate(op.bounds):
            what = f"slice {start}:{stop} of axis {axis} of {t}"
            found += [(what, d) for d in (start, dims.sub(t.dims[axis], stop)) if not isinstance(d, int)]
    return tuple(found)
