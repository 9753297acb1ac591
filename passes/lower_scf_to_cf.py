"""Lowers `scf.for` / `scf.if` / `scf.index_switch` to `cf` branches, last op first.

xDSL's patterns (xdsl.transforms.convert_scf_to_cf) split the block holding the op
before it: every op after it moves to the new block (and gets its parent pointer
rewritten), and the new block is inserted by index, counting the region's blocks.
xDSL's own pass walks forward, so each of a kernel's n loop nests moves all the ops
of the nests after it and counts the blocks of the nests before it: O(n^2). Walking
backward, each split moves only the ops up to the nest lowered before it, in a block
near the region's start: linear. The IR produced is the same.
"""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import GreedyRewritePatternApplier, PatternRewriteWalker
from xdsl.transforms.convert_scf_to_cf import ForLowering, IfLowering, SwitchLowering


@dataclass(frozen=True)
class LowerScfToCf(ModulePass):
    name = "lower-scf-to-cf"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        patterns = GreedyRewritePatternApplier([SwitchLowering(), IfLowering(), ForLowering()])
        PatternRewriteWalker(patterns, walk_reverse=True).rewrite_module(op)
