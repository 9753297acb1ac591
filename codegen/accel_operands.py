"""What the accelerator needs to know about a matrix product: the form of its
activations and weights (read from the types and the storage that metadata-layout
recorded) and how its tiles lay out in the scratchpads. accel-tile and
convert-tdsl-to-accel both read this, so the tiles they agree on always fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from xdsl.dialects.builtin import DenseArrayBase, FixedBitwidthType, IntegerType
from xdsl.ir import Attribute, BlockArgument, SSAValue

from stoicc_py.backends.accel.machine import Machine
from stoicc_py.backends.accel.weights import tile_bytes, weight_code
from stoicc_py.codec.nm import INDEX_WORD_BYTES, NMCodec
from stoicc_py.codec.sq import INDEX_BYTES, LOW
from stoicc_py.codec.uniform import CodeBits
from stoicc_py.diagnostics import CompileError, op_error
from stoicc_py.dialects.accel import LINE_BYTES, WEIGHT_CODES
from stoicc_py.dialects.layout import ComposedLayoutAttr, DenseLayoutAttr, StorageAttr
from stoicc_py.dialects.quant import BitSplitAttr, SQAttr, UniformQuantAttr
from stoicc_py.dialects.sparse import HybridAttr, NMAttr
from stoicc_py.dialects.tdsl import ContractionOp, QuantizeOp, TensorType


def lines(nbytes: int) -> int:
    return -(-nbytes // LINE_BYTES)


@dataclass(frozen=True)
class Activations:
    """`i8`: int8 codes in DRAM; `token`: f32 rows quantized per token on chip;
    `bitsplit`: the same, then split into nibbles for the two bit-split passes."""

    kind: str
    source: SSAValue  # the DRAM tensor the rows come from


@dataclass(frozen=True)
class Weights:
    """The weight operand's storage, as the accelerator reads it (roles of tdsl.storage)."""

    arg: BlockArgument
    storage: StorageAttr | None
    wcode: str = "int8"
    bits: int = 8
    nm: tuple[int, int] = (0, 0)
    words: int = 0  # index words per row (hybrid: per row of a tile, the most of any N:M format)
    scales: str = "none"  # none, tensor, channel or group
    zero_points: bool = False  # asymmetric: unsigned codes with uint8 zero points in the scales' shape
    group: int = 0  # dense k per scale group (scales == "group")
    prefix: str = ""  # LOW for SQ-format weights
    sq: tuple[int, int] = (0, 0)  # (group, count) of SQ-format's high part
    sq_scales: str = "none"
    tile_formats: tuple[tuple[int, int], ...] = ()  # hybrid: per format, (N, M) or (0, 0) for dense
    tile_shape: tuple[int, int] = (0, 0)
    table: tuple[tuple[int, ...], ...] = ()  # hybrid: the weight's tile table (0 = empty, 1 + f)

    def element_bytes(self, role: str) -> int:
        """Bytes per element of the storage buffer `role` (scales: 4 for f32, 2 for f16)."""
        assert self.storage is not None
        buffer = next(b for b in self.storage.buffers.data if b.role.data == role)
        element = buffer.type.element_type
        assert isinstance(element, FixedBitwidthType)  # storage buffers hold integers or floats
        return element.bitwidth // 8

    @property
    def stored_k_per_k(self) -> float:
        return self.nm[0] / self.nm[1] if self.nm[0] else 1.0

    @property
    def code(self) -> CodeBits:
        return weight_code(self.wcode, self.zero_points)

    def stored(self, k: int) -> int:
        """Stored values of k dense columns of one row."""
        return int(k * self.stored_k_per_k)

    def value_bytes(self, k: int) -> int:
        """Bytes of the stored values of k dense columns of one row."""
        return self.stored(k) * self.bits // 8

    def value_tile_bytes(self, n: int, k: int) -> int:
        """Bytes of the values of an [n, k] tile in the wgt scratchpad (bit planes each starting a line)."""
        return tile_bytes(self.code, n, self.stored(k))

    def groups(self, k: int) -> int:
        """Scale groups of a row of k dense columns (scales == "group"): the last may hold fewer."""
        return -(-k // self.group)

    def scale_columns(self, k: int) -> int:
        """Scales (and zero points) per weight row of k dense columns, the stride from one
        row's to the next's: the groups, 1 per channel, 0 per tensor (one shared by all rows)."""
        if self.scales == "group":
            return self.groups(k)
        return 1 if self.scales == "channel" else 0

    def nm_code(self, k: int) -> NMCodec:
        """The N:M code of rows of k dense columns (an nm weight's, or a k-chunk's)."""
        return NMCodec(*self.nm, k)

    def index_words(self, k: int) -> int:
        return self.nm_code(k).words if self.nm[0] else 0

    @property
    def k_align(self) -> int:
        """k-chunks start where stored values and index words start whole bytes and words."""
        if self.nm[0]:
            return self.nm_code(0).word_cols
        return self.code.unit * 8


@dataclass(frozen=True)
class Product:
    op: ContractionOp
    acts: Activations
    weights: Weights
    m: int
    n: int
    k: int

    @property
    def integer(self) -> bool:
        """An exact i8 x i8 -> i32 product (no scales anywhere)."""
        return self.acts.kind == "i8"


def analyse(op: ContractionOp) -> Product:
    lhs, rhs = op.lhs.type, op.rhs.type
    assert isinstance(lhs, TensorType) and isinstance(rhs, TensorType)
    if not op.RHS_TRANSPOSED:
        raise op_error(
            op, "the accel target reads weights as [N, K] rows: write matmul(x, transpose(w)) or linear(x, w)"
        )
    if not all(isinstance(d, int) for d in (*lhs.dims, *rhs.dims)):
        raise op_error(op, "accel programs need static shapes: bind every size symbol (--dim M=...)")
    if lhs.rank != 2 or rhs.rank != 2:
        raise op_error(op, f"the accel target multiplies rank-2 matrices, got {lhs} and {rhs}")
    (m, k), (n, _) = lhs.dims, rhs.dims
    # The weights first: a weight the accelerator cannot read also stops tdsl-fuse-dequant
    # from folding quantized activations into the product, which would look like bad activations.
    weights = _weights(op)
    acts = _activations(op)
    if acts.kind == "bitsplit" and (weights.nm[0] or weights.sq[0] or weights.tile_formats):
        raise op_error(op, "on the accel target bit-split activations multiply dense or uniformly quantized weights")
    if acts.kind == "bitsplit" and weights.zero_points:
        raise op_error(op, "on the accel target bit-split activations multiply symmetric weights: the sparse "
                           "high-nibble pass (bsgemm) has no zero-point operand")  # fmt: skip
    return Product(op, acts, weights, int(m), int(n), int(k))


def _activations(op: ContractionOp) -> Activations:
    lhs = op.lhs
    t = lhs.type
    assert isinstance(t, TensorType)
    if (
        isinstance(t.layout, DenseLayoutAttr)
        and isinstance(t.element_type, IntegerType)
        and t.element_type.width.data == 8
    ):
        return Activations("i8", lhs)
    owner = lhs.owner
    if isinstance(owner, QuantizeOp):
        layout = owner.layout
        if (
            isinstance(layout, UniformQuantAttr)
            and layout.codes.data == "int8"
            and layout.per.data == "token"
            and layout.is_symmetric
        ):
            return Activations("token", owner.input)
        if isinstance(layout, BitSplitAttr):
            if layout.offset.data:
                raise op_error(
                    owner,
                    "the accel target splits bit-split activations without the offset transform (use offset=false)",
                )
            return Activations("bitsplit", owner.input)
    raise op_error(op, "the accelerator multiplies integers: its activations must be i8, or f32 quantized "
                       "with quantize(x, int8(per=token)) or quantize(x, bitsplit(int8))")  # fmt: skip


def _uniform(q: UniformQuantAttr, op: ContractionOp, k_scale: float) -> _Fields:
    if q.codes.data not in WEIGHT_CODES:
        raise op_error(op, f"the accel target reads weight codes {', '.join(WEIGHT_CODES)}, not {q.codes.data}")
    per = q.per.data
    if per == "channel" and q.axis.data != 0:
        raise op_error(op, "the accel target scales weights per output channel (axis=0), per group or per tensor")
    if q.float_offset:  # the GEMMs' integer products have a zero-point operand, not a float offset
        raise op_error(op, f"the accel target has no float zero ({q.summary()}): use symmetric=false, an "
                           "integer zero point")  # fmt: skip
    scales = {"tensor": "tensor", "channel": "channel", "group": "group"}.get(per)
    if scales is None:
        raise op_error(op, f"weights quantized per {per} are not supported on the accel target")
    return {"wcode": q.codes.data, "bits": q.bits, "scales": scales, "group": int(q.group.data * k_scale),
            "zero_points": not q.is_symmetric}  # fmt: skip


class _Fields(TypedDict, total=False):
    """Weights' fields that a layout's reader sets (its keyword arguments)."""

    wcode: str
    bits: int
    nm: tuple[int, int]
    words: int
    scales: str
    zero_points: bool
    group: int
    tile_formats: tuple[tuple[int, int], ...]
    tile_shape: tuple[int, int]
    table: tuple[tuple[int, ...], ...]


def _weights(op: ContractionOp) -> Weights:
    rhs = op.rhs
    if not isinstance(rhs, BlockArgument):
        raise op_error(op, "the accel target reads weights from a kernel parameter")
    t = rhs.type
    assert isinstance(t, TensorType)
    layout = t.layout
    if isinstance(layout, DenseLayoutAttr):
        _check_i8(op, t)
        return Weights(rhs, None)
    storage = _storage_of(rhs)
    if isinstance(layout, NMAttr):
        _check_i8(op, t)
        _check_m(op, layout)
        return Weights(rhs, storage, **_nm(layout, t))
    if isinstance(layout, UniformQuantAttr):
        return Weights(rhs, storage, **_uniform(layout, op, 1))
    if isinstance(layout, ComposedLayoutAttr) and isinstance(layout.sparse, NMAttr):
        assert isinstance(layout.quant, UniformQuantAttr)
        _check_m(op, layout.sparse)
        if not layout.quant.is_symmetric:
            raise op_error(op, "the accel target runs N:M weights with symmetric codes: the sparse GEMM (spgemm) "
                               "has no zero-point operand (use symmetric=true, or a dense quantized layout)")  # fmt: skip
        nm = _nm(layout.sparse, t)
        scale = layout.sparse.m.data / layout.sparse.n.data  # quant groups count stored values
        return Weights(rhs, storage, **(nm | _uniform(layout.quant, op, scale)))  # disjoint fields
    if isinstance(layout, HybridAttr):
        _check_i8(op, t)
        return Weights(rhs, storage, **_hybrid(layout, storage, rhs, op))
    if isinstance(layout, SQAttr):
        low = _uniform(layout.low, op, 1)
        high = layout.high.per.data
        return Weights(rhs, storage, prefix=LOW, sq=(layout.group.data, layout.count.data),
                       sq_scales="tensor" if high == "tensor" else "channel", **low)  # fmt: skip
    raise op_error(op, f"weights in layout {layout.summary()} are not supported on the accel target "
                       "(supported: dense, nm, int8 ... binary, nm with a symmetric quantized type, sq)")  # fmt: skip


TILE_TABLE = "accel.tile_table"
"""The argument attribute that specialises a program on a hybrid weight's tile table."""


def _hybrid(layout: HybridAttr, storage: StorageAttr, arg: BlockArgument, op: ContractionOp) -> _Fields:
    table = _arg_attrs(arg).get(TILE_TABLE)
    if not isinstance(table, DenseArrayBase):
        raise op_error(op, "a hybrid weight's program follows its tile table: give the weight (stoicc compile "
                           "--weight NAME=FILE.npy), call the kernel with it (Python API) or use `stoicc sim`")  # fmt: skip
    th, tw = layout.tile_shape
    cols = int(storage.buffers.data[0].type.get_shape()[1])
    flat = tuple(int(v) for v in table.get_values())
    formats = tuple((f.n.data, f.m.data) if isinstance(f, NMAttr) else (0, 0) for f in layout.formats.data)
    words = max((fmt.codec(layout.tile_shape).words for fmt in layout.nm_formats.values()), default=0)
    return {"tile_formats": formats, "tile_shape": (th, tw), "words": words,
            "table": tuple(flat[r : r + cols] for r in range(0, len(flat), cols))}  # fmt: skip


def _arg_attrs(arg: BlockArgument) -> dict[str, Attribute]:
    fn = arg.owner.parent_op()
    attrs = getattr(fn, "arg_attrs", None)
    return dict(attrs.data[arg.index].data) if attrs else {}


def _check_m(op: ContractionOp, layout: NMAttr) -> None:
    if layout.m.data > MAX_M:
        raise op_error(op, f"the accelerator's N:M mode takes M up to {MAX_M}, not {layout.m.data}")


def _check_i8(op: ContractionOp, t: TensorType) -> None:
    if not (isinstance(t.element_type, IntegerType) and t.element_type.width.data == 8):
        raise op_error(
            op, f"the accelerator multiplies integers: weights of type {t.dtype} need a quantized layout or i8"
        )


MAX_M = 31
"""cfg's m field has 5 bits."""


def _nm(layout: NMAttr, t: TensorType) -> _Fields:
    width = t.dims[-1]
    assert isinstance(width, int)  # the storage exists, so the weight's shape is static
    return {"nm": (layout.n.data, layout.m.data), "words": layout.codec([width]).words}


def _storage_of(arg: BlockArgument) -> StorageAttr:
    storage = _arg_attrs(arg).get("tdsl.storage")
    if not isinstance(storage, StorageAttr):
        raise CompileError("accel lowering needs metadata-layout to have run (no tdsl.storage on a packed parameter)")
    return storage


# ---------------------------------------------------------------------------- scratchpad layout


@dataclass
class Arena:
    """Regions of one scratchpad, each with `depth` slots used in turn (two: ping and
    pong), in lines. Regions of different phases (the first pass over activations,
    the product) overlap: the phases run one after the other."""

    capacity: int
    regions: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # name -> (base, lines per slot, depth)
    used: dict[str, int] = field(default_factory=dict)  # phase -> lines

    def add(self, name: str, nbytes: int, depth: int = 2, phase: str = "product") -> None:
        size = lines(nbytes)
        if size:
            base = self.used.get(phase, 0)
            self.regions[name] = (base, size, depth)
            self.used[phase] = base + depth * size

    def slot(self, name: str, turn: int) -> int:
        base, size, depth = self.regions[name]
        return base + (turn % depth) * size

    @property
    def fits(self) -> bool:
        return max(self.used.values(), default=0) <= self.capacity


def chunks(k: int, tk: int) -> list[tuple[int, int]]:
    """The k-chunks (start, width) of a row."""
    return [(k0, min(tk, k - k0)) for k0 in range(0, k, tk)]


def chunked_lines(rows: int, k: int, tk: int, bytes_per_elem: float) -> int:
    """Lines of a tile of `rows` rows stored as k-chunks, each chunk starting a line."""
    return sum(lines(int(rows * w * bytes_per_elem)) for _, w in chunks(k, tk))


def quantized_rows(p: Product, tm: int, tk: int, machine: Machine) -> int:
    """Rows per tile of the first pass over f32 activations: the most (up to tm) whose
    tiles fit the scratchpads."""
    rows = tm
    while rows > 1 and not all(a.fits for a in _first_pass(_empty(machine), p, rows, tk).values()):
        rows = -(-rows // 2)
    return rows


def _empty(machine: Machine) -> dict[str, Arena]:
    return {name: Arena(machine.buffers.bytes(name) // LINE_BYTES) for name in ("inp", "wgt", "acc", "meta", "scl")}


def _first_pass(buf: dict[str, Arena], p: Product, rows: int, tk: int) -> dict[str, Arena]:
    """The first pass's tiles: f32 rows staged, their codes (bit-split: nibbles, bitmap), scales."""
    first = "first pass"
    buf["acc"].add("stage", chunked_lines(rows, p.k, tk, 4) * LINE_BYTES, phase=first)
    buf["inp"].add("xq", chunked_lines(rows, p.k, tk, 1) * LINE_BYTES, phase=first)
    buf["scl"].add("xsq", rows * 4, phase=first)
    if p.acts.kind == "bitsplit":
        buf["inp"].add("loq", chunked_lines(rows, p.k, tk, 0.5) * LINE_BYTES, phase=first)
        buf["inp"].add("hiq", chunked_lines(rows, p.k, tk, 0.5) * LINE_BYTES, phase=first)
        buf["meta"].add("bitmapq", chunked_lines(rows, p.k, tk, 0.125) * LINE_BYTES, phase=first)
    return buf


STREAM_DEPTH = 4
"""Slots for the tiles loaded every k-step (weights, indices, partial sums) when they
fit: two more loads in flight hide the DRAM latency behind small tiles."""

ACTIVATION_PARTS: dict[str, dict[str, tuple[float, str]]] = {
    "i8": {"x": (1, "inp")}, "token": {"x": (1, "inp")},
    "bitsplit": {"lo": (0.5, "inp"), "hi": (0.5, "inp"), "bitmap": (0.125, "meta")},
}  # fmt: skip
"""The scratchpad regions a row tile of activations occupies: name -> (bytes per element, buffer)."""


@dataclass
class Layout:
    """Where a product's tiles live. Activations are either resident (`ring` 0: two slots
    of a whole [tm, K] row tile, loaded once per row tile and read by every column tile)
    or a ring of `ring` slots of one [tm, tk] k-chunk each, loaded on demand (a column
    tile finds the chunks the previous one left; convert-tdsl-to-accel walks k in
    alternate directions so the last ones stay)."""

    buffers: dict[str, Arena]
    ring: int
    out_depth: int  # slots of the [tm, tn] output tile: 2 lets a store overlap the next tile

    @property
    def fits(self) -> bool:
        return all(a.fits for a in self.buffers.values())


def arenas(p: Product, tm: int, tn: int, tk: int, machine: Machine) -> Layout:
    """Where every tile of a product with tiles [tm, tn, tk] lives, the first that fits of:
    output tiles with two slots, then one; k-step tiles with STREAM_DEPTH slots, then two;
    activations resident, then (not for SQ-format or hybrid weights, which read any chunk
    of the row) in a ring as deep as the activation scratchpads allow."""
    layout = Layout({}, 0, 0)
    for out_depth in (2, 1):
        for depth in (STREAM_DEPTH, 2):
            layout = Layout(_arenas(p, tm, tn, tk, machine, depth, out_depth, 0), 0, out_depth)
            if layout.fits:
                return layout
            if p.weights.sq[0] or p.weights.tile_formats:
                continue
            ring = _deepest_ring(p, tm, tn, tk, machine, depth, out_depth)
            if ring:
                return Layout(_arenas(p, tm, tn, tk, machine, depth, out_depth, ring), ring, out_depth)
    return layout


def _deepest_ring(p: Product, tm: int, tn: int, tk: int, machine: Machine, depth: int, out_depth: int) -> int:
    """The most k-chunk slots (at least 2, at most the chunks of a row) that fit beside the
    other tiles; 0 if two do not."""
    buf = _arenas(p, tm, tn, tk, machine, depth, out_depth, 2)
    if not all(a.fits for a in buf.values()):
        return 0
    parts = ACTIVATION_PARTS[p.acts.kind]
    extra = 1 << 30
    for buffer in {b for _, b in parts.values()}:
        arena = buf[buffer]
        per_slot = sum(arena.regions.get(name, (0, 0, 0))[1] for name, (_, b) in parts.items() if b == buffer)
        if per_slot:
            extra = min(extra, (arena.capacity - arena.used["product"]) // per_slot)
    return min(2 + extra, len(chunks(p.k, tk)))


def _arenas(p: Product, tm: int, tn: int, tk: int, machine: Machine, depth: int, out_depth: int,
            ring: int) -> dict[str, Arena]:  # fmt: skip
    buf = _empty(machine)
    w = p.weights
    for name, (size, buffer) in ACTIVATION_PARTS[p.acts.kind].items():
        if ring:
            buf[buffer].add(name, lines(int(tm * tk * size)) * LINE_BYTES, ring)
        else:
            buf[buffer].add(name, chunked_lines(tm, p.k, tk, size) * LINE_BYTES)
    if p.acts.kind != "i8":
        _first_pass(buf, p, quantized_rows(p, tm, tk, machine), tk)
        buf["scl"].add("xs", tm * 4)
    if w.tile_formats:  # one tile, in its densest format
        buf["wgt"].add("w", tn * tk, depth)
        buf["meta"].add("idx", tn * w.words * INDEX_WORD_BYTES, depth)
    else:
        buf["wgt"].add("w", w.value_tile_bytes(tn, tk), depth)
        buf["meta"].add("idx", tn * w.index_words(tk) * INDEX_WORD_BYTES, depth)
    if w.sq[0]:  # a tile's outliers, whole rows
        slots = p.k // w.sq[0] * w.sq[1]
        buf["wgt"].add("hv", tn * slots)
        buf["meta"].add("hidx", tn * slots * INDEX_BYTES)
        buf["acc"].add("hacc", tm * tn * 4)
        buf["scl"].add("hs", tn * 4)
    buf["acc"].add("out", tm * tn * 4, out_depth)
    if w.scales == "group":
        buf["acc"].add("part", tm * tn * 4, depth)
        buf["scl"].add("gs", tn * w.groups(p.k) * 4)
    buf["scl"].add("ws", tn * 4)
    if w.zero_points:  # the tile's uint8 zero points, [tn, groups] (per tensor: one)
        buf["scl"].add("wz", max(tn * w.scale_columns(p.k), 1))
    buf["scl"].add("bias", tn * 4)
    return buf
