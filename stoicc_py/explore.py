"""`stoicc explore`: every weight format the compiler has, tried on real weight matrices.

For each selected matrix w [N, K] and each candidate format, the compiled kernel
`linear(x, w)` in that format (benchmarks/kernels.py's kernels, one per format and
shape) runs on calibration activations x [M, K]; the result is checked against the
reference interpreter, and the table reports its bytes, the weight's and the
output's relative error, the CPU time and, on a few rows of x, the simulated
accelerator's cycles and energy. A format the compiler or the packer refuses keeps
its row, with their message (docs/explore.md). explore_report.py prints and plots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

import stoicc_py
from stoicc_py.benchmarks.kernels import FORMATS, Format, check
from stoicc_py.benchmarks.measure import time_calls
from stoicc_py.codec.schedule import tiles
from stoicc_py.diagnostics import CompileError
from stoicc_py.dialects.layout import BUFFER_KINDS
from stoicc_py.kernel import NUMPY_DTYPES
from stoicc_py.models.weights import load_array, load_weights
from stoicc_py.packing import PackedTensor
from stoicc_py.packing.common import check_finite
from stoicc_py.packing.quant import quantize

Array = np.ndarray[Any, Any]
EMBEDDINGS = "*embed*"
"""Skipped unless selected: embedding tables are looked up, not multiplied."""
RTOL = 1e-4
"""Kernel against the reference interpreter, relative to the largest reference value."""
HYBRID_LAYOUT = "hybrid(tile=[{tile}, {tile}], formats=[dense, nm(2, 4)])"
A8 = "linear(quantize(x, int8(per=token)), w)"


class ExploreError(ValueError):
    """A bad input to explore (a file, a selection, a missing optional package): the CLI says it
    in one line, as it does every ValueError."""


@dataclass(frozen=True)
class Candidate:
    """A format to try: its kernel, and how a weight is made to fit it."""

    fmt: Format
    sparsity: float = 0.0  # hybrid: plan_hybrid's target; block: the share of blocks zeroed
    block: int = 0  # block: the square block size


def candidates(tile: int) -> dict[str, Candidate]:
    """Every format explore knows, by key, in the order of its table; hybrid tiles are `tile` x `tile`."""
    hybrid = HYBRID_LAYOUT.format(tile=tile)
    sq = "sq(low=int4(group=128), high=int8, high_density=0.05)"
    chosen = [
        Candidate(FORMATS["dense"]),
        Candidate(Format("f16", "dense f16", "", dtype="f16")),
        Candidate(FORMATS["int8"]),
        Candidate(FORMATS["w8a8"]),
        Candidate(FORMATS["int4"]),
        Candidate(Format("int4-g64", "int4 g64", "int4(group=64)")),
        Candidate(Format("w4a8", "W4A8 g128 (per-token x)", "int4(group=128)", A8)),
        Candidate(Format("int2-g64", "int2 g64", "int2(group=64)")),
        Candidate(FORMATS["ternary"]),
        Candidate(FORMATS["nm24"]),
        Candidate(FORMATS["nm24-int4"]),
        Candidate(Format("nm24-int4-a8", "2:4 + int4 g128, A8", "nm(2, 4) with int4(group=64)", A8, sparse=True)),
        Candidate(Format("nm68", "6:8 f32 (25%)", "nm(6, 8)", sparse=True)),
        *(
            Candidate(Format(f"hybrid{p:g}", f"hybrid {p:g}% (cost-driven)", hybrid, sparse=True), p / 100)
            for p in (12.5, 25, 37.5)
        ),
        Candidate(Format("block50", "block 8x8, 50% zeroed", "block([8, 8])", sparse=True), 0.5, 8),
        Candidate(Format("sq", "SQ int4 g128 + 5% int8, A8", sq, A8)),
        Candidate(Format("bitsplit", "int8 x bit-split A8", "int8(axis=0)", "linear(quantize(x, bitsplit(int8)), w)")),
        # i8 x i8 -> i32 kernels, x and w rounded per tensor by explore: the accelerator's sparse weights
        Candidate(FORMATS["i8"]),
        Candidate(Format("nm24-i8", "2:4 i8 x i8", "nm(2, 4)", integer=True, sparse=True)),
        Candidate(Format("hybrid25-i8", "hybrid 25% i8 x i8", hybrid, integer=True, sparse=True), 0.25),
    ]
    return {c.fmt.key: c for c in chosen}


DEFAULT_FORMATS = tuple(candidates(64))


@dataclass(frozen=True)
class Settings:
    threads: int = 1
    accel_rows: int = 16  # rows of x simulated on the accelerator
    repeat: int = 10  # CPU calls timed (the median is reported), within `budget` seconds
    budget: float = 0.1
    on_result: Callable[[list[Result], int], None] | None = None
    """Called after each measurement with (the results so far, how many there will be): the
    CLI's progress bar and its --json file, which then holds what an interrupted run measured."""


@dataclass
class Result:
    """One matrix in one format. `error` (the compiler's or packer's message) says why the
    CPU columns are empty, `accel_error` why the accelerator's are."""

    matrix: str
    shape: tuple[int, int]
    format: str
    label: str
    bytes: dict[str, int] | None = None
    weight_error: float | None = None
    output_error: float | None = None
    cpu_ms: float | None = None
    accel_cycles: int | None = None
    accel_energy_uj: float | None = None
    error: str | None = None
    accel_error: str | None = None


@dataclass
class Calibration:
    """Activations per matrix: from a file (by the weight's name, else any array with K
    columns), or synthetic standard-normal rows, the same for every matrix of one K."""

    description: str
    arrays: dict[str, Array] = field(default_factory=dict)
    rows: int = 64
    seed: int = 0

    def activations(self, name: str, k: int) -> Array:
        if not self.arrays:
            return np.random.default_rng([self.seed, k]).standard_normal((self.rows, k)).astype(np.float32)
        x = self.arrays.get(name)
        if x is None or x.shape[1] != k:
            x = next((a for a in self.arrays.values() if a.shape[1] == k), None)
        if x is None:
            raise ExploreError(
                f"the calibration file has no activations for {name} (none so named, none with {k} columns)"
            )
        return x


def select(tensors: dict[str, Array], patterns: list[str]) -> dict[str, Array]:
    """The 2-D tensors whose names match one of the globs (none given: all but EMBEDDINGS), as float32."""
    chosen = {
        name: np.ascontiguousarray(t, np.float32)
        for name, t in tensors.items()
        if t.ndim == 2 and (any(fnmatch(name, p) for p in patterns) if patterns else not fnmatch(name, EMBEDDINGS))
    }
    if not chosen:
        raise ExploreError(f"no 2-D tensor matches {' or '.join(patterns) or 'the default selection'}")
    return chosen


def load_calibration(path: str | None, rows: int, seed: int) -> Calibration:
    if path is None:
        return Calibration(f"synthetic: {rows} standard-normal rows (seed {seed})", rows=rows, seed=seed)
    arrays = {"": load_array(path)} if Path(path).suffix == ".npy" else load_weights(path)
    arrays = {name: np.ascontiguousarray(a, np.float32) for name, a in arrays.items() if a.ndim == 2}
    if not arrays:
        raise ExploreError(f"{path}: no 2-D activations [rows, K]")
    return Calibration(f"{path} ({', '.join(f'{a.shape[0]} x {a.shape[1]}' for a in arrays.values())})", arrays)


class Kernels:
    """Compiled kernels, one per (format, N, K, target): every matrix of a shape shares them.
    A refusal is kept and raised again, so that it is not compiled twice either."""

    def __init__(self) -> None:
        self._kernels: dict[tuple[str, int, int, str], Any] = {}

    def get(self, fmt: Format, n: int, k: int, target: str) -> Any:
        key = (fmt.key, n, k, target)
        if key not in self._kernels:
            try:
                self._kernels[key] = stoicc_py.compile(fmt.source(n, k), target=target).f
            except CompileError as err:
                self._kernels[key] = err
        kernel = self._kernels[key]
        if isinstance(kernel, CompileError):
            raise kernel
        return kernel


def prune_blocks(w: Array, block: int, sparsity: float) -> Array:
    """w with the `sparsity` share of its block x block blocks of smallest Frobenius norm zeroed."""
    pruned = w.copy()
    t = tiles(pruned, block, block)  # a view: zeroing a block writes `pruned`
    norms = np.linalg.norm(t, axis=(2, 3))
    smallest = np.argsort(norms.ravel(), kind="stable")[: round(sparsity * norms.size)]
    t[np.unravel_index(smallest, norms.shape)] = 0
    return pruned


@dataclass(frozen=True)
class Operands:
    """x and w as a kernel takes them: rounded to its float dtype (f32: as they are), or (an
    integer kernel) their int8 codes, each with one scale per tensor (its output times both
    scales approximates x @ w^T)."""

    x: Array
    w: Array
    x_scale: float = 1.0
    w_scale: float = 1.0

    @classmethod
    def of(cls, fmt: Format, x: Array, w: Array) -> Operands:
        if not fmt.integer:
            dtype = NUMPY_DTYPES[fmt.dtype]
            return cls(x.astype(dtype, copy=False), w.astype(dtype, copy=False))
        qx, qw = quantize(x, "int8"), quantize(w, "int8")
        return cls(qx.codes.astype(np.int8), qw.codes.astype(np.int8), float(qx.scales[0]), float(qw.scales[0]))


def _weight(c: Candidate, kernel: Any, w: Array, x: Array) -> Array | PackedTensor:
    """w as the candidate's kernel takes it: as it is (dense), packed, pruned then packed; hybrid
    tiles chosen by plan_hybrid on the activations x."""
    layout = c.fmt.layout
    if not layout:
        return w
    if layout.startswith("hybrid"):
        return kernel.pack("w", w, prune="magnitude", plan="auto", sparsity=c.sparsity, activations=x)
    if c.block:
        return kernel.pack("w", prune_blocks(w, c.block, c.sparsity))
    return kernel.pack("w", w, prune="magnitude" if c.fmt.sparse else None)


def _dense_bytes(w: Array) -> dict[str, int]:
    return dict.fromkeys(BUFFER_KINDS, 0) | {"values": w.nbytes, "total": w.nbytes}


def rel_error(want: Array, got: Array) -> float:
    """||want - got||_F / ||want||_F in float64."""
    want = want.astype(np.float64)
    return float(np.linalg.norm(want - got) / max(float(np.linalg.norm(want)), 1e-300))


def _checked(y: Array, want: Array, target: str) -> Array:
    """y, after comparing it with the reference interpreter's `want` (within a few units
    in the last place of a 16-bit float result, which the two may round apart)."""
    eps = float(ml_dtypes.finfo(y.dtype).eps) if y.dtype.kind == "f" or y.dtype == ml_dtypes.bfloat16 else 0.0
    ok, error = check(y, want, max(RTOL, 4 * eps))
    if not ok:
        raise ValueError(f"the {target} kernel's output differs from the reference interpreter's by {error:.2e}")
    return y


def _message(err: Exception) -> str:
    return err.message if isinstance(err, CompileError) else str(err)


def measure(c: Candidate, name: str, w: Array, x: Array, exact: Array, kernels: Kernels, settings: Settings) -> Result:
    """One matrix in one format: checked against the reference interpreter, then measured
    (`exact`: x @ w^T in float64)."""
    n, k = w.shape
    result = Result(name, (n, k), c.fmt.key, c.fmt.label)
    try:
        kernel = kernels.get(c.fmt, n, k, "cpu")
        kernel.threads = settings.threads
        ops = Operands.of(c.fmt, x, w)
        arg = _weight(c, kernel, ops.w, x)
        want = kernel.reference(ops.x, arg)
        y = _checked(kernel(ops.x, arg), want, "CPU")
    except (CompileError, ValueError) as err:
        result.error = _message(err)
        return result
    dense = arg.unpack() if isinstance(arg, PackedTensor) else arg
    result.bytes = arg.nbytes_breakdown() if isinstance(arg, PackedTensor) else _dense_bytes(ops.w)
    result.weight_error = rel_error(w, dense * np.float64(ops.w_scale))
    result.output_error = rel_error(exact, y * np.float64(ops.x_scale * ops.w_scale))
    result.cpu_ms = time_calls(lambda: kernel(ops.x, arg), settings.repeat, settings.budget, None).median_s * 1e3
    try:
        accel = kernels.get(c.fmt, n, k, "accel")
        x_rows = ops.x[: settings.accel_rows]
        # A kernel whose rows are independent (the compiler's row split) needs no second reference.
        want_rows = want[: len(x_rows)] if kernel.abi.row_split else kernel.reference(x_rows, arg)
        _checked(accel(x_rows, arg), want_rows, "accelerator")
        result.accel_cycles = accel.last_report.cycles
        result.accel_energy_uj = accel.last_report.total_energy_pj / 1e6
    except (CompileError, ValueError) as err:
        result.accel_error = _message(err)
    return result


def explore(
    matrices: dict[str, Array], chosen: list[Candidate], calibration: Calibration, settings: Settings
) -> list[Result]:
    """Every matrix in every candidate format (ValueError first if a matrix is not finite)."""
    for name, w in matrices.items():
        check_finite(w, f"explore: matrix '{name}'")
    kernels, total, results = Kernels(), len(matrices) * len(chosen), []
    for name, w in matrices.items():
        x = calibration.activations(name, w.shape[1])
        exact = x.astype(np.float64) @ w.T.astype(np.float64)
        for c in chosen:
            results.append(measure(c, name, w, x, exact, kernels, settings))
            if settings.on_result:
                settings.on_result(results, total)
    return results
