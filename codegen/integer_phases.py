"""Weight codes of P > 1 fields a byte (int4: 2, int2 and ternary: 4) read in place by
phase (CodeDecoder.field_phases): which weight rows a step's vector holds (phase_rows,
accumulator_rows) and the activations permuted to match (phase_parts, phase_x)."""

from __future__ import annotations

from xdsl.dialects import memref, vector
from xdsl.dialects.builtin import VectorType, i8
from xdsl.ir import SSAValue

from stoicc_py.codegen.integer_dot import Dot
from stoicc_py.codegen.integer_product import Groups, Product
from stoicc_py.codegen.loop_builder import LoopBuilder
from stoicc_py.codegen.register_blocks import for_
from stoicc_py.codegen.shuffles import shuffle
from stoicc_py.dialects.layout import BUFFER_ALIGNMENT


def accumulator_rows(cols: list[SSAValue], per: int, parts: int) -> list[list[SSAValue]]:
    """The weight rows of each accumulator of P = `per` phases: P consecutive columns,
    or with `parts` (column_sums' parts) the first columns of each part (a P/parts-th of
    the columns each) in part 0, the next ones in part 1, ..., so that the parts' sums
    hold the columns in order."""
    if parts == 1:
        return [cols[c : c + per] for c in range(0, len(cols), per)]
    each, run = len(cols) // parts, per // parts
    return [[col for h in range(parts) for col in cols[h * each + c : h * each + c + run]] for c in range(0, each, run)]


def phase_parts(b: LoopBuilder, x: SSAValue, per: int, together: int) -> list[SSAValue]:
    """A step's activation bytes as CodeDecoder.field_phases pairs them with the weight's
    `together` rows: part j is the step's bytes k+j, k+j+per, ..., repeated for each row."""
    count = x.type.get_shape()[0]  # type: ignore[attr-defined]
    return [shuffle(b, x, x, list(range(j, count, per)) * together) for j in range(per)]


def phase_rows(dot: Dot, per: int, groups: Groups) -> int:
    """The weight rows of P = `per` phases whose bytes a step's vector holds: P, each a
    P-th of the step's bytes; on AVX2, one to a 128-bit half (Dot.halves), where such
    steps (of step * P / 2 codes) tile the groups: int2's and ternary's 16 bytes of 64
    codes a row, where 4 rows of 8 bytes took a 64-bit load and an insert each. 0: not
    phased (P = 1, or a row's bytes would not fill whole dwords)."""
    if per < 2:
        return 0
    together = min(per, dot.halves) if dot.halves > 1 else per
    span = dot.step * per // together
    if together < per and groups.count > 1 and (groups.length is None or groups.length % span):
        together = per
    return together if dot.step % (4 * together) == 0 else 0


def phase_x(b: LoopBuilder, product: Product, dot: Dot, rows: tuple[SSAValue, SSAValue]) -> SSAValue | None:
    """With AVX2's MADD steps (Dot.halves) and P > 1 phases of weight codes, a scratch
    i8[m, P * K] of x's `rows` (lo, hi) permuted as the phased steps read them: the P
    parts of the step at k (phase_parts) at P*k, P*k + step, ... Built once per call,
    so that every column block's step loads its parts (into pmaddubsw's memory operand)
    where each permuted them again (a byte shuffle and a lane permute per part)."""
    per, k_size = product.w.decoder.phases, product.x.type.get_shape()[1]  # type: ignore[attr-defined]
    together = phase_rows(dot, per, product.groups)
    span = dot.step * per // max(together, 1)
    if dot.halves == 1 or together == 0 or k_size < span:
        return None
    whole = k_size // span * span
    m_size = product.x.type.get_shape()[0]  # type: ignore[attr-defined]
    alloc = b.insert(memref.AllocOp.get(i8, BUFFER_ALIGNMENT, [m_size, together * whole], [rows[1]] if m_size < 0 else []))  # fmt: skip
    alloc.name_hint = "phase_x"

    def row(b: LoopBuilder, i: SSAValue) -> None:
        def step(b: LoopBuilder, k: SSAValue) -> None:
            at = b.mul(k, b.index(together))
            xv = b.insert(vector.LoadOp(product.x, [i, k], VectorType(i8, [span])))
            for j, part in enumerate(phase_parts(b, xv, per, together)):
                b.b.insert(vector.StoreOp(part, alloc, [i, b.offset(at, j * dot.step)]))

        for_(b, b.index(0), b.index(whole), span, step, "k")

    for_(b, rows[0], rows[1], 1, row, "i")
    return alloc
