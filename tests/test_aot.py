"""Ahead-of-time output: a C program links the object file through the header."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import rand

import stoicc_py

SOURCE = "kernel layer(x: f32[M, 8], w: f32[4, 8], b: f32[4]) -> f32[M, 4] { return tanh(linear(x, w, b)) }\n"
DRIVER = r"""
#include <stdio.h>
#include "layer.h"
int main(void) {
    float x[3 * 8], w[4 * 8], b[4], out[3 * 4];
    for (int i = 0; i < 24; i++) x[i] = (float)(i % 7) / 7.0f - 0.5f;
    for (int i = 0; i < 32; i++) w[i] = (float)(i % 5) / 5.0f - 0.4f;
    for (int i = 0; i < 4; i++) b[i] = 0.1f * (float)i;
    stoicc_layer(x, w, b, out, 3);
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


PACKED_SOURCE = """
kernel sparse(x: f32[M, 64], w: f32[8, 64] @ nm(2, 4), b: f32[8]) -> f32[M, 8] { return relu(linear(x, w, b)) }
kernel q4(x: f32[M, 64], w: f32[8, 64] @ int4(group=32)) -> f32[M, 8] { return linear(x, w) }
"""
PACKED_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "packed.h"
/* A whole file, as numpy's tofile wrote it. */
static void *load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    void *data = malloc(size ? size : 1);
    if (fread(data, 1, size, f) != (size_t)size) { perror(path); exit(1); }
    fclose(f);
    return data;
}
int main(void) {
    enum { M = 5 };
    float out[M * 8];
    const float *x = load("x.bin");
    stoicc_sparse(x, load("sparse_w_values.bin"), load("sparse_w_indices.bin"), load("b.bin"), out, M);
    for (int i = 0; i < M * 8; i++) printf("%.9g\n", out[i]);
    stoicc_q4(x, load("q4_w_values.bin"), load("q4_w_scales.bin"), out, M);
    for (int i = 0; i < M * 8; i++) printf("%.9g\n", out[i]);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_driver_calls_packed_kernels_with_the_buffers_of_pack(tmp_path: Path) -> None:
    """A 2:4 and an int4 weight packed in Python, saved with tofile and passed buffer by
    buffer in the header's order; checked against numpy on the unpacked weights."""
    (tmp_path / "packed.tdsl").write_text(PACKED_SOURCE)
    (tmp_path / "main.c").write_text(PACKED_DRIVER)
    stoicc = [sys.executable, "-m", "stoicc_py.cli", "compile", "packed.tdsl"]
    subprocess.run([*stoicc, "--emit", "obj", "-o", "packed.o"], cwd=tmp_path, check=True)
    subprocess.run([*stoicc, "--emit", "header", "-o", "packed.h"], cwd=tmp_path, check=True)
    rng = np.random.default_rng(0)
    x, b = rand(rng, 5, 64), rand(rng, 8)
    weights = {"sparse": stoicc_py.pack(rand(rng, 8, 64), "nm(2, 4)", prune="magnitude"),
               "q4": stoicc_py.pack(rand(rng, 8, 64), "int4(group=32)")}  # fmt: skip
    for name, array in [("x", x), ("b", b)]:
        array.tofile(tmp_path / f"{name}.bin")
    for kernel, packed in weights.items():
        for role, buffer in zip(packed.storage.roles, packed.buffers()):
            buffer.tofile(tmp_path / f"{kernel}_w_{role}.bin")
    subprocess.run(["cc", "-std=c11", "-o", "main", "main.c", "packed.o", "-lm"], cwd=tmp_path, check=True)
    printed = subprocess.run(["./main"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    got = np.array([float(v) for v in printed.split()], dtype=np.float32).reshape(2, 5, 8)
    x64 = x.astype(np.float64)
    want_sparse = np.maximum(x64 @ weights["sparse"].unpack().T + b, 0)
    want_q4 = x64 @ weights["q4"].dequantize().T
    for g, w in zip(got, (want_sparse, want_q4)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.abs(w).max())
