"""The `layout` dialect: how a tensor's logical values are stored.

Every tensor type carries a `LayoutAttr`. Dense storage is one layout among others
(`#layout.dense`), not a special case of the type system; the `sparse` and `quant`
dialects add their layouts by subclassing `LayoutAttr`, and `#layout.with<S, Q>`
composes a sparse layout with a quantized one.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence

from xdsl.dialects.builtin import DYNAMIC_INDEX, ArrayAttr, DictionaryAttr, IntAttr, MemRefType, StringAttr, f32
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import IRDLOperation, irdl_attr_definition, irdl_op_definition, result_def, traits_def, var_operand_def
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from stoicc_py.codec import codec_for, register
from stoicc_py.codec.composed import ComposedCodec, composed_codec

Dim = int | str
"""A tensor dimension: a static size or the name of a size bound at call time."""


BUFFER_KINDS = ("values", "metadata", "scales", "table")
BUFFER_ALIGNMENT = 64
"""Every buffer (packed or allocated by a kernel) starts on a cache-line boundary,
which 512-bit vector loads want."""


@irdl_attr_definition
class BufferAttr(ParametrizedAttribute):
    """One physical buffer of a stored tensor: its role, memref type and kind.

    kind is "values" (the numbers, or their integer codes), "metadata" (per-element
    or per-block indices), "scales" (quantization scales and zero points) or "table"
    (row pointers, tile tables): the byte breakdown's groups. IR integers are
    signless; `unsigned` says how the packer and the kernel read this buffer's.
    """

    name = "layout.buffer"

    role: StringAttr
    type: MemRefType
    kind: StringAttr
    unsigned: IntAttr

    def __init__(self, role: str, type: MemRefType, kind: str = "values", unsigned: bool = False):
        super().__init__(StringAttr(role), type, StringAttr(kind), IntAttr(int(unsigned)))

    @property
    def is_unsigned(self) -> bool:
        return bool(self.unsigned.data)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            role = parser.parse_str_literal()
            parser.parse_punctuation(",")
            memref = parser.parse_type()
            parser.parse_punctuation(",")
            kind = parser.parse_str_literal()
            unsigned = parser.parse_optional_punctuation(",") is not None and parser.parse_keyword("unsigned")
        return (StringAttr(role), memref, StringAttr(kind), IntAttr(int(bool(unsigned))))

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f'<"{self.role.data}", ')
        printer.print_attribute(self.type)
        printer.print_string(f', "{self.kind.data}"{", unsigned" if self.is_unsigned else ""}>')

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


def buffer(role: str, shape: Sequence[int], element: TypeAttribute = f32, kind: str = "values",
           unsigned: bool = False) -> BufferAttr:  # fmt: skip
    """A buffer whose dims are static sizes or DYNAMIC_INDEX for a length known only once packed."""
    return BufferAttr(role, MemRefType(element, shape), kind, unsigned)


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


def _rows(lead: Sequence[int]) -> int:
    """How many rows the leading dims of a values buffer hold (dynamic if any is)."""
    if any(d < 0 for d in lead):
        return DYNAMIC_INDEX
    count = 1
    for d in lead:
        count *= d
    return count


def _reshaped(b: BufferAttr, prefix: str, dims: list[int], quant: QuantLayoutAttr) -> BufferAttr:
    """A quantized [rows, width] buffer laid over the values buffer's leading dims."""
    shape = list(b.type.get_shape())
    lead = dims[:-1]
    if b.role.data == "values":  # codes: the leading dims, then the packed last dim
        shape = [*lead, shape[-1] if dims[-1] >= 0 else DYNAMIC_INDEX]
    elif len(shape) == 2:  # per group: one scale per group of each row
        shape = [*lead, shape[-1]]
    elif shape != [1] and not quant.per_column:  # per row
        shape = lead or [1]
    return BufferAttr(prefix + b.role.data, MemRefType(b.type.element_type, shape), b.kind.data, b.is_unsigned)


class SparseLayoutAttr(LayoutAttr, ABC):
    """A layout that skips zeros (subclassed in the `sparse` dialect)."""

    def compressed_shape(self, shape: Sequence[Dim]) -> tuple[Dim, ...]:
        """The shape of the stored values, which a composed quantization applies to."""
        return tuple(shape)

    def storage_with(self, shape: Sequence[int], element: TypeAttribute, quant: QuantLayoutAttr) -> StorageAttr:
        """This layout's storage with every values buffer quantized by `quant`.

        A values buffer of shape [d0, ..., dn] is quantized as rows of its last dim
        (an N:M row's slots, a block's row, a hybrid tile's row): per tensor, per row
        (axis 0: one scale per leading index), or per group of that last dim. Its
        codes keep the leading dims; scales and zero points take the leading dims
        (and the group count). Encoding params are recorded as `<prefix>q.<name>`.
        """
        plain = self.storage(shape, element)
        buffers: list[BufferAttr] = []
        params = {k: plain.param(k) for k in plain.params.data}
        for b in plain.buffers.data:
            if b.kind.data != "values":
                buffers.append(b)
                continue
            prefix = b.role.data.removesuffix("values")
            dims = list(b.type.get_shape())
            per = quant.scales_per
            if len(dims) == 1 and per != "tensor":
                raise VerifyException(
                    f"{self.summary()} stores values in one list: quantize it per tensor, not per={per}"
                )
            quant.verify_for([_rows(dims[:-1]), dims[-1]], "f32")
            codes = quant.storage([_rows(dims[:-1]), dims[-1]], element)
            buffers += [_reshaped(c, prefix, dims, quant) for c in codes.buffers.data]
            params.update({f"{prefix}q.{k}": codes.param(k) for k in codes.params.data})
        return StorageAttr(buffers, params)


class QuantLayoutAttr(LayoutAttr, ABC):
    """A layout that stores values in fewer bits (subclassed in the `quant` dialect)."""

    def width_unit(self) -> int:
        """What a row's width must be a multiple of (whole scale groups, whole code bytes)."""
        return 1

    @property
    def scales_per(self) -> str:
        """Where the scales vary ("tensor", "channel", "group", "token"): how a sparse layout
        quantizes its values buffers. Only a uniform quantization composes so."""
        raise VerifyException(self._uncomposed())

    @property
    def per_column(self) -> bool:
        """One scale per column of a row (groups of one element)."""
        raise VerifyException(self._uncomposed())

    def _uncomposed(self) -> str:
        return f"{self.summary()} does not compose with a sparse layout: use a uniform quantization"


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
        assert isinstance(self.sparse, SparseLayoutAttr)
        self.sparse.verify_for(shape, kind)
        stored = self.sparse.compressed_shape(shape)
        try:
            self.quant.verify_for(stored, kind)
            group = getattr(self.quant, "group", None)
            if group is not None and group.data and isinstance(stored[-1], int) and stored[-1] % group.data:
                # no ragged last group under a sparse layout: its walks count whole groups of stored values
                raise VerifyException(f"quant: group={group.data} does not divide the reduction dimension of "
                                      f"size {stored[-1]}")  # fmt: skip
        except VerifyException as err:
            width, stored_width = shape[-1], stored[-1]
            # a symbolic width is stored as it is (compressed_shape keeps it)
            if stored_width == width or not (isinstance(width, int) and isinstance(stored_width, int)):
                raise
            raise VerifyException(self._stored_width_error(width, stored_width)) from err

    def _stored_width_error(self, width: int, stored: int) -> str:
        """Q's rule on the row width, said in the columns the user wrote (Q counts stored values)."""
        assert isinstance(self.sparse, SparseLayoutAttr) and isinstance(self.quant, QuantLayoutAttr)
        unit, step = self.quant.width_unit(), self.sparse.granule()[1]
        columns = next(
            c for c in range(step, step * unit + 1, step) if self.sparse.compressed_shape([1, c])[1] % unit == 0
        )
        group = getattr(self.quant, "group", None)
        hint = f", or use a group that divides {stored}" if group is not None and group.data else ""
        return (
            f"{self.quant.summary()} under {self.sparse.summary()} counts stored values, not columns: K={width} "
            f"columns store {stored} values per row, not a multiple of {unit}; make K a multiple of {columns}{hint}"
        )

    def summary(self) -> str:
        return f"{self.sparse.summary()} with {self.quant.summary()}"

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        assert isinstance(self.sparse, SparseLayoutAttr) and isinstance(self.quant, QuantLayoutAttr)  # verify()
        return self.sparse.storage_with(shape, element, self.quant)

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


@irdl_attr_definition
class PackedType(ParametrizedAttribute, TypeAttribute):
    """A bufferized tensor in a non-dense (sparse or quantized) layout: its logical shape, its layout, and
    the physical buffers that hold it."""

    name = "layout.packed"

    shape: ArrayAttr[IntAttr]
    layout: LayoutAttr
    storage: StorageAttr

    def __init__(self, shape: Sequence[int], layout: LayoutAttr, storage: StorageAttr):
        super().__init__(ArrayAttr(IntAttr(d) for d in shape), layout, storage)

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(d.data for d in self.shape.data)

    @property
    def is_static(self) -> bool:
        """Whether every logical dim is known when compiling (else its buffers' sizes are read
        at run time, and only the generic loop nests read it)."""
        return all(d >= 0 for d in self.dims)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        def parse_dim() -> int:
            return DYNAMIC_INDEX if parser.parse_optional_punctuation("?") else parser.parse_integer()

        with parser.in_angle_brackets():
            dims = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parse_dim)
            parser.parse_punctuation(",")
            layout = parser.parse_attribute()
            parser.parse_punctuation(",")
            storage = parser.parse_attribute()
        return (ArrayAttr(IntAttr(d) for d in dims), layout, storage)

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<[{', '.join(str(d) if d >= 0 else '?' for d in self.dims)}], ")
        printer.print_attribute(self.layout)
        printer.print_string(", ")
        printer.print_attribute(self.storage)
        printer.print_string(">")


def _matches(actual: MemRefType, expected: MemRefType) -> bool:
    return actual.element_type == expected.element_type and actual.get_shape() == expected.get_shape()


@irdl_op_definition
class AssembleOp(IRDLOperation):
    """Views a tensor's physical buffers, in storage order, as one packed tensor."""

    name = "layout.assemble"

    buffers = var_operand_def(MemRefType)
    result = result_def(PackedType)
    traits = traits_def(Pure())
    assembly_format = "$buffers attr-dict `:` type($buffers) `->` type($result)"

    def __init__(self, buffers: Sequence[SSAValue], result_type: PackedType):
        super().__init__(operands=[buffers], result_types=[result_type])

    def buffer(self, role: str) -> SSAValue:
        return self.buffers[self.result.type.storage.roles.index(role)]

    def verify_(self) -> None:
        expected = [b.type for b in self.result.type.storage.buffers.data]
        actual = [b.type for b in self.buffers]
        if len(actual) != len(expected) or not all(
            isinstance(a, MemRefType) and _matches(a, e) for a, e in zip(actual, expected)
        ):
            raise VerifyException(f"layout.assemble: buffers {actual} do not match the storage {expected}")


DENSE = DenseLayoutAttr()

Layout = Dialect("layout", [AssembleOp], [DenseLayoutAttr, ComposedLayoutAttr, BufferAttr, StorageAttr, PackedType])


def _shapes(storage: StorageAttr, kind: str | None = None) -> dict[str, tuple[int, ...]]:
    """The shape of each buffer of `storage` (of `kind`, if given) by role, the dynamic dim -1."""
    return {
        b.role.data: tuple(-1 if d == DYNAMIC_INDEX else d for d in b.type.get_shape())
        for b in storage.buffers.data
        if kind is None or b.kind.data == kind
    }


@register(ComposedLayoutAttr)
def _composed_codec(layout: ComposedLayoutAttr, shape: Sequence[int]) -> ComposedCodec:
    """S's codec and Q's, with the shapes of S's values buffers and of the composed storage."""
    plain = layout.sparse.storage(shape, f32)
    return composed_codec(codec_for(layout.sparse, shape), codec_for(layout.quant, shape),
                          _shapes(plain, "values"), _shapes(layout.storage(shape, f32)))  # fmt: skip
