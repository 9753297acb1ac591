"""The layering (docs/architecture.md, "Layers"): import-linter's contracts in
pyproject.toml hold, a module that imports upwards (even for types only) breaks them,
and no module circle exists, type-only imports included."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "pyproject.toml")


def _installed_tree() -> ModuleType:
    spec = importlib.util.spec_from_file_location("installed_tree", ROOT / ".ci" / "installed_tree.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run([str(lint), CONFIG, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True)


def test_the_import_contracts_hold(tmp_path: Path) -> None:
    done = _lint_imports(_installed_tree().build_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("upwards", [
    "import stoicc_py.api",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import stoicc_py.api",  # a type is a dependency too
], ids=["runtime", "type-only"])  # fmt: skip
def test_a_base_module_importing_the_driver_breaks_the_layers(tmp_path: Path, upwards: str) -> None:
    tree = _installed_tree().build_tree(tmp_path)
    limits = tree / "stoicc_py" / "limits.py"
    text = limits.read_text()
    limits.unlink()  # a link to the repository's file: replaced by a copy, which imports upwards
    limits.write_text(f"{text}\n{upwards}\n")
    done = _lint_imports(tree)
    assert done.returncode == 1
    assert "stoicc_py.limits -> stoicc_py.api" in done.stdout


def test_no_module_circle(tmp_path: Path) -> None:
    """Not even through imports under `if TYPE_CHECKING:` (a type-only circle is still one:
    the packing formats once named PackedTensor, whose module imports them)."""
    tree = _installed_tree().build_tree(tmp_path)
    code = "import grimp, json; g = grimp.build_graph('stoicc_py', cache_dir=None, exclude_type_checking_imports=False); " \
           "print(json.dumps([[m, sorted(g.find_modules_directly_imported_by(m))] for m in g.modules]))"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)),
                          capture_output=True, text=True, check=True)  # fmt: skip
    graph = nx.DiGraph([(m, d) for m, imported in json.loads(done.stdout) for d in imported])
    circles = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not circles, circles
