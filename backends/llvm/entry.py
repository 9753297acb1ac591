"""Native entries that take a kernel call's arrays as one Python tuple.

A kernel's C entry takes a pointer per buffer, then an i64 per size symbol. Through
ctypes a call costs ~0.3 µs and each argument ~0.13 µs more to convert, and each
buffer's address ~0.15 µs to read from Python (arrays.data_pointers): 1.5-2 µs of a
small call with four buffers. An entry of this module is a builtin function (METH_O, as
a C extension's, which the interpreter calls directly: no ctypes, no libffi) of one
argument, the tuple `(*arrays, table)`; it reads in native code what those steps
computed: each array's data pointer from the array object (at arrays.DATA_OFFSET, as
data_pointers does), and from `table` (int64 [1 + S]) the kernel's address, then the S
sizes; it releases the GIL around the kernel (PyEval_SaveThread) and returns None. The
tuple holds the arrays across the call.

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
_kept: list[object] = []  # the engines (they own the entries' code) and method defs of the entries
METH_O = 0x0008


class _MethodDef(ctypes.Structure):
    """CPython's PyMethodDef."""

    _fields_ = [("name", ctypes.c_char_p), ("meth", ctypes.c_void_p), ("flags", ctypes.c_int), ("doc", ctypes.c_char_p)]


def _api(name: str) -> str:
    """A C API function's address, as an LLVM constant (this process's: the entries are JIT-compiled in it)."""
    return f"inttoptr (i64 {ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value} to ptr)"


def _ir(pointers: int, symbols: int, items: int, data: int) -> str:
    """PyObject *entry(PyObject *self, PyObject *tuple): load item i (an ndarray, at `items` + 8 i),
    its data pointer (at `data`); the last item's data holds the kernel's address and the sizes;
    call the kernel without the GIL; return None (a new reference)."""
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
    none = f"inttoptr (i64 {id(None)} to ptr)"
    body += [f"  %state = call ptr {_api('PyEval_SaveThread')}()",
             f"  call void %fn({', '.join(args)})",
             f"  call void {_api('PyEval_RestoreThread')}(ptr %state)",
             f"  call void {_api('Py_IncRef')}(ptr {none})",
             f"  ret ptr {none}"]  # fmt: skip
    return "define ptr @entry(ptr %self, ptr %t) {\n" + "\n".join(body) + "\n}\n"


@functools.cache
def array_entry(pointers: int, symbols: int) -> Entry | None:
    """The entry for kernels of `pointers` buffers and `symbols` sizes, or None (not CPython)."""
    if DATA_OFFSET is None or ITEMS is None:
        return None
    with _lock:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(_ir(pointers, symbols, ITEMS, DATA_OFFSET)), new_host_machine())
        engine.finalize_object()
        method = _MethodDef(b"stoicc_entry", engine.get_function_address("entry"), METH_O, None)
        _kept.extend((engine, method))
        new = ctypes.pythonapi.PyCFunction_NewEx
        new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        call: Entry = new(ctypes.addressof(method), None, None)
        return call
