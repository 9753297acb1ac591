"""Named weight tensors on disk: .safetensors (needs the `safetensors` package, the
`models` extra) or .npz (numpy only)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
Weights = dict[str, Array]
SUFFIXES = (".safetensors", ".npz")


def load_weights(path: str | Path) -> Weights:
    """Every tensor of a .safetensors or .npz file, by name."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    if path.suffix == ".safetensors":
        return _safetensors().load_file(str(path))
    raise ValueError(f"{path}: weights must be a {' or '.join(SUFFIXES)} file")


def save_weights(weights: Mapping[str, Array], path: str | Path) -> Path:
    """Write `weights` to a .safetensors or .npz file (chosen by the suffix of `path`)."""
    path = Path(path)
    if path.suffix == ".npz":
        np.savez(path, **weights)
    elif path.suffix == ".safetensors":
        _safetensors().save_file({name: np.ascontiguousarray(w) for name, w in weights.items()}, str(path))
    else:
        raise ValueError(f"{path}: weights must be a {' or '.join(SUFFIXES)} file")
    return path


def _safetensors() -> Any:
    try:
        import safetensors.numpy
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "reading or writing .safetensors needs the safetensors package: pip install -e '.[models]'"
        ) from None
    return safetensors.numpy
