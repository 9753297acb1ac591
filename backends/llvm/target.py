"""The host CPU as an LLVM target: name, features, triple and data layout."""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import llvmlite.binding as llvm


@cache
def _initialized() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


class MachineOptions(NamedTuple):
    """What makes a target machine: the LLVM worker process builds its own from these,
    so that the code it emits is the code this process's MCJIT expects."""

    triple: str
    cpu: str
    features: str
    opt: int = 3
    reloc: str = "pic"
    codemodel: str = "large"


@cache
def host_options() -> MachineOptions:
    """The host CPU, at O3.

    The large code model: every address in the code is 64 bits (movabs, GOT-relative
    64-bit offsets). MCJIT maps an object's code, constant pools and GOT separately,
    possibly more than 2 GB apart in a long-lived process, where the small model's
    32-bit PC-relative references to them (R_X86_64_PC32, GOTPCREL) cannot reach:
    RuntimeDyldELF aborts the process. PIC keeps `stoicc compile -o` objects linkable
    into shared libraries.
    """
    _initialized()
    return MachineOptions(llvm.get_default_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten())


def create_machine(options: MachineOptions) -> llvm.TargetMachine:
    _initialized()
    return llvm.Target.from_triple(options.triple).create_target_machine(
        cpu=options.cpu, features=options.features, opt=options.opt, reloc=options.reloc, codemodel=options.codemodel
    )


def new_host_machine() -> llvm.TargetMachine:
    """A fresh target machine for the host CPU: an MCJIT engine takes ownership of the
    machine it is created with, so each engine needs its own (sharing one frees it once
    per engine)."""
    return create_machine(host_options())


@cache
def host_features() -> frozenset[str]:
    """The host CPU's enabled features (`avx512f`, `avx2`, `avx512vnni`, ...)."""
    _initialized()
    return frozenset(name for name, on in llvm.get_host_cpu_features().items() if on)


def vector_registers() -> tuple[int, int]:
    """f32 lanes per vector register and the number of vector registers: what a
    register-blocked microkernel may hold (AVX-512, AVX/AVX2, else SSE)."""
    features = host_features()
    if "avx512f" in features:
        return 16, 32
    return (8, 16) if "avx" in features else (4, 16)


def has_vnni() -> bool:
    """Whether vpdpbusd runs on vector_registers()' width: AVX-512 VNNI with AVX-512,
    AVX-VNNI on 256-bit vectors."""
    features = host_features()
    return "avx512vnni" in features if "avx512f" in features else "avxvnni" in features


@cache
def machine_for(options: MachineOptions) -> llvm.TargetMachine:
    """The machine used for optimisation and code emission (never given to an engine)."""
    return create_machine(options)


def host_machine() -> llvm.TargetMachine:
    return machine_for(host_options())
