"""The `accel` dialect: one op per instruction of the simulated accelerator.

A kernel for the accelerator is a `func.func` whose body declares its DRAM
segments (`accel.segment`) and then lists instructions in program order. Each
instruction runs on one of three queues (load, execute, store) that work
concurrently; `wait`/`signal` name the queues it takes a dependency token from
and gives one to (docs/isa.md). Every op lists its binary fields in FIELDS
(name, width in bits), so the assembler, the disassembler and the verifier read
one table.
"""

from __future__ import annotations

from abc import ABC
from typing import ClassVar

from xdsl.dialects.builtin import I64, IntegerAttr, StringAttr, UnitAttr, i64
from xdsl.ir import Attribute, Dialect
from xdsl.irdl import IRDLOperation, irdl_op_definition, opt_prop_def, prop_def
from xdsl.utils.exceptions import VerifyException

QUEUES = ("ld", "ex", "st")
BUFFERS = ("inp", "wgt", "acc", "meta", "scl")
"""Scratchpads: int activations, weight values, the 4-byte accumulator (i32/f32),
metadata (N:M indices, bitmaps) and scales/bias vectors."""
SEGMENT_KINDS = ("input", "output", "temp")
GENERATED = "%"
"""The first character of every segment name the compiler makes (results %out0, ...,
temporaries %tmp0, ..., %out0.xq, ...): no .tdsl identifier can start with it, so these
never meet a parameter's segment (its name, or `name.role` per storage buffer)."""


def output_segment(index: int) -> str:
    """The segment of a kernel's result `index`."""
    return f"{GENERATED}out{index}"


def temp_segment(index: int) -> str:
    """The segment of the `index`-th intermediate result."""
    return f"{GENERATED}tmp{index}"


WEIGHT_CODES = ("int8", "int4", "int2", "ternary", "binary", "int3", "int5", "int6")
"""`cfg`'s 3-bit wcode: new codes are appended, so that old binaries keep their meaning."""
VALU_OPS = (
    "cvt", "scale", "mul", "add", "addi", "max", "maxi", "macc", "quant", "split", "gelu", "silu", "sigmoid", "tanh",
    "half",
)  # fmt: skip
"""Vector unit operations on accumulator tiles (docs/isa.md, "valu")."""
BROADCASTS = ("none", "row", "col", "scalar")
COUNTERS = ("cycles", "macs", "dram_bytes", "ex_busy")
LINE_BYTES = 64
"""Scratchpad addresses count 64-byte lines."""

Fields = tuple[tuple[str, int], ...]
HEADER: Fields = (("opcode", 5), ("wait", 3), ("signal", 3))
"""Every instruction starts with these; the fields of FIELDS follow, LSB first."""
INSTRUCTION_BITS = 128
OPTIONAL_FIELDS = frozenset({"wzp", "zstride", "zp", "zcol"})
"""Fields added after the first programs (weight zero points): 0 unless given, and
assembly omits them when 0, so programs written without them read the same."""
ENUMS: dict[str, tuple[str, ...]] = {
    "buf": BUFFERS, "op": VALU_OPS, "bcast": BROADCASTS, "counter": COUNTERS, "queue": QUEUES, "wcode": WEIGHT_CODES,
}  # fmt: skip
"""Fields stored as a string in the IR and as its index in the binary."""


def queue_mask(names: str) -> int:
    """The bit mask of a comma-separated queue list ("ld,st" -> 0b101)."""
    mask = 0
    for name in filter(None, names.split(",")):
        if name not in QUEUES:
            raise VerifyException(f"unknown queue '{name}' (expected one of {', '.join(QUEUES)})")
        mask |= 1 << QUEUES.index(name)
    return mask


def queue_names(mask: int) -> str:
    return ",".join(q for i, q in enumerate(QUEUES) if mask >> i & 1)


def _int(value: int) -> IntegerAttr:
    return IntegerAttr(value, i64)


class InstructionOp(IRDLOperation, ABC):
    """An accelerator instruction; its properties are the fields of FIELDS."""

    OPCODE: ClassVar[int]
    QUEUE: ClassVar[str]
    FIELDS: ClassVar[Fields]

    wait = opt_prop_def(StringAttr)
    signal = opt_prop_def(StringAttr)

    @classmethod
    def make(cls, **fields: int | str | bool) -> InstructionOp:
        """The instruction with these fields (ints, enum names, flags; tokens as `wait`/`signal`)."""
        props: dict[str, Attribute] = {}
        for name, value in fields.items():
            if isinstance(value, bool):
                if value:
                    props[name] = UnitAttr()
            elif isinstance(value, str):
                props[name] = StringAttr(value)
            else:
                props[name] = _int(value)
        return cls.create(properties=props)

    def field(self, name: str) -> int | str:
        """A field as the IR holds it: an int, an enum's name, or 0/1 for a flag."""
        prop = self.properties.get(name)
        if isinstance(prop, IntegerAttr):
            return prop.value.data
        if isinstance(prop, StringAttr):
            return prop.data
        return int(isinstance(prop, UnitAttr))

    def fields(self) -> dict[str, int | str]:
        return {name: self.field(name) for name, _ in self.FIELDS if name != "dram"}

    @property
    def tokens(self) -> tuple[int, int]:
        """(wait mask, signal mask)."""
        return (queue_mask(self.wait.data) if self.wait else 0, queue_mask(self.signal.data) if self.signal else 0)

    def verify_(self) -> None:
        waits, signals = self.tokens
        own = 1 << QUEUES.index(self.queue)
        if (waits | signals) & own:
            raise VerifyException(f"{self.name} runs on the {self.queue} queue and cannot take or give itself a token")
        for name, bits in self.FIELDS:
            if name in ("dram", "seg"):
                continue
            value = self.field(name)
            if name in ENUMS:
                if value not in ENUMS[name]:
                    raise VerifyException(f"{self.name}: {name} '{value}' is not one of {', '.join(ENUMS[name])}")
            elif not 0 <= int(value) < 1 << bits:
                raise VerifyException(f"{self.name}: {name} = {value} does not fit its {bits}-bit field")

    @property
    def queue(self) -> str:
        return self.QUEUE


class _DramOp(InstructionOp, ABC):
    """A 2D strided copy between DRAM (a segment plus a byte offset) and a scratchpad:
    `rows` rows of `cols` bytes, `stride` bytes apart in DRAM, contiguous on chip."""

    buf = prop_def(StringAttr)
    sram = prop_def(IntegerAttr[I64])
    seg = prop_def(StringAttr)
    off = prop_def(IntegerAttr[I64])
    rows = prop_def(IntegerAttr[I64])
    cols = prop_def(IntegerAttr[I64])
    stride = prop_def(IntegerAttr[I64])

    QUEUE: ClassVar[str] = "ld"
    FIELDS: ClassVar[Fields] = (("buf", 3), ("sram", 14), ("dram", 32), ("rows", 16), ("cols", 16), ("stride", 24))


_TOKENS = "(`wait` $wait^)? (`signal` $signal^)? attr-dict"


@irdl_op_definition
class LoadOp(_DramOp):
    """DMA from DRAM into a scratchpad (load queue)."""

    name = "accel.ld"
    OPCODE: ClassVar[int] = 2
    assembly_format = "$buf `[` $sram `]` `,` $seg `[` $off `]` `rows` $rows `cols` $cols `stride` $stride " + _TOKENS


@irdl_op_definition
class StoreOp(_DramOp):
    """DMA from a scratchpad (normally acc) to DRAM (store queue)."""

    name = "accel.st"
    OPCODE: ClassVar[int] = 3
    QUEUE: ClassVar[str] = "st"
    assembly_format = "$seg `[` $off `]` `,` $buf `[` $sram `]` `rows` $rows `cols` $cols `stride` $stride " + _TOKENS


@irdl_op_definition
class ConfigOp(InstructionOp):
    """Sets the execute queue's precision and sparsity modes for the GEMMs that follow:
    activation bits (8, or 4 for a bit-split pass) and signedness, the weight code,
    N:M (n = 0 for dense), for sqgemm SQ-format's outliers (`count` of every `group`
    elements of k) and the k-chunks of `chunk` columns its activation tile is stored in,
    and `wzp`: weights are unsigned codes with zero points, `gemm`'s `zp` operand, whose
    rows are `zstride` bytes apart (0: one zero point for every row)."""

    name = "accel.cfg"
    abits = prop_def(IntegerAttr[I64])
    asigned = opt_prop_def(UnitAttr)
    wcode = prop_def(StringAttr)
    n = prop_def(IntegerAttr[I64])
    m = prop_def(IntegerAttr[I64])
    group = prop_def(IntegerAttr[I64])
    count = prop_def(IntegerAttr[I64])
    chunk = prop_def(IntegerAttr[I64])
    wzp = opt_prop_def(UnitAttr)
    zstride = opt_prop_def(IntegerAttr[I64])
    assembly_format = (
        "`abits` $abits (`asigned` $asigned^)? `wcode` $wcode `nm` $n `:` $m `sq` $count `/` $group `chunk` $chunk "
        "(`wzp` $wzp^ `zstride` $zstride)? " + _TOKENS
    )

    OPCODE: ClassVar[int] = 1
    QUEUE: ClassVar[str] = "ex"
    FIELDS: ClassVar[Fields] = (
        ("abits", 4),
        ("asigned", 1),
        ("wcode", 3),
        ("n", 5),
        ("m", 5),
        ("group", 16),
        ("count", 8),
        ("chunk", 16),
        ("wzp", 1),
        ("zstride", 16),
    )

    def verify_(self) -> None:
        super().verify_()
        if self.field("abits") not in (4, 8):
            raise VerifyException("accel.cfg: abits must be 8 or 4")
        n, m = self.field("n"), self.field("m")
        assert isinstance(n, int) and isinstance(m, int)
        if n and not 0 < n < m:
            raise VerifyException(f"accel.cfg: N:M sparsity needs 0 < n < m, got {n}:{m}")


class _GemmOp(InstructionOp, ABC):
    """acc[m, n] (+)= inp[m, k] · wgt[n, k]ᵀ in the configured modes (`init` overwrites)."""

    acc = prop_def(IntegerAttr[I64])
    inp = prop_def(IntegerAttr[I64])
    wgt = prop_def(IntegerAttr[I64])
    m = prop_def(IntegerAttr[I64])
    n = prop_def(IntegerAttr[I64])
    k = prop_def(IntegerAttr[I64])
    init = opt_prop_def(UnitAttr)

    QUEUE: ClassVar[str] = "ex"
    FIELDS: ClassVar[Fields] = (("acc", 14), ("inp", 14), ("wgt", 14), ("m", 16), ("n", 16), ("k", 16), ("init", 1))


_GEMM = "`acc` `[` $acc `]` (`init` $init^)? `,` `inp` `[` $inp `]` `,` `wgt` `[` $wgt `]`"
_SHAPE = "`m` $m `n` $n `k` $k " + _TOKENS


@irdl_op_definition
class GemmOp(_GemmOp):
    """Dense GEMM on the MAC array. With cfg `wzp`, the weights are unsigned codes c and
    the product is x · (c - z)ᵀ, z[n] the byte at scl line `zp` + n * zstride + `zcol`."""

    name = "accel.gemm"
    zp = opt_prop_def(IntegerAttr[I64])
    zcol = opt_prop_def(IntegerAttr[I64])
    OPCODE: ClassVar[int] = 4
    FIELDS: ClassVar[Fields] = (*_GemmOp.FIELDS, ("zp", 14), ("zcol", 12))
    assembly_format = _GEMM + " (`,` `zp` `[` $zp^ `]` `col` $zcol)? " + _SHAPE


@irdl_op_definition
class SparseGemmOp(_GemmOp):
    """N:M GEMM: wgt holds n·k·N/M compressed values, meta their index words."""

    name = "accel.spgemm"
    meta = prop_def(IntegerAttr[I64])
    OPCODE: ClassVar[int] = 5
    FIELDS: ClassVar[Fields] = (*_GemmOp.FIELDS, ("meta", 14))
    assembly_format = _GEMM + " `,` `meta` `[` $meta `]` " + _SHAPE


@irdl_op_definition
class BitSplitGemmOp(_GemmOp):
    """The sparse high-nibble pass of a bit-split product: acc += 16 · hi · wgtᵀ,
    visiting only the elements whose bit in the bitmap at `meta` is set."""

    name = "accel.bsgemm"
    meta = prop_def(IntegerAttr[I64])
    OPCODE: ClassVar[int] = 6
    FIELDS: ClassVar[Fields] = (*_GemmOp.FIELDS, ("meta", 14))
    assembly_format = _GEMM + " `,` `bitmap` `[` $meta `]` " + _SHAPE


@irdl_op_definition
class SQGemmOp(_GemmOp):
    """The high-precision sparse path of SQ-format weights: [n, k] int8 values at wgt
    (`count` per configured group of the dense k), [n, k] u16 positions within the
    group at meta; acc += the activations at those positions (inp, in k-chunks of the
    configured width, each starting a line) times the values."""

    name = "accel.sqgemm"
    meta = prop_def(IntegerAttr[I64])
    OPCODE: ClassVar[int] = 7
    FIELDS: ClassVar[Fields] = (*_GemmOp.FIELDS, ("meta", 14))
    assembly_format = _GEMM + " `,` `index` `[` $meta `]` " + _SHAPE


@irdl_op_definition
class ValuOp(InstructionOp):
    """A vector unit operation over a [rows, cols] tile of 4-byte words (docs/isa.md).
    A broadcast operand is word aux + i * stride of the vector at scl (stride 0 = 1)."""

    name = "accel.valu"
    op = prop_def(StringAttr)
    dst = prop_def(IntegerAttr[I64])
    src = prop_def(IntegerAttr[I64])
    scl = prop_def(IntegerAttr[I64])
    aux = prop_def(IntegerAttr[I64])
    rows = prop_def(IntegerAttr[I64])
    cols = prop_def(IntegerAttr[I64])
    bcast = prop_def(StringAttr)
    stride = prop_def(IntegerAttr[I64])
    assembly_format = (
        "$op `dst` `[` $dst `]` `src` `[` $src `]` `scl` `[` $scl `]` `aux` `[` $aux `]` `rows` $rows `cols` $cols "
        "`bcast` $bcast `stride` $stride " + _TOKENS
    )
    OPCODE: ClassVar[int] = 8
    QUEUE: ClassVar[str] = "ex"
    FIELDS: ClassVar[Fields] = (
        ("op", 4),
        ("dst", 14),
        ("src", 14),
        ("scl", 14),
        ("aux", 14),
        ("rows", 16),
        ("cols", 16),
        ("bcast", 2),
        ("stride", 16),
    )


@irdl_op_definition
class SyncOp(InstructionOp):
    """No work: carries tokens on the given queue."""

    name = "accel.sync"
    on = prop_def(StringAttr)
    assembly_format = "$on " + _TOKENS
    OPCODE: ClassVar[int] = 9
    QUEUE: ClassVar[str] = "ex"
    FIELDS: ClassVar[Fields] = (("queue", 2),)

    @property
    def queue(self) -> str:
        return self.on.data

    def field(self, name: str) -> int | str:
        return self.on.data if name == "queue" else super().field(name)

    def verify_(self) -> None:
        if self.on.data not in QUEUES:
            raise VerifyException(f"accel.sync: unknown queue '{self.on.data}' (expected one of {', '.join(QUEUES)})")
        super().verify_()


@irdl_op_definition
class FenceOp(InstructionOp):
    """Waits until the load and store queues have finished all earlier instructions."""

    name = "accel.fence"
    assembly_format = _TOKENS
    OPCODE: ClassVar[int] = 10
    QUEUE: ClassVar[str] = "ex"
    FIELDS: ClassVar[Fields] = ()


@irdl_op_definition
class FinishOp(InstructionOp):
    """The end of the program."""

    name = "accel.finish"
    assembly_format = _TOKENS
    OPCODE: ClassVar[int] = 11
    QUEUE: ClassVar[str] = "ex"
    FIELDS: ClassVar[Fields] = ()


@irdl_op_definition
class ReadCounterOp(InstructionOp):
    """Writes a performance counter (8 bytes, little endian) to DRAM when the store queue reaches it."""

    name = "accel.rdcnt"
    counter = prop_def(StringAttr)
    seg = prop_def(StringAttr)
    off = prop_def(IntegerAttr[I64])
    assembly_format = "$counter `,` $seg `[` $off `]` " + _TOKENS
    OPCODE: ClassVar[int] = 12
    QUEUE: ClassVar[str] = "st"
    FIELDS: ClassVar[Fields] = (("counter", 4), ("dram", 32))


@irdl_op_definition
class SegmentOp(IRDLOperation):
    """A named region of DRAM: a kernel's input or output buffer, or a temporary."""

    name = "accel.segment"
    sym = prop_def(StringAttr)
    size = prop_def(IntegerAttr[I64])
    kind = prop_def(StringAttr)
    assembly_format = "$sym `size` $size $kind attr-dict"

    def __init__(self, sym: str, size: int, kind: str):
        super().__init__(properties={"sym": StringAttr(sym), "size": _int(size), "kind": StringAttr(kind)})

    def verify_(self) -> None:
        if self.kind.data not in SEGMENT_KINDS:
            raise VerifyException(f"segment kind '{self.kind.data}' is not one of {', '.join(SEGMENT_KINDS)}")
        if self.size.value.data < 0:
            raise VerifyException("a segment's size cannot be negative")


INSTRUCTIONS: tuple[type[InstructionOp], ...] = (
    ConfigOp, LoadOp, StoreOp, GemmOp, SparseGemmOp, BitSplitGemmOp, SQGemmOp, ValuOp, SyncOp, FenceOp, FinishOp,
    ReadCounterOp,
)  # fmt: skip
MNEMONICS = {op.name.removeprefix("accel."): op for op in INSTRUCTIONS}
assert all(sum(b for _, b in HEADER + op.FIELDS) <= INSTRUCTION_BITS for op in INSTRUCTIONS)
DRAM_LIMIT = 1 << dict(LoadOp.FIELDS)["dram"]
"""The DRAM bytes that the `dram` fields address (4 GiB): every segment ends within it."""

Accel = Dialect("accel", [*INSTRUCTIONS, SegmentOp])
