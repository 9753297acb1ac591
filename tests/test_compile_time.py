"""Compile time grows linearly with a kernel's length; the linear-time verifier still
catches what xDSL's catches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from xdsl.dialects import arith, cf, func
from xdsl.dialects.builtin import ModuleOp, i32
from xdsl.ir import Block, Region
from xdsl.utils.exceptions import VerifyException

import stoicc_py
from stoicc_py.backends.llvm import target
from stoicc_py.backends.llvm.target import host_features, host_options, target_features
from stoicc_py.benchmarks.compile_time import chain_source, growth_exponent, stage_seconds, sum_source
from stoicc_py.frontend.parser import _lark, parse
from stoicc_py.pipeline import verify


def test_passes_grow_near_linearly() -> None:
    """4x the statements cost well under 16x (quadratic): the front end and every pass
    to the llvm dialect, least CPU time of its thread in two runs (robust on a loaded machine)."""
    small, large = stage_seconds(chain_source(15), "ptr", runs=2), stage_seconds(chain_source(60), "ptr", runs=2)
    assert large / small < 6, (small, large)


def test_compiling_imports_no_ml_dtypes() -> None:
    """ml_dtypes costs ~0.7 s of CPU to import: the compile path and the stoicc command load
    it only for bf16 arrays (stoicc_py.arrays.bf16_dtype); a fresh process, as a compile's."""
    modules = "stoicc_py.api, stoicc_py.cli, stoicc_py.lowering, stoicc_py.kernel, stoicc_py.interpreter"
    check = f"import sys, {modules}; assert 'ml_dtypes' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True)


def test_each_nest_is_its_own_function() -> None:
    """LLVM sees a kernel of n statements as n small internal noinline functions (its
    time linear in n), and the kernel computes what it did."""
    k = stoicc_py.compile(chain_source(6), cache=False).k
    lines = k.ir("llvm-ir").splitlines()
    defined = [line for line in lines if line.startswith("define internal") and "@stoicc_k.nest" in line]
    assert len(defined) == 6 and sum(" call " in line and "@stoicc_k.nest" in line for line in lines) == 6
    groups = {line.split(" = ")[0].removeprefix("attributes ") for line in lines if " noinline " in line}
    assert all(line.removesuffix(" {").rsplit(" ", 1)[1] in groups for line in defined)
    x = np.linspace(-2, 2, 5 * 64, dtype=np.float32).reshape(5, 64)
    np.testing.assert_allclose(k(x), k.reference(x), rtol=1e-5, atol=1e-5)


def test_benchmark_sources_and_fit() -> None:
    assert chain_source(3).count("\n  h") == 4 and "return h3" in chain_source(3)
    assert sum_source(3).count(": f32[M, 64]") == 3 and "a0 + a1 + a2" in sum_source(3)
    assert growth_exponent([100, 200, 400], [1.0, 2.0, 4.0]) == pytest.approx(1.0)
    assert growth_exponent([100, 200, 400], [1.0, 4.0, 16.0]) == pytest.approx(2.0)


def _two_blocks(last: type[cf.BranchOp] | None) -> ModuleOp:
    """A function whose first block ends in a branch to the second, which ends in a
    return, or (last=None) in an op that is no terminator."""
    second = Block()
    entry = Block([cf.BranchOp(second)])
    second.add_ops([arith.ConstantOp.from_int_and_width(1, i32)] + ([func.ReturnOp()] if last else []))
    return ModuleOp([func.FuncOp("f", ((), ()), Region([entry, second]))])


def test_verify_multi_block_regions() -> None:
    verify(_two_blocks(cf.BranchOp))
    with pytest.raises(VerifyException, match="terminates block in multi-block region but is not a terminator"):
        verify(_two_blocks(None))
    bad = _two_blocks(cf.BranchOp)
    branch = bad.body.block.first_op.body.blocks[0].last_op  # type: ignore[union-attr]
    other = ModuleOp([func.FuncOp("g", ((), ()), Region(Block([func.ReturnOp()])))])
    branch.successors[0] = other.body.block.first_op.body.blocks[0]  # type: ignore[index,union-attr]
    with pytest.raises(VerifyException, match="branching to a block of a different region"):
        verify(bad)


def test_parser_tables_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new process's first compile loads the grammar's LALR tables from the cache
    directory; a corrupt tables file is rebuilt, never trusted."""
    monkeypatch.setenv("STOICC_CACHE_DIR", str(tmp_path))
    source = "kernel k(x: f32[4]) -> f32[4] { return x + x }"
    _lark.cache_clear()
    first = parse(source, "k.tdsl")
    tables = tmp_path / "grammar" / "tdsl.lark-tables"
    assert tables.stat().st_size > 1000
    for garbage in (b"", b"not a pickle\n" * 100):
        tables.write_bytes(garbage)
        _lark.cache_clear()
        assert parse(source, "k.tdsl") == first
    _lark.cache_clear()


def test_host_features_need_no_probe_for_any_relocation_model() -> None:
    """The compile path's machine (static relocations) is the host: its features come from
    the host's detection, not from the inliner probe (a tenth of a second per process)."""
    static = host_options()._replace(reloc="static")
    target_features.cache_clear()
    with patch.object(target.llvm, "parse_assembly", side_effect=AssertionError("probed")):
        assert target_features(static) == host_features()
