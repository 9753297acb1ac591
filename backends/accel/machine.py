"""The simulated accelerator's parameters: sizes, bandwidths, the array's dataflow and
scratchpad ports, and the energy table, read from a TOML file (machine.toml beside
this module is the documented default; docs/isa.md explains every number and
docs/accel.md gives each default's source).

`Machine.array_pass` is the array's cost model: the cycles and scratchpad passes of
one GEMM instruction under the machine's dataflow (weight- or output-stationary),
weight-tile loads, fill and drain and port widths included."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from stoicc_py.dialects.accel import DRAM_LIMIT

DEFAULT = Path(__file__).with_name("machine.toml")
KIB = 1024
MIB = 1024 * KIB


# Energy per bit moved, by DRAM technology (pJ/bit; docs/accel.md, "Energy", gives the sources).
DRAM_PJ_PER_BIT = {"lpddr4": 13.5, "hbm2": 7.0, "ddr4": 20.0}

# SRAM read or write energy per byte against capacity (KiB, pJ/byte), 45 nm: Horowitz,
# "Computing's energy problem", ISSCC 2014: a 64-bit access costs 10 pJ in an 8 KB array,
# 20 pJ in 32 KB and 100 pJ in 1 MB. Other sizes: log-log interpolation (the slope of the
# nearest segment outside the table), as CACTI's energy grows about as sqrt(capacity).
SRAM_PJ_PER_BYTE = ((8, 1.25), (32, 2.5), (1024, 12.5))


def sram_pj_per_byte(kib: float) -> float:
    """Energy of a byte read or written in an SRAM of `kib` KiB (SRAM_PJ_PER_BYTE)."""
    table = SRAM_PJ_PER_BYTE
    i = 0 if kib <= table[1][0] else 1  # the segment: [8, 32] KiB, or [32, 1024] and beyond
    (s0, e0), (s1, e1) = table[i], table[i + 1]
    slope = math.log(e1 / e0) / math.log(s1 / s0)
    return e0 * (max(kib, 1 / 64) / s0) ** slope


@dataclass(frozen=True)
class Dram:
    bytes_per_cycle: int
    latency: int
    burst: int
    capacity: int  # MiB
    technology: str  # a key of DRAM_PJ_PER_BIT: its energy per bit

    @property
    def capacity_bytes(self) -> int:
        return self.capacity * MIB

    @property
    def pj_per_byte(self) -> float:
        return 8 * DRAM_PJ_PER_BIT[self.technology]


@dataclass(frozen=True)
class Buffers:
    """Scratchpad sizes in KiB."""

    inp: int
    wgt: int
    acc: int
    meta: int
    scl: int

    def bytes(self, name: str) -> int:
        return int(getattr(self, name)) * KIB


@dataclass(frozen=True)
class Array:
    rows: int  # output channels (n) per step
    width: int  # 8-bit products per channel per step (k)
    dataflow: str  # "ws": a rows x width weight tile stays while rows of x stream; "os": outputs stay
    double_buffered: bool  # the next weight tile (ws) or the last outputs (os) move while the array computes

    @property
    def fill_drain(self) -> int:
        """Cycles for a wavefront to cross the systolic array: in at one corner, out at the other."""
        return self.rows + self.width - 2


@dataclass(frozen=True)
class Ports:
    """Scratchpad port widths, bytes per cycle, between each buffer and the array."""

    inp: int  # activations in
    wgt: int  # weights into the array
    acc: int  # partial sums out (and, accumulating, in: a read and a write port)


@dataclass(frozen=True)
class ArrayPass:
    """What one GEMM instruction costs the array."""

    cycles: int
    acc_passes: int  # times each [m, n] accumulator word is written (ws: once per k-fold)
    wgt_passes: int  # times each weight is read from wgt (os: once per fold of `width` rows)


@dataclass(frozen=True)
class Vector:
    lanes: int
    latency: int


@dataclass(frozen=True)
class Energy:
    mac_int8: float
    mac_gated: float
    sram_scale: float  # multiplies SRAM_PJ_PER_BYTE (45 nm): another process node
    vector_op: float
    static_per_cycle: float


@dataclass(frozen=True)
class Machine:
    clock_ghz: float
    dram: Dram
    buffers: Buffers
    array: Array
    ports: Ports
    vector: Vector
    energy: Energy

    @staticmethod
    def load(path: str | Path | None = None) -> Machine:
        """The default machine, with the values of the TOML file at `path` overriding it."""
        data = tomllib.loads(DEFAULT.read_text())
        if path is not None:
            try:
                override = tomllib.loads(Path(path).read_text())
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
                raise ValueError(f"cannot read machine file {path}: {err}") from None
            _merge(data, override, str(path))
        return _build(Machine, data, "machine")

    def sram_pj_per_byte(self, buffer: str) -> float:
        """Energy of a byte read or written in scratchpad `buffer`, from its capacity."""
        return self.energy.sram_scale * sram_pj_per_byte(getattr(self.buffers, buffer))

    def array_pass(self, k_rows: Any, n: int, act_bits: int = 8, wgt_bits: int = 8) -> ArrayPass:
        """The cost of a GEMM of n channels over rows of activations whose k (in 8-bit
        multiplier slots: k over the Bit Fusion speedup) is `k_rows` (an int array, one
        per row; a sparse pass's rows differ). A multiplier slot takes `act_bits` of
        activations and holds `wgt_bits` of weights (Bit Fusion: speedup x abits and
        speedup x wbits; 8 and 8 at int8). docs/isa.md, "The MAC array"."""
        a, p = self.array, self.ports
        k_rows = np.asarray(k_rows, np.int64).reshape(-1)
        if not k_rows.size or not n or not k_rows.any():
            return ArrayPass(1, 0, 0)
        n_folds = -(-n // a.rows)
        acc_row = -(-4 * a.rows // p.acc)  # cycles to move one row of partial sums
        if a.dataflow == "ws":  # weight tiles [rows, width] stay; each row of x streams through once per tile
            k_folds = int(-(-k_rows.max() // a.width))
            folds = n_folds * k_folds
            per_row = max(1, -(-a.width * act_bits // (8 * p.inp)), acc_row)
            stream = n_folds * int(np.sum(-(-k_rows // a.width))) * per_row
            load = -(-a.rows * a.width * wgt_bits // (8 * p.wgt))
            if a.double_buffered:  # the next tile loads behind the stream; wavefronts follow each other
                cycles = load + max(stream, folds * load) + a.fill_drain
            else:
                cycles = stream + folds * (load + a.fill_drain)
            return ArrayPass(cycles, k_folds, 1)
        # os: [width rows of x, rows channels] of outputs stay; k streams through them
        padded = np.pad(k_rows, (0, -k_rows.size % a.width)).reshape(-1, a.width)
        m_folds = padded.shape[0]
        per_k = max(1, -(-a.width * act_bits // (8 * p.inp)), -(-a.rows * wgt_bits // (8 * p.wgt)))
        stream = n_folds * int(padded.max(axis=1).sum()) * per_k
        drain = a.width * acc_row  # the finished outputs leave through the acc port
        folds = n_folds * m_folds
        if a.double_buffered:  # outputs drain from shadow registers while the next fold computes
            cycles = a.fill_drain + max(stream, folds * drain) + drain
        else:  # each block fills, streams k and drains before the next (SCALE-Sim's model)
            cycles = stream + folds * a.fill_drain
        return ArrayPass(cycles, 1, m_folds)

    def to_json(self) -> dict[str, Any]:
        return {f.name: _json(getattr(self, f.name)) for f in fields(self)}


def _json(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: getattr(value, f.name) for f in fields(value)}  # type: ignore[arg-type]
    return value


def _merge(base: dict[str, Any], override: dict[str, Any], where: str) -> None:
    for key, value in override.items():
        if key not in base:
            raise ValueError(f"{where}: unknown machine parameter '{key}' (expected one of {', '.join(base)})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: '{key}' must be a table")
            _merge(base[key], value, where)
        else:
            base[key] = value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    values = {}
    for f in fields(cls):
        value, name = data[f.name], f"{where}.{f.name}"
        kind = str(f.type)
        if kind in NESTED:
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a table")
            values[f.name] = _build(NESTED[kind], value, name)
            continue
        if kind == "str":
            if value not in CHOICES[f.name]:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, CHOICES[f.name]))}, got {value!r}")
            values[f.name] = value
            continue
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
            values[f.name] = value
            continue
        values[f.name] = _number(value, name, float if kind == "float" else int, f.name in ("latency", "mac_gated"))
    built = cls(**values)
    if isinstance(built, Buffers):
        for buf in fields(Buffers):
            if built.bytes(buf.name) > MAX_BUFFER:
                raise ValueError(f"{where}.{buf.name}: {getattr(built, buf.name)} KiB is more than the "
                                 f"{MAX_BUFFER // KIB} KiB that 14-bit line addresses reach")  # fmt: skip
    if isinstance(built, Dram) and built.capacity_bytes > DRAM_LIMIT:
        raise ValueError(f"{where}.capacity: {built.capacity} MiB is more than the {DRAM_LIMIT // MIB} MiB "
                         "that 32-bit DRAM addresses reach")  # fmt: skip
    return built


def _number(value: object, name: str, wanted: type, zero_ok: bool) -> int | float:
    """`value` as the parameter `name` takes it; ValueError naming it if it is not a
    finite number of the right type in (0, MAX_NUMBER] ([0, MAX_NUMBER] if zero_ok)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or (wanted is int and not isinstance(value, int)):
        raise ValueError(f"{name} must be {'a number' if wanted is float else 'an integer'}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{name} must be {'non-negative' if zero_ok else 'positive'}, got {value!r}")
    if value > MAX_NUMBER:  # keeps cycle counts and energies far from overflow
        raise ValueError(f"{name} must be at most 2^31, got {value!r}")
    return wanted(value)


NESTED = {"Dram": Dram, "Buffers": Buffers, "Array": Array, "Ports": Ports, "Vector": Vector, "Energy": Energy}
CHOICES: dict[str, tuple[str, ...]] = {"technology": tuple(DRAM_PJ_PER_BIT), "dataflow": ("ws", "os")}
MAX_BUFFER = (1 << 14) * 64
MAX_NUMBER = 1 << 31
