"""The compiler's passes, one per module, registered by their kebab-case name.

The module of each pass is its name with underscores, and it is imported only
when the pass is used, as xDSL's own registry does.
"""

from collections.abc import Callable
from functools import partial
from importlib import import_module

from xdsl.passes import ModulePass

_CLASSES = {
    "tdsl-infer-shapes": "InferShapes",
    "tdsl-fold-transpose": "FoldTranspose",
    "tdsl-bitsplit-as-int8": "BitSplitAsInt8Pass",
    "tdsl-dequantize-sq-activations": "DequantizeSQActivationsPass",
    "tdsl-fuse-dequant": "FuseDequantPass",
    "tdsl-fuse-epilogue": "FuseEpilogue",
    "metadata-layout": "MetadataLayout",
    "tdsl-tile": "Tile",
    "tdsl-bufferize": "Bufferize",
    "tdsl-unbatch": "Unbatch",
    "tdsl-amx": "Amx",
    "tdsl-microkernel": "Microkernel",
    "tdsl-vectorize-quant": "VectorizeQuant",
    "tdsl-vectorize-integer": "VectorizeInteger",
    "tdsl-vectorize-sparse": "VectorizeSparse",
    "tdsl-vectorize-elementwise": "VectorizeElementwisePass",
    "tdsl-lower-to-loops": "LowerToLoops",
    "lower-views": "LowerViews",
    "hoist-constants": "HoistConstants",
    "mangle-symbols": "MangleSymbols",
    "lower-memory-to-ptr": "LowerMemoryToPtr",
    "cse-pure": "CsePure",
    "resolve-memref-dims": "ResolveMemrefDims",
    "lower-alloc": "LowerAlloc",
    "check-bounds": "CheckBounds",
    "mark-parallel-loops": "MarkParallelLoops",
    "outline-loop-nests": "OutlineLoopNests",
    "parallelize-loops": "ParallelizeLoops",
    "accel-tile": "AccelTile",
    "convert-tdsl-to-accel": "ConvertTdslToAccel",
    "accel-schedule": "AccelSchedule",
    "gpu-tile": "GpuTile",
    "gpu-expand-math": "GpuExpandMath",
    "gpu-simt-map": "GpuSimtMap",
}


def _load(name: str) -> type[ModulePass]:
    module = import_module(f"stoicc_py.passes.{name.replace('-', '_')}")
    return getattr(module, _CLASSES[name])


PASSES: dict[str, Callable[[], type[ModulePass]]] = {name: partial(_load, name) for name in _CLASSES}
