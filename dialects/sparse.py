"""The `sparse` dialect: layouts that skip zeros.

Each attribute is a logical pattern; the physical buffers it becomes (values,
indices, tile tables) are decided by the metadata-layout pass, so that the packer
and the kernels derive the storage from one description.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import DYNAMIC_INDEX, ArrayAttr, IntAttr, IntegerType, i8, i32
from xdsl.ir import Attribute, Dialect, TypeAttribute
from xdsl.irdl import irdl_attr_definition
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from stoicc_py.codec import hybrid as hybrid_code
from stoicc_py.codec import register
from stoicc_py.codec.block import BlockCodec
from stoicc_py.codec.csr import CSRCodec
from stoicc_py.codec.hybrid import HybridCodec
from stoicc_py.codec.nm import NMCodec
from stoicc_py.dialects.layout import DenseLayoutAttr, Dim, LayoutAttr, SparseLayoutAttr, StorageAttr, buffer
from stoicc_py.limits import too_large


def _check_divides(size: Dim, step: int, what: str) -> None:
    if isinstance(size, int) and size % step:
        raise VerifyException(f"{what} {step} does not divide the dimension of size {size}")


def _parse_ints(parser: AttrParser) -> list[int]:
    return parser.parse_comma_separated_list(parser.Delimiter.ANGLE, parser.parse_integer)


@irdl_attr_definition
class NMAttr(SparseLayoutAttr):
    """N:M structured sparsity: at most N non-zeros in every M consecutive elements
    along the reduction (last) axis."""

    name = "sparse.nm"

    n: IntAttr
    m: IntAttr

    def __init__(self, n: int, m: int) -> None:
        super().__init__(IntAttr(n), IntAttr(m))

    def verify(self) -> None:
        n, m = self.n.data, self.m.data
        if m < 2 or m & (m - 1):
            raise VerifyException(f"nm: M must be a power of two >= 2, got {m}")
        if not 0 < n < m:
            raise VerifyException(f"nm: N must satisfy 0 < N < M, got N={n}, M={m}")

    def verify_for(self, shape: Sequence[Dim], kind: str) -> None:
        super().verify_for(shape, kind)
        _check_divides(shape[-1], self.m.data, "nm: group size M =")

    def summary(self) -> str:
        return f"nm({self.n.data}, {self.m.data})"

    def granule(self) -> tuple[int, int]:
        return (1, self.m.data)

    def codec(self, shape: Sequence[int]) -> NMCodec:
        """The code of rows of shape[-1] dense elements (a matrix's, or a hybrid tile's)."""
        return NMCodec(self.n.data, self.m.data, shape[-1])

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        rows, _ = shape
        code = self.codec(shape)
        return StorageAttr(
            [buffer("values", [rows, code.slots], element), buffer("indices", [rows, code.words], i32, "metadata")],
            code.params,
        )

    def compressed_shape(self, shape: Sequence[Dim]) -> tuple[Dim, ...]:
        rows, width = shape
        return (rows, width // self.m.data * self.n.data if isinstance(width, int) else width)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        n, m = _parse_ints(parser)
        return (IntAttr(n), IntAttr(m))

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.n.data}, {self.m.data}>")


@irdl_attr_definition
class BlockAttr(SparseLayoutAttr):
    """Block sparsity: [bh, bw] blocks that are either all zero or stored dense."""

    name = "sparse.block"

    bh: IntAttr
    bw: IntAttr

    def __init__(self, bh: int, bw: int) -> None:
        super().__init__(IntAttr(bh), IntAttr(bw))

    def verify(self) -> None:
        if self.bh.data <= 0 or self.bw.data <= 0:
            raise VerifyException(f"block: block sizes must be positive, got [{self.bh.data}, {self.bw.data}]")

    def verify_for(self, shape: Sequence[Dim], kind: str) -> None:
        super().verify_for(shape, kind)
        _check_divides(shape[0], self.bh.data, "block: block height")
        _check_divides(shape[1], self.bw.data, "block: block width")

    def summary(self) -> str:
        return f"block([{self.bh.data}, {self.bw.data}])"

    def granule(self) -> tuple[int, int]:
        return (self.bh.data, self.bw.data)

    def codec(self, shape: Sequence[int]) -> BlockCodec:
        rows, cols = shape
        return BlockCodec(self.bh.data, self.bw.data, (rows, cols))

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        bh, bw = self.bh.data, self.bw.data
        return StorageAttr(
            [
                buffer("rowptr", [shape[0] // bh + 1], i32, "table"),
                buffer("cols", [DYNAMIC_INDEX], i32, "metadata"),
                buffer("values", [DYNAMIC_INDEX, bh, bw], element),
            ],
            {"bh": bh, "bw": bw},
        )

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        bh, bw = _parse_ints(parser)
        return (IntAttr(bh), IntAttr(bw))

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.bh.data}, {self.bw.data}>")


CSR_INDEX_WIDTHS = (8, 16, 32, 64)


@irdl_attr_definition
class CSRAttr(SparseLayoutAttr):
    """Unstructured sparsity in compressed sparse rows, with a chosen index width."""

    name = "sparse.csr"

    index: IntegerType

    def __init__(self, index_width: int = 32) -> None:
        super().__init__(IntegerType(index_width))

    def verify(self) -> None:
        if self.index.width.data not in CSR_INDEX_WIDTHS:
            raise VerifyException(f"csr: index width must be one of i8, i16, i32, i64, got {self.index}")

    def summary(self) -> str:
        return f"csr(index=i{self.index.width.data})"

    def verify_for(self, shape: Sequence[Dim], kind: str) -> None:
        super().verify_for(shape, kind)
        cols, width = shape[1], self.index.width.data
        if isinstance(cols, int) and cols > 2**width:
            raise VerifyException(f"csr: i{width} column indices cannot address {cols} columns")

    def codec(self, shape: Sequence[int]) -> CSRCodec:
        rows, cols = shape
        return CSRCodec((rows, cols))

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        # Column indices are unsigned, so that i8 addresses 256 columns.
        return StorageAttr(
            [
                buffer("rowptr", [shape[0] + 1], i32, "table"),
                buffer("cols", [DYNAMIC_INDEX], self.index, "metadata", unsigned=True),
                buffer("values", [DYNAMIC_INDEX], element),
            ],
            {"index_bits": self.index.width.data},
        )

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            index = parser.parse_type()
        return (index,)

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<i{self.index.width.data}>")


@irdl_attr_definition
class HybridAttr(SparseLayoutAttr):
    """PATCH-style hybrid: each [th, tw] tile is stored in one of `formats`, or is
    empty (all zeros, neither stored nor visited)."""

    name = "sparse.hybrid"

    tile: ArrayAttr[IntAttr]
    formats: ArrayAttr[LayoutAttr]

    def __init__(self, tile: Sequence[int], formats: Sequence[LayoutAttr]) -> None:
        super().__init__(ArrayAttr(IntAttr(t) for t in tile), ArrayAttr(formats))

    @property
    def tile_shape(self) -> tuple[int, int]:
        th, tw = (t.data for t in self.tile.data)
        return th, tw

    def verify(self) -> None:
        if len(self.tile.data) != 2 or any(t.data <= 0 for t in self.tile.data):
            raise VerifyException(f"hybrid: tile must be two positive sizes, got {[t.data for t in self.tile.data]}")
        if not self.formats.data:
            raise VerifyException("hybrid: formats must list at least one tile format")
        _, tw = self.tile_shape
        for fmt in self.formats.data:
            if isinstance(fmt, NMAttr):
                _check_divides(tw, fmt.m.data, "hybrid: nm group size M =")
            elif not isinstance(fmt, DenseLayoutAttr):
                raise VerifyException(f"hybrid: a tile format must be dense or nm(N, M), got {fmt.summary()}")
        if len(set(self.formats.data)) != len(self.formats.data):
            raise VerifyException("hybrid: formats must not repeat")

    def verify_for(self, shape: Sequence[Dim], kind: str) -> None:
        """Any size: the last tile row and column may be partial (ragged); a partial tile
        column's width must still hold whole N:M groups."""
        super().verify_for(shape, kind)
        th, tw = self.tile_shape
        rows, cols = shape
        if isinstance(rows, int) and isinstance(cols, int):
            padded = [-(-rows // th) * th, -(-cols // tw) * tw]  # partial tiles are stored whole
            if why := too_large(padded):
                raise VerifyException(f"hybrid: tiles of [{th}, {tw}] store a [{rows}, {cols}] matrix as {padded}: {why}")
        if not isinstance(cols, int) or cols % tw == 0:
            return
        for fmt in self.nm_formats.values():
            if (cols % tw) % fmt.m.data:
                raise VerifyException(
                    f"hybrid: the last tile column holds {cols % tw} of the {cols} columns (tile width {tw}), "
                    f"not whole groups of {fmt.summary()}: make the width a multiple of {fmt.m.data}"
                )

    @property
    def nm_formats(self) -> dict[int, NMAttr]:
        """The N:M tile formats, by format index."""
        return {f: fmt for f, fmt in enumerate(self.formats.data) if isinstance(fmt, NMAttr)}

    def codec(self, shape: Sequence[int]) -> HybridCodec:
        rows, cols = shape
        tile = self.tile_shape
        formats = tuple(fmt.codec(tile) if isinstance(fmt, NMAttr) else None for fmt in self.formats.data)
        return HybridCodec(tile, (rows, cols), formats)

    def summary(self) -> str:
        th, tw = self.tile_shape
        return f"hybrid(tile=[{th}, {tw}], formats=[{', '.join(f.summary() for f in self.formats.data)}])"

    def granule(self) -> tuple[int, int]:
        return self.tile_shape

    def storage(self, shape: Sequence[int], element: TypeAttribute) -> StorageAttr:
        """A format table (HybridCodec's codes) and, per format f, its tiles packed together
        with a tile-row schedule (rowptr, cols), as in STOICC."""
        code = self.codec(shape)
        th, tw = code.tile
        tile_rows, tile_cols = code.grid
        role = hybrid_code.role
        buffers = [buffer("table", [tile_rows, tile_cols], i8, "table")]
        params = {"th": th, "tw": tw}
        for f, nm in enumerate(code.formats):
            buffers += [buffer(role(f, "rowptr"), [tile_rows + 1], i32, "table"),
                        buffer(role(f, "cols"), [DYNAMIC_INDEX], i32, "metadata")]  # fmt: skip
            if nm is None:
                buffers.append(buffer(role(f, "values"), [DYNAMIC_INDEX, th, tw], element))
                continue
            buffers += [buffer(role(f, "values"), [DYNAMIC_INDEX, th, nm.slots], element),
                        buffer(role(f, "indices"), [DYNAMIC_INDEX, th, nm.words], i32, "metadata")]  # fmt: skip
            params.update({role(f, k): v for k, v in nm.params.items()})
        return StorageAttr(buffers, params)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            tile = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)
            parser.parse_punctuation(",")
            formats = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_attribute)
        return (ArrayAttr(IntAttr(t) for t in tile), ArrayAttr(formats))

    def print_parameters(self, printer: Printer) -> None:
        th, tw = self.tile_shape
        printer.print_string(f"<[{th}, {tw}], [")
        printer.print_list(self.formats.data, printer.print_attribute)
        printer.print_string("]>")


Sparse = Dialect("sparse", [], [NMAttr, BlockAttr, CSRAttr, HybridAttr])

for _attr in (NMAttr, BlockAttr, CSRAttr, HybridAttr):
    register(_attr)(lambda layout, shape: layout.codec(shape))
