"""The kernel cache: a hit loads without the compiler, and code is keyed by the host CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py import api
from stoicc_py.cache import KernelCache

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


def _flipped(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]


def _corruptions(data: bytes) -> dict[str, bytes]:
    """Ways an entry goes bad: a copy cut short, a full disk, bit rot, another file (the
    header is 65 bytes: magic and lengths, then the metadata)."""
    return {
        "empty": b"", "magic only": data[:17], "half": data[: len(data) // 2], "one byte short": data[:-1],
        "one byte long": data + b"\0", "garbage": bytes(range(256)) * 8, "flipped header": _flipped(data, 20),
        "flipped metadata": _flipped(data, 80), "flipped code": _flipped(data, len(data) - 1),
    }  # fmt: skip


def test_a_corrupt_entry_is_recompiled_and_replaced(tmp_path: Path) -> None:
    stoicc_py.compile(SOURCE, cache=tmp_path)
    (entry,) = tmp_path.glob("*.kernels")
    good, key = entry.read_bytes(), entry.stem
    for how, bad in _corruptions(good).items():  # each one is detected
        entry.write_bytes(bad)
        assert KernelCache(tmp_path).get(key) is None, how
    args = np.ones((3, 16), np.float32), np.ones((8, 16), np.float32), np.zeros(8, np.float32)
    for bad in (good[: len(good) // 2], b"garbage"):  # and a program with one is compiled again, and cached
        entry.write_bytes(bad)
        assert float(stoicc_py.compile(SOURCE, cache=tmp_path).layer(*args).sum()) == 3 * 8 * 16.0
        assert entry.read_bytes() == good


CONCURRENT = f"""
import sys
import numpy as np
import stoicc_py
prog = stoicc_py.compile({SOURCE!r}, cache=sys.argv[1])
print(float(prog.layer(np.ones((3, 16), np.float32), np.ones((8, 16), np.float32), np.zeros(8, np.float32)).sum()))
"""


def test_concurrent_compiles_share_one_valid_entry(tmp_path: Path) -> None:
    """Two processes compile the same program into one cache at the same time: both
    succeed, and what is left is one whole entry (no partial file, no temporary)."""
    runs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert [float(out) for out, _ in outputs] == [3 * 8 * 16.0] * 2
    (entry,) = tmp_path.glob("*.kernels")
    assert KernelCache(tmp_path).get(entry.stem) is not None
    assert list(tmp_path.iterdir()) == [entry]


def test_perf_map_names_every_function_at_its_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """STOICC_PERF_MAP=1: the library's functions, outlined nests included, go to
    /tmp/perf-PID.map at the addresses the engine gives them (what `perf report` reads)."""
    monkeypatch.setenv("STOICC_PERF_MAP", "1")
    path = Path(f"/tmp/perf-{os.getpid()}.map")
    before = path.read_text() if path.exists() else ""
    prog = stoicc_py.compile("kernel f(x: f32[M, 64], w: f32[32, 64]) -> f32[M, 32] { return relu(linear(x, w)) }",
                             cache=False)  # fmt: skip
    assert prog.f(np.ones((2, 64), np.float32), np.ones((32, 64), np.float32)).shape == (2, 32)
    lines = [line.split() for line in path.read_text()[len(before):].splitlines()]
    names = {name: (int(start, 16), int(size, 16)) for start, size, name in lines}
    assert "stoicc_f" in names and any(".nest" in name for name in names)
    library = prog._library  # type: ignore[attr-defined]
    assert all(library.address(name) == start and size > 0 for name, (start, size) in names.items())
