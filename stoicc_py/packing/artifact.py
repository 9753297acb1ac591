"""Packed weights on disk: a .safetensors file that any safetensors reader opens.

Each packed tensor NAME is its buffers, stored as tensors `NAME/ROLE` (the storage's roles, in
kernel ABI order) and `NAME/input_scale` if it has one; the header's `__metadata__` holds
`format` ("stoicc_py.packed"), `version` (FORMAT_VERSION) and `tensors`, a JSON object
{NAME: {layout, dtype, shape, buffers, input_scale, sha256}}: the layout as text (parse_layout
reads it), the matrix dtype ("f32", "bf16", "f16", "i8"), the logical [rows, cols], the roles
in order, whether an input scale is stored, and the sha256 of the buffers' bytes in that order
(input scale last). Tensors not named in `tensors` are dense arrays, kept as they are.

`read` checks the file against all of this (it does not know PackedTensor: stoicc_py.packing.tensor
builds and validates those), and every error is a ValueError naming the file and the tensor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stoicc_py.diagnostics import CompileError
from stoicc_py.dialects.layout import LayoutAttr
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.tensorfile import read_safetensors, write_safetensors

Array = np.ndarray[Any, Any]
FORMAT = "stoicc_py.packed"
FORMAT_VERSION = 1
INPUT_SCALE = "input_scale"
_KEYS = {"layout": str, "dtype": str, "shape": list, "buffers": list, "input_scale": bool, "sha256": str}


@dataclass(frozen=True)
class Entry:
    """One packed tensor as stored: `arrays` by role in `buffers` order."""

    layout: LayoutAttr
    dtype: str
    shape: tuple[int, int]
    arrays: dict[str, Array]
    input_scale: Array | None


def checksum(arrays: Iterable[Array]) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a, a.dtype.newbyteorder("<")).view(np.uint8).data)
    return digest.hexdigest()


def write(path: Path, packed: Mapping[str, Entry], dense: Mapping[str, Array]) -> None:
    tensors: dict[str, Array] = {}
    table: dict[str, dict[str, Any]] = {}
    for name, e in packed.items():
        text = e.layout.summary()
        if parse_layout(text) != e.layout:  # what load reads back must be this layout
            raise ValueError(f"{path}: tensor {name!r}: layout {text!r} does not read back as the same layout")
        if INPUT_SCALE in e.arrays:
            raise ValueError(f"{path}: tensor {name!r}: a buffer role is named {INPUT_SCALE!r}")
        stored = e.arrays | ({INPUT_SCALE: e.input_scale} if e.input_scale is not None else {})
        tensors |= {f"{name}/{role}": a for role, a in stored.items()}
        table[name] = {"layout": text, "dtype": e.dtype, "shape": list(e.shape), "buffers": list(e.arrays),
                       INPUT_SCALE: e.input_scale is not None, "sha256": checksum(stored.values())}  # fmt: skip
    if clash := sorted(tensors.keys() & dense.keys()):
        raise ValueError(f"{path}: dense tensor {clash[0]!r} has the name of a packed tensor's buffer")
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), "tensors": json.dumps(table)}
    write_safetensors(tensors | dict(dense), path, metadata)


def read(path: Path) -> tuple[dict[str, Entry], dict[str, Array]]:
    """The packed entries and the dense tensors of a file that `write` wrote."""
    try:
        tensors, metadata = read_safetensors(path)
    except ValueError as err:
        raise ValueError(f"{path}: not a valid .safetensors file: {err}") from None
    table = _table(path, metadata)
    packed = {name: _entry(path, name, info, tensors) for name, info in table.items()}
    if stray := [t for t in tensors if t.rpartition("/")[0] in packed]:
        raise ValueError(f"{path}: tensor {stray[0]!r}: not a buffer of packed tensor {stray[0].rpartition('/')[0]!r}")
    return packed, tensors


def _table(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not a packed-weights file (its __metadata__ has no format {FORMAT!r})")
    if metadata.get("version") != str(FORMAT_VERSION):
        raise ValueError(
            f"{path}: packed-weights format version {metadata.get('version')!r}; this stoicc_py reads {FORMAT_VERSION}"
        )
    try:
        table = json.loads(metadata.get("tensors", ""))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: its __metadata__ 'tensors' is not valid JSON ({err})") from None
    if not isinstance(table, dict) or not all(isinstance(info, dict) for info in table.values()):
        raise ValueError(f"{path}: its __metadata__ 'tensors' is not a JSON object of objects")
    return table


def _entry(path: Path, name: str, info: dict[str, Any], tensors: dict[str, Array]) -> Entry:
    """The entry `name` of the table, its buffers popped from `tensors`."""
    where = f"{path}: tensor {name!r}"
    if info.keys() != _KEYS.keys() or not all(isinstance(info[k], t) for k, t in _KEYS.items()):
        raise ValueError(
            f"{where}: its metadata must have exactly {', '.join(f'{k} ({t.__name__})' for k, t in _KEYS.items())}"
        )
    try:
        layout = parse_layout(info["layout"])
    except CompileError as err:
        raise ValueError(f"{where}: layout {info['layout']!r} does not parse: {err.message}") from None
    shape = info["shape"]
    if len(shape) != 2 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"{where}: shape {shape} is not [rows, cols]")
    roles = [*info["buffers"], *([INPUT_SCALE] if info[INPUT_SCALE] else [])]
    if missing := [r for r in roles if f"{name}/{r}" not in tensors]:
        raise ValueError(f"{where}: buffer '{name}/{missing[0]}' is missing")
    stored = {role: tensors.pop(f"{name}/{role}") for role in roles}
    if (digest := checksum(stored.values())) != info["sha256"]:
        raise ValueError(f"{where}: checksum mismatch (its buffers' sha256 is {digest}, the file says "
                         f"{info['sha256']}): the file is corrupt")  # fmt: skip
    scale = stored.pop(INPUT_SCALE, None)
    return Entry(layout, info["dtype"], (shape[0], shape[1]), stored, scale)
