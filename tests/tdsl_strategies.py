"""Hypothesis strategies for .tdsl programs: from the grammar (stoicc_py/grammar.lark,
docs/language.md) and as token mutations of the examples, and the settings of the
suites that use them, the fuzzer (test_fuzz.py) and the differential tests
(test_differential.py)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from stoicc_py.limits import MAX_NESTING, MAX_OPERATIONS

Array = np.ndarray[Any, Any]

LONG_RUN = int(os.environ.get("STOICC_FUZZ_EXAMPLES", "0"))
EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.tdsl"))
# Numbers a mutation or a generated program may write: small, ragged, huge, overflowing.
ABSURD_NUMBERS = ("0", "1", "3", "7", "64", "65537", "2147483648", "1000000000000", "99999999999999999999", "1e999")
SIZES = st.sampled_from(["1", "2", "3", "4", "8", "16", "32", "64", "7", "33", "0", "1000000000000"])
DTYPES = st.sampled_from(["f32", "f32", "i8", "i32", "f16", "u8"])
SYMBOLS = st.sampled_from(["M", "N", "K"])
QUANT_STORAGE = ("int8", "int4", "int2", "ternary", "binary")
UNARY = ("relu", "gelu", "silu", "sigmoid", "tanh", "exp", "neg", "abs", "sqrt")
_TOKEN = re.compile(r"\s+|#[^\n]*|[A-Za-z_][A-Za-z_0-9]*|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|->|\S")


def fuzz_settings(ci_examples: int) -> settings:
    """A fixed set of `ci_examples` in CI; a random search of STOICC_FUZZ_EXAMPLES when set."""
    return settings(
        max_examples=LONG_RUN or ci_examples,
        derandomize=not LONG_RUN,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


def _call(name: str, args: list[str]) -> str:
    return f"{name}({', '.join(args)})"


@st.composite
def quant_layouts(draw: st.DrawFn) -> str:
    options = draw(st.lists(st.sampled_from([
        st.builds("group={}".format, SIZES), st.builds("axis={}".format, st.sampled_from(["0", "1", "-1", "2"])),
        st.builds("per={}".format, st.sampled_from(["tensor", "channel", "group", "token", "row"])),
        st.builds("symmetric={}".format, st.sampled_from(["true", "false"])),
        st.builds("scale={}".format, st.sampled_from(["f32", "f16", "i8"])),
    ]).flatmap(lambda s: s), max_size=2))  # fmt: skip
    return _call(draw(st.sampled_from(QUANT_STORAGE)), options)


@st.composite
def layouts(draw: st.DrawFn) -> str:
    """Any layout expression, valid or not: every constructor, odd parameters, compositions."""
    size, quant = lambda: draw(SIZES), lambda: draw(quant_layouts())
    return draw(st.sampled_from([
        lambda: "dense", lambda: f"nm({size()}, {size()})", lambda: f"block([{size()}, {size()}])",
        lambda: f"csr(index={draw(st.sampled_from(['i8', 'i16', 'i32', 'i64', 'f32']))})", lambda: "csr",
        lambda: f"hybrid(tile=[{size()}, {size()}], formats=[dense, nm(2, 4)])", quant,
        lambda: f"nm(2, 4) with {quant()}", lambda: f"block([{size()}, {size()}]) with {quant()}",
        lambda: f"sq(low={quant()}, high=int8, high_density=0.0{size()})",
        lambda: f"sq(low={quant()}, group={size()}, count={size()})",
        lambda: f"bitsplit(int8, low_bits={size()}, offset=true)", lambda: f"{quant()} with nm(2, 4)",
        lambda: "unknown(1)",
    ]))()  # fmt: skip


def expressions(names: list[str], depth: int) -> st.SearchStrategy[str]:
    """Expressions over `names`: every operator, call and layout of the language, untyped."""
    leaf = st.sampled_from([*names, "2.0", "1", "-3.5"])
    if depth == 0:
        return leaf
    sub = expressions(names, depth - 1)
    axis = st.sampled_from(["0", "1", "-1", "3", "x"])
    return st.one_of(
        leaf,
        st.builds("({} {} {})".format, sub, st.sampled_from("+-*/@"), sub),
        st.builds("-{}".format, sub),
        st.builds("{}({})".format, st.sampled_from(UNARY), sub),
        st.builds("linear({}, {})".format, sub, sub),
        st.builds("linear({}, {}, {})".format, sub, sub, sub),
        st.builds("matmul({}, {})".format, sub, sub),
        st.builds("transpose({})".format, sub),
        st.builds("{}({}, axis={})".format, st.sampled_from(["sum", "max", "softmax"]), sub, axis),
        st.builds("quantize({}, {})".format, sub, layouts()),
        st.builds("dequantize({})".format, sub),
        st.builds("{}({})".format, st.sampled_from(["nosuch", "linear", "sum"]), sub),
    )


@st.composite
def tensor_types(draw: st.DrawFn) -> str:
    dims = draw(st.lists(st.one_of(SYMBOLS, SIZES), min_size=0, max_size=3))
    return f"{draw(DTYPES)}[{', '.join(dims)}]"


@st.composite
def grammar_programs(draw: st.DrawFn) -> str:
    """A program from the grammar: declarations, parameters with layouts, statements."""
    names = [f"p{i}" for i in range(draw(st.integers(1, 3)))]
    params = [f"{n}: {draw(tensor_types())}" + (f" @ {draw(layouts())}" if draw(st.booleans()) else "")
              for n in names]  # fmt: skip
    body = [f"  t{i} = {draw(expressions(names, 2))}" for i in range(draw(st.integers(0, 2)))]
    temps = [f"t{i}" for i in range(len(body))]
    body.append(f"  return {draw(expressions(names + temps, 3))}")
    decl = f"layout L = {draw(layouts())}\n" if draw(st.booleans()) else ""
    return f"{decl}kernel k({', '.join(params)}) -> {draw(tensor_types())} {{\n" + "\n".join(body) + "\n}\n"


@st.composite
def linear_programs(draw: st.DrawFn) -> str:
    """A mostly well-typed product with a random layout, epilogue and sizes: the programs
    that reach the backend's passes."""
    m, n, k = draw(st.sampled_from(["M", "1", "5"])), draw(SIZES), draw(SIZES)
    xdt, wdt = draw(st.sampled_from(["f32", "i8"])), draw(st.sampled_from(["f32", "i8"]))
    rdt = "i32" if (xdt, wdt) == ("i8", "i8") else "f32"
    body = draw(st.sampled_from([
        "linear(x, w)", "linear(x, w, b)", "relu(linear(x, w, b))", "matmul(x, transpose(w))",
        "linear(quantize(x, int8(per=token)), w)", "gelu(linear(x, w)) + 1.0", "x @ transpose(w) - b",
    ]))  # fmt: skip
    return (f"kernel k(x: {xdt}[{m}, {k}], w: {wdt}[{n}, {k}] @ {draw(layouts())}, b: {rdt}[{n}]) "
            f"-> {rdt}[{m}, {n}] {{\n  return {body}\n}}\n")  # fmt: skip


def tokens(source: str) -> list[str]:
    return _TOKEN.findall(source)


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    """An example file with a few tokens deleted, duplicated, swapped, replaced by
    another of its tokens, numbers replaced by absurd ones, or any character inserted."""
    toks = tokens(draw(st.sampled_from(EXAMPLES)).read_text())
    index = st.integers(0, len(toks) - 1)
    for _ in range(draw(st.integers(1, 4))):
        i, j = draw(index), draw(index)
        match draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "number", "character"])):
            case "delete":
                del toks[i]
            case "duplicate":
                toks.insert(i, toks[i])
            case "swap":
                toks[i], toks[j] = toks[j], toks[i]
            case "replace":
                toks[i] = toks[j]
            case "number":
                numbers = [n for n, t in enumerate(toks) if t[:1].isdigit()]
                toks[draw(st.sampled_from(numbers))] = draw(st.sampled_from(ABSURD_NUMBERS))
            case "character":  # any Unicode character but a surrogate, which a file cannot hold
                toks.insert(i, draw(st.characters(exclude_categories=["Cs"])))
        index = st.integers(0, len(toks) - 1)
    return "".join(toks)



# Lengths around the front end's limits (stoicc_py/limits.py) and past them (4097 x 100
# characters of a name or padding is far past the source length).
CHAIN_LENGTHS = st.sampled_from([1, 2, 3, 50, 99, 100, 101, 500, 4096, 4097])
# The longest of each shape of long_programs() that is within every limit: MAX_NESTING
# brackets; MAX_OPERATIONS operations (a product's terms take two: `* 1.0`).
FITS = {"calls": MAX_NESTING, "parens": MAX_NESTING, "product": MAX_OPERATIONS // 2}
LongProgram = tuple[str, Callable[[Array], Array], bool]


@st.composite
def long_programs(draw: st.DrawFn) -> LongProgram:
    """A well-typed kernel `k(x: f32[4]) -> f32[4]` that is long or deep: a sum of many
    terms, a long product, many nested calls or parentheses, many unary minuses, many
    statements, a very long name or line. With what it computes, for the reference,
    and whether it is within the limits (else it may be refused)."""
    n = draw(CHAIN_LENGTHS)
    shape = draw(st.sampled_from(["sum", "product", "calls", "parens", "minuses", "statements", "name", "line"]))
    fits = n <= FITS.get(shape, MAX_OPERATIONS)
    match shape:
        case "sum":  # left associative: a tree n deep
            signs = draw(st.lists(st.sampled_from([1, -1]), min_size=n - 1, max_size=n - 1))
            body = "x" + "".join(" + x" if s > 0 else " - x" for s in signs)
            return _kernel(body), lambda x: x * (1 + sum(signs)), fits
        case "product":
            ops = draw(st.lists(st.sampled_from("*/"), min_size=n - 1, max_size=n - 1))
            return _kernel("x" + "".join(f" {o} 1.0" for o in ops)), lambda x: x, fits
        case "calls":
            funcs = draw(st.lists(st.sampled_from(list(_FUNCS)), min_size=n, max_size=n))
            return _kernel("".join(f"{f}(" for f in funcs) + "x" + ")" * n), partial(_calls, funcs), fits
        case "parens":
            return _kernel("(" * n + "x" + ")" * n), lambda x: x, fits
        case "minuses":
            return _kernel(draw(st.sampled_from(["-", "- "])) * n + "x"), lambda x: x * (-1) ** n, fits
        case "statements":
            head = "  t0 = x\n" + "".join(f"  t{i} = t{i - 1} + x\n" for i in range(1, n))
            return _kernel(f"t{n - 1}", head), lambda x: x * n, fits
        case "name":
            name = "v" * n * draw(st.sampled_from([1, 100]))
            return _kernel(name, f"  {name} = x + x\n"), lambda x: 2 * x, fits
    padding = draw(st.sampled_from([" " * 100 * n, "\t" * 100 * n, "# " + "comment " * 12 * n]))
    return _kernel("x " + padding), lambda x: x, fits


_FUNCS: dict[str, Callable[[Array], Array]] = {"relu": lambda x: np.maximum(x, 0), "abs": np.abs, "neg": np.negative}


def _kernel(value: str, head: str = "") -> str:
    return f"kernel k(x: f32[4]) -> f32[4] {{\n{head}  return {value}\n}}\n"


def _calls(funcs: list[str], x: Array) -> Array:
    for f in reversed(funcs):  # innermost first
        x = _FUNCS[f](x)
    return x
