"""Packed weights on disk: a .safetensors file that any safetensors reader opens.

Each packed tensor NAME is its buffers, stored as tensors `NAME/ROLE` (the storage's roles, in
kernel ABI order) and `NAME/input_scale` if it has one; the header's `__metadata__` holds
`format` ("stoicc_py.packed"), `version` (FORMAT_VERSION), `dense`, a JSON object {NAME: sha256}
of every dense tensor's little-endian bytes, and `tensors`, a JSON object
{NAME: {layout, dtype, shape, buffers, input_scale, sha256}}: the layout as text (parse_layout
reads it), the matrix dtype ("f32", "bf16", "f16", "i8"), the logical [rows, cols], the roles
in order, whether an input scale is stored, and the sha256 of the buffers' bytes in that order
(input scale last). Tensors not named in `tensors` are dense arrays, kept as they are. Any other
`__metadata__` keys are the writer's (e.g. a model's configuration: `extra`), kept as strings.

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
from stoicc_py.tensorfile import read_safetensors, read_safetensors_metadata, write_safetensors

Array = np.ndarray[Any, Any]
FORMAT = "stoicc_py.packed"
FORMAT_VERSION = 2
"""2: dense tensors have checksums too."""
INPUT_SCALE = "input_scale"
DENSE = "dense"
_OWN = ("format", "version", "tensors", DENSE)
"""The __metadata__ keys of the format itself."""
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


def write(path: Path, tensors: Mapping[str, Entry | Array], extra: Mapping[str, str] | None = None) -> None:
    """Packed entries and dense arrays, in their order (load reads them back in it), and the
    `extra` metadata keys (read_extra reads them back)."""
    if clash := sorted((extra or {}).keys() & _OWN):
        raise ValueError(f"{path}: metadata key {clash[0]!r} is the format's own")
    stored: dict[str, Array] = {}
    table: dict[str, dict[str, Any]] = {}
    for name, t in tensors.items():
        buffers = _buffers(path, name, t) if isinstance(t, Entry) else {name: t}
        if clash := sorted(stored.keys() & buffers.keys()):
            raise ValueError(f"{path}: two tensors are named {clash[0]!r} (a dense tensor and a packed one's buffer)")
        stored |= buffers
        if isinstance(t, Entry):
            table[name] = {"layout": t.layout.summary(), "dtype": t.dtype, "shape": list(t.shape),
                           "buffers": list(t.arrays), INPUT_SCALE: t.input_scale is not None,
                           "sha256": checksum(buffers.values())}  # fmt: skip
    dense = {name: checksum([t]) for name, t in tensors.items() if not isinstance(t, Entry)}
    metadata = {**(extra or {}), "format": FORMAT, "version": str(FORMAT_VERSION), "tensors": json.dumps(table),
                DENSE: json.dumps(dense)}  # fmt: skip
    write_safetensors(stored, path, metadata)


def _buffers(path: Path, name: str, e: Entry) -> dict[str, Array]:
    """The tensors that store `e`: NAME/ROLE, and NAME/input_scale last."""
    if parse_layout(e.layout.summary()) != e.layout:  # what load reads back must be this layout
        raise ValueError(f"{path}: tensor {name!r}: layout {e.layout.summary()!r} does not read back as itself")
    if INPUT_SCALE in e.arrays:
        raise ValueError(f"{path}: tensor {name!r}: a buffer role is named {INPUT_SCALE!r}")
    scale = {INPUT_SCALE: e.input_scale} if e.input_scale is not None else {}
    return {f"{name}/{role}": a for role, a in (e.arrays | scale).items()}


def read(path: Path) -> dict[str, Entry | Array]:
    """The packed entries and dense tensors of a file that `write` wrote, in its order."""
    try:
        tensors, metadata = read_safetensors(path)
    except ValueError as err:
        raise ValueError(f"{path}: not a valid .safetensors file: {err}") from None
    table, dense = _table(path, metadata), _json_object(path, metadata, DENSE)
    out: dict[str, Entry | Array] = {}
    for key in list(tensors):
        owner = key.rpartition("/")[0]
        if key not in tensors:  # a buffer of a packed tensor read before
            continue
        if owner not in table:
            out[key] = _dense(path, key, tensors[key], dense)
            continue
        if owner not in out:
            out[owner] = _entry(path, owner, table[owner], tensors)  # pops its buffers
        if key in tensors:
            raise ValueError(f"{path}: tensor {key!r}: not a buffer of packed tensor {owner!r}")
    if missing := [name for name in table if name not in out]:
        raise ValueError(f"{path}: tensor {missing[0]!r}: its buffers are missing")
    return out


def read_extra(path: Path) -> dict[str, str]:
    """The `extra` metadata keys that `write` wrote, reading the file's header alone."""
    try:
        metadata = read_safetensors_metadata(path)
    except ValueError as err:
        raise ValueError(f"{path}: not a valid .safetensors file: {err}") from None
    _table(path, metadata)
    return {k: v for k, v in metadata.items() if k not in _OWN}


def _table(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not a packed-weights file (its __metadata__ has no format {FORMAT!r})")
    if metadata.get("version") != str(FORMAT_VERSION):
        raise ValueError(
            f"{path}: packed-weights format version {metadata.get('version')!r}; this stoicc_py reads {FORMAT_VERSION}"
        )
    table = _json_object(path, metadata, "tensors")
    if not all(isinstance(info, dict) for info in table.values()):
        raise ValueError(f"{path}: its __metadata__ 'tensors' is not a JSON object of objects")
    return table


def _json_object(path: Path, metadata: dict[str, str], key: str) -> dict[str, Any]:
    try:
        value = json.loads(metadata.get(key, ""))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: its __metadata__ {key!r} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: its __metadata__ {key!r} is not a JSON object")
    return value


def _dense(path: Path, name: str, t: Array, checksums: dict[str, Any]) -> Array:
    if name not in checksums:
        raise ValueError(f"{path}: tensor {name!r}: no checksum in the __metadata__ {DENSE!r}")
    if (digest := checksum([t])) != checksums[name]:
        raise ValueError(f"{path}: tensor {name!r}: checksum mismatch (its sha256 is {digest}, the file says "
                         f"{checksums[name]}): the file is corrupt")  # fmt: skip
    return t


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
