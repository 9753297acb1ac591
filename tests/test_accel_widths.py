"""The accelerator runs every uniform width, int3, int5 and int6 included (bit planes,
one DMA each), and ragged last scale groups, against the reference (issue 16)."""

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


@pytest.mark.parametrize("layout", ["int3(axis=0, symmetric=false)", "int6(group=64, symmetric=false)"])
def test_asymmetric_weights_get_a_located_error(layout: str) -> None:
    """The MAC array has no zero-point operand yet: refused where the product is written."""
    source = (f"kernel f(x: f32[M, 128], w: f32[32, 128] @ {layout}) -> f32[M, 32] "
              "{ return linear(quantize(x, int8(per=token)), w) }")  # fmt: skip
    k = stoicc_py.compile(source, target="accel").f
    with pytest.raises(stoicc_py.CompileError, match=r"^<string>:1:\d+: error: the accel target runs symmetric weight"):
        k.program_for(M=4)
