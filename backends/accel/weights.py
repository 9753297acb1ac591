"""The MAC array's weight operand: the bits of each `wcode` (stoicc_py.codec.uniform) and
where the bit planes of an [n, k] weight tile lie in the wgt scratchpad (docs/isa.md,
"Operands"). The lowering, accel-schedule and the functional simulator all read it.
"""

from __future__ import annotations

from stoicc_py.codec.uniform import CodeBits, Sign
from stoicc_py.dialects.accel import LINE_BYTES
from stoicc_py.dialects.quant import STORAGE_BITS


def weight_code(wcode: str, zero_points: bool = False) -> CodeBits:
    """Weight codes are symmetric two's complement, binary's +-1, or with zero points
    (cfg wzp) unsigned codes."""
    if wcode == "binary":
        return CodeBits(1, Sign.PLUS_MINUS_ONE)
    return CodeBits(STORAGE_BITS[wcode], Sign.UNSIGNED if zero_points else Sign.TWOS)


def tile_planes(code: CodeBits, n: int, k: int) -> list[tuple[int, int]]:
    """(first line, bytes) of each bit plane of an [n, k] weight tile, low plane first:
    plane p is the tile's rows of p's fields ([n, k * p.bits / 8] bytes), and each plane
    starts a line, so that one DMA per plane loads a k-chunk of planar rows. A width of
    one plane (int8 ... binary) is the plain [n, k * b / 8] tile at line 0."""
    planes, line = [], 0
    for plane in code.planes:
        nbytes = n * k * plane.bits // 8
        planes.append((line, nbytes))
        line += -(-nbytes // LINE_BYTES)
    return planes


def tile_bytes(code: CodeBits, n: int, k: int) -> int:
    """The bytes an [n, k] weight tile spans from its first line."""
    line, nbytes = tile_planes(code, n, k)[-1]
    return line * LINE_BYTES + nbytes
