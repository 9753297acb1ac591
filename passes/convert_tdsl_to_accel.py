"""convert-tdsl-to-accel: each tiled kernel becomes an accelerator program.

The function's parameters and results become DRAM segments (a packed parameter
one segment per storage buffer, named `param.role`); each matrix product becomes
loops, unrolled at compile time, of DMA loads, GEMMs on the MAC array, vector unit
epilogues and stores:

    for each row tile of the activations:    (resident: load its rows, all of K, in k-chunks)
      for each column tile of the weights:   load its per-channel scales
        for each k-chunk:                    (ring: load the rows' chunk unless still there)
                                             load values (+ indices, group scales, SQ outliers); GEMM
        epilogue on the vector unit:         scales, bias, activation; store

f32 activations are quantized (and split) by a first pass into DRAM. Every tile has
at least two slots in its scratchpad (accel_operands.arenas), used in turn, so the
next tile loads while the current one is computed on. Activations that do not fit
twice whole live in a ring of k-chunk slots: column tiles walk k in alternate
directions, so each starts with the chunks the previous one left (accel-tile weighs
the weight re-reads of small row tiles against these). The instructions carry no
dependency tokens yet: accel-schedule adds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, FixedBitwidthType, ModuleOp, StringAttr
from xdsl.ir import Block, Region, SSAValue
from xdsl.passes import ModulePass

from stoicc_py.backends.accel.isa import SEGMENT_ALIGN
from stoicc_py.backends.accel.machine import Machine
from stoicc_py.backends.accel.weights import tile_planes
from stoicc_py.codec import hybrid as hybrid_code
from stoicc_py.codec.nm import INDEX_WORD_BYTES, NMCodec
from stoicc_py.codec.sq import HIGH, INDEX, INDEX_BYTES
from stoicc_py.codegen.accel_operands import (
    ACTIVATION_PARTS,
    TILE_TABLE,
    Arena,
    Product,
    analyse,
    arenas,
    chunks,
    lines,
    quantized_rows,
)
from stoicc_py.diagnostics import op_error
from stoicc_py.dialects import accel
from stoicc_py.dialects.accel import GENERATED, InstructionOp, output_segment, temp_segment
from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.tdsl import ContractionOp, QuantizeOp, TensorType
from stoicc_py.passes.accel_tile import MAX_TILE_STEPS

ELEMENT_BYTES = {"f32": 4, "f16": 2, "i8": 1, "i32": 4}
INTEGER_ACTIVATIONS = ("relu",)
SPLIT_SEGMENTS = {"lo": "xlo", "hi": "xhi", "bitmap": "xbm"}  # bit-split parts: the first pass's temp segments


@dataclass
class Emitter:
    """The program being built: segments, instructions and the execute queue's mode."""

    ops: list[accel.InstructionOp | accel.SegmentOp] = field(default_factory=list)
    segments: dict[SSAValue, str] = field(default_factory=dict)
    mode: dict[str, int | str | bool] = field(default_factory=dict)
    dram: int = 0  # where the segments end, placed as Program.of places them

    def __call__(self, instruction: type[InstructionOp], **fields: int | str | bool) -> None:
        self.ops.append(instruction.make(**fields))

    def segment(self, name: str, size: int, kind: str) -> None:
        self.ops.append(accel.SegmentOp(name, size, kind))
        self.dram = -(-self.dram // SEGMENT_ALIGN) * SEGMENT_ALIGN + size

    def config(self, **mode: int | str | bool) -> None:
        full = {"abits": 8, "asigned": True, "wcode": "int8", "n": 0, "m": 0, "group": 0, "count": 0, "chunk": 0,
                **mode}  # fmt: skip
        if full != self.mode:
            self.mode = full
            self(accel.ConfigOp, **full)

    def load(self, buf: str, sram: int, seg: str, off: int, rows: int, cols: int, stride: int) -> None:
        self(accel.LoadOp, buf=buf, sram=sram, seg=seg, off=off, rows=rows, cols=cols, stride=stride)

    def valu(self, op: str, dst: int, src: int = 0, scl: int = 0, aux: int = 0, rows: int = 1, cols: int = 1,
             bcast: str = "none", stride: int = 0) -> None:  # fmt: skip
        self(accel.ValuOp, op=op, dst=dst, src=src, scl=scl, aux=aux, rows=rows, cols=cols, bcast=bcast, stride=stride)


@dataclass
class ProductLowering:
    """The instructions of one matrix product."""

    p: Product
    out: str  # the result's segment
    emit: Emitter
    machine: Machine
    buf: dict[str, Arena] = field(init=False)
    parity: dict[str, int] = field(default_factory=dict)
    ring: dict[tuple[int, int], int] = field(default_factory=dict)  # (row tile, k-chunk) -> slot, least recently used first
    source: str = ""  # the segment of the int8 activations (the first pass's, for f32 ones)

    def __post_init__(self) -> None:
        tm, tn, tk = self.p.op.tile_sizes or (0, 0, 0)
        if not tm:
            raise op_error(self.p.op, "convert-tdsl-to-accel needs tile sizes (run accel-tile first)")
        self.tm, self.tn, self.tk = tm, tn, tk
        layout = arenas(self.p, tm, tn, tk, self.machine)
        self.buf, self.ring_depth = layout.buffers, layout.ring
        full = [name for name, arena in self.buf.items() if not arena.fits]
        if full:
            raise op_error(self.p.op, f"tiles [{tm}, {tn}, {tk}] overflow the {', '.join(full)} scratchpad(s) "
                                      "(at least two slots per tile)")  # fmt: skip
        self.kchunks = chunks(self.p.k, tk)
        steps = len(chunks(self.p.m, tm)) * len(chunks(self.p.n, tn)) * len(self.kchunks)
        if steps > MAX_TILE_STEPS:  # the program is unrolled: its size (and the simulation) grow with it
            raise op_error(self.p.op, f"the accelerator program for [{self.p.m}, {self.p.n}, {self.p.k}] would unroll "
                                      f"{steps} tile products, more than the limit of {MAX_TILE_STEPS}; "
                                      "programs are built per shape: run smaller blocks of rows")  # fmt: skip

    def slot(self, buf: str, region: str, counter: str) -> int:
        return self.buf[buf].slot(region, self.parity.get(counter, 0))

    def chunk_line(self, c: int, rows: int, bytes_per_elem: float) -> int:
        """Line offset of k-chunk c in a chunked tile of `rows` rows."""
        return sum(lines(int(rows * w * bytes_per_elem)) for _, w in self.kchunks[:c])

    def weight_segment(self, role: str) -> str:
        return (
            f"{self.emit.segments[self.p.weights.arg]}.{role}"
            if self.p.weights.storage
            else self.emit.segments[self.p.weights.arg]
        )

    def run(self) -> None:
        source = self.emit.segments[self.p.acts.source]
        if self.p.acts.kind != "i8":
            source = self.quantize_rows(source)
        self.source = source
        for m0, mr in chunks(self.p.m, self.tm):
            if self.ring_depth:  # the chunks load as the column tiles need them
                self.row_scales(m0, mr)
            else:
                self.activations(m0, mr)
            for n0, nr in chunks(self.p.n, self.tn):
                self.column_tile(m0, mr, n0, nr)
                self.parity["n"] = self.parity.get("n", 0) + 1
            self.parity["m"] = self.parity.get("m", 0) + 1

    # ------------------------------------------------------------------ activations

    def quantize_rows(self, source: str) -> str:  # the segment of the int8 codes
        """A first pass over f32 activations: per-token int8 codes (bit-split: their
        nibbles and bitmap) and scales, computed on the vector unit and written to DRAM
        (segments OUT.x*), so that the product's row tiles need not hold f32 rows."""
        e, m, k = self.emit, self.p.m, self.p.k
        split = self.p.acts.kind == "bitsplit"
        parts = {"xlo": (0.5, "inp", "loq"), "xhi": (0.5, "inp", "hiq"), "xbm": (0.125, "meta", "bitmapq")} if split \
            else {"xq": (1, "inp", "xq")}  # fmt: skip
        for name, (size, _, _) in parts.items():
            e.segment(f"{self.out}.{name}", int(m * k * size), "temp")
        e.segment(f"{self.out}.xs", m * 4, "temp")
        for m0, mr in chunks(m, quantized_rows(self.p, self.tm, self.tk, self.machine)):
            stage, x, xs = self.slot("acc", "stage", "q"), self.slot("inp", "xq", "q"), self.slot("scl", "xsq", "q")
            for c, (k0, kw) in enumerate(self.kchunks):
                e.load("acc", stage + self.chunk_line(c, mr, 4), source, (m0 * k + k0) * 4, mr, kw * 4, k * 4)
            e.valu("quant", dst=x, src=stage, scl=xs, aux=self.tk, rows=mr, cols=k)
            for c, (k0, kw) in enumerate(self.kchunks):
                if split:
                    self.split(x, c, mr, kw)
                for name, (size, buf, region) in parts.items():
                    e(accel.StoreOp, buf=buf, sram=self.slot(buf, region, "q") + self.chunk_line(c, mr, size),
                      seg=f"{self.out}.{name}", off=int((m0 * k + k0) * size), rows=mr, cols=int(kw * size),
                      stride=int(k * size))  # fmt: skip
            e(accel.StoreOp, buf="scl", sram=xs, seg=f"{self.out}.xs", off=m0 * 4, rows=1, cols=mr * 4, stride=mr * 4)
            self.parity["q"] = self.parity.get("q", 0) + 1
        return f"{self.out}.xq" if not split else ""

    def split(self, x: int, c: int, rows: int, kw: int) -> None:
        """k-chunk c of the first pass's int8 codes at x into low and high nibbles and the
        high nibbles' bitmap."""
        half, eighth = self.chunk_line(c, rows, 0.5), self.chunk_line(c, rows, 0.125)
        self.emit.valu("split", dst=self.slot("inp", "loq", "q") + half, src=x + self.chunk_line(c, rows, 1),
                       aux=self.slot("inp", "hiq", "q") + half, scl=self.slot("meta", "bitmapq", "q") + eighth,
                       rows=rows, cols=kw)  # fmt: skip

    def part_segment(self, part: str) -> str:
        """The DRAM segment of an activation part (ACTIVATION_PARTS): the int8 codes, or
        the first pass's nibbles and bitmap."""
        return self.source if part == "x" else f"{self.out}.{SPLIT_SEGMENTS[part]}"

    def load_chunk(self, part: str, line: int, m0: int, mr: int, k0: int, kw: int) -> None:
        size, buf = ACTIVATION_PARTS[self.p.acts.kind][part]
        k = self.p.k
        self.emit.load(buf, line, self.part_segment(part), int((m0 * k + k0) * size), mr, int(kw * size), int(k * size))

    def activations(self, m0: int, mr: int) -> None:
        """A resident row tile: its int8 codes (bit-split: nibbles and bitmap), all of K in
        k-chunks, and their scales."""
        for part, (size, buf) in ACTIVATION_PARTS[self.p.acts.kind].items():
            for c, (k0, kw) in enumerate(self.kchunks):
                self.load_chunk(part, self.slot(buf, part, "m") + self.chunk_line(c, mr, size), m0, mr, k0, kw)
        self.row_scales(m0, mr)

    def row_scales(self, m0: int, mr: int) -> None:
        if self.p.acts.kind != "i8":
            self.emit.load("scl", self.slot("scl", "xs", "m"), f"{self.out}.xs", m0 * 4, 1, mr * 4, mr * 4)

    def x_line(self, part: str, c: int, m0: int, mr: int) -> int:
        """Where k-chunk c of the row tile's activation part is: resident, or in the ring,
        loaded there first (into the slot used longest ago, which no GEMM in flight reads) if
        it is not."""
        size, buf = ACTIVATION_PARTS[self.p.acts.kind][part]
        if not self.ring_depth:
            return self.slot(buf, part, "m") + self.chunk_line(c, mr, size)
        chunk = (m0, c)
        if chunk in self.ring:
            self.ring[chunk] = self.ring.pop(chunk)  # the most recently used now
        else:  # all its parts load together
            full = len(self.ring) == self.ring_depth
            self.ring[chunk] = self.ring.pop(next(iter(self.ring))) if full else len(self.ring)
            k0, kw = self.kchunks[c]
            for other in ACTIVATION_PARTS[self.p.acts.kind]:
                self.load_chunk(other, self.x_line(other, c, m0, mr), m0, mr, k0, kw)
        return self.buf[buf].slot(part, self.ring[chunk])

    # ------------------------------------------------------------------ one output tile

    def column_tile(self, m0: int, mr: int, n0: int, nr: int) -> None:
        p, e, w = self.p, self.emit, self.p.weights
        out = self.slot("acc", "out", "n")
        if w.scales in ("channel", "tensor"):
            channel = w.scales == "channel"
            self.scales(self.slot("scl", "ws", "n"), w.prefix + "scales", n0 if channel else 0, 1, nr if channel else 1)
        if w.scales == "group":  # the tile's [nr, groups] scales in one piece
            groups = w.groups(p.k)
            self.scales(self.slot("scl", "gs", "n"), w.prefix + "scales", n0 * groups, nr, groups)
        if w.zero_points:  # the tile's uint8 zero points, as stored: [nr, groups], [nr, 1] or one
            cols = w.scale_columns(p.k)
            size = max(nr * cols, 1)
            e.load("scl", self.slot("scl", "wz", "n"), self.weight_segment(w.prefix + "zero_points"), n0 * cols, 1,
                   size, size)  # fmt: skip
        if w.sq[0]:
            channel = w.sq_scales == "channel"
            self.scales(self.slot("scl", "hs", "n"), HIGH + "scales", n0 if channel else 0, 1, nr if channel else 1)
            slots = p.k // w.sq[0] * w.sq[1]  # whole rows: one contiguous piece each
            e.load("wgt", self.slot("wgt", "hv", "n"), self.weight_segment(HIGH + "values"), n0 * slots, 1, nr * slots,
                   nr * slots)  # fmt: skip
            index = slots * INDEX_BYTES
            e.load("meta", self.slot("meta", "hidx", "n"), self.weight_segment(INDEX), n0 * index, 1, nr * index,
                   nr * index)  # fmt: skip
        if w.tile_formats:
            self.hybrid_row(m0, mr, n0, nr, out)
        else:
            order = list(enumerate(self.kchunks))
            backwards = self.ring_depth and self.parity.get("n", 0) % 2
            for step, (c, (k0, kw)) in enumerate(order[::-1] if backwards else order):
                self.k_step(c, k0, kw, step == 0, m0, mr, n0, nr, out)
                self.parity["k"] = self.parity.get("k", 0) + 1
        if w.sq[0]:
            self.outliers(mr, nr)
        self.epilogue(mr, n0, nr, out)
        e(accel.StoreOp, buf="acc", sram=out, seg=self.out, off=(m0 * p.n + n0) * 4, rows=mr, cols=nr * 4,
          stride=p.n * 4)  # fmt: skip

    def scales(self, slot: int, role: str, first: int, rows: int, cols: int) -> None:
        """rows x cols scales of the weight's buffer `role`, from scale `first`, into scl at
        `slot` as f32: f16 ones (scale=f16) are loaded as stored and widened in place."""
        size, count = self.p.weights.element_bytes(role), rows * cols
        self.emit.load("scl", slot, self.weight_segment(role), first * size, 1, count * size, count * size)
        if size == 2:
            self.emit.valu("half", dst=slot, src=slot, rows=rows, cols=cols)

    def k_step(self, c: int, k0: int, kw: int, first: bool, m0: int, mr: int, n0: int, nr: int, out: int) -> None:
        p, e, w = self.p, self.emit, self.p.weights
        x = {part: self.x_line(part, c, m0, mr) for part in ACTIVATION_PARTS[p.acts.kind]}
        wslot = self.slot("wgt", "w", "k")
        self.load_values(wslot, k0, kw, n0, nr)
        grouped = w.scales == "group"
        target = self.slot("acc", "part", "k") if grouped else out
        shape = {"m": mr, "n": nr, "k": kw, "wgt": wslot, "acc": target, "init": grouped or first}
        if w.nm[0]:
            idx = self.slot("meta", "idx", "k")
            word = INDEX_WORD_BYTES
            e.load("meta", idx, self.weight_segment("indices"), (n0 * w.words + k0 // w.k_align) * word, nr,
                   w.index_words(kw) * word, w.words * word)  # fmt: skip
            e.config(wcode=w.wcode, n=w.nm[0], m=w.nm[1])
            e(accel.SparseGemmOp, inp=x["x"], meta=idx, **shape)
        elif p.acts.kind == "bitsplit":
            e.config(abits=4, asigned=False, wcode=w.wcode)
            e(accel.GemmOp, inp=x["lo"], **shape)
            e(accel.BitSplitGemmOp, inp=x["hi"], meta=x["bitmap"], **{**shape, "init": False})
        elif w.zero_points:  # the zero points of this k-chunk's group (docs/isa.md, "gemm")
            e.config(wcode=w.wcode, wzp=True, zstride=w.scale_columns(p.k))
            e(accel.GemmOp, inp=x["x"], zp=self.slot("scl", "wz", "n"), zcol=k0 // w.group if w.group else 0,
              **shape)  # fmt: skip
        else:
            e.config(wcode=w.wcode)
            e(accel.GemmOp, inp=x["x"], **shape)
        if grouped:  # scale (n, g) is word n * groups + g of the tile's scales
            e.valu("scale" if first else "macc", dst=out, src=target, scl=self.slot("scl", "gs", "n"),
                   aux=k0 // w.group, stride=w.groups(p.k), rows=mr, cols=nr, bcast="col")  # fmt: skip

    def load_values(self, wslot: int, k0: int, kw: int, n0: int, nr: int) -> None:
        """The weight values of k-chunk k0 of rows n0 .. n0 + nr: one DMA per bit plane
        (a stored row holds its planes one after another, the tile too: backends/accel/weights)."""
        w = self.p.weights
        code, row_bytes, width = w.code, w.value_bytes(self.p.k), w.stored(self.p.k)
        first, count = w.stored(k0), w.stored(kw)
        for plane, (line, _) in zip(code.planes, tile_planes(code, nr, count), strict=True):
            self.emit.load("wgt", wslot + line, self.weight_segment(w.prefix + "values"),
                           n0 * row_bytes + plane.start(width) + first * plane.bits // 8, nr, count * plane.bits // 8,
                           row_bytes)  # fmt: skip

    def hybrid_row(self, m0: int, mr: int, n0: int, nr: int, out: int) -> None:
        """One tile row of a hybrid weight, as its table says: per format (as STOICC's
        executor), a GEMM per stored tile; empty tiles cost nothing."""
        e, w = self.emit, self.p.weights
        th, tw = w.tile_shape
        row = n0 // th
        init = True
        for f, (sn, sm) in enumerate(w.tile_formats):
            mine = hybrid_code.table_code(f)
            rank = sum(code == mine for r in w.table[:row] for code in r)  # tiles of format f before this row
            row_bytes, words = _tile_row_bytes(sn, sm, tw)
            for j in (j for j, code in enumerate(w.table[row]) if code == mine):
                # A ragged tile (stored whole, zero-padded) is read up to the matrix's edge: its
                # first nr rows and kw columns (whole groups: the layout's verifier), the x chunk's.
                kw = self.kchunks[j][1]
                cols, used_words = _tile_row_bytes(sn, sm, kw)
                wslot, idx = self.slot("wgt", "w", "k"), self.slot("meta", "idx", "k")
                e.load("wgt", wslot, self.weight_segment(hybrid_code.role(f, "values")), rank * th * row_bytes, nr, cols,
                       row_bytes)  # fmt: skip
                shape = {"acc": out, "init": init, "inp": self.x_line("x", j, m0, mr),
                         "wgt": wslot, "m": mr, "n": nr, "k": kw}  # fmt: skip
                if sn:
                    e.load("meta", idx, self.weight_segment(hybrid_code.role(f, "indices")), rank * th * words, nr,
                           used_words, words)  # fmt: skip
                    e.config(n=sn, m=sm)
                    e(accel.SparseGemmOp, meta=idx, **shape)
                else:
                    e.config()
                    e(accel.GemmOp, **shape)
                init, rank = False, rank + 1
                self.parity["k"] = self.parity.get("k", 0) + 1
        if init:  # an all-empty tile row: a GEMM over k = 0 zeroes the accumulator
            e.config()
            e(accel.GemmOp, acc=out, init=True, inp=0, wgt=0, m=mr, n=nr, k=0)

    def outliers(self, mr: int, nr: int) -> None:
        """SQ-format's outliers of the whole tile row in one gather GEMM."""
        e, w = self.emit, self.p.weights
        group, count = w.sq
        e.config(count=count, group=group, chunk=self.tk)
        e(accel.SQGemmOp, acc=self.slot("acc", "hacc", "n"), init=True, inp=self.slot("inp", "x", "m"),
          wgt=self.slot("wgt", "hv", "n"), meta=self.slot("meta", "hidx", "n"), m=mr, n=nr,
          k=self.p.k // group * count)  # fmt: skip

    # ------------------------------------------------------------------ epilogue

    def epilogue(self, mr: int, n0: int, nr: int, out: int) -> None:
        p, e, w = self.p, self.emit, self.p.weights
        if not p.integer:
            if w.scales in ("channel", "tensor"):
                bcast = "col" if w.scales == "channel" else "scalar"
                e.valu("scale", dst=out, src=out, scl=self.slot("scl", "ws", "n"), bcast=bcast, rows=mr, cols=nr)
            elif w.scales == "none":
                e.valu("cvt", dst=out, src=out, rows=mr, cols=nr)
            if w.sq[0]:
                bcast = "col" if w.sq_scales == "channel" else "scalar"
                e.valu("macc", dst=out, src=self.slot("acc", "hacc", "n"), scl=self.slot("scl", "hs", "n"),
                       bcast=bcast, rows=mr, cols=nr)  # fmt: skip
            e.valu("mul", dst=out, src=out, scl=self.slot("scl", "xs", "m"), bcast="row", rows=mr, cols=nr)
        if p.op.bias is not None:
            bias = self.slot("scl", "bias", "n")
            e.load("scl", bias, self.emit.segments[p.op.bias], n0 * 4, 1, nr * 4, nr * 4)
            e.valu("addi" if p.integer else "add", dst=out, src=out, scl=bias, bcast="col", rows=mr, cols=nr)
        act = p.op.activation
        if act == "relu":
            e.valu("maxi" if p.integer else "max", dst=out, src=out, rows=mr, cols=nr)
        elif act is not None:
            e.valu(act, dst=out, src=out, rows=mr, cols=nr)


def _nbytes(t: TensorType) -> int:
    size = ELEMENT_BYTES[t.dtype]
    for d in t.dims:
        size *= int(d)
    return size


def _declare_inputs(fn: func.FuncOp, emit: Emitter) -> None:
    for i, (arg, t) in enumerate(zip(fn.args, fn.function_type.inputs)):
        assert isinstance(t, TensorType)
        attrs = fn.arg_attrs.data[i].data if fn.arg_attrs else {}
        given = attrs.get("tdsl.name")
        name = given.data if isinstance(given, StringAttr) else f"{GENERATED}arg{i}"
        emit.segments[arg] = name
        storage = attrs.get("tdsl.storage")
        if not isinstance(storage, StorageAttr):
            if not all(isinstance(d, int) for d in t.dims):
                raise op_error(fn, "accel programs need static shapes: bind every size symbol (--dim M=...)")
            emit.segment(name, _nbytes(t), "input")
            continue
        counts = _tile_counts(attrs.get(TILE_TABLE))
        for b in storage.buffers.data:
            role = b.role.data
            shape = [counts.get(role, d) if d < 0 else d for d in b.type.get_shape()]
            if min(shape) < 0:
                raise op_error(fn, f"parameter '{name}' in layout {t.layout.summary()} has buffers whose size is "
                                   "known only once packed; the accel target needs static sizes")  # fmt: skip
            count = 1
            for d in shape:
                count *= d
            element = b.type.element_type
            assert isinstance(element, FixedBitwidthType)
            emit.segment(f"{name}.{role}", count * element.bitwidth // 8, "input")


def _tile_row_bytes(n: int, m: int, cols: int) -> tuple[int, int]:
    """Bytes of the values and of the index words of `cols` columns of a hybrid tile's row,
    i8 (n = 0: a dense tile)."""
    if not n:
        return cols, 0
    code = NMCodec(n, m, cols)
    return code.slots, code.words * INDEX_WORD_BYTES


def _tile_counts(table: object) -> dict[str, int]:
    """The stored tiles of each hybrid format's dynamic buffers (role -> count), from a tile table."""
    if not isinstance(table, DenseArrayBase):
        return {}
    codes = [int(v) for v in table.get_values()]
    return {hybrid_code.role(f, name): codes.count(hybrid_code.table_code(f))
            for f in range(max(codes, default=0) + 8) for name in ("cols", "values", "indices")}  # fmt: skip


def _check_dram(fn: func.FuncOp, emit: Emitter, machine: Machine) -> None:
    if emit.dram > machine.dram.capacity_bytes:
        raise op_error(fn, f"the accelerator program's segments span {emit.dram} bytes of DRAM, more than the "
                           f"machine's {machine.dram.capacity} MiB (dram.capacity)")  # fmt: skip


def _check_dtypes(fn: func.FuncOp) -> None:
    """A located error for a tensor whose dtype the accelerator has no elements of (bf16, bool)."""
    for op in fn.walk():
        for t in (*op.result_types, *(fn.function_type.inputs if op is fn else ())):
            if isinstance(t, TensorType) and t.dtype not in ELEMENT_BYTES:
                raise op_error(op, f"{t.dtype} tensors are not supported on the accel target "
                                   f"(only {', '.join(ELEMENT_BYTES)})")  # fmt: skip


def lower_function(fn: func.FuncOp, machine: Machine) -> func.FuncOp:
    emit = Emitter()
    _check_dtypes(fn)
    _declare_inputs(fn, emit)
    returned = fn.body.block.last_op
    assert isinstance(returned, func.ReturnOp)
    outputs = {value: output_segment(i) for i, value in enumerate(returned.arguments)}
    for value, name in outputs.items():
        assert isinstance(value.type, TensorType)
        emit.segment(name, _nbytes(value.type), "output")
    _check_dram(fn, emit, machine)  # before unrolling the products: the parameters may already be too large
    temps = 0
    for op in fn.body.block.ops:
        if isinstance(op, ContractionOp):
            assert op.result is not None
            segment = outputs.get(op.result)
            if segment is None:
                segment = temp_segment(temps)
                temps += 1
                assert isinstance(op.result.type, TensorType)
                emit.segment(segment, _nbytes(op.result.type), "temp")
            emit.segments[op.result] = segment
            ProductLowering(analyse(op), segment, emit, machine).run()
        elif isinstance(op, QuantizeOp):
            if any(not isinstance(use.operation, ContractionOp) or use.index != 0 for use in op.result.uses):  # type: ignore[union-attr]
                raise op_error(op, "on the accel target a quantize must feed the activations of a matrix product")
        elif not isinstance(op, func.ReturnOp):
            raise op_error(op, f"'{op.name}' is not supported on the accel target, which runs matrix products "
                               "with their epilogues (scales, bias, activation)")  # fmt: skip
    for value in returned.arguments:
        if value not in emit.segments or isinstance(value.owner, Block):
            raise op_error(returned, "on the accel target a kernel returns the results of matrix products")
    _check_dram(fn, emit, machine)
    emit(accel.FinishOp)
    body = Block()
    body.add_ops([*emit.ops, func.ReturnOp()])
    return func.FuncOp(fn.sym_name.data, ((), ()), Region(body))


@dataclass(frozen=True)
class ConvertTdslToAccel(ModulePass):
    name = "convert-tdsl-to-accel"

    machine: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        machine = Machine.load(self.machine or None)
        for fn in list(op.ops):
            if isinstance(fn, func.FuncOp):
                op.body.block.insert_op_before(lower_function(fn, machine), fn)
                op.body.block.erase_op(fn)
