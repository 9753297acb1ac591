"""Machine programs: the accel dialect's instructions as field values, with the
text assembly form and the 128-bit binary form (docs/isa.md), both ways.

A Program is what the simulator runs and what `--emit isa` / `--emit bin` write:
DRAM segments (name, offset, size, kind) and instructions in program order.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

from xdsl.dialects import func
from xdsl.utils.exceptions import VerifyException

from stoicc_py.dialects.accel import (
    DRAM_LIMIT,
    ENUMS,
    HEADER,
    INSTRUCTION_BITS,
    MNEMONICS,
    OPTIONAL_FIELDS,
    QUEUES,
    SEGMENT_KINDS,
    InstructionOp,
    SegmentOp,
    queue_mask,
    queue_names,
)

MAGIC = b"STAC"
VERSION = 1
SEGMENT_ALIGN = 64
OPCODES = {op.OPCODE: name for name, op in MNEMONICS.items()}


class AsmError(ValueError):
    """A malformed assembly line or binary program."""


@dataclass(frozen=True)
class Segment:
    """A named byte range of DRAM; AsmError if it is not within the DRAM that `dram`
    fields address (so no program can ask the simulator for more)."""

    name: str
    offset: int
    size: int
    kind: str

    def __post_init__(self) -> None:
        if self.offset < 0 or self.size < 0:
            raise AsmError(f"segment {self.name}: offset and size cannot be negative")
        if self.offset + self.size > DRAM_LIMIT:
            raise AsmError(f"segment {self.name} ends at byte {self.offset + self.size:#x}, past the "
                           f"{DRAM_LIMIT >> 30} GiB that 32-bit dram addresses reach")  # fmt: skip


@dataclass
class Instr:
    """One instruction: its mnemonic, its fields as numbers (enums as their index,
    `dram` as an absolute byte address) and its token masks."""

    mnemonic: str
    fields: dict[str, int]
    wait: int = 0
    signal: int = 0

    @property
    def queue(self) -> str:
        if self.mnemonic == "sync":
            return QUEUES[self.fields["queue"]]
        return MNEMONICS[self.mnemonic].QUEUE

    def name_of(self, key: str) -> str:
        """An enum field's name."""
        return ENUMS[key][self.fields[key]]


@dataclass
class Program:
    """A machine program: its DRAM segments (inputs, weights, outputs, scratch) and the
    instructions of its queues (docs/isa.md); as assembly text or 128-bit binary words."""

    name: str
    segments: list[Segment] = field(default_factory=list)
    instrs: list[Instr] = field(default_factory=list)

    @property
    def dram_bytes(self) -> int:
        """The DRAM the program's segments span."""
        return max((s.offset + s.size for s in self.segments), default=0)

    def segment(self, name: str) -> Segment:
        """The segment `name`; KeyError if there is none."""
        for s in self.segments:
            if s.name == name:
                return s
        raise KeyError(f"program {self.name} has no segment '{name}'")

    def locate(self, address: int) -> tuple[Segment, int]:
        """The segment holding a DRAM address, and the offset in it; AsmError if none does."""
        for s in self.segments:
            if s.offset <= address < s.offset + s.size:
                return s, address - s.offset
        raise AsmError(f"DRAM address {address:#x} is outside every segment")

    # ------------------------------------------------------------------ from the IR

    @staticmethod
    def of(fn: func.FuncOp) -> Program:
        """The program of a function in the accel dialect (after accel-schedule)."""
        program = Program(fn.sym_name.data)
        offset = 0
        for op in fn.body.ops:
            if isinstance(op, SegmentOp):
                size = op.size.value.data
                program.segments.append(Segment(op.sym.data, offset, size, op.kind.data))
                offset += -(-size // SEGMENT_ALIGN) * SEGMENT_ALIGN
            elif isinstance(op, InstructionOp):
                program.instrs.append(_instr(op, program))
        return program

    # ------------------------------------------------------------------ text

    def to_asm(self) -> str:
        """The assembly text, which from_asm() reads back."""
        lines = [f".kernel {self.name}"]
        lines += [f".segment {s.name} {s.offset:#x} {s.size} {s.kind}" for s in self.segments]
        lines += [self._asm_line(i) for i in self.instrs]
        return "\n".join(lines) + "\n"

    def _asm_line(self, instr: Instr) -> str:
        parts = [instr.mnemonic.ljust(6)]
        for key, value in instr.fields.items():
            if key in OPTIONAL_FIELDS and not value:
                continue
            if key == "dram":
                seg, off = self.locate(value)
                parts.append(f"dram={seg.name}+{off:#x}")
            elif key in ENUMS:
                parts.append(f"{key}={ENUMS[key][value]}")
            else:
                parts.append(f"{key}={value}")
        parts += [f"{k}={queue_names(m)}" for k, m in (("wait", instr.wait), ("signal", instr.signal)) if m]
        return " ".join(parts).rstrip()

    @staticmethod
    def from_asm(text: str, file: str = "<asm>") -> Program:
        """The program of assembly text; AsmError located as FILE:LINE:COL on a bad line."""
        program = Program("")
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split(";", 1)[0].strip()
            if not line:
                continue
            try:
                _parse_line(program, line)
            except (AsmError, KeyError, ValueError) as err:
                col = len(raw) - len(raw.lstrip()) + 1
                message = err.args[0] if err.args else str(err)
                raise AsmError(f"{file}:{number}:{col}: error: {message}") from None
        if not program.name:
            raise AsmError(f"{file}:1:1: error: missing '.kernel NAME'")
        return program

    # ------------------------------------------------------------------ binary

    def to_bytes(self) -> bytes:
        """The binary: header, segment table, one 128-bit word per instruction, CRC-32."""
        out = bytearray(MAGIC + struct.pack("<HHI", VERSION, len(self.segments), len(self.instrs)))
        out += _string(self.name)
        for s in self.segments:
            out += _string(s.name) + struct.pack("<IIB", s.offset, s.size, SEGMENT_KINDS.index(s.kind))
        for instr in self.instrs:
            out += encode(instr).to_bytes(INSTRUCTION_BITS // 8, "little")
        return bytes(out + struct.pack("<I", zlib.crc32(out)))

    @staticmethod
    def from_bytes(data: bytes) -> Program:
        """The program of a binary from to_bytes(); AsmError if it is corrupt."""
        try:
            return Program._from_bytes(data)
        except struct.error:
            raise AsmError("corrupt accelerator program (truncated table)") from None

    @staticmethod
    def _from_bytes(data: bytes) -> Program:
        if len(data) < 16 or data[:4] != MAGIC:
            raise AsmError("not a stoicc accelerator program (bad magic)")
        if zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
            raise AsmError("corrupt accelerator program (checksum mismatch)")
        version, n_segments, n_instrs = struct.unpack_from("<HHI", data, 4)
        if version != VERSION:
            raise AsmError(f"accelerator program version {version}, this simulator reads {VERSION}")
        pos = 12
        name, pos = _read_string(data, pos)
        program = Program(name)
        for _ in range(n_segments):
            seg_name, pos = _read_string(data, pos)
            offset, size, kind = struct.unpack_from("<IIB", data, pos)
            pos += 9
            if kind >= len(SEGMENT_KINDS):
                raise AsmError(f"corrupt accelerator program (segment {seg_name} has kind {kind})")
            program.segments.append(Segment(seg_name, offset, size, SEGMENT_KINDS[kind]))
        width = INSTRUCTION_BITS // 8
        if pos + n_instrs * width + 4 != len(data):
            raise AsmError("corrupt accelerator program (wrong length)")
        for i in range(n_instrs):
            instr = decode(int.from_bytes(data[pos + i * width : pos + (i + 1) * width], "little"))
            check(instr)
            program.instrs.append(instr)
        return program


def encode(instr: Instr) -> int:
    op = MNEMONICS[instr.mnemonic]
    word, shift = 0, 0
    values = {"opcode": op.OPCODE, "wait": instr.wait, "signal": instr.signal, **instr.fields}
    for key, bits in HEADER + op.FIELDS:
        value = values[key]
        if not 0 <= value < 1 << bits:
            raise AsmError(f"{instr.mnemonic}: {key} = {value} does not fit its {bits}-bit field")
        word |= value << shift
        shift += bits
    return word


def decode(word: int) -> Instr:
    opcode = word & 0x1F
    if opcode not in OPCODES:
        raise AsmError(f"unknown opcode {opcode}")
    mnemonic = OPCODES[opcode]
    values: dict[str, int] = {}
    shift = 0
    for key, bits in HEADER + MNEMONICS[mnemonic].FIELDS:
        values[key] = word >> shift & ((1 << bits) - 1)
        shift += bits
    if word >> shift:
        raise AsmError(f"{mnemonic}: bits above its fields are set")
    for key, names in ENUMS.items():
        if key in values and values[key] >= len(names):
            raise AsmError(f"{mnemonic}: {key} {values[key]} is not one of {', '.join(names)}")
    values.pop("opcode")
    wait, signal = values.pop("wait"), values.pop("signal")
    return Instr(mnemonic, values, wait, signal)


def check(instr: Instr) -> None:
    """The rules the verifier applies to the IR, on a decoded or assembled instruction."""
    own = 1 << QUEUES.index(instr.queue)
    if (instr.wait | instr.signal) & own:
        raise AsmError(f"{instr.mnemonic} runs on the {instr.queue} queue and cannot take or give itself a token")
    if instr.mnemonic == "cfg":
        f = instr.fields
        if f["abits"] not in (4, 8):
            raise AsmError(f"cfg: abits must be 8 or 4, got {f['abits']}")
        if f["n"] and not f["n"] < f["m"]:
            raise AsmError(f"cfg: N:M sparsity needs 0 < n < m, got {f['n']}:{f['m']}")


def _instr(op: InstructionOp, program: Program) -> Instr:
    fields: dict[str, int] = {}
    for key, _ in op.FIELDS:
        if key == "dram":
            seg = program.segment(op.field("seg"))  # type: ignore[arg-type]
            fields[key] = seg.offset + int(op.field("off"))
        elif key in ENUMS:
            fields[key] = ENUMS[key].index(str(op.field(key)))
        else:
            fields[key] = int(op.field(key))
    wait, signal = op.tokens
    return Instr(op.name.removeprefix("accel."), fields, wait, signal)


_FIELD = re.compile(r"(\w+)=(\S+)")


def _parse_line(program: Program, line: str) -> None:
    head, *rest = line.split(None, 1)
    text = rest[0] if rest else ""
    if head.startswith("."):
        _parse_directive(program, head, text)
        return
    if head not in MNEMONICS:
        raise AsmError(f"unknown instruction '{head}' (expected one of {', '.join(MNEMONICS)})")
    given = _key_values(head, text)
    fields = {key: _field_value(program, head, key, given) for key, _ in MNEMONICS[head].FIELDS}
    try:
        wait, signal = queue_mask(given.pop("wait", "")), queue_mask(given.pop("signal", ""))
    except VerifyException as err:
        raise AsmError(str(err)) from None
    if given:
        raise AsmError(f"{head}: unknown field '{next(iter(given))}'")
    instr = Instr(head, fields, wait, signal)
    encode(instr)  # range checks
    check(instr)
    program.instrs.append(instr)


def _parse_directive(program: Program, head: str, text: str) -> None:
    if head == ".kernel":
        program.name = text.strip()
    elif head == ".segment":
        parts = text.split()
        if len(parts) != 4:
            raise AsmError("expected '.segment NAME OFFSET SIZE KIND'")
        name, offset, size, kind = parts
        if "+" in name:  # dram=NAME+OFFSET could not name it
            raise AsmError(f"segment name '{name}' contains '+'")
        if kind not in SEGMENT_KINDS:
            raise AsmError(f"segment kind '{kind}' is not one of {', '.join(SEGMENT_KINDS)}")
        program.segments.append(Segment(name, int(offset, 0), int(size, 0), kind))
    else:
        raise AsmError(f"unknown directive '{head}' (expected .kernel or .segment)")


def _key_values(head: str, text: str) -> dict[str, str]:
    given: dict[str, str] = {}
    for token in text.split():
        match = _FIELD.fullmatch(token)
        if match is None:
            raise AsmError(f"{head}: '{token}' is not FIELD=VALUE")
        if match[1] in given:
            raise AsmError(f"{head}: field '{match[1]}' given twice")
        given[match[1]] = match[2]
    return given


def _field_value(program: Program, head: str, key: str, given: dict[str, str]) -> int:
    if key not in given:
        if key in OPTIONAL_FIELDS:
            return 0
        raise AsmError(f"{head}: missing field '{key}'")
    text = given.pop(key)
    if key == "dram":
        name, _, off = text.partition("+")
        seg, offset = program.segment(name), int(off or "0", 0)
        if not 0 <= offset < seg.size:
            raise AsmError(f"{head}: {text} is outside segment {name} ({seg.size} bytes)")
        return seg.offset + offset
    if key in ENUMS:
        if text not in ENUMS[key]:
            raise AsmError(f"{head}: {key} '{text}' is not one of {', '.join(ENUMS[key])}")
        return ENUMS[key].index(text)
    return int(text, 0)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<H", len(data)) + data


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<H", data, pos)
    try:
        return data[pos + 2 : pos + 2 + n].decode(), pos + 2 + n
    except UnicodeDecodeError:
        raise AsmError("corrupt accelerator program (bad name)") from None
