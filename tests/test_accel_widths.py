"""The accelerator runs every uniform width, int3, int5 and int6 included (bit planes,
one DMA each), symmetric and asymmetric (zero points), and ragged last scale groups,
against the reference (issue 16)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py

ROWS = 40  # weight rows: not a multiple of the tiles' channels either
KERNELS = {  # name -> (K, weight layout)
    "int3_channel": (256, "int3(axis=0)"),
    "int3_group": (256, "int3(group=64)"),
    "int5_channel": (256, "int5(axis=0)"),
    "int5_group": (256, "int5(group=128, scale=f16)"),
    "int6_channel": (256, "int6(axis=0)"),
    "int6_group": (256, "int6(group=64)"),
    # ragged last groups: 576 = 4.5 x 128 and 200 = 3 x 64 + 8
    "int4_576": (576, "int4(group=128)"),
    "int8_576": (576, "int8(group=128)"),
    "int3_576": (576, "int3(group=128)"),
    "int4_200": (200, "int4(group=64)"),
    "int8_200": (200, "int8(group=64)"),
    "int3_200": (200, "int3(group=64)"),
    # asymmetric: unsigned codes and uint8 zero points, per channel, per group and per tensor
    **{f"asym_{w}_channel": (256, f"{w}(axis=0, symmetric=false)") for w in ("int8", "int6", "int5", "int4", "int3", "int2")},
    **{f"asym_{w}_576": (576, f"{w}(group=128, symmetric=false)") for w in ("int8", "int6", "int5", "int4", "int3", "int2")},
    "asym_int4_200": (200, "int4(group=64, symmetric=false, scale=f16)"),
    "asym_int5_tensor": (256, "int5(symmetric=false)"),
    "asym_sq": (256, "sq(low=int4(group=64, symmetric=false), high=int8, high_density=0.1)"),
}
SOURCE = "\n".join(
    f"kernel {name}(x: f32[M, {k}], w: f32[{ROWS}, {k}] @ {layout}) -> f32[M, {ROWS}] "
    "{ return linear(quantize(x, int8(per=token)), w) }"
    for name, (k, layout) in KERNELS.items()
)


@pytest.fixture(scope="module")
def kernels() -> Any:
    return stoicc_py.compile(SOURCE, target="accel")


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_widths_and_ragged_groups_match_the_reference(kernels: Any, name: str) -> None:
    k = getattr(kernels, name)
    rng = np.random.default_rng(len(name))
    width = KERNELS[name][0]
    x, w = rand(rng, 5, width), k.pack("w", rand(rng, ROWS, width))
    assert_close(k(x, w), k.reference(x, w))


@pytest.mark.parametrize(("name", "bits"), [("int3_group", 3), ("int5_channel", 5), ("int6_group", 6)])
def test_split_widths_load_their_real_bytes(kernels: Any, name: str, bits: int) -> None:
    """A b-bit weight costs b bits of DRAM traffic, in one DMA per bit plane and k-chunk."""
    k = getattr(kernels, name)
    rng = np.random.default_rng(0)
    width = KERNELS[name][0]
    k(rand(rng, 3, width), k.pack("w", rand(rng, ROWS, width)))
    assert k.last_report.dram_bytes["values"] == ROWS * width * bits // 8
    isa = k.isa(M=3)
    assert f"wcode=int{bits}" in isa
    assert isa.count("ld     buf=wgt") == 2 * isa.count("gemm ")


@pytest.mark.parametrize("name", ["asym_int3_channel", "asym_int6_576", "asym_int5_tensor"])
def test_zero_points_are_a_gemm_operand(kernels: Any, name: str) -> None:
    """Asymmetric weights are unsigned codes that the MAC array offsets by their zero points
    (cfg wzp, gemm zp): no extra GEMM or vector pass, and the zero points' bytes loaded once
    per column tile."""
    k = getattr(kernels, name)
    width = KERNELS[name][0]
    isa = k.isa(M=3)
    assert "wzp=1" in isa
    assert isa.count("gemm ") == isa.count(" zp=") == -(-ROWS // _channels(isa)) * -(-width // _k_tile(isa))
    rng = np.random.default_rng(1)
    k(rand(rng, 3, width), k.pack("w", rand(rng, ROWS, width)))
    tiles = -(-ROWS // _channels(isa))
    scales = tiles if name.endswith("tensor") else ROWS * (-(-width // 128) if name.endswith("576") else 1)
    # f32 scales and uint8 zero points, and the 3 rows' f32 activation scales
    assert k.last_report.dram_bytes["scales"] == scales * (4 + 1) + 3 * 4


@pytest.mark.parametrize("width", ["int4", "int3", "int8"])
def test_zero_points_cost_no_array_steps(kernels: Any, width: str) -> None:
    """The array multiplies the unsigned codes in the slice of the symmetric code (c - z
    would need one bit more): the execute queue is as busy as for symmetric weights."""
    sym, asym = getattr(kernels, f"{width}_576"), getattr(kernels, f"asym_{width}_576")
    rng = np.random.default_rng(2)
    x, w = rand(rng, 3, 576), rand(rng, ROWS, 576)
    sym(x, sym.pack("w", w))
    asym(x, asym.pack("w", w))
    assert asym.last_report.macs == sym.last_report.macs
    assert asym.last_report.queues["ex"]["busy"] == sym.last_report.queues["ex"]["busy"]


def _channels(isa: str) -> int:
    return max(int(line.split(" n=")[1].split()[0]) for line in isa.splitlines() if line.startswith("gemm "))


def _k_tile(isa: str) -> int:
    return max(int(line.split(" k=")[1].split()[0]) for line in isa.splitlines() if line.startswith("gemm "))
