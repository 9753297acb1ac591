"""The kernel cache: a hit loads without the compiler, and code is keyed by the host CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py import api

SOURCE = "kernel layer(x: f32[M, 16], w: f32[8, 16], b: f32[8]) -> f32[M, 8] { return relu(linear(x, w, b)) }"
COMPILER_MODULES = ("xdsl.ir", "lark", "stoicc_py.lowering", "stoicc_py.pipeline", "stoicc_py.frontend.parser",
                    "stoicc_py.packing")  # fmt: skip
HIT = f"""
import json, sys
import numpy as np
import stoicc_py
prog = stoicc_py.compile({SOURCE!r}, cache=sys.argv[1])
y = prog.layer(np.ones((3, 16), np.float32), np.ones((8, 16), np.float32), np.zeros(8, np.float32))
print(json.dumps({{"loaded": sorted(m for m in {COMPILER_MODULES!r} if m in sys.modules), "y": float(y.sum())}}))
"""


def test_a_cache_hit_loads_no_compiler(tmp_path: Path) -> None:
    # Both runs in fresh processes: this one may hash an older version of the compiler's sources.
    miss, hit = (
        json.loads(subprocess.run([sys.executable, "-c", HIT, str(tmp_path)], capture_output=True, text=True,
                                  check=True).stdout)
        for _ in range(2)
    )  # fmt: skip
    assert miss["loaded"] and miss["y"] == 3 * 8 * 16.0
    assert hit == {"loaded": [], "y": 3 * 8 * 16.0}


def test_a_cached_program_parses_on_demand(tmp_path: Path) -> None:
    fresh = stoicc_py.compile(SOURCE, cache=tmp_path)
    cached = stoicc_py.compile(SOURCE, cache=tmp_path)
    assert "module" in fresh.__dict__ and "module" not in cached.__dict__
    assert cached.layer.abi == fresh.layer.abi and cached.layer.abi.row_split is not None
    rng = np.random.default_rng(0)
    args = rand(rng, 5, 16), rand(rng, 8, 16), rand(rng, 8)
    assert_close(cached.layer(*args), cached.layer.reference(*args))
    assert "tdsl.linear" in cached.layer.ir("ir")


def test_code_for_another_cpu_is_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stoicc_py.compile(SOURCE, cache=tmp_path)
    assert api.host_cpu() in api.toolchain_key()
    monkeypatch.setattr(api, "host_cpu", lambda: "some-other-cpu;+avx512f")
    stoicc_py.compile(SOURCE, cache=tmp_path)
    assert len(list(tmp_path.glob("*.kernels"))) == 2  # a separate entry: compiled again


def test_an_entry_without_row_split_is_rebuilt(tmp_path: Path) -> None:
    stoicc_py.compile(SOURCE, cache=tmp_path)
    (entry,) = tmp_path.glob("*.kernels")
    entry.write_bytes(entry.read_bytes().replace(b'"row_split"', b'"old_field"'))  # an older compiler's ABI
    assert stoicc_py.compile(SOURCE, cache=tmp_path).layer.abi.row_split is not None
    assert b'"row_split"' in entry.read_bytes()
