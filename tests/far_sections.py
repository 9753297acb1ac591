"""Loads one compiled object many times, each time with the free address space arranged
so that MCJIT maps the object's code more than 3 GB away from its data (constant pools,
GOT), and checks every loaded kernel's results. Run as a script (it reserves terabytes of
address space, PROT_NONE): `python far_sections.py DIR LOADS`, DIR as written by
test_jit.py (objectI.o per object file, abis.json, x.npy, and want-NAME.npy per kernel).

The kernel maps an anonymous mapping at the top of the highest free gap that fits it.
With every gap among the existing mappings filled, two one-page holes above 3 GB of
reserved space take the object's one-page data sections, and its code (several pages)
goes below the reservation.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import numpy as np

from stoicc_py.abi import KernelABI
from stoicc_py.backends.llvm.jit import NativeLibrary
from stoicc_py.kernel import NativeKernel

PAGE = 4096
FAR = 3 << 30
MMAP_AREA = 0x7000_0000_0000  # x86-64 Linux maps shared libraries and anonymous memory above this
_PRIVATE_ANONYMOUS, _NORESERVE, _FIXED_NOREPLACE = 0x22, 0x4000, 0x100000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def reserve(size: int, at: int | None = None) -> int:
    """Inaccessible address space (no memory behind it), anywhere or exactly at `at`."""
    flags = _PRIVATE_ANONYMOUS | _NORESERVE | (_FIXED_NOREPLACE if at else 0)
    address = _libc.mmap(at, size, 0, flags, -1, 0)
    if address in (None, ctypes.c_void_p(-1).value) or (at is not None and address != at):
        raise OSError(ctypes.get_errno(), f"mmap of {size} bytes at {at} failed")
    return int(address)


def _gaps() -> list[tuple[int, int]]:
    """(start, size) of every free gap between the mappings of the mmap area (not the
    one below the stack, which it grows into)."""
    spans = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        start, end = (int(a, 16) for a in line.split()[0].split("-"))
        spans.append((start, end, line.endswith("[stack]")))
    spans = sorted(s for s in spans if MMAP_AREA <= s[0] < 1 << 47)  # not [vsyscall]
    return [(end, start - end) for (_, end, _), (start, _, stack) in zip(spans, spans[1:]) if start > end and not stack]


def fill_gaps() -> None:
    """Reserve every free gap of the mmap area. Python's allocator may map an arena into
    a gap between reading the maps and reserving it: then read them again."""
    while gaps := _gaps():
        try:
            for start, size in gaps:
                reserve(size, start)
        except FileExistsError:
            continue


def far_apart_holes() -> None:
    top = [reserve(PAGE) for _ in range(3)]  # top-down: top[0] is the highest
    reserve(FAR)
    fill_gaps()  # a large mapping may be aligned below the pages, leaving a gap
    _libc.munmap(top[0], PAGE)
    _libc.munmap(top[2], PAGE)


def main(directory: Path, loads: int) -> None:
    objects = [p.read_bytes() for p in sorted(directory.glob("object*.o"))]
    abis = [KernelABI.from_json(a) for a in json.loads((directory / "abis.json").read_text())]
    x = np.load(directory / "x.npy")
    fill_gaps()
    libraries = []
    for i in range(loads):
        far_apart_holes()
        library = NativeLibrary(objects)
        libraries.append(library)  # all stay loaded: hundreds in one process
        for abi in abis:
            got = NativeKernel(abi, library.address(abi.symbol), library)(x)
            if not np.array_equal(got, np.load(directory / f"want-{abi.name}.npy")):
                sys.exit(f"load {i}: kernel {abi.name} gives wrong results")
    print(f"loaded {loads} times")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
