"""Ahead-of-time output: a C program links the object file through the header."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SOURCE = "kernel layer(x: f32[M, 8], w: f32[4, 8], b: f32[4]) -> f32[M, 4] { return tanh(linear(x, w, b)) }\n"
DRIVER = r"""
#include <stdio.h>
#include "layer.h"
int main(void) {
    float x[3 * 8], w[4 * 8], b[4], out[3 * 4];
    for (int i = 0; i < 24; i++) x[i] = (float)(i % 7) / 7.0f - 0.5f;
    for (int i = 0; i < 32; i++) w[i] = (float)(i % 5) / 5.0f - 0.4f;
    for (int i = 0; i < 4; i++) b[i] = 0.1f * (float)i;
    layer(x, w, b, out, 3);
    for (int i = 0; i < 12; i++) printf("%.7f\n", out[i]);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_driver_links_and_matches(tmp_path: Path) -> None:
    (tmp_path / "layer.tdsl").write_text(SOURCE)
    (tmp_path / "main.c").write_text(DRIVER)
    stoicc = ["python", "-m", "stoicc_py.cli", "compile", "layer.tdsl"]
    subprocess.run([*stoicc, "--emit", "obj", "-o", "layer.o"], cwd=tmp_path, check=True)
    subprocess.run([*stoicc, "--emit", "header", "-o", "layer.h"], cwd=tmp_path, check=True)
    subprocess.run(["cc", "-std=c11", "-o", "main", "main.c", "layer.o", "-lm"], cwd=tmp_path, check=True)
    printed = subprocess.run(["./main"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    got = np.array([float(v) for v in printed.split()], dtype=np.float32).reshape(3, 4)
    x = (np.arange(24) % 7 / np.float32(7) - np.float32(0.5)).astype(np.float32).reshape(3, 8)
    w = (np.arange(32) % 5 / np.float32(5) - np.float32(0.4)).astype(np.float32).reshape(4, 8)
    b = (0.1 * np.arange(4)).astype(np.float32)
    np.testing.assert_allclose(got, np.tanh(x.astype(np.float64) @ w.T + b), rtol=1e-5, atol=1e-6)
