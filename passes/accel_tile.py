"""accel-tile: choose each matrix product's tiles [tm, tn, tk] with a cost model, among
those whose tiles, in all their slots, fit the accelerator's scratchpads.

tk is a weight scale group when scales are per group (one rescale per GEMM), else
up to 1024 (sums of int8 products stay exact in the simulator's float32 BLAS) and
a multiple of the weight's k alignment (whole bytes of codes, whole index words);
half and a quarter of that are candidates too. tm (up to 2048 rows) and tn (up to
1024 channels) are halvings of the product's sizes. Each candidate's layout
(accel_operands.arenas: resident activations or a ring of k-chunks, one or two output
slots) gives its DRAM traffic: the weights once per row tile, the activations once
per row tile plus the chunks a column tile finds gone, the outputs once; and its
time: the array's cycles (Machine.array_pass) against that traffic over the DRAM
bandwidth, plus the stores a single output slot leaves exposed (f32 activations add
their first pass: f32 rows in, int8 codes and row scales out). The candidate of the
least energy-delay product wins (energy: DRAM bytes, MACs, the scratchpad traffic of
the GEMMs, accumulators above all, and static power); the
choice is reported as a remark (`stoicc compile --target accel --remarks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, FixedBitwidthType, ModuleOp, i64
from xdsl.passes import ModulePass

from stoicc_py.backends.accel.machine import Machine
from stoicc_py.codec.nm import INDEX_WORD_BYTES
from stoicc_py.codegen.accel_operands import ACTIVATION_PARTS, Layout, Product, analyse, arenas, chunks
from stoicc_py.codegen.remarks import REMARK, log
from stoicc_py.diagnostics import SourceLoc, op_error
from stoicc_py.dialects.tdsl import ContractionOp

MAX_TM, MAX_TN, MAX_TK = 2048, 1024, 1024
MAX_TILE_STEPS = 2**14  # tile products per matrix product, unrolled: ~1.5 ms each to build, more to simulate


def _k_tile(p: Product) -> int:
    w = p.weights
    if w.scales == "group":
        tk = w.group
    else:
        step = max(w.k_align, w.sq[0])
        tk = min(p.k, max(MAX_TK // step, 1) * step)
    if tk % w.k_align and tk != p.k:
        raise op_error(p.op, f"k-tiles of {tk} do not start on whole index words or bytes of this weight "
                             f"(a multiple of {w.k_align} is needed)")  # fmt: skip
    return tk


def _k_tiles(p: Product) -> list[int]:
    """tk, and its halvings down to 128 where they keep its alignment (more, smaller chunks:
    larger row and column tiles fit, and a ring holds more of a row)."""
    tk = _k_tile(p)
    if p.weights.scales == "group" or p.weights.tile_formats:
        return [tk]
    step = max(p.weights.k_align, p.weights.sq[0], 1)
    return [tk] + [t for t in (tk // 2, tk // 4, tk // 8) if t >= 128 and t % step == 0]


def _halvings(start: int) -> list[int]:
    sizes = [start]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // 2))
    return sizes


@dataclass(frozen=True)
class Estimate:
    """What the cost model expects of a product's tiles."""

    tiles: tuple[int, int, int]
    layout: Layout
    dram_bytes: int
    compulsory: int  # every operand byte read and every result byte written once
    weight_reads: int  # times the weights are read from DRAM
    cycles: int
    energy_pj: float

    @property
    def cost(self) -> float:
        return self.cycles * self.energy_pj


def _weight_bytes(p: Product) -> int:
    """The packed weight's bytes: every storage buffer (values, indices, scales, zero points,
    outliers), or, unpacked or hybrid (whose buffers' sizes depend on its table), values and indices."""
    w = p.weights
    if w.storage is None or w.tile_formats:
        return p.n * (w.value_bytes(p.k) + w.index_words(p.k) * INDEX_WORD_BYTES)
    total = 0
    for buffer in w.storage.buffers.data:
        element = buffer.type.element_type
        assert isinstance(element, FixedBitwidthType)
        total += math.prod(buffer.type.get_shape()) * element.bitwidth // 8
    return total


def estimate(p: Product, tm: int, tn: int, tk: int, layout: Layout, machine: Machine) -> Estimate:
    w = p.weights
    row_tiles, column_tiles, k_chunks = len(chunks(p.m, tm)), len(chunks(p.n, tn)), len(chunks(p.k, tk))
    weights = _weight_bytes(p)
    acts = int(p.m * p.k * sum(size for size, _ in ACTIVATION_PARTS[p.acts.kind].values()))
    source = p.m * p.k * (1 if p.acts.kind == "i8" else 4)  # the kernel's activations as given
    first_pass = 0 if p.acts.kind == "i8" else source + acts + p.m * 8  # f32 rows in; codes and row scales out, in
    lost = max(0, k_chunks - layout.ring) / k_chunks if layout.ring else 0.0  # chunks a column tile reloads
    outputs = p.m * p.n * 4
    dram = int(first_pass + weights * row_tiles + acts * (1 + (column_tiles - 1) * lost) + outputs)
    slot = 8 // (8 // max(w.bits, 2))  # Bit Fusion's slice (functional.Functional._slot_bits)
    abits = 4 if p.acts.kind == "bitsplit" else 8
    speedup = (8 // abits) * (8 // slot)
    gemm = machine.array_pass(np.full(tm, -(-w.stored(tk) // speedup)), tn, speedup * abits, speedup * w.bits)
    gemms = row_tiles * column_tiles * k_chunks
    compute = gemm.cycles * gemms
    bandwidth = machine.dram.bytes_per_cycle
    exposed = (tm * tn * 4 // bandwidth) * row_tiles * column_tiles if layout.out_depth == 1 else 0
    cycles = max(compute, dram // bandwidth) + exposed
    e = machine.energy
    scratchpads = gemms * (  # what each GEMM reads and writes (functional.Functional._array)
        tm * tn * 4 * (2 * max(gemm.acc_passes, 1) - 1) * machine.sram_pj_per_byte("acc")
        + w.stored(tk) * tn * max(gemm.wgt_passes, 1) * machine.sram_pj_per_byte("wgt")
        + tm * tk * -(-tn // machine.array.rows) * machine.sram_pj_per_byte("inp")
    )
    energy = (dram * machine.dram.pj_per_byte + p.m * p.n * p.k * e.mac_int8 + scratchpads
              + cycles * e.static_per_cycle)  # fmt: skip
    return Estimate((tm, tn, tk), layout, dram, source + weights + outputs, row_tiles, cycles, energy)


def choose_tiles(p: Product, machine: Machine) -> Estimate:
    if p.weights.tile_formats:  # one hybrid tile per GEMM
        th, tk = p.weights.tile_shape
        candidates = [(tm, th, tk) for tm in _halvings(min(p.m, MAX_TM))]
    else:
        candidates = [(tm, tn, tk) for tk in _k_tiles(p) for tm in _halvings(min(p.m, MAX_TM))
                      for tn in _halvings(min(p.n, MAX_TN))]  # fmt: skip
    acc = machine.buffers.bytes("acc")
    best: Estimate | None = None
    fewest = 0  # the fewest tile products of the tiles that fit, while all of them unroll too many
    for tm, tn, tk in candidates:
        steps = len(chunks(p.m, tm)) * len(chunks(p.n, tn)) * len(chunks(p.k, tk))
        too_many = steps > MAX_TILE_STEPS
        if tm * tn * 4 > acc or (too_many and (best is not None or 0 < fewest <= steps)):
            continue
        layout = arenas(p, tm, tn, tk, machine)
        if layout.fits and too_many:
            fewest = steps
        elif layout.fits:
            guess = estimate(p, tm, tn, tk, layout, machine)
            best = guess if best is None or guess.cost < best.cost else best
    if best is None and fewest:  # the message convert-tdsl-to-accel gives for given tiles
        raise op_error(p.op, f"the accelerator program for [{p.m}, {p.n}, {p.k}] would unroll at least {fewest} tile "
                             f"products, more than the limit of {MAX_TILE_STEPS}; programs are built per shape: run "
                             "smaller blocks of rows")  # fmt: skip
    if best is None:
        raise op_error(p.op, "even one row and one channel of this product do not fit the accelerator's scratchpads")
    return best


def describe(p: Product, guess: Estimate) -> str:
    tm, tn, tk = guess.tiles
    layout = guess.layout
    acts = f"a ring of {layout.ring} k-chunks" if layout.ring else "resident"
    return (f"{p.op.name.removeprefix('tdsl.')} [{p.m}, {p.n}, {p.k}] on the accelerator: tiles [{tm}, {tn}, {tk}], "
            f"activations {acts}, {layout.out_depth} output slot(s), weights read {guess.weight_reads}x; "
            f"estimated DRAM traffic {guess.dram_bytes / 1e6:.2f} MB ({guess.dram_bytes / guess.compulsory:.2f}x "
            f"the compulsory {guess.compulsory / 1e6:.2f} MB), {guess.cycles} cycles")  # fmt: skip


@dataclass(frozen=True)
class AccelTile(ModulePass):
    name = "accel-tile"

    machine: str = ""
    sizes: tuple[int, ...] = ()  # [tm, tn, tk] for every product, instead of the choice (checked to fit)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        machine = Machine.load(self.machine or None)
        for product in op.walk():
            if isinstance(product, ContractionOp) and product.tile is None:
                p = analyse(product)
                if self.sizes:
                    sizes = self.sizes
                else:
                    guess = choose_tiles(p, machine)
                    sizes = guess.tiles
                    message = describe(p, guess)
                    log.info(message, extra={REMARK: (SourceLoc.from_attr(product.location), message)})
                product.attributes["tile"] = DenseArrayBase.from_list(i64, sizes)


__all__ = ["MAX_TILE_STEPS", "choose_tiles", "estimate"]
