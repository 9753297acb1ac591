"""Named weight tensors on disk: .safetensors or .npz, and single arrays in .npy files,
with numpy and ml_dtypes only (bf16 included, which the safetensors package's numpy API
lacks).

Loading refuses pickled objects, and any file that does not decode is a ValueError
`FILE: not a valid .npz file (...)` (a file that cannot be opened stays an OSError)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from stoicc_py.tensorfile import read_safetensors, write_safetensors

Array = np.ndarray[Any, Any]
Weights = dict[str, Array]
SUFFIXES = (".safetensors", ".npz")
# How numpy's files start; numpy takes any other start for a pickle (and refuses it in words about pickles).
_MAGIC = {".npz": b"PK", ".npy": b"\x93NUMPY"}
_BF16 = np.dtype(ml_dtypes.bfloat16)


def load_weights(path: str | Path) -> Weights:
    """Every tensor of a .safetensors or .npz file, by name."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: weights must be a {' or '.join(SUFFIXES)} file")
    if path.suffix == ".safetensors":
        with _decoding(path, ".safetensors"):
            return read_safetensors(path)[0]
    with _decoding(path, ".npz"), np.load(path, allow_pickle=False) as archive:
        return {name: _npz_array(archive[name]) for name in archive.files}


def _npz_array(array: Array) -> Array:
    """numpy records an ml_dtypes.bfloat16 array as 2-byte voids ('<V2'): read it back as bfloat16."""
    return array.view(_BF16) if array.dtype == np.dtype("V2") else array


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
        write_safetensors(weights, path)
    else:
        raise ValueError(f"{path}: weights must be a {' or '.join(SUFFIXES)} file")
    return path
