"""PyTorch integration (optional: needs `torch`): compiled sparse and quantized
linear layers in place of `torch.nn.Linear`, for inference on the CPU.

    layer = StoiccLinear.from_linear(model.fc, "nm(2, 4)")   # prunes, packs and compiles once
    compress(model, "int4(group=128)")                        # every nn.Linear of model, in place
    with torch.no_grad():
        y = model(x)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

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


@cache
def _linear_kernel(layout: str, in_features: int | str, out_features: int | str, bias: bool) -> Kernel:
    """One compiled kernel per (layout, shape, bias), shared by every layer that has them;
    with size symbols for the shape (generic), one per (layout, bias) for every shape."""
    weight = f"w: f32[{out_features}, {in_features}] @ {layout}"
    params, args = (f"{weight}, b: f32[{out_features}]", "x, w, b") if bias else (weight, "x, w")
    source = f"kernel linear(x: f32[M, {in_features}], {params}) -> f32[M, {out_features}] {{ return linear({args}) }}"
    return compile(source).linear


def _stored_weight(weight: torch.Tensor, layout: str) -> PackedTensor | np.ndarray[Any, Any]:
    """The weight as the kernel reads it: packed (sparse layouts pruned by magnitude to their
    pattern), or for a dense layout a float32 copy that no later change to `weight` touches."""
    out_features, in_features = weight.shape
    attr = parse_layout(layout)
    prune = "magnitude" if isinstance(attr, SparseLayoutAttr | ComposedLayoutAttr) else None
    try:
        if isinstance(attr, DenseLayoutAttr):  # not packed, but held to pack()'s rule on values
            check_finite(weight.detach().numpy(), "the weight")
            return weight.detach().numpy().copy()
        return pack(weight.detach(), attr, prune=prune)
    except ValueError as err:
        raise ValueError(f"Linear({in_features}, {out_features}) cannot take layout {layout}: {err}") from None


class StoiccLinear(torch.nn.Module):
    """A `torch.nn.Linear` whose weight is stored in a layout (sparse, quantized or both)
    and multiplied by a compiled stoicc kernel. Inference only: float32 CPU inputs of any
    leading shape [..., in_features] -> [..., out_features]; it has no parameters to train."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, layout: str, generic: bool = False):
        """`weight` [out_features, in_features] and `bias` [out_features] (or None): float32
        tensors on the CPU, stored in `layout` (layout text, docs/formats.md) once, here.
        `generic`: multiply with the kernel of symbolic dims that every layer of this layout
        shares (one compile for every shape, but the generic loop nests, several times slower
        than the vectorised kernels of static dims: benchmarks/generic.py)."""
        super().__init__()
        if weight.dtype != torch.float32 or weight.device.type != "cpu" or weight.dim() != 2:
            raise TypeError(f"StoiccLinear: the weight must be a 2-D float32 CPU tensor, got "
                            f"{weight.dtype} {list(weight.shape)} on {weight.device}")  # fmt: skip
        self.out_features, self.in_features = weight.shape
        self.layout = layout
        self.generic = generic
        self.stored = _stored_weight(weight, layout)
        self.bias: torch.Tensor | None
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self._kernel()  # compiled now rather than in the first call

    def _kernel(self) -> Kernel:
        # looked up, not held: the module stays plain data (copy.deepcopy, torch.save)
        k, n = ("K", "N") if self.generic else (self.in_features, self.out_features)
        return _linear_kernel(self.layout, k, n, self.bias is not None)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, layout: str, generic: bool = False) -> StoiccLinear:
        """A StoiccLinear computing `linear` with its weight in `layout`: pruned by magnitude to a
        sparse layout's pattern, rounded to a quantized one. `linear` is left unchanged."""
        return cls(linear.weight, linear.bias, layout, generic)

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight [out_features, in_features]: the pruned and dequantized values
        the kernel multiplies by (a new tensor: changing it changes nothing)."""
        stored = self.stored
        return torch.from_numpy(stored.dequantize() if isinstance(stored, PackedTensor) else stored.copy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x @ weight.T + bias over the last axis of `x` (float32, on the CPU)."""
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(
                "StoiccLinear is inference only: call it under torch.no_grad() or torch.inference_mode()"
            )
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"StoiccLinear: expected input [..., {self.in_features}], got {list(x.shape)}")
        rows = x.detach().reshape(-1, self.in_features)
        out_shape = (*x.shape[:-1], self.out_features)
        if rows.shape[0] == 0:  # kernels take positive sizes only
            return x.new_empty(out_shape)
        args = (rows, self.stored) if self.bias is None else (rows, self.stored, self.bias)
        y = self._kernel()(*args)
        assert isinstance(y, np.ndarray)
        return torch.from_numpy(y).reshape(out_shape)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, layout={self.layout}")  # fmt: skip


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
