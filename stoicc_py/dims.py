"""Dims: a tensor dimension is an int (static) or a str, a canonical affine expression
over size symbols: `"T"`, `"P+T"`, `"2*T"`, `"T-1"`, `"-P+T"`. Terms are sorted by
symbol name, the constant comes last, so two dims are equal exactly when their
strings are (broadcasting and shape checks compare them as they are). A parameter
binds its plain-symbol dims at call time; every other dim is evaluated from those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias, TypeGuard

Dim: TypeAlias = int | str
Affine: TypeAlias = tuple[dict[str, int], int]
"""Coefficient of each symbol, and the constant term."""

_TERM = re.compile(r"\s*([+-])?\s*(?:(\d+)\s*\*\s*([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*\*\s*(\d+)|(\d+)|([A-Za-z_]\w*))\s*")


def affine(dim: Dim) -> Affine:
    """The coefficients and constant of `dim`; raises ValueError on text that is not an
    affine expression of integers and symbols."""
    if isinstance(dim, int):
        return {}, dim
    coeffs: dict[str, int] = {}
    const, pos = 0, 0
    while pos < len(dim):
        m = _TERM.match(dim, pos)
        if m is None or m.end() == pos or (pos > 0 and m.group(1) is None):
            raise ValueError(f"not a dim expression: '{dim}'")
        sign = -1 if m.group(1) == "-" else 1
        number, name = m.group(2) or m.group(5) or m.group(6), m.group(3) or m.group(4) or m.group(7)
        scale = sign * int(number) if number is not None else sign
        if name is None:
            const += scale
        else:
            coeffs[name] = coeffs.get(name, 0) + scale
        pos = m.end()
    if pos == 0:
        raise ValueError("not a dim expression: ''")
    return coeffs, const


def canonical(coeffs: Mapping[str, int], const: int) -> Dim:
    """The dim of an affine form: an int without symbols, else its canonical text."""
    terms = [_term(c, name) for name, c in sorted(coeffs.items()) if c]
    if not terms:
        return const
    if const:
        terms.append(str(const))
    return "".join(t if i == 0 or t.startswith("-") else f"+{t}" for i, t in enumerate(terms))


def _term(coeff: int, name: str) -> str:
    return name if coeff == 1 else f"-{name}" if coeff == -1 else f"{coeff}*{name}"


def parse(text: str) -> Dim:
    """`text` (e.g. `"T + P"`, `"2 * T"`, `"64"`) as a canonical dim."""
    return canonical(*affine(text.strip()))


def _combine(a: Dim, b: Dim, sign: int) -> Dim:
    (ca, ka), (cb, kb) = affine(a), affine(b)
    coeffs = dict(ca)
    for name, c in cb.items():
        coeffs[name] = coeffs.get(name, 0) + sign * c
    return canonical(coeffs, ka + sign * kb)


def add(a: Dim, b: Dim) -> Dim:
    return _combine(a, b, 1)


def sub(a: Dim, b: Dim) -> Dim:
    return _combine(a, b, -1)


def scale(a: Dim, factor: int) -> Dim:
    coeffs, const = affine(a)
    return canonical({n: c * factor for n, c in coeffs.items()}, const * factor)


def total(dims: Iterable[Dim]) -> Dim:
    """The sum of `dims` (a concatenation's length)."""
    out: Dim = 0
    for d in dims:
        out = add(out, d)
    return out


def symbols(dim: Dim) -> tuple[str, ...]:
    """The size symbols that `dim` depends on, sorted."""
    return tuple(sorted(n for n, c in affine(dim)[0].items() if c))


def is_symbol(dim: Dim) -> TypeGuard[str]:
    """Whether `dim` is one plain size symbol (what a parameter binds)."""
    return isinstance(dim, str) and dim.isidentifier()


def bind(dim: Dim, sizes: Mapping[str, int]) -> Dim:
    """`dim` with the symbols in `sizes` replaced by their sizes (the others stay)."""
    if isinstance(dim, int):
        return dim
    coeffs, const = affine(dim)
    const += sum(c * sizes[n] for n, c in coeffs.items() if n in sizes)
    return canonical({n: c for n, c in coeffs.items() if n not in sizes}, const)


def evaluate(dim: Dim, sizes: Mapping[str, int]) -> int:
    """The value of `dim` with its symbols bound to `sizes` (KeyError if one is not)."""
    if isinstance(dim, int):
        return dim
    if dim.isidentifier():
        return sizes[dim]
    coeffs, const = affine(dim)
    return const + sum(c * sizes[n] for n, c in coeffs.items())


def product(dims: Sequence[Dim]) -> dict[tuple[str, ...], int]:
    """The number of elements of a shape as a polynomial in the symbols (monomial, as a
    sorted tuple of symbols, to coefficient): equal shapes' counts compare equal."""
    poly: dict[tuple[str, ...], int] = {(): 1}
    for d in dims:
        coeffs, const = affine(d)
        terms = [((), const), *(((n,), c) for n, c in coeffs.items())]
        nxt: dict[tuple[str, ...], int] = {}
        for mono, c in poly.items():
            for tmono, tc in terms:
                key = tuple(sorted(mono + tmono))
                nxt[key] = nxt.get(key, 0) + c * tc
        poly = {k: v for k, v in nxt.items() if v}
    return poly


def format_count(poly: Mapping[tuple[str, ...], int]) -> str:
    """A product() as text, for error messages."""
    terms = [("*".join([str(c)] * (c != 1 or not mono) + list(mono))) for mono, c in sorted(poly.items())]
    return " + ".join(terms) or "0"

