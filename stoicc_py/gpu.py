"""The GPU target from Python: `compile(src, target="gpu")` (docs/gpu.md).

Each kernel is one matrix product (gpu-tile says which), built as a tensor-core kernel
(backends/gpu/kernel.py) and emitted as PTX by llvmlite's NVPTX backend at compile
time, on any host; a call loads it through the CUDA driver (cuda-python) on first use
and launches it on the caller's device arrays (torch or cupy: no copies, the result
a new array of the same library) or on numpy arrays (copied in and out).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import BlockArgument

from stoicc_py.abi import KernelABI
from stoicc_py.arrays import NUMPY_DTYPES, host_array
from stoicc_py.backends.gpu import driver
from stoicc_py.backends.gpu.gemv import gemv_ir, gemv_spec
from stoicc_py.backends.gpu.kernel import GemmSpec, gemm_ir
from stoicc_py.backends.gpu.staged import (
    StagedConfig,
    config_for,
    multicast_box,
    shared_bytes,
    split_spec,
    staged_arch,
    staged_grid,
    staged_ir,
    staged_spec,
    values_box,
)
from stoicc_py.backends.gpu.target import ARCH, WARPS, emit_ptx
from stoicc_py.codec import codec_for
from stoicc_py.codec.hybrid import HybridCodec
from stoicc_py.codec.nm import NMCodec
from stoicc_py.codec.uniform import UniformCodec
from stoicc_py.diagnostics import CompileError
from stoicc_py.dialects.layout import LayoutAttr
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.dialects.sparse import HybridAttr
from stoicc_py.dialects.tdsl import LinearOp, TensorType
from stoicc_py.gpu_simt import SimtKernel
from stoicc_py.kernel import KernelBase, ProgramBase
from stoicc_py.lowering import front_end, kernel_abis, only_kernel
from stoicc_py.options import Options
from stoicc_py.packing import PackedTensor
from stoicc_py.packing.mma import hybrid_gpu_arrays, mma_sp_metadata
from stoicc_py.passes.gpu_tile import SIMT, weight_format
from stoicc_py.pipeline import PassCallback, gpu_pipeline_spec, run_passes

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]

SMALL_M = 8
"""Calls of at most this many rows of x take the small-batch schedule: one 8-row mma
column per block and 2 warps of 16 weight rows, four times the blocks to fill the GPU."""
GEMV_M = 16
"""Calls of at most this many rows take the GEMV schedule where it applies (gemv.py);
calls of more the staged one (staged.py)."""
IR = {"direct": gemm_ir, "gemv": gemv_ir, "staged": staged_ir}


@dataclass(frozen=True)
class Operands:
    """Which kernel parameter is x, w and the bias (indices into the ABI's params)."""

    x: int
    w: int
    bias: int | None


@dataclass(frozen=True)
class GpuWeight:
    """A packed weight on the device as the kernel reads it (GpuKernel.to_device): 2:4,
    the nm codec's values and the mma.sp metadata packing/mma.py lays out from its index
    words; hybrid, the tile map and each format's stored tiles (packing/mma.py)."""

    arrays: tuple[driver.DeviceArray, ...]  # in the kernel's parameter order
    shape: tuple[int, ...]  # the dense weight's
    layout: LayoutAttr


def _argument_index(value: Any) -> int:
    assert isinstance(value, BlockArgument)  # gpu-tile: the product is the kernel's only op
    return value.index


def product_spec(fn: func.FuncOp) -> tuple[GemmSpec, Operands, LayoutAttr]:
    """The kernel spec of a function after gpu_pipeline_spec() (its product has a tile)."""
    product = next(op for op in fn.body.ops if isinstance(op, LinearOp))
    tile = product.tile_sizes
    assert tile is not None, "gpu-tile records every product's tile"
    w = product.rhs.type
    assert isinstance(w, TensorType)
    n, k = w.dims
    format = weight_format(w.layout)
    assert isinstance(n, int) and isinstance(k, int) and format is not None  # gpu-tile checked them
    hybrid = w.layout if isinstance(w.layout, HybridAttr) else None
    quant = w.layout if isinstance(w.layout, UniformQuantAttr) else None
    spec = GemmSpec(
        name=fn.sym_name.data, dtype=w.dtype, n=n, k=k, weight=format,
        tile=hybrid.tile_shape if hybrid else (0, 0),
        tile_formats=tuple(str(weight_format(f)) for f in hybrid.formats.data) if hybrid else (),
        group=quant.group_size(k) if quant else 0, scale_type=str(quant.scale) if quant else "f32",
        bias=product.bias is not None, act=product.activation,
        warps=WARPS, warp_rows=tile[1] // (16 * WARPS), cols=tile[0] // 8,
    )  # fmt: skip
    bias = _argument_index(product.bias) if product.bias is not None else None
    return spec, Operands(_argument_index(product.lhs), _argument_index(product.rhs), bias), w.layout


class GpuKernel(KernelBase):
    """One kernel compiled for the GPU: `ptx()`, `llvm_ir()`; a call runs it on device 0."""

    program: GpuProgram

    def __init__(self, program: GpuProgram, abi: KernelABI, spec: GemmSpec, operands: Operands,
                 weight_layout: LayoutAttr, opt: ModuleOp):  # fmt: skip
        super().__init__(program, abi)
        self.spec, self.operands, self.weight_layout, self.opt = spec, operands, weight_layout, opt
        self._functions: dict[GemmSpec, Any] = {}

    def schedule(self, m: int, aligned: bool = True) -> GemmSpec:
        """The spec a call of m rows of x runs (`aligned`: its arrays start on 16-byte
        boundaries, as the GEMV and staged schedules' vector loads need)."""
        s = self.spec
        gemv = gemv_spec(s, m) if aligned and m <= GEMV_M else None
        if gemv is not None:
            return gemv
        if aligned and m > GEMV_M and _staged_fits(s):
            spec = staged_spec(s, m, config_for(s))
            return split_spec(spec, m, config_for(spec))
        return replace(s, warps=2, warp_rows=1, cols=1) if m <= SMALL_M else s

    def llvm_ir(self, m: int | None = None) -> str:
        """The kernel's LLVM IR for NVPTX: the schedule of a call of `m` rows of x (default: the large one)."""
        spec = self.spec if m is None else self.schedule(m)
        return IR[spec.schedule](spec)

    def ptx(self, m: int | None = None) -> str:
        """The kernel's PTX for sm_90 (sm_90a for wgmma; llvmlite's NVPTX backend), as llvm_ir(m)."""
        return _ptx(self.spec if m is None else self.schedule(m))

    def _function(self, spec: GemmSpec) -> Any:
        if spec not in self._functions:
            log.info("loading the PTX of %s (%d x %d rows per block)", spec.name, spec.block_cols, spec.block_rows)
            function = driver.Module(_ptx(spec)).function(spec.name)
            driver.allow_shared(function, _shared(spec))
            self._functions[spec] = function
        return self._functions[spec]

    def to_device(self, param: str, w: object) -> driver.DeviceArray | GpuWeight:
        """A weight (dense array or PackedTensor, or a matrix to pack) in device memory as
        the kernel reads it, once for repeated calls."""
        param_spec = next(p for p in self.abi.params if p.name == param)
        if param_spec.is_dense:
            return _to_device(w, param_spec.dtype, self.spec.n_by_k, f"{self.name}: parameter '{param}'")[0]
        packed = w if isinstance(w, PackedTensor) else self.pack(param, w)
        expected = (self.weight_layout, self.spec.n_by_k, NUMPY_DTYPES[param_spec.dtype])
        if (packed.layout, packed.shape, packed.dtype) != expected:
            raise ValueError(
                f"{self.name}: parameter '{param}' takes {param_spec}: pack it with {self.name}.pack('{param}', w)"
            )
        return GpuWeight(tuple(_upload(a) for a in gpu_arrays(packed)), packed.shape, packed.layout)

    def prepare(self, *args: object, out: object = None) -> tuple[Any, Callable[[], None]]:
        """(the result, a launch of the kernel into it): the arguments checked, placed and
        bound once, for repeated launches without a call's work (benchmarks/gpu.py). The
        result of numpy arguments is copied back by a call, not by the launch."""
        result, _, launch = self._bind(args, out)
        return result, launch

    def _bind(self, args: tuple[object, ...], out: object) -> tuple[Any, driver.DeviceArray, Callable[[], None]]:
        if len(args) != len(self.abi.params):
            raise TypeError(f"{self.name}() takes {len(self.abi.params)} arguments, got {len(args)}")
        s, ops = self.spec, self.operands
        x, on_device = _to_device(args[ops.x], s.dtype, None, f"{self.name}: x")
        if len(x.shape) != 2 or x.shape[1] != s.k:
            raise ValueError(f"{self.name}: x must be [M, {s.k}], got {list(x.shape)}")
        m = x.shape[0]
        w = args[ops.w]
        if not isinstance(w, GpuWeight):
            w = self.to_device(self.abi.params[ops.w].name, w)
        if w.shape != (s.n, s.k) or (isinstance(w, GpuWeight) and w.layout != self.weight_layout):
            raise ValueError(
                f"{self.name}: w must be [{s.n}, {s.k}] @ {self.weight_layout.summary()} (this kernel's to_device)"
            )
        weights = list(w.arrays) if isinstance(w, GpuWeight) else [w]
        bias = [_to_device(args[ops.bias], s.dtype, (s.n,), f"{self.name}: bias")[0]] if ops.bias is not None else []
        result, y = _result(args[ops.x], on_device, out, (m, s.n), s.dtype)
        arrays = [x, *weights, *bias, y]
        spec = self.schedule(m, all(a.ptr % 16 == 0 for a in arrays))
        pointers = [a.ptr for a in arrays]
        if not m:  # an empty batch: nothing to launch
            return result, y, lambda: None
        if spec.schedule == "staged":
            run = staged_launch(self._function(spec), spec, config_for(spec), pointers, m)
        else:
            run = partial(driver.launch, self._function(spec), spec.grid(m), spec.threads, pointers, m, 0)
        return result, y, _Launch(run, tuple(arrays))

    def __call__(self, *args: object, out: object = None) -> Any:
        """y = the kernel on (x, w[, bias]) in the kernel's parameter order; x, w and the
        bias on the device (torch/cupy, or to_device's) or numpy (copied); `out` a device
        array to write y into."""
        result, y, launch = self._bind(args, out)
        launch()
        if isinstance(y.owner, driver.Buffer):  # numpy arguments: copy the result back
            return y.owner.to_host(result)
        return result


@dataclass(frozen=True)
class _Launch:
    """A launch bound to the pointers of `arrays`, which it holds as long as it lives: a copy
    of a numpy x or w freed before the launch would leave the kernel a dangling pointer (one
    of 2 MiB or more is unmapped at once, an illegal address; a smaller one reads stale memory)."""

    run: Callable[[], None]
    arrays: tuple[driver.DeviceArray, ...]

    def __call__(self) -> None:
        self.run()


def _staged_fits(s: GemmSpec) -> bool:
    """Dense and 2:4 rows of 16-byte multiples; hybrid tiles of whole blocks and k-tiles."""
    if s.weight == "hybrid":
        return s.k % 8 == 0 and s.tile[0] % 128 == 0 and s.tile[1] % 64 == 0
    return s.weight == "dense" and s.k % 8 == 0 or s.weight == "nm24" and s.k % 16 == 0


def _ptx(spec: GemmSpec) -> str:
    """The PTX of `spec`'s kernel, for the target its schedule needs (sm_90a for wgmma)."""
    return emit_ptx(IR[spec.schedule](spec), arch=staged_arch(spec) if spec.schedule == "staged" else ARCH)


def staged_launch(function: Any, spec: GemmSpec, config: StagedConfig, pointers: list[int],
                  m: int) -> Callable[[], None]:  # fmt: skip
    """A launch of the staged kernel `function` of (spec, config) on m rows of x, its
    pointers in the kernel's order (x first): the grid of whole clusters, the shared memory,
    and x's tensor map where the clusters multicast x, then the 2:4 values' where TMA loads
    them (encoded here, once per launch bound)."""
    box, values = multicast_box(spec, config), values_box(spec, config)
    maps = (driver.tensor_map(pointers[0], spec.dtype, (m, spec.k), box),) if box else ()
    if values:
        maps += (driver.tensor_map(pointers[1], spec.dtype, (spec.n, spec.k // 2), values, swizzle=64),)
    grid, shared = staged_grid(spec, m, config), shared_bytes(spec, config)
    if spec.k_splits > 1:
        pointers = [*pointers, *(b.ptr for b in split_scratch(grid[0] * grid[1], spec.block_rows * spec.block_cols))]
    return partial(driver.launch, function, grid, spec.threads, pointers, m, shared, maps)


@cache
def split_scratch(tiles: int, tile_elements: int) -> tuple[driver.Buffer, driver.Buffer]:
    """Split-K's workspace (f32 sums of `tiles` output tiles) and tile flags (0) for the
    launches of that many tiles (staged.py's sum_splits): one pair for all of them, kept,
    as launches on the default stream take turns and each leaves the flags at 0."""
    return driver.Buffer(4 * tiles * tile_elements), driver.Buffer.of(np.zeros(tiles, np.int32))


def _shared(spec: GemmSpec) -> int:
    """Dynamic shared memory of a launch of `spec`."""
    return shared_bytes(spec) if spec.schedule == "staged" else 0


def gpu_arrays(packed: PackedTensor) -> list[Array]:
    """A packed 2:4, hybrid or int4/int8 weight's arrays as its kernel reads them, in parameter order."""
    codec = codec_for(packed.layout, packed.shape)
    if isinstance(codec, HybridCodec):
        return hybrid_gpu_arrays(codec, packed.arrays)
    if isinstance(codec, UniformCodec):  # codes as stored (int4 two to a byte), scales per row or group
        return [packed.arrays["values"], packed.arrays["scales"]]
    assert isinstance(codec, NMCodec)  # gpu-tile takes dense, nm(2, 4) and hybrid weights only
    return [packed.arrays["values"], mma_sp_metadata(codec, packed.arrays["indices"], packed.shape[0])]


def _upload(host: Array, dtype: str = "") -> driver.DeviceArray:
    """A copy of `host` on the device (`dtype`: the .tdsl dtype the kernel reads it as, if any)."""
    buffer = driver.Buffer.of(np.ascontiguousarray(host))
    return driver.DeviceArray(buffer.ptr, host.shape, dtype or host.dtype.name, buffer)


def _to_device(obj: object, dtype: str, shape: tuple[int, ...] | None, what: str) -> tuple[driver.DeviceArray, bool]:
    """(obj in device memory, whether it was there already), of `shape` if given; numpy is copied in."""
    found = obj if isinstance(obj, driver.DeviceArray) else driver.device_array(obj)
    on_device = found is not None
    if found is None:
        found = _upload(host_array(obj, what).astype(NUMPY_DTYPES[dtype], copy=False), dtype)
    elif found.dtype != dtype:
        raise TypeError(f"{what} must be {dtype} on the device, got {found.dtype}")
    if shape is not None and found.shape != shape:
        raise ValueError(f"{what} must be [{', '.join(map(str, shape))}], got {list(found.shape)}")
    if found.ptr % 4:  # the kernels load pairs of 16-bit values
        raise ValueError(f"{what} must start on a 4-byte boundary (a view at an odd element offset is not)")
    return found, on_device


def _result(
    x: object, on_device: bool, out: object, shape: tuple[int, int], dtype: str
) -> tuple[Any, driver.DeviceArray]:
    """(what the call returns, where the kernel writes it)."""
    if out is not None:
        found = driver.device_array(out)
        if found is None or found.shape != shape or found.dtype != dtype:
            raise ValueError(f"out must be a {dtype}{list(shape)} device array")
        return out, found
    if on_device:
        y = driver.empty_like(x, shape)
        found = driver.device_array(y)
        assert found is not None
        return y, found
    host = np.empty(shape, NUMPY_DTYPES[dtype])
    buffer = driver.Buffer(host.nbytes)
    return host, driver.DeviceArray(buffer.ptr, shape, dtype, buffer)


class GpuProgram(ProgramBase[GpuKernel | SimtKernel]):
    """A .tdsl file compiled for the GPU: its kernels (`kernels`, name -> GpuKernel, or
    SimtKernel for what gpu-tile leaves to the generic SIMT path)."""

    def __init__(self, source: str, file: str, tile: tuple[int, ...] = (), after_pass: PassCallback | None = None):
        self.source, self.file = source, file
        self.module = front_end(source, file)
        options = _tile_options(tile)
        self.kernels: dict[str, GpuKernel | SimtKernel] = {}
        for abi in kernel_abis(self.module, Options()):
            opt = only_kernel(self.module, abi.name)
            run_passes(opt, gpu_pipeline_spec(options), after_pass)
            fn = next(op for op in opt.ops if isinstance(op, func.FuncOp))
            if isinstance(reason := fn.attributes.get(SIMT), StringAttr):
                self.kernels[abi.name] = SimtKernel(self, abi, opt, reason.data, after_pass)
                continue
            spec, operands, layout = product_spec(fn)
            self.kernels[abi.name] = GpuKernel(self, abi, spec, operands, layout, opt)


def _tile_options(tile: tuple[int, ...]) -> str:
    """gpu-tile's options for `tile=[tm, tn]`: tm rows of x (a multiple of 8) and tn weight
    rows (a multiple of 16 x the block's warps) per block."""
    if not tile:
        return ""
    if len(tile) != 2 or tile[0] % 8 or tile[1] % (16 * WARPS) or min(tile) <= 0:
        raise CompileError(f"GPU tiles are [tm, tn]: tm a multiple of 8, tn of {16 * WARPS}; got {list(tile)}")
    return f"{{cols={tile[0] // 8} warp_rows={tile[1] // (16 * WARPS)}}}"
