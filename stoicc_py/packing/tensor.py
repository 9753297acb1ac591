"""PackedTensor (the buffers of one matrix in a layout) and pack()."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX, BFloat16Type, Float16Type, Float32Type, IntegerType, bf16, f16, f32, i8
from xdsl.ir import TypeAttribute
from xdsl.utils.exceptions import VerifyException

from stoicc_py.arrays import NUMPY_DTYPES, bf16_dtype, dtype_name, host_array
from stoicc_py.codec import Codec, codec_for
from stoicc_py.codec.uniform import Grid
from stoicc_py.dialects.layout import (
    BUFFER_ALIGNMENT,
    BUFFER_KINDS,
    BufferAttr,
    ComposedLayoutAttr,
    DenseLayoutAttr,
    LayoutAttr,
    StorageAttr,
)
from stoicc_py.dialects.quant import BitSplitAttr, SQAttr, UniformQuantAttr
from stoicc_py.dialects.sparse import HybridAttr
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.limits import check_size
from stoicc_py.packing import artifact
from stoicc_py.packing.bitsplit import BITSPLIT, BitSplit
from stoicc_py.packing.calibrate import input_scale
from stoicc_py.packing.common import Array, Format, Options, check_finite, checked_shape, shape_text
from stoicc_py.packing.composed import SPARSE, SPARSE_QUANT, decoded, parts
from stoicc_py.packing.compressed import DENSE
from stoicc_py.packing.hessian import DAMP, checked
from stoicc_py.packing.hybrid_plan import auto_plan
from stoicc_py.packing.methods import compress, grid_of, shrink_of
from stoicc_py.packing.quant import QUANT
from stoicc_py.packing.sq import SQ

ALIGNMENT = BUFFER_ALIGNMENT
"""Byte alignment of every packed buffer: a cache line, enough for any vector load."""

ELEMENTS: dict[str, TypeAttribute] = {"f32": f32, "bf16": bf16, "f16": f16, "i8": i8}
"""The matrix dtypes that pack, by their .tdsl names (pack(dtype=...)'s), as the element types
of the storage (a sparse layout's values buffers have the matrix's dtype: bf16 values for a
bf16 matrix)."""
INTEGER_LAYOUTS: tuple[type[LayoutAttr], ...] = (DenseLayoutAttr, *SPARSE)
"""The layouts that store an int8 matrix as it is (int8 values buffers); the others quantize float32."""

_FORMATS: dict[type[LayoutAttr], Format] = {
    DenseLayoutAttr: DENSE,
    **SPARSE,
    UniformQuantAttr: QUANT,
    SQAttr: SQ,
    BitSplitAttr: BITSPLIT,
}


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype[Any] | type) -> Array:
    """An uninitialised C-contiguous array starting on an ALIGNMENT-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)  # numpy itself guarantees only 16 bytes
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _is_aligned(a: Array) -> bool:
    # An empty array has no bytes to load, and numpy may give it any address.
    return a.flags.c_contiguous and (a.size == 0 or a.ctypes.data % ALIGNMENT == 0)


def _aligned_copy(a: Array, dtype: np.dtype[Any]) -> Array:
    out = aligned_empty(a.shape, dtype)
    out[...] = a
    return out


def _frozen(a: Array) -> bool:
    """Whether nothing can write a's memory through numpy: neither a nor any array it views is
    writeable (an owner that is not an array counts only if it is bytes)."""
    views = _views(a)
    owner = views[-1].base
    return not any(map(_WRITEABLE, views)) and (owner is None or isinstance(owner, bytes))


def _views(a: Array) -> tuple[Array, ...]:
    """a and every array it views, down to the last (`base` never changes: nor does this)."""
    views = [a]
    while isinstance(views[-1].base, np.ndarray):
        views.append(views[-1].base)
    return tuple(views)


_WRITEABLE = operator.attrgetter("flags.writeable")


def _freeze(a: Array) -> None:
    base: object = a
    while isinstance(base, np.ndarray):
        base.flags.writeable = False
        base = base.base


def _aligned(a: Array) -> Array:
    """`a` itself if it is C-contiguous and aligned, else an aligned copy of the same dtype."""
    return a if _is_aligned(a) else _aligned_copy(a, a.dtype)


def _format(layout: LayoutAttr) -> Format:
    if isinstance(layout, ComposedLayoutAttr):
        parts(layout)  # ValueError unless a sparse layout with a uniform quantization
        return SPARSE_QUANT
    if type(layout) not in _FORMATS:
        raise ValueError(
            f"no packer for layout {layout.summary()}: packing supports dense, nm, block, csr, hybrid, "
            "quantized (uniform, sq, bitsplit) and a sparse layout with a uniform quantization"
        )
    return _FORMATS[type(layout)]


def _element(layout: LayoutAttr, dtype: np.dtype[Any]) -> TypeAttribute:
    """The storage element type of a matrix of `dtype` in `layout`, else a TypeError."""
    if dtype == np.int8 and not isinstance(layout, INTEGER_LAYOUTS):
        raise TypeError(
            f"pack: an int8 matrix packs into dense and sparse layouts (nm, block, csr, hybrid), "
            f"not {layout.summary()}, which quantizes a float32 matrix"
        )
    name = dtype_name(dtype)
    if name not in ELEMENTS:
        raise TypeError(f"a packed matrix has dtype float32, bfloat16, float16 or int8, got {dtype}")
    return ELEMENTS[name]


def _storage(layout: LayoutAttr, shape: tuple[int, int], element: TypeAttribute) -> StorageAttr:
    """layout.storage(shape, element), or a ValueError if the layout has none for it (csr with Q per channel)."""
    try:
        return layout.storage(shape, element)
    except VerifyException as err:
        raise ValueError(f"{layout.summary()} has no storage for shape {list(shape)}: {err}") from None


def _dtype(layout: LayoutAttr, buf: BufferAttr) -> np.dtype[Any]:
    element = buf.type.element_type
    if isinstance(element, Float32Type):
        return np.dtype(np.float32)
    if isinstance(element, Float16Type):
        return np.dtype(np.float16)
    if isinstance(element, BFloat16Type):
        return bf16_dtype()
    assert isinstance(element, IntegerType), f"no numpy dtype for {element}"
    return np.dtype(f"{'u' if buf.is_unsigned else 'i'}{element.width.data // 8}")


class Validated(NamedTuple):
    """What a PackedTensor's validate() passed, its arrays all read-only: the fields that validity
    depends on (`meta`), the arrays (compared by identity), buffers(), the arrays with every array
    they view (which must stay read-only), each buffer's (shape, dtype) (which must stay: numpy
    sets both in place), and a cache for what callers derive from these (a kernel's guard)."""

    meta: tuple[object, ...]
    arrays: tuple[Array, ...]
    buffers: tuple[Array, ...]
    views: tuple[Array, ...]
    signature: tuple[tuple[tuple[int, ...], np.dtype[Any]], ...]
    cache: dict[str, Any]


_SHAPE_DTYPE = operator.attrgetter("shape", "dtype")


@dataclass(eq=False)
class PackedTensor:
    """A [rows, cols] matrix of `dtype` in the buffers of `storage` (= `layout.storage(shape, f32)`,
    or `layout.storage(shape, i8)` for an int8 matrix, whose values buffers then hold int8).

    `arrays` maps each buffer role to a C-contiguous, ALIGNMENT-byte aligned array (copied on
    construction if it is not); `validate()` checks them against the storage. Once they pass,
    read-only arrays (pack() makes its own read-only) need no check again: `check()` is then O(1),
    which kernels call on every call; writeable arrays are checked every time.

    `input_scale` (float32 [cols], set by `pack(..., calibrate=...)`): the arrays store
    w * input_scale (per column), so the caller must feed x / input_scale.
    """

    layout: LayoutAttr
    shape: tuple[int, int]
    storage: StorageAttr = field(init=False)
    arrays: dict[str, Array]
    input_scale: Array | None = None
    dtype: np.dtype[Any] = np.dtype(np.float32)
    """The matrix's dtype: float32, bfloat16 or float16, or int8 in a dense or sparse layout."""

    _checked: Validated | None = field(default=None, init=False, repr=False)
    """What passed validate(), if its arrays were all read-only."""

    _codec: tuple[LayoutAttr, tuple[int, int], Codec] | None = field(default=None, init=False, repr=False)
    """codec(): the codec of (layout, shape), derived once (an `S with Q` codec takes ~1 ms)."""

    def __post_init__(self) -> None:
        _format(self.layout)
        self.shape = checked_shape(self.layout, tuple(self.shape))
        self.dtype = np.dtype(self.dtype)
        self.storage = _storage(self.layout, self.shape, _element(self.layout, self.dtype))
        self.arrays = {role: _aligned(np.asarray(a)) for role, a in self.arrays.items()}

    def buffers(self) -> list[Array]:
        """The arrays in the storage's buffer order: the kernel ABI order."""
        return [self.arrays[role] for role in self.storage.roles]

    def codec(self) -> Codec:
        """The codec of the layout at this shape (stoicc_py.codec), kept while they stay."""
        cached = self._codec
        if cached is None or cached[0] is not self.layout or cached[1] != self.shape:
            cached = self._codec = (self.layout, self.shape, codec_for(self.layout, self.shape))
        return cached[2]

    def row_granule(self) -> int:
        """The rows of one unit of the storage, at whose multiples cut_rows() cuts; 0 where the
        layout cannot cut its rows (sq, bitsplit)."""
        return self.codec().row_granule()

    def cut_rows(self, start: int, stop: int) -> list[Array]:
        """buffers() of the matrix's rows [start, stop): views (no copy) that a kernel reads as a
        whole matrix of stop - start rows (the codec's cut_rows: `start` and `stop` multiples of
        row_granule(), or `stop` the last row). A kernel call on a block of the weight's rows."""
        cut = self.codec().cut_rows(self.arrays, start, stop)
        return [cut[role] for role in self.storage.roles]

    def nbytes_breakdown(self) -> dict[str, int]:
        """Bytes per buffer kind ("values", "metadata", "scales", "table") and their "total"."""
        sizes = dict.fromkeys(BUFFER_KINDS, 0)
        for buf in self.storage.buffers.data:
            if (a := self.arrays.get(buf.role.data)) is not None:
                sizes[buf.kind.data] += a.nbytes
        return sizes | {"total": sum(sizes.values())}

    @property
    def nbytes(self) -> int:
        """The bytes of every buffer: nbytes_breakdown()["total"]."""
        return self.nbytes_breakdown()["total"]

    def unpack(self) -> Array:
        """The dense matrix of `dtype` (zeros where nothing is stored; for a quantized layout the
        float32 dequantized values, which kernels compute with: see dequantize())."""
        self.validate()
        return _format(self.layout).unpack(self.layout, self.shape, self.arrays)

    def dequantize(self) -> Array:
        """The float32 values kernels compute with: scale * (code - zero_point) for a quantized
        layout (exactly, in float32), the stored matrix for others. Same as unpack().

        sparse S with Q: each stored slot's dequantized value at its position (padding included);
        sq: dequantized low plus the dequantized high values at their positions; bitsplit:
        scale * (16 * hi + lo - offset). docs/formats.md has the exact models."""
        return self.unpack()

    def stored(self) -> Array | None:
        """bool [rows, cols]: the entries that the sparse layout (or the sparse part of `S with Q`)
        stores, which kernels multiply, zeros among them (an N:M group's padding, a stored block's
        or dense tile's zeros); the others are structural zeros, never read. None where every
        entry is stored (dense and quantized layouts). docs/language.md, "Non-finite values"."""
        self.check()
        layout, arrays = self.layout, self.arrays
        if isinstance(layout, ComposedLayoutAttr):
            layout, arrays = decoded(layout, self.shape, arrays)
        if type(layout) not in SPARSE:
            return None
        storage = _storage(layout, self.shape, _element(layout, self.dtype))
        values = {b.role.data for b in storage.buffers.data if b.kind.data == "values"}
        ones = {role: np.ones_like(a) if role in values else a for role, a in arrays.items()}
        return SPARSE[type(layout)].unpack(layout, self.shape, ones) != 0

    @property
    def high_fraction(self) -> float | None:
        """sq only (else None): count / group, the fraction of elements in the high part."""
        return self.layout.density if isinstance(self.layout, SQAttr) else None

    @property
    def msb_zero_fraction(self) -> float | None:
        """bitsplit only (else None): the fraction of elements whose high nibble is zero,
        1 - sum(counts) / (R * K), from the stored counts."""
        if not isinstance(self.layout, BitSplitAttr):
            return None
        return BitSplit.of_arrays(self.arrays).msb_zero_fraction

    def error(self, w: Array) -> dict[str, float]:
        """How far the stored tensor is from w: "rel_fro" = ||w - v||_F / ||w||_F (0 when both
        are zero) and "max_abs" = max |w - v|, in float64, where v is the effective weight
        dequantize() / input_scale (dequantize() when not calibrated)."""
        w = _as_matrix(w, None)
        if w.shape != self.shape:
            raise ValueError(f"error: w has shape {list(w.shape)}, the packed tensor {list(self.shape)}")
        v = self.dequantize()
        if self.input_scale is not None:
            v = v / self.input_scale
        diff, ref = w.astype(np.float64) - v, float(np.linalg.norm(w.astype(np.float64)))
        err = float(np.linalg.norm(diff))
        return {"rel_fro": err / ref if ref else (0.0 if err == 0 else float("inf")), "max_abs": float(abs(diff).max())}

    def validate(self) -> None:
        """Raise ValueError, saying where, unless the arrays are a well-formed packing of `storage`."""
        self._checked = None
        try:
            self._check_buffers()
            _format(self.layout).check(self.layout, self.shape, self.arrays)
        except ValueError as err:
            raise ValueError(
                f"invalid packed {self.layout.summary()} tensor of shape {list(self.shape)}: {err}"
            ) from None
        if all(_frozen(a) for a in self.arrays.values()):
            meta, arrays, buffers = (self.layout, self.shape, self.dtype, *self.arrays), tuple(self.arrays.values()), tuple(self.buffers())
            views = tuple(v for a in arrays for v in _views(a))
            self._checked = Validated(meta, arrays, buffers, views, tuple(map(_SHAPE_DTYPE, buffers)), {})

    def check(self) -> None:
        """validate(), unless the same read-only arrays (in the same layout and shape) passed it."""
        if self.valid_buffers() is None:
            self.validate()

    def valid_buffers(self) -> tuple[Array, ...] | None:
        """buffers(), in O(1), if these same arrays (in this layout and shape) passed validate()
        and are still read-only (with every array they view), of the shapes and dtypes that
        passed; else None, without validating (check() then validates)."""
        checked = self.validated()
        if checked is None or any(map(_WRITEABLE, checked.views)):
            return None
        return checked.buffers if tuple(map(_SHAPE_DTYPE, checked.buffers)) == checked.signature else None

    def validated(self) -> Validated | None:
        """What validate() passed, if these same arrays (by identity) in this layout, shape and
        dtype passed it read-only; else None. Whether they still are read-only and of the shapes
        and dtypes that passed it (numpy lets both change in place) the caller checks:
        valid_buffers() does, and a kernel call natively (backends/llvm/entry.py's guard)."""
        checked = self._checked
        if checked is None:
            return None
        same = checked.meta == (self.layout, self.shape, self.dtype, *self.arrays) and all(map(operator.is_, self.arrays.values(), checked.arrays))
        return checked if same else None

    def __setstate__(self, state: dict[str, Any]) -> None:
        """copy.deepcopy and pickle: numpy's copies of the arrays keep neither their ALIGNMENT nor
        their read-only flag, so re-align them and, if the original had passed validation (as
        pack()'s tensors have), freeze these private copies and validate them once too."""
        self.__dict__.update(state)
        self.arrays = {role: _aligned(a) for role, a in self.arrays.items()}
        self._checked = self._codec = None
        if state.get("_checked") is not None:
            for a in self.arrays.values():
                _freeze(a)
            self.validate()

    def save(self, path: str | Path) -> Path:
        """Write this tensor to a .safetensors file (save_packed under the name "tensor"); load(path)
        reads it back."""
        return save_packed({"tensor": self}, path)

    def _check_buffers(self) -> None:
        roles = self.storage.roles
        missing, extra = [r for r in roles if r not in self.arrays], [r for r in self.arrays if r not in roles]
        if missing or extra:
            raise ValueError(f"buffers {missing} missing, {extra} unexpected (expected {roles})")
        entries: dict[str, tuple[str, int]] = {}  # per role prefix ("" or "tileF"): its first dynamic length
        for buf in self.storage.buffers.data:
            role, want = buf.role.data, buf.type.get_shape()
            a, dtype = self.arrays[role], _dtype(self.layout, buf)
            if a.dtype != dtype:
                raise ValueError(f"buffer '{role}' has dtype {a.dtype}, expected {dtype}")
            if a.ndim != len(want) or any(w not in (DYNAMIC_INDEX, d) for d, w in zip(a.shape, want)):
                raise ValueError(f"buffer '{role}' has shape {list(a.shape)}, expected {shape_text(want)}")
            if not _is_aligned(a):
                raise ValueError(f"buffer '{role}' is not C-contiguous and {ALIGNMENT}-byte aligned")
            if isinstance(self.layout, ComposedLayoutAttr) and buf.kind.data == "values" and len(want) == 1:
                continue  # csr's codes: a length in bytes, which the format checks against cols
            for d in (d for d, w in zip(a.shape, want) if w == DYNAMIC_INDEX):
                first_role, count = entries.setdefault(role.rpartition(".")[0], (role, d))
                if count != d:
                    raise ValueError(f"buffers '{first_role}' ({count} entries) and '{role}' ({d}) disagree in length")

    def __repr__(self) -> str:
        b = self.nbytes_breakdown()
        return (
            f"PackedTensor({self.layout.summary()}, shape={list(self.shape)}, {b['total']} bytes: "
            f"{b['values']} values + {b['metadata']} metadata + {b['scales']} scales + {b['table']} table)"
        )


def _as_matrix(arg: object, dtype: str | None) -> Array:
    """w as a C-contiguous matrix of the packed dtype: `dtype` if given (a float w is rounded to
    it, to nearest even; float32 -> bfloat16/float16 and back is exact where representable)."""
    w = host_array(arg, "pack: w")
    if dtype_name(w.dtype) not in ELEMENTS:
        raise TypeError(
            f"pack: w must have dtype float32, got {w.dtype} (convert with w.astype(np.float32)); "
            "bfloat16 (ml_dtypes) and float16 pack too, and int8 into dense and sparse layouts"
        )
    if dtype is not None:
        if dtype not in ELEMENTS:
            raise ValueError(f"pack: dtype must be one of {', '.join(ELEMENTS)}, got {dtype!r}")
        if (w.dtype == np.int8) != (dtype == "i8"):
            raise TypeError(f"pack: a {w.dtype} matrix does not pack as {dtype} (integers and floats do not mix)")
        w = w.astype(NUMPY_DTYPES[dtype], copy=False)
    if w.ndim != 2:
        raise ValueError(f"pack: w must be 2-D, got shape {list(w.shape)}")
    check_size(w.shape, "pack: w")
    return np.ascontiguousarray(w)


def _auto_plan(w: Array, layout: LayoutAttr, plan: object, sparsity: float | None, x: Array | None,
               hessian: Array | None) -> Array:  # fmt: skip
    hybrid = layout.sparse if isinstance(layout, ComposedLayoutAttr) else layout
    if not isinstance(plan, str) or plan != "auto" or not isinstance(hybrid, HybridAttr):
        what = f"a {type(plan).__name__}" if not isinstance(plan, str | None) else repr(plan)
        raise ValueError(f"pack: sparsity= goes with plan='auto' (a hybrid layout), got plan={what}")
    return auto_plan(w, hybrid, sparsity, x, None if hessian is None else checked(hessian, w.shape[1]))


def _compressed(
    w: Array, layout: LayoutAttr, method: str, activations: object, hessian: Array | None,
    sparsity: float | None, act_order: bool, damp: float, grid: str, others: tuple[object, ...],
) -> tuple[Array, Grid | None, Array | None]:
    """The values, grid and hybrid plan of a calibrated method (stoicc_py.packing.methods)."""
    if any(o is not None for o in others):
        raise ValueError(f"pack: method={method!r} chooses the values itself: it takes no prune=, plan= or calibrate=")
    result = compress(w, layout, method, activations=activations, hessian=hessian, sparsity=sparsity,
                      act_order=act_order, damp=damp, grid=grid)  # fmt: skip
    return result.values, result.grid, result.plan


def pack(
    w: object,
    layout: LayoutAttr | str,
    *,
    prune: str | None = None,
    plan: Array | str | None = None,
    calibrate: str | Array | None = None,
    activations: Array | None = None,
    alpha: float = 0.5,
    sparsity: float | None = None,
    dtype: str | None = None,
    method: str | None = None,
    hessian: Array | None = None,
    act_order: bool = False,
    damp: float = DAMP,
    grid: str = "minmax",
) -> PackedTensor:
    """Pack the float32 matrix `w` (a numpy array, a torch CPU tensor, any DLPack, `__array__`
    or buffer object: docs/api.md) into the buffers of `layout` (an attribute or layout text).
    An int8 `w` packs into a dense or sparse layout (nm, block, csr, hybrid) as it is, its
    values buffers int8 (the weight of an i8 product).

    A `w` that violates the layout's pattern raises ValueError saying where, unless
    `prune="magnitude"` (keep the largest |values| the pattern allows). `plan` (hybrid only)
    gives each tile's table code instead of deriving it from the data; `plan="auto"` (a layout
    with formats dense and nm(2, 4)) chooses the 2:4 tiles for `sparsity` with
    stoicc_py.packing.hybrid_plan, scored on `activations` (or their `hessian`) if given.

    Quantized layouts round to nearest by default. `calibrate="smoothquant"` (with `alpha`)
    or `"awq"` computes per-column factors s from sample `activations` [N, cols]
    (stoicc_py.packing.calibrate), packs w * s and records s as `input_scale`: the caller
    must then feed x / s (fold 1/s into the op producing x). Quantized layouts and `S with Q`
    calibrate; `calibrate=s` (float32 [cols]) packs with given factors, e.g. the one s of
    weights that read the same input (calibrate.awq / smoothquant of the group).

    `dtype` ("f32", "bf16", "f16", "i8"; default w's dtype, with bfloat16 arrays from
    ml_dtypes) is the dtype of the kernel parameter it is for: a float w is first rounded to
    it (to nearest even). A sparse layout then stores values of that dtype; a quantized one
    quantizes those values (in float32) to codes and scales as the layout says.

    `method` chooses the stored values (stoicc_py.packing.methods, docs/compress.md): "rtn"
    (quantized layouts' default rounding) and "magnitude" (= prune="magnitude") need no data;
    "gptq" (quantized layouts; `act_order`), "sparsegpt" (sparse layouts and `nm(N, M) with Q`,
    which it quantizes jointly; hybrid tiles planned from the Hessian) and "wanda" (sparse) read
    calibration `activations` [n, cols] (or an iterable of batches) or their `hessian`
    2 x^T x / n [cols, cols]; `damp` is the fraction of mean(diag H) added to its diagonal.
    `grid="mse"` (rtn and gptq, int2 ... int8) searches each group's range as GPTQ's reference
    does (shrunk min/max ranges, the least sum |w - q|^2.4: uniform.Shrink) instead of its min/max;
    `grid="hmse"` (gptq) weighs each column's errors in that sum by diag(H).
    csr and block need `sparsity` (the fraction pruned), hybrid too (of all weights, <= 0.5).
    """
    layout = parse_layout(layout) if isinstance(layout, str) else layout
    if not isinstance(layout, LayoutAttr):
        raise TypeError(f"pack: layout must be a LayoutAttr or layout text, got {type(layout).__name__}")
    w = _as_matrix(w, dtype)
    check_finite(w, "pack: w")
    element, matrix_dtype = _element(layout, w.dtype), w.dtype
    if dtype_name(w.dtype) in ("bf16", "f16"):  # the formats compute in float32: exact for 16-bit floats
        w = w.astype(np.float32)
    if prune not in (None, "magnitude"):
        raise ValueError(f"pack: prune must be None or 'magnitude', got {prune!r}")
    if plan is not None and not isinstance(
        layout.sparse if isinstance(layout, ComposedLayoutAttr) else layout, HybridAttr
    ):
        raise ValueError(f"pack: plan= applies to hybrid layouts only, not {layout.summary()}")
    fmt, shape = _format(layout), checked_shape(layout, w.shape)
    if method in (None, "rtn", "magnitude"):
        if (hessian is not None and plan != "auto") or act_order:
            raise ValueError(
                f"pack: hessian= and act_order= go with method='gptq', 'sparsegpt' or 'wanda' (hessian= also with "
                f"plan='auto'), not {method!r}"
            )
        if method == "rtn" and not isinstance(layout, UniformQuantAttr):
            raise ValueError(f"pack: method='rtn' needs a quantized layout (int8 ... binary), not {layout.summary()}")
        prune = "magnitude" if method == "magnitude" else prune
        if isinstance(plan, str) or sparsity is not None:
            plan = _auto_plan(w, layout, plan, sparsity, activations, hessian)
        search = shrink_of(grid, method, layout)
        chosen = None
    else:
        search = None  # the method searches its own grids
        w, chosen, plan = _compressed(w, layout, method, activations, hessian, sparsity, act_order, damp, grid,
                                      (prune, plan, calibrate))  # fmt: skip
    scale = None if calibrate is None else input_scale(w, layout, calibrate, activations, alpha)
    if scale is not None:
        w = w * scale
        check_finite(w, "pack: w * input_scale")
    if search is not None:  # on the matrix the codec quantizes: after the input scale
        assert isinstance(layout, UniformQuantAttr)
        chosen = grid_of(w, layout, search)
    storage = _storage(layout, shape, element)
    raw = fmt.pack(w, layout, storage, Options(prune == "magnitude", plan, chosen))
    # Always copies: a packed tensor never aliases the caller's matrix.
    arrays = {b.role.data: _aligned_copy(raw[b.role.data], _dtype(layout, b)) for b in storage.buffers.data}
    for a in arrays.values():
        _freeze(a)  # so that validation holds for good: kernels then skip it on every call
    packed = PackedTensor(layout, shape, arrays, scale, matrix_dtype)
    packed.validate()
    return packed


def save_packed(
    tensors: Mapping[str, PackedTensor | Array], path: str | Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write packed tensors, and dense arrays beside them, to one .safetensors file: each packed
    tensor's buffers with its layout text, dtype, shape and a sha256 checksum, each dense array
    with its checksum (stoicc_py/packing/artifact.py has the format). load_packed(path) reads
    them back, and packed_metadata(path) the `metadata` strings (e.g. a model's configuration)."""
    stored: dict[str, artifact.Entry | Array] = {}
    for name, t in tensors.items():
        if isinstance(t, PackedTensor):
            t.check()  # never write a corrupt tensor
            dtype = dtype_name(t.dtype)
            assert dtype in ELEMENTS, t.dtype  # a PackedTensor's dtype is one that packs
            arrays = {role: t.arrays[role] for role in t.storage.roles}
            stored[name] = artifact.Entry(t.layout, dtype, t.shape, arrays, t.input_scale)
        else:
            stored[name] = host_array(t, f"save_packed: {name!r}")
    artifact.write(Path(path), stored, metadata)
    return Path(path)


def packed_metadata(path: str | Path) -> dict[str, str]:
    """The metadata strings that save_packed(..., metadata=) wrote to a packed-weights file
    (the header alone is read; a file that is not one is a ValueError naming it)."""
    return artifact.read_extra(Path(path))


def load_packed(path: str | Path) -> dict[str, PackedTensor | Array]:
    """The tensors of a file that save_packed (or PackedTensor.save, `stoicc compress`) wrote,
    by name: PackedTensors, validated, with read-only buffers that kernels take without checking
    again, and dense arrays. A file that does not hold exactly what its header says (a missing
    buffer, a wrong shape or dtype, a checksum mismatch, a truncated file, a layout that does not
    parse, bad JSON) is a ValueError naming the file and the tensor."""
    path = Path(path)
    tensors: dict[str, PackedTensor | Array] = {}
    for name, t in artifact.read(path).items():
        try:
            tensors[name] = _packed(t) if isinstance(t, artifact.Entry) else t
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: tensor {name!r}: {err}") from None
    return tensors


def load(path: str | Path) -> PackedTensor:
    """The one packed tensor of a file that PackedTensor.save wrote (load_packed: any number)."""
    tensors = load_packed(path)
    packed = [t for t in tensors.values() if isinstance(t, PackedTensor)]
    if len(tensors) != 1 or len(packed) != 1:
        raise ValueError(f"{path}: holds {len(packed)} packed tensor(s) and {len(tensors) - len(packed)} dense "
                         "array(s), not one packed tensor: read it with load_packed")  # fmt: skip
    return packed[0]


def _packed(e: artifact.Entry) -> PackedTensor:
    if e.dtype not in ELEMENTS:
        raise ValueError(f"dtype {e.dtype!r} is not one of {', '.join(ELEMENTS)}")
    scale = e.input_scale
    if scale is not None and (scale.dtype != np.float32 or scale.shape != (e.shape[1],)):
        raise ValueError(f"input_scale must be float32[{e.shape[1]}], got {scale.dtype}{list(scale.shape)}")
    # Private, aligned, read-only copies: validated once here, never again by a kernel.
    arrays = {role: _aligned_copy(a, a.dtype) for role, a in e.arrays.items()}
    for a in arrays.values():
        _freeze(a)
    packed = PackedTensor(e.layout, e.shape, arrays, None if scale is None else scale.copy(), NUMPY_DTYPES[e.dtype])
    packed.validate()
    return packed
