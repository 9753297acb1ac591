"""The syntax tree of a .tdsl file; every node knows where it was written."""

from __future__ import annotations

from dataclasses import dataclass, field

from stoicc_py.diagnostics import SourceLoc


@dataclass
class LayoutTerm:
    name: str
    args: list[object]
    kwargs: dict[str, object]
    loc: SourceLoc
    called: bool = False


@dataclass
class LayoutExpr:
    terms: list[LayoutTerm]  # one, or two joined by `with`
    loc: SourceLoc


@dataclass
class TypeSpec:
    dtype: str
    dims: list[int | str]  # sizes, and size symbols or dim expressions (stoicc_py.dims)
    loc: SourceLoc


@dataclass
class Param:
    name: str
    type: TypeSpec
    layout: LayoutExpr | None
    loc: SourceLoc


@dataclass
class Expr:
    loc: SourceLoc


@dataclass
class Number(Expr):
    value: float


@dataclass
class Var(Expr):
    name: str


@dataclass
class BinOp(Expr):
    op: str  # + - * / @, or a comparison < <= > >= == !=
    lhs: Expr
    rhs: Expr


@dataclass
class Neg(Expr):
    operand: Expr


@dataclass
class ListExpr(Expr):
    """`[e0, e1, ...]`: a call argument that is a shape or a permutation, not a value."""

    items: list[Expr]


@dataclass
class Slice(Expr):
    """`base[start:stop, ...]`: per axis, a start and a stop (None where omitted)."""

    base: Expr
    bounds: list[tuple[Expr | None, Expr | None]]


@dataclass
class Call(Expr):
    func: str
    args: list[Expr]
    kwargs: dict[str, Expr] = field(default_factory=dict)
    kwarg_locs: dict[str, SourceLoc] = field(default_factory=dict)


@dataclass
class Assign:
    name: str
    value: Expr
    loc: SourceLoc


@dataclass
class Return:
    values: list[Expr]
    loc: SourceLoc


@dataclass
class Kernel:
    name: str
    params: list[Param]
    results: list[TypeSpec]
    body: list[Assign | Return]
    loc: SourceLoc


@dataclass
class LayoutDecl:
    name: str
    layout: LayoutExpr
    loc: SourceLoc


@dataclass
class Module:
    layouts: list[LayoutDecl]
    kernels: list[Kernel]
    file: str
    source: str
