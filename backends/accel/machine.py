"""The simulated accelerator's parameters: sizes, bandwidths, latencies and the
energy table, read from a TOML file (machine.toml beside this module is the
documented default; docs/isa.md explains every number)."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from stoicc_py.dialects.accel import DRAM_LIMIT

DEFAULT = Path(__file__).with_name("machine.toml")
KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Dram:
    bytes_per_cycle: int
    latency: int
    burst: int
    capacity: int  # MiB

    @property
    def capacity_bytes(self) -> int:
        return self.capacity * MIB


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
    rows: int
    width: int
    latency: int


@dataclass(frozen=True)
class Vector:
    lanes: int
    latency: int


@dataclass(frozen=True)
class Energy:
    mac_int8: float
    mac_gated: float
    sram_byte: float
    meta_byte: float
    dram_byte: float
    vector_op: float
    static_per_cycle: float


@dataclass(frozen=True)
class Machine:
    clock_ghz: float
    dram: Dram
    buffers: Buffers
    array: Array
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


NESTED = {"Dram": Dram, "Buffers": Buffers, "Array": Array, "Vector": Vector, "Energy": Energy}
MAX_BUFFER = (1 << 14) * 64
MAX_NUMBER = 1 << 31
