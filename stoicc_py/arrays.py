"""Host arrays from what callers pass: numpy arrays, DLPack producers (PyTorch,
JAX, ...), and objects with `__array__` or the buffer protocol.

`host_array` returns a numpy view of the caller's memory whenever the producer
allows one; it never casts or copies itself. Callers decide what they need on top
(kernel.py: the exact dtype, then C order, copying only a strided view).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
DLPACK_CPU = 1
"""DLDeviceType.kDLCPU: the only device whose memory native code can read."""


def host_array(arg: object, what: str) -> Array:
    """`arg` as a numpy array over the same memory when possible. `what` names the
    argument in errors: ValueError for memory on another device, TypeError for an
    object that does not export an array (or exports a dtype numpy lacks)."""
    if isinstance(arg, np.ndarray):
        return arg
    if hasattr(arg, "__dlpack__"):
        return _from_dlpack(arg, what)
    try:
        return np.asarray(arg)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{what}: cannot read a {type(arg).__name__} as an array: {err}") from None


def _from_dlpack(arg: Any, what: str) -> Array:
    try:
        device = arg.__dlpack_device__()[0] if hasattr(arg, "__dlpack_device__") else DLPACK_CPU
    except (TypeError, ValueError, RuntimeError) as err:  # torch: "Unknown device type meta for Dlpack"
        raise ValueError(f"{what}: not in host memory: {err}") from None
    if device != DLPACK_CPU:
        raise ValueError(
            f"{what}: the {type(arg).__name__} is on DLPack device {device!s}, not the CPU; copy it to the host first"
        )
    try:
        return np.from_dlpack(arg)
    except (BufferError, TypeError, ValueError, RuntimeError) as err:  # torch: requires grad, bfloat16
        dtype = getattr(arg, "dtype", "?")
        raise TypeError(f"{what}: cannot read a {type(arg).__name__} of dtype {dtype} through DLPack: {err}") from None
