"""The integer kernels' dot-product paths (tdsl-vectorize-integer's DotKind) that this host can
run, and a compile that takes one of them, for the tests of each path."""

from __future__ import annotations

import pytest

import stoicc_py
from stoicc_py import pipeline
from stoicc_py.backends.llvm.target import has_byte_madd, has_vnni, host_features

HOST = {"vnni": has_vnni(host_features()), "madd": has_byte_madd(host_features()), "portable": True}
PATHS = [path for path, runs in HOST.items() if runs]


def compile_for_path(source: str, path: str, monkeypatch: pytest.MonkeyPatch) -> stoicc_py.Program:
    """`source` compiled as if the host had only `path`'s instructions (vnni, madd or portable)."""
    monkeypatch.setattr(pipeline, "has_vnni", lambda _features: path == "vnni")
    monkeypatch.setattr(pipeline, "has_byte_madd", lambda _features: path == "madd")
    prog = stoicc_py.compile(source, cache=False)
    assert isinstance(prog, stoicc_py.Program)
    return prog
