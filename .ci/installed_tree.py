"""Run a command on stoicc_py as it is installed: `python .ci/installed_tree.py CMD ...`.

pyproject.toml maps dialects/, codegen/, passes/, backends/ and benchmarks/ into
stoicc_py ([tool.setuptools.package-dir]); the editable install finds them with an
import hook, which static tools (import-linter's grimp, mypy) do not run. So this
builds build/installed/stoicc_py, a tree of links with the installed layout, and runs
CMD there (cwd and PYTHONPATH/MYPYPATH); file names in its output are given back as
the repository's own (build/installed/stoicc_py/passes/x.py -> passes/x.py).

    python .ci/installed_tree.py lint-imports --config pyproject.toml
    python .ci/installed_tree.py mypy --config-file pyproject.toml -p stoicc_py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "installed"
PATH = re.compile(r"^([\w./-]+\.pyi?)(?=:)", re.MULTILINE)


def build_tree(tree: Path = TREE) -> Path:
    """tree/stoicc_py: links to stoicc_py/'s entries and to each directory mapped into it."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "stoicc_py"
    package.mkdir(parents=True)
    for entry in (ROOT / "stoicc_py").iterdir():
        (package / entry.name).symlink_to(entry)
    for name, directory in mapping.items():
        parent, _, leaf = name.rpartition(".")
        if parent != "stoicc_py":
            raise SystemExit(f"{name}: only a subpackage of stoicc_py itself can be mapped here")
        (package / leaf).symlink_to(ROOT / directory)
    return tree


def repository_paths(output: str) -> str:
    """The output with each file name in the tree replaced by the repository's."""

    def real(match: re.Match[str]) -> str:
        path = (TREE / match[1]).resolve()
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else match[1]

    return PATH.sub(real, output)


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    tree = build_tree()
    # Relative paths in the arguments (a config file) stay the repository's.
    args = [str(ROOT / a) if (ROOT / a).is_file() else a for a in argv]
    env = dict(os.environ, PYTHONPATH=str(tree), MYPYPATH=str(tree))
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True)
    sys.stdout.write(repository_paths(done.stdout))
    sys.stderr.write(repository_paths(done.stderr))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
