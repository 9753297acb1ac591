"""The accelerator's machine-program formats (backends/accel/isa.py): text assembly
and 128-bit binary, both ways, their error reports, and docs/isa.md kept true to
the dialect's instruction tables, the machine defaults and the semantics."""

from __future__ import annotations

import json
import math
import re
import struct
import tempfile
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stoicc_py
from stoicc_py.backends.accel.functional import Functional, SimulationError
from stoicc_py.backends.accel.isa import MAGIC, VERSION, AsmError, Instr, Program, Segment, decode, encode
from stoicc_py.backends.accel.machine import Machine
from stoicc_py.backends.accel.simulator import simulate
from stoicc_py.dialects.accel import ENUMS, HEADER, INSTRUCTION_BITS, INSTRUCTIONS, MNEMONICS, QUEUES, SEGMENT_KINDS

Array = np.ndarray[Any, Any]
DOC = Path(__file__).resolve().parents[1] / "docs" / "isa.md"
WIDTH = INSTRUCTION_BITS // 8

KERNELS = {
    "int8": "kernel f(x: i8[M, 256], w: i8[128, 256]) -> i32[M, 128] { return linear(x, w) }",
    "bias_relu": "kernel f(x: i8[M, 256], w: i8[128, 256], b: i32[128]) -> i32[M, 128] { return relu(linear(x, w, b)) }",
    "nm_int4": "kernel f(x: f32[M, 512], w: f32[128, 512] @ nm(2, 4) with int4(axis=0), b: f32[128]) -> f32[M, 128] "
    "{ return gelu(linear(quantize(x, int8(per=token)), w, b)) }",
    "bitsplit": "kernel f(x: f32[M, 512], w: f32[128, 512] @ int8(axis=0)) -> f32[M, 128] "
    "{ return linear(quantize(x, bitsplit(int8)), w) }",
    "sq": "kernel f(x: f32[M, 512], w: f32[128, 512] @ sq(low=int4(group=128), high=int8, high_density=0.05)) "
    "-> f32[M, 128] { return linear(quantize(x, int8(per=token)), w) }",
    "two_layers": "kernel f(x: f32[M, 256], w: f32[128, 256] @ int8(axis=0), v: f32[64, 128] @ ternary(axis=0)) "
    "-> f32[M, 64] { h = relu(linear(quantize(x, int8(per=token)), w))\n return linear(quantize(h, int8(per=token)), v) }",
}


@cache
def compiled(name: str) -> Program:
    return stoicc_py.compile(KERNELS[name], target="accel").f.program_for(M=8)  # type: ignore[union-attr]


def program(body: str, segments: str = ".segment x 0x0 4096 input\n.segment out0 0x1000 4096 output\n") -> Program:
    return Program.from_asm(".kernel t\n" + segments + body, "t.s")


def own_bit(instr: Instr) -> int:
    return 1 << QUEUES.index(instr.queue)


# ---------------------------------------------------------------------- round trips of compiled programs


@pytest.mark.parametrize("name", KERNELS)
def test_compiled_asm_round_trip(name: str) -> None:
    prog = compiled(name)
    text = prog.to_asm()
    again = Program.from_asm(text, f"{name}.s")
    assert again.to_asm() == text
    assert (again.name, again.segments, again.instrs) == (prog.name, prog.segments, prog.instrs)


@pytest.mark.parametrize("name", KERNELS)
def test_compiled_binary_round_trip(name: str) -> None:
    prog = compiled(name)
    data = prog.to_bytes()
    again = Program.from_bytes(data)
    assert again.to_asm() == prog.to_asm()
    assert again.to_bytes() == data
    assert data[:4] == MAGIC and struct.unpack_from("<HHI", data, 4) == (VERSION, len(prog.segments), len(prog.instrs))


@pytest.mark.parametrize("name", KERNELS)
def test_compiled_tokens_never_name_their_own_queue(name: str) -> None:
    for instr in compiled(name).instrs:
        assert not (instr.wait | instr.signal) & own_bit(instr), instr


def test_reassembled_binary_computes_the_same() -> None:
    """The program read back from its binary gives the kernel's bit-exact result."""
    prog = compiled("bias_relu")
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (8, 256), dtype=np.int8)
    w = rng.integers(-128, 128, (128, 256), dtype=np.int8)
    b = rng.integers(-(2**20), 2**20, 128, dtype=np.int32)
    outputs, report = simulate(Program.from_bytes(prog.to_bytes()), {"x": x, "w": w, "b": b})
    got = np.frombuffer(outputs["%out0"], np.int32).reshape(8, 128)
    want = np.maximum(x.astype(np.int64) @ w.astype(np.int64).T + b, 0)
    np.testing.assert_array_equal(got, want)
    assert report is not None and report.cycles > 0


# ---------------------------------------------------------------------- random instructions


ANY_ADDRESS = st.integers(0, (1 << 32) - 1)


@st.composite
def instructions(draw: st.DrawFn, addresses: st.SearchStrategy[int] = ANY_ADDRESS) -> Instr:
    """Any instruction with in-range fields and tokens that do not name its own queue."""
    mnemonic = draw(st.sampled_from(sorted(MNEMONICS)))
    fields: dict[str, int] = {}
    for key, bits in MNEMONICS[mnemonic].FIELDS:
        if key == "dram":
            fields[key] = draw(addresses)
        elif key in ENUMS:
            fields[key] = draw(st.integers(0, len(ENUMS[key]) - 1))
        else:
            fields[key] = draw(st.integers(0, (1 << bits) - 1))
    if mnemonic == "cfg":  # the rules check() applies
        fields["abits"] = draw(st.sampled_from([4, 8]))
        if fields["n"] >= fields["m"]:
            fields["n"] = 0
    instr = Instr(mnemonic, fields)
    others = 0b111 & ~own_bit(instr)
    instr.wait = draw(st.integers(0, 7)) & others
    instr.signal = draw(st.integers(0, 7)) & others
    return instr


@st.composite
def programs(draw: st.DrawFn) -> Program:
    """Segments laid out as the compiler does (64-byte aligned, empty ones allowed) and
    instructions whose DRAM addresses fall in a non-empty segment, which the assembly names."""
    sizes = draw(st.lists(st.integers(0, 5000), min_size=1, max_size=5).filter(any))
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_.]{0,8}", fullmatch=True), min_size=len(sizes),
                          max_size=len(sizes), unique=True))  # fmt: skip
    segments, offset = [], 0
    for name, size in zip(names, sizes):
        segments.append(Segment(name, offset, size, draw(st.sampled_from(SEGMENT_KINDS))))
        offset += -(-size // 64) * 64
    addresses = st.sampled_from([s for s in segments if s.size]).flatmap(
        lambda s: st.integers(s.offset, s.offset + s.size - 1)
    )
    name = draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True))
    return Program(name, segments, draw(st.lists(instructions(addresses), max_size=24)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_round_trip(prog: Program) -> None:
    text = prog.to_asm()
    from_text = Program.from_asm(text, "random.s")
    assert (from_text.name, from_text.segments, from_text.instrs) == (prog.name, prog.segments, prog.instrs)
    assert from_text.to_asm() == text
    from_binary = Program.from_bytes(prog.to_bytes())
    assert from_binary.to_asm() == text
    assert from_binary.to_bytes() == prog.to_bytes()


@settings(max_examples=300, deadline=None)
@given(instructions())
def test_random_instruction_encode_decode(instr: Instr) -> None:
    word = encode(instr)
    assert 0 <= word < 1 << INSTRUCTION_BITS
    assert word & 0x1F == MNEMONICS[instr.mnemonic].OPCODE
    assert decode(word) == instr


# ---------------------------------------------------------------------- encode / decode of each instruction


def _layout(op: type) -> dict[str, tuple[int, int]]:
    """Field -> (first bit, width), from the header and the op's FIELDS."""
    out, shift = {}, 0
    for key, bits in HEADER + op.FIELDS:
        out[key] = (shift, bits)
        shift += bits
    return out


@pytest.mark.parametrize("op", INSTRUCTIONS, ids=lambda op: op.name)
def test_encode_decode_each_instruction(op: type) -> None:
    mnemonic = op.name.removeprefix("accel.")
    layout = _layout(op)
    # every field at its largest value, then each field alone: it lands exactly on its bits
    top = {key: len(ENUMS[key]) - 1 if key in ENUMS else (1 << bits) - 1 for key, bits in op.FIELDS}
    full = Instr(mnemonic, top, wait=0, signal=0)
    assert decode(encode(full)) == full
    zero = dict.fromkeys(top, 0)
    base = encode(Instr(mnemonic, zero))
    assert base == op.OPCODE
    for key, value in top.items():
        first, _ = layout[key]
        assert encode(Instr(mnemonic, {**zero, key: value})) == base | value << first, key
    for queue in range(3):
        first_wait, first_signal = layout["wait"][0], layout["signal"][0]
        instr = Instr(mnemonic, zero, wait=1 << queue, signal=1 << queue)
        assert encode(instr) == base | 1 << (first_wait + queue) | 1 << (first_signal + queue)
        assert decode(encode(instr)) == instr


@pytest.mark.parametrize("op", INSTRUCTIONS, ids=lambda op: op.name)
def test_decode_rejects_bits_above_the_fields(op: type) -> None:
    used = sum(bits for _, bits in HEADER + op.FIELDS)
    if used == INSTRUCTION_BITS:
        pytest.skip("no spare bits")
    with pytest.raises(AsmError, match="bits above its fields are set"):
        decode(op.OPCODE | 1 << used)


@pytest.mark.parametrize("opcode", [0, *range(max(op.OPCODE for op in INSTRUCTIONS) + 1, 32)])
def test_decode_rejects_unknown_opcodes(opcode: int) -> None:
    with pytest.raises(AsmError, match=f"unknown opcode {opcode}"):
        decode(opcode)


SPARE_ENUMS = [(m, k) for m, op in MNEMONICS.items() for k, b in op.FIELDS if k in ENUMS and len(ENUMS[k]) < 1 << b]
"""Enum fields with bit patterns that name no value (bcast uses all four of its two bits)."""


@pytest.mark.parametrize(("mnemonic", "key"), SPARE_ENUMS)
def test_decode_rejects_enum_indices_out_of_range(mnemonic: str, key: str) -> None:
    op = MNEMONICS[mnemonic]
    first, _ = _layout(op)[key]
    with pytest.raises(AsmError, match=f"{key} {len(ENUMS[key])} is not one of"):
        decode(op.OPCODE | len(ENUMS[key]) << first)


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(AsmError, match="acc = 16384 does not fit its 14-bit field"):
        encode(Instr("gemm", {"acc": 1 << 14, "inp": 0, "wgt": 0, "m": 1, "n": 1, "k": 1, "init": 0}))
    with pytest.raises(AsmError, match="wait = 8 does not fit its 3-bit field"):
        encode(Instr("fence", {}, wait=8))


# ---------------------------------------------------------------------- corrupted binaries


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.fixture(scope="module")
def binary() -> bytes:
    return compiled("int8").to_bytes()


@pytest.mark.parametrize("where", [4, 12, 20, 40, -20, -5])
def test_flipped_byte_fails_the_checksum(binary: bytes, where: int) -> None:
    data = bytearray(binary)
    data[where] ^= 0x40
    with pytest.raises(AsmError, match="checksum mismatch"):
        Program.from_bytes(bytes(data))


def test_bad_magic(binary: bytes) -> None:
    with pytest.raises(AsmError, match="bad magic"):
        Program.from_bytes(b"ELF\x7f" + binary[4:])
    with pytest.raises(AsmError, match="bad magic"):
        Program.from_bytes(b"")


@pytest.mark.parametrize("keep", [1, 15, 16, 100, -1, -4, -16])
def test_truncated(binary: bytes, keep: int) -> None:
    with pytest.raises(AsmError):
        Program.from_bytes(binary[:keep])


def test_wrong_length_with_a_valid_checksum(binary: bytes) -> None:
    with pytest.raises(AsmError, match="wrong length"):
        Program.from_bytes(_with_crc(binary[:-4] + bytes(WIDTH)))
    with pytest.raises(AsmError, match="wrong length"):
        Program.from_bytes(_with_crc(binary[: -4 - WIDTH]))


def test_wrong_version(binary: bytes) -> None:
    body = bytearray(binary[:-4])
    struct.pack_into("<H", body, 4, VERSION + 1)
    with pytest.raises(AsmError, match=f"version {VERSION + 1}, this simulator reads {VERSION}"):
        Program.from_bytes(_with_crc(bytes(body)))


def test_undecodable_instruction_with_a_valid_checksum(binary: bytes) -> None:
    body = bytearray(binary[:-4])
    body[-WIDTH:] = (31).to_bytes(WIDTH, "little")  # the last instruction: opcode 31
    with pytest.raises(AsmError, match="unknown opcode 31"):
        Program.from_bytes(_with_crc(bytes(body)))


def test_bad_segment_kind_with_a_valid_checksum() -> None:
    prog = Program("k", [Segment("s", 0, 64, "input")])
    body = bytearray(prog.to_bytes()[:-4])
    body[-1] = 9  # the segment's kind byte
    with pytest.raises(AsmError):
        Program.from_bytes(_with_crc(bytes(body)))


def test_segment_past_the_address_space_with_a_valid_checksum() -> None:
    body = bytearray(Program("k", [Segment("s", 0, 64, "input")]).to_bytes()[:-4])
    struct.pack_into("<II", body, len(body) - 9, 0xFFFFFFC0, 0x80)  # the segment's offset and size
    with pytest.raises(AsmError, match=r"^segment s ends at byte 0x100000040, past the 4 GiB"):
        Program.from_bytes(_with_crc(bytes(body)))


def test_simulator_refuses_a_program_larger_than_the_machines_dram() -> None:
    """A 3 GiB segment is within the address space but not the default machine's
    1024 MiB: refused before any DRAM is allocated."""
    big = program("finish\n", ".segment big 0x0 0xc0000000 temp\n")
    with pytest.raises(SimulationError, match=r"spans 3221225472 bytes of DRAM, more than the machine's 1024 MiB"):
        simulate(big, {})


def test_sim_command_reports_an_oversized_segment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stoicc_py.cli import main

    for size, message in [("0x10000000000", "big.s:3:1: error: segment big ends at byte"),
                          ("0xc0000000", "error: program t spans 3221225472 bytes of DRAM")]:  # fmt: skip
        (tmp_path / "big.s").write_text(f".kernel t\n\n.segment big 0x0 {size} temp\nfinish\n")
        assert main(["sim", str(tmp_path / "big.s")]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


# ---------------------------------------------------------------------- assembly errors

GEMM = "gemm acc=0 inp=0 wgt=0 m=1 n=1 k=8 init=1"
LOCATED = re.compile(r"^t\.s:(\d+):(\d+): error: (.*)$")


@pytest.mark.parametrize(
    ("line", "col", "message"),
    [
        ("  frob a=1", 3, "unknown instruction 'frob' (expected one of "),
        ("gemm acc=0 inp=0 wgt=0 m=1 n=1 k=8", 1, "gemm: missing field 'init'"),
        (GEMM + " bogus=3", 1, "gemm: unknown field 'bogus'"),
        ("gemm acc=16384 inp=0 wgt=0 m=1 n=1 k=8 init=1", 1, "gemm: acc = 16384 does not fit its 14-bit field"),
        ("gemm acc=0 inp=0 wgt=0 m=1 n=1 k=8 init=2", 1, "gemm: init = 2 does not fit its 1-bit field"),
        ("\tgemm acc=-1 inp=0 wgt=0 m=1 n=1 k=8 init=1", 2, "gemm: acc = -1 does not fit its 14-bit field"),
        (
            "ld buf=xyz sram=0 dram=x+0 rows=1 cols=1 stride=1",
            1,
            "ld: buf 'xyz' is not one of inp, wgt, acc, meta, scl",
        ),
        (
            "valu op=fma dst=0 src=0 scl=0 aux=0 rows=1 cols=1 bcast=none stride=0",
            1,
            "valu: op 'fma' is not one of cvt, ",
        ),
        (
            "valu op=add dst=0 src=0 scl=0 aux=0 rows=1 cols=1 bcast=diag stride=0",
            1,
            "valu: bcast 'diag' is not one of ",
        ),
        ("cfg abits=8 asigned=1 wcode=int7 n=0 m=0 group=0 count=0 chunk=0", 1, "cfg: wcode 'int7' is not one of "),
        ("rdcnt counter=joules dram=x", 1, "rdcnt: counter 'joules' is not one of "),
        ("sync queue=dma", 1, "sync: queue 'dma' is not one of ld, ex, st"),
        ("st buf=acc sram=0 dram=y+0x10 rows=1 cols=1 stride=1", 1, "program t has no segment 'y'"),
        ("gemm acc=0x1g inp=0 wgt=0 m=1 n=1 k=8 init=1", 1, "invalid literal for int()"),
        (".segment s 0x2000 64 scratch", 1, "segment kind 'scratch' is not one of input, output, temp"),
        (".segment big 0x2000 0x10000000000 input", 1, "segment big ends at byte 0x10000002000, past the 4 GiB"),
        (".segment s 0xffffffc0 0x41 temp", 1, "segment s ends at byte 0x100000001, past the 4 GiB"),
        (".segment s 0x2000 -64 temp", 1, "segment s: offset and size cannot be negative"),
        (".segment a+b 0x2000 64 temp", 1, "segment name 'a+b' contains '+'"),
    ],
)
def test_asm_errors_are_located(line: str, col: int, message: str) -> None:
    text = ".kernel t\n; a comment line\n\n.segment x 0x0 4096 input\n" + line + "\nfinish\n"
    with pytest.raises(AsmError) as info:
        Program.from_asm(text, "t.s")
    found = LOCATED.match(str(info.value))
    assert found, str(info.value)
    assert (int(found[1]), int(found[2])) == (5, col)
    assert found[3].startswith(message), found[3]


def test_asm_token_lists() -> None:
    gemm, sync = program(GEMM + " wait=ld,st signal=st,ld\nsync queue=st wait=ld,ex\n").instrs
    assert (gemm.wait, gemm.signal, sync.wait, sync.signal) == (0b101, 0b101, 0b011, 0)
    assert "wait=ld,st signal=ld,st" in program(GEMM + " wait=st,ld signal=ld,st\n").to_asm()


def test_asm_missing_kernel_name() -> None:
    with pytest.raises(AsmError, match=r"^t\.s:1:1: error: missing '\.kernel NAME'$"):
        Program.from_asm("finish\n", "t.s")


def test_asm_comments_blank_lines_and_order_of_fields() -> None:
    prog = program(
        "\n  ; nothing\nst buf=acc stride=0x200 rows=8 cols=512 sram=0 dram=out0+0x20 wait=ex ; tail\n"
        "gemm init=1 k=0b1000 n=1 m=1 wgt=0 inp=0 acc=0o17 signal=st\nld buf=inp sram=0 dram=x rows=1 cols=1 stride=1\n"
    )
    st_, gemm, ld = prog.instrs
    assert st_.fields == {"buf": 2, "sram": 0, "dram": 0x1020, "rows": 8, "cols": 512, "stride": 512}
    assert (st_.wait, st_.signal) == (0b010, 0)
    assert gemm.fields["k"] == 8 and gemm.fields["acc"] == 15 and gemm.signal == 0b100
    assert ld.fields["dram"] == 0
    assert prog.to_asm().splitlines()[3] == "st     buf=acc sram=0 dram=out0+0x20 rows=8 cols=512 stride=512 wait=ex"


def test_asm_unknown_queue_is_located() -> None:
    with pytest.raises(AsmError, match=r"^t\.s:4:1: error: unknown queue 'zz'"):
        program(GEMM + " wait=zz\n")


def test_asm_rejects_a_token_on_the_own_queue() -> None:
    with pytest.raises(AsmError):
        program(GEMM + " wait=ex\n")


# ---------------------------------------------------------------------- the dialect's verifier


def test_sync_with_an_unknown_queue_is_a_verify_error() -> None:
    from xdsl.utils.exceptions import VerifyException

    from stoicc_py.dialects.accel import SyncOp

    with pytest.raises(VerifyException):
        SyncOp.make(on="dma").verify()


# ---------------------------------------------------------------------- docs/isa.md


def _doc() -> str:
    return DOC.read_text()


def _section(title: str) -> str:
    """The text of the `### `title`` section of docs/isa.md."""
    found = re.search(rf"^### `{re.escape(title)}`\n(.*?)(?=^##)", _doc() + "\n##", re.S | re.M)
    assert found, f"docs/isa.md has no section ### `{title}`"
    return found[1]


def _bit_rows(text: str) -> dict[str, tuple[int, int]]:
    return {m[3]: (int(m[1]), int(m[2])) for m in re.finditer(r"^\| (\d+)\.\.(\d+) \| `(\w+)` \|", text, re.M)}


@pytest.mark.parametrize("op", INSTRUCTIONS, ids=lambda op: op.name)
def test_doc_names_every_instruction_and_field(op: type) -> None:
    doc, mnemonic = _doc(), op.name.removeprefix("accel.")
    assert f"`{mnemonic}`" in doc
    assert op.name in doc  # its IR form
    for key, _ in op.FIELDS:
        assert f"`{key}`" in doc, key


@pytest.mark.parametrize("op", INSTRUCTIONS, ids=lambda op: op.name)
def test_doc_bit_tables_match_the_encoding(op: type) -> None:
    mnemonic = op.name.removeprefix("accel.")
    layout = {k: (first, first + bits - 1) for k, (first, bits) in _layout(op).items()}
    header = _bit_rows(_doc().split("## Binary encoding", 1)[1].split("###", 1)[0])
    assert header == {k: layout[k] for k, _ in HEADER}
    rows = _bit_rows(_section(mnemonic))
    assert rows == {k: layout[k] for k, _ in op.FIELDS}, mnemonic


def test_doc_opcode_table() -> None:
    rows = {m[1]: (int(m[2]), m[3], m[4]) for m in re.finditer(r"^\| `(\w+)` \| (\d+) \| ([^|]+?) \| ([^|]+?) \|$",
                                                                 _doc(), re.M)}  # fmt: skip
    for mnemonic, op in MNEMONICS.items():
        opcode, queue, fields = rows[mnemonic]
        assert opcode == op.OPCODE
        assert queue == (op.QUEUE if mnemonic != "sync" else "its `queue`")
        assert fields.strip("`").split() == [k for k, _ in op.FIELDS] or (fields == "none" and not op.FIELDS)


def test_doc_enum_table() -> None:
    table = _doc().split("| enum | names, by index from 0 |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        first, names = line.strip("|").split("|")
        key = "segment kind" if "segment kind" in first else re.findall(r"`(\w+)`", first)[0]
        rows[key] = tuple(re.findall(r"`(\w+)`", names))
    assert rows == {**ENUMS, "segment kind": SEGMENT_KINDS}


def _number(value: object) -> object:
    """Numbers as floats (the table writes 32 and 1.0 alike), strings and booleans as they are."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def test_doc_machine_defaults() -> None:
    rows = re.finditer(r'^\| `([\w.]+)` \| ([\d.]+|"\w+"|true|false)(?: pJ)? \|', _doc(), re.M)
    documented = {m[1]: _number(json.loads(m[2])) for m in rows}
    expected = {}
    for key, value in Machine.load().to_json().items():
        if isinstance(value, dict):
            expected.update({f"{key}.{k}": _number(v) for k, v in value.items()})
        else:
            expected[key] = _number(value)
    assert {k: documented.get(k) for k in expected} == expected


def test_doc_example_program_assembles_and_computes() -> None:
    text = re.search(r"```asm\n(.*?)```", _doc(), re.S)
    assert text
    prog = Program.from_asm(text[1], "isa.md")
    assert Program.from_asm(prog.to_asm()).instrs == prog.instrs
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (8, 256), dtype=np.int8)
    w = rng.integers(-128, 128, (128, 256), dtype=np.int8)
    b = rng.integers(-(2**20), 2**20, 128, dtype=np.int32)
    outputs, _ = simulate(prog, {"x": x, "w": w, "b": b})
    got = np.frombuffer(outputs["%out0"], np.int32).reshape(8, 128)
    np.testing.assert_array_equal(got, np.maximum(x.astype(np.int64) @ w.astype(np.int64).T + b, 0))


def test_doc_ir_example_parses_and_builds_its_program() -> None:
    from xdsl.dialects import func
    from xdsl.parser import Parser

    from stoicc_py.pipeline import context

    text = re.search(r"```mlir\n(.*?)```", _doc(), re.S)
    assert text
    module = Parser(context(), text[1]).parse_module()
    module.verify()
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    prog = Program.of(fn)
    want = compiled("int8")  # the same kernel, named f
    assert (prog.name, prog.segments, prog.instrs) == ("g", want.segments, want.instrs)


def test_doc_encoding_example() -> None:
    instr = program(GEMM.replace("m=1 n=1 k=8", "m=8 n=128 k=256") + " wait=ld signal=st\n").instrs[0]
    word = encode(instr)
    assert f"`{word:#x}`" in _doc()
    assert "`" + word.to_bytes(WIDTH, "little").hex(" ") + "`" in _doc()


# ---------------------------------------------------------------------- semantics the doc states


def _run(prog: Program, inputs: dict[str, bytes | Array]) -> Functional:
    state = Functional(prog, Machine.load())
    for name, data in inputs.items():
        state.write_segment(name, data)
    for instr in prog.instrs:
        state.execute(instr)
    return state


def _index_words(index: Array, bits: int) -> Array:
    """docs/isa.md, spgemm: floor(32 / b) indices per u32 word, least significant first."""
    per = 32 // bits
    rows, slots = index.shape
    words = np.zeros((rows, -(-slots // per)), np.uint32)
    for s in range(slots):
        words[:, s // per] |= index[:, s].astype(np.uint32) << np.uint32((s % per) * bits)
    return words


@pytest.mark.parametrize(
    ("n_of", "m_of"),
    [(1, 2), (2, 4), (3, 4), (2, 8), (4, 8), (3, 16)],
)  # fmt: skip
def test_spgemm_index_words_as_documented(n_of: int, m_of: int) -> None:
    m, n, k = 4, 8, 64
    slots = k // m_of * n_of
    rng = np.random.default_rng(m_of)
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    index = np.stack([np.sort(rng.choice(m_of, n_of, replace=False)) for _ in range(n * k // m_of)]).reshape(n, slots)
    values = rng.integers(-128, 128, (n, slots), dtype=np.int8)
    words = _index_words(index, (m_of - 1).bit_length())
    dense = np.zeros((n, k), np.int64)
    for r in range(n):
        for s in range(slots):
            dense[r, s // n_of * m_of + index[r, s]] = values[r, s]
    segments = (f".segment x 0x0 {x.nbytes} input\n.segment v 0x1000 {values.nbytes} input\n"
                f".segment i 0x2000 {words.nbytes} input\n")  # fmt: skip
    prog = program(
        f"ld buf=inp sram=0 dram=x rows=1 cols={x.nbytes} stride={x.nbytes}\n"
        f"ld buf=wgt sram=0 dram=v rows=1 cols={values.nbytes} stride={values.nbytes}\n"
        f"ld buf=meta sram=0 dram=i rows=1 cols={words.nbytes} stride={words.nbytes}\n"
        f"cfg abits=8 asigned=1 wcode=int8 n={n_of} m={m_of} group=0 count=0 chunk=0\n"
        f"spgemm acc=0 inp=0 wgt=0 meta=0 m={m} n={n} k={k} init=1\n",
        segments,
    )
    state = _run(prog, {"x": x.tobytes(), "v": values.tobytes(), "i": words.tobytes()})
    got = state.sram["acc"][: m * n * 4].view(np.int32).reshape(m, n)
    np.testing.assert_array_equal(got, x.astype(np.int64) @ dense.T)


@pytest.mark.parametrize(("zstride", "zcol"), [(0, 5), (1, 0), (3, 2)])
def test_gemm_zero_points_as_documented(zstride: int, zcol: int) -> None:
    """cfg wzp: the int4 weights are unsigned nibbles c (low nibble first), and gemm
    computes x · (c - z)ᵀ with z[n] the scl byte at line zp + n * zstride + zcol."""
    m, n, k = 3, 8, 64
    rng = np.random.default_rng(zstride)
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    c = rng.integers(0, 16, (n, k), dtype=np.uint8)
    table = rng.integers(0, 16, 64, dtype=np.uint8)
    z = table[zcol :: zstride or 1][: n if zstride else 1]
    prog = program(
        f"ld buf=inp sram=0 dram=x rows=1 cols={x.nbytes} stride={x.nbytes}\n"
        f"ld buf=wgt sram=0 dram=w rows=1 cols={n * k // 2} stride={n * k // 2}\n"
        "ld buf=scl sram=2 dram=z rows=1 cols=64 stride=64\n"
        f"cfg abits=8 asigned=1 wcode=int4 n=0 m=0 group=0 count=0 chunk=0 wzp=1 zstride={zstride}\n"
        f"gemm acc=0 inp=0 wgt=0 m={m} n={n} k={k} init=1 zp=2 zcol={zcol}\n",
        ".segment x 0x0 4096 input\n.segment w 0x1000 4096 input\n.segment z 0x2000 64 input\n",
    )
    state = _run(prog, {"x": x.tobytes().ljust(4096, b"\0"),
                        "w": (c[:, 0::2] | c[:, 1::2] << 4).tobytes().ljust(4096, b"\0"), "z": table.tobytes()})  # fmt: skip
    got = state.sram["acc"][: m * n * 4].view(np.int32).reshape(m, n)
    np.testing.assert_array_equal(got, x.astype(np.int64) @ (c.astype(np.int64) - z[:, None]).T)


@pytest.mark.parametrize("mnemonic", ["spgemm", "bsgemm"])
def test_zero_points_are_for_gemm_only(mnemonic: str) -> None:
    prog = program(
        "cfg abits=8 asigned=1 wcode=int8 n=2 m=4 group=0 count=0 chunk=0 wzp=1\n"
        f"{mnemonic} acc=0 inp=0 wgt=0 meta=0 m=1 n=1 k=8 init=1\n",
        ".segment x 0x0 64 input\n",
    )
    with pytest.raises(SimulationError, match=f"{mnemonic} has no zero-point operand"):
        _run(prog, {"x": bytes(64)})


def test_zero_point_fields_are_optional_in_assembly() -> None:
    """Programs written before the zero-point fields read the same; the printer leaves them out at 0."""
    text = ".kernel k\ncfg abits=8 asigned=1 wcode=int8 n=0 m=0 group=0 count=0 chunk=0\n" + GEMM + "\n"
    prog = Program.from_asm(text)
    assert prog.instrs[0].fields["wzp"] == prog.instrs[1].fields["zp"] == prog.instrs[1].fields["zcol"] == 0
    assert Program.from_asm(prog.to_asm()).to_asm() == prog.to_asm()
    assert prog.to_asm().splitlines()[2].split() == GEMM.split()
    prog.instrs[1].fields["zcol"] = 7
    assert " zcol=7" in prog.to_asm() and Program.from_bytes(prog.to_bytes()).instrs == prog.instrs


def test_split_and_bsgemm_as_documented() -> None:
    """valu split writes lo / hi nibbles and the bitmap LSB first; gemm on lo (abits 4,
    unsigned) plus bsgemm on hi (x16) is the int8 product."""
    m, n, k = 2, 4, 64
    rng = np.random.default_rng(5)
    codes = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    prog = program(
        f"ld buf=inp sram=0 dram=x rows=1 cols={m * k} stride={m * k}\n"
        f"ld buf=wgt sram=0 dram=w rows=1 cols={n * k} stride={n * k}\n"
        f"valu op=split dst=4 src=0 scl=0 aux=8 rows={m} cols={k} bcast=none stride=0\n"
        "cfg abits=4 asigned=0 wcode=int8 n=0 m=0 group=0 count=0 chunk=0\n"
        f"gemm acc=0 inp=4 wgt=0 m={m} n={n} k={k} init=1\n"
        f"bsgemm acc=0 inp=8 wgt=0 meta=0 m={m} n={n} k={k} init=0\n",
        ".segment x 0x0 4096 input\n.segment w 0x1000 4096 input\n",
    )
    state = _run(prog, {"x": codes.tobytes().ljust(4096, b"\0"), "w": w.tobytes().ljust(4096, b"\0")})
    flat = codes.reshape(-1).astype(np.int32)
    lo, hi = flat & 15, flat >> 4
    inp = state.sram["inp"]
    assert np.array_equal(inp[256 : 256 + m * k // 2], (lo[0::2] | lo[1::2] << 4).astype(np.uint8))
    assert np.array_equal(inp[512 : 512 + m * k // 2], ((hi[0::2] & 15) | (hi[1::2] & 15) << 4).astype(np.uint8))
    bitmap = np.packbits(hi != 0, bitorder="little")
    assert np.array_equal(state.sram["meta"][: m * k // 8], bitmap)
    got = state.sram["acc"][: m * n * 4].view(np.int32).reshape(m, n)
    np.testing.assert_array_equal(got, codes.astype(np.int64) @ w.astype(np.int64).T)


def test_quant_chunks_as_documented() -> None:
    """valu quant: f32 k-chunks of `aux` columns, each block starting a line; codes
    in the same chunked form; per-row scales max|x| / 127."""
    rows, cols, chunk = 3, 40, 16
    rng = np.random.default_rng(9)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x[1] = 0  # a zero row: scale 0, codes 0
    widths = [min(chunk, cols - c) for c in range(0, cols, chunk)]
    staged, codes_at, code_line = bytearray(), [], 0
    for c, width in zip(range(0, cols, chunk), widths):
        block = x[:, c : c + width].tobytes()
        staged += block.ljust(-(-len(block) // 64) * 64, b"\0")
        codes_at.append(code_line)
        code_line += -(-rows * width // 64)
    prog = program(
        f"ld buf=acc sram=0 dram=x rows=1 cols={len(staged)} stride={len(staged)}\n"
        f"valu op=quant dst=2 src=0 scl=1 aux={chunk} rows={rows} cols={cols} bcast=none stride=0\n",
        f".segment x 0x0 {len(staged)} input\n",
    )
    state = _run(prog, {"x": bytes(staged)})
    scale = np.max(np.abs(x), axis=1) / np.float32(127)
    want = np.clip(np.rint(x / np.where(scale == 0, np.float32(1), scale)[:, None]), -127, 127).astype(np.int8)
    np.testing.assert_array_equal(state.sram["scl"][64 : 64 + rows * 4].view(np.float32), scale)
    for (c, width), at in zip(zip(range(0, cols, chunk), widths), codes_at):
        start = (2 + at) * 64
        got = state.sram["inp"][start : start + rows * width].view(np.int8).reshape(rows, width)
        np.testing.assert_array_equal(got, want[:, c : c + width])


@pytest.mark.parametrize(("bcast", "aux", "stride"), [("col", 0, 0), ("col", 2, 3), ("row", 1, 1), ("scalar", 5, 7),
                                                      ("none", 1, 2)])  # fmt: skip
def test_valu_operand_offset_and_stride_as_documented(bcast: str, aux: int, stride: int) -> None:
    """valu scale: value i of the operand is word aux + i * max(stride, 1) from line scl."""
    rows, cols = 3, 5
    rng = np.random.default_rng(11)
    acc = rng.integers(-1000, 1000, (rows, cols), dtype=np.int32)
    table = rng.standard_normal(256).astype(np.float32)
    prog = program(
        f"ld buf=acc sram=0 dram=a rows=1 cols={acc.nbytes} stride={acc.nbytes}\n"
        f"ld buf=scl sram=1 dram=s rows=1 cols={table.nbytes} stride={table.nbytes}\n"
        f"valu op=scale dst=4 src=0 scl=1 aux={aux} rows={rows} cols={cols} bcast={bcast} stride={stride}\n",
        f".segment a 0x0 {acc.nbytes} input\n.segment s 0x40 {table.nbytes} input\n",
    )
    state = _run(prog, {"a": acc.tobytes(), "s": table.tobytes()})
    count = {"none": rows * cols, "row": rows, "col": cols, "scalar": 1}[bcast]
    s = table[aux + np.arange(count) * max(stride, 1)]
    operand = (
        s.reshape(rows, cols)
        if bcast == "none"
        else s[:, None]
        if bcast == "row"
        else s[None, :]
        if bcast == "col"
        else s[0]
    )
    got = state.sram["acc"][256 : 256 + acc.nbytes].view(np.float32).reshape(rows, cols)
    np.testing.assert_array_equal(got, acc.astype(np.float32) * operand)


# ---------------------------------------------------------------------- machine files

MACHINE_KEYS = [(table, key) for table, value in Machine.load().to_json().items()
                for key in (value if isinstance(value, dict) else [None])]  # fmt: skip


def _load_machine(directory: Path, table: str, key: str | None, value: str) -> Machine:
    text = f"{table} = {value}\n" if key is None else f"[{table}]\n{key} = {value}\n"
    (directory / "m.toml").write_text(text)
    return Machine.load(directory / "m.toml")


@pytest.mark.parametrize(
    ("table", "key", "value", "message"),
    [
        ("clock_ghz", None, "nan", "machine.clock_ghz must be a finite number, got nan"),
        ("clock_ghz", None, "inf", "machine.clock_ghz must be a finite number, got inf"),
        ("energy", "sram_scale", "-nan", "machine.energy.sram_scale must be a finite number, got nan"),
        ("array", "dataflow", '"systolic"', "machine.array.dataflow must be one of 'ws', 'os', got 'systolic'"),
        ("dram", "technology", "7", "machine.dram.technology must be one of 'lpddr4', 'hbm2', 'ddr4', got 7"),
        ("array", "double_buffered", "1", "machine.array.double_buffered must be true or false, got 1"),
        ("energy", "mac_int8", "-1.5", "machine.energy.mac_int8 must be positive, got -1.5"),
        ("array", "rows", "2147483649", "machine.array.rows must be at most 2^31, got 2147483649"),
        ("dram", "capacity", "8192", "machine.dram.capacity: 8192 MiB is more than the 4096 MiB"),
        ("vector", "lanes", '"wide"', "machine.vector.lanes must be an integer, got 'wide'"),
    ],
)  # fmt: skip
def test_bad_machine_values_name_their_key(tmp_path: Path, table: str, key: str | None, value: str,
                                           message: str) -> None:  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(message)):
        _load_machine(tmp_path, table, key, value)


TOML_VALUES = st.one_of(
    st.sampled_from(["nan", "-nan", "inf", "-inf", "-1", "0", "0.0", "-0.0", "1", "64", "1.5", "1e308",
                     "2147483648", "9223372036854775807", "true", '"fast"', "[1, 2]", "{ a = 1 }", "1979-05-27"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),  # nan, inf, subnormals, 1e+300 ...
)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(where=st.sampled_from(MACHINE_KEYS), value=TOML_VALUES)
def test_machine_files_give_a_clear_error_or_a_machine_that_runs(where: tuple[str, str | None], value: str) -> None:
    """Any value of any key: a ValueError naming the key, or a machine on which a
    program simulates to finite costs (or stops with a SimulationError)."""
    table, key = where
    with tempfile.TemporaryDirectory() as directory:
        try:
            machine = _load_machine(Path(directory), table, key, value)
        except ValueError as err:
            assert (key or table) in str(err) or "cannot read machine file" in str(err), str(err)
            return
    try:
        _, report = simulate(compiled("bias_relu"), _random_inputs(compiled("bias_relu")), machine)
    except SimulationError:
        return
    assert report is not None and report.cycles > 0
    assert all(math.isfinite(v) for v in [report.seconds, report.total_energy_pj, *report.energy_pj.values()])


def _random_inputs(prog: Program) -> dict[str, Array]:
    rng = np.random.default_rng(0)
    return {s.name: rng.integers(0, 256, s.size, dtype=np.uint8) for s in prog.segments if s.kind == "input"}


def test_machine_file_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_bytes(b"[array]\nrows = \xff\xfe\n")
    with pytest.raises(ValueError, match="cannot read machine file"):
        Machine.load(path)
