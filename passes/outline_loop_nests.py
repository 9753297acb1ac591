"""outline-loop-nests: each top-level loop nest of a kernel becomes a function of its own.

LLVM's O3 and code generation work on one function at a time, and several of their
passes (loop vectorisation, jump threading, loop strength reduction, register
allocation) take time that grows faster than linearly with a function's size: a
kernel of n statements lowered to one function of n loop nests costs O(n^2). Each
nest in its own private, `no_inline` function (internal linkage, noinline in LLVM)
bounds every function by the largest nest, so LLVM's time grows linearly with n.

Runs on pointers and structured loops: after lower-memory-to-ptr has lowered the
signature (resolve-memref-dims no longer needs the kernel's argument attributes),
before lower-scf-to-cf. A nest's function takes the kernel arguments and the results
of top-level ops with effects (allocations) that the nest uses; the side-effect-free
ops that compute the rest (constants, sizes, strides) are cloned into it, so that
LLVM still sees constant trip counts and strides. It promises unaliased pointers
(stoicc.noalias_args) where the kernel does and each pointer is a kernel argument or
a fresh allocation; otherwise it promises nothing. A top-level op whose results are
used later (a loop yielding a value) stays in the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, ptr
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.ir import Block, BlockArgument, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from stoicc_py.backends.llvm.translate import NO_INLINE, NOALIAS_ARGS
from stoicc_py.codegen.pure import computes_only
from stoicc_py.passes.lower_alloc import ALLOC_FN

MIN_NESTS = 2
"""A kernel of fewer nests gains nothing from outlining its nest."""


def _nests(kernel: func.FuncOp) -> list[Operation]:
    """The kernel's top-level ops with regions whose results nothing uses."""
    return [op for op in kernel.body.block.ops if op.regions and not any(r.uses for r in op.results)]


def free_values(nest: Operation) -> list[SSAValue]:
    """The values that `nest` uses and defines outside itself, in order of first use."""
    inside: set[Operation] = set()
    blocks: set[Block] = set()
    used: dict[SSAValue, None] = {}
    for op in nest.walk():
        inside.add(op)
        blocks.update(b for region in op.regions for b in region.blocks)
        used.update(dict.fromkeys(op.operands))
    return [
        v for v in used
        if not (v.owner in blocks if isinstance(v, BlockArgument) else v.owner in inside)
    ]  # fmt: skip


class Outliner:
    """Builds the function of one nest: its arguments, and the pure ops it clones."""

    def __init__(self, kernel: func.FuncOp) -> None:
        self.kernel = kernel
        self.block = Block()
        self.mapping: dict[SSAValue, SSAValue] = {}
        self.operands: list[SSAValue] = []

    def value(self, v: SSAValue) -> SSAValue:
        """The nest function's value for the kernel's `v`: a clone of its pure
        definition, or a new argument."""
        if (known := self.mapping.get(v)) is not None:
            return known
        owner = v.owner
        if isinstance(owner, Operation) and computes_only(owner):
            for operand in owner.operands:
                self.value(operand)
            self.block.add_op(owner.clone(value_mapper=self.mapping))
        else:
            arg = self.mapping[v] = self.block.insert_arg(v.type, len(self.block.args))
            arg.name_hint = v.name_hint
            self.operands.append(v)
        return self.mapping[v]

    def noalias(self) -> bool:
        """Whether the nest's pointers keep the kernel's promise: each one a kernel
        argument or the result of its own allocation."""
        return NOALIAS_ARGS in self.kernel.attributes and all(
            isinstance(v, BlockArgument)
            or (isinstance(v.owner, func.CallOp) and v.owner.callee.string_value() == ALLOC_FN)
            for v in self.operands
            if isinstance(v.type, ptr.PtrType)
        )

    def function(self, name: str) -> func.FuncOp:
        """The block built so far as a private, never inlined function (noalias where it may be)."""
        fn = func.FuncOp(name, (self.block.arg_types, ()), Region(self.block), visibility="private")
        fn.attributes[NO_INLINE] = UnitAttr()
        if self.noalias():
            fn.attributes[NOALIAS_ARGS] = UnitAttr()
        return fn

    def outline(self, nest: Operation, name: str) -> func.FuncOp:
        """The nest's function, and a call to it in the nest's place. The nest moves (a
        clone of every nest was two thirds of this pass's time): its uses of free values
        are rewired to the function's."""
        free = free_values(nest)
        for v in free:
            self.value(v)
        # The nest's own operands, not each free value's every use: a kernel's arguments
        # and constants are used by all its nests, so that was quadratic in the nests.
        outside = set(free)
        for op in nest.walk():
            for i, operand in enumerate(op.operands):
                if operand in outside:
                    op.operands[i] = self.mapping[operand]
        Rewriter.insert_op(func.CallOp(name, self.operands, ()), InsertPoint.before(nest))
        nest.detach()
        self.block.add_ops([nest, func.ReturnOp()])
        return self.function(name)


def _erase_unused_pure_ops(block: Block) -> None:
    """What only the nests used: last first, so that an op's operands lose that use first."""
    for op in reversed(list(block.ops)):
        if computes_only(op) and not any(r.uses for r in op.results):
            block.erase_op(op)


@dataclass(frozen=True)
class OutlineLoopNests(ModulePass):
    name = "outline-loop-nests"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for kernel in list(op.ops):
            if not isinstance(kernel, func.FuncOp) or kernel.is_declaration or NO_INLINE in kernel.attributes:
                continue
            nests = _nests(kernel)
            if len(nests) < MIN_NESTS:
                continue
            # after the kernel, in order: the object code reads like the source
            outlined = [
                Outliner(kernel).outline(nest, f"{kernel.sym_name.data}.nest{i}") for i, nest in enumerate(nests)
            ]
            op.body.block.insert_ops_after(outlined, kernel)
            _erase_unused_pure_ops(kernel.body.block)
