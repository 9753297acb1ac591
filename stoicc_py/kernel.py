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
from stoicc_py.packing import PackedTensor, pack

Array = np.ndarray[Any, Any]
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "i8": np.dtype(np.int8),
    "i32": np.dtype(np.int32),
}


Argument = Array | PackedTensor


def bind_symbols(abi: KernelABI, arrays: Sequence[Argument]) -> dict[str, int]:
    """Check every dense argument against its spec and return the size of each symbol."""
    sizes: dict[str, int] = {}
    bound_by: dict[str, str] = {}
    for spec, arr in zip(abi.params, arrays):
        if isinstance(arr, PackedTensor):
            continue  # checked against its static dims when it was prepared
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


def check_arguments(abi: KernelABI, args: Sequence[object]) -> list[Argument]:
    """Dense parameters as numpy arrays of the exact dtype, C-contiguous (copied only
    if they are not); non-dense ones as validated PackedTensors (a dense array is
    packed here, a convenience that costs a pack per call)."""
    if len(args) != len(abi.params):
        names = ", ".join(p.name for p in abi.params)
        raise TypeError(f"{abi.name}() takes {len(abi.params)} arguments ({names}), got {len(args)}")
    prepared: list[Argument] = []
    for spec, arg in zip(abi.params, args):
        if isinstance(arg, PackedTensor):
            prepared.append(checked_packed(abi, spec, arg))
            continue
        arr = arg if isinstance(arg, np.ndarray) else np.asarray(arg)
        want = NUMPY_DTYPES[spec.dtype]
        if arr.dtype != want:
            raise TypeError(f"{abi.name}: parameter '{spec.name}' expects dtype {want} ({spec}), got {arr.dtype}")
        if spec.is_dense:
            prepared.append(np.ascontiguousarray(arr))
        else:
            prepared.append(checked_packed(abi, spec, pack_for(abi, spec, arr)))
    return prepared


def pack_for(abi: KernelABI, spec: TensorSpec, w: Array, **options: Any) -> PackedTensor:
    """Pack `w` in the layout of parameter `spec`."""
    if w.shape != spec.dims:
        raise ValueError(f"{abi.name}: parameter '{spec.name}' expects shape {spec.dims} ({spec}), got {w.shape}")
    try:
        return pack(w, spec.layout, **options)
    except ValueError as err:
        raise ValueError(f"{abi.name}: parameter '{spec.name}': {err}") from None


def checked_packed(abi: KernelABI, spec: TensorSpec, packed: PackedTensor) -> PackedTensor:
    """Refuse a packed tensor that the kernel would read wrongly."""
    where = f"{abi.name}: parameter '{spec.name}'"
    if spec.is_dense or packed.layout.summary() != spec.layout:
        raise ValueError(f"{where} expects layout {spec.layout}, got a tensor packed as {packed.layout.summary()}")
    if packed.shape != spec.dims:
        raise ValueError(f"{where} expects shape {spec.dims}, got a packed tensor of shape {packed.shape}")
    for buf, arr in zip(spec.buffers, packed.buffers(), strict=True):
        static = all(d in (-1, a) for d, a in zip(buf.shape, arr.shape))
        if arr.dtype != np.dtype(buf.dtype) or arr.ndim != len(buf.shape) or not static:
            raise ValueError(
                f"{where}: buffer '{buf.role}' must be {buf.dtype}{list(buf.shape)}, got {arr.dtype}{list(arr.shape)}"
            )
    try:
        packed.validate()
    except ValueError as err:
        raise ValueError(f"{where}: corrupt packed tensor: {err}") from None
    return packed


def dense_values(args: Sequence[Argument]) -> list[Array]:
    """The logical values of prepared arguments, for the reference interpreter."""
    return [a.unpack() if isinstance(a, PackedTensor) else a for a in args]


def pointers(args: Sequence[Argument]) -> list[int]:
    return [b.ctypes.data for a in args for b in (a.buffers() if isinstance(a, PackedTensor) else [a])]


def result_shape(spec: TensorSpec, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else sizes[d] for d in spec.dims)


class NativeKernel:
    """The entry point of one kernel in a loaded library."""

    def __init__(self, abi: KernelABI, address: int, keepalive: object):
        self.abi = abi
        self._keepalive = keepalive  # the library that owns the code at `address`
        inputs = sum(len(p.buffers) or 1 for p in abi.params)
        argtypes = [ctypes.c_void_p] * (inputs + len(abi.results)) + [ctypes.c_int64] * len(abi.symbols)
        self._fn: Callable[..., None] = ctypes.CFUNCTYPE(None, *argtypes)(address)

    def __call__(self, *args: object) -> Array | tuple[Array, ...]:
        prepared = check_arguments(self.abi, args)
        sizes = bind_symbols(self.abi, prepared)
        outs = [np.empty(result_shape(r, sizes), NUMPY_DTYPES[r.dtype]) for r in self.abi.results]
        # `prepared` and `outs` keep every buffer alive across the call.
        self._fn(*pointers([*prepared, *outs]), *(sizes[s] for s in self.abi.symbols))  # releases the GIL
        return outs[0] if len(outs) == 1 else tuple(outs)
