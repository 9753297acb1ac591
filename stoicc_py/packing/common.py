"""What every format packer shares: its interface, and the unpack and check of a codec's formats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX
from xdsl.utils.exceptions import VerifyException

from stoicc_py.codec import Array, codec_for
from stoicc_py.dialects.layout import LayoutAttr, StorageAttr
from stoicc_py.frontend.layouts import parse_layout

if TYPE_CHECKING:
    from stoicc_py.packing.tensor import PackedTensor


@dataclass(frozen=True)
class Options:
    prune: bool
    plan: Array | None


@dataclass(frozen=True)
class Format:
    """How one layout class packs a matrix into role -> array, unpacks, and checks the arrays
    beyond their dtypes and shapes (which the tensor checks against the storage)."""

    pack: Callable[[Array, Any, StorageAttr, Options], dict[str, Array]]
    unpack: Callable[[PackedTensor], Array]
    check: Callable[[PackedTensor], None]


def codec_unpack(packed: PackedTensor) -> Array:
    """The matrix of a tensor whose layout has a codec (codec_for), decoded by it."""
    return codec_for(packed.layout, packed.shape).decode(packed.arrays)


def codec_check(packed: PackedTensor) -> None:
    codec_for(packed.layout, packed.shape).check(packed.arrays)


def check_finite(w: Array, what: str) -> None:
    """ValueError naming the first non-finite element of the matrix w by row and column: the
    packers (pruning, patterns, scales) assume finite weights, and no kernel could honour others."""
    if w.dtype.kind == "f" and not np.isfinite(w).all():
        bad = np.argwhere(~np.isfinite(w))
        r, c = (int(i) for i in bad[0])
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{what} at row {r}, column {c} is {w[r, c]}{more}; a stored weight must be finite")


def checked_shape(layout: LayoutAttr, shape: tuple[int, ...]) -> tuple[int, int]:
    """shape as two ints, if the layout can store it: shapes are never padded to a multiple."""
    if len(shape) != 2 or not all(isinstance(d, int | np.integer) and d > 0 for d in shape):
        raise ValueError(f"a packed tensor has two positive dims, got shape {list(shape)}")
    rows, cols = int(shape[0]), int(shape[1])
    try:
        layout.verify_for([rows, cols], "f32")
    except VerifyException as err:
        raise ValueError(
            f"{layout.summary()} cannot store shape [{rows}, {cols}] (shapes are not padded): {err}"
        ) from None
    return rows, cols


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("?" if d == DYNAMIC_INDEX else str(d) for d in shape) + "]"


L = TypeVar("L", bound=LayoutAttr)


def layout_as(layout: LayoutAttr | str, kind: type[L], what: str) -> L:
    """`layout` (an attribute, or text to parse) as a `kind`, else a ValueError naming `what`."""
    layout = parse_layout(layout) if isinstance(layout, str) else layout
    if not isinstance(layout, kind):
        raise ValueError(f"expected {what}, got {layout.summary()}")
    return layout
