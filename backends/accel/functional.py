"""What each instruction does to DRAM and the scratchpads, vectorised with numpy
per instruction, and the activity it causes (array steps, MACs, bytes), which the
timing model turns into cycles and energy (docs/isa.md gives each semantics).

Integer products are exact: int8 x int8 sums over k <= 1024 stay below 2^24 and are
computed in float32 BLAS; longer ones in float64 (exact below 2^53).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stoicc_py.backends.accel.isa import Instr, Program
from stoicc_py.backends.accel.machine import Machine
from stoicc_py.backends.accel.weights import tile_planes, weight_code
from stoicc_py.codec import bitsplit, sq
from stoicc_py.codec.nm import INDEX_WORD_BYTES, NMCodec
from stoicc_py.codec.uniform import STORAGE_BITS, CodeBits, Sign
from stoicc_py.dialects.accel import BROADCASTS, BUFFERS, COUNTERS, LINE_BYTES, VALU_OPS, WEIGHT_CODES

Array = np.ndarray[Any, Any]
STREAMS = {"inp": "activations", "acc": "activations", "wgt": "values", "meta": "metadata", "scl": "scales"}


class SimulationError(RuntimeError):
    """A program that the machine cannot run: an address outside a buffer, a race, a deadlock."""


@dataclass
class Activity:
    """The work one instruction did."""

    steps: int = 0  # MAC array cycles (Machine.array_pass: weight loads, fill and drain included)
    macs: int = 0  # products computed
    dense_macs: int = 0  # products of the equivalent dense computation
    mac_bits: int = 64  # abits * wbits of those products
    gated: int = 0  # products with a zero operand (gated multipliers)
    vector: int = 0  # vector unit element operations
    reads: Counter[str] = field(default_factory=Counter)  # scratchpad bytes read, per buffer
    writes: Counter[str] = field(default_factory=Counter)
    dram: Counter[str] = field(default_factory=Counter)  # DRAM bytes moved, per stream
    dram_bursts: int = 0  # bytes the DRAM channel is busy for (whole bursts)


def _fields(data: Array, bits: int, signed: bool) -> Array:
    """The b-bit codes of the rows of bytes `data` (stoicc_py.codec.uniform), as int32."""
    return CodeBits(bits, Sign.TWOS if signed else Sign.UNSIGNED).decode(data)


def _matmul(x: Array, w: Array) -> Array:
    """x [m, k] · w [n, k]ᵀ of small integers, exactly, as int32."""
    dtype: type[np.floating[Any]] = np.float32 if x.shape[1] <= 1024 else np.float64
    return (x.astype(dtype) @ w.astype(dtype).T).astype(np.int32)


class Functional:
    """The machine state and the semantics of each instruction."""

    def __init__(self, program: Program, machine: Machine):
        self.program, self.machine = program, machine
        if program.dram_bytes > machine.dram.capacity_bytes:
            raise SimulationError(f"program {program.name} spans {program.dram_bytes} bytes of DRAM, more than the "
                                  f"machine's {machine.dram.capacity} MiB (dram.capacity)")  # fmt: skip
        self.dram = np.zeros(program.dram_bytes, np.uint8)
        self.sram = {b: np.zeros(machine.buffers.bytes(b), np.uint8) for b in BUFFERS}
        self.cfg = {"abits": 8, "asigned": 1, "wcode": 0, "n": 0, "m": 0, "group": 0, "count": 0, "chunk": 0,
                    "wzp": 0, "zstride": 0}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)  # kept current by the timing model
        self.touched: list[
            tuple[str, int, int, bool]
        ] = []  # (buffer, first, end byte, written) of the last instruction

    # ------------------------------------------------------------------ memory

    def region(self, buf: str, line: int, nbytes: int, write: bool = False) -> Array:
        start = line * LINE_BYTES
        mem = self.sram[buf]
        if start + nbytes > mem.size:
            raise SimulationError(f"{buf}[{line}] + {nbytes} bytes is outside the {mem.size}-byte {buf} scratchpad")
        self.touched.append((buf, start, start + nbytes, write))
        return mem[start : start + nbytes]

    def words(self, buf: str, line: int, rows: int, cols: int, dtype: type, write: bool = False) -> Array:
        return self.region(buf, line, rows * cols * 4, write).view(dtype).reshape(rows, cols)

    def write_segment(self, name: str, data: bytes | Array) -> None:
        seg = self.program.segment(name)
        raw = np.frombuffer(bytes(data) if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes(), np.uint8)
        if raw.size != seg.size:
            raise SimulationError(f"segment {name} holds {seg.size} bytes, given {raw.size}")
        self.dram[seg.offset : seg.offset + seg.size] = raw

    def read_segment(self, name: str) -> bytes:
        seg = self.program.segment(name)
        return self.dram[seg.offset : seg.offset + seg.size].tobytes()

    def _dram_rows(self, f: dict[str, int]) -> Array:
        address, rows, cols, stride = f["dram"], f["rows"], f["cols"], f["stride"]
        end = address + (rows - 1) * stride + cols
        if rows and end > self.dram.size:
            raise SimulationError(f"DMA reaches DRAM byte {end}, past the end of the program's {self.dram.size}")
        return np.lib.stride_tricks.as_strided(self.dram[address:], (rows, cols), (stride, 1), writeable=True)

    # ------------------------------------------------------------------ instructions

    def execute(self, instr: Instr) -> Activity:
        self.touched = []
        return getattr(self, "_" + instr.mnemonic)(instr.fields)

    def _dma(self, f: dict[str, int], load: bool) -> Activity:
        buf = BUFFERS[f["buf"]]
        rows, cols = f["rows"], f["cols"]
        chip = self.region(buf, f["sram"], rows * cols, write=load).reshape(rows, cols)
        first = f["dram"]
        self.touched.append(("dram", first, first + (rows - 1) * f["stride"] + cols if rows else first, not load))
        if load:
            chip[...] = self._dram_rows(f)
        else:
            self._dram_rows(f)[...] = chip
        burst = self.machine.dram.burst
        act = Activity(dram_bursts=rows * -(-cols // burst) * burst)
        act.dram[STREAMS[buf] if load else "outputs"] += rows * cols
        (act.writes if load else act.reads)[buf] += rows * cols
        return act

    def _ld(self, f: dict[str, int]) -> Activity:
        return self._dma(f, load=True)

    def _st(self, f: dict[str, int]) -> Activity:
        return self._dma(f, load=False)

    def _cfg(self, f: dict[str, int]) -> Activity:
        self.cfg = dict(f)
        return Activity()

    def _sync(self, f: dict[str, int]) -> Activity:
        return Activity()

    _fence = _finish = _sync

    def _rdcnt(self, f: dict[str, int]) -> Activity:
        value = self.counters[COUNTERS[f["counter"]]]
        address = f["dram"]
        if address + 8 > self.dram.size:
            raise SimulationError(f"rdcnt writes past the end of DRAM ({address} + 8 > {self.dram.size})")
        self.dram[address : address + 8] = np.frombuffer(int(value).to_bytes(8, "little"), np.uint8)
        act = Activity()
        act.dram["outputs"] += 8
        return act

    # ------------------------------------------------------------------ the MAC array

    @property
    def _wbits(self) -> int:
        return STORAGE_BITS[WEIGHT_CODES[self.cfg["wcode"]]]

    @property
    def _slot_bits(self) -> int:
        """The multiplier slice a weight uses: Bit Fusion splits an 8-bit multiplier into
        2-, 4- or 8-bit slices, so int3 takes a 4-bit one and int5, int6 an 8-bit one."""
        return 8 // (8 // max(self._wbits, 2))

    def _speedup(self) -> int:
        """Products per 8x8 multiplier: Bit Fusion splits it for narrow operands."""
        return (8 // self.cfg["abits"]) * (8 // self._slot_bits)

    def _activations(self, line: int, m: int, k: int) -> Array:
        bits, signed = self.cfg["abits"], bool(self.cfg["asigned"])
        return _fields(self.region("inp", line, m * k * bits // 8).reshape(m, -1), bits, signed)

    def _weights(self, line: int, n: int, k: int) -> Array:
        """The [n, k] weight codes at `line`: their bit planes side by side are the rows
        that the codec decodes."""
        code = weight_code(WEIGHT_CODES[self.cfg["wcode"]], bool(self.cfg["wzp"]))
        planes = [self.region("wgt", line + at, nbytes).reshape(n, -1) for at, nbytes in tile_planes(code, n, k)]
        return code.decode(np.concatenate(planes, axis=1))

    def _accumulate(self, f: dict[str, int], product: Array) -> None:
        acc = self.words("acc", f["acc"], f["m"], f["n"], np.int32, write=True)
        acc[...] = product if f["init"] else acc + product  # i32 wraps, as the hardware's adders do

    def _array(self, act: Activity, k_slots: Any, m: int, n: int, init: bool, fused: bool = True) -> None:
        """The array's cycles (Machine.array_pass) for rows of k_slots 8-bit multiplier slots
        each (Bit Fusion's, unless not `fused`: 8 x 8 bits), and the accumulator traffic they
        cause: a partial sum per output and k-fold (ws), or one per output (os)."""
        speedup = self._speedup() if fused else 1
        bits = (speedup * self.cfg["abits"], speedup * self._wbits) if fused else (8, 8)
        cost = self.machine.array_pass(k_slots, n, *bits)
        act.steps = cost.cycles
        passes, words = max(cost.acc_passes, 1), m * n * 4
        act.writes["acc"] += words * passes
        act.reads["acc"] += words * (passes - init)
        act.reads["wgt"] *= max(cost.wgt_passes, 1)

    def _gemm_activity(self, f: dict[str, int], x: Array, w: Array, k_stored: int) -> Activity:
        m, n, k = f["m"], f["n"], f["k"]
        act = Activity(macs=m * n * k_stored, dense_macs=m * n * k)
        act.mac_bits = self.cfg["abits"] * self._slot_bits
        act.reads.update(inp=x.size * self.cfg["abits"] // 8 * -(-n // self.machine.array.rows),
                         wgt=n * k_stored * self._wbits // 8)  # fmt: skip
        self._array(act, np.full(m, -(-k_stored // self._speedup())), m, n, bool(f["init"]))
        return act

    def _zero_points(self, f: dict[str, int], n: int) -> Array:
        """z of a gemm's n weight rows with cfg wzp: row i's is byte zp * 64 + i * zstride + zcol
        of scl (zstride 0: one for all), as [n, 1]."""
        stride, col = self.cfg["zstride"], f["zcol"]
        z = self.region("scl", f["zp"], col + (n - 1) * stride + 1)[col :: stride or 1][: n if stride else 1]
        return np.broadcast_to(z.astype(np.int32), (n,))[:, None]

    def _no_zero_points(self, mnemonic: str) -> None:
        if self.cfg["wzp"]:
            raise SimulationError(f"{mnemonic} has no zero-point operand: cfg wzp is for gemm only")

    def _gemm(self, f: dict[str, int]) -> Activity:
        m, n, k = f["m"], f["n"], f["k"]
        x, w = self._activations(f["inp"], m, k), self._weights(f["wgt"], n, k)
        if self.cfg["wzp"] and n:  # x · (c - z)ᵀ = x · cᵀ - z · (x's row sums): docs/isa.md, "gemm"
            w = w - self._zero_points(f, n)
        self._accumulate(f, _matmul(x, w))
        act = self._gemm_activity(f, x, w, k)
        if self.cfg["wzp"]:
            act.reads["scl"] += n if self.cfg["zstride"] else 1
        act.gated = m * n * k - int(np.count_nonzero(x, axis=0) @ np.count_nonzero(w, axis=0))
        return act

    def _spgemm(self, f: dict[str, int]) -> Activity:
        self._no_zero_points("spgemm")
        m, n, k = f["m"], f["n"], f["k"]
        sn, sm = self.cfg["n"], self.cfg["m"]
        if not sn or k % sm:
            raise SimulationError(f"spgemm needs an N:M mode whose M divides k (cfg nm {sn}:{sm}, k {k})")
        code = NMCodec(sn, sm, k)
        values = self._weights(f["wgt"], n, code.slots)
        words = self.region("meta", f["meta"], n * code.words * INDEX_WORD_BYTES).view(np.int32).reshape(n, code.words)
        if np.any(code.positions(words) >= sm):  # cfg's M need not be a power of two
            raise SimulationError(f"spgemm: an index is not below M = {sm}")
        w = code.decode_rows(values, words)
        x = self._activations(f["inp"], m, k)
        self._accumulate(f, _matmul(x, w))
        act = self._gemm_activity(f, x, values, code.slots)
        act.reads["meta"] += n * code.words * INDEX_WORD_BYTES
        return act

    def _bsgemm(self, f: dict[str, int]) -> Activity:
        self._no_zero_points("bsgemm")
        m, n, k = f["m"], f["n"], f["k"]
        hi = bitsplit.HI.decode(self.region("inp", f["inp"], bitsplit.HI.row_bytes(m * k)).reshape(m, -1))
        bitmap = bitsplit.BITMAP.decode(self.region("meta", f["meta"], bitsplit.BITMAP.row_bytes(m * k)).reshape(m, -1))
        if np.any((hi != 0) != (bitmap != 0)):
            raise SimulationError("bsgemm: the bitmap does not match the non-zero high nibbles")
        w = self._weights(f["wgt"], n, k)
        self._accumulate(f, 16 * _matmul(hi, w))
        nnz = np.count_nonzero(bitmap, axis=1)
        act = Activity(macs=int(nnz.sum()) * n, dense_macs=0)
        act.mac_bits = 4 * self._slot_bits
        act.reads.update(inp=int(nnz.sum()) // 2 * -(-n // self.machine.array.rows), wgt=n * k * self._wbits // 8,
                         meta=m * k // 8)  # fmt: skip
        self._array(act, -(-nnz // self._speedup()), m, n, init=False)
        return act

    def _sqgemm(self, f: dict[str, int]) -> Activity:
        m, n, slots = f["m"], f["n"], f["k"]
        group, count = self.cfg["group"], self.cfg["count"]
        if not group or not count or slots % count:
            raise SimulationError(f"sqgemm needs a cfg count (dividing k) and group, got {count} / {group}")
        k = slots // count * group
        values = _fields(self.region("wgt", f["wgt"], n * slots).reshape(n, slots), 8, True)
        index = self.region("meta", f["meta"], n * slots * sq.INDEX_BYTES).view(sq.INDEX_DTYPE).reshape(n, slots)
        if np.any(index >= group):
            raise SimulationError("sqgemm: a position is outside its group")
        w = np.zeros((n, k), np.int8)
        np.put_along_axis(w, sq.columns(index, group, count), values, axis=1)
        self._accumulate(f, _matmul(self._chunked_activations(f["inp"], m, k), w))
        act = Activity(macs=m * n * slots)
        act.reads.update(inp=m * slots, wgt=n * slots, meta=n * slots * 2)
        self._array(act, np.full(m, slots), m, n, bool(f["init"]), fused=False)  # int8 x int8
        return act

    def _chunked_activations(self, line: int, m: int, k: int) -> Array:
        """int8 activations [m, k] stored in k-chunks of cfg.chunk columns, each starting a line."""
        chunk = self.cfg["chunk"] or k
        parts = []
        for c in range(0, k, chunk):
            width = min(chunk, k - c)
            parts.append(self._activations(line, m, width))
            line += -(-m * width // LINE_BYTES)
        return np.concatenate(parts, axis=1)

    # ------------------------------------------------------------------ the vector unit

    def _valu(self, f: dict[str, int]) -> Activity:
        op, rows, cols = VALU_OPS[f["op"]], f["rows"], f["cols"]
        act = Activity(vector=rows * cols)
        if op in ("quant", "split", "half"):
            getattr(self, "_valu_" + op)(f, act)
            return act
        dst_type = np.int32 if op in ("addi", "maxi") else np.float32
        src_type = np.int32 if op in ("cvt", "scale", "macc", "addi", "maxi") else np.float32
        src = self.words("acc", f["src"], rows, cols, src_type)
        dst = self.words("acc", f["dst"], rows, cols, dst_type, write=True)
        act.reads["acc"] += src.nbytes
        act.writes["acc"] += dst.nbytes
        if op in ("mul", "add", "addi", "scale", "macc"):
            operand = self._broadcast(f, rows, cols, np.int32 if op == "addi" else np.float32, act)
        if op == "cvt":
            dst[...] = src.astype(np.float32)
        elif op == "scale":
            dst[...] = src.astype(np.float32) * operand
        elif op == "macc":
            dst[...] = dst + src.astype(np.float32) * operand
            act.reads["acc"] += dst.nbytes
        elif op == "mul":
            dst[...] = src * operand
        elif op in ("add", "addi"):
            dst[...] = src + operand
        elif op in ("max", "maxi"):
            dst[...] = np.maximum(src, src.dtype.type(0))
        else:
            dst[...] = ACTIVATIONS[op](src)
        return act

    def _broadcast(self, f: dict[str, int], rows: int, cols: int, dtype: type, act: Activity) -> Array:
        mode = BROADCASTS[f["bcast"]]
        count = {"none": rows * cols, "row": rows, "col": cols, "scalar": 1}[mode]
        offset, stride = f["aux"], f["stride"] or 1
        span = offset + (count - 1) * stride + 1
        vec: Array = self.region("scl", f["scl"], span * 4).view(dtype)[offset::stride][:count]
        act.reads["scl"] += count * 4
        if mode == "none":
            return vec.reshape(rows, cols)
        return vec[:, None] if mode == "row" else vec[None, :] if mode == "col" else vec[0]

    def _valu_quant(self, f: dict[str, int], act: Activity) -> None:
        """Per-row symmetric int8 of f32 rows staged in k-chunks of `aux` columns (each
        chunk's [rows, width] block starting a line): s = max|x| / 127,
        c = clip(rint(x / s), -127, 127), all in float32; codes chunked the same way."""
        rows, cols, chunk = f["rows"], f["cols"], f["aux"]
        if not chunk:
            raise SimulationError("valu quant: aux (the k-chunk width) must be positive")
        spans = [(c, min(chunk, cols - c)) for c in range(0, cols, chunk)]
        src, dst, blocks = f["src"], f["dst"], []
        for _, width in spans:
            blocks.append(self.words("acc", src, rows, width, np.float32))
            src += -(-rows * width * 4 // LINE_BYTES)
        x = np.concatenate(blocks, axis=1)
        scale = np.max(np.abs(x), axis=1) / np.float32(127)
        with np.errstate(invalid="ignore"):  # a row with an inf or NaN: scale inf or NaN
            q = np.clip(np.rint(x / np.where(scale == 0, np.float32(1), scale)[:, None]), -127, 127)
        # Such a row's codes are 0 (the CPU's too), so its values scale * 0 are NaN (docs/language.md).
        codes = np.where(np.isnan(q), np.float32(0), q).astype(np.int8)
        for c, width in spans:
            self.region("inp", dst, rows * width, write=True)[...] = codes[:, c : c + width].reshape(-1).view(np.uint8)
            dst += -(-rows * width // LINE_BYTES)
        self.region("scl", f["scl"], rows * 4, write=True)[...] = scale.astype(np.float32).view(np.uint8)
        act.vector *= 2  # a max pass, then a scaling pass
        act.reads["acc"] += x.nbytes
        act.writes.update(inp=rows * cols, scl=rows * 4)

    def _valu_split(self, f: dict[str, int], act: Activity) -> None:
        """int8 codes at src (inp) -> low nibbles at dst, high nibbles at aux (inp),
        the bitmap of non-zero high nibbles at scl (in meta)."""
        n = f["rows"] * f["cols"]
        if n % 8:
            raise SimulationError(f"valu split: rows x cols = {n} is not a whole number of bitmap bytes")
        codes = self.region("inp", f["src"], n).view(np.int8).astype(np.int32)
        lo, hi = bitsplit.split(codes)
        self.region("inp", f["dst"], n // 2, write=True)[...] = bitsplit.LO.encode(lo[None])[0]
        self.region("inp", f["aux"], n // 2, write=True)[...] = bitsplit.HI.encode(hi[None]).view(np.uint8)[0]
        self.region("meta", f["scl"], n // 8, write=True)[...] = bitsplit.BITMAP.encode((hi != 0)[None].astype(np.int32))[0]
        act.reads["inp"] += n
        act.writes.update(inp=n, meta=n // 8)

    def _valu_half(self, f: dict[str, int], act: Activity) -> None:
        """rows x cols f16 at scl line src -> f32 at scl line dst (may be src: widened in place)."""
        n = f["rows"] * f["cols"]
        values = self.region("scl", f["src"], n * 2).view(np.float16).astype(np.float32)
        self.region("scl", f["dst"], n * 4, write=True)[...] = values.view(np.uint8)
        act.reads["scl"] += n * 2
        act.writes["scl"] += n * 4


_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: Array) -> Array:
    """The exact (erf) GELU."""
    return np.float32(0.5) * x * (np.float32(1) + np.asarray(_erf(x / np.float32(math.sqrt(2.0))), np.float32))


def _sigmoid(x: Array) -> Array:
    return np.float32(1) / (np.float32(1) + np.exp(-x))


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"gelu": _gelu, "silu": lambda x: x * _sigmoid(x), "sigmoid": _sigmoid, "tanh": np.tanh}
