"""The Python API: compile a .tdsl program, call its kernels on numpy arrays."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llvmlite.binding as llvm
import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from stoicc_py.abi import KernelABI
from stoicc_py.backends.llvm.codegen import emit_asm, emit_object, optimize, to_llvm_ir
from stoicc_py.backends.llvm.header import c_header
from stoicc_py.backends.llvm.jit import NativeLibrary
from stoicc_py.cache import KernelCache, cache_key
from stoicc_py.diagnostics import CompileError
from stoicc_py.frontend.irgen import irgen
from stoicc_py.frontend.parser import parse
from stoicc_py.interpreter import run_reference
from stoicc_py.kernel import NUMPY_DTYPES, NativeKernel, bind_symbols, check_arguments, dense_values, pack_for
from stoicc_py.packing import PackedTensor
from stoicc_py.pipeline import PassCallback, Stage, pipeline_spec, run_passes

if TYPE_CHECKING:
    from stoicc_py.accel import AccelProgram

log = logging.getLogger("stoicc_py")
TARGETS = ("cpu", "accel")
STAGES = {"ir": Stage.IR, "opt": Stage.OPT, "loops": Stage.LOOPS, "llvm": Stage.LLVM}
TEXT_STAGES = (*STAGES, "llvm-ir", "asm")
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Options:
    target: str = "cpu"
    tile: tuple[int, ...] = ()

    def key(self) -> str:
        return f"target={self.target};tile={self.tile}"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stoicc_py"


def read_source(source_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    """(source text, file name for diagnostics); a str is a path if it names a file."""
    if isinstance(source_or_path, os.PathLike) or ("\n" not in source_or_path and source_or_path.endswith(".tdsl")):
        path = Path(source_or_path)
        try:
            return path.read_text(), str(path)
        except OSError as err:
            raise CompileError(f"cannot read {path}: {err.strerror}") from None
    return str(source_or_path), "<string>"


def front_end(source: str, file: str) -> ModuleOp:
    module = irgen(parse(source, file))
    module.verify()
    return module


def only_kernel(module: ModuleOp, name: str) -> ModuleOp:
    """A copy of `module` with only the function `name`."""
    kept = module.clone()
    for op in list(kept.ops):
        if isinstance(op, func.FuncOp) and op.sym_name.data != name:
            kept.body.block.erase_op(op)
    return kept


def lower(module: ModuleOp, upto: Stage, options: Options, after_pass: PassCallback | None = None) -> ModuleOp:
    """A lowered copy of a front-end module (for the CPU; the ABI's stage OPT for any target)."""
    return run_passes(module.clone(), pipeline_spec(upto, options.tile), after_pass)


def optimized_llvm(module: ModuleOp, options: Options, after_pass: PassCallback | None = None) -> llvm.ModuleRef:
    return optimize(to_llvm_ir(lower(module, Stage.LLVM, options, after_pass)))


@cache
def _compiler_digest() -> str:
    """A hash of the compiler's own sources, so that a changed compiler (an editable
    install, a patched one) never reuses code that an older one cached."""
    import stoicc_py
    from stoicc_py import backends, dialects, passes

    digest = hashlib.sha256()
    for package in (stoicc_py, dialects, passes, backends):
        for root in package.__path__:
            for path in sorted(Path(root).rglob("*")):
                if path.suffix in (".py", ".lark"):
                    digest.update(path.read_bytes())
    return digest.hexdigest()


def _toolchain_key() -> str:
    return ";".join(
        [f"stoicc_py={version('stoicc_py')}", _compiler_digest(), f"xdsl={version('xdsl')}",
         f"llvmlite={version('llvmlite')}", llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()]
    )  # fmt: skip


class KernelBase:
    """What every target's kernel has: its ABI, the reference, packing."""

    def __init__(self, module: ModuleOp, abi: KernelABI):
        self.module = module  # the front end's module, which the reference interprets
        self.abi = abi
        self.name = abi.name

    def reference(self, *args: object) -> Array | tuple[Array, ...]:
        """Run the numpy reference interpreter on the same arguments."""
        prepared = check_arguments(self.abi, args)
        bind_symbols(self.abi, prepared)
        dtypes = [NUMPY_DTYPES[r.dtype] for r in self.abi.results]
        outs = run_reference(self.module, self.name, dense_values(prepared), dtypes)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def pack(self, param: str, w: Array, **options: Any) -> PackedTensor:
        """Pack `w` in the layout of parameter `param` (see stoicc_py.pack for options)."""
        specs = {p.name: p for p in self.abi.params}
        if param not in specs:
            raise KeyError(f"{self.name} has no parameter '{param}' (parameters: {', '.join(specs)})")
        return pack_for(self.abi, specs[param], np.asarray(w), **options)

    def __repr__(self) -> str:
        params = ", ".join(map(str, self.abi.params))
        results = ", ".join(f"{r.dtype}[{', '.join(map(str, r.dims))}]" for r in self.abi.results)
        return f"<stoicc kernel {self.name}({params}) -> {results}>"


class Kernel(KernelBase):
    """One native kernel of a Program: call it, run its reference, look at its IR."""

    def __init__(self, program: Program, native: NativeKernel):
        super().__init__(program.module, native.abi)
        self.program = program
        self._native = native

    def __call__(self, *args: object) -> Array | tuple[Array, ...]:
        return self._native(*args)

    def ir(self, stage: str = "ir") -> str:
        """This kernel's IR after a stage: ir, opt, loops, llvm, llvm-ir or asm."""
        return self.program.ir(stage, kernel=self.name)


class Program:
    """A compiled .tdsl file: its kernels, by name, as attributes or with kernel()."""

    def __init__(self, source: str, file: str, options: Options, cache: KernelCache | None):
        self.source, self.file, self.options = source, file, options
        self.module = front_end(source, file)
        key = cache_key(source, options.key(), _toolchain_key())
        entry = cache.get(key) if cache is not None else None
        if entry is None:
            log.info("compiling %s", file)
            obj = emit_object(optimized_llvm(self.module, options))
            # The ABI reads the storage that metadata-layout records, like the kernel does.
            abis = [
                KernelABI.of(op) for op in lower(self.module, Stage.OPT, options).ops if isinstance(op, func.FuncOp)
            ]
            if cache is not None:
                cache.put(key, obj, abis)
        else:
            log.info("loaded %s from the kernel cache", file)
            obj, abis = entry
        self._library = NativeLibrary(obj)
        self.kernels = {
            a.name: Kernel(self, NativeKernel(a, self._library.address(a.name), self._library)) for a in abis
        }

    def kernel(self, name: str) -> Kernel:
        if name not in self.kernels:
            raise KeyError(f"no kernel '{name}' in {self.file} (kernels: {', '.join(self.kernels)})")
        return self.kernels[name]

    def __getattr__(self, name: str) -> Kernel:
        kernels = self.__dict__.get("kernels", {})
        if name in kernels:
            return kernels[name]
        raise AttributeError(name)

    def header(self) -> str:
        return c_header([k.abi for k in self.kernels.values()])

    def ir(self, stage: str = "ir", kernel: str | None = None) -> str:
        module = only_kernel(self.module, kernel) if kernel else self.module
        return emit_text(module, stage, self.options)


def emit_text(module: ModuleOp, stage: str, options: Options, after_pass: PassCallback | None = None) -> str:
    """The textual form of `module` lowered to `stage`."""
    if stage in STAGES:
        return str(lower(module, STAGES[stage], options, after_pass))
    if stage == "llvm-ir":
        return str(optimized_llvm(module, options, after_pass))
    if stage == "asm":
        return emit_asm(optimized_llvm(module, options, after_pass))
    raise ValueError(f"unknown stage '{stage}' (expected one of {', '.join(TEXT_STAGES)})")


def compile(  # noqa: A001 - the public name users expect
    source_or_path: str | os.PathLike[str],
    target: str = "cpu",
    *,
    tile: Sequence[int] = (),
    cache: bool | str | os.PathLike[str] = True,
    machine: str | os.PathLike[str] | None = None,
) -> Program | AccelProgram:
    """Compile .tdsl source (text, or a path to a .tdsl file) for `target`: "cpu"
    (native code) or "accel" (programs for the simulated accelerator).

    `tile` overrides the matrix-product tile sizes [tm, tn, tk]. Compiled code is
    cached on disk (in $STOICC_CACHE_DIR, else ~/.cache/stoicc_py); `cache=False`
    turns that off, a path chooses the directory. `machine` is an accelerator
    description (TOML) overriding the default machine. Raises CompileError on a
    bad program.
    """
    if target not in TARGETS:
        raise CompileError(f"unknown target '{target}' (available: {', '.join(TARGETS)})")
    source, file = read_source(source_or_path)
    if target == "accel":
        from stoicc_py.accel import AccelProgram

        return AccelProgram(source, file, tuple(tile), str(machine) if machine else "")
    if cache is False:
        store = None
    elif cache is True:
        store = KernelCache(Path(os.environ.get("STOICC_CACHE_DIR") or default_cache_dir()))
    else:
        store = KernelCache(Path(cache))
    return Program(source, file, Options(target, tuple(tile)), store)
