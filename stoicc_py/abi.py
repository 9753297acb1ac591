"""The C ABI of a compiled kernel, derived from its tensor-level signature.

`void k(const T *in0, ..., T *out0, ..., int64_t SYM0, ...)`: inputs in parameter
order, one output buffer per result, then one int64 per size symbol in order of
first appearance. Row-major, contiguous buffers. The runtime, the C header and the
cache all read this one description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from xdsl.dialects import func
from xdsl.dialects.builtin import StringAttr

from stoicc_py.dialects.tdsl import TensorType

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    dims: tuple[Dim, ...]
    layout: str = "dense"

    def __str__(self) -> str:
        text = f"{self.name}: {self.dtype}[{', '.join(map(str, self.dims))}]"
        return text if self.layout == "dense" else f"{text} @ {self.layout}"


@dataclass(frozen=True)
class KernelABI:
    name: str
    params: tuple[TensorSpec, ...]
    results: tuple[TensorSpec, ...]
    symbols: tuple[str, ...]

    @staticmethod
    def of(fn: func.FuncOp) -> KernelABI:
        """The ABI of a tensor-level kernel function."""
        attrs = fn.arg_attrs.data if fn.arg_attrs else ()
        params = []
        for i, t in enumerate(fn.function_type.inputs):
            assert isinstance(t, TensorType)
            name = attrs[i].data.get("tdsl.name") if attrs else None
            label = name.data if isinstance(name, StringAttr) else f"arg{i}"
            params.append(TensorSpec(label, t.dtype, t.dims, t.layout.summary()))
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
            return tuple(TensorSpec(s["name"], s["dtype"], tuple(s["dims"]), s["layout"]) for s in items)

        symbols = data["symbols"]
        assert isinstance(symbols, list)
        return KernelABI(str(data["name"]), specs(data["params"]), specs(data["results"]), tuple(symbols))
