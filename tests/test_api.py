"""The Python API: calling conventions, argument checks, the kernel cache, IR stages."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py import kernel
from stoicc_py.cache import KernelCache

SOURCE = """
kernel layer(x: f32[M, 16], w: f32[8, 16], b: f32[8]) -> f32[M, 8] { return relu(linear(x, w, b)) }
kernel pair(a: f32[M, N], b: f32[M, N]) -> (f32[M, N], f32[N]) { return a * b, sum(a, axis=0) }
"""


@pytest.fixture(scope="module")
def prog() -> stoicc_py.Program:
    return stoicc_py.compile(SOURCE)


def test_kernel_lookup(prog: stoicc_py.Program) -> None:
    assert prog.kernel("layer") is prog.layer
    assert sorted(prog.kernels) == ["layer", "pair"]
    with pytest.raises(KeyError, match="no kernel 'nope'.*layer, pair"):
        prog.kernel("nope")
    with pytest.raises(AttributeError):
        prog.nope  # noqa: B018


def test_multiple_results(prog: stoicc_py.Program) -> None:
    rng = np.random.default_rng(0)
    a, b = rand(rng, 5, 3), rand(rng, 5, 3)
    prod, total = prog.pair(a, b)
    assert_close(prod, a * b)
    assert_close(total, a.sum(0))


def test_non_contiguous_input_is_copied(prog: stoicc_py.Program) -> None:
    rng = np.random.default_rng(1)
    x = rand(rng, 16, 10).T  # a transposed view: not C-contiguous
    w, b = rand(rng, 8, 16), rand(rng, 8)
    assert_close(prog.layer(x, w, b), np.maximum(x @ w.T + b, 0))


@pytest.mark.parametrize(
    "args,error,message",
    [
        ((np.zeros((2, 16)),), TypeError, r"layer\(\) takes 3 arguments \(x, w, b\), got 1"),
        ((np.zeros((2, 16)), np.zeros((8, 16), np.float32), np.zeros(8, np.float32)), TypeError,
         "parameter 'x' expects dtype float32 .* got float64"),
        ((np.zeros((2, 15), np.float32), np.zeros((8, 16), np.float32), np.zeros(8, np.float32)), ValueError,
         "parameter 'x' expects size 16 on axis 1"),
        ((np.zeros(16, np.float32), np.zeros((8, 16), np.float32), np.zeros(8, np.float32)), ValueError,
         "parameter 'x' expects rank 2"),
    ],
)  # fmt: skip
def test_bad_arguments(prog: stoicc_py.Program, args: tuple[object, ...], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        prog.layer(*args)


def test_a_size_symbol_may_be_zero(prog: stoicc_py.Program) -> None:
    """An empty batch (or an empty KV cache) is a call like any other: empty results."""
    x, w, b = np.zeros((0, 16), np.float32), np.ones((8, 16), np.float32), np.ones(8, np.float32)
    got = prog.layer(x, w, b)
    assert got.shape == (0, 8)
    assert prog.layer.reference(x, w, b).shape == (0, 8)


def test_symbol_mismatch(prog: stoicc_py.Program) -> None:
    a, b = np.zeros((4, 3), np.float32), np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match="size symbol M is 4 from parameter 'a' but 5 from parameter 'b'"):
        prog.pair(a, b)


def test_ir_stages(prog: stoicc_py.Program) -> None:
    assert "tdsl.linear" in prog.layer.ir("ir")
    assert 'act = "relu"' in prog.layer.ir("opt")
    assert "scf.for" in prog.layer.ir("loops")
    assert "define void @stoicc_layer(" in prog.layer.ir("llvm")
    assert "define void @stoicc_layer" in prog.layer.ir("llvm-ir")
    assert "layer:" in prog.layer.ir("asm")
    assert "@pair" not in prog.layer.ir("ir")
    with pytest.raises(ValueError, match="unknown stage"):
        prog.layer.ir("bogus")


def test_compile_errors_are_located() -> None:
    with pytest.raises(stoicc_py.CompileError) as info:
        stoicc_py.compile("kernel f(x: f32[4]) -> f32[4] {\n  return foo(x)\n}", cache=False)
    assert str(info.value).startswith("<string>:2:10: error: unknown function 'foo'")


def test_compile_from_path(tmp_path: Path) -> None:
    path = tmp_path / "k.tdsl"
    path.write_text("kernel twice(x: f32[N]) -> f32[N] { return x + x }")
    prog = stoicc_py.compile(path)
    assert prog.file == str(path)
    assert_close(prog.twice(np.arange(3, dtype=np.float32)), np.arange(3, dtype=np.float32) * 2)
    with pytest.raises(stoicc_py.CompileError, match="cannot read"):
        stoicc_py.compile(tmp_path / "missing.tdsl")


def test_cache_hit_and_corruption(tmp_path: Path) -> None:
    source = "kernel neg(x: f32[N]) -> f32[N] { return -x }"
    stoicc_py.compile(source, cache=tmp_path)
    (entry,) = tmp_path.glob("*.kernels")
    good = entry.read_bytes()
    for corrupt in (good[: len(good) // 2], good[:-1] + bytes([good[-1] ^ 1]), b"garbage"):
        entry.write_bytes(corrupt)
        assert KernelCache(tmp_path).get(entry.stem) is None
        prog = stoicc_py.compile(source, cache=tmp_path)  # rebuilt, not trusted
        assert_close(prog.neg(np.ones(4, np.float32)), -np.ones(4, np.float32))
        assert entry.read_bytes() == good


def test_reference_matches(prog: stoicc_py.Program) -> None:
    rng = np.random.default_rng(2)
    args = rand(rng, 3, 16), rand(rng, 8, 16), rand(rng, 8)
    assert_close(prog.layer(*args), prog.layer.reference(*args))


def test_header(prog: stoicc_py.Program) -> None:
    header = " ".join(prog.header().split())
    layer = "const float *, /* x */ const float *, /* w */ const float *, /* b */ float *, /* out0 */ int64_t); /* M */"
    assert f"void stoicc_layer( {layer}" in header
    pair = "const float *, /* a */ const float *, /* b */ float *, /* out0 */ float *, /* out1 */ int64_t, /* M */"
    assert f"void stoicc_pair( {pair} int64_t); /* N */" in header


def test_cli_never_shows_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tdsl"
    for text in ("kernel", "kernel f(x: f32[4]) -> f32[4] { return x @ x }", "\x00\xff", "layout L = nm(2, 4, 8)"):
        bad.write_text(text, errors="surrogateescape")
        run = subprocess.run(
            [sys.executable, "-m", "stoicc_py.cli", "compile", str(bad)], capture_output=True, text=True
        )
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr and "error:" in run.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "stoicc_py.cli", "run", str(tmp_path / "no.tdsl")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_a_dense_weight_for_a_packed_parameter_warns_once_per_kernel() -> None:
    """Packed on every call, without a cache (the array may change): the first call says so,
    with what it cost; a PackedTensor is not packed again."""
    k = stoicc_py.compile(
        "kernel once(x: f32[M, 32], w: f32[8, 32] @ nm(2, 4)) -> f32[M, 8] { return linear(x, w) }"
    ).once
    rng = np.random.default_rng(0)
    x, w = rand(rng, 3, 32), stoicc_py.pack(rand(rng, 8, 32), "nm(2, 4)", prune="magnitude").unpack()
    with pytest.warns(stoicc_py.StoiccWarning, match=r"^once: parameter 'w' got a dense array, packed into nm\(2, 4\) "
                      r"for this call in [0-9.e-]+ s, and packed again on every call: pack it once") as record:  # fmt: skip
        first = k(x, w)
        assert_close(k(x, w), first)  # no second warning
        k.reference(x, w)
    assert len(record) == 1 and record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_close(k(x, k.pack("w", w)), first)


def test_a_dense_parameter_takes_what_its_kernel_packs() -> None:
    """kernel.pack on a dense parameter (`@ dense` or none) gives a PackedTensor of layout
    dense, which the kernel takes as its array (code that packs every weight alike, as
    CompiledLlama's lm head, needs no case for dense); its dtype and shape are checked as
    an array's; other layouts' tensors are still refused."""
    prog = stoicc_py.compile(
        "kernel d(x: f32[M, 16], w: f32[8, 16] @ dense) -> f32[M, 8] { return linear(x, w) }\n"
        "kernel e(x: f32[M, 16], w: f32[8, 16]) -> f32[M, 8] { return linear(x, w) }"
    )
    rng = np.random.default_rng(0)
    x, w = rand(rng, 3, 16), rand(rng, 8, 16)
    for k in (prog.d, prog.e):
        assert_close(k(x, k.pack("w", w)), x @ w.T)
        with pytest.raises(ValueError, match=r"expects size 16 on axis 1 \(w: f32\[8, 16\]\), got shape \(8, 12\)"):
            k(x, stoicc_py.pack(rand(rng, 8, 12), "dense"))
        with pytest.raises(ValueError, match="expects layout dense, got a tensor packed as nm"):
            k(x, stoicc_py.pack(w, "nm(2, 4)", prune="magnitude"))


def test_the_native_entry_reads_every_buffer_and_size(prog: stoicc_py.Program, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole call goes through backends/llvm/entry.py (one tuple of arrays, the sizes in a
    table): two results and two size symbols land where the kernel reads them, the table holds
    this call's sizes, and without the entry (as where it is None, not CPython) _fn gives the same."""
    pair = prog.pair._native
    assert pair._entry is not None
    rng = np.random.default_rng(4)
    for m, n in ((3, 5), (2, 7), (3, 5)):
        a, b = rand(rng, m, n), rand(rng, m, n)
        product, total = prog.pair(a, b)
        assert_close(product, a * b)
        assert_close(total, a.sum(axis=0))
        table = next(bound.table for key, bound in pair._seen.items() if key == ((m, n), (m, n)))
        assert table is not None and list(table[1:]) == [m, n] and not table.flags.writeable
    monkeypatch.setattr(pair, "_entry", None)
    product, total = prog.pair(a, b)
    assert_close(product, a * b)
    assert_close(total, a.sum(axis=0))


def test_a_call_through_the_entry_releases_the_gil() -> None:
    """The entry runs the kernel without the GIL: a Python thread that yields at every step
    (the switch interval made long, so that it cannot take the GIL otherwise) counts while the
    call runs; holding the GIL, the count would not move between the two reads."""
    k = stoicc_py.compile("kernel tanh_of(x: f32[M, K]) -> f32[M, K] { return tanh(x) }").tanh_of
    x = np.linspace(-4, 4, 1 << 22, dtype=np.float32).reshape(1, -1)  # one row: a whole call, ~50 ms
    assert_close(k(x), np.tanh(x))  # remembers the shapes: the next call takes the quick path
    (bound,) = k._native._seen.values()
    assert k._native._entry is not None and bound.table is not None
    ticks, done = [0], threading.Event()

    def count() -> None:
        while not done.is_set():
            ticks[0] += 1
            time.sleep(0)  # lets the GIL go

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    counter = threading.Thread(target=count)
    try:
        counter.start()
        before = ticks[0]
        k(x)
        after = ticks[0]
    finally:
        done.set()
        counter.join()
        sys.setswitchinterval(interval)
    assert after > before


def test_a_call_with_shapes_seen_before_skips_the_complete_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first call with some argument shapes is checked completely; a later call with the same
    shapes (numpy arrays of the parameters' dtypes, in C order) reuses what it bound; anything
    else (new shapes, a wrong dtype, a strided view) is checked again, with the same errors."""
    layer = stoicc_py.compile(SOURCE).layer  # a kernel of its own: no shapes seen yet
    checked: list[int] = []
    check_arguments = kernel.check_arguments
    monkeypatch.setattr(kernel, "check_arguments", lambda abi, args: checked.append(1) or check_arguments(abi, args))
    rng = np.random.default_rng(3)
    w, b = rand(rng, 8, 16), rand(rng, 8)
    for m in (3, 3, 5, 3, 5):
        x = rand(rng, m, 16)
        assert_close(layer(x, w, b), np.maximum(x @ w.T + b, 0))
    assert len(checked) == 2
    with pytest.raises(TypeError, match="parameter 'x' expects dtype float32"):
        layer(x.astype(np.float64), w, b)
    with pytest.raises(ValueError, match="parameter 'b' expects size 8 on axis 0"):
        layer(x, w, rand(rng, 9))
    x = rand(rng, 16, 5).T  # a strided view: copied, and checked on every call
    for _ in range(2):
        assert_close(layer(x, w, b), np.maximum(x @ w.T + b, 0))
    assert len(checked) == 6
    for m in range(kernel.SEEN_MAX + 2):  # more shapes than it remembers: it forgets them all, and goes on
        x = rand(rng, m, 16)
        assert_close(layer(x, w, b), np.maximum(x @ w.T + b, 0))
    assert len(layer._native._seen) <= kernel.SEEN_MAX
