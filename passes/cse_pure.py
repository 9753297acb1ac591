"""cse-pure: common subexpression elimination of side-effect-free ops without regions,
in structured control flow.

lower-memory-to-ptr lowers each access on its own: every load and store computes its
offset again (a constant per stride, a multiplication and an addition per index), so
the accesses of one loop body repeat the same arithmetic. Removing it here cuts a
fifth of the ops that every later pass converts and LLVM parses. xDSL's `cse` finds
the same, but hashes every op with its effects and regions; this pass looks only at
side-effect-free ops without regions or successors (pointer arithmetic included), keyed by class,
operands, result types, properties and attributes. Scopes follow the regions: an op
is replaced by an equal one earlier in its block or in a block that encloses it, so
the kept op dominates (single-block regions as scf's; each block of a region is its
own scope, and ops isolated from above start afresh).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation
from xdsl.passes import ModulePass
from xdsl.traits import IsolatedFromAbove

from stoicc_py.codegen.pure import computes_only


def _key(op: Operation) -> Hashable:
    return (type(op), tuple(op.operands), tuple(r.type for r in op.results),
            tuple(sorted(op.properties.items())), tuple(sorted(op.attributes.items())))  # fmt: skip


def _pure(op: Operation) -> bool:
    return bool(op.results) and not op.successors and computes_only(op)


def _number(block: Block, table: dict[Hashable, Operation]) -> None:
    """Replace the pure ops of `block` (and of the regions in it) that `table`, the ops
    of the enclosing scopes, already computes. A scoped table: one dict, each block's
    entries removed when it ends (an entry is only added where no outer one has its
    key), so a lookup hashes its key once, however deep the nest."""
    added = []
    for op in list(block.ops):
        if _pure(op):
            key = _key(op)
            if (kept := table.get(key)) is not None:
                for old, new in zip(op.results, kept.results):
                    old.replace_all_uses_with(new)
                block.erase_op(op)
                continue
            table[key] = op
            added.append(key)
        for region in op.regions:
            for inner in region.blocks:
                _number(inner, {} if op.has_trait(IsolatedFromAbove) else table)
    for key in added:
        del table[key]


@dataclass(frozen=True)
class CsePure(ModulePass):
    name = "cse-pure"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        _number(op.body.block, {})
