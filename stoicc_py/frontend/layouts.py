"""Layout expressions (`nm(2, 4) with int4(group=128)`) to layout attributes."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.dialects.builtin import ArrayAttr
from xdsl.ir import Attribute, ParametrizedAttribute
from xdsl.utils.exceptions import VerifyException

from stoicc_py.codec.uniform import STORAGE_BITS, VALUE_BITS
from stoicc_py.diagnostics import CompileError, SourceLoc
from stoicc_py.dialects.layout import DENSE, ComposedLayoutAttr, LayoutAttr
from stoicc_py.dialects.quant import BitSplitAttr, SQAttr, UniformQuantAttr
from stoicc_py.dialects.sparse import BlockAttr, CSRAttr, HybridAttr, NMAttr
from stoicc_py.dialects.tdsl import DTYPES
from stoicc_py.frontend.ast import LayoutExpr, LayoutTerm
from stoicc_py.frontend.parser import parse_layout_expr


class _Args:
    """A layout term's arguments, consumed by name or position, with located errors."""

    def __init__(self, term: LayoutTerm, names: tuple[str, ...], env: dict[str, LayoutAttr]):
        self.term, self.env = term, env
        if len(term.args) > len(names):
            raise CompileError(f"{term.name}() takes at most {len(names)} positional arguments", term.loc)
        self.values: dict[str, object] = dict(zip(names, term.args))
        for key, value in term.kwargs.items():
            if key not in names:
                raise CompileError(f"{term.name}() has no option '{key}' (options: {', '.join(names)})", term.loc)
            if key in self.values:
                raise CompileError(f"{term.name}() got option '{key}' twice", term.loc)
            self.values[key] = value

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.values.get(key, default)
        if not isinstance(value, int):
            raise CompileError(f"{self.term.name}(): '{key}' must be an integer", self.term.loc)
        return value

    def ints(self, key: str, count: int) -> list[int]:
        value = self.values.get(key)
        if not (isinstance(value, list) and len(value) == count and all(isinstance(v, int) for v in value)):
            raise CompileError(f"{self.term.name}(): '{key}' must be a list of {count} integers", self.term.loc)
        return value

    def word(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.values.get(key)
        if value is None:
            return default
        if not (isinstance(value, LayoutTerm) and not value.called and value.name in choices):
            raise CompileError(f"{self.term.name}(): '{key}' must be one of {', '.join(choices)}", self.term.loc)
        return value.name

    def number(self, key: str, default: float | None = None) -> float:
        value = self.values.get(key, default)
        if not isinstance(value, int | float):
            raise CompileError(f"{self.term.name}(): '{key}' must be a number", self.term.loc)
        return float(value)

    def layout(self, key: str) -> LayoutAttr:
        value = self.values.get(key)
        if not isinstance(value, LayoutTerm):
            raise CompileError(f"{self.term.name}(): '{key}' must be a layout", self.term.loc)
        return build_term(value, self.env)

    def layouts(self, key: str) -> list[LayoutAttr]:
        value = self.values.get(key)
        if not (isinstance(value, list) and all(isinstance(v, LayoutTerm) for v in value)):
            raise CompileError(f"{self.term.name}(): '{key}' must be a list of layouts", self.term.loc)
        return [build_term(v, self.env) for v in value]


def _nm(a: _Args) -> LayoutAttr:
    return NMAttr(a.integer("n"), a.integer("m"))


def _block(a: _Args) -> LayoutAttr:
    bh, bw = a.ints("size", 2)
    return BlockAttr(bh, bw)


def _csr(a: _Args) -> LayoutAttr:
    index = a.word("index", "i32", ("i8", "i16", "i32", "i64"))
    return CSRAttr(int(index[1:]))


def _hybrid(a: _Args) -> LayoutAttr:
    return HybridAttr(a.ints("tile", 2), a.layouts("formats"))


def _quant(storage: str) -> Callable[[_Args], LayoutAttr]:
    def build(a: _Args) -> LayoutAttr:
        per = a.word("per", "", ("tensor", "channel", "group", "token"))
        if not per:
            per = "group" if "group" in a.values else "channel" if "axis" in a.values else "tensor"
        axis = a.integer("axis", 1 if per == "group" else 0)
        group = a.integer("group", 0)
        zero = a.word("zero", "int", ("int", "float"))
        # zero=float is asymmetric by nature: symmetric=false is implied, symmetric=true refused (verify)
        symmetric = a.word("symmetric", "true" if zero == "int" else "false", ("true", "false")) == "true"
        scale = DTYPES[a.word("scale", "f32", ("f32", "bf16", "f16"))]
        return UniformQuantAttr(storage, per, axis, group, symmetric, scale, zero)

    return build


def _sq(a: _Args) -> LayoutAttr:
    low, high = a.layout("low"), a.layout("high") if "high" in a.values else UniformQuantAttr("int8", "channel")
    if not isinstance(low, UniformQuantAttr) or not isinstance(high, UniformQuantAttr):
        raise CompileError("sq(): low and high must be quantized layouts such as int4(group=128) and int8", a.term.loc)
    group = a.integer("group", low.group.data if low.per.data == "group" else 128)
    if "count" in a.values:
        count = a.integer("count")
    else:
        density = a.number("high_density", 0.05)
        if not 0.0 < density < 1.0:
            raise CompileError(f"sq(): high_density must be in (0, 1), got {density}", a.term.loc)
        count = max(1, round(density * group))
    return SQAttr(low, high, group, count)


def _bitsplit(a: _Args) -> LayoutAttr:
    if a.word("codes", "int8", ("int8",)) != "int8":
        raise CompileError("bitsplit(): only int8 activations split", a.term.loc)
    return BitSplitAttr(a.integer("low_bits", 4), a.word("offset", "false", ("true", "false")) == "true")


_BUILDERS: dict[str, tuple[tuple[str, ...], Callable[[_Args], LayoutAttr]]] = {
    "sq": (("low", "high", "high_density", "group", "count"), _sq),
    "bitsplit": (("codes", "low_bits", "offset"), _bitsplit),
    "dense": ((), lambda _: DENSE),
    "nm": (("n", "m"), _nm),
    "block": (("size",), _block),
    "csr": (("index",), _csr),
    "hybrid": (("tile", "formats"), _hybrid),
    **{s: (("group", "axis", "per", "symmetric", "scale", "zero"), _quant(s)) for s in STORAGE_BITS},
}


def build_term(term: LayoutTerm, env: dict[str, LayoutAttr]) -> LayoutAttr:
    if term.name in env and not term.args and not term.kwargs:
        return env[term.name]
    if term.name not in _BUILDERS:
        known = ", ".join([*_BUILDERS, *env])
        raise CompileError(f"unknown layout '{term.name}' (known: {known})", term.loc)
    names, build = _BUILDERS[term.name]
    try:
        return build(_Args(term, names, env))
    except VerifyException as err:
        raise CompileError(str(err), term.loc) from None


def build_layout(expr: LayoutExpr, env: dict[str, LayoutAttr]) -> LayoutAttr:
    """The attribute of a layout expression; `env` holds the `layout NAME = ...` declarations."""
    attrs = [build_term(t, env) for t in expr.terms]
    if len(attrs) == 1:
        return attrs[0]
    try:
        return ComposedLayoutAttr(*attrs)
    except VerifyException as err:
        raise CompileError(str(err), expr.loc) from None


def parse_layout(text: str) -> LayoutAttr:
    """The attribute of a layout written as text, e.g. `hybrid(tile=[32, 32], formats=[dense, nm(2, 4)])`."""
    try:
        return build_layout(parse_layout_expr(text), {})
    except CompileError as err:
        raise err.with_source(text) from None


def _run_time_codes(attr: Attribute) -> str | None:
    """The codes in `attr` (or a layout inside it) that only `quantize` produces (VALUE_BITS)."""
    if isinstance(attr, UniformQuantAttr):
        return attr.codes.data if attr.codes.data in VALUE_BITS else None
    if isinstance(attr, ParametrizedAttribute):
        return next((c for p in attr.parameters if (c := _run_time_codes(p)) is not None), None)
    if isinstance(attr, ArrayAttr):
        return next((c for p in attr.data if (c := _run_time_codes(p)) is not None), None)
    return None


def check_parameter_layout(layout: LayoutAttr, loc: SourceLoc) -> None:
    """A located error where a parameter's layout holds codes that only `quantize` makes:
    their range (int7's -63..63, which its kernels' exactness rests on) is the quantizer's."""
    if (codes := _run_time_codes(layout)) is not None:
        raise CompileError(f"{codes} codes are made by quantize at run time (e.g. quantize(x, {codes}(per=token))), "
                           "not passed in: a parameter takes int8", loc)  # fmt: skip
