"""The C ABI of a compiled kernel, derived from its signature after metadata-layout.

`void stoicc_k(const T *in0, ..., T *out0, ..., int64_t SYM0, ...)`: inputs in parameter
order (a non-dense parameter as one pointer per buffer of its storage, in storage
order), one output buffer per result, then one int64 per size symbol in order of
first appearance. Row-major, contiguous buffers. The runtime, the C header and the
cache all read this one description.

This module is plain data, without xDSL, so that a kernel loads from the cache
without the compiler; stoicc_py.signature derives it from the IR, and it imports
nothing of the compiler (the base layer: docs/architecture.md, Layers).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

Dim = int | str

SYMBOL_PREFIX = "stoicc_"
"""Every function the compiler defines is the symbol SYMBOL_PREFIX + its name in the
object code (passes/mangle_symbols.py): a kernel's name is the user's, and as a bare
symbol it could capture a libc or libm function that the generated code calls."""


def symbol_name(function: str) -> str:
    """The object-code symbol of the function (kernel) `function`."""
    return SYMBOL_PREFIX + function


@dataclass(frozen=True)
class BufferSpec:
    """One physical buffer: role, numpy dtype name, shape (-1: known once packed; a size
    symbol where the packed parameter's symbolic dims decide it), kind."""

    role: str
    dtype: str
    shape: tuple[Dim, ...]
    kind: str


@dataclass(frozen=True)
class TensorSpec:
    """One parameter or result: name, dtype ("f32", "f16", "i8", "i32"), dims (ints and size
    symbols), layout text, and for a non-dense layout its buffers in storage (ABI) order."""

    name: str
    dtype: str
    dims: tuple[Dim, ...]
    layout: str = "dense"
    buffers: tuple[BufferSpec, ...] = ()  # empty for a dense tensor: one buffer of dims

    def __str__(self) -> str:
        text = f"{self.name}: {self.dtype}[{', '.join(map(str, self.dims))}]"
        return text if self.layout == "dense" else f"{text} @ {self.layout}"

    @property
    def is_dense(self) -> bool:
        """Whether the tensor is one row-major buffer of its dims (no storage buffers)."""
        return not self.buffers


@dataclass(frozen=True)
class RowSplit:
    """The kernel may run as independent calls on blocks of rows of `symbol`.

    `symbol` indexes the leading axis of every result and of the parameters that
    vary with it (and no other axis), and row r of each result depends only on row
    r of those (codegen/row_parallel.py decides it). A block call gets pointers
    offset to its first row in those buffers and `symbol` bound to its length.
    Blocks start on multiples of `granule` rows, so that each block is tiled as in
    one whole call and the results agree bit for bit.

    `work` estimates the cost of one row, for deciding whether blocks pay for a
    thread: a sum of products of dims (multiply-adds of a product, elements of
    other ops), each dim a size or a symbol bound at call time.
    """

    symbol: str
    granule: int
    work: tuple[tuple[Dim, ...], ...] = ()

    def row_work(self, sizes: dict[str, int]) -> int:
        """The estimated work of one row, with the symbols bound to `sizes`."""
        return sum(math.prod(d if isinstance(d, int) else sizes[d] for d in term) for term in self.work)


@dataclass(frozen=True)
class ColumnSplit(RowSplit):
    """The kernel may run as independent calls on blocks of columns of `symbol` when its
    results have one row (a GEMV: M = 1, the decode step of a language model).

    `symbol` indexes the last axis of every result and the leading axis of the parameters
    that vary with it (a linear's weight [N, K], dense or packed; a bias [N]), and column n
    of each result depends only on row n of those (codegen/row_parallel.py decides it). A
    block call gets those parameters cut to their rows [n0, n1) (a dense one by a pointer
    offset, a packed one by its codec's cut_rows), the results offset to column n0, and
    `symbol` bound to n1 - n0. A result of several rows would need its row stride, which
    the ABI does not pass: such calls are not split by columns.

    Blocks start on multiples of `granule` columns (the products' column tiles) and of each
    packed weight's row granule (codec row_granule()); `work` estimates one column's cost."""


@dataclass(frozen=True)
class KernelABI:
    """A kernel's calling convention: parameters and results (TensorSpec), size symbols in
    order of first appearance, and how calls may be split into row blocks (or None)."""

    name: str
    params: tuple[TensorSpec, ...]
    results: tuple[TensorSpec, ...]
    symbols: tuple[str, ...]
    row_split: RowSplit | None = None
    column_split: ColumnSplit | None = None
    # The shapes of the intermediate values whose size depends on a size symbol: a
    # call checks them against stoicc_py.limits before native code allocates them.
    temporaries: tuple[tuple[Dim, ...], ...] = ()
    # Dims (expressions of the symbols, e.g. "P+T-S") that must not be negative, each with
    # what it bounds: a slice whose bounds depend on the symbols stays inside its tensor.
    limits: tuple[tuple[str, Dim], ...] = ()
    # Compiled with check_bounds (passes/check_bounds.py): after the symbols, one int64
    # per extent() and an int64[2] status buffer that the kernel sets on a miss.
    check_bounds: bool = False
    # Its loops split over the native thread pool themselves (passes/parallelize_loops.py):
    # a call is never split in Python, it sets the pool's threads and runs whole.
    native_threads: bool = False
    # Its calls of one row (a GEMV) run whole on the pool likewise, though larger ones split
    # in Python: it has pool loops, but its largest nests (2:4's row panels, which start at
    # 32 rows) stay serial; one row runs the column-tile nest, which the pool splits.
    one_row_pool: bool = False

    @property
    def symbol(self) -> str:
        """The kernel's symbol in the object code and the C header."""
        return symbol_name(self.name)

    def pointer_names(self) -> list[str]:
        """The kernel's pointer arguments in order: each input buffer, then each result."""
        inputs = [name for p in self.params for name in
                  ([p.name] if p.is_dense else [f"{p.name}_{b.role.replace('.', '_')}" for b in p.buffers])]  # fmt: skip
        return [*inputs, *(r.name for r in self.results)]

    def extents(self) -> list[tuple[int, int]]:
        """(input pointer, axis) of every buffer axis whose length the data decides (-1 in
        its shape), in order: what a bounds-checked kernel takes after its symbols."""
        buffers = [b for p in self.params for b in p.buffers or [None]]
        return [(i, axis) for i, b in enumerate(buffers) if b is not None
                for axis, d in enumerate(b.shape) if isinstance(d, str) or d < 0]  # fmt: skip

    def to_json(self) -> dict[str, object]:
        """Plain data (dicts, lists, strings, ints) for json.dumps."""
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, object]) -> KernelABI:
        """The ABI that to_json() described."""

        def specs(items: object) -> tuple[TensorSpec, ...]:
            assert isinstance(items, list)
            return tuple(
                TensorSpec(
                    s["name"], s["dtype"], tuple(s["dims"]), s["layout"],
                    tuple(BufferSpec(b["role"], b["dtype"], tuple(b["shape"]), b["kind"]) for b in s["buffers"]),
                )
                for s in items
            )  # fmt: skip

        def split(kind: type[RowSplit], split: object) -> Any:
            assert split is None or isinstance(split, dict)
            work = tuple(tuple(term) for term in split["work"]) if split else ()
            return kind(str(split["symbol"]), int(split["granule"]), work) if split else None

        symbols, temporaries, limits = data["symbols"], data.get("temporaries", []), data.get("limits", [])
        assert isinstance(symbols, list) and isinstance(temporaries, list) and isinstance(limits, list)
        return KernelABI(str(data["name"]), specs(data["params"]), specs(data["results"]), tuple(symbols),
                         split(RowSplit, data["row_split"]), split(ColumnSplit, data["column_split"]),
                         tuple(tuple(shape) for shape in temporaries), tuple((str(what), dim) for what, dim in limits),
                         bool(data.get("check_bounds", False)), bool(data.get("native_threads", False)),
                         bool(data.get("one_row_pool", False)))  # fmt: skip
