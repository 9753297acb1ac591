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
from collections.abc import Callable, Sequence
from typing import Any

import llvmlite.binding as llvm
import numpy as np

from stoicc_py.arrays import ARRAY_FIELDS, C_CONTIGUOUS, DATA_OFFSET, WRITEABLE, ArrayFields
from stoicc_py.backends.llvm.target import new_host_machine

Entry = Callable[[tuple[object, ...]], None]
Guard = Callable[[tuple[object, ...]], bool]


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


GUARD_RANK = 4
"""The highest rank of an array whose shape array_guard() checks."""
_RECORD = 4 + GUARD_RANK  # flags mask, flags wanted, descr (0: flags only), rank, the dims


def _guard_ir(items: int, data: int, at: ArrayFields) -> str:
    """PyObject *guard(PyObject *self, PyObject *tuple): tuple = (records, *arrays); records
    (int64 [len(arrays), _RECORD]) holds per array a mask and the flags it wants under it,
    then, unless 0, its descr's address, rank and dims. Returns True if every array has them."""
    true, false = (f"inttoptr (i64 {id(v)} to ptr)" for v in (True, False))
    return f"""
define ptr @guard(ptr %self, ptr %t) {{
entry:
  %size.at = getelementptr i8, ptr %t, i64 {items - 8}
  %size = load i64, ptr %size.at, align 8
  %items = getelementptr i8, ptr %t, i64 {items}
  %records.obj = load ptr, ptr %items, align 8
  %records.at = getelementptr i8, ptr %records.obj, i64 {data}
  %records = load ptr, ptr %records.at, align 8
  br label %next
next:
  %i = phi i64 [1, %entry], [%i1, %typed], [%i1, %dim]
  %more = icmp ult i64 %i, %size
  br i1 %more, label %object, label %pass
object:
  %o.at = getelementptr ptr, ptr %items, i64 %i
  %o = load ptr, ptr %o.at, align 8
  %j = sub i64 %i, 1
  %r0 = mul i64 %j, {_RECORD}
  %r = getelementptr i64, ptr %records, i64 %r0
  %mask = load i64, ptr %r, align 8
  %want.at = getelementptr i64, ptr %r, i64 1
  %want = load i64, ptr %want.at, align 8
  %flags.at = getelementptr i8, ptr %o, i64 {at.flags}
  %flags32 = load i32, ptr %flags.at, align 4
  %flags = zext i32 %flags32 to i64
  %masked = and i64 %flags, %mask
  %flags.ok = icmp eq i64 %masked, %want
  br i1 %flags.ok, label %typed, label %fail
typed:
  %i1 = add i64 %i, 1
  %descr.at = getelementptr i64, ptr %r, i64 2
  %descr = load i64, ptr %descr.at, align 8
  %untyped = icmp eq i64 %descr, 0
  br i1 %untyped, label %next, label %shaped
shaped:
  %d.at = getelementptr i8, ptr %o, i64 {at.descr}
  %d = load i64, ptr %d.at, align 8
  %descr.ok = icmp eq i64 %d, %descr
  %nd.at = getelementptr i64, ptr %r, i64 3
  %nd = load i64, ptr %nd.at, align 8
  %o.nd.at = getelementptr i8, ptr %o, i64 {at.nd}
  %o.nd32 = load i32, ptr %o.nd.at, align 4
  %o.nd = sext i32 %o.nd32 to i64
  %nd.ok = icmp eq i64 %o.nd, %nd
  %typed.ok = and i1 %descr.ok, %nd.ok
  %dims.at = getelementptr i8, ptr %o, i64 {at.dims}
  %dims = load ptr, ptr %dims.at, align 8
  br i1 %typed.ok, label %dim, label %fail
dim:
  %k = phi i64 [0, %shaped], [%k1, %dim.next]
  %dim.more = icmp slt i64 %k, %nd
  br i1 %dim.more, label %dim.next, label %next
dim.next:
  %got.at = getelementptr i64, ptr %dims, i64 %k
  %got = load i64, ptr %got.at, align 8
  %w = add i64 %k, 4
  %wanted.at = getelementptr i64, ptr %r, i64 %w
  %wanted = load i64, ptr %wanted.at, align 8
  %dim.ok = icmp eq i64 %got, %wanted
  %k1 = add i64 %k, 1
  br i1 %dim.ok, label %dim, label %fail
pass:
  call void {_api('Py_IncRef')}(ptr {true})
  ret ptr {true}
fail:
  call void {_api('Py_IncRef')}(ptr {false})
  ret ptr {false}
}}
"""


def guard_args(typed: Sequence[tuple[Any, tuple[int, ...], np.dtype[Any]]], read_only: Sequence[Any]) -> tuple[object, ...] | None:
    """array_guard()'s argument: each array of `typed` must still have that shape and dtype (the
    same descr object), be C-contiguous and read-only; each of `read_only` be read-only. None
    where a rank passes GUARD_RANK. The tuple holds the arrays; the caller keeps the dtypes."""
    if any(len(shape) > GUARD_RANK for _, shape, _ in typed):
        return None
    records = np.zeros((len(typed) + len(read_only), _RECORD), np.int64)
    for record, (_, shape, dtype) in zip(records, typed):
        record[:4 + len(shape)] = [C_CONTIGUOUS | WRITEABLE, C_CONTIGUOUS, id(dtype), len(shape), *shape]
    records[len(typed):, 0] = WRITEABLE
    records.flags.writeable = False
    return (records, *(a for a, _, _ in typed), *read_only)


@functools.cache
def array_guard() -> Guard | None:
    """guard((records, *arrays)) -> bool (guard_args), natively: ~50 ns where reading the flags,
    shape and dtype of four arrays from Python takes ~0.6 µs. None where the ndarray's fields
    were not found (arrays.ARRAY_FIELDS) or not CPython."""
    if DATA_OFFSET is None or ITEMS is None or ARRAY_FIELDS is None:
        return None
    return _builtin(_guard_ir(ITEMS, DATA_OFFSET, ARRAY_FIELDS), "guard")


def _builtin(ir: str, name: str) -> Any:
    """The JIT-compiled function `name` of `ir` as a builtin (METH_O) of one argument."""
    with _lock:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(ir), new_host_machine())
        engine.finalize_object()
        method = _MethodDef(f"stoicc_{name}".encode(), engine.get_function_address(name), METH_O, None)
        _kept.extend((engine, method))
        new = ctypes.pythonapi.PyCFunction_NewEx
        new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        return new(ctypes.addressof(method), None, None)


@functools.cache
def array_entry(pointers: int, symbols: int) -> Entry | None:
    """The entry for kernels of `pointers` buffers and `symbols` sizes, or None (not CPython)."""
    if DATA_OFFSET is None or ITEMS is None:
        return None
    call: Entry = _builtin(_ir(pointers, symbols, ITEMS, DATA_OFFSET), "entry")
    return call
