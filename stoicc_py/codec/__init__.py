"""One codec per format: the single definition of the bits inside a layout's buffers.

`LayoutAttr.storage()` says which buffers a tensor in a layout has (roles, shapes,
element types); a codec says what the bits in them mean: field widths, word size,
order, sign handling, table codes. It is derived once from the layout attribute and
the tensor's shape, as typed data, and every consumer asks it:

- the packer (`stoicc_py.packing.pack`) and `PackedTensor.unpack()/dequantize()/validate()`
  call its numpy `encode`, `decode` and `check`;
- the reference interpreter and the accelerator's functional simulator decode through it;
- the IR-side decoders (`stoicc_py.codegen`), which emit the decode of the fields in
  loop nests, vector kernels and accelerator programs, read its fields.

A new format is a new codec module, registered by the dialect of its attribute
(`register(Attr)(factory)` at the bottom of that dialect's module), and its docs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

Array = np.ndarray[Any, Any]


class Layout(Protocol):
    """What the registry reads of a layout attribute (stoicc_py.dialects.layout.LayoutAttr):
    codecs sit below the dialects, and each dialect registers its attributes' codecs."""

    def summary(self) -> str: ...


class Codec(ABC):
    """The bits of one tensor shape in one layout (a frozen dataclass in each format's module)."""

    @abstractmethod
    def encode(self, w: Array) -> dict[str, Array]:
        """The buffers (role -> array) that hold matrix `w`, which already satisfies the layout."""

    @abstractmethod
    def decode(self, arrays: dict[str, Array]) -> Array:
        """The logical matrix held by buffers `arrays`; inverse of `encode`."""

    @abstractmethod
    def check(self, arrays: dict[str, Array]) -> None:
        """ValueError naming the first malformed field of buffers whose dtypes and shapes
        already match the storage (stray bits, unordered indices, bad table codes)."""

    def row_granule(self) -> int:
        """The rows of one unit of the storage (an N:M or code row, a block row, a tile row):
        cut_rows cuts at its multiples; 0 where the format cannot cut its rows (the default)."""
        return 0

    def cut_rows(self, arrays: dict[str, Array], start: int, stop: int) -> dict[str, Array]:
        """The buffers of rows [start, stop) of the matrix in `arrays`, as views (no copy) that a
        kernel reads as a whole matrix of stop - start rows: a kernel call on a slice of the
        weight's rows (stoicc_py.abi.ColumnSplit). `start` and `stop` are multiples of
        row_granule(), or `stop` is the last row; a schedule's entries (row pointers into
        whole cols/values) keep their absolute offsets."""
        raise ValueError(f"{type(self).__name__}: the format cannot cut its rows")


def cut_leading(arrays: dict[str, Array], roles: Iterable[str], rows: int, start: int, stop: int) -> dict[str, Array]:
    """`arrays` with each buffer of `roles`, which holds `rows` matrix rows row-major (its axis 0
    a multiple of `rows`: [rows, ...] or groups of a row flattened), cut to rows [start, stop)."""
    out = dict(arrays)
    for role in roles:
        per = arrays[role].shape[0] // rows
        out[role] = arrays[role][start * per : stop * per]
    return out


def cut_schedule(arrays: dict[str, Array], rowptrs: Iterable[str], start: int, stop: int) -> dict[str, Array]:
    """`arrays` with each row pointer buffer of `rowptrs` cut to schedule rows [start, stop) (its
    stop + 1 entries); the entries they point at stay whole, at their absolute offsets."""
    return arrays | {role: arrays[role][start : stop + 1] for role in rowptrs}


CodecFactory = Callable[[Any, Sequence[int]], Codec]
_REGISTRY: dict[type[Layout], CodecFactory] = {}


def register(attr: type[Layout]) -> Callable[[CodecFactory], CodecFactory]:
    """Decorator: the factory that derives `attr`'s codec from (layout, shape)."""

    def add(factory: CodecFactory) -> CodecFactory:
        _REGISTRY[attr] = factory
        return factory

    return add


def codec_for(layout: Layout, shape: Sequence[int]) -> Codec:
    """The codec of a tensor of `shape` in `layout`; the one registry keyed by attribute type."""
    factory = _REGISTRY.get(type(layout))
    if factory is None:
        raise ValueError(f"no codec for layout {layout.summary()}")
    return factory(layout, shape)
