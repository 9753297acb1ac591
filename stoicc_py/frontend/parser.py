"""Source text to syntax tree, with lark; syntax errors become located CompileErrors."""

from __future__ import annotations

import contextlib
import re
from functools import cache
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.tree import Meta
from lark.visitors import Transformer_NonRecursive, v_args

from stoicc_py import dims
from stoicc_py.cache_dir import cache_dir
from stoicc_py.diagnostics import CompileError, SourceLoc
from stoicc_py.frontend import ast
from stoicc_py.limits import MAX_NESTING, MAX_SOURCE_CHARS

_TOKEN_NAMES = {
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'",
    "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "AT": "'@'", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "LESSTHAN": "'<'", "MORETHAN": "'>'", "NAME": "a name", "INT": "an integer", "NUMBER": "a number",
    "RETURN": "'return'", "KERNEL": "'kernel'", "LAYOUT": "'layout'", "WITH": "'with'", "$END": "end of file",
    "__ANON_0": "'->'",
}  # fmt: skip


@cache
def _lark() -> Lark:
    """The parser; its LALR tables are cached in the cache directory (lark's own cache,
    keyed by the grammar, the options and lark's version; a corrupt or unwritable file
    is ignored): building them is a tenth of a second of every new process's first compile."""
    grammar = files("stoicc_py").joinpath("grammar.lark").read_text()
    tables = cache_dir() / "grammar"
    with contextlib.suppress(OSError):
        tables.mkdir(parents=True, exist_ok=True)
    return Lark(
        grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True, start=["start", "layout_expr"],
        cache=str(tables / "tdsl.lark-tables"),
    )  # fmt: skip


class _ToAst(Transformer_NonRecursive[Token, Any]):
    """Parse tree to syntax tree without recursion: `x + x + ... + x` is a tree as deep as it is long."""

    def __init__(self, file: str):
        super().__init__(visit_tokens=True)
        self.file = file

    def loc(self, item: Meta | Token) -> SourceLoc:
        return SourceLoc(self.file, item.line or 0, item.column or 0)

    # --- layouts
    def lint(self, children: list[Token]) -> int:
        return int(children[0])

    def lfloat(self, children: list[Token]) -> float:
        return float(children[0])

    def llist(self, children: list[Any]) -> list[Any]:
        return [c for c in children if c is not None]

    def lkwarg(self, children: list[Any]) -> tuple[str, Any, SourceLoc]:
        name, value = children
        return (str(name), value, self.loc(name))

    def layout_name(self, children: list[Token]) -> ast.LayoutTerm:
        return ast.LayoutTerm(str(children[0]), [], {}, self.loc(children[0]))

    def layout_call(self, children: list[Any]) -> ast.LayoutTerm:
        name, *rest = children
        term = ast.LayoutTerm(str(name), [], {}, self.loc(name), called=True)
        for a in rest:
            if isinstance(a, tuple):
                if a[0] in term.kwargs:
                    raise CompileError(f"{term.name}() got option '{a[0]}' twice", a[2])
                term.kwargs[a[0]] = a[1]
            elif a is not None:
                term.args.append(a)
        return term

    def layout_expr(self, children: list[Any]) -> ast.LayoutExpr:
        terms = [c for c in children if c is not None]
        return ast.LayoutExpr(terms, terms[0].loc)

    # --- types and kernels
    def type_spec(self, children: list[Any]) -> ast.TypeSpec:
        dtype, *dims = children
        return ast.TypeSpec(str(dtype), [d for d in dims if d is not None], self.loc(dtype))

    # --- dims: each rule returns a canonical dim (stoicc_py.dims)
    def dim_int(self, children: list[Token]) -> int:
        return int(children[0])

    def dim_name(self, children: list[Token]) -> str:
        return str(children[0])

    def dim_add(self, children: list[dims.Dim]) -> dims.Dim:
        return dims.add(*children)

    def dim_sub(self, children: list[dims.Dim]) -> dims.Dim:
        return dims.sub(*children)

    @v_args(meta=True)
    def dim_mul(self, meta: Meta, children: list[dims.Dim]) -> dims.Dim:
        a, b = children
        if not isinstance(a, int) and not isinstance(b, int):
            raise CompileError(f"a dim is affine: {a} * {b} multiplies two size symbols", self.loc(meta))
        return dims.scale(b, a) if isinstance(a, int) else dims.scale(a, b)  # type: ignore[arg-type]

    def param(self, children: list[Any]) -> ast.Param:
        name, type_spec, layout = children
        return ast.Param(str(name), type_spec, layout, self.loc(name))

    def results(self, children: list[ast.TypeSpec]) -> list[ast.TypeSpec]:
        return children

    def kernel(self, children: list[Any]) -> ast.Kernel:
        name, *rest = children
        params = [c for c in rest if isinstance(c, ast.Param)]
        results = next(c for c in rest if isinstance(c, list))
        body = [c for c in rest if isinstance(c, ast.Assign | ast.Return)]
        return ast.Kernel(str(name), params, results, body, self.loc(name))

    def layout_decl(self, children: list[Any]) -> ast.LayoutDecl:
        name, layout = children
        return ast.LayoutDecl(str(name), layout, self.loc(name))

    # --- statements and expressions
    def assign(self, children: list[Any]) -> ast.Assign:
        name, value = children
        return ast.Assign(str(name), value, self.loc(name))

    def ret(self, children: list[ast.Expr]) -> ast.Return:
        return ast.Return(children, children[0].loc)

    def number(self, children: list[Token]) -> ast.Number:
        return ast.Number(self.loc(children[0]), float(children[0]))

    def var(self, children: list[Token]) -> ast.Var:
        return ast.Var(self.loc(children[0]), str(children[0]))

    def neg(self, children: list[ast.Expr]) -> ast.Expr:
        (operand,) = children
        if isinstance(operand, ast.Number):
            return ast.Number(operand.loc, -operand.value)
        return ast.Neg(operand.loc, operand)

    def _binop(self, op: str, children: list[ast.Expr]) -> ast.BinOp:
        lhs, rhs = children
        return ast.BinOp(lhs.loc, op, lhs, rhs)

    def add(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop("+", children)

    def sub(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop("-", children)

    def mul(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop("*", children)

    def div(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop("/", children)

    def matmul(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop("@", children)

    # comparisons: the lowest precedence, non-associative (grammar.lark)
    def lt(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop("<", children)

    def le(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop("<=", children)

    def gt(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop(">", children)

    def ge(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop(">=", children)

    def eq(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop("==", children)

    def ne(self, children: list[ast.Expr]) -> ast.BinOp:
        return self._binop("!=", children)

    @v_args(meta=True)
    def list_expr(self, meta: Meta, children: list[Any]) -> ast.ListExpr:
        return ast.ListExpr(self.loc(meta), [c for c in children if c is not None])

    def slice(self, children: list[Any]) -> tuple[ast.Expr | None, ast.Expr | None]:
        start, stop = children
        return (start, stop)

    def slice_expr(self, children: list[Any]) -> ast.Slice:
        base, *bounds = children
        return ast.Slice(base.loc, base, bounds)

    def kwarg(self, children: list[Any]) -> tuple[str, ast.Expr, SourceLoc]:
        name, value = children
        return (str(name), value, self.loc(name))

    def call(self, children: list[Any]) -> ast.Call:
        name, *args = children
        call = ast.Call(self.loc(name), str(name), [])
        for a in args:
            if isinstance(a, tuple):
                if a[0] in call.kwargs:
                    raise CompileError(f"keyword argument '{a[0]}' given twice", a[2])
                call.kwargs[a[0]] = a[1]
                call.kwarg_locs[a[0]] = a[2]
            elif a is not None:
                call.args.append(a)
        return call

    def start(self, children: list[Any]) -> tuple[list[ast.LayoutDecl], list[ast.Kernel]]:
        return (
            [c for c in children if isinstance(c, ast.LayoutDecl)],
            [c for c in children if isinstance(c, ast.Kernel)],
        )


def _syntax_error(err: UnexpectedInput, file: str) -> CompileError:
    loc = SourceLoc(file, err.line if err.line > 0 else 1, err.column if err.column > 0 else 1)
    match err:
        case UnexpectedToken(token=tok):
            expected = sorted({_TOKEN_NAMES.get(t, t) for t in err.expected if not t.startswith("__ANON")})
            found = "end of file" if tok.type == "$END" else f"'{tok}'"
            hint = f", expected {', '.join(expected)}" if 0 < len(expected) <= 6 else ""
            return CompileError(f"unexpected {found}{hint}", loc)
        case UnexpectedCharacters(char=char):
            return CompileError(f"unexpected character '{char}'", loc)
        case UnexpectedEOF():
            return CompileError("unexpected end of file", loc)
    return CompileError("syntax error", loc)


# What the lexer skips (grammar.lark's COMMENT) and the brackets that nest
_BRACKETS = re.compile(r"#[^\n]*|//[^\n]*|([(\[])|[)\]]")


def _check_limits(source: str, file: str) -> None:
    """Refuse, before lexing, a source longer than MAX_SOURCE_CHARS (parsing takes time
    and memory in proportion) or with brackets nested deeper than MAX_NESTING (a layout's
    arguments are read recursively)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise CompileError(
            f"the source is longer than the limit of {MAX_SOURCE_CHARS} characters",
            SourceLoc.at_offset(file, source, MAX_SOURCE_CHARS),
        )
    depth = 0
    for match in _BRACKETS.finditer(source):
        if match.group(0)[0] in "#/":
            continue
        depth = depth + 1 if match.group(1) else max(depth - 1, 0)  # an unmatched `)` is a syntax error
        if depth > MAX_NESTING:
            raise CompileError(
                f"brackets nested too deeply (more than the limit of {MAX_NESTING})",
                SourceLoc.at_offset(file, source, match.start()),
            )


def parse(source: str, file: str = "<string>") -> ast.Module:
    """Parse .tdsl source into a syntax tree; raises CompileError."""
    layouts, kernels = _parse(source, file, "start")
    return ast.Module(layouts, kernels, file, source)


def parse_layout_expr(text: str) -> ast.LayoutExpr:
    """Parse a layout expression such as `nm(2, 4)`; raises CompileError."""
    return _parse(text, "<layout>", "layout_expr")


def _parse(source: str, file: str, start: str) -> Any:
    try:
        _check_limits(source, file)
        tree: Tree[Token] = _lark().parse(source, start=start)
        return _ToAst(file).transform(tree)
    except UnexpectedInput as err:
        raise _syntax_error(err, file).with_source(source) from None
    except CompileError as err:
        raise err.with_source(source) from None
    except Exception as err:  # lark wraps errors raised inside the transformer
        inner = getattr(err, "orig_exc", None)
        if isinstance(inner, CompileError):
            raise inner.with_source(source) from None
        raise
