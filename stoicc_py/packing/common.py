"""What every format packer shares: its interface, and the unpack and check of a codec's formats.

The format modules never see a PackedTensor (stoicc_py.packing.tensor, which imports them):
a format unpacks and checks (layout, shape, arrays), and the helpers that take a packed
tensor read it through `Packed`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX
from xdsl.utils.exceptions import VerifyException

from stoicc_py.codec import Array, codec_for
from stoicc_py.codec.uniform import Grid
from stoicc_py.dialects.layout import LayoutAttr, StorageAttr
from stoicc_py.frontend.layouts import parse_layout


@dataclass(frozen=True)
class Options:
    prune: bool
    plan: Array | None
    grid: Grid | None = None
    """The quantization grid a compression method chose (stoicc_py.packing.methods), else None:
    the codec computes the scales from the values."""


Shape = tuple[int, int]


class Packed(Protocol):
    """What the formats' public helpers (quant.codes_of, bitsplit.bitsplit_linear) read of a
    packed tensor; stoicc_py.packing.PackedTensor is one."""

    @property
    def layout(self) -> LayoutAttr: ...

    @property
    def shape(self) -> Shape: ...

    @property
    def arrays(self) -> dict[str, Array]: ...

    def check(self) -> None:
        """ValueError unless `arrays` are a well-formed packing of `layout` and `shape`."""


def codec_unpack(layout: LayoutAttr, shape: Shape, arrays: dict[str, Array]) -> Array:
    """The matrix held by `arrays` in a layout that has a codec (codec_for), decoded by it."""
    return codec_for(layout, shape).decode(arrays)


def codec_check(layout: LayoutAttr, shape: Shape, arrays: dict[str, Array]) -> None:
    codec_for(layout, shape).check(arrays)


@dataclass(frozen=True)
class Format:
    """How one layout class packs a matrix into role -> array, unpacks (layout, shape, arrays)
    to the matrix, and checks the arrays beyond their dtypes and shapes (which the tensor checks
    against the storage). Unpack and check default to the layout's codec."""

    pack: Callable[[Array, Any, StorageAttr, Options], dict[str, Array]]
    unpack: Callable[[Any, Shape, dict[str, Array]], Array] = codec_unpack
    check: Callable[[Any, Shape, dict[str, Array]], None] = codec_check


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
