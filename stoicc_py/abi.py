"""The C ABI of a compiled kernel, derived from its signature after metadata-layout.

`void k(const T *in0, ..., T *out0, ..., int64_t SYM0, ...)`: inputs in parameter
order (a non-dense parameter as one pointer per buffer of its storage, in storage
order), one output buffer per result, then one int64 per size symbol in order of
first appearance. Row-major, contiguous buffers. The runtime, the C header and the
cache all read this one description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerType, MemRefType, StringAttr

from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.tdsl import DTYPE_NAMES, TensorType

Dim = int | str


@dataclass(frozen=True)
class BufferSpec:
    """One physical buffer: role, numpy dtype name, shape (-1: known once packed), kind."""

    role: str
    dtype: str
    shape: tuple[int, ...]
    kind: str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    dims: tuple[Dim, ...]
    layout: str = "dense"
    buffers: tuple[BufferSpec, ...] = ()  # empty for a dense tensor: one buffer of dims

    def __str__(self) -> str:
        text = f"{self.name}: {self.dtype}[{', '.join(map(str, self.dims))}]"
        return text if self.layout == "dense" else f"{text} @ {self.layout}"

    @property
    def is_dense(self) -> bool:
        return not self.buffers


def numpy_dtype(element: object, unsigned: bool = False) -> str:
    if isinstance(element, IntegerType):
        return f"{'u' if unsigned else ''}int{element.width.data}"
    return {"f32": "float32", "f16": "float16"}[DTYPE_NAMES[element]]  # type: ignore[index]


def buffer_specs(storage: StorageAttr) -> tuple[BufferSpec, ...]:
    specs = []
    for b in storage.buffers.data:
        t: MemRefType = b.type
        shape = tuple(d if d >= 0 else -1 for d in t.get_shape())
        specs.append(BufferSpec(b.role.data, numpy_dtype(t.element_type, b.is_unsigned), shape, b.kind.data))
    return tuple(specs)


@dataclass(frozen=True)
class KernelABI:
    name: str
    params: tuple[TensorSpec, ...]
    results: tuple[TensorSpec, ...]
    symbols: tuple[str, ...]

    @staticmethod
    def of(fn: func.FuncOp) -> KernelABI:
        """The ABI of a tensor-level kernel function (after metadata-layout, which
        records the storage of non-dense parameters)."""
        attrs = fn.arg_attrs.data if fn.arg_attrs else ()
        params = []
        for i, t in enumerate(fn.function_type.inputs):
            assert isinstance(t, TensorType)
            arg = attrs[i].data if attrs else {}
            name = arg.get("tdsl.name")
            label = name.data if isinstance(name, StringAttr) else f"arg{i}"
            storage = arg.get("tdsl.storage")
            buffers = buffer_specs(storage) if isinstance(storage, StorageAttr) else ()
            params.append(TensorSpec(label, t.dtype, t.dims, t.layout.summary(), buffers))
        results = []
        for i, t in enumerate(fn.function_type.outputs):
            assert isinstance(t, TensorType)
            results.append(TensorSpec(f"out{i}", t.dtype, t.dims))
        symbols = dict.fromkeys(d for p in params for d in p.dims if isinstance(d, str))
        return KernelABI(fn.sym_name.data, tuple(params), tuple(results), tuple(symbols))

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, object]) -> KernelABI:
        def specs(items: object) -> tuple[TensorSpec, ...]:
            assert isinstance(items, list)
            return tuple(
                TensorSpec(
                    s["name"], s["dtype"], tuple(s["dims"]), s["layout"],
                    tuple(BufferSpec(b["role"], b["dtype"], tuple(b["shape"]), b["kind"]) for b in s["buffers"]),
                )
                for s in items
            )  # fmt: skip

        symbols = data["symbols"]
        assert isinstance(symbols, list)
        return KernelABI(str(data["name"]), specs(data["params"]), specs(data["results"]), tuple(symbols))
