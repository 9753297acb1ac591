"""The timing and energy model against analytic expectations (docs/isa.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest

import stoicc_py
from stoicc_py.backends.accel.machine import Machine, sram_pj_per_byte
from stoicc_py.backends.accel.simulator import Report, simulate
from stoicc_py.dialects.accel import InstructionOp
from stoicc_py.passes.accel_schedule import dependency_graph, token_edges

MACHINE = Machine.load()
PEAK = MACHINE.array.rows * MACHINE.array.width


def program(n: int, k: int, layout: str = "") -> Any:
    weight = f"i8[{n}, {k}]" + (f" @ {layout}" if layout else "")
    return stoicc_py.compile(f"kernel f(x: i8[M, {k}], w: {weight}) -> i32[M, {n}] {{ return linear(x, w) }}",
                             target="accel").f  # fmt: skip


def run(kernel: Any, m: int, n: int, k: int, layout: str = "") -> Report:
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    kernel(x, kernel.pack("w", w, prune="magnitude") if layout else w)
    report = kernel.last_report
    assert report.cycles >= report.ideal_cycles
    return report


def test_compute_bound_dense_gemm_keeps_the_array_busy() -> None:
    report = run(program(1024, 1024), 512, 1024, 1024)
    assert report.compute_cycles_ideal == 512 * 1024 * 1024 // PEAK
    assert report.mac_utilization >= 0.9  # double buffering hides the loads
    assert report.queues["ex"]["busy"] >= 0.9 * report.cycles


def test_2_4_halves_compute_bound_cycles() -> None:
    dense = run(program(1024, 1024), 512, 1024, 1024)
    sparse = run(program(1024, 1024, "nm(2, 4)"), 512, 1024, 1024, "nm(2, 4)")
    assert dense.cycles / sparse.cycles >= 1.8
    assert dense.queues["ex"]["busy"] / sparse.queues["ex"]["busy"] >= 1.8
    assert sparse.dense_macs == dense.dense_macs and sparse.macs * 2 == dense.macs
    assert 4 * sparse.dram_bytes["metadata"] == sparse.dram_bytes["values"]  # a 32-bit word per 16 stored values


def test_gemv_is_bounded_by_the_weight_path() -> None:
    """At M = 1 every weight tile serves one row: the array takes weights at ports.wgt
    bytes a cycle (a 32 x 32 tile in 32 cycles), slower than the 64 B/cycle DRAM."""
    report = run(program(4096, 4096), 1, 4096, 4096)
    weight_path = 4096 * 4096 / MACHINE.ports.wgt
    dram = sum(report.dram_bytes.values()) / MACHINE.dram.bytes_per_cycle
    assert dram < weight_path <= report.cycles <= 1.05 * weight_path
    assert report.dram_bytes["values"] == 4096 * 4096  # every weight once


def test_gemv_stays_bounded_with_unlimited_dram(tmp_path: Path) -> None:
    """The issue's case: with 2048 B/cycle of DRAM the GEMV used to report 87% of the
    array; one activation row per 32-cycle weight-tile load bounds it to 1/32."""
    (tmp_path / "fast.toml").write_text("[dram]\nbytes_per_cycle = 2048\n")
    kernel = stoicc_py.compile("kernel f(x: i8[M, 1024], w: i8[1024, 1024]) -> i32[M, 1024] { return linear(x, w) }",
                               target="accel", machine=str(tmp_path / "fast.toml")).f  # fmt: skip
    report = run(kernel, 1, 1024, 1024)
    assert report.mac_utilization <= 1 / 32
    assert report.cycles >= 1024 * 1024 / MACHINE.ports.wgt


def quantized(codes: str) -> Any:
    return stoicc_py.compile(
        f"kernel f(x: f32[M, 2048], w: f32[2048, 2048] @ {codes}(axis=0)) -> f32[M, 2048] {{"
        " return linear(quantize(x, int8(per=token)), w) }", target="accel").f  # fmt: skip


def test_int4_weights_halve_dram_bytes() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2048), np.float32), rng.standard_normal((2048, 2048), np.float32)
    reports = {}
    for codes in ("int8", "int4"):
        k = quantized(codes)
        k(x, k.pack("w", w))
        reports[codes] = k.last_report
    assert reports["int8"].dram_bytes["values"] == 2 * reports["int4"].dram_bytes["values"]
    assert reports["int8"].dram_bytes["scales"] == reports["int4"].dram_bytes["scales"]
    assert 1.8 <= reports["int8"].cycles / reports["int4"].cycles <= 2.0  # a GEMV: bound by the weight bytes
    assert reports["int4"].energy_pj["dram"] < 0.55 * reports["int8"].energy_pj["dram"]


def test_zero_operands_gate_the_multipliers() -> None:
    k = program(256, 256)
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (256, 256), dtype=np.int8)
    k(rng.integers(1, 128, (64, 256), dtype=np.int8), w)
    busy = k.last_report
    k(np.zeros((64, 256), np.int8), w)
    idle = k.last_report
    assert idle.cycles == busy.cycles  # gating saves energy, not time
    assert idle.energy_pj["mac"] < 0.2 * busy.energy_pj["mac"]


def test_a_large_gemm_simulates_quickly() -> None:
    m, n, k = 512, 4096, 4096
    kernel = program(n, k)
    machine_program = kernel.program_for(M=m)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    start = time.thread_time()  # this thread's CPU: neither other jobs nor BLAS threads spinning count
    outputs, report = simulate(machine_program, {"x": x, "w": w})
    seconds = time.thread_time() - start
    assert seconds < 10
    got = np.frombuffer(outputs["%out0"], np.int32).reshape(m, n)
    np.testing.assert_array_equal(got[:8], (x[:8].astype(np.float64) @ w.T.astype(np.float64)).astype(np.int32))
    assert report is not None and report.mac_utilization >= 0.95


@pytest.mark.parametrize("source", [
    "kernel f(x: i8[M, 256], w: i8[128, 256] @ nm(2, 4)) -> i32[M, 128] { return linear(x, w) }",
    "kernel f(x: f32[M, 256], w: f32[128, 256] @ int4(group=64), b: f32[128]) -> f32[M, 128] {"
    " return relu(linear(quantize(x, bitsplit(int8)), w, b)) }",
])  # fmt: skip
def test_tokens_are_the_cross_queue_edges_of_the_transitive_reduction(source: str) -> None:
    fn = stoicc_py.compile(source, target="accel").f.program.lowered("f", {"M": 70})
    ops = [op for op in fn.body.ops if isinstance(op, InstructionOp)]
    graph = dependency_graph(ops)
    chains = nx.DiGraph(graph)
    for queue in ("ld", "ex", "st"):
        on_queue = [i for i, op in enumerate(ops) if op.queue == queue]
        chains.add_edges_from(zip(on_queue, on_queue[1:]))
    reduced = nx.transitive_reduction(chains)
    cross = {(u, v) for u, v in reduced.edges if ops[u].queue != ops[v].queue}
    assert set(token_edges(ops, graph)) == cross
    assert cross  # the program does need tokens


def _machine(tmp_path: Path, text: str) -> Machine:
    (tmp_path / "m.toml").write_text(text)
    return Machine.load(tmp_path / "m.toml")


def test_array_pass_follows_the_dataflow(tmp_path: Path) -> None:
    """64 rows of 64 slots against 128 channels: 4 x 2 = 8 weight tiles (ws) or 2 x 4 = 8
    output blocks (os) of 32 x 32; a tile loads in 32 cycles, a wavefront fills and drains
    in 62, 32 outputs leave per 32 cycles (docs/isa.md, "The MAC array")."""
    rows = [64] * 64
    ws = MACHINE.array_pass(rows, 128)
    assert (ws.cycles, ws.acc_passes, ws.wgt_passes) == (32 + max(4 * 64 * 2, 8 * 32) + 62, 2, 1)
    single = _machine(tmp_path, "[array]\ndouble_buffered = false\n").array_pass(rows, 128)
    assert single.cycles == 4 * 64 * 2 + 8 * (32 + 62)  # SCALE-Sim: per tile, load + rows + fill and drain
    os_ = _machine(tmp_path, '[array]\ndataflow = "os"\ndouble_buffered = false\n').array_pass(rows, 128)
    assert (os_.cycles, os_.acc_passes, os_.wgt_passes) == (4 * 2 * 64 + 8 * 62, 1, 2)
    narrow = _machine(tmp_path, "[ports]\nacc = 64\n").array_pass(rows, 128)  # a row of partial sums: 2 cycles
    assert narrow.cycles == 32 + 2 * 4 * 64 * 2 + 62
    assert MACHINE.array_pass([], 128).cycles == MACHINE.array_pass([0] * 4, 128).cycles == 1
    fused = MACHINE.array_pass(rows, 128, act_bits=8, wgt_bits=16)  # 4-bit x on int8 w: 2 KiB tiles, 64 cycles
    assert fused.cycles == 64 + max(4 * 64 * 2, 8 * 64) + 62
    wide = _machine(tmp_path, "[ports]\ninp = 32\n").array_pass(rows, 128, act_bits=16)  # 64-byte rows, 32 B/cycle
    assert wide.cycles == 32 + 2 * 4 * 64 * 2 + 62


def test_weight_stationary_writes_a_partial_sum_per_k_fold(tmp_path: Path) -> None:
    """acc traffic: ws writes every output once per 32-deep k-fold and reads it back for the
    next; os writes it once per GEMM instruction (one per k-chunk)."""
    m, n, k = 64, 64, 512
    for dataflow, writes in (("ws", m * n * 4 * (k // 32)), ("os", m * n * 4 * (k // 256))):
        (tmp_path / f"{dataflow}.toml").write_text(f'[array]\ndataflow = "{dataflow}"\n')
        kernel = stoicc_py.compile(f"kernel f(x: i8[M, {k}], w: i8[{n}, {k}]) -> i32[M, {n}] {{ return linear(x, w) }}",
                                   target="accel", tile=(m, n, 256), machine=str(tmp_path / f"{dataflow}.toml")).f  # fmt: skip
        acc = run(kernel, m, n, k).sram_bytes["acc"]
        assert acc["written"] == writes
        # every write is read back but the first GEMM's first fold (init), and the store reads the result
        assert acc["read"] == writes - m * n * 4 + m * n * 4


def test_energy_prices_scratchpads_by_capacity_and_dram_by_technology(tmp_path: Path) -> None:
    assert [sram_pj_per_byte(kib) for kib in (8, 32, 1024)] == pytest.approx([1.25, 2.5, 12.5])  # Horowitz 2014
    assert sram_pj_per_byte(16) == pytest.approx(1.25 * 2**0.5)  # log-log between the table's points
    kernel = program(256, 256)
    report = run(kernel, 64, 256, 256)
    bytes_ = {b: v["read"] + v["written"] for b, v in report.sram_bytes.items()}
    expected = sum(bytes_[b] * sram_pj_per_byte(getattr(MACHINE.buffers, b)) for b in bytes_ if b != "meta")
    assert report.energy_pj["scratchpad"] == pytest.approx(expected)
    (tmp_path / "hbm.toml").write_text('[dram]\ntechnology = "hbm2"\n')
    hbm = stoicc_py.compile("kernel f(x: i8[M, 256], w: i8[256, 256]) -> i32[M, 256] { return linear(x, w) }",
                            target="accel", machine=str(tmp_path / "hbm.toml")).f  # fmt: skip
    other = run(hbm, 64, 256, 256)
    assert other.cycles == report.cycles
    assert other.energy_pj["dram"] / report.energy_pj["dram"] == pytest.approx(7.0 / 13.5)
