"""Where stoicc_py keeps what it computes once per machine: $STOICC_CACHE_DIR, else
$XDG_CACHE_HOME/stoicc_py (~/.cache/stoicc_py)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stoicc_py"


def cache_dir() -> Path:
    return Path(os.environ.get("STOICC_CACHE_DIR") or default_cache_dir())
