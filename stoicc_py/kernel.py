"""A compiled kernel as a Python callable on numpy arrays.

Arguments are checked against the kernel's ABI before any pointer reaches native
code: a wrong count, dtype, rank or size raises a TypeError/ValueError that names
the parameter. Size symbols are bound from the arguments and must agree.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stoicc_py.abi import KernelABI, TensorSpec

Array = np.ndarray[Any, Any]
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "i8": np.dtype(np.int8),
    "i32": np.dtype(np.int32),
}


def bind_symbols(abi: KernelABI, arrays: Sequence[Array]) -> dict[str, int]:
    """Check every argument against its spec and return the size of each symbol."""
    sizes: dict[str, int] = {}
    bound_by: dict[str, str] = {}
    for spec, arr in zip(abi.params, arrays):
        if arr.ndim != len(spec.dims):
            raise ValueError(
                f"{abi.name}: parameter '{spec.name}' expects rank {len(spec.dims)} ({spec}), got shape {arr.shape}"
            )
        for axis, (dim, size) in enumerate(zip(spec.dims, arr.shape)):
            if isinstance(dim, int):
                if size != dim:
                    raise ValueError(
                        f"{abi.name}: parameter '{spec.name}' expects size {dim} on axis {axis} ({spec}), got shape {arr.shape}"
                    )
            elif size == 0:
                raise ValueError(
                    f"{abi.name}: parameter '{spec.name}' has an empty axis {axis}; sizes must be positive"
                )
            elif sizes.setdefault(dim, size) != size:
                raise ValueError(
                    f"{abi.name}: size symbol {dim} is {sizes[dim]} from parameter '{bound_by[dim]}' "
                    f"but {size} from parameter '{spec.name}'"
                )
            else:
                bound_by.setdefault(dim, spec.name)
    return sizes


def check_arguments(abi: KernelABI, args: Sequence[object]) -> list[Array]:
    """numpy arrays of the exact dtype, C-contiguous (copied only if they are not)."""
    if len(args) != len(abi.params):
        names = ", ".join(p.name for p in abi.params)
        raise TypeError(f"{abi.name}() takes {len(abi.params)} arguments ({names}), got {len(args)}")
    arrays = []
    for spec, arg in zip(abi.params, args):
        arr = arg if isinstance(arg, np.ndarray) else np.asarray(arg)
        want = NUMPY_DTYPES[spec.dtype]
        if arr.dtype != want:
            raise TypeError(f"{abi.name}: parameter '{spec.name}' expects dtype {want} ({spec}), got {arr.dtype}")
        arrays.append(np.ascontiguousarray(arr))
    return arrays


def result_shape(spec: TensorSpec, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else sizes[d] for d in spec.dims)


class NativeKernel:
    """The entry point of one kernel in a loaded library."""

    def __init__(self, abi: KernelABI, address: int, keepalive: object):
        self.abi = abi
        self._keepalive = keepalive  # the library that owns the code at `address`
        argtypes = [ctypes.c_void_p] * (len(abi.params) + len(abi.results)) + [ctypes.c_int64] * len(abi.symbols)
        self._fn: Callable[..., None] = ctypes.CFUNCTYPE(None, *argtypes)(address)

    def __call__(self, *args: object) -> Array | tuple[Array, ...]:
        arrays = check_arguments(self.abi, args)
        sizes = bind_symbols(self.abi, arrays)
        outs = [np.empty(result_shape(r, sizes), NUMPY_DTYPES[r.dtype]) for r in self.abi.results]
        pointers = [a.ctypes.data for a in (*arrays, *outs)]
        self._fn(*pointers, *(sizes[s] for s in self.abi.symbols))  # ctypes releases the GIL here
        return outs[0] if len(outs) == 1 else tuple(outs)
