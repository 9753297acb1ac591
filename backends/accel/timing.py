"""The timing model: the load, execute and store queues run their instructions in
order and concurrently, synchronised by dependency tokens; the load and store
queues share one DRAM channel. Event driven: the next instruction to run is the
one, among the three queue heads whose tokens are available, that can start
first. Each instruction is executed (functionally) when it starts, and every
scratchpad access is checked against the accesses still in flight, so a missing
token shows up as a race, not as a silently right answer.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from stoicc_py.backends.accel.functional import Activity, Functional, SimulationError
from stoicc_py.backends.accel.isa import Instr, Program
from stoicc_py.backends.accel.machine import Machine
from stoicc_py.dialects.accel import QUEUES


@dataclass
class QueueStats:
    instructions: int = 0
    busy: int = 0
    stalls: Counter[str] = field(default_factory=Counter)  # cycles waiting, by reason


@dataclass
class Timeline:
    """What the timing model saw: cycles, per-queue stats and the total activity."""

    cycles: int = 0
    queues: dict[str, QueueStats] = field(default_factory=lambda: {q: QueueStats() for q in QUEUES})
    activity: Activity = field(default_factory=Activity)
    dram_busy: int = 0
    mac_slots: float = 0.0  # products weighted by abits * wbits / 64: 8x8 multiplier uses
    mac_energy: float = 0.0

    def add(self, act: Activity, machine: Machine) -> None:
        total = self.activity
        total.steps += act.steps
        total.macs += act.macs
        total.dense_macs += act.dense_macs
        total.gated += act.gated
        total.vector += act.vector
        total.dram_bursts += act.dram_bursts
        total.reads.update(act.reads)
        total.writes.update(act.writes)
        total.dram.update(act.dram)
        width = act.mac_bits / 64
        self.mac_slots += act.macs * width
        e = machine.energy
        self.mac_energy += (act.macs - act.gated) * e.mac_int8 * width + act.gated * e.mac_gated


class _Races:
    """In-flight memory accesses: (memory, first, end) -> {queue: [last write end, last read end]}.
    Accesses from one queue never race: its DMAs land in order, the rest run one at a time."""

    def __init__(self) -> None:
        self.regions: dict[str, dict[tuple[int, int], dict[str, list[int]]]] = defaultdict(dict)

    def check(self, pc: int, instr: Instr, touched: list[tuple[str, int, int, bool]], start: int, end: int) -> None:
        for mem, lo, hi, write in touched:
            for (a, b), by_queue in self.regions[mem].items():
                if not (a < hi and lo < b):
                    continue
                for queue, (w_end, r_end) in by_queue.items():
                    if queue != instr.queue and (w_end > start or (write and r_end > start)):
                        kind = "written" if w_end > start else "read"
                        raise SimulationError(
                            f"race at instruction {pc} ({instr.mnemonic}, cycle {start}): {mem} bytes {a}..{b} are "
                            f"still being {kind} by the {queue} queue until cycle {max(w_end, r_end)}; "
                            "a dependency token is missing"
                        )
        for mem, lo, hi, write in touched:
            times = self.regions[mem].setdefault((lo, hi), {}).setdefault(instr.queue, [0, 0])
            times[0 if write else 1] = max(times[0 if write else 1], end)


class TimingModel:
    def __init__(self, program: Program, machine: Machine, functional: Functional):
        self.program, self.machine, self.functional = program, machine, functional
        self.queue_of = [i.queue for i in program.instrs]
        self.order = {q: [pc for pc, name in enumerate(self.queue_of) if name == q] for q in QUEUES}

    def duration(self, instr: Instr, act: Activity) -> int:
        """Cycles from start to completion (for a DMA: after its channel time)."""
        if instr.mnemonic in ("ld", "st"):
            return self.machine.dram.latency
        if act.steps or instr.mnemonic.endswith("gemm"):
            return max(act.steps, 1)
        if instr.mnemonic == "valu":
            v = self.machine.vector
            return -(-act.vector // v.lanes) + v.latency
        return 1

    def run(self) -> Timeline:
        t = Timeline()
        head = dict.fromkeys(QUEUES, 0)
        free = dict.fromkeys(QUEUES, 0)  # when each queue can start its next instruction
        done = dict.fromkeys(QUEUES, 0)  # when everything it started has finished
        pushed: dict[tuple[int, int], list[int]] = defaultdict(list)
        popped: Counter[tuple[int, int]] = Counter()
        races, dram_free = _Races(), 0
        for _ in range(len(self.program.instrs)):
            q, start, reason = self._next(head, free, done, pushed, popped)
            pc = self.order[q][head[q]]
            instr = self.program.instrs[pc]
            qi = QUEUES.index(q)
            for src in range(3):
                if instr.wait >> src & 1:
                    popped[(src, qi)] += 1
            if instr.mnemonic == "rdcnt":  # the counters as they stand when the store queue reaches it
                self.functional.counters.update(cycles=start, macs=t.activity.macs, ex_busy=t.queues["ex"].busy,
                                                dram_bytes=sum(t.activity.dram.values()))  # fmt: skip
            act = self.functional.execute(instr)
            begin = start
            if instr.mnemonic in ("ld", "st"):
                # DMAs pipeline: the queue issues the next one when this one's bursts have
                # left the channel; its data lands (and its token goes out) a latency later.
                begin = max(start, dram_free)
                dram_free = begin + -(-act.dram_bursts // self.machine.dram.bytes_per_cycle)
                t.dram_busy += dram_free - begin
                issued, end = dram_free, dram_free + self.duration(instr, act)
            else:
                issued = end = begin + self.duration(instr, act)
            races.check(pc, instr, self.functional.touched, begin, end)
            stats = t.queues[q]
            stats.instructions += 1
            stats.busy += issued - begin
            if start > free[q]:
                stats.stalls[reason] += start - free[q]
            if begin > start:
                stats.stalls["dram busy"] += begin - start
            for dst in range(3):
                if instr.signal >> dst & 1:
                    pushed[(qi, dst)].append(end)
            free[q], done[q], head[q] = issued, max(done[q], end), head[q] + 1
            t.add(act, self.machine)
        t.cycles = max(done.values())
        for q in QUEUES:
            t.queues[q].stalls["last data landing"] += done[q] - free[q]
            t.queues[q].stalls["idle at the end"] += t.cycles - done[q]
        return t

    def _next(self, head: dict[str, int], free: dict[str, int], done: dict[str, int],
              pushed: dict[tuple[int, int], list[int]], popped: Counter[tuple[int, int]]) -> tuple[str, int, str]:  # fmt: skip
        """The queue whose head instruction can start first: (queue, start cycle, stall reason)."""
        best: tuple[int, int, str, str] | None = None
        for qi, q in enumerate(QUEUES):
            if head[q] >= len(self.order[q]):
                continue
            instr = self.program.instrs[self.order[q][head[q]]]
            # a DMA may start before the previous one's data lands; anything else waits for it
            dma = instr.mnemonic in ("ld", "st")
            start, reason = (free[q], "running") if dma else (done[q], "data landing")
            for src in range(3):
                if instr.wait >> src & 1:
                    times = pushed[(src, qi)]
                    if popped[(src, qi)] >= len(times):
                        break
                    if times[popped[(src, qi)]] > start:
                        start, reason = times[popped[(src, qi)]], f"token from {QUEUES[src]}"
            else:
                if instr.mnemonic == "fence":
                    pc = self.order[q][head[q]]
                    earlier = [
                        o for o in QUEUES if o != q and head[o] < len(self.order[o]) and self.order[o][head[o]] < pc
                    ]
                    if earlier:
                        continue
                    others = max(done[o] for o in QUEUES if o != q)
                    if others > start:
                        start, reason = others, "fence"
                if best is None or start < best[0]:
                    best = (start, qi, q, reason)
        if best is None:
            blocked = [f"{q}: {self.program.instrs[self.order[q][head[q]]].mnemonic} at instruction "
                       f"{self.order[q][head[q]]}" for q in QUEUES if head[q] < len(self.order[q])]  # fmt: skip
            raise SimulationError(
                "deadlock: every queue waits for a token that never comes (" + "; ".join(blocked) + ")"
            )
        return best[2], best[0], best[3]
