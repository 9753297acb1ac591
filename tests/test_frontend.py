"""Front-end diagnostics, and random programs checked against numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stoicc_py
from stoicc_py.cli import main
from stoicc_py.diagnostics import CompileError
from stoicc_py.frontend.irgen import irgen
from stoicc_py.frontend.parser import parse

HEAD = "kernel f(x: f32[M, 8], w: f32[4, 8], v: f32[8]) -> f32[M, 4] {\n"

ERRORS = [
    ("  return y\n}", 2, 10, "unknown name 'y'"),
    ("  return linear(x, w, v, v)\n}", 2, 10, "linear() takes 2 to 3 arguments, got 4"),
    ("  return sum(x)\n}", 2, 10, "sum() needs an axis, e.g. sum(a, axis=1)"),
    ("  return linear(x, w) + sum(x, axis=2.5)\n}", 2, 32, "axis must be an integer literal"),
    ("  return linear(x, w) + sum(x, axis=3)\n}", 2, 32, "axis=3 is out of range for f32[M, 8]"),
    ("  return linear(x, w, v)\n}", 2, 10, "bias f32[8] does not broadcast to the product's shape [M, 4]"),
    ("  return x\n}", 2, 10, "returned value has type f32[M, 8], but the kernel declares f32[M, 4]"),
    ("  return linear(x, w), x\n}", 2, 10, "kernel 'f' declares 1 result but returns 2"),
    ("  h = linear(x, w)\n}", 1, 8, "kernel 'f' has no return statement"),
    ("  return linear(x, w)\n  h = x\n}", 3, 3, "statement after return"),
    ("  return relu(x, axis=1)\n}", 2, 18, "relu() has no keyword argument 'axis'"),
    ("  return transpose(x) @ w\n}", 2, 10, "reduction dimensions differ: M in f32[8, M] and 4 in f32[4, 8]"),
]


@pytest.mark.parametrize("body,line,col,message", ERRORS)
def test_located_errors(body: str, line: int, col: int, message: str) -> None:
    with pytest.raises(CompileError) as info:
        irgen(parse(HEAD + body, "k.tdsl"))
    err = info.value
    assert err.message == message
    assert (err.loc.line, err.loc.col) == (line, col) if err.loc else False
    text = str(err).splitlines()
    assert text[0] == f"k.tdsl:{line}:{col}: error: {message}"
    assert text[2] == " " * (col - 1) + "^"


@pytest.mark.parametrize(
    "source,message",
    [
        ("kernel f(x: f64[4]) -> f64[4] { return x }", "unknown dtype 'f64'"),
        ("kernel f(x: f32[0]) -> f32[0] { return x }", "dimension sizes must be positive"),
        ("kernel f(x: f32[4], x: f32[4]) -> f32[4] { return x }", "parameter 'x' is declared twice"),
        ("kernel f(x: f32[4]) -> f32[4] { return x }\nkernel f(x: f32[4]) -> f32[4] { return x }", "defined twice"),
        ("layout A = nm(2, 4)\nlayout A = csr", "layout 'A' is declared twice"),
        ("kernel f(x: f32[8, 8] @ zigzag) -> f32[8, 8] { return x }", "unknown layout 'zigzag'"),
        ("kernel f(x: f32[8, 8] @ block(4)) -> f32[8, 8] { return x }", "'size' must be a list of 2 integers"),
        ("kernel f(x: f32[8, 8] @ csr(index=i12)) -> f32[8, 8] { return x }", "'index' must be one of i8, i16"),
        ("kernel f(x: f32[8, 8] @ int4(group=0)) -> f32[8, 8] { return x }", "group size must be positive"),
        ("kernel f(x: f32[8, 8] @ int4(bits=3)) -> f32[8, 8] { return x }", "int4() has no option 'bits'"),
        ("kernel f(x: f32[8, 10] @ hybrid(tile=[3, 4], formats=[nm(2, 4)])) -> f32[8, 10] { return x }",
         "hybrid: the last tile column holds 2 of the 10 columns (tile width 4), not whole groups of nm(2, 4)"),
        ("kernel f(x: f32[1, 4] @ hybrid(tile=[1, 8589934592], formats=[dense])) -> f32[1, 4] { return x }",
         "hybrid: tiles of [1, 8589934592] store a [1, 4] matrix as [1, 8589934592]: a dimension of 8589934592 is larger"),
        ("kernel f(x: f32[8, 8] @ int8 with nm(2, 4)) -> f32[8, 8] { return x }", "'with' expects a sparse layout"),
    ],
)  # fmt: skip
def test_declaration_errors(source: str, message: str) -> None:
    with pytest.raises(CompileError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        irgen(parse(source, "k.tdsl"))


@pytest.mark.parametrize("source", ["", "# only a comment\n", "layout A = csr\n"])
def test_no_kernel(source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file without a kernel is an error where one is needed (it compiled to nothing,
    and `stoicc run` printed nothing and exited 0)."""
    with pytest.raises(CompileError) as err:
        irgen(parse(source, "k.tdsl"))
    assert str(err.value).splitlines()[0] == "k.tdsl:1:1: error: no kernel"
    path = tmp_path / "empty.tdsl"
    path.write_text(source)
    for argv in (["run"], ["compile"], ["sim"]):
        assert main([*argv, str(path)]) == 1
        assert capsys.readouterr().err.startswith(f"{path}:1:1: error: no kernel")


@pytest.mark.parametrize("returned", ["w", "v", "x, w"])
@pytest.mark.parametrize(
    "layout", ["nm(2, 4)", "nm(2, 4) with int4(group=8)", "csr", "block([4, 4])", "hybrid(tile=[4, 8], formats=[dense])"]
)
def test_packed_parameter_not_returned(layout: str, returned: str) -> None:
    """A kernel's results are dense: returning a sparse or packed parameter (or a name
    bound to it) is a located error, not a failure of xDSL's verifier."""
    results = "(f32[8, 16], f32[8, 16])" if "," in returned else "f32[8, 16]"
    source = f"kernel f(x: f32[8, 16], w: f32[8, 16] @ {layout}) -> {results} {{\n  v = w\n  return {returned}\n}}"
    with pytest.raises(CompileError, match=r"returned value is stored in layout .*, but a kernel's results are dense"):
        stoicc_py.compile(source, cache=False)
    try:
        irgen(parse(source, "k.tdsl"))
    except CompileError as err:
        assert err.loc is not None and (err.loc.line, err.loc.col) == (3, 10 + returned.index(returned[-1]))


def test_quantized_parameter_returned_dense() -> None:
    """A quantized parameter is returned as its dequantized values."""
    prog = stoicc_py.compile("kernel f(w: f32[8, 16] @ int4(group=8)) -> f32[8, 16] { return w }", cache=False)
    packed = prog.f.pack("w", np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32))
    np.testing.assert_array_equal(prog.f(packed), packed.unpack())


def test_long_line_excerpt() -> None:
    """An error on a very long line shows the part around it, the caret under the column."""
    source = "kernel f(x: f32[4]) -> f32[4] { return x" + " " * 20000 + "+ y }"
    with pytest.raises(CompileError) as err:
        irgen(parse(source, "k.tdsl"))
    header, line, caret = str(err.value).splitlines()
    assert header == f"k.tdsl:1:{source.index('y') + 1}: error: unknown name 'y'"
    assert line.startswith("...") and line.endswith("+ y }") and len(line) < 200
    assert line[len(caret) - 1] == "y" and caret.strip() == "^"


def test_layouts_parse() -> None:
    module = irgen(parse(
        "layout H = hybrid(tile=[4, 8], formats=[dense, nm(2, 4)])\n"
        "kernel f(a: f32[8, 16] @ H, b: f32[8, 16] @ nm(2, 4) with int4(group=8, scale=f16),"
        " c: f32[8, 16] @ block([4, 4]), d: f32[8, 16] @ csr(index=i16), e: f32[8, 16] @ ternary(group=16),"
        " g: f32[8, 16] @ int8(axis=0), h: f32[8, 16] @ int8(per=token, symmetric=false)) -> f32[8, 16] { return g }"
    ))  # fmt: skip
    text = str(module)
    for expected in ("#sparse.hybrid<[4, 8], [#layout.dense, #sparse.nm<2, 4>]>", "scale = f16", "#sparse.block<4, 4>",
                     "#sparse.csr<i16>", "#quant.uniform<ternary, per = group, axis = 1, group = 16",
                     "#quant.uniform<int8, per = channel, axis = 0", "per = token, axis = 0, group = 0, symmetric = 0"):  # fmt: skip
        assert expected in text


# --- random elementwise programs, compiled and compared with numpy

_UNARY = {"relu": lambda a: np.maximum(a, 0), "tanh": np.tanh, "abs": np.abs, "neg": np.negative,
          "sigmoid": lambda a: 1 / (1 + np.exp(-a))}  # fmt: skip
_BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply}


def _expr(depth: int) -> st.SearchStrategy[tuple[str, object]]:
    leaf = st.sampled_from([("x", "x"), ("y", "y"), ("b", "b"), ("2.0", 2.0)])
    if depth == 0:
        return leaf
    sub = _expr(depth - 1)
    unary = st.tuples(st.sampled_from(sorted(_UNARY)), sub).map(lambda t: (f"{t[0]}({t[1][0]})", (t[0], t[1][1])))
    binary = st.tuples(st.sampled_from(sorted(_BINARY)), sub, sub).map(
        lambda t: (f"({t[1][0]} {t[0]} {t[2][0]})", (t[0], t[1][1], t[2][1]))
    )
    return st.one_of(leaf, unary, binary)


def _eval(tree: object, env: dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(tree, str):
        return env[tree]
    if isinstance(tree, float):
        return np.float64(tree)  # type: ignore[return-value]
    assert isinstance(tree, tuple)
    if tree[0] in _UNARY:
        return _UNARY[tree[0]](_eval(tree[1], env))
    return _BINARY[tree[0]](_eval(tree[1], env), _eval(tree[2], env))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=_expr(3), m=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_random_elementwise_programs(expr: tuple[str, object], m: int, seed: int) -> None:
    text, tree = expr
    prog = stoicc_py.compile(
        f"kernel f(x: f32[M, 5], y: f32[M, 5], b: f32[5]) -> f32[M, 5] {{ return x * 0.0 + {text} }}"
    )
    rng = np.random.default_rng(seed)
    env = {"x": rng.standard_normal((m, 5)), "y": rng.standard_normal((m, 5)), "b": rng.standard_normal(5)}
    args = [env[k].astype(np.float32) for k in ("x", "y", "b")]
    want = env["x"] * 0.0 + _eval(tree, {k: v.astype(np.float32).astype(np.float64) for k, v in env.items()})
    assert_close(prog.f(*args), want.astype(np.float32))
