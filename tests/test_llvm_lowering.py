"""End-to-end tests of the LLVM lowering: MLIR text -> pointers -> LLVM IR -> JIT.

Each kernel goes through the full pipeline, is optimised at O3 (so that wrong
`noalias` or `inbounds` claims would show up as wrong results), JIT-compiled and
called through ctypes on numpy arrays.
"""

import ctypes
import math
from collections.abc import Callable

import llvmlite.binding as llvm
import numpy as np
import pytest
from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.cf import Cf
from xdsl.dialects.func import Func
from xdsl.dialects.llvm import LLVM
from xdsl.dialects.math import Math
from xdsl.dialects.memref import MemRef
from xdsl.dialects.ptr import Ptr
from xdsl.dialects.scf import Scf
from xdsl.parser import Parser
from xdsl.passes import PassPipeline
from xdsl.transforms import get_all_passes

from stoicc_py.backends.llvm.translate import translate
from stoicc_py.passes import PASSES

PIPELINE = "lower-alloc,lower-memory-to-ptr,lower-memory-to-ptr{signatures=true}"

F32 = ctypes.c_float
F64 = ctypes.c_double
I32 = ctypes.c_int32
I64 = ctypes.c_int64
PTR = ctypes.c_void_p


def _context() -> Context:
    ctx = Context()
    for dialect in (Builtin, Func, Arith, Math, MemRef, Scf, Cf, Ptr, LLVM):
        ctx.load_dialect(dialect)
    return ctx


def lower(source: str) -> str:
    """Runs the pipeline on `source` and returns the verified LLVM IR text."""
    ctx = _context()
    module = Parser(ctx, source).parse_module()
    PassPipeline.parse_spec(get_all_passes() | PASSES, PIPELINE).apply(ctx, module)
    module.verify()
    llvm_ir = translate(module, llvm.get_process_triple(), "")
    llvm.parse_assembly(llvm_ir).verify()
    return llvm_ir


class Jit:
    """An MCJIT engine holding one optimised module."""

    def __init__(self, llvm_ir: str) -> None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.target_machine = llvm.Target.from_default_triple().create_target_machine(opt=3)
        module = llvm.parse_assembly(llvm_ir)
        module.verify()
        tuning = llvm.create_pipeline_tuning_options(speed_level=3)
        pass_builder = llvm.create_pass_builder(self.target_machine, tuning)
        pass_builder.getModulePassManager().run(module, pass_builder)
        self.engine = llvm.create_mcjit_compiler(module, self.target_machine)
        self.engine.finalize_object()

    def function(self, name: str, restype: type | None, *argtypes: type) -> Callable[..., object]:
        address = self.engine.get_function_address(name)
        assert address, f"no function @{name}"
        return ctypes.CFUNCTYPE(restype, *argtypes)(address)


def compile_kernel(source: str) -> Jit:
    return Jit(lower(source))


def ptr(array: np.ndarray) -> int:
    assert array.flags.c_contiguous
    return array.ctypes.data


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


SUM = """
func.func @sum(%a: memref<?xf32>, %n: index) -> f32 attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f32) {
    %v = memref.load %a[%i] : memref<?xf32>
    %s = arith.addf %acc, %v : f32
    scf.yield %s : f32
  }
  func.return %r : f32
}
"""


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_sum_of_dynamic_memref(n: int, rng: np.random.Generator) -> None:
    jit = compile_kernel(SUM)
    kernel = jit.function("sum", F32, PTR, I64)
    a = rng.standard_normal(n).astype(np.float32)
    assert kernel(ptr(a), n) == pytest.approx(float(a.sum(dtype=np.float64)), rel=1e-4, abs=1e-4)


def test_noalias_reaches_llvm() -> None:
    assert "ptr noalias" in lower(SUM)


ACTIVATIONS = """
func.func @activations(%x: memref<?x8xf32>, %y: memref<?x8xf32>, %rows: index)
    attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %half = arith.constant 0.5 : f32
  scf.for %i = %c0 to %rows step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      %v = memref.load %x[%i, %j] : memref<?x8xf32>
      %e = math.exp %v fastmath<fast> : f32
      %t = math.tanh %v : f32
      %f = math.erf %v : f32
      %a = math.absf %v : f32
      %s = math.sqrt %a : f32
      %m = arith.mulf %e, %half fastmath<contract> : f32
      %tf = arith.addf %t, %f : f32
      %hi = arith.maximumf %m, %tf : f32
      %r = arith.addf %hi, %s : f32
      memref.store %r, %y[%i, %j] : memref<?x8xf32>
    }
  }
  func.return
}
"""


def test_two_dimensional_loop_nest_with_math(rng: np.random.Generator) -> None:
    jit = compile_kernel(ACTIVATIONS)
    kernel = jit.function("activations", None, PTR, PTR, I64)
    rows = 13
    x = rng.standard_normal((rows, 8)).astype(np.float32)
    y = np.zeros_like(x)
    kernel(ptr(x), ptr(y), rows)
    x64 = x.astype(np.float64)
    erf = np.vectorize(math.erf)
    expected = np.maximum(np.exp(x64) * 0.5, np.tanh(x64) + erf(x64)) + np.sqrt(np.abs(x64))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


SCRATCH = """
func.func @scaled_sum(%x: memref<?xf32>, %n: index) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %two = arith.constant 2.0 : f32
  %tmp = memref.alloc(%n) : memref<?xf32>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %x[%i] : memref<?xf32>
    %d = arith.mulf %v, %two : f32
    memref.store %d, %tmp[%i] : memref<?xf32>
  }
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f32) {
    %v = memref.load %tmp[%i] : memref<?xf32>
    %s = arith.addf %acc, %v : f32
    scf.yield %s : f32
  }
  memref.dealloc %tmp : memref<?xf32>
  func.return %r : f32
}

func.func @static_scratch(%x: f32) -> f32 {
  %c3 = arith.constant 3 : index
  %tmp = memref.alloc() : memref<5x3xf32>
  memref.store %x, %tmp[%c3, %c3] : memref<5x3xf32>
  %v = memref.load %tmp[%c3, %c3] : memref<5x3xf32>
  memref.dealloc %tmp : memref<5x3xf32>
  func.return %v : f32
}
"""


@pytest.mark.parametrize("n", [1, 3, 100, 4099])
def test_dynamic_scratch_buffer(n: int, rng: np.random.Generator) -> None:
    jit = compile_kernel(SCRATCH)
    kernel = jit.function("scaled_sum", F32, PTR, I64)
    x = rng.standard_normal(n).astype(np.float32)
    expected = 2 * float(x.sum(dtype=np.float64))
    assert kernel(ptr(x), n) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert jit.function("static_scratch", F32, F32)(1.5) == 1.5


SCALARS = """
func.func @clamp_index(%a: i32, %lo: i32, %hi: i32) -> i32 {
  %0 = arith.maxsi %a, %lo : i32
  %1 = arith.minsi %0, %hi : i32
  func.return %1 : i32
}

func.func @umax(%a: i32, %b: i32) -> i32 {
  %0 = arith.maxui %a, %b : i32
  func.return %0 : i32
}

func.func @to_int(%x: f32) -> i32 {
  %0 = arith.fptosi %x : f32 to i32
  func.return %0 : i32
}

func.func @unsigned_to_float(%u: i64) -> f64 {
  %0 = arith.uitofp %u : i64 to f64
  func.return %0 : f64
}

func.func @unsigned32_to_float(%u: i32) -> f32 {
  %0 = arith.uitofp %u : i32 to f32
  func.return %0 : f32
}

func.func @index_math(%i: index, %j: i32) -> i64 {
  %0 = arith.index_cast %j : i32 to index
  %1 = arith.muli %i, %0 : index
  %2 = arith.divsi %1, %i : index
  %3 = arith.remsi %1, %0 : index
  %4 = arith.addi %2, %3 : index
  %5 = arith.index_cast %4 : index to i64
  func.return %5 : i64
}

func.func @select_nan(%x: f64, %y: f64) -> f64 {
  %0 = arith.cmpf uno, %x, %y : f64
  %1 = arith.maxnumf %x, %y : f64
  %2 = arith.maximumf %x, %y : f64
  %3 = arith.select %0, %1, %2 : f64
  %4 = arith.negf %3 : f64
  func.return %4 : f64
}

func.func @mixed_precision_exp(%x: f32, %y: f64) -> f64 {
  %0 = math.exp %x : f32
  %1 = math.exp %y : f64
  %2 = arith.extf %0 : f32 to f64
  %3 = arith.addf %1, %2 : f64
  %4 = math.tanh %y : f64
  %5 = math.fma %3, %4, %y : f64
  %6 = math.powf %5, %y : f64
  func.return %6 : f64
}
"""


def test_scalar_arith() -> None:
    jit = compile_kernel(SCALARS)
    clamp = jit.function("clamp_index", I32, I32, I32, I32)
    assert [clamp(v, -2, 5) for v in (-10, 0, 9)] == [-2, 0, 5]
    assert jit.function("umax", I32, I32, I32)(-1, 7) == -1
    assert jit.function("to_int", I32, F32)(-3.75) == -3
    unsigned_to_float = jit.function("unsigned_to_float", F64, I64)
    # Values around 2**53 and 2**63 check the rounding of the halving trick.
    for value in (0, 1, 2**53 + 1, 2**63 - 1, 2**63 + 2049, 2**63 + 3 * 2**10 + 1, 2**64 - 1):
        as_signed = value - 2**64 if value >= 2**63 else value
        assert unsigned_to_float(as_signed) == float(value)
    assert jit.function("unsigned32_to_float", F32, I32)(-1) == float(np.float32(2**32 - 1))
    assert jit.function("index_math", I64, I64, I32)(6, 4) == 4
    select_nan = jit.function("select_nan", F64, F64, F64)
    assert select_nan(1.0, 2.0) == -2.0
    assert select_nan(math.nan, 2.0) == -2.0


def test_mixed_precision_intrinsics() -> None:
    jit = compile_kernel(SCALARS)
    x, y = 0.25, 0.5
    expected = ((math.exp(y) + math.exp(x)) * math.tanh(y) + y) ** y
    assert jit.function("mixed_precision_exp", F64, F32, F64)(x, y) == pytest.approx(expected)
