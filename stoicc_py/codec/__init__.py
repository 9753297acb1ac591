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
from collections.abc import Callable, Sequence
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
