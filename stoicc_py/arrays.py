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
    # numpy accepts host memory only (without device="cpu" it asks for no transfer), so a
    # success needs no device check; a failure is explained by the producer's device.
    try:
        return np.from_dlpack(arg)
    except (BufferError, TypeError, ValueError, RuntimeError) as err:  # torch: requires grad, bfloat16, a GPU
        raise _unreadable(arg, what, err) from None


def _unreadable(arg: Any, what: str, err: Exception) -> Exception:
    """ValueError for memory off the host, else TypeError with the producer's reason."""
    try:
        device = arg.__dlpack_device__()[0]
    except (AttributeError, TypeError, ValueError, RuntimeError) as device_err:  # torch: "Unknown device type meta"
        return ValueError(f"{what}: not in host memory: {device_err}")
    if device != DLPACK_CPU:
        return ValueError(
            f"{what}: the {type(arg).__name__} is on DLPack device {device!s}, not the CPU; copy it to the host first"
        )
    dtype = getattr(arg, "dtype", "?")
    return TypeError(f"{what}: cannot read a {type(arg).__name__} of dtype {dtype} through DLPack: {err}")
