"""Loads compiled object code into this process and hands out function addresses."""

from __future__ import annotations

from collections.abc import Sequence

import llvmlite.binding as llvm

from stoicc_py.backends.llvm import runtime
from stoicc_py.backends.llvm.target import host_features, new_host_machine


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

    def address(self, name: str) -> int:
        address = self._engine.get_function_address(name)
        if not address:
            raise KeyError(f"no function '{name}' in the compiled object")
        return address
