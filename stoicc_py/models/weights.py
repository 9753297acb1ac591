"""Named weight tensors on disk: .safetensors or .npz, and single arrays in .npy files,
with numpy and ml_dtypes only (bf16 included, which the safetensors package's numpy API
lacks).

Loading refuses pickled objects, and any file that does not decode is a ValueError
`FILE: not a valid .npz file (...)` (a file that cannot be opened stays an OSError)."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

Array = np.ndarray[Any, Any]
Weights = dict[str, Array]
SUFFIXES = (".safetensors", ".npz")
# How numpy's files start; numpy takes any other start for a pickle (and refuses it in words about pickles).
_MAGIC = {".npz": b"PK", ".npy": b"\x93NUMPY"}
SAFETENSORS_DTYPES: dict[str, np.dtype[Any]] = {
    code: np.dtype(t).newbyteorder("<")
    for code, t in {
        "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
        "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2, "I64": np.int64, "I32": np.int32,
        "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
        "BOOL": np.bool_,
    }.items()
}  # fmt: skip
"""The safetensors dtype codes (the format is little-endian) as numpy dtypes."""
_BF16 = np.dtype(ml_dtypes.bfloat16)


def load_weights(path: str | Path) -> Weights:
    """Every tensor of a .safetensors or .npz file, by name."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: weights must be a {' or '.join(SUFFIXES)} file")
    if path.suffix == ".safetensors":
        with _decoding(path, ".safetensors"):
            return _read_safetensors(path)
    with _decoding(path, ".npz"), np.load(path, allow_pickle=False) as archive:
        return {name: _npz_array(archive[name]) for name in archive.files}


def _npz_array(array: Array) -> Array:
    """numpy records an ml_dtypes.bfloat16 array as 2-byte voids ('<V2'): read it back as bfloat16."""
    return array.view(_BF16) if array.dtype == np.dtype("V2") else array


def _read_safetensors(path: Path) -> Weights:
    """The tensors of a .safetensors file: an 8-byte little-endian header length, a JSON
    header {name: {dtype, shape, data_offsets}} (and optional __metadata__), the data."""
    data = bytearray(path.read_bytes())  # writable, as arrays from np.load are
    (length,) = struct.unpack_from("<Q", data) if len(data) >= 8 else (-1,)
    if not 0 <= length <= len(data) - 8:
        raise ValueError(f"its header length {length} does not fit its {len(data)} bytes")
    try:
        header = json.loads(data[8 : 8 + length].decode())
    except UnicodeDecodeError:
        raise ValueError("its header is not UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    body = memoryview(data)[8 + length :]
    weights: Weights = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {info['dtype']}, which numpy cannot hold")
        dtype, shape, (begin, end) = SAFETENSORS_DTYPES[info["dtype"]], info["shape"], info["data_offsets"]
        if not 0 <= begin <= end <= len(body) or end - begin != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"tensor {name!r}: data_offsets {[begin, end]} do not hold {info['dtype']}{shape}")
        weights[name] = np.frombuffer(body[begin:end], dtype).reshape(shape)
    return weights


def _write_safetensors(weights: Mapping[str, Array], path: Path) -> None:
    codes = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, w in weights.items():
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


def load_array(path: str | Path) -> Array:
    """The array of a .npy file."""
    with _decoding(Path(path), ".npy"):
        array = np.load(path, allow_pickle=False)
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise ValueError(f"{path}: not a valid .npy file (an .npz archive of several arrays)")
    return array


@contextmanager
def _decoding(path: Path, kind: str) -> Iterator[None]:
    """Any failure to decode `path` as a `kind` file as one ValueError naming the file; numpy and
    safetensors raise many types (ValueError, EOFError, BadZipFile, SafetensorError...)."""
    magic = _MAGIC.get(kind, b"")
    with open(path, "rb") as f:  # an OSError (missing, a directory...) is the caller's, as it is
        start = f.read(len(magic))
    if start != magic:
        raise ValueError(f"{path}: not a valid {kind} file (it does not start as one)")
    try:
        yield
    except OSError:
        raise
    except Exception as err:
        raise ValueError(f"{path}: not a valid {kind} file ({type(err).__name__}: {err})") from None


def save_weights(weights: Mapping[str, Array], path: str | Path) -> Path:
    """Write `weights` to a .safetensors or .npz file (chosen by the suffix of `path`);
    bfloat16 and float16 arrays keep their dtype (load_weights reads them back)."""
    path = Path(path)
    if path.suffix == ".npz":
        np.savez(path, allow_pickle=False, **weights)  # as load_weights reads them
    elif path.suffix == ".safetensors":
        _write_safetensors(weights, path)
    else:
        raise ValueError(f"{path}: weights must be a {' or '.join(SUFFIXES)} file")
    return path
