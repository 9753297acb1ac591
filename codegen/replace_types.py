"""A type conversion that rewrites only what it changes.

xDSL's recursive TypeConversionPattern rebuilds every attribute of every op, which
was most of a conversion pass's time on large (vectorised) kernels; this one keeps
an attribute without a type to convert as it is, and rebuilds an op only when one
of its result, block argument, attribute or property types changes.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterable

from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr
from xdsl.ir import Attribute, Operation, ParametrizedAttribute
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern


class ReplaceTypes(RewritePattern, ABC):
    """Replaces the types that `leaf` converts, wherever they are nested."""

    @abstractmethod
    def leaf(self, attr: Attribute) -> Attribute | None:
        """The replacement of a type this conversion handles, else None."""

    def __init__(self) -> None:
        super().__init__()
        # Keyed on identity, not equality: equal attributes may differ (IntAttr(0) ==
        # IntAttr(False)). The entry keeps the attribute alive, so its id stays its own.
        self._seen: dict[int, tuple[Attribute, Attribute]] = {}

    def convert(self, attr: Attribute) -> Attribute:
        if (hit := self._seen.get(id(attr))) is not None and hit[0] is attr:
            return hit[1]
        new = self._convert(attr)
        self._seen[id(attr)] = (attr, new)
        return new

    def _convert(self, attr: Attribute) -> Attribute:
        if (new := self.leaf(attr)) is not None:
            return new
        if isinstance(attr, ParametrizedAttribute):
            params = tuple(self.convert(p) for p in attr.parameters)
            return attr if _same(params, attr.parameters) else type(attr).new(params)
        if isinstance(attr, ArrayAttr):
            items = tuple(self.convert(a) for a in attr.data)
            return attr if _same(items, attr.data) else ArrayAttr(items)
        if isinstance(attr, DictionaryAttr):
            entries = {k: self.convert(v) for k, v in attr.data.items()}
            return attr if _same(entries.values(), attr.data.values()) else DictionaryAttr(entries)
        return attr

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        self.retype(op, rewriter)

    def retype(self, op: Operation, rewriter: PatternRewriter) -> Operation:
        """`op` with its types converted: itself where none changes, else its replacement
        (a pass that goes on lowering it in the same visit needs the new op: a walk that
        does not revisit would leave it unlowered)."""
        for block in (b for r in op.regions for b in r.blocks) if op.regions else ():
            for arg in block.args:
                if (t := self.convert(arg.type)) is not arg.type:
                    rewriter.replace_value_with_new_type(arg, t)
        # Most ops keep every type: check that first, building nothing (the walker visits
        # every op, and the ops a conversion pass creates too).
        if (self.unchanged(r.type for r in op.results) and self.unchanged(op.attributes.values())
                and self.unchanged(op.properties.values())):  # fmt: skip
            return op
        types = [self.convert(r.type) for r in op.results]
        attributes = {k: self.convert(v) for k, v in op.attributes.items()}
        properties = {k: self.convert(v) for k, v in op.properties.items()}
        regions = [op.detach_region(r) for r in op.regions]
        new_op = type(op).create(operands=op.operands, result_types=types, properties=properties,
                                 attributes=attributes, successors=op.successors, regions=regions)  # fmt: skip
        rewriter.replace(op, new_op)
        for new, old in zip(new_op.results, op.results):
            new.name_hint = old.name_hint
        return new_op

    def unchanged(self, attrs: Iterable[Attribute]) -> bool:
        for attr in attrs:
            if self.convert(attr) is not attr:
                return False
        return True


def _same(new: Iterable[Attribute], old: Iterable[Attribute]) -> bool:
    return all(a is b for a, b in zip(new, old, strict=True))
