"""Native entries that take a kernel call's arrays as one Python tuple.

A kernel's C entry takes a pointer per buffer, then an i64 per size symbol. Through
ctypes each argument costs ~0.13 µs to convert, and each buffer's address ~0.15 µs to
read from Python (arrays.data_pointers): 1.5-2 µs of a small call with four buffers. An
entry of this module takes a single `py_object`, the tuple `(*arrays, symbols)`, and
reads in native code what those steps computed: each array's data pointer from the
array object (at arrays.DATA_OFFSET, as data_pointers does), and from `symbols`
(int64 [1 + S]) the kernel's address, then the S sizes. The caller keeps the tuple
alive across the call, which releases the GIL.

One entry per arity (pointers, symbols), JIT-compiled on first use (~1 ms) and kept for
the process. CPython only: None where the layouts of ndarray or tuple objects are not
known (arrays.DATA_OFFSET is None, or tuple items are not where this build puts them).
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
from collections.abc import Callable

import llvmlite.binding as llvm

from stoicc_py.arrays import DATA_OFFSET
from stoicc_py.backends.llvm.target import new_host_machine

Entry = Callable[[tuple[object, ...]], None]


def _tuple_items() -> int | None:
    """The offset of a tuple's first item in its object (PyTupleObject's ob_item), if reading
    there gives it; id() is the object's address on CPython only."""
    if sys.implementation.name != "cpython":
        return None
    probe = (object(),)
    offset = tuple.__basicsize__
    return offset if ctypes.c_void_p.from_address(id(probe) + offset).value == id(probe[0]) else None


ITEMS = _tuple_items()
_lock = threading.Lock()
_engines: list[llvm.ExecutionEngine] = []  # they own the entries' code


def _ir(pointers: int, symbols: int, items: int, data: int) -> str:
    """entry(ptr tuple): load item i (an ndarray, at `items` + 8 i), its data pointer (at `data`);
    the last item's data holds the kernel's address and the sizes; call the kernel."""
    body, args = [], []
    for i in range(pointers + 1):
        body += [f"  %item{i} = getelementptr i8, ptr %t, i64 {items + 8 * i}",
                 f"  %obj{i} = load ptr, ptr %item{i}, align 8",
                 f"  %field{i} = getelementptr i8, ptr %obj{i}, i64 {data}",
                 f"  %data{i} = load ptr, ptr %field{i}, align 8"]  # fmt: skip
        args.append(f"ptr %data{i}")
    table = args.pop()[len("ptr ") :]
    body.append(f"  %fn = load ptr, ptr {table}, align 8")
    for s in range(symbols):
        body += [f"  %at{s} = getelementptr i64, ptr {table}, i64 {s + 1}", f"  %s{s} = load i64, ptr %at{s}, align 8"]
        args.append(f"i64 %s{s}")
    body.append(f"  call void %fn({', '.join(args)})")
    return "define void @entry(ptr %t) {\n" + "\n".join(body) + "\n  ret void\n}\n"


@functools.cache
def array_entry(pointers: int, symbols: int) -> Entry | None:
    """The entry for kernels of `pointers` buffers and `symbols` sizes, or None (not CPython)."""
    if DATA_OFFSET is None or ITEMS is None:
        return None
    with _lock:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(_ir(pointers, symbols, ITEMS, DATA_OFFSET)), new_host_machine())
        engine.finalize_object()
        _engines.append(engine)
        call: Entry = ctypes.CFUNCTYPE(None, ctypes.py_object)(engine.get_function_address("entry"))
        return call
