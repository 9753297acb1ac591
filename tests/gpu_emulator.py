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
flags they wait for."""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field

import llvmlite.binding as llvm

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


def run(ir: str, name: str, pointers: list[int], m: int, grid: tuple[int, int, int], threads: int) -> Accesses:
    """Every thread of every block of the kernel `name` in `ir`, blocks in launch order with
    the split index outermost (split-K's blocks of a tile run in the order they wait in)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    accesses = Accesses()
    hooks = {f"record_{kind}": _HOOK(lambda at, size, into=into: into.append((at, size)))
             for kind, into in (("copy", accesses.copies), ("load", accesses.loads), ("scratch", accesses.scratch),
                               ("store", accesses.stores))}  # fmt: skip
    for symbol, hook in hooks.items():
        llvm.add_symbol(symbol, ctypes.cast(hook, ctypes.c_void_p).value)
    text = host_ir(ir)
    module = llvm.parse_assembly(text)
    engine = llvm.create_mcjit_compiler(module, llvm.Target.from_default_triple().create_target_machine(opt=1))
    engine.finalize_object()
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
