"""The formats benchmarked on the CPU: one small .tdsl kernel each, and its weights.

Every format is a linear layer `y[M, N] = x[M, K] @ w[N, K]^T` whose weight has
static dims (sparse and quantized layouts need them) and whose M is a size symbol,
so one compiled kernel serves every M of an (N, K) pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import stoicc_py
from stoicc_py.arrays import bf16_dtype
from stoicc_py.packing import PackedTensor

Array = np.ndarray[Any, Any]
HYBRID_NM_FRACTION = 0.5
"""The fraction of hybrid tiles stored 2:4 (the others dense)."""
HYBRID_TILES = (128, 64, 32, 16, 8, 4)


@dataclass(frozen=True)
class Format:
    """One weight format: its kernel's layout and body, and how to make its weight."""

    key: str  # the name on the command line and in the JSON
    label: str
    layout: str  # the weight's layout ("" for dense); {tile} is filled for hybrid
    body: str = "linear(x, w)"
    integer: bool = False  # i8 x i8 -> i32 (else f32 activations and results)
    sparse: bool = False  # GFLOP/s are dense-equivalent (2 M N K, zeros included)
    torch_match: str = ""  # the PyTorch baseline of the same weight precision
    dtype: str = "f32"  # of x, w and the result unless integer: f32 or bf16
    stored_kn: bool = False  # w stored [K, N] (`matmul(x, w)`, the spelling users write first), not [N, K]
    zeros: str = ""  # a csr or block weight's zeros, made before packing: "rows" (half of each row), "blocks" (half the 8x8 blocks)

    def source(self, n: int, k: int) -> str:
        dtype, out = ("i8", "i32") if self.integer else (self.dtype, self.dtype)
        layout = f" @ {self.layout.format(tile=hybrid_tile(n, k))}" if self.layout else ""
        shape = f"[{k}, {n}]" if self.stored_kn else f"[{n}, {k}]"
        return f"kernel f(x: {dtype}[M, {k}], w: {dtype}{shape}{layout}) -> {out}[M, {n}] {{ return {self.body} }}"

    @property
    def rtol(self) -> float:
        """Against the float64 reference, relative to the largest |value|: a bf16 result
        is rounded to 8 significant bits (2^-9 of each value)."""
        return 1e-2 if self.dtype == "bf16" else 1e-4

    def array(self, values: Array) -> Array:
        """f32 values as this format's dense operands (rounded to bf16 for bf16)."""
        return values.astype(bf16_dtype()) if self.dtype == "bf16" else values


FORMATS: dict[str, Format] = {
    f.key: f
    for f in (
        Format("dense", "dense f32", ""),
        Format("dense-bf16", "dense bf16", "", dtype="bf16", torch_match="torch bf16"),
        Format("dense-kn", "dense f32, w [K, N]", "", "matmul(x, w)", stored_kn=True),
        Format("nm24", "2:4 f32", "nm(2, 4)", sparse=True),
        Format("hybrid50", "hybrid 50% 2:4", "hybrid(tile=[{tile}, {tile}], formats=[dense, nm(2, 4)])", sparse=True),
        Format("int8", "int8 per-channel", "int8(axis=0)", torch_match="torch int8"),
        Format("int4", "int4 g128", "int4(group=128)", torch_match="torch int4 g128"),
        Format("int4-kn", "int4 g128, w [K, N]", "int4(group=128)", "matmul(x, w)", stored_kn=True),
        # weight-only with bf16 activations, against torch's bf16 dense linear (issue 19's target)
        Format("int8-bf16", "int8 per-channel, bf16 x", "int8(axis=0)", dtype="bf16", torch_match="torch bf16"),
        Format("int4-bf16", "int4 g128, bf16 x", "int4(group=128)", dtype="bf16", torch_match="torch bf16"),
        Format("nm24-bf16", "2:4 bf16", "nm(2, 4)", sparse=True, dtype="bf16", torch_match="torch bf16"),
        # The scale groups of `S with Q` count stored values: 64 of them span 128 columns.
        Format(
            "nm24-int4", "2:4 + int4 g128", "nm(2, 4) with int4(group=64)", sparse=True, torch_match="torch int4 g128"
        ),
        Format("ternary", "ternary per-channel", "ternary(axis=0)"),
        Format("binary", "binary per-channel", "binary(axis=0)"),
        Format("int2", "int2 g32", "int2(group=32)"),
        Format("int3", "int3 g32", "int3(group=32)"),
        Format("int5", "int5 g32", "int5(group=32)"),
        Format("int6", "int6 g32", "int6(group=32)"),
        Format("int4-float", "int4 g32 zero=float (Q4_1)", "int4(group=32, zero=float, scale=f16)"),
        Format("sq", "SQ: int4 g64 + 1% int8", "sq(low=int4(group=64), high=int8, high_density=0.01)"),
        Format("nm48", "4:8 f32", "nm(4, 8)", sparse=True),
        Format("block50", "block 8x8, 50% of blocks", "block([8, 8])", sparse=True, zeros="blocks"),
        Format("csr50", "csr 50%", "csr", sparse=True, zeros="rows"),
        Format(
            "w8a8",
            "W8A8 (per-token x)",
            "int8(axis=0)",
            "linear(quantize(x, int8(per=token)), w)",
            torch_match="torch int8",
        ),
        Format(
            "w4a8-q4_1",
            "W4A8 Q4_1 grid (per-token x)",
            "int4(group=32, zero=float, scale=f16)",
            "linear(quantize(x, int8(per=token)), w)",
        ),
        Format(
            "w4a8-q4_1-g32",
            "W4A8 Q4_1 grid (x per group of 32, q8_1's)",
            "int4(group=32, zero=float, scale=f16)",
            "linear(quantize(x, int8(group=32)), w)",
        ),
        Format(
            "w8a7",
            "W8A7 (per-token 7-bit x)",
            "int8(axis=0)",
            "linear(quantize(x, int7(per=token)), w)",
            torch_match="torch int8",
        ),
        Format("i8", "i8 x i8 -> i32", "", integer=True),
        Format(
            "sq-act",
            "SQ activations (int8 + 3 outliers per 64)",
            "",
            "linear(quantize(x, sq(low=int8(per=token), high=int8(axis=0), group=64, count=3)), w)",
        ),
        Format(
            "bitsplit",
            "bit-split activations on int8 weights",
            "int8(axis=0)",
            "linear(quantize(x, bitsplit(int8, low_bits=4, offset=true)), w)",
        ),
    )
}


def hybrid_tile(n: int, k: int) -> int:
    """The largest tile size of HYBRID_TILES dividing both dims."""
    for tile in HYBRID_TILES:
        if n % tile == 0 and k % tile == 0:
            return tile
    raise ValueError(f"hybrid: no tile size in {HYBRID_TILES} divides {n} x {k}")


@dataclass
class Weight:
    """A format's weight, as its kernel takes it, with what it costs in bytes."""

    arg: Array | PackedTensor
    bytes: dict[str, int]  # values / metadata / scales / table / total
    work_ratio: float  # dense multiply-adds over the ones the format must do


def make_weight(fmt: Format, kernel: Any, n: int, k: int, rng: np.random.Generator) -> Weight:
    """A random weight in `fmt`: int8 codes for i8, else standard normal, pruned by magnitude
    to the sparse pattern (2:4 everywhere, or in a random half of the hybrid tiles)."""
    if fmt.integer:
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        return Weight(w, _dense_bytes(w), 1.0)
    w = rng.standard_normal((n, k)).astype(np.float32)
    if fmt.stored_kn:
        w = np.ascontiguousarray(w.T)
    if not fmt.layout:
        w = fmt.array(w)
        return Weight(w, _dense_bytes(w), 1.0)
    if fmt.key == "hybrid50":
        plan, nm_fraction = _hybrid_plan(n, k, rng)
        packed = kernel.pack("w", w, prune="magnitude", plan=plan)
        return Weight(packed, packed.nbytes_breakdown(), 1 / (1 - nm_fraction / 2))
    if fmt.zeros:
        _zero_half(w, fmt.zeros, rng)
    packed = kernel.pack("w", w, prune="magnitude" if fmt.sparse and not fmt.zeros else None)
    return Weight(packed, packed.nbytes_breakdown(), 2.0 if fmt.sparse else 1.0)


def _zero_half(w: Array, where: str, rng: np.random.Generator) -> None:
    """Zero half of `w` in place: the smaller half of each row ("rows"), or a random half
    of its 8 x 8 blocks ("blocks"; w's dims are multiples of 8)."""
    if where == "rows":
        w[np.abs(w) < np.median(np.abs(w), axis=1, keepdims=True)] = 0
        return
    zeroed = rng.random((w.shape[0] // 8, w.shape[1] // 8)) < 0.5
    w[np.kron(zeroed, np.ones((8, 8), dtype=bool))] = 0


def _hybrid_plan(n: int, k: int, rng: np.random.Generator) -> tuple[Array, float]:
    """Table codes: 2 (the nm format) for a random HYBRID_NM_FRACTION of the tiles, else 1 (dense)."""
    tile = hybrid_tile(n, k)
    count = (n // tile) * (k // tile)
    codes = np.ones(count, dtype=np.int8)
    nm_tiles = round(count * HYBRID_NM_FRACTION)
    codes[rng.permutation(count)[:nm_tiles]] = 2
    return codes.reshape(n // tile, k // tile), nm_tiles / count


def _dense_bytes(w: Array) -> dict[str, int]:
    return {"values": w.nbytes, "metadata": 0, "scales": 0, "table": 0, "total": w.nbytes}


def make_activations(fmt: Format, m: int, k: int, rng: np.random.Generator) -> Array:
    if fmt.integer:
        return rng.integers(-128, 128, (m, k), dtype=np.int8)
    return fmt.array(rng.standard_normal((m, k)).astype(np.float32))


def compile_kernel(fmt: Format, n: int, k: int) -> Any:
    """The compiled kernel `f` of `fmt` for an (N, K) weight (from the on-disk cache if warm)."""
    return stoicc_py.compile(fmt.source(n, k)).f


def check(got: Array, want: Array, rtol: float) -> tuple[bool, float]:
    """(passed, error relative to the largest |reference|): integers must be exact."""
    scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
    error = float(np.max(np.abs(got.astype(np.float64) - want))) / scale if want.size else 0.0
    if got.dtype.kind == "i":
        return bool(np.array_equal(got, want)), error
    return bool(error <= rtol), error
