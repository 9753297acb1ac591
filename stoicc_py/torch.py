"""PyTorch integration (optional: needs `torch`): compiled sparse and quantized
linear layers in place of `torch.nn.Linear`, for inference on the CPU.

    layer = StoiccLinear.from_linear(model.fc, "nm(2, 4)")   # prunes, packs and compiles once
    compress(model, "int4(group=128)")                        # every nn.Linear of model, in place
    with torch.no_grad():
        y = model(x)

Float32, bfloat16 and float16 layers: the kernel computes in the layer's dtype (docs/api.md).
Each layer calls its kernel through one registered custom op, `torch.ops.stoicc.linear`, with a
fake implementation, so `torch.compile(model)` traces a compressed model (see `_linear_op`).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from functools import cache
from typing import Any

import ml_dtypes
import numpy as np

try:
    import torch
except ImportError as err:  # the rest of stoicc_py works without torch
    raise ImportError(f"stoicc_py.torch needs PyTorch (pip install torch): {err}") from None

from stoicc_py import Kernel, PackedTensor, compile, pack
from stoicc_py.dialects.layout import ComposedLayoutAttr, DenseLayoutAttr, SparseLayoutAttr
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing.common import check_finite

__all__ = ["StoiccLinear", "compress"]

Selector = Callable[[str, torch.nn.Linear], bool]
DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
"""The kernel dtype of a layer's weight, bias, input and result, by the weight's torch dtype."""
BF16 = np.dtype(ml_dtypes.bfloat16)


def _host(t: torch.Tensor) -> np.ndarray[Any, Any]:
    """A numpy view of a CPU tensor's memory: bfloat16 through its bits, as numpy (and so
    DLPack into numpy) has no bfloat16 but ml_dtypes has, with torch's bit layout."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BF16)
    return t.numpy()


def _tensor(a: np.ndarray[Any, Any]) -> torch.Tensor:
    """A torch tensor over the numpy array's memory (bfloat16 through its bits)."""
    if a.dtype == BF16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


@cache
def _linear_kernel(layout: str, in_features: int | str, out_features: int | str, bias: bool, dtype: str) -> Kernel:
    """One compiled kernel per (layout, shape, bias, dtype), shared by every layer that has
    them; with size symbols for the shape (generic), one per (layout, bias, dtype)."""
    weight = f"w: {dtype}[{out_features}, {in_features}] @ {layout}"
    params, args = (f"{weight}, b: {dtype}[{out_features}]", "x, w, b") if bias else (weight, "x, w")
    result = f"{dtype}[M, {out_features}]"
    source = f"kernel linear(x: {dtype}[M, {in_features}], {params}) -> {result} {{ return linear({args}) }}"
    return compile(source).linear


def _stored_weight(weight: torch.Tensor, layout: str) -> PackedTensor | np.ndarray[Any, Any]:
    """The weight as the kernel reads it: packed (sparse layouts pruned by magnitude to their
    pattern) from its exact values in its dtype, or for a dense layout a copy in its dtype that
    no later change to `weight` touches."""
    out_features, in_features = weight.shape
    attr = parse_layout(layout)
    prune = "magnitude" if isinstance(attr, SparseLayoutAttr | ComposedLayoutAttr) else None
    values = _host(weight.detach())
    try:
        if isinstance(attr, DenseLayoutAttr):  # not packed, but held to pack()'s rule on values
            check_finite(values, "the weight")
            return values.copy()
        return pack(values, attr, prune=prune)
    except ValueError as err:
        raise ValueError(f"Linear({in_features}, {out_features}) cannot take layout {layout}: {err}") from None


_HANDLES = itertools.count(1)
_LAYERS: weakref.WeakValueDictionary[int, StoiccLinear] = weakref.WeakValueDictionary()
"""Every live StoiccLinear by its handle; a freed layer drops out (its handle is never reused)."""


_LIBRARY = torch.library.Library("stoicc", "DEF")  # held: the ops live as long as it does
_LIBRARY.define("linear(Tensor x, Tensor? bias, int handle, SymInt out_features) -> Tensor")


def _linear_op(x: torch.Tensor, bias: torch.Tensor | None, handle: int, out_features: int) -> torch.Tensor:
    """`torch.ops.stoicc.linear(x, bias, handle, out_features)`: x [M, in_features] @ weight.T + bias
    -> a new [M, out_features] tensor, on the compiled kernel of the StoiccLinear that `handle`
    names, with its packed weight. The call of every StoiccLinear, eager or compiled.

    Why a handle rather than the packed buffers as tensor inputs: a kernel takes a validated
    PackedTensor (its indices are checked in range once, so native code never reads out of
    bounds), and one rebuilt from tensors on every call costs 0.25-0.4 ms to construct plus
    1-9 ms to validate for a 576 x 1536 nm(2, 4) or int4(group=32) weight, more than the
    product. So the weight stays packed in its layer, and the traced graph carries what torch
    can trace: x and bias as tensors, the handle and out_features as ints (out_features, a
    SymInt, gives the fake implementation the result's shape without the registry). The cost:
    a compiled graph refers to live layers of this process (torch.export of it does not carry
    the weights); a freed layer's handle is an error, never another layer's weight.
    Registered with torch.library.define/impl rather than the custom_op decorator, whose
    Python wrapper costs about 50 us more per eager call."""
    layer = _LAYERS.get(handle)
    if layer is None:
        raise RuntimeError(f"stoicc::linear: no live StoiccLinear has handle {handle} (the layer was freed)")
    return layer._multiply(x, bias)


_LIBRARY.impl("linear", _linear_op, "CPU")


@torch.library.register_fake("stoicc::linear", lib=_LIBRARY)
def _linear_fake(x: torch.Tensor, bias: torch.Tensor | None, handle: int, out_features: int) -> torch.Tensor:
    """The result's shape and dtype, for tracing (FakeTensors have no data to multiply)."""
    return x.new_empty((x.shape[0], out_features))


class StoiccLinear(torch.nn.Module):
    """A `torch.nn.Linear` whose weight is stored in a layout (sparse, quantized or both)
    and multiplied by a compiled stoicc kernel in the weight's dtype (float32, bfloat16 or
    float16). Inference only: CPU inputs of that dtype and any leading shape
    [..., in_features] -> [..., out_features]; it has no parameters to train."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, layout: str, generic: bool = False):
        """`weight` [out_features, in_features] and `bias` [out_features] (or None): CPU tensors
        of one dtype (float32, bfloat16 or float16), stored in `layout` (layout text,
        docs/formats.md) once, here.
        `generic`: multiply with the kernel of symbolic dims that every layer of this layout
        shares (one compile for every shape, but the generic loop nests, several times slower
        than the vectorised kernels of static dims: benchmarks/generic.py)."""
        super().__init__()
        if weight.dtype not in DTYPES or weight.device.type != "cpu" or weight.dim() != 2:
            raise TypeError(f"StoiccLinear: the weight must be a 2-D float32, bfloat16 or float16 CPU tensor, "
                            f"got {weight.dtype} {list(weight.shape)} on {weight.device}")  # fmt: skip
        if bias is not None and (bias.dtype != weight.dtype or bias.device != weight.device):
            raise TypeError(f"StoiccLinear: the bias ({bias.dtype} on {bias.device}) must have the weight's "
                            f"dtype and device ({weight.dtype} on {weight.device})")  # fmt: skip
        self.out_features, self.in_features = weight.shape
        self.dtype = weight.dtype
        self.layout = layout
        self.generic = generic
        self.stored = _stored_weight(weight, layout)
        self.bias: torch.Tensor | None
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self._kernel()  # compiled now rather than in the first call
        self._register()

    def _register(self) -> None:
        """A new handle for this layer, by which stoicc::linear finds it (also for a copy: see __setstate__)."""
        self.handle = next(_HANDLES)
        _LAYERS[self.handle] = self

    def __setstate__(self, state: dict[str, Any]) -> None:
        """copy.deepcopy and torch.load: the copy is another layer, with its own handle."""
        super().__setstate__(state)
        self._register()

    def _kernel(self) -> Kernel:
        # looked up, not held: the module stays plain data (copy.deepcopy, torch.save)
        k, n = ("K", "N") if self.generic else (self.in_features, self.out_features)
        return _linear_kernel(self.layout, k, n, self.bias is not None, DTYPES[self.dtype])

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, layout: str, generic: bool = False) -> StoiccLinear:
        """A StoiccLinear computing `linear` with its weight in `layout`: pruned by magnitude to a
        sparse layout's pattern, rounded to a quantized one. `linear` is left unchanged."""
        return cls(linear.weight, linear.bias, layout, generic)

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight [out_features, in_features] as float32: the pruned and
        dequantized values the kernel multiplies by, exactly (float32 holds every bfloat16 and
        float16 value, and a quantized layout's values are dequantized in float32); a new
        tensor: changing it changes nothing."""
        stored = self.stored
        values = stored.dequantize() if isinstance(stored, PackedTensor) else stored
        return torch.from_numpy(values.astype(np.float32))  # astype copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x @ weight.T + bias over the last axis of `x` (on the CPU, of the layer's dtype: as
        torch.nn.functional.linear, mixed dtypes are a TypeError), rounded once to that dtype."""
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(
                "StoiccLinear is inference only: call it under torch.no_grad() or torch.inference_mode()"
            )
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"StoiccLinear: expected input [..., {self.in_features}], got {list(x.shape)}")
        if x.dtype != self.dtype:
            raise TypeError(f"StoiccLinear: the layer computes in {self.dtype}, got an input of {x.dtype} "
                            f"(convert it first: x.to({self.dtype}))")  # fmt: skip
        rows = torch.ops.stoicc.linear(
            x.detach().reshape(-1, self.in_features), self.bias, self.handle, self.out_features
        )
        return rows.reshape(*x.shape[:-1], self.out_features)

    def _multiply(self, rows: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """rows [M, in_features] @ weight.T + bias on the kernel: the real implementation of stoicc::linear."""
        if rows.shape[0] == 0:  # kernels take positive sizes only
            return rows.new_empty((0, self.out_features))
        args = (_host(rows), self.stored) if bias is None else (_host(rows), self.stored, _host(bias))
        y = self._kernel()(*args)
        assert isinstance(y, np.ndarray)
        return _tensor(y)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, layout={self.layout}, dtype={self.dtype}")  # fmt: skip


def compress(model: torch.nn.Module, layout: str, select: Selector | None = None,
             generic: bool = False) -> torch.nn.Module:  # fmt: skip
    """Replace, in place, every `torch.nn.Linear` of `model` for which
    `select(qualified_name, linear)` is true (default: all) by
    `StoiccLinear.from_linear(linear, layout, generic)` (generic: one kernel for every shape). Only that exact class is replaced, not
    subclasses (MultiheadAttention's out_proj is read by its owner's own code). Returns
    `model`, or the new module if `model` is itself a selected Linear; copy the model
    first (copy.deepcopy) to keep the original. A layer whose shape the layout cannot
    store raises ValueError naming it, and `model` is left unchanged."""
    if type(model) is torch.nn.Linear:
        return StoiccLinear.from_linear(model, layout, generic) if select is None or select("", model) else model
    replacements = [
        (parent, attr, _replacement(name, linear, layout, generic))
        for parent, attr, name, linear in _linears(model)
        if select is None or select(name, linear)
    ]
    for parent, attr, layer in replacements:  # all built first: an error leaves model unchanged
        setattr(parent, attr, layer)
    return model


def _replacement(name: str, linear: torch.nn.Linear, layout: str, generic: bool) -> StoiccLinear:
    try:
        return StoiccLinear.from_linear(linear, layout, generic)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def _linears(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, str, torch.nn.Linear]]:
    """(parent, attribute, qualified name, layer) of every exact nn.Linear below `model`."""
    return [
        (parent, attr, f"{parent_name}.{attr}" if parent_name else attr, child)
        for parent_name, parent in model.named_modules()
        for attr, child in parent.named_children()
        if type(child) is torch.nn.Linear
    ]
