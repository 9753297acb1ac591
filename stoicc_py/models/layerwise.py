"""Layer-by-layer compression of any model made of layers of linear projections, as GPTQ
calibrates: calibration batches run through the model one layer at a time, each layer's
projections packed from the Hessians of their inputs there, then the batches advanced through
the compressed layer, so that every layer is calibrated on what the compressed layers before
it give it. Projections that read the same input (q, k and v) share one Hessian; memory is
one layer's Hessians.

A model plugs in a `run(i, weights, batch, hook)`: its layer i with projection `weights` on a
calibration batch, calling `hook(name, x)` with each projection's input x [rows, in] (the
rows that count: padding dropped), returning the batch for the next layer. The hook may
raise once it has read every input it needs (the rest of the layer is not computed): `run`
lets the exception through.
stoicc_py.models.bert.compress_minilm runs MiniLM on it, stoicc_py.models.llama_model.
compress_model LLaMA's decoder layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from stoicc_py.models.weights import Array
from stoicc_py.packing import PackedTensor, pack
from stoicc_py.packing.hessian import HessianAccumulator
from stoicc_py.packing.methods import DATA_METHODS

Batch = TypeVar("Batch")
Hook = Callable[[str, Array], None]
Rule = tuple[str, str | None]
"""(layout text, pack() method; None: pack's default). A layout "dense" keeps the projection."""


@dataclass
class Layerwise(Generic[Batch]):
    """A model as compress_layers takes it."""

    layers: Sequence[Mapping[str, Array]]
    """Per layer, its projections' weights [out, in] by the names `run` gives the hook."""
    input_of: Mapping[str, str]
    """Each projection's input: projections of the same input share its Hessian."""
    run: Callable[[int, Mapping[str, Array], Batch, Hook | None], Batch]


@dataclass
class Compressed:
    packed: list[dict[str, PackedTensor]]
    """Per layer, its packed projections."""
    layers: list[dict[str, Array]]
    """Per layer, its projections' weights as the packed tensors hold them (unpacked)."""


def compress_layers(model: Layerwise[Batch], rules: Sequence[Mapping[str, Rule]], batches: Sequence[Batch],
                    stages: Sequence[Sequence[str]] = (), **options: Any) -> Compressed:  # fmt: skip
    """Layer i's projections packed as rules[i] says (a name it lacks stays as it is) with pack()
    `options`, each projection whose method reads one (reads_hessian) from the Hessian of its inputs
    over the `batches`, run through the compressed layers before it. `stages` (GPTQ's
    true-sequential order: the layer's projections in the order their inputs are computed)
    packs a stage from inputs computed with the stages before it compressed, a pass per stage;
    without, every input comes from one pass with the layer's original weights."""
    if len(rules) != len(model.layers):
        raise ValueError(f"{len(rules)} layers of rules for a model of {len(model.layers)} layers")
    out = Compressed([], [])
    reads = any(reads_hessian(method, options) for rule in rules for _, method in rule.values())
    for i, (layer, rule) in enumerate(zip(model.layers, rules)):
        current, done = dict(layer), {}
        for stage in stages or [list(rule)]:
            todo = {name: rule[name] for name in stage if name in rule and rule[name][0] != "dense"}
            data = {model.input_of[name] for name, (_, method) in todo.items() if reads_hessian(method, options)}
            hessians = input_hessians(model, i, current, batches, data) if data else {}
            for name, (layout, method) in todo.items():
                h = hessians[model.input_of[name]] if reads_hessian(method, options) else None
                done[name] = pack(layer[name], layout, method=method, hessian=h, **options)
                current[name] = done[name].unpack()
        if reads and i + 1 < len(model.layers):  # the next layer's calibration inputs
            batches = [model.run(i, current, b, None) for b in batches]
        out.packed.append(done)
        out.layers.append(current)
    return out


def input_hessians(model: Layerwise[Batch], i: int, layer: Mapping[str, Array], batches: Sequence[Batch],
                   inputs: set[str]) -> dict[str, Array]:  # fmt: skip
    """The Hessians 2 x^T x / n of `inputs` (input_of's values) of layer i with weights `layer`
    over `batches`; a shared input is read at the first projection that reads it."""
    acc: dict[str, HessianAccumulator] = {}
    reader: dict[str, str] = {}  # input -> the projection whose input is read (once, not once per sharer)
    read: set[str] = set()

    def hook(name: str, x: Array) -> None:
        key = model.input_of[name]
        if key in inputs and reader.setdefault(key, name) == name:
            acc.setdefault(key, HessianAccumulator(x.shape[1])).add(x)
            read.add(key)
            if read == inputs:
                raise _InputsRead

    for b in batches:
        read.clear()
        try:
            model.run(i, layer, b, hook)
        except _InputsRead:
            pass
    return {key: a.hessian() for key, a in acc.items()}


def reads_hessian(method: str | None, options: Mapping[str, Any]) -> bool:
    """A method of DATA_METHODS, or a hybrid plan="auto" (plan_hybrid's tiles, scored on the Hessian)."""
    return method in DATA_METHODS or options.get("plan") == "auto"


class _InputsRead(Exception):
    """Raised by input_hessians' hook once a batch has given all the inputs it reads: the rest of
    the layer is not computed (a true-sequential stage reads part of a layer only)."""
