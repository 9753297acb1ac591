"""Translation of the loops-level IR (func, scf, arith, math, vector, ptr_xdsl and the few
llvm ops our passes build) to LLVM IR text, in one walk: the last step before LLVM.

MLIR reaches LLVM IR through a conversion pass per dialect into the llvm dialect, then
translates that dialect. Done in xDSL, the conversions rebuilt every op of a kernel
several times (half a decoder layer's 3.9 s compile) for IR that LLVM parses again
anyway; here each op prints its instruction once. Structured control flow becomes
blocks and phis as xDSL's convert-scf-to-cf builds them (a header that compares the
induction variable `slt` the bound, the body, a latch that steps it).

Semantics that the text fixes:
- `index` is i64; bf16 is its bits (i16), widened by a shift and rounded to nearest
  even with integer ops (LLVM would emit vcvtneps2bf16, which flushes subnormals, with
  AVX512-BF16 and a `__truncsfbf2` call that the JIT cannot resolve elsewhere);
- fptosi/fptoui saturate (LLVM's are poison out of range);
- a ptradd by `i * size` (an element's type_offset or a constant) is an inbounds GEP over
  a type of that size, which keeps the pointer's provenance for alias analysis;
- vector loads and stores are aligned to their element (a numpy buffer is no more);
- a vector reduction calls LLVM's vector.reduce with `reassoc`, which LLVM expands
  into a tree of shuffles rather than the ordered sum;
- a function with `stoicc.noalias_args` has noalias pointer arguments, one with
  `stoicc.no_inline` is noinline, a private definition is internal, one with
  `stoicc.calling_convention` has that convention (a GPU kernel's `ptx_kernel`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from xdsl.context import Context
from xdsl.dialects import arith, func, llvm, math, ptr, scf, vector
from xdsl.dialects.builtin import (
    BFloat16Type,
    DenseIntOrFPElementsAttr,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
    StringAttr,
    UnrealizedConversionCastOp,
    VectorType,
)
from xdsl.dialects.utils.fast_math import FastMathFlag
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.utils.exceptions import DiagnosticException
from xdsl.utils.target import Target

from stoicc_py.backends.llvm.target import host_options, machine_for
from stoicc_py.dialects import layout

NOALIAS_ARGS = "stoicc.noalias_args"
"""Unit attribute on a func.func promising that its pointer arguments never alias."""
NO_INLINE = "stoicc.no_inline"
"""Unit attribute on a func.func that LLVM must not inline."""
CALLING_CONVENTION = "stoicc.calling_convention"
"""String attribute on a func.func: its LLVM calling convention (a GPU kernel's `ptx_kernel`)."""


def llvm_type(typ: Attribute) -> str:
    match typ:
        case IndexType():
            return "i64"
        case IntegerType():
            return f"i{typ.bitwidth}"
        case Float32Type():
            return "float"
        case Float64Type():
            return "double"
        case Float16Type():
            return "half"
        case BFloat16Type():
            return "i16"
        case VectorType():
            (lanes,) = typ.get_shape()
            return f"<{lanes} x {llvm_type(typ.element_type)}>"
        case ptr.PtrType() | llvm.LLVMPointerType() | MemRefType():  # a memref: between from_ptr and to_ptr
            return "ptr"
    raise DiagnosticException(f"translate-to-llvm: no LLVM type for {typ}")


def intrinsic_suffix(typ: Attribute) -> str:
    """The overloaded-intrinsic mangling of a type: i32, f32, v8f32."""
    if isinstance(typ, VectorType):
        return f"v{typ.get_shape()[0]}{intrinsic_suffix(typ.element_type)}"
    name = llvm_type(typ)
    return {"float": "f32", "double": "f64", "half": "f16"}.get(name, name)


def _element(typ: Attribute) -> Attribute:
    return typ.element_type if isinstance(typ, VectorType) else typ


def _float_text(value: float, typ: Attribute) -> str:
    """A float constant as LLVM prints it: the hex of the double of the value rounded to `typ`."""
    if isinstance(typ, Float32Type):
        value = struct.unpack("<f", struct.pack("<f", value))[0]
    elif isinstance(typ, Float16Type):
        value = struct.unpack("<e", struct.pack("<e", value))[0]
    return f"0x{struct.unpack('<Q', struct.pack('<d', value))[0]:016X}"


def _bf16_bits(value: float) -> int:
    """The bits of `value` rounded to bf16, nearest even (a NaN stays a quiet NaN)."""
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    if value != value:
        return (bits >> 16) | 0x40
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def _scalar_text(value: Any, typ: Attribute) -> str:
    if isinstance(typ, BFloat16Type):
        return str(_bf16_bits(value))
    if isinstance(typ, Float32Type | Float64Type | Float16Type):
        return _float_text(value, typ)
    if isinstance(typ, IntegerType) and typ.bitwidth == 1:
        return "true" if value else "false"
    return str(int(value))


def constant_text(value: Attribute, typ: Attribute) -> str:
    """An arith.constant's value as an LLVM constant operand (without its type)."""
    if isinstance(value, IntegerAttr | FloatAttr):
        return _scalar_text(value.value.data, typ)
    if isinstance(value, DenseIntOrFPElementsAttr) and isinstance(typ, VectorType):
        values = value.get_values()
        (lanes,) = typ.get_shape()
        if len(values) == 1:
            values = values * lanes
        if not any(values):
            return "zeroinitializer"
        element = typ.element_type
        return "<" + ", ".join(f"{llvm_type(element)} {_scalar_text(v, element)}" for v in values) + ">"
    raise DiagnosticException(f"translate-to-llvm: unsupported constant {value}")


def _splat(typ: Attribute, value: int) -> str:
    """An i32 constant with every lane `value`, a vector if `typ` is one (its lanes)."""
    if isinstance(typ, VectorType):
        return "<" + ", ".join([f"i32 {value}"] * typ.get_shape()[0]) + ">"
    return str(value)


def _like(typ: Attribute, element: str) -> str:
    """`element`, or a vector of it with `typ`'s lanes."""
    return f"<{typ.get_shape()[0]} x {element}>" if isinstance(typ, VectorType) else element


_ALL_FAST = frozenset(flag.value for flag in FastMathFlag)


def _fastmath(flags: Iterable[FastMathFlag | str]) -> str:
    """Fast-math flags as LLVM writes them, in a stable order: `fast` for all of them."""
    names = {flag.value if isinstance(flag, FastMathFlag) else flag for flag in flags}
    return "fast " if names >= _ALL_FAST else "".join(f"{name} " for name in sorted(names))


_INTEGER_BINARY: dict[type[Operation], str] = {
    arith.AddiOp: "add", arith.SubiOp: "sub", arith.MuliOp: "mul", arith.DivSIOp: "sdiv",
    arith.DivUIOp: "udiv", arith.RemSIOp: "srem", arith.RemUIOp: "urem", arith.AndIOp: "and",
    arith.OrIOp: "or", arith.XOrIOp: "xor", arith.ShLIOp: "shl", arith.ShRSIOp: "ashr", arith.ShRUIOp: "lshr",
    llvm.AddOp: "add", llvm.SubOp: "sub", llvm.MulOp: "mul", llvm.AndOp: "and", llvm.OrOp: "or",
    llvm.XOrOp: "xor", llvm.ShlOp: "shl", llvm.LShrOp: "lshr", llvm.AShrOp: "ashr",
}  # fmt: skip
_FLOAT_BINARY: dict[type[Operation], str] = {
    arith.AddfOp: "fadd", arith.SubfOp: "fsub", arith.MulfOp: "fmul", arith.DivfOp: "fdiv",
}  # fmt: skip
_BINARY_INTRINSICS: dict[type[Operation], str] = {
    arith.MinSIOp: "llvm.smin", arith.MaxSIOp: "llvm.smax", arith.MinUIOp: "llvm.umin", arith.MaxUIOp: "llvm.umax",
    arith.MaximumfOp: "llvm.maximum", arith.MinimumfOp: "llvm.minimum", arith.MaxnumfOp: "llvm.maxnum",
    arith.MinnumfOp: "llvm.minnum",
}  # fmt: skip
_CASTS: dict[type[Operation], str] = {
    arith.ExtSIOp: "sext", arith.ExtUIOp: "zext", arith.TruncIOp: "trunc", arith.SIToFPOp: "sitofp",
    arith.UIToFPOp: "uitofp", arith.BitcastOp: "bitcast", arith.ExtFOp: "fpext", arith.TruncFOp: "fptrunc",
    llvm.SExtOp: "sext", llvm.ZExtOp: "zext", llvm.TruncOp: "trunc", llvm.SIToFPOp: "sitofp",
    llvm.FPExtOp: "fpext", llvm.BitcastOp: "bitcast", vector.BitcastOp: "bitcast",
}  # fmt: skip
_FLOAT_TO_INT: dict[type[Operation], str] = {arith.FPToSIOp: "llvm.fptosi.sat", arith.FPToUIOp: "llvm.fptoui.sat"}
_MATH_INTRINSICS: dict[type[Operation], str] = {
    math.AbsFOp: "llvm.fabs", math.CeilOp: "llvm.ceil", math.FloorOp: "llvm.floor", math.RoundOp: "llvm.round",
    math.RoundEvenOp: "llvm.roundeven", math.TruncOp: "llvm.trunc", math.SqrtOp: "llvm.sqrt", math.ExpOp: "llvm.exp",
    math.Exp2Op: "llvm.exp2", math.LogOp: "llvm.log", math.Log2Op: "llvm.log2", math.Log10Op: "llvm.log10",
    math.SinOp: "llvm.sin", math.CosOp: "llvm.cos", math.PowFOp: "llvm.pow", math.CopySignOp: "llvm.copysign",
    math.FmaOp: "llvm.fma", vector.FMAOp: "llvm.fma",
}  # fmt: skip
_LIBM: dict[type[Operation], str] = {
    math.TanhOp: "tanh", math.ErfOp: "erf", math.TanOp: "tan", math.AsinOp: "asin", math.AcosOp: "acos",
    math.AtanOp: "atan", math.Atan2Op: "atan2", math.SinhOp: "sinh", math.CoshOp: "cosh", math.AsinhOp: "asinh",
    math.AcoshOp: "acosh", math.AtanhOp: "atanh", math.ExpM1Op: "expm1", math.Log1pOp: "log1p", math.CbrtOp: "cbrt",
}  # fmt: skip
"""libm's double-precision names; f32 appends "f"."""
_REDUCTIONS: dict[vector.CombiningKindFlag, str] = {
    vector.CombiningKindFlag.ADD: "add",
    vector.CombiningKindFlag.MAXIMUMF: "fmaximum",  # NaN-propagating, as arith.maximumf
}
_IDENTITIES = (UnrealizedConversionCastOp, ptr.ToPtrOp, ptr.FromPtrOp)


class ModuleWriter:
    """The module's functions, and declarations of what they call that it does not define."""

    def __init__(self) -> None:
        self.declared: dict[str, str] = {}

    def declare(self, callee: str, ret: str, args: list[str]) -> None:
        if callee not in self.declared:
            self.declared[callee] = f"declare {ret} @{callee}({', '.join(args)})"


class FunctionWriter:
    """One function's instructions; values are named %vN, blocks bN, arguments %aN."""

    def __init__(self, module: ModuleWriter, scaled: dict[ptr.PtrAddOp, tuple[SSAValue, str]],
                 skipped: set[Operation]) -> None:  # fmt: skip
        self.module, self.scaled, self.skipped = module, scaled, skipped
        self.lines: list[str] = []
        self.names: dict[SSAValue, str] = {}
        self.count = 0
        self.block = "entry"
        self.yielded: list[str] = []  # the values of the last scf.yield

    def fresh(self) -> str:
        self.count += 1
        return f"%v{self.count}"

    def label(self) -> str:
        self.count += 1
        return f"b{self.count}"

    def ref(self, value: SSAValue) -> str:
        return self.names[value]

    def typed(self, value: SSAValue) -> str:
        return f"{llvm_type(value.type)} {self.names[value]}"

    def args(self, values: Iterable[SSAValue]) -> list[tuple[str, str]]:
        return [(llvm_type(v.type), self.names[v]) for v in values]

    def emit(self, text: str) -> str:
        """An instruction with a result: its name."""
        name = self.fresh()
        self.lines.append(f"  {name} = {text}")
        return name

    def start_block(self, label: str) -> None:
        self.lines.append(f"{label}:")
        self.block = label

    def call(self, callee: str, result: Attribute | None, args: Sequence[tuple[str, str]], flags: str = "") -> str:
        """A call of `callee` with (type, value) texts as arguments; its result's name ('' for void)."""
        ret = llvm_type(result) if result is not None else "void"
        self.module.declare(callee, ret, [typ for typ, _ in args])
        text = f"call {flags}{ret} @{callee}({', '.join(f'{typ} {value}' for typ, value in args)})"
        if result is None:
            self.lines.append(f"  {text}")
            return ""
        return self.emit(text)

    def body(self, block: Block) -> None:
        for op in block.ops:
            if op in self.skipped:
                continue
            translate = _OPS.get(type(op))
            if translate is None:
                raise DiagnosticException(f"translate-to-llvm: cannot translate {op.name}")
            translate(self, op)

    def result(self, op: Operation, name: str) -> None:
        self.names[op.results[0]] = name


def _function(w: ModuleWriter, op: func.FuncOp, scaled: dict[ptr.PtrAddOp, tuple[SSAValue, str]],
              skipped: set[Operation]) -> list[str]:  # fmt: skip
    inputs, outputs = op.function_type.inputs.data, op.function_type.outputs.data
    if len(outputs) > 1:
        raise DiagnosticException(f"translate-to-llvm: @{op.sym_name.data} has several results")
    ret = llvm_type(outputs[0]) if outputs else "void"
    types = [llvm_type(typ) for typ in inputs]
    name = op.sym_name.data
    if not op.body.blocks:
        return [f"declare {ret} @{name}({', '.join(types)})"]
    noalias = "noalias " if NOALIAS_ARGS in op.attributes else ""
    params = [f"{typ} {noalias if typ == 'ptr' else ''}%a{i}" for i, typ in enumerate(types)]
    linkage = "internal " if op.sym_visibility is not None and op.sym_visibility.data == "private" else ""
    attributes = " noinline" if NO_INLINE in op.attributes else ""
    if isinstance(cc := op.attributes.get(CALLING_CONVENTION), StringAttr):
        linkage += f"{cc.data} "
    f = FunctionWriter(w, scaled, skipped)
    entry = op.body.block
    f.names.update((arg, f"%a{i}") for i, arg in enumerate(entry.args))
    f.body(entry)
    return [f"define {linkage}{ret} @{name}({', '.join(params)}){attributes} {{", "entry:", *f.lines, "}"]


def translate(module: ModuleOp, triple: str, data_layout: str) -> str:
    """LLVM IR text of a module at the loops level, after lower-memory-to-ptr and
    outline-loop-nests (every value a scalar, a 1-D vector or a pointer)."""
    writer = ModuleWriter()
    defined = {op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)}
    scaled, skipped = _scaled_offsets(module)
    functions: list[str] = []
    for op in module.ops:
        if not isinstance(op, func.FuncOp):
            raise DiagnosticException(f"translate-to-llvm: cannot translate {op.name} at module level")
        functions += _function(writer, op, scaled, skipped)
        functions.append("")
    declarations = [d for name, d in writer.declared.items() if name not in defined]
    return "\n".join([f'target datalayout = "{data_layout}"', f'target triple = "{triple}"', "",
                      *functions, *declarations, ""])  # fmt: skip


def _size(factor: SSAValue) -> int:
    """The constant byte size `factor` holds (an element's type_offset or a constant), else 0."""
    owner = factor.owner
    if isinstance(owner, ptr.TypeOffsetOp):
        return _type_size(owner.elem_type)
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr) and owner.value.value.data > 0:
        return owner.value.value.data
    return 0


def _type_size(typ: Attribute) -> int:
    if isinstance(typ, VectorType):
        return typ.get_shape()[0] * _type_size(typ.element_type)
    if isinstance(typ, IndexType | ptr.PtrType | llvm.LLVMPointerType | MemRefType):
        return 8
    if isinstance(typ, IntegerType):
        return max(1, typ.bitwidth // 8)
    if isinstance(typ, Float32Type | Float64Type | Float16Type | BFloat16Type):
        return typ.bitwidth // 8
    raise DiagnosticException(f"translate-to-llvm: no size for {typ}")


def _scaled_offsets(module: ModuleOp) -> tuple[dict[ptr.PtrAddOp, tuple[SSAValue, str]], set[Operation]]:
    """Each ptradd by `i * size` with a constant size: (i, the GEP's element type); and the
    multiplications that only such ptradds use (not translated)."""
    scaled: dict[ptr.PtrAddOp, tuple[SSAValue, str]] = {}
    for op in module.walk():
        if isinstance(op, ptr.PtrAddOp) and isinstance(mul := op.offset.owner, arith.MuliOp):
            for index, factor in ((mul.lhs, mul.rhs), (mul.rhs, mul.lhs)):
                if size := _size(factor):
                    scaled[op] = (index, f"i{8 * size}" if size in (1, 2, 4, 8) else f"[{size} x i8]")
                    break
    skipped = {op.offset.owner for op in scaled if all(use.operation in scaled for use in op.offset.uses)}
    return scaled, {s for s in skipped if isinstance(s, Operation)}


# The ops, one function each (FunctionWriter, op) -> None.


def _identity(f: FunctionWriter, op: Operation) -> None:
    f.names[op.results[0]] = f.ref(op.operands[0])


def _unused(f: FunctionWriter, op: Operation) -> None:
    """A packed tensor's view of its buffers that the kernel no longer reads."""
    if any(result.uses for result in op.results):
        raise DiagnosticException(f"translate-to-llvm: cannot translate {op.name}")


def _constant(f: FunctionWriter, op: arith.ConstantOp) -> None:
    f.names[op.result] = constant_text(op.value, op.result.type)


def _integer_binary(f: FunctionWriter, op: Operation) -> None:
    flags = ""
    overflow = op.properties.get("overflowFlags")
    if isinstance(overflow, arith.IntegerOverflowAttr):
        flags = "".join(f"{flag.value} " for flag in sorted(overflow.data, key=lambda x: x.value, reverse=True))
    elif isinstance(overflow, IntegerAttr):  # llvm ops: a bit mask, nsw = 1, nuw = 2
        flags = ("nuw " if overflow.value.data & 2 else "") + ("nsw " if overflow.value.data & 1 else "")
    lhs, rhs = op.operands
    f.result(op, f.emit(f"{_INTEGER_BINARY[type(op)]} {flags}{f.typed(lhs)}, {f.ref(rhs)}"))


def _float_binary(f: FunctionWriter, op: arith.FloatingPointLikeBinaryOperation) -> None:
    f.result(op, f.emit(f"{_FLOAT_BINARY[type(op)]} {_fastmath(op.fastmath.data)}{f.typed(op.lhs)}, {f.ref(op.rhs)}"))


def _intrinsic_call(f: FunctionWriter, op: Operation, name: str) -> None:
    result = op.results[0].type
    f.result(op, f.call(f"{name}.{intrinsic_suffix(result)}", result, f.args(op.operands)))


def _binary_intrinsic(f: FunctionWriter, op: Operation) -> None:
    _intrinsic_call(f, op, _BINARY_INTRINSICS[type(op)])


def _math_intrinsic(f: FunctionWriter, op: Operation) -> None:
    _intrinsic_call(f, op, _MATH_INTRINSICS[type(op)])


def _libm(f: FunctionWriter, op: Operation) -> None:
    typ = op.results[0].type
    suffix = "f" if isinstance(typ, Float32Type) else "" if isinstance(typ, Float64Type) else None
    if suffix is None:
        raise DiagnosticException(f"translate-to-llvm: no libm {_LIBM[type(op)]} for {typ}")
    flags = _fastmath(op.fastmath.data) if hasattr(op, "fastmath") else ""
    f.result(op, f.call(_LIBM[type(op)] + suffix, typ, f.args(op.operands), flags))


def _negf(f: FunctionWriter, op: arith.NegfOp) -> None:
    f.result(op, f.emit(f"fneg {_fastmath(op.fastmath.data)}{f.typed(op.operand)}"))


def _cmpi(f: FunctionWriter, op: arith.CmpiOp) -> None:
    predicate = arith.CMPI_COMPARISON_OPERATIONS[op.predicate.value.data]
    f.result(op, f.emit(f"icmp {predicate} {f.typed(op.lhs)}, {f.ref(op.rhs)}"))


def _cmpf(f: FunctionWriter, op: arith.CmpfOp) -> None:
    predicate = arith.CMPF_COMPARISON_OPERATIONS[op.predicate.value.data]
    f.result(op, f.emit(f"fcmp {_fastmath(op.fastmath.data)}{predicate} {f.typed(op.lhs)}, {f.ref(op.rhs)}"))


def _select(f: FunctionWriter, op: arith.SelectOp) -> None:
    f.result(op, f.emit(f"select {f.typed(op.cond)}, {f.typed(op.lhs)}, {f.typed(op.rhs)}"))


def _cast(f: FunctionWriter, op: Operation) -> None:
    (source,), result = op.operands, op.results[0].type
    if llvm_type(source.type) == llvm_type(result):  # index <-> i64, or bf16 <-> i16
        f.names[op.results[0]] = f.ref(source)
    elif isinstance(_element(source.type), BFloat16Type) and isinstance(op, arith.ExtFOp):
        wide = f.emit(f"zext {f.typed(source)} to {_like(result, 'i32')}")
        shifted = f.emit(f"shl {_like(result, 'i32')} {wide}, {_splat(source.type, 16)}")
        f.result(op, f.emit(f"bitcast {_like(result, 'i32')} {shifted} to {llvm_type(result)}"))
    elif isinstance(_element(result), BFloat16Type) and isinstance(op, arith.TruncFOp):
        f.result(op, _round_to_bf16(f, source, result))
    else:
        f.result(op, f.emit(f"{_CASTS[type(op)]} {f.typed(source)} to {llvm_type(result)}"))


def _round_to_bf16(f: FunctionWriter, x: SSAValue, result: Attribute) -> str:
    """The f32 x's bits rounded to nearest even at bit 16, shifted down; a NaN keeps its sign
    and top mantissa bits and is made quiet (bit 6), so that rounding cannot make it inf."""
    i32 = _like(result, "i32")
    bits = f.emit(f"bitcast {f.typed(x)} to {i32}")
    top = f.emit(f"lshr {i32} {bits}, {_splat(x.type, 16)}")
    odd = f.emit(f"and {i32} {top}, {_splat(x.type, 1)}")
    bias = f.emit(f"add {i32} {odd}, {_splat(x.type, 0x7FFF)}")
    rounded = f.emit(f"lshr {i32} {f.emit(f'add {i32} {bits}, {bias}')}, {_splat(x.type, 16)}")
    nan = f.emit(f"fcmp uno {f.typed(x)}, {f.ref(x)}")
    quiet = f.emit(f"or {i32} {top}, {_splat(x.type, 0x40)}")
    chosen = f.emit(f"select {_like(result, 'i1')} {nan}, {i32} {quiet}, {i32} {rounded}")
    return f.emit(f"trunc {i32} {chosen} to {llvm_type(result)}")


def _index_cast(f: FunctionWriter, op: arith.IndexCastOp) -> None:
    source, target = _width(op.input.type), _width(op.result.type)
    if source == target:
        f.names[op.result] = f.ref(op.input)
    else:
        kind = "sext" if source < target else "trunc"
        f.result(op, f.emit(f"{kind} {f.typed(op.input)} to {llvm_type(op.result.type)}"))


def _width(typ: Attribute) -> int:
    return 64 if isinstance(typ, IndexType) else typ.bitwidth  # type: ignore[attr-defined]


def _float_to_int(f: FunctionWriter, op: arith.FPToSIOp | arith.FPToUIOp) -> None:
    name = f"{_FLOAT_TO_INT[type(op)]}.{intrinsic_suffix(op.result.type)}.{intrinsic_suffix(op.input.type)}"
    f.result(op, f.call(name, op.result.type, f.args([op.input])))


def _broadcast(f: FunctionWriter, op: vector.BroadcastOp) -> None:
    if isinstance(op.source.type, VectorType):
        raise DiagnosticException("translate-to-llvm: only scalars are broadcast")
    typ = llvm_type(op.vector.type)
    first = f.emit(f"insertelement {typ} poison, {f.typed(op.source)}, i64 0")
    lanes = op.vector.type.get_shape()[0]
    f.result(op, f.emit(f"shufflevector {typ} {first}, {typ} poison, <{lanes} x i32> zeroinitializer"))


def _shuffle(f: FunctionWriter, op: vector.ShuffleOp) -> None:
    mask = ", ".join(f"i32 {m}" if m >= 0 else "i32 poison" for m in op.mask.get_values())
    lanes = len(op.mask.get_values())
    f.result(op, f.emit(f"shufflevector {f.typed(op.v1)}, {f.typed(op.v2)}, <{lanes} x i32> <{mask}>"))


def _extract(f: FunctionWriter, op: vector.ExtractOp) -> None:
    lanes = op.static_position.get_values()
    if op.dynamic_position or len(lanes) != 1:
        raise DiagnosticException("translate-to-llvm: only static lanes of 1-D vectors are extracted")
    f.result(op, f.emit(f"extractelement {f.typed(op.vector)}, i64 {lanes[0]}"))


def _insertelement(f: FunctionWriter, op: llvm.InsertElementOp) -> None:
    f.result(op, f.emit(f"insertelement {f.typed(op.vector)}, {f.typed(op.value)}, {f.typed(op.index)}"))


def _reduction(f: FunctionWriter, op: vector.ReductionOp) -> None:
    if (kind := _REDUCTIONS.get(op.kind.data)) is None:
        raise DiagnosticException(f"translate-to-llvm: reduction <{op.kind.data}> is not supported")
    typ, v = op.dest.type, op.vector
    is_int = isinstance(typ, IntegerType)
    flags = "" if is_int else _fastmath({*op.fastmath.data, "reassoc"})
    name = f"llvm.vector.reduce.{'f' if kind == 'add' and not is_int else ''}{kind}.{intrinsic_suffix(v.type)}"
    start = [] if is_int or kind != "add" else [(llvm_type(typ), _float_text(-0.0, typ))]  # -0.0: the identity of +
    args = [*start, *f.args([v])]
    total = f.call(name, typ, args, flags)
    if op.acc is not None:
        if is_int:
            total = f.emit(f"add {llvm_type(typ)} {total}, {f.ref(op.acc)}")
        elif kind == "add":
            total = f.emit(f"fadd {_fastmath(op.fastmath.data)}{llvm_type(typ)} {total}, {f.ref(op.acc)}")
        else:
            total = f.call(f"llvm.maximum.{intrinsic_suffix(typ)}", typ, [(llvm_type(typ), total), *f.args([op.acc])])
    f.result(op, total)


def _call_intrinsic(f: FunctionWriter, op: llvm.CallIntrinsicOp) -> None:
    result = op.results[0].type if op.results else None
    name = f.call(op.intrin.data, result, f.args(op.args))
    if op.results:
        f.result(op, name)


def _alloca(f: FunctionWriter, op: llvm.AllocaOp) -> None:
    align = f", align {op.alignment.value.data}" if op.alignment is not None else ""
    f.result(op, f.emit(f"alloca {llvm_type(op.elem_type)}, {f.typed(op.size)}{align}"))


def _addressof(f: FunctionWriter, op: llvm.AddressOfOp) -> None:
    f.names[op.result] = f"@{op.global_name.root_reference.data}"


def _ptradd(f: FunctionWriter, op: ptr.PtrAddOp) -> None:
    index, element = f.scaled.get(op, (op.offset, "i8"))
    f.result(op, f.emit(f"getelementptr inbounds {element}, ptr {f.ref(op.addr)}, i64 {f.ref(index)}"))


def _type_offset(f: FunctionWriter, op: ptr.TypeOffsetOp) -> None:
    f.names[op.offset] = str(_type_size(op.elem_type))


def _align(typ: Attribute) -> str:
    return f", align {max(1, _type_size(typ.element_type))}" if isinstance(typ, VectorType) else ""


def _load(f: FunctionWriter, op: ptr.LoadOp) -> None:
    typ = op.res.type
    f.result(op, f.emit(f"load {llvm_type(typ)}, ptr {f.ref(op.addr)}{_align(typ)}"))


def _store(f: FunctionWriter, op: ptr.StoreOp) -> None:
    f.lines.append(f"  store {f.typed(op.value)}, ptr {f.ref(op.addr)}{_align(op.value.type)}")


def _call(f: FunctionWriter, op: func.CallOp) -> None:
    if len(op.res) > 1:
        raise DiagnosticException(f"translate-to-llvm: call to {op.callee} has several results")
    name = f.call(op.callee.root_reference.data, op.res[0].type if op.res else None, f.args(op.arguments))
    if op.res:
        f.result(op, name)


def _return(f: FunctionWriter, op: func.ReturnOp) -> None:
    if len(op.arguments) > 1:
        raise DiagnosticException("translate-to-llvm: return of several values")
    f.lines.append(f"  ret {f.typed(op.arguments[0])}" if op.arguments else "  ret void")


def _for(f: FunctionWriter, op: scf.ForOp) -> None:
    """Header (phis of the induction variable and carried values, the test), body, latch."""
    header, body, done = f.label(), f.label(), f.label()
    before = f.block
    f.lines.append(f"  br label %{header}")
    f.start_block(header)
    block = op.body.block
    phis = len(f.lines)
    names = [f.fresh() for _ in block.args]
    f.names.update(zip(block.args, names))
    f.lines += [""] * len(names)  # the phis, once the latch is known
    test = f.emit(f"icmp slt i64 {f.ref(block.args[0])}, {f.ref(op.ub)}")
    f.lines.append(f"  br i1 {test}, label %{body}, label %{done}")
    f.start_block(body)
    f.body(block)  # scf.yield records its values in f.yielded
    stepped = f.emit(f"add i64 {names[0]}, {f.ref(op.step)}")
    f.lines.append(f"  br label %{header}")
    starts = [f.ref(op.lb), *map(f.ref, op.iter_args)]
    latch = [stepped, *f.yielded]
    for i, (arg, start, end) in enumerate(zip(block.args, starts, latch, strict=True)):
        f.lines[phis + i] = f"  {names[i]} = phi {llvm_type(arg.type)} [ {start}, %{before} ], [ {end}, %{f.block} ]"
    f.start_block(done)
    f.names.update(zip(op.results, names[1:]))


def _yield(f: FunctionWriter, op: scf.YieldOp) -> None:
    f.yielded = [f.ref(a) for a in op.arguments]


def _branches(f: FunctionWriter, op: Operation, regions: Sequence[Any], header: Callable[[list[str], str], str]) -> None:
    """Regions as blocks that join after them, the values they yield as phis there;
    `header` gives the branch to them from their labels and the join's."""
    labels, done = [f.label() for _ in regions], f.label()
    f.lines.append(f"  {header(labels, done)}")
    incoming: list[tuple[list[str], str]] = []
    for label, region in zip(labels, regions):
        f.start_block(label)
        f.yielded = []
        f.body(region.block)
        incoming.append((f.yielded, f.block))
        f.lines.append(f"  br label %{done}")
    f.start_block(done)
    for i, result in enumerate(op.results):
        sources = ", ".join(f"[ {values[i]}, %{block} ]" for values, block in incoming)
        f.names[result] = (f.emit(f"phi {llvm_type(result.type)} {sources}"))


def _if(f: FunctionWriter, op: scf.IfOp) -> None:
    regions = [op.true_region, *([op.false_region] if op.false_region.blocks else [])]

    def header(labels: list[str], done: str) -> str:
        otherwise = labels[1] if len(labels) > 1 else done
        return f"br i1 {f.ref(op.cond)}, label %{labels[0]}, label %{otherwise}"

    if len(regions) == 1 and op.results:
        raise DiagnosticException("translate-to-llvm: scf.if with results needs an else region")
    _branches(f, op, regions, header)


def _switch(f: FunctionWriter, op: scf.IndexSwitchOp) -> None:
    cases = op.cases.get_values()

    def header(labels: list[str], _done: str) -> str:
        table = " ".join(f"i64 {c}, label %{label}" for c, label in zip(cases, labels[1:]))
        return f"switch i64 {f.ref(op.arg)}, label %{labels[0]} [ {table} ]"

    _branches(f, op, [op.default_region, *op.case_regions], header)


_OPS: dict[type[Operation], Callable[[FunctionWriter, Any], None]] = {
    **dict.fromkeys(_IDENTITIES, _identity),
    arith.ConstantOp: _constant,
    layout.AssembleOp: _unused,
    **dict.fromkeys(_INTEGER_BINARY, _integer_binary),
    **dict.fromkeys(_FLOAT_BINARY, _float_binary),
    **dict.fromkeys(_BINARY_INTRINSICS, _binary_intrinsic),
    **dict.fromkeys(_MATH_INTRINSICS, _math_intrinsic),
    **dict.fromkeys(_LIBM, _libm),
    **dict.fromkeys(_CASTS, _cast),
    **dict.fromkeys(_FLOAT_TO_INT, _float_to_int),
    arith.NegfOp: _negf,
    arith.CmpiOp: _cmpi,
    arith.CmpfOp: _cmpf,
    arith.SelectOp: _select,
    arith.IndexCastOp: _index_cast,
    vector.BroadcastOp: _broadcast,
    vector.ShuffleOp: _shuffle,
    vector.ExtractOp: _extract,
    vector.ReductionOp: _reduction,
    llvm.InsertElementOp: _insertelement,
    llvm.CallIntrinsicOp: _call_intrinsic,
    llvm.AddressOfOp: _addressof,
    llvm.AllocaOp: _alloca,
    ptr.PtrAddOp: _ptradd,
    ptr.TypeOffsetOp: _type_offset,
    ptr.LoadOp: _load,
    ptr.StoreOp: _store,
    func.CallOp: _call,
    func.ReturnOp: _return,
    scf.ForOp: _for,
    scf.YieldOp: _yield,
    scf.IfOp: _if,
    scf.IndexSwitchOp: _switch,
}


@dataclass(frozen=True)
class LLVMTarget(Target):
    """`stoicc opt FILE -t llvm`: the module translated, for the host (xDSL's own llvm
    target reads the llvm dialect, which our pipeline no longer builds)."""

    name = "llvm"

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        machine = machine_for(host_options())
        output.write(translate(module, machine.triple, str(machine.target_data)))
