"""A GPU kernel's LLVM IR (staged, GEMV or direct schedule) run on the CPU, one thread after
another, to record the global addresses it loads, copies from and stores to: a check, on a
host without a GPU, that every access of a call lies inside its buffers (a load past an
allocation's mapped pages faults on the device; a cp.async of source size 0 there did not
in round 16, but no specification says it may name such an address).

The IR (as NVPTX gets it: optimized) is rewritten for the host: address spaces dropped,
the special registers read from globals the driver sets per thread, cp.async, the loads
from global memory and the stores of y reported to hooks (the loads still done: a hybrid
weight's tile map picks the tiles it copies, so pass the packed arrays themselves; nothing
is copied or stored), barriers and fences removed, the tensor cores' inline PTX and
intrinsics and every half or bfloat value replaced by zeros (no address depends on them;
their operands in shared memory are not checked here), and split-K's flag loads and stores
done for real, so that the blocks of a tile, run in the order of their splits, find the
flags they wait for.

`gemv_pairs` runs, numbers and all, the GEMV's dequantisation of one piece of a row and
the pairs of x it meets (half arithmetic by the host's F16C, bfloat's rounding by an IR
definition of its library call): what the tensor cores are given, checked on the host."""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field

import llvmlite.binding as llvm
import numpy as np

from stoicc_py.arrays import NUMPY_DTYPES
from stoicc_py.backends.gpu.gemv import _Gemv
from stoicc_py.backends.gpu.kernel import LLVM_TYPES, GemmSpec

_HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int32)
_BYTES = {"i8": 1, "i16": 2, "half": 2, "bfloat": 2, "i32": 4, "float": 4, "i64": 8, "double": 8}


@dataclass
class Accesses:
    """What a run touched: (address, bytes) of each cp.async source (0 bytes: a copy that
    reads nothing but still names an address), of split-K's workspace and flags, and of each store of y."""

    copies: list[tuple[int, int]] = field(default_factory=list)
    loads: list[tuple[int, int]] = field(default_factory=list)
    scratch: list[tuple[int, int]] = field(default_factory=list)
    stores: list[tuple[int, int]] = field(default_factory=list)


def host_ir(ir: str) -> str:
    """The kernel module, rewritten to run on the host (the module docstring)."""
    lines = []
    for line in ir.splitlines():
        if line.startswith("target "):
            continue
        if load := re.match(r"\s*%\S+ = load (<(\d+) x (\w+)>|\w+), ptr addrspace\(1\) (%[\w.]+)", line):
            size = int(load[2] or 1) * _BYTES[load[3] or load[1]]
            lines.append(f"  call void @record_load(ptr {load[4]}, i32 {size})")  # then the load itself
        if store := re.match(r"\s*store (\S+) \S+, ptr addrspace\(1\) (%[\w.]+)", line):
            lines.append(f"  call void @record_store(ptr {store[2]}, i32 {2 if store[1] in ('half', 'bfloat') else 4})")
            continue
        if flag := re.match(r'\s*(%\S+) = (?:tail )?call i32 asm sideeffect "ld\.acquire.*\(i64 (%\S+)\)', line):
            lines += [f"  {flag[1]}.at = inttoptr i64 {flag[2]} to ptr",
                      f"  call void @record_scratch(ptr {flag[1]}.at, i32 4)",
                      f"  {flag[1]} = load i32, ptr {flag[1]}.at"]  # fmt: skip
            continue
        if flag := re.match(r'\s*(?:tail )?call void asm sideeffect "[^"]*st\.relaxed\.gpu\.global\.u32 \[\$0\], (\$1|0);", '
                            r'"[^"]*"\(i64 (%\S+)(?:, i32 (%\S+))?\)', line):  # fmt: skip
            at = f"%flag.at{len(lines)}"
            lines += [f"  {at} = inttoptr i64 {flag[2]} to ptr", f"  call void @record_scratch(ptr {at}, i32 4)",
                      f"  store i32 {flag[3] if flag[1] == '$1' else 0}, ptr {at}"]  # fmt: skip
            continue
        if work := re.search(r'asm sideeffect "(?:ld|st)\.global\.cg[^(]*\(i64 (%[\w.]+)', line):
            at = f"%work.at{len(lines)}"
            lines += [f"  {at} = inttoptr i64 {work[1]} to ptr", f"  call void @record_scratch(ptr {at}, i32 16)"]
        # values of half and bfloat: no address depends on them, and the host lowers their
        # conversions and arithmetic to library calls that the JIT does not link
        value = re.match(r"\s*(%\S+) = (?:(?:fptrunc|fpext|[su]itofp|fpto[su]i) .* to (.+)|"
                         r"(?:fadd|fsub|fmul|fdiv|fneg) (?:\w+ )*(<\d+ x (?:half|bfloat)>|half|bfloat) .*)$", line)  # fmt: skip
        if value:
            ty = value[2] or value[3]
            lines.append(f"  {value[1]} = select i1 true, {ty} zeroinitializer, {ty} zeroinitializer")
            continue
        if result := re.match(r"\s*(%\S+) = (?:tail )?call (\{[^}]*\}|i32|float) asm", line):
            zero = "zeroinitializer" if result[2].startswith("{") else "0" if result[2] == "i32" else "0.0"
            lines.append(f"  {result[1]} = select i1 true, {result[2]} {zero}, {result[2]} {zero}")
            continue
        if not re.match(r"\s*(?:tail )?call void asm", line):
            lines.append(line)
    text = re.sub(r" addrspace\(\d\)", "", "\n".join(lines)).replace("ptx_kernel ", "")
    text = text.replace("@smem = external global [0 x i8]", "@smem = global [262144 x i8] zeroinitializer")
    text = text.replace("@llvm.nvvm.", "@nv.")
    # what the optimizer adds to the intrinsics' declarations, which plain functions may not carry
    text = re.sub(r" ?range\(i32 -?\d+, -?\d+\)", "", text).replace(" immarg", "")
    for declared in re.findall(r"^declare .*@nv\..*$", text, re.M):
        text = text.replace(declared, _definition(declared))
    return text + "\ndeclare void @record_copy(ptr, i32)\ndeclare void @record_scratch(ptr, i32)\n" \
                  "declare void @record_store(ptr, i32)\ndeclare void @record_load(ptr, i32)\n"  # fmt: skip


def _definition(declared: str) -> str:
    """A host definition of an NVVM intrinsic's declaration (renamed @nv.*)."""
    name = re.search(r"@(nv\.[\w.]+)\(", declared)[1]  # type: ignore[index]
    result = declared[len("declare ") : declared.index(f"@{name}")].strip()
    types = [t.strip() for t in declared[declared.index(f"@{name}(") + len(name) + 2 : declared.rindex(")")].split(",")]
    params = ", ".join(f"{t} %a{i}" for i, t in enumerate(types) if t)
    if name.startswith("nv.read.ptx.sreg."):
        register = "@" + name.removeprefix("nv.read.ptx.sreg.").replace(".", "_")
        body = f"%r = load i32, ptr {register}\n  ret i32 %r\n}}\n{register} = global i32 0"
        return f"define i32 @{name}() {{\n  {body}"
    if name.startswith("nv.cp.async.cg.shared.global"):
        return f"define void @{name}({params}) {{\n  call void @record_copy(ptr %a1, i32 %a2)\n  ret void\n}}"
    body = "ret void" if result == "void" else f"ret {result} zeroinitializer"
    return f"define {result} @{name}({params}) {{\n  {body}\n}}"


def _jit(text: str) -> llvm.ExecutionEngine:
    """The module `text` compiled for this host, its CPU and features (F16C: half arithmetic
    inline, not library calls)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=1
    )
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(text), machine)
    engine.finalize_object()
    return engine


def run(ir: str, name: str, pointers: list[int], m: int, grid: tuple[int, int, int], threads: int) -> Accesses:
    """Every thread of every block of the kernel `name` in `ir`, blocks in launch order with
    the split index outermost (split-K's blocks of a tile run in the order they wait in)."""
    accesses = Accesses()
    hooks = {f"record_{kind}": _HOOK(lambda at, size, into=into: into.append((at, size)))
             for kind, into in (("copy", accesses.copies), ("load", accesses.loads), ("scratch", accesses.scratch),
                               ("store", accesses.stores))}  # fmt: skip
    for symbol, hook in hooks.items():
        llvm.add_symbol(symbol, ctypes.cast(hook, ctypes.c_void_p).value)
    text = host_ir(ir)
    engine = _jit(text)
    kernel = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * len(pointers), ctypes.c_int32)(
        engine.get_function_address(name)
    )
    registers = {r: ctypes.c_int32.from_address(engine.get_global_value_address(r))
                 for r in re.findall(r"^@(\w+_\w+) = global i32 0", text, re.M)}  # fmt: skip
    for r, size in (("nctaid_x", grid[0]), ("nctaid_y", grid[1]), ("nctaid_z", grid[2])):
        if r in registers:
            registers[r].value = size
    for z in range(grid[2]):
        for y in range(grid[1]):
            for x in range(grid[0]):
                for tid in range(threads):
                    for r, value in (("ctaid_x", x), ("ctaid_y", y), ("ctaid_z", z), ("tid_x", tid)):
                        if r in registers:
                            registers[r].value = value
                    kernel(*pointers, m)
    del hooks  # kept alive until here: the engine calls them
    return accesses


_TRUNC_BF16 = """define bfloat @__truncsfbf2(float %f) {
  %bits = bitcast float %f to i32
  %odd = lshr i32 %bits, 16
  %lsb = and i32 %odd, 1
  %bias = add i32 %lsb, 32767
  %sum = add i32 %bits, %bias
  %high = lshr i32 %sum, 16
  %short = trunc i32 %high to i16
  %value = bitcast i16 %short to bfloat
  ret bfloat %value
}"""
"""f32 -> bf16, nearest even (no NaNs here), the library call the host lowers it to."""
_LOP3 = re.compile(r'^(\s*)(%\S+) = call i32 asm "lop3\.b32 \$0, \$1, \$2, \$3, 0xEA;", "=r,r,n,n"'
                   r"\(i32 (\S+), i32 (\S+), i32 (\S+)\)$")  # fmt: skip


def gemv_pairs(spec: GemmSpec, words: list[int], scale_bits: int, x_words: list[int],
               scaled: bool = True) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The GEMV's weight pairs of one 16-byte piece of a row (`words`; scaled by the scale of
    the given bits, or not) and the pairs of x they meet (x_pairs of each 16-byte piece of
    `x_words`), run on the host (F16C for half; `lop3` 0xEA as (a & b) | c): the two as float
    values, position for position, as step_mma gives them to mma.sync."""
    g, ty = _Gemv(spec), LLVM_TYPES[spec.dtype]
    b = g.b
    w = [b.op(f"load i32, ptr {b.op(f'getelementptr i32, ptr %words, i32 {i}')}") for i in range(4)]
    x = [b.op(f"load i32, ptr {b.op(f'getelementptr i32, ptr %x, i32 {i}')}") for i in range(len(x_words))]
    b.emit(f"%scale = bitcast i16 %scale.bits to {ty}")
    pairs = g.weight_pairs(spec.weight, w, "%scale", scaled)
    pairs += [p for piece in range(0, len(x), 4) for p in g.x_pairs(spec.weight, x[piece : piece + 4])]
    for i, pair in enumerate(pairs):
        b.emit(f"store i32 {pair}, ptr {b.op(f'getelementptr i32, ptr %out, i32 {i}')}")
    lines = [(f"{m[1]}{m[2]}.and = and i32 {m[3]}, {m[4]}\n{m[1]}{m[2]} = or i32 {m[2]}.and, {m[5]}"
              if (m := _LOP3.match(line)) else line) for line in b.lines]  # fmt: skip
    text = "\n".join(["define void @pairs(ptr %words, i16 %scale.bits, ptr %x, ptr %out) {", "entry:", *lines,
                      "  ret void", "}", _TRUNC_BF16])  # fmt: skip
    engine = _jit(text)
    run = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint16, ctypes.c_void_p, ctypes.c_void_p)(
        engine.get_function_address("pairs")
    )
    words_in, x_in = np.array(words, np.uint32), np.array(x_words, np.uint32)
    out = np.zeros(len(pairs), np.uint32)
    run(words_in.ctypes.data, scale_bits, x_in.ctypes.data, out.ctypes.data)
    values = out.view(NUMPY_DTYPES[spec.dtype]).astype(np.float64)
    count = len(pairs) - len(x_words)
    return values[: 2 * count], values[2 * count :]
