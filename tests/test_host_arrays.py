"""Kernel arguments from numpy, DLPack producers (PyTorch), `__array__` and the buffer
protocol: the pointer native code receives is the caller's memory when dtype and strides
allow, a copy only for strided views, and a clear error naming the parameter otherwise."""

from __future__ import annotations

import array
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py.arrays import data_pointers

Array = np.ndarray[Any, Any]
SOURCE = "kernel layer(x: f32[M, 16], w: f32[8, 16], b: f32[8]) -> f32[M, 8] { return linear(x, w, b) }"


@pytest.fixture(scope="module")
def prog() -> stoicc_py.Program:
    return stoicc_py.compile(SOURCE)


@pytest.fixture
def pointers(prog: stoicc_py.Program, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The arguments of every native call of prog.layer (x, w, b, out pointers, then M),
    through ctypes or the native entry (backends/llvm/entry.py: the arrays and a table of
    the kernel's address and sizes)."""
    calls: list[tuple[int, ...]] = []
    native = prog.layer._native
    real: Callable[..., None] = native._fn
    real_entry = native._entry

    def recording(*args: int) -> None:
        calls.append(args)
        real(*args)

    def recording_entry(arrays: tuple[Any, ...]) -> None:
        *bufs, table = arrays
        calls.append((*data_pointers(bufs), *table[1:].tolist()))
        real_entry(arrays)

    monkeypatch.setattr(native, "_fn", recording)
    if real_entry is not None:
        monkeypatch.setattr(native, "_entry", recording_entry)
    return calls


class DLPackOnly:
    """A DLPack producer that is not a numpy array (as a foreign framework's tensor is)."""

    def __init__(self, data: Array, device: tuple[int, int] = (1, 0)):
        self.data, self.device = data, device

    def __dlpack__(self, **kwargs: Any) -> Any:
        if self.device[0] != 1:  # as a GPU tensor's export: numpy refuses memory off the host
            raise BufferError("DLPack only supports CPU memory")
        return self.data.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.device


class ArrayOnly:
    def __init__(self, data: Array):
        self.data = data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Array:
        return self.data


def _inputs(rng: np.random.Generator) -> tuple[Array, Array, Array]:
    return rand(rng, 5, 16), rand(rng, 8, 16), rand(rng, 8)


def _want(x: Array, w: Array, b: Array) -> Array:
    return (x.astype(np.float64) @ w.T + b).astype(np.float32)


def test_dlpack_array_and_buffer_arguments_are_passed_without_a_copy(
    prog: stoicc_py.Program, pointers: list[tuple[int, ...]]
) -> None:
    x, w, b = _inputs(np.random.default_rng(0))
    bias = array.array("f", b.tolist())
    got = prog.layer(DLPackOnly(x), ArrayOnly(w), bias)
    assert pointers[0][:3] == (x.ctypes.data, w.ctypes.data, bias.buffer_info()[0])
    assert_close(got, _want(x, w, b))


def test_a_strided_view_is_copied_once_to_c_order(
    prog: stoicc_py.Program, pointers: list[tuple[int, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    x, w, b = _inputs(np.random.default_rng(1))
    wide = np.repeat(x, 2, axis=1)  # x is every other column of it
    with caplog.at_level(logging.DEBUG, logger="stoicc_py"):
        got = prog.layer(DLPackOnly(wide[:, ::2]), w, b)
    assert pointers[0][0] != wide.ctypes.data and pointers[0][1] == w.ctypes.data
    assert "parameter 'x' is strided" in caplog.text
    assert_close(got, _want(x, w, b))


def test_memory_off_the_host_and_unreadable_objects_are_refused(prog: stoicc_py.Program) -> None:
    x, w, b = _inputs(np.random.default_rng(2))
    with pytest.raises(ValueError, match=r"layer: parameter 'x': .* on DLPack device 2, not the CPU"):
        prog.layer(DLPackOnly(x, device=(2, 0)), w, b)
    with pytest.raises(TypeError, match="parameter 'w' expects dtype float32.*got float64"):
        prog.layer(x, ArrayOnly(w.astype(np.float64)), b)
    with pytest.raises(TypeError, match="parameter 'b' expects dtype float32.*got object"):
        prog.layer(x, w, object())


def test_torch_cpu_tensors(prog: stoicc_py.Program, pointers: list[tuple[int, ...]]) -> None:
    torch = pytest.importorskip("torch")
    x, w, b = (torch.from_numpy(a) for a in _inputs(np.random.default_rng(3)))
    got = prog.layer(x, w, b)
    assert isinstance(got, np.ndarray)
    assert pointers[0][:3] == (x.data_ptr(), w.data_ptr(), b.data_ptr())
    assert_close(got, _want(x.numpy(), w.numpy(), b.numpy()))
    transposed = w.T.contiguous().T  # same values, column-major
    assert_close(prog.layer(x, transposed, b), got)
    assert pointers[1][1] != transposed.data_ptr()
    with pytest.raises(TypeError, match="parameter 'x' expects dtype float32.*got int64"):
        prog.layer(x.long(), w, b)
    with pytest.raises(TypeError, match="parameter 'x': cannot read a Tensor of dtype torch.bfloat16"):
        prog.layer(x.bfloat16(), w, b)
    with pytest.raises(TypeError, match="parameter 'w': .*require gradient"):
        prog.layer(x, w.requires_grad_(), b)
    with pytest.raises(ValueError, match="parameter 'b': not in host memory"):
        prog.layer(x, w.detach(), torch.empty(8, device="meta"))


def test_pack_reads_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    w = torch.randn(8, 16)
    from_torch, from_numpy = (stoicc_py.pack(a, "nm(2, 4)", prune="magnitude") for a in (w, w.numpy()))
    np.testing.assert_array_equal(from_torch.unpack(), from_numpy.unpack())


def test_data_pointers_are_the_arrays_ctypes_data() -> None:
    """The runtime reads each buffer's address from the array object (faster than `ctypes.data`):
    the same address for views at an offset, read-only, strided, empty and 0-d arrays."""
    base = np.arange(60, dtype=np.float32).reshape(6, 10)
    frozen = base.copy()
    frozen.flags.writeable = False
    arrays = [base, base[2:, 3:], base[:, ::2], base.T, frozen, frozen[1], np.empty((0, 4)), np.ones(())]
    assert data_pointers(arrays) == [a.ctypes.data for a in arrays]
