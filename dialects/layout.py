"""The `layout` dialect: how a tensor's logical values are stored.

Every tensor type carries a `LayoutAttr`. Dense storage is one layout among others
(`#layout.dense`), not a special case of the type system; the `sparse` and `quant`
dialects add their layouts by subclassing `LayoutAttr`, and `#layout.with<S, Q>`
composes a sparse layout with a quantized one.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence

from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, IntAttr, MemRefType, StringAttr, f32
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, TypeAttribute
from xdsl.irdl import irdl_attr_definition
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

Dim = int | str
"""A tensor dimension: a static size or the name of a size bound at call time."""


BUFFER_KINDS = ("values", "metadata", "table")
BUFFER_ALIGNMENT = 64
"""Every buffer (packed or allocated by a kernel) starts on a cache-line boundary,
which 512-bit vector loads want."""


@irdl_attr_definition
class BufferAttr(ParametrizedAttribute):
    """One physical buffer of a stored tensor: its role, memref type and kind.

    kind is "values" (the numbers), "metadata" (per-element or per-block
    indices) or "table" (row pointers, tile tables): the byte breakdown's groups.
    """

    name = "layout.buffer"

    role: StringAttr
    type: MemRefType
    kind: StringAttr

    def __init__(self, role: str, type: MemRefType, kind: str = "values"):
        super().__init__(StringAttr(role), type, StringAttr(kind))

    def verify(self) -> None:
        if self.kind.data not in BUFFER_KINDS:
            raise VerifyException(f"buffer kind must be one of {', '.join(BUFFER_KINDS)}, got {self.kind.data}")


@irdl_attr_definition
class StorageAttr(ParametrizedAttribute):
    """The physical buffers of a tensor in a layout: the one description that the
    packer fills and the kernel reads. `params` holds the encoding choices (index
    bits, indices per word, ...)."""

    name = "layout.storage"

    buffers: ArrayAttr[BufferAttr]
    params: DictionaryAttr

    def __init__(self, buffers: Sequence[BufferAttr], params: dict[str, int] | None = None):
        super().__init__(ArrayAttr(buffers), DictionaryAttr({k: IntAttr(v) for k, v in (params or {}).items()}))

    def buffer(self, role: str) -> MemRefType:
        for b in self.buffers.data:
            if b.role.data == role:
                return b.type
        raise KeyError(f"no buffer '{role}' in {self}")

    def param(self, key: str) -> int:
        value = self.params.data[key]
        assert isinstance(value, IntAttr)
        return value.data

    @property
    def roles(self) -> list[str]:
        return [b.role.data for b in self.buffers.data]


def buffer(role: str, shape: Sequence[int], element: TypeAttribute = f32, kind: str = "values") -> BufferAttr:
    """A buffer whose dims are static sizes or -1 for a length known only once packed."""
    return BufferAttr(role, MemRefType(element, shape), kind)


class LayoutAttr(ParametrizedAttribute, ABC):
    """Base of every storage layout."""

    def granule(self) -> tuple[int, int]:
        """The [rows, cols] unit this layout stores together (an N:M group, a block,
        a hybrid tile), which a loop tile must never split."""
        return (1, 1)

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        """The physical buffers of a tensor of static `shape` in this layout."""
        raise VerifyException(f"layout {self.summary()} has no physical storage on this target yet")

    @property
    def is_dense(self) -> bool:
        return False

    def verify_for(self, shape: Sequence[Dim], kind: str) -> None:
        """Check that this layout can store a tensor of `shape`; raise VerifyException.

        `kind` names the element dtype ("f32", "i8", ...). Symbolic dims are checked
        at call time, so only static dims are checked here.
        """
        if not self.is_dense and len(shape) != 2:
            raise VerifyException(f"layout {self.summary()} needs a rank-2 tensor, got rank {len(shape)}")

    def summary(self) -> str:
        """The layout as written in the language, for messages."""
        return self.name


@irdl_attr_definition
class DenseLayoutAttr(LayoutAttr):
    """Row-major, uncompressed storage."""

    name = "layout.dense"

    @property
    def is_dense(self) -> bool:
        return True

    def summary(self) -> str:
        return "dense"

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        return StorageAttr([buffer("values", shape, element)])


class SparseLayoutAttr(LayoutAttr, ABC):
    """A layout that skips zeros (subclassed in the `sparse` dialect)."""


class QuantLayoutAttr(LayoutAttr, ABC):
    """A layout that stores values in fewer bits (subclassed in the `quant` dialect)."""


@irdl_attr_definition
class ComposedLayoutAttr(LayoutAttr):
    """`sparse with quant`: values compressed by the sparse pattern, then quantized."""

    name = "layout.with"

    sparse: LayoutAttr
    quant: LayoutAttr

    def verify(self) -> None:
        if not isinstance(self.sparse, SparseLayoutAttr):
            raise VerifyException(f"'with' expects a sparse layout on its left, got {self.sparse.summary()}")
        if not isinstance(self.quant, QuantLayoutAttr):
            raise VerifyException(f"'with' expects a quantized layout on its right, got {self.quant.summary()}")

    def verify_for(self, shape: Sequence[Dim], kind: str) -> None:
        self.sparse.verify_for(shape, kind)
        self.quant.verify_for(shape, kind)

    def summary(self) -> str:
        return f"{self.sparse.summary()} with {self.quant.summary()}"

    def granule(self) -> tuple[int, int]:
        return self.sparse.granule()

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            sparse = parser.parse_attribute()
            parser.parse_punctuation(",")
            quant = parser.parse_attribute()
        return (sparse, quant)

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_attribute(self.sparse)
            printer.print_string(", ")
            printer.print_attribute(self.quant)


DENSE = DenseLayoutAttr()

Layout = Dialect("layout", [], [DenseLayoutAttr, ComposedLayoutAttr, BufferAttr, StorageAttr])
