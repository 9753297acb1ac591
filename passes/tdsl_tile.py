"""tdsl-tile: choose the loop tile sizes [tm, tn, tk] of every matrix product.

The sizes are recorded on the op (`tile = array<i64: tm, tn, tk>`) and realised by
tdsl-lower-to-loops. They come from the target's defaults unless `sizes` is given
(`-p 'tdsl-tile{sizes=8,32,64}'`), rounded up so that a loop tile holds whole
format granules of a non-dense weight (N:M groups, blocks, hybrid tiles).
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, i64
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern
from xdsl.utils.exceptions import DiagnosticException

from stoicc_py.dialects.tdsl import ContractionOp, LinearOp, MatmulOp, TensorType

# Per target and op: a weight tile of tn x tk f32 stays in L2 while tm rows of the
# activations stream through it; the innermost loop runs along contiguous memory
# (k for linear's dot products, n for matmul's row updates). Linear's long k-tile
# amortises the microkernel's reductions (tdsl-microkernel), measured best on AVX-512.
TARGET_TILES: dict[str, dict[type[ContractionOp], tuple[int, int, int]]] = {
    "cpu": {LinearOp: (16, 48, 1024), MatmulOp: (16, 256, 128)},
}


@dataclass
class TileContraction(RewritePattern):
    sizes: tuple[int, ...]
    target: str

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ContractionOp, rewriter: PatternRewriter, /):
        if op.tile is not None:
            return
        tm, tn, tk = self.sizes or TARGET_TILES[self.target][type(op)]
        weight = op.rhs.type
        if isinstance(weight, TensorType) and op.RHS_TRANSPOSED:
            # Round n and k tiles up to whole format granules: a hybrid tile, a
            # block or an N:M group is never split across loop tiles.
            rows, cols = weight.layout.granule()
            tn, tk = -(-tn // rows) * rows, -(-tk // cols) * cols
        op.attributes["tile"] = DenseArrayBase.from_list(i64, (tm, tn, tk))
        rewriter.handle_operation_modification(op)


@dataclass(frozen=True)
class Tile(ModulePass):
    name = "tdsl-tile"

    sizes: tuple[int, ...] = ()
    target: str = "cpu"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.sizes and (len(self.sizes) != 3 or min(self.sizes) <= 0):
            raise DiagnosticException(f"tdsl-tile: sizes must be three positive integers, got {list(self.sizes)}")
        if self.target not in TARGET_TILES:
            raise DiagnosticException(f"tdsl-tile: unknown target '{self.target}' (known: {', '.join(TARGET_TILES)})")
        PatternRewriteWalker(TileContraction(self.sizes, self.target), apply_recursively=False).rewrite_module(op)
