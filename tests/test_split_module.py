"""A module compiled in pieces (stoicc_py.split_module, lowering.build): what each piece
declares, and that a program of several object files runs as the reference says."""

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.parser import Parser

import stoicc_py
from stoicc_py import lowering
from stoicc_py.abi import KernelABI
from stoicc_py.options import Options
from stoicc_py.pipeline import context
from stoicc_py.split_module import split_functions

MODULE = """
func.func private @free(!ptr_xdsl.ptr)
func.func @k(%p: !ptr_xdsl.ptr) {
  func.call @k.nest0(%p) : (!ptr_xdsl.ptr) -> ()
  func.call @k.nest1(%p) : (!ptr_xdsl.ptr) -> ()
  func.call @free(%p) : (!ptr_xdsl.ptr) -> ()
  func.return
}
func.func private @k.nest0(%p: !ptr_xdsl.ptr) {
  func.return
}
func.func private @k.nest1(%p: !ptr_xdsl.ptr) {
  func.call @free(%p) : (!ptr_xdsl.ptr) -> ()
  func.return
}
"""


def _functions(piece: ModuleOp) -> list[tuple[str, bool, str | None]]:
    return [(fn.sym_name.data, fn.is_declaration, fn.sym_visibility.data if fn.sym_visibility else None)
            for fn in piece.ops if isinstance(fn, func.FuncOp)]  # fmt: skip


def test_pieces_declare_what_they_call() -> None:
    module = Parser(context(), MODULE).parse_module()
    pieces = split_functions(module, piece_ops=2)
    assert [_functions(p) for p in pieces] == [
        # the kernel's piece declares the runtime function and the nests it calls, which
        # become public where they are defined: an internal function is seen by its object only
        [("free", True, "private"), ("k.nest0", True, "private"), ("k.nest1", True, "private"),
         ("k", False, None)],
        [("k.nest0", False, None)],
        [("free", True, "private"), ("k.nest1", False, None)],
    ]  # fmt: skip
    assert _functions(module) == [("free", True, "private")]


def test_one_piece_is_the_module_itself() -> None:
    module = Parser(context(), MODULE).parse_module()
    assert split_functions(module, piece_ops=1000) == [module]
    nest0 = next(fn for fn in module.ops if isinstance(fn, func.FuncOp) and fn.sym_name.data == "k.nest0")
    assert nest0.sym_visibility == StringAttr("private")


SOURCE = """
kernel block(x: f32[M, 48], w: f32[32, 48] @ nm(2, 4), v: f32[48, 32] @ int4(group=16)) -> f32[M, 48] {
  h = relu(linear(x, w))
  y = linear(h * 0.5 + 1.0, v)
  return y - mean(y, axis=1, keepdims=true)
}
"""


@pytest.mark.parametrize("piece_ops", [1, 10**9])
def test_a_program_in_pieces_matches_the_reference(
    piece_ops: int, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setattr(lowering, "PIECE_OPS", piece_ops)
    built: list[list[bytes]] = []  # the objects of the program's own build (one compile, not a second)

    def build(module: ModuleOp, options: Options) -> tuple[list[bytes], list[KernelABI]]:
        objects, abis = real_build(module, options)
        built.append(objects)
        return objects, abis

    real_build = lowering.build
    monkeypatch.setattr(lowering, "build", build)
    program = stoicc_py.compile(SOURCE, cache=str(tmp_path))
    (objects,) = built
    assert (len(objects) > 3) == (piece_ops == 1)  # the kernel and each of its nests
    kernel = program.block
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 48)).astype(np.float32)
    w = kernel.pack("w", rng.standard_normal((32, 48)).astype(np.float32), prune="magnitude")
    v = kernel.pack("v", rng.standard_normal((48, 32)).astype(np.float32))
    np.testing.assert_allclose(kernel(x, w, v), kernel.reference(x, w, v), rtol=1e-5, atol=1e-5)
