"""A model's linear layers as stoicc kernels with their weights in one layout.

One kernel is compiled per (out, in, GELU fused or not) shape of the layers, and each
weight is packed once (pruned by magnitude to a sparse pattern, rounded to nearest for a
quantized one); a call runs the native kernel on the packed weight.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from time import perf_counter

import numpy as np

import stoicc_py
from stoicc_py.dialects.layout import ComposedLayoutAttr, DenseLayoutAttr, LayoutAttr
from stoicc_py.dialects.sparse import HybridAttr, SparseLayoutAttr
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.models.bert import NumpyLinear
from stoicc_py.models.minilm import GELU_LAYERS, config_of, linear_names
from stoicc_py.models.weights import Array, Weights
from stoicc_py.packing import PackedTensor
from stoicc_py.packing.hybrid_plan import auto_plan


def linear_source(layout: str, n: int, k: int, gelu: bool, activations: str | None = None) -> str:
    """The kernel `f(x, w, b)` of one layer: `linear(x, w, b)` with w [n, k] in `layout` (a layout
    expression of the language), then `gelu` if asked; x quantized per call to `activations`
    (a quantized layout, e.g. `int8(per=token)`) if given."""
    x = f"quantize(x, {activations})" if activations else "x"
    body = f"gelu(linear({x}, w, b))" if gelu else f"linear({x}, w, b)"
    return f"kernel f(x: f32[M, {k}], w: f32[{n}, {k}] @ {layout}, b: f32[{n}]) -> f32[M, {n}] {{ return {body} }}"


class CompiledLinear:
    """The layers `names` of `weights` (each the prefix of a `.weight` [out, in] and a `.bias`)
    on compiled kernels whose weight is in `layout`; the other layers run in numpy.

    `gelu_names`: the layers followed by a GELU, whose kernels fuse it (compiled up front with
    the others). `plans`: per layer, the tile table codes of a hybrid layout (stoicc_py.pack's
    `plan`); without one, each tile of a hybrid weight is derived from its data (an nm tile if
    it fits the pattern, else dense). `activations`: see linear_source. Compilation and
    packing times are kept in `compile_seconds` and `pack_seconds`.
    """

    def __init__(
        self,
        weights: Weights,
        layout: str,
        names: Collection[str],
        gelu_names: Collection[str] = (),
        activations: str | None = None,
        plans: Mapping[str, Array] | None = None,
    ) -> None:
        self.layout, self.activations = layout, activations
        attr = parse_layout(layout)  # a located CompileError for a bad layout, before any work
        self._dense = isinstance(attr, DenseLayoutAttr)
        self._prune = "magnitude" if isinstance(sparse_part(attr), SparseLayoutAttr) else None
        self.weights = weights
        self._numpy = NumpyLinear(weights)
        self._kernels: dict[tuple[int, int, bool], stoicc_py.Kernel] = {}
        start = perf_counter()
        for name in names:
            self.kernel(name, name in gelu_names)
        self.compile_seconds = perf_counter() - start
        start = perf_counter()
        self.packed: dict[str, Array | PackedTensor] = {
            name: self._pack(name, (plans or {}).get(name)) for name in names
        }
        self.pack_seconds = perf_counter() - start

    def __call__(self, name: str, x: Array, gelu: bool) -> Array:
        if name not in self.packed:
            return self._numpy(name, x, gelu)
        y = self.kernel(name, gelu)(np.ascontiguousarray(x), self.packed[name], self.weights[f"{name}.bias"])
        assert isinstance(y, np.ndarray)  # one result
        return y

    def effective_weights(self) -> Weights:
        """`weights` with each compiled layer's weight replaced by the float32 values its kernel
        multiplies with (pruned, dequantized): the same model for numpy."""
        return self.weights | {
            f"{name}.weight": w.unpack() if isinstance(w, PackedTensor) else w for name, w in self.packed.items()
        }

    def nbytes(self) -> dict[str, int]:
        """Bytes of the compiled layers' weights by kind (values, metadata, scales, table, total)."""
        totals: dict[str, int] = {}
        for w in self.packed.values():
            sizes = w.nbytes_breakdown() if isinstance(w, PackedTensor) else {"values": w.nbytes, "total": w.nbytes}
            for kind, size in sizes.items():
                totals[kind] = totals.get(kind, 0) + size
        return totals

    def kernel(self, name: str, gelu: bool) -> stoicc_py.Kernel:
        """The kernel of layer `name` (compiled on first use, shared by the layers of its shape)."""
        n, k = self.weights[f"{name}.weight"].shape
        if (n, k, gelu) not in self._kernels:
            source = linear_source(self.layout, n, k, gelu, self.activations)
            self._kernels[n, k, gelu] = stoicc_py.compile(source).f
        return self._kernels[n, k, gelu]

    def _pack(self, name: str, plan: Array | None) -> Array | PackedTensor:
        w = self.weights[f"{name}.weight"]
        if self._dense:
            return np.ascontiguousarray(w, dtype=np.float32)
        return stoicc_py.pack(w, self.layout, prune=self._prune, plan=plan)


def minilm_linear(
    weights: Weights,
    layout: str,
    activations: str | None = None,
    plans: Mapping[str, Array] | None = None,
    nm_fraction: float = 0.5,
) -> CompiledLinear:
    """Every linear layer of a MiniLM model on kernels whose weight is in `layout`, with the GELU
    after each of GELU_LAYERS fused. A hybrid layout's tiles follow `plans`, else plan_hybrid's
    choice (by magnitude) with `nm_fraction` of the weights in 2:4 tiles."""
    if not 0 <= nm_fraction <= 1:
        raise ValueError(f"the fraction of nm tiles must be in [0, 1], got {nm_fraction}")
    names = linear_names(config_of(weights).layers)
    hybrid = hybrid_part(layout)
    if plans is None and hybrid is not None:
        plans = {name: auto_plan(weights[f"{name}.weight"], hybrid, nm_fraction / 2, None) for name in names}
    gelu_names = [name for name in names if name.endswith(GELU_LAYERS)]
    return CompiledLinear(weights, layout, names, gelu_names, activations, plans)


def sparse_part(layout: LayoutAttr) -> LayoutAttr:
    """The sparse layout of `S with Q`, else the layout itself."""
    return layout.sparse if isinstance(layout, ComposedLayoutAttr) else layout


def hybrid_part(layout: str) -> HybridAttr | None:
    """The hybrid layout of `layout` (alone or with quantized values), if it has one."""
    sparse = sparse_part(parse_layout(layout))
    return sparse if isinstance(sparse, HybridAttr) else None
