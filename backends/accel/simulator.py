"""Run an accelerator program: functionally (program order) or with the timing model,
and report what the machine spent (cycles, stalls, utilisation, bytes, energy)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stoicc_py.backends.accel.functional import Functional
from stoicc_py.backends.accel.isa import Program
from stoicc_py.backends.accel.machine import Machine
from stoicc_py.backends.accel.timing import Timeline, TimingModel
from stoicc_py.dialects.accel import BUFFERS, QUEUES

Array = np.ndarray[Any, Any]


@dataclass
class Report:
    """The cost of one run. Cycles are machine cycles; energy is in pJ."""

    kernel: str
    cycles: int
    ideal_cycles: int  # the roofline: max(compute at full array use, compulsory DRAM bytes / bandwidth)
    compute_cycles_ideal: int
    dram_cycles_ideal: int
    mac_utilization: float  # 8x8-multiplier uses / (rows x width x cycles)
    macs: int  # products computed
    dense_macs: int  # products of the equivalent dense computation
    effective_macs_per_cycle: float
    queues: dict[str, dict[str, Any]]  # busy, instructions, stalls by reason
    dram_bytes: dict[str, int]  # per stream: activations, values, metadata, scales, outputs
    sram_bytes: dict[str, dict[str, int]]  # per buffer: read, written
    energy_pj: dict[str, float]  # per component
    machine: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def seconds(self) -> float:
        """The run's time at the machine's clock."""
        return self.cycles / (float(self.machine.get("clock_ghz", 1.0)) * 1e9)

    @property
    def total_energy_pj(self) -> float:
        """The energy of every component, summed (pJ)."""
        return sum(self.energy_pj.values())

    def to_json(self) -> str:
        """Every field and the total energy, as JSON text."""
        data = {k: v for k, v in self.__dict__.items()}
        data["total_energy_pj"] = self.total_energy_pj
        return json.dumps(data, indent=2, sort_keys=False)

    def table(self) -> str:
        """A plain-text summary: cycles against the roofline, queues, bytes, energy."""
        rows = [
            f"kernel {self.kernel}: {self.cycles} cycles (ideal {self.ideal_cycles}: compute {self.compute_cycles_ideal}, "
            f"DRAM {self.dram_cycles_ideal}), {self.seconds * 1e6:.1f} us",
            f"MAC array utilization {self.mac_utilization:.1%}; {self.macs} products "
            f"({self.dense_macs} dense-equivalent, {self.effective_macs_per_cycle:.1f} per cycle)",
            "",
            f"{'queue':<6}{'instrs':>8}{'busy':>12}  stalls",
        ]
        for q, s in self.queues.items():
            stalls = ", ".join(f"{r} {c}" for r, c in s["stalls"].items() if c) or "-"
            rows.append(f"{q:<6}{s['instructions']:>8}{s['busy']:>12}  {stalls}")
        rows += ["", f"{'DRAM stream':<14}{'bytes':>14}"]
        rows += [f"{k:<14}{v:>14}" for k, v in self.dram_bytes.items()]
        rows += ["", f"{'scratchpad':<14}{'read':>14}{'written':>14}"]
        rows += [f"{b:<14}{v['read']:>14}{v['written']:>14}" for b, v in self.sram_bytes.items()]
        rows += ["", f"{'energy':<14}{'uJ':>14}"]
        rows += [f"{k:<14}{v / 1e6:>14.3f}" for k, v in self.energy_pj.items()]
        rows.append(f"{'total':<14}{self.total_energy_pj / 1e6:>14.3f}")
        return "\n".join(rows)


def simulate(program: Program, inputs: Mapping[str, bytes | Array], machine: Machine | None = None,
             timing: bool = True) -> tuple[dict[str, bytes], Report | None]:  # fmt: skip
    """Run `program` with its input segments filled from `inputs` (segment name ->
    bytes or array); return the output segments' bytes and, with timing, the report."""
    machine = machine or Machine.load()
    state = Functional(program, machine)
    for seg in program.segments:
        if seg.kind == "input":
            if seg.name not in inputs:
                raise KeyError(f"no data for input segment '{seg.name}'")
            state.write_segment(seg.name, inputs[seg.name])
    report = None
    if timing:
        timeline = TimingModel(program, machine, state).run()
        report = _report(program, machine, timeline)
    else:
        for instr in program.instrs:
            state.execute(instr)
    outputs = {s.name: state.read_segment(s.name) for s in program.segments if s.kind == "output"}
    return outputs, report


def _report(program: Program, machine: Machine, t: Timeline) -> Report:
    a, e, act = machine.array, machine.energy, t.activity
    peak = a.rows * a.width
    compulsory = sum(s.size for s in program.segments if s.kind in ("input", "output"))
    compute_ideal = int(np.ceil(t.mac_slots / peak))
    dram_ideal = int(np.ceil(compulsory / machine.dram.bytes_per_cycle))
    cycles = max(t.cycles, 1)
    sram = {b: {"read": int(act.reads[b]), "written": int(act.writes[b])} for b in BUFFERS}
    sram_pj = {b: (v["read"] + v["written"]) * machine.sram_pj_per_byte(b) for b, v in sram.items()}
    energy = {
        "mac": t.mac_energy,
        "scratchpad": sum(pj for b, pj in sram_pj.items() if b != "meta"),
        "metadata": sram_pj["meta"],
        "dram": act.dram_bursts * machine.dram.pj_per_byte,  # the channel moves whole bursts
        "vector": act.vector * e.vector_op,
        "static": t.cycles * e.static_per_cycle,
    }
    return Report(
        kernel=program.name, cycles=t.cycles, ideal_cycles=max(compute_ideal, dram_ideal),
        compute_cycles_ideal=compute_ideal, dram_cycles_ideal=dram_ideal,
        mac_utilization=t.mac_slots / (peak * cycles), macs=act.macs, dense_macs=act.dense_macs,
        effective_macs_per_cycle=act.dense_macs / cycles,
        queues={q: {"instructions": s.instructions, "busy": s.busy, "stalls": dict(s.stalls)} for q, s in t.queues.items()},
        dram_bytes={k: int(v) for k, v in act.dram.items()}, sram_bytes=sram, energy_pj=energy,
        machine=machine.to_json(),
    )  # fmt: skip


__all__ = ["QUEUES", "Report", "simulate"]
