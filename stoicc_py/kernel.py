"""A compiled kernel as a Python callable on numpy arrays (and anything that
stoicc_py.arrays.host_array reads without a copy: DLPack, `__array__`, buffers).

Arguments are checked against the kernel's ABI before any pointer reaches native
code: a wrong count, dtype, rank or size raises a TypeError/ValueError that names
the parameter. Size symbols are bound from the arguments and must agree.

Dense arrays for dense parameters (the common case) need nothing but numpy; the
packing runtime, which loads xDSL for its layouts, is imported when an argument is
packed or a parameter is.
"""

from __future__ import annotations

import ctypes
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np

from stoicc_py import dims
from stoicc_py.abi import KernelABI, TensorSpec
from stoicc_py.arrays import NUMPY_DTYPES, data_pointers, host_array
from stoicc_py.backends.llvm.entry import Guard, array_entry, array_guard, guard_args
from stoicc_py.backends.llvm.runtime import use_threads
from stoicc_py.limits import check_size
from stoicc_py.parallel import MIN_COLUMN_WORK, MIN_ROWS, checked_threads, get_threads, row_blocks, run_blocks

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp

    from stoicc_py.packing import PackedTensor
    from stoicc_py.packing.tensor import Validated

    Argument = np.ndarray[Any, Any] | PackedTensor

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]


def _shapes(spec: TensorSpec, arg: Argument) -> list[tuple[Sequence[int | str], tuple[int, ...]]]:
    """(dims, shape) pairs that bind symbols: a dense array's own; a packed tensor's logical
    shape and its buffers' shapes (the symbols derived from its sizes; checked when prepared)."""
    if isinstance(arg, np.ndarray):
        return [(spec.dims, arg.shape)]
    return [(spec.dims, arg.shape), *((b.shape, a.shape) for b, a in zip(spec.buffers, arg.buffers()))]


def bind_symbols(abi: KernelABI, arrays: Sequence[Argument]) -> dict[str, int]:
    """Check every argument against its spec and return the size of each symbol:
    plain-symbol dims bind, then every dim expression of a parameter is checked."""
    sizes: dict[str, int] = {}
    bound_by: dict[str, str] = {}
    dense = [(spec, arr) for spec, arr in zip(abi.params, arrays) if isinstance(arr, np.ndarray)]
    for spec, arr in zip(abi.params, arrays):
        if isinstance(arr, np.ndarray) and arr.ndim != len(spec.dims):
            raise ValueError(
                f"{abi.name}: parameter '{spec.name}' expects rank {len(spec.dims)} ({spec}), got shape {arr.shape}"
            )
        for axis, (dim, size) in ((a, ds) for spec_dims, shape in _shapes(spec, arr) for a, ds in enumerate(zip(spec_dims, shape))):
            if isinstance(dim, int) and not isinstance(arr, np.ndarray):
                continue  # a packed buffer's static dims: checked when it was prepared
            if isinstance(dim, int):
                if size != dim:
                    raise ValueError(
                        f"{abi.name}: parameter '{spec.name}' expects size {dim} on axis {axis} ({spec}), got shape {arr.shape}"
                    )
            elif not dims.is_symbol(dim):
                continue  # an expression: checked once every symbol is bound
            elif sizes.setdefault(dim, size) != size:
                raise ValueError(
                    f"{abi.name}: size symbol {dim} is {sizes[dim]} from parameter '{bound_by[dim]}' "
                    f"but {size} from parameter '{spec.name}'"
                )
            else:
                bound_by.setdefault(dim, spec.name)
    _check_expressions(abi, dense, sizes)
    _check_derived(abi, sizes)
    return sizes


def _check_derived(abi: KernelABI, sizes: dict[str, int]) -> None:
    """Refuse sizes that make a result or temporary of negative size or too large, or a slice
    with symbolic bounds reach outside its tensor."""
    for shape_dims in [r.dims for r in abi.results] + list(abi.temporaries):
        shape = _bound(shape_dims, sizes)
        if min(shape, default=0) < 0:
            raise ValueError(f"{abi.name}: these arguments make a tensor of shape {list(shape)}, "
                             f"[{', '.join(map(str, shape_dims))}]: sizes must not be negative")  # fmt: skip
        check_size(shape, f"{abi.name}: these arguments make a tensor of shape {list(shape)}")
    for what, dim in abi.limits:
        if dims.evaluate(dim, sizes) < 0:
            values = ", ".join(f"{s}={sizes[s]}" for s in abi.symbols)
            raise ValueError(f"{abi.name}: {what} is out of range with {values}")


def _check_expressions(abi: KernelABI, dense: Sequence[tuple[TensorSpec, Array]], sizes: dict[str, int]) -> None:
    """Refuse a parameter whose dim expression (P+T) does not have its value of the bound symbols."""
    for spec, arr in dense:
        for axis, (dim, size) in enumerate(zip(spec.dims, arr.shape)):
            if not isinstance(dim, int) and not dims.is_symbol(dim) and dims.evaluate(dim, sizes) != size:
                values = ", ".join(f"{s}={sizes[s]}" for s in dims.symbols(dim))
                raise ValueError(
                    f"{abi.name}: parameter '{spec.name}' expects size {dim} = {dims.evaluate(dim, sizes)} ({values}) "
                    f"on axis {axis} ({spec}), got shape {arr.shape}"
                )


def _bound(shape: Sequence[int | str], sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(dims.evaluate(d, sizes) for d in shape)


def check_arguments(abi: KernelABI, args: Sequence[object]) -> list[Argument]:
    """Dense parameters as numpy arrays of the exact dtype, C-contiguous (a view of the
    caller's memory, copied only if strided); non-dense ones as validated PackedTensors
    (a dense array is packed here, a convenience that costs a pack per call: a warning says so)."""
    if len(args) != len(abi.params):
        names = ", ".join(p.name for p in abi.params)
        raise TypeError(f"{abi.name}() takes {len(abi.params)} arguments ({names}), got {len(args)}")
    return [_prepared(abi, spec, arg) for spec, arg in zip(abi.params, args)]


def _prepared(abi: KernelABI, spec: TensorSpec, arg: object) -> Argument:
    packed_type = _packed_type()
    if packed_type is not None and isinstance(arg, packed_type):
        if not (spec.is_dense and arg.layout.summary() == "dense"):
            return checked_packed(abi, spec, arg)
        arg = arg.arrays["values"]  # what pack() makes of a dense parameter (kernel.pack("w", w) for any layout)
    arr = _typed(abi, spec, arg)
    if not spec.is_dense:
        return checked_packed(abi, spec, _packed_per_call(abi, spec, arr))
    if not arr.flags.c_contiguous:
        log.debug("%s: parameter '%s' is strided %s: copied to C order", abi.name, spec.name, arr.strides)
    return np.ascontiguousarray(arr)


def _packed_type() -> type[PackedTensor] | None:
    """PackedTensor once the packing runtime is loaded: until then no argument can be
    one, and calls on dense arrays need not load it (nor xDSL, which it imports)."""
    module = sys.modules.get("stoicc_py.packing.tensor")
    return None if module is None else module.PackedTensor


def _typed(abi: KernelABI, spec: TensorSpec, arg: object) -> Array:
    arr = host_array(arg, f"{abi.name}: parameter '{spec.name}'")
    check_size(arr.shape, f"{abi.name}: parameter '{spec.name}'")
    want = NUMPY_DTYPES[spec.dtype]
    if arr.dtype != want:  # never converted here: a silent copy would hide a cost, or a rounding
        how = f" (convert with .astype(ml_dtypes.{want}))" if spec.dtype == "bf16" else ""
        raise TypeError(f"{abi.name}: parameter '{spec.name}' expects dtype {want} ({spec}), got {arr.dtype}{how}")
    return arr


_REPACKED: set[tuple[str, str, str, tuple[int | str, ...]]] = set()
"""The kernels (name and signature) and parameters already warned of a pack per call."""


def _packed_per_call(abi: KernelABI, spec: TensorSpec, w: Array) -> PackedTensor:
    """pack_for(w), with a StoiccWarning the first time per kernel and parameter: no cache, as
    the array may change between calls, so its every call pays for the pack."""
    from stoicc_py.diagnostics import warn

    start = time.perf_counter()
    packed = pack_for(abi, spec, w)
    key = (abi.name, spec.name, spec.layout, tuple(spec.dims))
    if key not in _REPACKED:
        _REPACKED.add(key)
        warn(
            f"{abi.name}: parameter '{spec.name}' got a dense array, packed into {spec.layout} for this call "
            f"in {time.perf_counter() - start:.3g} s, and packed again on every call: pack it once with "
            f"{abi.name}.pack('{spec.name}', w) or stoicc_py.pack(w, ...) and pass the PackedTensor"
        )
    return packed


def pack_for(abi: KernelABI, spec: TensorSpec, w: Array, **options: Any) -> PackedTensor:
    """Pack `w` in the layout of parameter `spec`."""
    from stoicc_py.packing import pack

    if not _fits(spec.dims, w.shape):
        raise ValueError(f"{abi.name}: parameter '{spec.name}' expects shape {spec.dims} ({spec}), got {w.shape}")
    try:
        return pack(w, spec.layout, **({"dtype": spec.dtype} | options))
    except ValueError as err:
        raise ValueError(f"{abi.name}: parameter '{spec.name}'{_bound_dims(spec, w.shape)}: {err}") from None


def _fits(dims: Sequence[int | str], shape: tuple[int, ...]) -> bool:
    """Whether `shape` has the rank of `dims` and its static sizes (a symbol takes any size)."""
    return len(dims) == len(shape) and all(isinstance(d, str) or d == s for d, s in zip(dims, shape))


def _bound_dims(spec: TensorSpec, shape: tuple[int, ...]) -> str:
    """' (w: f32[N, K] @ nm(2, 4) where N=12, K=10)': where a symbolic packed parameter's sizes
    break the layout's rules (granules), which sizes they are."""
    bound = ", ".join(f"{d}={s}" for d, s in zip(spec.dims, shape) if isinstance(d, str))
    return f" ({spec} where {bound})" if bound else ""


def checked_packed(abi: KernelABI, spec: TensorSpec, packed: PackedTensor) -> PackedTensor:
    """Refuse a packed tensor that the kernel would read wrongly."""
    where = f"{abi.name}: parameter '{spec.name}'"
    if spec.is_dense or packed.layout.summary() != spec.layout:
        raise ValueError(f"{where} expects layout {spec.layout}, got a tensor packed as {packed.layout.summary()}")
    if not _fits(spec.dims, packed.shape):
        raise ValueError(f"{where} expects shape {spec.dims}, got a packed tensor of shape {packed.shape}")
    for buf, arr in zip(spec.buffers, packed.buffers(), strict=True):
        static = all(isinstance(d, str) or d in (-1, a) for d, a in zip(buf.shape, arr.shape))
        if arr.dtype != np.dtype(buf.dtype) or arr.ndim != len(buf.shape) or not static:
            raise ValueError(
                f"{where}: buffer '{buf.role}' must be {buf.dtype}{list(buf.shape)}, got {arr.dtype}{list(arr.shape)}"
            )
    try:
        packed.check()  # O(1) for the read-only buffers of a tensor that pack() made
    except ValueError as err:
        raise ValueError(f"{where}: corrupt packed tensor: {err}") from None
    return packed


def buffers(args: Sequence[Argument]) -> list[Array]:
    """Every buffer of prepared arguments, in the order of the kernel's pointer parameters."""
    return [b for a in args for b in ([a] if isinstance(a, np.ndarray) else a.buffers())]


def result_shape(spec: TensorSpec, sizes: dict[str, int]) -> tuple[int, ...]:
    return _bound(spec.dims, sizes)


class _Bound(NamedTuple):
    """What the argument shapes of a checked call bound: each size symbol's value, in the
    ABI's order (`values`) and by name (`sizes`), and each result's shape."""

    values: tuple[int, ...]
    sizes: dict[str, int]
    shapes: tuple[tuple[int, ...], ...]
    one_block: bool  # too few rows to split in blocks: the common small call, no more work
    columns: bool  # one row, and enough columns and work to split by columns (abi.column_split)
    native: bool  # run whole, the loops split over the native pool (abi.native_threads, abi.one_row_pool)
    table: Array | None  # a whole call's int64 [1 + symbols] for the entry: the kernel's address, then `values`


_GUARD: Guard = array_guard() or (lambda args: False)
"""Without the native guard (not CPython), a packed argument takes the complete check on every call."""
_SIGNATURES: dict[object, int] = {}
"""A number per distinct signature of validated buffers (shapes and dtypes): a key that hashes fast."""


def _guarded(checked: Validated) -> int | None:
    """The number of the signature of a validated PackedTensor's buffers (Validated) if every
    array is as validate() passed it: the buffers of their shapes and dtypes, C-contiguous and
    read-only, the arrays they view read-only. Checked natively (entry.array_guard: ~0.05 µs,
    where reading the same from Python took ~0.6 µs for four arrays); None if anything changed
    (the checked call then validates it again)."""
    number, args = checked.cache.get("guard") or _guard(checked)
    return number if args is not None and _GUARD(args) else None


def _guard(checked: Validated) -> tuple[int, tuple[object, ...] | None]:
    """What _guarded reads, made once per validation (its cache): the signature's number (never
    reused: a kernel's remembered shapes hold it) and guard_args of the validated state."""
    buffers = [(a, shape, dtype) for a, (shape, dtype) in zip(checked.buffers, checked.signature)]
    others = [v for v in checked.views if not any(v is b for b in checked.buffers)]
    guard = checked.cache["guard"] = (_SIGNATURES.setdefault(checked.signature, len(_SIGNATURES)), guard_args(buffers, others))
    return guard


SEEN_MAX = 256
"""The most argument shapes (and packed layouts) a kernel remembers; more empty the memory."""


class NativeKernel:
    """The entry point of one kernel in a loaded library.

    A call checks its arguments completely (check_arguments, bind_symbols), then remembers
    the shapes that passed: a later call with arguments that a check would take as they are
    (numpy arrays of the parameter's dtype in C order, PackedTensors in a layout seen before
    whose check() is O(1)) and the same shapes reuses what they bound, for a few
    microseconds per call; anything else, and every error, takes the complete check."""

    def __init__(self, abi: KernelABI, address: int, keepalive: object):
        self.abi = abi
        self._keepalive = keepalive  # the library that owns the code at `address`
        self._threads: int | None = None
        inputs = sum(len(p.buffers) or 1 for p in abi.params)
        argtypes = [ctypes.c_void_p] * (inputs + len(abi.results)) + [ctypes.c_int64] * len(abi.symbols)
        if abi.check_bounds:
            argtypes += [ctypes.c_int64] * len(abi.extents()) + [ctypes.c_void_p]
        self._fn: Callable[..., None] = ctypes.CFUNCTYPE(None, *argtypes)(address)
        self._address = address
        # A whole call's way in (backends/llvm/entry.py), None where _fn must take it.
        self._entry = None if abi.check_bounds else array_entry(inputs + len(abi.results), len(abi.symbols))
        split = abi.row_split.symbol if abi.row_split else None
        # Per pointer parameter: whether a block of rows offsets it (dense, with the rows on axis 0).
        rowed_inputs = [p.is_dense and p.dims[0] == split for p in abi.params for _ in p.buffers or [p]]
        self._rowed = rowed_inputs + [True] * len(abi.results)
        # Per parameter: whether a block of columns cuts its rows (a weight [N, K], a bias [N]).
        columns = abi.column_split.symbol if abi.column_split else None
        self._cut = [p.dims[0] == columns for p in abi.params]
        # Set by the first call (a bf16 dtype imports ml_dtypes): per parameter, its dtype if
        # dense, else None (a packed one's buffers' dtypes are in its key); per result, its dtype.
        self._dtypes: list[np.dtype[Any] | None] | None = None
        self._out_dtypes: list[np.dtype[Any]] = []
        self._packed_classes: tuple[type[PackedTensor], ...] = ()  # (PackedTensor,) once loaded, for isinstance
        self._seen: dict[tuple[object, ...], _Bound] = {}  # argument shapes -> what a checked call bound
        self._layouts: dict[int, object] = {}  # id -> a layout that passed; kept so that its id stays its

    @property
    def threads(self) -> int | None:
        """Threads per call for this kernel; None follows stoicc_py.get_threads()."""
        return self._threads

    @threads.setter
    def threads(self, n: int | None) -> None:
        self._threads = None if n is None else checked_threads(n, "threads")

    def __call__(self, *args: object) -> Array | tuple[Array, ...]:
        scan = None if self.abi.check_bounds else self._scan(args)
        bound = None if scan is None else self._seen.get(scan[0])
        if scan is None or bound is None:
            return self._checked_call(args)
        return self._run(scan[1], bound, args)

    def _scan(self, args: Sequence[object]) -> tuple[tuple[object, ...], list[Array]] | None:
        """(the shapes, the input buffers in ABI order) of arguments that check_arguments would
        take as they are, else None. Equal shapes then bind equal sizes, and pass or fail
        every check of a call alike (a PackedTensor's contents are its validate()'s)."""
        if self._dtypes is None or len(args) != len(self._dtypes):
            return None
        shapes: list[object] = []
        bufs: list[Array] = []
        for want, arg in zip(self._dtypes, args):
            if want is not None:
                if type(arg) is not np.ndarray or arg.dtype != want or not arg.flags.c_contiguous:
                    return None
                shapes.append(arg.shape)
                bufs.append(arg)
            # A PackedTensor in a layout that passed a checked call (by identity: _layouts), whose
            # read-only arrays passed validate() and are still as they passed it (_guarded); else
            # the checked call validates it. Its key: its shape and its buffers' shapes and dtypes,
            # not the layout's identity, so that the layers of a model, each with its own weights
            # in equal layouts, share one.
            elif (not isinstance(arg, self._packed_classes) or self._layouts.get(id(arg.layout)) is not arg.layout
                  or (checked := arg.validated()) is None or (signature := _guarded(checked)) is None):  # fmt: skip
                return None
            else:
                shapes.append((arg.shape, signature))
                bufs += checked.buffers
        return tuple(shapes), bufs

    def _checked_call(self, args: Sequence[object]) -> Array | tuple[Array, ...]:
        prepared = check_arguments(self.abi, args)
        sizes = bind_symbols(self.abi, prepared)
        split = self.abi.row_split
        shapes = tuple(result_shape(r, sizes) for r in self.abi.results)
        few_rows = split is None or sizes[split.symbol] < 2 * MIN_ROWS
        columns = few_rows and self._splits_columns(shapes, sizes)
        one_row = all(math.prod(shape[:-1]) == 1 for shape in shapes)
        native = self.abi.native_threads or (self.abi.one_row_pool and one_row and not self.abi.check_bounds)
        values = tuple(sizes[s] for s in self.abi.symbols)
        one_block = few_rows and not columns
        table = self._table(values) if native or one_block else None
        bound = _Bound(values, sizes, shapes, one_block, columns, native, table)
        if self._dtypes is None:  # the last of these three: another thread's call reads them once it is set
            self._out_dtypes = [NUMPY_DTYPES[r.dtype] for r in self.abi.results]
            self._packed_classes = tuple(t for t in [_packed_type()] if t)  # loaded if a parameter is packed
            self._dtypes = [NUMPY_DTYPES[p.dtype] if p.is_dense else None for p in self.abi.params]
        if not self.abi.check_bounds and all(p is a for p, a in zip(prepared, args)):  # none converted or copied
            self._remember(args, prepared, bound)
        return self._run(buffers(prepared), bound, prepared)

    def _table(self, values: tuple[int, ...]) -> Array | None:
        """What the entry reads after the arrays, None where no entry takes the call."""
        if self._entry is None:
            return None
        table = np.array([self._address, *values], np.int64)
        table.flags.writeable = False
        return table

    def _splits_columns(self, shapes: tuple[tuple[int, ...], ...], sizes: dict[str, int]) -> bool:
        """Whether a call of these sizes may be split by columns: its results have one row (the
        ABI passes no row stride), and it has the columns and work for two blocks. A
        bounds-checked kernel is not (its extents are those of whole buffers)."""
        split = self.abi.column_split
        if split is None or self.abi.check_bounds or any(math.prod(shape[:-1]) != 1 for shape in shapes):
            return False
        columns = sizes[split.symbol]
        return columns >= 2 * split.granule and columns * split.row_work(sizes) >= 2 * MIN_COLUMN_WORK

    def _remember(self, args: Sequence[object], prepared: list[Argument], bound: _Bound) -> None:
        if len(self._seen) >= SEEN_MAX or len(self._layouts) >= SEEN_MAX:
            self._seen.clear()
            self._layouts.clear()
        self._layouts.update((id(p.layout), p.layout) for p in prepared if not isinstance(p, np.ndarray))
        scan = self._scan(args)
        if scan is not None:
            self._seen[scan[0]] = bound

    def _run(self, inputs: Sequence[Array], bound: _Bound, args: Sequence[object]) -> Array | tuple[Array, ...]:
        outs = list(map(np.empty, bound.shapes, self._out_dtypes))
        if bound.native:
            use_threads(self._threads or get_threads())
        if bound.table is not None and self._entry is not None:  # whole, through the entry
            self._entry((*inputs, *outs, bound.table))  # the tuple keeps them alive across the call (no GIL)
        else:
            self._run_parts((*inputs, *outs), bound, args, outs)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _run_parts(self, bufs: Sequence[Array], bound: _Bound, args: Sequence[object], outs: list[Array]) -> None:
        """A call that the entry does not take: bounds-checked, split, or with no entry (not CPython)."""
        if self.abi.check_bounds:
            self._run_checked(bufs, bound)
        elif bound.native or bound.one_block:
            self._fn(*data_pointers(bufs), *bound.values)
        elif bound.columns:
            self._run_columns(bufs, args, outs, bound.sizes)
        else:
            self._run_blocks(bufs, bound.sizes, [])

    def _run_checked(self, bufs: Sequence[Array], bound: _Bound) -> None:
        """A bounds-checked kernel's run: its extents and status buffer after the symbols."""
        status = np.zeros(2, np.int64)
        checks = [*(bufs[i].shape[axis] for i, axis in self.abi.extents()), *data_pointers([status])]
        if bound.one_block:
            self._fn(*data_pointers(bufs), *bound.values, *checks)
        else:
            self._run_blocks(bufs, bound.sizes, checks)
        if status[0]:
            raise IndexError(self._miss(int(status[0]), bool(status[1]), bufs))

    def _run_blocks(self, bufs: Sequence[Array], sizes: dict[str, int], checks: list[int]) -> None:
        blocks = self._row_blocks(sizes)
        if len(blocks) > 1:
            run_blocks(self._block_call(bufs, sizes, checks), blocks)
        else:
            self._fn(*data_pointers(bufs), *(sizes[s] for s in self.abi.symbols), *checks)

    def _run_columns(self, bufs: Sequence[Array], args: Sequence[object], outs: list[Array], sizes: dict[str, int]) -> None:
        """The call on blocks of columns, or whole where they do not pay or a packed weight's
        layout cannot cut its rows (row_granule() 0: sq, bitsplit)."""
        split = self.abi.column_split
        assert split is not None
        threads = self._threads or get_threads()
        packed = [a for a, cut in zip(args, self._cut) if cut and not isinstance(a, np.ndarray)]
        granule = math.lcm(split.granule, *(a.row_granule() for a in packed)) if threads > 1 else 0  # type: ignore[attr-defined]
        blocks = row_blocks(sizes[split.symbol], granule, threads, split.row_work(sizes), MIN_COLUMN_WORK) if granule else []
        if len(blocks) > 1:
            run_blocks(self._column_call(args, outs, sizes), blocks)
        else:
            self._fn(*data_pointers(bufs), *(sizes[s] for s in self.abi.symbols))

    def _column_call(self, args: Sequence[object], outs: list[Array], sizes: dict[str, int]) -> Callable[[int, int], None]:
        """call(start, stop): the kernel on columns [start, stop) of the column split: the rows of
        each weight (a packed one's buffers cut by its codec, whose derived sizes rebind), the
        columns of each result (of one row, contiguous)."""
        assert self.abi.column_split is not None
        symbol = self.abi.column_split.symbol

        def call(start: int, stop: int) -> None:
            block = sizes | {symbol: stop - start}
            bufs: list[Array] = []
            for spec, arg, cut in zip(self.abi.params, args, self._cut):
                if isinstance(arg, np.ndarray):
                    bufs.append(arg[start:stop] if cut else arg)
                    continue
                arrays = arg.cut_rows(start, stop) if cut else arg.buffers()  # type: ignore[attr-defined]
                block.update((d, n) for b, a in zip(spec.buffers, arrays) for d, n in zip(b.shape, a.shape) if isinstance(d, str))
                bufs += arrays
            bufs += [out[..., start:stop] for out in outs]
            self._fn(*data_pointers(bufs), *(block[s] for s in self.abi.symbols))

        return call

    def _miss(self, code: int, is_store: bool, bufs: Sequence[Array]) -> str:
        """The error of a bounds-checked call whose code reached outside a buffer."""
        access = "wrote" if is_store else "read"
        if code < 0:
            return f"{self.abi.name}: the compiled code {access} outside a temporary buffer (a compiler bug)"
        name, shape = self.abi.pointer_names()[code - 1], list(bufs[code - 1].shape)
        return f"{self.abi.name}: the compiled code {access} outside buffer '{name}' (shape {shape}); access skipped"

    def _row_blocks(self, sizes: dict[str, int]) -> list[tuple[int, int]]:
        assert self.abi.row_split is not None  # else every call is one block
        split = self.abi.row_split
        threads = self._threads or get_threads()
        return row_blocks(sizes[split.symbol], split.granule, threads, split.row_work(sizes)) if threads > 1 else []

    def _block_call(self, bufs: Sequence[Array], sizes: dict[str, int], checks: list[int]) -> Callable[[int, int], None]:
        """call(start, stop): the kernel on rows [start, stop) of the row split."""
        assert self.abi.row_split is not None
        split = self.abi.row_split.symbol
        pointers = data_pointers(bufs)
        # Bytes per row from the shape: numpy may give any stride to an axis of size 1.
        strides = [math.prod(b.shape[1:]) * b.itemsize if rowed else 0 for b, rowed in zip(bufs, self._rowed)]

        def call(start: int, stop: int) -> None:
            self._fn(*(p + start * s for p, s in zip(pointers, strides)),
                     *(stop - start if s == split else sizes[s] for s in self.abi.symbols), *checks)  # fmt: skip

        return call


class CompiledProgram(Protocol):
    """A program of any target (api.Program, accel.AccelProgram), as its kernels see it."""

    @property
    def module(self) -> ModuleOp:
        """The front end's module, which the reference interprets."""
        ...


class KernelBase:
    """What every target's kernel has: `name`, `abi` (its KernelABI: parameters, results,
    size symbols), `program`, the reference interpreter and packing."""

    def __init__(self, program: CompiledProgram, abi: KernelABI):
        self.program = program
        self.abi = abi
        self.name = abi.name

    @property
    def module(self) -> ModuleOp:
        """The front end's module, which the reference interprets."""
        return self.program.module

    def reference(self, *args: object) -> Array | tuple[Array, ...]:
        """Run the numpy reference interpreter (float64, rounded to the declared dtypes)
        on the same arguments as a call; packed arguments are unpacked (a sparse layout's
        structural zeros never multiplied: docs/language.md, "Non-finite values")."""
        from stoicc_py.interpreter import reference_inputs, run_reference

        prepared = check_arguments(self.abi, args)
        bind_symbols(self.abi, prepared)
        dtypes = [NUMPY_DTYPES[r.dtype] for r in self.abi.results]
        outs = run_reference(self.module, self.name, reference_inputs(prepared), dtypes)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def pack(self, param: str, w: object, **options: Any) -> PackedTensor:
        """Pack the matrix `w` (numpy, or any array host_array reads) in the layout of
        parameter `param`, once, for repeated calls; `options` as for stoicc_py.pack
        (prune, plan, calibrate, activations, alpha)."""
        specs = {p.name: p for p in self.abi.params}
        if param not in specs:
            raise KeyError(f"{self.name} has no parameter '{param}' (parameters: {', '.join(specs)})")
        return pack_for(self.abi, specs[param], host_array(w, f"{self.name}: parameter '{param}'"), **options)

    def __repr__(self) -> str:
        params = ", ".join(map(str, self.abi.params))
        results = ", ".join(f"{r.dtype}[{', '.join(map(str, r.dims))}]" for r in self.abi.results)
        return f"<stoicc kernel {self.name}({params}) -> {results}>"


K = TypeVar("K", bound=KernelBase)


class ProgramBase(Generic[K]):
    """What every target's program has: its kernels by name (`kernels`), as attributes
    (`prog.NAME`) or with kernel(); `file` as given to compile()."""

    file: str
    kernels: dict[str, K]

    def kernel(self, name: str) -> K:
        """The kernel `name`; KeyError listing the kernels if there is none."""
        if name not in self.kernels:
            raise KeyError(f"no kernel '{name}' in {self.file} (kernels: {', '.join(self.kernels)})")
        return self.kernels[name]

    def __getattr__(self, name: str) -> K:
        kernels = self.__dict__.get("kernels", {})
        if name in kernels:
            return kernels[name]
        raise AttributeError(name)
