"""The CPU that code is generated for, as an LLVM target: the host, or one named by
`--mcpu`/`--mattr` (name, features, triple and data layout)."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from typing import NamedTuple, TypeVar

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
    """The host CPU, its code generator at -O3 (the IR pipeline runs at O2: worker.SPEED_LEVEL).

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


AMX_ENV = "STOICC_AMX"
"""`STOICC_AMX=0` keeps the host's code off AMX tiles (tdsl-amx), as `--mattr=-amx-tile`
does for a named CPU."""


@cache
def host_features() -> frozenset[str]:
    """The host CPU's enabled features (`avx512f`, `avx2`, `avx512vnni`, ...); the AMX
    ones only once the OS has granted this process the tile state (amx_granted), and not
    with STOICC_AMX=0."""
    _initialized()
    features = frozenset(name for name, on in llvm.get_host_cpu_features().items() if on)
    if "amx-tile" in features and (os.environ.get(AMX_ENV) == "0" or not amx_granted()):
        return frozenset(f for f in features if not f.startswith("amx-"))
    return features


_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA = 158, 0x1023, 18


def amx_granted() -> bool:
    """Asks Linux for AMX's tile data state for this process (arch_prctl
    ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), as every process must before its first
    tile instruction (which would otherwise fault): whether it was granted."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0


_T = TypeVar("_T")
_UNRECOGNIZED = re.compile(r"'([^']*)' is not a recognized (processor|feature) for this target")


def _llvm_warnings(make: Callable[[], _T]) -> tuple[_T, str]:
    """`make()`'s result and what LLVM printed on stderr meanwhile (LLVM warns there,
    and goes on, about a CPU or feature it does not know)."""
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            result = make()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        return result, captured.read().decode(errors="replace")


@cache
def machine_options(cpu: str = "", mattr: str = "") -> MachineOptions:
    """The host's options, or those of the CPU `cpu` (LLVM's name, as `llc -mcpu`)
    with the features `mattr` added or removed (`+avx2,-avx512f`, as `llc -mattr`;
    on top of the host's features where no CPU is named). ValueError for a name
    that LLVM does not know, rather than LLVM's warning and code for a generic CPU."""
    host = host_options()
    if not cpu and not mattr:
        return host
    features = ",".join(f for f in (host.features if not cpu else "", mattr) if f)
    options = host._replace(cpu=cpu or host.cpu, features=features)
    _, warnings = _llvm_warnings(lambda: create_machine(options))
    for name, kind in sorted(set(_UNRECOGNIZED.findall(warnings))):
        what, flag = ("CPU", "mcpu") if kind == "processor" else ("feature", "mattr")
        raise ValueError(f"unknown {what} '{name}' (--{flag}) for {host.triple}; `llc -{flag}=help` lists them")
    return options


@cache
def target_features(options: MachineOptions) -> frozenset[str]:
    """The features enabled on `options`' machine: the host's, or those that LLVM
    implies for a named CPU and --mattr. llvmlite has no query for them, so LLVM's
    inliner answers: it inlines a function that needs feature F into one compiled
    for the target only if the target has F (each candidate is a feature the host's
    detection knows: the instruction-set extensions, not the tuning flags)."""
    host = host_options()
    if options._replace(opt=host.opt, reloc=host.reloc, codemodel=host.codemodel) == host:
        return host_features()  # the features do not depend on how code is emitted
    candidates = sorted(llvm.get_host_cpu_features())
    attrs = f'"target-cpu"="{options.cpu}" "target-features"="{options.features}'
    ir = [f'target triple = "{options.triple}"', f'attributes #0 = {{ {attrs}" }}']
    for i, name in enumerate(candidates, 1):
        ir += [f"define internal i64 @needs{i}(i64 %x) #{i} {{\n  %y = mul i64 %x, %x\n  ret i64 %y\n}}",
               f"define i64 @probe{i}(i64 %x) #0 {{\n  %y = call i64 @needs{i}(i64 %x)\n  ret i64 %y\n}}",
               f'attributes #{i} = {{ {attrs},+{name}" }}']  # fmt: skip
    module = llvm.parse_assembly("\n".join(ir))
    builder = llvm.create_pass_builder(machine_for(options), llvm.create_pipeline_tuning_options(speed_level=2))
    builder.getModulePassManager().run(module, builder)
    text = str(module)
    return frozenset(name for i, name in enumerate(candidates, 1) if f"@needs{i}(" not in text)


def describe(options: MachineOptions) -> str:
    """The CPU and the features code compiled for it needs, as `NAME: +f1,+f2,...`."""
    return f"{options.cpu}: " + ",".join(f"+{f}" for f in sorted(target_features(options)))


def vector_registers(features: frozenset[str]) -> tuple[int, int]:
    """f32 lanes per vector register and the number of vector registers: what a
    register-blocked microkernel may hold (AVX-512, AVX/AVX2, else SSE)."""
    if "avx512f" in features:
        return 16, 32
    return (8, 16) if "avx" in features else (4, 16)


def has_vnni(features: frozenset[str]) -> bool:
    """Whether vpdpbusd runs on vector_registers()' width: AVX-512 VNNI with AVX-512,
    AVX-VNNI on 256-bit vectors."""
    return "avx512vnni" in features if "avx512f" in features else "avxvnni" in features


def has_byte_madd(features: frozenset[str]) -> bool:
    """Whether pmaddubsw and pmaddwd run on vector_registers()' width: AVX-512BW with
    AVX-512, AVX2 on 256-bit vectors (AVX alone has no 256-bit integer ops), SSSE3."""
    if "avx512f" in features:
        return "avx512bw" in features
    return "avx2" in features if "avx" in features else "ssse3" in features


def has_avx512bf16(features: frozenset[str]) -> bool:
    """Whether vdpbf16ps (bf16 pair dot products into f32) runs on 16 f32 lanes."""
    return "avx512f" in features and "avx512bf16" in features


@cache
def machine_for(options: MachineOptions) -> llvm.TargetMachine:
    """The machine used for optimisation and code emission (never given to an engine)."""
    return create_machine(options)
