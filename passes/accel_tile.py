"""accel-tile: choose each matrix product's tiles [tm, tn, tk] so that every tile,
in both of its slots, fits the accelerator's scratchpads.

tk is a weight scale group when scales are per group (one rescale per GEMM), else
up to 1024 (sums of int8 products stay exact in the simulator's float32 BLAS) and
a multiple of the weight's k alignment (whole bytes of codes, whole index words).
Then the largest tm (up to 64 rows) and tn (up to 256 channels) whose tiles fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, i64
from xdsl.passes import ModulePass

from stoicc_py.backends.accel.machine import Machine
from stoicc_py.codegen.accel_operands import Product, analyse, arenas
from stoicc_py.diagnostics import op_error
from stoicc_py.dialects.tdsl import ContractionOp

MAX_TM, MAX_TN, MAX_TK = 64, 256, 1024


def _k_tile(p: Product) -> int:
    w = p.weights
    if w.scales == "group":
        tk = w.group
    else:
        step = max(w.k_align, w.sq[0])
        tk = min(p.k, max(MAX_TK // step, 1) * step)
    if tk % w.k_align and tk != p.k:
        raise op_error(p.op, f"k-tiles of {tk} do not start on whole index words or bytes of this weight "
                             f"(a multiple of {w.k_align} is needed)")  # fmt: skip
    return tk


def _halvings(start: int) -> list[int]:
    sizes = [start]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // 2))
    return sizes


def choose_tiles(p: Product, machine: Machine) -> tuple[int, int, int]:
    if p.weights.tile_formats:  # one hybrid tile per GEMM
        th, tk = p.weights.tile_shape
        candidates = [(tm, th) for tm in _halvings(min(p.m, MAX_TM))]
    else:
        tk = _k_tile(p)
        candidates = [(tm, tn) for tm in _halvings(min(p.m, MAX_TM)) for tn in _halvings(min(p.n, MAX_TN))]
    for tm, tn in sorted(candidates, key=lambda c: (-c[0] * c[1], -c[1])):
        if all(a.fits for a in arenas(p, tm, tn, tk, machine).values()):
            return tm, tn, tk
    raise op_error(p.op, f"even one row and one channel of this product (k-tiles of {tk}) do not fit the "
                         "accelerator's scratchpads")  # fmt: skip


@dataclass(frozen=True)
class AccelTile(ModulePass):
    name = "accel-tile"

    machine: str = ""
    sizes: tuple[int, ...] = ()  # [tm, tn, tk] for every product, instead of the choice (checked to fit)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        machine = Machine.load(self.machine or None)
        for product in op.walk():
            if isinstance(product, ContractionOp) and product.tile is None:
                sizes = self.sizes or choose_tiles(analyse(product), machine)
                product.attributes["tile"] = DenseArrayBase.from_list(i64, sizes)
