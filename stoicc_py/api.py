"""The Python API: compile a .tdsl program, call its kernels on numpy arrays.

A program found in the kernel cache loads without the compiler: its key is computed
from the source text before parsing, and the front end, xDSL and the passes
(stoicc_py.lowering) are imported only on a miss, or when the IR or the reference
interpreter is asked for.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from functools import cache, cached_property
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import llvmlite
import llvmlite.binding as llvm
import numpy as np

from stoicc_py.backends.llvm.header import c_header
from stoicc_py.backends.llvm.jit import NativeLibrary
from stoicc_py.backends.llvm.target import describe, host_features, host_options
from stoicc_py.cache import KernelCache, cache_key
from stoicc_py.cache_dir import cache_dir
from stoicc_py.kernel import KernelBase, NativeKernel, ProgramBase
from stoicc_py.options import TARGETS as TARGETS
from stoicc_py.options import Options
from stoicc_py.source import decode_source as decode_source
from stoicc_py.source import read_source as read_source
from stoicc_py.timing import timed
from stoicc_py.version import __version__

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp

    from stoicc_py.accel import AccelProgram
    from stoicc_py.gpu import GpuProgram
    from stoicc_py.lowering import emit_text as emit_text
    from stoicc_py.lowering import front_end as front_end
    from stoicc_py.lowering import kernel_abis as kernel_abis
    from stoicc_py.lowering import lower as lower
    from stoicc_py.lowering import object_code as object_code
    from stoicc_py.lowering import only_kernel as only_kernel
    from stoicc_py.pipeline import TEXT_STAGES as TEXT_STAGES  # re-exported, loaded on first use: _LOWERING

_LOWERING = ("TEXT_STAGES", "emit_text", "front_end", "kernel_abis", "lower", "object_code", "only_kernel")

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]
_COMPILER_PACKAGES = ("stoicc_py", "stoicc_py.dialects", "stoicc_py.codegen", "stoicc_py.passes", "stoicc_py.backends")


def __getattr__(name: str) -> Any:
    # The compile path's functions, for the CLI and the accelerator target, loaded on first use.
    if name in _LOWERING:
        return getattr(import_module("stoicc_py.lowering"), name)
    raise AttributeError(f"module 'stoicc_py.api' has no attribute '{name}'")


def _compile_error(message: str) -> Exception:
    from stoicc_py.diagnostics import CompileError  # an xDSL exception: loaded when there is an error

    return CompileError(message)


@cache
def _compiler_digest() -> str:
    """A hash of the compiler's own sources, so that a changed compiler (an editable
    install, a patched one) never reuses code that an older one cached. The packages
    are found, not imported: a cache hit does not load the compiler."""
    digest = hashlib.sha256()
    for package in _COMPILER_PACKAGES:
        spec = find_spec(package)
        assert spec is not None and spec.submodule_search_locations is not None
        for root in spec.submodule_search_locations:
            for path in sorted(Path(root).rglob("*")):
                if path.suffix in (".py", ".lark"):
                    digest.update(f"{package}/{path.relative_to(root)}\0".encode())
                    digest.update(path.read_bytes())
    return digest.hexdigest()


def host_cpu() -> str:
    """The CPU that code is generated for (LLVM's name and feature string, and whether its
    AMX tiles are used: host_features)."""
    amx = "amx-tile" in host_features()
    return f"{llvm.get_host_cpu_name()};{llvm.get_host_cpu_features().flatten()};amx={amx}"


def _xdsl_version() -> str:
    """From the name of xDSL's dist-info beside it; else importlib.metadata, which takes ~25 ms to import."""
    spec = find_spec("xdsl")
    assert spec is not None and spec.origin is not None
    for info in Path(spec.origin).parent.parent.glob("xdsl-*.dist-info"):
        return info.name.removeprefix("xdsl-").removesuffix(".dist-info")
    import xdsl  # the package alone: its dialects are not loaded

    return str(xdsl.__version__)


def toolchain_key() -> str:
    """Everything besides the source and options that changes the generated code."""
    return ";".join(
        [f"stoicc_py={__version__}", _compiler_digest(), f"xdsl={_xdsl_version()}",
         f"llvmlite={llvmlite.__version__}", f"llvm={llvm.llvm_version_info}", host_cpu()]
    )  # fmt: skip


class Kernel(KernelBase):
    """One native kernel of a Program: call it, run its reference, pack its weights, look at
    its IR. Calls release the GIL and may run on several threads (`threads`)."""

    program: Program

    def __init__(self, program: Program, native: NativeKernel):
        super().__init__(program, native.abi)
        self._native = native

    def __call__(self, *args: object) -> Array | tuple[Array, ...]:
        """Run the native code: one argument per parameter (numpy arrays, DLPack producers such
        as torch CPU tensors, `__array__`/buffer objects; a PackedTensor or a dense matrix for a
        packed parameter). Returns a new numpy array per result (a tuple for several)."""
        return self._native(*args)

    @property
    def threads(self) -> int | None:
        """Threads per call (a positive int), or None to follow stoicc_py.get_threads().
        Only a kernel with a row split (abi.row_split), or a call of one row of a kernel with a
        column split (abi.column_split), uses more than one."""
        return self._native.threads

    @threads.setter
    def threads(self, n: int | None) -> None:
        self._native.threads = n

    def ir(self, stage: str = "ir") -> str:
        """This kernel's IR after a stage: ir, opt, loops, ptr, llvm, llvm-ir or asm."""
        return self.program.ir(stage, kernel=self.name)


class Program(ProgramBase[Kernel]):
    """A .tdsl file compiled for the CPU: its kernels (`kernels`, name -> Kernel), as
    attributes (`prog.NAME`) or with kernel(); `source` and `file` as given to compile()."""

    def __init__(self, source: str, file: str, options: Options, cache: KernelCache | None):
        self.source, self.file, self.options = source, file, options
        key = cache_key(source, options.key(), toolchain_key())
        entry = cache.get(key) if cache is not None else None
        if entry is None:
            from stoicc_py.backends.llvm.worker import POOL

            POOL.prestart()  # its start overlaps the imports, the front end and the passes
            from stoicc_py.lowering import build

            log.info("compiling %s", file)
            with timed(log, f"compile {file}"):
                objects, abis = build(self.module, options)
            if cache is not None:
                cache.put(key, objects, abis)
        else:
            log.info("loaded %s from the kernel cache", file)
            objects, abis = entry
        self._library = NativeLibrary(objects)
        self.kernels = {
            a.name: Kernel(self, NativeKernel(a, self._library.address(a.symbol), self._library)) for a in abis
        }

    @cached_property
    def module(self) -> ModuleOp:
        """The front end's module: parsed on a cache miss, else when first asked for."""
        from stoicc_py.lowering import front_end

        return front_end(self.source, self.file)

    def header(self) -> str:
        """The C header declaring every kernel of the program (docs/api.md, C ABI), compiled for the host."""
        return c_header([k.abi for k in self.kernels.values()], target=describe(host_options()))

    def ir(self, stage: str = "ir", kernel: str | None = None) -> str:
        """The program's (or one kernel's) IR after a stage: ir, opt, loops, ptr, llvm, llvm-ir or asm."""
        from stoicc_py.lowering import emit_text, only_kernel

        module = only_kernel(self.module, kernel) if kernel else self.module
        return emit_text(module, stage, self.options)


@overload
def compile(  # noqa: A001 - the public name users expect
    source_or_path: str | os.PathLike[str],
    target: Literal["cpu"] = "cpu",
    *,
    tile: Sequence[int] = (),
    cache: bool | str | os.PathLike[str] = True,
    machine: str | os.PathLike[str] | None = None,
    check_bounds: bool = False,
) -> Program: ...


@overload
def compile(  # noqa: A001
    source_or_path: str | os.PathLike[str],
    target: Literal["accel"],
    *,
    tile: Sequence[int] = (),
    cache: bool | str | os.PathLike[str] = True,
    machine: str | os.PathLike[str] | None = None,
) -> AccelProgram: ...


@overload
def compile(  # noqa: A001
    source_or_path: str | os.PathLike[str],
    target: Literal["gpu"],
    *,
    tile: Sequence[int] = (),
    cache: bool | str | os.PathLike[str] = True,
) -> GpuProgram: ...


@overload
def compile(  # noqa: A001
    source_or_path: str | os.PathLike[str],
    target: str = "cpu",
    *,
    tile: Sequence[int] = (),
    cache: bool | str | os.PathLike[str] = True,
    machine: str | os.PathLike[str] | None = None,
    check_bounds: bool = False,
) -> Program | AccelProgram | GpuProgram: ...


def compile(  # noqa: A001
    source_or_path: str | os.PathLike[str],
    target: str = "cpu",
    *,
    tile: Sequence[int] = (),
    cache: bool | str | os.PathLike[str] = True,
    machine: str | os.PathLike[str] | None = None,
    check_bounds: bool = False,
) -> Program | AccelProgram | GpuProgram:
    """Compile .tdsl source (text, or a path to a .tdsl file) for `target`: "cpu"
    (native code), "accel" (programs for the simulated accelerator) or "gpu" (NVIDIA
    tensor-core kernels as PTX, run through the CUDA driver: docs/gpu.md).

    `tile` overrides the matrix-product tile sizes [tm, tn, tk]. Compiled code is
    cached on disk (in $STOICC_CACHE_DIR, else ~/.cache/stoicc_py); `cache=False`
    turns that off, a path chooses the directory. `machine` is an accelerator
    description (TOML) overriding the default machine. `check_bounds=True` (cpu)
    compiles every memory access with a check against its buffer: a kernel that
    would read or write outside one raises IndexError naming it instead (slower;
    for testing). Raises CompileError on a bad program.
    """
    if target not in TARGETS:
        raise _compile_error(f"unknown target '{target}' (available: {', '.join(TARGETS)})")
    source, file = read_source(source_or_path)
    if target == "accel":
        from stoicc_py.accel import AccelProgram

        if check_bounds:
            raise _compile_error("check_bounds applies to the cpu target (the simulator checks every access itself)")

        return AccelProgram(source, file, tuple(tile), str(machine) if machine else "")
    if target == "gpu":
        from stoicc_py.gpu import GpuProgram

        if check_bounds or machine:
            raise _compile_error("check_bounds and machine apply to the cpu and accel targets")
        return GpuProgram(source, file, tuple(tile))  # PTX is built in well under a second: no cache
    if cache is False:
        store = None
    elif cache is True:
        store = KernelCache(cache_dir())
    else:
        store = KernelCache(Path(cache))
    return Program(source, file, Options(target, tuple(tile), check_bounds), store)
