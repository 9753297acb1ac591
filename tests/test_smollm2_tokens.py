"""benchmarks/smollm2_tokens.py without the model: llama-bench's JSON read back (a stand-in
script prints what llama-bench -o json prints) and the side-by-side table's ratios."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

pytest.importorskip("gguf")
from stoicc_py.benchmarks.smollm2_tokens import best, llama_bench, table  # noqa: E402

RUNS = [  # the fields we read of llama-bench's records, as it prints them
    {"n_prompt": 128, "n_gen": 0, "n_threads": 1, "avg_ts": 100.0},
    {"n_prompt": 0, "n_gen": 128, "n_threads": 1, "avg_ts": 50.0},
]


def test_llama_bench_read_and_table(tmp_path: Path) -> None:
    fake = tmp_path / "llama-bench"
    fake.write_text(f"#!/bin/sh\ncat <<'END'\n{json.dumps(RUNS)}\nEND\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    figures: dict[str, dict[int, dict[str, float]]] = {}
    best(figures, "llama.cpp", llama_bench(fake, tmp_path / "m.gguf", [1], 128, 128))
    assert figures == {"llama.cpp": {1: {"pp128": 100.0, "tg128": 50.0}}}
    best(figures, "int4", {1: {"pp128": 120.0, "tg128": 20.0}})
    best(figures, "int4", {1: {"pp128": 110.0, "tg128": 25.0}})  # the best round of each test
    rows = table(figures, [1], ["pp128", "tg128"]).splitlines()
    assert rows[1].split() == ["1", "pp128", "100.0", "120.0", "1.20x"]
    assert rows[2].split() == ["1", "tg128", "50.0", "25.0", "0.50x"]
