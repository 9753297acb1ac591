"""A compressed LLaMA-family model in one packed-weights file (stoicc_py.save_packed), as
`stoicc compress MODEL.gguf` writes it, and loaded back to run.

Tensors are named as in the GGUF file (`token_embd.weight`, `blk.{i}.attn_q.weight`, ...,
`output_norm.weight`, `output.weight` when untied): the packed projections as packed tensors,
the rest dense float32. q and k rows are in Hugging Face's order (RoPE rotating halves, as
stoicc_py.models.llama's block computes), not llama.cpp's interleaved pairs. The header's
metadata holds the LlamaConfig (key CONFIG_KEY, JSON); the tokenizer stays in the GGUF file.

    model = load_llama("model.packed.safetensors")
    CompiledLlama(model.weights, model.layouts, packed=model.packed)   # the compiled layers
    NumpyLlama(model.weights)                                          # the same model in numpy
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stoicc_py.models.gguf_llama import GGUF_NAMES
from stoicc_py.models.llama import BLOCK_WEIGHTS, LlamaConfig
from stoicc_py.models.llama_model import ATTN, INPUT_OF, LlamaWeights
from stoicc_py.models.weights import Array
from stoicc_py.packing import PackedTensor, load_packed, packed_metadata, save_packed

CONFIG_KEY = "stoicc_py.llama"
"""The metadata key of the model's configuration (LlamaConfig's fields as a JSON object)."""
MLP = tuple(n for n in INPUT_OF if n not in ATTN)
EMBED, NORM, LM_HEAD = "token_embd.weight", "output_norm.weight", "output.weight"


def layer_name(i: int, name: str) -> str:
    """The file's name of weight `name` (BLOCK_WEIGHTS) of layer i: `blk.{i}.{GGUF name}.weight`."""
    return f"blk.{i}.{GGUF_NAMES[name]}.weight"


def llama_arrays(weights: LlamaWeights) -> dict[str, Array]:
    """Every tensor of the model by its file name, in the file's order."""
    arrays = {EMBED: weights.embed}
    for i, layer in enumerate(weights.layers):
        arrays |= {layer_name(i, n): layer[n] for n in BLOCK_WEIGHTS}
    arrays[NORM] = weights.norm
    if weights.lm_head is not weights.embed:
        arrays[LM_HEAD] = weights.lm_head
    return arrays


def llama_tensors(weights: LlamaWeights, packed: Sequence[dict[str, PackedTensor]]) -> dict[str, PackedTensor | Array]:
    """llama_arrays, with the projections of `packed` (per layer, as compress_model gives them) packed."""
    by_name = {layer_name(i, n): t for i, p in enumerate(packed) for n, t in p.items()}
    return {name: by_name.get(name, a) for name, a in llama_arrays(weights).items()}


def save_llama(path: str | os.PathLike[str], weights: LlamaWeights, packed: Sequence[dict[str, PackedTensor]]) -> Path:
    """Write the model `weights` with the projections of `packed` packed (load_llama reads it)."""
    config = json.dumps(dataclasses.asdict(weights.config))
    return save_packed(llama_tensors(weights, packed), Path(path), {CONFIG_KEY: config})


@dataclass
class PackedLlama:
    weights: LlamaWeights
    """The model with the values the packed projections hold (unpacked): NumpyLlama runs it."""
    layouts: list[tuple[str, str]]
    """Per layer, (attention projections' layout, MLP's) as layout text: CompiledLlama's."""
    packed: list[dict[str, PackedTensor]]
    """Per layer, its packed projections: CompiledLlama(..., packed=)."""


def load_llama(path: str | os.PathLike[str]) -> PackedLlama:
    """The model that save_llama (`stoicc compress MODEL.gguf`) wrote to `path`. A file that is
    not one, or is corrupt (stoicc_py.load_packed's checks), is a ValueError naming it."""
    path = Path(path)
    config = _config(path, packed_metadata(path).get(CONFIG_KEY))
    tensors = load_packed(path)
    n = len({name.split(".")[1] for name in tensors if name.startswith("blk.")})
    expected = [EMBED, *(layer_name(i, name) for i in range(n) for name in BLOCK_WEIGHTS), NORM]
    if missing := [name for name in expected if name not in tensors]:
        raise ValueError(f"{path}: tensor {missing[0]!r} is missing (a LLaMA model of {n} layers)")
    layers, packed = [], []
    for i in range(n):
        stored = {name: tensors[layer_name(i, name)] for name in BLOCK_WEIGHTS}
        packed.append({name: t for name, t in stored.items() if isinstance(t, PackedTensor)})
        layers.append({name: t.unpack() if isinstance(t, PackedTensor) else t for name, t in stored.items()})
    layouts = [_layouts(path, i, p) for i, p in enumerate(packed)]
    embed = _dense(path, tensors, EMBED)
    lm_head = _dense(path, tensors, LM_HEAD) if LM_HEAD in tensors else embed
    return PackedLlama(LlamaWeights(config, embed, layers, _dense(path, tensors, NORM), lm_head), layouts, packed)


def _config(path: Path, text: str | None) -> LlamaConfig:
    if text is None:
        raise ValueError(f"{path}: no {CONFIG_KEY!r} metadata: not a LLaMA model that stoicc compress wrote")
    try:
        return LlamaConfig(**json.loads(text))
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{path}: metadata {CONFIG_KEY!r} is not a LlamaConfig ({err})") from None


def _dense(path: Path, tensors: dict[str, PackedTensor | Array], name: str) -> Array:
    t = tensors[name]
    if isinstance(t, PackedTensor):
        raise ValueError(f"{path}: tensor {name!r} is packed; a LLaMA model keeps it dense")
    return t


def _layouts(path: Path, i: int, packed: dict[str, PackedTensor]) -> tuple[str, str]:
    """Layer i's (attention, MLP) layouts: each group's projections are packed alike or all dense."""
    pair = []
    for group in (ATTN, MLP):
        layouts = {packed[n].layout.summary() if n in packed else "dense" for n in group}
        if len(layouts) != 1:
            raise ValueError(f"{path}: layer {i}: projections {', '.join(group)} have layouts {sorted(layouts)}, "
                             "not one (the compiled decoder block takes one per group)")  # fmt: skip
        pair.append(layouts.pop())
    return pair[0], pair[1]
