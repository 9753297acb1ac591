"""A one-sweep rewrite driver for conversion passes: each op whose type has a pattern
is rewritten once; every other op costs a dictionary lookup.

xDSL's PatternRewriteWalker pays, for every op of the module, a worklist push and pop,
a rewriter reset, a dead-code check and each pattern's type test. A conversion pass
rewrites few of the ops it visits (convert-cf-to-llvm: 900 of a decoder layer's 16,000),
so that was most of its time. The patterns are xDSL RewritePatterns, unchanged; what
they create is not visited again (a conversion's output is the next dialect down).
"""

from collections.abc import Mapping

from xdsl.ir import Operation
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern
from xdsl.rewriter import InsertPoint


def apply_once(root: Operation, patterns: Mapping[type[Operation], RewritePattern]) -> None:
    """Rewrite every op nested in `root` whose exact type is a key of `patterns` with
    that pattern, in walk order; ops an earlier rewrite erased are skipped."""
    matched = [op for op in root.walk() if type(op) in patterns]
    if not matched:
        return
    rewriter = PatternRewriter(matched[0])
    for op in matched:
        if op.parent is None:
            continue
        rewriter.current_operation, rewriter.insertion_point = op, InsertPoint.before(op)
        rewriter.has_done_action, rewriter.name_hint = False, None
        patterns[type(op)].match_and_rewrite(op, rewriter)
