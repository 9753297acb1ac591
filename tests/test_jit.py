"""Loading compiled code into the process: no relocation that MCJIT could fail to
resolve, however far apart it maps an object's sections, over hundreds of loads."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import rand

import stoicc_py
from stoicc_py.lowering import build
from stoicc_py.options import Options

# Constants (constant pools), libm calls (tanhf, erff), a temporary (aligned_alloc, free).
SOURCE = """
kernel act(x: f32[M, 64]) -> f32[M, 64] { return tanh(x) * 0.37 + 1.5 }
kernel mlp(x: f32[M, 64], w: f32[32, 64], b: f32[32]) -> f32[M, 32] { return gelu(linear(x, w, b)) * 0.5 }
kernel centered(x: f32[M, 64]) -> f32[M, 64] { return gelu(x - sum(x, axis=0)) }
"""
# x86-64 relocations whose field is 64 bits: R_X86_64_64, PC64, GOTOFF64, GOT64, GOTPC64, PLTOFF64.
RELOCATIONS_64 = {1: "64", 24: "PC64", 25: "GOTOFF64", 27: "GOT64", 29: "GOTPC64", 31: "PLTOFF64"}
_SHT_RELA = 4


def relocation_types(obj: bytes) -> set[int]:
    """The types of every relocation of an ELF64 little-endian object."""
    (section_headers,) = struct.unpack_from("<Q", obj, 0x28)
    entry_size, count = struct.unpack_from("<HH", obj, 0x3A)
    types = set()
    for i in range(count):
        _, kind, _, _, offset, size = struct.unpack_from("<IIQQQQ", obj, section_headers + i * entry_size)
        if kind == _SHT_RELA:
            types |= {info & 0xFFFFFFFF for _, info, _ in struct.iter_unpack("<QQq", obj[offset : offset + size])}
    return types


@pytest.fixture(scope="module")
def compiled() -> tuple[stoicc_py.Program, list[bytes]]:
    prog = stoicc_py.compile(SOURCE)
    objects, _ = build(prog.module, Options())
    return prog, objects


def test_objects_have_only_64_bit_relocations(compiled: tuple[stoicc_py.Program, list[bytes]]) -> None:
    """A 32-bit PC-relative reference (R_X86_64_PC32 to a constant pool, GOTPCREL, PLT32)
    overflows when MCJIT maps its target more than 2 GB away, and aborts the process."""
    _, objects = compiled
    types = set().union(*map(relocation_types, objects))
    assert types and types <= RELOCATIONS_64.keys(), sorted(types - RELOCATIONS_64.keys())


def test_hundreds_of_loads_with_code_far_from_its_constants(
    compiled: tuple[stoicc_py.Program, list[bytes]], tmp_path: Path
) -> None:
    prog, objects = compiled
    for i, obj in enumerate(objects):
        (tmp_path / f"object{i}.o").write_bytes(obj)
    unary = [prog.act, prog.centered]
    (tmp_path / "abis.json").write_text(json.dumps([k.abi.to_json() for k in unary]))
    x = rand(np.random.default_rng(0), 3, 64)
    np.save(tmp_path / "x.npy", x)
    for kernel in unary:
        np.save(tmp_path / f"want-{kernel.name}.npy", kernel(x))
    script = Path(__file__).with_name("far_sections.py")
    run = subprocess.run([sys.executable, script, tmp_path, "200"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "loaded 200 times"
