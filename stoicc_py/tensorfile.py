"""The .safetensors file format, read and written with numpy and ml_dtypes alone (bf16 included,
which the safetensors package's numpy API lacks): an 8-byte little-endian header length, a JSON
header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the data.

Used by stoicc_py.models.weights (named weight tensors) and stoicc_py.packing.artifact (packed
tensors). Errors are ValueErrors that name the tensor, not the file: callers add the file."""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


@functools.cache
def safetensors_dtypes() -> dict[str, np.dtype[Any]]:
    """The safetensors dtype codes (the format is little-endian) as numpy dtypes. A function,
    so that ml_dtypes (~0.7 s of CPU to import) loads only when a file is read or written."""
    import ml_dtypes

    return {
        code: np.dtype(t).newbyteorder("<")
        for code, t in {
            "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
            "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2, "I64": np.int64, "I32": np.int32,
            "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
            "BOOL": np.bool_,
        }.items()
    }  # fmt: skip


METADATA = "__metadata__"


def read_safetensors(path: Path) -> tuple[dict[str, Array], dict[str, str]]:
    """The tensors of a .safetensors file by name (writable arrays, as np.load gives), and its
    __metadata__ (empty if it has none)."""
    data = bytearray(path.read_bytes())
    length = _length(data, len(data))
    header, metadata = _header(data, length)
    body = memoryview(data)[8 + length :]
    return {name: _tensor(name, info, body) for name, info in header.items()}, metadata


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The __metadata__ of a .safetensors file, reading its header alone."""
    size = path.stat().st_size
    with path.open("rb") as f:
        start = f.read(8)
        length = _length(start, size)
        return _header(start + f.read(length), length)[1]


def _length(data: bytes | bytearray, size: int) -> int:
    """The header length that the first 8 bytes of a file of `size` bytes give."""
    (length,) = struct.unpack_from("<Q", data) if len(data) >= 8 else (-1,)
    if not 0 <= length <= size - 8:
        raise ValueError(f"its header length {length} does not fit its {size} bytes")
    return int(length)


def _header(data: bytes | bytearray, length: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors' entries and the __metadata__ of the `length`-byte header after data's first 8 bytes."""
    try:
        header = json.loads(data[8 : 8 + length].decode())
    except UnicodeDecodeError:
        raise ValueError("its header is not UTF-8 JSON") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"its header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    metadata = header.pop(METADATA, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"its {METADATA} is not an object of strings")
    return header, metadata


def _tensor(name: str, info: object, body: memoryview) -> Array:
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise ValueError(f"tensor {name!r}: its header entry lacks dtype, shape or data_offsets")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if code not in safetensors_dtypes():
        raise ValueError(f"tensor {name!r} has dtype {code}, which numpy cannot hold")
    if not _ints(shape) or not _ints(offsets) or len(offsets) != 2:
        raise ValueError(f"tensor {name!r}: shape {shape} or data_offsets {offsets} are not lists of integers")
    dtype, (begin, end) = safetensors_dtypes()[code], offsets
    if not 0 <= begin <= end <= len(body) or end - begin != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"tensor {name!r}: data_offsets {[begin, end]} do not hold {code}{shape} in {len(body)} bytes")
    return np.frombuffer(body[begin:end], dtype).reshape(shape)


def _ints(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and v >= 0 for v in value)


def write_safetensors(tensors: Mapping[str, Array], path: Path, metadata: Mapping[str, str] | None = None) -> None:
    codes = {dtype: code for code, dtype in safetensors_dtypes().items()}
    header: dict[str, Any] = {METADATA: dict(metadata)} if metadata else {}
    chunks: list[bytes] = []
    offset = 0
    for name, w in tensors.items():
        array = np.asarray(w)
        code = codes.get(array.dtype.newbyteorder("<"))
        if code is None:
            raise ValueError(f"{path}: tensor {name!r} has dtype {array.dtype}, which safetensors cannot store")
        chunks.append(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(chunks[-1])]}
        offset += len(chunks[-1])
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the format recommends
    path.write_bytes(b"".join([struct.pack("<Q", len(text)), text, *chunks]))
