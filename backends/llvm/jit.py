"""Loads compiled object code into this process and hands out function addresses.

With STOICC_PERF_MAP=1, each library's functions (outlined loop nests and parallel loop
bodies included) are appended to /tmp/perf-PID.map, the file Linux `perf report` reads to
name JIT code: a profile then says which nest of which kernel the samples hit."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence

import llvmlite.binding as llvm

from stoicc_py.backends.llvm import runtime
from stoicc_py.backends.llvm.target import host_features, new_host_machine

PERF_MAP = "STOICC_PERF_MAP"
SHT_SYMTAB, STT_FUNC = 2, 2


class NativeLibrary:
    """Object files linked into the process with MCJIT; symbols resolve against each
    other, then the process (libm for tanhf/erff, libc for malloc/free)."""

    def __init__(self, objects: Sequence[bytes]):
        host_features()  # where the code may use AMX tiles, the OS grants them first (cached objects too)
        runtime.load()  # its entry must be a process symbol before a kernel object resolves it
        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_host_machine())
        for obj in objects:
            self._engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self._engine.finalize_object()
        if os.environ.get(PERF_MAP) == "1":
            self._write_perf_map(objects)

    def address(self, name: str) -> int:
        address = self._engine.get_function_address(name)
        if not address:
            raise KeyError(f"no function '{name}' in the compiled object")
        return address

    def _write_perf_map(self, objects: Sequence[bytes]) -> None:
        """`START SIZE NAME` (hex) of every defined function, as perf's JIT map expects."""
        functions = sorted((self._engine.get_function_address(name), size, name)
                           for obj in objects for name, size in elf_functions(obj))  # fmt: skip
        with open(f"/tmp/perf-{os.getpid()}.map", "a") as out:
            out.writelines(f"{start:x} {size:x} {name}\n" for start, size, name in functions if start)


def elf_functions(obj: bytes) -> Iterator[tuple[str, int]]:
    """(name, size) of the functions an ELF64 little-endian object defines (its symbol table;
    none for another object format)."""
    if obj[:6] != b"\x7fELF\x02\x01":
        return
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != SHT_SYMTAB:
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, entsize):
            name_at, info, _other, shndx, _value, length = struct.unpack_from("<IBBHQQ", obj, at)
            if info & 0xF == STT_FUNC and shndx:
                yield obj[strings + name_at : obj.index(b"\0", strings + name_at)].decode(), length
