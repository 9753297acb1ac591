"""Host arrays from what callers pass: numpy arrays, DLPack producers (PyTorch,
JAX, ...), and objects with `__array__` or the buffer protocol.

`host_array` returns a numpy view of the caller's memory whenever the producer
allows one; it never casts or copies itself. Callers decide what they need on top
(kernel.py: the exact dtype, then C order, copying only a strided view).
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

Array = np.ndarray[Any, Any]
DLPACK_CPU = 1
"""DLDeviceType.kDLCPU: the only device whose memory native code can read."""


@functools.cache
def bf16_dtype() -> np.dtype[Any]:
    """numpy's bfloat16 dtype (ml_dtypes'), imported on first use: importing ml_dtypes costs
    ~0.7 s of CPU, which a compile, and every kernel without bf16, never needs."""
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


class _NumpyDtypes(Mapping[str, np.dtype[Any]]):
    """The numpy dtype of each .tdsl dtype; bf16's resolved only when asked for (bf16_dtype())."""

    _EAGER: dict[str, np.dtype[Any]] = {
        "f32": np.dtype(np.float32), "f16": np.dtype(np.float16), "i8": np.dtype(np.int8),
        "i32": np.dtype(np.int32), "bool": np.dtype(np.bool_),  # one byte, 0 or 1, as the kernels store it
    }  # fmt: skip
    _NAMES = ("f32", "bf16", "f16", "i8", "i32", "bool")

    def __getitem__(self, name: str) -> np.dtype[Any]:
        return bf16_dtype() if name == "bf16" else self._EAGER[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)


NUMPY_DTYPES: Mapping[str, np.dtype[Any]] = _NumpyDtypes()


def _data_field() -> int | None:
    """The offset of an ndarray's data pointer in its object, if reading it there gives
    `ctypes.data` (checked on a probe): numpy's public PyArrayObject_fields struct is
    PyObject_HEAD, then `char *data`; id() is the object's address on CPython only."""
    if sys.implementation.name != "cpython":
        return None
    probe = np.empty(3)
    offset = object.__basicsize__  # sizeof(PyObject): 16, more in debug or free-threaded builds
    return offset if ctypes.c_void_p.from_address(id(probe) + offset).value == probe.ctypes.data else None


def _read_pointers(offset: int) -> Callable[[Iterable[Array]], list[int]]:
    def data_pointers(arrays: Iterable[Array]) -> list[int]:
        return [_field(i + offset).value or 0 for i in map(id, arrays)]

    return data_pointers


def _ctypes_pointers(arrays: Iterable[Array]) -> list[int]:
    return [int(a.ctypes.data) for a in arrays]


_field = ctypes.c_void_p.from_address
DATA_OFFSET = _data_field()
"""Where an ndarray object holds its data pointer (bytes from id()), None if not found."""
data_pointers: Callable[[Iterable[Array]], list[int]] = (
    _ctypes_pointers if DATA_OFFSET is None else _read_pointers(DATA_OFFSET)
)
"""The address of each array's first element, as `a.ctypes.data` gives it, but read from the
array's own field where the probe found it: `a.ctypes` builds a Python object per call, ~8x
the cost, which a small kernel call with five buffers would pay five times."""


class ArrayFields(NamedTuple):
    """Where an ndarray object holds its rank (int), its shape (a pointer to `nd` int64), its dtype
    (the descr object) and its flags (int), in bytes from id(): numpy's PyArrayObject_fields
    after `data` (nd, dimensions, strides, base, descr, flags)."""

    nd: int
    dims: int
    descr: int
    flags: int


C_CONTIGUOUS, WRITEABLE = 0x0001, 0x0400
"""numpy's NPY_ARRAY_C_CONTIGUOUS and NPY_ARRAY_WRITEABLE flag bits."""


def _array_fields() -> ArrayFields | None:
    """ArrayFields, if reading them on probes gives what numpy says (rank, shape, dtype and the
    two flags, the writeable one before and after it is cleared); None elsewhere."""
    if DATA_OFFSET is None:
        return None
    word = 8 if sys.maxsize > 2**32 else 4
    fields = ArrayFields(*(DATA_OFFSET + word * i for i in (1, 2, 5, 6)))
    probe = np.empty((3, 5, 7), np.float32)
    readable = _fields_read(probe, fields)
    probe.flags.writeable = False
    return fields if readable and _fields_read(probe, fields) and _fields_read(probe[::2], fields) else None


def _fields_read(a: Array, at: ArrayFields) -> bool:
    """Whether `at` gives a's rank, shape, dtype and flags."""
    base = id(a)
    nd = ctypes.c_int.from_address(base + at.nd).value
    dims = ctypes.c_void_p.from_address(base + at.dims).value
    shape = tuple((ctypes.c_int64 * nd).from_address(dims)) if nd == a.ndim and dims else None
    flags = ctypes.c_int.from_address(base + at.flags).value
    return (shape == a.shape and ctypes.c_void_p.from_address(base + at.descr).value == id(a.dtype)
            and bool(flags & C_CONTIGUOUS) == a.flags.c_contiguous and bool(flags & WRITEABLE) == a.flags.writeable)  # fmt: skip


ARRAY_FIELDS = _array_fields()
"""Where an ndarray object holds its rank, shape, dtype and flags, None if not found."""


def dtype_name(dtype: np.dtype[Any]) -> str | None:
    """The .tdsl name of a numpy dtype, None for one without. Never imports ml_dtypes: an
    array of bfloat16 exists only once something imported it."""
    if "ml_dtypes" in sys.modules and dtype == bf16_dtype():
        return "bf16"
    return next((name for name, d in _NumpyDtypes._EAGER.items() if d == dtype), None)


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
