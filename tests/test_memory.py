"""What a call allocates: its outputs and O(tile) scratch, never a dequantized or
densified copy of a weight; and a packed weight holds its byte breakdown, no more.

Native side: kernels allocate with aligned_alloc and release with free (their only
heap functions, which the first test checks in the LLVM IR). Here the JIT links a
kernel against counting versions of both (llvmlite's add_symbol takes precedence over
the process's own symbols), so that every byte a call allocates is seen, with the
peak of what is live at once. Python side: tracemalloc sees numpy's allocations.
"""

from __future__ import annotations

import ctypes
import re
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import llvmlite.binding as llvm
import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py.packing import ALIGNMENT, PackedTensor, aligned_empty

Array = np.ndarray[Any, Any]
N = K = 4096
M = 16
SOURCE = f"""
kernel int4(x: f32[M, {K}], w: f32[{N}, {K}] @ int4(group=128)) -> f32[M, {N}] {{ return linear(x, w) }}
kernel sparse(x: f32[M, {K}], w: f32[{N}, {K}] @ nm(2, 4)) -> f32[M, {N}] {{ return linear(x, w) }}
kernel w8a8(x: f32[M, {K}], w: f32[{N}, {K}] @ int8(axis=0)) -> f32[M, {N}] {{
  return linear(quantize(x, int8(per=token)), w)
}}
"""
HEAP_FUNCTIONS = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "valloc", "free"}
DENSE_BYTES = N * K * 4
SCRATCH_BOUND = DENSE_BYTES // 16
"""Native bytes live at once in a call: far below any copy of a weight (a dequantized or
densified one is DENSE_BYTES), whatever the tiles' scratch."""

_libc = ctypes.CDLL(None)
_libc.aligned_alloc.restype = ctypes.c_void_p
_libc.aligned_alloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]
_REAL = {name: ctypes.cast(getattr(_libc, name), ctypes.c_void_p).value for name in ("aligned_alloc", "free")}


@dataclass
class HeapCounter:
    live: dict[int, int] = field(default_factory=dict)
    allocated: int = 0
    peak: int = 0
    calls: int = 0

    def reset(self) -> None:
        self.live.clear()
        self.allocated = self.peak = self.calls = 0

    def alloc(self, alignment: int, size: int) -> int | None:
        address = _libc.aligned_alloc(alignment, size)
        if address:
            self.live[address] = size
            self.allocated += size
            self.calls += 1
            self.peak = max(self.peak, sum(self.live.values()))
        return address

    def free(self, address: int | None) -> None:
        if address:
            self.live.pop(address, None)
        _libc.free(address)


COUNTER = HeapCounter()
# Module-level, so that the callbacks outlive every kernel linked against them.
_ALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)(COUNTER.alloc)
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(COUNTER.free)


@pytest.fixture(scope="module")
def prog() -> Iterator[stoicc_py.Program]:
    llvm.add_symbol("aligned_alloc", ctypes.cast(_ALLOC, ctypes.c_void_p).value)
    llvm.add_symbol("free", ctypes.cast(_FREE, ctypes.c_void_p).value)
    try:
        program = stoicc_py.compile(SOURCE)  # linked now: against the counters
    finally:  # kernels linked later use libc's again
        for name, address in _REAL.items():
            llvm.add_symbol(name, address)
    yield program


@pytest.fixture(scope="module")
def weights(prog: stoicc_py.Program) -> dict[str, PackedTensor]:
    w = rand(np.random.default_rng(0), N, K)
    return {name: prog.kernel(name).pack("w", w, prune="magnitude" if name == "sparse" else None)
            for name in prog.kernels}  # fmt: skip


def test_kernels_use_no_other_heap_functions(prog: stoicc_py.Program) -> None:
    for name in prog.kernels:
        declared = set(re.findall(r"declare [^@]*@([\w.]+)", prog.kernel(name).ir("llvm-ir")))
        assert declared & HEAP_FUNCTIONS <= {"aligned_alloc", "free"}, name


@pytest.mark.parametrize("name", ["int4", "sparse", "w8a8"])
def test_a_call_allocates_no_copy_of_the_weight(
    prog: stoicc_py.Program, weights: dict[str, PackedTensor], name: str
) -> None:
    kernel = prog.kernel(name)
    kernel.threads = 1
    x, w = rand(np.random.default_rng(1), M, K), weights[name]
    kernel(x, w)  # warm: nothing is allocated once for good on a first call
    COUNTER.reset()
    tracemalloc.start()
    try:
        y = kernel(x, w)
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert COUNTER.live == {}, "a call frees what it allocates"
    assert COUNTER.peak <= SCRATCH_BOUND, f"{name}: {COUNTER.peak} native bytes live at once"
    assert python_peak <= y.nbytes + (64 << 10), f"{name}: {python_peak} bytes traced for a {y.nbytes}-byte output"
    print(
        f"{name}: weight {w.nbytes} bytes; a call: native {COUNTER.calls} allocations, {COUNTER.allocated} bytes, "
        f"peak {COUNTER.peak}; python peak {python_peak} for a {y.nbytes}-byte output"
    )
    assert_close(y, kernel.reference(x, w), rtol=1e-3)


def test_validation_is_skipped_for_packed_weights(
    prog: stoicc_py.Program, weights: dict[str, PackedTensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[int] = []
    validate = PackedTensor.validate

    def counted(self: PackedTensor) -> None:
        checks.append(1)
        validate(self)

    monkeypatch.setattr(PackedTensor, "validate", counted)
    x, w = rand(np.random.default_rng(2), 4, K), weights["sparse"]
    assert all(not a.flags.writeable for a in w.arrays.values())
    prog.sparse(x, w)
    assert checks == []  # pack() validated it and made it read-only
    hand_built = PackedTensor(w.layout, w.shape, {r: a.copy() for r, a in w.arrays.items()})
    prog.sparse(x, hand_built)
    prog.sparse(x, hand_built)
    assert len(checks) == 2  # writeable arrays: checked on every call
    hand_built.arrays["indices"][0, 0] = -1  # all four 2-bit positions alike: repeats
    with pytest.raises(ValueError, match="corrupt packed tensor"):
        prog.sparse(x, hand_built)


def test_read_only_arrays_that_change_are_checked_again(weights: dict[str, PackedTensor]) -> None:
    packed = weights["int4"]
    tensor = PackedTensor(packed.layout, packed.shape, dict(packed.arrays))  # the same read-only arrays
    tensor.check()
    values = _copy(packed.arrays["values"])
    values[0, 0] = -128  # the codes 0 and -8: outside -7..7
    _freeze(values)
    tensor.arrays["values"] = values  # read-only too, but not the array that was checked
    with pytest.raises(ValueError, match="outside -7..7"):
        tensor.check()
    scales = _copy(packed.arrays["scales"])
    _freeze(scales)
    tensor = PackedTensor(packed.layout, packed.shape, {**packed.arrays, "scales": scales})
    tensor.check()
    _owner(scales).flags.writeable = True  # writeable again: no longer trusted
    scales.flags.writeable = True
    scales[0, 0] = -1.0
    with pytest.raises(ValueError, match="is not a finite non-negative number"):
        tensor.check()


@pytest.mark.parametrize("layout", ["int4(group=128)", "nm(2, 4)", "nm(2, 4) with int4(group=64)", "csr"])
def test_a_packed_weight_holds_its_byte_breakdown(layout: str) -> None:
    w = rand(np.random.default_rng(3), 1024, 1024)
    if layout == "csr":
        w[np.random.default_rng(4).random(w.shape) < 0.9] = 0
    prune = "magnitude" if "nm" in layout else None
    stoicc_py.pack(w, layout, prune=prune)  # fills the layout parser's and packers' caches
    tracemalloc.start()
    try:
        packed = stoicc_py.pack(w, layout, prune=prune)
        retained = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    total = packed.nbytes_breakdown()["total"]
    assert sum(a.nbytes for a in packed.arrays.values()) == total
    owners = {id(o): o.nbytes for o in map(_owner, packed.arrays.values())}
    slack = ALIGNMENT * len(packed.arrays)  # each buffer starts on a cache line of its own allocation
    assert total <= sum(owners.values()) <= total + slack
    assert retained <= total + slack + (16 << 10), f"pack keeps {retained} bytes for {total} of buffers"


def _owner(a: Array) -> Array:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _copy(a: Array) -> Array:
    """A writeable copy, aligned as packed buffers must be."""
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def _freeze(a: Array) -> None:
    for array in (a, _owner(a)):
        array.flags.writeable = False


def test_a_gemv_allocates_no_panels(prog: stoicc_py.Program, weights: dict[str, PackedTensor]) -> None:
    """2:4's panel blocks (from 32 rows) allocate their scratch only where a call has such
    rows: a one-row call allocates at most the pool's context (tens of bytes), not the
    panels' ~1.3 MB at 4096 x 4096, which it never reads."""
    kernel = prog.kernel("sparse")
    x, w = rand(np.random.default_rng(4), 1, K), weights["sparse"]
    kernel(x, w)
    COUNTER.reset()
    y = kernel(x, w)
    assert COUNTER.live == {} and COUNTER.peak <= 1024, f"{COUNTER.calls} allocations, peak {COUNTER.peak} bytes"
    assert_close(y, kernel.reference(x, w), rtol=1e-3)
