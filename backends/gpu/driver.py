"""Loading and launching PTX through the CUDA driver API (cuda-python's
`cuda.bindings.driver`, the optional `gpu` extra), and device memory in and out.

The kernels run in the device's primary context, the one torch and cupy use, so
that their tensors' pointers are valid here; launches go to the legacy default
stream (torch's and cupy's default), in order with their own work. Arrays on the
device come in through `__cuda_array_interface__` or DLPack (torch's bf16 tensors
have only DLPack), without copies; numpy arrays are copied in and out.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


class CudaError(RuntimeError):
    """A CUDA driver call failed (its error name and message)."""


@cache
def driver() -> Any:
    """cuda.bindings.driver; ImportError says how to install it."""
    try:
        from cuda.bindings import driver as cu
    except ImportError as err:
        raise ImportError("the GPU target loads kernels with cuda-python: pip install 'stoicc_py[gpu]'") from err
    return cu


def check(result: Any) -> Any:
    """The values of a driver call's (error, *values) result; CudaError if it failed."""
    cu = driver()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cu.CUresult.CUDA_SUCCESS:
        _, name = cu.cuGetErrorName(err)
        _, text = cu.cuGetErrorString(err)
        raise CudaError(f"{name.decode() if name else err}: {text.decode() if text else ''}")
    return values[0] if len(values) == 1 else tuple(values)


@cache
def context() -> Any:
    """Device 0's primary context, current on this thread."""
    cu = driver()
    check(cu.cuInit(0))
    device = check(cu.cuDeviceGet(0))
    ctx = check(cu.cuDevicePrimaryCtxRetain(device))
    check(cu.cuCtxSetCurrent(ctx))
    return ctx


def available() -> bool:
    """Whether cuda-python is installed and a CUDA device answers."""
    try:
        context()
    except (ImportError, RuntimeError):  # CudaError, or cuda-python's "no driver library" (DynamicLibNotFoundError)
        return False
    return True


def device_name() -> str:
    context()
    cu = driver()
    raw = check(cu.cuDeviceGetName(256, check(cu.cuDeviceGet(0))))
    return bytes(raw).split(b"\0", 1)[0].decode()


class Buffer:
    """Device memory this process allocated (freed with the object)."""

    def __init__(self, nbytes: int):
        context()
        self.nbytes = nbytes
        self._free = driver().cuMemFree  # held: at exit, the module's driver() may be gone first
        self.ptr = int(check(driver().cuMemAlloc(max(nbytes, 1))))

    @classmethod
    def of(cls, host: Array) -> Buffer:
        buffer = cls(host.nbytes)
        host = np.ascontiguousarray(host)
        check(driver().cuMemcpyHtoD(buffer.ptr, host.ctypes.data, host.nbytes))
        return buffer

    def to_host(self, out: Array) -> Array:
        check(driver().cuMemcpyDtoH(out.ctypes.data, self.ptr, out.nbytes))
        return out

    def __del__(self) -> None:
        if getattr(self, "ptr", 0):
            self._free(self.ptr)


@dataclass(frozen=True)
class DeviceArray:
    """A C-contiguous array in device memory: its address, shape and .tdsl dtype; `owner`
    keeps the memory alive (the caller's tensor, or a Buffer)."""

    ptr: int
    shape: tuple[int, ...]
    dtype: str
    owner: object


_TYPESTRS = {"<f2": "f16", "<f4": "f32", "|i1": "i8", "<i4": "i32", "<u4": "i32"}
_DLPACK_CUDA = 2
_DLPACK_DTYPES = {(2, 16): "f16", (2, 32): "f32", (4, 16): "bf16", (0, 8): "i8", (0, 32): "i32", (1, 32): "i32"}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]  # fmt: skip


def _contiguous(shape: tuple[int, ...], strides: tuple[int, ...] | None, item: int) -> bool:
    if strides is None:
        return True
    expected = item
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size > 1 and stride != expected:
            return False
        expected *= size
    return True


def _from_interface(obj: Any) -> DeviceArray | None:
    try:
        face = obj.__cuda_array_interface__
    except (AttributeError, TypeError):  # torch < 2.11 raises TypeError for bf16
        return None
    if face["typestr"] == "<V2" and hasattr(obj, "__dlpack__"):  # torch 2.11's bf16: DLPack names it
        return None
    shape, dtype = tuple(face["shape"]), _TYPESTRS.get(face["typestr"])
    if dtype is None or not _contiguous(shape, face.get("strides"), int(face["typestr"][2:])):
        raise ValueError(f"device arrays must be C-contiguous f16/bf16/f32/i8/i32, got {face['typestr']} "
                         f"with strides {face.get('strides')}")  # fmt: skip
    return DeviceArray(int(face["data"][0]), shape, dtype, obj)


def _from_dlpack(obj: Any) -> DeviceArray | None:
    if not hasattr(obj, "__dlpack__"):
        return None
    capsule = obj.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    tensor = _DLTensor.from_address(get(capsule, b"dltensor"))  # DLManagedTensor starts with its DLTensor
    if tensor.device.device_type != _DLPACK_CUDA:
        return None
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    dtype = _DLPACK_DTYPES.get((tensor.dtype.code, tensor.dtype.bits))
    strides = tuple(tensor.strides[i] for i in range(tensor.ndim)) if tensor.strides else None
    if dtype is None or tensor.dtype.lanes != 1 or not _contiguous(shape, strides, 1):
        raise ValueError("device arrays must be C-contiguous f16/bf16/f32/i8/i32")
    return DeviceArray(int(tensor.data or 0) + int(tensor.byte_offset), shape, dtype, (obj, capsule))


def device_array(obj: Any) -> DeviceArray | None:
    """`obj` in device memory without a copy, or None if it is not on a CUDA device."""
    if isinstance(obj, np.ndarray):  # its __dlpack__ refuses ml_dtypes' bf16: ask nothing
        return None
    return _from_interface(obj) or _from_dlpack(obj)


def empty_like(obj: Any, shape: tuple[int, ...]) -> Any:
    """A new device array of `obj`'s library (torch, cupy), dtype and device."""
    if hasattr(obj, "new_empty"):  # torch
        return obj.new_empty(shape)
    if type(obj).__module__.startswith("cupy"):
        import cupy

        return cupy.empty(shape, obj.dtype)
    raise TypeError(f"cannot allocate a result like a {type(obj).__name__}: pass torch or cupy arrays, or numpy ones")


class Module:
    """A PTX module loaded on the device; `function(name)` its kernels."""

    def __init__(self, ptx: str):
        context()
        image = np.frombuffer(ptx.encode() + b"\0", np.uint8)  # by address: what every cuda-python version takes
        self.handle = check(driver().cuModuleLoadData(image.ctypes.data))

    def function(self, name: str) -> Any:
        return check(driver().cuModuleGetFunction(self.handle, name.encode()))


def allow_shared(function: Any, nbytes: int) -> None:
    """Let `function` have `nbytes` of dynamic shared memory (over 48 KB must be asked for)."""
    if nbytes > 48 * 1024:
        cu = driver()
        attribute = cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        check(cu.cuFuncSetAttribute(function, attribute, nbytes))


def launch(function: Any, grid: tuple[int, int, int], block: int, pointers: list[int], m: int, shared: int = 0,
           maps: tuple[Any, ...] = ()) -> None:  # fmt: skip
    """Launch `function(pointers..., i32 m, maps...)` on the default stream (asynchronous),
    with `shared` bytes of dynamic shared memory (`maps`: tensor_map's, passed by value)."""
    types = (*[ctypes.c_void_p] * len(pointers), ctypes.c_int32, *[None] * len(maps))  # None: by getPtr()
    launch_with(function, grid, block, (*pointers, m, *maps), types, shared)


def tensor_map(ptr: int, dtype: str, shape: tuple[int, int], box: tuple[int, int], swizzle: int = 128) -> Any:
    """A TMA tensor map (CUtensorMap) of the row-major [rows, cols] 16-bit array at `ptr`
    (16-byte aligned, rows of 16-byte multiples): boxes of box[0] rows x box[1] values,
    written to shared memory swizzled by `swizzle` bytes (128 or 64, as wgmma reads it),
    zeros past the edges."""
    cu = driver()
    swizzles = {128: cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B, 64: cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_64B}
    kinds = {"f16": cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
             "bf16": cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16}  # fmt: skip
    (rows, cols), u32, u64 = shape, cu.cuuint32_t, cu.cuuint64_t
    return check(cu.cuTensorMapEncodeTiled(
        kinds[dtype], 2, ptr, [u64(cols), u64(rows)], [u64(2 * cols)], [u32(box[1]), u32(box[0])], [u32(1), u32(1)],
        cu.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE, swizzles[swizzle],
        cu.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
    ))  # fmt: skip


def launch_with(function: Any, grid: tuple[int, int, int], block: int, values: tuple[Any, ...],
                types: tuple[Any, ...], shared: int = 0) -> None:  # fmt: skip
    """Launch `function(values...)`, each of its ctypes type, on the default stream (asynchronous)."""
    cu = driver()
    check(cu.cuLaunchKernel(function, *grid, block, 1, 1, shared, cu.CUstream(0), (values, types), 0))


@cache
def reserve_heap(nbytes: int) -> None:
    """A device heap (malloc in kernels) of at least `nbytes`: set before the first kernel
    that allocates runs (CUDA refuses a change after that)."""
    context()
    cu = driver()
    limit = cu.CUlimit.CU_LIMIT_MALLOC_HEAP_SIZE
    if int(check(cu.cuCtxGetLimit(limit))) < nbytes:
        check(cu.cuCtxSetLimit(limit, nbytes))


def synchronize() -> None:
    check(driver().cuCtxSynchronize())
