"""gpu-tile: check that each kernel is a product the GPU target runs, and record its
block tile [tm, tn, tk] (rows of x, weight rows, k-step) as `tile`, as tdsl-tile does
for the CPU: 8 x `cols` rows of x and `warps` x 16 x `warp_rows` weight rows per block,
and k-steps of the tensor-core instruction (16, or 32 for 2:4 weights through mma.sp).

What the GPU target runs (backends/gpu/kernel.py): a kernel whose body is one
`linear(x, w)` of f16 or bf16 rank-2 operands, x dense, w [n, k] dense, nm(2, 4),
hybrid tiles of those (th a multiple of a warp's 16 x warp_rows rows, tw of 32) or
symmetric int4/int8 codes with a scale per row or per (even) group, with
n and k static (k even), with a bias [n] and relu fused or not. Any other kernel runs
on the generic SIMT path (`simt`, the default; backends/gpu/simt.py): the function is
marked `gpu.simt` with the reason, also a remark at the op that needed it
(`stoicc compile --remarks`); with `simt=false` that reason is a located error.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, StringAttr, i64
from xdsl.ir import Operation
from xdsl.passes import ModulePass

from stoicc_py.backends.gpu.kernel import ACTIVATIONS, FORMATS, QUANT_FORMATS, SCALE_TYPES
from stoicc_py.backends.gpu.target import GPU_DTYPES, MMA_DENSE, MMA_SPARSE, WARPS
from stoicc_py.codegen.remarks import remark
from stoicc_py.diagnostics import CompileError, op_error
from stoicc_py.dialects.layout import LayoutAttr
from stoicc_py.dialects.quant import UniformQuantAttr
from stoicc_py.dialects.sparse import HybridAttr, NMAttr
from stoicc_py.dialects.tdsl import LinearOp, TensorType

SIMT = "gpu.simt"
"""String attribute on a kernel that the tensor-core kernels do not run: why (the SIMT path runs it)."""
SUPPORTED = "one linear(x, w) of f16/bf16 (w dense, nm(2, 4), hybrid or int4/int8), with a bias and relu or not"


def _tensor(op: Operation, index: int) -> TensorType:
    t = op.operands[index].type
    assert isinstance(t, TensorType)  # gpu-tile runs on the tensor-level IR
    return t


def weight_format(layout: LayoutAttr) -> str | None:
    """The kernel format (backends/gpu/kernel.py FORMATS, or "hybrid") of a weight layout, or None."""
    if layout.is_dense:
        return "dense"
    if isinstance(layout, NMAttr) and (layout.n.data, layout.m.data) == (2, 4):
        return "nm24"
    if isinstance(layout, HybridAttr) and all(weight_format(f) in FORMATS for f in layout.formats.data):
        return "hybrid"
    if isinstance(layout, UniformQuantAttr) and layout.codes.data in QUANT_FORMATS and _row_scales(layout):
        return layout.codes.data
    return None


def _row_scales(layout: UniformQuantAttr) -> bool:
    """Symmetric codes with a scale per group of a row or per row, in f32, f16 or bf16."""
    per_row = layout.per.data == "group" or (layout.per.data == "channel" and not layout.per_column)
    return layout.is_symmetric and not layout.float_offset and per_row and str(layout.scale) in SCALE_TYPES


def _check_hybrid(op: Operation, layout: HybridAttr, warp_rows: int) -> None:
    th, tw = layout.tile_shape
    if th % (16 * warp_rows) or tw % MMA_SPARSE[2]:
        raise op_error(op, f"hybrid tiles of [{th}, {tw}] on the GPU target need th a multiple of a warp's "
                           f"{16 * warp_rows} rows and tw of {MMA_SPARSE[2]}")  # fmt: skip


def check_product(op: Operation, warp_rows: int = 2) -> str:
    """The weight's kernel format; a located error if the GPU target cannot run `op`."""
    if not isinstance(op, LinearOp):
        raise op_error(op, f"'{op.name}' is not supported on the GPU target yet (it runs {SUPPORTED})")
    x, w = _tensor(op, 0), _tensor(op, 1)
    if x.rank != 2 or w.rank != 2:
        raise op_error(op, "the GPU target runs rank-2 products; batched products are not supported yet")
    if x.dtype not in GPU_DTYPES:
        raise op_error(op, f"the GPU target's tensor cores take {' or '.join(GPU_DTYPES)} operands, not {x.dtype}")
    format = weight_format(w.layout)
    if not x.layout.is_dense or format is None:
        layout = w.layout.summary() if x.layout.is_dense else f"an activation layout {x.layout.summary()}"
        raise op_error(op, f"{layout} is not supported on the GPU target yet (dense, nm(2, 4), hybrid of those, "
                           "or symmetric int4/int8 with scales per row or group)")  # fmt: skip
    if isinstance(w.layout, HybridAttr):
        _check_hybrid(op, w.layout, warp_rows)
    if isinstance(w.layout, UniformQuantAttr) and w.layout.group_size(int(w.dims[1])) % 2:
        raise op_error(op, "the GPU target dequantises pairs of codes: a scale group must be even")
    n, k = w.dims
    if not isinstance(n, int) or not isinstance(k, int) or k % 2:
        raise op_error(op, f"the GPU target needs a weight of static shape with an even k, not [{n}, {k}]")
    if op.activation is not None and op.activation not in ACTIVATIONS:
        raise op_error(op, f"activation {op.activation} is not fused on the GPU target yet ({', '.join(ACTIVATIONS)})")
    if op.bias is not None and _tensor(op, 2).dims != (n,):
        raise op_error(op, f"the GPU target adds a bias of shape [{n}] only")
    return format


def check_kernel(fn: func.FuncOp, warp_rows: int = 2) -> tuple[LinearOp, str]:
    """The kernel's one product and its weight's kernel format; a located error at the
    first op the GPU target does not run."""
    products = [op for op in fn.body.ops if not isinstance(op, func.ReturnOp)]
    if not products:
        raise op_error(fn, f"kernel {fn.sym_name.data} computes no product: the GPU target runs {SUPPORTED}")
    format = check_product(products[0], warp_rows)
    if len(products) > 1:
        raise op_error(products[1], f"'{products[1].name}' after the product is not supported on the GPU target yet "
                                    f"(it runs {SUPPORTED})")  # fmt: skip
    assert isinstance(products[0], LinearOp)  # check_product refuses any other op
    return products[0], format


@dataclass(frozen=True)
class GpuTile(ModulePass):
    name = "gpu-tile"

    warp_rows: int = 2  # 16-row mma tiles per warp along the weight's rows
    cols: int = 4  # 8-row mma tiles per block along x's rows
    simt: bool = True  # a kernel the tensor cores do not run takes the SIMT path (else: the error)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                try:
                    product, format = check_kernel(fn, self.warp_rows)
                except CompileError as err:
                    if not self.simt:
                        raise
                    fn.attributes[SIMT] = StringAttr(err.message)
                    remark(err.loc, f"kernel {fn.sym_name.data} runs on the GPU's generic SIMT path (scalar loop "
                                    f"nests on one thread block, no tensor cores): {err.message}")  # fmt: skip
                    continue
                k_step = (MMA_DENSE if format == "dense" else MMA_SPARSE)[2]
                sizes = [8 * self.cols, WARPS * 16 * self.warp_rows, k_step]
                product.attributes["tile"] = DenseArrayBase.from_list(i64, sizes)
