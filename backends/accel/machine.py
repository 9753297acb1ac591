"""The simulated accelerator's parameters: sizes, bandwidths, latencies and the
energy table, read from a TOML file (machine.toml beside this module is the
documented default; docs/isa.md explains every number)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).with_name("machine.toml")
KIB = 1024


@dataclass(frozen=True)
class Dram:
    bytes_per_cycle: int
    latency: int
    burst: int


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
            except (OSError, tomllib.TOMLDecodeError) as err:
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
        wanted = float if kind == "float" else int
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (wanted is int and not isinstance(value, int))
        ):
            raise ValueError(f"{name} must be {'a number' if wanted is float else 'an integer'}, got {value!r}")
        zero_ok = f.name in ("latency", "mac_gated")
        if value < 0 or (value == 0 and not zero_ok):
            raise ValueError(f"{name} must be {'non-negative' if zero_ok else 'positive'}, got {value!r}")
        values[f.name] = wanted(value)
    built = cls(**values)
    if isinstance(built, Buffers):
        for buf in fields(Buffers):
            if built.bytes(buf.name) > MAX_BUFFER:
                raise ValueError(f"{where}.{buf.name}: {getattr(built, buf.name)} KiB is more than the "
                                 f"{MAX_BUFFER // KIB} KiB that 14-bit line addresses reach")  # fmt: skip
    return built


NESTED = {"Dram": Dram, "Buffers": Buffers, "Array": Array, "Vector": Vector, "Energy": Energy}
MAX_BUFFER = (1 << 14) * 64
