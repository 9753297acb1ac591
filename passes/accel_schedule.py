"""accel-schedule: the dependency tokens of an accelerator program.

Every instruction's footprint (the scratchpad bytes and DRAM ranges it reads and
writes) gives the dependency DAG (a networkx DiGraph): read after write, write
after read and write after write. Instructions of one queue run in order, so only
edges between queues need a token, and only those that no other path implies:
walking the program in order, each instruction knows, per queue, the latest
instruction that is guaranteed finished before it starts (through its own queue
and the tokens it waits for); a dependency on something older needs no token.
The tokens left are the cross-queue edges of the DAG's transitive reduction, so
each instruction waits for at most one token per queue and gives at most one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import networkx as nx
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass

from stoicc_py.backends.accel.weights import tile_bytes, weight_code
from stoicc_py.codec.nm import INDEX_WORD_BYTES, NMCodec
from stoicc_py.dialects import accel
from stoicc_py.dialects.accel import LINE_BYTES, QUEUES, WEIGHT_CODES, InstructionOp, queue_names

Access = tuple[str, int, int, bool]  # (memory, first byte, end byte, written)


def _on_chip(buf: str, line: int, nbytes: float) -> tuple[str, int, int]:
    return (buf, line * LINE_BYTES, line * LINE_BYTES + int(nbytes))


def footprint(op: InstructionOp, cfg: dict[str, int | str]) -> list[Access]:
    f = op.field
    name = op.name.removeprefix("accel.")
    if name in ("ld", "st"):
        rows, cols, stride = int(f("rows")), int(f("cols")), int(f("stride"))
        dram = (f"dram:{f('seg')}", int(f("off")), int(f("off")) + (rows - 1) * stride + cols)
        chip = _on_chip(str(f("buf")), int(f("sram")), rows * cols)
        return [(*dram, name == "st"), (*chip, name == "ld")]
    if name.endswith("gemm"):
        return _gemm_footprint(op, name, cfg)
    if name == "valu":
        return _valu_footprint(op)
    return []


def _gemm_footprint(op: InstructionOp, name: str, cfg: dict[str, int | str]) -> list[Access]:
    f = op.field
    m, n, k = int(f("m")), int(f("n")), int(f("k"))
    code = weight_code(str(cfg["wcode"]), bool(cfg["wzp"]))
    abits = int(cfg["abits"])
    acc = (*_on_chip("acc", int(f("acc")), m * n * 4), True)
    if name == "gemm":
        dense = [(*_on_chip("inp", int(f("inp")), m * k * abits / 8), False),
                 (*_on_chip("wgt", int(f("wgt")), tile_bytes(code, n, k)), False), acc]  # fmt: skip
        if not (cfg["wzp"] and n):
            return dense
        zero_points = int(f("zcol")) + (n - 1) * int(cfg["zstride"]) + 1  # as functional.py reads them
        return [*dense, (*_on_chip("scl", int(f("zp")), zero_points), False)]
    if name == "spgemm":
        nm = NMCodec(int(cfg["n"]), int(cfg["m"]), k)
        return [(*_on_chip("inp", int(f("inp")), m * k * abits / 8), False),
                (*_on_chip("wgt", int(f("wgt")), tile_bytes(code, n, nm.slots)), False),
                (*_on_chip("meta", int(f("meta")), n * nm.words * INDEX_WORD_BYTES), False), acc]  # fmt: skip
    if name == "bsgemm":
        return [(*_on_chip("inp", int(f("inp")), m * k / 2), False),
                (*_on_chip("meta", int(f("meta")), m * k / 8), False),
                (*_on_chip("wgt", int(f("wgt")), tile_bytes(code, n, k)), False), acc]  # fmt: skip
    dense_k = k // int(cfg["count"]) * int(cfg["group"])  # sqgemm: k counts slots, inp is k-chunked
    chunk = int(cfg["chunk"]) or dense_k
    chunked = sum(-(-m * min(chunk, dense_k - c) // LINE_BYTES) for c in range(0, dense_k, chunk)) * LINE_BYTES
    return [(*_on_chip("inp", int(f("inp")), chunked), False), (*_on_chip("wgt", int(f("wgt")), n * k), False),
            (*_on_chip("meta", int(f("meta")), n * k * 2), False), acc]  # fmt: skip


def _valu_footprint(op: InstructionOp) -> list[Access]:
    f = op.field
    kind, rows, cols = str(f("op")), int(f("rows")), int(f("cols"))
    count = rows * cols
    if kind == "quant":
        chunk = int(f("aux"))
        staged = sum(-(-rows * min(chunk, cols - c) * 4 // LINE_BYTES) for c in range(0, cols, chunk)) * LINE_BYTES
        codes = sum(-(-rows * min(chunk, cols - c) // LINE_BYTES) for c in range(0, cols, chunk)) * LINE_BYTES
        return [(*_on_chip("acc", int(f("src")), staged), False), (*_on_chip("inp", int(f("dst")), codes), True),
                (*_on_chip("scl", int(f("scl")), rows * 4), True)]  # fmt: skip
    if kind == "split":
        return [(*_on_chip("inp", int(f("src")), count), False), (*_on_chip("inp", int(f("dst")), count / 2), True),
                (*_on_chip("inp", int(f("aux")), count / 2), True), (*_on_chip("meta", int(f("scl")), count / 8), True)]  # fmt: skip
    if kind == "half":
        return [(*_on_chip("scl", int(f("src")), count * 2), False), (*_on_chip("scl", int(f("dst")), count * 4), True)]
    accesses: list[Access] = [(*_on_chip("acc", int(f("src")), count * 4), False),
                              (*_on_chip("acc", int(f("dst")), count * 4), True)]  # fmt: skip
    bcast = str(f("bcast"))
    if kind in ("scale", "macc", "mul", "add", "addi"):
        vector = {"none": count, "row": rows, "col": cols, "scalar": 1}[bcast]
        span = int(f("aux")) + (vector - 1) * (int(f("stride")) or 1) + 1
        accesses.append((*_on_chip("scl", int(f("scl")), span * 4), False))
    return accesses


def dependency_graph(ops: list[InstructionOp]) -> nx.DiGraph:
    """Instruction indices, with an edge u -> v when v must not start before u ends."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(ops)))
    # per memory: (first, end) -> (last writer, readers since)
    regions: dict[str, dict[tuple[int, int], tuple[int | None, list[int]]]] = defaultdict(dict)
    keys = ("abits", "wcode", "n", "m", "group", "count", "chunk", "wzp", "zstride")
    cfg: dict[str, int | str] = {**dict.fromkeys(keys, 0), "abits": 8, "wcode": WEIGHT_CODES[0]}
    # DRAM that no instruction writes (the kernel's inputs) orders nothing
    written = {f"dram:{op.field('seg')}" for op in ops if isinstance(op, accel.StoreOp | accel.ReadCounterOp)}
    for v, op in enumerate(ops):
        if isinstance(op, accel.ConfigOp):
            cfg = {k: op.field(k) for k in keys}
        accesses = [a for a in footprint(op, cfg) if not a[0].startswith("dram:") or a[0] in written]
        for mem, lo, hi, write in accesses:
            for (a, b), (writer, readers) in regions[mem].items():
                if a < hi and lo < b:
                    if writer is not None:
                        graph.add_edge(writer, v)
                    if write:
                        graph.add_edges_from((r, v) for r in readers)
        for mem, lo, hi, write in accesses:
            writer, readers = regions[mem].get((lo, hi), (None, []))
            regions[mem][(lo, hi)] = (v, []) if write else (writer, [*readers, v])
            if write:  # v already depends on every overlapping region's readers
                for key in [key for key in regions[mem] if key != (lo, hi) and key[0] < hi and lo < key[1]]:
                    regions[mem][key] = (v, [])
    graph.remove_edges_from([(u, v) for u, v in graph.edges if u == v])
    return graph


def token_edges(ops: list[InstructionOp], graph: nx.DiGraph) -> list[tuple[int, int]]:
    """The cross-queue edges that need a token (see the module's docstring)."""
    queues = [op.queue for op in ops]
    position: list[int] = []
    counts = dict.fromkeys(QUEUES, 0)
    for q in queues:
        position.append(counts[q])
        counts[q] += 1
    known: list[dict[str, int]] = []  # per instruction: per queue, the last position finished before it starts
    last_of_queue: dict[str, int] = {}
    tokens = []
    for v in range(len(ops)):
        q = queues[v]
        clock = dict(known[last_of_queue[q]]) if q in last_of_queue else dict.fromkeys(QUEUES, -1)
        if q in last_of_queue:
            clock[q] = max(clock[q], position[last_of_queue[q]])
        for u in sorted(graph.predecessors(v), reverse=True):  # latest first: it may imply the others
            if queues[u] != q and clock[queues[u]] < position[u]:
                tokens.append((u, v))
                clock = {k: max(c, known[u][k]) for k, c in clock.items()}
                clock[queues[u]] = position[u]
        known.append(clock)
        last_of_queue[q] = v
    return tokens


def schedule(fn: func.FuncOp) -> None:
    ops = [op for op in fn.body.ops if isinstance(op, InstructionOp)]
    tokens = token_edges(ops, dependency_graph(ops))
    waits: dict[int, int] = defaultdict(int)
    signals: dict[int, int] = defaultdict(int)
    for u, v in tokens:
        waits[v] |= 1 << QUEUES.index(ops[u].queue)
        signals[u] |= 1 << QUEUES.index(ops[v].queue)
    for i, op in enumerate(ops):
        for key, masks in (("wait", waits), ("signal", signals)):
            if masks.get(i):
                op.properties[key] = StringAttr(queue_names(masks[i]))
            else:
                op.properties.pop(key, None)


@dataclass(frozen=True)
class AccelSchedule(ModulePass):
    name = "accel-schedule"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                schedule(fn)
