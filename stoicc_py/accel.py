"""The accelerator target from Python: `compile(src, target="accel")`.

A kernel's program depends on its static shapes, so it is built on first use for
each binding of the size symbols (k.program(M=64)), then simulated on every call:
`k(x, w)` returns the outputs, bit-exact with the reference on integer paths, and
leaves the cost in `k.last_report`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DenseArrayBase, DictionaryAttr, i8

from stoicc_py.abi import KernelABI
from stoicc_py.backends.accel.isa import Program as MachineProgram
from stoicc_py.backends.accel.machine import Machine
from stoicc_py.backends.accel.simulator import Report, simulate
from stoicc_py.codegen.accel_operands import TILE_TABLE
from stoicc_py.dialects.accel import output_segment
from stoicc_py.dialects.sparse import HybridAttr
from stoicc_py.kernel import NUMPY_DTYPES, KernelBase, ProgramBase, bind_symbols, check_arguments, result_shape
from stoicc_py.lowering import front_end, kernel_abis, only_kernel
from stoicc_py.options import Options
from stoicc_py.packing import PackedTensor
from stoicc_py.pipeline import PassCallback, accel_pipeline_spec, run_passes

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]


class AccelKernel(KernelBase):
    """One kernel compiled for the simulated accelerator: a call simulates it on its
    arguments (checked as for the CPU) and leaves the machine's costs in `last_report`."""

    program: AccelProgram

    def __init__(self, program: AccelProgram, abi: KernelABI):
        super().__init__(program, abi)
        self.last_report: Report | None = None
        # (sizes, (parameter, hash of its tile table) ...) -> program
        self._programs: dict[tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]], MachineProgram] = {}

    def program_for(self, tables: dict[str, Array] | None = None, **sizes: int) -> MachineProgram:
        """The machine program for these sizes of the kernel's symbols and, for hybrid
        weights, these tile tables (parameter -> the packed weight's "table"); cached."""
        missing = [s for s in self.abi.symbols if s not in sizes]
        if missing:
            raise ValueError(f"{self.name}: accelerator programs have static shapes; give {', '.join(missing)}")
        tables = tables or {}
        key = (tuple(sorted((s, sizes[s]) for s in self.abi.symbols)),
               tuple(sorted((k, hashlib.sha256(v.tobytes()).hexdigest()) for k, v in tables.items())))  # fmt: skip
        if key not in self._programs:
            log.info("building the accelerator program of %s for %s", self.name, dict(key[0]))
            self._programs[key] = MachineProgram.of(self.program.lowered(self.name, dict(key[0]), tables))
        return self._programs[key]

    def isa(self, **sizes: int) -> str:
        """The program's assembly text."""
        return self.program_for(None, **sizes).to_asm()

    def __call__(self, *args: object) -> Array | tuple[Array, ...]:
        """Simulate the program for these arguments' sizes (built on first use): new numpy
        arrays, one per result (a tuple for several); the cost in `last_report`."""
        prepared = check_arguments(self.abi, args)
        sizes = bind_symbols(self.abi, prepared)
        tables = {spec.name: arg.arrays["table"] for spec, arg in zip(self.abi.params, prepared)
                  if isinstance(arg, PackedTensor) and isinstance(arg.layout, HybridAttr)}  # fmt: skip
        program = self.program_for(tables, **sizes)
        inputs: dict[str, Array] = {}
        for spec, arg in zip(self.abi.params, prepared):
            if isinstance(arg, PackedTensor):
                inputs.update({f"{spec.name}.{role}": a for role, a in arg.arrays.items()})
            else:
                inputs[spec.name] = arg
        outputs, self.last_report = simulate(program, inputs, self.program.machine)
        results = [
            np.frombuffer(outputs[output_segment(i)], NUMPY_DTYPES[r.dtype]).reshape(result_shape(r, sizes)).copy()
            for i, r in enumerate(self.abi.results)
        ]
        return results[0] if len(results) == 1 else tuple(results)


class AccelProgram(ProgramBase[AccelKernel]):
    """A .tdsl file compiled for the simulated accelerator: its kernels (`kernels`, name ->
    AccelKernel), as attributes or with kernel(); `machine`, the machine they run on."""

    def __init__(self, source: str, file: str, tile: tuple[int, ...] = (), machine: str = ""):
        self.source, self.file, self.tile, self.machine_file = source, file, tile, machine
        self.machine = Machine.load(machine or None)
        self.module = front_end(source, file)
        self.kernels = {a.name: AccelKernel(self, a) for a in kernel_abis(self.module, Options())}

    def lowered(self, kernel: str, sizes: dict[str, int], tables: dict[str, Array] | None = None,
                after_pass: PassCallback | None = None) -> func.FuncOp:  # fmt: skip
        """The kernel in the accel dialect, scheduled; specialised on hybrid weights' tile tables."""
        module = only_kernel(self.module, kernel)
        fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
        if tables:
            attrs = [dict(a.data) for a in fn.arg_attrs.data] if fn.arg_attrs else [{} for _ in fn.args]
            for i, spec in enumerate(self.kernel(kernel).abi.params):
                if spec.name in tables:
                    attrs[i][TILE_TABLE] = DenseArrayBase.from_list(i8, tables[spec.name].reshape(-1).tolist())
            fn.arg_attrs = ArrayAttr(DictionaryAttr(a) for a in attrs)
        run_passes(module, accel_pipeline_spec(sizes, self.machine_file, self.tile), after_pass)
        return next(op for op in module.ops if isinstance(op, func.FuncOp))

